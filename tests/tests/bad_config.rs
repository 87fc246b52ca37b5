//! Every kind of bad configuration makes `vswitchd` exit non-zero with one clear line
//! that names the problem, before it touches DPDK or the network.

use std::process::Command;

use system_tests::*;

fn run_vswitchd(dir: &TempDir, name: &str, config: &str) -> (i32, String) {
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    let out = Command::new(workspace_bin("vswitchd"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_bad_config_has_its_own_clear_error() {
    let dir = TempDir::new(&unique_tag());
    let too_big_core = std::thread::available_parallelism().unwrap().get() + 5;
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown_key", "[dataplane]\nworkerz = [1]\n".into(), "unknown field `workerz`"),
        (
            "bad_mac",
            "[dataplane]\nworkers=[0]\n[[port]]\nname=\"a\"\nprofile=\"null\"\n[[l2]]\nmac=\"02:00:00:00:00:0g\"\nport=\"a\"\n".into(),
            "invalid MAC address \"02:00:00:00:00:0g\"",
        ),
        (
            "missing_iface",
            "[dataplane]\nworkers=[0]\n[[port]]\nname=\"a\"\nprofile=\"af_packet\"\niface=\"nosuchif0\"\n".into(),
            "nosuchif0",
        ),
        (
            "core_out_of_range",
            format!("[dataplane]\nworkers = [{too_big_core}]\n"),
            "is out of range",
        ),
        (
            "unknown_profile",
            "[dataplane]\nworkers=[0]\n[[port]]\nname=\"a\"\nprofile=\"netmap\"\n".into(),
            "unknown variant `netmap`",
        ),
        (
            "missing_pcap",
            "[dataplane]\nworkers=[0]\n[[port]]\nname=\"a\"\nprofile=\"pcap\"\nrx_pcap=\"/nonexistent/x.pcap\"\n".into(),
            "/nonexistent/x.pcap",
        ),
        ("not_toml", "[[port\n".into(), "invalid"),
        (
            "metrics_not_loopback",
            "[dataplane]\nworkers=[0]\n[metrics]\nlisten=\"0.0.0.0:9478\"\n".into(),
            "metrics.listen: 0.0.0.0:9478 is not a loopback address: set metrics.allow_non_loopback = true",
        ),
        (
            "log_format",
            "[dataplane]\nworkers=[0]\n[log]\nformat=\"xml\"\n".into(),
            "unknown variant `xml`",
        ),
    ];
    for (name, config, want) in &cases {
        let (code, stderr) = run_vswitchd(&dir, name, config);
        assert_ne!(code, 0, "{name}: vswitchd accepted it");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: want one line, got:\n{stderr}");
        assert!(
            lines[0].contains(want),
            "{name}: {:?} does not contain {want:?}",
            lines[0]
        );
    }
    let out = Command::new(workspace_bin("vswitchd"))
        .args(["--config", "/nonexistent/vswitchd.toml"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/vswitchd.toml"));
}

/// `VSWITCH_HASH_SEED` (the benchmarks' fixed hash layout) must be a number: any
/// other value is refused with one line naming it, not silently ignored.
#[test]
fn a_hash_seed_that_is_not_a_number_is_refused() {
    let dir = TempDir::new(&unique_tag());
    let path = dir.join("ok.toml");
    std::fs::write(&path, "[dataplane]\nworkers = [0]\n").unwrap();
    for bad in ["abc", "-1", "1.5", ""] {
        let out = Command::new(workspace_bin("vswitchd"))
            .arg("--config")
            .arg(&path)
            .env("VSWITCH_HASH_SEED", bad)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: vswitchd accepted it");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{bad:?}: want one line, got:\n{stderr}");
        assert!(
            lines[0].contains("VSWITCH_HASH_SEED"),
            "{bad:?}: {}",
            lines[0]
        );
    }
}

/// A metrics address already in use fails the start naming `metrics.listen`,
/// before EAL starts (the address is bound first).
#[test]
fn a_metrics_address_in_use_fails_the_start_before_eal() {
    let dir = TempDir::new(&unique_tag());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let path = dir.join("metrics.toml");
    std::fs::write(
        &path,
        format!(
            "[eal]\nin_memory = true\n[dataplane]\nworkers = [0]\n[metrics]\nlisten = \"{addr}\"\n\
             [[port]]\nname = \"a\"\nprofile = \"null\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(workspace_bin("vswitchd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("vswitchd: metrics.listen {addr}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("EAL ready"), "{stderr}");
}
