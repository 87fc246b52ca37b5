//! Per-worker counters and their lock-free publication.
//!
//! Counting on the fast path must cost a plain add to memory the worker owns: no
//! atomics read-modify-write, no shared cache lines. So a worker keeps its counters
//! in a [`WorkerStats`] it owns outright (`!Sync`, cache-line aligned) and, after
//! every poll round, copies them into its [`WorkerStatsShared`] with `Relaxed`
//! atomic stores. There is exactly one writer per shared block, so stores (not
//! `fetch_add`) are enough, and readers never stall the worker. A reader gets each
//! counter as of some recent round; counters are not mutually consistent at an
//! instant (rx may be a round ahead of tx), which is what monitoring needs.
//!
//! Drops are counted per worker by [`DropReason`] and also per port: reasons found on
//! receive (`runt_frame`, `no_pipeline_port`, `hairpin`, `no_output`) are charged to
//! the ingress port, reasons found on transmit (`no_tx_queue`, `tx_full`,
//! `flood_alloc_failed`) to the output port. A drop towards a port beyond the
//! worker's port count only shows in the per-worker totals.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::drop::DropReason;
use crate::pipeline::conntrack::CtStats;
use crate::pipeline::FlowStats;
use crate::port::PortIdx;
use crate::worker::WorkerId;

/// Counters of one port, as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received on the port.
    pub rx_packets: u64,
    /// Bytes received on the port.
    pub rx_bytes: u64,
    /// Packets the port accepted for transmission.
    pub tx_packets: u64,
    /// Bytes the port accepted for transmission.
    pub tx_bytes: u64,
    /// Drops charged to this port, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
}

// By hand: `Default` is derived for arrays of at most 32 elements, and there are
// more drop reasons than that.
impl Default for PortStats {
    fn default() -> Self {
        PortStats {
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl PortStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &PortStats) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
    }

    /// Drops charged to this port for `reason`.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops charged to this port.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// A worker's own counters: plain `u64`s, written only by the worker thread.
///
/// `!Sync` on purpose: it is moved into the worker's thread and never shared; others
/// read the published [`WorkerStatsShared`].
#[derive(Debug, Clone)]
#[repr(align(64))]
pub struct WorkerStats {
    ports: Vec<PortStats>,
    drops: [u64; DropReason::COUNT],
    busy_polls: u64,
    idle_polls: u64,
    busy_ns: u64,
    idle_ns: u64,
    rx_bursts: u64,
    tx_bursts: u64,
    tx_lock_contended: u64,
    flood_copies: u64,
    generated: u64,
    snapshot_generation: u64,
    flows: FlowStats,
    ct: CtStats,
    /// A drop was counted since the last publish: only then are the drop arrays
    /// (ports × reasons) stored, so a round without drops publishes a handful of
    /// counters rather than hundreds.
    drops_dirty: bool,
    _not_sync: PhantomData<Cell<()>>,
}

impl WorkerStats {
    /// Zeroed counters for `num_ports` ports.
    pub fn new(num_ports: usize) -> Self {
        WorkerStats {
            ports: vec![PortStats::default(); num_ports],
            drops: [0; DropReason::COUNT],
            busy_polls: 0,
            idle_polls: 0,
            busy_ns: 0,
            idle_ns: 0,
            rx_bursts: 0,
            tx_bursts: 0,
            tx_lock_contended: 0,
            flood_copies: 0,
            generated: 0,
            snapshot_generation: 0,
            flows: FlowStats::default(),
            ct: CtStats::default(),
            drops_dirty: true,
            _not_sync: PhantomData,
        }
    }

    /// Zeroes the counters of `port` (a port added at runtime, maybe at a reused
    /// index), growing the table to include it.
    pub(crate) fn reset_port(&mut self, port: PortIdx) {
        let i = port.index();
        if self.ports.len() <= i {
            self.ports.resize(i + 1, PortStats::default());
        }
        self.ports[i] = PortStats::default();
        self.drops_dirty = true;
    }

    /// Counters of `port`, if the worker counts it.
    pub fn port(&self, port: PortIdx) -> Option<&PortStats> {
        self.ports.get(port.index())
    }

    /// Drops for `reason`, over all ports.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Counts `packets` received on `port` carrying `bytes` in all.
    #[inline]
    pub(crate) fn count_rx_many(&mut self, port: PortIdx, packets: u64, bytes: u64) {
        if let Some(p) = self.ports.get_mut(port.index()) {
            p.rx_packets += packets;
            p.rx_bytes += bytes;
        }
    }

    #[inline]
    pub(crate) fn count_tx(&mut self, port: PortIdx, packets: u64, bytes: u64) {
        if let Some(p) = self.ports.get_mut(port.index()) {
            p.tx_packets += packets;
            p.tx_bytes += bytes;
        }
    }

    /// Counts `n` drops for `reason`, charged to `port` when the worker counts it.
    #[inline]
    pub(crate) fn count_drops(&mut self, reason: DropReason, port: PortIdx, n: u64) {
        self.drops_dirty = true;
        self.drops[reason.index()] += n;
        if let Some(p) = self.ports.get_mut(port.index()) {
            p.drops[reason.index()] += n;
        }
    }

    #[inline]
    pub(crate) fn count_poll(&mut self, received: usize) {
        if received > 0 {
            self.busy_polls += 1;
        } else {
            self.idle_polls += 1;
        }
    }

    /// Counts `ns` nanoseconds spent busy (polling and processing packets) or
    /// idle (polling empty queues, sleeping).
    #[inline]
    pub(crate) fn count_time(&mut self, busy: bool, ns: u64) {
        if busy {
            self.busy_ns += ns;
        } else {
            self.idle_ns += ns;
        }
    }

    #[inline]
    pub(crate) fn count_rx_burst(&mut self) {
        self.rx_bursts += 1;
    }

    #[inline]
    pub(crate) fn count_tx_burst(&mut self) {
        self.tx_bursts += 1;
    }

    /// Counts a tx burst that found its shared queue held by another worker.
    #[inline]
    pub(crate) fn count_tx_lock_contended(&mut self) {
        self.tx_lock_contended += 1;
        // Published with the drops, only when it moved: a switch that shares no
        // queue stores nothing more per round.
        self.drops_dirty = true;
    }

    #[inline]
    pub(crate) fn count_flood_copies(&mut self, n: u64) {
        self.flood_copies += n;
    }

    /// Counts `n` packets the switch made itself (resolution requests, ICMP errors).
    #[inline]
    pub(crate) fn count_generated(&mut self, n: u64) {
        self.generated += n;
    }

    /// The flow table's counters as the worker's state has them.
    #[inline]
    pub(crate) fn set_flows(&mut self, flows: FlowStats) {
        self.flows = flows;
    }

    /// The conntrack shard's counters.
    #[inline]
    pub(crate) fn set_ct(&mut self, ct: CtStats) {
        self.ct = ct;
    }

    #[inline]
    pub(crate) fn set_snapshot_generation(&mut self, generation: u64) {
        self.snapshot_generation = generation;
    }

    /// Stores every counter into `shared` (`Relaxed`: this worker is the only writer).
    pub fn publish(&mut self, shared: &WorkerStatsShared) {
        shared
            .active_ports
            .store(self.ports.len().min(shared.ports.len()) as u64, Relaxed);
        let drops = std::mem::take(&mut self.drops_dirty);
        for (s, p) in shared.ports.iter().zip(&self.ports) {
            s.rx_packets.store(p.rx_packets, Relaxed);
            s.rx_bytes.store(p.rx_bytes, Relaxed);
            s.tx_packets.store(p.tx_packets, Relaxed);
            s.tx_bytes.store(p.tx_bytes, Relaxed);
            if drops {
                for (a, v) in s.drops.iter().zip(p.drops) {
                    a.store(v, Relaxed);
                }
            }
        }
        if drops {
            for (a, v) in shared.drops.iter().zip(self.drops) {
                a.store(v, Relaxed);
            }
            shared
                .tx_lock_contended
                .store(self.tx_lock_contended, Relaxed);
        }
        shared.busy_polls.store(self.busy_polls, Relaxed);
        shared.idle_polls.store(self.idle_polls, Relaxed);
        shared.busy_ns.store(self.busy_ns, Relaxed);
        shared.idle_ns.store(self.idle_ns, Relaxed);
        shared.rx_bursts.store(self.rx_bursts, Relaxed);
        shared.tx_bursts.store(self.tx_bursts, Relaxed);
        shared.flood_copies.store(self.flood_copies, Relaxed);
        shared.generated.store(self.generated, Relaxed);
        shared
            .snapshot_generation
            .store(self.snapshot_generation, Relaxed);
        for (a, v) in shared.flows.iter().zip(flow_words(&self.flows)) {
            a.store(v, Relaxed);
        }
        for (a, v) in shared.ct.iter().zip(ct_words(&self.ct)) {
            a.store(v, Relaxed);
        }
        // Every round counts one poll, busy or idle: their sum is the heartbeat.
        shared
            .heartbeat
            .store(self.busy_polls.wrapping_add(self.idle_polls), Relaxed);
    }

    /// These counters as a snapshot labelled with `worker`.
    pub fn to_snapshot(&self, worker: WorkerId) -> StatsSnapshot {
        StatsSnapshot {
            worker,
            ports: self.ports.clone(),
            drops: self.drops,
            busy_polls: self.busy_polls,
            idle_polls: self.idle_polls,
            busy_ns: self.busy_ns,
            idle_ns: self.idle_ns,
            rx_bursts: self.rx_bursts,
            tx_bursts: self.tx_bursts,
            tx_lock_contended: self.tx_lock_contended,
            flood_copies: self.flood_copies,
            generated: self.generated,
            snapshot_generation: self.snapshot_generation,
            flows: self.flows,
            ct: self.ct,
        }
    }
}

/// The conntrack counters in the order [`WorkerStatsShared`] stores them.
fn ct_words(c: &CtStats) -> [u64; 8] {
    [
        c.entries,
        c.capacity,
        c.created,
        c.expired,
        c.early_drops,
        c.invalid,
        c.handed_off,
        c.lb_new,
    ]
}

/// The flow table's counters in the order [`WorkerStatsShared`] stores them.
fn flow_words(f: &FlowStats) -> [u64; 9] {
    [
        f.hits,
        f.misses,
        f.installs,
        f.evictions,
        f.revalidations,
        f.entries,
        f.capacity,
        f.skipped_installs,
        f.bypassed,
    ]
}

#[derive(Debug)]
#[repr(align(64))]
struct PortStatsShared {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
}

impl Default for PortStatsShared {
    fn default() -> Self {
        PortStatsShared {
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A worker's published counters, readable from any thread without locks.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerStatsShared {
    worker: WorkerId,
    ports: Box<[PortStatsShared]>,
    /// How many of `ports` the worker counts (it grows as ports are added).
    active_ports: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
    busy_polls: AtomicU64,
    idle_polls: AtomicU64,
    busy_ns: AtomicU64,
    idle_ns: AtomicU64,
    rx_bursts: AtomicU64,
    tx_bursts: AtomicU64,
    tx_lock_contended: AtomicU64,
    flood_copies: AtomicU64,
    generated: AtomicU64,
    snapshot_generation: AtomicU64,
    /// The flow table's counters ([`flow_words`]).
    flows: [AtomicU64; 9],
    /// The conntrack shard's counters ([`ct_words`]).
    ct: [AtomicU64; 8],
    /// Rounds finished: the heartbeat.
    heartbeat: AtomicU64,
}

impl WorkerStatsShared {
    /// Zeroed counters of `worker` for `num_ports` ports.
    pub fn new(worker: WorkerId, num_ports: usize) -> Self {
        WorkerStatsShared {
            worker,
            active_ports: AtomicU64::new(0),
            ports: (0..num_ports).map(|_| PortStatsShared::default()).collect(),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            busy_polls: AtomicU64::new(0),
            idle_polls: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            rx_bursts: AtomicU64::new(0),
            tx_bursts: AtomicU64::new(0),
            tx_lock_contended: AtomicU64::new(0),
            flood_copies: AtomicU64::new(0),
            generated: AtomicU64::new(0),
            snapshot_generation: AtomicU64::new(0),
            flows: Default::default(),
            ct: Default::default(),
            heartbeat: AtomicU64::new(0),
        }
    }

    /// The worker these counters belong to.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The worker's heartbeat: how many poll rounds it has finished. It moves every
    /// round, idle or busy, so a value that stands still means a stuck worker. Cheap
    /// to read (one load), for a liveness check polling several times a second.
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Relaxed)
    }

    /// The generation of the pipeline snapshot the worker last ran (one load).
    pub fn snapshot_generation(&self) -> u64 {
        self.snapshot_generation.load(Relaxed)
    }

    /// Reads the latest published counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let active = self.active_ports.load(Relaxed) as usize;
        let ports = self
            .ports
            .iter()
            .take(active)
            .map(|s| PortStats {
                rx_packets: s.rx_packets.load(Relaxed),
                rx_bytes: s.rx_bytes.load(Relaxed),
                tx_packets: s.tx_packets.load(Relaxed),
                tx_bytes: s.tx_bytes.load(Relaxed),
                drops: std::array::from_fn(|i| s.drops[i].load(Relaxed)),
            })
            .collect();
        StatsSnapshot {
            worker: self.worker,
            ports,
            drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
            busy_polls: self.busy_polls.load(Relaxed),
            idle_polls: self.idle_polls.load(Relaxed),
            busy_ns: self.busy_ns.load(Relaxed),
            idle_ns: self.idle_ns.load(Relaxed),
            rx_bursts: self.rx_bursts.load(Relaxed),
            tx_bursts: self.tx_bursts.load(Relaxed),
            tx_lock_contended: self.tx_lock_contended.load(Relaxed),
            flood_copies: self.flood_copies.load(Relaxed),
            generated: self.generated.load(Relaxed),
            snapshot_generation: self.snapshot_generation.load(Relaxed),
            flows: {
                let [hits, misses, installs, evictions, revalidations, entries, capacity, skipped_installs, bypassed] =
                    std::array::from_fn(|i| self.flows[i].load(Relaxed));
                FlowStats {
                    hits,
                    misses,
                    installs,
                    evictions,
                    skipped_installs,
                    bypassed,
                    revalidations,
                    entries,
                    capacity,
                }
            },
            ct: {
                let [entries, capacity, created, expired, early_drops, invalid, handed_off, lb_new] =
                    std::array::from_fn(|i| self.ct[i].load(Relaxed));
                CtStats {
                    entries,
                    capacity,
                    created,
                    expired,
                    early_drops,
                    invalid,
                    handed_off,
                    lb_new,
                }
            },
        }
    }
}

/// One worker's counters at one moment, as plain numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// The worker.
    pub worker: WorkerId,
    /// Per-port counters, indexed by [`PortIdx::index`].
    pub ports: Vec<PortStats>,
    /// Drops over all ports, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Poll rounds that received at least one packet.
    pub busy_polls: u64,
    /// Poll rounds that received nothing.
    pub idle_polls: u64,
    /// Nanoseconds in busy rounds (from the first round that received packets
    /// to the end of the last one before an empty round).
    pub busy_ns: u64,
    /// Nanoseconds in idle rounds, sleeps included.
    pub idle_ns: u64,
    /// Non-empty rx bursts.
    pub rx_bursts: u64,
    /// `tx_burst` calls.
    pub tx_bursts: u64,
    /// Tx bursts on a queue shared with other workers (a port with fewer tx
    /// queues than workers) that found it held and spun until it was free.
    pub tx_lock_contended: u64,
    /// Extra deliveries floods asked for beyond the original packet; each ends up
    /// transmitted or counted as a drop, so
    /// `rx_packets + flood_copies + generated == tx_packets + drops` once tx
    /// batches are flushed.
    pub flood_copies: u64,
    /// Packets the switch made itself: ARP/ND requests on the underlay, and ICMP
    /// errors (each also counts its original packet as a drop).
    pub generated: u64,
    /// Generation of the pipeline snapshot the worker last used.
    pub snapshot_generation: u64,
    /// The worker's flow table: hits, misses, installs, evictions, skipped installs,
    /// revalidations, entries held and capacity.
    pub flows: FlowStats,
    /// The worker's conntrack shard: entries held and capacity, connections
    /// created, expired and early-dropped, packets refused and handed off.
    pub ct: CtStats,
}

impl StatsSnapshot {
    /// Drops for `reason`.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Counters of `port` (zero if the worker does not count it).
    pub fn port(&self, port: PortIdx) -> PortStats {
        self.ports.get(port.index()).copied().unwrap_or_default()
    }

    /// Packets received over all ports.
    pub fn rx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.rx_packets).sum()
    }

    /// Packets transmitted over all ports.
    pub fn tx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.tx_packets).sum()
    }
}

/// Counters summed over several workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsTotals {
    /// How many workers were summed.
    pub workers: usize,
    /// Per-port sums, as long as the longest worker's port list.
    pub ports: Vec<PortStats>,
    /// Per-reason drop sums, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Sum of [`StatsSnapshot::busy_polls`].
    pub busy_polls: u64,
    /// Sum of [`StatsSnapshot::idle_polls`].
    pub idle_polls: u64,
    /// Sum of [`StatsSnapshot::busy_ns`].
    pub busy_ns: u64,
    /// Sum of [`StatsSnapshot::idle_ns`].
    pub idle_ns: u64,
    /// Sum of [`StatsSnapshot::rx_bursts`].
    pub rx_bursts: u64,
    /// Sum of [`StatsSnapshot::tx_bursts`].
    pub tx_bursts: u64,
    /// Sum of [`StatsSnapshot::tx_lock_contended`].
    pub tx_lock_contended: u64,
    /// Sum of [`StatsSnapshot::flood_copies`].
    pub flood_copies: u64,
    /// Sum of [`StatsSnapshot::generated`].
    pub generated: u64,
}

impl Default for StatsTotals {
    fn default() -> Self {
        StatsTotals {
            workers: 0,
            ports: Vec::new(),
            drops: [0; DropReason::COUNT],
            busy_polls: 0,
            idle_polls: 0,
            busy_ns: 0,
            idle_ns: 0,
            rx_bursts: 0,
            tx_bursts: 0,
            tx_lock_contended: 0,
            flood_copies: 0,
            generated: 0,
        }
    }
}

impl StatsTotals {
    /// Sums `snapshots` into per-port and per-reason totals.
    pub fn sum<'a>(snapshots: impl IntoIterator<Item = &'a StatsSnapshot>) -> Self {
        let mut t = StatsTotals::default();
        for s in snapshots {
            t.workers += 1;
            if t.ports.len() < s.ports.len() {
                t.ports.resize(s.ports.len(), PortStats::default());
            }
            for (a, b) in t.ports.iter_mut().zip(&s.ports) {
                a.add(b);
            }
            for (a, b) in t.drops.iter_mut().zip(s.drops) {
                *a += b;
            }
            t.busy_polls += s.busy_polls;
            t.idle_polls += s.idle_polls;
            t.busy_ns += s.busy_ns;
            t.idle_ns += s.idle_ns;
            t.rx_bursts += s.rx_bursts;
            t.tx_bursts += s.tx_bursts;
            t.tx_lock_contended += s.tx_lock_contended;
            t.flood_copies += s.flood_copies;
            t.generated += s.generated;
        }
        t
    }

    /// Drops for `reason`, over all workers.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// `(reason, count)` for every reason, in [`DropReason::ALL`] order.
    pub fn drops_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.drops[r.index()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_snapshot_round_trips() {
        let mut s = WorkerStats::new(3);
        s.count_rx_many(PortIdx(0), 1, 60);
        s.count_rx_many(PortIdx(0), 1, 1500);
        s.count_tx(PortIdx(2), 1, 60);
        s.count_drops(DropReason::TxFull, PortIdx(2), 1);
        s.count_drops(DropReason::NoTxQueue, PortIdx(9), 2); // beyond the port count
        s.count_poll(2);
        s.count_poll(0);
        s.count_rx_burst();
        s.count_tx_burst();
        s.count_flood_copies(0);
        s.set_snapshot_generation(7);

        let shared = WorkerStatsShared::new(WorkerId(4), 3);
        s.publish(&shared);
        let snap = shared.snapshot();
        assert_eq!(snap, s.to_snapshot(WorkerId(4)));
        assert_eq!(snap.worker, WorkerId(4));
        assert_eq!(snap.port(PortIdx(0)).rx_packets, 2);
        assert_eq!(snap.port(PortIdx(0)).rx_bytes, 1560);
        assert_eq!(snap.port(PortIdx(2)).tx_bytes, 60);
        assert_eq!(snap.port(PortIdx(2)).drops_for(DropReason::TxFull), 1);
        assert_eq!(snap.drops_for(DropReason::NoTxQueue), 2);
        assert_eq!(snap.total_drops(), 3);
        assert_eq!((snap.busy_polls, snap.idle_polls), (1, 1));
        assert_eq!(snap.snapshot_generation, 7);
        assert_eq!(shared.snapshot_generation(), 7);
    }

    #[test]
    fn heartbeat_moves_every_round_busy_or_idle() {
        let mut s = WorkerStats::new(1);
        let shared = WorkerStatsShared::new(WorkerId(0), 1);
        assert_eq!(shared.heartbeat(), 0);
        s.count_poll(0);
        s.publish(&shared);
        assert_eq!(shared.heartbeat(), 1);
        s.count_poll(5);
        s.publish(&shared);
        assert_eq!(shared.heartbeat(), 2);
        // A publish without a round (the final one after stop) does not beat.
        s.publish(&shared);
        assert_eq!(shared.heartbeat(), 2);
    }

    #[test]
    fn totals_sum_workers_per_port_and_reason() {
        let mut a = WorkerStats::new(2);
        a.count_rx_many(PortIdx(1), 1, 100);
        a.count_drops(DropReason::Hairpin, PortIdx(1), 1);
        let mut b = WorkerStats::new(3);
        b.count_rx_many(PortIdx(1), 1, 50);
        b.count_rx_many(PortIdx(2), 1, 10);
        b.count_drops(DropReason::Hairpin, PortIdx(2), 2);
        b.count_poll(1);

        let snaps = [a.to_snapshot(WorkerId(0)), b.to_snapshot(WorkerId(1))];
        let t = StatsTotals::sum(&snaps);
        assert_eq!(t.workers, 2);
        assert_eq!(t.ports.len(), 3);
        assert_eq!(t.ports[1].rx_packets, 2);
        assert_eq!(t.ports[1].rx_bytes, 150);
        assert_eq!(t.ports[2].rx_packets, 1);
        assert_eq!(t.drops_for(DropReason::Hairpin), 3);
        assert_eq!(t.ports[2].drops_for(DropReason::Hairpin), 2);
        assert_eq!(t.busy_polls, 1);
        let by_reason: Vec<_> = t.drops_by_reason().filter(|&(_, n)| n > 0).collect();
        assert_eq!(by_reason, [(DropReason::Hairpin, 3)]);
    }

    #[test]
    fn local_stats_are_cache_aligned() {
        assert_eq!(std::mem::align_of::<WorkerStats>(), 64);
        assert_eq!(std::mem::align_of::<WorkerStatsShared>(), 64);
    }
}
