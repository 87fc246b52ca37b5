//! The services of a snapshot: what the LB stage reads to turn a packet to a
//! virtual IP into a backend.
//!
//! # Design
//! A [`Services`] holds every service as an `Arc<`[`ServiceEntry`]`>` (its
//! typed description and its [`BackendSet`]: backends plus one Maglev table,
//! shared by all the service's ports) and two frontend maps:
//!
//! - `(network, address, port, protocol) → (service, port index)` for the
//!   ClusterIP and every external / load-balancer IP of every port;
//! - `(node port, protocol) → (service, port index)` for NodePorts, which answer
//!   on every address of the node (the stage decides which addresses those are).
//!
//! **Sharing.** A snapshot is immutable. A write builds the next `Services`
//! with [`Services::patched`] (one service changed: its table rebuilt, every
//! other service's `Arc` carried over) or [`Services::build`] (a whole state:
//! a service whose backends and table size did not change keeps its
//! `BackendSet` from the previous snapshot). Tables are built there, on the
//! control thread, before the snapshot is published: never on a worker. The
//! snapshot holds the `Services` in an `Arc`, so writes that change no service
//! share it whole.
//!
//! **Lookups** ([`frontend`](Services::frontend), [`node_port`](Services::node_port),
//! [`pick`](Services::pick)) are a hash probe on a `Copy` key and a table
//! index: no allocation, no lock.
//!
//! **Checks.** [`check`] is the one place that refuses what concerns several
//! services (a name or frontend used twice, a node port taken, the totals);
//! the control plane's whole-state validation calls it without building any
//! table, and [`Services::patched`] applies the same rules to the services a
//! write changes, against the frontend maps.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use super::maglev::{BackendSet, BackendState, MaglevBackend, MaglevError};
use crate::overlay::NetworkId;

/// The most services one switch holds.
pub const MAX_SERVICES: usize = 10_000;
/// The most ports one service has (a rebuild costs the same however many).
pub const MAX_PORTS: usize = 1024;
/// The most backends one service has.
pub const MAX_BACKENDS: usize = 4096;
/// The most external / load-balancer IPs one service has.
pub const MAX_EXTERNAL_IPS: usize = 16;
/// The most table slots over all services (2 bytes each: 512 MiB): what one
/// API caller can make the switch allocate.
pub const MAX_TOTAL_SLOTS: u64 = 256 << 20;
/// Kubernetes' default ClientIP affinity timeout, in seconds.
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;

/// A service port's transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    #[inline]
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The protocol of IP protocol number `n`, if a service can carry it.
    #[inline]
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Kubernetes' spelling: `TCP`, `UDP`, `SCTP`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ClientIP session affinity, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    /// Each new connection picks by its own flow hash.
    None,
    /// A client keeps its backend for `timeout_s` seconds after its last
    /// connection.
    ClientIp {
        /// Seconds.
        timeout_s: u32,
    },
}

/// One port of a service, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortSpec {
    /// Its name (may be empty for a single-port service).
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// The port on the ClusterIP and the external IPs.
    pub port: u16,
    /// The port on the backends.
    pub target_port: u16,
    /// The port on every node address, if any.
    pub node_port: Option<u16>,
}

/// One backend, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Its address in the service's network.
    pub address: IpAddr,
    /// 0–65535 (0: drain).
    pub weight: u16,
    /// Active, draining or down.
    pub state: BackendState,
}

/// A service, typed: what the control plane's `[[service]]` parses to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its name.
    pub name: String,
    /// Its network (the zone its frontends and backends are in).
    pub network: String,
    /// The ClusterIP.
    pub cluster_ip: IpAddr,
    /// Its ports.
    pub ports: Vec<ServicePortSpec>,
    /// External and load-balancer IPs.
    pub external_ips: Vec<IpAddr>,
    /// Session affinity.
    pub affinity: Affinity,
    /// The Maglev table size (a prime).
    pub table_size: u32,
    /// Its backends, in the order the table indexes them.
    pub backends: Vec<BackendSpec>,
}

impl ServiceSpec {
    /// Its frontends on addresses: `(address, port, protocol, port index)`.
    fn frontends(&self) -> impl Iterator<Item = (IpAddr, u16, Protocol, u16)> + '_ {
        self.ports.iter().enumerate().flat_map(move |(i, p)| {
            std::iter::once(self.cluster_ip)
                .chain(self.external_ips.iter().copied())
                .map(move |ip| (ip, p.port, p.protocol, i as u16))
        })
    }

    /// Its node ports: `(node port, protocol, port index)`.
    fn node_ports(&self) -> impl Iterator<Item = (u16, Protocol, u16)> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.node_port.map(|n| (n, p.protocol, i as u16)))
    }

    /// The Maglev backends of the table: identities from the addresses, so a
    /// backend keeps its permutation across rebuilds whatever its position.
    fn maglev_backends(&self) -> Vec<MaglevBackend> {
        self.backends
            .iter()
            .map(|b| MaglevBackend {
                id: address_id(b.address),
                weight: b.weight,
                state: b.state,
            })
            .collect()
    }
}

/// A stable 64-bit identity of an address (FNV-1a over its 16-byte form): the
/// same on every build and every run, so a restart rebuilds the same tables.
pub fn address_id(a: IpAddr) -> u64 {
    let bytes = match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A service's index in its snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceId(pub u32);

/// What a frontend leads to: the service and which of its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frontend {
    /// The service.
    pub service: ServiceId,
    /// Index into its `ports`.
    pub port: u16,
}

/// The key of an address frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrontendKey {
    /// The network (zone).
    pub net: NetworkId,
    /// The ClusterIP or an external IP.
    pub ip: IpAddr,
    /// The service port.
    pub port: u16,
    /// Its protocol.
    pub proto: Protocol,
}

/// One service of a snapshot.
#[derive(Debug)]
pub struct ServiceEntry {
    /// Its description.
    pub spec: ServiceSpec,
    /// Its network's id in the snapshot's overlay.
    pub network: NetworkId,
    /// Its backends' table, shared by all its ports (and with the previous
    /// snapshot while the backends did not change).
    pub set: Arc<BackendSet>,
    /// Changes with every write of the service (never the same for two
    /// writes of one slot, short of 2³² writes): a flow-table entry compiled
    /// for one of its connections holds it, and a hit that finds another one
    /// goes back to the stages (`lb/mod.rs`).
    pub version: u32,
}

impl ServiceEntry {
    /// The backend for a new connection with this flow hash (only active
    /// backends of non-zero weight hold slots).
    #[inline]
    pub fn pick(&self, flow_hash: u32) -> &BackendSpec {
        &self.spec.backends[usize::from(self.set.table.lookup(flow_hash))]
    }

    /// The backend of address `addr`, if the service has it.
    #[inline]
    pub fn backend(&self, addr: IpAddr) -> Option<&BackendSpec> {
        self.spec.backends.iter().find(|b| b.address == addr)
    }

    /// Slots per backend, in the order of `spec.backends`.
    pub fn slot_counts(&self) -> Vec<u32> {
        self.set.table.counts(self.spec.backends.len())
    }
}

/// Why a set of services was refused. Each message names the service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// Two services of one name.
    #[error("service {0:?} is declared twice")]
    DuplicateName(String),
    /// More services than [`MAX_SERVICES`].
    #[error("{count} services, at most {MAX_SERVICES}")]
    TooMany {
        /// How many.
        count: usize,
    },
    /// The tables of all services together exceed [`MAX_TOTAL_SLOTS`].
    #[error("service {service:?}: table_size: the services' tables would hold {total} slots, at most {MAX_TOTAL_SLOTS}")]
    TooManySlots {
        /// The service that went over.
        service: String,
        /// The total.
        total: u64,
    },
    /// The network is not in the snapshot.
    #[error("service {service:?}: network {network:?} does not exist")]
    UnknownNetwork {
        /// The service.
        service: String,
        /// Its network.
        network: String,
    },
    /// A frontend another service (or another port of this one) has.
    #[error("service {service:?}: ports[{port}]: frontend {frontend} in network {network:?} is already service {owner:?}'s")]
    FrontendTaken {
        /// The service.
        service: String,
        /// Its port index.
        port: u16,
        /// `10.96.0.10:80/TCP`.
        frontend: String,
        /// The network.
        network: String,
        /// Who has it.
        owner: String,
    },
    /// A node port another service (or port) has.
    #[error("service {service:?}: ports[{port}].node_port: {node_port}/{proto} is already service {owner:?}'s")]
    NodePortTaken {
        /// The service.
        service: String,
        /// Its port index.
        port: u16,
        /// The node port.
        node_port: u16,
        /// Its protocol.
        proto: Protocol,
        /// Who has it.
        owner: String,
    },
    /// The table does not build.
    #[error("service {service:?}: {error}")]
    Table {
        /// The service.
        service: String,
        /// Why.
        error: MaglevError,
    },
    /// A change removes a service that is not there.
    #[error("service {0:?} does not exist")]
    NoSuchService(String),
}

fn frontend_text(ip: IpAddr, port: u16, proto: Protocol) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}/{proto}"),
        IpAddr::V6(a) => format!("[{a}]:{port}/{proto}"),
    }
}

/// Claims `spec`'s frontends and node ports in the maps (keys made with
/// `net`), refusing one that is taken; `owner` names the holder of a value.
fn claim<N: Copy + Eq + Hash, V: Copy>(
    spec: &ServiceSpec,
    net: N,
    value: impl Fn(u16) -> V,
    owner: impl Fn(V) -> String,
    addrs: &mut HashMap<(N, IpAddr, u16, Protocol), V>,
    nodes: &mut HashMap<(u16, Protocol), V>,
) -> Result<(), ServiceError> {
    for (ip, port, proto, i) in spec.frontends() {
        if let Some(had) = addrs.insert((net, ip, port, proto), value(i)) {
            return Err(ServiceError::FrontendTaken {
                service: spec.name.clone(),
                port: i,
                frontend: frontend_text(ip, port, proto),
                network: spec.network.clone(),
                owner: owner(had),
            });
        }
    }
    for (n, proto, i) in spec.node_ports() {
        if let Some(had) = nodes.insert((n, proto), value(i)) {
            return Err(ServiceError::NodePortTaken {
                service: spec.name.clone(),
                port: i,
                node_port: n,
                proto,
                owner: owner(had),
            });
        }
    }
    Ok(())
}

/// The rules over several services, without building a table: names unique,
/// frontends and node ports not shared, the totals. Each service's own fields
/// (addresses, ranges, the table size being prime, its network existing) are
/// the caller's checks.
///
/// # Errors
/// The first service that breaks one.
pub fn check(specs: &[ServiceSpec]) -> Result<(), ServiceError> {
    if specs.len() > MAX_SERVICES {
        return Err(ServiceError::TooMany { count: specs.len() });
    }
    let mut names: HashMap<&str, usize> = HashMap::with_capacity(specs.len());
    let mut addrs = HashMap::new();
    let mut nodes = HashMap::new();
    let mut total = 0u64;
    for (k, s) in specs.iter().enumerate() {
        if names.insert(&s.name, k).is_some() {
            return Err(ServiceError::DuplicateName(s.name.clone()));
        }
        total += u64::from(s.table_size);
        if total > MAX_TOTAL_SLOTS {
            return Err(ServiceError::TooManySlots {
                service: s.name.clone(),
                total,
            });
        }
        claim(
            s,
            s.network.as_str(),
            |_| k,
            |had| specs[had].name.clone(),
            &mut addrs,
            &mut nodes,
        )?;
    }
    Ok(())
}

/// One change of [`Services::patched`].
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceChange {
    /// Adds the service, or replaces the one of its name.
    Put(ServiceSpec),
    /// Removes the service of this name.
    Remove(String),
}

/// The services of a snapshot (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Services {
    slots: Vec<Option<Arc<ServiceEntry>>>,
    by_name: HashMap<String, ServiceId>,
    frontends: HashMap<FrontendKey, Frontend>,
    node_ports: HashMap<(u16, Protocol), Frontend>,
    total_slots: u64,
    /// Services per network, indexed by [`NetworkId`]: a network with one is
    /// tracked whatever its `conntrack` setting (`lb/mod.rs`).
    per_network: Vec<u32>,
    /// The version the next service written gets.
    next_version: u32,
}

impl Services {
    /// No service.
    pub fn empty() -> Self {
        Services::default()
    }

    /// The number of services.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// No service at all.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The service a packet to `ip:port` (protocol `proto`) in network `net`
    /// is for: its ClusterIP or an external IP.
    #[inline]
    pub fn frontend(
        &self,
        net: NetworkId,
        ip: IpAddr,
        port: u16,
        proto: Protocol,
    ) -> Option<Frontend> {
        if self.frontends.is_empty() {
            return None;
        }
        self.frontends
            .get(&FrontendKey {
                net,
                ip,
                port,
                proto,
            })
            .copied()
    }

    /// Whether network `net` has a service: then it is tracked.
    #[inline]
    pub fn serves(&self, net: NetworkId) -> bool {
        self.per_network
            .get(usize::from(net.0))
            .is_some_and(|&n| n != 0)
    }

    /// The version of service `id` (see [`ServiceEntry::version`]).
    #[inline]
    pub fn version(&self, id: ServiceId) -> Option<u32> {
        self.service(id).map(|s| s.version)
    }

    /// The service whose NodePort is `port` (protocol `proto`).
    #[inline]
    pub fn node_port(&self, port: u16, proto: Protocol) -> Option<Frontend> {
        if self.node_ports.is_empty() {
            return None;
        }
        self.node_ports.get(&(port, proto)).copied()
    }

    /// Service `id`.
    #[inline]
    pub fn service(&self, id: ServiceId) -> Option<&ServiceEntry> {
        self.slots.get(id.0 as usize)?.as_deref()
    }

    /// The backend of service `id` for a new connection with this flow hash;
    /// draining and down backends (and weight 0) are never picked.
    #[inline]
    pub fn pick(&self, id: ServiceId, flow_hash: u32) -> Option<&BackendSpec> {
        self.service(id).map(|s| s.pick(flow_hash))
    }

    /// The service named `name` (control-plane use).
    pub fn by_name(&self, name: &str) -> Option<(ServiceId, &ServiceEntry)> {
        let id = *self.by_name.get(name)?;
        Some((id, self.service(id)?))
    }

    /// The `Arc` of service `name`, to tell whether two snapshots share it.
    pub fn entry_arc(&self, name: &str) -> Option<&Arc<ServiceEntry>> {
        let id = self.by_name.get(name)?;
        self.slots.get(id.0 as usize)?.as_ref()
    }

    /// Every service, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (ServiceId, &ServiceEntry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((ServiceId(i as u32), s.as_deref()?)))
    }

    /// The services of `specs`, with network ids from `net_of`. A service
    /// whose backends and table size equal those of its namesake in `prev`
    /// keeps that one's table.
    ///
    /// # Errors
    /// [`check`]'s, an unknown network, or a table that does not build.
    pub fn build(
        specs: &[ServiceSpec],
        net_of: impl Fn(&str) -> Option<NetworkId>,
        prev: &Services,
    ) -> Result<Services, ServiceError> {
        check(specs)?;
        let mut next = Services {
            next_version: prev.next_version,
            ..Services::default()
        };
        for s in specs {
            let reuse = prev.by_name(&s.name).map(|(_, e)| e);
            next.put(s.clone(), &net_of, reuse).map_err(|(_, e)| e)?;
        }
        Ok(next)
    }

    /// This set with `changes` applied in order: only the services they name
    /// change (a table is built only when a service's backends or table size
    /// changed); every other service's `Arc` is shared with `self`.
    ///
    /// # Errors
    /// The index of the change refused and why; `self` is unchanged.
    pub fn patched(
        &self,
        changes: &[ServiceChange],
        net_of: impl Fn(&str) -> Option<NetworkId>,
    ) -> Result<Services, (usize, ServiceError)> {
        let mut next = self.clone();
        for (i, c) in changes.iter().enumerate() {
            match c {
                ServiceChange::Put(spec) => {
                    let old = next.remove(&spec.name);
                    next.put(spec.clone(), &net_of, old.as_deref())
                        .map_err(|(_, e)| (i, e))?;
                }
                ServiceChange::Remove(name) => {
                    if next.remove(name).is_none() {
                        return Err((i, ServiceError::NoSuchService(name.clone())));
                    }
                }
            }
        }
        Ok(next)
    }

    /// Takes service `name` out (its slot left free), returning it.
    fn remove(&mut self, name: &str) -> Option<Arc<ServiceEntry>> {
        let id = self.by_name.remove(name)?;
        let e = self.slots[id.0 as usize].take()?;
        for (ip, port, proto, _) in e.spec.frontends() {
            let key = FrontendKey {
                net: e.network,
                ip,
                port,
                proto,
            };
            if self.frontends.get(&key).is_some_and(|f| f.service == id) {
                self.frontends.remove(&key);
            }
        }
        for (n, proto, _) in e.spec.node_ports() {
            if self
                .node_ports
                .get(&(n, proto))
                .is_some_and(|f| f.service == id)
            {
                self.node_ports.remove(&(n, proto));
            }
        }
        self.total_slots -= u64::from(e.spec.table_size);
        if let Some(n) = self.per_network.get_mut(usize::from(e.network.0)) {
            *n -= 1;
        }
        Some(e)
    }

    /// Adds `spec`, reusing `reuse`'s table when the backends match.
    fn put(
        &mut self,
        spec: ServiceSpec,
        net_of: &impl Fn(&str) -> Option<NetworkId>,
        reuse: Option<&ServiceEntry>,
    ) -> Result<ServiceId, (ServiceId, ServiceError)> {
        let fail = |e| (ServiceId(u32::MAX), e);
        if self.by_name.contains_key(&spec.name) {
            return Err(fail(ServiceError::DuplicateName(spec.name.clone())));
        }
        if self.by_name.len() >= MAX_SERVICES {
            return Err(fail(ServiceError::TooMany {
                count: self.by_name.len() + 1,
            }));
        }
        let total = self.total_slots + u64::from(spec.table_size);
        if total > MAX_TOTAL_SLOTS {
            return Err(fail(ServiceError::TooManySlots {
                service: spec.name.clone(),
                total,
            }));
        }
        let network = net_of(&spec.network).ok_or_else(|| {
            fail(ServiceError::UnknownNetwork {
                service: spec.name.clone(),
                network: spec.network.clone(),
            })
        })?;
        let id = match self.slots.iter().position(Option::is_none) {
            Some(free) => ServiceId(free as u32),
            None => ServiceId(self.slots.len() as u32),
        };
        // Claimed on copies: a refusal leaves the maps as they were.
        let (mut addrs, mut nodes) = (HashMap::new(), HashMap::new());
        let value = |port| Frontend { service: id, port };
        claim(
            &spec,
            network,
            value,
            |_| String::new(),
            &mut addrs,
            &mut nodes,
        )
        .map_err(|e| fail(rename_owner(e, &spec.name)))?;
        let owner = |f: &Frontend| {
            self.service(f.service)
                .map_or_else(String::new, |e| e.spec.name.clone())
        };
        for ((net, ip, port, proto), f) in &addrs {
            let key = FrontendKey {
                net: *net,
                ip: *ip,
                port: *port,
                proto: *proto,
            };
            if let Some(had) = self.frontends.get(&key) {
                return Err(fail(ServiceError::FrontendTaken {
                    service: spec.name.clone(),
                    port: f.port,
                    frontend: frontend_text(*ip, *port, *proto),
                    network: spec.network.clone(),
                    owner: owner(had),
                }));
            }
        }
        for ((n, proto), f) in &nodes {
            if let Some(had) = self.node_ports.get(&(*n, *proto)) {
                return Err(fail(ServiceError::NodePortTaken {
                    service: spec.name.clone(),
                    port: f.port,
                    node_port: *n,
                    proto: *proto,
                    owner: owner(had),
                }));
            }
        }
        let set = match reuse {
            Some(old)
                if old.spec.backends == spec.backends && old.spec.table_size == spec.table_size =>
            {
                Arc::clone(&old.set)
            }
            _ => BackendSet::new(spec.table_size, &spec.maglev_backends()).map_err(|error| {
                fail(ServiceError::Table {
                    service: spec.name.clone(),
                    error,
                })
            })?,
        };
        for ((net, ip, port, proto), f) in addrs {
            self.frontends.insert(
                FrontendKey {
                    net,
                    ip,
                    port,
                    proto,
                },
                f,
            );
        }
        self.node_ports.extend(nodes);
        self.total_slots = total;
        self.by_name.insert(spec.name.clone(), id);
        let at = usize::from(network.0);
        if self.per_network.len() <= at {
            self.per_network.resize(at + 1, 0);
        }
        self.per_network[at] += 1;
        // An unchanged service keeps its version: its connections' flow
        // entries stay valid across a write of another service.
        let version = match reuse {
            Some(old) if old.spec == spec && old.network == network => old.version,
            _ => {
                self.next_version = self.next_version.wrapping_add(1);
                self.next_version
            }
        };
        let entry = Arc::new(ServiceEntry {
            spec,
            network,
            set,
            version,
        });
        match self.slots.get_mut(id.0 as usize) {
            Some(slot) => *slot = Some(entry),
            None => self.slots.push(Some(entry)),
        }
        Ok(id)
    }
}

/// A clash inside one service names the service itself as the holder.
fn rename_owner(e: ServiceError, name: &str) -> ServiceError {
    match e {
        ServiceError::FrontendTaken {
            service,
            port,
            frontend,
            network,
            ..
        } => ServiceError::FrontendTaken {
            service,
            port,
            frontend,
            network,
            owner: name.to_owned(),
        },
        ServiceError::NodePortTaken {
            service,
            port,
            node_port,
            proto,
            ..
        } => ServiceError::NodePortTaken {
            service,
            port,
            node_port,
            proto,
            owner: name.to_owned(),
        },
        other => other,
    }
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
