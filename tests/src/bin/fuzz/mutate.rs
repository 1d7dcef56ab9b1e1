//! Mutations: byte-level (bit flips, inserts, deletes, duplicates, splices of two inputs) and
//! text-aware ones (numbers replaced by edge values, strings by empty, huge or odd text, tokens
//! by the target's dictionary, deep nesting, whole lines duplicated or moved, invalid UTF-8
//! where the API takes bytes).

use crate::input::Input;
use crate::rng::Rng;

/// Longest part a mutation may leave (longer ones are cut).
pub const MAX_PART: usize = 128 * 1024;

/// What a target adds to the generic mutations.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    /// Keys, names, enum values and punctuation of the format.
    pub tokens: Vec<Vec<u8>>,
    /// Opening and closing texts for deep nesting, e.g. `[` and `]`.
    pub nests: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Dictionary {
    pub fn new(tokens: &[&str], nests: &[(&str, &str)]) -> Dictionary {
        let mut dictionary = Dictionary {
            tokens: tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
            nests: nests
                .iter()
                .map(|(open, close)| (open.as_bytes().to_vec(), close.as_bytes().to_vec()))
                .collect(),
        };
        dictionary
            .tokens
            .extend(EDGE_NUMBERS.iter().map(|n| n.as_bytes().to_vec()));
        dictionary
    }

    /// Adds more tokens (e.g. names taken from the seeds).
    pub fn extend<S: AsRef<str>>(&mut self, tokens: impl IntoIterator<Item = S>) {
        self.tokens
            .extend(tokens.into_iter().map(|t| t.as_ref().as_bytes().to_vec()));
        self.tokens.sort();
        self.tokens.dedup();
    }
}

/// Numbers at the edges of the types the parsers read into (and some that are not numbers).
pub const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.0",
    "-0.0",
    "0.5",
    "1e-7",
    "15",
    "16",
    "255",
    "256",
    "-129",
    "32767",
    "32768",
    "-32768",
    "-32769",
    "65535",
    "65536",
    "-65536",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967294",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "1e308",
    "-1e308",
    "1e309",
    "-1e309",
    "1.7976931348623157e308",
    "3.4028235e38",
    "3.5e38",
    "1e-45",
    "5e-324",
    "2.2250738585072014e-308",
    "1e-400",
    "1.0e1000",
    "NaN",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "+inf",
    "Infinity",
    "1_000",
    "0x10",
    "0o17",
    "0b101",
    "01",
    "1.",
    "+1",
    ".5",
    "1e",
    "1e+",
    "--1",
    "1796000000000",
    "1796000060001",
    "1577836800000",
    "1577836799999",
];

/// Replacements for the contents of a quoted string.
fn odd_string(rng: &mut Rng) -> Vec<u8> {
    const ODD: &[&str] = &[
        "",
        " ",
        "\t",
        "A",
        "-",
        "_",
        ".",
        "/",
        "+",
        "#",
        "拼音",
        "东关村",
        "😀",
        "\u{0}",
        "\u{7}",
        "e\u{301}",
        "\u{202e}",
        "\u{feff}",
        "\\u0000",
        "\\ud800",
        "\\uDBFF\\uDFFF",
        "\\\"",
        "\\",
        "\\x41",
        "\\U0010FFFF",
        "\\U00110000",
        "${x}",
        "%s%n",
        "../../etc/passwd",
        "\r\n",
        "heating/v1/+/#",
        "'''",
        "\"\"\"",
        "null",
        "true",
    ];
    match rng.below(4) {
        0 => {
            let length = [64usize, 65, 100, 1000, 4096, 70_000][rng.below(6)];
            let unit = [&b"a"[..], "é".as_bytes(), b"0", "拼".as_bytes()][rng.below(4)];
            unit.repeat(length.div_ceil(unit.len()))
        }
        _ => rng
            .pick(ODD)
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default(),
    }
}

const INTERESTING_BYTES: &[u8] = &[
    0, 0xff, 0x7f, 0x80, b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'=', b'\n', b'\r', b'#',
    b'/', b'+', b' ', b'\'', b'(', b')', b'.', b'-', b'0', b'9', b'e', b'A', b'_', b'`',
];

const INVALID_UTF8: &[&[u8]] = &[
    &[0xff],
    &[0xc3],
    &[0xc3, 0x28],
    &[0xed, 0xa0, 0x80],
    &[0xf4, 0x90, 0x80, 0x80],
    &[0xe2, 0x82],
    &[0xc0, 0x80],
    &[0xf0, 0x9f, 0x98],
];

/// Applies one random mutation to `bytes`. `donors` are parts of the same name from other
/// inputs of the corpus, for splices; `binary` allows invalid UTF-8 (else it is replaced).
pub fn mutate_bytes(
    rng: &mut Rng,
    bytes: &mut Vec<u8>,
    binary: bool,
    dictionary: &Dictionary,
    donors: &[&[u8]],
) {
    match rng.below(20) {
        0 => flip_bit(rng, bytes),
        1 => set_byte(rng, bytes),
        2 => delete_range(rng, bytes),
        3 => insert_random(rng, bytes),
        4 | 5 => insert_token(rng, bytes, dictionary),
        6 | 7 => replace_token(rng, bytes, dictionary),
        8 => duplicate_range(rng, bytes),
        9 => splice(rng, bytes, donors),
        10 | 11 => replace_number(rng, bytes),
        12 | 13 => replace_string(rng, bytes),
        14 => nest(rng, bytes, dictionary),
        15 | 16 => line_op(rng, bytes, donors),
        17 => {
            let keep = rng.below(bytes.len() + 1);
            bytes.truncate(keep);
        }
        18 => {
            if binary {
                let at = rng.below(bytes.len() + 1);
                let sequence = rng.pick(INVALID_UTF8).copied().unwrap_or(&[0xff]);
                bytes.splice(at..at, sequence.iter().copied());
            } else {
                flip_case(rng, bytes);
            }
        }
        _ => swap_ranges(rng, bytes),
    }
    if !binary && std::str::from_utf8(bytes).is_err() {
        *bytes = String::from_utf8_lossy(bytes).into_owned().into_bytes();
    }
    if bytes.len() > MAX_PART {
        let mut end = MAX_PART;
        // Not inside a character of a text part.
        while !binary && end > 0 && (bytes[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        bytes.truncate(end);
    }
}

/// Applies 1 to 8 mutations (usually few) to random parts of `input`, weighted by `weight`.
pub fn mutate(
    rng: &mut Rng,
    input: &mut Input,
    corpus: &[Input],
    dictionary: &Dictionary,
    weight: &dyn Fn(&str) -> usize,
    binary: &dyn Fn(&str) -> bool,
) {
    if input.parts.is_empty() {
        return;
    }
    let rounds = rng.size(8);
    for _ in 0..rounds {
        let total: usize = input.parts.iter().map(|p| weight(&p.name).max(1)).sum();
        let mut ticket = rng.below(total);
        let mut index = 0;
        for (i, part) in input.parts.iter().enumerate() {
            let w = weight(&part.name).max(1);
            if ticket < w {
                index = i;
                break;
            }
            ticket -= w;
        }
        let Some(part) = input.parts.get_mut(index) else {
            return;
        };
        // Donors: the same part of up to four other inputs.
        let mut donors: Vec<&[u8]> = Vec::new();
        for _ in 0..4 {
            if let Some(other) = rng.pick(corpus) {
                if let Some(bytes) = other.get(&part.name) {
                    donors.push(bytes);
                }
            }
        }
        let is_binary = binary(&part.name);
        mutate_bytes(rng, &mut part.bytes, is_binary, dictionary, &donors);
    }
}

fn random_range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let start = rng.below(len + 1);
    let length = rng.size(len - start).min(len - start);
    (start, start + length)
}

fn flip_bit(rng: &mut Rng, bytes: &mut [u8]) {
    let at = rng.below(bytes.len());
    if let Some(byte) = bytes.get_mut(at) {
        *byte ^= 1 << rng.below(8);
    }
}

fn set_byte(rng: &mut Rng, bytes: &mut [u8]) {
    let at = rng.below(bytes.len());
    let value = if rng.one_in(4) {
        rng.next_u64() as u8
    } else {
        rng.pick(INTERESTING_BYTES).copied().unwrap_or(0)
    };
    if let Some(byte) = bytes.get_mut(at) {
        *byte = value;
    }
}

fn delete_range(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let (start, end) = random_range(rng, bytes.len());
    bytes.drain(start..end);
}

fn insert_random(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let at = rng.below(bytes.len() + 1);
    let count = rng.size(8);
    let new: Vec<u8> = (0..count)
        .map(|_| {
            if rng.one_in(2) {
                rng.pick(INTERESTING_BYTES).copied().unwrap_or(0)
            } else {
                // Printable ASCII mostly.
                b' ' + rng.below(95) as u8
            }
        })
        .collect();
    bytes.splice(at..at, new);
}

fn insert_token(rng: &mut Rng, bytes: &mut Vec<u8>, dictionary: &Dictionary) {
    let Some(token) = rng.pick(&dictionary.tokens) else {
        return;
    };
    let at = rng.below(bytes.len() + 1);
    bytes.splice(at..at, token.iter().copied());
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b'+') || byte >= 0x80
}

/// Replaces the word (letters, digits, `_-.+`) at a random place by a dictionary token.
fn replace_token(rng: &mut Rng, bytes: &mut Vec<u8>, dictionary: &Dictionary) {
    let Some(token) = rng.pick(&dictionary.tokens).cloned() else {
        return;
    };
    let at = rng.below(bytes.len());
    let mut start = at;
    while start > 0 && bytes.get(start - 1).copied().is_some_and(is_token_byte) {
        start -= 1;
    }
    let mut end = at;
    while bytes.get(end).copied().is_some_and(is_token_byte) {
        end += 1;
    }
    bytes.splice(start..end, token);
}

fn duplicate_range(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let (start, end) = random_range(rng, bytes.len());
    let chunk = bytes[start..end].to_vec();
    let times = if rng.one_in(8) { rng.size(64) } else { 1 };
    let at = rng.below(bytes.len() + 1);
    bytes.splice(at..at, chunk.repeat(times));
}

fn swap_ranges(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let (a_start, a_end) = random_range(rng, bytes.len());
    let (b_start, b_end) = random_range(rng, bytes.len());
    if a_end <= b_start {
        let a = bytes[a_start..a_end].to_vec();
        let b = bytes[b_start..b_end].to_vec();
        bytes.splice(b_start..b_end, a);
        bytes.splice(a_start..a_end, b);
    }
}

/// Our start, a donor's end.
fn splice(rng: &mut Rng, bytes: &mut Vec<u8>, donors: &[&[u8]]) {
    let Some(donor) = rng.pick(donors) else {
        return;
    };
    let cut = rng.below(bytes.len() + 1);
    let from = rng.below(donor.len() + 1);
    bytes.truncate(cut);
    bytes.extend_from_slice(&donor[from..]);
}

/// Ranges of the numbers (`-12`, `3.5e-2`, `1e308`) in `bytes`.
fn numbers(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let mut start = i;
        if start > 0 && matches!(bytes[start - 1], b'-' | b'+') {
            start -= 1;
        }
        let mut end = i;
        while end < bytes.len()
            && (bytes[end].is_ascii_digit()
                || matches!(bytes[end], b'.' | b'e' | b'E' | b'_')
                || (matches!(bytes[end], b'-' | b'+')
                    && matches!(bytes.get(end.wrapping_sub(1)), Some(b'e' | b'E'))))
        {
            end += 1;
        }
        found.push((start, end));
        i = end.max(i + 1);
    }
    found
}

fn replace_number(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let found = numbers(bytes);
    let Some(&(start, end)) = rng.pick(&found) else {
        return;
    };
    let replacement: Vec<u8> = match rng.below(6) {
        // A neighbour of the number that was there.
        0 => {
            let text = String::from_utf8_lossy(&bytes[start..end]).into_owned();
            match text.parse::<i128>() {
                Ok(n) => {
                    let delta = [1i128, -1, 2, -2, 1 << 16, -(1 << 16)][rng.below(6)];
                    n.saturating_add(delta).to_string().into_bytes()
                }
                Err(_) => text
                    .parse::<f64>()
                    .map(|f| (-f).to_string().into_bytes())
                    .unwrap_or_default(),
            }
        }
        _ => rng
            .pick(EDGE_NUMBERS)
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default(),
    };
    bytes.splice(start..end, replacement);
}

fn replace_string(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let quotes: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'"')
        .map(|(i, _)| i)
        .collect();
    if quotes.len() < 2 {
        return;
    }
    let first = rng.below(quotes.len() - 1);
    let (start, end) = (quotes[first] + 1, quotes[first + 1]);
    let replacement = odd_string(rng);
    bytes.splice(start..end, replacement);
}

fn nest(rng: &mut Rng, bytes: &mut Vec<u8>, dictionary: &Dictionary) {
    let Some((open, close)) = rng.pick(&dictionary.nests).cloned() else {
        return;
    };
    let depth = [2usize, 8, 64, 65, 129, 200, 1000, 5000, 20_000][rng.below(9)];
    let at = rng.below(bytes.len() + 1);
    let mut nested = open.repeat(depth);
    if rng.one_in(2) {
        let middle = rng.below(bytes.len() + 1).max(at);
        nested.extend_from_slice(&bytes[at..middle]);
        nested.extend_from_slice(&close.repeat(depth));
        bytes.splice(at..middle, nested);
    } else {
        bytes.splice(at..at, nested);
    }
}

/// Ranges of the lines of `bytes`, newline included.
fn lines(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            found.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < bytes.len() {
        found.push((start, bytes.len()));
    }
    found
}

fn line_op(rng: &mut Rng, bytes: &mut Vec<u8>, donors: &[&[u8]]) {
    let ours = lines(bytes);
    let Some(&(start, end)) = rng.pick(&ours) else {
        return;
    };
    let line = bytes[start..end].to_vec();
    let at = rng
        .pick(&ours)
        .map_or(bytes.len(), |&(line_start, _)| line_start);
    match rng.below(4) {
        0 => {
            bytes.splice(at..at, line);
        }
        1 => {
            bytes.drain(start..end);
        }
        2 => {
            // A line of another input, e.g. a key this one does not have.
            let Some(donor) = rng.pick(donors) else {
                return;
            };
            let theirs = lines(donor);
            if let Some(&(s, e)) = rng.pick(&theirs) {
                let mut new = donor[s..e].to_vec();
                if !new.ends_with(b"\n") {
                    new.push(b'\n');
                }
                bytes.splice(at..at, new);
            }
        }
        _ => {
            // Move the line elsewhere.
            bytes.drain(start..end);
            let at = at.min(bytes.len());
            bytes.splice(at..at, line);
        }
    }
}

fn flip_case(rng: &mut Rng, bytes: &mut [u8]) {
    let (start, end) = random_range(rng, bytes.len());
    for byte in &mut bytes[start..end] {
        if byte.is_ascii_alphabetic() {
            *byte ^= 0x20;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found_with_sign_fraction_and_exponent() {
        let text = b"a = -12, b = 3.5e-2, id = \"x1\", c=7";
        let found: Vec<&[u8]> = numbers(text).iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(found, vec![&b"-12"[..], b"3.5e-2", b"7"]);
    }

    #[test]
    fn mutations_keep_text_parts_valid_utf8_and_within_the_size_cap() {
        let dictionary = Dictionary::new(&["[[rule]]", "id"], &[("[", "]")]);
        let mut rng = Rng::new(7);
        let mut bytes = "id = \"东关村\"\nvalue = 1.5\n".as_bytes().to_vec();
        for _ in 0..20_000 {
            mutate_bytes(&mut rng, &mut bytes, false, &dictionary, &[b"x = 1\n"]);
            assert!(std::str::from_utf8(&bytes).is_ok());
            assert!(bytes.len() <= MAX_PART);
        }
    }
}
