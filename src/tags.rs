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
    name.as_bytes().contains(&b';')
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

/// carbon's canonical form of a tagged name; untagged names come back unchanged.
pub fn normalize(name: &str) -> Result<String> {
    if !is_tagged(name) {
        return Ok(name.to_string());
    }
    let mut pieces = name.split(';');
    let metric = pieces.next().unwrap_or("");
    if metric.is_empty() {
        return Err(name_error(name, "no metric before the first ';'"));
    }
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for piece in pieces {
        let Some((tag, value)) = piece.split_once('=') else {
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
    let mut pieces: Vec<String> = tags
        .into_iter()
        .filter(|(t, _)| *t != "name")
        .map(|(t, v)| format!(";{t}={v}"))
        .collect();
    pieces.sort_unstable();
    let mut out = String::with_capacity(name.len());
    out.push_str(metric_name);
    for p in pieces {
        out.push_str(&p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
