//! Liveness follows the workers (issue #23, item 4): a real `vswitchd` whose
//! worker is frozen by the test-only stall hook (`VSWITCH_TEST_STALL_WORKER_FILE`,
//! see `dataplane::stall`) goes not serving — in `Health` (`vswitchctl health
//! --json`, `vswitchctl show`) and in the standard `grpc.health.v1` service, both
//! read by `vswitchctl health` — within 2 s, naming the worker and since when;
//! when the worker resumes it is serving again within 2 s.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::*;

/// Two workers when the machine has two cores (the second one is frozen, the
/// first must stay alive), else one.
fn workers() -> (Vec<usize>, usize) {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) {
        1 => (vec![0], 0),
        _ => (vec![0, 1], 1),
    }
}

struct Ctl {
    socket: PathBuf,
}

impl Ctl {
    fn cmd(&self, args: &[&str]) -> Output {
        vswitchctl(&self.socket, &[&["--timeout", "5"], args].concat())
    }

    /// `health --json`: the report and whether the command said serving (exit 0).
    fn health(&self) -> Option<(Value, bool)> {
        let out = self.cmd(&["health", "--json"]);
        let v = serde_json::from_slice(&out.stdout).ok()?;
        Some((v, out.status.success()))
    }

    /// Polls `health --json` until `want` holds of it, for at most `limit`;
    /// the report that satisfied it.
    fn wait_for(&self, what: &str, limit: Duration, want: impl Fn(&Value, bool) -> bool) -> Value {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < limit {
            if let Some((v, ok)) = self.health() {
                if want(&v, ok) {
                    return v;
                }
                last = Some(v);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what} not within {limit:?}; last report: {last:#?}");
    }
}

fn grpc(v: &Value, service: &str) -> String {
    v["grpc_health"][service].as_str().unwrap_or("").to_owned()
}

fn all_serving(v: &Value, ok: bool) -> bool {
    ok && v["serving"] == true
        && grpc(v, "") == "SERVING"
        && grpc(v, "vswitch.v1.Vswitch") == "SERVING"
}

fn stall(file: &Path, worker: usize) {
    std::fs::write(file, format!("{worker}\n")).unwrap();
}

#[test]
fn a_stalled_worker_makes_health_and_grpc_health_not_serving_until_it_resumes() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    let stall_file = dir.join("stall");
    let (cores, frozen) = workers();
    let switch = Vswitchd::start_env(
        &dir,
        &control_config(&dir, &cores, ""),
        None,
        &[("VSWITCH_TEST_STALL_WORKER_FILE", stall_file.as_path())],
    );
    let ctl = Ctl {
        socket: dir.join("ctl.sock"),
    };
    let up = ctl.wait_for("serving after start", Duration::from_secs(20), all_serving);
    assert_eq!(up["workers"].as_array().unwrap().len(), cores.len(), "{up}");
    assert_eq!(up["liveness_timeout_ms"], 1000, "{up}");
    assert!(switch.log_text().contains("test-only fault hook"));

    for round in 0..2 {
        // Freeze the worker: not serving within 2 s, naming it.
        stall(&stall_file, frozen);
        let down = ctl.wait_for(
            "Health and grpc.health.v1 not serving",
            Duration::from_secs(2),
            |v, ok| {
                !ok && v["serving"] == false
                    && grpc(v, "") == "NOT_SERVING"
                    && grpc(v, "vswitch.v1.Vswitch") == "NOT_SERVING"
            },
        );
        let who = format!("worker {frozen} (core {})", cores[frozen]);
        let reason = down["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("{who} stuck: no heartbeat for")),
            "round {round}: {down:#}"
        );
        let w = &down["workers"][frozen];
        assert_eq!(w["alive"], false, "{down:#}");
        assert!(w["stuck_since_unix_ms"].as_u64().unwrap() > 0, "{down:#}");
        let since = w["stuck_since"].as_str().unwrap();
        assert!(reason.contains(&format!("since {since}")), "{down:#}");
        if cores.len() > 1 {
            assert_eq!(down["workers"][0]["alive"], true, "{down:#}");
            assert!(!reason.contains("worker 0"), "{down:#}");
        }
        // show says it too, in words and in JSON; exit 0 (show reports, it does
        // not probe).
        let show = ctl.cmd(&["show"]);
        assert!(show.status.success());
        let text = String::from_utf8_lossy(&show.stdout);
        assert!(text.contains("NOT serving"), "{text}");
        assert!(text.contains(&format!("{who} stuck")), "{text}");
        let show = ctl.cmd(&["show", "--json"]);
        let v: Value = serde_json::from_slice(&show.stdout).unwrap();
        assert_eq!(v["health"]["serving"], false, "{v:#}");
        assert_eq!(v["health"]["workers"][frozen]["alive"], false, "{v:#}");
        // As a probe, `health` exits 1 and says why on stderr.
        let probe = ctl.cmd(&["health"]);
        assert_eq!(probe.status.code(), Some(1));
        let err = String::from_utf8_lossy(&probe.stderr);
        assert!(err.contains(&format!("not serving: {who} stuck")), "{err}");

        // Let it go: serving again within 2 s.
        std::fs::remove_file(&stall_file).unwrap();
        let back = ctl.wait_for("serving again", Duration::from_secs(2), all_serving);
        assert_eq!(back["reason"], "", "{back:#}");
        assert!(back["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["alive"] == true && w["stuck_since_unix_ms"] == 0));
    }
    let log = switch.log_text();
    assert!(log.contains("not serving:"), "{log}");
    assert!(log.contains("serving again"), "{log}");
    switch.stop();
}
