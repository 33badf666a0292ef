//! The write-ahead journal wired into the engine: every add path logs its points here before
//! they enter the cache, open replays what a crash left, and a background thread deletes
//! segments once every point in them is in whisper files.
//!
//! # Ordering
//! An adder appends its points to the journal, then puts them into the cache, holding `gate`
//! shared from before the append until after the cache insert. The releaser takes `gate`
//! exclusively for an instant and reads the journal's written position `L`: no adder is then
//! between its append and its insert, so every record up to `L` is in the cache, and a
//! `Cache::wait_persisted` started afterwards covers all of them. Once it returns, the
//! segments up to `L` only hold points that are in whisper files and are deleted.
//!
//! A point is journaled before the cache decides on it, so a point a full cache refuses
//! (`[cache] overflow = "error"`) may still be written after a crash replays it: refused
//! points are at-least-never-lost, accepted points are never lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};

use crate::cache::AddBatch;
use crate::config::Config;
use crate::engine::AddLinesOutcome;
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::journal::{Journal, Replay, ReplayReport};
use crate::points::Point;
use crate::stats::{Snapshot, Stats};

/// Held by an adder from its journal append until its points are in the cache (see the
/// module docs); dropping it lets the releaser go on.
pub(crate) type Logged<'a> = RwLockReadGuard<'a, ()>;

/// How often the releaser looks for sealed segments to delete.
const RELEASE_PERIOD: Duration = Duration::from_secs(1);

/// The engine's journal and its counters.
#[derive(Debug)]
pub(crate) struct Durability {
    journal: Journal,
    gate: RwLock<()>,
    /// Points put back into the cache from the journal at open.
    replayed: AtomicU64,
    /// Appends or replays that failed for another reason than `max-size`.
    errors: AtomicU64,
    /// Points refused because the journal reached `max-size`.
    refused: AtomicU64,
    /// Segments deleted because their points are in whisper files.
    released: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Kicks the releaser early (an append found the journal full).
    kick: Mutex<bool>,
    kick_cond: Condvar,
}

impl Durability {
    /// Opens `<data-dir>/.journal` as `[journal]` says. A `max-size` that could never hold
    /// two segments gets smaller segments (a quarter of it), since only sealed segments can be
    /// released and a journal that cannot seal its only segment would stay full for ever.
    pub(crate) fn open(config: &Config) -> Result<(Durability, Replay)> {
        let mut opts = config.journal.options();
        if opts.max_size > 0 && opts.segment_size > opts.max_size / 4 {
            opts.segment_size = (opts.max_size / 4).max(4096);
        }
        if opts.max_size > 0 && opts.max_size < 4 * opts.segment_size {
            return Err(Error::Config {
                file: "<config>".into(),
                line: 0,
                message: format!(
                    "[journal] max-size = {} is too small (at least 16 KiB)",
                    opts.max_size
                ),
            });
        }
        let (journal, replay) = Journal::open(&config.whisper.data_dir, opts)?;
        let d = Durability {
            journal,
            gate: RwLock::new(()),
            replayed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            released: AtomicU64::new(0),
            last_error: Mutex::new(None),
            kick: Mutex::new(false),
            kick_cond: Condvar::new(),
        };
        let r = replay.report();
        let damaged = r.torn.len() + r.corrupt.len();
        if damaged > 0 {
            d.errors.fetch_add(damaged as u64, Relaxed);
            *d.last_error.lock() = Some(describe_damage(r));
        }
        Ok((d, replay))
    }

    /// Appends `len` points (`entries()` yields them; called again to retry) and returns the
    /// guard to hold until they are in the cache. A full journal refuses them with
    /// `Error::Full` (counted in `overflow`), or with `wait` retries until there is room or
    /// the engine shuts down.
    pub(crate) fn log<'a, I>(
        &self,
        entries: impl Fn() -> I,
        len: usize,
        wait: bool,
        stats: &Stats,
        shutdown: &AtomicBool,
    ) -> Result<Logged<'_>>
    where
        I: Iterator<Item = (&'a str, Point)>,
    {
        loop {
            let guard = self.gate.read();
            match self.journal.append_iter(entries(), len) {
                Ok(_) => return Ok(guard),
                Err(Error::Full { .. }) => {
                    drop(guard);
                    self.kick_releaser();
                    if wait && !shutdown.load(Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    self.refused.fetch_add(len as u64, Relaxed);
                    stats.overflow.fetch_add(len as u64, Relaxed);
                    *self.last_error.lock() = Some(format!(
                        "journal {}: max-size reached, {len} points refused until whisper \
                         writes let segments be released",
                        self.journal.dir().display()
                    ));
                    return Err(Error::Full {
                        accepted: 0,
                        refused: len as u64,
                    });
                }
                Err(e) => {
                    self.errors.fetch_add(1, Relaxed);
                    *self.last_error.lock() = Some(e.to_string());
                    return Err(e);
                }
            }
        }
    }

    /// Points of `batch` as `log` wants them.
    pub(crate) fn log_batch(
        &self,
        batch: &AddBatch<'_>,
        wait: bool,
        stats: &Stats,
        shutdown: &AtomicBool,
    ) -> Result<Logged<'_>> {
        self.log(|| batch.rest(0), batch.len(), wait, stats, shutdown)
    }

    /// Wakes the releaser now: the journal filled up, or the handle is closing.
    pub(crate) fn kick_releaser(&self) {
        *self.kick.lock() = true;
        self.kick_cond.notify_all();
    }

    /// Fills the journal fields of a stats snapshot.
    pub(crate) fn fill(&self, out: &mut Snapshot) {
        let s = self.journal.stats();
        out.journal_bytes = self.journal.size();
        out.journal_segments = self.journal.segments() as u64;
        out.journal_appends = s.appends;
        out.journal_appended_bytes = s.bytes;
        out.journal_fsyncs = s.fsyncs;
        out.journal_replayed = self.replayed.load(Relaxed);
        out.journal_errors = self.errors.load(Relaxed);
        out.journal_refused = self.refused.load(Relaxed);
        out.journal_released = self.released.load(Relaxed);
    }

    /// Text of the most recent journal failure or damage found at open.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Clean close: every point appended is in whisper files (or a dump), so nothing needs
    /// replaying — delete every segment, the current one included.
    pub(crate) fn retire(&self) {
        let _no_adders = self.gate.write();
        if let Err(e) = self.journal.retire() {
            self.errors.fetch_add(1, Relaxed);
            *self.last_error.lock() = Some(e.to_string());
        }
    }

    /// Deletes the segments whose points are all in whisper files; false if the persisters
    /// did not get there within `timeout`.
    fn release_persisted(&self, shared: &Shared, timeout: Duration) -> bool {
        let upto = {
            let _no_adders = self.gate.write();
            self.journal.written_upto()
        };
        let seq = shared.cache.seq();
        if !shared.cache.wait_persisted(seq, Some(timeout)) {
            return false;
        }
        match self.journal.release(upto) {
            Ok(n) => {
                self.released.fetch_add(n as u64, Relaxed);
            }
            Err(e) => {
                self.errors.fetch_add(1, Relaxed);
                *self.last_error.lock() = Some(e.to_string());
            }
        }
        true
    }
}

fn describe_damage(r: &ReplayReport) -> String {
    let mut parts = Vec::new();
    for t in &r.torn {
        parts.push(format!(
            "segment {} torn at byte {} ({} bytes cut)",
            t.segment, t.offset, t.len
        ));
    }
    for c in &r.corrupt {
        parts.push(format!(
            "segment {} damaged at byte {} ({} bytes skipped)",
            c.segment, c.offset, c.len
        ));
    }
    format!("journal replay: {}", parts.join("; "))
}

/// Puts every replayed point back into the cache (persisters must be running: a journal
/// larger than the cache waits for room). Replayed points are not journaled again: their
/// segments stay until the releaser sees them persisted.
pub(crate) fn replay(shared: &Shared, replay: &Replay) -> Result<u64> {
    let Some(d) = &shared.durability else {
        return Ok(0);
    };
    let mut result = Ok(());
    let n = replay.for_each_record(|entries| {
        if result.is_err() {
            return;
        }
        let mut batch = AddBatch::with_capacity(entries.len());
        for &(name, p) in entries {
            batch.push(name, p);
        }
        let added = shared.cache.add_batch(&mut batch);
        for (name, p) in batch.rest(added) {
            loop {
                match shared
                    .cache
                    .add_waiting(name, p, Duration::from_millis(100))
                {
                    Ok(_) => break,
                    // Room comes from persisters; without them a full cache stays full.
                    Err(Error::Full { .. })
                        if !shared.shutdown.load(Relaxed) && shared.config.whisper.enabled =>
                    {
                        continue;
                    }
                    Err(e) => {
                        result = Err(e);
                        return;
                    }
                }
            }
        }
        d.replayed.fetch_add(entries.len() as u64, Relaxed);
    });
    match n.and(result) {
        Ok(()) => Ok(d.replayed.load(Relaxed)),
        Err(e) => {
            d.errors.fetch_add(1, Relaxed);
            *d.last_error.lock() = Some(format!("journal replay: {e}"));
            Err(e)
        }
    }
}

/// The releaser thread: every second (or when an append found the journal full), if sealed
/// segments exist, waits for the points before them to be persisted and deletes them.
/// Does nothing while `[whisper] enabled = false` (no point is ever persisted then).
pub(crate) fn release_loop(shared: &Shared) {
    let Some(d) = &shared.durability else {
        return;
    };
    while !shared.shutdown.load(Relaxed) {
        {
            let mut kicked = d.kick.lock();
            if !*kicked {
                d.kick_cond.wait_for(&mut kicked, RELEASE_PERIOD);
            }
            *kicked = false;
        }
        if shared.shutdown.load(Relaxed) || !shared.config.whisper.enabled {
            continue;
        }
        // Only sealed segments can go: with one live segment there is nothing to do, and
        // waiting for persisters would only hurry them (a flush lifts their batching pause).
        if d.journal.segments() > 1 {
            d.release_persisted(shared, Duration::from_secs(1));
        }
    }
}

/// What `Shared::add_batch` does when the journal refused a batch: every point is rejected
/// (none went into the cache), and the batch is emptied.
pub(crate) fn refuse_batch(batch: &mut AddBatch<'_>, out: &mut AddLinesOutcome, e: Error) {
    out.reject(batch.len() as u64, e);
    batch.clear();
}

/// Called by `Carbon::open` once the persisters run and before any listener starts: replays
/// the journal, starts its releaser, and restores a `[dump]`.
pub(crate) fn start(
    shared: &std::sync::Arc<Shared>,
    replayed: Option<&Replay>,
    threads: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<()> {
    if let (Some(r), Some(d)) = (replayed, &shared.durability) {
        if let Some(damage) = d.last_error() {
            *shared.last_write_error.lock() = Some(damage);
        }
        replay(shared, r)?;
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("carbonlite-journal-release".into())
                .spawn(move || release_loop(&s))
                .map_err(|e| Error::io("carbonlite-journal-release", e))?,
        );
    }
    crate::dump::restore_on_open(shared, threads)
}

/// Close, after the final flush: when it succeeded every journaled point is in whisper files
/// and the journal is deleted; when it failed the journal stays for the next open to replay.
pub(crate) fn flushed_on_close(shared: &Shared, flushed: Result<()>) {
    if let (Some(d), Ok(())) = (&shared.durability, flushed) {
        d.retire();
    }
}
