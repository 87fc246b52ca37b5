//! Pipeline tests on real bytes in `VecBuf`s: every stage's verdict and the bytes
//! it leaves behind, re-parsed with the wire parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::buf::VecBuf;
use crate::ethernet::MacAddr;
use crate::l2::L2PipelineBuilder;
use crate::overlay::spec::{
    Encap, LocalEndpointSpec, NetworkSpec, RemoteEndpointSpec, RouteSpec, RouteTarget, UnderlaySpec,
};
use crate::overlay::{LearnOutcome, NeighborConfig, NeighborTable, OverlayBuilder, OverlayChange};
use crate::wire::checksum::{fold, sum_raw};
use crate::wire::{self, L3Kind, TunnelKind};

const POD_A: PortIdx = PortIdx(0);
const POD_B: PortIdx = PortIdx(1);
const POD_RED: PortIdx = PortIdx(2);
const UPLINK: PortIdx = PortIdx(3);
const POD_C: PortIdx = PortIdx(4);

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0c]);
const R: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x20]);
const G_BLUE: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 1]);
const G_GREEN: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 2]);
const G_RED: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 3]);
const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 1]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 2]);
const UNKNOWN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x99]);

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(
    name: &str,
    vni: u32,
    encap: Encap,
    tenant: &str,
    subnet: &str,
    gw: &[&str],
    gmac: MacAddr,
) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        policy_on_change: Default::default(),
        vni,
        encap,
        tenant: tenant.into(),
        subnets: subnet.split(',').map(|s| s.parse().unwrap()).collect(),
        gateway_ips: gw.iter().map(|s| s.parse().unwrap()).collect(),
        gateway_mac: gmac,
        flood_unknown: false,
        // red, alone in its tenant, is tracked: every scenario's traffic meets
        // a tracked network beside untracked ones, and the differential tests
        // hold the flow table's hook to the stages there too.
        conntrack: name == "red",
        conntrack_window_tracking: true,
        vteps: vec!["192.0.2.2".parse().unwrap()],
    }
}

fn local(network: &str, mac: MacAddr, ips: &[&str], port: PortIdx) -> LocalEndpointSpec {
    LocalEndpointSpec {
        network: network.into(),
        mac,
        ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        port,
    }
}

/// The underlay address of VTEP `n` (the local one is 1): 192.0.2.n, or 2001:db8::n
/// on an IPv6 underlay.
fn vtep_ip(v6: bool, n: u16) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n as u8))
    }
}

/// blue (VNI 100, VXLAN) and green (VNI 200, Geneve) in tenant t1; red (VNI 300)
/// in tenant t2 reuses blue's subnet, MAC and address for its pod. The underlay is
/// IPv4 or (`v6`) IPv6, the uplink's MAC `uplink_mac`, and the remote endpoint R
/// sits behind VTEP `r_vtep`.
fn fixture(generation: u64, v6: bool, uplink_mac: MacAddr, r_vtep: u16) -> OverlayBuilder {
    let on_vteps = |mut n: NetworkSpec| {
        n.vteps = vec![vtep_ip(v6, 2)];
        n
    };
    let mut b = OverlayBuilder::new(generation);
    b.underlay(UnderlaySpec {
        uplink: UPLINK,
        local_vtep_ip: vtep_ip(v6, 1),
        local_mac: uplink_mac,
        mtu: 1500,
        on_link: if v6 { "2001:db8::/64" } else { "192.0.2.0/24" }
            .parse()
            .unwrap(),
        gateway: None,
    })
    .network(on_vteps(net(
        "blue",
        100,
        Encap::Vxlan,
        "t1",
        "10.1.0.0/24,fd00:1::/64",
        &["10.1.0.1", "fd00:1::1"],
        G_BLUE,
    )))
    .network(on_vteps(net(
        "green",
        200,
        Encap::Geneve,
        "t1",
        "10.2.0.0/24,fd00:2::/64",
        &["10.2.0.1", "fd00:2::1"],
        G_GREEN,
    )))
    .network(on_vteps(net(
        "red",
        300,
        Encap::Vxlan,
        "t2",
        "10.1.0.0/24",
        &["10.1.0.1"],
        G_RED,
    )))
    .local_endpoint(local("blue", A, &["10.1.0.10", "fd00:1::10"], POD_A))
    .local_endpoint(local("blue", B, &["10.1.0.11"], POD_B))
    .local_endpoint(local("red", A, &["10.1.0.10"], POD_RED))
    .local_endpoint(local("green", C, &["10.2.0.10", "fd00:2::10"], POD_C))
    .remote_endpoint(RemoteEndpointSpec {
        network: "blue".into(),
        mac: R,
        ips: vec!["10.1.0.20".parse().unwrap(), "fd00:1::20".parse().unwrap()],
        vtep: vtep_ip(v6, r_vtep),
    });
    b
}

fn pipeline() -> Pipeline {
    let overlay = fixture(1, false, UPLINK_MAC, 2).build().unwrap();
    let l2 = L2PipelineBuilder::new(1).build().unwrap();
    Pipeline::new(1, l2, overlay, wire::ParseConfig::default())
}

fn eth(dst: MacAddr, src: MacAddr, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    payload: usize,
    df: bool,
) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
    if df {
        h[6] = 0x40;
    }
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = !fold(sum_raw(0, &h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// An ICMP echo request of `payload` bytes.
fn ping(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: &str,
    dst: &str,
    ttl: u8,
    payload: usize,
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, 0x0800);
    f.extend_from_slice(&ipv4_header(ip4(src), ip4(dst), 1, ttl, 8 + payload, true));
    let mut icmp = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend((0..payload).map(|i| i as u8));
    let c = !fold(sum_raw(0, &icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

fn arp_request(src_mac: MacAddr, src: &str, target: &str) -> Vec<u8> {
    let mut f = eth(MacAddr::BROADCAST, src_mac, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&ip4(src).octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip4(target).octets());
    f.resize(60, 0);
    f
}

struct Rig {
    p: Pipeline,
    table: NeighborTable,
    limiter: ResolveLimiter,
}

impl Rig {
    fn new() -> Rig {
        let table = NeighborTable::new(NeighborConfig::default());
        let limiter = ResolveLimiter::new(table.config());
        Rig {
            p: pipeline(),
            table,
            limiter,
        }
    }

    fn with_peer_resolved() -> Rig {
        let mut r = Rig::new();
        r.table
            .learn("192.0.2.2".parse().unwrap(), PEER_MAC, Instant::now());
        r
    }

    /// Runs one frame; returns the verdict, the bytes after, and what the context
    /// collected.
    fn run(
        &mut self,
        in_port: PortIdx,
        frame: &[u8],
    ) -> (Verdict, VecBuf, Vec<IpAddr>, Vec<(IpAddr, MacAddr)>) {
        let map = self.table.reader().load_full();
        let mut ctx = Ctx::new(&map, &mut self.limiter, Instant::now());
        let mut buf = VecBuf::new(frame);
        let v = self.p.process(in_port, &mut buf, &mut ctx);
        let (res, learned) = (ctx.to_resolve.to_vec(), ctx.learned.to_vec());
        (v, buf, res, learned)
    }
}

fn ipv4_checksum_ok(frame: &[u8], l3: usize) -> bool {
    let ihl = usize::from(frame[l3] & 0xf) * 4;
    fold(sum_raw(0, &frame[l3..l3 + ihl])) == 0xffff
}

#[test]
fn arp_for_an_endpoint_and_the_gateway_is_answered_in_place() {
    let mut r = Rig::new();
    for (target, mac) in [("10.1.0.11", B), ("10.1.0.1", G_BLUE), ("10.1.0.20", R)] {
        let (v, buf, ..) = r.run(POD_A, &arp_request(A, "10.1.0.10", target));
        assert_eq!(v, Verdict::Output(POD_A), "ARP for {target}");
        let f = buf.data();
        assert_eq!(&f[0..6], &A.0, "to the asker");
        assert_eq!(&f[6..12], &mac.0);
        assert_eq!(&f[20..22], &[0, 2], "op reply");
        assert_eq!(&f[22..28], &mac.0, "sender hardware address");
        assert_eq!(&f[28..32], &ip4(target).octets());
        assert_eq!(&f[32..38], &A.0);
        assert_eq!(&f[38..42], &ip4("10.1.0.10").octets());
    }
    let (v, ..) = r.run(POD_A, &arp_request(A, "10.1.0.10", "10.1.0.99"));
    assert_eq!(v, Verdict::Drop(DropReason::ArpUnanswered));
}

#[test]
fn networks_with_the_same_addresses_stay_apart() {
    let mut r = Rig::new();
    // In blue, B is a local endpoint; red has the same pod MAC/IP as blue's A but no B.
    let frame = ping(B, A, "10.1.0.10", "10.1.0.11", 64, 16);
    assert_eq!(r.run(POD_A, &frame).0, Verdict::Output(POD_B));
    assert_eq!(
        r.run(POD_RED, &frame).0,
        Verdict::Drop(DropReason::UnknownDestination)
    );
    // ARP from red for B's address is not answered with blue's B.
    let (v, ..) = r.run(POD_RED, &arp_request(A, "10.1.0.10", "10.1.0.11"));
    assert_eq!(v, Verdict::Drop(DropReason::ArpUnanswered));
    // And red's gateway answers with red's MAC.
    let (v, buf, ..) = r.run(POD_RED, &arp_request(A, "10.1.0.10", "10.1.0.1"));
    assert_eq!(v, Verdict::Output(POD_RED));
    assert_eq!(&buf.data()[22..28], &G_RED.0);
}

#[test]
fn routing_between_networks_rewrites_macs_and_ttl() {
    let mut r = Rig::new();
    let frame = ping(G_BLUE, A, "10.1.0.10", "10.2.0.10", 64, 32);
    let (v, buf, ..) = r.run(POD_A, &frame);
    assert_eq!(v, Verdict::Output(POD_C));
    let f = buf.data();
    assert_eq!(&f[0..6], &C.0);
    assert_eq!(
        &f[6..12],
        &G_GREEN.0,
        "leaves the destination network's gateway"
    );
    assert_eq!(f[22], 63, "TTL decremented");
    assert!(ipv4_checksum_ok(f, 14), "incremental checksum is right");
    assert_eq!(&f[34..], &frame[34..], "payload untouched");
    // red (tenant t2) cannot reach green (tenant t1).
    let frame = ping(G_RED, A, "10.1.0.10", "10.2.0.10", 64, 32);
    assert_eq!(r.run(POD_RED, &frame).0, Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn ttl_expiry_answers_time_exceeded() {
    let mut r = Rig::new();
    let frame = ping(G_BLUE, A, "10.1.0.10", "10.2.0.10", 1, 32);
    let (v, buf, ..) = r.run(POD_A, &frame);
    assert_eq!(
        v,
        Verdict::Reply {
            out: POD_A,
            reason: DropReason::TtlExpired
        }
    );
    let f = buf.data();
    let m = wire::parse(f).unwrap();
    assert_eq!(m.dst_mac, A);
    assert_eq!(m.src_mac, G_BLUE);
    assert_eq!(m.src_addr(), Some(IpAddr::V4(ip4("10.1.0.1"))));
    assert_eq!(m.dst_addr(), Some(IpAddr::V4(ip4("10.1.0.10"))));
    assert_eq!((m.icmp_type, m.icmp_code), (11, 0));
    assert!(ipv4_checksum_ok(f, 14));
    assert_eq!(fold(sum_raw(0, &f[34..])), 0xffff, "ICMP checksum");
    assert_eq!(&f[42..62], &frame[14..34], "quotes the original IP header");
}

#[test]
fn ping_to_the_gateway_is_answered() {
    let mut r = Rig::new();
    let (v, buf, ..) = r.run(POD_A, &ping(G_BLUE, A, "10.1.0.10", "10.1.0.1", 64, 8));
    assert_eq!(v, Verdict::Output(POD_A));
    let m = wire::parse(buf.data()).unwrap();
    assert_eq!((m.icmp_type, m.dst_mac, m.src_mac), (0, A, G_BLUE));
    assert_eq!(m.src_addr(), Some(IpAddr::V4(ip4("10.1.0.1"))));
    assert_eq!(fold(sum_raw(0, &buf.data()[34..])), 0xffff);
}

#[test]
fn encap_waits_for_the_underlay_neighbour_then_sends_vxlan() {
    let mut r = Rig::new();
    let frame = ping(R, A, "10.1.0.10", "10.1.0.20", 64, 32);
    let (v, _, resolve, _) = r.run(POD_A, &frame);
    assert_eq!(v, Verdict::Drop(DropReason::NeighborUnresolved));
    assert_eq!(resolve, vec!["192.0.2.2".parse::<IpAddr>().unwrap()]);
    let (_, _, resolve, _) = r.run(POD_A, &frame);
    assert!(
        resolve.is_empty(),
        "one request per interval, not one per packet"
    );

    let mut r = Rig::with_peer_resolved();
    let (v, buf, ..) = r.run(POD_A, &frame);
    assert_eq!(v, Verdict::Output(UPLINK));
    let outer = wire::parse(buf.data()).unwrap();
    assert_eq!((outer.dst_mac, outer.src_mac), (PEER_MAC, UPLINK_MAC));
    assert_eq!(outer.src_addr(), Some("192.0.2.1".parse().unwrap()));
    assert_eq!(outer.dst_addr(), Some("192.0.2.2".parse().unwrap()));
    assert_eq!(
        (outer.tunnel, outer.vni, outer.dst_port),
        (TunnelKind::Vxlan, 100, 4789)
    );
    assert!(
        outer.src_port >= 49152,
        "source port from the dynamic range"
    );
    assert!(ipv4_checksum_ok(buf.data(), 14));
    assert_eq!(buf.data()[20] & 0x40, 0x40, "DF set");
    assert_eq!(&buf.data()[usize::from(outer.inner_offset)..], &frame[..]);
}

#[test]
fn too_big_for_the_underlay_answers_fragmentation_needed() {
    let mut r = Rig::with_peer_resolved();
    // blue's inner MTU is 1500 - 50 = 1450; a 1451-byte IP packet does not fit.
    let frame = ping(R, A, "10.1.0.10", "10.1.0.20", 64, 1451 - 28);
    let (v, buf, ..) = r.run(POD_A, &frame);
    assert_eq!(
        v,
        Verdict::Reply {
            out: POD_A,
            reason: DropReason::MtuExceeded
        }
    );
    let m = wire::parse(buf.data()).unwrap();
    assert_eq!((m.icmp_type, m.icmp_code), (3, 4));
    assert_eq!(&buf.data()[40..42], &1450u16.to_be_bytes(), "next-hop MTU");
    // One byte less fits.
    let frame = ping(R, A, "10.1.0.10", "10.1.0.20", 64, 1450 - 28);
    assert_eq!(r.run(POD_A, &frame).0, Verdict::Output(UPLINK));
}

fn vxlan_from_peer(vni: u32, inner: &[u8], geneve: bool) -> Vec<u8> {
    let mut f = eth(UPLINK_MAC, PEER_MAC, 0x0800);
    let udp_len = 8 + 8 + inner.len();
    f.extend_from_slice(&ipv4_header(
        ip4("192.0.2.2"),
        ip4("192.0.2.1"),
        17,
        64,
        udp_len,
        true,
    ));
    f.extend_from_slice(&50000u16.to_be_bytes());
    f.extend_from_slice(&(if geneve { 6081u16 } else { 4789u16 }).to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    if geneve {
        f.extend_from_slice(&[0, 0, 0x65, 0x58]);
    } else {
        f.extend_from_slice(&[0x08, 0, 0, 0]);
    }
    f.extend_from_slice(&(vni << 8).to_be_bytes());
    f.extend_from_slice(inner);
    f
}

#[test]
fn decap_switches_on_the_inner_mac_and_parses_inner_headers_only_to_route() {
    let mut r = Rig::new();
    // A runt inner frame (no whole Ethernet header) is malformed.
    let runt = ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20)[..13].to_vec();
    assert_eq!(
        r.run(UPLINK, &vxlan_from_peer(100, &runt, false)).0,
        Verdict::Drop(DropReason::Malformed)
    );
    // Switched like a bridge would: a frame for A whose inner IPv4 header is broken
    // (IHL 3) is still delivered as it is, bytes unchanged.
    let mut broken = ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20);
    broken[14] = 0x43;
    let (v, buf, ..) = r.run(UPLINK, &vxlan_from_peer(100, &broken, false));
    assert_eq!(v, Verdict::Output(POD_A));
    assert_eq!(buf.data(), &broken[..]);
    // Sent to our gateway MAC, the same frame must be routed, so it is parsed, and
    // the broken header is a malformed drop rather than a guess.
    let mut to_gw = ping(G_BLUE, R, "10.1.0.20", "10.2.0.10", 64, 20);
    to_gw[14] = 0x43;
    assert_eq!(
        r.run(UPLINK, &vxlan_from_peer(100, &to_gw, false)).0,
        Verdict::Drop(DropReason::Malformed)
    );
}

#[test]
fn a_tunnelled_ping_to_our_gateway_is_not_answered_onto_the_underlay() {
    // The remote pod's own switch answers for the distributed gateway; an answer
    // from here would leave the uplink as a bare tenant frame.
    let mut r = Rig::new();
    let inner = ping(G_BLUE, R, "10.1.0.20", "10.1.0.1", 64, 8);
    let (v, ..) = r.run(UPLINK, &vxlan_from_peer(100, &inner, false));
    assert_eq!(v, Verdict::Drop(DropReason::ToGateway));
}

#[test]
fn decap_delivers_the_inner_frame_to_its_pod() {
    let mut r = Rig::new();
    let inner = ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20);
    let (v, buf, ..) = r.run(UPLINK, &vxlan_from_peer(100, &inner, false));
    assert_eq!(v, Verdict::Output(POD_A));
    assert_eq!(buf.data(), &inner[..]);
    // The same frame in red's VNI reaches red's pod, not blue's.
    let (v, ..) = r.run(UPLINK, &vxlan_from_peer(300, &inner, false));
    assert_eq!(v, Verdict::Output(POD_RED));
    assert_eq!(
        r.run(UPLINK, &vxlan_from_peer(999, &inner, false)).0,
        Verdict::Drop(DropReason::UnknownVni)
    );
    assert_eq!(
        r.run(UPLINK, &vxlan_from_peer(100, &inner, true)).0,
        Verdict::Drop(DropReason::EncapMismatch),
        "Geneve into a VXLAN network"
    );
    let broadcast = arp_request(R, "10.1.0.20", "10.1.0.10");
    assert_eq!(
        r.run(UPLINK, &vxlan_from_peer(100, &broadcast, false)).0,
        Verdict::FloodNetwork {
            net: r.p.overlay.network_by_name("blue").unwrap(),
            from_tunnel: true
        }
    );
}

#[test]
fn geneve_with_an_unknown_critical_option_is_dropped() {
    let mut r = Rig::new();
    let inner = ping(C, R, "10.2.0.20", "10.2.0.10", 64, 20);
    let mut f = vxlan_from_peer(200, &inner, true);
    assert_eq!(r.run(UPLINK, &f).0, Verdict::Output(POD_C));
    // Insert one 4-byte option header (class 0x0102, type 0x80 = critical, len 0).
    let g = 14 + 20 + 8;
    f[g] = 1; // opt_len = 1 word
    f.splice(g + 8..g + 8, [0x01, 0x02, 0x80, 0x00]);
    let udp_len = u16::from_be_bytes([f[38], f[39]]) + 4;
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    let ip_len = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[24..26].fill(0);
    let c = !fold(sum_raw(0, &f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        r.run(UPLINK, &f).0,
        Verdict::Drop(DropReason::GeneveUnknownCritical)
    );
}

/// RFC 8926 §3.4: the payload of a Geneve packet with the O bit is a control
/// message, never data — on the per-packet path and on the burst's straight pass
/// (which would otherwise take an option-less OAM packet as plain traffic).
#[test]
fn geneve_oam_is_counted_not_delivered() {
    let inner = ping(C, R, "10.2.0.20", "10.2.0.10", 64, 20);
    let data = vxlan_from_peer(200, &inner, true);
    let mut oam = data.clone();
    oam[14 + 20 + 8 + 1] = 0x80; // flags: O
    let mut r = Rig::new();
    assert_eq!(r.run(UPLINK, &data).0, Verdict::Output(POD_C));
    assert_eq!(r.run(UPLINK, &oam).0, Verdict::Drop(DropReason::GeneveOam));
    // O and C together: still OAM (no critical option is present to refuse).
    oam[14 + 20 + 8 + 1] = 0xc0;
    assert_eq!(r.run(UPLINK, &oam).0, Verdict::Drop(DropReason::GeneveOam));
    oam[14 + 20 + 8 + 1] = 0x80;
    let mut c = Cached::new(routed(1, false, UPLINK_MAC, 2, "10.1.0.20"), false);
    let headroom = crate::buf::DEFAULT_HEADROOM;
    let mut frames = vec![(data, headroom); crate::BURST];
    frames[7].0 = oam.clone();
    frames[31].0 = oam;
    assert_eq!(c.burst_agrees(UPLINK, &frames, "OAM in a burst"), None);
    let (each, ..) = c.burst(UPLINK, &frames);
    for (i, (v, _)) in each.iter().enumerate() {
        let want = if i == 7 || i == 31 {
            Verdict::Drop(DropReason::GeneveOam)
        } else {
            Verdict::Output(POD_C)
        };
        assert_eq!(*v, want, "frame {i}");
    }
}

/// RFC 7348 §5: without the I flag the VNI is not valid. Counted under its own
/// name, apart from truncated or inconsistent headers (`malformed`).
#[test]
fn vxlan_without_the_i_flag_has_its_own_drop_reason() {
    let inner = ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20);
    let mut f = vxlan_from_peer(100, &inner, false);
    let mut r = Rig::new();
    assert_eq!(r.run(UPLINK, &f).0, Verdict::Output(POD_A));
    for flags in [0x00, 0x80, 0xf7] {
        f[14 + 20 + 8] = flags;
        assert_eq!(
            r.run(UPLINK, &f).0,
            Verdict::Drop(DropReason::VxlanNoVniFlag),
            "flags {flags:#04x}"
        );
    }
    // A truncated VXLAN header stays `malformed`.
    let short = vxlan_from_peer(100, &[], false);
    let mut short = short[..14 + 20 + 8 + 4].to_vec();
    short[17] = 20 + 8 + 4; // IP total length
    short[24..26].fill(0);
    let c = !fold(sum_raw(0, &short[14..34]));
    short[24..26].copy_from_slice(&c.to_be_bytes());
    short[38..40].copy_from_slice(&12u16.to_be_bytes()); // UDP length
    assert_eq!(
        r.run(UPLINK, &short).0,
        Verdict::Drop(DropReason::Malformed)
    );
}

#[test]
fn underlay_arp_for_the_vtep_is_answered_and_senders_are_learned() {
    let mut r = Rig::new();
    let (v, buf, _, learned) = r.run(UPLINK, &arp_request(PEER_MAC, "192.0.2.2", "192.0.2.1"));
    assert_eq!(v, Verdict::Output(UPLINK));
    assert_eq!(&buf.data()[22..28], &UPLINK_MAC.0);
    assert_eq!(learned, vec![("192.0.2.2".parse().unwrap(), PEER_MAC)]);
    let (v, ..) = r.run(UPLINK, &arp_request(PEER_MAC, "192.0.2.2", "192.0.2.9"));
    assert_eq!(v, Verdict::Drop(DropReason::UnderlayConsumed));
}

#[test]
fn neighbour_solicitation_for_the_gateway_gets_an_advertisement() {
    let mut r = Rig::new();
    let src: Ipv6Addr = "fd00:1::10".parse().unwrap();
    let target: Ipv6Addr = "fd00:1::1".parse().unwrap();
    let ns = build_neighbor_solicitation(A, src, target);
    let (v, buf, ..) = r.run(POD_A, &ns);
    assert_eq!(v, Verdict::Output(POD_A));
    let m = wire::parse(buf.data()).unwrap();
    assert_eq!((m.l3, m.icmp_type), (L3Kind::Ipv6, 136));
    assert_eq!((m.dst_mac, m.src_mac), (A, G_BLUE));
    assert_eq!(m.src_addr(), Some(IpAddr::V6(target)));
    assert_eq!(m.dst_addr(), Some(IpAddr::V6(src)));
    assert_eq!(&buf.data()[80..86], &G_BLUE.0, "target link-layer option");
    // The ICMPv6 checksum verifies over the pseudo-header.
    let f = buf.data();
    let mut acc = sum_raw(0, &f[22..54]);
    acc += 32 + 58;
    assert_eq!(fold(sum_raw(acc, &f[54..86])), 0xffff);
}

#[test]
fn no_input_panics_the_pipeline() {
    let mut r = Rig::with_peer_resolved();
    let seeds = [
        ping(R, A, "10.1.0.10", "10.1.0.20", 64, 32),
        ping(G_BLUE, A, "10.1.0.10", "10.2.0.10", 1, 32),
        arp_request(A, "10.1.0.10", "10.1.0.11"),
        vxlan_from_peer(100, &ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20), false),
        build_neighbor_solicitation(
            A,
            "fd00:1::10".parse().unwrap(),
            "fd00:1::1".parse().unwrap(),
        )
        .to_vec(),
    ];
    let mut x: u32 = 0x1234_5678;
    for seed in &seeds {
        for cut in 0..seed.len() {
            for port in [POD_A, UPLINK, POD_C] {
                r.run(port, &seed[..cut]);
            }
        }
        for _ in 0..2000 {
            let mut f = seed.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = x as usize % f.len();
                f[i] = (x >> 8) as u8;
            }
            for port in [POD_A, UPLINK] {
                r.run(port, &f);
            }
        }
    }
}

/// An IPv6 UDP datagram of `payload` bytes.
fn udp6(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: &str,
    dst: &str,
    hops: u8,
    payload: usize,
) -> Vec<u8> {
    let (src, dst): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut f = eth(dst_mac, src_mac, 0x86dd);
    let len = (8 + payload) as u16;
    f.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[17, hops]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let mut udp = vec![0x30, 0x39, 0x00, 0x35];
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend((0..payload).map(|i| i as u8));
    let mut acc = sum_raw(0, &src.octets());
    acc = sum_raw(acc, &dst.octets());
    acc += u64::from(len) + 17;
    let c = !fold(sum_raw(acc, &udp));
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

#[test]
fn ipv6_is_routed_between_networks_and_hop_limit_expiry_is_answered() {
    let mut r = Rig::new();
    let frame = udp6(G_BLUE, A, "fd00:1::10", "fd00:2::10", 64, 40);
    let (v, buf, ..) = r.run(POD_A, &frame);
    assert_eq!(v, Verdict::Output(POD_C));
    let m = wire::parse(buf.data()).unwrap();
    assert_eq!((m.dst_mac, m.src_mac, m.ttl), (C, G_GREEN, 63));
    assert_eq!(&buf.data()[54..], &frame[54..], "payload untouched");

    let (v, buf, ..) = r.run(POD_A, &udp6(G_BLUE, A, "fd00:1::10", "fd00:2::10", 1, 40));
    assert_eq!(
        v,
        Verdict::Reply {
            out: POD_A,
            reason: DropReason::TtlExpired
        }
    );
    let m = wire::parse(buf.data()).unwrap();
    assert_eq!((m.icmp_type, m.icmp_code), (3, 0), "ICMPv6 time exceeded");
    assert_eq!(m.src_addr(), Some("fd00:1::1".parse().unwrap()));
    assert_eq!(m.dst_addr(), Some("fd00:1::10".parse().unwrap()));
}

#[test]
fn ipv6_too_big_for_the_underlay_answers_packet_too_big() {
    let mut r = Rig::with_peer_resolved();
    // 1450 bytes of IPv6 packet fit blue's overlay MTU; 1451 do not.
    let fits = udp6(R, A, "fd00:1::10", "fd00:1::20", 64, 1450 - 48);
    assert_eq!(r.run(POD_A, &fits).0, Verdict::Output(UPLINK));
    let big = udp6(R, A, "fd00:1::10", "fd00:1::20", 64, 1451 - 48);
    let (v, buf, ..) = r.run(POD_A, &big);
    assert_eq!(
        v,
        Verdict::Reply {
            out: POD_A,
            reason: DropReason::MtuExceeded
        }
    );
    let f = buf.data();
    let m = wire::parse(f).unwrap();
    assert_eq!((m.icmp_type, m.icmp_code), (2, 0), "ICMPv6 packet too big");
    assert_eq!(&f[58..62], &1450u32.to_be_bytes(), "MTU field");
    assert!(f.len() - 14 <= 1280, "the error fits the IPv6 minimum MTU");
    // The ICMPv6 checksum verifies over the pseudo-header.
    let plen = u16::from_be_bytes([f[18], f[19]]);
    let mut acc = sum_raw(0, &f[22..54]);
    acc += u64::from(plen) + 58;
    assert_eq!(fold(sum_raw(acc, &f[54..])), 0xffff);
}

// --- A worker's state (flow table, templates) against the stages alone ---

/// S: green's remote endpoint, behind VTEP 3.
const S: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x21]);
/// VTEP 3's MAC on the underlay.
const PEER3_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 3]);

/// [`fixture`] plus S and static routes in t1: 10.9.0.0/16 via `via` in blue,
/// fd00:9::/48 via R, 10.66.0.0/16 blackholed.
fn routed(generation: u64, v6: bool, uplink_mac: MacAddr, r_vtep: u16, via: &str) -> Arc<Pipeline> {
    routed_with(generation, v6, uplink_mac, r_vtep, via, 0)
}

/// [`routed`] with `extra` more remote endpoints in every network (MACs 02:ee:…,
/// no addresses, behind VTEP 3) that no test frame is sent to: with 40k of them
/// each network's MAC table outgrows `DenseReader::is_large`'s bound and the
/// burst loops prefetch.
fn routed_with(
    generation: u64,
    v6: bool,
    uplink_mac: MacAddr,
    r_vtep: u16,
    via: &str,
    extra: u32,
) -> Arc<Pipeline> {
    let route = |prefix: &str, target| RouteSpec {
        tenant: "t1".into(),
        prefix: prefix.parse().unwrap(),
        target,
    };
    let via_blue = |ip: &str| RouteTarget::NextHop {
        network: "blue".into(),
        ip: ip.parse().unwrap(),
    };
    let mut b = fixture(generation, v6, uplink_mac, r_vtep);
    b.remote_endpoint(RemoteEndpointSpec {
        network: "green".into(),
        mac: S,
        ips: vec!["10.2.0.20".parse().unwrap(), "fd00:2::20".parse().unwrap()],
        vtep: vtep_ip(v6, 3),
    })
    .route(route("10.9.0.0/16", via_blue(via)))
    .route(route("fd00:9::/48", via_blue("fd00:1::20")))
    .route(route("10.66.0.0/16", RouteTarget::Blackhole));
    // In every network: each has a MAC table of its own.
    for network in ["blue", "green", "red"] {
        for i in 0..extra {
            let [_, x, y, z] = i.to_be_bytes();
            b.remote_endpoint(RemoteEndpointSpec {
                network: network.into(),
                mac: MacAddr([2, 0xee, 0, x, y, z]),
                ips: vec![],
                vtep: vtep_ip(v6, 3),
            });
        }
    }
    let l2 = L2PipelineBuilder::new(generation).build().unwrap();
    let overlay = b.build().unwrap();
    Arc::new(Pipeline::new(
        generation,
        l2,
        overlay,
        wire::ParseConfig::default(),
    ))
}

/// Each frame's verdict and bytes after a burst, the burst's bytes, its one port.
type BurstOutcome = (Vec<(Verdict, Vec<u8>)>, u64, Option<PortIdx>);

/// A pipeline, the underlay neighbours (VTEPs 2 and 3 resolved) and one scratch kept
/// across packets, as a worker keeps it.
struct Cached {
    p: Arc<Pipeline>,
    table: NeighborTable,
    limiter: ResolveLimiter,
    state: WorkerState,
}

impl Cached {
    fn new(p: Arc<Pipeline>, v6: bool) -> Cached {
        let mut table = NeighborTable::new(NeighborConfig::default());
        table.learn(vtep_ip(v6, 2), PEER_MAC, Instant::now());
        table.learn(vtep_ip(v6, 3), PEER3_MAC, Instant::now());
        let limiter = ResolveLimiter::new(table.config());
        let mut state = WorkerState::new();
        state.bind(&p);
        Cached {
            p,
            table,
            limiter,
            state,
        }
    }

    /// One frame through the kept scratch.
    fn cached(&mut self, in_port: PortIdx, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let map = self.table.reader().load_full();
        let mut ctx = Ctx::new(&map, &mut self.limiter, Instant::now());
        let mut buf = VecBuf::new(frame);
        let v = self
            .p
            .process_with(in_port, &mut buf, &mut ctx, &mut self.state);
        (v, buf.data().to_vec())
    }

    /// `frames`, all from `in_port`, as one burst through the kept scratch
    /// (`Pipeline::process_burst`, as the worker runs it): each frame's verdict and
    /// bytes, then the bytes and the one port the call reported.
    fn burst(&mut self, in_port: PortIdx, frames: &[(Vec<u8>, usize)]) -> BurstOutcome {
        let map = self.table.reader().load_full();
        let mut ctx = Ctx::new(&map, &mut self.limiter, Instant::now());
        let mut bufs: Vec<VecBuf> = frames
            .iter()
            .map(|(f, headroom)| VecBuf::with_room(f, *headroom, 2048))
            .collect();
        let mut out = [Verdict::Flood; crate::BURST];
        let ingress = self.p.ingress(in_port);
        let (bytes, one) =
            self.p
                .process_burst(ingress, &mut bufs, &mut ctx, &mut self.state, &mut out);
        let each = out
            .iter()
            .zip(&bufs)
            .map(|(v, b)| (*v, b.data().to_vec()))
            .collect();
        (each, bytes, one)
    }

    /// [`burst`](Self::burst), with every frame held to what the per-packet
    /// pipeline gives it (fast paths on, cold caches), the bytes to theirs, and a
    /// reported port to every frame's verdict; returns that port.
    fn burst_agrees(
        &mut self,
        in_port: PortIdx,
        frames: &[(Vec<u8>, usize)],
        what: &str,
    ) -> Option<PortIdx> {
        let (each, bytes, one) = self.burst(in_port, frames);
        let mut want_bytes = 0;
        for ((frame, headroom), got) in frames.iter().zip(&each) {
            let map = self.table.reader().load_full();
            let mut ctx = Ctx::new(&map, &mut self.limiter, Instant::now());
            let mut buf = VecBuf::with_room(frame, *headroom, 2048);
            let v = self.p.process(in_port, &mut buf, &mut ctx);
            assert_eq!(*got, (v, buf.data().to_vec()), "{what}");
            want_bytes += got.1.len() as u64;
        }
        assert_eq!(bytes, want_bytes, "{what}: bytes");
        if let Some(one) = one {
            assert!(
                each.iter().all(|(v, _)| *v == Verdict::Output(one)),
                "{what}"
            );
        }
        one
    }

    /// One frame through the full path only (fresh scratch, fast paths off): the
    /// reference the fast paths must agree with.
    fn reference(&mut self, in_port: PortIdx, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let map = self.table.reader().load_full();
        let mut ctx = Ctx::new(&map, &mut self.limiter, Instant::now());
        let mut buf = VecBuf::new(frame);
        let mut state = WorkerState::with_flow_entries(0);
        state.bind(&self.p);
        let v = self.p.process_with(in_port, &mut buf, &mut ctx, &mut state);
        (v, buf.data().to_vec())
    }

    /// One frame through fresh scratch (`Pipeline::process`).
    fn fresh(&mut self, in_port: PortIdx, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let map = self.table.reader().load_full();
        let mut ctx = Ctx::new(&map, &mut self.limiter, Instant::now());
        let mut buf = VecBuf::new(frame);
        let v = self.p.process(in_port, &mut buf, &mut ctx);
        (v, buf.data().to_vec())
    }
}

/// `inner` as VTEP 2 sends it to us, by the reference outer-header builder.
fn from_peer(v6: bool, vni: u32, tunnel: TunnelKind, inner: &[u8]) -> Vec<u8> {
    let mut b = VecBuf::new(inner);
    let o = reply::OuterHeaders {
        src_mac: PEER_MAC,
        dst_mac: UPLINK_MAC,
        src_ip: vtep_ip(v6, 2),
        dst_ip: vtep_ip(v6, 1),
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

/// Every path through the overlay, each with the verdict it must get. (One case a
/// line: the table reads better than rustfmt's five lines a case.)
#[rustfmt::skip]
fn varied_traffic(p: &Pipeline, v6: bool) -> Vec<(&'static str, PortIdx, Vec<u8>, Verdict)> {
    use DropReason as D;
    use Verdict::{Drop, Output, Reply};
    let blue = p.overlay.network_by_name("blue").unwrap();
    let flood = Verdict::FloodNetwork { net: blue, from_tunnel: false };
    let ttl_expired = Reply { out: POD_A, reason: D::TtlExpired };
    let too_big = Reply { out: POD_A, reason: D::MtuExceeded };
    // Tunnelled to us by VTEP 2: into blue (VXLAN) or green (Geneve).
    let blue_in = |inner: Vec<u8>| from_peer(v6, 100, TunnelKind::Vxlan, &inner);
    let green_in = |inner: Vec<u8>| from_peer(v6, 200, TunnelKind::Geneve, &inner);
    let unknown_vni = from_peer(v6, 999, TunnelKind::Vxlan, &ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20));
    let underlay_ask = match (vtep_ip(v6, 2), vtep_ip(v6, 1)) {
        (IpAddr::V6(s), IpAddr::V6(t)) => build_neighbor_solicitation(PEER_MAC, s, t).to_vec(),
        _ => arp_request(PEER_MAC, "192.0.2.2", "192.0.2.1"),
    };
    let ns_gateway = build_neighbor_solicitation(A, "fd00:1::10".parse().unwrap(), "fd00:1::1".parse().unwrap());
    let decap_flood = Verdict::FloodNetwork { net: blue, from_tunnel: true };
    let mut padded = blue_in(ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20));
    padded.extend_from_slice(&[0; 6]);
    // More fragments: the outer UDP payload is not whole, so it is no tunnel packet.
    // (An IPv6 underlay needs a fragment header for that: the bit is the flow label.)
    let mut first_fragment = blue_in(ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20));
    let fragment_verdict = if v6 {
        Output(POD_A)
    } else {
        first_fragment[20] |= 0x20;
        Drop(D::UnderlayNotForUs)
    };
    let mut truncated = ping(R, A, "10.1.0.10", "10.1.0.20", 64, 16);
    truncated.truncate(30);
    // The tunnel header's first byte (after outer Ethernet, IP and UDP).
    let tunnel = if v6 { 14 + 40 + 8 } else { 14 + 20 + 8 };
    let mut geneve_oam = green_in(ping(C, S, "10.2.0.20", "10.2.0.10", 64, 20));
    geneve_oam[tunnel + 1] |= wire::geneve::FLAG_O;
    let mut vxlan_no_i = blue_in(ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20));
    vxlan_no_i[tunnel] = 0;
    vec![
        ("L2 local", POD_A, ping(B, A, "10.1.0.10", "10.1.0.11", 64, 16), Output(POD_B)),
        ("L2 hairpin", POD_A, ping(A, B, "10.1.0.11", "10.1.0.10", 64, 16), Drop(D::Hairpin)),
        ("L2 remote VXLAN", POD_A, ping(R, A, "10.1.0.10", "10.1.0.20", 64, 16), Output(UPLINK)),
        ("L2 remote, other flow", POD_B, ping(R, B, "10.1.0.11", "10.1.0.20", 64, 99), Output(UPLINK)),
        ("L2 remote Geneve", POD_C, ping(S, C, "10.2.0.10", "10.2.0.20", 64, 16), Output(UPLINK)),
        ("L2 broadcast", POD_A, ping(MacAddr::BROADCAST, A, "10.1.0.10", "10.1.0.255", 64, 8), flood),
        ("truncated", POD_A, truncated, Drop(D::Malformed)),
        ("routed local", POD_A, ping(G_BLUE, A, "10.1.0.10", "10.2.0.10", 64, 32), Output(POD_C)),
        ("routed remote, connected", POD_A, ping(G_BLUE, A, "10.1.0.10", "10.2.0.20", 64, 32), Output(UPLINK)),
        ("routed remote, static", POD_C, ping(G_GREEN, C, "10.2.0.10", "10.9.1.1", 64, 32), Output(UPLINK)),
        ("routed remote, static, from blue", POD_A, ping(G_BLUE, A, "10.1.0.10", "10.9.7.7", 64, 33), Output(UPLINK)),
        ("ping the gateway", POD_A, ping(G_BLUE, A, "10.1.0.10", "10.1.0.1", 64, 8), Output(POD_A)),
        ("TTL 1", POD_A, ping(G_BLUE, A, "10.1.0.10", "10.2.0.10", 1, 32), ttl_expired),
        ("TTL 1 towards a remote", POD_A, ping(G_BLUE, A, "10.1.0.10", "10.9.1.1", 1, 32), ttl_expired),
        ("no route", POD_A, ping(G_BLUE, A, "10.1.0.10", "172.16.0.1", 64, 8), Drop(D::NoRoute)),
        ("no route across tenants", POD_RED, ping(G_RED, A, "10.1.0.10", "10.2.0.10", 64, 8), Drop(D::NoRoute)),
        ("blackhole", POD_A, ping(G_BLUE, A, "10.1.0.10", "10.66.0.1", 64, 8), Drop(D::Blackhole)),
        ("connected, unknown host", POD_A, ping(G_BLUE, A, "10.1.0.10", "10.2.0.99", 64, 8), Drop(D::UnknownDestination)),
        ("too big for the underlay", POD_A, ping(R, A, "10.1.0.10", "10.1.0.20", 64, 1472), too_big),
        ("ARP", POD_A, arp_request(A, "10.1.0.10", "10.1.0.20"), Output(POD_A)),
        ("v6 L2 remote", POD_A, udp6(R, A, "fd00:1::10", "fd00:1::20", 64, 40), Output(UPLINK)),
        ("v6 routed local", POD_A, udp6(G_BLUE, A, "fd00:1::10", "fd00:2::10", 64, 40), Output(POD_C)),
        ("v6 routed remote, connected", POD_A, udp6(G_BLUE, A, "fd00:1::10", "fd00:2::20", 64, 41), Output(UPLINK)),
        ("v6 routed remote, static", POD_C, udp6(G_GREEN, C, "fd00:2::10", "fd00:9::1", 64, 40), Output(UPLINK)),
        ("v6 hop limit 1", POD_A, udp6(G_BLUE, A, "fd00:1::10", "fd00:2::10", 1, 40), ttl_expired),
        ("v6 to the gateway", POD_A, udp6(G_BLUE, A, "fd00:1::10", "fd00:1::1", 64, 8), Drop(D::ToGateway)),
        ("v6 no route", POD_A, udp6(G_BLUE, A, "fd00:1::10", "fd00:77::1", 64, 8), Drop(D::NoRoute)),
        ("v6 NS for the gateway", POD_A, ns_gateway.to_vec(), Output(POD_A)),
        ("underlay ARP/NS for our VTEP", UPLINK, underlay_ask, Output(UPLINK)),
        ("decap VXLAN", UPLINK, blue_in(ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20)), Output(POD_A)),
        ("decap Geneve", UPLINK, green_in(ping(C, S, "10.2.0.20", "10.2.0.10", 64, 20)), Output(POD_C)),
        ("decap, unknown VNI", UPLINK, unknown_vni, Drop(D::UnknownVni)),
        ("decap, Geneve OAM", UPLINK, geneve_oam, Drop(D::GeneveOam)),
        ("decap, VXLAN without the I flag", UPLINK, vxlan_no_i, Drop(D::VxlanNoVniFlag)),
        ("decap, blue's VNI over Geneve", UPLINK, from_peer(v6, 100, TunnelKind::Geneve, &ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20)), Drop(D::EncapMismatch)),
        ("decap, broadcast", UPLINK, blue_in(ping(MacAddr::BROADCAST, R, "10.1.0.20", "10.1.0.255", 64, 20)), decap_flood),
        ("decap, unknown MAC", UPLINK, blue_in(ping(UNKNOWN_MAC, R, "10.1.0.20", "10.1.0.10", 64, 20)), Drop(D::UnknownDestination)),
        ("decap, Ethernet padding", UPLINK, padded, Output(POD_A)),
        ("decap, a first fragment", UPLINK, first_fragment, fragment_verdict),
        ("decap, to a remote", UPLINK, blue_in(ping(R, A, "10.1.0.10", "10.1.0.20", 64, 20)), Drop(D::TunnelHairpin)),
        ("decap, routed local", UPLINK, blue_in(ping(G_BLUE, R, "10.1.0.20", "10.2.0.10", 64, 20)), Output(POD_C)),
        ("decap, v6 routed local", UPLINK, blue_in(udp6(G_BLUE, R, "fd00:1::20", "fd00:2::10", 64, 20)), Output(POD_C)),
        ("decap, routed remote", UPLINK, blue_in(ping(G_BLUE, R, "10.1.0.20", "10.2.0.20", 64, 20)), Drop(D::TunnelHairpin)),
        ("decap, TTL 1", UPLINK, blue_in(ping(G_BLUE, R, "10.1.0.20", "10.2.0.10", 1, 20)), Drop(D::TtlExpired)),
        ("decap, blackhole", UPLINK, blue_in(ping(G_BLUE, R, "10.1.0.20", "10.66.0.1", 64, 20)), Drop(D::Blackhole)),
    ]
}

#[test]
fn a_kept_scratch_forwards_exactly_like_fresh_scratch() {
    for v6 in [false, true] {
        let p = routed(1, v6, UPLINK_MAC, 2, "10.1.0.20");
        let cases = varied_traffic(&p, v6);
        let mut c = Cached::new(p, v6);
        // Cold caches, warm caches, then warm in the other order (other slot
        // histories, other packets between a fill and its use).
        let order: Vec<usize> = (0..cases.len())
            .chain(0..cases.len())
            .chain((0..cases.len()).rev())
            .collect();
        for (round, i) in order.into_iter().enumerate() {
            let (name, port, frame, want) = &cases[i];
            let what = format!("v6 underlay={v6}, {name} (step {round})");
            let fresh = c.fresh(*port, frame);
            assert_eq!(fresh.0, *want, "{what}");
            let cached = c.cached(*port, frame);
            assert_eq!(cached.0, fresh.0, "{what}: verdict");
            assert_eq!(cached.1, fresh.1, "{what}: bytes");
            assert_eq!(
                c.reference(*port, frame),
                cached,
                "{what}: fast vs full path"
            );
            if fresh.0 == Verdict::Output(UPLINK) && *port != UPLINK {
                let m = wire::parse(&cached.1).unwrap();
                assert_eq!(
                    usize::from(m.inner_offset),
                    if v6 { 70 } else { 50 },
                    "{what}"
                );
                assert_eq!(m.src_addr(), Some(vtep_ip(v6, 1)), "{what}");
                let want_vtep = if m.vni == 200 { 3 } else { 2 };
                assert_eq!(m.dst_addr(), Some(vtep_ip(v6, want_vtep)), "{what}");
            }
        }
        // The cached paths were taken: one header per (network, VTEP) encapsulated
        // to — (blue, 2) and (green, 3).
        assert_eq!(c.state.templates.live(), 2);
        assert!(c.state.flow_stats().hits > 0, "the flow table was used");
    }
}

/// The unparsed fast paths (plain IPv4 from a pod: switched, encapsulated, routed;
/// tunnels from the uplink: decapsulated and switched) give exactly what the full
/// path gives for every frame the parser accepts, also for mangled headers (other
/// lengths, IHL, TTL, fragments, protocols, addresses, ports, VNIs, tunnel flags).
/// A xorshift generator: the same mangled frames in every run.
fn xorshift() -> impl FnMut() -> u64 {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// `frame` with one to three bytes after the Ethernet addresses set at random, and
/// now and then cut short; `None` when the parser refuses the result (the paths
/// then may disagree on the drop reason's detail, not on forwarding).
fn mangled(frame: &[u8], next: &mut impl FnMut() -> u64) -> Option<Vec<u8>> {
    let f = mangled_any(frame, next);
    wire::parse(&f).is_ok().then_some(f)
}

/// [`mangled`], parsed or not.
fn mangled_any(frame: &[u8], next: &mut impl FnMut() -> u64) -> Vec<u8> {
    let mut f = frame.to_vec();
    for _ in 0..1 + next() % 3 {
        let at = 14 + (next() as usize) % f.len().saturating_sub(14).max(1);
        if let Some(b) = f.get_mut(at) {
            *b = next() as u8;
        }
    }
    if next().is_multiple_of(8) {
        f.truncate(14 + (next() as usize) % f.len().max(15));
    }
    f
}

#[test]
fn fast_paths_agree_with_the_full_path_on_mangled_frames() {
    let mut next = xorshift();
    for v6 in [false, true] {
        let p = routed(1, v6, UPLINK_MAC, 2, "10.1.0.20");
        let cases = varied_traffic(&p, v6);
        let mut c = Cached::new(p, v6);
        let mut compared = 0;
        for (name, port, frame, _) in &cases {
            // Warm the caches the fast paths read with the frame as it is.
            c.cached(*port, frame);
            c.cached(*port, frame);
            for _ in 0..300 {
                let Some(f) = mangled(frame, &mut next) else {
                    continue;
                };
                compared += 1;
                let fast = c.cached(*port, &f);
                let full = c.reference(*port, &f);
                assert_eq!(fast, full, "v6 underlay={v6}, {name}: {f:02x?}");
            }
        }
        assert!(compared > 1000, "only {compared} frames compared");
    }
}

/// The burst loop (`process_burst`, which takes the common pod cases on a
/// straight path and leaves the rest to the per-packet pipeline) gives every frame
/// what the per-packet pipeline gives it with cold caches — the full path's answer
/// for every frame the parser accepts — in bursts that mix every case, mangled
/// frames (parsed or not) and frames without headroom; reports the bytes after
/// processing; and names a port only when the whole burst goes there. Also with a
/// MAC table large enough that the loops prefetch its slots first.
#[test]
fn the_burst_loop_agrees_with_the_full_path() {
    let mut next = xorshift();
    for (v6, extra) in [(false, 0), (true, 0), (false, 40_000), (true, 40_000)] {
        let p = routed_with(1, v6, UPLINK_MAC, 2, "10.1.0.20", extra);
        assert_eq!(p.overlay.l2_is_large(), extra > 0);
        for net in p
            .overlay
            .networks()
            .iter()
            .map(|n| p.overlay.network_by_name(&n.name))
        {
            assert_eq!(p.overlay.l2_reader(net.unwrap()).is_large(), extra > 0);
        }
        let cases = varied_traffic(&p, v6);
        let mut c = Cached::new(p, v6);
        // Frames (and the headroom each gets) by ingress port: a burst has one.
        let mut by_port: Vec<(PortIdx, Vec<_>)> = Vec::new();
        for (_, port, frame, _) in &cases {
            let mut frames = vec![(frame.clone(), crate::buf::DEFAULT_HEADROOM)];
            // Too little headroom for an outer header: refused, nothing changed.
            frames.push((frame.clone(), (next() % 70) as usize));
            for _ in 0..80 {
                let f = mangled_any(frame, &mut next);
                let headroom = if next().is_multiple_of(16) { 10 } else { 128 };
                frames.push((f, headroom));
            }
            match by_port.iter_mut().find(|(p, _)| p == port) {
                Some((_, all)) => all.extend(frames),
                None => by_port.push((*port, frames)),
            }
        }
        let mut compared = 0;
        for (port, mut frames) in by_port {
            // Twice: cold caches (the per-packet path fills them), then warm.
            for round in 0..2 {
                // Shuffled, so each burst mixes the cases.
                for i in (1..frames.len()).rev() {
                    frames.swap(i, (next() as usize) % (i + 1));
                }
                for chunk in frames.chunks(crate::BURST) {
                    let (each, bytes, one) = c.burst(port, chunk);
                    let mut want_bytes = 0;
                    for ((frame, headroom), got) in chunk.iter().zip(&each) {
                        let what = format!("v6 underlay={v6}, round {round}: {frame:02x?}");
                        // Per packet with the fast paths, as much headroom and cold
                        // caches: what the caches hold never changes an answer.
                        let map = c.table.reader().load_full();
                        let mut ctx = Ctx::new(&map, &mut c.limiter, Instant::now());
                        let mut buf = VecBuf::with_room(frame, *headroom, 2048);
                        let v = c.p.process(port, &mut buf, &mut ctx);
                        assert_eq!(*got, (v, buf.data().to_vec()), "{what}");
                        if *headroom >= 70 && wire::parse(frame).is_ok() {
                            assert_eq!(*got, c.reference(port, frame), "{what}: full path");
                        }
                        want_bytes += got.1.len() as u64;
                        compared += 1;
                    }
                    assert_eq!(bytes, want_bytes, "bytes after processing");
                    if let Some(one) = one {
                        assert!(each.iter().all(|(v, _)| *v == Verdict::Output(one)));
                    }
                }
            }
        }
        assert!(compared > 3000, "only {compared} frames compared");
        // A burst of one flow the straight path takes (switched, encapsulated over
        // an IPv4 underlay, routed) is reported whole once the caches are warm.
        let encap = Some(UPLINK);
        for (name, want) in [
            ("L2 local", Some(POD_B)),
            ("L2 remote VXLAN", encap),
            ("routed local", Some(POD_C)),
        ] {
            let (_, port, frame, _) = cases.iter().find(|c| c.0 == name).unwrap();
            let same = vec![(frame.clone(), crate::buf::DEFAULT_HEADROOM); crate::BURST];
            c.state.clear();
            c.state.bind(&c.p);
            let (_, _, cold) = c.burst(*port, &same);
            let (each, _, warm) = c.burst(*port, &same);
            assert_eq!(each[0], c.reference(*port, frame), "{name}");
            assert_eq!(warm, want, "{name}, warm");
            // Cold, the first frame fills the caches on the per-packet path.
            assert!(cold.is_none() || cold == want, "{name}, cold");
        }
        // All on the straight path, but to two ports: no one port.
        let two: Vec<_> = ["L2 local", "routed local"]
            .iter()
            .map(|name| cases.iter().find(|c| c.0 == *name).unwrap().2.clone())
            .cycle()
            .take(crate::BURST)
            .map(|f| (f, crate::buf::DEFAULT_HEADROOM))
            .collect();
        let (each, _, one) = c.burst(POD_A, &two);
        assert_eq!(
            (each[0].0, each[1].0),
            (Verdict::Output(POD_B), Verdict::Output(POD_C))
        );
        assert_eq!(one, None);
    }
}

/// A burst of 32 new destinations runs the stages, which install 32 flows; the
/// same burst again is all hits (the burst reports its one port); the answers
/// stay those of the stages.
#[test]
fn a_burst_of_new_destinations_is_routed_by_the_stages_then_the_table() {
    // 10.9.0.0/16 via B, a local pod in blue.
    let mut c = Cached::new(routed(1, false, UPLINK_MAC, 2, "10.1.0.11"), false);
    let burst_to = |first: u32| -> Vec<_> {
        (first..first + crate::BURST as u32)
            .map(|k| {
                let dst = format!("10.9.{}.{}", k / 200, 1 + k % 200);
                (
                    ping(G_GREEN, C, "10.2.0.10", &dst, 64, 16),
                    crate::buf::DEFAULT_HEADROOM,
                )
            })
            .collect()
    };
    let check = |c: &mut Cached, frames: &[(Vec<u8>, usize)], want_one| {
        let (each, _, one) = c.burst(POD_C, frames);
        for ((frame, _), got) in frames.iter().zip(&each) {
            assert_eq!(got.0, Verdict::Output(POD_B));
            assert_eq!(*got, c.reference(POD_C, frame));
        }
        assert_eq!(one, want_one);
    };
    // Cold: the stages decide each of the 32 and install its flow.
    check(&mut c, &burst_to(0), None);
    check(&mut c, &burst_to(32), None);
    // Installed: every frame a hit, the burst reported whole.
    check(&mut c, &burst_to(0), Some(POD_B));
    check(&mut c, &burst_to(32), Some(POD_B));
}

/// A burst routed to one destination address (decided with one route lookup)
/// gives every frame what the per-packet pipeline gives it; so does the same burst
/// with one frame that breaks the run (another address, TTL 1, options, not IPv4,
/// not to the gateway, too short) at the start, the middle or the end, which the
/// straight pass and the per-packet pipeline then decide.
#[test]
fn a_burst_routed_to_one_address_agrees_with_the_full_path() {
    let mut c = Cached::new(routed(1, false, UPLINK_MAC, 2, "10.1.0.11"), false);
    let flow = ping(G_GREEN, C, "10.2.0.10", "10.9.1.1", 64, 16);
    // A name, and what it does to one frame of the run.
    type Breaker = (&'static str, fn(&mut Vec<u8>));
    let breakers: [Breaker; 7] = [
        ("none", |_| {}),
        ("another address", |f| f[33] ^= 1),
        ("TTL 1", |f| f[22] = 1),
        ("options", |f| f[14] = 0x46),
        ("not IPv4", |f| f[12..14].copy_from_slice(&[0x86, 0xdd])),
        ("not to the gateway", |f| f[5] ^= 1),
        ("too short", |f| f.truncate(30)),
    ];
    for (name, brk) in &breakers {
        for at in [0, 15, 31] {
            let mut frames = vec![(flow.clone(), crate::buf::DEFAULT_HEADROOM); crate::BURST];
            brk(&mut frames[at].0);
            // Twice: the first burst may fill the caches on the per-packet path.
            for round in 0..2 {
                let one = c.burst_agrees(POD_C, &frames, &format!("{name} at {at}, {round}"));
                // The unbroken run, once the caches are warm, reports its port.
                if *name == "none" && round == 1 {
                    assert_eq!(one, Some(POD_B), "{name} at {at}: one port");
                }
            }
        }
    }
}

/// A UDP datagram of `payload` bytes from port 40000 to port 9, checksum 0.
fn udp4(dst_mac: MacAddr, src_mac: MacAddr, src: &str, dst: &str, payload: usize) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, 0x0800);
    f.extend_from_slice(&ipv4_header(ip4(src), ip4(dst), 17, 64, 8 + payload, false));
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    f
}

/// A burst of one UDP flow to a remote endpoint (encapsulated with one lookup and
/// one flow hash) gives every frame what the per-packet pipeline gives it; so does
/// the same burst with one frame that breaks the run (another port, address or
/// MAC, a later fragment, options, ICMP, a tag, too little headroom, too short,
/// too big for the underlay) at the start, the middle or the end, and with one
/// frame that stays in it (another length, source MAC or TTL).
#[test]
fn a_burst_of_one_flow_to_a_remote_endpoint_agrees_with_the_full_path() {
    let mut c = Cached::new(routed(1, false, UPLINK_MAC, 2, "10.1.0.11"), false);
    let flow = udp4(R, A, "10.1.0.10", "10.1.0.20", 18);
    // A name, what it does to one frame of the run, that frame's headroom, and
    // whether the frame stays in the run (it differs only where a flow does not).
    type Breaker = (&'static str, fn(&mut Vec<u8>), usize, bool);
    let room = crate::buf::DEFAULT_HEADROOM;
    let breakers: [Breaker; 15] = [
        ("none", |_| {}, room, true),
        (
            "longer",
            |f| *f = udp4(R, A, "10.1.0.10", "10.1.0.20", 58),
            room,
            true,
        ),
        (
            "shorter",
            |f| *f = udp4(R, A, "10.1.0.10", "10.1.0.20", 2),
            room,
            true,
        ),
        ("another source MAC", |f| f[11] ^= 1, room, true),
        ("another TTL", |f| f[22] = 9, room, true),
        ("another port", |f| f[35] ^= 1, room, false),
        ("another address", |f| f[33] ^= 1, room, false),
        ("another MAC", |f| f[5] ^= 1, room, false),
        ("later fragment", |f| f[21] = 1, room, false),
        ("options", |f| f[14] = 0x46, room, false),
        ("ICMP", |f| f[23] = 1, room, false),
        ("VLAN", |f| f[12] = 0x81, room, false),
        ("no headroom", |_| {}, 10, false),
        ("too short", |f| f.truncate(36), room, false),
        // The network's MTU is the underlay's 1500 less the 50 of the outer header.
        (
            "too big",
            |f| *f = udp4(R, A, "10.1.0.10", "10.1.0.20", 1450),
            room,
            false,
        ),
    ];
    for (name, brk, headroom, stays) in &breakers {
        for at in [0, 15, 31] {
            let mut frames = vec![(flow.clone(), room); crate::BURST];
            brk(&mut frames[at].0);
            frames[at].1 = *headroom;
            for round in 0..2 {
                let one = c.burst_agrees(POD_A, &frames, &format!("{name} at {at}, {round}"));
                // A run, once the caches are warm, reports its port.
                if *stays && round == 1 {
                    assert_eq!(one, Some(UPLINK), "{name} at {at}: one port");
                }
            }
        }
    }
}

/// Bursts of one flow to a remote endpoint, as a bulk flow sends them, through one
/// kept scratch (the encap run's cached header): after a relearned next hop, for
/// another flow, for the same frames from another network and after another
/// snapshot (the endpoint moved to another VTEP, the uplink got a new MAC) every
/// frame gets what the per-packet pipeline gives it, and a burst one header.
#[test]
fn bursts_of_one_flow_follow_the_next_hop_the_flow_the_network_and_the_snapshot() {
    const MOVED: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 2]);
    const NEW_UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 0x11]);
    let mut c = Cached::new(routed(1, false, UPLINK_MAC, 2, "10.1.0.11"), false);
    let burst_of = |f: Vec<u8>| vec![(f, crate::buf::DEFAULT_HEADROOM); crate::BURST];
    let flow = burst_of(udp4(R, A, "10.1.0.10", "10.1.0.20", 18));
    let mut other_flow = flow.clone();
    other_flow.iter_mut().for_each(|(f, _)| f[35] ^= 1);
    // The outer source and destination MAC and destination address every frame
    // of a burst got; each burst is also held to the per-packet pipeline's answer.
    let run = |c: &mut Cached, port, frames: &[(Vec<u8>, usize)], what: &str| {
        let one = c.burst_agrees(port, frames, what);
        let (each, _, _) = c.burst(port, frames);
        let outers: Vec<_> = each
            .iter()
            .map(|(_, f)| {
                let m = wire::parse(f).unwrap();
                (m.src_mac, m.dst_mac, m.dst_addr())
            })
            .collect();
        assert!(outers.iter().all(|o| *o == outers[0]), "{what}: one header");
        (one, outers[0])
    };
    let to = |mac, vtep| (UPLINK_MAC, mac, Some(vtep_ip(false, vtep)));
    run(&mut c, POD_A, &flow, "cold");
    assert_eq!(
        run(&mut c, POD_A, &flow, "warm"),
        (Some(UPLINK), to(PEER_MAC, 2))
    );
    // The next hop relearned: a new neighbour generation, the cached header is
    // not used.
    c.table.learn(vtep_ip(false, 2), MOVED, Instant::now());
    for round in ["relearned", "relearned, warm"] {
        assert_eq!(run(&mut c, POD_A, &flow, round).1, to(MOVED, 2), "{round}");
    }
    // Another flow (another source port: the stages first), then the first again.
    run(&mut c, POD_A, &other_flow, "other flow, cold");
    assert_eq!(
        run(&mut c, POD_A, &other_flow, "other flow").0,
        Some(UPLINK)
    );
    assert_eq!(
        run(&mut c, POD_A, &flow, "first flow again").0,
        Some(UPLINK)
    );
    // The same frames from a pod of green, where R is not an endpoint.
    let (one, _) = run(&mut c, POD_C, &flow, "from green");
    assert_ne!(one, Some(UPLINK), "not encapsulated");
    // R moved to VTEP 3 and the uplink has a new MAC: the same network and flow,
    // in another snapshot.
    c.p = routed(2, false, NEW_UPLINK_MAC, 3, "10.1.0.11");
    c.state.bind(&Arc::clone(&c.p));
    for round in ["new snapshot", "new snapshot, warm"] {
        let (_, outer) = run(&mut c, POD_A, &flow, round);
        let want = (NEW_UPLINK_MAC, PEER3_MAC, Some(vtep_ip(false, 3)));
        assert_eq!(outer, want, "{round}");
    }
}

#[test]
fn a_rebound_scratch_follows_the_new_snapshot() {
    const NEW_UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 0x11]);
    let old = routed(1, false, UPLINK_MAC, 2, "10.1.0.20");
    // R moved to VTEP 3, 10.9.0.0/16 now goes to B (local), the uplink got a new MAC.
    let new = routed(2, false, NEW_UPLINK_MAC, 3, "10.1.0.11");
    let mut c = Cached::new(old, false);
    let to_r = ping(R, A, "10.1.0.10", "10.1.0.20", 64, 16);
    let to_s = ping(S, C, "10.2.0.10", "10.2.0.20", 64, 16);
    let via = ping(G_BLUE, A, "10.1.0.10", "10.9.1.1", 64, 16);
    let outer = |f: &[u8]| {
        let m = wire::parse(f).unwrap();
        (m.src_mac, m.dst_mac, m.dst_addr().unwrap())
    };
    for _ in 0..2 {
        let (v, f) = c.cached(POD_A, &to_r);
        assert_eq!(v, Verdict::Output(UPLINK));
        assert_eq!(outer(&f), (UPLINK_MAC, PEER_MAC, vtep_ip(false, 2)));
        let (v, f) = c.cached(POD_C, &to_s);
        assert_eq!(v, Verdict::Output(UPLINK));
        assert_eq!(outer(&f), (UPLINK_MAC, PEER3_MAC, vtep_ip(false, 3)));
        let (v, f) = c.cached(POD_A, &via);
        assert_eq!(v, Verdict::Output(UPLINK));
        assert_eq!(outer(&f), (UPLINK_MAC, PEER_MAC, vtep_ip(false, 2)));
    }

    c.p = Arc::clone(&new);
    c.state.bind(&new);
    let (v, f) = c.cached(POD_A, &to_r);
    assert_eq!(v, Verdict::Output(UPLINK));
    assert_eq!(outer(&f), (NEW_UPLINK_MAC, PEER3_MAC, vtep_ip(false, 3)));
    assert_eq!((v, f), c.fresh(POD_A, &to_r));
    // Same (network, VTEP) key as before the change: the header must be rebuilt.
    let (v, f) = c.cached(POD_C, &to_s);
    assert_eq!(outer(&f), (NEW_UPLINK_MAC, PEER3_MAC, vtep_ip(false, 3)));
    assert_eq!((v, f), c.fresh(POD_C, &to_s));
    // Same (network, destination) key: the route must be looked up again.
    let (v, f) = c.cached(POD_A, &via);
    assert_eq!(v, Verdict::Output(POD_B));
    assert_eq!((&f[0..6], &f[6..12], f[22]), (&B.0[..], &G_BLUE.0[..], 63));
    assert_eq!((v, f), c.fresh(POD_A, &via));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "worker state bound to another snapshot")]
fn a_scratch_not_rebound_is_caught_in_debug_builds() {
    let mut c = Cached::new(routed(1, false, UPLINK_MAC, 2, "10.1.0.20"), false);
    let via = ping(G_BLUE, A, "10.1.0.10", "10.9.1.1", 64, 16);
    assert_eq!(c.cached(POD_A, &via).0, Verdict::Output(UPLINK));
    c.p = routed(2, false, UPLINK_MAC, 2, "10.1.0.11");
    c.cached(POD_A, &via);
}

#[test]
fn the_encap_cache_follows_a_relearned_next_hop() {
    const MOVED: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 2]);
    for v6 in [false, true] {
        let mut c = Cached::new(routed(1, v6, UPLINK_MAC, 2, "10.1.0.20"), v6);
        let l2 = ping(R, A, "10.1.0.10", "10.1.0.20", 64, 16);
        let routed = ping(G_BLUE, A, "10.1.0.10", "10.9.1.1", 64, 16);
        let next_hop = |f: &[u8]| wire::parse(f).unwrap().dst_mac;
        let check = |c: &mut Cached, want: MacAddr| {
            for frame in [&l2, &routed] {
                let (v, f) = c.cached(POD_A, frame);
                assert_eq!(v, Verdict::Output(UPLINK), "v6 underlay={v6}");
                assert_eq!(next_hop(&f), want, "v6 underlay={v6}");
                assert_eq!((v, f), c.fresh(POD_A, frame), "v6 underlay={v6}");
            }
        };
        check(&mut c, PEER_MAC);
        check(&mut c, PEER_MAC);
        let now = Instant::now();
        assert_eq!(
            c.table.learn(vtep_ip(v6, 2), MOVED, now),
            LearnOutcome::Changed
        );
        check(&mut c, MOVED);
        // Forgotten: no stale header is used, the packet waits for resolution.
        assert!(c.table.remove(vtep_ip(v6, 2)));
        assert_eq!(
            c.cached(POD_A, &l2).0,
            Verdict::Drop(DropReason::NeighborUnresolved)
        );
        c.table.learn(vtep_ip(v6, 2), PEER_MAC, now);
        check(&mut c, PEER_MAC);
        // VTEP 3's entry was never invalidated by VTEP 2's changes, and is right.
        let (v, f) = c.cached(POD_C, &ping(S, C, "10.2.0.10", "10.2.0.20", 64, 16));
        assert_eq!((v, next_hop(&f)), (Verdict::Output(UPLINK), PEER3_MAC));
    }
}

/// A trace runs the workers' own stages: every frame of every path gets the
/// verdict and the bytes the pipeline gives it, and the lines are the records of
/// the stages it met, in their order (the parse and the ingress first, the
/// deciding stage's record after them).
#[test]
fn a_trace_is_the_stages_own_records_of_the_real_run() {
    for v6 in [false, true] {
        let p = routed(1, v6, UPLINK_MAC, 2, "10.1.0.20");
        let cases = varied_traffic(&p, v6);
        let mut c = Cached::new(Arc::clone(&p), v6);
        let names = TraceNames::default();
        for (name, port, frame, want) in &cases {
            let what = format!("v6 underlay={v6}, {name}");
            let map = c.table.reader().load_full();
            let t = p.trace(*port, frame, &map, &names);
            assert_eq!(t.verdict, *want, "{what}");
            assert_eq!(
                (t.verdict, t.frame_after.clone()),
                c.reference(*port, frame),
                "{what}"
            );
            let stages: Vec<&str> = t.lines.iter().map(|l| l.stage).collect();
            assert_eq!(stages[..2], ["parse", "ingress"], "{what}: {stages:?}");
            let has = |s: &str| stages.contains(&s);
            let expect = match *name {
                "ARP" => "arp_responder",
                "v6 NS for the gateway" => "nd_responder",
                "underlay ARP/NS for our VTEP" => "underlay_arp_nd",
                "truncated" | "decap, VXLAN without the I flag" => "parse",
                // Not a tunnel packet (v4 underlay): nothing past the ingress.
                "decap, a first fragment" if !v6 => "ingress",
                n if n.starts_with("decap") => "decap",
                n if n.contains("routed") || n.contains("route") || n.contains("TTL") => "route",
                _ => "l2",
            };
            assert!(has(expect), "{what}: {stages:?}");
            if t.frame_after != *frame {
                assert_eq!(stages.last(), Some(&"rewrite"), "{what}: {stages:?}");
            }
            if *want == Verdict::Output(UPLINK) && *port != UPLINK {
                assert!(has("encap"), "{what}: {stages:?}");
            }
        }
    }
    // The records say what decided: the entry met, the tunnel's network.
    let p = routed(1, false, UPLINK_MAC, 2, "10.1.0.20");
    let c = Cached::new(Arc::clone(&p), false);
    let map = c.table.reader().load_full();
    let mut names = TraceNames::default();
    names.ports.insert(POD_B, "pod-b".into());
    let t = p.trace(
        POD_A,
        &ping(B, A, "10.1.0.10", "10.1.0.11", 64, 16),
        &map,
        &names,
    );
    let l2 = t.lines.iter().find(|l| l.stage == "l2").unwrap();
    assert_eq!(
        l2.detail,
        format!("network \"blue\": {B} -> local port pod-b")
    );
    let t = p.trace(
        UPLINK,
        &from_peer(
            false,
            100,
            TunnelKind::Vxlan,
            &ping(A, R, "10.1.0.20", "10.1.0.10", 64, 20),
        ),
        &map,
        &names,
    );
    let decap = t.lines.iter().find(|l| l.stage == "decap").unwrap();
    assert_eq!(decap.detail, "Vxlan VNI 100 -> network \"blue\"");
}

// --- The flow table across snapshot swaps and delta writes ---

/// `p`'s overlay with `changes` applied as generation `generation`, as the
/// daemon publishes a delta write; `None` when the patch refuses them.
fn patched(p: &Pipeline, generation: u64, changes: &[OverlayChange]) -> Option<Arc<Pipeline>> {
    let overlay = p.overlay.patched(generation, changes).ok()?;
    let l2 = L2PipelineBuilder::new(generation).build().unwrap();
    Some(Arc::new(Pipeline::new(
        generation,
        l2,
        overlay,
        wire::ParseConfig::default(),
    )))
}

impl Cached {
    /// Publishes `p` to the kept state, as the worker's next round does.
    fn swap(&mut self, p: Arc<Pipeline>) {
        self.p = p;
        self.state.bind(&self.p);
    }
}

fn remote(network: &str, mac: MacAddr, ips: &[&str], vtep: IpAddr) -> RemoteEndpointSpec {
    RemoteEndpointSpec {
        network: network.into(),
        mac,
        ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        vtep,
    }
}

#[test]
fn a_flow_entry_is_kept_revalidated_or_reinstalled_as_its_networks_change() {
    let mut c = Cached::new(routed(1, false, UPLINK_MAC, 2, "10.1.0.20"), false);
    let stats = |c: &Cached| c.state.flow_stats();
    let blue_local = ping(B, A, "10.1.0.10", "10.1.0.11", 64, 16);
    let blue_to_green = ping(G_BLUE, A, "10.1.0.10", "10.2.0.10", 64, 16);
    let check = |c: &mut Cached, frame: &[u8], what: &str| {
        let got = c.cached(POD_A, frame);
        assert_eq!(got, c.reference(POD_A, frame), "{what}");
        got
    };
    for frame in [&blue_local, &blue_to_green] {
        check(&mut c, frame, "cold");
    }
    assert_eq!(
        (stats(&c).installs, stats(&c).misses, stats(&c).hits),
        (2, 2, 0)
    );
    // The same snapshot: hits, no revalidation.
    for frame in [&blue_local, &blue_to_green] {
        check(&mut c, frame, "warm");
    }
    assert_eq!(
        (stats(&c).installs, stats(&c).hits, stats(&c).revalidations),
        (2, 2, 0)
    );
    // A pod added in red (another tenant): both entries stay, restamped once.
    let red_pod = local(
        "red",
        MacAddr([2, 0, 0, 0, 3, 3]),
        &["10.1.0.33"],
        PortIdx(9),
    );
    let next = patched(&c.p, 2, &[OverlayChange::AddLocal(red_pod)]).unwrap();
    c.swap(next);
    for round in 0..2 {
        for frame in [&blue_local, &blue_to_green] {
            check(&mut c, frame, &format!("red changed, round {round}"));
        }
    }
    let s = stats(&c);
    assert_eq!((s.installs, s.hits, s.revalidations), (2, 6, 2));
    // An endpoint added in green: the routed flow (into green) runs the stages
    // again; the switched one in blue is restamped.
    let green_remote = remote(
        "green",
        MacAddr([2, 0, 0, 0, 3, 4]),
        &["10.2.0.44"],
        vtep_ip(false, 3),
    );
    let next = patched(&c.p, 3, &[OverlayChange::AddRemote(green_remote)]).unwrap();
    c.swap(next);
    for frame in [&blue_local, &blue_to_green] {
        check(&mut c, frame, "green changed");
    }
    let s = stats(&c);
    assert_eq!((s.installs, s.revalidations, s.misses), (3, 3, 3));
    // A route of tenant t1 added: the routed flow again, not the switched one.
    let route = RouteSpec {
        tenant: "t1".into(),
        prefix: "10.2.0.0/25".parse().unwrap(),
        target: RouteTarget::Blackhole,
    };
    let next = patched(&c.p, 4, &[OverlayChange::AddRoute(route)]).unwrap();
    c.swap(next);
    let (v, _) = check(&mut c, &blue_to_green, "t1 route added");
    assert_eq!(
        v,
        Verdict::Drop(DropReason::Blackhole),
        "the new route decides"
    );
    check(&mut c, &blue_local, "t1 route added");
    let s = stats(&c);
    assert_eq!((s.installs, s.revalidations, s.misses), (3, 4, 4));
    // B removed from blue: the switched flow to B is not applied from its entry.
    let gone = OverlayChange::Remove {
        network: "blue".into(),
        mac: B,
        ips: vec!["10.1.0.11".parse().unwrap()],
    };
    let next = patched(&c.p, 5, &[gone]).unwrap();
    c.swap(next);
    let (v, _) = check(&mut c, &blue_local, "B removed");
    assert_eq!(v, Verdict::Drop(DropReason::UnknownDestination));
    // A full build moves every generation: every entry runs the stages once.
    let before = stats(&c).misses;
    c.swap(routed(6, false, UPLINK_MAC, 2, "10.1.0.20"));
    check(&mut c, &blue_local, "full build");
    check(&mut c, &blue_to_green, "full build");
    assert_eq!(stats(&c).misses, before + 2);
}

#[test]
fn an_encapsulating_entry_follows_the_underlay_neighbour() {
    const MOVED: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 2]);
    for v6 in [false, true] {
        let mut c = Cached::new(routed(1, v6, UPLINK_MAC, 2, "10.1.0.20"), v6);
        let to_r = udp4(R, A, "10.1.0.10", "10.1.0.20", 18);
        let next_hop = |f: &[u8]| wire::parse(f).unwrap().dst_mac;
        for _ in 0..2 {
            let (v, f) = c.cached(POD_A, &to_r);
            assert_eq!((v, next_hop(&f)), (Verdict::Output(UPLINK), PEER_MAC));
        }
        let installs = c.state.flow_stats().installs;
        assert_eq!(c.state.flow_stats().hits, 1);
        c.table.learn(vtep_ip(v6, 2), MOVED, Instant::now());
        let (v, f) = c.cached(POD_A, &to_r);
        assert_eq!((v, next_hop(&f)), (Verdict::Output(UPLINK), MOVED));
        assert_eq!((v, f), c.reference(POD_A, &to_r));
        assert_eq!(c.state.flow_stats().installs, installs + 1, "re-resolved");
        let (_, f) = c.cached(POD_A, &to_r);
        assert_eq!(next_hop(&f), MOVED);
        assert_eq!(c.state.flow_stats().hits, 3, "v6 underlay={v6}");
    }
}

/// The differential property: random traffic (every path of `varied_traffic`,
/// mangled frames, short headroom) in bursts through the flow table, with
/// snapshot swaps between bursts — delta writes that add and remove endpoints
/// and routes in the networks the traffic uses and in others, full builds that
/// move endpoints and next hops, relearned underlay neighbours — gives every
/// frame the verdict and the bytes the stages alone give it. Same verdicts are
/// same drop counts.
#[test]
fn the_flow_table_agrees_with_the_stages_across_swaps_and_delta_writes() {
    const MOVED: MacAddr = MacAddr([2, 0, 0, 0, 0xee, 2]);
    const S: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x21]);
    let mut next = xorshift();
    // The default table, and the same with admission throttled (as a low hit
    // rate would, `flow/table.rs`): most misses are not installed, which must
    // change no verdict and no byte either.
    for (v6, throttled) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut generation = 1;
        let mut c = Cached::new(routed(generation, v6, UPLINK_MAC, 2, "10.1.0.11"), v6);
        if throttled {
            c.state.flows.pin_throttled();
        }
        let cases = varied_traffic(&c.p, v6);
        let r_ips = ["10.1.0.20", "fd00:1::20"];
        let s_ips = ["10.2.0.20", "fd00:2::20"];
        let changes = |n: u64| -> Vec<OverlayChange> {
            let vtep = vtep_ip(v6, 2 + (n % 2) as u16);
            let route = RouteSpec {
                tenant: "t1".into(),
                prefix: "10.9.1.0/24".parse().unwrap(),
                target: RouteTarget::Blackhole,
            };
            let ips = |ips: &[&str]| ips.iter().map(|s| s.parse().unwrap()).collect();
            match n % 9 {
                0 => vec![OverlayChange::Remove {
                    network: "blue".into(),
                    mac: R,
                    ips: ips(&r_ips),
                }],
                1 => vec![OverlayChange::AddRemote(remote("blue", R, &r_ips, vtep))],
                2 => vec![OverlayChange::Remove {
                    network: "green".into(),
                    mac: S,
                    ips: ips(&s_ips),
                }],
                3 => vec![OverlayChange::AddRemote(remote("green", S, &s_ips, vtep))],
                4 => vec![OverlayChange::AddRoute(route)],
                5 => vec![OverlayChange::RemoveRoute(route)],
                6 => vec![OverlayChange::Remove {
                    network: "green".into(),
                    mac: C,
                    ips: ips(&["10.2.0.10", "fd00:2::10"]),
                }],
                7 => vec![OverlayChange::AddLocal(local(
                    "green",
                    C,
                    &["10.2.0.10", "fd00:2::10"],
                    POD_C,
                ))],
                _ => {
                    let mac = MacAddr([2, 0, 0, 9, (n >> 8) as u8, n as u8]);
                    vec![OverlayChange::AddRemote(remote("red", mac, &[], vtep))]
                }
            }
        };
        let (mut compared, mut swaps) = (0, 0);
        for round in 0..150 {
            // Between bursts, now and then: a delta write, a full build, a
            // relearned neighbour.
            match next() % 8 {
                0..=2 => {
                    generation += 1;
                    if let Some(p) = patched(&c.p, generation, &changes(next())) {
                        c.swap(p);
                        swaps += 1;
                    }
                }
                3 => {
                    generation += 1;
                    let mac = if next().is_multiple_of(2) {
                        UPLINK_MAC
                    } else {
                        MOVED
                    };
                    let via = if next().is_multiple_of(2) {
                        "10.1.0.11"
                    } else {
                        "10.1.0.20"
                    };
                    c.swap(routed(generation, v6, mac, 2 + (next() % 2) as u16, via));
                    swaps += 1;
                }
                4 => {
                    let mac = if next().is_multiple_of(2) {
                        PEER_MAC
                    } else {
                        MOVED
                    };
                    c.table.learn(vtep_ip(v6, 2), mac, Instant::now());
                }
                _ => {}
            }
            // A burst from one port: its cases, repeated (flows hit), some
            // mangled, some with little headroom.
            let port = cases[(next() as usize) % cases.len()].1;
            let of_port: Vec<_> = cases.iter().filter(|c| c.1 == port).collect();
            let frames: Vec<(Vec<u8>, usize)> = (0..crate::BURST)
                .map(|_| {
                    let f = &of_port[(next() as usize) % of_port.len()].2;
                    let f = if next().is_multiple_of(6) {
                        mangled_any(f, &mut next)
                    } else {
                        f.clone()
                    };
                    let headroom = if next().is_multiple_of(12) {
                        (next() % 80) as usize
                    } else {
                        128
                    };
                    (f, headroom)
                })
                .collect();
            let (each, bytes, one) = c.burst(port, &frames);
            let mut want_bytes = 0;
            for ((frame, headroom), got) in frames.iter().zip(&each) {
                let map = c.table.reader().load_full();
                let mut ctx = Ctx::new(&map, &mut c.limiter, Instant::now());
                let mut buf = VecBuf::with_room(frame, *headroom, 2048);
                let v = c.p.process(port, &mut buf, &mut ctx);
                let what = format!("v6 underlay={v6}, round {round}: {frame:02x?}");
                assert_eq!(*got, (v, buf.data().to_vec()), "{what}");
                want_bytes += got.1.len() as u64;
                compared += 1;
            }
            assert_eq!(bytes, want_bytes, "round {round}: bytes");
            if let Some(one) = one {
                assert!(each.iter().all(|(v, _)| *v == Verdict::Output(one)));
            }
        }
        let s = c.state.flow_stats();
        assert!(
            compared == 150 * crate::BURST && swaps > 30,
            "{compared} {swaps}"
        );
        if !throttled {
            assert!(
                s.hits > 400 && s.revalidations > 10 && s.installs > 50,
                "{s:?}"
            );
        } else {
            // Most bursts bypassed the table; the sampled ones looked up
            // and skipped installs.
            assert!(s.bypassed > 0 && s.skipped_installs > 0, "{s:?}");
        }
    }
}

/// The conntrack stage and its flow-table hook, on this module's fixtures.
#[path = "conntrack/stage_tests.rs"]
mod conntrack_stage;

/// The LB stage and its flow-table rewrite, on this module's fixtures.
#[path = "lb/stage_tests.rs"]
mod lb_stage;

#[path = "conntrack/handoff_tests.rs"]
mod conntrack_handoff;

/// The policy stage, through the stages and the flow table, on this
/// module's fixtures.
#[path = "policy/stage_tests.rs"]
mod policy_stage;
