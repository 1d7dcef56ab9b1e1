//! Byte comparisons of short strings (value names, device ids) without out-of-line `memcmp` or
//! `memcpy` calls, for the per-reading fast paths of the wire types and the rule engine.

/// Up to 8 bytes as a little-endian word, zero padded, without a variable-length copy (which
/// would be an out-of-line `memcpy` call).
pub fn tail_word(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .enumerate()
        .fold(0, |word, (i, byte)| word | u64::from(*byte) << (8 * i))
}

/// Byte-wise equality of two short strings without an out-of-line `memcmp` call: 8-byte words,
/// the last word overlapping the one before it (strings shorter than a word: one zero-padded
/// word; the lengths are equal, so padding cannot hide a difference).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |w: &[u8; 8]| u64::from_le_bytes(*w);
    let (Some(a_last), Some(b_last)) = (a.last_chunk::<8>(), b.last_chunk::<8>()) else {
        return tail_word(a) == tail_word(b);
    };
    if word(a_last) != word(b_last) {
        return false;
    }
    a.chunks_exact(8)
        .zip(b.chunks_exact(8))
        .all(|(x, y)| x.first_chunk::<8>().map(word) == y.first_chunk::<8>().map(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_equality() {
        let words = [
            "",
            "a",
            "b",
            "abcdefg",
            "abcdefh",
            "abcdefgh",
            "abcdefghi",
            "abcdefghj",
            "bbcdefghi",
            "abcdefgh\0",
            "abcdefghijklmnopq",
            "abcdefghijklmnopr",
            "xbcdefghijklmnopq",
            "abcdefghxjklmnopq",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    same_bytes(a.as_bytes(), b.as_bytes()),
                    a == b,
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn tail_word_pads_with_zeros() {
        assert_eq!(tail_word(b""), 0);
        assert_eq!(tail_word(b"a"), 0x61);
        assert_eq!(tail_word(b"abcdefghij"), tail_word(b"abcdefgh"));
    }
}
