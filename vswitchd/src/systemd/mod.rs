//! Running under systemd: readiness, status lines and the watchdog.
//!
//! `READY=1` goes out once the ports are up, the workers run and the API (when
//! configured) listens; `STATUS=` lines say what the daemon is doing and, while
//! a worker is stuck, which one; `STOPPING=1` goes out when shutdown begins.
//! Watchdog pings follow the workers' heartbeats ([`watchdog`]). Without
//! `NOTIFY_SOCKET` none of this runs.

pub mod notify;
pub mod watchdog;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use control::liveness::{LivenessMonitor, LivenessSample, WorkerBeat};
use dataplane::{Pipeline, SnapshotCell, WorkerStatsShared};
use tracing::{info, warn};

pub use notify::Notifier;
use watchdog::{Action, Watchdog};

/// A worker's index, core and published counters.
pub type WorkerBeatSource = (usize, usize, Arc<WorkerStatsShared>);

/// Samples the workers' heartbeats and the published generation together.
pub fn sample(snapshot: &SnapshotCell<Pipeline>, workers: &[WorkerBeatSource]) -> LivenessSample {
    // The published generation first: a worker read after it can only be as new
    // or newer, so a sample never shows a lag that was not there.
    let published_generation = snapshot.generation();
    LivenessSample {
        published_generation,
        workers: workers
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

/// What the daemon tells the service manager, and when.
pub struct Supervisor {
    notifier: Notifier,
    watchdog: Option<Watchdog>,
    monitor: LivenessMonitor,
    workers: Vec<WorkerBeatSource>,
    snapshot: Arc<SnapshotCell<Pipeline>>,
    /// The last verdict, to log and report only its changes.
    serving: bool,
    /// The status line last sent while serving.
    ready_status: String,
}

impl Supervisor {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. `timeout` is the
    /// liveness bound (as `Health` uses).
    ///
    /// # Errors
    /// A malformed variable: the manager asked for something this cannot give.
    pub fn from_env(
        workers: Vec<WorkerBeatSource>,
        snapshot: Arc<SnapshotCell<Pipeline>>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let notifier = Notifier::from_env().map_err(|e| e.to_string())?;
        let usec = std::env::var(watchdog::WATCHDOG_USEC_ENV).ok();
        let pid = std::env::var(watchdog::WATCHDOG_PID_ENV).ok();
        let interval = watchdog::interval(usec.as_deref(), pid.as_deref(), std::process::id())?;
        let watchdog = match interval {
            Some(i) if notifier.enabled() => {
                let w = Watchdog::new(i);
                info!(
                    interval_ms = i.as_millis() as u64,
                    ping_ms = w.period().as_millis() as u64,
                    liveness_timeout_ms = timeout.as_millis() as u64,
                    "systemd watchdog on: pinged only while every worker's heartbeat advances"
                );
                Some(w)
            }
            _ => None,
        };
        Ok(Supervisor {
            notifier,
            watchdog,
            monitor: LivenessMonitor::new(timeout),
            workers,
            snapshot,
            serving: true,
            ready_status: String::new(),
        })
    }

    fn send(&self, state: &str) {
        if let Err(e) = self.notifier.notify(state) {
            warn!("systemd notify {state:?}: {e}");
        }
    }

    /// Sends a `STATUS=` line.
    pub fn status(&self, line: &str) {
        self.send(&format!("STATUS={line}"));
    }

    /// Ports up, workers running, API listening: `READY=1` with `status`, and the
    /// first watchdog ping.
    pub fn ready(&mut self, status: String) {
        self.send(&format!("READY=1\nSTATUS={status}"));
        self.ready_status = status;
        self.tick();
    }

    /// Samples the workers; pings the watchdog when one is due and all are alive.
    pub fn tick(&mut self) {
        // Nobody listens: nothing to sample for (Health samples on its own).
        if !self.notifier.enabled() {
            return;
        }
        let now = Instant::now();
        let live = self
            .monitor
            .observe(&sample(&self.snapshot, &self.workers), now);
        let serving = live.serving();
        if serving != self.serving {
            self.serving = serving;
            let watchdog = self.watchdog.is_some();
            if serving {
                if watchdog {
                    info!("workers alive again: watchdog pings resume");
                }
                self.status(&self.ready_status);
            } else {
                let reason = live.reason(SystemTime::now());
                if watchdog {
                    warn!("watchdog pings withheld: {reason}");
                }
                self.status(&format!("not serving: {reason}"));
            }
        }
        if let Some(w) = &mut self.watchdog {
            if w.tick(now, serving) == Action::Ping {
                self.send("WATCHDOG=1");
            }
        }
    }

    /// Shutdown begins.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// Checks what a service manager passed, without sending anything.
///
/// # Errors
/// A malformed `NOTIFY_SOCKET`, `WATCHDOG_USEC` or `WATCHDOG_PID`.
pub fn check_env() -> Result<(), String> {
    Notifier::from_env().map_err(|e| e.to_string())?;
    let usec = std::env::var(watchdog::WATCHDOG_USEC_ENV).ok();
    let pid = std::env::var(watchdog::WATCHDOG_PID_ENV).ok();
    watchdog::interval(usec.as_deref(), pid.as_deref(), std::process::id()).map(drop)
}

/// The liveness bound: `[control] liveness_timeout_ms` or its default, which
/// covers a few of the workers' longest idle sleeps.
pub fn liveness_timeout(cfg: &control::config::VswitchConfig) -> Duration {
    use control::config::ControlConfig;
    match &cfg.control {
        Some(c) => c.liveness_timeout(&cfg.dataplane),
        None => ControlConfig::DEFAULT_LIVENESS_TIMEOUT.max(Duration::from_micros(
            cfg.dataplane
                .idle_sleep_max_us
                .saturating_mul(ControlConfig::LIVENESS_SLEEPS),
        )),
    }
}

/// Sends one `STATUS=` line before the supervisor exists (start-up steps that
/// can take long: EAL maps memory and probes devices).
pub fn announce(line: &str) {
    if let Ok(n) = Notifier::from_env() {
        if let Err(e) = n.notify(&format!("STATUS={line}")) {
            warn!("systemd notify: {e}");
        }
    }
}
