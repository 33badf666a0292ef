//! The in-memory cache between receivers and persisters (go-carbon `cache/`).
//!
//! Points are added from many threads, held per metric in one of N mutex-protected shards,
//! taken by persister threads in write-strategy order ([`Cache::pop_wait`]), and forgotten only
//! when the persister confirms they are in their whisper file ([`Cache::confirm`]). Until then
//! they stay readable ([`Cache::get`]), so a read never misses a point that is between the
//! cache and the disk (go-carbon's `notConfirmed`).
//!
//! Invariants:
//! - `size` = points queued + points in flight, exactly; it is reserved *before* the shard lock
//!   is taken, so `max_size` holds across threads and a blocked adder never holds a lock.
//! - At most one batch per metric is in flight, so two persisters never write the same file
//!   with the older batch landing last.
//! - No two shard locks are ever held at once, and no waiting or I/O happens under one.
//!   Lock order, where two are nested: flush lock → shard lock.
//! - Flush: every queued run or flight carries the *flush generation* current when its oldest
//!   point arrived. [`Cache::wait_persisted`] advances the generation and waits until no shard
//!   holds a tag of the old one (see `shard::Generations`), so its cost is one lock per shard
//!   plus one per wake-up, never a scan of all points. It is woken only when some shard's
//!   oldest generation moves on, not on every confirmed batch.
//! - Wake-ups use `Condvar`s with a waiter count checked after the state change (SeqCst on
//!   both sides), so the hot path pays nothing when nobody waits, and no wake-up is lost.

#[allow(unsafe_code)] // a prefetch hint, nothing else: see its docs
mod prefetch;
mod shard;
mod writeout;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::points::Point;
use shard::{Key, Shard, Slot, hash_name, normalize, shard_index};
pub use writeout::WriteStrategy;
use writeout::{Next, Writeout};

/// What [`Cache::add`] does when the cache holds `max_size` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the point with [`Error::Full`], so the caller can push back on its sender.
    Error,
    /// Wait up to the duration for persisters to free room, then refuse as `Error` does.
    Block(Duration),
    /// Drop the point and count it (go-carbon's behaviour), answering [`AddOutcome::Dropped`].
    Drop,
}

/// Cache settings; `Default` is go-carbon's `[cache]` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// Most points held (queued + in flight); 0 = unlimited. Bounds memory when the disk
    /// cannot keep up.
    pub max_size: usize,
    /// Order in which persisters take metrics.
    pub write_strategy: WriteStrategy,
    /// What to do with points that do not fit.
    pub overflow: Overflow,
    /// Number of shards (rounded up to a power of two): more shards, less lock contention.
    pub shards: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            max_size: 1_000_000,
            write_strategy: WriteStrategy::Max,
            overflow: Overflow::Error,
            shards: 1024,
        }
    }
}

/// One metric's points handed to a persister. Give it back with [`Cache::confirm`] once the
/// points are in the file, or [`Cache::requeue`] if they are not; until then the cache keeps
/// the points readable and counted. Not `Clone`: each batch is confirmed at most once.
#[derive(Debug)]
pub struct Batch {
    /// The metric name (shared with the cache, no copy).
    pub name: Arc<str>,
    /// Sorted by timestamp ascending, one per timestamp, the newest write kept.
    pub points: Vec<Point>,
    /// Which flight of the metric this is (0 = from `drain_all`, matches none).
    ticket: u64,
    /// `hash_name(name)`, so confirming does not hash again.
    hash: u64,
}

/// Points gathered for [`Cache::add_batch`]. Each name is hashed as it is pushed, while its
/// bytes are still in the CPU cache, and that one hash picks both the shard and the bucket.
#[derive(Default)]
pub struct AddBatch<'a> {
    items: Vec<BatchItem<'a>>,
    /// Scratch of `add_batch`: `shard << 32 | index` per item, sorted to group by shard.
    order: Vec<u64>,
    /// More scratch for the counting sort of `order`.
    scratch: Vec<u64>,
    counts: Vec<u32>,
}

/// How many points ahead `Cache::add_batch` prefetches within a shard's run: vector tails
/// this far ahead, entries twice this far.
const AHEAD: usize = 8;

/// Sorts `order` (`shard << 32 | index`, indices ascending) by shard, stable, in O(n + shards):
/// a quarter of the cost of `sort_unstable` for a batch of a few points per shard.
fn counting_sort(
    order: &mut Vec<u64>,
    scratch: &mut Vec<u64>,
    counts: &mut Vec<u32>,
    shards: usize,
) {
    counts.clear();
    counts.resize(shards + 1, 0);
    for &o in order.iter() {
        counts[(o >> 32) as usize + 1] += 1;
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    // Every slot below `order.len()` is written below, so only new room needs a value:
    // zeroing the whole scratch cost a memset of 8 bytes per point.
    if scratch.len() < order.len() {
        scratch.resize(order.len(), 0);
    }
    scratch.truncate(order.len());
    for &o in order.iter() {
        let slot = &mut counts[(o >> 32) as usize];
        scratch[*slot as usize] = o;
        *slot += 1;
    }
    std::mem::swap(order, scratch);
}

struct BatchItem<'a> {
    hash: u64,
    name: &'a str,
    point: Point,
}

impl<'a> AddBatch<'a> {
    /// An empty batch with room for `n` points without reallocating.
    pub fn with_capacity(n: usize) -> Self {
        AddBatch {
            items: Vec::with_capacity(n),
            order: Vec::with_capacity(n),
            scratch: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Appends one point of `name` (the cache key, already canonical).
    #[inline]
    pub fn push(&mut self, name: &'a str, point: Point) {
        self.items.push(BatchItem {
            hash: hash_name(name.as_bytes()),
            name,
            point,
        });
    }

    /// Points in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch holds no point.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// The points from index `from` on, in push order: after [`Cache::add_batch`] returned
    /// `from`, the ones it did not add.
    pub fn rest(&self, from: usize) -> impl Iterator<Item = (&'a str, Point)> + '_ {
        self.items
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|i| (i.name, i.point))
    }
}

impl std::fmt::Debug for AddBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddBatch")
            .field("len", &self.items.len())
            .finish()
    }
}

/// Why the cache refuses `p`: whisper stores u32 timestamps.
#[cold]
fn out_of_range(p: Point) -> Error {
    Error::invalid(format!(
        "timestamp {} is outside whisper's range 0..=4294967295",
        p.timestamp
    ))
}

/// Result of a successful [`Cache::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// The point is cached.
    Added,
    /// The cache was full under [`Overflow::Drop`]; the point is counted in `overflow`.
    Dropped,
}

/// Cache counters, named after go-carbon's `cache.*` self-metrics. Counters are cumulative
/// since creation (the stats module computes per-interval deltas); gauges are current values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Gauge: points queued + in flight (`cache.size`).
    pub size: u64,
    /// Gauge: metrics with cached points (`cache.metrics`).
    pub metrics: u64,
    /// Gauge: batches taken by persisters and not yet confirmed (`cache.notConfirmed`).
    pub not_confirmed: u64,
    /// The configured limit (`cache.maxSize`), 0 = unlimited.
    pub max_size: u64,
    /// Points refused or dropped because the cache was full (`cache.overflow`).
    pub overflow: u64,
    /// Write-out queue builds (`cache.queueBuildCount`).
    pub queue_build_count: u64,
    /// Milliseconds spent building the write-out queue (`cache.queueBuildTimeMs`).
    pub queue_build_time_ms: u64,
    /// Gauge: seconds between the last two queue builds, i.e. one full write-out cycle
    /// (`cache.queueWriteoutTime`).
    pub queue_writeout_time: u64,
}

/// Threads waiting on a condition, with a count so notifiers can skip the lock when there are none.
#[derive(Default)]
struct Waiters {
    lock: Mutex<()>,
    cv: Condvar,
    count: AtomicUsize,
}

impl Waiters {
    /// Wakes every waiter. Must be called *after* the state change it announces.
    fn notify(&self) {
        if self.count.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock();
            self.cv.notify_all();
        }
    }
}

/// Waits on `cv` until `deadline` (None = forever); true if the deadline passed.
fn wait(
    cv: &Condvar,
    guard: &mut parking_lot::MutexGuard<'_, ()>,
    deadline: Option<Instant>,
) -> bool {
    match deadline {
        Some(d) => cv.wait_until(guard, d).timed_out(),
        None => {
            cv.wait(guard);
            false
        }
    }
}

#[derive(Default)]
struct Counters {
    overflow: AtomicU64,
    build_count: AtomicU64,
    build_time_us: AtomicU64,
    writeout_time_s: AtomicU64,
}

/// The sharded point cache; share it as `Arc<Cache>`, every method takes `&self`.
pub struct Cache {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    mask: usize,
    max_size: usize,
    strategy: WriteStrategy,
    overflow: Overflow,
    /// Points queued + in flight.
    size: CachePadded<AtomicUsize>,
    /// Current flush generation (read under shard locks on every add, written per flush).
    generation: CachePadded<AtomicU64>,
    /// Some metric became poppable since the last snapshot build started.
    pending: CachePadded<AtomicBool>,
    writeout: Mutex<Writeout<Key>>,
    /// Bumped on every event a popper might wait for; closes the check-then-wait race.
    wakes: AtomicU64,
    /// Persisters in `pop_wait`.
    poppers: Waiters,
    /// Callers of `wait_persisted`.
    flushers: Waiters,
    /// Adders blocked on a full cache.
    adders: Waiters,
    counters: Counters,
}

impl Cache {
    /// A cache with `opts`; `opts.shards` is rounded up to a power of two (at least 1).
    pub fn new(opts: CacheOptions) -> Cache {
        let n = opts.shards.clamp(1, 1 << 20).next_power_of_two();
        let shards = (0..n)
            .map(|_| CachePadded::new(Mutex::new(Shard::default())))
            .collect();
        Cache {
            shards,
            mask: n - 1,
            max_size: opts.max_size,
            strategy: opts.write_strategy,
            overflow: opts.overflow,
            size: CachePadded::new(AtomicUsize::new(0)),
            generation: CachePadded::new(AtomicU64::new(0)),
            pending: CachePadded::new(AtomicBool::new(false)),
            writeout: Mutex::new(Writeout::default()),
            wakes: AtomicU64::new(0),
            poppers: Waiters::default(),
            flushers: Waiters::default(),
            adders: Waiters::default(),
            counters: Counters::default(),
        }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[shard_index(hash, self.mask)]
    }

    /// Caches one point of `name`. Under [`Overflow::Error`] (and `Block` after its timeout) a
    /// full cache answers `Error::Full { accepted: 0, refused: 1 }`; under `Drop` it answers
    /// `Ok(Dropped)`. Either way the point is counted in `overflow`.
    ///
    /// A timestamp outside whisper's u32 range is refused with `Error::Invalid` (whisper
    /// could never store it; the parsers refuse it too), without touching the cache.
    #[inline]
    pub fn add(&self, name: &str, p: Point) -> Result<AddOutcome> {
        let slot = Slot::new(p).ok_or_else(|| out_of_range(p))?;
        if !self.try_reserve() {
            let room = match self.overflow {
                Overflow::Block(d) => self.reserve_blocking(d),
                Overflow::Error | Overflow::Drop => false,
            };
            if !room {
                self.counters.overflow.fetch_add(1, Ordering::Relaxed);
                return match self.overflow {
                    Overflow::Drop => Ok(AddOutcome::Dropped),
                    _ => Err(Error::Full {
                        accepted: 0,
                        refused: 1,
                    }),
                };
            }
        }
        self.insert_reserved(hash_name(name.as_bytes()), name, slot);
        Ok(AddOutcome::Added)
    }

    /// `add` for receivers that must not refuse what they already read off a socket: a full
    /// cache makes the caller wait up to `timeout` for room whatever the overflow policy, so
    /// back-pressure reaches the sender. `Error::Full` after the timeout is not counted as
    /// overflow (the caller retries; nothing was lost).
    pub fn add_waiting(&self, name: &str, p: Point, timeout: Duration) -> Result<AddOutcome> {
        let slot = Slot::new(p).ok_or_else(|| out_of_range(p))?;
        if !self.try_reserve() && !self.reserve_blocking(timeout) {
            return Err(Error::Full {
                accepted: 0,
                refused: 1,
            });
        }
        self.insert_reserved(hash_name(name.as_bytes()), name, slot);
        Ok(AddOutcome::Added)
    }

    /// Adds the batch's points as [`Cache::add`] on each in push order would, as far as
    /// `max_size` allows without waiting, and returns how many leading points were added. The
    /// rest are untouched and not counted as overflow: the caller passes them to `add` (which
    /// applies the overflow policy) or refuses them. The batch is not cleared. A point `add`
    /// would refuse for its timestamp ends the added prefix too, so `add` says why.
    ///
    /// Faster than `add` per point: room is reserved once, and points are inserted shard by
    /// shard with one lock each, so the table lookups of a shard's points overlap in memory
    /// instead of each waiting out its cache misses behind a lock's fence.
    pub fn add_batch(&self, batch: &mut AddBatch<'_>) -> usize {
        let valid = batch
            .items
            .iter()
            .position(|it| Slot::new(it.point).is_none())
            .unwrap_or(batch.items.len());
        let n = self.try_reserve_n(valid);
        if n == 0 {
            return 0;
        }
        let items = &batch.items[..n];
        let order = &mut batch.order;
        order.clear();
        // Index in the low bits keeps push order within a shard (last write wins).
        order.extend(
            items
                .iter()
                .enumerate()
                .map(|(i, it)| ((shard_index(it.hash, self.mask) as u64) << 32) | i as u64),
        );
        if self.shards.len() <= 2 * n {
            counting_sort(
                order,
                &mut batch.scratch,
                &mut batch.counts,
                self.shards.len(),
            );
        } else {
            order.sort_unstable();
        }
        let mut poppable = false;
        // Names are the input's bytes, which need no lock: their prefetches run AHEAD points
        // ahead across shard runs, where the entries' can only start once a run's lock is
        // held. Started per run, the first AHEAD names of each (half of a run of the usual
        // 16 points) were waited for in full.
        let item = |o: u64| &items[(o & u64::from(u32::MAX)) as usize];
        for &o in order.iter().take(AHEAD) {
            prefetch::prefetch(item(o).name.as_ptr());
        }
        let mut rest = &order[..];
        while let Some(&first) = rest.first() {
            let shard_no = first >> 32;
            let run = rest
                .iter()
                .position(|&o| o >> 32 != shard_no)
                .unwrap_or(rest.len());
            let at = |j: usize| item(rest[j]);
            if let Some(&next) = rest.get(run) {
                // The next run's lock word and table header: the one part of another shard
                // this may touch before holding its lock (a hint reads nothing).
                let p = std::ptr::from_ref(&self.shards[(next >> 32) as usize]).cast::<u8>();
                for off in (0..std::mem::size_of::<CachePadded<Mutex<Shard>>>()).step_by(64) {
                    prefetch::prefetch(p.wrapping_add(off));
                }
            }
            let mut shard = self.shards[shard_no as usize].lock();
            // Read under the shard lock: see `wait_persisted`.
            let generation = self.generation.load(Ordering::Relaxed);
            // Software pipeline: the entry of point j + 2·AHEAD, and the vector tail and name
            // of point j + AHEAD, start loading while point j is added, so the run's cache
            // misses overlap instead of each `add` waiting out its own.
            for j in 0..run.min(2 * AHEAD) {
                shard.prefetch_entry(at(j).hash);
            }
            for j in 0..run {
                if j + 2 * AHEAD < run {
                    shard.prefetch_entry(at(j + 2 * AHEAD).hash);
                }
                if j + AHEAD < run {
                    shard.prefetch_tail(at(j + AHEAD).hash);
                }
                // The name `add` compares with the entry's: input that parsing read a chunk
                // ago, often out of L2 by now (points go in shard order). Both ends, as a
                // name of 20-40 bytes often straddles two cache lines.
                // `rest` runs on past this run, to the end of the batch.
                if let Some(&o) = rest.get(j + AHEAD) {
                    let name = item(o).name;
                    prefetch::prefetch(name.as_ptr());
                    prefetch::prefetch(name.as_ptr().wrapping_add(name.len().saturating_sub(1)));
                }
                let it = at(j);
                // In the valid prefix: `clamped` is exact here.
                poppable |= shard.add(it.hash, it.name, Slot::clamped(it.point), generation);
            }
            drop(shard);
            rest = &rest[run..];
        }
        if poppable {
            self.mark_pending();
        }
        n
    }

    /// Inserts a point whose room is already reserved.
    #[inline]
    fn insert_reserved(&self, hash: u64, name: &str, p: Slot) {
        let poppable = {
            let mut shard = self.shard(hash).lock();
            // Read under the shard lock: see `wait_persisted`.
            let generation = self.generation.load(Ordering::Relaxed);
            shard.add(hash, name, p, generation)
        };
        if poppable {
            self.mark_pending();
        }
    }

    /// Takes room for one point if `max_size` allows; exact under concurrency (CAS loop).
    #[inline]
    fn try_reserve(&self) -> bool {
        if self.max_size == 0 {
            self.size.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        let mut cur = self.size.load(Ordering::SeqCst);
        loop {
            if cur >= self.max_size {
                return false;
            }
            match self
                .size
                .compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes room for up to `n` points, as many as `max_size` allows; exact under concurrency.
    fn try_reserve_n(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        if self.max_size == 0 {
            self.size.fetch_add(n, Ordering::SeqCst);
            return n;
        }
        let mut cur = self.size.load(Ordering::SeqCst);
        loop {
            let take = self.max_size.saturating_sub(cur).min(n);
            if take == 0 {
                return 0;
            }
            match self.size.compare_exchange_weak(
                cur,
                cur + take,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return take,
                Err(actual) => cur = actual,
            }
        }
    }

    /// `try_reserve`, waiting up to `timeout` for a confirm to free room.
    fn reserve_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        self.adders.count.fetch_add(1, Ordering::SeqCst);
        self.wake_poppers(); // they may be pausing before a rebuild: hurry them
        let mut guard = self.adders.lock.lock();
        let mut timed_out = false;
        let ok = loop {
            if self.try_reserve() {
                break true;
            }
            if timed_out {
                break false;
            }
            timed_out = wait(&self.adders.cv, &mut guard, deadline);
        };
        self.adders.count.fetch_sub(1, Ordering::SeqCst);
        ok
    }

    /// Gives back `n` points of room and wakes blocked adders and flushers.
    fn release(&self, n: usize) {
        if n > 0 {
            self.size.fetch_sub(n, Ordering::SeqCst);
            self.adders.notify();
        }
    }

    /// Records that some metric became poppable, waking persisters if it is news.
    #[inline]
    fn mark_pending(&self) {
        if !self.pending.load(Ordering::SeqCst) {
            self.pending.store(true, Ordering::SeqCst);
            self.wake_poppers();
        }
    }

    fn wake_poppers(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.poppers.notify();
    }

    /// Every cached point of `name` (queued, and in flight until confirmed), sorted by
    /// timestamp, one per timestamp with the newest write winning; None if nothing is cached.
    pub fn get(&self, name: &str) -> Option<Vec<Point>> {
        let hash = hash_name(name.as_bytes());
        let raw = self.shard(hash).lock().get_raw(hash, name)?;
        Some(normalize(raw))
    }

    /// Takes the next metric in write-strategy order and moves its points in flight; None if
    /// nothing may be written right now (empty, all in flight or waiting for a retry, or the
    /// queue was rebuilt less than 100 ms ago — see [`Cache::pop_wait`]).
    pub fn pop(&self) -> Option<Batch> {
        self.try_pop().ok()
    }

    /// `pop`, or when to try again (None: after a wake-up).
    fn try_pop(&self) -> std::result::Result<Batch, Option<Instant>> {
        loop {
            let now = Instant::now();
            let hurry = self.in_a_hurry();
            let pending = self.pending.load(Ordering::SeqCst);
            let next = self.writeout.lock().next(pending, hurry, now);
            match next {
                Next::Name(key) => {
                    let taken = self.shard(key.hash).lock().pop(&key, now);
                    if let Some((raw, ticket)) = taken {
                        return Ok(Batch {
                            name: key.name.to_arc(),
                            points: normalize(raw),
                            ticket,
                            hash: key.hash,
                        });
                    }
                }
                Next::Build => self.build(now),
                Next::Wait(at) => return Err(at),
            }
        }
    }

    /// Whether persisters should skip the 100 ms rebuild pause: a flush is waiting, or the
    /// cache is full (adders are blocked or losing points, so batching more is pointless).
    fn in_a_hurry(&self) -> bool {
        self.flushers.count.load(Ordering::SeqCst) > 0
            || self.adders.count.load(Ordering::SeqCst) > 0
            || (self.max_size > 0 && self.size.load(Ordering::SeqCst) >= self.max_size)
    }

    /// Builds the next write-out snapshot (the caller owns `Writeout::building`).
    fn build(&self, now: Instant) {
        // Anything that becomes poppable from here on may be missed by the scan: keep it pending.
        self.pending.store(false, Ordering::SeqCst);
        let start = Instant::now();
        let mut items = Vec::new();
        let mut next_retry = None;
        for shard in self.shards.iter() {
            shard
                .lock()
                .collect(self.strategy, now, &mut items, &mut next_retry);
        }
        self.strategy.order(&mut items);
        let names: VecDeque<Key> = items.into_iter().map(|(_, key)| key).collect();
        let end = Instant::now();
        let cycle = self.writeout.lock().install(names, next_retry, end);
        let c = &self.counters;
        c.build_count.fetch_add(1, Ordering::Relaxed);
        c.build_time_us.fetch_add(
            end.saturating_duration_since(start).as_micros() as u64,
            Ordering::Relaxed,
        );
        if let Some(s) = cycle {
            c.writeout_time_s.store(s, Ordering::Relaxed);
        }
        self.wake_poppers();
    }

    /// `pop`, waiting up to `timeout` for a metric to become writable. Like go-carbon, a
    /// drained queue is rebuilt at most every 100 ms while points keep arriving, so that
    /// each file update carries more points; a pending [`Cache::wait_persisted`] or a full
    /// cache lifts that limit. Persister threads loop on this.
    pub fn pop_wait(&self, timeout: Duration) -> Option<Batch> {
        let deadline = Instant::now().checked_add(timeout);
        let mut timed_out = false;
        self.poppers.count.fetch_add(1, Ordering::SeqCst);
        let out = loop {
            let seen = self.wakes.load(Ordering::SeqCst);
            let retry_at = match self.try_pop() {
                Ok(b) => break Some(b),
                Err(at) => at,
            };
            if timed_out {
                break None;
            }
            let until = match (retry_at, deadline) {
                (Some(a), Some(d)) => Some(a.min(d)),
                (a, d) => a.or(d),
            };
            let mut guard = self.poppers.lock.lock();
            if self.wakes.load(Ordering::SeqCst) == seen {
                let expired = wait(&self.poppers.cv, &mut guard, until);
                timed_out = expired && until == deadline;
            }
            timed_out |= deadline.is_some_and(|d| Instant::now() >= d);
        };
        self.poppers.count.fetch_sub(1, Ordering::SeqCst);
        out
    }

    /// The batch's points are in their whisper file: forget them, free their room, and wake
    /// blocked adders and flush waiters. A stale batch (after `drain_all`) is ignored.
    pub fn confirm(&self, batch: Batch) {
        let released = self
            .shard(batch.hash)
            .lock()
            .confirm(batch.hash, &batch.name, batch.ticket);
        if let Some(r) = released {
            self.release(r.freed);
            if r.poppable {
                self.mark_pending();
            }
            if r.oldest_advanced {
                self.flushers.notify();
            }
        }
    }

    /// The batch could not be written (I/O error, create throttled): its points go back in
    /// front of anything queued since, so newer writes of the same timestamp still win, and
    /// the metric is not popped again before `retry_after`. The batch may have been trimmed by
    /// the persister; the cache counts what comes back.
    pub fn requeue(&self, batch: Batch, retry_after: Option<Instant>) {
        let now = Instant::now();
        let returned = batch.points.len();
        let released = self.shard(batch.hash).lock().requeue(
            batch.hash,
            &batch.name,
            batch.ticket,
            batch.points,
            retry_after,
            now,
        );
        let Some(r) = released else { return };
        if returned > r.freed {
            self.size.fetch_add(returned - r.freed, Ordering::SeqCst);
        } else {
            self.release(r.freed - returned);
        }
        match retry_after {
            Some(t) if t > now && returned > 0 => {
                {
                    let mut w = self.writeout.lock();
                    w.next_retry = Some(w.next_retry.map_or(t, |r| r.min(t)));
                }
                self.wake_poppers(); // so sleeping persisters wake at `t`
            }
            _ => {
                if r.poppable {
                    self.mark_pending();
                }
            }
        }
        if r.oldest_advanced {
            self.flushers.notify();
        }
    }

    /// A number that grows with every accepted point: pass it to [`Cache::wait_persisted`].
    /// 0 means nothing was ever accepted.
    pub fn seq(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().accepted).sum()
    }

    /// Waits until every point accepted before this call (in particular every point counted
    /// by an earlier `seq()` ≤ `seq`) has been confirmed or drained; `carbon_flush` is
    /// `wait_persisted(seq(), timeout)`. Returns false if `timeout` passed first. `seq == 0`
    /// returns true at once. Points accepted meanwhile are not waited for, so a flush ends
    /// even under constant load; it also tells persisters to skip the 100 ms rebuild pause.
    pub fn wait_persisted(&self, seq: u64, timeout: Option<Duration>) -> bool {
        if seq == 0 {
            return true;
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        // Every tag created before this is ≤ `generation`; adds read the counter under their
        // shard lock, so once we have seen a shard without such tags, none can appear there.
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        self.flushers.count.fetch_add(1, Ordering::SeqCst);
        self.wake_poppers();
        let mut cursor = 0;
        let mut timed_out = false;
        let mut guard = self.flushers.lock.lock();
        let done = loop {
            while let Some(shard) = self.shards.get(cursor) {
                if shard
                    .lock()
                    .oldest_generation()
                    .is_some_and(|g| g <= generation)
                {
                    break;
                }
                cursor += 1;
            }
            if cursor == self.shards.len() {
                break true;
            }
            if timed_out {
                break false;
            }
            timed_out = wait(&self.flushers.cv, &mut guard, deadline);
        };
        drop(guard);
        self.flushers.count.fetch_sub(1, Ordering::SeqCst);
        done
    }

    /// Points cached (queued + in flight): what `max_size` limits.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::SeqCst)
    }

    /// Metrics with cached points (queued or in flight).
    pub fn metrics(&self) -> usize {
        self.shards.iter().map(|s| s.lock().metrics()).sum()
    }

    /// Batches popped and not yet confirmed or requeued.
    pub fn not_confirmed(&self) -> usize {
        self.shards.iter().map(|s| s.lock().in_flight).sum()
    }

    /// Names of the metrics with cached points, so `find` can list metrics that have no
    /// file yet.
    pub fn names(&self) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            s.lock().names(&mut out);
        }
        out
    }

    /// Empties the cache, returning every queued and in-flight point per metric (to dump on
    /// close). Batches still held by persisters become stale: confirming them is a no-op.
    pub fn drain_all(&self) -> Vec<Batch> {
        let mut raw = Vec::new();
        for s in self.shards.iter() {
            let (mut part, freed) = s.lock().drain();
            self.release(freed);
            raw.append(&mut part);
        }
        {
            let mut w = self.writeout.lock();
            w.queue.clear();
            w.next_retry = None;
        }
        self.flushers.notify();
        raw.into_iter()
            .map(|(name, points)| Batch {
                hash: hash_name(name.as_bytes()),
                name,
                points: normalize(points),
                ticket: 0,
            })
            .collect()
    }

    /// Current counters and gauges.
    pub fn stats(&self) -> CacheStats {
        let (mut metrics, mut not_confirmed) = (0, 0);
        for s in self.shards.iter() {
            let s = s.lock();
            metrics += s.metrics() as u64;
            not_confirmed += s.in_flight as u64;
        }
        let c = &self.counters;
        CacheStats {
            size: self.size() as u64,
            metrics,
            not_confirmed,
            max_size: self.max_size as u64,
            overflow: c.overflow.load(Ordering::Relaxed),
            queue_build_count: c.build_count.load(Ordering::Relaxed),
            queue_build_time_ms: c.build_time_us.load(Ordering::Relaxed) / 1000,
            queue_writeout_time: c.writeout_time_s.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.shards.len())
            .field("size", &self.size())
            .field("max_size", &self.max_size)
            .field("strategy", &self.strategy)
            .field("overflow", &self.overflow)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;

    /// The sort is stable by shard, also when its scratch is reused across batches of
    /// different sizes (it is never cleared between them).
    #[test]
    fn counting_sort_is_a_stable_sort_by_shard() {
        let (mut scratch, mut counts) = (Vec::new(), Vec::new());
        let mut x = 0x853C_49E6_748F_EA9Bu64;
        for len in [0, 1, 700, 5, 3000, 64, 2999, 0, 17] {
            let shards = 1 + (len % 61);
            let mut order: Vec<u64> = (0..len as u64)
                .map(|i| {
                    xorshift(&mut x);
                    ((x % shards as u64) << 32) | i
                })
                .collect();
            let mut want = order.clone();
            want.sort_by_key(|o| o >> 32);
            counting_sort(&mut order, &mut scratch, &mut counts, shards);
            assert_eq!(order, want, "{len}");
        }
    }

    fn pt(t: i64, v: f64) -> Point {
        Point::new(t, v)
    }

    fn cache(max_size: usize, strategy: WriteStrategy, overflow: Overflow) -> Cache {
        Cache::new(CacheOptions {
            max_size,
            write_strategy: strategy,
            overflow,
            shards: 16,
        })
    }

    fn small() -> Cache {
        cache(0, WriteStrategy::Max, Overflow::Error)
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn options_default_is_go_carbon() {
        let o = CacheOptions::default();
        assert_eq!(o.max_size, 1_000_000);
        assert_eq!(o.write_strategy, WriteStrategy::Max);
        assert_eq!(o.overflow, Overflow::Error);
        assert_eq!(o.shards, 1024);
    }

    #[test]
    fn shard_count_rounds_to_power_of_two() {
        for (asked, got) in [(0, 1), (1, 1), (3, 4), (1024, 1024), (1025, 2048)] {
            let c = Cache::new(CacheOptions {
                shards: asked,
                ..CacheOptions::default()
            });
            assert_eq!(c.shards.len(), got, "shards {asked}");
        }
    }

    #[test]
    fn add_get_pop_confirm() {
        let c = small();
        assert_eq!(c.get("a"), None);
        assert_eq!(c.seq(), 0);
        c.add("a", pt(20, 2.0)).unwrap();
        c.add("a", pt(10, 1.0)).unwrap();
        c.add("a", pt(20, 3.0)).unwrap();
        c.add("b", pt(5, 5.0)).unwrap();
        assert_eq!(c.size(), 4);
        assert_eq!(c.metrics(), 2);
        assert_eq!(c.seq(), 4);
        assert_eq!(c.get("a"), Some(vec![pt(10, 1.0), pt(20, 3.0)]));

        let b = c.pop_wait(WAIT).expect("a is poppable");
        assert_eq!(&*b.name, "a", "max strategy: most points first");
        assert_eq!(b.points, vec![pt(10, 1.0), pt(20, 3.0)]);
        assert_eq!(c.not_confirmed(), 1);
        assert_eq!(c.size(), 4, "in-flight points still count");
        // Readable while in flight, merged with newer queued points.
        c.add("a", pt(20, 4.0)).unwrap();
        c.add("a", pt(30, 1.0)).unwrap();
        assert_eq!(
            c.get("a"),
            Some(vec![pt(10, 1.0), pt(20, 4.0), pt(30, 1.0)])
        );
        c.confirm(b);
        assert_eq!(c.size(), 3);
        assert_eq!(c.not_confirmed(), 0);
        assert_eq!(c.get("a"), Some(vec![pt(20, 4.0), pt(30, 1.0)]));

        let mut seen = Vec::new();
        while let Some(b) = c.pop_wait(Duration::from_millis(300)) {
            seen.push((b.name.to_string(), b.points.clone()));
            c.confirm(b);
        }
        seen.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            seen,
            vec![
                ("a".to_string(), vec![pt(20, 4.0), pt(30, 1.0)]),
                ("b".to_string(), vec![pt(5, 5.0)])
            ]
        );
        assert_eq!(c.size(), 0);
        assert_eq!(c.metrics(), 0);
        assert_eq!(c.get("a"), None);
        assert!(c.names().is_empty());
        let s = c.stats();
        assert!(s.queue_build_count >= 2, "{s:?}");
        assert_eq!(s.size, 0);
    }

    #[test]
    fn one_flight_per_metric() {
        let c = small();
        c.add("a", pt(1, 1.0)).unwrap();
        let b = c.pop_wait(WAIT).unwrap();
        c.add("a", pt(2, 1.0)).unwrap();
        assert!(
            c.pop_wait(Duration::from_millis(150)).is_none(),
            "a is in flight"
        );
        c.confirm(b);
        let b = c.pop_wait(WAIT).expect("poppable after confirm");
        assert_eq!(b.points, vec![pt(2, 1.0)]);
    }

    #[test]
    fn requeue_keeps_newer_writes_and_waits_for_retry() {
        let c = small();
        c.add("a", pt(1, 1.0)).unwrap();
        c.add("a", pt(2, 1.0)).unwrap();
        let b = c.pop_wait(WAIT).unwrap();
        c.add("a", pt(2, 9.0)).unwrap();
        c.add("a", pt(3, 1.0)).unwrap();
        assert_eq!(c.size(), 4);
        let retry = Instant::now() + Duration::from_millis(300);
        c.requeue(b, Some(retry));
        assert_eq!(c.not_confirmed(), 0);
        assert_eq!(c.size(), 4);
        assert_eq!(c.get("a"), Some(vec![pt(1, 1.0), pt(2, 9.0), pt(3, 1.0)]));
        assert!(c.pop().is_none(), "waiting for retry");
        assert!(
            c.pop_wait(Duration::from_millis(100)).is_none(),
            "waiting for retry"
        );
        let b = c.pop_wait(WAIT).expect("poppable after retry time");
        assert!(Instant::now() >= retry);
        assert_eq!(b.points, vec![pt(1, 1.0), pt(2, 9.0), pt(3, 1.0)]);
        // A trimmed requeue (persister dropped points) frees their room.
        let mut b = b;
        b.points.truncate(1);
        c.requeue(b, None);
        assert_eq!(c.size(), 1);
        let b = c.pop_wait(WAIT).unwrap();
        assert_eq!(b.points, vec![pt(1, 1.0)]);
        let mut b = b;
        b.points.clear();
        c.requeue(b, None);
        assert_eq!((c.size(), c.metrics()), (0, 0), "nothing came back");
        assert!(c.wait_persisted(c.seq(), Some(WAIT)));
    }

    fn pop_order(strategy: WriteStrategy) -> Vec<String> {
        let c = cache(0, strategy, Overflow::Error);
        c.add("few", pt(300, 1.0)).unwrap();
        for t in 0..5 {
            c.add("many", pt(200 + t, 1.0)).unwrap();
        }
        c.add("old", pt(100, 1.0)).unwrap();
        c.add("old", pt(500, 1.0)).unwrap();
        let mut order = Vec::new();
        while let Some(b) = c.pop() {
            order.push(b.name.to_string());
            c.confirm(b);
        }
        order
    }

    #[test]
    fn strategies_order() {
        assert_eq!(pop_order(WriteStrategy::Max), ["many", "old", "few"]);
        assert_eq!(pop_order(WriteStrategy::Sorted), ["old", "many", "few"]);
        let mut noop = pop_order(WriteStrategy::Noop);
        noop.sort();
        assert_eq!(noop, ["few", "many", "old"]);
    }

    #[test]
    fn snapshot_is_rebuilt_after_interval_only() {
        let c = small();
        c.add("a", pt(1, 1.0)).unwrap();
        let b = c.pop().expect("first build is immediate");
        c.confirm(b);
        c.add("b", pt(1, 1.0)).unwrap();
        let t = Instant::now();
        assert!(
            c.pop().is_none(),
            "drained less than 100 ms after the last build"
        );
        let b = c.pop_wait(WAIT).expect("b after the interval");
        assert_eq!(&*b.name, "b");
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn overflow_error_and_drop() {
        let c = cache(3, WriteStrategy::Max, Overflow::Error);
        for t in 0..3 {
            assert_eq!(c.add("a", pt(t, 1.0)).unwrap(), AddOutcome::Added);
        }
        for _ in 0..2 {
            match c.add("b", pt(1, 1.0)) {
                Err(Error::Full {
                    accepted: 0,
                    refused: 1,
                }) => {}
                other => panic!("expected Full, got {other:?}"),
            }
        }
        assert_eq!(c.stats().overflow, 2);
        assert_eq!(c.size(), 3);
        assert_eq!(c.get("b"), None);
        // In-flight points still count; confirm frees them.
        let b = c.pop().unwrap();
        assert!(c.add("b", pt(1, 1.0)).is_err());
        c.confirm(b);
        assert_eq!(c.add("b", pt(1, 1.0)).unwrap(), AddOutcome::Added);

        let c = cache(2, WriteStrategy::Max, Overflow::Drop);
        let outcomes: Vec<_> = (0..5).map(|t| c.add("a", pt(t, 1.0)).unwrap()).collect();
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == AddOutcome::Dropped)
                .count(),
            3
        );
        assert_eq!(c.stats().overflow, 3);
        assert_eq!(c.get("a"), Some(vec![pt(0, 1.0), pt(1, 1.0)]));
    }

    #[test]
    fn overflow_block_times_out_then_wakes_on_confirm() {
        let c = Arc::new(cache(
            1,
            WriteStrategy::Max,
            Overflow::Block(Duration::from_millis(80)),
        ));
        c.add("a", pt(1, 1.0)).unwrap();
        let t = Instant::now();
        assert!(matches!(c.add("a", pt(2, 1.0)), Err(Error::Full { .. })));
        assert!(t.elapsed() >= Duration::from_millis(80));
        assert_eq!(c.stats().overflow, 1);

        let c = Arc::new(cache(
            1,
            WriteStrategy::Max,
            Overflow::Block(Duration::from_secs(10)),
        ));
        c.add("a", pt(1, 1.0)).unwrap();
        let b = c.pop().unwrap();
        let adder = {
            let c = c.clone();
            std::thread::spawn(move || c.add("a", pt(2, 1.0)))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !adder.is_finished(),
            "adder must block while the cache is full"
        );
        let t = Instant::now();
        c.confirm(b);
        assert_eq!(adder.join().unwrap().unwrap(), AddOutcome::Added);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(c.get("a"), Some(vec![pt(2, 1.0)]));
        assert_eq!(c.stats().overflow, 0);
    }

    #[test]
    fn wait_persisted_follows_confirms() {
        let c = Arc::new(small());
        assert!(c.wait_persisted(0, Some(Duration::ZERO)));
        c.add("a", pt(1, 1.0)).unwrap();
        c.add("b", pt(1, 1.0)).unwrap();
        let seq = c.seq();
        assert!(
            !c.wait_persisted(seq, Some(Duration::from_millis(20))),
            "nothing written yet"
        );
        let a = c.pop().unwrap();
        let b = c.pop().unwrap();
        let generation = c.generation.load(Ordering::SeqCst);
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.wait_persisted(seq, Some(WAIT)))
        };
        while c.generation.load(Ordering::SeqCst) == generation {
            std::thread::yield_now();
        }
        c.add("c", pt(1, 1.0)).unwrap(); // after the flush started: not waited for
        c.confirm(a);
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "b is still in flight");
        c.requeue(b, None);
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "b is queued again");
        // Write b, leave c cached: the flush must end anyway.
        let mut held = Vec::new();
        while let Some(x) = c.pop_wait(Duration::from_millis(300)) {
            if &*x.name == "b" {
                c.confirm(x);
            } else {
                held.push(x);
            }
        }
        assert!(waiter.join().unwrap());
        assert_eq!(c.get("c"), Some(vec![pt(1, 1.0)]), "c is still cached");
        assert!(
            !c.wait_persisted(c.seq(), Some(Duration::from_millis(10))),
            "c is in flight"
        );
    }

    #[test]
    fn drain_all_empties_and_makes_batches_stale() {
        let c = small();
        c.add("a", pt(1, 1.0)).unwrap();
        c.add("a", pt(2, 1.0)).unwrap();
        let inflight = c.pop().unwrap();
        c.add("a", pt(2, 7.0)).unwrap();
        c.add("b", pt(1, 1.0)).unwrap();
        let mut all = c.drain_all();
        all.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].points, vec![pt(1, 1.0), pt(2, 7.0)]);
        assert_eq!(all[1].points, vec![pt(1, 1.0)]);
        assert_eq!((c.size(), c.metrics(), c.not_confirmed()), (0, 0, 0));
        assert!(c.wait_persisted(c.seq(), Some(Duration::ZERO)));
        c.confirm(inflight); // stale: must not free anything twice
        assert_eq!(c.size(), 0);
        assert!(c.pop().is_none());
        c.add("a", pt(3, 1.0)).unwrap();
        assert_eq!(c.pop_wait(WAIT).unwrap().points, vec![pt(3, 1.0)]);
    }

    /// Deterministic pseudo-random stream (xorshift), so failures reproduce.
    fn stream(n: usize, names: usize) -> Vec<(String, Point)> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|i| {
                xorshift(&mut x);
                let name = format!("host{:02}.metric{}", x % 7, (x >> 8) % names as u64);
                // Few timestamps, so the same (name, timestamp) is written many times.
                (name, pt(((x >> 20) % 5) as i64, i as f64))
            })
            .collect()
    }

    #[test]
    fn add_batch_equals_adds_in_order() {
        let input = stream(20_000, 400);
        let one = small();
        for (n, p) in &input {
            one.add(n, *p).unwrap();
        }
        let batched = small();
        for chunk in input.chunks(1500) {
            let mut b = AddBatch::with_capacity(chunk.len());
            for (n, p) in chunk {
                b.push(n, *p);
            }
            assert_eq!(batched.add_batch(&mut b), chunk.len());
            assert_eq!(b.rest(chunk.len()).count(), 0);
        }
        assert_eq!(batched.size(), one.size());
        assert_eq!(batched.seq(), one.seq());
        assert_eq!(batched.metrics(), one.metrics());
        let mut names: Vec<_> = one.names();
        names.sort();
        let mut other = batched.names();
        other.sort();
        assert_eq!(names, other);
        for n in &names {
            assert_eq!(batched.get(n), one.get(n), "{n}");
        }
        // Every metric became poppable exactly once.
        let mut popped = 0;
        while let Some(b) = batched.pop_wait(Duration::from_millis(300)) {
            assert_eq!(Some(b.points.clone()), one.get(&b.name));
            batched.confirm(b);
            popped += 1;
        }
        assert_eq!(popped, names.len());
        assert_eq!(batched.size(), 0);
    }

    #[test]
    fn add_batch_stops_at_max_size_without_counting_overflow() {
        let c = cache(5, WriteStrategy::Max, Overflow::Error);
        c.add("x", pt(0, 0.0)).unwrap();
        let mut b = AddBatch::default();
        for t in 0..7 {
            b.push(if t % 2 == 0 { "a" } else { "b" }, pt(t, t as f64));
        }
        assert_eq!(c.add_batch(&mut b), 4);
        assert_eq!(c.size(), 5);
        assert_eq!(c.stats().overflow, 0);
        let rest: Vec<_> = b.rest(4).collect();
        assert_eq!(
            rest,
            [("a", pt(4, 4.0)), ("b", pt(5, 5.0)), ("a", pt(6, 6.0))]
        );
        assert_eq!(c.get("a"), Some(vec![pt(0, 0.0), pt(2, 2.0)]));
        assert_eq!(c.get("b"), Some(vec![pt(1, 1.0), pt(3, 3.0)]));
        assert_eq!(c.add_batch(&mut b), 0, "full");
        b.clear();
        assert!(b.is_empty());
        assert_eq!(c.add_batch(&mut b), 0);
    }

    #[test]
    fn timestamps_outside_whisper_range_are_refused() {
        let c = small();
        for t in [-2, -1, i64::from(u32::MAX) + 1, i64::MAX, i64::MIN] {
            assert!(
                matches!(c.add("a", pt(t, 1.0)), Err(Error::InvalidArgument(_))),
                "{t}"
            );
            assert!(
                matches!(
                    c.add_waiting("a", pt(t, 1.0), WAIT),
                    Err(Error::InvalidArgument(_))
                ),
                "{t}"
            );
        }
        assert_eq!((c.size(), c.metrics(), c.seq()), (0, 0, 0));
        c.add("a", pt(i64::from(u32::MAX), 2.0)).unwrap();
        c.add("a", pt(0, 1.0)).unwrap();
        assert_eq!(
            c.get("a"),
            Some(vec![pt(0, 1.0), pt(i64::from(u32::MAX), 2.0)])
        );
        // A batch adds up to the first refused point and leaves the rest to `add`.
        let mut b = AddBatch::default();
        b.push("b", pt(1, 1.0));
        b.push("b", pt(-5, 2.0));
        b.push("b", pt(3, 3.0));
        assert_eq!(c.add_batch(&mut b), 1);
        assert_eq!(b.rest(1).next(), Some(("b", pt(-5, 2.0))));
        assert_eq!(c.get("b"), Some(vec![pt(1, 1.0)]));
        assert_eq!(c.size(), 3);
    }
}
