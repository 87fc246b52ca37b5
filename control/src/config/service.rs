//! `[[service]]`: Kubernetes Services (a ClusterIP, its ports, external IPs,
//! session affinity, and backends spread by one Maglev table), and
//! `[load_balancer]`, the settings fixed at start (the NodePort range).
//!
//! Each item is read as its proto message ([`api::Service`], the one schema,
//! see [`crate::model`]) and typed by [`service`], which the file, the API's
//! whole-state validation and its per-op checks (`state::check_fields`, the
//! delta path) all call. What concerns several services (a frontend or node
//! port used twice, the totals) is the dataplane's
//! [`check`](dataplane::pipeline::lb::services::check), what concerns the
//! other sections (the network exists, the address families, a VIP that is an
//! endpoint's address) is [`VswitchConfig::validate_services`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use dataplane::pipeline::lb::maglev::{self, BackendState};
use dataplane::pipeline::lb::services::{
    self as lb, Affinity, BackendSpec, Protocol, ServicePortSpec, ServiceSpec,
};

use super::overlay::{at_most, ip};
use super::{ConfigError, VswitchConfig};
use crate::api;
use crate::names::{self, quote};

/// `[load_balancer]`: fixed at start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadBalancerConfig {
    /// The NodePort range, inclusive (Kubernetes' `--service-node-port-range`).
    pub node_port_range: [u16; 2],
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        LoadBalancerConfig {
            node_port_range: [30_000, 32_767],
        }
    }
}

impl LoadBalancerConfig {
    /// Refuses an empty or inverted range, or one starting at port 0.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let [lo, hi] = self.node_port_range;
        if lo == 0 || lo > hi {
            return Err(ConfigError::OutOfRange {
                field: "load_balancer.node_port_range".into(),
                reason: format!("[{lo}, {hi}] is not a range of ports [first, last] from 1"),
            });
        }
        Ok(())
    }
}

fn bad(item: &str, key: &str, reason: String) -> ConfigError {
    ConfigError::OutOfRange {
        field: format!("{item}: {key}"),
        reason,
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// A protocol in Kubernetes' spelling (any case); empty is TCP.
pub(crate) fn protocol(item: &str, key: &str, s: &str) -> Result<Protocol, ConfigError> {
    match s.to_ascii_uppercase().as_str() {
        "" | "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(bad(
            item,
            key,
            format!("{} is not one of \"TCP\", \"UDP\", \"SCTP\"", quote(s)),
        )),
    }
}

/// A backend state; empty is active.
pub(crate) fn backend_state(item: &str, key: &str, s: &str) -> Result<BackendState, ConfigError> {
    match s {
        "" | "active" => Ok(BackendState::Active),
        "draining" => Ok(BackendState::Draining),
        "down" => Ok(BackendState::Down),
        _ => Err(bad(
            item,
            key,
            format!(
                "{} is not one of \"active\", \"draining\", \"down\"",
                quote(s)
            ),
        )),
    }
}

/// The text of a backend state, as the API carries it.
pub fn state_text(s: BackendState) -> &'static str {
    match s {
        BackendState::Active => "active",
        BackendState::Draining => "draining",
        BackendState::Down => "down",
    }
}

/// A weight: unset is 1, at most 65535.
pub(crate) fn weight(item: &str, key: &str, w: Option<u32>) -> Result<u16, ConfigError> {
    let w = w.unwrap_or(1);
    u16::try_from(w).map_err(|_| bad(item, key, format!("{w} is out of range (0-65535)")))
}

fn port_number(item: &str, key: &str, p: u32, zero_ok: bool) -> Result<u16, ConfigError> {
    match u16::try_from(p) {
        Ok(0) if !zero_ok => Err(bad(item, key, "0 is not a port (1-65535)".into())),
        Ok(n) => Ok(n),
        Err(_) => Err(bad(item, key, format!("{p} is out of range (1-65535)"))),
    }
}

/// One backend, typed (its address family checked against `vip`'s).
pub(crate) fn backend(
    item: &str,
    key: &str,
    b: &api::Backend,
    vip: Option<IpAddr>,
) -> Result<BackendSpec, ConfigError> {
    let address = ip(item, &format!("{key}.address"), &b.address)?;
    if let Some(vip) = vip.filter(|v| v.is_ipv4() != address.is_ipv4()) {
        return Err(bad(
            item,
            &format!("{key}.address"),
            format!(
                "{address} is {}, the cluster_ip {vip} is {}: a service's backends are of its family",
                family(address),
                family(vip)
            ),
        ));
    }
    Ok(BackendSpec {
        address,
        weight: weight(item, &format!("{key}.weight"), b.weight)?,
        state: backend_state(item, &format!("{key}.state"), &b.state)?,
    })
}

/// A `[[service]]`, typed: every field of the service itself, with
/// `node_ports` the NodePort range.
pub(crate) fn service(
    item: &str,
    r: &api::Service,
    node_ports: &LoadBalancerConfig,
) -> Result<ServiceSpec, ConfigError> {
    let cluster_ip = ip(item, "cluster_ip", &r.cluster_ip)?;
    if cluster_ip.is_unspecified() || cluster_ip.is_multicast() || cluster_ip.is_loopback() {
        return Err(bad(
            item,
            "cluster_ip",
            format!("{cluster_ip} cannot be a virtual IP (unspecified, loopback or multicast)"),
        ));
    }
    if r.ports.is_empty() {
        return Err(bad(
            item,
            "ports",
            "a service needs at least one port".into(),
        ));
    }
    at_most(item, "ports", r.ports.len(), lb::MAX_PORTS)?;
    let [lo, hi] = node_ports.node_port_range;
    let mut port_names = BTreeSet::new();
    let mut ports = Vec::with_capacity(r.ports.len());
    for (i, p) in r.ports.iter().enumerate() {
        let key = format!("ports[{i}]");
        if !p.name.is_empty() {
            names::check(&p.name).map_err(|reason| bad(item, &format!("{key}.name"), reason))?;
            if !port_names.insert(p.name.as_str()) {
                return Err(bad(
                    item,
                    &format!("{key}.name"),
                    format!("{:?} names two ports", p.name),
                ));
            }
        } else if r.ports.len() > 1 {
            return Err(bad(
                item,
                &format!("{key}.name"),
                "the ports of a service with several ports need names".into(),
            ));
        }
        let port = port_number(item, &format!("{key}.port"), p.port, false)?;
        let target_port =
            match port_number(item, &format!("{key}.target_port"), p.target_port, true)? {
                0 => port,
                t => t,
            };
        let node_port = match p.node_port {
            0 => None,
            n if n >= u32::from(lo) && n <= u32::from(hi) => Some(n as u16),
            n => {
                return Err(bad(
                    item,
                    &format!("{key}.node_port"),
                    format!("{n} is outside the node port range {lo}-{hi}"),
                ))
            }
        };
        ports.push(ServicePortSpec {
            name: p.name.clone(),
            protocol: protocol(item, &format!("{key}.protocol"), &p.protocol)?,
            port,
            target_port,
            node_port,
        });
    }
    at_most(
        item,
        "external_ips",
        r.external_ips.len(),
        lb::MAX_EXTERNAL_IPS,
    )?;
    let mut external_ips = Vec::with_capacity(r.external_ips.len());
    for s in &r.external_ips {
        let a = ip(item, "external_ips", s)?;
        if a.is_ipv4() != cluster_ip.is_ipv4() {
            return Err(bad(
                item,
                "external_ips",
                format!(
                    "{a} is {}, the cluster_ip {cluster_ip} is {}",
                    family(a),
                    family(cluster_ip)
                ),
            ));
        }
        if a == cluster_ip || external_ips.contains(&a) {
            return Err(bad(item, "external_ips", format!("{a} is listed twice")));
        }
        external_ips.push(a);
    }
    let affinity = match r.session_affinity.as_str() {
        "" | "None" => {
            if r.affinity_timeout_s != 0 {
                return Err(bad(
                    item,
                    "affinity_timeout_s",
                    "is for session_affinity = \"ClientIP\"".into(),
                ));
            }
            Affinity::None
        }
        "ClientIP" => Affinity::ClientIp {
            timeout_s: match r.affinity_timeout_s {
                0 => lb::DEFAULT_AFFINITY_TIMEOUT_S,
                t @ 1..=86_400 => t,
                t => {
                    return Err(bad(
                        item,
                        "affinity_timeout_s",
                        format!("{t} is out of range (1-86400 seconds)"),
                    ))
                }
            },
        },
        other => {
            return Err(bad(
                item,
                "session_affinity",
                format!("{} is not one of \"None\", \"ClientIP\"", quote(other)),
            ))
        }
    };
    let table_size = match r.table_size {
        0 => maglev::DEFAULT_SIZE,
        n => n,
    };
    maglev::check_size(table_size).map_err(|e| {
        let reason = match e {
            maglev::MaglevError::SizeNotPrime { size } => {
                format!("{size} is not prime (a Maglev table needs a prime size, e.g. 65537)")
            }
            other => other.to_string(),
        };
        bad(item, "table_size", reason)
    })?;
    if r.backends.is_empty() {
        return Err(bad(
            item,
            "backends",
            "a service needs at least one backend".into(),
        ));
    }
    at_most(item, "backends", r.backends.len(), lb::MAX_BACKENDS)?;
    let mut backends = Vec::with_capacity(r.backends.len());
    let mut seen = BTreeSet::new();
    for (i, b) in r.backends.iter().enumerate() {
        let b = backend(item, &format!("backends[{i}]"), b, Some(cluster_ip))?;
        if !seen.insert(b.address) {
            return Err(bad(
                item,
                &format!("backends[{i}].address"),
                format!("{} is listed twice", b.address),
            ));
        }
        backends.push(b);
    }
    if !backends
        .iter()
        .any(|b| b.state == BackendState::Active && b.weight > 0)
    {
        return Err(bad(
            item,
            "backends",
            "no backend is active with a non-zero weight: new connections would have nowhere to go"
                .into(),
        ));
    }
    Ok(ServiceSpec {
        name: r.name.clone(),
        network: r.network.clone(),
        cluster_ip,
        ports,
        external_ips,
        affinity,
        table_size,
        backends,
    })
}

/// A parsed service back in the message's canonical text (defaults filled in).
pub fn to_message(s: &ServiceSpec) -> api::Service {
    api::Service {
        name: s.name.clone(),
        network: s.network.clone(),
        cluster_ip: s.cluster_ip.to_string(),
        ports: s
            .ports
            .iter()
            .map(|p| api::ServicePort {
                name: p.name.clone(),
                protocol: p.protocol.as_str().into(),
                port: u32::from(p.port),
                target_port: u32::from(p.target_port),
                node_port: p.node_port.map_or(0, u32::from),
            })
            .collect(),
        external_ips: s.external_ips.iter().map(ToString::to_string).collect(),
        session_affinity: match s.affinity {
            Affinity::None => "None",
            Affinity::ClientIp { .. } => "ClientIP",
        }
        .into(),
        affinity_timeout_s: match s.affinity {
            Affinity::None => 0,
            Affinity::ClientIp { timeout_s } => timeout_s,
        },
        table_size: s.table_size,
        backends: s.backends.iter().map(backend_message).collect(),
    }
}

/// A backend in the message's canonical text.
pub fn backend_message(b: &BackendSpec) -> api::Backend {
    api::Backend {
        address: b.address.to_string(),
        weight: Some(u32::from(b.weight)),
        state: state_text(b.state).into(),
    }
}

/// How errors name service `index` of the file before its name is known.
pub(super) fn label(index: usize, t: &toml::Table) -> String {
    match t.get("name").and_then(toml::Value::as_str) {
        Some(n) => format!("service {}", quote(n)),
        None => format!("service #{index}"),
    }
}

impl VswitchConfig {
    /// The services' references to the other sections: the network exists,
    /// the addresses are of a family it has, a virtual IP is no endpoint's or
    /// gateway's address; then the dataplane's rules over all services.
    pub(super) fn validate_services(&self) -> Result<(), ConfigError> {
        for s in &self.services {
            self.service_refs(s, true)?;
        }
        lb::check(&self.services).map_err(|e| ConfigError::Syntax(e.to_string()))
    }

    /// [`validate_services`](Self::validate_services) for one service;
    /// `addresses` also looks for its virtual IPs among the network's
    /// endpoints (a scan of them: only when the addresses change).
    pub(crate) fn service_refs(&self, s: &ServiceSpec, addresses: bool) -> Result<(), ConfigError> {
        let item = format!("service {}", quote(&s.name));
        let Some(net) = self.networks.iter().find(|n| n.name == s.network) else {
            return Err(bad(
                &item,
                "network",
                format!("network {} does not exist", quote(&s.network)),
            ));
        };
        // A network with a service is tracked (its connections keep their
        // backends), so the tracked networks' rules of `validate` hold for it.
        if let Some(m) = self
            .networks
            .iter()
            .find(|m| m.tenant == net.tenant && m.name != net.name)
        {
            return Err(bad(
                &item,
                "network",
                format!(
                    "network {} would be tracked for the service, and tenant {} has another network ({}): a tracked network must be its tenant's only one for now",
                    quote(&s.network),
                    quote(&net.tenant),
                    quote(&m.name)
                ),
            ));
        }
        if !net.subnets.is_empty() {
            let fits = |a: IpAddr| {
                net.subnets
                    .iter()
                    .any(|p| p.addr().is_ipv4() == a.is_ipv4())
            };
            if !fits(s.cluster_ip) {
                return Err(bad(
                    &item,
                    "cluster_ip",
                    format!(
                        "{} is {}, network {:?} has no {} subnet",
                        s.cluster_ip,
                        family(s.cluster_ip),
                        net.name,
                        family(s.cluster_ip)
                    ),
                ));
            }
            for (i, b) in s.backends.iter().enumerate() {
                if !net.subnets.iter().any(|p| p.contains(&b.address)) {
                    return Err(bad(
                        &item,
                        &format!("backends[{i}].address"),
                        format!(
                            "{} is not in any subnet of network {:?}",
                            b.address, net.name
                        ),
                    ));
                }
            }
        }
        if addresses {
            let vips: Vec<IpAddr> = std::iter::once(s.cluster_ip)
                .chain(s.external_ips.iter().copied())
                .collect();
            let taken = net
                .gateway_ips
                .iter()
                .find(|g| vips.contains(g))
                .map(|g| (*g, "the network's gateway".to_owned()));
            let taken = taken.or_else(|| {
                self.endpoints
                    .iter()
                    .filter(|e| e.network == s.network)
                    .find_map(|e| {
                        e.ips
                            .iter()
                            .find(|a| vips.contains(a))
                            .map(|a| (*a, format!("endpoint {}", e.mac)))
                    })
            });
            let taken = taken.or_else(|| {
                self.remote_endpoints
                    .iter()
                    .filter(|e| e.network == s.network)
                    .find_map(|e| {
                        e.ips
                            .iter()
                            .find(|a| vips.contains(a))
                            .map(|a| (*a, format!("remote endpoint {}", e.mac)))
                    })
            });
            if let Some((a, whose)) = taken {
                let key = if a == s.cluster_ip {
                    "cluster_ip"
                } else {
                    "external_ips"
                };
                return Err(bad(
                    &item,
                    key,
                    format!("{a} is the address of {whose} in network {:?}: a virtual IP is nobody's address", net.name),
                ));
            }
        }
        Ok(())
    }
}
