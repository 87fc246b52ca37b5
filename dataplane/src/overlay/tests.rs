//! Tests of the compiled snapshot: lookups on a two-tenant fixture, and every
//! validation error.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::lpm::LpmFull;
use super::*;
use crate::ethernet::MacAddr;
use crate::port::{PortIdx, MAX_PORTS};
use crate::snapshot::SnapshotCell;

const GW: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
const D: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0d]);
const E: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0e]);
const UPLINK_MAC: MacAddr = MacAddr([0x02, 0xff, 0, 0, 0, 1]);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn underlay() -> UnderlaySpec {
    UnderlaySpec {
        uplink: PortIdx(0),
        local_vtep_ip: ip("10.0.0.1"),
        local_mac: UPLINK_MAC,
        mtu: 1550,
        on_link: "10.0.0.0/24".parse().unwrap(),
        gateway: Some(ip("10.0.0.254")),
    }
}

fn network(name: &str, vni: u32, tenant: &str, subnets: &[&str], gws: &[&str]) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        policy_on_change: Default::default(),
        vni,
        encap: Encap::Vxlan,
        tenant: tenant.into(),
        subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
        gateway_ips: ips(gws),
        gateway_mac: GW,
        flood_unknown: false,
        conntrack: false,
        conntrack_window_tracking: true,
        vteps: Vec::new(),
    }
}

fn local(network: &str, mac: MacAddr, addrs: &[&str], port: u16) -> LocalEndpointSpec {
    LocalEndpointSpec {
        network: network.into(),
        mac,
        ips: ips(addrs),
        port: PortIdx(port),
    }
}

fn remote(network: &str, mac: MacAddr, addrs: &[&str], vtep: &str) -> RemoteEndpointSpec {
    RemoteEndpointSpec {
        network: network.into(),
        mac,
        ips: ips(addrs),
        vtep: ip(vtep),
    }
}

fn next_hop(tenant: &str, prefix: &str, network: &str, via: &str) -> RouteSpec {
    RouteSpec {
        tenant: tenant.into(),
        prefix: prefix.parse().unwrap(),
        target: RouteTarget::NextHop {
            network: network.into(),
            ip: ip(via),
        },
    }
}

/// Tenant t1: blue (VNI 100, v4+v6, floods to two VTEPs) and green (VNI 200);
/// tenant t2: red (VNI 300), which reuses blue's subnet, gateway, a MAC and an IP.
fn fixture() -> OverlayBuilder {
    let mut b = OverlayBuilder::new(7);
    let mut blue = network(
        "blue",
        100,
        "t1",
        &["10.1.0.0/24", "fd00:1::/64"],
        &["10.1.0.1", "fd00:1::1"],
    );
    blue.flood_unknown = true;
    blue.vteps = ips(&["10.0.0.2", "10.0.0.3"]);
    let mut green = network("green", 200, "t1", &["10.2.0.0/24"], &["10.2.0.1"]);
    green.encap = Encap::Geneve;
    b.underlay(underlay())
        .network(blue)
        .network(green)
        .network(network("red", 300, "t2", &["10.1.0.0/24"], &["10.1.0.1"]))
        .local_endpoint(local("blue", A, &["10.1.0.10", "fd00:1::10"], 1))
        .local_endpoint(local("blue", B, &["10.1.0.11"], 1))
        .local_endpoint(local("green", C, &["10.2.0.10"], 2))
        .local_endpoint(local("red", A, &["10.1.0.10"], 3))
        .remote_endpoint(remote("blue", D, &["10.1.0.20", "fd00:1::20"], "10.0.0.2"))
        .remote_endpoint(remote("green", E, &["10.2.0.20"], "192.168.5.5"))
        .route(next_hop("t1", "0.0.0.0/0", "green", "10.2.0.20"))
        .route(RouteSpec {
            tenant: "t1".into(),
            prefix: "10.9.0.0/16".parse().unwrap(),
            target: RouteTarget::Blackhole,
        })
        .route(next_hop("t1", "::/0", "blue", "fd00:1::20"));
    b
}

fn ids(s: &OverlaySnapshot) -> (NetworkId, NetworkId, NetworkId) {
    (
        s.network_by_name("blue").unwrap(),
        s.network_by_name("green").unwrap(),
        s.network_by_name("red").unwrap(),
    )
}

#[test]
fn ingress_classification() {
    let s = fixture().build().unwrap();
    let (blue, green, red) = ids(&s);
    assert_eq!(s.generation(), 7);
    assert_eq!(
        (blue, green, red),
        (NetworkId(0), NetworkId(1), NetworkId(2))
    );
    assert_eq!(s.network_by_vni(100), Some(blue));
    assert_eq!(s.network_by_vni(300), Some(red));
    assert_eq!(s.network_by_vni(101), None);
    assert_eq!(s.network_of_port(PortIdx(1)), Some(blue));
    assert_eq!(s.network_of_port(PortIdx(3)), Some(red));
    assert_eq!(s.network_of_port(PortIdx(0)), None, "the uplink");
    assert_eq!(s.network_of_port(PortIdx(9)), None);
    assert_eq!(s.network_of_port(PortIdx(500)), None);
    let b = s.network(blue).unwrap();
    assert_eq!((b.vni, b.encap, b.gateway_mac), (100, Encap::Vxlan, GW));
    assert_eq!(s.vrf_name(b.vrf), Some("t1"));
    assert_eq!(s.network(green).unwrap().vrf, b.vrf);
    assert_ne!(s.network(red).unwrap().vrf, b.vrf);
    assert_eq!(s.vrf_by_name("t2"), Some(s.network(red).unwrap().vrf));
    assert_eq!(&*b.local_ports, &[PortIdx(1)]);
    assert_eq!(s.network(NetworkId(3)), None);
    assert_eq!(s.network_count(), 3);
    assert_eq!(s.endpoint_count(), 6);
}

#[test]
fn networks_are_isolated_despite_reused_macs_and_ips() {
    let s = fixture().build().unwrap();
    let (blue, green, red) = ids(&s);
    assert_eq!(s.l2_lookup(blue, A), Some(L2Dest::Local(PortIdx(1))));
    assert_eq!(s.l2_lookup(red, A), Some(L2Dest::Local(PortIdx(3))));
    assert_eq!(s.l2_lookup(green, A), None);
    assert_eq!(s.l2_lookup(red, B), None, "B lives in blue only");
    assert_eq!(s.l2_lookup(red, D), None, "D lives in blue only");
    let a = ip("10.1.0.10");
    assert_eq!(s.host_lookup(blue, a), Some((A, L2Dest::Local(PortIdx(1)))));
    assert_eq!(s.host_lookup(red, a), Some((A, L2Dest::Local(PortIdx(3)))));
    assert_eq!(s.host_lookup(red, ip("10.1.0.11")), None);
    assert_eq!(s.arp_lookup(red, "10.1.0.20".parse().unwrap()), None);
    // Red's VRF routes only its own subnet: no way into tenant t1.
    let red_vrf = s.network(red).unwrap().vrf;
    assert_eq!(s.route(red_vrf, ip("10.2.0.10")), None);
    assert_eq!(
        s.route(red_vrf, ip("10.1.0.77")),
        Some(RouteResult::Connected(red))
    );
}

#[test]
fn arp_and_nd_answer_gateway_and_known_endpoints() {
    let s = fixture().build().unwrap();
    let (blue, green, _) = ids(&s);
    let v4 = |x: &str| x.parse().unwrap();
    let v6 = |x: &str| x.parse().unwrap();
    assert_eq!(s.arp_lookup(blue, v4("10.1.0.1")), Some(GW));
    assert_eq!(s.arp_lookup(blue, v4("10.1.0.10")), Some(A));
    assert_eq!(
        s.arp_lookup(blue, v4("10.1.0.20")),
        Some(D),
        "remote endpoint"
    );
    assert_eq!(s.arp_lookup(blue, v4("10.1.0.99")), None);
    assert_eq!(s.arp_lookup(green, v4("10.1.0.10")), None);
    assert_eq!(s.nd_lookup(blue, v6("fd00:1::1")), Some(GW));
    assert_eq!(s.nd_lookup(blue, v6("fd00:1::10")), Some(A));
    assert_eq!(s.nd_lookup(blue, v6("fd00:1::20")), Some(D));
    assert_eq!(s.nd_lookup(blue, v6("fd00:1::99")), None);
    assert!(s.is_gateway(blue, ip("10.1.0.1")));
    assert!(s.is_gateway(blue, ip("fd00:1::1")));
    assert!(!s.is_gateway(blue, ip("10.1.0.10")));
    assert!(!s.is_gateway(green, ip("10.1.0.1")));
    assert_eq!(
        s.host_lookup(blue, ip("10.1.0.1")),
        None,
        "gateway is not a host"
    );
}

#[test]
fn routes_between_networks_of_a_tenant() {
    let s = fixture().build().unwrap();
    let (blue, green, _) = ids(&s);
    let vrf = s.network(blue).unwrap().vrf;
    assert_eq!(
        s.route(vrf, ip("10.2.0.10")),
        Some(RouteResult::Connected(green))
    );
    assert_eq!(
        s.host_lookup(green, ip("10.2.0.10")),
        Some((C, L2Dest::Local(PortIdx(2))))
    );
    assert_eq!(
        s.route(vrf, ip("10.1.0.20")),
        Some(RouteResult::Connected(blue))
    );
    let e_vtep = s.vtep_by_ip(ip("192.168.5.5")).unwrap();
    assert_eq!(
        s.route(vrf, ip("8.8.8.8")),
        Some(RouteResult::NextHop {
            network: green,
            mac: E,
            dest: L2Dest::Remote(e_vtep)
        })
    );
    assert_eq!(s.route(vrf, ip("10.9.3.4")), Some(RouteResult::Blackhole));
    let d_vtep = s.vtep_by_ip(ip("10.0.0.2")).unwrap();
    assert_eq!(
        s.route(vrf, ip("2001:db8::1")),
        Some(RouteResult::NextHop {
            network: blue,
            mac: D,
            dest: L2Dest::Remote(d_vtep)
        })
    );
    assert_eq!(
        s.route(vrf, ip("fd00:1::5")),
        Some(RouteResult::Connected(blue))
    );
    assert_eq!(s.route(VrfId(9), ip("10.2.0.10")), None);
    // 3 connected + 1 connected v6 in t1, 1 in t2, 3 static.
    assert_eq!(s.route_count(), 7);
}

#[test]
fn remote_endpoints_go_to_interned_vteps() {
    let s = fixture().build().unwrap();
    let (blue, green, _) = ids(&s);
    let Some(L2Dest::Remote(d)) = s.l2_lookup(blue, D) else {
        panic!("D is remote");
    };
    assert_eq!(
        *s.vtep(d).unwrap(),
        VtepInfo {
            ip: ip("10.0.0.2"),
            next_hop: Some(ip("10.0.0.2")),
        },
        "on-link: resolved directly"
    );
    let Some(L2Dest::Remote(e)) = s.l2_lookup(green, E) else {
        panic!("E is remote");
    };
    assert_eq!(
        s.vtep(e).unwrap().next_hop,
        Some(ip("10.0.0.254")),
        "off-link: through the underlay gateway"
    );
    // Flood list: interned with the endpoints' VTEPs, in order.
    let flood: Vec<IpAddr> = s
        .network(blue)
        .unwrap()
        .flood_vteps
        .iter()
        .map(|&v| s.vtep(v).unwrap().ip)
        .collect();
    assert_eq!(flood, ips(&["10.0.0.2", "10.0.0.3"]));
    assert_eq!(s.network(blue).unwrap().flood_vteps[0], d);
    assert!(s.network(blue).unwrap().flood_unknown);
    assert!(!s.network(green).unwrap().flood_unknown);
    assert!(s.network(green).unwrap().flood_vteps.is_empty());
    assert_eq!(s.vteps().len(), 3);
    assert_eq!(s.vtep(VtepIdx(3)), None);
    let u = s.underlay().unwrap();
    assert_eq!((u.uplink, u.local_mac), (PortIdx(0), UPLINK_MAC));
    // 1550 - (20 IPv4 + 8 UDP + 8 VXLAN/Geneve + 14 inner Ethernet).
    assert_eq!(s.network(blue).unwrap().mtu, Some(1500));
    assert_eq!(s.network(green).unwrap().mtu, Some(1500));
}

#[test]
fn ipv6_underlay_and_no_underlay() {
    let mut b = OverlayBuilder::new(1);
    b.underlay(UnderlaySpec {
        local_vtep_ip: ip("2001:db8::1"),
        on_link: "2001:db8::/64".parse().unwrap(),
        gateway: None,
        mtu: 1570,
        ..underlay()
    })
    .network(network("n", 1, "t", &["10.0.0.0/24"], &[]))
    .remote_endpoint(remote("n", A, &[], "2001:db8::2"))
    .remote_endpoint(remote("n", B, &[], "2001:db9::2"));
    let s = b.build().unwrap();
    assert_eq!(s.network(NetworkId(0)).unwrap().mtu, Some(1500));
    assert_eq!(s.vteps()[1].next_hop, None, "off-link without a gateway");

    let mut b = OverlayBuilder::new(1);
    b.network(network("n", 1, "t", &["10.0.0.0/24"], &[]))
        .local_endpoint(local("n", A, &["10.0.0.5"], 0));
    let s = b.build().unwrap();
    assert!(s.underlay().is_none());
    assert_eq!(s.network(NetworkId(0)).unwrap().mtu, None);
    assert_eq!(s.network_of_port(PortIdx(0)), Some(NetworkId(0)));
}

#[test]
fn empty_snapshot_misses_everything_and_publishes() {
    let s = OverlaySnapshot::empty(0);
    assert_eq!(s.network_by_vni(1), None);
    assert_eq!(s.network_of_port(PortIdx(1)), None);
    assert_eq!(s.l2_lookup(NetworkId(0), A), None);
    assert_eq!(s.route(VrfId(0), ip("1.2.3.4")), None);
    assert!(s.underlay().is_none());
    let cell = SnapshotCell::new(s);
    cell.publish(fixture().build().unwrap());
    assert_eq!(cell.generation(), 7);
    assert_eq!(cell.load().network_by_vni(200), Some(NetworkId(1)));
}

/// Applies `edit` to the fixture and expects `want`.
fn rejects(edit: impl FnOnce(&mut OverlayBuilder), want: OverlayConfigError) {
    let mut b = fixture();
    edit(&mut b);
    assert_eq!(b.build().unwrap_err(), want);
}

#[test]
fn rejects_bad_underlays() {
    use OverlayConfigError as E;
    let with = |u: UnderlaySpec| {
        move |b: &mut OverlayBuilder| {
            b.underlay(u);
        }
    };
    rejects(
        with(UnderlaySpec {
            uplink: PortIdx(MAX_PORTS as u16),
            ..underlay()
        }),
        E::UplinkOutOfRange {
            port: PortIdx(MAX_PORTS as u16),
            max: MAX_PORTS,
        },
    );
    rejects(
        with(UnderlaySpec {
            local_mac: MacAddr::BROADCAST,
            ..underlay()
        }),
        E::UnderlayMulticastMac {
            mac: MacAddr::BROADCAST,
        },
    );
    rejects(
        with(UnderlaySpec {
            on_link: "fd00::/64".parse().unwrap(),
            ..underlay()
        }),
        E::UnderlayFamilyMismatch {
            what: "on-link prefix",
            addr: "fd00::/64".into(),
            local_vtep: ip("10.0.0.1"),
        },
    );
    rejects(
        with(UnderlaySpec {
            gateway: Some(ip("fd00::1")),
            ..underlay()
        }),
        E::UnderlayFamilyMismatch {
            what: "gateway",
            addr: "fd00::1".into(),
            local_vtep: ip("10.0.0.1"),
        },
    );
    rejects(
        with(UnderlaySpec {
            local_vtep_ip: ip("10.0.1.1"),
            ..underlay()
        }),
        E::LocalVtepNotOnLink {
            local_vtep: ip("10.0.1.1"),
            on_link: "10.0.0.0/24".parse().unwrap(),
        },
    );
    rejects(
        with(UnderlaySpec {
            gateway: Some(ip("10.0.1.1")),
            ..underlay()
        }),
        E::UnderlayGatewayNotOnLink {
            gateway: ip("10.0.1.1"),
            on_link: "10.0.0.0/24".parse().unwrap(),
        },
    );
    rejects(
        with(UnderlaySpec {
            mtu: 1329,
            ..underlay()
        }),
        E::UnderlayMtuTooSmall {
            mtu: 1329,
            min: 1330,
        },
    );
}

#[test]
fn rejects_bad_networks() {
    use OverlayConfigError as E;
    rejects(
        |b| {
            b.network(network("blue", 999, "t1", &[], &[]));
        },
        E::DuplicateNetworkName {
            name: "blue".into(),
        },
    );
    rejects(
        |b| {
            b.network(network("big", 1 << 24, "t1", &[], &[]));
        },
        E::VniOutOfRange {
            network: "big".into(),
            vni: 1 << 24,
        },
    );
    rejects(
        |b| {
            b.network(network("again", 200, "t1", &[], &[]));
        },
        E::DuplicateVni {
            vni: 200,
            first: "green".into(),
            second: "again".into(),
        },
    );
    rejects(
        |b| {
            let mut n = network("m", 1, "t1", &[], &[]);
            n.gateway_mac = MacAddr::BROADCAST;
            b.network(n);
        },
        E::GatewayMulticastMac {
            network: "m".into(),
            mac: MacAddr::BROADCAST,
        },
    );
    rejects(
        |b| {
            b.network(network("g", 1, "t1", &["10.3.0.0/24"], &["10.4.0.1"]));
        },
        E::GatewayNotInSubnet {
            network: "g".into(),
            ip: ip("10.4.0.1"),
        },
    );
    rejects(
        |b| {
            b.network(network("wide", 1, "t1", &["10.0.0.0/8"], &[]));
        },
        E::OverlappingSubnets {
            tenant: "t1".into(),
            first_network: "blue".into(),
            first_subnet: "10.1.0.0/24".parse().unwrap(),
            second_network: "wide".into(),
            second_subnet: "10.0.0.0/8".parse().unwrap(),
        },
    );
    rejects(
        |b| {
            b.network(network(
                "twice",
                1,
                "t3",
                &["fd00:9::/64", "fd00:9::/64"],
                &[],
            ));
        },
        E::OverlappingSubnets {
            tenant: "t3".into(),
            first_network: "twice".into(),
            first_subnet: "fd00:9::/64".parse().unwrap(),
            second_network: "twice".into(),
            second_subnet: "fd00:9::/64".parse().unwrap(),
        },
    );
    rejects(
        |b| {
            let mut n = network("f", 1, "t1", &[], &[]);
            n.vteps = ips(&["10.0.0.7", "10.0.0.7"]);
            b.network(n);
        },
        E::DuplicateFloodVtep {
            network: "f".into(),
            vtep: ip("10.0.0.7"),
        },
    );
    rejects(
        |b| {
            let mut n = network("f", 1, "t1", &[], &[]);
            n.vteps = ips(&["fd00::7"]);
            b.network(n);
        },
        E::VtepFamilyMismatch {
            item: "network \"f\" flood list".into(),
            vtep: ip("fd00::7"),
            local_vtep: ip("10.0.0.1"),
        },
    );
    rejects(
        |b| {
            let mut n = network("f", 1, "t1", &[], &[]);
            n.vteps = ips(&["10.0.0.1"]);
            b.network(n);
        },
        E::VtepIsLocal {
            item: "network \"f\" flood list".into(),
            vtep: ip("10.0.0.1"),
        },
    );
    // No underlay at all, yet a flood list.
    let mut b = OverlayBuilder::new(1);
    let mut n = network("f", 1, "t1", &[], &[]);
    n.vteps = ips(&["10.0.0.7"]);
    b.network(n);
    assert_eq!(
        b.build().unwrap_err(),
        E::NoUnderlay {
            item: "network \"f\" flood list".into(),
            vtep: ip("10.0.0.7"),
        }
    );
}

#[test]
fn rejects_too_many_networks_and_vteps() {
    use OverlayConfigError as E;
    let mut b = OverlayBuilder::new(1);
    for i in 0..=MAX_NETWORKS as u32 {
        b.network(network(&i.to_string(), i, "t", &[], &[]));
    }
    assert_eq!(
        b.build().unwrap_err(),
        E::TooManyNetworks {
            count: MAX_NETWORKS + 1,
            max: MAX_NETWORKS,
        }
    );
    let mut b = on_ten_slash_eight();
    let mut n = network("n", 1, "t", &[], &[]);
    n.vteps = (0..=MAX_VTEPS).map(vtep_in_ten).collect();
    b.network(n);
    assert_eq!(b.build().unwrap_err(), E::TooManyVteps { max: MAX_VTEPS });
}

/// A builder whose underlay is on 10.0.0.0/8 (local VTEP 10.255.255.255): room for
/// the most VTEPs a snapshot holds, all on-link.
fn on_ten_slash_eight() -> OverlayBuilder {
    let mut b = OverlayBuilder::new(1);
    b.underlay(UnderlaySpec {
        local_vtep_ip: ip("10.255.255.255"),
        on_link: "10.0.0.0/8".parse().unwrap(),
        gateway: None,
        ..underlay()
    });
    b
}

/// The `i`th address of 10.0.0.0/8.
fn vtep_in_ten(i: usize) -> IpAddr {
    IpAddr::from((10 << 24 | i as u32).to_be_bytes())
}

/// A MAC table entry keeps its destination in 16 bits: the highest port and the
/// last of the most VTEPs a snapshot holds come back as they went in, side by
/// side with the lowest of each, in two networks that share MACs.
#[test]
fn mac_tables_keep_the_highest_port_and_the_last_vtep() {
    let mut b = on_ten_slash_eight();
    let vtep = vtep_in_ten;
    let mut n = network("n", 1, "t", &[], &[]);
    n.vteps = (0..MAX_VTEPS).map(vtep).collect();
    b.network(n).network(network("m", 2, "t", &[], &[]));
    let top = (MAX_PORTS - 1) as u16;
    b.local_endpoint(local("n", A, &[], 1))
        .local_endpoint(local("n", B, &[], top))
        .local_endpoint(local("m", B, &[], 2))
        .remote_endpoint(remote("n", C, &[], "10.0.0.0"))
        .remote_endpoint(remote("n", D, &[], &vtep(MAX_VTEPS - 1).to_string()))
        .remote_endpoint(remote("m", A, &[], &vtep(MAX_VTEPS - 1).to_string()));
    let s = b.build().unwrap();
    let (n, m) = (NetworkId(0), NetworkId(1));
    assert_eq!(s.l2_lookup(n, A), Some(L2Dest::Local(PortIdx(1))));
    assert_eq!(s.l2_lookup(n, B), Some(L2Dest::Local(PortIdx(top))));
    assert_eq!(s.l2_lookup(m, B), Some(L2Dest::Local(PortIdx(2))));
    let last = |d: Option<L2Dest>| match d {
        Some(L2Dest::Remote(v)) => s.vteps()[v.index()].ip,
        other => panic!("{other:?}"),
    };
    assert_eq!(last(s.l2_lookup(n, C)), vtep(0));
    assert_eq!(last(s.l2_lookup(n, D)), vtep(MAX_VTEPS - 1));
    assert_eq!(last(s.l2_lookup(m, A)), vtep(MAX_VTEPS - 1));
    assert_eq!(s.l2_lookup(m, C), None);
    assert_eq!(s.l2_lookup(NetworkId(2), A), None, "no such network");
    assert_eq!(s.endpoint_count(), 6);
    assert_eq!(s.vteps().len(), MAX_VTEPS);
}

/// Host routes scattered so that each needs plies of its own, until the IPv4
/// trie's bound (256 MiB) refuses one: a clear error naming the route, not the
/// host's memory.
#[test]
fn rejects_routes_beyond_the_tries_memory_bound() {
    use OverlayConfigError as E;
    let mut b = fixture();
    // A /32 in every /16 (two or three plies each), then in further /24s (one).
    let hosts = (0u32..1 << 16)
        .map(|i| i << 16 | 1)
        .chain((1u32..).flat_map(|c| (0u32..1 << 16).map(move |i| i << 16 | c << 8 | 1)));
    for addr in hosts.take(200_000) {
        b.route(RouteSpec {
            tenant: "t1".into(),
            prefix: IpNet::V4(Ipv4Net::new(Ipv4Addr::from_bits(addr), 32).unwrap()),
            target: RouteTarget::Blackhole,
        });
    }
    let err = b.build().unwrap_err();
    let E::RouteTableFull {
        tenant,
        prefix,
        reason,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (tenant.as_str(), *reason),
        ("t1", LpmFull::Plies { max: 1 << 18 })
    );
    assert_eq!(
        err.to_string(),
        format!("route {prefix} in tenant \"t1\": the IPv4 routes would need more than 262144 trie plies (256 MiB)")
    );
}

#[test]
fn rejects_bad_endpoints() {
    use OverlayConfigError as E;
    let f = MacAddr([0x02, 0, 0, 0, 0, 0xf0]);
    rejects(
        |b| {
            b.local_endpoint(local("pink", f, &[], 4));
        },
        E::EndpointUnknownNetwork {
            mac: f,
            network: "pink".into(),
        },
    );
    rejects(
        |b| {
            b.remote_endpoint(remote("pink", f, &[], "10.0.0.9"));
        },
        E::EndpointUnknownNetwork {
            mac: f,
            network: "pink".into(),
        },
    );
    let mcast = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    rejects(
        |b| {
            b.local_endpoint(local("blue", mcast, &[], 1));
        },
        E::EndpointMulticastMac {
            network: "blue".into(),
            mac: mcast,
        },
    );
    rejects(
        |b| {
            b.remote_endpoint(remote("blue", GW, &[], "10.0.0.9"));
        },
        E::EndpointMacIsGateway {
            network: "blue".into(),
            mac: GW,
        },
    );
    rejects(
        |b| {
            b.local_endpoint(local("blue", A, &[], 1));
        },
        E::DuplicateMac {
            network: "blue".into(),
            mac: A,
        },
    );
    rejects(
        |b| {
            b.remote_endpoint(remote("blue", A, &[], "10.0.0.9"));
        },
        E::DuplicateMac {
            network: "blue".into(),
            mac: A,
        },
    );
    rejects(
        |b| {
            b.local_endpoint(local("blue", f, &["10.2.0.50"], 1));
        },
        E::EndpointIpOutsideSubnets {
            network: "blue".into(),
            mac: f,
            ip: ip("10.2.0.50"),
        },
    );
    rejects(
        |b| {
            b.local_endpoint(local("green", f, &["fd00:1::50"], 2));
        },
        E::EndpointIpOutsideSubnets {
            network: "green".into(),
            mac: f,
            ip: ip("fd00:1::50"),
        },
    );
    rejects(
        |b| {
            b.local_endpoint(local("blue", f, &["fd00:1::10"], 1));
        },
        E::DuplicateIp {
            network: "blue".into(),
            ip: ip("fd00:1::10"),
            first: A,
            second: f,
        },
    );
    rejects(
        |b| {
            b.remote_endpoint(remote("blue", f, &["10.1.0.11"], "10.0.0.9"));
        },
        E::DuplicateIp {
            network: "blue".into(),
            ip: ip("10.1.0.11"),
            first: B,
            second: f,
        },
    );
    rejects(
        |b| {
            b.local_endpoint(local("blue", f, &["10.1.0.1"], 1));
        },
        E::EndpointIpIsGateway {
            network: "blue".into(),
            mac: f,
            ip: ip("10.1.0.1"),
        },
    );
    rejects(
        |b| {
            b.local_endpoint(local("blue", f, &[], MAX_PORTS as u16));
        },
        E::PortOutOfRange {
            network: "blue".into(),
            mac: f,
            port: PortIdx(MAX_PORTS as u16),
            max: MAX_PORTS,
        },
    );
    rejects(
        |b| {
            b.local_endpoint(local("blue", f, &[], 0));
        },
        E::EndpointOnUplink {
            network: "blue".into(),
            mac: f,
            port: PortIdx(0),
        },
    );
    rejects(
        |b| {
            b.local_endpoint(local("green", f, &[], 1));
        },
        E::PortInTwoNetworks {
            port: PortIdx(1),
            first: "blue".into(),
            second: "green".into(),
        },
    );
    rejects(
        |b| {
            b.remote_endpoint(remote("blue", f, &[], "fd00::9"));
        },
        E::VtepFamilyMismatch {
            item: "remote endpoint 02:00:00:00:00:f0 in network \"blue\"".into(),
            vtep: ip("fd00::9"),
            local_vtep: ip("10.0.0.1"),
        },
    );
    rejects(
        |b| {
            b.remote_endpoint(remote("blue", f, &[], "10.0.0.1"));
        },
        E::VtepIsLocal {
            item: "remote endpoint 02:00:00:00:00:f0 in network \"blue\"".into(),
            vtep: ip("10.0.0.1"),
        },
    );
    let mut b = OverlayBuilder::new(1);
    b.network(network("n", 1, "t", &[], &[]))
        .remote_endpoint(remote("n", f, &[], "10.0.0.9"));
    assert_eq!(
        b.build().unwrap_err(),
        E::NoUnderlay {
            item: "remote endpoint 02:00:00:00:00:f0 in network \"n\"".into(),
            vtep: ip("10.0.0.9"),
        }
    );
}

#[test]
fn rejects_bad_routes() {
    use OverlayConfigError as E;
    let p = |s: &str| s.parse().unwrap();
    rejects(
        |b| {
            b.route(next_hop("t9", "10.7.0.0/16", "blue", "10.1.0.10"));
        },
        E::RouteUnknownTenant {
            tenant: "t9".into(),
            prefix: p("10.7.0.0/16"),
        },
    );
    rejects(
        |b| {
            b.route(next_hop("t1", "10.7.0.0/16", "pink", "10.1.0.10"));
        },
        E::RouteUnknownNetwork {
            tenant: "t1".into(),
            prefix: p("10.7.0.0/16"),
            network: "pink".into(),
        },
    );
    rejects(
        |b| {
            b.route(next_hop("t1", "10.7.0.0/16", "red", "10.1.0.10"));
        },
        E::RouteOtherTenant {
            tenant: "t1".into(),
            prefix: p("10.7.0.0/16"),
            network: "red".into(),
            network_tenant: "t2".into(),
        },
    );
    rejects(
        |b| {
            b.route(next_hop("t1", "10.7.0.0/16", "blue", "10.1.0.99"));
        },
        E::UnknownNextHop {
            tenant: "t1".into(),
            prefix: p("10.7.0.0/16"),
            network: "blue".into(),
            ip: ip("10.1.0.99"),
        },
    );
    rejects(
        |b| {
            b.route(next_hop("t1", "10.7.0.0/16", "blue", "10.1.0.1"));
        },
        E::UnknownNextHop {
            tenant: "t1".into(),
            prefix: p("10.7.0.0/16"),
            network: "blue".into(),
            ip: ip("10.1.0.1"),
        },
    );
    rejects(
        |b| {
            b.route(next_hop("t1", "0.0.0.0/0", "blue", "10.1.0.10"));
        },
        E::DuplicateRoute {
            tenant: "t1".into(),
            prefix: p("0.0.0.0/0"),
        },
    );
    rejects(
        |b| {
            b.route(next_hop("t1", "10.2.0.77/24", "blue", "10.1.0.10"));
        },
        E::DuplicateRoute {
            tenant: "t1".into(),
            prefix: p("10.2.0.0/24"),
        },
    );
}

#[test]
fn error_messages_name_the_item() {
    let mut b = fixture();
    b.local_endpoint(local("green", MacAddr([0x02, 0, 0, 0, 0, 0xf0]), &[], 1));
    assert_eq!(
        b.build().unwrap_err().to_string(),
        "port 1 carries endpoints of network \"blue\" and of network \"green\""
    );
}

mod patch {
    //! A snapshot patched endpoint by endpoint answers every lookup as one built
    //! from scratch with the same endpoints, and shares what it did not touch.

    use super::*;
    use proptest::prelude::*;

    const NETS: [&str; 3] = ["n0", "n1", "n2"];

    /// Endpoint `i` (0..48): its network, MAC, address, and where it is (ports 1-6
    /// for local ones, spread so that ports meet endpoints of two networks; VTEPs
    /// for remote ones).
    fn endpoint(i: u8) -> (usize, MacAddr, IpAddr, Result<u16, IpAddr>) {
        let net = usize::from(i % 3);
        let mac = MacAddr([2, 0, 0, 0, 1, i]);
        let addr = IpAddr::V4(Ipv4Addr::new(10, net as u8, 0, 10 + i));
        let at = if i.is_multiple_of(2) {
            Ok(1 + u16::from(i % 6))
        } else {
            Err(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 20 + i % 4)))
        };
        (net, mac, addr, at)
    }

    fn change(i: u8) -> OverlayChange {
        let (net, mac, addr, at) = endpoint(i);
        match at {
            Ok(port) => OverlayChange::AddLocal(LocalEndpointSpec {
                network: NETS[net].into(),
                mac,
                ips: vec![addr],
                port: PortIdx(port),
            }),
            Err(vtep) => OverlayChange::AddRemote(RemoteEndpointSpec {
                network: NETS[net].into(),
                mac,
                ips: vec![addr],
                vtep,
            }),
        }
    }

    /// Static routes a write may add and remove: nested IPv4 and IPv6 prefixes
    /// (one inside a connected subnet, one the base's own), blackholes and next
    /// hops through endpoints that come and go.
    const ROUTES: [&str; 10] = [
        "0.0.0.0/0",
        "172.16.0.0/12",
        "172.16.1.0/24",
        "172.16.1.128/25",
        "172.16.1.129/32",
        "10.1.0.0/25",
        "fd00::/16",
        "fd00:1::/64",
        "fd00:1::1/128",
        "192.168.0.0/16",
    ];

    /// Route `i`: a blackhole for every third, else a next hop through an
    /// endpoint that may or may not be there.
    fn route(i: u8) -> RouteSpec {
        let prefix = ROUTES[usize::from(i) % ROUTES.len()];
        if i.is_multiple_of(3) {
            return RouteSpec {
                tenant: "t".into(),
                prefix: prefix.parse().unwrap(),
                target: RouteTarget::Blackhole,
            };
        }
        let k = (i * 7) % 48;
        let (net, _, addr, _) = endpoint(k);
        next_hop("t", prefix, NETS[net], &addr.to_string())
    }

    /// The base: three networks, one endpoint (48, in n0) that a route uses,
    /// then endpoints `present` and routes `routes`.
    fn builder(present: &[u8], routes: &[u8]) -> OverlayBuilder {
        let mut b = OverlayBuilder::new(1);
        b.underlay(underlay());
        for (i, n) in NETS.iter().enumerate() {
            let subnet = format!("10.{i}.0.0/24");
            let gw = format!("10.{i}.0.1");
            b.network(network(n, 100 + i as u32, "t", &[&subnet], &[&gw]));
        }
        b.remote_endpoint(remote(
            "n0",
            MacAddr([2, 0, 0, 0, 2, 0]),
            &["10.0.0.200"],
            "10.0.0.99",
        ));
        b.route(next_hop("t", "192.168.0.0/16", "n0", "10.0.0.200"));
        for &i in present {
            match change(i) {
                OverlayChange::AddLocal(e) => b.local_endpoint(e),
                OverlayChange::AddRemote(e) => b.remote_endpoint(e),
                _ => unreachable!(),
            };
        }
        for &i in routes {
            b.route(route(i));
        }
        b
    }

    /// Where a lookup sends a frame, VTEPs by address (patching and building
    /// may intern them in another order).
    fn dest(s: &OverlaySnapshot, d: Option<L2Dest>) -> String {
        match d {
            Some(L2Dest::Remote(v)) => format!("vtep {}", s.vtep(v).unwrap().ip),
            other => format!("{other:?}"),
        }
    }

    /// What a worker can observe of the endpoints and routes.
    fn view(s: &OverlaySnapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (i, _) in NETS.iter().enumerate() {
            let net = s.network_by_name(NETS[i]).unwrap();
            out.push(format!(
                "{i} ports {:?}",
                s.network(net).unwrap().local_ports
            ));
            for e in 0..=48u8 {
                let (_, mac, addr, _) = endpoint(e);
                out.push(format!(
                    "{i} {mac} {} {:?} {}",
                    dest(s, s.l2_lookup(net, mac)),
                    s.host_lookup(net, addr).map(|h| h.0),
                    dest(s, s.host_lookup(net, addr).map(|h| h.1)),
                ));
            }
        }
        for p in 0..8 {
            out.push(format!("port {p} {:?}", s.network_of_port(PortIdx(p))));
        }
        let vrf = s.vrf_by_name("t").unwrap();
        let extra = [
            "172.16.1.200",
            "172.16.2.1",
            "8.8.8.8",
            "10.1.0.10",
            "10.1.0.200",
            "192.168.3.4",
            "fd00:1::2",
            "fd00:2::1",
            "::1",
        ];
        let prefixes = ROUTES.iter().map(|p| p.parse::<IpNet>().unwrap());
        let probes = prefixes
            .flat_map(|p| [p.network(), p.broadcast()])
            .chain(extra.iter().map(|a| ip(a)));
        for a in probes {
            let r = match s.route(vrf, a) {
                Some(RouteResult::NextHop {
                    network,
                    mac,
                    dest: d,
                }) => {
                    format!("via {network} {mac} {}", dest(s, Some(d)))
                }
                other => format!("{other:?}"),
            };
            out.push(format!("route {a} {r}"));
        }
        out.push(format!("{} {}", s.endpoint_count(), s.route_count()));
        out
    }

    proptest! {
        #[test]
        fn patched_answers_as_built(
            start in proptest::collection::btree_set(0u8..48, 0..20),
            start_routes in proptest::collection::btree_set(0u8..10, 0..4),
            steps in proptest::collection::vec((0u8..4, 0u8..48), 1..30),
        ) {
            let start: Vec<u8> = start.into_iter().collect();
            let start_routes: Vec<u8> = start_routes.into_iter().collect();
            let Ok(mut snap) = builder(&start, &start_routes).build() else {
                // A port in two networks, a next hop not there: the builder
                // refuses; nothing to patch.
                return Ok(());
            };
            let mut present = start.clone();
            let mut routes = start_routes.clone();
            for (kind, i) in steps {
                let r = i % 10;
                let (c, noop) = match kind {
                    0 => (change(i), present.contains(&i)),
                    1 => {
                        let (net, mac, addr, _) = endpoint(i);
                        let c = OverlayChange::Remove { network: NETS[net].into(), mac, ips: vec![addr] };
                        (c, !present.contains(&i))
                    }
                    2 => (OverlayChange::AddRoute(route(r)), routes.contains(&r)),
                    _ => (OverlayChange::RemoveRoute(route(r)), !routes.contains(&r)),
                };
                let (mut next, mut next_routes) = (present.clone(), routes.clone());
                match kind {
                    0 => next.push(i),
                    1 => next.retain(|&x| x != i),
                    2 => next_routes.push(r),
                    _ => next_routes.retain(|&x| x != r),
                }
                let patched = snap.patched(snap.generation() + 1, std::slice::from_ref(&c));
                // Removing what is absent or adding what is present: refused.
                let built = if noop {
                    Err(None)
                } else {
                    builder(&next, &next_routes).build().map_err(Some)
                };
                match (patched, built) {
                    (Ok(p), Ok(b)) => {
                        prop_assert_eq!(view(&p), view(&b), "after {:?}", c);
                        snap = p;
                        present = next;
                        routes = next_routes;
                    }
                    // An add is refused in the builder's words. A removal the
                    // builder refuses leaves a route without its next hop, which
                    // the patch names from the other side (the endpoint goes).
                    (Err((0, pe)), Err(Some(be))) if kind == 0 || kind == 2 => {
                        prop_assert_eq!(pe.to_string(), be.to_string())
                    }
                    (Err(_), Err(_)) => {}
                    (p, b) => prop_assert!(false, "{:?}: patched {:?}, built {:?}", c, p.map(|_| ()), b.map(|_| ())),
                }
            }
        }
    }

    #[test]
    fn a_one_endpoint_write_at_10k_endpoints_copies_one_networks_tables() {
        let mut b = OverlayBuilder::new(1);
        b.underlay(underlay());
        for i in 0..4u32 {
            let subnet = format!("10.{}.0.0/16", 100 + i);
            let gw = format!("10.{}.255.254", 100 + i);
            b.network(network(
                &format!("big{i}"),
                200 + i,
                "t",
                &[&subnet],
                &[&gw],
            ));
        }
        for i in 0..10_000u32 {
            let net = i % 4;
            let [_, _, x, y] = (i / 4).to_be_bytes();
            b.remote_endpoint(RemoteEndpointSpec {
                network: format!("big{net}"),
                mac: MacAddr([2, 1, net as u8, 0, x, y]),
                ips: vec![IpAddr::V4(Ipv4Addr::new(10, 100 + net as u8, x, y))],
                vtep: ip("10.0.0.77"),
            });
        }
        let base = b.build().unwrap();
        assert_eq!(base.endpoint_count(), 10_000);
        let p = base
            .patched(
                2,
                &[OverlayChange::AddRemote(remote(
                    "big2",
                    A,
                    &["10.102.200.1"],
                    "10.0.0.77",
                ))],
            )
            .unwrap();
        assert_eq!(p.endpoint_count(), 10_001);
        let id = |n: &str| p.network_by_name(n).unwrap();
        assert!(!p.shares_network_tables(&base, id("big2")));
        for n in ["big0", "big1", "big3"] {
            assert!(p.shares_network_tables(&base, id(n)), "{n}");
        }
        assert!(p.shares_routes(&base));
    }

    #[test]
    fn a_one_route_write_at_100k_routes_in_10_vrfs_copies_one_vrf() {
        let mut b = OverlayBuilder::new(1);
        b.underlay(underlay());
        for t in 0..10u32 {
            let subnet = format!("10.{}.0.0/16", 100 + t);
            let gw = format!("10.{}.255.254", 100 + t);
            b.network(network(
                &format!("n{t}"),
                300 + t,
                &format!("t{t}"),
                &[&subnet],
                &[&gw],
            ));
        }
        for i in 0..100_000u32 {
            b.route(RouteSpec {
                tenant: format!("t{}", i % 10),
                prefix: IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from_bits((20 << 24) + (i << 8)), 24).unwrap(),
                ),
                target: RouteTarget::Blackhole,
            });
        }
        let base = b.build().unwrap();
        assert_eq!(base.route_count(), 100_010);
        let extra = RouteSpec {
            tenant: "t3".into(),
            prefix: "30.0.0.0/8".parse().unwrap(),
            target: RouteTarget::Blackhole,
        };
        let vrf = |s: &OverlaySnapshot, t: u32| s.vrf_by_name(&format!("t{t}")).unwrap();
        let shared = |a: &OverlaySnapshot, b: &OverlaySnapshot| -> Vec<u32> {
            (0..10)
                .filter(|&t| a.shares_vrf_routes(b, vrf(a, t)))
                .collect()
        };
        let added = base
            .patched(2, &[OverlayChange::AddRoute(extra.clone())])
            .unwrap();
        assert_eq!(added.route_count(), 100_011);
        assert_eq!(
            shared(&added, &base),
            [0, 1, 2, 4, 5, 6, 7, 8, 9],
            "t3 alone copied"
        );
        for t in 0..10 {
            let net = added.network_by_name(&format!("n{t}")).unwrap();
            assert!(added.shares_network_tables(&base, net), "n{t}");
        }
        assert_eq!(
            added.route(vrf(&added, 3), ip("30.1.2.3")),
            Some(RouteResult::Blackhole)
        );
        assert_eq!(added.route(vrf(&added, 4), ip("30.1.2.3")), None);
        // And back: a removal copies the one VRF again, and answers as before.
        let removed = added
            .patched(3, &[OverlayChange::RemoveRoute(extra)])
            .unwrap();
        assert_eq!(shared(&removed, &added), [0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!(removed.route(vrf(&removed, 3), ip("30.1.2.3")), None);
        let gone = RouteSpec {
            tenant: "t7".into(),
            prefix: IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from_bits((20 << 24) + (7 << 8)), 24).unwrap(),
            ),
            target: RouteTarget::Blackhole,
        };
        let removed = removed
            .patched(4, &[OverlayChange::RemoveRoute(gone)])
            .unwrap();
        assert_eq!(removed.route(vrf(&removed, 7), ip("20.0.7.1")), None);
        assert_eq!(removed.route_count(), 100_009);
    }

    /// Networks a write may add: in the base's tenant, in a new one (reusing a
    /// base subnet, which another tenant may), one overlapping a base subnet,
    /// one reusing a VNI, one whose subnet a static route already holds.
    fn new_network(i: usize) -> NetworkSpec {
        let mut n = match i {
            0 => network(
                "m0",
                200,
                "t",
                &["10.3.0.0/24", "fd00:3::/64"],
                &["10.3.0.1", "fd00:3::1"],
            ),
            1 => network("m1", 201, "u", &["10.0.0.0/24"], &["10.0.0.1"]),
            2 => network("m2", 202, "t", &["10.0.0.0/16"], &["10.0.0.1"]),
            3 => network("m3", 100, "t", &["10.4.0.0/24"], &["10.4.0.1"]),
            _ => network("m4", 204, "t", &["192.168.0.0/16"], &["192.168.0.1"]),
        };
        n.vteps = vec![ip("10.0.0.20"), ip("10.0.0.99")];
        n
    }

    #[test]
    fn a_network_added_answers_as_built() {
        let base = builder(&[0, 1], &[0, 3]).build().unwrap();
        let mut snap = base.clone();
        let mut added = Vec::new();
        for i in 0..5 {
            let n = new_network(i);
            let mut b = builder(&[0, 1], &[0, 3]);
            for &j in added.iter().chain([&i]) {
                b.network(new_network(j));
            }
            let built = b.build();
            let patched = snap.patched(
                snap.generation() + 1,
                &[OverlayChange::AddNetwork(n.clone())],
            );
            match (patched, built) {
                (Ok(p), Ok(b)) => {
                    assert_eq!(view(&p), view(&b));
                    for s in [&p, &b] {
                        assert_eq!(s.network_count(), 4 + added.len());
                    }
                    let id = p.network_by_name(&n.name).unwrap();
                    assert_eq!(Some(id), b.network_by_name(&n.name));
                    assert_eq!(p.network_by_vni(n.vni), Some(id));
                    // VTEPs by address: a patch interns them in another order.
                    let info = |s: &OverlaySnapshot| {
                        let mut n = s.network(id).unwrap().clone();
                        let ips: Vec<IpAddr> = n
                            .flood_vteps
                            .iter()
                            .map(|v| s.vtep(*v).unwrap().ip)
                            .collect();
                        n.flood_vteps = Box::default();
                        (n, ips)
                    };
                    assert_eq!(info(&p), info(&b));
                    let vrf = p.network(id).unwrap().vrf;
                    assert_eq!(p.vrf_name(vrf), b.vrf_name(vrf));
                    let route = |s: &OverlaySnapshot, a: &str| match s.route(vrf, ip(a)) {
                        Some(RouteResult::NextHop {
                            network,
                            mac,
                            dest: d,
                        }) => {
                            format!("via {network} {mac} {}", dest(s, Some(d)))
                        }
                        other => format!("{other:?}"),
                    };
                    for a in ["10.3.0.9", "10.0.0.9", "fd00:3::9", "192.168.1.1"] {
                        assert_eq!(route(&p, a), route(&b, a), "{a}");
                    }
                    assert_eq!(
                        p.arp_lookup(id, "10.3.0.1".parse().unwrap()),
                        b.arp_lookup(id, "10.3.0.1".parse().unwrap())
                    );
                    // Every network the write did not add keeps its tables.
                    for m in 0..3u16 {
                        assert!(p.shares_network_tables(&snap, NetworkId(m)));
                    }
                    snap = p;
                    added.push(i);
                }
                (Err((0, pe)), Err(be)) => {
                    assert_eq!(pe.to_string(), be.to_string(), "network {i}")
                }
                (p, b) => panic!(
                    "network {i}: patched {:?}, built {:?}",
                    p.map(|_| ()),
                    b.map(|_| ())
                ),
            }
        }
        assert_eq!(
            added,
            [0, 1],
            "the overlap, the VNI and the route's prefix are refused"
        );
        // An endpoint in the new network, then: as built.
        let ep = RemoteEndpointSpec {
            network: "m0".into(),
            mac: MacAddr([2, 0, 0, 0, 3, 9]),
            ips: vec![ip("10.3.0.9")],
            vtep: ip("10.0.0.77"),
        };
        let p = snap
            .patched(9, &[OverlayChange::AddRemote(ep.clone())])
            .unwrap();
        let mut b = builder(&[0, 1], &[0, 3]);
        b.network(new_network(0))
            .network(new_network(1))
            .remote_endpoint(ep);
        let b = b.build().unwrap();
        let m0 = p.network_by_name("m0").unwrap();
        let at = |s: &OverlaySnapshot| {
            s.host_lookup(m0, ip("10.3.0.9"))
                .map(|h| (h.0, dest(s, Some(h.1))))
        };
        assert_eq!(at(&p), at(&b));
        assert!(at(&p).is_some());
    }

    #[test]
    fn route_removals_are_checked() {
        let base = builder(&[], &[]).build().unwrap();
        let refused = |c: OverlayChange| base.patched(2, &[c]).unwrap_err().1.to_string();
        // A connected subnet is not a static route.
        let subnet = RouteSpec {
            tenant: "t".into(),
            prefix: "10.0.0.0/24".parse().unwrap(),
            target: RouteTarget::Blackhole,
        };
        assert_eq!(
            refused(OverlayChange::RemoveRoute(subnet)),
            "route 10.0.0.0/24 in tenant \"t\": no such route"
        );
        // The route there has another target.
        let other = RouteSpec {
            target: RouteTarget::Blackhole,
            ..next_hop("t", "192.168.0.0/16", "n0", "10.0.0.200")
        };
        assert!(refused(OverlayChange::RemoveRoute(other)).ends_with("no such route"));
        // Its next hop's endpoint can go once the route has.
        let hop = OverlayChange::Remove {
            network: "n0".into(),
            mac: MacAddr([2, 0, 0, 0, 2, 0]),
            ips: vec![ip("10.0.0.200")],
        };
        assert!(refused(hop.clone()).contains("next hop of route 192.168.0.0/16"));
        let route = OverlayChange::RemoveRoute(next_hop("t", "192.168.0.0/16", "n0", "10.0.0.200"));
        let p = base.patched(2, &[route, hop]).unwrap();
        assert_eq!(
            p.route(p.vrf_by_name("t").unwrap(), ip("192.168.1.1")),
            None
        );
    }

    #[test]
    fn a_change_copies_only_its_networks_tables() {
        let base = builder(&[0, 1, 2, 3], &[]).build().unwrap();
        let n = |s: &OverlaySnapshot, i: usize| s.network_by_name(NETS[i]).unwrap();
        let p = base.patched(2, &[change(4)]).unwrap();
        assert_eq!(p.generation(), 2);
        assert!(!p.shares_network_tables(&base, n(&p, 1)), "n1 changed");
        assert!(p.shares_network_tables(&base, n(&p, 0)));
        assert!(p.shares_network_tables(&base, n(&p, 2)));
        assert!(p.shares_routes(&base));
        // The route's next hop cannot go while the route is there.
        let e = base
            .patched(
                2,
                &[OverlayChange::Remove {
                    network: "n0".into(),
                    mac: MacAddr([2, 0, 0, 0, 2, 0]),
                    ips: vec![ip("10.0.0.200")],
                }],
            )
            .unwrap_err();
        assert!(
            e.1.to_string().contains("next hop of route 192.168.0.0/16"),
            "{e:?}"
        );
        // Nor can what is not there.
        let e = base
            .patched(
                2,
                &[OverlayChange::Remove {
                    network: "n0".into(),
                    mac: A,
                    ips: vec![],
                }],
            )
            .unwrap_err();
        assert!(e.1.to_string().contains("no such endpoint"), "{e:?}");
    }
}
