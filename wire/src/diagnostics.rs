//! Positions in TOML files for error messages: byte offset to line:column, and a dotted field
//! path (`devices[2].unit_id`) to the place it is written, so every config or profile error can
//! name file, line and field.

/// 1-based line and column of a byte offset in `text` (columns count characters).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Finds where the value at `path` (e.g. `devices[2].unit_id`, `mqtt.host`) is written in the
/// TOML `text`, as 1-based line and column. Falls back to the deepest parent that exists.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut current = toml::de::DeValue::Table(root.into_inner());
    for segment in split_path(path) {
        let next = match (&current, segment) {
            (toml::de::DeValue::Table(table), Segment::Key(key)) => table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key)
                .map(|(_, v)| v.clone()),
            (toml::de::DeValue::Array(array), Segment::Index(i)) => array.get(i).cloned(),
            _ => None,
        };
        match next {
            Some(value) => {
                span = value.span();
                current = value.into_inner();
            }
            None => break,
        }
    }
    Some(line_col(text, span.start))
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            let key = &rest[..open];
            if !key.is_empty() {
                segments.push(Segment::Key(key));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(index) = stripped[..close].parse() {
                    segments.push(Segment::Index(index));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            segments.push(Segment::Key(rest));
        }
    }
    segments
}

/// Formats `origin:line:column` for a field path, or just `origin` if it cannot be found.
pub fn place(origin: &str, text: &str, path: &str) -> String {
    match locate(text, path) {
        Some((line, column)) => format!("{origin}:{line}:{column}"),
        None => origin.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "name = \"box\"\n\n[[devices]]\nid = \"a\"\n\n[[devices]]\nid = \"b\"\nunit_id = 0\n";

    #[test]
    fn finds_array_of_table_fields() {
        assert_eq!(locate(TEXT, "devices[1].unit_id"), Some((8, 11)));
        assert_eq!(locate(TEXT, "name"), Some((1, 8)));
    }

    #[test]
    fn falls_back_to_the_parent() {
        assert_eq!(locate(TEXT, "devices[1].missing").map(|p| p.0), Some(6));
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("a\n°C x", 6), (2, 4));
    }
}
