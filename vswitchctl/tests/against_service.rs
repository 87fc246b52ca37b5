//! The binary against control's real gRPC service (its dataplane replaced by a
//! stand-in), booted from deploy/vswitchd.toml.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use control::api;
use control::config::VswitchConfig;
use control::service::{serve_unix, DataplaneHandle, VswitchService, DEFAULT_SOCKET_MODE};
use control::state::{Desired, Fixed};

struct StandIn;

impl DataplaneHandle for StandIn {
    fn apply(&self, _cfg: &VswitchConfig, _generation: u64) -> Result<(), String> {
        Ok(())
    }
    fn ports(&self) -> Vec<api::PortStatus> {
        vec![api::PortStatus {
            name: "pod1".into(),
            profile: "af_packet".into(),
            driver: "net_af_packet".into(),
            link_up: true,
            speed_mbps: 10000,
            rx_packets: 12,
            tx_packets: 34,
            ..Default::default()
        }]
    }
    fn stats(&self) -> api::Stats {
        api::Stats {
            generation: 1,
            ports: vec![api::PortCounters {
                name: "pod1".into(),
                rx_packets: 5,
                ..Default::default()
            }],
            drops: [("no_route".to_string(), 3), ("malformed".to_string(), 0)].into(),
            ..Default::default()
        }
    }
    fn trace(&self, in_port: &str, frame: &[u8]) -> Result<api::TraceReply, String> {
        if in_port != "pod1" {
            return Err(format!("port \"{in_port}\" does not exist"));
        }
        Ok(api::TraceReply {
            generation: 1,
            stages: vec![api::TraceStage {
                stage: "parse".into(),
                detail: format!("{} bytes", frame.len()),
            }],
            verdict: "drop".into(),
            drop_reason: "no_route".into(),
            ..Default::default()
        })
    }
    fn uptime_s(&self) -> f64 {
        75.0
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

struct Server {
    dir: PathBuf,
    sock: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(tag: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("vswitchctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("vswitchd.sock");
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/vswitchd.toml"),
        )
        .unwrap();
        let cfg = VswitchConfig::parse(&text, 4).unwrap();
        let fixed = Fixed::from_config(&cfg, 4);
        let desired = Desired::boot(&cfg, &fixed, None).unwrap();
        let svc = VswitchService::new(StandIn, fixed, desired, None);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = sock.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                serve_unix(&path, DEFAULT_SOCKET_MODE, None, svc, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            dir,
            sock,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut c = Command::new(env!("CARGO_BIN_EXE_vswitchctl"));
        c.arg("--socket").arg(&self.sock).args(args);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs and expects exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects the server's refusal (exit 1, one line); returns stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn reads_show_the_booted_state() {
    let s = Server::start("reads");
    let show = s.ok(&["show"]);
    assert!(
        show.starts_with("generation 1, serving, up 1m15s"),
        "{show}"
    );
    assert!(show.contains("blue"), "{show}");
    assert!(show.contains("up 10000M"), "{show}");
    assert!(
        show.contains("endpoints: 1 local, 2 remote; routes: 2"),
        "{show}"
    );
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["show", "--json"])).unwrap();
    assert_eq!(v["generation"], 1);
    assert_eq!(v["counts"]["remote_endpoints"], 2);

    let nets = s.ok(&["net", "list"]);
    assert!(
        nets.lines().next().unwrap().starts_with("NETWORK"),
        "{nets}"
    );
    assert!(nets.contains("blue"));
    let routes: serde_json::Value =
        serde_json::from_str(&s.ok(&["route", "list", "--json"])).unwrap();
    assert_eq!(routes.as_array().unwrap().len(), 2, "{routes}");
    assert!(s.ok(&["endpoint", "list"]).contains("pod3"));
    assert!(s.ok(&["remote", "list"]).contains("192.0.2.3"));
    assert!(s.ok(&["underlay", "show"]).contains("192.0.2.254"));
    assert!(s.ok(&["port", "list"]).contains("net_af_packet"));

    let stats = s.ok(&["stats"]);
    assert!(
        stats.contains("no_route") && !stats.contains("malformed"),
        "{stats}"
    );
    assert!(s.ok(&["stats", "--all"]).contains("malformed"));
    let st: serde_json::Value = serde_json::from_str(&s.ok(&["stats", "--json"])).unwrap();
    assert_eq!(st["drops"]["no_route"], 3);

    let t = s.ok(&[
        "trace", "--in-port", "pod1", "--packet",
        "eth(src=02:00:00:00:03:01,dst=02:00:00:00:aa:01)/ipv4(src=10.1.0.2,dst=10.7.0.1)/udp(sport=1,dport=2)",
    ]);
    assert!(
        t.contains("parse: 60 bytes\nverdict: drop (no_route)\n"),
        "{t}"
    );
    let err = s.refused(&["trace", "--in-port", "nope", "--hex", "00"]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn get_then_apply_is_a_no_op_and_apply_reverts_changes() {
    let s = Server::start("apply");
    let yaml = s.ok(&["get"]);
    let json = s.ok(&["get", "-o", "json"]);
    let f_yaml = s.dir.join("state.yaml");
    let f_json = s.dir.join("state.json");
    std::fs::write(&f_yaml, &yaml).unwrap();
    std::fs::write(&f_json, &json).unwrap();
    for f in [&f_yaml, &f_json] {
        let out = s.ok(&["apply", "-f", f.to_str().unwrap()]);
        assert_eq!(
            out,
            "no changes\ngeneration 1 unchanged\n",
            "{}",
            f.display()
        );
    }
    let out = s.run_stdin(&["apply", "-f", "-", "--dry-run"], Some(yaml.as_bytes()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no changes\n");

    // Imperative writes.
    let out = s.ok(&[
        "net",
        "add",
        "red",
        "--vni",
        "500",
        "--tenant",
        "t1",
        "--subnet",
        "10.5.0.0/24",
        "--gateway-ip",
        "10.5.0.1",
        "--gateway-mac",
        "02:00:00:00:aa:05",
    ]);
    assert!(out.starts_with("generation 2 "), "{out}");
    let err = s.refused(&[
        "net",
        "add",
        "bad",
        "--vni",
        "16777216",
        "--gateway-mac",
        "02:00:00:00:aa:06",
    ]);
    assert!(err.contains("vni"), "{err}");
    s.ok(&["route", "del", "--tenant", "t1", "10.99.0.0/16"]);
    // A stale conditional write changes nothing.
    s.refused(&[
        "--expected-generation",
        "1",
        "route",
        "del",
        "--tenant",
        "t1",
        "0.0.0.0/0",
    ]);

    // Declarative: the exported document is stale now (generation 1, the switch
    // at 3). A dry run says what it would undo, and that apply will refuse.
    let dry = s.ok(&["apply", "-f", f_yaml.to_str().unwrap(), "--dry-run"]);
    assert!(
        dry.contains("networks: 0 added, 1 removed, 0 changed\n  - red\n"),
        "{dry}"
    );
    assert!(
        dry.contains("routes: 1 added, 0 removed, 0 changed\n  + t1 10.99.0.0/16\n"),
        "{dry}"
    );
    assert!(
        dry.contains("is at generation 1, the switch at 3: apply refuses it without --force"),
        "{dry}"
    );
    // Applied, it is refused by the switch, naming both generations, for YAML
    // (the header comment) and JSON (the key) alike; nothing changes.
    for f in [&f_yaml, &f_json] {
        let err = s.refused(&["apply", "-f", f.to_str().unwrap()]);
        assert!(
            err.contains(&format!(
                "{} is at generation 1 but the switch is at 3",
                f.display()
            )) && err.contains("--force"),
            "{err}"
        );
    }
    assert!(s
        .ok(&["get"])
        .starts_with("# vswitchd desired state, generation 3\n"));
    // A document without a generation needs --force (a usage error, exit 2).
    let bare = s.dir.join("bare.yaml");
    std::fs::write(&bare, yaml.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
    let out = s.run(&["apply", "-f", bare.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{out:?}"
    );
    // --force: back to the exported document.
    let out = s.ok(&["apply", "-f", f_yaml.to_str().unwrap(), "--force"]);
    assert!(out.contains("generation 4 "), "{out}");
    // A fresh export applies without --force.
    let fresh = s.dir.join("fresh.yaml");
    std::fs::write(&fresh, s.ok(&["get"]).replace("vni: 100\n", "vni: 101\n")).unwrap();
    let out = s.ok(&["apply", "-f", fresh.to_str().unwrap()]);
    assert!(out.contains("generation 5 "), "{out}");
    let out = s.ok(&["apply", "-f", bare.to_str().unwrap(), "--force"]);
    assert!(out.contains("generation 6 "), "{out}");
    assert_eq!(
        s.ok(&["get"]).lines().skip(1).collect::<Vec<_>>(),
        yaml.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn delete_of_a_used_port_names_the_user() {
    let s = Server::start("used");
    let err = s.refused(&["port", "del", "pod3"]);
    assert!(
        err.contains("port \"pod3\" is used by endpoint 02:00:00:00:03:01 in network \"blue\": delete that first"),
        "{err}"
    );
    let err = s.refused(&["net", "del", "blue"]);
    assert!(err.contains("network \"blue\" has 1 endpoint, "), "{err}");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let s = Server::start("pipe");
    for args in [&["show", "--json"][..], &["get"], &["stats"]] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vswitchctl"));
        c.arg("--socket").arg(&s.sock).args(args);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        // The reader goes away before the answer arrives: the first write meets
        // EPIPE (Rust ignores SIGPIPE, so it is an error, not a signal).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn health_reports_the_api_and_grpc_health_v1() {
    let s = Server::start("health");
    let text = s.ok(&["health"]);
    assert!(text.starts_with("generation 1, serving"), "{text}");
    assert!(
        text.contains("grpc.health.v1: \"\" SERVING, \"vswitch.v1.Vswitch\" SERVING"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["health", "--json"])).unwrap();
    assert_eq!(v["serving"], true);
    assert_eq!(v["reason"], "");
    assert_eq!(v["liveness_timeout_ms"], 1000);
    assert_eq!(v["grpc_health"][""], "SERVING");
    assert_eq!(v["grpc_health"]["vswitch.v1.Vswitch"], "SERVING");
    let show: serde_json::Value = serde_json::from_str(&s.ok(&["show", "--json"])).unwrap();
    assert_eq!(show["health"]["serving"], true);
    assert!(show["health"]["workers"].is_array());
}
