//! The daemon's side of the gRPC API: what `control`'s service asks the dataplane.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use control::api;
use control::config::{ProfileConfig, VswitchConfig};
use control::liveness::{LivenessSample, WorkerBeat};
use control::service::DataplaneHandle;
use dataplane::pipeline::{TraceNames, Verdict};
use dataplane::{
    Pipeline, PortIdx, SnapshotCell, StatsSnapshot, StatsTotals, Versioned, WorkerStatsShared,
};

use crate::ports::Dataplane;
use crate::switch::lock;

/// A worker's published counters with its index and core.
pub type WorkerHandle = (usize, usize, Arc<WorkerStatsShared>);

/// What the API reaches in the running daemon.
pub struct VswitchdHandle {
    /// The ports and the snapshot.
    pub dataplane: Arc<Mutex<Dataplane>>,
    /// The workers' counters.
    pub workers: Vec<WorkerHandle>,
    /// Start time.
    pub started: Instant,
    /// The workers' capture tap.
    pub capture: Arc<dataplane::capture::CaptureTap>,
    /// The published snapshot, read for its generation without the dataplane's
    /// lock: a write holds that lock while it waits on the workers, so liveness
    /// must not need it (or a stuck worker would make Health hang too).
    pub snapshot: Arc<SnapshotCell<Pipeline>>,
    /// The ports as last read under the dataplane's lock ([`PortView`]).
    pub port_view: Mutex<(Vec<PortView>, u64)>,
    /// Told of every published write, for the publish-latency histogram.
    pub publish: Arc<crate::metrics::publish::PublishClock>,
    /// The policy stage's hit counters and denied connections, shared by
    /// the workers.
    pub policy: Arc<dataplane::pipeline::policy::PolicyObserver>,
}

/// What the reads show of a port that needs the dataplane's lock to look at:
/// its configuration, and DPDK's link and counters. A write holds that lock
/// while ports start or stop (seconds for some PMDs); `ListPorts` and
/// `GetStats` then answer from the last view, with the workers' counters
/// (which need no lock) as fresh as ever, rather than waiting behind the write.
#[derive(Clone, Debug)]
pub struct PortView {
    idx: PortIdx,
    name: String,
    profile: &'static str,
    driver: String,
    dpdk_port_id: Option<u32>,
    link: (bool, u32),
    mac: String,
    dpdk: [u64; 4],
    /// Why the port is not plugged; empty for a running port.
    not_plugged: String,
}

fn profile_name(p: &ProfileConfig) -> &'static str {
    match p {
        ProfileConfig::AfPacket { .. } => "af_packet",
        ProfileConfig::Kernel { .. } => "kernel",
        ProfileConfig::Tap { .. } => "tap",
        ProfileConfig::Pcap { .. } => "pcap",
        ProfileConfig::Null { .. } => "null",
        ProfileConfig::Ring {} => "ring",
        ProfileConfig::VhostUser { .. } => "vhost_user",
        ProfileConfig::VirtioUser { .. } => "virtio_user",
        ProfileConfig::Mlx5 { .. } => "mlx5",
    }
}

fn mac_text(m: [u8; 6]) -> String {
    dataplane::MacAddr(m).to_string()
}

impl VswitchdHandle {
    /// The ports as they are now, or, while a write holds the dataplane, as they
    /// were last seen ([`PortView`]).
    /// With the mempool's buffers in use.
    fn port_view(&self) -> (Vec<PortView>, u64) {
        let mut cached = self.port_view.lock().unwrap_or_else(|p| p.into_inner());
        let dp = match self.dataplane.try_lock() {
            Ok(dp) => dp,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return cached.clone(),
        };
        let mbufs_in_use = u64::from(dp.pool().in_use_count());
        let view = dp
            .ports()
            .map(|(idx, rt)| {
                let link = rt.port.link();
                let d = rt.port.stats();
                PortView {
                    idx,
                    name: rt.config.name.clone(),
                    profile: profile_name(&rt.config.profile),
                    driver: rt.driver.clone(),
                    dpdk_port_id: rt.port.ethdev_id().map(u32::from),
                    link: (link.up, link.speed_mbps),
                    mac: mac_text(rt.port.mac()),
                    dpdk: [d.imissed, d.ierrors, d.oerrors, d.rx_nombuf],
                    not_plugged: String::new(),
                }
            })
            .chain(dp.unplugged().map(|(pc, why)| PortView {
                // No index: no worker counts anything for it.
                idx: PortIdx(u16::MAX),
                name: pc.name.clone(),
                profile: profile_name(&pc.profile),
                driver: String::new(),
                dpdk_port_id: None,
                link: (false, 0),
                mac: String::new(),
                dpdk: [0; 4],
                not_plugged: why.to_owned(),
            }))
            .collect();
        *cached = (view, mbufs_in_use);
        cached.clone()
    }

    fn totals(&self) -> (Vec<StatsSnapshot>, StatsTotals) {
        let snaps: Vec<StatsSnapshot> = self.workers.iter().map(|(_, _, s)| s.snapshot()).collect();
        let totals = StatsTotals::sum(&snaps);
        (snaps, totals)
    }
}

impl DataplaneHandle for VswitchdHandle {
    fn apply(&self, cfg: &VswitchConfig, generation: u64) -> Result<(), String> {
        lock(&self.dataplane)
            .apply(cfg, generation)
            .map_err(|e| format!("{e:#}"))?;
        self.publish.published(generation);
        Ok(())
    }

    fn supports_deltas(&self) -> bool {
        true
    }

    fn service_table(&self, name: &str) -> Result<Option<api::ServiceTable>, String> {
        // The published snapshot's own table, as the workers hold it.
        let snap = self.snapshot.load_full();
        let Some((_, e)) = snap.services.by_name(name) else {
            return Ok(None);
        };
        Ok(Some(api::ServiceTable {
            generation: snap.generation(),
            name: name.to_owned(),
            size: e.set.table.size(),
            backends: e
                .spec
                .backends
                .iter()
                .map(control::config::service::backend_message)
                .collect(),
            slots: e.set.table.slots().iter().map(|&s| u32::from(s)).collect(),
        }))
    }

    fn apply_deltas(
        &self,
        deltas: &[control::delta::Delta],
        generation: u64,
        commit: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<(), control::service::DeltaError> {
        lock(&self.dataplane).apply_deltas(deltas, generation, commit)?;
        self.publish.published(generation);
        Ok(())
    }

    fn precheck(&self, cfg: &VswitchConfig) -> Result<(), String> {
        let dp = lock(&self.dataplane);
        let running = dp.running();
        let workers = running.dataplane.workers.len() as u16;
        for pc in &cfg.ports {
            if running.ports.iter().any(|r| r == pc) {
                continue;
            }
            crate::profiles::port_backend(pc, workers)
                .check()
                .map_err(|e| format!("port {:?}: {e}", pc.name))?;
        }
        dp.check_underlay_mtu(cfg)
    }

    fn ports(&self) -> Vec<api::PortStatus> {
        let (_, totals) = self.totals();
        self.port_view()
            .0
            .into_iter()
            .map(|v| {
                let t = totals.ports.get(v.idx.index()).copied().unwrap_or_default();
                api::PortStatus {
                    name: v.name,
                    profile: v.profile.into(),
                    driver: v.driver,
                    dpdk_port_id: v.dpdk_port_id,
                    link_up: v.link.0,
                    speed_mbps: v.link.1,
                    mac: v.mac,
                    rx_packets: t.rx_packets,
                    tx_packets: t.tx_packets,
                    dropped: t.total_drops(),
                    not_plugged: v.not_plugged,
                }
            })
            .collect()
    }

    fn stats(&self) -> api::Stats {
        let (snaps, totals) = self.totals();
        let (view, mbufs_in_use) = self.port_view();
        let ports = view
            .into_iter()
            .filter(|v| v.not_plugged.is_empty())
            .map(|v| {
                let t = totals.ports.get(v.idx.index()).copied().unwrap_or_default();
                let [imissed, ierrors, oerrors, rx_nombuf] = v.dpdk;
                api::PortCounters {
                    name: v.name,
                    rx_packets: t.rx_packets,
                    rx_bytes: t.rx_bytes,
                    tx_packets: t.tx_packets,
                    tx_bytes: t.tx_bytes,
                    dropped: t.total_drops(),
                    imissed,
                    ierrors,
                    oerrors,
                    rx_nombuf,
                }
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .zip(&snaps)
            .map(|((i, core, _), s)| api::WorkerCounters {
                index: *i as u32,
                core: *core as u32,
                rx_packets: s.rx_packets(),
                tx_packets: s.tx_packets(),
                busy_rounds: s.busy_polls,
                idle_rounds: s.idle_polls,
                generation: s.snapshot_generation,
                busy_ns: s.busy_ns,
                idle_ns: s.idle_ns,
                tx_lock_contended: s.tx_lock_contended,
                flow_hits: s.flows.hits,
                flow_misses: s.flows.misses,
                flow_installs: s.flows.installs,
                flow_evictions: s.flows.evictions,
                flow_skipped_installs: s.flows.skipped_installs,
                flow_bypassed: s.flows.bypassed,
                flow_revalidations: s.flows.revalidations,
                flow_entries: s.flows.entries,
                flow_capacity: s.flows.capacity,
                ct_entries: s.ct.entries,
                ct_capacity: s.ct.capacity,
                ct_created: s.ct.created,
                ct_expired: s.ct.expired,
                ct_early_drops: s.ct.early_drops,
                ct_invalid: s.ct.invalid,
                ct_handed_off: s.ct.handed_off,
                lb_new_connections: s.ct.lb_new,
            })
            .collect();
        let drops: HashMap<String, u64> = totals
            .drops_by_reason()
            .map(|(r, n)| (r.as_str().to_owned(), n))
            .collect();
        api::Stats {
            generation: self.snapshot.generation(),
            ports,
            workers,
            drops,
            generated: totals.generated,
            mbufs_in_use,
        }
    }

    fn trace(&self, in_port: &str, frame: &[u8]) -> Result<api::TraceReply, String> {
        let dp = lock(&self.dataplane);
        let Some(idx) = dp.index().get(in_port).copied() else {
            return Err(format!("in_port: no port named {in_port:?}"));
        };
        let snap = dp.snapshot().load_full();
        let neighbors = dp.neighbor_map();
        // The snapshot numbers ports and groups; operators named them.
        let names = TraceNames {
            ports: dp
                .ports()
                .map(|(i, p)| (i, p.config.name.clone()))
                .collect(),
            groups: dp
                .ports()
                .map(|(i, p)| (i, p.config.group.clone()))
                .collect(),
        };
        drop(dp);
        // The stages' own records, from a run of the workers' stages on a copy.
        let t = snap.trace(idx, frame, &neighbors, &names);
        let (v, out, reason) = match t.verdict {
            Verdict::Output(p) => ("output", names.port(p), String::new()),
            Verdict::Flood => ("flood", String::new(), String::new()),
            Verdict::FloodNetwork { .. } => ("flood_network", String::new(), String::new()),
            Verdict::Reply { out, reason } => ("reply", names.port(out), reason.to_string()),
            Verdict::Drop(r) => ("drop", String::new(), r.to_string()),
            Verdict::Handoff(w) => ("handoff", format!("worker {w}"), String::new()),
        };
        Ok(api::TraceReply {
            generation: snap.generation(),
            stages: t
                .lines
                .into_iter()
                .map(|l| api::TraceStage {
                    stage: l.stage.into(),
                    detail: l.detail,
                })
                .collect(),
            verdict: v.into(),
            out_port: out,
            drop_reason: reason,
            frame_after: t.frame_after,
        })
    }

    fn conntrack(&self, req: &api::ConntrackRequest) -> Result<api::ConntrackReply, String> {
        crate::conntrack::serve(self, req)
    }

    fn policy_hits(&self, policy: &str) -> Result<api::PolicyHitsReply, String> {
        Ok(crate::policy::hits(&self.policy, policy))
    }

    fn policy_log(&self, limit: u32) -> Result<api::PolicyLogReply, String> {
        let snap = self.snapshot.load_full();
        Ok(crate::policy::log(&self.policy, limit, |vni| {
            snap.overlay
                .networks()
                .iter()
                .find(|n| n.vni == vni)
                .map_or_else(|| format!("vni {vni}"), |n| n.name.to_string())
        }))
    }

    fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn liveness(&self) -> LivenessSample {
        // The published generation first: a worker read after it can only be as
        // new or newer, so a sample never shows a lag that was not there.
        let published_generation = self.snapshot.generation();
        LivenessSample {
            published_generation,
            workers: self
                .workers
                .iter()
                .map(|(i, core, s)| WorkerBeat {
                    index: *i as u32,
                    core: *core as u32,
                    heartbeat: s.heartbeat(),
                    generation: s.snapshot_generation(),
                })
                .collect(),
        }
    }

    fn capture_tap(
        &self,
        port: &str,
    ) -> Result<(Arc<dataplane::capture::CaptureTap>, PortIdx), String> {
        let idx = lock(&self.dataplane)
            .index()
            .get(port)
            .copied()
            .ok_or_else(|| format!("no port named {port:?}"))?;
        Ok((Arc::clone(&self.capture), idx))
    }
}
