//! Data-driven scenarios in the style of the upstream Kubernetes
//! network-policy e2e suite and network-policy-api's ClusterNetworkPolicy
//! conformance shapes (issue #26): namespaces x, y, z (10.0.1.0/24,
//! 10.0.2.0/24, 10.0.3.0/24) with pods a, b, c (.1, .2, .3), ports 80 and
//! 81, TCP, UDP and SCTP. Each scenario is a policy set and the expected
//! reachability, written by hand as a predicate over (from, to, port,
//! protocol); the full matrix (9 × 8 pod pairs × 2 ports × 3 protocols =
//! 432 cells) is checked through the compiled classifier: a connection is
//! allowed when egress at its source and ingress at its destination both
//! allow, as the policy stage requires.
//!
//! The connection-level cases (replies, a policy update changing an open
//! connection's fate, a Service VIP checked against its backend) are the
//! stage's: `dataplane/src/pipeline/policy/stage_tests.rs` and
//! `tests/tests/policy_enforce.rs`. The update scenario here checks the
//! matrix before and after.

use std::net::IpAddr;

use dataplane::pipeline::policy::model::{
    ClusterAction, ClusterPolicy, ClusterRule, EndpointPorts, NamedPort, NetworkPolicy,
    NetworkRule, Peer, PortMatch, PortRef, Protocol,
};
use dataplane::pipeline::policy::{Action, CompiledPolicy, Connection, Direction, PolicySet};

const NS: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

/// A pod: namespace index, pod index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pod(usize, usize);

impl Pod {
    fn ip(self) -> String {
        format!("10.0.{}.{}", self.0 + 1, self.1 + 1)
    }

    fn name(self) -> String {
        format!("{}/{}", NS[self.0], PODS[self.1])
    }

    fn all() -> Vec<Pod> {
        (0..3)
            .flat_map(|n| (0..3).map(move |p| Pod(n, p)))
            .collect()
    }
}

fn pod(s: &str) -> Pod {
    let (n, p) = s.split_once('/').unwrap();
    Pod(
        NS.iter().position(|x| *x == n).unwrap(),
        PODS.iter().position(|x| *x == p).unwrap(),
    )
}

/// The addresses of `pods` ("x/a", or a namespace "y" for its three pods).
fn ips(sel: &[&str]) -> Vec<String> {
    sel.iter()
        .flat_map(|s| {
            if s.contains('/') {
                vec![pod(s).ip()]
            } else {
                let n = NS.iter().position(|x| x == s).unwrap();
                (0..3).map(|p| Pod(n, p).ip()).collect()
            }
        })
        .collect()
}

fn from(sel: &[&str]) -> Peer {
    Peer::Addresses(ips(sel))
}

fn block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock {
        cidr: cidr.into(),
        except: except.iter().map(|s| s.to_string()).collect(),
    }
}

fn port(proto: Protocol, p: u16) -> PortMatch {
    PortMatch {
        protocol: proto,
        port: Some(PortRef::Number(p)),
        ..Default::default()
    }
}

fn rule(peers: Vec<Peer>, ports: Vec<PortMatch>) -> NetworkRule {
    NetworkRule { peers, ports }
}

fn ingress(name: &str, subject: &[&str], rules: Vec<NetworkRule>) -> NetworkPolicy {
    NetworkPolicy {
        name: name.into(),
        subject: ips(subject),
        policy_types: vec![Direction::Ingress],
        ingress: rules,
        egress: vec![],
    }
}

fn egress(name: &str, subject: &[&str], rules: Vec<NetworkRule>) -> NetworkPolicy {
    NetworkPolicy {
        name: name.into(),
        subject: ips(subject),
        policy_types: vec![Direction::Egress],
        ingress: vec![],
        egress: rules,
    }
}

fn crule(action: ClusterAction, peers: Vec<Peer>, ports: Vec<PortMatch>) -> ClusterRule {
    ClusterRule {
        name: format!("{action:?}").to_lowercase(),
        action,
        peers,
        ports,
    }
}

fn cluster(name: &str, priority: u32, subject: &[&str], ing: Vec<ClusterRule>) -> ClusterPolicy {
    ClusterPolicy {
        name: name.into(),
        priority,
        subject: ips(subject),
        ingress: ing,
        egress: vec![],
    }
}

fn cluster_egress(
    name: &str,
    priority: u32,
    subject: &[&str],
    eg: Vec<ClusterRule>,
) -> ClusterPolicy {
    ClusterPolicy {
        name: name.into(),
        priority,
        subject: ips(subject),
        ingress: vec![],
        egress: eg,
    }
}

/// A cell of the matrix.
#[derive(Clone, Copy, Debug)]
struct Cell {
    from: Pod,
    to: Pod,
    port: u16,
    proto: Protocol,
}

impl Cell {
    fn src_ns(&self, n: &str) -> bool {
        NS[self.from.0] == n
    }
    fn dst_is(&self, p: &str) -> bool {
        self.to == pod(p)
    }
    fn src_is(&self, p: &str) -> bool {
        self.from == pod(p)
    }
    fn dst_ns(&self, n: &str) -> bool {
        NS[self.to.0] == n
    }
}

struct Scenario {
    name: &'static str,
    set: PolicySet,
    reach: Box<dyn Fn(&Cell) -> bool>,
}

fn scenario(
    name: &'static str,
    set: PolicySet,
    reach: impl Fn(&Cell) -> bool + 'static,
) -> Scenario {
    Scenario {
        name,
        set,
        reach: Box::new(reach),
    }
}

fn np(list: Vec<NetworkPolicy>) -> PolicySet {
    PolicySet {
        network: list,
        ..Default::default()
    }
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const SCTP: Protocol = Protocol::Sctp;
use ClusterAction::{Allow, Deny, Pass};

fn scenarios() -> Vec<Scenario> {
    vec![
        scenario("no policy: everyone reaches everyone", np(vec![]), |_| true),
        scenario(
            "deny-all ingress in x",
            np(vec![ingress("x/deny-all", &["x"], vec![])]),
            |c| !c.dst_ns("x"),
        ),
        scenario(
            "deny-all egress in x",
            np(vec![egress("x/deny-all-egress", &["x"], vec![])]),
            |c| !c.src_ns("x"),
        ),
        scenario(
            "allow from namespace y to x/a",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(vec![from(&["y"])], vec![])],
            )]),
            |c| !c.dst_is("x/a") || c.src_ns("y"),
        ),
        scenario(
            "allow from pod y/b to x/a",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(vec![from(&["y/b"])], vec![])],
            )]),
            |c| !c.dst_is("x/a") || c.src_is("y/b"),
        ),
        scenario(
            "allow from namespace y or pod z/c (peers combine by union)",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(vec![from(&["y"]), from(&["z/c"])], vec![])],
            )]),
            |c| !c.dst_is("x/a") || c.src_ns("y") || c.src_is("z/c"),
        ),
        scenario(
            "allow every peer on TCP 80 only",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(vec![], vec![port(TCP, 80)])],
            )]),
            |c| !c.dst_is("x/a") || (c.port == 80 && c.proto == TCP),
        ),
        scenario(
            "endPort: TCP 80-81",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(
                    vec![],
                    vec![PortMatch {
                        end_port: Some(81),
                        ..port(TCP, 80)
                    }],
                )],
            )]),
            |c| !c.dst_is("x/a") || c.proto == TCP,
        ),
        scenario(
            "named port resolved on the destination",
            PolicySet {
                network: vec![ingress(
                    "x/a",
                    &["x/a", "x/b"],
                    vec![rule(
                        vec![],
                        vec![PortMatch {
                            protocol: TCP,
                            port: Some(PortRef::Name("serve".into())),
                            ..Default::default()
                        }],
                    )],
                )],
                endpoints: vec![
                    EndpointPorts {
                        addresses: vec![pod("x/a").ip()],
                        named_ports: vec![NamedPort {
                            name: "serve".into(),
                            protocol: TCP,
                            port: 81,
                        }],
                    },
                    EndpointPorts {
                        addresses: vec![pod("x/b").ip()],
                        named_ports: vec![NamedPort {
                            name: "serve".into(),
                            protocol: TCP,
                            port: 80,
                        }],
                    },
                ],
                ..Default::default()
            },
            |c| match (c.dst_is("x/a"), c.dst_is("x/b")) {
                (true, _) => c.proto == TCP && c.port == 81,
                (_, true) => c.proto == TCP && c.port == 80,
                _ => true,
            },
        ),
        scenario(
            "an unknown named port matches nothing",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(
                    vec![],
                    vec![PortMatch {
                        protocol: TCP,
                        port: Some(PortRef::Name("missing".into())),
                        ..Default::default()
                    }],
                )],
            )]),
            |c| !c.dst_is("x/a"),
        ),
        scenario(
            "ipBlock with except: 10.0.0.0/16 but y",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(vec![block("10.0.0.0/16", &["10.0.2.0/24"])], vec![])],
            )]),
            |c| !c.dst_is("x/a") || !c.src_ns("y"),
        ),
        scenario(
            "ipBlock with two excepts carving single pods",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(
                    vec![block("10.0.0.0/8", &["10.0.2.2/32", "10.0.3.3/32"])],
                    vec![],
                )],
            )]),
            |c| !c.dst_is("x/a") || !(c.src_is("y/b") || c.src_is("z/c")),
        ),
        scenario(
            "egress deny from x/a",
            np(vec![egress("x/a-out", &["x/a"], vec![])]),
            |c| !c.src_is("x/a"),
        ),
        scenario(
            "egress to y on port 80 only",
            np(vec![egress(
                "x/a-out",
                &["x/a"],
                vec![rule(vec![from(&["y"])], vec![port(TCP, 80), port(UDP, 80)])],
            )]),
            |c| !c.src_is("x/a") || (c.dst_ns("y") && c.port == 80 && c.proto != SCTP),
        ),
        scenario(
            "egress to an ipBlock with except",
            np(vec![egress(
                "x/a-out",
                &["x/a"],
                vec![rule(vec![block("10.0.0.0/8", &["10.0.3.0/24"])], vec![])],
            )]),
            |c| !c.src_is("x/a") || !c.dst_ns("z"),
        ),
        scenario(
            "ingress and egress combined on x/a",
            np(vec![NetworkPolicy {
                name: "x/a".into(),
                subject: ips(&["x/a"]),
                policy_types: vec![Direction::Ingress, Direction::Egress],
                ingress: vec![rule(vec![from(&["x/b"])], vec![])],
                egress: vec![rule(vec![from(&["x/c"])], vec![])],
            }]),
            |c| (!c.dst_is("x/a") || c.src_is("x/b")) && (!c.src_is("x/a") || c.dst_is("x/c")),
        ),
        scenario(
            "two policies on one pod combine by union",
            np(vec![
                ingress(
                    "x/a-80",
                    &["x/a"],
                    vec![rule(vec![from(&["x/b"])], vec![port(TCP, 80)])],
                ),
                ingress(
                    "x/a-81",
                    &["x/a"],
                    vec![rule(vec![from(&["y"])], vec![port(UDP, 81)])],
                ),
            ]),
            |c| {
                !c.dst_is("x/a")
                    || (c.src_is("x/b") && c.port == 80 && c.proto == TCP)
                    || (c.src_ns("y") && c.port == 81 && c.proto == UDP)
            },
        ),
        scenario(
            "deny-all ingress everywhere",
            np(vec![ingress("all/deny", &["x", "y", "z"], vec![])]),
            |_| false,
        ),
        scenario(
            "deny-all ingress, then allow within each namespace",
            np(vec![
                ingress("all/deny", &["x", "y", "z"], vec![]),
                ingress("x/same", &["x"], vec![rule(vec![from(&["x"])], vec![])]),
                ingress("y/same", &["y"], vec![rule(vec![from(&["y"])], vec![])]),
                ingress("z/same", &["z"], vec![rule(vec![from(&["z"])], vec![])]),
            ]),
            |c| c.from.0 == c.to.0,
        ),
        scenario(
            "SCTP 80 only",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(vec![], vec![port(SCTP, 80)])],
            )]),
            |c| !c.dst_is("x/a") || (c.proto == SCTP && c.port == 80),
        ),
        scenario(
            "UDP 81 from z only",
            np(vec![ingress(
                "x/a",
                &["x/a"],
                vec![rule(vec![from(&["z"])], vec![port(UDP, 81)])],
            )]),
            |c| !c.dst_is("x/a") || (c.src_ns("z") && c.proto == UDP && c.port == 81),
        ),
        scenario(
            "admin Deny over a NetworkPolicy Allow",
            PolicySet {
                admin: vec![cluster(
                    "deny-y",
                    10,
                    &["x/a"],
                    vec![crule(Deny, vec![from(&["y"])], vec![])],
                )],
                network: vec![ingress("x/a", &["x/a"], vec![rule(vec![], vec![])])],
                ..Default::default()
            },
            |c| !c.dst_is("x/a") || !c.src_ns("y"),
        ),
        scenario(
            "admin Allow over a NetworkPolicy that isolates",
            PolicySet {
                admin: vec![cluster(
                    "allow-z",
                    10,
                    &["x/a"],
                    vec![crule(Allow, vec![from(&["z"])], vec![])],
                )],
                network: vec![ingress("x/a", &["x/a"], vec![])],
                ..Default::default()
            },
            |c| !c.dst_is("x/a") || c.src_ns("z"),
        ),
        scenario(
            "admin Pass delegates to the NetworkPolicy tier",
            PolicySet {
                admin: vec![cluster(
                    "pass-y-deny-rest",
                    10,
                    &["x/a"],
                    vec![
                        crule(Pass, vec![from(&["y"])], vec![]),
                        crule(Deny, vec![], vec![]),
                    ],
                )],
                network: vec![ingress(
                    "x/a",
                    &["x/a"],
                    vec![rule(vec![from(&["y/a"])], vec![])],
                )],
                ..Default::default()
            },
            |c| !c.dst_is("x/a") || c.src_is("y/a"),
        ),
        scenario(
            "admin priorities: lower first",
            PolicySet {
                admin: vec![
                    cluster(
                        "p20-deny-y",
                        20,
                        &["x/a"],
                        vec![crule(Deny, vec![from(&["y"])], vec![])],
                    ),
                    cluster(
                        "p10-allow-y",
                        10,
                        &["x/a"],
                        vec![crule(Allow, vec![from(&["y"])], vec![])],
                    ),
                    cluster(
                        "p5-deny-yb",
                        5,
                        &["x/a"],
                        vec![crule(Deny, vec![from(&["y/b"])], vec![])],
                    ),
                ],
                network: vec![ingress("x/a", &["x/a"], vec![])],
                ..Default::default()
            },
            |c| !c.dst_is("x/a") || (c.src_ns("y") && !c.src_is("y/b")),
        ),
        scenario(
            "admin Deny on one port, the rest to the NetworkPolicy",
            PolicySet {
                admin: vec![cluster(
                    "no-81",
                    1,
                    &["x"],
                    vec![crule(
                        Deny,
                        vec![],
                        vec![port(TCP, 81), port(UDP, 81), port(SCTP, 81)],
                    )],
                )],
                ..Default::default()
            },
            |c| !c.dst_ns("x") || c.port == 80,
        ),
        scenario(
            "baseline default deny",
            PolicySet {
                baseline: vec![cluster(
                    "default-deny",
                    100,
                    &["x"],
                    vec![crule(Deny, vec![], vec![])],
                )],
                ..Default::default()
            },
            |c| !c.dst_ns("x"),
        ),
        scenario(
            "a NetworkPolicy overrides the baseline under it",
            PolicySet {
                baseline: vec![cluster(
                    "default-deny",
                    100,
                    &["x"],
                    vec![crule(Deny, vec![], vec![])],
                )],
                network: vec![ingress(
                    "x/a",
                    &["x/a"],
                    vec![rule(vec![from(&["y"])], vec![])],
                )],
                ..Default::default()
            },
            |c| !c.dst_ns("x") || (c.dst_is("x/a") && c.src_ns("y")),
        ),
        scenario(
            "admin Pass reaches the baseline",
            PolicySet {
                admin: vec![cluster(
                    "pass-all",
                    1,
                    &["x/a"],
                    vec![crule(Pass, vec![], vec![])],
                )],
                baseline: vec![cluster(
                    "no-z",
                    1,
                    &["x/a"],
                    vec![crule(Deny, vec![from(&["z"])], vec![])],
                )],
                ..Default::default()
            },
            |c| !c.dst_is("x/a") || !c.src_ns("z"),
        ),
        scenario(
            "baseline Allow before its Deny, by priority",
            PolicySet {
                baseline: vec![
                    cluster("b2-deny", 2, &["x"], vec![crule(Deny, vec![], vec![])]),
                    cluster(
                        "b1-allow-x",
                        1,
                        &["x"],
                        vec![crule(Allow, vec![from(&["x"])], vec![])],
                    ),
                ],
                ..Default::default()
            },
            |c| !c.dst_ns("x") || c.src_ns("x"),
        ),
        scenario(
            "admin egress Deny to z",
            PolicySet {
                admin: vec![cluster_egress(
                    "x-not-z",
                    1,
                    &["x"],
                    vec![crule(Deny, vec![from(&["z"])], vec![])],
                )],
                ..Default::default()
            },
            |c| !(c.src_ns("x") && c.dst_ns("z")),
        ),
    ]
}

fn check(s: &Scenario) -> usize {
    let p = CompiledPolicy::compile(
        &s.set
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", s.name)),
    )
    .unwrap();
    let mut cells = 0;
    for from in Pod::all() {
        for to in Pod::all() {
            if from == to {
                continue;
            }
            for port in [80, 81] {
                for proto in [TCP, UDP, SCTP] {
                    let cell = Cell {
                        from,
                        to,
                        port,
                        proto,
                    };
                    let conn = Connection {
                        src: from.ip().parse::<IpAddr>().unwrap(),
                        dst: to.ip().parse::<IpAddr>().unwrap(),
                        protocol: proto.number(),
                        l4: port,
                    };
                    let (e, i) = p.classify_both(&conn);
                    let got = p.decision(e).action == Action::Allow
                        && p.decision(i).action == Action::Allow;
                    assert_eq!(
                        got,
                        (s.reach)(&cell),
                        "{}: {} -> {} {proto:?}/{port}: egress {:?}, ingress {:?}",
                        s.name,
                        from.name(),
                        to.name(),
                        p.decision(e),
                        p.decision(i)
                    );
                    cells += 1;
                }
            }
        }
    }
    cells
}

#[test]
fn the_reachability_matrix_of_every_scenario() {
    let all = scenarios();
    assert!(all.len() >= 25, "{} scenarios", all.len());
    let cells: usize = all.iter().map(check).sum();
    assert_eq!(cells, all.len() * 432);
}

/// A policy update: the matrix before and after one policy is replaced
/// (the open connections' side of it is the stage's test).
#[test]
fn a_policy_update_changes_the_matrix() {
    let before = scenario(
        "before: x/a admits y",
        np(vec![ingress(
            "x/a",
            &["x/a"],
            vec![rule(vec![from(&["y"])], vec![])],
        )]),
        |c| !c.dst_is("x/a") || c.src_ns("y"),
    );
    let after = scenario(
        "after: x/a admits z",
        np(vec![ingress(
            "x/a",
            &["x/a"],
            vec![rule(vec![from(&["z"])], vec![])],
        )]),
        |c| !c.dst_is("x/a") || c.src_ns("z"),
    );
    check(&before);
    check(&after);
}
