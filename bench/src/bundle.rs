//! A scenario on disk: the traffic, a complete vswitchd configuration, the
//! OVS rules and a JSON descriptor, all in one directory.
//!
//! | file | content |
//! |---|---|
//! | `traffic.pcap` | the frames `replay` sends |
//! | `vswitchd.toml` | `[eal]`, `[dataplane]` (one busy-polling worker), ports `replay` (pcap, `infinite_rx`) and `sink` (null), then the scenario's sections |
//! | `ovs-flows.txt` | `ovs-ofctl add-flows br0` input; ports 1 = replay, 2 = sink, 3 = tunnel |
//! | `scenario.json` | name, size, flows, packets, description, OVS setup |

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;

use crate::scenario::{write_pcap, FrameSize, Scenario, IMIX_PATTERN};

/// File names inside a bundle directory.
pub const PCAP_FILE: &str = "traffic.pcap";
/// vswitchd configuration.
pub const VSWITCHD_FILE: &str = "vswitchd.toml";
/// OVS flows.
pub const OVS_FLOWS_FILE: &str = "ovs-flows.txt";
/// Descriptor.
pub const DESCRIPTOR_FILE: &str = "scenario.json";
/// vswitchd's stats file (written by vswitchd when it runs).
pub const STATS_FILE: &str = "stats.json";

/// Mbufs the pool needs besides one per replayed frame (rings, caches).
const MBUF_HEADROOM: u64 = 16_384;
/// Bytes of memory per mbuf, generously (2 KiB data room, headroom, header).
const MBUF_BYTES: u64 = 2_560;

/// Run-time settings written into the vswitchd configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    /// CPU of the one worker.
    pub core: usize,
    /// CPU of the main thread.
    pub main_core: usize,
    /// EAL memory from hugepages (`--in-memory`) rather than 4 KiB pages.
    pub hugepages: bool,
    /// The worker's `idle_sleep_max_us`: 0 (busy-poll, as measured) unless
    /// the rounds it turns before its ports arrive must not spin (an
    /// instruction count: [`crate::callgrind`]). With the pcap replay it is never
    /// idle once forwarding, so the forwarding rounds are the same either way.
    pub idle_sleep_max_us: u64,
    /// The worker's `flow_table_entries`, when not vswitchd's default (left
    /// out otherwise: a build from before the flow table refuses the key).
    pub flow_table_entries: Option<u64>,
    /// Track the connections of the scenario's networks (`conntrack = true`
    /// on each; scenarios without a network are unchanged).
    pub conntrack: bool,
}

impl RunSettings {
    /// Worker on `core`, main thread on CPU 0 (or 1 if the worker is on 0).
    pub fn on_core(core: usize) -> Self {
        Self {
            core,
            main_core: usize::from(core == 0),
            hugepages: false,
            idle_sleep_max_us: 0,
            flow_table_entries: None,
            conntrack: false,
        }
    }
}

impl Default for RunSettings {
    fn default() -> Self {
        Self::on_core(1)
    }
}

/// Default number of frames in a bundle's pcap: every flow at least once,
/// at least 4096 frames, and a whole number of IMIX cycles.
pub fn default_packets(flows: u32) -> u64 {
    let n = u64::from(flows).max(4096);
    let cycle = IMIX_PATTERN.len() as u64;
    n.div_ceil(cycle) * cycle
}

/// Mbufs for a pool that holds `packets` replayed frames (net_pcap's
/// `infinite_rx` keeps the whole file in mbufs) plus the working set.
pub fn mbufs_for(packets: u64) -> u64 {
    (packets + MBUF_HEADROOM).max(16_383)
}

/// EAL memory (MiB) for `mbufs` mbufs.
pub fn memory_mb_for(mbufs: u64) -> u64 {
    (mbufs * MBUF_BYTES).div_ceil(1 << 20) + 512
}

/// Paths of a written bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The directory.
    pub dir: PathBuf,
    /// Frames in the pcap.
    pub packets: u64,
}

impl Bundle {
    /// `dir/traffic.pcap`.
    pub fn pcap(&self) -> PathBuf {
        self.dir.join(PCAP_FILE)
    }
    /// `dir/vswitchd.toml`.
    pub fn vswitchd_config(&self) -> PathBuf {
        self.dir.join(VSWITCHD_FILE)
    }
    /// `dir/stats.json`.
    pub fn stats_file(&self) -> PathBuf {
        self.dir.join(STATS_FILE)
    }
}

/// Writes all four files of `scenario` into `dir` (created if missing).
///
/// # Errors
/// I/O errors, naming the file.
pub fn write_bundle(
    scenario: &dyn Scenario,
    packets: u64,
    dir: &Path,
    settings: &RunSettings,
    extra_json: serde_json::Value,
) -> anyhow::Result<Bundle> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Absolute paths: vswitchd and testpmd may run from anywhere.
    let dir =
        std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let bundle = Bundle { dir, packets };
    write_file(&bundle.pcap(), |out| {
        write_pcap(scenario, packets, out)?;
        Ok(())
    })?;
    write_file(&bundle.vswitchd_config(), |out| {
        write_vswitchd_config(scenario, &bundle, settings, out)?;
        Ok(())
    })?;
    write_file(&bundle.dir.join(OVS_FLOWS_FILE), |out| {
        writeln!(
            out,
            "# {}: ovs-ofctl add-flows br0 <this file>; ports 1 = replay, 2 = sink{}",
            scenario.name(),
            if scenario.ovs_setup().tunnel.is_some() {
                ", 3 = tun0"
            } else {
                ""
            }
        )?;
        scenario.write_ovs_flows(out)?;
        Ok(())
    })?;
    let mut descriptor = descriptor(scenario, packets);
    if let (Some(map), serde_json::Value::Object(extra)) = (descriptor.as_object_mut(), extra_json)
    {
        map.extend(extra);
    }
    write_file(&bundle.dir.join(DESCRIPTOR_FILE), |out| {
        serde_json::to_writer_pretty(&mut *out, &descriptor)?;
        writeln!(out)?;
        Ok(())
    })?;
    Ok(bundle)
}

/// The `scenario.json` document.
pub fn descriptor(scenario: &dyn Scenario, packets: u64) -> serde_json::Value {
    let setup = scenario.ovs_setup();
    let tunnel = setup.tunnel.as_ref().map(|t| {
        json!({
            "name": t.name,
            "type": t.kind,
            "ofport": t.ofport,
            "options": t.options.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    });
    json!({
        "name": scenario.name(),
        "frame_size": scenario.size().to_string(),
        "flows": scenario.flow_count(),
        "packets": packets,
        "description": scenario.description(),
        "files": {
            "pcap": PCAP_FILE,
            "vswitchd": VSWITCHD_FILE,
            "ovs_flows": OVS_FLOWS_FILE,
        },
        "ports": {
            "replay": {"ofport": 1, "vswitchd": "pcap rx_pcap=traffic.pcap infinite_rx", "dpdk": "net_pcap,rx_pcap=<pcap>,infinite_rx=1"},
            "sink": {"ofport": 2, "vswitchd": "null (no rx)", "dpdk": "net_null,no-rx=1"},
        },
        "ovs": {
            "bridge": "br0",
            "datapath_type": "netdev",
            "tunnel": tunnel,
            "local_ip": setup.local_ip,
            "bridge_mac": setup.bridge_mac,
            "commands": setup.commands,
            "notes": setup.notes,
        },
    })
}

/// Writes the complete vswitchd configuration for `scenario` in `bundle`.
///
/// # Errors
/// Any error from `out`.
pub fn write_vswitchd_config(
    scenario: &dyn Scenario,
    bundle: &Bundle,
    settings: &RunSettings,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mbufs = mbufs_for(bundle.packets);
    writeln!(
        out,
        "# vswitch-bench scenario {name}: {flows} flow(s), size {size}, {packets} frames.\n\
         # Bench topology: replay (net_pcap, infinite_rx) -> sink (net_null).\n\n\
         [eal]\nin_memory = true\nhugepages = {huge}\nmemory_mb = {memory}\nmain_core = {main}\n\n\
         [dataplane]\nworkers = [{core}]\nidle_sleep_max_us = {idle}\nmbufs = {mbufs}\n\
         stats_file = {stats}\nstats_interval_ms = 1000\n{flows_line}\n\
         [[port]]\nname = \"replay\"\nprofile = \"pcap\"\nrx_pcap = {pcap}\ninfinite_rx = true\n\n\
         [[port]]\nname = \"sink\"\nprofile = \"null\"\n",
        name = scenario.name(),
        flows = scenario.flow_count(),
        size = scenario.size(),
        packets = bundle.packets,
        memory = memory_mb_for(mbufs),
        huge = settings.hugepages,
        main = settings.main_core,
        core = settings.core,
        idle = settings.idle_sleep_max_us,
        stats = toml_string(&bundle.stats_file()),
        pcap = toml_string(&bundle.pcap()),
        flows_line = settings
            .flow_table_entries
            .map(|n| format!("flow_table_entries = {n}\n"))
            .unwrap_or_default(),
    )?;
    if !settings.conntrack {
        return scenario.write_vswitchd_sections(out);
    }
    let mut sections = Vec::new();
    scenario.write_vswitchd_sections(&mut sections)?;
    let sections = String::from_utf8_lossy(&sections)
        .replace("[[network]]\n", "[[network]]\nconntrack = true\n");
    out.write_all(sections.as_bytes())
}

/// A path as a TOML basic string.
fn toml_string(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Mean bytes on the wire per frame of `size` as sent by `replay` with
/// `extra` bytes of encapsulation: frame + FCS + 20 bytes of preamble, SFD
/// and inter-frame gap.
pub fn mean_wire_bytes(size: FrameSize, extra: usize) -> f64 {
    let nominal = match size {
        FrameSize::Fixed(n) => f64::from(n),
        FrameSize::Imix => {
            IMIX_PATTERN.iter().map(|&n| f64::from(n)).sum::<f64>() / IMIX_PATTERN.len() as f64
        }
    };
    nominal + extra as f64 + 20.0
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    write(&mut out)
        .and_then(|()| Ok(out.flush()?))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing() {
        assert_eq!(default_packets(1), 4104);
        assert_eq!(default_packets(100_000), 100_008);
        assert_eq!(mbufs_for(4104), 20_488);
        assert!(memory_mb_for(mbufs_for(100_008)) < 1024);
        assert_eq!(mean_wire_bytes(FrameSize::Fixed(64), 0), 84.0);
        assert_eq!(toml_string(Path::new("/a\"b\\c")), "\"/a\\\"b\\\\c\"");
    }
}
