"""A TCP proxy between clients and a real node that injects transport faults on demand.

It forwards bytes both ways, parsing requests (hiredis) so it can count them and act on request
boundaries. Faults: cut a connection once the node has replied (the request was executed, its
reply never arrives), answer requests with a given error reply instead of forwarding them (what a
cluster node says when it cannot take a write), or freeze the open connections (nothing moves
either way, as with a hung peer).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

import hiredis

RECEIVE_BYTES = 65536


def encode_request(args: Sequence[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Pair:
    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.frozen = threading.Event()
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def requests(self) -> None:
        reader = hiredis.Reader()
        try:
            while not self.closed.is_set():
                data = self.client.recv(RECEIVE_BYTES)
                if not data:
                    break
                reader.feed(data)
                while (request := reader.gets()) is not False:
                    reply = self.proxy._on_request(request)  # counted even when frozen
                    if self.frozen.is_set():
                        continue
                    if reply is None:
                        self.upstream.sendall(encode_request(request))
                    else:
                        self.client.sendall(reply)
        except OSError:
            pass
        self.close()

    def replies(self) -> None:
        try:
            while not self.closed.is_set():
                data = self.upstream.recv(RECEIVE_BYTES)
                if not data or self.proxy._drop_reply():
                    break
                if self.frozen.is_set():
                    self.closed.wait()
                    break
                self.client.sendall(data)
        except OSError:
            pass
        self.close()


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commands: list[str] = []  # the name of every request received, in order
        self._lock = threading.Lock()
        self._drop_replies = 0
        self._answers: list[bytes] = []
        self._pairs: list[_Pair] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ---------------------------------------------------------------------------- faults
    def drop_next_replies(self, count: int = 1) -> None:
        """Cut the connection instead of forwarding the next `count` replies."""
        with self._lock:
            self._drop_replies += count

    def answer_next_requests(self, reply: bytes, count: int = 1) -> None:
        """Answer the next `count` requests with `reply` (e.g. b"-TRYAGAIN ...\\r\\n")
        instead of forwarding them."""
        with self._lock:
            self._answers += [reply] * count

    def freeze(self) -> None:
        """Stop forwarding on every open connection (new ones work normally)."""
        with self._lock:
            for pair in self._pairs:
                pair.frozen.set()

    def cut_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def count(self, command: str) -> int:
        with self._lock:
            return self.commands.count(command)

    def wait_for(self, command: str, count: int, timeout_s: float = 10.0) -> int:
        """The number of `command` requests received, once it reaches `count` (or the
        timeout passed): requests a client does not wait a reply for arrive in their time."""
        deadline = time.monotonic() + timeout_s
        while self.count(command) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.count(command)

    def close(self) -> None:
        self._stopped = True
        self.listener.close()
        self.cut_all()

    # ------------------------------------------------------------------------ internals
    def _on_request(self, request: list[bytes]) -> bytes | None:
        with self._lock:
            self.commands.append(request[0].decode().upper())
            if self._answers:
                return self._answers.pop(0)
        return None

    def _drop_reply(self) -> bool:
        with self._lock:
            if self._drop_replies:
                self._drop_replies -= 1
                return True
        return False

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            pair = _Pair(self, client, upstream)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=pair.requests, daemon=True).start()
            threading.Thread(target=pair.replies, daemon=True).start()
