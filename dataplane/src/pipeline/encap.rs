//! The encap stage: outer Ethernet, IP, UDP and VXLAN/Geneve headers pushed in
//! front of a frame for a remote VTEP (from the flow table's side table of
//! ready-made headers when it has one, recorded in the flow's action), or an ICMP "fragmentation needed"/"packet too big"
//! back to the pod when the frame would not fit the underlay. Its drops:
//! `mtu_exceeded`, `vtep_unreachable`, `neighbor_unresolved`, `no_headroom`.

use std::net::IpAddr;
use std::ops::ControlFlow;

use super::flow::template::Templates;
use super::flow::EncapRecord;
use super::packet::{Next, PacketCtx};
use super::reply;
use super::route;
use super::trace::{self, TraceNames, Tracer};
use super::{Ctx, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::overlay::{Encap, NetworkId, NetworkInfo, VtepIdx};
use crate::port::PortIdx;
use crate::snapshot::Versioned;
use crate::wire::{self, PacketMeta, TunnelKind};

/// The stage: a frame the forwarding stages sent to a remote VTEP is
/// encapsulated and goes to the uplink.
#[inline(always)]
pub(super) fn run<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    cache: &mut Templates,
    t: &mut T,
) -> ControlFlow<Verdict> {
    let Next::Remote { net, vtep } = pc.next else {
        return ControlFlow::Continue(());
    };
    let in_port = pc.in_port();
    let meta = match pc.meta(pkt, &p.parse) {
        Ok(m) => m,
        Err(r) => return ControlFlow::Break(Verdict::Drop(r)),
    };
    let (v, record) = encap(p, net, vtep, in_port, pkt, meta, ctx, cache);
    if T::ON {
        t.record(trace::Record::Encap(match v {
            Verdict::Drop(DropReason::NeighborUnresolved) => {
                Record::Unresolved(ctx.to_resolve.to_vec())
            }
            v => Record::Encap {
                net,
                vtep,
                verdict: v,
            },
        }));
    }
    match v {
        Verdict::Output(port) => {
            match record {
                Some(r) => pc.compiled.encap = Some(r),
                None => pc.compiled.uncacheable = true,
            }
            pc.next = Next::Port(port);
            ControlFlow::Continue(())
        }
        v => ControlFlow::Break(v),
    }
}

/// The encap stage's trace record.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    /// Encapsulated for `vtep` of `net`, or not, as `verdict` says.
    Encap {
        net: NetworkId,
        vtep: VtepIdx,
        verdict: Verdict,
    },
    /// The next hop towards the VTEP has no MAC yet: these addresses would be
    /// resolved.
    Unresolved(Vec<IpAddr>),
}

impl Record {
    pub(super) fn describe(&self, p: &Pipeline, names: &TraceNames) -> (&'static str, String) {
        match self {
            Record::Unresolved(ips) => (
                "underlay",
                format!("next hop {ips:?} unresolved: would send ARP/ND"),
            ),
            Record::Encap { net, vtep, verdict } => {
                let ov = &p.overlay;
                let vni = ov.network(*net).map(|n| n.vni).unwrap_or(0);
                let ip = ov
                    .vtep(*vtep)
                    .map(|v| v.ip.to_string())
                    .unwrap_or_else(|| "?".into());
                let what = match verdict {
                    Verdict::Output(port) => format!("out of {}", names.port(*port)),
                    Verdict::Reply { reason, .. } => format!("{reason}: answered the sender"),
                    Verdict::Drop(reason) => format!("{reason}"),
                    v => format!("{v:?}"),
                };
                ("encap", format!("VNI {vni} to VTEP {ip}: {what}"))
            }
        }
    }
}

/// The largest IP packet network `info` carries, if an IP packet of `ip_len` bytes
/// is bigger (it would not fit the underlay once encapsulated).
#[inline]
pub(super) fn too_big(info: &NetworkInfo, ip_len: usize) -> Option<u16> {
    info.mtu.filter(|&mtu| ip_len > usize::from(mtu))
}

/// Encapsulates towards `vtep` and sends to the uplink, or answers with an ICMP
/// error when the encapsulated frame would not fit the underlay. With the
/// verdict, the flow table's record of a header pushed from the side table.
#[allow(clippy::too_many_arguments)]
fn encap<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    vtep: VtepIdx,
    in_port: PortIdx,
    pkt: &mut B,
    meta: &PacketMeta,
    ctx: &mut Ctx<'_>,
    cache: &mut Templates,
) -> (Verdict, Option<EncapRecord>) {
    let Some(info) = p.overlay.network(net) else {
        return (Verdict::Drop(DropReason::UnknownNetwork), None);
    };
    let inner_ip_len = pkt.len().saturating_sub(usize::from(meta.l3_offset));
    if let Some(mtu) = too_big(info, inner_ip_len) {
        let kind = reply::IcmpError::TooBig(mtu);
        // IPv4 without DF may be fragmented by the sender's stack only, and a
        // switch does not fragment: it is dropped, still counted and answered.
        let v = route::icmp_error(p, net, in_port, pkt, meta, kind, DropReason::MtuExceeded);
        return (v, None);
    }
    let src_port = source_port(meta.flow_hash());
    let max_ip_len = info.mtu.unwrap_or(u16::MAX);
    let (v, tag) = encap_push(p, net, vtep, pkt, src_port, ctx, cache);
    let record = tag.map(|tag| EncapRecord {
        slot: Templates::slot(net, vtep) as u16,
        tag,
        src_port,
        max_ip_len,
    });
    (v, record)
}

/// Prepends the outer headers towards `vtep` (from the side table of templates
/// when it has them) and sends to the uplink; with the template's tag when one
/// was used.
#[inline]
fn encap_push<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    vtep: VtepIdx,
    pkt: &mut B,
    src_port: u16,
    ctx: &mut Ctx<'_>,
    cache: &mut Templates,
) -> (Verdict, Option<u32>) {
    let neighbors = ctx.neighbors.generation();
    if let Some(e) = cache.get(net, vtep, neighbors, p.overlay.changed_at(net)) {
        return if reply::push_cached(pkt, e, src_port) {
            (Verdict::Output(e.uplink), Some(e.tag))
        } else {
            (Verdict::Drop(DropReason::NoHeadroom), None)
        };
    }
    push_outer(p, net, vtep, pkt, src_port, ctx, Some(cache))
}

/// RFC 7348 §5: the outer source port carries entropy from the inner flow, from the
/// dynamic range, so the underlay's ECMP spreads flows but keeps each in order.
#[inline]
pub(super) fn source_port(flow_hash: u32) -> u16 {
    49152 | (flow_hash as u16 & 0x3fff)
}

/// Encapsulates a network-flood copy (no MTU answer: floods are broadcasts).
#[cold]
pub(super) fn encap_flood<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    vtep: VtepIdx,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
) -> Verdict {
    let hash = wire::parse_with(pkt.data(), &p.parse)
        .map(|m| m.flow_hash())
        .unwrap_or(0);
    push_outer(p, net, vtep, pkt, source_port(hash), ctx, None).0
}

/// Prepends Ethernet, IP, UDP and the tunnel header, and with `cache` keeps the
/// header for the next packet to (`net`, `vtep`), whose tag it returns.
fn push_outer<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    vtep: VtepIdx,
    pkt: &mut B,
    src_port: u16,
    ctx: &mut Ctx<'_>,
    cache: Option<&mut Templates>,
) -> (Verdict, Option<u32>) {
    let drop = |r| (Verdict::Drop(r), None);
    let (Some(info), Some(u), Some(v)) = (
        p.overlay.network(net),
        p.overlay.underlay(),
        p.overlay.vtep(vtep),
    ) else {
        return drop(DropReason::VtepUnreachable);
    };
    let Some(next_hop) = v.next_hop else {
        return drop(DropReason::VtepUnreachable);
    };
    let Some(next_mac) = ctx.neighbors.lookup(next_hop) else {
        let now = ctx.now();
        if ctx.limiter.should_request(next_hop, now) && !ctx.to_resolve.is_full() {
            ctx.to_resolve.push(next_hop);
        }
        return drop(DropReason::NeighborUnresolved);
    };
    let outer = reply::OuterHeaders {
        src_mac: u.local_mac,
        dst_mac: next_mac,
        src_ip: u.local_vtep_ip,
        dst_ip: v.ip,
        src_port,
        dst_port: match info.encap {
            Encap::Vxlan => wire::VXLAN_PORT,
            Encap::Geneve => wire::GENEVE_PORT,
        },
        tunnel: match info.encap {
            Encap::Vxlan => TunnelKind::Vxlan,
            Encap::Geneve => TunnelKind::Geneve,
        },
        vni: info.vni,
    };
    if let Some(cache) = cache {
        let neighbors = ctx.neighbors.generation();
        let stamp = p.overlay.generation();
        if let Some(e) = cache.fill(net, vtep, neighbors, stamp, u.uplink, &outer) {
            return if reply::push_cached(pkt, e, src_port) {
                (Verdict::Output(u.uplink), Some(e.tag))
            } else {
                drop(DropReason::NoHeadroom)
            };
        }
    }
    if reply::push_outer(pkt, &outer) {
        (Verdict::Output(u.uplink), None)
    } else {
        drop(DropReason::NoHeadroom)
    }
}
