//! The I/O floor as our own Rust code sees it: replay a pcap (`net_pcap`,
//! `infinite_rx`) into a `net_null` sink with nothing but rx_burst/tx_burst through
//! pmd-shims, on one pinned, DPDK-registered core. `--touch` reads each frame's
//! destination MAC and looks it up in a hash map, like the l2 scenario; `--read`
//! reads one byte of each frame and nothing more. `CACHE=N` sets the mempool's
//! per-core cache (default 256, as vswitchd); `HUGE=1` runs on hugepages. This is the reference for what the
//! switch around the lookup costs (bench/RESULTS.md).
//!
//! ```sh
//! cargo run --release -p pmd-shims --example bare_fwd -- traffic.pcap [--touch|--read] [--seconds N]
//! ```

use hashbrown::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dataplane::buf::PacketBuf;
use dataplane::io::{Burst, RxQueue, TxQueue};
use pmd_shims::{Eal, Mempool, Port, PortConfig, PortProfile, DEFAULT_DATA_ROOM};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pcap = PathBuf::from(
        args.get(1)
            .expect("usage: bare_fwd PCAP [--touch] [--seconds N]"),
    );
    let touch = args.iter().any(|a| a == "--touch");
    let touch_only = args.iter().any(|a| a == "--read");
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let prefix = format!("bare-fwd-{}", std::process::id());
    // HUGE=1: 2 MiB hugepages (as vswitch-bench uses when the machine has them).
    let huge = std::env::var("HUGE").is_ok_and(|v| v == "1");
    let memory = if huge { "--in-memory" } else { "--no-huge" };
    let eal_args: Vec<String> = [
        "bare_fwd",
        memory,
        "-m",
        "600",
        "--no-shconf",
        &format!("--file-prefix={prefix}"),
        "--no-pci",
        "-l",
        "0",
        "--no-telemetry",
        "--log-level=notice",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&eal_args).expect("EAL");
    let cache: u32 = std::env::var("CACHE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let pool = Mempool::new("bare", 20480, cache, DEFAULT_DATA_ROOM, -1).expect("pool");
    let rx_profile = PortProfile::Pcap {
        rx_pcap: Some(pcap),
        tx_pcap: None,
        rx_iface: None,
        tx_iface: None,
        infinite_rx: true,
    };
    let mut rx_port = Port::open(&rx_profile, 0).expect("pcap port");
    let mut tx_port = Port::open(
        &PortProfile::Null {
            no_rx: true,
            size: None,
        },
        0,
    )
    .expect("null port");
    let (mut rxq, _) = rx_port
        .configure(&PortConfig::default(), &pool)
        .expect("configure");
    let (_, mut txq) = tx_port
        .configure(&PortConfig::default(), &pool)
        .expect("configure");
    rx_port.start().unwrap();
    tx_port.start().unwrap();
    let (mut rxq, mut txq) = (rxq.remove(0), txq.remove(0));
    let core = core_affinity::CoreId { id: 1 };
    let handle = std::thread::spawn(move || {
        core_affinity::set_for_current(core);
        let _reg = pmd_shims::register_thread().expect("register");
        let mut table: HashMap<[u8; 6], u16> = HashMap::new();
        for f in 0..1000u32 {
            let b = f.to_be_bytes();
            table.insert([2, 0, 0, b[1], b[2], b[3]], 1);
        }
        let mut burst: Burst<pmd_shims::Mbuf> = Burst::new();
        let mut out: Burst<pmd_shims::Mbuf> = Burst::new();
        let mut n = 0u64;
        let mut hits = 0u64;
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut samples = Vec::new();
        let mut last = (start, 0u64);
        loop {
            rxq.rx_burst(&mut burst);
            n += burst.len() as u64;
            for m in burst.drain(..) {
                if touch_only {
                    hits += u64::from(m.data()[5]);
                } else if touch {
                    let d = m.data();
                    if let Some(&p) = table.get(&[d[0], d[1], d[2], d[3], d[4], d[5]]) {
                        hits += u64::from(p);
                    }
                }
                out.push(m);
            }
            txq.tx_burst(&mut out);
            out.clear();
            if n & 0xfffff < 32 {
                let now = Instant::now();
                if now.duration_since(last.0) >= Duration::from_secs(1) {
                    samples
                        .push((n - last.1) as f64 / now.duration_since(last.0).as_secs_f64() / 1e6);
                    last = (now, n);
                }
                if now >= end {
                    break;
                }
            }
        }
        (samples, hits)
    });
    let (mut samples, hits) = handle.join().unwrap();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = samples[samples.len() / 2];
    println!(
        "bare_fwd touch={touch}: median {med:.2} Mpps, {:.0} cycles/pkt ({} samples, hits {hits})",
        pmd_shims::tsc_hz() as f64 / (med * 1e6),
        samples.len()
    );

    rx_port.stop().unwrap();
    tx_port.stop().unwrap();
    let _ = rx_port.close();
    let _ = tx_port.close();
    drop(pool);
    let _ = eal.cleanup();
    let _ = std::fs::remove_dir_all(PathBuf::from("/var/run/dpdk").join(prefix));
}
