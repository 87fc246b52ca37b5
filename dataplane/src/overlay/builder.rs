//! Validation and compilation of an overlay configuration into a snapshot.

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use ipnet::IpNet;

use super::error::OverlayConfigError as E;
use super::lpm::LpmTable;
use super::snapshot::{
    HostEntry, L2Dest, NetTables, NetworkId, NetworkInfo, NextHopUse, OverlaySnapshot, RouteRef,
    RouteResult, UnderlayInfo, VrfId, VtepIdx, VtepInfo, MAX_NETWORKS, MAX_VTEPS,
};
use super::spec::{
    LocalEndpointSpec, NetworkSpec, RemoteEndpointSpec, RouteSpec, RouteTarget, UnderlaySpec,
};
use crate::ethernet::MacAddr;
use crate::port::{PortIdx, MAX_PORTS};

/// The smallest inner MTU accepted: the IPv6 minimum link MTU.
const MIN_INNER_MTU: u16 = 1280;

/// Collects the overlay configuration, then validates and compiles it.
#[derive(Debug, Clone, Default)]
pub struct OverlayBuilder {
    generation: u64,
    underlay: Option<UnderlaySpec>,
    networks: Vec<NetworkSpec>,
    locals: Vec<LocalEndpointSpec>,
    remotes: Vec<RemoteEndpointSpec>,
    routes: Vec<RouteSpec>,
}

impl OverlayBuilder {
    /// An empty configuration that will compile to snapshot `generation`.
    pub fn new(generation: u64) -> Self {
        OverlayBuilder {
            generation,
            ..Default::default()
        }
    }

    /// Sets the underlay (replacing any set before). Needed as soon as any remote
    /// VTEP is referenced.
    pub fn underlay(&mut self, spec: UnderlaySpec) -> &mut Self {
        self.underlay = Some(spec);
        self
    }

    /// Adds a network.
    pub fn network(&mut self, spec: NetworkSpec) -> &mut Self {
        self.networks.push(spec);
        self
    }

    /// Adds an endpoint behind a local port.
    pub fn local_endpoint(&mut self, spec: LocalEndpointSpec) -> &mut Self {
        self.locals.push(spec);
        self
    }

    /// Adds an endpoint behind a remote VTEP.
    pub fn remote_endpoint(&mut self, spec: RemoteEndpointSpec) -> &mut Self {
        self.remotes.push(spec);
        self
    }

    /// Adds a static route.
    pub fn route(&mut self, spec: RouteSpec) -> &mut Self {
        self.routes.push(spec);
        self
    }

    /// Validates the configuration and compiles the snapshot.
    ///
    /// # Errors
    /// The first [`OverlayConfigError`](E) found: the underlay is checked first,
    /// then networks, local endpoints, remote endpoints and routes, each in the
    /// order given.
    pub fn build(&self) -> Result<OverlaySnapshot, E> {
        let underlay = self.underlay.as_ref().map(check_underlay).transpose()?;
        let mut snap = OverlaySnapshot::empty(self.generation);
        snap.underlay = underlay;
        let mut vteps = VtepInterner {
            underlay,
            vteps: Vec::new(),
            by_ip: HashMap::new(),
        };

        // Networks.
        if self.networks.len() > MAX_NETWORKS {
            return Err(E::TooManyNetworks {
                count: self.networks.len(),
                max: MAX_NETWORKS,
            });
        }
        let mut tables: Vec<NetTables> = vec![NetTables::default(); self.networks.len()];
        snap.by_vni.reserve(self.networks.len());
        snap.by_name.reserve(self.networks.len());
        let mut vrf_of: HashMap<&str, VrfId> = HashMap::new();
        let mut vni_owner: HashMap<u32, &str> = HashMap::with_capacity(self.networks.len());
        let mut ranges: Vec<SubnetRange> = Vec::new();
        for (i, n) in self.networks.iter().enumerate() {
            let id = NetworkId(i as u16);
            if snap.by_name.insert(n.name.clone().into(), id).is_some() {
                return Err(E::DuplicateNetworkName {
                    name: n.name.clone(),
                });
            }
            if n.vni > super::spec::MAX_VNI {
                return Err(E::VniOutOfRange {
                    network: n.name.clone(),
                    vni: n.vni,
                });
            }
            if let Some(first) = vni_owner.insert(n.vni, &n.name) {
                return Err(E::DuplicateVni {
                    vni: n.vni,
                    first: first.to_owned(),
                    second: n.name.clone(),
                });
            }
            snap.by_vni.insert(u64::from(n.vni), id);
            add_gateways(n, &mut tables[i])?;
            let next_vrf = VrfId(vrf_of.len() as u16);
            let vrf = *vrf_of.entry(&n.tenant).or_insert_with(|| {
                snap.vrf_names.push(n.tenant.clone().into());
                next_vrf
            });
            snap.subnets
                .push(n.subnets.iter().map(IpNet::trunc).collect());
            for s in &n.subnets {
                let (v6, first, last) = range(s);
                ranges.push(SubnetRange {
                    vrf: vrf.0,
                    v6,
                    first,
                    last,
                    order: ranges.len(),
                    network: i,
                    subnet: s.trunc(),
                });
            }
            let mut flood = Vec::with_capacity(n.vteps.len());
            for &ip in &n.vteps {
                flood.push(vteps.intern(|| format!("network {:?} flood list", n.name), ip)?);
            }
            // Sorted copy rather than `contains` per VTEP: flood lists can be long.
            let mut sorted = flood.clone();
            sorted.sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(E::DuplicateFloodVtep {
                    network: n.name.clone(),
                    vtep: vteps.vteps[w[0].index()].ip,
                });
            }
            snap.networks.push(network_info(n, vrf, flood, underlay));
        }
        self.check_overlaps(&mut ranges, &snap)?;
        // Each network's tables, grown as its endpoints are added below.
        snap.tables = tables.into_iter().map(Arc::new).collect();
        let mut routes = LpmTable::new(snap.vrf_names.len() as u16);
        // Room per VRF for its routes and subnets, so that no table grows twice.
        let mut room = vec![(0, 0); snap.vrf_names.len()];
        for r in &self.routes {
            if let Some(v) = vrf_of.get(r.tenant.as_str()) {
                let n = &mut room[usize::from(v.0)];
                match r.prefix {
                    IpNet::V4(_) => n.0 += 1,
                    IpNet::V6(_) => n.1 += 1,
                }
            }
        }
        for r in &ranges {
            let n = &mut room[usize::from(r.vrf)];
            if r.v6 {
                n.1 += 1;
            } else {
                n.0 += 1;
            }
        }
        for (v, (v4, v6)) in room.into_iter().enumerate() {
            routes.reserve(v as u16, v4, v6);
        }
        for r in &ranges {
            let net = NetworkId(r.network as u16);
            routes
                .insert(r.vrf, r.subnet, RouteResult::Connected(net))
                .map_err(|reason| E::RouteTableFull {
                    tenant: snap.vrf_names[usize::from(r.vrf)].to_string(),
                    prefix: r.subnet,
                    reason,
                })?;
        }

        // Local endpoints, then remote ones.
        for ep in &self.locals {
            add_local(&mut snap, ep)?;
        }
        for ep in &self.remotes {
            add_remote(&mut snap, &mut vteps, ep)?;
        }

        // Static routes, shortest prefixes first: the IPv4 trie then writes each
        // route's entries once, where a short prefix inserted after longer ones
        // would walk every ply below it (the order changes no answer; a stable
        // sort keeps a duplicate after the route it repeats).
        let mut next_hops = HashMap::new();
        let mut by_len: Vec<&RouteSpec> = self.routes.iter().collect();
        by_len.sort_by_key(|r| r.prefix.prefix_len());
        for r in by_len {
            let vrf = vrf_of.get(r.tenant.as_str()).copied();
            add_route(&snap, &mut routes, &mut next_hops, vrf, r)?;
        }

        snap.routes = Arc::new(routes);
        snap.next_hops = Arc::new(next_hops);
        // Per-network local ports, ascending because the port array is.
        let mut ports: Vec<Vec<PortIdx>> = vec![Vec::new(); snap.networks.len()];
        for (p, net) in snap.port_network.iter().enumerate() {
            if let Some(net) = net {
                ports[net.index()].push(PortIdx(p as u16));
            }
        }
        for (info, ports) in snap.networks.iter_mut().zip(ports) {
            info.local_ports = ports.into();
        }
        snap.vteps = vteps.vteps;
        snap.vtep_by_ip = vteps.by_ip;
        snap.l2_large = snap.tables.iter().any(|t| t.l2.reader().is_large());
        Ok(snap)
    }

    /// Rejects overlapping subnets within one VRF. Prefixes are either nested or
    /// disjoint, so after sorting by (VRF, family, first address, widest first) a
    /// subnet overlaps an earlier one exactly when it starts at or before the end
    /// of the widest-reaching earlier subnet of its group: O(n log n), not
    /// pairwise. The first overlap in that order is reported, its two subnets in
    /// input order.
    fn check_overlaps(&self, ranges: &mut [SubnetRange], snap: &OverlaySnapshot) -> Result<(), E> {
        ranges.sort_unstable_by_key(|r| (r.vrf, r.v6, r.first, std::cmp::Reverse(r.last), r.order));
        let mut reach: Option<&SubnetRange> = None;
        for r in ranges.iter() {
            if let Some(c) = reach {
                if (c.vrf, c.v6) == (r.vrf, r.v6) && r.first <= c.last {
                    let (a, b) = if c.order < r.order { (c, r) } else { (r, c) };
                    return Err(E::OverlappingSubnets {
                        tenant: snap.vrf_names[usize::from(a.vrf)].to_string(),
                        first_network: self.networks[a.network].name.clone(),
                        first_subnet: a.subnet,
                        second_network: self.networks[b.network].name.clone(),
                        second_subnet: b.subnet,
                    });
                }
            }
            reach = Some(r);
        }
        Ok(())
    }
}

/// One subnet of one network, as an inclusive range of addresses.
#[derive(Clone, Copy)]
struct SubnetRange {
    vrf: u16,
    v6: bool,
    first: u128,
    last: u128,
    /// Position among all subnets in input order.
    order: usize,
    network: usize,
    subnet: IpNet,
}

/// A subnet as an inclusive range of `u128`, with its family.
fn range(s: &IpNet) -> (bool, u128, u128) {
    match s {
        IpNet::V4(n) => (
            false,
            u128::from(n.network().to_bits()),
            u128::from(n.broadcast().to_bits()),
        ),
        IpNet::V6(n) => (true, n.network().to_bits(), n.broadcast().to_bits()),
    }
}

/// The network of an endpoint about to be added, checking its MAC: a station
/// address, not the network's gateway MAC.
fn endpoint_network(snap: &OverlaySnapshot, network: &str, mac: MacAddr) -> Result<NetworkId, E> {
    let id = snap
        .network_by_name(network)
        .ok_or_else(|| E::EndpointUnknownNetwork {
            mac,
            network: network.to_owned(),
        })?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(E::EndpointMulticastMac {
            network: network.to_owned(),
            mac,
        });
    }
    if mac == snap.networks[id.index()].gateway_mac {
        return Err(E::EndpointMacIsGateway {
            network: network.to_owned(),
            mac,
        });
    }
    Ok(id)
}

/// Checks a network's gateway MAC and addresses and puts the gateway's host
/// entries into its tables `t`: one place for the full build and a patch.
pub(super) fn add_gateways(n: &NetworkSpec, t: &mut NetTables) -> Result<(), E> {
    if n.gateway_mac.is_multicast() || n.gateway_mac.is_zero() {
        return Err(E::GatewayMulticastMac {
            network: n.name.clone(),
            mac: n.gateway_mac,
        });
    }
    for gw in &n.gateway_ips {
        if !n.subnets.iter().any(|s| s.contains(gw)) {
            return Err(E::GatewayNotInSubnet {
                network: n.name.clone(),
                ip: *gw,
            });
        }
        let h = HostEntry {
            mac: n.gateway_mac,
            dest: None,
        };
        // A gateway listed twice is harmless: same entry.
        match *gw {
            IpAddr::V4(a) => t.hosts4.insert(a.to_bits(), h),
            IpAddr::V6(a) => t.hosts6.insert(a.to_bits(), h),
        };
    }
    Ok(())
}

/// A network's entry in the snapshot, from its spec, its VRF and flood list, and
/// the underlay (which sets its MTU): one place for the full build and a patch.
pub(super) fn network_info(
    n: &NetworkSpec,
    vrf: VrfId,
    flood: Vec<VtepIdx>,
    underlay: Option<UnderlayInfo>,
) -> NetworkInfo {
    NetworkInfo {
        name: n.name.clone().into(),
        vni: n.vni,
        encap: n.encap,
        vrf,
        gateway_mac: n.gateway_mac,
        flood_unknown: n.flood_unknown,
        conntrack: n.conntrack,
        ct_window: n.conntrack_window_tracking,
        policy_on_change: n.policy_on_change,
        flood_vteps: flood.into(),
        local_ports: Box::default(),
        mtu: underlay.map(|u| u.mtu - u.overhead(n.encap)),
        gateway_v4: n.gateway_ips.iter().find_map(|ip| match ip {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        }),
        gateway_v6: n.gateway_ips.iter().find_map(|ip| match ip {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        }),
    }
}

/// Adds a local endpoint to `snap` (its network's tables and its port's
/// network), checking it against what is there: the same checks whether the
/// whole overlay is being built or one write patches a running snapshot.
pub(super) fn add_local(snap: &mut OverlaySnapshot, ep: &LocalEndpointSpec) -> Result<(), E> {
    let id = endpoint_network(snap, &ep.network, ep.mac)?;
    let name = || ep.network.clone();
    if ep.port.index() >= MAX_PORTS {
        return Err(E::PortOutOfRange {
            network: name(),
            mac: ep.mac,
            port: ep.port,
            max: MAX_PORTS,
        });
    }
    if snap.underlay.is_some_and(|u| u.uplink == ep.port) {
        return Err(E::EndpointOnUplink {
            network: name(),
            mac: ep.mac,
            port: ep.port,
        });
    }
    if let Some(other) = snap.port_network[ep.port.index()] {
        if other != id {
            return Err(E::PortInTwoNetworks {
                port: ep.port,
                first: snap.networks[other.index()].name.to_string(),
                second: name(),
            });
        }
    }
    add_endpoint(
        snap,
        id,
        &ep.network,
        ep.mac,
        &ep.ips,
        L2Dest::Local(ep.port),
    )?;
    snap.port_network[ep.port.index()] = Some(id);
    snap.port_endpoints[ep.port.index()] += 1;
    Ok(())
}

/// Adds a remote endpoint to `snap`, interning its VTEP (see [`add_local`]).
pub(super) fn add_remote(
    snap: &mut OverlaySnapshot,
    vteps: &mut VtepInterner,
    ep: &RemoteEndpointSpec,
) -> Result<(), E> {
    let id = endpoint_network(snap, &ep.network, ep.mac)?;
    let idx = vteps.intern(
        || format!("remote endpoint {} in network {:?}", ep.mac, ep.network),
        ep.vtep,
    )?;
    add_endpoint(snap, id, &ep.network, ep.mac, &ep.ips, L2Dest::Remote(idx))
}

fn add_endpoint(
    snap: &mut OverlaySnapshot,
    id: NetworkId,
    network: &str,
    mac: MacAddr,
    ips: &[IpAddr],
    dest: L2Dest,
) -> Result<(), E> {
    // Copied only if another snapshot shares it: once per network a write touches.
    let t = Arc::make_mut(&mut snap.tables[id.index()]);
    if t.l2.get(mac.to_u64()).is_some() {
        return Err(E::DuplicateMac {
            network: network.to_owned(),
            mac,
        });
    }
    // The network's own subnets, not a route lookup: a static route more
    // specific than the subnet must not hide it (subnets of a VRF never
    // overlap, so this is the connected route's answer).
    let subnets = &snap.subnets[id.index()];
    let in_subnets = |ip: &IpAddr| subnets.iter().any(|s| s.contains(ip));
    // A refusal may leave the tables half-changed: the snapshot being built or
    // patched is then thrown away whole.
    for ip in ips {
        if !in_subnets(ip) {
            return Err(E::EndpointIpOutsideSubnets {
                network: network.to_owned(),
                mac,
                ip: *ip,
            });
        }
        let h = HostEntry {
            mac,
            dest: Some(dest),
        };
        let prev = match *ip {
            IpAddr::V4(a) => host_insert(&mut t.hosts4, a.to_bits(), h),
            IpAddr::V6(a) => host_insert(&mut t.hosts6, a.to_bits(), h),
        };
        match prev {
            None => {}
            Some(HostEntry { dest: None, .. }) => {
                return Err(E::EndpointIpIsGateway {
                    network: network.to_owned(),
                    mac,
                    ip: *ip,
                })
            }
            Some(first) => {
                return Err(E::DuplicateIp {
                    network: network.to_owned(),
                    ip: *ip,
                    first: first.mac,
                    second: mac,
                })
            }
        }
    }
    // The MAC is a station address (checked by `endpoint_network`), so never the
    // all-ones key a `DenseMap` refuses; the refusal is mapped all the same.
    t.l2.insert(mac.to_u64(), dest.to_bits())
        .map_err(|_| E::EndpointMulticastMac {
            network: network.to_owned(),
            mac,
        })?;
    Ok(())
}

/// Adds static route `r` to `routes` (of `snap`'s VRFs; `vrf` is its tenant's,
/// `None` if the tenant has no network), resolving its next hop in `snap` and
/// counting it in `next_hops`: the same checks whether the whole overlay is
/// being built or one write patches a running snapshot.
pub(super) fn add_route(
    snap: &OverlaySnapshot,
    routes: &mut LpmTable<RouteResult>,
    next_hops: &mut HashMap<(NetworkId, IpAddr), NextHopUse>,
    vrf: Option<VrfId>,
    r: &RouteSpec,
) -> Result<(), E> {
    let Some(vrf) = vrf else {
        return Err(E::RouteUnknownTenant {
            tenant: r.tenant.clone(),
            prefix: r.prefix,
        });
    };
    let result = match &r.target {
        RouteTarget::Blackhole => RouteResult::Blackhole,
        RouteTarget::NextHop { network, ip } => {
            let Some(id) = snap.network_by_name(network) else {
                return Err(E::RouteUnknownNetwork {
                    tenant: r.tenant.clone(),
                    prefix: r.prefix,
                    network: network.clone(),
                });
            };
            let vrf_of_net = snap.networks[id.index()].vrf;
            let network_tenant = &snap.vrf_names[usize::from(vrf_of_net.0)];
            if **network_tenant != *r.tenant {
                return Err(E::RouteOtherTenant {
                    tenant: r.tenant.clone(),
                    prefix: r.prefix,
                    network: network.clone(),
                    network_tenant: network_tenant.to_string(),
                });
            }
            let Some((mac, dest)) = snap.host_lookup(id, *ip) else {
                return Err(E::UnknownNextHop {
                    tenant: r.tenant.clone(),
                    prefix: r.prefix,
                    network: network.clone(),
                    ip: *ip,
                });
            };
            RouteResult::NextHop {
                network: id,
                mac,
                dest,
            }
        }
    };
    let prefix = r.prefix.trunc();
    if routes.get_exact(vrf.0, prefix).is_some() {
        return Err(E::DuplicateRoute {
            tenant: r.tenant.clone(),
            prefix,
        });
    }
    routes
        .insert(vrf.0, prefix, result)
        .map_err(|reason| E::RouteTableFull {
            tenant: r.tenant.clone(),
            prefix,
            reason,
        })?;
    if let (RouteTarget::NextHop { ip, .. }, RouteResult::NextHop { network, .. }) =
        (&r.target, result)
    {
        next_hops
            .entry((network, *ip))
            .or_insert_with(|| NextHopUse {
                first: RouteRef {
                    tenant: r.tenant.clone().into(),
                    prefix,
                },
                routes: 0,
            })
            .routes += 1;
    }
    Ok(())
}

/// Removes static route `r` from `routes` and from the count of its next
/// hop's routes: a connected subnet is not a static route and stays.
pub(super) fn remove_route(
    snap: &OverlaySnapshot,
    routes: &mut LpmTable<RouteResult>,
    next_hops: &mut HashMap<(NetworkId, IpAddr), NextHopUse>,
    r: &RouteSpec,
) -> Result<(), E> {
    let prefix = r.prefix.trunc();
    let missing = || E::NoSuchRoute {
        tenant: r.tenant.clone(),
        prefix,
    };
    let vrf = snap.vrf_by_name(&r.tenant).ok_or_else(missing)?;
    // The route there must be `r` (its target too), not a connected subnet or
    // another route of that prefix.
    let via = match &r.target {
        RouteTarget::Blackhole => None,
        RouteTarget::NextHop { network, ip } => {
            let id = snap.network_by_name(network).ok_or_else(missing)?;
            let mac = snap.host_lookup(id, *ip).ok_or_else(missing)?.0;
            Some((id, *ip, mac))
        }
    };
    match (routes.get_exact(vrf.0, prefix), via) {
        (Some(RouteResult::Blackhole), None) => {}
        (Some(RouteResult::NextHop { network, mac, .. }), Some((id, _, m)))
            if *network == id && *mac == m => {}
        _ => return Err(missing()),
    }
    routes.remove(vrf.0, prefix);
    let Some((id, ip, _)) = via else {
        return Ok(());
    };
    let ip = &ip;
    let Entry::Occupied(mut o) = next_hops.entry((id, *ip)) else {
        return Ok(());
    };
    let used = o.get_mut();
    used.routes = used.routes.saturating_sub(1);
    if used.routes == 0 {
        o.remove();
    } else if *used.first.tenant == *r.tenant && used.first.prefix == prefix {
        // Errors name a route still there: one through the same endpoint.
        let mac = snap.host_lookup(id, *ip).map(|h| h.0);
        let other = routes.find_in(vrf.0, |v| {
            matches!(v, RouteResult::NextHop { network: n, mac: m, .. } if *n == id && Some(*m) == mac)
        });
        if let Some((p, _)) = other {
            used.first.prefix = p;
        }
    }
    Ok(())
}

/// Removes an address's host entry.
pub(super) fn remove_host(t: &mut NetTables, ip: IpAddr) -> Option<HostEntry> {
    match ip {
        IpAddr::V4(a) => t.hosts4.remove(&a.to_bits()),
        IpAddr::V6(a) => t.hosts6.remove(&a.to_bits()),
    }
}

/// Inserts unless present; returns what was there.
fn host_insert<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HostEntry>,
    key: K,
    h: HostEntry,
) -> Option<HostEntry> {
    match map.entry(key) {
        Entry::Occupied(o) => Some(*o.get()),
        Entry::Vacant(v) => {
            v.insert(h);
            None
        }
    }
}

fn check_underlay(u: &UnderlaySpec) -> Result<UnderlayInfo, E> {
    if u.uplink.index() >= MAX_PORTS {
        return Err(E::UplinkOutOfRange {
            port: u.uplink,
            max: MAX_PORTS,
        });
    }
    if u.local_mac.is_multicast() || u.local_mac.is_zero() {
        return Err(E::UnderlayMulticastMac { mac: u.local_mac });
    }
    let v4 = u.local_vtep_ip.is_ipv4();
    if matches!(u.on_link, IpNet::V4(_)) != v4 {
        return Err(E::UnderlayFamilyMismatch {
            what: "on-link prefix",
            addr: u.on_link.to_string(),
            local_vtep: u.local_vtep_ip,
        });
    }
    if let Some(gw) = u.gateway {
        if gw.is_ipv4() != v4 {
            return Err(E::UnderlayFamilyMismatch {
                what: "gateway",
                addr: gw.to_string(),
                local_vtep: u.local_vtep_ip,
            });
        }
    }
    let on_link = u.on_link.trunc();
    if !on_link.contains(&u.local_vtep_ip) {
        return Err(E::LocalVtepNotOnLink {
            local_vtep: u.local_vtep_ip,
            on_link,
        });
    }
    if let Some(gw) = u.gateway {
        if !on_link.contains(&gw) {
            return Err(E::UnderlayGatewayNotOnLink {
                gateway: gw,
                on_link,
            });
        }
    }
    let info = UnderlayInfo {
        uplink: u.uplink,
        local_vtep_ip: u.local_vtep_ip,
        local_mac: u.local_mac,
        mtu: u.mtu,
        on_link,
        gateway: u.gateway,
    };
    // Both encapsulations add the same today; take the larger to stay safe.
    let overhead = info
        .overhead(super::spec::Encap::Vxlan)
        .max(info.overhead(super::spec::Encap::Geneve));
    let min = MIN_INNER_MTU + overhead;
    if u.mtu < min {
        return Err(E::UnderlayMtuTooSmall { mtu: u.mtu, min });
    }
    Ok(info)
}

/// Interns remote VTEP addresses into dense indices, validating each once.
pub(super) struct VtepInterner {
    pub(super) underlay: Option<UnderlayInfo>,
    pub(super) vteps: Vec<VtepInfo>,
    pub(super) by_ip: HashMap<IpAddr, VtepIdx>,
}

impl VtepInterner {
    pub(super) fn intern(
        &mut self,
        item: impl FnOnce() -> String,
        ip: IpAddr,
    ) -> Result<VtepIdx, E> {
        if let Some(&idx) = self.by_ip.get(&ip) {
            return Ok(idx);
        }
        let Some(u) = self.underlay else {
            return Err(E::NoUnderlay {
                item: item(),
                vtep: ip,
            });
        };
        if ip.is_ipv4() != u.local_vtep_ip.is_ipv4() {
            return Err(E::VtepFamilyMismatch {
                item: item(),
                vtep: ip,
                local_vtep: u.local_vtep_ip,
            });
        }
        if ip == u.local_vtep_ip {
            return Err(E::VtepIsLocal {
                item: item(),
                vtep: ip,
            });
        }
        if self.vteps.len() >= MAX_VTEPS {
            return Err(E::TooManyVteps { max: MAX_VTEPS });
        }
        let idx = VtepIdx(self.vteps.len() as u16);
        self.vteps.push(VtepInfo {
            ip,
            next_hop: u.next_hop(ip),
        });
        self.by_ip.insert(ip, idx);
        Ok(idx)
    }
}
