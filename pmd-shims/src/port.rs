//! Ethernet ports and their queues.
//!
//! A [`Port`] is the control-path handle (configure, start, stop, stats, close); the
//! queues it hands out ([`PortRxQueue`], [`PortTxQueue`]) are the fast path, each
//! owned by one worker. DPDK's burst functions are lock-free per queue and not safe
//! for two threads on one queue: a queue handle is `Send` but not `Sync` or `Clone`,
//! so one queue has one owner.
//!
//! Every queue holds an `Arc` to the port's shared state, so the ethdev cannot be
//! closed under a worker: [`Port::close`] refuses while a queue is alive, and a
//! `Port` dropped without `close` is closed when its last queue goes.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dataplane::io::{Burst, RxQueue, TxQueue};

use crate::eal::ensure_ready;
use crate::error::{neg_errno, DpdkError};
use crate::ffi;
use crate::mbuf::Mbuf;
use crate::mempool::Mempool;
use crate::profile::{self, PortProfile};

/// How to set a port up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Receive queues.
    pub nb_rxq: u16,
    /// Transmit queues.
    pub nb_txq: u16,
    /// Descriptors per receive queue (adjusted to the driver's limits).
    pub rx_desc: u16,
    /// Descriptors per transmit queue (adjusted to the driver's limits).
    pub tx_desc: u16,
    /// MTU to configure; `None` keeps the driver default (1500).
    pub mtu: Option<u16>,
    /// Receive every destination MAC (what a switch port wants).
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            nb_rxq: 1,
            nb_txq: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            promiscuous: true,
        }
    }
}

/// What the driver says about a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Driver name, e.g. `net_ring`, `net_pcap`, `mlx5_pci`.
    pub driver_name: String,
    /// Maximum receive queues.
    pub max_rx_queues: u16,
    /// Maximum transmit queues.
    pub max_tx_queues: u16,
    /// Kernel interface index behind the port, 0 if none.
    pub if_index: u32,
    /// Smallest MTU accepted.
    pub min_mtu: u16,
    /// Largest MTU accepted.
    pub max_mtu: u16,
    /// Receive queues currently configured.
    pub nb_rx_queues: u16,
    /// Transmit queues currently configured.
    pub nb_tx_queues: u16,
}

/// Port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the hardware/driver dropped because rx queues were full.
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mbit/s (0 if unknown).
    pub speed_mbps: u32,
}

/// State shared by a port and its queues; the ethdev is closed when the last goes.
#[derive(Debug)]
struct PortShared {
    port_id: u16,
    name: String,
    /// The EAL device, for `rte_dev_remove` (captured at probe: the ethdev forgets it
    /// on close).
    device: *mut dpdk_sys::rte_device,
    closed: AtomicBool,
    /// The longest untagged frame the port carries (its MTU plus the Ethernet
    /// header), `usize::MAX` when it has no MTU: what the tx queues report as
    /// `max_frame_len`. Written by the control thread, read once per tx burst.
    max_frame: AtomicUsize,
}

// SAFETY: `device` is only passed to rte_dev_remove once, guarded by `closed`;
// the rest is plain data. ethdev control functions take a port id, not a pointer.
unsafe impl Send for PortShared {}
// SAFETY: as above.
unsafe impl Sync for PortShared {}

impl PortShared {
    /// Stops, closes and removes the device; idempotent. Every step is tried even
    /// if an earlier one failed (a half-closed port is of no use to anyone); the
    /// first failure is returned.
    fn shutdown(&self) -> Result<(), DpdkError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // SAFETY: port_id is a valid port until closed here, once.
        let stop = unsafe { dpdk_sys::rte_eth_dev_stop(self.port_id) };
        // SAFETY: as above; no queue handle exists (we are the last owner or
        // Port::close checked it).
        let close = unsafe { dpdk_sys::rte_eth_dev_close(self.port_id) };
        // A device can carry several of our ports (an mlx5 PF and its
        // representors): removing it would take the others down, so only the
        // last of them to close removes it.
        let remove = if self.device.is_null() || !device_users::release(self.device) {
            0
        } else {
            // SAFETY: the device pointer came from the ethdev at probe and the device
            // has not been removed (closed flag, and no other port of ours uses it);
            // closing the port does not free it.
            unsafe { dpdk_sys::rte_dev_remove(self.device) }
        };
        self.check("rte_eth_dev_stop", stop)?;
        self.check("rte_eth_dev_close", close)?;
        self.check("rte_dev_remove", remove)
    }

    fn check(&self, op: &'static str, ret: i32) -> Result<(), DpdkError> {
        if ret < 0 {
            let (code, msg) = neg_errno(ret);
            return Err(DpdkError::Ethdev {
                op,
                port: self.name.clone(),
                code,
                msg,
            });
        }
        Ok(())
    }
}

impl Drop for PortShared {
    fn drop(&mut self) {
        // Best effort: a port dropped without close() is closed when its last queue
        // goes; errors have no one to go to.
        let _ = self.shutdown();
    }
}

/// How many of this process's ports use each EAL device: an mlx5 device carries
/// its PF and every representor asked for as ports of their own, and
/// `rte_dev_remove` takes all of them down at once.
mod device_users {
    use super::Mutex;

    /// (device address, ports using it): a handful of devices at most.
    static USERS: Mutex<Vec<(usize, u32)>> = Mutex::new(Vec::new());

    fn users() -> std::sync::MutexGuard<'static, Vec<(usize, u32)>> {
        // A panic elsewhere while holding this lock leaves plain counts behind.
        USERS.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more port uses `device`.
    pub(super) fn take(device: *mut dpdk_sys::rte_device) {
        let key = device as usize;
        let mut users = users();
        match users.iter_mut().find(|(d, _)| *d == key) {
            Some((_, n)) => *n += 1,
            None => users.push((key, 1)),
        }
    }

    /// One port less uses `device`; true when it was the last.
    pub(super) fn release(device: *mut dpdk_sys::rte_device) -> bool {
        let key = device as usize;
        let mut users = users();
        match users.iter().position(|(d, _)| *d == key) {
            Some(i) if users[i].1 > 1 => {
                users[i].1 -= 1;
                false
            }
            Some(i) => {
                users.swap_remove(i);
                true
            }
            None => true,
        }
    }
}

/// `0000:03:00.0`: a PCI device's name, as opposed to a virtual device's.
fn is_pci_address(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// The one ethdev port matching representor `devargs` (`PCI,representor=…`),
/// found with DPDK's devargs iterator, which filters a device's ports by their
/// representor ids.
fn representor_port(c_devargs: &CStr, devargs: &str) -> Result<u16, DpdkError> {
    let mut iter = dpdk_sys::rte_dev_iterator::default();
    // SAFETY: iter is a valid, zeroed iterator; c_devargs a valid C string that
    // outlives the iteration below (DPDK keeps pointers into it until cleanup).
    let ret = unsafe { dpdk_sys::rte_eth_iterator_init(&mut iter, c_devargs.as_ptr()) };
    if ret < 0 {
        let (code, msg) = neg_errno(ret);
        return Err(DpdkError::Probe {
            devargs: devargs.to_owned(),
            code,
            msg,
        });
    }
    let mut found = Vec::new();
    loop {
        // SAFETY: iter was initialised above; iterated to its end, DPDK cleans it up
        // itself (we never stop early).
        let port = unsafe { dpdk_sys::rte_eth_iterator_next(&mut iter) };
        if u32::from(port) >= dpdk_sys::RTE_MAX_ETHPORTS {
            break;
        }
        found.push(port);
    }
    match found[..] {
        [port] => Ok(port),
        _ => Err(DpdkError::RepresentorMatch {
            devargs: devargs.to_owned(),
            found: found.len(),
        }),
    }
}

/// A DPDK ethdev port.
#[derive(Debug)]
pub struct Port {
    shared: Arc<PortShared>,
    started: bool,
}

impl Port {
    /// `(in use, most)`: the DPDK ports allocated in this process and the most
    /// this DPDK build holds (`RTE_MAX_ETHPORTS`; Debian's is 32). A probe past
    /// the most fails with a bare `EPERM`, so callers check first and say why.
    pub fn ethdev_usage() -> (u32, u32) {
        // SAFETY: reads DPDK's port table; no argument, no state changed.
        let used = unsafe { dpdk_sys::rte_eth_dev_count_total() };
        (u32::from(used), dpdk_sys::RTE_MAX_ETHPORTS)
    }

    /// Probes a device (`rte_dev_probe`) and finds its port by the name before the
    /// first comma of `devargs`, e.g. `net_ring0` or `net_pcap3,rx_pcap=/x.pcap`.
    ///
    /// # Errors
    /// [`DpdkError::EalNotInitialized`], [`DpdkError::NulByte`],
    /// [`DpdkError::MissingPmd`] when the probe failed and the driver is neither
    /// linked in nor in EAL's plugin directory, [`DpdkError::Probe`],
    /// [`DpdkError::PortNotFound`].
    pub fn probe(devargs: &str) -> Result<Port, DpdkError> {
        ensure_ready()?;
        let name = devargs.split(',').next().unwrap_or_default().to_owned();
        let c_devargs = CString::new(devargs).map_err(|_| DpdkError::NulByte {
            what: "device arguments",
            value: devargs.to_owned(),
        })?;
        let c_name = CString::new(name.as_str()).map_err(|_| DpdkError::NulByte {
            what: "device name",
            value: name.clone(),
        })?;
        // SAFETY: the EAL is initialised; c_devargs is a valid C string DPDK copies.
        let ret = unsafe { dpdk_sys::rte_dev_probe(c_devargs.as_ptr()) };
        // A PCI device probed already, for another port of ours on it (its PF
        // and representors are ports of their own): drivers that take
        // representors later (mlx5) probe them; others say the device exists,
        // and the lookup below tells whether the port does. A virtual device
        // that exists is another port's, and stays an error.
        let again = ret == -libc::EEXIST
            && (profile::representor_of(devargs).is_some() || is_pci_address(&name));
        if ret < 0 && !again {
            if let Some(missing) = profile::missing_pmd_here(&name) {
                return Err(missing.into());
            }
            let (code, msg) = neg_errno(ret);
            return Err(DpdkError::Probe {
                devargs: devargs.to_owned(),
                code,
                msg,
            });
        }
        let port_id = if profile::representor_of(devargs).is_some() {
            representor_port(&c_devargs, devargs)?
        } else {
            let mut port_id = 0u16;
            // SAFETY: c_name is a valid C string; port_id is a valid out-pointer.
            let ret =
                unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut port_id) };
            if ret < 0 {
                let (code, msg) = neg_errno(ret);
                return Err(DpdkError::PortNotFound { name, code, msg });
            }
            port_id
        };
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: port_id is valid (just found); info is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(port_id, &mut info) };
        let device = if ret < 0 {
            std::ptr::null_mut()
        } else {
            info.device
        };
        if !device.is_null() {
            device_users::take(device);
        }
        Ok(Port {
            shared: Arc::new(PortShared {
                port_id,
                name,
                device,
                closed: AtomicBool::new(false),
                max_frame: AtomicUsize::new(usize::MAX),
            }),
            started: false,
        })
    }

    /// Checks `profile` on this host, then probes it as instance `instance`.
    ///
    /// # Errors
    /// As [`PortProfile::check`] and [`Port::probe`].
    pub fn open(profile: &PortProfile, instance: u32) -> Result<Port, DpdkError> {
        profile.check()?;
        Port::probe(&profile.devargs(instance))
    }

    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.shared.port_id
    }

    /// The port's (device) name, e.g. `net_ring0`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// True between `start` and `stop`.
    pub fn is_started(&self) -> bool {
        self.started
    }

    fn check(&self, op: &'static str, ret: i32) -> Result<(), DpdkError> {
        self.shared.check(op, ret)
    }

    fn raw_info(&self) -> Result<dpdk_sys::rte_eth_dev_info, DpdkError> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: the port is open (we hold it); info is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id(), &mut info) };
        self.check("rte_eth_dev_info_get", ret)?;
        Ok(info)
    }

    /// What the driver reports. A driver failure (rare) gives zeroed fields.
    pub fn info(&self) -> PortInfo {
        let info = self.raw_info().unwrap_or_default();
        let driver_name = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: the driver name is a static NUL-terminated string of the driver.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        PortInfo {
            driver_name,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            if_index: info.if_index,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            nb_rx_queues: info.nb_rx_queues,
            nb_tx_queues: info.nb_tx_queues,
        }
    }

    fn live_queues(&self) -> usize {
        Arc::strong_count(&self.shared) - 1
    }

    /// Configures the port and sets up its queues, receive queues filling from
    /// `pool`. The port must be stopped and hold no queue handles.
    ///
    /// # Errors
    /// [`DpdkError::PortStarted`], [`DpdkError::PortBusy`],
    /// [`DpdkError::TooManyQueues`], [`DpdkError::Ethdev`] for a refused DPDK call.
    pub fn configure(
        &mut self,
        cfg: &PortConfig,
        pool: &Arc<Mempool>,
    ) -> Result<(Vec<PortRxQueue>, Vec<PortTxQueue>), DpdkError> {
        if self.started {
            return Err(DpdkError::PortStarted {
                port: self.name().to_owned(),
            });
        }
        if self.live_queues() > 0 {
            return Err(DpdkError::PortBusy {
                port: self.name().to_owned(),
                queues: self.live_queues(),
            });
        }
        let info = self.raw_info()?;
        if cfg.nb_rxq > info.max_rx_queues || cfg.nb_txq > info.max_tx_queues {
            return Err(DpdkError::TooManyQueues {
                port: self.name().to_owned(),
                rx: cfg.nb_rxq,
                tx: cfg.nb_txq,
                max_rx: info.max_rx_queues,
                max_tx: info.max_tx_queues,
            });
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        if let Some(mtu) = cfg.mtu {
            conf.rxmode.mtu = u32::from(mtu);
        }
        let id = self.id();
        // SAFETY: the port is open and stopped; conf is a valid, zero-initialised
        // configuration DPDK copies.
        let ret = unsafe { dpdk_sys::rte_eth_dev_configure(id, cfg.nb_rxq, cfg.nb_txq, &conf) };
        self.check("rte_eth_dev_configure", ret)?;
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port and out-pointers.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc) };
        self.check("rte_eth_dev_adjust_nb_rx_tx_desc", ret)?;
        // SAFETY: valid port. SOCKET_ID_ANY (-1) passes through as DPDK expects.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) } as u32;
        for q in 0..cfg.nb_rxq {
            // SAFETY: configured port, q < nb_rxq, NULL rxconf = driver defaults, and
            // the pool outlives the queue (the queue handle holds an Arc, pools are
            // never freed anyway).
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            self.check("rte_eth_rx_queue_setup", ret)?;
        }
        for q in 0..cfg.nb_txq {
            // SAFETY: configured port, q < nb_txq, NULL txconf = driver defaults.
            let ret = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null())
            };
            self.check("rte_eth_tx_queue_setup", ret)?;
        }
        // SAFETY: valid port. Drivers without promiscuous control return -ENOTSUP,
        // which is not an error for a virtual port.
        let ret = unsafe {
            if cfg.promiscuous {
                dpdk_sys::rte_eth_promiscuous_enable(id)
            } else {
                dpdk_sys::rte_eth_promiscuous_disable(id)
            }
        };
        if ret != -libc::ENOTSUP {
            self.check("rte_eth_promiscuous_enable/disable", ret)?;
        }
        if let Some(mtu) = cfg.mtu {
            // ethdev only records rxmode.mtu; some drivers (net_tap) never apply it,
            // so set it explicitly. Drivers without MTU control (ring, null) say
            // -ENOTSUP, which leaves the recorded value.
            // SAFETY: the port is open and configured.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) };
            if ret != -libc::ENOTSUP {
                self.check("rte_eth_dev_set_mtu", ret)?;
            }
        }
        // What the port carries now (a configured MTU applied above, or the
        // kernel interface's), before any queue handle sends a frame.
        self.refresh_mtu();
        let rxq = (0..cfg.nb_rxq)
            .map(|q| PortRxQueue {
                shared: Arc::clone(&self.shared),
                queue_id: q,
                _pool: Arc::clone(pool),
                _not_sync: PhantomData,
            })
            .collect();
        let txq = (0..cfg.nb_txq)
            .map(|q| PortTxQueue {
                shared: Arc::clone(&self.shared),
                queue_id: q,
                _not_sync: PhantomData,
            })
            .collect();
        Ok((rxq, txq))
    }

    /// Starts the port (`rte_eth_dev_start`).
    ///
    /// # Errors
    /// [`DpdkError::Ethdev`] if the driver refuses (e.g. not configured).
    pub fn start(&mut self) -> Result<(), DpdkError> {
        // SAFETY: the port is open.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id()) };
        self.check("rte_eth_dev_start", ret)?;
        self.started = true;
        Ok(())
    }

    /// Stops the port (`rte_eth_dev_stop`). Queue handles stay valid; bursts on a
    /// stopped port return nothing.
    ///
    /// # Errors
    /// [`DpdkError::Ethdev`] if the driver refuses.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        // SAFETY: the port is open.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id()) };
        self.check("rte_eth_dev_stop", ret)?;
        self.started = false;
        Ok(())
    }

    /// Stops, closes and removes the device (`rte_dev_remove`, which for a vdev
    /// destroys it; for a PCI device it detaches every port of that device).
    ///
    /// # Errors
    /// [`DpdkError::PortBusy`] if any queue handle is alive (the port then closes by
    /// itself when the last one is dropped), [`DpdkError::Ethdev`] if DPDK refuses.
    pub fn close(self) -> Result<(), DpdkError> {
        let queues = self.live_queues();
        if queues > 0 {
            return Err(DpdkError::PortBusy {
                port: self.name().to_owned(),
                queues,
            });
        }
        self.shared.shutdown()
    }

    /// Port counters.
    /// A driver failure (rare: every ethdev driver implements stats) gives zeros.
    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: the port is open; s is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id(), &mut s) };
        if ret < 0 {
            return PortStats::default();
        }
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// Resets the port counters.
    ///
    /// # Errors
    /// [`DpdkError::Ethdev`] if the driver refuses.
    pub fn reset_stats(&self) -> Result<(), DpdkError> {
        // SAFETY: the port is open.
        let ret = unsafe { dpdk_sys::rte_eth_stats_reset(self.id()) };
        self.check("rte_eth_stats_reset", ret)
    }

    /// Link state without waiting. A driver without link reporting gives "down, 0".
    pub fn link(&self) -> LinkStatus {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: the port is open; l is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id(), &mut l) };
        if ret < 0 {
            return LinkStatus::default();
        }
        LinkStatus {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
        }
    }

    /// The port's MAC address (zeros if the driver cannot tell).
    pub fn mac(&self) -> [u8; 6] {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: the port is open; a is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id(), &mut a) };
        if ret < 0 {
            return [0; 6];
        }
        a.addr_bytes
    }

    /// Sets the MTU.
    ///
    /// # Errors
    /// [`DpdkError::Ethdev`] if the driver refuses (out of range, unsupported).
    pub fn set_mtu(&mut self, mtu: u16) -> Result<(), DpdkError> {
        // SAFETY: the port is open.
        let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.id(), mtu) };
        self.check("rte_eth_dev_set_mtu", ret)?;
        self.refresh_mtu();
        Ok(())
    }

    /// The MTU DPDK has recorded for the port (`rte_eth_dev_get_mtu`): the last one
    /// configured or set, 1500 by default. `None` if the driver cannot tell.
    pub fn dpdk_mtu(&self) -> Option<u16> {
        let mut mtu = 0u16;
        // SAFETY: the port is open; mtu is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_mtu(self.id(), &mut mtu) };
        (ret == 0).then_some(mtu)
    }

    /// The MTU the port really has, or `None` for a port that carries frames of
    /// any length.
    ///
    /// * On a kernel interface (`net_af_packet`, `net_tap`: the driver reports its
    ///   `if_index`): the interface's MTU (`SIOCGIFMTU`). The kernel enforces it,
    ///   while DPDK's record ([`dpdk_mtu`](Self::dpdk_mtu)) is only what was last
    ///   configured — 1500 after `rte_eth_dev_configure` on an interface of 1400.
    /// * A driver that announces an MTU range (`max_mtu` below 65535: NICs,
    ///   virtio): `rte_eth_dev_get_mtu`, which such drivers apply.
    /// * Otherwise (`net_null`, `net_ring`, `net_pcap`: no MTU, ethdev's default
    ///   range): `None`.
    pub fn mtu(&self) -> Option<u16> {
        let info = self.raw_info().ok()?;
        if info.if_index != 0 {
            return kernel_mtu(info.if_index);
        }
        if info.max_mtu == u16::MAX {
            return None;
        }
        self.dpdk_mtu()
    }

    /// Reads [`mtu`](Self::mtu) again and makes the port's tx queues report it
    /// (plus the Ethernet header) as their `max_frame_len`, the limit the worker
    /// holds frames to before `tx_burst`. Call after anything that may change
    /// the MTU; returns it.
    pub fn refresh_mtu(&self) -> Option<u16> {
        let mtu = self.mtu();
        let mut max = mtu.map_or(usize::MAX, |m| usize::from(m) + ETHER_HDR_LEN);
        if self.info().driver_name == "net_af_packet" {
            // A jumbo interface's MTU allows more than the PMD's ring frame holds.
            max = max.min(profile::AF_PACKET_MAX_FRAME);
        }
        self.shared.max_frame.store(max, Ordering::Relaxed);
        mtu
    }
}

/// Bytes of an untagged Ethernet header, which an MTU does not count.
pub(crate) const ETHER_HDR_LEN: usize = 14;

/// The MTU of kernel interface `if_index` in this process's network namespace.
pub(crate) fn kernel_mtu(if_index: u32) -> Option<u16> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname may write.
    if unsafe { libc::if_indextoname(if_index, name.as_mut_ptr()) }.is_null() {
        return None;
    }
    // SAFETY: a plain socket call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: ifreq is plain old data, for which all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_name.copy_from_slice(&name[..libc::IFNAMSIZ]);
    // SAFETY: fd is an open socket and ifr a valid ifreq naming the interface;
    // SIOCGIFMTU writes only ifr_ifru.ifru_mtu.
    let ret = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut ifr) };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    if ret != 0 {
        return None;
    }
    // SAFETY: ifru_mtu is the union member SIOCGIFMTU wrote.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    u16::try_from(mtu).ok()
}

/// One receive queue of a port, owned by one worker.
#[derive(Debug)]
pub struct PortRxQueue {
    shared: Arc<PortShared>,
    queue_id: u16,
    _pool: Arc<Mempool>,
    _not_sync: PhantomData<Cell<()>>,
}

impl PortRxQueue {
    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.shared.port_id
    }

    /// The queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue_id
    }
}

impl RxQueue for PortRxQueue {
    type Buf = Mbuf;

    fn rx_burst(&mut self, out: &mut Burst<Mbuf>) -> usize {
        let room = out.remaining_capacity();
        if room == 0 {
            return 0;
        }
        let start = out.len();
        // SAFETY: `Mbuf` is a transparent `NonNull<rte_mbuf>`, so the burst's spare
        // capacity (`room` slots from `start`) is an array of `room` mbuf pointers
        // for DPDK to fill. This handle is the queue's only user (`&mut self`, !Sync,
        // not Clone) and the port is open while we hold the Arc.
        let n = unsafe {
            let slots = out
                .as_mut_ptr()
                .add(start)
                .cast::<*mut dpdk_sys::rte_mbuf>();
            ffi::shim_rte_eth_rx_burst(self.shared.port_id, self.queue_id, slots, room as u16)
        };
        let n = usize::from(n).min(room);
        // SAFETY: DPDK wrote `n` valid, non-null mbufs it handed over to us into
        // those slots: they are now initialised `Mbuf`s the burst owns.
        unsafe { out.set_len(start + n) };
        // Chained mbufs (a frame larger than one buffer) are left for the worker,
        // which sees `is_contiguous() == false` on its first read of each header and
        // linearises or drops them (`rx_oversize`): a separate pass here would touch
        // every header one more time.
        out.len() - start
    }
}

/// One transmit queue of a port, owned by one worker.
#[derive(Debug)]
pub struct PortTxQueue {
    shared: Arc<PortShared>,
    queue_id: u16,
    _not_sync: PhantomData<Cell<()>>,
}

impl PortTxQueue {
    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.shared.port_id
    }

    /// The queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue_id
    }
}

impl TxQueue for PortTxQueue {
    type Buf = Mbuf;

    #[inline]
    fn max_frame_len(&self) -> usize {
        self.shared.max_frame.load(Ordering::Relaxed)
    }

    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let n = pkts.len();
        if n == 0 {
            return 0;
        }
        // SAFETY: `Mbuf` is a transparent mbuf pointer, so the burst's first `n`
        // elements are an array of `n` valid mbufs we own; this handle is the
        // queue's only user. DPDK takes ownership of the first `sent` of them.
        let sent = unsafe {
            ffi::shim_rte_eth_tx_burst(
                self.shared.port_id,
                self.queue_id,
                pkts.as_mut_ptr().cast::<*mut dpdk_sys::rte_mbuf>(),
                n as u16,
            )
        };
        let sent = usize::from(sent).min(n);
        if sent == n {
            // SAFETY: the port owns every mbuf now: forget them all without a drop.
            unsafe { pkts.set_len(0) };
        } else {
            // The port owns the sent mbufs now: forget them, never free them here.
            for m in pkts.drain(..sent) {
                let _ = m.into_raw();
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::is_pci_address;

    #[test]
    fn pci_addresses_are_told_from_virtual_devices() {
        for pci in ["0000:03:00.0", "0000:af:1f.7", "FFFF:00:00.1"] {
            assert!(is_pci_address(pci), "{pci}");
        }
        for other in [
            "net_null0",
            "net_af_packet3",
            "0000:03:00",
            "0000:03:00.0,x",
            "0000.03:00:0",
            "000g:03:00.0",
            "",
        ] {
            assert!(!is_pci_address(other), "{other}");
        }
    }
}
