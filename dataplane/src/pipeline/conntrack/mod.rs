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
//! This crate takes the shards. The handoff, as built:
//!
//! * **Where.** The conntrack stage reads the packet's tuple and, when
//!   [`CtShard::hand_to`] names another worker, ends the packet with
//!   [`Verdict::Handoff`] — before the table is touched, so the non-owner
//!   never creates an entry. A decapsulated frame gets its outer headers back
//!   (`adj` left them in the headroom) and the owner runs it from the start,
//!   as if it had received it on the same port: the ring carries the buffer
//!   and its ingress port, nothing the stages decided. A packet whose
//!   connection this shard holds stays, whatever the hash says (a DNAT'd
//!   reply received by its owner hashes to its stub's worker; this spares it
//!   the round trip), so a flow-table hit needs no owner check: an entry with
//!   the hook is installed only by the worker holding its connection, and a
//!   hit on another worker finds no connection in [`hit_check`] and takes
//!   the stages. A packet handed over by the hash installs a flow entry
//!   whose hook hands over (`flow::action::HOOK_HANDOFF`): a tuple's owner
//!   does not change while the workers do not, so the flow's next packets on
//!   this worker cost a lookup and an enqueue, not the stages
//!   (`bench/RESULTS.md`). One handed over by a stub installs an entry that
//!   checks the stub on each hit (`HOOK_REDIRECT`, [`stub_check`]: a stub
//!   goes with its connection, so the entry holds only while it does).
//! * **The rings** (`crate::handoff`): one bounded ring per ordered worker
//!   pair, allocated once; a full ring drops the packet as `ct_handoff_full`,
//!   never waits. The same ring carries the stubs' inserts and removals, so a
//!   worker's messages to a peer arrive in the order sent.
//! * **The owner** empties every ring right after each `rx_burst`, applying
//!   stubs at once and staging packets, processes its own burst, then
//!   forwards the staged packets with the shard's `handed` flag set (a packet
//!   handed by a stub hashes to the worker that had the stub, not to its
//!   owner, and must not bounce). It sends them on its own tx queue of the
//!   output port: every worker has one on every port (its own, or one shared
//!   under a lock when the port has fewer queues than workers, `io.rs`),
//!   so the packet never goes back to the receiving worker.
//! * **ClientIP affinity**: a packet to a frontend of a service with ClientIP
//!   affinity is owned by the worker its client's address hashes to, not
//!   its tuple ([`CtShard::hand_to_client`]): the LB stage's affinity record
//!   lives in one shard per client. Its reply tuple hashes as any other and
//!   meets the owner's stub. The flow entry that hands such a flow over
//!   holds while the service keeps its affinity; a service written from
//!   ClientIP to None leaves the entries of open flows handing to the
//!   client's worker, which tracks what it is handed (correct, one hop
//!   more), until the entry goes.
//! * **Counters**: `handed_off` per worker in `stats`, the metrics and
//!   `vswitchctl ct stats`; `ct list` leaves the stubs out unless asked for
//!   state `REDIRECT`.
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
//!   the stub was enqueued (the LB stage queues the stub in the shard, and the
//!   worker pushes it to the ring after the burst's verdicts and before its
//!   packets go to the tx batches). The test `two_workers` plays this on the
//!   table with two threads; `handoff_tests.rs` with two real workers.
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
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    ct: &mut CtShard,
    t: &mut T,
) -> ControlFlow<Verdict> {
    match pc.net {
        Some((net, info)) if tracked(p, net, info) => track(p, pc, pkt, ctx, ct, net, info, t),
        _ => ControlFlow::Continue(()),
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn track<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    ct: &mut CtShard,
    net: NetworkId,
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
    // The connection's tuple in the packet's direction (an ICMP error's is
    // the reverse of the one it quotes).
    let key = match packet.l4 {
        CtL4::IcmpError { quoted } => quoted.reversed(),
        _ => packet.tuple,
    };
    let now = ct.ms(ctx.now());
    let to = if ct.workers() > 1 && client_owned(p, net, &key) {
        ct.hand_to_client(zone, &key.src)
    } else {
        ct.hand_to(zone, &key)
    };
    if let Some(to) = to {
        // Unless this shard holds the connection: a DNAT'd reply hashes
        // elsewhere than its connection, and would otherwise go to the
        // worker of its stub and come back.
        if !ct.holds(zone, &key, now) {
            // The flow table may send the flow's next packets straight to
            // the owner: its tuple's owner does not change.
            pc.compiled.handoff = Some((to, false));
            return hand_over(pc, pkt, ct, zone, to, t);
        }
    }
    let (table, mut removed) = ct.table_reporting();
    let before = if T::ON {
        table
            .find_live(zone, &key, now)
            .and_then(|(h, _)| table.get(h))
            .map(|v| v.state)
    } else {
        None
    };
    let tracked = table.track_reporting(&packet, now, info.ct_window, &mut |v| removed.removed(v));
    match tracked {
        Ok(CtHit {
            event: CtEvent::Redirect(to),
            ..
        }) if ct.workers() > 1 => {
            // The flow's entry checks the stub on each hit (`stub_check`).
            pc.compiled.handoff = Some((to, true));
            hand_over(pc, pkt, ct, zone, to, t)
        }
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

/// Ends the packet with a handoff to worker `to`, as it was received: the
/// outer headers a decap stripped are put back (`adj` leaves them in the
/// buffer's headroom, untouched by the stages before this one), so the owner
/// runs it from the start like a packet of its own.
#[cold]
#[inline(never)]
fn hand_over<B: PacketBuf, T: Tracer>(
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    ct: &mut CtShard,
    zone: u32,
    to: u16,
    t: &mut T,
) -> ControlFlow<Verdict> {
    if let Some(n) = pc.compiled.popped {
        if pkt.prepend(n).is_none() {
            return ControlFlow::Break(Verdict::Drop(DropReason::Malformed));
        }
    }
    ct.handed_off += 1;
    if T::ON {
        t.record(trace::Record::Conntrack(Record::HandedOff { zone, to }));
    }
    ControlFlow::Break(Verdict::Handoff(to))
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

/// Whether the frame (its IPv4 frame at `at`), switched in network `net`,
/// still meets a redirect stub to worker `to` here: the check of a flow
/// entry with `HOOK_REDIRECT` before it hands the packet over (else the
/// stages decide: the stub went with its connection, or was replaced).
#[inline(never)]
pub(super) fn stub_check(
    p: &Pipeline,
    net: NetworkId,
    ct: &mut CtShard,
    frame: &[u8],
    at: usize,
    to: u16,
    ctx: &mut Ctx<'_>,
) -> bool {
    let Some(info) = p.overlay.network(net).filter(|i| tracked(p, net, i)) else {
        return false;
    };
    let Some(packet) = read::from_plain_ipv4(frame, at, info.vni) else {
        return false;
    };
    let now = ct.ms(ctx.now());
    ct.table().redirect_of(info.vni, &packet.tuple, now) == Some(to)
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

/// Whether a packet of `key` goes to a frontend of a service with ClientIP
/// affinity: its connection is then owned by the worker its client's address
/// hashes to, which keeps the client's affinity record (one record per
/// client, whichever worker receives its connections). The answers, whose
/// tuple hashes elsewhere, find it through a redirect stub like any DNAT'd
/// reply.
#[inline]
fn client_owned(p: &Pipeline, net: NetworkId, key: &CtTuple) -> bool {
    use super::lb::services::{Affinity, Protocol};
    let Some(proto) = Protocol::from_number(key.proto) else {
        return false;
    };
    p.services
        .frontend(net, key.dst_ip(), key.dport, proto)
        .and_then(|fe| p.services.service(fe.service))
        .is_some_and(|s| matches!(s.spec.affinity, Affinity::ClientIp { .. }))
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
    /// A packet handed to the worker owning its connection.
    HandedOff { zone: u32, to: u16 },
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
            Record::HandedOff { zone, to } => {
                format!("zone {zone}: the connection is worker {to}'s: handed over")
            }
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
