//! Packet-socket ports on both ends of a veth pair: what one sends the other
//! receives; a frame longer than the port's MTU is dropped and counted, not
//! sent; a frame longer than a ring frame is dropped and counted on receive; a
//! full transmit ring leaves the refused frames with the caller; closing the
//! port leaves no socket behind. No DPDK device is probed.
//!
//! Needs root and `ip` (creates and deletes its own veth pair); skips otherwise.

mod common;

use std::time::{Duration, Instant};

use dataplane::buf::PacketBuf;
use dataplane::io::{BufAlloc, Burst, RxQueue, TxQueue};
use pmd_shims::{MbufAlloc, Port, SocketPort, SocketRxQueue};

/// A broadcast frame of `len` bytes with a private EtherType, tagged with `mark`.
fn frame(len: usize, mark: u8) -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x0a, 0x88, 0xb5, mark]);
    f.resize(len, 0x5a);
    f
}

/// The frames marked `mark` that arrive on `rx` within `wait`.
fn arrivals(rx: &mut SocketRxQueue, mark: u8, wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while Instant::now() < deadline {
        let mut got = Burst::new();
        rx.rx_burst(&mut got);
        n += got
            .iter()
            .filter(|m| m.data().len() > 14 && m.data()[14] == mark)
            .count();
        std::thread::sleep(Duration::from_millis(5));
    }
    n
}

/// Packet sockets this process holds: its descriptors' socket inodes that
/// `/proc/self/net/packet` lists (which shows the whole namespace's, other
/// processes' too).
fn packet_sockets() -> usize {
    let table = std::fs::read_to_string("/proc/self/net/packet").unwrap_or_default();
    let packet: std::collections::HashSet<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .filter(|inode| packet.contains(inode.as_str()))
        .count()
}

/// Sends `data` out of `iface` through a plain packet socket (what a pod's
/// kernel would send, bypassing the switch's ports).
fn kernel_send(iface: &str, data: &[u8]) {
    let c = std::ffi::CString::new(iface).unwrap();
    // SAFETY: plain libc calls on a descriptor opened and closed here; the
    // address and buffer are valid for the lengths given.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "socket");
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = libc::if_nametoindex(c.as_ptr()) as i32;
        sll.sll_halen = 6;
        let n = libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(
            n,
            data.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

#[test]
fn packet_socket_ports_talk_over_a_veth_pair() {
    let id = std::process::id() % 100_000;
    let (a, b) = (format!("vka{id}"), format!("vkb{id}"));
    let Some(_veth) = common::Veth::new(&a, &b) else {
        return;
    };
    assert!(common::ip(&["link", "set", &a, "up"]) && common::ip(&["link", "set", &b, "up"]));

    let _eal = common::eal();
    let pool = common::pool("socket", 2047);
    let sockets_before = packet_sockets();
    let (ethdevs_before, _) = Port::ethdev_usage();

    let (port_a, _rx_a, mut tx_a) = SocketPort::open(&a, &pool).unwrap();
    let (port_b, mut rx_b, tx_b) = SocketPort::open(&b, &pool).unwrap();
    assert_eq!(Port::ethdev_usage().0, ethdevs_before, "no ethdev used");
    assert_eq!(packet_sockets(), sockets_before + 2);
    assert_eq!(port_a.mtu(), Some(1500));
    assert_eq!(tx_a.max_frame_len(), 1514);
    assert!(port_a.link().up);
    let mut alloc = MbufAlloc::new(pool.clone());

    // A burst of 32 goes across, in order, whole.
    let mut burst = Burst::new();
    for i in 0..32u8 {
        burst.push(alloc.alloc_copy(&frame(60 + usize::from(i), 1)).unwrap());
    }
    assert_eq!(tx_a.tx_burst(&mut burst), 32);
    assert!(burst.is_empty());
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 32 && Instant::now() < deadline {
        let mut b = Burst::new();
        rx_b.rx_burst(&mut b);
        got.extend(b.iter().map(|m| m.data().to_vec()));
        std::thread::sleep(Duration::from_millis(2));
    }
    let want: Vec<Vec<u8>> = (0..32u8).map(|i| frame(60 + usize::from(i), 1)).collect();
    assert_eq!(got, want);
    assert_eq!(port_b.stats().ipackets, 32);
    assert_eq!(port_a.stats().opackets, 32);

    // Longer than the MTU: taken, dropped, counted in oerrors, never sent.
    let mut burst = Burst::new();
    burst.push(alloc.alloc_copy(&frame(1515, 2)).unwrap());
    assert_eq!(tx_a.tx_burst(&mut burst), 1);
    assert_eq!(port_a.stats().oerrors, 1);
    assert_eq!(arrivals(&mut rx_b, 2, Duration::from_millis(200)), 0);

    // Longer than a ring frame on receive: dropped and counted in ierrors.
    for i in [&a, &b] {
        assert!(common::ip(&["link", "set", i, "mtu", "4000"]));
    }
    kernel_send(&a, &frame(3000, 3));
    kernel_send(&a, &frame(100, 4));
    assert_eq!(
        arrivals(&mut rx_b, 4, Duration::from_millis(300)),
        1,
        "the next frame still comes"
    );
    assert_eq!(port_b.stats().ierrors, 1);
    assert_eq!(port_b.refresh_mtu(), Some(4000));
    assert_eq!(
        tx_b.max_frame_len(),
        2048 - 32,
        "at most what a ring frame holds"
    );

    // A full ring: with the interface down the kernel sends nothing and the
    // ring fills; what does not fit stays with the caller.
    assert!(common::ip(&["link", "set", &a, "down"]));
    let mut burst = Burst::new();
    for _ in 0..32 {
        burst.push(alloc.alloc_copy(&frame(64, 6)).unwrap());
    }
    let mut full = 0;
    for _ in 0..(pmd_shims::packet_socket::TX_FRAMES / 32 + 2) {
        let n = tx_a.tx_burst(&mut burst);
        if n < 32 {
            full += 1;
            assert_eq!(burst.len(), 32 - n, "refused frames stay");
            break;
        }
        for _ in 0..n {
            burst.push(alloc.alloc_copy(&frame(64, 6)).unwrap());
        }
    }
    assert_eq!(full, 1, "the ring of a downed interface fills");
    drop(burst);

    drop((rx_b, tx_b, tx_a, _rx_a));
    drop((port_a, port_b));
    assert_eq!(packet_sockets(), sockets_before, "the sockets are closed");
    assert_eq!(pool.in_use_count(), 0, "every mbuf is back");
}
