//! The port I/O seen by a worker: receive and transmit queues and a buffer allocator.
//!
//! A worker owns its queues outright (`&mut self` on every call), which is what
//! makes DPDK's lock-free per-queue burst functions safe to call: one queue, one
//! thread. The traits are implemented by `pmd-shims` for DPDK ports and by test
//! queues over `VecBuf`s.

use arrayvec::ArrayVec;

use crate::buf::PacketBuf;

/// Packets per burst: DPDK's customary 32, small enough to stay in L1.
pub const BURST: usize = 32;

/// A burst of packets: a fixed-capacity array, so no allocation per burst.
pub type Burst<B> = ArrayVec<B, BURST>;

/// One receive queue of one port.
pub trait RxQueue: Send {
    /// The buffer type this queue produces.
    type Buf: PacketBuf;
    /// Appends up to `BURST - out.len()` received packets to `out` and returns how
    /// many were appended.
    fn rx_burst(&mut self, out: &mut Burst<Self::Buf>) -> usize;
}

/// One transmit queue of one port.
pub trait TxQueue: Send {
    /// The buffer type this queue sends.
    type Buf: PacketBuf;
    /// Sends packets from the front of `pkts`. Those the port accepted are removed
    /// from `pkts` (the port owns them now); those it refused stay, in order, for the
    /// caller to retry or drop and count. Returns the number sent.
    fn tx_burst(&mut self, pkts: &mut Burst<Self::Buf>) -> usize;

    /// The longest untagged frame the port carries: its MTU plus the 14-byte
    /// Ethernet header (each VLAN tag a frame carries allows 4 bytes more).
    /// `usize::MAX` (the default) when the port has no such limit.
    ///
    /// Ports do not refuse a longer frame at `tx_burst`: they accept it and drop it
    /// (`net_af_packet` copies it to the kernel, which discards it under
    /// `PACKET_LOSS`), so it would count as sent. The worker holds such frames back
    /// before `tx_burst` and counts them as `tx_oversize`.
    fn max_frame_len(&self) -> usize {
        usize::MAX
    }
}

/// Allocates fresh buffers, for packets the switch makes or copies (floods, replies).
pub trait BufAlloc: Send {
    /// The buffer type allocated.
    type Buf: PacketBuf;
    /// A new buffer holding a copy of `data`, or `None` if the pool is empty or
    /// `data` does not fit.
    fn alloc_copy(&mut self, data: &[u8]) -> Option<Self::Buf>;
}

/// A transmit queue several workers send on, when its port has fewer tx queues
/// than the switch has workers (a vhost-user pod with one queue pair, pcap, tap).
///
/// Whoever sends takes the queue for one whole `tx_burst` — a lock per burst, never
/// per packet — by spinning on `try_lock`: that is one compare-and-swap on the
/// mutex's word when nobody else holds it, and it never parks the thread (so
/// unlocking never makes a system call either). The holder keeps it for one burst,
/// well under a microsecond, so spinning is cheaper than sleeping.
///
/// Why not hand the packets over to the queue's owner through a ring instead, as
/// a lock-free design would: it would cost an enqueue and a dequeue per packet
/// plus the owner's extra poll (more than the uncontended CAS here), it would
/// interleave the two workers' packets in the owner's order rather than the
/// sender's, and it would delay them by up to one of the owner's poll rounds (or
/// its idle sleep). Only the ports that need sharing pay for it: a worker with a
/// queue of its own holds it as [`TxSlot::Own`] and takes no lock at all.
pub struct SharedTxQueue<T> {
    queue: std::sync::Mutex<T>,
    /// Read once at creation: asking the queue would take the lock.
    max_frame_len: usize,
}

impl<T: TxQueue> SharedTxQueue<T> {
    /// Wraps `queue` to be shared, through an `Arc`, by the workers that send on it.
    pub fn new(queue: T) -> Self {
        SharedTxQueue {
            max_frame_len: queue.max_frame_len(),
            queue: std::sync::Mutex::new(queue),
        }
    }

    /// Sends from `pkts` as [`TxQueue::tx_burst`] does, holding the queue for the
    /// call. Returns the number sent and whether another sender held the queue
    /// when this one came (it then spun until it was free).
    #[inline]
    pub fn tx_burst(&self, pkts: &mut Burst<T::Buf>) -> (usize, bool) {
        use std::sync::TryLockError;
        let mut contended = false;
        let mut guard = loop {
            match self.queue.try_lock() {
                Ok(g) => break g,
                // A sender that panicked mid-burst left the queue as DPDK left
                // it: usable, so the others keep sending.
                Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    contended = true;
                    std::hint::spin_loop();
                }
            }
        };
        (guard.tx_burst(pkts), contended)
    }

    /// The queue's [`TxQueue::max_frame_len`].
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The queue back, if no one else shares it any more.
    pub fn into_inner(self) -> T {
        self.queue
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A worker's transmit queue on one port: its own, or one it shares with others.
pub enum TxSlot<T> {
    /// Only this worker sends on it: no lock.
    Own(T),
    /// Other workers send on it too: taken per burst.
    Shared(std::sync::Arc<SharedTxQueue<T>>),
}

impl<T: TxQueue> TxSlot<T> {
    /// The queue's [`TxQueue::max_frame_len`].
    #[inline]
    pub fn max_frame_len(&self) -> usize {
        match self {
            TxSlot::Own(q) => q.max_frame_len(),
            TxSlot::Shared(q) => q.max_frame_len(),
        }
    }

    /// Sends from `pkts` as [`TxQueue::tx_burst`] does; returns the number sent and
    /// whether the queue was shared and held by another sender.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Burst<T::Buf>) -> (usize, bool) {
        match self {
            TxSlot::Own(q) => (q.tx_burst(pkts), false),
            TxSlot::Shared(q) => q.tx_burst(pkts),
        }
    }
}

/// Hands out the tx queues of a port with `queues.len()` queues to `workers`
/// workers: worker `w` gets queue `w % n`, its own when no other worker maps to
/// it, shared (behind one [`SharedTxQueue`]) by all that do. Every worker gets a
/// queue unless the port has none.
pub fn assign_tx_queues<T: TxQueue>(queues: Vec<T>, workers: usize) -> Vec<Option<TxSlot<T>>> {
    let n = queues.len();
    if n == 0 {
        return (0..workers).map(|_| None).collect();
    }
    let mut slots: Vec<Option<TxSlot<T>>> = (0..workers).map(|_| None).collect();
    for (q, queue) in queues.into_iter().enumerate() {
        let users: Vec<usize> = (q..workers).step_by(n).collect();
        match users.as_slice() {
            [] => {}
            [only] => slots[*only] = Some(TxSlot::Own(queue)),
            _ => {
                let shared = std::sync::Arc::new(SharedTxQueue::new(queue));
                for &w in &users {
                    slots[w] = Some(TxSlot::Shared(std::sync::Arc::clone(&shared)));
                }
            }
        }
    }
    slots
}
