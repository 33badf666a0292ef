//! `[udp]` and `[pickle]` fed by real senders (python pickle of every protocol from Python 3
//! and 2.7, Graphite carbon's own relay client) and by hostile ones: truncated and oversized
//! frames, code-execution opcodes, deep nesting, slow-loris, 10,000 idle connections, garbage
//! on the plaintext port. After each, the node still serves and every accepted point is there.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::parse::pickle::{PyObject, dumps, frame};
use carbonlite::points::unix_now;

fn node_with(dir: &Path, extra: &str) -> Carbon {
    node_timeout(dir, "2s", extra)
}

fn node_timeout(dir: &Path, pickle_timeout: &str, extra: &str) -> Carbon {
    let cfg = Config::embedded(dir)
        .apply_toml(
            &format!(
                "[common]\nmetric-interval = \"0\"\n\
                 [tcp]\nenabled = true\nlisten = \"127.0.0.1:0\"\nread-timeout = \"5s\"\n\
                 [udp]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
                 [pickle]\nenabled = true\nlisten = \"127.0.0.1:0\"\nread-timeout = \"{pickle_timeout}\"\n{extra}"
            ),
            "<test>",
        )
        .unwrap();
    Carbon::open(cfg).unwrap()
}

fn node(dir: &Path) -> Carbon {
    node_with(dir, "")
}

fn wait_until(what: &str, c: &Carbon, mut ok: impl FnMut(&carbonlite::stats::Snapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.stats();
        if ok(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn has(c: &Carbon, name: &str, ts: i64, v: f64) -> bool {
    match c.fetch(name, ts - 600, None) {
        Ok(s) => s.values.contains(&v),
        Err(_) => false,
    }
}

fn point(name: &str, t: i64, v: f64) -> PyObject {
    PyObject::Tuple(vec![
        PyObject::Str(name.into()),
        PyObject::Tuple(vec![PyObject::Int(t), PyObject::Float(v)]),
    ])
}

fn good_frame(prefix: &str, n: usize, t: i64) -> Vec<u8> {
    let list = (0..n)
        .map(|i| point(&format!("{prefix}.m{i}"), t, i as f64))
        .collect();
    frame(&dumps(&PyObject::List(list), 2)).unwrap()
}

/// Sends one good frame on a fresh connection and checks it lands: the node is healthy.
fn still_serves(c: &Carbon, tag: &str) {
    let now = unix_now();
    let before = c.stats().pickle_metrics_received;
    let mut s = TcpStream::connect(c.pickle_addr().unwrap()).unwrap();
    s.write_all(&good_frame(&format!("alive.{tag}"), 3, now))
        .unwrap();
    drop(s);
    wait_until("a good frame after hostile input", c, |s| {
        s.pickle_metrics_received >= before + 3
    });
    assert!(has(c, &format!("alive.{tag}.m2"), now, 2.0), "{tag}");
}

fn python2() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("PYTHON2") {
        return Some(p.into());
    }
    let home = std::env::var("HOME").ok()?;
    let versions = Path::new(&home).join(".pyenv/versions");
    let mut found: Vec<_> = std::fs::read_dir(versions)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("2.7"))
        })
        .map(|p| p.join("bin/python"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

fn py_script(name: &str) -> String {
    format!("{}/tests/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs recv_send.py under `python` and checks every point it reports landed.
fn python_sender(c: &Carbon, python: &Path, prefix: &str) {
    let addr = c.pickle_addr().unwrap();
    let now = unix_now() - 120;
    let before = c.stats();
    let out = Command::new(python)
        .args([
            &py_script("recv_send.py"),
            "pickle",
            "127.0.0.1",
            &addr.port().to_string(),
            prefix,
            &now.to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{}: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut expected = Vec::new();
    let mut bad = 0u64;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f[0] == "bad" {
            bad = f[1].parse().unwrap();
        } else {
            expected.push((
                f[0].to_string(),
                f[1].parse::<i64>().unwrap(),
                f[2].parse::<f64>().unwrap(),
            ));
        }
    }
    assert!(expected.len() > 20, "{text}");
    let n = expected.len() as u64;
    wait_until("python pickle points", c, |s| {
        s.pickle_metrics_received >= before.pickle_metrics_received + n
            && s.pickle_errors >= before.pickle_errors + bad
    });
    std::thread::sleep(Duration::from_millis(100));
    let after = c.stats();
    assert_eq!(
        after.pickle_metrics_received - before.pickle_metrics_received,
        n
    );
    assert_eq!(after.pickle_errors - before.pickle_errors, bad);
    for (name, t, v) in &expected {
        assert!(has(c, name, *t, *v), "{name} {t} {v} missing");
    }
}

#[test]
fn python3_and_python2_pickle_senders_every_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let c = node(dir.path());
    python_sender(&c, Path::new("python3"), "p3");
    // A real Python 2.7 (pyenv) when the machine has one; the Python 3 run above already sent
    // Python 2-style frames (bytes names with protocols 0–2).
    match python2() {
        Some(py2) => python_sender(&c, &py2, "p2"),
        None => eprintln!("no python 2.7 found (set PYTHON2): only python3 senders ran"),
    }
    c.flush().unwrap();
}

#[test]
fn graphite_carbon_relay_client_sends_pickle() {
    let python = std::env::var("CARBON_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import carbon.client, twisted"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "Graphite carbon (Debian graphite-carbon) is needed under {python}: run scripts/install-test-deps"
    );
    let dir = tempfile::tempdir().unwrap();
    let c = node(dir.path());
    let now = unix_now() - 60; // 10 points per metric, one a minute
    let lines: String = (0..200)
        .map(|i| format!("relay.m{} {}.25 {}\n", i % 20, i, now - (i / 20) * 60))
        .collect();
    let mut child = Command::new(&python)
        .args([
            &py_script("recv_carbon_client.py"),
            "127.0.0.1",
            &c.pickle_addr().unwrap().port().to_string(),
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("carbon client points", &c, |s| {
        s.pickle_metrics_received >= 200
    });
    assert_eq!(c.stats().pickle_errors, 0);
    for i in [0i64, 77, 199] {
        assert!(
            has(
                &c,
                &format!("relay.m{}", i % 20),
                now - (i / 20) * 60,
                i as f64 + 0.25
            ),
            "{i}"
        );
    }
}

#[test]
fn udp_many_lines_per_datagram_and_cut_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = node(dir.path());
    let addr = c.udp_addr().unwrap();
    let now = unix_now();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // 10 datagrams of 100 lines, each ending with a line cut in the middle.
    for d in 0..10 {
        let mut body: String = (0..100)
            .map(|i| format!("udp.d{d}.m{i} {i} {now}\n"))
            .collect();
        body.push_str(&format!("udp.d{d}.cut 12 17"));
        sock.send_to(body.as_bytes(), addr).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // A bad line in the middle, and a complete datagram.
    sock.send_to(
        format!("udp.x 1 {now}\nbad line\nudp.y 2 {now}\n").as_bytes(),
        addr,
    )
    .unwrap();
    wait_until("udp points", &c, |s| s.udp_metrics_received >= 1002);
    std::thread::sleep(Duration::from_millis(100));
    let s = c.stats();
    assert_eq!(s.udp_metrics_received, 1002);
    assert_eq!(s.udp_errors, 11);
    assert!(has(&c, "udp.d9.m99", now, 99.0));
    assert!(has(&c, "udp.y", now, 2.0));
    assert!(
        c.fetch("udp.d3.cut", 0, None).is_err(),
        "a cut line was stored"
    );
    // netcat as a real UDP client.
    if Command::new("nc").arg("-h").output().is_ok() {
        let mut nc = Command::new("nc")
            .args(["-u", "-w1", "127.0.0.1", &addr.port().to_string()])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        nc.stdin
            .take()
            .unwrap()
            .write_all(format!("udp.nc 7 {now}\n").as_bytes())
            .unwrap();
        nc.wait().unwrap();
        wait_until("nc udp point", &c, |s| s.udp_metrics_received >= 1003);
        assert!(has(&c, "udp.nc", now, 7.0));
    }
}

#[test]
fn hostile_pickle_input_keeps_the_node_serving() {
    let dir = tempfile::tempdir().unwrap();
    let c = node_with(dir.path(), "max-message-size = 1048576\n");
    let addr = c.pickle_addr().unwrap();
    let now = unix_now();
    still_serves(&c, "start");

    // Truncated frame: the sender closes mid-frame; counted, nothing from it stored.
    let errors = c.stats().pickle_errors;
    let f = good_frame("trunc", 10, now);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&f[..f.len() / 2]).unwrap();
    drop(s);
    wait_until("truncated frame counted", &c, |s| s.pickle_errors > errors);
    still_serves(&c, "truncated");

    // A truncated pickle inside a complete frame: the frame is refused, the connection goes
    // on and the next frame lands.
    let errors = c.stats().pickle_errors;
    let payload = dumps(&PyObject::List(vec![point("inner.cut", now, 1.0)]), 2);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&frame(&payload[..payload.len() - 3]).unwrap())
        .unwrap();
    s.write_all(&good_frame("after.cut", 2, now)).unwrap();
    drop(s);
    wait_until("frame after a cut pickle", &c, |s| {
        s.pickle_errors > errors && has(&c, "after.cut.m1", now, 1.0)
    });

    // Length prefix over max-message-size: counted and the connection closed.
    let errors = c.stats().pickle_errors;
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&(2u32 << 20).to_be_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0, "connection left open");
    assert!(c.stats().pickle_errors > errors);
    still_serves(&c, "oversized");

    // REDUCE/GLOBAL pickles: refused, counted; a good frame on the same connection lands.
    let errors = c.stats().pickle_errors;
    let mut s = TcpStream::connect(addr).unwrap();
    for evil in [
        &b"cos\nsystem\n(S'touch /tmp/pwned-carbonlite'\ntR."[..],
        b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.",
        b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.",
    ] {
        s.write_all(&frame(evil).unwrap()).unwrap();
    }
    s.write_all(&good_frame("after.evil", 2, now)).unwrap();
    drop(s);
    wait_until("evil frames refused", &c, |s| s.pickle_errors >= errors + 3);
    wait_until("good frame after evil", &c, |_| {
        has(&c, "after.evil.m1", now, 1.0)
    });
    assert!(!Path::new("/tmp/pwned-carbonlite").exists());

    // Deep nesting: 10^6 MARKs, 10^6 nested lists, 10^5 nested tuples via TUPLE1.
    let errors = c.stats().pickle_errors;
    let mut marks = vec![0x80, 2];
    marks.extend(std::iter::repeat_n(b'(', 1_000_000));
    let mut lists = vec![0x80, 2];
    lists.extend(std::iter::repeat_n(b']', 500_000));
    lists.extend(std::iter::repeat_n(b'a', 499_999));
    lists.push(b'.');
    let mut tuples = vec![0x80, 2, b']', b'N'];
    tuples.extend(std::iter::repeat_n(0x85, 100_000));
    tuples.extend_from_slice(b"a.");
    let mut s = TcpStream::connect(addr).unwrap();
    for p in [&marks, &lists, &tuples] {
        s.write_all(&frame(p).unwrap()).unwrap();
    }
    drop(s);
    wait_until("nesting refused", &c, |s| s.pickle_errors >= errors + 3);
    still_serves(&c, "nesting");

    // Slow loris: 1 byte / 100 ms. Others are served meanwhile; read-timeout (2 s) closes it.
    let loris = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let f = good_frame("loris", 50, now);
        let start = Instant::now();
        for b in f {
            if s.write_all(&[b]).is_err() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the slow-loris frame was never cut off");
    });
    std::thread::sleep(Duration::from_millis(300));
    still_serves(&c, "during.loris");
    let cut_after = loris.join().unwrap();
    assert!(
        cut_after < Duration::from_secs(10),
        "slow loris lasted {cut_after:?}"
    );
    assert!(c.fetch("loris.m0", 0, None).is_err());

    // Every point accepted along the way is still there after a flush.
    c.flush().unwrap();
    for (name, v) in [
        ("alive.start.m2", 2.0),
        ("after.cut.m1", 1.0),
        ("after.evil.m1", 1.0),
        ("alive.nesting.m2", 2.0),
    ] {
        assert!(has(&c, name, now, v), "{name}");
    }
}

#[test]
fn garbage_on_every_port() {
    let dir = tempfile::tempdir().unwrap();
    let c = node(dir.path());
    let now = unix_now();
    let mut noise = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push((x >> 24) as u8);
    }
    let mut s = TcpStream::connect(c.tcp_addr().unwrap()).unwrap();
    s.write_all(&noise).unwrap();
    s.write_all(format!("\nplain.after 5 {now}\n").as_bytes())
        .unwrap();
    drop(s);
    let mut s = TcpStream::connect(c.pickle_addr().unwrap()).unwrap();
    let _ = s.write_all(&noise);
    drop(s);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in noise.chunks(1400) {
        u.send_to(chunk, c.udp_addr().unwrap()).unwrap();
    }
    wait_until("plaintext after garbage", &c, |_| {
        has(&c, "plain.after", now, 5.0)
    });
    still_serves(&c, "garbage");
    let s = c.stats();
    assert!(
        s.tcp_errors > 0 && s.udp_errors > 0 && s.pickle_errors > 0,
        "{s:?}"
    );
}

#[test]
fn back_pressure_stops_reading_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny cache and no writers: the reader must wait, then resume once there is room.
    let c = node_with(
        dir.path(),
        "[cache]\nmax-size = 100\n[whisper]\nenabled = false\n",
    );
    let now = unix_now();
    let mut s = TcpStream::connect(c.pickle_addr().unwrap()).unwrap();
    for k in 0..3 {
        s.write_all(&good_frame(&format!("bp.f{k}"), 80, now))
            .unwrap();
    }
    wait_until("cache full", &c, |s| s.cache_size == 100);
    std::thread::sleep(Duration::from_millis(300));
    let st = c.stats();
    assert_eq!(st.cache_size, 100);
    assert_eq!(st.overflow, 0, "points were dropped");
    assert_eq!(st.pickle_errors, 0);
    drop(s);
}

#[test]
fn ten_thousand_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let c = node_timeout(dir.path(), "10m", "");
    let want: usize = std::env::var("CARBONLITE_IDLE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // Each connection costs this process one fd; the clients live in a python process.
    let limit = rustix_nofile();
    let n = want.min(limit.saturating_sub(200));
    assert!(n >= 1000, "RLIMIT_NOFILE {limit} is too low for this test");
    let addr: SocketAddr = c.pickle_addr().unwrap();
    let started = Instant::now();
    let mut child = Command::new("python3")
        .args([
            &py_script("recv_send.py"),
            "idle",
            "127.0.0.1",
            &addr.port().to_string(),
            &n.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("ready {n}"));
    // This host's loopback takes a few ms per connection setup (a python accept loop is as
    // slow), so allow a generous time; the point is that all of them are served at once.
    let deadline = Instant::now() + Duration::from_secs(300);
    while c.stats().pickle_active < n as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} connections accepted",
            c.stats().pickle_active
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{n} idle pickle connections up in {:?}", started.elapsed());
    still_serves(&c, "idle");
    drop(child.stdin.take());
    child.wait().unwrap();
    wait_until("idle connections closed", &c, |s| s.pickle_active == 0);
}

/// The soft RLIMIT_NOFILE of this process, from /proc (no unsafe needed).
fn rustix_nofile() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// A pickle frame goes to the cache as one batch: within it, later writes of a (metric,
/// timestamp) still win, bad names are refused one by one, and the counts are exact.
#[test]
fn pickle_frame_batch_keeps_order_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let c = node_with(dir.path(), "[whisper]\nenabled = false\n");
    let now = unix_now() - 30;
    let mut list = Vec::new();
    // 3 writes of every (metric, timestamp), interleaved across 300 metrics, so the batch's
    // shard grouping reorders them between metrics but never within one.
    for round in 0..3 {
        for m in 0..300 {
            list.push(point(
                &format!("order.m{m}"),
                now,
                (round * 1000 + m) as f64,
            ));
        }
        list.push(point("bad/name", now, 1.0));
    }
    let before = c.stats();
    let mut s = TcpStream::connect(c.pickle_addr().unwrap()).unwrap();
    s.write_all(&frame(&dumps(&PyObject::List(list), 2)).unwrap())
        .unwrap();
    wait_until("pickle batch", &c, |st| {
        st.pickle_metrics_received - before.pickle_metrics_received >= 900
    });
    let after = c.stats();
    assert_eq!(
        after.pickle_metrics_received - before.pickle_metrics_received,
        900
    );
    assert_eq!(after.pickle_errors - before.pickle_errors, 3);
    assert_eq!(after.name_errors - before.name_errors, 3);
    for m in [0, 1, 150, 299] {
        let series = c.fetch(&format!("order.m{m}"), now - 60, None).unwrap();
        let got: Vec<f64> = series
            .values
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect();
        assert_eq!(got, vec![(2000 + m) as f64], "order.m{m}");
    }
}
