//! Smoke test of `vswitch-bench compare` (root only: DPDK and OVS-DPDK need
//! it): a short l2 comparison whose JSON line parses and carries the keys of
//! issue #4. No thresholds: performance is measured by `make bench`, not by
//! tests. OVS-DPDK may be skipped (not installed) or fail; its figure is then
//! null with a reason.

use std::path::{Path, PathBuf};
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// vswitchd next to vswitch-bench (target/<profile>/vswitchd), if built.
fn vswitchd() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_vswitch-bench"))
        .parent()?
        .join("vswitchd");
    path.exists().then_some(path)
}

#[test]
fn compare_l2_smoke() {
    if !is_root() {
        println!("skipping compare_l2_smoke: DPDK and OVS-DPDK need root");
        return;
    }
    if !on_path("dpdk-testpmd") {
        println!("skipping compare_l2_smoke: dpdk-testpmd not found on PATH");
        return;
    }
    let Some(vswitchd) = vswitchd() else {
        println!("skipping compare_l2_smoke: vswitchd not built (cargo build -p vswitchd)");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_vswitch-bench"))
        .args(["compare", "l2", "--seconds", "2", "--warmup", "1", "--json"])
        .arg("--vswitchd")
        .arg(&vswitchd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one object per scenario: {stdout}");
    let doc: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(doc["scenario"], "l2");
    assert_eq!(doc["frame_size"], 64);
    for key in ["mpps", "cycles_per_packet"] {
        for forwarder in ["vswitch", "ovs", "testpmd"] {
            assert!(
                doc[key].get(forwarder).is_some(),
                "{key}.{forwarder}: {doc}"
            );
        }
    }
    assert!(
        doc["mpps"]["vswitch"].as_f64().is_some_and(|m| m > 0.0),
        "{doc}"
    );
    assert!(
        doc["mpps"]["testpmd"].as_f64().is_some_and(|m| m > 0.0),
        "{doc}"
    );
    assert!(doc["ratio_vs_floor"].is_f64(), "{doc}");
    assert!(doc.get("ratio_vs_ovs").is_some(), "{doc}");
    if doc["mpps"]["ovs"].is_null() {
        assert!(doc["ovs_skipped"].is_string(), "{doc}");
        assert!(doc["ratio_vs_ovs"].is_null(), "{doc}");
        println!("OVS skipped: {}", doc["ovs_skipped"]);
    } else {
        assert!(doc.get("ovs_skipped").is_none(), "{doc}");
        assert!(doc["ratio_vs_ovs"].is_f64(), "{doc}");
    }
}
