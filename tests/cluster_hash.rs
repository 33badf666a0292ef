//! Placement against the real programs: 100,000 names, every hash variant, 3–5 destinations
//! with and without instances, replication 1 and 2. The peers are carbon-c-relay (Debian
//! package; `-t` prints where each name from stdin goes) and carbon's own
//! `ConsistentHashingRouter` (PyPI `carbon`, through tests/py/ring_carbon.py). A missing peer
//! fails the test: scripts/install-test-deps installs both.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use carbonlite::cluster::{Destination, HashKind, HashRing};

const NAMES: usize = 100_000;

/// Deterministic, varied names: graphite-style paths of different depths and lengths, the
/// extra characters carbon-c-relay allows, and some UTF-8 (where carbon-c-relay's signed
/// `char` shows in FNV-1a).
fn names() -> Vec<String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "servers",
        "cpu",
        "user",
        "eth0",
        "rx_bytes",
        "app-1",
        "latency:p99",
        "db#3",
        "a",
        "requests",
        "zone-é",
        "grüße",
        "x",
        "memory",
        "free",
    ];
    (0..NAMES)
        .map(|i| {
            let depth = 1 + (next() % 6) as usize;
            let mut parts: Vec<String> = (0..depth)
                .map(|_| words[(next() % words.len() as u64) as usize].to_string())
                .collect();
            parts.push(format!("n{i}"));
            parts.join(".")
        })
        .collect()
}

fn dests(list: &[&str]) -> Vec<Destination> {
    list.iter()
        .map(|d| Destination::parse(d).unwrap())
        .collect()
}

/// The destination sets: without instances, mixed, and all with instances (two on one host,
/// numeric instances for jump_fnv1a_ch's numeric ordering).
fn sets() -> Vec<(&'static str, Vec<Destination>)> {
    vec![
        (
            "3 no-instance",
            dests(&["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2004"]),
        ),
        (
            "4 mixed",
            dests(&[
                "10.0.0.1:2003:a",
                "10.0.0.2:2003",
                "10.0.0.3:2004:b",
                "192.168.1.1:2003:c",
            ]),
        ),
        (
            "5 instances",
            dests(&[
                "10.0.0.1:2003:a",
                "10.0.0.1:2103:b",
                "10.0.0.2:2003:c",
                "10.0.0.3:2003:10",
                "10.0.0.4:2003:2",
            ]),
        ),
    ]
}

fn ours(ring: &HashRing, names: &[String], copies: usize, diverse: bool) -> Vec<String> {
    let mut v = Vec::new();
    names
        .iter()
        .map(|n| {
            ring.place(n, copies, diverse, &mut v);
            v.iter()
                .map(|&i| ring.members()[i].address())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn compare(label: &str, ours: &[String], theirs: &[String], names: &[String]) -> usize {
    assert_eq!(
        theirs.len(),
        ours.len(),
        "{label}: reference answered {} names",
        theirs.len()
    );
    let bad: Vec<usize> = (0..ours.len()).filter(|&i| ours[i] != theirs[i]).collect();
    eprintln!(
        "placement {label}: names checked {}, mismatches {}",
        ours.len(),
        bad.len()
    );
    for &i in bad.iter().take(5) {
        eprintln!(
            "  {:?}: ours [{}] reference [{}]",
            names[i], ours[i], theirs[i]
        );
    }
    bad.len()
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run scripts/install-test-deps)"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// carbon-c-relay: one config per destination set holding a cluster per (hash, replication);
/// every `match *` without `stop` lets each name reach all of them in one run.
#[test]
fn placement_matches_carbon_c_relay() {
    let names = names();
    let input = names.join("\n") + "\n";
    let kinds = [
        (HashKind::CarbonChRelay, "carbon_ch"),
        (HashKind::Fnv1aChRelay, "fnv1a_ch"),
        (HashKind::JumpFnv1aCh, "jump_fnv1a_ch"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut total_bad = 0;
    for (set_name, set) in sets() {
        let members: Vec<String> = set
            .iter()
            .map(|d| match &d.instance {
                Some(i) => format!("{}={i}", d.address()),
                None => d.address(),
            })
            .collect();
        let mut conf = String::new();
        let mut clusters = Vec::new();
        for (k, (_, cname)) in kinds.iter().enumerate() {
            for repl in [1, 2] {
                let id = format!("c{k}r{repl}");
                conf += &format!(
                    "cluster {id} {cname} replication {repl} {} ;\n",
                    members.join(" ")
                );
                clusters.push((id, k, repl));
            }
        }
        for (id, _, _) in &clusters {
            conf += &format!("match * send to {id};\n");
        }
        let path = dir.path().join("relay.conf");
        std::fs::write(&path, &conf).unwrap();
        let out = run_with_stdin(
            Command::new("carbon-c-relay")
                .arg("-t")
                .arg("-f")
                .arg(&path),
            input.as_bytes(),
        );
        // "match", "    * -> NAME", "    kind(cluster)", then "        host:port" per copy;
        // the echoed configuration before it has no "kind(cluster)" lines.
        let mut got: HashMap<String, Vec<String>> = HashMap::new();
        let mut current: Option<String> = None;
        for line in out.lines() {
            let t = line.trim();
            let indent = line.len() - line.trim_start().len();
            if indent == 8 {
                if let Some(id) = &current {
                    let slot = got.get_mut(id).unwrap().last_mut().unwrap();
                    if !slot.is_empty() {
                        slot.push(' ');
                    }
                    slot.push_str(t);
                }
            } else if indent == 4 && t.ends_with(')') && t.contains('(') {
                let id = t[t.find('(').unwrap() + 1..t.len() - 1].to_string();
                got.entry(id.clone()).or_default().push(String::new());
                current = Some(id);
            } else {
                current = None;
            }
        }
        for (id, k, repl) in &clusters {
            let ring = HashRing::new(kinds[*k].0, &set).unwrap();
            let mine = ours(&ring, &names, *repl, false);
            let theirs = got.remove(id).unwrap_or_default();
            total_bad += compare(
                &format!(
                    "{} ({set_name}, replication {repl}) vs carbon-c-relay",
                    kinds[*k].0.name()
                ),
                &mine,
                &theirs,
                &names,
            );
        }
    }
    assert_eq!(total_bad, 0, "placements differ from carbon-c-relay");
}

/// carbon's ConsistentHashingRouter (carbon-relay, and graphite-web's copy of the ring).
#[test]
fn placement_matches_python_carbon() {
    let names = names();
    let input = names.join("\n") + "\n";
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/ring_carbon.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut total_bad = 0;
    let mut runs = 0;
    for (set_name, set) in sets() {
        for kind in [HashKind::CarbonCh, HashKind::Fnv1aCh] {
            // carbon's fnv1a_ch hashes only the instance: without instances every member
            // collides (carbon #714), which HashRing refuses.
            let Ok(ring) = HashRing::new(kind, &set) else {
                assert!(set.iter().filter(|d| d.instance.is_none()).count() > 1);
                continue;
            };
            for (repl, diverse) in [(1, true), (2, true), (2, false)] {
                let out = run_with_stdin(
                    Command::new(&python)
                        .arg(&script)
                        .arg(kind.name())
                        .arg(repl.to_string())
                        .arg(if diverse { "1" } else { "0" })
                        .args(set.iter().map(|d| d.to_string())),
                    input.as_bytes(),
                );
                let theirs: Vec<String> = out
                    .lines()
                    .map(|l| {
                        // carbon prints host:port:instance; compare by host:port as above.
                        l.split(' ')
                            .map(|d| Destination::parse(d).unwrap().address())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                let mine = ours(&ring, &names, repl, diverse);
                total_bad += compare(
                    &format!(
                        "{} ({set_name}, replication {repl}, diverse {diverse}) vs python carbon",
                        kind.name()
                    ),
                    &mine,
                    &theirs,
                    &names,
                );
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 15);
    assert_eq!(total_bad, 0, "placements differ from python carbon");
}

/// The data above exercises what tells the variants apart, so the comparisons can fail: the
/// collision rule moves names, and carbon-c-relay's signed `char` changes FNV positions.
#[test]
fn variants_disagree_on_this_data() {
    use carbonlite::cluster::hash::fnv1a_pos;
    let names = names();
    let signed = names
        .iter()
        .filter(|n| fnv1a_pos(n.as_bytes(), true) != fnv1a_pos(n.as_bytes(), false))
        .count();
    eprintln!("names whose FNV-1a position depends on char signedness: {signed}");
    assert!(signed > 1000, "{signed}");
    let mut moved = 0;
    for (set_name, set) in sets() {
        let a = HashRing::new(HashKind::CarbonCh, &set).unwrap();
        let b = HashRing::new(HashKind::CarbonChRelay, &set).unwrap();
        let m = carbonlite::cluster::moves(&a, &b, 1, false, names.iter().map(String::as_str));
        eprintln!(
            "carbon_ch vs carbon_ch/c-relay ({set_name}): {} names differ",
            m.len()
        );
        moved += m.len();
    }
    assert!(
        moved > 0,
        "no ring collision in any set: the collision rule is untested"
    );
}

/// The "explain the ring" CLI prints the library's placement, and only moved names on --add.
#[test]
fn ring_cli_explains_placement_and_moves() {
    let names: Vec<String> = names().into_iter().take(2000).collect();
    let input = names.join("\n") + "\n";
    let members = ["10.0.0.1:2004:a", "10.0.0.2:2004:b", "10.0.0.3:2004:c"];
    let exe = env!("CARGO_BIN_EXE_carbonlite-ring");
    let out = run_with_stdin(
        Command::new(exe)
            .args(["--hash", "carbon_ch", "--replication", "2"])
            .args(members),
        input.as_bytes(),
    );
    let ring = HashRing::new(HashKind::CarbonCh, &dests(&members)).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), names.len());
    for (n, l) in names.iter().zip(&lines) {
        let want: Vec<String> = ring
            .owners(n, 2, true)
            .iter()
            .map(|&i| ring.members()[i].to_string())
            .collect();
        assert_eq!(*l, format!("{n}\t{}", want.join(" ")));
    }
    let out = run_with_stdin(
        Command::new(exe)
            .args(["--hash", "carbon_ch"])
            .args(members)
            .args(["--add", "10.0.0.4:2004:d"]),
        input.as_bytes(),
    );
    let moved: Vec<&str> = out.lines().collect();
    // About a quarter of the names move, each to the new member.
    assert!(moved.len() > 300 && moved.len() < 700, "{}", moved.len());
    assert!(
        moved.iter().all(|l| l.ends_with("-> 10.0.0.4:2004:d")),
        "{out}"
    );
}
