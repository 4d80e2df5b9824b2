"""Checkpoints written by another thread than the flushes' (node/checkpointer.py): only when due,
consistent with the flushes around them (a reopened store has every event), and never during a
seal."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sierradb.storage import NewEvent, Store
from sierradb.storage.limits import MIN_SEGMENT_SIZE_BYTES


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
