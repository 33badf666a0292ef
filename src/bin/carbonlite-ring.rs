//! `carbonlite-ring`: explains a cluster ring — where names go, and what moves when a member
//! is added or removed — before anyone changes a production relay.
//!
//! ```text
//! carbonlite-ring [--hash NAME] [--replication N] [--no-diverse] [--ring]
//!                 [--add DEST]... [--remove DEST]... DEST... < names
//! ```

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use carbonlite::cluster::{Destination, HashKind, HashRing, moves};

const USAGE: &str = "usage: carbonlite-ring [--hash NAME] [--replication N] [--no-diverse] [--ring]
                       [--add host:port[:instance]]... [--remove host:port[:instance]]...
                       host:port[:instance]... < metric names

Prints `name<TAB>owner [replica...]` for every name on stdin. With --add/--remove, prints
only the names whose owners change (`name<TAB>old -> new`) and a summary on stderr.
--ring prints the ring itself (position and member), in ring order.";

struct Args {
    kind: HashKind,
    copies: usize,
    diverse: bool,
    ring: bool,
    members: Vec<Destination>,
    add: Vec<Destination>,
    remove: Vec<Destination>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        kind: HashKind::CarbonCh,
        copies: 1,
        diverse: true,
        ring: false,
        members: Vec::new(),
        add: Vec::new(),
        remove: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let dest = |s: Option<String>| -> Result<Destination, String> {
        let s = s.ok_or("missing destination")?;
        Destination::parse(&s).map_err(|e| e.to_string())
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--hash" => {
                let n = it.next().unwrap_or_default();
                a.kind = HashKind::from_name(&n).ok_or_else(|| {
                    format!("unknown hash {n:?}; one of {}", HashKind::NAMES.join(", "))
                })?;
            }
            "--replication" => {
                a.copies = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or("--replication needs a number >= 1")?;
            }
            "--no-diverse" => a.diverse = false,
            "--ring" => a.ring = true,
            "--add" => a.add.push(dest(it.next())?),
            "--remove" => a.remove.push(dest(it.next())?),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => a.members.push(dest(Some(s.to_owned()))?),
        }
    }
    Ok(a)
}

fn owners(ring: &HashRing, idx: &[usize]) -> String {
    idx.iter()
        .map(|&i| ring.members()[i].to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(a: Args) -> Result<(), String> {
    let old = HashRing::new(a.kind, &a.members).map_err(|e| e.to_string())?;
    let out = io::stdout();
    let mut out = BufWriter::new(out.lock());
    let w = |r: io::Result<()>| r.map_err(|e| e.to_string());
    if a.ring {
        for &(pos, m) in old.entries() {
            w(writeln!(out, "{pos}\t{}", old.members()[m]))?;
        }
        if a.kind == HashKind::JumpFnv1aCh {
            w(writeln!(
                out,
                "(jump_fnv1a_ch has buckets, not ring positions)"
            ))?;
        }
        return w(out.flush());
    }
    let names: Vec<String> = io::stdin()
        .lock()
        .lines()
        .map(|l| l.map(|s| s.trim().to_owned()))
        .filter(|l| !matches!(l, Ok(s) if s.is_empty()))
        .collect::<io::Result<_>>()
        .map_err(|e| e.to_string())?;
    if a.add.is_empty() && a.remove.is_empty() {
        let mut v = Vec::new();
        for n in &names {
            old.place(n, a.copies, a.diverse, &mut v);
            w(writeln!(out, "{n}\t{}", owners(&old, &v)))?;
        }
        return w(out.flush());
    }
    let mut members: Vec<Destination> = a
        .members
        .iter()
        .filter(|m| !a.remove.contains(m))
        .cloned()
        .collect();
    for r in &a.remove {
        if !a.members.contains(r) {
            return Err(format!("--remove {r}: not a member"));
        }
    }
    members.extend(a.add.iter().cloned());
    let new = HashRing::new(a.kind, &members).map_err(|e| e.to_string())?;
    let moved = moves(
        &old,
        &new,
        a.copies,
        a.diverse,
        names.iter().map(String::as_str),
    );
    let list = |d: &[Destination]| {
        d.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    for m in &moved {
        w(writeln!(
            out,
            "{}\t{} -> {}",
            m.name,
            list(&m.from),
            list(&m.to)
        ))?;
    }
    w(out.flush())?;
    eprintln!(
        "{} of {} names move ({:.2}%) under {}",
        moved.len(),
        names.len(),
        if names.is_empty() {
            0.0
        } else {
            100.0 * moved.len() as f64 / names.len() as f64
        },
        a.kind.name()
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("carbonlite-ring: {e}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
