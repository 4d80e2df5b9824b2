"""Checkpoints written by another thread than the flushes' (node/checkpointer.py): only when due,
consistent with the flushes around them (a reopened store has every event), and never during a
seal."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from sierradb.storage import NewEvent, Store
from sierradb.storage.active_index import ActiveIndex
from sierradb.storage.limits import MIN_SEGMENT_SIZE_BYTES
from sierradb.storage.segment import CHECKPOINT_FILE


def append(store: Store, n: int, size: int = 1024) -> None:
    event = NewEvent(os.urandom(16), b"s%d" % (n % 7), b"E", 1, b"", b"x" * size)
    store.append_leader(0, bytes(16), os.urandom(16), [event], 1)


def test_a_due_checkpoint_is_written_from_another_thread_while_flushes_go_on(
    tmp_path: Path,
) -> None:
    store = Store.open(str(tmp_path), partitions=1, buckets=1, checkpoint_interval_bytes=8192)
    assert not store.checkpoint_due(0) and not store.checkpoint_if_due(0)
    for n in range(10):
        append(store, n)
    store.flush_apply(0, store.flush_write(0, checkpoint=False))  # the node's flushes skip them
    assert store.checkpoint_due(0)
    done: list[bool] = []
    writes = 0
    checkpointer = threading.Thread(target=lambda: done.append(store.checkpoint_if_due(0)))
    checkpointer.start()
    while checkpointer.is_alive() or writes < 20:  # flushes meanwhile
        append(store, 100 + writes)
        store.flush_apply(0, store.flush_write(0, checkpoint=False))
        writes += 1
    checkpointer.join()
    assert done == [True]
    assert store.buckets[0].checkpoint_size > 0
    store.close()
    reopened = Store.open(str(tmp_path))
    assert reopened.durable_next(0) == 10 + writes
    reopened.set_watermark(0, 10 + writes)
    events, _ = reopened.read_partition(0, 0, None, 1000)
    assert [e.partition_sequence for e in events] == list(range(10 + writes))
    reopened.close()


def test_a_seal_waits_for_the_checkpoint_being_written(tmp_path: Path) -> None:
    store = Store.open(
        str(tmp_path), partitions=1, buckets=1, segment_size_bytes=MIN_SEGMENT_SIZE_BYTES
    )
    bucket = store.buckets[0]
    for n in range(100):  # more than a segment: the flush seals one
        append(store, n, 2048)
    bucket._checkpoint_lock.acquire()  # a checkpoint being written
    sealed: list[int] = []
    flusher = threading.Thread(
        target=lambda: (store.flush_all(), sealed.append(store.statistics().sealed_segments))
    )
    flusher.start()
    time.sleep(0.3)
    assert flusher.is_alive() and not sealed  # waiting for the checkpoint
    bucket._checkpoint_lock.release()
    flusher.join(10)
    assert sealed and sealed[0] >= 1
    store.close()


def test_a_checkpoint_a_discard_came_between_is_dropped_and_written_by_the_next_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint copies the active index in two steps (under the bucket lock, then without
    it while appends go on); a discard in between (a new leader cutting the tail) changes what
    the second step reads, so that copy is dropped and the checkpoint stays due."""
    store = Store.open(str(tmp_path), partitions=1, buckets=1, checkpoint_interval_bytes=8192)
    ids = [os.urandom(16) for _ in range(20)]
    for event_id in ids:
        event = NewEvent(event_id, b"s", b"E", 1, b"", b"x" * 1024)
        store.append_leader(0, bytes(16), os.urandom(16), [event], 1)
    store.flush_apply(0, store.flush_write(0, checkpoint=False))
    tail = [found[0] for found in (store.find_event(0, i) for i in ids[15:]) if found]
    assert len(tail) == 5
    new = [e._replace(term=2, event_id=os.urandom(16)) for e in tail[:2]]
    sections = ActiveIndex.sections

    def discard_meanwhile(index: ActiveIndex, snap: dict) -> dict:  # type: ignore[type-arg]
        store.replace_tail(0, 15, new)  # what the event loop may do during the copy
        store.flush_apply(0, store.flush_write(0, checkpoint=False))
        return sections(index, snap)

    monkeypatch.setattr(ActiveIndex, "sections", discard_meanwhile)
    assert not store.checkpoint_if_due(0)
    checkpoint = os.path.join(store.buckets[0].seg_dir(0), CHECKPOINT_FILE)
    assert not os.path.exists(checkpoint) and store.checkpoint_due(0)
    monkeypatch.setattr(ActiveIndex, "sections", sections)
    store.flush_apply(0, store.flush_write(0, checkpoint=False))  # records the discard first
    assert store.checkpoint_if_due(0) and os.path.exists(checkpoint)
    store.close()
    reopened = Store.open(str(tmp_path))
    assert reopened.durable_next(0) == 17
    reopened.set_watermark(0, 17)
    events, _ = reopened.read_partition(0, 0, None, 100)
    assert [e.partition_sequence for e in events] == list(range(17))
    assert [e.event_id for e in events[15:]] == [e.event_id for e in new]
    assert all(reopened.find_event(0, e.event_id) is None for e in tail)
    reopened.close()
