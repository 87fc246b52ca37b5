//! The overlay configuration as the control plane states it: plain data, names not
//! indices, nothing validated yet.
//!
//! These types are what `control` fills from its desired state and hands to
//! [`OverlayBuilder`](super::OverlayBuilder). They refer to each other by name
//! (an endpoint names its network, a route names its tenant), the way an operator
//! or a CNI plugin does; the builder resolves names into dense indices and rejects
//! anything inconsistent, naming the offending item.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::ethernet::MacAddr;
use crate::port::PortIdx;

/// The largest VNI: both VXLAN and Geneve carry a 24-bit network identifier.
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// How a network's frames are carried between VTEPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encap {
    /// VXLAN (RFC 7348), UDP port 4789.
    Vxlan,
    /// Geneve (RFC 8926), UDP port 6081, sent without options.
    Geneve,
}

impl Encap {
    /// Bytes the encapsulation adds in front of the inner Ethernet header: the
    /// tunnel header only (8 for both, Geneve without options).
    pub const fn header_len(self) -> u16 {
        match self {
            Encap::Vxlan | Encap::Geneve => 8,
        }
    }

    /// The IANA UDP destination port.
    pub const fn udp_port(self) -> u16 {
        match self {
            Encap::Vxlan => 4789,
            Encap::Geneve => 6081,
        }
    }
}

/// A virtual network: one L2 broadcast domain, one VNI, one or more subnets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Unique name, used in errors and by endpoints and routes to refer to it.
    pub name: String,
    /// The 24-bit virtual network identifier, unique across all networks.
    pub vni: u32,
    /// The tunnel encapsulation to and from remote VTEPs.
    pub encap: Encap,
    /// The tenant (VRF) this network belongs to. Networks of one tenant are routed
    /// to each other through their gateways; different tenants never see each other
    /// and may reuse addresses.
    pub tenant: String,
    /// The network's subnets, IPv4 and IPv6. Each becomes a connected route in the
    /// tenant's VRF; they must not overlap any other subnet of the same tenant.
    /// Host bits are ignored (`10.0.0.1/24` means `10.0.0.0/24`).
    pub subnets: Vec<IpNet>,
    /// The gateway's addresses on this network (typically one per address family),
    /// each inside one of `subnets`. The switch answers ARP/ND for them with
    /// `gateway_mac` and routes frames sent to `gateway_mac`.
    pub gateway_ips: Vec<IpAddr>,
    /// The distributed router's MAC on this network.
    pub gateway_mac: MacAddr,
    /// Unknown unicast: `true` floods it to `vteps`, `false` drops it (named drop).
    pub flood_unknown: bool,
    /// Connection tracking of the network's IPv4/IPv6 TCP, UDP and ICMP
    /// traffic (its zone is its VNI). Off by default: an untracked network keeps
    /// the flow table's speed.
    pub conntrack: bool,
    /// With `conntrack`: TCP segments outside the tracked window are dropped
    /// (`ct_out_of_window`); off, the window is followed but not enforced.
    pub conntrack_window_tracking: bool,
    /// The remote VTEPs that carry this network: where broadcast, multicast and
    /// (with `flood_unknown`) unknown unicast go, head-end replicated.
    pub vteps: Vec<IpAddr>,
    /// What a policy change does to the network's open connections.
    pub policy_on_change: crate::pipeline::policy::OnChange,
}

/// A workload attached to this switch: a pod or VM interface on a local port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEndpointSpec {
    /// The name of the network it is on.
    pub network: String,
    /// Its MAC, unique in the network.
    pub mac: MacAddr,
    /// Its addresses, each inside the network's subnets and unique in it. May be
    /// empty for a pure L2 endpoint.
    pub ips: Vec<IpAddr>,
    /// The local port it sits behind. A port carries endpoints of one network only.
    pub port: PortIdx,
}

/// A workload on another node, reached through that node's VTEP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEndpointSpec {
    /// The name of the network it is on.
    pub network: String,
    /// Its MAC, unique in the network.
    pub mac: MacAddr,
    /// Its addresses, each inside the network's subnets and unique in it.
    pub ips: Vec<IpAddr>,
    /// The underlay address of the VTEP it sits behind; same family as the local VTEP.
    pub vtep: IpAddr,
}

/// Where a static route sends matching packets.
///
/// There is deliberately no "connected to network N" target: connected routes are
/// derived from each network's subnets, so they cannot disagree with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// Forward to the endpoint with address `ip` on network `network` (a router
    /// pod, a firewall appliance, an egress gateway), which must be a known local
    /// or remote endpoint of that network, in the route's tenant.
    NextHop {
        /// The network the next hop is on.
        network: String,
        /// The next hop's address on it.
        ip: IpAddr,
    },
    /// Drop matching packets (a blackhole / reject route).
    Blackhole,
}

/// A static route in a tenant's VRF, on top of the connected routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// The tenant (VRF) the route belongs to; must have at least one network.
    pub tenant: String,
    /// The destination prefix, IPv4 or IPv6, `/0` for a default route. Host bits
    /// are ignored. Unique in the VRF, connected subnets included.
    pub prefix: IpNet,
    /// Where matching packets go.
    pub target: RouteTarget,
}

/// The physical side: where tunnels leave this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnderlaySpec {
    /// The port tunnelled packets go out of (and come in on).
    pub uplink: PortIdx,
    /// The local VTEP address, outer source of every tunnelled packet. Its family
    /// (IPv4 or IPv6) is the underlay's; every remote VTEP must share it.
    pub local_vtep_ip: IpAddr,
    /// The uplink's MAC, outer source MAC.
    pub local_mac: MacAddr,
    /// The underlay IP MTU on the uplink. The networks' inner MTU is this minus the
    /// encapsulation overhead and must be at least 1280 (the IPv6 minimum).
    pub mtu: u16,
    /// The on-link prefix of the uplink: remote VTEPs in it are resolved directly,
    /// others through `gateway`. Contains `local_vtep_ip`.
    pub on_link: IpNet,
    /// The underlay default gateway, on-link, for VTEPs outside `on_link`. `None`
    /// means such VTEPs are unreachable.
    pub gateway: Option<IpAddr>,
}
