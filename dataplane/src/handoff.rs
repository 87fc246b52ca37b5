//! The conntrack handoff between workers: one bounded ring per ordered pair of
//! workers, carrying packets (their buffers, ownership moved) and the redirect
//! stubs' inserts and removals (`pipeline/conntrack/mod.rs` has the design).
//!
//! # The ring
//! A ring is crossbeam's [`ArrayQueue`]: bounded, allocated once when the mesh
//! is built, lock-free (a compare-and-swap per push and per pop, no lock, no
//! allocation), and safe Rust, so this crate keeps its `forbid(unsafe_code)`.
//! DPDK's `rte_ring` in SP/SC mode would save the compare-and-swap, but it
//! carries pointers: the buffers would have to leave `PacketBuf` for raw
//! mbuf pointers and come back through `unsafe` in `pmd-shims` on both sides,
//! and the `VecBuf` tests would no longer run the code the workers run. Only
//! wrong-core packets pay for the ring, so its constant matters less than
//! keeping one code path.
//!
//! Each ring has one producer (the worker it comes from) and one consumer (the
//! worker it goes to); the queue allows more, which costs nothing here.
//!
//! A full ring refuses: the caller drops the packet and counts it as
//! `ct_handoff_full`. A worker never waits on a peer, so a stalled owner cannot
//! stall the worker that receives its connections' packets.
//!
//! # Order
//! One ring carries both packets and stubs, so what a worker sends to one peer
//! arrives in the order sent. A worker empties *every* ring into its staging
//! area in one pass right after an `rx_burst` and before it processes that
//! burst: a stub is then in the table before the reply it is for — the reply
//! was received after the first packet of its connection was sent, which was
//! after the stub was pushed.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use crate::pipeline::conntrack::CtTuple;
use crate::port::PortIdx;

/// Messages a ring holds unless configured.
pub const DEFAULT_HANDOFF_RING: usize = 1024;

/// What goes over a ring.
#[derive(Debug)]
pub enum HandoffMsg<B> {
    /// A packet for the receiving worker, as it was received on `in_port` (a
    /// decapsulated frame is handed with its outer headers put back): the
    /// receiver runs it through the pipeline from the start.
    Packet {
        /// The port it was received on.
        in_port: PortIdx,
        /// The frame.
        buf: B,
    },
    /// Leave a redirect stub for `tuple` in `zone`: its packets go to `owner`.
    Stub {
        /// The zone.
        zone: u32,
        /// The tuple (a DNAT'd connection's reply tuple).
        tuple: CtTuple,
        /// The worker owning the connection.
        owner: u16,
    },
    /// Remove the stub of `tuple` in `zone` that `owner` left.
    Unstub {
        /// The zone.
        zone: u32,
        /// The tuple.
        tuple: CtTuple,
        /// The worker whose stub it is.
        owner: u16,
    },
}

type Ring<B> = Arc<ArrayQueue<HandoffMsg<B>>>;

/// One worker's ends of the mesh: a ring to every other worker and one from
/// every other worker.
pub struct HandoffRings<B> {
    me: u16,
    workers: u16,
    /// `to[w]`: the ring to worker `w` (`None` for this worker).
    to: Vec<Option<Ring<B>>>,
    /// The rings from every other worker.
    from: Vec<Ring<B>>,
}

impl<B> std::fmt::Debug for HandoffRings<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffRings")
            .field("me", &self.me)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// The rings between `workers` workers, `capacity` messages each (at least 1):
/// element `w` is worker `w`'s ends.
pub fn mesh<B>(workers: usize, capacity: usize) -> Vec<HandoffRings<B>> {
    let workers = workers.clamp(1, usize::from(u16::MAX));
    let rings: Vec<Vec<Option<Ring<B>>>> = (0..workers)
        .map(|from| {
            (0..workers)
                .map(|to| (from != to).then(|| Arc::new(ArrayQueue::new(capacity.max(1)))))
                .collect()
        })
        .collect();
    (0..workers)
        .map(|me| HandoffRings {
            me: me as u16,
            workers: workers as u16,
            to: rings[me].clone(),
            from: (0..workers).filter_map(|w| rings[w][me].clone()).collect(),
        })
        .collect()
}

impl<B> HandoffRings<B> {
    /// This worker's number in the mesh.
    pub fn me(&self) -> u16 {
        self.me
    }

    /// Workers in the mesh.
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// Messages the rings towards this worker hold at most together: what a
    /// staging area must take to empty them in one pass.
    pub fn inbound_capacity(&self) -> usize {
        self.from.iter().map(|r| r.capacity()).sum()
    }

    /// Pushes `msg` to worker `to`.
    ///
    /// # Errors
    /// The message back when the ring is full or `to` is no peer.
    #[inline]
    pub fn send(&self, to: u16, msg: HandoffMsg<B>) -> Result<(), HandoffMsg<B>> {
        match self.to.get(usize::from(to)) {
            Some(Some(r)) => r.push(msg),
            _ => Err(msg),
        }
    }

    /// Pops every message now in the rings towards this worker, ring by ring,
    /// into `f`.
    #[inline]
    pub fn drain(&self, mut f: impl FnMut(HandoffMsg<B>)) {
        for r in &self.from {
            // Bounded by what the ring held when the pass started, so a peer
            // pushing as fast as this worker pops cannot keep it here.
            for _ in 0..r.len() {
                match r.pop() {
                    Some(m) => f(m),
                    None => break,
                }
            }
        }
    }

    /// Whether any ring towards this worker holds a message.
    #[inline]
    pub fn pending(&self) -> bool {
        self.from.iter().any(|r| !r.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_per_ordered_pair_in_order_and_bounded() {
        let m = mesh::<u32>(3, 2);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].inbound_capacity(), 4);
        let pkt = |n| HandoffMsg::Packet {
            in_port: PortIdx(n),
            buf: u32::from(n),
        };
        assert!(m[0].send(1, pkt(1)).is_ok());
        assert!(m[0].send(1, pkt(2)).is_ok());
        // Full: refused and given back, never blocking.
        assert!(matches!(
            m[0].send(1, pkt(3)),
            Err(HandoffMsg::Packet { buf: 3, .. })
        ));
        // Not a peer.
        assert!(m[0].send(0, pkt(4)).is_err());
        assert!(m[0].send(7, pkt(4)).is_err());
        assert!(m[2].send(1, pkt(5)).is_ok());
        assert!(m[1].pending() && !m[0].pending());
        let mut got = Vec::new();
        m[1].drain(|msg| {
            if let HandoffMsg::Packet { buf, .. } = msg {
                got.push(buf);
            }
        });
        assert_eq!(got, [1, 2, 5]);
        assert!(!m[1].pending());
    }
}
