"""Watermark notifications: how waiting appends and subscriptions learn that events are visible.

Theory of operation. Whoever moves watermarks (the confirmer) calls ``notify`` with the moves.
Two kinds of waiters are served:

- A board for waiters with their own condition (subscriptions: a stream's or a partition's next
  position). ``notify`` bumps a version counter and wakes all of them; a waiter reads the
  version, checks its condition, and parks only if nothing changed since it read the version,
  so no move is ever missed. One wake-up per flush, however many partitions moved.
- Per-partition queues for appends, each waiting for one sequence to become visible. They are
  kept ordered by sequence, so a move wakes exactly the appends it made visible, not every
  waiter on the node. ``wake_partition`` wakes all of a partition's appends at once (a write
  failed: each checks whether it was its own). An entry is anything with ``set()``: a parked
  task's ``trio.Event`` (``wait_past``), or a callback object (``call_past``: the leader's
  confirmations, which report to their connection without a task waiting).

Blocking reads (``blocking.py``) park in the same per-partition queues, on several partitions at
once (``wait_past_any``); a waiter that returns, is woken or is cancelled (timeout, disconnect)
takes its remaining entries out, so waits that end without a move leave nothing behind.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from typing import Protocol

import trio


class Wakeable(Protocol):
    def set(self) -> None: ...


class WatermarkBoard:
    def __init__(self, partition_count: int) -> None:
        self.version = 0
        self._changed = trio.Event()
        self._waiting: list[list[tuple[int, int, Wakeable]]] = [[] for _ in range(partition_count)]
        self._order = itertools.count()  # ties in a heap must never compare the events

    def notify(self, moved: Iterable[tuple[int, int]] = ()) -> None:
        """Watermarks moved: (partition, new watermark) for each; wake who can proceed."""
        for partition_id, watermark in moved:
            queue = self._waiting[partition_id]
            while queue and queue[0][0] < watermark:
                heapq.heappop(queue)[2].set()
        self.version += 1
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    def wake_partition(self, partition_id: int) -> None:
        """Wake every append waiting on a partition (each re-checks its own outcome)."""
        queue, self._waiting[partition_id] = self._waiting[partition_id], []
        for _, _, event in queue:
            event.set()

    async def wait_for_change(self, seen_version: int) -> None:
        """Return once the version differs from `seen_version` (at once if it already does)."""
        if self.version != seen_version:
            return
        await self._changed.wait()

    def call_past(self, partition_id: int, sequence: int, waker: Wakeable) -> None:
        """Call ``waker.set()`` once a move of the partition's watermark passes `sequence` (or
        the partition's waiters are woken); it re-checks its condition, as a task would."""
        heapq.heappush(self._waiting[partition_id], (sequence, next(self._order), waker))

    async def wait_past(self, partition_id: int, sequence: int) -> None:
        """Return once a move of the partition's watermark passes `sequence` (or it is woken).

        The caller checks the watermark before and after: this only parks it."""
        event = trio.Event()
        heapq.heappush(self._waiting[partition_id], (sequence, next(self._order), event))
        await event.wait()

    async def wait_past_any(self, positions: Iterable[tuple[int, int]]) -> None:
        """Return once a move of any listed partition's watermark passes its sequence.

        (partition, sequence) pairs; the caller checks the watermarks before and after. Entries
        left in the queues when it returns or is cancelled are removed."""
        event = trio.Event()
        entries = []
        for partition_id, sequence in positions:
            entry = (sequence, next(self._order), event)
            heapq.heappush(self._waiting[partition_id], entry)
            entries.append((partition_id, entry))
        try:
            await event.wait()
        finally:
            for partition_id, entry in entries:
                queue = self._waiting[partition_id]
                try:
                    queue.remove(entry)  # tuples compare (sequence, unique order): never events
                except ValueError:
                    continue  # popped by the move that woke it
                heapq.heapify(queue)

    def waiting(self, partition_id: int) -> int:
        """How many waiters a partition's queue holds (appends and blocked reads)."""
        return len(self._waiting[partition_id])
