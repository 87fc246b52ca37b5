//! `parse` against golden frames, tcpdump's decoding and smoltcp's parsers.

use super::*;
use crate::wire::testvec;
use crate::wire::{
    ArpPacket, ArpRepr, ChecksumCapabilities, Icmpv6Packet, Icmpv6Repr, IpAddress, Ipv4Packet,
    Ipv6Packet, NdiscRepr, TcpPacket, UdpPacket,
};
use proptest::prelude::*;

fn v4(a: [u8; 4]) -> Option<IpAddr> {
    Some(Ipv4Addr::from(a).into())
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn known_std_critical() -> ParseConfig {
    let mut cfg = ParseConfig::default();
    cfg.geneve_known_critical.push((0, 0x80));
    cfg
}

#[test]
fn vxlan_icmp_matches_tcpdump() {
    // 36:dc:85:1e:b3:40 > 00:16:3e:08:71:cf, IPv4, length 148: 192.168.203.1.45149 >
    // 192.168.202.1.4789: VXLAN, flags [I] (0x08), vni 100
    let f = &testvec::VXLAN_ICMP[..];
    let m = parse(f).unwrap();
    assert_eq!(
        (m.src_mac, m.dst_mac),
        (mac("36:dc:85:1e:b3:40"), mac("00:16:3e:08:71:cf"))
    );
    assert_eq!((m.ethertype, m.l3, m.l3_offset), (0x0800, L3Kind::Ipv4, 14));
    assert_eq!(m.src_addr(), v4([192, 168, 203, 1]));
    assert_eq!(m.dst_addr(), v4([192, 168, 202, 1]));
    assert_eq!(
        (m.l4_proto, m.l4_offset, m.src_port, m.dst_port),
        (17, 34, 45149, 4789)
    );
    assert_eq!(
        (m.tunnel, m.tunnel_flags, m.vni),
        (TunnelKind::Vxlan, 0x08, 100)
    );
    assert_eq!(
        (m.inner_offset, m.inner_end, m.inner_protocol),
        (50, 148, 0x6558)
    );
    assert!(!m.is_fragment && m.vlan_count == 0);
    // 00:16:3e:37:f6:04 > 00:30:88:01:00:02, IPv4, length 98: 192.168.203.3 >
    // 192.168.203.5: ICMP echo request, id 1292, seq 1, length 64
    let i = parse_inner(f, &m, &ParseConfig::default()).unwrap();
    assert_eq!(
        (i.src_mac, i.dst_mac),
        (mac("00:16:3e:37:f6:04"), mac("00:30:88:01:00:02"))
    );
    assert_eq!(i.src_addr(), v4([192, 168, 203, 3]));
    assert_eq!(i.dst_addr(), v4([192, 168, 203, 5]));
    assert_eq!(
        (i.l4_proto, i.icmp_type, i.icmp_code, i.src_port),
        (1, 8, 0, 1292)
    );
    assert_eq!(i.l3_end, 98);
    // smoltcp agrees on the outer IPv4 header, checksum included.
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.hop_limit(), m.ttl);
}

#[test]
fn vxlan_arp_inner() {
    // Request who-has 192.168.203.3 tell 192.168.203.5
    let f = &testvec::VXLAN_ARP[..];
    let m = parse(f).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.src_port, m.dst_port),
        (TunnelKind::Vxlan, 100, 42710, 4789)
    );
    let i = parse_inner(f, &m, &ParseConfig::default()).unwrap();
    assert!(i.dst_mac.is_broadcast());
    assert_eq!((i.l3, i.arp_op), (L3Kind::Arp, 1));
    assert_eq!(i.src_addr(), v4([192, 168, 203, 5]));
    assert_eq!(i.dst_addr(), v4([192, 168, 203, 3]));
    assert!(!i.has_l4());
    let inner = &f[usize::from(m.inner_offset)..];
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&inner[14..]).unwrap()).unwrap();
    let ArpRepr::EthernetIpv4 {
        target_protocol_addr,
        ..
    } = arp
    else {
        panic!("not Ethernet/IPv4 ARP: {arp:?}")
    };
    assert_eq!(target_protocol_addr.octets(), [192, 168, 203, 3]);
}

#[test]
fn geneve_unknown_critical_is_dropped_known_is_parsed() {
    // 20.0.0.1.12618 > 20.0.0.2.6081: [no cksum] Geneve, Flags [C], vni 0xa,
    // options [class Standard (0x0) type 0x80(C) len 8 data 0000000c]
    let f = &testvec::GENEVE_ICMP_OPT[..];
    assert_eq!(parse(f), Err(ParseError::GeneveUnknownCritical));
    let cfg = known_std_critical();
    let m = parse_with(f, &cfg).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.tunnel_flags),
        (TunnelKind::Geneve, 0xa, 0x40)
    );
    assert_eq!((m.src_port, m.dst_port), (12618, 6081));
    assert_eq!((m.inner_offset, m.inner_protocol), (42 + 16, 0x6558));
    // 30.0.0.1 > 30.0.0.2: ICMP echo request, id 10578, seq 23, length 64
    let i = parse_inner(f, &m, &cfg).unwrap();
    assert_eq!(i.src_addr(), v4([30, 0, 0, 1]));
    assert_eq!(i.dst_addr(), v4([30, 0, 0, 2]));
    assert_eq!((i.icmp_type, i.src_port, i.ttl), (8, 10578, 64));
}

#[test]
fn geneve_tcp_without_options() {
    // 20.0.0.2.43443 > 20.0.0.1.6081: Geneve, Flags [none], vni 0xb: IP 30.0.0.2.51225 >
    // 30.0.0.1.22: Flags [S], seq 397610159, win 14600, options [mss 1460,...]
    let f = &testvec::GENEVE_TCP_SYN[..];
    let m = parse(f).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.tunnel_flags),
        (TunnelKind::Geneve, 0xb, 0)
    );
    let i = parse_inner(f, &m, &ParseConfig::default()).unwrap();
    assert_eq!((i.src_port, i.dst_port, i.tcp_flags), (51225, 22, 0x02));
    assert_eq!(i.payload_offset - i.l4_offset, 40); // 20 + 20 bytes of options
    let inner = &f[usize::from(m.inner_offset)..];
    let tcp =
        TcpPacket::new_checked(&inner[usize::from(i.l4_offset)..usize::from(i.l3_end)]).unwrap();
    assert_eq!(tcp.seq_number().0 as u32, 397610159);
    assert!(tcp.verify_checksum(&IpAddress::v4(30, 0, 0, 2), &IpAddress::v4(30, 0, 0, 1)));
}

#[test]
fn geneve_ip_payload_with_google_options() {
    // 192.168.100.254.62974 > 192.168.100.3.6081: [no cksum] Geneve, vni 0x0, 3 options;
    // IP 192.168.100.2.2905 > 192.168.100.1.8080: Flags [none]
    let f = &testvec::GENEVE_GCP[..];
    let m = parse(f).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.inner_protocol, m.ttl),
        (TunnelKind::Geneve, 0, 0x0800, 2)
    );
    assert_eq!(m.inner_offset, 42 + 8 + 40);
    let i = parse_inner(f, &m, &ParseConfig::default()).unwrap();
    assert_eq!(
        (i.dst_mac, i.l3_offset, i.l3),
        (MacAddr::default(), 0, L3Kind::Ipv4)
    );
    assert_eq!(i.src_addr(), v4([192, 168, 100, 2]));
    assert_eq!(
        (i.src_port, i.dst_port, i.tcp_flags, i.l4_offset),
        (2905, 8080, 0, 20)
    );
}

#[test]
fn plain_udp_and_qinq() {
    let f = testvec::udp64();
    let m = parse(&f).unwrap();
    assert_eq!(
        (m.l4_proto, m.src_port, m.dst_port, m.ttl),
        (17, 1234, 53, 64)
    );
    assert_eq!(
        (m.tunnel, m.payload_offset, m.l3_end),
        (TunnelKind::None, 42, 60)
    );
    let udp = UdpPacket::new_checked(&f[34..]).unwrap();
    assert!(udp.verify_checksum(&IpAddress::v4(10, 0, 0, 1), &IpAddress::v4(10, 0, 0, 2)));

    let q = testvec::qinq_udp();
    let mq = parse(&q).unwrap();
    assert_eq!(
        mq.vlan_tags(),
        &[VlanTag::new(3, false, 100), VlanTag::new(0, false, 200)]
    );
    assert_eq!((mq.l3_offset, mq.l4_offset), (22, 42));
    assert_eq!(mq.flow_hash(), m.flow_hash());
}

#[test]
fn ipv4_options_shift_l4() {
    let f = testvec::ipv4_options_tcp();
    let m = parse(&f).unwrap();
    assert_eq!((m.l4_offset, m.ttl, m.tcp_flags), (38, 1, 0x02));
    assert_eq!((m.src_port, m.dst_port), (40000, 80));
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.header_len(), 24);
    let tcp = TcpPacket::new_checked(&f[38..]).unwrap();
    assert!(tcp.verify_checksum(&IpAddress::v4(192, 0, 2, 1), &IpAddress::v4(192, 0, 2, 2)));
}

#[test]
fn ipv6_extension_chain() {
    let f = testvec::ipv6_ext_udp();
    let m = parse(&f).unwrap();
    assert_eq!(
        (m.l3, m.ttl, m.l4_proto, m.is_fragment),
        (L3Kind::Ipv6, 255, 17, true)
    );
    assert_eq!(
        (m.l4_offset, m.src_port, m.dst_port),
        (14 + 40 + 24, 5353, 5353)
    );
    assert_eq!(
        m.src_addr(),
        Some(IpAddr::V6(Ipv6Addr::from(testvec::V6_SRC)))
    );
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!(usize::from(ip.payload_len()), f.len() - 54);
}

#[test]
fn icmpv6_neighbor_solicitation() {
    let f = testvec::icmpv6_ns();
    let m = parse(&f).unwrap();
    assert_eq!(
        (m.l4_proto, m.icmp_type, m.icmp_code, m.ttl),
        (58, 135, 0, 255)
    );
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let repr = Icmpv6Repr::parse(
        &ip.src_addr(),
        &ip.dst_addr(),
        &icmp,
        &ChecksumCapabilities::default(),
    )
    .unwrap();
    let Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr,
        lladdr,
    }) = repr
    else {
        panic!("not a neighbor solicitation: {repr:?}")
    };
    assert_eq!(target_addr.octets(), testvec::V6_DST);
    assert!(lladdr.is_some());
}

#[test]
fn tunnel_ports_are_configurable() {
    let mut f = testvec::VXLAN_ICMP.to_vec();
    f[36..38].copy_from_slice(&8472u16.to_be_bytes());
    let m = parse(&f).unwrap();
    assert_eq!((m.tunnel, m.dst_port), (TunnelKind::None, 8472));
    let cfg = ParseConfig::new(TunnelPorts::WITH_LINUX_VXLAN);
    assert_eq!(parse_with(&f, &cfg).unwrap().vni, 100);
    let none = ParseConfig::new(TunnelPorts::NONE);
    assert_eq!(
        parse_with(&testvec::VXLAN_ICMP, &none).unwrap().tunnel,
        TunnelKind::None
    );
}

#[test]
fn flow_hash_symmetry() {
    let a = parse(&testvec::VXLAN_ICMP).unwrap();
    let mut b = a;
    std::mem::swap(&mut b.src_ip, &mut b.dst_ip);
    std::mem::swap(&mut b.src_port, &mut b.dst_port);
    assert_ne!(a.flow_hash(), b.flow_hash());
    assert_eq!(a.symmetric_flow_hash(), b.symmetric_flow_hash());
    let mut c = a;
    c.src_port ^= 1;
    assert_ne!(a.flow_hash(), c.flow_hash());
}

#[test]
fn error_table_is_consistent() {
    let mut names = std::collections::HashSet::new();
    for (i, e) in ParseError::ALL.iter().enumerate() {
        assert_eq!(e.index(), i);
        assert!(names.insert(e.as_str()), "duplicate name {e}");
    }
    println!(
        "size_of::<PacketMeta>() = {}",
        std::mem::size_of::<PacketMeta>()
    );
    assert!(
        std::mem::size_of::<PacketMeta>() <= 96,
        "{}",
        std::mem::size_of::<PacketMeta>()
    );
}

/// Sets a big-endian u16 at `at`.
fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// One frame per error: every variant is reachable, and each malformation maps to its
/// own error.
#[test]
fn noise_maps_to_specific_errors() {
    let udp = testvec::udp64();
    let tcp = testvec::ipv4_options_tcp();
    let v6 = testvec::ipv6_ext_udp();
    let vx = testvec::VXLAN_ICMP.to_vec();
    let gn = testvec::GENEVE_TCP_SYN.to_vec();
    let go = testvec::GENEVE_ICMP_OPT.to_vec();
    let with = |f: &[u8], edit: &dyn Fn(&mut Vec<u8>)| {
        let mut g = f.to_vec();
        edit(&mut g);
        g
    };
    let cases: Vec<(ParseError, Vec<u8>)> = vec![
        (ParseError::FrameTooLong, vec![0; 65536]),
        (ParseError::TruncatedEthernet, udp[..13].to_vec()),
        (
            ParseError::TruncatedVlan,
            testvec::qinq_udp()[..17].to_vec(),
        ),
        (
            ParseError::TooManyVlanTags,
            with(&testvec::qinq_udp(), &|g| put16(g, 20, 0x8100)),
        ),
        (
            ParseError::TruncatedArp,
            testvec::VXLAN_ARP[50..50 + 41].to_vec(),
        ),
        (ParseError::TruncatedIpv4, udp[..33].to_vec()),
        (ParseError::TruncatedIpv4, udp[..59].to_vec()),
        (ParseError::BadIpVersion, with(&udp, &|g| g[14] = 0x65)),
        (ParseError::BadIpVersion, with(&v6, &|g| g[14] = 0x40)),
        (ParseError::BadIhl, with(&udp, &|g| g[14] = 0x44)),
        (
            ParseError::BadTotalLength,
            with(&udp, &|g| put16(g, 16, 19)),
        ),
        (ParseError::TruncatedIpv6, v6[..53].to_vec()),
        (ParseError::TruncatedIpv6, v6[..v6.len() - 1].to_vec()),
        (
            ParseError::TruncatedIpv6Ext,
            with(&v6, &|g| put16(g, 18, 20)),
        ),
        (ParseError::Ipv6ExtTooLong, {
            let mut g = v6[..54].to_vec();
            g[20] = 60;
            for _ in 0..9 {
                g.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
            }
            put16(&mut g, 18, 72);
            g
        }),
        (
            ParseError::Ipv6HopByHopNotFirst,
            with(&v6, &|g| g[54 + 8] = 0),
        ),
        (
            ParseError::TruncatedTcp,
            with(&tcp, &|g| put16(g, 16, 24 + 19)),
        ),
        (
            ParseError::BadTcpDataOffset,
            with(&tcp, &|g| g[38 + 12] = 0x40),
        ),
        (ParseError::TruncatedTcp, with(&tcp, &|g| g[38 + 12] = 0x60)),
        (ParseError::TruncatedUdp, with(&udp, &|g| put16(g, 16, 27))),
        (ParseError::BadUdpLength, with(&udp, &|g| put16(g, 38, 7))),
        (ParseError::BadUdpLength, with(&udp, &|g| put16(g, 38, 27))),
        (
            ParseError::TruncatedIcmp,
            with(&testvec::icmpv6_ns(), &|g| put16(g, 18, 3)),
        ),
        (
            ParseError::TruncatedIcmp,
            with(&vx, &|g| {
                // inner echo request cut to 7 bytes of ICMP: IP total length 27
                put16(g, 50 + 16, 27)
            }),
        ),
        (ParseError::TruncatedVxlan, with(&vx, &|g| put16(g, 38, 15))),
        (ParseError::BadVxlanFlags, with(&vx, &|g| g[42] = 0)),
        (
            ParseError::TruncatedGeneve,
            with(&gn, &|g| put16(g, 38, 15)),
        ),
        (ParseError::GeneveBadVersion, with(&gn, &|g| g[42] = 0x40)),
        (ParseError::GeneveOptTooLong, with(&gn, &|g| g[42] = 0x3f)),
        (ParseError::GeneveBadOption, with(&go, &|g| g[42 + 11] = 2)),
        (ParseError::GeneveUnknownCritical, go.clone()),
    ];
    let mut seen = std::collections::HashSet::new();
    for (want, frame) in &cases {
        let got = if *want == ParseError::TruncatedIcmp && frame.len() == vx.len() {
            let m = parse(frame).unwrap();
            parse_inner(frame, &m, &ParseConfig::default())
        } else {
            parse(frame)
        };
        assert_eq!(got, Err(*want), "frame of {} bytes", frame.len());
        seen.insert(*want);
    }
    for e in ParseError::ALL {
        assert!(seen.contains(e), "no test for {e}");
    }
}

#[test]
fn every_prefix_of_every_golden_frame_parses_or_errs() {
    let cfg = known_std_critical();
    for (name, frame) in testvec::all() {
        let full = parse_with(&frame, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        if full.tunnel != TunnelKind::None {
            parse_inner(&frame, &full, &cfg).unwrap_or_else(|e| panic!("{name} inner: {e}"));
        }
        for len in 0..frame.len() {
            if let Ok(m) = parse_with(&frame[..len], &cfg) {
                // A prefix parses only where the cut falls in padding or unread bytes.
                assert!(usize::from(m.l3_end) <= len, "{name}[..{len}]");
                let _ = parse_inner(&frame[..len], &m, &cfg);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(m) = parse(&bytes) {
            prop_assert!(usize::from(m.l3_end) <= bytes.len());
            let _ = parse_inner(&bytes, &m, &ParseConfig::default());
        }
    }

    #[test]
    fn mutated_golden_frames_never_panic(
        which in 0usize..10,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = testvec::all().swap_remove(which).1;
        for (i, v) in flips {
            let at = i.index(frame.len());
            frame[at] = v;
        }
        let len = cut.index(frame.len() + 1);
        let cfg = known_std_critical();
        if let Ok(m) = parse_with(&frame[..len], &cfg) {
            let _ = parse_inner(&frame[..len], &m, &cfg);
            let _ = m.flow_hash();
        }
    }
}
