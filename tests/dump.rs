//! `[dump]`: the cache written on close in go-carbon's format and read back on open; files
//! written by go-carbon (hand-built here from its documented format) restore; damaged files
//! restore what they can and are reported.

use std::path::Path;
use std::time::{Duration, Instant};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::points::unix_now;

/// `whisper` goes into `[whisper]`, `extra` into `[dump]`.
fn open(dir: &Path, whisper: &str, extra: &str) -> Carbon {
    let schemas = dir.join("storage-schemas.conf");
    std::fs::write(
        &schemas,
        "[all]\npattern = .*\nretentions = 10s:1d,1m:30d\n",
    )
    .unwrap();
    let text = format!(
        "[common]\nmetric-interval = \"0s\"\n[whisper]\nschemas-file = {:?}\n{whisper}\
         [dump]\nenabled = true\npath = {:?}\n{extra}",
        schemas.display().to_string(),
        dir.join("dump").display().to_string()
    );
    let cfg = Config::embedded(dir.join("data"))
        .apply_toml(&text, "<test>")
        .unwrap();
    Carbon::open(cfg).unwrap()
}

fn value_at(c: &Carbon, m: &str, ts: i64, now: i64) -> Option<f64> {
    let s = c.fetch_at(m, ts - 60, Some(ts + 60), now).unwrap();
    let i = (ts - ts.rem_euclid(s.step) - s.from) / s.step;
    s.values.get(usize::try_from(i).ok()?).copied()
}

fn dump_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("dump"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Go's `binary.PutVarint`, written out independently of carbonlite's encoder.
fn go_varint(out: &mut Vec<u8>, x: i64) {
    let mut ux = (x as u64) << 1;
    if x < 0 {
        ux = !ux;
    }
    while ux >= 0x80 {
        out.push((ux as u8) | 0x80);
        ux >>= 7;
    }
    out.push(ux as u8);
}

/// One record as go-carbon's `Points.WriteBinaryTo` lays it out.
fn go_record(out: &mut Vec<u8>, name: &str, points: &[(i64, f64)]) {
    go_varint(out, name.len() as i64);
    out.extend_from_slice(name.as_bytes());
    go_varint(out, points.len() as i64);
    let (mut pv, mut pt) = (0i64, 0i64);
    for &(t, v) in points {
        let bits = v.to_bits() as i64;
        go_varint(out, bits.wrapping_sub(pv));
        go_varint(out, t - pt);
        (pv, pt) = (bits, t);
    }
}

#[test]
fn close_dumps_the_cache_and_open_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    // Slow persisters: most points are still cached at close.
    let c = open(dir.path(), "max-updates-per-second = 20\n", "");
    let mut want = Vec::new();
    let mut buf = String::new();
    for m in 0..200 {
        for i in 0..5 {
            let ts = now - 100 + i * 10;
            let v = (m * 10 + i) as f64;
            buf.push_str(&format!("dump.m{m} {v} {ts}\n"));
            want.push((format!("dump.m{m}"), ts, v));
        }
    }
    assert_eq!(c.add_lines(buf.as_bytes()).rejected, 0);
    let cached = c.stats().cache_size;
    c.close();
    let dumped = c.stats().dump_points;
    drop(c);
    let files = dump_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with("cache.") && files[0].ends_with(".bin"),
        "{files:?}"
    );
    let c = open(dir.path(), "", "");
    let s = c.stats();
    assert_eq!(s.restored_points, dumped);
    assert!(s.restored_points <= cached && s.dump_errors == 0, "{s:?}");
    assert!(s.restored_points > 500, "persisters were throttled: {s:?}");
    assert!(dump_files(dir.path()).is_empty());
    c.flush().unwrap();
    for (m, ts, v) in &want {
        assert_eq!(value_at(&c, m, *ts, now), Some(*v), "{m} {ts}");
    }
}

#[test]
fn go_carbon_dump_files_restore_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    std::fs::create_dir_all(dir.path().join("dump")).unwrap();
    let mut bin = Vec::new();
    go_record(
        &mut bin,
        "go.a",
        &[(now - 30, 1.5), (now - 20, -2.25), (now - 10, 1e300)],
    );
    go_record(&mut bin, "go.b", &[(now - 30, 0.0)]);
    std::fs::write(
        dir.path().join("dump/cache.4242.1700000000000000001.bin"),
        &bin,
    )
    .unwrap();
    // The input diverted during that stop comes after the cache dump and wins for go.b.
    std::fs::write(
        dir.path().join("dump/input.4242.1700000000000000001"),
        format!("go.b 7 {}\ngo.c 8 {}\nnot a line\n", now - 30, now - 10),
    )
    .unwrap();
    std::fs::write(dir.path().join("dump/README"), "not a dump").unwrap();
    let c = open(dir.path(), "", "");
    let s = c.stats();
    assert_eq!(s.restored_points, 6, "{s:?}");
    assert_eq!(s.dump_errors, 0, "{s:?}");
    for (m, ts, v) in [
        ("go.a", now - 30, 1.5),
        ("go.a", now - 20, -2.25),
        ("go.a", now - 10, 1e300),
        ("go.b", now - 30, 7.0),
        ("go.c", now - 10, 8.0),
    ] {
        assert_eq!(value_at(&c, m, ts, now), Some(v), "{m} {ts}");
    }
    assert_eq!(dump_files(dir.path()), vec!["README".to_owned()]);
}

#[test]
fn a_truncated_dump_restores_what_it_can_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    std::fs::create_dir_all(dir.path().join("dump")).unwrap();
    let mut bin = Vec::new();
    go_record(&mut bin, "cut.a", &[(now - 20, 1.0), (now - 10, 2.0)]);
    go_record(&mut bin, "cut.b", &[(now - 20, 3.0), (now - 10, 4.0)]);
    bin.truncate(bin.len() - 3); // inside cut.b's second point
    std::fs::write(dir.path().join("dump/cache.1.2.bin"), &bin).unwrap();
    let c = open(dir.path(), "", "");
    let s = c.stats();
    assert_eq!((s.restored_points, s.dump_errors), (3, 1), "{s:?}");
    let err = c.last_error().unwrap();
    assert!(
        err.contains("cache.1.2.bin") && err.contains("cut.b"),
        "{err}"
    );
    assert_eq!(value_at(&c, "cut.a", now - 10, now), Some(2.0));
    assert_eq!(value_at(&c, "cut.b", now - 20, now), Some(3.0));
    assert!(value_at(&c, "cut.b", now - 10, now).unwrap().is_nan());
    // Kept as evidence under a name neither carbonlite nor go-carbon restores.
    assert_eq!(
        dump_files(dir.path()),
        vec!["damaged.cache.1.2.bin".to_owned()]
    );
}

#[test]
fn restore_per_second_paces_a_background_restore() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    std::fs::create_dir_all(dir.path().join("dump")).unwrap();
    let mut bin = Vec::new();
    for m in 0..30 {
        go_record(&mut bin, &format!("slow.m{m}"), &[(now - 10, m as f64)]);
    }
    std::fs::write(dir.path().join("dump/cache.1.2.bin"), &bin).unwrap();
    let start = Instant::now();
    let c = open(dir.path(), "", "restore-per-second = 60\n");
    assert!(start.elapsed() < Duration::from_millis(400));
    while c.stats().restored_points < 30 {
        assert!(start.elapsed() < Duration::from_secs(10), "{:?}", c.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    // 30 records at 60 a second: about half a second, not at once.
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(value_at(&c, "slow.m29", now - 10, now), Some(29.0));
}
