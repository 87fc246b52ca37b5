//! net_ring loops what is sent back to the receive side: bytes survive the trip and
//! every mbuf returns to its pool.

mod common;

use dataplane::buf::PacketBuf;
use dataplane::io::{BufAlloc, Burst, RxQueue, TxQueue};
use pmd_shims::{MbufAlloc, Port, PortConfig, PortProfile};

#[test]
fn ring_port_loops_tx_to_rx() {
    let _eal = common::eal();
    let pool = common::pool("ring_loop", 1023);
    let baseline = pool.in_use_count();

    let mut port = Port::open(&PortProfile::Ring {}, 0).unwrap();
    assert_eq!(port.name(), "net_ring0");
    let info = port.info();
    assert_eq!(info.driver_name, "net_ring");
    let (mut rxq, mut txq) = port.configure(&PortConfig::default(), &pool).unwrap();
    port.start().unwrap();
    assert!(port.link().up);

    let mut alloc = MbufAlloc::new(pool.clone());
    let frames: Vec<Vec<u8>> = (0..20u8)
        .map(|i| common::frame(i, 60 + usize::from(i)))
        .collect();
    let mut burst = Burst::new();
    for f in &frames {
        burst.push(alloc.alloc_copy(f).unwrap());
    }
    assert_eq!(pool.in_use_count(), baseline + 20);
    assert_eq!(txq[0].tx_burst(&mut burst), 20);
    assert!(burst.is_empty());

    let mut got = Burst::new();
    assert_eq!(rxq[0].rx_burst(&mut got), 20);
    for (m, f) in got.iter().zip(&frames) {
        assert_eq!(m.data(), f.as_slice());
        assert_eq!(m.nb_segs(), 1);
    }
    let stats = port.stats();
    assert_eq!(stats.opackets, 20);
    assert_eq!(stats.ipackets, 20);
    // DPDK 22.11's net_ring counts packets, not bytes (ibytes/obytes stay 0).

    // Received packets can be edited in place and sent again.
    let mut again: Burst<_> = got.drain(..).collect();
    for m in again.iter_mut() {
        m.prepend(4)
            .unwrap()
            .copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    }
    assert_eq!(txq[0].tx_burst(&mut again), 20);
    assert_eq!(rxq[0].rx_burst(&mut got), 20);
    assert_eq!(&got[3].data()[..4], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&got[3].data()[4..], frames[3].as_slice());
    drop(got);

    assert_eq!(
        pool.in_use_count(),
        baseline,
        "every mbuf is back in the pool"
    );
    drop((rxq, txq));
    port.stop().unwrap();
    port.close().unwrap();
}
