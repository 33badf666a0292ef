//! Metric names → file paths under the data dir, and the name-cleaning policy.
//!
//! Layout (carbon `TaggedSeries.encode` + `WhisperDatabase.getFilesystemPath`, go-carbon
//! `persister` + `tags.FilePath`):
//! - plain `a.b.c` → `<data_dir>/a/b/c.wsp`;
//! - tagged `m;k=v` → normalised with [`tags::normalize`], then
//!   `<data_dir>/_tagged/<h[0:3]>/<h[3:6]>/<h>.wsp` where `h` is the lowercase hex SHA-256
//!   of the normalised name. That is the default of both carbon (`TAG_HASH_FILENAMES =
//!   True`) and go-carbon (`hash-filenames = true`); [`TaggedFileName::Name`] gives the older
//!   readable form `<normalised name with '.' → '_DOT_'>.wsp` in the same directory.
//!
//! Empty components collapse: `a..b`, `.a.b` and `a.b.` all map to `a/b.wsp`. carbon gets the
//! first two the same way (`a//b` resolves to `a/b`, leading dots are stripped); for a
//! trailing dot carbon writes the hidden file `a/b/.wsp`, which graphite-web never lists, so
//! carbonlite deliberately maps it to `a/b.wsp` instead.
//!
//! Refused with [`crate::Error::InvalidName`] (nothing here can name a path outside the data dir):
//! an empty name or one with no component left, a name over 4096 bytes, NUL anywhere, `/` in
//! a component (or in a tag when the readable tagged form is asked for), a component over
//! 255 bytes (the last one counted with its `.wsp`), and `.`/`..` components (which `.`
//! splitting already makes impossible, but the check stays as a guard).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::tags::{self, name_error};

/// Longest accepted metric name, in bytes (Linux `PATH_MAX`, go-carbon's limit).
pub const MAX_NAME_LEN: usize = 4096;

/// Longest path component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Suffix of every whisper file.
pub const WSP_SUFFIX: &str = ".wsp";

/// Directory under the data dir that holds tagged series.
pub const TAGGED_DIR: &str = "_tagged";

/// What to do with names carbon-c-relay would clean before they reach a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamePolicy {
    /// Refuse any name carbon-c-relay would change (`InvalidName`), so bad senders notice.
    Reject,
    /// Clean the name as carbon-c-relay does, so relay-fed and direct-fed series agree.
    Sanitize,
    /// Store names as sent (carbon's own behaviour); path safety is still enforced.
    #[default]
    Passthrough,
}

/// How a tagged series' file is named inside `_tagged/<h[0:3]>/<h[3:6]>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaggedFileName {
    /// The SHA-256 hex of the normalised name: never too long (carbon's and go-carbon's default).
    #[default]
    Hash,
    /// The normalised name with `.` → `_DOT_` (carbon with `TAG_HASH_FILENAMES = False`).
    Name,
}

/// Bytes carbon-c-relay keeps in the metric part: `[0-9a-zA-Z-_:#]` (its default
/// `allowed_chars` is `-_:#`); `.` is the separator and handled apart.
fn relay_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'#')
}

/// Why carbon-c-relay would change `metric` (the part before any `;`), if it would.
fn relay_objection(metric: &str) -> Option<String> {
    let bytes = metric.as_bytes();
    if bytes.is_empty() {
        return Some("empty metric name".into());
    }
    if bytes[0] == b'.' {
        return Some("leading '.'".into());
    }
    if bytes[bytes.len() - 1] == b'.' {
        return Some("trailing '.'".into());
    }
    let mut prev_dot = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'.' {
            if prev_dot {
                return Some(format!("empty path component ('..') at byte {}", i - 1));
            }
            prev_dot = true;
            continue;
        }
        prev_dot = false;
        if !relay_allowed(b) {
            let shown = metric[i..].chars().next().unwrap_or('?');
            return Some(format!(
                "character {shown:?} at byte {i} is outside [0-9a-zA-Z-_:#.]"
            ));
        }
    }
    None
}

/// carbon-c-relay's cleaning of the metric part: `..` → `.`, leading and trailing dots
/// removed, every other byte outside `[0-9a-zA-Z-_:#]` → `_` (per byte, as the relay works
/// on bytes, so `é` becomes `__`).
fn relay_clean(metric: &str) -> String {
    let mut out = String::with_capacity(metric.len());
    for &b in metric.as_bytes() {
        if b == b'.' {
            if !out.is_empty() && !out.ends_with('.') {
                out.push('.');
            }
        } else if relay_allowed(b) {
            out.push(b as char);
        } else {
            out.push('_');
        }
    }
    if out.ends_with('.') {
        out.pop();
    }
    out
}

/// Applies `policy` to a received name. Borrowed when the name is kept as is (the common,
/// allocation-free case); the tags part after the first `;` is never touched (carbon-c-relay
/// exempts it; [`tags::normalize`] validates it).
pub fn apply_policy(policy: NamePolicy, name: &str) -> Result<Cow<'_, str>> {
    if policy == NamePolicy::Passthrough {
        return Ok(Cow::Borrowed(name));
    }
    let split = name.find(';').unwrap_or(name.len());
    let (metric, tags_part) = name.split_at(split);
    let Some(objection) = relay_objection(metric) else {
        return Ok(Cow::Borrowed(name));
    };
    match policy {
        NamePolicy::Reject => Err(name_error(name, objection)),
        _ => {
            let mut cleaned = relay_clean(metric);
            if cleaned.is_empty() {
                return Err(name_error(
                    name,
                    "nothing left of the metric name after cleaning",
                ));
            }
            cleaned.push_str(tags_part);
            Ok(Cow::Owned(cleaned))
        }
    }
}

fn check_component(name: &str, component: &str, is_last: bool) -> Result<()> {
    if component == "." || component == ".." {
        return Err(name_error(
            name,
            format!("path component {component:?} is not allowed"),
        ));
    }
    if component.contains('/') {
        return Err(name_error(
            name,
            format!("'/' in path component {component:?}"),
        ));
    }
    let len = component.len() + if is_last { WSP_SUFFIX.len() } else { 0 };
    if len > MAX_COMPONENT_LEN {
        let what = if is_last {
            "file name (with .wsp)"
        } else {
            "path component"
        };
        return Err(name_error(
            name,
            format!("{what} is {len} bytes, over {MAX_COMPONENT_LEN}"),
        ));
    }
    Ok(())
}

fn check_whole(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(name_error(name, "empty name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(name_error(
            name,
            format!("{} bytes, over {MAX_NAME_LEN}", name.len()),
        ));
    }
    if memchr::memchr(0, name.as_bytes()).is_some() {
        return Err(name_error(name, "NUL byte in name"));
    }
    Ok(())
}

/// Whether `b` is a byte no name policy changes and `validate` accepts anywhere but
/// at the ends or doubled (`.`): carbon-c-relay's `[0-9a-zA-Z-_:#]`, plus `.`. Comparisons
/// only (no table), so the loop over a name vectorises.
#[inline(always)]
fn plain_byte(b: u8) -> bool {
    // Neighbours share one range test: `0-9` and `:` (0x30..=0x3a), `-` and `.` (0x2d, 0x2e).
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 11)
        | (b.wrapping_sub(b'-') < 2)
        | (b == b'_')
        | (b == b'#')
}

/// Whether `name` is certainly its own canonical form (the engine's `canonical_name` would
/// return it unchanged under every policy): only `[0-9a-zA-Z-_:#]` and single inner dots (so
/// no tags, nothing a policy would clean, no `/`, NUL or `.`/`..` component), and too short
/// for any component to exceed `MAX_COMPONENT_LEN` with `.wsp`. Such a name is ASCII, so
/// valid UTF-8: the plaintext parser uses this one vectorised pass in place of both the
/// UTF-8 check and the general path's four passes.
#[inline(always)]
pub(crate) fn is_plain(name: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (name.first(), name.last()) else {
        return false;
    };
    if name.len() > MAX_COMPONENT_LEN - WSP_SUFFIX.len() || first == b'.' || last == b'.' {
        return false;
    }
    // Chunks 15 apart, so every pair of neighbours shares one; the `a` padding of a short
    // name pairs with nothing.
    let mut bad = [0u8; 16];
    crate::parse::for_chunks16(name, 15, b'a', |c| {
        let dot = c.map(|b| u8::from(b == b'.'));
        // `dot` moved down a lane (a byte shift): lane k holds whether byte k + 1 is a dot.
        let mut next_dot = [0u8; 16];
        next_dot[..15].copy_from_slice(&dot[1..]);
        for k in 0..16 {
            bad[k] |= u8::from(!plain_byte(c[k])) | (dot[k] & next_dot[k]);
        }
    });
    bad.iter().fold(0, |a, &b| a | b) == 0
}

/// Checks `name` exactly as [`metric_path`] would, without building the path: the ingest
/// hot path refuses bad names before they reach the cache, allocation-free.
pub fn validate(name: &str) -> Result<()> {
    check_whole(name)?;
    if tags::is_tagged(name) {
        // The hashed file name is always valid; the tags themselves are checked by
        // tags::normalize, which every tagged name goes through before the cache.
        return Ok(());
    }
    let mut components = name.split('.').filter(|c| !c.is_empty()).peekable();
    if components.peek().is_none() {
        return Err(name_error(name, "no path component (only dots)"));
    }
    while let Some(c) = components.next() {
        check_component(name, c, components.peek().is_none())?;
    }
    Ok(())
}

/// The whisper file of `name` under `data_dir`, with tagged series in the hashed form (see
/// the module docs for the layout and every refusal).
pub fn metric_path(data_dir: &Path, name: &str) -> Result<PathBuf> {
    metric_path_with(data_dir, name, TaggedFileName::Hash)
}

/// [`metric_path`] with a choice of tagged file naming, for data dirs written by carbon with
/// `TAG_HASH_FILENAMES = False` or go-carbon with `hash-filenames = false`.
pub fn metric_path_with(data_dir: &Path, name: &str, tagged: TaggedFileName) -> Result<PathBuf> {
    check_whole(name)?;
    if tags::is_tagged(name) {
        return tagged_path(data_dir, name, tagged);
    }
    let mut components = name.split('.').filter(|c| !c.is_empty()).peekable();
    if components.peek().is_none() {
        return Err(name_error(name, "no path component (only dots)"));
    }
    let mut path = PathBuf::with_capacity(data_dir.as_os_str().len() + name.len() + 8);
    path.push(data_dir);
    while let Some(c) = components.next() {
        let is_last = components.peek().is_none();
        check_component(name, c, is_last)?;
        if is_last {
            let mut file = String::with_capacity(c.len() + WSP_SUFFIX.len());
            file.push_str(c);
            file.push_str(WSP_SUFFIX);
            path.push(file);
        } else {
            path.push(c);
        }
    }
    Ok(path)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn tagged_path(data_dir: &Path, name: &str, mode: TaggedFileName) -> Result<PathBuf> {
    let normalized = tags::normalize(name)?;
    let hash = hex(&Sha256::digest(normalized.as_bytes()));
    let file = match mode {
        TaggedFileName::Hash => format!("{hash}{WSP_SUFFIX}"),
        TaggedFileName::Name => {
            let stem = normalized.replace('.', "_DOT_");
            check_component(name, &stem, true)?;
            format!("{stem}{WSP_SUFFIX}")
        }
    };
    let mut path = data_dir.join(TAGGED_DIR);
    path.push(&hash[0..3]);
    path.push(&hash[3..6]);
    path.push(file);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::test_rng::xorshift;
    use proptest::prelude::*;
    use std::path::Component;

    #[test]
    fn plain_names_pass_every_policy_unchanged() {
        use crate::names::NamePolicy;
        let alphabet = b"ab09.-_:#;=/ \0\xc3\xa9.\xff\x80";
        let mut x = 0x853C_49E6_748F_EA9Bu64;
        let (mut fast, mut total) = (0, 0);
        let mut names: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            b"a.b".to_vec(),
            b".a".to_vec(),
            b"a.".to_vec(),
            b"a..b".to_vec(),
            b"a;b=c".to_vec(),
            vec![b'a'; 251],
            vec![b'a'; 252],
            [vec![b'a'; 250], b".".to_vec(), vec![b'b'; 5]].concat(),
        ];
        for _ in 0..100_000 {
            xorshift(&mut x);
            let len = (x % 12) as usize;
            let mut y = x;
            names.push(
                (0..len)
                    .map(|_| {
                        y = y.rotate_right(5) ^ 0x9E37_79B9;
                        alphabet[(y % alphabet.len() as u64) as usize]
                    })
                    .collect(),
            );
        }
        for bytes in &names {
            // The parser turns plain names into `&str` unchecked.
            assert!(!is_plain(bytes) || bytes.is_ascii(), "{bytes:?}");
            let Ok(name) = std::str::from_utf8(bytes) else {
                continue;
            };
            total += 1;
            if !is_plain(bytes) {
                continue;
            }
            fast += 1;
            assert!(!tags::is_tagged(name), "{name:?}");
            assert!(validate(name).is_ok(), "{name:?}");
            for policy in [
                NamePolicy::Reject,
                NamePolicy::Sanitize,
                NamePolicy::Passthrough,
            ] {
                assert!(
                    matches!(apply_policy(policy, name), Ok(Cow::Borrowed(_))),
                    "{name:?} {policy:?}"
                );
            }
        }
        // The fast path must be taken for common names, not only be safe.
        assert!(is_plain(b"servers.host-01.cpu_0.user:x#y"));
        assert!(fast > total / 20, "{fast} of {total}");
    }

    /// `is_plain`'s chunked checks against a byte-at-a-time statement of the rule, at
    /// every length and position around its 16-byte chunks (15 apart) and the padding of
    /// short names.
    #[test]
    fn is_plain_matches_a_byte_loop() {
        fn by_bytes(b: &[u8]) -> bool {
            let set = |c: u8| c.is_ascii_alphanumeric() || b"-_:#.".contains(&c);
            !b.is_empty()
                && b.len() <= 251
                && b[0] != b'.'
                && b[b.len() - 1] != b'.'
                && b.iter().all(|&c| set(c))
                && !b.windows(2).any(|w| w == b"..")
        }
        for len in 1..=80 {
            let base = vec![b'a'; len];
            assert!(is_plain(&base), "{len}");
            for i in 0..len {
                for bad in [
                    b' ', b'/', b';', b'+', b',', b'@', b'[', b'`', b'{', 0, 0x80, 0xff,
                ] {
                    let mut b = base.clone();
                    b[i] = bad;
                    assert!(!is_plain(&b), "{len} {i} {bad}");
                }
                let mut b = base.clone();
                b[i] = b'.';
                assert_eq!(is_plain(&b), by_bytes(&b), "{len} {i} dot");
                if i + 1 < len {
                    b[i + 1] = b'.';
                    assert!(!is_plain(&b), "{len} {i} two dots");
                }
            }
        }
        let alphabet = b"aZ09.-_:#;/ \x80";
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200_000 {
            xorshift(&mut x);
            let len = (x % 70) as usize;
            let mut y = x;
            let name: Vec<u8> = (0..len)
                .map(|_| {
                    y = y.rotate_right(7) ^ 0x9E37_79B9;
                    // Mostly plain bytes, so long plain names come up too.
                    let k = (y % 64) as usize;
                    if k < 56 {
                        alphabet[k % 8]
                    } else {
                        alphabet[k % alphabet.len()]
                    }
                })
                .collect();
            assert_eq!(
                is_plain(&name),
                by_bytes(&name),
                "{:?}",
                String::from_utf8_lossy(&name)
            );
        }
        // Every byte value alone and inside a long name.
        for c in 0..=255u8 {
            let mut b = vec![b'x'; 40];
            b[20] = c;
            assert_eq!(is_plain(&[c]), by_bytes(&[c]), "{c}");
            assert_eq!(is_plain(&b), by_bytes(&b), "{c}");
        }
    }

    fn p(name: &str) -> Result<PathBuf> {
        metric_path(Path::new("/data"), name)
    }

    fn refused(name: &str) -> String {
        match p(name) {
            Err(Error::InvalidName { reason, .. }) => reason,
            other => panic!("{name:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn plain_names_map_dots_to_dirs() {
        assert_eq!(p("a.b.c").unwrap(), Path::new("/data/a/b/c.wsp"));
        assert_eq!(p("single").unwrap(), Path::new("/data/single.wsp"));
        assert_eq!(
            p("a-b:c#d.e f").unwrap(),
            Path::new("/data/a-b:c#d/e f.wsp")
        );
    }

    #[test]
    fn empty_components_collapse() {
        assert_eq!(p("a..b").unwrap(), Path::new("/data/a/b.wsp"));
        assert_eq!(p(".a.b").unwrap(), Path::new("/data/a/b.wsp"));
        assert_eq!(p("a.b.").unwrap(), Path::new("/data/a/b.wsp"));
        assert_eq!(p("...a....b...").unwrap(), Path::new("/data/a/b.wsp"));
    }

    #[test]
    fn validate_agrees_with_metric_path() {
        let long = "x".repeat(300);
        for name in [
            "a.b", "", ".", "a..b", "a/b", "a\0b", &long, "ok;t=v", "..", "a.b.",
        ] {
            assert_eq!(validate(name).is_ok(), p(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn every_refusal() {
        assert!(refused("").contains("empty"));
        assert!(refused(".").contains("no path component"));
        assert!(refused("...").contains("no path component"));
        assert!(refused("a.b/c").contains('/'));
        assert!(refused("a/../../etc/passwd").contains('/'));
        assert!(refused("/etc/passwd").contains('/'));
        assert!(refused("a.\0.b").contains("NUL"));
        assert!(refused(&"x".repeat(MAX_NAME_LEN + 1)).contains("over 4096"));
        // 255 bytes is fine for a directory, but the file name needs room for ".wsp".
        let c255 = "d".repeat(255);
        assert!(p(&format!("{c255}.x")).is_ok());
        assert!(refused(&format!("x.{c255}")).contains("with .wsp"));
        assert!(p(&format!("x.{}", "f".repeat(251))).is_ok());
        assert!(refused(&format!("x.{}", "f".repeat(252))).contains("256 bytes"));
        assert!(refused(&format!("{}.x", "d".repeat(256))).contains("path component"));
        // Bad tags are refused by the tag rules.
        assert!(refused("m;=v").contains("empty tag"));
        // Guard for components that '.' splitting cannot produce.
        assert!(check_component("n", "..", false).is_err());
        assert!(check_component("n", ".", true).is_err());
    }

    /// SHA-256 hex computed by an independent implementation (python3 hashlib).
    fn python_sha256(s: &str) -> String {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())",
                s,
            ])
            .output()
            .expect("python3 is required for this test");
        assert!(
            out.status.success(),
            "python3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn tagged_paths_match_carbon() {
        // Literal from go-carbon's tags/normalize_test.go and carbon's test_database.py.
        let name = "some.metric;tag1=value2;tag2=value.2";
        let h = "effaae5b55950b150a7493d2f5430772ca2460bf7cccb4d9e523643df54c010f";
        assert_eq!(
            p(name).unwrap(),
            Path::new(&format!("/data/_tagged/eff/aae/{h}.wsp"))
        );
        assert_eq!(
            metric_path_with(Path::new("/data"), name, TaggedFileName::Name).unwrap(),
            Path::new("/data/_tagged/eff/aae/some_DOT_metric;tag1=value2;tag2=value_DOT_2.wsp")
        );
        // carbon's test_database.py: readable form of a one-tag series.
        assert_eq!(
            metric_path_with(
                Path::new("/tmp"),
                "stats.example.counts;tag1=value1",
                TaggedFileName::Name
            )
            .unwrap(),
            Path::new("/tmp/_tagged/872/252/stats_DOT_example_DOT_counts;tag1=value1.wsp")
        );
        // The hash is over the normalised form, so tag order does not matter.
        let unordered = "cpu.user;host=web1;dc=ams;~x=1";
        let want = python_sha256("cpu.user;dc=ams;host=web1;~x=1");
        assert_eq!(
            p(unordered).unwrap(),
            Path::new(&format!(
                "/data/_tagged/{}/{}/{want}.wsp",
                &want[..3],
                &want[3..6]
            ))
        );
        assert_eq!(
            p("cpu.user;dc=ams;host=web1;~x=1").unwrap(),
            p(unordered).unwrap()
        );
    }

    #[test]
    fn readable_tagged_names_are_checked_as_paths() {
        let dir = Path::new("/data");
        assert!(metric_path_with(dir, "m;path=/etc/passwd", TaggedFileName::Name).is_err());
        assert!(metric_path(dir, "m;path=/etc/passwd").is_ok());
        let long = format!("m;k={}", "v".repeat(300));
        assert!(metric_path_with(dir, &long, TaggedFileName::Name).is_err());
        assert!(metric_path(dir, &long).is_ok());
    }

    #[test]
    fn policy_passthrough_and_clean_names_borrow() {
        for policy in [
            NamePolicy::Reject,
            NamePolicy::Sanitize,
            NamePolicy::Passthrough,
        ] {
            assert!(matches!(
                apply_policy(policy, "a.b-c_d:e#f.9").unwrap(),
                Cow::Borrowed("a.b-c_d:e#f.9")
            ));
            // Tags are exempt from cleaning.
            assert!(matches!(
                apply_policy(policy, "a.b;k=v/x y").unwrap(),
                Cow::Borrowed(_)
            ));
        }
        assert!(matches!(
            apply_policy(NamePolicy::Passthrough, "..a b..").unwrap(),
            Cow::Borrowed("..a b..")
        ));
    }

    #[test]
    fn sanitize_follows_carbon_c_relay() {
        let cases = [
            ("a..b", "a.b"),
            ("..a...b..", "a.b"),
            (".a", "a"),
            ("a.", "a"),
            ("a b", "a_b"),
            ("a/b", "a_b"),
            ("a@b!c(d)", "a_b_c_d_"),
            ("caf\u{e9}.x", "caf__.x"),
            ("a..b;k=v..w", "a.b;k=v..w"),
            ("x*y?z;t=1", "x_y_z;t=1"),
        ];
        for (input, want) in cases {
            let got = apply_policy(NamePolicy::Sanitize, input).unwrap();
            assert!(matches!(got, Cow::Owned(_)), "{input}");
            assert_eq!(got, want, "{input}");
        }
        for empty in ["", ".", "...", ";k=v", "..;k=v"] {
            assert!(
                matches!(
                    apply_policy(NamePolicy::Sanitize, empty),
                    Err(Error::InvalidName { .. })
                ),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn reject_refuses_what_sanitize_would_change() {
        for (input, needle) in [
            ("a..b", "'..'"),
            (".a", "leading"),
            ("a.", "trailing"),
            ("a b", "' '"),
            ("caf\u{e9}", "'é'"),
            ("", "empty"),
            (";k=v", "empty"),
        ] {
            match apply_policy(NamePolicy::Reject, input) {
                Err(Error::InvalidName { name, reason }) => {
                    assert_eq!(name, input);
                    assert!(reason.contains(needle), "{input:?}: {reason}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn metric_path_never_leaves_data_dir(name in any::<String>()) {
            let dir = Path::new("/srv/data");
            for mode in [TaggedFileName::Hash, TaggedFileName::Name] {
                if let Ok(path) = metric_path_with(dir, &name, mode) {
                    let rest = path.strip_prefix(dir).expect("path under data dir");
                    prop_assert!(rest.components().count() >= 1);
                    for c in rest.components() {
                        prop_assert!(matches!(c, Component::Normal(_)), "{:?} in {:?}", c, path);
                    }
                    prop_assert!(path.to_str().unwrap().ends_with(".wsp"));
                }
            }
        }

        #[test]
        fn dangerous_alphabet_never_escapes(name in "[./;=a\\x00~]{0,40}") {
            let dir = Path::new("/srv/data");
            if let Ok(path) = metric_path(dir, &name) {
                let rest = path.strip_prefix(dir).expect("path under data dir");
                for c in rest.components() {
                    prop_assert!(matches!(c, Component::Normal(_)));
                }
            }
        }

        #[test]
        fn sanitized_names_pass_reject(name in "[a-z. /@;=é]{0,30}") {
            if let Ok(clean) = apply_policy(NamePolicy::Sanitize, &name) {
                let again = apply_policy(NamePolicy::Reject, &clean);
                prop_assert!(matches!(again, Ok(Cow::Borrowed(_))), "{:?} -> {:?}", name, clean);
            }
        }
    }
}
