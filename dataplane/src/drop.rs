//! Why a packet was dropped.
//!
//! Drops are data, not log lines: every place in the dataplane that lets go of a
//! packet without sending it names one [`DropReason`], and the worker counts it in a
//! plain array indexed by the reason (see [`crate::stats`]). An enum rather than
//! strings keeps the fast path to one array increment, and one table here keeps the
//! operator-visible names in one place, like VPP's per-node error tables.

use std::fmt;

/// The reason a packet was dropped. The discriminant indexes counter arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// The frame is shorter than an Ethernet header (14 bytes).
    RuntFrame = 0,
    /// Received on a port the current pipeline snapshot does not know.
    NoPipelinePort = 1,
    /// The destination is the port the packet came in on.
    Hairpin = 2,
    /// Nothing to send to, e.g. a flood in a group whose only member is the ingress port.
    NoOutput = 3,
    /// This worker has no tx queue on the output port.
    NoTxQueue = 4,
    /// The output port refused the packet at `tx_burst` (ring full).
    TxFull = 5,
    /// No buffer could be allocated for a copy of a flooded packet.
    FloodAllocFailed = 6,
    /// The port received a frame larger than one buffer and it could not be made
    /// contiguous (a jumbo frame on a port whose buffers are too small).
    RxOversize = 7,
}

impl DropReason {
    /// How many reasons there are: the length of every per-reason counter array.
    pub const COUNT: usize = 8;

    /// Every reason, in discriminant order (`ALL[r.index()] == r`).
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::RuntFrame,
        DropReason::NoPipelinePort,
        DropReason::Hairpin,
        DropReason::NoOutput,
        DropReason::NoTxQueue,
        DropReason::TxFull,
        DropReason::FloodAllocFailed,
        DropReason::RxOversize,
    ];

    /// The index of this reason in per-reason counter arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name shown to operators (`vswitchctl`, metrics labels).
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::RuntFrame => "runt_frame",
            DropReason::NoPipelinePort => "no_pipeline_port",
            DropReason::Hairpin => "hairpin",
            DropReason::NoOutput => "no_output",
            DropReason::NoTxQueue => "no_tx_queue",
            DropReason::TxFull => "tx_full",
            DropReason::FloodAllocFailed => "flood_alloc_failed",
            DropReason::RxOversize => "rx_oversize",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        for n in &names {
            assert!(
                n.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{n} is not snake_case"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(DropReason::TxFull.to_string(), "tx_full");
    }
}
