//! Many threads on one handle: writers through add_lines, readers through fetch, flushers.
//! Every point must land exactly once with its value; nothing lost, nothing duplicated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::points::unix_now;

#[test]
fn eight_writers_with_concurrent_fetch_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas.conf");
    std::fs::write(&schemas, "[all]\npattern = .*\nretentions = 1s:2h\n").unwrap();
    let cfg = Config::embedded(dir.path().join("data"))
        .apply_toml(
            &format!(
                "[whisper]\nworkers = 3\nschemas-file = {:?}\n",
                schemas.display().to_string()
            ),
            "<test>",
        )
        .unwrap();
    let c = Arc::new(Carbon::open(cfg).unwrap());
    const WRITERS: usize = 8;
    const METRICS: usize = 40; // per writer; writers share metric names pairwise
    const POINTS: i64 = 100;
    let base = unix_now() - 3000;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..2 {
        let (c, stop) = (c.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("conc.w{}.m{}", n % WRITERS as u64, n % METRICS as u64);
                match c.fetch(&name, base - 1, Some(base + POINTS)) {
                    Ok(s) => {
                        // Any value seen must be one a writer wrote for that slot.
                        for (i, v) in s.values.iter().enumerate() {
                            if !v.is_nan() {
                                let ts = s.from + i as i64 * s.step;
                                assert_eq!(v.fract(), 0.0);
                                assert_eq!((*v as i64) % 1000, ts - base, "{name}@{ts}: {v}");
                            }
                        }
                    }
                    Err(carbonlite::Error::NotFound(_)) => {}
                    Err(e) => panic!("fetch: {e}"),
                }
                if r == 0 && n.is_multiple_of(50) {
                    c.flush().unwrap();
                }
                n += 1;
            }
        }));
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut accepted = 0;
                for p in 0..POINTS {
                    let mut buf = String::new();
                    for m in 0..METRICS {
                        // Writer w and w^1 write the same names with the same values, so
                        // duplicates must collapse to one point per timestamp.
                        let owner = w & !1;
                        let value = (owner * 100_000 + m * 1000) as i64 + p;
                        buf.push_str(&format!("conc.w{owner}.m{m} {value} {}\n", base + p));
                    }
                    let r = c.add_lines(buf.as_bytes());
                    assert_eq!(r.rejected, 0, "{:?}", r.first_error);
                    accepted += r.accepted;
                }
                accepted
            })
        })
        .collect();
    let accepted: u64 = writers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(accepted, (WRITERS * METRICS) as u64 * POINTS as u64);
    c.flush().unwrap();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(c.stats().cache_size, 0);
    for owner in (0..WRITERS).step_by(2) {
        for m in 0..METRICS {
            let s = c
                .fetch(
                    &format!("conc.w{owner}.m{m}"),
                    base - 1,
                    Some(base + POINTS),
                )
                .unwrap();
            let want: Vec<f64> = (0..POINTS)
                .map(|p| ((owner * 100_000 + m * 1000) as i64 + p) as f64)
                .collect();
            assert_eq!(
                &s.values[..POINTS as usize],
                &want[..],
                "conc.w{owner}.m{m}"
            );
        }
    }
}
