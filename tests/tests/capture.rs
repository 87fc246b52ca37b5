//! `vswitchctl capture` writes a pcap of a port's frames that tshark reads with the
//! expected packet count, while forwarding goes on untouched.

use std::process::Command;

use system_tests::*;

#[test]
fn capture_writes_a_pcap_tshark_reads() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    let pcap = dir.join("in.pcap");
    let gen = Command::new(workspace_bin("vswitch-bench"))
        .args([
            "gen",
            "l2",
            "--flows",
            "4",
            "--size",
            "64",
            "--packets",
            "100",
            "-o",
        ])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(gen.status.success());
    let body = format!(
        r#"{dirs}
[[port]]
name = "replay"
profile = "pcap"
rx_pcap = "{pcap}"
infinite_rx = true
[[port]]
name = "sink"
profile = "null"
[[patch]]
from = "replay"
to = "sink"
"#,
        dirs = allowed_dirs(&dir),
        pcap = pcap.display(),
    );
    let v = Vswitchd::start(&dir, &control_config(&dir, &[worker_core()], &body));
    let sock = dir.join("ctl.sock");
    let ctl = |args: &[&str]| vswitchctl(&sock, args);
    let out_file = dir.join("cap.pcap");
    for (direction, port) in [("tx", "sink"), ("rx", "replay")] {
        let out = ctl(&[
            "capture",
            port,
            "-w",
            out_file.to_str().unwrap(),
            "-c",
            "200",
            "--direction",
            direction,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("200 packets captured"));
        let bytes = std::fs::read(&out_file).unwrap();
        assert_eq!(
            bytes.len(),
            24 + 200 * (16 + 60),
            "200 records of 60-byte frames"
        );
        if Command::new("tshark").arg("-v").output().is_ok() {
            let t = Command::new("tshark")
                .arg("-r")
                .arg(&out_file)
                .output()
                .unwrap();
            assert!(t.status.success());
            let lines = String::from_utf8_lossy(&t.stdout).lines().count();
            assert_eq!(lines, 200, "tshark reads every captured frame");
            let udp = String::from_utf8_lossy(&t.stdout).matches("UDP").count();
            assert_eq!(udp, 200);
        } else {
            eprintln!("tshark not installed: checked the pcap layout only");
        }
    }
    // An unknown port is refused with its name; a capture leaves forwarding alone.
    let out = ctl(&[
        "capture",
        "nope",
        "-w",
        out_file.to_str().unwrap(),
        "-c",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port named \"nope\""));
    let stats = v.stop();
    let rx = counter(port_stats(&stats, "replay"), "rx_packets");
    let tx = counter(port_stats(&stats, "sink"), "tx_packets");
    assert_eq!(rx, tx, "every received frame was forwarded: {stats}");
}
