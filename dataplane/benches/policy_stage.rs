//! The policy stage's cost (issue #26): a new connection classified at
//! 10 and 10,000 rules (the classifier and the stage, in the whole
//! pipeline: conntrack creates the connection, the stage classifies it
//! twice, the flow table installs it), and an established connection's
//! flow-table hit with policy on and off.
//!
//! blue (10.1.0.0/24): client 10.1.0.10 on port 0, server 10.1.0.11 on
//! port 1. With RULES > 0, the server is the subject of RULES / 10
//! NetworkPolicies of 10 rules each, every rule admitting a /24 of
//! 10.64.0.0/10 on its own port, and the last one admitting the client on
//! 8080: every rule selects that one endpoint (the classifier's worst
//! case, its group holding them all). With RULES = 0 there is no policy
//! and blue asks for conntrack itself, so "off" and "on" differ by the
//! policy alone.
//!
//! Instructions per packet, steadier than time on a shared machine:
//! `POLICY_INSTRUCTIONS=SCENARIO:RULES:N:BURSTS` (SCENARIO `new` or
//! `est`; N connections for `est`) under
//! `valgrind --tool=callgrind --toggle-collect='*measured*'`:
//! instructions per packet = the total / (BURSTS · 32).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use dataplane::overlay::{
    Encap, LocalEndpointSpec, NeighborConfig, NeighborTable, NetworkSpec, OverlayBuilder,
    ResolveLimiter,
};
use dataplane::pipeline::conntrack::CtConfig;
use dataplane::pipeline::policy::model::{NetworkPolicy, NetworkRule, Peer, PortMatch, PortRef};
use dataplane::pipeline::policy::{CompiledPolicy, Direction, PolicySet};
use dataplane::pipeline::{Ctx, WorkerState};
use dataplane::wire::checksum::{fold, sum_raw};
use dataplane::{L2PipelineBuilder, MacAddr, Pipeline, PortIdx, VecBuf, Verdict, BURST};

const CLIENT: PortIdx = PortIdx(0);
const SERVER: PortIdx = PortIdx(1);
const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const SERVER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn policy(rules: usize) -> PolicySet {
    let n = rules / 10;
    let network = (0..n)
        .map(|i| NetworkPolicy {
            name: format!("ns/p{i}"),
            subject: vec![SERVER_IP.to_string()],
            policy_types: vec![Direction::Ingress],
            ingress: (0..10)
                .map(|j| {
                    let k = i * 10 + j;
                    let last = i + 1 == n && j == 9;
                    let (peer, port) = if last {
                        (format!("{CLIENT_IP}/32"), 8080)
                    } else {
                        (
                            format!("10.{}.{}.0/24", 64 + (k >> 8) % 64, k & 0xff),
                            1000 + (k % 60_000) as u16,
                        )
                    };
                    NetworkRule {
                        peers: vec![Peer::IpBlock {
                            cidr: peer,
                            except: vec![],
                        }],
                        ports: vec![PortMatch {
                            port: Some(PortRef::Number(port)),
                            ..Default::default()
                        }],
                    }
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

fn pipeline(rules: usize) -> Arc<Pipeline> {
    let mut b = OverlayBuilder::new(1);
    b.network(NetworkSpec {
        name: "blue".into(),
        vni: 100,
        encap: Encap::Vxlan,
        tenant: "t".into(),
        subnets: vec!["10.1.0.0/24".parse().unwrap()],
        gateway_ips: vec!["10.1.0.1".parse().unwrap()],
        gateway_mac: MacAddr([2, 0, 0, 0, 0xaa, 1]),
        flood_unknown: false,
        conntrack: rules == 0,
        conntrack_window_tracking: true,
        policy_on_change: Default::default(),
        vteps: vec![],
    });
    for (ip, mac, port) in [
        (CLIENT_IP, CLIENT_MAC, CLIENT),
        (SERVER_IP, SERVER_MAC, SERVER),
    ] {
        b.local_endpoint(LocalEndpointSpec {
            network: "blue".into(),
            mac,
            ips: vec![IpAddr::V4(ip)],
            port,
        });
    }
    let overlay = b.build().unwrap();
    let l2 = L2PipelineBuilder::new(1).build().unwrap();
    let p = Pipeline::new(1, l2, overlay, Default::default());
    let p = if rules == 0 {
        p
    } else {
        let set = policy(rules).validate().unwrap();
        p.with_policy(Arc::new(CompiledPolicy::compile(&set).unwrap()))
    };
    Arc::new(p)
}

/// A 64-byte TCP frame with both checksums right.
fn frame(to_server: bool, sport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let (src, dst, smac, dmac, ports) = if to_server {
        (CLIENT_IP, SERVER_IP, CLIENT_MAC, SERVER_MAC, (sport, 8080))
    } else {
        (SERVER_IP, CLIENT_IP, SERVER_MAC, CLIENT_MAC, (8080, sport))
    };
    let mut l4 = Vec::with_capacity(30);
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(&ack.to_be_bytes());
    l4.extend_from_slice(&[0x50, flags, 0xfa, 0, 0, 0, 0, 0]);
    l4.extend_from_slice(&[0u8; 10]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6, 0, l4.len() as u8]);
    let c = !fold(sum_raw(sum_raw(0, &pseudo), &l4));
    l4[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = !fold(sum_raw(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dmac.0);
    f.extend_from_slice(&smac.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

struct Worker {
    p: Arc<Pipeline>,
    map: Arc<dataplane::overlay::NeighborMap>,
    limiter: ResolveLimiter,
    state: WorkerState,
}

impl Worker {
    fn new(p: Arc<Pipeline>) -> Worker {
        let table = NeighborTable::new(NeighborConfig::default());
        let map = table.reader().load_full();
        let limiter = ResolveLimiter::new(table.config());
        let mut state = WorkerState::with_flow_entries(1 << 17).with_conntrack(CtConfig {
            capacity: 1 << 18,
            ..CtConfig::default()
        });
        state.bind(&p);
        Worker {
            p,
            map,
            limiter,
            state,
        }
    }

    fn burst(&mut self, port: PortIdx, bufs: &mut [VecBuf]) -> [Verdict; BURST] {
        let mut ctx = Ctx::new(&self.map, &mut self.limiter, Instant::now());
        let mut out = [Verdict::Drop(dataplane::DropReason::NoOutput); BURST];
        let ingress = self.p.ingress(port);
        self.p
            .process_burst(ingress, bufs, &mut ctx, &mut self.state, &mut out);
        out
    }

    /// Opens connection `sport`: SYN, SYN-ACK, ACK.
    fn open(&mut self, sport: u16) {
        for (to_server, flags, seq, ack) in [
            (true, SYN, 1, 0),
            (false, SYN | ACK, 9, 2),
            (true, ACK, 2, 10),
        ] {
            let port = if to_server { CLIENT } else { SERVER };
            let mut b = [VecBuf::new(&frame(to_server, sport, flags, seq, ack))];
            let v = self.burst(port, &mut b)[0];
            assert!(matches!(v, Verdict::Output(_)), "{v:?}");
        }
    }
}

#[inline(never)]
fn measured(w: &mut Worker, port: PortIdx, bufs: &mut [VecBuf]) -> [Verdict; BURST] {
    w.burst(port, bufs)
}

/// A burst of `new` SYNs from ports `first..`, or of `est` ACKs on
/// connections `0..n` round robin.
fn frames(new: bool, k: u32, n: u32) -> Vec<Vec<u8>> {
    (0..BURST as u32)
        .map(|j| {
            let i = k * BURST as u32 + j;
            if new {
                frame(true, 1024 + (i % 60_000) as u16, SYN, 1, 0)
            } else {
                frame(true, 1024 + (i % n) as u16, ACK, 2, 10)
            }
        })
        .collect()
}

/// `POLICY_INSTRUCTIONS=SCENARIO:RULES:N:BURSTS` (module docs).
fn count(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [what, rules, n, bursts] = parts[..] else {
        panic!("POLICY_INSTRUCTIONS=SCENARIO:RULES:N:BURSTS");
    };
    let (rules, n, bursts): (usize, u32, u32) = (
        rules.parse().unwrap(),
        n.parse().unwrap(),
        bursts.parse().unwrap(),
    );
    let mut w = Worker::new(pipeline(rules));
    let new = what == "new";
    if !new {
        for i in 0..n {
            w.open(1024 + i as u16);
        }
    }
    let mut forwarded = 0;
    for k in 0..bursts {
        let f = frames(new, k, n);
        let mut bufs: Vec<VecBuf> = f.iter().map(|f| VecBuf::new(f)).collect();
        let out = measured(&mut w, CLIENT, &mut bufs);
        forwarded += out
            .iter()
            .filter(|v| matches!(v, Verdict::Output(_)))
            .count();
    }
    println!(
        "{what} at {rules} rules: {forwarded} of {} packets forwarded; flows {:?}",
        bursts as usize * BURST,
        w.state.flow_stats()
    );
}

fn policy_stage(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_stage");
    g.throughput(Throughput::Elements(BURST as u64));
    for rules in [0, 10, 10_000] {
        let mut w = Worker::new(pipeline(rules));
        for i in 0..256 {
            w.open(1024 + i);
        }
        let mut k = 0;
        g.bench_function(format!("established/{rules}"), |b| {
            b.iter_batched(
                || {
                    k += 1;
                    frames(false, k, 256)
                },
                |f| {
                    let mut bufs: Vec<VecBuf> = f.iter().map(|f| VecBuf::new(f)).collect();
                    measured(&mut w, CLIENT, &mut bufs)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, policy_stage);

fn main() {
    if let Ok(spec) = std::env::var("POLICY_INSTRUCTIONS") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
