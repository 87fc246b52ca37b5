//! What the end-to-end tests of `vswitch-bench` share: whether they can run here
//! (root, programs on PATH) and where the workspace's binaries are.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every scenario, by its command-line name.
pub const SCENARIOS: [&str; 6] = [
    "l2",
    "vxlan-decap",
    "vxlan-encap",
    "geneve-decap",
    "geneve-encap",
    "l3",
];

/// Whether the tests run as root (DPDK and OVS-DPDK need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A workspace binary next to vswitch-bench (target/<profile>/<name>), if built.
pub fn workspace_bin(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_vswitch-bench"))
        .parent()?
        .join(name);
    path.exists().then_some(path)
}
