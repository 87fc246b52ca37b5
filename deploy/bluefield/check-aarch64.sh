#!/usr/bin/env bash
# Builds the whole workspace for aarch64 (BlueField's Arm cores) on an x86_64
# Debian 12 machine, and runs dataplane's unit tests there under qemu-user:
#   deploy/bluefield/check-aarch64.sh          (as root: it installs what it needs)
#
# What it uses: rustup's aarch64-unknown-linux-gnu standard library, Debian's
# cross gcc and qemu-user, and a sysroot of Debian's arm64 DPDK 22.11 headers
# (libdpdk-dev:arm64 and the -dev packages its pkg-config file requires),
# downloaded and unpacked under target/aarch64-sysroot — nothing arm64 is
# installed into the system. dpdk-sys runs bindgen over the arm64 headers and
# pmd-shims compiles its C shim with the cross gcc. Nothing is linked against
# DPDK (that needs the arm64 libraries and a machine to run them on).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
target=aarch64-unknown-linux-gnu
sysroot=$repo/target/aarch64-sysroot

[ "$(id -u)" -eq 0 ] || { echo "check-aarch64: run as root (apt)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
need=()
for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

# libdpdk.pc's Requires (cflags take the private ones too) and theirs.
dev_pkgs=(libdpdk-dev libbsd-dev libmd-dev libnuma-dev libibverbs-dev libnl-3-dev
  libnl-route-3-dev libssl-dev libxdp-dev libbpf-dev zlib1g-dev libpcap0.8-dev
  libdbus-1-dev libisal-dev libelf-dev libjansson-dev)
if [ ! -f "$sysroot/.complete" ]; then
  rm -rf "$sysroot" && mkdir -p "$sysroot/debs"
  # apt warns that it downloads as root into a root-owned directory: harmless.
  (cd "$sysroot/debs" && apt-get download -qq "${dev_pkgs[@]/%/:arm64}")
  for d in "$sysroot"/debs/*.deb; do dpkg-deb -x "$d" "$sysroot"; done
  touch "$sysroot/.complete"
fi

export PKG_CONFIG_SYSROOT_DIR=$sysroot
export PKG_CONFIG_LIBDIR=$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig
export PKG_CONFIG_ALLOW_CROSS=1
# The static build checks for DPDK's archives on the host's paths; the shared
# one only asks pkg-config, which is all a check needs.
export VSWITCH_DPDK_LINK=shared
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu -isystem /usr/aarch64-linux-gnu/include"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_DIR=$repo/target/aarch64

echo "check-aarch64: cargo check --workspace --all-targets"
cargo check --target "$target" --workspace --all-targets
echo "check-aarch64: dataplane's unit tests under qemu-aarch64"
cargo test --target "$target" -p dataplane --lib
echo "check-aarch64: all passed"
