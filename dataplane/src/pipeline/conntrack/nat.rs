//! NAT rewrites of a frame in place: addresses and ports, with incremental
//! checksums.
//!
//! # Design
//! [`rewrite`] translates one IPv4 or IPv6 packet: the source and/or destination
//! address and port (the echo identifier for ICMP echo). Checksums are updated,
//! never recomputed, with RFC 1624's `HC' = ~(~HC + ~m + m')` over the words that
//! changed ([`crate::wire::checksum`]): a rewrite costs the same for a 64-byte and
//! a 9000-byte packet. What each checksum covers:
//!
//! * the IPv4 header checksum: the addresses;
//! * TCP, UDP and ICMPv6: the pseudo-header's addresses and the ports (or echo id);
//! * ICMPv4: no pseudo-header, only the echo id or the quoted bytes.
//!
//! UDP over IPv4 with checksum 0 (none) keeps 0; a UDP checksum that comes out as
//! 0 is sent as `0xffff` (RFC 768). UDP over IPv6 with checksum 0 is invalid
//! (RFC 8200 §8.1) and refused.
//!
//! **ICMP errors** quote the packet that caused them, which travelled the other
//! way. Given the translation of the error's own direction (the one a packet of
//! the connection in that direction gets), the quoted header gets the mirror
//! image — its destination takes the translation's source and its source the
//! translation's destination — so a client behind DNAT sees an error quoting the
//! VIP it spoke to, not the backend. The outer destination is translated (the
//! error goes back to the untranslated sender); the outer source only when the
//! error comes from the translated peer itself (it equals the quoted
//! destination). The inner IPv4 checksum, the inner L4 checksum (when the quote
//! holds it) and the outer ICMP checksum follow. This is the behaviour of Linux's
//! `nf_nat_icmp_reply_translation`, rebuilt from its description.
//!
//! **No change on error.** Every offset and length is checked before the first
//! byte is written; an error leaves the frame as it was. Arbitrary bytes never
//! panic (the `nat_rewrite` fuzz target). A later IPv4/IPv6 fragment (no L4
//! header) is refused: NAT of fragments needs reassembly first.
//!
//! The LB stage applies it to the packets of service connections (DNAT and
//! its reverse); source NAT does not call it yet.

use std::net::IpAddr;

use crate::buf::PacketBuf;
use crate::wire::checksum::{fold, sum_raw};
use crate::wire::{ipv6_ext, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// A translation: the new source and destination (address, port), each optional.
/// The port is the echo identifier for ICMP echo (the source's if both are given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatRewrite {
    /// New source address and port.
    pub src: Option<(IpAddr, u16)>,
    /// New destination address and port.
    pub dst: Option<(IpAddr, u16)>,
}

impl NatRewrite {
    /// True if it changes nothing.
    pub fn is_identity(&self) -> bool {
        self.src.is_none() && self.dst.is_none()
    }
}

/// Why a frame was not rewritten (and is unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    /// The frame ends before a header the rewrite needs.
    #[error("truncated header")]
    Truncated,
    /// Not IPv4 or IPv6, or an inconsistent IP header (length fields, IHL).
    #[error("not a valid IPv4/IPv6 header")]
    BadIpHeader,
    /// An address of the translation is of the other IP family.
    #[error("translation address family differs from the packet's")]
    FamilyMismatch,
    /// A later fragment: no L4 header to translate.
    #[error("later fragment")]
    LaterFragment,
    /// UDP over IPv6 with checksum 0.
    #[error("IPv6 UDP without checksum")]
    Ipv6UdpNoChecksum,
    /// A protocol (or ICMP type) NAT does not translate.
    #[error("protocol not translated")]
    Unsupported,
}

/// The checksum delta of a rewrite: Σ ~old + Σ new over 16-bit words.
type Delta = u64;

/// Where an IP header's fields are.
#[derive(Clone, Copy, Debug)]
struct IpAt {
    v6: bool,
    /// Offset of the header.
    l3: usize,
    proto: u8,
    /// Offset of the L4 header.
    l4: usize,
    /// End of the packet (IPv4 total length / IPv6 payload length, capped for quotes).
    end: usize,
}

impl IpAt {
    fn alen(&self) -> usize {
        if self.v6 {
            16
        } else {
            4
        }
    }
    fn src(&self) -> usize {
        self.l3 + if self.v6 { 8 } else { 12 }
    }
    fn dst(&self) -> usize {
        self.src() + self.alen()
    }
}

/// Reads the IP header at `l3`. `quoted`: the header inside an ICMP error, whose
/// length fields describe the original packet, not the (truncated) quote.
fn ip_at(f: &[u8], l3: usize, quoted: bool) -> Result<IpAt, NatError> {
    let first = *f.get(l3).ok_or(NatError::Truncated)?;
    match first >> 4 {
        4 => {
            let h = f.get(l3..l3 + 20).ok_or(NatError::Truncated)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if ihl < 20 || total < ihl {
                return Err(NatError::BadIpHeader);
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
                return Err(NatError::LaterFragment);
            }
            let end = if quoted {
                f.len()
            } else {
                if l3 + total > f.len() {
                    return Err(NatError::Truncated);
                }
                l3 + total
            };
            if l3 + ihl > end {
                return Err(NatError::Truncated);
            }
            Ok(IpAt {
                v6: false,
                l3,
                proto: h[9],
                l4: l3 + ihl,
                end,
            })
        }
        6 => {
            let h = f.get(l3..l3 + 40).ok_or(NatError::Truncated)?;
            let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let end = if quoted {
                f.len()
            } else {
                if l3 + 40 + payload > f.len() {
                    return Err(NatError::Truncated);
                }
                l3 + 40 + payload
            };
            let w = ipv6_ext::walk(h[6], &f[l3 + 40..end]).map_err(|_| NatError::BadIpHeader)?;
            if w.later_fragment {
                return Err(NatError::LaterFragment);
            }
            Ok(IpAt {
                v6: true,
                l3,
                proto: w.protocol,
                l4: l3 + 40 + w.offset,
                end,
            })
        }
        _ => Err(NatError::BadIpHeader),
    }
}

fn addr_bytes(a: IpAddr, v6: bool) -> Result<[u8; 16], NatError> {
    let mut b = [0u8; 16];
    match (a, v6) {
        (IpAddr::V4(a), false) => b[..4].copy_from_slice(&a.octets()),
        (IpAddr::V6(a), true) => b = a.octets(),
        _ => return Err(NatError::FamilyMismatch),
    }
    Ok(b)
}

/// What the L4 part of a packet is, with its offsets checked.
#[derive(Clone, Copy, Debug)]
enum L4At {
    /// TCP or UDP: ports at `at`, checksum at `check` (`None`: UDP/IPv4 without one,
    /// or a quote too short to hold it).
    Ports { at: usize, check: Option<usize> },
    /// ICMP/ICMPv6 echo: identifier at `at`, checksum at `check` (`None`: not in
    /// the quote).
    Echo { at: usize, check: Option<usize> },
}

/// The L4 header of `ip`. In a quote, only the first 8 bytes are required.
fn l4_at(f: &[u8], ip: &IpAt, quoted: bool) -> Result<L4At, NatError> {
    let l4 = ip.l4;
    let have = ip.end.saturating_sub(l4);
    let fits = |n: usize| have >= n;
    match ip.proto {
        IPPROTO_TCP => {
            if !fits(if quoted { 8 } else { 20 }) {
                return Err(NatError::Truncated);
            }
            Ok(L4At::Ports {
                at: l4,
                check: fits(18).then_some(l4 + 16),
            })
        }
        IPPROTO_UDP => {
            if !fits(8) {
                return Err(NatError::Truncated);
            }
            let zero = f[l4 + 6] == 0 && f[l4 + 7] == 0;
            if zero && ip.v6 && !quoted {
                return Err(NatError::Ipv6UdpNoChecksum);
            }
            Ok(L4At::Ports {
                at: l4,
                check: (!zero).then_some(l4 + 6),
            })
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if (ip.proto == IPPROTO_ICMPV6) == ip.v6 => {
            if !fits(8) {
                return Err(NatError::Truncated);
            }
            if is_echo(f[l4], ip.v6) {
                Ok(L4At::Echo {
                    at: l4 + 4,
                    check: Some(l4 + 2),
                })
            } else {
                Err(NatError::Unsupported)
            }
        }
        _ => Err(NatError::Unsupported),
    }
}

fn is_echo(ty: u8, v6: bool) -> bool {
    if v6 {
        ty == 128 || ty == 129
    } else {
        ty == 8 || ty == 0
    }
}

fn is_error(ty: u8, v6: bool) -> bool {
    if v6 {
        (1..=4).contains(&ty)
    } else {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    }
}

/// Writes `new` at `at` and returns the checksum delta of the change. `at` must be
/// even relative to the start of every sum it enters (all fields here are).
fn put(f: &mut [u8], at: usize, new: &[u8]) -> Delta {
    let old = &mut f[at..at + new.len()];
    let words = new.len().div_ceil(2) as u64;
    let d = words * 0xffff - sum_raw(0, old) + sum_raw(0, new);
    old.copy_from_slice(new);
    d
}

/// Applies `delta` to the checksum at `at` and returns the delta of that change.
/// `udp`: a result of 0 is sent as `0xffff`.
fn fix(f: &mut [u8], at: usize, delta: Delta, udp: bool) -> Delta {
    let old = u16::from_be_bytes([f[at], f[at + 1]]);
    let mut new = !fold(u64::from(!old) + delta);
    if udp && new == 0 {
        new = 0xffff;
    }
    put(f, at, &new.to_be_bytes())
}

/// A translation of one IP header and its L4 ports, with everything checked.
#[derive(Clone, Copy, Debug)]
struct Plan {
    ip: IpAt,
    l4: L4At,
    src: Option<([u8; 16], u16)>,
    dst: Option<([u8; 16], u16)>,
}

impl Plan {
    fn new(
        f: &[u8],
        ip: IpAt,
        quoted: bool,
        src: Option<(IpAddr, u16)>,
        dst: Option<(IpAddr, u16)>,
    ) -> Result<Self, NatError> {
        let l4 = l4_at(f, &ip, quoted)?;
        let conv = |e: Option<(IpAddr, u16)>| -> Result<_, NatError> {
            e.map(|(a, p)| Ok((addr_bytes(a, ip.v6)?, p))).transpose()
        };
        Ok(Plan {
            ip,
            l4,
            src: conv(src)?,
            dst: conv(dst)?,
        })
    }

    /// Rewrites the addresses, ports and the IPv4 header and L4 checksums; returns
    /// the delta of every byte changed (for a checksum that covers this header: an
    /// ICMP error's) and the delta of the addresses alone (for a pseudo-header).
    fn apply(&self, f: &mut [u8]) -> (Delta, Delta) {
        let n = self.ip.alen();
        let mut addrs: Delta = 0;
        if let Some((a, _)) = self.src {
            addrs += put(f, self.ip.src(), &a[..n]);
        }
        if let Some((a, _)) = self.dst {
            addrs += put(f, self.ip.dst(), &a[..n]);
        }
        let mut all = addrs;
        if !self.ip.v6 {
            all += fix(f, self.ip.l3 + 10, addrs, false);
        }
        let (ports, check, udp, pseudo) = match self.l4 {
            L4At::Ports { at, check } => {
                let mut d: Delta = 0;
                if let Some((_, p)) = self.src {
                    d += put(f, at, &p.to_be_bytes());
                }
                if let Some((_, p)) = self.dst {
                    d += put(f, at + 2, &p.to_be_bytes());
                }
                (d, check, self.ip.proto == IPPROTO_UDP, true)
            }
            L4At::Echo { at, check } => {
                let id = self.src.or(self.dst).map(|(_, p)| p);
                let d = id.map_or(0, |p| put(f, at, &p.to_be_bytes()));
                (d, check, false, self.ip.v6)
            }
        };
        all += ports;
        if let Some(c) = check {
            let d = if pseudo { ports + addrs } else { ports };
            all += fix(f, c, d, udp);
        }
        (all, addrs)
    }
}

/// Translates the IP packet at `l3` in `frame` (see the module doc).
///
/// # Errors
/// See [`NatError`]; the frame is unchanged.
pub fn rewrite(frame: &mut [u8], l3: usize, rw: &NatRewrite) -> Result<(), NatError> {
    let ip = ip_at(frame, l3, false)?;
    let icmp = if ip.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    if ip.proto == icmp {
        let ty = *frame.get(ip.l4).ok_or(NatError::Truncated)?;
        if is_error(ty, ip.v6) {
            return rewrite_icmp_error(frame, ip, rw);
        }
    }
    let plan = Plan::new(frame, ip, false, rw.src, rw.dst)?;
    plan.apply(frame);
    Ok(())
}

/// [`rewrite`] on the packet in a buffer, its IP header at `l3` (after the
/// Ethernet header and any VLAN tags the parse found).
///
/// # Errors
/// See [`NatError`]; the packet is unchanged.
pub fn rewrite_buf<B: PacketBuf>(buf: &mut B, l3: usize, rw: &NatRewrite) -> Result<(), NatError> {
    rewrite(buf.data_mut(), l3, rw)
}

fn rewrite_icmp_error(f: &mut [u8], ip: IpAt, rw: &NatRewrite) -> Result<(), NatError> {
    if ip.end < ip.l4 + 8 {
        return Err(NatError::Truncated);
    }
    let inner_ip = ip_at(f, ip.l4 + 8, true)?;
    if inner_ip.v6 != ip.v6 {
        return Err(NatError::BadIpHeader);
    }
    let inner_ip = IpAt {
        end: ip.end,
        ..inner_ip
    };
    // The quote travelled the other way: its source takes the translation's
    // destination and its destination the translation's source.
    let inner = Plan::new(f, inner_ip, true, rw.dst, rw.src)?;
    let n = ip.alen();
    let outer_dst = rw.dst.map(|(a, _)| addr_bytes(a, ip.v6)).transpose()?;
    let outer_src = match rw.src {
        Some((a, _)) if f[ip.src()..ip.src() + n] == f[inner_ip.dst()..inner_ip.dst() + n] => {
            Some(addr_bytes(a, ip.v6)?)
        }
        _ => None,
    };
    // Checked: from here on nothing fails.
    let (quoted, _) = inner.apply(f);
    let mut addrs: Delta = 0;
    if let Some(a) = outer_src {
        addrs += put(f, ip.src(), &a[..n]);
    }
    if let Some(a) = outer_dst {
        addrs += put(f, ip.dst(), &a[..n]);
    }
    if ip.v6 {
        fix(f, ip.l4 + 2, quoted + addrs, false);
    } else {
        fix(f, ip.l3 + 10, addrs, false);
        fix(f, ip.l4 + 2, quoted, false);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
