# The two commands of the quick start are `make demo` and `make test`; the rest are
# building blocks. Each target installs what it needs first (scripts/install-deps.sh).
SHELL := /bin/bash
CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: deps build release demo test lint fmt fuzz-smoke bench-floor clean deb check-aarch64

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

release: deps
	$(CARGO) build --release -p vswitchd -p vswitchctl -p vswitch-cni -p bench

demo: release
	bash scripts/demo.sh

# The Debian package (target/deb/vswitch_<version>_<arch>.deb): vswitchd, vswitchctl,
# the CNI plugin, the systemd unit and the default configuration.
# deploy/debian/README.md.
deb: deps
	$(CARGO) build --release -p vswitchd -p vswitchctl -p vswitch-cni
	bash deploy/debian/build-deb.sh --bin-dir target/release --out target/deb

# The workspace checked for aarch64 (BlueField's Arm cores) against Debian's arm64
# DPDK headers, and dataplane's unit tests run under qemu-aarch64 (root; installs
# the cross gcc and qemu-user). deploy/bluefield/README.md.
check-aarch64: deps
	bash deploy/bluefield/check-aarch64.sh

# Every test this machine can run: unit, EAL (each in its own process), system tests
# in network namespaces (they need root and skip with a message otherwise).
test: deps
	# System tests run the daemons; test harnesses do not build other packages' binaries.
	$(CARGO) build --workspace --bins
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=1
endif
	# The shared build (VSWITCH_DPDK_LINK=shared, EAL loading its plugins) still
	# links and finds its drivers: pmd-shims' tests, in a target directory of its own.
	VSWITCH_DPDK_LINK=shared CARGO_TARGET_DIR=target/shared $(CARGO) test -p pmd-shims --no-fail-fast

lint: deps
	$(CARGO) fmt --all -- --check
	# --all-features: the worker bench needs dataplane's `testio` (its only feature).
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

fmt:
	$(CARGO) fmt --all

# Builds the fuzz targets and runs each briefly (FUZZ_SECONDS, default 10); longer
# runs by hand: dataplane/fuzz/scripts/fuzz.sh 600. cargo-fuzz is installed into
# .tools/ inside the repository, never into the user's cargo.
FUZZ_SECONDS ?= 10
fuzz-smoke: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || [ -x .tools/bin/cargo-fuzz ] || \
		$(CARGO) install cargo-fuzz --locked --root .tools
	PATH="$(CURDIR)/.tools/bin:$$PATH" sh dataplane/fuzz/scripts/fuzz.sh $(FUZZ_SECONDS)

# pcap->null forwarding rate on one worker, beside dpdk-testpmd io-forward, both on
# hugepages (bench-hugepages is defined below).
bench-floor: release bench-hugepages
	python3 bench/scripts/pcap_null.py

clean:
	$(CARGO) clean

# OVS-DPDK (Debian's openvswitch-switch-dpdk) for the OVS comparison:
# bench/scripts/ovs_dpdk.py run --pcap P --flows F [--setup S] --core 1
.PHONY: bench-deps
bench-deps: deps
	bash bench/scripts/install-ovs.sh

# bench/SCENARIOS.md: every scenario's traffic, vswitchd config and OVS rules,
# written by vswitch-bench itself (a test in bench/tests/cli.rs keeps it current).
.PHONY: bench-docs
bench-docs: deps
	$(CARGO) run --release -q -p bench --bin vswitch-bench -- scenarios > bench/SCENARIOS.md

# 2 MiB hugepages for the benchmarks (HUGEPAGES pages, default 3 GiB; root):
# vswitch-bench uses them for all three forwarders when they are there.
HUGEPAGES ?= 1536
.PHONY: bench-hugepages
bench-hugepages:
	bash bench/scripts/hugepages.sh $(HUGEPAGES)

# vswitchd beside dpdk-testpmd io (the floor) and OVS-DPDK, every scenario, 64 B,
# 10 s windows, on hugepages (BENCH_ARGS adds e.g. --flows 1k, --json, --no-ovs).
# bench-smoke: the short l2 comparison of bench/tests/compare.rs (root only).
BENCH_ARGS ?=
.PHONY: bench bench-smoke
bench: release bench-hugepages
	./target/release/vswitch-bench compare all --size 64 --seconds 10 --warmup 2 --core 1 $(BENCH_ARGS)

bench-smoke: release
	$(CARGO) test --release -p bench --test compare -- --nocapture
