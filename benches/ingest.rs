//! carbon_add_line into the cache, one thread, 100k distinct metrics (issue target: ≥ 10M
//! lines/s). The persister is off so only parsing + name checks + cache insertion are
//! measured. `cargo bench --bench ingest`; `INGEST_FIXED=<rounds>` runs a fixed number of
//! 100k-line rounds instead, for profiling (add `INGEST_STEADY=1` for the steady variant),
//! and prints the lines/s of the add calls alone, then split into rounds of new metrics (a
//! handle's first) and of cached ones, and per round of a handle (the 4th is each metric's
//! first spill past its inline points). `INGEST_NAMES=tagged|tagged-unsorted` sends tagged
//! names.
//!
//! Two ids:
//! - `100k_distinct_metrics_1_thread`: one handle for the whole run, so the cache grows
//!   without bound (every iteration adds 100k points; after thousands of iterations each
//!   metric's vector holds thousands of points and growth is mostly amortised reallocs).
//! - `100k_distinct_metrics_1_thread_steady`: the handle is closed and reopened (untimed)
//!   every 10 rounds, so the cache holds at most 1M points, 10 per metric — W2's shape: each
//!   round's inserts include the metrics' first allocation and their early growth.
//!
//! And `machine/random_line_reads_32MiB`, no carbonlite code in it: independent reads of
//! random cache lines in 32 MiB, about the cache's working set in the ids above. The ingest
//! figures follow this machine's memory throughput, which on this shared VM swings by 2×
//! from hour to hour; quote the two together (a fixed run prints both).

use std::ffi::CString;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use carbonlite::ffi::carbon::{carbon, carbon_add_line, carbon_close, carbon_open};

const METRICS: usize = 100_000;

/// Rounds the steady variant adds into one handle before reopening it (10 points per metric).
const STEADY_ROUNDS: usize = 10;

/// Bytes the memory probe reads from: about the cache's working set at 100k metrics.
const PROBE_BYTES: usize = 32 << 20;

/// Reads per probe pass.
const PROBE_READS: usize = 1 << 20;

/// The memory probe: an array of `PROBE_BYTES` and `PROBE_READS` random line indices into it.
fn probe_setup() -> (Vec<u64>, Vec<u32>) {
    let words = PROBE_BYTES / 8;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let lines = (0..PROBE_READS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // A word at the start of a random 64-byte line.
            ((x % (words as u64 / 8)) * 8) as u32
        })
        .collect();
    ((0..words as u64).collect(), lines)
}

/// One probe pass: the reads are independent, so the CPU overlaps them as the cache's
/// prefetched lookups overlap, and the pass measures throughput rather than latency.
fn probe_pass(mem: &[u64], lines: &[u32]) -> u64 {
    lines
        .iter()
        .fold(0u64, |a, &i| a.wrapping_add(mem[i as usize]))
}

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
    // `INGEST_NAMES=tagged` (tags in carbon's order) or `tagged-unsorted` (every name needs
    // normalising) sends Graphite 1.1 tagged names instead.
    let names = std::env::var("INGEST_NAMES").unwrap_or_default();
    let base = 1_700_000_000i64;
    let rounds: Vec<Vec<u8>> = (0..10)
        .map(|r| {
            let mut s = String::with_capacity(METRICS * 48);
            for m in 0..METRICS {
                let (host, cpu) = (m % 100, m / 100);
                let name = match names.as_str() {
                    "tagged" => format!("bench.value;cpu=cpu{cpu};host=host{host}"),
                    "tagged-unsorted" => format!("bench.value;host=host{host};cpu=cpu{cpu}"),
                    _ => format!("bench.host{host}.cpu{cpu}.value"),
                };
                s.push_str(&format!("{name} {m}.5 {}\n", base + r * 10));
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
        // Each handle's first round (every metric new) apart from the rest (every metric
        // already cached): they cost very differently, and only the first touches fresh memory.
        let (mut first, mut first_rounds) = (Duration::ZERO, 0);
        // Steady runs also per round of a handle (its k-th round holds k points a metric).
        let mut by_round = [(Duration::ZERO, 0usize); STEADY_ROUNDS];
        for (r, buf) in rounds.iter().cycle().take(n).enumerate() {
            if steady {
                reopen_if_full(&mut h, &d, r);
            }
            let t = Instant::now();
            // SAFETY: live handle, valid buffer.
            let got = unsafe { carbon_add_line(h, buf.as_ptr().cast(), buf.len()) };
            let took = t.elapsed();
            timed += took;
            by_round[r % STEADY_ROUNDS].0 += took;
            by_round[r % STEADY_ROUNDS].1 += 1;
            if r % STEADY_ROUNDS == 0 && (steady || r == 0) {
                first += took;
                first_rounds += 1;
            }
            assert_eq!(got, METRICS as i64);
        }
        let rate = |rounds: usize, d: Duration| (rounds * METRICS) as f64 / d.as_secs_f64() / 1e6;
        // SAFETY: live handle, not used again.
        unsafe { carbon_close(h) };
        let (mem, lines) = probe_setup();
        let t = Instant::now();
        let passes = 20;
        for _ in 0..passes {
            std::hint::black_box(probe_pass(&mem, std::hint::black_box(&lines)));
        }
        let probe = t.elapsed();
        // The add calls alone, as the criterion ids time them.
        println!(
            "{n} rounds: {:.2} M lines/s in carbon_add_line ({:.3} s); memory probe {:.1} M random line reads/s",
            rate(n, timed),
            timed.as_secs_f64(),
            (passes * PROBE_READS) as f64 / probe.as_secs_f64() / 1e6
        );
        if first_rounds < n {
            println!(
                "  new metrics (a handle's first round, {first_rounds}): {:.2} M lines/s; cached metrics (the other {}): {:.2} M lines/s",
                rate(first_rounds, first),
                n - first_rounds,
                rate(n - first_rounds, timed - first)
            );
        }
        // Without `INGEST_STEADY` one handle takes every round: no per-handle rounds to show.
        if steady && n >= STEADY_ROUNDS {
            let each: Vec<String> = by_round
                .iter()
                .map(|&(d, k)| format!("{:.1}", rate(k, d)))
                .collect();
            println!(
                "  per round of a handle, 1st to {STEADY_ROUNDS}th (M lines/s): {}",
                each.join(" ")
            );
        }
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
    drop(rounds);

    let (mem, lines) = probe_setup();
    let mut g = c.benchmark_group("machine");
    g.throughput(Throughput::Elements(PROBE_READS as u64));
    g.sample_size(20);
    g.bench_function("random_line_reads_32MiB", |b| {
        b.iter(|| probe_pass(&mem, std::hint::black_box(&lines)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
