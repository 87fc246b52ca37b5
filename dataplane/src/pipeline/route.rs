//! The route stage: a frame sent to its network's gateway MAC is routed through
//! the distributed gateway — the gateway's own addresses answered (echo), the
//! longest-prefix match in the tenant's VRF and the host behind a connected route
//! (kept per destination in the worker's route cache), the MACs rewritten and the
//! TTL or hop limit decremented with an incremental checksum, and TTL expiry
//! answered with ICMP time exceeded. Its drops: `not_routable`, `to_gateway`,
//! `ttl_expired`, `no_route`, `blackhole` (and `unknown_destination` for a
//! connected route without the host, `tunnel_hairpin` for a routed tunnel frame
//! whose destination is behind another VTEP).

use std::net::IpAddr;
use std::ops::ControlFlow;

use super::packet::{Next, PacketCtx};
use super::reply;
use super::scratch::{RouteCache, Routed, RoutedMacs};
use super::trace::{self, TraceNames, Tracer};
use super::{Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::overlay::{L2Dest, NetworkId, RouteResult};
use crate::port::PortIdx;
use crate::wire::{self, L3Kind, PacketMeta};

/// ICMP and ICMPv6 echo request types.
const ICMP4_ECHO_REQUEST: u8 = 8;
const ICMP6_ECHO_REQUEST: u8 = 128;

/// The stage: routes the frame when the L2 stage found it sent to the gateway.
#[inline(always)]
pub(super) fn run<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    pc: &mut PacketCtx<'_, '_>,
    pkt: &mut B,
    routes: &mut RouteCache,
    t: &mut T,
) -> ControlFlow<Verdict> {
    if pc.next != Next::Route {
        return ControlFlow::Continue(());
    }
    let Some((net, _)) = pc.net else {
        return ControlFlow::Break(Verdict::Drop(DropReason::UnknownNetwork));
    };
    let in_port = pc.in_port();
    let meta = match pc.meta(pkt, &p.parse) {
        Ok(m) => m,
        Err(r) => return ControlFlow::Break(Verdict::Drop(r)),
    };
    match route(p, net, in_port, pkt, meta, routes, t) {
        Ok((next, dst_net, macs)) => {
            let ipv4 = meta.l3 == L3Kind::Ipv4;
            pc.next = next;
            match (ipv4, p.overlay.network(net)) {
                (true, Some(info)) => {
                    pc.compiled.routed = Some(macs.0);
                    pc.compiled.routed_into = Some((dst_net, info.vrf));
                }
                // The action decrements an IPv4 TTL only.
                _ => pc.compiled.uncacheable = true,
            }
            ControlFlow::Continue(())
        }
        Err(v) => ControlFlow::Break(v),
    }
}

/// Routes a frame sent to the gateway MAC of `net`; `meta` is updated to the
/// routed frame (MACs, TTL). `Ok` with where the routed frame goes, the network
/// it was routed into and its new MACs, or `Err` with the verdict that ends it
/// (a drop, or a reply made in place).
fn route<B: PacketBuf, T: Tracer>(
    p: &Pipeline,
    net: NetworkId,
    in_port: PortIdx,
    pkt: &mut B,
    meta: &mut PacketMeta,
    routes: &mut RouteCache,
    t: &mut T,
) -> Result<(Next, NetworkId, RoutedMacs), Verdict> {
    if !matches!(meta.l3, L3Kind::Ipv4 | L3Kind::Ipv6) {
        if T::ON {
            t.record(trace::Record::Route(Record {
                net,
                dst: None,
                routed: Routed::Drop(DropReason::NotRoutable),
            }));
        }
        return Err(Verdict::Drop(DropReason::NotRoutable));
    }
    let ipv6 = meta.l3 == L3Kind::Ipv6;
    let key = if ipv6 {
        u128::from_be_bytes(meta.dst_ip)
    } else {
        u128::from(u32::from_be_bytes([
            meta.dst_ip[0],
            meta.dst_ip[1],
            meta.dst_ip[2],
            meta.dst_ip[3],
        ]))
    };
    let routed = match routes.get(net, key, ipv6) {
        Some(r) => r,
        None => {
            let r = match meta.dst_addr() {
                Some(dst) => resolve(p, net, dst),
                None => Routed::Drop(DropReason::NotRoutable),
            };
            routes.put(net, key, ipv6, r);
            r
        }
    };
    if T::ON {
        t.record(trace::Record::Route(Record {
            net,
            dst: meta.dst_addr(),
            routed,
        }));
    }
    let (dst_net, macs, dest) = match routed {
        Routed::Forward {
            dst_net,
            macs,
            dest,
        } => (dst_net, macs, dest),
        Routed::Drop(reason) => return Err(Verdict::Drop(reason)),
        Routed::ToGateway if p.overlay.underlay().map(|u| u.uplink) == Some(in_port) => {
            // Arrived by tunnel: the sender's own switch answers for the distributed
            // gateway; a reply from here would leave on the underlay unencapsulated.
            return Err(Verdict::Drop(DropReason::ToGateway));
        }
        Routed::ToGateway => {
            // Ping the gateway: answered, as any router would.
            let echo = match meta.l3 {
                L3Kind::Ipv4 => {
                    meta.l4_proto == wire::IPPROTO_ICMP && meta.icmp_type == ICMP4_ECHO_REQUEST
                }
                _ => meta.l4_proto == wire::IPPROTO_ICMPV6 && meta.icmp_type == ICMP6_ECHO_REQUEST,
            };
            if let Some(info) = p.overlay.network(net) {
                if echo && reply::echo_reply_in_place(pkt, meta, info.gateway_mac) {
                    return Err(Verdict::Output(in_port));
                }
            }
            return Err(Verdict::Drop(DropReason::ToGateway));
        }
    };
    if meta.ttl <= 1 {
        return Err(icmp_error(
            p,
            net,
            in_port,
            pkt,
            meta,
            reply::IcmpError::TimeExceeded,
            DropReason::TtlExpired,
        ));
    }
    // (`resolve` forwards only into networks the snapshot has.)
    let l3 = usize::from(meta.l3_offset);
    if rewrite_routed(pkt.data_mut(), l3, ipv6, &macs).is_none() {
        return Err(Verdict::Drop(DropReason::Malformed));
    }
    meta.dst_mac = macs.dst();
    meta.src_mac = macs.src();
    meta.ttl -= 1;
    match dest {
        L2Dest::Local(port) => Ok((Next::Port(port), dst_net, macs)),
        L2Dest::Remote(_) if p.overlay.underlay().map(|u| u.uplink) == Some(in_port) => {
            Err(Verdict::Drop(DropReason::TunnelHairpin))
        }
        L2Dest::Remote(vtep) => Ok((Next::Remote { net: dst_net, vtep }, dst_net, macs)),
    }
}

/// The route stage's trace record: the routing decision for the destination.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    net: NetworkId,
    dst: Option<IpAddr>,
    routed: Routed,
}

impl Record {
    pub(super) fn describe(&self, p: &Pipeline, names: &TraceNames) -> String {
        let ov = &p.overlay;
        let vrf = ov
            .network(self.net)
            .and_then(|n| ov.vrf_name(n.vrf))
            .unwrap_or("?");
        let dst = self
            .dst
            .map(|d| d.to_string())
            .unwrap_or_else(|| "no IP destination".into());
        let to = match self.routed {
            Routed::ToGateway => "the gateway itself".to_owned(),
            Routed::Drop(r) => format!("dropped: {r}"),
            Routed::Forward {
                dst_net,
                macs,
                dest,
            } => format!(
                "network {:?}, {} at {}",
                ov.network(dst_net).map(|n| &*n.name).unwrap_or("?"),
                macs.dst(),
                match dest {
                    L2Dest::Local(port) => format!("local port {}", names.port(port)),
                    L2Dest::Remote(v) => match ov.vtep(v) {
                        Some(v) => format!("remote VTEP {}", v.ip),
                        None => "remote VTEP ?".into(),
                    },
                }
            ),
        };
        format!("vrf {vrf:?}, {dst} -> {to}")
    }
}

/// Rewrites a routed frame in place: its Ethernet addresses become `macs`, and the
/// TTL (IPv4, incremental checksum) or hop limit (IPv6) of the IP header at `l3`
/// one less. `None`, with nothing changed, if the IPv4 header is short or its TTL
/// is zero.
#[inline]
pub(super) fn rewrite_routed(
    data: &mut [u8],
    l3: usize,
    ipv6: bool,
    macs: &RoutedMacs,
) -> Option<()> {
    if ipv6 {
        let hop = data.get_mut(l3 + 7)?;
        *hop = hop.saturating_sub(1);
    } else {
        wire::checksum::ipv4_decrement_ttl(data.get_mut(l3..)?)?;
    }
    data[0..12].copy_from_slice(&macs.0);
    Some(())
}

/// The routing decision for an IP packet from network `net`, from the snapshot's
/// tables: the gateway check, the LPM in the network's VRF, and for a connected
/// route the host behind it. Depends only on the snapshot, `net` and the
/// destination, so [`RouteCache`] may keep it.
#[cold]
pub(super) fn resolve(p: &Pipeline, net: NetworkId, dst: IpAddr) -> Routed {
    if p.overlay.is_gateway(net, dst) {
        return Routed::ToGateway;
    }
    let Some(vrf) = p.overlay.network(net).map(|n| n.vrf) else {
        return Routed::Drop(DropReason::UnknownNetwork);
    };
    let (dst_net, mac, dest) = match p.overlay.route(vrf, dst) {
        None => return Routed::Drop(DropReason::NoRoute),
        Some(RouteResult::Blackhole) => return Routed::Drop(DropReason::Blackhole),
        Some(RouteResult::Connected(dn)) => match p.overlay.host_lookup(dn, dst) {
            Some((mac, dest)) => (dn, mac, dest),
            None => return Routed::Drop(DropReason::UnknownDestination),
        },
        Some(RouteResult::NextHop { network, mac, dest }) => (network, mac, dest),
    };
    // A route into a network the snapshot does not describe (never in one the
    // control plane builds) leads nowhere.
    let Some(dst_info) = p.overlay.network(dst_net) else {
        return Routed::Drop(DropReason::UnknownNetwork);
    };
    Routed::Forward {
        dst_net,
        macs: RoutedMacs::new(mac, dst_info.gateway_mac),
        dest,
    }
}

/// Answers the sender of `meta` with an ICMP error from `net`'s gateway address.
#[cold]
pub(super) fn icmp_error<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    in_port: PortIdx,
    pkt: &mut B,
    meta: &PacketMeta,
    kind: reply::IcmpError,
    reason: DropReason,
) -> Verdict {
    let Some(info) = p.overlay.network(net) else {
        return Verdict::Drop(reason);
    };
    if p.overlay.underlay().map(|u| u.uplink) == Some(in_port) {
        // Arrived by tunnel: the sender is behind another switch, which answers.
        return Verdict::Drop(reason);
    }
    let ok = match meta.l3 {
        L3Kind::Ipv4 => info
            .gateway_v4
            .is_some_and(|gw| reply::icmp4_error_in_place(pkt, meta, kind, gw, info.gateway_mac)),
        L3Kind::Ipv6 => info
            .gateway_v6
            .is_some_and(|gw| reply::icmp6_error_in_place(pkt, meta, kind, gw, info.gateway_mac)),
        _ => false,
    };
    if ok {
        Verdict::Reply {
            out: in_port,
            reason,
        }
    } else {
        Verdict::Drop(reason)
    }
}
