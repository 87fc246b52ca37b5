//! Connection tracking: the stage, the flow table's per-packet update, and the
//! tables they work on.
//!
//! # The stage
//! A network is tracked when its resource says `conntrack = true` (default
//! off: an untracked network pays one branch in the stage and nothing on the
//! flow table's hits), when it has a service ([`tracked`]: the LB stage
//! needs its connections), or when policy applies in it (the policy stage
//! keeps each connection's verdict in its entry). Its zone is its VNI; classic L2 ports have a zone of
//! their own ([`CLASSIC_ZONE`]) and no switch to track yet. Every IPv4/IPv6
//! TCP, UDP and ICMP echo packet of a tracked network finds or creates its
//! connection and runs the state machine ([`tcp`], with window tracking per
//! network, `conntrack_window_tracking`, default on); a refused packet is
//! dropped under its reason (`ct_invalid`, `ct_out_of_window`,
//! `ct_table_full`); an ICMP error quoting a tracked connection passes as
//! RELATED, one quoting nothing is `ct_invalid`. Fragments, other protocols
//! and ICMP that is neither echo nor error (ND, router discovery) pass
//! untracked, as the network's own plumbing. The stage writes what it found
//! into the packet context and its trace record ([`Record`]).
//!
//! A packet is tracked in the zone of the network it enters by, before
//! routing: a connection routed between two networks would meet two zones,
//! so the control plane keeps a tracked network alone in its tenant until
//! zones follow routing.
//!
//! # On the flow table
//! An entry installed for a packet of a tracked network carries the `hook`
//! flag of its action. A hit on such an entry calls [`hit_check`] before the
//! action writes a byte: the packet's tuple and TCP fields are read at fixed
//! offsets (the extractor's one frame shape) and the connection is found by
//! (zone, tuple) in the shard; it must be live and leave translated exactly
//! as the action translates it (its reply tuple, set by the LB stage's DNAT,
//! against the action's rewrite; identity for a connection without NAT),
//! and the service the rewrite was compiled for unchanged since. Else the
//! packet goes to the stages, unchanged: a connection expired or flushed,
//! one reopened on the same tuple to another backend, a SYN (which may open
//! or reopen one: the stages pick its backend), a service written since. So
//! a hit never applies a stale rewrite. After the action, [`hit_update`]
//! runs the state machine on the connection found, with no second lookup;
//! a refused packet is dropped under its reason there.
//!
//! The entry holds the flag, not a handle to the connection: a slot index
//! would need a check that the slot still holds that connection (the tuple
//! compare the chain walk does anyway) and four more bytes in every flow
//! entry; the lookup costs the hash of the tuple and one chain (one node on
//! average when full), about 60 instructions, beside the ~100 of reading the
//! segment and running the state machine (figures: `bench/RESULTS.md`, #25).
//! An ICMP error is never installed: its key does not hold the tuple it
//! quotes.
//!
//! # The tables
//! The pure cores the stage calls:
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
//! * [`shard`]: a worker's table with its clock, counters, list and flush;
//! * [`read`]: what is read of a frame.
//!
//! Expiry is the worker loop's: every 64 rounds, at most [`EXPIRE_BUDGET`]
//! connections (`worker.rs`).
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
//! This crate takes the shards. **The handoff is not built yet**: until it
//! is, the control plane refuses a tracked network when more than one worker
//! runs (the two directions of a connection could reach two shards, and the
//! second would drop as `ct_invalid` what the first accepted).
//!
//! Under NAT the reply tuple is the translated
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
mod read;
pub mod shard;
pub mod snat;
pub mod table;
pub mod tcp;
pub mod tuple;

#[cfg(test)]
mod tests;

pub use shard::{
    CtConfig, CtEntry, CtFilter, CtShard, CtStats, CLASSIC_ZONE, DEFAULT_CT_CAPACITY, EXPIRE_BUDGET,
};
pub use table::{
    ConntrackTable, CtConfigError, CtCounters, CtDrop, CtEvent, CtHandle, CtHit, CtL4, CtPacket,
    CtState, CtTimeouts, CtView, Dir, ReplyInUse,
};
pub use tcp::{TcpSegment, TcpState};
pub use tuple::CtTuple;

use std::ops::ControlFlow;

use super::packet::PacketCtx;
use super::trace::{self, Tracer};
use super::{Ctx, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::overlay::{NetworkId, NetworkInfo};
use read::Read;

/// The stage (see the module docs): one branch for an untracked network.
#[inline(always)]
pub(super) fn run<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &B,
    ctx: &mut Ctx<'_>,
    ct: &mut CtShard,
    t: &mut T,
) -> ControlFlow<Verdict> {
    match pc.net {
        Some((net, info)) if tracked(p, net, info) => track(p, pc, pkt, ctx, ct, info, t),
        _ => ControlFlow::Continue(()),
    }
}

#[inline(never)]
fn track<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &B,
    ctx: &mut Ctx<'_>,
    ct: &mut CtShard,
    info: &NetworkInfo,
    t: &mut T,
) -> ControlFlow<Verdict> {
    let zone = info.vni;
    let read = match pc.meta(pkt, &p.parse) {
        Ok(m) => read::from_meta(pkt.data(), m, zone),
        Err(r) => return ControlFlow::Break(Verdict::Drop(r)),
    };
    // Installed with the hook whatever the packet: a hit re-reads it and
    // leaves alone what this stage leaves alone.
    pc.compiled.tracked = true;
    let packet = match read {
        Read::Track(packet) => packet,
        Read::Untracked(why) => {
            if T::ON {
                t.record(trace::Record::Conntrack(Record::Untracked { zone, why }));
            }
            return ControlFlow::Continue(());
        }
        Read::Invalid => {
            ct.invalid += 1;
            if T::ON {
                t.record(trace::Record::Conntrack(Record::Unreadable { zone }));
            }
            return ControlFlow::Break(Verdict::Drop(DropReason::CtInvalid));
        }
    };
    let now = ct.ms(ctx.now());
    let table = ct.table();
    let before = if T::ON {
        let key = match packet.l4 {
            CtL4::IcmpError { quoted } => quoted.reversed(),
            _ => packet.tuple,
        };
        table
            .find_live(zone, &key, now)
            .and_then(|(h, _)| table.get(h))
            .map(|v| v.state)
    } else {
        None
    };
    match table.track(&packet, now, info.ct_window) {
        Ok(hit) => {
            if hit.event == CtEvent::Related {
                // The key of an ICMP error does not hold the tuple it quotes.
                pc.compiled.uncacheable = true;
            }
            pc.ct = Some(hit);
            if T::ON {
                t.record(trace::Record::Conntrack(Record::Tracked {
                    zone,
                    tuple: packet.tuple,
                    hit,
                    before,
                    window: info.ct_window,
                }));
            }
            ControlFlow::Continue(())
        }
        Err(drop) => {
            ct.invalid += 1;
            if T::ON {
                t.record(trace::Record::Conntrack(Record::Refused {
                    zone,
                    tuple: packet.tuple,
                    before,
                    drop,
                }));
            }
            ControlFlow::Break(Verdict::Drop(drop.reason()))
        }
    }
}

/// What a flow-table hit found of its connection: what [`hit_update`] needs
/// after the action, with no second lookup.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found {
    handle: CtHandle,
    dir: Dir,
    packet: CtPacket,
    window: bool,
    now: u64,
}

/// The check of a flow table hit whose entry carries the hook (see the
/// module docs), on the frame as it came in (its IPv4 frame at `at`),
/// switched in network `net`, before the action writes a byte. `Err`: the
/// entry does not hold for this packet, which goes to the stages unchanged:
///
/// * the action rewrites for a service (`nat`) that was written since it
///   was compiled (a backend removed, set down or draining: the LB stage
///   decides again);
/// * a TCP segment that may open a connection (a SYN: a new connection, or
///   one reopened in TIME_WAIT, takes the stages, which pick its backend);
/// * no live connection (expired, flushed): the stages open one or refuse
///   the packet;
/// * the connection's translation for the packet's direction is not the
///   action's (a connection of the same tuple opened since, to another
///   backend or none): the action would apply a stale rewrite;
/// * the connection was allowed by another policy than the snapshot's, in
///   a network that re-evaluates on a policy change (`policy/mod.rs`): the
///   policy stage classifies it again.
///
/// `Ok(None)`: a packet conntrack leaves alone; `Ok(Some)`: the connection,
/// for [`hit_update`].
#[inline(never)]
pub(super) fn hit_check(
    p: &Pipeline,
    net: NetworkId,
    ct: &mut CtShard,
    frame: &[u8],
    at: usize,
    nat: &super::flow::action::Nat,
    ctx: &mut Ctx<'_>,
) -> Result<Option<Found>, ()> {
    if nat.side != 0
        && p.services
            .version(super::lb::services::ServiceId(u32::from(nat.svc)))
            != Some(nat.version)
    {
        return Err(());
    }
    let Some(info) = p.overlay.network(net).filter(|i| tracked(p, net, i)) else {
        return if nat.side == 0 { Ok(None) } else { Err(()) };
    };
    let Some(packet) = read::from_plain_ipv4(frame, at, info.vni) else {
        return if nat.side == 0 { Ok(None) } else { Err(()) };
    };
    if let CtL4::Tcp(seg) = packet.l4 {
        if tcp::opens(&seg) {
            return Err(());
        }
    }
    let now = ct.ms(ctx.now());
    let table = ct.table();
    let (handle, dir) = table.find_live(info.vni, &packet.tuple, now).ok_or(())?;
    let mut leaves = packet.tuple;
    if nat.side != 0 {
        nat.translate(&mut leaves);
    }
    if !table.leaves_as(handle, dir, &leaves) {
        return Err(());
    }
    if p.policed(net)
        && info.policy_on_change == super::policy::OnChange::Reevaluate
        && table.policy_stamp(handle) != p.policy.stamp()
    {
        return Err(());
    }
    Ok(Some(Found {
        handle,
        dir,
        packet,
        window: info.ct_window,
        now,
    }))
}

/// The per-packet update after a hit's action: the state machine on the
/// connection [`hit_check`] found. `Err` with the drop reason when conntrack
/// refuses the packet.
#[inline(never)]
pub(super) fn hit_update(ct: &mut CtShard, found: Option<Found>) -> Result<(), DropReason> {
    let Some(f) = found else {
        return Ok(());
    };
    match ct
        .table()
        .track_found(f.handle, f.dir, &f.packet, f.now, f.window)
    {
        Ok(_) => Ok(()),
        Err(drop) => {
            ct.invalid += 1;
            Err(drop.reason())
        }
    }
}

/// Whether network `net` is tracked: it asks for it, it has a service (the
/// LB stage needs its connections), or policy applies in it (the policy
/// stage keeps its verdicts in them).
#[inline(always)]
pub(super) fn tracked(p: &Pipeline, net: NetworkId, info: &NetworkInfo) -> bool {
    info.conntrack || p.services.serves(net) || p.policed(net)
}

/// [`tracked`] by id, for the flow table's revalidation.
pub(super) fn tracked_id(p: &Pipeline, net: NetworkId) -> bool {
    p.overlay
        .network(net)
        .is_some_and(|info| tracked(p, net, info))
}

/// The stage's trace record.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    /// In a tracked network, a packet conntrack leaves alone.
    Untracked { zone: u32, why: &'static str },
    /// A packet that could not be read (an ICMP error quoting too little).
    Unreadable { zone: u32 },
    /// The connection found or created, and what the packet did to it.
    Tracked {
        zone: u32,
        tuple: CtTuple,
        hit: CtHit,
        before: Option<CtState>,
        window: bool,
    },
    /// A packet refused.
    Refused {
        zone: u32,
        tuple: CtTuple,
        before: Option<CtState>,
        drop: CtDrop,
    },
}

/// A tuple as `proto src:port > dst:port`.
pub fn describe_tuple(t: &CtTuple) -> String {
    let proto = match t.proto {
        crate::wire::IPPROTO_TCP => "tcp".to_string(),
        crate::wire::IPPROTO_UDP => "udp".to_string(),
        crate::wire::IPPROTO_ICMP => "icmp".to_string(),
        crate::wire::IPPROTO_ICMPV6 => "icmpv6".to_string(),
        n => n.to_string(),
    };
    let ep = |a: std::net::IpAddr, p: u16| match a {
        std::net::IpAddr::V4(a) => format!("{a}:{p}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{p}"),
    };
    format!(
        "{proto} {} > {}",
        ep(t.src_ip(), t.sport),
        ep(t.dst_ip(), t.dport)
    )
}

impl Record {
    pub(crate) fn describe(&self) -> String {
        let state = |s: Option<CtState>| s.map_or("none", CtState::name);
        match self {
            Record::Untracked { zone, why } => format!("zone {zone}: untracked ({why})"),
            Record::Unreadable { zone } => {
                format!("zone {zone}: an ICMP error quoting too little to match: invalid")
            }
            Record::Tracked {
                zone,
                tuple,
                hit,
                before,
                window,
            } => {
                let found = match hit.event {
                    CtEvent::New => "created",
                    CtEvent::Existing => "found",
                    CtEvent::Related => "related to",
                    CtEvent::Redirect(_) => "redirected",
                };
                let dir = match hit.dir {
                    Dir::Original => "original",
                    Dir::Reply => "reply",
                };
                format!(
                    "zone {zone}: {} {found}, {dir} direction, {} -> {}{}",
                    describe_tuple(tuple),
                    state(*before),
                    hit.state,
                    if *window {
                        ""
                    } else {
                        " (window not enforced)"
                    }
                )
            }
            Record::Refused {
                zone,
                tuple,
                before,
                drop,
            } => format!(
                "zone {zone}: {} refused in state {}: {}",
                describe_tuple(tuple),
                state(*before),
                drop.reason()
            ),
        }
    }
}
