#!/usr/bin/env bash
# Installs what building, the demo and the tests need on Debian 12, idempotently:
# only missing packages are installed, and apt's index is refreshed only then.
set -euo pipefail

PKGS=(
  # build: bindgen needs libclang; pkg-config finds libdpdk
  build-essential clang libclang-dev pkg-config
  # the gRPC API is generated with protoc
  protobuf-compiler
  # DPDK 22.11 headers and libraries, dpdk-testpmd (the I/O floor), dpdk-telemetry.py
  # and the PMDs a shared build and testpmd load
  libdpdk-dev dpdk dpdk-dev
  librte-net-af-packet23 librte-net-tap23 librte-net-pcap23 librte-net-null23
  librte-net-ring23 librte-net-vhost23 librte-net-virtio23
  # test and demo peers: namespaces, veth, offload settings, TCP/UDP peers, capture decoding
  iproute2 ethtool iputils-ping python3 procps tshark openssl
  # the CNI plugin's tests: host-local IPAM, tuning and portmap to chain after it;
  # nsenter (util-linux) enters a pod's namespace by path
  containernetworking-plugins iptables util-linux
  # `vswitch-bench instructions`: instructions per packet under callgrind
  valgrind
  # operations tests: `systemd-analyze verify` on the unit, `setpriv` to run the
  # daemon with the unit's capabilities, `promtool check metrics` on /metrics
  systemd util-linux prometheus
  # OpenMetrics pages checked with the Python client library's strict parser
  python3-prometheus-client
  # deploy checks: the Vagrantfile's syntax, the lab's and the package's scripts
  ruby shellcheck
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (or install by hand: ${PKGS[*]})" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  # dpkg-query prints "install ok installed" for a present package
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
fi
echo "install-deps: all present"
