"""Relays: a subscription's events of a partition this cluster node holds no replica of.

Theory of operation (cluster-safety S12). A relay pulls one remote partition's events (or one
remote stream's) for one subscription, from an explicit position: the next sequence (or version)
not yet handed to the subscription. It asks a replica of the partition (its leader if known,
else the first live replica) for at most the room left in its buffer, which is bounded by the
subscription's window, so a client that stops reading holds back only its own relay; the
replica answers at once if events are visible there, else waits (up to ``LONG_POLL_MS``) until
some are, so an idle relay costs one request per long poll, not a polling loop. A source that
fails or stops answering is replaced by another replica, and the relay resumes from its own
position: events are never skipped or repeated, whichever replica serves them, because every
replica exposes the same confirmed prefix. Relays travel on the requests channel, never on the
replication one. The start position is fixed before the subscription's reply: for LATEST, the
remote replica's watermark (or the stream's next version) at that moment.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import trio

from sierradb.storage import Event

from .errors import NodeError

if TYPE_CHECKING:
    from .context import Replication
    from .visibility import WatermarkBoard

log = logging.getLogger("sierradb.node")

# A replica with nothing new for a relay answers after at most this long.
LONG_POLL_MS = 1000
# After a failed request, a relay waits this long before it asks (another replica) again.
RETRY_S = 0.2


class Relay:
    def __init__(
        self,
        service: Replication,
        board: WatermarkBoard,
        partition: int,
        start: int,
        capacity: int,
        stream_id: bytes = b"",
        partition_key: bytes = b"",
    ) -> None:
        self.service = service
        self.board = board
        self.partition = partition
        self.next = start  # the next sequence (or stream version) to fetch
        self.capacity = max(1, capacity)
        self.stream_id = stream_id
        self.partition_key = partition_key
        self.buffer: deque[Event] = deque()
        self._room = trio.Event()
        self._avoid: int | None = None  # a source that just failed

    def take(self, limit: int) -> list[Event]:
        """Up to `limit` buffered events, in order (non-blocking)."""
        out = [self.buffer.popleft() for _ in range(min(limit, len(self.buffer)))]
        if out:
            self._room.set()
        return out

    async def run(self) -> None:
        service = self.service
        while True:
            room = self.capacity - len(self.buffer)
            if room <= 0:
                self._room = trio.Event()
                await self._room.wait()
                continue
            source = self._source()
            if source is None:
                await trio.sleep(RETRY_S)
                continue
            try:
                events, _position = await service.fetch_events(
                    source, self.partition, self.next, room, LONG_POLL_MS,
                    self.stream_id, self.partition_key,
                )  # fmt: skip
            except NodeError as e:
                log.debug("relay of partition %d from node %d: %s", self.partition, source, e)
                self._avoid = source
                await trio.sleep(RETRY_S)
                continue
            self._avoid = None
            if events:
                self.buffer.extend(events)
                last = events[-1]
                self.next = (last.stream_version if self.stream_id else last.partition_sequence) + 1
                self.board.notify()  # the subscription's delivery loop waits on the board

    def _source(self) -> int | None:
        service = self.service
        order = [n for n in service.layout[self.partition] if service.cluster.is_up(n)]
        leader = service.leader_of(self.partition)
        if leader is not None and leader in order:
            order.remove(leader)
            order.insert(0, leader)
        if self._avoid in order and len(order) > 1:
            order.remove(self._avoid)
        return order[0] if order else None
