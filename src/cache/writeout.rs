//! The write-out queue: the order in which persisters take metrics (go-carbon `cache/queue.go`,
//! `cache/writeout_queue.go`).
//!
//! Like go-carbon, the queue is a snapshot of metric names ordered by the write strategy. It is
//! rebuilt only once drained, and at most every [`REBUILD_INTERVAL`] while metrics keep coming,
//! so a busy cache batches many points per metric into one file update instead of rebuilding
//! for every few points. Names popped from the snapshot that have meanwhile been written (or are
//! in flight, or waiting for a retry) are skipped; metrics that appear after a snapshot are
//! taken by the next one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Minimum time between two rebuilds of a non-empty queue (go-carbon's 100 ms).
pub(crate) const REBUILD_INTERVAL: Duration = Duration::from_millis(100);

/// In which order persisters write metrics out; go-carbon's `[cache] write-strategy`
/// (carbon's strategies of the same names differ, see COMPAT §2.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteStrategy {
    /// Most points first: each file update carries as many points as possible, which is
    /// what keeps up with the highest ingest rate (go-carbon's default).
    #[default]
    Max,
    /// Oldest first timestamp first: bounds how stale the files can get.
    Sorted,
    /// Map iteration order: no sorting cost.
    Noop,
}

impl WriteStrategy {
    /// Parses go-carbon's config names `max`, `sorted`, `noop`; None for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "max" => Some(WriteStrategy::Max),
            "sorted" => Some(WriteStrategy::Sorted),
            "noop" => Some(WriteStrategy::Noop),
            _ => None,
        }
    }

    /// The config name (inverse of [`WriteStrategy::from_name`]).
    pub fn name(self) -> &'static str {
        match self {
            WriteStrategy::Max => "max",
            WriteStrategy::Sorted => "sorted",
            WriteStrategy::Noop => "noop",
        }
    }

    /// Orders `(key, name)` pairs collected by `Shard::collect` (stable, so ties keep map order).
    pub(crate) fn order<K>(self, items: &mut [(i64, K)]) {
        match self {
            WriteStrategy::Max => items.sort_by_key(|a| std::cmp::Reverse(a.0)),
            WriteStrategy::Sorted => items.sort_by_key(|a| a.0),
            WriteStrategy::Noop => {}
        }
    }
}

/// State of the snapshot, behind `Cache::writeout`; `K` names a metric.
pub(crate) struct Writeout<K> {
    /// Names left in the current snapshot.
    pub queue: VecDeque<K>,
    /// A thread is building the next snapshot (outside this lock).
    pub building: bool,
    /// When the last build finished.
    pub last_build: Option<Instant>,
    /// The last build found nothing to write, so the next may start at once.
    pub last_build_empty: bool,
    /// Earliest retry time of a metric skipped for it (from the last build or a later requeue).
    pub next_retry: Option<Instant>,
}

impl<K> Default for Writeout<K> {
    fn default() -> Self {
        Writeout {
            queue: VecDeque::new(),
            building: false,
            last_build: None,
            last_build_empty: false,
            next_retry: None,
        }
    }
}

/// What a popper should do next, decided under the writeout lock.
pub(crate) enum Next<K> {
    /// Try to pop this metric.
    Name(K),
    /// Build a new snapshot (the caller now owns `building`).
    Build,
    /// Nothing to do before `Some(instant)`, or before a wake-up if None.
    Wait(Option<Instant>),
}

impl<K> Writeout<K> {
    /// The next step for a popper. `pending`: something became poppable since the last build
    /// started; `hurry`: a flush is waiting, so skip the rebuild interval.
    pub fn next(&mut self, pending: bool, hurry: bool, now: Instant) -> Next<K> {
        if let Some(name) = self.queue.pop_front() {
            return Next::Name(name);
        }
        if self.building {
            return Next::Wait(None);
        }
        let retry_due = self.next_retry.is_some_and(|t| t <= now);
        if !pending && !retry_due {
            return Next::Wait(self.next_retry);
        }
        let at = match self.last_build {
            Some(last) if !hurry && !self.last_build_empty => last + REBUILD_INTERVAL,
            _ => now,
        };
        if at <= now {
            self.building = true;
            // The build recomputes it; requeues during the build lower it (see `install`).
            self.next_retry = None;
            Next::Build
        } else {
            Next::Wait(Some(at))
        }
    }

    /// Installs a built snapshot; returns the seconds since the previous build
    /// (go-carbon's `queueWriteoutTime`), if there was one.
    pub fn install(
        &mut self,
        names: VecDeque<K>,
        next_retry: Option<Instant>,
        now: Instant,
    ) -> Option<u64> {
        let cycle = self
            .last_build
            .map(|t| now.saturating_duration_since(t).as_secs());
        self.last_build_empty = names.is_empty();
        self.queue = names;
        self.building = false;
        self.last_build = Some(now);
        // Keep retry times set by requeues while the build ran (it may have missed them).
        self.next_retry = match (self.next_retry, next_retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        cycle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn strategy_names_round_trip() {
        for s in [
            WriteStrategy::Max,
            WriteStrategy::Sorted,
            WriteStrategy::Noop,
        ] {
            assert_eq!(WriteStrategy::from_name(s.name()), Some(s));
        }
        assert_eq!(WriteStrategy::from_name("naive"), None);
        assert_eq!(WriteStrategy::from_name("MAX"), None);
    }

    #[test]
    fn order_by_strategy() {
        let items = || -> Vec<(i64, Arc<str>)> {
            vec![
                (2, Arc::from("b")),
                (5, Arc::from("e")),
                (1, Arc::from("a")),
                (2, Arc::from("c")),
            ]
        };
        let names = |v: Vec<(i64, Arc<str>)>| {
            v.into_iter()
                .map(|(_, n)| n.to_string())
                .collect::<Vec<_>>()
        };
        let mut v = items();
        WriteStrategy::Max.order(&mut v);
        assert_eq!(names(v), ["e", "b", "c", "a"]);
        let mut v = items();
        WriteStrategy::Sorted.order(&mut v);
        assert_eq!(names(v), ["a", "b", "c", "e"]);
        let mut v = items();
        WriteStrategy::Noop.order(&mut v);
        assert_eq!(names(v), ["b", "e", "a", "c"]);
    }

    #[test]
    fn rebuild_waits_interval_unless_empty_or_hurried() {
        let t0 = Instant::now();
        let mut w = Writeout::<Arc<str>>::default();
        assert!(matches!(w.next(false, false, t0), Next::Wait(None)));
        assert!(matches!(w.next(true, false, t0), Next::Build));
        assert!(
            matches!(w.next(true, false, t0), Next::Wait(None)),
            "build in progress"
        );
        w.install(VecDeque::from([Arc::from("x")]), None, t0);
        assert!(matches!(w.next(true, false, t0), Next::Name(_)));
        let soon = t0 + Duration::from_millis(10);
        match w.next(true, false, soon) {
            Next::Wait(Some(at)) => assert_eq!(at, t0 + REBUILD_INTERVAL),
            _ => panic!("expected to wait for the rebuild interval"),
        }
        assert!(
            matches!(w.next(true, true, soon), Next::Build),
            "flush skips the interval"
        );
        assert_eq!(
            w.install(VecDeque::new(), None, soon + Duration::from_secs(2)),
            Some(2)
        );
        assert!(
            matches!(
                w.next(true, false, soon + Duration::from_secs(2)),
                Next::Build
            ),
            "last build empty"
        );
    }

    #[test]
    fn retry_time_makes_work_pending() {
        let t0 = Instant::now();
        let mut w = Writeout::<Arc<str>>::default();
        let r = t0 + Duration::from_secs(1);
        w.install(VecDeque::new(), Some(r), t0);
        match w.next(false, false, t0) {
            Next::Wait(Some(at)) => assert_eq!(at, r),
            _ => panic!("expected to wait for the retry"),
        }
        assert!(matches!(w.next(false, false, r), Next::Build));
        // A requeue during the build must survive the install.
        let later = r + Duration::from_secs(1);
        w.next_retry = Some(later);
        w.install(VecDeque::new(), None, r);
        match w.next(false, false, r) {
            Next::Wait(Some(at)) => assert_eq!(at, later),
            _ => panic!("retry set during the build was lost"),
        }
    }
}
