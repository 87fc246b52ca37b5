//! Bringing the switch up, running it, and taking it down.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use control::config::VswitchConfig;
use dataplane::overlay::{NeighborConfig, NeighborTable};
use dataplane::stall::StallHook;
use dataplane::{
    IdleBackoff, L2Pipeline, Pipeline, SnapshotCell, StatsSnapshot, StatsTotals, Worker, WorkerId,
    WorkerStatsShared,
};
use pmd_shims::{Eal, MbufAlloc, Mempool, SwitchRxQueue, SwitchTxQueue};
use tracing::{info, warn};

use crate::ports::Dataplane;
use crate::stats_file::{self, DpdkDoc, PortDoc, StatsDoc};

/// A configuration that passed every check that can run before DPDK starts.
pub struct Prepared {
    path: std::path::PathBuf,
    /// CPUs this process may use, counted before EAL pins the main thread (after
    /// that the main thread sees only its own core).
    cores: usize,
    cfg: VswitchConfig,
    /// The API's settings and the desired state it starts from (`[control]`).
    api: Option<ApiStart>,
}

impl Prepared {
    /// The log format `[log]` asks for.
    pub fn log_format(&self) -> control::config::LogFormat {
        self.cfg.log.format
    }
}

/// What the gRPC API starts with.
struct ApiStart {
    settings: control::config::ControlConfig,
    fixed: control::state::Fixed,
    desired: control::state::Desired,
    /// The state file's ports the configuration file does not have: made by API
    /// writes, for devices that may be gone (`Dataplane::apply_start`).
    from_state_file: Vec<String>,
}

/// Reads, validates and checks everything; changes nothing on the machine.
///
/// # Errors
/// The first problem, as one line naming the file, key or port.
pub fn prepare(path: &Path) -> Result<Prepared> {
    // A benchmark's knob (the tables' hash multipliers from a fixed seed): a
    // value that is not a number is refused, not ignored.
    if let Some(seed) = dataplane::flatmap::hash_seed().map_err(|e| anyhow!("{e}"))? {
        warn!(
            seed,
            "{} is set: hash tables are laid out from a fixed seed (for benchmarks, not production)",
            dataplane::flatmap::HASH_SEED_ENV
        );
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read config {}: {e}", path.display()))?;
    let cores = core_affinity::get_core_ids().map_or(1, |ids| ids.len());
    let cfg = VswitchConfig::parse(&text, cores).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let workers = cfg.dataplane.workers.len() as u16;
    for p in &cfg.ports {
        crate::profiles::port_backend(p, workers)
            .check()
            .map_err(|e| anyhow!("{}: port {:?}: {e}", path.display(), p.name))?;
    }
    // The snapshot the daemon will publish (`Dataplane::publish`), compiled once
    // here so that the dataplane's refusal stops the start before any port exists.
    control::compile::pipeline(&cfg, 1, &control::compile::file_order(&cfg))
        .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    // What a service manager asks for (NOTIFY_SOCKET, WATCHDOG_USEC) is checked
    // with the file: a malformed one fails here, before anything starts.
    crate::systemd::check_env().map_err(|e| anyhow!("{e}"))?;
    // With the API on, the state file (what API writes left) wins over the file's
    // sections; a corrupt or newer one stops the start here, before anything runs.
    let api = match &cfg.control {
        None => None,
        Some(settings) => {
            // What serving the API needs (group, TLS files, directories) fails here,
            // not after EAL and the ports are up.
            control::preflight::check(settings, path)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let fixed = control::state::Fixed::from_config(&cfg, cores);
            let desired = control::state::Desired::boot(&cfg, &fixed, Some(&settings.state_file))
                .map_err(|e| anyhow!("{e}"))?;
            // Ports the state file has and this file does not came from API writes:
            // they are held to the directories this file allows now.
            let state_file = settings.state_file.display();
            control::paths::confine_new_ports(&cfg.ports, &desired.config)
                .map_err(|e| anyhow!("state file {state_file}: {e}"))?;
            // Their devices are not checked here, unlike the file's ports above: an
            // interface an API write plugged may be gone after a reboot (a pod's
            // veth, say), and that must not keep the whole switch down. Such a
            // port starts not plugged, reported with the reason.
            let from_state_file = desired
                .config
                .ports
                .iter()
                .filter(|p| !cfg.ports.contains(p))
                .map(|p| p.name.clone())
                .collect();
            Some(ApiStart {
                settings: settings.clone(),
                fixed,
                desired,
                from_state_file,
            })
        }
    };
    // What can be known of the uplink's MTU before DPDK starts (an af_packet
    // interface's), for the configuration the switch starts with; the rest is
    // checked once the ports run.
    let start = api.as_ref().map_or(&cfg, |a| &a.desired.config);
    crate::ports::underlay_fits(start, crate::ports::planned_mtu)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Prepared {
        path: path.to_path_buf(),
        cores,
        cfg,
        api,
    })
}

type DpdkWorker = Worker<SwitchRxQueue, SwitchTxQueue, MbufAlloc>;

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
        api,
    } = prep;
    // The control service's runtime starts before EAL, which pins the calling
    // thread and whatever it spawns afterwards to the main core (DESIGN.md §5).
    let runtime = match &api {
        Some(_) => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("vsw-control")
                .enable_all()
                .build()
                .context("control runtime")?,
        ),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("signal handler")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("signal handler")?;

    if let Some(a) = &api {
        control::preflight::create_allowed_dirs(&a.settings).map_err(|e| anyhow!("{e}"))?;
    }
    // Bound before EAL: a taken address fails the start before anything runs.
    let metrics_listener = cfg.metrics.as_ref().map(crate::metrics::bind).transpose()?;
    crate::systemd::announce("starting: DPDK EAL, ports and workers");
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

    // Workers start with no ports: every port, at start as at runtime, reaches them
    // through their command channels.
    let snapshot = Arc::new(SnapshotCell::new(Pipeline::l2_only(L2Pipeline::empty(0))));
    let idle = if dp.idle_sleep_max_us == 0 {
        IdleBackoff::busy_poll()
    } else {
        IdleBackoff::new(Duration::from_micros(dp.idle_sleep_max_us))
    };
    // One underlay neighbour table for all workers: whichever receives an ARP/ND
    // answer on the uplink learns it for everyone.
    let neighbors = Arc::new(Mutex::new(NeighborTable::new(NeighborConfig::default())));
    let worker_stop = Arc::new(AtomicBool::new(false));
    let capture = Arc::new(dataplane::capture::CaptureTap::default());
    let policy_obs = Arc::new(dataplane::pipeline::policy::PolicyObserver::new());
    // Test-only (dataplane::stall): lets system tests freeze a worker. Warned
    // here, not in `prepare`, which runs before logging is set up.
    let stall = StallHook::from_env();
    if let Some(hook) = &stall {
        warn!(
            file = %hook.path().display(),
            "{} is set: a test-only fault hook stalls workers while the file exists (never set it in production)",
            dataplane::stall::STALL_FILE_ENV
        );
    }
    let mut workers = Vec::with_capacity(n_workers);
    let mut commands = Vec::with_capacity(n_workers);
    // With several workers, a ring per pair for the conntrack handoff: a
    // connection belongs to the worker its tuple hashes to, whichever
    // receives its packets (dataplane's `pipeline/conntrack/mod.rs`).
    let mut rings = if n_workers > 1 {
        dataplane::handoff::mesh(n_workers, dataplane::handoff::DEFAULT_HANDOFF_RING)
    } else {
        Vec::new()
    }
    .into_iter();
    for w in 0..n_workers {
        let core = dp.workers[w];
        let (cmd_tx, cmd_rx) = crossbeam::channel::unbounded();
        commands.push(cmd_tx);
        let mut worker: DpdkWorker = Worker::new(
            WorkerId(w as u16),
            Vec::new(),
            Vec::new(),
            MbufAlloc::new(Arc::clone(&pool)),
            Arc::clone(&snapshot),
            idle.clone(),
            Arc::clone(&worker_stop),
        )
        .map_err(|e| anyhow!("worker {w}: {e}"))?
        .with_flow_entries(dp.flow_table_entries)
        .with_conntrack(cfg.conntrack.to_dataplane())
        .with_neighbors(Arc::clone(&neighbors))
        .with_commands(cmd_rx)
        .with_capture(Arc::clone(&capture))
        .with_policy_observer(Arc::clone(&policy_obs));
        if let Some(hook) = &stall {
            worker = worker.with_stall_hook(hook.clone());
        }
        if let Some(r) = rings.next() {
            worker = worker.with_handoff(r);
        }
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
    // Publish latency: from a write's publish to every worker running it.
    let publish = Arc::new(crate::metrics::publish::PublishClock::default());
    let _publish_watch = publish
        .watch_workers(workers.iter().map(|w| Arc::clone(&w.stats)).collect())
        .context("spawn publish watcher")?;
    let dataplane = Arc::new(Mutex::new(Dataplane::new(
        Arc::clone(&pool),
        &cfg,
        commands,
        Arc::clone(&snapshot),
        Arc::clone(&neighbors),
    )));
    let (start_cfg, start_generation, may_be_gone) = match &api {
        Some(a) => (
            a.desired.config.clone(),
            a.desired.generation,
            a.from_state_file.as_slice(),
        ),
        None => (cfg.clone(), 1, &[][..]),
    };
    let started_ok = lock(&dataplane).apply_start(&start_cfg, start_generation, may_be_gone);
    if let Err(e) = started_ok {
        worker_stop.store(true, Ordering::Relaxed);
        for w in workers {
            let _ = w.handle.join();
        }
        if let Ok(m) = Arc::try_unwrap(dataplane) {
            m.into_inner().unwrap_or_else(|p| p.into_inner()).shutdown();
        }
        let _ = eal.cleanup();
        return Err(e);
    }
    info!(
        workers = n_workers,
        ports = start_cfg.ports.len(),
        not_plugged = lock(&dataplane).unplugged().count(),
        generation = start_generation,
        "forwarding"
    );
    let started = Instant::now();
    let mut api_stop = None;
    let mut startup_error = None;
    if let (Some(api), Some(rt)) = (api, &runtime) {
        let handle = crate::api::VswitchdHandle {
            dataplane: Arc::clone(&dataplane),
            workers: workers
                .iter()
                .map(|w| (w.index, w.core, Arc::clone(&w.stats)))
                .collect(),
            started,
            capture: Arc::clone(&capture),
            policy: Arc::clone(&policy_obs),
            snapshot: Arc::clone(&snapshot),
            port_view: Mutex::default(),
            publish: Arc::clone(&publish),
        };
        let state_file = api.settings.state_file.clone();
        let svc =
            control::service::VswitchService::new(handle, api.fixed, api.desired, Some(state_file))
                .with_liveness_timeout(api.settings.liveness_timeout(dp));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.changed().await;
        };
        let socket = api.settings.socket.clone();
        let mode = api.settings.mode();
        let group = api.settings.socket_group.clone();
        let unix_svc = svc.clone();
        let unix_rx = rx.clone();
        let mut servers = vec![rt.spawn(async move {
            control::service::serve_unix(&socket, mode, group.as_deref(), unix_svc, wait(unix_rx))
                .await
        })];
        if let Some(tcp) = api.settings.tcp.clone() {
            let files = control::service::TlsFiles {
                cert: tcp.cert,
                key: tcp.key,
                client_ca: tcp.client_ca,
            };
            servers.push(rt.spawn(async move {
                control::service::serve_tcp_mtls(tcp.listen, &files, svc, wait(rx)).await
            }));
        }
        // A socket that cannot be bound, or TLS material that cannot be read, fails
        // the start with the reason.
        std::thread::sleep(Duration::from_millis(100));
        if let Some(i) = servers.iter().position(|s| s.is_finished()) {
            stop.store(true, Ordering::Relaxed);
            let _ = tx.send(true);
            match rt.block_on(servers.swap_remove(i)) {
                Ok(Err(e)) => startup_error = Some(anyhow!("control API: {e}")),
                Ok(Ok(())) => startup_error = Some(anyhow!("control API stopped")),
                Err(e) => startup_error = Some(anyhow!("control API: {e}")),
            }
        } else {
            info!(socket = %api.settings.socket.display(), tcp = ?api.settings.tcp.as_ref().map(|t| t.listen), "control API listening");
        }
        api_stop = Some((tx, servers));
    }

    let beats: Vec<crate::systemd::WorkerBeatSource> = workers
        .iter()
        .map(|w| (w.index, w.core, Arc::clone(&w.stats)))
        .collect();
    let mut metrics_server = None;
    let mut supervisor = None;
    if startup_error.is_none() {
        if let Some(listener) = metrics_listener {
            let sources = crate::metrics::Sources {
                workers: beats.clone(),
                dataplane: Arc::clone(&dataplane),
                snapshot: Arc::clone(&snapshot),
                pool: Arc::clone(&pool),
                publish: Arc::clone(&publish),
                started: std::time::SystemTime::now() - started.elapsed(),
                ports: Mutex::default(),
            };
            match crate::metrics::serve(listener, sources) {
                Ok(m) => metrics_server = Some(m),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    startup_error = Some(e);
                }
            }
        }
    }
    if startup_error.is_none() {
        // Ports up, workers running, the API listening: ready.
        match crate::systemd::Supervisor::from_env(
            beats,
            Arc::clone(&snapshot),
            crate::systemd::liveness_timeout(&cfg),
        ) {
            Ok(mut s) => {
                s.ready(format!(
                    "forwarding: {} ports, {n_workers} workers, generation {}",
                    lock(&dataplane).ports().count(),
                    snapshot.generation()
                ));
                supervisor = Some(s);
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                startup_error = Some(anyhow!("systemd: {e}"));
            }
        }
    }

    let interval = Duration::from_millis(dp.stats_interval_ms.max(10));
    let mut next_stats = Instant::now();
    // How often links are compared for the log (a read of DPDK's link word per
    // port, no wait).
    const LINK_CHECK: Duration = Duration::from_millis(200);
    let mut next_link_check = Instant::now();
    while !stop.load(Ordering::Relaxed) && workers.iter().all(|w| !w.handle.is_finished()) {
        if Instant::now() >= next_stats {
            if let Some(path) = &dp.stats_file {
                let w: Vec<_> = workers
                    .iter()
                    .map(|w| (w.index, w.core, Arc::clone(&w.stats)))
                    .collect();
                let doc = stats_doc(&lock(&dataplane), &w, started);
                if let Err(e) = stats_file::write(path, &doc) {
                    dataplane::warn_limited!("stats file: {e:#}");
                }
            }
            next_stats += interval;
        }
        if reload.swap(false, Ordering::Relaxed) {
            if api_stop.is_some() {
                warn!("SIGHUP ignored: with [control] the desired state belongs to the API (vswitchctl apply -f)");
            } else {
                reload_config(&path, cores, &dataplane, &publish);
            }
        }
        if let Some(s) = &mut supervisor {
            s.tick();
        }
        // Ports whose device was gone at start plug when it is back. Never
        // waits behind a write: the next round tries.
        if let Ok(mut dp) = dataplane.try_lock() {
            if dp.has_unplugged() {
                dp.retry_unplugged(Instant::now());
            }
            if Instant::now() >= next_link_check {
                dp.log_link_changes();
                next_link_check = Instant::now() + LINK_CHECK;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(s) = &supervisor {
        s.stopping();
    }
    // The endpoint reads the dataplane: it stops before the dataplane does.
    drop(metrics_server);

    // The API goes first: no write may land while the dataplane shuts down.
    if let (Some((tx, servers)), Some(rt)) = (api_stop, &runtime) {
        let _ = tx.send(true);
        for server in servers {
            let _ =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await });
        }
    }
    if let Some(rt) = runtime {
        rt.shutdown_timeout(Duration::from_secs(2));
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
    let dataplane = match Arc::try_unwrap(dataplane) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => bail!("the dataplane is still shared at shutdown"),
    };
    let final_doc = stats_doc(&dataplane, &finished, started);
    if let Some(path) = &dp.stats_file {
        stats_file::write(path, &final_doc)?;
    }
    for p in &final_doc.ports {
        info!(port = %p.name, rx = p.rx_packets, tx = p.tx_packets, dropped = p.dropped, "final counters");
    }
    dataplane.shutdown();
    if let Err(e) = eal.cleanup() {
        warn!("EAL cleanup: {e}");
    }
    info!("stopped");
    match startup_error.or(failure) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Locks the dataplane; a panic while holding it cannot leave it half-changed in a
/// way the next user could make worse, so a poisoned lock is taken over.
pub fn lock(dp: &Mutex<Dataplane>) -> std::sync::MutexGuard<'_, Dataplane> {
    dp.lock().unwrap_or_else(|p| p.into_inner())
}

/// SIGHUP: re-reads the configuration and makes the dataplane run it as the next
/// generation: ports added or removed, tables published. Workers pick the new
/// snapshot up at their next burst; nothing is half-applied: a file that does not
/// validate, or that changes `[eal]` or `[dataplane]` (which need a restart), is
/// refused and the running generation stays.
fn reload_config(
    path: &Path,
    cores: usize,
    dataplane: &Mutex<Dataplane>,
    publish: &crate::metrics::publish::PublishClock,
) {
    let mut dp = lock(dataplane);
    let generation = dp.snapshot().generation();
    let next = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))
        .and_then(|text| VswitchConfig::parse(&text, cores).map_err(|e| anyhow!("{e}")));
    let next = match next {
        Ok(c) => c,
        Err(e) => {
            warn!("reload refused, keeping generation {generation}: {e:#}");
            return;
        }
    };
    if next.eal != dp.running().eal || next.dataplane != dp.running().dataplane {
        warn!(
            "reload refused, keeping generation {generation}: [eal] and [dataplane] need a restart"
        );
        return;
    }
    if next.metrics != dp.running().metrics || next.log != dp.running().log {
        warn!(
            "reload refused, keeping generation {generation}: [metrics] and [log] need a restart"
        );
        return;
    }
    let t = Instant::now();
    match dp.apply(&next, generation + 1) {
        Ok(()) => {
            publish.published(generation + 1);
            info!(
                generation = generation + 1,
                publish_us = t.elapsed().as_micros() as u64,
                "reloaded configuration"
            )
        }
        Err(e) => warn!("reload refused, keeping generation {generation}: {e:#}"),
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

fn stats_doc(
    dataplane: &Dataplane,
    workers: &[(usize, usize, Arc<WorkerStatsShared>)],
    started: Instant,
) -> StatsDoc {
    let snaps: Vec<StatsSnapshot> = workers.iter().map(|(_, _, s)| s.snapshot()).collect();
    let totals = StatsTotals::sum(&snaps);
    let ports = dataplane
        .ports()
        .map(|(idx, p)| {
            let t = totals.ports.get(idx.index()).copied().unwrap_or_default();
            let d = p.port.stats();
            PortDoc {
                name: p.config.name.clone(),
                driver: p.driver.clone(),
                rx_packets: t.rx_packets,
                rx_bytes: t.rx_bytes,
                tx_packets: t.tx_packets,
                tx_bytes: t.tx_bytes,
                dropped: t.total_drops(),
                link_up: p.port.link().up,
                plugged: true,
                not_plugged: String::new(),
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
        .chain(dataplane.unplugged().map(|(pc, why)| PortDoc {
            name: pc.name.clone(),
            driver: String::new(),
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            dropped: 0,
            link_up: false,
            plugged: false,
            not_plugged: why.to_owned(),
            dpdk: DpdkDoc::default(),
        }))
        .collect();
    StatsDoc {
        uptime_s: started.elapsed().as_secs_f64(),
        generated: totals.generated,
        generation: dataplane.snapshot().generation(),
        mbufs_in_use: u64::from(dataplane.pool().in_use_count()),
        ports,
        drops: stats_file::drops_doc(&totals),
        workers: workers
            .iter()
            .zip(&snaps)
            .map(|((i, core, _), s)| stats_file::worker_doc(*i, *core, s))
            .collect(),
    }
}
