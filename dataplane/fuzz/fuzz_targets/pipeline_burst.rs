//! Arbitrary frames through the worker's burst loops (`Pipeline::process_burst`),
//! whose straight passes read untrusted bytes at fixed offsets: no panic, and every
//! frame gets exactly the verdict and bytes the per-packet pipeline gives it with
//! cold caches (what the caches hold never changes an answer).
//!
//! Input: the first byte picks the ingress (a pod's port or the uplink), whether
//! the burst is sent twice (the second time through warm caches), and whether the
//! frames are raw or templates; the rest is frames. Raw: a length byte and that
//! many bytes. Template: a byte choosing one of the frames the straight paths
//! take (switched, routed, encapsulated, decapsulated) and how many (offset,
//! value) byte pairs follow to overwrite in it. A small overlay: a VXLAN network
//! with a gateway, two local pods, a remote endpoint behind a resolved VTEP, and a
//! second network routed to.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use dataplane::overlay::{
    Encap, LocalEndpointSpec, NeighborConfig, NeighborTable, NetworkSpec, OverlayBuilder,
    RemoteEndpointSpec, ResolveLimiter, UnderlaySpec,
};
use dataplane::pipeline::{Ctx, WorkerState};
use dataplane::wire::ParseConfig;
use dataplane::{L2PipelineBuilder, MacAddr, PacketBuf, Pipeline, PortIdx, VecBuf, Verdict, BURST};
use libfuzzer_sys::fuzz_target;

const UPLINK: PortIdx = PortIdx(0);
const PODS: [PortIdx; 3] = [PortIdx(1), PortIdx(2), PortIdx(3)];
const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

fn mac(last: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, last])
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pipeline() -> Arc<Pipeline> {
    let mut b = OverlayBuilder::new(1);
    b.underlay(UnderlaySpec {
        uplink: UPLINK,
        local_vtep_ip: ip("192.168.0.1"),
        local_mac: mac(0xf1),
        mtu: 1500,
        on_link: "192.168.0.0/16".parse().unwrap(),
        gateway: None,
    });
    for (n, name) in ["blue", "green"].iter().enumerate() {
        let n = n as u8 + 1;
        b.network(NetworkSpec {
            name: (*name).into(),
            policy_on_change: Default::default(),
            vni: 100 * u32::from(n),
            encap: Encap::Vxlan,
            tenant: "t".into(),
            subnets: vec![format!("10.{n}.0.0/16").parse().unwrap()],
            gateway_ips: vec![ip(&format!("10.{n}.0.1"))],
            gateway_mac: mac(0xa0 + n),
            flood_unknown: false,
            conntrack: false,
            conntrack_window_tracking: true,
            vteps: vec![IpAddr::V4(PEER)],
        });
    }
    for (i, port) in PODS.iter().enumerate() {
        let i = i as u8;
        let network = if i < 2 { "blue" } else { "green" };
        let net = if i < 2 { 1 } else { 2 };
        b.local_endpoint(LocalEndpointSpec {
            network: network.into(),
            mac: mac(0x10 + i),
            ips: vec![ip(&format!("10.{net}.0.{}", 10 + i))],
            port: *port,
        });
    }
    b.remote_endpoint(RemoteEndpointSpec {
        network: "blue".into(),
        mac: mac(0x20),
        ips: vec![ip("10.1.0.20")],
        vtep: IpAddr::V4(PEER),
    });
    let overlay = b.build().expect("valid config");
    let l2 = L2PipelineBuilder::new(1).build().expect("valid config");
    Arc::new(Pipeline::new(1, l2, overlay, ParseConfig::default()))
}

/// An untagged IPv4/UDP frame of 64 bytes.
fn udp4(dst: MacAddr, src: MacAddr, src_ip: [u8; 4], dst_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src_ip);
    f.extend_from_slice(&dst_ip);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 30, 0, 0]);
    f.resize(64, 0xab);
    f
}

/// Frames the straight paths take, from pod 1 (the first three) and from the peer
/// VTEP (the last, VXLAN VNI 100 to pod 1).
fn templates() -> [Vec<u8>; 4] {
    let switched = udp4(mac(0x11), mac(0x10), [10, 1, 0, 10], [10, 1, 0, 11]);
    let routed = udp4(mac(0xa1), mac(0x10), [10, 1, 0, 10], [10, 2, 0, 12]);
    let encap = udp4(mac(0x20), mac(0x10), [10, 1, 0, 10], [10, 1, 0, 20]);
    let inner = udp4(mac(0x10), mac(0x20), [10, 1, 0, 20], [10, 1, 0, 10]);
    let mut decap = udp4(mac(0xf1), mac(0xf2), [192, 168, 0, 2], [192, 168, 0, 1]);
    decap.truncate(34);
    decap[16..18].copy_from_slice(&((20 + 8 + 8 + inner.len()) as u16).to_be_bytes());
    decap.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb5]);
    decap.extend_from_slice(&((8 + 8 + inner.len()) as u16).to_be_bytes());
    decap.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 100, 0]);
    decap.extend_from_slice(&inner);
    [switched, routed, encap, decap]
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let port = match head % 4 {
        0 => UPLINK,
        k => PODS[usize::from(k) - 1],
    };
    let templates = templates();
    let mut frames = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        if head & 8 == 0 {
            let len = usize::from(len).min(tail.len());
            frames.push(tail[..len].to_vec());
            rest = &tail[len..];
        } else {
            let mut f = templates[usize::from(len % 4)].clone();
            let pairs = usize::from(len >> 2 & 7).min(tail.len() / 2);
            for pair in tail[..2 * pairs].chunks(2) {
                let at = usize::from(pair[0]) % f.len();
                f[at] = pair[1];
            }
            frames.push(f);
            rest = &tail[2 * pairs..];
        }
        if frames.len() == BURST {
            break;
        }
    }
    let p = pipeline();
    let mut table = NeighborTable::new(NeighborConfig::default());
    let now = Instant::now();
    table.learn(IpAddr::V4(PEER), mac(0xf2), now);
    let map = table.reader().load_full();
    let mut limiter = ResolveLimiter::new(table.config());
    let mut scratch = WorkerState::new();
    scratch.bind(&p);
    for _ in 0..1 + usize::from(head & 4 != 0) {
        let mut bufs: Vec<VecBuf> = frames.iter().map(|f| VecBuf::new(f)).collect();
        let mut out = [Verdict::Flood; BURST];
        let mut ctx = Ctx::new(&map, &mut limiter, now);
        let (bytes, one) =
            p.process_burst(p.ingress(port), &mut bufs, &mut ctx, &mut scratch, &mut out);
        assert_eq!(bytes, bufs.iter().map(|b| b.len() as u64).sum::<u64>());
        if let Some(one) = one {
            assert!(out[..frames.len()]
                .iter()
                .all(|v| *v == Verdict::Output(one)));
        }
        for ((frame, buf), v) in frames.iter().zip(&bufs).zip(&out) {
            let mut ctx = Ctx::new(&map, &mut limiter, now);
            let mut alone = VecBuf::new(frame);
            let want = p.process(port, &mut alone, &mut ctx);
            assert_eq!((*v, buf.data()), (want, alone.data()), "{frame:02x?}");
        }
    }
});
