//! ns/packet of `Pipeline::process` per overlay stage, on bursts of 32 `VecBuf`
//! frames, against a snapshot of 100 networks, 10k endpoints and 10k IPv4 routes:
//!
//! - `decap`: VXLAN from the uplink to a local pod;
//! - `encap`: a pod frame to a remote endpoint (underlay neighbour resolved);
//! - `l2_local`: pod to pod within a network;
//! - `routed`: pod to a pod of another network through the distributed gateway
//!   (LPM, MAC rewrite, TTL decrement);
//! - `arp_reply`: an ARP request answered in place.
//!
//! Every stage but L2 rewrites the buffer, so each iteration gets a fresh burst
//! (`iter_batched`; building it is not measured). Batches are 8 bursts (~560 KB of
//! `VecBuf`s), so the buffers are warm as a NIC's just-written ones are; with
//! `BatchSize::SmallInput` a batch is a tenth of a sample's iterations (tens of MB)
//! and the figure is mostly DRAM misses on cold buffers (30-50 % higher here).
//! Criterion reports time per burst; divide by 32, or read the throughput
//! (elements = packets).
//!
//! `pipeline_process_burst32` runs the same stages through `process_burst`, the
//! worker's loop, with each burst from one ingress port.
//!
//! `publish` is the control-plane side: building the 10k + 10k snapshot into a
//! `Pipeline` and publishing it through a `SnapshotCell<Pipeline>` (the old snapshot is
//! freed in the publish, as no reader holds it), reported per publish.

mod common;
use common::{ep_ip, ep_mac, Rng};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::overlay::{
    Encap, LocalEndpointSpec, NeighborConfig, NeighborTable, NetworkSpec, OverlayBuilder,
    RemoteEndpointSpec, ResolveLimiter, RouteSpec, RouteTarget, UnderlaySpec,
};
use dataplane::pipeline::{Ctx, WorkerState};
use dataplane::wire::{checksum, ParseConfig};
use dataplane::{
    L2PipelineBuilder, MacAddr, PacketBuf, Pipeline, PortIdx, SnapshotCell, VecBuf, Verdict, BURST,
};
use ipnet::{IpNet, Ipv4Net};

const NETWORKS: u32 = 100;
const PER_NETWORK: u32 = 100;
const ROUTES: u32 = 10_000;
/// Networks 0..LOCAL_NETS have two local ports each (1 + 2n and 2 + 2n), five pods on
/// each; every other endpoint is remote.
const LOCAL_NETS: u32 = 31;
const LOCAL_PER_NET: u32 = 10;
const VTEPS: u32 = 200;

const UPLINK: PortIdx = PortIdx(0);
const UPLINK_MAC: MacAddr = MacAddr([0x02, 0xff, 0, 0, 0, 1]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0xff, 0, 0, 0, 2]);
const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

fn gw_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from_bits((10 << 24) | (n << 16) | 1)
}

fn gw_mac(n: u32) -> MacAddr {
    MacAddr([0x02, 0xaa, 0, 0, (n >> 8) as u8, n as u8])
}

fn vtep_ip(k: u32) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 1 + (k / 250) as u8, (k % 250) as u8 + 2)
}

fn is_local(n: u32, i: u32) -> bool {
    n < LOCAL_NETS && i <= LOCAL_PER_NET
}

/// The local port of a local endpoint.
fn ep_port(n: u32, i: u32) -> PortIdx {
    PortIdx((1 + 2 * n + i % 2) as u16)
}

/// The VTEP of a remote endpoint.
fn ep_vtep(n: u32, i: u32) -> Ipv4Addr {
    vtep_ip((n * 7 + i) % VTEPS)
}

/// 100 VXLAN networks × 100 endpoints in one tenant, `routes` static IPv4 routes over
/// 8 prefix lengths (plus a default), next hops spread over all endpoints.
fn builder(generation: u64, routes: u32) -> OverlayBuilder {
    let mut b = OverlayBuilder::new(generation);
    b.underlay(UnderlaySpec {
        uplink: UPLINK,
        local_vtep_ip: IpAddr::V4(LOCAL_VTEP),
        local_mac: UPLINK_MAC,
        mtu: 1600,
        on_link: "192.168.0.0/16".parse().unwrap(),
        gateway: None,
    });
    for n in 0..NETWORKS {
        b.network(NetworkSpec {
            name: format!("net{n}"),
            policy_on_change: Default::default(),
            vni: 1000 + n,
            encap: Encap::Vxlan,
            tenant: "t".into(),
            subnets: vec![IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from_bits((10 << 24) | (n << 16)), 16).unwrap(),
            )],
            gateway_ips: vec![IpAddr::V4(gw_ip(n))],
            gateway_mac: gw_mac(n),
            flood_unknown: false,
            conntrack: false,
            conntrack_window_tracking: true,
            vteps: (0..4).map(|v| IpAddr::V4(vtep_ip(n * 2 + v))).collect(),
        });
        for i in 1..=PER_NETWORK {
            let ips = vec![IpAddr::V4(ep_ip(n, i))];
            if is_local(n, i) {
                b.local_endpoint(LocalEndpointSpec {
                    network: format!("net{n}"),
                    mac: ep_mac(n, i),
                    ips,
                    port: ep_port(n, i),
                });
            } else {
                b.remote_endpoint(RemoteEndpointSpec {
                    network: format!("net{n}"),
                    mac: ep_mac(n, i),
                    ips,
                    vtep: IpAddr::V4(ep_vtep(n, i)),
                });
            }
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let via = |rng: &mut Rng| {
        let n = (rng.next() % u64::from(NETWORKS)) as u32;
        RouteTarget::NextHop {
            network: format!("net{n}"),
            ip: IpAddr::V4(ep_ip(n, 1 + (rng.next() % u64::from(PER_NETWORK)) as u32)),
        }
    };
    b.route(RouteSpec {
        tenant: "t".into(),
        prefix: "0.0.0.0/0".parse().unwrap(),
        target: via(&mut rng),
    });
    let mut seen = std::collections::HashSet::new();
    while seen.len() < routes as usize {
        // 100.64.0.0/10: clear of the 10/8 networks.
        let len = [12u8, 16, 20, 22, 24, 26, 28, 32][(rng.next() % 8) as usize];
        let addr = 0x6440_0000 | (rng.next() as u32 & 0x003f_ffff);
        let p = IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from_bits(addr), len)
                .unwrap()
                .trunc(),
        );
        if seen.insert(p) {
            b.route(RouteSpec {
                tenant: "t".into(),
                prefix: p,
                target: via(&mut rng),
            });
        }
    }
    b
}

fn pipeline(b: &OverlayBuilder) -> Pipeline {
    let overlay = b.build().expect("valid config");
    let l2 = L2PipelineBuilder::new(overlay.generation())
        .build()
        .expect("valid config");
    Pipeline::new(overlay.generation(), l2, overlay, ParseConfig::default())
}

fn eth(dst: MacAddr, src: MacAddr, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(160);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
    h[6] = 0x40; // DF
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// A 98-byte Ethernet/IPv4/ICMP echo request (56 bytes of payload), TTL 64.
fn ping(dst_mac: MacAddr, src_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, 0x0800);
    f.extend_from_slice(&ipv4_header(src, dst, 1, 64, 64));
    let mut icmp = vec![8u8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&[0, 1]);
    icmp.extend((0..56).map(|i| i as u8));
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

/// `inner` in VXLAN (VNI `vni`) from VTEP `from` to the local VTEP, UDP checksum 0.
fn vxlan(from: Ipv4Addr, vni: u32, sport: u16, inner: &[u8]) -> Vec<u8> {
    let mut f = eth(UPLINK_MAC, PEER_MAC, 0x0800);
    let udp_len = 8 + 8 + inner.len();
    f.extend_from_slice(&ipv4_header(from, LOCAL_VTEP, 17, 64, udp_len));
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&4789u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[0x08, 0, 0, 0]);
    f.extend_from_slice(&(vni << 8).to_be_bytes());
    f.extend_from_slice(inner);
    f
}

/// A broadcast ARP request, padded to 60 bytes.
fn arp_request(src_mac: MacAddr, src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = eth(MacAddr::BROADCAST, src_mac, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

/// One packet of a bench burst: ingress port, frame, and the verdict it must get.
type Packet = (PortIdx, Vec<u8>, Verdict);

/// A local pod (of a network < LOCAL_NETS), picked by `r`.
fn local_pod(r: u64) -> u32 {
    1 + (r % u64::from(LOCAL_PER_NET)) as u32
}

/// A remote endpoint of network `n`, picked by `r`.
fn remote_ep(r: u64) -> u32 {
    LOCAL_PER_NET + 1 + (r % u64::from(PER_NETWORK - LOCAL_PER_NET)) as u32
}

/// Bursts of 32 for each stage, spread over networks and endpoints so lookups do
/// not all hit one cache line; with `from`, every pod frame comes from that
/// (network, pod), i.e. from one port, as a burst does in the worker.
fn bursts(from: Option<(u32, u32)>) -> Vec<(&'static str, Vec<Packet>)> {
    let mut rng = Rng(7);
    let mut decap = Vec::new();
    let mut encap = Vec::new();
    let mut l2 = Vec::new();
    let mut routed = Vec::new();
    let mut arp = Vec::new();
    for k in 0..BURST as u16 {
        let (n, pod) = (
            (rng.next() % u64::from(LOCAL_NETS)) as u32,
            local_pod(rng.next()),
        );
        let (n, pod) = from.unwrap_or((n, pod));
        let port = ep_port(n, pod);
        let remote = remote_ep(rng.next());

        let inner = ping(
            ep_mac(n, pod),
            ep_mac(n, remote),
            ep_ip(n, remote),
            ep_ip(n, pod),
            k,
        );
        let outer = vxlan(ep_vtep(n, remote), 1000 + n, 49152 + k, &inner);
        decap.push((UPLINK, outer, Verdict::Output(port)));

        let f = ping(
            ep_mac(n, remote),
            ep_mac(n, pod),
            ep_ip(n, pod),
            ep_ip(n, remote),
            k,
        );
        encap.push((port, f, Verdict::Output(UPLINK)));

        // A pod on the network's other port.
        let mut peer = local_pod(rng.next());
        if peer % 2 == pod % 2 {
            peer = if peer == LOCAL_PER_NET { 1 } else { peer + 1 };
        }
        let f = ping(
            ep_mac(n, peer),
            ep_mac(n, pod),
            ep_ip(n, pod),
            ep_ip(n, peer),
            k,
        );
        l2.push((port, f, Verdict::Output(ep_port(n, peer))));

        let m = (n + 1 + (rng.next() % u64::from(LOCAL_NETS - 1)) as u32) % LOCAL_NETS;
        let dst = local_pod(rng.next());
        let f = ping(gw_mac(n), ep_mac(n, pod), ep_ip(n, pod), ep_ip(m, dst), k);
        routed.push((port, f, Verdict::Output(ep_port(m, dst))));

        // Half for the gateway, half for other endpoints of the network.
        let target = if k % 2 == 0 {
            gw_ip(n)
        } else {
            ep_ip(n, remote)
        };
        let f = arp_request(ep_mac(n, pod), ep_ip(n, pod), target);
        arp.push((port, f, Verdict::Output(port)));
    }
    vec![
        ("decap", decap),
        ("encap", encap),
        ("l2_local", l2),
        ("routed", routed),
        ("arp_reply", arp),
    ]
}

/// What a worker forwards with: the snapshot; its reusable working space, bound to
/// the snapshot as the worker binds it once a round (the figures include its
/// caches — outer headers, routes — warm after the first burst as they are under
/// steady traffic); the underlay neighbours, every VTEP resolved; the rate limiter.
fn worker_state() -> (Arc<Pipeline>, WorkerState, NeighborTable, Instant) {
    let p = Arc::new(pipeline(&builder(1, ROUTES)));
    let mut scratch = WorkerState::new();
    scratch.bind(&p);
    let mut table = NeighborTable::new(NeighborConfig::default());
    let now = Instant::now();
    for k in 0..VTEPS {
        table.learn(IpAddr::V4(vtep_ip(k)), PEER_MAC, now);
    }
    (p, scratch, table, now)
}

/// A group reporting packets per second over bursts of 32.
fn burst_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Elements(BURST as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn pipeline_stages(c: &mut Criterion) {
    let (p, mut scratch, table, now) = worker_state();
    let map = table.reader().load_full();
    let mut limiter = ResolveLimiter::new(table.config());
    let mut group = burst_group(c, "pipeline_burst32");
    for (name, burst) in bursts(None) {
        // Every packet gets the verdict the stage is about, or the figure is of
        // something else.
        {
            let mut ctx = Ctx::new(&map, &mut limiter, now);
            for (i, (port, frame, want)) in burst.iter().enumerate() {
                let mut buf = VecBuf::new(frame);
                let got = p.process(*port, &mut buf, &mut ctx);
                assert_eq!(got, *want, "{name}[{i}]");
                if name == "decap" {
                    assert_eq!(buf.len(), 98, "{name}[{i}]: decapsulated");
                }
            }
        }
        let ports: Vec<PortIdx> = burst.iter().map(|(p, ..)| *p).collect();
        let frames: Vec<VecBuf> = burst.iter().map(|(_, f, _)| VecBuf::new(f)).collect();
        group.bench_function(name, |bch| {
            bch.iter_batched(
                || frames.clone(),
                |mut bufs| {
                    let mut ctx = Ctx::new(&map, &mut limiter, now);
                    for (buf, &port) in bufs.iter_mut().zip(&ports) {
                        black_box(p.process_with(port, buf, &mut ctx, &mut scratch));
                    }
                    bufs
                },
                BatchSize::NumIterations(8),
            )
        });
    }
    group.finish();
}

/// The same stages through `Pipeline::process_burst`, the worker's loop: each
/// burst from one ingress port (the uplink for decap, one pod's port otherwise), so
/// the pod traffic takes the straight-path burst loop.
fn pipeline_bursts(c: &mut Criterion) {
    let (p, mut scratch, table, now) = worker_state();
    let map = table.reader().load_full();
    let mut limiter = ResolveLimiter::new(table.config());
    let mut group = burst_group(c, "pipeline_process_burst32");
    for (name, burst) in bursts(Some((3, 2))) {
        if name == "arp_reply" {
            continue; // per packet either way
        }
        let port = burst[0].0;
        assert!(burst.iter().all(|(p, ..)| *p == port), "{name}: one port");
        let frames: Vec<VecBuf> = burst.iter().map(|(_, f, _)| VecBuf::new(f)).collect();
        let want: Vec<Verdict> = burst.iter().map(|(.., v)| *v).collect();
        let mut out = [Verdict::Flood; BURST];
        // Every packet gets the verdict the stage is about, warm caches or cold.
        for _ in 0..2 {
            let mut ctx = Ctx::new(&map, &mut limiter, now);
            let mut bufs = frames.clone();
            p.process_burst(p.ingress(port), &mut bufs, &mut ctx, &mut scratch, &mut out);
            assert_eq!(&out[..], &want[..], "{name}");
        }
        group.bench_function(name, |bch| {
            bch.iter_batched(
                || frames.clone(),
                |mut bufs| {
                    let mut ctx = Ctx::new(&map, &mut limiter, now);
                    let ingress = p.ingress(port);
                    black_box(p.process_burst(
                        ingress,
                        &mut bufs,
                        &mut ctx,
                        &mut scratch,
                        &mut out,
                    ));
                    bufs
                },
                BatchSize::NumIterations(8),
            )
        });
    }
    group.finish();
}

fn publish(c: &mut Criterion) {
    let b = builder(2, ROUTES);
    let cell = SnapshotCell::new(pipeline(&builder(1, ROUTES)));
    let mut group = c.benchmark_group("pipeline_publish");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("build_10k_endpoints_10k_routes", |bch| {
        bch.iter(|| cell.publish(black_box(pipeline(&b))))
    });
    group.finish();
    assert_eq!(cell.load().overlay.endpoint_count(), 10_000);
}

criterion_group!(benches, pipeline_stages, pipeline_bursts, publish);
criterion_main!(benches);
