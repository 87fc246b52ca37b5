//! An empty slot in the stage list: connection tracking (a shard per worker) goes
//! here when its issue lands, as a stage that reads the packet context (the parsed
//! 5-tuple, the network) and writes its decision into it, with its drop reasons in
//! the table of [`crate::drop`] and its trace record in `trace::Record`. Until then
//! it passes every packet on and compiles to nothing.

use std::ops::ControlFlow;

use super::packet::PacketCtx;
use super::Verdict;

/// The stage: passes every packet on.
#[inline(always)]
pub(super) fn run(_pc: &mut PacketCtx<'_, '_>) -> ControlFlow<Verdict> {
    ControlFlow::Continue(())
}
