//! Service load balancing and NAT: a stage slot, and the tables it will read.
//!
//! The stage itself is still an empty slot in the stage list: it passes every
//! packet on and compiles to nothing. The pure core it will call is here and
//! tested, but **not yet called**: [`maglev`] builds a service's lookup table
//! (Maglev, NSDI 2016, with weights and backend states). Wiring it into the
//! stage (VIP → Maglev → DNAT through conntrack) comes with the flow table, as a
//! stage that reads the packet context (the parsed 5-tuple, the network) and
//! writes its decision into it, with its drop reasons in the table of
//! [`crate::drop`] and its trace record in `trace::Record`.

pub mod maglev;
pub mod services;

pub use services::Services;

use std::ops::ControlFlow;

use super::packet::PacketCtx;
use super::Verdict;

/// The stage: passes every packet on.
#[inline(always)]
pub(super) fn run(_pc: &mut PacketCtx<'_, '_>) -> ControlFlow<Verdict> {
    ControlFlow::Continue(())
}
