#!/usr/bin/env python3
"""Prints vswitchd's stats file (JSON) as tables: ports, then drops by reason."""
import json
import sys

s = json.load(open(sys.argv[1]))
cols = ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "dropped"]
print(f"{'port':<10}" + "".join(f"{c:>14}" for c in cols) + f"{'link':>8}")
for p in s["ports"]:
    link = "up" if p.get("link_up") else "down"
    print(f"{p['name']:<10}" + "".join(f"{p.get(c, 0):>14}" for c in cols) + f"{link:>8}")
drops = {k: v for k, v in s.get("drops", {}).items() if v}
print("drops: " + (", ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"))
for w in s.get("workers", []):
    print(f"worker {w['index']} on core {w['core']}: rx {w['rx_packets']} packets, "
          f"{w['busy_rounds']} busy / {w['idle_rounds']} idle poll rounds")
