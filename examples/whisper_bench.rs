//! Throughput of the whisper engine on the shape bench/whisper_vs_python.sh also gives python
//! whisper: `10s:1d,1m:30d`, update_many of 60 points 10 s apart moving forward, and one-day
//! fetches. Prints one JSON object. Usage: whisper_bench [seconds-per-measurement] [update|fetch]
//! (the second argument runs one measurement only, for profiling).

use std::time::{Duration, Instant};

use carbonlite::points::Point;
use carbonlite::whisper::{AggregationMethod, CreateOptions, Retention, WhisperFile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2.0);
    let only = std::env::args().nth(2).unwrap_or_default();
    let budget = Duration::from_secs_f64(secs);
    let (update_budget, fetch_budget) = match only.as_str() {
        "update" => (budget, Duration::ZERO),
        "fetch" => (Duration::from_millis(10), budget),
        _ => (budget, budget),
    };
    let dir = std::env::temp_dir().join(format!("carbonlite-whisper-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.wsp");
    let shape = [Retention::new(10, 8640), Retention::new(60, 43200)];
    let mut f = WhisperFile::create(
        &path,
        &shape,
        AggregationMethod::Average,
        0.5,
        CreateOptions::default(),
    )?;

    let mut t: i64 = 1_700_000_000;
    let mut calls = 0u64;
    let start = Instant::now();
    while start.elapsed() < update_budget {
        for _ in 0..100 {
            let points: Vec<Point> = (0..60)
                .map(|i| Point::new(t + i * 10, (i % 7) as f64))
                .collect();
            t += 600;
            f.update_many(&points, t)?;
            calls += 1;
        }
    }
    let update_secs = start.elapsed().as_secs_f64();

    let now = t;
    let day: Vec<Point> = (0..8640)
        .map(|i| Point::new(now - 86_400 + i * 10, i as f64))
        .collect();
    f.update_many(&day, now)?;
    let mut fetches = 0u64;
    let mut checksum = 0usize;
    let start = Instant::now();
    while start.elapsed() < fetch_budget {
        for _ in 0..10 {
            let s = f
                .fetch(now - 86_400, None, now)?
                .ok_or("fetch returned None")?;
            checksum += s.values.iter().filter(|v| !v.is_nan()).count();
            fetches += 1;
        }
    }
    let fetch_secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_dir_all(&dir)?;
    println!(
        "{{\"impl\":\"carbonlite\",\"update_many_calls\":{calls},\"update_many_points_per_s\":{:.0},\
         \"fetch_1d_per_s\":{:.1},\"fetch_known_values\":{}}}",
        (calls * 60) as f64 / update_secs,
        fetches as f64 / fetch_secs,
        checksum / fetches.max(1) as usize
    );
    Ok(())
}
