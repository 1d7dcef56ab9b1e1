//! The four fuzz targets, the parsers at the system's trust boundary, and what they share:
//! the [`Target`] interface, error-message normalisation into "kinds" (the fuzzer keeps an
//! input that produces a kind it has not seen), and seed harvesting from the repository's
//! own files (raw strings of unit tests, fenced blocks of READMEs).

pub mod ingest;
pub mod profile;
pub mod registry;
pub mod rules;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::input::Input;
use crate::mutate::Dictionary;
use crate::rng::Rng;

/// One parser under test.
pub trait Target: Sync {
    /// `ingest`, `rules`, `registry` or `profile`.
    fn name(&self) -> &'static str;
    /// The part a raw (headerless) file given to `--replay` becomes.
    fn main_part(&self) -> &'static str;
    /// The starting inputs. They come from the repository's files where it has them.
    fn seeds(&self) -> Vec<Input>;
    /// Tokens and nesting pairs of the format.
    fn dictionary(&self, seeds: &[Input]) -> Dictionary;
    /// How often a part is mutated relative to the others.
    fn weight(&self, _part: &str) -> usize {
        1
    }
    /// Whether a part may hold any bytes (else it stays UTF-8 text).
    fn binary(&self, _part: &str) -> bool {
        false
    }
    /// Changes the input's set of parts (adds, drops, renames one); false if it did nothing.
    fn mutate_parts(&self, _rng: &mut Rng, _input: &mut Input, _corpus: &[Input]) -> bool {
        false
    }
    /// Runs the parser (and the checks of what it documents) on `input` and names the
    /// outcome: `ok:...` or `err:...` with the error message normalised. A failed check
    /// panics, as a bug in the parser does.
    fn run(&self, input: &Input) -> String;
}

/// Every target, in the order `--target all` runs them.
pub fn all() -> Vec<&'static dyn Target> {
    vec![
        &ingest::Ingest,
        &rules::Rules,
        &registry::Registry,
        &profile::Profiles,
    ]
}

/// Words of the formats (field names, enum values): quoted text made of them stays in a kind.
static VOCABULARY: OnceLock<HashSet<String>> = OnceLock::new();

/// Sets the words [`normalise`] keeps: those of the seeds and of the dictionary.
pub fn set_vocabulary(seeds: &[Input], dictionary: &Dictionary) {
    let mut words = HashSet::new();
    let texts = seeds
        .iter()
        .flat_map(|seed| seed.parts.iter().map(|part| part.bytes.as_slice()))
        .chain(dictionary.tokens.iter().map(Vec::as_slice));
    for text in texts {
        for word in text.split(|b| !(b.is_ascii_lowercase() || *b == b'_')) {
            if (1..=32).contains(&word.len()) {
                words.insert(String::from_utf8_lossy(word).into_owned());
            }
        }
    }
    let _ = VOCABULARY.set(words);
}

/// True for a name made of the formats' words (`action.order.priority`).
fn known_name(quoted: &str) -> bool {
    VOCABULARY.get().is_some_and(|words| {
        !quoted.is_empty() && quoted.len() <= 64 && quoted.split('.').all(|w| words.contains(w))
    })
}

/// An error message with what varies from input to input taken out: numbers become `0`,
/// quoted text (`"..."`, `` `...` ``, `'c'`) becomes `_` unless it is a name of the format (a
/// field, a keyword), and it is cut at 140 characters. Two inputs with the same kind failed
/// for the same reason.
pub fn normalise(message: &str) -> String {
    let message = unquoted_values_out(message);
    let chars: Vec<char> = message.chars().collect();
    // A quote closes only before a separator: quoted input may hold the quote character.
    let closes_at = |j: usize| {
        chars
            .get(j + 1)
            .is_none_or(|next| matches!(next, ' ' | ',' | '.' | ':' | ';' | ')' | ']' | '\n'))
    };
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() && out.len() < 140 {
        let c = chars[i];
        if c.is_ascii_digit() {
            out.push('0');
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        // A quoted text: up to the closing quote, skipping backslash escapes. A single quote
        // is one only around a character (`'x'`, `'\u{0}'`), not in "the topic's".
        let close = match c {
            '"' | '`' => (i + 1..chars.len()).try_fold(false, |escaped, j| {
                if escaped {
                    Ok(false)
                } else if chars[j] == '\\' {
                    Ok(true)
                } else if chars[j] == c && closes_at(j) {
                    Err(j)
                } else {
                    Ok(false)
                }
            }),
            '\'' => match (i + 2..chars.len().min(i + 14)).find(|j| chars[*j] == '\'') {
                Some(j) => Err(j),
                None => Ok(false),
            },
            _ => Ok(false),
        };
        match close {
            Err(end) => {
                let quoted: String = chars[i + 1..end].iter().collect();
                out.push(c);
                out.push_str(if known_name(&quoted) { &quoted } else { "_" });
                out.push(c);
                i = end + 1;
            }
            Ok(_) if c == '"' || c == '`' => {
                // Never closed: the rest is the input's text.
                out.push(c);
                out.push('_');
                break;
            }
            Ok(_) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Takes out the input's text where a message shows it without reliable quotes: serde's
/// ``unknown field `X`, expected ...`` (X may itself hold backticks) and the TOML parser's
/// `unexpected keys in table: X, available keys: ...`.
fn unquoted_values_out(message: &str) -> String {
    let mut message = message.to_owned();
    for (opening, closings) in [
        ("unknown variant `", &["`, expected", "`, there are no"][..]),
        ("unknown field `", &["`, expected", "`, there are no"][..]),
        ("unexpected keys in table: ", &[", available keys"][..]),
    ] {
        let Some(start) = message.find(opening) else {
            continue;
        };
        let from = start + opening.len();
        let end = closings
            .iter()
            .filter_map(|closing| message[from..].rfind(closing))
            .max();
        if let Some(end) = end {
            if !known_name(&message[from..from + end]) {
                message.replace_range(from..from + end, "_");
            }
        }
    }
    message
}

/// The repository root: the seeds are its files.
pub fn repo_root() -> PathBuf {
    ::tests::repo_root()
}

/// A file of the repository, or `None` (with a note on stderr) when it is missing: a missing
/// seed file makes the fuzzer weaker, not wrong.
pub fn read(relative: &str) -> Option<String> {
    let path = repo_root().join(relative);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(error) => {
            eprintln!("fuzz: seed file {} skipped: {error}", path.display());
            None
        }
    }
}

/// The files of a repository folder with an extension, sorted.
pub fn files_in(relative: &str, extension: &str) -> Vec<PathBuf> {
    let dir = repo_root().join(relative);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|e| e == extension))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The raw string literals (`r"..."`, `r#"..."#`, `r##"..."##`) of a Rust source file.
pub fn raw_strings(source: &str) -> Vec<String> {
    let bytes = source.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let starts = bytes[i] == b'r'
            && matches!(bytes[i + 1], b'#' | b'"')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
        let open = i + 1 + hashes;
        if bytes.get(open) != Some(&b'"') {
            i += 1;
            continue;
        }
        let closing = format!("\"{}", "#".repeat(hashes));
        match source.get(open + 1..).and_then(|body| body.find(&closing)) {
            Some(length) => {
                found.push(source[open + 1..open + 1 + length].to_owned());
                i = open + 1 + length + closing.len();
            }
            None => i += 1,
        }
    }
    found
}

/// The contents of the fenced code blocks of a Markdown text.
pub fn fenced_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(String::new()),
            }
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

/// Splits a TOML text before each line that is one of `headers` (e.g. `[[rule]]`): the
/// preamble, then one chunk per table with its sub-tables.
pub fn split_tables(text: &str, headers: &[&str]) -> (String, Vec<String>) {
    let mut preamble = String::new();
    let mut chunks: Vec<String> = Vec::new();
    for line in text.lines() {
        if headers.contains(&line.trim()) {
            chunks.push(String::new());
        }
        let target = chunks.last_mut().unwrap_or(&mut preamble);
        target.push_str(line);
        target.push('\n');
    }
    (preamble, chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_drop_numbers_and_quoted_values_but_keep_names_of_the_format() {
        let seeds = [Input::new([(
            "rules",
            "[[rule]]\nvalue = 1\naction = { order = {} }\n",
        )])];
        set_vocabulary(&seeds, &Dictionary::default());
        assert_eq!(
            normalise("rules.toml:12:7: rule \"x9\" field `value`: \"room\" is not a canonical value name"),
            "rules.toml:0:0: rule \"_\" field `value`: \"_\" is not a canonical value name"
        );
        assert_eq!(normalise("field `action.order`"), "field `action.order`");
        assert_eq!(
            normalise("topic \"a\\\"b\" has character 'A' in the topic's id"),
            "topic \"_\" has character '_' in the topic's id"
        );
        assert_eq!(
            normalise("expected value at line 1 column 23"),
            "expected value at line 0 column 0"
        );
        assert_eq!(
            normalise("unknown variant `a`b` [[x`, expected `online` or `offline` at line 1"),
            "unknown variant `_`, expected `_` or `_` at line 0"
        );
        assert_eq!(
            normalise("unexpected keys in table: PRIORity, x, available keys: category"),
            "unexpected keys in table: _, available keys: category"
        );
        assert_eq!(normalise("topic \"never closed"), "topic \"_");
    }

    #[test]
    fn raw_strings_and_fenced_blocks_are_found() {
        let source = "let a = r#\"[[rule]]\nid = \"x\"\"#; let b = r\"plain\"; let c = \"r#\";";
        assert_eq!(raw_strings(source), vec!["[[rule]]\nid = \"x\"", "plain"]);
        assert_eq!(
            fenced_blocks("text\n```toml\n[[rule]]\n```\nmore"),
            vec!["[[rule]]\n"]
        );
        let (preamble, chunks) = split_tables(
            "a = 1\n[[rule]]\nb = 2\n[[rule.x]]\n[[rule]]\n",
            &["[[rule]]"],
        );
        assert_eq!(preamble, "a = 1\n");
        assert_eq!(chunks, vec!["[[rule]]\nb = 2\n[[rule.x]]\n", "[[rule]]\n"]);
    }
}
