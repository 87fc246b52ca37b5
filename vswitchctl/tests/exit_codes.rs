//! The built binary's exit codes without a daemon.

use std::process::Command;

fn vswitchctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vswitchctl"));
    c.env_remove("VSWITCH_SOCKET");
    c
}

#[test]
fn missing_socket_exits_3_naming_it() {
    let sock = std::env::temp_dir().join(format!("vswitchctl-missing-{}.sock", std::process::id()));
    for args in [
        &["show"][..],
        &["port", "list", "--json"],
        &["net", "del", "blue"],
    ] {
        let out = vswitchctl()
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&*sock.to_string_lossy()), "{err}");
        assert!(err.starts_with("vswitchctl: cannot connect to "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn socket_from_the_environment() {
    let sock = std::env::temp_dir().join(format!("vswitchctl-env-{}.sock", std::process::id()));
    let out = vswitchctl()
        .env("VSWITCH_SOCKET", &sock)
        .arg("stats")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&*sock.to_string_lossy()));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["route", "add", "10.0.0.0/8"],
        &["port", "add", "p"],
        &["trace", "--in-port", "p"],
    ] {
        let out = vswitchctl().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn bad_local_input_exits_2_before_connecting() {
    let dir = std::env::temp_dir();
    let bad = dir.join(format!("vswitchctl-bad-{}.yaml", std::process::id()));
    std::fs::write(&bad, "portz: []\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "trace".into(),
                "--in-port".into(),
                "p".into(),
                "--packet".into(),
                "ipv4(src=1.1.1.1,dst=2.2.2.2)".into(),
            ],
            "starts with eth",
        ),
        (
            vec![
                "trace".into(),
                "--in-port".into(),
                "p".into(),
                "--hex".into(),
                "abc".into(),
            ],
            "odd number",
        ),
        (
            vec!["apply".into(), "-f".into(), bad.to_string_lossy().into()],
            "portz",
        ),
        (
            vec!["apply".into(), "-f".into(), "/nonexistent/x.json".into()],
            "/nonexistent/x.json",
        ),
    ];
    for (args, want) in cases {
        let out = vswitchctl()
            .args(["--socket", "/nonexistent/v.sock"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn completion_needs_no_daemon() {
    for shell in ["bash", "zsh", "fish"] {
        let out = vswitchctl().args(["completion", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("vswitchctl"));
    }
}

#[test]
fn a_hung_daemon_exits_3_naming_the_socket_within_the_timeout() {
    let sock = std::env::temp_dir().join(format!("vswitchctl-hung-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    // Listening, never accepting: connect(2) succeeds (the backlog), no answer
    // ever comes, as with a stopped or wedged vswitchd.
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for args in [&["show"][..], &["port", "del", "p"]] {
        let t = std::time::Instant::now();
        let out = vswitchctl()
            .arg("--socket")
            .arg(&sock)
            .args(["--timeout", "1"])
            .args(args)
            .output()
            .unwrap();
        let elapsed = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert_eq!(
            err,
            format!(
                "vswitchctl: no answer from {} within 1 s (is vswitchd running? --timeout to wait longer)\n",
                sock.display()
            )
        );
        assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");
        assert!(out.stdout.is_empty());
    }
    drop(listener);
    let _ = std::fs::remove_file(&sock);
}

#[test]
fn apply_without_a_generation_needs_force_before_connecting() {
    let doc = std::env::temp_dir().join(format!("vswitchctl-nogen-{}.yaml", std::process::id()));
    std::fs::write(&doc, "ports: []\n").unwrap();
    let out = vswitchctl()
        .args(["--socket", "/nonexistent/v.sock", "apply", "-f"])
        .arg(&doc)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--force") && err.contains(&*doc.to_string_lossy()),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // With --force (or as a dry run) it goes on to connect: exit 3 here.
    for extra in ["--force", "--dry-run"] {
        let out = vswitchctl()
            .args(["--socket", "/nonexistent/v.sock", "apply", extra, "-f"])
            .arg(&doc)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{extra}");
    }
    let _ = std::fs::remove_file(&doc);
}

#[test]
fn help_documents_the_exit_codes() {
    let out = vswitchctl().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    for line in [
        "  1  the switch refused",
        "  2  usage",
        "  3  the daemon cannot be reached",
    ] {
        assert!(help.contains(line), "{line}: {help}");
    }
    assert!(help.contains("--timeout"), "{help}");
}
