"""Group commit: one writer task per bucket drives the storage engine's flush.

Theory of operation. Appends only queue records in memory and ``kick`` the bucket's writer. The
writer waits for a kick, optionally lingers for the sync window to gather more, then runs one
``Store.flush`` in a worker thread (its own limiter, so fsyncs never wait behind reads): one write
and one fdatasync for everything queued, from every partition of the bucket. Appends arriving
meanwhile queue up for the next round, so under load each flush carries a whole batch.

When the flush returns, each durable transaction is *confirmed*: with one replica the quorum is
this node, so the partition's watermark moves to the transaction's end (transactions complete in
order, so the watermark only ever stops at a transaction boundary). Only then are the waiting
appends woken and the subscriptions notified, so a reply implies the events are readable.
Replication will confirm through its quorum instead, behind this same seam.

The flush thread is never abandoned: cancelling the node waits for a running flush to finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from sierradb.storage import Store, Ticket

from .visibility import WatermarkBoard

log = logging.getLogger("sierradb.node")


class BucketWriter:
    def __init__(
        self,
        store: Store,
        bucket_id: int,
        board: WatermarkBoard,
        window_s: float,
        on_failure: Callable[[Ticket], None],
    ) -> None:
        self.store = store
        self.bucket_id = bucket_id
        self.board = board
        self.window_s = window_s
        self.on_failure = on_failure
        self._kicked = trio.Event()
        self._limiter = trio.CapacityLimiter(1)
        self.flushes = 0
        self.transactions = 0
        self.idle = trio.Event()
        self.idle.set()

    def kick(self) -> None:
        self._kicked.set()

    async def run(self) -> None:
        while True:
            await self._kicked.wait()
            self._kicked = trio.Event()
            self.idle = trio.Event()
            if self.window_s:
                await trio.sleep(self.window_s)
            await self.flush_once()
            if not self._kicked.is_set():
                self.idle.set()

    async def flush_once(self) -> None:
        completed = await trio.to_thread.run_sync(
            self.store.flush, self.bucket_id, limiter=self._limiter
        )
        if not completed:
            return
        self.flushes += 1
        self.transactions += len(completed)
        store = self.store
        for ticket in completed:
            if ticket.error is None:
                store.set_watermark(ticket.partition_id, ticket.last_sequence + 1)
            else:
                self.on_failure(ticket)
        self.board.notify()
        for ticket in completed:
            waiter = ticket.waiter
            if waiter is not None:
                waiter.set()  # type: ignore[attr-defined]
