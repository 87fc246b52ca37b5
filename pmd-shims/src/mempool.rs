//! Mbuf pools.
//!
//! A [`Mempool`] is shared (`Arc`) by the ports whose rx queues fill from it and by
//! the allocators that copy packets into it. It is never freed: an [`crate::Mbuf`]
//! holds a raw pointer into its pool without a reference count (that would cost an
//! atomic per packet), so freeing the pool while any mbuf is alive anywhere (in a
//! worker's batch, in a NIC ring) would be a use-after-free. Pools are created at
//! start-up and live until the process exits; the memory they hold is reclaimed
//! with the process (or by `rte_eal_cleanup`).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::eal::ensure_ready;
use crate::error::{rte_errno, strerror, DpdkError};
use crate::ffi;
use crate::mbuf::Mbuf;
use dataplane::io::Burst;

/// Room in front of the packet in every mbuf (`RTE_PKTMBUF_HEADROOM`).
pub const MBUF_HEADROOM: u16 = dpdk_sys::RTE_PKTMBUF_HEADROOM as u16;
/// The customary data room: 2048 bytes of packet plus the headroom
/// (`RTE_MBUF_DEFAULT_BUF_SIZE`).
pub const DEFAULT_DATA_ROOM: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

/// A DPDK packet-mbuf pool.
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
    name: String,
}

// SAFETY: rte_mempool get/put are multi-thread safe (the pool is created with the
// default multi-producer/multi-consumer ring), and the counters we read are too. The
// pool is never freed (see the module doc), so the pointer stays valid everywhere.
unsafe impl Send for Mempool {}
// SAFETY: as above; no method needs exclusive access.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` mbufs (`n = 2^q - 1` is optimal) with a per-lcore
    /// cache of `cache` and `data_room` bytes per mbuf (headroom included: use
    /// [`DEFAULT_DATA_ROOM`]) on NUMA `socket` (`-1` for any).
    ///
    /// # Errors
    /// [`DpdkError::EalNotInitialized`] before `Eal::init`, [`DpdkError::NulByte`],
    /// [`DpdkError::MempoolCreate`] if DPDK refuses (name taken, too long, no memory).
    pub fn new(
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Arc<Mempool>, DpdkError> {
        ensure_ready()?;
        let cname = CString::new(name).map_err(|_| DpdkError::NulByte {
            what: "mempool name",
            value: name.to_owned(),
        })?;
        // DPDK's rte_pktmbuf_pool_create, but without hugepages with objects packed
        // across pages, so that mbuf headers do not all share one L1 set (see the
        // shim).
        // SAFETY: the EAL is initialised and cname is a valid C string; DPDK copies it.
        let raw =
            unsafe { ffi::shim_pktmbuf_pool_create(cname.as_ptr(), n, cache, data_room, socket) };
        let raw = NonNull::new(raw).ok_or_else(|| {
            let code = rte_errno();
            DpdkError::MempoolCreate {
                name: name.to_owned(),
                code,
                msg: strerror(code),
            }
        })?;
        Ok(Arc::new(Mempool {
            raw,
            name: name.to_owned(),
        }))
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs currently allocated from the pool.
    pub fn in_use_count(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime.
        unsafe { ffi::shim_rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Mbufs free in the pool, per-lcore caches included.
    pub fn avail_count(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime.
        unsafe { ffi::shim_rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Total mbufs in the pool.
    pub fn size(&self) -> u32 {
        // SAFETY: the pool is valid; `size` is written once at creation.
        unsafe { (*self.raw.as_ptr()).size }
    }

    /// One fresh, empty mbuf, or `None` if the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is a valid pktmbuf pool.
        let m = unsafe { ffi::shim_rte_pktmbuf_alloc(self.raw.as_ptr()) };
        if m.is_null() {
            return None;
        }
        // SAFETY: a freshly allocated mbuf is ours alone, single-segment, refcnt 1.
        Some(unsafe { Mbuf::from_raw(m) })
    }

    /// Fills `out` up to `count` extra mbufs, all or nothing. Returns false (and
    /// leaves `out` unchanged) if the pool cannot supply them or `out` has no room.
    pub fn alloc_bulk(&self, out: &mut Burst<Mbuf>, count: usize) -> bool {
        if count > out.remaining_capacity() {
            return false;
        }
        let mut raw = [std::ptr::null_mut(); dataplane::io::BURST];
        // SAFETY: `raw` has room for `count <= BURST` pointers; the pool is valid.
        let ret = unsafe {
            ffi::shim_rte_pktmbuf_alloc_bulk(self.raw.as_ptr(), raw.as_mut_ptr(), count as u32)
        };
        if ret != 0 {
            return false;
        }
        for &m in &raw[..count] {
            // SAFETY: each pointer is a fresh mbuf we own; `out` has room (checked).
            out.push(unsafe { Mbuf::from_raw(m) });
        }
        true
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }
}
