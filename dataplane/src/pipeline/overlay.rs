//! The overlay stages: from a local pod port, from the uplink, routing, encap.

use std::net::{IpAddr, Ipv4Addr};

use super::reply;
use super::scratch::{EncapCache, RouteCache, Routed, RoutedMacs, Scratch};
use super::{Ctx, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::densemap::DenseReader;
use crate::drop::DropReason;
use crate::ethernet::MacAddr;
use crate::overlay::{Encap, L2Dest, NetworkId, NetworkInfo, RouteResult, VtepIdx};
use crate::port::PortIdx;
use crate::snapshot::Versioned;
use crate::wire::{self, L3Kind, PacketMeta, ParseError, TunnelKind};

/// ICMPv6 neighbour solicitation / advertisement and echo types.
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;
const ICMP4_ECHO_REQUEST: u8 = 8;
const ICMP6_ECHO_REQUEST: u8 = 128;

#[inline]
fn parse_drop(e: ParseError) -> DropReason {
    match e {
        ParseError::GeneveUnknownCritical => DropReason::GeneveUnknownCritical,
        ParseError::BadVxlanFlags => DropReason::VxlanNoVniFlag,
        _ => DropReason::Malformed,
    }
}

#[inline]
fn v4(b: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// A frame from a local port of network `net`.
pub(super) fn from_local<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    info: &NetworkInfo,
    in_port: PortIdx,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
) -> Verdict {
    if s.fast_paths {
        if let Some(v) = from_local_fast(p, net, info, in_port, pkt, ctx, s) {
            return v;
        }
    }
    let Scratch {
        outer: meta,
        encap: cache,
        routes,
        ..
    } = s;
    if let Err(e) = wire::parse_into(pkt.data(), &p.parse, meta) {
        return Verdict::Drop(parse_drop(e));
    }
    let meta = &mut *meta;
    // The responder: ARP and ND for gateway addresses and known endpoints never
    // leave the switch, so the overlay carries no address-resolution floods.
    // Replies go where they are addressed like any frame: a remote VTEP that does not
    // use a responder (a kernel VXLAN device) asks the pod itself.
    if meta.l3 == L3Kind::Arp && meta.arp_op == 1 {
        return match p.overlay.arp_lookup(net, v4(&meta.dst_ip)) {
            Some(mac) if reply::arp_reply_in_place(pkt, meta, mac) => Verdict::Output(in_port),
            Some(_) => Verdict::Drop(DropReason::Malformed),
            None if info.flood_unknown => Verdict::FloodNetwork {
                net,
                from_tunnel: false,
            },
            None => Verdict::Drop(DropReason::ArpUnanswered),
        };
    }
    if meta.l3 == L3Kind::Ipv6 && meta.l4_proto == wire::IPPROTO_ICMPV6 {
        if meta.icmp_type == ND_NS {
            let Some(target) = reply::ns_target(pkt.data(), meta) else {
                return Verdict::Drop(DropReason::Malformed);
            };
            return match p.overlay.nd_lookup(net, target) {
                Some(mac) if reply::na_in_place(pkt, meta, target, mac) => Verdict::Output(in_port),
                Some(_) => Verdict::Drop(DropReason::NdUnanswered),
                None if info.flood_unknown => Verdict::FloodNetwork {
                    net,
                    from_tunnel: false,
                },
                None => Verdict::Drop(DropReason::NdUnanswered),
            };
        }
        if meta.icmp_type == ND_NA || (133..=137).contains(&meta.icmp_type) {
            // Router solicitations/advertisements and NAs stay on the link.
            return Verdict::Drop(DropReason::NdConsumed);
        }
    }
    // From the frame with one load, not from `meta`: the parse has only just
    // written `dst_mac` in pieces, and the key's wider read would wait for them.
    let dst_bits = MacAddr::dst_bits(pkt.data()).unwrap_or_else(|| meta.dst_mac.to_u64());
    let dst = MacAddr::from_u64(dst_bits);
    if dst == info.gateway_mac {
        return route(p, net, in_port, pkt, meta, ctx, cache, routes);
    }
    if dst.is_multicast() {
        return Verdict::FloodNetwork {
            net,
            from_tunnel: false,
        };
    }
    match p.overlay.l2_lookup_bits(net, dst_bits) {
        Some(L2Dest::Local(port)) if port == in_port => Verdict::Drop(DropReason::Hairpin),
        Some(L2Dest::Local(port)) => Verdict::Output(port),
        Some(L2Dest::Remote(vtep)) => encap(p, net, vtep, in_port, pkt, meta, ctx, cache),
        None if info.flood_unknown => Verdict::FloodNetwork {
            net,
            from_tunnel: false,
        },
        None => Verdict::Drop(DropReason::UnknownDestination),
    }
}

/// The bulk of pod traffic — an untagged IPv4 frame to a known unicast MAC other
/// than the gateway's — switched on its destination MAC without a parse, as a
/// bridge would: delivered to a local pod as it is, or encapsulated with the flow
/// hash read from its headers. `None` for everything else (ARP, IPv6 and its ND,
/// VLAN tags, the gateway, broadcast, unknown MACs, a frame too big for the
/// underlay): the full path parses and decides.
#[inline]
fn from_local_fast<B: PacketBuf>(
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

/// Where a frame decapsulated into `net` goes by its destination MAC `dst_bits`
/// (in the network's MAC table `l2`), as a bridge switches it: flooded in the
/// network (not back into the overlay), to a local port, or dropped. `None` for
/// the network's gateway MAC: the frame is routed, which the caller does.
#[inline(always)]
fn switch_from_tunnel(
    net: NetworkId,
    info: &NetworkInfo,
    l2: DenseReader<'_>,
    dst_bits: u64,
) -> Option<Verdict> {
    let dst = MacAddr::from_u64(dst_bits);
    if dst.is_multicast() {
        return Some(Verdict::FloodNetwork {
            net,
            from_tunnel: true,
        });
    }
    if dst == info.gateway_mac {
        return None;
    }
    Some(match l2.get(dst_bits).map(L2Dest::from_bits) {
        Some(L2Dest::Local(port)) => Verdict::Output(port),
        // Never re-encapsulate what came out of a tunnel: loops are impossible.
        Some(L2Dest::Remote(_)) => Verdict::Drop(DropReason::TunnelHairpin),
        None => Verdict::Drop(DropReason::UnknownDestination),
    })
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

/// The largest IP packet network `info` carries, if an IP packet of `ip_len` bytes
/// is bigger (it would not fit the underlay once encapsulated).
#[inline]
pub(super) fn too_big(info: &NetworkInfo, ip_len: usize) -> Option<u16> {
    info.mtu.filter(|&mtu| ip_len > usize::from(mtu))
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

/// Routes a frame sent to the gateway MAC of `net`; `meta` is updated to the
/// routed frame (MACs, TTL).
#[allow(clippy::too_many_arguments)]
fn route<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    in_port: PortIdx,
    pkt: &mut B,
    meta: &mut PacketMeta,
    ctx: &mut Ctx<'_>,
    cache: &mut EncapCache,
    routes: &mut RouteCache,
) -> Verdict {
    if !matches!(meta.l3, L3Kind::Ipv4 | L3Kind::Ipv6) {
        return Verdict::Drop(DropReason::NotRoutable);
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
    let (dst_net, macs, dest) = match routed {
        Routed::Forward {
            dst_net,
            macs,
            dest,
        } => (dst_net, macs, dest),
        Routed::Drop(reason) => return Verdict::Drop(reason),
        Routed::ToGateway if p.overlay.underlay().map(|u| u.uplink) == Some(in_port) => {
            // Arrived by tunnel: the sender's own switch answers for the distributed
            // gateway; a reply from here would leave on the underlay unencapsulated.
            return Verdict::Drop(DropReason::ToGateway);
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
                    return Verdict::Output(in_port);
                }
            }
            return Verdict::Drop(DropReason::ToGateway);
        }
    };
    if meta.ttl <= 1 {
        return icmp_error(
            p,
            net,
            in_port,
            pkt,
            meta,
            reply::IcmpError::TimeExceeded,
            DropReason::TtlExpired,
        );
    }
    // (`resolve` forwards only into networks the snapshot has.)
    let l3 = usize::from(meta.l3_offset);
    if rewrite_routed(pkt.data_mut(), l3, ipv6, &macs).is_none() {
        return Verdict::Drop(DropReason::Malformed);
    }
    meta.dst_mac = macs.dst();
    meta.src_mac = macs.src();
    meta.ttl -= 1;
    match dest {
        L2Dest::Local(port) => Verdict::Output(port),
        L2Dest::Remote(_) if p.overlay.underlay().map(|u| u.uplink) == Some(in_port) => {
            Verdict::Drop(DropReason::TunnelHairpin)
        }
        L2Dest::Remote(vtep) => encap(p, dst_net, vtep, in_port, pkt, meta, ctx, cache),
    }
}

/// The routing decision for an IP packet from network `net`, from the snapshot's
/// tables: the gateway check, the LPM in the network's VRF, and for a connected
/// route the host behind it. Depends only on the snapshot, `net` and the
/// destination, so [`RouteCache`] may keep it.
#[cold]
fn resolve(p: &Pipeline, net: NetworkId, dst: IpAddr) -> Routed {
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
fn icmp_error<B: PacketBuf>(
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

/// Encapsulates towards `vtep` and sends to the uplink, or answers with an ICMP
/// error when the encapsulated frame would not fit the underlay.
#[allow(clippy::too_many_arguments)]
fn encap<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    vtep: VtepIdx,
    in_port: PortIdx,
    pkt: &mut B,
    meta: &PacketMeta,
    ctx: &mut Ctx<'_>,
    cache: &mut EncapCache,
) -> Verdict {
    let Some(info) = p.overlay.network(net) else {
        return Verdict::Drop(DropReason::UnknownNetwork);
    };
    let inner_ip_len = pkt.len().saturating_sub(usize::from(meta.l3_offset));
    if let Some(mtu) = too_big(info, inner_ip_len) {
        let kind = reply::IcmpError::TooBig(mtu);
        // IPv4 without DF may be fragmented by the sender's stack only, and a
        // switch does not fragment: it is dropped, still counted and answered.
        return icmp_error(p, net, in_port, pkt, meta, kind, DropReason::MtuExceeded);
    }
    encap_push(p, net, vtep, pkt, source_port(meta.flow_hash()), ctx, cache)
}

/// Prepends the outer headers towards `vtep` (from the cache when it has them) and
/// sends to the uplink. Always inlined: on the pod fast path it is most of the
/// per-packet work, and as a call it cost encap 5-7% (A/B).
#[inline(always)]
fn encap_push<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    vtep: VtepIdx,
    pkt: &mut B,
    src_port: u16,
    ctx: &mut Ctx<'_>,
    cache: &mut EncapCache,
) -> Verdict {
    if let Some(e) = cache.get(net, vtep, ctx.neighbors.generation()) {
        return if reply::push_cached(pkt, e, src_port) {
            Verdict::Output(e.uplink)
        } else {
            Verdict::Drop(DropReason::NoHeadroom)
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
    push_outer(p, net, vtep, pkt, source_port(hash), ctx, None)
}

/// Prepends Ethernet, IP, UDP and the tunnel header, and with `cache` keeps the
/// header for the next packet to (`net`, `vtep`).
fn push_outer<B: PacketBuf>(
    p: &Pipeline,
    net: NetworkId,
    vtep: VtepIdx,
    pkt: &mut B,
    src_port: u16,
    ctx: &mut Ctx<'_>,
    cache: Option<&mut EncapCache>,
) -> Verdict {
    let (Some(info), Some(u), Some(v)) = (
        p.overlay.network(net),
        p.overlay.underlay(),
        p.overlay.vtep(vtep),
    ) else {
        return Verdict::Drop(DropReason::VtepUnreachable);
    };
    let Some(next_hop) = v.next_hop else {
        return Verdict::Drop(DropReason::VtepUnreachable);
    };
    let Some(next_mac) = ctx.neighbors.lookup(next_hop) else {
        let now = ctx.now();
        if ctx.limiter.should_request(next_hop, now) && !ctx.to_resolve.is_full() {
            ctx.to_resolve.push(next_hop);
        }
        return Verdict::Drop(DropReason::NeighborUnresolved);
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
        let generation = ctx.neighbors.generation();
        if let Some(e) = cache.fill(net, vtep, generation, u.uplink, &outer) {
            return if reply::push_cached(pkt, e, src_port) {
                Verdict::Output(u.uplink)
            } else {
                Verdict::Drop(DropReason::NoHeadroom)
            };
        }
    }
    if reply::push_outer(pkt, &outer) {
        Verdict::Output(u.uplink)
    } else {
        Verdict::Drop(DropReason::NoHeadroom)
    }
}

/// A frame from the uplink: the underlay's ARP/ND, or a tunnel packet to decap.
pub(super) fn from_uplink<B: PacketBuf>(
    p: &Pipeline,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
) -> Verdict {
    let Some(u) = p.overlay.underlay() else {
        return Verdict::Drop(DropReason::UnknownNetwork);
    };
    if s.fast_paths {
        if let Some(v) = from_uplink_fast(p, u, pkt) {
            return v;
        }
    }
    let Scratch {
        outer: meta,
        inner,
        encap: cache,
        routes,
        ..
    } = s;
    if let Err(e) = wire::parse_into(pkt.data(), &p.parse, meta) {
        return Verdict::Drop(parse_drop(e));
    }
    let meta = &*meta;
    match (meta.l3, u.local_vtep_ip) {
        (L3Kind::Arp, IpAddr::V4(local)) => {
            let sender = v4(&meta.src_ip);
            if u.on_link.contains(&IpAddr::V4(sender)) && !sender.is_unspecified() {
                let sha = reply::arp_sender_mac(pkt.data(), meta);
                if let Some(mac) = sha {
                    if !ctx.learned.is_full() {
                        ctx.learned.push((IpAddr::V4(sender), mac));
                    }
                }
            }
            if meta.arp_op == 1
                && v4(&meta.dst_ip) == local
                && reply::arp_reply_in_place(pkt, meta, u.local_mac)
            {
                return Verdict::Output(u.uplink);
            }
            return Verdict::Drop(DropReason::UnderlayConsumed);
        }
        (L3Kind::Ipv6, IpAddr::V6(local))
            if meta.l4_proto == wire::IPPROTO_ICMPV6 && matches!(meta.icmp_type, ND_NS | ND_NA) =>
        {
            if let Some((ip, mac)) = reply::nd_learn(pkt.data(), meta) {
                if u.on_link.contains(&IpAddr::V6(ip)) && !ctx.learned.is_full() {
                    ctx.learned.push((IpAddr::V6(ip), mac));
                }
            }
            if meta.icmp_type == ND_NS
                && reply::ns_target(pkt.data(), meta) == Some(local)
                && reply::na_in_place(pkt, meta, local, u.local_mac)
            {
                return Verdict::Output(u.uplink);
            }
            return Verdict::Drop(DropReason::UnderlayConsumed);
        }
        _ => {}
    }
    if meta.tunnel == TunnelKind::None || meta.dst_addr() != Some(u.local_vtep_ip) {
        return Verdict::Drop(DropReason::UnderlayNotForUs);
    }
    // RFC 8926 §3.4: an OAM packet's payload is never forwarded as data, whatever
    // its VNI. The switch has no OAM protocol to hand it to, so it is counted here;
    // `vswitchctl capture` on the uplink still sees it (capture is before the
    // pipeline).
    if meta.tunnel == TunnelKind::Geneve && meta.tunnel_flags & wire::geneve::FLAG_O != 0 {
        return Verdict::Drop(DropReason::GeneveOam);
    }
    let Some(net) = p.overlay.network_by_vni(meta.vni) else {
        return Verdict::Drop(DropReason::UnknownVni);
    };
    let Some(info) = p.overlay.network(net) else {
        return Verdict::Drop(DropReason::UnknownVni);
    };
    let expected = match info.encap {
        Encap::Vxlan => TunnelKind::Vxlan,
        Encap::Geneve => TunnelKind::Geneve,
    };
    if meta.tunnel != expected || meta.inner_protocol != wire::ETHERTYPE_TEB {
        return Verdict::Drop(DropReason::EncapMismatch);
    }
    // Strip the outer headers and any Ethernet padding after the UDP payload.
    let tail = pkt.len() - usize::from(meta.inner_end);
    if pkt.trim(tail).is_none() || pkt.adj(usize::from(meta.inner_offset)).is_none() {
        return Verdict::Drop(DropReason::Malformed);
    }
    // Switching the inner frame needs only its destination MAC, as a bridge would;
    // the inner headers are parsed when the frame is routed. (Parsing them for
    // every decapsulated frame cost about a sixth of the decap path.)
    let (true, Some(dst_bits)) = (
        pkt.len() >= crate::ethernet::HEADER_LEN,
        MacAddr::dst_bits(pkt.data()),
    ) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    match switch_from_tunnel(net, info, p.overlay.l2_reader(net), dst_bits) {
        Some(verdict) => verdict,
        None => {
            // A remote node routes with its own distributed gateway; a frame to
            // ours arriving by tunnel is routed here all the same.
            if let Err(e) = wire::parse_into(pkt.data(), &p.parse, inner) {
                return Verdict::Drop(parse_drop(e));
            }
            route(p, net, u.uplink, pkt, inner, ctx, cache, routes)
        }
    }
}
