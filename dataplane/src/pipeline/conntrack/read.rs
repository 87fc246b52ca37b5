//! What conntrack reads of a frame: its tuple and, for TCP, the sequence
//! space; for an ICMP error, the tuple of the packet it quotes.
//!
//! Two readers: [`from_meta`] for the stage, on the parse the stages already
//! made (IPv4 and IPv6, options and extension headers included), and
//! [`from_plain_ipv4`] for the flow table's hits, on the one frame shape the
//! flow key's extractor accepts (untagged IPv4 without options), at fixed
//! offsets.

use super::table::{CtL4, CtPacket};
use super::tcp::{flags, TcpSegment};
use super::tuple::CtTuple;
use crate::wire::{L3Kind, PacketMeta, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// What the stage makes of a packet of a tracked network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// A packet to track.
    Track(CtPacket),
    /// A packet conntrack leaves alone, and why: not IP, a fragment, another
    /// protocol, an ICMP message that is neither echo nor error (ND, router
    /// discovery, MLD: the network's own plumbing).
    Untracked(&'static str),
    /// A TCP/UDP/ICMP packet conntrack cannot read (an ICMP error whose quote is
    /// cut short): dropped as `ct_invalid`.
    Invalid,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The address field as a tuple address (IPv4 mapped into IPv6).
fn addr16(a: &[u8; 16], v6: bool) -> [u8; 16] {
    if v6 {
        *a
    } else {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&a[..4]);
        m
    }
}

fn v4_mapped(a: &[u8]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(a);
    m
}

/// The TCP segment at `l4` of `f`, whose IP packet ends at `end`.
fn segment(f: &[u8], l4: usize, end: usize) -> Option<TcpSegment> {
    let h = f.get(l4..end)?;
    let doff = usize::from(*h.get(12)? >> 4) * 4;
    let fl = *h.get(13)?;
    let wscale = if fl & flags::SYN != 0 {
        window_scale(h.get(20..doff)?)
    } else {
        None
    };
    Some(TcpSegment {
        seq: be32(h, 4)?,
        ack: be32(h, 8)?,
        win: be16(h, 14)?,
        flags: fl,
        len: u32::try_from(h.len().checked_sub(doff)?).ok()?,
        wscale,
    })
}

/// The window-scale option among TCP options `o`.
fn window_scale(o: &[u8]) -> Option<u8> {
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*o.get(i + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == 3 && len == 3 {
                    return o.get(i + 2).copied();
                }
                i += len;
            }
        }
    }
    None
}

fn is_echo(ty: u8, v6: bool) -> Option<bool> {
    match (v6, ty) {
        (false, 8) | (true, 128) => Some(false),
        (false, 0) | (true, 129) => Some(true),
        _ => None,
    }
}

fn is_error(ty: u8, v6: bool) -> bool {
    if v6 {
        matches!(ty, 1..=4)
    } else {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    }
}

/// The tuple of the packet an ICMP error quotes, from its IP header at `at`.
fn quoted(f: &[u8], at: usize, v6: bool) -> Option<CtTuple> {
    let q = f.get(at..)?;
    let (src, dst, proto, l4) = if v6 {
        if q.first()? >> 4 != 6 {
            return None;
        }
        let s: [u8; 16] = q.get(8..24)?.try_into().ok()?;
        let d: [u8; 16] = q.get(24..40)?.try_into().ok()?;
        (s, d, *q.get(6)?, 40)
    } else {
        let vihl = *q.first()?;
        if vihl >> 4 != 4 || vihl & 0xf < 5 {
            return None;
        }
        (
            v4_mapped(q.get(12..16)?),
            v4_mapped(q.get(16..20)?),
            *q.get(9)?,
            usize::from(vihl & 0xf) * 4,
        )
    };
    let (sport, dport) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => (be16(q, l4)?, be16(q, l4 + 2)?),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            // A quoted echo request or reply: its identifier is both ports.
            is_echo(*q.get(l4)?, v6)?;
            let id = be16(q, l4 + 4)?;
            (id, id)
        }
        _ => return None,
    };
    Some(CtTuple {
        src,
        dst,
        sport,
        dport,
        proto,
    })
}

/// The stage's reader, on the parse `m` of frame `f`, in `zone`.
pub(crate) fn from_meta(f: &[u8], m: &PacketMeta, zone: u32) -> Read {
    let v6 = match m.l3 {
        L3Kind::Ipv4 => false,
        L3Kind::Ipv6 => true,
        _ => return Read::Untracked("not IP"),
    };
    if m.is_fragment {
        return Read::Untracked("a fragment");
    }
    if m.l4_offset == 0 {
        return Read::Untracked("no TCP, UDP or ICMP header");
    }
    let tuple = CtTuple {
        src: addr16(&m.src_ip, v6),
        dst: addr16(&m.dst_ip, v6),
        sport: m.src_port,
        dport: m.dst_port,
        proto: m.l4_proto,
    };
    let l4 = usize::from(m.l4_offset);
    let l4 = match m.l4_proto {
        IPPROTO_TCP => match segment(f, l4, usize::from(m.l3_end)) {
            Some(s) => CtL4::Tcp(s),
            None => return Read::Invalid,
        },
        IPPROTO_UDP => CtL4::Udp,
        _ => {
            if let Some(reply) = is_echo(m.icmp_type, v6) {
                CtL4::IcmpEcho { reply }
            } else if is_error(m.icmp_type, v6) {
                match quoted(f, l4 + 8, v6) {
                    Some(q) => CtL4::IcmpError { quoted: q },
                    None => return Read::Invalid,
                }
            } else {
                return Read::Untracked("an ICMP message neither echo nor error");
            }
        }
    };
    Read::Track(CtPacket { zone, tuple, l4 })
}

/// The flow table's reader: the packet in the untagged, option-less IPv4
/// frame at `at` of `f` (the extractor's shape). `None` for what the stage
/// leaves untracked too (an ICMP message neither echo nor error; errors are
/// never installed) and, defensively, for a frame the extractor should not
/// have accepted.
#[inline(always)]
pub(crate) fn from_plain_ipv4(f: &[u8], at: usize, zone: u32) -> Option<CtPacket> {
    let ip = f.get(at + 14..at + 34)?;
    let end = at + 14 + usize::from(be16(ip, 2)?);
    let l4 = at + 34;
    let proto = ip[9];
    let (sport, dport, l4k) = match proto {
        IPPROTO_TCP => (
            be16(f, l4)?,
            be16(f, l4 + 2)?,
            CtL4::Tcp(segment(f, l4, end)?),
        ),
        IPPROTO_UDP => (be16(f, l4)?, be16(f, l4 + 2)?, CtL4::Udp),
        IPPROTO_ICMP => {
            let reply = is_echo(*f.get(l4)?, false)?;
            let id = be16(f, l4 + 4)?;
            (id, id, CtL4::IcmpEcho { reply })
        }
        _ => return None,
    };
    Some(CtPacket {
        zone,
        tuple: CtTuple {
            src: v4_mapped(&ip[12..16]),
            dst: v4_mapped(&ip[16..20]),
            sport,
            dport,
            proto,
        },
        l4: l4k,
    })
}
