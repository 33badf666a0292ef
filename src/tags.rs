//! Graphite tagged series (`name;tag=value;…`) normalised as carbon's
//! `TaggedSeries.parse(...).path` does, so carbonlite finds the same files carbon writes.
//!
//! Rules (carbon `lib/carbon/util.py`): split on `;`; the first piece is the metric and must
//! be non-empty; every other piece is `tag=value` split at the first `=`, with a non-empty
//! tag free of `!` and `^`, and a non-empty value not starting with `~`. A later duplicate
//! tag replaces an earlier one. The `name` tag is always the metric with leading `~`
//! removed (a `name=` piece is overridden). Output: that name, then the `;tag=value` pieces
//! sorted as whole strings (byte order), which is why `k2=…` sorts before `k=…`, as in
//! carbon and go-carbon.

use crate::error::{Error, Result};

/// Longest name quoted back in an error message.
const ERR_NAME_MAX: usize = 200;

/// Whether `name` carries tags, i.e. takes the tagged path on disk.
pub fn is_tagged(name: &str) -> bool {
    // The `memchr` crate's vector search: core's `contains` goes a word at a time, ~90
    // instructions for a 40-byte name, and a tagged line used to run three such scans.
    memchr::memchr(b';', name.as_bytes()).is_some()
}

pub(crate) fn name_error(name: &str, reason: impl Into<String>) -> Error {
    let mut end = name.len().min(ERR_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Error::InvalidName {
        name: name[..end].to_string(),
        reason: reason.into(),
    }
}

/// [`normalize`], borrowing `name` when it is already canonical: the usual case, since
/// senders keep their tags in one order, and one check of the pieces then replaces
/// `normalize`'s allocations. A borrowed name also keeps its line in the ingest batch.
pub fn normalize_cow(name: &str) -> Result<std::borrow::Cow<'_, str>> {
    if !is_tagged(name) || is_canonical(name) {
        Ok(std::borrow::Cow::Borrowed(name))
    } else {
        normalize(name).map(std::borrow::Cow::Owned)
    }
}

/// Whether `normalize(name)` would return `name` itself (and no error). False means only
/// "ask `normalize`", which then reports any error: the rules live there.
fn is_canonical(name: &str) -> bool {
    let mut pieces = split_ascii(name, b';');
    let metric = pieces.next().unwrap_or("");
    if metric.is_empty() || metric.starts_with('~') {
        return false;
    }
    let mut prev: Option<(&str, &str)> = None;
    for piece in pieces {
        // A refused piece is left for `normalize` to report.
        let Ok((tag, _)) = split_piece(name, piece) else {
            return false;
        };
        // Pieces sort as whole strings. Strings between two that share the prefix `tag=`
        // share it too, so a duplicate tag would sit right after its first piece.
        let in_order = prev.is_none_or(|(p, t)| p < piece && t != tag);
        if tag == "name" || !in_order {
            return false;
        }
        prev = Some((piece, tag));
    }
    true
}

/// `s.split(sep)` for an ASCII `sep`: a byte loop, which for pieces as short as tags costs
/// less than `split`'s `memchr` per piece. Cutting at an ASCII byte keeps valid UTF-8.
fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        let end = s.as_bytes()[from..].iter().position(|&b| b == sep);
        start = end.map(|e| from + e + 1);
        Some(&s[from..end.map_or(s.len(), |e| from + e)])
    })
}

/// `s.split_once(sep)` for an ASCII `sep`, by the same byte loop.
fn split_once_ascii(s: &str, sep: u8) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == sep)?;
    Some((&s[..at], &s[at + 1..]))
}

/// The bytes of the piece `tag=value`, for sorting pieces without formatting them.
fn whole_piece<'a>(tag: &'a str, value: &'a str) -> impl Iterator<Item = u8> + 'a {
    tag.bytes().chain([b'=']).chain(value.bytes())
}

/// One `tag=value` piece of `name`, split at its first `=`, or carbon's reason to refuse it.
fn split_piece<'a>(name: &str, piece: &'a str) -> Result<(&'a str, &'a str)> {
    let Some((tag, value)) = split_once_ascii(piece, b'=') else {
        return Err(name_error(
            name,
            format!("tag segment {piece:?} is not tag=value"),
        ));
    };
    if tag.is_empty() {
        return Err(name_error(
            name,
            format!("empty tag name in segment {piece:?}"),
        ));
    }
    if value.is_empty() {
        return Err(name_error(name, format!("value for tag {tag:?} is empty")));
    }
    if let Some(c) = tag.chars().find(|c| matches!(c, '!' | '^')) {
        return Err(name_error(
            name,
            format!("character {c:?} is not allowed in tag {tag:?}"),
        ));
    }
    if value.starts_with('~') {
        return Err(name_error(
            name,
            format!("value of tag {tag:?} starts with '~'"),
        ));
    }
    Ok((tag, value))
}

/// carbon's canonical form of a tagged name; untagged names come back unchanged.
pub fn normalize(name: &str) -> Result<String> {
    if !is_tagged(name) {
        return Ok(name.to_string());
    }
    let mut pieces = split_ascii(name, b';');
    let metric = pieces.next().unwrap_or("");
    if metric.is_empty() {
        return Err(name_error(name, "no metric before the first ';'"));
    }
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for piece in pieces {
        let (tag, value) = split_piece(name, piece)?;
        match tags.iter_mut().find(|(t, _)| *t == tag) {
            Some(slot) => slot.1 = value,
            None => tags.push((tag, value)),
        }
    }
    let metric_name = metric.trim_start_matches('~');
    if metric_name.is_empty() {
        return Err(name_error(
            name,
            "metric name is empty once leading '~' are removed",
        ));
    }
    tags.retain(|(t, _)| *t != "name");
    // Sorted as the whole `;tag=value` strings, compared in place rather than formatted.
    tags.sort_unstable_by(|&(t, v), &(u, w)| whole_piece(t, v).cmp(whole_piece(u, w)));
    let mut out = String::with_capacity(name.len());
    out.push_str(metric_name);
    for (t, v) in tags {
        out.extend([";", t, "=", v]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// carbon's rule stated plainly, for a valid tagged name: the last value of each tag,
    /// `name` dropped, the `;tag=value` strings formatted and sorted.
    fn by_formatting(name: &str) -> String {
        let mut pieces = name.split(';');
        let metric = pieces.next().unwrap().trim_start_matches('~').to_string();
        let mut tags: Vec<(&str, &str)> = Vec::new();
        for (t, v) in pieces.map(|p| p.split_once('=').unwrap()) {
            tags.retain(|&(u, _)| u != t);
            tags.push((t, v));
        }
        let mut whole: Vec<String> = tags
            .iter()
            .filter(|(t, _)| *t != "name")
            .map(|(t, v)| format!(";{t}={v}"))
            .collect();
        whole.sort();
        metric + &whole.concat()
    }

    /// `normalize_cow` gives `normalize`'s result (or error) and borrows exactly when that
    /// result is the name itself, on random names over the bytes the rules look at.
    #[test]
    fn normalize_cow_borrows_exactly_the_canonical_names() {
        let mut state = 7u64;
        let mut rng = || crate::test_rng::xorshift(&mut state);
        let atoms = [
            "a", "b", "a2", "k", "k2", "name", "x.y", "~v", "!", "^t", "", "=", "~",
        ];
        let (mut borrowed, mut owned, mut errors) = (0, 0, 0);
        for _ in 0..200_000 {
            let mut name = String::from(["m", "~m", "", "m.n", "~"][(rng() % 5) as usize]);
            for _ in 0..rng() % 5 {
                name.push(';');
                name.push_str(atoms[(rng() % atoms.len() as u64) as usize]);
                if rng() % 8 != 0 {
                    name.push('=');
                    name.push_str(atoms[(rng() % atoms.len() as u64) as usize]);
                }
            }
            if let Ok(n) = normalize(&name).as_ref()
                && is_tagged(&name)
            {
                assert_eq!(n, &by_formatting(&name), "{name:?}");
            }
            match (normalize(&name), normalize_cow(&name)) {
                (Ok(want), Ok(std::borrow::Cow::Borrowed(got))) => {
                    assert_eq!(got, want, "{name:?}");
                    borrowed += 1;
                }
                (Ok(want), Ok(std::borrow::Cow::Owned(got))) => {
                    assert_eq!(got, want, "{name:?}");
                    assert_ne!(want, name, "{name:?}: canonical but copied");
                    owned += 1;
                }
                (Err(want), Err(got)) => {
                    assert_eq!(got.to_string(), want.to_string());
                    errors += 1;
                }
                (want, got) => panic!("{name:?}: {want:?} against {got:?}"),
            }
        }
        // Every kind of outcome is exercised, the borrowed one with tags too.
        assert!(
            borrowed > 1000 && owned > 1000 && errors > 1000,
            "{borrowed} {owned} {errors}"
        );
        assert!(matches!(
            normalize_cow("m;a=1;b=2"),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
    }

    #[test]
    fn ascii_splits_match_std() {
        for s in [
            "",
            ";",
            "a",
            "a;",
            ";a",
            "a;b;;c",
            "é;ü=ß;=",
            "a=b=c",
            "=",
            "x;y=z;é",
        ] {
            assert_eq!(
                split_ascii(s, b';').collect::<Vec<_>>(),
                s.split(';').collect::<Vec<_>>()
            );
            assert_eq!(split_once_ascii(s, b'='), s.split_once('='), "{s:?}");
        }
    }

    #[test]
    fn detects_tags() {
        assert!(is_tagged("a;b=c"));
        assert!(!is_tagged("a.b.c"));
        assert!(!is_tagged(""));
    }

    #[test]
    fn normalizes_like_carbon_and_go_carbon() {
        // go-carbon tags/normalize_test.go table, which it checks against python carbon.
        let table = [
            (
                "some.metric;tag1=value2;tag2=value.2;tag1=value3",
                "some.metric;tag1=value3;tag2=value.2",
            ),
            (
                "some.metric;tag1=value2;tag2=value.2;tag1=value0",
                "some.metric;tag1=value0;tag2=value.2",
            ),
            ("some.metric;c=1;b=2;a=3", "some.metric;a=3;b=2;c=1"),
            ("some.metric;k=a;k=_;k2=3;k=0;k=42", "some.metric;k2=3;k=42"),
            ("some.metric", "some.metric"),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn name_tag_and_tilde_follow_carbon() {
        assert_eq!(normalize("~~m;a=1").unwrap(), "m;a=1");
        assert_eq!(normalize("m;name=other;a=1").unwrap(), "m;a=1");
        assert_eq!(normalize("m;a=x=y").unwrap(), "m;a=x=y");
        assert_eq!(normalize("m;a=~x;").map_err(|_| ()), Err(()));
        // Values may contain '~' after the first char, and '!' / '^'.
        assert_eq!(normalize("m;a=x~!^").unwrap(), "m;a=x~!^");
    }

    #[test]
    fn refusals() {
        for bad in [
            ";a=1", "m;", "m;a", "m;=1", "m;a=", "m;a!=1", "m;^a=1", "m;a=~1", "~~;a=1", "m;;a=1",
        ] {
            match normalize(bad) {
                Err(Error::InvalidName { name, reason }) => {
                    assert_eq!(name, bad);
                    assert!(!reason.is_empty());
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_name_is_truncated_on_a_char_boundary() {
        let long = format!("{};a=", "é".repeat(300));
        match normalize(&long) {
            Err(Error::InvalidName { name, .. }) => {
                assert!(name.len() <= ERR_NAME_MAX && long.starts_with(&name))
            }
            other => panic!("{other:?}"),
        }
    }
}
