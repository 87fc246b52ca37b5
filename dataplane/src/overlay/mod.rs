//! Virtual networks: the overlay forwarding state, compiled into an immutable
//! snapshot with cheap lookups, and the underlay neighbour table.
//!
//! A *network* is one L2 domain with a VNI, an encapsulation, subnets and a
//! distributed gateway; networks of one *tenant* share a VRF and are routed to each
//! other through their gateways; tenants are fully separate and may reuse MACs and
//! addresses. *Endpoints* are local (behind a port of this switch) or remote
//! (behind another node's VTEP, reached by VXLAN or Geneve over the *underlay*).
//!
//! The control plane describes all that with the plain types of [`spec`], by
//! name; [`OverlayBuilder`] validates the whole description (naming the offending
//! item in an [`OverlayConfigError`]) and compiles it into an [`OverlaySnapshot`]
//! of dense indices and flat hash tables, published through a
//! [`SnapshotCell`](crate::snapshot::SnapshotCell). Workers load it once per
//! burst. Lookups never allocate, lock or call through a trait object.
//!
//! Semantics a pipeline stage builds on:
//! - **Ingress**: a frame from a local port belongs to
//!   [`OverlaySnapshot::network_of_port`] (a port carries exactly one network: the
//!   network of the endpoints behind it); a frame from the uplink is decapsulated
//!   and belongs to [`OverlaySnapshot::network_by_vni`]. All further lookups are
//!   keyed by that network, which is what keeps VNIs apart even when they reuse
//!   MACs and IPs.
//! - **Switching**: a destination MAC equal to the network's
//!   [`NetworkInfo::gateway_mac`] is routed; otherwise
//!   [`OverlaySnapshot::l2_lookup`] gives a local port or a remote VTEP. A miss
//!   is flooded to [`NetworkInfo::flood_vteps`] if
//!   [`NetworkInfo::flood_unknown`], else dropped with a named reason. Broadcast
//!   and multicast go to [`NetworkInfo::local_ports`] and, from a local port
//!   only (split horizon), to the flood VTEPs.
//! - **ARP and ND** requests for a gateway address or a known endpoint are
//!   answered by the switch ([`OverlaySnapshot::arp_lookup`],
//!   [`OverlaySnapshot::nd_lookup`]); others are neither answered nor learned.
//! - **Routing**: [`OverlaySnapshot::route`] in the network's VRF does a
//!   longest-prefix match over connected subnets and static routes; a connected
//!   result finishes with [`OverlaySnapshot::host_lookup`] in the destination
//!   network, a static next hop is resolved at build time. The routed frame
//!   leaves with the destination network's gateway MAC as source.
//! - **Encapsulation** to a [`VtepInfo`]: outer source from
//!   [`UnderlayInfo`], outer destination MAC from the [`NeighborMap`] entry of
//!   [`VtepInfo::next_hop`]; packets larger than [`NetworkInfo::mtu`] do not fit.
//!
//! The underlay neighbour table is runtime state, not configuration, so it lives
//! apart from the snapshot: see [`neighbor`].

mod builder;
mod error;
pub mod lpm;
pub mod neighbor;
mod patch;
mod snapshot;
pub mod spec;

pub use builder::OverlayBuilder;
pub use error::OverlayConfigError;
pub use neighbor::{LearnOutcome, NeighborConfig, NeighborMap, NeighborTable, ResolveLimiter};
pub use patch::OverlayChange;
pub use snapshot::{
    L2Dest, NetworkId, NetworkInfo, OverlaySnapshot, RouteResult, UnderlayInfo, VrfId, VtepIdx,
    VtepInfo, MAX_NETWORKS, MAX_VTEPS,
};
pub use spec::{
    Encap, LocalEndpointSpec, NetworkSpec, RemoteEndpointSpec, RouteSpec, RouteTarget,
    UnderlaySpec, MAX_VNI,
};

#[cfg(test)]
mod tests;
