//! The fast paths: the common cases of pod and tunnel traffic decided from the
//! header fields at their fixed places, without a parse, before the stages run.
//!
//! Each returns `None` (or leaves its frame marked) for anything it does not
//! decide, and the stages of [`stages`](super::stages) then decide it; the
//! differential tests in `tests.rs` hold every answer here to theirs. They use
//! the stages' own pieces (the L2 switch of a decapsulated frame, the routing
//! decision and its rewrite, the encapsulation) and are to be replaced by a flow
//! cache that records what the stages decided for a flow's first packet.

use std::net::{IpAddr, Ipv4Addr};

use super::encap::{encap_push, source_port, too_big};
use super::l2::switch_from_tunnel;
use super::route::{resolve, rewrite_routed};
use super::scratch::{EncapCache, RouteCache, Routed, Scratch};
use super::{Ctx, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::densemap::DenseReader;
use crate::drop::DropReason;
use crate::ethernet::MacAddr;
use crate::overlay::{Encap, L2Dest, NetworkId, NetworkInfo};
use crate::port::PortIdx;
use crate::wire;

/// The bulk of pod traffic — an untagged IPv4 frame to a known unicast MAC other
/// than the gateway's — switched on its destination MAC without a parse, as a
/// bridge would: delivered to a local pod as it is, or encapsulated with the flow
/// hash read from its headers. `None` for everything else (ARP, IPv6 and its ND,
/// VLAN tags, the gateway, broadcast, unknown MACs, a frame too big for the
/// underlay): the full path parses and decides.
#[inline]
pub(super) fn from_local_fast<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    info: &NetworkInfo,
    in_port: PortIdx,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
) -> Option<Verdict> {
    let data = pkt.data();
    let dst_bits = MacAddr::dst_bits(data)?;
    if data.get(12..14)? != wire::ETHERTYPE_IPV4.to_be_bytes() {
        return None;
    }
    let dst = MacAddr::from_u64(dst_bits);
    if dst == info.gateway_mac {
        return route_fast(p, net, pkt, ctx, &mut s.encap, &mut s.routes);
    }
    if dst.is_multicast() {
        return None;
    }
    match p.overlay.l2_lookup_bits(net, dst_bits)? {
        L2Dest::Local(port) if port == in_port => Some(Verdict::Drop(DropReason::Hairpin)),
        L2Dest::Local(port) => Some(Verdict::Output(port)),
        L2Dest::Remote(vtep) => {
            let hash = wire::ipv4_flow_hash(data)?;
            if too_big(info, pkt.len() - crate::ethernet::HEADER_LEN).is_some() {
                return None; // answered with ICMP by the full path
            }
            Some(encap_push(
                p,
                net,
                vtep,
                pkt,
                source_port(hash),
                ctx,
                &mut s.encap,
            ))
        }
    }
}

/// The bulk of tunnel traffic — an untagged IPv4 packet without options or
/// fragmentation, to our VTEP address, carrying VXLAN or option-less Geneve with an
/// Ethernet frame for a network we have — decapsulated by reading the few header
/// fields it needs at their fixed places, checked as the parse would check them,
/// and switched on the inner destination MAC. `None` for everything else (IPv6 or
/// tagged underlay, IP options, Geneve options, ARP/ND, unknown VNIs, the gateway
/// MAC, which needs the inner parse): the full path parses and decides. Everything
/// is decided before the first byte is stripped.
#[inline(always)]
pub(super) fn from_uplink_fast<B: PacketBuf>(
    p: &Pipeline,
    u: &crate::overlay::UnderlayInfo,
    pkt: &mut B,
) -> Option<Verdict> {
    let IpAddr::V4(local) = u.local_vtep_ip else {
        return None;
    };
    let data = pkt.data();
    let t = plain_tunnel(p, local.octets(), data)?;
    let net = p.overlay.network_by_vni(t.vni)?;
    let info = p.overlay.network(net)?;
    if info.encap != t.kind {
        return None;
    }
    // The gateway's MAC (`None`): routing needs the inner parse.
    let verdict = switch_from_tunnel(net, info, p.overlay.l2_reader(net), t.dst)?;
    // Strip the outer headers and any Ethernet padding after the UDP payload, as
    // the full path does.
    if pkt.narrow(PLAIN_TUNNEL, t.inner_len).is_none() {
        return Some(Verdict::Drop(DropReason::Malformed));
    }
    Some(verdict)
}

/// Outer Ethernet (14), IPv4 without options (20), UDP (8) and the tunnel header
/// (8): where [`plain_tunnel`] finds the inner frame.
pub(super) const PLAIN_TUNNEL: usize = 14 + 20 + 8 + 8;

/// What [`plain_tunnel`] read of a tunnel packet.
struct PlainTunnel {
    kind: Encap,
    vni: u32,
    /// The inner destination MAC, as [`MacAddr::dst_bits`].
    dst: u64,
    /// The inner frame's length: the UDP payload less the tunnel header (the
    /// frame's Ethernet padding after it is not the inner frame's).
    inner_len: usize,
}

impl PlainTunnel {
    /// The VNI and the encapsulation in one word: a frame is for a network when
    /// both are its, and one compare checks both.
    #[inline(always)]
    fn key(&self) -> u32 {
        Self::key_of(self.vni, self.kind)
    }

    #[inline(always)]
    fn key_of(vni: u32, kind: Encap) -> u32 {
        vni << 1 | u32::from(kind == Encap::Geneve)
    }
}

/// The tunnel header of a frame the decap fast paths take (see
/// [`from_uplink_fast`]): the IPv4 underlay to `local`, checked at the fixed
/// places as the parse checks it, with a whole inner Ethernet header. `None` for
/// every other frame.
#[inline(always)]
fn plain_tunnel(p: &Pipeline, local: [u8; 4], data: &[u8]) -> Option<PlainTunnel> {
    const IP: usize = 14;
    const UDP: usize = IP + 20;
    const TUNNEL: usize = UDP + 8;
    const INNER: usize = PLAIN_TUNNEL;
    let h: &[u8; INNER + crate::ethernet::HEADER_LEN] = data
        .get(..INNER + crate::ethernet::HEADER_LEN)?
        .try_into()
        .ok()?;
    if data.len() > usize::from(u16::MAX)
        || h[12..14] != wire::ETHERTYPE_IPV4.to_be_bytes()
        || h[IP] != 0x45
        || h[IP + 9] != wire::IPPROTO_UDP
        || h[IP + 16..IP + 20] != local
    {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[IP + 2], h[IP + 3]]));
    // No fragment bits (more fragments, offset): a fragment is not a tunnel packet.
    let frag = u16::from_be_bytes([h[IP + 6], h[IP + 7]]);
    let udp_len = usize::from(u16::from_be_bytes([h[UDP + 4], h[UDP + 5]]));
    if total < 20 || IP + total > data.len() || frag & 0x3fff != 0 {
        return None;
    }
    // The tunnel header and a whole inner Ethernet header inside the UDP payload.
    if udp_len > total - 20 || udp_len < 8 + 8 + crate::ethernet::HEADER_LEN {
        return None;
    }
    let dst_port = u16::from_be_bytes([h[UDP + 2], h[UDP + 3]]);
    let t = &h[TUNNEL..INNER];
    let kind = match p.parse.ports.kind(dst_port) {
        wire::TunnelKind::Vxlan if t[0] & wire::vxlan::FLAG_I != 0 => Encap::Vxlan,
        // Version 0, no options, not OAM (counted by the full path), an Ethernet
        // frame inside.
        wire::TunnelKind::Geneve
            if t[0] == 0
                && t[1] & wire::geneve::FLAG_O == 0
                && t[2..4] == wire::ETHERTYPE_TEB.to_be_bytes() =>
        {
            Encap::Geneve
        }
        _ => return None,
    };
    Some(PlainTunnel {
        kind,
        // The VNI's three bytes and the reserved byte after them: one load.
        vni: u32::from_be_bytes([t[4], t[5], t[6], t[7]]) >> 8,
        dst: MacAddr::dst_bits(&h[INNER..])?,
        inner_len: udp_len - 16,
    })
}

/// The straight pass of a burst from the uplink: for every frame, what
/// [`from_uplink_fast`] does for the frames it decides most, a unicast frame
/// switched to a local port of its network, which is decapsulated here, its port
/// noted in `ports` and its verdict written. Every other frame is left as it is,
/// with its bit set in the mask returned, for the per-packet pipeline (whose fast
/// path decides floods, drops and the gateway's frames as before). Also returns
/// the decided frames' bytes after decapsulation.
///
/// A function of its own, with the network of the last frame's VNI in locals and
/// the one-port check left to the caller's `ports`: inlined in the burst
/// function, the loop spent about 100 instructions a frame on moving values
/// between registers and the stack, on a memoised network's fields and on building and
/// matching a verdict (counted under callgrind).
#[inline(never)]
pub(super) fn decap_pass<B: PacketBuf>(
    p: &Pipeline,
    local: Ipv4Addr,
    pkts: &mut [B],
    out: &mut [Verdict],
    ports: &mut [u8; crate::io::BURST],
) -> (u32, u64) {
    let local = local.octets();
    let mut net = DecapNet::NONE;
    let mut left = 0u32;
    let mut bytes = 0u64;
    let frames = out.iter_mut().zip(pkts.iter_mut()).zip(ports.iter_mut());
    for (i, ((o, pkt), port_of)) in frames.enumerate() {
        let decided = (|| {
            let t = plain_tunnel(p, local, pkt.data())?;
            let key = t.key();
            if key != net.key {
                net = DecapNet::look_up(p, key)?;
            }
            // Group addresses (the I/G bit) are flooded, the gateway's frames
            // routed: both by the per-packet path.
            if t.dst & (1 << 40) != 0 || t.dst == net.gateway {
                return None;
            }
            let L2Dest::Local(port) = L2Dest::from_bits(net.l2.get(t.dst)?) else {
                return None;
            };
            pkt.narrow(PLAIN_TUNNEL, t.inner_len)?;
            Some((port, t.inner_len))
        })();
        match decided {
            Some((port, len)) => {
                *o = Verdict::Output(port);
                // A port fits a byte (`BurstPorts`).
                *port_of = port.0 as u8;
                bytes += len as u64;
            }
            None => left |= 1 << i,
        }
    }
    (left, bytes)
}

/// The network [`decap_pass`] switches the frames of one VNI into: only what it
/// reads for every frame, so that it stays in registers.
#[derive(Clone, Copy)]
struct DecapNet<'p> {
    /// The network's VNI and encapsulation, as [`PlainTunnel::key`] puts them.
    key: u32,
    /// Its gateway MAC, as [`MacAddr::dst_bits`] reads a destination.
    gateway: u64,
    l2: DenseReader<'p>,
}

impl<'p> DecapNet<'p> {
    /// No network: no frame's key is `u32::MAX` (a VNI has 24 bits).
    const NONE: DecapNet<'static> = DecapNet {
        key: u32::MAX,
        gateway: u64::MAX,
        l2: DenseReader::EMPTY,
    };

    /// The network of a frame's key; `None` for a VNI that has none, or whose
    /// network has the other encapsulation. Never inlined: the pass calls it only
    /// when the VNI changes, and inlined it would take the loop's registers.
    #[inline(never)]
    fn look_up(p: &'p Pipeline, key: u32) -> Option<Self> {
        let id = p.overlay.network_by_vni(key >> 1)?;
        let info = p.overlay.network(id)?;
        (PlainTunnel::key_of(key >> 1, info.encap) == key).then(|| DecapNet {
            key,
            gateway: info.gateway_mac.to_u64(),
            l2: p.overlay.l2_reader(id),
        })
    }
}

/// Prefetches, for every frame of a burst from the uplink, the MAC-table slot of
/// its inner destination in its VNI's network, read where [`decap_pass`] reads
/// them (IPv4 underlay, no options); nothing is checked, since the slot is only a
/// hint of what the pass is about to look up. The last VNI's table is kept for
/// the next frame (a burst from one peer usually carries one VNI). A separate
/// function, called only when a table is large, so the burst loop keeps its
/// registers.
#[inline(never)]
pub(super) fn prefetch_decap_l2<B: PacketBuf>(p: &Pipeline, pkts: &[B]) {
    // The VNI's three bytes lie four into the tunnel header, in front of the inner
    // frame.
    const INNER: usize = PLAIN_TUNNEL;
    const VNI: usize = INNER - 4;
    let mut last: Option<(u32, Option<DenseReader<'_>>)> = None;
    for pkt in pkts {
        let Some(h) = pkt.data().get(..INNER + 8) else {
            continue;
        };
        let vni = u32::from_be_bytes([0, h[VNI], h[VNI + 1], h[VNI + 2]]);
        let l2 = match last {
            Some((v, l2)) if v == vni => l2,
            _ => {
                let l2 = p
                    .overlay
                    .network_by_vni(vni)
                    .map(|n| p.overlay.l2_reader(n));
                last = Some((vni, l2));
                l2
            }
        };
        if let (Some(l2), Some(dst)) = (l2, MacAddr::dst_bits(&h[INNER..])) {
            l2.prefetch::<B>(dst);
        }
    }
}

/// Routes an untagged IPv4 frame sent to `net`'s gateway MAC to a destination that
/// is forwarded, reading only the header fields routing needs (checked as the parse
/// would check them), as a router does: what follows the IP header is not looked
/// at. A cache miss is resolved and kept here, so the answer for a frame does not
/// depend on what the cache holds. `None` for everything else — the gateway's own
/// address, a route that drops, TTL expiry, options the checks refuse, a frame too
/// big for the underlay — which the full path handles.
#[inline]
fn route_fast<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    cache: &mut EncapCache,
    routes: &mut RouteCache,
) -> Option<Verdict> {
    const L3: usize = crate::ethernet::HEADER_LEN;
    let data = pkt.data();
    let dst = routable_v4(data.get(..PLAIN_IPV4)?.try_into().ok()?, data.len())?;
    let routed = match routes.get4(net, dst) {
        Some(r) => r,
        None => {
            let r = resolve(p, net, IpAddr::V4(Ipv4Addr::from(dst)));
            routes.put(net, u128::from(dst), false, r);
            r
        }
    };
    let Routed::Forward {
        dst_net,
        macs,
        dest,
    } = routed
    else {
        // Cached drops are as cheap on the full path; the gateway needs the parse.
        return None;
    };
    let dst_info = p.overlay.network(dst_net)?;
    // Everything that can send the frame to the full path is decided before the
    // first byte is rewritten. (The routed frame's 5-tuple is the same: TTL and
    // MACs are not in it.)
    let src_port = match dest {
        L2Dest::Local(_) => 0, // not encapsulated
        L2Dest::Remote(_) if too_big(dst_info, data.len() - L3).is_some() => return None,
        L2Dest::Remote(_) => source_port(wire::ipv4_flow_hash(data)?),
    };
    // TTL > 1 and a whole header were checked: this cannot refuse.
    rewrite_routed(pkt.data_mut(), L3, false, &macs)?;
    Some(match dest {
        L2Dest::Local(port) => Verdict::Output(port),
        L2Dest::Remote(vtep) => encap_push(p, dst_net, vtep, pkt, src_port, ctx, cache),
    })
}

/// Resolves, for every frame of a burst from a pod of `net` (gateway MAC
/// `gateway`, as [`MacAddr::to_u64`]) that routing may forward, the destinations
/// the route cache misses, so the burst's straight pass finds them all. Run when
/// the cache misses often (more destinations than slots): a miss left to the
/// straight pass sends its frame through the whole per-packet pipeline. The
/// answer for a frame is the same either way; only where the miss is resolved
/// changes.
#[inline(never)]
pub(super) fn fill_routes<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    gateway: u64,
    pkts: &[B],
    routes: &mut RouteCache,
) {
    for pkt in pkts {
        let data = pkt.data();
        let Some(h) = data
            .get(..PLAIN_IPV4)
            .and_then(|h| <&[u8; PLAIN_IPV4]>::try_from(h).ok())
        else {
            continue;
        };
        if MacAddr::dst_bits(data) != Some(gateway)
            || h[12..14] != wire::ETHERTYPE_IPV4.to_be_bytes()
        {
            continue;
        }
        if let Some(dst) = routable_v4(h, data.len()) {
            if routes.get4(net, dst).is_none() {
                let r = resolve(p, net, IpAddr::V4(Ipv4Addr::from(dst)));
                routes.put(net, u128::from(dst), false, r);
            }
        }
    }
}

/// Ethernet and the fixed part of an IPv4 header: what routing reads.
pub(super) const PLAIN_IPV4: usize = crate::ethernet::HEADER_LEN + 20;

/// The destination address of the untagged IPv4 frame starting with `h`, `len`
/// bytes in all, if routing may forward it reading fixed offsets only: version 4
/// without options (rare: the per-packet pipeline takes them), a whole packet, a
/// TTL above 1 — checked as the parse checks them. What follows the IP header is
/// not looked at, as a router does not.
#[inline(always)]
pub(super) fn routable_v4(h: &[u8; PLAIN_IPV4], len: usize) -> Option<u32> {
    const L3: usize = crate::ethernet::HEADER_LEN;
    let total = usize::from(u16::from_be_bytes([h[L3 + 2], h[L3 + 3]]));
    if h[L3] != 0x45 || total < 20 || L3 + total > len || h[L3 + 8] <= 1 {
        return None;
    }
    Some(u32::from_be_bytes([h[30], h[31], h[32], h[33]]))
}
