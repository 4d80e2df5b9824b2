"""Subscriptions (ESUB, EPSUB): history, then live, through the one storage read path.

Theory of operation. A subscription is a set of targets, each a position: the next partition
sequence of a partition (EPSUB) or the next version of a stream (ESUB). On a cluster node, a
target of a partition the node holds no replica of is fed by a relay (see ``relay``) instead of
the local storage; the relays run inside the subscription's task and end with it. Delivery is
always the same loop: read the visible events at each target's position, push them, advance the
position. When there is nothing more to read, the task parks on the watermark board until any
watermark moves. History and live are therefore one mechanism, and the switch between them can
neither skip nor repeat an event: a position only ever advances past what was pushed.

Flow control: every pushed event takes the subscription's next cursor (0, 1, 2, ...). With no
EACK, cursors 0..window-1 may be sent; after ``EACK id c`` cursors up to c + window may be sent.
When the window is full the task parks until an ack arrives. Pushes go through the connection's
send lock; a client that stops reading blocks only its own connection's sends (the kernel's
socket buffer is the only buffering), never writers or other clients.

A live-only subscription starts at the visible end taken *before* the subscribe reply, so it
delivers exactly the events that become visible after it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import trio

from sierradb.storage import CorruptionError, Event, Store
from sierradb.storage.record import raw_sequence

from .read_pool import INLINE_READ_EVENTS
from .relay import Relay
from .replies import push_message, push_messages_raw
from .visibility import WatermarkBoard

log = logging.getLogger("sierradb.node")

# Events read per target per round (also bounded by the window).
DELIVERY_BATCH = 100


@dataclass(slots=True)
class PartitionTarget:
    partition_id: int
    next_sequence: int


@dataclass(slots=True)
class RemoteTarget:
    """A partition (or a stream in one) this cluster node holds no replica of: its events
    arrive through a relay (see ``relay``)."""

    partition_id: int
    relay: Relay


@dataclass(slots=True)
class StreamTarget:
    partition_id: int
    stream_id: bytes
    partition_key: bytes
    next_version: int
    read_at_watermark: int = -1  # the partition watermark when this target was last read empty


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    delivered: int  # events pushed so far
    unacknowledged: int  # pushed, not acknowledged yet (at most the window)
    backlog: int  # visible events not pushed yet


class Subscription:
    def __init__(
        self,
        subscription_id: bytes,
        targets: list[PartitionTarget | StreamTarget | RemoteTarget],
        window: int,
        store: Store,
        board: WatermarkBoard,
        read: Callable[..., Awaitable[object]],
        send: Callable[[bytes], Awaitable[None]],
        resp3: bool,
    ) -> None:
        self.id = subscription_id
        self.targets = targets
        self.window = window
        self.store = store
        self.board = board
        self._read = read
        self._send = send
        self.resp3 = resp3
        self.cursor = 0
        self.last_ack: int | None = None
        self._acked = trio.Event()
        self.cancel_scope = trio.CancelScope()
        self.delivered = 0

    def ack(self, cursor: int) -> None:
        self.last_ack = cursor
        self._acked.set()

    def statistics(self) -> SubscriptionStatistics:
        acked = 0 if self.last_ack is None else self.last_ack + 1
        backlog = 0
        for target in self.targets:
            p = target.partition_id
            if isinstance(target, PartitionTarget):
                backlog += max(0, self.store.watermark(p) - target.next_sequence)
            elif isinstance(target, StreamTarget):
                last = self.store.last_stream_version(p, target.stream_id)
                if last is not None:
                    backlog += max(0, last + 1 - target.next_version)
        return SubscriptionStatistics(self.delivered, max(0, self.cursor - acked), backlog)

    def room(self) -> int:
        """How many more events the window allows right now."""
        if self.last_ack is None:
            return self.window - self.cursor
        return self.last_ack + self.window - self.cursor + 1

    async def run(self) -> None:
        with self.cancel_scope:
            async with trio.open_nursery() as relays:
                for target in self.targets:
                    if isinstance(target, RemoteTarget):
                        relays.start_soon(target.relay.run)
                await self._deliver_forever()
                relays.cancel_scope.cancel()

    async def _deliver_forever(self) -> None:
        try:
            while True:
                seen = self.board.version
                acked = self._acked
                if self.room() <= 0:
                    await acked.wait()
                    self._acked = trio.Event()
                    continue
                if not await self._deliver_round():
                    await self.board.wait_for_change(seen)
        except CorruptionError as e:
            log.error("subscription %s ended: %s", self.id.hex(), e)

    async def _deliver_round(self) -> bool:
        """Push what is visible at each target (within the window); whether anything was."""
        any_sent = await self._deliver_local()
        store = self.store
        for target in self.targets:
            if isinstance(target, PartitionTarget):
                continue
            room = self.room()
            if room <= 0:
                return True
            n = min(room, DELIVERY_BATCH)
            p = target.partition_id
            watermark = store.watermark(p)
            events: list[Event]
            if isinstance(target, RemoteTarget):
                events = target.relay.take(n)
            else:
                if target.read_at_watermark == watermark:
                    continue
                events, _ = await self._read(
                    store.read_stream, p, target.stream_id, target.next_version, None, n
                )  # type: ignore[misc]
                events = [e for e in events if e.partition_key == target.partition_key]
                if events:
                    target.next_version = events[-1].stream_version + 1
                    target.read_at_watermark = -1
                else:
                    target.read_at_watermark = watermark
            if not events:
                continue
            frames = []
            for ev in events:
                frames.append(push_message(self.id, self.cursor, ev, self.resp3))
                self.cursor += 1
            self.delivered += len(events)
            await self._send(b"".join(frames))
            any_sent = True
        return any_sent

    async def _deliver_local(self) -> bool:
        """The partitions stored here with visible events at their positions: their stored
        records are encoded straight into push frames, on the event loop when they are few
        (at most INLINE_READ_EVENTS) and lie in the active segment; the partitions from the
        first whose read needs a sealed segment on, or all of a larger delivery, in one hop to
        the read threads (the frames stay numbered in partition order)."""
        store = self.store
        ready = [
            t
            for t in self.targets
            if isinstance(t, PartitionTarget) and t.next_sequence < store.watermark(t.partition_id)
        ]
        room = self.room()
        if not ready or room <= 0:
            return False
        starts = [(t.partition_id, t.next_sequence) for t in ready]
        events = sum(min(DELIVERY_BATCH, store.watermark(p) - s) for p, s in starts)
        frames, cursor = b"", self.cursor
        nexts: list[int] = []
        if min(events, room) <= INLINE_READ_EVENTS:
            frames, nexts, cursor = self._read_frames(starts, cursor, room, True)
        if len(nexts) < len(starts):
            found = await self._read(
                self._read_frames, starts[len(nexts) :], cursor, room - (cursor - self.cursor)
            )
            more, more_nexts, cursor = cast(tuple[bytes, list[int], int], found)
            frames += more
            nexts += more_nexts
        for target, nxt in zip(ready, nexts, strict=True):
            target.next_sequence = nxt
        sent, self.cursor = cursor - self.cursor, cursor
        self.delivered += sent
        if sent:
            await self._send(frames)
        return sent > 0

    def _read_frames(self, starts: list[tuple[int, int]], cursor: int, room: int,
                     active_only: bool = False) -> tuple[bytes, list[int], int]:  # fmt: skip
        """Push frames of the visible records at each (partition, next sequence), at most
        DELIVERY_BATCH per partition and `room` in all, numbered from `cursor`; each
        partition's next sequence after them; the next cursor. In a read thread; with
        `active_only`, on the event loop, stopping before the first partition whose read needs
        a sealed segment (fewer next sequences than `starts` then)."""
        chunks = []
        nexts: list[int] = []
        for p, start in starts:
            want = min(room, DELIVERY_BATCH)
            records: list = []
            if want > 0 and active_only:
                got = self.store.read_partition_raw_active(p, start, None, want)
                if got is None:
                    break
                records = got[0]
            elif want > 0:
                records = self.store.read_partition_raw(p, start, None, want)[0]
            if records:
                chunks.append(push_messages_raw(self.id, cursor, records, self.resp3))
                cursor += len(records)
                room -= len(records)
                start = raw_sequence(records[-1]) + 1
            nexts.append(start)
        return b"".join(chunks), nexts, cursor
