"""The storage API the replication layer builds on, against the in-memory twin disk.

append_replicated / read_raw / replace_tail / last_entry / set_promise / set_watermark, with
crashes that lose everything not synced.
"""

import os

import pytest

from sierradb.node.replication.storage import PromiseWrites, StoreStorage
from sierradb.storage import Event, MemoryDisk, NewEvent, Promise, Store
from sierradb.storage.record import BadRecord, peek_length
from sierradb.storage.record_check import decode_event

KEY = b"K" * 16


def open_store(disk: MemoryDisk, path: str = "/d") -> Store:
    return Store.open(path, partitions=2, buckets=1, segment_size_bytes=128 * 1024, disk=disk)


def event(stream: bytes, payload: bytes = b"") -> NewEvent:
    return NewEvent(os.urandom(16), stream, b"E", 1, b"", payload)


def append(store: Store, n: int, stream: bytes = b"s", term: int = 1, p: int = 0) -> list:
    tickets = [
        store.append_leader(
            p,
            KEY,
            os.urandom(16),
            [NewEvent(os.urandom(16), stream, b"E", 1, b"", b"x" * 500)],
            term,
        )
        for _ in range(n)
    ]
    store.flush_all()
    return tickets


def decode_all(raw: bytes) -> list[Event]:
    out, pos = [], 0
    while pos < len(raw):
        out.append(decode_event(raw, pos, len(raw)))
        pos += peek_length(raw, pos)
    return out


def test_read_raw_then_append_replicated_copies_the_log_exactly():
    leader, follower = open_store(MemoryDisk()), open_store(MemoryDisk())
    append(leader, 300, stream=b"a")  # several segments
    append(leader, 5, stream=b"b")
    copied = 0
    while copied < leader.durable_next(0):
        events = decode_all(leader.read_raw(0, copied, 16 * 1024))
        assert events and events[0].partition_sequence == copied
        follower.append_replicated(0, events)
        follower.flush_all()
        copied = events[-1].partition_sequence + 1
    for s in (leader, follower):
        s.set_watermark(0, s.durable_next(0))
    assert follower.read_partition(0, 0, None, 1000) == leader.read_partition(0, 0, None, 1000)
    assert follower.last_entry(0) == leader.last_entry(0) == (1, 304)
    assert follower.last_stream_version(0, b"a") == 299


def test_read_raw_bytes_are_checksummed_records():
    store = open_store(MemoryDisk())
    append(store, 3)
    raw = bytearray(store.read_raw(0, 0, 1 << 20))
    raw[200] ^= 0x40
    with pytest.raises(BadRecord):
        decode_all(bytes(raw))


def test_append_replicated_asserts_continuity_and_stream_versions():
    leader, follower = open_store(MemoryDisk()), open_store(MemoryDisk())
    append(leader, 3)
    events = decode_all(leader.read_raw(0, 0, 1 << 20))
    with pytest.raises(AssertionError, match="does not extend"):
        follower.append_replicated(0, events[1:])
    follower.append_replicated(0, events[:1])
    with pytest.raises(AssertionError, match="local next version"):
        follower.append_replicated(0, [events[1]._replace(stream_version=5)])


def test_replace_tail_discards_and_rewrites_in_one_unit_across_a_crash():
    disk = MemoryDisk()
    store = open_store(disk)
    append(store, 10, term=1)
    store.set_watermark(0, 6)
    old = decode_all(store.read_raw(0, 6, 1 << 20))
    new = [e._replace(term=2, event_id=os.urandom(16)) for e in old[:2]]
    ticket = store.replace_tail(0, 6, new)
    assert store.next_sequence(0) == 8 and store.last_entry(0) == (2, 7)
    store.flush_all()
    assert ticket.done
    disk.crash()
    store = open_store(disk)
    store.set_watermark(0, store.durable_next(0))
    events, _ = store.read_partition(0, 0, None, 100)
    assert [e.partition_sequence for e in events] == list(range(8))
    assert [e.term for e in events[6:]] == [2, 2]
    for e in old:  # the discarded entries are gone from every lookup
        assert store.get_event(0, e.event_id) is None
        assert store.find_event(0, e.event_id) is None
    assert store.last_stream_version(0, b"s") == 7
    (t,) = append(store, 1, term=3)
    assert t.versions == [8] and t.first_sequence == 8


def test_discards_in_sealed_segments_are_honoured_after_reopen():
    disk = MemoryDisk()
    store = open_store(disk)
    append(store, 20, stream=b"a")
    store.set_watermark(0, 15)
    gone = decode_all(store.read_raw(0, 15, 1 << 20))
    store.replace_tail(0, 15, [])
    store.flush_all()
    append(store, 400, stream=b"b", p=1)  # seal the segment holding the marker and the entries
    assert store.statistics().sealed_segments >= 1  # segment 0, with entries and marker
    store.close()
    store = open_store(disk)
    assert store.durable_next(0) == 15
    store.set_watermark(0, 15)
    assert [e.partition_sequence for e in store.read_partition(0, 0, None, 100)[0]] == list(
        range(15)
    )
    assert all(store.find_event(0, e.event_id) is None for e in gone)
    assert store.last_stream_version(0, b"a") == 14


def test_replace_tail_at_or_below_the_watermark_is_a_broken_invariant():
    store = open_store(MemoryDisk())
    append(store, 5)
    store.set_watermark(0, 4)
    with pytest.raises(AssertionError, match="watermark"):
        store.replace_tail(0, 3, [])


def test_replace_tail_drops_queued_entries_and_reports_their_tickets():
    store = open_store(MemoryDisk())
    append(store, 3)
    queued = store.append_leader(
        0, KEY, os.urandom(16), [NewEvent(os.urandom(16), b"s", b"E", 1)], 1
    )
    store.replace_tail(0, 3, [])
    completed = store.flush_all()
    assert queued in completed and queued.error is not None and not queued.done
    assert store.durable_next(0) == 3


def test_promise_is_durable_before_set_promise_returns():
    disk = MemoryDisk()
    store = open_store(disk)
    store.set_promise(1, term=7, candidate=2, incarnation=3)
    disk.crash()
    store = open_store(disk)
    promise = store.promise(1)
    assert (promise.term, promise.candidate, promise.incarnation) == (7, 2, 3)


def test_a_failed_promise_write_leaves_the_old_promise_in_force():
    disk = MemoryDisk()
    store = open_store(disk)
    store.set_promise(1, term=7, candidate=2, incarnation=3)
    disk.fail_writes("write", 1)
    with pytest.raises(OSError):
        store.set_promises({0: Promise(9, 0, 1), 1: Promise(9, 0, 1)})
    assert store.promise(1) == Promise(7, 2, 3)  # in memory too, so nothing acts on it
    assert store.promise(0).term == 0
    store.persist_watermarks()  # a later metadata write must not make it durable either
    disk.crash()
    assert open_store(disk).promise(1) == Promise(7, 2, 3)


def test_promises_of_many_partitions_are_one_metadata_write():
    disk = MemoryDisk()
    store = open_store(disk)
    writes = PromiseWrites(store)
    tokens = [StoreStorage(store, p, writes).save_promise(Promise(4, 1, 1)) for p in range(2)]
    assert store.promise(0).term == 0, "queued, not written"
    promises, taken = writes.take()
    assert taken == tokens and not writes.pending
    disk.fail_writes("write", 1)  # the batch is one write: it fails whole
    with pytest.raises(OSError):
        store.set_promises(promises)
    store.set_promises(promises)
    disk.crash()
    store = open_store(disk)
    assert all(store.promise(p) == Promise(4, 1, 1) for p in range(2))


def test_watermark_never_moves_back_and_is_clamped_to_the_durable_end_on_open():
    disk = MemoryDisk()
    store = open_store(disk)
    append(store, 5)
    store.set_watermark(0, 5)
    store.set_watermark(0, 2)
    assert store.watermark(0) == 5
    with pytest.raises(AssertionError):
        store.set_watermark(0, 6)  # above what is durable
    store.persist_watermarks()
    # Lose acknowledged data under the stored watermark (what sync policy none allows).
    bucket = store.buckets[0]
    bucket.file.truncate(bucket.active.offsets[3])
    bucket.file.sync()
    store = open_store(disk)
    assert store.durable_next(0) == 3
    assert store.watermark(0) == 3  # clamped, never above the log end


def test_a_second_discard_does_not_revive_entries_the_first_one_removed():
    """Stream tips recomputed at a discard skip queued entries an earlier discard removes."""
    source = open_store(MemoryDisk())
    append(source, 1, stream=b"x")
    append(source, 1, stream=b"y")
    x0, y0 = decode_all(source.read_raw(0, 0, 1 << 20))
    store = open_store(MemoryDisk())
    store.append_replicated(0, [x0])
    store.flush_all()
    store.append_replicated(0, [y0])
    written = store.flush_write(0)  # y@1 written, not yet indexed
    store.replace_tail(0, 1, [x0._replace(partition_sequence=1, stream_version=1, term=2)])
    store.replace_tail(0, 2, [])
    store.flush_apply(0, written)
    store.flush_all()
    (t,) = append(store, 1, stream=b"y", term=3)
    assert t.versions == [0]  # y@1 was discarded: y is a new stream
    store.set_watermark(0, store.durable_next(0))
    assert [e.stream_id for e in store.read_partition(0, 0, None, 10)[0]] == [b"x", b"x", b"y"]
