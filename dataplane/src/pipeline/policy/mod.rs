//! Network policy: the model a controller writes, its compiler, and the
//! classifier that gives a new connection its verdict (issue #26).
//!
//! The stage function at the bottom is still the empty slot — **not yet
//! called**: it passes every packet on and compiles to nothing. The pieces it
//! is to call are here, pure and tested: [`model`] (the tiers, validated with
//! errors naming the field), [`compile`] (the model into a
//! [`CompiledPolicy`]) and [`classify`] (direction + 5-tuple → a
//! [`DecisionId`] naming the allow or deny and the tier, policy and rule that
//! decided, for trace and hit counters).
//!
//! # The structure, and why
//!
//! DESIGN_NUMBERS_GO_HERE

pub mod classify;
pub mod compile;
pub mod model;

use std::ops::ControlFlow;

pub use classify::Connection;
pub use compile::{
    Action, CompileError, CompileLimits, CompiledPolicy, Decider, Decision, DecisionId, RuleRef,
};
pub use model::{Direction, PolicyError, PolicySet, Tier, ValidPolicySet};

use super::packet::PacketCtx;
use super::Verdict;

/// The stage: passes every packet on.
#[inline(always)]
pub(super) fn run(_pc: &mut PacketCtx<'_, '_>) -> ControlFlow<Verdict> {
    ControlFlow::Continue(())
}
