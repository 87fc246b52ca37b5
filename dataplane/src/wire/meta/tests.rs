//! `parse` against the hand-built golden frames of `testvec` and smoltcp's parsers.

use super::*;
use crate::wire::testvec;
use crate::wire::{
    ArpPacket, ArpRepr, ChecksumCapabilities, Icmpv4Packet, Icmpv6Packet, Icmpv6Repr, IpAddress,
    Ipv4Packet, Ipv6Packet, NdiscRepr, TcpPacket, UdpPacket,
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
    cfg.geneve_known_critical.push((0, 0x81));
    cfg
}

#[test]
fn vxlan_icmp_fields() {
    // 02:00:00:00:01:01 > 02:00:00:00:01:02, IPv4, length 148: 10.1.0.1.50001 >
    // 10.2.0.1.4789: VXLAN, flags [I] (0x08), vni 5001
    let f = &testvec::VXLAN_ICMP[..];
    let m = parse(f).unwrap();
    assert_eq!(
        (m.src_mac, m.dst_mac),
        (mac("02:00:00:00:01:01"), mac("02:00:00:00:01:02"))
    );
    assert_eq!((m.ethertype, m.l3, m.l3_offset), (0x0800, L3Kind::Ipv4, 14));
    assert_eq!(m.src_addr(), v4([10, 1, 0, 1]));
    assert_eq!(m.dst_addr(), v4([10, 2, 0, 1]));
    assert_eq!(
        (m.l4_proto, m.l4_offset, m.src_port, m.dst_port, m.ttl),
        (17, 34, 50001, 4789, 64)
    );
    assert_eq!(
        (m.tunnel, m.tunnel_flags, m.vni),
        (TunnelKind::Vxlan, 0x08, 5001)
    );
    assert_eq!(
        (m.inner_offset, m.inner_end, m.inner_protocol),
        (50, 148, 0x6558)
    );
    assert!(!m.is_fragment && m.vlan_count == 0);
    // 02:00:00:aa:00:01 > 02:00:00:aa:00:02, IPv4, length 98: 172.16.0.1 >
    // 172.16.0.2: ICMP echo request, id 0x1234, seq 1, length 64
    let i = parse_inner(f, &m, &ParseConfig::default()).unwrap();
    assert_eq!(
        (i.src_mac, i.dst_mac),
        (mac("02:00:00:aa:00:01"), mac("02:00:00:aa:00:02"))
    );
    assert_eq!(i.src_addr(), v4([172, 16, 0, 1]));
    assert_eq!(i.dst_addr(), v4([172, 16, 0, 2]));
    assert_eq!(
        (i.l4_proto, i.icmp_type, i.icmp_code, i.src_port),
        (1, 8, 0, 0x1234)
    );
    assert_eq!(i.l3_end, 98);
    // smoltcp agrees on the outer IPv4 header and UDP datagram, checksums included,
    // and on the inner IPv4 header and ICMP message.
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.hop_limit(), m.ttl);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&IpAddress::v4(10, 1, 0, 1), &IpAddress::v4(10, 2, 0, 1)));
    let inner = Ipv4Packet::new_checked(&f[usize::from(m.inner_offset) + 14..]).unwrap();
    assert!(inner.verify_checksum());
    let icmp = Icmpv4Packet::new_checked(inner.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x1234, 1));
}

#[test]
fn vxlan_arp_inner() {
    // Request who-has 172.16.0.1 tell 172.16.0.2
    let f = &testvec::VXLAN_ARP[..];
    let m = parse(f).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.src_port, m.dst_port, m.ttl),
        (TunnelKind::Vxlan, 5001, 50002, 4789, 63)
    );
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&IpAddress::v4(10, 2, 0, 1), &IpAddress::v4(10, 1, 0, 1)));
    let i = parse_inner(f, &m, &ParseConfig::default()).unwrap();
    assert!(i.dst_mac.is_broadcast());
    assert_eq!(i.src_mac, mac("02:00:00:aa:00:02"));
    assert_eq!((i.l3, i.arp_op), (L3Kind::Arp, 1));
    assert_eq!(i.src_addr(), v4([172, 16, 0, 2]));
    assert_eq!(i.dst_addr(), v4([172, 16, 0, 1]));
    assert!(!i.has_l4());
    let inner = &f[usize::from(m.inner_offset)..];
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&inner[14..]).unwrap()).unwrap();
    let ArpRepr::EthernetIpv4 {
        source_hardware_addr,
        target_protocol_addr,
        ..
    } = arp
    else {
        panic!("not Ethernet/IPv4 ARP: {arp:?}")
    };
    assert_eq!(source_hardware_addr.0, [0x02, 0, 0, 0xaa, 0, 0x02]);
    assert_eq!(target_protocol_addr.octets(), [172, 16, 0, 1]);
}

/// An OAM packet is well formed: the parse keeps its flags byte (O bit included)
/// for the decap stage, which refuses to forward its payload as data.
#[test]
fn geneve_oam_bit_is_kept_in_tunnel_flags() {
    let mut f = testvec::GENEVE_ICMP_OPT.to_vec();
    f[42 + 1] |= geneve::FLAG_O;
    let m = parse_with(&f, &known_std_critical()).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.tunnel_flags),
        (TunnelKind::Geneve, 7001, 0xc0)
    );
    assert_ne!(m.tunnel_flags & geneve::FLAG_O, 0);
}

/// VXLAN's flags byte without I (0x08), whatever else is set: no VNI.
#[test]
fn vxlan_without_the_i_flag_is_bad_vxlan_flags() {
    for flags in [0x00, 0x80, 0xf7] {
        let mut f = testvec::VXLAN_ICMP.to_vec();
        f[42] = flags;
        assert_eq!(parse(&f), Err(ParseError::BadVxlanFlags), "{flags:#04x}");
    }
}

#[test]
fn geneve_unknown_critical_is_dropped_known_is_parsed() {
    // 10.3.0.1.50003 > 10.3.0.2.6081: Geneve, Flags [C], vni 7001,
    // options [class 0x0 type 0x81(C) len 8 data 0000002a]
    let f = &testvec::GENEVE_ICMP_OPT[..];
    assert_eq!(parse(f), Err(ParseError::GeneveUnknownCritical));
    let cfg = known_std_critical();
    let m = parse_with(f, &cfg).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.tunnel_flags),
        (TunnelKind::Geneve, 7001, 0x40)
    );
    assert_eq!((m.src_port, m.dst_port), (50003, 6081));
    assert_eq!((m.inner_offset, m.inner_protocol), (42 + 16, 0x6558));
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&IpAddress::v4(10, 3, 0, 1), &IpAddress::v4(10, 3, 0, 2)));
    // 192.168.50.1 > 192.168.50.2: ICMP echo request, id 0x0a0a, seq 5, length 64
    let i = parse_inner(f, &m, &cfg).unwrap();
    assert_eq!(i.src_addr(), v4([192, 168, 50, 1]));
    assert_eq!(i.dst_addr(), v4([192, 168, 50, 2]));
    assert_eq!((i.icmp_type, i.src_port, i.ttl), (8, 0x0a0a, 64));
    let inner = Ipv4Packet::new_checked(&f[usize::from(m.inner_offset) + 14..]).unwrap();
    assert!(inner.verify_checksum());
    assert!(Icmpv4Packet::new_checked(inner.payload())
        .unwrap()
        .verify_checksum());
}

#[test]
fn geneve_tcp_without_options() {
    // 10.3.0.2.50004 > 10.3.0.1.6081: Geneve, Flags [none], vni 7002: IP
    // 192.168.50.2.40000 > 192.168.50.1.443: Flags [S], seq 0x0badcafe, win 64240,
    // options [mss 1460, sackOK, TS val 4096 ecr 0, nop, wscale 7]
    let f = &testvec::GENEVE_TCP_SYN[..];
    let m = parse(f).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.tunnel_flags, m.src_port),
        (TunnelKind::Geneve, 7002, 0, 50004)
    );
    let udp = UdpPacket::new_checked(&f[34..]).unwrap();
    assert!(udp.verify_checksum(&IpAddress::v4(10, 3, 0, 2), &IpAddress::v4(10, 3, 0, 1)));
    let i = parse_inner(f, &m, &ParseConfig::default()).unwrap();
    assert_eq!((i.src_port, i.dst_port, i.tcp_flags), (40000, 443, 0x02));
    assert_eq!(i.payload_offset - i.l4_offset, 40); // 20 + 20 bytes of options
    let inner = &f[usize::from(m.inner_offset)..];
    assert!(Ipv4Packet::new_checked(&inner[14..])
        .unwrap()
        .verify_checksum());
    let tcp =
        TcpPacket::new_checked(&inner[usize::from(i.l4_offset)..usize::from(i.l3_end)]).unwrap();
    assert_eq!(tcp.seq_number().0 as u32, 0x0bad_cafe);
    assert_eq!(tcp.window_len(), 64240);
    assert!(tcp.verify_checksum(
        &IpAddress::v4(192, 168, 50, 2),
        &IpAddress::v4(192, 168, 50, 1)
    ));
}

#[test]
fn geneve_ip_payload_with_three_options() {
    // 10.4.0.1.50005 > 10.4.0.2.6081: [no cksum] Geneve, vni 300, 3 options;
    // IP 10.20.0.2.33000 > 10.20.0.1.8080: Flags [.]
    let f = &testvec::GENEVE_IP_OPTS[..];
    let m = parse(f).unwrap();
    assert_eq!(
        (m.tunnel, m.vni, m.inner_protocol, m.ttl),
        (TunnelKind::Geneve, 300, 0x0800, 3)
    );
    assert_eq!(m.inner_offset, 42 + 8 + 40);
    let i = parse_inner(f, &m, &ParseConfig::default()).unwrap();
    assert_eq!(
        (i.dst_mac, i.l3_offset, i.l3),
        (MacAddr::default(), 0, L3Kind::Ipv4)
    );
    assert_eq!(i.src_addr(), v4([10, 20, 0, 2]));
    assert_eq!(i.dst_addr(), v4([10, 20, 0, 1]));
    assert_eq!(
        (i.src_port, i.dst_port, i.tcp_flags, i.l4_offset),
        (33000, 8080, 0x10, 20)
    );
    let ip = Ipv4Packet::new_checked(&f[usize::from(m.inner_offset)..]).unwrap();
    assert!(ip.verify_checksum());
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(&IpAddress::v4(10, 20, 0, 2), &IpAddress::v4(10, 20, 0, 1)));
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
    assert_eq!(parse_with(&f, &cfg).unwrap().vni, 5001);
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
            // The unparsed hash agrees with the parse wherever both answer.
            if let Some(h) = ipv4_flow_hash(&frame[..len]) {
                prop_assert_eq!(h, m.flow_hash());
            }
            // ...and so does the inner frame's.
            if m.tunnel != TunnelKind::None {
                let inner = &frame[usize::from(m.inner_offset)..usize::from(m.inner_end)];
                if let (Ok(i), Some(h)) = (parse_with(inner, &cfg), ipv4_flow_hash(inner)) {
                    prop_assert_eq!(h, i.flow_hash());
                }
            }
        }
    }
}

#[test]
fn unparsed_flow_hash_matches_the_parse_on_every_golden_ipv4_frame() {
    let cfg = known_std_critical();
    let mut checked = 0;
    for (name, frame) in testvec::all() {
        let m = parse_with(&frame, &cfg).unwrap();
        let frames = [
            frame.clone(),
            frame[usize::from(m.inner_offset)..usize::from(m.inner_end)].to_vec(),
        ];
        for f in frames.iter().filter(|f| !f.is_empty()) {
            let Ok(m) = parse_with(f, &cfg) else { continue };
            let fast = ipv4_flow_hash(f);
            if m.l3 == L3Kind::Ipv4 && m.vlan_count == 0 {
                assert_eq!(fast, Some(m.flow_hash()), "{name}");
                checked += 1;
            } else {
                assert_eq!(fast, None, "{name}: not untagged IPv4");
            }
        }
    }
    assert!(checked >= 5, "{checked}");
}

/// Found by the fuzzer: an IPv4 header naming ICMPv6 (58) with an echo-reply type
/// after it. The parse read it as ICMP and hashed the echo identifier, the unparsed
/// hash did not; now neither treats ICMPv6 in IPv4 (or ICMP in IPv6) as ICMP.
#[test]
fn icmp_of_the_other_family_is_not_icmp() {
    let mut f = vec![2, 0, 0, 0, 1, 1, 2, 0, 0, 0, 1, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 32, 0x3a, 0xff, 0, 0, 64, IPPROTO_ICMPV6, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[129, 0, 0, 0, 0x12, 0x34, 0, 1, 0, 0, 0, 0]);
    let m = parse(&f).unwrap();
    assert_eq!((m.icmp_type, m.src_port, m.dst_port), (0, 0, 0));
    assert_eq!(ipv4_flow_hash(&f), Some(m.flow_hash()));
    // The same bytes as ICMP are an echo reply with its identifier as both ports.
    f[14 + 9] = IPPROTO_ICMP;
    f[34] = 0;
    let m = parse(&f).unwrap();
    assert_eq!((m.src_port, m.dst_port), (0x1234, 0x1234));
    assert_eq!(ipv4_flow_hash(&f), Some(m.flow_hash()));
}
