//! Bringing the switch up, running it, and taking it down.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use control::config::VswitchConfig;
use dataplane::overlay::{NeighborConfig, NeighborTable};
use dataplane::wire::ParseConfig;
use dataplane::{
    IdleBackoff, Pipeline, PortIdx, SnapshotCell, StatsSnapshot, StatsTotals, Worker, WorkerId,
    WorkerStatsShared,
};
use pmd_shims::profile::PortProfile;
use pmd_shims::{Eal, MbufAlloc, Mempool, Port, PortConfig, PortRxQueue, PortTxQueue};
use tracing::{info, warn};

use crate::stats_file::{self, DpdkDoc, PortDoc, StatsDoc};

/// A configuration that passed every check that can run before DPDK starts.
pub struct Prepared {
    path: std::path::PathBuf,
    /// CPUs this process may use, counted before EAL pins the main thread (after
    /// that the main thread sees only its own core).
    cores: usize,
    cfg: VswitchConfig,
    profiles: Vec<PortProfile>,
    pipeline: Pipeline,
}

/// Compiles the whole pipeline snapshot of `cfg` as generation `generation`.
fn compile(cfg: &VswitchConfig, generation: u64) -> Result<Pipeline> {
    let l2 = control::compile::l2_pipeline(cfg, generation).map_err(|e| anyhow!("{e}"))?;
    let overlay = control::compile::overlay(cfg, generation).map_err(|e| anyhow!("{e}"))?;
    Ok(Pipeline::new(
        generation,
        l2,
        overlay,
        ParseConfig::default(),
    ))
}

/// Reads, validates and checks everything; changes nothing on the machine.
///
/// # Errors
/// The first problem, as one line naming the file, key or port.
pub fn prepare(path: &Path) -> Result<Prepared> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read config {}: {e}", path.display()))?;
    let cores = core_affinity::get_core_ids().map_or(1, |ids| ids.len());
    let cfg = VswitchConfig::parse(&text, cores).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let workers = cfg.dataplane.workers.len() as u16;
    let mut profiles = Vec::with_capacity(cfg.ports.len());
    for p in &cfg.ports {
        let profile = crate::profiles::port_profile(p, workers);
        profile
            .check()
            .map_err(|e| anyhow!("{}: port {:?}: {e}", path.display(), p.name))?;
        profiles.push(profile);
    }
    let pipeline = compile(&cfg, 1).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    Ok(Prepared {
        path: path.to_path_buf(),
        cores,
        cfg,
        profiles,
        pipeline,
    })
}

/// A port as the main thread keeps it: the DPDK handle and what it is called.
struct PortRuntime {
    name: String,
    driver: String,
    port: Port,
}

type DpdkWorker = Worker<PortRxQueue, PortTxQueue, MbufAlloc>;

struct WorkerRuntime {
    index: usize,
    core: usize,
    stats: Arc<WorkerStatsShared>,
    handle: JoinHandle<Result<()>>,
}

/// Runs the switch until SIGINT or SIGTERM.
///
/// # Errors
/// DPDK initialisation or port set-up failures, naming the port.
pub fn run(prep: Prepared) -> Result<()> {
    let Prepared {
        path,
        cores,
        cfg,
        profiles,
        pipeline,
    } = prep;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("signal handler")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("signal handler")?;

    let args = crate::eal_args::eal_args(&cfg);
    info!(?args, "initialising DPDK EAL");
    let runtime_dir = crate::eal_args::private_runtime_dir(&cfg);
    let _runtime_dir_guard = RemoveOnDrop(runtime_dir);
    let eal = Eal::init(&args).context("EAL initialisation")?;
    info!(version = %pmd_shims::dpdk_version(), "EAL ready");

    let dp = &cfg.dataplane;
    let pool = Mempool::new("vswitch_pkts", dp.mbufs, dp.mbuf_cache, 2048 + 128, -1)
        .context("packet mempool")?;

    let n_workers = dp.workers.len();
    let port_worker = cfg.port_workers();
    // Per worker: the rx queues it polls and one tx queue per port (if the port has
    // enough tx queues for every worker).
    let mut rxqs: Vec<Vec<(PortIdx, PortRxQueue)>> = (0..n_workers).map(|_| Vec::new()).collect();
    let mut txqs: Vec<Vec<Option<PortTxQueue>>> = (0..n_workers).map(|_| Vec::new()).collect();
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for (i, (pc, profile)) in cfg.ports.iter().zip(&profiles).enumerate() {
        let devargs = profile.devargs(i as u32);
        let mut port = Port::probe(&devargs)
            .with_context(|| format!("port {:?}: probe {devargs}", pc.name))?;
        let dev = port.info();
        let nb_rxq = match profile {
            PortProfile::AfPacket { qpairs, .. } => *qpairs,
            _ => 1,
        }
        .min(dev.max_rx_queues.max(1));
        let nb_txq = (n_workers as u16).min(dev.max_tx_queues);
        if nb_txq < n_workers as u16 {
            warn!(port = %pc.name, nb_txq, "fewer tx queues than workers: some workers cannot send to this port (counted as no_tx_queue)");
        }
        let (rx, tx) = port
            .configure(
                &PortConfig {
                    nb_rxq,
                    nb_txq,
                    rx_desc: dp.rx_desc,
                    tx_desc: dp.tx_desc,
                    mtu: pc.mtu,
                    promiscuous: true,
                },
                &pool,
            )
            .with_context(|| format!("port {:?}: configure", pc.name))?;
        port.start()
            .with_context(|| format!("port {:?}: start", pc.name))?;
        let idx = PortIdx(i as u16);
        for (q, rxq) in rx.into_iter().enumerate() {
            rxqs[(port_worker[i] + q) % n_workers].push((idx, rxq));
        }
        let mut tx = tx.into_iter();
        for w in txqs.iter_mut() {
            w.push(tx.next());
        }
        info!(port = %pc.name, id = port.id(), driver = %dev.driver_name, nb_rxq, nb_txq, link_up = port.link().up, "port up");
        ports.push(PortRuntime {
            name: pc.name.clone(),
            driver: dev.driver_name.clone(),
            port,
        });
    }

    let snapshot = Arc::new(SnapshotCell::new(pipeline));
    let idle = if dp.idle_sleep_max_us == 0 {
        IdleBackoff::busy_poll()
    } else {
        IdleBackoff::new(Duration::from_micros(dp.idle_sleep_max_us))
    };
    // One underlay neighbour table for all workers: whichever receives an ARP/ND
    // answer on the uplink learns it for everyone.
    let mut table = NeighborTable::new(NeighborConfig::default());
    for &(ip, mac) in cfg.underlay.iter().flat_map(|u| &u.neighbors) {
        table.add_static(ip, mac);
    }
    let neighbors = Arc::new(std::sync::Mutex::new(table));
    let worker_stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(n_workers);
    for (w, (rx, tx)) in rxqs.into_iter().zip(txqs).enumerate() {
        let core = dp.workers[w];
        let worker: DpdkWorker = Worker::new(
            WorkerId(w as u16),
            rx,
            tx,
            MbufAlloc::new(Arc::clone(&pool)),
            Arc::clone(&snapshot),
            idle.clone(),
            Arc::clone(&worker_stop),
        )
        .map_err(|e| anyhow!("worker {w}: {e}"))?
        .with_neighbors(Arc::clone(&neighbors));
        let stats = worker.stats_handle();
        let handle = std::thread::Builder::new()
            .name(format!("vsw-worker{w}"))
            .spawn(move || worker_main(worker, core))
            .context("spawn worker")?;
        workers.push(WorkerRuntime {
            index: w,
            core,
            stats,
            handle,
        });
    }
    info!(workers = n_workers, ports = ports.len(), "forwarding");

    let started = Instant::now();
    let interval = Duration::from_millis(dp.stats_interval_ms.max(10));
    let mut next_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) && workers.iter().all(|w| !w.handle.is_finished()) {
        if Instant::now() >= next_stats {
            if let Some(path) = &dp.stats_file {
                let doc = stats_doc(&ports, &workers, started);
                if let Err(e) = stats_file::write(path, &doc) {
                    warn!("stats file: {e:#}");
                }
            }
            next_stats += interval;
        }
        if reload.swap(false, Ordering::Relaxed) {
            reload_config(&path, cores, &cfg, &snapshot, &neighbors);
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    info!("stopping workers");
    worker_stop.store(true, Ordering::Relaxed);
    let mut failure = None;
    let mut finished = Vec::with_capacity(workers.len());
    for w in workers {
        let WorkerRuntime {
            index,
            core,
            stats,
            handle,
        } = w;
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(e.context(format!("worker {index}"))),
            Err(_) => failure = Some(anyhow!("worker {index} panicked")),
        }
        finished.push((index, core, stats));
    }
    // Workers have dropped their queues: now the ports can stop.
    let final_doc = stats_doc_from(&ports, &finished, started);
    if let Some(path) = &dp.stats_file {
        stats_file::write(path, &final_doc)?;
    }
    for p in &final_doc.ports {
        info!(port = %p.name, rx = p.rx_packets, tx = p.tx_packets, dropped = p.dropped, "final counters");
    }
    for mut p in ports {
        if let Err(e) = p.port.stop() {
            warn!(port = %p.name, "stop: {e}");
        }
        if let Err(e) = p.port.close() {
            warn!(port = %p.name, "close: {e}");
        }
    }
    if let Err(e) = eal.cleanup() {
        warn!("EAL cleanup: {e}");
    }
    info!("stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// SIGHUP: re-reads the configuration and publishes its tables as the next
/// generation. Workers pick it up at their next burst; nothing is half-applied: a
/// file that does not validate, or that changes ports or EAL settings (which need a
/// restart until the control service can hot-plug them), is refused and the running
/// snapshot stays.
fn reload_config(
    path: &Path,
    cores: usize,
    running: &VswitchConfig,
    snapshot: &SnapshotCell<Pipeline>,
    neighbors: &std::sync::Mutex<NeighborTable>,
) {
    let next = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))
        .and_then(|text| VswitchConfig::parse(&text, cores).map_err(|e| anyhow!("{e}")));
    let next = match next {
        Ok(c) => c,
        Err(e) => {
            warn!(
                "reload refused, keeping generation {}: {e:#}",
                snapshot.generation()
            );
            return;
        }
    };
    if next.ports != running.ports || next.eal != running.eal || next.dataplane != running.dataplane
    {
        warn!(
            "reload refused, keeping generation {}: ports, [eal] and [dataplane] need a restart",
            snapshot.generation()
        );
        return;
    }
    let generation = snapshot.generation() + 1;
    match compile(&next, generation) {
        Ok(p) => {
            // New static neighbours take effect; removing one needs a restart.
            if let Ok(mut table) = neighbors.lock() {
                for &(ip, mac) in next.underlay.iter().flat_map(|u| &u.neighbors) {
                    table.add_static(ip, mac);
                }
            }
            let t = Instant::now();
            snapshot.publish(p);
            info!(
                generation,
                publish_us = t.elapsed().as_micros() as u64,
                "reloaded configuration"
            );
        }
        Err(e) => warn!("reload refused: {e:#}"),
    }
}

/// Removes EAL's private runtime directory when `run` returns, however it returns.
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn worker_main(worker: DpdkWorker, core: usize) -> Result<()> {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        bail!("cannot pin to core {core}");
    }
    // Registered threads get an lcore id, so the mempool's per-core cache works for
    // them (about 20% more throughput on the test VM, DESIGN.md §6).
    let _registration = pmd_shims::register_thread().context("rte_thread_register")?;
    info!(core, "worker running");
    worker.run();
    Ok(())
}

fn stats_doc(ports: &[PortRuntime], workers: &[WorkerRuntime], started: Instant) -> StatsDoc {
    let w: Vec<_> = workers
        .iter()
        .map(|w| (w.index, w.core, Arc::clone(&w.stats)))
        .collect();
    stats_doc_from(ports, &w, started)
}

fn stats_doc_from(
    ports: &[PortRuntime],
    workers: &[(usize, usize, Arc<WorkerStatsShared>)],
    started: Instant,
) -> StatsDoc {
    let snaps: Vec<StatsSnapshot> = workers.iter().map(|(_, _, s)| s.snapshot()).collect();
    let totals = StatsTotals::sum(&snaps);
    let ports = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let t = totals.ports.get(i).copied().unwrap_or_default();
            let d = p.port.stats();
            PortDoc {
                name: p.name.clone(),
                driver: p.driver.clone(),
                rx_packets: t.rx_packets,
                rx_bytes: t.rx_bytes,
                tx_packets: t.tx_packets,
                tx_bytes: t.tx_bytes,
                dropped: t.total_drops(),
                link_up: p.port.link().up,
                dpdk: DpdkDoc {
                    ipackets: d.ipackets,
                    opackets: d.opackets,
                    ibytes: d.ibytes,
                    obytes: d.obytes,
                    imissed: d.imissed,
                    ierrors: d.ierrors,
                    oerrors: d.oerrors,
                    rx_nombuf: d.rx_nombuf,
                },
            }
        })
        .collect();
    StatsDoc {
        uptime_s: started.elapsed().as_secs_f64(),
        generated: totals.generated,
        ports,
        drops: stats_file::drops_doc(&totals),
        workers: workers
            .iter()
            .zip(&snaps)
            .map(|((i, core, _), s)| stats_file::worker_doc(*i, *core, s))
            .collect(),
    }
}
