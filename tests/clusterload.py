"""Writers and checkers for replication tests against real node processes.

A ``Writers`` group runs threads, each with its own connection to one node, appending events
with client-generated EVENT_IDs. An append that ends in TIMEOUT, QUORUMFAILED, TRYAGAIN,
NOTLEADER, CLUSTERDOWN or a dropped connection has an unknown outcome, so it is retried with
the same id until it is acknowledged (the documented, safe way to find out). The history
checker then verifies every acknowledged event is present exactly once on every replica, that
the replicas' logs are identical, and that each stream's versions are gapless.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import redis

from sierradb.node.identifiers import (
    format_uuid,
    new_event_id,
    partition_hash,
    partition_key_for_stream,
)

RETRYABLE = ("TIMEOUT", "QUORUMFAILED", "TRYAGAIN", "NOTLEADER", "CLUSTERDOWN", "INSUFFICIENT")


@dataclass
class Acked:
    event_id: str
    stream: str
    partition: int
    sequence: int
    version: int


@dataclass
class Writers:
    ports: list[int]
    host: str | list[str] = "127.0.0.1"  # one for all, or one per port
    streams: int = 8
    acked: list[Acked] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # errors that were not retryable
    retries: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=itertools.count)

    def start(self, per_port: int = 2) -> Writers:
        hosts = [self.host] * len(self.ports) if isinstance(self.host, str) else self.host
        for host, port in zip(hosts, self.ports, strict=True):
            for _ in range(per_port):
                n = next(self._ids)
                t = threading.Thread(target=self._run, args=(host, port, n), daemon=True)
                self._threads.append(t)
                t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self, host: str, port: int, writer: int) -> None:
        r = redis.Redis(host=host, port=port, protocol=3, socket_timeout=20)
        i = 0
        while not self._stop.is_set():
            stream = f"w{writer}-s{i % self.streams}"
            key = partition_key_for_stream(stream.encode())
            eid = format_uuid(new_event_id(partition_hash(key)))
            payload = f"{writer}:{i}"
            while not self._stop.is_set():
                try:
                    reply = r.execute_command(
                        "EAPPEND", stream, "Written", "EVENT_ID", eid, "PAYLOAD", payload
                    )
                except (redis.ConnectionError, redis.TimeoutError):
                    self.retries += 1
                    time.sleep(0.05)
                    r = redis.Redis(host=host, port=port, protocol=3, socket_timeout=20)
                    continue
                except redis.ResponseError as e:
                    text = f"{type(e).__name__} {e}"
                    if any(code in text.upper() or code in type(e).__name__.upper()
                           for code in RETRYABLE) or "no leader" in text:  # fmt: skip
                        self.retries += 1
                        time.sleep(0.05)
                        continue
                    with self._lock:
                        self.errors.append(text)
                    break
                with self._lock:
                    self.acked.append(
                        Acked(
                            eid,
                            stream,
                            reply[b"partition_id"],
                            reply[b"partition_sequence"],
                            reply[b"stream_version"],
                        )  # fmt: skip
                    )
                break
            i += 1


def partition_log(
    port: int, partition: int, host: str = "127.0.0.1"
) -> list[tuple[str, int, bytes]]:
    """A node's visible log of one partition: (event id, stream version, stream id)."""
    r = redis.Redis(host=host, port=port, protocol=3, socket_timeout=30)
    out: list[tuple[str, int, bytes]] = []
    start = 0
    while True:
        page = r.execute_command("EPSCAN", partition, start, "+", "COUNT", 1000)
        events = page[b"events"]
        for e in events:
            out.append((e[b"event_id"].decode(), e[b"stream_version"], e[b"stream_id"]))
        if not page[b"has_more"] or not events:
            return out
        start = events[-1][b"partition_sequence"] + 1


def check_history(
    ports: list[int], acked: list[Acked], partitions: int = 32, hosts: list[str] | None = None
) -> int:
    """Every acknowledged append exactly once, at its acknowledged position, on every replica
    that holds the partition; the replicas identical. Returns the events checked."""
    hosts = hosts or ["127.0.0.1"] * len(ports)
    logs = {
        port: {p: partition_log(port, p, host) for p in range(partitions)}
        for host, port in zip(hosts, ports, strict=True)
    }
    by_partition: dict[int, list[Acked]] = {}
    for a in acked:
        by_partition.setdefault(a.partition, []).append(a)
    total = 0
    for p in range(partitions):
        copies = [logs[port][p] for port in ports if logs[port][p]]
        reference = max(copies, key=len, default=[])
        for copy in copies:
            assert copy == reference[: len(copy)], f"partition {p}: replicas disagree"
        ids = [e[0] for e in reference]
        assert len(ids) == len(set(ids)), f"partition {p}: an event id appears twice"
        position = {eid: seq for seq, eid in enumerate(ids)}
        for a in by_partition.get(p, []):
            assert a.event_id in position, f"partition {p}: acknowledged {a.event_id} missing"
            assert position[a.event_id] == a.sequence, f"partition {p}: {a.event_id} moved"
        versions: dict[bytes, int] = {}
        for _eid, version, stream in reference:
            assert version == versions.get(stream, -1) + 1, f"partition {p}: version gap"
            versions[stream] = version
        total += len(reference)
    return total
