//! The stage order, written once.
//!
//! A packet the per-packet pipeline takes meets these stages in this order; each
//! lives in a module of its own that owns its per-packet logic, its drop reasons
//! (the `stage` column of the table in [`crate::drop`]) and its trace record.
//! A stage reads the [`PacketCtx`] the stages before it filled and either writes
//! its decision there and lets the packet go on (`Continue`), or ends the packet
//! with a [`Verdict`] (`Break`): a drop, or a reply the switch made in place.
//!
//! The list is plain ordered calls in one function: no table of function
//! pointers, nothing dynamic, so a pass-through stage compiles to nothing. A new
//! stage is a module and one line in [`run_stages`] (and one in [`Stage`]); see
//! `dataplane/src/pipeline/README.md`.
//!
//! The worker's burst loops first look each frame up in the flow table
//! (`flow/`); the misses come here, and what the stages compile for them is
//! installed there.

use std::fmt;
use std::ops::ControlFlow;

use super::conntrack::CtShard;
use super::flow::template::Templates;
use super::flow::Compiled;
use super::packet::PacketCtx;
use super::scratch::Scratch;
use super::trace::Tracer;
use super::{classify, conntrack, decap, encap, l2, lb, output, policy, respond, route};
use super::{Ctx, Ingress, Pipeline, Verdict};
use crate::buf::PacketBuf;
use crate::overlay::NetworkId;

/// A stage of the pipeline, in order: what a drop reason belongs to and what a
/// trace record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Ingress classify: what kind of port the packet came in on, and the parse.
    Classify,
    /// Tunnel decap on the uplink: VNI → network, outer headers stripped.
    Decap,
    /// Connection tracking, in the networks that ask for it.
    Conntrack,
    /// Service load balancing: a new connection to a frontend picks its
    /// backend, every packet of a service connection is translated.
    Lb,
    /// Network policy: a new connection is classified, after the LB stage
    /// chose its backend (`policy/mod.rs` says why after and not before).
    Policy,
    /// The ARP/ND responder, for the overlay and for the underlay.
    Respond,
    /// L2 forwarding: a classic port's MAC table, or a network's.
    L2,
    /// L3 forwarding through the distributed gateway.
    Route,
    /// Tunnel encap towards a remote VTEP.
    Encap,
    /// Output: the verdict, the tx batches and the ports' own limits.
    Output,
}

impl Stage {
    /// Every stage, in the order a packet meets them.
    pub const ALL: [Stage; 10] = [
        Stage::Classify,
        Stage::Decap,
        Stage::Conntrack,
        Stage::Lb,
        Stage::Policy,
        Stage::Respond,
        Stage::L2,
        Stage::Route,
        Stage::Encap,
        Stage::Output,
    ];

    /// The stage's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Classify => "classify",
            Stage::Decap => "decap",
            Stage::Conntrack => "conntrack",
            Stage::Lb => "lb",
            Stage::Policy => "policy",
            Stage::Respond => "respond",
            Stage::L2 => "l2",
            Stage::Route => "route",
            Stage::Encap => "encap",
            Stage::Output => "output",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Runs one packet from `ingress` through every stage; `t` collects the stages'
/// trace records (nothing, and no code, for the workers' [`NoTrace`](super::trace::NoTrace)).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn run<'p, B: PacketBuf, T: Tracer>(
    p: &'p Pipeline,
    ingress: Ingress<'p>,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
    templates: &mut Templates,
    ct: &mut CtShard,
    t: &mut T,
) -> Verdict {
    run_compiled(p, ingress, pkt, ctx, s, templates, ct, t).0
}

/// [`run`], with what the stages compiled for the flow table when the packet
/// went through every stage to an output that an action can replay: the
/// record and the network the packet was switched in.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn run_compiled<'p, B: PacketBuf, T: Tracer>(
    p: &'p Pipeline,
    ingress: Ingress<'p>,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    s: &mut Scratch,
    templates: &mut Templates,
    ct: &mut CtShard,
    t: &mut T,
) -> (Verdict, Option<(Compiled, NetworkId)>) {
    let Scratch {
        outer,
        inner,
        routes,
        ..
    } = s;
    let mut pc = PacketCtx::new(ingress, outer, inner);
    match run_stages(p, &mut pc, pkt, ctx, templates, routes, ct, t) {
        // A packet handed to the worker owning its tuple: the flow's entry
        // hands the next ones over without the stages.
        ControlFlow::Break(v @ Verdict::Handoff(_)) => match (pc.compiled.handoff, pc.net) {
            (Some(_), Some((net, _))) if !pc.compiled.uncacheable => (v, Some((pc.compiled, net))),
            _ => (v, None),
        },
        ControlFlow::Break(v) => (v, None),
        ControlFlow::Continue(v) => {
            let compiled = match (v, pc.net) {
                (Verdict::Output(_), Some((net, _))) if !pc.compiled.uncacheable => {
                    Some((pc.compiled, net))
                }
                _ => None,
            };
            (v, compiled)
        }
    }
}

/// The stage list. A stage that ends the packet breaks with its verdict; one
/// that gets through them all leaves with the output stage's.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn run_stages<'p, B: PacketBuf, T: Tracer>(
    p: &'p Pipeline,
    pc: &mut PacketCtx<'p, '_>,
    pkt: &mut B,
    ctx: &mut Ctx<'_>,
    templates: &mut Templates,
    routes: &mut super::scratch::RouteCache,
    ct: &mut CtShard,
    t: &mut T,
) -> ControlFlow<Verdict, Verdict> {
    classify::run(p, pc, pkt, t)?;
    decap::run(p, pc, pkt, t)?;
    conntrack::run(p, pc, pkt, ctx, ct, t)?;
    lb::run(p, pc, pkt, ct, t)?;
    policy::run(p, pc, pkt, ct, t)?;
    respond::run(p, pc, pkt, ctx, t)?;
    l2::run(p, pc, pkt, t)?;
    route::run(p, pc, pkt, routes, t)?;
    encap::run(p, pc, pkt, ctx, templates, t)?;
    ControlFlow::Continue(output::run(pc))
}
