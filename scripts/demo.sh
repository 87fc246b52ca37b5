#!/usr/bin/env bash
# make demo: a tour of vswitch on one machine.
#   node A, node B   network namespaces, each with its own vswitchd, joined by a
#                    veth "underlay"; virtual network "blue" (VXLAN VNI 100,
#                    10.1.0.0/24) spans both, as deploy/vagrant/lab.sh sets it up
#   pods             attached by vswitch-cni exactly as a container runtime calls
#                    it (CNI_* environment, config on stdin, host-local IPAM):
#                    a kernel-mode pod and a vhost-user pod on each node (the
#                    latter dpdk-testpmd on virtio_user, answering ping: icmpecho)
# Shows pings and a TCP transfer across nodes, vswitchctl's view (ports,
# endpoints, stats, a trace of a cross-node packet), then DEL of every pod and a
# check that nothing is left. Everything it makes is removed on exit, on Ctrl-C
# and on failure too.
#
# Binaries: VSWITCHD, VSWITCHCTL, VSWITCH_CNI (default: the release build);
# CNI_BIN: Debian's containernetworking-plugins (host-local).
set -euo pipefail
cd "$(dirname "$0")/.."
VSWITCHD=$(realpath "${VSWITCHD:-target/release/vswitchd}")
VSWITCHCTL=$(realpath "${VSWITCHCTL:-target/release/vswitchctl}")
VSWITCH_CNI=$(realpath "${VSWITCH_CNI:-target/release/vswitch-cni}")
CNI_BIN=${CNI_BIN:-/usr/lib/cni}
# Every name the demo makes starts with this (interface names stay within 15 bytes).
TAG=vswdemo$(($$ % 100000))
WORK=""
PIDS=()       # processes the demo started, stopped in reverse order
TESTPMD_PID=""
NETNS=("$TAG-pa" "$TAG-pb" "$TAG-va" "$TAG-vb" "$TAG-a" "$TAG-b")

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  # Its exit status is the signal's: not a failure of the demo.
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  # A failed run shows why before its files go; on stderr, since set -e may end
  # the script inside a command whose stdout goes to a file.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ] && [ -n "$WORK" ]; then
    for n in a b; do
      [ -f "$WORK/$n/vswitchd.log" ] || continue
      echo "demo: failed ($rc); node $n's vswitchd log, last lines:" >&2
      tail -n 15 "$WORK/$n/vswitchd.log" >&2
    done
  fi
  [ -n "$TESTPMD_PID" ] && stop_pid "$TESTPMD_PID"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
  # Links inside a namespace go with it; the underlay pair only if never moved.
  for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  ip link del "${TAG}u1" 2>/dev/null
  rm -rf "/var/run/dpdk/${TAG}tp"
  [ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)"; exit 1; }
for b in "$VSWITCHD" "$VSWITCHCTL" "$VSWITCH_CNI"; do
  [ -x "$b" ] || { echo "demo: $b missing (make release)"; exit 1; }
done
[ -x "$CNI_BIN/host-local" ] || { echo "demo: $CNI_BIN/host-local missing (make deps)"; exit 1; }

WORK=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
# The API accepts socket directories only if no one but root can write up to /.
chmod 755 "$WORK"

vtep_ip() { case $1 in a) echo 192.168.56.11 ;; b) echo 192.168.56.12 ;; esac; }
ctl() { local node=$1; shift; "$VSWITCHCTL" --socket "$WORK/$node/ctl.sock" "$@"; }

say "two nodes joined by a VXLAN underlay"
echo "demo: names start with $TAG, files in $WORK"
ip link add "${TAG}u1" type veth peer name "${TAG}u2"
for n in a b; do ip netns add "$TAG-$n"; done
ip link set "${TAG}u1" netns "$TAG-a"
ip link set "${TAG}u2" netns "$TAG-b"
for n in a b; do
  u=${TAG}u1; [ $n = b ] && u=${TAG}u2
  peer=b; [ $n = b ] && peer=a
  d=$WORK/$n
  mkdir -p "$d/vhost" "$d/ipam"
  ip netns exec "$TAG-$n" ethtool -K "$u" gro off >/dev/null
  ip -n "$TAG-$n" link set lo up
  ip -n "$TAG-$n" link set "$u" up
  # The underlay as the lab has it: an af_packet uplink, a VTEP address, the
  # other node's VTEP; pods come later, through the CNI plugin and the API.
  cat > "$d/vswitchd.toml" <<CONF
[eal]
memory_mb = 256
in_memory = true
[control]
socket = "$d/ctl.sock"
state_file = "$d/state.json"
socket_dirs = ["$d/vhost"]
[dataplane]
workers = [$(( $(nproc) > 1 ? 1 : 0 ))]
stats_file = "$d/stats.json"
stats_interval_ms = 500
[[port]]
name = "uplink"
profile = "af_packet"
iface = "$u"
[underlay]
uplink = "uplink"
local_vtep_ip = "$(vtep_ip $n)"
local_mac = "$(ip netns exec "$TAG-$n" cat "/sys/class/net/$u/address")"
mtu = 1500
on_link = "192.168.56.0/24"
[[network]]
name = "blue"
vni = 100
encap = "vxlan"
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "02:00:00:00:aa:01"
vteps = ["$(vtep_ip $peer)"]
CONF
  ip netns exec "$TAG-$n" "$VSWITCHD" --config "$d/vswitchd.toml" >"$d/vswitchd.log" 2>&1 &
  PIDS+=($!)
  echo "node $n: namespace $TAG-$n, underlay $u at $(vtep_ip $n), vswitchd pid $!"
done
for n in a b; do
  for _ in $(seq 200); do
    ctl $n show >/dev/null 2>&1 && break
    sleep 0.1
  done
  ctl $n show >/dev/null || { cat "$WORK/$n/vswitchd.log"; exit 1; }
done
ctl a show

# Each node hands out its own slice of the network's addresses, as a
# Kubernetes node does with its pod CIDR.
cni_conf() { # node mode
  local d=$WORK/$1 first=10 last=19
  [ "$1" = b ] && first=20 last=29
  cat <<JSON
{"cniVersion": "1.1.0", "name": "demo", "type": "vswitch-cni",
 "network": "blue", "mode": "$2", "socket": "$d/ctl.sock", "mtu": 1450,
 "vhost": {"socketDir": "$d/vhost", "group": "root"},
 "ipam": {"type": "host-local",
          "ranges": [[{"subnet": "10.1.0.0/24", "gateway": "10.1.0.1",
                       "rangeStart": "10.1.0.$first", "rangeEnd": "10.1.0.$last"}]],
          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$d/ipam"}}
JSON
}

# cni COMMAND NODE MODE POD IFNAME: the plugin run in the node's namespace (where
# its switch is) with nothing but what a runtime gives it.
# Its result goes to stdout; a failure shows the plugin's error JSON and ends the demo.
cni() {
  local out
  if ! out=$(cni_conf "$2" "$3" | ip netns exec "$TAG-$2" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    CNI_COMMAND="$1" CNI_CONTAINERID="$TAG-$4" CNI_NETNS="/run/netns/$TAG-$4" \
    CNI_IFNAME="$5" CNI_PATH="$CNI_BIN" "$VSWITCH_CNI"); then
    echo "demo: vswitch-cni $1 of pod $4 on node $2 failed: $out" >&2
    exit 1
  fi
  [ -z "$out" ] || printf '%s\n' "$out"
}

# field JSON-FILE EXPR: a value of a CNI result.
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }
POD_IF='[i for i in r["interfaces"] if i.get("sandbox")][0]'
IP='r["ips"][0]["address"].split("/")[0]'

say "pods attached by vswitch-cni in both modes on both nodes"
# pa, pb: kernel pods (veth) on node a and b; va, vb: vhost-user pods.
for p in pa pb va vb; do ip netns add "$TAG-$p"; done
cni ADD a kernel pa eth0 > "$WORK/pa.json"
cni ADD b kernel pb eth0 > "$WORK/pb.json"
cni ADD a vhostuser va net1 > "$WORK/va.json"
cni ADD b vhostuser vb net1 > "$WORK/vb.json"
IP_A=$(field "$WORK/pa.json" "$IP"); MAC_A=$(field "$WORK/pa.json" "${POD_IF}[\"mac\"]")
IP_B=$(field "$WORK/pb.json" "$IP"); MAC_B=$(field "$WORK/pb.json" "${POD_IF}[\"mac\"]")
VHOST_MAC='r["interfaces"][0]["mac"]'
VHOST_SOCK='r["interfaces"][0]["socketPath"]'
IP_va=$(field "$WORK/va.json" "$IP"); MAC_va=$(field "$WORK/va.json" "$VHOST_MAC")
SOCK_va=$(field "$WORK/va.json" "$VHOST_SOCK")
IP_vb=$(field "$WORK/vb.json" "$IP"); MAC_vb=$(field "$WORK/vb.json" "$VHOST_MAC")
SOCK_vb=$(field "$WORK/vb.json" "$VHOST_SOCK")
echo "pod pa (node a, kernel):     eth0 $IP_A $MAC_A"
echo "pod pb (node b, kernel):     eth0 $IP_B $MAC_B"
echo "pod va (node a, vhost-user): $IP_va $MAC_va socket $SOCK_va"
echo "pod vb (node b, vhost-user): $IP_vb $MAC_vb socket $SOCK_vb"
ip -n "$TAG-pa" -br addr show dev eth0

say "each node learns the other node's pods (remote endpoints behind its VTEP)"
ctl a remote add --network blue --mac "$MAC_B" --ip "$IP_B" --vtep "$(vtep_ip b)"
ctl a remote add --network blue --mac "$MAC_vb" --ip "$IP_vb" --vtep "$(vtep_ip b)"
ctl b remote add --network blue --mac "$MAC_A" --ip "$IP_A" --vtep "$(vtep_ip a)"
ctl b remote add --network blue --mac "$MAC_va" --ip "$IP_va" --vtep "$(vtep_ip a)"
ctl a remote list

say "vswitchctl port list / endpoint list (node b)"
ctl b port list
echo "(a vhost-user port's link comes up when its pod's virtio driver connects)"
ctl b endpoint list

say "ping kernel pod A -> kernel pod B across the VXLAN underlay"
# The first pings may go while the switches resolve each other's VTEP.
ip netns exec "$TAG-pa" ping -c 2 -i 0.3 -W 1 "$IP_B" >/dev/null 2>&1 || true
ip netns exec "$TAG-pa" ping -c 3 -i 0.2 -W 2 "$IP_B"

# vhost_ping VHOST-POD FROM-POD IP MAC SOCKET: starts the DPDK pod (testpmd on
# virtio_user with the endpoint's MAC, answering ARP and ping), pings it from
# FROM-POD, and stops it by PID. Two cores: testpmd gets no hugepages and a small
# pool, and runs only while its part is shown.
vhost_ping() {
  ip netns exec "$TAG-$1" dpdk-testpmd -l 0,1 --no-huge --no-shconf --no-telemetry -m 256 \
    --no-pci --file-prefix "${TAG}tp" --vdev "net_virtio_user0,path=$5,mac=$4" \
    -- --forward-mode=icmpecho --total-num-mbufs 4096 --stats-period 60 \
    >"$WORK/testpmd-$1.log" 2>&1 &
  TESTPMD_PID=$!
  local ok=""
  for _ in $(seq 20); do
    if ip netns exec "$TAG-$2" ping -c 1 -W 1 "$3" >/dev/null 2>&1; then ok=yes; break; fi
    kill -0 "$TESTPMD_PID" 2>/dev/null || { cat "$WORK/testpmd-$1.log"; exit 1; }
  done
  [ -n "$ok" ] || { echo "vhost-user pod $1 never answered"; tail "$WORK/testpmd-$1.log"; exit 1; }
  ip netns exec "$TAG-$2" ping -c 3 -i 0.2 -W 2 "$3"
  stop_pid "$TESTPMD_PID"; TESTPMD_PID=""
  rm -rf "/var/run/dpdk/${TAG}tp"
}

say "ping kernel pod A -> vhost-user pod on node B (dpdk-testpmd, icmpecho)"
vhost_ping vb pa "$IP_vb" "$MAC_vb" "$SOCK_vb"
say "ping kernel pod B -> vhost-user pod on node A (dpdk-testpmd, icmpecho)"
vhost_ping va pb "$IP_va" "$MAC_va" "$SOCK_va"

say "TCP: 20 MB from pod A to pod B across nodes, sha256 compared at both ends"
ip netns exec "$TAG-pb" python3 scripts/tcp_peer.py serve --port 5001 --out "$WORK/recv.sha" &
SRV=$!
PIDS+=("$SRV")
sleep 0.5
ip netns exec "$TAG-pa" python3 scripts/tcp_peer.py send --host "$IP_B" --port 5001 \
  --bytes 20000000 --out "$WORK/sent.sha"
wait "$SRV"
echo "sent:     $(cat "$WORK/sent.sha")"
echo "received: $(cat "$WORK/recv.sha")"
cmp -s "$WORK/sent.sha" "$WORK/recv.sha" || { echo "checksums differ"; exit 1; }
echo "checksums match"

say "vswitchctl trace: pod A's packet to pod B, through node A's tables"
PORT_A=$(ctl a endpoint list --json | python3 -c '
import json, sys
mac = sys.argv[1]
doc = json.load(sys.stdin)
eps = doc["endpoints"] if isinstance(doc, dict) else doc
print([e["port"] for e in eps if e["mac"] == mac][0])' "$MAC_A")
ctl a trace --in-port "$PORT_A" \
  --packet "eth(src=$MAC_A,dst=$MAC_B)/ipv4(src=$IP_A,dst=$IP_B)/tcp(sport=40000,dport=5001)"

say "vswitchctl stats (node a)"
ctl a stats

say "a Service VIP on node a, its backend pod B on node b"
# Pod B answers its name on TCP 8080; node a's switch picks the backend by
# Maglev and DNATs, the frame crosses the underlay in VXLAN, and the answer
# is translated back to the VIP on node a.
ip netns exec "$TAG-pb" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(16)
while True:
    c, _ = s.accept(); c.recv(16); c.sendall(b"pod-b\n"); c.close()' &
PIDS+=($!)
# probe POD IP PORT: one TCP connection, the answer or "no answer".
probe() {
  ip netns exec "$TAG-$1" python3 -c '
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.sendall(b"hi\n"); print(s.recv(16).decode().strip() or "no answer")
except OSError:
    print("no answer")' "$2" "$3"
}
ctl a svc add web --network blue --cluster-ip 10.96.0.10 --port 80/TCP:8080 --backend "$IP_B"
ctl a svc list
sleep 0.5
for i in 1 2 3; do echo "pod A -> 10.96.0.10:80: $(probe pa 10.96.0.10 80)"; done
ctl a ct list --address 10.96.0.10

say "a NetworkPolicy on node b: pod B admits only the vhost-user pod on node a"
echo "before: pod A -> pod B:8080: $(probe pa "$IP_B" 8080)"
cat > "$WORK/policy.toml" <<TOML
[[policy]]
name = "demo/pod-b"
subject = ["$IP_B"]
policy_types = ["Ingress"]
[[policy.ingress]]
peers = [{ addresses = ["$IP_va"] }]
ports = [{ protocol = "TCP", port = 8080 }]
TOML
ctl b policy add "$WORK/policy.toml"
ctl b policy list
echo "after:  pod A -> pod B:8080: $(probe pa "$IP_B" 8080)"
echo "the denial, as node b's switch logged it:"
ctl b policy log
ctl b policy del demo/pod-b
ctl a svc del web

say "vswitch-cni DEL of every pod, then nothing is left"
cni DEL a kernel pa eth0
cni DEL b kernel pb eth0
cni DEL a vhostuser va net1
cni DEL b vhostuser vb net1
left=0
for n in a b; do
  ports=$(ctl $n port list --json | python3 -c '
import json, sys
doc = json.load(sys.stdin)
ports = doc["ports"] if isinstance(doc, dict) else doc
print(" ".join(p["name"] for p in ports if p["name"] != "uplink"))')
  eps=$(ctl $n endpoint list --json | python3 -c '
import json, sys
doc = json.load(sys.stdin)
print(len(doc["endpoints"] if isinstance(doc, dict) else doc))')
  leases=$(find "$WORK/$n/ipam" -type f -name '10.*' | wc -l)
  socks=$(find "$WORK/$n/vhost" -mindepth 1 | wc -l)
  links=$(ip -n "$TAG-$n" -o link show | grep -vc -e ': lo:' -e "${TAG}u" || true)
  echo "node $n: pod ports [${ports}], $eps endpoints, $leases IPAM leases, $socks vhost sockets, $links pod links"
  if [ -n "$ports" ] || [ "$eps" != 0 ] || [ "$leases" != 0 ] || [ "$socks" != 0 ] || [ "$links" != 0 ]; then
    left=1
  fi
done
[ "$left" = 0 ] || { echo "something was left behind"; exit 1; }
echo "nothing left: every pod's port, endpoint, lease, socket and link is gone"

say "done: stopping the switches, removing the nodes"
