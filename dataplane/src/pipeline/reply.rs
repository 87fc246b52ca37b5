//! Headers the switch writes itself: ARP and ND answers, ICMP errors and echo
//! replies — each built in the buffer of the packet that caused it, so answering
//! allocates nothing — plus the outer headers of an encapsulation and the
//! resolution requests sent on the underlay.
//!
//! Every function checks the lengths it relies on and returns `false`/`None`
//! (changing nothing) rather than panicking on a frame it cannot handle.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::buf::PacketBuf;
use crate::ethernet::MacAddr;
use crate::wire::checksum::{fold, sum_raw, update16};
use crate::wire::{self, PacketMeta, TunnelKind};

/// Which ICMP error to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IcmpError {
    /// TTL/hop limit reached zero in transit.
    TimeExceeded,
    /// Does not fit: "fragmentation needed" (v4) or "packet too big" (v6) with this MTU.
    TooBig(u16),
}

/// The big-endian `u16` at `at`. Panics if `b` is shorter than `at + 2`.
#[inline]
fn be16_unchecked(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Makes the packet `new_len` bytes long, keeping its first bytes.
fn resize<B: PacketBuf>(pkt: &mut B, new_len: usize) -> bool {
    let len = pkt.len();
    if new_len > len {
        pkt.append(new_len - len).is_some()
    } else {
        pkt.trim(len - new_len).is_some()
    }
}

/// The sender hardware address of an ARP packet.
#[cold]
pub(crate) fn arp_sender_mac(data: &[u8], meta: &PacketMeta) -> Option<MacAddr> {
    let a = usize::from(meta.l3_offset);
    let b = data.get(a + 8..a + 14)?;
    let mut m = [0u8; 6];
    m.copy_from_slice(b);
    Some(MacAddr(m))
}

/// Turns an ARP request into the reply "target is at `mac`".
#[cold]
pub(crate) fn arp_reply_in_place<B: PacketBuf>(
    pkt: &mut B,
    meta: &PacketMeta,
    mac: MacAddr,
) -> bool {
    let a = usize::from(meta.l3_offset);
    let data = pkt.data_mut();
    if data.len() < a + 28 {
        return false;
    }
    let mut req_sha = [0u8; 6];
    req_sha.copy_from_slice(&data[a + 8..a + 14]);
    let mut req_spa = [0u8; 4];
    req_spa.copy_from_slice(&data[a + 14..a + 18]);
    let mut tpa = [0u8; 4];
    tpa.copy_from_slice(&data[a + 24..a + 28]);
    data[0..6].copy_from_slice(&meta.src_mac.0);
    data[6..12].copy_from_slice(&mac.0);
    data[a + 6..a + 8].copy_from_slice(&2u16.to_be_bytes());
    data[a + 8..a + 14].copy_from_slice(&mac.0);
    data[a + 14..a + 18].copy_from_slice(&tpa);
    data[a + 18..a + 24].copy_from_slice(&req_sha);
    data[a + 24..a + 28].copy_from_slice(&req_spa);
    true
}

/// The target address of a neighbour solicitation.
#[cold]
pub(crate) fn ns_target(data: &[u8], meta: &PacketMeta) -> Option<Ipv6Addr> {
    let l4 = usize::from(meta.l4_offset);
    if l4 == 0 {
        return None;
    }
    let t: [u8; 16] = data.get(l4 + 8..l4 + 24)?.try_into().ok()?;
    Some(Ipv6Addr::from(t))
}

/// What a solicitation or advertisement on the underlay teaches: the sender of an
/// NS (its source address and source link-layer option) or the target of an NA
/// (its target link-layer option).
#[cold]
pub(crate) fn nd_learn(data: &[u8], meta: &PacketMeta) -> Option<(Ipv6Addr, MacAddr)> {
    let l4 = usize::from(meta.l4_offset);
    let end = usize::from(meta.l3_end).min(data.len());
    if l4 == 0 || end < l4 + 24 {
        return None;
    }
    let (ip, want) = if meta.icmp_type == 135 {
        let src = Ipv6Addr::from(meta.src_ip);
        if src.is_unspecified() {
            return None;
        }
        (src, 1u8)
    } else {
        (ns_target(data, meta)?, 2u8)
    };
    let mut at = l4 + 24;
    while at + 8 <= end {
        let (kind, len) = (data[at], usize::from(data[at + 1]) * 8);
        if len == 0 || at + len > end {
            return None;
        }
        if kind == want && len >= 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&data[at + 2..at + 8]);
            return Some((ip, MacAddr(m)));
        }
        at += len;
    }
    None
}

fn pseudo6(src: &[u8], dst: &[u8], len: u32, next: u8) -> u64 {
    let acc = sum_raw(0, src);
    let acc = sum_raw(acc, dst);
    acc + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(next)
}

/// Turns a neighbour solicitation for `target` into the advertisement "`target` is
/// at `mac`".
#[cold]
pub(crate) fn na_in_place<B: PacketBuf>(
    pkt: &mut B,
    meta: &PacketMeta,
    target: Ipv6Addr,
    mac: MacAddr,
) -> bool {
    let l3 = usize::from(meta.l3_offset);
    let asker = Ipv6Addr::from(meta.src_ip);
    // Duplicate address detection (from ::) is answered to all nodes, unsolicited.
    let (dst_ip, dst_mac, solicited) = if asker.is_unspecified() {
        (
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
            false,
        )
    } else {
        (asker, meta.src_mac, true)
    };
    if !resize(pkt, l3 + 40 + 32) {
        return false;
    }
    let d = pkt.data_mut();
    d[0..6].copy_from_slice(&dst_mac.0);
    d[6..12].copy_from_slice(&mac.0);
    let ip = &mut d[l3..l3 + 40];
    ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = wire::IPPROTO_ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&target.octets());
    ip[24..40].copy_from_slice(&dst_ip.octets());
    let icmp = l3 + 40;
    d[icmp] = 136;
    d[icmp + 1] = 0;
    d[icmp + 2..icmp + 4].fill(0);
    // Solicited + Override: this is the authoritative answer for the address.
    d[icmp + 4] = if solicited { 0x60 } else { 0x20 };
    d[icmp + 5..icmp + 8].fill(0);
    d[icmp + 8..icmp + 24].copy_from_slice(&target.octets());
    d[icmp + 24] = 2;
    d[icmp + 25] = 1;
    d[icmp + 26..icmp + 32].copy_from_slice(&mac.0);
    let acc = pseudo6(&target.octets(), &dst_ip.octets(), 32, wire::IPPROTO_ICMPV6);
    let c = !fold(sum_raw(acc, &d[icmp..icmp + 32]));
    d[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
    true
}

/// Turns an ICMP/ICMPv6 echo request to the gateway into the echo reply.
#[cold]
pub(crate) fn echo_reply_in_place<B: PacketBuf>(
    pkt: &mut B,
    meta: &PacketMeta,
    gateway_mac: MacAddr,
) -> bool {
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let d = pkt.data_mut();
    if l4 == 0 || d.len() < l4 + 4 {
        return false;
    }
    d[0..6].copy_from_slice(&meta.src_mac.0);
    d[6..12].copy_from_slice(&gateway_mac.0);
    let old = be16_unchecked(d, l4);
    match meta.l3 {
        wire::L3Kind::Ipv4 => {
            // Swapping the addresses leaves both checksums unchanged.
            let (src, dst) = (l3 + 12, l3 + 16);
            for i in 0..4 {
                d.swap(src + i, dst + i);
            }
            d[l4] = 0;
        }
        _ => {
            for i in 0..16 {
                d.swap(l3 + 8 + i, l3 + 24 + i);
            }
            d[l4] = 129;
        }
    }
    let check = update16(be16_unchecked(d, l4 + 2), old, be16_unchecked(d, l4));
    d[l4 + 2..l4 + 4].copy_from_slice(&check.to_be_bytes());
    true
}

/// True for ICMP errors, which are never answered with an error (RFC 1122 §3.2.2).
fn is_icmp_error(meta: &PacketMeta) -> bool {
    match meta.l3 {
        wire::L3Kind::Ipv4 => {
            meta.l4_proto == wire::IPPROTO_ICMP && !matches!(meta.icmp_type, 0 | 8 | 13 | 14)
        }
        _ => meta.l4_proto == wire::IPPROTO_ICMPV6 && meta.icmp_type < 128,
    }
}

/// Turns an IPv4 packet into the ICMP error about it, from `src_ip`/`src_mac` back
/// to its sender. The error quotes the IP header and the first 8 payload bytes.
#[cold]
pub(crate) fn icmp4_error_in_place<B: PacketBuf>(
    pkt: &mut B,
    meta: &PacketMeta,
    kind: IcmpError,
    src_ip: Ipv4Addr,
    src_mac: MacAddr,
) -> bool {
    if is_icmp_error(meta) || (meta.is_fragment && meta.l4_offset == 0) {
        return false;
    }
    let l3 = usize::from(meta.l3_offset);
    let data = pkt.data();
    let Some(&vihl) = data.get(l3) else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    let quote = (ihl + 8).min(usize::from(meta.l3_end).saturating_sub(l3));
    let old_len = pkt.len();
    let new_len = l3 + 28 + quote;
    if new_len > old_len && !resize(pkt, new_len) {
        return false;
    }
    let d = pkt.data_mut();
    d.copy_within(l3..l3 + quote, l3 + 28);
    if new_len < old_len && !resize(pkt, new_len) {
        return false;
    }
    let d = pkt.data_mut();
    d[0..6].copy_from_slice(&meta.src_mac.0);
    d[6..12].copy_from_slice(&src_mac.0);
    let ip = &mut d[l3..l3 + 20];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((20 + 8 + quote) as u16).to_be_bytes());
    ip[4..8].fill(0);
    ip[8] = 64;
    ip[9] = wire::IPPROTO_ICMP;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&src_ip.octets());
    ip[16..20].copy_from_slice(&meta.src_ip[..4]);
    let c = !fold(sum_raw(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = l3 + 20;
    let (t, code, rest) = match kind {
        IcmpError::TimeExceeded => (11u8, 0u8, 0u32),
        IcmpError::TooBig(mtu) => (3, 4, u32::from(mtu)),
    };
    d[icmp] = t;
    d[icmp + 1] = code;
    d[icmp + 2..icmp + 4].fill(0);
    d[icmp + 4..icmp + 8].copy_from_slice(&rest.to_be_bytes());
    let c = !fold(sum_raw(0, &d[icmp..icmp + 8 + quote]));
    d[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
    true
}

/// The most of the offending packet an ICMPv6 error quotes: the error must fit the
/// IPv6 minimum MTU of 1280 (RFC 4443 §2.4).
const ICMP6_QUOTE_MAX: usize = 1280 - 40 - 8;

/// Turns an IPv6 packet into the ICMPv6 error about it, from `src_ip`/`src_mac`.
#[cold]
pub(crate) fn icmp6_error_in_place<B: PacketBuf>(
    pkt: &mut B,
    meta: &PacketMeta,
    kind: IcmpError,
    src_ip: Ipv6Addr,
    src_mac: MacAddr,
) -> bool {
    if is_icmp_error(meta) {
        return false;
    }
    let l3 = usize::from(meta.l3_offset);
    let quote = usize::from(meta.l3_end)
        .saturating_sub(l3)
        .min(ICMP6_QUOTE_MAX);
    let old_len = pkt.len();
    let new_len = l3 + 48 + quote;
    if new_len > old_len && !resize(pkt, new_len) {
        return false;
    }
    let d = pkt.data_mut();
    d.copy_within(l3..l3 + quote, l3 + 48);
    if new_len < old_len && !resize(pkt, new_len) {
        return false;
    }
    let d = pkt.data_mut();
    d[0..6].copy_from_slice(&meta.src_mac.0);
    d[6..12].copy_from_slice(&src_mac.0);
    let plen = (8 + quote) as u16;
    let ip = &mut d[l3..l3 + 40];
    ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
    ip[4..6].copy_from_slice(&plen.to_be_bytes());
    ip[6] = wire::IPPROTO_ICMPV6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src_ip.octets());
    ip[24..40].copy_from_slice(&meta.src_ip);
    let icmp = l3 + 40;
    let (t, rest) = match kind {
        IcmpError::TimeExceeded => (3u8, 0u32),
        IcmpError::TooBig(mtu) => (2, u32::from(mtu)),
    };
    d[icmp] = t;
    d[icmp + 1] = 0;
    d[icmp + 2..icmp + 4].fill(0);
    d[icmp + 4..icmp + 8].copy_from_slice(&rest.to_be_bytes());
    let acc = pseudo6(
        &src_ip.octets(),
        &meta.src_ip,
        u32::from(plen),
        wire::IPPROTO_ICMPV6,
    );
    let c = !fold(sum_raw(acc, &d[icmp..icmp + usize::from(plen)]));
    d[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
    true
}

/// The outer headers of an encapsulation.
pub(crate) struct OuterHeaders {
    pub(crate) src_mac: MacAddr,
    pub(crate) dst_mac: MacAddr,
    pub(crate) src_ip: IpAddr,
    pub(crate) dst_ip: IpAddr,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) tunnel: TunnelKind,
    pub(crate) vni: u32,
}

/// Prepends Ethernet, IPv4/IPv6 (DF set), UDP and the VXLAN or Geneve header.
/// IPv4's UDP checksum is 0 (RFC 7348 §5); IPv6's is computed, since RFC 8200
/// forbids a zero one unless both ends agree (RFC 6935).
pub(crate) fn push_outer<B: PacketBuf>(pkt: &mut B, o: &OuterHeaders) -> bool {
    let ip_len = match (o.src_ip, o.dst_ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 20,
        (IpAddr::V6(_), IpAddr::V6(_)) => 40,
        _ => return false,
    };
    let inner = pkt.len();
    let hdr = 14 + ip_len + 8 + 8;
    let udp_len = 8 + 8 + inner;
    if udp_len + ip_len > usize::from(u16::MAX) {
        return false;
    }
    let Some(h) = pkt.prepend(hdr) else {
        return false;
    };
    // Built with the wire reprs: this is the cold path (a cache fill, a flood
    // copy), and the per-packet pushes copy what it built.
    let (eth, rest) = h.split_at_mut(crate::ethernet::HEADER_LEN);
    let (ip, rest) = rest.split_at_mut(ip_len);
    let (udp, tunnel) = rest.split_at_mut(8);
    let ethertype = match (o.src_ip, o.dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // DF (the repr sets it): the underlay must not fragment; oversize is
            // answered at the pod.
            wire::Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: wire::IpProtocol::Udp,
                payload_len: udp_len,
                hop_limit: 64,
            }
            .emit(
                &mut wire::Ipv4Packet::new_unchecked(ip),
                &wire::ChecksumCapabilities::default(),
            );
            wire::EthernetProtocol::Ipv4
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            wire::Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: wire::IpProtocol::Udp,
                payload_len: udp_len,
                hop_limit: 64,
            }
            .emit(&mut wire::Ipv6Packet::new_unchecked(ip));
            wire::EthernetProtocol::Ipv6
        }
        _ => return false,
    };
    wire::EthernetRepr {
        src_addr: wire::EthernetAddress(o.src_mac.0),
        dst_addr: wire::EthernetAddress(o.dst_mac.0),
        ethertype,
    }
    .emit(&mut wire::EthernetFrame::new_unchecked(eth));
    let mut u = wire::UdpPacket::new_unchecked(udp);
    u.set_src_port(o.src_port);
    u.set_dst_port(o.dst_port);
    u.set_len(udp_len as u16);
    // IPv4: 0 (RFC 7348 §5); IPv6: filled below, over the inner frame too.
    u.set_checksum(0);
    match o.tunnel {
        TunnelKind::Geneve => {
            let g = wire::GeneveRepr {
                oam: false,
                critical: false,
                protocol: wire::ETHERTYPE_TEB,
                vni: o.vni,
                options: &[],
                add: &[],
            };
            if g.emit(tunnel).is_err() {
                return false;
            }
        }
        _ => wire::VxlanRepr { vni: o.vni }.emit(tunnel),
    }
    if ip_len == 40 {
        outer_udp6_checksum(pkt.data_mut());
    }
    true
}

/// Fills the UDP checksum of an IPv6-underlay encapsulation (Ethernet, IPv6 with
/// no extension headers, UDP at 54), whose checksum field is zero. RFC 8200 forbids
/// a zero UDP checksum over IPv6 unless both ends agree (RFC 6935), so it is
/// computed; a result of 0 is sent as 0xffff.
fn outer_udp6_checksum(data: &mut [u8]) {
    const UDP: usize = at::UDP6;
    let udp_len = (data.len() - UDP) as u32;
    let acc = pseudo6(
        &data[at::IP6_SRC..at::IP6_SRC + 16],
        &data[at::IP6_DST..at::IP6_DST + 16],
        udp_len,
        wire::IPPROTO_UDP,
    );
    let mut c = !fold(sum_raw(acc, &data[UDP..]));
    if c == 0 {
        c = 0xffff;
    }
    put16_unchecked(data, UDP + at::UDP_CHECKSUM, c);
}

/// Where the fields an encapsulation writes for each packet lie in its outer
/// header (Ethernet first, no VLAN tag, no IP options, as [`push_outer`] builds
/// it), so the per-packet patches name them instead of repeating offsets.
mod at {
    use crate::ethernet::HEADER_LEN as ETH;

    /// IPv4: the total length.
    pub(super) const IP4_TOTAL_LEN: usize = ETH + 2;
    /// IPv4: the header checksum.
    pub(super) const IP4_CHECKSUM: usize = ETH + 10;
    /// IPv4: the UDP header.
    pub(super) const UDP4: usize = ETH + 20;
    /// IPv6: the payload length.
    pub(super) const IP6_PAYLOAD_LEN: usize = ETH + 4;
    /// IPv6: the source address.
    pub(super) const IP6_SRC: usize = ETH + 8;
    /// IPv6: the destination address.
    pub(super) const IP6_DST: usize = ETH + 24;
    /// IPv6: the UDP header.
    pub(super) const UDP6: usize = ETH + 40;
    /// In a UDP header: the source port.
    pub(super) const UDP_SRC_PORT: usize = 0;
    /// In a UDP header: the length.
    pub(super) const UDP_LEN: usize = 4;
    /// In a UDP header: the checksum.
    pub(super) const UDP_CHECKSUM: usize = 6;
}

/// Writes `v` big-endian at `at`. Panics if `h` is shorter than `at + 2`: for
/// the outer header's fixed fields, whose length the caller made.
#[inline(always)]
fn put16_unchecked(h: &mut [u8], at: usize, v: u16) {
    h[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Prepends a cached outer header (see [`super::flow::template`]) and patches what depends
/// on the packet: the IP length (and the IPv4 checksum, incrementally from the
/// template's), the UDP length and source port, and for IPv6 the UDP checksum.
/// Always inlined into the encap paths, which call it for every packet.
#[inline(always)]
pub(crate) fn push_cached<B: PacketBuf>(
    pkt: &mut B,
    e: &super::flow::template::Template,
    src_port: u16,
) -> bool {
    if !e.ipv6 {
        return push_cached4(pkt, e, src_port);
    }
    let inner = pkt.len();
    let udp_len = 8 + 8 + inner;
    if udp_len + 40 > usize::from(u16::MAX) {
        return false;
    }
    let Some(h) = pkt.prepend(70) else {
        return false;
    };
    h.copy_from_slice(&e.hdr[..70]);
    put16_unchecked(h, at::IP6_PAYLOAD_LEN, udp_len as u16);
    put16_unchecked(h, at::UDP6 + at::UDP_SRC_PORT, src_port);
    put16_unchecked(h, at::UDP6 + at::UDP_LEN, udp_len as u16);
    // The template's checksum covered its empty payload: sum afresh from zero.
    put16_unchecked(h, at::UDP6 + at::UDP_CHECKSUM, 0);
    outer_udp6_checksum(pkt.data_mut());
    true
}

/// The outer headers [`push_cached4`] pushes: Ethernet, IPv4, UDP and the
/// VXLAN or Geneve header (no options).
pub(crate) const OUTER4_LEN: usize = 14 + 20 + 8 + 8;

/// [`push_cached`] for an IPv4 underlay (`e.ipv6` false), with no call: what
/// the burst loop for pod traffic runs. False, with nothing changed, when the
/// packet is too big for one or there is no headroom.
#[inline(always)]
pub(crate) fn push_cached4<B: PacketBuf>(
    pkt: &mut B,
    e: &super::flow::template::Template,
    src_port: u16,
) -> bool {
    debug_assert!(!e.ipv6);
    let Some((h, udp_len)) = prepend4(pkt, &e.hdr[..OUTER4_LEN]) else {
        return false;
    };
    put16_unchecked(h, at::UDP4 + at::UDP_SRC_PORT, src_port);
    patch_lengths4(h, e.ip_sum, udp_len);
    true
}

/// Prepends `hdr`, an outer IPv4 header (Ethernet, IPv4, UDP, tunnel), to `pkt`;
/// the header in place and the UDP length it needs. `None`, with nothing changed,
/// when the packet is too big for one or there is no headroom.
#[inline(always)]
fn prepend4<'p, B: PacketBuf>(pkt: &'p mut B, hdr: &[u8]) -> Option<(&'p mut [u8], usize)> {
    let udp_len = 8 + 8 + pkt.len();
    if udp_len + 20 > usize::from(u16::MAX) {
        return None;
    }
    let h = pkt.prepend(OUTER4_LEN)?;
    h.copy_from_slice(hdr);
    Some((h, udp_len))
}

/// Writes the lengths of an outer IPv4 header (Ethernet first) for a UDP datagram
/// of `udp_len` bytes, and its checksum: from `ip_sum`, the template's sum of every
/// other header word, so nothing just written is read back.
#[inline(always)]
fn patch_lengths4(h: &mut [u8], ip_sum: u32, udp_len: usize) {
    let total = (20 + udp_len) as u32;
    // At most 11 words: two folds bring the sum to 16 bits.
    let sum = ip_sum + total;
    let sum = (sum & 0xffff) + (sum >> 16);
    let check = !(((sum & 0xffff) + (sum >> 16)) as u16);
    put16_unchecked(h, at::IP4_TOTAL_LEN, total as u16);
    put16_unchecked(h, at::IP4_CHECKSUM, check);
    put16_unchecked(h, at::UDP4 + at::UDP_LEN, udp_len as u16);
}

/// An ARP request "who has `target`? tell `src_ip`", padded to the 60-byte minimum.
pub fn build_arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].fill(0xff);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&wire::ETHERTYPE_ARP.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&src_mac.0);
    f[28..32].copy_from_slice(&src_ip.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// A neighbour solicitation for `target` from `src_ip`, to its solicited-node
/// multicast group, with our link-layer address.
pub fn build_neighbor_solicitation(
    src_mac: MacAddr,
    src_ip: Ipv6Addr,
    target: Ipv6Addr,
) -> [u8; 86] {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&wire::ETHERTYPE_IPV6.to_be_bytes());
    f[14..18].copy_from_slice(&0x6000_0000u32.to_be_bytes());
    f[18..20].copy_from_slice(&32u16.to_be_bytes());
    f[20] = wire::IPPROTO_ICMPV6;
    f[21] = 255;
    f[22..38].copy_from_slice(&src_ip.octets());
    f[38..54].copy_from_slice(&group.octets());
    f[54] = 135;
    f[62..78].copy_from_slice(&t);
    f[78] = 1;
    f[79] = 1;
    f[80..86].copy_from_slice(&src_mac.0);
    let acc = pseudo6(&src_ip.octets(), &group.octets(), 32, wire::IPPROTO_ICMPV6);
    let c = !fold(sum_raw(acc, &f[54..86]));
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f
}
