//! net_af_packet on both ends of a veth pair: what one port sends the other receives.
//!
//! Needs root and `ip` (creates and deletes its own veth pair); skips otherwise.

mod common;

use std::time::{Duration, Instant};

use dataplane::buf::PacketBuf;
use dataplane::io::{BufAlloc, Burst, RxQueue, TxQueue};
use pmd_shims::MbufAlloc;

#[test]
fn af_packet_ports_talk_over_a_veth_pair() {
    let id = std::process::id() % 100_000;
    let (a, b) = (format!("vsa{id}"), format!("vsb{id}"));
    let Some(_veth) = common::Veth::new(&a, &b) else {
        return;
    };
    assert!(common::ip(&["link", "set", &a, "up"]) && common::ip(&["link", "set", &b, "up"]));

    let _eal = common::eal();
    let pool = common::pool("af_packet", 2047);
    let mut ports = Vec::new();
    let mut queues = Vec::new();
    for (i, iface) in [&a, &b].into_iter().enumerate() {
        let profile = common::af_packet(iface);
        profile.check().unwrap();
        let (port, q) = common::start_port(&profile, i as u32, &pool);
        assert_eq!(port.info().driver_name, "net_af_packet");
        ports.push(port);
        queues.push(q);
    }
    let (mut rx_b, tx_b) = queues.pop().unwrap();
    let (rx_a, mut tx_a) = queues.pop().unwrap();

    // A broadcast frame with a private EtherType: the kernel passes it, nothing answers.
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x0a]);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend((0..50u8).map(|i| i.wrapping_mul(7)));
    let mut alloc = MbufAlloc::new(pool.clone());
    let mut burst = Burst::new();
    burst.push(alloc.alloc_copy(&frame).unwrap());
    assert_eq!(tx_a[0].tx_burst(&mut burst), 1);

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = false;
    while !found && Instant::now() < deadline {
        let mut got = Burst::new();
        rx_b[0].rx_burst(&mut got);
        found = got.iter().any(|m| m.data() == frame.as_slice());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(found, "the frame sent on {a} arrives on {b}");

    drop((rx_a, tx_a, rx_b, tx_b));
    for p in ports {
        p.close().unwrap();
    }
}
