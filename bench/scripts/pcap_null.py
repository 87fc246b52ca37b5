#!/usr/bin/env python3
"""pcap -> null forwarding rate on one core: vswitchd beside dpdk-testpmd io-forward.

Both replay the same capture through net_pcap (infinite_rx, from memory) into a
net_null sink, with one busy-polling forwarding core pinned to the same CPU. Rates are
per-second samples after a warm-up; the median is reported (this machine is noisy).
vswitchd's rate comes from its own counters (the stats file), testpmd's from its
--stats-period output. cycles/packet = TSC Hz / packets per second, since the
forwarding core is busy all the time.

Both run on 2 MiB hugepages when enough are free and a hugetlbfs is mounted
(`make bench-hugepages`), else both on 4 KiB pages (--memory, as vswitch-bench's):
4 KiB pages cost the I/O floor itself a third of its rate (bench/RESULTS.md).

Usage: pcap_null.py [--seconds N] [--core C] [--size 64] [--memory auto] [--json]
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tsc_hz():
    # The kernel's calibrated TSC frequency is in dmesg on most VMs; cpu MHz is close.
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
        m = re.findall(r"tsc: Refined TSC clocksource calibration: ([\d.]+) MHz", out) or \
            re.findall(r"tsc: Detected ([\d.]+) MHz processor", out)
        if m:
            return float(m[-1]) * 1e6
    except OSError:
        pass
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) * 1e6
    return 0.0


# Each forwarder's EAL memory (they run one after the other).
MEMORY_MB = 1024


def hugepages_free_mb():
    """Free default-size hugepage memory in MiB, or None without a hugetlbfs mount."""
    with open("/proc/mounts") as f:
        if not any(line.split()[2:3] == ["hugetlbfs"] for line in f):
            return None
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k] = int(v.split()[0]) if v.split() else 0
    return info.get("HugePages_Free", 0) * info.get("Hugepagesize", 0) // 1024


def resolve_memory(choice):
    """'hugepages' or 'no-huge' for --memory CHOICE (auto, hugepages, no-huge)."""
    if choice == "no-huge":
        return "no-huge"
    free = hugepages_free_mb()
    if free is not None and free >= MEMORY_MB:
        return "hugepages"
    why = "no hugetlbfs mounted" if free is None else \
        f"{free} MiB of hugepages free, {MEMORY_MB} MiB needed"
    if choice == "hugepages":
        raise SystemExit(f"--memory hugepages: {why}; reserve them with `make bench-hugepages`")
    print(f"pcap_null: running without hugepages ({why}); `make bench-hugepages` "
          "reserves them", file=sys.stderr)
    return "no-huge"


def run_vswitchd(bin_dir, pcap, core, seconds, warmup, work, memory):
    stats = os.path.join(work, "stats.json")
    cfg = os.path.join(work, "vswitchd.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[eal]
memory_mb = {MEMORY_MB}
in_memory = true
hugepages = {"true" if memory == "hugepages" else "false"}
main_core = {0 if core != 0 else 1}
[dataplane]
workers = [{core}]
idle_sleep_max_us = 0
stats_file = "{stats}"
stats_interval_ms = 1000
[[port]]
name = "replay"
profile = "pcap"
rx_pcap = "{pcap}"
infinite_rx = true
[[port]]
name = "sink"
profile = "null"
[[patch]]
from = "replay"
to = "sink"
""")
    log = open(os.path.join(work, "vswitchd.log"), "w")
    p = subprocess.Popen([os.path.join(bin_dir, "vswitchd"), "--config", cfg],
                         stdout=log, stderr=subprocess.STDOUT)
    samples = []
    try:
        deadline = time.time() + 30
        while not os.path.exists(stats):
            if p.poll() is not None or time.time() > deadline:
                raise SystemExit("vswitchd did not start: see " + log.name)
            time.sleep(0.05)
        time.sleep(warmup)
        prev = None
        t_end = time.time() + seconds
        while time.time() < t_end:
            time.sleep(1.0)
            doc = json.load(open(stats))
            tx = next(x for x in doc["ports"] if x["name"] == "sink")["tx_packets"]
            cur = (doc["uptime_s"], tx)
            if prev and cur[0] > prev[0]:
                samples.append((cur[1] - prev[1]) / (cur[0] - prev[0]))
            prev = cur
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    final = json.load(open(stats))
    return samples, final


def run_testpmd(pcap, core, seconds, warmup, work, mode, memory):
    main = 0 if core != 0 else 1
    # --in-memory is refused with --no-huge on DPDK 22.11; a private prefix and no
    # shared config isolate the run the same way (its runtime dir is removed below).
    # With hugepages, --in-memory also leaves no page files behind.
    prefix = f"vswbench{os.getpid()}"
    mem = "--in-memory" if memory == "hugepages" else "--no-huge"
    cmd = ["dpdk-testpmd", "-l", f"{main},{core}", mem, "-m", str(MEMORY_MB), "--no-shconf",
           f"--file-prefix={prefix}", "--no-pci", f"--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=1",
           "--vdev=net_null0,no-rx=1", "--", f"--forward-mode={mode}", "--nb-cores=1",
           "--stats-period=1", "--txq=1", "--rxq=1"]
    logp = os.path.join(work, f"testpmd-{mode}.log")
    log = open(logp, "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # Start-up (EAL, a 1 GiB mempool without hugepages) takes seconds: count the
    # measured window from the first statistics period.
    deadline = time.time() + 60
    while "NIC statistics" not in open(logp).read() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    time.sleep(warmup + seconds + 0.5)
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    text = open(logp).read()
    # Each stats period prints a block per port; port 1 (null) is where packets leave.
    blocks = text.split("NIC statistics for port 1")[1:]
    samples = []
    for b in blocks:
        m = re.search(r"Tx-pps:\s+(\d+)", b)
        if m:
            samples.append(float(m.group(1)))
    # The first period covers start-up; skip it and the warm-up.
    return samples[1 + int(warmup):] or samples, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--size", default="64")
    ap.add_argument("--flows", type=int, default=1)
    ap.add_argument("--profile", default="release")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--memory", choices=["auto", "hugepages", "no-huge"], default="auto",
                    help="EAL memory of both forwarders (default: hugepages when enough "
                         "are free and mounted)")
    a = ap.parse_args()
    memory = resolve_memory(a.memory)
    bin_dir = os.path.join(ROOT, "target", a.profile)
    work = tempfile.mkdtemp(prefix="vswitch-bench-")
    pcap = os.path.join(work, "l2.pcap")
    subprocess.run([os.path.join(bin_dir, "vswitch-bench"), "gen", "l2", "--flows", str(a.flows),
                    "--size", a.size, "--packets", "4096", "-o", pcap], check=True)
    hz = tsc_hz()
    v_samples, v_final = run_vswitchd(bin_dir, pcap, a.core, a.seconds, a.warmup, work, memory)
    # io forwards without touching the packet (the I/O floor); mac also reads and
    # rewrites the Ethernet header, as any switch must read it.
    t_samples, _ = run_testpmd(pcap, a.core, a.seconds, a.warmup, work, "io", memory)
    m_samples, _ = run_testpmd(pcap, a.core, a.seconds, a.warmup, work, "mac", memory)
    res = {"scenario": "pcap-null", "frame_size": a.size, "flows": a.flows, "core": a.core,
           "memory": memory, "tsc_hz": hz, "mpps": {}, "cycles_per_packet": {}, "samples": {}}
    for name, s in (("vswitch", v_samples), ("testpmd", t_samples), ("testpmd_mac", m_samples)):
        med = statistics.median(s) if s else 0.0
        res["mpps"][name] = round(med / 1e6, 3)
        res["cycles_per_packet"][name] = round(hz / med, 1) if med else None
        res["samples"][name] = [round(x / 1e6, 3) for x in s]
    if res["mpps"]["testpmd"]:
        res["ratio_vs_floor"] = round(res["mpps"]["vswitch"] / res["mpps"]["testpmd"], 3)
    drops = {k: v for k, v in v_final["drops"].items() if v}
    res["vswitch_drops"] = drops
    if a.json:
        print(json.dumps(res))
    else:
        print(f"pcap -> null, {a.size} B, {a.flows} flow(s), one core ({a.core}), {memory}, "
              f"median of {len(v_samples)}/{len(t_samples)} one-second samples")
        print(f"{'':<12}{'Mpps':>10}{'cycles/pkt':>12}")
        for name in ("vswitch", "testpmd", "testpmd_mac"):
            cpp = res["cycles_per_packet"][name]
            print(f"{name:<12}{res['mpps'][name]:>10.2f}{(cpp or 0):>12.1f}")
        if "ratio_vs_floor" in res:
            print(f"vswitch / testpmd io floor: {res['ratio_vs_floor']:.2f}")
        print(f"vswitchd drops: {drops or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
