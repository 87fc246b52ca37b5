//! One schema per resource: the proto messages of `vswitch.v1`.
//!
//! A port, patch, L2 entry, underlay, network, endpoint, remote endpoint, route
//! or service (with its ports and backends) is described once, in `proto/vswitch/v1/vswitch.proto`. `build.rs` gives the
//! generated types serde derives with the keys the configuration file has always
//! used, so the same type is:
//!
//! - the API's message (prost, wire-compatible: field numbers are the proto's);
//! - an item of the configuration file's sections (`[[network]]`, `[[endpoint]]`,
//!   `[[remote_endpoint]]`, `[[route]]`, `[[service]]`, `[underlay]`, `[[patch]]`, `[[l2]]`:
//!   deserialized from TOML by [`crate::config`], serialized to TOML for the
//!   state file by [`crate::state::to_sections`]);
//! - an item of `vswitchctl`'s YAML/JSON documents (`apply`, `get`, `--json`);
//! - a line of the state file's journal ([`crate::persist::JournalOp`]).
//!
//! Why the prost types and not a model type of our own with conversions: the
//! proto is the contract that must stay stable (wire compatibility), so a second
//! type would have to follow it field by field anyway, and every field added
//! would be added in two places plus a `From` each way. Deriving serde on the
//! proto types makes adding a field one edit (the proto, and the file key exists;
//! a key that may be left out gets one line in `build.rs`'s `OPTIONAL`).
//!
//! Two shapes differ between the wire and the text forms, and each is written
//! once, here: a route's `oneof target` is `next_hop = { network, ip }` or
//! `blackhole = true` in text ([`RouteForm`]), and a port's profile keys sit
//! beside `name` in the file (`[[port]] name = "a" profile = "tap" iface = "t"`)
//! while the proto carries them in `params` (the file's flat form is read by
//! [`crate::config`], which takes `name`, `profile`, `group`, `mtu` and `worker`
//! and leaves the rest as the profile's parameters).
//!
//! Validation is once per resource too: every text field (names, addresses,
//! prefixes, MACs, sizes) is typed and checked by the configuration file's
//! parser, which the API and the CLI's documents go through (the API by its
//! server, the CLI by the server it writes to); errors name the item and the
//! field and quote a short prefix of bad input ([`crate::names::quote`]).
//!
//! The typed forms that remain ([`crate::config::VswitchConfig`]'s
//! `NetworkSpec`, `EndpointConfig`, …) are not descriptions of the resource but
//! its parsed values (addresses as `IpAddr`, MACs as `MacAddr`) that the compiler
//! ([`crate::compile`]) turns into the dataplane's tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use dataplane::overlay::{Encap, NetworkSpec, RemoteEndpointSpec, RouteSpec, RouteTarget};

use crate::api;
use crate::config::{EndpointConfig, L2Entry, PortConfig, UnderlayConfig};

/// `skip_serializing_if` for a zero that means "the default".
pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `skip_serializing_if` for `false`.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// `Port.params` from a map whose values may be YAML/JSON/TOML scalars: booleans
/// and numbers are kept in their text form (`true`, `2`), as the API carries them.
pub(crate) fn params_from_scalars<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Bool(bool),
        Int(i64),
        Float(f64),
        Other(serde::de::IgnoredAny),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(s) => s,
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(n) => n.to_string(),
                Scalar::Float(n) => n.to_string(),
                Scalar::Other(_) => {
                    return Err(serde::de::Error::custom(format!(
                        "param `{}`: expected a string, number or boolean",
                        crate::names::quote(&k).trim_matches('"')
                    )))
                }
            };
            Ok((k, text))
        })
        .collect()
}

/// An integer key read wide: a value the field cannot hold is refused naming the
/// key, the value and the range. One it can hold is checked against `max` by
/// validation, which the API's messages go through as well.
fn ranged<'de, D: Deserializer<'de>>(d: D, key: &str, max: u32) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .map_err(|_| serde::de::Error::custom(format!("{key} {v} is out of range (0-{max})")))
}

/// `Network.vni`: 24 bits.
pub(crate) fn vni<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "vni", dataplane::overlay::MAX_VNI)
}

/// A service's `port`, `target_port` and `node_port`: 16 bits.
pub(crate) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "port", u32::from(u16::MAX))
}

pub(crate) fn target_port<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "target_port", u32::from(u16::MAX))
}

pub(crate) fn node_port<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "node_port", u32::from(u16::MAX))
}

/// `Service.table_size`: a prime up to the Maglev bound.
pub(crate) fn table_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "table_size", dataplane::pipeline::lb::maglev::MAX_SIZE)
}

/// `Service.affinity_timeout_s`: up to a day.
pub(crate) fn affinity_timeout_s<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "affinity_timeout_s", 86_400)
}

/// A backend's `weight` (optional: unset is 1): 16 bits.
pub(crate) fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(None),
        Some(v) => u32::try_from(v).map(Some).map_err(|_| {
            serde::de::Error::custom(format!("weight {v} is out of range (0-{})", u16::MAX))
        }),
    }
}

/// A policy's `port` (and a named port's): 16 bits. A name in its place is
/// refused pointing at `port_name`, where names go.
pub(crate) fn policy_port<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrName {
        Number(i64),
        Name(String),
    }
    match NumberOrName::deserialize(d)? {
        NumberOrName::Number(v) => u32::try_from(v)
            .ok()
            .filter(|&p| p <= u32::from(u16::MAX))
            .ok_or_else(|| serde::de::Error::custom(format!("port {v} is out of range (1-65535)"))),
        NumberOrName::Name(n) => Err(serde::de::Error::custom(format!(
            "port {} is not a number: a named port goes in `port_name`",
            crate::names::quote(&n)
        ))),
    }
}

/// A policy port's `end_port`: 16 bits.
pub(crate) fn end_port<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "end_port", u32::from(u16::MAX))
}

/// A cluster policy's `priority`: 32 bits, read wide.
pub(crate) fn priority<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "priority", u32::MAX)
}

fn byte<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Option<u32>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if (0..=255).contains(&v) => Ok(Some(v as u32)),
        Some(v) => Err(serde::de::Error::custom(format!(
            "{key} {v} is out of range (0-255)"
        ))),
    }
}

/// A policy port's `icmp_type` (optional): 8 bits.
pub(crate) fn icmp_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    byte(d, "icmp_type")
}

/// A policy port's `icmp_code` (optional): 8 bits.
pub(crate) fn icmp_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    byte(d, "icmp_code")
}

/// `Port.mtu` and `Underlay.mtu`: 16 bits.
pub(crate) fn mtu<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, "mtu:", u32::from(u16::MAX))
}

/// The text form of a route: `next_hop = { network, ip }` or `blackhole = true`
/// in place of the proto's `oneof target`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteForm {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    tenant: String,
    prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_hop: Option<api::NextHop>,
    #[serde(default, skip_serializing_if = "is_false")]
    blackhole: bool,
}

/// The one message for a route with both targets.
pub const ROUTE_TARGET: &str =
    "give exactly one of `next_hop = { network, ip }` and `blackhole = true`";

impl TryFrom<RouteForm> for api::Route {
    type Error = &'static str;

    /// Both targets are refused here; neither is a route without a target, which
    /// validation refuses with the same words ([`ROUTE_TARGET`]).
    fn try_from(r: RouteForm) -> Result<Self, Self::Error> {
        let target = match (r.next_hop, r.blackhole) {
            (Some(_), true) => return Err(ROUTE_TARGET),
            (Some(nh), false) => Some(api::route::Target::NextHop(nh)),
            (None, true) => Some(api::route::Target::Blackhole(true)),
            (None, false) => None,
        };
        Ok(api::Route {
            tenant: r.tenant,
            prefix: r.prefix,
            target,
        })
    }
}

impl From<api::Route> for RouteForm {
    fn from(r: api::Route) -> Self {
        let (next_hop, blackhole) = match r.target {
            Some(api::route::Target::NextHop(nh)) => (Some(nh), false),
            Some(api::route::Target::Blackhole(b)) => (None, b),
            None => (None, false),
        };
        RouteForm {
            tenant: r.tenant,
            prefix: r.prefix,
            next_hop,
            blackhole,
        }
    }
}

// ------------------------------------------------------------ parsed -> message
//
// The other direction of the file's parser: a parsed item back in the
// message's canonical text (lower-case MACs, addresses and prefixes in their
// usual forms, defaults filled in), written once for the whole-state path
// ([`crate::state::from_config`]), the deltas and the journal.

fn texts<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

impl From<&PortConfig> for api::Port {
    fn from(p: &PortConfig) -> Self {
        // The profile's serde form (the file's keys, defaults left out), each
        // value in its TOML text.
        let mut t = crate::state::table(&p.profile);
        let profile = match t.remove("profile") {
            Some(toml::Value::String(s)) => s,
            _ => String::new(),
        };
        let mut params: BTreeMap<String, String> = t
            .iter()
            .map(|(k, v)| (k.clone(), crate::state::param_text(v)))
            .collect();
        if let Some(w) = p.worker {
            params.insert("worker".into(), w.to_string());
        }
        api::Port {
            name: p.name.clone(),
            profile,
            params,
            group: p.group.clone(),
            mtu: p.mtu.map_or(0, u32::from),
        }
    }
}

impl From<&L2Entry> for api::L2Entry {
    fn from(e: &L2Entry) -> Self {
        api::L2Entry {
            mac: e.mac.to_string(),
            port: e.port.clone(),
        }
    }
}

impl From<&UnderlayConfig> for api::Underlay {
    fn from(u: &UnderlayConfig) -> Self {
        api::Underlay {
            uplink: u.uplink.clone(),
            local_vtep_ip: u.local_vtep_ip.to_string(),
            local_mac: u.local_mac.to_string(),
            mtu: u32::from(u.mtu),
            on_link: u.on_link.to_string(),
            gateway: u.gateway.map(|g| g.to_string()).unwrap_or_default(),
            neighbors: u
                .neighbors
                .iter()
                .map(|(ip, mac)| api::StaticNeighbor {
                    ip: ip.to_string(),
                    mac: mac.to_string(),
                })
                .collect(),
        }
    }
}

impl From<&NetworkSpec> for api::Network {
    fn from(n: &NetworkSpec) -> Self {
        api::Network {
            name: n.name.clone(),
            vni: n.vni,
            encap: match n.encap {
                Encap::Vxlan => "vxlan",
                Encap::Geneve => "geneve",
            }
            .into(),
            tenant: n.tenant.clone(),
            subnets: texts(&n.subnets),
            gateway_ips: texts(&n.gateway_ips),
            gateway_mac: n.gateway_mac.to_string(),
            flood_unknown: n.flood_unknown,
            vteps: texts(&n.vteps),
            conntrack: n.conntrack,
            // Shown only when it is not the default.
            conntrack_window_tracking: (!n.conntrack_window_tracking).then_some(false),
            policy_on_change: match n.policy_on_change {
                dataplane::pipeline::policy::OnChange::Reevaluate => String::new(),
                other => other.as_str().into(),
            },
        }
    }
}

impl From<&EndpointConfig> for api::Endpoint {
    fn from(e: &EndpointConfig) -> Self {
        api::Endpoint {
            network: e.network.clone(),
            mac: e.mac.to_string(),
            ips: texts(&e.ips),
            port: e.port.clone(),
        }
    }
}

impl From<&RemoteEndpointSpec> for api::RemoteEndpoint {
    fn from(e: &RemoteEndpointSpec) -> Self {
        api::RemoteEndpoint {
            network: e.network.clone(),
            mac: e.mac.to_string(),
            ips: texts(&e.ips),
            vtep: e.vtep.to_string(),
        }
    }
}

impl From<&RouteSpec> for api::Route {
    fn from(r: &RouteSpec) -> Self {
        api::Route {
            tenant: r.tenant.clone(),
            prefix: r.prefix.to_string(),
            target: Some(match &r.target {
                RouteTarget::NextHop { network, ip } => api::route::Target::NextHop(api::NextHop {
                    network: network.clone(),
                    ip: ip.to_string(),
                }),
                RouteTarget::Blackhole => api::route::Target::Blackhole(true),
            }),
        }
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
