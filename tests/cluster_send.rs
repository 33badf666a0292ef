//! Senders against loopback sinks: one sink is stopped mid-stream and restarted on the same
//! port; nothing is lost and the stats say what happened. Plus pickle framing checked by
//! carbon's own unpickler.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use carbonlite::Point;
use carbonlite::cluster::{ClusterConfig, Destination, HashKind, Protocol, Router};

/// A plaintext carbon stand-in: accepts connections and collects lines until stopped.
/// Stopping is an orderly shutdown (stop accepting, half-close, read what is in flight).
struct Sink {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(port: u16) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind sink");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, r, s) = (lines.clone(), raw.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !s.load(SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (l, r, s) = (l.clone(), r.clone(), s.clone());
                        readers.push(std::thread::spawn(move || read_conn(conn, &l, &r, &s)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            drop(listener);
            for t in readers {
                t.join().unwrap();
            }
        });
        Sink {
            port,
            lines,
            raw,
            stop,
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_conn(conn: TcpStream, lines: &Mutex<Vec<String>>, raw: &Mutex<Vec<u8>>, stop: &AtomicBool) {
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut half_closed: Option<Instant> = None;
    let mut rd = BufReader::new(&conn);
    let mut buf = Vec::new();
    loop {
        if stop.load(SeqCst) && half_closed.is_none() {
            // Tell the sender we are going (FIN) and keep reading what is already on its way.
            let _ = conn.shutdown(Shutdown::Write);
            half_closed = Some(Instant::now());
        }
        if half_closed.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
            return;
        }
        let before = buf.len();
        let r = rd.read_until(b'\n', &mut buf);
        // On a timeout read_until keeps what it read in `buf`, so count bytes from there.
        raw.lock().unwrap().extend_from_slice(&buf[before..]);
        match r {
            Ok(0) => return,
            Ok(_) => {
                if buf.ends_with(b"\n") {
                    lines
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned());
                    buf.clear();
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // read_until keeps a partial line in `buf` across timeouts.
            }
            Err(_) => return,
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

#[test]
fn node_down_mid_stream_loses_nothing() {
    let mut sinks: Vec<Sink> = (0..3).map(|_| Sink::start(0)).collect();
    let dests: Vec<Destination> = sinks
        .iter()
        .enumerate()
        .map(|(i, s)| Destination::parse(&format!("127.0.0.1:{}:n{i}", s.port)).unwrap())
        .collect();
    let mut cfg = ClusterConfig::new(dests.clone());
    cfg.hashing = HashKind::CarbonCh;
    cfg.sender.protocol = Protocol::Plain;
    cfg.sender.batch_size = 50;
    cfg.sender.queue_size = 1_000_000;
    cfg.sender.connections = 2;
    cfg.sender.reconnect_max_delay = Duration::from_millis(100);
    cfg.sender.connect_timeout = Duration::from_millis(200);
    let router = Router::new(cfg).unwrap();

    const N: usize = 30_000;
    let victim = 1;
    let mut expected: Vec<HashSet<String>> = vec![HashSet::new(); 3];
    let mut queued_while_down = 0;
    for i in 0..N {
        let name = format!("cluster.test.m{i}");
        let owners = router.route(&name);
        assert_eq!(owners.len(), 1);
        expected[owners[0]].insert(format!("{name} {i} {}", 1_700_000_000 + i));
        let o = router.send(
            &name,
            Point {
                timestamp: 1_700_000_000 + i as i64,
                value: i as f64,
            },
        );
        assert_eq!((o.queued, o.dropped, o.local), (1, 0, false));
        if i % 1000 == 999 {
            std::thread::sleep(Duration::from_millis(5));
        }
        if i == N / 3 {
            // Mid-stream: the victim has been receiving, and has more on the way.
            assert!(!sinks[victim].lines.lock().unwrap().is_empty());
            sinks[victim].kill();
        }
        if i == 2 * N / 3 {
            // Down for a while: its points wait in the queue, nothing is dropped.
            std::thread::sleep(Duration::from_millis(400));
            let st = router.stats()[victim].1.unwrap();
            assert!(st.queued > 0, "{st:?}");
            assert_eq!(st.dropped, 0);
            assert!(st.connect_failures > 0, "{st:?}");
            queued_while_down = st.queued;
            // Same port again.
            let port = sinks[victim].port;
            let old_lines = std::mem::take(&mut *sinks[victim].lines.lock().unwrap());
            sinks[victim] = Sink::start(port);
            sinks[victim].lines.lock().unwrap().extend(old_lines);
        }
    }
    assert!(
        router.flush(Duration::from_secs(20)),
        "senders did not drain"
    );
    for (i, sink) in sinks.iter().enumerate() {
        wait_for(&format!("sink {i}"), Duration::from_secs(10), || {
            let got: HashSet<String> = sink.lines.lock().unwrap().iter().cloned().collect();
            expected[i].is_subset(&got)
        });
    }
    let stats = router.stats();
    let mut dup_total = 0;
    for (i, sink) in sinks.iter().enumerate() {
        let lines = sink.lines.lock().unwrap();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for l in lines.iter() {
            *counts.entry(l).or_default() += 1;
        }
        // Nothing arrives where it does not belong.
        for l in counts.keys() {
            assert!(expected[i].contains(*l), "sink {i} got {l:?}");
        }
        let dups: usize = counts.values().map(|c| c - 1).sum();
        dup_total += dups;
        let st = stats[i].1.unwrap();
        eprintln!(
            "sink {i}: expected {}, received {} lines ({} duplicates), stats {st:?}",
            expected[i].len(),
            lines.len(),
            dups
        );
        assert_eq!(st.dropped, 0);
        assert_eq!(st.queued, 0);
        assert!(st.sent >= expected[i].len() as u64);
        if i == victim {
            assert!(st.reconnects >= 1, "{st:?}");
        } else {
            assert_eq!(st.reconnects, 0, "{st:?}");
            assert_eq!(st.sent, expected[i].len() as u64);
        }
    }
    eprintln!("queued at the victim while down: {queued_while_down}; duplicates {dup_total}");
}

/// Pickle batches, read back with carbon's own unpickler (what its pickle receiver runs).
#[test]
fn pickle_frames_load_in_carbon() {
    let mut sink = Sink::start(0);
    let dest = Destination::parse(&format!("127.0.0.1:{}", sink.port)).unwrap();
    let mut cfg = ClusterConfig::new(vec![dest]);
    cfg.sender.protocol = Protocol::Pickle;
    cfg.sender.batch_size = 300;
    let router = Router::new(cfg).unwrap();
    let mut want = Vec::new();
    for i in 0..1000i64 {
        let name = format!("p.é{i}");
        // Timestamps past i32 take pickle's LONG1 path.
        let ts = if i % 2 == 0 {
            1_700_000_000 + i
        } else {
            5_000_000_000 + i
        };
        let value = i as f64 / 3.0;
        router.send(
            &name,
            Point {
                timestamp: ts,
                value,
            },
        );
        want.push(format!("{name} {} {ts}", value));
    }
    assert!(router.flush(Duration::from_secs(10)));
    wait_for("pickle bytes", Duration::from_secs(10), || {
        sink.raw.lock().unwrap().len() > 1000 * 20
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(router);
    sink.kill();
    let raw = sink.raw.lock().unwrap().clone();
    let script = "import struct, sys\n\
        from carbon.util import get_unpickler\n\
        unpickle = get_unpickler()\n\
        data = sys.stdin.buffer.read(); off = 0\n\
        while off < len(data):\n\
        \x20   (n,) = struct.unpack('!L', data[off:off+4]); off += 4\n\
        \x20   for name, (ts, value) in unpickle.loads(data[off:off+n]):\n\
        \x20       print('%s %r %d' % (name, value, ts))\n\
        \x20   off += n\n";
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "carbon could not unpickle (is python carbon installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            // Python's repr of a float and Rust's Display differ only in "1.0" vs "1".
            let mut f: Vec<&str> = l.split(' ').collect();
            let v: f64 = f[1].parse().unwrap();
            let s = format!("{v}");
            f[1] = &s;
            f.join(" ")
        })
        .collect();
    assert_eq!(got, want);
}
