//! Measuring a scenario: vswitchd, or `dpdk-testpmd --forward-mode=io` as the
//! I/O floor, replaying a bundle's pcap (`net_pcap`, `infinite_rx`) into a
//! `net_null` sink with one busy-polling worker on one pinned core.
//!
//! Rates are one-second samples after a warm-up; the reported rate is their
//! median (the machines we run on are noisy). vswitchd's samples come from its
//! stats file (`sink` tx packets over `uptime_s`), testpmd's from its
//! `--stats-period 1` output (port 1 `Tx-pps`). Derived figures:
//!
//! - Gbps: wire bits of the frames leaving on `sink`, counting the 4-byte FCS
//!   and 20 bytes of preamble, SFD and inter-frame gap per frame (line-rate
//!   convention: 64-byte frames at 14.88 Mpps are 10 Gbps).
//! - cycles/packet: TSC Hz / packets per second; valid because the worker
//!   busy-polls, so it spends every cycle of its core on the traffic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::bundle::{mean_wire_bytes, memory_mb_for, Bundle};
use crate::memory::Memory;
use crate::scenario::Scenario;

/// How long to wait for the switch under test to start forwarding.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a process gets to exit after SIGTERM/SIGINT before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Window and placement of a measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Measured one-second samples.
    pub seconds: u32,
    /// Seconds discarded after start-up.
    pub warmup: u32,
    /// CPU of the forwarding worker.
    pub core: usize,
    /// Hugepages or 4 KiB pages, for every forwarder alike.
    pub memory: Memory,
    /// A command the forwarder runs under, with its arguments (`valgrind
    /// --tool=callgrind ...`: [`crate::callgrind`]); empty: none.
    pub wrapper: Vec<String>,
}

/// `program` to be started under `wrapper` (its first word the command run, the
/// rest its arguments), or by itself when `wrapper` is empty. The wrapper must
/// run the program in its own process (as valgrind does), so that signals and
/// the EAL runtime directory named after the PID reach the forwarder.
fn forwarder_command(wrapper: &[String], program: &Path) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Packet counters of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounts {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
}

/// The result of one measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// `vswitchd` or `testpmd`.
    pub switch: String,
    /// Scenario name.
    pub scenario: String,
    /// Frame size setting (`64`, `imix`, ...).
    pub frame_size: String,
    /// Flow count.
    pub flows: u32,
    /// Forwarding core.
    pub core: usize,
    /// The kind of memory the forwarder ran with.
    pub memory: Memory,
    /// TSC frequency used for cycles/packet (0 if unknown).
    pub tsc_hz: f64,
    /// Per-second egress rates of the measured window, packets per second.
    pub samples_pps: Vec<f64>,
    /// Mean bytes on the wire per egress frame (FCS, preamble and IFG included).
    pub wire_bytes_per_packet: f64,
    /// Counters per port at the end of the run (whole run, warm-up included).
    pub ports: BTreeMap<String, PortCounts>,
    /// Non-zero drop counters by reason.
    pub drops: BTreeMap<String, u64>,
}

impl Measurement {
    /// Median of the samples, packets per second (0 without samples).
    pub fn median_pps(&self) -> f64 {
        median(&self.samples_pps)
    }

    /// Median rate in Mpps.
    pub fn mpps(&self) -> f64 {
        self.median_pps() / 1e6
    }

    /// Wire rate of the egress frames in Gbps.
    pub fn gbps(&self) -> f64 {
        self.median_pps() * self.wire_bytes_per_packet * 8.0 / 1e9
    }

    /// TSC cycles per packet, if the TSC frequency is known and the rate is
    /// meaningful (at least 1 kpps; below that the worker is not busy with
    /// packets).
    pub fn cycles_per_packet(&self) -> Option<f64> {
        crate::compare::cycles_per_packet(self.tsc_hz, self.mpps())
    }

    /// The JSON report.
    pub fn to_json(&self) -> serde_json::Value {
        let round = |x: f64, digits: i32| {
            let m = 10f64.powi(digits);
            (x * m).round() / m
        };
        json!({
            "switch": self.switch,
            "scenario": self.scenario,
            "frame_size": self.frame_size,
            "flows": self.flows,
            "core": self.core,
            "memory": self.memory.label(),
            "tsc_hz": self.tsc_hz,
            "mpps": round(self.mpps(), 3),
            "gbps": round(self.gbps(), 3),
            "cycles_per_packet": self.cycles_per_packet().map(|c| round(c, 1)),
            "samples": self.samples_pps.iter().map(|s| round(s / 1e6, 3)).collect::<Vec<_>>(),
            "ports": self.ports.iter().map(|(name, c)| {
                (name.clone(), json!({"rx_packets": c.rx_packets, "tx_packets": c.tx_packets}))
            }).collect::<serde_json::Map<_, _>>(),
            "drops": self.drops,
        })
    }

    /// A testpmd-like text report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} | scenario {} | size {} | {} flow(s) | core {} | {} | median of {} one-second samples",
            self.switch,
            self.scenario,
            self.frame_size,
            self.flows,
            self.core,
            self.memory,
            self.samples_pps.len()
        );
        for (name, c) in &self.ports {
            let _ = writeln!(
                s,
                "  port {name:<8} RX-packets: {:<14} TX-packets: {}",
                c.rx_packets, c.tx_packets
            );
        }
        let _ = writeln!(
            s,
            "  Mpps: {:.3}   Gbps: {:.3}   cycles/packet: {}",
            self.mpps(),
            self.gbps(),
            self.cycles_per_packet()
                .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.1}"))
        );
        let samples: Vec<String> = self
            .samples_pps
            .iter()
            .map(|p| format!("{:.2}", p / 1e6))
            .collect();
        let _ = writeln!(s, "  samples (Mpps): {}", samples.join(" "));
        if self.drops.is_empty() {
            let _ = writeln!(s, "  drops: none");
        } else {
            let drops: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "  drops: {}", drops.join(" "));
        }
        s
    }
}

fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The TSC frequency: the kernel's calibration from `dmesg` if readable,
/// else `cpu MHz` from `/proc/cpuinfo`, else 0.
pub fn tsc_hz() -> f64 {
    if let Ok(out) = Command::new("dmesg").stderr(Stdio::null()).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut found = None;
        for line in text.lines() {
            for key in [
                "tsc: Refined TSC clocksource calibration: ",
                "tsc: Detected ",
            ] {
                if let Some(rest) = line.split(key).nth(1) {
                    if let Some(mhz) = rest.split_whitespace().next() {
                        if let Ok(mhz) = mhz.parse::<f64>() {
                            // A refined calibration wins over the first guess.
                            if key.contains("Refined") || found.is_none() {
                                found = Some(mhz);
                            }
                        }
                    }
                }
            }
        }
        if let Some(mhz) = found {
            return mhz * 1e6;
        }
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(0.0, |mhz| mhz * 1e6)
}

/// A child process stopped on drop: `signal` by PID, then SIGKILL after
/// [`STOP_TIMEOUT`].
pub struct ChildGuard {
    child: Child,
    signal: &'static str,
    runtime_dir: Option<PathBuf>,
}

impl ChildGuard {
    /// Guards `child`; `signal` is a `kill` signal name (`TERM`, `INT`).
    pub fn new(child: Child, signal: &'static str) -> Self {
        Self {
            child,
            signal,
            runtime_dir: None,
        }
    }

    /// Also removes `dir`, the child's private EAL runtime directory, once the
    /// child is gone. The child removes it itself on a clean exit; a SIGKILL
    /// after the stop timeout, or a panic (release builds abort), skips that.
    #[must_use]
    pub fn removing(mut self, dir: PathBuf) -> Self {
        self.runtime_dir = Some(dir);
        self
    }

    /// The process ID.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Signals the process and waits for it (SIGKILL after the timeout), then
    /// removes its runtime directory, if any.
    pub fn stop(&mut self) {
        self.end();
        if let Some(dir) = self.runtime_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn end(&mut self) {
        if self.exited() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{}", self.signal), &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory removed on drop (unless kept).
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// A fresh directory under the system temp dir.
    ///
    /// # Errors
    /// If it cannot be created.
    pub fn temp() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("vswitch-bench-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path, keep: false })
    }

    /// An existing or new directory that is kept.
    ///
    /// # Errors
    /// If it cannot be created.
    pub fn kept(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            keep: true,
        })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

fn sink_tx(doc: &serde_json::Value) -> Option<u64> {
    doc["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "sink")?
        .get("tx_packets")?
        .as_u64()
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Runs vswitchd (`vswitchd --config <bundle>/vswitchd.toml`) and measures it.
///
/// # Errors
/// If vswitchd does not start, exits early, or produces no samples.
pub fn run_vswitchd(
    vswitchd: &Path,
    bundle: &Bundle,
    scenario: &dyn Scenario,
    opts: &RunOptions,
) -> anyhow::Result<Measurement> {
    let stats = bundle.stats_file();
    let _ = std::fs::remove_file(&stats);
    let log_path = bundle.dir.join("vswitchd.log");
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let child = forwarder_command(&opts.wrapper, vswitchd)
        .arg("--config")
        .arg(bundle.vswitchd_config())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", vswitchd.display()))?;
    // vswitchd's `[eal] in_memory` prefix (see its eal_args.rs), under root's
    // /var/run/dpdk: benchmarks run as root, and testpmd's below assumes the same.
    let runtime_dir = PathBuf::from(format!("/var/run/dpdk/vswitchd{}", child.id()));
    let mut child = ChildGuard::new(child, "TERM").removing(runtime_dir);

    let started = Instant::now();
    while read_json(&stats).is_none() {
        if child.exited() {
            bail!(
                "vswitchd exited before writing stats: {}",
                log_tail(&log_path)
            );
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "vswitchd wrote no stats in {START_TIMEOUT:?}: {}",
                log_tail(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(u64::from(opts.warmup)));

    // One sample per new stats document (written every stats_interval_ms).
    let mut samples = Vec::new();
    let mut prev: Option<(f64, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(u64::from(opts.seconds) * 2 + 10);
    while samples.len() < opts.seconds as usize && Instant::now() < deadline {
        if child.exited() {
            bail!("vswitchd exited during the run: {}", log_tail(&log_path));
        }
        if let Some(doc) = read_json(&stats) {
            if let (Some(uptime), Some(tx)) = (doc["uptime_s"].as_f64(), sink_tx(&doc)) {
                match prev {
                    Some((t0, tx0)) if uptime > t0 => {
                        samples.push(tx.saturating_sub(tx0) as f64 / (uptime - t0));
                        prev = Some((uptime, tx));
                    }
                    Some(_) => {}
                    None => prev = Some((uptime, tx)),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.stop();
    let doc = read_json(&stats).context("vswitchd's final stats file is unreadable")?;
    if samples.is_empty() {
        bail!("no rate samples from vswitchd's stats file");
    }
    let mut ports = BTreeMap::new();
    for p in doc["ports"].as_array().into_iter().flatten() {
        if let Some(name) = p["name"].as_str() {
            ports.insert(
                name.to_owned(),
                PortCounts {
                    rx_packets: p["rx_packets"].as_u64().unwrap_or(0),
                    tx_packets: p["tx_packets"].as_u64().unwrap_or(0),
                },
            );
        }
    }
    let drops = doc["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_u64().filter(|&n| n > 0).map(|n| (k.clone(), n)))
        .collect();
    Ok(Measurement {
        switch: "vswitchd".to_owned(),
        scenario: scenario.name().to_owned(),
        frame_size: scenario.size().to_string(),
        flows: scenario.flow_count(),
        core: opts.core,
        memory: opts.memory,
        tsc_hz: tsc_hz(),
        samples_pps: samples,
        wire_bytes_per_packet: mean_wire_bytes(scenario.size(), scenario.overhead().sink),
        ports,
        drops,
    })
}

/// Runs `dpdk-testpmd --forward-mode=<mode>` on the bundle's pcap (port 0,
/// `net_pcap` with `infinite_rx`) into `net_null` (port 1, `no-rx`), and
/// measures it.
///
/// # Errors
/// If testpmd does not start or prints no statistics.
pub fn run_testpmd(
    testpmd: &Path,
    mode: &str,
    bundle: &Bundle,
    scenario: &dyn Scenario,
    opts: &RunOptions,
) -> anyhow::Result<Measurement> {
    let main_core = usize::from(opts.core == 0);
    let mbufs = crate::bundle::mbufs_for(bundle.packets);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A private prefix and no shared config isolate the run; with hugepages,
    // --in-memory also leaves no page files behind (DPDK 22.11 refuses it with
    // --no-huge).
    let prefix = format!("vswbench{}x{nanos}", std::process::id());
    let memory_args: &[&str] = if opts.memory.is_huge() {
        &["--in-memory"]
    } else {
        &["--no-huge", "--no-shconf"]
    };
    let log_path = bundle.dir.join(format!("testpmd-{mode}.log"));
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let child = forwarder_command(&opts.wrapper, testpmd)
        .args([
            "-l",
            &format!("{main_core},{}", opts.core),
            "-m",
            &memory_mb_for(mbufs).to_string(),
            &format!("--file-prefix={prefix}"),
        ])
        .args(memory_args)
        .args([
            "--no-pci",
            &format!(
                "--vdev=net_pcap0,rx_pcap={},infinite_rx=1",
                bundle.pcap().display()
            ),
            "--vdev=net_null0,no-rx=1",
            "--",
            &format!("--forward-mode={mode}"),
            "--nb-cores=1",
            "--stats-period=1",
            "--txq=1",
            "--rxq=1",
            &format!("--total-num-mbufs={mbufs}"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", testpmd.display()))?;
    let runtime_dir = PathBuf::from("/var/run/dpdk").join(&prefix);
    let result = (|| {
        let mut child = ChildGuard::new(child, "INT").removing(runtime_dir);
        let started = Instant::now();
        // Count the window from the first statistics period: start-up
        // (EAL, a big mempool without hugepages) takes seconds.
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("NIC statistics for port 1") {
                break;
            }
            if child.exited() {
                bail!("testpmd exited early: {}", log_tail(&log_path));
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("testpmd printed no statistics in {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let want = 1 + opts.warmup as usize + opts.seconds as usize;
        let deadline = Instant::now() + Duration::from_secs(want as u64 * 2 + 10);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if parse_testpmd(&text).samples.len() > want {
                break;
            }
            if child.exited() {
                bail!("testpmd exited during the run: {}", log_tail(&log_path));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        child.stop();
        Ok(())
    })();
    result?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let parsed = parse_testpmd(&text);
    // The first period covers start-up; skip it and the warm-up.
    let skip = 1 + opts.warmup as usize;
    let samples: Vec<f64> = parsed
        .samples
        .iter()
        .skip(skip)
        .take(opts.seconds as usize)
        .copied()
        .collect();
    if samples.is_empty() {
        bail!(
            "no rate samples in testpmd's output ({})",
            log_path.display()
        );
    }
    let mut ports = BTreeMap::new();
    ports.insert("replay".to_owned(), parsed.ports[0]);
    ports.insert("sink".to_owned(), parsed.ports[1]);
    Ok(Measurement {
        switch: format!("testpmd-{mode}"),
        scenario: scenario.name().to_owned(),
        frame_size: scenario.size().to_string(),
        flows: scenario.flow_count(),
        core: opts.core,
        memory: opts.memory,
        tsc_hz: tsc_hz(),
        samples_pps: samples,
        wire_bytes_per_packet: mean_wire_bytes(scenario.size(), scenario.overhead().replay),
        ports,
        drops: parsed.drops,
    })
}

/// What testpmd's output says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestpmdOutput {
    /// Port 1 `Tx-pps` of every statistics period, in order.
    pub samples: Vec<f64>,
    /// Ports 0 and 1: the final forwarding statistics, or else the last
    /// statistics period.
    pub ports: [PortCounts; 2],
    /// Non-zero error/miss counters of the last period, and RX/TX-dropped
    /// from the final forwarding statistics.
    pub drops: BTreeMap<String, u64>,
}

fn field(block: &str, key: &str) -> Option<u64> {
    let rest = block.split(key).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Parses testpmd's `--stats-period` output.
pub fn parse_testpmd(text: &str) -> TestpmdOutput {
    let mut out = TestpmdOutput::default();
    for (port, marker) in ["NIC statistics for port 0", "NIC statistics for port 1"]
        .iter()
        .enumerate()
    {
        let blocks: Vec<&str> = text
            .split(marker)
            .skip(1)
            // The rest of the header line, then the block up to its closing rule.
            .map(|b| b.split_once('\n').map_or("", |(_, rest)| rest))
            .map(|b| b.split("####").next().unwrap_or(b))
            .collect();
        if port == 1 {
            out.samples = blocks
                .iter()
                .filter_map(|b| field(b, "Tx-pps:"))
                .map(|v| v as f64)
                .collect();
        }
        if let Some(last) = blocks.last() {
            out.ports[port] = PortCounts {
                rx_packets: field(last, "RX-packets:").unwrap_or(0),
                tx_packets: field(last, "TX-packets:").unwrap_or(0),
            };
            for (key, name) in [
                ("RX-missed:", "rx_missed"),
                ("RX-errors:", "rx_errors"),
                ("RX-nombuf:", "rx_nombuf"),
                ("TX-errors:", "tx_errors"),
            ] {
                if let Some(n) = field(last, key).filter(|&n| n > 0) {
                    out.drops.insert(format!("port{port}_{name}"), n);
                }
            }
        }
    }
    // At exit testpmd prints each port's forwarding totals: exact, where the
    // last statistics period is up to a second old.
    for port in 0..2 {
        let marker = format!("Forward statistics for port {port}");
        if let Some(block) = text.split(marker.as_str()).nth(1) {
            let block = block.split_once('\n').map_or("", |(_, rest)| rest);
            let block = block.split("----").next().unwrap_or(block);
            out.ports[port] = PortCounts {
                rx_packets: field(block, "RX-packets:").unwrap_or(0),
                tx_packets: field(block, "TX-packets:").unwrap_or(0),
            };
            for (key, name) in [("RX-dropped:", "rx_dropped"), ("TX-dropped:", "tx_dropped")] {
                if let Some(n) = field(block, key).filter(|&n| n > 0) {
                    out.drops.insert(format!("port{port}_{name}"), n);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTPMD: &str = "
  ######################## NIC statistics for port 0  ########################
  RX-packets: 100        RX-missed: 0          RX-bytes:  6000
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 0          TX-errors: 0          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:          100          Rx-bps:        48000
  Tx-pps:            0          Tx-bps:            0
  ############################################################################

  ######################## NIC statistics for port 1  ########################
  RX-packets: 0          RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 100        TX-errors: 0          TX-bytes:  6000

  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:          100          Tx-bps:        48000
  ############################################################################

  ######################## NIC statistics for port 1  ########################
  RX-packets: 0          RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 300        TX-errors: 5          TX-bytes:  6000

  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:          200          Tx-bps:        48000
  ############################################################################

  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 305            RX-dropped: 0             RX-total: 305
  TX-packets: 0              TX-dropped: 0             TX-total: 0
  ----------------------------------------------------------------------------

  ---------------------- Forward statistics for port 1  ----------------------
  RX-packets: 0              RX-dropped: 0             RX-total: 0
  TX-packets: 300            TX-dropped: 5             TX-total: 305
  ----------------------------------------------------------------------------
";

    #[test]
    fn parses_testpmd_periods() {
        let out = parse_testpmd(TESTPMD);
        assert_eq!(out.samples, vec![100.0, 200.0]);
        assert_eq!(out.ports[0].rx_packets, 305);
        assert_eq!(out.ports[1].tx_packets, 300);
        assert_eq!(out.drops.get("port1_tx_errors"), Some(&5));
        assert_eq!(out.drops.get("port1_tx_dropped"), Some(&5));
        assert_eq!(out.drops.len(), 2);
        let periods_only = parse_testpmd(TESTPMD.split("  ----").next().unwrap());
        assert_eq!(periods_only.ports[0].rx_packets, 100);
    }

    #[test]
    fn derived_figures() {
        let m = Measurement {
            switch: "vswitchd".into(),
            scenario: "l2".into(),
            frame_size: "64".into(),
            flows: 1,
            core: 1,
            memory: Memory::NoHuge,
            tsc_hz: 3e9,
            samples_pps: vec![10e6, 30e6, 20e6],
            wire_bytes_per_packet: 84.0,
            ports: BTreeMap::new(),
            drops: BTreeMap::new(),
        };
        assert_eq!(m.mpps(), 20.0);
        assert!((m.gbps() - 13.44).abs() < 1e-9);
        assert_eq!(m.cycles_per_packet(), Some(150.0));
        let j = m.to_json();
        assert_eq!(j["mpps"], 20.0);
        assert_eq!(j["samples"], json!([10.0, 30.0, 20.0]));
        assert!(m.to_text().contains("drops: none"));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    /// A child that died without cleaning up (SIGKILL, an aborting panic)
    /// leaves its runtime directory to the guard.
    #[test]
    fn the_guard_removes_a_dead_childs_runtime_dir() {
        let work = WorkDir::temp().unwrap();
        let dir = work.path().join("runtime");
        std::fs::create_dir_all(dir.join("mp_socket_dir")).unwrap();
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        let mut guard = ChildGuard::new(child, "TERM").removing(dir.clone());
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        guard.stop();
        assert!(guard.exited());
        assert!(!dir.exists(), "{} outlived its process", dir.display());

        // And on drop, for a child still running.
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        drop(ChildGuard::new(child, "TERM").removing(dir.clone()));
        assert!(!dir.exists());
    }
}
