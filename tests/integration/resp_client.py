"""Helpers of the protocol integration tests (not a test module).

* ``RawClient``: a blocking socket client with an exact, typed RESP2/RESP3 parser, for the checks
  that a Redis client library hides: simple vs blob strings, maps vs flat arrays, push frames,
  booleans, nulls, and subscription pushes interleaved with replies.
* ``module_node``: start one node for a whole test module (starting a node costs about a second).
* Small adapters for redis-py replies, which are dicts in RESP3 and flat lists in RESP2.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis

from sierradb.node.identifiers import new_event_id, partition_hash, partition_key_for_stream

PARTITIONS = 32


# ------------------------------------------------------------------------------ typed values
class Simple(str):
    """A simple string `+...`."""


class Err(str):
    """An error reply `-...`."""


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push frame `>...`."""


class Map(dict):  # type: ignore[type-arg]
    """A RESP3 map `%...` (insertion order is the wire order)."""


class Verbatim(str):
    """A RESP3 verbatim string `=...` (without its format prefix)."""


class Incomplete(Exception):
    pass


def parse(buf: bytes | bytearray, pos: int = 0) -> tuple[Any, int]:
    """One RESP2/RESP3 value from `buf[pos:]`: (value, next position); Incomplete if cut."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind = buf[pos : pos + 1]
    line = bytes(buf[pos + 1 : end])
    nxt = end + 2
    if kind == b"+":
        return Simple(line.decode()), nxt
    if kind == b"-":
        return Err(line.decode()), nxt
    if kind == b":":
        return int(line), nxt
    if kind == b"(":
        return int(line), nxt
    if kind == b",":
        return float(line), nxt
    if kind == b"#":
        return line == b"t", nxt
    if kind == b"_":
        return None, nxt
    if kind in (b"$", b"=", b"!"):
        size = int(line)
        if size < 0:
            return None, nxt
        if len(buf) < nxt + size + 2:
            raise Incomplete
        data = bytes(buf[nxt : nxt + size])
        assert buf[nxt + size : nxt + size + 2] == b"\r\n"
        if kind == b"=":
            return Verbatim(data[4:].decode()), nxt + size + 2
        if kind == b"!":
            return Err(data.decode()), nxt + size + 2
        return data, nxt + size + 2
    if kind in (b"*", b">", b"~"):
        size = int(line)
        if size < 0:
            return None, nxt
        items = []
        for _ in range(size):
            item, nxt = parse(buf, nxt)
            items.append(item)
        return (Push(items) if kind == b">" else items), nxt
    if kind == b"%":
        size = int(line)
        result = Map()
        for _ in range(size):
            key, nxt = parse(buf, nxt)
            value, nxt = parse(buf, nxt)
            result[key] = value
        return result, nxt
    raise AssertionError(f"unknown RESP type {kind!r} in {bytes(buf[pos : pos + 40])!r}")


def encode_command(*args: Any) -> bytes:
    out = bytearray(b"*%d\r\n" % len(args))
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = str(arg).encode()
        out += b"$%d\r\n%b\r\n" % (len(arg), arg)
    return bytes(out)


class RawClient:
    """A plain socket speaking RESP; `read()` returns the next frame, typed exactly."""

    def __init__(
        self, port: int, protocol: int = 2, timeout: float = 10.0, sock: socket.socket | None = None
    ) -> None:
        """Connects to `port`, or speaks over `sock`, connected already (its options set)."""
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()
        if protocol == 3:
            hello = self.call("HELLO", 3)
            assert isinstance(hello, Map), hello

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: Any) -> None:
        self.sock.sendall(encode_command(*args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float | None = None) -> Any:
        """The next frame; TimeoutError if none arrives in time, EOFError if the server closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                value, pos = parse(self.buf)
            except Incomplete:
                pass
            else:
                del self.buf[:pos]
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                raise TimeoutError("no complete frame in time") from None
            if not data:
                raise EOFError("server closed the connection")
            self.buf += data

    def call(self, *args: Any) -> Any:
        self.send(*args)
        return self.read()

    def expect_nothing(self, seconds: float) -> None:
        """Assert that no frame arrives within `seconds`."""
        try:
            frame = self.read(timeout=seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame!r}")

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        try:
            self.read(timeout=timeout)
        except EOFError:
            return True
        except ConnectionResetError:
            return True
        return False


# --------------------------------------------------------------------------- node fixtures
def module_node(tmp_path_factory: Any, *args: str) -> Iterator[Any]:
    """Generator for a module-scoped fixture: one node process for many tests."""
    from nodeproc import NodeProcess  # tests/nodeproc.py, on sys.path under pytest

    node = NodeProcess(tmp_path_factory.mktemp("node"), *args)
    try:
        node.start()
        yield node
    finally:
        node.kill()


def client(port: int, protocol: int = 2, **kwargs: Any) -> redis.Redis:
    """A redis-py client whose INFO reply is returned as sent (INFO CACHE is a map)."""
    r = redis.Redis(port=port, protocol=protocol, socket_timeout=30, **kwargs)
    r.set_response_callback("INFO", lambda response, **_: response)
    return r


# --------------------------------------------------------------------------------- adapters
# Fields that are simple strings in RESP3 and bulk strings in RESP2 (PROTOCOL.md point 14): as_dict
# gives them as text in both, so that tests compare values once; the shape tests check the types.
UUID_FIELDS = frozenset({b"event_id", b"partition_key", b"transaction_id"})


def string_type(protocol: int) -> type:
    """The wire type of a non-status string: simple in RESP3, bulk (bytes) in RESP2."""
    return Simple if protocol == 3 else bytes


def as_dict(reply: Any) -> dict:
    """A RESP3 map or a RESP2 flat key/value array as a dict with bytes keys (UUID fields as
    text)."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        assert isinstance(reply, list) and len(reply) % 2 == 0, reply
        items = list(zip(reply[::2], reply[1::2], strict=True))
    out = {}
    for k, v in items:
        key = k.encode() if isinstance(k, str) else k
        out[key] = v.decode() if key in UUID_FIELDS and isinstance(v, bytes) else v
    return out


def scan(reply: Any) -> tuple[bool, list[dict]]:
    """(has_more, events as dicts) of an ESCAN/EPSCAN reply in either protocol."""
    d = as_dict(reply)
    return bool(d[b"has_more"]), [as_dict(e) for e in d[b"events"]]


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def stream_in_partition(partition: int, prefix: str = "p") -> str:
    """A fresh stream id whose default partition key lands in `partition`."""
    while True:
        sid = unique(prefix)
        if partition_hash(partition_key_for_stream(sid.encode())) % PARTITIONS == partition:
            return sid


def key_in_partition(partition: int) -> uuid.UUID:
    """A random partition key landing in `partition`."""
    while True:
        key = uuid.uuid4()
        if partition_hash(key.bytes) % PARTITIONS == partition:
            return key


def partition_of_stream(stream_id: str) -> int:
    return partition_hash(partition_key_for_stream(stream_id.encode())) % PARTITIONS


def event_id_for_stream(stream_id: str) -> str:
    """A valid EVENT_ID for an append to `stream_id` with its default partition key."""
    pk = partition_key_for_stream(stream_id.encode())
    return str(uuid.UUID(bytes=new_event_id(partition_hash(pk))))


def event_id_for_key(key: uuid.UUID) -> str:
    return str(uuid.UUID(bytes=new_event_id(partition_hash(key.bytes))))


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)
