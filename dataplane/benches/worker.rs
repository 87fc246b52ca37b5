//! ns/packet of one worker poll round on the classic L2 path, the whole of what a
//! worker adds around the classifier: the snapshot load, the rx pass over the
//! burst (counters, prefetch, the multi-segment check), `classify_burst`, the
//! dispatch to the tx batch, the flush and the counters' publication.
//!
//! The `vswitch-bench` figures put these at about 9 cycles/packet over a bare
//! rx→lookup→tx loop, too few to show through a shared VM's run-to-run noise with
//! DPDK's PMDs in the loop; here they are all there is. The sink port's tx queue
//! feeds the replay port's rx queue (`testio` rings over `VecBuf`s), so the same
//! frames go round with no allocation. The ring's uncontended mutex, taken once
//! per burst on each side, is in the figure (a few ns per burst).
//!
//! `worker_poll_l2/1`: one destination MAC (a burst is decided by one lookup);
//! `/1024`: 1024 MACs behind the sink, each frame its own lookup, as the `l2`
//! scenario at 1k flows. `/1_mtu1500`: one MAC, to a sink with an MTU of 1500,
//! so the worker's pass over the frames' lengths before `tx_burst` (the
//! `tx_oversize` check) runs; `/1` is a sink without an MTU, which skips it.
//! `worker_poll_l2/rings_only` is the same rings' rx and tx
//! of a burst with no worker between: what to subtract, with the `l2` bench's
//! `classify_burst`, to get the worker's own share. Criterion reports time per
//! round of 32 packets; the throughput line is per packet. Needs the `testio` feature (the bench's
//! `required-features`): `cargo bench -p dataplane --features testio --bench worker`.

mod common;
use common::mac;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::testio::{eth_frame, Ring, VecAlloc, VecRxQueue, VecTxQueue};
use dataplane::{
    Burst, GroupId, IdleBackoff, L2PipelineBuilder, Pipeline, PortIdx, RxQueue, SnapshotCell,
    TxQueue, VecBuf, Worker, WorkerId, BURST,
};

fn worker_poll(c: &mut Criterion) {
    let mut group = c.benchmark_group("worker_poll_l2");
    group.throughput(Throughput::Elements(BURST as u64));
    for (macs, mtu) in [(1u32, None), (1024, None), (1, Some(1500usize))] {
        let mut b = L2PipelineBuilder::new(1);
        b.port(PortIdx(0), "replay", GroupId(0))
            .port(PortIdx(1), "sink", GroupId(0));
        for i in 0..macs {
            b.mac(mac(i), PortIdx(1));
        }
        let cell = Arc::new(SnapshotCell::new(Pipeline::l2_only(
            b.build().expect("valid config"),
        )));
        // replay (port 0) receives from the ring the sink (port 1) sends into.
        let ring: Ring<VecBuf> = Ring::new();
        let mut worker = Worker::new(
            WorkerId(0),
            vec![(PortIdx(0), VecRxQueue::new(ring.clone()))],
            vec![
                None,
                Some(
                    VecTxQueue::new(ring.clone())
                        .with_max_frame(mtu.map_or(usize::MAX, |m| m + 14)),
                ),
            ],
            VecAlloc::unlimited(),
            cell,
            IdleBackoff::busy_poll(),
            Arc::new(AtomicBool::new(false)),
        )
        .expect("two ports, one rx queue");
        // A frame for every MAC in turn, as the scenario's capture has, and as
        // many frames going round whatever the MAC count, so the two cases differ
        // only in their lookups.
        let frames = 1024usize.max(macs as usize);
        for i in 0..frames {
            let dst = mac(i as u32 % macs);
            ring.push(VecBuf::new(&eth_frame(dst, mac(u32::MAX), 60)));
        }
        let id = match mtu {
            None => macs.to_string(),
            Some(m) => format!("{macs}_mtu{m}"),
        };
        group.bench_function(BenchmarkId::from_parameter(id), |bch| {
            bch.iter(|| {
                let n = worker.poll_once();
                assert_eq!(n, BURST, "every round forwards a full burst");
            })
        });
        assert_eq!(ring.len(), frames, "no frame lost going round");
    }
    let ring: Ring<VecBuf> = Ring::new();
    for i in 0..4 * BURST {
        ring.push(VecBuf::new(&eth_frame(mac(i as u32), mac(u32::MAX), 60)));
    }
    let (mut rx, mut tx) = (VecRxQueue::new(ring.clone()), VecTxQueue::new(ring));
    let mut burst = Burst::new();
    group.bench_function("rings_only", |bch| {
        bch.iter(|| {
            assert_eq!(rx.rx_burst(&mut burst), BURST);
            assert_eq!(tx.tx_burst(&mut burst), BURST);
        })
    });
    group.finish();
}

criterion_group!(benches, worker_poll);
criterion_main!(benches);
