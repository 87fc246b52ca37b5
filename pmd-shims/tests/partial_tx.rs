//! A full port refuses part of a burst: refused packets stay with the caller, sent
//! ones belong to DPDK, and nothing is freed twice or leaked.

mod common;

use dataplane::buf::PacketBuf;
use dataplane::io::{BufAlloc, Burst, RxQueue, TxQueue, BURST};
use pmd_shims::{MbufAlloc, Port, PortConfig, PortProfile};

#[test]
fn partial_tx_keeps_refused_packets_and_never_double_frees() {
    let _eal = common::eal();
    // net_ring's loopback ring holds 1023 packets (its ring size is fixed at 1024;
    // tx_desc does not shrink it): filling it makes tx refuse.
    let pool = common::pool("partial_tx", 4095);
    let baseline = pool.in_use_count();
    let mut port = Port::open(&PortProfile::Ring {}, 0).unwrap();
    let cfg = PortConfig {
        rx_desc: 64,
        tx_desc: 64,
        ..PortConfig::default()
    };
    let (mut rxq, mut txq) = port.configure(&cfg, &pool).unwrap();
    port.start().unwrap();

    let mut alloc = MbufAlloc::new(pool.clone());
    let mut accepted = 0usize;
    let mut refused_total = 0usize;
    let mut seq: u32 = 0;
    for _ in 0..40 {
        let mut burst = Burst::new();
        for _ in 0..BURST {
            let mut f = common::frame(0, 64);
            f[14..18].copy_from_slice(&seq.to_be_bytes());
            seq += 1;
            burst.push(alloc.alloc_copy(&f).unwrap());
        }
        let first_seq = u32::from_be_bytes(burst[0].data()[14..18].try_into().unwrap());
        let sent = txq[0].tx_burst(&mut burst);
        accepted += sent;
        assert_eq!(burst.len(), BURST - sent);
        if let Some(first_left) = burst.first() {
            // The refused ones are the tail of the burst, in order.
            let s = u32::from_be_bytes(first_left.data()[14..18].try_into().unwrap());
            assert_eq!(s, first_seq + sent as u32);
        }
        refused_total += burst.len();
        drop(burst); // the caller drops (frees) what the port refused
    }
    assert_eq!(accepted, 1023, "the ring takes exactly its capacity");
    assert_eq!(refused_total, 40 * BURST - 1023);
    assert_eq!(
        pool.in_use_count(),
        baseline + 1023,
        "only the ring holds mbufs"
    );

    // Drain the ring: every accepted packet comes back exactly once, in order.
    let mut next = 0u32;
    let mut received = 0;
    loop {
        let mut got = Burst::new();
        if rxq[0].rx_burst(&mut got) == 0 {
            break;
        }
        for m in &got {
            let s = u32::from_be_bytes(m.data()[14..18].try_into().unwrap());
            assert!(s >= next);
            next = s + 1;
        }
        received += got.len();
    }
    assert_eq!(received, 1023);
    assert_eq!(pool.in_use_count(), baseline);

    drop((rxq, txq));
    port.close().unwrap();
}
