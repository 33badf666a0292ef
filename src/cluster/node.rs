//! [`Routed`]: the cluster front of a `Carbon` handle opened with `[cluster]`. Every add path
//! (the API, the TCP/pickle/UDP listeners, self-metrics) hands its points here; each goes to
//! its owners on the ring — the local cache for this process's share, a [`Sender`] for the
//! others —, as carbon-relay does with what arrives on its ports. Reads go to the owners'
//! carbonserver API ([`super::query`]); flush waits for the senders too.
//!
//! The engine routes at its two narrowest points — `add_one` for a single point and
//! `add_batch` for a batch of parsed lines — behind one `Option` test each, so parsing,
//! naming and counting are the standalone code and a standalone handle pays a branch per
//! batch.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::query::{self, QueryError};
use super::{ClusterConfig, Destination, Router, Sender, SenderStats};
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::find::FindMatch;
use crate::points::Point;
use crate::whisper::Series;

/// Directory under the data dir that holds one spill journal per destination.
pub const SPILL_DIR: &str = ".cluster-spill";

/// Counters of one destination, for stats, self-metrics and `carbon_destination_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStats {
    /// The member.
    pub destination: Destination,
    /// This process itself (its share is stored locally; the sender counters stay 0).
    pub local: bool,
    /// The sender's counters (all 0 for the local member).
    pub sender: SenderStats,
    /// Queries to this member's carbonserver that failed (down, timeout, bad answer).
    pub query_errors: u64,
}

/// The routing front of a handle: ring, senders, query addresses.
pub struct Routed {
    router: Router,
    query_errors: Vec<AtomicU64>,
    /// Counters at the previous self-metrics tick (carbon sends deltas).
    prev: Mutex<Vec<SenderStats>>,
}

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed")
            .field("destinations", &self.router.destinations())
            .field("local", &self.router.local())
            .finish()
    }
}

impl Routed {
    /// Starts the senders; with `spill` on, each spills under `<data_dir>/.cluster-spill/`.
    pub fn new(mut config: ClusterConfig, data_dir: &Path) -> Result<Routed> {
        if config.spill {
            config.sender.spill_dir = Some(data_dir.join(SPILL_DIR));
        }
        let n = config.destinations.len();
        Ok(Routed {
            router: Router::new(config)?,
            query_errors: (0..n).map(|_| AtomicU64::new(0)).collect(),
            prev: Mutex::new(vec![SenderStats::default(); n]),
        })
    }

    /// The ring and senders.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Routes one point with a canonical name; `wait` is the stream receivers' flavour (wait
    /// for room in a full cache instead of refusing, and with flow control for room in a full
    /// destination queue instead of dropping, until the listeners stop). A point whose every
    /// copy was dropped by full queues is refused with `Error::Full` (and counted in the
    /// destinations' `dropped`). The engine's add paths call this for every point of a
    /// routing handle.
    pub(crate) fn add_canonical(
        &self,
        shared: &Shared,
        name: &str,
        p: Point,
        wait: bool,
    ) -> Result<()> {
        let out = if wait {
            self.router
                .send_waiting(name, p, &shared.receivers_stopping)
        } else {
            self.router.send(name, p)
        };
        if out.local {
            shared.store_one(name, p, wait)?;
        } else if out.queued == 0 && out.dropped > 0 {
            return Err(Error::Full {
                accepted: 0,
                refused: 1,
            });
        }
        Ok(())
    }

    /// The query address of member `i`, or an error saying that reads need one.
    fn query_addr(&self, i: usize) -> Result<&str> {
        self.router
            .config()
            .query_destinations
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "[cluster] query-destinations is not set: cannot read from {}",
                    self.router.destinations()[i]
                ))
            })
    }

    /// `fetch` on a routing handle: locally when this process owns the metric, otherwise
    /// from the first owner whose carbonserver answers (the next replica on a connection
    /// error, timeout or 5xx).
    pub(crate) fn fetch(
        &self,
        shared: &Shared,
        metric: &str,
        from: i64,
        until: Option<i64>,
        now: i64,
    ) -> Result<Series> {
        let name = shared.canonical_name(metric)?;
        let owners = self.router.route(&name);
        if self.router.local().is_some_and(|l| owners.contains(&l)) {
            return shared.fetch(&name, from, until, now);
        }
        let until = until.unwrap_or(now);
        if from > until {
            return Err(Error::InvalidTimeInterval(format!(
                "from {from} is after until {until}"
            )));
        }
        let timeout = self.router.config().query_timeout;
        let mut first_err: Option<Error> = None;
        for &i in owners.iter() {
            let addr = self.query_addr(i)?;
            match query::fetch(addr, &name, from, until, now, timeout) {
                Ok(s) => return Ok(s),
                // A replica may have missed points while it was down: ask the next.
                Err(QueryError::NotFound) => {}
                Err(e) => {
                    self.query_errors[i].fetch_add(1, Relaxed);
                    first_err.get_or_insert(e.into_error(addr, &name));
                }
            }
        }
        if let Some(e) = first_err {
            // "No such metric" is believed only if no owner was down.
            return Err(e);
        }
        // Every owner said 404: a metric it holds, asked for a window outside its archives,
        // is an empty series, as `Carbon::fetch` gives locally; only an unknown one is not
        // found.
        for &i in owners.iter() {
            let addr = self.query_addr(i)?;
            match query::exists(addr, &name, timeout) {
                Ok(true) => return Ok(Series::default()),
                Ok(false) => {}
                Err(e) => {
                    self.query_errors[i].fetch_add(1, Relaxed);
                    return Err(e.into_error(addr, &name));
                }
            }
        }
        Err(Error::NotFound(name.into_owned()))
    }

    /// `find` on a routing handle: every member asked at once, answers merged by path (a leaf
    /// anywhere makes the path a leaf, as graphite-web merges its remote finders). Members
    /// that cannot answer are skipped and counted, as graphite-web does; if none answers, the
    /// first failure is returned.
    pub(crate) fn find(&self, shared: &Shared, pattern: &str) -> Result<Vec<FindMatch>> {
        // Also checks the glob before anything goes on the wire.
        let local = crate::find::find_in(shared, pattern)?;
        let n = self.router.destinations().len();
        let addrs: Vec<Option<&str>> = (0..n)
            .map(|i| {
                if Some(i) == self.router.local() {
                    Ok(None)
                } else {
                    self.query_addr(i).map(Some)
                }
            })
            .collect::<Result<_>>()?;
        let timeout = self.router.config().query_timeout;
        let answers: Vec<(usize, std::result::Result<Vec<FindMatch>, QueryError>)> =
            std::thread::scope(|s| {
                let handles: Vec<_> = addrs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| a.map(|a| (i, a)))
                    .map(|(i, a)| (i, s.spawn(move || query::find(a, pattern, timeout))))
                    .collect();
                handles
                    .into_iter()
                    .map(|(i, h)| {
                        let r = h.join().unwrap_or_else(|_| {
                            Err(QueryError::Bad("find thread panicked".into()))
                        });
                        (i, r)
                    })
                    .collect()
            });
        let mut merged: BTreeMap<String, bool> = BTreeMap::new();
        let mut answered = self.router.local().is_some();
        if answered {
            for m in local {
                *merged.entry(m.path).or_insert(false) |= m.is_leaf;
            }
        }
        let mut first_err = None;
        for (i, r) in answers {
            match r {
                Ok(ms) => {
                    answered = true;
                    for m in ms {
                        *merged.entry(m.path).or_insert(false) |= m.is_leaf;
                    }
                }
                Err(e) => {
                    self.query_errors[i].fetch_add(1, Relaxed);
                    let addr = addrs[i].unwrap_or_default();
                    first_err.get_or_insert(e.into_error(addr, pattern));
                }
            }
        }
        if !answered && let Some(e) = first_err {
            return Err(e);
        }
        Ok(merged
            .into_iter()
            .map(|(path, is_leaf)| FindMatch { path, is_leaf })
            .collect())
    }

    /// How long a flush or close waits for a destination that makes no progress: two full
    /// reconnect backoffs, at least 5 s (the local flush's patience with failing files).
    pub fn stall(&self) -> Duration {
        (self.router.config().sender.reconnect_max_delay * 2).max(Duration::from_secs(5))
    }

    /// Waits until every sender has written what it held before the call. Like the local
    /// flush, it waits as long as points keep moving and fails once a destination makes no
    /// progress for [`Routed::stall`] (naming it and what it still holds).
    pub(crate) fn flush_senders(&self) -> Result<()> {
        let stall = self.stall();
        for i in 0..self.router.destinations().len() {
            let Some(s) = self.router.sender(i) else {
                continue;
            };
            wait_drained(s, stall)?;
        }
        Ok(())
    }

    /// Flush of a routing handle: the local share to whisper (when this process stores one),
    /// then every sender drained.
    pub(crate) fn flush(&self, shared: &Shared) -> Result<()> {
        if self.router.local().is_some() {
            shared.flush()?;
        }
        self.flush_senders()
    }

    /// Close of a routing handle: give the senders up to [`Routed::stall`] without progress
    /// to deliver, then stop them (what is left goes to the spill, delivered by the next open).
    pub(crate) fn close(&self) {
        let _ = self.flush_senders();
        for i in 0..self.router.destinations().len() {
            if let Some(s) = self.router.sender(i) {
                s.stop();
            }
        }
    }

    /// Counters per destination, in destination order.
    pub fn stats(&self) -> Vec<DestinationStats> {
        self.router
            .stats()
            .into_iter()
            .enumerate()
            .map(|(i, (destination, s))| DestinationStats {
                destination,
                local: s.is_none(),
                sender: s.unwrap_or_default(),
                query_errors: self.query_errors[i].load(Relaxed),
            })
            .collect()
    }

    /// carbon-relay's per-destination self-metrics (`destinations.<host:port:instance with
    /// dots as _>.*`, carbon `client.py`): `sent`, `fullQueueDrops`, `attemptedRelays` as
    /// deltas, plus ours: `queued` (gauge), `reconnects`, `spilled`, `stalls`, `queryErrors`.
    pub(crate) fn self_metrics(&self) -> Vec<(String, f64)> {
        let mut prev = self.prev.lock();
        let mut out = Vec::new();
        for (i, d) in self.stats().into_iter().enumerate() {
            if d.local {
                continue;
            }
            let p = prev[i];
            let s = d.sender;
            let delta = |a: u64, b: u64| a.saturating_sub(b) as f64;
            let name = format!(
                "destinations.{}",
                format!(
                    "{}:{}:{}",
                    d.destination.host,
                    d.destination.port,
                    d.destination.instance.as_deref().unwrap_or("None")
                )
                .replace('.', "_")
            );
            let attempted = |s: &SenderStats| s.sent + s.dropped;
            out.extend([
                (format!("{name}.sent"), delta(s.sent, p.sent)),
                (
                    format!("{name}.fullQueueDrops"),
                    delta(s.dropped, p.dropped),
                ),
                (
                    format!("{name}.attemptedRelays"),
                    delta(attempted(&s), attempted(&p)),
                ),
                (format!("{name}.queued"), s.queued as f64),
                (
                    format!("{name}.reconnects"),
                    delta(s.reconnects, p.reconnects),
                ),
                (format!("{name}.spilled"), delta(s.spilled, p.spilled)),
                (format!("{name}.stalls"), delta(s.stalls, p.stalls)),
                (format!("{name}.queryErrors"), d.query_errors as f64),
            ]);
            prev[i] = s;
        }
        out
    }
}

/// Waits for `s` to hold nothing; fails after `stall` without a point written.
fn wait_drained(s: &Sender, stall: Duration) -> Result<()> {
    let mut last_sent = s.stats().sent;
    let mut last_progress = Instant::now();
    loop {
        if s.wait_idle(Duration::from_millis(100)) {
            return Ok(());
        }
        let st = s.stats();
        if st.sent != last_sent {
            last_sent = st.sent;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= stall {
            return Err(Error::io(
                format!("destination {}", s.destination()),
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} points not delivered after {stall:?} without progress \
                         ({} reconnects, {} failed connects); they stay queued",
                        st.queued, st.reconnects, st.connect_failures
                    ),
                ),
            ));
        }
    }
}
