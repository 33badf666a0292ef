//! The placement functions of carbon, graphite-web and carbon-c-relay, bit for bit.
//!
//! The references disagree (COMPAT.md §2.11): carbon's `ConsistentHashRing` bumps a replica
//! position that is already taken (`position += 1`), carbon-c-relay does not and instead lets
//! equal positions share the first entry's server; their fnv1a_ch rings hash different replica
//! keys; carbon-c-relay feeds bytes to FNV-1a as (signed, on x86) `char`s. So every variant is
//! a [`HashKind`] of its own, and a cluster picks the one its neighbours use.

use std::cmp::Ordering;
use std::collections::HashSet;

use md5::{Digest, Md5};

use super::Destination;
use crate::error::{Error, Result};

/// Replica points per member on the ring, hard-wired in carbon and carbon-c-relay.
pub const REPLICAS: u32 = 100;

/// A placement algorithm, named as in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKind {
    /// `carbon_ch`: carbon-relay's and graphite-web's `ConsistentHashRing` (md5, with the
    /// `+1` collision rule).
    CarbonCh,
    /// `carbon_ch/c-relay`: carbon-c-relay's (and carbon-relay-ng's) carbon_ch, no collision rule.
    CarbonChRelay,
    /// `fnv1a_ch`: carbon's fnv1a ring, replica key `"<i>-<instance>"` (`None` if unset).
    Fnv1aCh,
    /// `fnv1a_ch/c-relay`: carbon-c-relay's, replica key `"<i>-<ip>:<port>"` or `"<i>-<instance>"`.
    Fnv1aChRelay,
    /// `jump_fnv1a_ch`: carbon-c-relay's jump consistent hash over FNV-1a 64.
    JumpFnv1aCh,
}

impl HashKind {
    /// Every accepted name, for error messages and `--help`.
    pub const NAMES: &'static [&'static str] = &[
        "carbon_ch",
        "carbon_ch/c-relay",
        "fnv1a_ch",
        "fnv1a_ch/c-relay",
        "jump_fnv1a_ch",
    ];

    /// The kind called `name`; plain names are carbon's (graphite-web must find what we
    /// place), `/c-relay` picks carbon-c-relay's variant (`jump_fnv1a_ch` exists only there).
    pub fn from_name(name: &str) -> Option<HashKind> {
        Some(match name {
            "carbon_ch" => HashKind::CarbonCh,
            "carbon_ch/c-relay" => HashKind::CarbonChRelay,
            "fnv1a_ch" => HashKind::Fnv1aCh,
            "fnv1a_ch/c-relay" => HashKind::Fnv1aChRelay,
            "jump_fnv1a_ch" | "jump_fnv1a_ch/c-relay" => HashKind::JumpFnv1aCh,
            _ => return None,
        })
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::CarbonCh => "carbon_ch",
            HashKind::CarbonChRelay => "carbon_ch/c-relay",
            HashKind::Fnv1aCh => "fnv1a_ch",
            HashKind::Fnv1aChRelay => "fnv1a_ch/c-relay",
            HashKind::JumpFnv1aCh => "jump_fnv1a_ch",
        }
    }

    /// Whether this is carbon's (Python) flavour, where `DIVERSE_REPLICAS` applies.
    pub fn is_carbon_flavour(self) -> bool {
        matches!(self, HashKind::CarbonCh | HashKind::Fnv1aCh)
    }
}

/// First two bytes of MD5 as a big-endian u16 (`int(md5(key).hexdigest()[:4], 16)`).
pub fn md5_pos(key: &[u8]) -> u16 {
    let d = Md5::digest(key);
    u16::from_be_bytes([d[0], d[1]])
}

/// FNV-1a 32 folded to 16 bits. `signed_chars` reproduces carbon-c-relay on x86, where a
/// byte ≥ 0x80 is sign-extended before the xor; carbon (Python) uses the plain byte.
pub fn fnv1a_pos(key: &[u8], signed_chars: bool) -> u16 {
    let mut h: u32 = 2_166_136_261;
    for &b in key {
        let x = if signed_chars {
            b as i8 as i32 as u32
        } else {
            b as u32
        };
        h = (h ^ x).wrapping_mul(16_777_619);
    }
    ((h >> 16) ^ (h & 0xFFFF)) as u16
}

/// FNV-1a 64 as carbon-c-relay computes it (sign-extended bytes, see [`fnv1a_pos`]).
pub fn fnv1a64_relay(key: &[u8]) -> u64 {
    let mut h: u64 = 14_695_981_039_346_656_037;
    for &b in key {
        h = (h ^ (b as i8 as i64 as u64)).wrapping_mul(1_099_511_628_211);
    }
    h
}

/// Lamping–Veach jump consistent hash, with carbon-c-relay's float arithmetic.
pub fn jump_bucket(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

/// A ring over a fixed member list; `place` answers who owns a name.
#[derive(Debug, Clone)]
pub struct HashRing {
    kind: HashKind,
    members: Vec<Destination>,
    /// (position, member index), sorted as the reference sorts it. Positions exceed u16 only
    /// through carbon's collision rule. Empty for jump.
    ring: Vec<(u32, usize)>,
    /// Member indices in carbon-c-relay's jump bucket order.
    buckets: Vec<usize>,
}

impl HashRing {
    /// Builds the ring for `members` in configuration order. Refuses an empty list and
    /// members the chosen hash cannot tell apart (carbon raises "already configured" for those;
    /// carbon-c-relay would let them collide on every position).
    pub fn new(kind: HashKind, members: &[Destination]) -> Result<HashRing> {
        if members.is_empty() {
            return Err(Error::invalid("a cluster needs at least one destination"));
        }
        let mut seen = HashSet::new();
        for m in members {
            let id = match kind {
                HashKind::CarbonCh | HashKind::CarbonChRelay => {
                    format!("{} {:?}", m.host, m.instance)
                }
                HashKind::Fnv1aCh => format!("{:?}", m.instance),
                HashKind::Fnv1aChRelay => match &m.instance {
                    Some(i) => format!("={i}"),
                    None => format!("{}:{}", m.host, m.port),
                },
                HashKind::JumpFnv1aCh => format!("{}:{} {:?}", m.host, m.port, m.instance),
            };
            if !seen.insert(id) {
                return Err(Error::invalid(format!(
                    "destination {m} hashes like an earlier one under {} (give each an instance)",
                    kind.name()
                )));
            }
        }
        let mut r = HashRing {
            kind,
            members: members.to_vec(),
            ring: Vec::new(),
            buckets: Vec::new(),
        };
        match kind {
            HashKind::CarbonCh | HashKind::Fnv1aCh => r.build_carbon(),
            HashKind::CarbonChRelay | HashKind::Fnv1aChRelay => r.build_relay(),
            HashKind::JumpFnv1aCh => r.build_jump(),
        }
        Ok(r)
    }

    /// The algorithm.
    pub fn kind(&self) -> HashKind {
        self.kind
    }

    /// Members in configuration order; placements index into this.
    pub fn members(&self) -> &[Destination] {
        &self.members
    }

    /// `(position, member)` entries in ring order, for "explain the ring" (empty for jump).
    pub fn entries(&self) -> &[(u32, usize)] {
        &self.ring
    }

    /// carbon's `ConsistentHashRing.add_node` in order: each new position is bumped past the
    /// ones already taken, so insertion order matters.
    fn build_carbon(&mut self) {
        let mut taken = HashSet::new();
        for (idx, m) in self.members.iter().enumerate() {
            let inst = m.instance.as_deref().map(crate::python::str_repr);
            for i in 0..REPLICAS {
                let mut pos = u32::from(match self.kind {
                    HashKind::Fnv1aCh => {
                        let key = format!("{i}-{}", m.instance.as_deref().unwrap_or("None"));
                        fnv1a_pos(key.as_bytes(), false)
                    }
                    _ => {
                        let key = format!(
                            "({}, {}):{i}",
                            crate::python::str_repr(&m.host),
                            inst.as_deref().unwrap_or("None")
                        );
                        md5_pos(key.as_bytes())
                    }
                });
                while !taken.insert(pos) {
                    pos += 1;
                }
                self.ring.push((pos, idx));
            }
        }
        // Positions are unique, so Python's tuple order is position order.
        self.ring.sort_unstable();
    }

    /// carbon-c-relay's `ch_addnode`: sort by (pos, ip, instance or port); a run of equal
    /// positions all belong to its first entry's server.
    fn build_relay(&mut self) {
        for (idx, m) in self.members.iter().enumerate() {
            for i in 0..REPLICAS {
                let pos = match self.kind {
                    HashKind::CarbonChRelay => {
                        let key = format!(
                            "('{}', {}):{i}",
                            m.host,
                            match &m.instance {
                                Some(inst) => format!("'{inst}'"),
                                None => "None".into(),
                            }
                        );
                        md5_pos(key.as_bytes())
                    }
                    _ => {
                        let key = match &m.instance {
                            Some(inst) => format!("{i}-{inst}"),
                            None => format!("{i}-{}:{}", m.host, m.port),
                        };
                        fnv1a_pos(key.as_bytes(), true)
                    }
                };
                self.ring.push((u32::from(pos), idx));
            }
        }
        let members = &self.members;
        let kind = self.kind;
        self.ring.sort_by(|&(pa, a), &(pb, b)| {
            let (ma, mb) = (&members[a], &members[b]);
            pa.cmp(&pb)
                .then_with(|| ma.host.as_bytes().cmp(mb.host.as_bytes()))
                .then_with(|| match kind {
                    HashKind::CarbonChRelay => match (&ma.instance, &mb.instance) {
                        (None, None) => Ordering::Equal,
                        (None, Some(_)) => Ordering::Greater,
                        (Some(_), None) => Ordering::Less,
                        (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
                    },
                    _ => ma.port.cmp(&mb.port),
                })
        });
        for i in 1..self.ring.len() {
            if self.ring[i].0 == self.ring[i - 1].0 {
                self.ring[i].1 = self.ring[i - 1].1;
            }
        }
    }

    /// carbon-c-relay's jump bucket order: members with an instance first (numerically when
    /// both parse as integers, else bytewise), then the rest in configuration order.
    fn build_jump(&mut self) {
        fn as_number(s: &str) -> Option<i64> {
            // strtol: leading blanks and a sign are allowed, the whole rest must be digits.
            let t = s.trim_start();
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            if !digits.is_empty() && !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if digits.is_empty() {
                return if t.len() == digits.len() {
                    Some(0)
                } else {
                    None
                };
            }
            t.parse::<i64>().ok()
        }
        let members = &self.members;
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by(
            |&a, &b| match (&members[a].instance, &members[b].instance) {
                (None, None) => a.cmp(&b),
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => match (as_number(x), as_number(y)) {
                    (Some(p), Some(q)) => p.cmp(&q),
                    _ => x.as_bytes().cmp(y.as_bytes()),
                },
            },
        );
        self.buckets = order;
    }

    /// The hash position of `name` on this ring (jump: the first bucket's member index).
    pub fn position(&self, name: &str) -> u32 {
        let key = hash_key(name);
        match self.kind {
            HashKind::CarbonCh | HashKind::CarbonChRelay => u32::from(md5_pos(key)),
            HashKind::Fnv1aCh => u32::from(fnv1a_pos(key, false)),
            HashKind::Fnv1aChRelay => u32::from(fnv1a_pos(key, true)),
            HashKind::JumpFnv1aCh => {
                self.buckets[jump_bucket(fnv1a64_relay(key), self.buckets.len())] as u32
            }
        }
    }

    /// The members owning `name`, first owner first, at most `copies` distinct ones.
    /// `diverse` applies carbon's `DIVERSE_REPLICAS` (distinct hosts) on carbon flavours.
    pub fn place(&self, name: &str, copies: usize, diverse: bool, out: &mut Vec<usize>) {
        out.clear();
        let copies = copies.min(self.members.len());
        if copies == 0 {
            return;
        }
        if self.kind == HashKind::JumpFnv1aCh {
            let mut buckets = self.buckets.clone();
            let mut h = fnv1a64_relay(hash_key(name));
            while !buckets.is_empty() {
                let j = jump_bucket(h, buckets.len());
                out.push(buckets[j]);
                if out.len() == copies {
                    return;
                }
                h ^= h >> 12;
                h ^= h << 25;
                h ^= h >> 27;
                h = h.wrapping_mul(2_685_821_657_736_338_717);
                buckets.swap_remove(j);
            }
            return;
        }
        let pos = self.position(name);
        let len = self.ring.len();
        let start = self.ring.partition_point(|&(p, _)| p < pos) % len;
        // carbon's get_nodes stops one entry short of a full turn; carbon-c-relay walks on.
        let steps = if self.kind.is_carbon_flavour() {
            len - 1
        } else {
            len
        };
        let diverse = diverse && self.kind.is_carbon_flavour();
        if self.kind.is_carbon_flavour() && self.members.len() == 1 {
            out.push(0);
            return;
        }
        for k in 0..steps {
            let m = self.ring[(start + k) % len].1;
            if out.contains(&m)
                || (diverse
                    && out
                        .iter()
                        .any(|&o| self.members[o].host == self.members[m].host))
            {
                continue;
            }
            out.push(m);
            if out.len() == copies {
                return;
            }
        }
    }

    /// Convenience form of [`HashRing::place`] returning a new vector.
    pub fn owners(&self, name: &str, copies: usize, diverse: bool) -> Vec<usize> {
        let mut v = Vec::with_capacity(copies);
        self.place(name, copies, diverse, &mut v);
        v
    }
}

/// carbon-c-relay hashes a metric up to its first space; carbon hashes the whole name, which
/// never holds one.
fn hash_key(name: &str) -> &[u8] {
    let b = name.as_bytes();
    &b[..b.iter().position(|&c| c == b' ').unwrap_or(b.len())]
}

/// One name whose owners differ between two rings ("what moves when a node is added").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The metric.
    pub name: String,
    /// Owners on the old ring.
    pub from: Vec<Destination>,
    /// Owners on the new ring.
    pub to: Vec<Destination>,
}

/// The names in `names` whose owner set differs between `old` and `new`, compared by
/// destination (not index, since adding a member can shift indices).
pub fn moves<'a>(
    old: &HashRing,
    new: &HashRing,
    copies: usize,
    diverse: bool,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<Move> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for name in names {
        old.place(name, copies, diverse, &mut a);
        new.place(name, copies, diverse, &mut b);
        let from: Vec<Destination> = a.iter().map(|&i| old.members[i].clone()).collect();
        let to: Vec<Destination> = b.iter().map(|&i| new.members[i].clone()).collect();
        let mut fs = from.clone();
        let mut ts = to.clone();
        fs.sort_by_key(|x| x.to_string());
        ts.sort_by_key(|x| x.to_string());
        if fs != ts {
            out.push(Move {
                name: name.to_owned(),
                from,
                to,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dests(list: &[&str]) -> Vec<Destination> {
        list.iter()
            .map(|d| Destination::parse(d).unwrap())
            .collect()
    }

    #[test]
    fn hash_primitives() {
        // md5("") = d41d8cd9..., fnv1a32("") = offset basis, fnv1a32("a") = 0xe40c292c.
        assert_eq!(md5_pos(b""), 0xd41d);
        assert_eq!(fnv1a_pos(b"a", false), (0xe40c_u32 ^ 0x292c) as u16);
        assert_eq!(fnv1a64_relay(b"a"), 0xaf63dc4c8601ec8c);
        // Bytes ≥ 0x80 differ between the flavours, ASCII does not.
        assert_ne!(
            fnv1a_pos("é".as_bytes(), false),
            fnv1a_pos("é".as_bytes(), true)
        );
        assert_eq!(fnv1a_pos(b"abc", false), fnv1a_pos(b"abc", true));
        for k in [0u64, 1, 42, u64::MAX] {
            assert_eq!(jump_bucket(k, 1), 0);
            assert!(jump_bucket(k, 7) < 7);
        }
    }

    #[test]
    fn names_round_trip() {
        for n in HashKind::NAMES {
            assert_eq!(HashKind::from_name(n).unwrap().name(), *n);
        }
        assert_eq!(HashKind::from_name("mmh3_ch"), None);
    }

    #[test]
    fn carbon_positions_are_unique_and_walks_distinct() {
        let d = dests(&["10.0.0.1:2004:a", "10.0.0.2:2004:b", "10.0.0.3:2004:c"]);
        for kind in [
            HashKind::CarbonCh,
            HashKind::CarbonChRelay,
            HashKind::Fnv1aCh,
            HashKind::Fnv1aChRelay,
            HashKind::JumpFnv1aCh,
        ] {
            let r = HashRing::new(kind, &d).unwrap();
            let mut counts = [0usize; 3];
            for i in 0..3000 {
                let o = r.owners(&format!("m.{i}"), 3, true);
                assert_eq!(o.len(), 3, "{kind:?}");
                let mut s = o.clone();
                s.sort();
                s.dedup();
                assert_eq!(s.len(), 3);
                counts[o[0]] += 1;
            }
            // Each member owns a fair share (far from 0 or all).
            assert!(counts.iter().all(|&c| c > 300), "{kind:?} {counts:?}");
        }
        let r = HashRing::new(HashKind::CarbonCh, &d).unwrap();
        let mut pos: Vec<u32> = r.entries().iter().map(|e| e.0).collect();
        pos.dedup();
        assert_eq!(pos.len(), 300);
    }

    #[test]
    fn diverse_replicas_skip_same_host() {
        let d = dests(&["10.0.0.1:2004:a", "10.0.0.1:2104:b", "10.0.0.2:2004:a"]);
        let r = HashRing::new(HashKind::CarbonCh, &d).unwrap();
        for i in 0..500 {
            let o = r.owners(&format!("x{i}"), 2, true);
            assert_eq!(o.len(), 2);
            assert_ne!(d[o[0]].host, d[o[1]].host);
        }
    }

    #[test]
    fn duplicates_refused() {
        let d = dests(&["h:1", "h:2"]);
        assert!(HashRing::new(HashKind::CarbonCh, &d).is_err());
        assert!(HashRing::new(HashKind::Fnv1aChRelay, &d).is_ok());
        assert!(HashRing::new(HashKind::Fnv1aCh, &d).is_err());
        assert!(HashRing::new(HashKind::CarbonCh, &[]).is_err());
    }

    #[test]
    fn adding_a_member_moves_about_its_share() {
        let old = dests(&["10.0.0.1:1:a", "10.0.0.2:1:b", "10.0.0.3:1:c"]);
        let mut new = old.clone();
        new.push(Destination::parse("10.0.0.4:1:d").unwrap());
        let names: Vec<String> = (0..4000).map(|i| format!("s.{i}")).collect();
        for kind in [HashKind::CarbonCh, HashKind::JumpFnv1aCh] {
            let a = HashRing::new(kind, &old).unwrap();
            let b = HashRing::new(kind, &new).unwrap();
            let m = moves(&a, &b, 1, true, names.iter().map(String::as_str));
            // Roughly a quarter moves, all of it to the new member.
            assert!(m.len() > 600 && m.len() < 1500, "{kind:?} {}", m.len());
            assert!(m.iter().all(|mv| mv.to[0].host == "10.0.0.4"));
        }
    }
}
