//! The daemon's side of the gRPC API: what `control`'s service asks the dataplane.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use control::api;
use control::config::{ProfileConfig, VswitchConfig};
use control::liveness::{LivenessSample, WorkerBeat};
use control::service::DataplaneHandle;
use dataplane::overlay::{NeighborConfig, ResolveLimiter};
use dataplane::pipeline::{Ctx, Verdict};
use dataplane::wire::{self, L3Kind};
use dataplane::{
    DropReason, PacketBuf, Pipeline, PortIdx, SnapshotCell, StatsSnapshot, StatsTotals, VecBuf,
    WorkerStatsShared,
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
    dpdk_port_id: u32,
    link: (bool, u32),
    mac: String,
    dpdk: [u64; 4],
}

fn profile_name(p: &ProfileConfig) -> &'static str {
    match p {
        ProfileConfig::AfPacket { .. } => "af_packet",
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
                    dpdk_port_id: u32::from(rt.port.id()),
                    link: (link.up, link.speed_mbps),
                    mac: mac_text(rt.port.mac()),
                    dpdk: [d.imissed, d.ierrors, d.oerrors, d.rx_nombuf],
                }
            })
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

    fn apply_endpoints(
        &self,
        deltas: &[control::delta::EndpointDelta],
        generation: u64,
        commit: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<(), control::service::DeltaError> {
        lock(&self.dataplane).apply_endpoints(deltas, generation, commit)?;
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
            crate::profiles::port_profile(pc, workers)
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
                }
            })
            .collect()
    }

    fn stats(&self) -> api::Stats {
        let (snaps, totals) = self.totals();
        let (view, mbufs_in_use) = self.port_view();
        let ports = view
            .into_iter()
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
        let names: HashMap<PortIdx, String> = dp
            .ports()
            .map(|(i, p)| (i, p.config.name.clone()))
            .collect();
        // The snapshot numbers groups; operators named them.
        let groups: HashMap<PortIdx, String> = dp
            .ports()
            .map(|(i, p)| (i, p.config.group.clone()))
            .collect();
        drop(dp);
        let mut stages = Vec::new();
        let stage = |s: &str, d: String| api::TraceStage {
            stage: s.into(),
            detail: d,
        };
        match wire::parse_with(frame, &snap.parse) {
            Ok(m) => stages.push(stage("parse", describe(&m))),
            Err(e) => stages.push(stage("parse", format!("malformed: {e}"))),
        }
        let ingress = if snap.overlay.underlay().map(|u| u.uplink) == Some(idx) {
            "underlay uplink: underlay ARP/ND, or tunnel decap (VNI → network)".to_owned()
        } else if let Some(net) = snap.overlay.network_of_port(idx) {
            let n = snap.overlay.network(net);
            format!(
                "overlay port of network {:?} (VNI {}): ARP/ND responder, L2 in the network or route via gateway {}, encap to remote VTEPs",
                n.map(|n| &*n.name).unwrap_or("?"),
                n.map(|n| n.vni).unwrap_or(0),
                n.map(|n| n.gateway_mac.to_string()).unwrap_or_default()
            )
        } else {
            match snap.l2.patch_of(idx) {
                Some(p) => format!(
                    "classic L2 port, patched to {:?}",
                    names.get(&p).cloned().unwrap_or_default()
                ),
                None => match groups.get(&idx) {
                    Some(g) if snap.l2.port_group(idx).is_some() => {
                        format!("classic L2 port in group {g:?}")
                    }
                    _ => "a port the snapshot does not know".to_owned(),
                },
            }
        };
        stages.push(stage("ingress", ingress));
        for (name, detail) in table_stages(&snap, idx, frame, &names, &groups) {
            stages.push(stage(name, detail));
        }
        // The verdict comes from the fast path's own code, on a copy of the frame.
        let mut limiter = ResolveLimiter::new(&NeighborConfig::default());
        let mut ctx = Ctx::new(&neighbors, &mut limiter, Instant::now());
        let mut buf = VecBuf::new(frame);
        let verdict = snap.process(idx, &mut buf, &mut ctx);
        if !ctx.to_resolve.is_empty() {
            stages.push(stage(
                "underlay",
                format!(
                    "next hop {:?} unresolved: would send ARP/ND",
                    ctx.to_resolve.to_vec()
                ),
            ));
        }
        if buf.data() != frame {
            if let Ok(m) = wire::parse_with(buf.data(), &snap.parse) {
                stages.push(stage("rewrite", describe(&m)));
            }
        }
        let name = |p: PortIdx| {
            names
                .get(&p)
                .cloned()
                .unwrap_or_else(|| format!("#{}", p.index()))
        };
        let (v, out, reason) = match verdict {
            Verdict::Output(p) => ("output", name(p), String::new()),
            Verdict::Flood => ("flood", String::new(), String::new()),
            Verdict::FloodNetwork { .. } => ("flood_network", String::new(), String::new()),
            Verdict::Reply { out, reason } => ("reply", name(out), reason.as_str().to_owned()),
            Verdict::Drop(r) => ("drop", String::new(), drop_name(r)),
        };

        Ok(api::TraceReply {
            generation: snap_generation(&snap),
            stages,
            verdict: v.into(),
            out_port: out,
            drop_reason: reason,
            frame_after: buf.data().to_vec(),
        })
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

/// The table entries the frame meets, looked up in the same snapshot the verdict
/// came from: which MAC entry, route or tunnel mapping decided its way.
fn table_stages(
    snap: &dataplane::Pipeline,
    idx: PortIdx,
    frame: &[u8],
    names: &HashMap<PortIdx, String>,
    groups: &HashMap<PortIdx, String>,
) -> Vec<(&'static str, String)> {
    use dataplane::overlay::{L2Dest, NetworkId};
    let mut out = Vec::new();
    let Ok(mut m) = wire::parse_with(frame, &snap.parse) else {
        return out;
    };
    let ov = &snap.overlay;
    let port_name = |p: PortIdx| {
        names
            .get(&p)
            .cloned()
            .unwrap_or_else(|| format!("#{}", p.index()))
    };
    let dest = |d: Option<L2Dest>| match d {
        Some(L2Dest::Local(p)) => format!("local port {}", port_name(p)),
        Some(L2Dest::Remote(v)) => match ov.vtep(v) {
            Some(v) => format!("remote VTEP {}", v.ip),
            None => "remote VTEP ?".into(),
        },
        None => "no entry".into(),
    };
    let net: Option<NetworkId> = if ov.underlay().map(|u| u.uplink) == Some(idx) {
        if m.tunnel == wire::TunnelKind::None {
            return out;
        }
        if m.tunnel == wire::TunnelKind::Geneve && m.tunnel_flags & wire::geneve::FLAG_O != 0 {
            out.push((
                "decap",
                format!(
                    "Geneve OAM (O bit), VNI {}: a control message, not forwarded as data",
                    m.vni
                ),
            ));
            return out;
        }
        let net = ov.network_by_vni(m.vni);
        out.push((
            "decap",
            format!(
                "{:?} VNI {} -> network {}",
                m.tunnel,
                m.vni,
                net.and_then(|n| ov.network(n))
                    .map(|n| format!("{:?}", n.name))
                    .unwrap_or_else(|| "none".into())
            ),
        ));
        match wire::parse_inner(frame, &m, &snap.parse) {
            Ok(inner) => m = inner,
            Err(_) => return out,
        }
        net
    } else if let Some(net) = ov.network_of_port(idx) {
        Some(net)
    } else {
        out.push(("l2", classic_l2(snap, idx, frame, &m, names, groups)));
        return out;
    };
    let Some((net, info)) = net.and_then(|n| ov.network(n).map(|i| (n, i))) else {
        return out;
    };
    if m.l3 == L3Kind::Arp && m.arp_op == 1 {
        if let Some(std::net::IpAddr::V4(t)) = m.dst_addr() {
            out.push((
                "arp_responder",
                match ov.arp_lookup(net, t) {
                    Some(mac) => format!("who-has {t}: answered {mac}"),
                    None => format!("who-has {t}: unknown address"),
                },
            ));
        }
    } else if m.dst_mac == info.gateway_mac {
        if let Some(dst) = m.dst_addr() {
            let r = ov.route(info.vrf, dst);
            out.push((
                "route",
                format!(
                    "vrf {:?}, {dst} -> {r:?}",
                    ov.vrf_name(info.vrf).unwrap_or("?")
                ),
            ));
            if let Some(dataplane::overlay::RouteResult::Connected(dn)) = r {
                let h = ov.host_lookup(dn, dst);
                out.push((
                    "host",
                    match h {
                        Some((mac, d)) => format!("{dst} is {mac} at {}", dest(Some(d))),
                        None => format!("{dst}: no endpoint"),
                    },
                ));
            }
        }
    } else {
        out.push((
            "l2",
            format!(
                "network {:?}: {} -> {}",
                info.name,
                m.dst_mac,
                if m.dst_mac.is_multicast() {
                    "flood".into()
                } else {
                    dest(ov.l2_lookup(net, m.dst_mac))
                }
            ),
        ));
    }
    out
}

/// The MAC-table stage of a classic (non-overlay) port: which entry, patch or
/// flood the frame meets, with ports and groups by name. The decision is the L2
/// table's own [`classify`](dataplane::l2::L2Pipeline::classify), so it cannot
/// drift from what the workers do.
fn classic_l2(
    snap: &dataplane::Pipeline,
    idx: PortIdx,
    frame: &[u8],
    m: &wire::PacketMeta,
    names: &HashMap<PortIdx, String>,
    groups: &HashMap<PortIdx, String>,
) -> String {
    use dataplane::l2::L2Verdict;
    let name = |p: PortIdx| {
        names
            .get(&p)
            .cloned()
            .unwrap_or_else(|| format!("#{}", p.index()))
    };
    if let Some(peer) = snap.l2.patch_of(idx) {
        return format!("patched: every frame to port {:?}", name(peer));
    }
    let dst = m.dst_mac;
    let group = groups.get(&idx).map(String::as_str).unwrap_or("?");
    let members = || {
        snap.l2
            .flood_ports(idx)
            .iter()
            .map(|&p| name(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = if dst.is_broadcast() {
        "broadcast"
    } else if dst.is_multicast() {
        "multicast"
    } else {
        "unknown"
    };
    match snap.l2.classify(idx, frame) {
        L2Verdict::Output(p) => format!("{dst} -> port {:?}", name(p)),
        L2Verdict::Flood => format!("{dst} {kind}: flood to group {group:?} [{}]", members()),
        L2Verdict::Drop(DropReason::Hairpin) => {
            format!("{dst} -> port {:?}, the port it came in on", name(idx))
        }
        L2Verdict::Drop(DropReason::NoOutput) => {
            format!("{dst} {kind}: flood to group {group:?}, which has no other port")
        }
        L2Verdict::Drop(r) => format!("{dst}: {}", r.as_str()),
    }
}

fn snap_generation(p: &dataplane::Pipeline) -> u64 {
    use dataplane::Versioned;
    p.generation()
}

fn drop_name(r: DropReason) -> String {
    r.as_str().to_owned()
}

/// One line about a parsed frame.
fn describe(m: &wire::PacketMeta) -> String {
    let mut s = format!("eth {} > {}", m.src_mac, m.dst_mac);
    match m.l3 {
        L3Kind::Arp => s.push_str(&format!(
            " arp op {} {:?} > {:?}",
            m.arp_op,
            m.src_addr().map(|a| a.to_string()).unwrap_or_default(),
            m.dst_addr().map(|a| a.to_string()).unwrap_or_default()
        )),
        L3Kind::Ipv4 | L3Kind::Ipv6 => {
            s.push_str(&format!(
                " ip {} > {} ttl {} proto {}",
                m.src_addr().map(|a| a.to_string()).unwrap_or_default(),
                m.dst_addr().map(|a| a.to_string()).unwrap_or_default(),
                m.ttl,
                m.l4_proto
            ));
            if m.src_port != 0 || m.dst_port != 0 {
                s.push_str(&format!(" ports {} > {}", m.src_port, m.dst_port));
            }
            if m.tunnel != wire::TunnelKind::None {
                s.push_str(&format!(" tunnel {:?} vni {}", m.tunnel, m.vni));
            }
        }
        L3Kind::Other => s.push_str(&format!(" ethertype {:#06x}", m.ethertype)),
    }
    s
}
