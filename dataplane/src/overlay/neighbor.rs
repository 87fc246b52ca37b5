//! The underlay neighbour table: next-hop IP → MAC, learned from ARP replies and
//! IPv6 Neighbor Advertisements on the uplink, aged out, and read by every worker.
//!
//! This is runtime state, not configuration, so it is not part of the
//! [`OverlaySnapshot`](super::OverlaySnapshot): rebuilding ten thousand endpoints
//! because one MAC was learned would be absurd. Instead:
//!
//! - **One writer.** The worker that owns the uplink rx queue (where replies
//!   arrive) owns the [`NeighborTable`]: a plain map with learn times, no locks.
//! - **Many readers.** On every *change* (new IP, changed MAC, expiry) the owner
//!   republishes a small immutable [`NeighborMap`] (IP → MAC only) through a
//!   [`SnapshotCell`]; every worker loads it once per burst, like the pipeline
//!   snapshot. Changes are rare (next hops are the few underlay peers or the
//!   underlay gateway), so copying the map on change costs nothing that matters,
//!   and a refresh (same MAC, new time) republishes nothing. The generation lets a
//!   flow cache that caches outer MACs notice a change.
//! - **Requests rate-limited per worker.** A worker that misses in the map must not
//!   send an ARP request or NS per packet. Each worker owns a
//!   [`ResolveLimiter`] that allows one request per IP per retry interval. With
//!   `W` workers that is at most `W` requests per IP per interval: the price of
//!   needing no shared mutable state, and small (W is the core count). Packets
//!   that miss are dropped with a named reason, not queued: the flow recovers on
//!   the sender's retransmit, one round trip after the reply.
//!
//! Time is always passed in (`now`), never read here, so the table is
//! deterministic under test and a worker reads its clock once per burst.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::ethernet::MacAddr;
use crate::snapshot::{SnapshotCell, Versioned};

/// Timing and size of neighbour resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborConfig {
    /// How long a learned entry lives without being confirmed again.
    pub timeout: Duration,
    /// Age after which an entry is worth confirming ahead of expiry (see
    /// [`NeighborTable::refreshable`]); below `timeout`.
    pub refresh_after: Duration,
    /// The least time between two requests for one IP from one worker.
    pub retry_interval: Duration,
    /// The most entries the table (and a limiter) holds, against floods of
    /// unsolicited replies.
    pub max_entries: usize,
}

impl Default for NeighborConfig {
    /// 60 s lifetime, refresh from 30 s, one request per second, 4096 entries.
    fn default() -> Self {
        NeighborConfig {
            timeout: Duration::from_secs(60),
            refresh_after: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
            max_entries: 4096,
        }
    }
}

/// The published, read-only neighbour map that workers look up.
#[derive(Clone, Debug, Default)]
pub struct NeighborMap {
    generation: u64,
    entries: HashMap<IpAddr, MacAddr>,
}

impl NeighborMap {
    /// The MAC of underlay next hop `ip`, if resolved.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<MacAddr> {
        self.entries.get(&ip).copied()
    }

    /// Number of resolved next hops.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is resolved.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Versioned for NeighborMap {
    fn generation(&self) -> u64 {
        self.generation
    }
}

/// What [`NeighborTable::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnOutcome {
    /// A new entry; republished.
    New,
    /// Same MAC as before; only the learn time moved (nothing republished).
    Refreshed,
    /// A different MAC than before; republished.
    Changed,
    /// Not learned: the table is full.
    TableFull,
}

/// The writer side, owned by the worker that receives on the uplink.
#[derive(Debug)]
pub struct NeighborTable {
    config: NeighborConfig,
    /// `None` as the time marks a static entry: configured, never aged or replaced.
    entries: HashMap<IpAddr, (MacAddr, Option<Instant>)>,
    generation: u64,
    published: Arc<SnapshotCell<NeighborMap>>,
}

impl NeighborTable {
    /// An empty table, with an empty map published at generation 0.
    pub fn new(config: NeighborConfig) -> Self {
        NeighborTable {
            config,
            entries: HashMap::new(),
            generation: 0,
            published: Arc::new(SnapshotCell::new(NeighborMap::default())),
        }
    }

    /// The cell workers load the [`NeighborMap`] from.
    pub fn reader(&self) -> Arc<SnapshotCell<NeighborMap>> {
        Arc::clone(&self.published)
    }

    /// The configuration.
    pub fn config(&self) -> &NeighborConfig {
        &self.config
    }

    /// Records that `ip` is at `mac` as of `now` (from an ARP reply or a Neighbor
    /// Advertisement the caller has checked is for the local VTEP). Republishes if
    /// the map changed.
    pub fn learn(&mut self, ip: IpAddr, mac: MacAddr, now: Instant) -> LearnOutcome {
        let full = self.entries.len() >= self.config.max_entries;
        let outcome = match self.entries.get_mut(&ip) {
            // Configured entries win over what the wire says.
            Some((_, None)) => return LearnOutcome::Refreshed,
            Some(entry) if entry.0 == mac => {
                entry.1 = Some(now);
                return LearnOutcome::Refreshed;
            }
            Some(entry) => {
                *entry = (mac, Some(now));
                LearnOutcome::Changed
            }
            None if full => return LearnOutcome::TableFull,
            None => {
                self.entries.insert(ip, (mac, Some(now)));
                LearnOutcome::New
            }
        };
        self.publish();
        outcome
    }

    /// A configured neighbour: `ip` is at `mac` for good (never aged, never
    /// replaced by what is learned), for underlays whose next hop does not answer
    /// ARP/ND or must not be trusted to. Republishes.
    pub fn add_static(&mut self, ip: IpAddr, mac: MacAddr) {
        self.entries.insert(ip, (mac, None));
        self.publish();
    }

    /// Drops entries not confirmed within the timeout; republishes if any went.
    /// Returns how many went. Call it every so often (e.g. once a second).
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        let timeout = self.config.timeout;
        self.entries.retain(|_, (_, at)| match at {
            Some(at) => now.saturating_duration_since(*at) < timeout,
            None => true,
        });
        let removed = before - self.entries.len();
        if removed > 0 {
            self.publish();
        }
        removed
    }

    /// Entries older than `refresh_after` but not expired: worth a unicast
    /// request now, so that a live next hop never expires under traffic.
    pub fn refreshable(&self, now: Instant) -> impl Iterator<Item = IpAddr> + '_ {
        let after = self.config.refresh_after;
        self.entries
            .iter()
            .filter(move |(_, (_, at))| {
                at.is_some_and(|at| now.saturating_duration_since(at) >= after)
            })
            .map(|(ip, _)| *ip)
    }

    /// Forgets `ip` (e.g. on link down); republishes if it was known.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        let known = self.entries.remove(&ip).is_some();
        if known {
            self.publish();
        }
        known
    }

    /// The MAC of `ip`, on the owner's side.
    pub fn lookup(&self, ip: IpAddr) -> Option<MacAddr> {
        self.entries.get(&ip).map(|e| e.0)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The generation of the last published map.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn publish(&mut self) {
        self.generation += 1;
        let entries = self
            .entries
            .iter()
            .map(|(ip, (mac, _))| (*ip, *mac))
            .collect();
        self.published.publish(NeighborMap {
            generation: self.generation,
            entries,
        });
    }
}

/// Per-worker "needs resolution" state: which IPs this worker has recently sent a
/// request for, so that it sends one per IP per retry interval, not one per
/// packet. Owned by one worker; sized once, so it does not allocate afterwards.
#[derive(Debug)]
pub struct ResolveLimiter {
    interval: Duration,
    capacity: usize,
    last_request: HashMap<IpAddr, Instant>,
}

impl ResolveLimiter {
    /// A limiter allowing one request per IP per `config.retry_interval`, tracking
    /// at most `config.max_entries` IPs.
    pub fn new(config: &NeighborConfig) -> Self {
        ResolveLimiter {
            interval: config.retry_interval,
            capacity: config.max_entries,
            last_request: HashMap::with_capacity(config.max_entries),
        }
    }

    /// Called on a neighbour miss for `ip`: whether to send a request now. `true`
    /// records the request. With the limiter full of recent requests it answers
    /// `false` rather than grow: better late resolution than a request storm.
    pub fn should_request(&mut self, ip: IpAddr, now: Instant) -> bool {
        let interval = self.interval;
        let recent = |at: &Instant| now.saturating_duration_since(*at) < interval;
        if let Some(at) = self.last_request.get_mut(&ip) {
            if recent(at) {
                return false;
            }
            *at = now;
            return true;
        }
        if self.last_request.len() >= self.capacity {
            self.last_request.retain(|_, at| recent(at));
            if self.last_request.len() >= self.capacity {
                return false;
            }
        }
        self.last_request.insert(ip, now);
        true
    }

    /// Forgets `ip` once it resolved, freeing its slot.
    pub fn resolved(&mut self, ip: IpAddr) {
        self.last_request.remove(&ip);
    }

    /// Number of IPs tracked.
    pub fn len(&self) -> usize {
        self.last_request.len()
    }

    /// Whether no IP is tracked.
    pub fn is_empty(&self) -> bool {
        self.last_request.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const M2: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 2]);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn config() -> NeighborConfig {
        NeighborConfig {
            timeout: Duration::from_secs(10),
            refresh_after: Duration::from_secs(5),
            retry_interval: Duration::from_secs(1),
            max_entries: 2,
        }
    }

    #[test]
    fn learn_publishes_changes_only() {
        let t0 = Instant::now();
        let mut t = NeighborTable::new(config());
        let reader = t.reader();
        assert_eq!(reader.load().lookup(ip("192.0.2.1")), None);
        assert_eq!(t.learn(ip("192.0.2.1"), M1, t0), LearnOutcome::New);
        assert_eq!(reader.load().lookup(ip("192.0.2.1")), Some(M1));
        assert_eq!(reader.generation(), 1);
        assert_eq!(t.learn(ip("192.0.2.1"), M1, t0), LearnOutcome::Refreshed);
        assert_eq!(reader.generation(), 1, "a refresh republishes nothing");
        assert_eq!(t.learn(ip("192.0.2.1"), M2, t0), LearnOutcome::Changed);
        assert_eq!(reader.load().lookup(ip("192.0.2.1")), Some(M2));
        assert_eq!(reader.generation(), 2);
        assert_eq!(t.learn(ip("2001:db8::1"), M1, t0), LearnOutcome::New);
        assert_eq!(t.learn(ip("2001:db8::2"), M1, t0), LearnOutcome::TableFull);
        assert_eq!(reader.load().len(), 2);
        assert!(t.remove(ip("2001:db8::1")));
        assert!(!t.remove(ip("2001:db8::1")));
        assert_eq!(reader.load().lookup(ip("2001:db8::1")), None);
    }

    #[test]
    fn entries_age_out_unless_refreshed() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = NeighborTable::new(config());
        let reader = t.reader();
        t.learn(ip("192.0.2.1"), M1, t0);
        t.learn(ip("192.0.2.2"), M2, t0);
        assert_eq!(t.expire(t0 + s(9)), 0);
        assert_eq!(reader.generation(), 2, "nothing expired, nothing published");
        let mut stale: Vec<_> = t.refreshable(t0 + s(6)).collect();
        stale.sort();
        assert_eq!(stale, [ip("192.0.2.1"), ip("192.0.2.2")]);
        assert_eq!(t.refreshable(t0 + s(4)).count(), 0);
        // .1 is confirmed at 8 s, .2 is not.
        t.learn(ip("192.0.2.1"), M1, t0 + s(8));
        assert_eq!(t.expire(t0 + s(10)), 1);
        assert_eq!(reader.load().lookup(ip("192.0.2.2")), None);
        assert_eq!(reader.load().lookup(ip("192.0.2.1")), Some(M1));
        assert_eq!(t.expire(t0 + s(18)), 1);
        assert!(reader.load().is_empty());
        assert!(t.is_empty());
        assert_eq!(reader.generation(), 4);
    }

    #[test]
    fn static_entries_never_age_nor_change() {
        let t0 = Instant::now();
        let mut t = NeighborTable::new(config());
        let reader = t.reader();
        t.add_static(ip("192.0.2.9"), M1);
        assert_eq!(reader.load().lookup(ip("192.0.2.9")), Some(M1));
        assert_eq!(t.learn(ip("192.0.2.9"), M2, t0), LearnOutcome::Refreshed);
        assert_eq!(
            t.lookup(ip("192.0.2.9")),
            Some(M1),
            "configured wins over learned"
        );
        assert_eq!(t.expire(t0 + Duration::from_secs(3600)), 0);
        assert_eq!(t.refreshable(t0 + Duration::from_secs(3600)).count(), 0);
        assert_eq!(reader.load().lookup(ip("192.0.2.9")), Some(M1));
    }

    #[test]
    fn one_request_per_ip_per_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = ResolveLimiter::new(&config());
        let a = ip("192.0.2.1");
        assert!(l.should_request(a, t0));
        assert!(!l.should_request(a, t0), "second packet of the burst");
        assert!(!l.should_request(a, t0 + ms(999)));
        assert!(l.should_request(a, t0 + ms(1000)));
        assert!(l.should_request(ip("192.0.2.2"), t0));
        assert!(
            !l.should_request(ip("192.0.2.3"), t0 + ms(500)),
            "full of recent requests"
        );
        // Once the others are old, the full limiter makes room.
        assert!(l.should_request(ip("192.0.2.3"), t0 + ms(1500)));
        l.resolved(ip("192.0.2.3"));
        assert_eq!(l.len(), 1);
    }
}
