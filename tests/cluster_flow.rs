//! Flow control on a routing node without spill (carbon-relay's `USE_FLOW_CONTROL`): a
//! destination whose queue is full holds back the router's TCP listener — and through TCP the
//! client — instead of losing points; `flow-control = false` keeps dropping and counting; a
//! close while a listener waits does not hang; a full replica holds back only its own copy.
//!
//! Destinations live on 127.0.0.2: the router's connects then come from 127.0.0.1, so a
//! reconnect loop to a port nobody listens on yet cannot connect a socket to itself.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use carbonlite::cluster::SenderStats;
use carbonlite::config::Config;
use carbonlite::engine::Carbon;

const DEST_HOST: &str = "127.0.0.2";
const QUEUE: u64 = 100;

/// A plaintext carbon stand-in on a fixed address: collects every line it reads.
struct Sink {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(port: u16) -> Sink {
        let listener = TcpListener::bind((DEST_HOST, port)).expect("bind sink");
        listener.set_nonblocking(true).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !s.load(SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let l = l.clone();
                        readers.push(std::thread::spawn(move || read_lines(conn, &l)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            drop(listener);
            for t in readers {
                let _ = t.join();
            }
        });
        Sink {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads lines until the peer closes (the router's close ends every connection).
fn read_lines(conn: TcpStream, lines: &Mutex<Vec<String>>) {
    let mut rd = BufReader::new(conn);
    let mut buf = String::new();
    loop {
        buf.clear();
        match rd.read_line(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => lines
                .lock()
                .unwrap()
                .push(buf.trim_end_matches('\n').to_owned()),
        }
    }
}

/// A port on DEST_HOST that nothing listens on (yet).
fn free_port() -> u16 {
    common::free_port(DEST_HOST)
}

/// A routing handle with a TCP listener, plaintext senders, no spill and a 100-point queue.
fn router(dir: &Path, ports: &[u16], extra: &str) -> Carbon {
    let dests: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(k, p)| format!("\"{DEST_HOST}:{p}:d{k}\""))
        .collect();
    let toml = format!(
        "[whisper]\nenabled = false\n[tcp]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
         [udp]\nenabled = false\n\
         [cluster]\ndestinations = [{}]\nprotocol = \"plain\"\nspill = false\n\
         queue-size = {QUEUE}\nbatch-size = 50\n\
         reconnect-max-delay = \"200ms\"\nconnect-timeout = \"500ms\"\n{extra}",
        dests.join(", "),
    );
    let c = Config::embedded(dir).apply_toml(&toml, "<router>").unwrap();
    Carbon::open(c).expect("routing handle opens")
}

/// A client writing `lines` to the router's TCP listener in 64 KiB writes; `written` counts
/// the bytes the kernel took. Ends at the last byte (half-close) or a write error.
struct Client {
    written: Arc<AtomicU64>,
    total: u64,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    fn start(router: &Carbon, lines: &[String]) -> Client {
        let body: Vec<u8> = lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect();
        let total = body.len() as u64;
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let mut conn = TcpStream::connect(router.tcp_addr().unwrap()).unwrap();
        let thread = std::thread::spawn(move || {
            for chunk in body.chunks(64 * 1024) {
                if conn.write_all(chunk).is_err() {
                    return;
                }
                w.fetch_add(chunk.len() as u64, SeqCst);
            }
            let _ = conn.shutdown(Shutdown::Write);
        });
        Client {
            written,
            total,
            thread: Some(thread),
        }
    }

    fn finished(&self) -> bool {
        self.written.load(SeqCst) == self.total
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dest(r: &Carbon, k: usize) -> SenderStats {
    r.destination_stats()[k].sender
}

/// `name i ts` lines for `names`.
fn lines(names: &[String]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n} {i} 1700000000"))
        .collect()
}

/// Every name of `names` exactly once among `got` (lines as the sender writes them).
fn assert_exactly_once(got: &[String], names: &[String]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for l in got {
        *seen.entry(l.split(' ').next().unwrap()).or_default() += 1;
    }
    let missing = names
        .iter()
        .filter(|n| !seen.contains_key(n.as_str()))
        .count();
    let dup = seen.values().filter(|&&c| c > 1).count();
    assert_eq!(
        (got.len(), missing, dup),
        (names.len(), 0, 0),
        "(lines, missing, duplicated)"
    );
}

#[test]
fn flow_control_holds_the_client_back_until_the_node_is_up() {
    // ~14 MB of lines: more than loopback socket buffers (Linux autotunes up to 6 MB by
    // default) and the listener's read buffer hold.
    const N: usize = 400_000;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = router(dir.path(), &[port], "");
    let names: Vec<String> = (0..N)
        .map(|i| format!("flow.h{:02}.m{i}", i % 100))
        .collect();
    let mut client = Client::start(&r, &lines(&names));
    // The node is down: its queue fills, then the listener waits instead of dropping.
    wait_for("the listener to stall", Duration::from_secs(30), || {
        let d = dest(&r, 0);
        d.stalls >= 1 && d.connect_failures >= 3
    });
    let d = dest(&r, 0);
    assert_eq!(d.dropped, 0, "{d:?}");
    assert!(d.queued <= QUEUE, "{d:?}");
    assert!(r.stats().tcp_metrics_received < N as u64, "{:?}", r.stats());
    // Several reconnect backoffs later the client is still held back by TCP.
    wait_for("more failed connects", Duration::from_secs(30), || {
        dest(&r, 0).connect_failures >= 6
    });
    eprintln!(
        "held back: client wrote {} of {} bytes",
        client.written.load(SeqCst),
        client.total
    );
    assert!(
        !client.finished(),
        "client wrote all {} bytes while the node was down",
        client.total
    );
    assert_eq!(dest(&r, 0).dropped, 0);

    let sink = Sink::start(port);
    client.join();
    wait_for("every point at the node", Duration::from_secs(120), || {
        sink.count() >= N
    });
    r.flush().expect("router flush");
    let d = dest(&r, 0);
    assert_eq!((d.dropped, d.queued, d.sent), (0, 0, N as u64), "{d:?}");
    assert!(d.stalls >= 1, "{d:?}");
    assert_eq!(r.stats().tcp_metrics_received, N as u64);
    r.close();
    let got = sink.lines.clone();
    drop(sink);
    assert_exactly_once(&got.lock().unwrap(), &names);
}

#[test]
fn without_flow_control_a_full_queue_drops_and_counts() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = router(dir.path(), &[port], "flow-control = false\n");
    let names: Vec<String> = (0..N).map(|i| format!("noflow.m{i}")).collect();
    let mut client = Client::start(&r, &lines(&names));
    client.join();
    wait_for(
        "the listener to take every line",
        Duration::from_secs(30),
        || {
            let s = r.stats();
            s.tcp_metrics_received + s.tcp_errors >= N as u64
        },
    );
    let d = dest(&r, 0);
    assert_eq!(d.stalls, 0, "{d:?}");
    assert_eq!((d.queued, d.dropped), (QUEUE, N as u64 - QUEUE), "{d:?}");
    let s = r.stats();
    assert_eq!(
        (s.tcp_metrics_received, s.tcp_errors),
        (QUEUE, N as u64 - QUEUE)
    );
    // What was queued is delivered once the node is up; the drops stay dropped.
    let sink = Sink::start(port);
    r.flush().expect("router flush");
    wait_for(
        "the queued points at the node",
        Duration::from_secs(30),
        || sink.count() >= QUEUE as usize,
    );
    r.close();
    let got = sink.lines.clone();
    drop(sink);
    assert_eq!(got.lock().unwrap().len(), QUEUE as usize);
    assert_eq!(dest(&r, 0).sent, QUEUE);
}

#[test]
fn close_while_a_listener_waits_returns() {
    const N: usize = 250_000;
    let dir = tempfile::tempdir().unwrap();
    // Nothing will ever listen there.
    let r = router(dir.path(), &[free_port()], "");
    let names: Vec<String> = (0..N).map(|i| format!("stuck.m{i}")).collect();
    let mut client = Client::start(&r, &lines(&names));
    wait_for("the listener to stall", Duration::from_secs(30), || {
        dest(&r, 0).stalls >= 1
    });
    let t = Instant::now();
    r.close();
    let took = t.elapsed();
    eprintln!("close with a waiting listener took {took:?}");
    // Close gives the senders max(5 s, 2 × reconnect-max-delay) without progress, as for
    // any undeliverable queue; a listener that kept waiting would add close's 10 s
    // listener drain on top.
    assert!(took < Duration::from_secs(12), "close took {took:?}");
    client.join();
    let d = dest(&r, 0);
    // The held point and what the listener read during the close were dropped and counted.
    assert!(d.dropped >= 1, "{d:?}");
    assert_eq!(d.sent, 0, "{d:?}");
}

/// Two remote owners per name, one down: the live one gets its copy of the point the
/// listener is waiting on, the down one holds back only that copy.
#[test]
fn a_full_replica_holds_back_only_its_own_copy() {
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let (down_port, up_port) = (free_port(), free_port());
    let up = Sink::start(up_port);
    let r = router(
        dir.path(),
        &[down_port, up_port],
        "replication-factor = 2\ndiverse-replicas = false\n",
    );
    // Names whose first owner is the down node: a router that waited for owners in ring
    // order would hold the live node's copy back too.
    let ring = r.router().unwrap();
    let names: Vec<String> = (0..)
        .map(|i| format!("repl.m{i}"))
        .filter(|n| ring.route(n)[0] == 0)
        .take(N)
        .collect();
    assert!(names.iter().all(|n| ring.route(n).len() == 2));
    let mut client = Client::start(&r, &lines(&names));
    wait_for(
        "the live node to get the held point's copy",
        Duration::from_secs(30),
        || dest(&r, 1).sent > QUEUE,
    );
    let (down, live) = (dest(&r, 0), dest(&r, 1));
    assert!(down.stalls >= 1, "{down:?}");
    assert_eq!((down.dropped, live.dropped), (0, 0));
    // Both copies of the first QUEUE points plus the live copy of the held one.
    assert_eq!(live.sent + live.queued, QUEUE + 1, "{live:?}");
    let down_sink = Sink::start(down_port);
    client.join();
    wait_for("every copy at both nodes", Duration::from_secs(60), || {
        up.count() >= N && down_sink.count() >= N
    });
    r.flush().expect("router flush");
    r.close();
    for (k, sink) in [(0, down_sink), (1, up)] {
        let d = dest(&r, k);
        assert_eq!((d.dropped, d.sent), (0, N as u64), "{k}: {d:?}");
        let got = sink.lines.clone();
        drop(sink);
        assert_exactly_once(&got.lock().unwrap(), &names);
    }
}
