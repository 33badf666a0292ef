//! Spreading metrics over several carbon nodes, placed exactly where carbon-relay,
//! graphite-web and carbon-c-relay would put them (COMPAT.md §2.11, §2.12).
//!
//! [`hash`] holds the rings — every variant the reference programs disagree on, selectable by
//! name —, [`sender`] the per-destination queue and connections, [`router`] ties them together
//! as [`Router`]. A cluster is only useful if a node added next to carbon daemons, or a
//! graphite-web reading from it, agrees on who owns a name; so placement is tested against the
//! real programs, not against our reading of them.

pub mod hash;
pub mod node;
pub mod query;
pub mod router;
pub mod sender;

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

pub use hash::{HashKind, HashRing, Move, moves};
pub use node::{DestinationStats, Routed};
pub use router::{Placement, Router, SendOutcome};
pub use sender::{Protocol, Sender, SenderOptions, SenderStats};

/// One cluster member, as carbon writes it: `host:port[:instance]` (`[v6]:port[:instance]`).
///
/// The instance matters to the hash: carbon_ch ignores the port, so two caches on one host are
/// told apart only by their instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Host or address, without brackets.
    pub host: String,
    /// TCP port the sender connects to.
    pub port: u16,
    /// carbon's instance name; `None` hashes as Python's `None`.
    pub instance: Option<String>,
}

impl Destination {
    /// Parses carbon's destination syntax with `carbon.util.parseDestination`'s rules.
    pub fn parse(s: &str) -> Result<Destination> {
        let s = s.trim();
        let bad = |why: &str| Error::invalid(format!("destination {s:?}: {why}"));
        let (host, rest) = if let Some(stripped) = s.strip_prefix('[') {
            let end = stripped
                .rfind("]:")
                .ok_or_else(|| bad("expected [address]:port"))?;
            (&stripped[..end], &stripped[end + 2..])
        } else {
            s.split_once(':')
                .ok_or_else(|| bad("expected host:port[:instance]"))?
        };
        let (port, instance) = match rest.split_once(':') {
            Some((p, i)) => (p, Some(i.to_owned())),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port: u16 = port
            .trim()
            .parse()
            .map_err(|_| bad("port is not a number in 0..=65535"))?;
        Ok(Destination {
            host: host.to_owned(),
            port,
            instance,
        })
    }

    /// `host:port` to connect to (brackets around IPv6 literals).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())?;
        if let Some(i) = &self.instance {
            write!(f, ":{i}")?;
        }
        Ok(())
    }
}

/// Most copies of a point (`replication-factor`): placements are held inline, without
/// allocating, on the hot path; carbon has no limit, but more copies than this is no cluster
/// anyone runs.
pub const MAX_REPLICATION: usize = 8;

/// The `[cluster]` section: who the members are, how names are placed, how points travel.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Members in configuration order (order matters to jump_fnv1a_ch and, through the
    /// collision rule, to carbon's rings).
    pub destinations: Vec<Destination>,
    /// Placement algorithm.
    pub hashing: HashKind,
    /// Copies of every point (carbon's `REPLICATION_FACTOR`).
    pub replication_factor: usize,
    /// carbon's `DIVERSE_REPLICAS`: replicas go to distinct hosts (carbon flavours only;
    /// carbon-c-relay has no such rule).
    pub diverse_replicas: bool,
    /// Which member this process is, if any: its share is not sent over the network.
    pub local: Option<Destination>,
    /// Whether this process stores what it owns itself (only meaningful with `local`).
    pub store_local: bool,
    /// How points are sent to the others.
    pub sender: SenderOptions,
    /// Each destination's carbonserver HTTP address (`host:port`), in destination order, for
    /// cluster-wide fetch and find; empty = this handle reads only what it stores itself.
    pub query_destinations: Vec<String>,
    /// Bound on one HTTP query to a node (connect, send and the whole answer).
    pub query_timeout: Duration,
    /// Whether points past `queue-size` spill to `<data-dir>/.cluster-spill/<destination>/`
    /// instead of being dropped.
    pub spill: bool,
}

impl ClusterConfig {
    /// A cluster over `destinations` with carbon's defaults: carbon_ch, one copy, diverse
    /// replicas, pickle, carbon's queue and batch sizes.
    pub fn new(destinations: Vec<Destination>) -> ClusterConfig {
        ClusterConfig {
            destinations,
            hashing: HashKind::CarbonCh,
            replication_factor: 1,
            diverse_replicas: true,
            local: None,
            store_local: true,
            sender: SenderOptions::default(),
            query_destinations: Vec::new(),
            query_timeout: Duration::from_secs(5),
            spill: true,
        }
    }

    /// Applies a `[cluster]` TOML table (keys in go-carbon's dashed style); `what` names the
    /// source in errors.
    pub fn apply_toml(mut self, t: &toml::Table, what: &str) -> Result<ClusterConfig> {
        let err = |k: &str, m: String| Error::Config {
            file: what.into(),
            line: 0,
            message: format!("[cluster] {k}: {m}"),
        };
        let string = |k: &str, v: &toml::Value| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| err(k, format!("expected a string, got {v}")))
        };
        let int = |k: &str, v: &toml::Value, min: i64, max: i64| match v.as_integer() {
            Some(i) if (min..=max).contains(&i) => Ok(i),
            _ => Err(err(
                k,
                format!("expected an integer in {min}..={max}, got {v}"),
            )),
        };
        let boolean = |k: &str, v: &toml::Value| {
            v.as_bool()
                .ok_or_else(|| err(k, format!("expected true or false, got {v}")))
        };
        let duration = |k: &str, v: &toml::Value| {
            let s = string(k, v)?;
            crate::config::parse_go_duration(&s)
                .ok_or_else(|| err(k, format!("{s:?} is not a duration like \"5s\"")))
        };
        for (k, v) in t {
            match k.as_str() {
                "destinations" => {
                    let list = v.as_array().ok_or_else(|| {
                        err(k, "expected a list of \"host:port[:instance]\"".into())
                    })?;
                    self.destinations = list
                        .iter()
                        .map(|d| {
                            Destination::parse(&string(k, d)?).map_err(|e| err(k, e.to_string()))
                        })
                        .collect::<Result<_>>()?;
                }
                "hashing" => {
                    let s = string(k, v)?;
                    self.hashing = HashKind::from_name(&s).ok_or_else(|| {
                        err(
                            k,
                            format!("{s:?}: expected one of {}", HashKind::NAMES.join(", ")),
                        )
                    })?;
                }
                "replication-factor" => {
                    self.replication_factor = int(k, v, 1, MAX_REPLICATION as i64)? as usize
                }
                "diverse-replicas" => self.diverse_replicas = boolean(k, v)?,
                "local" => {
                    let s = string(k, v)?;
                    self.local = if s.is_empty() {
                        None
                    } else {
                        Some(Destination::parse(&s).map_err(|e| err(k, e.to_string()))?)
                    };
                }
                "store-local" => self.store_local = boolean(k, v)?,
                "protocol" => {
                    let s = string(k, v)?;
                    self.sender.protocol = match s.as_str() {
                        "pickle" => Protocol::Pickle,
                        "plain" | "line" => Protocol::Plain,
                        _ => {
                            return Err(err(k, format!("{s:?}: expected \"pickle\" or \"plain\"")));
                        }
                    };
                }
                "queue-size" => self.sender.queue_size = int(k, v, 1, 1 << 32)? as usize,
                "batch-size" => self.sender.batch_size = int(k, v, 1, 1 << 20)? as usize,
                "connections" => self.sender.connections = int(k, v, 1, 16)? as usize,
                "connect-timeout" => self.sender.connect_timeout = duration(k, v)?,
                "io-timeout" => self.sender.io_timeout = duration(k, v)?,
                "reconnect-max-delay" => self.sender.reconnect_max_delay = duration(k, v)?,
                "query-destinations" => {
                    let list = v
                        .as_array()
                        .ok_or_else(|| err(k, "expected a list of \"host:port\"".into()))?;
                    self.query_destinations = list
                        .iter()
                        .map(|d| {
                            let s = string(k, d)?;
                            // Same syntax as a destination without instance.
                            Destination::parse(&s)
                                .ok()
                                .filter(|d| d.instance.is_none())
                                .map(|d| d.address())
                                .ok_or_else(|| err(k, format!("{s:?}: expected host:port")))
                        })
                        .collect::<Result<_>>()?;
                }
                "query-timeout" => self.query_timeout = duration(k, v)?,
                "spill" => self.spill = boolean(k, v)?,
                "flow-control" => self.sender.flow_control = boolean(k, v)?,
                "spill-max-size" => self.sender.spill_max_size = int(k, v, 0, i64::MAX)? as u64,
                _ => return Err(err(k, "unknown key in [cluster]".into())),
            }
        }
        self.validate()
            .map_err(|e| err("destinations", e.to_string()))?;
        Ok(self)
    }

    /// Checks what the ring cannot work with: no members, duplicates the hash cannot tell
    /// apart, more copies than members, a `local` that is not a member.
    pub fn validate(&self) -> Result<()> {
        HashRing::new(self.hashing, &self.destinations)?;
        if self.replication_factor == 0 || self.replication_factor > self.destinations.len() {
            return Err(Error::invalid(format!(
                "replication factor {} needs 1..={} destinations",
                self.replication_factor,
                self.destinations.len()
            )));
        }
        if self.replication_factor > MAX_REPLICATION {
            return Err(Error::invalid(format!(
                "replication factor {} is more than the {MAX_REPLICATION} copies supported",
                self.replication_factor
            )));
        }
        if !self.query_destinations.is_empty()
            && self.query_destinations.len() != self.destinations.len()
        {
            return Err(Error::invalid(format!(
                "query-destinations has {} entries for {} destinations (one carbonserver \
                 address per destination, same order)",
                self.query_destinations.len(),
                self.destinations.len()
            )));
        }
        if let Some(l) = &self.local
            && !self.destinations.contains(l)
        {
            return Err(Error::invalid(format!(
                "local {l} is not one of the destinations"
            )));
        }
        Ok(())
    }
}

/// Default reconnect pacing, carbon's `ReconnectingClientFactory.maxDelay`.
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    /// `destinations = [..]` alone.
    fn t_ok(members: &[String]) -> toml::Table {
        toml::from_str(&format!("destinations = [{}]\n", members.join(", "))).unwrap()
    }

    #[test]
    fn destinations_parse_like_carbon() {
        let d = Destination::parse("10.0.0.1:2004:a").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.instance.as_deref()),
            ("10.0.0.1", 2004, Some("a"))
        );
        let d = Destination::parse(" host:2004 ").unwrap();
        assert_eq!((d.host.as_str(), d.port, d.instance), ("host", 2004, None));
        let d = Destination::parse("[::1]:2004:b").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.instance.as_deref()),
            ("::1", 2004, Some("b"))
        );
        assert_eq!(d.to_string(), "[::1]:2004:b");
        for bad in ["host", ":2004", "h:port", "h:70000", "[::1]2004"] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_section() {
        let t: toml::Table = toml::from_str(
            "destinations = [\"127.0.0.1:2004:a\", \"127.0.0.1:2104:b\"]\nhashing = \"jump_fnv1a_ch\"\nreplication-factor = 2\nprotocol = \"plain\"\nlocal = \"127.0.0.1:2004:a\"\nreconnect-max-delay = \"1s\"\n",
        )
        .unwrap();
        let c = ClusterConfig::new(vec![]).apply_toml(&t, "x").unwrap();
        assert_eq!(c.destinations.len(), 2);
        assert_eq!(c.hashing, HashKind::JumpFnv1aCh);
        assert_eq!(c.replication_factor, 2);
        assert_eq!(c.sender.protocol, Protocol::Plain);
        assert_eq!(c.sender.reconnect_max_delay, Duration::from_secs(1));
        assert!(c.local.is_some());
        assert!(c.sender.flow_control, "carbon's USE_FLOW_CONTROL default");
        let t: toml::Table =
            toml::from_str("destinations = [\"a:1\"]\nflow-control = false\n").unwrap();
        let c = ClusterConfig::new(vec![]).apply_toml(&t, "x").unwrap();
        assert!(!c.sender.flow_control);
        let t: toml::Table =
            toml::from_str("destinations = [\"a:1\"]\nflow-control = \"yes\"\n").unwrap();
        let e = ClusterConfig::new(vec![])
            .apply_toml(&t, "x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("flow-control") && e.contains("expected true or false"),
            "{e}"
        );
        // Nine copies on ten members: refused by the key's range, not silently eight.
        let ten: Vec<String> = (0..10).map(|i| format!("\"h{i}:1\"")).collect();
        let t: toml::Table = toml::from_str(&format!(
            "destinations = [{}]\nreplication-factor = 9\n",
            ten.join(", ")
        ))
        .unwrap();
        let e = ClusterConfig::new(vec![]).apply_toml(&t, "x").unwrap_err();
        assert!(e.to_string().contains("replication-factor"), "{e}");
        let mut c = ClusterConfig::new(vec![])
            .apply_toml(&t_ok(&ten), "x")
            .unwrap();
        c.replication_factor = 9;
        assert!(c.validate().unwrap_err().to_string().contains("9"));
        for bad in [
            "destinations = [\"a:1\"]\nreplication-factor = 2\n",
            "destinations = [\"a:1\"]\nhashing = \"md5\"\n",
            "destinations = [\"a:1\"]\nlocal = \"b:1\"\n",
            "destinations = [\"a:1\"]\nqueue-sise = 1\n",
            "destinations = []\n",
            "destinations = [\"a:1\", \"a:2\"]\n",
        ] {
            let t: toml::Table = toml::from_str(bad).unwrap();
            assert!(
                ClusterConfig::new(vec![]).apply_toml(&t, "x").is_err(),
                "{bad}"
            );
        }
    }
}
