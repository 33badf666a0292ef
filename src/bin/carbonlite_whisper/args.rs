//! optparse semantics, by hand: `--opt=value` and `--opt value`, unique prefixes of long
//! options (`--js` for `--json`), bundled short flags (`-rt FMT`, `-tFMT`), options anywhere
//! among positionals, `--` ends options. Errors read like optparse's so wrappers that grep
//! stderr keep working; they exit 2 after printing the usage line, as optparse does.

use std::collections::BTreeMap;

/// One option a command accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptSpec {
    /// Long name with dashes (`--from`).
    pub long: &'static str,
    /// Short name with dash (`-t`), if any.
    pub short: Option<&'static str>,
    /// Whether the option takes a value.
    pub takes_value: bool,
}

impl OptSpec {
    /// A flag (`store_true`).
    pub const fn flag(long: &'static str) -> Self {
        OptSpec {
            long,
            short: None,
            takes_value: false,
        }
    }

    /// An option taking one value.
    pub const fn value(long: &'static str) -> Self {
        OptSpec {
            long,
            short: None,
            takes_value: true,
        }
    }

    /// The same option with a short alias.
    pub const fn with_short(mut self, short: &'static str) -> Self {
        self.short = Some(short);
        self
    }
}

/// The parse result: options by long name (last occurrence wins) and positionals in order.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Values of options, keyed by long name; flags map to an empty string.
    pub opts: BTreeMap<&'static str, String>,
    /// Positional arguments.
    pub args: Vec<String>,
    /// `-h`/`--help` was given.
    pub help: bool,
}

impl Parsed {
    /// Whether a flag was given.
    pub fn flag(&self, long: &str) -> bool {
        self.opts.contains_key(long)
    }

    /// The value of an option, if given.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.opts.get(long).map(String::as_str)
    }
}

/// Parses `argv` (without the program name) against `specs`. `Err` holds optparse's message
/// text (the part after `prog: error: `).
pub fn parse(argv: &[String], specs: &[OptSpec]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut rargs: std::collections::VecDeque<String> = argv.iter().cloned().collect();
    while let Some(arg) = rargs.pop_front() {
        if arg == "--" {
            out.args.extend(rargs.drain(..));
            break;
        } else if arg.starts_with("--") {
            let (opt, explicit) = match arg.split_once('=') {
                Some((o, v)) => (o.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let long = match_long(&opt, specs)?;
            if long == "--help" {
                if explicit.is_some() {
                    return Err("--help option does not take a value".into());
                }
                out.help = true;
                return Ok(out);
            }
            let spec = specs.iter().find(|s| s.long == long).copied();
            let Some(spec) = spec else {
                return Err(format!("no such option: {opt}"));
            };
            if spec.takes_value {
                let value = match explicit {
                    Some(v) => v,
                    None => rargs
                        .pop_front()
                        .ok_or_else(|| format!("{long} option requires 1 argument"))?,
                };
                out.opts.insert(spec.long, value);
            } else if explicit.is_some() {
                return Err(format!("{long} option does not take a value"));
            } else {
                out.opts.insert(spec.long, String::new());
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            let chars: Vec<char> = arg.chars().skip(1).collect();
            let mut i = 0;
            while i < chars.len() {
                let opt = format!("-{}", chars[i]);
                i += 1;
                if opt == "-h" {
                    out.help = true;
                    return Ok(out);
                }
                let Some(spec) = specs
                    .iter()
                    .find(|s| s.short == Some(opt.as_str()))
                    .copied()
                else {
                    return Err(format!("no such option: {opt}"));
                };
                if spec.takes_value {
                    let value = if i < chars.len() {
                        chars[i..].iter().collect()
                    } else {
                        rargs
                            .pop_front()
                            .ok_or_else(|| format!("{opt} option requires 1 argument"))?
                    };
                    out.opts.insert(spec.long, value);
                    break;
                }
                out.opts.insert(spec.long, String::new());
            }
        } else {
            out.args.push(arg);
        }
    }
    Ok(out)
}

/// optparse's `_match_abbrev`: exact match, else the single long option `opt` prefixes.
fn match_long(opt: &str, specs: &[OptSpec]) -> Result<&'static str, String> {
    let all = std::iter::once("--help").chain(specs.iter().map(|s| s.long));
    let names: Vec<&'static str> = all.collect();
    if let Some(n) = names.iter().find(|n| **n == opt) {
        return Ok(n);
    }
    let mut hits: Vec<&'static str> = names.into_iter().filter(|n| n.starts_with(opt)).collect();
    match hits.len() {
        0 => Err(format!("no such option: {opt}")),
        1 => Ok(hits[0]),
        _ => {
            hits.sort_unstable();
            Err(format!("ambiguous option: {opt} ({}?)", hits.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FETCH: &[OptSpec] = &[
        OptSpec::value("--from"),
        OptSpec::value("--until"),
        OptSpec::flag("--json"),
        OptSpec::flag("--pretty"),
        OptSpec::value("--time-format").with_short("-t"),
        OptSpec::value("--drop"),
        OptSpec::flag("--raw").with_short("-r"),
    ];

    fn p(args: &[&str]) -> Result<Parsed, String> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, FETCH)
    }

    #[test]
    fn long_forms_prefixes_and_positionals() {
        let r = p(&["--from=5", "a.wsp", "--until", "9", "--js", "--dr=nulls"]).unwrap();
        assert_eq!(r.value("--from"), Some("5"));
        assert_eq!(r.value("--until"), Some("9"));
        assert!(r.flag("--json"));
        assert!(!r.flag("--pretty"));
        assert_eq!(r.value("--drop"), Some("nulls"));
        assert_eq!(r.args, vec!["a.wsp"]);
        // A value may start with a dash; `--` stops option processing.
        let r = p(&["--from", "-5", "--", "--json"]).unwrap();
        assert_eq!(r.value("--from"), Some("-5"));
        assert_eq!(r.args, vec!["--json"]);
        assert!(!r.flag("--json"));
        assert_eq!(p(&["-"]).unwrap().args, vec!["-"]);
    }

    #[test]
    fn short_options_bundle_like_optparse() {
        let r = p(&["-rt%H", "x"]).unwrap();
        assert!(r.flag("--raw"));
        assert_eq!(r.value("--time-format"), Some("%H"));
        let r = p(&["-t", "%Y", "x"]).unwrap();
        assert_eq!(r.value("--time-format"), Some("%Y"));
        assert!(p(&["-h"]).unwrap().help);
        assert!(p(&["--he"]).unwrap().help);
    }

    #[test]
    fn errors_use_optparse_wording() {
        assert_eq!(p(&["--foo"]).unwrap_err(), "no such option: --foo");
        assert_eq!(p(&["-x"]).unwrap_err(), "no such option: -x");
        assert_eq!(
            p(&["x", "--from"]).unwrap_err(),
            "--from option requires 1 argument"
        );
        assert_eq!(p(&["-t"]).unwrap_err(), "-t option requires 1 argument");
        assert_eq!(
            p(&["--json=1"]).unwrap_err(),
            "--json option does not take a value"
        );
        assert_eq!(p(&["--"]).unwrap().args, Vec::<String>::new());
        // `--from`/`--until`? no: "--f" only prefixes --from here; "--" + "" is the terminator.
        let specs = [OptSpec::flag("--fallocate"), OptSpec::value("--from")];
        let v = vec!["--f".to_string()];
        assert_eq!(
            parse(&v, &specs).unwrap_err(),
            "ambiguous option: --f (--fallocate, --from?)"
        );
    }
}
