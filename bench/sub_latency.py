#!/usr/bin/env python3
"""Latency from an append's reply to its delivery to a subscriber on another connection.

Usage: sub_latency.py PORT [EVENTS]. Prints `p50_ms=..,p99_ms=..,events=..`.
"""

import socket
import sys
import time

import hiredis


def conn(port: int) -> tuple[socket.socket, hiredis.Reader]:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, hiredis.Reader()


def command(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def read_one(s: socket.socket, r: hiredis.Reader) -> object:
    while True:
        item = r.gets()
        if item is not False:
            return item
        r.feed(s.recv(65536))


def main() -> None:
    port = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    stream = b"latency-%d" % time.time_ns()
    sub, sr = conn(port)
    sub.sendall(command(b"ESUB", stream, b"WINDOW", b"1000000"))
    read_one(sub, sr)  # +id
    read_one(sub, sr)  # subscribe push
    app, ar = conn(port)
    lat = []
    for i in range(n):
        app.sendall(command(b"EAPPEND", stream, b"Tick", b"%d" % i))
        read_one(app, ar)
        replied = time.perf_counter()
        read_one(sub, sr)
        lat.append(time.perf_counter() - replied)
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(f"p50_ms={pct(0.5):.3f},p99_ms={pct(0.99):.3f},events={n}")
    sub.close()
    app.close()


if __name__ == "__main__":
    main()
