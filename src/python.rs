//! Python's textual forms that byte-compatibility with Graphite's Python tools depends on.

/// Python's `repr(str)`: single quotes unless the text holds one and no double quote;
/// backslashes, quotes and control characters escaped. carbon's hash-ring keys embed it
/// (`"('host', 'inst'):i"`) and whisper's scripts print it.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_repr_quotes_like_python() {
        assert_eq!(str_repr("10.0.0.1"), "'10.0.0.1'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'\"b\\"), "'a\\'\"b\\\\'");
    }
}
