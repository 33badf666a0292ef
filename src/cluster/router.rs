//! [`Router`]: the ring plus one [`Sender`] per remote member — where a point goes, and
//! sending it there.

use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::sender::Offered;
use super::{ClusterConfig, Destination, HashRing, Sender, SenderStats};
use crate::error::Result;
use crate::points::Point;

/// Most copies a placement holds (without allocating).
const INLINE: usize = super::MAX_REPLICATION;

/// The owners of one name, first owner first, as indices into the configured destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    idx: [usize; INLINE],
    len: usize,
}

impl Deref for Placement {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.idx[..self.len]
    }
}

/// What [`Router::send`] did with a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOutcome {
    /// This process owns the point and should store it itself.
    pub local: bool,
    /// Copies queued for other members.
    pub queued: usize,
    /// Copies dropped because a member's queue was full (counted in its stats).
    pub dropped: usize,
}

/// Places names on the configured ring and forwards points to their owners.
pub struct Router {
    config: ClusterConfig,
    ring: HashRing,
    /// One per destination; `None` for this process's own entry.
    senders: Vec<Option<Sender>>,
    local: Option<usize>,
}

impl Router {
    /// Builds the ring and starts a sender for every member other than `config.local`.
    pub fn new(config: ClusterConfig) -> Result<Router> {
        config.validate()?;
        let ring = HashRing::new(config.hashing, &config.destinations)?;
        // With store-local off this process's own share is sent to its address like any
        // other member's.
        let local = config
            .local
            .as_ref()
            .filter(|_| config.store_local)
            .and_then(|l| config.destinations.iter().position(|d| d == l));
        let senders = config
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (Some(i) != local)
                    .then(|| {
                        let mut opts = config.sender.clone();
                        // One spill journal per member: the directory says whose points they are.
                        opts.spill_dir = opts.spill_dir.map(|dir| dir.join(spill_dir_name(d)));
                        Sender::start(d.clone(), opts)
                    })
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Router {
            config,
            ring,
            senders,
            local,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The ring.
    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    /// The configured destinations; placements index into this.
    pub fn destinations(&self) -> &[Destination] {
        &self.config.destinations
    }

    /// Who owns `name`: `replication_factor` members, first owner first.
    pub fn route(&self, name: &str) -> Placement {
        let mut v = Vec::with_capacity(self.config.replication_factor);
        self.ring.place(
            name,
            self.config.replication_factor,
            self.config.diverse_replicas,
            &mut v,
        );
        let mut p = Placement {
            idx: [0; INLINE],
            len: v.len().min(INLINE),
        };
        p.idx[..p.len].copy_from_slice(&v[..p.len]);
        p
    }

    /// This process's index among the destinations, when it stores its own share.
    pub fn local(&self) -> Option<usize> {
        self.local
    }

    /// Queues `point` for every remote owner of `name`; says whether this process owns a copy
    /// and should store it (only with `local` set and `store_local` on).
    pub fn send(&self, name: &str, point: Point) -> SendOutcome {
        self.send_copies(name, point, None)
    }

    /// [`Router::send`] for stream listeners: a copy whose member's queue is full waits for
    /// room there under flow control ([`Sender::send_waiting`]), after every other copy has
    /// been queued, so a full member holds back only its own copies.
    pub fn send_waiting(&self, name: &str, point: Point, stopping: &AtomicBool) -> SendOutcome {
        self.send_copies(name, point, Some(stopping))
    }

    /// Both sends: `stopping` is set for the waiting one.
    fn send_copies(&self, name: &str, point: Point, stopping: Option<&AtomicBool>) -> SendOutcome {
        let mut out = SendOutcome::default();
        let mut full = [0usize; INLINE];
        let mut n_full = 0;
        for &i in self.route(name).iter() {
            if Some(i) == self.local {
                out.local = true;
                continue;
            }
            let Some(s) = &self.senders[i] else { continue };
            let offered = match stopping {
                Some(_) => s.offer(name, point),
                None if s.send(name, point) => Offered::Queued,
                None => Offered::Dropped,
            };
            match offered {
                Offered::Queued => out.queued += 1,
                Offered::Dropped => out.dropped += 1,
                Offered::Full => {
                    full[n_full] = i;
                    n_full += 1;
                }
            }
        }
        for &i in &full[..n_full] {
            let (Some(s), Some(stopping)) = (&self.senders[i], stopping) else {
                continue;
            };
            if s.send_waiting(name, point, stopping) {
                out.queued += 1;
            } else {
                out.dropped += 1;
            }
        }
        out
    }

    /// The sender of destination `i` (`None` for this process's own entry).
    pub fn sender(&self, i: usize) -> Option<&Sender> {
        self.senders.get(i).and_then(Option::as_ref)
    }

    /// Per-destination counters, in destination order (`None` for this process's entry).
    pub fn stats(&self) -> Vec<(Destination, Option<SenderStats>)> {
        self.config
            .destinations
            .iter()
            .zip(&self.senders)
            .map(|(d, s)| (d.clone(), s.as_ref().map(Sender::stats)))
            .collect()
    }

    /// Waits until every sender has written what it holds, or `timeout`; true if all have.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.senders
            .iter()
            .flatten()
            .all(|s| s.wait_idle(deadline.saturating_duration_since(Instant::now())))
    }
}

/// A file-name-safe directory name for `d`'s spill: carbon's destination name
/// (`host:port:instance`) with anything but `[A-Za-z0-9_-]` turned into `_`.
pub fn spill_dir_name(d: &Destination) -> String {
    format!(
        "{}:{}:{}",
        d.host,
        d.port,
        d.instance.as_deref().unwrap_or("None")
    )
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HashKind;

    #[test]
    fn local_share_is_not_sent() {
        let dests: Vec<Destination> = ["127.0.0.1:1:a", "127.0.0.1:1:b", "127.0.0.1:1:c"]
            .iter()
            .map(|d| Destination::parse(d).unwrap())
            .collect();
        let mut c = ClusterConfig::new(dests.clone());
        c.hashing = HashKind::CarbonChRelay;
        c.replication_factor = 2;
        c.local = Some(dests[1].clone());
        c.sender.connect_timeout = Duration::from_millis(50);
        let r = Router::new(c).unwrap();
        let p = Point {
            timestamp: 1,
            value: 1.0,
        };
        let (mut local, mut remote) = (0, 0);
        for i in 0..300 {
            let name = format!("x.{i}");
            let place = r.route(&name);
            assert_eq!(place.len(), 2);
            let o = r.send(&name, p);
            assert_eq!(o.local, place.contains(&1));
            assert_eq!(o.queued + usize::from(o.local), 2);
            local += usize::from(o.local);
            remote += o.queued;
        }
        assert!(local > 100 && remote > 300, "{local} {remote}");
        let st = r.stats();
        assert!(st[1].1.is_none());
        let queued: u64 = st.iter().filter_map(|s| s.1).map(|s| s.queued).sum();
        assert_eq!(queued, remote as u64);
    }
}
