"""The image's HEALTHCHECK: PING the node on its own client port over RESP (stdlib only).

Healthy means the node answers clients: `+PONG` to `PING`, after `AUTH` when SIERRA_REQUIREPASS
is set. The port comes from SIERRA_CLIENT_ADDRESS (the image sets 0.0.0.0:9090); a wildcard host
is reached on loopback. Exit 0 when healthy, 1 otherwise, with one line saying why.
"""

import os
import socket
import sys

TIMEOUT_S = 2.0
MAX_REPLY_BYTES = 4096


def command(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_line(sock: socket.socket) -> bytes:
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(MAX_REPLY_BYTES)
        if not chunk or len(reply) > MAX_REPLY_BYTES:
            raise OSError("connection closed before a full reply")
        reply += chunk
    return reply[:-2]


def main() -> int:
    address = os.environ.get("SIERRA_CLIENT_ADDRESS") or "127.0.0.1:9090"
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host != "::" else "::1"
    password = os.environ.get("SIERRA_REQUIREPASS")
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as sock:
            if password:
                sock.sendall(command("AUTH", password))
                reply = read_line(sock)
                if reply != b"+OK":
                    print(f"AUTH answered {reply!r}")
                    return 1
            sock.sendall(command("PING"))
            reply = read_line(sock)
    except OSError as e:
        print(f"no answer on {host}:{port}: {e}")
        return 1
    if reply != b"+PONG":
        print(f"PING answered {reply!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
