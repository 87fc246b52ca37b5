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
