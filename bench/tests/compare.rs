//! Smoke test of `vswitch-bench compare` (root only: DPDK and OVS-DPDK need
//! it): a short l2 comparison whose JSON line parses and carries the keys of
//! issue #4. No thresholds: performance is measured by `make bench`, not by
//! tests. OVS-DPDK may be skipped (not installed) or fail; its figure is then
//! null with a reason.

mod common;
use common::{is_root, on_path, workspace_bin};
use std::path::PathBuf;
use std::process::Command;

/// `vswitch-bench compare ARGS --json --vswitchd <built>`, asserting it
/// succeeds; its stdout and stderr. `None` (after saying why) where it cannot
/// run: not root, no testpmd, vswitchd not built.
fn run_compare(test: &str, args: &[&str]) -> Option<(String, String)> {
    if !is_root() {
        println!("skipping {test}: DPDK and OVS-DPDK need root");
        return None;
    }
    if !on_path("dpdk-testpmd") {
        println!("skipping {test}: dpdk-testpmd not found on PATH");
        return None;
    }
    let Some(vswitchd) = workspace_bin("vswitchd") else {
        println!("skipping {test}: vswitchd not built (cargo build -p vswitchd)");
        return None;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_vswitch-bench"))
        .arg("compare")
        .args(args)
        .args(["--json", "--vswitchd"])
        .arg(&vswitchd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    Some((stdout, stderr))
}

#[test]
fn compare_l2_smoke() {
    let Some((stdout, _)) = run_compare(
        "compare_l2_smoke",
        &["l2", "--seconds", "2", "--warmup", "1"],
    ) else {
        return;
    };
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
    assert!(
        doc["memory"] == "hugepages" || doc["memory"] == "no-huge",
        "{doc}"
    );
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

/// `--rounds 2` runs each forwarder twice and reports the median of the two
/// (their mean) beside each round's figure; OVS left out for time.
#[test]
fn compare_rounds_smoke() {
    let Some((stdout, stderr)) = run_compare(
        "compare_rounds_smoke",
        &[
            "l2",
            "--rounds",
            "2",
            "--no-ovs",
            "--seconds",
            "1",
            "--warmup",
            "0",
        ],
    ) else {
        return;
    };
    assert!(stderr.contains("(round 2/2)"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(doc["rounds"], 2, "{doc}");
    for forwarder in ["vswitch", "testpmd"] {
        let each: Vec<f64> = doc["per_round_mpps"][forwarder]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(each.len(), 2, "{doc}");
        assert!(each.iter().all(|&m| m > 0.0), "{doc}");
        let median = doc["mpps"][forwarder].as_f64().unwrap();
        assert!(
            (median - (each[0] + each[1]) / 2.0).abs() < 0.002,
            "{forwarder}: {doc}"
        );
    }
    assert_eq!(
        doc["per_round_mpps"]["ovs"],
        serde_json::json!([null, null]),
        "{doc}"
    );
    assert_eq!(doc["ovs_skipped"], "--no-ovs", "{doc}");
}

/// `run --memory` is honoured and reported; an unknown kind is refused before
/// anything starts. Hugepages are tried only where the machine has them free.
#[test]
fn run_reports_the_memory_it_ran_with() {
    let bench = env!("CARGO_BIN_EXE_vswitch-bench");
    let bad = Command::new(bench)
        .args([
            "run", "l2", "--flows", "1", "--size", "64", "--memory", "big",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("auto, hugepages or no-huge"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    if !is_root() {
        println!("skipping the runs: DPDK needs root");
        return;
    }
    let Some(vswitchd) = workspace_bin("vswitchd") else {
        println!("skipping the runs: vswitchd not built (cargo build -p vswitchd)");
        return;
    };
    // Hugepages as well: the machine's, or some reserved for this test and given
    // back afterwards (a fresh CI machine has none).
    let mut kinds = vec!["no-huge"];
    let _extra = match ExtraHugepages::ensure(HUGE_MB_NEEDED) {
        Ok(extra) => {
            kinds.push("hugepages");
            extra
        }
        Err(why) => {
            println!("not trying hugepages: {why}");
            None
        }
    };
    for kind in kinds {
        let out = Command::new(bench)
            .args([
                "run",
                "l2",
                "--flows",
                "1",
                "--size",
                "64",
                "--seconds",
                "1",
            ])
            .args(["--warmup", "0", "--json", "--memory", kind, "--vswitchd"])
            .arg(&vswitchd)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(doc["memory"], kind, "{doc}");
        assert!(doc["mpps"].as_f64().is_some_and(|m| m > 0.0), "{doc}");
    }
}

/// MiB of hugepages a one-flow l2 `run` needs (vswitch-bench's own estimate for
/// its mempool, 562 MiB, rounded up).
const HUGE_MB_NEEDED: u64 = 600;

fn hugepage_status() -> bench::memory::HugepageStatus {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    bench::memory::HugepageStatus::parse(&meminfo, &mounts)
}

/// Hugepages (and a hugetlbfs mount) this test added, removed again on drop.
struct ExtraHugepages {
    /// `nr_hugepages` before the test raised it.
    before: u64,
    /// The mount point the test made, if there was none.
    mount: Option<PathBuf>,
}

impl ExtraHugepages {
    const NR: &'static str = "/proc/sys/vm/nr_hugepages";

    /// Makes sure `mb` MiB of hugepages are free and mounted: `Ok(None)` if they
    /// already were, `Ok(Some(guard))` if this reserved them, `Err` if the kernel
    /// would not.
    fn ensure(mb: u64) -> Result<Option<Self>, String> {
        let status = hugepage_status();
        if status.fits(mb).is_ok() {
            return Ok(None);
        }
        if status.page_kb != 2048 {
            return Err(format!("default hugepage size is {} KiB", status.page_kb));
        }
        let mut guard = ExtraHugepages {
            before: status.total_pages,
            mount: None,
        };
        let want = status.total_pages + (mb.saturating_sub(status.free_mb())).div_ceil(2);
        std::fs::write(Self::NR, want.to_string()).map_err(|e| format!("{}: {e}", Self::NR))?;
        if !status.mounted {
            let dir = std::env::temp_dir().join(format!("vswbench-huge-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            guard.mount = Some(dir.clone());
            let ok = Command::new("mount")
                .args(["-t", "hugetlbfs", "nodev"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("cannot mount hugetlbfs on {}", dir.display()));
            }
        }
        hugepage_status().fits(mb)?;
        Ok(Some(guard))
    }
}

impl Drop for ExtraHugepages {
    fn drop(&mut self) {
        if let Some(dir) = &self.mount {
            let _ = Command::new("umount").arg(dir).status();
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::fs::write(Self::NR, self.before.to_string());
    }
}

/// `ab` with one build as both sides: two rounds, the order flipped in the
/// second, every rate paired and reported; with two rounds no verdict can be
/// significant, and the report says so. A missing build is refused before
/// anything runs.
#[test]
fn ab_smoke() {
    let bench = env!("CARGO_BIN_EXE_vswitch-bench");
    let missing = Command::new(bench)
        .args(["ab", "l2", "--flows", "1", "--size", "64"])
        .args(["--baseline", "/nonexistent/vswitchd", "--candidate", bench])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/vswitchd"), "{stderr}");
    if !is_root() {
        println!("skipping ab_smoke's runs: DPDK needs root");
        return;
    }
    let Some(vswitchd) = workspace_bin("vswitchd") else {
        println!("skipping ab_smoke's runs: vswitchd not built (cargo build -p vswitchd)");
        return;
    };
    let vswitchd = vswitchd.to_str().unwrap();
    let run = |json: bool| {
        let out = Command::new(bench)
            .args(["ab", "l2", "--flows", "1", "--size", "64", "--rounds", "2"])
            .args(["--seconds", "1", "--warmup", "0", "--memory", "no-huge"])
            .args(["--baseline", vswitchd, "--candidate", vswitchd])
            .args(json.then_some("--json"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
        (stdout, stderr)
    };
    let (stdout, stderr) = run(true);
    // Round 1 runs the baseline first, round 2 the candidate.
    let order: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("ab: round "))
        .map(|l| if l.contains("baseline") { "b" } else { "c" })
        .collect();
    assert_eq!(order, ["b", "c", "c", "b"], "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(doc["rounds"], 2, "{doc}");
    assert_eq!(doc["memory"], "no-huge", "{doc}");
    for side in ["baseline", "candidate"] {
        let each = doc["per_round_mpps"][side].as_array().unwrap();
        assert_eq!(each.len(), 2, "{doc}");
        assert!(each.iter().all(|m| m.as_f64().unwrap() > 0.0), "{doc}");
        assert!(doc["cycles_per_packet"][side].is_f64(), "{doc}");
    }
    assert_eq!(doc["verdict"], "no clear change", "{doc}");
    assert!(doc["p_value"].as_f64().unwrap() >= 0.5, "{doc}");
    let (text, _) = run(false);
    assert!(text.contains("verdict: no clear change"), "{text}");
    assert!(text.contains("needs at least 6 rounds"), "{text}");
}
