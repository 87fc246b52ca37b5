//! ns per operation of the conntrack table of one worker, at 1k, 100k and 1M
//! connections: a lookup that hits (either direction), one that misses, a
//! packet of an existing connection (lookup and update), and a new connection
//! (insert, then removed so the size stays); the flush of a zone of 10k
//! entries; and the Maglev table build at
//! M = 65537 with 100 and 1000 backends of equal weight, and 1000 of weights
//! 1..=1000.
//!
//! Tuples are visited in a shuffled order, so at 1M the entries (152 MB) are
//! cache misses, as in a worker with that many live connections.

mod common;
use common::Rng;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::pipeline::conntrack::{ConntrackTable, CtL4, CtPacket, CtTimeouts, CtTuple};
use dataplane::pipeline::lb::maglev::{BackendState, MaglevBackend, MaglevTable, DEFAULT_SIZE};

const UDP: u8 = 17;

/// Connection `i`: 10.x.y.z:port → 172.16.0.1:53, distinct for every i < 2³².
fn tuple(i: u32) -> CtTuple {
    let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 8)));
    let port = 1024 + (i & 0xff) as u16;
    CtTuple::new(a, port, IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1)), 53, UDP)
}

fn packet(t: CtTuple) -> CtPacket {
    CtPacket {
        zone: 1,
        tuple: t,
        l4: CtL4::Udp,
    }
}

/// A table with `n` answered UDP connections, and the visiting order.
fn setup(n: u32) -> (ConntrackTable, Vec<CtTuple>) {
    let mut ct = ConntrackTable::new(n + 1024, &CtTimeouts::default(), 7).unwrap();
    for i in 0..n {
        let t = tuple(i);
        ct.track(&packet(t), 0, true).unwrap();
        ct.track(&packet(t.reversed()), 0, true).unwrap();
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut order: Vec<CtTuple> = (0..n)
        .map(|i| {
            let t = tuple(i);
            if rng.next() & 1 == 0 {
                t
            } else {
                t.reversed()
            }
        })
        .collect();
    for i in (1..order.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    (ct, order)
}

fn conntrack(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(3));
    for n in [1_000u32, 100_000, 1_000_000] {
        let (mut ct, order) = setup(n);
        let mut k = 0usize;
        g.bench_function(BenchmarkId::new("lookup_hit", n), |b| {
            b.iter(|| {
                k = (k + 1) % order.len();
                black_box(ct.find_live(1, &order[k], 1))
            })
        });
        let keys: Vec<(u32, CtTuple)> = order.iter().map(|t| (1, *t)).collect();
        let mut out = vec![None; 32];
        let mut at = 0usize;
        g.throughput(Throughput::Elements(32));
        g.bench_function(BenchmarkId::new("lookup_hit_burst32", n), |b| {
            b.iter(|| {
                at = if at + 64 > keys.len() { 0 } else { at + 32 };
                ct.find_burst(&keys[at..at + 32], 1, &mut out);
                black_box(&out);
            })
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("lookup_miss", n), |b| {
            let mut m = n;
            b.iter(|| {
                m = m.wrapping_add(1) | 0x8000_0000;
                black_box(ct.find_live(1, &tuple(m), 1))
            })
        });
        g.bench_function(BenchmarkId::new("established_packet", n), |b| {
            b.iter(|| {
                k = (k + 1) % order.len();
                black_box(ct.track(&packet(order[k]), 1, true).unwrap())
            })
        });
        g.bench_function(BenchmarkId::new("insert_remove", n), |b| {
            let mut m = 0u32;
            b.iter(|| {
                m = m.wrapping_add(1);
                let hit = ct.track(&packet(tuple(0x8000_0000 | m)), 1, true).unwrap();
                ct.remove(hit.handle);
            })
        });
        if n == 1_000_000 {
            eprintln!(
                "conntrack: {} bytes per entry, {} MB for {n} connections",
                ConntrackTable::entry_bytes(),
                ct.memory_bytes() / 1_000_000
            );
        }
    }
    g.finish();
}

/// `ct flush zone=1` with 10k entries in zone 1 among 20k.
fn flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_flush");
    g.sample_size(20);
    g.bench_function("zone_10k_of_20k", |b| {
        b.iter_batched(
            || {
                let mut ct = ConntrackTable::new(20_000, &CtTimeouts::default(), 3).unwrap();
                for i in 0..20_000u32 {
                    let p = CtPacket {
                        zone: 1 + (i & 1),
                        ..packet(tuple(i))
                    };
                    ct.track(&p, 0, true).unwrap();
                }
                ct
            },
            |mut ct| black_box(ct.flush(|v| v.zone == 1, &mut |_| {})),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn maglev(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build");
    g.sample_size(20);
    for n in [100u64, 1000] {
        let set: Vec<MaglevBackend> = (0..n)
            .map(|i| MaglevBackend {
                id: i * 7919 + 1,
                weight: 100,
                state: BackendState::Active,
            })
            .collect();
        g.bench_with_input(BenchmarkId::new("m65537", n), &set, |b, set| {
            b.iter(|| black_box(MaglevTable::build(DEFAULT_SIZE, set).unwrap()))
        });
    }
    // Unequal weights: 1000 backends of weights 1..=1000.
    let set: Vec<MaglevBackend> = (0..1000u64)
        .map(|i| MaglevBackend {
            id: i * 7919 + 1,
            weight: i as u16 + 1,
            state: BackendState::Active,
        })
        .collect();
    g.bench_with_input(BenchmarkId::new("m65537_weighted", 1000), &set, |b, set| {
        b.iter(|| black_box(MaglevTable::build(DEFAULT_SIZE, set).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, conntrack, flush, maglev);
criterion_main!(benches);
