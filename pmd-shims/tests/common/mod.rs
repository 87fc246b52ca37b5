//! Shared set-up for the EAL tests. Each test file is its own process (EAL
//! initialises once per process), with one `#[test]` each, so they pass under plain
//! `cargo test` as well as under nextest.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use pmd_shims::{
    Eal, Mempool, Port, PortConfig, PortProfile, PortRxQueue, PortTxQueue, DEFAULT_DATA_ROOM,
};

/// EAL arguments that need no hugepages, no PCI and no shared config.
///
/// DPDK 22.11 refuses `--no-huge` together with `--in-memory` ("Option --legacy-mem
/// is not compatible with --in-memory": `--no-huge` implies legacy memory), so the
/// processes keep apart by a per-process `--file-prefix` and `--no-shconf` instead.
pub fn eal_args() -> Vec<String> {
    [
        "pmd-shims-test",
        "--no-huge",
        "-m",
        "256",
        "--no-shconf",
        &format!("--file-prefix=pmd-shims-test-{}", std::process::id()),
        "--no-pci",
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=notice",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The EAL of this test process; removes EAL's runtime directory when dropped
/// (even `--no-shconf` creates `/var/run/dpdk/<file-prefix>`).
pub struct TestEal {
    eal: Option<Eal>,
}

impl TestEal {
    /// `rte_eal_cleanup`, then the directory goes on drop.
    pub fn cleanup(mut self) {
        if let Some(eal) = self.eal.take() {
            eal.cleanup().expect("rte_eal_cleanup");
        }
    }
}

impl Drop for TestEal {
    fn drop(&mut self) {
        let prefix = format!("pmd-shims-test-{}", std::process::id());
        let mut dirs = vec![PathBuf::from("/var/run/dpdk").join(&prefix)];
        if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
            dirs.push(PathBuf::from(xdg).join("dpdk").join(&prefix));
        }
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn eal() -> TestEal {
    TestEal {
        eal: Some(Eal::init(&eal_args()).expect("EAL init")),
    }
}

pub fn pool(name: &str, n: u32) -> Arc<Mempool> {
    Mempool::new(name, n, 0, DEFAULT_DATA_ROOM, -1).expect("mempool")
}

/// A distinct test frame: Ethernet header, then `i` repeated.
pub fn frame(i: u8, len: usize) -> Vec<u8> {
    let mut f = vec![i; len.max(14)];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// Runs `ip ARGS...`: whether it succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A veth pair, deleted (both ends go with one) on drop.
pub struct Veth(String);

impl Veth {
    /// Creates the pair `a`/`b`; `None`, saying so, where that is not possible
    /// (not root, no iproute2): the test skips.
    pub fn new(a: &str, b: &str) -> Option<Veth> {
        if !ip(&["link", "add", a, "type", "veth", "peer", "name", b]) {
            eprintln!("skipped: cannot create a veth pair (needs root and iproute2)");
            return None;
        }
        Some(Veth(a.to_owned()))
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// An af_packet port profile on `iface`, one queue pair.
pub fn af_packet(iface: &str) -> PortProfile {
    PortProfile::AfPacket {
        iface: iface.to_owned(),
        qpairs: 1,
    }
}

/// Opens `profile` as port `instance`, configures it with the defaults over
/// `pool` and starts it: the port and its queues.
pub fn start_port(
    profile: &PortProfile,
    instance: u32,
    pool: &Arc<Mempool>,
) -> (Port, (Vec<PortRxQueue>, Vec<PortTxQueue>)) {
    let mut port = Port::open(profile, instance).unwrap();
    let q = port.configure(&PortConfig::default(), pool).unwrap();
    port.start().unwrap();
    (port, q)
}
