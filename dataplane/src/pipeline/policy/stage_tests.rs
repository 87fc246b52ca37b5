//! The policy stage through the real stages and the flow table, in
//! `VecBuf`s, on the LB tests' network: client A (10.1.0.10) and pods B, D,
//! E (10.1.0.11-13) in blue, untracked by its own setting (policy makes it
//! tracked), with or without the service `web` in front of B, D and E.
//! Every case runs with the flow table on (later packets are hits) and off
//! (the stages alone).

use super::conntrack_stage::{Worker, ACK, SYN};
use super::lb_stage::{
    active, backend_of, frame, from_backend, send, service, to_vip, BACKENDS, CLIENT,
};
use super::*;
use crate::drop::DropReason as Why;
use crate::pipeline::conntrack::{CtConfig, CtFilter};
use crate::pipeline::lb::services::{ServiceChange, Services};
use crate::pipeline::policy::model::{
    ClusterAction, ClusterPolicy, ClusterRule, Direction, NetworkPolicy, NetworkRule, Peer,
    PolicySet, PortMatch, PortRef, Protocol,
};
use crate::pipeline::policy::{CompiledPolicy, OnChange, PolicyObserver};
use crate::pipeline::trace::TraceNames;

const POD_B_IP: &str = "10.1.0.11";
const POD_D_IP: &str = "10.1.0.12";
const POD_E_IP: &str = "10.1.0.13";

fn compiled(set: &PolicySet) -> Arc<CompiledPolicy> {
    Arc::new(CompiledPolicy::compile(&set.validate().unwrap()).unwrap())
}

/// A NetworkPolicy on `subject` for `dir`, whose one rule (if any) allows
/// `peers` on TCP and UDP `port`.
fn np(name: &str, subject: &str, dir: Direction, rule: Option<(&[&str], u16)>) -> NetworkPolicy {
    let rules: Vec<NetworkRule> = rule
        .into_iter()
        .map(|(peers, port)| NetworkRule {
            peers: vec![Peer::Addresses(
                peers.iter().map(|s| s.to_string()).collect(),
            )],
            ports: [Protocol::Tcp, Protocol::Udp]
                .into_iter()
                .map(|protocol| PortMatch {
                    protocol,
                    port: Some(PortRef::Number(port)),
                    ..Default::default()
                })
                .collect(),
        })
        .collect();
    let (ingress, egress) = match dir {
        Direction::Ingress => (rules, vec![]),
        Direction::Egress => (vec![], rules),
    };
    NetworkPolicy {
        name: name.into(),
        subject: vec![subject.into()],
        policy_types: vec![dir],
        ingress,
        egress,
    }
}

fn set(network: Vec<NetworkPolicy>) -> PolicySet {
    PolicySet {
        network,
        ..Default::default()
    }
}

/// blue with its four pods, `policy`, and the service `web` if `svc`;
/// open connections on a policy change are re-evaluated or kept by
/// `on_change`.
fn pipeline(
    generation: u64,
    policy: Arc<CompiledPolicy>,
    svc: bool,
    on_change: OnChange,
) -> Arc<Pipeline> {
    let mut blue = net(
        "blue",
        100,
        Encap::Vxlan,
        "t1",
        "10.1.0.0/24",
        &["10.1.0.1"],
        G_BLUE,
    );
    blue.conntrack = false;
    blue.vteps.clear();
    blue.policy_on_change = on_change;
    let mut b = OverlayBuilder::new(generation);
    b.network(blue)
        .local_endpoint(local("blue", A, &[CLIENT], POD_A));
    for (ip, mac, port) in BACKENDS {
        b.local_endpoint(local("blue", mac, &[ip], port));
    }
    let overlay = b.build().unwrap();
    let services = if svc {
        Services::empty()
            .patched(&[ServiceChange::Put(service(active()))], |n| {
                overlay.network_by_name(n)
            })
            .unwrap()
    } else {
        Services::empty()
    };
    let l2 = L2PipelineBuilder::new(generation).build().unwrap();
    let p = Pipeline::new(generation, l2, overlay, wire::ParseConfig::default())
        .with_services(Arc::new(services))
        .with_policy(policy);
    Arc::new(p)
}

/// A worker on `p` reporting to `obs`.
fn worker(p: Arc<Pipeline>, flows: bool, obs: &Arc<PolicyObserver>) -> Worker {
    let mut w = Worker::new(Arc::clone(&p), flows);
    w.state = WorkerState::with_flow_entries(if flows { 1024 } else { 0 })
        .with_conntrack(CtConfig {
            capacity: 1024,
            ..CtConfig::default()
        })
        .with_policy_observer(Arc::clone(obs));
    w.state.bind(&p);
    w
}

/// Moves `w` to snapshot `p`, as the worker loop does between rounds.
fn swap(w: &mut Worker, p: Arc<Pipeline>) {
    w.p = p;
    w.state.bind(&w.p);
}

/// Pod `from` (an index into the pods A, B, D, E) to pod `to`, TCP, directly.
fn tcp(
    from: usize,
    to: usize,
    ports: (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
) -> (PortIdx, Vec<u8>) {
    let pods = pods();
    let (sip, smac, sport) = pods[from];
    let (dip, dmac, _) = pods[to];
    let f = frame(dmac, smac, sip, dip, ports, 64, Some((flags, seq, ack)), 0);
    (sport, f)
}

fn udp(from: usize, to: usize, ports: (u16, u16)) -> (PortIdx, Vec<u8>) {
    let pods = pods();
    let (sip, smac, sport) = pods[from];
    let (dip, dmac, _) = pods[to];
    (sport, frame(dmac, smac, sip, dip, ports, 64, None, 16))
}

/// A (0), B (1), D (2), E (3): address, MAC, port.
fn pods() -> [(&'static str, MacAddr, PortIdx); 4] {
    [(CLIENT, A, POD_A), BACKENDS[0], BACKENDS[1], BACKENDS[2]]
}

fn port_of(pod: usize) -> Verdict {
    Verdict::Output(pods()[pod].2)
}

fn connections(w: &Worker) -> usize {
    w.state
        .conntrack()
        .list(&CtFilter::default(), Instant::now(), 100)
        .len()
}

fn hits(obs: &PolicyObserver, policy: &str, dir: Direction, rule: Option<u32>) -> u64 {
    obs.rule_hits()
        .iter()
        .filter(|h| {
            h.key.policy == policy && h.key.direction == dir.index() as u8 && h.key.rule == rule
        })
        .map(|h| h.hits)
        .sum()
}

/// B admits TCP 8080 from D only: A's connection is dropped as
/// `policy_denied_ingress` at its SYN (every retry again) and leaves no
/// connection; D's passes, and B's answers pass without a classification
/// (the rule's hits stay at one). The denial is logged with the policy,
/// the direction and the connection.
#[test]
fn ingress_allows_one_pod_and_denies_the_rest() {
    for flows in [false, true] {
        let what = format!("flows {flows}");
        let policy = compiled(&set(vec![np(
            "x/b-from-d",
            POD_B_IP,
            Direction::Ingress,
            Some((&[POD_D_IP], 8080)),
        )]));
        let obs = Arc::new(PolicyObserver::new());
        let mut w = worker(
            pipeline(1, policy, false, OnChange::Reevaluate),
            flows,
            &obs,
        );
        for _ in 0..3 {
            let v = w.send(&tcp(0, 1, (40000, 8080), SYN, 1000, 0));
            assert_eq!(v, Verdict::Drop(Why::PolicyDeniedIngress), "{what}");
        }
        assert_eq!(
            connections(&w),
            0,
            "{what}: a denied connection keeps no entry"
        );
        assert_eq!(
            w.send(&tcp(2, 1, (41000, 8080), SYN, 1, 0)),
            port_of(1),
            "{what}"
        );
        assert_eq!(
            w.send(&tcp(1, 2, (8080, 41000), SYN | ACK, 9, 2)),
            port_of(2)
        );
        for i in 0..5 {
            assert_eq!(
                w.send(&tcp(2, 1, (41000, 8080), ACK, 2 + i, 10)),
                port_of(1)
            );
            assert_eq!(
                w.send(&tcp(1, 2, (8080, 41000), ACK, 10 + i, 2)),
                port_of(2)
            );
        }
        // D to B on another port: not allowed either.
        assert_eq!(
            w.send(&tcp(2, 1, (41001, 8081), SYN, 1, 0)),
            Verdict::Drop(Why::PolicyDeniedIngress)
        );
        assert_eq!(connections(&w), 1, "{what}");
        assert_eq!(
            hits(&obs, "x/b-from-d", Direction::Ingress, Some(0)),
            1,
            "{what}"
        );
        // Isolation denied four connections (three attempts of A, one of D).
        assert_eq!(hits(&obs, "", Direction::Ingress, None), 4, "{what}");
        let (log, logged, suppressed) = obs.denied();
        assert_eq!((log.len(), logged, suppressed), (4, 4, 0), "{what}");
        let ev = &log[0];
        assert_eq!(ev.direction, Direction::Ingress);
        assert_eq!(ev.conn.src, IpAddr::V4(ip4(CLIENT)));
        assert_eq!(ev.conn.dst, IpAddr::V4(ip4(POD_B_IP)));
        assert_eq!((ev.sport, ev.conn.l4, ev.vni), (40000, 8080, 100));
        if flows {
            assert!(w.state.flow_stats().hits >= 8, "{:?}", w.state.flow_stats());
        }
    }
}

/// A may only reach D on TCP 8080 (egress): its connection to B is dropped
/// as `policy_denied_egress` at the source; to D it passes, and so does D's
/// answer. UDP to D's port 8081 is not allowed (the rule names 8080).
#[test]
fn egress_is_checked_at_the_source() {
    for flows in [false, true] {
        let policy = compiled(&set(vec![np(
            "x/a-to-d",
            CLIENT,
            Direction::Egress,
            Some((&[POD_D_IP], 8080)),
        )]));
        let obs = Arc::new(PolicyObserver::new());
        let mut w = worker(
            pipeline(1, policy, false, OnChange::Reevaluate),
            flows,
            &obs,
        );
        assert_eq!(
            w.send(&tcp(0, 1, (40000, 8080), SYN, 1, 0)),
            Verdict::Drop(Why::PolicyDeniedEgress)
        );
        assert_eq!(w.send(&tcp(0, 2, (40000, 8080), SYN, 1, 0)), port_of(2));
        assert_eq!(
            w.send(&tcp(2, 0, (8080, 40000), SYN | ACK, 5, 2)),
            port_of(0)
        );
        assert_eq!(w.send(&tcp(0, 2, (40000, 8080), ACK, 2, 6)), port_of(2));
        assert_eq!(
            w.send(&udp(0, 2, (5000, 8081))),
            Verdict::Drop(Why::PolicyDeniedEgress)
        );
        // B, not a subject, may reach A: A's egress policy says nothing of it.
        assert_eq!(w.send(&udp(1, 0, (5000, 53))), port_of(0), "flows {flows}");
        assert_eq!(w.send(&udp(0, 1, (53, 5000))), port_of(1), "a reply passes");
        assert_eq!(hits(&obs, "x/a-to-d", Direction::Egress, Some(0)), 1);
    }
}

/// A policy change: A's open connection to B (allowed by the first policy)
/// meets a second policy that admits only D. With `reevaluate` its next
/// packet, a flow-table hit until then, is classified again, dropped as
/// `policy_denied_ingress`, and the connection closed; with `keep` it goes
/// on, while a new connection from A is refused. UDP and TCP alike.
#[test]
fn a_policy_change_reevaluates_or_keeps_open_connections() {
    for on_change in [OnChange::Reevaluate, OnChange::Keep] {
        for flows in [false, true] {
            let what = format!("{on_change:?} flows {flows}");
            let before = compiled(&set(vec![np(
                "x/b",
                POD_B_IP,
                Direction::Ingress,
                Some((&[CLIENT, POD_D_IP], 8080)),
            )]));
            let after = compiled(&set(vec![np(
                "x/b",
                POD_B_IP,
                Direction::Ingress,
                Some((&[POD_D_IP], 8080)),
            )]));
            let obs = Arc::new(PolicyObserver::new());
            let mut w = worker(pipeline(1, before, false, on_change), flows, &obs);
            assert_eq!(w.send(&tcp(0, 1, (40000, 8080), SYN, 1, 0)), port_of(1));
            assert_eq!(
                w.send(&tcp(1, 0, (8080, 40000), SYN | ACK, 5, 2)),
                port_of(0)
            );
            assert_eq!(w.send(&udp(0, 1, (5000, 8080))), port_of(1));
            for i in 0..4 {
                assert_eq!(w.send(&tcp(0, 1, (40000, 8080), ACK, 2 + i, 6)), port_of(1));
                assert_eq!(w.send(&udp(0, 1, (5000, 8080))), port_of(1));
            }
            assert_eq!(connections(&w), 2);
            swap(&mut w, pipeline(2, after, false, on_change));
            let (tcp_v, udp_v) = (
                w.send(&tcp(0, 1, (40000, 8080), ACK, 6, 6)),
                w.send(&udp(0, 1, (5000, 8080))),
            );
            match on_change {
                OnChange::Reevaluate => {
                    let denied = Verdict::Drop(Why::PolicyDeniedIngress);
                    assert_eq!((tcp_v, udp_v), (denied, denied), "{what}");
                    assert_eq!(connections(&w), 0, "{what}: closed");
                    // B's answer finds no connection: TCP's is invalid.
                    assert_eq!(
                        w.send(&tcp(1, 0, (8080, 40000), ACK, 6, 2)),
                        Verdict::Drop(Why::CtInvalid),
                        "{what}"
                    );
                }
                OnChange::Keep => {
                    assert_eq!((tcp_v, udp_v), (port_of(1), port_of(1)), "{what}");
                    assert_eq!(w.send(&tcp(1, 0, (8080, 40000), ACK, 6, 2)), port_of(0));
                    assert_eq!(connections(&w), 2, "{what}");
                }
            }
            // A new connection meets the new policy either way.
            assert_eq!(
                w.send(&tcp(0, 1, (40001, 8080), SYN, 1, 0)),
                Verdict::Drop(Why::PolicyDeniedIngress),
                "{what}"
            );
            assert_eq!(w.send(&tcp(2, 1, (40001, 8080), SYN, 1, 0)), port_of(1));
        }
    }
}

/// A network that becomes policed (the first policy written) while a flow
/// of it rides the flow table untracked: the entry, installed without the
/// hook, is not used again; the flow's next packet meets the policy.
#[test]
fn a_flow_installed_before_any_policy_does_not_bypass_it() {
    let obs = Arc::new(PolicyObserver::new());
    let none = CompiledPolicy::shared_empty();
    let mut w = worker(pipeline(1, none, false, OnChange::Reevaluate), true, &obs);
    for _ in 0..4 {
        assert_eq!(w.send(&udp(0, 1, (5000, 8080))), port_of(1));
    }
    assert!(w.state.flow_stats().hits >= 3);
    let deny = compiled(&set(vec![np("x/b", POD_B_IP, Direction::Ingress, None)]));
    swap(&mut w, pipeline(2, deny, false, OnChange::Reevaluate));
    assert_eq!(
        w.send(&udp(0, 1, (5000, 8080))),
        Verdict::Drop(Why::PolicyDeniedIngress)
    );
}

/// Through the service: policy is checked against the backend the LB chose
/// and its target port. E (the third backend) admits nobody; B and D admit
/// A on 8080 (the target port, not the service's 80). Each connection's
/// fate follows its backend, which the same connection picks without
/// policy; the allowed ones answer from the VIP as usual.
#[test]
fn a_connection_to_a_vip_is_classified_against_its_backend() {
    for flows in [false, true] {
        let policy = compiled(&set(vec![
            np("x/b", POD_B_IP, Direction::Ingress, Some((&[CLIENT], 8080))),
            np("x/d", POD_D_IP, Direction::Ingress, Some((&[CLIENT], 8080))),
            np("x/e", POD_E_IP, Direction::Ingress, None),
        ]));
        let obs = Arc::new(PolicyObserver::new());
        let mut w = worker(pipeline(1, policy, true, OnChange::Reevaluate), flows, &obs);
        let free = CompiledPolicy::shared_empty();
        let mut open = worker(pipeline(1, free, true, OnChange::Reevaluate), false, &obs);
        let mut seen = [0usize; 3];
        for sport in 42000..42030u16 {
            let syn = to_vip(sport, SYN, 1, 0, 0);
            let k = backend_of(send(&mut open, &syn).0).unwrap();
            seen[k] += 1;
            let (v, _) = send(&mut w, &syn);
            if k == 2 {
                assert_eq!(v, Verdict::Drop(Why::PolicyDeniedIngress), "port {sport}");
                continue;
            }
            assert_eq!(v, Verdict::Output(BACKENDS[k].2), "port {sport}");
            let (v, out) = send(&mut w, &from_backend(k, sport, SYN | ACK, 9, 2, 0));
            assert_eq!(v, Verdict::Output(POD_A));
            assert_eq!(
                &out[26..30],
                &ip4(super::lb_stage::VIP).octets(),
                "from the VIP"
            );
            let (v, _) = send(&mut w, &to_vip(sport, ACK, 2, 10, 10));
            assert_eq!(v, Verdict::Output(BACKENDS[k].2));
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        let (log, _, _) = obs.denied();
        let ev = log.last().unwrap();
        assert_eq!(ev.conn.dst, IpAddr::V4(ip4(POD_E_IP)));
        assert_eq!(ev.conn.l4, 8080);
        assert_eq!(
            ev.frontend,
            Some((IpAddr::V4(ip4(super::lb_stage::VIP)), 80)),
            "the log names the VIP the client asked for"
        );
    }
}

/// Admin tier over NetworkPolicy: an admin Deny of A wins over B's
/// NetworkPolicy allowing it; a Pass hands D down to the NetworkPolicy,
/// which allows it. The trace names the tier and rule that decided.
#[test]
fn admin_deny_wins_and_trace_names_the_rule() {
    let admin = ClusterPolicy {
        name: "cluster/guard".into(),
        priority: 10,
        subject: vec![POD_B_IP.into()],
        ingress: vec![
            ClusterRule {
                name: "no-a".into(),
                action: ClusterAction::Deny,
                peers: vec![Peer::Addresses(vec![CLIENT.into()])],
                ports: vec![],
            },
            ClusterRule {
                name: "pass-d".into(),
                action: ClusterAction::Pass,
                peers: vec![Peer::Addresses(vec![POD_D_IP.into()])],
                ports: vec![],
            },
        ],
        egress: vec![],
    };
    let mut s = set(vec![np(
        "x/b",
        POD_B_IP,
        Direction::Ingress,
        Some((&[CLIENT, POD_D_IP], 8080)),
    )]);
    s.admin.push(admin);
    let obs = Arc::new(PolicyObserver::new());
    let p = pipeline(1, compiled(&s), false, OnChange::Reevaluate);
    let mut w = worker(Arc::clone(&p), true, &obs);
    assert_eq!(
        w.send(&tcp(0, 1, (40000, 8080), SYN, 1, 0)),
        Verdict::Drop(Why::PolicyDeniedIngress)
    );
    assert_eq!(w.send(&tcp(2, 1, (40000, 8080), SYN, 1, 0)), port_of(1));
    assert_eq!(hits(&obs, "cluster/guard", Direction::Ingress, Some(0)), 1);
    assert_eq!(hits(&obs, "cluster/guard", Direction::Ingress, Some(1)), 1);
    assert_eq!(hits(&obs, "x/b", Direction::Ingress, Some(0)), 1);
    let map = NeighborTable::new(NeighborConfig::default())
        .reader()
        .load_full();
    let (port, syn) = tcp(0, 1, (40000, 8080), SYN, 1, 0);
    let t = p.trace(port, &syn, &map, &TraceNames::default());
    let line = t
        .lines
        .iter()
        .find(|l| l.stage == "policy")
        .expect("a policy line");
    assert!(
        line.detail
            .contains("deny by admin policy \"cluster/guard\" rule 0 (\"no-a\")")
            && line.detail.contains("policy_denied_ingress"),
        "{}",
        line.detail
    );
    let (port, syn) = tcp(2, 1, (40000, 8080), SYN, 1, 0);
    let t = p.trace(port, &syn, &map, &TraceNames::default());
    let line = t.lines.iter().find(|l| l.stage == "policy").unwrap();
    assert!(
        line.detail.contains("allow by network policy \"x/b\" rule 0, passed down by admin policy \"cluster/guard\" rule 1"),
        "{}",
        line.detail
    );
}

/// An SCTP packet (conntrack keeps no state for it) is classified alone,
/// by its destination port: B admits SCTP 9000 from A and nothing else.
#[test]
fn sctp_is_classified_packet_by_packet() {
    let mut rule = np("x/b", POD_B_IP, Direction::Ingress, Some((&[CLIENT], 9000)));
    rule.ingress[0].ports[0].protocol = Protocol::Sctp;
    for flows in [false, true] {
        let obs = Arc::new(PolicyObserver::new());
        let p = pipeline(
            1,
            compiled(&set(vec![rule.clone()])),
            false,
            OnChange::Reevaluate,
        );
        let mut w = worker(p, flows, &obs);
        let sctp = |dport: u16| {
            let (sip, dip) = (ip4(CLIENT).octets(), ip4(POD_B_IP).octets());
            let mut ip = vec![0x45, 0, 0, 20 + 28, 0, 0, 0x40, 0, 64, 132, 0, 0];
            ip.extend_from_slice(&sip);
            ip.extend_from_slice(&dip);
            let mut f = eth(B, A, 0x0800);
            f.extend_from_slice(&ip);
            f.extend_from_slice(&5000u16.to_be_bytes());
            f.extend_from_slice(&dport.to_be_bytes());
            f.extend_from_slice(&[0; 24]);
            (POD_A, f)
        };
        for _ in 0..3 {
            assert_eq!(w.send(&sctp(9000)), port_of(1), "flows {flows}");
            assert_eq!(
                w.send(&sctp(9001)),
                Verdict::Drop(Why::PolicyDeniedIngress),
                "flows {flows}"
            );
        }
        assert_eq!(hits(&obs, "x/b", Direction::Ingress, Some(0)), 3);
    }
}

/// Hit counters are kept by rule, not by compile: a rule's hits under one
/// policy set and under the next add up, and survive later swaps (the old
/// blocks folded when the worker registers its new one).
#[test]
fn hits_add_up_by_rule_across_policy_changes() {
    let obs = Arc::new(PolicyObserver::new());
    let admit = |peers: &[&str]| {
        compiled(&set(vec![np(
            "x/b",
            POD_B_IP,
            Direction::Ingress,
            Some((peers, 8080)),
        )]))
    };
    let mut w = worker(
        pipeline(1, admit(&[CLIENT, POD_D_IP]), false, OnChange::Reevaluate),
        true,
        &obs,
    );
    assert_eq!(w.send(&tcp(0, 1, (40000, 8080), SYN, 1, 0)), port_of(1));
    swap(
        &mut w,
        pipeline(2, admit(&[POD_D_IP]), false, OnChange::Reevaluate),
    );
    assert_eq!(w.send(&tcp(2, 1, (40001, 8080), SYN, 1, 0)), port_of(1));
    assert_eq!(
        w.send(&tcp(0, 1, (40002, 8080), SYN, 1, 0)),
        Verdict::Drop(Why::PolicyDeniedIngress)
    );
    for g in 3..6 {
        swap(
            &mut w,
            pipeline(g, admit(&[POD_E_IP]), false, OnChange::Reevaluate),
        );
    }
    assert_eq!(hits(&obs, "x/b", Direction::Ingress, Some(0)), 2);
    assert_eq!(hits(&obs, "", Direction::Ingress, None), 1);
}
