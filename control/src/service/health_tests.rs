//! Liveness through the API: a stand-in dataplane whose heartbeats the test moves
//! or freezes, read through `Health` and `grpc.health.v1` on a real socket.

use std::sync::Mutex;
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::*;
use crate::api::vswitch_client::VswitchClient;
use crate::client::unix_channel;
use crate::liveness::WorkerBeat;
use crate::service::tests::{serve, when_up};
use crate::state::tests::fixed_and_state;
use crate::testutil::TempDir;

/// A dataplane of two workers whose heartbeats move only when the test says.
#[derive(Default)]
struct Beats(Mutex<LivenessSample>);

impl Beats {
    fn new() -> Self {
        let w = |index| WorkerBeat {
            index,
            core: index + 2,
            heartbeat: 0,
            generation: 1,
        };
        Beats(Mutex::new(LivenessSample {
            published_generation: 1,
            workers: vec![w(0), w(1)],
        }))
    }
}

impl DataplaneHandle for Arc<Beats> {
    fn apply(&self, _: &VswitchConfig, _: u64) -> Result<(), String> {
        Ok(())
    }
    fn ports(&self) -> Vec<api::PortStatus> {
        Vec::new()
    }
    fn stats(&self) -> api::Stats {
        api::Stats::default()
    }
    fn trace(&self, _: &str, _: &[u8]) -> Result<api::TraceReply, String> {
        Err("no trace here".into())
    }
    fn uptime_s(&self) -> f64 {
        0.0
    }
    fn capture_tap(
        &self,
        _: &str,
    ) -> Result<(Arc<dataplane::capture::CaptureTap>, dataplane::PortIdx), String> {
        Err("no capture here".into())
    }
    fn liveness(&self) -> LivenessSample {
        self.0.lock().unwrap().clone()
    }
}

async fn grpc_status(c: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    c.check(HealthCheckRequest {
        service: service.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .status
}

/// `Health`'s answer.
async fn health_of(c: &mut VswitchClient<tonic::transport::Channel>) -> api::HealthReply {
    c.health(api::HealthRequest {}).await.unwrap().into_inner()
}

/// Polls until `f` holds, for at most `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_makes_health_and_grpc_health_not_serving() {
    let dir = TempDir::new("svc-health");
    let sock = dir.path().join("api.sock");
    let (fixed, _, cfg) = fixed_and_state();
    let desired = Desired::boot(&cfg, &fixed, None).unwrap();
    let beats = Arc::new(Beats::new());
    let svc = VswitchService::new(Arc::clone(&beats), fixed, desired, None)
        .with_liveness_timeout(Duration::from_millis(300));
    let (stop, server) = serve(&sock, svc);
    let channel = when_up(|| unix_channel(&sock)).await;
    let mut api = VswitchClient::new(channel.clone());
    let mut probe = HealthClient::new(channel);

    // Both workers beat: serving everywhere.
    let beat = |which: &[usize]| {
        let mut s = beats.0.lock().unwrap();
        for &i in which {
            s.workers[i].heartbeat += 1;
        }
    };
    beat(&[0, 1]);
    let h = health_of(&mut api).await;
    assert!(h.serving, "{h:?}");
    assert_eq!(h.reason, "");
    assert_eq!((h.workers.len(), h.liveness_timeout_ms), (2, 300));
    assert!(h
        .workers
        .iter()
        .all(|w| w.alive && w.stuck_since_unix_ms == 0));
    for name in HEALTH_SERVICES {
        assert_eq!(
            grpc_status(&mut probe, name).await,
            ServingStatus::Serving as i32
        );
    }

    // Worker 1 freezes while worker 0 keeps beating.
    let api2 = api.clone();
    eventually(5, "Health never said not serving", || {
        beat(&[0]);
        let mut api = api2.clone();
        async move { !health_of(&mut api).await.serving }
    })
    .await;
    let h = health_of(&mut api).await;
    assert!(
        h.reason
            .starts_with("worker 1 (core 3) stuck: no heartbeat for"),
        "{h:?}"
    );
    assert!(h.workers[0].alive);
    assert!(!h.workers[1].alive && h.workers[1].stuck_since_unix_ms > 0);
    assert!(h.workers[1].heartbeat_age_ms > 300);
    let p = probe.clone();
    eventually(5, "grpc.health.v1 never said NOT_SERVING", || {
        beat(&[0]);
        let mut p = p.clone();
        async move {
            grpc_status(&mut p, "").await == ServingStatus::NotServing as i32
                && grpc_status(&mut p, "vswitch.v1.Vswitch").await
                    == ServingStatus::NotServing as i32
        }
    })
    .await;

    // It moves again: serving again.
    let p = probe.clone();
    eventually(5, "grpc.health.v1 never said SERVING again", || {
        beat(&[0, 1]);
        let mut p = p.clone();
        async move { grpc_status(&mut p, "").await == ServingStatus::Serving as i32 }
    })
    .await;
    beat(&[0, 1]);
    let h = health_of(&mut api).await;
    assert!(h.serving, "{h:?}");

    // A worker that beats but stays on an old generation is stuck too.
    beats.0.lock().unwrap().published_generation = 2;
    eventually(5, "a lagging worker never made Health not serving", || {
        beat(&[0, 1]);
        beats.0.lock().unwrap().workers[0].generation = 2;
        let mut api = api2.clone();
        async move {
            let h = health_of(&mut api).await;
            !h.serving
                && h.reason
                    .contains("worker 1 (core 3) stuck: still runs generation 1")
        }
    })
    .await;

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn the_api_service_name_is_the_one_grpc_health_reports() {
    use tonic::server::NamedService;
    assert_eq!(
        HEALTH_SERVICES[1],
        <VswitchServer<VswitchService<Arc<Beats>>> as NamedService>::NAME
    );
}
