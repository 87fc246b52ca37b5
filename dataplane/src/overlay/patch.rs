//! Changing a running snapshot's endpoints and routes without building it again.
//!
//! Pods come and go by the second on a Kubernetes node, against tens of
//! thousands of endpoints and routes that stay. A write that adds or removes
//! endpoints or static routes therefore starts from the running snapshot: every
//! network's tables ([`NetTables`]) and every VRF's routes
//! ([`LpmTable`](super::lpm::LpmTable)) are shared through [`Arc`]s, and only
//! the networks and VRFs the write touches get a copy of their tables, changed
//! in place. The checks are the builder's own ([`add_local`], [`add_remote`],
//! [`add_route`]), run against the snapshot being changed, so a patched
//! snapshot and one built from scratch from the same configuration answer every
//! lookup alike (a property test holds them to it).
//!
//! What stays when an endpoint goes: a remote VTEP it alone used stays interned
//! (unreferenced, harmless) until the next full build.

use std::net::IpAddr;
use std::sync::Arc;

use super::builder::{
    add_gateways, add_local, add_remote, add_route, network_info, remove_host, remove_route,
    VtepInterner,
};
use super::error::OverlayConfigError as E;
use super::snapshot::{L2Dest, OverlaySnapshot};
use super::spec::{LocalEndpointSpec, NetworkSpec, RemoteEndpointSpec, RouteSpec};
use crate::ethernet::MacAddr;
use crate::port::PortIdx;

/// One change of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverlayChange {
    /// A new endpoint behind a local port.
    AddLocal(LocalEndpointSpec),
    /// A new endpoint behind a remote VTEP.
    AddRemote(RemoteEndpointSpec),
    /// The endpoint `mac` of `network` goes, with its addresses `ips` (what the
    /// control plane holds for it; a mismatch is refused, not guessed at).
    Remove {
        /// The network's name.
        network: String,
        /// The endpoint's MAC.
        mac: MacAddr,
        /// Its addresses.
        ips: Vec<IpAddr>,
    },
    /// A new static route.
    AddRoute(RouteSpec),
    /// The static route goes: the route as it was added (its next hop's count
    /// of routes goes down with it).
    RemoveRoute(RouteSpec),
    /// A new network, numbered after every other (as a build from the same
    /// configuration, the network last, numbers it), in its tenant's VRF or a
    /// new one.
    AddNetwork(NetworkSpec),
}

impl OverlaySnapshot {
    /// This snapshot with `changes` applied in order, as generation
    /// `generation`. Costs what the changed networks' tables cost to copy, plus
    /// the changes; every other table is shared with `self`.
    ///
    /// # Errors
    /// The index of the first change the builder's checks refuse (a duplicate
    /// MAC or address, an address outside the network's subnets, a port in
    /// another network…), of an endpoint to remove that is not there, or of one
    /// that a route's next hop resolves through, with the reason. `self` is
    /// unchanged either way.
    pub fn patched(
        &self,
        generation: u64,
        changes: &[OverlayChange],
    ) -> Result<OverlaySnapshot, (usize, E)> {
        let mut snap = self.clone();
        snap.generation = generation;
        let mut vteps = VtepInterner {
            underlay: snap.underlay,
            vteps: std::mem::take(&mut snap.vteps),
            by_ip: std::mem::take(&mut snap.vtep_by_ip),
        };
        let mut ports_changed = false;
        for (i, c) in changes.iter().enumerate() {
            let at = |e| (i, e);
            match c {
                OverlayChange::AddLocal(ep) => {
                    let was = snap.port_network.get(ep.port.index()).copied().flatten();
                    add_local(&mut snap, ep).map_err(at)?;
                    ports_changed |= was.is_none();
                    mark_network(&mut snap, &ep.network, generation);
                }
                OverlayChange::AddRemote(ep) => {
                    add_remote(&mut snap, &mut vteps, ep).map_err(at)?;
                    mark_network(&mut snap, &ep.network, generation);
                }
                OverlayChange::AddRoute(r) => {
                    let vrf = snap.vrf_by_name(&r.tenant);
                    with_routes(&mut snap, |s, routes, hops| {
                        add_route(s, routes, hops, vrf, r)
                    })
                    .map_err(at)?;
                    mark_vrf(&mut snap, &r.tenant, generation);
                }
                OverlayChange::AddNetwork(n) => {
                    add_network(&mut snap, &mut vteps, n).map_err(at)?;
                    // Rare, and it may add connected routes and a VNI: every
                    // worker's flow entries revalidate.
                    snap.changed.global = generation;
                }
                OverlayChange::RemoveRoute(r) => {
                    with_routes(&mut snap, |s, routes, hops| {
                        remove_route(s, routes, hops, r)
                    })
                    .map_err(at)?;
                    mark_vrf(&mut snap, &r.tenant, generation);
                }
                OverlayChange::Remove { network, mac, ips } => {
                    ports_changed |= remove(&mut snap, network, *mac, ips).map_err(at)?;
                    mark_network(&mut snap, network, generation);
                }
            }
        }
        snap.vteps = vteps.vteps;
        snap.vtep_by_ip = vteps.by_ip;
        if ports_changed {
            let mut ports = vec![Vec::new(); snap.networks.len()];
            for (p, net) in snap.port_network.iter().enumerate() {
                if let Some(net) = net {
                    ports[net.index()].push(PortIdx(p as u16));
                }
            }
            for (info, ports) in snap.networks.iter_mut().zip(ports) {
                if *info.local_ports != *ports {
                    info.local_ports = ports.into();
                }
            }
        }
        snap.l2_large = snap.tables.iter().any(|t| t.l2.reader().is_large());
        Ok(snap)
    }

    /// Whether `self` and `other` share `net`'s tables (the same allocation):
    /// what a write that did not touch `net` leaves.
    pub fn shares_network_tables(&self, other: &OverlaySnapshot, net: super::NetworkId) -> bool {
        match (self.tables.get(net.index()), other.tables.get(net.index())) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether `self` and `other` share their route table.
    pub fn shares_routes(&self, other: &OverlaySnapshot) -> bool {
        Arc::ptr_eq(&self.routes, &other.routes)
    }

    /// Whether `self` and `other` share `vrf`'s routes: what a write that
    /// changed no route of `vrf` leaves.
    pub fn shares_vrf_routes(&self, other: &OverlaySnapshot, vrf: super::VrfId) -> bool {
        self.routes.shares_vrf(&other.routes, vrf.0)
    }
}

/// Marks the network named `name` changed at `generation` (its tables, and
/// with them its ports' network).
fn mark_network(snap: &mut OverlaySnapshot, name: &str, generation: u64) {
    if let Some(net) = snap.network_by_name(name) {
        snap.changed.net(net, generation);
    }
}

/// Marks the VRF of tenant `name` changed at `generation`.
fn mark_vrf(snap: &mut OverlaySnapshot, name: &str, generation: u64) {
    if let Some(vrf) = snap.vrf_by_name(name) {
        snap.changed.vrf(vrf, generation);
    }
}

type NextHops = hashbrown::HashMap<(super::NetworkId, IpAddr), super::snapshot::NextHopUse>;

/// Runs `f` on `snap` with its route table and next-hop counts taken out to be
/// changed (copied first if another snapshot shares them: the table's VRFs stay
/// shared until changed, see [`LpmTable`](super::lpm::LpmTable)).
fn with_routes<T>(
    snap: &mut OverlaySnapshot,
    f: impl FnOnce(&OverlaySnapshot, &mut super::lpm::LpmTable<super::RouteResult>, &mut NextHops) -> T,
) -> T {
    let mut routes = std::mem::take(&mut snap.routes);
    let mut hops = std::mem::take(&mut snap.next_hops);
    let out = f(snap, Arc::make_mut(&mut routes), Arc::make_mut(&mut hops));
    snap.routes = routes;
    snap.next_hops = hops;
    out
}

/// Adds network `n` after the others, with the checks the builder makes of a
/// network given last: name, VNI, gateway MAC and addresses, flood VTEPs, and
/// its subnets against every subnet and static route of its tenant.
fn add_network(
    snap: &mut OverlaySnapshot,
    vteps: &mut VtepInterner,
    n: &NetworkSpec,
) -> Result<(), E> {
    use super::snapshot::NetTables;
    use super::{NetworkId, RouteResult, VrfId, MAX_NETWORKS};
    if snap.networks.len() >= MAX_NETWORKS {
        return Err(E::TooManyNetworks {
            count: snap.networks.len() + 1,
            max: MAX_NETWORKS,
        });
    }
    if snap.by_name.contains_key(n.name.as_str()) {
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
    if let Some(first) = snap.network_by_vni(n.vni) {
        return Err(E::DuplicateVni {
            vni: n.vni,
            first: snap.networks[first.index()].name.to_string(),
            second: n.name.clone(),
        });
    }
    let mut tables = NetTables::default();
    add_gateways(n, &mut tables)?;
    let vrf = snap.vrf_by_name(&n.tenant);
    // Subnets nest or are disjoint: two overlap when one holds the other's
    // first address. Against every earlier subnet of the tenant, then each
    // other (the builder reports the earlier of the two first).
    let subnets: Vec<ipnet::IpNet> = n.subnets.iter().map(ipnet::IpNet::trunc).collect();
    let overlaps =
        |a: &ipnet::IpNet, b: &ipnet::IpNet| a.contains(&b.network()) || b.contains(&a.network());
    if let Some(v) = vrf {
        for (m, info) in snap.networks.iter().enumerate() {
            if info.vrf != v {
                continue;
            }
            for t in snap.subnets[m].iter() {
                if let Some(s) = subnets.iter().find(|s| overlaps(s, t)) {
                    return Err(E::OverlappingSubnets {
                        tenant: n.tenant.clone(),
                        first_network: info.name.to_string(),
                        first_subnet: *t,
                        second_network: n.name.clone(),
                        second_subnet: *s,
                    });
                }
            }
        }
    }
    for (i, s) in subnets.iter().enumerate() {
        if let Some(t) = subnets[..i].iter().find(|t| overlaps(s, t)) {
            return Err(E::OverlappingSubnets {
                tenant: n.tenant.clone(),
                first_network: n.name.clone(),
                first_subnet: *t,
                second_network: n.name.clone(),
                second_subnet: *s,
            });
        }
    }
    let mut flood = Vec::with_capacity(n.vteps.len());
    for &ip in &n.vteps {
        flood.push(vteps.intern(|| format!("network {:?} flood list", n.name), ip)?);
    }
    let mut sorted = flood.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(E::DuplicateFloodVtep {
            network: n.name.clone(),
            vtep: vteps.vteps[w[0].index()].ip,
        });
    }
    let id = NetworkId(snap.networks.len() as u16);
    let vrf = vrf.unwrap_or_else(|| {
        snap.vrf_names.push(n.tenant.clone().into());
        VrfId(snap.vrf_names.len() as u16 - 1)
    });
    with_routes(snap, |_, routes, _| {
        while routes.vrf_count() <= usize::from(vrf.0) {
            routes.push_vrf();
        }
        for s in &subnets {
            // A static route of that prefix was there first: a build, which
            // inserts subnets first, would find the route the duplicate.
            if routes.get_exact(vrf.0, *s).is_some() {
                return Err(E::DuplicateRoute {
                    tenant: n.tenant.clone(),
                    prefix: *s,
                });
            }
            routes
                .insert(vrf.0, *s, RouteResult::Connected(id))
                .map_err(|reason| E::RouteTableFull {
                    tenant: n.tenant.clone(),
                    prefix: *s,
                    reason,
                })?;
        }
        Ok(())
    })?;
    let underlay = snap.underlay;
    snap.networks.push(network_info(n, vrf, flood, underlay));
    snap.tables.push(Arc::new(tables));
    snap.subnets.push(subnets.into());
    snap.by_name.insert(n.name.clone().into(), id);
    snap.by_vni.insert(u64::from(n.vni), id);
    Ok(())
}

/// Removes endpoint `mac` of `network`; true when its port carried its last
/// endpoint (the network's local ports change).
fn remove(
    snap: &mut OverlaySnapshot,
    network: &str,
    mac: MacAddr,
    ips: &[IpAddr],
) -> Result<bool, E> {
    let missing = |ip| E::NoSuchEndpoint {
        network: network.to_owned(),
        mac,
        ip,
    };
    let id = snap.network_by_name(network).ok_or_else(|| missing(None))?;
    for ip in ips {
        if let Some(r) = snap.next_hops.get(&(id, *ip)) {
            return Err(E::EndpointIsNextHop {
                network: network.to_owned(),
                mac,
                ip: *ip,
                tenant: r.first.tenant.to_string(),
                prefix: r.first.prefix,
            });
        }
    }
    let t = Arc::make_mut(&mut snap.tables[id.index()]);
    let bits = t.l2.remove(mac.to_u64()).ok_or_else(|| missing(None))?;
    for ip in ips {
        match remove_host(t, *ip) {
            Some(h) if h.mac == mac && h.dest.is_some() => {}
            _ => return Err(missing(Some(*ip))),
        }
    }
    if let L2Dest::Local(port) = L2Dest::from_bits(bits) {
        let n = &mut snap.port_endpoints[port.index()];
        *n = n.saturating_sub(1);
        if *n == 0 {
            snap.port_network[port.index()] = None;
            return Ok(true);
        }
    }
    Ok(false)
}
