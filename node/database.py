"""The node's database: storage engine, one writer per bucket, one leader per partition.

Everything a command needs goes through here: appends through the partition's leader (the one
write path: a single node is a cluster of one), reads straight from storage in worker threads,
bounded by each partition's watermark. ``run`` starts the bucket writers; ``close`` drains them,
syncs and closes the storage.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import trio

from sierradb.storage import Promise, Store, Ticket

from .bucket_writer import BucketWriter
from .config import Config
from .leader import PartitionLeader
from .visibility import WatermarkBoard

log = logging.getLogger("sierradb.node")
T = TypeVar("T")

# Worker threads for reads (storage preads and mmap page faults stay off the event loop).
READ_THREADS = 4


class Database:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.board = WatermarkBoard()
        window = config.sync_window_s or 0.0
        self.writers = [
            BucketWriter(store, b, self.board, window, self._on_write_failure, self._on_crash)
            for b in range(store.bucket_count)
        ]
        self.leaders: list[PartitionLeader] = []
        self.read_limiter = trio.CapacityLimiter(READ_THREADS)
        self._nursery: trio.Nursery | None = None
        self._crashed = trio.Event()
        self._crash: BaseException | None = None
        self.opened_in_s = 0.0

    @classmethod
    def open(cls, config: Config) -> Database:
        """Open the data dir (blocking; call before the event loop serves anything)."""
        started = time.monotonic()
        store = Store.open(
            str(config.dir),
            partitions=config.partitions,
            buckets=config.buckets,
            segment_size_bytes=config.segment_size_bytes,
            sync=config.sync_window_s is not None,
            cache_capacity_bytes=config.cache_capacity_bytes,
            stream_cache_entries=config.stream_cache_entries,
        )
        db = cls.from_store(store, config)
        db.opened_in_s = time.monotonic() - started
        return db

    @classmethod
    def from_store(cls, store: Store, config: Config) -> Database:
        """Leaders and writers over an open store (tests pass one on the in-memory disk)."""
        db = cls(store, config)
        # A start is a new term for every partition: positions handed out again after a crash
        # are written under a term that no earlier record carries.
        promises = {}
        for p in range(store.partition_count):
            last = store.last_entry(p)
            term = max(store.promise(p).term, last[0] if last else 0) + 1
            promises[p] = Promise(term, config.node_index, 0)
        store.set_promises(promises)
        for p in range(store.partition_count):
            # One replica: everything durable is confirmed.
            store.set_watermark(p, store.durable_next(p))
            writer = db.writers[store.bucket_of(p)]
            db.leaders.append(PartitionLeader(store, p, writer, db.board, promises[p].term))
        # Opening built long-lived structures; keep the collector from walking them again.
        gc.collect()
        gc.freeze()
        return db

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the bucket writers until cancelled; then flush what is queued and stop them."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for w in self.writers:
                    w.start()
                    nursery.start_soon(w.pump)
                task_status.started()
                await self._crashed.wait()
                assert self._crash is not None
                raise self._crash
        finally:
            with trio.CancelScope(shield=True):
                for w in self.writers:
                    await trio.to_thread.run_sync(w.stop)
                await trio.lowlevel.checkpoint()  # let the writers' last completions run

    def _on_crash(self, exc: BaseException) -> None:
        log.critical("storage failed, stopping the node: %r", exc)
        self._crash = exc
        self._crashed.set()

    def _on_write_failure(self, ticket: Ticket) -> None:
        assert self._nursery is not None
        self.leaders[ticket.partition_id].on_write_failure(self._nursery)

    def close(self) -> None:
        """Sync and close the storage (blocking; after the writers have stopped)."""
        self.store.flush_all()
        self.store.persist_watermarks()
        self.store.close()

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.read_limiter)

    @property
    def partition_count(self) -> int:
        return self.store.partition_count
