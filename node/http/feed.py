"""The live feed: new events of some partitions as Server-Sent Events, resumable exactly.

Theory of operation. A feed is a cursor: for every selected partition, the next sequence to
send. Each round reads what is visible at the cursor (through the same storage read path as
EPSCAN, in one read-thread call for all partitions this node holds), sends it as one SSE
message, and advances the cursor past exactly what was sent; with nothing to send it parks on the
watermark board until any watermark moves (no polling), as a subscription does. A partition this
cluster node holds no replica of is followed by a ``Relay``, exactly as EPSUB follows it: the
relay pulls the partition's visible events from a replica that holds it, from the cursor's
position, into a small bounded buffer, and wakes the board; the round takes from that buffer.
History and live are one mechanism, so the feed neither skips nor repeats an event.

Each message carries the cursor *after* it as its SSE ``id``: ``p:s,p:s,...`` naming every
selected partition whose next sequence is above 0 (an omitted partition is at 0; a cursor at 0
everywhere names its first partition, since EventSource never sends back an empty id). A browser's
EventSource sends the last id back as ``Last-Event-ID`` when it reconnects, and the feed resumes
at exactly that cursor: no gap, no duplicate, whatever happened in between. The first message,
``ready``, carries the starting cursor, so even a feed that saw no event yet resumes without a
gap. One message carries a batch of events (a JSON array), so the id costs little per event.

Flow control: a batch is read only after the previous one was written to the socket, so a slow
browser costs at most one batch of memory; one that stops reading is dropped by the HTTP
server's stall guard (``server.py``). Writers never wait for a feed.

Messages:  ``event: ready``  data ``{"cursor": "..."}``;  ``event: events``  data ``[event, ...]``
(the API's event shape); comments (``: keep-alive``) every ``FEED_KEEPALIVE_S`` when idle.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from sierradb.storage import CorruptionError, Store

from ..grammar import CommandError, parse_partition_selector
from ..relay import Relay
from . import reads
from .events import events_json, to_json
from .responses import ApiError, bad

if TYPE_CHECKING:
    from .inspector import Inspector

log = logging.getLogger("sierradb.http")

# Events per message, and payload bytes per message (past its first event).
FEED_BATCH_EVENTS = 1000
FEED_BATCH_BYTES = 1024 * 1024
# After a message, wait this long before the next one: batches fill up under load instead of
# one message per group commit, at a latency people do not notice.
FEED_COALESCE_S = 0.05
# An idle feed sends a comment this often (proxies and browsers keep the connection; a dead
# client is noticed by the stall guard).
FEED_KEEPALIVE_S = 15.0
# Live feeds open at once on this node.
MAX_FEEDS = 64
# Events a relay (a partition held elsewhere) holds for its feed, at most.
RELAY_BUFFER_EVENTS = 256
# Tell EventSource to reconnect after this long (milliseconds).
RETRY_MS = 1000


def parse_selection(text: str, partition_count: int) -> tuple[int, ...]:
    """`all`, or EPSUB's selector syntax: `3`, `1,2`, `0-7`, a partition key."""
    if text in ("all", "*"):
        return tuple(range(partition_count))
    try:
        selected = parse_partition_selector(text.encode()).resolve(partition_count)
    except CommandError as e:
        raise bad(f"partitions: {e.message}") from e
    if not selected:
        raise bad("partitions selects nothing")
    if selected[-1] >= partition_count:
        raise ApiError(404, "not_found", f"no partition {selected[-1]} (this node has "
                       f"{partition_count})")  # fmt: skip
    return selected


def parse_cursor(text: str, selected: tuple[int, ...]) -> dict[int, int]:
    """`p:s,p:s` into {partition: next sequence} for every selected partition (default 0)."""
    cursor = dict.fromkeys(selected, 0)
    if not text.strip():
        return cursor
    seen = set()
    for item in text.split(","):
        p_text, sep, s_text = item.strip().partition(":")
        if not (sep and p_text.isdigit() and s_text.isdigit() and len(s_text) <= 19):
            raise bad(f"cursor item {item[:40]!r} is not <partition>:<sequence>")
        p, s = int(p_text), int(s_text)
        if p not in cursor or p in seen:
            raise bad(f"cursor names partition {p}, which is not selected or named twice")
        seen.add(p)
        cursor[p] = s
    return cursor


def format_cursor(cursor: dict[int, int]) -> str:
    text = ",".join(f"{p}:{s}" for p, s in cursor.items() if s)
    # Never empty: EventSource does not send an empty id back, and the feed would then restart
    # from its URL's `from` instead of from this cursor.
    return text or f"{next(iter(cursor))}:0"


async def start_cursor(ins: Inspector, selected: tuple[int, ...], start: str,
                       last_event_id: str | None) -> dict[int, int]:  # fmt: skip
    """Where a feed starts: Last-Event-ID if sent, else `from` (latest, earliest or a cursor).
    `latest` is each partition's watermark now: this node's for those it holds (read without
    an await, so none moves meanwhile), the holders' for the others (503 if none answers)."""
    if last_event_id is not None:
        return parse_cursor(last_event_id, selected)
    if start == "earliest":
        return dict.fromkeys(selected, 0)
    if start != "latest":
        return parse_cursor(start, selected)
    store = ins.db.store
    cursor = {p: store.watermark(p) for p in selected}
    failed: list[ApiError] = []

    async def remote(p: int) -> None:
        try:
            cursor[p] = await reads.watermark(ins, p)
        except ApiError as e:
            failed.append(e)

    async with trio.open_nursery() as nursery:
        for p in selected:
            if not ins.holds(p):
                nursery.start_soon(remote, p)
    if failed:
        raise failed[0]
    return cursor


def _read_round(store: Store, cursor: dict[int, int]) -> list[Any]:
    """In a read thread: the visible events at the cursor, up to one batch, partition order."""
    events: list[Any] = []
    size = 0
    for p, nxt in cursor.items():
        if nxt >= store.watermark(p):
            continue
        got, _ = store.read_partition(p, nxt, None, FEED_BATCH_EVENTS - len(events))
        for ev in got:
            size += len(ev.payload) + len(ev.metadata)
            events.append(ev)
            if size > FEED_BATCH_BYTES:
                return events
        if len(events) >= FEED_BATCH_EVENTS:
            break
    return events


def _message(event: str, data: bytes, cursor: dict[int, int]) -> bytes:
    return b"event: %s\nid: %s\ndata: %s\n\n" % (
        event.encode(),
        format_cursor(cursor).encode(),
        data,
    )


async def run_feed(ins: Inspector, cursor: dict[int, int],
                   send: Callable[[bytes], Awaitable[None]]) -> None:  # fmt: skip
    """Send the feed until cancelled (the client went away or the node stops)."""
    async with trio.open_nursery() as nursery:
        relays: dict[int, Relay] = {}
        service = ins.replication
        for p, nxt in cursor.items():
            if not ins.holds(p):
                assert service is not None
                relays[p] = Relay(service, ins.db.board, p, nxt, RELAY_BUFFER_EVENTS)
                nursery.start_soon(relays[p].run)
        await _feed(ins, cursor, relays, send)
        nursery.cancel_scope.cancel()


async def _feed(ins: Inspector, cursor: dict[int, int], relays: dict[int, Relay],
                send: Callable[[bytes], Awaitable[None]]) -> None:  # fmt: skip
    db = ins.db
    store = db.store
    board = db.board
    local = {p: nxt for p, nxt in cursor.items() if p not in relays}
    await send(
        b"retry: %d\n" % RETRY_MS
        + _message("ready", to_json({"cursor": format_cursor(cursor)}), cursor)
    )
    while True:
        seen = board.version
        for p in local:
            local[p] = cursor[p]
        local_ready = any(nxt < store.watermark(p) for p, nxt in local.items())
        if not local_ready and not any(r.buffer for r in relays.values()):
            with trio.move_on_after(FEED_KEEPALIVE_S) as idle:
                await board.wait_for_change(seen)
            if idle.cancelled_caught:
                await send(b": keep-alive\n\n")
            continue
        events: list[Any] = []
        if local_ready:
            try:
                events = await db.read(_read_round, store, local)
            except CorruptionError as e:
                log.error("live feed ended: %s", e)
                return
        for relay in relays.values():
            if len(events) >= FEED_BATCH_EVENTS:
                break
            events.extend(relay.take(FEED_BATCH_EVENTS - len(events)))
        for ev in events:
            cursor[ev.partition_id] = ev.partition_sequence + 1
        await send(_message("events", events_json(events), cursor))
        ins.feed_events += len(events)
        await trio.sleep(FEED_COALESCE_S)
