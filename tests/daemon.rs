//! The `carbonlite` daemon: started with a go-carbon.conf, fed over TCP, stopped with
//! SIGTERM — every point it acknowledged on the socket must be in its whisper file.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carbonlite::points::unix_now;
use carbonlite::whisper::WhisperFile;

fn free_port() -> u16 {
    common::free_port("127.0.0.1")
}

#[test]
fn sigterm_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("whisper");
    let schemas = dir.path().join("storage-schemas.conf");
    std::fs::write(
        &schemas,
        "[everything]\npattern = .*\nretentions = 10s:1h,1m:1d\n",
    )
    .unwrap();
    // The shipped go-carbon.conf fixture with this run's paths and port substituted.
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/go-carbon.conf"
    ))
    .unwrap()
    .replace("/var/lib/graphite/whisper", data.to_str().unwrap())
    .replace(
        "/etc/go-carbon/storage-schemas.conf",
        schemas.to_str().unwrap(),
    )
    .replace(
        "aggregation-file = \"/etc/go-carbon/storage-aggregation.conf\"",
        "aggregation-file = \"\"",
    )
    .replace(
        "listen = \":2003\"\nenabled = true\nbuffer-size = 0\n\n[pickle]",
        &format!("listen = \"127.0.0.1:{port}\"\nenabled = true\nbuffer-size = 0\n\n[pickle]"),
    )
    .replace("workers = 8", "workers = 2")
    // [udp] and [pickle] are real listeners now: any free port, never the shared :2003/:2004.
    .replace(
        "listen = \":2003\"\nenabled = true\nbuffer-size = 0\n\n[tcp]",
        "listen = \"127.0.0.1:0\"\nenabled = true\nbuffer-size = 0\n\n[tcp]",
    )
    .replace("listen = \":2004\"", "listen = \"127.0.0.1:0\"")
    // carbonlink is enabled in the fixture: any free port, never a fixed one.
    .replace("listen = \"127.0.0.1:7002\"", "listen = \"127.0.0.1:0\"");
    let conf_path = dir.path().join("go-carbon.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_carbonlite"))
        .args(["-config", conf_path.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            // Connecting in a loop to a port nobody listens on yet can make Linux connect the
            // socket to itself (TCP simultaneous open) when it picks that port as the source:
            // the lines would then go nowhere. Such a socket is dropped and we try again.
            Ok(s) if s.local_addr().ok() == s.peer_addr().ok() => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                panic!("daemon never listened on {port}: {e}");
            }
        }
    };
    let now = unix_now();
    let base = now - now % 10 - 300;
    let body: String = (0..2000)
        .map(|i| format!("daemon.m{}.v {} {}\n", i % 200, i, base + (i / 200) * 10))
        .collect();
    s.write_all(body.as_bytes()).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "daemon exited with {:?}: {log}",
        out.status
    );
    assert!(
        log.contains("grpc.listen is accepted but not implemented"),
        "{log}"
    );
    assert!(
        log.contains("2000 points received, 2000 committed in"),
        "{log}"
    );
    for m in [0, 77, 199] {
        let mut f = WhisperFile::open(&data.join(format!("daemon/m{m}/v.wsp"))).unwrap();
        let s = f.fetch(base - 10, Some(now), unix_now()).unwrap().unwrap();
        let want: Vec<f64> = (0..10).map(|k| (k * 200 + m) as f64).collect();
        assert_eq!(&s.values[..10], &want[..], "daemon.m{m}.v");
    }
}

#[test]
fn bad_config_fails_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "[whisper]\nworkers = 2\nwokers = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_carbonlite"))
        .args(["-config", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.conf:3") && err.contains("wokers"),
        "{err}"
    );
}
