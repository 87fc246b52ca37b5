#!/usr/bin/env bash
# Reserves 2 MiB hugepages and mounts hugetlbfs, for benchmarks (root).
#
#   bench/scripts/hugepages.sh [PAGES]     default 1536 pages = 3 GiB
#
# vswitch-bench runs all three forwarders on hugepages when the machine has them
# (`--memory auto`); with 4 KiB pages the dTLB misses on mbufs cost even testpmd io a
# third of its rate. Idempotent: it only raises the reservation, never lowers one
# that is already larger, and mounts hugetlbfs only when none is mounted. The pages
# stay reserved until `echo 0 > /proc/sys/vm/nr_hugepages`.
set -euo pipefail
want="${1:-1536}"
case "$want" in ''|*[!0-9]*) echo "hugepages.sh: PAGES must be a number, got '$want'" >&2; exit 2 ;; esac
nr=/proc/sys/vm/nr_hugepages
have="$(cat "$nr")"
if [ "$have" -lt "$want" ]; then
    echo "$want" > "$nr"
    # The kernel reserves what it can find contiguous; say so if it fell short.
    got="$(cat "$nr")"
    if [ "$got" -lt "$want" ]; then
        echo "hugepages.sh: asked for $want pages, the kernel reserved $got" >&2
    fi
fi
if ! awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages
fi
grep -E '^(HugePages_Total|HugePages_Free|Hugepagesize)' /proc/meminfo
