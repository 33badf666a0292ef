//! Memory per cached point, measured with a counting global allocator: the cache must stay
//! cheap at go-carbon's default `max-size` (1M points), here spread over 100k metrics.
//! Not timed; run with `--nocapture` to see the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use carbonlite::Point;
use carbonlite::cache::{Cache, CacheOptions};

/// Bytes currently allocated through the global allocator (requested sizes).
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees carry over; the counter update has no effect on the allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (via `alloc`/`realloc` above) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours, forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours, forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn bytes_per_point_at_one_million_points() {
    const METRICS: usize = 100_000;
    const ROUNDS: i64 = 10;
    let names: Vec<String> = (0..METRICS)
        .map(|i| format!("servers.host{:04}.cpu.metric{i:06}", i % 1000))
        .collect();
    let before = LIVE.load(Ordering::SeqCst);
    let cache = Cache::new(CacheOptions::default());
    // Round-robin, as real traffic arrives: one point per metric per interval.
    for t in 0..ROUNDS {
        for n in &names {
            cache
                .add(n, Point::new(1_700_000_000 + t * 60, t as f64))
                .expect("below max_size");
        }
    }
    let used = LIVE.load(Ordering::SeqCst) - before;
    let points = METRICS as i64 * ROUNDS;
    assert_eq!(cache.size() as i64, points);
    let per_point = used as f64 / points as f64;
    eprintln!(
        "cache memory: {used} bytes for {points} points over {METRICS} metrics = {per_point:.1} B/point \
         (name {} B)",
        names[0].len()
    );
    // 33 B before inline names; must not get worse.
    assert!(per_point < 33.0, "{per_point:.1} bytes per point");
    // Sanity: the measurement sees the points at all.
    assert!(
        per_point >= 16.0,
        "{per_point:.1} bytes per point is below sizeof(Point)"
    );
    drop(cache);
}
