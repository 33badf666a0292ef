//! Retention parsing and validation against the real peer: python `whisper` 1.1.10's
//! `parseRetentionDef` and `validateArchiveList`.

use carbonlite::schema::{StorageRules, parse_retention_def, parse_retentions};

/// Runs python whisper over `defs`; one line per def: `ok <spp> <points>` or `err`.
fn python(func: &str, defs: &[&str]) -> Vec<String> {
    let script = format!(
        r#"
import sys, whisper
for d in sys.argv[1:]:
    try:
        r = {func}(d)
        print("ok", *r)
    except Exception:
        print("err")
"#
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(defs)
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "python whisper is required (pip install whisper==1.1.10): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

const DEFS: &[&str] = &[
    "10s:6h",
    "1m:7d",
    "60:1440",
    "10s:1440",
    "60:90d",
    " 1h:5y ",
    "7s:1m",
    "1sec:1",
    "1seco:3",
    "1min:1",
    "1mi:2",
    "1minutes:1",
    "2h:2d",
    "1hours:1",
    "1d:1y",
    "1days:3",
    "1w:1y",
    "1weeks:2",
    "1y:5",
    "1years:2",
    "5:5m",
    "1:1",
    // Refused by both.
    "",
    "60",
    "60:",
    ":60",
    "s:1",
    "10x:1d",
    "10mo:1d",
    "10s:1x",
    "10S:1d",
    "10s:1D",
    "-1:5",
    "1.5s:1d",
    "10 s:1d",
    "10s:1d:5",
    "0s:1d",
];

#[test]
fn parse_retention_def_matches_python_whisper() {
    let py = python("whisper.parseRetentionDef", DEFS);
    assert_eq!(py.len(), DEFS.len());
    for (def, want) in DEFS.iter().zip(py) {
        let got = match parse_retention_def(def) {
            Ok(r) => format!("ok {} {}", r.seconds_per_point, r.points),
            Err(_) => "err".to_string(),
        };
        assert_eq!(got, want, "{def:?}");
    }
}

#[test]
fn refusals_where_python_whisper_would_build_a_broken_file() {
    // python accepts these but they give a 0-second precision, an archive of 0 points or a
    // retention that does not fit the header's u32; carbonlite refuses them up front.
    let defs = ["0:10", "60s:30s", "60:0", "1:5000000000", "1y:200y"];
    let py = python("whisper.parseRetentionDef", &defs);
    assert_eq!(
        py,
        [
            "ok 0 10",
            "ok 60 0",
            "ok 60 0",
            "ok 1 5000000000",
            "ok 31536000 200"
        ]
    );
    for def in defs {
        assert!(parse_retention_def(def).is_err(), "{def}");
    }
}

#[test]
fn validation_matches_python_whisper() {
    let lists = [
        "10s:6h,1m:7d",
        "1m:7d,10s:6h",
        "60:10,60:20",
        "180s:7d,300s:30d",
        "10s:1d,60s:1d",
        "10:2,60:100",
        "10:6,60:2",
        "10:5,60:2",
        "60s:1d,5m:30d,1h:3y",
        "1s:1m,1m:1h,1h:1d,1d:1y",
    ];
    let script_func = "(lambda s: (lambda l: (whisper.validateArchiveList(l), len(l))[1:])([whisper.parseRetentionDef(x) for x in s.split(',')]))";
    let py = python(script_func, &lists);
    for (list, want) in lists.iter().zip(py) {
        let got = match parse_retentions(list) {
            Ok(v) => format!("ok {}", v.len()),
            Err(_) => "err".to_string(),
        };
        assert_eq!(got, want, "{list}");
    }
}

#[test]
fn sorted_like_whisper_stores_them() {
    let py = python(
        "(lambda s: (lambda l: (whisper.validateArchiveList(l), l[0][0], l[-1][0])[1:])([whisper.parseRetentionDef(x) for x in s.split(',')]))",
        &["1h:3y,60s:1d,5m:30d"],
    );
    let got = parse_retentions("1h:3y,60s:1d,5m:30d").unwrap();
    assert_eq!(
        py[0],
        format!(
            "ok {} {}",
            got[0].seconds_per_point,
            got[got.len() - 1].seconds_per_point
        )
    );
}

#[test]
fn rules_from_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("storage-schemas.conf");
    let agg = dir.path().join("storage-aggregation.conf");
    std::fs::write(
        &schemas,
        "# go-carbon style with priority\n[stats]\npattern = ^stats\\.\nretentions = 10s:6h,1min:6d,10min:1800d\npriority = 1\n\n[everything]\npattern = .*\nretentions = 60:1440\npriority = 2\n",
    )
    .unwrap();
    std::fs::write(
        &agg,
        "[counts]\npattern = \\.count$\nxFilesFactor = 0\naggregationMethod = sum\n",
    )
    .unwrap();
    let rules = StorageRules::load(Some(&schemas), Some(&agg)).unwrap();
    // Higher priority wins even though [stats] comes first in the file.
    let m = rules.rules_for("stats.a.count");
    assert_eq!(m.schema_name, "everything");
    assert_eq!(m.aggregation.name(), "sum");
    assert_eq!(m.x_files_factor, 0.0);
    let m = rules.rules_for("other");
    assert_eq!(m.aggregation.name(), "average");
    assert_eq!(m.x_files_factor, 0.5);
}
