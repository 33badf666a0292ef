//! One cache shard: the queued and in-flight points of the metrics whose names hash to it.
//!
//! Everything here runs under the shard's mutex, so it is plain single-threaded code; the
//! caller (`Cache`) does the atomics, wake-ups and any sorting that can wait until the lock is
//! released.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use hashbrown::HashTable;
use std::time::Instant;

use super::WriteStrategy;
use super::prefetch::prefetch;
use crate::points::Point;

/// Constants of the folded-multiply steps (from the digits of pi, as wyhash/foldhash use).
const K0: u64 = 0x243F_6A88_85A3_08D3;
const K1: u64 = 0x1319_8A2E_0370_7344;
const K2: u64 = 0xA409_3822_299F_31D0;

/// 64×64→128-bit multiply folded back to 64 bits: one multiply mixes 16 input bytes.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The 8 bytes of `b` from `at`, little-endian; `at + 8 <= b.len()`. One load, where copying
/// a short tail into a zeroed word would cost a `memcpy` call and a store-forwarding stall.
#[inline(always)]
fn word_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The 4 bytes of `b` from `at`, little-endian; `at + 4 <= b.len()`.
#[inline(always)]
fn half_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// Hash of a metric name, folded-multiply style (wyhash/foldhash), computed once per point
/// and used for both the shard choice and the shard's table.
///
/// On the hot path, so: std's SipHash would cost more than the rest of `add`, and FxHash
/// leaves the low bits (the table's bucket index) blind to the last bytes of a name, exactly
/// where metric names differ (`host01.cpu` vs `host02.cpu`). 16 bytes per multiply and a
/// splitmix64 finish give both speed and full avalanche. The last 1–16 bytes are read as two
/// possibly overlapping words (as wyhash does), never byte by byte; the length seeds the
/// hash, so overlaps cannot make two names of different lengths collide systematically. Not
/// DoS-resistant: metric names come from trusted senders, as in go-carbon. Never stored:
/// only this process's cache uses it.
#[inline]
pub(crate) fn hash_name(name: &[u8]) -> u64 {
    let n = name.len();
    let mut h = (n as u64).wrapping_mul(K0);
    let (a, b) = if n > 16 {
        let mut i = 0;
        // Whole chunks, leaving 1..=16 bytes for the tail.
        while i + 16 < n {
            h = fold(word_at(name, i) ^ h ^ K1, word_at(name, i + 8) ^ K2);
            i += 16;
        }
        (word_at(name, n - 16), word_at(name, n - 8))
    } else if n >= 8 {
        (word_at(name, 0), word_at(name, n - 8))
    } else if n >= 4 {
        (half_at(name, 0), half_at(name, n - 4))
    } else if n > 0 {
        let bytes = (u64::from(name[0]) << 16) | (u64::from(name[n / 2]) << 8);
        (bytes | u64::from(name[n - 1]), 0)
    } else {
        (0, 0)
    };
    h = fold(a ^ h ^ K1, b ^ K2);
    // splitmix64 finaliser
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `a == b` for names: 16- and 8-byte compares (the last one overlapping) instead of a
/// `memcmp` call, which costs more than the compare for names this short.
#[inline(always)]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 16 {
        let chunk = |x: &[u8], at: usize| -> [u8; 16] {
            let mut c = [0u8; 16];
            c.copy_from_slice(&x[at..at + 16]);
            c
        };
        let mut i = 0;
        while i + 16 < n {
            if chunk(a, i) != chunk(b, i) {
                return false;
            }
            i += 16;
        }
        chunk(a, n - 16) == chunk(b, n - 16)
    } else if n >= 8 {
        (word_at(a, 0) == word_at(b, 0)) & (word_at(a, n - 8) == word_at(b, n - 8))
    } else if n >= 4 {
        (half_at(a, 0) == half_at(b, 0)) & (half_at(a, n - 4) == half_at(b, n - 4))
    } else {
        a == b
    }
}

/// The shard of a name with hash `hash`: `mask` is `shards - 1` (at most 2^20 - 1).
///
/// Bits 32.. of the hash: the table inside the shard indexes buckets with the low bits and
/// tags them with the top 7, so the shard choice must use neither, or every key of a shard
/// would share the bits the table relies on.
#[inline]
pub(crate) fn shard_index(hash: u64, mask: usize) -> usize {
    ((hash >> 32) as usize) & mask
}

/// Longest name kept inside the entry; longer names go to the heap. Most Graphite names
/// fit, so a lookup touches one entry and no separate string.
const INLINE_NAME: usize = 38;

/// A metric name, inline when short (40 bytes either way).
#[derive(Clone)]
pub(crate) enum Name {
    /// `bytes[..len]` is the UTF-8 name.
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    /// A name longer than `INLINE_NAME`.
    Heap(Arc<str>),
}

impl Name {
    fn new(name: &str) -> Name {
        if name.len() <= INLINE_NAME {
            let mut bytes = [0u8; INLINE_NAME];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Name::Inline {
                len: name.len() as u8,
                bytes,
            }
        } else {
            Name::Heap(Arc::from(name))
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Heap(s) => s.as_bytes(),
        }
    }

    /// The name as a shared string (allocates for inline names: once per batch, not per point).
    pub fn to_arc(&self) -> Arc<str> {
        match self {
            // Inline bytes are always a whole `&str` copied in `new`.
            Name::Inline { .. } => Arc::from(String::from_utf8_lossy(self.as_bytes())),
            Name::Heap(s) => s.clone(),
        }
    }
}

/// A metric's name with its hash: what the write-out queue holds, so popping a metric
/// neither allocates nor hashes again.
#[derive(Clone)]
pub(crate) struct Key {
    pub hash: u64,
    pub name: Name,
}

/// A cached point in 12 bytes instead of `Point`'s 16 (a quarter of the cache's memory):
/// whisper stores u32 timestamps and the cache takes no other (`Slot::new`), so nothing is
/// lost. The value is kept as bytes so the struct aligns to 4 and packs tight in a `Vec`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Slot {
    ts: u32,
    value: [u8; 8],
}

impl Slot {
    /// `p` as a slot; `None` when its timestamp is not a whisper (u32) timestamp.
    #[inline]
    pub fn new(p: Point) -> Option<Slot> {
        Some(Slot {
            ts: u32::try_from(p.timestamp).ok()?,
            value: p.value.to_ne_bytes(),
        })
    }

    /// `p` as a slot, its timestamp clamped into u32: for points already checked with `new`
    /// or that came out of slots.
    #[inline]
    pub fn clamped(p: Point) -> Slot {
        Slot {
            ts: p.timestamp.clamp(0, i64::from(u32::MAX)) as u32,
            value: p.value.to_ne_bytes(),
        }
    }

    /// The point this slot holds.
    #[inline]
    pub fn point(self) -> Point {
        Point::new(i64::from(self.ts), f64::from_ne_bytes(self.value))
    }
}

/// Points taken by a persister and not yet confirmed; kept so reads still see them
/// (go-carbon's `notConfirmed`). Boxed: most entries have no flight, and the box keeps
/// `Entry` in two cache lines.
pub(crate) struct Flight {
    /// The points as they were queued (arrival order, duplicates kept); the batch has a
    /// normalised copy. Their count is what the flight holds of `Cache::size`.
    points: Queued,
    /// Flush generation of the oldest of these points.
    generation: u64,
    /// Identifies the batch, so a confirm/requeue of a stale batch (after `drain_all`) is ignored.
    ticket: u64,
}

/// One metric's cached points, in one aligned pair of cache lines (fetched together by the
/// CPU's adjacent-line prefetch and by `Shard::prefetch_entry`): the first holds the name and
/// the spilled points' vector, the second the first points themselves with their count, so
/// a metric with a few points touches no memory outside its entry.
///
/// The hash is stored in what would be the last 8 bytes of alignment padding, for the
/// table's growth and in-place rehash (after removals, which every persisted metric causes):
/// those run over every entry, and hashing each name again cost them as much as the moves.
/// Lookups need no stored hash: the table's 7-bit tags already skip 127 of 128 other keys,
/// and an inline name is compared in the same cache line.
#[repr(C, align(64))]
pub(crate) struct Entry {
    name: Name,
    /// Points not yet popped, in arrival order (later = newer write), duplicates kept.
    queued: Queued,
    /// Flush generation of the oldest queued point (meaningful while `queued` is not empty).
    generation: u64,
    /// At most one batch per metric is in flight, so two persisters never race on a file
    /// with the older batch landing last.
    flight: Option<Box<Flight>>,
    /// `hash_name(name)`.
    hash: u64,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.flight.is_none()
    }

    #[inline]
    fn is(&self, name: &[u8]) -> bool {
        same_name(self.name.as_bytes(), name)
    }

    fn hash(&self) -> u64 {
        debug_assert_eq!(self.hash, hash_name(self.name.as_bytes()));
        self.hash
    }

    /// Every cached point, raw: in-flight points first, then queued, so a later element is
    /// always the newer write.
    fn raw_points(&self) -> Vec<Point> {
        let flight = self.flight.as_ref().map(|f| &f.points);
        let mut out = Vec::with_capacity(flight.map_or(0, Queued::len) + self.queued.len());
        let slots = flight.into_iter().flat_map(Queued::iter);
        out.extend(slots.chain(self.queued.iter()).map(|s| s.point()));
        out
    }
}

/// How many live "tags" (an entry's queued points, or its flight) carry each flush generation.
///
/// `wait_persisted` bumps the global generation g→g+1 and waits until no shard has a tag
/// ≤ g. Tags are created with the current generation read under the shard lock, so this
/// deque is ordered by generation; it holds one element per distinct live generation,
/// which is tiny because generations only advance on flush.
#[derive(Default)]
struct Generations(VecDeque<(u64, usize)>);

impl Generations {
    fn inc(&mut self, generation: u64) {
        match self.0.back_mut() {
            Some((g, n)) if *g == generation => *n += 1,
            // Tags are only created with the current generation, which never goes back.
            _ => self.0.push_back((generation, 1)),
        }
    }

    fn dec(&mut self, generation: u64) {
        if let Ok(i) = self.0.binary_search_by_key(&generation, |&(g, _)| g)
            && let Some((_, n)) = self.0.get_mut(i)
        {
            *n -= 1;
            if *n == 0 {
                self.0.remove(i);
            }
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.0.front().map(|&(g, _)| g)
    }
}

/// What `Shard::confirm` / `Shard::requeue` changed, for the caller's accounting.
pub(crate) struct Released {
    /// Points the flight held of `Cache::size`.
    pub freed: usize,
    /// The metric now has queued points a persister may pop (wake one).
    pub poppable: bool,
    /// The shard's oldest flush generation moved on: the only change a `wait_persisted`
    /// caller waits for, so only then is it worth waking.
    pub oldest_advanced: bool,
}

/// One metric's raw points taken by `Shard::drain`.
pub(crate) type Drained = (Arc<str>, Vec<Point>);

/// The state behind one shard lock.
#[derive(Default)]
pub(crate) struct Shard {
    map: HashTable<Entry>,
    generations: Generations,
    /// Metrics that may not be popped before the instant (requeue after a failed write or a
    /// create throttle). Rare, so kept out of `Entry`.
    retry: HashMap<Arc<str>, Instant>,
    /// Points accepted by this shard since creation; `Cache::seq` sums them.
    pub accepted: u64,
    /// Batches in flight.
    pub in_flight: usize,
    next_ticket: u64,
}

impl Shard {
    /// Queues one point of `name` (`hash = hash_name(name)`). Returns true when the metric
    /// just became poppable (it had no queued points and nothing in flight), i.e. the
    /// writeout queue has new work.
    #[inline(always)]
    pub fn add(&mut self, hash: u64, name: &str, p: Slot, generation: u64) -> bool {
        self.accepted += 1;
        if let Some(e) = self.map.find_mut(hash, |e| e.is(name.as_bytes())) {
            let first = e.queued.is_empty();
            if first {
                e.generation = generation;
                self.generations.inc(generation);
            }
            e.queued.push(p);
            return first && e.flight.is_none();
        }
        self.insert_new(hash, name, p, generation);
        true
    }

    /// The entry `hash` most likely names: the first of the table's tag matches, 127 in 128
    /// times the only one. Reads only the table's control bytes to find it.
    #[inline]
    fn likely_entry(&self, hash: u64) -> Option<&Entry> {
        self.map.iter_hash(hash).next()
    }

    /// Starts loading, without waiting for it, the entry `hash` most likely names, so that a
    /// later `add` of it finds the entry in the CPU cache. Several of these overlap their
    /// memory latency where `add`s would wait out one miss each.
    #[inline]
    pub fn prefetch_entry(&self, hash: u64) {
        if let Some(e) = self.likely_entry(hash) {
            let p = std::ptr::from_ref(e).cast::<u8>();
            // Two cache lines hold an entry (`Entry` is 64-aligned).
            for off in (0..ENTRY_SIZE).step_by(64) {
                prefetch(p.wrapping_add(off));
            }
        }
    }

    /// Starts loading where `add` of `hash` will write its point (the likely entry's next
    /// queued slot: inside the entry, or at the end of its spill vector). Reads the entry:
    /// call it after `prefetch_entry` had time.
    #[inline]
    pub fn prefetch_tail(&self, hash: u64) {
        if let Some(e) = self.likely_entry(hash) {
            prefetch(e.queued.tail());
        }
    }

    #[inline(never)]
    fn insert_new(&mut self, hash: u64, name: &str, p: Slot, generation: u64) {
        let mut queued = Queued::default();
        queued.push(p);
        self.map.insert_unique(
            hash,
            Entry {
                name: Name::new(name),
                queued,
                generation,
                flight: None,
                hash,
            },
            Entry::hash,
        );
        self.generations.inc(generation);
    }

    /// Moves a metric's queued points in flight. Returns the raw points (arrival order) and the
    /// batch ticket, or None if the metric has nothing queued, is already in flight, or must
    /// wait for its retry time.
    pub fn pop(&mut self, key: &Key, now: Instant) -> Option<(Vec<Point>, u64)> {
        let name = key.name.as_bytes();
        if !self.retry.is_empty()
            && let Ok(n) = std::str::from_utf8(name)
        {
            match self.retry.get(n) {
                Some(&t) if t > now => return None,
                Some(_) => {
                    self.retry.remove(n);
                }
                None => {}
            }
        }
        let e = self.map.find_mut(key.hash, |e| e.is(name))?;
        if e.queued.is_empty() || e.flight.is_some() {
            return None;
        }
        // Points keep arriving at the same rate: give the next run the capacity this one
        // needed, saving the reallocations of growing from empty.
        let len = e.queued.len();
        let points = std::mem::replace(&mut e.queued, Queued::with_capacity(len));
        let copy = points.iter().map(|s| s.point()).collect();
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        e.flight = Some(Box::new(Flight {
            points,
            generation: e.generation,
            ticket,
        }));
        self.in_flight += 1;
        Some((copy, ticket))
    }

    /// Takes the flight with `ticket` off `name`; None if it is not (or no longer) in flight.
    fn take_flight<'a>(
        map: &'a mut HashTable<Entry>,
        in_flight: &mut usize,
        hash: u64,
        name: &str,
        ticket: u64,
    ) -> Option<(&'a mut Entry, Box<Flight>)> {
        let e = map.find_mut(hash, |e| e.is(name.as_bytes()))?;
        if e.flight.as_ref().is_none_or(|f| f.ticket != ticket) {
            return None;
        }
        let flight = e.flight.take()?;
        *in_flight -= 1;
        Some((e, flight))
    }

    fn remove(&mut self, hash: u64, name: &str) {
        if let Ok(o) = self.map.find_entry(hash, |e| e.is(name.as_bytes())) {
            o.remove();
        }
    }

    /// The batch `ticket` of `name` is persisted: forget its points.
    pub fn confirm(&mut self, hash: u64, name: &str, ticket: u64) -> Option<Released> {
        let oldest = self.generations.oldest();
        let (e, flight) =
            Self::take_flight(&mut self.map, &mut self.in_flight, hash, name, ticket)?;
        let poppable = !e.queued.is_empty();
        let empty = e.is_empty();
        self.generations.dec(flight.generation);
        if empty {
            self.remove(hash, name);
        }
        Some(Released {
            freed: flight.points.len(),
            poppable,
            oldest_advanced: self.generations.oldest() != oldest,
        })
    }

    /// The batch `ticket` of `name` failed: put `points` (older than anything queued since the
    /// pop) back in front of the queue. Returns the accounting change; `Released::poppable`
    /// is false while `retry_after` is in the future.
    pub fn requeue(
        &mut self,
        hash: u64,
        name: &Arc<str>,
        ticket: u64,
        points: Vec<Point>,
        retry_after: Option<Instant>,
        now: Instant,
    ) -> Option<Released> {
        let oldest = self.generations.oldest();
        let (e, flight) =
            Self::take_flight(&mut self.map, &mut self.in_flight, hash, name, ticket)?;
        // They came out of slots, so clamping changes nothing.
        let mut points: Queued = points.into_iter().map(Slot::clamped).collect();
        if !e.queued.is_empty() {
            // The queued points' tag merges into the flight's older one.
            self.generations.dec(e.generation);
            points.append(std::mem::take(&mut e.queued));
        }
        e.queued = points;
        e.generation = flight.generation;
        let has_points = !e.queued.is_empty();
        if !has_points {
            // The persister dropped every point: nothing left to write.
            self.generations.dec(flight.generation);
            self.remove(hash, name);
        }
        let waiting = match retry_after {
            Some(t) if t > now && has_points => {
                self.retry.insert(name.clone(), t);
                true
            }
            _ => {
                self.retry.remove(name);
                false
            }
        };
        Some(Released {
            freed: flight.points.len(),
            poppable: has_points && !waiting,
            oldest_advanced: self.generations.oldest() != oldest,
        })
    }

    /// Every cached point of `name`, raw (see `Entry::raw_points`).
    pub fn get_raw(&self, hash: u64, name: &str) -> Option<Vec<Point>> {
        let e = self.map.find(hash, |e| e.is(name.as_bytes()))?;
        Some(e.raw_points())
    }

    /// The oldest flush generation with unconfirmed points here, if any.
    pub fn oldest_generation(&self) -> Option<u64> {
        self.generations.oldest()
    }

    /// Appends the metrics a persister may pop now, with their order key for `strategy`, and
    /// lowers `next_retry` to the earliest retry time of those skipped for it.
    pub fn collect(
        &self,
        strategy: WriteStrategy,
        now: Instant,
        out: &mut Vec<(i64, Key)>,
        next_retry: &mut Option<Instant>,
    ) {
        for e in &self.map {
            if e.queued.is_empty() || e.flight.is_some() {
                continue;
            }
            if !self.retry.is_empty()
                && let Ok(name) = std::str::from_utf8(e.name.as_bytes())
                && let Some(&t) = self.retry.get(name)
                && t > now
            {
                *next_retry = Some(next_retry.map_or(t, |r| r.min(t)));
                continue;
            }
            let key = match strategy {
                WriteStrategy::Max => e.queued.len() as i64,
                WriteStrategy::Sorted => e.queued.first().map_or(0, |p| i64::from(p.ts)),
                WriteStrategy::Noop => 0,
            };
            out.push((
                key,
                Key {
                    hash: e.hash(),
                    name: e.name.clone(),
                },
            ));
        }
    }

    /// Removes everything, returning each metric's raw points (in flight first, then queued)
    /// and the number of points they held of `Cache::size`.
    pub fn drain(&mut self) -> (Vec<Drained>, usize) {
        let map = std::mem::take(&mut self.map);
        self.generations = Generations::default();
        self.retry.clear();
        self.in_flight = 0;
        let mut freed = 0;
        let out = map
            .into_iter()
            .map(|e| {
                let points = e.raw_points();
                freed += points.len();
                (e.name.to_arc(), points)
            })
            .collect();
        (out, freed)
    }

    /// Metrics with cached points.
    pub fn metrics(&self) -> usize {
        self.map.len()
    }

    /// Names of the metrics with cached points.
    pub fn names(&self, out: &mut Vec<Arc<str>>) {
        out.extend(self.map.iter().map(|e| e.name.to_arc()));
    }
}

const ENTRY_SIZE: usize = std::mem::size_of::<Entry>();

/// Points kept inside the entry before any are spilled to the heap: a metric usually gets
/// one or two points per write-out cycle, so most metrics never allocate for their points.
const INLINE_POINTS: usize = 3;

/// Capacity of a metric's first spill vector: a metric past its inline points is a busy one.
const SPILL_CAPACITY: usize = 8;

/// A metric's queued points: `inline[..len]`, then `spill` (non-empty only once `inline` is
/// full). Saves the allocation, the pointer chase and the regrowth copies of a `Vec` for the
/// points most metrics hold between two write-outs.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Queued {
    /// First: it shares the entry's first cache line with the name (see `Entry`).
    spill: Vec<Slot>,
    inline: [Slot; INLINE_POINTS],
    len: u8,
}

impl Queued {
    /// Empty, with room for `n` points without regrowing.
    fn with_capacity(n: usize) -> Queued {
        Queued {
            spill: match n > INLINE_POINTS {
                true => Vec::with_capacity((n - INLINE_POINTS).max(SPILL_CAPACITY)),
                false => Vec::new(),
            },
            ..Queued::default()
        }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.len) + self.spill.len()
    }

    /// Appends `p`, spilling with 1.5× growth instead of `Vec`'s 2×: at ~10 points per
    /// metric this keeps the cache's memory near what exact sizing would take, and the copy
    /// cost stays amortised O(1).
    #[inline]
    fn push(&mut self, p: Slot) {
        let n = usize::from(self.len);
        if n < INLINE_POINTS {
            self.inline[n] = p;
            self.len += 1;
            return;
        }
        let v = &mut self.spill;
        if v.len() == v.capacity() {
            v.reserve_exact((v.len() / 2).max(SPILL_CAPACITY));
        }
        v.push(p);
    }

    /// Where the next `push` writes, for a prefetch (any address is fine: only a hint).
    #[inline]
    fn tail(&self) -> *const u8 {
        match usize::from(self.len) < INLINE_POINTS {
            true => self.inline.as_ptr().cast(),
            false => self.spill.as_ptr().wrapping_add(self.spill.len()).cast(),
        }
    }

    fn first(&self) -> Option<&Slot> {
        self.iter().next()
    }

    /// The points in arrival order.
    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.inline[..usize::from(self.len)]
            .iter()
            .chain(&self.spill)
    }

    /// `self`'s points followed by `later`'s, as one queue.
    fn append(&mut self, later: Queued) {
        // Inline room is left only when `self` has no spill: order is kept either way.
        for &p in later.iter() {
            self.push(p);
        }
    }
}

impl FromIterator<Slot> for Queued {
    fn from_iter<I: IntoIterator<Item = Slot>>(points: I) -> Queued {
        let points = points.into_iter();
        let mut q = Queued::with_capacity(points.size_hint().0);
        for p in points {
            q.push(p);
        }
        q
    }
}

/// Sorts points by timestamp and keeps one per timestamp: the last in input order, which is
/// the newest write (carbon's `dict(datapoints)`, go-whisper's keep-last).
pub(crate) fn normalize(mut v: Vec<Point>) -> Vec<Point> {
    if v.windows(2).all(|w| w[0].timestamp < w[1].timestamp) {
        return v;
    }
    v.sort_by_key(|p| p.timestamp); // stable: equal timestamps keep arrival order
    let mut out: Vec<Point> = Vec::with_capacity(v.len());
    for p in v {
        match out.last_mut() {
            Some(last) if last.timestamp == p.timestamp => *last = p,
            _ => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(t: i64, v: f64) -> Point {
        Point::new(t, v)
    }

    fn sl(t: i64, v: f64) -> Slot {
        Slot::new(pt(t, v)).unwrap()
    }

    #[test]
    fn queued_keeps_arrival_order_across_inline_and_spill() {
        for n in 0..40 {
            let mut q = Queued::default();
            let want: Vec<Slot> = (0..n).map(|i| sl(i, i as f64)).collect();
            for &p in &want {
                q.push(p);
            }
            assert_eq!(q.len(), n as usize);
            assert_eq!(q.is_empty(), n == 0);
            assert_eq!(q.iter().copied().collect::<Vec<_>>(), want, "{n}");
            assert_eq!(q.first(), want.first());
            // Inline points first: a spill only ever follows full inline slots.
            assert_eq!(q.spill.len(), (n as usize).saturating_sub(INLINE_POINTS));
            let collected: Queued = want.iter().copied().collect();
            assert_eq!(collected.iter().copied().collect::<Vec<_>>(), want, "{n}");
            // Appending keeps both orders, whatever each side holds inline or spilled.
            for m in [0, 1, 2, 3, 4, 9] {
                let later: Vec<Slot> = (0..m).map(|i| sl(100 + i, 0.0)).collect();
                let mut a: Queued = want.iter().copied().collect();
                a.append(later.iter().copied().collect());
                let all: Vec<Slot> = want.iter().chain(&later).copied().collect();
                assert_eq!(a.iter().copied().collect::<Vec<_>>(), all, "{n}+{m}");
            }
        }
    }

    #[test]
    fn queued_sizes_its_spill_for_the_points_it_expects() {
        for n in 0..=INLINE_POINTS {
            assert_eq!(Queued::with_capacity(n).spill.capacity(), 0, "{n}");
        }
        let q = Queued::with_capacity(INLINE_POINTS + 1);
        assert!(q.spill.capacity() >= SPILL_CAPACITY);
        let mut q = Queued::with_capacity(100);
        let cap = q.spill.capacity();
        assert!(cap >= 100 - INLINE_POINTS);
        for i in 0..100 {
            q.push(sl(i, 0.0));
        }
        assert_eq!(
            q.spill.capacity(),
            cap,
            "no regrowth up to the expected count"
        );
    }

    #[test]
    fn slots_hold_whisper_timestamps_exactly() {
        assert_eq!(std::mem::size_of::<Slot>(), 12);
        // What the memory figures in the docs and README assume.
        assert_eq!(std::mem::size_of::<Entry>(), 128);
        // `Entry`'s layout: the name and the spill vector in the first cache line, the inline
        // points in the second.
        assert_eq!(std::mem::align_of::<Entry>(), 64);
        assert!(std::mem::offset_of!(Entry, queued.spill) + size_of::<Vec<Slot>>() <= 64);
        assert!(std::mem::offset_of!(Entry, queued.inline) >= 64);
        for (t, v) in [
            (0, 0.0),
            (u32::MAX as i64, -0.0),
            (1_700_000_000, f64::INFINITY),
        ] {
            let s = Slot::new(pt(t, v)).unwrap();
            assert_eq!(s.point().timestamp, t);
            assert_eq!(s.point().value.to_bits(), v.to_bits());
        }
        assert!(Slot::new(pt(-1, 1.0)).is_none());
        assert!(Slot::new(pt(u32::MAX as i64 + 1, 1.0)).is_none());
        assert_eq!(Slot::clamped(pt(-5, 1.0)).point(), pt(0, 1.0));
    }

    #[test]
    fn normalize_sorts_and_keeps_last_write() {
        let v = vec![pt(3, 1.0), pt(1, 1.0), pt(3, 2.0), pt(2, 1.0), pt(1, 5.0)];
        assert_eq!(normalize(v), vec![pt(1, 5.0), pt(2, 1.0), pt(3, 2.0)]);
        assert_eq!(normalize(vec![]), vec![]);
        assert_eq!(
            normalize(vec![pt(1, 1.0), pt(2, 2.0)]),
            vec![pt(1, 1.0), pt(2, 2.0)]
        );
        assert_eq!(normalize(vec![pt(1, 1.0), pt(1, 2.0)]), vec![pt(1, 2.0)]);
    }

    #[test]
    fn shard_index_spreads_similar_names() {
        let mask = 63;
        let mut counts = [0usize; 64];
        for i in 0..64_000 {
            counts[shard_index(
                hash_name(format!("servers.host{i:05}.cpu.user").as_bytes()),
                mask,
            )] += 1;
        }
        // 1000 expected per shard; a weak hash would leave some nearly empty.
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn map_hash_low_bits_see_last_bytes() {
        let mut buckets = std::collections::HashSet::new();
        for i in 0..256 {
            buckets.insert(hash_name(format!("a.b.c.metric{i:03}").as_bytes()) & 0xff);
        }
        assert!(
            buckets.len() > 140,
            "only {} distinct low bytes",
            buckets.len()
        );
    }

    #[test]
    fn same_name_is_slice_equality() {
        // Every length around the 4/8/16-byte compare widths, a difference at each position.
        for n in 0..50usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_name(&a, &a.clone()), "{n}");
            assert!(!same_name(&a, &a[..n.saturating_sub(1)]) || n == 0, "{n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x01;
                assert!(!same_name(&a, &b), "{n} {i}");
            }
        }
    }

    #[test]
    fn hash_sees_every_byte_and_the_length() {
        for n in 0..50usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let h = hash_name(&a);
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x01;
                assert_ne!(hash_name(&b), h, "{n} {i}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert_ne!(hash_name(&longer), h, "{n}");
        }
    }

    #[test]
    fn generations_track_oldest() {
        let mut g = Generations::default();
        assert_eq!(g.oldest(), None);
        g.inc(1);
        g.inc(1);
        g.inc(3);
        assert_eq!(g.oldest(), Some(1));
        g.dec(1);
        assert_eq!(g.oldest(), Some(1));
        g.dec(1);
        assert_eq!(g.oldest(), Some(3));
        g.dec(7); // unknown: ignored
        g.dec(3);
        assert_eq!(g.oldest(), None);
    }

    #[test]
    fn flight_lifecycle_and_stale_tickets() {
        let now = Instant::now();
        let mut s = Shard::default();
        let h = hash_name(b"m");
        let key = Key {
            hash: h,
            name: Name::new("m"),
        };
        assert!(s.add(h, "m", sl(1, 1.0), 0));
        assert!(!s.add(h, "m", sl(2, 1.0), 0));
        let (raw, ticket) = s.pop(&key, now).expect("poppable");
        assert_eq!(raw.len(), 2);
        assert!(s.pop(&key, now).is_none(), "already in flight");
        // New point while in flight: not poppable until confirm.
        assert!(!s.add(h, "m", sl(3, 1.0), 1));
        assert_eq!(s.oldest_generation(), Some(0));
        assert!(
            s.confirm(h, "m", ticket + 1).is_none(),
            "wrong ticket ignored"
        );
        let r = s.confirm(h, "m", ticket).expect("in flight");
        assert_eq!(r.freed, 2);
        assert!(r.poppable);
        assert!(r.oldest_advanced, "generation 0 had only this flight");
        assert_eq!(s.oldest_generation(), Some(1));
        assert!(
            s.confirm(h, "m", ticket).is_none(),
            "double confirm ignored"
        );
        let (_, t2) = s.pop(&key, now).expect("poppable");
        s.confirm(h, "m", t2).expect("in flight");
        assert_eq!(s.metrics(), 0);
        assert_eq!(s.oldest_generation(), None);
        assert_eq!(s.in_flight, 0);
        assert_eq!(s.accepted, 3);
    }

    /// Entries keep their hash through the table's growth and through the in-place rehash
    /// that removals (one per persisted metric) lead to: every name stays findable.
    #[test]
    fn entries_survive_growth_and_rehash_after_removals() {
        let now = Instant::now();
        let mut s = Shard::default();
        let name = |i: usize| format!("servers.host{i:04}.cpu.user");
        let mut live = std::collections::BTreeSet::new();
        for round in 0..6 {
            for i in round * 500..round * 500 + 1000 {
                let n = name(i);
                s.add(hash_name(n.as_bytes()), &n, sl(i as i64, 1.0), 0);
                live.insert(i);
            }
            // Persist every other live metric: pop + confirm removes its entry.
            for i in live
                .iter()
                .copied()
                .filter(|i| i % 2 == round % 2)
                .collect::<Vec<_>>()
            {
                let n = name(i);
                let h = hash_name(n.as_bytes());
                let key = Key {
                    hash: h,
                    name: Name::new(&n),
                };
                let (_, ticket) = s.pop(&key, now).expect("queued");
                s.confirm(h, &n, ticket).expect("in flight");
                live.remove(&i);
            }
            assert_eq!(s.metrics(), live.len());
            for &i in &live {
                let n = name(i);
                let got = s.get_raw(hash_name(n.as_bytes()), &n);
                assert!(
                    got.is_some_and(|p| p.iter().any(|p| p.timestamp == i as i64)),
                    "{n}"
                );
            }
        }
    }

    #[test]
    fn oldest_advances_only_with_the_generations_last_tag() {
        let now = Instant::now();
        let mut s = Shard::default();
        let mut tickets = Vec::new();
        for n in ["a", "b", "c"] {
            let h = hash_name(n.as_bytes());
            assert!(s.add(h, n, sl(1, 1.0), 0));
            let key = Key {
                hash: h,
                name: Name::new(n),
            };
            tickets.push((h, n, s.pop(&key, now).expect("poppable").1));
        }
        let (ha, a, ta) = tickets[0];
        let r = s.requeue(ha, &Arc::from(a), ta, vec![pt(1, 1.0)], None, now);
        assert!(!r.expect("in flight").oldest_advanced, "a is queued again");
        // Two of generation 0's three tags go: a flush of it has nothing to see yet.
        for &(h, n, t) in &tickets[1..] {
            assert!(!s.confirm(h, n, t).expect("in flight").oldest_advanced);
        }
        let key = Key {
            hash: ha,
            name: Name::new(a),
        };
        let (_, t) = s.pop(&key, now).expect("requeued");
        assert!(s.confirm(ha, a, t).expect("in flight").oldest_advanced);
        assert_eq!(s.oldest_generation(), None);
    }

    #[test]
    fn names_inline_and_heap_with_one_hash_kept_apart() {
        let mut s = Shard::default();
        let short = "a.b";
        let long = "x".repeat(INLINE_NAME + 1);
        let edge = "y".repeat(INLINE_NAME);
        assert!(matches!(Name::new(&edge), Name::Inline { .. }));
        assert!(matches!(Name::new(&long), Name::Heap(_)));
        // Force every name onto one hash: only the name comparison tells them apart. (Three
        // entries fit the table's first allocation, so no rehash with the real hashes.)
        for (i, n) in [short, long.as_str(), edge.as_str()].iter().enumerate() {
            assert!(s.add(7, n, sl(i as i64, 1.0), 0));
            assert!(!s.add(7, n, sl(i as i64 + 10, 1.0), 0));
        }
        assert_eq!(s.metrics(), 3);
        for (i, n) in [short, long.as_str(), edge.as_str()].iter().enumerate() {
            let raw = s.get_raw(7, n).expect("cached");
            assert_eq!(raw, vec![pt(i as i64, 1.0), pt(i as i64 + 10, 1.0)], "{n}");
        }
        let mut names: Vec<String> = Vec::new();
        let mut arcs = Vec::new();
        s.names(&mut arcs);
        names.extend(arcs.iter().map(|a| a.to_string()));
        names.sort();
        assert_eq!(names, [short.to_string(), long.clone(), edge.clone()]);
    }
}
