"""The node's database: storage engine, one writer per bucket, a role per partition.

Everything a command needs goes through here: appends through the partition's role (``appender``:
the local leader on a single node, which is a cluster of one), reads straight from storage in
worker threads, bounded by each partition's watermark. ``open`` opens the storage; ``lead_all``
(a single node) or ``refuse_appends`` gives every partition its role; ``run`` starts the bucket
writers; ``close`` drains them, syncs and closes the storage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import trio

from sierradb.storage import Store, Ticket
from sierradb.storage.record import RawEvent

from .append import Appender, Unavailable
from .bucket_writer import BucketWriter, KickPump, WriterThread
from .checkpointer import Checkpointer
from .config import Config
from .confirmation import LocalConfirmer
from .errors import NodeError
from .leader import LocalLeader
from .read_pool import INLINE_READ_EVENTS, ReadPool
from .visibility import WatermarkBoard

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio's own type, as the stubs mypy reads name it

log = logging.getLogger("sierradb.node")
T = TypeVar("T")

# Worker threads for reads (storage preads and mmap page faults stay off the event loop).
READ_THREADS = 4


class Database:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.board = WatermarkBoard(store.partition_count)
        self.confirmer = LocalConfirmer(store, self.board, self._on_write_failure)
        self._confirm: Callable[[list[Ticket]], None] = self.confirmer.durable
        window = config.sync_window_s or 0.0
        self._pump = KickPump()
        self._writer_thread = WriterThread(store, window, self._on_crash)
        self.writers = [
            BucketWriter(store, b, self._on_durable, self._pump, self._writer_thread)
            for b in range(store.bucket_count)
        ]
        self.roles: list[Appender] = []
        self.reads = ReadPool(READ_THREADS)
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
            checkpoint_interval_bytes=config.checkpoint_interval_bytes,
        )
        db = cls(store, config)
        db.opened_in_s = time.monotonic() - started
        return db

    def lead_all(self, incarnation: int) -> None:
        """A single node leads every partition (blocking: makes each new term durable)."""
        self.roles = list(
            LocalLeader.start(
                self.store, self.writers, self.board, self.config.node_index, incarnation
            )
        )

    def refuse_appends(self, error: NodeError) -> None:
        self.roles = [Unavailable(error)] * self.store.partition_count

    def replicate_with(
        self, roles: list[Appender], confirm: Callable[[list[Ticket]], None]
    ) -> None:
        """A cluster node: the replication service confirms writes and gives the roles."""
        self.roles = roles
        self._confirm = confirm

    def _on_durable(self, tickets: list[Ticket]) -> None:
        self._confirm(tickets)

    @property
    def checkpointer(self) -> Checkpointer:
        """Writes the active segments' checkpoints (its counts are in /metrics)."""
        return self._writer_thread.checkpointer

    def appender(self, partition_id: int) -> Appender:
        return self.roles[partition_id]

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the bucket writers until cancelled; then flush what is queued and stop them."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._writer_thread.start()
                nursery.start_soon(self._pump.run)
                task_status.started()
                await self._crashed.wait()
                assert self._crash is not None
                raise self._crash
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._writer_thread.stop)
                await trio.lowlevel.checkpoint()  # let the writer's last completions run

    def _on_crash(self, exc: BaseException) -> None:
        log.critical("storage failed, stopping the node: %r", exc)
        self._crash = exc
        self._crashed.set()

    def _on_write_failure(self, ticket: Ticket) -> None:
        assert self._nursery is not None
        role = self.roles[ticket.partition_id]
        assert isinstance(role, LocalLeader), "only a leader's own appends can fail here"
        role.on_write_failure(self._nursery)

    def close(self) -> None:
        """Sync and close the storage (blocking; after the writers have stopped)."""
        self.reads.close()
        self.store.flush_all()
        self.store.persist_watermarks()
        self.store.close()

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in the read threads (see read_stream_raw for reads on the event loop)."""
        return await self.reads.run(fn, *args)

    async def read_stream_raw(self, p: int, stream_id: bytes, start: int, end: int | None,
                              count: int) -> tuple[list[RawEvent], bool]:  # fmt: skip
        """A stream's records (``Store.read_stream_raw``): on the event loop when they lie in
        the active segment and are at most ``INLINE_READ_EVENTS`` (the streams being written,
        which aggregates load again and again), else in the read threads. The hop to a read
        thread and back cost more than a 100-event read itself (bench/request_cpu.py, ESCAN:
        481 -> 325 us of node CPU per request at -P 1, 452 -> 274 at -P 16)."""
        found = self.read_stream_raw_now(p, stream_id, start, end, count)
        if found is not None:
            return found
        return await self.reads.run(self.store.read_stream_raw, p, stream_id, start, end, count)

    def read_stream_raw_now(self, p: int, stream_id: bytes, start: int, end: int | None,
                            count: int) -> tuple[list[RawEvent], bool] | None:  # fmt: skip
        """read_stream_raw's answer if the event loop may give it (see there), else None."""
        if count > INLINE_READ_EVENTS:
            return None
        return self.store.read_stream_raw_active(p, stream_id, start, end, count)

    async def read_partition_raw(self, p: int, start: int, end: int | None, count: int
                                 ) -> tuple[list[RawEvent], bool]:  # fmt: skip
        """A partition's records (``Store.read_partition_raw``), on the event loop or in the
        read threads by the same rule as read_stream_raw's."""
        found = self.read_partition_raw_now(p, start, end, count)
        if found is not None:
            return found
        return await self.reads.run(self.store.read_partition_raw, p, start, end, count)

    def read_partition_raw_now(self, p: int, start: int, end: int | None, count: int
                               ) -> tuple[list[RawEvent], bool] | None:  # fmt: skip
        """read_partition_raw's answer if the event loop may give it, else None."""
        if count > INLINE_READ_EVENTS:
            return None
        return self.store.read_partition_raw_active(p, start, end, count)

    @property
    def partition_count(self) -> int:
        return self.store.partition_count
