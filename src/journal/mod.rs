//! Write-ahead journal: points accepted by `carbon_add*` are appended here before the call
//! returns, so a crash between acceptance and the whisper write loses nothing acknowledged.
//!
//! # Durability contract
//! [`Journal::append`] returns once its batch is as durable as [`FsyncPolicy`] says:
//! - `Always`: written and `fdatasync`ed. Survives a power loss.
//! - `Interval`: written to the OS (survives the process being killed); a background thread
//!   fsyncs every `fsync_interval`, so a power loss costs at most that much.
//! - `Never`: written to the OS only; the OS decides when it reaches the disk.
//!
//! Appends from many threads are group-committed: while one thread (the leader) writes and
//! fsyncs, the others queue their records; the next leader writes everything queued with one
//! `write` and at most one fsync, and wakes every thread it covered.
//!
//! # Layout
//! `<data-dir>/.journal/` (hidden, so the whisper tree walk and `find` never see it) holds
//! segments `00000000000000000001.journal`, … Each open starts a new segment, so segments
//! found at open are never written again; a segment is sealed when the next record would push
//! it past `segment_size`. Records are framed with magic + length + CRC (see [`record`]).
//!
//! # Replay and release
//! [`Journal::open`] scans the existing segments and returns a [`Replay`] of every intact
//! record in order. A torn tail (a record cut by a crash) is truncated away; a damaged record
//! in the middle is skipped and the scan resumes at the next intact record. The engine puts
//! the replayed points into the cache, persists them, then calls [`Journal::release`] with
//! [`Replay::upto`]; in steady state it releases up to the [`Lsn`] of the newest batch whose
//! points are all in whisper files. Replay is *not* deduplicated: a batch already persisted
//! before a crash is replayed again, which is harmless only because whisper's last write to a
//! slot wins and the replayed value is the same — that idempotence is the engine's to keep
//! (it must not, say, sum replayed points into aggregates).

pub mod record;
pub mod segment;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::points::Point;
use segment::SEGMENT_HEADER_LEN;

/// Name of the journal directory inside the data dir.
pub const DIR_NAME: &str = ".journal";

/// When an append's bytes are forced to disk (see the module docs for what each survives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before `append` returns.
    Always,
    /// fsync from a background thread every `fsync_interval`.
    Interval,
    /// Never fsync; the OS writes back when it likes.
    Never,
}

impl FsyncPolicy {
    /// Parses the config value (`always`, `interval`, `never`).
    pub fn from_name(s: &str) -> Option<FsyncPolicy> {
        match s {
            "always" => Some(FsyncPolicy::Always),
            "interval" => Some(FsyncPolicy::Interval),
            "never" => Some(FsyncPolicy::Never),
            _ => None,
        }
    }
}

/// Called after every successful fsync with the position now durable; lets tests check the
/// policy without timing, and lets the engine count syncs. Runs on the syncing thread, possibly
/// under the journal's I/O lock: keep it short and never call back into the journal.
pub type SyncHook = Arc<dyn Fn(Lsn) + Send + Sync>;

/// How the journal behaves; [`Default`] is `interval` every second, 64 MiB segments, no cap.
#[derive(Clone)]
pub struct JournalOptions {
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
    /// Period of the background fsync under [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
    /// A segment is sealed when the next record would take it past this many bytes (a single
    /// larger record still gets a segment of its own).
    pub segment_size: u64,
    /// Bytes all segments may take together; an append that would exceed it fails with
    /// [`Error::Full`] until [`Journal::release`] frees space. 0 = unlimited.
    pub max_size: u64,
    /// Called after each fsync (tests, counters).
    pub on_sync: Option<SyncHook>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_secs(1),
            segment_size: 64 << 20,
            max_size: 0,
            on_sync: None,
        }
    }
}

impl std::fmt::Debug for JournalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalOptions")
            .field("fsync", &self.fsync)
            .field("fsync_interval", &self.fsync_interval)
            .field("segment_size", &self.segment_size)
            .field("max_size", &self.max_size)
            .field("on_sync", &self.on_sync.is_some())
            .finish()
    }
}

/// A position in the journal: the end of a record (segment id, byte offset in its file).
/// Ordered, so "everything up to this LSN" is well defined across segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn {
    /// Segment id (file name).
    pub segment: u64,
    /// Byte offset just past the record.
    pub offset: u64,
}

/// A damaged span found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Segment id.
    pub segment: u64,
    /// Byte offset of the damage in that segment.
    pub offset: u64,
    /// Bytes skipped (torn tails: bytes truncated).
    pub len: u64,
}

/// What open found in the existing segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Segments scanned.
    pub segments: usize,
    /// Intact records (= append batches) to replay.
    pub records: u64,
    /// Points in them.
    pub entries: u64,
    /// Bytes of intact records.
    pub bytes: u64,
    /// Torn tails truncated away (at most one per segment; normally only the last one).
    pub torn: Vec<Damage>,
    /// Damaged spans skipped in the middle of a segment (the records after them replayed).
    pub corrupt: Vec<Damage>,
}

/// One replayed append batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBatch {
    /// The end of the record, as `append` returned it.
    pub lsn: Lsn,
    /// The batch's points, in append order.
    pub entries: Vec<(String, Point)>,
}

/// The intact records of the segments that existed at open. Their files are not written
/// again, and not deleted before [`Journal::release`] passes them, so this can be read lazily.
#[derive(Debug)]
pub struct Replay {
    report: ReplayReport,
    segments: Vec<ReplaySegment>,
    upto: Lsn,
}

#[derive(Debug)]
struct ReplaySegment {
    id: u64,
    path: PathBuf,
    records: Vec<Range<usize>>,
}

impl Replay {
    /// Counts and damage found at open.
    pub fn report(&self) -> &ReplayReport {
        &self.report
    }

    /// The position just before the first record of this session: once every replayed point
    /// is persisted, `release(upto())` drops all replayed segments.
    pub fn upto(&self) -> Lsn {
        self.upto
    }

    /// Calls `f` for every replayed point in order, reading one segment at a time; returns the
    /// number of points. Errors only if a segment can no longer be read as it was at open.
    pub fn for_each(&self, mut f: impl FnMut(&str, Point)) -> Result<u64> {
        let mut n = 0u64;
        for seg in &self.segments {
            let bytes = read_file(&seg.path)?;
            for r in &seg.records {
                let payload = record_payload(&bytes, r, &seg.path)?;
                n += record::decode(payload, &mut f).map_err(|e| Error::corrupt(&seg.path, e.0))?
                    as u64;
            }
        }
        Ok(n)
    }

    /// Calls `f` with every replayed record's points in order (names borrowed from the
    /// segment, read one segment at a time), so the caller can insert them batch by batch.
    /// Returns the number of points.
    pub fn for_each_record(&self, mut f: impl FnMut(&[(&str, Point)])) -> Result<u64> {
        let mut n = 0u64;
        for seg in &self.segments {
            let bytes = read_file(&seg.path)?;
            let mut entries = Vec::new();
            for r in &seg.records {
                let payload = record_payload(&bytes, r, &seg.path)?;
                entries.clear();
                record::decode(payload, |name, p| entries.push((name, p)))
                    .map_err(|e| Error::corrupt(&seg.path, e.0))?;
                n += entries.len() as u64;
                f(&entries);
            }
        }
        Ok(n)
    }

    /// The replayed batches in order, with their LSNs.
    pub fn batches(&self) -> Result<Vec<ReplayBatch>> {
        let mut out = Vec::with_capacity(self.report.records as usize);
        for seg in &self.segments {
            let bytes = read_file(&seg.path)?;
            for r in &seg.records {
                let payload = record_payload(&bytes, r, &seg.path)?;
                let mut entries = Vec::new();
                record::decode(payload, |n, p| entries.push((n.to_owned(), p)))
                    .map_err(|e| Error::corrupt(&seg.path, e.0))?;
                out.push(ReplayBatch {
                    lsn: Lsn {
                        segment: seg.id,
                        offset: r.end as u64,
                    },
                    entries,
                });
            }
        }
        Ok(out)
    }

    /// Every replayed point, flattened.
    pub fn entries(&self) -> Result<Vec<(String, Point)>> {
        let mut out = Vec::with_capacity(self.report.entries as usize);
        self.for_each(|n, p| out.push((n.to_owned(), p)))?;
        Ok(out)
    }
}

fn record_payload<'a>(bytes: &'a [u8], r: &Range<usize>, path: &Path) -> Result<&'a [u8]> {
    match bytes.get(r.clone()).map(record::frame) {
        Some(record::Frame::Intact { total }) if total == r.len() => {
            Ok(&bytes[r.start + record::HEADER_LEN..r.end])
        }
        _ => Err(Error::corrupt(path, "journal segment changed since open")),
    }
}

/// Counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Batches appended (one record each).
    pub appends: u64,
    /// Bytes appended (record headers included).
    pub bytes: u64,
    /// `write` rounds by a group-commit leader (appends / writes = the batching factor).
    pub writes: u64,
    /// fsyncs of segment files.
    pub fsyncs: u64,
}

/// The write-ahead journal. `Sync`: share it (or an `Arc` of it) between appending threads.
pub struct Journal {
    inner: Arc<Inner>,
    syncer: Option<JoinHandle<()>>,
}

struct Inner {
    dir: PathBuf,
    opts: JournalOptions,
    state: Mutex<State>,
    cond: Condvar,
    /// The segment being written. Locked by the group-commit leader while it writes and by the
    /// background syncer while it picks the file to fsync; never taken under `state`.
    io: Mutex<Io>,
    stop: Mutex<bool>,
    stop_cond: Condvar,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    appends: AtomicU64,
    bytes: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
}

struct State {
    /// Where the next record goes, counting records queued but not yet written.
    tail: Lsn,
    /// Records waiting for a leader, grouped by destination segment.
    queue: Vec<Chunk>,
    /// Ticket of the last enqueued append; tickets are handed out in queue order.
    issued: u64,
    /// Every ticket up to this one is written to the OS.
    written: u64,
    /// Every ticket up to this one is fsynced.
    synced: u64,
    /// Position up to which records are written.
    written_lsn: Lsn,
    /// A thread is writing (the group-commit leader).
    leader: bool,
    /// A failed write or fsync: the file's contents are unknown from then on, so every later
    /// append fails until the journal is reopened (and replay sorts the file out).
    failed: Option<(std::io::ErrorKind, String)>,
    /// Live segments and their sizes (queued bytes included), for max-size and release.
    segments: BTreeMap<u64, u64>,
    /// Sum of `segments`.
    total: u64,
}

struct Chunk {
    segment: u64,
    bytes: Vec<u8>,
}

struct Io {
    file: Arc<File>,
    segment: u64,
    offset: u64,
    /// Ticket and position of the last write; what an fsync of `file` makes durable.
    ticket: u64,
    lsn: Lsn,
}

impl Journal {
    /// Opens (creating if needed) `<dir>/.journal/`, scans what is there, truncates torn
    /// tails, and starts a new segment for this session. The returned [`Replay`] holds every
    /// intact record written before.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<(Journal, Replay)> {
        if opts.segment_size < 4096 {
            return Err(Error::invalid(
                "journal segment size must be at least 4096 bytes",
            ));
        }
        if opts.fsync == FsyncPolicy::Interval && opts.fsync_interval.is_zero() {
            return Err(Error::invalid("journal fsync-interval must be positive"));
        }
        let jdir = dir.join(DIR_NAME);
        std::fs::create_dir_all(&jdir).map_err(|e| Error::io(&jdir, e))?;
        let sync = opts.fsync != FsyncPolicy::Never;

        let mut ids = Vec::new();
        for ent in std::fs::read_dir(&jdir).map_err(|e| Error::io(&jdir, e))? {
            let ent = ent.map_err(|e| Error::io(&jdir, e))?;
            if let Some(id) = ent.file_name().to_str().and_then(segment::parse_file_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut report = ReplayReport::default();
        let mut replay_segments = Vec::new();
        let mut live = BTreeMap::new();
        let mut total = 0u64;
        for &id in &ids {
            let path = jdir.join(segment::file_name(id));
            let bytes = read_file(&path)?;
            let scan = segment::scan(&bytes);
            report.segments += 1;
            let mut size = bytes.len() as u64;
            if let Some(cut) = scan.torn_tail {
                report.torn.push(Damage {
                    segment: id,
                    offset: cut as u64,
                    len: (bytes.len() - cut) as u64,
                });
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                f.set_len(cut as u64).map_err(|e| Error::io(&path, e))?;
                if sync {
                    f.sync_all().map_err(|e| Error::io(&path, e))?;
                }
                size = cut as u64;
            }
            for c in &scan.corrupt {
                report.corrupt.push(Damage {
                    segment: id,
                    offset: c.start as u64,
                    len: c.len() as u64,
                });
            }
            if scan.records.is_empty() && scan.corrupt.is_empty() {
                // Nothing to replay and nothing to keep as evidence.
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            report.records += scan.records.len() as u64;
            report.entries += scan.entries;
            report.bytes += scan.records.iter().map(|r| r.len() as u64).sum::<u64>();
            live.insert(id, size);
            total += size;
            replay_segments.push(ReplaySegment {
                id,
                path,
                records: scan.records,
            });
        }

        let first = ids.last().map_or(1, |&id| id + 1);
        let file = create_segment(&jdir, first, sync)?;
        live.insert(first, SEGMENT_HEADER_LEN);
        total += SEGMENT_HEADER_LEN;
        let start = Lsn {
            segment: first,
            offset: SEGMENT_HEADER_LEN,
        };
        let inner = Arc::new(Inner {
            dir: jdir,
            state: Mutex::new(State {
                tail: start,
                queue: Vec::new(),
                issued: 0,
                written: 0,
                synced: 0,
                written_lsn: start,
                leader: false,
                failed: None,
                segments: live,
                total,
            }),
            cond: Condvar::new(),
            io: Mutex::new(Io {
                file: Arc::new(file),
                segment: first,
                offset: SEGMENT_HEADER_LEN,
                ticket: 0,
                lsn: start,
            }),
            stop: Mutex::new(false),
            stop_cond: Condvar::new(),
            stats: Stats::default(),
            opts,
        });
        let syncer = if inner.opts.fsync == FsyncPolicy::Interval {
            let inner = Arc::clone(&inner);
            Some(
                std::thread::Builder::new()
                    .name("carbonlite-journal-sync".into())
                    .spawn(move || inner.sync_loop())
                    .map_err(|e| Error::io("journal sync thread", e))?,
            )
        } else {
            None
        };
        let replay = Replay {
            report,
            segments: replay_segments,
            upto: start,
        };
        Ok((Journal { inner, syncer }, replay))
    }

    /// Appends `entries` as one record and returns its end position once it is as durable as
    /// the [`FsyncPolicy`] promises. Concurrent callers are group-committed.
    ///
    /// Errors: [`Error::Full`] when `max_size` would be exceeded (nothing written — the caller
    /// decides whether to drop, wait or refuse); [`Error::InvalidArgument`] for a batch over
    /// 1 GiB encoded; [`Error::Io`] when a write or fsync failed (now or earlier: the journal
    /// then refuses every append until reopened). An empty batch returns the current tail.
    pub fn append(&self, entries: &[(&str, Point)]) -> Result<Lsn> {
        self.append_iter(entries.iter().copied(), entries.len())
    }

    /// [`Journal::append`] for `len` entries that are not in a slice (no copy first).
    pub fn append_iter<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, Point)>,
        len: usize,
    ) -> Result<Lsn> {
        if len == 0 {
            return Ok(self.inner.state.lock().tail);
        }
        let mut rec = Vec::with_capacity(record::HEADER_LEN + len * 48);
        if record::encode_iter(entries, &mut rec).is_none() {
            return Err(Error::invalid("journal batch larger than 1 GiB encoded"));
        }
        self.inner.submit(rec, len as u64)
    }

    /// Closes the journal and deletes every segment, the current one included: for a clean
    /// close once every point ever appended is in whisper files (or a dump), so the next open
    /// has nothing to replay. Every later append fails. Appends racing with this are the
    /// caller's to prevent.
    pub fn retire(&self) -> Result<usize> {
        let ids: Vec<u64> = {
            let mut st = self.inner.state.lock();
            let ids = st.segments.keys().copied().collect();
            st.segments.clear();
            st.total = 0;
            // Nothing may be appended to a segment about to disappear.
            st.failed = Some((std::io::ErrorKind::Other, "journal retired".into()));
            ids
        };
        for &id in &ids {
            let path = self.inner.dir.join(segment::file_name(id));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(ids.len())
    }

    /// Forces everything written so far to disk (any policy) and returns the durable position.
    /// For a flush or close that must not lose what `Interval`/`Never` left in the OS cache.
    pub fn sync(&self) -> Result<Lsn> {
        self.inner.sync_now()
    }

    /// Deletes every segment whose records all end at or before `upto` — the caller promises
    /// their points are in whisper files. The segment being written is never deleted. Returns
    /// the number of segments deleted.
    pub fn release(&self, upto: Lsn) -> Result<usize> {
        let doomed: Vec<u64> = {
            let mut st = self.inner.state.lock();
            // Only segments the leader has moved past: their files are closed for writing.
            let sealed_below = st.written_lsn.segment;
            let ids: Vec<u64> = st
                .segments
                .iter()
                .filter(|&(&id, &size)| {
                    id < sealed_below
                        && (id < upto.segment || (id == upto.segment && upto.offset >= size))
                })
                .map(|(&id, _)| id)
                .collect();
            for id in &ids {
                if let Some(size) = st.segments.remove(id) {
                    st.total -= size;
                }
            }
            ids
        };
        for &id in &doomed {
            let path = self.inner.dir.join(segment::file_name(id));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(doomed.len())
    }

    /// The position after the last record written (what the next `release` can reach).
    pub fn written_upto(&self) -> Lsn {
        self.inner.state.lock().written_lsn
    }

    /// Bytes the live segments take (queued records included); what `max_size` bounds.
    pub fn size(&self) -> u64 {
        self.inner.state.lock().total
    }

    /// Number of live segment files.
    pub fn segments(&self) -> usize {
        self.inner.state.lock().segments.len()
    }

    /// The journal directory (`<data-dir>/.journal`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Counters since open.
    pub fn stats(&self) -> JournalStats {
        let s = &self.inner.stats;
        JournalStats {
            appends: s.appends.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("opts", &self.inner.opts)
            .finish()
    }
}

impl Drop for Journal {
    /// Stops the syncer and, unless the policy is `Never`, fsyncs what is written, so a clean
    /// close under `Interval` loses nothing.
    fn drop(&mut self) {
        *self.inner.stop.lock() = true;
        self.inner.stop_cond.notify_all();
        if let Some(h) = self.syncer.take() {
            let _ = h.join();
        }
        if self.inner.opts.fsync != FsyncPolicy::Never {
            let _ = self.inner.sync_now();
        }
    }
}

impl Inner {
    fn submit(&self, rec: Vec<u8>, points: u64) -> Result<Lsn> {
        let len = rec.len() as u64;
        let mut st = self.state.lock();
        if let Some((kind, msg)) = &st.failed {
            return Err(self.failed_error(*kind, msg));
        }
        let rotate =
            st.tail.offset > SEGMENT_HEADER_LEN && st.tail.offset + len > self.opts.segment_size;
        let need = len + if rotate { SEGMENT_HEADER_LEN } else { 0 };
        if self.opts.max_size > 0 && st.total + need > self.opts.max_size {
            return Err(Error::Full {
                accepted: 0,
                refused: points,
            });
        }
        if rotate {
            st.tail = Lsn {
                segment: st.tail.segment + 1,
                offset: SEGMENT_HEADER_LEN,
            };
            let seg = st.tail.segment;
            st.segments.insert(seg, SEGMENT_HEADER_LEN);
            st.total += SEGMENT_HEADER_LEN;
        }
        let seg = st.tail.segment;
        match st.queue.last_mut() {
            Some(c) if c.segment == seg => c.bytes.extend_from_slice(&rec),
            _ => st.queue.push(Chunk {
                segment: seg,
                bytes: rec,
            }),
        }
        st.tail.offset += len;
        st.total += len;
        *st.segments.entry(seg).or_insert(0) += len;
        st.issued += 1;
        let ticket = st.issued;
        let lsn = st.tail;
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);

        let always = self.opts.fsync == FsyncPolicy::Always;
        loop {
            let done = if always { st.synced } else { st.written };
            if done >= ticket {
                return Ok(lsn);
            }
            if let Some((kind, msg)) = &st.failed {
                return Err(self.failed_error(*kind, msg));
            }
            if st.leader {
                self.cond.wait(&mut st);
                continue;
            }
            // Lead: take everything queued (ours included) and write it in one go.
            st.leader = true;
            let chunks = std::mem::take(&mut st.queue);
            let target = st.issued;
            let res = MutexGuard::unlocked(&mut st, || self.write(chunks, target, always));
            st.leader = false;
            match res {
                Ok(end) => {
                    st.written = target;
                    st.written_lsn = end;
                    if always {
                        st.synced = target;
                    }
                }
                Err(e) => {
                    let (kind, msg) = match &e {
                        Error::Io { source, .. } => (source.kind(), e.to_string()),
                        _ => (std::io::ErrorKind::Other, e.to_string()),
                    };
                    st.failed = Some((kind, msg));
                    self.cond.notify_all();
                    return Err(e);
                }
            }
            self.cond.notify_all();
        }
    }

    /// The leader's I/O: writes `chunks` in order, opening new segments as they begin,
    /// then fsyncs if the policy is `Always`. Returns the position written up to.
    fn write(&self, chunks: Vec<Chunk>, ticket: u64, fsync: bool) -> Result<Lsn> {
        let sync = self.opts.fsync != FsyncPolicy::Never;
        let mut io = self.io.lock();
        for c in chunks {
            if c.segment != io.segment {
                // Seal the old segment durably first: the syncer only fsyncs the current one.
                if sync {
                    self.fsync(
                        &io.file,
                        io.segment,
                        Lsn {
                            segment: io.segment,
                            offset: io.offset,
                        },
                    )?;
                }
                io.file = Arc::new(create_segment(&self.dir, c.segment, sync)?);
                io.segment = c.segment;
                io.offset = SEGMENT_HEADER_LEN;
            }
            io.file
                .write_all_at(&c.bytes, io.offset)
                .map_err(|e| Error::io(self.dir.join(segment::file_name(io.segment)), e))?;
            io.offset += c.bytes.len() as u64;
        }
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        let end = Lsn {
            segment: io.segment,
            offset: io.offset,
        };
        io.ticket = ticket;
        io.lsn = end;
        if fsync {
            self.fsync(&io.file, io.segment, end)?;
        }
        Ok(end)
    }

    fn fsync(&self, file: &File, segment: u64, lsn: Lsn) -> Result<()> {
        file.sync_data()
            .map_err(|e| Error::io(self.dir.join(segment::file_name(segment)), e))?;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.opts.on_sync {
            hook(lsn);
        }
        Ok(())
    }

    /// fsyncs the current segment if anything written is not yet durable.
    fn sync_now(&self) -> Result<Lsn> {
        let (file, segment, ticket, lsn) = {
            let io = self.io.lock();
            (Arc::clone(&io.file), io.segment, io.ticket, io.lsn)
        };
        {
            let st = self.state.lock();
            if let Some((kind, msg)) = &st.failed {
                return Err(self.failed_error(*kind, msg));
            }
            if st.synced >= ticket {
                return Ok(lsn);
            }
        }
        let res = self.fsync(&file, segment, lsn);
        let mut st = self.state.lock();
        match res {
            Ok(()) => {
                st.synced = st.synced.max(ticket);
                Ok(lsn)
            }
            Err(e) => {
                // After a failed fsync the kernel may have dropped the dirty pages: nothing
                // written since the last good fsync can be trusted (PostgreSQL's fsyncgate).
                st.failed = Some((std::io::ErrorKind::Other, e.to_string()));
                self.cond.notify_all();
                Err(e)
            }
        }
    }

    fn sync_loop(&self) {
        let mut stop = self.stop.lock();
        while !*stop {
            self.stop_cond.wait_for(&mut stop, self.opts.fsync_interval);
            if *stop {
                break;
            }
            // A failure is recorded in `state.failed`; appends report it.
            MutexGuard::unlocked(&mut stop, || {
                let _ = self.sync_now();
            });
        }
    }

    fn failed_error(&self, kind: std::io::ErrorKind, msg: &str) -> Error {
        Error::io(
            &self.dir,
            std::io::Error::new(
                kind,
                format!("journal failed earlier, reopen to recover: {msg}"),
            ),
        )
    }
}

/// Creates segment `id` with its header; with `sync`, makes the file and its directory entry
/// durable before any record depends on them.
fn create_segment(dir: &Path, id: u64, sync: bool) -> Result<File> {
    let path = dir.join(segment::file_name(id));
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    f.write_all(&segment::header(id))
        .map_err(|e| Error::io(&path, e))?;
    if sync {
        f.sync_all().map_err(|e| Error::io(&path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(f)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}
