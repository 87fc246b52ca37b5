//! NAT rewrite tests: frames built here with checksums computed from scratch by
//! a reference written for the test; the incremental rewrite must give the
//! bytes the reference gives, and a rewrite followed by its reverse the
//! original frame.

use super::*;
use crate::wire::checksum::checksum;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) const ETH: usize = 14;

/// What the L4 part of a generated packet is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Tcp,
    Udp,
    /// UDP over IPv4 without a checksum.
    UdpNoCheck,
    Echo,
    /// An ICMP error quoting a packet of the given kind.
    Error(Inner),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Inner {
    Tcp,
    Udp,
    Echo,
}

#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) v6: bool,
    /// IPv6: a destination-options header in front of L4.
    pub(crate) ext: bool,
    pub(crate) kind: Kind,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) payload: Vec<u8>,
    /// For errors: the outer source is a router, not the quoted destination.
    pub(crate) router: Option<IpAddr>,
    /// Ethernet padding after the IP packet.
    pub(crate) pad: usize,
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An IP packet (no Ethernet) of `proto` carrying `l4`, checksums zero.
fn ip_packet(v6: bool, ext: bool, proto: u8, src: IpAddr, dst: IpAddr, l4: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    if v6 {
        let ext_len = if ext { 8 } else { 0 };
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&((l4.len() + ext_len) as u16).to_be_bytes());
        p.push(if ext { 60 } else { proto });
        p.push(64);
        p.extend(ip_bytes(src));
        p.extend(ip_bytes(dst));
        if ext {
            p.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
        }
    } else {
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
        p.extend(ip_bytes(src));
        p.extend(ip_bytes(dst));
    }
    p.extend_from_slice(l4);
    p
}

fn l4_bytes(
    kind: Inner,
    v6: bool,
    sport: u16,
    dport: u16,
    payload: &[u8],
    udp_check: bool,
) -> (u8, Vec<u8>) {
    let mut l = Vec::new();
    let proto = match kind {
        Inner::Tcp => {
            l.extend_from_slice(&sport.to_be_bytes());
            l.extend_from_slice(&dport.to_be_bytes());
            l.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            IPPROTO_TCP
        }
        Inner::Udp => {
            l.extend_from_slice(&sport.to_be_bytes());
            l.extend_from_slice(&dport.to_be_bytes());
            l.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            // A marker the reference reads: 1 = compute, 0 = none.
            l.extend_from_slice(&[0, u8::from(udp_check)]);
            IPPROTO_UDP
        }
        Inner::Echo => {
            l.extend_from_slice(&[if v6 { 128 } else { 8 }, 0, 0, 0]);
            l.extend_from_slice(&sport.to_be_bytes());
            l.extend_from_slice(&[0, 7]);
            if v6 {
                IPPROTO_ICMPV6
            } else {
                IPPROTO_ICMP
            }
        }
    };
    l.extend_from_slice(payload);
    (proto, l)
}

/// The checksums of the IP packet at `l3`, computed from scratch. For UDP, a
/// checksum field that is 0 on entry (no checksum, IPv4) stays 0; any other value
/// is recomputed.
pub(crate) fn reference(f: &mut [u8], l3: usize) {
    let v6 = f[l3] >> 4 == 6;
    let (hlen, total) = if v6 {
        (
            40,
            40 + usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]])),
        )
    } else {
        let ihl = usize::from(f[l3] & 15) * 4;
        (ihl, usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]])))
    };
    let (mut proto, mut l4) = if v6 {
        (f[l3 + 6], l3 + 40)
    } else {
        (f[l3 + 9], l3 + hlen)
    };
    if v6 && proto == 60 {
        proto = f[l4];
        l4 += 8;
    }
    let end = l3 + total;
    let (alen, a_at) = if v6 { (16, l3 + 8) } else { (4, l3 + 12) };
    let pseudo = |f: &[u8], len: usize| {
        let mut acc = sum_raw(0, &f[a_at..a_at + 2 * alen]);
        acc += u64::from(proto) + len as u64;
        acc
    };
    match proto {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let ty = f[l4];
            if is_error(ty, v6) {
                reference(f, l4 + 8);
            }
            f[l4 + 2] = 0;
            f[l4 + 3] = 0;
            let mut acc = sum_raw(0, &f[l4..end]);
            if v6 {
                acc += pseudo(f, end - l4);
            }
            let c = !fold(acc);
            f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        }
        IPPROTO_TCP | IPPROTO_UDP => {
            let at = l4 + if proto == IPPROTO_TCP { 16 } else { 6 };
            let none = proto == IPPROTO_UDP && f[at] == 0 && f[at + 1] == 0;
            if !none {
                f[at] = 0;
                f[at + 1] = 0;
                let acc = sum_raw(pseudo(f, end - l4), &f[l4..end]);
                let mut c = !fold(acc);
                if proto == IPPROTO_UDP && c == 0 {
                    c = 0xffff;
                }
                f[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        _ => {}
    }
    if !v6 {
        f[l3 + 10] = 0;
        f[l3 + 11] = 0;
        let c = checksum(&f[l3..l3 + hlen]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
}

pub(crate) fn build(s: &Spec) -> Vec<u8> {
    let (proto, l4) = match s.kind {
        Kind::Tcp => l4_bytes(Inner::Tcp, s.v6, s.sport, s.dport, &s.payload, true),
        Kind::Udp => l4_bytes(Inner::Udp, s.v6, s.sport, s.dport, &s.payload, true),
        Kind::UdpNoCheck => l4_bytes(Inner::Udp, s.v6, s.sport, s.dport, &s.payload, false),
        Kind::Echo => l4_bytes(Inner::Echo, s.v6, s.sport, s.dport, &s.payload, true),
        Kind::Error(inner) => {
            // The quoted packet went from `dst` to `src`: the error goes back to `dst`.
            let (p, l) = l4_bytes(inner, s.v6, s.dport, s.sport, &s.payload, true);
            let quoted = ip_packet(s.v6, s.ext, p, s.dst, s.src, &l);
            let mut icmp = vec![if s.v6 { 1 } else { 3 }, 3, 0, 0, 0, 0, 0, 0];
            icmp.extend(quoted);
            let from = s.router.unwrap_or(s.src);
            let mut f = vec![0u8; ETH];
            let proto = if s.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
            f.extend(ip_packet(s.v6, false, proto, from, s.dst, &icmp));
            reference(&mut f, ETH);
            f.extend(std::iter::repeat_n(0xee, s.pad));
            return f;
        }
    };
    let mut f = vec![0u8; ETH];
    f.extend(ip_packet(s.v6, s.ext, proto, s.src, s.dst, &l4));
    reference(&mut f, ETH);
    f.extend(std::iter::repeat_n(0xee, s.pad));
    f
}

fn addr(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<[u8; 16]>()
            .prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)))
            .boxed()
    } else {
        any::<[u8; 4]>()
            .prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)))
            .boxed()
    }
}

fn kind(v6: bool) -> impl Strategy<Value = Kind> {
    let inner = prop_oneof![Just(Inner::Tcp), Just(Inner::Udp), Just(Inner::Echo)];
    let mut k = vec![
        Just(Kind::Tcp).boxed(),
        Just(Kind::Udp).boxed(),
        Just(Kind::Echo).boxed(),
        inner.prop_map(Kind::Error).boxed(),
    ];
    if !v6 {
        k.push(Just(Kind::UdpNoCheck).boxed());
    }
    proptest::strategy::Union::new(k)
}

fn case() -> impl Strategy<Value = (Spec, NatRewrite)> {
    any::<bool>().prop_flat_map(|v6| {
        let endpoint = (addr(v6), any::<u16>());
        (
            (any::<bool>(), kind(v6), endpoint.clone(), endpoint.clone()),
            (
                proptest::collection::vec(any::<u8>(), 0..64),
                proptest::option::of(addr(v6)),
                0usize..8,
            ),
            (
                proptest::option::of(endpoint.clone()),
                proptest::option::of(endpoint),
            ),
        )
            .prop_map(
                move |(
                    (ext, kind, (src, sport), (dst, dport)),
                    (payload, router, pad),
                    (nsrc, ndst),
                )| {
                    let spec = Spec {
                        v6,
                        ext: ext && v6,
                        kind,
                        src,
                        dst,
                        sport,
                        dport,
                        payload,
                        router,
                        pad,
                    };
                    (
                        spec,
                        NatRewrite {
                            src: nsrc,
                            dst: ndst,
                        },
                    )
                },
            )
    })
}

/// The translation that undoes `rw` on the packet `s` describes.
fn reverse(s: &Spec, rw: &NatRewrite) -> NatRewrite {
    match s.kind {
        // Echo: the id is the source port if both are given.
        Kind::Echo => {
            let id = if rw.src.is_some() || rw.dst.is_some() {
                s.sport
            } else {
                0
            };
            NatRewrite {
                src: rw.src.map(|_| (s.src, id)),
                dst: rw.dst.map(|_| (s.dst, id)),
            }
        }
        Kind::Error(Inner::Echo) => {
            // The quote's id is the one its source (the translation's dst) gives.
            let id = s.dport;
            NatRewrite {
                src: rw.src.map(|_| (s.src, id)),
                dst: rw.dst.map(|_| (s.dst, id)),
            }
        }
        _ => NatRewrite {
            src: rw.src.map(|_| (s.src, s.sport)),
            dst: rw.dst.map(|_| (s.dst, s.dport)),
        },
    }
}

/// The echo id a rewrite writes: the source's port, else the destination's.
fn fix_echo(s: &Spec, rw: NatRewrite) -> NatRewrite {
    match s.kind {
        Kind::Echo => {
            let id = rw.src.or(rw.dst).map(|e| e.1);
            NatRewrite {
                src: rw.src.map(|(a, _)| (a, id.unwrap())),
                dst: rw.dst.map(|(a, _)| (a, id.unwrap())),
            }
        }
        Kind::Error(Inner::Echo) => {
            // The quote's source takes rw.dst, so its port is the id written.
            let id = rw.dst.or(rw.src).map(|e| e.1);
            NatRewrite {
                src: rw.src.map(|(a, _)| (a, id.unwrap())),
                dst: rw.dst.map(|(a, _)| (a, id.unwrap())),
            }
        }
        _ => rw,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn incremental_checksums_equal_recomputed((s, rw) in case()) {
        let rw = fix_echo(&s, rw);
        let mut f = build(&s);
        rewrite(&mut f, ETH, &rw).unwrap();
        let mut r = f.clone();
        let ip_end = f.len() - s.pad;
        reference(&mut r[..ip_end], ETH);
        prop_assert_eq!(&f, &r);
    }

    #[test]
    fn rewrite_then_reverse_is_the_original((s, rw) in case()) {
        let rw = fix_echo(&s, rw);
        let orig = build(&s);
        let mut f = orig.clone();
        rewrite(&mut f, ETH, &rw).unwrap();
        rewrite(&mut f, ETH, &reverse(&s, &rw)).unwrap();
        prop_assert_eq!(f, orig);
    }

    /// Noise: never a panic, and an error changes nothing.
    #[test]
    fn arbitrary_bytes_never_panic(
        mut f in proptest::collection::vec(any::<u8>(), 0..120),
        v in any::<u8>(),
        rw in (proptest::option::of((addr(false), any::<u16>())), proptest::option::of((addr(true), any::<u16>()))),
    ) {
        // Make it look like IP often enough to get past the first check.
        if let Some(b) = f.first_mut() {
            *b = if v & 1 == 0 { 0x45 } else { 0x60 };
        }
        let orig = f.clone();
        let rw = NatRewrite { src: rw.0, dst: rw.1.filter(|_| v & 2 != 0) };
        if rewrite(&mut f, 0, &rw).is_err() {
            prop_assert_eq!(f, orig);
        }
    }
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

pub(crate) fn spec(kind: Kind, v6: bool) -> Spec {
    let (src, dst) = if v6 {
        (
            IpAddr::V6("fd00::1".parse().unwrap()),
            IpAddr::V6("fd00::2".parse().unwrap()),
        )
    } else {
        (v4([10, 0, 0, 1]), v4([10, 96, 0, 10]))
    };
    Spec {
        v6,
        ext: false,
        kind,
        src,
        dst,
        sport: 40000,
        dport: 80,
        payload: b"hello".to_vec(),
        router: None,
        pad: 0,
    }
}

#[test]
fn dnat_of_a_tcp_syn_golden() {
    let s = spec(Kind::Tcp, false);
    let mut f = build(&s);
    let rw = NatRewrite {
        src: None,
        dst: Some((v4([10, 1, 2, 3]), 8080)),
    };
    rewrite(&mut f, ETH, &rw).unwrap();
    assert_eq!(&f[ETH + 16..ETH + 20], &[10, 1, 2, 3]);
    assert_eq!(&f[ETH + 22..ETH + 24], &8080u16.to_be_bytes());
    assert_eq!(checksum(&f[ETH..ETH + 20]), 0);
    let mut r = f.clone();
    reference(&mut r, ETH);
    assert_eq!(f, r);
}

/// The same rewrite on a buffer with headroom, as the stage will call it.
#[test]
fn rewrite_in_a_packet_buffer() {
    use crate::buf::{PacketBuf, VecBuf};
    let f = build(&spec(Kind::Udp, true));
    let mut buf = VecBuf::new(&f);
    let to = IpAddr::V6("fd00::99".parse().unwrap());
    let rw = NatRewrite {
        src: None,
        dst: Some((to, 5353)),
    };
    rewrite_buf(&mut buf, ETH, &rw).unwrap();
    let mut want = f.clone();
    rewrite(&mut want, ETH, &rw).unwrap();
    assert_eq!(buf.data(), &want[..]);
    assert_eq!(&buf.data()[ETH + 24..ETH + 40], &ip_bytes(to)[..]);
}

#[test]
fn udp_without_checksum_stays_without() {
    let s = spec(Kind::UdpNoCheck, false);
    let mut f = build(&s);
    assert_eq!(&f[ETH + 26..ETH + 28], &[0, 0]);
    let rw = NatRewrite {
        src: Some((v4([192, 0, 2, 1]), 1024)),
        dst: None,
    };
    rewrite(&mut f, ETH, &rw).unwrap();
    assert_eq!(&f[ETH + 26..ETH + 28], &[0, 0]);
    assert_eq!(checksum(&f[ETH..ETH + 20]), 0);
}

#[test]
fn bad_input_is_refused_and_left_alone() {
    let rw4 = NatRewrite {
        src: Some((v4([192, 0, 2, 1]), 1)),
        dst: None,
    };
    // IPv6 UDP with checksum 0.
    let mut f = build(&spec(Kind::Udp, true));
    f[ETH + 46] = 0;
    f[ETH + 47] = 0;
    let o = f.clone();
    let rw6 = NatRewrite {
        src: Some((IpAddr::V6("fd00::9".parse().unwrap()), 1)),
        dst: None,
    };
    assert_eq!(rewrite(&mut f, ETH, &rw6), Err(NatError::Ipv6UdpNoChecksum));
    assert_eq!(f, o);
    // A v4 address for a v6 packet.
    let mut f = build(&spec(Kind::Tcp, true));
    let o = f.clone();
    assert_eq!(rewrite(&mut f, ETH, &rw4), Err(NatError::FamilyMismatch));
    assert_eq!(f, o);
    // A later fragment.
    let mut f = build(&spec(Kind::Tcp, false));
    f[ETH + 7] = 1;
    let o = f.clone();
    assert_eq!(rewrite(&mut f, ETH, &rw4), Err(NatError::LaterFragment));
    assert_eq!(f, o);
    // Truncated: total length beyond the frame.
    let mut f = build(&spec(Kind::Tcp, false));
    f.truncate(f.len() - 1);
    let o = f.clone();
    assert_eq!(rewrite(&mut f, ETH, &rw4), Err(NatError::Truncated));
    assert_eq!(f, o);
    // GRE is not translated.
    let mut f = build(&spec(Kind::Tcp, false));
    f[ETH + 9] = 47;
    assert_eq!(rewrite(&mut f, ETH, &rw4), Err(NatError::Unsupported));
    // An ICMP error whose quote is cut inside the ports.
    let mut s = spec(Kind::Error(Inner::Tcp), false);
    s.payload.clear();
    let mut f = build(&s);
    let cut = ETH + 20 + 8 + 20 + 4;
    f.truncate(cut);
    f[ETH + 2..ETH + 4].copy_from_slice(&((cut - ETH) as u16).to_be_bytes());
    let o = f.clone();
    assert_eq!(rewrite(&mut f, ETH, &rw4), Err(NatError::Truncated));
    assert_eq!(f, o);
}

/// A client 10.0.0.1 spoke to the VIP 10.96.0.10:80, DNAT'd to 10.1.2.3:8080; a
/// router 192.0.2.254 on the way to the backend sends "port unreachable" quoting
/// the translated packet. Translated with the reply direction's rewrite (source
/// 10.1.2.3:8080 → 10.96.0.10:80), the client sees its own packet quoted.
#[test]
fn icmp_error_quote_is_translated_back() {
    let client = v4([10, 0, 0, 1]);
    let vip = v4([10, 96, 0, 10]);
    let backend = v4([10, 1, 2, 3]);
    let s = Spec {
        src: backend,
        dst: client,
        sport: 8080,
        dport: 40000,
        router: Some(v4([192, 0, 2, 254])),
        ..spec(Kind::Error(Inner::Tcp), false)
    };
    let mut f = build(&s);
    rewrite(
        &mut f,
        ETH,
        &NatRewrite {
            src: Some((vip, 80)),
            dst: None,
        },
    )
    .unwrap();
    let inner = ETH + 28;
    assert_eq!(&f[ETH + 12..ETH + 16], &[192, 0, 2, 254], "router kept");
    assert_eq!(&f[inner + 12..inner + 16], &[10, 0, 0, 1]);
    assert_eq!(&f[inner + 16..inner + 20], &[10, 96, 0, 10]);
    assert_eq!(&f[inner + 22..inner + 24], &80u16.to_be_bytes());
    let mut r = f.clone();
    reference(&mut r, ETH);
    assert_eq!(f, r);
    // From the backend itself: the outer source is translated too.
    let mut f = build(&Spec { router: None, ..s });
    rewrite(
        &mut f,
        ETH,
        &NatRewrite {
            src: Some((vip, 80)),
            dst: None,
        },
    )
    .unwrap();
    assert_eq!(&f[ETH + 12..ETH + 16], &[10, 96, 0, 10]);
}
