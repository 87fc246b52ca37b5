//! Connection tracking: a stage slot, and the tables it will read.
//!
//! The stage itself is still an empty slot in the stage list: it passes every
//! packet on and compiles to nothing. The pure cores it will call are here and
//! tested, but **not yet called**: [`nat`] rewrites a frame's addresses and
//! ports with incremental checksums. Wiring them into the stage comes with the
//! flow table, as a stage that reads the packet context (the parsed 5-tuple,
//! the network) and writes its decision into it, with its trace record in
//! `trace::Record`.

pub mod nat;

use std::ops::ControlFlow;

use super::packet::PacketCtx;
use super::Verdict;

/// The stage: passes every packet on.
#[inline(always)]
pub(super) fn run(_pc: &mut PacketCtx<'_, '_>) -> ControlFlow<Verdict> {
    ControlFlow::Continue(())
}
