#!/usr/bin/env python3
"""A paced UDP stream with sequence numbers, for the system tests.

`recv` binds, writes --ready, and counts datagrams until --stop exists and nothing
has arrived for --idle seconds (or --timeout passes); it writes a JSON summary:
distinct sequence numbers, duplicates, the highest one, and the first missing ones.

`send` sends datagrams numbered 0, 1, 2, ... at --rate per second on a fixed
schedule (no drift, no bursts beyond one late tick) until --stop exists or --count
are sent; it writes {"sent": N} to --out. Each datagram is an 8-byte big-endian
sequence number padded to --size bytes."""
import argparse
import json
import os
import socket
import struct
import time


def recv(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((args.bind, args.port))
    s.settimeout(0.1)
    with open(args.ready, "w") as f:
        f.write("ready\n")
    seen = bytearray(args.max)
    distinct = dups = total = 0
    highest = -1
    start = last = time.monotonic()
    while True:
        try:
            data = s.recv(65536)
        except socket.timeout:
            now = time.monotonic()
            if now - start > args.timeout:
                break
            if os.path.exists(args.stop) and now - last >= args.idle:
                break
            continue
        last = time.monotonic()
        total += 1
        if len(data) < 8:
            continue
        (seq,) = struct.unpack_from("!Q", data)
        if seq >= args.max:
            continue
        if seen[seq]:
            dups += 1
        else:
            seen[seq] = 1
            distinct += 1
        highest = max(highest, seq)
    missing = [i for i in range(highest + 1) if not seen[i]][:20]
    with open(args.out, "w") as f:
        json.dump(
            {
                "datagrams": total,
                "distinct": distinct,
                "duplicates": dups,
                "highest": highest,
                "first_missing": missing,
            },
            f,
        )


def send(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((args.host, args.port))
    pad = b"\0" * max(0, args.size - 8)
    period = 1.0 / args.rate
    start = time.monotonic()
    seq = 0
    while seq < args.count:
        # Check the stop file a few times a second, not per datagram.
        if seq % 100 == 0 and os.path.exists(args.stop):
            break
        due = start + seq * period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        s.send(struct.pack("!Q", seq) + pad)
        seq += 1
    with open(args.out, "w") as f:
        json.dump({"sent": seq, "seconds": time.monotonic() - start}, f)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv")
    r.add_argument("--bind", default="0.0.0.0")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--ready", required=True)
    r.add_argument("--stop", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--idle", type=float, default=1.0)
    r.add_argument("--timeout", type=float, default=300.0)
    r.add_argument("--max", type=int, default=10_000_000)
    t = sub.add_parser("send")
    t.add_argument("--host", required=True)
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--rate", type=float, required=True)
    t.add_argument("--count", type=int, required=True)
    t.add_argument("--size", type=int, default=64)
    t.add_argument("--stop", required=True)
    t.add_argument("--out", required=True)
    args = p.parse_args()
    recv(args) if args.cmd == "recv" else send(args)


if __name__ == "__main__":
    main()
