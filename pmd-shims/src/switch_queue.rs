//! The queues a switch worker polls: a DPDK ethdev's or a packet socket's.
//!
//! The worker is generic over one rx and one tx queue type, monomorphised, so
//! the two kinds meet in an enum: one predictable branch per burst, never per
//! packet, and no trait object.

use dataplane::io::{Burst, RxQueue, TxQueue};

use crate::mbuf::Mbuf;
use crate::packet_socket::{SocketRxQueue, SocketTxQueue};
use crate::port::{PortRxQueue, PortTxQueue};

/// A receive queue of either kind of port.
#[derive(Debug)]
pub enum SwitchRxQueue {
    /// A DPDK port's.
    Ethdev(PortRxQueue),
    /// A packet socket's.
    Socket(SocketRxQueue),
}

/// A transmit queue of either kind of port.
#[derive(Debug)]
pub enum SwitchTxQueue {
    /// A DPDK port's.
    Ethdev(PortTxQueue),
    /// A packet socket's.
    Socket(SocketTxQueue),
}

impl RxQueue for SwitchRxQueue {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst<Mbuf>) -> usize {
        match self {
            SwitchRxQueue::Ethdev(q) => q.rx_burst(out),
            SwitchRxQueue::Socket(q) => q.rx_burst(out),
        }
    }
}

impl TxQueue for SwitchTxQueue {
    type Buf = Mbuf;

    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        match self {
            SwitchTxQueue::Ethdev(q) => q.tx_burst(pkts),
            SwitchTxQueue::Socket(q) => q.tx_burst(pkts),
        }
    }

    #[inline]
    fn max_frame_len(&self) -> usize {
        match self {
            SwitchTxQueue::Ethdev(q) => q.max_frame_len(),
            SwitchTxQueue::Socket(q) => q.max_frame_len(),
        }
    }
}
