//! Corrupt whisper files: reported and skipped while every other metric goes on; with
//! `[whisper] quarantine-corrupt = true` moved to `<data-dir>/.corrupt/` and recreated.

use std::path::Path;
use std::time::{Duration, Instant};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::points::unix_now;

fn open(dir: &Path, whisper: &str) -> Carbon {
    let text = format!("[common]\nmetric-interval = \"0s\"\n[whisper]\n{whisper}");
    let cfg = Config::embedded(dir).apply_toml(&text, "<test>").unwrap();
    Carbon::open(cfg).unwrap()
}

/// Writes good.* and bad.x, then replaces bad.x's header with garbage.
fn with_corrupt_file(dir: &Path, now: i64) {
    let c = open(dir, "");
    c.add("bad.x", 1.0, now - 120).unwrap();
    c.add("good.y", 1.0, now - 120).unwrap();
    c.flush().unwrap();
    drop(c);
    let bad = dir.join("bad/x.wsp");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes[..16].fill(0xff);
    std::fs::write(&bad, &bytes).unwrap();
}

fn wait_for(c: &Carbon, what: &str, f: impl Fn(&carbonlite::stats::Snapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f(&c.stats()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", c.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn corrupt_files_are_reported_skipped_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    with_corrupt_file(dir.path(), now);
    let c = open(dir.path(), "");
    c.add("bad.x", 2.0, now - 60).unwrap();
    for i in 0..20 {
        c.add(&format!("good.m{i}"), i as f64, now - 60).unwrap();
    }
    wait_for(&c, "corrupt reported", |s| {
        s.corrupt_files >= 1 && s.committed_points >= 20
    });
    let err = c.last_error().unwrap();
    assert!(err.contains("corrupt") && err.contains("x.wsp"), "{err}");
    assert_eq!(c.stats().quarantined, 0);
    // The bad file's point stays cached (readable) and the file is untouched.
    assert_eq!(c.stats().cache_size, 1);
    assert!(dir.path().join("bad/x.wsp").exists());
    assert!(!dir.path().join(".corrupt").exists());
    let s = c.fetch_at("good.m7", now - 120, Some(now), now).unwrap();
    assert!(s.values.contains(&7.0));
}

#[test]
fn quarantine_moves_corrupt_files_aside_and_recreates_them() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    with_corrupt_file(dir.path(), now);
    let corrupt = std::fs::read(dir.path().join("bad/x.wsp")).unwrap();
    let c = open(dir.path(), "quarantine-corrupt = true\n");
    c.add("bad.x", 2.0, now - 60).unwrap();
    c.flush().unwrap();
    let s = c.stats();
    assert_eq!((s.corrupt_files, s.quarantined), (1, 1), "{s:?}");
    assert!(c.last_error().unwrap().contains(".corrupt"));
    assert_eq!(
        std::fs::read(dir.path().join(".corrupt/bad/x.wsp")).unwrap(),
        corrupt
    );
    let s = c.fetch_at("bad.x", now - 120, Some(now), now).unwrap();
    assert!(s.values.contains(&2.0), "{s:?}");
    // `find` does not list the quarantine.
    assert!(
        c.find("*")
            .unwrap()
            .iter()
            .all(|m| !m.path.contains("corrupt"))
    );
}
