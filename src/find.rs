//! Graphite globs over the metric tree: `*`, `?`, `[a-z]` / `[!a-z]`, `{a,b}` per path
//! component, the way graphite-web's finders and go-carbon's carbonserver expand them.
//!
//! A pattern is split on `.` into components; each component matches one directory entry
//! (a subdirectory is a branch, `name.wsp` a leaf). Metrics that are only in the cache (no
//! file yet) are matched too, so a point is findable the moment it is accepted.
//!
//! Brace groups whose alternatives contain a `.` span components; those are expanded first
//! (at most `max_globs` patterns). All other groups become regex alternations, so
//! `{a,b,c}.x` reads the parent directory once, not three times.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use crate::error::{Error, Result};

/// Longest pattern accepted; longer ones are refused before any work (a glob this long is a
/// mistake or an attack, never a real query).
pub const MAX_PATTERN_LEN: usize = 16 * 1024;
/// Deepest `{…}` nesting accepted (real globs use one or two levels).
const MAX_BRACE_DEPTH: usize = 16;
/// Compiled-regex budget per component, so pathological classes cannot eat memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One node a glob matched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FindMatch {
    /// Dotted metric path (`a.b.c`).
    pub path: String,
    /// True for a metric (a `.wsp` file or a cached metric), false for a branch.
    pub is_leaf: bool,
}

/// Bounds on one `find`, from `[carbonserver]`.
#[derive(Debug, Clone, Copy)]
pub struct FindLimits {
    /// Most patterns a pattern may expand to through brace groups that contain dots.
    pub max_globs: usize,
    /// Most matches one pattern may return before the query is refused.
    pub max_matches: usize,
}

impl Default for FindLimits {
    fn default() -> Self {
        FindLimits {
            max_globs: 100,
            max_matches: 30_000,
        }
    }
}

/// One path component of a pattern.
#[derive(Debug, Clone)]
enum Component {
    /// No metacharacters: looked up directly instead of listing the directory.
    Literal(String),
    /// Anchored regex compiled from the glob.
    Pattern(Regex),
}

impl Component {
    fn matches(&self, name: &str) -> bool {
        match self {
            Component::Literal(l) => l == name,
            Component::Pattern(r) => r.is_match(name),
        }
    }

    /// Hidden entries (`.foo`) only match a component that asks for a leading dot, as
    /// shell globs and graphite-web's fnmatch-based finder behave.
    fn may_match_hidden(&self) -> bool {
        matches!(self, Component::Literal(l) if l.starts_with('.'))
    }
}

/// A parsed glob: one or more alternatives (brace expansion across dots), each a list of
/// components.
#[derive(Debug, Clone)]
pub struct Glob {
    alternatives: Vec<Vec<Component>>,
}

impl Glob {
    /// Parses `pattern`. Refuses empty components (`a..b`), `/` and NUL (they could name
    /// paths outside the tree), patterns over [`MAX_PATTERN_LEN`], and expansions over
    /// `limits.max_globs`.
    pub fn parse(pattern: &str, limits: &FindLimits) -> Result<Glob> {
        if pattern.is_empty() {
            return Err(Error::invalid("empty glob"));
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(Error::invalid(format!(
                "glob of {} bytes is longer than {MAX_PATTERN_LEN}",
                pattern.len()
            )));
        }
        if pattern.contains(['/', '\0', '\\']) {
            return Err(Error::invalid(format!(
                "glob {:?} contains '/', '\\' or NUL",
                truncate(pattern)
            )));
        }
        // Nesting bounds the recursion below (and regex's own nest limit is 250).
        let mut depth = 0usize;
        for c in pattern.bytes() {
            match c {
                b'{' => depth += 1,
                b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_BRACE_DEPTH {
                return Err(Error::invalid(format!(
                    "glob nests braces deeper than {MAX_BRACE_DEPTH}"
                )));
            }
        }
        let mut expanded = Vec::new();
        expand_dotted_braces(pattern, limits.max_globs.max(1), &mut expanded)?;
        let mut alternatives = Vec::with_capacity(expanded.len());
        for p in &expanded {
            let mut comps = Vec::new();
            for part in split_components(p) {
                if part.is_empty() {
                    return Err(Error::invalid(format!(
                        "glob {:?} has an empty path component",
                        truncate(pattern)
                    )));
                }
                comps.push(compile_component(part)?);
            }
            alternatives.push(comps);
        }
        Ok(Glob { alternatives })
    }

    /// True if `name` (a dotted metric path) matches exactly (same depth).
    pub fn matches(&self, name: &str) -> bool {
        self.alternatives.iter().any(|comps| {
            let parts: Vec<&str> = name.split('.').collect();
            parts.len() == comps.len() && comps.iter().zip(&parts).all(|(c, p)| c.matches(p))
        })
    }
}

/// Expands `pattern` over the whisper tree under `data_dir` and the `cached` metric names.
/// Results are sorted by path, a branch before a leaf of the same name (both can exist).
pub fn find(
    data_dir: &Path,
    cached: &[Arc<str>],
    pattern: &str,
    limits: &FindLimits,
) -> Result<Vec<FindMatch>> {
    let glob = Glob::parse(pattern, limits)?;
    let mut out = BTreeSet::new();
    for comps in &glob.alternatives {
        walk(
            data_dir.to_path_buf(),
            String::new(),
            comps,
            limits.max_matches,
            &mut out,
        )?;
        match_cached(cached, comps, limits.max_matches, &mut out)?;
    }
    Ok(out.into_iter().collect())
}

/// `find` over a running node: its data dir, its cached names, its `[carbonserver]` limits.
pub(crate) fn find_in(shared: &crate::engine::Shared, pattern: &str) -> Result<Vec<FindMatch>> {
    let cs = &shared.config.carbonserver;
    let limits = FindLimits {
        max_globs: cs.max_globs,
        max_matches: cs.max_metrics_globbed,
    };
    // Parse first: a bad glob costs nothing, not a copy of every cached name.
    Glob::parse(pattern, &limits)?;
    let names = shared.cache.names();
    find(&shared.config.whisper.data_dir, &names, pattern, &limits)
}

fn too_many(max: usize) -> Error {
    Error::invalid(format!(
        "glob matches more than {max} nodes ([carbonserver] max-metrics-globbed)"
    ))
}

fn push(out: &mut BTreeSet<FindMatch>, m: FindMatch, max: usize) -> Result<()> {
    out.insert(m);
    if out.len() > max {
        return Err(too_many(max));
    }
    Ok(())
}

fn walk(
    dir: PathBuf,
    prefix: String,
    comps: &[Component],
    max: usize,
    out: &mut BTreeSet<FindMatch>,
) -> Result<()> {
    let Some((first, rest)) = comps.split_first() else {
        return Ok(());
    };
    let top = prefix.is_empty();
    let join = |name: &str| {
        if top {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    match first {
        Component::Literal(name) => {
            let sub = dir.join(name);
            if rest.is_empty() {
                if sub.is_dir() {
                    push(out, branch(join(name)), max)?;
                }
                if dir.join(format!("{name}.wsp")).is_file() {
                    push(out, leaf(join(name)), max)?;
                }
            } else if sub.is_dir() {
                walk(sub, join(name), rest, max, out)?;
            }
        }
        Component::Pattern(_) => {
            // A directory that vanished or cannot be read simply matches nothing.
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Ok(());
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(name) = file_name.to_str() else {
                    continue;
                };
                if name.starts_with('.') && !first.may_match_hidden() {
                    continue;
                }
                // Tagged series live under _tagged/ by hash; they are not part of the tree.
                if top && name == "_tagged" {
                    continue;
                }
                // file_type does not follow symlinks; metadata does (graphite-web follows).
                let Ok(meta) = std::fs::metadata(entry.path()) else {
                    continue;
                };
                if meta.is_dir() {
                    if first.matches(name) {
                        if rest.is_empty() {
                            push(out, branch(join(name)), max)?;
                        } else {
                            walk(entry.path(), join(name), rest, max, out)?;
                        }
                    }
                } else if rest.is_empty()
                    && meta.is_file()
                    && let Some(stem) = name.strip_suffix(".wsp")
                    && !stem.is_empty()
                    && first.matches(stem)
                {
                    push(out, leaf(join(stem)), max)?;
                }
            }
        }
    }
    Ok(())
}

/// Cache-only metrics: a name deeper than the pattern contributes its prefix as a branch.
fn match_cached(
    cached: &[Arc<str>],
    comps: &[Component],
    max: usize,
    out: &mut BTreeSet<FindMatch>,
) -> Result<()> {
    for name in cached {
        if crate::tags::is_tagged(name) {
            continue;
        }
        let mut parts = name.split('.');
        let mut end = 0usize;
        let mut ok = true;
        for c in comps {
            match parts.next() {
                Some(p) if c.matches(p) => {
                    end += p.len() + usize::from(end > 0);
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        let path = name[..end].to_string();
        let m = if parts.next().is_some() {
            branch(path)
        } else {
            leaf(path)
        };
        push(out, m, max)?;
    }
    Ok(())
}

fn branch(path: String) -> FindMatch {
    FindMatch {
        path,
        is_leaf: false,
    }
}

fn leaf(path: String) -> FindMatch {
    FindMatch {
        path,
        is_leaf: true,
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Byte index of the `}` closing the `{` at `open`, honouring nesting; None if unclosed.
fn closing_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits the inside of a brace group on top-level commas.
fn split_alternatives(inner: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&inner[start..]);
    out
}

/// Expands every brace group whose text contains a `.` (it spans components); others stay.
fn expand_dotted_braces(pattern: &str, max: usize, out: &mut Vec<String>) -> Result<()> {
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{'
            && let Some(close) = closing_brace(b, i)
        {
            let inner = &pattern[i + 1..close];
            if inner.contains('.') {
                for alt in split_alternatives(inner) {
                    let next = format!("{}{}{}", &pattern[..i], alt, &pattern[close + 1..]);
                    expand_dotted_braces(&next, max, out)?;
                    if out.len() > max {
                        return Err(Error::invalid(format!(
                            "glob expands to more than {max} patterns ([carbonserver] max-globs)"
                        )));
                    }
                }
                return Ok(());
            }
            i = close + 1;
            continue;
        }
        i += 1;
    }
    if !out.iter().any(|p| p == pattern) {
        out.push(pattern.to_string());
    }
    if out.len() > max {
        return Err(Error::invalid(format!(
            "glob expands to more than {max} patterns ([carbonserver] max-globs)"
        )));
    }
    Ok(())
}

/// Splits on `.` outside brace groups (after expansion no group contains one, but an
/// unclosed `{` is literal and must not swallow the rest).
fn split_components(p: &str) -> Vec<&str> {
    p.split('.').collect()
}

fn compile_component(part: &str) -> Result<Component> {
    if !part.contains(['*', '?', '[', '{']) {
        return Ok(Component::Literal(part.to_string()));
    }
    let mut re = String::with_capacity(part.len() * 2 + 2);
    re.push('^');
    translate(part, &mut re);
    re.push('$');
    let regex = RegexBuilder::new(&re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| Error::invalid(format!("glob component {:?}: {e}", truncate(part))))?;
    Ok(Component::Pattern(regex))
}

/// Glob text to regex text. Unclosed `[` and `{` are literal characters (fnmatch's rule).
fn translate(glob: &str, re: &mut String) {
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                if let Some(n) = class_len(&chars[i..]) {
                    push_class(&chars[i + 1..i + n - 1], re);
                    i += n;
                    continue;
                }
                re.push_str(r"\[");
            }
            '{' => {
                let s: String = chars[i..].iter().collect();
                if let Some(close) = closing_brace(s.as_bytes(), 0) {
                    let inner = &s[1..close];
                    re.push_str("(?:");
                    for (k, alt) in split_alternatives(inner).into_iter().enumerate() {
                        if k > 0 {
                            re.push('|');
                        }
                        translate(alt, re);
                    }
                    re.push(')');
                    i += s[..=close].chars().count();
                    continue;
                }
                re.push_str(r"\{");
            }
            c => push_escaped(c, re),
        }
        i += 1;
    }
}

/// Length in chars of a `[...]` class starting at `c[0] == '['`, or None if unclosed.
/// A `]` right after `[`, `[!` or `[^` is a member, as in fnmatch.
fn class_len(c: &[char]) -> Option<usize> {
    let mut j = 1;
    if matches!(c.get(j), Some('!' | '^')) {
        j += 1;
    }
    if c.get(j) == Some(&']') {
        j += 1;
    }
    while j < c.len() {
        if c[j] == ']' {
            return Some(j + 1);
        }
        j += 1;
    }
    None
}

fn push_class(inner: &[char], re: &mut String) {
    re.push('[');
    let mut rest = inner;
    if let Some(('!' | '^', tail)) = rest.split_first() {
        re.push('^');
        rest = tail;
    }
    for (k, &c) in rest.iter().enumerate() {
        let range_dash = c == '-' && k > 0 && k + 1 < rest.len();
        if range_dash {
            re.push('-');
        } else if c.is_ascii_alphanumeric() || !c.is_ascii() {
            re.push(c);
        } else {
            re.push('\\');
            re.push(c);
        }
    }
    re.push(']');
}

fn push_escaped(c: char, re: &mut String) {
    let mut buf = [0u8; 4];
    re.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(m: &[FindMatch]) -> Vec<String> {
        m.iter()
            .map(|m| format!("{}{}", m.path, if m.is_leaf { "" } else { "/" }))
            .collect()
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "a/b/c.wsp",
            "a/b/d.wsp",
            "a/bb/c.wsp",
            "a/x.wsp",
            "a/b.wsp",
            "z/y1.wsp",
            "z/y2.wsp",
            "z/y3/q.wsp",
            "z/.hidden.wsp",
            "_tagged/abc/def/x.wsp",
            "a/b/notes.txt",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        d
    }

    fn run(d: &Path, cached: &[&str], q: &str) -> Vec<String> {
        let cached: Vec<Arc<str>> = cached.iter().map(|s| Arc::from(*s)).collect();
        names(&find(d, &cached, q, &FindLimits::default()).unwrap())
    }

    #[test]
    fn globs_over_the_tree() {
        let d = tree();
        let p = d.path();
        assert_eq!(run(p, &[], "*"), ["a/", "z/"]);
        assert_eq!(run(p, &[], "a.*"), ["a.b/", "a.b", "a.bb/", "a.x"]);
        assert_eq!(run(p, &[], "a.b.*"), ["a.b.c", "a.b.d"]);
        assert_eq!(run(p, &[], "a.b?.c"), ["a.bb.c"]);
        assert_eq!(run(p, &[], "a.{b,bb}.c"), ["a.b.c", "a.bb.c"]);
        assert_eq!(run(p, &[], "a.*.c"), ["a.b.c", "a.bb.c"]);
        assert_eq!(run(p, &[], "z.y[12]"), ["z.y1", "z.y2"]);
        assert_eq!(run(p, &[], "z.y[!12]"), ["z.y3/"]);
        assert_eq!(run(p, &[], "z.y[1-3]"), ["z.y1", "z.y2", "z.y3/"]);
        assert_eq!(run(p, &[], "{a.b,z.y3}.*"), ["a.b.c", "a.b.d", "z.y3.q"]);
        assert_eq!(run(p, &[], "a.b.c"), ["a.b.c"]);
        assert_eq!(run(p, &[], "a.b"), ["a.b/", "a.b"]);
        assert!(run(p, &[], "nope.*").is_empty());
        assert!(run(p, &[], "a.b.c.d").is_empty());
        assert_eq!(
            run(p, &[], "z.*"),
            ["z.y1", "z.y2", "z.y3/"],
            "hidden skipped"
        );
    }

    #[test]
    fn cache_only_metrics_are_found() {
        let d = tree();
        let p = d.path();
        let cached = ["a.new", "a.b.c", "n.m.o", "t;k=v"];
        assert_eq!(
            run(p, &cached, "a.*"),
            ["a.b/", "a.b", "a.bb/", "a.new", "a.x"]
        );
        assert_eq!(run(p, &cached, "*"), ["a/", "n/", "z/"]);
        assert_eq!(run(p, &cached, "n.*.o"), ["n.m.o"]);
        assert_eq!(run(p, &cached, "n.m"), ["n.m/"]);
    }

    #[test]
    fn bad_globs_are_errors() {
        let l = FindLimits::default();
        for bad in ["", "a..b", ".a", "a.", "a/b", "../x", "a\0b", "a\\b"] {
            assert!(Glob::parse(bad, &l).is_err(), "{bad:?}");
        }
        assert!(Glob::parse(&"a".repeat(MAX_PATTERN_LEN + 1), &l).is_err());
        let deep = format!("{}x{}", "{".repeat(5000), "}".repeat(5000));
        assert!(Glob::parse(&deep, &l).is_err());
        assert!(Glob::parse(&"{".repeat(5000), &l).is_err());
        let many = (0..200)
            .map(|i| format!("x.{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(Glob::parse(&format!("{{{many}}}"), &l).is_err());
        // Unclosed brackets and braces are literal, not errors.
        let g = Glob::parse("a[b.{c", &l).unwrap();
        assert!(g.matches("a[b.{c"));
        assert!(!g.matches("ab.c"));
    }

    #[test]
    fn matcher_semantics() {
        let l = FindLimits::default();
        let g = Glob::parse("a.{x,y{1,2}}*.[]a]", &l).unwrap();
        assert!(g.matches("a.x.]"));
        assert!(g.matches("a.y2zz.a"));
        assert!(!g.matches("a.y3.a"));
        assert!(!g.matches("a.x.b"));
        let g = Glob::parse("x.(a|b)+$", &l).unwrap();
        assert!(g.matches("x.(a|b)+$"));
        assert!(!g.matches("x.a"));
        let g = Glob::parse("x.*(a)", &l).unwrap();
        assert!(g.matches("x.zz(a)"));
        assert!(!g.matches("x.zza"));
    }

    #[test]
    fn max_matches_is_enforced() {
        let d = tree();
        let l = FindLimits {
            max_globs: 10,
            max_matches: 2,
        };
        assert!(find(d.path(), &[], "a.*", &l).is_err());
        assert_eq!(find(d.path(), &[], "a.b.*", &l).unwrap().len(), 2);
    }
}
