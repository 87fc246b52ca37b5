//! The declarative document of `vswitchctl apply` / `get`: the API's resource
//! messages under the `DesiredState`'s keys, in their serde form (the
//! configuration file's, defined once in `control::model`), and the diff between
//! two documents.
//!
//! ```yaml
//! ports:
//!   - {name: pod1, profile: af_packet, params: {iface: vsw-pod1}}
//! patches: [{from: replay, to: sink}]
//! l2: [{mac: "02:00:00:00:01:01", port: pod1}]
//! underlay: {uplink: uplink, local_vtep_ip: 192.0.2.1, local_mac: "02:00:00:00:ff:01",
//!            on_link: 192.0.2.0/24, gateway: 192.0.2.254, neighbors: [{ip: .., mac: ..}]}
//! networks:
//!   - {name: blue, vni: 100, encap: vxlan, tenant: t1, subnets: [10.1.0.0/24],
//!      gateway_ips: [10.1.0.1], gateway_mac: "02:00:00:00:aa:01", vteps: [192.0.2.2]}
//! endpoints: [{network: blue, mac: "02:00:00:00:03:01", ips: [10.1.0.2], port: pod3}]
//! remote_endpoints: [{network: blue, mac: .., ips: [..], vtep: 192.0.2.2}]
//! routes:
//!   - {tenant: t1, prefix: 0.0.0.0/0, next_hop: {network: blue, ip: 10.1.0.254}}
//!   - {tenant: t1, prefix: 10.99.0.0/16, blackhole: true}
//! services:
//!   - {name: web, network: blue, cluster_ip: 10.96.0.10,
//!      ports: [{name: http, protocol: TCP, port: 80, target_port: 8080}],
//!      backends: [{address: 10.1.0.2, weight: 2}, {address: 10.1.0.3}]}
//! policies:
//!   - {name: x/deny-b, subject: [10.1.0.2], policy_types: [Ingress],
//!      ingress: [{peers: [{ip_block: {cidr: 10.0.0.0/8, except: [10.2.0.0/16]}}],
//!                 ports: [{protocol: TCP, port: 80, end_port: 81}]}]}
//! cluster_policies:
//!   - {name: deny-all, tier: Baseline, priority: 10, subject: [10.1.0.2],
//!      ingress: [{action: Deny}]}
//! policy_endpoints: [{name: x/a, addresses: [10.1.0.2], named_ports: [{name: http, port: 80}]}]
//! ```
//!
//! The keys a resource needs are the file's (a network's `name`, `vni` and
//! `gateway_mac`, say); the others may be left out (proto3 defaults: empty, 0,
//! false). Unknown keys are refused.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use control::api;
use serde::{Deserialize, Serialize};

/// The whole desired state: the API's resource messages, whose serde form is the
/// configuration file's (one schema, see `control::model`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Document {
    /// The generation of the state this document was exported from (`get` writes
    /// it: a `generation` key in JSON, a `# … generation N` header comment in
    /// YAML). Not part of the state: `apply` makes its write conditional on it, so
    /// a file exported before someone else's write cannot silently undo that
    /// write. The diff and the conversion to the API ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    pub ports: Vec<api::Port>,
    pub patches: Vec<api::Patch>,
    pub l2: Vec<api::L2Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay: Option<api::Underlay>,
    pub networks: Vec<api::Network>,
    pub endpoints: Vec<api::Endpoint>,
    pub remote_endpoints: Vec<api::RemoteEndpoint>,
    pub routes: Vec<api::Route>,
    pub services: Vec<api::Service>,
    pub policies: Vec<api::NetworkPolicy>,
    pub cluster_policies: Vec<api::ClusterPolicy>,
    pub policy_endpoints: Vec<api::PolicyEndpoint>,
}

// ------------------------------------------------------------ parse / print

/// The document's text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` is JSON; anything else (`.yaml`, `.yml`, stdin) is YAML.
    pub fn from_path(path: &str) -> Format {
        if path.to_ascii_lowercase().ends_with(".json") {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// Parses a document. An empty (or whitespace/comment-only) YAML text is the empty
/// state. [`Document::generation`] comes from a `generation` key (either format)
/// or, in YAML, from a header comment `# … generation N` as [`print`] writes it.
pub fn parse(text: &str, format: Format) -> Result<Document, String> {
    let mut doc: Document = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| e.to_string())?,
        Format::Yaml => {
            let meaningful = text
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            if meaningful {
                serde_yaml::from_str(text).map_err(|e| e.to_string())?
            } else {
                Document::default()
            }
        }
    };
    if format == Format::Yaml {
        match (doc.generation, header_generation(text)?) {
            (Some(key), Some(comment)) if key != comment => {
                return Err(format!(
                    "the header comment says generation {comment}, the `generation` key {key}"
                ))
            }
            (None, comment) => doc.generation = comment,
            _ => {}
        }
    }
    Ok(doc)
}

/// The generation of a YAML header: the comment lines before the first line of
/// content, one of which reads `… generation N` (`# vswitchd desired state,
/// generation 7`). Comments further down are the operator's and are not read.
///
/// # Errors
/// Two header lines that name different generations.
pub fn header_generation(text: &str) -> Result<Option<u64>, String> {
    let mut found: Option<u64> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line == "---" {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let words: Vec<&str> = comment
            .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
            .filter(|w| !w.is_empty())
            .collect();
        let named = words
            .windows(2)
            .filter(|w| w[0].eq_ignore_ascii_case("generation"))
            .find_map(|w| w[1].parse::<u64>().ok());
        match (found, named) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "the header comments name two generations, {a} and {b}"
                ))
            }
            (None, Some(b)) => found = Some(b),
            _ => {}
        }
    }
    Ok(found)
}

/// Prints a document (JSON pretty-printed, both with a final newline). Its
/// generation, when set, is a `generation` key in JSON and a header comment in
/// YAML (where a comment keeps the state's keys the only keys).
pub fn print(doc: &Document, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(doc).expect("a document serialises");
            s.push('\n');
            s
        }
        Format::Yaml => {
            let body = Document {
                generation: None,
                ..doc.clone()
            };
            let body = serde_yaml::to_string(&body).expect("a document serialises");
            match doc.generation {
                Some(g) => format!("# vswitchd desired state, generation {g}\n{body}"),
                None => body,
            }
        }
    }
}

// ------------------------------------------------------------ proto <-> doc

impl From<api::DesiredState> for Document {
    fn from(s: api::DesiredState) -> Self {
        let mut doc = Document {
            generation: None,
            ports: s.ports,
            patches: s.patches,
            l2: s.l2,
            underlay: s.underlay,
            networks: s.networks,
            endpoints: s.endpoints,
            remote_endpoints: s.remote_endpoints,
            routes: s.routes,
            services: s.services,
            policies: s.policies,
            cluster_policies: s.cluster_policies,
            policy_endpoints: s.policy_endpoints,
        };
        // Deterministic export whatever the server's order (maps are unordered).
        doc.ports.sort_by(|a, b| a.name.cmp(&b.name));
        doc
    }
}
impl From<Document> for api::DesiredState {
    fn from(d: Document) -> Self {
        api::DesiredState {
            ports: d.ports,
            patches: d.patches,
            l2: d.l2,
            underlay: d.underlay,
            networks: d.networks,
            endpoints: d.endpoints,
            remote_endpoints: d.remote_endpoints,
            routes: d.routes,
            services: d.services,
            policies: d.policies,
            cluster_policies: d.cluster_policies,
            policy_endpoints: d.policy_endpoints,
        }
    }
}

// ------------------------------------------------------------ diff

/// What changed for one kind of resource, by key (e.g. `port pod1`,
/// `blue 02:00:00:00:03:01` for an endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindDiff {
    pub kind: &'static str,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl KindDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The differences between the current and the desired document, per kind, in the
/// document's order of kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub kinds: Vec<KindDiff>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.kinds.iter().all(KindDiff::is_empty)
    }

    /// `ports: 1 added, 0 removed, 1 changed` then one `  + key` / `  - key` /
    /// `  ~ key` line per item, for each kind that changed; `no changes` otherwise.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no changes\n".to_string();
        }
        let mut s = String::new();
        for k in self.kinds.iter().filter(|k| !k.is_empty()) {
            let _ = writeln!(
                s,
                "{}: {} added, {} removed, {} changed",
                k.kind,
                k.added.len(),
                k.removed.len(),
                k.changed.len()
            );
            for (sign, items) in [("+", &k.added), ("-", &k.removed), ("~", &k.changed)] {
                for i in items {
                    let _ = writeln!(s, "  {sign} {i}");
                }
            }
        }
        s
    }
}

fn or_default<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() {
        default
    } else {
        s
    }
}

fn mac_key(mac: &str) -> String {
    mac.to_ascii_lowercase().replace('-', ":")
}

/// Server-side defaults made explicit, so that `tenant: ""` and `tenant: default`
/// (and MACs in either case) compare equal.
fn normalize(doc: &Document) -> Document {
    let mut d = doc.clone();
    for p in &mut d.ports {
        p.group = or_default(&p.group, "default").to_string();
    }
    for e in &mut d.l2 {
        e.mac = mac_key(&e.mac);
    }
    if let Some(u) = &mut d.underlay {
        u.local_mac = mac_key(&u.local_mac);
        if u.mtu == 0 {
            u.mtu = 1500;
        }
        for n in &mut u.neighbors {
            n.mac = mac_key(&n.mac);
        }
    }
    for n in &mut d.networks {
        n.encap = or_default(&n.encap, "vxlan").to_ascii_lowercase();
        n.tenant = or_default(&n.tenant, "default").to_string();
        n.gateway_mac = mac_key(&n.gateway_mac);
    }
    for e in &mut d.endpoints {
        e.mac = mac_key(&e.mac);
    }
    for e in &mut d.remote_endpoints {
        e.mac = mac_key(&e.mac);
    }
    for r in &mut d.routes {
        r.tenant = or_default(&r.tenant, "default").to_string();
    }
    for v in &mut d.services {
        v.session_affinity = or_default(&v.session_affinity, "None").to_string();
        if v.table_size == 0 {
            v.table_size = 65_537;
        }
        if v.session_affinity == "ClientIP" && v.affinity_timeout_s == 0 {
            v.affinity_timeout_s = 10_800;
        }
        for p in &mut v.ports {
            p.protocol = or_default(&p.protocol, "TCP").to_ascii_uppercase();
            if p.target_port == 0 {
                p.target_port = p.port;
            }
        }
        for b in &mut v.backends {
            b.weight = Some(b.weight.unwrap_or(1));
            b.state = or_default(&b.state, "active").to_string();
        }
    }
    // Policies as the server keeps them: protocols, actions, tiers and
    // directions in upstream's spelling, `policy_types` filled in.
    let ports = |ports: &mut Vec<api::PolicyPort>| {
        for p in ports {
            p.protocol = policy_protocol(&p.protocol);
        }
    };
    for v in &mut d.policies {
        if v.policy_types.is_empty() {
            v.policy_types.push("Ingress".into());
            if !v.egress.is_empty() {
                v.policy_types.push("Egress".into());
            }
        }
        for t in &mut v.policy_types {
            *t = spelled(t, &["Ingress", "Egress"]);
        }
        for r in v.ingress.iter_mut().chain(v.egress.iter_mut()) {
            ports(&mut r.ports);
        }
    }
    for v in &mut d.cluster_policies {
        v.tier = spelled(&v.tier, &["Admin", "Baseline"]);
        for r in v.ingress.iter_mut().chain(v.egress.iter_mut()) {
            r.action = spelled(&r.action, &["Allow", "Deny", "Pass"]);
            ports(&mut r.ports);
        }
    }
    for e in &mut d.policy_endpoints {
        for p in &mut e.named_ports {
            p.protocol = policy_protocol(&p.protocol);
        }
    }
    d
}

/// `s` as spelled in `words` when it is one of them in any case.
fn spelled(s: &str, words: &[&str]) -> String {
    words
        .iter()
        .find(|w| w.eq_ignore_ascii_case(s))
        .map_or_else(|| s.to_string(), |w| (*w).to_string())
}

/// A policy protocol in upstream's spelling; empty is TCP.
fn policy_protocol(s: &str) -> String {
    spelled(
        or_default(s, "TCP"),
        &["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"],
    )
}

fn diff_kind<T: PartialEq>(
    kind: &'static str,
    current: &[T],
    desired: &[T],
    key: impl Fn(&T) -> String,
) -> KindDiff {
    let cur: BTreeMap<String, &T> = current.iter().map(|t| (key(t), t)).collect();
    let des: BTreeMap<String, &T> = desired.iter().map(|t| (key(t), t)).collect();
    let mut d = KindDiff {
        kind,
        ..KindDiff::default()
    };
    for (k, v) in &des {
        match cur.get(k) {
            None => d.added.push(k.clone()),
            Some(c) if *c != *v => d.changed.push(k.clone()),
            Some(_) => {}
        }
    }
    d.removed = cur
        .keys()
        .filter(|k| !des.contains_key(*k))
        .cloned()
        .collect();
    // A key given twice is not "no change": send the document, and the switch
    // refuses it naming the duplicate (a map would silently keep one copy).
    if des.len() != desired.len() {
        let mut seen = std::collections::BTreeSet::new();
        for t in desired {
            let k = key(t);
            if !seen.insert(k.clone()) && !d.changed.contains(&k) && !d.added.contains(&k) {
                d.changed.push(k);
            }
        }
    }
    d
}

/// Compares two documents item by item, by each kind's key (ports by name, patches
/// by `from`, L2 entries by MAC, networks by name, endpoints by network and MAC,
/// routes by tenant and prefix). Order of items does not matter; server defaults
/// (empty tenant/group/encap, underlay MTU 0) equal their explicit values.
pub fn diff(current: &Document, desired: &Document) -> Diff {
    let (c, d) = (normalize(current), normalize(desired));
    let under = |u: &Option<api::Underlay>| u.iter().cloned().collect::<Vec<_>>();
    Diff {
        kinds: vec![
            diff_kind("ports", &c.ports, &d.ports, |p| p.name.clone()),
            diff_kind("patches", &c.patches, &d.patches, |p| p.from.clone()),
            diff_kind("l2", &c.l2, &d.l2, |e| e.mac.clone()),
            diff_kind("underlay", &under(&c.underlay), &under(&d.underlay), |_| {
                "underlay".to_string()
            }),
            diff_kind("networks", &c.networks, &d.networks, |n| n.name.clone()),
            diff_kind("endpoints", &c.endpoints, &d.endpoints, |e| {
                format!("{} {}", e.network, e.mac)
            }),
            diff_kind(
                "remote_endpoints",
                &c.remote_endpoints,
                &d.remote_endpoints,
                |e| format!("{} {}", e.network, e.mac),
            ),
            diff_kind("routes", &c.routes, &d.routes, |r| {
                format!("{} {}", r.tenant, r.prefix)
            }),
            diff_kind("services", &c.services, &d.services, |v| v.name.clone()),
            diff_kind("policies", &c.policies, &d.policies, |v| v.name.clone()),
            diff_kind(
                "cluster_policies",
                &c.cluster_policies,
                &d.cluster_policies,
                |v| v.name.clone(),
            ),
            diff_kind(
                "policy_endpoints",
                &c.policy_endpoints,
                &d.policy_endpoints,
                |v| v.name.clone(),
            ),
        ],
    }
}

#[cfg(test)]
#[path = "doc_tests.rs"]
mod tests;
