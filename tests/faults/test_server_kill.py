"""SIGKILL a node under concurrent load, again and again; every acknowledged event survives.

Several client threads (redis-py, RESP2 and RESP3) append to streams that only they write, with
exact `EXPECTED_VERSION`s, using single-event `EAPPEND` and multi-event `EMAPPEND` (several
streams of one partition key, sometimes one stream twice). Every payload is unique, so each
stored event can be traced back to the request that wrote it. The node is killed with SIGKILL at
a random moment and restarted on the same data dir. Then, over the whole history:

- every partition, scanned from sequence 0 with EPSCAN, is gapless and holds only events that
  some request wrote, each once;
- every acknowledged request is there with the event ids, positions and content of its reply;
- a request whose outcome is unknown (in flight at the kill) is there completely or not at all,
  and so is every transaction: no half transaction is visible;
- every stream's versions are gapless and ESCAN agrees with the partition scan; EGET finds the
  events acknowledged in the round.

The writers then resume from what is stored, with exact expected versions again, so a lost or
duplicated write shows up as `WRONGVER` in the next round.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sierradb.node.identifiers import partition_id

PARTITIONS = 8
FLAGS = ("--partitions", str(PARTITIONS), "--buckets", "2", "--segment-size", "256KiB")
WRITERS = 4
GROUPS_PER_WRITER = 3  # a group: one partition key and the streams bound to it
STREAMS_PER_GROUP = 2
KILLS = 12
LOAD_S = (0.05, 0.8)  # the kill lands this long after the load started
SCAN_COUNT = 5000


def as_map(value: object) -> dict:
    """A RESP3 map or a RESP2 flat key/value array as a dict."""
    if isinstance(value, dict):
        return value
    assert isinstance(value, list) and len(value) % 2 == 0, value
    return dict(zip(value[::2], value[1::2], strict=True))


def client(port: int, protocol: int = 3) -> redis.Redis:
    # No retries: a resent append would make the outcome of the first one unknowable here.
    return redis.Redis(port=port, protocol=protocol, retry=Retry(NoBackoff(), 0), socket_timeout=30)


@dataclass
class Op:
    """One append request: its events as (stream, event name, payload), and its reply."""

    partition_key: str
    events: list[tuple[str, str, bytes]]
    multi: bool  # EMAPPEND (else EAPPEND)
    command: list[object] = field(default_factory=list)
    reply: dict | None = None  # the acknowledgement, if one came


@dataclass
class Group:
    partition_key: str
    streams: list[str]


class Writer(threading.Thread):
    """Appends until its connection breaks; every stream it writes is its own."""

    def __init__(self, index: int, groups: list[Group], versions: dict[str, int]) -> None:
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index = index
        self.groups = groups
        self.versions = versions  # stream -> number of events (shared model, this writer's keys)
        self.port = 0
        self.round = 0
        self.rng = random.Random()
        self.acked: list[Op] = []
        self.unknown: list[Op] = []
        self.errors: list[str] = []

    def prepare(self, port: int, round_: int, seed: int) -> None:
        self.port = port
        self.round = round_
        self.rng = random.Random(seed)
        self.acked, self.unknown, self.errors = [], [], []

    def _payload(self, n: int, i: int) -> bytes:
        pad = "x" * self.rng.randrange(0, 300)
        return f"w{self.index}/r{self.round}/op{n}/e{i}/{pad}".encode()

    def _next_op(self, n: int) -> Op:
        group = self.rng.choice(self.groups)
        if self.rng.random() < 0.5:
            stream = self.rng.choice(group.streams)
            op = Op(group.partition_key, [(stream, "Single", self._payload(n, 0))], multi=False)
            version = self.versions[stream]
            op.command = [
                "EAPPEND", stream, "Single",
                "PARTITION_KEY", group.partition_key,
                "EXPECTED_VERSION", version - 1 if version else "empty",
                "PAYLOAD", op.events[0][2],
                "METADATA", f"meta-{n}",
            ]  # fmt: skip
            return op
        size = self.rng.randint(2, 4)
        streams = [self.rng.choice(group.streams) for _ in range(size)]
        op = Op(group.partition_key, [], multi=True)
        op.command = ["EMAPPEND", group.partition_key]
        running = {}
        for i, stream in enumerate(streams):
            version = running.get(stream, self.versions[stream])
            running[stream] = version + 1
            event = (stream, f"Multi{i}", self._payload(n, i))
            op.events.append(event)
            op.command += [
                stream, event[1],
                "EXPECTED_VERSION", version - 1 if version else "empty",
                "PAYLOAD", event[2],
            ]  # fmt: skip
        return op

    def _check_reply(self, op: Op, reply: dict) -> None:
        pid = partition_id(uuid.UUID(op.partition_key).bytes, PARTITIONS)
        assert reply[b"partition_id"] == pid, reply
        if op.multi:
            first = reply[b"first_partition_sequence"]
            assert reply[b"last_partition_sequence"] == first + len(op.events) - 1, reply
            entries = [as_map(e) for e in reply[b"events"]]
            assert len(entries) == len(op.events), reply
        else:
            entries = [reply]
        for (stream, _, _), entry in zip(op.events, entries, strict=True):
            assert entry[b"stream_version"] == self.versions[stream], (op.command, reply)
            self.versions[stream] += 1

    def run(self) -> None:
        protocol = 2 + self.index % 2
        with client(self.port, protocol) as r:
            n = 0
            while True:
                op = self._next_op(n)
                n += 1
                try:
                    reply = as_map(r.execute_command(*op.command))
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    self.unknown.append(op)  # the kill: outcome unknown
                    return
                except redis.ResponseError as e:
                    self.errors.append(f"{op.command[:2]}: {e}")
                    return
                try:
                    self._check_reply(op, reply)
                except AssertionError as e:
                    self.errors.append(f"bad reply: {e}")
                    return
                op.reply = reply
                self.acked.append(op)


def scan_partition(r: redis.Redis, p: int) -> list[dict]:
    events: list[dict] = []
    start = 0
    while True:
        scan = as_map(r.execute_command("EPSCAN", p, start, "+", "COUNT", SCAN_COUNT))
        batch = [as_map(e) for e in scan[b"events"]]
        events += batch
        if not scan[b"has_more"]:
            return events
        assert batch, scan
        start = batch[-1][b"partition_sequence"] + 1


def scan_stream(r: redis.Redis, stream: str, pk: str) -> list[dict]:
    events: list[dict] = []
    start = 0
    while True:
        scan = as_map(
            r.execute_command("ESCAN", stream, start, "+", "PARTITION_KEY", pk, "COUNT", SCAN_COUNT)
        )
        batch = [as_map(e) for e in scan[b"events"]]
        events += batch
        if not batch or len(batch) < SCAN_COUNT:
            return events
        start = batch[-1][b"stream_version"] + 1


class History:
    """Every request made so far: the acknowledged ones and those whose outcome is unknown."""

    def __init__(self) -> None:
        self.acked: list[Op] = []  # acknowledged, or found stored after an unknown outcome
        self.unknown: list[Op] = []  # in flight at the latest kill
        self.absent: list[Op] = []  # in flight at a kill and not stored: must never appear
        self.groups: list[Group] = []

    def verify(self, r: redis.Redis, versions: dict[str, int], context: str) -> dict[str, int]:
        """Check the store against the history; returns each stream's event count."""
        by_payload: dict[bytes, dict] = {}
        for p in range(PARTITIONS):
            events = scan_partition(r, p)
            seqs = [e[b"partition_sequence"] for e in events]
            assert seqs == list(range(len(events))), f"{context}: partition {p} has gaps"
            assert r.execute_command("EPSEQ", p) == (len(events) - 1 if events else None)
            for e in events:
                assert e[b"partition_id"] == p, e
                assert e[b"payload"] not in by_payload, f"{context}: event stored twice: {e}"
                by_payload[e[b"payload"]] = e

        owner: dict[bytes, Op] = {}
        for op in self.acked + self.unknown:
            for _, _, payload in op.events:
                owner[payload] = op
        stray = [e for payload, e in by_payload.items() if payload not in owner]
        assert not stray, f"{context}: events no live request wrote: {stray[:3]}"

        for op in self.absent:
            for _, _, payload in op.events:
                assert payload not in by_payload, f"{context}: {op.command[:3]} appeared late"
        for op in self.acked:
            stored = [by_payload.get(payload) for _, _, payload in op.events]
            assert all(stored), f"{context}: acknowledged {op.command[:3]} lost: {op.reply}"
            self._check_op(op, stored, context)
            self._check_acknowledged_positions(op, stored, context)
        for op in self.unknown:
            stored = [by_payload.get(payload) for _, _, payload in op.events]
            if any(stored):
                assert all(stored), f"{context}: half of transaction {op.command[:3]} is visible"
                self._check_op(op, stored, context)
                op.reply = self._reply_from(op, stored)  # its positions must not change later
                self.acked.append(op)
            else:
                self.absent.append(op)
        self.unknown = []

        # Transactions are exactly the requests: one id per request, never shared.
        requests_of_txn: dict[bytes, set[int]] = defaultdict(set)
        for e in by_payload.values():
            requests_of_txn[e[b"transaction_id"]].add(id(owner[e[b"payload"]]))
        assert all(len(v) == 1 for v in requests_of_txn.values()), context

        counts: dict[str, int] = {}
        for group in self.groups:
            for stream in group.streams:
                from_partition = sorted(
                    (e for e in by_payload.values() if e[b"stream_id"] == stream.encode()),
                    key=lambda e: e[b"partition_sequence"],
                )
                assert [e[b"stream_version"] for e in from_partition] == list(
                    range(len(from_partition))
                ), f"{context}: stream {stream} versions have gaps"
                assert scan_stream(r, stream, group.partition_key) == from_partition, context
                assert r.execute_command("ESVER", stream, "PARTITION_KEY", group.partition_key) == (
                    len(from_partition) - 1 if from_partition else None
                )
                counts[stream] = len(from_partition)
                assert counts[stream] >= versions[stream], context
        return counts

    @staticmethod
    def _reply_from(op: Op, stored: list) -> dict:
        """The reply an op found stored would have had."""
        entries = [
            {k: e[k] for k in (b"event_id", b"stream_version", b"timestamp")} for e in stored
        ]
        if op.multi:
            return {
                b"first_partition_sequence": stored[0][b"partition_sequence"],
                b"events": entries,
            }
        return {b"partition_sequence": stored[0][b"partition_sequence"], **entries[0]}

    @staticmethod
    def _check_op(op: Op, stored: list, context: str) -> None:
        seqs = [e[b"partition_sequence"] for e in stored]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{context}: {op.command[:3]}"
        txns = {e[b"transaction_id"] for e in stored}
        assert len(txns) == 1, f"{context}: one request, several transactions: {op.command[:3]}"
        single_flag = uuid.UUID(txns.pop().decode()).bytes[8] & 0x80
        assert bool(single_flag) == (len(op.events) == 1), op.command[:3]
        for (stream, name, payload), e in zip(op.events, stored, strict=True):
            assert e[b"stream_id"] == stream.encode()
            assert e[b"event_name"] == name.encode()
            assert e[b"payload"] == payload
            assert e[b"partition_key"].decode() == op.partition_key
        if not op.multi:
            assert stored[0][b"metadata"] == str(op.command[-1]).encode()

    @staticmethod
    def _check_acknowledged_positions(op: Op, stored: list, context: str) -> None:
        reply = op.reply
        assert reply is not None
        if op.multi:
            entries = [as_map(e) for e in reply[b"events"]]
            first = reply[b"first_partition_sequence"]
        else:
            entries = [reply]
            first = reply[b"partition_sequence"]
        for i, (entry, e) in enumerate(zip(entries, stored, strict=True)):
            assert e[b"partition_sequence"] == first + i, f"{context}: moved: {op.command[:3]}"
            assert e[b"event_id"] == entry[b"event_id"], context
            assert e[b"stream_version"] == entry[b"stream_version"], context
            assert e[b"timestamp"] == entry[b"timestamp"], context


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_under_load_loses_no_acknowledged_event(node_factory):
    seed = time.time_ns()
    rng = random.Random(seed)
    context = f"seed {seed}"
    history = History()
    versions: dict[str, int] = {}
    writers: list[list[Group]] = []
    for w in range(WRITERS):
        groups = []
        for g in range(GROUPS_PER_WRITER):
            streams = [f"w{w}-g{g}-s{s}" for s in range(STREAMS_PER_GROUP)]
            groups.append(Group(str(uuid.UUID(int=rng.getrandbits(128), version=4)), streams))
            versions.update(dict.fromkeys(streams, 0))
        writers.append(groups)
        history.groups += groups

    node = node_factory(*FLAGS)
    total_acked = 0
    for round_ in range(KILLS):
        context = f"seed {seed} round {round_}"
        threads = [Writer(i, writers[i], versions) for i in range(WRITERS)]
        for i, t in enumerate(threads):
            t.prepare(node.port, round_, rng.getrandbits(64) + i)
        for t in threads:
            t.start()
        time.sleep(rng.uniform(*LOAD_S))
        node.kill()
        assert node.proc is not None and node.proc.returncode == -9
        for t in threads:
            t.join(30)
            assert not t.is_alive(), f"{context}: a writer hangs"
        errors = [e for t in threads for e in t.errors]
        assert not errors, f"{context}: {errors}\n{node.output()}"
        round_acked = [op for t in threads for op in t.acked]
        history.acked += round_acked
        history.unknown += [op for t in threads for op in t.unknown]
        total_acked += len(round_acked)

        assert "Traceback" not in node.output(), node.output()

        node.start()
        with client(node.port) as r:
            counts = history.verify(r, versions, context)
            expected = []  # (event id, payload) of every event acknowledged in this round
            for op in round_acked:
                entries = [as_map(e) for e in op.reply[b"events"]] if op.multi else [op.reply]
                for entry, (_, _, payload) in zip(entries, op.events, strict=True):
                    expected.append((entry[b"event_id"], payload))
            with r.pipeline(transaction=False) as pipe:
                for event_id, _ in expected:
                    pipe.execute_command("EGET", event_id)
                found = [as_map(e) if e is not None else None for e in pipe.execute()]
            for (event_id, payload), event in zip(expected, found, strict=True):
                assert event is not None, f"{context}: EGET misses {event_id}"
                assert (event[b"event_id"], event[b"payload"]) == (event_id, payload), context
        # Resume from what is stored: the unknown requests that made it count from now on.
        versions.update(counts)
        assert "Traceback" not in node.output(), node.output()
    in_flight_stored = len(history.acked) - total_acked
    print(
        f"seed {seed}: {KILLS} kills, {total_acked} acknowledged requests, in flight at a kill: "
        f"{in_flight_stored} stored, {len(history.absent)} not stored"
    )
    assert total_acked >= KILLS * WRITERS, f"seed {seed}: too little load to mean anything"
    assert node.terminate() == 0
