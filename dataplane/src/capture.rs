//! Packet capture: copies of the frames a port receives or sends, handed to the
//! control thread (which writes them to a pcap for `vswitchctl capture`).
//!
//! Off, it costs one relaxed atomic load per burst and per tx flush: the masks say
//! which ports are captured. On, a captured frame is copied into a `Vec` and offered
//! to a bounded channel; when the reader falls behind, copies are dropped and
//! counted (`dropped`), never the forwarded packets, and the worker never blocks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::SystemTime;

use crate::port::PortIdx;

/// Which way a captured frame was going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the switch on the port.
    Rx,
    /// Sent by the switch on the port.
    Tx,
}

/// One captured frame.
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    /// The port.
    pub port: PortIdx,
    /// Received or sent.
    pub direction: Direction,
    /// When the worker saw it.
    pub time: SystemTime,
    /// The bytes, from the Ethernet header.
    pub data: Vec<u8>,
}

/// Copies waiting for the reader before new ones are dropped.
pub const CAPTURE_QUEUE: usize = 8192;

/// The capture state shared by the workers and the control thread.
#[derive(Debug)]
pub struct CaptureTap {
    rx_mask: AtomicU64,
    tx_mask: AtomicU64,
    sender: crossbeam::channel::Sender<CapturedFrame>,
    receiver: crossbeam::channel::Receiver<CapturedFrame>,
    dropped: AtomicU64,
}

impl Default for CaptureTap {
    fn default() -> Self {
        let (sender, receiver) = crossbeam::channel::bounded(CAPTURE_QUEUE);
        CaptureTap {
            rx_mask: AtomicU64::new(0),
            tx_mask: AtomicU64::new(0),
            sender,
            receiver,
            dropped: AtomicU64::new(0),
        }
    }
}

impl CaptureTap {
    /// Starts capturing `port` in the given directions (the previous capture, if
    /// any, is replaced) and returns the channel the copies arrive on.
    pub fn start(
        &self,
        port: PortIdx,
        rx: bool,
        tx: bool,
    ) -> crossbeam::channel::Receiver<CapturedFrame> {
        // Whatever an earlier capture left behind is not this one's.
        while self.receiver.try_recv().is_ok() {}
        self.dropped.store(0, Relaxed);
        let bit = 1u64 << (port.index() % 64);
        self.rx_mask.store(if rx { bit } else { 0 }, Relaxed);
        self.tx_mask.store(if tx { bit } else { 0 }, Relaxed);
        self.receiver.clone()
    }

    /// Stops capturing.
    pub fn stop(&self) {
        self.rx_mask.store(0, Relaxed);
        self.tx_mask.store(0, Relaxed);
    }

    /// Copies dropped because the reader fell behind, in the current capture.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Whether frames of `port` going `direction` are captured now.
    #[inline]
    pub fn wants(&self, port: PortIdx, direction: Direction) -> bool {
        let mask = match direction {
            Direction::Rx => &self.rx_mask,
            Direction::Tx => &self.tx_mask,
        };
        mask.load(Relaxed) & (1u64 << (port.index() % 64)) != 0
    }

    /// Offers a copy of `data`; drops it (counted) if the reader is behind.
    pub fn offer(&self, port: PortIdx, direction: Direction, data: &[u8]) {
        let frame = CapturedFrame {
            port,
            direction,
            time: SystemTime::now(),
            data: data.to_vec(),
        };
        if self.sender.try_send(frame).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_chosen_port_and_direction_are_copied() {
        let tap = CaptureTap::default();
        assert!(!tap.wants(PortIdx(1), Direction::Rx), "off by default");
        let rx = tap.start(PortIdx(1), true, false);
        assert!(tap.wants(PortIdx(1), Direction::Rx));
        assert!(!tap.wants(PortIdx(1), Direction::Tx));
        assert!(!tap.wants(PortIdx(2), Direction::Rx));
        tap.offer(PortIdx(1), Direction::Rx, &[1, 2, 3]);
        let f = rx.try_recv().unwrap();
        assert_eq!(
            (f.port, f.direction, f.data),
            (PortIdx(1), Direction::Rx, vec![1, 2, 3])
        );
        tap.stop();
        assert!(!tap.wants(PortIdx(1), Direction::Rx));
    }

    #[test]
    fn a_slow_reader_loses_copies_not_packets() {
        let tap = CaptureTap::default();
        let _rx = tap.start(PortIdx(0), true, true);
        for _ in 0..CAPTURE_QUEUE + 10 {
            tap.offer(PortIdx(0), Direction::Tx, &[0; 60]);
        }
        assert_eq!(tap.dropped(), 10);
    }
}
