//! Retention definitions (`10s:6h`, `60:1440`) with whisper.py's `parseRetentionDef` rules
//! and `validateArchiveList` checks.
//!
//! Units: whisper.py's rule, a superset of carbon's `util.py` single letters: the unit word is
//! any non-empty lowercase prefix of `seconds`, `minutes`, `hours`, `days`, `weeks`, `years`,
//! tried in that order (so `m`/`min`/`minutes` are minutes, `s`/`sec` seconds, `y` is 365 days).
//! A bare number on the right is a **point count** (carbon/whisper), never divided by the
//! precision as go-whisper does with `10s:1440`.

use crate::error::{Error, Result};
use crate::whisper::Retention;

/// Unit words in whisper.py's lookup order with their length in seconds.
const UNITS: [(&str, u64); 6] = [
    ("seconds", 1),
    ("minutes", 60),
    ("hours", 3600),
    ("days", 86_400),
    ("weeks", 7 * 86_400),
    ("years", 365 * 86_400),
];

fn unit_seconds(unit: &str) -> Option<u64> {
    UNITS
        .iter()
        .find(|(word, _)| word.starts_with(unit))
        .map(|&(_, secs)| secs)
}

/// Splits `123abc` into (123, Some("abc")), `123` into (123, None); `None` if malformed.
fn number_and_unit(s: &str) -> Option<(u64, Option<&str>)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let rest = &s[digits..];
    if rest.is_empty() {
        Some((n, None))
    } else if rest.bytes().all(|b| b.is_ascii_lowercase()) {
        Some((n, Some(rest)))
    } else {
        None
    }
}

/// Parses one `precision:duration` or `precision:points` pair, as whisper.py does.
pub fn parse_retention_def(def: &str) -> Result<Retention> {
    let bad = |what: String| Error::invalid(format!("invalid retention {def:?}: {what}"));
    let trimmed = def.trim();
    let Some((precision, points)) = trimmed.split_once(':') else {
        return Err(bad("expected precision:points or precision:duration".into()));
    };

    let (n, unit) = number_and_unit(precision)
        .ok_or_else(|| bad(format!("invalid precision specification {precision:?}")))?;
    let unit_secs = match unit {
        None => 1,
        Some(u) => unit_seconds(u).ok_or_else(|| bad(format!("invalid unit {u:?}")))?,
    };
    let spp = n
        .checked_mul(unit_secs)
        .ok_or_else(|| bad("precision too large".into()))?;
    if spp == 0 {
        return Err(bad("precision must be at least 1 second".into()));
    }
    let spp = u32::try_from(spp).map_err(|_| bad("precision does not fit in 32 bits".into()))?;

    let (n, unit) = number_and_unit(points)
        .ok_or_else(|| bad(format!("invalid retention specification {points:?}")))?;
    let count = match unit {
        None => n,
        Some(u) => {
            let secs = unit_seconds(u).ok_or_else(|| bad(format!("invalid unit {u:?}")))?;
            n.checked_mul(secs)
                .ok_or_else(|| bad("duration too large".into()))?
                / u64::from(spp)
        }
    };
    if count == 0 {
        return Err(bad(
            "retention holds no points (duration shorter than precision)".into(),
        ));
    }
    let count =
        u32::try_from(count).map_err(|_| bad("point count does not fit in 32 bits".into()))?;
    if u64::from(spp) * u64::from(count) > u64::from(u32::MAX) {
        return Err(bad(
            "retention (precision × points) exceeds whisper's 32-bit maxRetention".into(),
        ));
    }
    Ok(Retention {
        seconds_per_point: spp,
        points: count,
    })
}

/// Parses a comma-separated list (`10s:6h,1m:7d`) and validates it with whisper's rules;
/// returns the archives sorted by precision, as whisper stores them.
pub fn parse_retentions(defs: &str) -> Result<Vec<Retention>> {
    let list = defs
        .split(',')
        .map(parse_retention_def)
        .collect::<Result<Vec<_>>>()?;
    validate(&list)
}

/// whisper.py's `validateArchiveList`: at least one archive, distinct precisions, each
/// precision divides the next, each lower archive covers strictly more time, and each
/// archive holds at least the points one lower-archive point consolidates.
pub(crate) fn validate(list: &[Retention]) -> Result<Vec<Retention>> {
    if list.is_empty() {
        return Err(Error::invalid("at least one archive is required"));
    }
    let mut sorted = list.to_vec();
    sorted.sort_by_key(|r| r.seconds_per_point);
    for (i, pair) in sorted.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        let (sa, sb) = (
            u64::from(a.seconds_per_point),
            u64::from(b.seconds_per_point),
        );
        if sa == sb {
            return Err(Error::invalid(format!(
                "two archives with the same precision {sa}s (archive{i} and archive{})",
                i + 1
            )));
        }
        if sb % sa != 0 {
            return Err(Error::invalid(format!(
                "precision {sb}s of archive{} is not a multiple of precision {sa}s of archive{i}",
                i + 1
            )));
        }
        let (ra, rb) = (sa * u64::from(a.points), sb * u64::from(b.points));
        if rb <= ra {
            return Err(Error::invalid(format!(
                "archive{} covers {rb}s, not more than archive{i} ({ra}s)",
                i + 1
            )));
        }
        let per = sb / sa;
        if u64::from(a.points) < per {
            return Err(Error::invalid(format!(
                "archive{} consolidates {per} points of archive{i}, which holds only {}",
                i + 1,
                a.points
            )));
        }
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(spp: u32, points: u32) -> Retention {
        Retention {
            seconds_per_point: spp,
            points,
        }
    }

    #[test]
    fn every_unit_spelling() {
        let cases = [
            ("1s:1", 1),
            ("1sec:1", 1),
            ("1second:1", 1),
            ("1seconds:1", 1),
            ("1m:1", 60),
            ("1min:1", 60),
            ("1minute:1", 60),
            ("1minutes:1", 60),
            ("1h:1", 3600),
            ("1hour:1", 3600),
            ("1hours:1", 3600),
            ("1d:1", 86_400),
            ("1day:1", 86_400),
            ("1days:1", 86_400),
            ("1w:1", 604_800),
            ("1week:1", 604_800),
            ("1weeks:1", 604_800),
            ("1y:1", 31_536_000),
            ("1year:1", 31_536_000),
            ("1years:1", 31_536_000),
        ];
        for (def, spp) in cases {
            assert_eq!(parse_retention_def(def).unwrap(), r(spp, 1), "{def}");
        }
    }

    #[test]
    fn durations_divide_by_precision_bare_numbers_are_points() {
        assert_eq!(parse_retention_def("10s:6h").unwrap(), r(10, 2160));
        assert_eq!(parse_retention_def("1m:7d").unwrap(), r(60, 10_080));
        assert_eq!(parse_retention_def("60:1440").unwrap(), r(60, 1440));
        // go-whisper would give 144 points here; carbon/whisper give 1440.
        assert_eq!(parse_retention_def("10s:1440").unwrap(), r(10, 1440));
        assert_eq!(parse_retention_def("60:90d").unwrap(), r(60, 129_600));
        assert_eq!(parse_retention_def(" 1h:5y ").unwrap(), r(3600, 43_800));
        // Floor division like whisper.py's `//`.
        assert_eq!(parse_retention_def("7s:1m").unwrap(), r(7, 8));
    }

    #[test]
    fn malformed_definitions_are_refused() {
        for def in [
            "",
            "60",
            "60:",
            ":60",
            "s:1",
            "10x:1d",
            "10s:1x",
            "10S:1d",
            "10s:1D",
            "-1:5",
            "1.5s:1d",
            "10 s:1d",
            "10s:1d:5",
            "0:10",
            "0s:1d",
            "60s:30s",
            "60:0",
            "99999999999999999999:1",
            "5000000000:1",
            "1:5000000000",
            "1y:200y",
        ] {
            let err = parse_retention_def(def).expect_err(def);
            assert!(matches!(err, Error::InvalidArgument(_)), "{def}: {err:?}");
        }
    }

    #[test]
    fn list_is_sorted_and_validated() {
        assert_eq!(
            parse_retentions("1m:7d,10s:6h").unwrap(),
            vec![r(10, 2160), r(60, 10_080)]
        );
        assert_eq!(
            parse_retentions("60s:1d,5m:30d,1h:3y").unwrap(),
            vec![r(60, 1440), r(300, 8640), r(3600, 26_280)]
        );
        // Same precision twice.
        assert!(parse_retentions("60:10,60:20").is_err());
        // 180 does not divide 300.
        assert!(parse_retentions("180s:7d,300s:30d").is_err());
        // Lower precision does not cover more time.
        assert!(parse_retentions("10s:1d,60s:1d").is_err());
        // 2 points cannot feed one 60s point.
        assert!(parse_retentions("10:2,60:100").is_err());
        assert!(parse_retentions("").is_err());
        assert!(parse_retentions("10s:6h,").is_err());
    }

    #[test]
    fn validate_matches_whisper_boundaries() {
        // Exactly enough points to consolidate is fine (>=).
        assert!(validate(&[r(10, 6), r(60, 2)]).is_ok());
        assert!(validate(&[r(10, 5), r(60, 2)]).is_err());
        assert!(validate(&[]).is_err());
    }
}
