//! Writes that change endpoints, static routes, ports and new networks, applied
//! as a delta.
//!
//! On a Kubernetes node the writes that come by the second are pods appearing
//! and going: endpoints, local and (far more of them) remote, against a state of
//! tens of thousands of endpoints and routes that stay; and routes change one
//! at a time too. Validating and compiling the whole state for each of them made
//! a write cost what the state costs (hundreds of milliseconds at 10k endpoints
//! and 100k routes). A write whose ops are all endpoint adds and deletes instead:
//!
//! - has each op's own fields checked here, exactly as the configuration file's
//!   rules check them (the same parsers, the same name grammar), plus what only
//!   the desired state knows: the port exists and is not switched by the classic
//!   L2 stage, the endpoint to delete exists (and with which addresses);
//! - is handed to the dataplane as [`Delta`]s, which it applies to the
//!   running snapshot with the overlay builder's own checks
//!   ([`OverlaySnapshot::patched`](dataplane::overlay::OverlaySnapshot::patched)),
//!   copying only the tables of the networks it touches;
//! - is persisted as one journal line ([`persist::append`](crate::persist::append)),
//!   not as a new state file.
//!
//! Its cost is the ops' plus one scan of the endpoint lists for deletes (a
//! comparison per endpoint, tens of microseconds at 10k), not a validation of
//! the whole state.
//!
//! A write of route adds and deletes (with endpoint ops or without) goes the
//! same way: each op's own fields are checked with the whole-state path's own
//! check (`state::check_fields`), a delete finds the
//! route it removes (one comparison per route), and the dataplane adds or
//! removes it in its tenant's VRF alone with the builder's checks (tenant, next
//! hop, duplicate). Such a write that anything refuses — here or in the
//! dataplane — is handed to the whole-state path instead, which refuses it in
//! its own words (or takes it: an op may lean on a later one of the same
//! write, which a delta applied in order cannot). So a route write's refusals
//! read exactly as they always have, and cost what they always have.
//!
//! A write that adds or deletes ports or adds networks, beside endpoint and
//! route ops or not (a CNI plugin's `add_port` + `add_endpoint`), goes the
//! same way through [`section_deltas`]: the sections those ops change (all but
//! the endpoints and routes: a few items) are validated whole by the
//! whole-state path's rules, the rest as above; the dataplane plugs and
//! unplugs the ports and adds the networks' tables. Its refusals go to the
//! whole-state path too.
//!
//! Anything else — a network delete, the underlay, patches, the L2 table, or
//! any of them mixed with the ops above — takes the whole-state path, which
//! checks the same rules over everything.

use std::collections::HashMap;
use std::net::IpAddr;

use dataplane::overlay::{NetworkSpec, RemoteEndpointSpec, RouteSpec, RouteTarget};
use dataplane::pipeline::lb::services::ServiceSpec;
use dataplane::MacAddr;
use ipnet::IpNet;

use crate::api::{self, op::Op as OpKind, route::Target};
use crate::config::{
    type_endpoint, type_remote_endpoint, EndpointConfig, PortConfig, VswitchConfig,
};
use crate::names;

/// One port, endpoint or route change, typed and checked as far as the desired
/// state can.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta {
    /// A new endpoint behind a local port (by name).
    AddLocal(EndpointConfig),
    /// A new endpoint behind a remote VTEP.
    AddRemote(RemoteEndpointSpec),
    /// The endpoint goes.
    Remove {
        /// Its network.
        network: String,
        /// Its MAC.
        mac: MacAddr,
        /// The addresses it had.
        ips: Vec<IpAddr>,
        /// Local (behind a port) or remote.
        local: bool,
    },
    /// A new static route (its tenant named, `default` for none).
    AddRoute(RouteSpec),
    /// The static route goes: as it is in the state, target included.
    RemoveRoute(RouteSpec),
    /// A new port, as the whole-state path would parse it, and in its
    /// canonical API form.
    AddPort(Box<PortConfig>, Box<api::Port>),
    /// The port (by name) goes; no endpoint is left on it.
    DelPort(String),
    /// A new network (after the others), as the whole-state path would parse
    /// it, and in its canonical API form.
    AddNetwork(Box<NetworkSpec>, Box<api::Network>),
    /// A service added or changed (its backends added, removed, reweighted):
    /// the whole service as it is after the op, and the op as the journal
    /// keeps it.
    PutService(Box<ServiceSpec>, Box<crate::persist::JournalOp>),
    /// The service (by name) goes.
    DelService(String),
    /// A policy, cluster policy or policy endpoint added or deleted (the op as
    /// the journal keeps it, in canonical text) and, on the last policy op of
    /// the write, the whole policy the write leads to, compiled.
    Policy(Box<crate::persist::JournalOp>, Option<Compiled>),
}

/// A compiled policy carried by a [`Delta`]: built once, on the control
/// thread, and published as it is.
#[derive(Clone, Debug)]
pub struct Compiled(pub std::sync::Arc<dataplane::pipeline::policy::CompiledPolicy>);

impl PartialEq for Compiled {
    /// The same compile, not an equal one: deltas are compared in tests.
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Why a delta write was refused: the op and the reason, as [`ApiError::Op`]
/// reports it.
pub type Refusal = (usize, String);

/// The deltas of `ops` against `cfg`, when every op is an endpoint or route add
/// or delete; `None` when the write needs the whole-state path (which a write
/// with a route op that is refused takes too, see the module docs).
///
/// # Errors
/// The first op whose own fields are invalid, whose port cannot carry an
/// endpoint, that adds an endpoint that exists or deletes one that does not.
pub fn deltas(cfg: &VswitchConfig, ops: &[api::Op]) -> Option<Result<Vec<Delta>, Refusal>> {
    let endpoint_op = |op: &api::Op| {
        matches!(
            op.op,
            Some(
                OpKind::AddEndpoint(_)
                    | OpKind::DelEndpoint(_)
                    | OpKind::AddRemoteEndpoint(_)
                    | OpKind::DelRemoteEndpoint(_)
            )
        )
    };
    let route_op = |op: &api::Op| matches!(op.op, Some(OpKind::AddRoute(_) | OpKind::DelRoute(_)));
    if ops.iter().all(service_op) {
        return Some(service_deltas(cfg, ops));
    }
    if ops.iter().all(policy_op) {
        // A write the whole set refuses (a name or an address used twice,
        // a set too large) goes to the whole-state path, which words it.
        return match policy_deltas(cfg, ops) {
            Ok(Some(d)) => Some(Ok(d)),
            Ok(None) => None,
            Err(refusal) => Some(Err(refusal)),
        };
    }
    if claims_a_vip(cfg, ops) {
        return None;
    }
    if ops.iter().all(endpoint_op) {
        return Some(Deltas::new(cfg).all(ops));
    }
    if ops.iter().all(|op| endpoint_op(op) || route_op(op)) {
        // What the whole-state path refuses having looked at the write alone
        // (fields, a tenant or next hop network that is not there) goes to it
        // at once, before any op is looked up in the state.
        if !ops
            .iter()
            .all(|op| route_stands_alone(&cfg.networks, op.op.as_ref()))
        {
            return None;
        }
        return Deltas::new(cfg).all(ops).ok().map(Ok);
    }
    None
}

/// Whether an endpoint op of `ops` takes an address that is a service's
/// virtual IP in its network: the whole-state path refuses that (a virtual
/// IP is nobody's address) in its own words, so such a write goes there.
/// One set of the services' addresses per write, only when there are
/// services.
fn claims_a_vip(cfg: &VswitchConfig, ops: &[api::Op]) -> bool {
    if cfg.services.is_empty() {
        return false;
    }
    let adds = ops.iter().filter_map(|op| match &op.op {
        Some(OpKind::AddEndpoint(e)) => Some((&e.network, &e.ips)),
        Some(OpKind::AddRemoteEndpoint(e)) => Some((&e.network, &e.ips)),
        _ => None,
    });
    let mut adds = adds.peekable();
    if adds.peek().is_none() {
        return false;
    }
    let vips: std::collections::HashSet<(&str, IpAddr)> = cfg
        .services
        .iter()
        .flat_map(|s| {
            std::iter::once(s.cluster_ip)
                .chain(s.external_ips.iter().copied())
                .map(move |a| (s.network.as_str(), a))
        })
        .collect();
    adds.any(|(net, ips)| {
        ips.iter()
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .any(|a| vips.contains(&(net.as_str(), a)))
    })
}

/// A policy, cluster policy or policy endpoint op.
fn policy_op(op: &api::Op) -> bool {
    matches!(
        op.op,
        Some(
            OpKind::AddPolicy(_)
                | OpKind::DelPolicy(_)
                | OpKind::AddClusterPolicy(_)
                | OpKind::DelClusterPolicy(_)
                | OpKind::AddPolicyEndpoint(_)
                | OpKind::DelPolicyEndpoint(_)
        )
    )
}

/// The deltas of a write of policy ops: each op's fields checked as the
/// whole-state path checks them (`state::check_fields`: the item alone,
/// through the dataplane's validation), its name looked up, the policies
/// after the write validated and compiled whole, here, once — nothing else
/// of the configuration is looked at or rebuilt. A replace is a delete and
/// an add of the same name, in that order, as the whole-state path takes
/// it (the item moves to the end of its list).
///
/// # Errors
/// The first op refused by its own fields or its name; `Ok(None)` when the
/// set after the write is refused as a whole (the whole-state path words it).
fn policy_deltas(cfg: &VswitchConfig, ops: &[api::Op]) -> Result<Option<Vec<Delta>>, Refusal> {
    use crate::config::policy::{cluster_label, endpoint_label, policy_label};
    use crate::config::policy::{cluster_policy, network_policy, policy_endpoint, PolicyRefs};
    use crate::persist::JournalOp as J;
    let strip = |own: &str, e: String| match e.strip_prefix(&format!("{own}: ")) {
        Some(rest) => rest.to_owned(),
        None => e,
    };
    let p = &cfg.policies;
    // The write's net effect, by kind (0 policies, 1 cluster policies, 2
    // policy endpoints): the configuration's items it deletes, and its adds
    // in order, each alive unless a later op deletes it. The set it leads to
    // is then borrowed (the untouched items are not copied): the items not
    // deleted in their order, then the adds alive, as the whole-state path
    // orders them.
    let mut cfg_gone: [std::collections::HashSet<&str>; 3] = Default::default();
    let mut adds: Vec<(usize, String, bool)> = Vec::new();
    let mut journal = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let kind = op.op.as_ref();
        crate::state::check_fields(kind, &cfg.load_balancer).map_err(|r| (i, r))?;
        let (k, name, add) = match kind {
            Some(OpKind::AddPolicy(x)) => (0, &x.name, true),
            Some(OpKind::DelPolicy(n)) => (0, n, false),
            Some(OpKind::AddClusterPolicy(x)) => (1, &x.name, true),
            Some(OpKind::DelClusterPolicy(n)) => (1, n, false),
            Some(OpKind::AddPolicyEndpoint(x)) => (2, &x.name, true),
            Some(OpKind::DelPolicyEndpoint(n)) => (2, n, false),
            _ => return Err((i, "not a policy op".into())),
        };
        let in_cfg = |n: &str| match k {
            0 => p.network.iter().any(|x| x.name == n),
            1 => p.cluster.iter().any(|x| x.name == n),
            _ => p.endpoints.iter().any(|x| x.name == n),
        };
        let added = adds
            .iter()
            .rposition(|(ak, an, alive)| *ak == k && an == name && *alive);
        let exists = added.is_some() || (!cfg_gone[k].contains(name.as_str()) && in_cfg(name));
        let what = ["policy", "cluster policy", "policy endpoint"][k];
        if add && exists {
            return Err((i, format!("{what} already exists")));
        }
        if !add && !exists {
            return Err((i, format!("no such {what}")));
        }
        journal.push(match kind {
            Some(OpKind::AddPolicy(x)) => {
                let own = policy_label(&x.name);
                J::AddPolicy(network_policy(&own, x).map_err(|e| (i, strip(&own, e.to_string())))?)
            }
            Some(OpKind::AddClusterPolicy(x)) => {
                let own = cluster_label(&x.name);
                J::AddClusterPolicy(
                    cluster_policy(&own, x).map_err(|e| (i, strip(&own, e.to_string())))?,
                )
            }
            Some(OpKind::AddPolicyEndpoint(x)) => {
                let own = endpoint_label(&x.name);
                J::AddPolicyEndpoint(
                    policy_endpoint(&own, x).map_err(|e| (i, strip(&own, e.to_string())))?,
                )
            }
            Some(OpKind::DelPolicy(n)) => J::DelPolicy { name: n.clone() },
            Some(OpKind::DelClusterPolicy(n)) => J::DelClusterPolicy { name: n.clone() },
            _ => J::DelPolicyEndpoint { name: name.clone() },
        });
        if add {
            adds.push((k, name.clone(), true));
        } else if let Some(a) = added {
            adds[a].2 = false;
        } else {
            cfg_gone[k].insert(name.as_str());
        }
    }
    // Which journal entries are adds still alive, in order (`adds` holds
    // them in op order, as `journal` does).
    let mut alive = adds.iter().map(|a| a.2);
    let mut next = PolicyRefs {
        network: keep(&p.network, &cfg_gone[0], |x| &x.name),
        cluster: keep(&p.cluster, &cfg_gone[1], |x| &x.name),
        endpoints: keep(&p.endpoints, &cfg_gone[2], |x| &x.name),
    };
    for j in &journal {
        let is_add = matches!(
            j,
            J::AddPolicy(_) | J::AddClusterPolicy(_) | J::AddPolicyEndpoint(_)
        );
        if !is_add || !alive.next().unwrap_or(false) {
            continue;
        }
        match j {
            J::AddPolicy(x) => next.network.push(x),
            J::AddClusterPolicy(x) => next.cluster.push(x),
            J::AddPolicyEndpoint(x) => next.endpoints.push(x),
            _ => {}
        }
    }
    // The whole set the write leads to, validated and compiled once; what it
    // refuses goes to the whole-state path, which words it.
    let Ok(compiled) = crate::config::policy::check_and_compile_refs(&next) else {
        return Ok(None);
    };
    // A subject makes its network tracked: the whole-state path refuses
    // one in a tenant of several networks, and words it.
    if compiled.has_subjects()
        && crate::config::policy::policed_sharing_a_tenant(&cfg.networks, &compiled).is_some()
    {
        return Ok(None);
    }
    drop(next);
    let mut out: Vec<Delta> = journal
        .into_iter()
        .map(|j| Delta::Policy(Box::new(j), None))
        .collect();
    if let Some(Delta::Policy(_, c)) = out.last_mut() {
        *c = Some(Compiled(compiled));
    }
    Ok(Some(out))
}

/// The items of `list` whose names a write does not delete, borrowed.
fn keep<'a, T>(
    list: &'a [T],
    gone: &std::collections::HashSet<&str>,
    key: fn(&T) -> &str,
) -> Vec<&'a T> {
    if gone.is_empty() {
        return list.iter().collect();
    }
    list.iter().filter(|x| !gone.contains(key(x))).collect()
}

/// Takes the item named `name` out of `list`, keeping the order of the rest.
fn take_named<T>(list: &mut Vec<T>, name: &str, key: fn(&T) -> &str) -> Option<T> {
    let i = list.iter().position(|x| key(x) == name)?;
    Some(list.remove(i))
}

/// A service or backend op.
fn service_op(op: &api::Op) -> bool {
    matches!(
        op.op,
        Some(
            OpKind::AddService(_)
                | OpKind::DelService(_)
                | OpKind::AddBackend(_)
                | OpKind::DelBackend(_)
                | OpKind::SetBackend(_)
        )
    )
}

/// The deltas of a write of service and backend ops: each op's fields
/// checked as the whole-state path checks them (`state::check_fields`), the
/// service it names found (one scan of the services' names), the backend op
/// applied to that service alone (`state::backend_op`, the whole-state
/// path's own) and the service typed again. What concerns other services
/// (a frontend or node port taken) is the dataplane's to refuse
/// ([`Services::patched`](dataplane::pipeline::lb::Services::patched)),
/// whose refusal sends the write to the whole-state path. The cost follows
/// the services the write touches, not how many there are.
///
/// # Errors
/// The first op refused, in the whole-state path's words.
fn service_deltas(cfg: &VswitchConfig, ops: &[api::Op]) -> Result<Vec<Delta>, Refusal> {
    use crate::config::service::{service, to_message};
    use crate::persist::JournalOp as J;
    let lb = &cfg.load_balancer;
    // What the write has made of each service so far (`None`: deleted).
    let mut now: HashMap<String, Option<api::Service>> = HashMap::new();
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let kind = op.op.as_ref();
        crate::state::check_fields(kind, lb).map_err(|r| (i, r))?;
        let own = |name: &str| format!("service {}", names::quote(name));
        let strip = |name: &str, e: String| match e.strip_prefix(&format!("{}: ", own(name))) {
            Some(rest) => rest.to_owned(),
            None => e,
        };
        let current = |now: &HashMap<String, Option<api::Service>>, name: &str| match now.get(name)
        {
            Some(s) => s.clone(),
            None => cfg.services.iter().find(|s| s.name == name).map(to_message),
        };
        let typed = |v: &api::Service, addresses: bool| -> Result<ServiceSpec, String> {
            let spec = service(&own(&v.name), v, lb).map_err(|e| strip(&v.name, e.to_string()))?;
            cfg.service_refs(&spec, addresses)
                .map_err(|e| strip(&v.name, e.to_string()))?;
            Ok(spec)
        };
        match kind {
            Some(OpKind::AddService(v)) => {
                if current(&now, &v.name).is_some() {
                    return Err((i, "service already exists".into()));
                }
                let spec = typed(v, true).map_err(|r| (i, r))?;
                let canonical = to_message(&spec);
                now.insert(v.name.clone(), Some(canonical.clone()));
                out.push(Delta::PutService(
                    Box::new(spec),
                    Box::new(J::AddService(canonical)),
                ));
            }
            Some(OpKind::DelService(n)) => {
                if current(&now, n).is_none() {
                    return Err((i, "no such service".into()));
                }
                now.insert(n.clone(), None);
                out.push(Delta::DelService(n.clone()));
            }
            Some(op @ (OpKind::AddBackend(_) | OpKind::DelBackend(_) | OpKind::SetBackend(_))) => {
                let name = match op {
                    OpKind::AddBackend(b) => &b.service,
                    OpKind::DelBackend(k) => &k.service,
                    OpKind::SetBackend(k) => &k.service,
                    _ => unreachable!("a backend op"),
                };
                let mut v = current(&now, name)
                    .ok_or_else(|| (i, format!("no such service {}", names::quote(name))))?;
                crate::state::backend_op(&mut v, op).map_err(|r| (i, r))?;
                let spec = typed(&v, false).map_err(|r| (i, r))?;
                let canonical = to_message(&spec);
                // The op in canonical text: the address as the state has it.
                let journal = match op {
                    OpKind::AddBackend(b) => {
                        let added = canonical.backends.last().cloned();
                        J::AddBackend(api::BackendOp {
                            service: b.service.clone(),
                            backend: added,
                        })
                    }
                    OpKind::DelBackend(k) => J::DelBackend(api::BackendKey {
                        service: k.service.clone(),
                        address: canonical_ip(&k.address),
                    }),
                    OpKind::SetBackend(k) => J::SetBackend(api::SetBackend {
                        service: k.service.clone(),
                        address: canonical_ip(&k.address),
                        weight: k.weight,
                        state: k.state.clone(),
                    }),
                    _ => unreachable!("a backend op"),
                };
                now.insert(name.clone(), Some(canonical));
                out.push(Delta::PutService(Box::new(spec), Box::new(journal)));
            }
            _ => return Err((i, "not a service op".into())),
        }
    }
    Ok(out)
}

fn canonical_ip(s: &str) -> String {
    s.parse::<IpAddr>()
        .map_or_else(|_| s.to_owned(), |a| a.to_string())
}

/// Whether route op `op`'s fields are valid, and its tenant and next hop's
/// network exist (among `nets`, the networks after the write). True for the
/// other ops, which are checked as they come.
fn route_stands_alone(nets: &[NetworkSpec], op: Option<&OpKind>) -> bool {
    let Some(add @ OpKind::AddRoute(r)) = op else {
        return true;
    };
    if crate::state::check_fields(Some(add), &Default::default()).is_err() {
        return false;
    }
    let tenant = crate::state::tenant_key(&r.tenant);
    let via_known = match &r.target {
        Some(Target::NextHop(h)) => nets.iter().any(|n| n.name == h.network),
        Some(Target::Blackhole(b)) => *b,
        None => false,
    };
    via_known && nets.iter().any(|n| n.tenant == tenant)
}

/// Whether a write of `deltas` is one whose refusal the whole-state path words
/// (it changes routes or ports): the caller then hands it over instead of
/// refusing.
pub fn refusals_go_whole(deltas: &[Delta]) -> bool {
    deltas.iter().any(|d| {
        matches!(
            d,
            Delta::AddRoute(_)
                | Delta::RemoveRoute(_)
                | Delta::AddPort(..)
                | Delta::DelPort(_)
                | Delta::AddNetwork(..)
                | Delta::PutService(..)
                | Delta::DelService(_)
                | Delta::Policy(..)
        )
    })
}

/// The deltas of a write that adds or deletes ports, or adds networks, beside
/// endpoint (and route) ops — a CNI plugin's pod add (`add_port` +
/// `add_endpoint`) or delete (`del_endpoint` + `del_port`), a new network with
/// its first endpoints — and the sections it leads to, as a configuration
/// holding every fixed section and every section but the endpoints and routes
/// (ports, patches, L2 table, underlay, networks): what the caller confines and
/// prechecks as the whole-state path does. Those sections are validated by the
/// whole-state path's own rules (a few items, not the whole state); the
/// endpoint and route ops as [`deltas`] does, against the ports and networks
/// after the write. `None` sends the write to the whole-state path: other ops
/// (a network delete among them), or anything refused (which that path then
/// words).
pub fn section_deltas(
    fixed: &crate::state::Fixed,
    state: &api::DesiredState,
    cfg: &VswitchConfig,
    ops: &[api::Op],
) -> Option<(Vec<Delta>, VswitchConfig)> {
    let section_op = |op: &api::Op| {
        matches!(
            op.op,
            Some(OpKind::AddPort(_) | OpKind::DelPort(_) | OpKind::AddNetwork(_))
        )
    };
    if !ops.iter().any(section_op) {
        return None;
    }
    let delta_op = |op: &api::Op| {
        matches!(
            op.op,
            Some(
                OpKind::AddEndpoint(_)
                    | OpKind::DelEndpoint(_)
                    | OpKind::AddRemoteEndpoint(_)
                    | OpKind::DelRemoteEndpoint(_)
                    | OpKind::AddRoute(_)
                    | OpKind::DelRoute(_)
            )
        )
    };
    if !ops.iter().all(|op| section_op(op) || delta_op(op)) || claims_a_vip(cfg, ops) {
        return None;
    }
    // The sections after the write: adds at the end, deletes where the port
    // was, as the whole-state path leaves them.
    let mut ports = state.ports.clone();
    let mut networks = state.networks.clone();
    for op in ops {
        match &op.op {
            Some(add @ OpKind::AddPort(p)) => {
                crate::state::check_fields(Some(add), fixed.load_balancer()).ok()?;
                if ports.iter().any(|x| x.name == p.name) {
                    return None;
                }
                ports.push(p.clone());
            }
            Some(OpKind::DelPort(n)) => {
                let i = ports.iter().position(|x| x.name == *n)?;
                ports.remove(i);
            }
            Some(add @ OpKind::AddNetwork(n)) => {
                crate::state::check_fields(Some(add), fixed.load_balancer()).ok()?;
                if networks.iter().any(|x| x.name == n.name) {
                    return None;
                }
                // A network with a service is tracked and must stay its
                // tenant's only one: the whole-state path checks the services.
                let tenant = |t: &str| {
                    if t.is_empty() {
                        crate::config::overlay::DEFAULT_TENANT
                    } else {
                        t
                    }
                    .to_owned()
                };
                let serves_tenant = cfg.services.iter().any(|s| {
                    cfg.networks
                        .iter()
                        .any(|m| m.name == s.network && m.tenant == tenant(&n.tenant))
                });
                if serves_tenant {
                    return None;
                }
                // Likewise a network holding a policy subject (tracked for
                // it): a subject's address in one of the tenant's subnets.
                let subjects = || {
                    let p = &cfg.policies;
                    p.network
                        .iter()
                        .flat_map(|x| x.subject.iter())
                        .chain(p.cluster.iter().flat_map(|x| x.subject.iter()))
                        .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
                };
                let policed_tenant = cfg
                    .networks
                    .iter()
                    .filter(|m| m.tenant == tenant(&n.tenant))
                    .any(|m| {
                        subjects().next().is_some()
                            && (m.subnets.is_empty()
                                || subjects().any(|a| m.subnets.iter().any(|s| s.contains(&a))))
                    });
                if policed_tenant {
                    return None;
                }
                networks.push(n.clone());
            }
            _ => {}
        }
    }
    let sections = api::DesiredState {
        ports,
        patches: state.patches.clone(),
        l2: state.l2.clone(),
        underlay: state.underlay.clone(),
        networks,
        ..Default::default()
    };
    let valid = fixed.validate(&sections).ok()?;
    if !ops
        .iter()
        .all(|op| route_stands_alone(&valid.config.networks, op.op.as_ref()))
    {
        return None;
    }
    let mut d = Deltas::new(cfg);
    d.ports_now = Some(valid.config.ports.iter().map(|p| p.name.clone()).collect());
    let mut out = Vec::with_capacity(ops.len());
    let mut deleted = Vec::new();
    for op in ops {
        match &op.op {
            Some(OpKind::AddPort(p)) => {
                let k = valid.config.ports.iter().position(|x| x.name == p.name)?;
                deleted.retain(|n| *n != p.name);
                out.push(Delta::AddPort(
                    Box::new(valid.config.ports[k].clone()),
                    Box::new(valid.state.ports[k].clone()),
                ));
            }
            Some(OpKind::DelPort(n)) => {
                deleted.push(n.clone());
                out.push(Delta::DelPort(n.clone()));
            }
            Some(OpKind::AddNetwork(n)) => {
                let k = valid
                    .config
                    .networks
                    .iter()
                    .position(|x| x.name == n.name)?;
                out.push(Delta::AddNetwork(
                    Box::new(valid.config.networks[k].clone()),
                    Box::new(valid.state.networks[k].clone()),
                ));
            }
            other => out.push(d.one(other.as_ref()).ok()?),
        }
    }
    // A port that goes carries no endpoint once the write is done.
    if !deleted.is_empty() {
        let carried = d.port_map();
        if deleted.iter().any(|n| carried.contains_key(n)) {
            return None;
        }
    }
    Some((out, valid.config))
}

/// An endpoint as a write sees it: local or remote, and its addresses.
type Found = (bool, Vec<IpAddr>);

/// Writes of more ops than this look endpoints up through an index.
const SCAN_OPS: usize = 8;

/// What the write has done to each (network, MAC) so far: `Some` added (local or
/// remote, its addresses), `None` deleted. Later ops of the write see earlier
/// ones through it, so a write may delete and re-add an endpoint (an update).
struct Deltas<'a> {
    cfg: &'a VswitchConfig,
    seen: HashMap<(String, MacAddr), Option<Found>>,
    /// The endpoints of `cfg` by key, for a write of many ops (one pass to make,
    /// then a probe per op); a write of a few ops scans instead, which at 10k
    /// endpoints costs microseconds, not the index's milliseconds.
    by_key: Option<HashMap<(&'a str, MacAddr), Found>>,
    /// Port → the network of its local endpoints and how many, made on the
    /// first local add (one pass over the endpoints per write).
    ports: Option<HashMap<String, (String, usize)>>,
    /// What the write has done to each (tenant, prefix) so far: `Some` added
    /// (the route), `None` deleted.
    routes: HashMap<(String, IpNet), Option<RouteSpec>>,
    /// A write of more than [`SCAN_OPS`] ops: routes to delete are found
    /// through `route_index`, made on the first.
    many: bool,
    route_index: Option<HashMap<(&'a str, IpNet), &'a RouteSpec>>,
    /// The ports' names after a write that adds or deletes ports (`None`:
    /// `cfg`'s).
    ports_now: Option<std::collections::HashSet<String>>,
}

impl<'a> Deltas<'a> {
    fn new(cfg: &'a VswitchConfig) -> Self {
        Deltas {
            cfg,
            seen: HashMap::new(),
            by_key: None,
            ports: None,
            routes: HashMap::new(),
            many: false,
            route_index: None,
            ports_now: None,
        }
    }

    fn all(mut self, ops: &[api::Op]) -> Result<Vec<Delta>, Refusal> {
        self.many = ops.len() > SCAN_OPS;
        if ops.len() > SCAN_OPS
            && ops
                .iter()
                .any(|o| !matches!(o.op, Some(OpKind::AddRoute(_) | OpKind::DelRoute(_))))
        {
            let local = self
                .cfg
                .endpoints
                .iter()
                .map(|e| ((e.network.as_str(), e.mac), (true, e.ips.clone())));
            let remote = self
                .cfg
                .remote_endpoints
                .iter()
                .map(|e| ((e.network.as_str(), e.mac), (false, e.ips.clone())));
            // Local first wins, as the scan finds it.
            let mut m: HashMap<_, _> = remote.collect();
            m.extend(local);
            self.by_key = Some(m);
        }
        ops.iter()
            .enumerate()
            .map(|(i, op)| self.one(op.op.as_ref()).map_err(|e| (i, e)))
            .collect()
    }

    /// The endpoint (network, MAC) as it stands at this point of the write.
    fn exists(&self, network: &str, mac: MacAddr) -> Option<Found> {
        if let Some(now) = self.seen.get(&(network.to_owned(), mac)) {
            return now.clone();
        }
        if let Some(m) = &self.by_key {
            return m.get(&(network, mac)).cloned();
        }
        let local = self
            .cfg
            .endpoints
            .iter()
            .find(|e| e.mac == mac && e.network == network)
            .map(|e| (true, e.ips.clone()));
        local.or_else(|| {
            self.cfg
                .remote_endpoints
                .iter()
                .find(|e| e.mac == mac && e.network == network)
                .map(|e| (false, e.ips.clone()))
        })
    }

    fn one(&mut self, op: Option<&OpKind>) -> Result<Delta, String> {
        let err = |e: crate::config::ConfigError| e.to_string();
        match op {
            Some(OpKind::AddEndpoint(e)) => {
                names::check(&e.network).map_err(|r| format!("network: {r}"))?;
                names::check_with(&e.port, names::MAX_PORT_NAME)
                    .map_err(|r| format!("port: {r}"))?;
                let typed: EndpointConfig = type_endpoint("endpoint", e).map_err(err)?;
                self.port_can_carry(&e.port, &e.network)?;
                self.add(&e.network, typed.mac, (true, typed.ips.clone()))?;
                self.port_map()
                    .entry(e.port.clone())
                    .or_insert_with(|| (e.network.clone(), 0))
                    .1 += 1;
                Ok(Delta::AddLocal(typed))
            }
            Some(OpKind::AddRemoteEndpoint(e)) => {
                names::check(&e.network).map_err(|r| format!("network: {r}"))?;
                let typed = type_remote_endpoint("remote endpoint", e).map_err(err)?;
                self.add(&e.network, typed.mac, (false, typed.ips.clone()))?;
                Ok(Delta::AddRemote(typed))
            }
            Some(OpKind::DelEndpoint(k)) => {
                let d = self.remove(&k.network, &k.mac, true)?;
                if let Delta::Remove { mac, .. } = &d {
                    self.forget_port_of(&k.network, *mac);
                }
                Ok(d)
            }
            Some(OpKind::DelRemoteEndpoint(k)) => self.remove(&k.network, &k.mac, false),
            Some(OpKind::AddRoute(r)) => {
                let tenant = crate::state::tenant_key(&r.tenant).to_owned();
                let prefix: IpNet = r.prefix.parse().map_err(|_| "prefix".to_owned())?;
                let target = match &r.target {
                    Some(Target::NextHop(h)) => RouteTarget::NextHop {
                        network: h.network.clone(),
                        ip: h.ip.parse().map_err(|_| "next_hop.ip".to_owned())?,
                    },
                    Some(Target::Blackhole(true)) => RouteTarget::Blackhole,
                    _ => return Err("no target".into()),
                };
                let spec = RouteSpec {
                    tenant,
                    prefix,
                    target,
                };
                // A route that exists is not looked for here (a scan of every
                // route): the dataplane refuses its duplicate, and the write
                // goes whole. Only this write's own are known.
                let key = (spec.tenant.clone(), prefix);
                if matches!(self.routes.get(&key), Some(Some(_))) {
                    return Err("route already exists".into());
                }
                self.routes.insert(key, Some(spec.clone()));
                Ok(Delta::AddRoute(spec))
            }
            Some(OpKind::DelRoute(k)) => {
                let tenant = crate::state::tenant_key(&k.tenant).to_owned();
                let prefix: IpNet = k.prefix.parse().map_err(|_| "no such route".to_owned())?;
                let key = (tenant, prefix.trunc());
                let spec = self.route(&key).ok_or("no such route")?;
                self.routes.insert(key, None);
                Ok(Delta::RemoveRoute(spec))
            }
            _ => Err("not an endpoint or route op".into()),
        }
    }

    /// The route (tenant, prefix) as it stands at this point of the write: one
    /// comparison per route of `cfg` (the prefix first, a word or two).
    fn route(&mut self, key: &(String, IpNet)) -> Option<RouteSpec> {
        if let Some(now) = self.routes.get(key) {
            return now.clone();
        }
        let cfg = self.cfg;
        if self.many {
            let index = self.route_index.get_or_insert_with(|| {
                cfg.routes
                    .iter()
                    .map(|r| ((r.tenant.as_str(), r.prefix), r))
                    .collect()
            });
            return index.get(&(key.0.as_str(), key.1)).map(|r| (*r).clone());
        }
        cfg.routes
            .iter()
            .find(|r| r.prefix == key.1 && r.tenant == key.0)
            .cloned()
    }

    fn add(&mut self, network: &str, mac: MacAddr, found: Found) -> Result<(), String> {
        if self.exists(network, mac).is_some() {
            return Err(format!(
                "{} already exists",
                if found.0 {
                    "endpoint"
                } else {
                    "remote endpoint"
                }
            ));
        }
        self.seen.insert((network.to_owned(), mac), Some(found));
        Ok(())
    }

    fn remove(&mut self, network: &str, mac: &str, local: bool) -> Result<Delta, String> {
        let what = if local { "endpoint" } else { "remote endpoint" };
        let no_such = || format!("no such {what}");
        let Ok(mac) = mac.parse::<MacAddr>() else {
            return Err(no_such());
        };
        let ips = match self.exists(network, mac) {
            Some((l, ips)) if l == local => ips,
            _ => return Err(no_such()),
        };
        self.seen.insert((network.to_owned(), mac), None);
        Ok(Delta::Remove {
            network: network.to_owned(),
            mac,
            ips,
            local,
        })
    }

    fn port_map(&mut self) -> &mut HashMap<String, (String, usize)> {
        let cfg = self.cfg;
        self.ports.get_or_insert_with(|| {
            let mut m: HashMap<String, (String, usize)> = HashMap::new();
            for e in &cfg.endpoints {
                m.entry(e.port.clone())
                    .or_insert_with(|| (e.network.clone(), 0))
                    .1 += 1;
            }
            m
        })
    }

    /// A local endpoint went: its port may be free for another network.
    fn forget_port_of(&mut self, network: &str, mac: MacAddr) {
        let port = self
            .cfg
            .endpoints
            .iter()
            .find(|e| e.mac == mac && e.network == network)
            .map(|e| e.port.clone());
        // One added earlier in this write is not in `cfg`: its port stays counted,
        // so the rare write that adds, deletes and moves a port to another
        // network in one go is refused here (split, it passes).
        if let Some(port) = port {
            let map = self.port_map();
            if let Some(n) = map.get_mut(&port) {
                n.1 = n.1.saturating_sub(1);
                if n.1 == 0 {
                    map.remove(&port);
                }
            }
        }
    }

    /// A port an endpoint of `network` may sit behind: a `[[port]]`, not the
    /// underlay's uplink, without endpoints of another network, that neither a
    /// patch nor the classic MAC table uses (the overlay owns its endpoints'
    /// ports). The same rules, and words, as the whole-state check.
    fn port_can_carry(&mut self, port: &str, network: &str) -> Result<(), String> {
        let known = match &self.ports_now {
            Some(names) => names.contains(port),
            None => self.cfg.ports.iter().any(|p| p.name == port),
        };
        if !known {
            return Err(format!("port {} is not a [[port]]", names::quote(port)));
        }
        if self.cfg.underlay.as_ref().is_some_and(|u| u.uplink == port) {
            return Err(format!("port {port:?} is the underlay uplink"));
        }
        if let Some((first, _)) = self.port_map().get(port) {
            if first != network {
                return Err(format!(
                    "port {port:?} already carries endpoints of network {first:?}"
                ));
            }
        }
        let patched = self
            .cfg
            .patches
            .iter()
            .any(|p| p.from == port || p.to == port);
        if patched || self.cfg.l2.iter().any(|e| e.port == port) {
            return Err(format!(
                "port {port:?} is used by a patch or the L2 table, which the overlay's ports may not be"
            ));
        }
        Ok(())
    }
}

/// `cfg` and `state` (its API form, item for item in the same order) with
/// `deltas` applied: adds at the end, deletes where the item was, as the
/// whole-state path leaves them.
pub fn apply(cfg: &mut VswitchConfig, state: &mut api::DesiredState, deltas: &[Delta]) {
    apply_with(cfg, Some(state), deltas);
}

/// [`apply`] to a configuration alone (the dataplane's copy of what it runs).
pub fn apply_config(cfg: &mut VswitchConfig, deltas: &[Delta]) {
    apply_with(cfg, None, deltas);
}

fn apply_with(
    cfg: &mut VswitchConfig,
    mut state: Option<&mut api::DesiredState>,
    deltas: &[Delta],
) {
    // The write's net effect first: a removal of what the same write added
    // cancels the add; the other removals go in one pass per list (10k deletes
    // would otherwise shift the lists 10k times), then the adds, in order.
    let mut adds: Vec<Option<&Delta>> = Vec::new();
    let mut pending: HashMap<(bool, &str, MacAddr), usize> = HashMap::new();
    let mut gone: Gone = HashMap::new();
    let mut route_adds: Vec<Option<&RouteSpec>> = Vec::new();
    let mut route_pending: HashMap<(&str, IpNet), usize> = HashMap::new();
    let mut routes_gone: Vec<(&str, IpNet)> = Vec::new();
    // Ports first, in order: a port is added at the end of the list and
    // deleted where it is, in both forms (item for item).
    for d in deltas {
        match d {
            Delta::AddPort(c, a) => {
                cfg.ports.push((**c).clone());
                if let Some(s) = state.as_deref_mut() {
                    s.ports.push((**a).clone());
                }
            }
            Delta::DelPort(n) => {
                if let Some(i) = cfg.ports.iter().position(|p| p.name == *n) {
                    cfg.ports.remove(i);
                    if let Some(s) = state.as_deref_mut() {
                        s.ports.remove(i);
                    }
                }
            }
            Delta::AddNetwork(c, a) => {
                cfg.networks.push((**c).clone());
                if let Some(s) = state.as_deref_mut() {
                    s.networks.push((**a).clone());
                }
            }
            // A service changed in place (its position kept), a new one at
            // the end, in both forms.
            Delta::PutService(spec, _) => {
                let at = cfg.services.iter().position(|x| x.name == spec.name);
                let msg = crate::config::service::to_message(spec);
                match at {
                    Some(i) => {
                        cfg.services[i] = (**spec).clone();
                        if let Some(s) = state.as_deref_mut() {
                            s.services[i] = msg;
                        }
                    }
                    None => {
                        cfg.services.push((**spec).clone());
                        if let Some(s) = state.as_deref_mut() {
                            s.services.push(msg);
                        }
                    }
                }
            }
            Delta::DelService(n) => {
                if let Some(i) = cfg.services.iter().position(|x| x.name == *n) {
                    cfg.services.remove(i);
                    if let Some(s) = state.as_deref_mut() {
                        s.services.remove(i);
                    }
                }
            }
            // The configuration and the state hold the same canonical
            // messages: an add goes at the end of both, a delete where it is.
            Delta::Policy(j, _) => {
                use crate::persist::JournalOp as J;
                let (p, s) = (&mut cfg.policies, state.as_deref_mut());
                match &**j {
                    J::AddPolicy(x) => {
                        p.network.push(x.clone());
                        if let Some(s) = s {
                            s.policies.push(x.clone());
                        }
                    }
                    J::DelPolicy { name } => {
                        take_named(&mut p.network, name, |x| &x.name);
                        if let Some(s) = s {
                            take_named(&mut s.policies, name, |x| &x.name);
                        }
                    }
                    J::AddClusterPolicy(x) => {
                        p.cluster.push(x.clone());
                        if let Some(s) = s {
                            s.cluster_policies.push(x.clone());
                        }
                    }
                    J::DelClusterPolicy { name } => {
                        take_named(&mut p.cluster, name, |x| &x.name);
                        if let Some(s) = s {
                            take_named(&mut s.cluster_policies, name, |x| &x.name);
                        }
                    }
                    J::AddPolicyEndpoint(x) => {
                        p.endpoints.push(x.clone());
                        if let Some(s) = s {
                            s.policy_endpoints.push(x.clone());
                        }
                    }
                    J::DelPolicyEndpoint { name } => {
                        take_named(&mut p.endpoints, name, |x| &x.name);
                        if let Some(s) = s {
                            take_named(&mut s.policy_endpoints, name, |x| &x.name);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for d in deltas {
        match d {
            Delta::AddPort(..)
            | Delta::DelPort(_)
            | Delta::AddNetwork(..)
            | Delta::PutService(..)
            | Delta::DelService(_)
            | Delta::Policy(..) => {}
            Delta::AddRoute(r) => {
                route_pending.insert((r.tenant.as_str(), r.prefix), route_adds.len());
                route_adds.push(Some(r));
            }
            Delta::RemoveRoute(r) => match route_pending.remove(&(r.tenant.as_str(), r.prefix)) {
                Some(i) => route_adds[i] = None,
                None => routes_gone.push((r.tenant.as_str(), r.prefix)),
            },
            Delta::AddLocal(e) => {
                pending.insert((true, e.network.as_str(), e.mac), adds.len());
                adds.push(Some(d));
            }
            Delta::AddRemote(e) => {
                pending.insert((false, e.network.as_str(), e.mac), adds.len());
                adds.push(Some(d));
            }
            Delta::Remove {
                network,
                mac,
                local,
                ..
            } => {
                let key = (*local, network.as_str(), *mac);
                match pending.remove(&key) {
                    Some(i) => adds[i] = None,
                    None => {
                        *gone
                            .entry(network.clone())
                            .or_default()
                            .entry((*local, *mac))
                            .or_default() += 1;
                    }
                }
            }
        }
    }
    if !gone.is_empty() {
        let keep = keep_mask(
            cfg.endpoints
                .iter()
                .map(|e| (true, e.network.as_str(), e.mac)),
            &mut gone,
        );
        retain_by(&mut cfg.endpoints, &keep);
        if let Some(s) = state.as_deref_mut() {
            retain_by(&mut s.endpoints, &keep);
        }
        let keys = cfg
            .remote_endpoints
            .iter()
            .map(|e| (false, e.network.as_str(), e.mac));
        let keep = keep_mask(keys, &mut gone);
        retain_by(&mut cfg.remote_endpoints, &keep);
        if let Some(s) = state.as_deref_mut() {
            retain_by(&mut s.remote_endpoints, &keep);
        }
    }
    if let [(tenant, prefix)] = routes_gone[..] {
        // One route goes (the common write): found, and taken out of both
        // lists, without walking either whole.
        let at = cfg
            .routes
            .iter()
            .position(|r| r.prefix == prefix && r.tenant == tenant);
        if let Some(i) = at {
            cfg.routes.remove(i);
            if let Some(s) = state.as_deref_mut() {
                s.routes.remove(i);
            }
        }
    } else if !routes_gone.is_empty() {
        // The prefix first (a word or two), the tenant's name only on a match.
        let keep: Vec<bool> = cfg
            .routes
            .iter()
            .map(|r| {
                !routes_gone
                    .iter()
                    .any(|g| g.1 == r.prefix && g.0 == r.tenant)
            })
            .collect();
        retain_by(&mut cfg.routes, &keep);
        if let Some(s) = state.as_deref_mut() {
            retain_by(&mut s.routes, &keep);
        }
    }
    for r in route_adds.into_iter().flatten() {
        if let Some(s) = state.as_deref_mut() {
            s.routes.push(r.into());
        }
        cfg.routes.push(r.clone());
    }
    for d in adds.into_iter().flatten() {
        match d {
            Delta::AddLocal(e) => {
                if let Some(s) = state.as_deref_mut() {
                    s.endpoints.push(e.into());
                }
                cfg.endpoints.push(e.clone());
            }
            Delta::AddRemote(e) => {
                if let Some(s) = state.as_deref_mut() {
                    s.remote_endpoints.push(e.into());
                }
                cfg.remote_endpoints.push(e.clone());
            }
            _ => {}
        }
    }
}

/// Removals still to make: network → (local, MAC) → how many.
type Gone = HashMap<String, HashMap<(bool, MacAddr), usize>>;

/// Which items of a list stay: false for each key `gone` still counts. The
/// MACs to remove are compared first, a word each (a sorted list, searched):
/// only an item whose MAC matches costs a lookup of its network's name, so a
/// write that removes one endpoint of 10k pays 10k compares, not 10k hashes.
fn keep_mask<'k>(
    keys: impl Iterator<Item = (bool, &'k str, MacAddr)>,
    gone: &mut Gone,
) -> Vec<bool> {
    let mut macs: Vec<MacAddr> = gone.values().flat_map(|m| m.keys().map(|k| k.1)).collect();
    macs.sort_unstable_by_key(MacAddr::to_u64);
    keys.map(|(local, net, mac)| {
        if macs
            .binary_search_by_key(&mac.to_u64(), MacAddr::to_u64)
            .is_err()
        {
            return true;
        }
        match gone.get_mut(net).and_then(|m| m.get_mut(&(local, mac))) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        }
    })
    .collect()
}

fn retain_by<T>(list: &mut Vec<T>, keep: &[bool]) {
    let mut i = 0;
    list.retain(|_| {
        i += 1;
        keep.get(i - 1).copied().unwrap_or(true)
    });
}

/// `deltas` as journal ops ([`crate::persist::JournalOp`]), in canonical text.
pub fn journal_ops(deltas: &[Delta]) -> Vec<crate::persist::JournalOp> {
    use crate::persist::JournalOp as J;
    deltas
        .iter()
        .map(|d| match d {
            Delta::AddLocal(e) => J::AddEndpoint(e.into()),
            Delta::AddRemote(e) => J::AddRemoteEndpoint(e.into()),
            Delta::Remove {
                network,
                mac,
                local: true,
                ..
            } => J::DelEndpoint {
                network: network.clone(),
                mac: mac.to_string(),
            },
            Delta::Remove { network, mac, .. } => J::DelRemoteEndpoint {
                network: network.clone(),
                mac: mac.to_string(),
            },
            Delta::AddRoute(r) => J::AddRoute {
                tenant: r.tenant.clone(),
                prefix: r.prefix.to_string(),
                next_hop: match &r.target {
                    RouteTarget::NextHop { network, ip } => Some(crate::persist::JournalNextHop {
                        network: network.clone(),
                        ip: ip.to_string(),
                    }),
                    RouteTarget::Blackhole => None,
                },
            },
            Delta::RemoveRoute(r) => J::DelRoute {
                tenant: r.tenant.clone(),
                prefix: r.prefix.to_string(),
            },
            Delta::AddPort(_, p) => J::AddPort((**p).clone()),
            Delta::DelPort(name) => J::DelPort { name: name.clone() },
            Delta::AddNetwork(_, n) => J::AddNetwork((**n).clone()),
            Delta::PutService(_, j) => (**j).clone(),
            Delta::DelService(name) => J::DelService { name: name.clone() },
            Delta::Policy(j, _) => (**j).clone(),
        })
        .collect()
}

/// A journal op as the API op it was.
pub fn op_of(j: &crate::persist::JournalOp) -> api::Op {
    use crate::persist::JournalOp as J;
    let op = match j.clone() {
        J::AddEndpoint(e) => OpKind::AddEndpoint(e),
        J::AddRemoteEndpoint(e) => OpKind::AddRemoteEndpoint(e),
        J::DelEndpoint { network, mac } => OpKind::DelEndpoint(api::EndpointKey { network, mac }),
        J::DelRemoteEndpoint { network, mac } => {
            OpKind::DelRemoteEndpoint(api::EndpointKey { network, mac })
        }
        J::AddRoute {
            tenant,
            prefix,
            next_hop,
        } => OpKind::AddRoute(api::Route {
            tenant,
            prefix,
            target: Some(match next_hop {
                Some(h) => Target::NextHop(api::NextHop {
                    network: h.network,
                    ip: h.ip,
                }),
                None => Target::Blackhole(true),
            }),
        }),
        J::DelRoute { tenant, prefix } => OpKind::DelRoute(api::RouteKey { tenant, prefix }),
        J::AddPort(p) => OpKind::AddPort(p),
        J::DelPort { name } => OpKind::DelPort(name),
        J::AddNetwork(n) => OpKind::AddNetwork(n),
        J::AddService(v) => OpKind::AddService(v),
        J::DelService { name } => OpKind::DelService(name),
        J::AddBackend(b) => OpKind::AddBackend(b),
        J::DelBackend(k) => OpKind::DelBackend(k),
        J::SetBackend(k) => OpKind::SetBackend(k),
        J::AddPolicy(p) => OpKind::AddPolicy(p),
        J::DelPolicy { name } => OpKind::DelPolicy(name),
        J::AddClusterPolicy(p) => OpKind::AddClusterPolicy(p),
        J::DelClusterPolicy { name } => OpKind::DelClusterPolicy(name),
        J::AddPolicyEndpoint(e) => OpKind::AddPolicyEndpoint(e),
        J::DelPolicyEndpoint { name } => OpKind::DelPolicyEndpoint(name),
    };
    api::Op { op: Some(op) }
}
