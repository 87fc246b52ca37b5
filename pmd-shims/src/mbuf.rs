//! An owned DPDK mbuf as a [`PacketBuf`].
//!
//! The dataplane sees one contiguous segment: the packet bytes at
//! `buf_addr + data_off`, `data_len` long, with headroom in front and tailroom behind.
//! Reads go straight to the mbuf fields (inlined, no call); changes go through the C
//! shim's wrappers of DPDK's own helpers so `pkt_len` and `data_len` stay consistent.
//! Receive queues linearise chained mbufs, and the pool's allocations are single
//! segments, so "first segment" is "the packet". A chained mbuf adopted with
//! [`Mbuf::from_raw`] is seen through its first segment (memory-safe, just partial).

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use dataplane::buf::PacketBuf;
use dataplane::io::BufAlloc;

use crate::ffi;
use crate::mempool::Mempool;

/// One owned mbuf: `Send` (it can move between threads), `!Sync`, freed on drop.
///
/// `repr(transparent)`: a burst of `Mbuf`s has the layout of DPDK's `rte_mbuf *`
/// array, so the queues hand a burst's storage to rx/tx_burst without a copy.
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<dpdk_sys::rte_mbuf>,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: an Mbuf is the only owner of its mbuf; freeing into the pool from any
// thread is supported by rte_mempool (multi-producer).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Adopts a raw mbuf.
    ///
    /// # Safety
    /// `raw` is non-null, points to a valid mbuf from a pool that outlives it, and the
    /// caller transfers its one reference: nothing else reads, writes or frees it.
    #[inline]
    pub unsafe fn from_raw(raw: *mut dpdk_sys::rte_mbuf) -> Mbuf {
        Mbuf {
            // SAFETY: non-null by the caller's contract.
            raw: unsafe { NonNull::new_unchecked(raw) },
            _not_sync: PhantomData,
        }
    }

    /// Gives up ownership: the caller must free the mbuf or hand it to DPDK.
    #[inline]
    pub fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// The raw pointer, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mbuf {
        self.raw.as_ptr()
    }

    #[inline]
    fn m(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf; no one else writes it while we hold `&self`.
        unsafe { self.raw.as_ref() }
    }

    /// Total packet length over all segments (`pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.m().pkt_len
    }

    /// Number of segments (1 for everything pmd-shims hands out).
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.m().nb_segs
    }

    /// The port the mbuf was received on (DPDK's `port` field).
    #[inline]
    pub fn port(&self) -> u16 {
        self.m().port
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (and its chain); it is freed exactly once here.
        unsafe { ffi::shim_rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's data buffer
        // (DPDK's invariant data_off + data_len <= buf_len), which lives as long as the
        // mbuf we own; `&self` excludes writers.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let (addr, off, len) = {
            let m = self.m();
            (m.buf_addr.cast::<u8>(), m.data_off, m.data_len)
        };
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(addr.add(usize::from(off)), usize::from(len)) }
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.m().data_len)
    }

    #[inline]
    fn headroom(&self) -> usize {
        usize::from(self.m().data_off)
    }

    #[inline]
    fn tailroom(&self) -> usize {
        let m = self.m();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    // The four resizing calls below are DPDK's `rte_pktmbuf_{prepend,adj,append,trim}`
    // done in Rust for the single-segment mbufs the dataplane sees (the rx queues
    // linearise, the pool allocates single segments): one per packet on the tunnel
    // paths, they are too hot for a call into the C shim. A chained mbuf still goes
    // through DPDK's own helper, which knows about the last segment.

    // Always inlined: the encap burst loop prepends for every packet, and as a
    // call it cost the loop its registers.
    #[inline(always)]
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.nb_segs() != 1 {
            return self.prepend_chained(len);
        }
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: we own the mbuf exclusively (`&mut self`); no other reference to its
        // header exists while this one lives.
        let m = unsafe { self.raw.as_mut() };
        if len16 > m.data_off {
            return None;
        }
        m.data_off -= len16;
        // data_off + data_len <= buf_len (a u16) holds before and after.
        m.data_len += len16;
        m.pkt_len += u32::from(len16);
        // SAFETY: the `len` bytes at buf_addr + data_off were headroom inside the
        // mbuf's buffer and are now the front of the packet we own exclusively.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                len,
            )
        })
    }

    // Always inlined, as `prepend`: the decap burst loop strips every packet.
    #[inline(always)]
    fn adj(&mut self, len: usize) -> Option<()> {
        if self.nb_segs() != 1 {
            return self.adj_chained(len);
        }
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership, as in `prepend`.
        let m = unsafe { self.raw.as_mut() };
        if len16 > m.data_len {
            return None;
        }
        m.data_off += len16;
        m.data_len -= len16;
        m.pkt_len -= u32::from(len16);
        Some(())
    }

    #[inline]
    fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.nb_segs() != 1 {
            return self.append_chained(len);
        }
        let len16 = u16::try_from(len).ok()?;
        if len > self.tailroom() {
            return None;
        }
        // SAFETY: exclusive ownership, as in `prepend`.
        let m = unsafe { self.raw.as_mut() };
        let end = usize::from(m.data_off) + usize::from(m.data_len);
        m.data_len += len16;
        m.pkt_len += u32::from(len16);
        // SAFETY: the `len` bytes after the old end were tailroom inside the buffer
        // (checked above) and are now the packet's end, owned exclusively.
        Some(unsafe { std::slice::from_raw_parts_mut(m.buf_addr.cast::<u8>().add(end), len) })
    }

    // Always inlined, as `prepend`: the decap burst loop strips every packet.
    #[inline(always)]
    fn trim(&mut self, len: usize) -> Option<()> {
        if self.nb_segs() != 1 {
            return self.trim_chained(len);
        }
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership, as in `prepend`.
        let m = unsafe { self.raw.as_mut() };
        if len16 > m.data_len {
            return None;
        }
        m.data_len -= len16;
        m.pkt_len -= u32::from(len16);
        Some(())
    }

    // Always inlined, as `prepend`: the decap burst loop strips every packet, and
    // in one step it writes the three lengths once (trim, then adj, wrote two of
    // them twice and checked the segments twice).
    #[inline(always)]
    fn narrow(&mut self, off: usize, len: usize) -> Option<()> {
        // A chain is made one segment first (DPDK refuses, and nothing changes,
        // when it does not fit): then the bytes kept are all in it.
        if self.nb_segs() != 1 && !self.linearize() {
            return None;
        }
        let end = off.checked_add(len)?;
        // SAFETY: exclusive ownership, as in `prepend`.
        let m = unsafe { self.raw.as_mut() };
        if end > usize::from(m.data_len) {
            return None;
        }
        // Both fit in u16: they are at most data_len.
        m.data_off += off as u16;
        m.data_len = len as u16;
        m.pkt_len = len as u32;
        Some(())
    }

    #[inline]
    fn is_contiguous(&self) -> bool {
        self.nb_segs() == 1
    }

    fn linearize(&mut self) -> bool {
        if self.nb_segs() == 1 {
            return true;
        }
        // SAFETY: we own the mbuf exclusively (`&mut self`).
        unsafe { ffi::shim_rte_pktmbuf_linearize(self.raw.as_ptr()) == 0 }
    }

    #[inline]
    fn prefetch(&self) {
        let m = self.m();
        Self::prefetch_addr(
            m.buf_addr
                .cast::<u8>()
                .wrapping_add(usize::from(m.data_off)),
        );
    }

    #[inline(always)]
    fn prefetch_addr(addr: *const u8) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch(addr.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
        }
        // aarch64 (BlueField's Arm cores): PRFM, as DPDK's rte_prefetch0 does
        // there; its intrinsics are not stable in Rust yet, inline assembly is.
        #[cfg(target_arch = "aarch64")]
        // SAFETY: PRFM is a hint: it never faults, whatever the address, and
        // touches no register but its input and no flag.
        unsafe {
            std::arch::asm!(
                "prfm pldl1keep, [{addr}]",
                addr = in(reg) addr,
                options(nostack, preserves_flags, readonly)
            );
        }
        // Anywhere else: no hint (correct, only slower).
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = addr;
    }
}

impl Mbuf {
    #[cold]
    fn prepend_chained(&mut self, len: usize) -> Option<&mut [u8]> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership; DPDK checks the headroom and returns NULL if short.
        let p = unsafe { ffi::shim_rte_pktmbuf_prepend(self.raw.as_ptr(), len16) };
        if p.is_null() {
            return None;
        }
        // SAFETY: DPDK moved data_off back by `len`: p .. p+len is inside the buffer
        // and now part of the packet we own exclusively.
        Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
    }

    #[cold]
    fn adj_chained(&mut self, len: usize) -> Option<()> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership; DPDK refuses (NULL, no change) if len > data_len.
        let p = unsafe { ffi::shim_rte_pktmbuf_adj(self.raw.as_ptr(), len16) };
        (!p.is_null()).then_some(())
    }

    #[cold]
    fn append_chained(&mut self, len: usize) -> Option<&mut [u8]> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership; DPDK checks the tailroom and returns NULL if short.
        let p = unsafe { ffi::shim_rte_pktmbuf_append(self.raw.as_ptr(), len16) };
        if p.is_null() {
            return None;
        }
        // SAFETY: DPDK grew the (last) segment by `len` bytes starting at p, inside its
        // buffer; we own the mbuf exclusively.
        Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
    }

    #[cold]
    fn trim_chained(&mut self, len: usize) -> Option<()> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership; DPDK refuses (-1, no change) if len > data_len.
        let ret = unsafe { ffi::shim_rte_pktmbuf_trim(self.raw.as_ptr(), len16) };
        (ret == 0).then_some(())
    }
}

/// Allocates mbufs from one pool for packets the switch makes or copies.
#[derive(Debug, Clone)]
pub struct MbufAlloc {
    pool: Arc<Mempool>,
}

impl MbufAlloc {
    /// An allocator over `pool`.
    pub fn new(pool: Arc<Mempool>) -> Self {
        MbufAlloc { pool }
    }

    /// The pool it allocates from.
    pub fn pool(&self) -> &Arc<Mempool> {
        &self.pool
    }
}

impl BufAlloc for MbufAlloc {
    type Buf = Mbuf;

    fn alloc_copy(&mut self, data: &[u8]) -> Option<Mbuf> {
        let mut m = self.pool.alloc()?;
        m.append(data.len())?.copy_from_slice(data);
        Some(m)
    }
}
