//! The conntrack table of one worker: a preallocated slab of entries, an
//! index-based hash of both directions, and timeout lists.
//!
//! # Layout
//! Entries live in one `Vec` allocated when the table is built and never grown:
//! `capacity` entries, no allocation per packet or per connection. Each entry is
//! in the hash twice, once per direction, as a *node* `index·2 + direction`;
//! buckets hold the first node of a chain and each entry holds the next node of
//! each of its two chains. A lookup hashes (zone, tuple), walks one chain and
//! compares the tuple of the node's direction, so an entry is found from its
//! original tuple and from its reply tuple — after NAT the reply tuple is the
//! translated one. The buckets are a power of two ≥ 2·capacity (one node per
//! bucket on average when full).
//!
//! # Expiry: per-timeout FIFO lists
//! Every state has one timeout, so the entries of one state, appended when they
//! enter it, are in the order they expire. One doubly-linked list per state (by
//! slab index, no allocation); [`ConntrackTable::expire`] pops heads while they
//! are due: `O(expired)`. A packet only writes `last_seen` in its entry (no list
//! work on the hot path); a head that turns out to have been refreshed is moved
//! to its list's tail when reached, which costs one move per timeout period of a
//! live connection. A timer wheel would give the same bound with a tick to keep;
//! the lists need nothing but the `now` of the caller. Lookups compare
//! `last_seen + timeout` with `now` themselves, so a timeout takes effect at the
//! exact millisecond whatever the expiry lag; the lists only bound how long the
//! memory of a dead entry stays taken.
//!
//! # Full table
//! When no slot is free, due entries are reclaimed first, then the oldest
//! *unassured* entry — one the other side never answered, or a TCP connection
//! whose handshake has not completed — is dropped to make room (Linux's early
//! drop), taken from the heads of the unassured states' lists: `O(1)`. When there
//! is none, the new connection is refused ([`CtDrop::TableFull`], counted as
//! `ct_table_full`). Assured connections are never dropped for a new one.

use std::net::IpAddr;

use super::nat::NatRewrite;
use super::tcp::{self, TcpDir, TcpRefusal, TcpSegment, TcpState, TcpStep};
use super::tuple::{ct_hash, CtTuple};
use crate::drop::DropReason;

const NIL: u32 = u32::MAX;

/// What a connection is in. The discriminant indexes the timeout lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CtState {
    /// A TCP connection in this state.
    Tcp(TcpState),
    /// UDP (and other protocols): only the original direction seen.
    UdpUnreplied,
    /// UDP: both directions seen (assured).
    UdpReplied,
    /// ICMP echo: request seen.
    IcmpUnreplied,
    /// ICMP echo: reply seen.
    IcmpReplied,
    /// A stub that says which worker owns the connection of this tuple.
    Redirect,
}

/// Number of timeout lists.
const CLASSES: usize = 14;

impl CtState {
    #[inline]
    fn class(self) -> usize {
        match self {
            CtState::Tcp(s) => s as usize,
            CtState::UdpUnreplied => 9,
            CtState::UdpReplied => 10,
            CtState::IcmpUnreplied => 11,
            CtState::IcmpReplied => 12,
            CtState::Redirect => 13,
        }
    }

    fn from_class(c: u8) -> Self {
        match c {
            0..=8 => CtState::Tcp(TcpState::ALL[usize::from(c)]),
            9 => CtState::UdpUnreplied,
            10 => CtState::UdpReplied,
            11 => CtState::IcmpUnreplied,
            12 => CtState::IcmpReplied,
            _ => CtState::Redirect,
        }
    }
}

impl CtState {
    /// Every state, in list order.
    pub const ALL: [CtState; CLASSES] = [
        CtState::Tcp(TcpState::SynSent),
        CtState::Tcp(TcpState::SynSent2),
        CtState::Tcp(TcpState::SynRecv),
        CtState::Tcp(TcpState::Established),
        CtState::Tcp(TcpState::FinWait),
        CtState::Tcp(TcpState::CloseWait),
        CtState::Tcp(TcpState::LastAck),
        CtState::Tcp(TcpState::TimeWait),
        CtState::Tcp(TcpState::Close),
        CtState::UdpUnreplied,
        CtState::UdpReplied,
        CtState::IcmpUnreplied,
        CtState::IcmpReplied,
        CtState::Redirect,
    ];

    /// The state's name as `ct list` shows it and its filter takes (Linux's
    /// names for TCP).
    pub const fn name(self) -> &'static str {
        match self {
            CtState::Tcp(TcpState::SynSent) => "SYN_SENT",
            CtState::Tcp(TcpState::SynSent2) => "SYN_SENT2",
            CtState::Tcp(TcpState::SynRecv) => "SYN_RECV",
            CtState::Tcp(TcpState::Established) => "ESTABLISHED",
            CtState::Tcp(TcpState::FinWait) => "FIN_WAIT",
            CtState::Tcp(TcpState::CloseWait) => "CLOSE_WAIT",
            CtState::Tcp(TcpState::LastAck) => "LAST_ACK",
            CtState::Tcp(TcpState::TimeWait) => "TIME_WAIT",
            CtState::Tcp(TcpState::Close) => "CLOSE",
            CtState::UdpUnreplied => "UDP_UNREPLIED",
            CtState::UdpReplied => "UDP_REPLIED",
            CtState::IcmpUnreplied => "ICMP_UNREPLIED",
            CtState::IcmpReplied => "ICMP_REPLIED",
            CtState::Redirect => "REDIRECT",
        }
    }

    /// The state of a [`name`](Self::name), in any case.
    pub fn from_name(s: &str) -> Option<CtState> {
        CtState::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for CtState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The states whose entries are never assured: the early-drop candidates.
const UNASSURED: [usize; 5] = [0, 1, 2, 9, 11];

/// Timeouts per state, in seconds. The defaults are Linux's `nf_conntrack`
/// defaults (`net.netfilter.nf_conntrack_*_timeout_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtTimeouts {
    /// TCP, per state in [`TcpState::ALL`] order.
    pub tcp: [u32; 9],
    /// UDP before a reply.
    pub udp_unreplied: u32,
    /// UDP after a reply.
    pub udp_replied: u32,
    /// ICMP echo.
    pub icmp: u32,
}

impl Default for CtTimeouts {
    fn default() -> Self {
        CtTimeouts {
            // SYN_SENT 120, SYN_SENT2 120, SYN_RECV 60, ESTABLISHED 5 days,
            // FIN_WAIT 120, CLOSE_WAIT 60, LAST_ACK 30, TIME_WAIT 120, CLOSE 10.
            tcp: [120, 120, 60, 432_000, 120, 60, 30, 120, 10],
            udp_unreplied: 30,
            udp_replied: 120,
            icmp: 30,
        }
    }
}

/// The longest timeout accepted: 30 days.
pub const MAX_TIMEOUT: u32 = 30 * 86_400;
/// The largest table: 2³⁰ entries (the node index needs one more bit).
pub const MAX_CAPACITY: u32 = 1 << 30;

/// Why a table was not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CtConfigError {
    /// Capacity 0 or above [`MAX_CAPACITY`].
    #[error("conntrack capacity {0} is out of range 1..={MAX_CAPACITY}")]
    Capacity(u32),
    /// A timeout of 0 or above [`MAX_TIMEOUT`] seconds.
    #[error("conntrack timeout {0} s is out of range 1..={MAX_TIMEOUT}")]
    Timeout(u32),
}

/// What conntrack reads of a packet beyond its tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtL4 {
    /// A TCP segment.
    Tcp(TcpSegment),
    /// UDP, or any protocol without a state machine of its own.
    Udp,
    /// ICMP/ICMPv6 echo (the tuple's ports hold the identifier).
    IcmpEcho {
        /// An echo reply (not a request).
        reply: bool,
    },
    /// An ICMP/ICMPv6 error quoting a packet with this tuple.
    IcmpError {
        /// The quoted packet's tuple, as it was sent.
        quoted: CtTuple,
    },
}

/// A packet as conntrack sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtPacket {
    /// The zone (the virtual network).
    pub zone: u32,
    /// The packet's tuple.
    pub tuple: CtTuple,
    /// Protocol details.
    pub l4: CtL4,
}

/// A direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The direction of the packet that created it.
    Original = 0,
    /// The other one.
    Reply = 1,
}

/// An entry of the table, valid until the next call that removes entries
/// ([`ConntrackTable::track`] with a reopen or a full table,
/// [`ConntrackTable::expire`], [`ConntrackTable::remove`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtHandle(u32);

/// What a packet found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtEvent {
    /// It created the entry.
    New,
    /// It belongs to an existing connection.
    Existing,
    /// An ICMP error about an existing connection.
    Related,
    /// The connection is owned by this other worker: hand the packet over.
    Redirect(u16),
}

/// The result of tracking a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtHit {
    /// The entry.
    pub handle: CtHandle,
    /// The direction the packet (for [`CtEvent::Related`]: the error) travels.
    pub dir: Dir,
    /// The connection's state after the packet.
    pub state: CtState,
    /// See [`CtEvent`].
    pub event: CtEvent,
}

/// Why a packet was refused; each maps to a drop reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDrop {
    /// No room for a new connection and nothing unassured to drop.
    TableFull,
    /// Not a valid packet for the connection's state, or no connection for a
    /// packet that cannot open one.
    Invalid,
    /// A TCP segment outside the tracked window.
    OutOfWindow,
}

impl CtDrop {
    /// The drop reason it is counted under.
    pub const fn reason(self) -> DropReason {
        match self {
            CtDrop::TableFull => DropReason::CtTableFull,
            CtDrop::Invalid => DropReason::CtInvalid,
            CtDrop::OutOfWindow => DropReason::CtOutOfWindow,
        }
    }
}

/// The new reply tuple is already some connection's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the translated tuple is already in use")]
pub struct ReplyInUse;

/// Counters of the table's own events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtCounters {
    /// Entries created.
    pub created: u64,
    /// Entries removed because their timeout passed.
    pub expired: u64,
    /// Unassured entries dropped to make room.
    pub early_dropped: u64,
}

const ASSURED: u8 = 1;
const SEEN_REPLY: u8 = 2;
const IN_USE: u8 = 4;

/// One connection: 152 bytes on x86-64, plus 8 bytes of buckets per entry
/// (`entry_size_and_memory`).
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// `[original, reply]`.
    key: [CtTuple; 2],
    zone: u32,
    /// Next node in each direction's hash chain.
    next: [u32; 2],
    /// Timeout list links (the free list uses `tnext`).
    tprev: u32,
    tnext: u32,
    last_seen: u64,
    queued_at: u64,
    tcp: [TcpDir; 2],
    class: u8,
    flags: u8,
    /// For a redirect stub: the owning worker.
    owner: u16,
    /// The policy stage's verdict: the stamp of the compiled policy that
    /// allowed the connection ([`CompiledPolicy::stamp`](crate::pipeline::policy::CompiledPolicy::stamp)),
    /// 0 when no policy was consulted. Only allowed connections keep an entry
    /// (a denied one is removed), so the stamp is the whole verdict. It sits
    /// in what was the entry's tail padding: the entry stays 152 bytes.
    policy: u32,
}

const EMPTY: Entry = Entry {
    key: [CtTuple {
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        proto: 0,
    }; 2],
    zone: 0,
    next: [NIL; 2],
    tprev: NIL,
    tnext: NIL,
    last_seen: 0,
    queued_at: 0,
    tcp: [TcpDir {
        end: 0,
        maxend: 0,
        maxwin: 0,
        scale: 0,
        wscale_seen: false,
    }; 2],
    class: 0,
    flags: 0,
    owner: 0,
    policy: 0,
};

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

/// A connection as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtView {
    /// Zone.
    pub zone: u32,
    /// Original tuple.
    pub original: CtTuple,
    /// Reply tuple (translated, under NAT).
    pub reply: CtTuple,
    /// State.
    pub state: CtState,
    /// Assured: never early-dropped.
    pub assured: bool,
    /// A packet was seen in the reply direction.
    pub seen_reply: bool,
    /// Milliseconds of the last packet.
    pub last_seen: u64,
}

/// The conntrack table of one worker (see the module doc).
#[derive(Debug)]
pub struct ConntrackTable {
    entries: Vec<Entry>,
    free: u32,
    len: u32,
    buckets: Vec<u32>,
    mask: u64,
    seed: u64,
    lists: [List; CLASSES],
    timeouts: [u64; CLASSES],
    counters: CtCounters,
}

impl ConntrackTable {
    /// A table of `capacity` entries, all allocated now. `seed` keys the hash.
    ///
    /// # Errors
    /// A capacity or timeout out of range.
    pub fn new(capacity: u32, timeouts: &CtTimeouts, seed: u64) -> Result<Self, CtConfigError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(CtConfigError::Capacity(capacity));
        }
        let mut entries = vec![EMPTY; capacity as usize];
        for (i, e) in entries.iter_mut().enumerate() {
            e.tnext = if i + 1 < capacity as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        let nb = (2 * capacity as usize).next_power_of_two();
        let mut t = ConntrackTable {
            entries,
            free: 0,
            len: 0,
            buckets: vec![NIL; nb],
            mask: nb as u64 - 1,
            seed,
            lists: [List {
                head: NIL,
                tail: NIL,
            }; CLASSES],
            timeouts: [0; CLASSES],
            counters: CtCounters::default(),
        };
        t.set_timeouts(timeouts)?;
        Ok(t)
    }

    /// Changes the timeouts; entries already in a state keep their place in its
    /// list, so the new timeout applies to them from their last packet.
    ///
    /// # Errors
    /// A timeout out of range (nothing changed).
    pub fn set_timeouts(&mut self, t: &CtTimeouts) -> Result<(), CtConfigError> {
        let mut ms = [0u64; CLASSES];
        let rest = [t.udp_unreplied, t.udp_replied, t.icmp, t.icmp];
        let secs = t.tcp.iter().chain(rest.iter());
        for (i, &s) in secs.enumerate() {
            if s == 0 || s > MAX_TIMEOUT {
                return Err(CtConfigError::Timeout(s));
            }
            ms[i] = u64::from(s) * 1000;
        }
        // A redirect stub lives as long as the longest state its owner can be in.
        ms[13] = ms.iter().copied().max().unwrap_or(0);
        self.timeouts = ms;
        Ok(())
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of entries the table holds at most.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// The table's own counters.
    pub fn counters(&self) -> CtCounters {
        self.counters
    }

    /// Bytes the table takes: entries and buckets.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>() + self.buckets.len() * 4
    }

    /// The timeout of state `s`, in milliseconds.
    pub fn timeout_ms(&self, s: CtState) -> u64 {
        self.timeouts[s.class()]
    }

    /// The size of one entry in bytes.
    pub const fn entry_bytes() -> usize {
        std::mem::size_of::<Entry>()
    }

    #[inline]
    fn bucket(&self, zone: u32, t: &CtTuple) -> usize {
        (ct_hash(self.seed, zone, t) & self.mask) as usize
    }

    #[inline]
    fn due(&self, e: &Entry, now: u64) -> bool {
        e.last_seen
            .saturating_add(self.timeouts[usize::from(e.class)])
            <= now
    }

    /// The node of (zone, tuple), live or due.
    fn find(&self, zone: u32, t: &CtTuple) -> Option<(u32, usize)> {
        let mut n = self.buckets[self.bucket(zone, t)];
        while n != NIL {
            let (i, d) = (n >> 1, (n & 1) as usize);
            let e = &self.entries[i as usize];
            if e.key[d] == *t && e.zone == zone {
                return Some((i, d));
            }
            n = e.next[d];
        }
        None
    }

    /// The live entry of (zone, tuple); a due one is removed on the way.
    fn lookup(
        &mut self,
        zone: u32,
        t: &CtTuple,
        now: u64,
        rm: &mut impl FnMut(&CtView),
    ) -> Option<(u32, usize)> {
        let (i, d) = self.find(zone, t)?;
        if self.due(&self.entries[i as usize], now) {
            self.release(i, rm);
            self.counters.expired += 1;
            return None;
        }
        Some((i, d))
    }

    fn link_node(&mut self, i: u32, d: usize) {
        let e = self.entries[i as usize];
        let b = self.bucket(e.zone, &e.key[d]);
        self.entries[i as usize].next[d] = self.buckets[b];
        self.buckets[b] = i << 1 | d as u32;
    }

    fn unlink_node(&mut self, i: u32, d: usize) {
        let e = self.entries[i as usize];
        let b = self.bucket(e.zone, &e.key[d]);
        let me = i << 1 | d as u32;
        let mut n = self.buckets[b];
        if n == me {
            self.buckets[b] = e.next[d];
            return;
        }
        while n != NIL {
            let (j, dj) = (n >> 1, (n & 1) as usize);
            let nx = self.entries[j as usize].next[dj];
            if nx == me {
                self.entries[j as usize].next[dj] = e.next[d];
                return;
            }
            n = nx;
        }
    }

    fn list_push(&mut self, i: u32, class: usize, now: u64) {
        let tail = self.lists[class].tail;
        let at = if tail == NIL {
            now
        } else {
            now.max(self.entries[tail as usize].queued_at)
        };
        let e = &mut self.entries[i as usize];
        e.class = class as u8;
        e.queued_at = at;
        e.tprev = tail;
        e.tnext = NIL;
        if tail == NIL {
            self.lists[class].head = i;
        } else {
            self.entries[tail as usize].tnext = i;
        }
        self.lists[class].tail = i;
    }

    fn list_unlink(&mut self, i: u32) {
        let e = self.entries[i as usize];
        let c = usize::from(e.class);
        if e.tprev == NIL {
            self.lists[c].head = e.tnext;
        } else {
            self.entries[e.tprev as usize].tnext = e.tnext;
        }
        if e.tnext == NIL {
            self.lists[c].tail = e.tprev;
        } else {
            self.entries[e.tnext as usize].tprev = e.tprev;
        }
    }

    /// Frees entry `i`: out of the hash, out of its list, onto the free list.
    fn release(&mut self, i: u32, rm: &mut impl FnMut(&CtView)) {
        if let Some(v) = self.get(CtHandle(i)) {
            rm(&v);
        }
        let redirect = self.entries[i as usize].class == 13;
        self.unlink_node(i, 0);
        if !redirect {
            self.unlink_node(i, 1);
        }
        self.list_unlink(i);
        let e = &mut self.entries[i as usize];
        e.flags = 0;
        e.tnext = self.free;
        self.free = i;
        self.len -= 1;
    }

    /// Takes a free slot, reclaiming a due entry or early-dropping an unassured
    /// one when none is free.
    fn alloc(&mut self, now: u64, rm: &mut impl FnMut(&CtView)) -> Result<u32, CtDrop> {
        if self.free == NIL && self.expire(now, 8, rm) == 0 {
            let victim = UNASSURED
                .iter()
                .map(|&c| self.lists[c].head)
                .filter(|&h| h != NIL)
                .min_by_key(|&h| self.entries[h as usize].queued_at);
            match victim {
                Some(v) => {
                    self.release(v, rm);
                    self.counters.early_dropped += 1;
                }
                None => return Err(CtDrop::TableFull),
            }
        }
        let i = self.free;
        self.free = self.entries[i as usize].tnext;
        self.len += 1;
        Ok(i)
    }

    fn create(
        &mut self,
        zone: u32,
        orig: CtTuple,
        state: CtState,
        tcp: [TcpDir; 2],
        now: u64,
        rm: &mut impl FnMut(&CtView),
    ) -> Result<u32, CtDrop> {
        let i = self.alloc(now, rm)?;
        self.entries[i as usize] = Entry {
            key: [orig, orig.reversed()],
            zone,
            next: [NIL; 2],
            tprev: NIL,
            tnext: NIL,
            last_seen: now,
            queued_at: now,
            tcp,
            class: 0,
            flags: IN_USE,
            owner: 0,
            policy: 0,
        };
        self.link_node(i, 0);
        if state != CtState::Redirect {
            self.link_node(i, 1);
        }
        self.list_push(i, state.class(), now);
        self.counters.created += 1;
        Ok(i)
    }

    fn set_state(&mut self, i: u32, state: CtState, now: u64) {
        let c = state.class();
        if usize::from(self.entries[i as usize].class) != c {
            self.list_unlink(i);
            self.list_push(i, c, now);
        }
    }

    /// Tracks one packet at time `now` (milliseconds of the caller's clock, never
    /// going back). `check_window`: the zone tracks TCP windows.
    ///
    /// # Errors
    /// [`CtDrop`]: the packet is to be dropped and counted under its reason. A
    /// refused packet changes no live entry.
    ///
    /// Entries it removes on the way are not reported: for zones without NAT.
    /// With NAT, see [`track_reporting`](Self::track_reporting).
    pub fn track(&mut self, p: &CtPacket, now: u64, check_window: bool) -> Result<CtHit, CtDrop> {
        self.track_reporting(p, now, check_window, &mut |_| {})
    }

    /// [`track`](Self::track), calling `rm` with every entry it removes on the
    /// way (a due entry met by the lookup, one reclaimed or early-dropped to
    /// make room, a closed connection reopened): what NAT needs to give back
    /// a source port or a redirect stub.
    ///
    /// # Errors
    /// As [`track`](Self::track).
    pub fn track_reporting(
        &mut self,
        p: &CtPacket,
        now: u64,
        check_window: bool,
        rm: &mut impl FnMut(&CtView),
    ) -> Result<CtHit, CtDrop> {
        if let CtL4::IcmpError { quoted } = p.l4 {
            // The quoted packet went the other way: its reverse is a tuple of the
            // connection in the error's own direction.
            let (i, d) = self
                .lookup(p.zone, &quoted.reversed(), now, rm)
                .ok_or(CtDrop::Invalid)?;
            let e = &self.entries[i as usize];
            if e.class == 13 {
                return Ok(self.redirect_hit(i));
            }
            return Ok(CtHit {
                handle: CtHandle(i),
                dir: dir_of(d),
                state: CtState::from_class(e.class),
                event: CtEvent::Related,
            });
        }
        match self.lookup(p.zone, &p.tuple, now, rm) {
            Some((i, _)) if self.entries[i as usize].class == 13 => {
                self.entries[i as usize].last_seen = now;
                Ok(self.redirect_hit(i))
            }
            Some((i, d)) => self.update(i, d, p, now, check_window, rm),
            None => self.open(p, now, rm),
        }
    }

    fn redirect_hit(&self, i: u32) -> CtHit {
        CtHit {
            handle: CtHandle(i),
            dir: Dir::Original,
            state: CtState::Redirect,
            event: CtEvent::Redirect(self.entries[i as usize].owner),
        }
    }

    fn open(
        &mut self,
        p: &CtPacket,
        now: u64,
        rm: &mut impl FnMut(&CtView),
    ) -> Result<CtHit, CtDrop> {
        let (state, tcp) = match p.l4 {
            CtL4::Tcp(s) if tcp::opens(&s) => (CtState::Tcp(TcpState::SynSent), tcp::init(&s)),
            CtL4::Udp => (CtState::UdpUnreplied, [TcpDir::default(); 2]),
            CtL4::IcmpEcho { reply: false } => (CtState::IcmpUnreplied, [TcpDir::default(); 2]),
            _ => return Err(CtDrop::Invalid),
        };
        // The reverse of the packet's tuple already belongs to another
        // connection, whose reply was translated away from it (a SNAT'd
        // connection's original tuple, seen backwards): a new entry would give
        // one tuple two connections. Linux refuses such a clash at confirm.
        if self.lookup(p.zone, &p.tuple.reversed(), now, rm).is_some() {
            return Err(CtDrop::Invalid);
        }
        let i = self.create(p.zone, p.tuple, state, tcp, now, rm)?;
        Ok(CtHit {
            handle: CtHandle(i),
            dir: Dir::Original,
            state,
            event: CtEvent::New,
        })
    }

    fn update(
        &mut self,
        i: u32,
        d: usize,
        p: &CtPacket,
        now: u64,
        check_window: bool,
        rm: &mut impl FnMut(&CtView),
    ) -> Result<CtHit, CtDrop> {
        // The class and the window data only: a copy of the whole entry
        // (152 bytes) cost a memcpy per packet.
        let (class, tcp_dirs) = {
            let e = &self.entries[i as usize];
            (e.class, e.tcp)
        };
        let old = CtState::from_class(class);
        let mut assure = false;
        let state = match (old, p.l4) {
            (CtState::Tcp(s), CtL4::Tcp(seg)) => {
                let mut dirs = tcp_dirs;
                match tcp::step(s, &mut dirs, d, &seg, check_window) {
                    Err(TcpRefusal::Invalid) => return Err(CtDrop::Invalid),
                    Err(TcpRefusal::OutOfWindow) => return Err(CtDrop::OutOfWindow),
                    // Accepted, but it neither moves the state nor keeps the
                    // connection alive (Linux does not refresh on ignored segments).
                    Ok(TcpStep::Ignore) => {
                        return Ok(CtHit {
                            handle: CtHandle(i),
                            dir: dir_of(d),
                            state: old,
                            event: CtEvent::Existing,
                        })
                    }
                    Ok(TcpStep::Reopen) => {
                        self.release(i, rm);
                        return self.open(p, now, rm);
                    }
                    Ok(TcpStep::To(n)) => {
                        self.entries[i as usize].tcp = dirs;
                        assure = s == TcpState::SynRecv && n == TcpState::Established;
                        CtState::Tcp(n)
                    }
                }
            }
            (CtState::UdpUnreplied | CtState::UdpReplied, CtL4::Udp) => {
                if d == 1 {
                    assure = true;
                    CtState::UdpReplied
                } else {
                    old
                }
            }
            (CtState::IcmpUnreplied | CtState::IcmpReplied, CtL4::IcmpEcho { reply }) => {
                if d == 1 && reply {
                    CtState::IcmpReplied
                } else if d == 0 && !reply {
                    old
                } else {
                    return Err(CtDrop::Invalid);
                }
            }
            _ => return Err(CtDrop::Invalid),
        };
        let e = &mut self.entries[i as usize];
        e.last_seen = now;
        if d == 1 {
            e.flags |= SEEN_REPLY;
        }
        if assure {
            e.flags |= ASSURED;
        }
        self.set_state(i, state, now);
        Ok(CtHit {
            handle: CtHandle(i),
            dir: dir_of(d),
            state,
            event: CtEvent::Existing,
        })
    }

    /// Sets the reply tuple of a new connection: what a NAT decided (for DNAT
    /// the backend as source, for SNAT the external address and port as
    /// destination). The connection is then found from the translated tuple.
    ///
    /// # Errors
    /// [`ReplyInUse`] if another connection has that tuple; nothing changes.
    pub fn set_reply(&mut self, h: CtHandle, reply: CtTuple) -> Result<(), ReplyInUse> {
        let i = h.0;
        let zone = self.entries[i as usize].zone;
        if let Some((j, _)) = self.find(zone, &reply) {
            if j != i {
                return Err(ReplyInUse);
            }
        }
        self.unlink_node(i, 1);
        self.entries[i as usize].key[1] = reply;
        self.link_node(i, 1);
        Ok(())
    }

    /// Records that the connection of `tuple` (either direction) is owned by
    /// worker `owner`: a packet of that tuple then gets [`CtEvent::Redirect`].
    /// `rm` as for [`track_reporting`](Self::track_reporting).
    ///
    /// A stub already there is replaced (the owner changed).
    ///
    /// # Errors
    /// [`CtDrop::TableFull`], as for a new connection; [`CtDrop::Invalid`] if a
    /// connection of this worker holds the tuple (either direction: a clash
    /// between shards, which only a shared table could have refused at the
    /// start), which is kept.
    pub fn insert_redirect(
        &mut self,
        zone: u32,
        tuple: CtTuple,
        owner: u16,
        now: u64,
        rm: &mut impl FnMut(&CtView),
    ) -> Result<CtHandle, CtDrop> {
        if let Some((i, _)) = self.lookup(zone, &tuple, now, rm) {
            if self.entries[i as usize].class != 13 {
                return Err(CtDrop::Invalid);
            }
            self.release(i, rm);
        }
        if self.lookup(zone, &tuple.reversed(), now, rm).is_some() {
            return Err(CtDrop::Invalid);
        }
        let i = self.create(
            zone,
            tuple,
            CtState::Redirect,
            [TcpDir::default(); 2],
            now,
            rm,
        )?;
        let e = &mut self.entries[i as usize];
        e.owner = owner;
        e.flags |= ASSURED;
        Ok(CtHandle(i))
    }

    /// The worker the live redirect stub of (zone, `tuple`) sends to, its
    /// timestamp refreshed as a packet meeting it in [`track`](Self::track)
    /// would; `None` when the tuple has no live stub (a connection of this
    /// worker, or nothing).
    pub fn redirect_of(&mut self, zone: u32, tuple: &CtTuple, now: u64) -> Option<u16> {
        let (i, _) = self.find(zone, tuple)?;
        let e = &mut self.entries[i as usize];
        if e.class != 13 || e.last_seen.saturating_add(self.timeouts[13]) <= now {
            return None;
        }
        e.last_seen = now;
        Some(e.owner)
    }

    /// Removes the redirect stub of (zone, `tuple`) that worker `owner` left;
    /// true if there was one. A connection of this worker on the tuple, or a
    /// stub another owner left since, stays.
    pub fn remove_redirect(&mut self, zone: u32, tuple: &CtTuple, owner: u16) -> bool {
        match self.find(zone, tuple) {
            Some((i, _))
                if self.entries[i as usize].class == 13
                    && self.entries[i as usize].owner == owner =>
            {
                self.release(i, &mut |_| {});
                true
            }
            _ => false,
        }
    }

    /// Removes an entry.
    pub fn remove(&mut self, h: CtHandle) {
        if self.entries[h.0 as usize].flags & IN_USE != 0 {
            self.release(h.0, &mut |_| {});
        }
    }

    /// The policy stamp the connection was allowed with (0: never
    /// classified, or not an entry in use).
    #[inline]
    pub fn policy_stamp(&self, h: CtHandle) -> u32 {
        self.entries
            .get(h.0 as usize)
            .filter(|e| e.flags & IN_USE != 0)
            .map_or(0, |e| e.policy)
    }

    /// Records that the policy of stamp `stamp` allowed the connection.
    #[inline]
    pub fn set_policy_stamp(&mut self, h: CtHandle, stamp: u32) {
        if let Some(e) = self.entries.get_mut(h.0 as usize) {
            if e.flags & IN_USE != 0 {
                e.policy = stamp;
            }
        }
    }

    /// Reads an entry.
    pub fn get(&self, h: CtHandle) -> Option<CtView> {
        let e = self.entries.get(h.0 as usize)?;
        (e.flags & IN_USE != 0).then(|| CtView {
            zone: e.zone,
            original: e.key[0],
            reply: e.key[1],
            state: CtState::from_class(e.class),
            assured: e.flags & ASSURED != 0,
            seen_reply: e.flags & SEEN_REPLY != 0,
            last_seen: e.last_seen,
        })
    }

    /// The live entry of (zone, tuple), from either direction, without touching it.
    pub fn find_live(&self, zone: u32, t: &CtTuple, now: u64) -> Option<(CtHandle, Dir)> {
        let (i, d) = self.find(zone, t)?;
        (!self.due(&self.entries[i as usize], now)).then_some((CtHandle(i), dir_of(d)))
    }

    /// [`find_live`](Self::find_live) for a burst: `out[i]` for `keys[i]`.
    ///
    /// The bucket heads of the whole burst are read before the first entry, and
    /// the first entry of every chain before any comparison, so the cache misses
    /// of different packets overlap (memory-level parallelism, with plain loads:
    /// this crate has no prefetch instruction) instead of following each other.
    ///
    /// # Panics
    /// If `out` is shorter than `keys`.
    pub fn find_burst(
        &self,
        keys: &[(u32, CtTuple)],
        now: u64,
        out: &mut [Option<(CtHandle, Dir)>],
    ) {
        const CHUNK: usize = 32;
        for (keys, out) in keys.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let mut node = [NIL; CHUNK];
            for (n, (zone, t)) in node.iter_mut().zip(keys) {
                *n = self.buckets[self.bucket(*zone, t)];
            }
            // The entries of the chains' first nodes, loaded independently.
            let mut first = [0u64; CHUNK];
            for (f, &n) in first.iter_mut().zip(&node) {
                if n != NIL {
                    *f = self.entries[(n >> 1) as usize].last_seen;
                }
            }
            std::hint::black_box(&first);
            for ((o, (zone, t)), &n) in out.iter_mut().zip(keys).zip(&node) {
                *o = self.walk(n, *zone, t, now);
            }
        }
    }

    /// The chain from node `n` for (zone, tuple), if live at `now`.
    #[inline]
    fn walk(&self, mut n: u32, zone: u32, t: &CtTuple, now: u64) -> Option<(CtHandle, Dir)> {
        while n != NIL {
            let (i, d) = (n >> 1, (n & 1) as usize);
            let e = &self.entries[i as usize];
            if e.key[d] == *t && e.zone == zone {
                return (!self.due(e, now)).then_some((CtHandle(i), dir_of(d)));
            }
            n = e.next[d];
        }
        None
    }

    /// Whether a packet of the connection in direction `dir` leaves with
    /// tuple `t`: the reverse of the other direction's (its own tuple when
    /// nothing is translated). False for a redirect stub or a free slot.
    /// Field by field, without building the reversed tuple: a flow-table
    /// hit asks it for every packet.
    #[inline]
    pub fn leaves_as(&self, h: CtHandle, dir: Dir, t: &CtTuple) -> bool {
        let Some(e) = self.entries.get(h.0 as usize) else {
            return false;
        };
        let o = &e.key[1 - dir as usize];
        e.flags & IN_USE != 0
            && e.class != 13
            && o.src == t.dst
            && o.dst == t.src
            && o.sport == t.dport
            && o.dport == t.sport
            && o.proto == t.proto
    }

    /// [`track`](Self::track) of a packet whose live connection the caller
    /// found (`find_live`, no call in between): the state machine, without a
    /// second lookup. A segment that would reopen the connection (a SYN in
    /// TIME_WAIT or CLOSE) is the caller's to keep away: here it is refused
    /// as [`CtDrop::Invalid`], never opened without its NAT.
    ///
    /// # Errors
    /// As [`track`](Self::track).
    #[inline]
    pub fn track_found(
        &mut self,
        h: CtHandle,
        dir: Dir,
        p: &CtPacket,
        now: u64,
        check_window: bool,
    ) -> Result<CtHit, CtDrop> {
        if let CtL4::Tcp(seg) = p.l4 {
            if tcp::opens(&seg) {
                return Err(CtDrop::Invalid);
            }
        }
        self.update(h.0, dir as usize, p, now, check_window, &mut |_| {})
    }

    /// The translation a packet of the connection in direction `dir` gets: the
    /// tuple it must leave with is the reverse of the other direction's.
    pub fn nat_rewrite(&self, h: CtHandle, dir: Dir) -> NatRewrite {
        let e = &self.entries[h.0 as usize];
        let (this, other) = match dir {
            Dir::Original => (e.key[0], e.key[1]),
            Dir::Reply => (e.key[1], e.key[0]),
        };
        let want = other.reversed();
        let side = |a: [u8; 16], p: u16, na: [u8; 16], np: u16, ip: IpAddr| {
            (a != na || p != np).then_some((ip, np))
        };
        NatRewrite {
            src: side(this.src, this.sport, want.src, want.sport, want.src_ip()),
            dst: side(this.dst, this.dport, want.dst, want.dport, want.dst_ip()),
        }
    }

    /// Calls `f` with every live entry at `now` (stubs included), in no
    /// particular order: what `ct list` reads. Walks the entries in use, not
    /// the capacity.
    pub fn for_each(&self, now: u64, mut f: impl FnMut(CtHandle, &CtView)) {
        for l in &self.lists {
            let mut n = l.head;
            while n != NIL {
                let e = &self.entries[n as usize];
                if !self.due(e, now) {
                    if let Some(v) = self.get(CtHandle(n)) {
                        f(CtHandle(n), &v);
                    }
                }
                n = e.tnext;
            }
        }
    }

    /// Removes every entry `doomed` picks (a zone, an address, a state: what
    /// `ct flush` filters by), calling `rm` with each; returns how many. Walks
    /// the entries in use, not the capacity.
    pub fn flush(
        &mut self,
        mut doomed: impl FnMut(&CtView) -> bool,
        rm: &mut impl FnMut(&CtView),
    ) -> usize {
        let mut removed = 0;
        for c in 0..CLASSES {
            let mut n = self.lists[c].head;
            while n != NIL {
                let next = self.entries[n as usize].tnext;
                if self.get(CtHandle(n)).is_some_and(|v| doomed(&v)) {
                    self.release(n, rm);
                    removed += 1;
                }
                n = next;
            }
        }
        removed
    }

    /// Removes up to `budget` entries whose timeout passed by `now`, calling `rm`
    /// with each; returns how many. Costs `O(removed)` plus one move per
    /// refreshed list head met.
    pub fn expire(&mut self, now: u64, budget: usize, rm: &mut impl FnMut(&CtView)) -> usize {
        let mut removed = 0;
        for c in 0..CLASSES {
            let t = self.timeouts[c];
            while removed < budget {
                let h = self.lists[c].head;
                if h == NIL {
                    break;
                }
                let e = self.entries[h as usize];
                if e.queued_at.saturating_add(t) > now {
                    break;
                }
                if e.last_seen.saturating_add(t) <= now {
                    self.release(h, rm);
                    self.counters.expired += 1;
                    removed += 1;
                } else {
                    // Refreshed since it was queued: back in line at the time of
                    // its last packet (or the tail's, to keep the list sorted).
                    self.list_unlink(h);
                    self.list_push(h, c, e.last_seen);
                    if self.lists[c].head == h {
                        break;
                    }
                }
            }
        }
        removed
    }
}

#[inline]
fn dir_of(d: usize) -> Dir {
    if d == 0 {
        Dir::Original
    } else {
        Dir::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// 100k connections that differ only in the client address and port (the
    /// shape of real traffic to one service): the chains are as short as a
    /// random hash gives (Poisson with 0.76 nodes per bucket: 47% of the
    /// buckets empty, a chain of 10 about once in 10⁸).
    #[test]
    fn structured_tuples_spread_over_the_buckets() {
        let mut ct = ConntrackTable::new(100_000, &CtTimeouts::default(), 7).unwrap();
        let server = IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1));
        for i in 0..100_000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 8)));
            let t = CtTuple::new(a, 1024 + (i & 0xff) as u16, server, 53, 17);
            let p = CtPacket {
                zone: 1,
                tuple: t,
                l4: CtL4::Udp,
            };
            ct.track(&p, 0, true).unwrap();
        }
        let mut longest = 0;
        let mut empty = 0;
        for &b in ct.buckets.iter() {
            let (mut n, mut len) = (b, 0);
            while n != NIL {
                len += 1;
                n = ct.entries[(n >> 1) as usize].next[(n & 1) as usize];
            }
            longest = longest.max(len);
            empty += usize::from(len == 0);
        }
        let empty = empty as f64 / ct.buckets.len() as f64;
        assert!(longest <= 10, "a chain of {longest}");
        assert!(
            (0.44..0.50).contains(&empty),
            "{empty:.3} of the buckets empty"
        );
    }

    /// The table's own structure: every entry in use is in its state's list and
    /// found from both of its tuples (a stub from its one), the free list holds
    /// the rest, and the lists are in queue order.
    fn check(ct: &ConntrackTable) {
        let mut in_lists = vec![false; ct.entries.len()];
        for (c, l) in ct.lists.iter().enumerate() {
            let (mut n, mut prev, mut q) = (l.head, NIL, 0u64);
            while n != NIL {
                let e = &ct.entries[n as usize];
                assert_eq!(usize::from(e.class), c);
                assert_eq!(e.tprev, prev);
                assert!(e.queued_at >= q, "list {c} out of order");
                assert!(!in_lists[n as usize]);
                in_lists[n as usize] = true;
                (prev, q, n) = (n, e.queued_at, e.tnext);
            }
            assert_eq!(l.tail, prev);
        }
        let mut free = 0;
        let mut n = ct.free;
        while n != NIL {
            assert_eq!(ct.entries[n as usize].flags & IN_USE, 0);
            free += 1;
            n = ct.entries[n as usize].tnext;
        }
        let used: Vec<usize> = (0..ct.entries.len())
            .filter(|&i| ct.entries[i].flags & IN_USE != 0)
            .collect();
        assert_eq!(used.len(), ct.len());
        assert_eq!(used.len() + free, ct.capacity());
        for &i in &used {
            assert!(in_lists[i]);
            let e = &ct.entries[i];
            let dirs = if e.class == 13 { 1 } else { 2 };
            for d in 0..dirs {
                assert_eq!(ct.find(e.zone, &e.key[d]), Some((i as u32, d)));
            }
        }
    }

    proptest::proptest! {
        /// Random packets, replies, expiry and removals on a table of 16:
        /// the structure holds after every step.
        #[test]
        fn structure_holds_under_random_operations(
            ops in proptest::collection::vec((0u8..5, 0u16..24, 0u64..5), 1..300),
        ) {
            let mut ct = ConntrackTable::new(16, &CtTimeouts::default(), 11).unwrap();
            let server = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
            let mut now = 0u64;
            for (op, k, dt) in ops {
                now += dt * 10_000;
                let t = CtTuple::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), k, server, 53, 17);
                let p = |t| CtPacket { zone: u32::from(k % 2), tuple: t, l4: CtL4::Udp };
                match op {
                    0 => { let _ = ct.track(&p(t), now, true); }
                    1 => { let _ = ct.track(&p(t.reversed()), now, true); }
                    2 => { ct.expire(now, 4, &mut |_| {}); }
                    3 => {
                        if let Some((h, _)) = ct.find_live(u32::from(k % 2), &t, now) {
                            ct.remove(h);
                        }
                    }
                    _ => {
                        let r = CtTuple::new(server, 53, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), k, 17);
                        if let Ok(hit) = ct.track(&p(t), now, true) {
                            let _ = ct.set_reply(hit.handle, r);
                        }
                    }
                }
                check(&ct);
            }
        }
    }
}
