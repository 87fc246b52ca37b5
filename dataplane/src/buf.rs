//! The packet-buffer abstraction the whole dataplane is written against.
//!
//! `dataplane` never names an mbuf: DPDK's `rte_mbuf` implements [`PacketBuf`] in
//! `pmd-shims`, and [`VecBuf`] implements it here for unit tests and benches. Both
//! offer the same shape as an mbuf's single segment: headroom in front of the packet
//! (so encapsulation can prepend headers without a copy), the packet bytes, and
//! tailroom behind them.

/// One packet in a buffer with headroom and tailroom.
///
/// A `PacketBuf` owns its packet: dropping it returns the buffer to its pool. The
/// methods return `None` instead of panicking when there is not enough room, so a
/// malformed or oversized frame can never crash a worker.
pub trait PacketBuf: Send {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free in front of the packet.
    fn headroom(&self) -> usize;
    /// Bytes free behind the packet.
    fn tailroom(&self) -> usize;
    /// Grows the packet by `len` bytes at the front and returns them (uninitialised
    /// content: the caller writes every byte). `None` if the headroom is too small.
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]>;
    /// Removes `len` bytes from the front. `None` (and no change) if the packet is shorter.
    fn adj(&mut self, len: usize) -> Option<()>;
    /// Grows the packet by `len` bytes at the end and returns them. `None` if the
    /// tailroom is too small.
    fn append(&mut self, len: usize) -> Option<&mut [u8]>;
    /// Removes `len` bytes from the end. `None` (and no change) if the packet is shorter.
    fn trim(&mut self, len: usize) -> Option<()>;
    /// Keeps only the `len` bytes at `off`: what a decapsulation does in one step,
    /// the outer headers stripped in front and any Ethernet padding behind. `None`
    /// (and no change) if those bytes are not all in the packet.
    #[inline]
    fn narrow(&mut self, off: usize, len: usize) -> Option<()> {
        let tail = self.len().checked_sub(off.checked_add(len)?)?;
        self.trim(tail)?;
        // `off` bytes are left in front of the `len` kept: this cannot refuse.
        self.adj(off)
    }

    /// Packet length in bytes.
    #[inline]
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True for a zero-length packet.
    #[inline]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Hints the CPU to bring the packet's first bytes into the cache, so the worker
    /// can start the loads of packet `i + k` while it works on packet `i`. A hint
    /// only: the default does nothing.
    #[inline]
    fn prefetch(&self) {}
    /// Starts loading the cache line at `addr` (a table slot a burst loop is about
    /// to read), without waiting for it. A hint that never faults: the buffer type
    /// that knows its machine does it (DPDK's mbufs); the default does nothing.
    #[inline]
    fn prefetch_addr(addr: *const u8)
    where
        Self: Sized,
    {
        let _ = addr;
    }
    /// False when the packet continues in further segments (an mbuf chain: a frame
    /// larger than one buffer), which [`data`](Self::data) does not show. Receive
    /// paths check it once, with the first read of the buffer's header, and
    /// [`linearize`](Self::linearize) such packets or drop them.
    #[inline]
    fn is_contiguous(&self) -> bool {
        true
    }
    /// Merges a multi-segment packet into one segment; false (and the packet
    /// unchanged) if it does not fit.
    #[inline]
    fn linearize(&mut self) -> bool {
        self.is_contiguous()
    }
}

/// Headroom a [`VecBuf`] gets by default: the same as DPDK's `RTE_PKTMBUF_HEADROOM`.
pub const DEFAULT_HEADROOM: usize = 128;

/// A `Vec`-backed packet buffer for tests and benches.
///
/// It is a real buffer with the same headroom/tailroom rules as an mbuf, not a mock:
/// code that passes its tests with a `VecBuf` does the same byte work on an mbuf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecBuf {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    /// A buffer holding `packet` with [`DEFAULT_HEADROOM`] in front and `tailroom` behind.
    pub fn with_room(packet: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut storage = vec![0u8; headroom + packet.len() + tailroom];
        storage[headroom..headroom + packet.len()].copy_from_slice(packet);
        VecBuf {
            storage,
            start: headroom,
            end: headroom + packet.len(),
        }
    }

    /// A buffer holding `packet` with mbuf-like room: 128 bytes in front, enough
    /// behind for a 2 KiB data room.
    pub fn new(packet: &[u8]) -> Self {
        let tail = 2048usize.saturating_sub(packet.len());
        Self::with_room(packet, DEFAULT_HEADROOM, tail)
    }
}

impl PacketBuf for VecBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }
    #[inline]
    fn headroom(&self) -> usize {
        self.start
    }
    #[inline]
    fn tailroom(&self) -> usize {
        self.storage.len() - self.end
    }
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
        let start = self.start.checked_sub(len)?;
        self.start = start;
        Some(&mut self.storage[start..start + len])
    }
    fn adj(&mut self, len: usize) -> Option<()> {
        if len > self.end - self.start {
            return None;
        }
        self.start += len;
        Some(())
    }
    fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.tailroom() {
            return None;
        }
        let old = self.end;
        self.end += len;
        Some(&mut self.storage[old..self.end])
    }
    fn trim(&mut self, len: usize) -> Option<()> {
        if len > self.end - self.start {
            return None;
        }
        self.end -= len;
        Some(())
    }
    fn narrow(&mut self, off: usize, len: usize) -> Option<()> {
        let end = off.checked_add(len)?;
        if end > self.end - self.start {
            return None;
        }
        self.end = self.start + end;
        self.start += off;
        Some(())
    }
}

/// A test buffer that writes down the addresses it is asked to prefetch, and
/// otherwise is a [`VecBuf`] with the trait's default methods.
#[cfg(test)]
pub(crate) mod recording {
    use super::{PacketBuf, VecBuf};

    std::thread_local! {
        static PREFETCHED: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// The addresses prefetched on this thread since the last call.
    pub(crate) fn take_prefetched() -> Vec<usize> {
        PREFETCHED.with(|v| std::mem::take(&mut *v.borrow_mut()))
    }

    pub(crate) struct Recording(pub(crate) VecBuf);

    impl PacketBuf for Recording {
        fn data(&self) -> &[u8] {
            self.0.data()
        }
        fn data_mut(&mut self) -> &mut [u8] {
            self.0.data_mut()
        }
        fn headroom(&self) -> usize {
            self.0.headroom()
        }
        fn tailroom(&self) -> usize {
            self.0.tailroom()
        }
        fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
            self.0.prepend(len)
        }
        fn adj(&mut self, len: usize) -> Option<()> {
            self.0.adj(len)
        }
        fn append(&mut self, len: usize) -> Option<&mut [u8]> {
            self.0.append(len)
        }
        fn trim(&mut self, len: usize) -> Option<()> {
            self.0.trim(len)
        }
        fn prefetch_addr(addr: *const u8) {
            PREFETCHED.with(|v| v.borrow_mut().push(addr as usize));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::recording::Recording;
    use super::*;

    #[test]
    fn prepend_and_adj_round_trip() {
        let mut b = VecBuf::with_room(&[1, 2, 3], 4, 0);
        b.prepend(2).unwrap().copy_from_slice(&[9, 8]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3]);
        assert!(b.prepend(3).is_none(), "only 2 bytes of headroom left");
        b.adj(2).unwrap();
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(b.adj(4).is_none());
        assert_eq!(b.data(), &[1, 2, 3], "a refused adj changes nothing");
    }

    #[test]
    fn append_and_trim_round_trip() {
        let mut b = VecBuf::with_room(&[1], 0, 2);
        b.append(2).unwrap().copy_from_slice(&[5, 6]);
        assert_eq!(b.data(), &[1, 5, 6]);
        assert!(b.append(1).is_none());
        b.trim(3).unwrap();
        assert!(b.is_empty());
        assert!(b.trim(1).is_none());
    }

    #[test]
    fn narrow_keeps_the_bytes_asked_for_or_changes_nothing() {
        let frame = [1, 2, 3, 4, 5, 6];
        let mut v = VecBuf::with_room(&frame, 2, 2);
        // `Recording` keeps the trait's own `narrow` (trim, then adj).
        let mut p = Recording(VecBuf::with_room(&frame, 2, 2));
        for (off, len) in [
            (0, 7),
            (1, 6),
            (6, 1),
            (7, 0),
            (usize::MAX, 1),
            (1, usize::MAX),
        ] {
            assert!(v.narrow(off, len).is_none(), "{off} + {len}");
            assert!(p.narrow(off, len).is_none(), "{off} + {len}");
            assert_eq!((v.data(), v.headroom()), (&frame[..], 2));
            assert_eq!((p.data(), p.headroom()), (&frame[..], 2));
        }
        v.narrow(1, 3).unwrap();
        p.narrow(1, 3).unwrap();
        for b in [&v as &dyn PacketBuf, &p] {
            assert_eq!(b.data(), &[2, 3, 4]);
            assert_eq!((b.headroom(), b.tailroom()), (3, 4));
        }
        v.narrow(3, 0).unwrap();
        assert!(v.is_empty());
    }
}
