//! The policy classifier (issue #26): ns per new-connection classification at
//! 10, 100, 1k, 10k and 100k rules, under realistic and under adversarial
//! traffic; compile time at 10k rules; a one-policy update at 3k policies and
//! 3k pods; and the memory of the compiled structure (printed, not timed).
//!
//! "Realistic": a cluster of 3,000 pods in 10.0.0.0/16 (apps of 5 pods,
//! namespaces of 50), NetworkPolicies of 4 rules each selecting one app,
//! with peers that are an app's or a namespace's IP set or a /16…/28 block
//! (a third with an `except`), TCP ports from a dozen common ones or a range;
//! one policy in 20 is an admin ClusterNetworkPolicy over a namespace
//! (Allow/Deny/Pass) and one in 40 a baseline one. Traffic: pod to pod, to a
//! common port, checked at ingress and egress.
//!
//! "Adversarial": every connection different, sources spread over the whole
//! IPv4 space, random protocols and ports, all aimed at the endpoint with the
//! largest compiled group; and a configuration with every rule on one endpoint
//! (its peer tree as deep as it gets).

mod common;
use common::Rng;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dataplane::pipeline::policy::model::{
    ClusterAction, ClusterPolicy, ClusterRule, NetworkPolicy, NetworkRule, Peer, PortMatch,
    PortRef, Protocol,
};
use dataplane::pipeline::policy::{CompiledPolicy, Connection, Direction, PolicySet};

const PODS: u32 = 3000;
const COMMON_PORTS: [u16; 12] = [
    80, 443, 8080, 8443, 53, 5432, 6379, 9090, 3306, 27017, 9200, 11211,
];

fn pod(i: u32) -> Ipv4Addr {
    Ipv4Addr::from_bits(0x0a00_0000 | (i + 10))
}

fn app(i: u32) -> Vec<String> {
    (i * 5..(i * 5 + 5).min(PODS))
        .map(|p| pod(p).to_string())
        .collect()
}

fn namespace(i: u32) -> Vec<String> {
    (i * 50..(i * 50 + 50).min(PODS))
        .map(|p| pod(p).to_string())
        .collect()
}

fn peer(rng: &mut Rng) -> Peer {
    match rng.next() % 4 {
        0 => Peer::Addresses(app((rng.next() % u64::from(PODS / 5)) as u32)),
        1 => Peer::Addresses(namespace((rng.next() % u64::from(PODS / 50)) as u32)),
        _ => {
            let len = 16 + (rng.next() % 13) as u8;
            let a = Ipv4Addr::from_bits(0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff));
            let net = ipnet::Ipv4Net::new(a, len).unwrap().trunc();
            let mut except = Vec::new();
            if len < 28 && rng.next().is_multiple_of(3) {
                let e = ipnet::Ipv4Net::new(
                    Ipv4Addr::from_bits(
                        net.network().to_bits() | (rng.next() as u32 & !u32::from(net.netmask())),
                    ),
                    len + 2,
                )
                .unwrap()
                .trunc();
                except.push(e.to_string());
            }
            Peer::IpBlock {
                cidr: net.to_string(),
                except,
            }
        }
    }
}

fn ports(rng: &mut Rng) -> Vec<PortMatch> {
    (0..1 + rng.next() % 2)
        .map(|_| {
            let p = COMMON_PORTS[(rng.next() % 12) as usize];
            PortMatch {
                protocol: if p == 53 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                port: Some(PortRef::Number(p)),
                end_port: rng.next().is_multiple_of(8).then_some(p + 10),
                ..Default::default()
            }
        })
        .collect()
}

fn peers(rng: &mut Rng) -> Vec<Peer> {
    (0..1 + rng.next() % 3).map(|_| peer(rng)).collect()
}

/// About `rules` rules, in policies of 4 (2 in, 2 out), over 3,000 pods.
fn realistic(rules: usize, seed: u64) -> PolicySet {
    let mut rng = Rng(seed);
    let mut set = PolicySet::default();
    let policies = rules.div_ceil(4);
    for i in 0..policies {
        let kind = rng.next() % 40;
        let cluster = |rng: &mut Rng, pass: bool| {
            let actions: &[ClusterAction] = if pass {
                &[
                    ClusterAction::Allow,
                    ClusterAction::Deny,
                    ClusterAction::Pass,
                ]
            } else {
                &[ClusterAction::Allow, ClusterAction::Deny]
            };
            let rule = |rng: &mut Rng| ClusterRule {
                name: String::new(),
                action: actions[(rng.next() % actions.len() as u64) as usize],
                peers: peers(rng),
                ports: ports(rng),
            };
            ClusterPolicy {
                name: format!("cnp-{i}"),
                priority: (rng.next() % 1000) as u32,
                subject: namespace((rng.next() % u64::from(PODS / 50)) as u32),
                ingress: vec![rule(rng), rule(rng)],
                egress: vec![rule(rng), rule(rng)],
            }
        };
        if kind < 2 {
            set.admin.push(cluster(&mut rng, true));
        } else if kind == 2 {
            set.baseline.push(cluster(&mut rng, false));
        } else {
            let rule = |rng: &mut Rng| NetworkRule {
                peers: peers(rng),
                ports: ports(rng),
            };
            set.network.push(NetworkPolicy {
                name: format!("ns/np-{i}"),
                subject: app((rng.next() % u64::from(PODS / 5)) as u32),
                policy_types: vec![Direction::Ingress, Direction::Egress],
                ingress: vec![rule(&mut rng), rule(&mut rng)],
                egress: vec![rule(&mut rng), rule(&mut rng)],
            });
        }
    }
    set
}

/// `rules` ingress rules, all on one endpoint.
fn one_endpoint(rules: usize, seed: u64) -> PolicySet {
    let mut rng = Rng(seed);
    let network = (0..rules.div_ceil(4))
        .map(|i| NetworkPolicy {
            name: format!("ns/np-{i}"),
            subject: vec![pod(0).to_string()],
            policy_types: vec![Direction::Ingress],
            ingress: (0..4)
                .map(|_| NetworkRule {
                    peers: peers(&mut rng),
                    ports: ports(&mut rng),
                })
                .collect(),
            egress: vec![],
        })
        .collect();
    PolicySet {
        network,
        ..Default::default()
    }
}

/// This thread's time on a CPU, from the scheduler: on a machine shared with
/// other builds, wall time counts the time others ran too. Its resolution is
/// the scheduler tick, so it serves the compile (milliseconds), not a lookup.
fn cpu_now() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        s.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    )
}

fn compile(set: &PolicySet) -> CompiledPolicy {
    CompiledPolicy::compile(&set.validate().unwrap()).unwrap()
}

/// Pod to pod, each connection to a pod some policy selects for ingress (the
/// others are a hash miss and a default allow, cheaper at any size).
fn pod_traffic(p: &CompiledPolicy, n: usize, seed: u64) -> Vec<Connection> {
    let mut rng = Rng(seed);
    let selected: Vec<Ipv4Addr> = (0..PODS)
        .map(pod)
        .filter(|a| p.peer_pieces(Direction::Ingress, IpAddr::V4(*a)) > 0)
        .collect();
    (0..n)
        .map(|_| {
            let src = IpAddr::V4(pod((rng.next() % u64::from(PODS)) as u32));
            let dst = IpAddr::V4(selected[(rng.next() % selected.len() as u64) as usize]);
            let p = COMMON_PORTS[(rng.next() % 12) as usize];
            if p == 53 {
                Connection::udp(src, dst, p)
            } else {
                Connection::tcp(src, dst, p + rng.next().is_multiple_of(4) as u16)
            }
        })
        .collect()
}

/// Every connection different: any source, any protocol and port, aimed at `dst`.
fn hostile_traffic(n: usize, dst: Ipv4Addr, seed: u64) -> Vec<Connection> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let r = rng.next();
            Connection {
                src: IpAddr::V4(Ipv4Addr::from_bits(r as u32)),
                dst: IpAddr::V4(dst),
                protocol: [6, 17, 132, 1, 47][((r >> 32) % 5) as usize],
                l4: (r >> 40) as u16,
            }
        })
        .collect()
}

/// The pod whose ingress group has the most peer intervals: where a lookup is dearest.
fn deepest_pod(p: &CompiledPolicy) -> Ipv4Addr {
    (0..PODS)
        .map(pod)
        .max_by_key(|a| p.peer_pieces(Direction::Ingress, IpAddr::V4(*a)))
        .unwrap()
}

fn classify_loop(
    c: &mut Criterion,
    group: &str,
    cases: &[(usize, CompiledPolicy, Vec<Connection>)],
) {
    let mut g = c.benchmark_group(group);
    for (rules, p, conns) in cases {
        g.bench_with_input(BenchmarkId::from_parameter(rules), rules, |b, _| {
            let mut i = 0usize;
            b.iter(|| {
                let conn = &conns[i & (conns.len() - 1)];
                i += 1;
                black_box(p.classify(Direction::Ingress, black_box(conn)))
            })
        });
    }
    g.finish();
}

fn bench_classify(c: &mut Criterion) {
    let sizes = [10usize, 100, 1_000, 10_000, 100_000];
    let mut realistic_cases = Vec::new();
    let mut hostile_cases = Vec::new();
    for &n in &sizes {
        let set = realistic(n, 26);
        let (t, c) = (Instant::now(), cpu_now());
        let p = compile(&set);
        let (took, cpu) = (t.elapsed(), cpu_now() - c);
        let [ri, re] = p.rule_count();
        eprintln!(
            "realistic {n}: {} rules, {} groups, {} port tables, {} decisions, {:.1} KiB, validate+compile {:.1} ms ({:.1} ms on CPU)",
            ri + re,
            p.group_count(),
            p.table_count(),
            p.decision_count(),
            p.memory_bytes() as f64 / 1024.0,
            took.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3
        );
        let deep = deepest_pod(&p);
        eprintln!(
            "  deepest pod {deep}: {} peer pieces",
            p.peer_pieces(Direction::Ingress, IpAddr::V4(deep))
        );
        hostile_cases.push((n, p.clone(), hostile_traffic(1 << 16, deep, 7)));
        let conns = pod_traffic(&p, 1 << 16, 9);
        realistic_cases.push((n, p, conns));
    }
    classify_loop(c, "policy_classify_realistic", &realistic_cases);
    classify_loop(c, "policy_classify_hostile", &hostile_cases);
    drop((realistic_cases, hostile_cases));

    let mut one = Vec::new();
    for &n in &[10usize, 1_000, 10_000] {
        let set = one_endpoint(n, 27);
        let t = Instant::now();
        let p = compile(&set);
        eprintln!(
            "one endpoint {n}: {} peer pieces, {} port tables, {:.1} KiB, validate+compile {:.1} ms",
            p.peer_pieces(Direction::Ingress, IpAddr::V4(pod(0))),
            p.table_count(),
            p.memory_bytes() as f64 / 1024.0,
            t.elapsed().as_secs_f64() * 1e3
        );
        let conns = hostile_traffic(1 << 16, pod(0), 11);
        one.push((n, p, conns));
    }
    classify_loop(c, "policy_classify_one_endpoint_hostile", &one);
}

fn bench_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_compile");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let set = realistic(10_000, 26);
    let valid = set.validate().unwrap();
    g.bench_function("validate_10k", |b| {
        b.iter(|| black_box(set.validate().unwrap()))
    });
    g.bench_function("compile_10k", |b| {
        b.iter(|| black_box(CompiledPolicy::compile(&valid).unwrap()))
    });
    let set = one_endpoint(10_000, 27);
    let valid = set.validate().unwrap();
    g.bench_function("compile_10k_one_endpoint", |b| {
        b.iter(|| black_box(CompiledPolicy::compile(&valid).unwrap()))
    });
    g.finish();
}

/// One policy changes in a set of 3,000 policies over 3,000 pods: what it
/// takes from the new model to a compiled structure ready to publish.
fn bench_update(c: &mut Criterion) {
    let base = realistic(12_000, 26);
    assert!(base.admin.len() + base.network.len() + base.baseline.len() == 3_000);
    let mut rng = Rng(5);
    let mut next = || {
        let mut set = base.clone();
        let i = (rng.next() % set.network.len() as u64) as usize;
        set.network[i].ingress[0].ports = ports(&mut Rng(rng.next() | 1));
        set
    };
    // p99 over 100 updates, outside criterion (which reports means).
    let (mut wall, mut cpu): (Vec<Duration>, Vec<Duration>) = (0..100)
        .map(|_| {
            let set = next();
            let (t, c) = (Instant::now(), cpu_now());
            black_box(compile(&set));
            (t.elapsed(), cpu_now() - c)
        })
        .unzip();
    wall.sort();
    cpu.sort();
    eprintln!(
        "one-policy update at 3k policies / 3k pods, validate+compile: wall p50 {:.1} ms, p99 {:.1} ms; on-CPU p50 {:.1} ms, p99 {:.1} ms",
        wall[50].as_secs_f64() * 1e3,
        wall[98].as_secs_f64() * 1e3,
        cpu[50].as_secs_f64() * 1e3,
        cpu[98].as_secs_f64() * 1e3
    );
    let mut g = c.benchmark_group("policy_update");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let set = next();
    g.bench_function("one_policy_3k_policies_3k_pods", |b| {
        b.iter(|| black_box(compile(&set)))
    });
    g.finish();
}

criterion_group!(benches, bench_classify, bench_compile, bench_update);
criterion_main!(benches);
