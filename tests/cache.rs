//! Concurrency tests of `carbonlite::cache`: many adders, several persisters, flushes and
//! overflow under load. Each checks exact point accounting, not just "no crash".

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use carbonlite::Point;
use carbonlite::cache::{AddOutcome, Cache, CacheOptions, Overflow, WriteStrategy};

type Seen = Arc<Mutex<Vec<(String, Point)>>>;

/// A persister stand-in: pops, records, and confirms (requeueing every `requeue_every`-th
/// batch once, to exercise the failure path) until `stop` and the cache is empty.
fn persister(
    c: Arc<Cache>,
    seen: Seen,
    stop: Arc<AtomicBool>,
    requeue_every: usize,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut n = 0usize;
        loop {
            match c.pop_wait(Duration::from_millis(20)) {
                Some(b) => {
                    assert!(
                        b.points.windows(2).all(|w| w[0].timestamp < w[1].timestamp),
                        "batch not normalised"
                    );
                    n += 1;
                    if requeue_every > 0 && n.is_multiple_of(requeue_every) {
                        // Alternate plain retries with throttled ones.
                        let retry = n
                            .is_multiple_of(2 * requeue_every)
                            .then(|| Instant::now() + Duration::from_millis(3));
                        c.requeue(b, retry);
                        continue;
                    }
                    {
                        let mut s = seen.lock().unwrap();
                        s.extend(b.points.iter().map(|p| (b.name.to_string(), *p)));
                    }
                    c.confirm(b);
                }
                None => {
                    if stop.load(Ordering::SeqCst) && c.size() == 0 {
                        return;
                    }
                }
            }
        }
    })
}

#[test]
fn every_point_confirmed_exactly_once() {
    const ADDERS: i64 = 8;
    const PER_THREAD: i64 = 4000;
    let c = Arc::new(Cache::new(CacheOptions {
        max_size: 0,
        shards: 64,
        ..CacheOptions::default()
    }));
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let persisters: Vec<_> = (0..2)
        .map(|_| persister(c.clone(), seen.clone(), stop.clone(), 7))
        .collect();
    let adders: Vec<_> = (0..ADDERS)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let ts = t * 1_000_000 + i; // unique per point, so duplicates are detectable
                    let name = if i % 2 == 0 {
                        format!("own.t{t}.m{}", i % 50)
                    } else {
                        format!("shared.m{}", i % 20)
                    };
                    assert_eq!(
                        c.add(&name, Point::new(ts, ts as f64)).unwrap(),
                        AddOutcome::Added
                    );
                }
            })
        })
        .collect();
    for a in adders {
        a.join().unwrap();
    }
    let seq = c.seq();
    assert_eq!(seq, (ADDERS * PER_THREAD) as u64);
    assert!(
        c.wait_persisted(seq, Some(Duration::from_secs(30))),
        "flush timed out: {:?}",
        c.stats()
    );
    stop.store(true, Ordering::SeqCst);
    for p in persisters {
        p.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.len() as i64,
        ADDERS * PER_THREAD,
        "lost or duplicated points"
    );
    let mut keys = HashSet::new();
    for (name, p) in seen.iter() {
        assert_eq!(p.value, p.timestamp as f64);
        let (t, i) = (p.timestamp / 1_000_000, p.timestamp % 1_000_000);
        let expect = if i % 2 == 0 {
            format!("own.t{t}.m{}", i % 50)
        } else {
            format!("shared.m{}", i % 20)
        };
        assert_eq!(name, &expect, "point under the wrong metric");
        assert!(keys.insert(p.timestamp), "duplicate {name} {}", p.timestamp);
    }
    let s = c.stats();
    assert_eq!(
        (s.size, s.metrics, s.not_confirmed, s.overflow),
        (0, 0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn flush_under_load_covers_every_earlier_point() {
    let c = Arc::new(Cache::new(CacheOptions {
        max_size: 0,
        shards: 32,
        ..CacheOptions::default()
    }));
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let persisters: Vec<_> = (0..2)
        .map(|_| persister(c.clone(), seen.clone(), stop.clone(), 5))
        .collect();
    let noise_stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let (c, noise_stop) = (c.clone(), noise_stop.clone());
        thread::spawn(move || {
            let mut i = 0i64;
            while !noise_stop.load(Ordering::SeqCst) {
                c.add(&format!("noise.{}", i % 100), Point::new(i, 0.0))
                    .unwrap();
                i += 1;
                if i % 64 == 0 {
                    thread::yield_now();
                }
            }
        })
    };
    for round in 0..5i64 {
        for i in 0..200 {
            c.add(
                &format!("mark.{}", i % 30),
                Point::new(round * 1000 + i, 1.0),
            )
            .unwrap();
        }
        let t = Instant::now();
        assert!(
            c.wait_persisted(c.seq(), Some(Duration::from_secs(20))),
            "round {round}: {:?}",
            c.stats()
        );
        let marks: HashSet<i64> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n.starts_with("mark."))
            .map(|(_, p)| p.timestamp)
            .collect();
        for i in 0..200 {
            assert!(
                marks.contains(&(round * 1000 + i)),
                "round {round}: mark {i} not persisted"
            );
        }
        eprintln!("flush round {round}: {:?}", t.elapsed());
    }
    noise_stop.store(true, Ordering::SeqCst);
    noise.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    for p in persisters {
        p.join().unwrap();
    }
}

#[test]
fn block_overflow_never_exceeds_max_size() {
    const MAX: usize = 50;
    let c = Arc::new(Cache::new(CacheOptions {
        max_size: MAX,
        overflow: Overflow::Block(Duration::from_secs(20)),
        write_strategy: WriteStrategy::Sorted,
        shards: 8,
    }));
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (c, stop, peak) = (c.clone(), stop.clone(), peak.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(c.size(), Ordering::SeqCst);
                thread::yield_now();
            }
        })
    };
    let persisters: Vec<_> = (0..2)
        .map(|_| persister(c.clone(), seen.clone(), stop.clone(), 0))
        .collect();
    let adders: Vec<_> = (0..4i64)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                for i in 0..1000i64 {
                    let r = c.add(&format!("m{}", i % 13), Point::new(t * 10_000 + i, 1.0));
                    assert_eq!(r.unwrap(), AddOutcome::Added);
                }
            })
        })
        .collect();
    for a in adders {
        a.join().unwrap();
    }
    assert!(c.wait_persisted(c.seq(), Some(Duration::from_secs(20))));
    stop.store(true, Ordering::SeqCst);
    for p in persisters {
        p.join().unwrap();
    }
    watcher.join().unwrap();
    assert!(
        peak.load(Ordering::SeqCst) <= MAX,
        "size reached {}",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(seen.lock().unwrap().len(), 4000);
    assert_eq!(c.stats().overflow, 0);
}

#[test]
fn drop_overflow_counts_every_refused_point() {
    let c = Arc::new(Cache::new(CacheOptions {
        max_size: 100,
        overflow: Overflow::Drop,
        shards: 4,
        ..CacheOptions::default()
    }));
    let counts: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                let mut added = 0u64;
                for i in 0..500 {
                    if c.add(&format!("m{t}.{}", i % 7), Point::new(i, 1.0))
                        .unwrap()
                        == AddOutcome::Added
                    {
                        added += 1;
                    }
                }
                added
            })
        })
        .collect();
    let added: u64 = counts.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(added, 100, "exactly max_size points accepted");
    assert_eq!(c.size(), 100);
    assert_eq!(c.stats().overflow, 1900);
}

#[test]
fn get_sees_points_while_in_flight_under_concurrency() {
    let c = Arc::new(Cache::new(CacheOptions {
        max_size: 0,
        shards: 4,
        ..CacheOptions::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let slow_persister = {
        let (c, stop) = (c.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(b) = c.pop_wait(Duration::from_millis(5)) {
                    thread::sleep(Duration::from_micros(200)); // "writing"
                    c.confirm(b);
                }
            }
        })
    };
    // Each reader sees, for every timestamp it wrote, either its own latest value or nothing
    // (already confirmed); never a stale older value.
    let mut last: HashMap<i64, f64> = HashMap::new();
    for round in 0..300i64 {
        let ts = round % 10;
        let v = round as f64;
        c.add("x", Point::new(ts, v)).unwrap();
        last.insert(ts, v);
        if let Some(points) = c.get("x") {
            assert!(points.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
            for p in points {
                assert_eq!(
                    p.value, last[&p.timestamp],
                    "stale value at {}",
                    p.timestamp
                );
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    slow_persister.join().unwrap();
}

/// Throughput sanity check: `cargo test --release --test cache -- --ignored --nocapture`.
#[test]
#[ignore]
fn add_throughput() {
    let names: Vec<String> = (0..100_000)
        .map(|i| format!("carbon.agents.host{:03}.metric{i:06}", i % 100))
        .collect();
    let c = Cache::new(CacheOptions {
        max_size: 0,
        ..CacheOptions::default()
    });
    let t = Instant::now();
    for round in 0..10i64 {
        for n in &names {
            c.add(n, Point::new(round, 1.0)).unwrap();
        }
    }
    let el = t.elapsed();
    eprintln!("add: {:.1} ns/point", el.as_nanos() as f64 / 1e6);
    let t = Instant::now();
    let mut batches = 0;
    while let Some(b) = c.pop() {
        batches += 1;
        c.confirm(b);
    }
    eprintln!(
        "pop+confirm: {:.1} ns/batch ({batches} batches)",
        t.elapsed().as_nanos() as f64 / batches as f64
    );
    let t = Instant::now();
    for round in 0..10i64 {
        for n in &names {
            c.add(n, Point::new(round, 1.0)).unwrap();
        }
    }
    eprintln!(
        "add (metrics known): {:.1} ns/point",
        t.elapsed().as_nanos() as f64 / 1e6
    );
    drop(c);
    // Working set in cache: 1000 metrics.
    let c = Cache::new(CacheOptions {
        max_size: 0,
        ..CacheOptions::default()
    });
    let t = Instant::now();
    for round in 0..1000i64 {
        for n in &names[..1000] {
            c.add(n, Point::new(round, 1.0)).unwrap();
        }
    }
    eprintln!(
        "add (1000 metrics): {:.1} ns/point",
        t.elapsed().as_nanos() as f64 / 1e6
    );
}

/// Steady state with a small working set: 1000 metrics, 10 points each, then drained.
#[test]
#[ignore]
fn add_throughput_small() {
    let names: Vec<String> = (0..1000)
        .map(|i| format!("carbon.agents.host{:03}.metric{i:06}", i % 100))
        .collect();
    let c = Cache::new(CacheOptions {
        max_size: 0,
        ..CacheOptions::default()
    });
    let mut spent = Duration::ZERO;
    for _ in 0..100 {
        let t = Instant::now();
        for round in 0..10i64 {
            for n in &names[..1000] {
                c.add(n, Point::new(round, 1.0)).unwrap();
            }
        }
        spent += t.elapsed();
        c.drain_all();
    }
    eprintln!(
        "add (1000 metrics, drained): {:.1} ns/point",
        spent.as_nanos() as f64 / 1e6
    );
}

/// `Carbon::add_lines` batches points into the cache; across batch boundaries, names the
/// policy rewrites or whose tags need sorting (renamed, and batched under their new name)
/// and bad lines, the newest write of a timestamp must still win and every outcome must
/// follow line order.
#[test]
fn add_lines_batches_keep_line_order() {
    line_order_holds(20_000, "");
}

/// The same past the bytes of renamed names one call batches (1 MiB): later renamed
/// names go one by one, with the same outcome.
#[test]
fn add_lines_keep_line_order_past_the_renamed_names_arena() {
    line_order_holds(42_000, &format!("{}.", "p".repeat(200)));
}

/// Adds `lines` lines of one clean and one sanitised spelling of `s.<pad>x`, an unsorted
/// and a sorted spelling of one tagged series, 50 other metrics and a few bad lines, over
/// the same 30 timestamps; then checks that each timestamp holds its last line's value.
fn line_order_holds(lines: i64, pad: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = carbonlite::config::Config::embedded(dir.path())
        .apply_toml("[whisper]\nenabled = false\n[cache]\nmax-size = 0\n[common]\nname-policy = \"sanitize\"\n", "<test>")
        .unwrap();
    let c = carbonlite::engine::Carbon::open(cfg).unwrap();
    let now = carbonlite::points::unix_now() / 60 * 60;
    let mut buf = String::new();
    let bad = |i: i64| i % 5000 == 2;
    let mut renamed_bytes = 0;
    for i in 0..lines {
        // Same 30 timestamps over and over: the last line of each wins.
        let ts = now - 60 * (i % 30);
        if bad(i) {
            buf.push_str("bad line\n");
            continue;
        }
        match i % 7 {
            // A clean name: goes through the batch.
            0 => buf.push_str(&format!("s.{pad}x {i} {ts}\n")),
            // Same series after sanitising.
            1 => {
                buf.push_str(&format!("s..{pad}x {i} {ts}\n"));
                renamed_bytes += pad.len() + 3;
            }
            // One tagged series, tags out of order (normalised) and in order.
            2 => buf.push_str(&format!("t;b=1;a=2 {i} {ts}\n")),
            3 => buf.push_str(&format!("t;a=2;b=1 {i} {ts}\n")),
            _ => buf.push_str(&format!("m.{} {i} {ts}\n", i % 50)),
        }
    }
    let bad_lines = (0..lines).filter(|&i| bad(i)).count() as u64;
    let r = c.add_lines(buf.as_bytes());
    assert_eq!(r.rejected, bad_lines, "{:?}", r.first_error);
    assert_eq!(r.accepted, lines as u64 - bad_lines);
    assert!(r.first_error.unwrap().to_string().contains("bad line"));
    assert_eq!(c.stats().cache_size, r.accepted);
    if !pad.is_empty() {
        assert!(
            renamed_bytes > 1 << 20,
            "{renamed_bytes}: the arena's limit is not reached"
        );
    }
    let newest = |want: &dyn Fn(i64) -> bool| {
        let mut last = std::collections::HashMap::new();
        for i in 0..lines {
            if want(i) && !bad(i) {
                last.insert(now - 60 * (i % 30), i as f64);
            }
        }
        last
    };
    let check = |metric: &str, want: std::collections::HashMap<i64, f64>| {
        let s = c.fetch_at(metric, now - 3600, Some(now + 60), now).unwrap();
        for (ts, v) in want {
            let slot = ((ts - s.from) / s.step) as usize;
            assert_eq!(s.values[slot], v, "{metric} at {ts}");
        }
    };
    check(&format!("s.{pad}x"), newest(&|i| i % 7 <= 1));
    check("t;a=2;b=1", newest(&|i| i % 7 == 2 || i % 7 == 3));
    check("m.3", newest(&|i| i % 7 > 3 && i % 50 == 3));
}
