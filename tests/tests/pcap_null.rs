//! A generated capture is replayed by `net_pcap` into a `net_null` sink through one
//! worker. The switch's counters and DPDK's own port counters must add up exactly:
//! received = transmitted + dropped, and a finite capture arrives whole.

use std::process::Command;
use std::time::Duration;

use system_tests::*;

fn gen_pcap(dir: &TempDir, packets: u32) -> std::path::PathBuf {
    let out = dir.join("l2.pcap");
    let status = Command::new(workspace_bin("vswitch-bench"))
        .args(["gen", "l2", "--flows", "64", "--size", "64", "--packets"])
        .arg(packets.to_string())
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

fn config(dir: &TempDir, pcap: &std::path::Path, infinite: bool) -> String {
    format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = [{core}]
stats_file = "{stats}"
stats_interval_ms = 100
[[port]]
name = "replay"
profile = "pcap"
rx_pcap = "{pcap}"
infinite_rx = {infinite}
[[port]]
name = "sink"
profile = "null"
[[patch]]
from = "replay"
to = "sink"
"#,
        core = if std::thread::available_parallelism().unwrap().get() > 1 {
            1
        } else {
            0
        },
        stats = dir.join("stats.json").display(),
        pcap = pcap.display(),
    )
}

fn drops_total(stats: &serde_json::Value) -> u64 {
    stats["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[test]
fn infinite_replay_counters_add_up() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    let pcap = gen_pcap(&dir, 1000);
    let v = Vswitchd::start(&dir, &config(&dir, &pcap, true));
    std::thread::sleep(Duration::from_secs(2));
    let stats = v.stop();
    let replay = port_stats(&stats, "replay");
    let sink = port_stats(&stats, "sink");
    let rx = counter(replay, "rx_packets");
    let tx = counter(sink, "tx_packets");
    assert!(rx > 100_000, "only {rx} packets in 2 s");
    assert_eq!(rx, tx + drops_total(&stats), "rx = tx + drops: {stats}");
    // DPDK's own port counters tell the same story.
    assert_eq!(counter(&replay["dpdk"], "ipackets"), rx);
    assert_eq!(counter(&sink["dpdk"], "opackets"), tx);
    assert_eq!(
        counter(replay, "rx_bytes"),
        rx * 60,
        "64 B frames are 60 B without FCS"
    );
}

#[test]
fn finite_replay_arrives_whole() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    let pcap = gen_pcap(&dir, 777);
    let v = Vswitchd::start(&dir, &config(&dir, &pcap, false));
    std::thread::sleep(Duration::from_millis(1500));
    let stats = v.stop();
    assert_eq!(counter(port_stats(&stats, "replay"), "rx_packets"), 777);
    assert_eq!(counter(port_stats(&stats, "sink"), "tx_packets"), 777);
    assert_eq!(drops_total(&stats), 0);
}

/// With a file prefix (not `in_memory`), EAL's telemetry socket lives under it and
/// DPDK's own client reads the ports' counters from a running switch. (DPDK
/// secondary processes cannot attach: the workers are registered non-EAL threads.)
#[test]
fn telemetry_answers_under_the_file_prefix() {
    require_root!();
    let client = "/usr/bin/dpdk-telemetry.py";
    if !std::path::Path::new(client).exists() {
        eprintln!("SKIP: {client} missing (Debian package dpdk-dev)");
        return;
    }
    let dir = TempDir::new(&unique_tag());
    let pcap = gen_pcap(&dir, 1000);
    let prefix = format!("vswitch-test-{}", unique_tag());
    let cfg = config(&dir, &pcap, true).replace(
        "in_memory = true",
        &format!("in_memory = false\nfile_prefix = \"{prefix}\""),
    );
    let v = Vswitchd::start(&dir, &cfg);
    std::thread::sleep(Duration::from_secs(1));
    let out = Command::new("python3")
        .args([client, "-f", &prefix])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b"/ethdev/stats,0\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let stats = v.stop();
    // EAL leaves its runtime directory behind.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("\"/ethdev/stats\""))
        .unwrap_or_else(|| panic!("no /ethdev/stats answer: {text}"));
    let json: serde_json::Value = serde_json::from_str(&line[line.find('{').unwrap()..]).unwrap();
    let ipackets = json["/ethdev/stats"]["ipackets"].as_u64().unwrap();
    assert!(ipackets > 0, "telemetry saw no packets: {line}");
    // The switch counted at least as many by the time it stopped.
    assert!(counter(port_stats(&stats, "replay"), "rx_packets") >= ipackets);
}
