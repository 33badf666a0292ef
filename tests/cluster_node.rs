//! A routing handle in front of three carbonlite nodes, all in this process on loopback:
//! every metric lands in a whisper file on exactly the nodes python carbon's
//! ConsistentHashRing names (the ring carbon-relay and graphite-web use), reads back through
//! the router (fetch and find over carbonserver), and graphite-web with the three nodes as
//! CLUSTER_SERVERS finds and renders all of it. One node is closed mid-stream and reopened on
//! the same ports: nothing is lost, the sender's stats say what happened.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::points::unix_now;

const SCHEMAS: &str = "[all]\npattern = .*\nretentions = 60s:30m\n";
const INSTANCES: [&str; 3] = ["a", "b", "c"];

/// A storage node: pickle in, carbonserver out, on 127.0.0.<k+1> so carbon's diverse
/// replicas (distinct hosts) apply.
struct Node {
    data: PathBuf,
    schemas: PathBuf,
    host: String,
    pickle: u16,
    http: u16,
    carbon: Option<Carbon>,
}

impl Node {
    fn start(root: &Path, k: usize) -> Node {
        let host = format!("127.0.0.{}", k + 1);
        let dir = root.join(format!("node{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        let schemas = dir.join("storage-schemas.conf");
        std::fs::write(&schemas, SCHEMAS).unwrap();
        let mut n = Node {
            data: dir.join("data"),
            schemas,
            pickle: common::free_port(&host),
            http: common::free_port(&host),
            host,
            carbon: None,
        };
        n.open();
        n
    }

    fn open(&mut self) {
        let toml = format!(
            "[whisper]\nworkers = 2\nmax-open-files = 512\nschemas-file = {:?}\n\
             [tcp]\nenabled = false\n[udp]\nenabled = false\n\
             [pickle]\nenabled = true\nlisten = \"{h}:{p}\"\n\
             [carbonserver]\nenabled = true\nlisten = \"{h}:{q}\"\n\
             max-metrics-globbed = 1000000\nmax-metrics-rendered = 1000000\n",
            self.schemas.display().to_string(),
            h = self.host,
            p = self.pickle,
            q = self.http,
        );
        let c = Config::embedded(&self.data)
            .apply_toml(&toml, "<node>")
            .unwrap();
        // The port was free a moment ago; a restart reuses it (SO_REUSEADDR).
        self.carbon = Some(Carbon::open(c).expect("node opens on its ports"));
    }

    fn close(&mut self) {
        if let Some(c) = self.carbon.take() {
            c.close();
        }
    }

    fn c(&self) -> &Carbon {
        self.carbon.as_ref().unwrap()
    }

    fn destination(&self, k: usize) -> String {
        format!("{}:{}:{}", self.host, self.pickle, INSTANCES[k])
    }

    fn query(&self) -> String {
        format!("{}:{}", self.host, self.http)
    }

    /// Metric names that have a whisper file on this node.
    fn files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        walk(&self.data, &self.data, &mut out);
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else if let Some(rel) = p
            .strip_prefix(root)
            .ok()
            .and_then(|r| r.to_str())
            .and_then(|r| r.strip_suffix(".wsp"))
        {
            out.insert(rel.replace('/', "."));
        }
    }
}

fn router(dir: &Path, nodes: &[Node], extra: &str) -> Carbon {
    let dests: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| format!("{:?}", n.destination(k)))
        .collect();
    let queries: Vec<String> = nodes.iter().map(|n| format!("{:?}", n.query())).collect();
    let toml = format!(
        "[whisper]\nenabled = false\n[tcp]\nenabled = false\n[udp]\nenabled = false\n\
         [cluster]\ndestinations = [{}]\nquery-destinations = [{}]\nprotocol = \"pickle\"\n\
         reconnect-max-delay = \"300ms\"\nconnect-timeout = \"500ms\"\n{extra}",
        dests.join(", "),
        queries.join(", ")
    );
    let c = Config::embedded(dir).apply_toml(&toml, "<router>").unwrap();
    Carbon::open(c).expect("routing handle opens")
}

/// python carbon's ConsistentHashingRouter placement of `names`: node indices per name.
fn reference(nodes: &[Node], names: &[String], repl: usize) -> Vec<Vec<usize>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/ring_carbon.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("carbon_ch")
        .arg(repl.to_string())
        .arg("1")
        .args(nodes.iter().enumerate().map(|(k, n)| n.destination(k)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/install-test-deps)");
    let input = names.join("\n") + "\n";
    let mut stdin = child.stdin.take().unwrap();
    let w = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "python carbon's ring failed (pip install carbon): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), names.len());
    lines
        .iter()
        .map(|l| {
            l.split(' ')
                .map(|d| {
                    let inst = d.rsplit(':').next().unwrap();
                    INSTANCES.iter().position(|i| *i == inst).unwrap()
                })
                .collect()
        })
        .collect()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("cl.h{:02}.m{i}", i % 100)).collect()
}

/// Sends one point per name (value = index) through the router in 10,000-line buffers.
fn send(router: &Carbon, names: &[String], range: std::ops::Range<usize>, ts: i64) {
    for chunk in range.collect::<Vec<_>>().chunks(10_000) {
        let mut buf = String::new();
        for &i in chunk {
            buf.push_str(&format!("{} {i} {ts}\n", names[i]));
        }
        let r = router.add_lines(buf.as_bytes());
        assert_eq!(
            (r.accepted, r.rejected),
            (chunk.len() as u64, 0),
            "{:?}",
            r.first_error
        );
    }
}

/// `send` in 500-line steps, each after the `healthy` destinations' queues are below half of
/// the router's `queue-size = 1000`: a healthy node never spills because its sender fell
/// behind on a loaded machine, so its spill counter speaks only of outages.
fn send_paced(
    router: &Carbon,
    names: &[String],
    range: std::ops::Range<usize>,
    ts: i64,
    healthy: &[usize],
) {
    let idx: Vec<usize> = range.collect();
    for step in idx.chunks(500) {
        wait_for(
            "healthy senders to keep up",
            Duration::from_secs(30),
            || {
                let st = router.destination_stats();
                healthy.iter().all(|&k| st[k].sender.queued < 500)
            },
        );
        send(router, names, step[0]..step[step.len() - 1] + 1, ts);
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Flushes the router, waits until the nodes have read `total` points, flushes the nodes.
fn settle(router: &Carbon, nodes: &[Node], total: u64) {
    router.flush().expect("router flush drains every sender");
    wait_for("nodes to read every point", Duration::from_secs(60), || {
        nodes
            .iter()
            .map(|n| n.c().stats().pickle_metrics_received)
            .sum::<u64>()
            >= total
    });
    for n in nodes {
        n.c().flush().unwrap();
    }
}

/// Files exactly where the reference puts them; returns the number of misplaced names.
fn check_placement(nodes: &[Node], names: &[String], want: &[Vec<usize>]) -> usize {
    let files: Vec<BTreeSet<String>> = nodes.iter().map(Node::files).collect();
    let mut bad = 0;
    for (i, name) in names.iter().enumerate() {
        let have: Vec<usize> = (0..nodes.len())
            .filter(|&k| files[k].contains(name))
            .collect();
        let mut w = want[i].clone();
        w.sort_unstable();
        if have != w {
            if bad < 5 {
                eprintln!("{name}: files on nodes {have:?}, reference says {w:?}");
            }
            bad += 1;
        }
    }
    let total: usize = files.iter().map(BTreeSet::len).sum();
    let expected: usize = want.iter().map(Vec::len).sum();
    assert_eq!(total, expected, "files that no reference placement names");
    bad
}

/// fetch through the router returns each sampled metric's value; find lists every name.
fn check_reads(router: &Carbon, names: &[String], ts: i64, step: usize) {
    let now = unix_now();
    for i in (0..names.len()).step_by(step) {
        let s = router
            .fetch_at(&names[i], ts - 300, Some(now), now)
            .unwrap_or_else(|e| panic!("fetch {} through the router: {e}", names[i]));
        let vals: Vec<f64> = s.values.iter().copied().filter(|v| !v.is_nan()).collect();
        assert_eq!(vals, vec![i as f64], "{}", names[i]);
    }
    let branches = router.find("cl.*").unwrap();
    assert_eq!(branches.len(), 100.min(names.len()));
    assert!(branches.iter().all(|m| !m.is_leaf));
    let mut leaves = BTreeSet::new();
    for b in &branches {
        for m in router.find(&format!("{}.*", b.path)).unwrap() {
            assert!(m.is_leaf, "{m:?}");
            leaves.insert(m.path);
        }
    }
    let want: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(leaves.len(), want.len());
    assert!(leaves == want, "find through the router lists other names");
}

fn graphite_web(nodes: &[Node], tmp: &Path, pattern: &str, ts: i64) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/cluster_graphite_web.py"
    );
    let now = unix_now();
    let cluster: Vec<String> = nodes.iter().map(Node::query).collect();
    let out = Command::new("python3")
        .arg(script)
        .arg(pattern)
        .arg((ts - 300).to_string())
        .arg(now.to_string())
        .arg(now.to_string())
        .env("QUERY_TMP", tmp)
        .env("QUERY_CLUSTER", cluster.join(","))
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "graphite-web failed (needs graphite-web, see scripts/install-test-deps):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap()
}

#[test]
fn three_nodes_hold_exactly_what_the_reference_ring_names() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = (0..3).map(|k| Node::start(dir.path(), k)).collect();
    let r = router(&dir.path().join("router"), &nodes, "queue-size = 200000\n");
    let names = names(N);
    let t = Instant::now();
    let want = reference(&nodes, &names, 1);
    eprintln!(
        "python carbon's ring placed 100k names in {:?}",
        t.elapsed()
    );
    let now = unix_now();
    let ts = now - now % 60 - 60;
    let t = Instant::now();
    send(&r, &names, 0..N, ts);
    settle(&r, &nodes, N as u64);
    eprintln!("100k metrics routed and persisted in {:?}", t.elapsed());
    assert_eq!(
        check_placement(&nodes, &names, &want),
        0,
        "misplaced metrics"
    );
    let st = r.destination_stats();
    assert_eq!(st.len(), 3);
    for (k, d) in st.iter().enumerate() {
        let share = want.iter().filter(|w| w.contains(&k)).count() as u64;
        assert_eq!(
            (d.sender.sent, d.sender.dropped, d.sender.queued),
            (share, 0, 0),
            "{d:?}"
        );
    }
    let t = Instant::now();
    check_reads(&r, &names, ts, 50);
    eprintln!("reads through the router in {:?}", t.elapsed());

    // graphite-web with CLUSTER_SERVERS = the three nodes: every metric, found and rendered.
    let t = Instant::now();
    let g = graphite_web(&nodes, dir.path(), "cl.*.*", ts);
    eprintln!("graphite-web find + render of 100k in {:?}", t.elapsed());
    let found: BTreeSet<&str> = g["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(found.len(), N, "graphite-web finds every metric");
    let values = g["values"].as_object().unwrap();
    assert_eq!(values.len(), N, "graphite-web renders every metric");
    for (i, name) in names.iter().enumerate() {
        assert!(found.contains(name.as_str()), "{name}");
        assert_eq!(
            values[name.as_str()],
            serde_json::json!([i as f64]),
            "{name}"
        );
    }
    eprintln!("graphite-web answers checked");
    let t = Instant::now();
    drop(r);
    eprintln!("router closed in {:?}", t.elapsed());
    for mut n in nodes {
        n.close();
    }
    eprintln!("nodes closed in {:?}", t.elapsed());
    drop(dir);
    eprintln!("teardown in {:?}", t.elapsed());
}

#[test]
fn replication_two_places_copies_on_distinct_nodes() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = (0..3).map(|k| Node::start(dir.path(), k)).collect();
    let r = router(
        &dir.path().join("router"),
        &nodes,
        "replication-factor = 2\nqueue-size = 100000\n",
    );
    let names = names(N);
    let want = reference(&nodes, &names, 2);
    assert!(want.iter().all(|w| w.len() == 2 && w[0] != w[1]));
    let now = unix_now();
    let ts = now - now % 60 - 60;
    send(&r, &names, 0..N, ts);
    settle(&r, &nodes, 2 * N as u64);
    assert_eq!(
        check_placement(&nodes, &names, &want),
        0,
        "misplaced copies"
    );
    check_reads(&r, &names, ts, 20);

    // The first owner down: fetch falls back to the second replica.
    let mut nodes = nodes;
    let i = (0..N).find(|&i| want[i][0] == 0).unwrap();
    nodes[0].close();
    let s = r
        .fetch(&names[i], ts - 300, None)
        .expect("the replica answers");
    assert_eq!(
        s.values
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect::<Vec<_>>(),
        vec![i as f64]
    );
    assert!(r.destination_stats()[0].query_errors >= 1);
}

#[test]
fn a_node_closed_mid_stream_loses_nothing() {
    const N: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = (0..3).map(|k| Node::start(dir.path(), k)).collect();
    // A small memory queue, so the outage spills to the journal.
    let rdir = dir.path().join("router");
    let r = router(&rdir, &nodes, "queue-size = 1000\n");
    let names = names(N);
    let want = reference(&nodes, &names, 1);
    let share1 = want.iter().filter(|w| w[0] == 1).count() as u64;
    let now = unix_now();
    let ts = now - now % 60 - 60;

    send_paced(&r, &names, 0..10_000, ts, &[0, 2]);
    nodes[1].close();
    send_paced(&r, &names, 10_000..20_000, ts, &[0, 2]);
    // While it is down its points wait (memory, then spill), and flush says who is stuck.
    std::thread::sleep(Duration::from_millis(500));
    let down = r.destination_stats()[1].sender;
    assert!(down.queued > 1000, "{down:?}");
    assert!(
        down.spilled > 0,
        "past queue-size the points spill: {down:?}"
    );
    assert!(down.connect_failures > 0, "{down:?}");
    nodes[1].open();
    send_paced(&r, &names, 20_000..N, ts, &[0, 2]);
    let t = Instant::now();
    r.flush().expect("flush drains the restarted node");
    eprintln!("restarted node drained in {:?}", t.elapsed());
    wait_for("every point on its node", Duration::from_secs(60), || {
        let files: usize = nodes
            .iter()
            .map(|n| {
                n.c().flush().unwrap();
                n.files().len()
            })
            .sum();
        files >= N
    });
    assert_eq!(
        check_placement(&nodes, &names, &want),
        0,
        "lost or misplaced"
    );
    let st = r.destination_stats();
    let d = st[1].sender;
    assert_eq!((d.dropped, d.queued), (0, 0), "{d:?}");
    assert!(d.reconnects >= 1, "{d:?}");
    assert!(d.sent >= share1, "{d:?}");
    for k in [0, 2] {
        assert_eq!(st[k].sender.reconnects, 0, "{:?}", st[k]);
        assert_eq!(st[k].sender.spilled, 0, "{:?}", st[k]);
    }
    check_reads(&r, &names, ts, 30);
    // Delivered spill is released.
    let spill_bytes: u64 = walkdir_size(&rdir.join(".cluster-spill"));
    assert!(
        spill_bytes < 1 << 20,
        "spill not released: {spill_bytes} bytes"
    );
}

fn walkdir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walkdir_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// A node answers `/render` with 404 both for an unknown metric and for a window outside the
/// archives of a known one; through a router the second must read as it does locally, an
/// empty series, not "not found".
#[test]
fn a_window_outside_the_archives_is_empty_through_the_router_too() {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = (0..2).map(|k| Node::start(dir.path(), k)).collect();
    let r = router(&dir.path().join("router"), &nodes, "");
    let names = names(20);
    let now = unix_now();
    let ts = now - now % 60 - 60;
    send(&r, &names, 0..20, ts);
    settle(&r, &nodes, 20);
    let (from, until) = (now - 10 * 3600, now - 9 * 3600); // retention is 30 minutes
    for (i, name) in names.iter().enumerate() {
        let s = r.fetch(name, from, Some(until)).expect("a known metric");
        assert!(s.values.is_empty() && s.step == 0, "{name}: {s:?}");
        let owner = nodes
            .iter()
            .find_map(|n| n.carbon.as_ref()?.fetch(name, from, Some(until)).ok())
            .expect("one node holds it");
        assert_eq!(s, owner, "the router's answer is the owner's local one");
        // Inside the window the value is there.
        let inside = r.fetch(name, ts - 60, Some(ts + 60)).unwrap();
        assert!(inside.values.contains(&(i as f64)), "{name}: {inside:?}");
    }
    assert!(matches!(
        r.fetch("no.such.metric", from, Some(until)),
        Err(carbonlite::error::Error::NotFound(_))
    ));
    assert!(r.destination_stats().iter().all(|d| d.query_errors == 0));
}

#[test]
fn routing_handle_config_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    // query-destinations must pair with destinations.
    let e = Config::embedded(dir.path())
        .apply_toml(
            "[cluster]\ndestinations = [\"127.0.0.1:2004:a\", \"127.0.0.1:2104:b\"]\n\
             query-destinations = [\"127.0.0.1:8080\"]\n",
            "<t>",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("query-destinations"), "{e}");
    // Without query-destinations, reads say why they cannot go to the owner.
    let c = Config::embedded(dir.path())
        .apply_toml(
            "[whisper]\nenabled = false\n[cluster]\ndestinations = [\"127.0.0.1:1:a\"]\n\
             connect-timeout = \"50ms\"\n",
            "<t>",
        )
        .unwrap();
    let c = Carbon::open(c).unwrap();
    let e = c.fetch("x.y", 0, None).unwrap_err().to_string();
    assert!(e.contains("query-destinations"), "{e}");
    assert_eq!(c.router().unwrap().destinations().len(), 1);
}

/// A relaying node routes what arrives on its own pickle listener, as carbon-relay does:
/// a frame sent to the router lands on the owners the reference ring names, nothing stays on
/// the router.
#[test]
fn points_arriving_on_the_routers_pickle_port_are_routed() {
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = (0..3).map(|k| Node::start(dir.path(), k)).collect();
    let r = router(
        &dir.path().join("router"),
        &nodes,
        "[pickle]\nenabled = true\nlisten = \"127.0.0.1:0\"\n",
    );
    let names = names(N);
    let want = reference(&nodes, &names, 1);
    let now = unix_now();
    let ts = now - now % 60 - 60;
    let points: Vec<(String, carbonlite::points::Point)> = (0..N)
        .map(|i| {
            (
                names[i].clone(),
                carbonlite::points::Point::new(ts, i as f64),
            )
        })
        .collect();
    let mut frame = Vec::new();
    carbonlite::cluster::sender::encode_pickle(&points, &mut frame);
    let mut conn = std::net::TcpStream::connect(r.pickle_addr().unwrap()).unwrap();
    conn.write_all(&(frame.len() as u32).to_be_bytes()).unwrap();
    conn.write_all(&frame).unwrap();
    drop(conn);
    wait_for(
        "the router to read the frame",
        Duration::from_secs(30),
        || r.stats().pickle_metrics_received >= N as u64,
    );
    settle(&r, &nodes, N as u64);
    assert_eq!(check_placement(&nodes, &names, &want), 0, "misplaced");
    assert_eq!(r.stats().cache_size, 0, "the router keeps nothing");
    check_reads(&r, &names, ts, 50);
}
