//! A worker's conntrack shard: its table, the clock the table counts in, its
//! counters, and what the control thread asks of it (list, flush, stats).

use std::net::IpAddr;
use std::time::Instant;

use super::table::{ConntrackTable, CtConfigError, CtState, CtTimeouts, CtView};
use super::tuple::CtTuple;

/// Entries per worker unless configured: Linux's `nf_conntrack_max` on a host
/// of 4 GiB or more.
pub const DEFAULT_CT_CAPACITY: u32 = 262_144;

/// The zone of classic L2 ports (a network's zone is its VNI, below 2^24).
pub const CLASSIC_ZONE: u32 = 1 << 24;

/// Entries the worker loop expires at most per call ([`CtShard::expire`]).
pub const EXPIRE_BUDGET: usize = 1024;

/// A worker's conntrack settings (`[conntrack]` of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtConfig {
    /// Entries per worker, allocated when the first tracked network appears.
    pub capacity: u32,
    /// Timeouts per state.
    pub timeouts: CtTimeouts,
}

impl Default for CtConfig {
    fn default() -> Self {
        CtConfig {
            capacity: DEFAULT_CT_CAPACITY,
            timeouts: CtTimeouts::default(),
        }
    }
}

impl CtConfig {
    /// Checks the ranges the table accepts, without building it.
    ///
    /// # Errors
    /// The first value out of range.
    pub fn validate(&self) -> Result<(), CtConfigError> {
        ConntrackTable::new(1, &self.timeouts, 0)?;
        if self.capacity == 0 || self.capacity > super::table::MAX_CAPACITY {
            return Err(CtConfigError::Capacity(self.capacity));
        }
        Ok(())
    }
}

/// A worker's conntrack counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtStats {
    /// Connections held now.
    pub entries: u64,
    /// Connections the table holds at most (0 until a network is tracked).
    pub capacity: u64,
    /// Connections created.
    pub created: u64,
    /// Connections removed after their timeout.
    pub expired: u64,
    /// Unassured connections dropped to make room for new ones.
    pub early_drops: u64,
    /// Packets refused (`ct_invalid`, `ct_out_of_window`, `ct_table_full`).
    pub invalid: u64,
    /// Packets handed to the worker owning their connection (0: one worker
    /// tracks, see `conntrack/mod.rs`).
    pub handed_off: u64,
    /// New connections load-balanced to a service's backend (`lb/`).
    pub lb_new: u64,
}

/// Which connections `ct list` and `ct flush` take: every field set must
/// match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtFilter {
    /// The zone (a network's VNI, or [`CLASSIC_ZONE`]).
    pub zone: Option<u32>,
    /// An address of either direction's tuple.
    pub addr: Option<IpAddr>,
    /// A port of either direction's tuple.
    pub port: Option<u16>,
    /// The state.
    pub state: Option<CtState>,
}

impl CtFilter {
    /// Whether connection `v` matches.
    pub fn matches(&self, v: &CtView) -> bool {
        let tuples = [v.original, v.reply];
        let has_addr = |a: IpAddr| tuples.iter().any(|t| t.src_ip() == a || t.dst_ip() == a);
        let has_port = |p: u16| tuples.iter().any(|t| t.sport == p || t.dport == p);
        self.zone.is_none_or(|z| z == v.zone)
            && self.addr.is_none_or(has_addr)
            && self.port.is_none_or(has_port)
            && self.state.is_none_or(|s| s == v.state)
    }
}

/// A connection as `ct list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEntry {
    /// The zone.
    pub zone: u32,
    /// The original direction.
    pub original: CtTuple,
    /// The reply direction.
    pub reply: CtTuple,
    /// The state.
    pub state: CtState,
    /// Never early-dropped.
    pub assured: bool,
    /// Milliseconds until it expires if no packet comes.
    pub expires_in_ms: u64,
}

/// A worker's shard (see the module docs).
#[derive(Debug)]
pub struct CtShard {
    table: Option<ConntrackTable>,
    config: CtConfig,
    base: Instant,
    /// The last instant converted and its milliseconds: a burst reads the
    /// clock once, and its packets then cost a compare instead of a
    /// subtraction of timespecs (37 instructions a packet under callgrind).
    last: (Instant, u64),
    seed: u64,
    /// Packets refused.
    pub(crate) invalid: u64,
    /// New connections the LB stage sent to a service's backend.
    pub(crate) lb_new: u64,
    /// The LB stage's ClientIP affinity records: connection state of the
    /// worker, allocated with the table.
    pub(crate) affinity: crate::pipeline::lb::affinity::AffinityTable,
    /// The policy stage's hit counters and deny log, beside the connections
    /// whose verdicts it keeps.
    pub(crate) policy: crate::pipeline::policy::PolicyWorker,
}

impl Default for CtShard {
    fn default() -> Self {
        CtShard::new(CtConfig::default())
    }
}

impl CtShard {
    /// A shard with `config`, whose table is allocated on first use.
    pub fn new(config: CtConfig) -> Self {
        let base = Instant::now();
        // The table's hash key: a remote sender must not be able to aim its
        // connections at one chain. Not cryptographic; it need not be.
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u64);
        CtShard {
            table: None,
            config,
            base,
            last: (base, 0),
            seed,
            invalid: 0,
            lb_new: 0,
            affinity: Default::default(),
            policy: Default::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CtConfig {
        &self.config
    }

    /// Milliseconds of the table's clock at `now`.
    #[inline]
    pub fn ms(&mut self, now: Instant) -> u64 {
        if now != self.last.0 {
            let ms = now.saturating_duration_since(self.base).as_millis() as u64;
            self.last = (now, ms);
        }
        self.last.1
    }

    /// The table, allocated now if it was not: once per worker, when the first
    /// tracked network appears (the worker does it when it binds such a
    /// snapshot, so packets never pay for it).
    #[inline]
    pub(crate) fn table(&mut self) -> &mut ConntrackTable {
        if self.table.is_none() {
            self.allocate();
        }
        match &mut self.table {
            Some(t) => t,
            None => unreachable!("allocated above"),
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn allocate(&mut self) {
        if self.table.is_some() {
            return;
        }
        // The config was validated when read; a default stands in otherwise.
        let t = ConntrackTable::new(self.config.capacity, &self.config.timeouts, self.seed)
            .or_else(|_| {
                ConntrackTable::new(DEFAULT_CT_CAPACITY, &CtTimeouts::default(), self.seed)
            });
        self.table = t.ok();
        self.affinity.allocate();
    }

    /// The milliseconds of the last instant converted: the packet at hand's,
    /// once the conntrack stage has tracked it.
    #[inline]
    pub(crate) fn last_ms(&self) -> u64 {
        self.last.1
    }

    /// Whether the table exists.
    pub fn allocated(&self) -> bool {
        self.table.is_some()
    }

    /// Removes up to [`EXPIRE_BUDGET`] connections whose timeout passed by
    /// `now`: what the worker loop calls, `O(expired)`.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ms = self.ms(now);
        match &mut self.table {
            Some(t) => t.expire(ms, EXPIRE_BUDGET, &mut |_| {}),
            None => 0,
        }
    }

    /// The counters.
    pub fn stats(&self) -> CtStats {
        let mut s = CtStats {
            invalid: self.invalid,
            lb_new: self.lb_new,
            ..CtStats::default()
        };
        if let Some(t) = &self.table {
            let c = t.counters();
            s.entries = t.len() as u64;
            s.capacity = t.capacity() as u64;
            s.created = c.created;
            s.expired = c.expired;
            s.early_drops = c.early_dropped;
        }
        s
    }

    /// The live connections `f` takes at `now`, at most `limit`.
    pub fn list(&self, f: &CtFilter, now: Instant, limit: usize) -> Vec<CtEntry> {
        let ms = now.saturating_duration_since(self.base).as_millis() as u64;
        let mut out = Vec::new();
        let Some(t) = &self.table else {
            return out;
        };
        t.for_each(ms, |_, v| {
            if out.len() < limit && f.matches(v) {
                out.push(CtEntry {
                    zone: v.zone,
                    original: v.original,
                    reply: v.reply,
                    state: v.state,
                    assured: v.assured,
                    expires_in_ms: (v.last_seen + t.timeout_ms(v.state)).saturating_sub(ms),
                });
            }
        });
        out
    }

    /// Removes the connections `f` takes; returns how many.
    pub fn flush(&mut self, f: &CtFilter) -> usize {
        match &mut self.table {
            Some(t) => t.flush(|v| f.matches(v), &mut |_| {}),
            None => 0,
        }
    }
}
