#!/usr/bin/env python3
"""A TCP peer for the demo and the system tests: one side sends N random bytes, the
other receives them; each writes "<bytes> <sha256>" so the two ends can be compared."""
import argparse
import hashlib
import os
import socket
import sys
import time


def serve(args):
    srv = socket.socket(socket.AF_INET6 if ":" in args.bind else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.bind, args.port))
    srv.listen(1)
    srv.settimeout(args.timeout)
    conn, _ = srv.accept()
    conn.settimeout(args.timeout)
    digest, total = hashlib.sha256(), 0
    while True:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
    conn.close()
    with open(args.out, "w") as f:
        f.write(f"{total} {digest.hexdigest()}\n")


def send(args):
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            conn = socket.create_connection((args.host, args.port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    conn.settimeout(args.timeout)
    digest, left = hashlib.sha256(), args.bytes
    while left:
        chunk = os.urandom(min(left, 1 << 16))
        conn.sendall(chunk)
        digest.update(chunk)
        left -= len(chunk)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)  # wait for the receiver to close: all bytes were read
    conn.close()
    with open(args.out, "w") as f:
        f.write(f"{args.bytes} {digest.hexdigest()}\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "send"])
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--host")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bytes", type=int, default=10_000_000)
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    serve(args) if args.mode == "serve" else send(args)


if __name__ == "__main__":
    sys.exit(main())
