//! The virtual-network sections of the file: `[underlay]`, `[[network]]`,
//! `[[endpoint]]`, `[[remote_endpoint]]` and `[[route]]`.
//!
//! Each item is read as its proto message (the one schema, see
//! [`crate::model`]). Parsing turns every string into its typed value
//! (address, prefix, MAC, encapsulation) and refuses a bad one naming the item;
//! [`VswitchConfig::validate`](super::VswitchConfig::validate) then checks port
//! references by name and runs the dataplane's
//! [`OverlayBuilder`](dataplane::overlay::OverlayBuilder) once over the whole set,
//! so an inconsistent overlay fails at load.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use dataplane::overlay::{Encap, NetworkSpec, RemoteEndpointSpec, RouteSpec, RouteTarget, MAX_VNI};
use dataplane::MacAddr;

use super::{syntax, ConfigError, VswitchConfig};
use crate::api::{self, route::Target};
use crate::names::quote;

/// `[underlay]`, parsed: where tunnels leave this switch. The typed values of
/// [`api::Underlay`] (the schema, see [`crate::model`]) for
/// [`UnderlaySpec`](dataplane::overlay::UnderlaySpec), with the uplink by port name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayConfig {
    /// The `[[port]]` tunnelled packets leave and arrive on.
    pub uplink: String,
    /// This switch's VTEP address, IPv4 or IPv6: the outer source address.
    pub local_vtep_ip: IpAddr,
    /// The uplink's MAC: the outer source MAC.
    pub local_mac: MacAddr,
    /// The underlay IP MTU (default 1500).
    pub mtu: u16,
    /// The uplink's on-link prefix; contains `local_vtep_ip`.
    pub on_link: IpNet,
    /// The underlay gateway for VTEPs outside `on_link`.
    pub gateway: Option<IpAddr>,
    /// Static underlay neighbours (`neighbors = [{ ip = "…", mac = "…" }]`): next
    /// hops whose MAC is configured rather than resolved by ARP/ND, never aged.
    pub neighbors: Vec<(IpAddr, MacAddr)>,
}

/// `[[endpoint]]`, parsed: a workload behind a local port. The typed values of
/// [`api::Endpoint`] for
/// [`LocalEndpointSpec`](dataplane::overlay::LocalEndpointSpec), with the port by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The network's name.
    pub network: String,
    /// The workload's MAC.
    pub mac: MacAddr,
    /// Its addresses (may be empty).
    pub ips: Vec<IpAddr>,
    /// The `[[port]]` it sits behind.
    pub port: String,
}

impl EndpointConfig {
    /// How errors name endpoint `index` (from 0): `endpoint #2 (network "blue")`.
    pub fn label(&self, index: usize) -> String {
        format!("endpoint #{index} (network {:?})", self.network)
    }
}

/// The overlay sections, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct OverlaySections {
    pub underlay: Option<UnderlayConfig>,
    pub networks: Vec<NetworkSpec>,
    pub endpoints: Vec<EndpointConfig>,
    pub remote_endpoints: Vec<RemoteEndpointSpec>,
    pub routes: Vec<RouteSpec>,
}

/// What an empty `tenant` means (the proto3 default of the shared schema).
pub(crate) const DEFAULT_TENANT: &str = "default";

/// The underlay MTU when none is given (`mtu = 0` or left out).
const DEFAULT_MTU: u16 = 1500;

/// `value`, or `default` when it is the proto3 default (empty).
fn or_default(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_owned()
    } else {
        value
    }
}

/// The raw tables of the overlay sections, as `RawFile` holds them.
pub(super) struct RawSections {
    pub underlay: Option<toml::Table>,
    pub network: Vec<toml::Table>,
    pub endpoint: Vec<toml::Table>,
    pub remote_endpoint: Vec<toml::Table>,
    pub route: Vec<toml::Table>,
}

/// A string key of a raw table, for labelling the item before it is deserialized.
fn peek<'a>(t: &'a toml::Table, key: &str) -> Option<&'a str> {
    t.get(key).and_then(toml::Value::as_str)
}

pub(super) fn typed<T: for<'de> Deserialize<'de>>(
    item: &str,
    t: toml::Table,
) -> Result<T, ConfigError> {
    T::deserialize(toml::Value::Table(t))
        .map_err(|e| ConfigError::Syntax(format!("{item}: {}", syntax(e))))
}

pub(crate) fn ip(item: &str, key: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse().map_err(|_| ConfigError::BadAddress {
        field: format!("{item}: {key}"),
        kind: "IP address",
        value: s.to_owned(),
    })
}

/// The most addresses an endpoint or a network's gateway may have (a pod has one
/// or two): a bound on what one op can make the tables hold.
pub const MAX_ADDRESSES: usize = 16;

/// The most subnets one network may have.
pub const MAX_SUBNETS: usize = 64;

/// Refuses a list longer than `max`, naming the item and key.
pub(crate) fn at_most(item: &str, key: &str, len: usize, max: usize) -> Result<(), ConfigError> {
    if len > max {
        return Err(ConfigError::OutOfRange {
            field: format!("{item}: {key}"),
            reason: format!("{len} given, at most {max}"),
        });
    }
    Ok(())
}

/// [`ips`] of at most [`MAX_ADDRESSES`].
pub(crate) fn addresses(item: &str, key: &str, v: &[String]) -> Result<Vec<IpAddr>, ConfigError> {
    at_most(item, key, v.len(), MAX_ADDRESSES)?;
    ips(item, key, v)
}

pub(crate) fn ips(item: &str, key: &str, v: &[String]) -> Result<Vec<IpAddr>, ConfigError> {
    v.iter().map(|s| ip(item, key, s)).collect()
}

/// A prefix, refused when it has host bits set: `10.61.1.0/16` stored as given
/// could not be deleted as `10.61.0.0/16`, and normalising it silently would store
/// something other than what the caller wrote.
pub(crate) fn prefix(item: &str, key: &str, s: &str) -> Result<IpNet, ConfigError> {
    let p: IpNet = s.parse().map_err(|_| ConfigError::BadAddress {
        field: format!("{item}: {key}"),
        kind: "prefix (address/length)",
        value: s.to_owned(),
    })?;
    if p != p.trunc() {
        return Err(ConfigError::OutOfRange {
            field: format!("{item}: {key}"),
            reason: format!("{p} has host bits set (the prefix is {})", p.trunc()),
        });
    }
    Ok(p)
}

pub(crate) fn mac(item: &str, key: &str, s: &str) -> Result<MacAddr, ConfigError> {
    s.parse().map_err(|source| ConfigError::BadMac {
        field: format!("{item}: {key}"),
        source,
    })
}

impl RawSections {
    /// Types every value, refusing a bad one with the item's name.
    pub fn parse(self) -> Result<OverlaySections, ConfigError> {
        let underlay = self.underlay.map(parse_underlay).transpose()?;
        let mut networks = Vec::with_capacity(self.network.len());
        for (i, t) in self.network.into_iter().enumerate() {
            let item = match peek(&t, "name") {
                Some(n) => format!("network {}", quote(n)),
                None => format!("network #{i}"),
            };
            let r: api::Network = typed(&item, t)?;
            networks.push(network(&item, &r)?);
        }
        let mut endpoints = Vec::with_capacity(self.endpoint.len());
        for (i, t) in self.endpoint.into_iter().enumerate() {
            let item = endpoint_label("endpoint", i, &t);
            let r: api::Endpoint = typed(&item, t)?;
            endpoints.push(endpoint(&item, &r)?);
        }
        let mut remote_endpoints = Vec::with_capacity(self.remote_endpoint.len());
        for (i, t) in self.remote_endpoint.into_iter().enumerate() {
            let item = endpoint_label("remote_endpoint", i, &t);
            let r: api::RemoteEndpoint = typed(&item, t)?;
            remote_endpoints.push(remote_endpoint(&item, &r)?);
        }
        let mut routes = Vec::with_capacity(self.route.len());
        for (i, t) in self.route.into_iter().enumerate() {
            let item = match peek(&t, "prefix") {
                Some(p) => format!("route #{i} ({})", quote(p).trim_matches('"')),
                None => format!("route #{i}"),
            };
            let r: api::Route = typed(&item, t)?;
            routes.push(route(&item, &r)?);
        }
        Ok(OverlaySections {
            underlay,
            networks,
            endpoints,
            remote_endpoints,
            routes,
        })
    }
}

fn endpoint_label(section: &str, i: usize, t: &toml::Table) -> String {
    match peek(t, "network") {
        Some(n) => format!("{section} #{i} (network {})", quote(n)),
        None => format!("{section} #{i}"),
    }
}

fn parse_underlay(t: toml::Table) -> Result<UnderlayConfig, ConfigError> {
    let item = "underlay";
    let r: api::Underlay = typed(item, t)?;
    underlay(item, &r)
}

// ------------------------------------------------------------ one item, typed
//
// The checks of each resource's fields, written once: the file's items, the
// API's whole-state validation (through the file) and its per-op checks
// (`state::check_fields`) all call these. `item` labels the errors
// (`network "blue"`, `endpoint #2 (network "blue")`).

/// An `[underlay]`, typed.
pub(crate) fn underlay(item: &str, r: &api::Underlay) -> Result<UnderlayConfig, ConfigError> {
    let local_vtep_ip = ip(item, "local_vtep_ip", &r.local_vtep_ip)?;
    let local_mac = mac(item, "local_mac", &r.local_mac)?;
    let on_link = prefix(item, "on_link", &r.on_link)?;
    let gateway = Some(r.gateway.as_str())
        .filter(|g| !g.is_empty())
        .map(|g| ip(item, "gateway", g))
        .transpose()?;
    let mtu = match u16::try_from(r.mtu) {
        Ok(0) => DEFAULT_MTU,
        Ok(m) => m,
        Err(_) => {
            return Err(ConfigError::OutOfRange {
                field: format!("{item}: mtu"),
                reason: format!("{} is out of range (0-65535)", r.mtu),
            })
        }
    };
    let mut neighbors = Vec::with_capacity(r.neighbors.len());
    for (i, n) in r.neighbors.iter().enumerate() {
        let what = format!("neighbors[{i}]");
        let addr = ip(item, &format!("{what}.ip"), &n.ip)?;
        if !on_link.contains(&addr) {
            return Err(ConfigError::OutOfRange {
                field: format!("{item}: {what}.ip"),
                reason: format!("{addr} is not in on_link {on_link}: a neighbour is on the link"),
            });
        }
        neighbors.push((addr, mac(item, &format!("{what}.mac"), &n.mac)?));
    }
    Ok(UnderlayConfig {
        uplink: r.uplink.clone(),
        local_vtep_ip,
        local_mac,
        mtu,
        on_link,
        gateway,
        neighbors,
    })
}

/// A `[[network]]`, typed.
pub(crate) fn network(item: &str, r: &api::Network) -> Result<NetworkSpec, ConfigError> {
    let vni = Some(r.vni)
        .filter(|v| *v <= MAX_VNI)
        .ok_or_else(|| ConfigError::VniOutOfRange {
            network: r.name.clone(),
            vni: i64::from(r.vni),
        })?;
    let encap = match r.encap.as_str() {
        "vxlan" | "" => Encap::Vxlan,
        "geneve" => Encap::Geneve,
        _ => {
            return Err(ConfigError::UnknownEncap {
                network: r.name.clone(),
                encap: r.encap.clone(),
            })
        }
    };
    at_most(item, "subnets", r.subnets.len(), MAX_SUBNETS)?;
    let policy_on_change = match r.policy_on_change.as_str() {
        "" | "reevaluate" => dataplane::pipeline::policy::OnChange::Reevaluate,
        "keep" => dataplane::pipeline::policy::OnChange::Keep,
        other => {
            return Err(ConfigError::OutOfRange {
                field: format!("{item}: policy_on_change"),
                reason: format!(
                    "{} is not one of \"reevaluate\", \"keep\"",
                    crate::names::quote(other)
                ),
            })
        }
    };
    Ok(NetworkSpec {
        vni,
        encap,
        subnets: r
            .subnets
            .iter()
            .map(|s| prefix(item, "subnets", s))
            .collect::<Result<_, _>>()?,
        gateway_ips: addresses(item, "gateway_ips", &r.gateway_ips)?,
        gateway_mac: mac(item, "gateway_mac", &r.gateway_mac)?,
        flood_unknown: r.flood_unknown,
        conntrack: r.conntrack,
        conntrack_window_tracking: r.conntrack_window_tracking.unwrap_or(true),
        vteps: ips(item, "vteps", &r.vteps)?,
        tenant: or_default(r.tenant.clone(), DEFAULT_TENANT),
        name: r.name.clone(),
        policy_on_change,
    })
}

/// An `[[endpoint]]`, typed.
pub(crate) fn endpoint(item: &str, r: &api::Endpoint) -> Result<EndpointConfig, ConfigError> {
    Ok(EndpointConfig {
        mac: mac(item, "mac", &r.mac)?,
        ips: addresses(item, "ips", &r.ips)?,
        network: r.network.clone(),
        port: r.port.clone(),
    })
}

/// A `[[remote_endpoint]]`, typed.
pub(crate) fn remote_endpoint(
    item: &str,
    r: &api::RemoteEndpoint,
) -> Result<RemoteEndpointSpec, ConfigError> {
    Ok(RemoteEndpointSpec {
        mac: mac(item, "mac", &r.mac)?,
        ips: addresses(item, "ips", &r.ips)?,
        vtep: ip(item, "vtep", &r.vtep)?,
        network: r.network.clone(),
    })
}

/// A `[[route]]`, typed: exactly one target.
pub(crate) fn route(item: &str, r: &api::Route) -> Result<RouteSpec, ConfigError> {
    let prefix = prefix(item, "prefix", &r.prefix)?;
    let target = match &r.target {
        Some(Target::NextHop(nh)) => RouteTarget::NextHop {
            ip: ip(item, "next_hop.ip", &nh.ip)?,
            network: nh.network.clone(),
        },
        Some(Target::Blackhole(true)) => RouteTarget::Blackhole,
        _ => {
            return Err(ConfigError::RouteTarget {
                route: item.to_owned(),
            })
        }
    };
    Ok(RouteSpec {
        prefix,
        tenant: or_default(r.tenant.clone(), DEFAULT_TENANT),
        target,
    })
}

impl VswitchConfig {
    /// The ports that belong to the overlay: the underlay uplink and every port
    /// with an `[[endpoint]]` behind it. The L2 pipeline isolates them (each in a
    /// flooding group of its own) and `[[patch]]`/`[[l2]]` may not name them.
    pub fn overlay_ports(&self) -> BTreeSet<&str> {
        self.underlay
            .iter()
            .map(|u| u.uplink.as_str())
            .chain(self.endpoints.iter().map(|e| e.port.as_str()))
            .collect()
    }

    /// The overlay checks of [`validate`](Self::validate): port references by
    /// name, overlay ports kept out of patches and the MAC table, then the
    /// dataplane builder over the whole overlay.
    pub(super) fn validate_overlay(
        &self,
        names: &BTreeMap<&str, usize>,
    ) -> Result<(), ConfigError> {
        let uplink = self.underlay.as_ref().map(|u| u.uplink.as_str());
        if let Some(up) = uplink {
            if !names.contains_key(up) {
                return Err(ConfigError::NotAPort {
                    field: "underlay: uplink".into(),
                    name: up.to_owned(),
                });
            }
        }
        let mut port_network: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            if !names.contains_key(e.port.as_str()) {
                return Err(ConfigError::NotAPort {
                    field: format!("{}: port", e.label(i)),
                    name: e.port.clone(),
                });
            }
            if uplink == Some(e.port.as_str()) {
                return Err(ConfigError::EndpointOnUplink {
                    endpoint: e.label(i),
                    port: e.port.clone(),
                });
            }
            if let Some(first) = port_network.insert(&e.port, &e.network) {
                if first != e.network {
                    return Err(ConfigError::PortInTwoNetworks {
                        endpoint: e.label(i),
                        port: e.port.clone(),
                        first: first.to_owned(),
                    });
                }
            }
        }
        let overlay = self.overlay_ports();
        let uses = self
            .patches
            .iter()
            .flat_map(|p| {
                [
                    ("patch.from".to_owned(), &p.from),
                    ("patch.to".to_owned(), &p.to),
                ]
            })
            .chain(
                self.l2
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (format!("l2[{i}].port"), &e.port)),
            );
        for (field, port) in uses {
            if overlay.contains(port.as_str()) {
                return Err(ConfigError::OverlayPort {
                    field,
                    port: port.clone(),
                });
            }
        }
        crate::compile::overlay(self, 0).map_err(ConfigError::Overlay)?;
        Ok(())
    }
}
