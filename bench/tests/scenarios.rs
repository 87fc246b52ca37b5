//! End-to-end tests of `vswitch-bench gen <scenario> --out-dir`, `run` and
//! `testpmd`: every scenario's files are read back with our reader, tshark
//! (when installed) and vswitchd's own `--check` (when built); the runners are
//! smoke-tested as root.

mod common;
use common::{is_root, on_path, workspace_bin, SCENARIOS};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bench::pcap::read_ethernet_frames;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vswitch-bench"))
}

fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("scenarios")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn gen(scenario: &str, flows: &str, size: &str, extra: &[&str], dir: &Path) {
    let output = bin()
        .args(["gen", scenario, "--flows", flows, "--size", size])
        .args(extra)
        .arg("--out-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "gen {scenario} {flows} {size}: {}",
        stderr(&output)
    );
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn l2_mac(flow: u32) -> String {
    let [_, a, b, c] = flow.to_be_bytes();
    format!("02:00:00:{a:02x}:{b:02x}:{c:02x}")
}

fn captured_sizes(size: &str) -> Vec<usize> {
    match size {
        "imix" => vec![60, 572, 1514],
        n => vec![n.parse::<usize>().unwrap() - 4],
    }
}

/// The flow key a scenario varies per flow, from a frame of its pcap.
fn flow_key(scenario: &str, frame: &[u8]) -> String {
    match scenario {
        // Destination IP and source port.
        "l3" => format!("{:?}{:?}", &frame[30..34], &frame[34..36]),
        // Inner destination MAC, after 50 bytes of outer headers.
        s if s.ends_with("-decap") => mac(&frame[50..56]),
        _ => mac(&frame[0..6]),
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn count_lines(path: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

#[test]
fn every_scenario_writes_consistent_files() {
    let root = scratch("every_scenario_writes_consistent_files");
    for scenario in SCENARIOS {
        for (flows, size) in [(1u32, "64"), (1000, "512"), (1000, "1518"), (1000, "imix")] {
            let dir = root.join(format!("{scenario}-{flows}-{size}"));
            gen(scenario, &flows.to_string(), size, &[], &dir);
            let frames =
                read_ethernet_frames(std::fs::File::open(dir.join("traffic.pcap")).unwrap())
                    .unwrap();
            let expected_packets = (u64::from(flows).max(4096)).div_ceil(12) * 12;
            assert_eq!(frames.len() as u64, expected_packets, "{scenario}");

            let extra = if scenario.ends_with("-decap") { 50 } else { 0 };
            let sizes: Vec<usize> = captured_sizes(size).iter().map(|s| s + extra).collect();
            for frame in &frames {
                assert!(
                    sizes.contains(&frame.len()),
                    "{scenario} {size}: {}",
                    frame.len()
                );
            }
            if size == "imix" {
                let count = |len| frames.iter().filter(|f| f.len() == len).count();
                assert_eq!(count(sizes[0]) * 4, count(sizes[1]) * 7, "{scenario}: 7:4");
                assert_eq!(count(sizes[0]), count(sizes[2]) * 7, "{scenario}: 7:1");
            }
            let keys: HashSet<String> = frames.iter().map(|f| flow_key(scenario, f)).collect();
            assert_eq!(keys.len() as u32, flows, "{scenario} {flows} flows");

            let doc = read_json(&dir.join("scenario.json"));
            assert_eq!(doc["name"], scenario);
            assert_eq!(doc["frame_size"], size);
            assert_eq!(doc["flows"], flows);
            assert_eq!(doc["packets"], expected_packets);
            assert!(doc["description"].as_str().unwrap().len() > 20);
            let tunnel = scenario.contains("vxlan") || scenario.contains("geneve");
            assert_eq!(doc["ovs"]["tunnel"].is_object(), tunnel, "{scenario}");

            let config = dir.join("vswitchd.toml");
            let flows_file = dir.join("ovs-flows.txt");
            let text = std::fs::read_to_string(&config).unwrap();
            assert!(text.contains("in_memory = true"));
            assert!(text.contains("idle_sleep_max_us = 0"));
            assert!(text.contains("workers = [1]"));
            let per_flow = match scenario {
                "l2" => count_lines(&config, "[[l2]]"),
                "l3" => count_lines(&config, "[[route]]"),
                s if s.ends_with("-decap") => count_lines(&config, "[[endpoint]]"),
                _ => count_lines(&config, "[[remote_endpoint]]"),
            };
            assert_eq!(per_flow as u32, flows, "{scenario}: config entries");
            // One rule per flow, one for the tunnel's outer packets, one drop.
            let rules = count_lines(&flows_file, "table=0,priority=");
            assert_eq!(
                rules as u32,
                flows + u32::from(tunnel) + 1,
                "{scenario}: OVS rules"
            );
            assert_eq!(count_lines(&flows_file, "table=0,priority=0,"), 1);
        }
    }
}

#[test]
fn decap_pcaps_carry_the_tunnel_headers() {
    let root = scratch("decap_pcaps_carry_the_tunnel_headers");
    for (scenario, port) in [("vxlan-decap", 4789u16), ("geneve-decap", 6081)] {
        let dir = root.join(scenario);
        gen(scenario, "100", "64", &[], &dir);
        let frames =
            read_ethernet_frames(std::fs::File::open(dir.join("traffic.pcap")).unwrap()).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let flow = (i % 100) as u32;
            assert_eq!(mac(&f[0..6]), "02:fe:00:00:00:01");
            assert_eq!(&f[26..34], &[192, 0, 2, 2, 192, 0, 2, 1]);
            assert_eq!(u16::from_be_bytes([f[36], f[37]]), port);
            assert_eq!(&f[46..49], &[0, 0, 100], "VNI 100");
            assert_eq!(mac(&f[50..56]), l2_mac(flow));
        }
    }
}

#[test]
fn l3_traffic_matches_its_routes() {
    let dir = scratch("l3_traffic_matches_its_routes");
    gen("l3", "1000", "64", &["--prefixes", "300"], &dir);
    let config = std::fs::read_to_string(dir.join("vswitchd.toml")).unwrap();
    assert_eq!(config.matches("[[route]]").count(), 300);
    let frames =
        read_ethernet_frames(std::fs::File::open(dir.join("traffic.pcap")).unwrap()).unwrap();
    let mut prefixes = HashSet::new();
    for f in &frames {
        assert_eq!(mac(&f[0..6]), "02:aa:00:00:00:01", "to the gateway MAC");
        let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
        let prefix = format!("{}.{}.{}.0/24", f[30], f[31], f[32]);
        assert!(config.contains(&format!("prefix = \"{prefix}\"")), "{dst}");
        prefixes.insert(prefix);
    }
    assert_eq!(prefixes.len(), 300);
}

#[test]
fn tshark_decodes_tunnels() {
    if !on_path("tshark") {
        println!("skipping tshark_decodes_tunnels: tshark not found on PATH");
        return;
    }
    let root = scratch("tshark_decodes_tunnels");
    for (scenario, field) in [("vxlan-decap", "vxlan.vni"), ("geneve-decap", "geneve.vni")] {
        let dir = root.join(scenario);
        gen(scenario, "50", "imix", &["--packets", "600"], &dir);
        let output = Command::new("tshark")
            .arg("-r")
            .arg(dir.join("traffic.pcap"))
            .args([
                "-o",
                "ip.check_checksum:TRUE",
                "-T",
                "fields",
                "-E",
                "occurrence=l",
                "-e",
                field,
                "-e",
                "eth.dst",
                "-e",
                "ip.checksum.status",
                "-e",
                "frame.len",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let text = String::from_utf8(output.stdout).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), 600, "{scenario}");
        for (i, row) in rows.iter().enumerate() {
            // tshark prints the VXLAN VNI in decimal, the Geneve one in hex.
            let vni = match row[0].strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).unwrap(),
                None => row[0].parse().unwrap(),
            };
            assert_eq!(vni, 100, "{scenario} frame {i}: VNI");
            // The last eth.dst is the inner frame's.
            assert_eq!(row[1], l2_mac((i % 50) as u32), "{scenario} frame {i}");
            // The last ip.checksum.status is the inner header's (good = 1).
            assert_eq!(row[2], "1", "{scenario} frame {i}");
            assert!(
                [110, 622, 1564].contains(&row[3].parse::<u32>().unwrap()),
                "{scenario} frame {i}: {}",
                row[3]
            );
        }
    }
}

#[test]
fn vswitchd_accepts_every_config() {
    let Some(vswitchd) = workspace_bin("vswitchd") else {
        println!(
            "skipping vswitchd_accepts_every_config: vswitchd not built (cargo build -p vswitchd)"
        );
        return;
    };
    if !is_root() {
        println!("skipping vswitchd_accepts_every_config: --check of DPDK ports needs root");
        return;
    }
    let root = scratch("vswitchd_accepts_every_config");
    for scenario in SCENARIOS {
        for (flows, size) in [("1", "64"), ("1k", "imix")] {
            let dir = root.join(format!("{scenario}-{flows}-{size}"));
            gen(scenario, flows, size, &[], &dir);
            let output = Command::new(&vswitchd)
                .arg("--config")
                .arg(dir.join("vswitchd.toml"))
                .arg("--check")
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{scenario} {flows} {size}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                stderr(&output)
            );
        }
    }
}

fn smoke(command: &str) -> Option<serde_json::Value> {
    if !is_root() {
        println!("skipping {command} smoke test: DPDK needs root");
        return None;
    }
    let output = bin()
        .args([
            command,
            "l2",
            "--flows",
            "1",
            "--size",
            "64",
            "--seconds",
            "2",
            "--warmup",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{command}: {}", stderr(&output));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["scenario"], "l2");
    assert_eq!(doc["frame_size"], "64");
    assert_eq!(doc["flows"], 1);
    assert!(doc["mpps"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(doc["gbps"].as_f64().unwrap() > 0.0, "{doc}");
    assert_eq!(doc["samples"].as_array().unwrap().len(), 2, "{doc}");
    assert!(
        doc["ports"]["sink"]["tx_packets"].as_u64().unwrap() > 0,
        "{doc}"
    );
    assert!(doc["drops"].is_object());
    Some(doc)
}

#[test]
fn run_smoke() {
    if workspace_bin("vswitchd").is_none() {
        println!("skipping run_smoke: vswitchd not built (cargo build -p vswitchd)");
        return;
    }
    if let Some(doc) = smoke("run") {
        assert_eq!(doc["switch"], "vswitchd");
        assert!(
            doc["ports"]["replay"]["rx_packets"].as_u64().unwrap() > 0,
            "{doc}"
        );
    }
}

#[test]
fn testpmd_smoke() {
    if !on_path("dpdk-testpmd") {
        println!("skipping testpmd_smoke: dpdk-testpmd not found on PATH");
        return;
    }
    if let Some(doc) = smoke("testpmd") {
        assert_eq!(doc["switch"], "testpmd-io");
    }
}
