//! `[[policy]]`, `[[cluster_policy]]` and `[[policy_endpoint]]`: network
//! policy (issue #26), resolved to addresses by whatever controller drives the
//! switch.
//!
//! Each item is read as its proto message ([`api::NetworkPolicy`],
//! [`api::ClusterPolicy`], [`api::PolicyEndpoint`]: the one schema, see
//! [`crate::model`]) and checked here in two steps, which the file, the API's
//! whole-state validation, its per-op checks (`state::check_fields`) and the
//! delta path all call:
//!
//! - [`network_policy`], [`cluster_policy`] and [`policy_endpoint`] check one
//!   item: the name, every enumeration (`protocol`, `action`, `tier`,
//!   `policy_types`), every number the wire carries wider than the model (a
//!   port over 65535 is refused, not cut), and then the item alone through
//!   the dataplane's own validation ([`PolicySet::validate`]), whose errors
//!   name the field. They return the item in canonical text (protocols and
//!   actions spelled as upstream, `policy_types` filled in).
//! - [`check_and_compile`] converts every item to the dataplane's model — the one place
//!   proto becomes [`policy::model`](dataplane::pipeline::policy::model) —
//!   validates the whole set (names used twice, an address claimed by two
//!   policy endpoints, the totals of [`Limits`]) and compiles it: a set the
//!   compiler refuses (too large, too much work) is refused whole, with its
//!   reason, and nothing of it is applied.
//!
//! An unknown named port is not an error: it matches nothing.

use std::sync::Arc;

use dataplane::pipeline::policy::model::{
    ClusterAction, ClusterPolicy, ClusterRule, Direction, EndpointPorts, NamedPort, NetworkRule,
    Peer, PortMatch, PortRef, Protocol,
};
use dataplane::pipeline::policy::{CompiledPolicy, PolicyError, PolicySet, Tier};

use super::{ConfigError, VswitchConfig};
use crate::api;
use crate::names::quote;

/// The longest policy or policy endpoint name (a Kubernetes `namespace/name`).
pub const MAX_POLICY_NAME: usize = 253;

fn bad(item: &str, key: &str, reason: String) -> ConfigError {
    ConfigError::OutOfRange {
        field: format!("{item}: {key}"),
        reason,
    }
}

/// The label errors give a NetworkPolicy.
pub fn policy_label(name: &str) -> String {
    format!("policy {}", quote(name))
}

/// The label errors give a cluster policy.
pub fn cluster_label(name: &str) -> String {
    format!("cluster policy {}", quote(name))
}

/// The label errors give a policy endpoint.
pub fn endpoint_label(name: &str) -> String {
    format!("policy endpoint {}", quote(name))
}

/// A policy or policy endpoint name: 1 to 253 of letters, digits, `.`, `-`,
/// `_` and `/` (a controller writes `namespace/name`), starting with a letter
/// or a digit (never a flag to a shell or the CLI), without `..`, `//` or a
/// trailing `/` or `.`.
///
/// # Errors
/// A one-line reason quoting a prefix of the name.
pub fn check_name(name: &str) -> Result<(), String> {
    let first_ok = name
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric);
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'));
    // No empty or dot-dot segment: `a//b`, `a/../b` and a trailing `/` or
    // `.` are not names a controller writes, and read like paths.
    let segments_ok = !name.contains("..")
        && !name.contains("//")
        && !name.ends_with('/')
        && !name.ends_with('.');
    if first_ok && rest_ok && segments_ok && name.len() <= MAX_POLICY_NAME {
        return Ok(());
    }
    Err(format!(
        "{} is not a valid policy name: 1-{MAX_POLICY_NAME} characters of letters, digits, \
         '.', '-', '_', '/', starting with a letter or digit, without '..', '//' or a \
         trailing '/' or '.'",
        quote(name)
    ))
}

// ---------------------------------------------------------------- proto -> model

fn protocol(item: &str, key: &str, s: &str, ports_only: bool) -> Result<Protocol, ConfigError> {
    let p = match s.to_ascii_uppercase().as_str() {
        "" | "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        "ICMP" if !ports_only => Protocol::Icmp,
        "ICMPV6" if !ports_only => Protocol::Icmpv6,
        _ => {
            let one_of = if ports_only {
                "\"TCP\", \"UDP\", \"SCTP\""
            } else {
                "\"TCP\", \"UDP\", \"SCTP\", \"ICMP\", \"ICMPv6\""
            };
            return Err(bad(
                item,
                key,
                format!("{} is not one of {one_of}", quote(s)),
            ));
        }
    };
    Ok(p)
}

fn protocol_text(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        Protocol::Icmp => "ICMP",
        Protocol::Icmpv6 => "ICMPv6",
    }
}

/// A number the wire carries in 32 bits that the model holds in 16.
fn port16(item: &str, key: &str, n: u32) -> Result<u16, ConfigError> {
    u16::try_from(n).map_err(|_| bad(item, key, format!("{n} is out of range (1-65535)")))
}

/// An ICMP type or code: 8 bits.
fn byte(item: &str, key: &str, n: Option<u32>) -> Result<Option<u8>, ConfigError> {
    n.map(|n| u8::try_from(n).map_err(|_| bad(item, key, format!("{n} is out of range (0-255)"))))
        .transpose()
}

fn peer(item: &str, key: &str, p: &api::PolicyPeer) -> Result<Peer, ConfigError> {
    match &p.ip_block {
        Some(_) if !p.addresses.is_empty() => Err(bad(
            item,
            key,
            "give either addresses (an IP set) or ip_block, not both".into(),
        )),
        Some(b) => Ok(Peer::IpBlock {
            cidr: b.cidr.clone(),
            except: b.except.clone(),
        }),
        None => Ok(Peer::Addresses(p.addresses.clone())),
    }
}

fn port_match(item: &str, key: &str, p: &api::PolicyPort) -> Result<PortMatch, ConfigError> {
    let protocol = protocol(item, &format!("{key}.protocol"), &p.protocol, false)?;
    let port = match (p.port, p.port_name.as_str()) {
        (0, "") => None,
        (0, name) => Some(PortRef::Name(name.to_owned())),
        (n, "") => Some(PortRef::Number(port16(item, &format!("{key}.port"), n)?)),
        (_, _) => {
            return Err(bad(
                item,
                &format!("{key}.port_name"),
                "give either port (a number) or port_name, not both".into(),
            ))
        }
    };
    let end_port = match p.end_port {
        0 => None,
        n => Some(port16(item, &format!("{key}.end_port"), n)?),
    };
    Ok(PortMatch {
        protocol,
        port,
        end_port,
        icmp_type: byte(item, &format!("{key}.icmp_type"), p.icmp_type)?,
        icmp_code: byte(item, &format!("{key}.icmp_code"), p.icmp_code)?,
    })
}

fn peers(item: &str, key: &str, v: &[api::PolicyPeer]) -> Result<Vec<Peer>, ConfigError> {
    v.iter()
        .enumerate()
        .map(|(k, p)| peer(item, &format!("{key}.peers[{k}]"), p))
        .collect()
}

fn ports(item: &str, key: &str, v: &[api::PolicyPort]) -> Result<Vec<PortMatch>, ConfigError> {
    v.iter()
        .enumerate()
        .map(|(k, p)| port_match(item, &format!("{key}.ports[{k}]"), p))
        .collect()
}

fn direction(item: &str, key: &str, s: &str) -> Result<Direction, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "ingress" => Ok(Direction::Ingress),
        "egress" => Ok(Direction::Egress),
        _ => Err(bad(
            item,
            key,
            format!("{} is not one of \"Ingress\", \"Egress\"", quote(s)),
        )),
    }
}

/// A NetworkPolicy in the model. `policy_types` left empty is Kubernetes'
/// default: Ingress, and Egress when there are egress rules.
fn to_network(
    item: &str,
    p: &api::NetworkPolicy,
) -> Result<dataplane::pipeline::policy::model::NetworkPolicy, ConfigError> {
    let policy_types = if p.policy_types.is_empty() {
        let mut t = vec![Direction::Ingress];
        if !p.egress.is_empty() {
            t.push(Direction::Egress);
        }
        t
    } else {
        p.policy_types
            .iter()
            .enumerate()
            .map(|(i, s)| direction(item, &format!("policy_types[{i}]"), s))
            .collect::<Result<_, _>>()?
    };
    let rules = |dir: &str, v: &[api::NetworkPolicyRule]| {
        v.iter()
            .enumerate()
            .map(|(j, r)| {
                let key = format!("{dir}[{j}]");
                Ok(NetworkRule {
                    peers: peers(item, &key, &r.peers)?,
                    ports: ports(item, &key, &r.ports)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()
    };
    Ok(dataplane::pipeline::policy::model::NetworkPolicy {
        name: p.name.clone(),
        subject: p.subject.clone(),
        policy_types,
        ingress: rules("ingress", &p.ingress)?,
        egress: rules("egress", &p.egress)?,
    })
}

fn tier(item: &str, s: &str) -> Result<Tier, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "admin" => Ok(Tier::Admin),
        "baseline" => Ok(Tier::Baseline),
        _ => Err(bad(
            item,
            "tier",
            format!("{} is not one of \"Admin\", \"Baseline\"", quote(s)),
        )),
    }
}

fn action(item: &str, key: &str, s: &str) -> Result<ClusterAction, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "allow" => Ok(ClusterAction::Allow),
        "deny" => Ok(ClusterAction::Deny),
        "pass" => Ok(ClusterAction::Pass),
        _ => Err(bad(
            item,
            key,
            format!("{} is not one of \"Allow\", \"Deny\", \"Pass\"", quote(s)),
        )),
    }
}

/// A cluster policy in the model, with its tier.
fn to_cluster(item: &str, p: &api::ClusterPolicy) -> Result<(Tier, ClusterPolicy), ConfigError> {
    let rules = |dir: &str, v: &[api::ClusterPolicyRule]| {
        v.iter()
            .enumerate()
            .map(|(j, r)| {
                let key = format!("{dir}[{j}]");
                Ok(ClusterRule {
                    name: r.name.clone(),
                    action: action(item, &format!("{key}.action"), &r.action)?,
                    peers: peers(item, &key, &r.peers)?,
                    ports: ports(item, &key, &r.ports)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()
    };
    Ok((
        tier(item, &p.tier)?,
        ClusterPolicy {
            name: p.name.clone(),
            priority: p.priority,
            subject: p.subject.clone(),
            ingress: rules("ingress", &p.ingress)?,
            egress: rules("egress", &p.egress)?,
        },
    ))
}

fn to_endpoint(item: &str, e: &api::PolicyEndpoint) -> Result<EndpointPorts, ConfigError> {
    let named_ports = e
        .named_ports
        .iter()
        .enumerate()
        .map(|(k, np)| {
            let key = format!("named_ports[{k}]");
            Ok(NamedPort {
                name: np.name.clone(),
                protocol: protocol(item, &format!("{key}.protocol"), &np.protocol, true)?,
                port: port16(item, &format!("{key}.port"), np.port)?,
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok(EndpointPorts {
        addresses: e.addresses.clone(),
        named_ports,
    })
}

// ---------------------------------------------------------------- errors

/// The file's key for a segment of the model's path (camelCase there).
fn snake(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 4);
    for c in segment.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A model error's words with the file's spellings: its keys in snake_case,
/// protocols as upstream writes them.
fn words(e: &PolicyError) -> String {
    let mut text = e.problem.to_string();
    for (model, file) in [
        ("endPort", "end_port"),
        ("icmpType", "icmp_type"),
        ("icmpCode", "icmp_code"),
        ("policyTypes", "policy_types"),
        ("to Icmpv6", "to ICMPv6"),
        ("to Icmp", "to ICMP"),
        ("to Tcp", "to TCP"),
        ("to Udp", "to UDP"),
        ("to Sctp", "to SCTP"),
    ] {
        text = text.replace(model, file);
    }
    text
}

/// A model error on a field below one item (`rest` is the model's path after
/// the item's own `network[i]`), as the file names it: snake_case keys, and a
/// named port's `port` is `port_name`.
fn field_of(rest: &str, e: &PolicyError) -> String {
    let mut field = snake(rest.trim_start_matches('.'));
    if matches!(
        e.problem,
        dataplane::pipeline::policy::model::Problem::BadPortName(_)
    ) && field.ends_with(".port")
    {
        field.push_str("_name");
    }
    field
}

/// Splits the model's path `network[3].ingress[0]` into the list, the index
/// and the rest.
fn split_path(path: &str) -> Option<(&str, usize, &str)> {
    let open = path.find('[')?;
    let close = path[open..].find(']')? + open;
    let index = path[open + 1..close].parse().ok()?;
    Some((&path[..open], index, &path[close + 1..]))
}

/// A model error on the set made of one item, for that item.
fn item_error(item: &str, e: &PolicyError) -> ConfigError {
    match split_path(&e.field) {
        Some((_, _, rest)) if !rest.is_empty() => bad(item, &field_of(rest, e), words(e)),
        _ => ConfigError::Syntax(format!("{item}: {}", words(e))),
    }
}

// ---------------------------------------------------------------- one item

/// A `[[policy]]`, checked alone and in canonical text.
///
/// # Errors
/// The first field found wrong, named from the item.
pub fn network_policy(
    item: &str,
    p: &api::NetworkPolicy,
) -> Result<api::NetworkPolicy, ConfigError> {
    check_name(&p.name).map_err(|r| bad(item, "name", r))?;
    let model = to_network(item, p)?;
    let set = PolicySet {
        network: vec![model],
        ..Default::default()
    };
    set.validate().map_err(|e| item_error(item, &e))?;
    Ok(network_message(&set.network[0]))
}

/// A `[[cluster_policy]]`, checked alone and in canonical text.
///
/// # Errors
/// The first field found wrong, named from the item.
pub fn cluster_policy(
    item: &str,
    p: &api::ClusterPolicy,
) -> Result<api::ClusterPolicy, ConfigError> {
    check_name(&p.name).map_err(|r| bad(item, "name", r))?;
    let (tier, model) = to_cluster(item, p)?;
    let mut set = PolicySet::default();
    match tier {
        Tier::Baseline => set.baseline.push(model),
        _ => set.admin.push(model),
    }
    set.validate().map_err(|e| item_error(item, &e))?;
    let model = set
        .admin
        .first()
        .or(set.baseline.first())
        .expect("one policy");
    Ok(cluster_message(tier, model))
}

/// A `[[policy_endpoint]]`, checked alone and in canonical text.
///
/// # Errors
/// The first field found wrong, named from the item.
pub fn policy_endpoint(
    item: &str,
    e: &api::PolicyEndpoint,
) -> Result<api::PolicyEndpoint, ConfigError> {
    check_name(&e.name).map_err(|r| bad(item, "name", r))?;
    let model = to_endpoint(item, e)?;
    let set = PolicySet {
        endpoints: vec![model],
        ..Default::default()
    };
    set.validate().map_err(|e| item_error(item, &e))?;
    Ok(endpoint_message(&e.name, &set.endpoints[0]))
}

// ---------------------------------------------------------------- model -> proto

fn peer_message(p: &Peer) -> api::PolicyPeer {
    match p {
        Peer::Addresses(a) => api::PolicyPeer {
            addresses: a.clone(),
            ip_block: None,
        },
        Peer::IpBlock { cidr, except } => api::PolicyPeer {
            addresses: Vec::new(),
            ip_block: Some(api::IpBlock {
                cidr: cidr.clone(),
                except: except.clone(),
            }),
        },
    }
}

fn port_message(p: &PortMatch) -> api::PolicyPort {
    let (port, port_name) = match &p.port {
        None => (0, String::new()),
        Some(PortRef::Number(n)) => (u32::from(*n), String::new()),
        Some(PortRef::Name(s)) => (0, s.clone()),
    };
    api::PolicyPort {
        protocol: protocol_text(p.protocol).into(),
        port,
        end_port: p.end_port.map_or(0, u32::from),
        port_name,
        icmp_type: p.icmp_type.map(u32::from),
        icmp_code: p.icmp_code.map(u32::from),
    }
}

fn direction_text(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    }
}

fn network_message(p: &dataplane::pipeline::policy::model::NetworkPolicy) -> api::NetworkPolicy {
    let rules = |v: &[NetworkRule]| {
        v.iter()
            .map(|r| api::NetworkPolicyRule {
                peers: r.peers.iter().map(peer_message).collect(),
                ports: r.ports.iter().map(port_message).collect(),
            })
            .collect()
    };
    api::NetworkPolicy {
        name: p.name.clone(),
        subject: p.subject.clone(),
        policy_types: p
            .policy_types
            .iter()
            .map(|d| direction_text(*d).to_owned())
            .collect(),
        ingress: rules(&p.ingress),
        egress: rules(&p.egress),
    }
}

fn cluster_message(tier: Tier, p: &ClusterPolicy) -> api::ClusterPolicy {
    let rules = |v: &[ClusterRule]| {
        v.iter()
            .map(|r| api::ClusterPolicyRule {
                name: r.name.clone(),
                action: match r.action {
                    ClusterAction::Allow => "Allow",
                    ClusterAction::Deny => "Deny",
                    ClusterAction::Pass => "Pass",
                }
                .into(),
                peers: r.peers.iter().map(peer_message).collect(),
                ports: r.ports.iter().map(port_message).collect(),
            })
            .collect()
    };
    api::ClusterPolicy {
        name: p.name.clone(),
        tier: match tier {
            Tier::Baseline => "Baseline",
            _ => "Admin",
        }
        .into(),
        priority: p.priority,
        subject: p.subject.clone(),
        ingress: rules(&p.ingress),
        egress: rules(&p.egress),
    }
}

fn endpoint_message(name: &str, e: &EndpointPorts) -> api::PolicyEndpoint {
    api::PolicyEndpoint {
        name: name.to_owned(),
        addresses: e.addresses.clone(),
        named_ports: e
            .named_ports
            .iter()
            .map(|np| api::NamedPort {
                name: np.name.clone(),
                protocol: protocol_text(np.protocol).into(),
                port: u32::from(np.port),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------- the whole set

/// The policies of a configuration: canonical messages, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    /// `[[policy]]`: NetworkPolicies.
    pub network: Vec<api::NetworkPolicy>,
    /// `[[cluster_policy]]`: admin and baseline cluster policies.
    pub cluster: Vec<api::ClusterPolicy>,
    /// `[[policy_endpoint]]`: the named ports of endpoints.
    pub endpoints: Vec<api::PolicyEndpoint>,
}

impl Policies {
    /// Whether there is no policy and no named port at all.
    pub fn is_empty(&self) -> bool {
        self.network.is_empty() && self.cluster.is_empty() && self.endpoints.is_empty()
    }

    /// The same lists, borrowed.
    pub fn refs(&self) -> PolicyRefs<'_> {
        PolicyRefs {
            network: self.network.iter().collect(),
            cluster: self.cluster.iter().collect(),
            endpoints: self.endpoints.iter().collect(),
        }
    }
}

/// Policies as borrowed lists: the set a write leads to, made of the
/// configuration's items and the write's own without copying the 3,000
/// messages a write does not touch.
#[derive(Debug, Clone, Default)]
pub struct PolicyRefs<'a> {
    /// `[[policy]]`.
    pub network: Vec<&'a api::NetworkPolicy>,
    /// `[[cluster_policy]]`.
    pub cluster: Vec<&'a api::ClusterPolicy>,
    /// `[[policy_endpoint]]`.
    pub endpoints: Vec<&'a api::PolicyEndpoint>,
}

/// The whole set as the dataplane's model (tiers split, order kept), with
/// where each model item came from, to name it in errors.
fn to_set(p: &PolicyRefs<'_>) -> Result<(PolicySet, Vec<usize>, Vec<usize>), ConfigError> {
    let mut set = PolicySet::default();
    let (mut admin_at, mut baseline_at) = (Vec::new(), Vec::new());
    for n in p.network.iter().copied() {
        set.network.push(to_network(&policy_label(&n.name), n)?);
    }
    for (i, c) in p.cluster.iter().copied().enumerate() {
        let (tier, model) = to_cluster(&cluster_label(&c.name), c)?;
        if tier == Tier::Baseline {
            set.baseline.push(model);
            baseline_at.push(i);
        } else {
            set.admin.push(model);
            admin_at.push(i);
        }
    }
    for e in p.endpoints.iter().copied() {
        set.endpoints
            .push(to_endpoint(&endpoint_label(&e.name), e)?);
    }
    Ok((set, admin_at, baseline_at))
}

/// Validates and compiles the whole set: what the snapshot publishes.
///
/// # Errors
/// The first item or field found wrong, named by the item; a set the compiler
/// refuses, whole.
fn compile(p: &PolicyRefs<'_>) -> Result<Arc<CompiledPolicy>, ConfigError> {
    if p.network.is_empty() && p.cluster.is_empty() && p.endpoints.is_empty() {
        return Ok(CompiledPolicy::shared_empty());
    }
    let (set, admin_at, baseline_at) = to_set(p)?;
    let valid = set.validate().map_err(|e| {
        let Some((list, i, rest)) = split_path(&e.field) else {
            return ConfigError::Syntax(format!("policies: {}", words(&e)));
        };
        let item = match list {
            "network" => p.network.get(i).map(|x| policy_label(&x.name)),
            "admin" => admin_at.get(i).map(|&k| cluster_label(&p.cluster[k].name)),
            "baseline" => baseline_at
                .get(i)
                .map(|&k| cluster_label(&p.cluster[k].name)),
            "endpoints" => p.endpoints.get(i).map(|x| endpoint_label(&x.name)),
            _ => None,
        };
        match item {
            Some(item) if rest.is_empty() => ConfigError::Syntax(format!("{item}: {}", words(&e))),
            Some(item) => bad(&item, &field_of(rest, &e), words(&e)),
            None => ConfigError::Syntax(format!("policies: {}", words(&e))),
        }
    })?;
    CompiledPolicy::compile(&valid)
        .map(Arc::new)
        .map_err(|e| ConfigError::Syntax(format!("policies: {e}")))
}

/// How errors name policy item `index` of section `section` of the file before
/// its name is known.
pub(super) fn label(section: &str, index: usize, t: &toml::Table) -> String {
    let what = match section {
        "cluster_policy" => "cluster policy",
        "policy_endpoint" => "policy endpoint",
        _ => "policy",
    };
    match t.get("name").and_then(toml::Value::as_str) {
        Some(n) => format!("{what} {}", quote(n)),
        None => format!("{what} #{index}"),
    }
}

impl VswitchConfig {
    /// The whole set of policies validated and compiled (the result thrown
    /// away: the snapshot compiles its own, or shares the running one).
    pub(super) fn validate_policies(&self) -> Result<(), ConfigError> {
        let compiled = check_and_compile(&self.policies)?;
        // A network holding a policy subject is tracked (the policy stage
        // keeps verdicts in its connections), so the tracked networks' rule
        // holds for it: the zones rule below.
        let label = || {
            self.policies
                .network
                .iter()
                .find(|p| !p.subject.is_empty())
                .map(|p| policy_label(&p.name))
                .or_else(|| {
                    self.policies
                        .cluster
                        .iter()
                        .find(|p| !p.subject.is_empty())
                        .map(|p| cluster_label(&p.name))
                })
                .unwrap_or_else(|| "policy".into())
        };
        // And the zones rule: a connection routed between two networks of
        // a tenant would be tracked (and classified) in two zones.
        if let Some((n, m)) = policed_sharing_a_tenant(&self.networks, &compiled) {
            return Err(bad(
                &label(),
                "subject",
                format!(
                    "network {} holds a policy subject and is tracked for it, and tenant {} has another network ({}): a tracked network must be its tenant's only one for now",
                    quote(&n.name),
                    quote(&n.tenant),
                    quote(&m.name)
                ),
            ));
        }
        Ok(())
    }
}

/// Validates and compiles the whole set, after the names the API deletes by are checked unique over
/// all cluster policies (the model checks them per tier) and over policy
/// endpoints (which the model does not name).
///
/// # Errors
/// The first item or field found wrong, named by the item; a set the
/// compiler refuses, whole; a name used twice.
pub fn check_and_compile(p: &Policies) -> Result<Arc<CompiledPolicy>, ConfigError> {
    check_and_compile_refs(&p.refs())
}

/// [`check_and_compile`] of borrowed lists.
///
/// # Errors
/// As [`check_and_compile`].
pub fn check_and_compile_refs(p: &PolicyRefs<'_>) -> Result<Arc<CompiledPolicy>, ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for c in &p.cluster {
        if !seen.insert(c.name.as_str()) {
            return Err(ConfigError::Syntax(format!(
                "{}: the name is used by another cluster policy",
                cluster_label(&c.name)
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for e in &p.endpoints {
        if !seen.insert(e.name.as_str()) {
            return Err(ConfigError::Syntax(format!(
                "{}: the name is used by another policy endpoint",
                endpoint_label(&e.name)
            )));
        }
    }
    compile(p)
}

/// Whether network `n` holds a subject of `compiled`, as the dataplane
/// decides it (`policy::policed_networks`): one of its subnets holds a
/// subject address, or it has no subnets and some policy has a subject.
pub fn policed(n: &dataplane::overlay::NetworkSpec, compiled: &CompiledPolicy) -> bool {
    compiled.has_subjects()
        && (n.subnets.is_empty()
            || compiled
                .subjects()
                .any(|a| n.subnets.iter().any(|s| s.contains(&a))))
}

/// A network holding a policy subject whose tenant has another network,
/// with that other network.
pub fn policed_sharing_a_tenant<'a>(
    networks: &'a [dataplane::overlay::NetworkSpec],
    compiled: &CompiledPolicy,
) -> Option<(
    &'a dataplane::overlay::NetworkSpec,
    &'a dataplane::overlay::NetworkSpec,
)> {
    if !compiled.has_subjects() {
        return None;
    }
    networks
        .iter()
        .filter(|n| policed(n, compiled))
        .find_map(|n| {
            networks
                .iter()
                .find(|m| m.tenant == n.tenant && m.name != n.name)
                .map(|m| (n, m))
        })
}
