//! Instructions per packet, counted by valgrind's callgrind: a figure that does not
//! move with a shared machine's noise.
//!
//! On a VM the same binary reads anywhere from 23 to 34 Mpps between two 3-second
//! rounds, so a change worth a few cycles per packet cannot be seen in rates. The
//! number of instructions a forwarder executes per packet does not depend on the
//! neighbours: here the forwarder (vswitchd, testpmd io as the floor, or OVS-DPDK)
//! runs its usual pcap → null run under `valgrind --tool=callgrind
//! --separate-threads=yes`. Its busiest thread but the main one is the forwarding
//! one (the worker, testpmd's forwarding lcore, OVS's PMD), which does nothing but
//! poll; that thread's instruction count over the packets sent on `sink` in the
//! whole run is its instructions per packet. OVS's runner ends the run by deleting
//! the replay port and reading the sink's tx counter, with its PMD set to sleep
//! when idle, so that count is every packet the PMD forwarded and its idle rounds
//! until the daemon exits add next to nothing. Its PMD's fixed costs are not
//! small (the upcalls that install its datapath's flows, about 200 M instructions
//! at 1k flows), so OVS runs twice, for `--seconds` and four times as long, and
//! its figure is the difference of the counts over the difference of the
//! packets ([`Count::minus`]); vswitchd's fixed costs are nil (the same figure to
//! the 0.001 over 10 s and 40 s).
//!
//! For the count vswitchd's worker sleeps while it has no ports yet
//! (`idle_sleep_max_us`), so its rounds before they arrive hardly count, and its
//! hash tables are laid out from a fixed seed (`VSWITCH_HASH_SEED`), so two runs,
//! or two builds, meet the same table layout.
//!
//! With `--cache-sim`, callgrind also simulates the L1 caches and the L2 (as its
//! "last level", the core's own cache, taken from sysfs) and a simple branch
//! predictor: misses and mispredictions per packet, a model's, not the CPU's.
//!
//! What it is not: cycles. Two loops with the same instructions can run at
//! different speeds (dependent loads, mispredictions, memory stalls), so this
//! complements `run`/`compare`, it does not replace them. And valgrind's CPU hides
//! AVX-512, so code that dispatches on CPU features at runtime may take another
//! path than on the bare machine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use serde_json::json;

/// The events callgrind counts, in its own names, with what they mean.
pub const EVENTS: &[(&str, &str)] = &[
    ("Ir", "instructions"),
    ("Dr", "data reads"),
    ("Dw", "data writes"),
    ("I1mr", "L1i misses"),
    ("D1mr", "L1d read misses"),
    ("D1mw", "L1d write misses"),
    ("ILmr", "L2 instruction misses"),
    ("DLmr", "L2 read misses"),
    ("DLmw", "L2 write misses"),
    ("Bc", "conditional branches"),
    ("Bcm", "mispredicted conditional"),
    ("Bi", "indirect branches"),
    ("Bim", "mispredicted indirect"),
];

/// How the forwarders run under callgrind.
#[derive(Debug, Clone)]
pub struct Callgrind {
    /// `valgrind --version`.
    pub version: String,
    /// Simulate caches and branch prediction too (about twice as slow).
    pub cache_sim: bool,
    /// `--I1`, `--D1` and `--LL` from sysfs (empty if sysfs does not say).
    cache_args: Vec<String>,
    /// vswitchd's `VSWITCH_HASH_SEED`: its hash tables laid out the same way in
    /// every run and build, so counts compare to the instruction (the random
    /// draw moves a MAC lookup by up to 5 instructions per packet between runs).
    pub hash_seed: Option<u64>,
}

impl Callgrind {
    /// Checks that valgrind is there.
    ///
    /// # Errors
    /// valgrind missing or not answering.
    pub fn new(cache_sim: bool, hash_seed: Option<u64>) -> anyhow::Result<Self> {
        let out = Command::new("valgrind").arg("--version").output();
        let version = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            _ => {
                bail!("valgrind not found: install it (apt-get install valgrind; `make deps` does)")
            }
        };
        Ok(Self {
            version,
            cache_sim,
            hash_seed,
            cache_args: if cache_sim {
                cache_args(Path::new("/sys/devices/system/cpu/cpu0/cache"))
            } else {
                Vec::new()
            },
        })
    }

    /// The wrapper command for [`crate::runner::RunOptions::wrapper`]: callgrind
    /// writing one file per thread, `<out>-01`, `<out>-02`, ...
    pub fn wrapper(&self, out: &Path) -> Vec<String> {
        // `env` and valgrind each exec the next, so the forwarder keeps the PID
        // the runner knows it by.
        let mut args = Vec::new();
        if let Some(seed) = self.hash_seed {
            args.push("env".to_owned());
            args.push(format!("VSWITCH_HASH_SEED={seed}"));
        }
        args.extend([
            "valgrind".to_owned(),
            "--tool=callgrind".to_owned(),
            "--separate-threads=yes".to_owned(),
            // valgrind runs one thread at a time; without fair scheduling the
            // busy-polling worker starves the main thread, which writes the stats
            // the runner waits for.
            "--fair-sched=yes".to_owned(),
            format!("--callgrind-out-file={}", out.display()),
        ]);
        if self.cache_sim {
            args.push("--cache-sim=yes".to_owned());
            args.push("--branch-sim=yes".to_owned());
            args.extend(self.cache_args.iter().cloned());
        }
        args
    }
}

/// `--I1=size,assoc,line`, `--D1=...` and `--LL=...` (the L2: the cache a core has
/// to itself, and the last that a forwarder pinned to a core can count on) from a
/// sysfs cache directory (`.../cpu0/cache`); whatever it cannot read is left to
/// valgrind's own detection, which on AMD VMs takes a 256 MiB direct-mapped cache
/// for the last level.
pub fn cache_args(sysfs: &Path) -> Vec<String> {
    let read = |dir: &Path, name: &str| -> Option<String> {
        Some(
            std::fs::read_to_string(dir.join(name))
                .ok()?
                .trim()
                .to_owned(),
        )
    };
    let mut args = Vec::new();
    for index in 0..8 {
        let dir = sysfs.join(format!("index{index}"));
        let (Some(level), Some(kind), Some(size), Some(ways), Some(line)) = (
            read(&dir, "level"),
            read(&dir, "type"),
            read(&dir, "size"),
            read(&dir, "ways_of_associativity"),
            read(&dir, "coherency_line_size"),
        ) else {
            continue;
        };
        let Some(bytes) = parse_size(&size) else {
            continue;
        };
        let flag = match (level.as_str(), kind.as_str()) {
            ("1", "Instruction") => "I1",
            ("1", "Data") => "D1",
            ("2", "Unified") => "LL",
            _ => continue,
        };
        args.push(format!("--{flag}={bytes},{ways},{line}"));
    }
    args
}

/// sysfs's cache sizes: `32K`, `512K`, `32768K`, `1M`.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => Some(n << 10),
        "M" => Some(n << 20),
        _ => None,
    }
}

/// One thread's totals from a callgrind output file.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadCost {
    /// The file.
    pub file: PathBuf,
    /// Callgrind's thread number (1 is the main thread).
    pub thread: u32,
    /// Each event's total, in the file's order.
    pub totals: Vec<(String, u64)>,
}

impl ThreadCost {
    /// The total of `event` (0 if not counted).
    pub fn total(&self, event: &str) -> u64 {
        self.totals
            .iter()
            .find(|(e, _)| e == event)
            .map_or(0, |&(_, n)| n)
    }
}

/// The thread number and the events' totals of a callgrind output file (its
/// `thread:`, `events:` and `summary:` or `totals:` lines).
pub fn parse_cost_file(text: &str) -> Option<(u32, Vec<(String, u64)>)> {
    let mut thread = 1;
    let mut events: Option<Vec<String>> = None;
    let mut totals: Option<Vec<u64>> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("thread:") {
            thread = rest.trim().parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("events:") {
            events = Some(rest.split_whitespace().map(str::to_owned).collect());
        } else if let Some(rest) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            totals = Some(
                rest.split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
            );
        }
    }
    let (events, totals) = (events?, totals?);
    if events.len() != totals.len() {
        return None;
    }
    Some((thread, events.into_iter().zip(totals).collect()))
}

/// The forwarding thread among the files `<out>-NN` that callgrind wrote with
/// `--separate-threads=yes`: the one with the most instructions other than the
/// main thread (callgrind's thread 1). Neither vswitchd nor testpmd forwards on
/// its main thread, and that thread's start-up (parsing a config of 1000 MACs in
/// a debug build, populating a mempool) can outweigh a short run's forwarding.
///
/// # Errors
/// No such file, or none that parses.
pub fn busiest_thread(out: &Path) -> anyhow::Result<ThreadCost> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let stem = out
        .file_name()
        .context("callgrind output has no file name")?
        .to_string_lossy()
        .into_owned();
    let mut best: Option<ThreadCost> = None;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(suffix) = name.as_deref().and_then(|n| n.strip_prefix(&stem)) else {
            continue;
        };
        if !suffix
            .strip_prefix('-')
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let Some((thread, totals)) = parse_cost_file(&text) else {
            continue;
        };
        if thread == 1 {
            continue;
        }
        let cost = ThreadCost {
            file: path,
            thread,
            totals,
        };
        let most = best.as_ref().map_or(0, |b| b.total("Ir"));
        if best.is_none() || cost.total("Ir") > most {
            best = Some(cost);
        }
    }
    best.with_context(|| {
        format!(
            "callgrind wrote no per-thread file {}-NN but the main thread's",
            out.display()
        )
    })
}

/// `callgrind_annotate --inclusive=no --show=Ir` output: each function's own
/// instructions, summed over the source files its lines came from (inlined code
/// is listed under the file it was written in), largest first.
pub fn parse_annotate(text: &str) -> Vec<(String, u64)> {
    let mut by_function: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_end().ends_with("file:function") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if line.starts_with("----") || line.starts_with("-- ") {
            // The end of the function table (auto-annotation follows).
            if !by_function.is_empty() {
                break;
            }
            continue;
        }
        let trimmed = line.trim_start();
        let Some((count, rest)) = trimmed.split_once(' ') else {
            continue;
        };
        let Ok(n) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        // "(12.34%)  file:function [object]"
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('(') {
            Some(r) => r.split_once(')').map_or(r, |(_, after)| after).trim_start(),
            None => rest,
        };
        let (rest, object) = match rest.rfind(" [") {
            Some(i) if rest.ends_with(']') => (&rest[..i], &rest[i + 2..rest.len() - 1]),
            _ => (rest, ""),
        };
        // Source paths have no colon; function names (`a::b`) do.
        let function = rest.split_once(':').map_or(rest, |(_, f)| f);
        // A library without symbols (Debian's PMDs) shows only addresses: name
        // the library.
        let function = match object.rsplit('/').next() {
            Some(lib) if function.starts_with("0x") && !lib.is_empty() => {
                format!("{function} in {lib}")
            }
            _ => function.to_owned(),
        };
        *by_function.entry(function).or_default() += n;
    }
    let mut list: Vec<(String, u64)> = by_function.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list
}

/// The functions of `file` by their own instructions (see [`parse_annotate`]).
///
/// # Errors
/// `callgrind_annotate` missing or failing.
pub fn functions(file: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let out = Command::new("callgrind_annotate")
        .args([
            "--inclusive=no",
            "--show=Ir",
            "--threshold=100",
            "--auto=no",
        ])
        .arg(file)
        .output()
        .context("cannot run callgrind_annotate (part of valgrind)")?;
    if !out.status.success() {
        bail!(
            "callgrind_annotate {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_annotate(&String::from_utf8_lossy(&out.stdout)))
}

/// One forwarder's counts on a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    /// `vswitchd` or `testpmd-io`.
    pub forwarder: String,
    /// Packets sent on `sink` over the whole run.
    pub packets: u64,
    /// The forwarding thread's totals.
    pub thread: ThreadCost,
    /// Its functions by own instructions, largest first.
    pub functions: Vec<(String, u64)>,
}

impl Count {
    /// What a longer run (`self`) counted beyond a shorter one (`shorter`) of
    /// the same forwarder: every event's and every function's difference, over
    /// the packets in between. What both runs spend alike (start-up, learning,
    /// shutdown) cancels out. `None` when the longer run forwarded no more
    /// packets.
    pub fn minus(&self, shorter: &Count) -> Option<Count> {
        let packets = self
            .packets
            .checked_sub(shorter.packets)
            .filter(|&n| n > 0)?;
        let totals = self
            .thread
            .totals
            .iter()
            .map(|(e, n)| (e.clone(), n.saturating_sub(shorter.thread.total(e))))
            .collect();
        let before: BTreeMap<&str, u64> = shorter
            .functions
            .iter()
            .map(|(f, n)| (f.as_str(), *n))
            .collect();
        let mut functions: Vec<(String, u64)> = self
            .functions
            .iter()
            .map(|(f, n)| {
                (
                    f.clone(),
                    n.saturating_sub(before.get(f.as_str()).copied().unwrap_or(0)),
                )
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        functions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Some(Count {
            forwarder: self.forwarder.clone(),
            packets,
            thread: ThreadCost {
                totals,
                ..self.thread.clone()
            },
            functions,
        })
    }

    /// `event` per packet (0 without packets).
    pub fn per_packet(&self, event: &str) -> f64 {
        if self.packets == 0 {
            return 0.0;
        }
        self.thread.total(event) as f64 / self.packets as f64
    }

    fn events_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.thread
            .totals
            .iter()
            .map(|(e, _)| (e.clone(), json!(round(self.per_packet(e), 3))))
            .collect()
    }

    fn functions_json(&self, top: usize) -> serde_json::Value {
        self.functions
            .iter()
            .take(top)
            .map(|(f, n)| json!({"function": f, "Ir": round(*n as f64 / self.packets.max(1) as f64, 3)}))
            .collect()
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// One scenario's counts: vswitchd and, unless left out, testpmd io and OVS-DPDK.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Frame size setting.
    pub frame_size: String,
    /// Flow count.
    pub flows: u32,
    /// `valgrind --version`.
    pub valgrind: String,
    /// vswitchd's `VSWITCH_HASH_SEED`, if fixed.
    pub hash_seed: Option<u64>,
    /// vswitchd's counts.
    pub vswitch: Count,
    /// testpmd io's counts (the floor), if run.
    pub testpmd: Option<Count>,
    /// OVS-DPDK's counts (its PMD thread), or why there are none (`--no-ovs`,
    /// not installed, failed).
    pub ovs: Result<Count, String>,
    /// How many functions to list.
    pub top: usize,
}

impl Report {
    /// vswitchd's instructions per packet over testpmd io's.
    pub fn ratio_vs_floor(&self) -> Option<f64> {
        let t = self.testpmd.as_ref()?.per_packet("Ir");
        (t > 0.0).then(|| self.vswitch.per_packet("Ir") / t)
    }

    /// OVS-DPDK's instructions per packet over vswitchd's: above 1, vswitchd
    /// executes fewer (the direction of `compare`'s `ratio_vs_ovs`).
    pub fn ratio_vs_ovs(&self) -> Option<f64> {
        let ours = self.vswitch.per_packet("Ir");
        let ovs = self.ovs.as_ref().ok()?.per_packet("Ir");
        (ours > 0.0).then(|| ovs / ours)
    }

    /// One JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let frame_size: serde_json::Value = self
            .frame_size
            .parse::<u64>()
            .map_or_else(|_| json!(self.frame_size), |n| json!(n));
        let testpmd = self.testpmd.as_ref();
        let ovs = self.ovs.as_ref().ok();
        json!({
            "scenario": self.scenario,
            "frame_size": frame_size,
            "flows": self.flows,
            "tool": "callgrind",
            "valgrind": self.valgrind,
            "hash_seed": self.hash_seed,
            "packets": {
                "vswitch": self.vswitch.packets,
                "testpmd": testpmd.map(|c| c.packets),
                "ovs": ovs.map(|c| c.packets),
            },
            "per_packet": {
                "vswitch": self.vswitch.events_json(),
                "testpmd": testpmd.map(Count::events_json),
                "ovs": ovs.map(Count::events_json),
            },
            "ratio_vs_floor": self.ratio_vs_floor().map(|r| round(r, 3)),
            "ratio_vs_ovs": self.ratio_vs_ovs().map(|r| round(r, 3)),
            "ovs_skipped": self.ovs.as_ref().err(),
            "functions": {
                "vswitch": self.vswitch.functions_json(self.top),
                "testpmd": testpmd.map(|c| c.functions_json(self.top)),
                "ovs": ovs.map(|c| c.functions_json(self.top)),
            },
        })
    }

    /// A table of the events per packet, then each forwarder's top functions.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let seed = self
            .hash_seed
            .map_or_else(|| "random hash".to_owned(), |n| format!("hash seed {n}"));
        let _ = writeln!(
            s,
            "per packet under callgrind | scenario {} | size {} | {} flow(s) | {} | {seed}",
            self.scenario, self.frame_size, self.flows, self.valgrind
        );
        let counts: Vec<&Count> = std::iter::once(&self.vswitch)
            .chain(self.testpmd.as_ref())
            .chain(self.ovs.as_ref().ok())
            .collect();
        // vswitchd's figure less testpmd io's, when both are there.
        let floor = self.testpmd.as_ref();
        let _ = write!(s, "  {:<30}", "");
        for c in &counts {
            let _ = write!(s, "{:>14}", c.forwarder);
        }
        if floor.is_some() {
            let _ = write!(s, "{:>16}", "vs - testpmd");
        }
        let _ = writeln!(s);
        let _ = write!(s, "  {:<30}", "packets");
        for c in &counts {
            let _ = write!(s, "{:>14}", c.packets);
        }
        let _ = writeln!(s);
        for (event, meaning) in EVENTS {
            if !self.vswitch.thread.totals.iter().any(|(e, _)| e == event) {
                continue;
            }
            let _ = write!(s, "  {:<30}", format!("{meaning} ({event})"));
            for c in &counts {
                let _ = write!(s, "{:>14.2}", c.per_packet(event));
            }
            if let Some(t) = floor {
                let d = self.vswitch.per_packet(event) - t.per_packet(event);
                let _ = write!(s, "{d:>+16.2}");
            }
            let _ = writeln!(s);
        }
        if let Some(r) = self.ratio_vs_floor() {
            let _ = writeln!(s, "  instructions over testpmd io's: {r:.3}");
        }
        match (&self.ovs, self.ratio_vs_ovs()) {
            (Ok(_), Some(r)) => {
                let _ = writeln!(s, "  OVS-DPDK's instructions over vswitchd's: {r:.3}");
            }
            (Err(why), _) => {
                let _ = writeln!(s, "  OVS-DPDK not counted: {why}");
            }
            _ => {}
        }
        for c in &counts {
            let _ = writeln!(
                s,
                "  {}: instructions per packet by function (own, inlined code included)",
                c.forwarder
            );
            for (f, n) in c.functions.iter().take(self.top) {
                let _ = writeln!(s, "    {:>9.2}  {f}", *n as f64 / c.packets.max(1) as f64);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COST_FILE: &str = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\n\
        pid: 32352\ncmd:  vswitchd --config x\npart: 1\nthread: 4\n\n\
        positions: line\nevents: Ir Dr Bc Bcm\nsummary: 1000 300 90 5\n\nfl=(1)\n\
        fn=(1) main\n16 1000 300 90 5\n\ntotals: 1000 300 90 5\n";

    #[test]
    fn a_cost_file_gives_its_thread_and_totals() {
        let (thread, totals) = parse_cost_file(COST_FILE).unwrap();
        assert_eq!(thread, 4);
        assert_eq!(
            totals,
            vec![
                ("Ir".to_owned(), 1000),
                ("Dr".to_owned(), 300),
                ("Bc".to_owned(), 90),
                ("Bcm".to_owned(), 5)
            ]
        );
        assert_eq!(parse_cost_file("events: Ir Dr\nsummary: 1\n"), None);
        assert_eq!(parse_cost_file("summary: 1\n"), None);
    }

    #[test]
    fn the_busiest_of_the_per_thread_files_is_chosen() {
        let dir = std::env::temp_dir().join(format!("cg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("vswitchd.callgrind");
        std::fs::write(&out, "").unwrap();
        std::fs::write(
            dir.join("vswitchd.callgrind-01"),
            // The main thread, the busiest here (start-up): not the forwarding one.
            "thread: 1\nevents: Ir\nsummary: 50000\n",
        )
        .unwrap();
        std::fs::write(dir.join("vswitchd.callgrind-02"), COST_FILE).unwrap();
        std::fs::write(
            dir.join("vswitchd.callgrind-03"),
            "thread: 3\nevents: Ir\nsummary: 7\n",
        )
        .unwrap();
        // Another forwarder's files beside them are not this one's threads.
        std::fs::write(
            dir.join("testpmd.callgrind-01"),
            "thread: 1\nevents: Ir\nsummary: 9999\n",
        )
        .unwrap();
        let best = busiest_thread(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(best.thread, 4);
        assert_eq!(best.total("Ir"), 1000);
        assert_eq!(best.total("D1mr"), 0);
    }

    #[test]
    fn annotate_output_is_summed_by_function() {
        // As callgrind_annotate 3.19 prints it (paths shortened).
        let text = "\
--------------------------------------------------------------------------------
Ir                      
--------------------------------------------------------------------------------
42,614,585,338 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                       file:function
--------------------------------------------------------------------------------
18,742,098,298 (43.98%)  ???:eth_pcap_rx_infinite [/t/vswitchd]
 1,826,883,867 ( 4.29%)  /w/dataplane/src/l2.rs:dataplane::l2::L2Ingress::classify_burst [/t/vswitchd]
 1,694,574,729 ( 3.98%)  /w/dataplane/src/densemap.rs:dataplane::l2::L2Ingress::classify_burst
   897,689,613 ( 2.11%)  /w/dataplane/src/worker.rs:std::sys::backtrace::__rust_begin_short_backtrace
   700,000,000 ( 1.00%)  ???:0x0000000000003f70 [/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_net_pcap.so.23.0]

--------------------------------------------------------------------------------
-- Auto-annotated source: /w/dataplane/src/l2.rs
--------------------------------------------------------------------------------
 1,000 ( 0.01%)  let x = 1;
";
        assert_eq!(
            parse_annotate(text),
            vec![
                ("eth_pcap_rx_infinite".to_owned(), 18_742_098_298),
                (
                    "dataplane::l2::L2Ingress::classify_burst".to_owned(),
                    1_826_883_867 + 1_694_574_729
                ),
                (
                    "std::sys::backtrace::__rust_begin_short_backtrace".to_owned(),
                    897_689_613
                ),
                (
                    "0x0000000000003f70 in librte_net_pcap.so.23.0".to_owned(),
                    700_000_000
                ),
            ]
        );
    }

    #[test]
    fn sysfs_cache_geometry_becomes_valgrind_flags() {
        let dir = std::env::temp_dir().join(format!("cg-sysfs-{}", std::process::id()));
        for (i, level, kind, size, ways) in [
            (0, "1", "Data", "32K", "8"),
            (1, "1", "Instruction", "32K", "8"),
            (2, "2", "Unified", "512K", "8"),
            (3, "3", "Unified", "32768K", "16"),
        ] {
            let d = dir.join(format!("index{i}"));
            std::fs::create_dir_all(&d).unwrap();
            for (name, value) in [
                ("level", level),
                ("type", kind),
                ("size", size),
                ("ways_of_associativity", ways),
                ("coherency_line_size", "64"),
            ] {
                std::fs::write(d.join(name), format!("{value}\n")).unwrap();
            }
        }
        let args = cache_args(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            args,
            ["--D1=32768,8,64", "--I1=32768,8,64", "--LL=524288,8,64"]
        );
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("3G"), None);
    }

    #[test]
    fn the_wrapper_fixes_the_hash_seed_before_valgrind() {
        let cg = |cache_sim, hash_seed| Callgrind {
            version: "valgrind-3.19.0".to_owned(),
            cache_sim,
            cache_args: vec!["--D1=32768,8,64".to_owned()],
            hash_seed,
        };
        let out = Path::new("/tmp/x/vswitchd.callgrind");
        let w = cg(false, Some(7)).wrapper(out);
        assert_eq!(
            &w[..4],
            ["env", "VSWITCH_HASH_SEED=7", "valgrind", "--tool=callgrind"]
        );
        assert!(w.contains(&"--callgrind-out-file=/tmp/x/vswitchd.callgrind".to_owned()));
        assert!(!w.iter().any(|a| a.starts_with("--cache-sim")));
        let w = cg(true, None).wrapper(out);
        assert_eq!(w[0], "valgrind");
        for want in ["--cache-sim=yes", "--branch-sim=yes", "--D1=32768,8,64"] {
            assert!(w.contains(&want.to_owned()), "{w:?}");
        }
    }

    #[test]
    fn per_packet_figures_and_the_ratio() {
        let count = |name: &str, packets, ir| Count {
            forwarder: name.to_owned(),
            packets,
            thread: ThreadCost {
                file: PathBuf::new(),
                thread: 2,
                totals: vec![("Ir".to_owned(), ir)],
            },
            functions: vec![("f".to_owned(), ir / 2)],
        };
        let report = Report {
            scenario: "l2".to_owned(),
            frame_size: "64".to_owned(),
            flows: 1000,
            valgrind: "valgrind-3.19.0".to_owned(),
            hash_seed: Some(1),
            vswitch: count("vswitchd", 100, 26_000),
            testpmd: Some(count("testpmd-io", 50, 10_000)),
            ovs: Ok(count("ovs-dpdk", 10, 13_000)),
            top: 5,
        };
        assert_eq!(report.vswitch.per_packet("Ir"), 260.0);
        assert_eq!(report.ratio_vs_floor(), Some(1.3));
        assert_eq!(report.ratio_vs_ovs(), Some(5.0));
        let doc = report.to_json();
        assert_eq!(doc["frame_size"], 64);
        assert_eq!(doc["per_packet"]["testpmd"]["Ir"], 200.0);
        assert_eq!(doc["per_packet"]["ovs"]["Ir"], 1300.0);
        assert_eq!(doc["functions"]["vswitch"][0]["Ir"], 130.0);
        assert_eq!(doc["ratio_vs_ovs"], 5.0);
        assert!(doc["ovs_skipped"].is_null());
        let text = report.to_text();
        assert!(text.contains("instructions (Ir)"), "{text}");
        assert!(text.contains("+60.00"), "{text}");
        assert!(
            text.contains("OVS-DPDK's instructions over vswitchd's: 5.000"),
            "{text}"
        );

        // A long run less a short one: the difference over the packets between.
        let long = count("ovs-dpdk", 110, 113_000);
        let short = count("ovs-dpdk", 10, 13_000);
        let marginal = long.minus(&short).unwrap();
        assert_eq!(marginal.packets, 100);
        assert_eq!(marginal.per_packet("Ir"), 1000.0);
        assert_eq!(marginal.functions, vec![("f".to_owned(), 50_000)]);
        assert!(short.minus(&long).is_none() && short.minus(&short).is_none());

        // Without OVS: its figures are null and the report says why.
        let skipped = Report {
            ovs: Err("skipped: OVS-DPDK not installed: make bench-deps".to_owned()),
            ..report
        };
        assert_eq!(skipped.ratio_vs_ovs(), None);
        let doc = skipped.to_json();
        assert!(doc["per_packet"]["ovs"].is_null());
        assert!(doc["ratio_vs_ovs"].is_null());
        assert_eq!(
            doc["ovs_skipped"],
            "skipped: OVS-DPDK not installed: make bench-deps"
        );
        assert!(skipped.to_text().contains("OVS-DPDK not counted: skipped"));
    }
}
