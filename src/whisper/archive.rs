//! Reading, writing and propagating points inside one archive, point for point as whisper.py
//! 1.1.x does (`file_update`, `__archive_update_many`, `__propagate`, `__archive_fetch`), but
//! with batched I/O: a contiguous span of slots is read or written with one call.
//!
//! Ring layout: the timestamp stored in an archive's first slot is its *base*; interval `t` lives
//! in slot `floor((t - base) / spp) mod points`. A base of 0 means "empty": the next write lands
//! in slot 0 and becomes the base.

use super::Series;
use super::format::{
    AggregationMethod, ArchiveInfo, Header, POINT_SIZE, decode_point, encode_point,
};
use super::map::View;
use crate::error::{Error, Result};

/// whisper.py's `aggregate()`. `neighbors` holds every slot of the propagation window (None =
/// unknown); it has at least one known value. Python's `max`/`min` keep the first of equal
/// elements, so comparisons are strict; `sum` adds left to right from 0 (CPython ≤ 3.11 `sum`,
/// no compensation).
pub fn aggregate(method: AggregationMethod, neighbors: &[Option<f64>]) -> f64 {
    let known = neighbors.iter().flatten().copied();
    let first = known.clone().next().unwrap_or(f64::NAN);
    match method {
        AggregationMethod::Average => {
            let (sum, n) = known.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
            sum / n as f64
        }
        AggregationMethod::Sum => known.fold(0.0, |s, v| s + v),
        AggregationMethod::Last => known.last().unwrap_or(f64::NAN),
        AggregationMethod::Max => known.fold(first, |m, v| if v > m { v } else { m }),
        AggregationMethod::Min => known.fold(first, |m, v| if v < m { v } else { m }),
        AggregationMethod::AvgZero => {
            let sum = neighbors.iter().fold(0.0, |s, v| s + v.unwrap_or(0.0));
            sum / neighbors.len() as f64
        }
        AggregationMethod::AbsMax => {
            known.fold(first, |m, v| if v.abs() > m.abs() { v } else { m })
        }
        AggregationMethod::AbsMin => {
            known.fold(first, |m, v| if v.abs() < m.abs() { v } else { m })
        }
    }
}

/// The iteration order of CPython's `set(keys)` for non-negative ints below 2^61 (whose hash is
/// the value itself), reproducing `setobject.c` (3.x: 8-slot start, 10-slot linear probe runs,
/// perturbed re-probe, resize at 60% fill to the next power of two above 4×used).
///
/// whisper.py propagates to each lower interval in this order, and when a lower archive is
/// still empty the first successful propagation fixes its base, i.e. where the ring starts on
/// disk; a byte-identical file needs the same order.
pub fn py_set_order(keys: impl IntoIterator<Item = u64>) -> Vec<u64> {
    const MIN_SIZE: usize = 8;
    const LINEAR_PROBES: usize = 9;
    const PERTURB_SHIFT: u32 = 5;

    fn next_probe(i: usize, perturb: &mut u64, mask: usize) -> usize {
        *perturb >>= PERTURB_SHIFT;
        (i.wrapping_mul(5)
            .wrapping_add(1)
            .wrapping_add(*perturb as usize))
            & mask
    }

    fn insert(table: &mut [Option<u64>], key: u64, clean: bool) -> bool {
        let mask = table.len() - 1;
        let mut perturb = key;
        let mut i = key as usize & mask;
        loop {
            let run = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for entry in &mut table[i..=i + run] {
                match *entry {
                    None => {
                        *entry = Some(key);
                        return true;
                    }
                    Some(k) if !clean && k == key => return false,
                    Some(_) => {}
                }
            }
            i = next_probe(i, &mut perturb, mask);
        }
    }

    let mut table: Vec<Option<u64>> = vec![None; MIN_SIZE];
    let mut used = 0usize;
    for key in keys {
        if !insert(&mut table, key, false) {
            continue;
        }
        used += 1;
        let mask = table.len() - 1;
        // No deletions happen, so `fill == used`.
        if used * 5 >= mask * 3 {
            let min_used = if used > 50_000 { used * 2 } else { used * 4 };
            let mut size = MIN_SIZE;
            while size <= min_used {
                size <<= 1;
            }
            let old = std::mem::replace(&mut table, vec![None; size]);
            for k in old.into_iter().flatten() {
                insert(&mut table, k, true);
            }
        }
    }
    table.into_iter().flatten().collect()
}

/// Buffers reused across calls so that a steady stream of updates allocates nothing. One set
/// per thread ([`with_scratch`]), not per open file: a pool of 30,000 files would otherwise
/// hold about 4 KB of buffers each.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Points of the current call in chronological order.
    pub points: Vec<(i64, f64)>,
    /// Step-aligned timestamps of the points being written.
    aligned: Vec<i64>,
    /// Packed runs for the archive being written.
    run_bytes: Vec<u8>,
    /// (first interval, byte range in `run_bytes`) per run.
    runs: Vec<(i64, usize, usize)>,
    /// Lower intervals to propagate, in whisper.py's order.
    intervals: Vec<i64>,
    /// Higher-archive slots read for propagation.
    read: Vec<u8>,
    neighbors: Vec<Option<f64>>,
    /// (slot, interval, value) to write into the lower archive.
    placed: Vec<(usize, i64, f64)>,
    /// Packed lower-archive run being written.
    out: Vec<u8>,
}

/// Bytes of buffers a thread keeps between calls; a larger call (a long fetch) frees its
/// buffers afterwards instead of holding them for the thread's life.
const SCRATCH_KEEP: usize = 256 * 1024;

impl Scratch {
    fn bytes(&self) -> usize {
        fn b<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        b(&self.points)
            + b(&self.aligned)
            + b(&self.run_bytes)
            + b(&self.runs)
            + b(&self.intervals)
            + b(&self.read)
            + b(&self.neighbors)
            + b(&self.placed)
            + b(&self.out)
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's buffers (a fresh set if they are in use further up the stack,
/// which no caller does today).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => {
            let r = f(&mut s);
            if s.bytes() > SCRATCH_KEEP {
                *s = Scratch::default();
            }
            r
        }
        Err(_) => f(&mut Scratch::default()),
    })
}

/// I/O on the archives of one open file. `bases` caches each archive's non-zero base: once set,
/// a base only changes by whole laps (`points * spp`), which map every interval to the same slot.
pub(crate) struct Archives<'a> {
    /// Reads (mapped or pread) and writes (pwrite), checked once against truncation.
    pub io: View<'a>,
    pub header: &'a Header,
    pub bases: &'a mut [u32],
    pub scratch: &'a mut Scratch,
}

fn floor_mod(a: i64, m: i64) -> i64 {
    a.rem_euclid(m)
}

fn align(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step)
}

/// whisper.py's `startInterval = previousInterval - step * (numberOfPoints - 1)` for a run
/// being closed: its first interval, except after the `not previousInterval` quirk.
fn close_run(run: Option<&mut (i64, usize, usize)>, last: Option<i64>, step: i64) {
    if let (Some(run), Some(last)) = (run, last) {
        run.0 = last - step * ((run.2 - run.1) / POINT_SIZE) as i64 + step;
    }
}

/// `align(t, step)` for ascending `t`, given the previous result: consecutive points usually
/// fall in the same or the next interval, which spares a 64-bit division per point.
#[inline]
fn align_next(prev: Option<i64>, t: i64, step: i64) -> i64 {
    if let Some(p) = prev {
        let d = t.wrapping_sub(p);
        if (0..step).contains(&d) {
            return p;
        }
        if (step..2 * step).contains(&d) {
            return p + step;
        }
    }
    align(t, step)
}

impl Archives<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.io.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.io.write_at(buf, offset)
    }

    fn info(&self, index: usize) -> &ArchiveInfo {
        &self.header.archives[index]
    }

    /// The archive's base interval, read once and then cached while non-zero.
    pub fn base(&mut self, index: usize) -> Result<u32> {
        if self.bases[index] != 0 {
            return Ok(self.bases[index]);
        }
        let mut b = [0u8; POINT_SIZE];
        self.read_at(&mut b, u64::from(self.info(index).offset))?;
        let (base, _) = decode_point(&b);
        self.bases[index] = base;
        Ok(base)
    }

    /// Slot of `interval` relative to `base` (Python floor division and modulo).
    fn slot(&self, index: usize, base: u32, interval: i64) -> usize {
        let a = self.info(index);
        let dist = (interval - i64::from(base)).div_euclid(i64::from(a.seconds_per_point));
        floor_mod(dist, i64::from(a.points)) as usize
    }

    /// Reads `count` (≤ points) slots starting at `start` into `buf`, wrapping at the archive end.
    fn read_slots_into(
        &self,
        index: usize,
        start: usize,
        count: usize,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let a = self.info(index);
        let n = a.points as usize;
        buf.clear();
        buf.resize(count * POINT_SIZE, 0);
        let first = count.min(n - start);
        let (head, tail) = buf.split_at_mut(first * POINT_SIZE);
        self.read_at(head, u64::from(a.offset) + (start * POINT_SIZE) as u64)?;
        if !tail.is_empty() {
            self.read_at(tail, u64::from(a.offset))?;
        }
        Ok(())
    }

    fn read_slots(&self, index: usize, start: usize, count: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_slots_into(index, start, count, &mut buf)?;
        Ok(buf)
    }

    /// Writes packed points starting at slot `start`: up to the archive end, then the rest from
    /// slot 0 — whisper.py's split write. whisper.py writes an over-long rest straight on into
    /// the next archive; here it keeps wrapping so that no byte outside the archive changes.
    fn write_slots(&self, index: usize, start: usize, bytes: &[u8]) -> Result<()> {
        let a = self.info(index);
        let size = a.points as usize * POINT_SIZE;
        let first = bytes.len().min(size - start * POINT_SIZE);
        self.write_at(
            &bytes[..first],
            u64::from(a.offset) + (start * POINT_SIZE) as u64,
        )?;
        for chunk in bytes[first..].chunks(size) {
            self.write_at(chunk, u64::from(a.offset))?;
        }
        Ok(())
    }

    /// whisper.py `file_update` after the coverage check: `archive` covers `timestamp`.
    pub fn update_one(&mut self, index: usize, interval: i64, value: f64) -> Result<()> {
        let ts = to_u32(interval)?;
        let mut point = [0u8; POINT_SIZE];
        encode_point(&mut point, ts, value);
        let base = self.base(index)?;
        let slot = if base == 0 {
            0
        } else {
            self.slot(index, base, interval)
        };
        self.write_slots(index, slot, &point)?;
        if base == 0 {
            self.bases[index] = ts;
        }
        for lower in index + 1..self.header.archives.len() {
            let mut intervals = std::mem::take(&mut self.scratch.intervals);
            intervals.clear();
            intervals.push(align(
                interval,
                i64::from(self.info(lower).seconds_per_point),
            ));
            let propagated = self.propagate(lower - 1, lower, &intervals);
            self.scratch.intervals = intervals;
            if !propagated? {
                break;
            }
        }
        Ok(())
    }

    /// whisper.py `__archive_update_many`: `points` are chronological (ties in the order
    /// whisper.py leaves them) and all belong to archive `index`.
    pub fn update_many(&mut self, index: usize, points: &[(i64, f64)]) -> Result<()> {
        let step = i64::from(self.info(index).seconds_per_point);
        let mut aligned = std::mem::take(&mut self.scratch.aligned);
        aligned.clear();
        let mut prev = None;
        for &(t, _) in points {
            let a = align_next(prev, t, step);
            aligned.push(a);
            prev = Some(a);
        }
        // Ascending, so the ends bound every interval.
        if let (Some(&lo), Some(&hi)) = (aligned.first(), aligned.last())
            && let Err(e) = to_u32(lo).and(to_u32(hi))
        {
            self.scratch.aligned = aligned;
            return Err(e);
        }
        let mut bytes = std::mem::take(&mut self.scratch.run_bytes);
        let mut runs = std::mem::take(&mut self.scratch.runs);
        // Sized once for the worst case (every point its own interval), then cut to `len`.
        bytes.clear();
        bytes.resize(points.len() * POINT_SIZE, 0);
        runs.clear();
        let mut len = 0usize;
        let mut previous: Option<i64> = None;
        let next_intervals = aligned.iter().skip(1).map(Some).chain([None]);
        for ((&interval, &(_, value)), next) in aligned.iter().zip(points).zip(next_intervals) {
            // The last point of a run of equal intervals wins.
            if next == Some(&interval) {
                continue;
            }
            // whisper.py tests `not previousInterval`, so a previous interval of 0 also extends
            // the current run.
            let extend = match previous {
                None | Some(0) => true,
                Some(p) => interval == p + step,
            };
            if !extend || runs.is_empty() {
                if let Some(run) = runs.last_mut() {
                    run.2 = len;
                }
                close_run(runs.last_mut(), previous, step);
                runs.push((interval, len, len));
            }
            encode_point(&mut bytes[len..len + POINT_SIZE], interval as u32, value);
            len += POINT_SIZE;
            previous = Some(interval);
        }
        bytes.truncate(len);
        if let Some(run) = runs.last_mut() {
            run.2 = len;
        }
        close_run(runs.last_mut(), previous, step);
        let result = self.write_runs(index, step, &runs, &bytes);
        self.scratch.run_bytes = bytes;
        self.scratch.runs = runs;
        let result = result.and_then(|()| self.propagate_all(index, &aligned));
        self.scratch.aligned = aligned;
        result
    }

    /// The propagation loop of `__archive_update_many`: down the lower archives while at least
    /// one interval propagated.
    fn propagate_all(&mut self, index: usize, aligned: &[i64]) -> Result<()> {
        let mut higher = index;
        for lower in index + 1..self.header.archives.len() {
            let intervals = self.lower_intervals(lower, aligned)?;
            let propagated = self.propagate(higher, lower, &intervals);
            self.scratch.intervals = intervals;
            if !propagated? {
                break;
            }
            higher = lower;
        }
        Ok(())
    }

    fn write_runs(
        &mut self,
        index: usize,
        step: i64,
        runs: &[(i64, usize, usize)],
        bytes: &[u8],
    ) -> Result<()> {
        let Some(&(first_start, _, _)) = runs.first() else {
            return Ok(());
        };
        let mut base = i64::from(self.base(index)?);
        let empty = base == 0;
        if empty {
            base = first_start;
        }
        let n = i64::from(self.info(index).points);
        for &(start, from, to) in runs {
            let slot = floor_mod((start - base).div_euclid(step), n) as usize;
            self.write_slots(index, slot, &bytes[from..to])?;
        }
        if empty {
            // Slot 0 now holds the first run's start (or a whole-lap equivalent of it).
            self.bases[index] = to_u32(base)?;
        }
        Ok(())
    }

    /// The unique lower intervals of `aligned` (ascending) in the order whisper.py
    /// propagates them: CPython set order. That order only shows on disk when the lower
    /// archive is still empty (the first success sets its base) or when two intervals share a
    /// slot; otherwise any order writes the same bytes and the sorted one is used.
    fn lower_intervals(&mut self, lower: usize, aligned: &[i64]) -> Result<Vec<i64>> {
        let lspp = i64::from(self.info(lower).seconds_per_point);
        let mut intervals = std::mem::take(&mut self.scratch.intervals);
        intervals.clear();
        for &t in aligned {
            let iv = align_next(intervals.last().copied(), t, lspp);
            if intervals.last() != Some(&iv) {
                intervals.push(iv);
            }
        }
        let span_fits = match (intervals.first(), intervals.last()) {
            (Some(&lo), Some(&hi)) => (hi - lo) / lspp < i64::from(self.info(lower).points),
            _ => true,
        };
        if !span_fits || self.base(lower)? == 0 {
            let order = py_set_order(intervals.iter().map(|&t| t as u64));
            intervals.clear();
            intervals.extend(order.into_iter().map(|t| t as i64));
        }
        Ok(intervals)
    }

    /// whisper.py `__propagate` for each of `intervals` (lower-aligned) in order, from `higher`
    /// into `lower`; true if at least one wrote a point. Reads the higher archive once for all
    /// intervals and writes the lower points as contiguous runs, with the same final bytes as
    /// whisper.py's one write per interval.
    fn propagate(&mut self, higher: usize, lower: usize, starts: &[i64]) -> Result<bool> {
        if starts.is_empty() {
            return Ok(false);
        }
        let (h, l) = (*self.info(higher), *self.info(lower));
        let hspp = i64::from(h.seconds_per_point);
        let per_lower = (l.seconds_per_point / h.seconds_per_point) as usize;
        let hn = h.points as usize;

        // One read covering every window: [min, max + lspp) when that fits in the archive, the
        // whole archive otherwise. With an empty higher archive whisper.py reads every window
        // from slot 0.
        let hbase = self.base(higher)?;
        let lo = *starts.iter().min().unwrap_or(&0);
        let hi = *starts.iter().max().unwrap_or(&0);
        let span = ((hi - lo) / hspp) as usize + per_lower;
        let mut buf = std::mem::take(&mut self.scratch.read);
        let whole = hbase != 0 && span > hn;
        let read = if hbase == 0 {
            self.read_slots_into(higher, 0, per_lower, &mut buf)
        } else if !whole {
            self.read_slots_into(higher, self.slot(higher, hbase, lo), span, &mut buf)
        } else {
            self.read_slots_into(higher, 0, hn, &mut buf)
        };
        if let Err(e) = read {
            self.scratch.read = buf;
            return Err(e);
        }

        let mut neighbors = std::mem::take(&mut self.scratch.neighbors);
        neighbors.clear();
        neighbors.resize(per_lower, None);
        let mut placed = std::mem::take(&mut self.scratch.placed);
        placed.clear();
        let xff = f64::from(self.header.x_files_factor);
        let mut lbase = self.bases[lower];
        if lbase == 0 {
            lbase = self.base(lower)?;
        }
        let lspp = i64::from(l.seconds_per_point);
        let ln = l.points as usize;
        // (previous start, its `first`, its lower slot): consecutive starts step by one slot,
        // which spares the divisions below.
        let mut prev: Option<(i64, usize, usize)> = None;
        for &start in starts {
            let next_of = prev.filter(|p| start == p.0 + lspp);
            let first = if hbase == 0 {
                0
            } else if whole {
                self.slot(higher, hbase, start)
            } else if let Some((_, f, _)) = next_of {
                f + per_lower
            } else {
                ((start - lo) / hspp) as usize
            };
            let mut known = 0usize;
            for (i, slot) in neighbors.iter_mut().enumerate() {
                let idx = if whole { (first + i) % hn } else { first + i };
                let (ts, value) = decode_point(&buf[idx * POINT_SIZE..]);
                *slot = (i64::from(ts) == start + i as i64 * hspp).then_some(value);
                known += usize::from(slot.is_some());
            }
            if known == 0 || (known as f64 / per_lower as f64) < xff {
                continue;
            }
            let value = aggregate(self.header.aggregation, &neighbors);
            // Placed in whisper.py's order; the first write into an empty archive sets its base.
            let slot = if lbase == 0 {
                lbase = to_u32(start)?;
                0
            } else if let Some((_, _, ls)) = next_of {
                if ls + 1 == ln { 0 } else { ls + 1 }
            } else {
                self.slot(lower, lbase, start)
            };
            placed.push((slot, start, value));
            prev = Some((start, first, slot));
        }
        self.scratch.read = buf;
        self.scratch.neighbors = neighbors;
        if placed.is_empty() {
            self.scratch.placed = placed;
            return Ok(false);
        }
        self.bases[lower] = lbase;
        let result = self.write_placed(lower, &mut placed);
        self.scratch.placed = placed;
        result.map(|()| true)
    }

    /// Writes (slot, interval, value) entries, later entries winning a shared slot, as runs of
    /// consecutive slots.
    fn write_placed(&mut self, lower: usize, placed: &mut [(usize, i64, f64)]) -> Result<()> {
        // Stable sort keeps whisper.py's order among entries of the same slot.
        if !placed.is_sorted_by_key(|p| p.0) {
            placed.sort_by_key(|p| p.0);
        }
        let mut out = std::mem::take(&mut self.scratch.out);
        out.clear();
        let mut run_start = 0usize;
        let mut result = Ok(());
        let mut i = 0;
        while i < placed.len() {
            let mut j = i;
            while j + 1 < placed.len() && placed[j + 1].0 == placed[i].0 {
                j += 1;
            }
            let (slot, ts, value) = placed[j];
            if !out.is_empty() && slot != run_start + out.len() / POINT_SIZE {
                result = self.write_slots(lower, run_start, &out);
                if result.is_err() {
                    break;
                }
                out.clear();
            }
            if out.is_empty() {
                run_start = slot;
            }
            let at = out.len();
            out.resize(at + POINT_SIZE, 0);
            encode_point(&mut out[at..], ts as u32, value);
            i = j + 1;
        }
        if result.is_ok() && !out.is_empty() {
            result = self.write_slots(lower, run_start, &out);
        }
        self.scratch.out = out;
        result
    }

    /// whisper.py `__archive_fetch` on a range already clamped by the caller.
    pub fn fetch(&mut self, index: usize, from: i64, until: i64) -> Result<Series> {
        let a = *self.info(index);
        let step = i64::from(a.seconds_per_point);
        let from_interval = align(from, step) + step;
        let mut until_interval = align(until, step) + step;
        if from_interval == until_interval {
            until_interval += step;
        }
        let base = self.base(index)?;
        if base == 0 {
            let n = ((until_interval - from_interval) / step).max(0) as usize;
            return Ok(Series {
                from: from_interval,
                until: until_interval,
                step,
                values: vec![f64::NAN; n],
            });
        }
        let from_slot = self.slot(index, base, from_interval);
        let until_slot = self.slot(index, base, until_interval);
        // whisper.py reads from `fromOffset` to `untilOffset`, wrapping once; equal offsets read
        // the whole archive. So the value count is the slot distance, not (until-from)/step.
        let n = a.points as usize;
        let count = if from_slot < until_slot {
            until_slot - from_slot
        } else {
            n - from_slot + until_slot
        };
        let mut buf = std::mem::take(&mut self.scratch.read);
        if let Err(e) = self.read_slots_into(index, from_slot, count, &mut buf) {
            self.scratch.read = buf;
            return Err(e);
        }
        let values = buf
            .chunks_exact(POINT_SIZE)
            .enumerate()
            .map(|(i, chunk)| {
                let (ts, value) = decode_point(chunk);
                if i64::from(ts) == from_interval + i as i64 * step {
                    value
                } else {
                    f64::NAN
                }
            })
            .collect();
        self.scratch.read = buf;
        Ok(Series {
            from: from_interval,
            until: until_interval,
            step,
            values,
        })
    }

    /// Every slot of archive `index` in file order.
    pub fn read_all(&self, index: usize) -> Result<Vec<(u32, f64)>> {
        let n = self.info(index).points as usize;
        let buf = self.read_slots(index, 0, n)?;
        Ok(buf.chunks_exact(POINT_SIZE).map(decode_point).collect())
    }
}

/// A timestamp as stored on disk; whisper.py fails with `struct.error` outside u32.
pub(crate) fn to_u32(t: i64) -> Result<u32> {
    u32::try_from(t).map_err(|_| {
        Error::TimestampNotCovered(format!("timestamp {t} does not fit in a whisper file"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_per_thread_reentrant_and_bounded() {
        with_scratch(|outer| {
            outer.read.resize(100, 1);
            // Nested use (no caller does it) gets its own buffers, not a panic.
            with_scratch(|inner| assert!(inner.read.is_empty()));
        });
        // Kept: below the bound.
        with_scratch(|s| assert_eq!(s.read.len(), 100));
        with_scratch(|s| s.read.resize(SCRATCH_KEEP + 1, 0));
        with_scratch(|s| assert_eq!(s.bytes(), 0, "a call past the bound frees its buffers"));
        std::thread::spawn(|| with_scratch(|s| assert!(s.read.is_empty())))
            .join()
            .unwrap();
    }

    #[test]
    fn aggregate_follows_whisper_py() {
        let n = [Some(1.0), None, Some(-3.0), Some(3.0), None];
        assert_eq!(aggregate(AggregationMethod::Average, &n), 1.0 / 3.0);
        assert_eq!(aggregate(AggregationMethod::Sum, &n), 1.0);
        assert_eq!(aggregate(AggregationMethod::Last, &n), 3.0);
        assert_eq!(aggregate(AggregationMethod::Max, &n), 3.0);
        assert_eq!(aggregate(AggregationMethod::Min, &n), -3.0);
        assert_eq!(aggregate(AggregationMethod::AvgZero, &n), 1.0 / 5.0);
        // Ties on |v|: the first one wins.
        assert_eq!(aggregate(AggregationMethod::AbsMax, &n), -3.0);
        assert_eq!(
            aggregate(
                AggregationMethod::AbsMin,
                &[Some(2.0), Some(-1.0), Some(1.0)]
            ),
            -1.0
        );
        assert_eq!(
            aggregate(AggregationMethod::AbsMax, &[Some(2.0), Some(-2.0)]),
            2.0
        );
        // Left-to-right summation without compensation.
        assert_eq!(
            aggregate(AggregationMethod::Sum, &[Some(1e16), Some(1.0), Some(1.0)]),
            1e16
        );
    }

    #[test]
    fn py_set_order_matches_cpython() {
        // Captured from CPython 3.11: list(set([...])).
        assert_eq!(py_set_order([3, 1, 2]), vec![1, 2, 3]);
        assert_eq!(py_set_order([8, 16, 1]), vec![8, 16, 1]);
        assert_eq!(
            py_set_order([1700000040, 1700000100, 1700000160]),
            vec![1700000040, 1700000100, 1700000160]
        );
        assert_eq!(py_set_order([5, 5, 5]), vec![5]);
        let many: Vec<u64> = (0..100).map(|i| 1_700_000_000 + 60 * i).collect();
        let order = py_set_order(many.iter().copied());
        assert_eq!(order.len(), 100);
        assert_eq!(
            order[..10],
            [
                1700003840, 1700002820, 1700001800, 1700000780, 1700005400, 1700004380, 1700003360,
                1700002340, 1700001320, 1700000300
            ]
        );
    }
}
