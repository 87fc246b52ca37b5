//! net_null with no-rx=1 is a sink: it takes every burst, counts it, frees it.

mod common;

use dataplane::io::{BufAlloc, Burst, RxQueue, TxQueue, BURST};
use pmd_shims::{MbufAlloc, Port, PortConfig, PortProfile};

#[test]
fn null_sink_counts_what_it_swallows() {
    let _eal = common::eal();
    let pool = common::pool("null_sink", 2047);
    let baseline = pool.in_use_count();
    let profile = PortProfile::Null {
        no_rx: true,
        size: None,
    };
    let mut port = Port::open(&profile, 0).unwrap();
    assert_eq!(port.name(), "net_null0");
    let (mut rxq, mut txq) = port.configure(&PortConfig::default(), &pool).unwrap();
    port.start().unwrap();

    let mut alloc = MbufAlloc::new(pool.clone());
    const ROUNDS: usize = 100;
    let mut sent = 0;
    for r in 0..ROUNDS {
        let mut burst = Burst::new();
        for _ in 0..BURST {
            burst.push(alloc.alloc_copy(&common::frame(r as u8, 64)).unwrap());
        }
        sent += txq[0].tx_burst(&mut burst);
        assert!(burst.is_empty(), "a sink takes everything");
    }
    assert_eq!(sent, ROUNDS * BURST);
    let stats = port.stats();
    assert_eq!(stats.opackets, (ROUNDS * BURST) as u64);
    // DPDK 22.11's net_null counts packets but reports obytes = 0: not asserted.

    let mut got = Burst::new();
    assert_eq!(rxq[0].rx_burst(&mut got), 0, "no-rx=1 receives nothing");
    assert_eq!(pool.in_use_count(), baseline);

    drop((rxq, txq));
    port.close().unwrap();
}
