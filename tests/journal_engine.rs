//! The journal wired into the engine: what every add path journals comes back after a crash,
//! replay is idempotent, max-size refuses (never loses), damaged segments do not stop open,
//! and persisted segments are released.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::points::unix_now;

const SCHEMAS: &str = "[all]\npattern = .*\nretentions = 10s:1d,1m:30d\n";

/// Config text for `dir`: our schema, no self-metrics, plus `extra`.
fn config(dir: &Path, extra: &str) -> Config {
    let schemas = dir.join("storage-schemas.conf");
    if !schemas.exists() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&schemas, SCHEMAS).unwrap();
    }
    let text = format!(
        "[common]\nmetric-interval = \"0s\"\n[whisper]\nschemas-file = {:?}\n{extra}",
        schemas.display().to_string()
    );
    Config::embedded(dir.join("data"))
        .apply_toml(&text, "<test>")
        .unwrap()
}

fn open(dir: &Path, extra: &str) -> Carbon {
    Carbon::open(config(dir, extra)).unwrap()
}

const JOURNAL: &str = "[journal]\nenabled = true\nfsync = \"always\"\n";
/// `extra` starts inside `[whisper]`.
const NO_WHISPER: &str = "enabled = false\n[journal]\nenabled = true\nfsync = \"always\"\n";

/// Every file under `dir` (relative path → bytes), hidden ones excluded.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().into(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Points through every add path, the whisper writes disabled so only the journal has them.
/// Returns (metric, ts, value) of every acknowledged point.
fn journal_points(dir: &Path, now: i64) -> Vec<(String, i64, f64)> {
    let c = open(dir, NO_WHISPER);
    let mut want = Vec::new();
    for i in 0..50 {
        let ts = now - 600 + i * 10;
        c.add("j.single", i as f64, ts).unwrap();
        want.push(("j.single".to_owned(), ts, i as f64));
    }
    let mut buf = String::new();
    for m in 0..20 {
        for i in 0..30 {
            let ts = now - 3000 + i * 60;
            let v = (m * 1000 + i) as f64 + 0.5;
            buf.push_str(&format!("j.lines.m{m} {v} {ts}\n"));
            want.push((format!("j.lines.m{m}"), ts, v));
        }
    }
    let r = c.add_lines(buf.as_bytes());
    assert_eq!(r.rejected, 0, "{:?}", r.first_error);
    // Last, in a record of its own: a name normalising renames is journaled as renamed.
    let r = c.add_lines(format!("j.tagged;b=2;a=1 7 {now}\n").as_bytes());
    assert_eq!(r.accepted, 1, "{:?}", r.first_error);
    want.push(("j.tagged;a=1;b=2".to_owned(), now, 7.0));
    let s = c.stats();
    assert!(s.journal_appends >= 3, "{s:?}");
    assert!(s.journal_fsyncs >= 1, "{s:?}");
    assert!(s.journal_bytes > 0 && s.journal_segments == 1, "{s:?}");
    drop(c);
    want
}

/// The value stored for `ts` (in the finest archive that still covers it).
fn value_at(c: &Carbon, m: &str, ts: i64, now: i64) -> Option<f64> {
    let s = c.fetch_at(m, ts - 60, Some(ts + 60), now).unwrap();
    let i = (ts - ts.rem_euclid(s.step) - s.from) / s.step;
    s.values.get(usize::try_from(i).ok()?).copied()
}

fn check_points(c: &Carbon, want: &[(String, i64, f64)], now: i64) {
    for (m, ts, v) in want {
        assert_eq!(value_at(c, m, *ts, now), Some(*v), "{m} at {ts}");
    }
}

#[test]
fn journaled_points_are_replayed_and_persisted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let want = journal_points(dir.path(), now);
    let c = open(dir.path(), JOURNAL);
    let s = c.stats();
    assert_eq!(s.journal_replayed, want.len() as u64, "{s:?}");
    assert_eq!(s.journal_errors, 0, "{s:?}");
    c.flush().unwrap();
    check_points(&c, &want, now);
    assert_eq!(c.stats().committed_points, want.len() as u64);
    drop(c);
    // A clean close after the flush leaves nothing to replay.
    let c = open(dir.path(), JOURNAL);
    assert_eq!(c.stats().journal_replayed, 0);
    check_points(&c, &want, now);
}

#[test]
fn replaying_twice_leaves_whisper_files_byte_identical() {
    let base = tempfile::tempdir().unwrap();
    let now = unix_now();
    let src = base.path().join("src");
    let want = journal_points(&src, now);
    let segments = src.join("data/.journal");
    let dir = base.path().join("twice");
    copy_dir(&segments, &dir.join("data/.journal"));
    let c = open(&dir, JOURNAL);
    c.flush().unwrap();
    drop(c);
    let once = tree(&dir.join("data"));
    assert_eq!(once.len(), 22, "{:?}", once.keys());
    // A crash after the points were persisted but before the segments were released: the
    // same segments replay again over the files the first replay wrote.
    copy_dir(&segments, &dir.join("data/.journal"));
    let c = open(&dir, JOURNAL);
    assert_eq!(c.stats().journal_replayed, want.len() as u64);
    c.flush().unwrap();
    assert_eq!(c.stats().committed_points, want.len() as u64);
    check_points(&c, &want, now);
    drop(c);
    let twice = tree(&dir.join("data"));
    assert_eq!(
        once.keys().collect::<Vec<_>>(),
        twice.keys().collect::<Vec<_>>()
    );
    for (k, v) in &once {
        assert!(
            v == &twice[k],
            "{} differs after a second replay",
            k.display()
        );
    }
}

#[test]
fn full_journal_refuses_with_efull_and_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let c = open(
        dir.path(),
        "enabled = false\n[journal]\nenabled = true\nfsync = \"never\"\nmax-size = \"16KiB\"\n",
    );
    let mut accepted = Vec::new();
    let mut refused = 0u64;
    for i in 0..2000 {
        let name = format!("full.m{}", i % 7);
        let ts = now - i * 10;
        match c.add(&name, i as f64, ts) {
            Ok(()) => accepted.push((name, ts, i as f64)),
            Err(e) => {
                assert!(
                    matches!(e, carbonlite::Error::Full { .. }),
                    "unexpected error {e}"
                );
                assert!(e.to_string().contains("journal"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0 && !accepted.is_empty(), "{refused}");
    let r = c.add_lines(format!("full.lines 1 {now}\n").as_bytes());
    assert_eq!((r.accepted, r.refused_full), (0, 1));
    let s = c.stats();
    assert_eq!(s.journal_refused, refused + 1, "{s:?}");
    assert_eq!(s.overflow, refused + 1, "{s:?}");
    assert!(s.journal_bytes <= 16 << 10, "{s:?}");
    assert_eq!(s.metrics_received, accepted.len() as u64);
    drop(c);
    // Everything acknowledged comes back.
    let c = open(dir.path(), JOURNAL);
    c.flush().unwrap();
    for (m, ts, v) in &accepted {
        assert_eq!(value_at(&c, m, *ts, now), Some(*v), "{m} {ts}");
    }
}

#[test]
fn damaged_segments_are_reported_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let want = journal_points(dir.path(), now);
    let jdir = dir.path().join("data/.journal");
    let seg = std::fs::read_dir(&jdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "journal"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let len = bytes.len();
    // Damage inside the first record (the 50 single adds come first), tear the tail.
    bytes[40] ^= 0xff;
    bytes.truncate(len - 3);
    std::fs::write(&seg, &bytes).unwrap();
    let c = open(dir.path(), JOURNAL);
    let s = c.stats();
    assert!(s.journal_errors >= 2, "{s:?}");
    let err = c.last_error().unwrap_or_default();
    assert!(
        err.contains("journal") && err.contains("torn") && err.contains("damaged"),
        "{err}"
    );
    // The first record (one point) and the torn last one are lost; everything else replays.
    assert!(
        s.journal_replayed >= want.len() as u64 - 3 && s.journal_replayed < want.len() as u64,
        "{s:?}"
    );
    c.flush().unwrap();
    let lines: Vec<_> = want.iter().filter(|w| w.0.starts_with("j.lines")).collect();
    let c2: Vec<_> = lines.into_iter().cloned().collect();
    check_points(&c, &c2, now);
}

#[test]
fn persisted_segments_are_released_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let c = open(
        dir.path(),
        "[journal]\nenabled = true\nfsync = \"never\"\nsegment-size = 4096\n",
    );
    for round in 0..20 {
        let mut buf = String::new();
        for m in 0..20 {
            buf.push_str(&format!("rel.m{m} {round} {}\n", now - round * 10));
        }
        assert_eq!(c.add_lines(buf.as_bytes()).rejected, 0);
    }
    assert!(c.stats().journal_segments > 2, "{:?}", c.stats());
    c.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.stats().journal_segments > 1 {
        assert!(Instant::now() < deadline, "{:?}", c.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.stats().journal_released > 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/.journal"))
            .unwrap()
            .count(),
        1
    );
}
