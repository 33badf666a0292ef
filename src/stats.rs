//! Counters of the whole pipeline, named after go-carbon's self-metrics (COMPAT §2.14).
//!
//! Counters are monotonic `AtomicU64` (Relaxed: they are statistics, not synchronisation).
//! `carbon_stats` returns totals; the self-metrics written into the store every
//! `metric-interval` are per-interval deltas for counters, as go-carbon resets its counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters, shared by every thread of one `Carbon`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Points accepted into the cache (any source).
    pub metrics_received: AtomicU64,
    /// Lines or points refused by the parser (malformed, NaN …).
    pub parse_errors: AtomicU64,
    /// Points refused because of their metric name (path tricks, policy).
    pub name_errors: AtomicU64,
    /// Points refused or dropped because the cache was full.
    pub overflow: AtomicU64,
    /// whisper update_many calls that succeeded.
    pub update_operations: AtomicU64,
    /// Points written by those calls.
    pub committed_points: AtomicU64,
    /// whisper files created.
    pub created: AtomicU64,
    /// File creations postponed by `max-creates-per-second` (the points stay cached).
    pub throttled_creates: AtomicU64,
    /// Writes that failed and were retried later (I/O errors, full disk).
    pub write_errors: AtomicU64,
    /// Of those, ENOSPC/EDQUOT.
    pub disk_full_errors: AtomicU64,
    /// Files found corrupt (their points stay cached until the file is repaired or removed).
    pub corrupt_files: AtomicU64,
    /// Points fetched by `whisper_fetch` from the cache overlay.
    pub cache_queries: AtomicU64,
    /// Lines received by the TCP listener.
    pub tcp_metrics_received: AtomicU64,
    /// Lines refused by the TCP listener (parse or name).
    pub tcp_errors: AtomicU64,
    /// Open TCP connections.
    pub tcp_active: AtomicU64,
    /// Points received by the UDP listener.
    pub udp_metrics_received: AtomicU64,
    /// Lines the UDP listener refused, incomplete last lines of datagrams included.
    pub udp_errors: AtomicU64,
    /// Points received by the pickle listener.
    pub pickle_metrics_received: AtomicU64,
    /// Bad pickle entries and points, unreadable frames, oversized frames, stalled frames.
    pub pickle_errors: AtomicU64,
    /// Open pickle connections.
    pub pickle_active: AtomicU64,
    /// Corrupt whisper files moved to `<data-dir>/.corrupt/` (`[whisper] quarantine-corrupt`).
    pub quarantined: AtomicU64,
    /// Points written to a `[dump]` file on close.
    pub dump_points: AtomicU64,
    /// Points read back from `[dump]` files on open.
    pub restored_points: AtomicU64,
    /// Dump files that could not be written, read or removed, or were cut short.
    pub dump_errors: AtomicU64,
}

/// A consistent-enough copy of every counter plus the cache gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Stats::metrics_received`].
    pub metrics_received: u64,
    /// See [`Stats::parse_errors`].
    pub parse_errors: u64,
    /// See [`Stats::name_errors`].
    pub name_errors: u64,
    /// See [`Stats::overflow`].
    pub overflow: u64,
    /// See [`Stats::update_operations`].
    pub update_operations: u64,
    /// See [`Stats::committed_points`].
    pub committed_points: u64,
    /// See [`Stats::created`].
    pub created: u64,
    /// See [`Stats::throttled_creates`].
    pub throttled_creates: u64,
    /// See [`Stats::write_errors`].
    pub write_errors: u64,
    /// See [`Stats::disk_full_errors`].
    pub disk_full_errors: u64,
    /// See [`Stats::corrupt_files`].
    pub corrupt_files: u64,
    /// See [`Stats::cache_queries`].
    pub cache_queries: u64,
    /// See [`Stats::tcp_metrics_received`].
    pub tcp_metrics_received: u64,
    /// See [`Stats::tcp_errors`].
    pub tcp_errors: u64,
    /// See [`Stats::tcp_active`].
    pub tcp_active: u64,
    /// Points in the cache (queued + being written).
    pub cache_size: u64,
    /// Metrics in the cache.
    pub cache_metrics: u64,
    /// `[cache] max-size`.
    pub cache_max_size: u64,
    /// Points taken by a persister and not yet confirmed written.
    pub not_confirmed: u64,
    /// Persister threads.
    pub workers: u64,
    /// See [`Stats::udp_metrics_received`].
    pub udp_metrics_received: u64,
    /// See [`Stats::udp_errors`].
    pub udp_errors: u64,
    /// See [`Stats::pickle_metrics_received`].
    pub pickle_metrics_received: u64,
    /// See [`Stats::pickle_errors`].
    pub pickle_errors: u64,
    /// See [`Stats::pickle_active`].
    pub pickle_active: u64,
    /// Bytes the journal's live segments take now (gauge).
    pub journal_bytes: u64,
    /// Live journal segment files (gauge).
    pub journal_segments: u64,
    /// Journal records appended (one per add call or batch of lines).
    pub journal_appends: u64,
    /// Bytes appended to the journal.
    pub journal_appended_bytes: u64,
    /// fsyncs of journal segments.
    pub journal_fsyncs: u64,
    /// Points replayed from the journal at open.
    pub journal_replayed: u64,
    /// Journal failures: appends, replay, release, and damaged spans found at open.
    pub journal_errors: u64,
    /// Points refused because the journal reached `max-size` (also counted in `overflow`).
    pub journal_refused: u64,
    /// Journal segments deleted once their points were in whisper files.
    pub journal_released: u64,
    /// See [`Stats::quarantined`].
    pub quarantined: u64,
    /// See [`Stats::dump_points`].
    pub dump_points: u64,
    /// See [`Stats::restored_points`].
    pub restored_points: u64,
    /// See [`Stats::dump_errors`].
    pub dump_errors: u64,
}

impl Stats {
    /// Copies the counters; the caller fills the cache gauges.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            metrics_received: self.metrics_received.load(Relaxed),
            parse_errors: self.parse_errors.load(Relaxed),
            name_errors: self.name_errors.load(Relaxed),
            overflow: self.overflow.load(Relaxed),
            update_operations: self.update_operations.load(Relaxed),
            committed_points: self.committed_points.load(Relaxed),
            created: self.created.load(Relaxed),
            throttled_creates: self.throttled_creates.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            disk_full_errors: self.disk_full_errors.load(Relaxed),
            corrupt_files: self.corrupt_files.load(Relaxed),
            cache_queries: self.cache_queries.load(Relaxed),
            tcp_metrics_received: self.tcp_metrics_received.load(Relaxed),
            tcp_errors: self.tcp_errors.load(Relaxed),
            tcp_active: self.tcp_active.load(Relaxed),
            udp_metrics_received: self.udp_metrics_received.load(Relaxed),
            udp_errors: self.udp_errors.load(Relaxed),
            pickle_metrics_received: self.pickle_metrics_received.load(Relaxed),
            pickle_errors: self.pickle_errors.load(Relaxed),
            pickle_active: self.pickle_active.load(Relaxed),
            quarantined: self.quarantined.load(Relaxed),
            dump_points: self.dump_points.load(Relaxed),
            restored_points: self.restored_points.load(Relaxed),
            dump_errors: self.dump_errors.load(Relaxed),
            ..Snapshot::default()
        }
    }
}

impl Snapshot {
    /// go-carbon's self-metric names and values for one interval: counters as the difference
    /// from `prev` (go-carbon resets them every interval), gauges as they are.
    pub fn self_metrics(&self, prev: &Snapshot) -> Vec<(&'static str, f64)> {
        let d = |now: u64, before: u64| now.saturating_sub(before) as f64;
        let points_per_update = if self.update_operations > prev.update_operations {
            d(self.committed_points, prev.committed_points)
                / d(self.update_operations, prev.update_operations)
        } else {
            0.0
        };
        vec![
            ("cache.size", self.cache_size as f64),
            ("cache.metrics", self.cache_metrics as f64),
            ("cache.maxSize", self.cache_max_size as f64),
            ("cache.notConfirmed", self.not_confirmed as f64),
            ("cache.overflow", d(self.overflow, prev.overflow)),
            ("cache.queries", d(self.cache_queries, prev.cache_queries)),
            (
                "persister.updateOperations",
                d(self.update_operations, prev.update_operations),
            ),
            (
                "persister.committedPoints",
                d(self.committed_points, prev.committed_points),
            ),
            ("persister.pointsPerUpdate", points_per_update),
            ("persister.created", d(self.created, prev.created)),
            (
                "persister.throttledCreates",
                d(self.throttled_creates, prev.throttled_creates),
            ),
            ("persister.errors", d(self.write_errors, prev.write_errors)),
            (
                "persister.diskFull",
                d(self.disk_full_errors, prev.disk_full_errors),
            ),
            (
                "persister.corruptFiles",
                d(self.corrupt_files, prev.corrupt_files),
            ),
            ("persister.workers", self.workers as f64),
            (
                "api.metricsReceived",
                d(self.metrics_received, prev.metrics_received),
            ),
            (
                "api.errors",
                d(
                    self.parse_errors + self.name_errors,
                    prev.parse_errors + prev.name_errors,
                ),
            ),
            (
                "tcp.metricsReceived",
                d(self.tcp_metrics_received, prev.tcp_metrics_received),
            ),
            ("tcp.errors", d(self.tcp_errors, prev.tcp_errors)),
            ("tcp.active", self.tcp_active as f64),
            (
                "udp.metricsReceived",
                d(self.udp_metrics_received, prev.udp_metrics_received),
            ),
            ("udp.errors", d(self.udp_errors, prev.udp_errors)),
            (
                "pickle.metricsReceived",
                d(self.pickle_metrics_received, prev.pickle_metrics_received),
            ),
            ("pickle.errors", d(self.pickle_errors, prev.pickle_errors)),
            ("pickle.active", self.pickle_active as f64),
            ("journal.bytes", self.journal_bytes as f64),
            ("journal.segments", self.journal_segments as f64),
            (
                "journal.appends",
                d(self.journal_appends, prev.journal_appends),
            ),
            (
                "journal.appendedBytes",
                d(self.journal_appended_bytes, prev.journal_appended_bytes),
            ),
            (
                "journal.fsyncs",
                d(self.journal_fsyncs, prev.journal_fsyncs),
            ),
            (
                "journal.replayedPoints",
                d(self.journal_replayed, prev.journal_replayed),
            ),
            (
                "journal.errors",
                d(self.journal_errors, prev.journal_errors),
            ),
            (
                "journal.refusedPoints",
                d(self.journal_refused, prev.journal_refused),
            ),
            (
                "journal.releasedSegments",
                d(self.journal_released, prev.journal_released),
            ),
            (
                "persister.quarantined",
                d(self.quarantined, prev.quarantined),
            ),
            (
                "dump.restoredPoints",
                d(self.restored_points, prev.restored_points),
            ),
            ("dump.errors", d(self.dump_errors, prev.dump_errors)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_deltas_gauges_are_levels() {
        let s = Stats::default();
        s.committed_points.store(100, Relaxed);
        s.update_operations.store(10, Relaxed);
        let mut a = s.snapshot();
        a.cache_size = 7;
        s.committed_points.store(160, Relaxed);
        s.update_operations.store(13, Relaxed);
        let mut b = s.snapshot();
        b.cache_size = 5;
        let m: std::collections::HashMap<_, _> = b.self_metrics(&a).into_iter().collect();
        assert_eq!(m["persister.committedPoints"], 60.0);
        assert_eq!(m["persister.updateOperations"], 3.0);
        assert_eq!(m["persister.pointsPerUpdate"], 20.0);
        assert_eq!(m["cache.size"], 5.0);
    }
}
