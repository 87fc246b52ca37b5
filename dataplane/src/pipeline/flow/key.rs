//! The flow key: the ingress port and the header fields the stages read, in a
//! fixed array of words, extracted at fixed offsets from the raw bytes.
//!
//! The extractor is at least as strict as the parse on every field that is not
//! in the key: a frame it accepts is one the parse accepts (so the stages never
//! drop it as malformed), whose verdict and bytes follow from the key, the
//! snapshot and the per-packet guards of the action (TTL, length, headroom).
//! A frame it refuses is a miss that is not installed: the stages decide it.
//!
//! Only untagged IPv4 without options and without fragmentation is understood
//! today, from a pod's port or tunnelled (VXLAN, option-less Geneve over an
//! IPv4 underlay without options) from the uplink. IPv6 would take four more
//! words; it runs through the stages until then.
//!
//! | word | bits |
//! |---|---|
//! | 0 | ingress port (0..16), IP protocol (16..24), shape (24..32), ICMP type (32..40) |
//! | 1 | inner destination MAC (0..48) |
//! | 2 | inner source IPv4 (32..64), destination IPv4 (0..32) |
//! | 3 | source port (16..32), destination port (0..16) (ICMP echo: its id twice), VNI (32..56) |
//! | 4 | outer destination IPv4 (0..32), outer UDP destination port (32..48) |
//!
//! The source MAC is not in the key: no stage reads it (learning from pod
//! ports does not exist; the underlay's learning is of ARP/ND, which the
//! extractor refuses), and a routed frame's is rewritten.

use crate::port::PortIdx;
use crate::wire::{self, ParseConfig, TunnelKind};

/// Words in a key.
pub(crate) const WORDS: usize = 5;

/// A flow key (see the module docs). All zeroes is no key of a frame (the shape
/// is never 0).
#[derive(Clone, Copy, Debug, Default, Eq)]
pub(crate) struct FlowKey(pub(crate) [u64; WORDS]);

impl PartialEq for FlowKey {
    /// Every word compared, with no branch between (a derived compare of the
    /// array calls `memcmp`).
    #[inline(always)]
    fn eq(&self, other: &FlowKey) -> bool {
        (0..WORDS).fold(0, |diff, i| diff | (self.0[i] ^ other.0[i])) == 0
    }
}

/// What the frame looks like, in word 0: a key of one shape never equals a key
/// of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Shape {
    /// IPv4 from a pod's port.
    Local4 = 1,
    /// IPv4 in VXLAN over an IPv4 underlay.
    Vxlan4 = 2,
    /// IPv4 in Geneve (no options) over an IPv4 underlay.
    Geneve4 = 3,
}

/// Ethernet and an IPv4 header without options.
const PLAIN_IPV4: usize = 14 + 20;
/// Outer Ethernet, IPv4 without options, UDP and the tunnel header: where the
/// inner frame of a plain tunnel packet starts.
pub(crate) const PLAIN_TUNNEL: usize = PLAIN_IPV4 + 8 + 8;

/// A frame's key and where the actions find what they touch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extracted {
    pub(crate) key: FlowKey,
    /// The inner frame's length for a tunnel packet (the UDP payload less the
    /// tunnel header; Ethernet padding after it is not the inner frame's).
    pub(crate) inner_len: u16,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The inner words (1 to 3, VNI left 0) and word 0's protocol and ICMP type
/// bits of `f`, an Ethernet frame: `None` unless it is untagged IPv4 without
/// options or fragmentation that the parse accepts, with a whole L4 header as
/// the parse checks it, and not UDP to a tunnel port (which the parse would
/// read as a tunnel).
#[inline(always)]
fn inner4(f: &[u8], cfg: &ParseConfig) -> Option<(u64, u64, u64, u64)> {
    let h: &[u8; PLAIN_IPV4] = f.get(..PLAIN_IPV4)?.try_into().ok()?;
    if be16(h, 12) != wire::ETHERTYPE_IPV4 || h[14] != 0x45 {
        return None;
    }
    let total = usize::from(be16(h, 16));
    // No fragment bits: a fragment's L4 header is missing or partial.
    if total < 20 || 14 + total > f.len() || be16(h, 20) & 0x3fff != 0 {
        return None;
    }
    let proto = h[23];
    let l4 = &f[PLAIN_IPV4..14 + total];
    let (ports, icmp_type) = match proto {
        wire::IPPROTO_TCP => {
            let doff = usize::from(*l4.get(12)? >> 4) * 4;
            if l4.len() < 20 || doff < 20 || doff > l4.len() {
                return None;
            }
            (be32(l4, 0), 0)
        }
        wire::IPPROTO_UDP => {
            let ulen = usize::from(be16(l4.get(..8)?, 4));
            if ulen < 8 || ulen > l4.len() || cfg.ports.kind(be16(l4, 2)) != TunnelKind::None {
                return None;
            }
            (be32(l4, 0), 0)
        }
        wire::IPPROTO_ICMP => {
            let ty = *l4.first()?;
            if l4.len() < 4 {
                return None;
            }
            if matches!(ty, 0 | 8) {
                let id = u32::from(be16(l4.get(..8)?, 4));
                (id << 16 | id, ty)
            } else {
                (0, ty)
            }
        }
        _ => (0, 0),
    };
    let w0 = u64::from(proto) << 16 | u64::from(icmp_type) << 32;
    let dst_mac = u64::from_be_bytes([0, 0, h[0], h[1], h[2], h[3], h[4], h[5]]);
    let addrs = u64::from(be32(h, 26)) << 32 | u64::from(be32(h, 30));
    Some((w0, dst_mac, addrs, u64::from(ports)))
}

/// The key of `f`, a frame from the pod port `port`; `None` for a frame the
/// extractor does not understand (see the module docs).
#[inline(always)]
pub(crate) fn local(port: PortIdx, f: &[u8], cfg: &ParseConfig) -> Option<Extracted> {
    if f.len() > usize::from(u16::MAX) {
        return None;
    }
    let (w0, mac, addrs, ports) = inner4(f, cfg)?;
    let w0 = w0 | u64::from(port.0) | (Shape::Local4 as u64) << 24;
    Some(Extracted {
        key: FlowKey([w0, mac, addrs, ports, 0]),
        inner_len: 0,
    })
}

/// The key of `f`, a frame from the uplink `port` of an IPv4 underlay whose
/// VTEP address is `local_ip`; `None` for a frame the extractor does not
/// understand: the underlay's ARP, IPv6 or tagged underlays, IP options or
/// fragments, tunnel packets not to `local_ip`, VXLAN without the I flag,
/// Geneve with options, OAM or another protocol than Ethernet, and inner frames
/// [`local`] would refuse.
#[inline(always)]
pub(crate) fn uplink(
    port: PortIdx,
    local_ip: [u8; 4],
    f: &[u8],
    cfg: &ParseConfig,
) -> Option<Extracted> {
    const UDP: usize = PLAIN_IPV4;
    const TUNNEL: usize = UDP + 8;
    let h: &[u8; PLAIN_TUNNEL] = f.get(..PLAIN_TUNNEL)?.try_into().ok()?;
    if f.len() > usize::from(u16::MAX)
        || be16(h, 12) != wire::ETHERTYPE_IPV4
        || h[14] != 0x45
        || h[23] != wire::IPPROTO_UDP
        || be32(h, 30) != u32::from_be_bytes(local_ip)
    {
        return None;
    }
    let total = usize::from(be16(h, 16));
    let udp_len = usize::from(be16(h, UDP + 4));
    if total < 20 || 14 + total > f.len() || be16(h, 20) & 0x3fff != 0 {
        return None;
    }
    // The tunnel header and a whole inner Ethernet header in the UDP payload.
    if udp_len > total - 20 || udp_len < 8 + 8 + 14 {
        return None;
    }
    let dst_port = be16(h, UDP + 2);
    let t = &h[TUNNEL..PLAIN_TUNNEL];
    let shape = match cfg.ports.kind(dst_port) {
        TunnelKind::Vxlan if t[0] & wire::vxlan::FLAG_I != 0 => Shape::Vxlan4,
        TunnelKind::Geneve
            if t[0] == 0
                && t[1] & wire::geneve::FLAG_O == 0
                && be16(t, 2) == wire::ETHERTYPE_TEB =>
        {
            Shape::Geneve4
        }
        _ => return None,
    };
    let vni = u64::from(be32(t, 4) >> 8);
    let inner_len = udp_len - 16;
    let (w0, mac, addrs, ports) = inner4(&f[PLAIN_TUNNEL..PLAIN_TUNNEL + inner_len], cfg)?;
    let w0 = w0 | u64::from(port.0) | (shape as u64) << 24;
    let outer = u64::from(be32(h, 30)) | u64::from(dst_port) << 32;
    Some(Extracted {
        key: FlowKey([w0, mac, addrs, ports | vni << 32, outer]),
        inner_len: inner_len as u16,
    })
}

/// The bytes of a frame the extractor reads, as masks over its first words:
/// two frames of one length whose masked words are equal get the same key
/// and the same inner length, so a frame of a flow's run need not be
/// extracted again. Left out: what no key field or check reads (source MACs,
/// TOS, IP IDs, TTLs, checksums, the outer source address and UDP source
/// port, TCP sequence numbers and everything after the data offset).
const fn read_mask<const W: usize>(ranges: &[(usize, usize)]) -> [u64; W] {
    let mut words = [0u64; W];
    let mut r = 0;
    while r < ranges.len() {
        let (from, to) = ranges[r];
        let mut b = from;
        while b < to {
            words[b / 8] |= 0xff << (8 * (b % 8));
            b += 1;
        }
        r += 1;
    }
    words
}

/// The bytes [`local`] reads (words of 8, little-endian loads).
const LOCAL_READS: [u64; 6] = read_mask(&[
    (0, 6),
    (12, 15),
    (16, 18),
    (20, 22),
    (23, 24),
    (26, 40),
    (46, 47),
]);

/// The bytes [`uplink`] reads: the outer headers, then [`LOCAL_READS`]'s
/// bytes of the inner frame.
const UPLINK_READS: [u64; 13] = read_mask(&[
    (12, 15),
    (16, 18),
    (20, 22),
    (23, 24),
    (30, 34),
    (36, 40),
    (42, 56),
    (62, 65),
    (66, 68),
    (70, 72),
    (73, 74),
    (76, 90),
    (96, 97),
]);

/// Whether `a` and `b` read the same to the extractor through `mask`: one
/// length, at least the mask's bytes long, and equal where the mask is set.
/// The words are compared in `order`, those where two flows most often differ
/// (addresses, ports, MACs) first, and the compare stops at the first
/// difference: frames of many flows pay a word or two, a run pays them all.
#[inline(always)]
fn reads_equal<const W: usize>(a: &[u8], b: &[u8], mask: &[u64; W], order: &[usize; W]) -> bool {
    let (Some(a), Some(b)) = (a.get(..8 * W), b.get(..8 * W)) else {
        return false;
    };
    let word = |f: &[u8], i: usize| {
        u64::from_le_bytes(
            f.get(8 * i..8 * i + 8)
                .and_then(|w| w.try_into().ok())
                .unwrap_or([0; 8]),
        )
    };
    order
        .iter()
        .all(|&i| (word(a, i) ^ word(b, i)) & mask[i] == 0)
}

/// Whether frame `b` from a pod's port has the key and inner length of frame
/// `a` (which the extractor accepted) without extracting it.
#[inline(always)]
pub(crate) fn same_local(a: &[u8], b: &[u8]) -> bool {
    // Addresses and ports, the destination MAC, then the rest.
    const ORDER: [usize; 6] = [4, 3, 0, 1, 2, 5];
    a.len() == b.len() && reads_equal(a, b, &LOCAL_READS, &ORDER)
}

/// [`same_local`] for frames from the uplink.
#[inline(always)]
pub(crate) fn same_uplink(a: &[u8], b: &[u8]) -> bool {
    // The inner addresses and ports, the VNI and inner MAC, then the rest.
    const ORDER: [usize; 13] = [10, 9, 6, 5, 0, 1, 2, 3, 4, 7, 8, 11, 12];
    a.len() == b.len() && reads_equal(a, b, &UPLINK_READS, &ORDER)
}

impl FlowKey {
    /// A 64-bit hash of the key: a multiply and a rotate per word. The bucket
    /// comes from the low bits, the signature from the high ones.
    #[inline(always)]
    pub(crate) fn hash(&self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = 0u64;
        for w in self.0 {
            h = (h ^ w).wrapping_mul(K).rotate_left(29);
        }
        h ^ h >> 32
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
