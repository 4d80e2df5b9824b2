"""Model-based test of the storage engine: a hypothesis state machine against an in-memory model.

The engine runs on ``MemoryDisk`` (the fault-injecting disk twin), wrapped by ``TwinDisk`` here,
which can also cut the power or fail with ENOSPC at a chosen future operation (a ``pwrite``, an
``fdatasync``, an atomic file replacement, or the atomic write of a named file). The model keeps,
per partition, the acknowledged (durable) log as the exact ``Event`` values reads must return, and
per bucket the queue of units appended but not flushed yet (and the tickets discards dropped).

Rules: leader appends (right and wrong expected versions, foreign partition keys, too-large
transactions), replicated appends, flushes (whole, or in the node's two phases with other work in
between), flushes that fail part-way, discards of a partition's tail with replacement entries
(of acknowledged or of still-queued entries), watermark moves, reads of every kind (partition and
stream ranges with limits and has_more, get_event, find_event, last versions), clean close and
reopen, crash and reopen (with and without a torn last write, and with a power cut during the
recovery itself), and power cuts in the middle of a flush.

After every reopen the store must hold exactly the acknowledged history, field for field; a flush
interrupted by a power cut may additionally keep a prefix of the units it was writing (never half
of one, and nothing at all unless the last write was torn rather than lost). The invariants after
every step compare positions (next sequence, durable end, last entry and its term).

The minimum segment size with payloads of up to 40 KB forces frequent rollovers, a small
checkpoint interval makes recovery start from checkpoints and scan their tails, more streams than
the stream cache holds force tip lookups in the indexes, and a small block cache evicts.

Cases the machine found are kept below it as plain tests.
"""

from __future__ import annotations

import errno
import hashlib
import logging
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sierradb.storage import (
    ANY,
    EMPTY,
    EXISTS,
    Discarded,
    Event,
    MemoryDisk,
    NewEvent,
    PartitionKeyMismatch,
    Store,
    Ticket,
    TransactionTooLarge,
    WriteFailed,
    WrongExpectedVersion,
)
from sierradb.storage.record import raw_header

PARTITIONS = 4
BUCKETS = 2  # bucket b holds partitions b, b + 2: two partitions share every segment
SEGMENT_SIZE = 128 * 1024  # the minimum
CHECKPOINT_INTERVAL = 8192
CACHE_BYTES = 3 * 64 * 1024  # a few blocks, so the block cache evicts
PATH = "/data"
HOT_STREAMS = [b"a", b"a\x00", b"order-17", b"s" * 64, b"user/\xff"]
# More streams than the per-partition stream cache holds (16), so tips get evicted.
STREAMS = HOT_STREAMS + [b"cold-%02d" % i for i in range(20)]
STREAM_CHOICE = st.sampled_from(HOT_STREAMS) | st.sampled_from(STREAMS)
EVENT_NAMES = [b"", b"Created", b"n" * 255]
MAX_PAYLOAD = 40_000
BASE_MS = 1_700_000_000_000

# Files a flush may write atomically (sealing, metadata, checkpoints).
FILE_NAMES = [
    "streams.bloom",
    "data.evts",
    "index.eidx",
    "partition.pidx",
    "stream.sidx",
    "replication.json",
    "active.ckpt",
]

# Log messages of the engine that must never appear in these scenarios.
UNEXPECTED_LOG = ("clamped", "ignoring bad checkpoint", "ignoring stale checkpoint", "rebuilding")


class PowerCut(BaseException):
    """The machine lost power before the operation it interrupts."""


class _Handle:
    """A file handle of ``TwinDisk``: every write and sync first asks the disk for faults."""

    __slots__ = ("path", "_disk", "_inner")

    def __init__(self, disk: TwinDisk, inner) -> None:
        self.path = inner.path
        self._disk = disk
        self._inner = inner

    def pwrite(self, data, offset: int) -> None:
        self._disk.before("write")
        self._inner.pwrite(data, offset)

    def sync(self) -> None:
        self._disk.before("sync")
        self._inner.sync()

    def allocate(self, size: int) -> None:
        self._disk.before("write")
        self._inner.allocate(size)

    def __getattr__(self, name: str):  # pread, size, truncate, map, close, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class TwinDisk:
    """``MemoryDisk`` plus a power cut or one ENOSPC at a chosen future write/sync operation."""

    def __init__(self, seed: int) -> None:
        self.mem = MemoryDisk(seed)
        self.cut_after: int | None = None  # operations allowed before the power goes
        self.cut_kind: str | None = None  # count only these operations ("sync"), or all
        self.fail_kind: str | None = None  # "write" or "sync"
        self.fail_skip = 0  # operations of that kind allowed before one fails
        self.fail_name: str | None = None  # fail the next atomic write of a file of this name

    def before(self, kind: str) -> None:
        if self.cut_after is not None and self.cut_kind in (None, kind):
            if self.cut_after == 0:
                self.cut_after = None
                raise PowerCut(kind)
            self.cut_after -= 1
        if self.fail_kind == kind:
            if self.fail_skip == 0:
                self.fail_kind = None
                raise OSError(errno.ENOSPC, "No space left on device (injected by the test)")
            self.fail_skip -= 1

    def open(self, path: str, create: bool = False) -> _Handle:
        return _Handle(self, self.mem.open(path, create))

    def __getattr__(self, name: str):  # exists, listdir, make_dirs, remove, read_file, ...
        if name.startswith("_") or name == "mem":
            raise AttributeError(name)
        return getattr(self.mem, name)

    def write_atomic(self, path: str, data: bytes) -> None:
        self.before("write")
        if self.fail_name is not None and path.endswith("/" + self.fail_name):
            self.fail_name = None
            raise OSError(errno.ENOSPC, "No space left on device (injected by the test)")
        self.mem.write_atomic(path, data)


class _LogRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Unit:
    """One queued append call, as the model sees it."""

    ticket: Ticket
    partition: int
    discard_from: int | None
    events: list[Event]
    written: bool = False  # taken by a flush's write phase whose apply phase is still to come


def _short(e: Event) -> str:
    digest = hashlib.blake2b(e.payload, digest_size=4).hexdigest()
    return (
        f"Event(id={e.event_id.hex()}, key={e.partition_key.hex()[:8]}, p={e.partition_id}, "
        f"txn={e.transaction_id.hex()[-6:]}, seq={e.partition_sequence}, "
        f"ver={e.stream_version}, ts={e.timestamp_ms}, stream={e.stream_id!r}, "
        f"name={e.event_name[:10]!r}, meta={e.metadata!r}, payload={len(e.payload)}B/{digest}, "
        f"term={e.term}, txn_last={e.txn_last})"
    )


def assert_events(got: list[Event], expected: list[Event], what: str) -> None:
    if got == expected:
        return
    lines = [f"{what}: {len(got)} events, expected {len(expected)}"]
    for i in range(max(len(got), len(expected))):
        g = _short(got[i]) if i < len(got) else "-"
        x = _short(expected[i]) if i < len(expected) else "-"
        if g != x or (i < len(got) and i < len(expected) and got[i] != expected[i]):
            lines.append(f"  [{i}] got      {g}\n  [{i}] expected {x}")
    raise AssertionError("\n".join(lines))


def current_version(log: list[Event], sid: bytes) -> tuple[int | None, bytes | None]:
    """(version of the stream's last event, its partition key) in a log, or (None, None)."""
    for e in reversed(log):
        if e.stream_id == sid:
            return e.stream_version, e.partition_key
    return None, None


def version_matches(expected: int, current: int | None) -> bool:
    if expected == ANY:
        return True
    if expected == EXISTS:
        return current is not None
    if expected == EMPTY:
        return current is None
    return current == expected


def main_key(p: int) -> bytes:
    return hashlib.blake2b(b"key-%d" % p, digest_size=16).digest()


def alt_key(p: int) -> bytes:
    return hashlib.blake2b(b"other-key-%d" % p, digest_size=16).digest()


class StorageModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.durable: list[list[Event]] = [[] for _ in range(PARTITIONS)]
        self.queue: list[list[Unit]] = [[] for _ in range(BUCKETS)]
        # Tickets of queued units a discard dropped; the bucket's next flush reports them.
        self.dropped: list[list[Ticket]] = [[] for _ in range(BUCKETS)]
        self.term = [1] * PARTITIONS  # the leader term appends use
        self.counter = 0
        self.ids: dict[bytes, int] = {}  # every event id ever used -> its partition
        self.log = _LogRecorder()
        # Sealed segments whose index files were not written when the power went: opening
        # rebuilds them from their data (the one expected "rebuilding" message).
        self.rebuilds_expected: set[str] = set()
        logging.getLogger("sierradb.storage").addHandler(self.log)
        self.disk: TwinDisk
        self.store: Store | None = None
        self.reopens = 0

    # ------------------------------------------------------------------------- helpers
    def _open(self) -> Store:
        return Store.open(
            PATH,
            partitions=PARTITIONS,
            buckets=BUCKETS,
            segment_size_bytes=SEGMENT_SIZE,
            sync=True,
            disk=self.disk,
            cache_capacity_bytes=CACHE_BYTES,
            stream_cache_entries=0,  # the minimum: 16 streams per partition
            checkpoint_interval_bytes=CHECKPOINT_INTERVAL,
        )

    def _crash(self, tear: bool) -> None:
        store = self.store
        if store is not None:
            for b, bucket in enumerate(store.buckets):
                for seg in bucket.unsealed:
                    self.rebuilds_expected.add(f"bucket {b} segment {seg.segment_id}: index files")
                    event("crash with a seal's index files not written")
        self.disk.mem.crash(tear=tear)

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _event_id(self, scattered_time: int | None) -> bytes:
        n = self._next()
        t = BASE_MS + 3 * n if scattered_time is None else scattered_time
        return t.to_bytes(6, "big") + n.to_bytes(10, "big")

    def _projected(self, p: int) -> list[tuple[Event, bool]]:
        """The partition's log once everything queued is written: (event, durable already)."""
        log = [(e, True) for e in self.durable[p]]
        for u in self.queue[p % BUCKETS]:
            if u.partition != p:
                continue
            if u.discard_from is not None:
                del log[u.discard_from :]
            assert all(e.partition_sequence == len(log) + i for i, e in enumerate(u.events))
            log.extend((e, False) for e in u.events)
        return log

    def _projected_events(self, p: int) -> list[Event]:
        return [e for e, _ in self._projected(p)]

    def _apply(self, u: Unit) -> None:
        log = self.durable[u.partition]
        if u.discard_from is not None:
            assert u.discard_from <= len(log)
            del log[u.discard_from :]
        for e in u.events:
            assert e.partition_sequence == len(log)
            log.append(e)

    def _complete(
        self,
        b: int,
        tickets: list[Ticket],
        failure_possible: bool,
        units: list[Unit] | None = None,
        dropped: list[Ticket] | None = None,
    ) -> None:
        """Check a flush's outcome against the queue and move what it wrote to the model.

        A flush reports the tickets discards dropped since the last flush, then those of the
        units it took, in queue order: done ones, then (after a failure) failed ones.
        """
        units = list(self.queue[b]) if units is None else units
        dropped = list(self.dropped[b]) if dropped is None else dropped
        expected = [*dropped, *(u.ticket for u in units)]
        assert [id(t) for t in tickets] == [id(t) for t in expected], (
            f"flush({b}) returned {tickets}, expected {expected}"
        )
        for t in dropped:
            assert isinstance(t.error, Discarded) and not t.done, t
        self.dropped[b] = [t for t in self.dropped[b] if all(t is not d for d in dropped)]
        k = 0
        while k < len(units) and units[k].ticket.done:
            k += 1
        for u in units[:k]:
            assert u.ticket.error is None, u.ticket
        for u in units[k:]:
            assert not u.ticket.done, f"{u.ticket} done after an earlier unit failed"
            assert isinstance(u.ticket.error, WriteFailed), (u.ticket, u.ticket.error)
        if not failure_possible:
            assert k == len(units), f"flush({b}) without faults failed: {units[k].ticket.error}"
        for u in units[:k]:
            self._apply(u)
        if k < len(units):
            event("flush failed part-way" if k else "flush failed")
            for u in units[k:]:
                self.term[u.partition] += 1  # a node bumps its term after a failed write
        self.queue[b] = [u for u in self.queue[b] if all(u is not x for x in units)]
        note(f"flush({b}): {k} done, {len(units) - k} failed, {len(dropped)} dropped before")

    def _forget_queued(self) -> None:
        """The process ended: whatever was queued (and not durable) is gone."""
        self.queue = [[] for _ in range(BUCKETS)]
        self.dropped = [[] for _ in range(BUCKETS)]

    def _read_all(self, p: int) -> list[Event]:
        store = self.store
        assert store is not None
        wm = store.watermark(p)
        got, more = store.read_partition(p, 0, None, wm + 1)
        assert not more
        return got

    def _full_check(self) -> None:
        """Every read path against the model (watermark at the durable end)."""
        store = self.store
        assert store is not None
        for p in range(PARTITIONS):
            assert store.durable_next(p) == len(self.durable[p]), (
                f"partition {p}: durable end {store.durable_next(p)}, model {len(self.durable[p])}"
            )
            # Up to the durable end, unless a queued discard will drop some of it.
            if store.watermark(p) < self._stable_end(p):
                store.set_watermark(p, self._stable_end(p))
            expected = self._visible(p)
            assert_events(self._read_all(p), expected, f"partition {p}")
            assert store.last_partition_sequence(p) == (len(expected) - 1 if expected else None)
            for e in self.durable[p]:
                visible = e.partition_sequence < store.watermark(p)
                assert store.get_event(p, e.event_id) == (e if visible else None), _short(e)
            projected = self._projected(p)
            present = set()
            for e, durable in projected:
                present.add(e.event_id)
                found = store.find_event(p, e.event_id)
                assert found == (e, durable), (_short(e), durable, found)
            for eid, owner in self.ids.items():
                if eid not in present:
                    assert store.find_event(p, eid) is None, (p, eid.hex())
                    if owner == p:
                        assert store.get_event(p, eid) is None, (p, eid.hex())
            for sid in STREAMS:
                mine = [e for e in expected if e.stream_id == sid]
                got, more = store.read_stream(p, sid, 0, None, len(mine) + 1)
                assert_events(got, mine, f"partition {p} stream {sid!r}")
                assert not more
                last = store.last_stream_version(p, sid)
                assert last == (mine[-1].stream_version if mine else None), (p, sid, last)
        self._check_log()

    def _check_log(self) -> None:
        bad = [
            m for m in self.log.messages
            if any(s in m for s in UNEXPECTED_LOG)
            and not any(m.startswith(r) for r in self.rebuilds_expected)
        ]  # fmt: skip
        assert not bad, bad

    def _watermarks(self) -> list[int]:
        store = self.store
        assert store is not None
        return [store.watermark(p) for p in range(PARTITIONS)]

    def _check_recovered_watermarks(self, before: list[int]) -> None:
        """After a crash a watermark is the one last persisted: never above the one set."""
        after = self._watermarks()
        assert all(a <= b for a, b in zip(after, before, strict=True)), (after, before)

    def _after_reopen(self, before: list[int] | None) -> None:
        store = self.store
        assert store is not None
        self.reopens += 1
        if store.statistics().torn_tail_cuts:
            event("recovery cut a torn tail")
        for p in range(PARTITIONS):
            wm = store.watermark(p)
            if before is not None:
                assert wm == before[p], f"partition {p}: watermark {wm} after a clean close"
            assert wm <= store.durable_next(p)
        self._full_check()

    # --------------------------------------------------------------------------- rules
    @initialize(
        seed=st.integers(0, 2**32 - 1), preload=st.sampled_from([0, 1, 2, 3]), data=st.data()
    )
    def start(self, seed: int, preload: int, data: st.DataObject) -> None:
        """Open a fresh data dir; often load a few segments' worth of events first."""
        self.disk = TwinDisk(seed)
        self.store = self._open()
        note(f"open with disk seed {seed}, preload {preload}")
        for _ in range(preload):
            self.append_many(data, 8, True)

    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        """One transaction, any expected versions (often wrong), sometimes a foreign key."""
        self._append(data, bulk=False)

    @rule(data=st.data(), count=st.integers(2, 12), flush=st.booleans())
    def append_many(self, data: st.DataObject, count: int, flush: bool) -> None:
        """Several transactions with large payloads (rollovers), then maybe a flush."""
        for _ in range(count):
            self._append(data, bulk=True)
        if flush:
            self.flush(None)

    def _append(self, data: st.DataObject, bulk: bool) -> None:
        store = self.store
        assert store is not None
        p = data.draw(st.integers(0, PARTITIONS - 1), label="partition")
        n = data.draw(st.integers(1, 3), label="events")
        log = self._projected_events(p)
        if bulk:
            use_alt = False
            first = data.draw(STREAM_CHOICE, label="stream")
            key = current_version(log, first)[1] or main_key(p)
            versions = st.sampled_from(["any", "exact"])
            sizes = st.integers(8_000, MAX_PAYLOAD)
        else:
            use_alt = data.draw(st.integers(0, 9), label="key choice") == 0
            key = alt_key(p) if use_alt else main_key(p)
            versions = st.sampled_from(["any", "exact", "exact", "exists", "empty", "number"])
            sizes = st.integers(0, MAX_PAYLOAD)
        tips: dict[bytes, tuple[int | None, bytes | None]] = {}
        failure: tuple[type, bytes, int | None, int] | None = None
        new_events: list[NewEvent] = []
        expected: list[Event] = []
        txn = self._next().to_bytes(16, "big")
        term = self.term[p]
        for i in range(n):
            if bulk and i == 0:
                sid = first
            else:
                sid = data.draw(STREAM_CHOICE, label="stream")
            if sid not in tips:
                tips[sid] = current_version(log, sid)
            cur, cur_key = tips[sid]
            how = data.draw(versions, label="expected version")
            if how == "any":
                exp = ANY
            elif how == "exists":
                exp = EXISTS
            elif how == "empty":
                exp = EMPTY
            elif how == "exact":
                exp = EMPTY if cur is None else cur
            else:
                exp = data.draw(st.integers(0, 12), label="number")
            size = data.draw(sizes, label="payload size")
            scattered = data.draw(st.none() | st.integers(0, 2**48 - 1), label="id time")
            eid = self._event_id(scattered)
            payload = (eid * (size // 16 + 1))[:size]
            ne = NewEvent(
                event_id=eid,
                stream_id=sid,
                event_name=data.draw(st.sampled_from(EVENT_NAMES), label="name"),
                timestamp_ms=data.draw(st.integers(0, 2**64 - 1), label="timestamp"),
                metadata=b"m%d" % self.counter if i % 2 else b"",
                payload=payload,
                expected_version=exp,
            )
            new_events.append(ne)
            if failure is None:
                if cur_key is not None and cur_key != key:
                    failure = (PartitionKeyMismatch, sid, None, 0)
                elif not version_matches(exp, cur):
                    failure = (WrongExpectedVersion, sid, cur, exp)
            version = 0 if cur is None else cur + 1
            tips[sid] = (version, key)
            expected.append(
                Event(
                    eid,
                    key,
                    p,
                    txn,
                    len(log) + i,
                    version,
                    ne.timestamp_ms,
                    sid,
                    ne.event_name,
                    ne.metadata,
                    payload,
                    term,
                    i == n - 1,
                )
            )
        before = (store.next_sequence(p), store.last_entry(p), store.pending_bytes(p % BUCKETS))
        note(f"append p={p} key={'alt' if use_alt else 'main'} {[_short(e) for e in expected]}")
        for e in expected:
            self.ids[e.event_id] = p  # (a rejected append's ids must never be found)
        if failure is not None:
            kind, sid, cur, exp = failure
            with pytest.raises(kind) as raised:
                store.append_leader(p, key, txn, new_events, term)
            err = raised.value
            if isinstance(err, WrongExpectedVersion):
                event("append: wrong expected version")
                assert (err.stream_id, err.current, err.expected) == (sid, cur, exp)
            else:
                assert isinstance(err, PartitionKeyMismatch)
                event("append: partition key mismatch")
                assert (err.stream_id, err.got_key) == (sid, key)
            after = (store.next_sequence(p), store.last_entry(p), store.pending_bytes(p % BUCKETS))
            assert after == before, "a rejected append changed the partition"
            return
        ticket = store.append_leader(p, key, txn, new_events, term)
        assert (ticket.partition_id, ticket.first_sequence, ticket.last_sequence) == (
            p,
            len(log),
            len(log) + n - 1,
        ), ticket
        assert ticket.versions == [e.stream_version for e in expected], ticket.versions
        assert ticket.term == term and not ticket.done and ticket.error is None
        self.queue[p % BUCKETS].append(Unit(ticket, p, None, expected))
        event("append: ok")

    @rule(p=st.integers(0, PARTITIONS - 1), stream=STREAM_CHOICE)
    def append_too_large(self, p: int, stream: bytes) -> None:
        store = self.store
        assert store is not None
        before = (store.next_sequence(p), store.last_entry(p), store.pending_bytes(p % BUCKETS))
        eid = self._event_id(None)
        big = NewEvent(eid, stream, b"Big", 0, b"", bytes(SEGMENT_SIZE))
        key = current_version(self._projected_events(p), stream)[1] or main_key(p)
        with pytest.raises(TransactionTooLarge):
            store.append_leader(p, key, bytes(16), [big], self.term[p])
        after = (store.next_sequence(p), store.last_entry(p), store.pending_bytes(p % BUCKETS))
        assert after == before
        self.ids[eid] = p

    @rule(bucket=st.none() | st.integers(0, BUCKETS - 1))
    def flush(self, bucket: int | None) -> None:
        store = self.store
        assert store is not None
        if bucket is None:
            tickets = store.flush_all()
            by_bucket: dict[int, list[Ticket]] = {b: [] for b in range(BUCKETS)}
            for t in tickets:
                by_bucket[t.partition_id % BUCKETS].append(t)
            for b in range(BUCKETS):
                self._complete(b, by_bucket[b], failure_possible=False)
        else:
            self._complete(bucket, store.flush(bucket), failure_possible=False)

    def _busy_bucket(self, data: st.DataObject) -> int:
        return data.draw(
            st.sampled_from([b for b in range(BUCKETS) if self.queue[b]]), label="bucket"
        )

    @precondition(lambda self: any(self.queue))
    @rule(
        data=st.data(),
        between=st.lists(
            st.sampled_from(
                ["append", "replace_tail", "read", "watermark", "flush other", "index work"]
            ),
            max_size=4,
        ),
        crash=st.booleans(),
        background=st.booleans(),
    )
    def flush_in_two_phases(
        self, data: st.DataObject, between: list[str], crash: bool, background: bool
    ) -> None:
        """flush_write, then other work (as the node's event loop does), then flush_apply.

        Entries the write phase wrote become readable only when applied, except those applied
        early because a rollover needed them indexed. A crash between the phases keeps every
        entry the write phase synced. With `background`, as on a node: the write phase leaves
        checkpoints and a sealed segment's index files to ``checkpoint_if_due`` ("index work",
        the checkpointer thread's), and reads meanwhile go through the sealed segment's last
        active index.
        """
        store = self.store
        assert store is not None
        b = self._busy_bucket(data)
        units = list(self.queue[b])
        dropped = list(self.dropped[b])
        note(
            f"flush_write({b}, checkpoint={not background}), then {between}, then "
            f"{'crash' if crash else 'flush_apply'}"
        )
        written = store.flush_write(b, checkpoint=not background)
        k = 0
        while k < len(units) and units[k].ticket.done:
            k += 1
        for u in units[k:]:
            assert not u.ticket.done and u.ticket.error is None, u.ticket
            u.written = True
        for u in units[:k]:  # applied by the write phase before sealing a segment
            assert u.ticket.error is None
            self._apply(u)
        if k:
            event("two-phase flush: some units applied before a seal")
        self.queue[b] = self.queue[b][k:]
        self.positions_agree()
        for action in between:
            if action == "append":
                self._append(data, bulk=False)
            elif action == "replace_tail":
                self.replace_tail(data)
            elif action == "read":
                self.read(data, data.draw(st.sampled_from(["partition", "stream", "event"])))
            elif action == "watermark":
                self.move_watermark(data)
            elif action == "index work":
                self.index_work(b)
            elif BUCKETS > 1:
                self.flush(data.draw(st.sampled_from([x for x in range(BUCKETS) if x != b])))
            self.positions_agree()
        event("two-phase flush: crash between the phases" if crash else "two-phase flush")
        if crash:
            # Phase 1 synced what it wrote: it survives the crash, only the apply is lost.
            for u in units[k:]:
                self._apply(u)
            marks = self._watermarks()
            self._crash(tear=True)
            self._forget_queued()
            self.store = self._open()
            self._check_recovered_watermarks(marks)
            self._after_reopen(None)
            return
        tickets = store.flush_apply(b, written)
        n = len(dropped)
        early = tickets[n : n + k]
        assert [id(t) for t in early] == [id(u.ticket) for u in units[:k]], tickets
        self._complete(b, tickets[:n] + tickets[n + k :], False, units=units[k:], dropped=dropped)

    @rule(bucket=st.integers(0, BUCKETS - 1))
    def index_work(self, bucket: int) -> None:
        """The node's checkpointer thread: a sealed segment's index files, a due checkpoint."""
        store = self.store
        assert store is not None
        if store.buckets[bucket].unsealed:
            event("index work: a seal finished off the commit path")
        store.checkpoint_if_due(bucket)
        self.positions_agree()

    @precondition(lambda self: any(self.queue))
    @rule(
        data=st.data(),
        kind=st.sampled_from(["write", "sync", "file"]),
        skip=st.integers(0, 3) | st.integers(0, 7),
        native=st.booleans(),
        name=st.sampled_from(FILE_NAMES),
    )
    def flush_with_failure(
        self, data: st.DataObject, kind: str, skip: int, native: bool, name: str
    ) -> None:
        """A flush whose skip+1-th write (or sync, or write of one file) fails with ENOSPC."""
        store = self.store
        assert store is not None
        bucket = self._busy_bucket(data)
        if kind == "file":
            note(f"flush({bucket}) failing the next atomic write of {name}")
            self.disk.fail_name = name
            try:
                tickets = store.flush(bucket)
            finally:
                self.disk.fail_name = None
        elif native and skip == 0:
            note(f"flush({bucket}) failing the first {kind}")
            with self.disk.mem.failing(kind, 1):  # the twin's own fault injection
                tickets = store.flush(bucket)
        else:
            note(f"flush({bucket}) failing the {kind} after {skip}")
            self.disk.fail_kind, self.disk.fail_skip = kind, skip
            try:
                tickets = store.flush(bucket)
            finally:
                self.disk.fail_kind = None
        self._complete(bucket, tickets, failure_possible=True)

    @rule(data=st.data())
    def move_watermark(self, data: st.DataObject) -> None:
        store = self.store
        assert store is not None
        p = data.draw(st.integers(0, PARTITIONS - 1), label="partition")
        top = self._stable_end(p)
        wm = store.watermark(p)
        if wm < top:
            new = data.draw(st.integers(wm, top), label="watermark")
            store.set_watermark(p, new)
            note(f"watermark p={p}: {wm} -> {new}")

    def _stable_end(self, p: int) -> int:
        """How far the watermark may go: durable entries no queued discard will drop."""
        end = len(self.durable[p])
        for u in self.queue[p % BUCKETS]:
            if u.partition == p and u.discard_from is not None:
                end = min(end, u.discard_from)
        return end

    def _discard_points(self, p: int, watermark: int) -> list[int]:
        """Where a discard may start: at or above the watermark, never inside a queued unit."""
        mine = [u for u in self.queue[p % BUCKETS] if u.partition == p]
        return [
            x
            for x in range(watermark, len(self._projected(p)) + 1)
            if not any(
                u.events and u.ticket.first_sequence < x <= u.ticket.last_sequence for u in mine
            )
        ]

    def _positioned(
        self,
        data: st.DataObject,
        p: int,
        log: list[Event],
        count: int,
        term: int,
        reusable_ids: list[bytes],
    ) -> list[Event]:
        """Events a leader would send to extend `log` (for replicated appends and discards)."""
        tips: dict[bytes, tuple[int | None, bytes | None]] = {}
        events: list[Event] = []
        start = len(log)
        for i in range(count):
            sid = data.draw(STREAM_CHOICE, label="stream")
            if sid not in tips:
                tips[sid] = current_version(log, sid)
            cur, key = tips[sid]
            if key is None:  # a new stream (or one whose every event is discarded)
                alt = data.draw(st.booleans(), label="alt key")
                key = alt_key(p) if alt else main_key(p)
            version = 0 if cur is None else cur + 1
            tips[sid] = (version, key)
            reusable = [x for x in reusable_ids if x not in {e.event_id for e in events}]
            if reusable and data.draw(st.booleans(), label="reuse a dropped id"):
                eid = data.draw(st.sampled_from(reusable), label="reused id")
            else:
                eid = self._event_id(None)
            size = data.draw(st.integers(0, MAX_PAYLOAD), label="payload size")
            events.append(
                Event(
                    eid,
                    key,
                    p,
                    self._next().to_bytes(16, "big"),
                    start + i,
                    version,
                    data.draw(st.integers(0, 2**64 - 1), label="timestamp"),
                    sid,
                    data.draw(st.sampled_from(EVENT_NAMES), label="name"),
                    b"r%d" % i,
                    (eid[::-1] * (size // 16 + 1))[:size],
                    term,
                    data.draw(st.booleans(), label="txn_last") or i == count - 1,
                )
            )
            self.ids[eid] = p
        return events

    @rule(data=st.data())
    def append_replicated(self, data: st.DataObject) -> None:
        """Entries whose positions a leader gave, extending the log (a follower's append)."""
        store = self.store
        assert store is not None
        p = data.draw(st.integers(0, PARTITIONS - 1), label="partition")
        log = self._projected_events(p)
        term = max([self.term[p], *(e.term for e in log[-1:])])
        events = self._positioned(data, p, log, data.draw(st.integers(1, 3)), term, [])
        note(f"append_replicated p={p} {[_short(e) for e in events]}")
        ticket = store.append_replicated(p, events)
        assert (ticket.first_sequence, ticket.last_sequence, ticket.term) == (
            len(log),
            len(log) + len(events) - 1,
            term,
        ), ticket
        assert ticket.versions == [e.stream_version for e in events]
        assert not ticket.done and ticket.error is None
        self.queue[p % BUCKETS].append(Unit(ticket, p, None, events))

    @rule(data=st.data())
    def replace_tail(self, data: st.DataObject) -> None:
        store = self.store
        assert store is not None
        p = data.draw(st.integers(0, PARTITIONS - 1), label="partition")
        b = p % BUCKETS
        wm = store.watermark(p)
        top = self._stable_end(p)
        if wm < top:
            wm = data.draw(st.integers(wm, top), label="watermark")
            store.set_watermark(p, wm)
        projected = self._projected_events(p)
        points = self._discard_points(p, wm)
        # Often discard only queued entries (above the durable end or a queued discard).
        queued = [x for x in points if x > self._stable_end(p)]
        if queued and data.draw(st.booleans(), label="discard queued entries only"):
            points = queued
        start = data.draw(st.sampled_from(points), label="from")
        dropped_ids = [e.event_id for e in projected[start:]]
        count = data.draw(st.integers(0, 3), label="new events")
        new_term = max([self.term[p], *(e.term for e in projected)]) + 1
        self.term[p] = new_term
        kept = projected[:start]
        events = self._positioned(data, p, kept, count, new_term, dropped_ids)
        note(
            f"replace_tail p={p} wm={wm} from={start} (log end {len(projected)}, durable "
            f"{len(self.durable[p])}) with {[_short(e) for e in events]}"
        )
        ticket = store.replace_tail(p, start, events)
        # Queued units of the partition at or above the point are dropped, failing Discarded.
        remaining = []
        for u in self.queue[b]:
            if u.partition == p and u.ticket.first_sequence >= start and not u.written:
                assert isinstance(u.ticket.error, Discarded), (u.ticket, u.ticket.error)
                assert not u.ticket.done
                self.dropped[b].append(u.ticket)
            else:
                assert u.ticket.error is None, (u.ticket, u.ticket.error)
                remaining.append(u)
        self.queue[b] = remaining
        expected_term = new_term if events else (kept[-1].term if kept else 0)
        assert (ticket.first_sequence, ticket.last_sequence, ticket.term) == (
            start,
            start + count - 1,
            expected_term,
        ), ticket
        assert ticket.versions == [e.stream_version for e in events]
        self.queue[b].append(Unit(ticket, p, start, events))
        event(
            "replace_tail: "
            + ("inside queued entries" if start > len(self.durable[p]) else "durable entries")
        )

    @rule(tear=st.booleans(), cut_recovery=st.none() | st.integers(0, 4))
    def crash_and_reopen(self, tear: bool, cut_recovery: int | None) -> None:
        """Power loss between operations: nothing unflushed survives."""
        note(f"crash tear={tear} cut during recovery={cut_recovery}")
        marks = self._watermarks()
        self._crash(tear=tear)
        self.store = None
        self._forget_queued()
        if cut_recovery is not None:
            self.disk.cut_after = cut_recovery
            try:
                self.store = self._open()
            except PowerCut:
                event("power cut during recovery")
                self.disk.mem.crash(tear=tear)
            finally:
                self.disk.cut_after = None
        if self.store is None:
            self.store = self._open()
        self._check_recovered_watermarks(marks)
        self._after_reopen(None)

    @precondition(lambda self: any(self.queue))
    @rule(
        data=st.data(),
        syncs=st.booleans(),
        ops=st.integers(0, 8),
        tear=st.sampled_from([True, True, False]),
    )
    def power_cut_during_flush(
        self, data: st.DataObject, syncs: bool, ops: int, tear: bool
    ) -> None:
        """The power goes before the ops+1-th write/sync (or sync only) of a flush; reopen."""
        store = self.store
        assert store is not None
        bucket = self._busy_bucket(data)
        units = list(self.queue[bucket])
        if syncs:
            ops %= 3
        note(f"power cut in flush({bucket}) after {ops} {'syncs' if syncs else 'ops'}, {tear=}")
        marks = self._watermarks()
        self.disk.cut_after = ops
        self.disk.cut_kind = "sync" if syncs else None
        try:
            tickets = store.flush(bucket)
        except PowerCut:
            cut = True
        else:
            cut = False
        finally:
            self.disk.cut_after = self.disk.cut_kind = None
        if not cut:
            self._complete(bucket, tickets, failure_possible=False)
            in_doubt: list[Unit] = []
        else:
            k = 0
            while k < len(units) and units[k].ticket.done:
                k += 1
            assert not any(u.ticket.done for u in units[k:]), "done tickets out of order"
            for u in units[:k]:
                self._apply(u)
            in_doubt = units[k:]
            event("power cut during flush")
        self._forget_queued()
        self._crash(tear=tear)
        self.store = self._open()
        self._check_recovered_watermarks(marks)
        # The units the cut interrupted may survive, as a prefix in write order, never in part.
        parts = range(bucket, PARTITIONS, BUCKETS)
        for p in parts:
            self.store.set_watermark(p, self.store.durable_next(p))
        actual = {p: self._read_all(p) for p in parts}
        base = {p: list(self.durable[p]) for p in parts}
        matches = []
        for j in range(len(in_doubt) + 1):
            for p in parts:
                self.durable[p] = list(base[p])
            for u in in_doubt[:j]:
                self._apply(u)
            if all(self.durable[p] == actual[p] for p in parts):
                matches.append(j)
        if not matches:
            for p in parts:
                self.durable[p] = base[p]
                assert_events(actual[p], base[p], f"partition {p} after a cut in a flush")
            raise AssertionError("the store after the cut is no prefix of the interrupted units")
        # (Several prefixes can leave the same log, e.g. behind a discard that dropped nothing.)
        assert tear or 0 in matches, f"{matches} unsynced units survived a crash without a tear"
        j = matches[0]
        for p in parts:
            self.durable[p] = list(base[p])
        for u in in_doubt[:j]:
            self._apply(u)
        if in_doubt:
            event(f"cut flush: {'some' if j else 'none'} of the in-doubt units survived")
        note(f"{j} of {len(in_doubt)} interrupted units survived")
        self._after_reopen(None)

    @rule()
    def close_and_reopen(self) -> None:
        store = self.store
        assert store is not None
        before = [store.watermark(p) for p in range(PARTITIONS)]
        note("clean close and reopen")
        store.close()
        self._forget_queued()  # never flushed: gone with the process
        self.store = self._open()
        self._after_reopen(before)

    # ---------------------------------------------------------------------------- reads
    def _visible(self, p: int) -> list[Event]:
        store = self.store
        assert store is not None
        return self.durable[p][: store.watermark(p)]

    @rule(data=st.data(), what=st.sampled_from(["partition", "stream", "event"]))
    def read(self, data: st.DataObject, what: str) -> None:
        """A random read against the model (reads see the durable events below the watermark)."""
        if what == "partition":
            self._read_partition(data)
        elif what == "stream":
            self._read_stream(data)
        elif self.ids:
            self._lookup_event(data)

    def _read_partition(self, data: st.DataObject) -> None:
        store = self.store
        assert store is not None
        p = data.draw(st.integers(0, PARTITIONS - 1), label="partition")
        visible = self._visible(p)
        n = len(self.durable[p])
        start = data.draw(st.integers(0, n + 2), label="start")
        end = data.draw(st.none() | st.integers(max(0, start - 1), n + 2), label="end")
        limit = data.draw(st.integers(1, 12), label="limit")
        got, more = store.read_partition(p, start, end, limit)
        wanted = [
            e
            for e in visible
            if start <= e.partition_sequence and (end is None or e.partition_sequence <= end)
        ]
        assert_events(got, wanted[:limit], f"read_partition({p}, {start}, {end}, {limit})")
        assert more == (len(wanted) > limit), (more, len(wanted), limit)
        # The event loop's read of the active segment: the same answer, or none at all.
        active = store.read_partition_raw_active(p, start, end, limit)
        if active is not None:
            assert active == store.read_partition_raw(p, start, end, limit)

    def _read_stream(self, data: st.DataObject) -> None:
        store = self.store
        assert store is not None
        p = data.draw(st.integers(0, PARTITIONS - 1), label="partition")
        sid = data.draw(STREAM_CHOICE, label="stream")
        mine = [e for e in self._visible(p) if e.stream_id == sid]
        start = data.draw(st.integers(0, len(mine) + 2), label="start")
        end = data.draw(st.none() | st.integers(max(0, start - 1), len(mine) + 2), label="end")
        limit = data.draw(st.integers(1, 8), label="limit")
        got, more = store.read_stream(p, sid, start, end, limit)
        wanted = [e for e in mine if e.stream_version >= start]
        wanted = [e for e in wanted if end is None or e.stream_version <= end]
        assert_events(got, wanted[:limit], f"read_stream({p}, {sid!r}, {start}, {end}, {limit})")
        assert more == (len(wanted) > limit), (more, len(wanted), limit)
        # The event loop's read of the active segment: the same answer, or none at all.
        active = store.read_stream_raw_active(p, sid, start, end, limit)
        if active is not None:
            assert active == store.read_stream_raw(p, sid, start, end, limit)
        last = store.last_stream_version(p, sid)
        assert last == (mine[-1].stream_version if mine else None), (p, sid, last)

    def _lookup_event(self, data: st.DataObject) -> None:
        store = self.store
        assert store is not None
        eid = data.draw(st.sampled_from(sorted(self.ids)), label="event id")
        owner = self.ids[eid]
        p = data.draw(st.sampled_from([owner, owner, (owner + 1) % PARTITIONS]), label="asked")
        found_visible = [e for e in self._visible(p) if e.event_id == eid]
        assert store.get_event(p, eid) == (found_visible[0] if found_visible else None)
        in_log = [(e, d) for e, d in self._projected(p) if e.event_id == eid]
        assert len(in_log) <= 1
        assert store.find_event(p, eid) == (in_log[0] if in_log else None), eid.hex()

    @rule()
    def check_everything(self) -> None:
        self._full_check()

    # ------------------------------------------------------------------------ invariants
    @invariant()
    def positions_agree(self) -> None:
        store = self.store
        if store is None:
            return
        for p in range(PARTITIONS):
            durable = self.durable[p]
            projected = self._projected_events(p)
            assert store.durable_next(p) == len(durable), (p, store.durable_next(p), len(durable))
            assert store.next_sequence(p) == len(projected), (p, store.next_sequence(p))
            assert store.watermark(p) <= store.durable_next(p)
            assert store.last_entry(p) == (
                (projected[-1].term, len(projected) - 1) if projected else None
            ), (p, store.last_entry(p))
            assert store.last_entry(p, include_pending=False) == (
                (durable[-1].term, len(durable) - 1) if durable else None
            ), (p, store.last_entry(p, include_pending=False))

    def teardown(self) -> None:
        logging.getLogger("sierradb.storage").removeHandler(self.log)
        if self.store is not None:
            stats = self.store.statistics()
            event(f"sealed segments at the end: {min(stats.sealed_segments, 6)}+")
            event(f"reopens: {min(self.reopens, 3)}+")
            self.store.close()


StorageModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # No explain phase: it replays a failing case many times, minutes for this machine.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
test_storage_matches_model = StorageModel.TestCase


# ------------------------------------------------------------------------------------------
# Regressions the state machine found, as plain deterministic tests (smallest known cases).


def _one_partition_store(disk: MemoryDisk | TwinDisk) -> Store:
    return Store.open(PATH, partitions=1, buckets=1, segment_size_bytes=SEGMENT_SIZE, disk=disk)


def _eid(n: int) -> bytes:
    return (BASE_MS + n).to_bytes(6, "big") + n.to_bytes(10, "big")


def _replicated(n: int, seq: int, version: int, stream: bytes, key: bytes, term: int) -> Event:
    return Event(_eid(n), key, 0, bytes(16), seq, version, 0, stream, b"E", b"", b"", term, True)


def test_second_queued_discard_above_the_first_keeps_its_entries_gone() -> None:
    """Two discards queued for one partition: the lower one still hides what it drops."""
    key = main_key(0)
    store = _one_partition_store(MemoryDisk(1))
    for n in range(5):  # stream a, versions 0..4 at sequences 0..4
        store.append_leader(0, key, bytes(16), [NewEvent(_eid(n), b"a", b"E", 0)], 1)
    store.flush_all()
    store.replace_tail(0, 1, [_replicated(10, 1, 0, b"b", key, 2)])  # drops a@1..a@4
    store.replace_tail(0, 2, [])  # a second discard, above the first (drops nothing more)
    assert store.find_event(0, _eid(1)) is None, "a@1 was discarded by the first replace_tail"
    # Stream a holds only version 0 now, so its next event is version 1.
    ticket = store.append_leader(
        0, key, bytes(16), [NewEvent(_eid(11), b"a", b"E", 0, expected_version=0)], 2
    )
    assert ticket.versions == [1]
    store.flush_all()
    store.set_watermark(0, store.durable_next(0))
    got, _ = store.read_partition(0, 0, None, 10)
    assert [(e.stream_id, e.stream_version) for e in got] == [(b"a", 0), (b"b", 0), (b"a", 1)]
    store.close()


def test_stream_rebound_to_another_key_after_a_discard_keeps_it_after_restart() -> None:
    """A stream whose every event was discarded binds to the key of its new first event."""
    disk = MemoryDisk(1)
    store = _one_partition_store(disk)
    old, new = alt_key(0), main_key(0)
    store.append_leader(0, old, bytes(16), [NewEvent(_eid(1), b"a", b"E", 0)], 1)
    store.flush_all()
    store.replace_tail(0, 0, [_replicated(2, 0, 0, b"a", new, 2)])  # a new leader's history
    store.flush_all()
    assert store.stream_partition_key(0, b"a") == new
    store.close()
    store = _one_partition_store(disk)
    assert store.stream_partition_key(0, b"a") == new
    store.append_leader(0, new, bytes(16), [NewEvent(_eid(3), b"a", b"E", 0)], 2)
    store.close()


def test_failed_rollover_does_not_hide_later_writes_after_restart() -> None:
    """A rollover failing at its last step must not leave the old segment looking sealed."""
    disk = TwinDisk(1)
    store = _one_partition_store(disk)
    key = main_key(0)

    def append(n: int, size: int) -> Ticket:
        event = NewEvent(_eid(n), b"a", b"E", 0, b"", bytes(size))
        return store.append_leader(0, key, bytes(16), [event], 1)

    append(1, 100_000)
    store.flush_all()
    big = append(2, 60_000)  # does not fit in what is left of segment 0: needs a rollover
    disk.fail_name = "data.evts"  # the rollover's last step: creating the next segment
    store.flush_all()
    assert isinstance(big.error, WriteFailed)
    small = append(3, 1_000)  # fits in segment 0
    store.flush_all()
    assert small.done
    store.close()
    store = _one_partition_store(disk)
    assert store.durable_next(0) == 2
    store.set_watermark(0, 2)
    got, _ = store.read_partition(0, 0, None, 10)
    assert [e.event_id for e in got] == [_eid(1), _eid(3)]
    store.close()


def test_find_event_between_flush_phases_after_a_discard_replaced_the_written_entry() -> None:
    """An entry written by phase 1 and replaced by a queued discard is not the one looked up."""
    key = main_key(0)
    store = _one_partition_store(MemoryDisk(1))
    store.append_replicated(0, [_replicated(1, 0, 0, b"a", key, 1)])
    written = store.flush_write(0)  # synced, not applied yet (the node's event loop runs now)
    replacement = _replicated(2, 0, 0, b"a", key, 2)
    store.replace_tail(0, 0, [replacement])  # a new leader's entry for sequence 0
    assert store.find_event(0, _eid(2)) == (replacement, False)
    assert store.find_event(0, _eid(1)) is None
    store.flush_apply(0, written)
    assert store.find_event(0, _eid(2)) == (replacement, False)
    store.flush(0)
    assert store.find_event(0, _eid(2)) == (replacement, True)
    assert store.find_event(0, _eid(1)) is None
    store.close()


def test_find_event_between_flush_phases_after_a_replacement_reused_the_written_id() -> None:
    """As above, with the replacement carrying the replaced entry's id at the same sequence (a
    new leader's copy of a retried append): applying the replaced entry must not drop the
    replacement from the queued ids (found by the model test above)."""
    key = main_key(0)
    store = _one_partition_store(MemoryDisk(1))
    store.append_replicated(0, [_replicated(1, 0, 0, b"a", key, 1)])
    written = store.flush_write(0)  # synced, not applied yet (the node's event loop runs now)
    replacement = _replicated(1, 0, 0, b"a", key, 2)._replace(metadata=b"new")
    store.replace_tail(0, 0, [replacement])
    assert store.find_event(0, _eid(1)) == (replacement, False)
    store.flush_apply(0, written)
    assert store.find_event(0, _eid(1)) == (replacement, False)
    store.flush(0)
    assert store.find_event(0, _eid(1)) == (replacement, True)
    store.close()


def test_the_event_loops_reads_answer_from_the_active_segment_only() -> None:
    """read_stream_raw_active, read_partition_raw_active: the records when the range lies in
    the active segment, None when it needs a sealed one (whose files the event loop must not
    read)."""
    store = _one_partition_store(MemoryDisk())
    key = main_key(0)
    tickets = []
    for n in range(3):  # ~150 KB: the first two events end up in a sealed segment
        event = NewEvent(_eid(n), b"old", b"E", 0, b"", bytes(50_000))
        tickets.append(store.append_leader(0, key, bytes(16), [event], 1))
        store.flush_all()
    for n in range(3, 6):
        tickets.append(
            store.append_leader(0, key, bytes(16), [NewEvent(_eid(n), b"new", b"E", 0)], 1)
        )
    store.flush_all()
    assert all(t.done and t.error is None for t in tickets)
    store.set_watermark(0, 6)
    assert store.read_stream_raw_active(0, b"old", 0, None, 10) is None
    assert store.read_stream_raw_active(0, b"old", 2, None, 10) == store.read_stream_raw(
        0, b"old", 2, None, 10
    )
    active = store.read_stream_raw_active(0, b"new", 0, None, 2)
    assert active is not None
    assert active == store.read_stream_raw(0, b"new", 0, None, 2)
    assert [raw_header(raw).version for raw in active[0]] == [0, 1] and active[1]  # more follow
    assert store.read_stream_raw_active(0, b"none", 0, None, 10) in (([], False), None)
    assert store.read_partition_raw_active(0, 0, None, 10) is None  # from the sealed segments
    in_active = store.read_partition_raw_active(0, 4, None, 10)
    assert in_active is not None and in_active == store.read_partition_raw(0, 4, None, 10)
    assert [raw_header(raw).sequence for raw in in_active[0]] == [4, 5]
    store.close()
