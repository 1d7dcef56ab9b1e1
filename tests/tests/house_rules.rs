//! House rules a machine can check on the sources (ARCHITECTURE.md, "Cross-cutting concerns",
//! "House rules"): every Rust file opens with a `//!` line saying what it is for, and no
//! function runs over 80 lines unless a `// Long: <reason>` comment directly above it says why.
//! Test code is exempt from the length rule (test files, `tests.rs` modules, what follows
//! `#[cfg(test)] mod`, `#[test]` functions); the vendored copy of a dependency and build output
//! are not ours and not read.

use std::path::{Path, PathBuf};

/// Longest function, in lines from its `fn` line to its closing brace, without a reason.
const MAX_LINES: usize = 80;

/// The marker that gives a long function its reason.
const MARKER: &str = "// Long:";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// Every `.rs` file of the workspace's own crates, sorted.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    const SKIP: &[&str] = &["target", "vendor", "node_modules", ".git"];
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !SKIP.contains(&name.as_str()) && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The text with comments, string and character literals blanked to spaces (line breaks
/// kept), so braces inside them are not counted. Lifetimes stay as they are.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#, …
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let closing: Vec<char> = closing.chars().collect();
            while j < chars.len() && !chars[j..].starts_with(&closing) {
                j += 1;
            }
            let end = (j + closing.len()).min(chars.len());
            for &k in &chars[i..end] {
                out.push(blank(k));
            }
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{7b}') or a lifetime ('a).
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&k| k == '\'')
                    .map(|p| i + 2 + p + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &k in &chars[i..end.min(chars.len())] {
                        out.push(blank(k));
                    }
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A function's name, when `line` (code only) starts a function item.
fn function_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    loop {
        let before = rest;
        for prefix in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "async ",
            "const ",
            "unsafe ",
        ] {
            if let Some(r) = rest.strip_prefix(prefix) {
                rest = r.trim_start();
            }
        }
        if let Some(r) = rest.strip_prefix("extern \"C\" ") {
            rest = r.trim_start();
        }
        if rest == before {
            break;
        }
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// A function that runs over the limit without a reason: `path:line name (n lines)`.
fn long_functions(path: &str, text: &str) -> Vec<String> {
    let code = code_only(text);
    let code_lines: Vec<&str> = code.lines().collect();
    let raw_lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (index, line) in code_lines.iter().enumerate() {
        if line.trim_start().starts_with("mod ")
            && index > 0
            && raw_lines[index - 1].trim() == "#[cfg(test)]"
        {
            break; // the rest of the file is test code
        }
        let Some(name) = function_name(line) else {
            continue;
        };
        // The attributes and comments directly above.
        let mut above = index;
        while above > 0 {
            let previous = raw_lines[above - 1].trim_start();
            if previous.starts_with("#[") || previous.starts_with("//") {
                above -= 1;
            } else {
                break;
            }
        }
        let header = &raw_lines[above..index];
        if header.iter().any(|l| l.contains("test]")) {
            continue;
        }
        let Some(lines) = body_lines(&code_lines[index..]) else {
            continue;
        };
        if lines > MAX_LINES && !header.iter().any(|l| l.trim_start().starts_with(MARKER)) {
            found.push(format!("{path}:{} {name} ({lines} lines)", index + 1));
        }
    }
    found
}

/// The lines from a function's `fn` line to its closing brace; `None` for a declaration
/// without a body.
fn body_lines(lines: &[&str]) -> Option<usize> {
    let mut depth = 0i64;
    let mut started = false;
    for (offset, line) in lines.iter().enumerate() {
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    started = true;
                }
                '}' => depth -= 1,
                ';' if !started && depth == 0 => return None,
                _ => {}
            }
            if started && depth == 0 {
                return Some(offset + 1);
            }
        }
    }
    None
}

fn is_test_file(relative: &str) -> bool {
    relative.contains("/tests/")
        || relative.ends_with("/tests.rs")
        || relative.starts_with("tests/")
}

#[test]
fn every_rust_file_opens_with_a_line_saying_what_it_is_for() {
    let root = workspace_root();
    let mut missing = Vec::new();
    for path in rust_files(&root) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.trim_start().starts_with("//!") {
            missing.push(
                path.strip_prefix(&root)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            );
        }
    }
    assert!(
        missing.is_empty(),
        "files without an opening `//!` line:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_function_runs_over_80_lines_without_a_reason() {
    let root = workspace_root();
    let mut found = Vec::new();
    let mut scanned = 0;
    for path in rust_files(&root) {
        let relative = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if is_test_file(&relative) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        scanned += 1;
        found.extend(long_functions(&relative, &text));
    }
    assert!(
        scanned > 100,
        "only {scanned} source files found under {root:?}"
    );
    assert!(
        found.is_empty(),
        "functions over {MAX_LINES} lines without a `{MARKER} <reason>` comment above them \
         (split them along their seams, or say why not):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_counts_braces_in_code_only_and_honours_the_marker() {
    let body: String = (0..90)
        .map(|i| format!("    let x{i} = \"}}\";\n"))
        .collect();
    let long = format!("/// Does a thing.\nfn long_one() {{\n{body}}}\n");
    assert_eq!(
        long_functions("a.rs", &long),
        vec!["a.rs:2 long_one (92 lines)".to_owned()]
    );
    let marked = format!("// Long: one line per case.\n{long}");
    assert!(long_functions("a.rs", &marked).is_empty());
    let lifetimes =
        format!("pub(crate) async fn short<'a>(x: &'a str) -> char {{\n    '{{'\n}}\n{long}");
    assert_eq!(
        long_functions("a.rs", &lifetimes),
        vec!["a.rs:5 long_one (92 lines)".to_owned()]
    );
    let raw =
        format!("fn raw() {{\n    let s = r#\"{{ \"#;\n}}\n#[cfg(test)]\nmod tests {{\n{long}}}\n");
    assert!(long_functions("a.rs", &raw).is_empty());
    let declaration = "trait T {\n    fn declared(&self);\n}\n";
    assert!(long_functions("a.rs", declaration).is_empty());
}
