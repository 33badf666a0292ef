//! The built-in plaintext listener fed by real clients: raw sockets (as `nc` sends), lines
//! split across writes, many connections, and carbon-c-relay forwarding to it.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::points::unix_now;

fn node(dir: &std::path::Path) -> Carbon {
    let cfg = Config::embedded(dir)
        .apply_toml(
            "[tcp]\nenabled = true\nlisten = \"127.0.0.1:0\"\nread-timeout = \"5s\"\n",
            "<test>",
        )
        .unwrap();
    Carbon::open(cfg).unwrap()
}

fn wait_for(c: &Carbon, received: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.stats().metrics_received < received {
        assert!(Instant::now() < deadline, "timed out: {:?}", c.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn raw_sockets_split_lines_and_many_connections() {
    let dir = tempfile::tempdir().unwrap();
    let c = node(dir.path());
    let addr = c.tcp_addr().unwrap();
    let now = unix_now();
    // One line delivered byte by byte, one cut across two writes, a bad line in between.
    let mut s = TcpStream::connect(addr).unwrap();
    for b in format!("split.one 1 {now}\n").bytes() {
        s.write_all(&[b]).unwrap();
        s.flush().unwrap();
    }
    s.write_all(format!("split.two 2 {n}\ngarbage\nsplit.th", n = now).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(format!("ree 3 {now}\n").as_bytes()).unwrap();
    drop(s);
    // 20 connections at once, 500 lines each.
    let threads: Vec<_> = (0..20)
        .map(|k| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let body: String = (0..500)
                    .map(|i| format!("conn.c{k}.m{i} {i} {now}\n"))
                    .collect();
                s.write_all(body.as_bytes()).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    wait_for(&c, 3 + 20 * 500);
    let st = c.stats();
    assert_eq!(st.tcp_metrics_received, 3 + 20 * 500);
    assert_eq!(st.tcp_errors, 1);
    for (name, v) in [
        ("split.one", 1.0),
        ("split.two", 2.0),
        ("split.three", 3.0),
        ("conn.c7.m499", 499.0),
    ] {
        assert!(
            c.fetch(name, now - 60, None).unwrap().values.contains(&v),
            "{name}"
        );
    }
    // nc-style: the last line without a newline is kept.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("nonl.last 9 {now}").as_bytes())
        .unwrap();
    drop(s);
    wait_for(&c, 3 + 20 * 500 + 1);
    c.close();
    assert!(dir.path().join("nonl/last.wsp").exists());
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "listener still up after close"
    );
}

#[test]
fn carbon_c_relay_forwards_everything() {
    let relay = Command::new("carbon-c-relay").arg("-v").output();
    assert!(
        relay.is_ok(),
        "carbon-c-relay missing: scripts/install-test-deps installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let c = node(&dir.path().join("data"));
    let addr = c.tcp_addr().unwrap();
    // The relay listens on a free port and forwards everything to our listener.
    let relay_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dir.path().join("relay.conf");
    std::fs::write(
        &conf,
        format!(
            "listen type linemode 127.0.0.1:{relay_port} proto tcp;\n\
             cluster carbonlite forward {}:{} proto tcp;\n\
             match * send to carbonlite stop;\n",
            addr.ip(),
            addr.port()
        ),
    )
    .unwrap();
    let mut child = Command::new("carbon-c-relay")
        .args(["-f", conf.to_str().unwrap(), "-w", "1", "-H", "testrelay"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", relay_port)) {
            // Connecting in a loop to a port nobody listens on yet can make Linux connect the
            // socket to itself (TCP simultaneous open) when it picks that port as the source:
            // the lines would then go nowhere. Such a socket is dropped and we try again.
            Ok(s) if s.local_addr().ok() == s.peer_addr().ok() => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                let _ = child.kill();
                panic!("relay never listened: {e}");
            }
        }
    };
    let now = unix_now();
    let n = 5000;
    let body: String = (0..n)
        .map(|i| format!("relayed.m{} {i} {now}\n", i % 500))
        .collect();
    s.write_all(body.as_bytes()).unwrap();
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(30);
    // The relay's own statistics (carbon.relays.testrelay.*) may arrive too; count ours.
    while c.stats().tcp_metrics_received < n {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("relay delivered {:?}", c.stats());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    c.flush().unwrap();
    for m in [0, 123, 499] {
        let s = c.fetch(&format!("relayed.m{m}"), now - 60, None).unwrap();
        // Ten lines per metric at one timestamp: last write wins, as carbon.
        assert!(
            s.values.contains(&((4500 + m) as f64)),
            "relayed.m{m}: {:?}",
            s.values.iter().filter(|v| !v.is_nan()).collect::<Vec<_>>()
        );
    }
}

/// A sender far ahead of the node: reads grow to their largest size and every line, split
/// anywhere by the kernel, lands exactly once with its value (the last write of each
/// (metric, timestamp) winning within and across reads).
#[test]
fn streaming_sender_every_line_lands_across_growing_reads() {
    let dir = tempfile::tempdir().unwrap();
    let c = node(dir.path());
    // Two timestamps 5 minutes apart: distinct intervals in any default schema.
    let (early, late) = (unix_now() - 600, unix_now() - 300);
    let (metrics, rounds) = (2_000u64, 60u64);
    let mut buf = Vec::new();
    for r in 0..rounds {
        for m in 0..metrics {
            // Every round but the last writes `early`; the last writes `late`.
            let t = if r + 1 == rounds { late } else { early };
            let v = r * 1000 + m % 1000;
            buf.extend_from_slice(format!("stream.m{m} {v}.5 {t}\n").as_bytes());
        }
    }
    let mut s = TcpStream::connect(c.tcp_addr().unwrap()).unwrap();
    s.write_all(&buf).unwrap(); // ~3 MB in one go: the reads fill and grow
    drop(s);
    wait_for(&c, metrics * rounds);
    assert_eq!(c.stats().parse_errors, 0);
    for m in [0, 1, 999, 1_234, metrics - 1] {
        let got = c
            .fetch(&format!("stream.m{m}"), early - 60, Some(late + 60))
            .unwrap();
        let vals: Vec<f64> = got.values.iter().copied().filter(|v| !v.is_nan()).collect();
        let last = (rounds - 1) * 1000 + m % 1000;
        let want = [(last - 1000) as f64 + 0.5, last as f64 + 0.5];
        assert_eq!(vals, want, "stream.m{m}");
    }
}

/// Close takes in what clients had already sent: lines written (and the connections shut) just
/// before close are in the files once it returns, however far the readers had got. A small
/// cache keeps the readers waiting for room, so close finds them mid-stream.
#[test]
fn close_takes_in_what_clients_had_sent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::embedded(dir.path())
        .apply_toml(
            "[tcp]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[cache]\nmax-size = 20000\n",
            "<test>",
        )
        .unwrap();
    let c = Carbon::open(cfg).unwrap();
    let now = unix_now();
    let (metrics, points) = (1_000i64, 100i64);
    let addr = c.tcp_addr().unwrap();
    let senders: Vec<_> = (0..2)
        .map(|k| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                for p in 0..points {
                    for m in 0..metrics {
                        let t = now - (points - p) * 60;
                        buf.extend_from_slice(format!("close.c{k}.m{m} {p} {t}\n").as_bytes());
                    }
                }
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(&buf).unwrap(); // about 3 MB: much of it still in socket buffers
                s.shutdown(std::net::Shutdown::Write).unwrap();
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    c.close();
    drop(c);
    let c = Carbon::open(Config::embedded(dir.path())).unwrap();
    for k in 0..2 {
        for m in 0..metrics {
            let got = c
                .fetch(&format!("close.c{k}.m{m}"), now - (points + 1) * 60, None)
                .unwrap();
            let n = got.values.iter().filter(|v| !v.is_nan()).count() as i64;
            assert_eq!(n, points, "close.c{k}.m{m}");
        }
    }
}
