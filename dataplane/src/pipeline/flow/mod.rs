//! The unified flow table (DESIGN.md §3): the stages run on a flow's first
//! packet and compile what they did into one action; every later packet of the
//! flow is one lookup plus that action. One mechanism for every traffic shape
//! the extractor understands: switched, routed, encapsulated, decapsulated.
//!
//! - **Key** (`key.rs`): the ingress port and the header fields the stages
//!   read, five words, extracted at fixed offsets with the parse's own checks
//!   on what is not in the key. A frame the extractor does not understand
//!   (IPv6, tags, options, fragments, ARP/ND, Geneve options) is a miss that is
//!   not installed.
//! - **Action** (`action.rs`): pop the tunnel headers, rewrite the MACs and
//!   decrement the TTL, push an outer header from a template, output. The
//!   per-packet guards (TTL, MTU, headroom, template and neighbours current)
//!   send a packet that fails one to the stages, unchanged.
//! - **Templates** (`template.rs`): the outer header per (network, VTEP), held
//!   once in a side table; entries name theirs by slot and tag.
//! - **Table** (`table.rs`): per worker, bounded (`flow_table_entries`, a power
//!   of two), buckets of eight ways with signatures and "last used" stamps in
//!   one cache line, the least recently used way evicted from a full bucket.
//!   Counted: hits, misses, installs, evictions, revalidations. Under thrash
//!   (a window's hit rate below 1/8) it admits one new key in 32 and most
//!   bursts skip it for the stages (`skipped_installs`, `bypassed`).
//!
//! **Compilation.** The stages write their decisions into the packet's
//! [`PacketCtx`](super::packet::PacketCtx); the ones that transform the packet
//! also write their part of the action into its [`Compiled`] record (decap:
//! pop; route: MACs, TTL, the networks and VRF it depended on; encap: the
//! template). A packet that goes through every stage to an `Output` installs
//! its entry; one a stage ends (drops, ARP/ND and ICMP replies made in place)
//! and floods are never installed: they are not a pure function of the key and
//! the snapshot, or not worth an entry. No decision is written twice: the flow
//! module only replays what the stages recorded.
//!
//! **Across snapshot swaps** ([`WorkerState`](super::WorkerState)). An entry
//! keeps the snapshot generation it was validated at and what it depends on:
//! the network it was switched in, the one it was routed into, the VRF that
//! routed it. The snapshot keeps the generation at which each network, each VRF
//! and the rest ("global") last changed: a full build moves the global one, a
//! delta write only the networks and VRFs it touches. An entry hit with an older
//! generation is restamped and applied if none of its dependencies changed since
//! (`revalidations`), else the packet runs the stages and reinstalls it. So a
//! pod added in network A leaves network B's flows on the fast path; A's own
//! flows take the stages once. The underlay neighbour map is checked per packet
//! for entries that push a header (the next hop's MAC is in the template).
//!
//! **Burst loop** (`super::burst`): keys and hashes for the whole burst (a
//! frame that reads like the one before joins its run: a bulk flow's run costs
//! one extraction and one lookup), the buckets prefetched; then the frames that
//! are runs of their own, each a lookup and its action's arm, and the longer
//! runs, each one lookup and one loop of its action's kind ([`action::Kind`],
//! set at install: no frame branches on the action's parts); then the misses
//! through the stages, which install. Classic L2 ports keep their own path: their MAC table is already
//! one lookup, and nothing is compiled for them.
//!
//! **Numbers.** An entry is 112 bytes plus 8 of its bucket's header: 120
//! bytes, 7.5 MiB for the default 65,536 entries (the LB stage's rewrite
//! added 24: 96 before). A hit costs (callgrind, 64 B, the
//! PMDs' 190 included) 331–369 instructions per packet with one flow and
//! 505–581 with 1k flows, against 277–359 and 306–416 for the per-shape fast
//! paths this replaced: the price of one mechanism for every shape is 4–71
//! instructions a packet with one flow and 160–222 with 1k flows today. Where
//! they go: the key (extraction with the parse's checks, the run check, the
//! hash) about 135 a frame, a lookup about 50, an encapsulation's action
//! about 120 (`bench/RESULTS.md`, "Flow table").

pub(crate) mod action;
pub(crate) mod key;
pub(crate) mod table;
pub(crate) mod template;

#[cfg(test)]
mod tests;

pub use table::FlowStats;

use crate::overlay::{NetworkId, VrfId};

/// Entries in a worker's flow table unless configured.
pub const DEFAULT_FLOW_ENTRIES: usize = 1 << 16;

/// What the stages did to a packet, as the parts of an action (see the module
/// docs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Compiled {
    /// Decap stripped a plain tunnel's outer headers, this many bytes.
    pub(crate) popped: Option<usize>,
    /// Route rewrote the MACs (destination, source) and decremented the TTL.
    pub(crate) routed: Option<[u8; 12]>,
    /// The network routed into, and the VRF that routed.
    pub(crate) routed_into: Option<(NetworkId, VrfId)>,
    /// Encap pushed the template in this slot with this tag, with this source
    /// port, under this MTU.
    pub(crate) encap: Option<EncapRecord>,
    /// Conntrack tracked the packet: every hit updates its connection.
    pub(crate) tracked: bool,
    /// The LB stage rewrote one side of the packet for a service connection.
    pub(crate) nat: Option<action::Nat>,
    /// Conntrack handed the packet to this worker, which owns its tuple by
    /// hash (`false`) or by the redirect stub the packet met (`true`).
    pub(crate) handoff: Option<(u16, bool)>,
    /// Something was done that an action cannot replay (a header built without
    /// the side table, an IPv6 hop limit).
    pub(crate) uncacheable: bool,
}

/// The encap stage's part of an action.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EncapRecord {
    pub(crate) slot: u16,
    pub(crate) tag: u32,
    pub(crate) src_port: u16,
    pub(crate) max_ip_len: u16,
}
