"""Deterministic workload for the storage fault tests, and the writer child of the kill test.

Every transaction is identified by (partition, k), k counting the partition's transactions from 0.
Its content (events, streams, payloads, ids) is a pure function of (partition, k), and because a
stream lives in exactly one partition, the positions (partition sequence, stream versions) of
transaction k follow from the transactions 0..k-1 of its partition. So given how many transactions
of a partition are present, the parent knows the partition's exact expected content.

Run as a script (``python storage_writer_child.py DATA_DIR SEED``) it opens the store, checks that
the stored state is a prefix of the model (whole transactions only), resumes each partition at its
next transaction with exact expected versions, and appends in a loop: a batch of transactions,
``flush_all``, then one JSON line per acknowledged (durable) transaction on stdout. Any surprise
(a wrong resume position, a version conflict, a ticket that is not done) ends it with a traceback
and a non-zero exit code, which the parent treats as a failure.

``python storage_writer_child.py --append-and-exit DIR SETTINGS_JSON MIN_BYTES`` is a shorter
session for the corruption tests: append, then exit without closing (a crash).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys

from sierradb.storage import EMPTY, NewEvent, Store

PARTITIONS = 4
BUCKETS = 2
SEGMENT_SIZE_BYTES = 128 * 1024
CHECKPOINT_INTERVAL_BYTES = 16 * 1024
STREAMS_PER_PARTITION = 5
TERM = 3
BASE_TIME_MS = 1_700_000_000_000


def partition_key(p: int) -> bytes:
    return hashlib.blake2b(b"pkey%d" % p, digest_size=16).digest()


def stream_id(p: int, s: int) -> bytes:
    return b"p%d-stream-%d" % (p, s)


def all_streams(p: int) -> list[bytes]:
    return [stream_id(p, s) for s in range(STREAMS_PER_PARTITION)]


def payload_bytes(p: int, k: int, i: int, size: int) -> bytes:
    seed = hashlib.blake2b(b"payload %d %d %d" % (p, k, i), digest_size=32).digest()
    reps = size // len(seed) + 1
    return (seed * reps)[:size]


class TxnSpec:
    """The fixed content of transaction (p, k): everything except positions."""

    __slots__ = ("p", "k", "transaction_id", "events")

    def __init__(self, p: int, k: int) -> None:
        rng = random.Random(f"txn {p} {k}")
        roll = rng.random()
        if roll < 0.55:
            n = 1
        elif roll < 0.95:
            n = rng.randint(2, 6)
        else:
            n = rng.randint(7, 24)
        self.p = p
        self.k = k
        self.transaction_id = hashlib.blake2b(b"txn %d %d" % (p, k), digest_size=16).digest()
        events = []
        for i in range(n):
            s = rng.randrange(STREAMS_PER_PARTITION)
            size = rng.randint(0, 700) if rng.random() < 0.97 else rng.randint(3000, 9000)
            ts = BASE_TIME_MS + k * 7 + i
            event_id = ts.to_bytes(6, "big") + p.to_bytes(2, "big") + k.to_bytes(4, "big")
            event_id += i.to_bytes(4, "big")
            events.append(
                (
                    event_id,
                    stream_id(p, s),
                    b"Evt%d" % rng.randrange(4),
                    ts,
                    # The event count goes into the metadata, so a reader can tell whether a
                    # transaction is complete without the model.
                    json.dumps({"p": p, "k": k, "i": i, "n": n}).encode(),
                    payload_bytes(p, k, i, size),
                )
            )
        self.events = events


def parse_metadata(metadata: bytes) -> tuple[int, int, int, int]:
    d = json.loads(metadata)
    return d["p"], d["k"], d["i"], d["n"]


class PlacedTxn:
    """A transaction with the positions it gets when appended after its predecessors."""

    __slots__ = ("spec", "first_sequence", "versions")

    def __init__(self, spec: TxnSpec, first_sequence: int, versions: list[int]) -> None:
        self.spec = spec
        self.first_sequence = first_sequence
        self.versions = versions

    @property
    def last_sequence(self) -> int:
        return self.first_sequence + len(self.spec.events) - 1

    def expected_events(self) -> list[tuple]:
        """The stored events as ``storage.Event`` field tuples, in order."""
        spec = self.spec
        n = len(spec.events)
        out = []
        for i, (eid, sid, name, ts, meta, payload) in enumerate(spec.events):
            out.append(
                (
                    eid,
                    partition_key(spec.p),
                    spec.p,
                    spec.transaction_id,
                    self.first_sequence + i,
                    self.versions[i],
                    ts,
                    sid,
                    name,
                    meta,
                    payload,
                    TERM,
                    i == n - 1,
                )
            )
        return out


class PartitionModel:
    """Transactions 0, 1, 2, ... of one partition, placed, generated on demand."""

    def __init__(self, p: int) -> None:
        self.p = p
        self.txns: list[PlacedTxn] = []
        self.next_sequence = 0
        self.next_version: dict[bytes, int] = {}
        self.seq_to_txn: list[int] = []  # sequence -> k

    def txn(self, k: int) -> PlacedTxn:
        while len(self.txns) <= k:
            self._extend()
        return self.txns[k]

    def _extend(self) -> None:
        k = len(self.txns)
        spec = TxnSpec(self.p, k)
        versions = []
        for _eid, sid, *_rest in spec.events:
            v = self.next_version.get(sid, 0)
            versions.append(v)
            self.next_version[sid] = v + 1
        placed = PlacedTxn(spec, self.next_sequence, versions)
        self.txns.append(placed)
        self.next_sequence += len(spec.events)
        self.seq_to_txn.extend([k] * len(spec.events))

    def txn_of_sequence(self, seq: int) -> PlacedTxn:
        while self.next_sequence <= seq:
            self._extend()
        return self.txns[self.seq_to_txn[seq]]

    def end_of(self, count: int) -> int:
        """Partition sequence after the first `count` transactions."""
        return 0 if count == 0 else self.txn(count - 1).last_sequence + 1

    def stream_versions_after(self, count: int) -> dict[bytes, int | None]:
        """Last version of each stream after the first `count` transactions (None: empty)."""
        last: dict[bytes, int | None] = dict.fromkeys(all_streams(self.p))
        for k in range(count):
            t = self.txn(k)
            for (_eid, sid, *_rest), v in zip(t.spec.events, t.versions, strict=True):
                last[sid] = v
        return last


# ------------------------------------------------------------------------------ the child


def _stored_txn_count(store: Store, p: int) -> int:
    """How many whole transactions partition p holds; fails if the last one is partial."""
    end = store.durable_next(p)
    if end == 0:
        return 0
    events, _ = store.read_partition(p, end - 1, None, 1)
    assert len(events) == 1 and events[0].partition_sequence == end - 1, (p, end, events)
    ev = events[0]
    ep, k, i, n = parse_metadata(ev.metadata)
    assert ep == p, f"partition {p}: last event belongs to partition {ep}"
    assert i == n - 1 and ev.txn_last, f"partition {p}: last stored event {i}/{n} of txn {k}"
    return k + 1


def main(argv: list[str]) -> int:
    data_dir, seed = argv[1], int(argv[2])
    out = sys.stdout
    out.write("opening\n")
    out.flush()
    store = Store.open(
        data_dir,
        partitions=PARTITIONS,
        buckets=BUCKETS,
        segment_size_bytes=SEGMENT_SIZE_BYTES,
        sync=True,
        checkpoint_interval_bytes=CHECKPOINT_INTERVAL_BYTES,
    )
    models = [PartitionModel(p) for p in range(PARTITIONS)]
    next_k = []
    known: dict[tuple[int, bytes], int | None] = {}
    for p in range(PARTITIONS):
        store.set_watermark(p, store.durable_next(p))
        count = _stored_txn_count(store, p)
        m = models[p]
        assert m.end_of(count) == store.durable_next(p), (
            f"partition {p}: {count} transactions should end at {m.end_of(count)}, "
            f"the store ends at {store.durable_next(p)}"
        )
        next_k.append(count)
        model_versions = m.stream_versions_after(count)
        for sid in all_streams(p):
            v = store.last_stream_version(p, sid)
            assert v == model_versions[sid], (
                f"partition {p} stream {sid!r}: store says {v}, model {model_versions[sid]}"
            )
            known[(p, sid)] = v
    out.write("ready " + json.dumps(next_k) + "\n")
    out.flush()

    rng = random.Random(seed)
    while True:
        batch = []
        for _ in range(rng.randint(1, 6)):
            p = rng.randrange(PARTITIONS)
            k = next_k[p]
            next_k[p] += 1
            placed = models[p].txn(k)
            new_events = []
            for eid, sid, name, ts, meta, payload in placed.spec.events:
                last = known[(p, sid)]
                new_events.append(
                    NewEvent(eid, sid, name, ts, meta, payload, EMPTY if last is None else last)
                )
                known[(p, sid)] = 0 if last is None else last + 1
            ticket = store.append_leader(
                p, partition_key(p), placed.spec.transaction_id, new_events, TERM
            )
            assert ticket.first_sequence == placed.first_sequence, (ticket, placed.first_sequence)
            assert ticket.versions == placed.versions, (ticket.versions, placed.versions)
            batch.append((placed, ticket))
        store.flush_all()
        lines = []
        for placed, ticket in batch:
            assert ticket.done and ticket.error is None, ticket
            lines.append(
                json.dumps(
                    {
                        "p": placed.spec.p,
                        "k": placed.spec.k,
                        "first": ticket.first_sequence,
                        "last": ticket.last_sequence,
                        "versions": ticket.versions,
                        "ids": [e[0].hex() for e in placed.spec.events],
                    }
                )
            )
        for p in range(PARTITIONS):
            store.set_watermark(p, store.durable_next(p))
        # One write per flush: the lines of a batch reach the pipe together.
        os.write(out.fileno(), ("\n".join(lines) + "\n").encode())


def append_and_exit(argv: list[str]) -> None:
    """``--append-and-exit DIR SETTINGS_JSON MIN_BYTES``: a session that ends in a crash.

    Opens the store with the given settings, appends the next transactions of the partitions
    (newest partition first, one flush each) until at least MIN_BYTES are durable, prints the
    transaction count of every partition as JSON and exits without closing the store, as a crash
    right after the last acknowledgement would.
    """
    data_dir, settings, min_bytes = argv[2], json.loads(argv[3]), int(argv[4])
    store = Store.open(data_dir, **settings)
    partitions = settings["partitions"]
    models = [PartitionModel(p) for p in range(partitions)]
    counts = []
    for p in range(partitions):
        store.set_watermark(p, store.durable_next(p))
        counts.append(_stored_txn_count(store, p))
        assert models[p].end_of(counts[p]) == store.durable_next(p), p
    written = 0
    while written < min_bytes:
        for p in reversed(range(partitions)):
            placed = models[p].txn(counts[p])
            new_events = [
                NewEvent(eid, sid, name, ts, meta, payload, EMPTY if v == 0 else v - 1)
                for (eid, sid, name, ts, meta, payload), v in zip(
                    placed.spec.events, placed.versions, strict=True
                )
            ]
            ticket = store.append_leader(
                p, partition_key(p), placed.spec.transaction_id, new_events, TERM
            )
            assert ticket.first_sequence == placed.first_sequence, ticket
            store.flush_all()
            assert ticket.done, ticket
            counts[p] += 1
            written = store.statistics().bytes_written
    sys.stdout.write(json.dumps(counts) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "--append-and-exit":
        append_and_exit(sys.argv)
    sys.exit(main(sys.argv))
