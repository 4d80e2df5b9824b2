"""The one writer thread behind every bucket (node/bucket_writer.py), over a real store: the
appends of one scheduler round make one round and one completion, whatever the buckets; what
arrives during a round gets the next one; stopping flushes what is queued; an engine failure
stops the node."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from sierradb.node.bucket_writer import BucketWriter, KickPump, WriterThread
from sierradb.storage import NewEvent, Store, Ticket, group_commit
from sierradb.storage.limits import MIN_SEGMENT_SIZE_BYTES

BUCKETS = 4


def append(store: Store, partition: int, n: int, payload: bytes = b"x") -> None:
    event = NewEvent(os.urandom(16), f"s{partition}-{n}".encode(), b"E", 1, b"", payload)
    store.append_leader(partition, bytes(16), os.urandom(16), [event], 1)


class Setup:
    def __init__(self, root: Path, **store_options: int) -> None:
        self.store = Store.open(str(root), partitions=BUCKETS, buckets=BUCKETS, **store_options)
        self.reported: list[Ticket] = []
        self.crashes: list[BaseException] = []
        self.rounds: list[list[int]] = []  # the buckets of each completed round
        self.pump = KickPump()
        self.thread = WriterThread(self.store, 0.0, self.crashes.append)
        self.writers = [
            BucketWriter(self.store, b, self.reported.extend, self.pump, self.thread)
            for b in range(BUCKETS)
        ]
        complete = self.thread._complete

        def counted(results: list) -> None:  # type: ignore[type-arg]
            self.rounds.append([writer.bucket_id for writer, _ in results])
            complete(results)

        self.thread._complete = counted  # type: ignore[method-assign]

    def append_and_kick(self, partition: int, n: int, payload: bytes = b"x") -> None:
        append(self.store, partition, n, payload)
        self.writers[partition].kick()  # partition p lives in bucket p

    async def until_reported(self, count: int) -> None:
        with trio.fail_after(10):
            while len(self.reported) < count:
                await trio.sleep(0.005)


@asynccontextmanager
async def running(root: Path, **store_options: int) -> AsyncIterator[Setup]:
    """The writer thread and the pump running; stopped (flushing what is left) at the end."""
    s = Setup(root, **store_options)
    async with trio.open_nursery() as nursery:
        s.thread.start()
        nursery.start_soon(s.pump.run)
        yield s
        nursery.cancel_scope.cancel()
    await trio.to_thread.run_sync(s.thread.stop)
    s.store.close()
    assert not s.crashes


async def test_one_scheduler_rounds_appends_to_every_bucket_make_one_round(tmp_path: Path) -> None:
    async with running(tmp_path) as s:
        for partition in range(BUCKETS):
            s.append_and_kick(partition, 0)
        await s.until_reported(BUCKETS)
        assert s.rounds == [[0, 1, 2, 3]]
        assert [w.flushes for w in s.writers] == [1] * BUCKETS
        assert [w.events for w in s.writers] == [1] * BUCKETS


async def test_appends_during_a_round_get_the_next_one_and_none_is_left(tmp_path: Path) -> None:
    async with running(tmp_path) as s:
        total = 50
        for n in range(total):  # keep appending while rounds run
            s.append_and_kick(n % BUCKETS, n)
            await trio.sleep(0.0005 * (n % 3))
        await s.until_reported(total)
        assert sum(w.events for w in s.writers) == total
        assert all(not s.store.has_queued(b) for b in range(BUCKETS))
        assert all(len(set(r)) == len(r) for r in s.rounds)  # a bucket once per round


async def test_checkpoints_are_written_by_their_own_thread_while_rounds_go_on(
    tmp_path: Path,
) -> None:
    options = {"checkpoint_interval_bytes": 4096, "segment_size_bytes": 1 << 20}
    async with running(tmp_path, **options) as s:
        writers: dict[int, list[str]] = {}  # bucket -> the threads that wrote its checkpoints
        for b, bucket in enumerate(s.store.buckets):
            write = bucket._write_checkpoint

            def recorded(b: int = b, write: Callable[[], bool] = write) -> bool:
                writers.setdefault(b, []).append(threading.current_thread().name)
                return write()

            bucket._write_checkpoint = recorded  # type: ignore[method-assign]
        held = s.store.buckets[0]._checkpoint_lock
        held.acquire()  # bucket 0's checkpoint takes as long as the test holds this
        try:
            for partition in range(BUCKETS):  # every bucket comes due
                for n in range(6):
                    s.append_and_kick(partition, n, b"x" * 1024)
            await s.until_reported(6 * BUCKETS)
            for n in range(6, 26):  # the rounds go on meanwhile, bucket 0's too
                for partition in range(BUCKETS):
                    s.append_and_kick(partition, n)
                await s.until_reported(BUCKETS * (n + 1))
            assert s.store.checkpoint_due(0) and 0 not in writers
        finally:
            held.release()
        with trio.fail_after(10):
            while s.thread.checkpointer.written < BUCKETS:
                await trio.sleep(0.005)
        assert writers == {b: ["sierradb-checkpoints"] for b in range(BUCKETS)}
        assert not any(s.store.checkpoint_due(b) for b in range(BUCKETS))
        assert len(s.rounds) >= 21


async def test_sealed_segments_index_files_are_written_by_the_checkpoint_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[str] = []  # the threads that wrote sealed index files
    write = group_commit.write_index_files

    def recorded(*args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        writers.append(threading.current_thread().name)
        write(*args, **kwargs)

    monkeypatch.setattr(group_commit, "write_index_files", recorded)
    async with running(tmp_path, segment_size_bytes=MIN_SEGMENT_SIZE_BYTES) as s:
        n = 0
        while not s.store.buckets[0].sealed:  # bucket 0 rolls over to a new segment
            s.append_and_kick(0, n, b"x" * 4096)
            n += 1
            await s.until_reported(n)
        with trio.fail_after(10):
            while s.store.buckets[0].unsealed:
                await trio.sleep(0.005)
        assert writers == ["sierradb-checkpoints"]
        assert s.store.buckets[0].sealed[0].pending is None


async def test_stopping_flushes_what_is_queued_in_every_bucket(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.thread.start()
    append(s.store, 1, 0)  # queued, never kicked
    append(s.store, 3, 0)
    await trio.to_thread.run_sync(s.thread.stop)
    await trio.lowlevel.checkpoint()  # the last completion
    assert len(s.reported) == 2 and all(t.error is None for t in s.reported)
    assert not s.store.has_queued(1) and not s.store.has_queued(3)
    s.store.close()


async def test_an_engine_failure_in_a_round_stops_the_node(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    broken = AssertionError("a broken invariant")
    flush_write = s.store.flush_write

    def failing(bucket_id: int, checkpoint: bool):  # type: ignore[no-untyped-def]
        if bucket_id == 2:
            raise broken
        return flush_write(bucket_id, checkpoint)

    s.store.flush_write = failing  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        s.thread.start()
        nursery.start_soon(s.pump.run)
        for partition in (1, 2):
            s.append_and_kick(partition, 0)
        with trio.fail_after(10):
            while not s.crashes:
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    assert s.crashes == [broken]
    s.store.close()
