//! The worker: one pinned core running poll rounds to completion.
//!
//! A [`Worker`] owns everything its fast path touches — its rx queues, one tx queue
//! per port it can send on, a tx batch per output port, a buffer allocator and its
//! counters — and is moved into its thread, like a DPDK l3fwd `lcore_conf`. The only
//! shared things are read-mostly: the pipeline snapshot (loaded once per round), the
//! published counters (written once per round; they carry the heartbeat that
//! liveness checks watch) and the stop flag.
//!
//! One poll round: for each rx queue, receive a burst, give every packet a verdict
//! (the pipeline runs on the whole burst first), then move each buffer to its
//! output's tx batch — a burst whose verdicts are all the same output moves in one
//! step, as VPP's speculative enqueue does — and a batch that fills up is sent at
//! once; at the end of the round every pending batch is sent. What a
//! port refuses at `tx_burst` is freed right away and counted as `tx_full`: holding
//! it for a retry would let one stalled port pin buffers and stall the others.
//!
//! The worker is generic over the queue and allocator traits, so DPDK's queues plug
//! in from `pmd-shims` and this crate's tests run the very same loop over `VecBuf`s;
//! the calls are monomorphised, so no dynamic dispatch per packet.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::buf::PacketBuf;
use crate::capture::{CaptureTap, Direction};
use crate::drop::DropReason;
use crate::handoff::{HandoffMsg, HandoffRings};
use crate::idle::IdleBackoff;
use crate::io::{BufAlloc, Burst, RxQueue, TxQueue, TxSlot, BURST};
use crate::overlay::{NeighborConfig, NeighborMap, NeighborTable, NetworkId, ResolveLimiter};
use crate::pipeline::conntrack::{CtConfig, CtEntry, CtFilter, CtShard};
use crate::pipeline::{
    build_arp_request, build_neighbor_solicitation, Ctx, Pipeline, Verdict, WorkerState,
    MAX_RESOLVE_PER_BURST,
};
use crate::port::{PortIdx, PortSet, MAX_PORTS};
use crate::snapshot::{SnapshotCell, SnapshotReader, Versioned};
use crate::stall::StallHook;
use crate::stats::{StatsSnapshot, WorkerStats, WorkerStatsShared};
use arrayvec::ArrayVec;

/// A worker's number, for stats and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct WorkerId(pub u16);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Queues a worker cannot be built from.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkerError {
    /// More tx slots than [`MAX_PORTS`].
    #[error("worker {worker}: {ports} ports given, at most {max} are supported")]
    TooManyPorts {
        /// The worker.
        worker: WorkerId,
        /// Tx slots given.
        ports: usize,
        /// [`MAX_PORTS`].
        max: usize,
    },
    /// An rx queue on a port index beyond the tx slots (the worker's port count).
    #[error("worker {worker}: rx queue on port {port}, but the worker knows only {ports} ports")]
    RxPortOutOfRange {
        /// The worker.
        worker: WorkerId,
        /// The rx queue's port.
        port: PortIdx,
        /// The worker's port count.
        ports: usize,
    },
}

/// The tx side: a queue (or none) and a batch per port, and which batches hold packets.
struct TxPorts<T: TxQueue> {
    queues: Vec<Option<TxSlot<T>>>,
    batches: Vec<Burst<T::Buf>>,
    /// Bytes in each batch, so tx bytes need no second walk over the packets sent.
    batch_bytes: Vec<u64>,
    /// Port `i` in the set: batch `i` is not empty.
    pending: PortSet,
    capture: Option<Arc<CaptureTap>>,
}

impl<T: TxQueue> TxPorts<T> {
    fn new(queues: Vec<Option<TxSlot<T>>>) -> Self {
        let n = queues.len();
        TxPorts {
            queues,
            batches: (0..n).map(|_| Burst::new()).collect(),
            batch_bytes: vec![0; n],
            pending: PortSet::default(),
            capture: None,
        }
    }

    /// Installs `queue` as the tx queue of `port`, growing the tables.
    fn set_queue(&mut self, port: PortIdx, queue: Option<TxSlot<T>>) {
        let i = port.index();
        if self.queues.len() <= i {
            self.queues.resize_with(i + 1, || None);
            self.batches.resize_with(i + 1, Burst::new);
            self.batch_bytes.resize(i + 1, 0);
        }
        self.queues[i] = queue;
    }

    #[inline]
    fn has_queue(&self, port: PortIdx) -> bool {
        matches!(self.queues.get(port.index()), Some(Some(_)))
    }

    /// Adds `pkt` to `port`'s batch, sending the batch if it is full. Without a tx
    /// queue on `port` the packet is dropped as `no_tx_queue`.
    #[inline]
    fn enqueue(&mut self, port: PortIdx, pkt: T::Buf, stats: &mut WorkerStats) {
        if !self.has_queue(port) {
            stats.count_drops(DropReason::NoTxQueue, port, 1);
            return;
        }
        let i = port.index();
        self.batch_bytes[i] += pkt.len() as u64;
        self.batches[i].push(pkt);
        self.pending.insert(i);
        if self.batches[i].is_full() {
            self.flush(i, stats);
        }
    }

    /// Moves all of `pkts`, `bytes` bytes in all, to `port`'s batch (or drops them
    /// as `no_tx_queue`), leaving `pkts` empty: a burst whose packets all go one way
    /// costs one batch update instead of one per packet.
    #[inline]
    fn enqueue_burst(
        &mut self,
        port: PortIdx,
        pkts: &mut Burst<T::Buf>,
        bytes: u64,
        stats: &mut WorkerStats,
    ) {
        if !self.has_queue(port) {
            stats.count_drops(DropReason::NoTxQueue, port, pkts.len() as u64);
            pkts.clear();
            return;
        }
        let i = port.index();
        if self.batches[i].is_empty() && pkts.is_full() {
            // A full burst for a port with nothing pending goes out as it is: it
            // would be flushed as soon as it filled the batch anyway, and this way
            // it is not first moved into the batch.
            if let Some(Some(queue)) = self.queues.get_mut(i) {
                send(queue, self.capture.as_deref(), port, pkts, bytes, stats);
            }
            return;
        }
        if self.batches[i].len() + pkts.len() > BURST {
            self.flush(i, stats);
        }
        if self.batches[i].is_empty() {
            std::mem::swap(&mut self.batches[i], pkts);
        } else {
            self.batches[i].extend(pkts.drain(..));
        }
        self.batch_bytes[i] += bytes;
        self.pending.insert(i);
        if self.batches[i].is_full() {
            self.flush(i, stats);
        }
    }

    /// Sends batch `i`; frees and counts what the port refuses.
    fn flush(&mut self, i: usize, stats: &mut WorkerStats) {
        self.pending.remove(i);
        let Some(Some(queue)) = self.queues.get_mut(i) else {
            return;
        };
        let bytes = std::mem::take(&mut self.batch_bytes[i]);
        send(
            queue,
            self.capture.as_deref(),
            PortIdx(i as u16),
            &mut self.batches[i],
            bytes,
            stats,
        );
    }

    fn flush_all(&mut self, stats: &mut WorkerStats) {
        while let Some(i) = self.pending.first() {
            self.flush(i, stats);
        }
    }

    fn pending_packets(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// Transmits `pkts` (`bytes` bytes in all) on `port`'s `queue`, leaving `pkts`
/// empty: counts what was sent, and frees and counts what the port refused.
#[inline]
fn send<T: TxQueue>(
    slot: &mut TxSlot<T>,
    capture: Option<&CaptureTap>,
    port: PortIdx,
    pkts: &mut Burst<T::Buf>,
    bytes: u64,
    stats: &mut WorkerStats,
) {
    // The slot's kind is looked at once: the rest is monomorphised for each,
    // so a worker's own queue pays this one branch per burst and no lock.
    match slot {
        TxSlot::Own(q) => send_on(q, capture, port, pkts, bytes, stats),
        TxSlot::Shared(q) => {
            let mut locked = Locked {
                queue: q,
                contended: false,
            };
            send_on(&mut locked, capture, port, pkts, bytes, stats);
            if locked.contended {
                stats.count_tx_lock_contended();
            }
        }
    }
}

/// A shared queue as a [`TxQueue`] for one burst: taken for the `tx_burst`,
/// noting whether another worker held it.
struct Locked<'a, T> {
    queue: &'a crate::io::SharedTxQueue<T>,
    contended: bool,
}

impl<T: TxQueue> TxQueue for Locked<'_, T> {
    type Buf = T::Buf;

    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<T::Buf>) -> usize {
        let (sent, contended) = self.queue.tx_burst(pkts);
        self.contended |= contended;
        sent
    }

    #[inline]
    fn max_frame_len(&self) -> usize {
        self.queue.max_frame_len()
    }
}

#[inline]
fn send_on<Q: TxQueue>(
    queue: &mut Q,
    capture: Option<&CaptureTap>,
    port: PortIdx,
    pkts: &mut Burst<Q::Buf>,
    bytes: u64,
    stats: &mut WorkerStats,
) {
    if pkts.is_empty() {
        return;
    }
    // One compare a frame, in a pass over lengths the pipeline just wrote: the
    // port would take a longer frame, drop it, and report it sent. A port with no
    // MTU (a sink) skips the pass.
    let max = queue.max_frame_len();
    let mut bytes = bytes;
    if max != usize::MAX && pkts.iter().any(|p| p.len() > max) {
        bytes -= drop_oversize(pkts, max, port, stats);
        if pkts.is_empty() {
            return;
        }
    }
    if let Some(tap) = capture {
        if tap.wants(port, Direction::Tx) {
            for p in pkts.iter() {
                tap.offer(port, Direction::Tx, p.data());
            }
        }
    }
    let before = pkts.len();
    queue.tx_burst(pkts);
    stats.count_tx_burst();
    let refused = pkts.len();
    let refused_bytes: u64 = pkts.iter().map(|p| p.len() as u64).sum();
    stats.count_tx(port, (before - refused) as u64, bytes - refused_bytes);
    if refused > 0 {
        stats.count_drops(DropReason::TxFull, port, refused as u64);
        crate::warn_limited!(
            port = port.index(),
            refused,
            "tx ring full: packets dropped (counted as tx_full)"
        );
        pkts.clear();
    }
}

/// Drops (and counts as `tx_oversize` on `port`) the frames of `pkts` longer than
/// `max` plus 4 bytes per VLAN tag they carry, keeping the order of the rest;
/// returns the bytes dropped. Rare: a port whose MTU is below what the switch was
/// told (a misconfigured overlay, an interface changed under the switch).
#[cold]
#[inline(never)]
fn drop_oversize<B: PacketBuf>(
    pkts: &mut Burst<B>,
    max: usize,
    port: PortIdx,
    stats: &mut WorkerStats,
) -> u64 {
    let (mut n, mut bytes) = (0u64, 0u64);
    pkts.retain(|p| {
        let fits = p.len() <= max.saturating_add(4 * vlan_tags(p.data()));
        if !fits {
            n += 1;
            bytes += p.len() as u64;
        }
        fits
    });
    stats.count_drops(DropReason::TxOversize, port, n);
    bytes
}

/// VLAN tags at the front of an Ethernet frame (at most two: an S-tag and a
/// C-tag), which a port's MTU does not count.
fn vlan_tags(frame: &[u8]) -> usize {
    let tpid_at = |at: usize| {
        frame
            .get(at..at + 2)
            .is_some_and(|t| crate::wire::vlan::is_tpid(u16::from_be_bytes([t[0], t[1]])))
    };
    match (tpid_at(12), tpid_at(16)) {
        (true, true) => 2,
        (true, false) => 1,
        _ => 0,
    }
}

/// Moves every packet of `burst` where its verdict (`verdicts[i]` for `burst[i]`)
/// says, leaving `burst` empty. `one_port`: the port every verdict outputs to, if
/// there is one (the classify loop's answer): the burst then moves to that port's
/// batch in one step. `bytes`: the burst's bytes as it is now. `ctx`: the
/// burst's overlay context (`None` on the classic L2 path, whose verdicts never
/// name a virtual network).
#[allow(clippy::too_many_arguments)]
#[inline]
fn dispatch<T, A>(
    snap: &Pipeline,
    mut ctx: Option<&mut Ctx<'_>>,
    tx: &mut TxPorts<T>,
    alloc: &mut A,
    stats: &mut WorkerStats,
    in_port: PortIdx,
    burst: &mut Burst<T::Buf>,
    verdicts: &[Verdict],
    one_port: Option<PortIdx>,
    bytes: u64,
    rings: Option<&HandoffRings<T::Buf>>,
) where
    T: TxQueue,
    A: BufAlloc<Buf = T::Buf>,
{
    debug_assert_eq!(burst.len(), verdicts.len());
    if let Some(port) = one_port {
        debug_assert!(verdicts.iter().all(|&v| v == Verdict::Output(port)));
        tx.enqueue_burst(port, burst, bytes, stats);
        return;
    }
    for (pkt, &verdict) in burst.drain(..).zip(verdicts) {
        match verdict {
            Verdict::Output(port) => tx.enqueue(port, pkt, stats),
            Verdict::Flood => flood(tx, alloc, stats, in_port, snap.l2.flood_ports(in_port), pkt),
            Verdict::FloodNetwork { net, from_tunnel } => match ctx.as_deref_mut() {
                Some(ctx) => {
                    flood_network(snap, ctx, tx, alloc, stats, in_port, net, from_tunnel, pkt)
                }
                None => stats.count_drops(DropReason::NoOutput, in_port, 1),
            },
            Verdict::Reply { out, reason } => {
                stats.count_drops(reason, in_port, 1);
                stats.count_generated(1);
                tx.enqueue(out, pkt, stats);
            }
            Verdict::Drop(reason) => {
                stats.count_drops(reason, in_port, 1);
                drop(pkt);
            }
            Verdict::Handoff(to) => hand_off(rings, stats, in_port, to, pkt),
        }
    }
}

/// Pushes `pkt`, received on `in_port`, to worker `to`'s ring; a full ring
/// (or none) frees it and counts it as `ct_handoff_full`.
#[cold]
#[inline(never)]
fn hand_off<B>(
    rings: Option<&HandoffRings<B>>,
    stats: &mut WorkerStats,
    in_port: PortIdx,
    to: u16,
    pkt: B,
) {
    let sent = match rings {
        Some(r) => r.send(to, HandoffMsg::Packet { in_port, buf: pkt }).is_ok(),
        None => false,
    };
    if !sent {
        stats.count_drops(DropReason::CtHandoffFull, in_port, 1);
        crate::warn_limited!(
            worker = to,
            "handoff ring full: packet dropped (counted as ct_handoff_full)"
        );
    }
}

/// Sends the stub notes the conntrack shard made over the rings (see
/// `pipeline/conntrack/mod.rs`); a full ring loses the note, counted.
#[cold]
#[inline(never)]
fn send_notes<B>(rings: Option<&HandoffRings<B>>, ct: &mut CtShard) {
    let mut lost = 0;
    let me = rings.map_or(0, |r| r.me());
    for n in ct.take_notes() {
        let msg = if n.insert {
            HandoffMsg::Stub {
                zone: n.zone,
                tuple: n.tuple,
                owner: me,
            }
        } else {
            HandoffMsg::Unstub {
                zone: n.zone,
                tuple: n.tuple,
                owner: me,
            }
        };
        if rings.is_none_or(|r| r.send(n.to, msg).is_err()) {
            lost += 1;
        }
    }
    ct.notes_lost += lost;
}

/// The parts of a worker one burst's forwarding uses, borrowed apart from its
/// rx queues and bursts.
struct Fwd<'a, T: TxQueue, A> {
    tx: &'a mut TxPorts<T>,
    alloc: &'a mut A,
    stats: &'a mut WorkerStats,
    state: &'a mut WorkerState,
    neighbors: &'a mut SnapshotReader<NeighborMap>,
    limiter: &'a mut ResolveLimiter,
    neighbor_table: &'a Mutex<NeighborTable>,
}

/// Forwards `burst`, received on `in_port` (`rx_bytes` bytes): a verdict for
/// every packet first, then the packets go where their verdicts say — a burst
/// that all goes to one port (the common case on a switch) moves to that
/// port's batch in one step.
#[inline(always)]
fn forward<T, A>(
    snap: &Pipeline,
    in_port: PortIdx,
    burst: &mut Burst<T::Buf>,
    rx_bytes: u64,
    f: &mut Fwd<'_, T, A>,
    rings: Option<&HandoffRings<T::Buf>>,
) where
    T: TxQueue,
    A: BufAlloc<Buf = T::Buf>,
{
    let n = burst.len();
    let mut verdicts = [Verdict::Flood; BURST];
    let neighbors;
    // The overlay's per-burst context; none on the classic L2 path.
    let mut ctx = None;
    let (bytes, one_port) = if snap.has_overlay() {
        neighbors = f.neighbors.load();
        let ctx = ctx.insert(Ctx::lazy(neighbors, f.limiter));
        let ingress = snap.ingress(in_port);
        snap.process_burst(ingress, burst, ctx, f.state, &mut verdicts)
    } else {
        // Classic L2 only: the ingress port's entry once, then the burst.
        // Nothing is rewritten, so the bytes out are the bytes in.
        let l2 = snap.l2.ingress(in_port);
        (rx_bytes, l2.classify_burst(burst, &mut verdicts))
    };
    if f.state.ct.has_notes() {
        // Before any packet of the burst is sent: a stub reaches the reply's
        // worker before the packet the reply answers leaves.
        send_notes(rings, &mut f.state.ct);
    }
    dispatch(
        snap,
        ctx.as_mut(),
        f.tx,
        f.alloc,
        f.stats,
        in_port,
        burst,
        &verdicts[..n],
        one_port,
        bytes,
        rings,
    );
    let Some(ctx) = ctx else {
        return;
    };
    let (learned, to_resolve) = (ctx.learned, ctx.to_resolve);
    if !learned.is_empty() {
        if let Ok(mut table) = f.neighbor_table.lock() {
            for &(ip, mac) in &learned {
                table.learn(ip, mac, Instant::now());
                f.limiter.resolved(ip);
            }
        }
    }
    send_resolution_requests(snap, &to_resolve, f.alloc, f.tx, f.stats);
}

/// A worker's handoff: its ends of the rings, and where the packets handed to
/// it wait for the end of the current rx burst.
struct Handoff<B> {
    rings: HandoffRings<B>,
    /// Reserved for every message the inbound rings can hold, and emptied
    /// after every pass that fills it, so a pass never grows it.
    staged: Vec<(PortIdx, B)>,
    burst: Burst<B>,
}

impl<B: PacketBuf> Handoff<B> {
    /// Empties the inbound rings: stubs into the shard now, packets staged.
    #[inline]
    fn take_in(&mut self, ct: &mut CtShard, stats: &mut WorkerStats) {
        let staged = &mut self.staged;
        self.rings.drain(|m| match m {
            HandoffMsg::Packet { in_port, buf } => {
                if staged.len() < staged.capacity() {
                    staged.push((in_port, buf));
                } else {
                    stats.count_drops(DropReason::CtHandoffFull, in_port, 1);
                }
            }
            HandoffMsg::Stub { zone, tuple, owner } => ct.apply_stub(zone, &tuple, owner, true),
            HandoffMsg::Unstub { zone, tuple, owner } => ct.apply_stub(zone, &tuple, owner, false),
        });
    }

    /// Forwards the staged packets, in bursts of one ingress port each, as
    /// this worker's own (the shard does not hand them on by hash).
    #[cold]
    #[inline(never)]
    fn run_staged<T, A>(&mut self, snap: &Pipeline, f: &mut Fwd<'_, T, A>)
    where
        T: TxQueue<Buf = B>,
        A: BufAlloc<Buf = B>,
    {
        let Handoff {
            rings,
            staged,
            burst,
        } = self;
        f.state.ct.handed = true;
        let mut port = None;
        let mut bytes = 0u64;
        for (in_port, buf) in staged.drain(..) {
            if let Some(p) = port.filter(|&p| p != in_port || burst.is_full()) {
                forward(snap, p, burst, bytes, f, Some(rings));
                bytes = 0;
            }
            port = Some(in_port);
            bytes += buf.len() as u64;
            burst.push(buf);
        }
        if let Some(p) = port {
            forward(snap, p, burst, bytes, f, Some(rings));
        }
        f.state.ct.handed = false;
    }
}

/// Sends `pkt` to every port of `ports`: copies to all but the last port with a tx
/// queue, the original to that one, so the common case makes `n - 1` copies.
#[cold]
fn flood<T, A>(
    tx: &mut TxPorts<T>,
    alloc: &mut A,
    stats: &mut WorkerStats,
    in_port: PortIdx,
    ports: &[PortIdx],
    pkt: T::Buf,
) where
    T: TxQueue,
    A: BufAlloc<Buf = T::Buf>,
{
    if ports.is_empty() {
        stats.count_drops(DropReason::NoOutput, in_port, 1);
        return;
    }
    stats.count_flood_copies(ports.len() as u64 - 1);
    let Some(last) = ports.iter().rposition(|&p| tx.has_queue(p)) else {
        for &p in ports {
            stats.count_drops(DropReason::NoTxQueue, p, 1);
        }
        return;
    };
    for &p in &ports[..last] {
        if !tx.has_queue(p) {
            stats.count_drops(DropReason::NoTxQueue, p, 1);
            continue;
        }
        match alloc.alloc_copy(pkt.data()) {
            Some(copy) => tx.enqueue(p, copy, stats),
            None => {
                stats.count_drops(DropReason::FloodAllocFailed, p, 1);
                crate::warn_limited!(
                    port = p.index(),
                    "packet pool exhausted: flood copy dropped (counted as flood_alloc_failed)"
                );
            }
        }
    }
    for &p in &ports[last + 1..] {
        stats.count_drops(DropReason::NoTxQueue, p, 1);
    }
    tx.enqueue(ports[last], pkt, stats);
}

/// Sends an ARP request (IPv4 underlay) or neighbour solicitation (IPv6) on the
/// uplink for each address in `ips`.
#[cold]
fn send_resolution_requests<T, A>(
    snap: &Pipeline,
    ips: &[IpAddr],
    alloc: &mut A,
    tx: &mut TxPorts<T>,
    stats: &mut WorkerStats,
) where
    T: TxQueue,
    A: BufAlloc<Buf = T::Buf>,
{
    let Some(u) = snap.overlay.underlay() else {
        return;
    };
    for &ip in ips {
        let req = match (ip, u.local_vtep_ip) {
            (IpAddr::V4(t), IpAddr::V4(s)) => {
                alloc.alloc_copy(&build_arp_request(u.local_mac, s, t))
            }
            (IpAddr::V6(t), IpAddr::V6(s)) => {
                alloc.alloc_copy(&build_neighbor_solicitation(u.local_mac, s, t))
            }
            _ => None,
        };
        if let Some(req) = req {
            stats.count_generated(1);
            tx.enqueue(u.uplink, req, stats);
        }
    }
}

/// Floods `pkt` in virtual network `net`: to its local ports but `in_port`, and —
/// unless it came out of a tunnel (split horizon) — encapsulated to each of the
/// network's flood VTEPs.
#[allow(clippy::too_many_arguments)]
#[cold]
fn flood_network<T, A>(
    snap: &Pipeline,
    ctx: &mut Ctx<'_>,
    tx: &mut TxPorts<T>,
    alloc: &mut A,
    stats: &mut WorkerStats,
    in_port: PortIdx,
    net: NetworkId,
    from_tunnel: bool,
    pkt: T::Buf,
) where
    T: TxQueue,
    A: BufAlloc<Buf = T::Buf>,
{
    let Some(info) = snap.overlay.network(net) else {
        stats.count_drops(DropReason::UnknownNetwork, in_port, 1);
        return;
    };
    let vteps: &[_] = if from_tunnel { &[] } else { &info.flood_vteps };
    let locals = info.local_ports.iter().filter(|&&p| p != in_port).count();
    let total = locals + vteps.len();
    if total == 0 {
        stats.count_drops(DropReason::NoOutput, in_port, 1);
        return;
    }
    stats.count_flood_copies(total as u64 - 1);
    let mut original = Some(pkt);
    for (i, &vtep) in vteps.iter().enumerate() {
        let last = locals == 0 && i + 1 == vteps.len();
        let buf = if last {
            original.take()
        } else {
            original.as_ref().and_then(|o| alloc.alloc_copy(o.data()))
        };
        let Some(mut buf) = buf else {
            stats.count_drops(DropReason::FloodAllocFailed, in_port, 1);
            continue;
        };
        match snap.encap_flood_copy(net, vtep, &mut buf, ctx) {
            Verdict::Output(port) => tx.enqueue(port, buf, stats),
            Verdict::Drop(reason) | Verdict::Reply { reason, .. } => {
                stats.count_drops(reason, in_port, 1)
            }
            _ => stats.count_drops(DropReason::NoOutput, in_port, 1),
        }
    }
    let mut seen = 0;
    for &port in info.local_ports.iter().filter(|&&p| p != in_port) {
        seen += 1;
        let buf = if seen == locals {
            original.take()
        } else {
            original.as_ref().and_then(|o| alloc.alloc_copy(o.data()))
        };
        match buf {
            Some(b) => tx.enqueue(port, b, stats),
            None => stats.count_drops(DropReason::FloodAllocFailed, port, 1),
        }
    }
}

/// Makes every multi-segment packet of `burst` contiguous, or drops it (received
/// and dropped as `rx_oversize`), keeping the order of the rest. Returns the bytes of
/// what is left. Rare: only frames larger than a buffer.
#[cold]
fn linearize_burst<B: PacketBuf>(
    burst: &mut Burst<B>,
    stats: &mut WorkerStats,
    in_port: PortIdx,
) -> u64 {
    let before = burst.len();
    burst.retain(|p| p.linearize());
    let dropped = (before - burst.len()) as u64;
    if dropped > 0 {
        stats.count_rx_many(in_port, dropped, 0);
        stats.count_drops(DropReason::RxOversize, in_port, dropped);
    }
    burst.iter().map(|p| p.len() as u64).sum()
}

/// A change to a running worker's ports, sent by the control thread and applied
/// between two poll rounds, so a port is never polled half-added or after removal.
pub enum WorkerCommand<R, T> {
    /// Start polling `rx` and sending on `tx` for `port`.
    AddPort {
        /// The port's index (also its index in pipeline snapshots).
        port: PortIdx,
        /// Receive queues this worker polls on it.
        rx: Vec<R>,
        /// This worker's transmit queue on it: its own or shared with others.
        tx: Option<TxSlot<T>>,
    },
    /// Stop using `port`: send what is batched for it, drop its queues, then
    /// answer on `done`. After the answer the worker holds nothing of the port.
    RemovePort {
        /// The port.
        port: PortIdx,
        /// Acknowledgement.
        done: std::sync::mpsc::Sender<PortIdx>,
    },
    /// A request to the worker's conntrack shard, answered between two rounds:
    /// the shard is the worker's alone, so the control thread asks rather
    /// than reads (no lock on the packet path).
    Conntrack(CtRequest),
    /// Several changes applied together, between the same two rounds: ports added
    /// at once become usable at once (no burst from one finds the other missing).
    Batch(Vec<WorkerCommand<R, T>>),
}

/// What the control thread asks of a worker's conntrack shard.
pub enum CtRequest {
    /// The connections `filter` takes, at most `limit`.
    List {
        /// Which.
        filter: CtFilter,
        /// At most this many.
        limit: usize,
        /// The answer.
        reply: std::sync::mpsc::Sender<Vec<CtEntry>>,
    },
    /// Remove the connections `filter` takes; answers how many.
    Flush {
        /// Which.
        filter: CtFilter,
        /// The answer.
        reply: std::sync::mpsc::Sender<usize>,
    },
}

/// One worker: its queues, allocator, counters and the snapshot it forwards with.
pub struct Worker<R, T, A>
where
    R: RxQueue,
    T: TxQueue<Buf = R::Buf>,
    A: BufAlloc<Buf = R::Buf>,
{
    id: WorkerId,
    rx: Vec<(PortIdx, R)>,
    tx: TxPorts<T>,
    alloc: A,
    pipeline: SnapshotReader<Pipeline>,
    neighbor_table: Arc<Mutex<NeighborTable>>,
    neighbors: SnapshotReader<NeighborMap>,
    limiter: ResolveLimiter,
    last_expire: Instant,
    /// Poll rounds, to look at the clock for neighbour aging only every so often.
    rounds: u64,
    /// Busy and idle time: which phase the worker is in and since when, and
    /// when the current round started (read only while idle). See
    /// [`Worker::account_time`].
    phase_busy: bool,
    phase_start: Instant,
    round_start: Instant,
    commands: Option<crossbeam::channel::Receiver<WorkerCommand<R, T>>>,
    capture: Option<Arc<CaptureTap>>,
    stats: WorkerStats,
    shared: Arc<WorkerStatsShared>,
    idle: IdleBackoff,
    stop: Arc<AtomicBool>,
    /// The test-only fault hook ([`crate::stall`]); `None` in production.
    stall: Option<StallHook>,
    rx_burst: Burst<R::Buf>,
    /// The flow table and what else survives a snapshot swap.
    state: WorkerState,
    /// The conntrack handoff, with two workers or more.
    handoff: Option<Handoff<R::Buf>>,
}

impl<R, T, A> Worker<R, T, A>
where
    R: RxQueue,
    T: TxQueue<Buf = R::Buf>,
    A: BufAlloc<Buf = R::Buf>,
{
    /// A worker polling `rx` and sending on `tx`, where `tx[i]` is this worker's
    /// queue on port `i` (`None`: it cannot send there). `tx.len()` is the worker's
    /// port count, which sizes its counters. `run` returns once `stop` is set.
    ///
    /// # Errors
    /// [`WorkerError`] if there are more than [`MAX_PORTS`] ports or an rx queue is
    /// on a port beyond the port count.
    pub fn new(
        id: WorkerId,
        rx: Vec<(PortIdx, R)>,
        tx: Vec<Option<T>>,
        alloc: A,
        pipeline: Arc<SnapshotCell<Pipeline>>,
        idle: IdleBackoff,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, WorkerError> {
        let table = NeighborTable::new(NeighborConfig::default());
        let ports = tx.len();
        if ports > MAX_PORTS {
            return Err(WorkerError::TooManyPorts {
                worker: id,
                ports,
                max: MAX_PORTS,
            });
        }
        if let Some(&(port, _)) = rx.iter().find(|(p, _)| p.index() >= ports) {
            return Err(WorkerError::RxPortOutOfRange {
                worker: id,
                port,
                ports,
            });
        }
        Ok(Worker {
            id,
            rx,
            tx: TxPorts::new(tx.into_iter().map(|q| q.map(TxSlot::Own)).collect()),
            alloc,
            pipeline: SnapshotReader::new(pipeline),
            neighbors: SnapshotReader::new(table.reader()),
            limiter: ResolveLimiter::new(table.config()),
            neighbor_table: Arc::new(Mutex::new(table)),
            last_expire: Instant::now(),
            rounds: 0,
            phase_busy: false,
            phase_start: Instant::now(),
            round_start: Instant::now(),
            commands: None,
            capture: None,
            stats: WorkerStats::new(ports),
            // Sized for every possible port, so ports added at runtime are published.
            shared: Arc::new(WorkerStatsShared::new(id, MAX_PORTS)),
            idle,
            stop,
            stall: None,
            rx_burst: Burst::new(),
            state: WorkerState::new().with_conntrack(CtConfig::default()),
            handoff: None,
        })
    }

    /// Gives the worker a flow table of `entries` entries (rounded up to a power
    /// of two; 0: none, every packet runs the stages) instead of the default
    /// [`DEFAULT_FLOW_ENTRIES`](crate::pipeline::DEFAULT_FLOW_ENTRIES).
    pub fn with_flow_entries(mut self, entries: usize) -> Self {
        let ct = *self.state.conntrack().config();
        self.state = WorkerState::with_flow_entries(entries).with_conntrack(ct);
        self.set_shard_workers();
        self
    }

    /// Reports the policy stage's hit counters and denied connections to
    /// `obs` (one per daemon, shared by the workers). Call after
    /// [`with_flow_entries`](Self::with_flow_entries), which starts a new state.
    pub fn with_policy_observer(
        mut self,
        obs: Arc<crate::pipeline::policy::PolicyObserver>,
    ) -> Self {
        self.state = std::mem::take(&mut self.state).with_policy_observer(obs);
        self
    }

    /// Gives the worker a conntrack shard with `config` (allocated when the
    /// first tracked network appears).
    pub fn with_conntrack(mut self, config: CtConfig) -> Self {
        self.state = std::mem::take(&mut self.state).with_conntrack(config);
        self.set_shard_workers();
        self
    }

    /// Makes this worker one of several sharing the connections: `rings` are
    /// its ends of the handoff mesh ([`crate::handoff::mesh`]). Packets whose
    /// connection another worker owns go to it over the rings; the packets
    /// other workers hand to this one are forwarded after each rx burst.
    pub fn with_handoff(mut self, rings: HandoffRings<R::Buf>) -> Self {
        let staged = Vec::with_capacity(rings.inbound_capacity());
        self.handoff = Some(Handoff {
            rings,
            staged,
            burst: Burst::new(),
        });
        self.set_shard_workers();
        self
    }

    fn set_shard_workers(&mut self) {
        if let Some(h) = &self.handoff {
            let (me, n) = (h.rings.me(), h.rings.workers());
            self.state.conntrack_mut().set_workers(me, n);
        }
    }

    /// Shares the underlay neighbour table `table` with other workers (the one that
    /// receives an ARP/ND answer learns it for all). Without this, a worker keeps its
    /// own table.
    pub fn with_neighbors(mut self, table: Arc<Mutex<NeighborTable>>) -> Self {
        if let Ok(t) = table.lock() {
            self.neighbors = SnapshotReader::new(t.reader());
            self.limiter = ResolveLimiter::new(t.config());
        }
        self.neighbor_table = table;
        self
    }

    /// Takes port changes from `commands` between poll rounds (see
    /// [`WorkerCommand`]).
    pub fn with_commands(
        mut self,
        commands: crossbeam::channel::Receiver<WorkerCommand<R, T>>,
    ) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Copies captured ports' frames into `tap` (see [`crate::capture`]).
    pub fn with_capture(mut self, tap: Arc<CaptureTap>) -> Self {
        self.tx.capture = Some(Arc::clone(&tap));
        self.capture = Some(tap);
        self
    }

    /// Test-only: stalls this worker while `hook`'s file says so (see
    /// [`crate::stall`]).
    pub fn with_stall_hook(mut self, hook: StallHook) -> Self {
        self.stall = Some(hook);
        self
    }

    fn apply_commands(&mut self) {
        while let Some(cmd) = self.commands.as_ref().and_then(|c| c.try_recv().ok()) {
            self.apply_command(cmd);
        }
    }

    fn apply_command(&mut self, cmd: WorkerCommand<R, T>) {
        match cmd {
            WorkerCommand::AddPort { port, rx, tx } => {
                if port.index() >= MAX_PORTS {
                    return;
                }
                // A reused index starts from zero, like a new port.
                self.stats.reset_port(port);
                self.tx.set_queue(port, tx);
                self.rx.extend(rx.into_iter().map(|q| (port, q)));
            }
            WorkerCommand::RemovePort { port, done } => {
                let i = port.index();
                if i < self.tx.queues.len() {
                    self.tx.flush(i, &mut self.stats);
                    self.tx.set_queue(port, None);
                }
                self.rx.retain(|(p, _)| *p != port);
                let _ = done.send(port);
            }
            WorkerCommand::Conntrack(req) => match req {
                CtRequest::List {
                    filter,
                    limit,
                    reply,
                } => {
                    let ct = self.state.conntrack();
                    let _ = reply.send(ct.list(&filter, Instant::now(), limit));
                }
                CtRequest::Flush { filter, reply } => {
                    let _ = reply.send(self.state.conntrack_mut().flush(&filter));
                    if self.state.conntrack().has_notes() {
                        let rings = self.handoff.as_ref().map(|h| &h.rings);
                        send_notes(rings, self.state.conntrack_mut());
                    }
                }
            },
            WorkerCommand::Batch(cmds) => {
                for c in cmds {
                    self.apply_command(c);
                }
            }
        }
    }

    /// This worker's id.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// The published counters, for readers on other threads. Take it before `run`.
    pub fn stats_handle(&self) -> Arc<WorkerStatsShared> {
        Arc::clone(&self.shared)
    }

    /// The worker's own counters, exact as of the end of the last round.
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// The flag that makes [`run`](Self::run) return.
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Packets waiting in tx batches: zero between rounds, since every round ends
    /// by sending them.
    pub fn pending_tx(&self) -> usize {
        self.tx.pending_packets()
    }

    /// One poll round over every rx queue: receive, classify, batch, send. Publishes
    /// the counters and returns how many packets were received.
    pub fn poll_once(&mut self) -> usize {
        if !self.phase_busy {
            // Idle: the clock costs nothing that matters here, and it tells
            // where a busy phase starts if this round receives packets.
            self.round_start = Instant::now();
        }
        self.apply_commands();
        // One load per round: the whole round sees one snapshot.
        let snap = self.pipeline.load();
        self.stats.set_snapshot_generation(snap.generation());
        self.state.bind(snap);
        let mut received = 0;
        for (in_port, rxq) in &mut self.rx {
            let in_port = *in_port;
            let got = rxq.rx_burst(&mut self.rx_burst);
            if got == 0 || self.rx_burst.is_empty() {
                continue;
            }
            received += self.rx_burst.len();
            self.stats.count_rx_burst();
            // One pass over the burst's headers before any classification: the rx
            // counters, and a prefetch of each frame's first bytes.
            let mut rx_bytes = 0u64;
            let mut chained = false;
            for p in &self.rx_burst {
                p.prefetch();
                rx_bytes += p.len() as u64;
                chained |= !p.is_contiguous();
            }
            if chained {
                rx_bytes = linearize_burst(&mut self.rx_burst, &mut self.stats, in_port);
            }
            self.stats
                .count_rx_many(in_port, self.rx_burst.len() as u64, rx_bytes);
            if let Some(tap) = &self.capture {
                if tap.wants(in_port, Direction::Rx) {
                    for p in &self.rx_burst {
                        tap.offer(in_port, Direction::Rx, p.data());
                    }
                }
            }
            let mut f = Fwd {
                tx: &mut self.tx,
                alloc: &mut self.alloc,
                stats: &mut self.stats,
                state: &mut self.state,
                neighbors: &mut self.neighbors,
                limiter: &mut self.limiter,
                neighbor_table: &self.neighbor_table,
            };
            let Some(h) = &mut self.handoff else {
                forward(snap, in_port, &mut self.rx_burst, rx_bytes, &mut f, None);
                continue;
            };
            // The rings right after the rx burst and before it is processed:
            // a stub sent before the packet this burst may answer is seen
            // (`handoff.rs`).
            h.take_in(&mut f.state.ct, f.stats);
            forward(
                snap,
                in_port,
                &mut self.rx_burst,
                rx_bytes,
                &mut f,
                Some(&h.rings),
            );
            if !h.staged.is_empty() {
                received += h.staged.len();
                h.run_staged(snap, &mut f);
            }
        }
        // What other workers handed over while this one received nothing.
        if let Some(h) = &mut self.handoff {
            if h.rings.pending() {
                let mut f = Fwd {
                    tx: &mut self.tx,
                    alloc: &mut self.alloc,
                    stats: &mut self.stats,
                    state: &mut self.state,
                    neighbors: &mut self.neighbors,
                    limiter: &mut self.limiter,
                    neighbor_table: &self.neighbor_table,
                };
                h.take_in(&mut f.state.ct, f.stats);
                received += h.staged.len();
                h.run_staged(snap, &mut f);
            }
        }
        self.rounds = self.rounds.wrapping_add(1);
        // The clock is read once per 64 rounds: a read per round costs more than a
        // tenth of a microsecond, and aging is a matter of seconds. (An idle worker
        // sleeps at most a few milliseconds per round, so this stays well under 1 s.)
        if snap.has_overlay()
            && self.rounds.is_multiple_of(64)
            && self.last_expire.elapsed() >= Duration::from_secs(1)
        {
            // Once a second: age the underlay neighbours, and ask again for those
            // getting old, so a live next hop never expires under traffic.
            self.last_expire = Instant::now();
            let mut refresh: ArrayVec<IpAddr, MAX_RESOLVE_PER_BURST> = ArrayVec::new();
            if let Ok(mut table) = self.neighbor_table.try_lock() {
                table.expire(self.last_expire);
                for ip in table.refreshable(self.last_expire) {
                    if refresh.try_push(ip).is_err() {
                        break;
                    }
                }
            }
            refresh.retain(|ip| self.limiter.should_request(*ip, self.last_expire));
            send_resolution_requests(
                snap,
                &refresh,
                &mut self.alloc,
                &mut self.tx,
                &mut self.stats,
            );
        }
        // Conntrack expiry, bounded per call (`EXPIRE_BUDGET`), with a clock
        // read every 64 rounds like the neighbours' aging.
        if self.rounds.is_multiple_of(64) && self.state.conntrack().allocated() {
            self.state.conntrack_mut().expire(Instant::now());
            if self.state.conntrack().has_notes() {
                let rings = self.handoff.as_ref().map(|h| &h.rings);
                send_notes(rings, self.state.conntrack_mut());
            }
        }
        self.tx.flush_all(&mut self.stats);
        self.stats.count_poll(received);
        let busy = received > 0;
        if busy != self.phase_busy || self.rounds.is_multiple_of(64) {
            self.account_time(busy);
        }
        self.stats.set_flows(self.state.flow_stats());
        self.stats.set_ct(self.state.conntrack().stats());
        self.stats.publish(&self.shared);
        received
    }

    /// Charges the time since the last account to busy or idle, at the end of a
    /// round that received something (`busy`) or nothing.
    ///
    /// The clock is read when the worker changes phase and every 64 rounds, not
    /// every round: a saturated worker (every round busy, where a clock read
    /// would cost packets) reads it once per 64 bursts, and one that alternates
    /// has idle rounds, hence time to spare. Idle to busy is split where this
    /// round started (read at its start while idle), so the round's work counts
    /// as busy; busy to idle charges the one empty poll that ended the phase to
    /// busy, a fraction of a microsecond; sleeps always count as idle.
    #[cold]
    fn account_time(&mut self, busy: bool) {
        let now = Instant::now();
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if busy && !self.phase_busy {
            let start = self.round_start.max(self.phase_start);
            self.stats.count_time(false, ns(start - self.phase_start));
            self.stats.count_time(true, ns(now - start));
        } else {
            self.stats
                .count_time(self.phase_busy, ns(now - self.phase_start));
        }
        self.phase_start = now;
        self.phase_busy = busy;
    }

    /// Polls until the stop flag is set, backing off when idle; then sends what is
    /// pending and returns the final counters (also published).
    pub fn run(mut self) -> StatsSnapshot {
        tracing::debug!(
            worker = self.id.0,
            ports = self.tx.queues.len(),
            "worker running"
        );
        while !self.stop.load(Ordering::Acquire) {
            let received = self.poll_once();
            self.idle.after_round(received);
            if let Some(hook) = &mut self.stall {
                hook.between_rounds(self.id, &self.stop);
            }
        }
        self.tx.flush_all(&mut self.stats);
        self.account_time(self.phase_busy);
        self.stats.set_flows(self.state.flow_stats());
        self.stats.set_ct(self.state.conntrack().stats());
        self.stats.publish(&self.shared);
        tracing::debug!(worker = self.id.0, "worker stopped");
        self.stats.to_snapshot(self.id)
    }
}

impl<R, T, A> fmt::Debug for Worker<R, T, A>
where
    R: RxQueue,
    T: TxQueue<Buf = R::Buf>,
    A: BufAlloc<Buf = R::Buf>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field(
                "rx_ports",
                &self.rx.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            )
            .field("ports", &self.tx.queues.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::VecBuf;
    use crate::ethernet::MacAddr;
    use crate::l2::{GroupId, L2Pipeline, L2PipelineBuilder};
    use crate::stats::StatsTotals;
    use crate::testio::{
        eth_frame, CountedAlloc, LiveBufs, Ring, VecAlloc, VecRxQueue, VecTxQueue,
    };
    use std::time::{Duration, Instant};

    const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
    const D: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0d]);
    const UNKNOWN: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xff]);

    /// Ports 0, 1, 2 in group 1 and port 3 alone in group 2; A on 0, B on `b_port`,
    /// C on 2, D on 3. Port 4, if the worker has it, is unknown to the pipeline.
    fn pipeline(generation: u64, b_port: u16) -> L2Pipeline {
        let mut b = L2PipelineBuilder::new(generation);
        b.port(PortIdx(0), "p0", GroupId(1))
            .port(PortIdx(1), "p1", GroupId(1))
            .port(PortIdx(2), "p2", GroupId(1))
            .port(PortIdx(3), "p3", GroupId(2))
            .mac(A, PortIdx(0))
            .mac(B, PortIdx(b_port))
            .mac(C, PortIdx(2))
            .mac(D, PortIdx(3));
        b.build().unwrap()
    }

    type VecWorker = Worker<VecRxQueue, VecTxQueue, VecAlloc>;

    struct Rig {
        rx: Vec<Ring<VecBuf>>,
        tx: Vec<Ring<VecBuf>>,
        cell: Arc<SnapshotCell<Pipeline>>,
        worker: VecWorker,
    }

    /// A worker with an rx queue on each of `rx_ports`, and on each port `i` of
    /// `tx_caps` a tx queue of that capacity (`None`: no tx queue).
    fn rig(rx_ports: &[u16], tx_caps: &[Option<usize>], alloc: VecAlloc) -> Rig {
        let rx: Vec<Ring<VecBuf>> = (0..tx_caps.len()).map(|_| Ring::new()).collect();
        let tx: Vec<Ring<VecBuf>> = (0..tx_caps.len()).map(|_| Ring::new()).collect();
        let cell = Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(1, 1))));
        let worker = Worker::new(
            WorkerId(0),
            rx_ports
                .iter()
                .map(|&p| (PortIdx(p), VecRxQueue::new(rx[p as usize].clone())))
                .collect(),
            tx_caps
                .iter()
                .zip(&tx)
                .map(|(cap, ring)| cap.map(|c| VecTxQueue::with_capacity(ring.clone(), c)))
                .collect(),
            alloc,
            cell.clone(),
            IdleBackoff::busy_poll(),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        Rig {
            rx,
            tx,
            cell,
            worker,
        }
    }

    fn open(n: usize) -> Vec<Option<usize>> {
        vec![Some(usize::MAX); n]
    }

    fn send(ring: &Ring<VecBuf>, dst: MacAddr, src: MacAddr, len: usize, count: usize) {
        for _ in 0..count {
            ring.push(VecBuf::new(&eth_frame(dst, src, len)));
        }
    }

    /// Every buffer received or copied was sent or counted as a drop.
    fn assert_conserved(s: &StatsSnapshot) {
        assert_eq!(
            s.rx_packets() + s.flood_copies,
            s.tx_packets() + s.total_drops(),
            "{s:#?}"
        );
    }

    #[test]
    fn unicast_counters_add_up_exactly() {
        let mut r = rig(&[0, 2], &open(4), VecAlloc::unlimited());
        send(&r.rx[0], B, A, 60, 50); // to port 1
        send(&r.rx[0], A, B, 60, 7); // hairpin
        send(&r.rx[0], B, A, 10, 3); // runt
        send(&r.rx[2], A, C, 1000, 20); // to port 0
        let mut received = 0;
        while r.rx.iter().any(|q| !q.is_empty()) {
            received += r.worker.poll_once();
            assert_eq!(r.worker.pending_tx(), 0);
        }
        assert_eq!(received, 80);
        assert_eq!(r.tx[1].len(), 50);
        assert_eq!(r.tx[0].len(), 20);
        assert!(r.tx[2].is_empty() && r.tx[3].is_empty());
        assert!(r.tx[1]
            .take_all()
            .iter()
            .all(|b| b.data() == eth_frame(B, A, 60)));

        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s, r.worker.stats().to_snapshot(WorkerId(0)));
        assert_eq!(s.rx_packets(), 80);
        assert_eq!(s.port(PortIdx(0)).rx_packets, 60);
        assert_eq!(s.port(PortIdx(0)).rx_bytes, 50 * 60 + 7 * 60 + 3 * 10);
        assert_eq!(s.port(PortIdx(2)).rx_bytes, 20 * 1000);
        assert_eq!(s.port(PortIdx(1)).tx_packets, 50);
        assert_eq!(s.port(PortIdx(1)).tx_bytes, 50 * 60);
        assert_eq!(s.port(PortIdx(0)).tx_bytes, 20 * 1000);
        assert_eq!(s.drops_for(DropReason::Hairpin), 7);
        assert_eq!(s.drops_for(DropReason::RuntFrame), 3);
        assert_eq!(s.port(PortIdx(0)).drops_for(DropReason::Hairpin), 7);
        assert_eq!(s.total_drops(), 10);
        assert_eq!(s.flood_copies, 0);
        assert_eq!(s.rx_packets(), s.tx_packets() + s.total_drops());
        assert_eq!(s.snapshot_generation, 1);
        assert!(s.busy_polls >= 2);
    }

    #[test]
    fn flood_reaches_group_minus_ingress_only() {
        let mut r = rig(&[1], &open(4), VecAlloc::unlimited());
        send(&r.rx[1], MacAddr::BROADCAST, B, 60, 2);
        send(&r.rx[1], UNKNOWN, B, 70, 1);
        send(&r.rx[1], MacAddr([0x01, 0, 0x5e, 0, 0, 0xfb]), B, 80, 1);
        send(&r.rx[1], D, B, 90, 1); // D lives in group 2: unknown in group 1
        assert_eq!(r.worker.poll_once(), 5);
        for port in [0, 2] {
            let got: Vec<Vec<u8>> = r.tx[port]
                .take_all()
                .iter()
                .map(|b| b.data().to_vec())
                .collect();
            assert_eq!(
                got,
                [
                    eth_frame(MacAddr::BROADCAST, B, 60),
                    eth_frame(MacAddr::BROADCAST, B, 60),
                    eth_frame(UNKNOWN, B, 70),
                    eth_frame(MacAddr([0x01, 0, 0x5e, 0, 0, 0xfb]), B, 80),
                    eth_frame(D, B, 90),
                ],
                "port {port}"
            );
        }
        assert!(r.tx[1].is_empty(), "never back to the ingress port");
        assert!(r.tx[3].is_empty(), "never into another group");
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.flood_copies, 5);
        assert_eq!(s.tx_packets(), 10);
        assert_conserved(&s);
    }

    #[test]
    fn flood_in_lone_group_is_no_output() {
        let mut r = rig(&[3], &open(4), VecAlloc::unlimited());
        send(&r.rx[3], MacAddr::BROADCAST, D, 60, 4);
        r.worker.poll_once();
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.drops_for(DropReason::NoOutput), 4);
        assert_eq!(s.port(PortIdx(3)).drops_for(DropReason::NoOutput), 4);
        assert_conserved(&s);
    }

    #[test]
    fn flood_copy_alloc_failure_is_counted() {
        // One copy available: the first broadcast reaches both ports, the second only
        // the port that gets the original (the last one, port 2).
        let mut r = rig(&[0], &open(4), VecAlloc::with_limit(1));
        send(&r.rx[0], MacAddr::BROADCAST, A, 60, 2);
        r.worker.poll_once();
        assert_eq!(r.tx[1].len(), 1);
        assert_eq!(r.tx[2].len(), 2);
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.drops_for(DropReason::FloodAllocFailed), 1);
        assert_eq!(
            s.port(PortIdx(1)).drops_for(DropReason::FloodAllocFailed),
            1
        );
        assert_conserved(&s);
    }

    #[test]
    fn missing_tx_queue_drops_unicast_and_flood_legs() {
        let caps = [Some(usize::MAX), None, Some(usize::MAX), Some(usize::MAX)];
        let mut r = rig(&[0], &caps, VecAlloc::unlimited());
        send(&r.rx[0], B, A, 60, 3); // to port 1: no queue
        send(&r.rx[0], MacAddr::BROADCAST, A, 60, 2); // port 1 leg dropped, port 2 gets it
        r.worker.poll_once();
        assert_eq!(r.tx[2].len(), 2);
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.drops_for(DropReason::NoTxQueue), 5);
        assert_eq!(s.port(PortIdx(1)).drops_for(DropReason::NoTxQueue), 5);
        assert_conserved(&s);

        // No queue anywhere in the flood domain: every leg is a drop.
        let caps = [Some(usize::MAX), None, None, Some(usize::MAX)];
        let mut r = rig(&[0], &caps, VecAlloc::unlimited());
        send(&r.rx[0], MacAddr::BROADCAST, A, 60, 1);
        r.worker.poll_once();
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.drops_for(DropReason::NoTxQueue), 2);
        assert_conserved(&s);
    }

    /// Bursts that go to one port whole join that port's batch in order, whether
    /// the batch is empty, part full or too full to take them; the counters match
    /// the per-packet path's.
    #[test]
    fn whole_bursts_to_one_port_keep_order_and_counts() {
        // Frame lengths tell the frames apart: port 0 sends 60.., port 2 sends 200...
        let frames = |r: &Rig, port: usize, base: usize, n: usize| {
            for k in 0..n {
                r.rx[port].push(VecBuf::new(&eth_frame(B, A, base + k)));
            }
        };
        let lens = |bufs: Vec<VecBuf>| bufs.iter().map(|b| b.len()).collect::<Vec<_>>();
        for (n0, n2) in [(10, 10), (20, 20), (32, 32), (1, 31)] {
            let mut r = rig(&[0, 2], &open(4), VecAlloc::unlimited());
            frames(&r, 0, 60, n0);
            frames(&r, 2, 200, n2);
            r.worker.poll_once();
            assert_eq!(r.worker.pending_tx(), 0);
            let want: Vec<usize> = (60..60 + n0).chain(200..200 + n2).collect();
            assert_eq!(lens(r.tx[1].take_all()), want, "{n0}+{n2}");
            let s = r.worker.stats_handle().snapshot();
            let bytes = want.iter().sum::<usize>() as u64;
            assert_eq!(s.port(PortIdx(1)).tx_packets, (n0 + n2) as u64);
            assert_eq!(s.port(PortIdx(1)).tx_bytes, bytes);
            assert_eq!(s.total_drops(), 0);
            // One tx burst per full or final batch.
            assert_eq!(s.tx_bursts, (n0 + n2).div_ceil(BURST) as u64, "{n0}+{n2}");
        }

        // A whole burst to a port without a tx queue: every packet counted there.
        let caps = [Some(usize::MAX), None, Some(usize::MAX), Some(usize::MAX)];
        let mut r = rig(&[0], &caps, VecAlloc::unlimited());
        send(&r.rx[0], B, A, 60, 32);
        r.worker.poll_once();
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.port(PortIdx(1)).drops_for(DropReason::NoTxQueue), 32);
        assert_conserved(&s);

        // A whole burst a port takes only part of: the rest is tx_full, bytes exact.
        let caps = [
            Some(usize::MAX),
            Some(5),
            Some(usize::MAX),
            Some(usize::MAX),
        ];
        let mut r = rig(&[0], &caps, VecAlloc::unlimited());
        frames(&r, 0, 60, 32);
        r.worker.poll_once();
        assert_eq!(lens(r.tx[1].take_all()), (60..65).collect::<Vec<_>>());
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.port(PortIdx(1)).tx_bytes, (60..65).sum::<usize>() as u64);
        assert_eq!(s.drops_for(DropReason::TxFull), 27);
        assert_conserved(&s);
    }

    #[test]
    fn rx_on_port_unknown_to_pipeline() {
        let mut r = rig(&[4], &open(5), VecAlloc::unlimited());
        send(&r.rx[4], B, A, 60, 6);
        r.worker.poll_once();
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.drops_for(DropReason::NoPipelinePort), 6);
        assert_eq!(s.port(PortIdx(4)).rx_packets, 6);
        assert_conserved(&s);
    }

    #[test]
    fn tx_refusal_is_freed_and_counted_never_leaked() {
        let live = LiveBufs::new();
        let rx: Vec<Ring<_>> = (0..3).map(|_| Ring::new()).collect();
        let tx_ring = Ring::new();
        let cell = Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(1, 1))));
        let mut w = Worker::new(
            WorkerId(3),
            vec![
                (PortIdx(0), VecRxQueue::new(rx[0].clone())),
                (PortIdx(2), VecRxQueue::new(rx[2].clone())),
            ],
            vec![
                Some(VecTxQueue::new(Ring::new())),
                Some(VecTxQueue::with_capacity(tx_ring.clone(), 5)),
                Some(VecTxQueue::new(Ring::new())),
            ],
            CountedAlloc::with_limit(live.clone(), 0),
            cell,
            IdleBackoff::busy_poll(),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        // 2 x 32 packets to port 1 in one round: its batch fills mid-round and is sent
        // then, and again at the end of the round.
        for q in [&rx[0], &rx[2]] {
            for _ in 0..32 {
                q.push(live.buf(&eth_frame(B, C, 100)));
            }
        }
        assert_eq!(live.count(), 64);
        assert_eq!(w.poll_once(), 64);
        assert_eq!(w.pending_tx(), 0);
        assert_eq!(tx_ring.len(), 5);
        assert_eq!(live.count(), 5, "refused buffers are freed at once");
        let s = w.stats_handle().snapshot();
        assert_eq!(s.worker, WorkerId(3));
        assert_eq!(s.tx_bursts, 2);
        assert_eq!(s.port(PortIdx(1)).tx_packets, 5);
        assert_eq!(s.port(PortIdx(1)).tx_bytes, 500);
        assert_eq!(s.drops_for(DropReason::TxFull), 59);
        assert_eq!(s.port(PortIdx(1)).drops_for(DropReason::TxFull), 59);
        assert_conserved(&s);
        drop(tx_ring.take_all());
        assert_eq!(live.count(), 0);

        // Floods whose copies fail to allocate leak nothing either.
        rx[0].push(live.buf(&eth_frame(MacAddr::BROADCAST, A, 60)));
        w.poll_once();
        assert_eq!(live.count(), 1, "only the original, sent to port 2");
        assert_eq!(w.stats().drops(DropReason::FloodAllocFailed), 1);
        drop(w);
        assert_eq!(live.count(), 0);
    }

    /// A port takes a frame longer than its MTU and drops it, reporting it sent:
    /// the worker holds such frames back and counts them on the port, so the
    /// counters keep adding up. A VLAN tag is not counted against the MTU.
    #[test]
    fn frames_longer_than_the_ports_mtu_are_tx_oversize_not_tx() {
        let rx = Ring::new();
        let tx_ring = Ring::new();
        let cell = Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(1, 1))));
        // Port 1: MTU 1400, so 1414-byte untagged frames.
        let mut w = Worker::new(
            WorkerId(0),
            vec![(PortIdx(0), VecRxQueue::new(rx.clone()))],
            vec![
                Some(VecTxQueue::new(Ring::new())),
                Some(VecTxQueue::new(tx_ring.clone()).with_max_frame(1414)),
                Some(VecTxQueue::new(Ring::new())),
            ],
            VecAlloc::unlimited(),
            cell,
            IdleBackoff::busy_poll(),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        let mut tagged = eth_frame(B, A, 1418);
        tagged[12..18].copy_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        let frames = [
            eth_frame(B, A, 1414),
            eth_frame(B, A, 1415),
            tagged.clone(),
            eth_frame(B, A, 60),
            eth_frame(B, A, 1500),
        ];
        let mut too_long_tagged = tagged;
        too_long_tagged.push(0);
        for f in frames.iter().chain([&too_long_tagged]) {
            rx.push(VecBuf::new(f));
        }
        assert_eq!(w.poll_once(), 6);
        let sent: Vec<usize> = tx_ring.take_all().iter().map(|b| b.len()).collect();
        assert_eq!(
            sent,
            vec![1414, 1418, 60],
            "in order, the oversize ones held back"
        );
        let s = w.stats_handle().snapshot();
        assert_eq!(s.port(PortIdx(1)).tx_packets, 3);
        assert_eq!(s.port(PortIdx(1)).tx_bytes, 1414 + 1418 + 60);
        assert_eq!(s.port(PortIdx(1)).drops_for(DropReason::TxOversize), 3);
        assert_conserved(&s);
        // A whole burst of oversize frames: nothing reaches the port.
        for _ in 0..crate::BURST {
            rx.push(VecBuf::new(&eth_frame(B, A, 1500)));
        }
        w.poll_once();
        assert!(tx_ring.is_empty());
        let s = w.stats_handle().snapshot();
        assert_eq!(s.drops_for(DropReason::TxOversize), 3 + crate::BURST as u64);
        assert_eq!(s.tx_bursts, 1, "no tx_burst for an empty batch");
        assert_conserved(&s);
    }

    #[test]
    fn snapshot_swap_between_rounds_loses_nothing() {
        let mut r = rig(&[0], &open(4), VecAlloc::unlimited());
        send(&r.rx[0], B, A, 60, 40);
        r.worker.poll_once(); // 32 of them, B on port 1
        assert_eq!(
            r.worker
                .stats()
                .to_snapshot(WorkerId(0))
                .snapshot_generation,
            1
        );
        r.cell.publish(Pipeline::l2_only(pipeline(2, 2))); // B moves to port 2
        r.worker.poll_once(); // the other 8
        assert_eq!(r.tx[1].len(), 32);
        assert_eq!(r.tx[2].len(), 8);
        let s = r.worker.stats_handle().snapshot();
        assert_eq!(s.snapshot_generation, 2);
        assert_eq!(s.rx_packets(), 40);
        assert_eq!(s.tx_packets(), 40);
        assert_eq!(s.total_drops(), 0);
    }

    #[test]
    fn stall_hook_freezes_the_heartbeat_until_its_file_goes() {
        let path = std::env::temp_dir().join(format!("vsw-stall-worker-{}", std::process::id()));
        std::fs::write(&path, "").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let w: VecWorker = Worker::new(
            WorkerId(0),
            vec![(PortIdx(0), VecRxQueue::new(Ring::new()))],
            vec![None],
            VecAlloc::unlimited(),
            Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(1, 1)))),
            IdleBackoff::new(Duration::from_micros(200)),
            stop.clone(),
        )
        .unwrap()
        .with_stall_hook(StallHook::new(&path));
        let handle = w.stats_handle();
        let thread = std::thread::spawn(move || w.run());
        // The first round beats, then the hook holds the worker.
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.heartbeat() == 0 {
            assert!(Instant::now() < deadline, "worker never ran a round");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        let frozen = handle.heartbeat();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(handle.heartbeat(), frozen, "a stalled worker must not beat");
        std::fs::remove_file(&path).unwrap();
        while handle.heartbeat() == frozen {
            assert!(Instant::now() < deadline, "worker did not resume");
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Release);
        thread.join().unwrap();
    }

    #[test]
    fn run_stops_on_flag_and_returns_final_stats() {
        fn assert_send<T: Send>(_: &T) {}
        let rx = Ring::new();
        let tx = Ring::new();
        let stop = Arc::new(AtomicBool::new(false));
        let w: VecWorker = Worker::new(
            WorkerId(1),
            vec![(PortIdx(0), VecRxQueue::new(rx.clone()))],
            vec![None, Some(VecTxQueue::new(tx.clone()))],
            VecAlloc::unlimited(),
            Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(5, 1)))),
            IdleBackoff::new(Duration::from_micros(200)),
            stop.clone(),
        )
        .unwrap();
        assert_send(&w);
        let handle = w.stats_handle();
        let thread = std::thread::spawn(move || w.run());
        send(&rx, B, A, 60, 100);
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.snapshot().tx_packets() < 100 {
            assert!(Instant::now() < deadline, "worker did not forward");
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Release);
        let last = thread.join().unwrap();
        assert_eq!(last, handle.snapshot());
        assert_eq!(last.port(PortIdx(1)).tx_packets, 100);
        assert_eq!(tx.len(), 100);
        assert_eq!(last.snapshot_generation, 5);
        assert!(last.idle_polls > 0);

        let t = StatsTotals::sum([&last, &last]);
        assert_eq!(t.workers, 2);
        assert_eq!(t.ports[1].tx_packets, 200);
    }

    /// Busy and idle time: sleeps between empty rounds are idle, a round that
    /// receives packets is busy from its start, and the two add up to no more
    /// than the time that passed.
    #[test]
    fn busy_and_idle_time_split_where_the_phases_change() {
        let rx = Ring::new();
        let tx = Ring::new();
        let started = Instant::now();
        let mut w: VecWorker = Worker::new(
            WorkerId(0),
            vec![(PortIdx(0), VecRxQueue::new(rx.clone()))],
            vec![None, Some(VecTxQueue::new(tx.clone()))],
            VecAlloc::unlimited(),
            Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(1, 1)))),
            IdleBackoff::busy_poll(),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        let nap = Duration::from_millis(5);
        for _ in 0..3 {
            assert_eq!(w.poll_once(), 0);
            std::thread::sleep(nap);
        }
        send(&rx, B, A, 60, 32);
        assert_eq!(w.poll_once(), 32);
        // The next round finds nothing: the busy phase ends with it.
        assert_eq!(w.poll_once(), 0);
        let s = w.stats_handle().snapshot();
        assert!(s.busy_ns > 0, "{s:?}");
        assert!(s.idle_ns >= 3 * 5_000_000, "the naps are idle: {s:?}");
        std::thread::sleep(nap);
        w.account_time(false);
        // Published at the next round; the account itself is in the worker's own.
        let own = w.stats.to_snapshot(WorkerId(0));
        let (busy, idle) = (own.busy_ns, own.idle_ns);
        assert_eq!(busy, s.busy_ns);
        assert!(idle >= 4 * 5_000_000, "{idle}");
        let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap();
        assert!(busy + idle <= elapsed, "{busy} + {idle} > {elapsed}");
        assert!(busy < idle);
    }

    /// RCU under traffic: a running worker forwards a stream while another thread
    /// publishes thousands of snapshots (each with different unrelated MAC entries).
    /// Not a packet is lost or misrouted, and every old snapshot is freed once the
    /// worker has moved past it.
    #[test]
    fn thousands_of_publishes_under_traffic_lose_nothing_and_free_old_snapshots() {
        const PACKETS: usize = 100_000;
        const PUBLISHES: u64 = 5_000;
        let rx = Ring::new();
        let tx = Ring::new();
        let stop = Arc::new(AtomicBool::new(false));
        let cell = Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(0, 1))));
        let w: VecWorker = Worker::new(
            WorkerId(0),
            vec![(PortIdx(0), VecRxQueue::new(rx.clone()))],
            vec![
                Some(VecTxQueue::new(Ring::new())),
                Some(VecTxQueue::new(tx.clone())),
                Some(VecTxQueue::new(Ring::new())),
                Some(VecTxQueue::new(Ring::new())),
            ],
            VecAlloc::unlimited(),
            Arc::clone(&cell),
            IdleBackoff::busy_poll(),
            stop.clone(),
        )
        .unwrap();
        let handle = w.stats_handle();
        let worker = std::thread::spawn(move || w.run());
        let publisher = {
            let cell = Arc::clone(&cell);
            std::thread::spawn(move || {
                let mut old = Vec::with_capacity(PUBLISHES as usize);
                for g in 1..=PUBLISHES {
                    let mut b = L2PipelineBuilder::new(g);
                    b.port(PortIdx(0), "p0", GroupId(1))
                        .port(PortIdx(1), "p1", GroupId(1))
                        .port(PortIdx(2), "p2", GroupId(1))
                        .port(PortIdx(3), "p3", GroupId(2))
                        .mac(B, PortIdx(1));
                    // Unrelated entries that come and go.
                    for i in 0..(g % 17) {
                        b.mac(MacAddr([2, 1, 0, 0, (g % 251) as u8, i as u8]), PortIdx(2));
                    }
                    let next = Arc::new(Pipeline::l2_only(b.build().unwrap()));
                    old.push(Arc::downgrade(&next));
                    cell.publish_arc(next);
                }
                old
            })
        };
        for _ in 0..PACKETS / 1000 {
            send(&rx, B, A, 60, 1000);
            while rx.len() > 4000 {
                std::thread::yield_now();
            }
        }
        let old = publisher.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while handle.snapshot().tx_packets() < PACKETS as u64 {
            assert!(
                Instant::now() < deadline,
                "stream stalled: {:?}",
                handle.snapshot()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Release);
        let last = worker.join().unwrap();
        assert_eq!(last.port(PortIdx(1)).tx_packets, PACKETS as u64);
        assert_eq!(last.total_drops(), 0, "{last:#?}");
        assert_eq!(tx.len(), PACKETS);
        assert_eq!(cell.generation(), PUBLISHES);
        // All but the current snapshot are gone: nothing leaked.
        let alive = old.iter().filter(|w| w.upgrade().is_some()).count();
        assert_eq!(alive, 1, "old snapshots still alive");
    }

    /// Ports added and removed at runtime: an added port is polled and sent to from
    /// the next round; once removal is acknowledged the worker holds none of its
    /// queues and neither polls nor sends to it.
    #[test]
    fn ports_come_and_go_between_rounds() {
        let (cmd_tx, cmd_rx) = crossbeam::channel::unbounded();
        let rx0 = Ring::new();
        let rx2 = Ring::new();
        let tx2 = Ring::new();
        let cell = Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(1, 1))));
        let mut w: VecWorker = Worker::new(
            WorkerId(0),
            vec![(PortIdx(0), VecRxQueue::new(rx0.clone()))],
            vec![
                Some(VecTxQueue::new(Ring::new())),
                Some(VecTxQueue::new(Ring::new())),
            ],
            VecAlloc::unlimited(),
            Arc::clone(&cell),
            IdleBackoff::busy_poll(),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap()
        .with_commands(cmd_rx);
        // C lives on port 2, which the worker does not have yet.
        send(&rx0, C, A, 60, 4);
        w.poll_once();
        assert_eq!(
            w.stats_handle().snapshot().drops_for(DropReason::NoTxQueue),
            4
        );
        cmd_tx
            .send(WorkerCommand::AddPort {
                port: PortIdx(2),
                rx: vec![VecRxQueue::new(rx2.clone())],
                tx: Some(TxSlot::Own(VecTxQueue::new(tx2.clone()))),
            })
            .unwrap();
        send(&rx0, C, A, 60, 5);
        send(&rx2, A, C, 60, 6);
        w.poll_once();
        let s = w.stats_handle().snapshot();
        assert_eq!(tx2.len(), 5, "sent to the new port");
        assert_eq!(s.port(PortIdx(2)).rx_packets, 6, "the new port is polled");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        cmd_tx
            .send(WorkerCommand::RemovePort {
                port: PortIdx(2),
                done: done_tx,
            })
            .unwrap();
        send(&rx2, A, C, 60, 7);
        w.poll_once();
        assert_eq!(done_rx.try_recv(), Ok(PortIdx(2)));
        assert_eq!(rx2.len(), 7, "a removed port is not polled");
        send(&rx0, C, A, 60, 2);
        w.poll_once();
        assert_eq!(tx2.len(), 5, "nor sent to");
        assert_conserved(&w.stats_handle().snapshot());
    }

    #[test]
    fn capture_copies_a_ports_frames_both_ways() {
        let tap = Arc::new(CaptureTap::default());
        let mut r = rig(&[0], &open(3), VecAlloc::unlimited());
        r.worker = r.worker.with_capture(Arc::clone(&tap));
        send(&r.rx[0], B, A, 60, 3);
        r.worker.poll_once();
        let copies = tap.start(PortIdx(1), true, true);
        send(&r.rx[0], B, A, 64, 2);
        r.worker.poll_once();
        let got: Vec<_> = copies.try_iter().collect();
        assert_eq!(got.len(), 2, "only frames after the start, only port 1");
        assert!(got
            .iter()
            .all(|f| f.direction == Direction::Tx && f.data.len() == 64));
        tap.stop();
        send(&r.rx[0], B, A, 60, 2);
        r.worker.poll_once();
        assert_eq!(copies.try_iter().count(), 0);
        assert_eq!(r.tx[1].len(), 7, "forwarding is untouched");
    }

    #[test]
    fn new_rejects_bad_queue_layouts() {
        let cell = Arc::new(SnapshotCell::new(Pipeline::l2_only(L2Pipeline::empty(0))));
        let stop = Arc::new(AtomicBool::new(false));
        let err = VecWorker::new(
            WorkerId(2),
            vec![(PortIdx(3), VecRxQueue::new(Ring::new()))],
            vec![None, None],
            VecAlloc::unlimited(),
            cell.clone(),
            IdleBackoff::busy_poll(),
            stop.clone(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            WorkerError::RxPortOutOfRange {
                worker: WorkerId(2),
                port: PortIdx(3),
                ports: 2
            }
        );
        let err = VecWorker::new(
            WorkerId(2),
            vec![],
            (0..MAX_PORTS + 1).map(|_| None).collect(),
            VecAlloc::unlimited(),
            cell,
            IdleBackoff::busy_poll(),
            stop,
        )
        .unwrap_err();
        assert!(matches!(err, WorkerError::TooManyPorts { ports, .. } if ports == MAX_PORTS + 1));
    }

    /// A frame in two segments, as a chained mbuf: `data` shows the first one only.
    #[derive(Debug)]
    struct SegBuf {
        first: VecBuf,
        rest: Vec<u8>,
    }

    impl SegBuf {
        /// `frame` split after `split` bytes, with `tailroom` behind the first segment.
        fn split(frame: &[u8], split: usize, tailroom: usize) -> Self {
            SegBuf {
                first: VecBuf::with_room(&frame[..split], 128, tailroom),
                rest: frame[split..].to_vec(),
            }
        }
    }

    impl PacketBuf for SegBuf {
        fn data(&self) -> &[u8] {
            self.first.data()
        }
        fn data_mut(&mut self) -> &mut [u8] {
            self.first.data_mut()
        }
        fn headroom(&self) -> usize {
            self.first.headroom()
        }
        fn tailroom(&self) -> usize {
            self.first.tailroom()
        }
        fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
            self.first.prepend(len)
        }
        fn adj(&mut self, len: usize) -> Option<()> {
            self.first.adj(len)
        }
        fn append(&mut self, len: usize) -> Option<&mut [u8]> {
            self.first.append(len)
        }
        fn trim(&mut self, len: usize) -> Option<()> {
            self.first.trim(len)
        }
        fn is_contiguous(&self) -> bool {
            self.rest.is_empty()
        }
        fn linearize(&mut self) -> bool {
            let Some(room) = self.first.append(self.rest.len()) else {
                return false;
            };
            room.copy_from_slice(&self.rest);
            self.rest.clear();
            true
        }
    }

    struct SegAlloc;

    impl BufAlloc for SegAlloc {
        type Buf = SegBuf;
        fn alloc_copy(&mut self, data: &[u8]) -> Option<SegBuf> {
            Some(SegBuf::split(data, data.len(), 0))
        }
    }

    #[test]
    fn chained_frames_are_linearised_or_dropped_as_rx_oversize() {
        let (rx, tx) = (Ring::new(), Ring::new());
        let mut w: Worker<VecRxQueue<SegBuf>, VecTxQueue<SegBuf>, SegAlloc> = Worker::new(
            WorkerId(0),
            vec![(PortIdx(0), VecRxQueue::new(rx.clone()))],
            vec![None, Some(VecTxQueue::new(tx.clone()))],
            SegAlloc,
            Arc::new(SnapshotCell::new(Pipeline::l2_only(pipeline(1, 1)))),
            IdleBackoff::busy_poll(),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        let (small, big, huge) = (
            eth_frame(B, A, 60),
            eth_frame(B, A, 1000),
            eth_frame(B, A, 3000),
        );
        rx.push(SegBuf::split(&small, 60, 0));
        rx.push(SegBuf::split(&big, 600, 400)); // the tail fits behind the first segment
        rx.push(SegBuf::split(&huge, 2000, 999)); // it does not: dropped
        rx.push(SegBuf::split(&eth_frame(B, A, 70), 70, 0));
        assert_eq!(w.poll_once(), 4);
        let sent = tx.take_all();
        assert!(sent.iter().all(PacketBuf::is_contiguous));
        let sent: Vec<&[u8]> = sent.iter().map(PacketBuf::data).collect();
        assert_eq!(
            sent,
            [&small[..], &big[..], &eth_frame(B, A, 70)[..]],
            "in order, whole"
        );
        // A burst of nothing but a frame that cannot be merged.
        rx.push(SegBuf::split(&huge, 1500, 0));
        w.poll_once();
        assert!(tx.is_empty());
        let s = w.stats_handle().snapshot();
        assert_eq!(
            s.port(PortIdx(0)).rx_packets,
            5,
            "dropped frames were received"
        );
        assert_eq!(
            s.port(PortIdx(0)).rx_bytes,
            60 + 1000 + 70,
            "of what is kept"
        );
        assert_eq!(s.port(PortIdx(0)).drops_for(DropReason::RxOversize), 2);
        assert_eq!(
            (s.total_drops(), s.port(PortIdx(1)).tx_bytes),
            (2, 60 + 1000 + 70)
        );
        assert_conserved(&s);
    }
}

/// Workers sharing a port's one tx queue.
#[cfg(test)]
mod shared_tx_tests {
    use super::*;
    use crate::buf::VecBuf;
    use crate::ethernet::MacAddr;
    use crate::io::{assign_tx_queues, SharedTxQueue};
    use crate::l2::{GroupId, L2PipelineBuilder};
    use crate::testio::{eth_frame, Ring, VecAlloc, VecRxQueue, VecTxQueue};
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;

    const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);

    /// A ring-backed tx queue that notices being used by two threads at once, as a
    /// DPDK queue would not (it would corrupt its ring): each burst marks the queue
    /// busy and holds it for 100 µs, so the two senders' bursts meet (625 bursts
    /// each: about 60 ms), and counts an overlap if it was busy already.
    struct ExclusiveTxQueue {
        inner: VecTxQueue,
        busy: Arc<AtomicUsize>,
        overlaps: Arc<AtomicUsize>,
    }

    impl TxQueue for ExclusiveTxQueue {
        type Buf = VecBuf;
        fn tx_burst(&mut self, pkts: &mut Burst<VecBuf>) -> usize {
            if self.busy.fetch_add(1, Ordering::SeqCst) != 0 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_micros(100));
            let n = self.inner.tx_burst(pkts);
            self.busy.fetch_sub(1, Ordering::SeqCst);
            n
        }
    }

    /// A frame from `src` to B numbered `seq` (in bytes 14..22).
    fn numbered(src: MacAddr, seq: u64) -> VecBuf {
        let mut f = eth_frame(B, src, 64);
        f[14..22].copy_from_slice(&seq.to_be_bytes());
        VecBuf::new(&f)
    }

    #[test]
    fn queues_are_own_when_enough_and_shared_by_worker_modulo() {
        let q = |n: usize| -> Vec<VecTxQueue> {
            (0..n).map(|_| VecTxQueue::new(Ring::new())).collect()
        };
        let kinds = |slots: Vec<Option<TxSlot<VecTxQueue>>>| -> Vec<&str> {
            slots
                .iter()
                .map(|s| match s {
                    None => "none",
                    Some(TxSlot::Own(_)) => "own",
                    Some(TxSlot::Shared(_)) => "shared",
                })
                .collect()
        };
        assert_eq!(kinds(assign_tx_queues(q(2), 2)), ["own", "own"]);
        assert_eq!(kinds(assign_tx_queues(q(4), 2)), ["own", "own"]);
        assert_eq!(kinds(assign_tx_queues(q(1), 2)), ["shared", "shared"]);
        assert_eq!(
            kinds(assign_tx_queues(q(2), 3)),
            ["shared", "own", "shared"]
        );
        assert_eq!(kinds(assign_tx_queues(q(0), 2)), ["none", "none"]);
        // Workers 0 and 2 hold the very same queue.
        let slots = assign_tx_queues(q(2), 3);
        match (&slots[0], &slots[2]) {
            (Some(TxSlot::Shared(a)), Some(TxSlot::Shared(b))) => assert!(Arc::ptr_eq(a, b)),
            _ => panic!("workers 0 and 2 should share queue 0"),
        }
    }

    /// Two workers on two threads forward to port 1, whose one tx queue they
    /// share: every frame arrives exactly once and in each sender's order, the
    /// queue is never used by both at once, and the counters add up.
    #[test]
    fn two_workers_send_through_one_shared_queue() {
        const PER_WORKER: u64 = 20_000;
        let mut b = L2PipelineBuilder::new(1);
        b.port(PortIdx(0), "p0", GroupId(1))
            .port(PortIdx(1), "pod", GroupId(1))
            .port(PortIdx(2), "p2", GroupId(1))
            .mac(A, PortIdx(0))
            .mac(B, PortIdx(1))
            .mac(C, PortIdx(2));
        let cell = Arc::new(SnapshotCell::new(Pipeline::l2_only(b.build().unwrap())));
        let out = Ring::new();
        let busy = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(SharedTxQueue::new(ExclusiveTxQueue {
            inner: VecTxQueue::new(out.clone()),
            busy: Arc::clone(&busy),
            overlaps: Arc::clone(&overlaps),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        let mut inputs = Vec::new();
        for (w, (port, src)) in [(0u16, A), (2, C)].into_iter().enumerate() {
            let rx = Ring::new();
            inputs.push((rx.clone(), src));
            let (cmd_tx, cmd_rx) = crossbeam::channel::unbounded();
            cmd_tx
                .send(WorkerCommand::AddPort {
                    port: PortIdx(1),
                    rx: Vec::new(),
                    tx: Some(TxSlot::Shared(Arc::clone(&shared))),
                })
                .unwrap();
            let worker: Worker<VecRxQueue, ExclusiveTxQueue, VecAlloc> = Worker::new(
                WorkerId(w as u16),
                vec![(PortIdx(port), VecRxQueue::new(rx))],
                vec![None, None, None],
                VecAlloc::unlimited(),
                Arc::clone(&cell),
                IdleBackoff::busy_poll(),
                Arc::clone(&stop),
            )
            .unwrap()
            .with_commands(cmd_rx);
            handles.push(worker.stats_handle());
            threads.push(std::thread::spawn(move || worker.run()));
        }
        // Frames go in only once both workers poll, a burst's worth to each in
        // turn, so their sending overlaps however late a thread was started.
        let deadline = Instant::now() + Duration::from_secs(60);
        while handles.iter().any(|h| h.heartbeat() == 0) {
            assert!(Instant::now() < deadline, "workers did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        for first in (0..PER_WORKER).step_by(BURST) {
            for (rx, src) in &inputs {
                for seq in first..(first + BURST as u64).min(PER_WORKER) {
                    rx.push(numbered(*src, seq));
                }
            }
        }
        while out.len() < 2 * PER_WORKER as usize {
            assert!(Instant::now() < deadline, "only {} frames out", out.len());
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Release);
        let stats: Vec<StatsSnapshot> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        drop(handles);

        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "queue used by two at once"
        );
        let frames = out.take_all();
        assert_eq!(frames.len(), 2 * PER_WORKER as usize, "no extra frames");
        let mut next: HashMap<[u8; 6], u64> = HashMap::new();
        for f in &frames {
            let d = f.data();
            let src: [u8; 6] = d[6..12].try_into().unwrap();
            let seq = u64::from_be_bytes(d[14..22].try_into().unwrap());
            let want = next.entry(src).or_insert(0);
            assert_eq!(seq, *want, "frame from {src:?} out of order or repeated");
            *want += 1;
        }
        assert_eq!(next.get(&A.0), Some(&PER_WORKER));
        assert_eq!(next.get(&C.0), Some(&PER_WORKER));
        for s in &stats {
            assert_eq!(s.rx_packets(), PER_WORKER, "{s:#?}");
            assert_eq!(s.port(PortIdx(1)).tx_packets, PER_WORKER, "{s:#?}");
            assert_eq!(s.total_drops(), 0, "{s:#?}");
            assert!(s.tx_lock_contended <= s.tx_bursts, "{s:#?}");
        }
        // Each burst holds the queue for 100 µs while the other worker is
        // sending too, so that one finds it held.
        let contended: u64 = stats.iter().map(|s| s.tx_lock_contended).sum();
        assert!(
            contended > 0,
            "no burst ever found the queue held: {stats:#?}"
        );
        assert_eq!(busy.load(Ordering::SeqCst), 0);
    }
}
