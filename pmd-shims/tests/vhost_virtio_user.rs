//! A net_vhost port (the switch side of a DPDK pod) and a net_virtio_user port (the
//! pod side) in one process, over a vhost-user socket: frames cross both ways.

mod common;

use std::time::{Duration, Instant};

use dataplane::buf::PacketBuf;
use dataplane::io::{BufAlloc, Burst, RxQueue, TxQueue};
use pmd_shims::{MbufAlloc, Port, PortConfig, PortProfile, PortRxQueue, PortTxQueue};

/// Sends `frame` on `tx` until it shows up on `rx` (the first sends may race the
/// vhost-user negotiation), or gives up after five seconds.
fn cross(tx: &mut PortTxQueue, rx: &mut PortRxQueue, alloc: &mut MbufAlloc, frame: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut burst = Burst::new();
        burst.push(alloc.alloc_copy(frame).unwrap());
        tx.tx_burst(&mut burst);
        drop(burst);
        std::thread::sleep(Duration::from_millis(20));
        let mut got = Burst::new();
        rx.rx_burst(&mut got);
        if got.iter().any(|m| m.data() == frame) {
            return true;
        }
    }
    false
}

#[test]
fn vhost_and_virtio_user_exchange_frames() {
    let dir = std::env::temp_dir().join(format!("pmd-shims-vhost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("pod.sock");

    let _eal = common::eal();
    let pool = common::pool("vhost", 4095);
    let vhost = PortProfile::VhostUser {
        path: sock.clone(),
        client: false,
        queues: 1,
    };
    let mut sw = Port::open(&vhost, 0).unwrap();
    let (mut sw_rx, mut sw_tx) = sw.configure(&PortConfig::default(), &pool).unwrap();
    sw.start().unwrap();
    assert!(sock.exists(), "net_vhost listens on {}", sock.display());

    let virtio = PortProfile::VirtioUser {
        path: sock.clone(),
        server: false,
        queues: 1,
        mac: Some("02:00:00:00:00:42".into()),
    };
    let mut pod = Port::open(&virtio, 0).unwrap();
    assert_eq!(pod.mac(), [2, 0, 0, 0, 0, 0x42]);
    let (mut pod_rx, mut pod_tx) = pod.configure(&PortConfig::default(), &pool).unwrap();
    pod.start().unwrap();

    let mut alloc = MbufAlloc::new(pool.clone());
    let to_switch = common::frame(0x11, 80);
    let to_pod = common::frame(0x22, 90);
    assert!(
        cross(&mut pod_tx[0], &mut sw_rx[0], &mut alloc, &to_switch),
        "pod -> switch"
    );
    assert!(
        cross(&mut sw_tx[0], &mut pod_rx[0], &mut alloc, &to_pod),
        "switch -> pod"
    );
    assert!(sw.link().up);

    drop((pod_rx, pod_tx));
    pod.close().unwrap();
    drop((sw_rx, sw_tx));
    sw.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
