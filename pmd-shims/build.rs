//! Compiles the C shim over DPDK's static-inline fast path.
//!
//! The C flags are exactly those `dpdk-sys` passed to bindgen (`DEP_DPDK_CFLAGS`, every
//! token of `pkg-config --cflags libdpdk`, including `-include rte_config.h` and
//! `-march=corei7`), so the shim and the Rust bindings agree on every layout.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    let cflags = env::var("DEP_DPDK_CFLAGS")
        .expect("pmd-shims: DEP_DPDK_CFLAGS not set; dpdk-sys must be a dependency");
    let mut build = cc::Build::new();
    build.file("csrc/shim.c").opt_level(3).warnings(true);
    for flag in cflags.split_whitespace() {
        build.flag(flag);
    }
    // A DPDK function used without its header is assumed to return int: a pointer
    // it returns is cut to 32 bits (a crash far from the cause). Refuse that.
    build.flag("-Werror=implicit-function-declaration");
    build.compile("pmd_shim");
}
