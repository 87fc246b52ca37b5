//! Services and backends through the API's paths: the whole-state path and
//! the delta path agree, the journal replays them, bad ones change nothing.

use super::tests::{fixed_and_state, op};
use super::*;
use crate::api::{op::Op as K, Op};

pub(crate) fn backend(address: &str, weight: Option<u32>, state: &str) -> api::Backend {
    api::Backend {
        address: address.into(),
        weight,
        state: state.into(),
    }
}

pub(crate) fn service(name: &str, vip: &str, port: u32, backends: &[&str]) -> api::Service {
    api::Service {
        name: name.into(),
        network: "blue".into(),
        cluster_ip: vip.into(),
        ports: vec![api::ServicePort {
            name: String::new(),
            protocol: "TCP".into(),
            port,
            target_port: 8080,
            node_port: 0,
        }],
        backends: backends.iter().map(|a| backend(a, None, "")).collect(),
        ..Default::default()
    }
}

fn set(service: &str, address: &str, weight: Option<u32>, state: &str) -> Op {
    op(K::SetBackend(api::SetBackend {
        service: service.into(),
        address: address.into(),
        weight,
        state: state.into(),
    }))
}

/// The writes of a service's life, each as one transaction.
fn writes() -> Vec<Vec<Op>> {
    vec![
        vec![
            op(K::AddService(service(
                "web",
                "10.96.0.10",
                80,
                &["10.1.0.20", "10.1.0.21"],
            ))),
            op(K::AddService(service(
                "dns",
                "10.96.0.53",
                53,
                &["10.1.0.30"],
            ))),
        ],
        vec![op(K::AddBackend(api::BackendOp {
            service: "web".into(),
            backend: Some(backend("10.1.0.22", Some(4), "")),
        }))],
        vec![set("web", "10.1.0.20", Some(0), "")],
        vec![set("web", "10.1.0.21", None, "draining")],
        vec![op(K::DelBackend(api::BackendKey {
            service: "web".into(),
            address: "10.1.0.21".into(),
        }))],
        vec![op(K::DelService("dns".into()))],
    ]
}

#[test]
fn service_writes_as_deltas_match_the_whole_state_path() {
    let (fixed, mut state, mut cfg) = fixed_and_state();
    for ops in writes() {
        let whole = fixed.apply_ops(&state, &ops).unwrap();
        let deltas = crate::delta::deltas(&cfg, &ops)
            .expect("a service write is a delta")
            .unwrap();
        let (mut c, mut s) = (cfg.clone(), state.clone());
        crate::delta::apply(&mut c, &mut s, &deltas);
        assert_eq!(s, whole.state, "{ops:?}");
        assert_eq!(c, whole.config, "{ops:?}");
        (state, cfg) = (whole.state, whole.config);
    }
    let web = &state.services[0];
    assert_eq!(web.name, "web");
    let got: Vec<_> = web
        .backends
        .iter()
        .map(|b| (b.address.as_str(), b.weight, b.state.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("10.1.0.20", Some(0), "active"),
            ("10.1.0.22", Some(4), "active")
        ]
    );
    assert_eq!(state.services.len(), 1);
    // Defaults are filled in: the canonical form.
    assert_eq!(web.table_size, 65_537);
    assert_eq!(web.session_affinity, "None");
}

#[test]
fn service_writes_replay_from_the_journal() {
    use crate::persist::{append, JournalEntry};
    let dir = crate::testutil::TempDir::new("svc-journal");
    let path = dir.path().join("state.json");
    let (fixed, state, cfg) = fixed_and_state();
    persist::store(&path, 1, &to_sections(&state).unwrap()).unwrap();
    let (mut s, mut c) = (state, cfg.clone());
    for (g, ops) in writes().into_iter().enumerate() {
        let deltas = crate::delta::deltas(&c, &ops).unwrap().unwrap();
        let entry = JournalEntry {
            generation: g as u64 + 2,
            ops: crate::delta::journal_ops(&deltas),
        };
        append(&path, &entry).unwrap();
        crate::delta::apply(&mut c, &mut s, &deltas);
    }
    let d = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!(d.generation, 7);
    assert_eq!(d.state, s);
    // And through the state file written whole.
    persist::store(&path, 8, &to_sections(&s).unwrap()).unwrap();
    persist::clear_journal(&path).unwrap();
    let d = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!(d.state, s);
}

/// `(ops, words the refusal has)`: each refused by both paths, naming the op,
/// the field and a prefix of the bad input.
fn bad_writes() -> Vec<(Vec<Op>, &'static str)> {
    let ok = || service("web", "10.96.0.10", 80, &["10.1.0.20"]);
    let with = |f: &dyn Fn(&mut api::Service)| {
        let mut s = ok();
        f(&mut s);
        vec![op(K::AddService(s))]
    };
    vec![
        (
            with(&|s| s.cluster_ip = "10.96.0.300".into()),
            "cluster_ip: invalid IP address \"10.96.0.300\"",
        ),
        (
            with(&|s| s.table_size = 65_536),
            "table_size: 65536 is not prime",
        ),
        (
            with(&|s| s.table_size = 2_000_003),
            "table_size: maglev table size 2000003 is out of range",
        ),
        (
            with(&|s| s.backends[0].weight = Some(70_000)),
            "backends[0].weight: 70000 is out of range (0-65535)",
        ),
        (
            with(&|s| s.backends[0].state = "sleepy".into()),
            "backends[0].state: \"sleepy\" is not one of",
        ),
        (
            with(&|s| s.backends.clear()),
            "backends: a service needs at least one backend",
        ),
        (
            with(&|s| s.backends[0].weight = Some(0)),
            "backends: no backend is active with a non-zero weight",
        ),
        (
            with(&|s| s.ports[0].node_port = 80),
            "ports[0].node_port: 80 is outside the node port range 30000-32767",
        ),
        (
            with(&|s| s.name = "a b".into()),
            "name: \"a b\" is not a valid name",
        ),
        (
            with(&|s| s.network = "red".into()),
            "network: network \"red\" does not exist",
        ),
        (
            with(&|s| s.backends[0].address = "fd00:1::20".into()),
            "backends[0].address: fd00:1::20 is IPv6, the cluster_ip 10.96.0.10 is IPv4",
        ),
        (
            with(&|s| s.cluster_ip = "10.1.0.2".into()),
            "cluster_ip: 10.1.0.2 is the address of endpoint 02:00:00:00:03:01",
        ),
        (
            with(&|s| s.ports[0].protocol = "ICMP".into()),
            "ports[0].protocol: \"ICMP\" is not one of",
        ),
        (
            with(&|s| s.session_affinity = "Cookie".into()),
            "session_affinity: \"Cookie\" is not one of",
        ),
        (
            with(&|s| {
                s.backends = (0..5000)
                    .map(|i| backend(&format!("10.1.{}.{}", i / 250, i % 250), None, ""))
                    .collect()
            }),
            "backends: 5000 given, at most 4096",
        ),
        (
            with(&|s| s.backends.push(backend("10.1.0.20", None, ""))),
            "backends[1].address: 10.1.0.20 is listed twice",
        ),
        (
            vec![op(K::SetBackend(api::SetBackend {
                service: "nope".into(),
                address: "10.1.0.20".into(),
                weight: Some(2),
                state: String::new(),
            }))],
            "no such service \"nope\"",
        ),
    ]
}

#[test]
fn bad_service_writes_are_refused_by_both_paths_in_the_same_words() {
    let (fixed, state, cfg) = fixed_and_state();
    for (ops, want) in bad_writes() {
        let e = fixed.apply_ops(&state, &ops).unwrap_err().to_string();
        assert!(e.contains(want), "whole: got {e:?}, want {want:?}");
        assert!(e.len() < 400 && !e.contains('\n'), "{e}");
        let (i, r) = crate::delta::deltas(&cfg, &ops).unwrap().unwrap_err();
        let d = ApiError::Op {
            index: i,
            op: op_label(ops[i].op.as_ref()),
            reason: r,
        }
        .to_string();
        assert_eq!(d, e, "the delta path words it as the whole path");
    }
    // Conflicts between services are the whole path's (and the dataplane's).
    let first = fixed
        .apply_ops(
            &state,
            &[op(K::AddService({
                let mut s = service("web", "10.96.0.10", 80, &["10.1.0.20"]);
                s.ports[0].node_port = 30080;
                s
            }))],
        )
        .unwrap();
    let dup_vip = service("other", "10.96.0.10", 80, &["10.1.0.21"]);
    let e = fixed
        .apply_ops(&first.state, &[op(K::AddService(dup_vip))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("frontend 10.96.0.10:80/TCP in network \"blue\" is already service \"web\"'s"),
        "{e}"
    );
    let mut dup_node = service("other", "10.96.0.11", 80, &["10.1.0.21"]);
    dup_node.ports[0].node_port = 30080;
    let e = fixed
        .apply_ops(&first.state, &[op(K::AddService(dup_node))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node_port: 30080/TCP is already service \"web\"'s"),
        "{e}"
    );
}

#[test]
fn an_endpoint_on_a_virtual_ip_is_refused_by_both_paths() {
    let (fixed, state, _) = fixed_and_state();
    let ops = vec![op(K::AddService(service(
        "web",
        "10.1.0.50",
        80,
        &["10.1.0.20"],
    )))];
    let v = fixed.apply_ops(&state, &ops).unwrap();
    let add = vec![op(K::AddRemoteEndpoint(api::RemoteEndpoint {
        network: "blue".into(),
        mac: "02:00:00:00:09:50".into(),
        ips: vec!["10.1.0.50".into()],
        vtep: "192.0.2.2".into(),
    }))];
    // Not a delta: the whole-state path words the refusal, blaming the add.
    assert!(crate::delta::deltas(&v.config, &add).is_none());
    let e = fixed.apply_ops(&v.state, &add).unwrap_err().to_string();
    assert!(
        e.starts_with("op 0 (add_remote_endpoint")
            && e.contains("10.1.0.50 is the address of remote endpoint"),
        "{e}"
    );
    // Another address is a delta as before.
    let mut other = add.clone();
    if let Some(K::AddRemoteEndpoint(r)) = &mut other[0].op {
        r.ips = vec!["10.1.0.51".into()];
    }
    assert!(crate::delta::deltas(&v.config, &other).unwrap().is_ok());
}
