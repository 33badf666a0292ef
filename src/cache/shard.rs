//! One cache shard: the queued and in-flight points of the metrics whose names hash to it.
//!
//! Everything here runs under the shard's mutex, so it is plain single-threaded code; the
//! caller (`Cache`) does the atomics, wake-ups and any sorting that can wait until the lock is
//! released.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Instant;

use super::WriteStrategy;
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

/// Reads up to 8 bytes little-endian, zero-padded.
#[inline]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = bytes.len().min(8);
    w[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(w)
}

/// String hasher for the shard maps, folded-multiply style (wyhash/foldhash).
///
/// `Cache::add` hashes every name twice (shard choice, then the map), so this is on the hot
/// path: std's SipHash would cost more than the rest of `add`, and FxHash leaves the low bits
/// (hashbrown's bucket index) blind to the last bytes of a name, exactly where metric names
/// differ (`host01.cpu` vs `host02.cpu`). 16 bytes per multiply and a splitmix64 finish give
/// both speed and full avalanche. Not DoS-resistant: metric names come from trusted senders,
/// as in go-carbon.
#[derive(Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl NameHasher {
    /// The state before finishing, so the shard index can use a different finaliser than
    /// the map (otherwise every key of a shard would share the bits hashbrown relies on).
    #[inline]
    fn raw(&self) -> u64 {
        self.0
    }
}

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ (bytes.len() as u64).wrapping_mul(K0);
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            h = fold(word(&c[..8]) ^ h ^ K1, word(&c[8..]) ^ K2);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let (a, b) = rest.split_at(rest.len().min(8));
            h = fold(word(a) ^ h ^ K1, word(b) ^ K2);
        }
        self.0 = h;
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = fold(self.0 ^ K0, u64::from(i) ^ K1);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // splitmix64 finaliser
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `BuildHasher` for the shard maps.
pub(crate) type BuildNameHasher = BuildHasherDefault<NameHasher>;

/// The shard a name belongs to: `mask` is `shards - 1`.
///
/// Feeds the bytes exactly as `impl Hash for str` does, then applies murmur3's finaliser
/// (not splitmix64 as the map does) so the shard choice is independent of the map's bits.
#[inline]
pub(crate) fn shard_index(name: &str, mask: usize) -> usize {
    let mut h = NameHasher::default();
    h.write(name.as_bytes());
    h.write_u8(0xff);
    let mut z = h.raw();
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    z ^= z >> 33;
    (z as usize) & mask
}

/// Points taken by a persister and not yet confirmed; kept so reads still see them
/// (go-carbon's `notConfirmed`). Boxed: most entries have no flight, and the box keeps
/// `Entry` at 40 bytes.
pub(crate) struct Flight {
    /// The points as they were queued (arrival order, duplicates kept); the batch has a
    /// normalised copy. Their count is what the flight holds of `Cache::size`.
    points: Vec<Point>,
    /// Flush generation of the oldest of these points.
    generation: u64,
    /// Identifies the batch, so a confirm/requeue of a stale batch (after `drain_all`) is ignored.
    ticket: u64,
}

/// One metric's cached points.
pub(crate) struct Entry {
    /// Points not yet popped, in arrival order (later = newer write), duplicates kept.
    queued: Vec<Point>,
    /// Flush generation of the oldest queued point (meaningful while `queued` is not empty).
    generation: u64,
    /// At most one batch per metric is in flight, so two persisters never race on a file
    /// with the older batch landing last.
    flight: Option<Box<Flight>>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.flight.is_none()
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
}

/// One metric's raw points taken by `Shard::drain`.
pub(crate) type Drained = (Arc<str>, Vec<Point>);

/// The state behind one shard lock.
#[derive(Default)]
pub(crate) struct Shard {
    map: HashMap<Arc<str>, Entry, BuildNameHasher>,
    generations: Generations,
    /// Metrics that may not be popped before the instant (requeue after a failed write or a
    /// create throttle). Rare, so kept out of `Entry`.
    retry: HashMap<Arc<str>, Instant, BuildNameHasher>,
    /// Points accepted by this shard since creation; `Cache::seq` sums them.
    pub accepted: u64,
    /// Batches in flight.
    pub in_flight: usize,
    next_ticket: u64,
}

impl Shard {
    /// Queues one point. Returns true when the metric just became poppable (it had no
    /// queued points and nothing in flight), i.e. the writeout queue has new work.
    #[inline]
    pub fn add(&mut self, name: &str, p: Point, generation: u64) -> bool {
        self.accepted += 1;
        if let Some(e) = self.map.get_mut(name) {
            let first = e.queued.is_empty();
            if first {
                e.generation = generation;
                self.generations.inc(generation);
            }
            push_point(&mut e.queued, p);
            return first && e.flight.is_none();
        }
        let mut queued = Vec::with_capacity(INITIAL_CAPACITY);
        queued.push(p);
        self.map.insert(
            Arc::from(name),
            Entry {
                queued,
                generation,
                flight: None,
            },
        );
        self.generations.inc(generation);
        true
    }

    /// Moves a metric's queued points in flight. Returns the raw points (arrival order) and the
    /// batch ticket, or None if the metric has nothing queued, is already in flight, or must
    /// wait for its retry time.
    pub fn pop(&mut self, name: &str, now: Instant) -> Option<(Vec<Point>, u64)> {
        if !self.retry.is_empty() {
            match self.retry.get(name) {
                Some(&t) if t > now => return None,
                Some(_) => {
                    self.retry.remove(name);
                }
                None => {}
            }
        }
        let e = self.map.get_mut(name)?;
        if e.queued.is_empty() || e.flight.is_some() {
            return None;
        }
        // Points keep arriving at the same rate: give the next run the capacity this one
        // needed, saving the 3–4 reallocations of growing from empty.
        let len = e.queued.len();
        let points = std::mem::replace(&mut e.queued, Vec::with_capacity(len));
        let copy = points.clone();
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
        map: &'a mut HashMap<Arc<str>, Entry, BuildNameHasher>,
        in_flight: &mut usize,
        name: &str,
        ticket: u64,
    ) -> Option<(&'a mut Entry, Box<Flight>)> {
        let e = map.get_mut(name)?;
        if e.flight.as_ref().is_none_or(|f| f.ticket != ticket) {
            return None;
        }
        let flight = e.flight.take()?;
        *in_flight -= 1;
        Some((e, flight))
    }

    /// The batch `ticket` of `name` is persisted: forget its points.
    pub fn confirm(&mut self, name: &str, ticket: u64) -> Option<Released> {
        let (e, flight) = Self::take_flight(&mut self.map, &mut self.in_flight, name, ticket)?;
        let poppable = !e.queued.is_empty();
        let empty = e.is_empty();
        self.generations.dec(flight.generation);
        if empty {
            self.map.remove(name);
        }
        Some(Released {
            freed: flight.points.len(),
            poppable,
        })
    }

    /// The batch `ticket` of `name` failed: put `points` (older than anything queued since the
    /// pop) back in front of the queue. Returns the accounting change; `Released::poppable`
    /// is false while `retry_after` is in the future.
    pub fn requeue(
        &mut self,
        name: &str,
        ticket: u64,
        mut points: Vec<Point>,
        retry_after: Option<Instant>,
        now: Instant,
    ) -> Option<Released> {
        let (e, flight) = Self::take_flight(&mut self.map, &mut self.in_flight, name, ticket)?;
        if !e.queued.is_empty() {
            // The queued points' tag merges into the flight's older one.
            self.generations.dec(e.generation);
            points.append(&mut e.queued);
        }
        e.queued = points;
        e.generation = flight.generation;
        let has_points = !e.queued.is_empty();
        if !has_points {
            // The persister dropped every point: nothing left to write.
            self.generations.dec(flight.generation);
            self.map.remove(name);
        }
        let waiting = match retry_after {
            Some(t) if t > now && has_points => {
                if let Some((key, _)) = self.map.get_key_value(name) {
                    let key = key.clone();
                    self.retry.insert(key, t);
                }
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
        })
    }

    /// Every cached point of `name`, raw: in-flight points first, then queued, so a later
    /// element is always the newer write.
    pub fn get_raw(&self, name: &str) -> Option<Vec<Point>> {
        let e = self.map.get(name)?;
        let flight = e.flight.as_ref().map_or(&[][..], |f| &f.points[..]);
        let mut out = Vec::with_capacity(flight.len() + e.queued.len());
        out.extend_from_slice(flight);
        out.extend_from_slice(&e.queued);
        Some(out)
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
        out: &mut Vec<(i64, Arc<str>)>,
        next_retry: &mut Option<Instant>,
    ) {
        for (name, e) in &self.map {
            if e.queued.is_empty() || e.flight.is_some() {
                continue;
            }
            if !self.retry.is_empty()
                && let Some(&t) = self.retry.get(name)
                && t > now
            {
                *next_retry = Some(next_retry.map_or(t, |r| r.min(t)));
                continue;
            }
            let key = match strategy {
                WriteStrategy::Max => e.queued.len() as i64,
                WriteStrategy::Sorted => e.queued.first().map_or(0, |p| p.timestamp),
                WriteStrategy::Noop => 0,
            };
            out.push((key, name.clone()));
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
            .map(|(name, e)| {
                let mut points = e.flight.map_or_else(Vec::new, |f| f.points);
                let mut queued = e.queued;
                points.append(&mut queued);
                freed += points.len();
                (name, points)
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
        out.extend(self.map.keys().cloned());
    }
}

/// Capacity of a metric's first queued vector: a metric usually gets a few points per
/// write-out cycle, and 4 is what `Vec` would pick anyway.
const INITIAL_CAPACITY: usize = 4;

/// Pushes with 1.5× growth instead of `Vec`'s 2×: at ~10 points per metric this saves about
/// a fifth of the cache's memory, and the copy cost stays amortised O(1).
#[inline]
fn push_point(v: &mut Vec<Point>, p: Point) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 2).max(INITIAL_CAPACITY));
    }
    v.push(p);
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
            counts[shard_index(&format!("servers.host{i:05}.cpu.user"), mask)] += 1;
        }
        // 1000 expected per shard; a weak hash would leave some nearly empty.
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn map_hash_low_bits_see_last_bytes() {
        use std::hash::BuildHasher;
        let b = BuildNameHasher::default();
        let mut buckets = std::collections::HashSet::new();
        for i in 0..256 {
            buckets.insert(b.hash_one(format!("a.b.c.metric{i:03}").as_str()) & 0xff);
        }
        assert!(
            buckets.len() > 140,
            "only {} distinct low bytes",
            buckets.len()
        );
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
        assert!(s.add("m", pt(1, 1.0), 0));
        assert!(!s.add("m", pt(2, 1.0), 0));
        let (raw, ticket) = s.pop("m", now).expect("poppable");
        assert_eq!(raw.len(), 2);
        assert!(s.pop("m", now).is_none(), "already in flight");
        // New point while in flight: not poppable until confirm.
        assert!(!s.add("m", pt(3, 1.0), 1));
        assert_eq!(s.oldest_generation(), Some(0));
        assert!(s.confirm("m", ticket + 1).is_none(), "wrong ticket ignored");
        let r = s.confirm("m", ticket).expect("in flight");
        assert_eq!(r.freed, 2);
        assert!(r.poppable);
        assert_eq!(s.oldest_generation(), Some(1));
        assert!(s.confirm("m", ticket).is_none(), "double confirm ignored");
        let (_, t2) = s.pop("m", now).expect("poppable");
        s.confirm("m", t2).expect("in flight");
        assert_eq!(s.metrics(), 0);
        assert_eq!(s.oldest_generation(), None);
        assert_eq!(s.in_flight, 0);
        assert_eq!(s.accepted, 3);
    }
}
