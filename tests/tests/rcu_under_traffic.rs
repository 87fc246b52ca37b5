//! RCU under traffic: while a constant UDP stream flows between two pods of one
//! virtual network, the configuration file is rewritten and `vswitchd` is sent
//! SIGHUP thousands of times, each reload publishing a new pipeline snapshot
//! generation that adds or removes 100 local endpoints of an unrelated network and
//! 100 remote endpoints of the stream's own network. Every datagram must arrive,
//! the switch must count no drops, the final generation must be reached, the
//! switch must exit cleanly, and its resident memory must come back to its level
//! after a warm-up set of reloads: old snapshots are freed, not leaked.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use system_tests::*;

const POD1_MAC: &str = "02:00:00:00:01:01";
const POD2_MAC: &str = "02:00:00:00:01:02";
const UPLINK_MAC: &str = "02:00:00:00:ff:01";

/// Reloads in all. The main loop takes at most one reload per 20 ms tick, and a
/// debug build parses and compiles the larger file in about 10 ms more, so about
/// 34 reloads a second land (measured on a 2-CPU VM): 1800 keep the test under a
/// minute (2000 took 62 s).
const RELOADS: u64 = 1800;
/// Reloads after which the resident set is taken as the reference: by then the
/// allocator has settled on its arenas for parsing, compiling and publishing.
const WARMUP_RELOADS: u64 = 200;
/// Unrelated endpoints toggled by every other reload, of each kind.
const EXTRA: u32 = 100;
/// How much the resident set may grow after the warm-up. A compiled snapshot
/// holds 13.7 KB of heap with the extra endpoints and 2.2 KB without (counted with
/// a counting allocator around `l2_pipeline` + `overlay` + `Pipeline::new`), so
/// leaking the 1600 snapshots published after the warm-up would add about 12.7 MB
/// before malloc's own overhead. Growth after the warm-up measured about 40 KiB;
/// 4 MiB absorbs allocator fragmentation and lazily touched pages while staying
/// well below what such a leak would add.
const RSS_SLACK_KIB: u64 = 4 * 1024;
/// The stream's pace: datagrams per second (about 53 000 over the run).
const RATE: u32 = 1000;
const UDP_PORT: &str = "7001";

struct Ifaces<'a> {
    dir: &'a TempDir,
    pod1: &'a str,
    pod2: &'a str,
    uplink: &'a str,
}

/// The configuration. `extras = Some(k)` adds network "green" with `EXTRA` local
/// endpoints behind the `spare` port and `EXTRA` remote endpoints in "blue" behind
/// ten VTEPs; `k` shifts their addresses so consecutive snapshots differ in content,
/// not only in size. Ports, [eal] and [dataplane] never change (a reload that
/// changes them is refused).
fn config(i: &Ifaces<'_>, extras: Option<u64>) -> String {
    let core = if std::thread::available_parallelism().unwrap().get() > 1 {
        1
    } else {
        0
    };
    let mut c = format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = [{core}]
stats_file = "{stats}"
stats_interval_ms = 100
[[port]]
name = "pod1"
profile = "af_packet"
iface = "{pod1}"
[[port]]
name = "pod2"
profile = "af_packet"
iface = "{pod2}"
[[port]]
name = "uplink"
profile = "af_packet"
iface = "{uplink}"
[[port]]
name = "spare"
profile = "null"
no_rx = true
[underlay]
uplink = "uplink"
local_vtep_ip = "192.0.2.1"
local_mac = "{UPLINK_MAC}"
mtu = 1500
on_link = "192.0.2.0/24"
[[network]]
name = "blue"
vni = 100
subnets = ["10.1.0.0/16"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "02:00:00:00:aa:01"
[[endpoint]]
network = "blue"
mac = "{POD1_MAC}"
ips = ["10.1.0.2"]
port = "pod1"
[[endpoint]]
network = "blue"
mac = "{POD2_MAC}"
ips = ["10.1.0.3"]
port = "pod2"
"#,
        stats = i.dir.join("stats.json").display(),
        pod1 = i.pod1,
        pod2 = i.pod2,
        uplink = i.uplink,
    );
    if let Some(k) = extras {
        c.push_str(
            r#"
[[network]]
name = "green"
vni = 200
subnets = ["10.2.0.0/16"]
gateway_ips = ["10.2.0.1"]
gateway_mac = "02:00:00:00:aa:02"
"#,
        );
        let base = (k % 40) as u32 * EXTRA;
        for n in base..base + EXTRA {
            let (hi, lo) = (n >> 8, n & 0xff);
            // 10.x.1.0 onwards: clear of the pods and gateways.
            let (a, b) = (1 + n / 250, 2 + n % 250);
            c.push_str(&format!(
                "[[endpoint]]\nnetwork = \"green\"\nmac = \"02:00:00:10:{hi:02x}:{lo:02x}\"\n\
                 ips = [\"10.2.{a}.{b}\"]\nport = \"spare\"\n\
                 [[remote_endpoint]]\nnetwork = \"blue\"\nmac = \"02:00:00:20:{hi:02x}:{lo:02x}\"\n\
                 ips = [\"10.1.{a}.{b}\"]\nvtep = \"192.0.2.{vtep}\"\n",
                vtep = 10 + n % 10,
            ));
        }
    }
    c
}

/// Replaces the file atomically, so the switch never reads half of it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Follows the switch's log: counts "reloaded configuration" lines and stops at
/// the first "reload refused". Only whole lines are looked at.
struct LogTail {
    file: std::fs::File,
    pending: String,
    reloaded: u64,
}

impl LogTail {
    fn new(path: &Path) -> LogTail {
        let mut file = std::fs::File::open(path).unwrap();
        file.seek(SeekFrom::End(0)).unwrap();
        LogTail {
            file,
            pending: String::new(),
            reloaded: 0,
        }
    }

    /// Reads what was appended; panics on a refused reload.
    fn poll(&mut self) -> u64 {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf).unwrap();
        self.pending.push_str(&String::from_utf8_lossy(&buf));
        while let Some(nl) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=nl).collect();
            assert!(!line.contains("reload refused"), "reload refused: {line}");
            if line.contains("reloaded configuration") {
                self.reloaded += 1;
            }
        }
        self.reloaded
    }
}

/// Fails the test if the switch has exited.
fn assert_alive(sw: &mut Vswitchd, when: &str) {
    let status = sw.child.0.as_mut().unwrap().try_wait().unwrap();
    assert!(
        status.is_none(),
        "vswitchd exited {when}: {status:?}\n{}",
        sw.log_text()
    );
}

/// The lowest snapshot generation any worker runs, from the stats file.
fn min_worker_generation(stats: &serde_json::Value) -> u64 {
    stats["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| counter(w, "generation"))
        .min()
        .expect("no workers")
}

#[test]
fn rcu_thousands_of_snapshots_under_a_constant_stream() {
    require_root!();
    let t0 = Instant::now();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let pod1 = VethPod::new(&tag, 1, POD1_MAC, "10.1.0.2/16");
    let pod2 = VethPod::new(&tag, 2, POD2_MAC, "10.1.0.3/16");
    // The underlay peer: nothing lives behind it; it only gives the uplink a link.
    let underlay = VethPod::new(&tag, 3, "02:00:00:00:ff:02", "192.0.2.2/24");
    // Static neighbours: the stream must not depend on ARP timing while reloads run.
    pod1.ns.exec(&[
        "ip",
        "neigh",
        "replace",
        "10.1.0.3",
        "lladdr",
        POD2_MAC,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    pod2.ns.exec(&[
        "ip",
        "neigh",
        "replace",
        "10.1.0.2",
        "lladdr",
        POD1_MAC,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let ifs = Ifaces {
        dir: &dir,
        pod1: &pod1.host_if,
        pod2: &pod2.host_if,
        uplink: &underlay.host_if,
    };
    let mut sw = Vswitchd::start(&dir, &config(&ifs, None));
    let pid = sw.child.pid();
    let cfg_path = dir.join("vswitchd.toml");
    let mut log = LogTail::new(&dir.join("vswitchd.log"));
    let rss_start = rss_kib(pid);

    // The stream: receiver first, then a paced sender that runs until told to stop.
    let script = repo_root().join("scripts/udp_stream.py");
    let script = script.to_str().unwrap();
    let p = |s: &str| dir.join(s).to_str().unwrap().to_owned();
    let (ready, recv_stop, recv_out) = (p("recv.ready"), p("recv.stop"), p("recv.json"));
    let (send_stop, send_out) = (p("send.stop"), p("send.json"));
    let mut receiver = pod2.ns.spawn(&[
        "python3",
        script,
        "recv",
        "--port",
        UDP_PORT,
        "--ready",
        &ready,
        "--stop",
        &recv_stop,
        "--out",
        &recv_out,
        "--idle",
        "1.0",
        "--timeout",
        "240",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&ready).exists() {
        assert!(Instant::now() < deadline, "UDP receiver did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rate = RATE.to_string();
    let mut sender = pod1.ns.spawn(&[
        "python3", script, "send", "--host", "10.1.0.3", "--port", UDP_PORT, "--rate", &rate,
        "--count", "1000000", "--stop", &send_stop, "--out", &send_out,
    ]);
    // The stream is flowing through the switch before the first reload.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let stats = read_json(&sw.stats_file);
        if counter(port_stats(&stats, "pod2"), "tx_packets") >= 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream does not reach pod2: {stats}\n{}",
            sw.log_text()
        );
    }

    // The reloads: one at a time, each confirmed by its log line before the file
    // is rewritten for the next, so no SIGHUP is folded into another.
    let reload_start = Instant::now();
    let mut rss_warm = 0;
    let mut rss_max = 0;
    let mut slowest = Duration::ZERO;
    for r in 1..=RELOADS {
        // Odd reloads add the extras (shifted each time), even ones remove them.
        let extras = (r % 2 == 1).then_some(r / 2);
        write_atomically(&cfg_path, &config(&ifs, extras));
        let sent_at = Instant::now();
        run("kill", &["-HUP", &pid.to_string()]);
        loop {
            if log.poll() >= r {
                break;
            }
            assert_alive(&mut sw, &format!("during reload {r}"));
            assert!(
                sent_at.elapsed() < Duration::from_secs(10),
                "reload {r} did not land within 10 s\n{}",
                sw.log_text()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        slowest = slowest.max(sent_at.elapsed());
        if r % 100 == 0 {
            assert_alive(&mut sw, &format!("after reload {r}"));
            rss_max = rss_max.max(rss_kib(pid));
        }
        if r == WARMUP_RELOADS {
            rss_warm = rss_kib(pid);
        }
    }
    let reload_time = reload_start.elapsed();

    // Let the last snapshot reach the worker and the stream run on it for a moment.
    let final_generation = 1 + RELOADS;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = read_json(&sw.stats_file);
        if min_worker_generation(&stats) >= final_generation {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "workers did not reach generation {final_generation}: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_end = rss_kib(pid);
    assert_alive(&mut sw, "after the reloads");

    std::fs::write(&send_stop, "").unwrap();
    let out = sender
        .wait_timeout(Duration::from_secs(10))
        .expect("UDP sender hung");
    assert!(
        out.status.success(),
        "UDP sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&recv_stop, "").unwrap();
    let out = receiver
        .wait_timeout(Duration::from_secs(15))
        .expect("UDP receiver hung");
    assert!(
        out.status.success(),
        "UDP receiver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = read_json(Path::new(&send_out));
    let got = read_json(Path::new(&recv_out));
    let stats = sw.stop();

    let n_sent = counter(&sent, "sent");
    eprintln!(
        "reloads: {RELOADS} in {:.1} s ({:.1}/s, slowest {} ms); generation {}",
        reload_time.as_secs_f64(),
        RELOADS as f64 / reload_time.as_secs_f64(),
        slowest.as_millis(),
        min_worker_generation(&stats),
    );
    eprintln!(
        "VmRSS: start {rss_start} KiB, after {WARMUP_RELOADS} reloads {rss_warm} KiB, \
         max sampled {rss_max} KiB, end {rss_end} KiB"
    );
    eprintln!(
        "stream: sent {n_sent} in {:.1} s, received {got}; total {:.1} s",
        sent["seconds"].as_f64().unwrap_or(0.0),
        t0.elapsed().as_secs_f64()
    );

    // Zero loss, no duplicates.
    assert!(n_sent > 10_000, "the stream was too short: {sent}");
    assert_eq!(counter(&got, "distinct"), n_sent, "datagrams lost: {got}");
    assert_eq!(counter(&got, "duplicates"), 0, "{got}");
    assert_eq!(counter(&got, "highest"), n_sent - 1, "{got}");
    // The switch ran the last generation, passed the stream and dropped nothing.
    assert!(min_worker_generation(&stats) >= final_generation, "{stats}");
    for name in ["pod1", "pod2"] {
        let port = port_stats(&stats, name);
        assert_eq!(counter(port, "dropped"), 0, "{name}: {stats}");
        for c in ["imissed", "ierrors", "oerrors", "rx_nombuf"] {
            assert_eq!(counter(&port["dpdk"], c), 0, "{name} {c}: {stats}");
        }
    }
    assert!(
        counter(port_stats(&stats, "pod1"), "rx_packets") >= n_sent,
        "{stats}"
    );
    assert!(
        counter(port_stats(&stats, "pod2"), "tx_packets") >= n_sent,
        "{stats}"
    );
    for (reason, n) in stats["drops"].as_object().expect("drops") {
        assert_eq!(n.as_u64(), Some(0), "drops {reason}: {stats}");
    }
    // Old snapshots were freed: memory is back at its post-warm-up level.
    assert!(
        rss_end <= rss_warm + RSS_SLACK_KIB,
        "VmRSS grew from {rss_warm} KiB after {WARMUP_RELOADS} reloads to {rss_end} KiB \
         after {RELOADS}: old snapshots leak?"
    );
}
