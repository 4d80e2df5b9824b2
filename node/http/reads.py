"""The API's reads of any partition, on any node: where this node holds a replica, from its own
storage (as the RESP commands read it); elsewhere, from a node that holds one (as the commands'
forwarded reads and the subscriptions' relays do).

Theory of operation. Every read is bounded by a watermark: local reads go through
``Database.read`` to the storage engine's ``read_partition`` / ``read_stream`` / ``get_event``,
which stop at the partition's watermark, after ``ready_to_read`` (a restarted replica first
hears its leader, like the commands). A partition held elsewhere is asked of its replicas, its
leader first (as far as this node knows it) and then the other live ones, on the requests
channel: ``fetch_events`` (the relays' request: visible events from a sequence or a stream
version, and the watermark or the stream's next version) for pages and versions, and
``lookup_event`` for an event by id; the holder answers from its storage below its own
watermark, so the API never shows an event that is not confirmed. Every replica exposes the same
confirmed prefix, so whichever answers, the events are the same; a follower's watermark may lag
its leader's by a moment. When no replica answers, the read fails with 503
``partition_unreachable`` naming the partition and the last reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from sierradb.storage import Event

from ..errors import NodeError
from .events import JsonEvent, json_event, json_event_raw
from .responses import ApiError

if TYPE_CHECKING:
    from ..replication.service import ReplicationService
    from .inspector import Inspector

T = TypeVar("T")

# A remote replica is asked for at most this many events per request (``MAX_FETCH_EVENTS``);
# a longer backward page is read in several requests.
REMOTE_BATCH_EVENTS = 1000


def sources(service: ReplicationService, p: int) -> list[int]:
    """The replicas of `p` to ask, in order: the known leader first, then the live others."""
    order = [n for n in service.layout[p] if n != service.node_index and service.cluster.is_up(n)]
    leader = service.leader_of(p)
    if leader is not None and leader in order:
        order.remove(leader)
        order.insert(0, leader)
    return order


def unreachable(p: int, reason: str) -> ApiError:
    return ApiError(503, "partition_unreachable", f"partition {p} is held by other nodes and "
                    f"none of them answered: {reason}")  # fmt: skip


async def ask(ins: Inspector, p: int, call: Callable[[int], Awaitable[T]]) -> T:
    """`call(node)` on the first replica of `p` that answers (503 if none does)."""
    service = ins.replication
    assert service is not None
    reason = f"no replica is up (replicas: nodes {', '.join(map(str, service.layout[p]))})"
    for node in sources(service, p):
        try:
            return await call(node)
        except NodeError as e:
            reason = f"node {node}: {e.message}"
    raise unreachable(p, reason)


async def _local(ins: Inspector, p: int, fn: Any, *args: Any) -> Any:
    replication = ins.replication
    if replication is not None:
        await replication.ready_to_read(p)
    return await ins.db.read(fn, *args)


# ----------------------------------------------------------------------------- partitions
async def watermark(ins: Inspector, p: int) -> int:
    """The partition's watermark: its next sequence, so the count of its visible events."""
    if ins.holds(p):
        return ins.db.store.watermark(p)
    return (await _fetch(ins, p, 0, None, 0))[1]


async def _fetch(ins: Inspector, p: int, first: int, last: int | None, limit: int,
                 stream_id: bytes = b"", key: bytes = b"") -> tuple[list[Event], int]:  # fmt: skip
    """From a holder of `p`: its visible events from position `first` (a sequence, or with a
    stream id a version) up to `last`, at most `limit` (in requests of at most
    REMOTE_BATCH_EVENTS), and the position the holder reported last (its watermark, or the
    stream's next version)."""
    service = ins.replication
    assert service is not None
    events: list[Event] = []
    while True:  # at least once: with `limit` 0 only the position is asked for
        want = min(limit - len(events), REMOTE_BATCH_EVENTS)
        call = partial(_fetch_at, service, p, first + len(events), want, stream_id, key)
        got, position = await ask(ins, p, call)
        kept = [e for e in got if last is None or _position(e, stream_id) <= last]
        events.extend(kept)
        if len(kept) < want or len(events) >= limit:
            return events, position


async def _fetch_at(service: ReplicationService, p: int, start: int, count: int,
                    stream_id: bytes, key: bytes, node: int
                    ) -> tuple[tuple[Event, ...], int]:  # fmt: skip
    return await service.fetch_events(node, p, start, count, 0, stream_id, key)


def _position(e: Event, stream_id: bytes) -> int:
    return e.stream_version if stream_id else e.partition_sequence


async def partition_range(ins: Inspector, p: int, first: int, last: int | None, limit: int
                          ) -> tuple[list[JsonEvent], bool, int]:  # fmt: skip
    """Visible events with first <= sequence <= last (None: to the end), at most `limit`, as
    JSON: (events, whether more visible ones follow in the range, the watermark). Local events
    are encoded from their stored records in the read thread."""
    if ins.holds(p):
        store = ins.db.store

        def read() -> tuple[list[JsonEvent], bool]:
            records, more = store.read_partition_raw(p, first, last, limit)
            return [json_event_raw(r) for r in records], more

        found, more = await _local(ins, p, read)
        return found, more, store.watermark(p)
    events, watermark = await _fetch(ins, p, first, last, limit)
    end = watermark - 1 if last is None else min(last, watermark - 1)
    more = (events[-1].partition_sequence if events else first - 1) < end
    return [json_event(e) for e in events], more, watermark


# -------------------------------------------------------------------------------- streams
async def stream_version(ins: Inspector, p: int, stream_id: bytes, key: bytes) -> int | None:
    """The stream's last visible version, as ESVER answers it (None: no such stream, or its id
    is bound to another partition key in this partition)."""
    if ins.holds(p):
        store = ins.db.store
        bound = await _local(ins, p, store.stream_partition_key, p, stream_id)
        if bound is None or bound != key:
            return None
        return await ins.db.read(store.last_stream_version, p, stream_id)
    # The holder's next visible version, and its version 0 (filtered by the key): a stream
    # whose first event has another key is another key's stream.
    first, position = await _fetch(ins, p, 0, None, 1, stream_id, key)
    return position - 1 if first and position > 0 else None


async def stream_range(ins: Inspector, p: int, stream_id: bytes, key: bytes, first: int,
                       last: int, limit: int) -> tuple[list[JsonEvent], bool]:  # fmt: skip
    """The stream's visible events with first <= version <= last, at most `limit`, as JSON, and
    whether more follow in that range (the caller knows the stream exists with this key)."""
    if ins.holds(p):
        store = ins.db.store
        events, more = await _local(ins, p, store.read_stream, p, stream_id, first, last, limit)
    else:
        events, _ = await _fetch(ins, p, first, last, limit, stream_id, key)
        more = (events[-1].stream_version if events else first - 1) < last
    return [json_event(e) for e in events], more


# --------------------------------------------------------------------------------- events
async def event_by_id(ins: Inspector, p: int, event_id: bytes) -> Event | None:
    """The event with this id if it is visible (None: none, or not confirmed yet)."""
    if ins.holds(p):
        return await _local(ins, p, ins.db.store.get_event, p, event_id)
    service = ins.replication
    assert service is not None
    return (await ask(ins, p, partial(_lookup_at, service, p, event_id)))[0]


async def _lookup_at(service: ReplicationService, p: int, event_id: bytes, node: int
                     ) -> tuple[Event | None, int]:  # fmt: skip
    return await service.lookup_event(node, p, event_id)


# ---------------------------------------------------------------------- where they live
async def placement(ins: Inspector, partitions: Sequence[int] | None = None
                    ) -> list[dict[str, Any]]:  # fmt: skip
    """Each partition (default: all): its replicas (the preferred leader first), whether this
    node holds one, the leader known (by this node, else by its holders), and its watermark
    (this node's, or the highest its holders report; None if none answered). One request per
    other live node, all at once."""
    store = ins.db.store
    if partitions is None:
        partitions = range(store.partition_count)
    service = ins.replication
    if service is None:
        return [{"partition_id": p, "replicas": [0], "held": True, "leader": 0,
                 "watermark": store.watermark(p)} for p in partitions]  # fmt: skip
    rows: dict[int, dict[str, Any]] = {}
    for p in partitions:
        held = p in service.replicas
        rows[p] = {"partition_id": p, "replicas": list(service.layout[p]), "held": held,
                   "leader": service.leader_of(p) if held else None,
                   "watermark": store.watermark(p) if held else None}  # fmt: skip
    remote = [p for p in partitions if p not in service.replicas]
    asked: dict[int, list[int]] = {}
    for p in remote:
        for n in sources(service, p):
            asked.setdefault(n, []).append(p)

    async def ask_node(n: int, partitions: list[int]) -> None:
        try:
            found = await service.watermarks_at(n, partitions)
        except NodeError:
            return  # those partitions keep None unless another holder answers
        for p, w, leader in found:
            row = rows[p]
            row["watermark"] = max(w, row["watermark"] or 0)
            if leader >= 0 and (leader == n or row["leader"] is None):
                row["leader"] = leader

    async with trio.open_nursery() as nursery:
        for n, some in asked.items():
            nursery.start_soon(ask_node, n, some)
    return list(rows.values())
