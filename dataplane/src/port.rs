//! Dense port indices.
//!
//! Every per-port table on the fast path (tx queues, tx batches, counters, flood
//! lists) is a plain array indexed by [`PortIdx`], so a port lookup is an index, not
//! a hash. The control plane hands out small dense indices; names live in the
//! pipeline snapshot, for operators and error messages.

use std::fmt;

/// The most ports one switch instance handles. Small enough that a set of ports fits
/// one `u64` bitmask (the worker tracks which tx batches are pending that way) and
/// that per-port arrays stay a few KiB.
pub const MAX_PORTS: usize = 64;

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

impl fmt::Display for PortIdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
