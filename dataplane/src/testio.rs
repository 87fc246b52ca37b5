//! Vec-backed port queues and allocators, for tests and benches.
//!
//! These are real queues over real buffers, not mocks: a [`VecRxQueue`] hands out
//! the buffers a test pushed into its ring, a [`VecTxQueue`] keeps what it accepted
//! in its ring and refuses what does not fit its capacity (like a full DPDK tx ring),
//! and the allocators run out like an empty mempool. Rings are
//! `Arc<Mutex<VecDeque<_>>>` so the test keeps a handle while the worker owns the
//! queue; the mutex is fine here and never appears in the real fast path.
//!
//! [`CountedBuf`] and [`LiveBufs`] count buffers alive, so a test can prove that
//! every buffer the worker let go of was freed (none leaked in a batch).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::buf::{PacketBuf, VecBuf};
use crate::ethernet::{MacAddr, HEADER_LEN};
use crate::io::{BufAlloc, Burst, RxQueue, TxQueue};

/// A `len`-byte IPv4-over-Ethernet frame from `src` to `dst`, the payload bytes
/// numbered so copies can be compared. `len` below the header length gives a runt.
pub fn eth_frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let mut header = [0u8; HEADER_LEN];
    header[0..6].copy_from_slice(&dst.0);
    header[6..12].copy_from_slice(&src.0);
    header[12..14].copy_from_slice(&[0x08, 0x00]);
    let n = len.min(HEADER_LEN);
    f[..n].copy_from_slice(&header[..n]);
    f
}

/// A ring shared between a test and a queue.
#[derive(Debug)]
pub struct Ring<B>(Arc<Mutex<VecDeque<B>>>);

impl<B> Clone for Ring<B> {
    fn clone(&self) -> Self {
        Ring(Arc::clone(&self.0))
    }
}

impl<B> Default for Ring<B> {
    fn default() -> Self {
        Ring(Arc::new(Mutex::new(VecDeque::new())))
    }
}

impl<B> Ring<B> {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the ring (a panicked holder does not poison it for the test).
    pub fn lock(&self) -> MutexGuard<'_, VecDeque<B>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `buf`.
    pub fn push(&self, buf: B) {
        self.lock().push_back(buf);
    }

    /// Number of buffers in the ring.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if the ring holds nothing.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Takes every buffer out, in order.
    pub fn take_all(&self) -> Vec<B> {
        self.lock().drain(..).collect()
    }
}

/// A receive queue that yields the buffers pushed into its ring.
#[derive(Debug)]
pub struct VecRxQueue<B = VecBuf> {
    ring: Ring<B>,
}

impl<B> VecRxQueue<B> {
    /// A queue reading from `ring`.
    pub fn new(ring: Ring<B>) -> Self {
        VecRxQueue { ring }
    }

    /// The ring this queue reads from.
    pub fn ring(&self) -> Ring<B> {
        self.ring.clone()
    }
}

impl<B: PacketBuf> RxQueue for VecRxQueue<B> {
    type Buf = B;

    fn rx_burst(&mut self, out: &mut Burst<B>) -> usize {
        let mut ring = self.ring.lock();
        let n = out.remaining_capacity().min(ring.len());
        out.extend(ring.drain(..n));
        n
    }
}

/// A transmit queue that accepts into its ring until `capacity` buffers are waiting
/// there, and refuses the rest.
#[derive(Debug)]
pub struct VecTxQueue<B = VecBuf> {
    ring: Ring<B>,
    capacity: usize,
    max_frame: usize,
}

impl<B> VecTxQueue<B> {
    /// A queue writing into `ring` without limit.
    pub fn new(ring: Ring<B>) -> Self {
        Self::with_capacity(ring, usize::MAX)
    }

    /// A queue writing into `ring` until it holds `capacity` buffers.
    pub fn with_capacity(ring: Ring<B>, capacity: usize) -> Self {
        VecTxQueue {
            ring,
            capacity,
            max_frame: usize::MAX,
        }
    }

    /// The same queue on a port whose frames are at most `max_frame` bytes
    /// untagged (see [`TxQueue::max_frame_len`]). Like a real port, it accepts
    /// longer frames too: the worker must hold them back.
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// The ring this queue writes to.
    pub fn ring(&self) -> Ring<B> {
        self.ring.clone()
    }
}

impl<B: PacketBuf> TxQueue for VecTxQueue<B> {
    type Buf = B;

    fn tx_burst(&mut self, pkts: &mut Burst<B>) -> usize {
        let mut ring = self.ring.lock();
        let n = self.capacity.saturating_sub(ring.len()).min(pkts.len());
        ring.extend(pkts.drain(..n));
        n
    }

    fn max_frame_len(&self) -> usize {
        self.max_frame
    }
}

/// Allocates [`VecBuf`]s, at most `limit` of them over its life.
#[derive(Debug, Clone)]
pub struct VecAlloc {
    remaining: usize,
}

impl VecAlloc {
    /// An allocator that never runs out.
    pub fn unlimited() -> Self {
        Self::with_limit(usize::MAX)
    }

    /// An allocator that hands out `limit` buffers, then fails.
    pub fn with_limit(limit: usize) -> Self {
        VecAlloc { remaining: limit }
    }

    /// Buffers it can still hand out.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

impl BufAlloc for VecAlloc {
    type Buf = VecBuf;

    fn alloc_copy(&mut self, data: &[u8]) -> Option<VecBuf> {
        self.remaining = self.remaining.checked_sub(1)?;
        Some(VecBuf::new(data))
    }
}

/// Counts the [`CountedBuf`]s alive; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct LiveBufs(Arc<AtomicUsize>);

impl LiveBufs {
    /// A fresh count at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counted buffer holding `packet`.
    pub fn buf(&self, packet: &[u8]) -> CountedBuf {
        self.0.fetch_add(1, Ordering::SeqCst);
        CountedBuf {
            buf: VecBuf::new(packet),
            live: Arc::clone(&self.0),
        }
    }

    /// Buffers alive now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A [`VecBuf`] that decrements its [`LiveBufs`] when dropped, like an mbuf going
/// back to its pool.
#[derive(Debug)]
pub struct CountedBuf {
    buf: VecBuf,
    live: Arc<AtomicUsize>,
}

impl Drop for CountedBuf {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PacketBuf for CountedBuf {
    fn data(&self) -> &[u8] {
        self.buf.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.buf.data_mut()
    }
    fn headroom(&self) -> usize {
        self.buf.headroom()
    }
    fn tailroom(&self) -> usize {
        self.buf.tailroom()
    }
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
        self.buf.prepend(len)
    }
    fn adj(&mut self, len: usize) -> Option<()> {
        self.buf.adj(len)
    }
    fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        self.buf.append(len)
    }
    fn trim(&mut self, len: usize) -> Option<()> {
        self.buf.trim(len)
    }
}

/// Allocates [`CountedBuf`]s, at most `limit` of them over its life.
#[derive(Debug, Clone)]
pub struct CountedAlloc {
    live: LiveBufs,
    remaining: usize,
}

impl CountedAlloc {
    /// An allocator counting into `live` that hands out `limit` buffers, then fails.
    pub fn with_limit(live: LiveBufs, limit: usize) -> Self {
        CountedAlloc {
            live,
            remaining: limit,
        }
    }
}

impl BufAlloc for CountedAlloc {
    type Buf = CountedBuf;

    fn alloc_copy(&mut self, data: &[u8]) -> Option<CountedBuf> {
        self.remaining = self.remaining.checked_sub(1)?;
        Some(self.live.buf(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_yields_at_most_a_burst_in_order() {
        let ring = Ring::new();
        for i in 0..40u8 {
            ring.push(VecBuf::new(&[i]));
        }
        let mut rx = VecRxQueue::new(ring.clone());
        let mut out = Burst::new();
        assert_eq!(rx.rx_burst(&mut out), 32);
        assert_eq!(out[0].data(), &[0]);
        assert_eq!(out[31].data(), &[31]);
        out.clear();
        assert_eq!(rx.rx_burst(&mut out), 8);
        assert!(ring.is_empty());
    }

    #[test]
    fn tx_refuses_beyond_capacity_and_keeps_order() {
        let ring = Ring::new();
        let mut tx = VecTxQueue::with_capacity(ring.clone(), 3);
        let mut pkts: Burst<VecBuf> = (0..5u8).map(|i| VecBuf::new(&[i])).collect();
        assert_eq!(tx.tx_burst(&mut pkts), 3);
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[0].data(), &[3], "refused ones stay, in order");
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn allocators_run_out_and_live_count_tracks_drops() {
        let mut a = VecAlloc::with_limit(1);
        assert!(a.alloc_copy(&[1]).is_some());
        assert!(a.alloc_copy(&[1]).is_none());

        let live = LiveBufs::new();
        let mut c = CountedAlloc::with_limit(live.clone(), 2);
        let x = c.alloc_copy(&[1, 2]).unwrap();
        let y = live.buf(&[3]);
        assert_eq!(live.count(), 2);
        assert_eq!(x.data(), &[1, 2]);
        drop((x, y));
        assert_eq!(live.count(), 0);
    }
}
