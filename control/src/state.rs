//! The desired state the gRPC API reads and writes: the runtime sections of the
//! configuration file (`[[port]]`, `[[patch]]`, `[[l2]]`, `[underlay]`,
//! `[[network]]`, `[[endpoint]]`, `[[remote_endpoint]]`, `[[route]]`,
//! `[[service]]`). `[eal]`, `[dataplane]` and `[load_balancer]` are fixed at
//! start ([`Fixed`]).
//!
//! Validation is the configuration file's, not a second copy of it: a proto
//! [`DesiredState`](api::DesiredState) becomes TOML tables with the file's keys
//! ([`to_sections`]: each item's serde form, which is the file's, see
//! [`crate::model`]; a port's parameters beside its fields), is put next to the
//! fixed sections and goes through [`VswitchConfig::parse`], so every rule and
//! every error text is the file's. Errors that name an item by its position in that
//! generated document (`endpoint #3 (network "blue")`, `route #1 (10.0.0.0/8)`,
//! `l2[2].port`) are relabelled by key (`endpoint 02:00:00:00:01:01 in network
//! "blue"`), since positions mean nothing to an API client.
//!
//! The state held in memory is canonical: after validation it is rebuilt from the
//! parsed configuration ([`from_config`]), so MACs are lower case, prefixes and
//! addresses are in their usual text forms and defaults are filled in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use toml::{Table, Value};

use dataplane::MacAddr;

use crate::api::{self, op::Op as OpKind, route::Target};
use crate::config::{ConfigError, VswitchConfig};
use crate::names::{self, quote as q};
use crate::persist;

/// Why a write was refused. Every message is one line naming the op, the item and
/// the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Op `index` of a `Write` was refused: it conflicts with the current state
    /// (add of an existing key, delete of a missing one) or the state it leads to
    /// is invalid.
    #[error("op {index} ({op}): {reason}")]
    Op {
        /// Position of the op in the request, from 0.
        index: usize,
        /// The op and its key, `add_network "blue"`.
        op: String,
        /// What is wrong, naming the item and field.
        reason: String,
    },
    /// A `Write` without ops.
    #[error("a write needs at least one op")]
    NoOps,
    /// A `Write` with more ops than [`MAX_OPS`].
    #[error("ops: {count} ops in one write, at most {MAX_OPS}: split it into several writes")]
    TooManyOps {
        /// How many were sent.
        count: usize,
    },
    /// A `Replace` without its `state` field (an empty state is spelled out as an
    /// empty `DesiredState`, so that a client bug cannot wipe the switch).
    #[error("state: missing; to remove everything, send an empty state explicitly")]
    NoState,
    /// The generation counter would pass `u64::MAX`.
    #[error("generation {0} is the last one: no further write can be numbered")]
    GenerationExhausted(u64),
    /// The state of a `Replace` is invalid.
    #[error("{0}")]
    Invalid(String),
    /// `expected_generation` does not match.
    #[error("generation is {current}, expected {expected}")]
    Generation {
        /// The current generation.
        current: u64,
        /// What the writer expected.
        expected: u64,
    },
}

/// The most ops one `Write` may carry: a bound on what one caller can make the
/// single writer do (a pod's attachment is a handful of ops; bulk loads split).
pub const MAX_OPS: usize = 20_000;

/// The longest error message the API sends: items and fields are named before
/// any quoted input, and quotes are short ([`names::quote`](crate::names::quote)),
/// so only a pathological message is cut.
pub const MAX_MESSAGE: usize = 1024;

/// `msg` cut to [`MAX_MESSAGE`] bytes at a character boundary.
pub fn bounded(mut msg: String) -> String {
    if msg.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push_str("… (cut)");
    }
    msg
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let msg = bounded(e.to_string());
        match e {
            ApiError::Generation { .. } | ApiError::GenerationExhausted(_) => {
                tonic::Status::failed_precondition(msg)
            }
            _ => tonic::Status::invalid_argument(msg),
        }
    }
}

/// The sections fixed at start (`[eal]`, `[dataplane]`) and the number of usable
/// cores: what every desired state is validated against.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    eal: Table,
    dataplane: Table,
    /// `[control]` is fixed at start too: where the API listens is not API state.
    control: Option<crate::config::ControlConfig>,
    /// And so are `[metrics]` and `[log]`.
    metrics: Option<crate::config::MetricsConfig>,
    log: crate::config::LogConfig,
    /// And `[conntrack]`: the workers' tables are sized at start.
    conntrack: crate::config::ConntrackConfig,
    /// And `[load_balancer]` (the NodePort range every service is checked against).
    load_balancer: crate::config::LoadBalancerConfig,
    cores: usize,
}

fn int<T: TryInto<i64>>(v: T) -> Value {
    Value::Integer(v.try_into().unwrap_or(i64::MAX))
}

impl Fixed {
    /// The fixed sections of the running configuration `cfg`; `cores` as given to
    /// [`VswitchConfig::parse`].
    pub fn from_config(cfg: &VswitchConfig, cores: usize) -> Self {
        // Their serde form: the file's keys, every one of them (the paths in them
        // came from the TOML file, so they are UTF-8 and print).
        let (eal, dp) = (table(&cfg.eal), table(&cfg.dataplane));
        Fixed {
            eal,
            dataplane: dp,
            control: cfg.control.clone(),
            metrics: cfg.metrics.clone(),
            log: cfg.log.clone(),
            conntrack: cfg.conntrack.clone(),
            load_balancer: cfg.load_balancer.clone(),
            cores,
        }
    }

    /// `[load_balancer]`, as fixed at start.
    pub fn load_balancer(&self) -> &crate::config::LoadBalancerConfig {
        &self.load_balancer
    }

    /// Validates runtime `sections` (TOML tables with the file's keys, as
    /// [`to_sections`] makes them) together with the fixed sections.
    ///
    /// # Errors
    /// The configuration file's error for the first problem.
    pub fn parse_sections(&self, sections: &Table) -> Result<VswitchConfig, ConfigError> {
        let mut doc = sections.clone();
        doc.insert("eal".into(), Value::Table(self.eal.clone()));
        doc.insert("dataplane".into(), Value::Table(self.dataplane.clone()));
        doc.insert(
            "load_balancer".into(),
            Value::Table(table(&self.load_balancer)),
        );
        let mut cfg = VswitchConfig::from_table(doc, self.cores)?;
        cfg.control = self.control.clone();
        cfg.metrics = self.metrics.clone();
        cfg.log = self.log.clone();
        cfg.conntrack = self.conntrack.clone();
        Ok(cfg)
    }
}

// ---------------------------------------------------------------- proto -> TOML

/// A `Port.params` value: its TOML text form (`true`, `2`, `"x"`), or, when it is
/// not one, the text itself as a string (`/tmp/x.pcap`, `vsw-pod1`).
pub fn param_value(text: &str) -> Value {
    if let Ok(mut t) = format!("v = {text}").parse::<Table>() {
        if t.len() == 1 {
            if let Some(v) = t.remove("v") {
                return v;
            }
        }
    }
    Value::String(text.to_owned())
}

/// The text form of a parameter value that [`param_value`] reads back as the same
/// value: strings bare unless they would read as something else.
pub fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) if param_value(s) == *v => s.clone(),
        other => other.to_string(),
    }
}

const PORT_FIELDS: [&str; 4] = ["name", "profile", "group", "mtu"];

/// A port in the file's flat form: its profile's parameters beside its fields
/// (the one place the API's `params` map and the file's keys differ).
fn port_table(p: &api::Port) -> Result<Table, ConfigError> {
    let mut t = Table::new();
    t.insert("name".into(), Value::String(p.name.clone()));
    if !p.profile.is_empty() {
        t.insert("profile".into(), Value::String(p.profile.clone()));
    }
    if !p.group.is_empty() {
        t.insert("group".into(), Value::String(p.group.clone()));
    }
    if p.mtu != 0 {
        t.insert("mtu".into(), int(p.mtu));
    }
    let mut keys: Vec<_> = p.params.keys().collect();
    keys.sort();
    for k in keys {
        if PORT_FIELDS.contains(&k.as_str()) {
            return Err(ConfigError::Syntax(format!(
                "port {}: params: `{k}` is a field of the port, not a parameter",
                q(&p.name)
            )));
        }
        t.insert(k.clone(), param_value(&p.params[k]));
    }
    Ok(t)
}

/// A resource as a table of the file: its serde form, which is the file's (see
/// [`crate::model`]). The resources hold only strings, numbers, booleans, lists
/// and tables, which TOML represents; an empty table is what the parser would
/// refuse naming the missing keys.
pub(crate) fn table<T: serde::Serialize>(item: &T) -> Table {
    match Value::try_from(item) {
        Ok(Value::Table(t)) => t,
        _ => Table::new(),
    }
}

fn array(tables: impl IntoIterator<Item = Table>) -> Value {
    Value::Array(tables.into_iter().map(Value::Table).collect())
}

/// The runtime sections of `s` as TOML tables with the configuration file's keys
/// (`port`, `patch`, `l2`, `underlay`, `network`, `endpoint`, `remote_endpoint`,
/// `route`; empty lists left out). Nothing is checked but the port parameters'
/// names; [`Fixed::parse_sections`] checks the rest.
///
/// # Errors
/// A port parameter named like a port field (`name`, `profile`, `group`, `mtu`).
pub fn to_sections(s: &api::DesiredState) -> Result<Table, ConfigError> {
    let mut doc = Table::new();
    let mut put = |key: &str, v: Value| {
        if !matches!(&v, Value::Array(a) if a.is_empty()) {
            doc.insert(key.into(), v);
        }
    };
    put(
        "port",
        array(
            s.ports
                .iter()
                .map(port_table)
                .collect::<Result<Vec<_>, _>>()?,
        ),
    );
    put("patch", array(s.patches.iter().map(table)));
    put("l2", array(s.l2.iter().map(table)));
    if let Some(u) = &s.underlay {
        put("underlay", Value::Table(table(u)));
    }
    put("network", array(s.networks.iter().map(table)));
    put("endpoint", array(s.endpoints.iter().map(table)));
    put(
        "remote_endpoint",
        array(s.remote_endpoints.iter().map(table)),
    );
    put("route", array(s.routes.iter().map(table)));
    put("service", array(s.services.iter().map(table)));
    put("policy", array(s.policies.iter().map(table)));
    put(
        "cluster_policy",
        array(s.cluster_policies.iter().map(table)),
    );
    put(
        "policy_endpoint",
        array(s.policy_endpoints.iter().map(table)),
    );
    Ok(doc)
}

// ---------------------------------------------------------------- config -> proto

/// The runtime sections of a parsed configuration as the API's desired state, in
/// canonical text forms (each item by its conversion in [`crate::model`]).
pub fn from_config(cfg: &VswitchConfig) -> api::DesiredState {
    api::DesiredState {
        ports: cfg.ports.iter().map(Into::into).collect(),
        patches: cfg.patches.clone(),
        l2: cfg.l2.iter().map(Into::into).collect(),
        underlay: cfg.underlay.as_ref().map(Into::into),
        networks: cfg.networks.iter().map(Into::into).collect(),
        endpoints: cfg.endpoints.iter().map(Into::into).collect(),
        remote_endpoints: cfg.remote_endpoints.iter().map(Into::into).collect(),
        routes: cfg.routes.iter().map(Into::into).collect(),
        services: cfg
            .services
            .iter()
            .map(crate::config::service::to_message)
            .collect(),
        policies: cfg.policies.network.clone(),
        cluster_policies: cfg.policies.cluster.clone(),
        policy_endpoints: cfg.policies.endpoints.clone(),
    }
}

// ---------------------------------------------------------------- keys and labels

/// A MAC as a key: canonical when it parses, lower-cased text otherwise.
fn mac_key(s: &str) -> String {
    s.parse::<MacAddr>()
        .map_or_else(|_| s.to_ascii_lowercase(), |m| m.to_string())
}

/// A prefix as a key: canonical when it parses, the text otherwise.
fn prefix_key(s: &str) -> String {
    s.parse::<IpNet>()
        .map_or_else(|_| s.to_owned(), |p| p.to_string())
}

/// A MAC as labels show it: canonical when it parses, quoted short otherwise
/// (a label must not echo a 10 KB string).
fn mac_shown(s: &str) -> String {
    s.parse::<MacAddr>()
        .map_or_else(|_| q(s), |m| m.to_string())
}

/// A prefix as labels show it (see [`mac_shown`]).
fn prefix_shown(s: &str) -> String {
    s.parse::<IpNet>().map_or_else(|_| q(s), |p| p.to_string())
}

pub(crate) fn tenant_key(s: &str) -> &str {
    if s.is_empty() {
        "default"
    } else {
        s
    }
}

fn endpoint_label(mac: &str, network: &str) -> String {
    format!("endpoint {} in network {network:?}", mac_shown(mac))
}

fn remote_label(mac: &str, network: &str) -> String {
    format!("remote endpoint {} in network {network:?}", mac_shown(mac))
}

fn route_label(prefix: &str, tenant: &str) -> String {
    format!(
        "route {} in tenant {:?}",
        prefix_shown(prefix),
        tenant_key(tenant)
    )
}

fn l2_label(mac: &str) -> String {
    format!("l2 {}", mac_shown(mac))
}

/// `msg` with the positional item labels of the generated document replaced by
/// labels by key.
fn relabel(msg: &str, s: &api::DesiredState) -> String {
    let mut m = msg.to_owned();
    // Names first: a bad name is reported by position before anything can quote it.
    for (i, p) in s.ports.iter().enumerate() {
        m = m.replace(&format!("port #{i}: "), &format!("port {}: ", q(&p.name)));
    }
    for (i, n) in s.networks.iter().enumerate() {
        m = m.replace(
            &format!("network #{i}: "),
            &format!("network {}: ", q(&n.name)),
        );
    }
    // Remote endpoints first: their label contains an endpoint's.
    for (i, e) in s.remote_endpoints.iter().enumerate() {
        let pos = format!("remote_endpoint #{i} (network {:?})", e.network);
        m = m.replace(&pos, &remote_label(&e.mac, &e.network));
        // The name checks' label: the network is the bad name.
        let pos = format!("remote_endpoint #{i}: ");
        let label = quoted_label("remote endpoint", &e.mac, &e.network);
        m = m.replace(&pos, &format!("{label}: "));
    }
    for (i, e) in s.endpoints.iter().enumerate() {
        let pos = format!("endpoint #{i} (network {:?})", e.network);
        m = m.replace(&pos, &endpoint_label(&e.mac, &e.network));
        let pos = format!("endpoint #{i}: ");
        let label = quoted_label("endpoint", &e.mac, &e.network);
        m = m.replace(&pos, &format!("{label}: "));
    }
    for (i, r) in s.routes.iter().enumerate() {
        let pos = format!("route #{i} ({})", r.prefix);
        m = m.replace(&pos, &route_label(&r.prefix, &r.tenant));
        // How the parser labels a route whose prefix is too long to quote whole.
        let pos = format!("route #{i} ({})", q(&r.prefix).trim_matches('"'));
        m = m.replace(&pos, &route_label(&r.prefix, &r.tenant));
    }
    for (i, e) in s.l2.iter().enumerate() {
        let pos = format!("l2[{i}].");
        m = m.replace(&pos, &format!("{}: ", l2_label(&e.mac)));
    }
    for (i, v) in s.services.iter().enumerate() {
        m = m.replace(
            &format!("service #{i}: "),
            &format!("{}: ", service_label(&v.name)),
        );
    }
    use crate::config::policy::{cluster_label, endpoint_label as pe_label, policy_label};
    for (i, v) in s.policies.iter().enumerate() {
        m = m.replace(
            &format!("policy #{i}: "),
            &format!("{}: ", policy_label(&v.name)),
        );
    }
    for (i, v) in s.cluster_policies.iter().enumerate() {
        m = m.replace(
            &format!("cluster_policy #{i}: "),
            &format!("{}: ", cluster_label(&v.name)),
        );
    }
    for (i, v) in s.policy_endpoints.iter().enumerate() {
        m = m.replace(
            &format!("policy_endpoint #{i}: "),
            &format!("{}: ", pe_label(&v.name)),
        );
    }
    m
}

fn service_label(name: &str) -> String {
    format!("service {}", q(name))
}

/// How errors name op `op`: its kind and key.
pub(crate) fn op_label(op: Option<&OpKind>) -> String {
    match op {
        None => "empty op".into(),
        Some(OpKind::AddPort(p)) => format!("add_port {}", q(&p.name)),
        Some(OpKind::DelPort(n)) => format!("del_port {}", q(n)),
        Some(OpKind::AddPatch(p)) => format!("add_patch {} -> {}", q(&p.from), q(&p.to)),
        Some(OpKind::DelPatch(f)) => format!("del_patch {}", q(f)),
        Some(OpKind::AddL2(e)) => format!("add_l2 {}", q(&e.mac)),
        Some(OpKind::DelL2(m)) => format!("del_l2 {}", q(m)),
        Some(OpKind::SetUnderlay(_)) => "set_underlay".into(),
        Some(OpKind::ClearUnderlay(_)) => "clear_underlay".into(),
        Some(OpKind::AddNetwork(n)) => format!("add_network {}", q(&n.name)),
        Some(OpKind::DelNetwork(n)) => format!("del_network {}", q(n)),
        Some(OpKind::AddEndpoint(e)) => {
            format!("add_endpoint {} in network {}", q(&e.mac), q(&e.network))
        }
        Some(OpKind::DelEndpoint(k)) => {
            format!("del_endpoint {} in network {}", q(&k.mac), q(&k.network))
        }
        Some(OpKind::AddRemoteEndpoint(e)) => {
            format!(
                "add_remote_endpoint {} in network {}",
                q(&e.mac),
                q(&e.network)
            )
        }
        Some(OpKind::DelRemoteEndpoint(k)) => {
            format!(
                "del_remote_endpoint {} in network {}",
                q(&k.mac),
                q(&k.network)
            )
        }
        Some(OpKind::AddRoute(r)) => format!(
            "add_route {} in tenant {}",
            q(&r.prefix),
            q(tenant_key(&r.tenant))
        ),
        Some(OpKind::DelRoute(k)) => format!(
            "del_route {} in tenant {}",
            q(&k.prefix),
            q(tenant_key(&k.tenant))
        ),
        Some(OpKind::AddService(v)) => format!("add_service {}", q(&v.name)),
        Some(OpKind::DelService(n)) => format!("del_service {}", q(n)),
        Some(OpKind::AddBackend(b)) => format!(
            "add_backend {} to service {}",
            q(b.backend.as_ref().map_or("", |b| b.address.as_str())),
            q(&b.service)
        ),
        Some(OpKind::DelBackend(k)) => {
            format!("del_backend {} of service {}", q(&k.address), q(&k.service))
        }
        Some(OpKind::SetBackend(k)) => {
            format!("set_backend {} of service {}", q(&k.address), q(&k.service))
        }
        Some(OpKind::AddPolicy(p)) => format!("add_policy {}", q(&p.name)),
        Some(OpKind::DelPolicy(n)) => format!("del_policy {}", q(n)),
        Some(OpKind::AddClusterPolicy(p)) => format!("add_cluster_policy {}", q(&p.name)),
        Some(OpKind::DelClusterPolicy(n)) => format!("del_cluster_policy {}", q(n)),
        Some(OpKind::AddPolicyEndpoint(e)) => format!("add_policy_endpoint {}", q(&e.name)),
        Some(OpKind::DelPolicyEndpoint(n)) => format!("del_policy_endpoint {}", q(n)),
    }
}

/// The label validation errors give the item an add/set op writes, so that the op's
/// error does not name it twice.
fn own_label(op: Option<&OpKind>) -> Option<String> {
    Some(match op? {
        OpKind::AddPort(p) => format!("port {}", q(&p.name)),
        OpKind::AddL2(e) => l2_label(&e.mac),
        OpKind::SetUnderlay(_) => "underlay".into(),
        OpKind::AddNetwork(n) => format!("network {}", q(&n.name)),
        OpKind::AddEndpoint(e) => endpoint_label(&e.mac, &e.network),
        OpKind::AddRemoteEndpoint(e) => remote_label(&e.mac, &e.network),
        OpKind::AddRoute(r) => route_label(&r.prefix, &r.tenant),
        OpKind::AddService(v) => service_label(&v.name),
        OpKind::AddBackend(b) => service_label(&b.service),
        OpKind::SetBackend(b) => service_label(&b.service),
        OpKind::AddPolicy(p) => crate::config::policy::policy_label(&p.name),
        OpKind::AddClusterPolicy(p) => crate::config::policy::cluster_label(&p.name),
        OpKind::AddPolicyEndpoint(e) => crate::config::policy::endpoint_label(&e.name),
        _ => return None,
    })
}

// ---------------------------------------------------------------- ops

/// The keys of one list of a desired state and where each item sits, so that an
/// op's key check is one probe, not a scan; deletes are collected and the list
/// compacted once at the end of the write.
struct Keyed<K> {
    at: HashMap<K, usize>,
    gone: Vec<bool>,
}

impl<K: std::hash::Hash + Eq> Keyed<K> {
    fn new<T>(list: &[T], key: impl Fn(&T) -> K) -> Self {
        Keyed {
            at: list.iter().enumerate().map(|(i, x)| (key(x), i)).collect(),
            gone: vec![false; list.len()],
        }
    }

    fn add<T: Clone>(
        &mut self,
        list: &mut Vec<T>,
        key: K,
        item: &T,
        what: &str,
    ) -> Result<(), String> {
        if self.at.contains_key(&key) {
            return Err(format!("{what} already exists"));
        }
        self.at.insert(key, list.len());
        self.gone.push(false);
        list.push(item.clone());
        Ok(())
    }

    fn del(&mut self, key: &K, what: &str) -> Result<(), String> {
        let i = self
            .at
            .remove(key)
            .ok_or_else(|| format!("no such {what}"))?;
        self.gone[i] = true;
        Ok(())
    }

    /// Drops the deleted items from `list`, keeping the order of the rest.
    fn compact<T>(&self, list: &mut Vec<T>) {
        if self.gone.iter().any(|g| *g) {
            let mut i = 0;
            list.retain(|_| {
                i += 1;
                !self.gone[i - 1]
            });
        }
    }
}

/// Every list of a desired state, keyed ([`Keyed`]).
struct Index {
    ports: Keyed<String>,
    patches: Keyed<String>,
    l2: Keyed<String>,
    networks: Keyed<String>,
    endpoints: Keyed<(String, String)>,
    remotes: Keyed<(String, String)>,
    routes: Keyed<(String, String)>,
    services: Keyed<String>,
    policies: Keyed<String>,
    cluster_policies: Keyed<String>,
    policy_endpoints: Keyed<String>,
}

fn ep_key(network: &str, mac: &str) -> (String, String) {
    (network.to_owned(), mac_key(mac))
}

fn route_key(tenant: &str, prefix: &str) -> (String, String) {
    (tenant_key(tenant).to_owned(), prefix_key(prefix))
}

impl Index {
    fn new(s: &api::DesiredState) -> Self {
        Index {
            ports: Keyed::new(&s.ports, |x| x.name.clone()),
            patches: Keyed::new(&s.patches, |x| x.from.clone()),
            l2: Keyed::new(&s.l2, |x| mac_key(&x.mac)),
            networks: Keyed::new(&s.networks, |x| x.name.clone()),
            endpoints: Keyed::new(&s.endpoints, |x| ep_key(&x.network, &x.mac)),
            remotes: Keyed::new(&s.remote_endpoints, |x| ep_key(&x.network, &x.mac)),
            routes: Keyed::new(&s.routes, |x| route_key(&x.tenant, &x.prefix)),
            services: Keyed::new(&s.services, |x| x.name.clone()),
            policies: Keyed::new(&s.policies, |x| x.name.clone()),
            cluster_policies: Keyed::new(&s.cluster_policies, |x| x.name.clone()),
            policy_endpoints: Keyed::new(&s.policy_endpoints, |x| x.name.clone()),
        }
    }

    /// Applies one op to `s`, checking only its key: adds refuse an existing key,
    /// deletes a missing one.
    fn apply(&mut self, s: &mut api::DesiredState, op: Option<&OpKind>) -> Result<(), String> {
        #[cfg(test)]
        tests::VISITS.with(|v| v.set(v.get() + 1));
        match op {
            None => Err("the op is empty".into()),
            Some(OpKind::AddPort(p)) => self.ports.add(&mut s.ports, p.name.clone(), p, "port"),
            Some(OpKind::DelPort(n)) => self.ports.del(n, "port"),
            Some(OpKind::AddPatch(p)) => {
                self.patches.add(&mut s.patches, p.from.clone(), p, "patch")
            }
            Some(OpKind::DelPatch(f)) => self.patches.del(f, "patch"),
            Some(OpKind::AddL2(e)) => self.l2.add(&mut s.l2, mac_key(&e.mac), e, "l2 entry"),
            Some(OpKind::DelL2(m)) => self.l2.del(&mac_key(m), "l2 entry"),
            Some(OpKind::SetUnderlay(u)) => {
                s.underlay = Some(u.clone());
                Ok(())
            }
            Some(OpKind::ClearUnderlay(yes)) => {
                if !*yes {
                    return Err("clear_underlay must be true".into());
                }
                s.underlay
                    .take()
                    .map(|_| ())
                    .ok_or_else(|| "no underlay is set".to_owned())
            }
            Some(OpKind::AddNetwork(n)) => {
                self.networks
                    .add(&mut s.networks, n.name.clone(), n, "network")
            }
            Some(OpKind::DelNetwork(n)) => self.networks.del(n, "network"),
            Some(OpKind::AddEndpoint(e)) => {
                self.endpoints
                    .add(&mut s.endpoints, ep_key(&e.network, &e.mac), e, "endpoint")
            }
            Some(OpKind::DelEndpoint(k)) => {
                self.endpoints.del(&ep_key(&k.network, &k.mac), "endpoint")
            }
            Some(OpKind::AddRemoteEndpoint(e)) => self.remotes.add(
                &mut s.remote_endpoints,
                ep_key(&e.network, &e.mac),
                e,
                "remote endpoint",
            ),
            Some(OpKind::DelRemoteEndpoint(k)) => self
                .remotes
                .del(&ep_key(&k.network, &k.mac), "remote endpoint"),
            Some(OpKind::AddRoute(r)) => {
                self.routes
                    .add(&mut s.routes, route_key(&r.tenant, &r.prefix), r, "route")
            }
            Some(OpKind::DelRoute(k)) => self.routes.del(&route_key(&k.tenant, &k.prefix), "route"),
            Some(OpKind::AddService(v)) => {
                self.services
                    .add(&mut s.services, v.name.clone(), v, "service")
            }
            Some(OpKind::DelService(n)) => self.services.del(n, "service"),
            Some(op @ (OpKind::AddBackend(_) | OpKind::DelBackend(_) | OpKind::SetBackend(_))) => {
                let name = backend_op_service(op);
                let i = *self
                    .services
                    .at
                    .get(name)
                    .ok_or_else(|| format!("no such service {}", q(name)))?;
                backend_op(&mut s.services[i], op)
            }
            Some(OpKind::AddPolicy(p)) => {
                self.policies
                    .add(&mut s.policies, p.name.clone(), p, "policy")
            }
            Some(OpKind::DelPolicy(n)) => self.policies.del(n, "policy"),
            Some(OpKind::AddClusterPolicy(p)) => self.cluster_policies.add(
                &mut s.cluster_policies,
                p.name.clone(),
                p,
                "cluster policy",
            ),
            Some(OpKind::DelClusterPolicy(n)) => self.cluster_policies.del(n, "cluster policy"),
            Some(OpKind::AddPolicyEndpoint(e)) => self.policy_endpoints.add(
                &mut s.policy_endpoints,
                e.name.clone(),
                e,
                "policy endpoint",
            ),
            Some(OpKind::DelPolicyEndpoint(n)) => self.policy_endpoints.del(n, "policy endpoint"),
        }
    }

    fn compact(&self, s: &mut api::DesiredState) {
        self.ports.compact(&mut s.ports);
        self.patches.compact(&mut s.patches);
        self.l2.compact(&mut s.l2);
        self.networks.compact(&mut s.networks);
        self.endpoints.compact(&mut s.endpoints);
        self.remotes.compact(&mut s.remote_endpoints);
        self.routes.compact(&mut s.routes);
        self.services.compact(&mut s.services);
        self.policies.compact(&mut s.policies);
        self.cluster_policies.compact(&mut s.cluster_policies);
        self.policy_endpoints.compact(&mut s.policy_endpoints);
    }
}

/// The service a backend op names.
fn backend_op_service(op: &OpKind) -> &str {
    match op {
        OpKind::AddBackend(b) => &b.service,
        OpKind::DelBackend(k) => &k.service,
        OpKind::SetBackend(k) => &k.service,
        _ => "",
    }
}

/// An address as a key: canonical when it parses, the text otherwise.
fn address_key(s: &str) -> String {
    s.parse::<std::net::IpAddr>()
        .map_or_else(|_| s.to_owned(), |a| a.to_string())
}

/// Applies backend op `op` to service `v`, checking only the backend's key:
/// an add refuses an address the service has, a delete or set one it has not.
/// The one place backend ops change a service (the whole-state path and the
/// delta path both call it).
pub(crate) fn backend_op(v: &mut api::Service, op: &OpKind) -> Result<(), String> {
    let find = |v: &api::Service, a: &str| {
        let key = address_key(a);
        v.backends
            .iter()
            .position(|b| address_key(&b.address) == key)
    };
    match op {
        OpKind::AddBackend(b) => {
            let Some(backend) = &b.backend else {
                return Err("backend: missing".into());
            };
            if find(v, &backend.address).is_some() {
                return Err(format!("backend {} already exists", q(&backend.address)));
            }
            v.backends.push(backend.clone());
        }
        OpKind::DelBackend(k) => {
            let i =
                find(v, &k.address).ok_or_else(|| format!("no such backend {}", q(&k.address)))?;
            v.backends.remove(i);
        }
        OpKind::SetBackend(k) => {
            let i =
                find(v, &k.address).ok_or_else(|| format!("no such backend {}", q(&k.address)))?;
            if k.weight.is_none() && k.state.is_empty() {
                return Err("give a weight, a state or both".into());
            }
            let b = &mut v.backends[i];
            if k.weight.is_some() {
                b.weight = k.weight;
            }
            if !k.state.is_empty() {
                b.state = k.state.clone();
            }
        }
        _ => {}
    }
    Ok(())
}

/// How validation errors name the item op `op` writes or deletes.
fn item_label(op: Option<&OpKind>) -> Option<String> {
    Some(match op? {
        OpKind::DelPort(n) => format!("port {n:?}"),
        OpKind::DelL2(m) => l2_label(m),
        OpKind::DelNetwork(n) => format!("network {n:?}"),
        OpKind::DelEndpoint(k) => endpoint_label(&k.mac, &k.network),
        OpKind::DelRemoteEndpoint(k) => remote_label(&k.mac, &k.network),
        OpKind::DelRoute(k) => route_label(&k.prefix, &k.tenant),
        OpKind::ClearUnderlay(_) => "underlay".into(),
        OpKind::DelService(n) => service_label(n),
        OpKind::DelBackend(k) => service_label(&k.service),
        OpKind::DelPolicy(n) => crate::config::policy::policy_label(n),
        OpKind::DelClusterPolicy(n) => crate::config::policy::cluster_label(n),
        OpKind::DelPolicyEndpoint(n) => crate::config::policy::endpoint_label(n),
        other => return own_label(Some(other)),
    })
}

/// How the name checks' errors name an endpoint (`section` "endpoint" or
/// "remote endpoint") once relabelled: its network may be the bad name, so it is
/// quoted short.
fn quoted_label(section: &str, mac: &str, network: &str) -> String {
    format!("{section} {} in network {}", mac_shown(mac), q(network))
}

/// The last op adding an item that `reason` starts with, labelled as
/// [`relabel`] labels the errors of the name checks (whose bad name may be too
/// long to quote whole), or, for a patch (named by a `from` that may itself be
/// the bad name), the last patch added whose `from` or `to` the error quotes.
fn quoted_item(ops: &[api::Op], reason: &str) -> Option<usize> {
    let starts = |label: String| reason.starts_with(&format!("{label}: "));
    ops.iter().rposition(|o| match o.op.as_ref() {
        Some(OpKind::AddEndpoint(e)) => starts(quoted_label("endpoint", &e.mac, &e.network)),
        Some(OpKind::AddRemoteEndpoint(e)) => {
            starts(quoted_label("remote endpoint", &e.mac, &e.network))
        }
        Some(OpKind::AddPatch(p)) => {
            reason.starts_with("patch")
                && (reason.contains(&q(&p.from)) || reason.contains(&q(&p.to)))
        }
        _ => false,
    })
}

/// The op to blame for `reason`, the validation error of the state a whole
/// write leads to, found in one pass over the ops: the last op whose item
/// the error starts with, else the op adding the item a name check's error
/// starts with ([`quoted_item`]), else the last whose item it names anywhere (`VNI
/// 100 is used by network "a" and network "b"`), else the first delete (a
/// reference left dangling), else the last op.
fn blame(ops: &[api::Op], reason: &str) -> usize {
    let (mut first, mut anywhere, mut first_del) = (None, None, None);
    for (i, op) in ops.iter().enumerate() {
        #[cfg(test)]
        tests::VISITS.with(|v| v.set(v.get() + 1));
        let kind = op.op.as_ref();
        if first_del.is_none() && item_label(kind).is_some() && own_label(kind).is_none() {
            first_del = Some(i);
        }
        if let Some(label) = item_label(kind) {
            if reason.starts_with(&label) {
                first = Some(i);
            } else if reason.contains(&label) {
                anywhere = Some(i);
            }
        }
    }
    first
        .or_else(|| quoted_item(ops, reason))
        .or(anywhere)
        .or(first_del)
        .unwrap_or(ops.len().saturating_sub(1))
}

/// What still names port `port` in `s`, the state a write leads to. A delete
/// checks this itself because the whole-state validation would blame the user
/// instead ("endpoint …: port \"spare\" is not a [[port]]"), which reads as if
/// the delete were the typo. It is checked on the state after the whole write,
/// so the dependents may go in the same write, in any order.
fn port_users(s: &api::DesiredState, port: &str) -> Vec<String> {
    let mut users = Vec::new();
    if s.underlay.as_ref().is_some_and(|u| u.uplink == port) {
        users.push("the underlay as its uplink".to_owned());
    }
    let eps = s.endpoints.iter().filter(|e| e.port == port);
    users.extend(eps.map(|e| endpoint_label(&e.mac, &e.network)));
    let l2 = s.l2.iter().filter(|e| e.port == port);
    users.extend(l2.map(|e| format!("l2 entry {}", mac_shown(&e.mac))));
    let patches = s.patches.iter().filter(|p| p.from == port || p.to == port);
    // A patch added in the same write may name something outside the grammar.
    let name = |n: &str| {
        if crate::names::check(n).is_ok() {
            format!("{n:?}")
        } else {
            q(n)
        }
    };
    users.extend(patches.map(|p| format!("patch {} -> {}", name(&p.from), name(&p.to))));
    users
}

/// What still names network `net` in `s` (see [`port_users`]).
fn network_users(s: &api::DesiredState, net: &str) -> Vec<String> {
    let count = |n: usize, one: &str, many: &str| match n {
        0 => None,
        1 => Some(format!("1 {one}")),
        n => Some(format!("{n} {many}")),
    };
    let eps = s.endpoints.iter().filter(|e| e.network == net).count();
    let remotes = s.remote_endpoints.iter().filter(|e| e.network == net);
    let routes = s.routes.iter().filter(|r| match &r.target {
        Some(Target::NextHop(h)) => h.network == net,
        _ => false,
    });
    [
        count(eps, "endpoint", "endpoints"),
        count(remotes.count(), "remote endpoint", "remote endpoints"),
        count(routes.count(), "route via it", "routes via it"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Refuses a delete of port `what` while `users` name it.
fn still_used(what: &str, users: Vec<String>) -> Result<(), String> {
    match users.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("{what} is used by {one}: delete that first")),
        [first, rest @ ..] => Err(format!(
            "{what} is used by {first} and {} more: delete them first",
            rest.len()
        )),
    }
}

/// A delete of a port or network that the state after the write still uses:
/// the op and the reason naming the user.
fn dangling_delete(
    ops: &[api::Op],
    index: &Index,
    next: &api::DesiredState,
) -> Option<(usize, String)> {
    ops.iter()
        .enumerate()
        .find_map(|(i, op)| match op.op.as_ref()? {
            OpKind::DelPort(n) if !index.ports.at.contains_key(n) => {
                still_used(&format!("port {}", q(n)), port_users(next, n))
                    .err()
                    .map(|e| (i, e))
            }
            OpKind::DelNetwork(n) if !index.networks.at.contains_key(n) => {
                let users = network_users(next, n);
                let them = if users.len() == 1 && users[0].starts_with("1 ") {
                    "it"
                } else {
                    "them"
                };
                match users.split_last() {
                    None => None,
                    Some((last, [])) => {
                        Some(format!("network {} has {last}: delete {them} first", q(n)))
                    }
                    Some((last, rest)) => Some(format!(
                        "network {} has {} and {last}: delete them first",
                        q(n),
                        rest.join(", ")
                    )),
                }
                .map(|e| (i, e))
            }
            _ => None,
        })
}

/// The first op that routes through a network the write leaves absent: found
/// from the networks' names alone (the write's net effect on them), before
/// the whole state is looked at.
fn unknown_network(current: &api::DesiredState, ops: &[api::Op]) -> Option<(usize, String)> {
    let mut nets: std::collections::HashSet<&str> =
        current.networks.iter().map(|n| n.name.as_str()).collect();
    for op in ops {
        match &op.op {
            Some(OpKind::AddNetwork(n)) => {
                nets.insert(&n.name);
            }
            Some(OpKind::DelNetwork(n)) => {
                nets.remove(n.as_str());
            }
            _ => {}
        }
    }
    ops.iter().enumerate().find_map(|(i, op)| match &op.op {
        Some(OpKind::AddRoute(api::Route {
            target: Some(Target::NextHop(h)),
            ..
        })) if !nets.contains(h.network.as_str()) => {
            Some((i, format!("network {} does not exist", q(&h.network))))
        }
        _ => None,
    })
}

/// The checks of op `op` that need nothing but the op: the name grammar and the
/// text of every address, MAC and prefix it carries, with the words the
/// whole-state validation uses for them (its item label left out, as for an
/// op's own item).
pub(crate) fn check_fields(
    op: Option<&OpKind>,
    lb: &crate::config::LoadBalancerConfig,
) -> Result<(), String> {
    use crate::config::{
        parse_mac, type_endpoint, type_network, type_remote_endpoint, type_route, type_underlay,
        ConfigError,
    };
    let Some(op) = op else {
        return Ok(());
    };
    let own = own_label(Some(op)).unwrap_or_default();
    let strip = |e: ConfigError| {
        let e = e.to_string();
        match e.strip_prefix(&format!("{own}: ")) {
            Some(rest) => rest.to_owned(),
            None => e,
        }
    };
    let name = |key: &str, v: &str| names::check(v).map_err(|r| format!("{key}: {r}"));
    let tenant = |v: &str| {
        if v.is_empty() {
            Ok(())
        } else {
            name("tenant", v)
        }
    };
    // The names first (a bad one is quoted short before anything else can quote
    // it), then the item's own checks: the functions the file's parser types
    // its items with.
    match op {
        OpKind::AddPort(p) => {
            names::check_with(&p.name, names::MAX_PORT_NAME).map_err(|r| format!("name: {r}"))?;
            if !p.group.is_empty() {
                name("group", &p.group)?;
            }
        }
        OpKind::AddPatch(p) => {
            name("from", &p.from)?;
            name("to", &p.to)?;
        }
        OpKind::AddL2(e) => {
            parse_mac(&own, "mac", &e.mac).map_err(strip)?;
            name("port", &e.port)?;
        }
        OpKind::SetUnderlay(u) => {
            name("uplink", &u.uplink)?;
            type_underlay(&own, u).map_err(strip)?;
        }
        OpKind::AddNetwork(n) => {
            name("name", &n.name)?;
            tenant(&n.tenant)?;
            type_network(&own, n).map_err(strip)?;
        }
        OpKind::AddEndpoint(e) => {
            name("network", &e.network)?;
            names::check_with(&e.port, names::MAX_PORT_NAME).map_err(|r| format!("port: {r}"))?;
            type_endpoint(&own, e).map_err(strip)?;
        }
        OpKind::AddRemoteEndpoint(e) => {
            name("network", &e.network)?;
            type_remote_endpoint(&own, e).map_err(strip)?;
        }
        OpKind::AddRoute(r) => {
            tenant(&r.tenant)?;
            if let Some(Target::NextHop(h)) = &r.target {
                name("next_hop.network", &h.network)?;
            }
            type_route(&own, r).map_err(strip)?;
        }
        OpKind::AddService(v) => {
            name("name", &v.name)?;
            name("network", &v.network)?;
            crate::config::service::service(&own, v, lb).map_err(strip)?;
        }
        OpKind::DelService(n) => name("name", n)?,
        OpKind::AddPolicy(p) => {
            crate::config::policy::check_name(&p.name).map_err(|r| format!("name: {r}"))?;
            crate::config::policy::network_policy(&own, p).map_err(strip)?;
        }
        OpKind::AddClusterPolicy(p) => {
            crate::config::policy::check_name(&p.name).map_err(|r| format!("name: {r}"))?;
            crate::config::policy::cluster_policy(&own, p).map_err(strip)?;
        }
        OpKind::AddPolicyEndpoint(e) => {
            crate::config::policy::check_name(&e.name).map_err(|r| format!("name: {r}"))?;
            crate::config::policy::policy_endpoint(&own, e).map_err(strip)?;
        }
        OpKind::DelPolicy(n) | OpKind::DelClusterPolicy(n) | OpKind::DelPolicyEndpoint(n) => {
            crate::config::policy::check_name(n).map_err(|r| format!("name: {r}"))?;
        }
        OpKind::AddBackend(b) => {
            name("service", &b.service)?;
            let Some(backend) = &b.backend else {
                return Err("backend: missing".into());
            };
            crate::config::service::backend(&own, "backend", backend, None).map_err(strip)?;
        }
        OpKind::DelBackend(k) => {
            name("service", &k.service)?;
            crate::config::parse_ip(&own, "address", &k.address).map_err(strip)?;
        }
        OpKind::SetBackend(k) => {
            name("service", &k.service)?;
            let b = api::Backend {
                address: k.address.clone(),
                weight: k.weight,
                state: k.state.clone(),
            };
            crate::config::service::backend(&own, "backend", &b, None).map_err(strip)?;
        }
        _ => {}
    }
    Ok(())
}

/// A validated desired state: the API's canonical form and the parsed
/// configuration (fixed sections included) the dataplane runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The canonical desired state.
    pub state: api::DesiredState,
    /// The whole configuration it makes with the fixed sections.
    pub config: VswitchConfig,
}

impl Fixed {
    /// Validates `s` as a whole.
    ///
    /// # Errors
    /// The configuration file's error for the first problem, items relabelled by key.
    pub fn validate(&self, s: &api::DesiredState) -> Result<Validated, String> {
        let config = to_sections(s)
            .and_then(|t| self.parse_sections(&t))
            .map_err(|e| relabel(&e.to_string(), s))?;
        Ok(Validated {
            state: from_config(&config),
            config,
        })
    }

    /// The state `Replace` asks for, validated.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] naming the item and field.
    pub fn replace(&self, s: &api::DesiredState) -> Result<Validated, ApiError> {
        self.validate(s).map_err(ApiError::Invalid)
    }

    /// Applies `ops` to a copy of `current` as one transaction and validates the
    /// result as a whole (so an op may depend on a later one of the same write).
    ///
    /// # Errors
    /// [`ApiError::Op`] for the first op whose key conflicts, or, when the result is
    /// invalid, for the op whose item the validation error names ([`blame`]: one
    /// pass over the ops, whatever their number); [`ApiError::NoOps`] for an empty
    /// write, [`ApiError::TooManyOps`] past [`MAX_OPS`].
    pub fn apply_ops(
        &self,
        current: &api::DesiredState,
        ops: &[api::Op],
    ) -> Result<Validated, ApiError> {
        if ops.is_empty() {
            return Err(ApiError::NoOps);
        }
        if ops.len() > MAX_OPS {
            return Err(ApiError::TooManyOps { count: ops.len() });
        }
        self.apply_ops_unbounded(current, ops)
    }

    /// [`apply_ops`](Self::apply_ops) without the bound on the number of ops
    /// (a start replays a journal of many writes as one).
    pub(crate) fn apply_ops_unbounded(
        &self,
        current: &api::DesiredState,
        ops: &[api::Op],
    ) -> Result<Validated, ApiError> {
        if ops.is_empty() {
            return Err(ApiError::NoOps);
        }
        let op_err = |index: usize, reason: String| ApiError::Op {
            index,
            op: op_label(ops[index].op.as_ref()),
            reason,
        };
        // Each op's own fields first: a bad name, address, MAC or prefix is
        // refused having looked at the write alone, not at the whole state.
        for (i, op) in ops.iter().enumerate() {
            #[cfg(test)]
            tests::VISITS.with(|v| v.set(v.get() + 1));
            check_fields(op.op.as_ref(), &self.load_balancer).map_err(|r| op_err(i, r))?;
        }
        if let Some((i, reason)) = unknown_network(current, ops) {
            return Err(op_err(i, reason));
        }
        let mut next = current.clone();
        let mut index = Index::new(&next);
        for (i, op) in ops.iter().enumerate() {
            index
                .apply(&mut next, op.op.as_ref())
                .map_err(|r| op_err(i, r))?;
        }
        index.compact(&mut next);
        if let Some((i, reason)) = dangling_delete(ops, &index, &next) {
            return Err(op_err(i, reason));
        }
        let reason = match self.validate(&next) {
            Ok(v) => return Ok(v),
            Err(reason) => reason,
        };
        let blamed = blame(ops, &reason);
        let reason = match own_label(ops[blamed].op.as_ref()) {
            Some(own) => match reason.strip_prefix(&format!("{own}: ")) {
                Some(rest) => rest.to_owned(),
                None => reason,
            },
            None => reason,
        };
        Err(op_err(blamed, reason))
    }
}

/// The desired state with its generation, as the service holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The generation it was published as.
    pub generation: u64,
    /// The canonical desired state.
    pub state: api::DesiredState,
    /// The whole configuration the dataplane runs.
    pub config: VswitchConfig,
    /// Writes in the state file's journal (replayed at start).
    pub journal: usize,
}

/// Why the desired state could not be restored at start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The state file cannot be read or is not one we understand.
    #[error(transparent)]
    File(#[from] persist::PersistError),
    /// The state file holds a state the configuration rules refuse.
    #[error("state file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The validation error.
        reason: String,
    },
}

impl Desired {
    /// The desired state at start: the state file's when it exists (validated
    /// against the fixed sections of `file_cfg`), otherwise the runtime sections of
    /// the configuration file `file_cfg` as generation 1.
    ///
    /// # Errors
    /// A state file that is unreadable, corrupt, of a newer format, or invalid. It
    /// is left untouched.
    pub fn boot(
        file_cfg: &VswitchConfig,
        fixed: &Fixed,
        state_file: Option<&Path>,
    ) -> Result<Desired, BootError> {
        let saved = match state_file {
            Some(p) => persist::load(p)?.map(|s| (p, s)),
            None => None,
        };
        match saved {
            None => Ok(Desired {
                generation: 1,
                state: from_config(file_cfg),
                config: file_cfg.clone(),
                journal: 0,
            }),
            Some((path, saved)) => {
                let config =
                    fixed
                        .parse_sections(&saved.sections)
                        .map_err(|e| BootError::Invalid {
                            path: path.to_owned(),
                            reason: e.to_string(),
                        })?;
                let desired = Desired {
                    generation: saved.generation,
                    state: from_config(&config),
                    config,
                    journal: 0,
                };
                desired.replay(fixed, path)
            }
        }
    }
}

impl Desired {
    /// This state with the writes of `path`'s journal that came after it: each
    /// line must carry the next generation. They are validated as one write.
    fn replay(self, fixed: &Fixed, path: &Path) -> Result<Desired, BootError> {
        let entries = persist::load_journal(path)?;
        let invalid = |reason: String| BootError::Invalid {
            path: persist::journal_path(path),
            reason,
        };
        let mut generation = self.generation;
        let mut ops = Vec::new();
        let mut lines = 0;
        // Lines at or below the state file's generation were folded into it by a
        // write that stopped before it could remove the journal.
        for e in entries.iter().filter(|e| e.generation > self.generation) {
            if Some(e.generation) != generation.checked_add(1) {
                return Err(invalid(format!(
                    "generation {} follows {generation}: the journal has a gap",
                    e.generation
                )));
            }
            generation = e.generation;
            ops.extend(e.ops.iter().map(crate::delta::op_of));
            lines += 1;
        }
        if ops.is_empty() {
            return Ok(self);
        }
        let v = fixed
            .apply_ops_unbounded(&self.state, &ops)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Desired {
            generation,
            state: v.state,
            config: v.config,
            journal: lines,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod service_tests;

#[cfg(test)]
mod policy_tests;
