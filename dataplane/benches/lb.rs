//! ns per packet of the LB stage through `process_burst`, the worker's loop,
//! in bursts of 32 `VecBuf` frames (64 B TCP): a client pod reaching a
//! ClusterIP through its gateway, three backend pods answering it directly
//! (`lb/stage_tests.rs`'s topology), the flow table and conntrack on:
//!
//! - `established_dnat/N`: segments of N established connections to the
//!   ClusterIP, each burst one segment of 32 connections: flow-table hits
//!   that check the connection, apply the DNAT and route, update the state;
//! - `established_reply/N`: the backends' answers on the same connections
//!   (hits: the reverse rewrite);
//! - `established_plain/N`: the same traffic routed through the gateway
//!   straight to a backend's address, no service in its way (the network is
//!   tracked all the same): the hit without the DNAT;
//! - `new_connection`: SYNs of connections never seen (a new source port
//!   each): the stages (conntrack creates the entry, Maglev picks, the reply
//!   tuple is set, the packet rewritten and routed) and the install; the
//!   table is flushed, untimed, before it fills.
//!
//! The frames are rebuilt for every burst (`iter_batched`, not measured):
//! every stage rewrites them.
//!
//! Instructions per packet, steadier than time on a shared machine: see
//! [`count`] (`LB_INSTRUCTIONS=dnat:1000:2000` under callgrind), and
//! [`count_two`] for the two-worker handoff (`owned`, `handoff`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, BatchSize, BenchmarkId, Criterion, Throughput};
use dataplane::overlay::{
    Encap, LocalEndpointSpec, NeighborConfig, NeighborTable, NetworkSpec, OverlayBuilder,
    ResolveLimiter,
};
use dataplane::pipeline::conntrack::{CtConfig, CtFilter};
use dataplane::pipeline::lb::maglev::BackendState;
use dataplane::pipeline::lb::services::{
    Affinity, BackendSpec, Protocol, ServicePortSpec, ServiceSpec, Services,
};
use dataplane::pipeline::{Ctx, WorkerState};
use dataplane::wire::checksum::{fold, sum_raw};
use dataplane::{L2PipelineBuilder, MacAddr, Pipeline, PortIdx, VecBuf, Verdict, BURST};

const CLIENT: PortIdx = PortIdx(0);
const GW: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 1]);
const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn backend(k: u8) -> (Ipv4Addr, MacAddr, PortIdx) {
    (
        Ipv4Addr::new(10, 1, 0, 11 + k),
        MacAddr([2, 0, 0, 0, 1, k]),
        PortIdx(1 + u16::from(k)),
    )
}

fn pipeline() -> Arc<Pipeline> {
    let mut b = OverlayBuilder::new(1);
    b.network(NetworkSpec {
        name: "blue".into(),
        vni: 100,
        encap: Encap::Vxlan,
        tenant: "t".into(),
        subnets: vec!["10.1.0.0/24".parse().unwrap()],
        gateway_ips: vec!["10.1.0.1".parse().unwrap()],
        gateway_mac: GW,
        flood_unknown: false,
        conntrack: false,
        conntrack_window_tracking: true,
        policy_on_change: Default::default(),
        vteps: vec![],
    });
    b.local_endpoint(LocalEndpointSpec {
        network: "blue".into(),
        mac: CLIENT_MAC,
        ips: vec![IpAddr::V4(CLIENT_IP)],
        port: CLIENT,
    });
    for k in 0..3 {
        let (ip, mac, port) = backend(k);
        b.local_endpoint(LocalEndpointSpec {
            network: "blue".into(),
            mac,
            ips: vec![IpAddr::V4(ip)],
            port,
        });
    }
    let overlay = b.build().unwrap();
    let spec = ServiceSpec {
        name: "web".into(),
        network: "blue".into(),
        cluster_ip: IpAddr::V4(VIP),
        ports: vec![ServicePortSpec {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: 8080,
            node_port: None,
        }],
        external_ips: vec![],
        affinity: Affinity::None,
        table_size: 65_537,
        backends: (0..3)
            .map(|k| BackendSpec {
                address: IpAddr::V4(backend(k).0),
                weight: 1,
                state: BackendState::Active,
            })
            .collect(),
    };
    let services =
        Services::build(&[spec], |n| overlay.network_by_name(n), &Services::empty()).unwrap();
    let l2 = L2PipelineBuilder::new(1).build().unwrap();
    Arc::new(Pipeline::new(1, l2, overlay, Default::default()).with_services(Arc::new(services)))
}

/// A 64-byte TCP frame with both checksums right.
#[allow(clippy::too_many_arguments)]
fn frame(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
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
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

/// Connection `i`'s client port.
fn sport(i: u32) -> u16 {
    10_000 + i as u16
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
        let mut state = WorkerState::with_flow_entries(1 << 16).with_conntrack(CtConfig {
            capacity: 1 << 17,
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

    /// One burst from `port`; the verdicts.
    fn burst(&mut self, port: PortIdx, bufs: &mut [VecBuf]) -> [Verdict; BURST] {
        let mut ctx = Ctx::new(&self.map, &mut self.limiter, Instant::now());
        let mut out = [Verdict::Drop(dataplane::DropReason::NoOutput); BURST];
        let ingress = self.p.ingress(port);
        self.p
            .process_burst(ingress, bufs, &mut ctx, &mut self.state, &mut out);
        out
    }
}

/// Which backend port connection `i` went to, after its handshake: the
/// stages run on the SYN, the SYN-ACK and the first ACK.
fn open(w: &mut Worker, i: u32, to_vip: bool) -> PortIdx {
    let (dst, dmac) = if to_vip {
        (VIP, GW)
    } else {
        (backend(0).0, GW)
    };
    let dport = if to_vip { 80 } else { 8080 };
    let syn = frame(
        dmac,
        CLIENT_MAC,
        CLIENT_IP,
        dst,
        (sport(i), dport),
        SYN,
        1,
        0,
    );
    let v = w.burst(CLIENT, &mut [VecBuf::new(&syn)])[0];
    let Verdict::Output(port) = v else {
        panic!("SYN of {i}: {v:?}")
    };
    let k = (port.0 - 1) as u8;
    let (bip, bmac, _) = backend(k);
    let sa = frame(
        CLIENT_MAC,
        bmac,
        bip,
        CLIENT_IP,
        (8080, sport(i)),
        SYN | ACK,
        9,
        2,
    );
    assert_eq!(
        w.burst(port, &mut [VecBuf::new(&sa)])[0],
        Verdict::Output(CLIENT)
    );
    let a = frame(
        dmac,
        CLIENT_MAC,
        CLIENT_IP,
        dst,
        (sport(i), dport),
        ACK,
        2,
        10,
    );
    assert_eq!(w.burst(CLIENT, &mut [VecBuf::new(&a)])[0], v);
    port
}

fn lb(c: &mut Criterion) {
    let mut g = c.benchmark_group("lb");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(3));
    for n in [32u32, 1_000, 10_000] {
        for (name, to_vip) in [("established_dnat", true), ("established_plain", false)] {
            let mut w = Worker::new(pipeline());
            let ports: Vec<PortIdx> = (0..n).map(|i| open(&mut w, i, to_vip)).collect();
            let (dst, dport) = if to_vip {
                (VIP, 80)
            } else {
                (backend(0).0, 8080)
            };
            let dmac = GW;
            let mut at = 0u32;
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_batched_ref(
                    || {
                        let bufs: Vec<VecBuf> = (0..BURST as u32)
                            .map(|j| {
                                let i = (at + j) % n;
                                let f = frame(
                                    dmac,
                                    CLIENT_MAC,
                                    CLIENT_IP,
                                    dst,
                                    (sport(i), dport),
                                    ACK,
                                    2,
                                    10,
                                );
                                VecBuf::new(&f)
                            })
                            .collect();
                        at = (at + BURST as u32) % n;
                        bufs
                    },
                    |bufs| black_box(w.burst(CLIENT, bufs)),
                    BatchSize::SmallInput,
                )
            });
            if to_vip {
                // The answers, each from its connection's backend port: one
                // burst per backend port.
                let mut at = 0u32;
                let k0 = ports[0];
                let mine: Vec<u32> = (0..n).filter(|&i| ports[i as usize] == k0).collect();
                let (bip, bmac, _) = backend((k0.0 - 1) as u8);
                g.bench_function(BenchmarkId::new("established_reply", n), |b| {
                    b.iter_batched_ref(
                        || {
                            let bufs: Vec<VecBuf> = (0..BURST)
                                .map(|j| {
                                    let i = mine[(at as usize + j) % mine.len()];
                                    let f = frame(
                                        CLIENT_MAC,
                                        bmac,
                                        bip,
                                        CLIENT_IP,
                                        (8080, sport(i)),
                                        ACK,
                                        10,
                                        2,
                                    );
                                    VecBuf::new(&f)
                                })
                                .collect();
                            at = (at + BURST as u32) % mine.len() as u32;
                            bufs
                        },
                        |bufs| black_box(w.burst(k0, bufs)),
                        BatchSize::SmallInput,
                    )
                });
            }
        }
    }
    let mut w = Worker::new(pipeline());
    let mut next = 0u32;
    g.bench_function("new_connection", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                if next >= 60_000 {
                    // Untimed: the table and the flows emptied before they fill.
                    w.state.conntrack_mut().flush(&CtFilter::default());
                    w.state.clear();
                    let p = Arc::clone(&w.p);
                    w.state.bind(&p);
                    next = 0;
                }
                let mut bufs: Vec<VecBuf> = (0..BURST as u32)
                    .map(|j| {
                        let sport = 1024 + (next + j) as u16;
                        let f = frame(GW, CLIENT_MAC, CLIENT_IP, VIP, (sport, 80), SYN, 1, 0);
                        VecBuf::new(&f)
                    })
                    .collect();
                next += BURST as u32;
                let t = Instant::now();
                black_box(w.burst(CLIENT, &mut bufs));
                spent += t.elapsed();
            }
            spent
        })
    });
    g.finish();
}

/// One burst, apart: what callgrind counts (`--toggle-collect=*measured*`).
#[inline(never)]
fn measured(w: &mut Worker, port: PortIdx, bufs: &mut [VecBuf]) -> [Verdict; BURST] {
    w.burst(port, bufs)
}

/// `LB_INSTRUCTIONS=SCENARIO:N:BURSTS`: runs BURSTS bursts of SCENARIO
/// (`dnat`, `reply`, `plain` at N connections, or `new`) through
/// [`measured`] and nothing else of criterion, for an instruction count
/// under `valgrind --tool=callgrind --toggle-collect='*measured*'`:
/// instructions per packet = the total / (BURSTS · 32).
fn count(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let (what, n, bursts) = match parts[..] {
        [w, n, b] => (w, n.parse::<u32>().unwrap(), b.parse::<u32>().unwrap()),
        _ => panic!("LB_INSTRUCTIONS=SCENARIO:N:BURSTS"),
    };
    if ["owned", "handoff", "reply_owned", "reply_stub"].contains(&what) {
        return count_two(what, n, bursts);
    }
    let mut w = Worker::new(pipeline());
    let to_vip = what != "plain";
    let ports: Vec<PortIdx> = if what == "new" {
        Vec::new()
    } else {
        (0..n).map(|i| open(&mut w, i, to_vip)).collect()
    };
    let mut verdicts = 0usize;
    for k in 0..bursts {
        let frames: Vec<(PortIdx, Vec<u8>)> = (0..BURST as u32)
            .map(|j| {
                let i = (k * BURST as u32 + j) % n.max(1);
                match what {
                    "dnat" => (
                        CLIENT,
                        frame(GW, CLIENT_MAC, CLIENT_IP, VIP, (sport(i), 80), ACK, 2, 10),
                    ),
                    "plain" => (
                        CLIENT,
                        frame(
                            GW,
                            CLIENT_MAC,
                            CLIENT_IP,
                            backend(0).0,
                            (sport(i), 8080),
                            ACK,
                            2,
                            10,
                        ),
                    ),
                    "reply" => {
                        let port = ports[i as usize];
                        let (bip, bmac, _) = backend((port.0 - 1) as u8);
                        (
                            port,
                            frame(
                                CLIENT_MAC,
                                bmac,
                                bip,
                                CLIENT_IP,
                                (8080, sport(i)),
                                ACK,
                                10,
                                2,
                            ),
                        )
                    }
                    _ => {
                        let sport = 1024 + (k * BURST as u32 + j) as u16;
                        (
                            CLIENT,
                            frame(GW, CLIENT_MAC, CLIENT_IP, VIP, (sport, 80), SYN, 1, 0),
                        )
                    }
                }
            })
            .collect();
        // A burst comes from one port: the replies are grouped by backend.
        let mut by_port: Vec<(PortIdx, Vec<VecBuf>)> = Vec::new();
        for (port, f) in &frames {
            match by_port.iter_mut().find(|(p, _)| p == port) {
                Some((_, v)) => v.push(VecBuf::new(f)),
                None => by_port.push((*port, vec![VecBuf::new(f)])),
            }
        }
        for (port, mut bufs) in by_port {
            let out = measured(&mut w, port, &mut bufs);
            verdicts += out[..bufs.len()]
                .iter()
                .filter(|v| matches!(v, Verdict::Output(_)))
                .count();
        }
    }
    println!(
        "{what} at {n}: {verdicts} of {} packets forwarded",
        bursts as usize * BURST
    );
}

/// The handed-off part of a burst, apart, for callgrind: the non-owner's
/// burst from `port` (every packet gets `Verdict::Handoff`) and the pushes to
/// the ring, then the owner's pops.
#[inline(never)]
fn measured_handoff(
    a: &mut Worker,
    port: PortIdx,
    rings: &[dataplane::handoff::HandoffRings<VecBuf>],
    bufs: &mut Vec<VecBuf>,
) -> usize {
    use dataplane::handoff::HandoffMsg;
    let out = a.burst(port, bufs);
    let mut handed = 0;
    for (buf, v) in bufs.drain(..).zip(out) {
        if let Verdict::Handoff(to) = v {
            let msg = HandoffMsg::Packet { in_port: port, buf };
            handed += usize::from(rings[0].send(to, msg).is_ok());
        }
    }
    rings[1].drain(|m| {
        if let HandoffMsg::Packet { buf, .. } = m {
            bufs.push(buf);
        }
    });
    handed
}

/// `LB_INSTRUCTIONS=owned:N:BURSTS` and `handoff:N:BURSTS`: two workers of a
/// mesh of two; N established DNAT'd connections owned by worker 1, their
/// client segments received by worker 1 itself (`owned`: the hit, as in
/// `dnat`) or by worker 0 (`handoff`: worker 0's burst hands every packet
/// over, the ring carries it, worker 1 forwards it). Instructions per
/// handed-off packet minus per owned one = the handoff's cost.
/// `reply_owned` and `reply_stub`: connections owned by worker 1 whose
/// reply tuple hashes to worker 0, which holds their stubs; the backends'
/// answers received by worker 1 itself, or by worker 0 (a hit on the entry
/// that checks the stub, then the ring).
fn count_two(what: &str, n: u32, bursts: u32) {
    use dataplane::pipeline::conntrack::tuple::owner;
    use dataplane::pipeline::conntrack::CtTuple;
    let p = pipeline();
    let mut a = Worker::new(Arc::clone(&p));
    let mut b = Worker::new(Arc::clone(&p));
    a.state.conntrack_mut().set_workers(0, 2);
    b.state.conntrack_mut().set_workers(1, 2);
    let rings = dataplane::handoff::mesh::<VecBuf>(2, 64);
    let replies = what.starts_with("reply");
    // Which backend a connection's slot gives, from a one-worker run.
    let mut probe = Worker::new(p);
    let ids: Vec<u32> = (0..)
        .filter(|&i| {
            let t = CtTuple::new(IpAddr::V4(CLIENT_IP), sport(i), IpAddr::V4(VIP), 80, 6);
            if owner(100, &t, 2) != 1 {
                return false;
            }
            if !replies {
                return true;
            }
            let k = (open(&mut probe, i, true).0 - 1) as u8;
            let bip = IpAddr::V4(backend(k).0);
            let r = CtTuple::new(bip, 8080, IpAddr::V4(CLIENT_IP), sport(i), 6);
            owner(100, &r, 2) == 0
        })
        .take(n as usize)
        .collect();
    let ports: Vec<PortIdx> = ids.iter().map(|&i| open(&mut b, i, true)).collect();
    // The stubs worker 1 asked for, left on worker 0 as its ring would.
    let notes: Vec<_> = b.state.conntrack_mut().take_notes().collect();
    for note in notes {
        a.state
            .conntrack_mut()
            .apply_stub(note.zone, &note.tuple, 1, note.insert);
    }
    let mut forwarded = 0usize;
    let mut handed = 0usize;
    for k in 0..bursts {
        // A burst comes from one port: the replies are grouped by backend.
        let mut by_port: Vec<(PortIdx, Vec<VecBuf>)> = Vec::new();
        for j in 0..BURST as u32 {
            let x = ((k * BURST as u32 + j) % n) as usize;
            let i = ids[x];
            let (port, f) = if replies {
                let (bip, bmac, _) = backend((ports[x].0 - 1) as u8);
                let f = frame(
                    CLIENT_MAC,
                    bmac,
                    bip,
                    CLIENT_IP,
                    (8080, sport(i)),
                    ACK,
                    10,
                    2,
                );
                (ports[x], f)
            } else {
                let f = frame(GW, CLIENT_MAC, CLIENT_IP, VIP, (sport(i), 80), ACK, 2, 10);
                (CLIENT, f)
            };
            match by_port.iter_mut().find(|(p, _)| *p == port) {
                Some((_, v)) => v.push(VecBuf::new(&f)),
                None => by_port.push((port, vec![VecBuf::new(&f)])),
            }
        }
        for (port, mut bufs) in by_port {
            if what == "handoff" || what == "reply_stub" {
                handed += measured_handoff(&mut a, port, &rings, &mut bufs);
            }
            let out = measured(&mut b, port, &mut bufs);
            forwarded += out[..bufs.len()]
                .iter()
                .filter(|v| matches!(v, Verdict::Output(_)))
                .count();
        }
    }
    println!(
        "{what} at {n}: {handed} handed over, {forwarded} of {} packets forwarded",
        bursts as usize * BURST
    );
}

criterion_group!(benches, lb);

fn main() {
    if let Ok(spec) = std::env::var("LB_INSTRUCTIONS") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
