use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::pipeline::lb::maglev::{BackendState, DEFAULT_SIZE};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn backend(a: &str, weight: u16) -> BackendSpec {
    BackendSpec {
        address: ip(a),
        weight,
        state: BackendState::Active,
    }
}

fn port(p: u16, proto: Protocol, node_port: Option<u16>) -> ServicePortSpec {
    ServicePortSpec {
        name: format!("p{p}"),
        protocol: proto,
        port: p,
        target_port: p + 8000,
        node_port,
    }
}

fn svc(name: &str, vip: &str, backends: &[(&str, u16)]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        network: "blue".into(),
        cluster_ip: ip(vip),
        ports: vec![port(80, Protocol::Tcp, None)],
        external_ips: Vec::new(),
        affinity: Affinity::None,
        table_size: 251,
        backends: backends.iter().map(|(a, w)| backend(a, *w)).collect(),
    }
}

fn nets(n: &str) -> Option<NetworkId> {
    match n {
        "blue" => Some(NetworkId(0)),
        "green" => Some(NetworkId(1)),
        _ => None,
    }
}

const BLUE: NetworkId = NetworkId(0);

#[test]
fn frontends_lead_to_the_service_and_its_port() {
    let mut a = svc("a", "10.96.0.10", &[("10.1.0.5", 1), ("10.1.0.6", 1)]);
    a.ports.push(port(53, Protocol::Udp, Some(30053)));
    a.external_ips.push(ip("192.0.2.80"));
    let s = Services::build(&[a], nets, &Services::empty()).unwrap();
    let f = s
        .frontend(BLUE, ip("10.96.0.10"), 80, Protocol::Tcp)
        .unwrap();
    assert_eq!(f.port, 0);
    let f2 = s
        .frontend(BLUE, ip("192.0.2.80"), 53, Protocol::Udp)
        .unwrap();
    assert_eq!((f2.service, f2.port), (f.service, 1));
    assert_eq!(s.node_port(30053, Protocol::Udp), Some(f2));
    // Wrong protocol, port, network or address: no service.
    assert_eq!(s.frontend(BLUE, ip("10.96.0.10"), 80, Protocol::Udp), None);
    assert_eq!(s.frontend(BLUE, ip("10.96.0.10"), 81, Protocol::Tcp), None);
    assert_eq!(
        s.frontend(NetworkId(1), ip("10.96.0.10"), 80, Protocol::Tcp),
        None
    );
    assert_eq!(s.frontend(BLUE, ip("10.96.0.11"), 80, Protocol::Tcp), None);
    assert_eq!(s.node_port(30053, Protocol::Tcp), None);
    let b = s.pick(f.service, 0x1234_5678).unwrap();
    assert!(["10.1.0.5", "10.1.0.6"].contains(&b.address.to_string().as_str()));
}

#[test]
fn pick_follows_weights_and_skips_draining_and_down() {
    let mut a = svc(
        "a",
        "10.96.0.10",
        &[
            ("10.1.0.5", 3),
            ("10.1.0.6", 1),
            ("10.1.0.7", 2),
            ("10.1.0.8", 2),
        ],
    );
    a.table_size = DEFAULT_SIZE;
    a.backends[2].state = BackendState::Draining;
    a.backends[3].state = BackendState::Down;
    let s = Services::build(&[a], nets, &Services::empty()).unwrap();
    let (id, e) = s.by_name("a").unwrap();
    let counts = e.slot_counts();
    assert_eq!(counts[2], 0, "draining");
    assert_eq!(counts[3], 0, "down");
    let ratio = f64::from(counts[0]) / f64::from(counts[1]);
    assert!((2.9..3.1).contains(&ratio), "{counts:?}");
    // Every hash picks an active backend.
    for h in (0..u32::MAX).step_by(9_999_991) {
        let b = s.pick(id, h).unwrap();
        assert_eq!(b.state, BackendState::Active);
        assert!(b.weight > 0);
    }
}

#[test]
fn a_write_to_one_service_leaves_the_others_arcs_shared() {
    let a = svc("a", "10.96.0.10", &[("10.1.0.5", 1), ("10.1.0.6", 1)]);
    let b = svc("b", "10.96.0.11", &[("10.1.0.7", 1)]);
    let s1 = Services::build(&[a.clone(), b], nets, &Services::empty()).unwrap();
    let mut a2 = a.clone();
    a2.backends[1].weight = 5;
    let s2 = s1.patched(&[ServiceChange::Put(a2)], nets).unwrap();
    assert!(Arc::ptr_eq(
        s1.entry_arc("b").unwrap(),
        s2.entry_arc("b").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        &s1.entry_arc("a").unwrap().set,
        &s2.entry_arc("a").unwrap().set
    ));
    // A port change keeps the table: it is the backends'.
    let mut a3 = a.clone();
    a3.ports.push(port(443, Protocol::Tcp, None));
    let s3 = s1.patched(&[ServiceChange::Put(a3)], nets).unwrap();
    assert!(Arc::ptr_eq(
        &s1.entry_arc("a").unwrap().set,
        &s3.entry_arc("a").unwrap().set
    ));
    assert!(s3
        .frontend(BLUE, ip("10.96.0.10"), 443, Protocol::Tcp)
        .is_some());
    // A whole build keeps the tables whose backends did not change.
    let s4 = Services::build(std::slice::from_ref(&a), nets, &s1).unwrap();
    assert!(Arc::ptr_eq(
        &s1.entry_arc("a").unwrap().set,
        &s4.entry_arc("a").unwrap().set
    ));
    assert!(s4.by_name("b").is_none());
}

#[test]
fn remove_frees_the_frontends_and_the_name() {
    let a = svc("a", "10.96.0.10", &[("10.1.0.5", 1)]);
    let s = Services::build(std::slice::from_ref(&a), nets, &Services::empty()).unwrap();
    let s2 = s
        .patched(&[ServiceChange::Remove("a".into())], nets)
        .unwrap();
    assert!(s2.is_empty());
    assert_eq!(s2.frontend(BLUE, ip("10.96.0.10"), 80, Protocol::Tcp), None);
    let mut b = a.clone();
    b.name = "b".into();
    let s3 = s2.patched(&[ServiceChange::Put(b)], nets).unwrap();
    assert!(s3
        .frontend(BLUE, ip("10.96.0.10"), 80, Protocol::Tcp)
        .is_some());
    let e = s
        .patched(&[ServiceChange::Remove("zz".into())], nets)
        .unwrap_err();
    assert_eq!(e.0, 0);
    assert_eq!(e.1.to_string(), "service \"zz\" does not exist");
}

#[test]
fn conflicts_are_refused_naming_both_services() {
    let a = svc("a", "10.96.0.10", &[("10.1.0.5", 1)]);
    let b = svc("b", "10.96.0.10", &[("10.1.0.6", 1)]);
    let e = check(&[a.clone(), b.clone()]).unwrap_err().to_string();
    assert_eq!(
        e,
        "service \"b\": ports[0]: frontend 10.96.0.10:80/TCP in network \"blue\" is already service \"a\"'s"
    );
    let s = Services::build(std::slice::from_ref(&a), nets, &Services::empty()).unwrap();
    let (i, e) = s
        .patched(
            &[
                ServiceChange::Remove("x".into()),
                ServiceChange::Put(b.clone()),
            ],
            nets,
        )
        .unwrap_err();
    assert_eq!(i, 0, "{e}");
    let (i, e) = s
        .patched(&[ServiceChange::Put(b.clone())], nets)
        .unwrap_err();
    assert_eq!(i, 0);
    assert!(e.to_string().contains("is already service \"a\"'s"), "{e}");
    // Same address in another network, or another protocol: no conflict.
    let mut c = b.clone();
    c.network = "green".into();
    check(&[a.clone(), c.clone()]).unwrap();
    s.patched(&[ServiceChange::Put(c)], nets).unwrap();
    let mut d = b.clone();
    d.ports[0].protocol = Protocol::Udp;
    s.patched(&[ServiceChange::Put(d)], nets).unwrap();
    // Node ports are global.
    let mut a2 = a.clone();
    a2.ports[0].node_port = Some(30080);
    let mut c2 = svc("c", "10.96.0.12", &[("10.1.0.6", 1)]);
    c2.network = "green".into();
    c2.ports[0].node_port = Some(30080);
    let e = check(&[a2.clone(), c2.clone()]).unwrap_err().to_string();
    assert_eq!(
        e,
        "service \"c\": ports[0].node_port: 30080/TCP is already service \"a\"'s"
    );
    let s = Services::build(&[a2], nets, &Services::empty()).unwrap();
    assert!(s.patched(&[ServiceChange::Put(c2)], nets).is_err());
    // Within one service: two ports on one frontend.
    let mut twice = svc("t", "10.96.0.13", &[("10.1.0.6", 1)]);
    twice.ports.push(port(80, Protocol::Tcp, None));
    let e = check(&[twice.clone()]).unwrap_err().to_string();
    assert!(
        e.contains("ports[1]") && e.contains("service \"t\"'s"),
        "{e}"
    );
    let e = Services::build(&[twice], nets, &Services::empty()).unwrap_err();
    assert!(e.to_string().contains("is already service \"t\"'s"), "{e}");
    // Names.
    let e = check(&[a.clone(), a.clone()]).unwrap_err();
    assert_eq!(e, ServiceError::DuplicateName("a".into()));
}

#[test]
fn a_refused_patch_changes_nothing() {
    let a = svc("a", "10.96.0.10", &[("10.1.0.5", 1)]);
    let s = Services::build(std::slice::from_ref(&a), nets, &Services::empty()).unwrap();
    let mut bad = a.clone();
    bad.backends[0].weight = 0;
    let (_, e) = s.patched(&[ServiceChange::Put(bad)], nets).unwrap_err();
    assert!(e.to_string().contains("no active backend"), "{e}");
    let mut lost = svc("b", "10.96.0.11", &[("10.1.0.5", 1)]);
    lost.network = "red".into();
    let (_, e) = s.patched(&[ServiceChange::Put(lost)], nets).unwrap_err();
    assert_eq!(
        e.to_string(),
        "service \"b\": network \"red\" does not exist"
    );
    assert!(s
        .frontend(BLUE, ip("10.96.0.10"), 80, Protocol::Tcp)
        .is_some());
    assert_eq!(s.len(), 1);
}

#[test]
fn the_totals_are_bounded() {
    let mut big = svc("a", "10.96.0.10", &[("10.1.0.5", 1)]);
    big.table_size = u32::MAX;
    let e = check(&[big]).unwrap_err();
    assert!(matches!(e, ServiceError::TooManySlots { .. }), "{e}");
}

#[test]
fn address_ids_are_stable() {
    // A restart must rebuild the same tables: the identity is a fixed function.
    assert_eq!(
        address_id(ip("10.1.0.5")),
        address_id(ip("::ffff:10.1.0.5"))
    );
    assert_ne!(address_id(ip("10.1.0.5")), address_id(ip("10.1.0.6")));
    // FNV-1a of the empty input is its offset basis; of 16 zero bytes, fixed.
    let zero = address_id(ip("::"));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..16 {
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    assert_eq!(zero, h);
    // Two builds of one input (two runs of the switch) make one table.
    let a = svc(
        "a",
        "10.96.0.10",
        &[("10.1.0.5", 1), ("10.1.0.6", 2), ("10.1.0.7", 1)],
    );
    let s1 = Services::build(std::slice::from_ref(&a), nets, &Services::empty()).unwrap();
    let s2 = Services::build(&[a], nets, &Services::empty()).unwrap();
    assert_eq!(
        s1.by_name("a").unwrap().1.set.table.slots(),
        s2.by_name("a").unwrap().1.set.table.slots()
    );
    let (i1, _) = s1.by_name("a").unwrap();
    let (i2, _) = s2.by_name("a").unwrap();
    for h in (0..u32::MAX).step_by(7_777_777) {
        assert_eq!(
            s1.pick(i1, h).unwrap().address,
            s2.pick(i2, h).unwrap().address
        );
    }
}

#[test]
fn protocol_numbers_round_trip() {
    for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        assert_eq!(Protocol::from_number(p.number()), Some(p));
    }
    assert_eq!(Protocol::from_number(1), None);
}
