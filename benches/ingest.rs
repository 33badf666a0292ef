//! carbon_add_line into the cache, one thread, 100k distinct metrics (issue target: ≥ 10M
//! lines/s). The persister is off so only parsing + name checks + cache insertion are
//! measured. `cargo bench --bench ingest`; `INGEST_FIXED=<rounds>` runs a fixed number of
//! 100k-line rounds instead, for profiling (add `INGEST_STEADY=1` for the steady variant),
//! and prints the lines/s of the add calls alone.
//!
//! Two ids:
//! - `100k_distinct_metrics_1_thread`: one handle for the whole run, so the cache grows
//!   without bound (every iteration adds 100k points; after thousands of iterations each
//!   metric's vector holds thousands of points and growth is mostly amortised reallocs).
//! - `100k_distinct_metrics_1_thread_steady`: the handle is closed and reopened (untimed)
//!   every 10 rounds, so the cache holds at most 1M points, 10 per metric — W2's shape: each
//!   round's inserts include the metrics' first allocation and their early growth.

use std::ffi::CString;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use carbonlite::ffi::carbon::{carbon, carbon_add_line, carbon_close, carbon_open};

const METRICS: usize = 100_000;

/// Rounds the steady variant adds into one handle before reopening it (10 points per metric).
const STEADY_ROUNDS: usize = 10;

/// A cache-only handle with no size limit (the persister and self-metrics off).
fn open(dir: &CString) -> *mut carbon {
    let opts =
        c"[whisper]\nenabled = false\n[cache]\nmax-size = 0\n[common]\nmetric-interval = \"0\"\n";
    // SAFETY: valid NUL-terminated arguments.
    let h = unsafe { carbon_open(dir.as_ptr(), opts.as_ptr()) };
    assert!(!h.is_null());
    h
}

/// The steady variant's reset: before round `round`, a handle that holds STEADY_ROUNDS
/// rounds is closed and replaced by an empty one.
fn reopen_if_full(h: &mut *mut carbon, dir: &CString, round: usize) {
    if round > 0 && round.is_multiple_of(STEADY_ROUNDS) {
        // SAFETY: live handle, not used again.
        unsafe { carbon_close(*h) };
        *h = open(dir);
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let d = CString::new(dir.path().to_str().unwrap()).unwrap();
    let mut h = open(&d);
    // 10 buffers of 100k lines each (one point per metric), new timestamps every round.
    let base = 1_700_000_000i64;
    let rounds: Vec<Vec<u8>> = (0..10)
        .map(|r| {
            let mut s = String::with_capacity(METRICS * 48);
            for m in 0..METRICS {
                s.push_str(&format!(
                    "bench.host{}.cpu{}.value {}.5 {}\n",
                    m % 100,
                    m / 100,
                    m,
                    base + r * 10
                ));
            }
            s.into_bytes()
        })
        .collect();
    // A fixed amount of work for profilers and CPU-time comparisons on a busy machine
    // (`INGEST_FIXED=100 perf record target/release/deps/ingest-* --bench`): criterion's
    // adaptive iteration counts make those runs incomparable.
    if let Some(n) = std::env::var("INGEST_FIXED")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let steady = std::env::var_os("INGEST_STEADY").is_some_and(|v| v != "0");
        let mut timed = Duration::ZERO;
        for (r, buf) in rounds.iter().cycle().take(n).enumerate() {
            if steady {
                reopen_if_full(&mut h, &d, r);
            }
            let t = Instant::now();
            // SAFETY: live handle, valid buffer.
            let got = unsafe { carbon_add_line(h, buf.as_ptr().cast(), buf.len()) };
            timed += t.elapsed();
            assert_eq!(got, METRICS as i64);
        }
        // SAFETY: live handle, not used again.
        unsafe { carbon_close(h) };
        // The add calls alone, as the criterion ids time them.
        println!(
            "{n} rounds: {:.2} M lines/s in carbon_add_line ({:.3} s)",
            (n * METRICS) as f64 / timed.as_secs_f64() / 1e6,
            timed.as_secs_f64()
        );
        return;
    }
    let mut g = c.benchmark_group("carbon_add_line");
    g.throughput(Throughput::Elements(METRICS as u64));
    g.sample_size(20);
    let mut i = 0;
    g.bench_function("100k_distinct_metrics_1_thread", |b| {
        b.iter(|| {
            let buf = &rounds[i % rounds.len()];
            i += 1;
            // SAFETY: live handle, valid buffer.
            let n = unsafe { carbon_add_line(h, buf.as_ptr().cast(), buf.len()) };
            assert_eq!(n, METRICS as i64);
        })
    });
    // Same lines, but the cache never holds more than STEADY_ROUNDS points per metric: the
    // handle is replaced outside the timed region every STEADY_ROUNDS rounds.
    // SAFETY: live handle, not used again.
    unsafe { carbon_close(h) };
    h = open(&d);
    let mut round = 0;
    g.bench_function("100k_distinct_metrics_1_thread_steady", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                reopen_if_full(&mut h, &d, round);
                let buf = &rounds[round % rounds.len()];
                round += 1;
                let t = Instant::now();
                // SAFETY: live handle, valid buffer.
                let n = unsafe { carbon_add_line(h, buf.as_ptr().cast(), buf.len()) };
                timed += t.elapsed();
                assert_eq!(n, METRICS as i64);
            }
            timed
        })
    });
    g.finish();
    // SAFETY: live handle, not used again.
    unsafe { carbon_close(h) };
}

criterion_group!(benches, bench);
criterion_main!(benches);
