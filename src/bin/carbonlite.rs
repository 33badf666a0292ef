//! `carbonlite`: a carbon-cache node over the library — plaintext on 127.0.0.1:2003, whisper
//! files under ./data, carbon's default schemas — or whatever a go-carbon.conf says.
//! SIGINT/SIGTERM flush every cached point and exit cleanly.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use carbonlite::config::Config;
use carbonlite::engine::Carbon;

const USAGE: &str = "usage: carbonlite [-config go-carbon.conf] [-check-config] [-data-dir DIR] [-listen ADDR] [-version]

Runs an embedded carbon node: plaintext TCP listener, sharded cache, persister threads
writing Graphite whisper files. Without -config: listen 127.0.0.1:2003, data dir ./data,
carbon's example storage schemas. Options take one or two dashes.
  -config FILE      go-carbon.conf (TOML, go-carbon key names)
  -check-config     load the config, print what it resolves to, exit
  -data-dir DIR     override [whisper] data-dir
  -listen ADDR      override [tcp] listen (and enable it)
  -version          print the version";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("carbonlite: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft descriptor limit to the hard one, as the Go runtime does for go-carbon:
/// a node keeps thousands of whisper files and connections open, and distributions start
/// services with a soft limit of 1024. Failure only leaves the limit as it was.
fn raise_nofile_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

fn run() -> Result<(), String> {
    raise_nofile_limit();
    let mut args = std::env::args().skip(1);
    let (mut config_path, mut check, mut data_dir, mut listen) = (None, false, None, None);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.trim_start_matches('-').split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.trim_start_matches('-').to_string(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("-{name} needs a value"))
        };
        match flag.as_str() {
            "config" | "c" => config_path = Some(value("config")?),
            "check-config" => check = true,
            "data-dir" => data_dir = Some(value("data-dir")?),
            "listen" => listen = Some(value("listen")?),
            "version" => {
                println!("carbonlite {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            "help" | "h" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => return Err(format!("unknown option {arg}\n{USAGE}")),
        }
    }
    let mut config = match &config_path {
        Some(p) => Config::load(std::path::Path::new(p)).map_err(|e| e.to_string())?,
        None => Config::daemon(),
    };
    if let Some(d) = data_dir {
        config.whisper.data_dir = d.into();
    }
    if let Some(l) = listen {
        config.tcp.listen = l;
        config.tcp.enabled = true;
    }
    for key in &config.ignored {
        eprintln!("carbonlite: config: {key} is accepted but not implemented; ignored");
    }
    if check {
        println!("{config:#?}");
        return Ok(());
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let carbon = Carbon::open(config).map_err(|e| e.to_string())?;
    let c = carbon.config();
    eprintln!(
        "carbonlite {}: data dir {}, {} persister worker(s), listening on {}",
        env!("CARGO_PKG_VERSION"),
        c.whisper.data_dir.display(),
        c.whisper.workers,
        carbon
            .tcp_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "nothing ([tcp] disabled)".into()),
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "carbonlite: stopping: flushing {} cached points",
        carbon.stats().cache_size
    );
    carbon.close();
    let s = carbon.stats();
    eprintln!(
        "carbonlite: stopped: {} points received, {} committed in {} updates, {} files created, {} errors",
        s.metrics_received,
        s.committed_points,
        s.update_operations,
        s.created,
        s.parse_errors + s.name_errors + s.write_errors
    );
    Ok(())
}
