//! The subcommands, one function per whisper 1.1.10 script, with the scripts' arguments,
//! output text and exit codes (stdout byte for byte; stderr keeps the scripts' wording where
//! the script has its own message, and a short summary where Python would print a traceback).

use std::io::{BufRead, Write};
use std::path::Path;

use carbonlite::Error;
use carbonlite::points::Point;
use carbonlite::schema;
use carbonlite::whisper::{self, AggregationMethod, CreateOptions, Header, WhisperFile};

use crate::args::{self, OptSpec, Parsed};
use crate::pyfmt;
use crate::pytime::{self, Zone};

/// How a command ends when it does not end normally: text for stderr and an exit code.
#[derive(Debug)]
pub struct Exit {
    /// Process exit code (1 like `SystemExit('msg')`, 2 for optparse errors).
    pub code: i32,
    /// Text for stderr, newline included; may be empty.
    pub stderr: String,
}

impl Exit {
    /// `raise SystemExit(msg)`: msg on stderr, exit 1.
    fn system_exit(msg: impl Into<String>) -> Exit {
        Exit {
            code: 1,
            stderr: format!("{}\n", msg.into()),
        }
    }

    /// `raise SystemExit('[ERROR] %s' % exc)`.
    fn error(e: &Error) -> Exit {
        Exit::system_exit(format!("[ERROR] {}", py_message(e)))
    }
}

/// The environment a command runs in.
pub struct Ctx<'a> {
    /// How the tool was invoked (`carbonlite-whisper fetch` or `whisper-fetch.py`), for usage.
    pub prog: String,
    /// The process-wide "now" (`CARBONLITE_NOW` or the clock).
    pub now: i64,
    /// Buffered stdout.
    pub out: &'a mut dyn Write,
    /// Lines for `whisper-update` when no points are given on the command line.
    pub stdin: &'a mut dyn BufRead,
}

/// Result of a command: Ok(exit code written after stdout) or an early exit.
pub type CmdResult = Result<i32, Exit>;

/// Writes to stdout; a failed write (closed pipe) is an `Exit` with the io error so main can
/// die of SIGPIPE as the scripts do.
macro_rules! say {
    ($ctx:expr, $($arg:tt)*) => {
        writeln!($ctx.out, $($arg)*).map_err(io_exit)?
    };
}

/// An stdout write failure; code 141 marks a broken pipe for main.
fn io_exit(e: std::io::Error) -> Exit {
    let code = if e.kind() == std::io::ErrorKind::BrokenPipe {
        141
    } else {
        1
    };
    Exit {
        code,
        stderr: if code == 141 {
            String::new()
        } else {
            format!("{e}\n")
        },
    }
}

/// One script: its usage line and the option block of its `--help`.
pub struct Script {
    /// The subcommand name.
    pub name: &'static str,
    /// optparse usage, `{prog}` replaced by the program name.
    usage: &'static str,
    /// The `Options:` block as optparse formats it at 80 columns.
    options: &'static str,
    /// Options the script accepts.
    specs: &'static [OptSpec],
    /// The command body.
    run: fn(&mut Ctx<'_>, &Parsed) -> CmdResult,
}

impl Script {
    /// `print_usage()` text.
    fn usage(&self, prog: &str) -> String {
        format!("Usage: {}\n\n", self.usage.replace("{prog}", prog))
    }

    /// `print_help()` text.
    fn help(&self, prog: &str) -> String {
        format!(
            "Usage: {}\n\n{}",
            self.usage.replace("{prog}", prog),
            self.options
        )
    }

    /// optparse's `error()`: usage and message on stderr, exit 2.
    fn opt_error(&self, prog: &str, msg: &str) -> Exit {
        Exit {
            code: 2,
            stderr: format!("{}{prog}: error: {msg}\n", self.usage(prog)),
        }
    }

    /// Parses `argv` and runs the script.
    pub fn main(&self, ctx: &mut Ctx<'_>, argv: &[String]) -> CmdResult {
        let prog = ctx.prog.clone();
        let parsed = args::parse(argv, self.specs).map_err(|m| self.opt_error(&prog, &m))?;
        if parsed.help {
            write!(ctx.out, "{}", self.help(&prog)).map_err(io_exit)?;
            return Ok(0);
        }
        check_typed_options(&parsed).map_err(|m| self.opt_error(&prog, &m))?;
        (self.run)(ctx, &parsed)
    }

    /// `print_help(); sys.exit(1)`: the scripts' answer to missing arguments.
    fn help_exit(&self, ctx: &mut Ctx<'_>) -> CmdResult {
        write!(ctx.out, "{}", self.help(&ctx.prog)).map_err(io_exit)?;
        Ok(1)
    }
}

/// optparse converts typed option values while parsing; do the same checks up front.
fn check_typed_options(p: &Parsed) -> Result<(), String> {
    for (name, v) in &p.opts {
        match *name {
            "--from" | "--until" if pyfmt::parse_optparse_int(v).is_none() => {
                return Err(format!(
                    "option {name}: invalid integer value: {}",
                    pyfmt::str_repr(v)
                ));
            }
            "--xFilesFactor" if pyfmt::parse_float(v).is_none() => {
                return Err(format!(
                    "option {name}: invalid floating-point value: {}",
                    pyfmt::str_repr(v)
                ));
            }
            "--drop" if !DROP_CHOICES.contains(&v.as_str()) => {
                return Err(format!(
                    "option --drop: invalid choice: {} (choose from 'zeroes', 'nulls', 'empty')",
                    pyfmt::str_repr(v)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

const DROP_CHOICES: [&str; 3] = ["zeroes", "nulls", "empty"];

/// Every script, in the order `--help` lists them.
pub const SCRIPTS: &[Script] = &[
    Script {
        name: "create",
        usage: "{prog} path timePerPoint:timeToStore [timePerPoint:timeToStore]*
{prog} --estimate timePerPoint:timeToStore [timePerPoint:timeToStore]*

timePerPoint and timeToStore specify lengths of time, for example:

60:1440      60 seconds per datapoint, 1440 datapoints = 1 day of retention
15m:8        15 minutes per datapoint, 8 datapoints = 2 hours of retention
1h:7d        1 hour per datapoint, 7 days of retention
12h:2y       12 hours per datapoint, 2 years of retention
",
        options: "Options:
  -h, --help            show this help message and exit
  --xFilesFactor=XFILESFACTOR
  --aggregationMethod=AGGREGATIONMETHOD
                        Function to use when aggregating values (average, sum,
                        last, max, min, avg_zero, absmax, absmin)
  --overwrite           
  --estimate            Don't create a whisper file, estimate storage
                        requirements based on archive definitions
  --sparse              Create new whisper as sparse file
  --fallocate           Create new whisper and use fallocate
",
        specs: &[
            OptSpec::value("--xFilesFactor"),
            OptSpec::value("--aggregationMethod"),
            OptSpec::flag("--overwrite"),
            OptSpec::flag("--estimate"),
            OptSpec::flag("--sparse"),
            OptSpec::flag("--fallocate"),
        ],
        run: create,
    },
    Script {
        name: "info",
        usage: "{prog} [options] path [field]",
        options: "Options:
  -h, --help  show this help message and exit
  --json      Output results in JSON form
",
        specs: &[OptSpec::flag("--json")],
        run: info,
    },
    Script {
        name: "update",
        usage: "{prog} [options] path [timestamp:value]*

  If no values are passed as arguments, they are read one-per-line from stdin.",
        options: "Options:
  -h, --help  show this help message and exit
",
        specs: &[],
        run: update,
    },
    Script {
        name: "fetch",
        usage: "{prog} [options] path",
        options: "Options:
  -h, --help            show this help message and exit
  --from=_FROM          Unix epoch time of the beginning of your requested
                        interval (default: 24 hours ago)
  --until=UNTIL         Unix epoch time of the end of your requested interval
                        (default: now)
  --json                Output results in JSON form
  --pretty              Show human-readable timestamps instead of unix times
  -t TIME_FORMAT, --time-format=TIME_FORMAT
                        Time format to use with --pretty; see time.strftime()
  --drop=DROP           Specify 'nulls' to drop all null values. Specify
                        'zeroes' to drop all zero values. Specify 'empty' to
                        drop both null and zero values
",
        specs: &[
            OptSpec::value("--from"),
            OptSpec::value("--until"),
            OptSpec::flag("--json"),
            OptSpec::flag("--pretty"),
            OptSpec::value("--time-format").with_short("-t"),
            OptSpec::value("--drop"),
        ],
        run: fetch,
    },
    Script {
        name: "dump",
        usage: "{prog} path",
        options: "Options:
  -h, --help            show this help message and exit
  --pretty              Show human-readable timestamps instead of unix times
  -t TIME_FORMAT, --time-format=TIME_FORMAT
                        Time format to use with --pretty; see time.strftime()
  -r, --raw             Dump value only in the same format for whisper-update
                        (UTC timestamps)
",
        specs: &[
            OptSpec::flag("--pretty"),
            OptSpec::value("--time-format").with_short("-t"),
            OptSpec::flag("--raw").with_short("-r"),
        ],
        run: dump,
    },
    Script {
        name: "set-aggregation-method",
        usage: "{prog} path <average|sum|last|max|min|avg_zero|absmax|absmin> [xFilesFactor]",
        options: "Options:
  -h, --help  show this help message and exit
",
        specs: &[],
        run: set_aggregation_method,
    },
];

/// Finds a script by subcommand name.
pub fn script(name: &str) -> Option<&'static Script> {
    SCRIPTS.iter().find(|s| s.name == name)
}

fn this(name: &str) -> &'static Script {
    // Every caller passes a name from SCRIPTS.
    script(name).unwrap_or(&SCRIPTS[0])
}

/// The text Python would show for a whisper exception or an OSError.
pub fn py_message(e: &Error) -> String {
    match e {
        Error::InvalidArgument(m)
        | Error::TimestampNotCovered(m)
        | Error::InvalidTimeInterval(m) => m.clone(),
        Error::Corrupt { path, reason } => format!("{reason} ({})", path.display()),
        Error::AlreadyExists(p) => format!("File {} already exists!", p.display()),
        Error::Io { path, source } => os_error(path, source),
        Error::NotFound(path) => os_error(
            Path::new(path),
            &std::io::Error::from_raw_os_error(libc::ENOENT),
        ),
        other => other.to_string(),
    }
}

/// Python's `str(OSError)`: `[Errno 2] No such file or directory: 'path'`.
fn os_error(path: &Path, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!(
                "[Errno {code}] {text}: {}",
                pyfmt::str_repr(&path.to_string_lossy())
            )
        }
        None => format!("{e}: {}", pyfmt::str_repr(&path.to_string_lossy())),
    }
}

/// `print(x)` of the `retention`/`size` fields: Python ints never overflow.
fn archive_fields(header: &Header) -> Vec<[(&'static str, u64); 5]> {
    header
        .archives
        .iter()
        .map(|a| {
            [
                ("offset", u64::from(a.offset)),
                ("secondsPerPoint", u64::from(a.seconds_per_point)),
                ("points", u64::from(a.points)),
                (
                    "retention",
                    u64::from(a.seconds_per_point) * u64::from(a.points),
                ),
                ("size", u64::from(a.points) * 12),
            ]
        })
        .collect()
}

/// whisper-info.py.
fn info(ctx: &mut Ctx<'_>, p: &Parsed) -> CmdResult {
    let me = this("info");
    let Some(path) = p.args.first() else {
        return me.help_exit(ctx);
    };
    let file = match WhisperFile::open_read_only(Path::new(path)) {
        Ok(f) => f,
        // whisper.info() swallows IOError and returns None; the script then fails on it.
        Err(e @ (Error::Io { .. } | Error::NotFound(_))) => {
            return Err(Exit::system_exit(format!(
                "TypeError: 'NoneType' object does not support item assignment ({})",
                py_message(&e)
            )));
        }
        Err(e) => return Err(Exit::error(&e)),
    };
    let header = file.header().clone();
    let file_size = std::fs::metadata(path)
        .map_err(|e| Exit::system_exit(os_error(Path::new(path), &e)))?
        .len();
    let archives = archive_fields(&header);
    let xff = pyfmt::repr(f64::from(header.x_files_factor));
    let method = header.aggregation.name();

    if let Some(field) = p.args.get(1) {
        let text = match field.as_str() {
            "aggregationMethod" => method.to_string(),
            "maxRetention" => header.max_retention.to_string(),
            "xFilesFactor" => xff,
            "fileSize" => file_size.to_string(),
            "archives" => {
                let items: Vec<String> = archives
                    .iter()
                    .map(|a| {
                        let kv: Vec<String> =
                            a.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
                        format!("{{{}}}", kv.join(", "))
                    })
                    .collect();
                format!("[{}]", items.join(", "))
            }
            _ => {
                say!(
                    ctx,
                    "Unknown field \"{field}\". Valid fields are aggregationMethod,maxRetention,xFilesFactor,archives,fileSize"
                );
                return Ok(1);
            }
        };
        say!(ctx, "{text}");
        return Ok(0);
    }

    if p.flag("--json") {
        // json.dumps(info, indent=2, separators=(',', ': ')) keeps insertion order.
        say!(ctx, "{{");
        say!(ctx, "  \"aggregationMethod\": \"{method}\",");
        say!(ctx, "  \"maxRetention\": {},", header.max_retention);
        say!(ctx, "  \"xFilesFactor\": {xff},");
        if archives.is_empty() {
            say!(ctx, "  \"archives\": [],");
        } else {
            say!(ctx, "  \"archives\": [");
            for (i, a) in archives.iter().enumerate() {
                say!(ctx, "    {{");
                for (j, (k, v)) in a.iter().enumerate() {
                    say!(
                        ctx,
                        "      \"{k}\": {v}{}",
                        if j + 1 < a.len() { "," } else { "" }
                    );
                }
                say!(
                    ctx,
                    "    }}{}",
                    if i + 1 < archives.len() { "," } else { "" }
                );
            }
            say!(ctx, "  ],");
        }
        say!(ctx, "  \"fileSize\": {file_size}");
        say!(ctx, "}}");
        return Ok(0);
    }

    say!(ctx, "aggregationMethod: {method}");
    say!(ctx, "maxRetention: {}", header.max_retention);
    say!(ctx, "xFilesFactor: {xff}");
    say!(ctx, "fileSize: {file_size}");
    say!(ctx, "");
    for (i, a) in archives.iter().enumerate() {
        say!(ctx, "Archive {i}");
        for (k, v) in a {
            say!(ctx, "{k}: {v}");
        }
        say!(ctx, "");
    }
    Ok(0)
}

/// `time.ctime(t)` or `time.strftime(fmt, time.localtime(t))`, as `--pretty` prints them.
fn pretty_time(zone: &Zone, fmt: Option<&str>, t: i64) -> String {
    match fmt {
        // An empty --time-format is falsy in Python: ctime is used.
        Some(f) if !f.is_empty() => pytime::strftime(f, &zone.localtime(t)),
        _ => pytime::ctime(zone, t),
    }
}

/// whisper-fetch.py.
fn fetch(ctx: &mut Ctx<'_>, p: &Parsed) -> CmdResult {
    let me = this("fetch");
    let int_opt = |name: &str, default: i64| {
        p.value(name)
            .and_then(pyfmt::parse_optparse_int)
            .unwrap_or(default)
    };
    let from = int_opt("--from", ctx.now - 86_400);
    let until = int_opt("--until", ctx.now);
    if p.args.len() != 1 {
        return me.help_exit(ctx);
    }
    let path = Path::new(&p.args[0]);
    let mut file = WhisperFile::open_read_only(path).map_err(|e| Exit::error(&e))?;
    if from > until {
        return Err(Exit::system_exit(format!(
            "[ERROR] Invalid time interval: from time '{from}' is after until time '{until}'"
        )));
    }
    let series = match file
        .fetch(from, Some(until), ctx.now)
        .map_err(|e| Exit::error(&e))?
    {
        Some(s) => s,
        None => return Err(Exit::system_exit("No data in selected timerange")),
    };
    let keep = |v: &f64| match p.value("--drop") {
        Some("nulls") => !v.is_nan(),
        Some("zeroes") => *v != 0.0,
        Some("empty") => !v.is_nan() && *v != 0.0,
        _ => true,
    };
    let values: Vec<f64> = series.values.iter().copied().filter(keep).collect();

    if p.flag("--json") {
        let list = pyfmt::list_repr(&values).replace("None", "null");
        say!(
            ctx,
            "{{\n    \"start\" : {},\n    \"end\" : {},\n    \"step\" : {},\n    \"values\" : {list}\n  }}",
            series.from,
            series.until,
            series.step
        );
        return Ok(0);
    }

    let zone = if p.flag("--pretty") {
        Zone::local()
    } else {
        Zone::utc()
    };
    let mut t = series.from;
    for v in values {
        let timestr = if p.flag("--pretty") {
            pretty_time(&zone, p.value("--time-format"), t)
        } else {
            t.to_string()
        };
        let valuestr = if v.is_nan() {
            "None".to_string()
        } else {
            pyfmt::format_f(v, 6)
        };
        say!(ctx, "{timestr}\t{valuestr}");
        t += series.step;
    }
    Ok(0)
}

/// whisper-dump.py.
fn dump(ctx: &mut Ctx<'_>, p: &Parsed) -> CmdResult {
    let me = this("dump");
    if p.args.len() != 1 {
        return Err(me.opt_error(&ctx.prog, "require one input file name"));
    }
    let path = Path::new(&p.args[0]);
    if !path.exists() {
        return Err(Exit::system_exit(format!(
            "[ERROR] File \"{}\" does not exist!",
            path.display()
        )));
    }
    let mut file = WhisperFile::open_read_only(path).map_err(|e| Exit::error(&e))?;
    let header = file.header().clone();
    let raw = p.flag("--raw");
    if !raw {
        say!(ctx, "Meta data:");
        say!(ctx, "  aggregation method: {}", header.aggregation.name());
        say!(ctx, "  max retention: {}", header.max_retention);
        say!(
            ctx,
            "  xFilesFactor: {}",
            pyfmt::format_g(f64::from(header.x_files_factor), 6)
        );
        say!(ctx, "");
        for (i, a) in archive_fields(&header).iter().enumerate() {
            say!(ctx, "Archive {i} info:");
            let labels = ["offset", "seconds per point", "points", "retention", "size"];
            for (label, (_, v)) in labels.iter().zip(a) {
                say!(ctx, "  {label}: {v}");
            }
            say!(ctx, "");
        }
    }
    let zone = if p.flag("--pretty") {
        Zone::local()
    } else {
        Zone::utc()
    };
    for i in 0..header.archives.len() {
        if !raw {
            say!(ctx, "Archive {i} data:");
        }
        let points = file.read_archive(i).map_err(|e| Exit::error(&e))?;
        for (n, (ts, value)) in points.into_iter().enumerate() {
            if raw {
                say!(ctx, "{ts}:{}", pyfmt::format_g(value, 35));
            } else {
                let t = i64::from(ts);
                let timestr = if p.flag("--pretty") {
                    pretty_time(&zone, p.value("--time-format"), t)
                } else {
                    t.to_string()
                };
                say!(
                    ctx,
                    "{n}: {timestr}, {}",
                    pyfmt::pad_left(&pyfmt::format_g(value, 35), 10)
                );
            }
        }
        // The script ends each archive with a bare `print` (a no-op in Python 3): no blank line.
    }
    Ok(0)
}

/// Splits one `timestamp:value` argument like `tuple(point.split(':'))` and converts it as
/// `update`/`update_many` do; errors carry Python's exception text.
fn parse_datapoint(s: &str) -> Result<Point, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.len() {
        2 => {}
        n if n > 2 => return Err("ValueError: too many values to unpack (expected 2)".into()),
        n => {
            return Err(format!(
                "ValueError: not enough values to unpack (expected 2, got {n})"
            ));
        }
    }
    let value = pyfmt::parse_float(parts[1]).ok_or_else(|| {
        format!(
            "ValueError: could not convert string to float: {}",
            pyfmt::str_repr(parts[1])
        )
    })?;
    let timestamp = pyfmt::parse_int(parts[0]).ok_or_else(|| {
        format!(
            "ValueError: invalid literal for int() with base 10: {}",
            pyfmt::str_repr(parts[0])
        )
    })?;
    Ok(Point { timestamp, value })
}

/// whisper-update.py.
fn update(ctx: &mut Ctx<'_>, p: &Parsed) -> CmdResult {
    let me = this("update");
    let Some(path) = p.args.first() else {
        return me.help_exit(ctx);
    };
    let strings: Vec<String> = if p.args.len() >= 2 {
        p.args[1..].to_vec()
    } else {
        // Python iterates sys.stdin: lines keep their newline, which float()/int() ignore.
        let mut lines = Vec::new();
        let mut buf = String::new();
        loop {
            buf.clear();
            match ctx.stdin.read_line(&mut buf) {
                Ok(0) => break,
                Ok(_) => lines.push(buf.clone()),
                Err(e) => return Err(Exit::system_exit(format!("[ERROR] stdin: {e}"))),
            }
        }
        lines
    };
    let now_prefix = format!("{}:", ctx.now);
    let points: Vec<Point> = strings
        .iter()
        .map(|s| parse_datapoint(&s.replace("N:", &now_prefix)))
        .collect::<Result<_, _>>()
        .map_err(Exit::system_exit)?;
    if points.is_empty() {
        return Ok(0); // update_many([]) returns before opening the file.
    }
    let mut file = WhisperFile::open(Path::new(path)).map_err(|e| match e {
        Error::Io { path, source } => {
            Exit::system_exit(format!("OSError: {}", os_error(&path, &source)))
        }
        Error::NotFound(_) => Exit::system_exit(format!("FileNotFoundError: {}", py_message(&e))),
        e => Exit::error(&e),
    })?;
    let result = if points.len() == 1 {
        file.update(points[0].value, points[0].timestamp, ctx.now)
    } else {
        file.update_many(&points, ctx.now)
    };
    match result {
        Ok(()) => Ok(0),
        Err(Error::TimestampNotCovered(_)) => Err(Exit::system_exit(
            "[ERROR] Timestamp not covered by any archives in this database.",
        )),
        Err(e) => Err(Exit::error(&e)),
    }
}

/// whisper-set-aggregation-method.py.
fn set_aggregation_method(ctx: &mut Ctx<'_>, p: &Parsed) -> CmdResult {
    let me = this("set-aggregation-method");
    if p.args.len() < 2 {
        return me.help_exit(ctx);
    }
    let (path, method_name) = (&p.args[0], &p.args[1]);
    // Only a third argument exactly is taken as the xFilesFactor, as in the script.
    let xff_text = if p.args.len() == 3 {
        Some(p.args[2].as_str())
    } else {
        None
    };
    let mut file = match WhisperFile::open(Path::new(path)) {
        Ok(f) => f,
        Err(Error::Io { .. } | Error::NotFound(_)) => {
            write!(ctx.out, "{}", me.help(&ctx.prog)).map_err(io_exit)?;
            return Err(Exit {
                code: 1,
                stderr: format!("[ERROR] File '{path}' does not exist!\n\n"),
            });
        }
        Err(e) => return Err(Exit::error(&e)),
    };
    let method = AggregationMethod::from_name(method_name).ok_or_else(|| {
        Exit::system_exit(format!(
            "[ERROR] Unrecognized aggregation method: {method_name}"
        ))
    })?;
    let xff = match xff_text {
        None => None,
        Some(t) => {
            let v = pyfmt::parse_float(t).ok_or_else(|| {
                Exit::system_exit(format!("[ERROR] Invalid xFilesFactor {t}, not a float"))
            })?;
            if !(0.0..=1.0).contains(&v) && !v.is_nan() {
                return Err(Exit::system_exit(format!(
                    "[ERROR] Invalid xFilesFactor {}, not between 0 and 1",
                    pyfmt::repr(v)
                )));
            }
            Some(v as f32)
        }
    };
    let old = file
        .set_aggregation_method(method, xff)
        .map_err(|e| Exit::error(&e))?;
    say!(
        ctx,
        "Updated aggregation method: {path} ({} -> {method_name})",
        old.name()
    );
    Ok(0)
}

/// whisper-create.py's `byte_format`.
fn byte_format(num: f64) -> String {
    let mut num = num;
    for unit in ["bytes", "KB", "MB"] {
        if num < 1024.0 {
            return format!("{}{unit}", pyfmt::format_f(num, 3));
        }
        num /= 1024.0;
    }
    format!("{}GB", pyfmt::format_f(num, 3))
}

/// whisper-create.py.
fn create(ctx: &mut Ctx<'_>, p: &Parsed) -> CmdResult {
    let me = this("create");
    let parse_defs = |defs: &[String]| -> Result<Vec<whisper::Retention>, Exit> {
        defs.iter()
            .map(|d| {
                schema::parse_retention_def(d)
                    .map_err(|e| Exit::system_exit(format!("ValueError: {}", py_message(&e))))
            })
            .collect()
    };
    if p.flag("--estimate") {
        if p.args.is_empty() {
            write!(ctx.out, "{}", me.usage(&ctx.prog)).map_err(io_exit)?;
            return Ok(1);
        }
        let mut defs = p.args.clone();
        if defs.len() == 1 && defs[0].find(',').is_some_and(|i| i > 0) {
            defs = defs[0].split(',').map(str::to_string).collect();
        }
        let retentions = parse_defs(&defs)?;
        let mut total_points = 0u64;
        for (i, r) in retentions.iter().enumerate() {
            say!(
                ctx,
                "Archive {i}: {} points of {}s precision",
                r.points,
                r.seconds_per_point
            );
            total_points += u64::from(r.points);
        }
        let size = 16 + retentions.len() as u64 * 12 + total_points * 12;
        let disk_size = size.div_ceil(4096) * 4096;
        say!(
            ctx,
            "\nEstimated Whisper DB Size: {} ({disk_size} bytes on disk with 4k blocks)\n",
            byte_format(size as f64)
        );
        for x in [1u64, 5, 10, 50, 100, 500] {
            say!(
                ctx,
                "Estimated storage requirement for {x}k metrics: {}",
                byte_format((x * 1000 * disk_size) as f64)
            );
        }
        return Ok(0);
    }
    if p.args.len() < 2 {
        return me.help_exit(ctx);
    }
    let path = Path::new(&p.args[0]);
    let retentions = parse_defs(&p.args[1..])?;
    if path.exists() && p.flag("--overwrite") {
        say!(ctx, "Overwriting existing file: {}", p.args[0]);
        std::fs::remove_file(path).map_err(|e| Exit::system_exit(os_error(path, &e)))?;
    }
    // whisper.create's order of checks: archive list, existing file, method, xFilesFactor.
    let retentions = whisper::validate_archive_list(&retentions).map_err(|e| Exit::error(&e))?;
    if path.exists() {
        return Err(Exit::system_exit(format!(
            "[ERROR] File {} already exists!",
            p.args[0]
        )));
    }
    let method_name = p.value("--aggregationMethod").unwrap_or("average");
    let method = AggregationMethod::from_name(method_name).ok_or_else(|| {
        Exit::system_exit(format!(
            "[ERROR] Unrecognized aggregation method: {method_name}"
        ))
    })?;
    let xff = p
        .value("--xFilesFactor")
        .and_then(pyfmt::parse_float)
        .unwrap_or(0.5);
    if !(0.0..=1.0).contains(&xff) && !xff.is_nan() {
        return Err(Exit::system_exit(format!(
            "[ERROR] Invalid xFilesFactor {}, not between 0 and 1",
            pyfmt::repr(xff)
        )));
    }
    let opts = CreateOptions {
        sparse: p.flag("--sparse"),
        fallocate: p.flag("--fallocate"),
    };
    WhisperFile::create(path, &retentions, method, xff as f32, opts)
        .map_err(|e| Exit::error(&e))?;
    let size = std::fs::metadata(path)
        .map_err(|e| Exit::system_exit(os_error(path, &e)))?
        .len();
    say!(ctx, "Created: {} ({size} bytes)", p.args[0]);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapoints_convert_like_python() {
        assert_eq!(
            parse_datapoint("100:1.5").unwrap(),
            Point {
                timestamp: 100,
                value: 1.5
            }
        );
        assert_eq!(
            parse_datapoint("100: 2\n").unwrap(),
            Point {
                timestamp: 100,
                value: 2.0
            }
        );
        assert!(
            parse_datapoint("100:1:2")
                .unwrap_err()
                .contains("too many values")
        );
        assert!(parse_datapoint("100").unwrap_err().contains("got 1"));
        assert!(
            parse_datapoint("1.5:1")
                .unwrap_err()
                .contains("int() with base 10: '1.5'")
        );
        assert!(parse_datapoint("1:x").unwrap_err().contains("float: 'x'"));
    }

    #[test]
    fn byte_format_matches_script() {
        assert_eq!(byte_format(40.0), "40.000bytes");
        assert_eq!(byte_format(146_920.0), "143.477KB");
        assert_eq!(byte_format(4096.0 * 1000.0 * 500.0), "1.907GB");
    }

    #[test]
    fn os_errors_read_like_python() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(
            os_error(Path::new("x"), &e),
            "[Errno 2] No such file or directory: 'x'"
        );
    }
}
