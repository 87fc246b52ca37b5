//! Policies through the API's paths: the whole-state path and the delta path
//! agree, the journal replays them, bad ones change nothing and are refused in
//! the same words by both paths, naming the field.

use super::tests::{fixed_and_state, op};
use super::*;
use crate::api::{op::Op as K, Op};

pub(crate) fn block(cidr: &str, except: &[&str]) -> api::PolicyPeer {
    api::PolicyPeer {
        addresses: vec![],
        ip_block: Some(api::IpBlock {
            cidr: cidr.into(),
            except: except.iter().map(|s| s.to_string()).collect(),
        }),
    }
}

pub(crate) fn tcp(port: u32, end_port: u32) -> api::PolicyPort {
    api::PolicyPort {
        protocol: "tcp".into(),
        port,
        end_port,
        ..Default::default()
    }
}

/// A NetworkPolicy allowing `peers` to TCP `port` of `subject`.
pub(crate) fn np(
    name: &str,
    subject: &[&str],
    peer: api::PolicyPeer,
    port: u32,
) -> api::NetworkPolicy {
    api::NetworkPolicy {
        name: name.into(),
        subject: subject.iter().map(|s| s.to_string()).collect(),
        policy_types: vec![],
        ingress: vec![api::NetworkPolicyRule {
            peers: vec![peer],
            ports: vec![tcp(port, 0)],
        }],
        egress: vec![],
    }
}

pub(crate) fn cnp(name: &str, tier: &str, priority: u32, action: &str) -> api::ClusterPolicy {
    api::ClusterPolicy {
        name: name.into(),
        tier: tier.into(),
        priority,
        subject: vec!["10.1.0.2".into()],
        ingress: vec![api::ClusterPolicyRule {
            name: "r0".into(),
            action: action.into(),
            peers: vec![],
            ports: vec![api::PolicyPort {
                protocol: "ICMP".into(),
                icmp_type: Some(8),
                icmp_code: Some(0),
                ..Default::default()
            }],
        }],
        egress: vec![],
    }
}

pub(crate) fn pep(name: &str, address: &str, port_name: &str, port: u32) -> api::PolicyEndpoint {
    api::PolicyEndpoint {
        name: name.into(),
        addresses: vec![address.into()],
        named_ports: vec![api::NamedPort {
            name: port_name.into(),
            protocol: String::new(),
            port,
        }],
    }
}

/// The writes of a policy set's life, each as one transaction.
fn writes() -> Vec<Vec<Op>> {
    let named = api::NetworkPolicy {
        ingress: vec![api::NetworkPolicyRule {
            peers: vec![],
            ports: vec![api::PolicyPort {
                port_name: "http".into(),
                ..Default::default()
            }],
        }],
        ..np("x/named", &["10.1.0.3"], block("0.0.0.0/0", &[]), 80)
    };
    vec![
        vec![
            op(K::AddPolicy(np(
                "x/allow-web",
                &["10.1.0.2"],
                block("10.0.0.0/8", &["10.2.0.0/16"]),
                80,
            ))),
            op(K::AddClusterPolicy(cnp("deny-ping", "admin", 10, "deny"))),
            op(K::AddPolicyEndpoint(pep("x/a", "10.1.0.3", "http", 8080))),
        ],
        vec![op(K::AddPolicy(named))],
        vec![op(K::AddClusterPolicy(cnp("base", "Baseline", 5, "Allow")))],
        // A replace: delete and add of the same name in one write.
        vec![
            op(K::DelPolicy("x/allow-web".into())),
            op(K::AddPolicy(np(
                "x/allow-web",
                &["10.1.0.2", "10.1.0.4"],
                block("10.0.0.0/8", &[]),
                81,
            ))),
        ],
        vec![op(K::DelClusterPolicy("deny-ping".into()))],
        vec![op(K::DelPolicyEndpoint("x/a".into()))],
    ]
}

#[test]
fn policy_writes_as_deltas_match_the_whole_state_path() {
    let (fixed, mut state, mut cfg) = fixed_and_state();
    for ops in writes() {
        let whole = fixed.apply_ops(&state, &ops).unwrap();
        let deltas = crate::delta::deltas(&cfg, &ops)
            .expect("a policy write is a delta")
            .unwrap();
        assert!(matches!(
            deltas.last(),
            Some(crate::delta::Delta::Policy(_, Some(_)))
        ));
        let (mut c, mut s) = (cfg.clone(), state.clone());
        crate::delta::apply(&mut c, &mut s, &deltas);
        assert_eq!(s, whole.state, "{ops:?}");
        assert_eq!(c, whole.config, "{ops:?}");
        (state, cfg) = (whole.state, whole.config);
    }
    // Canonical text: protocols, actions and tiers as upstream spells them,
    // policy_types filled in.
    assert_eq!(state.policies.len(), 2);
    let p = &state.policies[1];
    assert_eq!(p.name, "x/allow-web");
    assert_eq!(p.policy_types, ["Ingress"]);
    assert_eq!(p.ingress[0].ports[0].protocol, "TCP");
    assert_eq!(p.ingress[0].ports[0].port, 81);
    assert_eq!(state.cluster_policies.len(), 1);
    assert_eq!(state.cluster_policies[0].tier, "Baseline");
    assert_eq!(state.cluster_policies[0].ingress[0].action, "Allow");
    assert!(state.policy_endpoints.is_empty());
}

#[test]
fn policy_writes_replay_from_the_journal() {
    use crate::persist::{append, JournalEntry};
    let dir = crate::testutil::TempDir::new("policy-journal");
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
    let booted = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!(booted.state, s);
    assert_eq!(booted.config, c);
    assert_eq!(booted.generation, writes().len() as u64 + 1);
    // The state file written whole reads back as the same state.
    persist::store(&path, 99, &to_sections(&s).unwrap()).unwrap();
    persist::clear_journal(&path).unwrap();
    let reread = Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!(reread.state, s);
}

/// Writes both paths refuse, with words the error must contain.
fn bad_writes() -> Vec<(Vec<Op>, &'static str)> {
    let with_port = |p: api::PolicyPort| api::NetworkPolicy {
        ingress: vec![api::NetworkPolicyRule {
            peers: vec![],
            ports: vec![p],
        }],
        ..np("x/p", &["10.1.0.2"], block("10.0.0.0/8", &[]), 80)
    };
    vec![
        (
            vec![op(K::AddPolicy(np(
                "x/p",
                &["10.1.0.2"],
                block("10.0.0/33", &[]),
                80,
            )))],
            "ingress[0].peers[0].ip_block.cidr: \"10.0.0/33\" is not a CIDR block",
        ),
        (
            vec![op(K::AddPolicy(np(
                "x/p",
                &["10.1.0.2"],
                block("10.0.0.0/16", &["10.1.0.0/24"]),
                80,
            )))],
            "ingress[0].peers[0].ip_block.except[0]: 10.1.0.0/24 is outside 10.0.0.0/16",
        ),
        (
            vec![op(K::AddPolicy(with_port(tcp(90, 80))))],
            "ingress[0].ports[0].end_port: end_port 80 is below port 90",
        ),
        (
            vec![op(K::AddPolicy(with_port(tcp(70_000, 0))))],
            "ingress[0].ports[0].port: 70000 is out of range (1-65535)",
        ),
        (
            vec![op(K::AddPolicy(with_port(api::PolicyPort {
                protocol: "ICMP".into(),
                icmp_type: Some(256),
                ..Default::default()
            })))],
            "ingress[0].ports[0].icmp_type: 256 is out of range (0-255)",
        ),
        (
            vec![op(K::AddPolicy(with_port(api::PolicyPort {
                port_name: "HTTP".into(),
                ..Default::default()
            })))],
            "ingress[0].ports[0].port_name: \"HTTP\" is not a port name",
        ),
        (
            vec![op(K::AddPolicy(with_port(api::PolicyPort {
                protocol: "GRE".into(),
                ..Default::default()
            })))],
            "ingress[0].ports[0].protocol: \"GRE\" is not one of",
        ),
        (
            vec![op(K::AddPolicy(np(
                "-x",
                &["10.1.0.2"],
                block("10.0.0.0/8", &[]),
                80,
            )))],
            "name: \"-x\" is not a valid policy name",
        ),
        (
            vec![op(K::AddPolicy(np(
                "x/p",
                &["10.1.0.256"],
                block("10.0.0.0/8", &[]),
                80,
            )))],
            "subject[0]: \"10.1.0.256\" is not an IP address",
        ),
        (
            vec![op(K::AddClusterPolicy(cnp("c", "Baseline", 1, "Pass")))],
            "ingress[0].action: Pass is an admin-tier action",
        ),
        (
            vec![op(K::AddClusterPolicy(cnp("c", "Middle", 1, "Deny")))],
            "tier: \"Middle\" is not one of \"Admin\", \"Baseline\"",
        ),
        (vec![op(K::DelPolicy("x/none".into()))], "no such policy"),
        (
            vec![
                op(K::AddPolicyEndpoint(pep("x/a", "10.1.0.3", "http", 80))),
                op(K::AddPolicyEndpoint(pep("x/b", "10.1.0.3", "http", 80))),
            ],
            "10.1.0.3 belongs to another endpoint too",
        ),
        (
            vec![
                op(K::AddClusterPolicy(cnp("c", "Admin", 1, "Deny"))),
                op(K::AddClusterPolicy(cnp("c", "Baseline", 1, "Deny"))),
            ],
            "cluster policy already exists",
        ),
    ]
}

#[test]
fn bad_policy_writes_are_refused_by_both_paths_in_the_same_words() {
    let (fixed, state, cfg) = fixed_and_state();
    for (ops, words) in bad_writes() {
        let whole = fixed.apply_ops(&state, &ops).unwrap_err().to_string();
        assert!(whole.contains(words), "{whole}\nwants: {words}");
        match crate::delta::deltas(&cfg, &ops) {
            // The whole set refused it: the whole-state path words it.
            None => {}
            Some(Ok(d)) => panic!("{ops:?} taken as {d:?}"),
            Some(Err((i, reason))) => {
                let e = ApiError::Op {
                    index: i,
                    op: op_label(ops[i].op.as_ref()),
                    reason,
                }
                .to_string();
                assert_eq!(e, whole, "{ops:?}");
            }
        }
    }
}

/// An admin policy within every list bound (1,000 rules, 1,000 excepts
/// each) whose compile is beyond what the compiler may spend: rules over
/// 0.0.0.0/0 whose holes interleave, all on one subject, so that two million
/// elementary intervals each carry a thousand rules in first-match order.
pub(crate) fn too_costly() -> api::ClusterPolicy {
    let rule = |j: u32| api::ClusterPolicyRule {
        name: String::new(),
        action: if j.is_multiple_of(2) { "Allow" } else { "Deny" }.into(),
        peers: vec![block(
            "0.0.0.0/0",
            &(0..1000u32)
                .map(|k| {
                    let h = k * 1000 + j;
                    format!("{}.{}.{}.0/24", 1 + (h >> 16), (h >> 8) & 0xff, h & 0xff)
                })
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )],
        ports: vec![tcp(j + 1, 0)],
    };
    api::ClusterPolicy {
        name: "costly".into(),
        tier: "Admin".into(),
        priority: 1,
        subject: vec!["10.1.0.2".into()],
        ingress: (0..1000u32).map(rule).collect(),
        egress: vec![],
    }
}

#[test]
fn a_set_too_costly_for_the_compiler_is_refused_whole() {
    let (fixed, state, _) = fixed_and_state();
    let ops = [op(K::AddClusterPolicy(too_costly()))];
    let e = match fixed.apply_ops(&state, &ops) {
        Ok(_) => panic!("a set beyond the compiler's limits was taken"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("units of compile work"), "{e}");
    assert!(e.contains("refused whole"), "{e}");
    assert!(e.len() < 400, "{e}");
}

#[test]
fn the_file_reads_every_policy_key_and_refuses_unknown_ones() {
    let text = format!(
        "{}\n{}",
        super::tests::DEPLOY,
        r#"
[[policy]]
name = "x/web"
subject = ["10.1.0.2"]
policy_types = ["Ingress", "Egress"]
[[policy.ingress]]
peers = [{ ip_block = { cidr = "10.0.0.0/8", except = ["10.9.0.0/16"] } }, { addresses = ["10.1.0.3"] }]
ports = [{ protocol = "UDP", port = 53, end_port = 54 }, { port_name = "http" }]
[[policy.egress]]
ports = [{ protocol = "ICMPv6", icmp_type = 128, icmp_code = 0 }]

[[cluster_policy]]
name = "admin-deny"
tier = "Admin"
priority = 1
subject = ["10.1.0.2"]
[[cluster_policy.ingress]]
name = "no-ssh"
action = "Deny"
ports = [{ port = 22 }]

[[policy_endpoint]]
name = "x/b"
addresses = ["10.1.0.3"]
named_ports = [{ name = "http", protocol = "TCP", port = 8080 }]
"#
    );
    let cfg = VswitchConfig::parse(&text, 2).unwrap();
    assert_eq!(
        cfg.policies.network[0].ingress[0].ports[1].port_name,
        "http"
    );
    assert_eq!(cfg.policies.cluster[0].ingress[0].ports[0].protocol, "TCP");
    assert_eq!(cfg.policies.endpoints[0].named_ports[0].port, 8080);
    // A state file of it reads back the same.
    let s = from_config(&cfg);
    let fixed = Fixed::from_config(&cfg, 2);
    assert_eq!(fixed.validate(&s).unwrap().state, s);
    for (bad, words) in [
        ("[[policy]]\nname = \"a\"\nsubject = []\nbogus = 1", "unknown field `bogus`"),
        (
            "[[policy]]\nname = \"a\"\nsubject = []\n[[policy.ingress]]\nports = [{ port = -1 }]",
            "port -1 is out of range",
        ),
        (
            "[[policy]]\nname = \"a\"\nsubject = []\n[[policy.ingress]]\nports = [{ port = \"http\" }]",
            "a named port goes in `port_name`",
        ),
        (
            "[[cluster_policy]]\nname = \"a\"\ntier = \"Admin\"\npriority = -3\nsubject = []",
            "priority -3 is out of range",
        ),
        (
            "[[policy_endpoint]]\nname = \"a\"\naddresses = [\"10.1.0.9\"]\nnamed_ports = [{ name = \"h\", port = 65536 }]",
            "port 65536 is out of range",
        ),
        (
            "[[policy]]\nname = \"a b\"\nsubject = []",
            "policy #0: name",
        ),
    ] {
        let e = VswitchConfig::parse(&format!("{}\n{bad}", super::tests::DEPLOY), 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains(words), "{e}\nwants: {words}");
    }
}

#[test]
fn a_network_keeps_its_policy_on_change_option() {
    let (fixed, state, _) = fixed_and_state();
    let mut n = super::tests::network("green", 4242, "10.77.0.0/24", "10.77.0.1");
    n.policy_on_change = "keep".into();
    let v = fixed
        .apply_ops(&state, &[op(K::AddNetwork(n.clone()))])
        .unwrap();
    let got = v
        .config
        .networks
        .iter()
        .find(|x| x.name == "green")
        .unwrap();
    assert_eq!(
        got.policy_on_change,
        dataplane::pipeline::policy::OnChange::Keep
    );
    assert!(v
        .state
        .networks
        .iter()
        .any(|x| x.policy_on_change == "keep"));
    n.policy_on_change = "sometimes".into();
    let e = fixed
        .apply_ops(&state, &[op(K::AddNetwork(n))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("policy_on_change: \"sometimes\" is not one of"),
        "{e}"
    );
}
