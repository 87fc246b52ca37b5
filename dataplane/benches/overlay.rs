//! Overlay snapshot costs: ns per `l2_lookup`, `host_lookup` and `route` (IPv4 and
//! IPv6, 10k routes over several prefix lengths; IPv4 also with 100k routes and
//! destinations spread over them), and the time to build a snapshot of 10k
//! endpoints + 10k routes (the cost of every publish).

mod common;
use common::{ep_ip, ep_mac, Rng};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::overlay::{
    Encap, LocalEndpointSpec, NetworkId, NetworkSpec, OverlayBuilder, RemoteEndpointSpec,
    RouteSpec, RouteTarget, UnderlaySpec, VrfId,
};
use dataplane::{MacAddr, PortIdx};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

const NETWORKS: u32 = 100;
const PER_NETWORK: u32 = 100;
const ROUTES: u32 = 10_000;
const PROBES: usize = 1024;

/// 100 networks × 100 endpoints in one tenant (1 in 10 local, the rest behind
/// 200 VTEPs), `v4_routes` IPv4 and `v6_routes` IPv6 static routes in the same
/// VRF over 8 prefix lengths each, plus defaults.
fn builder(v4_routes: u32, v6_routes: u32) -> OverlayBuilder {
    let mut b = OverlayBuilder::new(1);
    b.underlay(UnderlaySpec {
        uplink: PortIdx(0),
        local_vtep_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)),
        local_mac: MacAddr([0x02, 0xff, 0, 0, 0, 1]),
        mtu: 9000,
        on_link: "192.168.0.0/16".parse().unwrap(),
        gateway: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 255, 254))),
    });
    for n in 0..NETWORKS {
        b.network(NetworkSpec {
            name: format!("net{n}"),
            policy_on_change: Default::default(),
            vni: 1000 + n,
            encap: Encap::Vxlan,
            tenant: "t".into(),
            subnets: vec![
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from_bits((10 << 24) | (n << 16)), 16).unwrap()),
                IpNet::V6(
                    Ipv6Net::new(
                        Ipv6Addr::from_bits((0xfd00u128 << 112) | (u128::from(n) << 64)),
                        64,
                    )
                    .unwrap(),
                ),
            ],
            gateway_ips: vec![IpAddr::V4(ep_ip(n, 0) /* 10.n.0.10 */)],
            gateway_mac: MacAddr([0x02, 0xaa, 0, 0, 0, 1]),
            flood_unknown: true,
            conntrack: false,
            conntrack_window_tracking: true,
            vteps: (0..10)
                .map(|v| IpAddr::V4(Ipv4Addr::new(192, 168, 1, (n + v) as u8 % 200 + 2)))
                .collect(),
        });
        for i in 1..=PER_NETWORK {
            let ips = vec![IpAddr::V4(ep_ip(n, i))];
            if i % 10 == 0 && n < 63 {
                b.local_endpoint(LocalEndpointSpec {
                    network: format!("net{n}"),
                    mac: ep_mac(n, i),
                    ips,
                    port: PortIdx(n as u16 + 1),
                });
            } else {
                b.remote_endpoint(RemoteEndpointSpec {
                    network: format!("net{n}"),
                    mac: ep_mac(n, i),
                    ips,
                    vtep: IpAddr::V4(Ipv4Addr::new(192, 168, 1, ((n * 7 + i) % 200) as u8 + 2)),
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
    let mut seen = std::collections::HashSet::new();
    b.route(RouteSpec {
        tenant: "t".into(),
        prefix: "0.0.0.0/0".parse().unwrap(),
        target: via(&mut rng),
    });
    while seen.len() < v4_routes as usize {
        // 100.64.0.0/10 and up: clear of the 10/8 networks.
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
    seen.clear();
    if v6_routes > 0 {
        b.route(RouteSpec {
            tenant: "t".into(),
            prefix: "::/0".parse().unwrap(),
            target: RouteTarget::Blackhole,
        });
    }
    while seen.len() < v6_routes as usize {
        let len = [32u8, 40, 48, 56, 64, 80, 96, 128][(rng.next() % 8) as usize];
        let addr = (0x2001_0db8u128 << 96)
            | (u128::from(rng.next()) << 32)
            | u128::from(rng.next() as u32);
        let p = IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from_bits(addr), len)
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

fn overlay(c: &mut Criterion) {
    let b = builder(ROUTES, ROUTES);
    let s = b.build().expect("valid config");
    let mut rng = Rng(42);

    let mut group = c.benchmark_group("overlay_lookup");
    group.throughput(Throughput::Elements(PROBES as u64));
    let keys: Vec<(NetworkId, MacAddr)> = (0..PROBES)
        .map(|_| {
            let n = (rng.next() % u64::from(NETWORKS)) as u32;
            let i = 1 + (rng.next() % u64::from(PER_NETWORK)) as u32;
            (NetworkId(n as u16), ep_mac(n, i))
        })
        .collect();
    group.bench_function("l2_lookup_10k", |bch| {
        bch.iter(|| {
            for &(n, m) in &keys {
                black_box(s.l2_lookup(black_box(n), black_box(m)));
            }
        })
    });
    let hosts: Vec<(NetworkId, IpAddr)> = keys
        .iter()
        .map(|&(n, m)| {
            (
                n,
                IpAddr::V4(ep_ip(
                    u32::from(n.0),
                    u32::from(m.0[5]) | u32::from(m.0[4]) << 8,
                )),
            )
        })
        .collect();
    group.bench_function("host_lookup_10k", |bch| {
        bch.iter(|| {
            for &(n, ip) in &hosts {
                black_box(s.host_lookup(black_box(n), black_box(ip)));
            }
        })
    });
    // Destinations: a third inside route prefixes (hits at their length), a third
    // in the networks' subnets (connected), a third elsewhere (default route).
    let v4: Vec<IpAddr> = (0..PROBES)
        .map(|k| {
            let r = rng.next() as u32;
            IpAddr::V4(Ipv4Addr::from_bits(match k % 3 {
                0 => 0x6440_0000 | (r & 0x003f_ffff),
                1 => (10 << 24) | (r % NETWORKS) << 16 | (r & 0xffff),
                _ => 0xc000_0000 | (r & 0x0fff_ffff),
            }))
        })
        .collect();
    group.bench_function("route_v4_10k", |bch| {
        bch.iter(|| {
            for &dst in &v4 {
                black_box(s.route(VrfId(0), black_box(dst)));
            }
        })
    });
    let v6: Vec<IpAddr> = (0..PROBES)
        .map(|k| {
            let r = u128::from(rng.next()) << 32 | u128::from(rng.next() as u32);
            IpAddr::V6(Ipv6Addr::from_bits(match k % 3 {
                0 => (0x2001_0db8u128 << 96) | r,
                1 => (0xfd00u128 << 112) | (r % u128::from(NETWORKS)) << 64 | (r & 0xffff),
                _ => (0x2a00u128 << 112) | r,
            }))
        })
        .collect();
    group.bench_function("route_v6_10k", |bch| {
        bch.iter(|| {
            for &dst in &v6 {
                black_box(s.route(VrfId(0), black_box(dst)));
            }
        })
    });
    group.finish();

    // 100k IPv4 routes and 64k destinations spread over them: the table (several
    // MiB) and the probes' working set outgrow the caches, as with many flows,
    // so this is the cost of the probes' cache misses.
    let big = builder(10 * ROUTES, 0).build().expect("valid config");
    let spread: Vec<IpAddr> = (0..PROBES * 64)
        .map(|_| {
            IpAddr::V4(Ipv4Addr::from_bits(
                0x6440_0000 | (rng.next() as u32 & 0x003f_ffff),
            ))
        })
        .collect();
    let mut group = c.benchmark_group("overlay_lookup");
    group.throughput(Throughput::Elements(spread.len() as u64));
    group.sample_size(20);
    group.bench_function("route_v4_100k_spread", |bch| {
        bch.iter(|| {
            for &dst in &spread {
                black_box(big.route(VrfId(0), black_box(dst)));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("overlay_build");
    group.sample_size(20);
    let b = builder(ROUTES, 0);
    group.bench_function("10k_endpoints_10k_routes", |bch| {
        bch.iter(|| black_box(b.build().expect("valid config")))
    });
    group.finish();
}

criterion_group!(benches, overlay);
criterion_main!(benches);
