//! Python's number formatting, byte for byte: `repr(float)`, `"%f"`, `"%g"`, list reprs.
//!
//! Scripts parse the output of whisper's tools, so `1.0` must stay `1.0` (Rust prints `1`)
//! and `1e+16` must stay `1e+16` (Rust prints `10000000000000000`). Rust's `{:e}` gives the
//! shortest round-trip digits and `{:.Ne}` correctly rounded ones, the same digits CPython's
//! dtoa picks; only the layout differs, and that is what this module redoes.

/// Splits Rust's `{:e}` output (`-1.25e-7`) into sign, digits without the point, exponent.
fn split_exp(s: &str) -> (bool, String, i32) {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    (neg, digits, exp.parse().unwrap_or(0))
}

/// `inf`, `-inf`, `nan` as Python spells them, or None for finite values.
fn non_finite(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("nan")
    } else if v == f64::INFINITY {
        Some("inf")
    } else if v == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

/// Lays out `digits` (first digit before the point, decimal exponent `exp`) in fixed notation.
fn fixed(digits: &str, exp: i32, min_frac: usize) -> String {
    let mut out = String::new();
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            if min_frac > 0 {
                out.push('.');
                out.push_str(&"0".repeat(min_frac));
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// Python's exponent suffix: sign always, at least two digits (`e+16`, `e-05`).
fn exp_suffix(exp: i32) -> String {
    format!(
        "e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    )
}

/// `repr(float)` / `str(float)` of Python 3: shortest round-trip digits, fixed notation for
/// 1e-4 <= |v| < 1e16 (with `.0` on integers), scientific with `e+XX` otherwise.
pub fn repr(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s.to_string();
    }
    let (neg, digits, exp) = split_exp(&format!("{v:e}"));
    let sign = if neg { "-" } else { "" };
    // CPython switches to scientific when decpt = exp + 1 is > 16 or <= -4.
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        format!("{sign}{m}{}", exp_suffix(exp))
    } else {
        format!("{sign}{}", fixed(&digits, exp, 1))
    }
}

/// `"%.{prec}f" % v`.
pub fn format_f(v: f64, prec: usize) -> String {
    match non_finite(v) {
        Some(s) => s.to_string(),
        None => format!("{v:.prec$}"),
    }
}

/// `"%.{prec}g" % v` (no `#` flag): correctly rounded to `prec` significant digits, trailing
/// zeros dropped, scientific when the exponent is < -4 or >= prec.
pub fn format_g(v: f64, prec: usize) -> String {
    if let Some(s) = non_finite(v) {
        return s.to_string();
    }
    let prec = prec.max(1);
    let (neg, digits, exp) = split_exp(&format!("{:.*e}", prec - 1, v));
    let sign = if neg { "-" } else { "" };
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    if !(-4..prec as i32).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        format!("{sign}{m}{}", exp_suffix(exp))
    } else {
        format!("{sign}{}", fixed(digits, exp, 0))
    }
}

/// `"%{width}s"`-style right alignment, as `%10.35g` pads.
pub fn pad_left(s: &str, width: usize) -> String {
    format!("{s:>width$}")
}

/// `str(list)` of floats and Nones: `[1.0, None, 2.5]`; NaN stands for None.
pub fn list_repr(values: &[f64]) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|v| {
            if v.is_nan() {
                "None".to_string()
            } else {
                repr(*v)
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Python's `repr(str)` (shared with the library's hash-ring keys).
pub use carbonlite::python::str_repr;

/// Python's `float(str)`: surrounding whitespace ignored, `inf`/`nan`/`infinity` in any case,
/// `_` allowed between digits. None where Python raises ValueError.
pub fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_whitespace());
    let cleaned = strip_underscores(t)?;
    let body = cleaned.trim_start_matches(['+', '-']);
    if body.len() + 1 < cleaned.len() {
        return None; // more than one sign
    }
    let lower = body.to_ascii_lowercase();
    let special = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    if !special
        && !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// Python's `int(str)` (base 10): whitespace, one sign, `_` between digits.
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim_matches(|c: char| c.is_whitespace());
    let cleaned = strip_underscores(t)?;
    let body = cleaned.strip_prefix(['+', '-']).unwrap_or(&cleaned);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    cleaned.parse::<i64>().ok()
}

/// Removes `_` that sit between two digits; None if any other `_` is present.
fn strip_underscores(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if c == '_' {
            let ok = i > 0
                && b[i - 1].is_ascii_digit()
                && b.get(i + 1).is_some_and(|n| n.is_ascii_digit());
            if !ok {
                return None;
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// optparse's `int` type: `0x`/`0b`/leading-`0` octal prefixes, else `int(s)`.
pub fn parse_optparse_int(s: &str) -> Option<i64> {
    let lower = s.get(..2).map(|p| p.to_ascii_lowercase());
    let (radix, body) = match lower.as_deref() {
        Some("0x") => (16, s),
        Some("0b") => (2, if s.len() > 2 { &s[2..] } else { "0" }),
        _ if s.starts_with('0') => (8, s),
        _ => return parse_int(s),
    };
    // int(val, radix): whitespace and sign allowed, the 0x/0o prefix is accepted for its base.
    let t = body.trim_matches(|c: char| c.is_whitespace());
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let t = strip_underscores(t)?;
    let lt = t.to_ascii_lowercase();
    let digits = match radix {
        16 => lt.strip_prefix("0x").unwrap_or(&lt).to_string(),
        8 => lt.strip_prefix("0o").unwrap_or(&lt).to_string(),
        _ => lt.clone(),
    };
    if digits.is_empty() {
        return None;
    }
    // Python rejects "0777" in base 8? No: int("0777", 8) == 511; "08" fails.
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        // (value, repr(value)) pairs taken from CPython 3.11.
        let table: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e15, "1000000000000000.0"),
            (123456789012345.6, "123456789012345.6"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::from(0.1f32), "0.10000000149011612"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (100.0, "100.0"),
            (12.25, "12.25"),
        ];
        for (v, want) in table {
            assert_eq!(repr(*v), *want, "repr({v:e})");
        }
    }

    #[test]
    fn format_f_and_g_match_python() {
        let f: &[(f64, usize, &str)] = &[
            (0.25, 6, "0.250000"),
            (0.25, 1, "0.2"),
            (0.125, 2, "0.12"),
            (2.5, 0, "2"),
            (1.5, 0, "2"),
            (1e22, 6, "10000000000000000000000.000000"),
            (-1.0, 6, "-1.000000"),
            (f64::INFINITY, 6, "inf"),
            (f64::NAN, 6, "nan"),
            (1234.5678, 3, "1234.568"),
        ];
        for (v, p, want) in f {
            assert_eq!(format_f(*v, *p), *want, "%.{p}f of {v}");
        }
        let g: &[(f64, usize, &str)] = &[
            (0.5, 6, "0.5"),
            (0.0, 6, "0"),
            (-0.0, 6, "-0"),
            (123456789.125, 6, "1.23457e+08"),
            (123456789.125, 35, "123456789.125"),
            (1e22, 35, "10000000000000000000000"),
            (0.1, 35, "0.1000000000000000055511151231257827"),
            (0.0001, 6, "0.0001"),
            (0.00001, 6, "1e-05"),
            (1e40, 35, "1.0000000000000000303786028427003667e+40"),
            (f64::from(0.1f32), 6, "0.1"),
            (f64::NEG_INFINITY, 35, "-inf"),
            (100000.0, 6, "100000"),
            (1000000.0, 6, "1e+06"),
        ];
        for (v, p, want) in g {
            assert_eq!(format_g(*v, *p), *want, "%.{p}g of {v:e}");
        }
        assert_eq!(pad_left(&format_g(0.0, 35), 10), "         0");
    }

    #[test]
    fn reprs_of_lists_and_strings() {
        assert_eq!(list_repr(&[]), "[]");
        assert_eq!(list_repr(&[1.0, f64::NAN, 2.5]), "[1.0, None, 2.5]");
        assert_eq!(str_repr("abc"), "'abc'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'\"b"), "'a\\'\"b'");
    }

    #[test]
    fn python_number_parsing() {
        assert_eq!(parse_float(" 1.5\n"), Some(1.5));
        assert_eq!(parse_float("1_000.5"), Some(1000.5));
        assert_eq!(parse_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_float("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float("abc"), None);
        assert_eq!(parse_float("1__0"), None);
        assert_eq!(parse_float(""), None);
        assert_eq!(parse_float("--1"), None);
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("-4_2"), Some(-42));
        assert_eq!(parse_int("4.2"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_optparse_int("0x10"), Some(16));
        assert_eq!(parse_optparse_int("0b101"), Some(5));
        assert_eq!(parse_optparse_int("010"), Some(8));
        assert_eq!(parse_optparse_int("0"), Some(0));
        assert_eq!(parse_optparse_int("08"), None);
        assert_eq!(parse_optparse_int("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_optparse_int("abc"), None);
    }
}
