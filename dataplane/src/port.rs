//! Dense port indices.
//!
//! Every per-port table on the fast path (tx queues, tx batches, counters, flood
//! lists) is a plain array indexed by [`PortIdx`], so a port lookup is an index, not
//! a hash. The control plane hands out small dense indices; names live in the
//! pipeline snapshot, for operators and error messages.

use std::fmt;

/// The most ports one switch instance handles: a kernel pod is a port, and a
/// node runs up to 110 pods by default (more with a raised kubelet limit).
/// Small enough that a port fits a byte in the per-frame and per-MAC tables
/// ([`BurstPorts`], the L2 stage's `MacDest`), that a set of ports is four
/// words ([`PortSet`]: the worker's pending tx batches) and that per-port
/// arrays stay a few KiB.
pub const MAX_PORTS: usize = 256;

/// A set of port indices below [`MAX_PORTS`], one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PortSet([u64; MAX_PORTS / 64]);

impl PortSet {
    /// Adds port `i`.
    #[inline(always)]
    pub(crate) fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// Removes port `i`.
    #[inline(always)]
    pub(crate) fn remove(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// The lowest port in the set, if any.
    #[inline(always)]
    pub(crate) fn first(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, &w)| w != 0)
            .map(|(k, w)| k * 64 + w.trailing_zeros() as usize)
    }
}

const _: () = assert!(MAX_PORTS.is_multiple_of(64));

/// A port's dense index, `0..MAX_PORTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortIdx(pub u16);

impl PortIdx {
    /// The index as a `usize`, for indexing per-port arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The output ports a burst's straight pass noted, a byte per frame (a port fits
/// one: [`MAX_PORTS`] is at most 256), for a burst of `n` frames it decided
/// all of.
pub(crate) struct BurstPorts(pub(crate) [u8; crate::io::BURST]);

const _: () = assert!(MAX_PORTS <= 256);

impl BurstPorts {
    /// None noted yet.
    #[inline(always)]
    pub(crate) fn new() -> Self {
        BurstPorts([0; crate::io::BURST])
    }

    /// The one port all `n` frames go to, if they do (not for an empty burst).
    /// The unused tail is set to the first port, so the check runs over the whole
    /// array, a fixed size the compiler does in a few vector steps.
    #[inline(always)]
    pub(crate) fn one(mut self, n: usize) -> Option<PortIdx> {
        let first = self.0[0];
        self.0[n.min(crate::io::BURST)..].fill(first);
        let differ = self.0.iter().fold(0u8, |acc, &p| acc | (p ^ first));
        (n > 0 && differ == 0).then_some(PortIdx(u16::from(first)))
    }
}

impl fmt::Display for PortIdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
