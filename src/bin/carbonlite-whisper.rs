//! `carbonlite-whisper`: Graphite whisper 1.1.10's command-line tools as subcommands, with
//! the same arguments and the same output text, so scripts that parse them keep working.
//!
//! Invoked through a link named like a script (`whisper-fetch.py`, `whisper-fetch`), it
//! behaves as that script, usage text included.
#![deny(unsafe_code)]

#[path = "carbonlite_whisper/args.rs"]
mod args;
#[path = "carbonlite_whisper/cmds.rs"]
mod cmds;
#[path = "carbonlite_whisper/pyfmt.rs"]
mod pyfmt;
#[path = "carbonlite_whisper/pytime.rs"]
mod pytime;

use std::io::Write;

const USAGE: &str = "Usage: carbonlite-whisper <command> [options] [args]

Graphite whisper 1.1.10's scripts, same arguments and output:
  create                   whisper-create.py
  info                     whisper-info.py
  update                   whisper-update.py
  fetch                    whisper-fetch.py
  dump                     whisper-dump.py
  set-aggregation-method   whisper-set-aggregation-method.py

`carbonlite-whisper <command> --help` shows a command's options. A link to this binary
named whisper-<command>.py (or whisper-<command>) runs that command directly.

Environment:
  CARBONLITE_NOW   Unix seconds to use as \"now\" instead of the clock (for tests and
                   replays): fetch's --from/--until defaults, update's N: and retention
                   checks.
";

/// The script a link name stands for: `whisper-fetch.py` or `whisper-fetch` → `fetch`.
fn script_from_argv0(argv0: &str) -> Option<&'static cmds::Script> {
    let base = std::path::Path::new(argv0).file_name()?.to_str()?;
    let name = base.strip_prefix("whisper-")?;
    cmds::script(name.strip_suffix(".py").unwrap_or(name))
}

/// `now` for the whole process: `CARBONLITE_NOW` if set, else the clock.
fn process_now() -> Result<i64, String> {
    match std::env::var("CARBONLITE_NOW") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("CARBONLITE_NOW={v:?} is not an integer")),
        Err(_) => Ok(carbonlite::points::unix_now()),
    }
}

fn run(argv: Vec<String>) -> i32 {
    let argv0 = argv.first().cloned().unwrap_or_default();
    let (script, prog, rest) = if let Some(s) = script_from_argv0(&argv0) {
        let prog = std::path::Path::new(&argv0)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned());
        (s, prog.unwrap_or_default(), argv[1..].to_vec())
    } else {
        match argv.get(1).map(String::as_str) {
            Some("-h" | "--help" | "help") => {
                print!("{USAGE}");
                return 0;
            }
            Some(name) => match cmds::script(name) {
                Some(s) => (s, format!("carbonlite-whisper {name}"), argv[2..].to_vec()),
                None => {
                    eprint!("{USAGE}\ncarbonlite-whisper: error: unknown command {name:?}\n");
                    return 2;
                }
            },
            None => {
                eprint!("{USAGE}");
                return 2;
            }
        }
    };
    let now = match process_now() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("carbonlite-whisper: {e}");
            return 2;
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut ctx = cmds::Ctx {
        prog,
        now,
        out: &mut out,
        stdin: &mut input,
    };
    let result = script.main(&mut ctx, &rest);
    let flushed = out.flush();
    let code = match result {
        Ok(code) => code,
        Err(exit) => {
            eprint!("{}", exit.stderr);
            exit.code
        }
    };
    if code == 141
        || flushed
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        // The scripts restore SIG_DFL for SIGPIPE and die of it; do the same.
        let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
        return 141;
    }
    code
}

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(run(argv));
}
