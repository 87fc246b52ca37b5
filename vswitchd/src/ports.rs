//! The running dataplane as the control thread sees it: ports by index, the
//! workers' command channels, and the published snapshot.
//!
//! Ports come and go at runtime. Adding one probes the DPDK device, configures and
//! starts it (or, for a `kernel` port, opens its packet socket: no ethdev), and
//! hands its queues to the workers through their command channels;
//! a worker picks them up between two poll rounds. Removing one first has every
//! worker let go of its queues and acknowledge (the grace period), and only then
//! stops and closes the device, so no worker ever polls a closed port. A port keeps
//! its index for as long as it exists; indices of removed ports are reused.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use control::compile::PortIndex;
use control::config::{PortConfig, ProfileConfig, VswitchConfig};
use control::delta::Delta;
use control::service::DeltaError;
use dataplane::overlay::{LocalEndpointSpec, NeighborTable, OverlayChange};
use dataplane::pipeline::lb::services::ServiceChange;
use dataplane::{Pipeline, PortIdx, SnapshotCell, WorkerCommand, MAX_PORTS};
use pmd_shims::profile::PortProfile;
use pmd_shims::{
    Mempool, Port, PortConfig as DpdkPortConfig, PortRxQueue, SocketPort, SwitchRxQueue,
    SwitchTxQueue,
};
use tracing::{info, warn};

use crate::device::PortDevice;
use crate::profiles::Backend;

/// A worker's command channel.
pub type CommandSender = crossbeam::channel::Sender<WorkerCommand<SwitchRxQueue, SwitchTxQueue>>;

/// One running port.
pub struct PortRuntime {
    /// Its configuration (name, profile, group, worker, MTU).
    pub config: PortConfig,
    /// The DPDK driver name (`packet_socket` for a `kernel` port).
    pub driver: String,
    /// The device: a DPDK port or a packet socket.
    pub port: PortDevice,
}

/// A port's queues for one worker, held until the snapshot that knows the port is
/// published.
struct PendingAdd {
    worker: usize,
    cmd: WorkerCommand<SwitchRxQueue, SwitchTxQueue>,
}

/// A port's device, opened and started, with its queues.
struct Opened {
    device: PortDevice,
    driver: String,
    rx: Vec<SwitchRxQueue>,
    tx: Vec<SwitchTxQueue>,
    /// Microseconds the probe (or the socket's opening) took.
    probe_us: u64,
    /// Microseconds configuring and starting it took.
    setup_us: u64,
}

/// How long a worker may take to let go of a removed port's queues.
const GRACE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first wait before a port that is not plugged is tried again; it doubles
/// after each failure up to [`RETRY_MAX`]. A missing interface fails the
/// profile's check (a `stat`) before any device is probed, so a try costs
/// next to nothing while the interface stays gone.
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(8);

/// The dataplane's ports, workers and snapshot, owned by the control side.
pub struct Dataplane {
    slots: Vec<Option<PortRuntime>>,
    pool: Arc<Mempool>,
    rx_desc: u16,
    tx_desc: u16,
    commands: Vec<CommandSender>,
    snapshot: Arc<SnapshotCell<Pipeline>>,
    neighbors: Arc<Mutex<NeighborTable>>,
    running: VswitchConfig,
    /// Ports of `running` whose device could not be opened at start (an
    /// interface gone while the switch was down), with the reason. They stay in
    /// the desired state, so deleting them works, but the snapshots leave them
    /// out, with everything that names them (their endpoints, L2 entries and
    /// patches).
    unplugged: BTreeMap<String, (PortConfig, String)>,
    /// When each port of `unplugged` is tried again, and the wait after that
    /// ([`retry_unplugged`](Self::retry_unplugged)).
    retries: BTreeMap<String, (Instant, Duration)>,
    /// Each running port's link as [`log_link_changes`](Self::log_link_changes)
    /// last saw it.
    links: BTreeMap<String, bool>,
    /// Sockets ready for `kernel` ports, started with the first of them.
    socket_reserve: Option<crate::socket_reserve::SocketReserve>,
    /// DPDK vdev names must stay unique for the process's life: never reuse one.
    next_instance: u32,
    round_robin: usize,
}

impl Dataplane {
    /// A dataplane with no ports yet, for `workers` (one command channel each).
    pub fn new(
        pool: Arc<Mempool>,
        cfg: &VswitchConfig,
        commands: Vec<CommandSender>,
        snapshot: Arc<SnapshotCell<Pipeline>>,
        neighbors: Arc<Mutex<NeighborTable>>,
    ) -> Dataplane {
        let mut empty = cfg.clone();
        empty.ports.clear();
        empty.patches.clear();
        empty.l2.clear();
        empty.underlay = None;
        empty.networks.clear();
        empty.endpoints.clear();
        empty.remote_endpoints.clear();
        empty.routes.clear();
        Dataplane {
            slots: Vec::new(),
            pool,
            rx_desc: cfg.dataplane.rx_desc,
            tx_desc: cfg.dataplane.tx_desc,
            commands,
            snapshot,
            neighbors,
            running: empty,
            unplugged: BTreeMap::new(),
            retries: BTreeMap::new(),
            links: BTreeMap::new(),
            socket_reserve: None,
            next_instance: 0,
            round_robin: 0,
        }
    }

    /// The configuration the dataplane runs.
    pub fn running(&self) -> &VswitchConfig {
        &self.running
    }

    /// Ports configured but not running, with why ([`apply_start`](Self::apply_start)).
    pub fn unplugged(&self) -> impl Iterator<Item = (&PortConfig, &str)> {
        self.unplugged.values().map(|(pc, why)| (pc, why.as_str()))
    }

    /// Logs each port whose link went up or down since the last call (a
    /// vhost-user port's guest connecting or leaving, a veth's peer going
    /// down), once per change. DPDK's link is read without waiting.
    pub fn log_link_changes(&mut self) {
        let mut now = BTreeMap::new();
        for (_, rt) in self.ports() {
            let up = rt.port.link().up;
            if self
                .links
                .get(&rt.config.name)
                .is_some_and(|&was| was != up)
            {
                info!(port = %rt.config.name, up, "link {}", if up { "up" } else { "down" });
            }
            now.insert(rt.config.name.clone(), up);
        }
        self.links = now;
    }

    /// True when a port of the desired state is not plugged.
    pub fn has_unplugged(&self) -> bool {
        !self.unplugged.is_empty()
    }

    /// `cfg` without the ports that are not plugged and what names them: what
    /// the snapshots are compiled from. Borrowed when every port runs.
    fn plugged_only<'a>(&self, cfg: &'a VswitchConfig) -> std::borrow::Cow<'a, VswitchConfig> {
        if self.unplugged.is_empty() {
            return std::borrow::Cow::Borrowed(cfg);
        }
        let mut c = cfg.clone();
        let gone: Vec<String> = self.unplugged.keys().cloned().collect();
        strip_ports(&mut c, &gone);
        std::borrow::Cow::Owned(c)
    }

    /// The published snapshot cell.
    pub fn snapshot(&self) -> &Arc<SnapshotCell<Pipeline>> {
        &self.snapshot
    }

    /// Port name → index of every running port.
    pub fn index(&self) -> PortIndex {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .map(|p| (p.config.name.clone(), PortIdx(i as u16)))
            })
            .collect()
    }

    /// Running ports with their indices.
    pub fn ports(&self) -> impl Iterator<Item = (PortIdx, &PortRuntime)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|p| (PortIdx(i as u16), p)))
    }

    /// The underlay neighbour map as published.
    pub fn neighbor_map(&self) -> dataplane::overlay::NeighborMap {
        let cell = lock_neighbors(&self.neighbors).reader();
        let map = cell.load_full();
        (*map).clone()
    }

    /// The mempool.
    pub fn pool(&self) -> &Arc<Mempool> {
        &self.pool
    }

    fn workers(&self) -> usize {
        self.commands.len()
    }

    /// The workers' command channels, in worker order.
    pub fn commands(&self) -> &[CommandSender] {
        &self.commands
    }

    /// Opens, configures and starts the DPDK port of `pc` and returns its index with
    /// the commands that hand its queues to the workers — sent only once a snapshot
    /// that knows the port is published, so no worker receives from a port its
    /// tables do not know.
    fn plug(&mut self, pc: &PortConfig) -> Result<(PortIdx, Vec<PendingAdd>)> {
        let idx = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.slots.len() < MAX_PORTS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => {
                return Err(anyhow!(
                    "port {:?}: all {MAX_PORTS} port slots are in use",
                    pc.name
                ))
            }
        };
        let workers = self.workers();
        let opened = match crate::profiles::port_backend(pc, workers as u16) {
            Backend::Ethdev(profile) => self.open_ethdev(pc, &profile)?,
            Backend::Socket { iface } => self.open_socket(pc, &iface)?,
        };
        let Opened {
            device,
            driver,
            rx,
            tx,
            probe_us,
            setup_us,
        } = opened;
        let (nb_rxq, nb_txq) = (rx.len(), tx.len());
        let first = pc.worker.unwrap_or_else(|| {
            let w = self.round_robin % workers;
            self.round_robin += 1;
            w
        });
        let mut per_worker_rx: Vec<Vec<SwitchRxQueue>> = (0..workers).map(|_| Vec::new()).collect();
        for (q, rxq) in rx.into_iter().enumerate() {
            per_worker_rx[(first + q) % workers].push(rxq);
        }
        // Worker w sends on queue w % nb_txq: its own when no other worker
        // maps there, else shared and taken per burst.
        let mut tx = dataplane::assign_tx_queues(tx, workers).into_iter();
        let port_idx = PortIdx(idx as u16);
        let pending = per_worker_rx
            .into_iter()
            .enumerate()
            .map(|(worker, rxqs)| PendingAdd {
                worker,
                cmd: WorkerCommand::AddPort {
                    port: port_idx,
                    rx: rxqs,
                    tx: tx.next().flatten(),
                },
            })
            .collect();
        info!(port = %pc.name, index = idx, id = ?device.ethdev_id(), driver = %driver, nb_rxq, nb_txq, link_up = device.link().up, mtu = ?device.mtu(), dpdk_mtu = ?device.dpdk_mtu(), probe_us, setup_us, "port up");
        self.slots[idx] = Some(PortRuntime {
            config: pc.clone(),
            driver,
            port: device,
        });
        Ok((port_idx, pending))
    }

    /// Probes, configures and starts the DPDK port of `pc`.
    fn open_ethdev(&mut self, pc: &PortConfig, profile: &PortProfile) -> Result<Opened> {
        let workers = self.workers();
        profile
            .check()
            .map_err(|e| anyhow!("port {:?}: {e}", pc.name))?;
        // DPDK refuses a port past its build's limit with a bare "Operation
        // not permitted": say what it is, with the number.
        let (used, most) = Port::ethdev_usage();
        if used >= most {
            return Err(anyhow!(
                "port {:?}: the switch's DPDK ports are all in use ({used} of {most}: this DPDK build's RTE_MAX_ETHPORTS); delete a port first",
                pc.name
            ));
        }
        let devargs = profile.devargs(self.next_instance);
        self.next_instance += 1;
        let t_probe = Instant::now();
        let mut port = Port::probe(&devargs)
            .with_context(|| format!("port {:?}: probe {devargs}", pc.name))?;
        let probe_us = t_probe.elapsed().as_micros() as u64;
        let dev = port.info();
        // af_packet spreads received frames over its queue pairs (PACKET_FANOUT),
        // so every pair must be polled; a vhost-user (or virtio-user) port with
        // N queue pairs gets whatever the guest sends on any of its N tx
        // queues, so all N are polled, spread over the workers below; other
        // ports get one rx queue.
        let nb_rxq = match *profile {
            PortProfile::AfPacket { qpairs, .. } => qpairs,
            PortProfile::VhostUser { queues, .. } | PortProfile::VirtioUser { queues, .. } => {
                queues
            }
            _ => 1,
        }
        .min(dev.max_rx_queues.max(1));
        let nb_txq = (workers as u16).min(dev.max_tx_queues);
        if nb_txq < workers as u16 {
            warn!(port = %pc.name, nb_txq, workers, "fewer tx queues than workers: workers share them, each taking its queue per burst (contention counted as tx_lock_contended)");
        }
        let t_setup = Instant::now();
        let (rx, tx) = port
            .configure(
                &DpdkPortConfig {
                    nb_rxq,
                    nb_txq,
                    rx_desc: self.rx_desc,
                    tx_desc: self.tx_desc,
                    mtu: pc.mtu,
                    promiscuous: true,
                },
                &self.pool,
            )
            .with_context(|| format!("port {:?}: configure", pc.name))?;
        port.start()
            .with_context(|| format!("port {:?}: start", pc.name))?;
        // net_vhost has created its server socket by now, as root: hand it to
        // whoever the profile names before the port is reported up.
        if let ProfileConfig::VhostUser { path, .. } = &pc.profile {
            let access = pc
                .profile
                .socket_access()
                .map_err(|(key, why)| anyhow!("port {:?}: {key}: {why}", pc.name))?;
            if !access.is_empty() {
                access
                    .apply(path)
                    .with_context(|| format!("port {:?}: socket {}", pc.name, path.display()))?;
            }
        }
        // An af_packet socket is created for every protocol and only then bound to
        // its interface: in between, the kernel copies it frames from *other*
        // interfaces (other pods' traffic). Forwarding those would duplicate other
        // ports' packets, so whatever is in the rings before the workers take over
        // is discarded.
        let mut rx = rx;
        let stale = match *profile {
            PortProfile::AfPacket { .. } => drain(&mut rx),
            _ => 0,
        };
        if stale > 0 {
            info!(port = %pc.name, frames = stale, "discarded frames queued before the port was bound");
        }
        let setup_us = t_setup.elapsed().as_micros() as u64;
        Ok(Opened {
            driver: dev.driver_name,
            device: PortDevice::Ethdev(port),
            rx: rx.into_iter().map(SwitchRxQueue::Ethdev).collect(),
            tx: tx.into_iter().map(SwitchTxQueue::Ethdev).collect(),
            probe_us,
            setup_us,
        })
    }

    /// Opens a packet socket on `iface` for `pc` (profile `kernel`): one rx
    /// queue, and one tx queue that the workers share when there are several.
    /// No ethdev: the port neither counts against `RTE_MAX_ETHPORTS` nor waits
    /// for a PMD's probe.
    fn open_socket(&mut self, pc: &PortConfig, iface: &str) -> Result<Opened> {
        let t_probe = Instant::now();
        SocketPort::check(iface).map_err(|e| anyhow!("port {:?}: {e}", pc.name))?;
        let reserve = self
            .socket_reserve
            .get_or_insert_with(crate::socket_reserve::SocketReserve::start);
        let (port, rx, tx) = match reserve.take() {
            Some(ready) => SocketPort::open_prepared(ready, iface, &self.pool),
            None => SocketPort::open(iface, &self.pool),
        }
        .map_err(|e| anyhow!("port {:?}: {e}", pc.name))?;
        let probe_us = t_probe.elapsed().as_micros() as u64;
        let t_setup = Instant::now();
        if let Some(mtu) = pc.mtu {
            port.set_mtu(mtu)
                .map_err(|e| anyhow!("port {:?}: mtu {mtu}: {e}", pc.name))?;
        }
        let setup_us = t_setup.elapsed().as_micros() as u64;
        Ok(Opened {
            driver: "packet_socket".into(),
            device: PortDevice::Socket(port),
            rx: vec![SwitchRxQueue::Socket(rx)],
            tx: vec![SwitchTxQueue::Socket(tx)],
            probe_us,
            setup_us,
        })
    }

    /// Tries again, without a write, to plug the ports that are in the desired
    /// state but not plugged (their device was gone at start), each on its own
    /// backoff ([`RETRY_FIRST`] doubling to [`RETRY_MAX`]). A port that plugs
    /// is published at once with what names it (its endpoints, L2 entries and
    /// patches), in the snapshot generation already published: the desired
    /// state has not changed, only what of it can run. Logged once per state
    /// change: when the port plugs, and when the reason it cannot changes.
    /// Returns the names of the ports plugged.
    pub fn retry_unplugged(&mut self, now: Instant) -> Vec<String> {
        let unplugged = &self.unplugged;
        self.retries.retain(|name, _| unplugged.contains_key(name));
        let due: Vec<PortConfig> = self
            .unplugged
            .iter()
            .filter(|(name, _)| {
                let (at, _) = *self
                    .retries
                    .entry((*name).clone())
                    .or_insert((now + RETRY_FIRST, RETRY_FIRST));
                at <= now
            })
            .map(|(_, (pc, _))| pc.clone())
            .collect();
        let mut plugged = Vec::new();
        for pc in due {
            let failed = match self.plug(&pc) {
                Ok((idx, pending)) => {
                    self.unplugged.remove(&pc.name);
                    let generation = self.snapshot.generation();
                    match self.publish(&self.running, generation) {
                        Ok(()) => {
                            self.hand_over(pending);
                            self.retries.remove(&pc.name);
                            info!(port = %pc.name, generation, "port plugged: its device is back");
                            plugged.push(pc.name.clone());
                            None
                        }
                        Err(e) => {
                            drop(pending);
                            if let Err(e2) = self.unplug(idx) {
                                warn!(port = %pc.name, "taking back a port whose snapshot was refused: {e2:#}");
                            }
                            let why = format!("{e:#}");
                            self.unplugged
                                .insert(pc.name.clone(), (pc.clone(), String::new()));
                            Some(why)
                        }
                    }
                }
                Err(e) => Some(format!("{e:#}")),
            };
            if let Some(why) = failed {
                if let Some((_, old)) = self.unplugged.get_mut(&pc.name) {
                    if *old != why {
                        warn!(port = %pc.name, "port still not plugged: {why}");
                        *old = why;
                    }
                }
                if let Some((at, wait)) = self.retries.get_mut(&pc.name) {
                    *wait = (*wait * 2).min(RETRY_MAX);
                    *at = now + *wait;
                }
            }
        }
        plugged
    }

    /// Sends each worker its new queues as one batch, so ports added together
    /// start together (no burst from one new port finds another one missing).
    fn hand_over(&self, pending: Vec<PendingAdd>) {
        let mut per_worker: Vec<Vec<_>> = (0..self.commands.len()).map(|_| Vec::new()).collect();
        for p in pending {
            per_worker[p.worker].push(p.cmd);
        }
        for (cmd, batch) in self.commands.iter().zip(per_worker) {
            if !batch.is_empty() {
                let _ = cmd.send(WorkerCommand::Batch(batch));
            }
        }
    }

    /// Takes the port out of every worker, waits until each has let go of its
    /// queues, then stops and closes it.
    fn unplug(&mut self, idx: PortIdx) -> Result<()> {
        let Some(rt) = self.slots.get_mut(idx.index()).and_then(Option::take) else {
            return Ok(());
        };
        let (done_tx, done_rx) = mpsc::channel();
        let mut asked = 0;
        for cmd in &self.commands {
            if cmd
                .send(WorkerCommand::RemovePort {
                    port: idx,
                    done: done_tx.clone(),
                })
                .is_ok()
            {
                asked += 1;
            }
        }
        let deadline = Instant::now() + GRACE_TIMEOUT;
        for _ in 0..asked {
            let left = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                // A worker did not let go: closing now could pull the port from
                // under it. Keep the port (leaked, but safe) and report.
                return Err(anyhow!(
                    "port {:?}: a worker did not release its queues within {GRACE_TIMEOUT:?}",
                    rt.config.name
                ));
            }
        }
        let name = rt.config.name.clone();
        rt.port.close(&name)?;
        info!(port = %name, index = idx.index(), "port removed");
        Ok(())
    }

    fn publish(&self, cfg: &VswitchConfig, generation: u64) -> Result<()> {
        let index = self.index();
        let cfg = &*self.plugged_only(cfg);
        let pipeline =
            control::compile::pipeline(cfg, generation, &index).map_err(|e| anyhow!("{e}"))?;
        let prev = self.snapshot.load_full();
        let services = control::compile::services(cfg, &pipeline.overlay, &prev.services)
            .map_err(|e| anyhow!("{e}"))?;
        // Compiled again only when the policies differ from what runs.
        let policy = control::compile::policy(cfg, Some((&self.running.policies, &prev.policy)))
            .map_err(|e| anyhow!("{e}"))?;
        self.snapshot
            .publish(pipeline.with_services(services).with_policy(policy));
        Ok(())
    }

    /// Applies port, endpoint and route `deltas` to the running snapshot as
    /// generation `generation` (see [`control::delta`]): the ports added are
    /// plugged, the overlay is patched, sharing every table the deltas do not
    /// touch (networks' and VRFs'); the classic L2 stage is rebuilt only when
    /// the ports change or one joins or leaves the overlay (its flooding group
    /// changes), from the port list alone. `commit` runs after everything is
    /// prepared and before anything is published; the ports deleted are
    /// unplugged once a snapshot without them is.
    ///
    /// # Errors
    /// The delta the snapshot refuses, a port that will not plug, or
    /// `commit`'s failure: nothing changed (a port plugged for the write is
    /// unplugged again).
    pub fn apply_deltas(
        &mut self,
        deltas: &[Delta],
        generation: u64,
        commit: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<(), DeltaError> {
        let mut plugged = Vec::new();
        let mut pending = Vec::new();
        for (i, d) in deltas.iter().enumerate() {
            if let Delta::AddPort(pc, _) = d {
                match self.plug(pc) {
                    Ok((idx, p)) => {
                        plugged.push(idx);
                        pending.extend(p);
                    }
                    Err(e) => {
                        drop(pending);
                        self.unplug_all(&plugged);
                        return Err(DeltaError::Refused {
                            index: i,
                            reason: format!("{e:#}"),
                        });
                    }
                }
            }
        }
        match self.publish_deltas(deltas, generation, commit) {
            Ok(gone) => {
                self.hand_over(pending);
                // Nothing published sends to them any more.
                for idx in gone {
                    if let Err(e) = self.unplug(idx) {
                        warn!("after generation {generation}: {e:#}");
                    }
                }
                Ok(())
            }
            Err(e) => {
                drop(pending);
                self.unplug_all(&plugged);
                Err(e)
            }
        }
    }

    /// Unplugs ports a failed write plugged (never handed to a worker).
    fn unplug_all(&mut self, ports: &[PortIdx]) {
        for &idx in ports {
            if let Err(e) = self.unplug(idx) {
                warn!("taking back a port a refused write added: {e:#}");
            }
        }
    }

    /// [`apply_deltas`](Self::apply_deltas) once its ports are plugged: the
    /// snapshot patched, `commit`, publish; the running configuration updated.
    /// Returns the ports to unplug.
    fn publish_deltas(
        &mut self,
        deltas: &[Delta],
        generation: u64,
        commit: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<Vec<PortIdx>, DeltaError> {
        let index = self.index();
        let mut changes = Vec::with_capacity(deltas.len());
        let mut service_changes = Vec::new();
        let mut policy = None;
        let mut ports_changed = false;
        for (i, d) in deltas.iter().enumerate() {
            changes.push(match d {
                Delta::AddLocal(e) => {
                    let Some(&port) = index.get(&e.port) else {
                        return Err(DeltaError::Refused {
                            index: i,
                            reason: format!("port {:?} is not running", e.port),
                        });
                    };
                    OverlayChange::AddLocal(LocalEndpointSpec {
                        network: e.network.clone(),
                        mac: e.mac,
                        ips: e.ips.clone(),
                        port,
                    })
                }
                Delta::AddRemote(e) => OverlayChange::AddRemote(e.clone()),
                // An endpoint on a port that is not plugged is not in the
                // snapshot: it goes from the configuration only.
                Delta::Remove {
                    network,
                    mac,
                    local: true,
                    ..
                } if self.running.endpoints.iter().any(|e| {
                    e.network == *network && e.mac == *mac && self.unplugged.contains_key(&e.port)
                }) =>
                {
                    continue
                }
                Delta::Remove {
                    network, mac, ips, ..
                } => OverlayChange::Remove {
                    network: network.clone(),
                    mac: *mac,
                    ips: ips.clone(),
                },
                Delta::AddRoute(r) => OverlayChange::AddRoute(r.clone()),
                Delta::RemoveRoute(r) => OverlayChange::RemoveRoute(r.clone()),
                Delta::AddNetwork(n, _) => OverlayChange::AddNetwork((**n).clone()),
                Delta::AddPort(..) | Delta::DelPort(_) => {
                    ports_changed = true;
                    continue;
                }
                Delta::PutService(spec, _) => {
                    service_changes.push((i, ServiceChange::Put((**spec).clone())));
                    continue;
                }
                Delta::DelService(name) => {
                    service_changes.push((i, ServiceChange::Remove(name.clone())));
                    continue;
                }
                // The policy the write leads to, compiled by the control
                // thread: the last one of the write is what runs.
                Delta::Policy(_, compiled) => {
                    if let Some(c) = compiled {
                        policy = Some(Arc::clone(&c.0));
                    }
                    continue;
                }
            });
        }
        let cur = self.snapshot.load_full();
        let overlay = cur
            .overlay
            .patched(generation, &changes)
            .map_err(|(index, e)| DeltaError::Refused {
                index,
                reason: e.to_string(),
            })?;
        let joined_or_left = (0..MAX_PORTS as u16).any(|p| {
            cur.overlay.network_of_port(PortIdx(p)).is_some()
                != overlay.network_of_port(PortIdx(p)).is_some()
        });
        // The port list after the write (a few items: copied, unlike the rest
        // of the configuration).
        let running = self.plugged_only(&self.running);
        let mut ports = running.ports.clone();
        let mut gone = Vec::new();
        for d in deltas {
            match d {
                Delta::AddPort(pc, _) => ports.push((**pc).clone()),
                Delta::DelPort(name) => {
                    ports.retain(|p| p.name != *name);
                    gone.extend(index.get(name).copied());
                }
                _ => {}
            }
        }
        let l2 = if joined_or_left || ports_changed {
            // The overlay's ports as the snapshot has them: the uplink and every
            // port carrying an endpoint.
            let mut overlay_ports: std::collections::BTreeSet<&str> = index
                .iter()
                .filter(|(_, &i)| overlay.network_of_port(i).is_some())
                .map(|(n, _)| n.as_str())
                .collect();
            overlay_ports.extend(running.underlay.iter().map(|u| u.uplink.as_str()));
            control::compile::l2_pipeline_of(&ports, &running, &overlay_ports, generation, &index)
                .map_err(|e| DeltaError::Refused {
                index: 0,
                reason: e.to_string(),
            })?
        } else {
            cur.l2.clone().with_generation(generation)
        };
        drop(running);
        // The services the write changes get their tables built here, before
        // anything is published; the others' are shared with `cur`.
        let services = if service_changes.is_empty() {
            Arc::clone(&cur.services)
        } else {
            let (at, list): (Vec<usize>, Vec<ServiceChange>) = service_changes.into_iter().unzip();
            let patched = cur
                .services
                .patched(&list, |n| overlay.network_by_name(n))
                .map_err(|(k, e)| DeltaError::Refused {
                    index: at[k],
                    reason: e.to_string(),
                })?;
            Arc::new(patched)
        };
        commit().map_err(DeltaError::Commit)?;
        self.snapshot.publish(
            Pipeline::new(generation, l2, overlay, cur.parse.clone())
                .with_services(services)
                .with_policy(policy.unwrap_or_else(|| Arc::clone(&cur.policy))),
        );
        control::delta::apply_config(&mut self.running, deltas);
        for d in deltas {
            if let Delta::DelPort(name) = d {
                if self.unplugged.remove(name).is_some() {
                    info!(port = %name, "port that was not plugged deleted");
                }
            }
        }
        Ok(gone)
    }

    /// Makes the dataplane run `next` as snapshot `generation`: removes the ports it
    /// no longer has (or whose settings changed), adds the new ones, publishes the
    /// tables. All or nothing: on a failure the previous configuration is restored.
    ///
    /// # Errors
    /// The first failure (a port that cannot be probed, configured or started).
    pub fn apply(&mut self, next: &VswitchConfig, generation: u64) -> Result<()> {
        self.apply_start(next, generation, &[])
    }

    /// [`apply`](Self::apply), but a port named in `may_be_gone` whose device
    /// cannot be opened does not fail it: the port stays configured, not
    /// plugged, with the reason ([`unplugged`](Self::unplugged)), and the rest
    /// runs. For the ports the state file brings back at start (API writes made
    /// them for devices that may have gone with a reboot). A port already not
    /// plugged is tried again by every whole-state write that keeps it as it is,
    /// and stays not plugged if it still cannot be opened.
    ///
    /// # Errors
    /// As [`apply`](Self::apply), for the other ports.
    pub fn apply_start(
        &mut self,
        next: &VswitchConfig,
        generation: u64,
        may_be_gone: &[String],
    ) -> Result<()> {
        let previous = self.running.clone();
        let was_unplugged = self.unplugged.clone();
        let tolerated = |pc: &PortConfig| {
            may_be_gone.contains(&pc.name)
                || was_unplugged.get(&pc.name).is_some_and(|(c, _)| c == pc)
        };
        match self.transition(next, generation, Check::UnderlayMtu, &tolerated) {
            Ok(()) => {
                self.running = next.clone();
                Ok(())
            }
            Err(e) => {
                warn!("apply of generation {generation} failed, restoring: {e:#}");
                let restore = self.snapshot.generation();
                // What ran before is restored as it was, even if the uplink's MTU
                // has shrunk under it since: the next write will say so.
                if let Err(e2) = self.transition(&previous, restore, Check::None, &tolerated) {
                    warn!("restoring the previous configuration failed too: {e2:#}");
                }
                self.running = previous;
                Err(e)
            }
        }
    }

    fn transition(
        &mut self,
        next: &VswitchConfig,
        generation: u64,
        check: Check,
        tolerated: &dyn Fn(&PortConfig) -> bool,
    ) -> Result<()> {
        let wanted: HashMap<&str, &PortConfig> =
            next.ports.iter().map(|p| (p.name.as_str(), p)).collect();
        let remove: Vec<PortIdx> = self
            .ports()
            .filter(|(_, rt)| match wanted.get(rt.config.name.as_str()) {
                None => true,
                Some(pc) => device_changed(&rt.config, pc),
            })
            .map(|(i, _)| i)
            .collect();
        if !remove.is_empty() {
            // First stop forwarding to the ports going away, then let go of them.
            let mut interim = self.running.clone();
            let gone: Vec<String> = remove
                .iter()
                .filter_map(|i| {
                    self.slots[i.index()]
                        .as_ref()
                        .map(|r| r.config.name.clone())
                })
                .collect();
            strip_ports(&mut interim, &gone);
            let keep = self.snapshot.generation();
            if self.publish(&interim, keep).is_err() {
                // The overlay cannot stand without what goes away (its uplink, say):
                // switch it off until the next snapshot, rather than keep sending to
                // a port that is about to close.
                clear_overlay(&mut interim);
                self.publish(&interim, keep)?;
            }
            for idx in remove {
                self.unplug(idx)?;
            }
        }
        let have = self.index();
        let mut pending = Vec::new();
        let mut unplugged = BTreeMap::new();
        for pc in &next.ports {
            if !have.contains_key(&pc.name) {
                match self.plug(pc) {
                    Ok((_, p)) => pending.extend(p),
                    Err(e) if tolerated(pc) => {
                        warn!(port = %pc.name, "port not plugged, kept in the desired state (what names it is left out of the tables): {e:#}");
                        unplugged.insert(pc.name.clone(), (pc.clone(), format!("{e:#}")));
                    }
                    Err(e) => {
                        // Queues not handed over yet are dropped here; the ports
                        // themselves are closed by the caller's restore.
                        drop(pending);
                        return Err(e);
                    }
                }
            }
        }
        self.unplugged = unplugged;
        for rt in self.slots.iter_mut().flatten() {
            if let Some(pc) = wanted.get(rt.config.name.as_str()) {
                rt.config = (*pc).clone();
            }
            // An interface's MTU may have changed since the last write (`ip link set
            // mtu`): the tx limit and the check below see the current one.
            rt.port.refresh_mtu();
        }
        // Every port of `next` runs now: the uplink's MTU is what it really has.
        if check == Check::UnderlayMtu {
            underlay_fits(next, |pc| self.running_mtu(pc)).map_err(|e| anyhow!(e))?;
        }
        if let Ok(mut table) = self.neighbors.lock() {
            for &(ip, mac) in next.underlay.iter().flat_map(|u| &u.neighbors) {
                table.add_static(ip, mac);
            }
        }
        self.publish(next, generation)?;
        self.hand_over(pending);
        Ok(())
    }

    /// Refuses `cfg` when its underlay MTU exceeds the MTU its uplink has (a
    /// running uplink that `cfg` keeps) or will have ([`planned_mtu`]), as far as
    /// that is known before `cfg` is applied; [`apply`](Self::apply) checks again
    /// once every port runs.
    ///
    /// # Errors
    /// `underlay.mtu 1500 exceeds uplink "up" MTU 1400`.
    pub fn check_underlay_mtu(&self, cfg: &VswitchConfig) -> Result<(), String> {
        underlay_fits(cfg, |pc| match self.running_port(pc) {
            Some(rt) => rt.port.mtu(),
            None => planned_mtu(pc),
        })
    }

    /// The running port `pc` names, if its device settings are `pc`'s (a port
    /// whose settings change is re-created by [`apply`](Self::apply)).
    fn running_port(&self, pc: &PortConfig) -> Option<&PortRuntime> {
        self.ports()
            .map(|(_, rt)| rt)
            .find(|rt| rt.config.name == pc.name && !device_changed(&rt.config, pc))
    }

    fn running_mtu(&self, pc: &PortConfig) -> Option<u16> {
        self.running_port(pc).and_then(|rt| rt.port.mtu())
    }

    /// Stops and closes every port. Call after the workers have stopped (they
    /// dropped their queues when they returned).
    pub fn shutdown(mut self) {
        for slot in self.slots.iter_mut() {
            if let Some(rt) = slot.take() {
                if let Err(e) = rt.port.close(&rt.config.name) {
                    warn!("{e:#}");
                }
            }
        }
    }
}

/// What [`Dataplane::transition`] checks besides what it cannot do without.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The underlay MTU against the uplink's, once the ports run.
    UnderlayMtu,
    /// Nothing more (restoring what ran before).
    None,
}

/// Whether a port must be re-created to go from `a` to `b`; a group change alone
/// is only a table change.
fn device_changed(a: &PortConfig, b: &PortConfig) -> bool {
    a.profile != b.profile || a.mtu != b.mtu || a.worker != b.worker
}

/// The MTU port `pc` will have once plugged, when that is known before DPDK
/// opens it: on a kernel interface (af_packet, kernel, tap) the configured `mtu`,
/// which the port sets on the interface, or else for af_packet and kernel the
/// interface's MTU now.
/// `None` otherwise: only the running port can tell ([`pmd_shims::Port::mtu`]).
pub fn planned_mtu(pc: &PortConfig) -> Option<u16> {
    match &pc.profile {
        ProfileConfig::AfPacket { iface } | ProfileConfig::Kernel { iface } => {
            pc.mtu.or_else(|| interface_mtu(iface))
        }
        ProfileConfig::Tap { .. } => pc.mtu,
        _ => None,
    }
}

/// The MTU of kernel interface `iface` (`/sys/class/net/IFACE/mtu`).
fn interface_mtu(iface: &str) -> Option<u16> {
    // A name from the configuration: never let it walk out of /sys/class/net.
    if iface.is_empty() || iface.contains('/') || iface.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(
        std::path::Path::new("/sys/class/net")
            .join(iface)
            .join("mtu"),
    )
    .ok()?
    .trim()
    .parse()
    .ok()
}

/// Refuses an underlay whose MTU exceeds its uplink's (`uplink_mtu` of the
/// uplink's port; `None`: not known, nothing to check). Refused rather than
/// adopted: the overlay's MTU, the "fragmentation needed" answers and what a
/// peer VTEP was told all follow `underlay.mtu`, so quietly running with another
/// value would make them all wrong at once, and an operator who set the value
/// learns at once that the link does not carry it.
///
/// # Errors
/// `underlay.mtu 1500 exceeds uplink "up" MTU 1400`.
pub fn underlay_fits(
    cfg: &VswitchConfig,
    uplink_mtu: impl Fn(&PortConfig) -> Option<u16>,
) -> Result<(), String> {
    let Some(u) = &cfg.underlay else {
        return Ok(());
    };
    // An uplink that is no port is the configuration's own error, named there.
    let Some(pc) = cfg.ports.iter().find(|p| p.name == u.uplink) else {
        return Ok(());
    };
    match uplink_mtu(pc) {
        Some(mtu) if u.mtu > mtu => Err(format!(
            "underlay.mtu {} exceeds uplink {:?} MTU {mtu}",
            u.mtu, u.uplink
        )),
        _ => Ok(()),
    }
}

fn lock_neighbors(t: &Mutex<NeighborTable>) -> std::sync::MutexGuard<'_, NeighborTable> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

fn clear_overlay(cfg: &mut VswitchConfig) {
    cfg.underlay = None;
    cfg.networks.clear();
    cfg.endpoints.clear();
    cfg.remote_endpoints.clear();
    cfg.routes.clear();
}

/// Receives and frees whatever `queues` hold now; returns how many frames.
fn drain(queues: &mut [PortRxQueue]) -> usize {
    use dataplane::{Burst, RxQueue};
    let mut n = 0;
    for q in queues.iter_mut() {
        // Bounded: a busy interface must not keep the control thread here.
        for _ in 0..64 {
            let mut burst = Burst::new();
            let got = q.rx_burst(&mut burst);
            n += got;
            if got == 0 {
                break;
            }
        }
    }
    n
}

/// Removes `gone` ports and everything that names them from `cfg`, for the interim
/// snapshot published while they are taken down.
fn strip_ports(cfg: &mut VswitchConfig, gone: &[String]) {
    let is_gone = |n: &str| gone.iter().any(|g| g == n);
    cfg.ports.retain(|p| !is_gone(&p.name));
    cfg.patches.retain(|p| !is_gone(&p.from) && !is_gone(&p.to));
    cfg.l2.retain(|e| !is_gone(&e.port));
    cfg.endpoints.retain(|e| !is_gone(&e.port));
    if cfg.underlay.as_ref().is_some_and(|u| is_gone(&u.uplink)) {
        cfg.underlay = None;
        cfg.remote_endpoints.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(underlay_mtu: u16, uplink: &str) -> VswitchConfig {
        let text = format!(
            r#"
[dataplane]
workers = [0]
[[port]]
name = "up"
{uplink}
[underlay]
uplink = "up"
local_vtep_ip = "192.0.2.1"
local_mac = "02:00:00:00:ff:01"
mtu = {underlay_mtu}
on_link = "192.0.2.0/24"
"#
        );
        VswitchConfig::parse(&text, 1).unwrap()
    }

    #[test]
    fn an_underlay_above_the_uplinks_mtu_is_refused_naming_both() {
        let c = config(1500, "profile = \"null\"");
        assert_eq!(
            underlay_fits(&c, |_| Some(1400)).unwrap_err(),
            "underlay.mtu 1500 exceeds uplink \"up\" MTU 1400"
        );
        assert_eq!(underlay_fits(&c, |_| Some(1500)), Ok(()));
        assert_eq!(underlay_fits(&c, |_| None), Ok(()), "no MTU known");
        let mut no_underlay = c.clone();
        no_underlay.underlay = None;
        assert_eq!(underlay_fits(&no_underlay, |_| Some(68)), Ok(()));
    }

    #[test]
    fn planned_mtu_is_known_for_kernel_interfaces_only() {
        let c = config(
            1500,
            "profile = \"af_packet\"\niface = \"vsw-no-such0\"\nmtu = 1400",
        );
        assert_eq!(planned_mtu(&c.ports[0]), Some(1400), "configured");
        let c = config(1500, "profile = \"af_packet\"\niface = \"vsw-no-such0\"");
        assert_eq!(planned_mtu(&c.ports[0]), None, "no such interface");
        let c = config(1500, "profile = \"null\"\nmtu = 1400");
        assert_eq!(planned_mtu(&c.ports[0]), None, "null has no MTU");
        assert_eq!(interface_mtu("../../etc"), None);
    }
}
