#!/usr/bin/env bash
# Vagrant provisioning, step 2 of 2, and the lab's own checks (as root):
#   lab.sh up N      node N (1 or 2): its pod, its switch configuration, the
#                    switch started; node 2 then pings node 1's pod
#   lab.sh check N   ping from node N's pod to the other node's pod
#   lab.sh down N    stop the switch, remove the pod
#   lab.sh config N  print node N's switch configuration (what `up` installs)
#
# Each node has one pod: a network namespace "pod" whose eth0 is a veth peer of
# vsw-pod (an af_packet port of the switch), in virtual network "blue" (VXLAN
# VNI 100, 10.1.0.0/24). The other node's pod is a remote endpoint behind the
# other node's VTEP on the underlay NIC eth1.
set -euo pipefail

usage() { echo "usage: lab.sh up|check|down|config 1|2" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
node=$2
case "$node" in 1) peer=2 ;; 2) peer=1 ;; *) usage ;; esac

UNDERLAY_IF=${UNDERLAY_IF:-eth1}
POD_IF=${POD_IF:-vsw-pod}
vtep_ip() { echo "192.168.56.1$1"; }
pod_ip() { echo "10.1.0.1$1"; }
pod_mac() { echo "02:00:00:00:0$1:01"; }
CONFIG=/etc/vswitch/vswitchd.toml
PODS_UNIT=/etc/systemd/system/vswitch-lab-pod.service
PODS_SCRIPT=/usr/local/sbin/vswitch-lab-pod

# The pod must exist before the switch opens its port: a oneshot unit ordered
# before vswitchd.service makes it again at every boot.
write_pod_unit() {
  cat > "$PODS_SCRIPT" <<POD
#!/bin/sh
set -e
ip netns add pod 2>/dev/null || true
ip link show $POD_IF >/dev/null 2>&1 ||
  ip link add $POD_IF type veth peer name eth0 netns pod
ip -n pod link set eth0 address $(pod_mac "$node")
ip -n pod addr replace $(pod_ip "$node")/24 dev eth0
# The overlay's 50 bytes of VXLAN headers come out of the underlay's 1500.
ip -n pod link set eth0 mtu 1450
ip -n pod link set lo up
ip -n pod link set eth0 up
# af_packet carries whole frames: the pod checksums its own segments and the
# host end does not coalesce them.
ip netns exec pod ethtool -K eth0 tx off >/dev/null
ethtool -K $POD_IF gro off >/dev/null
ip link set $POD_IF up
ip link set $UNDERLAY_IF up
POD
  chmod 0755 "$PODS_SCRIPT"
  cat > "$PODS_UNIT" <<UNIT
[Unit]
Description=vswitch lab pod (network namespace "pod" on veth $POD_IF)
Before=vswitchd.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$PODS_SCRIPT
[Install]
RequiredBy=vswitchd.service
UNIT
}

config() {
  local underlay_mac
  underlay_mac=$(cat "/sys/class/net/$UNDERLAY_IF/address")
  cat <<CONF
# The vswitch lab, node $node (written by deploy/vagrant/lab.sh).
[eal]
hugepages = true
memory_mb = 512

[control]
socket = "/run/vswitch/vswitchd.sock"
socket_group = "vswitch"
state_file = "/var/lib/vswitch/state.json"

[dataplane]
workers = [1]
stats_file = "/run/vswitch/stats.json"

[[port]]
name = "uplink"
profile = "af_packet"
iface = "$UNDERLAY_IF"

[[port]]
name = "pod"
profile = "af_packet"
iface = "$POD_IF"

[underlay]
uplink = "uplink"
local_vtep_ip = "$(vtep_ip "$node")"
# The NIC's own MAC: the hypervisor's switch delivers frames for it without
# promiscuous mode.
local_mac = "$underlay_mac"
mtu = 1500
on_link = "192.168.56.0/24"

[[network]]
name = "blue"
vni = 100
encap = "vxlan"
tenant = "lab"
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "02:00:00:00:aa:01"
vteps = ["$(vtep_ip "$peer")"]

[[endpoint]]
network = "blue"
mac = "$(pod_mac "$node")"
ips = ["$(pod_ip "$node")"]
port = "pod"

[[remote_endpoint]]
network = "blue"
mac = "$(pod_mac "$peer")"
ips = ["$(pod_ip "$peer")"]
vtep = "$(vtep_ip "$peer")"
CONF
}

check() {
  # The first pings may go while the switches resolve each other's VTEP.
  ip netns exec pod ping -c 2 -i 0.3 -W 1 "$(pod_ip "$peer")" >/dev/null 2>&1 || true
  ip netns exec pod ping -c 3 -i 0.3 -W 2 "$(pod_ip "$peer")"
  echo "lab: node $node's pod reaches node $peer's pod over VXLAN"
}

case "$cmd" in
  up)
    write_pod_unit
    config > "$CONFIG"
    # A state file from an earlier run would override this configuration.
    rm -f /var/lib/vswitch/state.json /var/lib/vswitch/state.json.journal
    vswitchd --config "$CONFIG" --check
    systemctl daemon-reload
    systemctl enable --now vswitch-lab-pod.service
    systemctl enable vswitchd.service
    systemctl restart vswitchd.service
    vswitchctl health
    if [ "$node" = 2 ]; then check; fi
    ;;
  check) check ;;
  config) config ;;
  down)
    systemctl stop vswitchd.service || true
    systemctl disable --now vswitch-lab-pod.service || true
    ip netns del pod 2>/dev/null || true
    ip link del vsw-pod 2>/dev/null || true
    ;;
  *) usage ;;
esac
