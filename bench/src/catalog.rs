//! The scenario catalogue: every scenario's traffic, vswitchd configuration and
//! OVS-DPDK rules and bridge setup, as Markdown (`vswitch-bench scenarios`,
//! `bench/SCENARIOS.md`).
//!
//! A perf engineer judging a ratio has to see that both switches were given
//! the same job, without reading the generators. So the catalogue is written by
//! the same code that writes each run's bundle, never by hand, and a test
//! (`bench/tests/cli.rs`) fails when the committed file differs from what this
//! build writes.

use std::io::{self, Write};

use crate::scenario::Scenario;

/// Bytes of each frame shown: the headers. A plain frame's Ethernet, IPv4 and
/// UDP headers are 42 bytes; a tunnelled one carries 50 more in front.
const PLAIN_HEADERS: usize = 42;

/// Frames shown per scenario: with two flows, one frame of each, so the
/// per-flow pattern is visible.
const FRAMES_SHOWN: u64 = 2;

/// Writes the catalogue of `scenarios`. `command` is the command line that
/// regenerates it, quoted in the text.
///
/// # Errors
/// Any error from `out`.
pub fn write_catalog(
    scenarios: &[Box<dyn Scenario>],
    command: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(out, "# Benchmark scenarios\n")?;
    writeln!(
        out,
        "<!-- Written by `{command}`; do not edit by hand: a test fails when this file \
         differs from what the build writes. -->\n"
    )?;
    writeln!(
        out,
        "What `vswitch-bench` gives each forwarder for every scenario: the traffic, \
         vswitchd's configuration and the OpenFlow rules and bridge setup that make \
         OVS-DPDK do the same job. Each section is written by the same code that \
         writes a run's bundle (`vswitch-bench gen <scenario> --out-dir DIR`: \
         `traffic.pcap`, `vswitchd.toml`, `ovs-flows.txt`, `scenario.json`), here \
         for {flows} flows of {size}-byte frames so that the per-flow pattern shows; \
         `--flows N` repeats it N times.\n",
        flows = scenarios.first().map_or(0, |s| s.flow_count()),
        size = scenarios
            .first()
            .map_or_else(String::new, |s| s.size().to_string()),
    )?;
    writeln!(
        out,
        "**Topology, the same for all three forwarders.** Two DPDK ports: `replay` \
         (`net_pcap`, `rx_pcap=traffic.pcap`, `infinite_rx=1`: the capture replayed \
         from memory forever) and `sink` (`net_null`, `no-rx=1`). One forwarding \
         core (`--core`, default CPU 1), the main thread on the other. vswitchd runs \
         one busy-polling worker; `dpdk-testpmd --forward-mode=io` (the I/O floor) \
         forwards `replay` to `sink` without touching a frame.\n"
    )?;
    writeln!(
        out,
        "**OVS-DPDK's configuration** (`bench/scripts/ovs_dpdk.py`, Debian's \
         `openvswitch-switch-dpdk`, private `ovsdb-server` and `ovs-vswitchd`): a \
         netdev bridge `br0` with `replay` as OpenFlow port 1 and `sink` as port 2 \
         (a tunnel port, when the scenario has one, is port 3); one PMD thread on \
         the forwarding core; every datapath cache on (EMC, SMC with \
         `other_config:smc-enable=true`, the megaflow classifier); one shared \
         mempool; `fail-mode=secure`, so only the rules below ever run (no \
         `NORMAL`); the datapath flushed after the rules are installed; measured \
         only once its PMD has stopped sending packets to the slow path.\n"
    )?;
    for scenario in scenarios {
        write_scenario(scenario.as_ref(), out)?;
    }
    Ok(())
}

fn write_scenario(scenario: &dyn Scenario, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "## `{}`\n", scenario.name())?;
    writeln!(out, "{}\n", scenario.description())?;

    writeln!(out, "### Traffic\n")?;
    let overhead = scenario.overhead();
    let shown = PLAIN_HEADERS + overhead.replay;
    writeln!(
        out,
        "The capture's first frames, their first {shown} bytes (the headers; frame `i` \
         belongs to flow `i mod flows`){}:\n",
        if overhead.replay > 0 {
            format!(
                "; each frame is {} bytes longer than its nominal size on `replay`",
                overhead.replay
            )
        } else {
            String::new()
        }
    )?;
    writeln!(out, "```text")?;
    let mut frame = Vec::new();
    for index in 0..FRAMES_SHOWN.min(u64::from(scenario.flow_count()).max(1)) {
        scenario.emit_frame(index, &mut frame);
        writeln!(out, "frame {index}, {} bytes:", frame.len())?;
        write_hex(&frame[..shown.min(frame.len())], out)?;
    }
    writeln!(out, "```\n")?;

    writeln!(out, "### vswitchd\n")?;
    writeln!(
        out,
        "Besides `[eal]`, `[dataplane]` and the ports `replay` and `sink`:\n"
    )?;
    writeln!(out, "```toml")?;
    scenario.write_vswitchd_sections(out)?;
    writeln!(out, "```\n")?;

    writeln!(out, "### OVS-DPDK\n")?;
    write_ovs_setup(scenario, out)?;
    writeln!(out, "Rules (`ovs-ofctl add-flows br0`):\n")?;
    writeln!(out, "```text")?;
    scenario.write_ovs_flows(out)?;
    writeln!(out, "```\n")
}

/// The bridge setup the scenario gives `ovs_dpdk.py` (through `scenario.json`).
fn write_ovs_setup(scenario: &dyn Scenario, out: &mut dyn Write) -> io::Result<()> {
    let setup = scenario.ovs_setup();
    if let Some(t) = &setup.tunnel {
        let options: Vec<String> = t.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            out,
            "- tunnel port `{}`, type `{}`, OpenFlow port {}, options `{}`",
            t.name,
            t.kind,
            t.ofport,
            options.join(" ")
        )?;
    }
    if let Some(ip) = &setup.local_ip {
        writeln!(
            out,
            "- `br0`'s LOCAL port has the local VTEP address `{ip}`"
        )?;
    }
    if let Some(mac) = &setup.bridge_mac {
        writeln!(out, "- `br0`'s MAC is `{mac}`")?;
    }
    for note in &setup.notes {
        writeln!(out, "- {note}")?;
    }
    writeln!(out)?;
    if !setup.commands.is_empty() {
        writeln!(
            out,
            "Set-up commands, run after `br0` and the rules exist and before the DPDK \
             ports are added:\n"
        )?;
        writeln!(out, "```sh")?;
        for command in &setup.commands {
            writeln!(out, "{command}")?;
        }
        writeln!(out, "```\n")?;
    }
    Ok(())
}

/// `bytes` as rows of 16, each with its offset, as `tcpdump -xx` shows them.
fn write_hex(bytes: &[u8], out: &mut dyn Write) -> io::Result<()> {
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "  0x{:04x}:  {}", row * 16, hex.join(" "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{FrameSize, L2Scenario, TunnelDirection, TunnelKind, TunnelScenario};

    fn catalog(scenarios: Vec<Box<dyn Scenario>>) -> String {
        let mut out = Vec::new();
        write_catalog(&scenarios, "test", &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn shows_each_flows_frame_config_and_rules() {
        let text = catalog(vec![Box::new(
            L2Scenario::new(2, FrameSize::Fixed(64)).unwrap(),
        )]);
        assert!(text.contains("## `l2`"), "{text}");
        // One frame per flow, the destination MAC first.
        assert!(text.contains("frame 0, 60 bytes:\n  0x0000:  02 00 00 00 00 00"));
        assert!(text.contains("frame 1, 60 bytes:\n  0x0000:  02 00 00 00 00 01"));
        assert!(!text.contains("frame 2,"));
        assert!(text.contains("mac = \"02:00:00:00:00:01\""));
        assert!(text.contains("dl_dst=02:00:00:00:00:01,actions=output:2"));
        assert!(text.contains("table=0,priority=0,actions=drop"));
    }

    #[test]
    fn tunnel_scenarios_show_the_outer_headers_and_the_tunnel_port() {
        let text = catalog(vec![Box::new(
            TunnelScenario::new(
                TunnelKind::Vxlan,
                TunnelDirection::Decap,
                1,
                FrameSize::Fixed(64),
            )
            .unwrap(),
        )]);
        // 50 outer bytes and the inner 42: six rows of 16 (the last short).
        let rows = text.lines().filter(|l| l.starts_with("  0x")).count();
        assert_eq!(rows, 6, "{text}");
        assert!(text.contains("type `vxlan`, OpenFlow port 3"), "{text}");
        assert!(
            text.contains("each frame is 50 bytes longer than its nominal size on `replay`"),
            "{text}"
        );
        assert!(text.contains("frame 0, 110 bytes:"), "{text}");
    }
}
