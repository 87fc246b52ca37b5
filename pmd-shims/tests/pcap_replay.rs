//! net_pcap with infinite_rx replays a capture file from memory, forever.

mod common;

use std::io::Write;
use std::path::PathBuf;

use dataplane::buf::PacketBuf;
use dataplane::io::{BufAlloc, Burst, RxQueue, TxQueue};
use pmd_shims::{MbufAlloc, Port, PortConfig, PortProfile};

/// A classic pcap file (microsecond timestamps, Ethernet link type) by hand.
fn write_pcap(path: &PathBuf, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic
    out.extend_from_slice(&2u16.to_le_bytes()); // version major
    out.extend_from_slice(&4u16.to_le_bytes()); // version minor
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::File::create(path)
        .unwrap()
        .write_all(&out)
        .unwrap();
}

#[test]
fn pcap_infinite_rx_replays_the_file() {
    let _eal = common::eal();
    let dir = std::env::temp_dir().join(format!("pmd-shims-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("three.pcap");
    let frames = vec![
        common::frame(1, 60),
        common::frame(2, 100),
        common::frame(3, 1514),
    ];
    write_pcap(&file, &frames);

    let pool = common::pool("pcap_rx", 2047);
    let profile = PortProfile::Pcap {
        rx_pcap: Some(file.clone()),
        tx_pcap: None,
        rx_iface: None,
        tx_iface: None,
        infinite_rx: true,
    };
    let mut port = Port::open(&profile, 0).unwrap();
    let info = port.info();
    assert_eq!(info.driver_name, "net_pcap");
    assert!(info.max_rx_queues >= 1);
    // DPDK 22.11: with only rx_pcap the PMD still offers a tx queue, which counts
    // and drops what it is given.
    assert!(info.max_tx_queues >= 1, "{info:?}");
    let (mut rxq, mut txq) = port.configure(&PortConfig::default(), &pool).unwrap();
    port.start().unwrap();
    let baseline = pool.in_use_count();

    // Several bursts: the three frames come round again and again.
    let mut seen = 0usize;
    for _ in 0..10 {
        let mut got = Burst::new();
        let n = rxq[0].rx_burst(&mut got);
        assert_eq!(n, got.len());
        for m in &got {
            assert_eq!(m.data(), frames[seen % 3].as_slice(), "frame {seen}");
            seen += 1;
        }
    }
    assert!(seen >= 30, "replayed {seen} frames in 10 bursts");
    assert_eq!(pool.in_use_count(), baseline);

    // The dummy tx queue swallows packets and counts them.
    let mut alloc = MbufAlloc::new(pool.clone());
    let mut burst = Burst::new();
    burst.push(alloc.alloc_copy(&frames[0]).unwrap());
    assert_eq!(txq[0].tx_burst(&mut burst), 1);
    assert_eq!(pool.in_use_count(), baseline);
    assert!(port.stats().ipackets >= seen as u64);

    drop((rxq, txq));
    port.stop().unwrap();
    port.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
