//! Journal append throughput: 1000-point batches (one record each) with fsync never, interval
//! (1 s) and always, single-threaded, plus 4 threads under `always` to show group commit.
//! `cargo bench --bench journal`. Compare with `--bench ingest` (the journal-off path) for the
//! issue's "interval within 15% of journal-off" budget: the per-point cost here is what the
//! journal adds to each `carbon_add*` call.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use carbonlite::Point;
use carbonlite::journal::{FsyncPolicy, Journal, JournalOptions};

const BATCH: usize = 1000;

fn names() -> Vec<String> {
    (0..BATCH)
        .map(|m| format!("bench.host{}.cpu{}.value", m % 100, m / 100))
        .collect()
}

fn bench(c: &mut Criterion) {
    let names = names();
    let mut g = c.benchmark_group("journal_append_1000_points");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    // The CPU part alone (encode + CRC into a reused buffer): the floor of any policy.
    let mut buf = Vec::with_capacity(64 << 10);
    let mut ts = 1_700_000_000i64;
    g.bench_function("encode_only", |b| {
        b.iter(|| {
            ts += 10;
            let batch: Vec<(&str, Point)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), Point::new(ts, i as f64)))
                .collect();
            buf.clear();
            carbonlite::journal::record::encode(&batch, &mut buf).unwrap();
            criterion::black_box(&buf);
        })
    });
    for (label, fsync) in [
        ("never", FsyncPolicy::Never),
        ("interval_1s", FsyncPolicy::Interval),
        ("always", FsyncPolicy::Always),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(
            dir.path(),
            JournalOptions {
                fsync,
                ..JournalOptions::default()
            },
        )
        .unwrap();
        let mut ts = 1_700_000_000i64;
        let mut batch: Vec<(&str, Point)> = Vec::with_capacity(BATCH);
        g.bench_function(label, |b| {
            b.iter(|| {
                ts += 10;
                batch.clear();
                batch.extend(
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.as_str(), Point::new(ts, i as f64))),
                );
                let lsn = j.append(&batch).unwrap();
                // Keep the journal from growing without bound, as the engine's release would.
                if lsn.offset > 32 << 20 {
                    j.release(lsn).unwrap();
                }
            })
        });
        let s = j.stats();
        eprintln!("{label}: {s:?}");
    }
    // 4 threads under `always`: group commit shares each fsync between waiting appenders.
    g.throughput(Throughput::Elements((4 * BATCH) as u64));
    g.bench_function("always_4_threads", |b| {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(
            dir.path(),
            JournalOptions {
                fsync: FsyncPolicy::Always,
                ..JournalOptions::default()
            },
        )
        .unwrap();
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..4 {
                    let (j, names) = (&j, &names);
                    s.spawn(move || {
                        for k in 0..iters {
                            let batch: Vec<(&str, Point)> = names
                                .iter()
                                .map(|n| (n.as_str(), Point::new(k as i64 + t, 1.0)))
                                .collect();
                            j.append(&batch).unwrap();
                        }
                    });
                }
            });
            let el = start.elapsed();
            j.release(j.written_upto()).unwrap();
            el
        });
        eprintln!("always_4_threads: {:?}", j.stats());
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
