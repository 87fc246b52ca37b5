//! The MTU a port really has, measured on net_af_packet over a veth pair whose
//! interfaces have an MTU of 1400: DPDK's own record says 1500, the kernel enforces
//! 1400, and a longer frame is taken by `tx_burst` (reported sent) and never
//! arrives. That is why the worker holds frames to `max_frame_len` before
//! `tx_burst`, and why `Port::mtu` asks the kernel.
//!
//! Needs root and `ip` (creates and deletes its own veth pair); skips otherwise.

mod common;

use std::time::{Duration, Instant};

use dataplane::buf::PacketBuf;
use dataplane::io::{BufAlloc, Burst, RxQueue, TxQueue};
use pmd_shims::{MbufAlloc, Port, PortConfig, PortProfile, PortRxQueue, PortTxQueue};

/// A broadcast frame of `len` bytes with a private EtherType, tagged with `mark`.
fn frame(len: usize, mark: u8) -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x0a, 0x88, 0xb5, mark]);
    f.resize(len, 0x5a);
    f
}

/// Whether a frame marked `mark` arrives on `rx` within a second.
fn arrives(rx: &mut PortRxQueue, mark: u8) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let mut got = Burst::new();
        rx.rx_burst(&mut got);
        if got.iter().any(|m| m.data().get(14) == Some(&mark)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn af_packet_mtu_is_the_kernel_interfaces() {
    let id = std::process::id() % 100_000;
    let (a, b) = (format!("vma{id}"), format!("vmb{id}"));
    let Some(_veth) = common::Veth::new(&a, &b) else {
        return;
    };
    for i in [&a, &b] {
        assert!(
            common::ip(&["link", "set", i, "mtu", "1400"]) && common::ip(&["link", "set", i, "up"])
        );
    }

    let _eal = common::eal();
    let pool = common::pool("af_packet_mtu", 2047);
    let mut ports = Vec::new();
    let mut queues = Vec::new();
    for (i, iface) in [&a, &b].into_iter().enumerate() {
        let (port, q) = common::start_port(&common::af_packet(iface), i as u32, &pool);
        ports.push(port);
        queues.push(q);
    }
    // DPDK records 1500 at configure; the interface has 1400.
    assert_eq!(ports[0].dpdk_mtu(), Some(1500));
    assert_eq!(ports[0].mtu(), Some(1400));
    let (mut rx_b, _tx_b) = queues.pop().unwrap();
    let (_rx_a, mut tx_a) = queues.pop().unwrap();
    assert_eq!(tx_a[0].max_frame_len(), 1414);

    let mut alloc = MbufAlloc::new(pool.clone());
    let mut send = |tx: &mut PortTxQueue, len: usize, mark: u8| {
        let mut burst = Burst::new();
        burst.push(alloc.alloc_copy(&frame(len, mark)).unwrap());
        tx.tx_burst(&mut burst)
    };
    assert_eq!(send(&mut tx_a[0], 1414, 1), 1);
    assert!(
        arrives(&mut rx_b[0], 1),
        "a frame of MTU + 14 bytes arrives"
    );
    // One byte more: the PMD takes it and reports it sent, the kernel drops it.
    let before = ports[0].stats();
    assert_eq!(send(&mut tx_a[0], 1515, 2), 1, "tx_burst reports it sent");
    assert!(!arrives(&mut rx_b[0], 2), "but it never arrives");
    let after = ports[0].stats();
    assert_eq!(after.opackets, before.opackets + 1, "counted as sent");
    assert_eq!(after.oerrors, before.oerrors, "and not as an error");

    // The interface changed under the port: refresh_mtu picks it up.
    assert!(common::ip(&["link", "set", &a, "mtu", "1300"]));
    assert_eq!(ports[0].refresh_mtu(), Some(1300));
    assert_eq!(tx_a[0].max_frame_len(), 1314);

    // Jumbo interfaces: the PMD's ring frame is the limit (2016 bytes of a
    // 2048-byte frame). One byte more is freed by the PMD, counted in oerrors
    // and still reported sent.
    for i in [&a, &b] {
        assert!(common::ip(&["link", "set", i, "mtu", "9000"]));
    }
    assert_eq!(ports[0].refresh_mtu(), Some(9000));
    assert_eq!(
        tx_a[0].max_frame_len(),
        pmd_shims::profile::AF_PACKET_MAX_FRAME
    );
    assert_eq!(pmd_shims::profile::AF_PACKET_MAX_FRAME, 2016);
    assert_eq!(send(&mut tx_a[0], 2016, 3), 1);
    assert!(arrives(&mut rx_b[0], 3), "a frame of 2016 bytes arrives");
    let before = ports[0].stats();
    assert_eq!(send(&mut tx_a[0], 2017, 4), 1, "tx_burst reports it sent");
    assert!(!arrives(&mut rx_b[0], 4), "but it never arrives");
    let after = ports[0].stats();
    assert_eq!(after.oerrors, before.oerrors + 1, "DPDK counts it an error");

    // A sink has no MTU: no limit.
    let mut null = Port::open(
        &PortProfile::Null {
            no_rx: true,
            size: None,
        },
        9,
    )
    .unwrap();
    let (_, null_tx) = null.configure(&PortConfig::default(), &pool).unwrap();
    assert_eq!(null.mtu(), None);
    assert_eq!(null_tx[0].max_frame_len(), usize::MAX);
    drop(null_tx);
    null.close().unwrap();

    drop((_rx_a, tx_a, rx_b, _tx_b));
    for p in ports {
        p.close().unwrap();
    }
}
