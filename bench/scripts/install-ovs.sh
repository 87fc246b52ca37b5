#!/usr/bin/env bash
# Installs OVS-DPDK (Debian's openvswitch-switch-dpdk) for the OVS comparison benchmark
# (bench/scripts/ovs_dpdk.py), idempotently, and leaves no system Open vSwitch running:
# the benchmark starts its own private ovsdb-server and ovs-vswitchd.
#
# The package brings openvswitch-switch, whose service the package scripts try to start
# (in containers policy-rc.d usually denies it). Whatever happened, a system
# ovs-vswitchd/ovsdb-server found through the service's pidfiles is stopped by that PID,
# and the service is disabled where systemd runs, so a reboot does not bring it back.
set -euo pipefail

DPDK_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk

if [ "$(id -u)" -ne 0 ]; then
  echo "install-ovs: run as root (or: apt-get install openvswitch-switch-dpdk)" >&2
  exit 1
fi

if ! dpkg-query -W -f='${Status}' openvswitch-switch-dpdk 2>/dev/null | grep -q "ok installed"; then
  echo "install-ovs: installing openvswitch-switch-dpdk"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openvswitch-switch-dpdk >/dev/null
fi

# Debian's way of selecting the DPDK build (README.Debian of openvswitch-switch-dpdk).
# ovs_dpdk.py runs $DPDK_VSWITCHD directly, so this only matters for anyone else.
if [ "$(readlink -f /etc/alternatives/ovs-vswitchd 2>/dev/null)" != "$DPDK_VSWITCHD" ]; then
  update-alternatives --set ovs-vswitchd "$DPDK_VSWITCHD"
fi

# No system service: disable it where systemd is the init (never start it here).
if command -v systemctl >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    systemctl stop openvswitch-switch.service ovs-vswitchd.service ovsdb-server.service \
      >/dev/null 2>&1 || true
  fi
  # Works offline too (it only removes the unit's symlinks).
  systemctl disable openvswitch-switch.service >/dev/null 2>&1 || true
fi
# Whatever init there is (or none): stop a daemon left by the package's scripts by the
# PID in the service's pidfile, after checking that PID really is that daemon.
for d in ovs-vswitchd ovsdb-server; do
  for pidfile in /var/run/openvswitch/$d.pid /run/openvswitch/$d.pid; do
    [ -r "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    comm=$(cat /proc/"$pid"/comm 2>/dev/null || true)
    case "$comm" in
      ovs-vswitchd*|ovsdb-server*)
        echo "install-ovs: stopping the system $d (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        ;;
    esac
    break
  done
done

"$DPDK_VSWITCHD" --version | head -1
echo "install-ovs: OVS-DPDK ready (bench/scripts/ovs_dpdk.py starts its own daemons)"
