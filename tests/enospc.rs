//! Full disk: a 4 MiB tmpfs is the data dir. Whisper creation hits ENOSPC; ingestion goes
//! on (points stay cached, failures counted and retried with backoff, a full cache refuses
//! and counts); once a ballast file is deleted every accepted point lands with its value.
//!
//! Needs to mount a tmpfs: run as root (CI does), or under
//! `unshare --user --map-root-user --mount cargo test --test enospc`. It fails, never skips,
//! when it cannot. The journal is off here: it lives in the data dir, and on a full disk its
//! appends fail too (the add returns the I/O error: refused, not lost) — see README.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::points::unix_now;

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("running mount(8)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs ({}): run as root, or under \
             `unshare --user --map-root-user --mount cargo test --test enospc`",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { path, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn value_at(c: &Carbon, m: &str, ts: i64, now: i64) -> Option<f64> {
    let s = c.fetch_at(m, ts - 60, Some(ts + 60), now).unwrap();
    let i = (ts - ts.rem_euclid(s.step) - s.from) / s.step;
    s.values.get(usize::try_from(i).ok()?).copied()
}

fn temp_leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(temp_leftovers(&p));
        } else if p.file_name().unwrap().to_string_lossy().contains(".tmp.") {
            out.push(p);
        }
    }
    out
}

#[test]
fn full_disk_keeps_points_cached_and_lands_them_when_space_returns() {
    let fs = Tmpfs::mount("4m");
    let ballast = fs.path.join("ballast");
    std::fs::write(&ballast, vec![1u8; 3_600_000]).unwrap();
    let schemas = fs.path.join("storage-schemas.conf");
    // 1440 points × 12 bytes: 17 KB a file, about 25 fit beside the ballast.
    std::fs::write(&schemas, "[all]\npattern = .*\nretentions = 1m:1d\n").unwrap();
    let text = format!(
        "[common]\nmetric-interval = \"0s\"\n[whisper]\nschemas-file = {:?}\n\
         [cache]\nmax-size = 450\noverflow = \"error\"\n",
        schemas.display().to_string()
    );
    let data = fs.path.join("data");
    let c = Carbon::open(Config::embedded(&data).apply_toml(&text, "<t>").unwrap()).unwrap();
    let start = Instant::now();
    let now = unix_now();
    let (metrics, rounds) = (100, 5);
    let mut accepted = Vec::new();
    let mut refused = 0u64;
    for round in 0..rounds {
        let ts = now - 600 + round * 60;
        for m in 0..metrics {
            let v = (m * 100 + round) as f64 + 0.25;
            let name = format!("full.m{m:03}");
            match c.add(&name, v, ts) {
                Ok(()) => accepted.push((name, ts, v)),
                Err(carbonlite::Error::Full { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        if round == 0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.stats().disk_full_errors == 0 {
                assert!(Instant::now() < deadline, "no ENOSPC: {:?}", c.stats());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // Disk full: points wait in the cache, failures are counted and visible.
    let s = c.stats();
    assert!(
        s.disk_full_errors > 0 && s.write_errors >= s.disk_full_errors,
        "{s:?}"
    );
    assert!(s.cache_size > 0, "{s:?}");
    assert_eq!(s.overflow, refused, "{s:?}");
    assert_eq!(s.metrics_received, accepted.len() as u64);
    assert!(refused > 0, "the cache bound was never reached: {s:?}");
    let err = c.last_error().unwrap();
    assert!(err.to_lowercase().contains("no space"), "{err}");
    let m: std::collections::HashMap<_, _> =
        s.self_metrics(&Default::default()).into_iter().collect();
    assert!(m["persister.diskFull"] > 0.0 && m["cache.overflow"] == refused as f64);
    // Space comes back: everything accepted lands.
    std::fs::remove_file(&ballast).unwrap();
    loop {
        match c.flush() {
            Ok(()) => break,
            Err(e) => assert!(start.elapsed() < Duration::from_secs(40), "{e}"),
        }
    }
    let s = c.stats();
    assert_eq!(s.committed_points, accepted.len() as u64, "{s:?}");
    assert_eq!(s.cache_size, 0);
    for (m, ts, v) in &accepted {
        assert_eq!(value_at(&c, m, *ts, now), Some(*v), "{m} {ts}");
    }
    drop(c);
    // No half-created file under any name.
    assert!(
        temp_leftovers(&data).is_empty(),
        "{:?}",
        temp_leftovers(&data)
    );
    println!(
        "ENOSPC: {} accepted, {refused} refused by the full cache, {} disk-full retries, {:?}",
        accepted.len(),
        s.disk_full_errors,
        start.elapsed()
    );
}
