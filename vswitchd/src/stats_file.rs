//! The counters document `vswitchd` writes to `dataplane.stats_file`.
//!
//! Until the gRPC service exists this file is how operators, `make demo` and the
//! system tests read the switch's counters. It is replaced atomically (write to a
//! temporary file, then rename), so a reader never sees half a document.

use std::path::Path;

use dataplane::{StatsSnapshot, StatsTotals};
use serde::Serialize;

/// One port's line.
#[derive(Serialize)]
pub struct PortDoc {
    /// Port name.
    pub name: String,
    /// DPDK driver.
    pub driver: String,
    /// Packets the switch received on the port.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets the port accepted for transmission.
    pub tx_packets: u64,
    /// Bytes accepted for transmission.
    pub tx_bytes: u64,
    /// Packets dropped that are charged to this port (any reason).
    pub dropped: u64,
    /// Link state.
    pub link_up: bool,
    /// False for a port of the desired state whose device could not be opened
    /// (gone while the switch was down): listed with zero counters until it
    /// plugs.
    pub plugged: bool,
    /// Why it is not plugged; absent for a plugged port.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub not_plugged: String,
    /// DPDK's own counters for the port.
    pub dpdk: DpdkDoc,
}

/// DPDK's `rte_eth_stats` for a port.
#[derive(Serialize, Default)]
pub struct DpdkDoc {
    /// Received packets.
    pub ipackets: u64,
    /// Transmitted packets.
    pub opackets: u64,
    /// Received bytes.
    pub ibytes: u64,
    /// Transmitted bytes.
    pub obytes: u64,
    /// Packets the NIC dropped because the rx ring was full.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// One worker's line.
#[derive(Serialize)]
pub struct WorkerDoc {
    /// Worker index.
    pub index: usize,
    /// The CPU it is pinned to.
    pub core: usize,
    /// Packets it received.
    pub rx_packets: u64,
    /// Packets it transmitted.
    pub tx_packets: u64,
    /// Poll rounds with packets.
    pub busy_rounds: u64,
    /// Poll rounds without.
    pub idle_rounds: u64,
    /// Nanoseconds busy.
    pub busy_ns: u64,
    /// Nanoseconds idle, sleeps included.
    pub idle_ns: u64,
    /// Snapshot generation it runs.
    pub generation: u64,
    /// Tx bursts on a queue shared with other workers that found it held.
    pub tx_lock_contended: u64,
    /// Its flow table's counters.
    pub flow_table: FlowTableDoc,
}

/// A worker's flow table counters.
#[derive(Serialize)]
pub struct FlowTableDoc {
    /// Packets whose flow was found.
    pub hits: u64,
    /// Packets whose flow was looked up and not found (or found stale).
    pub misses: u64,
    /// Entries written.
    pub installs: u64,
    /// Entries evicted from a full bucket.
    pub evictions: u64,
    /// Misses not installed: admission throttled by a low hit rate.
    pub skipped_installs: u64,
    /// Packets that skipped the table for the stages while admission was
    /// throttled (all but one burst in 16).
    pub bypassed: u64,
    /// Entries found still valid after a snapshot swap.
    pub revalidations: u64,
    /// Entries held.
    pub entries: u64,
    /// Entries it can hold.
    pub capacity: u64,
}

/// The whole document.
#[derive(Serialize)]
pub struct StatsDoc {
    /// Seconds since the dataplane started.
    pub uptime_s: f64,
    /// Packets the switch made itself (ARP/ND requests, ICMP errors).
    pub generated: u64,
    /// The pipeline snapshot generation published.
    pub generation: u64,
    /// Packet buffers in use (held by ports, queues and workers).
    pub mbufs_in_use: u64,
    /// Ports in index order, then the ports that are not plugged.
    pub ports: Vec<PortDoc>,
    /// Drops over all workers and ports, by reason (every reason listed, zeros too).
    pub drops: serde_json::Map<String, serde_json::Value>,
    /// Workers.
    pub workers: Vec<WorkerDoc>,
}

/// Drop counters by reason name.
pub fn drops_doc(totals: &StatsTotals) -> serde_json::Map<String, serde_json::Value> {
    totals
        .drops_by_reason()
        .map(|(r, n)| (r.as_str().to_owned(), n.into()))
        .collect()
}

/// A worker's line from its snapshot.
pub fn worker_doc(index: usize, core: usize, s: &StatsSnapshot) -> WorkerDoc {
    WorkerDoc {
        index,
        core,
        rx_packets: s.rx_packets(),
        tx_packets: s.tx_packets(),
        busy_rounds: s.busy_polls,
        idle_rounds: s.idle_polls,
        busy_ns: s.busy_ns,
        idle_ns: s.idle_ns,
        generation: s.snapshot_generation,
        tx_lock_contended: s.tx_lock_contended,
        flow_table: FlowTableDoc {
            hits: s.flows.hits,
            misses: s.flows.misses,
            installs: s.flows.installs,
            evictions: s.flows.evictions,
            skipped_installs: s.flows.skipped_installs,
            bypassed: s.flows.bypassed,
            revalidations: s.flows.revalidations,
            entries: s.flows.entries,
            capacity: s.flows.capacity,
        },
    }
}

/// Writes `doc` to `path` atomically.
///
/// # Errors
/// I/O errors, with the path.
pub fn write(path: &Path, doc: &StatsDoc) -> anyhow::Result<()> {
    use anyhow::Context;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(doc)?;
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}
