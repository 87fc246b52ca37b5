#!/usr/bin/env bash
# Builds the vswitch Debian package from binaries already built:
#   deploy/debian/build-deb.sh [--bin-dir DIR] [--out DIR]
# DIR defaults to target/release (`make deb` builds it first). The package holds
# vswitchd and vswitchctl, the CNI plugin (in /usr/lib/cni, where Debian's
# containernetworking-plugins put theirs), the systemd unit, the default
# configuration (a conffile) and the docs; Depends is computed by dpkg-shlibdeps from the
# binaries themselves, so a static and a shared DPDK build both get theirs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)

# Paths given are the caller's (relative to where it stands); defaults are the repo's.
bin_dir=$repo/target/release
out=$repo/target/deb
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$(realpath -m -- "$2"); shift 2 ;;
    --out) out=$(realpath -m -- "$2"); shift 2 ;;
    *) echo "build-deb: unknown argument ${1:0:40}" >&2; exit 2 ;;
  esac
done
cd "$repo"

bins=(vswitchd vswitchctl)
cni=vswitch-cni
for b in "${bins[@]}" "$cni"; do
  [ -x "$bin_dir/$b" ] || { echo "build-deb: $bin_dir/$b missing: build it first (make deb)" >&2; exit 1; }
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
pkg=vswitch
mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/cni" "$root/lib/systemd/system" \
  "$root/etc/vswitch" "$root/usr/share/doc/$pkg/examples"
for b in "${bins[@]}"; do
  install -m 0755 "$bin_dir/$b" "$root/usr/bin/$b"
  # Debug info stays in the build tree; a package ships stripped binaries.
  strip --strip-unneeded "$root/usr/bin/$b"
done
install -m 0755 "$bin_dir/$cni" "$root/usr/lib/cni/$cni"
strip --strip-unneeded "$root/usr/lib/cni/$cni"
install -m 0644 deploy/cni/10-vswitch.conflist "$root/usr/share/doc/$pkg/examples/10-vswitch.conflist"
install -m 0644 deploy/systemd/vswitchd.service "$root/lib/systemd/system/vswitchd.service"
install -m 0644 deploy/debian/vswitchd.toml "$root/etc/vswitch/vswitchd.toml"
install -m 0644 README.md "$root/usr/share/doc/$pkg/README.md"
install -m 0644 deploy/vswitchd.toml "$root/usr/share/doc/$pkg/examples/vswitchd.toml"
install -m 0644 deploy/debian/copyright "$root/usr/share/doc/$pkg/copyright"
printf '%s (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- vswitch developers <vswitch@localhost>  %s\n' \
  "$pkg" "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" \
  "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" |
  gzip -9n > "$root/usr/share/doc/$pkg/changelog.Debian.gz"
for s in postinst prerm postrm; do
  install -m 0755 "deploy/debian/$s" "$root/DEBIAN/$s"
done
echo /etc/vswitch/vswitchd.toml > "$root/DEBIAN/conffiles"

# dpkg-shlibdeps reads a source package's control file: give it a minimal one.
mkdir -p "$work/src/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" > "$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O "${bins[@]/#/$root/usr/bin/}" "$root/usr/lib/cni/$cni" |
  sed -n 's/^shlibs:Depends=//p')
installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat > "$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: vswitch developers <vswitch@localhost>
Installed-Size: $installed_kb
Depends: ${shlibs:+$shlibs, }adduser, init-system-helpers (>= 1.54)
Recommends: dpdk
Section: net
Priority: optional
Description: userspace virtual switch on DPDK for Kubernetes nodes
 vswitchd switches packets between DPDK ports on pinned poll-mode workers:
 VXLAN/Geneve virtual networks, L2/L3 forwarding, driven at run time by a
 transactional gRPC API. vswitchctl is its command-line client;
 vswitch-cni attaches Kubernetes pods to it (kernel veth or vhost-user).
CONTROL

deb="$out/${pkg}_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
