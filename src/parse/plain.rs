//! Graphite's plaintext protocol, `name value timestamp\n`, with carbon's rules (a superset
//! of go-carbon's, which only allows single spaces).
//!
//! carbon (`lib/carbon/protocols.py`) does `line.strip().split()` and wants exactly three
//! fields, so fields are separated by any run of ASCII whitespace (space, tab, `\r`, `\x0b`,
//! `\x0c`) and leading/trailing whitespace, including the `\r` of `\r\n`, is ignored. The
//! value and timestamp go through `float()`: here `str::parse::<f64>`, which takes the same
//! spellings (`1e3`, `.5`, `+2`, `inf`, `-Infinity`, `nan`) except Python's digit
//! underscores (`1_000`). Then, as carbon's `metricReceived`:
//! - a NaN value is refused (carbon drops it silently; here it is counted as rejected);
//! - ±inf values are kept;
//! - the timestamp is truncated toward zero, and if that gives `-1` the point is stamped
//!   `now` (carbon issue #54, `int(ts) == -1`, so `-1.5` counts too).
//!
//! Stricter than carbon, because whisper can never store them: non-finite timestamps,
//! timestamps below 0 (other than the `-1` above) and above `u32::MAX` are refused here
//! instead of failing later in the writer. A name that is not UTF-8 is refused (carbon's
//! decode would drop the connection). Names are not otherwise validated here: that is
//! [`crate::names`]' job; each good line says whether its name is plain
//! ([`names::is_plain`]), a check the parser runs instead of the UTF-8 one.
//!
//! Hot path: one pass over the bytes per line, no allocation unless the line is bad, and a
//! fast path for plain integers (most values and timestamps).

use super::mask::eq_mask;
use crate::error::{Error, Result};
use crate::names;
use crate::points::Point;

/// Bytes of a bad line quoted in its error, as carbon truncates its log message.
pub const MAX_QUOTED_LINE: usize = 400;

/// Longest all-digit field taken by the integer fast path (10^18 < 2^63).
const FAST_DIGITS: usize = 18;

/// Python's `bytes.split()` whitespace.
const fn ws_table() -> [bool; 256] {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[0x0b] = true;
    t[0x0c] = true;
    t
}
static WS: [bool; 256] = ws_table();

#[inline(always)]
fn is_ws(b: u8) -> bool {
    WS[usize::from(b)]
}

/// Field boundaries found in one line.
struct Fields {
    /// (start, end) of the first three fields.
    spans: [(usize, usize); 3],
    /// Number of fields seen (may exceed 3).
    count: usize,
    /// Where the line ends: index of its `\n` (when `STOP_AT_NL`) or `buf.len()`.
    end: usize,
}

/// Splits `buf` into whitespace-separated fields up to the first `\n` (or, without
/// `STOP_AT_NL`, to the end, `\n` counting as whitespace).
#[inline(always)]
fn scan<const STOP_AT_NL: bool>(buf: &[u8]) -> Fields {
    let len = buf.len();
    let mut f = Fields {
        spans: [(0, 0); 3],
        count: 0,
        end: len,
    };
    let mut i = 0;
    loop {
        while i < len && is_ws(buf[i]) {
            if STOP_AT_NL && buf[i] == b'\n' {
                f.end = i;
                return f;
            }
            i += 1;
        }
        if i == len {
            return f;
        }
        let s = i;
        while i < len && !is_ws(buf[i]) {
            i += 1;
        }
        if f.count < 3 {
            f.spans[f.count] = (s, i);
        }
        f.count += 1;
    }
}

fn parse_error(line: &[u8], reason: impl Into<String>) -> Error {
    let line = line.trim_ascii();
    let shown = &line[..line.len().min(MAX_QUOTED_LINE)];
    Error::Parse {
        line: String::from_utf8_lossy(shown).into_owned(),
        reason: reason.into(),
    }
}

#[inline(always)]
fn parse_digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > FAST_DIGITS {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    Some(v)
}

/// Most significant digits the decimal fast path takes: 10^15 < 2^53, so the digits are
/// an exact f64.
const FAST_DECIMAL_DIGITS: usize = 15;

/// Exact powers of ten for the decimal fast path.
const POW10: [f64; FAST_DECIMAL_DIGITS + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `digits.digits` with at most 15 digits in all (either side may be empty, not both).
/// Clinger's fast path: the digits and the power of ten are both exact f64s, and IEEE
/// division rounds correctly, so the result equals a correctly rounded parse of the decimal.
#[inline(always)]
fn parse_short_decimal(b: &[u8]) -> Option<f64> {
    let dot = b.iter().position(|&c| c == b'.')?;
    let (int, frac) = (&b[..dot], &b[dot + 1..]);
    let n = int.len() + frac.len();
    if n == 0 || n > FAST_DECIMAL_DIGITS {
        return None;
    }
    let mut m: u64 = 0;
    for &c in int.iter().chain(frac) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        m = m * 10 + u64::from(d);
    }
    Some(m as f64 / POW10[frac.len()])
}

/// Python `float()` of a field: integer and short-decimal fast paths, else `str::parse`.
#[inline(always)]
fn parse_float(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if let Some(v) = parse_digits(digits) {
        // Exact i64, then one correctly rounded conversion: same as parsing the decimal.
        let v = v as f64;
        return Some(if neg { -v } else { v });
    }
    if let Some(v) = parse_short_decimal(digits) {
        return Some(if neg { -v } else { v });
    }
    std::str::from_utf8(b).ok()?.parse::<f64>().ok()
}

#[inline(always)]
fn parse_timestamp(b: &[u8], now: i64) -> std::result::Result<i64, &'static str> {
    if let Some(v) = parse_digits(b) {
        return if v > u64::from(u32::MAX) {
            Err("timestamp is beyond 2106 (whisper stores u32)")
        } else {
            Ok(v as i64)
        };
    }
    let f = parse_float(b).ok_or("timestamp is not a number")?;
    if !f.is_finite() {
        return Err("timestamp is not finite");
    }
    let t = f.trunc();
    if t == -1.0 {
        return Ok(now);
    }
    if t < 0.0 {
        return Err("negative timestamp (only -1, meaning now, is allowed)");
    }
    if t > f64::from(u32::MAX) {
        return Err("timestamp is beyond 2106 (whisper stores u32)");
    }
    Ok(t as i64)
}

/// Turns the scanned fields of `line` into a point; `None` for a blank line.
#[inline(always)]
fn build<'a>(line: &'a [u8], f: &Fields, now: i64) -> Option<Result<(&'a str, Point)>> {
    match f.count {
        0 => return None,
        3 => {}
        n => {
            return Some(Err(parse_error(
                line,
                format!("expected 3 fields (name value timestamp), got {n}"),
            )));
        }
    }
    let [(ns, ne), (vs, ve), (ts, te)] = f.spans;
    let Ok(name) = std::str::from_utf8(&line[ns..ne]) else {
        return Some(Err(parse_error(line, "metric name is not valid UTF-8")));
    };
    let value = match parse_float(&line[vs..ve]) {
        Some(v) if v.is_nan() => return Some(Err(parse_error(line, "value is NaN"))),
        Some(v) => v,
        None => return Some(Err(parse_error(line, "value is not a number"))),
    };
    let timestamp = match parse_timestamp(&line[ts..te], now) {
        Ok(t) => t,
        Err(reason) => return Some(Err(parse_error(line, reason))),
    };
    Some(Ok((name, Point { timestamp, value })))
}

/// Parses one line (trailing `\n`/`\r\n` allowed); `now` replaces a `-1` timestamp. A blank
/// line is an error here ([`for_each_line`] skips blank lines instead).
pub fn parse_line(line: &[u8], now: i64) -> Result<(&str, Point)> {
    let fields = scan::<false>(line);
    build(line, &fields, now).unwrap_or_else(|| Err(parse_error(line, "empty line")))
}

/// Parses every `\n`-separated line of `buf`, calling `on_point` for good lines and
/// `on_error` for bad ones; blank lines are skipped and not counted. A last line without
/// `\n` is parsed too: the caller decides whether to hold back a partial line. Returns
/// (accepted, rejected).
pub fn for_each_line(
    buf: &[u8],
    now: i64,
    mut on_point: impl FnMut(&str, Point),
    mut on_error: impl FnMut(Error),
) -> (u64, u64) {
    let (mut accepted, mut rejected) = (0u64, 0u64);
    for line in lines(buf, now) {
        match line {
            Ok(Line { name, point, .. }) => {
                accepted += 1;
                on_point(name, point);
            }
            Err(e) => {
                rejected += 1;
                on_error(e);
            }
        }
    }
    (accepted, rejected)
}

/// The lines of `buf` as [`for_each_line`] sees them (blank lines skipped), one result per
/// line: for callers that handle good and bad lines in one place.
pub fn lines(buf: &[u8], now: i64) -> Lines<'_> {
    Lines {
        buf,
        pos: 0,
        block: 0,
        newlines: eq_mask(buf, b'\n'),
        now,
    }
}

/// One good line from [`Lines`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    /// The metric name as sent.
    pub name: &'a str,
    /// Its value and timestamp (a `-1` timestamp already replaced by `now`).
    pub point: Point,
    /// [`names::is_plain`] of `name`, so the caller need not run it again: a plain name is
    /// its own canonical name. On the common path the parser ran that check in place of a
    /// UTF-8 check.
    pub plain: bool,
}

/// Iterator returned by [`lines`].
///
/// Finds line ends a 64-byte block at a time ([`eq_mask`]) and walks the bits: about a
/// fifth of the instructions of a `memchr` call per line.
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    buf: &'a [u8],
    /// Where the next line starts.
    pos: usize,
    /// Where the block `newlines` describes starts (a multiple of 64).
    block: usize,
    /// Bit `k` set: `buf[block + k]` is a `\n` not yet returned as a line end.
    newlines: u64,
    now: i64,
}

impl<'a> Lines<'a> {
    /// The next line without its `\n` (the last one may have none), blank ones included.
    #[inline(always)]
    fn next_line(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.newlines != 0 {
                let end = self.block + self.newlines.trailing_zeros() as usize;
                self.newlines &= self.newlines - 1;
                let line = &self.buf[self.pos..end];
                self.pos = end + 1;
                return Some(line);
            }
            let next = self.block + 64;
            if next >= self.buf.len() {
                let line = self.buf.get(self.pos..).filter(|l| !l.is_empty())?;
                self.pos = self.buf.len();
                return Some(line);
            }
            self.block = next;
            self.newlines = eq_mask(&self.buf[next..], b'\n');
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        while let Some(line) = self.next_line() {
            if let Some((name_len, point)) = plain_line(line) {
                let name = &line[..name_len];
                if let Some(name) = plain_str(name) {
                    return Some(Ok(Line {
                        name,
                        point,
                        plain: true,
                    }));
                }
                if !has_ws(name)
                    && let Ok(name) = std::str::from_utf8(name)
                {
                    return Some(Ok(Line {
                        name,
                        point,
                        plain: false,
                    }));
                }
            }
            // `line` holds no `\n`, so this splits it as a scan stopping at `\n` would.
            let fields = scan::<false>(line);
            if let Some(r) = build(line, &fields, self.now) {
                return Some(r.map(|(name, point)| Line {
                    name,
                    point,
                    plain: names::is_plain(name.as_bytes()),
                }));
            }
        }
        None
    }
}

/// `name` as a `&str` if it is plain ([`names::is_plain`]); plain names are ASCII, so this
/// one vectorised pass replaces a UTF-8 check.
#[inline(always)]
#[allow(unsafe_code)]
fn plain_str(name: &[u8]) -> Option<&str> {
    // SAFETY: a plain name is ASCII (`names::is_plain` accepts no other byte; its test
    // checks that on random bytes), so valid UTF-8.
    names::is_plain(name).then(|| unsafe { std::str::from_utf8_unchecked(name) })
}

/// Whether `b` holds whitespace: space or 9..=13 (`\t`, `\n`, `\x0b`, `\x0c`, `\r`).
#[inline(always)]
fn has_ws(b: &[u8]) -> bool {
    let mut acc = [0u8; 16];
    super::for_chunks16(b, 16, b'a', |c| {
        for k in 0..16 {
            acc[k] |= u8::from((c[k] == b' ') | (c[k].wrapping_sub(9) < 5));
        }
    });
    acc.iter().fold(0, |a, &x| a | x) != 0
}

/// The high bit of each byte of `w` that equals `byte`, no other bit (SWAR, exact: no
/// carries cross bytes, unlike the shorter `(x - 0x01..) & !x` test).
#[inline(always)]
fn bytes_equal(w: u64, byte: u8) -> u64 {
    const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = w ^ (u64::from(byte) * 0x0101_0101_0101_0101);
    !(((x & LO7) + LO7) | x | LO7)
}

/// Index of the last space in `line[..end]`. The value before the timestamp is short, so
/// one word usually holds that space: SWAR finds it without a byte loop.
#[inline(always)]
fn space_before(line: &[u8], end: usize) -> Option<usize> {
    if end >= 8
        && let Ok(w) = <[u8; 8]>::try_from(&line[end - 8..end])
    {
        let spaces = bytes_equal(u64::from_le_bytes(w), b' ');
        if spaces != 0 {
            return Some(end - 8 + (63 - spaces.leading_zeros() as usize) / 8);
        }
    }
    memchr::memrchr(b' ', &line[..end])
}

/// Eight ASCII digits read little-endian (first digit in the low byte) as a number; `None`
/// if any byte is not a digit. SWAR (Lemire's eight-digit parse): three multiplies instead
/// of eight dependent steps.
#[inline(always)]
fn parse8(w: u64) -> Option<u64> {
    const HI: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // A digit has high nibble 3, and adding 6 leaves it 3 (0x3A.. would carry into it). A
    // carry out of a byte needs that byte >= 0xFA, which the first test already refuses.
    if (w & HI) | ((w.wrapping_add(0x0606_0606_0606_0606) & HI) >> 4) != 0x3333_3333_3333_3333 {
        return None;
    }
    let v = w & 0x0F0F_0F0F_0F0F_0F0F;
    let v = (v.wrapping_mul(2561) >> 8) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(6_553_601) >> 16) & 0x0000_FFFF_0000_FFFF;
    Some(v.wrapping_mul(42_949_672_960_001) >> 32)
}

/// The trailing timestamp of `line`: its value and where its digits start (`None` unless the
/// line ends in 1..=18 digits). Ten digits, today's timestamps, take the SWAR path.
#[inline(always)]
fn trailing_timestamp(line: &[u8]) -> Option<(u64, usize)> {
    let n = line.len();
    if n >= 11
        && let Ok(w) = <[u8; 8]>::try_from(&line[n - 10..n - 2])
        && let Some(hi) = parse8(u64::from_le_bytes(w))
    {
        let (a, b) = (
            line[n - 2].wrapping_sub(b'0'),
            line[n - 1].wrapping_sub(b'0'),
        );
        let c = line[n - 11];
        if a <= 9 && b <= 9 && !c.is_ascii_digit() {
            return Some((hi * 100 + u64::from(a) * 10 + u64::from(b), n - 10));
        }
    }
    let mut i = n;
    while i > 0 && line[i - 1].is_ascii_digit() {
        i -= 1;
    }
    Some((parse_digits(&line[i..])?, i))
}

/// The common line, `name value timestamp` with single spaces, an integer timestamp and a
/// plain decimal value, parsed from its end without the byte-by-byte [`scan`]. Returns the
/// name's length and the point, or `None` for anything else (the general path then decides).
/// When it answers and the name holds no whitespace (the caller checks, `has_ws` or
/// `is_plain`), `build` would give the same: the numbers hold only digits, `-` and `.`, so
/// the line has exactly these three fields.
#[inline(always)]
fn plain_line(line: &[u8]) -> Option<(usize, Point)> {
    let (timestamp, ts_start) = trailing_timestamp(line)?;
    let sp2 = ts_start.checked_sub(1)?;
    if line[sp2] != b' ' || timestamp > u64::from(u32::MAX) {
        return None;
    }
    let sp1 = space_before(line, sp2)?;
    if sp1 == 0 {
        return None;
    }
    let value = value_at(line, sp1 + 1, sp2)?;
    Some((
        sp1,
        Point {
            timestamp: timestamp as i64,
            value,
        },
    ))
}

/// [`parse_plain_decimal`] of `line[start..end]`. A value of at most 8 bytes after its
/// sign (most are) is read as the one word ending at `end` and parsed without a loop: the
/// bytes before the value become `0`s, the dot is cut out with two shifts, and [`parse8`]
/// checks and converts the eight digits left. It takes exactly what the loop takes.
#[inline(always)]
fn value_at(line: &[u8], start: usize, end: usize) -> Option<f64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let neg = line.get(start) == Some(&b'-');
    let first = start + usize::from(neg);
    let len = end.saturating_sub(first);
    let word = match end.checked_sub(8).map(|at| &line[at..end]) {
        Some(w) if (1..=8).contains(&len) => u64::from_le_bytes(w.try_into().ok()?),
        _ => return parse_plain_decimal(&line[start..end]),
    };
    // Little-endian: the value is the top `len` bytes of the word.
    let keep = u64::MAX
        .checked_shr(8 * len as u32)
        .map_or(u64::MAX, |r| !r);
    let w = (word & keep) | (ZEROS & !keep);
    let dots = bytes_equal(w, b'.');
    let (digits, frac) = if dots == 0 {
        (w, 0)
    } else {
        if len == 1 {
            return None; // "." alone
        }
        // The lowest dot: bytes below it move up one, over it; a `0` enters at the bottom.
        // A second dot stays and fails `parse8`, as the loop refuses it.
        let at = dots.trailing_zeros() / 8;
        let below = (1u64 << (8 * at)) - 1;
        let above = u64::MAX.checked_shl(8 * (at + 1)).unwrap_or(0);
        (((w & below) << 8) | (w & above) | 0x30, 7 - at as usize)
    };
    let v = parse8(digits)? as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

/// `parse_float`'s two fast paths (`parse_digits`, `parse_short_decimal`, after an optional
/// `-`) in one pass; `None` for anything they would not take.
#[inline(always)]
fn parse_plain_decimal(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    // Neither path takes more than 18 bytes, so `m` below cannot overflow.
    if digits.len() > FAST_DIGITS {
        return None;
    }
    let (mut m, mut i) = (0u64, 0);
    while let Some(d) = digits
        .get(i)
        .map(|c| c.wrapping_sub(b'0'))
        .filter(|&d| d <= 9)
    {
        m = m * 10 + u64::from(d);
        i += 1;
    }
    let v = if i == digits.len() {
        if i == 0 {
            return None;
        }
        m as f64
    } else {
        if digits[i] != b'.' {
            return None;
        }
        let frac = &digits[i + 1..];
        if i + frac.len() == 0 || i + frac.len() > FAST_DECIMAL_DIGITS {
            return None;
        }
        for &c in frac {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            m = m * 10 + u64::from(d);
        }
        // As `parse_short_decimal`: both exact, one correctly rounded division.
        m as f64 / POW10[frac.len()]
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;

    const NOW: i64 = 1_700_000_000;

    fn ok(line: &str) -> (String, i64, f64) {
        let (name, p) =
            parse_line(line.as_bytes(), NOW).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        (name.to_string(), p.timestamp, p.value)
    }

    #[test]
    fn good_lines() {
        let table: &[(&str, &str, i64, f64)] = &[
            (
                "hello.world 42.15 1422698155\n",
                "hello.world",
                1_422_698_155,
                42.15,
            ),
            (
                "hello.world 42 1422698155",
                "hello.world",
                1_422_698_155,
                42.0,
            ),
            (
                "hello.world 42 1422698155\r\n",
                "hello.world",
                1_422_698_155,
                42.0,
            ),
            (
                "  hello.world\t\t-42.5   1422698155.9  \n",
                "hello.world",
                1_422_698_155,
                -42.5,
            ),
            ("a 1e3 1422698155", "a", 1_422_698_155, 1000.0),
            ("a .5 1422698155", "a", 1_422_698_155, 0.5),
            ("a 5. 1422698155", "a", 1_422_698_155, 5.0),
            ("a +7 1422698155", "a", 1_422_698_155, 7.0),
            ("a -0 1422698155", "a", 1_422_698_155, 0.0),
            ("a inf 1422698155", "a", 1_422_698_155, f64::INFINITY),
            (
                "a -Infinity 1422698155",
                "a",
                1_422_698_155,
                f64::NEG_INFINITY,
            ),
            ("a 1 1.4226981559e9", "a", 1_422_698_155, 1.0),
            ("a 1 -1", "a", NOW, 1.0),
            ("a 1 -1.0", "a", NOW, 1.0),
            ("a 1 -1.9", "a", NOW, 1.0),
            ("a 1 -0.5", "a", 0, 1.0),
            ("a 1 0", "a", 0, 1.0),
            ("a 1 4294967295", "a", 4_294_967_295, 1.0),
            ("a 123456789012345678 1", "a", 1, 123_456_789_012_345_678.0),
            ("a 12345678901234567890123 1", "a", 1, 1.2345678901234568e22),
            ("a\x0b1\x0c2", "a", 2, 1.0),
            ("tagged;k=v 1 2", "tagged;k=v", 2, 1.0),
            ("caf\u{e9}.x 1 2", "caf\u{e9}.x", 2, 1.0),
        ];
        for &(line, name, ts, value) in table {
            assert_eq!(ok(line), (name.to_string(), ts, value), "{line:?}");
        }
    }

    #[test]
    fn fast_path_agrees_with_str_parse() {
        for s in [
            "0",
            "1",
            "-1",
            "9007199254740993",
            "123456789012345678",
            "-999999999999999999",
            "000123",
        ] {
            assert_eq!(parse_float(s.as_bytes()), s.parse::<f64>().ok(), "{s}");
        }
    }

    fn reason(line: &[u8]) -> String {
        match parse_line(line, NOW) {
            Err(Error::Parse { reason, .. }) => reason,
            other => panic!(
                "{:?} should fail, got {other:?}",
                String::from_utf8_lossy(line)
            ),
        }
    }

    #[test]
    fn every_malformed_kind() {
        let table: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"  \r\n", "empty"),
            (b"hello.world", "got 1"),
            (b"hello.world 42", "got 2"),
            (b"hello.world 42 1422698155 extra", "got 4"),
            (b"a 1 2\nb 3 4", "got 6"),
            (b"hello.world abc 1422698155", "value is not a number"),
            (b"hello.world 1_000 1422698155", "value is not a number"),
            (b"hello.world 0x10 1422698155", "value is not a number"),
            (b"hello.world nan 1422698155", "NaN"),
            (b"hello.world -NaN 1422698155", "NaN"),
            (b"hello.world 42 abc", "timestamp is not a number"),
            (b"hello.world 42 1e", "timestamp is not a number"),
            (b"hello.world 42 inf", "not finite"),
            (b"hello.world 42 nan", "not finite"),
            (b"hello.world 42 -2", "negative"),
            (b"hello.world 42 -100.5", "negative"),
            (b"hello.world 42 4294967296", "2106"),
            (b"hello.world 42 99999999999999999999", "2106"),
            (b"hello.world 42 5e9", "2106"),
            (b"hello.\xffworld 42 1", "UTF-8"),
            (b"a \xff 1", "value is not a number"),
        ];
        for &(line, needle) in table {
            let r = reason(line);
            assert!(
                r.contains(needle),
                "{:?}: {r:?} lacks {needle:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn error_quotes_the_line_truncated_to_400_bytes() {
        let long = format!("{} x 1\n", "n".repeat(1000));
        match parse_line(long.as_bytes(), NOW) {
            Err(Error::Parse { line, .. }) => {
                assert_eq!(line.len(), MAX_QUOTED_LINE);
                assert!(long.starts_with(&line));
            }
            other => panic!("{other:?}"),
        }
        match parse_line(b"  bad line\r\n", NOW) {
            Err(Error::Parse { line, .. }) => assert_eq!(line, "bad line"),
            other => panic!("{other:?}"),
        }
    }

    /// Table of buffers with the expected (accepted, rejected) counts, like go-carbon's
    /// plain_test.go, plus the exact points delivered.
    #[test]
    fn for_each_line_counts() {
        type Case<'a> = (&'a [u8], u64, u64, &'a [(&'a str, i64, f64)]);
        let table: &[Case] = &[
            (b"", 0, 0, &[]),
            (b"\n\n\r\n  \n", 0, 0, &[]),
            (b"a 1 10\n", 1, 0, &[("a", 10, 1.0)]),
            (b"a 1 10", 1, 0, &[("a", 10, 1.0)]),
            (
                b"a 1 10\r\nb 2 20\r\n",
                2,
                0,
                &[("a", 10, 1.0), ("b", 20, 2.0)],
            ),
            (
                b"a 1 10\n\nb 2 20\n",
                2,
                0,
                &[("a", 10, 1.0), ("b", 20, 2.0)],
            ),
            (
                b"a 1 10\ngarbage\nb nan 20\nc 3 30",
                2,
                2,
                &[("a", 10, 1.0), ("c", 30, 3.0)],
            ),
            (b"a 1\nb 2 20 x\nc 3 -1\n", 1, 2, &[("c", NOW, 3.0)]),
            (b"\xff 1 2\nok 1 2\n", 1, 1, &[("ok", 2, 1.0)]),
            (
                b"a\t1\t10\n  b   2   20  \n",
                2,
                0,
                &[("a", 10, 1.0), ("b", 20, 2.0)],
            ),
        ];
        for &(buf, acc, rej, want) in table {
            let mut got = Vec::new();
            let mut errors = 0u64;
            let counts = for_each_line(
                buf,
                NOW,
                |n, p| got.push((n.to_string(), p.timestamp, p.value)),
                |e| {
                    assert!(matches!(e, Error::Parse { .. }));
                    errors += 1;
                },
            );
            let label = String::from_utf8_lossy(buf);
            assert_eq!(counts, (acc, rej), "{label:?}");
            assert_eq!(errors, rej, "{label:?}");
            let want: Vec<_> = want
                .iter()
                .map(|&(n, t, v)| (n.to_string(), t, v))
                .collect();
            assert_eq!(got, want, "{label:?}");
        }
    }

    #[test]
    fn for_each_line_agrees_with_parse_line() {
        let buf = b"a 1 10\nb x 2\n c 3 30 \n\nd 4\n";
        // Both callbacks append to one list, so share it through a RefCell.
        let via_buf = std::cell::RefCell::new(Vec::new());
        for_each_line(
            buf,
            NOW,
            |n, p| via_buf.borrow_mut().push(Ok((n.to_string(), p))),
            |e| via_buf.borrow_mut().push(Err(e.to_string())),
        );
        let via_buf = via_buf.into_inner();
        let via_lines: Vec<_> = buf
            .split(|&b| b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .map(|l| {
                parse_line(l, NOW)
                    .map(|(n, p)| (n.to_string(), p))
                    .map_err(|e| e.to_string())
            })
            .collect();
        assert_eq!(via_buf, via_lines);
    }

    /// Micro sanity for the hot path (no timing asserted): many lines, counts and sums exact.
    #[test]
    fn micro_sanity_many_lines() {
        let n = 200_000u64;
        let mut buf = Vec::with_capacity(n as usize * 48);
        for i in 0..n {
            buf.extend_from_slice(
                format!(
                    "servers.host{}.cpu.user {} {}\n",
                    i % 1000,
                    i,
                    1_700_000_000 + i
                )
                .as_bytes(),
            );
            if i % 1000 == 0 {
                buf.extend_from_slice(b"broken line\n");
            }
        }
        let (mut sum_v, mut sum_t, mut name_bytes) = (0f64, 0i64, 0usize);
        let start = std::time::Instant::now();
        let (acc, rej) = for_each_line(
            &buf,
            NOW,
            |name, p| {
                name_bytes += name.len();
                sum_v += p.value;
                sum_t += p.timestamp;
            },
            |_| {},
        );
        let elapsed = start.elapsed();
        assert_eq!((acc, rej), (n, n / 1000));
        assert_eq!(sum_v, (n * (n - 1) / 2) as f64);
        assert_eq!(sum_t, 1_700_000_000 * n as i64 + (n * (n - 1) / 2) as i64);
        assert!(name_bytes > 0);
        // Informational only (run with --nocapture, ideally --release).
        println!(
            "plain: {} lines in {elapsed:?} ({:.1} ns/line)",
            acc + rej,
            elapsed.as_nanos() as f64 / (acc + rej) as f64
        );
    }

    /// The decimal fast path must give exactly what `str::parse` gives (correct rounding),
    /// and leave everything it does not take to `str::parse`.
    #[test]
    fn short_decimals_match_str_parse() {
        let check = |text: &str| {
            let want = text.parse::<f64>().ok();
            let got = parse_float(text.as_bytes());
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "{text:?}: {got:?} vs {want:?}"
            );
        };
        for text in [
            "0.1",
            "0.2",
            "0.3",
            "-0.0",
            "0.0",
            "1.",
            ".5",
            "-.5",
            ".",
            "-.",
            "1..2",
            "1.2.3",
            "123456789.123456",
            "12345678901234.5",
            "1234567890123.45",
            "0.000000000000001",
            "9007199254740993.0",
            "999999999999999.9",
            "1.7976931348623157",
            "2.5e3",
            "1,5",
            "+1.5",
            "1.5 ",
            "4.35",
            "0.1000000000000001",
        ] {
            check(text);
        }
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200_000 {
            xorshift(&mut x);
            let digits = format!("{}", x % 10u64.pow((x >> 60) as u32 + 1));
            let dot = (x >> 40) as usize % (digits.len() + 1);
            let sign = if x & 1 == 1 { "-" } else { "" };
            check(&format!("{sign}{}.{}", &digits[..dot], &digits[dot..]));
        }
    }

    /// The general path alone (the byte-by-byte `scan` of every line, as before the fast
    /// path existed): what `lines` must match line for line.
    fn general_lines(buf: &[u8], now: i64) -> Vec<std::result::Result<(String, Point), String>> {
        let mut out = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            let fields = scan::<true>(rest);
            let line = &rest[..fields.end];
            rest = rest.get(fields.end + 1..).unwrap_or_default();
            if let Some(r) = build(line, &fields, now) {
                out.push(
                    r.map(|(n, p)| (n.to_string(), p))
                        .map_err(|e| e.to_string()),
                );
            }
        }
        out
    }

    fn fast_lines(buf: &[u8], now: i64) -> Vec<std::result::Result<(String, Point), String>> {
        lines(buf, now)
            .map(|r| {
                r.map(|l| {
                    assert_eq!(l.plain, names::is_plain(l.name.as_bytes()), "{l:?}");
                    (l.name.to_string(), l.point)
                })
                .map_err(|e| e.to_string())
            })
            .collect()
    }

    fn same(
        a: &[std::result::Result<(String, Point), String>],
        b: &[std::result::Result<(String, Point), String>],
    ) -> bool {
        // Bitwise on values, so -0.0 and 0.0 differ.
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Ok((n, p)), Ok((m, q))) => {
                    n == m && p.timestamp == q.timestamp && p.value.to_bits() == q.value.to_bits()
                }
                (Err(e), Err(f)) => e == f,
                _ => false,
            })
    }

    /// The one-pass value parser takes exactly what the two fast paths take, with the same
    /// bits.
    #[test]
    fn plain_decimal_matches_fast_paths() {
        let two_paths = |b: &[u8]| {
            let (neg, d) = match b.first() {
                Some(b'-') => (true, &b[1..]),
                _ => (false, b),
            };
            let v = parse_digits(d)
                .map(|v| v as f64)
                .or_else(|| parse_short_decimal(d))?;
            Some(if neg { -v } else { v })
        };
        let mut x = 0x0DDB_1A5E_5BAD_5EEDu64;
        let alphabet = b"0123456789012345678901234567890123456789.-+e ";
        for i in 0..300_000u32 {
            xorshift(&mut x);
            let len = (x % 22) as usize;
            let text: Vec<u8> = (0..len)
                .map(|k| alphabet[((x >> (k * 3 % 60)) as usize + k + i as usize) % alphabet.len()])
                .collect();
            assert_eq!(
                parse_plain_decimal(&text).map(f64::to_bits),
                two_paths(&text).map(f64::to_bits),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    /// Exact for every byte value, including bytes just above a match (where the shorter
    /// borrow-based test reports false hits).
    #[test]
    fn bytes_equal_marks_exactly_the_equal_bytes() {
        let mut x = 0x853C_49E6_748F_EA9Bu64;
        for _ in 0..100_000 {
            let b = xorshift(&mut x).to_le_bytes();
            for byte in [b' ', b'.', b[3], b[0].wrapping_add(1), 0, 0x80, 0xff] {
                let want = (0..8).fold(0u64, |m, k| m | (u64::from(b[k] == byte) << (8 * k + 7)));
                assert_eq!(
                    bytes_equal(u64::from_le_bytes(b), byte),
                    want,
                    "{b:?} {byte}"
                );
            }
        }
        let w = u64::from_le_bytes(*b".\x01.\x2f-.x.");
        assert_eq!(bytes_equal(w, b'.'), 0x8000_8000_0080_0080);
    }

    /// The one-word value parser against the loop, on every value of up to 5 bytes over
    /// digits, `.`, `-` and two bytes it refuses, and on random ones of up to 10, each at
    /// the end of a line where the bytes before it vary.
    #[test]
    fn value_word_matches_the_loop() {
        let alphabet = b"0159.-+e";
        let mut values: Vec<Vec<u8>> = vec![Vec::new()];
        let mut layer: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            layer = layer
                .iter()
                .flat_map(|v| alphabet.iter().map(move |&c| [v.as_slice(), &[c]].concat()))
                .collect();
            values.extend(layer.iter().cloned());
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            xorshift(&mut x);
            let len = (x % 11) as usize;
            values.push(
                (0..len)
                    .map(|k| b"0123456789.-"[((x >> (5 * k)) % 12) as usize])
                    .collect(),
            );
        }
        for v in &values {
            for prefix in [&b""[..], b" ", b"a.b ", b"some.metric.name 99"] {
                let line = [prefix, v.as_slice()].concat();
                let got = value_at(&line, prefix.len(), line.len());
                let want = parse_plain_decimal(v);
                assert_eq!(
                    got.map(f64::to_bits),
                    want.map(f64::to_bits),
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
    }

    #[test]
    fn parse8_matches_parse_digits() {
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        for i in 0..200_000u32 {
            xorshift(&mut x);
            let mut w = [0u8; 8];
            for (k, b) in w.iter_mut().enumerate() {
                let r = (x >> (k * 8)) as u8;
                // Mostly digits, sometimes their neighbours and anything else.
                *b = match (i as usize + k) % 11 {
                    0 => r,
                    1 => b'0' + (r % 16),
                    2 => b'/' + (r % 2) * 11,
                    _ => b'0' + r % 10,
                };
            }
            assert_eq!(
                parse8(u64::from_le_bytes(w)),
                parse_digits(&w),
                "{:?}",
                String::from_utf8_lossy(&w)
            );
        }
    }

    #[test]
    fn fast_path_edges_match_general_path() {
        let cases: &[&[u8]] = &[
            b"a 1 1700000000\n",
            b"a 1 17000000000\n",
            b"a 1 9999999999\n",
            b"a 1 4294967295\n",
            b"a 1 4294967296\n",
            b"a 1 0123456789\n",
            b"a 1 x123456789\n",
            b"a 1 123456789\n",
            b"a 1 1\n",
            b" 1 1700000000\n",
            b"a  1 1700000000\n",
            b"a 1  1700000000\n",
            b"a b 1 1700000000\n",
            b"a\tb 1 1700000000\n",
            b"a\x0bb 1 1700000000\n",
            b"a 1 1700000000 \n",
            b"a 1 1700000000\r\n",
            b"a -1 1700000000\n",
            b"a -0 1700000000\n",
            b"a -.5 1700000000\n",
            b"a 1.2.3 1700000000\n",
            b"a 1-2 1700000000\n",
            b"a - 1700000000\n",
            b"a . 1700000000\n",
            b"a 1e5 1700000000\n",
            b"a 1 -1\n",
            b"a 1 -1700000000\n",
            b"1 1 1700000000\n",
            b"a.1.-2 3.5 1700000000\n",
            b"\xff 1 1700000000\n",
            b"caf\xc3\xa9 1 1700000000\n",
            b"a 1 1700000000",
            b"1700000000",
            b" 1700000000",
            b"a 1700000000",
            b"a 123456789012345678 1",
            b"a 1234567890123456789 1",
        ];
        for &c in cases {
            let (want, got) = (general_lines(c, NOW), fast_lines(c, NOW));
            assert!(
                same(&want, &got),
                "{:?}: {want:?} vs {got:?}",
                String::from_utf8_lossy(c)
            );
        }
    }

    /// Bad UTF-8 and multi-byte characters among plain names, whole and cut anywhere (as a
    /// TCP read would cut them): names that are not plain still get a UTF-8 check.
    #[test]
    fn utf8_names_among_plain_ones() {
        let mut buf = Vec::new();
        let mut i = 0u64;
        while buf.len() < 100_000 {
            let name: &[u8] = match i % 97 {
                0 => b"bad\xffname",
                1 => b"caf\xc3\xa9",
                2 => b"\xe2\x82\xac.x",
                3 => b"cut\xe2\x82",
                _ => b"servers.host.cpu",
            };
            buf.extend_from_slice(name);
            buf.extend_from_slice(format!(".{i} {i} {}\n", 1_700_000_000 + i).as_bytes());
            i += 1;
        }
        // Cuts in the middle of multi-byte characters too.
        let cuts = (0..buf.len()).filter(|&c| buf[c] >= 0x80 && c % 7 == 0);
        for cut in cuts.chain([1, 32_768, 65_537]) {
            for part in [&buf[..cut], &buf[cut..]] {
                let (want, got) = (general_lines(part, NOW), fast_lines(part, NOW));
                assert!(same(&want, &got), "cut {cut}");
            }
        }
        let (want, got) = (general_lines(&buf, NOW), fast_lines(&buf, NOW));
        assert!(same(&want, &got));
        assert!(want.iter().filter(|r| r.is_err()).count() > 10);
        assert!(want.iter().filter(|r| r.is_ok()).count() > 1000);
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..Default::default() })]

        /// Buffers of line-like pieces (and raw bytes): the fast path and the general path
        /// agree on every line.
        #[test]
        fn lines_match_general_path(
            pieces in proptest::collection::vec(
                prop_oneof![
                    Just(b"a.b".to_vec()),
                    Just(b" ".to_vec()),
                    Just(b"\n".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just(b"\t".to_vec()),
                    Just(b"-".to_vec()),
                    Just(b".".to_vec()),
                    Just(b"\xc3\xa9".to_vec()),
                    Just(b"\xff".to_vec()),
                    Just(b"1700000000".to_vec()),
                    Just(b"4294967296".to_vec()),
                    Just(b" 1700000000\n".to_vec()),
                    "[0-9]{1,20}".prop_map(String::into_bytes),
                    "[0-9]{0,9}\\.[0-9]{0,9}".prop_map(String::into_bytes),
                    "[a-z.]{1,12} -?[0-9.]{1,8} [0-9]{1,12}\n".prop_map(String::into_bytes),
                    proptest::collection::vec(any::<u8>(), 1..4),
                ],
                0..40,
            )
        ) {
            let buf = pieces.concat();
            let (want, got) = (general_lines(&buf, NOW), fast_lines(&buf, NOW));
            prop_assert!(same(&want, &got), "{:?}: {:?} vs {:?}", String::from_utf8_lossy(&buf), want, got);
        }
    }
}
