//! The INI dialect of carbon's config files, as Python's `configparser` reads them (carbon
//! wraps it in `OrderedConfigParser` to keep sections in file order).
//!
//! Supported: `[section]` headers, `key = value` and `key: value` (split at the first `=` or
//! `:`), keys case-insensitive (configparser lowercases them, so `xFilesFactor` and
//! `xfilesfactor` are the same key), whole-line comments starting with `#` or `;` (also
//! when indented), blank lines, and continuation lines (indented deeper than their key line,
//! joined with `\n`). Like Python 3's strict parser, a duplicate section or a duplicate key
//! in one section is an error (carbon would refuse to start). Inline comments are *not*
//! stripped (configparser's default), so `retentions = 60:1d # x` is a bad retention, as in
//! carbon.

use crate::error::{Error, Result};

/// One `[name]` block with its entries in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Section {
    /// Text between the brackets, trimmed.
    pub name: String,
    /// 1-based line of the header.
    pub line: usize,
    /// Entries in file order.
    pub entries: Vec<Entry>,
}

/// One `key = value` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// Lowercased, trimmed key.
    pub key: String,
    /// Trimmed value, continuation lines joined with `\n`.
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
}

impl Section {
    /// The entry for `key` (lowercase), if present.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

fn config_err(file: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Config {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Parses `text` (the contents of `file`, used in error messages) into sections.
pub(crate) fn parse(text: &str, file: &str) -> Result<Vec<Section>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: Vec<Section> = Vec::new();
    // Indentation of the key line whose value may still continue.
    let mut open_key_indent: Option<usize> = None;

    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indent = indent_of(raw);

        if let (Some(key_indent), Some(section)) = (open_key_indent, sections.last_mut())
            && indent > key_indent
        {
            // Continuation of the previous value (configparser multi-line values).
            if let Some(entry) = section.entries.last_mut() {
                if !entry.value.is_empty() {
                    entry.value.push('\n');
                }
                entry.value.push_str(trimmed);
                continue;
            }
        }

        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(close) = rest.rfind(']') else {
                return Err(config_err(
                    file,
                    lineno,
                    format!("unterminated section header {trimmed:?}"),
                ));
            };
            let name = rest[..close].trim();
            let tail = rest[close + 1..].trim();
            if !tail.is_empty() && !tail.starts_with('#') && !tail.starts_with(';') {
                return Err(config_err(
                    file,
                    lineno,
                    format!("unexpected text after section header: {tail:?}"),
                ));
            }
            if name.is_empty() {
                return Err(config_err(file, lineno, "empty section name"));
            }
            if let Some(prev) = sections.iter().find(|s| s.name == name) {
                return Err(config_err(
                    file,
                    lineno,
                    format!(
                        "duplicate section [{name}] (first defined on line {})",
                        prev.line
                    ),
                ));
            }
            sections.push(Section {
                name: name.to_string(),
                line: lineno,
                entries: Vec::new(),
            });
            open_key_indent = None;
            continue;
        }

        let Some(delim) = trimmed.find(['=', ':']) else {
            return Err(config_err(
                file,
                lineno,
                format!("expected `key = value`, found {trimmed:?}"),
            ));
        };
        let key = trimmed[..delim].trim().to_ascii_lowercase();
        let value = trimmed[delim + 1..].trim();
        if key.is_empty() {
            return Err(config_err(
                file,
                lineno,
                format!("missing key before {:?}", &trimmed[delim..delim + 1]),
            ));
        }
        let Some(section) = sections.last_mut() else {
            return Err(config_err(
                file,
                lineno,
                format!("key {key:?} outside a [section]"),
            ));
        };
        if let Some(prev) = section.get(&key) {
            return Err(config_err(
                file,
                lineno,
                format!(
                    "duplicate key {key:?} in [{}] (first set on line {})",
                    section.name, prev.line
                ),
            ));
        }
        section.entries.push(Entry {
            key,
            value: value.to_string(),
            line: lineno,
        });
        open_key_indent = Some(indent);
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments_and_both_delimiters() {
        let text = "# top comment\n; other comment\n\n[a]\npattern = ^x\\.\nRetentions: 60:1d\n  # indented comment\n[ b ]\nkey=v=w\n";
        let s = parse(text, "f.conf").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "a");
        assert_eq!(s[0].line, 4);
        assert_eq!(s[0].get("pattern").unwrap().value, "^x\\.");
        assert_eq!(s[0].get("retentions").unwrap().value, "60:1d");
        assert_eq!(s[0].get("retentions").unwrap().line, 6);
        assert_eq!(s[1].name, "b");
        // Split at the first delimiter only.
        assert_eq!(s[1].get("key").unwrap().value, "v=w");
    }

    #[test]
    fn first_delimiter_wins_between_colon_and_equals() {
        let s = parse("[a]\nretentions: 10s:6h\nx = a:b\n", "f").unwrap();
        assert_eq!(s[0].get("retentions").unwrap().value, "10s:6h");
        assert_eq!(s[0].get("x").unwrap().value, "a:b");
    }

    #[test]
    fn continuation_lines_join() {
        let s = parse("[a]\nretentions = 10s:6h,\n    1m:7d\npattern = x\n", "f").unwrap();
        assert_eq!(s[0].get("retentions").unwrap().value, "10s:6h,\n1m:7d");
        assert_eq!(s[0].get("pattern").unwrap().value, "x");
    }

    #[test]
    fn equally_indented_lines_are_keys_not_continuations() {
        let s = parse("[a]\n  pattern = x\n  retentions = 60:1\n", "f").unwrap();
        assert_eq!(s[0].entries.len(), 2);
    }

    fn err_line(text: &str) -> (usize, String) {
        match parse(text, "bad.conf") {
            Err(Error::Config {
                file,
                line,
                message,
            }) => {
                assert_eq!(file, "bad.conf");
                (line, message)
            }
            other => panic!("expected config error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(err_line("pattern = x\n").0, 1);
        assert!(err_line("pattern = x\n").1.contains("outside"));
        assert_eq!(
            err_line("[a]\n\njunk\n"),
            (3, "expected `key = value`, found \"junk\"".into())
        );
        assert_eq!(err_line("[a\n").0, 1);
        assert_eq!(err_line("[]\n").0, 1);
        assert_eq!(err_line("[a]\n= v\n").0, 2);
        assert_eq!(err_line("[a]\nx=1\n[a]\n").0, 3);
        assert!(err_line("[a]\nx=1\nX=2\n").1.contains("duplicate key"));
        assert_eq!(err_line("[a] junk\n").0, 1);
    }

    #[test]
    fn bom_and_crlf_are_tolerated() {
        let s = parse("\u{feff}[a]\r\npattern = x\r\n", "f").unwrap();
        assert_eq!(s[0].get("pattern").unwrap().value, "x");
    }
}
