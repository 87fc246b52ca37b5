//! The decap stage, on the uplink: a tunnel packet to this VTEP's address has its
//! VNI mapped to a network and its outer headers (and any Ethernet padding after
//! the UDP payload) stripped; the inner frame goes on to the stages in that
//! network, marked as come out of a tunnel. The underlay's own ARP/ND goes on to
//! the responder as it is. The inner headers are not parsed here: switching the
//! inner frame needs only its destination MAC, and the route stage parses them
//! when it needs them. Its drops: `underlay_not_for_us`, `geneve_oam`,
//! `unknown_vni`, `encap_mismatch`, and the parse's `geneve_unknown_critical` and
//! `vxlan_no_vni_flag`.

use std::net::IpAddr;
use std::ops::ControlFlow;

use super::packet::PacketCtx;
use super::respond::{ND_NA, ND_NS};
use super::trace::{self, Tracer};
use super::{IngressKind, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::ethernet::MacAddr;
use crate::overlay::{Encap, NetworkId};
use crate::wire::{self, L3Kind, TunnelKind};

/// The stage (see the module docs).
#[inline(always)]
pub(super) fn run<'p, B: PacketBuf, T: Tracer>(
    p: &'p Pipeline,
    pc: &mut PacketCtx<'p, '_>,
    pkt: &mut B,
    t: &mut T,
) -> ControlFlow<Verdict> {
    let IngressKind::Uplink = pc.kind() else {
        return ControlFlow::Continue(());
    };
    let stop = |r: DropReason| ControlFlow::Break(Verdict::Drop(r));
    let Some(u) = p.overlay.underlay() else {
        return stop(DropReason::UnknownNetwork);
    };
    let meta = pc.outer();
    let control = match (meta.l3, u.local_vtep_ip) {
        (L3Kind::Arp, IpAddr::V4(_)) => true,
        (L3Kind::Ipv6, IpAddr::V6(_)) => {
            meta.l4_proto == wire::IPPROTO_ICMPV6 && matches!(meta.icmp_type, ND_NS | ND_NA)
        }
        _ => false,
    };
    if control {
        pc.underlay_control = true;
        return ControlFlow::Continue(());
    }
    if meta.tunnel == TunnelKind::None || meta.dst_addr() != Some(u.local_vtep_ip) {
        return stop(DropReason::UnderlayNotForUs);
    }
    // RFC 8926 §3.4: an OAM packet's payload is never forwarded as data, whatever
    // its VNI. The switch has no OAM protocol to hand it to, so it is counted here;
    // `vswitchctl capture` on the uplink still sees it (capture is before the
    // pipeline).
    if meta.tunnel == TunnelKind::Geneve && meta.tunnel_flags & wire::geneve::FLAG_O != 0 {
        if T::ON {
            t.record(trace::Record::Decap(Record::Oam { vni: meta.vni }));
        }
        return stop(DropReason::GeneveOam);
    }
    let found = p
        .overlay
        .network_by_vni(meta.vni)
        .and_then(|net| p.overlay.network(net).map(|info| (net, info)));
    if T::ON {
        t.record(trace::Record::Decap(Record::Tunnel {
            kind: meta.tunnel,
            vni: meta.vni,
            net: found.map(|(net, _)| net),
        }));
    }
    let Some((net, info)) = found else {
        return stop(DropReason::UnknownVni);
    };
    let expected = match info.encap {
        Encap::Vxlan => TunnelKind::Vxlan,
        Encap::Geneve => TunnelKind::Geneve,
    };
    if meta.tunnel != expected || meta.inner_protocol != wire::ETHERTYPE_TEB {
        return stop(DropReason::EncapMismatch);
    }
    // Strip the outer headers and any Ethernet padding after the UDP payload.
    let (inner_offset, inner_end) = (usize::from(meta.inner_offset), usize::from(meta.inner_end));
    let tail = pkt.len() - inner_end;
    if pkt.trim(tail).is_none() || pkt.adj(inner_offset).is_none() {
        return stop(DropReason::Malformed);
    }
    // Switching the inner frame needs only its destination MAC, as a bridge would;
    // the inner headers are parsed when the frame is routed. (Parsing them for
    // every decapsulated frame cost about a sixth of the decap path.)
    let (true, Some(dst_bits)) = (
        pkt.len() >= crate::ethernet::HEADER_LEN,
        MacAddr::dst_bits(pkt.data()),
    ) else {
        return stop(DropReason::Malformed);
    };
    pc.net = Some((net, info));
    pc.from_tunnel = true;
    pc.compiled.popped = Some(inner_offset);
    pc.dst_bits = dst_bits;
    ControlFlow::Continue(())
}

/// The decap stage's trace record.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Record {
    /// A Geneve OAM packet: not data.
    Oam { vni: u32 },
    /// A tunnel packet and the network of its VNI, if any.
    Tunnel {
        kind: TunnelKind,
        vni: u32,
        net: Option<NetworkId>,
    },
}

impl Record {
    pub(super) fn describe(&self, p: &Pipeline) -> String {
        match *self {
            Record::Oam { vni } => {
                format!("Geneve OAM (O bit), VNI {vni}: a control message, not forwarded as data")
            }
            Record::Tunnel { kind, vni, net } => format!(
                "{kind:?} VNI {vni} -> network {}",
                net.and_then(|n| p.overlay.network(n))
                    .map(|n| format!("{:?}", n.name))
                    .unwrap_or_else(|| "none".into())
            ),
        }
    }
}
