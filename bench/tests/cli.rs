//! End-to-end tests of the `vswitch-bench` binary: generate files, then read
//! them back with our reader and, when installed, with tshark as an
//! independent dissector.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};

use bench::pcap::read_ethernet_frames;

mod common;
use common::SCENARIOS;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vswitch-bench"))
}

/// A fresh per-test directory under cargo's integration-test scratch space.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gen(args: &[&str]) -> Output {
    bin().arg("gen").arg("l2").args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn gen_l2_writes_frames_and_mac_table() {
    let dir = scratch("gen_l2_writes_frames_and_mac_table");
    let (pcap, macs) = (dir.join("out.pcap"), dir.join("macs.txt"));
    let output = gen(&[
        "--flows",
        "1k",
        "--size",
        "512",
        "--packets",
        "2500",
        "-o",
        pcap.to_str().unwrap(),
        "--macs-out",
        macs.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    let frames = read_ethernet_frames(std::fs::File::open(&pcap).unwrap()).unwrap();
    assert_eq!(frames.len(), 2500);
    assert!(frames.iter().all(|f| f.len() == 508));
    let dst_macs: HashSet<String> = frames
        .iter()
        .map(|f| {
            f[0..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect();

    let table = std::fs::read_to_string(&macs).unwrap();
    let table: Vec<&str> = table.lines().collect();
    assert_eq!(table.len(), 1000);
    assert_eq!(table[0], "02:00:00:00:00:00");
    assert_eq!(table[999], "02:00:00:00:03:e7");
    assert_eq!(
        table.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
        dst_macs
    );
}

#[test]
fn stdout_output_matches_file_output() {
    let dir = scratch("stdout_output_matches_file_output");
    let pcap = dir.join("out.pcap");
    let to_file = gen(&[
        "--flows",
        "3",
        "--size",
        "imix",
        "--packets",
        "24",
        "-o",
        pcap.to_str().unwrap(),
    ]);
    assert!(to_file.status.success(), "{}", stderr(&to_file));
    let to_stdout = gen(&[
        "--flows",
        "3",
        "--size",
        "imix",
        "--packets",
        "24",
        "-o",
        "-",
    ]);
    assert!(to_stdout.status.success(), "{}", stderr(&to_stdout));
    assert_eq!(to_stdout.stdout, std::fs::read(&pcap).unwrap());
}

#[test]
fn bad_input_is_one_line_error_with_nonzero_exit() {
    let dir = scratch("bad_input_is_one_line_error_with_nonzero_exit");
    let out = dir.join("out.pcap");
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--flows", "0", "--size", "64", "--packets", "1", "-o", out],
            "out of range",
        ),
        (
            &[
                "--flows",
                "lots",
                "--size",
                "64",
                "--packets",
                "1",
                "-o",
                out,
            ],
            "not a count",
        ),
        (
            &[
                "--flows",
                "17m",
                "--size",
                "64",
                "--packets",
                "1",
                "-o",
                out,
            ],
            "out of range",
        ),
        (
            &["--flows", "1", "--size", "63", "--packets", "1", "-o", out],
            "out of range 64..=1518",
        ),
        (
            &[
                "--flows",
                "1",
                "--size",
                "jumbo",
                "--packets",
                "1",
                "-o",
                out,
            ],
            "invalid frame size",
        ),
        (
            &["--flows", "1", "--size", "64", "--packets", "0", "-o", out],
            "at least 1",
        ),
        (&["--flows", "1", "--size", "64", "-o", out], "--packets"),
        (
            &[
                "--flows",
                "1",
                "--size",
                "64",
                "--packets",
                "1",
                "-o",
                "/nonexistent/dir/out.pcap",
            ],
            "cannot create",
        ),
    ];
    for (args, expected) in cases {
        let output = gen(args);
        let message = stderr(&output);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(message.starts_with("error: "), "{args:?}: {message}");
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    let unknown = bin().args(["gen", "l9"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(stderr(&unknown).lines().count(), 1, "{}", stderr(&unknown));
}

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Dissects `pcap` with tshark, checksum validation on; one row of fields
/// per frame. Only the first occurrence of each field is kept: tshark picks
/// a payload dissector from the *lower* UDP port, and the source ports sweep
/// through 1024..65535, so some frames (e.g. source port 4789, VXLAN) get a
/// spurious inner Ethernet header.
fn tshark_fields(pcap: &std::path::Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args([
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "occurrence=f",
    ]);
    for field in fields {
        cmd.args(["-e", field]);
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "tshark failed: {}",
        stderr(&output)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn tshark_sees_expected_flows() {
    if !tshark_available() {
        println!("skipping tshark_sees_expected_flows: tshark not found on PATH");
        return;
    }
    let dir = scratch("tshark_sees_expected_flows");
    for (flows, size, packets, lens) in [
        (1u32, "64", 10u64, &[60usize][..]),
        (1000, "1518", 2000, &[1514][..]),
        (100_000, "64", 100_000, &[60][..]),
        (1000, "imix", 1200, &[60, 572, 1514][..]),
    ] {
        let pcap = dir.join(format!("l2-{flows}-{size}.pcap"));
        let output = gen(&[
            "--flows",
            &flows.to_string(),
            "--size",
            size,
            "--packets",
            &packets.to_string(),
            "-o",
            pcap.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));

        let rows = tshark_fields(
            &pcap,
            &[
                "eth.dst",
                "ip.src",
                "udp.srcport",
                "frame.len",
                "ip.checksum.status",
                "udp.checksum.status",
            ],
        );
        assert_eq!(rows.len() as u64, packets, "{flows} flows, size {size}");
        let mut distinct = HashSet::new();
        for (index, row) in rows.iter().enumerate() {
            let flow = (index as u64 % u64::from(flows)) as u32;
            let [a, b, c] = [(flow >> 16) as u8, (flow >> 8) as u8, flow as u8];
            assert_eq!(
                row[0],
                format!("02:00:00:{a:02x}:{b:02x}:{c:02x}"),
                "frame {index}"
            );
            assert_eq!(
                row[1],
                Ipv4Addr::from(0x0a00_0000 + flow + 1).to_string(),
                "frame {index}"
            );
            assert_eq!(row[2], (1024 + flow % 64_512).to_string(), "frame {index}");
            assert!(
                lens.contains(&row[3].parse::<usize>().unwrap()),
                "frame {index}: len {}",
                row[3]
            );
            // Wireshark's PROTO_CHECKSUM_E_GOOD is 1.
            assert_eq!(
                (row[4].as_str(), row[5].as_str()),
                ("1", "1"),
                "frame {index}: checksum status"
            );
            distinct.insert((row[0].clone(), row[1].clone(), row[2].clone()));
        }
        assert_eq!(distinct.len() as u32, flows, "{flows} flows, size {size}");
    }
}

/// The committed catalogue is what this build writes: the OVS rules and vswitchd
/// sections a reader sees are the ones every run uses.
#[test]
fn scenario_catalogue_is_current() {
    let output = bin().arg("scenarios").output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let written = String::from_utf8(output.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/SCENARIOS.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        written == committed,
        "bench/SCENARIOS.md differs from `vswitch-bench scenarios`: run `make bench-docs`"
    );
    // Every scenario has its section, with rules for OVS and a config for vswitchd.
    for name in SCENARIOS {
        assert!(written.contains(&format!("## `{name}`")), "{name} missing");
    }
    assert_eq!(
        written.matches("Rules (`ovs-ofctl add-flows br0`)").count(),
        6
    );
}

#[test]
fn scenario_catalogue_refuses_bad_flows() {
    let output = bin().args(["scenarios", "--flows", "0"]).output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("flows"), "{}", stderr(&output));
}

/// `vhost` refuses a placement or size it cannot measure before it starts
/// anything: one line, nothing left behind.
#[test]
fn vhost_refuses_bad_placement_and_sizes() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--switch-cpu", "1", "--pod-cpu", "1"], 1, "must differ"),
        (&["--bursts", "0"], 2, "--bursts"),
        (&["--bursts", "65"], 2, "--bursts"),
        (&["--nice", "-21"], 2, "--nice"),
        (&["--rounds", "0"], 2, "--rounds"),
        (&["--switch-cpu", "x"], 2, "--switch-cpu"),
    ];
    for (args, code, expected) in cases {
        let output = bin()
            .arg("vhost")
            .args(*args)
            .args(["--vswitchd", "/nonexistent/vswitchd"])
            .output()
            .unwrap();
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(*code), "{args:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}
