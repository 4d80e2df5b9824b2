"""Data channels: one outbound stream per (peer, traffic class), frames batched per write.

Theory of operation. Replication and forwarded requests travel on streams of their own, apart
from the control link and from each other, so a large catch-up batch never delays heartbeats or
acknowledgements of other partitions (cluster-safety P9). Each node opens its own outbound
stream to a peer for each class and only writes on it; it reads what the peer sends on the
stream the peer opened. Streams are data links (``data_links``: TCP sealed with
ChaCha20-Poly1305, keyed by the control link's handshake), not py-libp2p streams, which cost
~0.8 ms of CPU per message. A channel keeps a bounded outbox of frames (opaque bytes; the node
encodes them) and one sender task that writes everything queued in a single write per wake-up:
each write is a seal and a system call on each side, so batching is where the throughput comes
from (P1). Only a peer with an accepted control link (handshake passed, not refused) may use
channels: a connection from anyone else is refused in its opening exchange, and frames for a
peer without one are dropped. A channel whose stream breaks drops what it held (the protocols
above tolerate loss and resend) and opens a new stream when there is something to send again.

Lingering (Nagle's idea, gated on load). A write wakes as soon as a frame is queued, so with
many clients each sending one request at a time, frames trickle in and almost every write
carried one of them: the node spent its CPU on the per-write cost, which made every
round slower, which kept the batches small. So while the event loop is busy (``LoopLoad``:
at least ``BUSY_TO_LINGER`` of the last window not waiting for I/O), a channel writes at most
once per ``LINGER_S``, and what queues meanwhile goes in that write. An idle or lightly loaded
loop writes at once, so a lone request pays no delay.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .data_links import DataLinks, DataStream
from .errors import FrameError, P2PError
from .framing import FrameReader, frame
from .loop_load import LoopLoad

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio's own type, as the stubs mypy reads name it

log = logging.getLogger("sierradb.p2p")

REPLICATION_PROTOCOL = "/sierradb/replication/1.0.0"
REQUESTS_PROTOCOL = "/sierradb/requests/1.0.0"
# A data frame holds one batch of replication entries or one request; the largest request a
# client may send is 64 MiB, plus the envelope.
MAX_DATA_FRAME_BYTES = 65 * 1024 * 1024
# Frames queued for one peer on one channel; past this, new frames are dropped (and counted).
MAX_OUTBOX_FRAMES = 8192
# Bytes written per wake-up at most (later frames go in the next write).
MAX_WRITE_BYTES = 4 * 1024 * 1024

# A peer whose data port cannot be reached (a firewall that passes only the cluster port) is
# logged at most this often per channel; its frames are dropped meanwhile.
OPEN_WARNING_INTERVAL_S = 30.0

# While the loop is this busy, a channel writes at most once per LINGER_S (see the docstring).
BUSY_TO_LINGER = 0.8
LINGER_S = 0.02

FrameHandler = Callable[[int, bytes], None]  # (sender's node index, frame body)


def linger_s(now: float, last_write: float, busy: float) -> float:
    """How long a woken channel waits before it writes: while the loop is busy, until
    LINGER_S after its last write; otherwise not at all."""
    if busy < BUSY_TO_LINGER:
        return 0.0
    return max(0.0, last_write + LINGER_S - now)


class _Channel:
    def __init__(self, peer_id: str, protocol: str) -> None:
        self.peer_id = peer_id
        self.protocol = protocol
        self.outbox: deque[bytes] = deque()
        self.wake = trio.Event()
        self.dropped = 0
        self.sent = 0  # frames
        self.writes = 0  # stream writes (each carries every frame queued at its wake-up)
        self.last_write = -LINGER_S  # trio clock
        self.lingered = 0  # wake-ups that waited for more frames
        self.warned_at = -OPEN_WARNING_INTERVAL_S  # trio clock of the last "cannot open" warning


class Channels:
    def __init__(self, links: DataLinks, node_of: Callable[[str], int | None]) -> None:
        """`node_of(peer id)` is the node index of a peer with an accepted link, else None."""
        self.links = links
        self.node_of = node_of
        self._handlers: dict[str, FrameHandler] = {}
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._nursery: trio.Nursery | None = None
        self.load = LoopLoad()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            trio.lowlevel.add_instrument(self.load)
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                trio.lowlevel.remove_instrument(self.load)

    def register(self, protocol: str, handler: FrameHandler) -> None:
        """Receive this class's frames (the handler runs in the stream's reader task, which
        is ours: a broken invariant in it stops the node)."""
        self._handlers[protocol] = handler

        async def on_stream(stream: DataStream) -> None:
            await self._read(stream, protocol, handler)

        self.links.set_handler(on_stream, protocol)

    def send(self, peer_id: str, protocol: str, body: bytes) -> bool:
        """Queue one frame for a peer; False if it was dropped (no link, or a full outbox)."""
        if self.node_of(peer_id) is None or self._nursery is None:
            return False
        channel = self._channels.get((peer_id, protocol))
        if channel is None:
            channel = self._channels[(peer_id, protocol)] = _Channel(peer_id, protocol)
            self._nursery.start_soon(self._send_loop, channel)
        if len(channel.outbox) >= MAX_OUTBOX_FRAMES:
            channel.dropped += 1
            return False
        channel.outbox.append(frame(body))
        channel.wake.set()
        return True

    def dropped(self) -> int:
        return sum(c.dropped for c in self._channels.values())

    def counts(self) -> tuple[int, int, int, int]:
        """(frames sent, stream writes, frames dropped, lingering wake-ups) over every
        channel since start."""
        chans = self._channels.values()
        return (
            sum(c.sent for c in chans),
            sum(c.writes for c in chans),
            self.dropped(),
            sum(c.lingered for c in chans),
        )

    async def _send_loop(self, channel: _Channel) -> None:
        stream: DataStream | None = None
        try:
            while True:
                await channel.wake.wait()
                delay = linger_s(trio.current_time(), channel.last_write, self.load.busy())
                if delay > 0:
                    channel.lingered += 1
                    await trio.sleep(delay)
                channel.wake = trio.Event()
                if not channel.outbox:
                    continue
                if self.node_of(channel.peer_id) is None:
                    channel.dropped += len(channel.outbox)
                    channel.outbox.clear()
                    continue
                try:
                    if stream is None:
                        stream = await self.links.open_stream(channel.peer_id, channel.protocol)
                    channel.last_write = trio.current_time()
                    while channel.outbox:
                        batch: list[bytes] = []
                        size = 0
                        while channel.outbox and size < MAX_WRITE_BYTES:
                            batch.append(channel.outbox.popleft())
                            size += len(batch[-1])
                        await stream.send(b"".join(batch))
                        channel.sent += len(batch)
                        channel.writes += 1
                except P2PError as e:
                    now = trio.current_time()
                    if stream is None and now - channel.warned_at >= OPEN_WARNING_INTERVAL_S:
                        channel.warned_at = now
                        log.warning(
                            "cannot open the %s channel to %s (is its data port reachable?): %s",
                            channel.protocol, channel.peer_id, e,
                        )  # fmt: skip
                    else:
                        log.debug("channel %s to %s: %s", channel.protocol, channel.peer_id, e)
                    channel.dropped += len(channel.outbox)
                    channel.outbox.clear()
                    if stream is not None:
                        await stream.close()
                    stream = None
        finally:
            if stream is not None:
                await stream.close()

    async def _read(self, stream: DataStream, protocol: str, handler: FrameHandler) -> None:
        reader = FrameReader(MAX_DATA_FRAME_BYTES)
        try:
            node = self.node_of(stream.peer_id)
            if node is None:
                return  # no accepted control link: not a member of this cluster
            while True:
                reader.feed(await stream.receive())
                while (body := reader.next_body()) is not None:
                    if self.node_of(stream.peer_id) != node:
                        return  # refused or relinked meanwhile
                    handler(node, body)
        except FrameError as e:
            log.warning("peer %s sent a bad %s frame: %s", stream.peer_id, protocol, e)
        except P2PError:
            pass  # the stream ended
        finally:
            await stream.close()
