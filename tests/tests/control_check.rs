//! `[control]` mistakes are found by `vswitchd --check`, and by a real start before
//! EAL, with one line naming the key (issue #23): a socket mode open to other users,
//! a socket group that does not exist, TLS files that are missing or not PEM, an
//! allowed directory that holds the state file or that others can write to.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use system_tests::*;

/// Runs `vswitchd --config <dir>/<name> [--check]`: exit code and stderr.
fn vswitchd(dir: &TempDir, name: &str, config: &str, check: bool) -> (i32, String) {
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(workspace_bin("vswitchd"));
    cmd.arg("--config").arg(&path).env("RUST_LOG", "error");
    if check {
        cmd.arg("--check");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A valid configuration with the API on, everything inside `dir`, then `extra`
/// lines of `[control]` (which may set `pcap_dirs` in place of `dir/pcap`).
fn config(dir: &TempDir, extra: &str) -> String {
    let d = dir.0.display();
    let pcap = if extra.contains("pcap_dirs") {
        String::new()
    } else {
        format!("pcap_dirs = [\"{d}/pcap\"]")
    };
    let body = format!(
        "socket_dirs = [\"{d}/vhost\"]\n{pcap}\n{extra}\n[[port]]\nname = \"sink\"\nprofile = \"null\"\n"
    );
    control_config(dir, &[0], &body)
}

const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIBAA==\n-----END PRIVATE KEY-----\n";

#[test]
fn check_refuses_each_control_mistake_with_one_line() {
    let dir = TempDir::new(&unique_tag());
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = dir.0.display().to_string();
    let (cert, key, junk) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("junk.pem"),
    );
    std::fs::write(&cert, PEM_CERT).unwrap();
    std::fs::write(&key, PEM_KEY).unwrap();
    std::fs::write(&junk, "not PEM\n").unwrap();
    let (cert, key, junk) = (
        cert.display().to_string(),
        key.display().to_string(),
        junk.display().to_string(),
    );
    let tls = |c: &str, k: &str, ca: &str| {
        format!(
            "[control.tcp]\nlisten = \"127.0.0.1:1\"\ncert = \"{c}\"\nkey = \"{k}\"\nclient_ca = \"{ca}\"\n"
        )
    };
    let none = "/nonexistent/x.pem";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "mode_0666",
            "socket_mode = \"0666\"".into(),
            "control.socket_mode: \"0666\" gives other users access",
        ),
        (
            "mode_0604",
            "socket_mode = \"0604\"".into(),
            "control.socket_mode: \"0604\" gives other users access",
        ),
        (
            "no_group",
            "socket_group = \"vsw-no-such-group\"".into(),
            "control.socket_group: group \"vsw-no-such-group\": no such group",
        ),
        (
            "no_cert",
            tls(none, &key, &cert),
            "control.tcp.cert: \"/nonexistent/x.pem\": No such file",
        ),
        ("junk_cert", tls(&junk, &key, &cert), "control.tcp.cert: "),
        (
            "no_key",
            tls(&cert, none, &cert),
            "control.tcp.key: \"/nonexistent/x.pem\": No such file",
        ),
        ("junk_key", tls(&cert, &junk, &cert), "no PEM private key"),
        (
            "no_ca",
            tls(&cert, &key, none),
            "control.tcp.client_ca: \"/nonexistent/x.pem\": No such file",
        ),
        (
            "pcap_dir_holds_state",
            format!("pcap_dirs = [\"{d}\"]"),
            "control.pcap_dirs: ",
        ),
    ];
    for (name, extra, want) in &cases {
        for check in [true, false] {
            let (code, stderr) =
                vswitchd(&dir, &format!("{name}.toml"), &config(&dir, extra), check);
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(code, 2, "{name} (check={check}): exit {code}: {stderr}");
            assert_eq!(
                lines.len(),
                1,
                "{name} (check={check}): one line, got:\n{stderr}"
            );
            assert!(
                lines[0].contains(want),
                "{name} (check={check}):\n  got  {}\n  want {want}",
                lines[0]
            );
            // Refused before EAL: nothing of DPDK's in the output.
            assert!(!stderr.contains("EAL"), "{name}: {stderr}");
        }
    }

    // An allowed directory others can write to.
    std::fs::create_dir(dir.join("pcap")).unwrap();
    std::fs::set_permissions(dir.join("pcap"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, stderr) = vswitchd(&dir, "open_dir.toml", &config(&dir, ""), true);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("control.pcap_dirs:") && stderr.contains("writable by group or others"),
        "{stderr}"
    );
    std::fs::set_permissions(dir.join("pcap"), std::fs::Permissions::from_mode(0o755)).unwrap();

    // 0660 with an existing group and readable PEM files passes, and --check
    // creates nothing.
    let good = format!(
        "socket_mode = \"0660\"\nsocket_group = \"root\"\n{}",
        tls(&cert, &key, &cert)
    );
    let (code, stderr) = vswitchd(&dir, "good.toml", &config(&dir, &good), true);
    assert_eq!(code, 0, "{stderr}");
    assert!(!dir.join("vhost").exists(), "--check changes nothing");
}

/// A real start makes the allowed directories that are missing, before EAL.
#[test]
fn a_start_creates_the_allowed_dirs() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sw = Vswitchd::start(&dir, &config(&dir, "socket_group = \"root\""));
    let mode = |s: &str| {
        std::fs::metadata(dir.join(s))
            .unwrap_or_else(|e| panic!("{s}: {e}\n{}", sw.log_text()))
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("pcap"), 0o750);
    assert_eq!(mode("vhost"), 0o755);
    sw.stop();
}

/// Ports the state file holds (API writes) are held to the directories the
/// configuration allows at the next start: narrowing `pcap_dirs` stops `--check`
/// and the start with a line naming the state file, the port and the parameter.
#[test]
fn state_file_ports_are_confined_at_start() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = config(&dir, "");
    let sw = Vswitchd::start(&dir, &text);
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    let tx = format!("tx_pcap={}/pcap/out.pcap", dir.0.display());
    let out = vswitchctl(
        &sock,
        &[
            "port",
            "add",
            "cap",
            "--profile",
            "pcap",
            "--param",
            "rx_iface=lo",
            "--param",
            &tx,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sw.stop();
    // The same file restarts; with pcap_dirs elsewhere, the state file's port is refused.
    let (code, stderr) = vswitchd(&dir, "same.toml", &text, true);
    assert_eq!(code, 0, "{stderr}");
    std::fs::create_dir(dir.join("other")).unwrap();
    let narrowed = config(
        &dir,
        &format!("pcap_dirs = [\"{}/other\"]", dir.0.display()),
    );
    for check in [true, false] {
        let (code, stderr) = vswitchd(&dir, "narrowed.toml", &narrowed, check);
        assert_eq!(code, 2, "check={check}: {stderr}");
        assert!(
            stderr.contains("state file")
                && stderr.contains("port \"cap\": tx_pcap: ")
                && stderr.contains("is outside the allowed directories"),
            "check={check}: {stderr}"
        );
        assert!(!stderr.contains("EAL"), "{stderr}");
    }
}
