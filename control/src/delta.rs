//! Writes that change only endpoints, applied as a delta.
//!
//! On a Kubernetes node the writes that come by the second are pods appearing
//! and going: endpoints, local and (far more of them) remote, against a state of
//! tens of thousands of endpoints and routes that stay. Validating and compiling
//! the whole state for each of them made a write cost what the state costs
//! (hundreds of milliseconds at 10k endpoints and 100k routes). A write whose ops
//! are all endpoint adds and deletes instead:
//!
//! - has each op's own fields checked here, exactly as the configuration file's
//!   rules check them (the same parsers, the same name grammar), plus what only
//!   the desired state knows: the port exists and is not switched by the classic
//!   L2 stage, the endpoint to delete exists (and with which addresses);
//! - is handed to the dataplane as [`EndpointDelta`]s, which it applies to the
//!   running snapshot with the overlay builder's own checks
//!   ([`OverlaySnapshot::patched`](dataplane::overlay::OverlaySnapshot::patched)),
//!   copying only the tables of the networks it touches;
//! - is persisted as one journal line ([`persist::append`](crate::persist::append)),
//!   not as a new state file.
//!
//! Its cost is the ops' plus one scan of the endpoint lists for deletes (a
//! comparison per endpoint, tens of microseconds at 10k), not a validation of
//! the whole state. Anything else — a port, a network, a route, the underlay, or
//! an endpoint op mixed with them — takes the whole-state path, which checks the
//! same rules over everything.

use std::collections::HashMap;
use std::net::IpAddr;

use dataplane::overlay::RemoteEndpointSpec;
use dataplane::MacAddr;

use crate::api::{self, op::Op as OpKind};
use crate::config::{parse_addresses, parse_ip, parse_mac, EndpointConfig, VswitchConfig};
use crate::names;

/// One endpoint change, typed and checked as far as the desired state can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointDelta {
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
}

/// Why a delta write was refused: the op and the reason, as [`ApiError::Op`]
/// reports it.
pub type Refusal = (usize, String);

/// The deltas of `ops` against `cfg`, when every op is an endpoint add or delete;
/// `None` when the write needs the whole-state path.
///
/// # Errors
/// The first op whose own fields are invalid, whose port cannot carry an
/// endpoint, that adds an endpoint that exists or deletes one that does not.
pub fn endpoint_deltas(
    cfg: &VswitchConfig,
    ops: &[api::Op],
) -> Option<Result<Vec<EndpointDelta>, Refusal>> {
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
    if !ops.iter().all(endpoint_op) {
        return None;
    }
    Some(Deltas::new(cfg).all(ops))
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
}

impl<'a> Deltas<'a> {
    fn new(cfg: &'a VswitchConfig) -> Self {
        Deltas {
            cfg,
            seen: HashMap::new(),
            by_key: None,
            ports: None,
        }
    }

    fn all(mut self, ops: &[api::Op]) -> Result<Vec<EndpointDelta>, Refusal> {
        if ops.len() > SCAN_OPS {
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

    fn one(&mut self, op: Option<&OpKind>) -> Result<EndpointDelta, String> {
        let err = |e: crate::config::ConfigError| e.to_string();
        match op {
            Some(OpKind::AddEndpoint(e)) => {
                names::check(&e.network).map_err(|r| format!("network: {r}"))?;
                names::check_with(&e.port, names::MAX_PORT_NAME)
                    .map_err(|r| format!("port: {r}"))?;
                let mac = parse_mac("endpoint", "mac", &e.mac).map_err(err)?;
                let ips = parse_addresses("endpoint", "ips", &e.ips).map_err(err)?;
                self.port_can_carry(&e.port, &e.network)?;
                self.add(&e.network, mac, (true, ips.clone()))?;
                self.port_map()
                    .entry(e.port.clone())
                    .or_insert_with(|| (e.network.clone(), 0))
                    .1 += 1;
                Ok(EndpointDelta::AddLocal(EndpointConfig {
                    network: e.network.clone(),
                    mac,
                    ips,
                    port: e.port.clone(),
                }))
            }
            Some(OpKind::AddRemoteEndpoint(e)) => {
                names::check(&e.network).map_err(|r| format!("network: {r}"))?;
                let mac = parse_mac("remote endpoint", "mac", &e.mac).map_err(err)?;
                let ips = parse_addresses("remote endpoint", "ips", &e.ips).map_err(err)?;
                let vtep = parse_ip("remote endpoint", "vtep", &e.vtep).map_err(err)?;
                self.add(&e.network, mac, (false, ips.clone()))?;
                Ok(EndpointDelta::AddRemote(RemoteEndpointSpec {
                    network: e.network.clone(),
                    mac,
                    ips,
                    vtep,
                }))
            }
            Some(OpKind::DelEndpoint(k)) => {
                let d = self.remove(&k.network, &k.mac, true)?;
                if let EndpointDelta::Remove { mac, .. } = &d {
                    self.forget_port_of(&k.network, *mac);
                }
                Ok(d)
            }
            Some(OpKind::DelRemoteEndpoint(k)) => self.remove(&k.network, &k.mac, false),
            _ => Err("not an endpoint op".into()),
        }
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

    fn remove(&mut self, network: &str, mac: &str, local: bool) -> Result<EndpointDelta, String> {
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
        Ok(EndpointDelta::Remove {
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
        if !self.cfg.ports.iter().any(|p| p.name == port) {
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
pub fn apply(cfg: &mut VswitchConfig, state: &mut api::DesiredState, deltas: &[EndpointDelta]) {
    apply_with(cfg, Some(state), deltas);
}

/// [`apply`] to a configuration alone (the dataplane's copy of what it runs).
pub fn apply_config(cfg: &mut VswitchConfig, deltas: &[EndpointDelta]) {
    apply_with(cfg, None, deltas);
}

fn apply_with(
    cfg: &mut VswitchConfig,
    mut state: Option<&mut api::DesiredState>,
    deltas: &[EndpointDelta],
) {
    // The write's net effect first: a removal of what the same write added
    // cancels the add; the other removals go in one pass per list (10k deletes
    // would otherwise shift the lists 10k times), then the adds, in order.
    let mut adds: Vec<Option<&EndpointDelta>> = Vec::new();
    let mut pending: HashMap<(bool, &str, MacAddr), usize> = HashMap::new();
    let mut gone: Gone = HashMap::new();
    for d in deltas {
        match d {
            EndpointDelta::AddLocal(e) => {
                pending.insert((true, e.network.as_str(), e.mac), adds.len());
                adds.push(Some(d));
            }
            EndpointDelta::AddRemote(e) => {
                pending.insert((false, e.network.as_str(), e.mac), adds.len());
                adds.push(Some(d));
            }
            EndpointDelta::Remove {
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
    let texts = |ips: &[IpAddr]| ips.iter().map(ToString::to_string).collect();
    for d in adds.into_iter().flatten() {
        match d {
            EndpointDelta::AddLocal(e) => {
                if let Some(s) = state.as_deref_mut() {
                    s.endpoints.push(api::Endpoint {
                        network: e.network.clone(),
                        mac: e.mac.to_string(),
                        ips: texts(&e.ips),
                        port: e.port.clone(),
                    });
                }
                cfg.endpoints.push(e.clone());
            }
            EndpointDelta::AddRemote(e) => {
                if let Some(s) = state.as_deref_mut() {
                    s.remote_endpoints.push(api::RemoteEndpoint {
                        network: e.network.clone(),
                        mac: e.mac.to_string(),
                        ips: texts(&e.ips),
                        vtep: e.vtep.to_string(),
                    });
                }
                cfg.remote_endpoints.push(e.clone());
            }
            EndpointDelta::Remove { .. } => {}
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
pub fn journal_ops(deltas: &[EndpointDelta]) -> Vec<crate::persist::JournalOp> {
    use crate::persist::JournalOp as J;
    let texts = |ips: &[IpAddr]| ips.iter().map(ToString::to_string).collect();
    deltas
        .iter()
        .map(|d| match d {
            EndpointDelta::AddLocal(e) => J::AddEndpoint {
                network: e.network.clone(),
                mac: e.mac.to_string(),
                ips: texts(&e.ips),
                port: e.port.clone(),
            },
            EndpointDelta::AddRemote(e) => J::AddRemoteEndpoint {
                network: e.network.clone(),
                mac: e.mac.to_string(),
                ips: texts(&e.ips),
                vtep: e.vtep.to_string(),
            },
            EndpointDelta::Remove {
                network,
                mac,
                local: true,
                ..
            } => J::DelEndpoint {
                network: network.clone(),
                mac: mac.to_string(),
            },
            EndpointDelta::Remove { network, mac, .. } => J::DelRemoteEndpoint {
                network: network.clone(),
                mac: mac.to_string(),
            },
        })
        .collect()
}

/// A journal op as the API op it was.
pub fn op_of(j: &crate::persist::JournalOp) -> api::Op {
    use crate::persist::JournalOp as J;
    let op = match j.clone() {
        J::AddEndpoint {
            network,
            mac,
            ips,
            port,
        } => OpKind::AddEndpoint(api::Endpoint {
            network,
            mac,
            ips,
            port,
        }),
        J::AddRemoteEndpoint {
            network,
            mac,
            ips,
            vtep,
        } => OpKind::AddRemoteEndpoint(api::RemoteEndpoint {
            network,
            mac,
            ips,
            vtep,
        }),
        J::DelEndpoint { network, mac } => OpKind::DelEndpoint(api::EndpointKey { network, mac }),
        J::DelRemoteEndpoint { network, mac } => {
            OpKind::DelRemoteEndpoint(api::EndpointKey { network, mac })
        }
    };
    api::Op { op: Some(op) }
}
