#!/usr/bin/env bash
# make demo: three "pods" in network namespaces talking through vswitchd.
#   pod1, pod2: veth pairs whose host ends are af_packet ports
#   pod3:       a tap port created by the PMD and moved into the pod's namespace
# Shows ping between all pods, a 20 MB TCP transfer with a checksum compared at both
# ends, the switch's port statistics, then removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
VSWITCHD=${VSWITCHD:-target/release/vswitchd}
TAG=vswdemo$$
WORK=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
VSW_PID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  set +e
  if [ -n "$VSW_PID" ] && kill -0 "$VSW_PID" 2>/dev/null; then
    kill -TERM "$VSW_PID"; wait "$VSW_PID" 2>/dev/null
  fi
  for i in 1 2 3; do ip netns del "${TAG}p$i" 2>/dev/null; done
  for i in 1 2; do ip link del "${TAG}h$i" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)"; exit 1; }

say "creating pods (network namespaces) on veth pairs"
for i in 1 2; do
  ip netns add "${TAG}p$i"
  ip link add "${TAG}h$i" type veth peer name eth0 netns "${TAG}p$i"
  ip -n "${TAG}p$i" link set eth0 address "02:00:00:00:0$i:01"
  ip -n "${TAG}p$i" addr add "10.77.0.$i/24" dev eth0
  ip -n "${TAG}p$i" link set lo up
  # af_packet carries whole frames: the pod must checksum its own segments and the
  # host end must not coalesce them (DESIGN.md §6), or TCP stalls.
  ip netns exec "${TAG}p$i" ethtool -K eth0 tx off >/dev/null
  ethtool -K "${TAG}h$i" gro off >/dev/null
  ip link set "${TAG}h$i" up
done
ip netns add "${TAG}p3"

cat > "$WORK/vswitchd.toml" <<CONF
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = [$(( $(nproc) > 1 ? 1 : 0 ))]
stats_file = "$WORK/stats.json"
stats_interval_ms = 500
[[port]]
name = "pod1"
profile = "af_packet"
iface = "${TAG}h1"
[[port]]
name = "pod2"
profile = "af_packet"
iface = "${TAG}h2"
[[port]]
name = "pod3"
profile = "tap"
iface = "${TAG}t3"
mac = "02:00:00:00:03:02"
[[l2]]
mac = "02:00:00:00:01:01"
port = "pod1"
[[l2]]
mac = "02:00:00:00:02:01"
port = "pod2"
CONF

say "starting vswitchd"
cat "$WORK/vswitchd.toml"
"$VSWITCHD" --config "$WORK/vswitchd.toml" >"$WORK/vswitchd.log" 2>&1 &
VSW_PID=$!
for _ in $(seq 100); do
  ip link show "${TAG}t3" >/dev/null 2>&1 && [ -s "$WORK/stats.json" ] && break
  kill -0 "$VSW_PID" 2>/dev/null || { cat "$WORK/vswitchd.log"; exit 1; }
  sleep 0.1
done
ip link set "${TAG}t3" netns "${TAG}p3"
ip -n "${TAG}p3" addr add 10.77.0.3/24 dev "${TAG}t3"
ip -n "${TAG}p3" link set "${TAG}t3" up
ip -n "${TAG}p3" link set lo up
# The pods' interfaces come up only now: their first frames (IPv6 duplicate
# address detection, router solicitations) are flooded, and before this point
# pod3's tap is still down in the host's namespace, where the tap PMD refuses
# them (counted as tx_full).
for i in 1 2; do ip -n "${TAG}p$i" link set eth0 up; done

say "ping pod1 -> pod2, pod2 -> pod3 (tap), pod3 -> pod1"
ip netns exec "${TAG}p1" ping -c 3 -i 0.2 -W 2 10.77.0.2
ip netns exec "${TAG}p2" ping -c 3 -i 0.2 -W 2 10.77.0.3
ip netns exec "${TAG}p3" ping -c 3 -i 0.2 -W 2 10.77.0.1

say "TCP: 20 MB from pod1 to pod2, sha256 compared at both ends"
ip netns exec "${TAG}p2" python3 scripts/tcp_peer.py serve --port 5001 --out "$WORK/recv.sha" &
SRV=$!
sleep 0.5
ip netns exec "${TAG}p1" python3 scripts/tcp_peer.py send --host 10.77.0.2 --port 5001 --bytes 20000000 --out "$WORK/sent.sha"
wait "$SRV"
echo "sent:     $(cat "$WORK/sent.sha")"
echo "received: $(cat "$WORK/recv.sha")"
cmp -s "$WORK/sent.sha" "$WORK/recv.sha" && echo "checksums match"

say "switch port statistics"
kill -TERM "$VSW_PID"; wait "$VSW_PID" || true; VSW_PID=""
python3 scripts/show_stats.py "$WORK/stats.json"
say "vswitchd log (last lines)"
tail -n 8 "$WORK/vswitchd.log"
