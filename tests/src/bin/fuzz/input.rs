//! A fuzz input: named parts of bytes (a topic and a payload, the CSV files of a registry, a
//! profile and the register words it decodes), and the file format crashing inputs are saved
//! in so `--replay` can run them again.
//!
//! The file is `heating-fuzz-input 1`, a `target NAME` line, then for each part a line
//! `part NAME LENGTH`, exactly LENGTH raw bytes and a newline. A file without the first line
//! is read as the target's main part as it is (a rule file, a profile, a payload).

use std::borrow::Cow;

const MAGIC: &str = "heating-fuzz-input 1";

/// One named part of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// An input: its parts in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    pub parts: Vec<Part>,
}

impl Input {
    /// An input of `(name, bytes)` parts.
    pub fn new<N: Into<String>, B: Into<Vec<u8>>>(
        parts: impl IntoIterator<Item = (N, B)>,
    ) -> Input {
        Input {
            parts: parts
                .into_iter()
                .map(|(name, bytes)| Part {
                    name: name.into(),
                    bytes: bytes.into(),
                })
                .collect(),
        }
    }

    /// The bytes of the part `name`, if the input has it.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.parts
            .iter()
            .find(|part| part.name == name)
            .map(|part| part.bytes.as_slice())
    }

    /// The part `name` as text (invalid UTF-8 replaced), empty when missing.
    pub fn text(&self, name: &str) -> Cow<'_, str> {
        String::from_utf8_lossy(self.get(name).unwrap_or_default())
    }

    /// Total size of the parts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|part| part.bytes.len()).sum()
    }

    /// The file form of this input for `target`.
    pub fn to_file(&self, target: &str) -> Vec<u8> {
        let mut out = format!("{MAGIC}\ntarget {target}\n").into_bytes();
        for part in &self.parts {
            out.extend_from_slice(format!("part {} {}\n", part.name, part.bytes.len()).as_bytes());
            out.extend_from_slice(&part.bytes);
            out.push(b'\n');
        }
        out
    }

    /// Reads a file written by [`Input::to_file`]: the target it names and the input. A file
    /// in any other form is the part `main_part` (of the target given on the command line).
    pub fn from_file(bytes: &[u8], main_part: &str) -> Result<(Option<String>, Input), String> {
        let Some(mut rest) = bytes.strip_prefix(format!("{MAGIC}\n").as_bytes()) else {
            return Ok((None, Input::new([(main_part, bytes)])));
        };
        let mut target = None;
        let mut input = Input::default();
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or("a header line without its newline")?;
            let line = std::str::from_utf8(&rest[..end]).map_err(|_| "a header is not UTF-8")?;
            rest = &rest[end + 1..];
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["target", name] => target = Some((*name).to_owned()),
                ["part", name, length] => {
                    let length: usize = length
                        .parse()
                        .map_err(|_| format!("bad part length in {line:?}"))?;
                    if rest.len() < length + 1 {
                        return Err(format!("part {name} is cut short"));
                    }
                    input.parts.push(Part {
                        name: (*name).to_owned(),
                        bytes: rest[..length].to_vec(),
                    });
                    rest = &rest[length + 1..];
                }
                _ => return Err(format!("unexpected line {line:?}")),
            }
        }
        Ok((target, input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_form_round_trips_any_bytes() {
        let input = Input::new([
            ("topic", b"a\nb".to_vec()),
            ("payload", vec![0xff, b'\n', 0]),
        ]);
        let file = input.to_file("ingest");
        assert_eq!(
            Input::from_file(&file, "payload"),
            Ok((Some("ingest".to_owned()), input))
        );
        assert_eq!(
            Input::from_file(b"[[rule]]", "rules"),
            Ok((None, Input::new([("rules", b"[[rule]]".to_vec())])))
        );
    }
}
