//! Smoke tests of `vswitch-bench instructions` (root only: DPDK needs it): short
//! counts of vswitchd and testpmd io, and of OVS-DPDK where it is installed, under
//! callgrind on l2, whose JSON parses, and whose figures come from the forwarding
//! threads (their busiest functions are the pcap PMD's receive). No thresholds:
//! the figures are `make bench`'s business.

mod common;
use common::{is_root, on_path, workspace_bin};
use std::process::Command;

/// The vswitchd to count, or `None` (said why) when test `name` cannot run here:
/// not root, a program missing, vswitchd not built.
fn ready(name: &str, programs: &[&str]) -> Option<std::path::PathBuf> {
    if !is_root() {
        println!("skipping {name}: DPDK needs root");
        return None;
    }
    if let Some(program) = programs.iter().find(|p| !on_path(p)) {
        println!("skipping {name}: {program} not found (make deps installs it)");
        return None;
    }
    let vswitchd = workspace_bin("vswitchd");
    if vswitchd.is_none() {
        println!("skipping {name}: vswitchd not built (cargo build -p vswitchd)");
    }
    vswitchd
}

/// `vswitch-bench instructions <args> --json --vswitchd <vswitchd>`: its JSON
/// document, the run having succeeded.
fn instructions_json(args: &[&str], vswitchd: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vswitch-bench"))
        .arg("instructions")
        .args(args)
        .args(["--json", "--vswitchd"])
        .arg(vswitchd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn instructions_l2_smoke() {
    let programs = ["dpdk-testpmd", "valgrind", "callgrind_annotate"];
    let Some(vswitchd) = ready("instructions_l2_smoke", &programs) else {
        return;
    };
    let args = [
        "l2",
        "--flows",
        "1k",
        "--seconds",
        "2",
        "--top",
        "4",
        "--no-ovs",
    ];
    let doc = instructions_json(&args, &vswitchd);
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
    if !std::path::Path::new("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk").exists() {
        println!("skipping instructions_ovs_smoke: OVS-DPDK not installed (make bench-deps)");
        return;
    }
    let programs = ["valgrind", "callgrind_annotate", "python3"];
    let Some(vswitchd) = ready("instructions_ovs_smoke", &programs) else {
        return;
    };
    let args = ["l2", "--seconds", "2", "--top", "6", "--no-testpmd"];
    let doc = instructions_json(&args, &vswitchd);
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
