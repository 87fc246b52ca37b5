//! Smoke tests of `vswitch-bench instructions` (root only: DPDK needs it): short
//! counts of vswitchd and testpmd io, and of OVS-DPDK where it is installed, under
//! callgrind on l2, whose JSON parses, and whose figures come from the forwarding
//! threads (their busiest functions are the pcap PMD's receive). No thresholds:
//! the figures are `make bench`'s business.

mod common;
use common::{is_root, on_path, workspace_bin};
use std::process::Command;

#[test]
fn instructions_l2_smoke() {
    if !is_root() {
        println!("skipping instructions_l2_smoke: DPDK needs root");
        return;
    }
    for program in ["dpdk-testpmd", "valgrind", "callgrind_annotate"] {
        if !on_path(program) {
            println!("skipping instructions_l2_smoke: {program} not found (make deps installs it)");
            return;
        }
    }
    let Some(vswitchd) = workspace_bin("vswitchd") else {
        println!("skipping instructions_l2_smoke: vswitchd not built (cargo build -p vswitchd)");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_vswitch-bench"))
        .args([
            "instructions",
            "l2",
            "--flows",
            "1k",
            "--seconds",
            "2",
            "--top",
            "4",
            "--no-ovs",
        ])
        .args(["--json", "--vswitchd"])
        .arg(&vswitchd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(doc["scenario"], "l2");
    assert_eq!(doc["flows"], 1000);
    assert_eq!(doc["tool"], "callgrind");
    for who in ["vswitch", "testpmd"] {
        let packets = doc["packets"][who].as_u64().unwrap();
        assert!(packets > 0, "{who}: {doc}");
        let ir = doc["per_packet"][who]["Ir"].as_f64().unwrap();
        assert!(ir.is_finite() && ir > 0.0, "{who}: {doc}");
        let functions = doc["functions"][who].as_array().unwrap();
        assert!(
            !functions.is_empty() && functions.len() <= 4,
            "{who}: {doc}"
        );
        let listed: f64 = functions.iter().map(|f| f["Ir"].as_f64().unwrap()).sum();
        assert!(
            listed <= ir + 0.01,
            "{who}: functions add up to more than the thread: {doc}"
        );
    }
    // The counted thread of vswitchd is its worker: the pcap PMD's receive (linked
    // in, with its symbol) is among its busiest functions.
    let names: Vec<&str> = doc["functions"]["vswitch"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert!(names.contains(&"eth_pcap_rx_infinite"), "{names:?}");
    let ratio = doc["ratio_vs_floor"].as_f64().unwrap();
    assert!(ratio > 0.0, "{doc}");
    assert_eq!(doc["ovs_skipped"], "--no-ovs");
    assert!(doc["per_packet"]["ovs"].is_null() && doc["ratio_vs_ovs"].is_null());
}

/// OVS-DPDK counted beside vswitchd (where it is installed: `make bench-deps`):
/// its PMD thread's figures, whose busiest functions include the pcap PMD's
/// receive, and the ratio of its instructions to vswitchd's.
#[test]
fn instructions_ovs_smoke() {
    if !is_root() {
        println!("skipping instructions_ovs_smoke: DPDK needs root");
        return;
    }
    if !std::path::Path::new("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk").exists() {
        println!("skipping instructions_ovs_smoke: OVS-DPDK not installed (make bench-deps)");
        return;
    }
    for program in ["valgrind", "callgrind_annotate", "python3"] {
        if !on_path(program) {
            println!("skipping instructions_ovs_smoke: {program} not found");
            return;
        }
    }
    let Some(vswitchd) = workspace_bin("vswitchd") else {
        println!("skipping instructions_ovs_smoke: vswitchd not built (cargo build -p vswitchd)");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_vswitch-bench"))
        .args(["instructions", "l2", "--seconds", "2", "--top", "6"])
        .args(["--no-testpmd", "--json", "--vswitchd"])
        .arg(&vswitchd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(doc["ovs_skipped"].is_null(), "{doc}");
    assert!(doc["packets"]["ovs"].as_u64().unwrap() > 0, "{doc}");
    let ir = doc["per_packet"]["ovs"]["Ir"].as_f64().unwrap();
    assert!(ir.is_finite() && ir > 0.0, "{doc}");
    assert!(doc["ratio_vs_ovs"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(doc["per_packet"]["testpmd"].is_null(), "{doc}");
    // The counted thread is OVS's PMD: the pcap PMD's receive is among its
    // busiest functions.
    let functions = doc["functions"]["ovs"].as_array().unwrap();
    assert!(
        functions
            .iter()
            .filter_map(|f| f["function"].as_str())
            .any(|f| f.contains("librte_net_pcap")),
        "{doc}"
    );
}
