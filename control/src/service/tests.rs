use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tonic::Code;

use super::*;
use crate::api::op::Op as K;
use crate::client::connect_unix;
use crate::state::tests::{fixed_and_state, invalid_writes, network, op};
use crate::testutil::TempDir;

/// The control logic's stand-in for the dataplane: records what it is asked to
/// apply and can be told to refuse the next one.
#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<(u64, usize)>>,
    refuse_next: AtomicBool,
    /// Milliseconds the next apply takes (a slow port start).
    slow_next_ms: std::sync::atomic::AtomicU64,
}

impl DataplaneHandle for Recorder {
    fn apply(&self, cfg: &VswitchConfig, generation: u64) -> Result<(), String> {
        if self.refuse_next.swap(false, Ordering::SeqCst) {
            return Err("port \"pod5\": no such interface".into());
        }
        let slow = self.slow_next_ms.swap(0, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(slow));
        self.applied
            .lock()
            .unwrap()
            .push((generation, cfg.networks.len()));
        Ok(())
    }
    fn ports(&self) -> Vec<api::PortStatus> {
        vec![api::PortStatus {
            name: "pod1".into(),
            link_up: true,
            ..Default::default()
        }]
    }
    fn stats(&self) -> api::Stats {
        api::Stats {
            generation: 42,
            ..Default::default()
        }
    }
    fn trace(&self, in_port: &str, frame: &[u8]) -> Result<api::TraceReply, String> {
        if in_port != "pod1" {
            return Err("no such port".into());
        }
        Ok(api::TraceReply {
            verdict: "drop".into(),
            frame_after: frame.to_vec(),
            ..Default::default()
        })
    }
    fn uptime_s(&self) -> f64 {
        1.5
    }
    fn capture_tap(
        &self,
        port: &str,
    ) -> Result<
        (
            std::sync::Arc<dataplane::capture::CaptureTap>,
            dataplane::PortIdx,
        ),
        String,
    > {
        // The control logic's stand-in: a real tap that no worker feeds.
        match port {
            "pod1" => Ok((std::sync::Arc::default(), dataplane::PortIdx(0))),
            _ => Err(format!("no port named {port:?}")),
        }
    }
}

impl Recorder {
    fn generations(&self) -> Vec<u64> {
        self.applied.lock().unwrap().iter().map(|a| a.0).collect()
    }
}

fn red_network() -> api::WriteRequest {
    api::WriteRequest {
        ops: vec![op(K::AddNetwork(network(
            "red",
            500,
            "10.5.0.0/24",
            "10.5.0.1",
        )))],
        expected_generation: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_api_on_a_unix_socket() {
    let dir = TempDir::new("svc");
    let sock = dir.path().join("run/api.sock");
    let state_file = dir.path().join("state.json");
    // A stale socket from a previous run is replaced.
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());

    let (fixed, state, cfg) = fixed_and_state();
    let desired = Desired::boot(&cfg, &fixed, Some(&state_file)).unwrap();
    let svc = VswitchService::new(
        Recorder::default(),
        fixed,
        desired,
        Some(state_file.clone()),
    );
    let handle_view = svc.clone();
    let (stop, server) = serve(&sock, svc);
    let mut c = when_up(|| connect_unix(&sock)).await;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // A second server on the same path is refused.
    let e = bind_unix(&sock, 0o660, None).unwrap_err().to_string();
    assert!(e.contains("another process is serving on it"), "{e}");

    // Reads.
    let h = c.health(api::HealthRequest {}).await.unwrap().into_inner();
    assert!(h.serving);
    assert_eq!((h.generation, h.uptime_s), (1, 1.5));
    assert_eq!(h.version, env!("CARGO_PKG_VERSION"));
    let got = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.generation, got.state.as_ref()), (1, Some(&state)));
    let ports = c
        .list_ports(api::ListPortsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ports.ports[0].name, "pod1");
    let stats = c
        .get_stats(api::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.generation, 42);
    let t = c
        .trace(api::TraceRequest {
            in_port: "pod1".into(),
            frame: vec![1, 2, 3],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((t.verdict.as_str(), t.frame_after), ("drop", vec![1, 2, 3]));
    let e = c
        .trace(api::TraceRequest {
            in_port: "pod9".into(),
            frame: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "trace on port \"pod9\": no such port");

    // A write is persisted, applied and visible.
    let r = c.write(red_network()).await.unwrap().into_inner();
    assert_eq!(r.generation, 2);
    assert_eq!(handle_view.handle().generations(), vec![2]);
    let got = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.generation, 2);
    let s = got.state.unwrap();
    assert_eq!(s.networks[1].name, "red");
    assert_eq!(s.networks[1].encap, "vxlan", "canonical form");
    assert_eq!(
        crate::persist::load(&state_file)
            .unwrap()
            .unwrap()
            .generation,
        2
    );

    // Compare-and-set.
    let mut stale = red_network();
    stale.expected_generation = 1;
    let e = c.write(stale).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "generation is 2, expected 1");
    let r = c
        .write(api::WriteRequest {
            ops: vec![op(K::DelNetwork("red".into()))],
            expected_generation: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.generation, 3);

    // Every invalid write is refused whole: nothing applied, persisted or changed.
    let before_file = std::fs::read(&state_file).unwrap();
    let before = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    let cases = invalid_writes();
    assert!(cases.len() >= 30);
    for (ops, wants) in cases {
        let e = c
            .write(api::WriteRequest {
                ops: ops.clone(),
                expected_generation: 3,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{ops:?}: {e:?}");
        for want in wants {
            assert!(
                e.message().contains(want),
                "{ops:?}: {:?} lacks {want:?}",
                e.message()
            );
        }
        let now = c
            .get_state(api::GetStateRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(now, before, "{ops:?} changed the state");
    }
    assert_eq!(std::fs::read(&state_file).unwrap(), before_file);
    assert_eq!(handle_view.handle().generations(), vec![2, 3]);

    // The dataplane refusing a state rolls it back, the file included.
    handle_view
        .handle()
        .refuse_next
        .store(true, Ordering::SeqCst);
    let e = c.write(red_network()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "the dataplane refused generation 4: port \"pod5\": no such interface"
    );
    let now = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now, before);
    let saved = crate::persist::load(&state_file).unwrap().unwrap();
    assert_eq!(saved.generation, 3);
    assert_eq!(
        saved.sections,
        crate::state::to_sections(before.state.as_ref().unwrap()).unwrap()
    );
    // ...and the next write takes generation 4.
    assert_eq!(
        c.write(red_network())
            .await
            .unwrap()
            .into_inner()
            .generation,
        4
    );

    // Replace.
    let mut bad = state.clone();
    bad.networks[0].vni = 16_777_216;
    let e = c
        .replace(api::ReplaceRequest {
            state: Some(bad),
            expected_generation: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "network \"blue\": vni 16777216 is out of range (0-16777215)"
    );
    let e = c
        .replace(api::ReplaceRequest {
            state: Some(state.clone()),
            expected_generation: 3,
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "generation is 4, expected 3");
    let r = c
        .replace(api::ReplaceRequest {
            state: Some(state.clone()),
            expected_generation: 4,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.generation, 5);
    let got = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.generation, got.state), (5, Some(state.clone())));
    assert_eq!(handle_view.handle().generations(), vec![2, 3, 4, 5]);

    // Concurrent writers are serialized: every write gets its own generation.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.write(api::WriteRequest {
                ops: vec![op(K::AddL2(api::L2Entry {
                    mac: format!("02:00:00:00:77:{i:02x}"),
                    port: "pod1".into(),
                }))],
                expected_generation: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .generation
        }));
    }
    let mut gens = Vec::new();
    for t in tasks {
        gens.push(t.await.unwrap());
    }
    gens.sort_unstable();
    assert_eq!(gens, (6..14).collect::<Vec<_>>());
    let got = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.state.unwrap().l2.len(), 2 + 8);

    // A restart restores the last state from the file.
    let (fixed, _, cfg) = fixed_and_state();
    let d = Desired::boot(&cfg, &fixed, Some(&state_file)).unwrap();
    assert_eq!(d.generation, 13);
    assert_eq!(d.state, handle_view.current().state);

    drop(c);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!sock.exists(), "the socket is removed on shutdown");
}

#[test]
fn groups_resolve_from_etc_group() {
    let etc = "root:x:0:\nwheel:x:10:alice,bob\nvswitch:x:997:\nbroken\n";
    assert_eq!(group_id_in(etc, "vswitch"), Some(997));
    assert_eq!(group_id_in(etc, "wheel"), Some(10));
    assert_eq!(group_id_in(etc, "nobody"), None);
    assert_eq!(group_id_in(etc, "broken"), None);
    assert_eq!(resolve_group("1234").unwrap(), 1234);
    let e = resolve_group("no-such-group-here").unwrap_err().to_string();
    assert_eq!(
        e,
        "group \"no-such-group-here\": no such group in /etc/group"
    );
}

#[test]
fn a_path_that_is_not_a_socket_is_refused() {
    let dir = TempDir::new("svc-file");
    let p = dir.path().join("api.sock");
    std::fs::write(&p, "x").unwrap();
    let e = bind_unix(&p, 0o660, None).unwrap_err().to_string();
    assert!(e.ends_with("api.sock: exists and is not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "x");
}

/// A service over a [`Recorder`] on a socket in `dir`, starting from `desired`,
/// and a client.
async fn start(
    dir: &TempDir,
    desired: impl FnOnce(&Fixed, &VswitchConfig) -> Desired,
) -> (
    VswitchService<Recorder>,
    crate::api::vswitch_client::VswitchClient<tonic::transport::Channel>,
    tokio::sync::oneshot::Sender<()>,
) {
    let sock = dir.path().join("api.sock");
    let (fixed, _, cfg) = fixed_and_state();
    let desired = desired(&fixed, &cfg);
    let svc = VswitchService::new(Recorder::default(), fixed, desired, None);
    let view = svc.clone();
    let (stop, _) = serve(&sock, svc);
    let c = when_up(|| connect_unix(&sock)).await;
    (view, c, stop)
}

/// Serves `svc` on the Unix socket `sock` in a task of its own, until the
/// returned sender sends (or is dropped); the sender and the task.
pub(super) fn serve<D: DataplaneHandle>(
    sock: &Path,
    svc: VswitchService<D>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ServeError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sock = sock.to_owned();
    let server = tokio::spawn(async move {
        serve_unix(&sock, DEFAULT_SOCKET_MODE, None, svc, async {
            let _ = stopped.await;
        })
        .await
    });
    (stop, server)
}

/// What `connect` gives once the server it connects to is up: tried every
/// 20 ms, 100 times at most.
pub(super) async fn when_up<T, E, F>(mut connect: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<T, E>>,
{
    for _ in 0..100 {
        if let Ok(c) = connect().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_cannot_be_trusted_change_nothing() {
    let dir = TempDir::new("svc-guards");
    let (view, mut c, _stop) =
        start(&dir, |fixed, cfg| Desired::boot(cfg, fixed, None).unwrap()).await;
    let before = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();

    // Replace without a state is refused, not read as "remove everything".
    let e = c
        .replace(api::ReplaceRequest {
            state: None,
            expected_generation: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("state: missing"), "{}", e.message());

    // Too many ops: refused before any is looked at, with a short message.
    let ops = vec![op(K::DelNetwork("x".into())); crate::state::MAX_OPS + 1];
    let e = c
        .write(api::WriteRequest {
            ops,
            expected_generation: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("at most 20000"), "{}", e.message());

    // A write queued behind a slow one past its client's deadline is not applied.
    view.handle().slow_next_ms.store(1500, Ordering::SeqCst);
    let mut slow = c.clone();
    let first = tokio::spawn(async move { slow.write(red_network()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = tonic::Request::new(api::WriteRequest {
        ops: vec![op(K::DelNetwork("red".into()))],
        expected_generation: 0,
    });
    late.set_timeout(Duration::from_millis(300));
    let e = c.write(late).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    let first = first.await.unwrap().unwrap().into_inner();
    // Let the expired write reach the front of the queue and be dropped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        now.generation, first.generation,
        "only the slow write landed"
    );
    assert!(now.state.unwrap().networks.iter().any(|n| n.name == "red"));
    assert_eq!(view.handle().generations(), vec![before.generation + 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_generation_refuses_further_writes() {
    let dir = TempDir::new("svc-gen");
    let (view, mut c, _stop) = start(&dir, |fixed, cfg| {
        let mut d = Desired::boot(cfg, fixed, None).unwrap();
        d.generation = u64::MAX;
        d
    })
    .await;
    let e = c.write(red_network()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("is the last one"), "{}", e.message());
    assert!(view.handle().generations().is_empty());
    let now = c
        .get_state(api::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.generation, u64::MAX);
}

/// A write naming a file outside the allowed directories is PERMISSION_DENIED (not
/// INVALID_ARGUMENT) and changes nothing; a running port outside them, from the
/// file, stays writable as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_outside_the_allowed_dirs_is_permission_denied() {
    use crate::state::tests::port;
    let (fixed, _, cfg) = fixed_and_state();
    let desired = Desired::boot(&cfg, &fixed, None).unwrap();
    let svc = VswitchService::new(Recorder::default(), fixed, desired, None);
    let add = |params: &[(&str, &str)]| {
        Request::new(api::WriteRequest {
            ops: vec![op(K::AddPort(port("cap", "pcap", params)))],
            expected_generation: 0,
        })
    };
    for (params, want) in [
        (
            &[("rx_iface", "lo"), ("tx_pcap", "/etc/shadow")][..],
            "tx_pcap: \"/etc/shadow\" is outside the allowed directories",
        ),
        (
            &[("rx_pcap", "/var/lib/vswitch/pcap/../../../etc/x")][..],
            "rx_pcap: \"/var/lib/vswitch/pcap/../../../etc/x\": `..` is not allowed",
        ),
    ] {
        let e = svc.write(add(params)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());
        assert!(
            e.message().starts_with("permission denied: port \"cap\": ")
                && e.message().contains(want),
            "{}",
            e.message()
        );
    }
    assert_eq!(svc.current().generation, 1);
    // The deploy file's replay port reads /var/lib/vswitch/l2-64.pcap, outside the
    // default pcap_dirs: it runs unchanged, so a Replace that keeps it passes.
    let state = svc.current().state.clone();
    svc.replace(Request::new(api::ReplaceRequest {
        state: Some(state),
        expected_generation: 0,
    }))
    .await
    .unwrap();
}
