//! Whisper engine hot paths as the persister uses them: a file kept open (header cached)
//! receiving 60-point batches, and a one-day fetch from the same `10s:1d,1m:30d` shape.

use std::hint::black_box;

use carbonlite::points::Point;
use carbonlite::whisper::{AggregationMethod, CreateOptions, Retention, WhisperFile};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const START: i64 = 1_700_000_000;

fn shape() -> [Retention; 2] {
    [Retention::new(10, 8640), Retention::new(60, 43200)]
}

fn bench_whisper(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.wsp");
    let mut f = WhisperFile::create(
        &path,
        &shape(),
        AggregationMethod::Average,
        0.5,
        CreateOptions::default(),
    )
    .unwrap();

    let mut group = c.benchmark_group("whisper");
    group.throughput(Throughput::Elements(60));
    let mut t = START;
    group.bench_function("update_many_60", |b| {
        b.iter(|| {
            let points: Vec<Point> = (0..60)
                .map(|i| Point::new(t + i * 10, (i % 7) as f64))
                .collect();
            t += 600;
            f.update_many(black_box(&points), t).unwrap();
        })
    });

    // Fill a full day so that the fetch decodes real points.
    let now = t;
    let day: Vec<Point> = (0..8640)
        .map(|i| Point::new(now - 86_400 + i * 10, i as f64))
        .collect();
    f.update_many(&day, now).unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("fetch_1d", |b| {
        b.iter(|| {
            let s = f
                .fetch(black_box(now - 86_400), None, now)
                .unwrap()
                .unwrap();
            black_box(s.values.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_whisper);
criterion_main!(benches);
