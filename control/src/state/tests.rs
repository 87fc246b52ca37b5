use super::*;
use crate::api::{op::Op as K, Op};
use std::net::IpAddr;

thread_local! {
    /// Ops visited by a write's checks (Index::apply, blame): work, counted.
    pub(crate) static VISITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub(crate) const DEPLOY: &str = include_str!("../../../deploy/vswitchd.toml");

pub(crate) fn fixed_and_state() -> (Fixed, api::DesiredState, VswitchConfig) {
    let cfg = VswitchConfig::parse(DEPLOY, 2).unwrap();
    (Fixed::from_config(&cfg, 2), from_config(&cfg), cfg)
}

pub(crate) fn op(k: K) -> Op {
    Op { op: Some(k) }
}

pub(crate) fn port(name: &str, profile: &str, params: &[(&str, &str)]) -> api::Port {
    api::Port {
        name: name.into(),
        profile: profile.into(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        group: String::new(),
        mtu: 0,
    }
}

pub(crate) fn network(name: &str, vni: u32, subnet: &str, gw: &str) -> api::Network {
    api::Network {
        name: name.into(),
        vni,
        encap: String::new(),
        tenant: "t1".into(),
        subnets: vec![subnet.into()],
        gateway_ips: vec![gw.into()],
        gateway_mac: "02:00:00:00:aa:09".into(),
        flood_unknown: false,
        vteps: vec![],
        policy_on_change: String::new(),
    }
}

pub(crate) fn endpoint(network: &str, mac: &str, ip: &str, port: &str) -> api::Endpoint {
    api::Endpoint {
        network: network.into(),
        mac: mac.into(),
        ips: vec![ip.into()],
        port: port.into(),
    }
}

pub(crate) fn remote(network: &str, mac: &str, ip: &str, vtep: &str) -> api::RemoteEndpoint {
    api::RemoteEndpoint {
        network: network.into(),
        mac: mac.into(),
        ips: vec![ip.into()],
        vtep: vtep.into(),
    }
}

pub(crate) fn route(tenant: &str, prefix: &str, target: Option<Target>) -> api::Route {
    api::Route {
        tenant: tenant.into(),
        prefix: prefix.into(),
        target,
    }
}

pub(crate) fn via(network: &str, ip: &str) -> Option<Target> {
    Some(Target::NextHop(api::NextHop {
        network: network.into(),
        ip: ip.into(),
    }))
}

fn underlay(state: &api::DesiredState) -> api::Underlay {
    state.underlay.clone().unwrap()
}

#[test]
fn config_and_proto_round_trip() {
    let (fixed, state, cfg) = fixed_and_state();
    // Every section of the shipped example is there.
    assert_eq!(state.ports.len(), 6);
    assert_eq!(state.ports[4].profile, "pcap");
    assert_eq!(state.ports[4].params["infinite_rx"], "true");
    assert_eq!(
        state.ports[4].params["rx_pcap"],
        "/var/lib/vswitch/l2-64.pcap"
    );
    assert_eq!(state.ports[4].group, "bench");
    assert_eq!(state.routes[1].target, Some(Target::Blackhole(true)));
    // proto -> TOML -> parse gives the same configuration, and its proto is a fixpoint.
    let back = fixed.parse_sections(&to_sections(&state).unwrap()).unwrap();
    assert_eq!(back, cfg);
    let v = fixed.validate(&state).unwrap();
    assert_eq!(v.state, state);
    assert_eq!(v.config, cfg);
}

#[test]
fn param_text_forms() {
    assert_eq!(param_value("true"), Value::Boolean(true));
    assert_eq!(param_value("2"), Value::Integer(2));
    assert_eq!(
        param_value("/tmp/x.pcap"),
        Value::String("/tmp/x.pcap".into())
    );
    assert_eq!(param_value("vsw-pod1"), Value::String("vsw-pod1".into()));
    assert_eq!(param_value("\"123\""), Value::String("123".into()));
    assert_eq!(param_value("1\nx = 2"), Value::String("1\nx = 2".into()));
    for v in [
        Value::String("123".into()),
        Value::String("true".into()),
        Value::String("vsw-pod1".into()),
        Value::String("[0-3]".into()),
        Value::Integer(4),
        Value::Boolean(false),
    ] {
        assert_eq!(param_value(&param_text(&v)), v, "{v:?}");
    }
    // A port whose interface name reads as a number survives the round trip.
    let (fixed, mut state, _) = fixed_and_state();
    state
        .ports
        .push(port("p123", "af_packet", &[("iface", "\"123\"")]));
    let v = fixed.validate(&state).unwrap();
    assert_eq!(v.state.ports[6].params["iface"], "\"123\"");
    assert_eq!(fixed.validate(&v.state).unwrap().state, v.state);
}

#[test]
fn ops_apply_in_one_transaction() {
    let (fixed, state, _) = fixed_and_state();
    let ops = vec![
        // The endpoint names a network and a port added later in the same write.
        op(K::AddEndpoint(endpoint(
            "red",
            "02:00:00:00:05:01",
            "10.5.0.2",
            "pod5",
        ))),
        op(K::AddNetwork(network(
            "red",
            500,
            "10.5.0.0/24",
            "10.5.0.1",
        ))),
        op(K::AddPort(port(
            "pod5",
            "af_packet",
            &[("iface", "vsw-pod5")],
        ))),
        op(K::AddRemoteEndpoint(remote(
            "red",
            "02:00:00:00:05:02",
            "10.5.0.3",
            "192.0.2.2",
        ))),
        op(K::AddRoute(route(
            "t1",
            "10.50.0.0/16",
            via("red", "10.5.0.3"),
        ))),
        // Keys match in any text form.
        op(K::DelL2("02:00:00:00:02:01".to_uppercase())),
        op(K::DelPort("pod2".into())),
        op(K::DelRoute(api::RouteKey {
            tenant: "t1".into(),
            prefix: "10.99.0.0/16".into(),
        })),
        op(K::AddL2(api::L2Entry {
            mac: "02:00:00:00:0A:0B".into(),
            port: "pod1".into(),
        })),
    ];
    let v = fixed.apply_ops(&state, &ops).unwrap();
    let s = &v.state;
    assert!(s.ports.iter().any(|p| p.name == "pod5"));
    assert!(!s.ports.iter().any(|p| p.name == "pod2"));
    assert_eq!(s.networks[1].encap, "vxlan");
    assert_eq!(s.endpoints[1].mac, "02:00:00:00:05:01");
    assert_eq!(s.l2.len(), 2);
    assert_eq!(s.l2[1].mac, "02:00:00:00:0a:0b", "canonical form");
    assert_eq!(s.routes.len(), 2);
    assert_eq!(v.config.networks.len(), 2);
    // Deleting it all again gives the original state back.
    let undo = vec![
        op(K::DelRoute(api::RouteKey {
            tenant: "t1".into(),
            prefix: "10.50.0.0/16".into(),
        })),
        op(K::DelRemoteEndpoint(api::EndpointKey {
            network: "red".into(),
            mac: "02:00:00:00:05:02".into(),
        })),
        op(K::DelEndpoint(api::EndpointKey {
            network: "red".into(),
            mac: "02:00:00:00:05:01".into(),
        })),
        op(K::DelNetwork("red".into())),
        op(K::DelPort("pod5".into())),
        op(K::DelL2("02:00:00:00:0a:0b".into())),
    ];
    let w = fixed.apply_ops(s, &undo).unwrap();
    let mut expect = state.clone();
    expect.ports.retain(|p| p.name != "pod2");
    expect.l2.retain(|e| e.port != "pod2");
    expect.routes.retain(|r| r.prefix != "10.99.0.0/16");
    assert_eq!(w.state, expect);
    // Underlay set and clear.
    let mut u = underlay(&state);
    u.mtu = 9000;
    let v = fixed.apply_ops(&state, &[op(K::SetUnderlay(u))]).unwrap();
    assert_eq!(v.state.underlay.as_ref().unwrap().mtu, 9000);
}

/// `(ops, error contains each of these)` against the shipped example.
pub(crate) fn invalid_writes() -> Vec<(Vec<Op>, Vec<&'static str>)> {
    let (_, state, _) = fixed_and_state();
    let u = underlay(&state);
    let with = |f: &dyn Fn(&mut api::Underlay)| {
        let mut u = u.clone();
        f(&mut u);
        u
    };
    let ep_key = |net: &str, mac: &str| api::EndpointKey {
        network: net.into(),
        mac: mac.into(),
    };
    let bad_net = |f: &dyn Fn(&mut api::Network)| {
        let mut n = network("red", 500, "10.5.0.0/24", "10.5.0.1");
        f(&mut n);
        vec![op(K::AddNetwork(n))]
    };
    let one = |k: K| vec![op(k)];
    vec![
        (vec![], vec!["a write needs at least one op"]),
        (vec![Op { op: None }], vec!["op 0 (empty op): the op is empty"]),
        // Ports.
        (one(K::DelPort("pod9".into())), vec!["op 0 (del_port \"pod9\"): no such port"]),
        (one(K::AddPort(port("pod1", "null", &[]))), vec!["op 0 (add_port \"pod1\"): port already exists"]),
        (one(K::AddPort(port("a b", "null", &[]))), vec!["op 0 (add_port \"a b\"): name: \"a b\" is not a valid name: 1-32 characters"]),
        (one(K::AddPort(port("p", "null", &[("no_rx", "maybe")]))), vec!["op 0 (add_port \"p\"): no_rx: invalid type: string \"maybe\", expected a boolean"]),
        (one(K::AddPort(port("p", "af_packet", &[("iface", "42")]))), vec!["op 0 (add_port \"p\"): iface: invalid type: integer `42`"]),
        (one(K::AddPort(port("p", "warp", &[]))), vec!["op 0 (add_port \"p\"): unknown variant `warp`"]),
        (one(K::AddPort(port("p", "af_packet", &[]))), vec!["op 0 (add_port \"p\"): missing field `iface`"]),
        (one(K::AddPort(port("p", "af_packet", &[("ifac", "x")]))), vec!["op 0 (add_port \"p\"): unknown field `ifac`"]),
        (one(K::AddPort(port("p", "null", &[("name", "q")]))), vec!["op 0 (add_port \"p\"): params: `name` is a field of the port"]),
        (one(K::AddPort(port("p", "", &[]))), vec!["op 0 (add_port \"p\"): missing key `profile`"]),
        (one(K::AddPort(port("p", "tap", &[("iface", "t"), ("mac", "02:00")]))), vec!["op 0 (add_port \"p\"): mac: invalid MAC address \"02:00\""]),
        (one(K::AddPort(port("p", "null", &[("worker", "3")]))), vec!["op 0 (add_port \"p\"): worker 3 does not exist"]),
        (one(K::AddPort(api::Port { mtu: 70000, ..port("p", "null", &[]) })), vec!["op 0 (add_port \"p\"): mtu: must be at most 65535"]),
        (one(K::AddPort(port("p", "vhost_user", &[("path", "/x"), ("queues", "many")]))), vec!["op 0 (add_port \"p\"): queues: invalid type: string \"many\", expected u16"]),
        // Patches and the MAC table.
        (one(K::DelPatch("pod1".into())), vec!["op 0 (del_patch \"pod1\"): no such patch"]),
        (one(K::AddPatch(api::Patch { from: "replay".into(), to: "pod1".into() })), vec!["op 0 (add_patch \"replay\" -> \"pod1\"): patch already exists"]),
        (one(K::AddPatch(api::Patch { from: "pod1".into(), to: "pod1".into() })), vec!["op 0 (add_patch \"pod1\" -> \"pod1\"): patch \"pod1\" -> \"pod1\": a port cannot be patched to itself"]),
        (one(K::AddPatch(api::Patch { from: "pod1".into(), to: "zzz".into() })), vec!["patch.to: no port named \"zzz\""]),
        (one(K::AddPatch(api::Patch { from: "pod1".into(), to: "pod3".into() })), vec!["patch.to: port \"pod3\" belongs to the overlay"]),
        (one(K::AddL2(api::L2Entry { mac: "zz:00:00:00:00:01".into(), port: "pod1".into() })), vec!["op 0 (add_l2 \"zz:00:00:00:00:01\"): mac: invalid MAC address"]),
        (one(K::AddL2(api::L2Entry { mac: "02:00:00:00:01:01".into(), port: "pod2".into() })), vec!["op 0 (add_l2 \"02:00:00:00:01:01\"): l2 entry already exists"]),
        (one(K::AddL2(api::L2Entry { mac: "02:00:00:00:09:09".into(), port: "nope".into() })), vec!["op 0 (add_l2 \"02:00:00:00:09:09\"): port: no port named \"nope\""]),
        (one(K::AddL2(api::L2Entry { mac: "02:00:00:00:09:09".into(), port: "uplink".into() })), vec!["port \"uplink\" belongs to the overlay"]),
        (one(K::DelL2("02:00:00:00:09:09".into())), vec!["op 0 (del_l2 \"02:00:00:00:09:09\"): no such l2 entry"]),
        // The underlay.
        (one(K::ClearUnderlay(false)), vec!["op 0 (clear_underlay): clear_underlay must be true"]),
        (one(K::SetUnderlay(with(&|u| u.uplink = "eth0".into()))), vec!["op 0 (set_underlay): uplink \"eth0\" is not a [[port]]"]),
        (one(K::SetUnderlay(with(&|u| u.local_vtep_ip = "192.0.2".into()))), vec!["op 0 (set_underlay): local_vtep_ip: invalid IP address \"192.0.2\""]),
        (one(K::SetUnderlay(with(&|u| u.local_mac = "02:00".into()))), vec!["op 0 (set_underlay): local_mac: invalid MAC address"]),
        (one(K::SetUnderlay(with(&|u| u.mtu = 1300))), vec!["op 0 (set_underlay): ", "underlay MTU 1300 is too small"]),
        (one(K::SetUnderlay(with(&|u| u.mtu = 70000))), vec!["op 0 (set_underlay): mtu: 70000 is out of range"]),
        (one(K::SetUnderlay(with(&|u| u.gateway = "198.51.100.1".into()))), vec!["underlay gateway 198.51.100.1 is outside the on-link prefix"]),
        (one(K::SetUnderlay(with(&|u| u.neighbors = vec![api::StaticNeighbor { ip: "198.51.100.9".into(), mac: "02:00:00:00:ff:09".into() }]))), vec!["op 0 (set_underlay): neighbors[0].ip: 198.51.100.9 is not in on_link"]),
        (one(K::SetUnderlay(with(&|u| u.uplink = "pod3".into()))), vec!["op 0 (set_underlay): ", "port \"pod3\" is the underlay uplink"]),
        // Networks.
        (bad_net(&|n| n.vni = 16_777_216), vec!["op 0 (add_network \"red\"): vni 16777216 is out of range (0-16777215)"]),
        (bad_net(&|n| n.encap = "gre".into()), vec!["op 0 (add_network \"red\"): encap \"gre\" is not one of \"vxlan\", \"geneve\""]),
        (bad_net(&|n| n.name = "blue".into()), vec!["op 0 (add_network \"blue\"): network already exists"]),
        (bad_net(&|n| n.gateway_mac = String::new()), vec!["op 0 (add_network \"red\"): gateway_mac: invalid MAC address"]),
        (bad_net(&|n| n.subnets = vec!["10.5.0.0/33".into()]), vec!["op 0 (add_network \"red\"): subnets: invalid prefix (address/length) \"10.5.0.0/33\""]),
        (bad_net(&|n| n.gateway_ips = vec!["10.5.0.300".into()]), vec!["op 0 (add_network \"red\"): gateway_ips: invalid IP address \"10.5.0.300\""]),
        (bad_net(&|n| n.vteps = vec!["node2".into()]), vec!["op 0 (add_network \"red\"): vteps: invalid IP address \"node2\""]),
        (bad_net(&|n| n.vni = 100), vec!["op 0 (add_network \"red\"): ", "VNI 100"]),
        (bad_net(&|n| n.gateway_ips = vec!["10.9.0.1".into()]), vec!["op 0 (add_network \"red\"): ", "gateway 10.9.0.1 is not in any of its subnets"]),
        (bad_net(&|n| { n.subnets = vec!["10.1.0.128/25".into()]; n.gateway_ips = vec!["10.1.0.129".into()] }), vec!["op 0 (add_network \"red\"): ", "overlaps"]),
        (one(K::DelNetwork("green".into())), vec!["op 0 (del_network \"green\"): no such network"]),
        (one(K::DelNetwork("blue".into())), vec!["op 0 (del_network \"blue\"): network \"blue\" has 1 endpoint, 2 remote endpoints and 1 route via it: delete them first"]),
        // Endpoints.
        (one(K::AddEndpoint(endpoint("blue", "02:00:00:00:03:09", "10.1.0.9", "pod9"))), vec!["op 0 (add_endpoint \"02:00:00:00:03:09\" in network \"blue\"): port \"pod9\" is not a [[port]]"]),
        (one(K::AddEndpoint(endpoint("blue", "02:00:00:00:03:09", "10.1.0.9", "uplink"))), vec!["op 0 (add_endpoint \"02:00:00:00:03:09\" in network \"blue\"): port \"uplink\" is the underlay uplink"]),
        (one(K::AddEndpoint(endpoint("blue", "02-00-00-00-03-09", "10.1.0.9", "pod3"))), vec!["op 0 (add_endpoint \"02-00-00-00-03-09\" in network \"blue\"): mac: invalid MAC address"]),
        (one(K::AddEndpoint(endpoint("blue", "02:00:00:00:03:09", "10.1.0.9/24", "pod3"))), vec!["op 0 (add_endpoint \"02:00:00:00:03:09\" in network \"blue\"): ips: invalid IP address \"10.1.0.9/24\""]),
        (one(K::AddEndpoint(endpoint("blue", "02:00:00:00:03:09", "10.7.0.9", "pod3"))), vec!["op 0 (add_endpoint", "10.7.0.9 is not in any of its subnets"]),
        (one(K::AddEndpoint(endpoint("blue", "02:00:00:00:03:01", "10.1.0.9", "pod3"))), vec!["op 0 (add_endpoint \"02:00:00:00:03:01\" in network \"blue\"): endpoint already exists"]),
        (one(K::AddEndpoint(endpoint("blue", "02:00:00:00:03:09", "10.1.0.3", "pod3"))), vec!["op 0 (add_endpoint", "10.1.0.3 is claimed by"]),
        // An error naming the item by position blames the op that added it,
        // wherever it sits in the write.
        (
            vec![
                op(K::AddEndpoint(endpoint("-x", "02:00:00:00:03:09", "10.1.0.9", "pod3"))),
                op(K::AddPort(port("pod7", "null", &[]))),
            ],
            vec!["op 0 (add_endpoint \"02:00:00:00:03:09\" in network \"-x\"): ", "network: \"-x\" is not a valid name"],
        ),
        (
            vec![
                op(K::AddPatch(api::Patch { from: "a/b".into(), to: "pod1".into() })),
                op(K::AddPort(port("pod7", "null", &[]))),
            ],
            vec!["op 0 (add_patch \"a/b\" -> \"pod1\"): ", "from: \"a/b\" is not a valid name"],
        ),
        (
            vec![
                op(K::AddPort(port("pod7", "null", &[]))),
                op(K::AddEndpoint(endpoint("nonet", "02:00:00:00:03:09", "10.1.0.9", "pod7"))),
            ],
            vec!["op 1 (add_endpoint \"02:00:00:00:03:09\" in network \"nonet\"): ", "network \"nonet\" does not exist"],
        ),
        (one(K::DelEndpoint(ep_key("blue", "02:00:00:00:03:09"))), vec!["op 0 (del_endpoint \"02:00:00:00:03:09\" in network \"blue\"): no such endpoint"]),
        // Remote endpoints.
        (one(K::AddRemoteEndpoint(remote("blue", "02:00:00:00:02:33", "10.1.0.33", "192.0.2.1"))), vec!["op 0 (add_remote_endpoint \"02:00:00:00:02:33\" in network \"blue\"): ", "is the local VTEP"]),
        (one(K::AddRemoteEndpoint(remote("blue", "02:00:00:00:02:33", "10.1.0.33", "192.0.2.x"))), vec!["op 0 (add_remote_endpoint \"02:00:00:00:02:33\" in network \"blue\"): vtep: invalid IP address \"192.0.2.x\""]),
        (one(K::AddRemoteEndpoint(remote("blue", "02:00:00:00:02:11", "10.1.0.33", "192.0.2.2"))), vec!["remote endpoint already exists"]),
        (one(K::DelRemoteEndpoint(ep_key("blue", "02:00:00:00:03:01"))), vec!["op 0 (del_remote_endpoint \"02:00:00:00:03:01\" in network \"blue\"): no such remote endpoint"]),
        // Routes.
        (one(K::AddRoute(route("t1", "10.50.0.0/16", None))), vec!["op 0 (add_route \"10.50.0.0/16\" in tenant \"t1\"): give exactly one of"]),
        (one(K::AddRoute(route("t1", "10.50.0.0/16", Some(Target::Blackhole(false))))), vec!["give exactly one of"]),
        (one(K::AddRoute(route("t1", "10.50.0.0/99", Some(Target::Blackhole(true))))), vec!["op 0 (add_route \"10.50.0.0/99\" in tenant \"t1\"): prefix: invalid prefix"]),
        (one(K::AddRoute(route("t1", "10.50.0.0/16", via("blue", "10.1.0.253")))), vec!["op 0 (add_route \"10.50.0.0/16\" in tenant \"t1\"): ", "next hop 10.1.0.253 is not an endpoint of network \"blue\""]),
        (one(K::AddRoute(route("t1", "10.50.0.0/16", via("blue", "10.1.0.x")))), vec!["next_hop.ip: invalid IP address \"10.1.0.x\""]),
        (one(K::AddRoute(route("t9", "10.50.0.0/16", Some(Target::Blackhole(true))))), vec!["op 0 (add_route \"10.50.0.0/16\" in tenant \"t9\"): ", "the tenant has no network"]),
        (one(K::AddRoute(route("t1", "0.0.0.0/0", Some(Target::Blackhole(true))))), vec!["op 0 (add_route \"0.0.0.0/0\" in tenant \"t1\"): route already exists"]),
        (one(K::AddRoute(route("", "10.50.0.0/16", Some(Target::Blackhole(true))))), vec!["op 0 (add_route \"10.50.0.0/16\" in tenant \"default\"): ", "tenant has no network"]),
        (one(K::DelRoute(api::RouteKey { tenant: "t1".into(), prefix: "10.98.0.0/16".into() })), vec!["op 0 (del_route \"10.98.0.0/16\" in tenant \"t1\"): no such route"]),
        // Whole-state consequences of a delete, and blame in longer writes.
        (one(K::DelPort("pod2".into())), vec!["op 0 (del_port \"pod2\"): port \"pod2\" is used by l2 entry 02:00:00:00:02:01: delete that first"]),
        (one(K::DelPort("pod3".into())), vec!["op 0 (del_port \"pod3\"): port \"pod3\" is used by endpoint 02:00:00:00:03:01 in network \"blue\": delete that first"]),
        (one(K::DelPort("uplink".into())), vec!["op 0 (del_port \"uplink\"): port \"uplink\" is used by the underlay as its uplink: delete that first"]),
        (
            vec![
                op(K::AddNetwork(network("red", 500, "10.5.0.0/24", "10.5.0.1"))),
                op(K::AddEndpoint(endpoint("red", "02:00:00:00:05:01", "10.5.0.2", "pod9"))),
                op(K::AddL2(api::L2Entry { mac: "02:00:00:00:09:09".into(), port: "pod1".into() })),
            ],
            vec!["op 1 (add_endpoint \"02:00:00:00:05:01\" in network \"red\"): port \"pod9\" is not a [[port]]"],
        ),
        (
            vec![
                op(K::AddL2(api::L2Entry { mac: "02:00:00:00:09:09".into(), port: "pod1".into() })),
                op(K::DelPort("pod3".into())),
            ],
            vec!["op 1 (del_port \"pod3\"): "],
        ),
        (
            vec![
                op(K::AddL2(api::L2Entry { mac: "02:00:00:00:09:09".into(), port: "pod1".into() })),
                op(K::AddL2(api::L2Entry { mac: "02:00:00:00:09:09".into(), port: "pod1".into() })),
            ],
            vec!["op 1 (add_l2 \"02:00:00:00:09:09\"): l2 entry already exists"],
        ),
    ]
}

#[test]
fn every_invalid_write_names_its_op_item_and_field() {
    let (fixed, state, _) = fixed_and_state();
    let cases = invalid_writes();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (ops, wants) in &cases {
        let got = match fixed.apply_ops(&state, ops) {
            Ok(_) => {
                failures.push(format!("{ops:?} was accepted"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        for want in wants {
            if !got.contains(want) {
                failures.push(format!("{ops:?}\n  got  {got:?}\n  want {want:?}"));
            }
        }
        assert!(!got.contains('\n'), "one line: {got:?}");
        assert!(!got.contains(" #"), "no positional labels: {got:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn replace_validates_the_whole_state() {
    let (fixed, state, cfg) = fixed_and_state();
    assert_eq!(fixed.replace(&state).unwrap().config, cfg);
    let mut bad = state.clone();
    bad.networks[0].vni = 16_777_216;
    assert_eq!(
        fixed.replace(&bad).unwrap_err().to_string(),
        "network \"blue\": vni 16777216 is out of range (0-16777215)"
    );
    let mut bad = state.clone();
    bad.endpoints[0].port = "pod9".into();
    assert_eq!(
        fixed.replace(&bad).unwrap_err().to_string(),
        "endpoint 02:00:00:00:03:01 in network \"blue\": port \"pod9\" is not a [[port]]"
    );
    // An empty state is valid: nothing to forward.
    let empty = fixed.replace(&api::DesiredState::default()).unwrap();
    assert!(empty.config.ports.is_empty());
}

#[test]
fn boot_prefers_the_state_file() {
    let dir = crate::testutil::TempDir::new("boot");
    let path = dir.path().join("state.json");
    let (fixed, state, cfg) = fixed_and_state();
    let d = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!((d.generation, &d.state), (1, &state));
    let next = fixed
        .apply_ops(&state, &[op(K::DelPatch("replay".into()))])
        .unwrap();
    persist::store(&path, 9, &to_sections(&next.state).unwrap()).unwrap();
    let d = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!((d.generation, &d.state), (9, &next.state));
    assert!(d.config.patches.is_empty());
    // A state file the rules refuse is an error naming it, and is kept.
    let mut bad = to_sections(&next.state).unwrap();
    bad["network"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
        .insert("vni".into(), Value::Integer(-1));
    persist::store(&path, 10, &bad).unwrap();
    let before = std::fs::read(&path).unwrap();
    let e = Desired::boot(&cfg, &fixed, Some(&path))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("state file {}: ", path.display())),
        "{e}"
    );
    assert!(e.contains("vni -1 is out of range"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_delete_may_come_before_the_deletes_of_its_users() {
    let (fixed, state, _) = fixed_and_state();
    let ep = state.endpoints[0].clone();
    let del_ep = op(K::DelEndpoint(api::EndpointKey {
        network: ep.network.clone(),
        mac: ep.mac.clone(),
    }));
    let del_port = op(K::DelPort(ep.port.clone()));
    for ops in [
        vec![del_port.clone(), del_ep.clone()],
        vec![del_ep, del_port.clone()],
    ] {
        let v = fixed.apply_ops(&state, &ops).unwrap();
        assert!(!v.state.ports.iter().any(|p| p.name == ep.port));
    }
    // Alone, the delete names what still uses the port.
    let e = fixed
        .apply_ops(&state, &[del_port])
        .unwrap_err()
        .to_string();
    assert!(e.contains("is used by endpoint"), "{e}");
}

#[test]
fn a_write_is_checked_in_one_pass_over_its_ops() {
    // 15k routes in the state, 2,000 ops of which op 1000 is invalid: each op is
    // visited once to apply it and once to find the blame (counted, not timed).
    let (fixed, mut state, _) = fixed_and_state();
    for i in 0..15_000u32 {
        state.routes.push(route(
            "t1",
            &format!("172.{}.{}.0/24", 16 + (i >> 8), i & 255),
            Some(Target::Blackhole(true)),
        ));
    }
    let state = fixed.validate(&state).unwrap().state;
    let mut ops: Vec<Op> = (0..2000u32)
        .map(|i| {
            op(K::AddRoute(route(
                "t1",
                &format!("10.{}.{}.0/24", 100 + (i >> 8), i & 255),
                Some(Target::Blackhole(true)),
            )))
        })
        .collect();
    ops[1000] = op(K::AddRoute(route(
        "t1",
        "10.61.1.0/16",
        Some(Target::Blackhole(true)),
    )));
    // A field of its own: found by the op's own checks, up to op 1000.
    VISITS.with(|v| v.set(0));
    let e = fixed.apply_ops(&state, &ops).unwrap_err().to_string();
    assert!(e.starts_with("op 1000 (add_route"), "{e}");
    assert!(e.contains("has host bits set"), "{e}");
    assert_eq!(VISITS.with(std::cell::Cell::get), 1001);
    // A reference to what is not there: every op's fields, every op applied,
    // one pass to blame.
    ops[1000] = op(K::AddRoute(route(
        "t1",
        "10.61.0.0/16",
        via("blue", "10.1.0.222"),
    )));
    VISITS.with(|v| v.set(0));
    let e = fixed.apply_ops(&state, &ops).unwrap_err().to_string();
    assert!(e.starts_with("op 1000 (add_route"), "{e}");
    assert!(e.contains("next hop 10.1.0.222 is not an endpoint"), "{e}");
    assert_eq!(VISITS.with(std::cell::Cell::get), 3 * ops.len());
    // A network that is not there is found from the names alone.
    ops[1000] = op(K::AddRoute(route(
        "t1",
        "10.61.0.0/16",
        via("nowhere", "10.9.9.9"),
    )));
    VISITS.with(|v| v.set(0));
    let e = fixed.apply_ops(&state, &ops).unwrap_err().to_string();
    assert!(e.starts_with("op 1000 (add_route"), "{e}");
    assert!(e.ends_with("network \"nowhere\" does not exist"), "{e}");
    assert_eq!(VISITS.with(std::cell::Cell::get), ops.len());
}

#[test]
fn endpoint_writes_become_deltas_and_others_do_not() {
    use crate::delta::{deltas, Delta};
    let (_, _, cfg) = fixed_and_state();
    let ep = cfg.endpoints[0].clone();
    let key = || api::EndpointKey {
        network: ep.network.clone(),
        mac: ep.mac.to_string(),
    };
    // Anything but endpoint ops takes the whole-state path.
    assert!(deltas(&cfg, &[op(K::DelNetwork("blue".into()))]).is_none());
    // An update: delete and re-add in one write.
    let re = endpoint("blue", &ep.mac.to_string(), "10.1.0.9", &ep.port);
    let d = deltas(&cfg, &[op(K::DelEndpoint(key())), op(K::AddEndpoint(re))])
        .unwrap()
        .unwrap();
    assert!(matches!(&d[0], Delta::Remove { ips, local: true, .. } if *ips == ep.ips));
    assert!(
        matches!(&d[1], Delta::AddLocal(e) if e.ips == ["10.1.0.9".parse::<IpAddr>().unwrap()])
    );
    // Refusals name the op.
    let refused = |ops: Vec<Op>| deltas(&cfg, &ops).unwrap().unwrap_err();
    let dup = endpoint("blue", &ep.mac.to_string(), "10.1.0.9", &ep.port);
    assert_eq!(
        refused(vec![op(K::AddEndpoint(dup))]),
        (0, "endpoint already exists".into())
    );
    assert_eq!(
        refused(vec![op(K::DelEndpoint(key())), op(K::DelEndpoint(key()))]),
        (1, "no such endpoint".into())
    );
    let (i, e) = refused(vec![op(K::AddEndpoint(endpoint(
        "blue",
        "02:00:00:00:09:01",
        "10.1.0.9",
        "nope",
    )))]);
    assert_eq!(i, 0);
    assert!(e.contains("is not a [[port]]"), "{e}");
    let (_, e) = refused(vec![op(K::AddEndpoint(endpoint(
        "blue",
        "02:00:00:00:09:01",
        "10.1.0.9",
        "pod1",
    )))]);
    assert!(e.contains("used by a patch or the L2 table"), "{e}");
    let (_, e) = refused(vec![op(K::AddRemoteEndpoint(remote(
        "blue\n",
        "02:00:00:00:09:01",
        "10.1.0.9",
        "192.0.2.2",
    )))]);
    assert!(
        e.starts_with("network: \"blue\\n\" is not a valid name"),
        "{e}"
    );
    // Sizes are bounded: 16 addresses at most.
    let mut many = remote("blue", "02:00:00:00:09:01", "10.1.0.9", "192.0.2.2");
    many.ips = (0..17).map(|i| format!("10.1.0.{}", 100 + i)).collect();
    let (_, e) = refused(vec![op(K::AddRemoteEndpoint(many.clone()))]);
    assert!(e.contains("ips: 17 given, at most 16"), "{e}");
    // The whole-state path says the same, from the op alone.
    let (fixed, state, _) = fixed_and_state();
    let e = fixed
        .apply_ops(
            &state,
            &[
                op(K::AddRemoteEndpoint(many)),
                op(K::DelNetwork("x".into())),
            ],
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("op 0 ") && e.contains("ips: 17 given, at most 16"),
        "{e}"
    );
    // A local endpoint is not deleted as a remote one.
    assert_eq!(
        refused(vec![op(K::DelRemoteEndpoint(key()))]),
        (0, "no such remote endpoint".into())
    );
}

#[test]
fn route_writes_become_deltas_and_refusals_go_whole() {
    use crate::delta::{deltas, refusals_go_whole, Delta};
    use dataplane::overlay::RouteTarget;
    let (_, _, cfg) = fixed_and_state();
    let add = |p: &str, t| op(K::AddRoute(route("t1", p, t)));
    let del = |tenant: &str, p: &str| {
        op(K::DelRoute(api::RouteKey {
            tenant: tenant.into(),
            prefix: p.into(),
        }))
    };
    // A route add, a route delete (found with its target), an endpoint op.
    let ep = remote("blue", "02:00:00:00:09:01", "10.1.0.9", "192.0.2.2");
    let d = deltas(
        &cfg,
        &[
            add("10.50.0.0/16", Some(Target::Blackhole(true))),
            del("t1", "0.0.0.0/0"),
            op(K::AddRemoteEndpoint(ep)),
        ],
    )
    .unwrap()
    .unwrap();
    assert!(refusals_go_whole(&d));
    assert!(
        matches!(&d[0], Delta::AddRoute(r) if r.tenant == "t1" && r.target == RouteTarget::Blackhole)
    );
    assert!(matches!(
        &d[1],
        Delta::RemoveRoute(r) if r.target == RouteTarget::NextHop { network: "blue".into(), ip: "10.1.0.254".parse().unwrap() }
    ));
    assert!(matches!(&d[2], Delta::AddRemote(_)));
    // No tenant is the default one, as the whole-state path has it
    let d = deltas(
        &cfg,
        &[op(K::AddRoute(route(
            "",
            "10.50.0.0/16",
            via("blue", "10.1.0.254"),
        )))],
    );
    // (here the default tenant has no network: the whole-state path says so).
    assert!(d.is_none());
    // Whatever the delta path would refuse goes to the whole-state path, which
    // words it: a bad prefix, no target, a route that exists or is absent.
    for ops in [
        vec![add("10.50.0.1/16", Some(Target::Blackhole(true)))],
        vec![add("10.50.0.0/16", None)],
        vec![add("10.50.0.0/16", Some(Target::Blackhole(false)))],
        vec![del("t1", "10.50.0.0/16")],
        vec![del("t2", "0.0.0.0/0")],
        vec![del("t1", "0.0.0.0/0"), del("t1", "0.0.0.0/0")],
        vec![add("10.50.0.0/16", via("blue\n", "10.1.0.254"))],
    ] {
        assert!(deltas(&cfg, &ops).is_none(), "{ops:?}");
    }
    // A route that exists is left to the dataplane to refuse (its VRF knows it
    // in one probe, where the state would need a scan of every route); then
    // the write goes whole too. One the write itself added is known here.
    assert!(deltas(&cfg, &[add("10.99.0.0/16", Some(Target::Blackhole(true)))]).is_some());
    let twice = add("10.50.0.0/16", Some(Target::Blackhole(true)));
    assert!(deltas(&cfg, &[twice.clone(), twice]).is_none());
    // And so do writes with anything but endpoint and route ops.
    let net = op(K::DelNetwork("blue".into()));
    assert!(deltas(
        &cfg,
        &[add("10.50.0.0/16", Some(Target::Blackhole(true))), net]
    )
    .is_none());
}

#[test]
fn a_delta_applied_to_the_state_matches_the_whole_state_path() {
    use crate::delta::{apply, deltas};
    let (fixed, state, cfg) = fixed_and_state();
    let ep = cfg.endpoints[0].clone();
    let ops = vec![
        op(K::AddRemoteEndpoint(remote(
            "blue",
            "02:00:00:00:09:01",
            "10.1.0.9",
            "192.0.2.2",
        ))),
        op(K::DelEndpoint(api::EndpointKey {
            network: ep.network.clone(),
            mac: ep.mac.to_string(),
        })),
        op(K::AddEndpoint(endpoint(
            "blue",
            "02:00:00:00:09:02",
            "10.1.0.10",
            &ep.port,
        ))),
    ];
    let x = || remote("blue", "02:00:00:00:09:07", "10.1.0.17", "192.0.2.2");
    let del_x = || {
        op(K::DelRemoteEndpoint(api::EndpointKey {
            network: "blue".into(),
            mac: "02:00:00:00:09:07".into(),
        }))
    };
    let mut many: Vec<Op> = (0..20u8)
        .map(|i| {
            op(K::AddRemoteEndpoint(remote(
                "blue",
                &format!("02:00:00:00:0a:{i:02x}"),
                &format!("10.1.0.{}", 100 + i),
                "192.0.2.2",
            )))
        })
        .collect();
    many.push(op(K::AddRemoteEndpoint(x())));
    many.push(del_x());
    let del_route = |p: &str| {
        op(K::DelRoute(api::RouteKey {
            tenant: "t1".into(),
            prefix: p.into(),
        }))
    };
    let routes = vec![
        op(K::AddRoute(route(
            "t1",
            "10.50.0.0/16",
            via("blue", "10.1.0.254"),
        ))),
        del_route("0.0.0.0/0"),
        op(K::AddRoute(route(
            "t1",
            "10.51.0.0/16",
            Some(Target::Blackhole(true)),
        ))),
        // Deleted and added again: an update, at the end of the list.
        del_route("10.99.0.0/16"),
        op(K::AddRoute(route(
            "t1",
            "10.99.0.0/16",
            via("blue", "10.1.0.254"),
        ))),
        // Added and deleted: no trace.
        op(K::AddRoute(route(
            "t1",
            "fd00:50::/32",
            Some(Target::Blackhole(true)),
        ))),
        del_route("fd00:50::/32"),
    ];
    let one_route = vec![del_route("10.99.0.0/16")];
    for ops in [
        routes,
        one_route,
        ops,
        // Added and removed in one write: no trace of it.
        vec![op(K::AddRemoteEndpoint(x())), del_x()],
        // Many ops (looked up through an index), an add cancelled by a delete.
        many,
    ] {
        let whole = fixed.apply_ops(&state, &ops).unwrap();
        let deltas = deltas(&cfg, &ops).unwrap().unwrap();
        let (mut c, mut s) = (cfg.clone(), state.clone());
        apply(&mut c, &mut s, &deltas);
        assert_eq!(s, whole.state);
        assert_eq!(c, whole.config);
    }
}

#[test]
fn a_port_write_with_endpoints_is_a_delta_equal_to_the_whole_state_path() {
    use crate::delta::{apply, journal_ops, op_of, section_deltas, Delta};
    let (fixed, state, cfg) = fixed_and_state();
    let key = |mac: &str| api::EndpointKey {
        network: "blue".into(),
        mac: mac.into(),
    };
    // The CNI's pod add: a port and the endpoint behind it, in one write.
    let add = vec![
        op(K::AddPort(port(
            "cni0",
            "af_packet",
            &[("iface", "veth-cni0")],
        ))),
        op(K::AddEndpoint(endpoint(
            "blue",
            "02:00:00:00:0c:01",
            "10.1.0.40",
            "cni0",
        ))),
        op(K::AddRoute(route(
            "t1",
            "10.50.0.0/16",
            via("blue", "10.1.0.40"),
        ))),
    ];
    let whole = fixed.apply_ops(&state, &add).unwrap();
    let (deltas, sections) = section_deltas(&fixed, &state, &cfg, &add).unwrap();
    assert!(matches!(&deltas[0], Delta::AddPort(p, _) if p.name == "cni0"));
    assert_eq!(sections.ports, whole.config.ports, "the port sections");
    let (mut c, mut s) = (cfg.clone(), state.clone());
    apply(&mut c, &mut s, &deltas);
    assert_eq!(s, whole.state);
    assert_eq!(c, whole.config);
    // Its journal line replays as the same write.
    let again: Vec<Op> = journal_ops(&deltas).iter().map(op_of).collect();
    assert_eq!(fixed.apply_ops(&state, &again).unwrap(), whole);
    // And the pod's delete, endpoint and port in either order.
    let (state2, cfg2) = (whole.state, whole.config);
    for del in [
        vec![
            op(K::DelRoute(api::RouteKey {
                tenant: "t1".into(),
                prefix: "10.50.0.0/16".into(),
            })),
            op(K::DelEndpoint(key("02:00:00:00:0c:01"))),
            op(K::DelPort("cni0".into())),
        ],
        vec![
            op(K::DelPort("cni0".into())),
            op(K::DelRoute(api::RouteKey {
                tenant: "t1".into(),
                prefix: "10.50.0.0/16".into(),
            })),
            op(K::DelEndpoint(key("02:00:00:00:0c:01"))),
        ],
    ] {
        let whole = fixed.apply_ops(&state2, &del).unwrap();
        let (deltas, _) = section_deltas(&fixed, &state2, &cfg2, &del).unwrap();
        let (mut c, mut s) = (cfg2.clone(), state2.clone());
        apply(&mut c, &mut s, &deltas);
        assert_eq!(s, whole.state);
        assert_eq!(c, whole.config);
        assert_eq!(s, state, "back where it started");
    }
    // Whatever is refused goes to the whole-state path, which words it: a port
    // still carrying an endpoint, one that exists, one in a patch, a port
    // parameter the profile does not know, an endpoint on a port that goes.
    for ops in [
        vec![op(K::DelPort("pod3".into()))],
        vec![op(K::AddPort(port("pod1", "null", &[])))],
        vec![op(K::DelPort("pod1".into()))],
        vec![op(K::AddPort(port("cni0", "null", &[("iface", "x")])))],
        vec![
            op(K::AddPort(port("cni0", "null", &[]))),
            op(K::DelPort("cni0".into())),
            op(K::AddEndpoint(endpoint(
                "blue",
                "02:00:00:00:0c:01",
                "10.1.0.40",
                "cni0",
            ))),
        ],
        vec![op(K::AddPort(port("cni0\n", "null", &[])))],
    ] {
        assert!(
            section_deltas(&fixed, &state, &cfg, &ops).is_none(),
            "{ops:?}"
        );
    }
    // Writes without a port op are not this path's.
    assert!(section_deltas(&fixed, &state, &cfg, &add[1..]).is_none());
}

#[test]
fn a_network_added_with_its_endpoints_is_a_delta_equal_to_the_whole_state_path() {
    use crate::delta::{apply, journal_ops, op_of, section_deltas, Delta};
    let (fixed, state, cfg) = fixed_and_state();
    let mut red = network("red", 900, "10.90.0.0/24", "10.90.0.1");
    red.tenant = "t9".into();
    let add = vec![
        op(K::AddNetwork(red.clone())),
        op(K::AddRemoteEndpoint(remote(
            "red",
            "02:00:00:00:0d:01",
            "10.90.0.5",
            "192.0.2.2",
        ))),
        op(K::AddRoute(route(
            "t9",
            "0.0.0.0/0",
            via("red", "10.90.0.5"),
        ))),
    ];
    let whole = fixed.apply_ops(&state, &add).unwrap();
    let (deltas, sections) = section_deltas(&fixed, &state, &cfg, &add).unwrap();
    assert!(matches!(&deltas[0], Delta::AddNetwork(n, _) if n.name == "red"));
    assert_eq!(sections.networks, whole.config.networks);
    let (mut c, mut s) = (cfg.clone(), state.clone());
    apply(&mut c, &mut s, &deltas);
    assert_eq!(s, whole.state);
    assert_eq!(c, whole.config);
    let again: Vec<Op> = journal_ops(&deltas).iter().map(op_of).collect();
    assert_eq!(fixed.apply_ops(&state, &again).unwrap(), whole);
    // Refused (to the whole-state path): a name or VNI in use, an overlap in
    // the tenant, a route through a network no op adds, a network delete.
    let mut dup_vni = red.clone();
    dup_vni.vni = 100;
    let mut overlap = red.clone();
    overlap.tenant = "t1".into();
    overlap.subnets = vec!["10.1.0.0/16".into()];
    overlap.gateway_ips = vec!["10.1.0.1".into()];
    for ops in [
        vec![op(K::AddNetwork(network(
            "blue",
            901,
            "10.91.0.0/24",
            "10.91.0.1",
        )))],
        vec![op(K::AddNetwork(dup_vni))],
        vec![op(K::AddNetwork(overlap))],
        vec![
            op(K::AddNetwork(red.clone())),
            op(K::AddRoute(route(
                "t9",
                "0.0.0.0/0",
                via("green", "10.2.0.5"),
            ))),
        ],
        vec![op(K::AddNetwork(red)), op(K::DelNetwork("blue".into()))],
    ] {
        assert!(
            section_deltas(&fixed, &state, &cfg, &ops).is_none(),
            "{ops:?}"
        );
    }
}

#[test]
fn boot_replays_the_journal_after_the_state_file() {
    use crate::persist::{append, JournalEntry, JournalOp};
    let dir = crate::testutil::TempDir::new("journal");
    let path = dir.path().join("state.json");
    let (fixed, state, cfg) = fixed_and_state();
    persist::store(&path, 5, &to_sections(&state).unwrap()).unwrap();
    let add = |mac: &str, ip: &str| {
        JournalOp::AddRemoteEndpoint(api::RemoteEndpoint {
            network: "blue".into(),
            mac: mac.into(),
            ips: vec![ip.into()],
            vtep: "192.0.2.2".into(),
        })
    };
    // A line the state file already holds (a fold that stopped before removing
    // the journal) is skipped; the next ones apply in order.
    for (generation, ops) in [
        (5, vec![add("02:00:00:00:09:09", "10.1.0.99")]),
        (6, vec![add("02:00:00:00:09:01", "10.1.0.9")]),
        (
            7,
            vec![
                add("02:00:00:00:09:02", "10.1.0.10"),
                JournalOp::DelRemoteEndpoint {
                    network: "blue".into(),
                    mac: "02:00:00:00:09:01".into(),
                },
            ],
        ),
    ] {
        append(&path, &JournalEntry { generation, ops }).unwrap();
    }
    // A line cut short by a crash was never acknowledged.
    let j = persist::journal_path(&path);
    let mut text = std::fs::read_to_string(&j).unwrap();
    text.push_str("{\"generation\":8,\"ops\":[");
    std::fs::write(&j, text).unwrap();
    let d = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!((d.generation, d.journal), (7, 2));
    let macs: Vec<_> = d
        .state
        .remote_endpoints
        .iter()
        .map(|e| e.mac.as_str())
        .collect();
    assert!(macs.contains(&"02:00:00:00:09:02") && !macs.contains(&"02:00:00:00:09:01"));
    assert!(!macs.contains(&"02:00:00:00:09:09"));
    // The next write cuts the torn line off before it appends.
    append(
        &path,
        &JournalEntry {
            generation: 8,
            ops: vec![add("02:00:00:00:09:03", "10.1.0.11")],
        },
    )
    .unwrap();
    let d = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!((d.generation, d.journal), (8, 3));
    // Route lines: an add through a next hop, a blackhole, a delete.
    let lines = [
        JournalOp::AddRoute {
            tenant: "t1".into(),
            prefix: "10.50.0.0/16".into(),
            next_hop: Some(crate::persist::JournalNextHop {
                network: "blue".into(),
                ip: "10.1.0.254".into(),
            }),
        },
        JournalOp::AddRoute {
            tenant: "t1".into(),
            prefix: "10.51.0.0/16".into(),
            next_hop: None,
        },
        JournalOp::DelRoute {
            tenant: "t1".into(),
            prefix: "10.99.0.0/16".into(),
        },
    ];
    append(
        &path,
        &JournalEntry {
            generation: 9,
            ops: lines.to_vec(),
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(&j).unwrap();
    assert!(
        text.ends_with("{\"del_route\":{\"tenant\":\"t1\",\"prefix\":\"10.99.0.0/16\"}}]}\n"),
        "{text}"
    );
    let d = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!((d.generation, d.journal), (9, 4));
    let prefixes: Vec<_> = d.state.routes.iter().map(|r| r.prefix.as_str()).collect();
    assert_eq!(prefixes, ["0.0.0.0/0", "10.50.0.0/16", "10.51.0.0/16"]);
    assert_eq!(d.state.routes[2].target, Some(Target::Blackhole(true)));
    // A gap is refused, naming the journal.
    std::fs::write(
        &j,
        "{\"generation\":6,\"ops\":[]}\n{\"generation\":8,\"ops\":[]}\n",
    )
    .unwrap();
    let e = Desired::boot(&cfg, &fixed, Some(&path))
        .unwrap_err()
        .to_string();
    assert!(e.contains("state.json.journal") && e.contains("gap"), "{e}");
    persist::clear_journal(&path).unwrap();
    assert!(!j.exists());
}
