"""The state of one subscription across connections: positions, acknowledgements, resumption.

Theory of operation. A subscription follows targets, either partitions (`EPSUB`) or streams
(`ESUB`), and keeps for each target the next position it has not yet delivered to the caller: a
partition sequence, or a stream version. Positions are explicit from the start: a subscription
asked to start "from now" first reads each target's last position (`EPSEQ`/`ESVER`) and starts
after it, so that "now" means the same thing after a reconnection as before it.

Every (re)subscription sends `FROM MAP target=next_position ...`, so the server replays exactly
what the caller has not seen and then goes live. A connection that drops at any moment loses
nothing (the next subscription starts at the first undelivered position) and repeats nothing
to the caller (an event below its target's next position is dropped here, should a server ever
send one). An event above the next position would be a gap, which the contract rules out; it
raises `SubscriptionGap` rather than being passed on silently.

Flow control: the server sends at most `window` events past the last `EACK`. The caller pulls
events one at a time and the client reads the socket only when asked, so the acknowledgement
follows the caller's pace: once half a window has been handed over, `EACK` acknowledges it.
Cursors and acknowledgements belong to one server-side subscription and restart with the next.

Liveness: a connection that stays quiet for a heartbeat interval gets a `PING`; if it is still
quiet one interval later it is taken for dead (a hung node or a silent network), dropped and
replaced. Replies (to `EACK`, `PING`, `EUNSUB`) are counted, so closing can wait for exactly
the `EUNSUB` reply.

This class does no I/O: the sync and asyncio shells feed it frames and send what it returns.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConnectionFailed, SubscriptionGap
from .identifiers import partition_id, partition_key_for_stream
from .protocol import Arg, Request, parse_event, partition_sequence, stream_version, text
from .types import Event

StreamTarget = tuple[str, uuid.UUID]  # stream id, partition key
Target = int | StreamTarget  # a partition id, or a stream


class SubscriptionState:
    def __init__(
        self,
        targets: Mapping[int, int | None] | Mapping[StreamTarget, int | None],
        window: int,
        partitions: bool,
    ) -> None:
        """`targets` maps each target to its first position, or None for "after the last one
        now" (resolved with `start_requests` before subscribing)."""
        if not targets:
            raise ValueError("a subscription needs at least one target")
        if window < 1:
            raise ValueError("window must be at least 1")
        if not partitions:
            stream_ids = [sid for sid, _ in targets]  # type: ignore[misc]
            if len(set(stream_ids)) != len(stream_ids):
                raise ValueError("a stream subscription names each stream id once")
        self.partitions = partitions
        self.window = window
        self.positions: dict[Target, int | None] = dict(
            typing.cast(Mapping[Target, int | None], targets)
        )
        self.subscription_id: str | None = None
        self._cursor = -1
        self._acked = -1
        self._ack_every = max(1, window // 2)
        self._ping_sent = False
        self.pending_replies = 0  # commands sent on this connection whose reply is not in

    # ------------------------------------------------------------------ starting point
    def start_requests(self) -> list[tuple[Target, Request[int | None]]]:
        """The reads that turn "from now" into explicit positions."""
        out: list[tuple[Target, Request[int | None]]] = []
        for target, position in self.positions.items():
            if position is None:
                if isinstance(target, int):
                    out.append((target, partition_sequence(target)))
                else:
                    out.append((target, stream_version(target[0], target[1])))
        return out

    def set_start(self, target: Target, last: int | None) -> None:
        self.positions[target] = 0 if last is None else last + 1

    # ------------------------------------------------------------------- subscribing
    def subscribe_args(self) -> tuple[Arg, ...]:
        assert all(p is not None for p in self.positions.values()), "resolve starts first"
        if self.partitions:
            ids = sorted(self.positions)  # type: ignore[type-var]
            selector = ",".join(str(p) for p in ids)
            mapping = [f"{p}={self.positions[p]}" for p in ids]
            return ("EPSUB", selector, "FROM", "MAP", *mapping, "WINDOW", self.window)
        args: list[Arg] = ["ESUB"]
        for sid, key in self.positions:  # type: ignore[misc]
            args += [sid, "PARTITION_KEY", str(key)]
        mapping = [f"{sid}={pos}" for (sid, _), pos in self.positions.items()]  # type: ignore[misc]
        return (*args, "FROM", "MAP", *mapping, "WINDOW", self.window)

    def on_subscribed(self, reply: Any) -> None:
        self.subscription_id = text(reply)
        self._cursor = -1
        self._acked = -1
        self._ping_sent = False
        self.pending_replies = 0

    def on_disconnect(self) -> None:
        self.subscription_id = None

    # ---------------------------------------------------------------------- delivery
    def on_frame(self, frame: Any) -> Event | None:
        """The event to hand to the caller for this frame, if any. Frames that are not pushes
        are replies to EACK, PING or EUNSUB; pushes of an earlier subscription are ignored."""
        self._ping_sent = False
        if not isinstance(frame, list):
            self.pending_replies -= 1
            return None
        if len(frame) < 3:
            return None
        if text(frame[0]) != "message" or text(frame[1]) != self.subscription_id:
            return None
        self._cursor = int(frame[2])
        event = parse_event(frame[3])
        target: Target
        if self.partitions:
            target, position = event.partition_id, event.partition_sequence
        else:
            target, position = (event.stream_id, event.partition_key), event.stream_version
        expected = self.positions.get(target)
        if expected is None:
            return None  # not a target of ours
        if position < expected:
            return None  # already delivered
        if position > expected:
            raise SubscriptionGap(
                f"subscription {self.subscription_id}: {target!r} jumped from position "
                f"{expected} to {position}"
            )
        self.positions[target] = position + 1
        return event

    def ack_args(self) -> tuple[Arg, ...] | None:
        """EACK once half a window was received since the last one."""
        if self.subscription_id is None or self._cursor - self._acked < self._ack_every:
            return None
        self._acked = self._cursor
        self.pending_replies += 1
        return ("EACK", self.subscription_id, self._cursor)

    def on_closing_frame(self, frame: Any) -> None:
        """A frame read while closing: replies are counted, pushes dropped (not delivered, so
        positions stay at the first event the caller has not seen)."""
        if not isinstance(frame, list):
            self.pending_replies -= 1

    def on_quiet(self) -> tuple[Arg, ...]:
        """A heartbeat interval passed without a frame: PING, or give the connection up."""
        if self._ping_sent:
            raise ConnectionFailed("no reply to PING within the heartbeat interval")
        self._ping_sent = True
        self.pending_replies += 1
        return ("PING",)

    def unsubscribe_args(self) -> tuple[Arg, ...] | None:
        if self.subscription_id is None:
            return None
        self.pending_replies += 1
        return ("EUNSUB", self.subscription_id)


# ------------------------------------------------------------------- building targets
PartitionSelector = str | int | uuid.UUID | Iterable[int | uuid.UUID]
"""`"*"` (every partition), a partition id, a partition key, or several of them."""
StreamSelector = str | Iterable[str | StreamTarget]
"""A stream id, or several (each optionally with its partition key)."""


def partition_targets(
    selector: PartitionSelector,
    from_sequence: int | Mapping[int, int] | None,
    partition_count: int,
) -> dict[int, int | None]:
    """Partition id -> first sequence (None: after the last one now)."""
    if selector == "*":
        ids = list(range(partition_count))
    else:
        items = [selector] if isinstance(selector, int | uuid.UUID) else list(selector)  # type: ignore[arg-type]
        ids = [
            partition_id(i, partition_count) if isinstance(i, uuid.UUID) else int(i) for i in items
        ]
    for p in ids:
        if not 0 <= p < partition_count:
            raise ValueError(f"partition {p} is not in 0..{partition_count - 1}")
    return {p: _start(from_sequence, p) for p in ids}


def stream_targets(
    streams: StreamSelector, from_version: int | Mapping[str, int] | None
) -> dict[StreamTarget, int | None]:
    """(stream id, partition key) -> first version (None: after the last one now)."""
    items = [streams] if isinstance(streams, str) else list(streams)
    targets: dict[StreamTarget, int | None] = {}
    for item in items:
        sid, key = (item, partition_key_for_stream(item)) if isinstance(item, str) else item
        targets[(sid, key)] = _start(from_version, sid)
    return targets


def _start(start: int | Mapping[Any, int] | None, key: Any) -> int | None:
    if isinstance(start, Mapping):
        return start.get(key)
    return start
