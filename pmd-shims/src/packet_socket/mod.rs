//! A port on a kernel interface through a packet socket of the switch's own,
//! with no DPDK device behind it.
//!
//! Why not `net_af_packet`: every DPDK port takes one of the build's
//! `RTE_MAX_ETHPORTS` ethdev slots (32 in Debian's DPDK), so a node could hold
//! ~31 kernel pods, and the PMD's probe waits for about four kernel RCU grace
//! periods (~50 ms): its socket is created for every protocol, so its rings
//! and its bind each unhook it from the receive path first. This port opens an
//! `AF_PACKET` socket with protocol 0 (not hooked anywhere), sets up its
//! TPACKET_V2 rings and only then binds it to the interface for every
//! protocol: no grace period on the way up, and no frame of another interface
//! queued before the bind. Closing it still waits for one (the kernel's
//! `packet_release`), off any ADD's path.
//!
//! The data path is the same as the PMD's: a `PACKET_MMAP` receive ring read by
//! polling its status words (an idle port costs one load per poll, no system
//! call), and a transmit ring filled frame by frame and kicked with one
//! `sendto` per burst (`PACKET_QDISC_BYPASS`: straight to the driver;
//! `PACKET_LOSS`: a frame the kernel refuses is skipped, not left to stall the
//! ring). Frames are copied between the rings and mbufs of the switch's pool,
//! so the worker sees the same buffers as from a DPDK port.
//!
//! One socket, one receive ring and one transmit ring: the receive queue goes
//! to one worker, and the transmit queue is shared by every worker through
//! [`dataplane::io::SharedTxQueue`] (one lock per burst) when there are several.
//! One socket per worker (with `PACKET_FANOUT`) would spare that lock but cost
//! each pod a socket, two rings and a grace period per worker, for pods whose
//! traffic is mostly far below one worker's rate.
//!
//! What is dropped here is counted: frames longer than a ring frame or an mbuf
//! (`ierrors` on receive, `oerrors` on transmit), receive bursts that found the
//! pool empty (`rx_nombuf`, the frames stay in the ring), and the kernel's own
//! drops when the receive ring was full (`imissed`, from `PACKET_STATISTICS`).

pub mod ring;

use std::cell::Cell;
use std::ffi::CString;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dataplane::buf::PacketBuf;
use dataplane::io::{Burst, RxQueue, TxQueue, BURST};

use crate::mbuf::Mbuf;
use crate::mempool::Mempool;
use crate::port::{kernel_mtu, LinkStatus, PortStats, ETHER_HDR_LEN};
use crate::profile::{self, ProfileError};
use ring::{FrameRing, TxRefusal};

/// Bytes per ring frame: a 1500-byte MTU frame with a VLAN tag and the
/// kernel's header in front, and two frames to a page.
pub const FRAME_SIZE: usize = 2048;
/// Receive ring frames (1 MiB of kernel memory per port).
pub const RX_FRAMES: usize = 512;
/// Transmit ring frames (512 KiB per port).
pub const TX_FRAMES: usize = 256;
/// Ring block size: one page, so the kernel never needs more than order-0
/// pages for a ring, however fragmented its memory.
const BLOCK_SIZE: usize = 4096;
/// `TPACKET_V2` of `enum tpacket_versions`.
const TPACKET_V2: libc::c_int = 1;

/// Why a socket port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SocketPortError {
    /// The interface name is invalid or no such interface exists.
    #[error(transparent)]
    Interface(#[from] ProfileError),
    /// A system call failed.
    #[error("interface {iface:?}: {op}: {err}")]
    Syscall {
        /// The interface.
        iface: String,
        /// The call (`socket`, `setsockopt(PACKET_RX_RING)`, `mmap`, `bind`, …).
        op: &'static str,
        /// The kernel's error.
        err: std::io::Error,
    },
}

/// Counters kept by the queues, one writer each (the rx queue's owner, the tx
/// queue's holder): updated with a load and a store, no locked instruction.
#[derive(Debug, Default)]
struct Counters {
    ipackets: AtomicU64,
    ibytes: AtomicU64,
    opackets: AtomicU64,
    obytes: AtomicU64,
    /// Received frames longer than a ring frame or an mbuf, dropped.
    rx_too_long: AtomicU64,
    /// Receive bursts that found the pool empty.
    rx_nombuf: AtomicU64,
    /// Frames to send longer than the port carries, dropped.
    tx_too_long: AtomicU64,
    /// Failed kicks (`sendto` errors other than "try again").
    tx_errors: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The socket and its rings, shared by the port and its queues; unmapped and
/// closed when the last of them goes.
#[derive(Debug)]
struct SocketShared {
    sock: PreparedSocket,
    iface: String,
    if_index: u32,
    /// The longest frame the tx queue takes: the interface's MTU plus the
    /// Ethernet header, at most what a ring frame holds.
    max_frame: AtomicUsize,
    counters: Counters,
    /// The kernel's receive drops (`PACKET_STATISTICS` resets them on each
    /// read): summed here.
    kernel_drops: Mutex<u64>,
}

/// A packet socket with its rings set up and mapped, bound to no interface:
/// with protocol 0 it receives nothing. Setting up the two rings is what
/// takes an opening's time (each waits for an RCU grace period in the
/// kernel's `packet_set_ring`, ~10-20 ms), so these can be made ahead of
/// need ([`SocketPort::open_prepared`] then only binds one).
#[derive(Debug)]
pub struct PreparedSocket {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
}

// SAFETY: `map` is a shared mapping owned by this value (unmapped once, in
// drop); the rings within it are accessed through the queues, each of which
// has one user at a time (`&mut self`).
unsafe impl Send for PreparedSocket {}
// SAFETY: nothing is written through `&self`.
unsafe impl Sync for PreparedSocket {}

impl Drop for PreparedSocket {
    fn drop(&mut self) {
        // SAFETY: map/map_len are the mapping made in `new`, unmapped once
        // here; no ring refers to it any more (the queues hold this value,
        // through their port's shared state).
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
        // The descriptor closes with `fd`.
    }
}

impl PreparedSocket {
    /// A new socket with its rings, bound to nothing.
    ///
    /// # Errors
    /// [`SocketPortError::Syscall`] (not root, out of memory for the rings).
    pub fn new() -> Result<PreparedSocket, SocketPortError> {
        let what = "(unbound)";
        // Protocol 0: the socket receives nothing until it is bound, so
        // setting up its rings needs no unhooking and nothing of another
        // interface gets queued.
        // SAFETY: a plain socket call; the descriptor is owned right below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(errno_err(what, "socket(AF_PACKET)"));
        }
        // SAFETY: raw is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        let opts: [(&'static str, libc::c_int, &libc::c_int); 4] = [
            (
                "setsockopt(PACKET_VERSION)",
                libc::PACKET_VERSION,
                &TPACKET_V2,
            ),
            ("setsockopt(PACKET_LOSS)", libc::PACKET_LOSS, &one),
            (
                "setsockopt(PACKET_QDISC_BYPASS)",
                libc::PACKET_QDISC_BYPASS,
                &one,
            ),
            // Frames the host itself sends out of the interface are not the
            // interface's traffic for the switch.
            (
                "setsockopt(PACKET_IGNORE_OUTGOING)",
                libc::PACKET_IGNORE_OUTGOING,
                &one,
            ),
        ];
        for (op, name, value) in opts {
            set_opt(&fd, what, op, name, value)?;
        }
        set_opt(
            &fd,
            what,
            "setsockopt(PACKET_RX_RING)",
            libc::PACKET_RX_RING,
            &ring_req(RX_FRAMES),
        )?;
        set_opt(
            &fd,
            what,
            "setsockopt(PACKET_TX_RING)",
            libc::PACKET_TX_RING,
            &ring_req(TX_FRAMES),
        )?;
        let map_len = (RX_FRAMES + TX_FRAMES) * FRAME_SIZE;
        // SAFETY: maps the socket's two rings (rx first, then tx, as the kernel
        // lays them out) shared; checked for MAP_FAILED below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(errno_err(what, "mmap"));
        }
        let map = NonNull::new(map.cast::<u8>()).expect("mmap never returns NULL on success");
        Ok(PreparedSocket { fd, map, map_len })
    }
}

fn errno_err(iface: &str, op: &'static str) -> SocketPortError {
    SocketPortError::Syscall {
        iface: iface.to_owned(),
        op,
        err: std::io::Error::last_os_error(),
    }
}

fn set_opt<T>(
    fd: &OwnedFd,
    iface: &str,
    op: &'static str,
    name: libc::c_int,
    value: &T,
) -> Result<(), SocketPortError> {
    // SAFETY: fd is an open packet socket; value points to a T of the size given.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(errno_err(iface, op));
    }
    Ok(())
}

/// `struct tpacket_req` (the ABI's layout: four unsigned ints).
#[repr(C)]
struct TpacketReq {
    block_size: libc::c_uint,
    block_nr: libc::c_uint,
    frame_size: libc::c_uint,
    frame_nr: libc::c_uint,
}

fn ring_req(frames: usize) -> TpacketReq {
    TpacketReq {
        block_size: BLOCK_SIZE as u32,
        block_nr: (frames * FRAME_SIZE / BLOCK_SIZE) as u32,
        frame_size: FRAME_SIZE as u32,
        frame_nr: frames as u32,
    }
}

/// A kernel interface's port over a packet socket: the control-path handle.
#[derive(Debug)]
pub struct SocketPort {
    shared: Arc<SocketShared>,
}

/// Its receive queue, owned by one worker.
#[derive(Debug)]
pub struct SocketRxQueue {
    shared: Arc<SocketShared>,
    ring: FrameRing,
    pool: Arc<Mempool>,
    _not_sync: PhantomData<Cell<()>>,
}

/// Its transmit queue, owned by one worker or shared behind a lock.
#[derive(Debug)]
pub struct SocketTxQueue {
    shared: Arc<SocketShared>,
    ring: FrameRing,
    /// Frames on the ring the kernel has not been told of (a kick that failed
    /// for want of buffers): the next burst kicks even if it adds none.
    unkicked: bool,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: a queue's ring points into the mapping its `shared` keeps alive; the
// queue is its ring's only user on this side, wherever it moves.
unsafe impl Send for SocketRxQueue {}
// SAFETY: as above.
unsafe impl Send for SocketTxQueue {}

impl SocketPort {
    /// Opens a packet socket on kernel interface `iface` with its receive and
    /// transmit rings, bound to the interface for every protocol and
    /// promiscuous (the membership goes with the socket); `pool` is where
    /// received frames are copied to. Returns the port and its two queues.
    ///
    /// # Errors
    /// [`SocketPortError::Interface`] for a name the kernel would refuse or an
    /// interface that does not exist, [`SocketPortError::Syscall`] otherwise
    /// (not root, out of memory for the rings).
    pub fn open(
        iface: &str,
        pool: &Arc<Mempool>,
    ) -> Result<(SocketPort, SocketRxQueue, SocketTxQueue), SocketPortError> {
        profile::iface_exists(iface)?;
        SocketPort::open_prepared(PreparedSocket::new()?, iface, pool)
    }

    /// [`open`](Self::open) with a socket whose rings are set up already:
    /// binds it to `iface` (tens of microseconds).
    ///
    /// # Errors
    /// As [`open`](Self::open); on an error the prepared socket is closed.
    pub fn open_prepared(
        sock: PreparedSocket,
        iface: &str,
        pool: &Arc<Mempool>,
    ) -> Result<(SocketPort, SocketRxQueue, SocketTxQueue), SocketPortError> {
        profile::iface_exists(iface)?;
        let c_iface = CString::new(iface).map_err(|_| ProfileError::IfaceName {
            iface: iface.to_owned(),
            reason: "contains a NUL",
        })?;
        // SAFETY: c_iface is a valid C string.
        let if_index = unsafe { libc::if_nametoindex(c_iface.as_ptr()) };
        if if_index == 0 {
            return Err(ProfileError::IfaceMissing {
                iface: iface.to_owned(),
            }
            .into());
        }
        let map = sock.map;
        let rx_len = RX_FRAMES * FRAME_SIZE;
        let mtu = kernel_mtu(if_index);
        let shared = Arc::new(SocketShared {
            sock,
            iface: iface.to_owned(),
            if_index,
            max_frame: AtomicUsize::new(max_frame(mtu)),
            counters: Counters::default(),
            kernel_drops: Mutex::new(0),
        });
        // SAFETY: the rx ring is the mapping's first RX_FRAMES frames, kept
        // mapped by `shared`, which the queue holds.
        let rx_ring = unsafe { FrameRing::new(map, FRAME_SIZE, RX_FRAMES) };
        // SAFETY: the tx ring follows it; same lifetime.
        let tx_ring = unsafe {
            FrameRing::new(
                NonNull::new_unchecked(map.as_ptr().add(rx_len)),
                FRAME_SIZE,
                TX_FRAMES,
            )
        };
        let mreq = libc::packet_mreq {
            mr_ifindex: if_index as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        set_opt(
            &shared.sock.fd,
            iface,
            "setsockopt(PACKET_ADD_MEMBERSHIP)",
            libc::PACKET_ADD_MEMBERSHIP,
            &mreq,
        )?;
        // SAFETY: sockaddr_ll is plain old data: all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = if_index as libc::c_int;
        // SAFETY: sll is a valid sockaddr_ll of the length given.
        let ret = unsafe {
            libc::bind(
                shared.sock.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if ret != 0 {
            return Err(errno_err(iface, "bind"));
        }
        let rx = SocketRxQueue {
            shared: Arc::clone(&shared),
            ring: rx_ring,
            pool: Arc::clone(pool),
            _not_sync: PhantomData,
        };
        let tx = SocketTxQueue {
            shared: Arc::clone(&shared),
            ring: tx_ring,
            unkicked: false,
            _not_sync: PhantomData,
        };
        Ok((SocketPort { shared }, rx, tx))
    }

    /// Checks that `iface` is a valid interface name and the interface exists.
    ///
    /// # Errors
    /// [`ProfileError::IfaceName`], [`ProfileError::IfaceMissing`].
    pub fn check(iface: &str) -> Result<(), ProfileError> {
        profile::iface_exists(iface)
    }

    /// Sets the interface's MTU (`SIOCSIFMTU`) and makes the tx queue follow it.
    ///
    /// # Errors
    /// The kernel's refusal (out of the interface's range).
    pub fn set_mtu(&self, mtu: u16) -> Result<(), SocketPortError> {
        let Some(mut ifr) = self.ifreq() else {
            return Err(errno_err(&self.shared.iface, "if_indextoname"));
        };
        ifr.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
        // SAFETY: the socket is open; ifr names the interface and carries the MTU.
        let ret =
            unsafe { libc::ioctl(self.shared.sock.fd.as_raw_fd(), libc::SIOCSIFMTU, &mut ifr) };
        if ret != 0 {
            return Err(errno_err(&self.shared.iface, "ioctl(SIOCSIFMTU)"));
        }
        self.refresh_mtu();
        Ok(())
    }

    /// The kernel interface.
    pub fn iface(&self) -> &str {
        &self.shared.iface
    }

    /// The kernel interface's index.
    pub fn if_index(&self) -> u32 {
        self.shared.if_index
    }

    /// The interface's MTU now (`None` if it is gone).
    pub fn mtu(&self) -> Option<u16> {
        kernel_mtu(self.shared.if_index)
    }

    /// Reads the MTU again and makes the tx queue's `max_frame_len` follow it
    /// (at most what a ring frame holds); returns it.
    pub fn refresh_mtu(&self) -> Option<u16> {
        let mtu = self.mtu();
        self.shared
            .max_frame
            .store(max_frame(mtu), Ordering::Relaxed);
        mtu
    }

    /// Up when the interface is up and has carrier (`IFF_RUNNING`); a veth is
    /// running while its peer is up. Speed unknown (0).
    pub fn link(&self) -> LinkStatus {
        LinkStatus {
            up: self.ifreq_flags().is_some_and(|f| {
                f & (libc::IFF_UP | libc::IFF_RUNNING) == (libc::IFF_UP | libc::IFF_RUNNING)
            }),
            speed_mbps: 0,
        }
    }

    fn ifreq(&self) -> Option<libc::ifreq> {
        // SAFETY: ifreq is plain old data, for which all zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname may write.
        if unsafe { libc::if_indextoname(self.shared.if_index, name.as_mut_ptr()) }.is_null() {
            return None;
        }
        ifr.ifr_name.copy_from_slice(&name[..libc::IFNAMSIZ]);
        Some(ifr)
    }

    fn ifreq_flags(&self) -> Option<libc::c_int> {
        let mut ifr = self.ifreq()?;
        // SAFETY: the socket is open; ifr names the interface; SIOCGIFFLAGS
        // writes only ifru_flags.
        let ret = unsafe {
            libc::ioctl(
                self.shared.sock.fd.as_raw_fd(),
                libc::SIOCGIFFLAGS,
                &mut ifr,
            )
        };
        // SAFETY: ifru_flags is the member SIOCGIFFLAGS wrote.
        (ret == 0).then(|| libc::c_int::from(unsafe { ifr.ifr_ifru.ifru_flags }))
    }

    /// The interface's MAC address (zeros if it cannot be read).
    pub fn mac(&self) -> [u8; 6] {
        let Some(mut ifr) = self.ifreq() else {
            return [0; 6];
        };
        // SAFETY: as in ifreq_flags; SIOCGIFHWADDR writes ifru_hwaddr.
        let ret = unsafe {
            libc::ioctl(
                self.shared.sock.fd.as_raw_fd(),
                libc::SIOCGIFHWADDR,
                &mut ifr,
            )
        };
        if ret != 0 {
            return [0; 6];
        }
        // SAFETY: ifru_hwaddr is the member SIOCGIFHWADDR wrote.
        let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
        let mut mac = [0u8; 6];
        for (m, d) in mac.iter_mut().zip(data) {
            *m = d as u8;
        }
        mac
    }

    /// The port's counters, in the shape of a DPDK port's: `ierrors` frames too
    /// long to receive, `oerrors` frames too long to send and failed kicks,
    /// `imissed` what the kernel dropped with the receive ring full.
    pub fn stats(&self) -> PortStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PortStats {
            ipackets: get(&c.ipackets),
            opackets: get(&c.opackets),
            ibytes: get(&c.ibytes),
            obytes: get(&c.obytes),
            imissed: self.kernel_drops(),
            ierrors: get(&c.rx_too_long),
            oerrors: get(&c.tx_too_long) + get(&c.tx_errors),
            rx_nombuf: get(&c.rx_nombuf),
        }
    }

    fn kernel_drops(&self) -> u64 {
        let mut sum = self
            .shared
            .kernel_drops
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut st = [0u32; 2]; // struct tpacket_stats { tp_packets, tp_drops }
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: the socket is open; st has room for the tpacket_stats the
        // kernel writes for a TPACKET_V2 socket, len says how much.
        let ret = unsafe {
            libc::getsockopt(
                self.shared.sock.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if ret == 0 {
            *sum += u64::from(st[1]);
        }
        *sum
    }
}

/// The longest frame a port of MTU `mtu` sends (unknown MTU: what the ring holds).
fn max_frame(mtu: Option<u16>) -> usize {
    let ring = FRAME_SIZE - ring::TX_DATA_OFFSET;
    mtu.map_or(ring, |m| (usize::from(m) + ETHER_HDR_LEN).min(ring))
}

impl RxQueue for SocketRxQueue {
    type Buf = Mbuf;

    fn rx_burst(&mut self, out: &mut Burst<Mbuf>) -> usize {
        let ready = self.ring.rx_ready(out.remaining_capacity());
        if ready == 0 {
            return 0;
        }
        let mut fresh: Burst<Mbuf> = Burst::new();
        if !self.pool.alloc_bulk(&mut fresh, ready) {
            // The frames stay in the ring for the next poll (the kernel drops,
            // and counts, what does not fit there meanwhile).
            bump(&self.shared.counters.rx_nombuf, 1);
            return 0;
        }
        let (mut got, mut bytes, mut too_long) = (0usize, 0u64, 0u64);
        for _ in 0..ready {
            let frame = self.ring.rx_frame();
            match frame {
                Some(f) if f.snaplen == f.len => {
                    let len = f.wire_len();
                    let Some(mut m) = fresh.pop() else { break };
                    match m.append(len) {
                        Some(dst) => {
                            self.ring.rx_copy(&f, dst);
                            bytes += len as u64;
                            got += 1;
                            out.push(m);
                        }
                        // Longer than an mbuf holds: freed with `m`.
                        None => too_long += 1,
                    }
                }
                // Cut short by the ring frame, or not what the kernel writes.
                _ => too_long += 1,
            }
            self.ring.rx_release();
        }
        let c = &self.shared.counters;
        if got > 0 {
            bump(&c.ipackets, got as u64);
            bump(&c.ibytes, bytes);
        }
        if too_long > 0 {
            bump(&c.rx_too_long, too_long);
        }
        got
    }
}

impl TxQueue for SocketTxQueue {
    type Buf = Mbuf;

    #[inline]
    fn max_frame_len(&self) -> usize {
        self.shared.max_frame.load(Ordering::Relaxed)
    }

    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let max = self.max_frame_len();
        let (mut taken, mut queued, mut bytes, mut too_long) = (0usize, 0usize, 0u64, 0u64);
        for m in pkts.iter_mut() {
            let fits = m.len() <= max && (m.is_contiguous() || m.linearize());
            if !fits {
                // Never sendable here: dropped (freed below) and counted, as
                // the worker would have if it had known.
                too_long += 1;
                taken += 1;
                continue;
            }
            match self.ring.push(m.data()) {
                Ok(()) => {
                    bytes += m.len() as u64;
                    queued += 1;
                    taken += 1;
                }
                Err(TxRefusal::TooBig) => {
                    too_long += 1;
                    taken += 1;
                }
                Err(TxRefusal::Full) => break,
            }
        }
        if queued > 0 || self.unkicked {
            self.kick();
        }
        // Copied to the ring (or dropped): the mbufs go back to the pool in one call.
        let mut raw = [std::ptr::null_mut(); BURST];
        for (slot, m) in raw.iter_mut().zip(pkts.drain(..taken)) {
            *slot = m.into_raw();
        }
        if taken > 0 {
            // SAFETY: the first `taken` pointers are mbufs we owned and gave up
            // above; each is freed once, here.
            unsafe { crate::ffi::shim_rte_pktmbuf_free_bulk(raw.as_mut_ptr(), taken as u32) };
        }
        let c = &self.shared.counters;
        if queued > 0 {
            bump(&c.opackets, queued as u64);
            bump(&c.obytes, bytes);
        }
        if too_long > 0 {
            bump(&c.tx_too_long, too_long);
        }
        taken
    }
}

impl SocketTxQueue {
    /// Tells the kernel to send what is on the ring, without waiting for it.
    fn kick(&mut self) {
        // SAFETY: the socket is open; no buffer is passed (the frames are on
        // the ring), MSG_DONTWAIT returns once they are handed to the driver.
        let ret = unsafe {
            libc::sendto(
                self.shared.sock.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        self.unkicked = false;
        if ret < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // The frames stay on the ring: sent by the next kick.
                Some(libc::EAGAIN | libc::ENOBUFS) => self.unkicked = true,
                // The interface is down or gone: the frames stay on the ring
                // until it is back (the ring fills, and the worker counts
                // what it cannot send).
                _ => bump(&self.shared.counters.tx_errors, 1),
            }
        }
    }
}
