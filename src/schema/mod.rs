//! `storage-schemas.conf` and `storage-aggregation.conf` with carbon's rules: which archives,
//! aggregation method and xFilesFactor a new whisper file gets.
//!
//! Matching (carbon `lib/carbon/storage.py`): sections are tried in file order and the first
//! whose `pattern` is found anywhere in the name wins (`re.search`, unanchored; the regex
//! crate's syntax, so look-around and back-references are refused at load time). A name no
//! schema matches gets carbon's implicit default, 60 s × 10080 points ("default"); a name no
//! aggregation section matches gets whisper's defaults, `average` and xFilesFactor 0.5.
//!
//! Beyond carbon: go-carbon's `priority` key on schemas (higher first, file order breaks
//! ties); other go-carbon extras (`compressed`, `migration` …) and any unknown key are
//! ignored, as carbon ignores them. Unlike carbon, which logs and skips a broken section,
//! every problem is an [`Error::Config`] naming the file and line, so a typo cannot silently
//! give files the wrong archives forever.

mod ini;
mod retention;

use std::path::Path;

use regex::Regex;

pub use retention::{parse_retention_def, parse_retentions};

use crate::error::{Error, Result};
use crate::whisper::{AggregationMethod, Retention};

/// carbon 1.1.10's `conf/storage-schemas.conf.example`, used when no schemas file is given.
pub const DEFAULT_SCHEMAS: &str = "\
# carbon 1.1.10 conf/storage-schemas.conf.example (sections verbatim)
[carbon]
pattern = ^carbon\\.
retentions = 60:90d

[default]
pattern = .*
retentions = 60s:1d,5m:30d,1h:3y
";

/// carbon 1.1.10's `conf/storage-aggregation.conf.example`, used when no aggregation file is
/// given. (Its `[sum]` section really uses `max`: carbon's note says it suits monotonic
/// counters.)
pub const DEFAULT_AGGREGATION: &str = "\
# carbon 1.1.10 conf/storage-aggregation.conf.example (sections verbatim)
[min]
pattern = \\.min$
xFilesFactor = 0.1
aggregationMethod = min

[max]
pattern = \\.max$
xFilesFactor = 0.1
aggregationMethod = max

[sum]
pattern = \\.count$
xFilesFactor = 0
aggregationMethod = max

[default_average]
pattern = .*
xFilesFactor = 0.5
aggregationMethod = average
";

/// Name reported for carbon's implicit fallback schema.
pub const FALLBACK_SCHEMA_NAME: &str = "default";

/// carbon's fallback archive for names no schema matches (7 days of minutely data).
pub const FALLBACK_RETENTION: Retention = Retention {
    seconds_per_point: 60,
    points: 10_080,
};

/// whisper.py's `create()` default xFilesFactor.
pub const DEFAULT_X_FILES_FACTOR: f32 = 0.5;

/// Everything needed to create the whisper file of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRules {
    /// The schema section that matched, or `"default"` for carbon's fallback.
    pub schema_name: String,
    /// Archives, sorted by precision (validated with whisper's rules).
    pub retentions: Vec<Retention>,
    /// Propagation method.
    pub aggregation: AggregationMethod,
    /// Fraction of known points needed to propagate.
    pub x_files_factor: f32,
}

#[derive(Debug, Clone)]
struct SchemaRule {
    name: String,
    pattern: Regex,
    retentions: Vec<Retention>,
}

#[derive(Debug, Clone)]
struct AggregationRule {
    pattern: Regex,
    x_files_factor: Option<f32>,
    method: Option<AggregationMethod>,
}

/// The loaded pair of rule files. Cheap to query; build once and share (it is `Send + Sync`).
#[derive(Debug, Clone)]
pub struct StorageRules {
    schemas: Vec<SchemaRule>,
    aggregations: Vec<AggregationRule>,
}

fn config_err(file: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Config {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

fn compile_pattern(section: &ini::Section, file: &str) -> Result<Regex> {
    let entry = section.get("pattern").ok_or_else(|| {
        config_err(
            file,
            section.line,
            format!("section [{}] has no `pattern`", section.name),
        )
    })?;
    if entry.value.is_empty() {
        return Err(config_err(
            file,
            entry.line,
            format!("empty pattern in [{}]", section.name),
        ));
    }
    Regex::new(&entry.value).map_err(|e| {
        config_err(
            file,
            entry.line,
            format!("bad pattern {:?} in [{}]: {e}", entry.value, section.name),
        )
    })
}

fn parse_schemas(text: &str, file: &str) -> Result<Vec<SchemaRule>> {
    let mut rules = Vec::new();
    for section in ini::parse(text, file)? {
        let pattern = compile_pattern(&section, file)?;
        let entry = section.get("retentions").ok_or_else(|| {
            config_err(
                file,
                section.line,
                format!("section [{}] has no `retentions`", section.name),
            )
        })?;
        let retentions = parse_retentions(&entry.value).map_err(|e| {
            let msg = match e {
                Error::InvalidArgument(m) => m,
                other => other.to_string(),
            };
            config_err(
                file,
                entry.line,
                format!("bad retentions in [{}]: {msg}", section.name),
            )
        })?;
        let priority = match section.get("priority") {
            None => 0,
            Some(p) => p.value.parse::<i64>().map_err(|_| {
                config_err(
                    file,
                    p.line,
                    format!(
                        "priority {:?} in [{}] is not an integer",
                        p.value, section.name
                    ),
                )
            })?,
        };
        rules.push((
            priority,
            SchemaRule {
                name: section.name,
                pattern,
                retentions,
            },
        ));
    }
    // Stable sort: equal priorities keep file order (go-carbon's `p<<32 - index`).
    rules.sort_by_key(|r| std::cmp::Reverse(r.0));
    Ok(rules.into_iter().map(|(_, r)| r).collect())
}

fn parse_aggregations(text: &str, file: &str) -> Result<Vec<AggregationRule>> {
    let mut rules = Vec::new();
    for section in ini::parse(text, file)? {
        let pattern = compile_pattern(&section, file)?;
        let x_files_factor = match section.get("xfilesfactor") {
            None => None,
            Some(e) => match e.value.parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Some(v as f32),
                _ => {
                    return Err(config_err(
                        file,
                        e.line,
                        format!(
                            "xFilesFactor {:?} in [{}] is not a number in [0, 1]",
                            e.value, section.name
                        ),
                    ));
                }
            },
        };
        let method = match section.get("aggregationmethod") {
            None => None,
            Some(e) => Some(AggregationMethod::from_name(&e.value).ok_or_else(|| {
                let known: Vec<&str> = AggregationMethod::ALL.iter().map(|m| m.name()).collect();
                config_err(
                    file,
                    e.line,
                    format!(
                        "unknown aggregationMethod {:?} in [{}] (expected one of {})",
                        e.value,
                        section.name,
                        known.join(", ")
                    ),
                )
            })?),
        };
        rules.push(AggregationRule {
            pattern,
            x_files_factor,
            method,
        });
    }
    Ok(rules)
}

fn read_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        config_err(&path.display().to_string(), line, "file is not valid UTF-8")
    })
}

impl StorageRules {
    /// Reads the two files; a `None` path uses the embedded carbon example for that file
    /// ([`DEFAULT_SCHEMAS`], [`DEFAULT_AGGREGATION`]).
    pub fn load(schemas: Option<&Path>, aggregation: Option<&Path>) -> Result<StorageRules> {
        let (schemas_text, schemas_name) = match schemas {
            Some(p) => (read_file(p)?, p.display().to_string()),
            None => (
                DEFAULT_SCHEMAS.to_string(),
                "<default storage-schemas.conf>".to_string(),
            ),
        };
        let (agg_text, agg_name) = match aggregation {
            Some(p) => (read_file(p)?, p.display().to_string()),
            None => (
                DEFAULT_AGGREGATION.to_string(),
                "<default storage-aggregation.conf>".to_string(),
            ),
        };
        Self::parse(&schemas_text, &schemas_name, &agg_text, &agg_name)
    }

    /// Parses file contents; the names only label error messages.
    pub fn parse(
        schemas_text: &str,
        schemas_name: &str,
        agg_text: &str,
        agg_name: &str,
    ) -> Result<StorageRules> {
        Ok(StorageRules {
            schemas: parse_schemas(schemas_text, schemas_name)?,
            aggregations: parse_aggregations(agg_text, agg_name)?,
        })
    }

    /// The archives, method and xFilesFactor a new file for `metric` gets (first match wins).
    pub fn rules_for(&self, metric: &str) -> MetricRules {
        let (schema_name, retentions) =
            match self.schemas.iter().find(|s| s.pattern.is_match(metric)) {
                Some(s) => (s.name.clone(), s.retentions.clone()),
                None => (FALLBACK_SCHEMA_NAME.to_string(), vec![FALLBACK_RETENTION]),
            };
        let agg = self
            .aggregations
            .iter()
            .find(|a| a.pattern.is_match(metric));
        MetricRules {
            schema_name,
            retentions,
            aggregation: agg
                .and_then(|a| a.method)
                .unwrap_or(AggregationMethod::Average),
            x_files_factor: agg
                .and_then(|a| a.x_files_factor)
                .unwrap_or(DEFAULT_X_FILES_FACTOR),
        }
    }
}

impl Default for StorageRules {
    /// The embedded carbon example configuration.
    fn default() -> Self {
        // The embedded texts are tested to parse; fall back to carbon's implicit rules if
        // that ever regressed rather than panicking.
        Self::parse(
            DEFAULT_SCHEMAS,
            "<default>",
            DEFAULT_AGGREGATION,
            "<default>",
        )
        .unwrap_or(StorageRules {
            schemas: Vec::new(),
            aggregations: Vec::new(),
        })
    }
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

    fn rules(schemas: &str, agg: &str) -> StorageRules {
        StorageRules::parse(schemas, "schemas.conf", agg, "agg.conf").unwrap()
    }

    fn config_error(schemas: &str, agg: &str) -> (String, usize, String) {
        match StorageRules::parse(schemas, "schemas.conf", agg, "agg.conf") {
            Err(Error::Config {
                file,
                line,
                message,
            }) => (file, line, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn first_match_wins_unanchored() {
        let r0 = rules(
            "[a]\npattern = cpu\nretentions = 10s:1d\n[b]\npattern = ^servers\\.\nretentions = 60:1440\n",
            "",
        );
        // "cpu" is found anywhere (re.search), and [a] comes first.
        let m = r0.rules_for("servers.web1.cpu.user");
        assert_eq!(m.schema_name, "a");
        assert_eq!(m.retentions, vec![r(10, 8640)]);
        let m = r0.rules_for("servers.web1.mem");
        assert_eq!(m.schema_name, "b");
        assert_eq!(m.retentions, vec![r(60, 1440)]);
    }

    #[test]
    fn fallback_when_nothing_matches() {
        let m = rules("[a]\npattern = ^x$\nretentions = 1:10\n", "").rules_for("y");
        assert_eq!(
            m,
            MetricRules {
                schema_name: "default".into(),
                retentions: vec![r(60, 10_080)],
                aggregation: AggregationMethod::Average,
                x_files_factor: 0.5,
            }
        );
        let m = rules("", "").rules_for("anything");
        assert_eq!(m.schema_name, "default");
    }

    #[test]
    fn priority_sorts_descending_and_file_order_breaks_ties() {
        let text = "\
[low]\npattern = .\nretentions = 1:10\npriority = -5\n\
[first_zero]\npattern = .\nretentions = 2:10\n\
[second_zero]\npattern = .\nretentions = 3:10\npriority = 0\n\
[high]\npattern = ^x\nretentions = 4:10\npriority = 10\n";
        let r0 = rules(text, "");
        assert_eq!(r0.rules_for("xyz").schema_name, "high");
        assert_eq!(r0.rules_for("abc").schema_name, "first_zero");
        let only_low = rules(
            "[z]\npattern = ^q\nretentions = 1:10\n[low]\npattern = .\nretentions = 1:10\npriority = -1\n",
            "",
        );
        assert_eq!(only_low.rules_for("abc").schema_name, "low");
    }

    #[test]
    fn aggregation_sections_and_partial_keys() {
        let r0 = rules(
            "",
            "[only_xff]\npattern = \\.rate$\nxFilesFactor = 0\n[only_method]\npattern = \\.total$\naggregationmethod = sum\n[all]\npattern = abs\nxfilesfactor = 1\nAggregationMethod = absmax\n",
        );
        let m = r0.rules_for("a.rate");
        assert_eq!(
            (m.aggregation, m.x_files_factor),
            (AggregationMethod::Average, 0.0)
        );
        let m = r0.rules_for("a.total");
        assert_eq!(
            (m.aggregation, m.x_files_factor),
            (AggregationMethod::Sum, 0.5)
        );
        let m = r0.rules_for("x.abs.y");
        assert_eq!(
            (m.aggregation, m.x_files_factor),
            (AggregationMethod::AbsMax, 1.0)
        );
        let m = r0.rules_for("none");
        assert_eq!(
            (m.aggregation, m.x_files_factor),
            (AggregationMethod::Average, 0.5)
        );
        for name in [
            "average", "sum", "last", "max", "min", "avg_zero", "absmax", "absmin",
        ] {
            let r1 = rules(
                "",
                &format!("[a]\npattern = .\naggregationMethod = {name}\n"),
            );
            assert_eq!(r1.rules_for("x").aggregation.name(), name);
        }
    }

    #[test]
    fn unknown_and_go_carbon_keys_are_ignored() {
        let r0 = rules(
            "[a]\npattern = .\nretentions = 1m:1d\ncompressed = true\nmigration = false\nfoo = bar\n",
            "[a]\npattern = .\nxffMigration = x\n",
        );
        assert_eq!(r0.rules_for("x").retentions, vec![r(60, 1440)]);
    }

    #[test]
    fn embedded_defaults_match_carbon_examples() {
        let d = StorageRules::load(None, None).unwrap();
        let m = d.rules_for("carbon.agents.host.cpuUsage");
        assert_eq!(m.schema_name, "carbon");
        assert_eq!(m.retentions, vec![r(60, 129_600)]);
        let m = d.rules_for("servers.web.cpu");
        assert_eq!(m.schema_name, "default");
        assert_eq!(
            m.retentions,
            vec![r(60, 1440), r(300, 8640), r(3600, 26_280)]
        );
        assert_eq!(
            (m.aggregation, m.x_files_factor),
            (AggregationMethod::Average, 0.5)
        );
        let m = d.rules_for("timers.x.min");
        assert_eq!(
            (m.aggregation, m.x_files_factor),
            (AggregationMethod::Min, 0.1)
        );
        let m = d.rules_for("timers.x.max");
        assert_eq!(
            (m.aggregation, m.x_files_factor),
            (AggregationMethod::Max, 0.1)
        );
        let m = d.rules_for("stats.x.count");
        assert_eq!(
            (m.aggregation, m.x_files_factor),
            (AggregationMethod::Max, 0.0)
        );
        let dd = StorageRules::default();
        assert_eq!(dd.rules_for("stats.x.count"), d.rules_for("stats.x.count"));
    }

    #[test]
    fn invalid_files_name_file_line_and_problem() {
        let ok_agg = "[a]\npattern = .\n";
        let ok_schema = "[a]\npattern = .\nretentions = 60:10\n";
        let cases: &[(&str, &str, &str, usize, &str)] = &[
            (
                "[a]\npattern = (\nretentions = 60:10\n",
                ok_agg,
                "schemas.conf",
                2,
                "bad pattern",
            ),
            (
                "[a]\npattern = (?=x)\nretentions = 60:10\n",
                ok_agg,
                "schemas.conf",
                2,
                "bad pattern",
            ),
            (
                "[a]\npattern = .\nretentions = 60:10x\n",
                ok_agg,
                "schemas.conf",
                3,
                "bad retentions",
            ),
            (
                "[a]\npattern = .\nretentions = 180s:7d,300s:30d\n",
                ok_agg,
                "schemas.conf",
                3,
                "multiple",
            ),
            (
                "\n[a]\nretentions = 60:10\n",
                ok_agg,
                "schemas.conf",
                2,
                "no `pattern`",
            ),
            (
                "[a]\npattern = .\n\n[b]\n",
                ok_agg,
                "schemas.conf",
                1,
                "no `retentions`",
            ),
            (
                "[a]\npattern =\nretentions = 60:10\n",
                ok_agg,
                "schemas.conf",
                2,
                "empty pattern",
            ),
            (
                "[a]\npattern = .\nretentions = 60:10\npriority = high\n",
                ok_agg,
                "schemas.conf",
                4,
                "priority",
            ),
            ("retentions = 60:10\n", ok_agg, "schemas.conf", 1, "outside"),
            (
                ok_schema,
                "[a]\npattern = .\nxFilesFactor = 1.5\n",
                "agg.conf",
                3,
                "xFilesFactor",
            ),
            (
                ok_schema,
                "[a]\npattern = .\nxFilesFactor = -0.1\n",
                "agg.conf",
                3,
                "xFilesFactor",
            ),
            (
                ok_schema,
                "[a]\npattern = .\nxFilesFactor = nan\n",
                "agg.conf",
                3,
                "xFilesFactor",
            ),
            (
                ok_schema,
                "[a]\npattern = .\nxFilesFactor = half\n",
                "agg.conf",
                3,
                "xFilesFactor",
            ),
            (
                ok_schema,
                "[a]\npattern = .\naggregationMethod = median\n",
                "agg.conf",
                3,
                "unknown aggregationMethod",
            ),
            (
                ok_schema,
                "[a]\npattern = .\naggregationMethod = first\n",
                "agg.conf",
                3,
                "unknown aggregationMethod",
            ),
            (
                ok_schema,
                "[a]\nxFilesFactor = 0.5\n",
                "agg.conf",
                1,
                "no `pattern`",
            ),
            (
                ok_schema,
                "[a]\npattern = [\n",
                "agg.conf",
                2,
                "bad pattern",
            ),
        ];
        for (schemas, agg, file, line, needle) in cases {
            let (f, l, msg) = config_error(schemas, agg);
            assert_eq!((&f[..], l), (*file, *line), "{schemas:?} / {agg:?}: {msg}");
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            // The Display form is file:line: message.
            let shown = Error::Config {
                file: f.clone(),
                line: l,
                message: msg.clone(),
            }
            .to_string();
            assert!(shown.starts_with(&format!("{file}:{line}: ")), "{shown}");
        }
    }

    #[test]
    fn load_reads_files_and_reports_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("storage-schemas.conf");
        let a = dir.path().join("storage-aggregation.conf");
        std::fs::write(&s, "[x]\npattern = ^x\\.\nretentions = 10s:6h,1m:7d\n").unwrap();
        std::fs::write(&a, "[x]\npattern = ^x\\.\naggregationMethod = last\n").unwrap();
        let loaded = StorageRules::load(Some(&s), Some(&a)).unwrap();
        let m = loaded.rules_for("x.y");
        assert_eq!(m.retentions, vec![r(10, 2160), r(60, 10_080)]);
        assert_eq!(m.aggregation, AggregationMethod::Last);
        // Only the schemas file given: aggregation falls back to the embedded example.
        let half = StorageRules::load(Some(&s), None).unwrap();
        assert_eq!(
            half.rules_for("q.count").aggregation,
            AggregationMethod::Max
        );

        let missing = dir.path().join("nope.conf");
        assert!(matches!(
            StorageRules::load(Some(&missing), None),
            Err(Error::Io { .. })
        ));

        std::fs::write(&s, b"[x]\npattern = \xff\n").unwrap();
        match StorageRules::load(Some(&s), None) {
            Err(Error::Config { file, line, .. }) => {
                assert_eq!(file, s.display().to_string());
                assert_eq!(line, 2);
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&s, "[x]\npattern = .\nretentions = 1:10\n[x]\n").unwrap();
        match StorageRules::load(Some(&s), None) {
            Err(Error::Config {
                file,
                line,
                message,
            }) => {
                assert!(file.ends_with("storage-schemas.conf"));
                assert_eq!(line, 4);
                assert!(message.contains("duplicate section"));
            }
            other => panic!("{other:?}"),
        }
    }
}
