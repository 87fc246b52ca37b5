//! Key extraction: every field lands in its place, and every frame the parse
//! would refuse or the stages treat apart is refused.

use super::*;
use crate::buf::{PacketBuf, VecBuf};
use crate::pipeline::reply;

const PORT: PortIdx = PortIdx(7);
const LOCAL: [u8; 4] = [192, 0, 2, 1];

/// An untagged IPv4 frame: `proto` with `l4` after a header without options.
fn ipv4(proto: u8, ttl: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0xb1, 0x02, 0, 0, 0, 0, 0xa1, 0x08, 0x00];
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, 0, total.to_be_bytes()[0], total.to_be_bytes()[1]]);
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, ttl, proto, 0, 0]);
    f.extend_from_slice(&[10, 1, 0, 10, 10, 2, 0, 20]);
    f.extend_from_slice(l4);
    f
}

fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend(std::iter::repeat_n(0xab, payload));
    l4
}

fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[12] = 5 << 4;
    l4
}

fn tunnelled(inner: &[u8], tunnel: TunnelKind, vni: u32, dst: [u8; 4]) -> Vec<u8> {
    let mut b = VecBuf::new(inner);
    let o = reply::OuterHeaders {
        src_mac: crate::MacAddr([2, 0, 0, 0, 0xff, 2]),
        dst_mac: crate::MacAddr([2, 0, 0, 0, 0xff, 1]),
        src_ip: [192, 0, 2, 2].into(),
        dst_ip: dst.into(),
        src_port: 50123,
        dst_port: match tunnel {
            TunnelKind::Geneve => wire::GENEVE_PORT,
            _ => wire::VXLAN_PORT,
        },
        tunnel,
        vni,
    };
    assert!(reply::push_outer(&mut b, &o));
    b.data().to_vec()
}

fn cfg() -> ParseConfig {
    ParseConfig::default()
}

#[test]
fn every_field_of_a_pod_frame_lands_in_its_word() {
    let f = ipv4(wire::IPPROTO_UDP, 64, &udp(40000, 53, 10));
    let e = local(PORT, &f, &cfg()).unwrap();
    let k = e.key.0;
    assert_eq!(k[0] & 0xffff, 7, "port");
    assert_eq!(k[0] >> 16 & 0xff, u64::from(wire::IPPROTO_UDP), "protocol");
    assert_eq!(k[0] >> 24 & 0xff, Shape::Local4 as u64, "shape");
    assert_eq!(k[1], 0x0200_0000_00b1, "destination MAC");
    assert_eq!(k[2], 0x0a01_000a_0a02_0014, "addresses");
    assert_eq!(k[3], u64::from(40000u32 << 16 | 53), "ports");
    assert_eq!(k[4], 0);
    assert_eq!(e.inner_len, 0);
    // The parse agrees on every field the key holds.
    let m = wire::parse(&f).unwrap();
    assert_eq!((m.src_port, m.dst_port, m.l4_proto), (40000, 53, 17));
    // TCP; ICMP echo (its id as both ports, its type kept); another ICMP type.
    let t = local(PORT, &ipv4(wire::IPPROTO_TCP, 64, &tcp(1, 2)), &cfg()).unwrap();
    assert_eq!(t.key.0[3], 1 << 16 | 2);
    let echo = [8, 0, 0, 0, 0xbe, 0xef, 0, 1];
    let i = local(PORT, &ipv4(wire::IPPROTO_ICMP, 64, &echo), &cfg()).unwrap();
    assert_eq!(i.key.0[3], 0xbeef << 16 | 0xbeef);
    assert_eq!(i.key.0[0] >> 32 & 0xff, 8, "ICMP type");
    let unreachable = [3, 1, 0, 0, 0, 0, 0, 0];
    let u = local(PORT, &ipv4(wire::IPPROTO_ICMP, 64, &unreachable), &cfg()).unwrap();
    assert_eq!((u.key.0[3], u.key.0[0] >> 32 & 0xff), (0, 3));
    // Another protocol: no ports.
    let gre = local(PORT, &ipv4(47, 64, &[1, 2, 3, 4]), &cfg()).unwrap();
    assert_eq!((gre.key.0[3], gre.key.0[0] >> 16 & 0xff), (0, 47));
}

#[test]
fn each_field_changes_the_key_and_the_rest_does_not() {
    let f = ipv4(wire::IPPROTO_UDP, 64, &udp(40000, 53, 10));
    let base = local(PORT, &f, &cfg()).unwrap().key;
    // Bytes whose change must change the key: MAC, addresses, ports, protocol.
    for at in (0..6).chain(26..34).chain(34..38) {
        let mut g = f.clone();
        g[at] ^= 0x10;
        let k = local(PORT, &g, &cfg()).map(|e| e.key);
        assert!(k.is_some_and(|k| k != base), "byte {at}");
    }
    assert_ne!(local(PortIdx(8), &f, &cfg()).unwrap().key, base, "port");
    // Bytes no stage reads for the verdict: source MAC, TOS, ID, TTL, checksums,
    // payload. (The TTL is a per-packet guard of a routed action.)
    for at in (6..12).chain([15, 18, 19, 22, 24, 25, 40, 41, 45]) {
        let mut g = f.clone();
        g[at] ^= 0x10;
        assert_eq!(local(PORT, &g, &cfg()).unwrap().key, base, "byte {at}");
    }
    // Another length of the same flow.
    let longer = ipv4(wire::IPPROTO_UDP, 64, &udp(40000, 53, 900));
    assert_eq!(local(PORT, &longer, &cfg()).unwrap().key, base);
    assert_ne!(
        base.hash(),
        local(PortIdx(8), &f, &cfg()).unwrap().key.hash()
    );
}

#[test]
fn frames_the_extractor_does_not_understand_are_refused() {
    let f = ipv4(wire::IPPROTO_UDP, 64, &udp(40000, 53, 10));
    type Mangle = (&'static str, fn(&mut Vec<u8>));
    let refused: [Mangle; 16] = [
        ("VLAN tag", |f| f[12..14].copy_from_slice(&[0x81, 0])),
        ("ARP", |f| f[12..14].copy_from_slice(&[0x08, 0x06])),
        ("IPv6", |f| f[12..14].copy_from_slice(&[0x86, 0xdd])),
        ("IP options", |f| f[14] = 0x46),
        ("version 6 in an IPv4 frame", |f| f[14] = 0x65),
        ("more fragments", |f| f[20] |= 0x20),
        ("later fragment", |f| f[21] = 1),
        ("total length past the frame", |f| f[17] += 1),
        ("total length under the header", |f| {
            f[16..18].copy_from_slice(&[0, 19])
        }),
        ("UDP length past the packet", |f| f[39] += 1),
        ("UDP length under its header", |f| {
            f[38..40].copy_from_slice(&[0, 7])
        }),
        ("UDP to the VXLAN port", |f| {
            f[36..38].copy_from_slice(&4789u16.to_be_bytes())
        }),
        ("UDP to the Geneve port", |f| {
            f[36..38].copy_from_slice(&6081u16.to_be_bytes())
        }),
        ("runt", |f| f.truncate(33)),
        ("no L4 header", |f| {
            f.truncate(34);
            f[16..18].copy_from_slice(&[0, 20]);
        }),
        ("too long for the parse", |f| f.resize(65536, 0)),
    ];
    for (name, mangle) in refused {
        let mut g = f.clone();
        mangle(&mut g);
        assert!(local(PORT, &g, &cfg()).is_none(), "{name}");
    }
    // TCP with a short header or a bad data offset; ICMP echo cut short.
    let mut t = ipv4(wire::IPPROTO_TCP, 64, &tcp(1, 2));
    t[46] = 4 << 4;
    assert!(local(PORT, &t, &cfg()).is_none(), "TCP data offset 16");
    let mut t = ipv4(wire::IPPROTO_TCP, 64, &tcp(1, 2));
    t[46] = 6 << 4;
    assert!(
        local(PORT, &t, &cfg()).is_none(),
        "TCP data offset past the packet"
    );
    assert!(local(PORT, &ipv4(wire::IPPROTO_TCP, 64, &[0; 19]), &cfg()).is_none());
    assert!(local(
        PORT,
        &ipv4(wire::IPPROTO_ICMP, 64, &[8, 0, 0, 0, 0, 1]),
        &cfg()
    )
    .is_none());
    assert!(local(PORT, &ipv4(wire::IPPROTO_ICMP, 64, &[3, 0, 0]), &cfg()).is_none());
    // Everything the extractor accepts, the parse accepts: over mangled frames.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut accepted = 0;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut g = if seed & 1 == 0 {
            f.clone()
        } else {
            ipv4(6, 64, &tcp(5, 6))
        };
        let at = 12 + (seed >> 8) as usize % (g.len() - 12);
        g[at] = (seed >> 32) as u8;
        if seed >> 60 == 0 {
            g.truncate(14 + (seed >> 40) as usize % 40);
        }
        if local(PORT, &g, &cfg()).is_some() {
            accepted += 1;
            assert!(wire::parse(&g).is_ok(), "{g:02x?}");
        }
    }
    assert!(accepted > 1000, "{accepted}");
}

#[test]
fn every_field_of_a_tunnel_packet_lands_in_its_word() {
    let inner = ipv4(wire::IPPROTO_UDP, 64, &udp(40000, 53, 10));
    let want_inner = local(PORT, &inner, &cfg()).unwrap().key.0;
    for (tunnel, shape) in [
        (TunnelKind::Vxlan, Shape::Vxlan4),
        (TunnelKind::Geneve, Shape::Geneve4),
    ] {
        let mut f = tunnelled(&inner, tunnel, 0xabcdef, LOCAL);
        let e = uplink(PORT, LOCAL, &f, &cfg()).unwrap();
        let k = e.key.0;
        assert_eq!(k[0] >> 24 & 0xff, shape as u64, "{tunnel:?}");
        let no_shape = 0xffff_ffff_00ff_ffff;
        assert_eq!(k[0] & no_shape, want_inner[0] & no_shape, "{tunnel:?}");
        assert_eq!(&k[1..3], &want_inner[1..3], "{tunnel:?}");
        assert_eq!(k[3], want_inner[3] | 0xabcdef << 32, "{tunnel:?}: VNI");
        let port = if tunnel == TunnelKind::Vxlan {
            4789u64
        } else {
            6081
        };
        assert_eq!(k[4], 0xc000_0201 | port << 32, "{tunnel:?}");
        assert_eq!(usize::from(e.inner_len), inner.len(), "{tunnel:?}");
        // Padding after the UDP payload is not the inner frame's.
        f.extend_from_slice(&[0; 6]);
        assert_eq!(
            uplink(PORT, LOCAL, &f, &cfg()),
            Some(e),
            "{tunnel:?}: padded"
        );
    }
}

#[test]
fn tunnel_packets_the_extractor_does_not_understand_are_refused() {
    let inner = ipv4(wire::IPPROTO_UDP, 64, &udp(40000, 53, 10));
    let vxlan = tunnelled(&inner, TunnelKind::Vxlan, 100, LOCAL);
    let geneve = tunnelled(&inner, TunnelKind::Geneve, 100, LOCAL);
    assert!(uplink(PORT, LOCAL, &vxlan, &cfg()).is_some());
    assert!(uplink(PORT, LOCAL, &geneve, &cfg()).is_some());
    assert!(
        uplink(PORT, [192, 0, 2, 9], &vxlan, &cfg()).is_none(),
        "not to us"
    );
    assert!(uplink(
        PORT,
        LOCAL,
        &vxlan,
        &ParseConfig::new(wire::TunnelPorts::NONE)
    )
    .is_none());
    type Mangle = (&'static str, fn(&mut Vec<u8>));
    let refused: [Mangle; 12] = [
        ("outer VLAN", |f| f[12..14].copy_from_slice(&[0x81, 0])),
        ("outer options", |f| f[14] = 0x46),
        ("outer fragment", |f| f[20] |= 0x20),
        ("outer TCP", |f| f[23] = 6),
        ("outer total length past the frame", |f| f[17] += 1),
        ("UDP length past the packet", |f| f[39] += 1),
        ("another UDP port", |f| f[37] ^= 1),
        ("VXLAN without the I flag", |f| f[42] = 0),
        ("inner VLAN", |f| f[62..64].copy_from_slice(&[0x81, 0])),
        ("inner options", |f| f[64] = 0x46),
        ("inner fragment", |f| f[71] = 1),
        ("inner cut short", |f| {
            let udp = u16::from_be_bytes([f[38], f[39]]) - 20;
            f[38..40].copy_from_slice(&udp.to_be_bytes());
        }),
    ];
    for (name, mangle) in refused {
        let mut g = vxlan.clone();
        mangle(&mut g);
        assert!(uplink(PORT, LOCAL, &g, &cfg()).is_none(), "{name}");
    }
    for (name, mangle) in [
        (
            "Geneve options",
            (|f: &mut Vec<u8>| f[42] = 1) as fn(&mut Vec<u8>),
        ),
        ("Geneve OAM", |f| f[43] |= wire::geneve::FLAG_O),
        ("Geneve carrying IPv4", |f| {
            f[44..46].copy_from_slice(&[0x08, 0])
        }),
        ("Geneve version 1", |f| f[42] = 0x40),
    ] {
        let mut g = geneve.clone();
        mangle(&mut g);
        assert!(uplink(PORT, LOCAL, &g, &cfg()).is_none(), "{name}");
    }
}

#[test]
fn a_frame_that_reads_the_same_has_the_same_key() {
    // Every byte the extractor reads is in the masks: a frame changed in one
    // byte that the masks leave out extracts to what the original does, and a
    // change the masks see is seen. Over TCP, UDP, ICMP echo and other
    // protocols, from a pod and tunnelled.
    let frames = [
        ipv4(wire::IPPROTO_UDP, 64, &udp(40000, 53, 30)),
        ipv4(wire::IPPROTO_TCP, 64, &tcp(1, 2)),
        ipv4(
            wire::IPPROTO_ICMP,
            64,
            &[8, 0, 0, 0, 0xbe, 0xef, 0, 1, 2, 3, 4, 5],
        ),
        ipv4(47, 64, &[0; 20]),
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut unseen, mut seen) = (0, 0);
    for f in &frames {
        for tunnelled_too in [false, true] {
            let a = if tunnelled_too {
                tunnelled(f, TunnelKind::Vxlan, 100, LOCAL)
            } else {
                f.clone()
            };
            let extract = |g: &[u8]| {
                if tunnelled_too {
                    uplink(PORT, LOCAL, g, &cfg())
                } else {
                    local(PORT, g, &cfg())
                }
            };
            let same = |x: &[u8], y: &[u8]| {
                if tunnelled_too {
                    same_uplink(x, y)
                } else {
                    same_local(x, y)
                }
            };
            let want = extract(&a).expect("the original is understood");
            for at in 0..a.len() {
                for _ in 0..4 {
                    let mut b = a.clone();
                    b[at] = next() as u8;
                    if b == a {
                        continue;
                    }
                    if same(&a, &b) {
                        assert_eq!(extract(&b), Some(want), "byte {at} read but not masked");
                        unseen += 1;
                    } else {
                        seen += 1;
                    }
                }
            }
            // Another length is never the same.
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same(&a, &longer));
        }
    }
    assert!(unseen > 1000 && seen > 1000, "{unseen} {seen}");
}
