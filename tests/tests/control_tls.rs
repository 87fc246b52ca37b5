//! The API over TCP requires mutual TLS: a client with a certificate from the
//! configured CA is served; one whose certificate another CA signed is refused at
//! the handshake. Plain TCP is refused at configuration load (see `control`'s
//! config tests and `bad_config.rs`). `grpc.health.v1` is served on the same
//! listener, under the same mutual TLS.

use std::process::Command;

use system_tests::tls::{issue, make_ca};
use system_tests::*;

#[test]
fn tcp_api_needs_a_client_certificate_from_the_ca() {
    require_root!();
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIP: openssl not installed");
        return;
    }
    let dir = TempDir::new(&unique_tag());
    let d = dir.0.as_path();
    make_ca(d, "ca");
    make_ca(d, "rogue-ca");
    issue(d, "ca", "server", "localhost", "serverAuth");
    issue(d, "ca", "client", "operator", "clientAuth");
    issue(d, "rogue-ca", "rogue", "intruder", "clientAuth");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |f: &str| d.join(f).display().to_string();
    let body = format!(
        r#"{dirs}
[control.tcp]
listen = "127.0.0.1:{port}"
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
[[port]]
name = "sink"
profile = "null"
"#,
        dirs = allowed_dirs(&dir),
        cert = p("server.pem"),
        key = p("server.key"),
        ca = p("ca.pem"),
    );
    let config = control_config(&dir, &[0], &body);
    let v = Vswitchd::start(&dir, &config);
    let ctl_args = |who: &str, args: &[&str]| {
        Command::new(workspace_bin("vswitchctl"))
            .args(["--tcp", &format!("127.0.0.1:{port}"), "--ca", &p("ca.pem")])
            .args([
                "--cert",
                &p(&format!("{who}.pem")),
                "--key",
                &p(&format!("{who}.key")),
            ])
            .args(["--timeout", "5"])
            .args(args)
            .output()
            .unwrap()
    };
    let ctl = |who: &str| ctl_args(who, &["port", "list", "--json"]);
    let ok = ctl("client");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ports: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(ports.to_string().contains("\"sink\""), "{ports}");
    let rogue = ctl("rogue");
    let why = String::from_utf8_lossy(&rogue.stderr);
    assert_eq!(
        rogue.status.code(),
        Some(3),
        "a certificate from another CA is refused: {why}"
    );
    // grpc.health.v1 is served on the mTLS listener too, following liveness.
    let health = ctl_args("client", &["health", "--json"]);
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(health["serving"], true, "{health}");
    assert_eq!(health["grpc_health"][""], "SERVING", "{health}");
    assert_eq!(
        health["grpc_health"]["vswitch.v1.Vswitch"], "SERVING",
        "{health}"
    );
    // The Unix socket keeps working beside it.
    let unix = vswitchctl(&dir.join("ctl.sock"), &["show"]);
    assert!(unix.status.success());
    v.stop();
}
