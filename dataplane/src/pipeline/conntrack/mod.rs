//! Connection tracking: a stage slot, and the tables it will read.
//!
//! The stage itself is still an empty slot in the stage list: it passes every
//! packet on and compiles to nothing. The pure cores it will call are here and
//! tested, but **not yet called**:
//!
//! * [`table`]: the conntrack table of one worker — entries keyed by zone and
//!   5-tuple, found from both directions (after NAT from the translated reply),
//!   per-state timeouts with `O(expired)` expiry, a capacity with early drop;
//! * [`tcp`]: the TCP state machine and window tracking;
//! * [`nat`]: address/port rewrites of a frame with incremental checksums;
//! * [`snat`]: source-NAT port allocation;
//! * [`tuple`]: the tuple, its hash, and the symmetric hash that picks a
//!   connection's owner among the workers.
//!
//! Wiring them into the stage comes with the flow table, as a stage that reads
//! the packet context (the parsed 5-tuple, the network) and writes its decision
//! into it, with its trace record in `trace::Record`.
//!
//! # Several workers: a shard per worker, with handoff
//! The reply of a connection may arrive on another worker than its first packet:
//! ports without RSS (af_packet, tap) are polled by one worker whatever the flow,
//! and even with RSS the two directions of a NAT'd connection hash differently.
//! Two designs keep both directions on one entry:
//!
//! * **A shared table** (Linux, OVS-DPDK): one table, per-bucket locks for writes,
//!   RCU or seqlock reads. Every packet of every connection then touches shared
//!   cache lines: the state and the timestamp are written per packet, so the line
//!   of a busy connection bounces between the cores that see its two directions,
//!   and a write lock per packet is what OVS-DPDK's ~300k new connections per
//!   second under its conntrack lock come from. Lock-free reads are not possible
//!   in this crate's safe Rust without `unsafe` epochs.
//! * **A shard per worker with handoff** (VPP's NAT and conntrack handoff
//!   nodes, DPVS's redirect): each worker owns the connections whose
//!   [`tuple::owner`] it is — a symmetric hash of the tuple, the same for both
//!   directions — in a table no other thread touches, with no lock or atomic on
//!   the hot path. A packet that reaches another worker is passed to the owner
//!   over a ring (one per worker pair): the cost is one enqueue/dequeue for the
//!   packets that arrive on the wrong core (half of them with two workers and no
//!   RSS), paid only by those packets.
//!
//! This crate takes the shards. Under NAT the reply tuple is the translated
//! one, whose symmetric hash may name another worker. Two cases:
//!
//! * SNAT chooses the translated port: [`snat::PortPool::allocate`] takes a
//!   predicate, and the stage asks for a port whose reply tuple has the same
//!   owner (expected `n` tries for `n` workers, bounded, counted as
//!   `nat_no_port` when they run out);
//! * DNAT's backend is Maglev's choice and cannot bend: the owner leaves a
//!   **redirect stub** ([`table::ConntrackTable::insert_redirect`]) in the table
//!   of the worker the reply tuple hashes to, sent over the ring before the first
//!   packet is forwarded. A reply reaching that worker meets the stub and goes on
//!   to the owner ([`table::CtEvent::Redirect`]). The order is safe if a worker
//!   drains its rings *after* its `rx_burst` and before processing it: the reply
//!   cannot be received before the first packet was sent, which happened after
//!   the stub was enqueued. The test `two_workers` plays this with two threads.
//!
//! A stub costs one entry on the reply owner. It goes with the connection: the
//! table reports every entry it removes (`track_reporting`, `expire`), so the
//! owner can send the stub's removal over the ring and give a SNAT port back;
//! a stub whose removal was lost ends with its own timeout (the longest of the
//! states).
//!
//! What the shards cannot see: a translated reply tuple that is, at the same
//! time, a tuple of a connection owned by the worker the stub goes to (a client
//! reaching a backend directly and through the VIP from one source port). A
//! shared table would refuse the second connection at its start; here the stub
//! is refused and the existing connection kept.

pub mod nat;
pub mod snat;
pub mod table;
pub mod tcp;
pub mod tuple;

#[cfg(test)]
mod tests;

pub use table::{
    ConntrackTable, CtConfigError, CtCounters, CtDrop, CtEvent, CtHandle, CtHit, CtL4, CtPacket,
    CtState, CtTimeouts, CtView, Dir, ReplyInUse,
};
pub use tcp::{TcpSegment, TcpState};
pub use tuple::CtTuple;

use std::ops::ControlFlow;

use super::packet::PacketCtx;
use super::Verdict;

/// The stage: passes every packet on.
#[inline(always)]
pub(super) fn run(_pc: &mut PacketCtx<'_, '_>) -> ControlFlow<Verdict> {
    ControlFlow::Continue(())
}
