//! The gRPC service `vswitch.v1.Vswitch`: transactions over the desired state,
//! persisted before they are acknowledged and published through a
//! [`DataplaneHandle`], and reads.
//!
//! Writes are serialized by one async lock; each runs on the blocking pool
//! (validation, fsync, the dataplane's apply). Reads take the current state from an
//! `Arc` swapped under a short-held lock, so they never wait for a write's
//! validation, persistence or publication.
//!
//! Liveness follows the workers ([`crate::liveness`]): `Health` judges their
//! heartbeats at each call, and the standard `grpc.health.v1.Health` service,
//! served on every listener next to `vswitch.v1.Vswitch`, is kept in step by a
//! task that samples them every [`LIVENESS_POLL`], so stock probes
//! (`grpc_health_probe`, a Kubernetes exec probe) see a stuck worker too.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::api::{self, vswitch_server::Vswitch, vswitch_server::VswitchServer};
use crate::config::{ControlConfig, VswitchConfig};
use crate::liveness::{Liveness, LivenessMonitor, LivenessSample};
use crate::persist;
use crate::state::{to_sections, ApiError, Desired, Fixed};

/// What the daemon provides: applying a validated desired state, and reads.
/// Why the dataplane did not take a delta write ([`DataplaneHandle::apply_deltas`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaError {
    /// Delta `index` is refused (a duplicate MAC, an address outside the
    /// network's subnets…): the client's mistake.
    Refused {
        /// The delta, which is the op of the same index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// `commit` failed: nothing was published.
    Commit(String),
}

pub trait DataplaneHandle: Send + Sync + 'static {
    /// Makes the dataplane run `cfg` as generation `generation` (hot-plug/unplug
    /// ports, compile and publish the snapshot). Called with the writer lock held,
    /// after the new state was persisted. An Err is reported to the client as
    /// INVALID_ARGUMENT and the state rolls back (the persisted file too).
    ///
    /// # Errors
    /// Why the dataplane could not run `cfg`; it keeps running the previous one.
    fn apply(&self, cfg: &VswitchConfig, generation: u64) -> Result<(), String>;
    /// Checks what only the running host can tell before anything is written: the
    /// prerequisites of ports `cfg` would add (interface present, PMD installed,
    /// files readable). An Err is the client's mistake: INVALID_ARGUMENT.
    ///
    /// # Errors
    /// The first port whose prerequisites are missing.
    fn precheck(&self, _cfg: &VswitchConfig) -> Result<(), String> {
        Ok(())
    }
    /// Whether [`apply_deltas`](Self::apply_deltas) is implemented: a
    /// write of endpoint, route and port ops then costs what it changes
    /// ([`crate::delta`]).
    fn supports_deltas(&self) -> bool {
        false
    }
    /// Applies `deltas` to the running dataplane as generation `generation`:
    /// checks and prepares them against what runs (plugs the ports added),
    /// calls `commit` (which makes the write durable), and only when it
    /// succeeds publishes (then unplugs the ports deleted). Called with the
    /// writer lock held.
    ///
    /// # Errors
    /// The delta the dataplane refuses, or `commit`'s failure; either way
    /// nothing is published.
    fn apply_deltas(
        &self,
        _deltas: &[crate::delta::Delta],
        _generation: u64,
        _commit: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<(), DeltaError> {
        Err(DeltaError::Commit(
            "this dataplane takes whole states only".into(),
        ))
    }
    /// Service `name`'s Maglev table as the published snapshot holds it;
    /// `None` when the snapshot has no such service.
    ///
    /// # Errors
    /// A dataplane that holds no tables.
    fn service_table(&self, _name: &str) -> Result<Option<api::ServiceTable>, String> {
        Err("this dataplane holds no service tables".into())
    }
    /// Ports as they run.
    fn ports(&self) -> Vec<api::PortStatus>;
    /// Counters.
    fn stats(&self) -> api::Stats;
    /// Runs `frame` arriving on `in_port` through the current snapshot.
    ///
    /// # Errors
    /// An unknown port or a frame that cannot be traced (reported as
    /// INVALID_ARGUMENT).
    fn trace(&self, in_port: &str, frame: &[u8]) -> Result<api::TraceReply, String>;
    /// Lists or flushes the workers' connections, or reads their counters
    /// (`req` checked by the service: a known op, a parsable filter).
    ///
    /// # Errors
    /// A filter naming what does not exist (reported as INVALID_ARGUMENT);
    /// the default: no connection tracking here.
    fn conntrack(&self, _req: &api::ConntrackRequest) -> Result<api::ConntrackReply, String> {
        Err("this dataplane has no connection tracking".into())
    }
    /// The policy stage's hit counters per rule (only `policy`'s when not
    /// empty).
    ///
    /// # Errors
    /// The default: no policy stage here.
    fn policy_hits(&self, _policy: &str) -> Result<api::PolicyHitsReply, String> {
        Err("this dataplane has no policy stage".into())
    }
    /// The last denied connections, the newest `limit` (0: all kept).
    ///
    /// # Errors
    /// The default: no policy stage here.
    fn policy_log(&self, _limit: u32) -> Result<api::PolicyLogReply, String> {
        Err("this dataplane has no policy stage".into())
    }
    /// Seconds since the daemon started.
    fn uptime_s(&self) -> f64;
    /// Every worker's heartbeat and generation, and the published generation.
    /// Called several times a second, and must answer while a worker is stuck:
    /// no lock a write may hold (a write can wait on a stuck worker), only the
    /// workers' published counters. The default (no workers) is always live.
    fn liveness(&self) -> LivenessSample {
        LivenessSample::default()
    }
    /// The capture tap and the index of `port`, for a capture.
    ///
    /// # Errors
    /// An unknown port.
    fn capture_tap(
        &self,
        port: &str,
    ) -> Result<(Arc<dataplane::capture::CaptureTap>, dataplane::PortIdx), String>;
}

struct Inner<D> {
    handle: D,
    fixed: Fixed,
    state_file: Option<PathBuf>,
    /// Serializes writes.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// The published desired state; replaced whole by a write.
    current: RwLock<Arc<Desired>>,
    /// A capture is streaming (one at a time: the tap has one channel).
    capturing: std::sync::atomic::AtomicBool,
    /// What is known of the workers' heartbeats between samples.
    liveness: Mutex<LivenessMonitor>,
    /// The statuses `grpc.health.v1` serves, shared by every listener.
    health: tonic_health::server::HealthReporter,
    /// The task keeping `health` in step has been started.
    health_task: tokio::sync::OnceCell<()>,
    /// Lines in the state file's journal (writer lock held).
    journal: std::sync::atomic::AtomicUsize,
}

/// The journal is folded into the state file once it holds this many writes:
/// a write then costs a whole state's write once in this many (and a start
/// replays at most this many).
pub const JOURNAL_MAX: usize = 1024;

/// What a write asks for.
enum WriteKind {
    /// A list of ops.
    Ops(Vec<api::Op>),
    /// A whole state.
    Replace(Box<api::DesiredState>),
}

/// How often the workers' heartbeats are sampled for `grpc.health.v1`.
pub const LIVENESS_POLL: Duration = Duration::from_millis(200);

/// The `grpc.health.v1` service names that follow the workers' liveness: the
/// whole server (`""`) and the API.
pub const HEALTH_SERVICES: [&str; 2] = ["", "vswitch.v1.Vswitch"];

/// The service. Cheap to clone (all clones share the state).
pub struct VswitchService<D: DataplaneHandle> {
    inner: Arc<Inner<D>>,
}

impl<D: DataplaneHandle> Clone for VswitchService<D> {
    fn clone(&self) -> Self {
        VswitchService {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<D: DataplaneHandle> VswitchService<D> {
    /// A service over `handle`, whose dataplane runs `desired` (from
    /// [`Desired::boot`]). Writes are validated against `fixed` and, with
    /// `state_file`, persisted there ([`persist`]) before they are applied.
    pub fn new(handle: D, fixed: Fixed, desired: Desired, state_file: Option<PathBuf>) -> Self {
        VswitchService {
            inner: Arc::new(Inner {
                handle,
                fixed,
                state_file,
                writer: Arc::new(tokio::sync::Mutex::new(())),
                current: RwLock::new(Arc::new(desired.clone())),
                capturing: std::sync::atomic::AtomicBool::new(false),
                liveness: Mutex::new(LivenessMonitor::new(
                    ControlConfig::DEFAULT_LIVENESS_TIMEOUT,
                )),
                health: tonic_health::server::HealthReporter::new(),
                health_task: tokio::sync::OnceCell::new(),
                journal: std::sync::atomic::AtomicUsize::new(desired.journal),
            }),
        }
    }

    /// Sets the liveness bound ([`ControlConfig::liveness_timeout`]; 1 s unless
    /// set).
    pub fn with_liveness_timeout(self, timeout: Duration) -> Self {
        lock_monitor(&self.inner.liveness).set_timeout(timeout);
        self
    }

    /// The workers' liveness, sampled now.
    pub fn liveness(&self) -> Liveness {
        self.inner.liveness()
    }

    /// Starts (once, on the current tokio runtime) the task that keeps
    /// `grpc.health.v1`'s statuses following the workers' liveness: it samples
    /// them every [`LIVENESS_POLL`] and ends when the service is dropped. The
    /// servers call this before they serve; every caller returns once the first
    /// sample has set the statuses, so no probe ever finds a name unregistered.
    pub async fn start_health_task(&self) {
        self.inner
            .health_task
            .get_or_init(|| async {
                let reporter = self.inner.health.clone();
                let first = self.inner.liveness();
                let mut last = serving_status(&first);
                if !first.serving() {
                    tracing::warn!("not serving: {}", first.reason(SystemTime::now()));
                }
                for name in HEALTH_SERVICES {
                    reporter.set_service_status(name, last).await;
                }
                let weak = Arc::downgrade(&self.inner);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(LIVENESS_POLL);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await; // the first tick is now: that sample is taken
                    loop {
                        tick.tick().await;
                        let Some(inner) = weak.upgrade() else { break };
                        let live = inner.liveness();
                        drop(inner);
                        let status = serving_status(&live);
                        if status == last {
                            continue;
                        }
                        if live.serving() {
                            tracing::info!("serving again: every worker is alive");
                        } else {
                            tracing::warn!("not serving: {}", live.reason(SystemTime::now()));
                        }
                        for name in HEALTH_SERVICES {
                            reporter.set_service_status(name, status).await;
                        }
                        last = status;
                    }
                });
            })
            .await;
    }

    /// The `grpc.health.v1.Health` service over this service's statuses.
    async fn health_server(
        &self,
    ) -> tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService> {
        self.start_health_task().await;
        tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(self.inner.health.clone()),
        )
    }

    /// The published desired state.
    pub fn current(&self) -> Arc<Desired> {
        self.inner.current()
    }

    /// The dataplane handle.
    pub fn handle(&self) -> &D {
        &self.inner.handle
    }

    /// Runs one write: `make` turns the current state into the next, validated.
    /// `deadline` is the client's (its `grpc-timeout`): a write still queued or
    /// validating when it passes is not applied, since the client has already
    /// been told it failed.
    async fn write_with(
        &self,
        expected: u64,
        deadline: Option<Instant>,
        kind: WriteKind,
    ) -> Result<api::WriteReply, Status> {
        let received = Instant::now();
        let guard = Arc::clone(&self.inner.writer).lock_owned().await;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _writer = guard;
            inner.write_locked(received, expected, deadline, kind)
        })
        .await
        .map_err(|e| Status::internal(format!("the write failed: {e}")))?
    }
}

fn serving_status(live: &Liveness) -> tonic_health::ServingStatus {
    if live.serving() {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    }
}

/// The monitor holds no invariant a panic could break mid-way: take it over.
fn lock_monitor(m: &Mutex<LivenessMonitor>) -> std::sync::MutexGuard<'_, LivenessMonitor> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<D: DataplaneHandle> Inner<D> {
    fn liveness(&self) -> Liveness {
        let sample = self.handle.liveness();
        lock_monitor(&self.liveness).observe(&sample, Instant::now())
    }

    fn current(&self) -> Arc<Desired> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes `state` whole as `generation` and folds the journal into it.
    fn persist(&self, generation: u64, state: &api::DesiredState) -> Result<(), String> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let sections = to_sections(state).map_err(|e| e.to_string())?;
        persist::store(path, generation, &sections).map_err(|e| e.to_string())?;
        // The write is durable now. A journal left behind is harmless (a start
        // skips its lines at or below the state file's generation), so failing
        // to remove it does not fail the write.
        if let Err(e) = persist::clear_journal(path) {
            tracing::warn!("{e}");
        }
        self.journal.store(0, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Makes a delta write durable: a journal line, or, when the journal is long
    /// or there is no state file to journal against yet, the whole state.
    fn persist_delta(
        &self,
        generation: u64,
        cur: &Desired,
        deltas: &[crate::delta::Delta],
    ) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        if self.journal.load(Ordering::Relaxed) >= JOURNAL_MAX || !path.exists() {
            let mut next = cur.clone();
            crate::delta::apply(&mut next.config, &mut next.state, deltas);
            return self.persist(generation, &next.state);
        }
        let entry = persist::JournalEntry {
            generation,
            ops: crate::delta::journal_ops(deltas),
        };
        persist::append(path, &entry).map_err(|e| e.to_string())?;
        self.journal.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A write whose ops are all endpoint or route ops ([`crate::delta`]).
    /// `Ok(Err(cur))` hands it (and the state) back to the whole-state path:
    /// the dataplane refused a route write, which that path words.
    fn write_delta(
        &self,
        received: Instant,
        cur: Arc<Desired>,
        generation: u64,
        ops: &[api::Op],
        deltas: Result<Vec<crate::delta::Delta>, crate::delta::Refusal>,
        expired: impl Fn(&str) -> Option<Status>,
    ) -> Result<Result<api::WriteReply, Arc<Desired>>, Status> {
        let refused = |index: usize, reason: String| -> Status {
            ApiError::Op {
                index,
                op: crate::state::op_label(ops[index].op.as_ref()),
                reason,
            }
            .into()
        };
        let deltas = deltas.map_err(|(i, r)| refused(i, r))?;
        if let Some(e) = expired("while the write was validated") {
            return Err(e);
        }
        let mut commit = || self.persist_delta(generation, &cur, &deltas);
        match self.handle.apply_deltas(&deltas, generation, &mut commit) {
            Ok(()) => {}
            Err(DeltaError::Refused { .. }) if crate::delta::refusals_go_whole(&deltas) => {
                return Ok(Err(cur));
            }
            Err(DeltaError::Refused { index, reason }) => return Err(refused(index, reason)),
            Err(DeltaError::Commit(e)) => {
                return Err(Status::internal(format!(
                    "generation {generation} not written: {e}"
                )))
            }
        }
        // The writer's own reference goes first, or the state would be copied.
        drop(cur);
        {
            let mut w = self.current.write().unwrap_or_else(|p| p.into_inner());
            // In place unless a reader holds the old state (then it is copied once).
            let d = Arc::make_mut(&mut w);
            crate::delta::apply(&mut d.config, &mut d.state, &deltas);
            d.generation = generation;
        }
        Ok(Ok(api::WriteReply {
            generation,
            publish_us: u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX),
        }))
    }

    fn write_locked(
        &self,
        received: Instant,
        expected: u64,
        deadline: Option<Instant>,
        kind: WriteKind,
    ) -> Result<api::WriteReply, Status> {
        let expired = |when: &str| {
            deadline.filter(|d| Instant::now() >= *d).map(|_| {
                Status::deadline_exceeded(format!(
                    "the client's deadline passed {when}: nothing was changed"
                ))
            })
        };
        if let Some(e) = expired("while the write waited for the one before it") {
            return Err(e);
        }
        let mut cur = self.current();
        if expected != 0 && expected != cur.generation {
            return Err(ApiError::Generation {
                current: cur.generation,
                expected,
            }
            .into());
        }
        let generation = cur
            .generation
            .checked_add(1)
            .ok_or(ApiError::GenerationExhausted(cur.generation))?;
        let next = match kind {
            WriteKind::Ops(ops) => {
                let small = !ops.is_empty() && ops.len() <= crate::state::MAX_OPS;
                if small && self.handle.supports_deltas() {
                    let ports =
                        crate::delta::section_deltas(&self.fixed, &cur.state, &cur.config, &ops)
                            // The ports' paths and prerequisites as the whole-state
                            // path checks them; a refusal goes to it, which words it.
                            .filter(|(_, sections)| {
                                crate::paths::confine_new_ports(&cur.config.ports, sections).is_ok()
                                    && self.handle.precheck(sections).is_ok()
                            })
                            .map(|(d, _)| Ok(d));
                    if let Some(deltas) = ports.or_else(|| crate::delta::deltas(&cur.config, &ops))
                    {
                        match self.write_delta(received, cur, generation, &ops, deltas, expired)? {
                            Ok(reply) => return Ok(reply),
                            Err(back) => cur = back,
                        }
                    }
                }
                self.fixed.apply_ops(&cur.state, &ops)?
            }
            WriteKind::Replace(state) => self.fixed.replace(&state)?,
        };
        // Before the host checks: a refused path is not even looked at by a PMD.
        // The message says "permission denied" too: vswitchctl shows only the text.
        crate::paths::confine_new_ports(&cur.config.ports, &next.config)
            .map_err(|e| Status::permission_denied(format!("permission denied: {e}")))?;
        self.handle
            .precheck(&next.config)
            .map_err(|e| Status::invalid_argument(crate::state::bounded(e)))?;
        if let Some(e) = expired("while the write was validated") {
            return Err(e);
        }
        self.persist(generation, &next.state)
            .map_err(|e| Status::internal(format!("generation {generation} not written: {e}")))?;
        // From here on the write is applied whatever the deadline: the state file
        // already holds it.
        if let Err(e) = self.handle.apply(&next.config, generation) {
            let mut msg = format!("the dataplane refused generation {generation}: {e}");
            if let Err(e2) = self.persist(cur.generation, &cur.state) {
                msg.push_str(&format!(
                    "; restoring the state file to generation {} failed too: {e2}",
                    cur.generation
                ));
            }
            // What the dataplane refuses (a port that will not start, a table that
            // will not build) is the write's content, not the server's fault: the
            // client gets INVALID_ARGUMENT with the reason, and nothing changed.
            return Err(Status::invalid_argument(crate::state::bounded(msg)));
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Desired {
            generation,
            state: next.state,
            config: next.config,
            journal: 0,
        });
        Ok(api::WriteReply {
            generation,
            publish_us: u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX),
        })
    }
}

#[tonic::async_trait]
impl<D: DataplaneHandle> Vswitch for VswitchService<D> {
    async fn get_state(
        &self,
        _request: Request<api::GetStateRequest>,
    ) -> Result<Response<api::State>, Status> {
        let cur = self.current();
        Ok(Response::new(api::State {
            generation: cur.generation,
            state: Some(cur.state.clone()),
        }))
    }

    async fn write(
        &self,
        request: Request<api::WriteRequest>,
    ) -> Result<Response<api::WriteReply>, Status> {
        let deadline = client_deadline(&request);
        let req = request.into_inner();
        self.write_with(req.expected_generation, deadline, WriteKind::Ops(req.ops))
            .await
            .map(Response::new)
    }

    async fn replace(
        &self,
        request: Request<api::ReplaceRequest>,
    ) -> Result<Response<api::WriteReply>, Status> {
        let deadline = client_deadline(&request);
        let req = request.into_inner();
        let state = req.state.ok_or(ApiError::NoState)?;
        self.write_with(
            req.expected_generation,
            deadline,
            WriteKind::Replace(Box::new(state)),
        )
        .await
        .map(Response::new)
    }

    async fn list_ports(
        &self,
        _request: Request<api::ListPortsRequest>,
    ) -> Result<Response<api::ListPortsReply>, Status> {
        Ok(Response::new(api::ListPortsReply {
            ports: self.inner.handle.ports(),
        }))
    }

    async fn get_stats(
        &self,
        _request: Request<api::GetStatsRequest>,
    ) -> Result<Response<api::Stats>, Status> {
        Ok(Response::new(self.inner.handle.stats()))
    }

    async fn health(
        &self,
        _request: Request<api::HealthRequest>,
    ) -> Result<Response<api::HealthReply>, Status> {
        let live = self.inner.liveness();
        let wall = SystemTime::now();
        Ok(Response::new(api::HealthReply {
            serving: live.serving(),
            generation: self.current().generation,
            uptime_s: self.inner.handle.uptime_s(),
            version: env!("CARGO_PKG_VERSION").into(),
            reason: live.reason(wall),
            workers: live.to_api(wall),
            liveness_timeout_ms: u64::try_from(live.timeout.as_millis()).unwrap_or(u64::MAX),
            published_generation: live.published_generation,
        }))
    }

    type CaptureStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<api::CapturedPacket, Status>> + Send>,
    >;

    async fn capture(
        &self,
        request: Request<api::CaptureRequest>,
    ) -> Result<Response<Self::CaptureStream>, Status> {
        use dataplane::capture::Direction;
        use std::sync::atomic::Ordering;
        let req = request.into_inner();
        let (rx, tx) = match req.direction.as_str() {
            "" | "both" => (true, true),
            "rx" => (true, false),
            "tx" => (false, true),
            d => {
                return Err(Status::invalid_argument(format!(
                    "direction: {} is not rx, tx or both",
                    crate::names::quote(d)
                )))
            }
        };
        // A name outside the grammar names no port: refused before anything
        // could echo it.
        crate::names::check_with(&req.port, crate::names::MAX_PORT_NAME)
            .map_err(|e| Status::invalid_argument(format!("port: {e}")))?;
        let (tap, idx) =
            self.inner.handle.capture_tap(&req.port).map_err(|e| {
                Status::invalid_argument(crate::state::bounded(format!("port: {e}")))
            })?;
        if self.inner.capturing.swap(true, Ordering::AcqRel) {
            return Err(Status::failed_precondition("a capture is already running"));
        }
        let frames = tap.start(idx, rx, tx);
        let (out, stream) = tokio::sync::mpsc::channel(1024);
        let inner = Arc::clone(&self.inner);
        let deadline = (req.seconds > 0).then(|| {
            std::time::Instant::now() + std::time::Duration::from_secs(req.seconds.into())
        });
        tokio::task::spawn_blocking(move || {
            let mut sent = 0u64;
            loop {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d)
                    || (req.count > 0 && sent >= req.count)
                    || out.is_closed()
                {
                    break;
                }
                let Ok(f) = frames.recv_timeout(std::time::Duration::from_millis(100)) else {
                    continue;
                };
                if f.port != idx {
                    continue;
                }
                let pkt = api::CapturedPacket {
                    timestamp_ns: f
                        .time
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0),
                    direction: match f.direction {
                        Direction::Rx => "rx".into(),
                        Direction::Tx => "tx".into(),
                    },
                    data: f.data,
                    dropped: tap.dropped(),
                };
                if out.blocking_send(Ok(pkt)).is_err() {
                    break;
                }
                sent += 1;
            }
            tap.stop();
            inner.capturing.store(false, Ordering::Release);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(stream),
        )))
    }

    async fn conntrack(
        &self,
        request: Request<api::ConntrackRequest>,
    ) -> Result<Response<api::ConntrackReply>, Status> {
        let req = request.into_inner();
        check_conntrack(&req).map_err(Status::invalid_argument)?;
        self.inner
            .handle
            .conntrack(&req)
            .map(Response::new)
            .map_err(|e| Status::invalid_argument(crate::state::bounded(e)))
    }

    async fn policy_hits(
        &self,
        request: Request<api::PolicyHitsRequest>,
    ) -> Result<Response<api::PolicyHitsReply>, Status> {
        let req = request.into_inner();
        if !req.policy.is_empty() {
            crate::config::policy::check_name(&req.policy).map_err(Status::invalid_argument)?;
        }
        self.inner
            .handle
            .policy_hits(&req.policy)
            .map(Response::new)
            .map_err(|e| Status::unimplemented(crate::state::bounded(e)))
    }

    async fn policy_log(
        &self,
        request: Request<api::PolicyLogRequest>,
    ) -> Result<Response<api::PolicyLogReply>, Status> {
        let req = request.into_inner();
        self.inner
            .handle
            .policy_log(req.limit)
            .map(Response::new)
            .map_err(|e| Status::unimplemented(crate::state::bounded(e)))
    }

    async fn trace(
        &self,
        request: Request<api::TraceRequest>,
    ) -> Result<Response<api::TraceReply>, Status> {
        let req = request.into_inner();
        // The name goes into the message (a gRPC header): a 10 KB one made the
        // reply an HTTP/2 protocol error. One outside the grammar names no port.
        crate::names::check_with(&req.in_port, crate::names::MAX_PORT_NAME)
            .map_err(|e| Status::invalid_argument(format!("in_port: {e}")))?;
        self.inner
            .handle
            .trace(&req.in_port, &req.frame)
            .map(Response::new)
            .map_err(|e| {
                Status::invalid_argument(crate::state::bounded(format!(
                    "trace on port {}: {e}",
                    crate::names::quote(&req.in_port)
                )))
            })
    }

    async fn get_service_table(
        &self,
        request: Request<api::GetServiceTableRequest>,
    ) -> Result<Response<api::ServiceTable>, Status> {
        let req = request.into_inner();
        crate::names::check(&req.name)
            .map_err(|e| Status::invalid_argument(format!("name: {e}")))?;
        match self.inner.handle.service_table(&req.name) {
            Ok(Some(t)) => Ok(Response::new(t)),
            Ok(None) => Err(Status::not_found(format!(
                "no service named {} in the published snapshot",
                crate::names::quote(&req.name)
            ))),
            Err(e) => Err(Status::unimplemented(e)),
        }
    }
}

/// A conntrack request's own checks: the op, the address and state of the
/// filter, the port's range; what exists (the network) is the dataplane's.
fn check_conntrack(req: &api::ConntrackRequest) -> Result<(), String> {
    if !matches!(req.op.as_str(), "list" | "flush" | "stats") {
        return Err(format!(
            "op: {} is not list, flush or stats",
            crate::names::quote(&req.op)
        ));
    }
    let Some(f) = &req.filter else {
        return Ok(());
    };
    if !f.address.is_empty() && f.address.parse::<std::net::IpAddr>().is_err() {
        return Err(format!(
            "filter.address: {} is not an IP address",
            crate::names::quote(&f.address)
        ));
    }
    if f.port.is_some_and(|p| p > u32::from(u16::MAX)) {
        return Err(format!(
            "filter.port: {} is not a port (0-65535)",
            f.port.unwrap_or(0)
        ));
    }
    if !f.state.is_empty() && dataplane::pipeline::conntrack::CtState::from_name(&f.state).is_none()
    {
        return Err(format!(
            "filter.state: {} is not a connection state (SYN_SENT, ESTABLISHED, TIME_WAIT, CLOSE, UDP_REPLIED, ...)",
            crate::names::quote(&f.state)
        ));
    }
    if !f.network.is_empty() {
        crate::names::check_with(&f.network, crate::names::MAX_NAME)
            .map_err(|e| format!("filter.network: {e}"))?;
    }
    Ok(())
}

/// When the client stops waiting: its `grpc-timeout` header (`<digits><unit>`,
/// unit one of H, M, S, m, u, n), counted from now.
fn client_deadline<T>(request: &Request<T>) -> Option<Instant> {
    let v = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "H" => std::time::Duration::from_secs(n.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(n.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(d)
}

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Setting up the socket failed.
    #[error("{}: {what}: {source}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The socket path is taken by something that is not a stale socket.
    #[error("{}: {reason}", path.display())]
    Taken {
        /// The socket path.
        path: PathBuf,
        /// What is there.
        #[source]
        reason: TakenReason,
    },
    /// The group to give the socket to does not exist.
    #[error("group {0:?}: no such group in /etc/group")]
    NoGroup(String),
    /// Reading the TLS material failed.
    #[error("{}: {source}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving the API: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What occupies a socket path.
#[derive(Debug, thiserror::Error)]
pub enum TakenReason {
    /// Something else than a socket.
    #[error("exists and is not a socket")]
    NotASocket,
    /// A live server.
    #[error("another process is serving on it")]
    Live,
}

/// The group id of `group`: a number, or a name looked up in `/etc/group`.
///
/// # Errors
/// No such group.
pub fn resolve_group(group: &str) -> Result<u32, ServeError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    group_id_in(&text, group).ok_or_else(|| ServeError::NoGroup(group.to_owned()))
}

/// The gid of `group` in the text of an `/etc/group` file (`name:x:gid:members`).
fn group_id_in(etc_group: &str, group: &str) -> Option<u32> {
    etc_group.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let gid = f.next()?;
        (name == group).then(|| gid.trim().parse().ok()).flatten()
    })
}

/// Binds the Unix socket at `path` (replacing a stale socket), with `mode`
/// (0o660 by default) and, with `group`, that group.
///
/// # Errors
/// The path is taken by a live server or by something that is not a socket, or a
/// system call failed.
pub fn bind_unix(path: &Path, mode: u32, group: Option<&str>) -> Result<UnixListener, ServeError> {
    let sock_err = |what: &str| {
        let what = what.to_owned();
        move |source| ServeError::Socket {
            path: path.to_owned(),
            what,
            source,
        }
    };
    let gid = group.map(resolve_group).transpose()?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::Taken {
                    path: path.to_owned(),
                    reason: TakenReason::Live,
                });
            }
            std::fs::remove_file(path).map_err(sock_err("removing the stale socket"))?;
        }
        Ok(_) => {
            return Err(ServeError::Taken {
                path: path.to_owned(),
                reason: TakenReason::NotASocket,
            })
        }
        Err(_) => {}
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(sock_err("creating its directory"))?;
    }
    let listener = UnixListener::bind(path).map_err(sock_err("binding"))?;
    let setup = || -> Result<(), ServeError> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(sock_err(&format!("setting mode {mode:o}")))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(sock_err(&format!("giving it to group {gid}")))?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

/// Serves `svc` (and `grpc.health.v1`) on the Unix socket `path` (see
/// [`bind_unix`]) until `shutdown` completes, then removes the socket file.
///
/// # Errors
/// Binding the socket or the server failed.
pub async fn serve_unix<D: DataplaneHandle>(
    path: &Path,
    mode: u32,
    group: Option<&str>,
    svc: VswitchService<D>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let listener = bind_unix(path, mode, group)?;
    let result = tonic::transport::Server::builder()
        .add_service(svc.health_server().await)
        .add_service(server(svc))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    result.map_err(ServeError::from)
}

/// The largest request or reply the API carries. tonic's default of 4 MiB is
/// less than a `Replace` or `GetState` of 100k routes; the bound stays, so that
/// one caller cannot make the daemon buffer an unbounded message.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The gRPC service over `svc`, with the API's message bounds.
fn server<D: DataplaneHandle>(svc: VswitchService<D>) -> VswitchServer<VswitchService<D>> {
    VswitchServer::new(svc)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The default mode of the API socket.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod tests;

/// The files of a mutual-TLS listener: the server's certificate chain and key, and
/// the CA that client certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA of the clients (PEM): a client without a certificate it signed is refused.
    pub client_ca: PathBuf,
}

fn read_tls(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::TlsFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Serves the API (and `grpc.health.v1`) on TCP with mutual TLS (rustls): clients
/// must present a certificate signed by `tls.client_ca`. There is deliberately no
/// plain-TCP variant: an API that changes the dataplane is not served
/// unauthenticated.
///
/// # Errors
/// Unreadable TLS files, a bad certificate or key, or a socket that cannot be
/// bound.
pub async fn serve_tcp_mtls<D: DataplaneHandle>(
    addr: std::net::SocketAddr,
    tls: &TlsFiles,
    svc: VswitchService<D>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let identity = Identity::from_pem(read_tls(&tls.cert)?, read_tls(&tls.key)?);
    let config = ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(read_tls(&tls.client_ca)?))
        .client_auth_optional(false);
    tonic::transport::Server::builder()
        .tls_config(config)?
        .add_service(svc.health_server().await)
        .add_service(server(svc))
        .serve_with_shutdown(addr, shutdown)
        .await?;
    Ok(())
}
