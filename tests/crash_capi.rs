//! Crash harness through the C API: a child process (this test binary, re-run with
//! `CARBONLITE_CRASH_CHILD` set) opens the store with `[journal] fsync = "always"`, ingests as
//! fast as it can through `carbon_add_line` and `carbon_add`, sometimes `carbon_flush`es, and
//! prints the id of every batch the C API acknowledged. The parent SIGKILLs it at random
//! moments (some during open, i.e. during replay), 24 times, starting a new child each time.
//! At the end every acknowledged point must be in the whisper files with its value.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carbonlite::ffi::carbon::{
    carbon_add, carbon_add_line, carbon_close, carbon_flush, carbon_open, whisper_fetch,
    whisper_series, whisper_series_free,
};

const CHILD_ENV: &str = "CARBONLITE_CRASH_CHILD";
/// Metrics per batch; batch `k` writes `crash.m<j>` = k * 100 + j at `BASE + k`.
const METRICS: i64 = 20;
const KILLS: usize = 24;

fn options(dir: &Path) -> CString {
    let schemas = dir.join("storage-schemas.conf");
    CString::new(format!(
        "[common]\nmetric-interval = \"0s\"\n[whisper]\nschemas-file = {:?}\nsparse-create = true\n\
         [journal]\nenabled = true\nfsync = \"always\"\n",
        schemas.display().to_string()
    ))
    .unwrap()
}

fn base() -> i64 {
    // A fixed origin a little in the past, identical for every process of one run.
    std::env::var("CARBONLITE_CRASH_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap()
}

/// The child: ingest until killed, acknowledging batch ids on stdout.
fn child(dir: &Path, first: i64) {
    let data = CString::new(dir.join("data").to_str().unwrap()).unwrap();
    let opts = options(dir);
    // SAFETY: valid NUL-terminated strings.
    let c = unsafe { carbon_open(data.as_ptr(), opts.as_ptr()) };
    assert!(!c.is_null());
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let base = base();
    let mut k = first;
    loop {
        let ts = base + k;
        if k % 3 == 0 {
            for j in 0..METRICS {
                let name = CString::new(format!("crash.m{j}")).unwrap();
                // SAFETY: live handle, NUL-terminated name.
                let r = unsafe { carbon_add(c, name.as_ptr(), (k * 100 + j) as f64, ts) };
                assert_eq!(r, 0);
            }
        } else {
            let mut buf = String::new();
            for j in 0..METRICS {
                buf.push_str(&format!("crash.m{j} {} {ts}\n", k * 100 + j));
            }
            // SAFETY: live handle, buffer of that length.
            let n = unsafe { carbon_add_line(c, buf.as_ptr().cast(), buf.len()) };
            assert_eq!(n, METRICS);
        }
        writeln!(out, "A {k}").unwrap();
        if k % 40 == 0 {
            // SAFETY: live handle.
            assert_eq!(unsafe { carbon_flush(c) }, 0);
            writeln!(out, "F {k}").unwrap();
        }
        out.flush().unwrap();
        k += 1;
    }
}

#[test]
fn child_entry() {
    // Only does something when started by the harness below.
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let first = std::env::var("CARBONLITE_CRASH_FIRST")
            .unwrap()
            .parse()
            .unwrap();
        child(Path::new(&dir), first);
    }
}

#[test]
fn acknowledged_points_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("storage-schemas.conf"),
        "[all]\npattern = .*\nretentions = 1s:1d\n",
    )
    .unwrap();
    let base = carbonlite::points::unix_now() - 40_000;
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<i64> = Vec::new();
    let mut flushed = 0usize;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ base as u64;
    let mut rand = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let start = Instant::now();
    let mut next = 0i64;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("CARBONLITE_CRASH_FIRST", next.to_string())
            .env("CARBONLITE_CRASH_BASE", base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        // Every fourth child dies while opening (replaying), the others mid-ingest.
        let wait = if round % 4 == 3 {
            rand(40)
        } else {
            150 + rand(400)
        };
        std::thread::sleep(Duration::from_millis(wait));
        // SAFETY: plain kill(2) on our own child's pid.
        let r = unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        assert_eq!(r, 0);
        let status = child.wait().unwrap();
        assert!(!status.success(), "child exited by itself: {status:?}");
        let lines = reader.join().unwrap();
        for l in &lines {
            if let Some(k) = l.strip_prefix("A ").and_then(|k| k.parse().ok()) {
                acked.push(k);
            } else if l.starts_with("F ") {
                flushed += 1;
            }
        }
        next = acked.iter().max().map_or(next, |m| m + 1).max(next) + 1000;
    }
    let killing = start.elapsed();
    // Recover in this process through the same C API, flush, fetch.
    let data = CString::new(dir.path().join("data").to_str().unwrap()).unwrap();
    let opts = options(dir.path());
    // SAFETY: valid NUL-terminated strings.
    let c = unsafe { carbon_open(data.as_ptr(), opts.as_ptr()) };
    // SAFETY: carbon_last_error never returns NULL.
    let why = unsafe { std::ffi::CStr::from_ptr(carbonlite::ffi::carbon_last_error()) };
    assert!(!c.is_null(), "{why:?}");
    // SAFETY: live handle.
    assert_eq!(unsafe { carbon_flush(c) }, 0);
    let mut recovered = 0usize;
    let now = carbonlite::points::unix_now();
    for j in 0..METRICS {
        let name = CString::new(format!("crash.m{j}")).unwrap();
        let mut s = whisper_series {
            from: 0,
            until: 0,
            step: 0,
            len: 0,
            values: std::ptr::null_mut(),
        };
        // SAFETY: live handle, valid name and out pointer.
        let r = unsafe { whisper_fetch(c, name.as_ptr(), base - 10, now, &mut s) };
        assert_eq!(r, 0, "crash.m{j}");
        // SAFETY: filled by whisper_fetch: `len` values.
        let values = unsafe { std::slice::from_raw_parts(s.values, s.len) };
        for &k in &acked {
            let i = (base + k - s.from) / s.step;
            let got = values[i as usize];
            assert_eq!(got, (k * 100 + j) as f64, "crash.m{j} batch {k} lost");
            recovered += 1;
        }
        // SAFETY: filled by whisper_fetch.
        unsafe { whisper_series_free(&mut s) };
    }
    // SAFETY: live handle, not used again.
    unsafe { carbon_close(c) };
    let points = acked.len() * METRICS as usize;
    println!(
        "crash harness: {KILLS} SIGKILLs, {} batches ({points} points) acknowledged, \
         {recovered} recovered, {flushed} flushes acknowledged, killing took {killing:?}",
        acked.len()
    );
    assert_eq!(recovered, points);
    assert!(
        acked.len() > 100,
        "too few acknowledged batches to mean anything"
    );
}
