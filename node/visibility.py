"""Watermark notifications: how waiting appends and subscriptions learn that events are visible.

Theory of operation. Every time the node moves any partition's watermark it calls ``notify``,
which bumps a version counter and wakes everyone parked on the board. A waiter reads the version,
checks its own condition (a partition's watermark, a subscription's next position), and parks
only if nothing changed since it read the version, so no move is ever missed. One board serves
all partitions: a flush moves many watermarks at once and wakes each waiter once.
"""

from __future__ import annotations

import trio


class WatermarkBoard:
    def __init__(self) -> None:
        self.version = 0
        self._changed = trio.Event()

    def notify(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_for_change(self, seen_version: int) -> None:
        """Return once the version differs from `seen_version` (at once if it already does)."""
        if self.version != seen_version:
            return
        await self._changed.wait()
