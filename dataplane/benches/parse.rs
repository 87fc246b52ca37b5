//! ns/packet of `wire::parse` over a burst of 32 on three shapes: a 64-byte UDP frame,
//! a VXLAN frame carrying TCP and a Geneve frame with two options carrying TCP (outer
//! parse alone, and outer plus `parse_inner`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::wire::{
    checksum, parse, parse_inner_into, parse_into, GeneveOption, GeneveRepr, PacketMeta,
    ParseConfig, TunnelKind, VxlanRepr,
};
use dataplane::BURST;

fn ipv4_udp(payload: &[u8], dport: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00];
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn inner_tcp() -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 168, 0, 1, 192, 168, 0, 2,
    ]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

fn frames() -> [(&'static str, Vec<u8>); 3] {
    let udp64 = ipv4_udp(&[0u8; 18], 53);
    let mut vx = vec![0u8; 8];
    VxlanRepr { vni: 42 }.emit(&mut vx);
    vx.extend_from_slice(&inner_tcp());
    let data = [0u8; 8];
    let add = [
        GeneveOption::new(0x0102, 0x01, &data),
        GeneveOption::new(0x0102, 0x02, &data[..4]),
    ];
    let repr = GeneveRepr {
        oam: false,
        critical: false,
        protocol: 0x6558,
        vni: 42,
        options: &[],
        add: &add,
    };
    let mut gn = vec![0u8; repr.buffer_len()];
    repr.emit(&mut gn).unwrap();
    gn.extend_from_slice(&inner_tcp());
    [
        ("udp64", udp64),
        ("vxlan_tcp", ipv4_udp(&vx, 4789)),
        ("geneve_opts_tcp", ipv4_udp(&gn, 6081)),
    ]
}

fn bench_parse(c: &mut Criterion) {
    // A burst of 32 copies of one frame parsed into a metadata array, as the worker
    // does, with `parse_into`. (Returning one `PacketMeta` per iteration would mostly
    // measure criterion's `black_box` copying the struct.)
    let mut group = c.benchmark_group("parse_burst32");
    group.throughput(Throughput::Elements(BURST as u64));
    let cfg = ParseConfig::default();
    for (name, frame) in frames() {
        let burst: Vec<&[u8]> = vec![&frame[..]; BURST];
        let mut metas = [PacketMeta::default(); BURST];
        let outer = parse(&frame).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                for (m, f) in metas.iter_mut().zip(black_box(&burst)) {
                    let _ = parse_into(f, &cfg, m);
                }
                black_box(&metas);
            })
        });
        if outer.tunnel != TunnelKind::None {
            let mut inner = [PacketMeta::default(); BURST];
            group.bench_function(format!("{name}+inner"), |b| {
                b.iter(|| {
                    for ((m, i), f) in metas.iter_mut().zip(&mut inner).zip(black_box(&burst)) {
                        let _ = parse_into(f, &cfg, m);
                        let _ = parse_inner_into(f, m, &cfg, i);
                    }
                    black_box((&metas, &inner));
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
