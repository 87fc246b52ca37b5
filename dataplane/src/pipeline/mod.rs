//! The match-action pipeline: what the worker runs on every packet.
//!
//! One immutable [`Pipeline`] snapshot holds every table — the classic L2 stage
//! (port groups, patches, static MACs) and the overlay (virtual networks, endpoints,
//! routes, VTEPs) — and is published whole through a
//! [`SnapshotCell`](crate::snapshot::SnapshotCell), so a worker that loads it once per
//! burst sees one consistent generation of everything.
//!
//! The stages, in the order a packet meets them, are listed once, in
//! [`stages`](self::stages) (DESIGN.md §3): ingress classify (and the one parse)
//! → tunnel decap → conntrack → service LB/NAT → policy → ARP/ND responder → L2
//! forward → L3 forward (route) → tunnel encap → output. Each is a module of its
//! own (`classify.rs`, `decap.rs`, …) owning its per-packet logic, its drop
//! reasons (the `stage` column of [`DropReason`](crate::DropReason)'s table) and
//! its trace record; they share a per-packet context (`packet.rs`) into which
//! each writes its decision. `README.md` next to this file says how to add one.
//!
//! The worker's bursts first meet the unified flow table (`flow/`, the loop in
//! `burst.rs`): the stages run on a flow's first packet and compile what they
//! did into one action, which every later packet of the flow gets for one
//! lookup (the differential tests in `tests.rs` hold it to the stages' verdicts
//! and bytes). The table lives in the worker's [`WorkerState`], which survives
//! snapshot swaps. Replies the switch makes (ARP, ND, ICMP) reuse the request's
//! buffer in place — no allocation on the packet path.

mod burst;
mod classify;
pub mod conntrack;
mod decap;
mod encap;
mod flow;
mod l2;
pub mod lb;
mod output;
mod packet;
pub mod policy;
mod reply;
mod respond;
mod route;
mod scratch;
mod stages;
mod state;
mod trace;

use std::net::IpAddr;
use std::time::Instant;

use arrayvec::ArrayVec;

use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::l2::{L2Ingress, L2Pipeline, L2Verdict};
use crate::overlay::{
    NeighborMap, NetworkId, NetworkInfo, OverlaySnapshot, ResolveLimiter, VtepIdx,
};
use crate::port::PortIdx;
use crate::snapshot::Versioned;
use crate::wire::ParseConfig;

pub use flow::{FlowStats, DEFAULT_FLOW_ENTRIES};
pub use reply::{build_arp_request, build_neighbor_solicitation};
pub use scratch::Scratch;
pub use stages::Stage;
pub use state::WorkerState;
pub use trace::{TraceLine, TraceNames, Traced};

/// Everything a worker forwards with, published as one snapshot.
#[derive(Debug)]
pub struct Pipeline {
    generation: u64,
    /// The classic L2 stage for ports outside the overlay.
    pub l2: L2Pipeline,
    /// Virtual networks, endpoints, routes and the underlay.
    pub overlay: OverlaySnapshot,
    /// Tunnel ports and known critical Geneve options.
    pub parse: ParseConfig,
    /// Services and their Maglev tables (read by the LB stage once it is
    /// wired); shared whole by snapshots that change no service.
    pub services: std::sync::Arc<lb::Services>,
    /// The network policy, compiled on the control thread (read by the policy
    /// stage); shared whole by snapshots that change no policy.
    pub policy: std::sync::Arc<policy::CompiledPolicy>,
    /// Per network: whether policy applies in it (it holds a subject), which
    /// makes it tracked (`policy::policed_networks`).
    policed: Vec<bool>,
    has_overlay: bool,
}

impl Pipeline {
    /// A pipeline of generation `generation` from its parts.
    pub fn new(
        generation: u64,
        l2: L2Pipeline,
        overlay: OverlaySnapshot,
        parse: ParseConfig,
    ) -> Self {
        let has_overlay = overlay.network_count() > 0 || overlay.underlay().is_some();
        Pipeline {
            generation,
            l2,
            overlay,
            parse,
            services: std::sync::Arc::default(),
            policy: policy::CompiledPolicy::shared_empty(),
            policed: Vec::new(),
            has_overlay,
        }
    }

    /// This pipeline with `services` (built on the control thread, before it
    /// is published).
    pub fn with_services(mut self, services: std::sync::Arc<lb::Services>) -> Self {
        self.services = services;
        self
    }

    /// This pipeline with `policy` (compiled on the control thread, before it
    /// is published).
    pub fn with_policy(mut self, policy: std::sync::Arc<policy::CompiledPolicy>) -> Self {
        self.policed = policy::policed_networks(&self.overlay, &policy);
        self.policy = policy;
        self
    }

    /// Whether policy applies in network `net`: then the policy stage
    /// classifies its connections, and it is tracked.
    #[inline(always)]
    pub fn policed(&self, net: NetworkId) -> bool {
        self.policed.get(net.index()).copied().unwrap_or(false)
    }

    /// Whether policy applies in any network.
    pub fn policed_any(&self) -> bool {
        self.policed.iter().any(|&b| b)
    }

    /// A pipeline with only the L2 stage.
    pub fn l2_only(l2: L2Pipeline) -> Self {
        let g = l2.generation();
        Pipeline::new(g, l2, OverlaySnapshot::empty(g), ParseConfig::default())
    }

    /// True when any virtual network or an underlay is configured. Without one, the
    /// worker takes the burst-wide L2 fast path.
    #[inline]
    pub fn has_overlay(&self) -> bool {
        self.has_overlay
    }

    /// Runs one packet through the pipeline. The packet may be rewritten in place
    /// (decapsulated, routed, encapsulated, or turned into a reply).
    ///
    /// For one-off packets (tests): it runs the stages with fresh working space
    /// and no flow table. The worker uses [`process_burst`](Self::process_burst).
    pub fn process<B: PacketBuf>(
        &self,
        in_port: PortIdx,
        pkt: &mut B,
        ctx: &mut Ctx<'_>,
    ) -> Verdict {
        // A small conntrack table: a one-off packet needs no more, and the
        // default one is tens of megabytes.
        let mut ws = WorkerState::with_flow_entries(0).with_conntrack(conntrack::CtConfig {
            capacity: 64,
            ..conntrack::CtConfig::default()
        });
        self.process_with(in_port, pkt, ctx, &mut ws)
    }

    /// [`process`](Self::process) with the caller's worker state (its flow
    /// table looked up and filled), which must have been bound to this snapshot
    /// with [`WorkerState::bind`] (the worker binds once a round).
    #[inline]
    pub fn process_with<B: PacketBuf>(
        &self,
        in_port: PortIdx,
        pkt: &mut B,
        ctx: &mut Ctx<'_>,
        ws: &mut WorkerState,
    ) -> Verdict {
        let mut out = [Verdict::Drop(DropReason::NoOutput)];
        self.process_burst(
            self.ingress(in_port),
            std::slice::from_mut(pkt),
            ctx,
            ws,
            &mut out,
        );
        out[0]
    }

    /// What packets arriving on `in_port` meet first: decided once for a burst
    /// (it depends on the port only) instead of once per packet.
    #[inline]
    pub fn ingress(&self, in_port: PortIdx) -> Ingress<'_> {
        let kind = if !self.has_overlay {
            IngressKind::Classic
        } else if self.overlay.underlay().map(|u| u.uplink) == Some(in_port) {
            IngressKind::Uplink
        } else if let Some(net) = self.overlay.network_of_port(in_port) {
            match self.overlay.network(net) {
                Some(info) => IngressKind::Network(net, info),
                None => IngressKind::UnknownNetwork,
            }
        } else {
            IngressKind::Classic
        };
        Ingress {
            port: in_port,
            kind,
            l2: self.l2.ingress(in_port),
        }
    }

    /// Runs a burst from `ingress` (which must come from this snapshot's
    /// [`ingress`](Self::ingress)): `out[i]` is the verdict of `pkts[i]`, for as
    /// many packets as `out` has room for and at most [`BURST`](crate::BURST).
    /// Returns the burst's bytes after processing (packets are rewritten in
    /// place) and the port every packet goes to, when there is one.
    ///
    /// The loops it runs are never inlined: in the worker's large poll function the
    /// per-packet paths competed with the poll loop for registers.
    #[inline]
    pub fn process_burst<B: PacketBuf>(
        &self,
        ingress: Ingress<'_>,
        pkts: &mut [B],
        ctx: &mut Ctx<'_>,
        ws: &mut WorkerState,
        out: &mut [Verdict],
    ) -> (u64, Option<PortIdx>) {
        debug_assert!(
            ws.scratch.is_bound_to(self),
            "worker state bound to another snapshot"
        );
        if ws.use_flows {
            burst::flows(self, ingress, pkts, ctx, ws, out)
        } else {
            burst::per_packet(self, ingress, pkts, ctx, ws, out)
        }
    }

    /// Encapsulates a copy made for a network flood towards `vtep`; the verdict is
    /// an output on the uplink or a drop.
    pub fn encap_flood_copy<B: PacketBuf>(
        &self,
        net: NetworkId,
        vtep: VtepIdx,
        pkt: &mut B,
        ctx: &mut Ctx<'_>,
    ) -> Verdict {
        encap::encap_flood(self, net, vtep, pkt, ctx)
    }
}

/// Where a burst came in, as the pipeline sees it ([`Pipeline::ingress`]).
#[derive(Clone, Copy)]
pub struct Ingress<'a> {
    port: PortIdx,
    kind: IngressKind<'a>,
    l2: L2Ingress<'a>,
}

#[derive(Clone, Copy)]
enum IngressKind<'a> {
    /// A classic L2 port (or no overlay at all).
    Classic,
    /// The underlay uplink: tunnels come in here.
    Uplink,
    /// A port of this virtual network.
    Network(NetworkId, &'a NetworkInfo),
    /// A port of a network the snapshot does not describe (never in a snapshot
    /// built by the control plane).
    UnknownNetwork,
}

impl Versioned for Pipeline {
    fn generation(&self) -> u64 {
        self.generation
    }
}

/// What to do with a packet after the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send (possibly rewritten) to this port.
    Output(PortIdx),
    /// Flood in the ingress port's L2 group (classic ports).
    Flood,
    /// Flood in a virtual network: to its local ports but the ingress one, and — for
    /// a frame from a local port — to its flood VTEPs (split horizon).
    FloodNetwork {
        /// The network.
        net: NetworkId,
        /// Arrived through a tunnel: do not send it back into the overlay.
        from_tunnel: bool,
    },
    /// The packet was dropped for `reason`, and its buffer now holds a reply the
    /// switch generated (ICMP error) to send to `out`.
    Reply {
        /// Where the reply goes.
        out: PortIdx,
        /// Why the original packet was dropped.
        reason: DropReason,
    },
    /// Drop, counting the reason.
    Drop(DropReason),
    /// Hand the packet, as received, to this worker, which owns its
    /// connection (`conntrack/mod.rs`): it goes over the handoff ring.
    Handoff(u16),
}

impl From<L2Verdict> for Verdict {
    #[inline]
    fn from(v: L2Verdict) -> Self {
        match v {
            L2Verdict::Output(p) => Verdict::Output(p),
            L2Verdict::Flood => Verdict::Flood,
            L2Verdict::Drop(r) => Verdict::Drop(r),
        }
    }
}

/// Most underlay addresses a worker asks to resolve per burst.
pub const MAX_RESOLVE_PER_BURST: usize = 8;

/// Per-burst state the pipeline reads and writes besides the snapshot: the
/// underlay neighbour map (loaded once per burst), what was learned, and which
/// addresses need an ARP/ND request.
pub struct Ctx<'a> {
    /// The underlay neighbour map.
    pub neighbors: &'a NeighborMap,
    /// Now, read from the clock the first time a burst needs it (only the
    /// resolution rate limit does): a clock read per burst is measurable at 30
    /// Mpps, and most bursts never need it.
    now: Option<Instant>,
    /// Rate limit of resolution requests.
    pub limiter: &'a mut ResolveLimiter,
    /// Addresses to resolve after this burst.
    pub to_resolve: ArrayVec<IpAddr, MAX_RESOLVE_PER_BURST>,
    /// Neighbours learned from the underlay's ARP/ND in this burst.
    pub learned: ArrayVec<(IpAddr, crate::MacAddr), MAX_RESOLVE_PER_BURST>,
}

impl<'a> Ctx<'a> {
    /// A context for one burst.
    pub fn new(neighbors: &'a NeighborMap, limiter: &'a mut ResolveLimiter, now: Instant) -> Self {
        let mut ctx = Ctx::lazy(neighbors, limiter);
        ctx.now = Some(now);
        ctx
    }

    /// A context for one burst that reads the clock only if asked.
    #[inline]
    pub fn lazy(neighbors: &'a NeighborMap, limiter: &'a mut ResolveLimiter) -> Self {
        Ctx {
            neighbors,
            now: None,
            limiter,
            to_resolve: ArrayVec::new(),
            learned: ArrayVec::new(),
        }
    }

    /// Now, the same for the whole burst.
    pub fn now(&mut self) -> Instant {
        *self.now.get_or_insert_with(Instant::now)
    }
}

#[cfg(test)]
mod tests;
