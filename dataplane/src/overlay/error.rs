//! Why the builder rejected an overlay configuration.

use std::net::IpAddr;

use ipnet::IpNet;
use thiserror::Error;

use super::lpm::LpmFull;
use crate::ethernet::MacAddr;
use crate::port::PortIdx;

/// A configuration [`OverlayBuilder::build`](super::OverlayBuilder::build) rejects,
/// naming the offending item. Checks run underlay first, then networks, local
/// endpoints, remote endpoints and routes, each in the order given (routes by
/// prefix length, shortest first, then in the order given); the first failure
/// is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OverlayConfigError {
    /// The underlay's uplink index is `MAX_PORTS` or more.
    #[error("underlay uplink port {port}: index out of range, at most {max} ports")]
    UplinkOutOfRange {
        /// The index given.
        port: PortIdx,
        /// [`MAX_PORTS`](crate::port::MAX_PORTS).
        max: usize,
    },
    /// The underlay's MAC is a group address or all zeros.
    #[error("underlay MAC {mac} is not a station address (multicast or all zeros)")]
    UnderlayMulticastMac {
        /// The MAC.
        mac: MacAddr,
    },
    /// The underlay's on-link prefix or gateway is not of the local VTEP's family.
    #[error("underlay {what} {addr} is not of the family of the local VTEP {local_vtep}")]
    UnderlayFamilyMismatch {
        /// `"on-link prefix"` or `"gateway"`.
        what: &'static str,
        /// The offending address or prefix, as text.
        addr: String,
        /// The local VTEP address.
        local_vtep: IpAddr,
    },
    /// The local VTEP address is outside the on-link prefix.
    #[error("local VTEP {local_vtep} is outside the underlay on-link prefix {on_link}")]
    LocalVtepNotOnLink {
        /// The local VTEP address.
        local_vtep: IpAddr,
        /// The on-link prefix.
        on_link: IpNet,
    },
    /// The underlay gateway is outside the on-link prefix.
    #[error("underlay gateway {gateway} is outside the on-link prefix {on_link}")]
    UnderlayGatewayNotOnLink {
        /// The gateway.
        gateway: IpAddr,
        /// The on-link prefix.
        on_link: IpNet,
    },
    /// The underlay MTU leaves less than 1280 bytes for inner packets.
    #[error("underlay MTU {mtu} is too small: at least {min} for this address family")]
    UnderlayMtuTooSmall {
        /// The MTU given.
        mtu: u16,
        /// The smallest MTU accepted.
        min: u16,
    },
    /// More networks than [`NetworkId`](super::NetworkId) can index.
    #[error("{count} networks: at most {max}")]
    TooManyNetworks {
        /// How many were given.
        count: usize,
        /// [`MAX_NETWORKS`](super::MAX_NETWORKS).
        max: usize,
    },
    /// Two networks share a name.
    #[error("network name {name:?} is used twice")]
    DuplicateNetworkName {
        /// The name.
        name: String,
    },
    /// A VNI does not fit 24 bits.
    #[error("network {network:?}: VNI {vni} is larger than 2^24-1")]
    VniOutOfRange {
        /// The network.
        network: String,
        /// The VNI given.
        vni: u32,
    },
    /// Two networks share a VNI.
    #[error("VNI {vni} is used by network {first:?} and network {second:?}")]
    DuplicateVni {
        /// The VNI.
        vni: u32,
        /// The first network with it.
        first: String,
        /// The second network with it.
        second: String,
    },
    /// A network's gateway MAC is a group address or all zeros.
    #[error(
        "network {network:?}: gateway MAC {mac} is not a station address (multicast or all zeros)"
    )]
    GatewayMulticastMac {
        /// The network.
        network: String,
        /// The MAC.
        mac: MacAddr,
    },
    /// A gateway address is outside the network's subnets.
    #[error("network {network:?}: gateway {ip} is not in any of its subnets")]
    GatewayNotInSubnet {
        /// The network.
        network: String,
        /// The gateway address.
        ip: IpAddr,
    },
    /// Two subnets of one tenant overlap (possibly in the same network).
    #[error(
        "tenant {tenant:?}: subnet {second_subnet} of network {second_network:?} \
         overlaps {first_subnet} of network {first_network:?}"
    )]
    OverlappingSubnets {
        /// The tenant.
        tenant: String,
        /// The network of the subnet seen first.
        first_network: String,
        /// The subnet seen first.
        first_subnet: IpNet,
        /// The network of the overlapping subnet.
        second_network: String,
        /// The overlapping subnet.
        second_subnet: IpNet,
    },
    /// A network's flood list names a VTEP twice.
    #[error("network {network:?}: VTEP {vtep} is in the flood list twice")]
    DuplicateFloodVtep {
        /// The network.
        network: String,
        /// The VTEP.
        vtep: IpAddr,
    },
    /// A VTEP is referenced but no underlay is configured.
    #[error("{item}: VTEP {vtep} needs an underlay, and none is configured")]
    NoUnderlay {
        /// What references it (`network "x" flood list`, `endpoint 02:.. in "x"`).
        item: String,
        /// The VTEP.
        vtep: IpAddr,
    },
    /// A remote VTEP is not of the local VTEP's address family.
    #[error("{item}: VTEP {vtep} is not of the family of the local VTEP {local_vtep}")]
    VtepFamilyMismatch {
        /// What references it.
        item: String,
        /// The VTEP.
        vtep: IpAddr,
        /// The local VTEP.
        local_vtep: IpAddr,
    },
    /// A remote VTEP is the local VTEP.
    #[error("{item}: VTEP {vtep} is the local VTEP")]
    VtepIsLocal {
        /// What references it.
        item: String,
        /// The VTEP.
        vtep: IpAddr,
    },
    /// More distinct VTEPs than [`VtepIdx`](super::VtepIdx) can index.
    #[error("more than {max} distinct remote VTEPs")]
    TooManyVteps {
        /// [`MAX_VTEPS`](super::MAX_VTEPS).
        max: usize,
    },
    /// An endpoint names a network that does not exist.
    #[error("endpoint {mac}: network {network:?} does not exist")]
    EndpointUnknownNetwork {
        /// The endpoint's MAC.
        mac: MacAddr,
        /// The network it names.
        network: String,
    },
    /// An endpoint MAC is a group address or all zeros.
    #[error("endpoint {mac} in network {network:?}: not a station MAC (multicast or all zeros)")]
    EndpointMulticastMac {
        /// The network.
        network: String,
        /// The MAC.
        mac: MacAddr,
    },
    /// An endpoint has its network's gateway MAC.
    #[error("endpoint {mac} in network {network:?}: that is the gateway MAC")]
    EndpointMacIsGateway {
        /// The network.
        network: String,
        /// The MAC.
        mac: MacAddr,
    },
    /// Two endpoints of one network share a MAC.
    #[error("endpoint {mac} in network {network:?} is declared twice")]
    DuplicateMac {
        /// The network.
        network: String,
        /// The MAC.
        mac: MacAddr,
    },
    /// An endpoint address is outside its network's subnets.
    #[error("endpoint {mac} in network {network:?}: {ip} is not in any of its subnets")]
    EndpointIpOutsideSubnets {
        /// The network.
        network: String,
        /// The endpoint's MAC.
        mac: MacAddr,
        /// The address.
        ip: IpAddr,
    },
    /// Two endpoints of one network (hence of one VRF: subnets do not overlap)
    /// share an address.
    #[error("network {network:?}: {ip} is claimed by endpoint {first} and endpoint {second}")]
    DuplicateIp {
        /// The network.
        network: String,
        /// The address.
        ip: IpAddr,
        /// The endpoint that claimed it first.
        first: MacAddr,
        /// The endpoint that claimed it again.
        second: MacAddr,
    },
    /// An endpoint claims one of its network's gateway addresses.
    #[error("endpoint {mac} in network {network:?}: {ip} is the gateway's address")]
    EndpointIpIsGateway {
        /// The network.
        network: String,
        /// The endpoint's MAC.
        mac: MacAddr,
        /// The address.
        ip: IpAddr,
    },
    /// A local endpoint's port index is `MAX_PORTS` or more.
    #[error(
        "endpoint {mac} in network {network:?}: port {port} out of range, at most {max} ports"
    )]
    PortOutOfRange {
        /// The network.
        network: String,
        /// The endpoint's MAC.
        mac: MacAddr,
        /// The port.
        port: PortIdx,
        /// [`MAX_PORTS`](crate::port::MAX_PORTS).
        max: usize,
    },
    /// A local endpoint sits on the underlay uplink.
    #[error("endpoint {mac} in network {network:?}: port {port} is the underlay uplink")]
    EndpointOnUplink {
        /// The network.
        network: String,
        /// The endpoint's MAC.
        mac: MacAddr,
        /// The port.
        port: PortIdx,
    },
    /// A port carries endpoints of two networks.
    #[error("port {port} carries endpoints of network {first:?} and of network {second:?}")]
    PortInTwoNetworks {
        /// The port.
        port: PortIdx,
        /// The network seen first on it.
        first: String,
        /// The other network.
        second: String,
    },
    /// A route names a tenant that has no network.
    #[error("route {prefix} in tenant {tenant:?}: the tenant has no network")]
    RouteUnknownTenant {
        /// The tenant.
        tenant: String,
        /// The route's prefix.
        prefix: IpNet,
    },
    /// A route's next hop names a network that does not exist.
    #[error("route {prefix} in tenant {tenant:?}: network {network:?} does not exist")]
    RouteUnknownNetwork {
        /// The tenant.
        tenant: String,
        /// The route's prefix.
        prefix: IpNet,
        /// The network named.
        network: String,
    },
    /// A route's next hop is on a network of another tenant.
    #[error(
        "route {prefix} in tenant {tenant:?}: network {network:?} belongs to tenant {network_tenant:?}"
    )]
    RouteOtherTenant {
        /// The route's tenant.
        tenant: String,
        /// The route's prefix.
        prefix: IpNet,
        /// The network named.
        network: String,
        /// That network's tenant.
        network_tenant: String,
    },
    /// A route's next hop is not a known endpoint of its network.
    #[error("route {prefix} in tenant {tenant:?}: next hop {ip} is not an endpoint of network {network:?}")]
    UnknownNextHop {
        /// The tenant.
        tenant: String,
        /// The route's prefix.
        prefix: IpNet,
        /// The network named.
        network: String,
        /// The next hop.
        ip: IpAddr,
    },
    /// Two routes of one VRF (connected subnets included) share a prefix.
    #[error("route {prefix} in tenant {tenant:?} is declared twice (or is a connected subnet)")]
    DuplicateRoute {
        /// The tenant.
        tenant: String,
        /// The prefix.
        prefix: IpNet,
    },
    /// The route table of a VRF (every VRF's IPv4 routes share one bound) is full.
    #[error("route {prefix} in tenant {tenant:?}: {reason}")]
    RouteTableFull {
        /// The tenant.
        tenant: String,
        /// The prefix that did not fit (a static route or a connected subnet).
        prefix: IpNet,
        /// Which bound.
        reason: LpmFull,
    },
    /// A write removes an endpoint that is not there (or not with that address).
    #[error("endpoint {mac} in network {network:?}: no such endpoint{}", .ip.map(|ip| format!(" with address {ip}")).unwrap_or_default())]
    NoSuchEndpoint {
        /// The network.
        network: String,
        /// The MAC.
        mac: MacAddr,
        /// The address it was said to hold, when that is what does not match.
        ip: Option<IpAddr>,
    },
    /// A write removes an endpoint that a static route resolves through.
    #[error(
        "endpoint {mac} in network {network:?}: {ip} is the next hop of route {prefix} \
         in tenant {tenant:?}: delete or change the route first"
    )]
    EndpointIsNextHop {
        /// The network.
        network: String,
        /// The MAC.
        mac: MacAddr,
        /// The address routes use.
        ip: IpAddr,
        /// The tenant of the first such route.
        tenant: String,
        /// Its prefix.
        prefix: IpNet,
    },
    /// A write removes a static route that is not there (a connected subnet
    /// is not one).
    #[error("route {prefix} in tenant {tenant:?}: no such route")]
    NoSuchRoute {
        /// The tenant.
        tenant: String,
        /// The prefix.
        prefix: IpNet,
    },
}
