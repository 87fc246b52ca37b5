#!/usr/bin/env bash
# Vagrant provisioning, step 1 of 2 (as root, in each VM): a Rust toolchain,
# Debian's DPDK and the build dependencies, hugepages, then `make deb` and the
# package installed. Idempotent: a second `vagrant provision` rebuilds and
# reinstalls.
set -euo pipefail
SRC=/vswitch

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates curl git make >/dev/null

if ! command -v cargo >/dev/null 2>&1 && [ ! -x /root/.cargo/bin/cargo ]; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --default-toolchain stable >/dev/null
fi
export PATH=/root/.cargo/bin:$PATH

# 1 GiB of 2 MiB pages, now and at every boot; systemd mounts /dev/hugepages.
echo "vm.nr_hugepages = 512" > /etc/sysctl.d/60-vswitch-hugepages.conf
sysctl -q -p /etc/sysctl.d/60-vswitch-hugepages.conf

cd "$SRC"
make deb
dpkg -i target/deb/vswitch_*.deb
echo "provision: $(vswitchd --version) installed"
