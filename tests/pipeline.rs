//! The embedded pipeline through the Rust API: add → cache → persister → whisper → fetch.

use std::time::Duration;

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::points::unix_now;

fn open(dir: &std::path::Path, toml: &str) -> Carbon {
    let c = Config::embedded(dir).apply_toml(toml, "<test>").unwrap();
    Carbon::open(c).unwrap()
}

fn schemas(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("storage-schemas.conf");
    std::fs::write(&p, text).unwrap();
    format!("[whisper]\nschemas-file = {:?}\n", p.display().to_string())
}

#[test]
fn malformed_lines_are_counted_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), "[whisper]\nenabled = false\n");
    let now = unix_now();
    // (line, accepted?) — carbon's plaintext rules.
    let table: &[(&str, bool)] = &[
        ("a.ok 1 {now}", true),
        ("a.tabs\t2\t{now}", true),
        ("a.runs   3    {now}", true),
        ("a.crlf 4 {now}\r", true),
        ("a.float_ts 5 {now}.75", true),
        ("a.now 6 -1", true),
        ("a.inf inf {now}", true),
        ("a.nan nan {now}", false),
        ("a.two_fields 1", false),
        ("a.four 1 2 3", false),
        ("a.badval x {now}", false),
        ("a.badts 1 soon", false),
        ("../../etc/passwd 1 {now}", false),
        ("a/b 1 {now}", false),
        ("a.b;tag=1;x 1 {now}", false),
        ("t;b=2;a=1 7 {now}", true),
    ];
    let mut buf = String::new();
    for (line, _) in table {
        buf.push_str(&line.replace("{now}", &now.to_string()));
        buf.push('\n');
    }
    buf.push('\n'); // blank lines are skipped, not errors
    let r = c.add_lines(buf.as_bytes());
    let want_ok = table.iter().filter(|(_, ok)| *ok).count() as u64;
    assert_eq!(r.accepted, want_ok, "{:?}", r.first_error);
    assert_eq!(r.rejected, table.len() as u64 - want_ok);
    assert!(r.first_error.unwrap().to_string().contains("a.nan"));
    let s = c.stats();
    assert_eq!(s.metrics_received, want_ok);
    assert_eq!(s.parse_errors + s.name_errors, table.len() as u64 - want_ok);
    assert!(s.name_errors >= 3, "{s:?}");
    // Float timestamps are truncated, -1 is now, tags are normalised.
    let f = c.fetch_at("a.float_ts", now - 60, None, now).unwrap();
    assert_eq!(f.values.iter().filter(|v| **v == 5.0).count(), 1);
    let t = c.fetch_at("t;a=1;b=2", now - 60, None, now).unwrap();
    assert_eq!(t.values.iter().filter(|v| **v == 7.0).count(), 1);
    assert_eq!(c.stats().cache_size, want_ok);
}

#[test]
fn flush_persists_everything_and_fetch_reads_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = schemas(
        dir.path(),
        "[all]\npattern = .*\nretentions = 10s:1d,1m:30d\n",
    );
    let data = dir.path().join("data");
    let c = open(&data, &cfg);
    let now = unix_now();
    let base = now - now % 10 - 590;
    for m in 0..50 {
        for p in 0..60 {
            c.add(
                &format!("srv.m{m}.cpu"),
                (m * 1000 + p) as f64,
                base + p * 10,
            )
            .unwrap();
        }
    }
    // Before flush: everything is served from the cache, no file needed.
    // Both reads use the same `now`: a 10 s boundary passed between two
    // `fetch(.., None)` calls would give the later window one more slot.
    let before = c.fetch_at("srv.m7.cpu", base - 10, None, now).unwrap();
    c.flush().unwrap();
    let s = c.stats();
    assert_eq!(
        (s.committed_points, s.created, s.cache_size),
        (3000, 50, 0),
        "{s:?}"
    );
    assert!(data.join("srv/m7/cpu.wsp").exists());
    let after = c.fetch_at("srv.m7.cpu", base - 10, None, now).unwrap();
    assert_eq!(before.step, 10);
    assert_eq!(before.from, after.from);
    let known: Vec<f64> = after
        .values
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    assert_eq!(
        known,
        (0..60).map(|p| (7000 + p) as f64).collect::<Vec<_>>()
    );
    assert_eq!(before.values.len(), after.values.len());
    for (a, b) in before.values.iter().zip(&after.values) {
        assert!(a == b || (a.is_nan() && b.is_nan()));
    }
    // Last write wins for one timestamp, in cache and on disk.
    c.add("srv.m7.cpu", -1.0, base).unwrap();
    c.add("srv.m7.cpu", -2.0, base).unwrap();
    assert_eq!(
        c.fetch("srv.m7.cpu", base - 10, None).unwrap().values[0],
        -2.0
    );
    c.flush().unwrap();
    assert_eq!(
        c.fetch("srv.m7.cpu", base - 10, None).unwrap().values[0],
        -2.0
    );
    assert!(matches!(
        c.fetch("srv.nope", base, None),
        Err(carbonlite::Error::NotFound(_))
    ));
    c.close();
    // close() is idempotent and a reopened node reads the same files.
    let c = open(&data, &cfg);
    assert_eq!(
        c.fetch("srv.m7.cpu", base - 10, None).unwrap().values[1],
        7001.0
    );
}

#[test]
fn full_cache_refuses_with_counts_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(
        dir.path(),
        "[whisper]\nenabled = false\n[cache]\nmax-size = 5\n",
    );
    let now = unix_now();
    let lines: String = (0..8).map(|i| format!("m.{i} 1 {now}\n")).collect();
    let r = c.add_lines(lines.as_bytes());
    assert_eq!((r.accepted, r.rejected, r.refused_full), (5, 3, 3));
    assert_eq!(c.stats().overflow, 3);
    assert!(matches!(
        c.add("m.x", 1.0, now),
        Err(carbonlite::Error::Full { .. })
    ));
}

#[test]
fn drop_overflow_counts_and_block_overflow_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(
        dir.path(),
        "[whisper]\nenabled = false\n[cache]\nmax-size = 2\noverflow = \"drop\"\n",
    );
    let now = unix_now();
    for i in 0..5 {
        c.add(&format!("d.{i}"), 1.0, now).unwrap();
    }
    assert_eq!((c.stats().cache_size, c.stats().overflow), (2, 3));
    let c = open(
        dir.path(),
        "[whisper]\nenabled = false\n[cache]\nmax-size = 1\noverflow = \"block\"\nblock-timeout = \"200ms\"\n",
    );
    c.add("b.0", 1.0, now).unwrap();
    let t = std::time::Instant::now();
    assert!(c.add("b.1", 1.0, now).is_err());
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[test]
fn create_throttling_keeps_points_until_created() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), "[whisper]\nmax-creates-per-second = 5\n");
    let now = unix_now();
    for i in 0..12 {
        c.add(&format!("thr.m{i}"), i as f64, now).unwrap();
    }
    c.flush().unwrap();
    let s = c.stats();
    assert_eq!((s.created, s.committed_points), (12, 12), "{s:?}");
    assert!(s.throttled_creates > 0, "{s:?}");
    for i in 0..12 {
        let f = c.fetch(&format!("thr.m{i}"), now - 60, None).unwrap();
        assert!(f.values.contains(&(i as f64)));
    }
}

#[test]
fn directories_removed_behind_the_engine_are_made_again() {
    // The persister remembers which directories exist; one removed meanwhile (an operator
    // cleaning up) must not cost the points of a new metric in it.
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), "");
    let now = unix_now();
    for name in ["rm.a.one", "rm.a.two", "rm.b.one"] {
        c.add(name, 1.0, now).unwrap();
    }
    c.flush().unwrap();
    assert!(dir.path().join("rm/a/two.wsp").exists());
    std::fs::remove_dir_all(dir.path().join("rm")).unwrap();
    for name in ["rm.a.three", "rm.b.two", "rm.c.one"] {
        c.add(name, 2.0, now).unwrap();
    }
    c.flush().unwrap();
    let s = c.stats();
    assert_eq!((s.created, s.write_errors), (6, 0), "{s:?}");
    for f in ["rm/a/three.wsp", "rm/b/two.wsp", "rm/c/one.wsp"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let f = c.fetch("rm.a.three", now - 60, None).unwrap();
    assert!(f.values.contains(&2.0), "{f:?}");
}

#[test]
fn a_file_deleted_while_open_is_created_again_for_new_points() {
    // Operators delete a .wsp for the file to be recreated (after a schema change, say). The
    // engine keeps files open; it must notice and not write into the deleted inode.
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), "");
    let now = unix_now();
    c.add("del.me", 1.0, now - 60).unwrap();
    c.flush().unwrap();
    let path = dir.path().join("del/me.wsp");
    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(carbonlite::whisper::NAME_CHECK_INTERVAL + Duration::from_millis(100));
    c.add("del.me", 2.0, now).unwrap();
    c.flush().unwrap();
    assert_eq!(c.stats().created, 2, "{:?}", c.stats());
    let mut f = carbonlite::whisper::WhisperFile::open(&path).unwrap();
    let got = f.fetch(now - 120, None, now).unwrap().unwrap();
    assert!(got.values.contains(&2.0), "{got:?}");
    assert!(
        !got.values.contains(&1.0),
        "the deleted file's point is gone: {got:?}"
    );
}

#[test]
fn corrupt_file_is_reported_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bad")).unwrap();
    std::fs::write(
        dir.path().join("bad/file.wsp"),
        b"not a whisper file at all",
    )
    .unwrap();
    let c = open(dir.path(), "");
    let now = unix_now();
    c.add("bad.file", 1.0, now).unwrap();
    c.add("good.file", 2.0, now).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dir.path().join("good/file.wsp").exists() || c.stats().corrupt_files == 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", c.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The bad metric's point stays cached (and fetchable errors say why).
    assert_eq!(c.stats().cache_size, 1);
    assert!(matches!(
        c.fetch("bad.file", now - 60, None),
        Err(carbonlite::Error::Corrupt { .. })
    ));
    // Repairing the file lets it land.
    std::fs::remove_file(dir.path().join("bad/file.wsp")).unwrap();
    c.flush().unwrap();
    assert!(
        c.fetch("bad.file", now - 60, None)
            .unwrap()
            .values
            .contains(&1.0)
    );
}

#[test]
fn self_metrics_are_written_with_go_carbon_names() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(
        dir.path(),
        "[common]\nhostname = \"node.one\"\nmetric-interval = \"100ms\"\n",
    );
    c.add("x.y", 1.0, unix_now()).unwrap();
    std::thread::sleep(Duration::from_millis(350));
    c.flush().unwrap();
    let p = dir.path().join("carbon/agents/node_one");
    for f in [
        "cache/size.wsp",
        "persister/committedPoints.wsp",
        "api/metricsReceived.wsp",
        "tcp/metricsReceived.wsp",
    ] {
        assert!(p.join(f).exists(), "{f} missing");
    }
}
