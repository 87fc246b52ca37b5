//! A worker's conntrack shard: its table, the clock the table counts in, its
//! counters, and what the control thread asks of it (list, flush, stats).

use std::net::IpAddr;
use std::time::Instant;

use super::table::{ConntrackTable, CtConfigError, CtHandle, CtState, CtTimeouts, CtView};
use super::tuple::{owner, CtTuple};

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

/// Stub inserts and removals a shard asks of other workers, kept until the
/// worker sends them over the handoff rings (after the burst that made them,
/// before any of its packets is sent): at most this many at once.
const OUTBOX: usize = 2 * EXPIRE_BUDGET;

/// A redirect stub to leave or take back on worker `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StubNote {
    /// The worker the reply tuple hashes to.
    pub to: u16,
    /// The zone.
    pub zone: u32,
    /// The connection's reply tuple.
    pub tuple: CtTuple,
    /// Insert (true) or remove.
    pub insert: bool,
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
    /// This worker's number among `workers` (see the module docs' handoff).
    me: u16,
    workers: u16,
    /// The burst at hand was handed over by another worker: it is this
    /// worker's to track, whatever the owner hash says (a redirect stub
    /// sends a DNAT'd reply to the owner, whose hash names another worker).
    pub(crate) handed: bool,
    /// Packets this worker handed to another.
    pub(crate) handed_off: u64,
    /// Stub notes waiting for the rings ([`OUTBOX`] at most).
    outbox: Vec<StubNote>,
    /// Stub notes that found the outbox full (the stub then ends with its
    /// own timeout, or is never left: the reply meets no stub and is refused).
    pub(crate) notes_lost: u64,
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
            me: 0,
            workers: 1,
            handed: false,
            handed_off: 0,
            outbox: Vec::new(),
            notes_lost: 0,
            policy: Default::default(),
        }
    }

    /// Makes this the shard of worker `me` of `workers`: packets whose tuple
    /// another worker owns are handed over, and DNAT leaves redirect stubs.
    pub fn set_workers(&mut self, me: u16, workers: u16) {
        self.me = me;
        self.workers = workers.max(1);
        if self.workers > 1 && self.outbox.capacity() < OUTBOX {
            self.outbox.reserve_exact(OUTBOX);
        }
    }

    /// Workers sharing the connections (1: no handoff).
    #[inline]
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// The worker to hand a packet of (zone, `t`) to, when it is not this
    /// one; `None` with one worker or in a burst handed over already.
    #[inline]
    pub(crate) fn hand_to(&self, zone: u32, t: &CtTuple) -> Option<u16> {
        if self.workers <= 1 || self.handed {
            return None;
        }
        let o = owner(zone, t, usize::from(self.workers)) as u16;
        (o != self.me).then_some(o)
    }

    /// [`hand_to`](Self::hand_to) for a connection owned by its client's
    /// address `src` alone (a service with ClientIP affinity: one worker
    /// keeps a client's record).
    #[inline]
    pub(crate) fn hand_to_client(&self, zone: u32, src: &[u8; 16]) -> Option<u16> {
        let by_addr = CtTuple {
            src: *src,
            dst: *src,
            ..CtTuple::default()
        };
        self.hand_to(zone, &by_addr)
    }

    /// Whether this shard holds a live connection (not a stub) of (zone, `t`).
    #[cold]
    pub(crate) fn holds(&mut self, zone: u32, t: &CtTuple, now: u64) -> bool {
        let table = self.table();
        table
            .find_live(zone, t, now)
            .and_then(|(h, _)| table.get(h))
            .is_some_and(|v| v.state != CtState::Redirect)
    }

    /// A new connection of this worker was translated, its reply tuple set to
    /// `reply`: a stub goes to the worker that tuple hashes to.
    #[inline]
    pub(crate) fn note_reply(&mut self, zone: u32, reply: &CtTuple) {
        if self.workers <= 1 {
            return;
        }
        let to = owner(zone, reply, usize::from(self.workers)) as u16;
        if to != self.me {
            self.note(StubNote {
                to,
                zone,
                tuple: *reply,
                insert: true,
            });
        }
    }

    fn note(&mut self, n: StubNote) {
        note_into(&mut self.outbox, &mut self.notes_lost, n);
    }

    /// The stub notes made since the last call, oldest first.
    pub fn take_notes(&mut self) -> std::vec::Drain<'_, StubNote> {
        self.outbox.drain(..)
    }

    /// Whether stub notes wait.
    #[inline]
    pub fn has_notes(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Applies a stub note another worker (`owner`) sent: leaves the stub, or
    /// takes it back. A stub refused (the table full, or a connection of
    /// this worker on the tuple) is counted in `notes_lost`.
    pub fn apply_stub(&mut self, zone: u32, tuple: &CtTuple, owner: u16, insert: bool) {
        let now = self.ms(Instant::now());
        let table = self.table();
        let ok = if insert {
            table
                .insert_redirect(zone, *tuple, owner, now, &mut |_| {})
                .is_ok()
        } else {
            table.remove_redirect(zone, tuple, owner)
        };
        if insert && !ok {
            self.notes_lost += 1;
        }
    }

    /// The table, and a reporter of the entries it removes that sends their
    /// stubs' removal (for [`ConntrackTable::track_reporting`] and the like).
    #[inline]
    pub(crate) fn table_reporting(&mut self) -> (&mut ConntrackTable, Reporter<'_>) {
        if self.table.is_none() {
            self.allocate();
        }
        let Some(t) = &mut self.table else {
            unreachable!("allocated above")
        };
        (
            t,
            Reporter {
                me: self.me,
                workers: self.workers,
                outbox: &mut self.outbox,
                lost: &mut self.notes_lost,
            },
        )
    }

    /// Removes connection `h`, sending its stub's removal.
    pub(crate) fn remove(&mut self, h: CtHandle) {
        let (t, mut r) = self.table_reporting();
        if let Some(v) = t.get(h) {
            t.remove(h);
            r.removed(&v);
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
        if self.table.is_none() {
            return 0;
        }
        let (t, mut r) = self.table_reporting();
        t.expire(ms, EXPIRE_BUDGET, &mut |v| r.removed(v))
    }

    /// The counters.
    pub fn stats(&self) -> CtStats {
        let mut s = CtStats {
            invalid: self.invalid,
            lb_new: self.lb_new,
            handed_off: self.handed_off,
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
        // A redirect stub is the trace of a connection another worker holds
        // (and lists): shown only when asked for by its state.
        let stubs = f.state == Some(CtState::Redirect);
        t.for_each(ms, |_, v| {
            if out.len() < limit && (stubs || v.state != CtState::Redirect) && f.matches(v) {
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
        if self.table.is_none() {
            return 0;
        }
        let (t, mut r) = self.table_reporting();
        t.flush(|v| f.matches(v), &mut |v| r.removed(v))
    }
}

fn note_into(outbox: &mut Vec<StubNote>, lost: &mut u64, n: StubNote) {
    // Never grown on the packet path: reserved once by `set_workers`.
    if outbox.len() < outbox.capacity() {
        outbox.push(n);
    } else {
        *lost += 1;
    }
}

/// Sends the stub removal of each connection the table reports removed (see
/// [`CtShard::table_reporting`]).
pub(crate) struct Reporter<'a> {
    me: u16,
    workers: u16,
    outbox: &'a mut Vec<StubNote>,
    lost: &'a mut u64,
}

impl Reporter<'_> {
    /// Connection `v` is gone: if it was translated and its reply tuple
    /// hashes to another worker, that worker holds its stub.
    #[inline]
    pub(crate) fn removed(&mut self, v: &CtView) {
        if self.workers <= 1 || v.state == CtState::Redirect || v.reply == v.original.reversed() {
            return;
        }
        let to = owner(v.zone, &v.reply, usize::from(self.workers)) as u16;
        if to != self.me {
            note_into(
                self.outbox,
                self.lost,
                StubNote {
                    to,
                    zone: v.zone,
                    tuple: v.reply,
                    insert: false,
                },
            );
        }
    }
}
