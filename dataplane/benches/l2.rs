//! ns/packet of L2 classification over a burst of 32 `VecBuf`s, with a MAC table of
//! 1 and of 1024 entries (hit in both cases).

mod common;
use common::mac;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::l2::Verdicts;
use dataplane::{GroupId, L2PipelineBuilder, MacAddr, PortIdx, VecBuf, BURST};

fn frame(dst: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&mac(u32::MAX).0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

fn l2_classify(c: &mut Criterion) {
    let mut group = c.benchmark_group("l2_classify_burst32");
    group.throughput(Throughput::Elements(BURST as u64));
    for macs in [1u32, 1024] {
        let mut b = L2PipelineBuilder::new(1);
        for p in 0..4u16 {
            b.port(PortIdx(p), format!("p{p}"), GroupId(0));
        }
        for i in 0..macs {
            b.mac(mac(i), PortIdx(1 + (i % 3) as u16));
        }
        let l2 = b.build().expect("valid config");
        // Destinations spread over the table, so lookups are not all one cache line.
        let burst: Vec<VecBuf> = (0..BURST as u32)
            .map(|i| VecBuf::new(&frame(mac((i * 37) % macs))))
            .collect();
        let mut verdicts = Verdicts::new();
        group.bench_with_input(BenchmarkId::from_parameter(macs), &burst, |bch, burst| {
            bch.iter(|| {
                l2.classify_burst(PortIdx(0), black_box(burst), &mut verdicts);
                black_box(&verdicts);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, l2_classify);
criterion_main!(benches);
