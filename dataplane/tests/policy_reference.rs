//! The policy classifier against a reference evaluator written here, straight
//! from the semantics (issue #26): loops over tiers, policies and rules on the
//! model as a controller wrote it, strings and all, sharing nothing with the
//! compiler but the model's types and the decision it must name.
//!
//! Random policy sets (overlapping CIDRs, excepts, ranges, named ports, Pass
//! rules, endpoints isolated by some policies and not others, both families)
//! and random connections: the compiled classifier and the reference agree on
//! the action and on the tier, policy and rule that decided, always. Then the
//! edge cases by hand, with the answer written down.

use std::net::IpAddr;

use dataplane::pipeline::policy::model::{
    ClusterAction, ClusterPolicy, ClusterRule, EndpointPorts, NamedPort, NetworkPolicy,
    NetworkRule, Peer, PortMatch, PortRef, Protocol,
};
use dataplane::pipeline::policy::{
    Action, CompileError, CompileLimits, CompiledPolicy, Connection, Decider, Decision, Direction,
    PolicySet, RuleRef, Tier,
};
use ipnet::IpNet;

// ---------------------------------------------------------------------------
// The reference evaluator.

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn in_set(list: &[String], a: IpAddr) -> bool {
    list.iter().any(|s| addr(s) == a)
}

fn peer_matches(peers: &[Peer], a: IpAddr) -> bool {
    if peers.is_empty() {
        return true;
    }
    peers.iter().any(|p| match p {
        Peer::Addresses(list) => in_set(list, a),
        Peer::IpBlock { cidr, except } => {
            let net: IpNet = cidr.parse().unwrap();
            net.contains(&a)
                && !except
                    .iter()
                    .any(|e| e.parse::<IpNet>().unwrap().contains(&a))
        }
    })
}

fn named_port(set: &PolicySet, dest: IpAddr, name: &str, proto: Protocol) -> Option<u16> {
    let ep = set.endpoints.iter().find(|e| in_set(&e.addresses, dest))?;
    let np = ep.named_ports.iter().find(|n| n.name == name)?;
    (np.protocol == proto).then_some(np.port)
}

fn port_matches(set: &PolicySet, ports: &[PortMatch], c: &Connection) -> bool {
    if ports.is_empty() {
        return true;
    }
    ports.iter().any(|p| {
        if p.protocol.number() != c.protocol {
            return false;
        }
        if !p.protocol.has_ports() {
            let (t, code) = ((c.l4 >> 8) as u8, c.l4 as u8);
            return p.icmp_type.is_none_or(|x| x == t) && p.icmp_code.is_none_or(|x| x == code);
        }
        match &p.port {
            None => true,
            Some(PortRef::Number(n)) => match p.end_port {
                None => c.l4 == *n,
                Some(e) => *n <= c.l4 && c.l4 <= e,
            },
            Some(PortRef::Name(name)) => named_port(set, c.dst, name, p.protocol) == Some(c.l4),
        }
    })
}

fn rules_of<'a, R>(
    dir: Direction,
    ingress: &'a [R],
    egress: &'a [R],
) -> impl Iterator<Item = (usize, &'a R)> {
    match dir {
        Direction::Ingress => ingress.iter().enumerate(),
        Direction::Egress => egress.iter().enumerate(),
    }
}

fn reference(set: &PolicySet, dir: Direction, c: &Connection) -> Decision {
    let (subject, peer) = match dir {
        Direction::Ingress => (c.dst, c.src),
        Direction::Egress => (c.src, c.dst),
    };
    let rref = |tier, policy: usize, rule: usize| RuleRef {
        tier,
        policy: policy as u32,
        rule: rule as u32,
    };
    // Admin: policies by priority, ties by name; the first matching rule.
    let mut admin: Vec<(usize, &ClusterPolicy)> = set
        .admin
        .iter()
        .enumerate()
        .filter(|(_, p)| in_set(&p.subject, subject))
        .collect();
    admin.sort_by(|a, b| (a.1.priority, &a.1.name).cmp(&(b.1.priority, &b.1.name)));
    let mut passed_by = None;
    'admin: for (i, p) in admin {
        for (j, r) in rules_of(dir, &p.ingress, &p.egress) {
            if peer_matches(&r.peers, peer) && port_matches(set, &r.ports, c) {
                let by = Decider::Rule(rref(Tier::Admin, i, j));
                match r.action {
                    ClusterAction::Allow => return decision(Action::Allow, by, None),
                    ClusterAction::Deny => return decision(Action::Deny, by, None),
                    ClusterAction::Pass => {
                        passed_by = Some(rref(Tier::Admin, i, j));
                        break 'admin;
                    }
                }
            }
        }
    }
    // NetworkPolicy: isolated if any policy for this direction selects it.
    let isolating: Vec<(usize, &NetworkPolicy)> = set
        .network
        .iter()
        .enumerate()
        .filter(|(_, p)| p.policy_types.contains(&dir) && in_set(&p.subject, subject))
        .collect();
    if !isolating.is_empty() {
        for (i, p) in isolating {
            for (j, r) in rules_of(dir, &p.ingress, &p.egress) {
                if peer_matches(&r.peers, peer) && port_matches(set, &r.ports, c) {
                    let by = Decider::Rule(rref(Tier::Network, i, j));
                    return decision(Action::Allow, by, passed_by);
                }
            }
        }
        return decision(Action::Deny, Decider::Isolated, passed_by);
    }
    // Baseline, as admin without Pass.
    let mut baseline: Vec<(usize, &ClusterPolicy)> = set
        .baseline
        .iter()
        .enumerate()
        .filter(|(_, p)| in_set(&p.subject, subject))
        .collect();
    baseline.sort_by(|a, b| (a.1.priority, &a.1.name).cmp(&(b.1.priority, &b.1.name)));
    for (i, p) in baseline {
        for (j, r) in rules_of(dir, &p.ingress, &p.egress) {
            if peer_matches(&r.peers, peer) && port_matches(set, &r.ports, c) {
                let by = Decider::Rule(rref(Tier::Baseline, i, j));
                let action = match r.action {
                    ClusterAction::Allow => Action::Allow,
                    _ => Action::Deny,
                };
                return decision(action, by, passed_by);
            }
        }
    }
    decision(Action::Allow, Decider::Default, passed_by)
}

fn decision(action: Action, by: Decider, passed_by: Option<RuleRef>) -> Decision {
    Decision {
        action,
        by,
        passed_by,
    }
}

// ---------------------------------------------------------------------------
// Random policy sets and connections.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, s: &'a [T]) -> &'a T {
        &s[self.below(s.len() as u64) as usize]
    }
}

/// Addresses live in 10.0.0.0/22 and fd00::/118, so random blocks overlap.
fn random_addr(rng: &mut Rng, v6: bool) -> IpAddr {
    let low = rng.below(1024) as u32;
    if v6 {
        IpAddr::V6((0xfd00u128 << 112 | u128::from(low)).into())
    } else {
        IpAddr::V4((0x0a00_0000 | low).into())
    }
}

fn random_block(rng: &mut Rng, v6: bool, min_len: u8) -> IpNet {
    let (bits, base) = if v6 { (128u8, 118u8) } else { (32, 22) };
    // Mostly inside the small universe; sometimes wider than it.
    let len = if rng.chance(10) {
        *rng.pick(&[0, 8, base - 2])
    } else {
        base + rng.below(u64::from(bits - base) + 1) as u8
    }
    .max(min_len);
    IpNet::new(random_addr(rng, v6), len).unwrap().trunc()
}

fn random_peer(rng: &mut Rng, endpoints: &[IpAddr]) -> Peer {
    let v6 = rng.chance(30);
    if rng.chance(40) {
        let n = 1 + rng.below(4);
        let list = (0..n)
            .map(|_| {
                if rng.chance(60) {
                    rng.pick(endpoints).to_string()
                } else {
                    random_addr(rng, v6).to_string()
                }
            })
            .collect();
        return Peer::Addresses(list);
    }
    let block = random_block(rng, v6, 0);
    let mut except = Vec::new();
    if rng.chance(50) {
        for _ in 0..1 + rng.below(3) {
            let max = if v6 { 128 } else { 32 };
            let len = block.prefix_len() + rng.below(u64::from(max - block.prefix_len()) + 1) as u8;
            // A random sub-block of `block`.
            let a = match block {
                IpNet::V4(n) => {
                    let host = (rng.next() as u32) & !u32::from(n.netmask());
                    IpAddr::V4((n.network().to_bits() | host).into())
                }
                IpNet::V6(n) => {
                    let host = (u128::from(rng.next()) << 64 | u128::from(rng.next()))
                        & !u128::from(n.netmask());
                    IpAddr::V6((n.network().to_bits() | host).into())
                }
            };
            // Bias the carve towards the small universe, where traffic is.
            let a = if rng.chance(70) && block.contains(&random_addr(rng, v6)) {
                random_addr(rng, v6)
            } else {
                a
            };
            let e = IpNet::new(a, len).unwrap().trunc();
            if block.contains(&e) {
                except.push(e.to_string());
            }
        }
    }
    Peer::IpBlock {
        cidr: block.to_string(),
        except,
    }
}

const NAMES: [&str; 4] = ["http", "dns", "metrics", "nosuch"];

fn random_port(rng: &mut Rng) -> PortMatch {
    let protocol = *rng.pick(&[
        Protocol::Tcp,
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Sctp,
        Protocol::Icmp,
        Protocol::Icmpv6,
    ]);
    let mut p = PortMatch {
        protocol,
        ..Default::default()
    };
    if protocol.has_ports() {
        match rng.below(4) {
            0 => {}
            1 => p.port = Some(PortRef::Number(78 + rng.below(7) as u16)),
            2 => {
                let a = 78 + rng.below(7) as u16;
                p.port = Some(PortRef::Number(a));
                p.end_port = Some(a + rng.below(4) as u16);
            }
            _ => p.port = Some(PortRef::Name(rng.pick(&NAMES).to_string())),
        }
    } else if rng.chance(70) {
        p.icmp_type = Some(*rng.pick(&[0, 3, 8, 128]));
        if rng.chance(40) {
            p.icmp_code = Some(rng.below(2) as u8);
        }
    }
    p
}

fn random_peers(rng: &mut Rng, endpoints: &[IpAddr]) -> Vec<Peer> {
    if rng.chance(15) {
        return Vec::new();
    }
    (0..1 + rng.below(3))
        .map(|_| random_peer(rng, endpoints))
        .collect()
}

fn random_ports(rng: &mut Rng) -> Vec<PortMatch> {
    if rng.chance(30) {
        return Vec::new();
    }
    (0..1 + rng.below(3)).map(|_| random_port(rng)).collect()
}

fn random_subject(rng: &mut Rng, endpoints: &[IpAddr]) -> Vec<String> {
    (0..1 + rng.below(endpoints.len() as u64))
        .map(|_| rng.pick(endpoints).to_string())
        .collect()
}

fn random_cluster(rng: &mut Rng, endpoints: &[IpAddr], name: String, pass: bool) -> ClusterPolicy {
    let actions: &[ClusterAction] = if pass {
        &[
            ClusterAction::Allow,
            ClusterAction::Deny,
            ClusterAction::Pass,
        ]
    } else {
        &[ClusterAction::Allow, ClusterAction::Deny]
    };
    let rules = |rng: &mut Rng| -> Vec<ClusterRule> {
        (0..rng.below(4))
            .map(|k| ClusterRule {
                name: format!("r{k}"),
                action: *rng.pick(actions),
                peers: random_peers(rng, endpoints),
                ports: random_ports(rng),
            })
            .collect()
    };
    ClusterPolicy {
        name,
        priority: rng.below(4) as u32,
        subject: random_subject(rng, endpoints),
        ingress: rules(rng),
        egress: rules(rng),
    }
}

fn random_set(rng: &mut Rng) -> (PolicySet, Vec<IpAddr>) {
    let n = 3 + rng.below(8) as usize;
    let mut endpoints: Vec<IpAddr> = Vec::new();
    while endpoints.len() < n {
        let v6 = rng.chance(30);
        let a = random_addr(rng, v6);
        if !endpoints.contains(&a) {
            endpoints.push(a);
        }
    }
    let mut set = PolicySet::default();
    for (k, a) in endpoints.iter().enumerate() {
        if rng.chance(70) {
            let mut named_ports = Vec::new();
            for name in &NAMES[..3] {
                if rng.chance(60) {
                    named_ports.push(NamedPort {
                        name: name.to_string(),
                        protocol: *rng.pick(&[Protocol::Tcp, Protocol::Udp, Protocol::Sctp]),
                        port: 78 + ((k as u64 + rng.below(7)) % 7) as u16,
                    });
                }
            }
            set.endpoints.push(EndpointPorts {
                addresses: vec![a.to_string()],
                named_ports,
            });
        }
    }
    for i in 0..rng.below(5) {
        let p = random_cluster(rng, &endpoints, format!("admin-{}", (i * 7) % 5), true);
        if !set.admin.iter().any(|q| q.name == p.name) {
            set.admin.push(p);
        }
    }
    for i in 0..rng.below(5) {
        let mut types = Vec::new();
        if rng.chance(70) {
            types.push(Direction::Ingress);
        }
        if types.is_empty() || rng.chance(50) {
            types.push(Direction::Egress);
        }
        let rules = |rng: &mut Rng, d: Direction| -> Vec<NetworkRule> {
            if !types.contains(&d) {
                return Vec::new();
            }
            (0..rng.below(4))
                .map(|_| NetworkRule {
                    peers: random_peers(rng, &endpoints),
                    ports: random_ports(rng),
                })
                .collect()
        };
        set.network.push(NetworkPolicy {
            name: format!("ns/np-{i}"),
            subject: random_subject(rng, &endpoints),
            ingress: rules(rng, Direction::Ingress),
            egress: rules(rng, Direction::Egress),
            policy_types: types.clone(),
        });
    }
    for i in 0..rng.below(4) {
        let p = random_cluster(rng, &endpoints, format!("baseline-{}", (i * 3) % 4), false);
        if !set.baseline.iter().any(|q| q.name == p.name) {
            set.baseline.push(p);
        }
    }
    (set, endpoints)
}

fn random_connection(rng: &mut Rng, endpoints: &[IpAddr]) -> Connection {
    let a = *rng.pick(endpoints);
    let v6 = a.is_ipv6();
    let other = |rng: &mut Rng| {
        let b = *rng.pick(endpoints);
        if b.is_ipv6() == v6 && rng.chance(70) {
            b
        } else {
            random_addr(rng, v6)
        }
    };
    let (src, dst) = if rng.chance(50) {
        (a, other(rng))
    } else {
        (other(rng), a)
    };
    let port = if rng.chance(80) {
        78 + rng.below(8) as u16
    } else {
        rng.next() as u16
    };
    match rng.below(6) {
        0 | 1 => Connection::tcp(src, dst, port),
        2 => Connection::udp(src, dst, port),
        3 => Connection::sctp(src, dst, port),
        4 => Connection::icmp(src, dst, *rng.pick(&[0, 3, 8, 11, 128]), rng.below(3) as u8),
        _ => Connection {
            src,
            dst,
            protocol: 47,
            l4: port,
        },
    }
}

#[test]
fn the_classifier_agrees_with_the_reference_on_random_policies() {
    let mut rng = Rng(0x26_2026);
    let mut checked = 0u64;
    let mut denied = 0u64;
    let mut by_tier = [0u64; 5];
    let mut passed = 0u64;
    for case in 0..3000 {
        let (set, endpoints) = random_set(&mut rng);
        let valid = set
            .validate()
            .unwrap_or_else(|e| panic!("case {case}: generated an invalid set: {e}"));
        let compiled = CompiledPolicy::compile(&valid).unwrap();
        for _ in 0..40 {
            let c = random_connection(&mut rng, &endpoints);
            for dir in Direction::ALL {
                let want = reference(&set, dir, &c);
                let got = *compiled.decision(compiled.classify(dir, &c));
                assert_eq!(
                    got,
                    want,
                    "case {case}: {dir:?} {c:?}\nset: {}",
                    serde_json::to_string(&set).unwrap()
                );
                checked += 1;
                denied += u64::from(got.action == Action::Deny);
                passed += u64::from(got.passed_by.is_some());
                by_tier[match got.by {
                    Decider::Rule(r) => r.tier as usize,
                    Decider::Isolated => 3,
                    Decider::Default => 4,
                }] += 1;
            }
        }
    }
    // The generator reaches every outcome, or the agreement means little.
    assert!(
        denied > checked / 10 && denied < checked * 9 / 10,
        "{denied} of {checked}"
    );
    assert!(by_tier.iter().all(|&n| n > checked / 100), "{by_tier:?}");
    assert!(passed > checked / 100, "{passed} of {checked} passed down");
    eprintln!("{checked} checks: {denied} denied, {passed} passed down, by tier {by_tier:?}");
}

// ---------------------------------------------------------------------------
// Edge cases by hand.

fn compile(set: &PolicySet) -> CompiledPolicy {
    CompiledPolicy::compile(&set.validate().unwrap()).unwrap()
}

fn check(p: &CompiledPolicy, set: &PolicySet, dir: Direction, c: Connection) -> Decision {
    let got = *p.decision(p.classify(dir, &c));
    assert_eq!(got, reference(set, dir, &c), "{dir:?} {c:?}");
    got
}

fn np(
    name: &str,
    subject: &[&str],
    types: &[Direction],
    ingress: Vec<NetworkRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        name: name.into(),
        subject: subject.iter().map(|s| s.to_string()).collect(),
        policy_types: types.to_vec(),
        ingress,
        egress: Vec::new(),
    }
}

fn from(peers: &[Peer], ports: Vec<PortMatch>) -> NetworkRule {
    NetworkRule {
        peers: peers.to_vec(),
        ports,
    }
}

fn block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock {
        cidr: cidr.into(),
        except: except.iter().map(|s| s.to_string()).collect(),
    }
}

fn tcp(port: u16, end: Option<u16>) -> PortMatch {
    PortMatch {
        port: Some(PortRef::Number(port)),
        end_port: end,
        ..Default::default()
    }
}

fn crule(action: ClusterAction, peers: &[Peer]) -> ClusterRule {
    ClusterRule {
        name: format!("{action:?}").to_lowercase(),
        action,
        peers: peers.to_vec(),
        ports: Vec::new(),
    }
}

fn cnp(name: &str, priority: u32, subject: &[&str], ingress: Vec<ClusterRule>) -> ClusterPolicy {
    ClusterPolicy {
        name: name.into(),
        priority,
        subject: subject.iter().map(|s| s.to_string()).collect(),
        ingress,
        egress: Vec::new(),
    }
}

const POD: &str = "10.0.0.10";
const X: &str = "10.0.1.1";
const Y: &str = "10.0.2.1";

use Direction::{Egress, Ingress};

#[test]
fn an_endpoint_selected_by_a_policy_with_no_rules_is_isolated() {
    let set = PolicySet {
        network: vec![np("x/deny-all", &[POD], &[Ingress], vec![])],
        ..Default::default()
    };
    let p = compile(&set);
    let d = check(&p, &set, Ingress, Connection::tcp(addr(X), addr(POD), 80));
    assert_eq!((d.action, d.by), (Action::Deny, Decider::Isolated));
    // Only ingress is isolated; egress and other endpoints are untouched.
    let d = check(&p, &set, Egress, Connection::tcp(addr(POD), addr(X), 80));
    assert_eq!((d.action, d.by), (Action::Allow, Decider::Default));
    let d = check(&p, &set, Ingress, Connection::tcp(addr(POD), addr(X), 80));
    assert_eq!(d.by, Decider::Default);
}

#[test]
fn pass_skips_the_rest_of_the_admin_tier() {
    let set = PolicySet {
        admin: vec![
            cnp(
                "deny-all",
                20,
                &[POD],
                vec![crule(ClusterAction::Deny, &[])],
            ),
            cnp(
                "pass-x",
                10,
                &[POD],
                vec![crule(ClusterAction::Pass, &[block("10.0.1.0/24", &[])])],
            ),
        ],
        network: vec![np(
            "x/allow-x",
            &[POD],
            &[Ingress],
            vec![from(&[Peer::Addresses(vec![X.into()])], vec![])],
        )],
        ..Default::default()
    };
    let p = compile(&set);
    let pass = RuleRef {
        tier: Tier::Admin,
        policy: 1,
        rule: 0,
    };
    let d = check(&p, &set, Ingress, Connection::tcp(addr(X), addr(POD), 80));
    assert_eq!(d.action, Action::Allow);
    assert_eq!(d.passed_by, Some(pass));
    assert_eq!(
        d.by,
        Decider::Rule(RuleRef {
            tier: Tier::Network,
            policy: 0,
            rule: 0
        })
    );
    assert_eq!(p.names(Ingress, pass), Some(("pass-x", "pass")));
    // Passed, but the NetworkPolicy does not allow it: isolation denies.
    let d = check(
        &p,
        &set,
        Ingress,
        Connection::tcp(addr("10.0.1.2"), addr(POD), 80),
    );
    assert_eq!(
        (d.action, d.by, d.passed_by),
        (Action::Deny, Decider::Isolated, Some(pass))
    );
    // Not passed: the lower-priority admin Deny decides over the NetworkPolicy.
    let d = check(&p, &set, Ingress, Connection::tcp(addr(Y), addr(POD), 80));
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.by,
        Decider::Rule(RuleRef {
            tier: Tier::Admin,
            policy: 0,
            rule: 0
        })
    );
}

#[test]
fn admin_priority_lower_first_and_admin_deny_beats_network_allow() {
    let set = PolicySet {
        admin: vec![
            cnp("deny", 10, &[POD], vec![crule(ClusterAction::Deny, &[])]),
            cnp(
                "allow-x",
                5,
                &[POD],
                vec![crule(ClusterAction::Allow, &[block("10.0.1.1/32", &[])])],
            ),
        ],
        network: vec![np(
            "x/allow-all",
            &[POD],
            &[Ingress],
            vec![from(&[], vec![])],
        )],
        ..Default::default()
    };
    let p = compile(&set);
    let d = check(&p, &set, Ingress, Connection::tcp(addr(X), addr(POD), 80));
    assert_eq!(
        (d.action, d.by),
        (
            Action::Allow,
            Decider::Rule(RuleRef {
                tier: Tier::Admin,
                policy: 1,
                rule: 0
            })
        )
    );
    let d = check(&p, &set, Ingress, Connection::tcp(addr(Y), addr(POD), 80));
    assert_eq!(d.action, Action::Deny);
}

#[test]
fn a_network_policy_allow_overrides_a_baseline_deny() {
    let set = PolicySet {
        network: vec![np(
            "x/allow-x",
            &[POD],
            &[Ingress],
            vec![from(&[Peer::Addresses(vec![X.into()])], vec![])],
        )],
        baseline: vec![cnp(
            "default-deny",
            0,
            &[POD, "10.0.0.11"],
            vec![crule(ClusterAction::Deny, &[])],
        )],
        ..Default::default()
    };
    let p = compile(&set);
    let d = check(&p, &set, Ingress, Connection::tcp(addr(X), addr(POD), 80));
    assert_eq!(d.action, Action::Allow);
    // Isolated by the NetworkPolicy: denied there, the baseline is not consulted.
    let d = check(&p, &set, Ingress, Connection::tcp(addr(Y), addr(POD), 80));
    assert_eq!((d.action, d.by), (Action::Deny, Decider::Isolated));
    // Not selected by any NetworkPolicy: the baseline denies.
    let d = check(
        &p,
        &set,
        Ingress,
        Connection::tcp(addr(X), addr("10.0.0.11"), 80),
    );
    assert_eq!(
        d.by,
        Decider::Rule(RuleRef {
            tier: Tier::Baseline,
            policy: 0,
            rule: 0
        })
    );
    assert_eq!(d.action, Action::Deny);
}

#[test]
fn except_carves_a_block() {
    let set = PolicySet {
        network: vec![np(
            "x/ipblock",
            &[POD],
            &[Ingress],
            vec![from(
                &[block("10.0.0.0/16", &["10.0.1.0/24", "10.0.1.128/25"])],
                vec![],
            )],
        )],
        ..Default::default()
    };
    let p = compile(&set);
    for (src, action) in [
        ("10.0.0.255", Action::Allow),
        ("10.0.1.0", Action::Deny),
        ("10.0.1.200", Action::Deny),
        ("10.0.1.255", Action::Deny),
        ("10.0.2.0", Action::Allow),
        ("10.0.255.255", Action::Allow),
        ("10.1.0.0", Action::Deny),
        ("9.255.255.255", Action::Deny),
    ] {
        let d = check(&p, &set, Ingress, Connection::tcp(addr(src), addr(POD), 80));
        assert_eq!(d.action, action, "{src}");
    }
}

#[test]
fn end_port_ranges_are_inclusive_and_per_protocol() {
    let set = PolicySet {
        network: vec![np(
            "x/range",
            &[POD],
            &[Ingress],
            vec![from(&[], vec![tcp(8000, Some(8080)), tcp(81, None)])],
        )],
        ..Default::default()
    };
    let p = compile(&set);
    for (port, action) in [
        (7999, Action::Deny),
        (8000, Action::Allow),
        (8050, Action::Allow),
        (8080, Action::Allow),
        (8081, Action::Deny),
        (81, Action::Allow),
        (80, Action::Deny),
        (65535, Action::Deny),
        (0, Action::Deny),
    ] {
        let d = check(&p, &set, Ingress, Connection::tcp(addr(X), addr(POD), port));
        assert_eq!(d.action, action, "{port}");
    }
    let d = check(&p, &set, Ingress, Connection::udp(addr(X), addr(POD), 8000));
    assert_eq!(d.action, Action::Deny);
    let d = check(&p, &set, Ingress, Connection::sctp(addr(X), addr(POD), 81));
    assert_eq!(d.action, Action::Deny);
}

#[test]
fn icmp_matches_by_type_and_code() {
    let icmp = |proto, t: Option<u8>, code: Option<u8>| PortMatch {
        protocol: proto,
        icmp_type: t,
        icmp_code: code,
        ..Default::default()
    };
    let set = PolicySet {
        network: vec![np(
            "x/icmp",
            &[POD, "fd00::10"],
            &[Ingress],
            vec![from(
                &[],
                vec![
                    icmp(Protocol::Icmp, Some(8), None),
                    icmp(Protocol::Icmp, Some(3), Some(4)),
                    icmp(Protocol::Icmpv6, Some(128), None),
                ],
            )],
        )],
        ..Default::default()
    };
    let p = compile(&set);
    let v4 = |t, c| Connection::icmp(addr(X), addr(POD), t, c);
    assert_eq!(check(&p, &set, Ingress, v4(8, 0)).action, Action::Allow);
    assert_eq!(check(&p, &set, Ingress, v4(13, 0)).action, Action::Deny);
    assert_eq!(check(&p, &set, Ingress, v4(3, 4)).action, Action::Allow);
    assert_eq!(check(&p, &set, Ingress, v4(3, 3)).action, Action::Deny);
    // ICMPv6 128 is allowed, ICMP 128 (IPv4) is not.
    assert_eq!(check(&p, &set, Ingress, v4(128, 0)).action, Action::Deny);
    let v6 = |t| Connection::icmp(addr("fd00::1"), addr("fd00::10"), t, 0);
    assert_eq!(check(&p, &set, Ingress, v6(128)).action, Action::Allow);
    assert_eq!(check(&p, &set, Ingress, v6(8)).action, Action::Deny);
    // A TCP connection is not ICMP.
    let d = check(
        &p,
        &set,
        Ingress,
        Connection::tcp(addr(X), addr(POD), 8 << 8),
    );
    assert_eq!(d.action, Action::Deny);
}

#[test]
fn ipv6_blocks_with_except() {
    let set = PolicySet {
        admin: vec![ClusterPolicy {
            egress: vec![ClusterRule {
                name: "no-metadata".into(),
                action: ClusterAction::Deny,
                peers: vec![block("fd00:0:0:1::/64", &["fd00:0:0:1::/120"])],
                ports: vec![],
            }],
            ..cnp("v6", 1, &["fd00::10"], vec![])
        }],
        ..Default::default()
    };
    let p = compile(&set);
    let to = |dst| Connection::tcp(addr("fd00::10"), addr(dst), 443);
    assert_eq!(
        check(&p, &set, Egress, to("fd00:0:0:1::1:0")).action,
        Action::Deny
    );
    assert_eq!(
        check(&p, &set, Egress, to("fd00:0:0:1::ff")).action,
        Action::Allow
    );
    assert_eq!(
        check(&p, &set, Egress, to("fd00:0:0:2::1")).action,
        Action::Allow
    );
    assert_eq!(
        check(&p, &set, Egress, to("fd00:0:0:1:ffff:ffff:ffff:ffff")).action,
        Action::Deny
    );
    // The IPv4 side of the same subject set is untouched.
    assert_eq!(
        check(&p, &set, Egress, Connection::tcp(addr(POD), addr(X), 1)).by,
        Decider::Default
    );
    // ::/0 reaches the top of the space.
    let set = PolicySet {
        network: vec![np(
            "x/v6",
            &["fd00::10"],
            &[Ingress],
            vec![from(&[block("::/0", &["::/1"])], vec![])],
        )],
        ..Default::default()
    };
    let p = compile(&set);
    let from6 = |src| Connection::tcp(addr(src), addr("fd00::10"), 443);
    assert_eq!(
        check(
            &p,
            &set,
            Ingress,
            from6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        )
        .action,
        Action::Allow
    );
    assert_eq!(check(&p, &set, Ingress, from6("::1")).action, Action::Deny);
}

#[test]
fn named_ports_resolve_on_the_destination() {
    let named = |name: &str| PortMatch {
        port: Some(PortRef::Name(name.into())),
        ..Default::default()
    };
    let ep = |a: &str, port| EndpointPorts {
        addresses: vec![a.into()],
        named_ports: vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port,
        }],
    };
    let set = PolicySet {
        network: vec![
            np(
                "x/web",
                &[POD, "10.0.0.11"],
                &[Ingress],
                vec![from(&[], vec![named("http"), named("nosuch")])],
            ),
            NetworkPolicy {
                egress: vec![from(&[block("10.0.0.0/24", &[])], vec![named("http")])],
                ..np("x/client", &[X], &[Egress], vec![])
            },
        ],
        endpoints: vec![ep(POD, 8080), ep("10.0.0.11", 9090), ep("10.0.2.1", 8080)],
        ..Default::default()
    };
    let p = compile(&set);
    let c = |src, dst, port| Connection::tcp(addr(src), addr(dst), port);
    // Ingress: "http" is 8080 on POD and 9090 on .11.
    assert_eq!(
        check(&p, &set, Ingress, c(Y, POD, 8080)).action,
        Action::Allow
    );
    assert_eq!(
        check(&p, &set, Ingress, c(Y, POD, 9090)).action,
        Action::Deny
    );
    assert_eq!(
        check(&p, &set, Ingress, c(Y, "10.0.0.11", 9090)).action,
        Action::Allow
    );
    assert_eq!(
        check(&p, &set, Ingress, c(Y, "10.0.0.11", 8080)).action,
        Action::Deny
    );
    // Egress from X: "http" resolves on each destination, inside the block only.
    assert_eq!(
        check(&p, &set, Egress, c(X, POD, 8080)).action,
        Action::Allow
    );
    assert_eq!(
        check(&p, &set, Egress, c(X, "10.0.0.11", 9090)).action,
        Action::Allow
    );
    assert_eq!(
        check(&p, &set, Egress, c(X, "10.0.0.11", 8080)).action,
        Action::Deny
    );
    assert_eq!(
        check(&p, &set, Egress, c(X, "10.0.2.1", 8080)).action,
        Action::Deny
    );
    // A destination without the name: nothing matches.
    assert_eq!(
        check(&p, &set, Egress, c(X, "10.0.0.12", 8080)).action,
        Action::Deny
    );
}

#[test]
fn a_set_too_large_is_refused_whole() {
    let rules: Vec<NetworkRule> = (0..200)
        .map(|i| {
            from(
                &[block(&format!("10.{i}.0.0/16"), &[])],
                vec![tcp(1000 + i, None)],
            )
        })
        .collect();
    let set = PolicySet {
        network: vec![np("x/big", &[POD], &[Ingress], rules)],
        ..Default::default()
    };
    let valid = set.validate().unwrap();
    let small = CompileLimits {
        max_bytes: 4096,
        ..CompileLimits::default()
    };
    let e = CompiledPolicy::compile_with(&valid, small).unwrap_err();
    assert!(
        matches!(e, CompileError::TooLarge { limit: 4096, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("refused whole"), "{e}");
    let e = CompiledPolicy::compile_with(
        &valid,
        CompileLimits {
            max_work: 1000,
            ..CompileLimits::default()
        },
    )
    .unwrap_err();
    assert_eq!(e, CompileError::TooMuchWork { limit: 1000 });
    // Within the default limits it compiles, and answers per rule — also
    // across the index of a group with hundreds of peer pieces.
    let p = CompiledPolicy::compile(&valid).unwrap();
    assert!(p.peer_pieces(Ingress, addr(POD)) > 100);
    let mut rng = Rng(7);
    for _ in 0..3000 {
        let src = IpAddr::V4((0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff)).into());
        let port = 1000 + rng.below(210) as u16;
        check(&p, &set, Ingress, Connection::tcp(src, addr(POD), port));
    }
    let d = check(
        &p,
        &set,
        Ingress,
        Connection::tcp(addr("10.7.1.1"), addr(POD), 1007),
    );
    assert_eq!(
        d.by,
        Decider::Rule(RuleRef {
            tier: Tier::Network,
            policy: 0,
            rule: 7
        })
    );
    assert_eq!(
        check(
            &p,
            &set,
            Ingress,
            Connection::tcp(addr("10.7.1.1"), addr(POD), 1008)
        )
        .action,
        Action::Deny
    );
}

#[test]
fn an_empty_policy_allows_everything() {
    let p = CompiledPolicy::empty();
    let c = Connection::tcp(addr(X), addr(POD), 80);
    assert_eq!(
        p.classify_both(&c),
        (
            dataplane::pipeline::policy::DecisionId::DEFAULT_ALLOW,
            dataplane::pipeline::policy::DecisionId::DEFAULT_ALLOW
        )
    );
    assert_eq!(p.decision(p.classify(Ingress, &c)).action, Action::Allow);
}
