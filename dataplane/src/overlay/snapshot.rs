//! The compiled overlay: what a worker consults per packet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hashbrown::HashMap;
use ipnet::IpNet;

use super::lpm::LpmTable;
use super::spec::Encap;
use crate::densemap::{DenseMap, DenseReader};
use crate::ethernet::MacAddr;
use crate::flatmap::FlatMap;
use crate::port::{PortIdx, MAX_PORTS};
use crate::snapshot::Versioned;

/// The most networks one snapshot holds: what a [`NetworkId`] can index.
pub const MAX_NETWORKS: usize = 1 << 16;

/// The most distinct remote VTEPs one snapshot holds: what a [`VtepIdx`] can
/// index. Fifteen bits, so that a MAC table entry's destination (a local port or
/// a VTEP, and which of the two) fits the 16 bits a [`DenseMap`] keeps beside the
/// MAC; far more nodes than one Kubernetes cluster has.
pub const MAX_VTEPS: usize = 1 << 15;

/// A network's dense index in one snapshot, `0..network_count()`, in the order the
/// networks were given. Valid only with the snapshot that handed it out (flow cache
/// entries holding one are invalidated by generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(pub u16);

impl NetworkId {
    /// The index as a `usize`, for indexing per-network arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A tenant's VRF, dense, in order of first appearance among the networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VrfId(pub u16);

/// A remote VTEP's dense index into [`OverlaySnapshot::vteps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VtepIdx(pub u16);

impl VtepIdx {
    /// The index as a `usize`.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a frame for a known MAC goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L2Dest {
    /// Out of this local port, as is.
    Local(PortIdx),
    /// Encapsulated to this remote VTEP.
    Remote(VtepIdx),
}

impl L2Dest {
    /// The bit of [`to_bits`](Self::to_bits) that says "remote".
    const REMOTE: u16 = 1 << 15;

    /// The destination in 16 bits, as a MAC table keeps it: a local port's index,
    /// or a VTEP's index with the top bit set. Both are below 2^15 in a snapshot
    /// ([`MAX_PORTS`], [`MAX_VTEPS`]).
    #[inline(always)]
    pub(crate) const fn to_bits(self) -> u16 {
        match self {
            L2Dest::Local(p) => p.0,
            L2Dest::Remote(v) => Self::REMOTE | v.0,
        }
    }

    /// The destination [`to_bits`](Self::to_bits) wrote.
    #[inline(always)]
    pub(crate) const fn from_bits(bits: u16) -> L2Dest {
        if bits & Self::REMOTE != 0 {
            L2Dest::Remote(VtepIdx(bits & !Self::REMOTE))
        } else {
            L2Dest::Local(PortIdx(bits))
        }
    }
}

// The top bit of an L2Dest's 16 bits tells a port from a VTEP.
const _: () = assert!(MAX_PORTS <= 1 << 15 && MAX_VTEPS <= 1 << 15);

/// The outcome of a route lookup in a VRF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteResult {
    /// The destination is on this network's subnet: finish with
    /// [`OverlaySnapshot::host_lookup`] for the destination address; a miss there
    /// is an unknown host in a known subnet.
    Connected(NetworkId),
    /// A static route's next hop, already resolved at build time: rewrite the
    /// destination MAC to `mac` (source MAC: `network`'s gateway MAC) and send
    /// to `dest`.
    NextHop {
        /// The network the next hop is on.
        network: NetworkId,
        /// The next hop's MAC.
        mac: MacAddr,
        /// Where the next hop is.
        dest: L2Dest,
    },
    /// A blackhole route: drop.
    Blackhole,
}

/// A network as compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Its name.
    pub name: Box<str>,
    /// Its VNI.
    pub vni: u32,
    /// Its encapsulation.
    pub encap: Encap,
    /// Its tenant's VRF.
    pub vrf: VrfId,
    /// The gateway MAC: a frame to it is routed, not switched; ARP/ND for a
    /// gateway IP is answered with it; routed frames leave with it as source.
    pub gateway_mac: MacAddr,
    /// Whether unknown unicast is flooded to [`flood_vteps`](Self::flood_vteps)
    /// (otherwise dropped as an unknown destination).
    pub flood_unknown: bool,
    /// Its traffic is connection-tracked, in the zone of its VNI.
    pub conntrack: bool,
    /// TCP segments outside the tracked window are dropped.
    pub ct_window: bool,
    /// What a policy change does to the network's open connections (read by
    /// the policy stage).
    pub policy_on_change: crate::pipeline::policy::OnChange,
    /// The remote VTEPs for head-end replication of broadcast, multicast and
    /// (with `flood_unknown`) unknown unicast, in the order given.
    pub flood_vteps: Box<[VtepIdx]>,
    /// The local ports carrying this network's endpoints, ascending: where
    /// broadcast and multicast go locally.
    pub local_ports: Box<[PortIdx]>,
    /// The largest inner IP packet that fits the underlay once encapsulated;
    /// `None` without an underlay.
    pub mtu: Option<u16>,
    /// The first IPv4 gateway address: the source of ICMP errors the switch sends
    /// into this network.
    pub gateway_v4: Option<std::net::Ipv4Addr>,
    /// The first IPv6 gateway address, likewise for ICMPv6.
    pub gateway_v6: Option<std::net::Ipv6Addr>,
}

/// A remote VTEP as compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtepInfo {
    /// Its underlay address: the outer destination.
    pub ip: IpAddr,
    /// The underlay next hop whose MAC (from the neighbour map) is the outer
    /// destination MAC: `ip` itself when on-link, else the underlay gateway.
    /// `None` when it is off-link and there is no gateway (unreachable).
    pub next_hop: Option<IpAddr>,
}

/// The underlay as compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnderlayInfo {
    /// The uplink port.
    pub uplink: PortIdx,
    /// The local VTEP address: the outer source.
    pub local_vtep_ip: IpAddr,
    /// The uplink MAC: the outer source MAC.
    pub local_mac: MacAddr,
    /// The underlay IP MTU.
    pub mtu: u16,
    /// The on-link prefix.
    pub on_link: IpNet,
    /// The underlay default gateway.
    pub gateway: Option<IpAddr>,
}

impl UnderlayInfo {
    /// Bytes an encapsulated frame adds to the inner IP packet: outer IP header,
    /// UDP, tunnel header and the inner Ethernet header.
    pub const fn overhead(&self, encap: Encap) -> u16 {
        let ip = match self.local_vtep_ip {
            IpAddr::V4(_) => 20,
            IpAddr::V6(_) => 40,
        };
        ip + 8 + encap.header_len() + crate::ethernet::HEADER_LEN as u16
    }

    /// The underlay next hop for `vtep`: itself if on-link, else the gateway.
    pub fn next_hop(&self, vtep: IpAddr) -> Option<IpAddr> {
        if self.on_link.contains(&vtep) {
            Some(vtep)
        } else {
            self.gateway
        }
    }
}

/// A gateway address or an endpoint address in one network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HostEntry {
    pub(super) mac: MacAddr,
    /// `None` for a gateway address (the switch itself).
    pub(super) dest: Option<L2Dest>,
}

/// One network's endpoint tables: its MAC table and its addresses. Shared
/// between snapshots ([`Arc`]): a write that changes a network's endpoints copies
/// that network's tables and no other's, so its cost follows the network it
/// touches, not the whole overlay.
#[derive(Clone, Debug, Default)]
pub(super) struct NetTables {
    /// MAC → [`L2Dest::to_bits`]. One table per network, not one keyed by
    /// (network, MAC), so that a MAC and its destination fit one word (see
    /// [`DenseMap`]): 100k endpoints take 1 MiB, not 4.
    pub(super) l2: DenseMap,
    /// IPv4 address → host (gateway addresses and endpoints).
    pub(super) hosts4: HashMap<u32, HostEntry>,
    /// IPv6 address → host.
    pub(super) hosts6: HashMap<u128, HostEntry>,
}

impl NetTables {
    #[inline]
    pub(super) fn host(&self, ip: IpAddr) -> Option<&HostEntry> {
        match ip {
            IpAddr::V4(a) => self.hosts4.get(&a.to_bits()),
            IpAddr::V6(a) => self.hosts6.get(&a.to_bits()),
        }
    }
}

/// A static route, as errors name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RouteRef {
    pub(super) tenant: Box<str>,
    pub(super) prefix: IpNet,
}

/// The static routes that resolve through a (network, address): an endpoint
/// holding that address may not be removed while one exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NextHopUse {
    /// The route errors name: the first one built, or one still there after
    /// it was removed.
    pub(super) first: RouteRef,
    /// How many routes resolve through it.
    pub(super) routes: u32,
}

/// An immutable, compiled overlay snapshot: networks, endpoints, routes, VTEPs
/// and the underlay. Built by [`OverlayBuilder`](super::OverlayBuilder),
/// published through a [`SnapshotCell`](crate::snapshot::SnapshotCell). Every
/// lookup is an array index or a hash probe, and none allocates.
#[derive(Clone, Debug)]
pub struct OverlaySnapshot {
    pub(super) generation: u64,
    pub(super) networks: Vec<NetworkInfo>,
    pub(super) vrf_names: Vec<Box<str>>,
    pub(super) by_vni: FlatMap<NetworkId>,
    pub(super) by_name: HashMap<Box<str>, NetworkId>,
    pub(super) port_network: [Option<NetworkId>; MAX_PORTS],
    /// Each network's endpoint tables, indexed by [`NetworkId`].
    pub(super) tables: Vec<Arc<NetTables>>,
    /// Whether any network's MAC table outgrows the caches
    /// ([`DenseReader::is_large`]): the uplink's burst loop, whose frames may be
    /// of any network, then prefetches their slots.
    pub(super) l2_large: bool,
    /// Every VRF's routes; shared with the snapshots that did not change them.
    pub(super) routes: Arc<LpmTable<RouteResult>>,
    /// (network, address) → the routes whose next hop it is.
    pub(super) next_hops: Arc<HashMap<(NetworkId, IpAddr), NextHopUse>>,
    /// Each network's subnets (host bits cleared), indexed by [`NetworkId`]:
    /// what an endpoint's addresses must fall in.
    pub(super) subnets: Vec<Box<[IpNet]>>,
    /// Local endpoints behind each port: a port leaves its network with its last.
    pub(super) port_endpoints: [u32; MAX_PORTS],
    pub(super) vteps: Vec<VtepInfo>,
    pub(super) vtep_by_ip: HashMap<IpAddr, VtepIdx>,
    pub(super) underlay: Option<UnderlayInfo>,
    /// When each part last changed, for the workers' flow tables.
    pub(super) changed: Changed,
}

/// The generations at which parts of a snapshot last changed: what a worker's
/// flow entry, validated at an older generation, checks to know whether what it
/// was compiled from still holds (`pipeline/flow/mod.rs`). A full build sets
/// `global` to its generation (every entry revalidates); a patch
/// ([`OverlaySnapshot::patched`]) sets only the networks and VRFs it touches.
#[derive(Clone, Debug, Default)]
pub(crate) struct Changed {
    /// Anything not listed per network or per VRF: the networks' numbering and
    /// VNIs, the ports' networks, the VTEPs, the underlay.
    pub(super) global: u64,
    /// Per network: its description, endpoints and MAC table (0: not since
    /// `global`).
    pub(super) nets: Vec<u64>,
    /// Per VRF: its routes (0: not since `global`).
    pub(super) vrfs: Vec<u64>,
}

impl Changed {
    /// Marks `net` changed at `generation`.
    pub(super) fn net(&mut self, net: NetworkId, generation: u64) {
        if self.nets.len() <= net.index() {
            self.nets.resize(net.index() + 1, 0);
        }
        self.nets[net.index()] = generation;
    }

    /// Marks `vrf` changed at `generation`.
    pub(super) fn vrf(&mut self, vrf: VrfId, generation: u64) {
        let i = usize::from(vrf.0);
        if self.vrfs.len() <= i {
            self.vrfs.resize(i + 1, 0);
        }
        self.vrfs[i] = generation;
    }
}

impl OverlaySnapshot {
    /// The generation at which `net` (its description, endpoints or MAC table)
    /// or anything global last changed.
    #[inline]
    pub(crate) fn changed_at(&self, net: NetworkId) -> u64 {
        let c = &self.changed;
        c.global.max(c.nets.get(net.index()).copied().unwrap_or(0))
    }

    /// Whether something a flow entry compiled at generation `at` depends on
    /// changed since: the global parts, the networks `nets`, and with `vrf` its
    /// routes.
    #[inline]
    pub(crate) fn changed_since(&self, at: u64, nets: [NetworkId; 2], vrf: Option<VrfId>) -> bool {
        let c = &self.changed;
        let vrf = vrf.map_or(0, |v| c.vrfs.get(usize::from(v.0)).copied().unwrap_or(0));
        let net = |n: NetworkId| c.nets.get(n.index()).copied().unwrap_or(0);
        c.global.max(vrf).max(net(nets[0])).max(net(nets[1])) > at
    }

    /// A snapshot with nothing in it: every lookup misses. What a worker runs
    /// before the control plane has published anything.
    pub fn empty(generation: u64) -> Self {
        OverlaySnapshot {
            generation,
            networks: Vec::new(),
            vrf_names: Vec::new(),
            by_vni: FlatMap::default(),
            by_name: HashMap::new(),
            port_network: [None; MAX_PORTS],
            tables: Vec::new(),
            l2_large: false,
            routes: Arc::new(LpmTable::new(0)),
            next_hops: Arc::default(),
            subnets: Vec::new(),
            port_endpoints: [0; MAX_PORTS],
            vteps: Vec::new(),
            vtep_by_ip: HashMap::new(),
            underlay: None,
            changed: Changed {
                global: generation,
                ..Changed::default()
            },
        }
    }

    /// The snapshot's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The network a decapsulated packet with this VNI belongs to.
    #[inline]
    pub fn network_by_vni(&self, vni: u32) -> Option<NetworkId> {
        self.by_vni.get(u64::from(vni)).copied()
    }

    /// The network of a local port: the network of the endpoints behind it (a port
    /// carries one network). `None` for the uplink and for ports without endpoints.
    #[inline]
    pub fn network_of_port(&self, port: PortIdx) -> Option<NetworkId> {
        self.port_network.get(port.index()).copied().flatten()
    }

    /// A network's compiled attributes; `None` for an id this snapshot did not
    /// hand out.
    #[inline]
    pub fn network(&self, net: NetworkId) -> Option<&NetworkInfo> {
        self.networks.get(net.index())
    }

    /// Every network, indexed by [`NetworkId`].
    pub fn networks(&self) -> &[NetworkInfo] {
        &self.networks
    }

    /// The subnets of network `net` (host bits cleared; empty for a network
    /// without any, or an unknown id).
    pub fn subnets(&self, net: NetworkId) -> &[IpNet] {
        self.subnets.get(net.index()).map_or(&[], |s| s)
    }

    /// The network named `name` (control-plane use: not on the fast path).
    pub fn network_by_name(&self, name: &str) -> Option<NetworkId> {
        self.by_name.get(name).copied()
    }

    /// The VRF of the tenant named `name` (control-plane use).
    pub fn vrf_by_name(&self, name: &str) -> Option<VrfId> {
        self.vrf_names
            .iter()
            .position(|n| &**n == name)
            .map(|i| VrfId(i as u16))
    }

    /// The tenant name of a VRF.
    pub fn vrf_name(&self, vrf: VrfId) -> Option<&str> {
        self.vrf_names.get(usize::from(vrf.0)).map(|n| &**n)
    }

    /// Where a frame to `mac` in network `net` goes; `None` for an unknown MAC
    /// (flood or named drop, per [`NetworkInfo::flood_unknown`]) and for the
    /// gateway MAC (compare with [`NetworkInfo::gateway_mac`] first: it is routed).
    #[inline]
    pub fn l2_lookup(&self, net: NetworkId, mac: MacAddr) -> Option<L2Dest> {
        self.l2_lookup_bits(net, mac.to_u64())
    }

    /// `net`'s MAC table as a reader, keyed by the MAC as [`MacAddr::to_u64`]
    /// gives it, its values [`L2Dest::to_bits`], for a burst loop that keeps the
    /// table's fields in registers. An id this snapshot did not hand out reads
    /// an empty table.
    #[inline]
    pub(crate) fn l2_reader(&self, net: NetworkId) -> DenseReader<'_> {
        self.tables
            .get(net.index())
            .map_or(DenseReader::EMPTY, |t| t.l2.reader())
    }

    /// Whether any network's MAC table outgrows the caches (see
    /// [`DenseReader::is_large`]).
    #[inline]
    pub fn l2_is_large(&self) -> bool {
        self.l2_large
    }

    /// [`l2_lookup`](Self::l2_lookup) with the MAC as [`MacAddr::to_u64`] gives it
    /// (e.g. from [`MacAddr::dst_bits`]).
    // Always inlined: the burst loops switch every frame with it, and as a call it
    // cost them their registers.
    #[inline(always)]
    pub fn l2_lookup_bits(&self, net: NetworkId, mac: u64) -> Option<L2Dest> {
        self.l2_reader(net).get(mac).map(L2Dest::from_bits)
    }

    /// The MAC to answer an ARP request for `ip` in network `net` with: the gateway
    /// MAC for a gateway address, the endpoint's MAC for a known endpoint (local or
    /// remote). `None`: let the request go (flood or drop), never answer.
    #[inline]
    pub fn arp_lookup(&self, net: NetworkId, ip: Ipv4Addr) -> Option<MacAddr> {
        self.host(net, IpAddr::V4(ip)).map(|h| h.mac)
    }

    /// [`arp_lookup`](Self::arp_lookup) for an IPv6 Neighbor Solicitation target.
    #[inline]
    pub fn nd_lookup(&self, net: NetworkId, ip: Ipv6Addr) -> Option<MacAddr> {
        self.host(net, IpAddr::V6(ip)).map(|h| h.mac)
    }

    #[inline]
    fn host(&self, net: NetworkId, ip: IpAddr) -> Option<&HostEntry> {
        self.tables.get(net.index())?.host(ip)
    }

    /// Whether `ip` is one of network `net`'s gateway addresses (packets to it are
    /// for the switch: ICMP echo, not forwarding).
    #[inline]
    pub fn is_gateway(&self, net: NetworkId, ip: IpAddr) -> bool {
        self.host(net, ip).is_some_and(|h| h.dest.is_none())
    }

    /// The endpoint with address `ip` in network `net`: its MAC (the routed frame's
    /// new destination MAC) and where it is. `None` for unknown addresses and for
    /// gateway addresses.
    #[inline]
    pub fn host_lookup(&self, net: NetworkId, ip: IpAddr) -> Option<(MacAddr, L2Dest)> {
        self.host(net, ip).and_then(|h| Some((h.mac, h.dest?)))
    }

    /// Longest-prefix match of `dst` in `vrf`: connected subnets and static routes.
    #[inline]
    pub fn route(&self, vrf: VrfId, dst: IpAddr) -> Option<RouteResult> {
        self.routes.lookup(vrf.0, dst).copied()
    }

    /// A remote VTEP; `None` for an index this snapshot did not hand out.
    #[inline]
    pub fn vtep(&self, idx: VtepIdx) -> Option<&VtepInfo> {
        self.vteps.get(idx.index())
    }

    /// The remote VTEP with underlay address `ip` (e.g. to check the outer source
    /// of a tunnelled packet).
    #[inline]
    pub fn vtep_by_ip(&self, ip: IpAddr) -> Option<VtepIdx> {
        self.vtep_by_ip.get(&ip).copied()
    }

    /// Every remote VTEP, indexed by [`VtepIdx`].
    pub fn vteps(&self) -> &[VtepInfo] {
        &self.vteps
    }

    /// The underlay, if configured.
    #[inline]
    pub fn underlay(&self) -> Option<&UnderlayInfo> {
        self.underlay.as_ref()
    }

    /// Number of networks.
    pub fn network_count(&self) -> usize {
        self.networks.len()
    }

    /// Number of (network, MAC) entries: local and remote endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.tables.iter().map(|t| t.l2.len()).sum()
    }

    /// Number of routes, connected subnets included.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }
}

impl Versioned for OverlaySnapshot {
    fn generation(&self) -> u64 {
        self.generation
    }
}
