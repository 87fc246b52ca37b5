//! Service load balancing: the LB stage, and the tables it reads.
//!
//! # The stage
//! It runs after conntrack and acts on tracked packets only (a network with a
//! service is tracked whatever its `conntrack` setting: a service needs its
//! connections remembered, see `conntrack::tracked`), by what conntrack found:
//!
//! * **A new connection** whose original tuple goes to a frontend of the
//!   packet's network ((network, address, port, protocol): the ClusterIP or
//!   an external IP, [`Services::frontend`]) takes the backend of the
//!   service's Maglev table ([`maglev`]) in the slot of its flow hash
//!   ([`flow_hash`]: the 5-tuple and the zone, with a fixed key, so every
//!   worker and every restart picks alike). Only active backends of non-zero
//!   weight hold slots: a draining one gets no new connection. The
//!   connection's reply tuple becomes (backend, target port → client), so
//!   the backend's answer is found in the table; the packet's destination is
//!   rewritten to the backend (`conntrack::nat`, incremental checksums).
//! * **A packet of an existing connection** (either direction, and an ICMP
//!   error about one) gets the translation its connection holds
//!   ([`ConntrackTable::nat_rewrite`](super::conntrack::ConntrackTable::nat_rewrite)):
//!   the backend picked at its start, whatever the table says now; a reply's
//!   source goes back to the frontend. A connection whose backend was
//!   removed from the service or set `down` is closed (its entry removed)
//!   and the packet dropped (`lb_backend_gone`): `down` means the backend
//!   does not serve, so its connections end now rather than at their
//!   timeout; UDP's next packet then picks a live backend, TCP's next
//!   segment (no SYN) is refused by conntrack and the client's stack
//!   reports the failure. A `draining` backend keeps its connections.
//!
//! Its drops: `lb_no_backend`, `lb_backend_gone`, `lb_nat_clash`,
//! `lb_unsupported` (SCTP, whose CRC32c cannot be updated incrementally).
//! **ClientIP affinity** ([`affinity`]): a new connection of a client that got
//! a backend of the service within the timeout gets it again, while that
//! backend is active with a weight; else it picks by Maglev and is recorded.
//!
//! **Hairpin**: a backend whose connection to its own service picks itself
//! gets its source translated to the frontend too (the reply tuple comes
//! back to the frontend's address), as Cilium does: without it, the backend
//! would receive a packet from its own address, which its stack drops. Both
//! sides change, which the flow table's one-sided rewrite does not replay:
//! such connections stay on the stages.
//!
//! Not handled yet: NodePort (its map is built, nothing reads it).
//!
//! # On the flow table
//! The first packet of each direction records its rewrite in
//! `pc.compiled.nat` ([`Nat`](super::flow::action::Nat): one side, the
//! checksum deltas computed once) with the service's id and version; the
//! entry also carries conntrack's hook. A hit replays the rewrite only
//! after `conntrack::hit_check` found the connection live with exactly that
//! translation and the service unchanged since: an expired, flushed or
//! re-opened connection, or a service write, sends the packet back here.

pub mod affinity;
pub mod maglev;
pub mod services;

pub use services::Services;

use std::net::IpAddr;
use std::ops::ControlFlow;

use super::conntrack::nat::{self, NatRewrite};
use super::conntrack::tuple::ct_hash;
use super::conntrack::{describe_tuple, CtEvent, CtHit, CtShard, CtTuple, Dir};
use super::flow::action::Nat;
use super::packet::PacketCtx;
use super::trace::{self, Tracer};
use super::{Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::wire::{L3Kind, PacketMeta};
use services::{Affinity, Protocol, ServiceId};

/// The key of [`flow_hash`]: fixed, so that the backend a tuple picks does not
/// depend on the worker or the run.
const FLOW_HASH_KEY: u64 = 0x6c62_2d6d_6167_6c65;

/// The hash a new connection of `tuple` in `zone` picks its Maglev slot by.
#[inline]
pub fn flow_hash(zone: u32, tuple: &CtTuple) -> u32 {
    (ct_hash(FLOW_HASH_KEY, zone, tuple) >> 32) as u32
}

/// The stage: one branch for a packet conntrack did not track.
#[inline(always)]
pub(super) fn run<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    ct: &mut CtShard,
    t: &mut T,
) -> ControlFlow<Verdict> {
    match pc.ct {
        Some(hit) => balance(p, pc, pkt, ct, hit, t),
        None => ControlFlow::Continue(()),
    }
}

#[inline(never)]
fn balance<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    ct: &mut CtShard,
    hit: CtHit,
    t: &mut T,
) -> ControlFlow<Verdict> {
    let Some((net, info)) = pc.net else {
        return ControlFlow::Continue(());
    };
    let Some(view) = ct.table().get(hit.handle) else {
        return ControlFlow::Continue(());
    };
    let orig = view.original;
    let decided = match hit.event {
        CtEvent::Redirect(_) => return ControlFlow::Continue(()),
        CtEvent::New => {
            let Some(proto) = Protocol::from_number(orig.proto) else {
                return ControlFlow::Continue(());
            };
            let Some(fe) = p.services.frontend(net, orig.dst_ip(), orig.dport, proto) else {
                return ControlFlow::Continue(());
            };
            pick(p, ct, hit, info.vni, &orig, fe)
        }
        CtEvent::Existing | CtEvent::Related => {
            let rw = ct.table().nat_rewrite(hit.handle, hit.dir);
            if rw.is_identity() {
                return ControlFlow::Continue(());
            }
            keep(p, net, &orig, &view.reply, rw)
        }
    };
    match decided {
        Ok((rw, svc, why)) => {
            let rec = if T::ON {
                Some(Record::Translated {
                    service: service_name(p, svc),
                    tuple: orig,
                    dir: hit.dir,
                    why,
                    rw,
                })
            } else {
                None
            };
            let related = hit.event == CtEvent::Related;
            let r = translate(p, pc, pkt, rw, svc, related);
            if T::ON {
                if let Some(rec) = rec {
                    t.record(trace::Record::Lb(rec));
                }
            }
            match r {
                Ok(()) => {
                    if hit.event == CtEvent::New {
                        ct.lb_new += 1;
                    }
                    ControlFlow::Continue(())
                }
                Err(reason) => {
                    if hit.event == CtEvent::New {
                        ct.remove(hit.handle);
                    }
                    ControlFlow::Break(Verdict::Drop(reason))
                }
            }
        }
        Err((svc, why, reason)) => {
            ct.remove(hit.handle);
            if T::ON {
                t.record(trace::Record::Lb(Record::Dropped {
                    service: service_name(p, svc),
                    tuple: orig,
                    why,
                    reason,
                }));
            }
            ControlFlow::Break(Verdict::Drop(reason))
        }
    }
}

/// Why a packet got the backend it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// A new connection, by the Maglev slot of its flow hash.
    Slot { slot: usize, backend: IpAddr },
    /// A new connection, to the backend its client got last (ClientIP
    /// affinity, within its timeout).
    Affinity { backend: IpAddr },
    /// A packet of an existing connection: the backend it started with.
    Existing { backend: IpAddr },
    /// The backend was removed from the service or set down.
    Gone { backend: IpAddr },
    /// Nothing to pick, or nothing the stage can translate.
    Refused,
}

type Decided = Result<(NatRewrite, ServiceId, Why), (ServiceId, Why, DropReason)>;

/// A new connection to frontend `fe`: the backend of its slot, and its reply
/// tuple set to come from there.
fn pick(
    p: &Pipeline,
    ct: &mut CtShard,
    hit: CtHit,
    zone: u32,
    orig: &CtTuple,
    fe: services::Frontend,
) -> Decided {
    let svc = fe.service;
    let refuse = |r| Err((svc, Why::Refused, r));
    let Some(s) = p.services.service(svc) else {
        return refuse(DropReason::LbNoBackend);
    };
    let Some(port) = s.spec.ports.get(usize::from(fe.port)) else {
        return refuse(DropReason::LbNoBackend);
    };
    if port.protocol == Protocol::Sctp {
        return refuse(DropReason::LbUnsupported);
    }
    let timeout_ms = match s.spec.affinity {
        Affinity::ClientIp { timeout_s } => Some(u64::from(timeout_s) * 1000),
        Affinity::None => None,
    };
    let now = ct.last_ms();
    // The client's last backend, while it still takes new connections.
    let kept = timeout_ms
        .and_then(|t| ct.affinity.get(svc, &orig.src, now, t))
        .and_then(|b| {
            let addr = CtTuple { src: b, ..*orig }.src_ip();
            s.backend(addr)
        })
        .filter(|b| b.state == maglev::BackendState::Active && b.weight > 0);
    let (b, why) = match kept {
        Some(b) => (b, Why::Affinity { backend: b.address }),
        None => {
            let table = &s.set.table;
            let slot = table.slot_of(flow_hash(zone, orig));
            let Some(b) = table
                .slots()
                .get(slot)
                .and_then(|&i| s.spec.backends.get(usize::from(i)))
            else {
                return refuse(DropReason::LbNoBackend);
            };
            let why = Why::Slot {
                slot,
                backend: b.address,
            };
            (b, why)
        }
    };
    if let Some(t) = timeout_ms {
        let to = CtTuple::new(b.address, 0, b.address, 0, 0).src;
        ct.affinity.put(svc, &orig.src, to, now, t);
    }
    // Hairpin: a backend reaching its own service and landing on itself
    // would see its own address as the source, which its stack drops; the
    // source is translated to the frontend (as Cilium does), and the answer
    // comes back to the frontend's address from the backend.
    let back_to = if b.address == orig.src_ip() {
        orig.dst_ip()
    } else {
        orig.src_ip()
    };
    let reply = CtTuple::new(b.address, port.target_port, back_to, orig.sport, orig.proto);
    let table = ct.table();
    if table.set_reply(hit.handle, reply).is_err() {
        return Err((svc, why, DropReason::LbNatClash));
    }
    let rw = table.nat_rewrite(hit.handle, Dir::Original);
    // The reply comes from the backend: a stub where its tuple hashes, sent
    // before this packet leaves (conntrack's module docs).
    ct.note_reply(zone, &reply);
    Ok((rw, svc, why))
}

/// A packet of an existing translated connection: its translation, while its
/// backend is still the service's and not down.
fn keep(
    p: &Pipeline,
    net: crate::overlay::NetworkId,
    orig: &CtTuple,
    reply: &CtTuple,
    rw: NatRewrite,
) -> Decided {
    let backend = reply.src_ip();
    let fe = Protocol::from_number(orig.proto)
        .and_then(|proto| p.services.frontend(net, orig.dst_ip(), orig.dport, proto));
    let Some(fe) = fe else {
        // The frontend is gone with its service: so is the backend.
        return Err((
            ServiceId(u32::MAX),
            Why::Gone { backend },
            DropReason::LbBackendGone,
        ));
    };
    let live = p
        .services
        .service(fe.service)
        .and_then(|s| s.backend(backend))
        .is_some_and(|b| b.state != maglev::BackendState::Down);
    if !live {
        return Err((fe.service, Why::Gone { backend }, DropReason::LbBackendGone));
    }
    Ok((rw, fe.service, Why::Existing { backend }))
}

/// Rewrites the packet, brings the parse up to date for the stages after
/// (route reads the destination), and records the flow's rewrite when the
/// action can replay it (IPv4 TCP/UDP, one side, not an ICMP error).
fn translate<B: PacketBuf>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    rw: NatRewrite,
    svc: ServiceId,
    related: bool,
) -> Result<(), DropReason> {
    let version = p.services.version(svc).unwrap_or(0);
    let meta = pc.meta(pkt, &p.parse)?;
    let l3 = usize::from(meta.l3_offset);
    let old = (meta.src_ip, meta.src_port, meta.dst_ip, meta.dst_port);
    let v4 = meta.l3 == L3Kind::Ipv4;
    nat::rewrite(pkt.data_mut(), l3, &rw).map_err(|_| DropReason::Malformed)?;
    refresh(meta, pkt.data());
    let record = match (rw.src, rw.dst) {
        _ if related || !v4 => None,
        (Some((IpAddr::V4(a), port)), None) => Some(Nat::new(
            Nat::SRC,
            (v4_of(&old.0), old.1),
            (a.octets(), port),
            svc.0 as u16,
            version,
        )),
        (None, Some((IpAddr::V4(a), port))) => Some(Nat::new(
            Nat::DST,
            (v4_of(&old.2), old.3),
            (a.octets(), port),
            svc.0 as u16,
            version,
        )),
        _ => None,
    };
    match record {
        Some(n) if svc.0 <= u32::from(u16::MAX) => pc.compiled.nat = Some(n),
        _ => pc.compiled.uncacheable = true,
    }
    Ok(())
}

fn v4_of(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

/// The addresses and ports of the parse, read again from the rewritten frame.
fn refresh(m: &mut PacketMeta, f: &[u8]) {
    let l3 = usize::from(m.l3_offset);
    let (at, n) = match m.l3 {
        L3Kind::Ipv4 => (l3 + 12, 4),
        L3Kind::Ipv6 => (l3 + 8, 16),
        _ => return,
    };
    if let (Some(s), Some(d)) = (f.get(at..at + n), f.get(at + n..at + 2 * n)) {
        m.src_ip[..n].copy_from_slice(s);
        m.dst_ip[..n].copy_from_slice(d);
    }
    let l4 = usize::from(m.l4_offset);
    if matches!(
        m.l4_proto,
        crate::wire::IPPROTO_TCP | crate::wire::IPPROTO_UDP
    ) && l4 != 0
    {
        if let Some(ports) = f.get(l4..l4 + 4) {
            m.src_port = u16::from_be_bytes([ports[0], ports[1]]);
            m.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        }
    }
}

fn service_name(p: &Pipeline, svc: ServiceId) -> String {
    p.services
        .service(svc)
        .map_or_else(|| "(removed)".to_string(), |s| s.spec.name.clone())
}

/// The stage's trace record.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    /// The packet was translated.
    Translated {
        service: String,
        tuple: CtTuple,
        dir: Dir,
        why: Why,
        rw: NatRewrite,
    },
    /// The packet was dropped.
    Dropped {
        service: String,
        tuple: CtTuple,
        why: Why,
        reason: DropReason,
    },
}

fn endpoint(e: Option<(IpAddr, u16)>) -> String {
    match e {
        Some((IpAddr::V4(a), p)) => format!("{a}:{p}"),
        Some((IpAddr::V6(a), p)) => format!("[{a}]:{p}"),
        None => "-".into(),
    }
}

impl Record {
    pub(crate) fn describe(&self) -> String {
        match self {
            Record::Translated {
                service,
                tuple,
                dir,
                why,
                rw,
            } => {
                let how = match why {
                    Why::Slot { slot, backend } => {
                        format!("new connection, backend {backend} by Maglev slot {slot}")
                    }
                    Why::Affinity { backend } => {
                        format!("new connection, backend {backend} by ClientIP affinity")
                    }
                    Why::Existing { backend } => {
                        format!("existing connection, backend {backend}")
                    }
                    Why::Gone { .. } | Why::Refused => String::new(),
                };
                let dir = match dir {
                    Dir::Original => "original",
                    Dir::Reply => "reply",
                };
                let side = match (rw.src, rw.dst) {
                    (Some(s), Some(d)) => format!(
                        "source -> {}, destination -> {} (hairpin)",
                        endpoint(Some(s)),
                        endpoint(Some(d))
                    ),
                    (Some(s), None) => format!("source -> {}", endpoint(Some(s))),
                    (None, d) => format!("destination -> {}", endpoint(d)),
                };
                format!(
                    "service {service:?} ({}): {how}, {dir} direction: {side}",
                    describe_tuple(tuple)
                )
            }
            Record::Dropped {
                service,
                tuple,
                why,
                reason,
            } => {
                let how = match why {
                    Why::Gone { backend } => {
                        format!("backend {backend} removed or down: connection closed")
                    }
                    _ => "no backend to translate to".to_string(),
                };
                format!(
                    "service {service:?} ({}): {how}: {reason}",
                    describe_tuple(tuple)
                )
            }
        }
    }
}
