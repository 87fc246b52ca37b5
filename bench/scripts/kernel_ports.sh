#!/bin/sh
# Kernel-interface ports on one worker: the `kernel` profile (the switch's own
# packet socket) against `af_packet` (DPDK's PMD), same traffic, same core.
#
#   pcap replay (64 B, infinite_rx) --patch--> port a (veth end vkra)
#        kernel veth vkra -> vkrb
#   port b (veth end vkrb) --patch--> null sink
#
# Both veth ends are the switch's ports, so one busy-polling worker does the
# pcap read, a's transmit (copy to the ring, one sendto per burst), b's
# receive (the ring's status words, copy into mbufs) and the sink. Reported
# per run: a's tx rate (what the port took: pcap -> socket) and the sink's
# (what came back through the kernel: veth -> veth), in Mpps, from the
# switch's stats file over SECONDS, after a 3 s warm-up.
#
# Usage (root): bench/scripts/kernel_ports.sh VSWITCHD VSWITCH_BENCH [SECONDS] [ROUNDS]
# Rounds alternate the two profiles (kernel first, then af_packet, then the
# other way round), one line of JSON per run.
set -eu
vswitchd=$1
bench=$2
seconds=${3:-10}
rounds=${4:-3}
dir=$(mktemp -d /tmp/kernel-ports.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    ip link del vkra 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
"$bench" gen l2 --out-dir "$dir/bundle" >/dev/null
ip link add vkra type veth peer name vkrb
for i in vkra vkrb; do
    ip link set "$i" up
done

run() {
    profile=$1
    cat >"$dir/vswitchd.toml" <<EOF
[eal]
in_memory = true
memory_mb = 600
main_core = 0
[dataplane]
workers = [1]
idle_sleep_max_us = 0
mbufs = 20488
stats_file = "$dir/stats.json"
stats_interval_ms = 1000
[[port]]
name = "replay"
profile = "pcap"
rx_pcap = "$dir/bundle/traffic.pcap"
infinite_rx = true
[[port]]
name = "a"
profile = "$profile"
iface = "vkra"
[[port]]
name = "b"
profile = "$profile"
iface = "vkrb"
[[port]]
name = "sink"
profile = "null"
[[patch]]
from = "replay"
to = "a"
[[patch]]
from = "b"
to = "sink"
EOF
    rm -f "$dir/stats.json"
    "$vswitchd" --config "$dir/vswitchd.toml" >"$dir/log" 2>&1 &
    pid=$!
    while [ ! -s "$dir/stats.json" ]; do sleep 0.2; done
    sleep 3
    cp "$dir/stats.json" "$dir/s0.json"
    sleep "$seconds"
    cp "$dir/stats.json" "$dir/s1.json"
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    python3 - "$profile" "$dir/s0.json" "$dir/s1.json" <<'EOF'
import json, sys
profile, a, b = sys.argv[1:]
s0, s1 = json.load(open(a)), json.load(open(b))
dt = s1["uptime_s"] - s0["uptime_s"]
def tx(doc, name):
    return next(p["tx_packets"] for p in doc["ports"] if p["name"] == name)
rate = lambda name: (tx(s1, name) - tx(s0, name)) / dt / 1e6
print(json.dumps({"profile": profile, "seconds": round(dt, 2),
                  "pcap_to_port_mpps": round(rate("a"), 3),
                  "veth_to_veth_mpps": round(rate("sink"), 3)}))
EOF
}

r=0
while [ "$r" -lt "$rounds" ]; do
    if [ $((r % 2)) -eq 0 ]; then run kernel; run af_packet; else run af_packet; run kernel; fi
    r=$((r + 1))
done
