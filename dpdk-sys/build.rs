//! Generates the DPDK bindings from the system `libdpdk` and tells cargo how to link it.
//!
//! Every token of `pkg-config --cflags libdpdk` goes to clang unchanged: Debian's
//! flags carry `-include rte_config.h` (without it the headers do not parse) and
//! `-march=corei7` (the ISA level the distribution built DPDK for; `-march=native`
//! would make the layout depend on the build host). The same tokens are exported to
//! dependent build scripts as `DEP_DPDK_CFLAGS` (this crate `links = "dpdk"`), so the
//! C shim in `pmd-shims` compiles against exactly the headers bindgen saw.
//!
//! Linking is static by default: DPDK's own libraries and the drivers the switch
//! has port profiles for are linked into the binary from `libdpdk-dev`'s archives.
//! The reason is the fast path. In a shared build every mbuf the null and pcap PMDs
//! free or allocate finds its lcore's mempool cache through `__tls_get_addr` (the
//! general-dynamic TLS model of a shared object); linked into the executable, the
//! linker relaxes that to a `%fs`-relative load. A/B on one core, 64 B: +7 to +11%
//! (RESULTS.md, "DPDK linked statically"). Each driver registers from a constructor
//! nothing references, so the archives go in whole (`+whole-archive`); EAL sees no
//! `librte_eal.so` loaded and does not load the system's plugins beside them.
//! `VSWITCH_DPDK_LINK=shared` links the shared libraries instead, and EAL loads every
//! PMD in its plugin directory at init, as `dpdk-testpmd` does.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("dpdk-sys: cannot run pkg-config: {e}; install pkg-config"));
    if !out.status.success() {
        panic!(
            "dpdk-sys: `pkg-config {} libdpdk` failed: {}; install libdpdk-dev",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config output is UTF-8")
}

/// The driver archives linked into a static build: the PMDs `pmd-shims` has a port
/// profile for, the buses they sit on and the default mempool handler. Their order
/// does not matter, every archive is whole.
const STATIC_DRIVERS: &[&str] = &[
    "rte_net_af_packet",
    "rte_net_tap",
    "rte_net_pcap",
    "rte_net_null",
    "rte_net_ring",
    "rte_net_vhost",
    "rte_net_virtio",
    "rte_net_mlx5",
    "rte_common_mlx5",
    "rte_bus_pci",
    "rte_bus_vdev",
    "rte_bus_auxiliary",
    "rte_mempool_ring",
];

/// The DPDK libraries those drivers and the switch need (the closure of their
/// `Requires`: vhost brings cryptodev, dmadev and hash, tap brings gso).
const STATIC_LIBS: &[&str] = &[
    "rte_vhost",
    "rte_cryptodev",
    "rte_dmadev",
    "rte_hash",
    "rte_timer",
    "rte_cmdline",
    "rte_gso",
    "rte_ethdev",
    "rte_meter",
    "rte_net",
    "rte_mbuf",
    "rte_mempool",
    "rte_rcu",
    "rte_ring",
    "rte_pci",
    "rte_eal",
    "rte_telemetry",
    "rte_kvargs",
];

/// The system libraries those archives call into, linked shared (`--as-needed`
/// drops any a build does not use): libpcap for net_pcap, rdma-core for mlx5,
/// libnuma and libbsd for EAL. All are dependencies of `libdpdk-dev`.
const STATIC_SYSTEM_LIBS: &[&str] = &[
    "pcap", "numa", "ibverbs", "mlx5", "bsd", "dl", "pthread", "m", "atomic",
];

/// How to link DPDK: `VSWITCH_DPDK_LINK`, `static` unless it says `shared`.
fn static_link() -> bool {
    match env::var("VSWITCH_DPDK_LINK").as_deref() {
        Err(_) | Ok("static") | Ok("") => true,
        Ok("shared") => false,
        Ok(other) => panic!("dpdk-sys: VSWITCH_DPDK_LINK={other:?}: expected static or shared"),
    }
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=VSWITCH_DPDK_LINK");

    let cflags: Vec<String> = pkg_config(&["--cflags"])
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        !cflags.iter().any(|f| f == "-march=native"),
        "dpdk-sys: refusing -march=native from pkg-config"
    );
    println!("cargo:cflags={}", cflags.join(" "));

    let linked: &[&str] = if static_link() {
        let libdir = pkg_config(&["--variable=libdir"]);
        let libdir = libdir.trim();
        for lib in STATIC_DRIVERS.iter().chain(STATIC_LIBS) {
            let archive = PathBuf::from(libdir).join(format!("lib{lib}.a"));
            assert!(
                archive.is_file(),
                "dpdk-sys: {} missing: install libdpdk-dev (or build with VSWITCH_DPDK_LINK=shared)",
                archive.display()
            );
            // Not bundled into the rlib: the final link takes the archive whole.
            println!("cargo:rustc-link-lib=static:+whole-archive,-bundle={lib}");
        }
        println!("cargo:rustc-link-search=native={libdir}");
        for lib in STATIC_SYSTEM_LIBS {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
        STATIC_DRIVERS
    } else {
        for tok in pkg_config(&["--libs"]).split_whitespace() {
            if let Some(lib) = tok.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={lib}");
            } else if let Some(dir) = tok.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            }
            // `-Wl,--as-needed` is rustc's default for dylibs on GNU targets already.
        }
        &[]
    };

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        // EAL, threads, lcores, errors, version, timer.
        .allowlist_function("rte_eal_init")
        .allowlist_function("rte_eal_cleanup")
        .allowlist_function("rte_eal_process_type")
        .allowlist_function("rte_thread_register")
        .allowlist_function("rte_thread_unregister")
        .allowlist_function("rte_lcore_count")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_get_tsc_hz")
        .allowlist_function("rte_version")
        .allowlist_var("RTE_EAL_PMD_PATH")
        .allowlist_var("RTE_MAX_LCORE")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_MBUF_DEFAULT_DATAROOM")
        .allowlist_var("RTE_MEMPOOL_NAMESIZE")
        .allowlist_var("RTE_ETH_NAME_MAX_LEN")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_ETHER_ADDR_LEN")
        .allowlist_var("RTE_ETH_LINK_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        // Mempools and mbufs (the static-inline fast path is in pmd-shims' C shim).
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_lookup")
        .allowlist_function("rte_mempool_avail_count")
        .allowlist_function("rte_mempool_in_use_count")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_mempool")
        // Devices and ethdev control path.
        .allowlist_function("rte_dev_probe")
        .allowlist_function("rte_dev_remove")
        .allowlist_function("rte_dev_name")
        .allowlist_function("rte_eal_hotplug_remove")
        .allowlist_function("rte_eth_dev_.*")
        // Representor ports: found by matching devargs, siblings of one device.
        .allowlist_function("rte_eth_iterator_.*")
        .allowlist_function("rte_eth_find_next_of")
        .allowlist_function("rte_eth_rx_queue_setup")
        .allowlist_function("rte_eth_tx_queue_setup")
        .allowlist_function("rte_eth_stats_get")
        .allowlist_function("rte_eth_stats_reset")
        .allowlist_function("rte_eth_link_get")
        .allowlist_function("rte_eth_link_get_nowait")
        .allowlist_function("rte_eth_macaddr_get")
        .allowlist_function("rte_eth_promiscuous_enable")
        .allowlist_function("rte_eth_promiscuous_disable")
        .allowlist_function("rte_eth_promiscuous_get")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_link")
        .allowlist_type("rte_ether_addr")
        // Packed protocol headers bindgen cannot lay out: our parsing is Rust anyway.
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .opaque_type("rte_l2tpv2_.*")
        .blocklist_function("rte_eth_dev_.*_flow_.*")
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        .generate()
        .expect("dpdk-sys: bindgen failed on the DPDK headers");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("dpdk-sys: cannot write bindings.rs");
    let stems: Vec<String> = linked
        .iter()
        .map(|l| format!("{:?}", format!("lib{l}")))
        .collect();
    std::fs::write(
        out.join("link.rs"),
        format!(
            "/// The driver libraries linked into this binary (`librte_net_pcap`, ...); empty\n\
             /// in a shared build, where EAL loads drivers from its plugin directory.\n\
             pub const LINKED_DRIVERS: &[&str] = &[{}];\n",
            stems.join(", ")
        ),
    )
    .expect("dpdk-sys: cannot write link.rs");
}
