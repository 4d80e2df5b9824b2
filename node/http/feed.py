"""The live feed: new events of some partitions as Server-Sent Events, resumable exactly.

Theory of operation. A feed is a cursor: for every selected partition, the next sequence to
send. Each round reads what is visible at the cursor (through the same storage read path as
EPSCAN, in one read-thread call for all partitions this node holds), sends it as one SSE
message, and advances the cursor past exactly what was sent; with nothing to send it parks on the
watermark board until any watermark moves (no polling), as a subscription does. A partition this
cluster node holds no replica of is followed by a ``Relay``, exactly as EPSUB follows it: the
relay pulls the partition's visible events from a replica that holds it, from the cursor's
position, into a small bounded buffer, and wakes the board; the round takes from that buffer.
History and live are one mechanism, so the feed neither skips nor repeats an event. Events this
node holds are sent from their stored records (``read_partition_raw``, ``json_event_raw``, as the
API's pages are), never built into Events; a relay's come as Events (``json_event``): the bytes
on the wire are the same either way.

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

With ``tail=N`` the feed is a tail for a person to read (``tail.py``): rounds at most every
``TAIL_INTERVAL_S`` of at most N events, each partition's newest, and before them
``event: skipped`` data ``{"count": n}`` when a round passed over older ones. Without it (the
default) the feed is complete.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from sierradb.storage import CorruptionError, Event, Store

from ..grammar import CommandError, parse_partition_selector
from ..relay import Relay
from . import reads
from . import tail as tail_mode
from .events import JsonEvent, events_array, json_event, json_event_raw, to_json
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


def _read_round(store: Store, cursor: dict[int, int]) -> list[tuple[int, JsonEvent]]:
    """In a read thread: the visible events at the cursor, up to one batch, partition order,
    each with its partition, as JSON from the stored records."""
    events: list[tuple[int, JsonEvent]] = []
    size = 0
    for p, nxt in cursor.items():
        if nxt >= store.watermark(p):
            continue
        records, _ = store.read_partition_raw(p, nxt, None, FEED_BATCH_EVENTS - len(events))
        for record in records:
            ev = json_event_raw(record)
            size += ev.size
            events.append((p, ev))
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
                   send: Callable[[bytes], Awaitable[None]], tail: int | None = None
                   ) -> None:  # fmt: skip
    """Send the feed until cancelled (the client went away or the node stops); with `tail`,
    a tail of at most that many events per round."""
    async with trio.open_nursery() as nursery:
        relays: dict[int, Relay] = {}
        service = ins.replication
        for p, nxt in cursor.items():
            if not ins.holds(p):
                assert service is not None
                relays[p] = Relay(service, ins.db.board, p, nxt, RELAY_BUFFER_EVENTS)
                nursery.start_soon(relays[p].run)
        await _feed(ins, cursor, relays, send, tail)
        nursery.cancel_scope.cancel()


async def _feed(ins: Inspector, cursor: dict[int, int], relays: dict[int, Relay],
                send: Callable[[bytes], Awaitable[None]], tail: int | None) -> None:  # fmt: skip
    store = ins.db.store
    board = ins.db.board
    local = [p for p in cursor if p not in relays]
    await send(
        b"retry: %d\n" % RETRY_MS
        + _message("ready", to_json({"cursor": format_cursor(cursor)}), cursor)
    )
    turn = 0  # a tail's turn for ties in its shares
    while True:
        seen = board.version
        if not any(cursor[p] < store.watermark(p) for p in local) and not any(
            r.buffer for r in relays.values()
        ):
            with trio.move_on_after(FEED_KEEPALIVE_S) as idle:
                await board.wait_for_change(seen)
            if idle.cancelled_caught:
                await send(b": keep-alive\n\n")
            continue
        try:
            if tail is None:
                await _complete_round(ins, cursor, local, relays, send)
            else:
                await _tail_round(ins, cursor, local, relays, send, tail, turn)
                turn += 1
        except CorruptionError as e:
            log.error("live feed ended: %s", e)
            return
        await trio.sleep(FEED_COALESCE_S if tail is None else tail_mode.TAIL_INTERVAL_S)


async def _complete_round(ins: Inspector, cursor: dict[int, int], local: list[int],
                          relays: dict[int, Relay], send: Callable[[bytes], Awaitable[None]]
                          ) -> None:  # fmt: skip
    """One batch of the events at the cursor: the next of every partition, up to a batch."""
    store = ins.db.store
    at = {p: cursor[p] for p in local if cursor[p] < store.watermark(p)}
    events = await ins.db.read(_read_round, store, at) if at else []
    for relay in relays.values():
        if len(events) >= FEED_BATCH_EVENTS:
            break
        events.extend((relay.partition, json_event(ev))
                      for ev in relay.take(FEED_BATCH_EVENTS - len(events)))  # fmt: skip
    for p, ev in events:
        cursor[p] = ev.partition_sequence + 1
    await send(_message("events", events_array([ev for _, ev in events]), cursor))
    ins.feed_events += len(events)


async def _tail_round(ins: Inspector, cursor: dict[int, int], local: list[int],
                      relays: dict[int, Relay], send: Callable[[bytes], Awaitable[None]],
                      tail: int, turn: int) -> None:  # fmt: skip
    """One tail round (``tail.py``): what became visible, at most `tail` of it shown."""
    store = ins.db.store
    ends = {p: store.watermark(p) for p in local}  # read without an await: none moves meanwhile
    counts = {p: end - cursor[p] for p, end in ends.items() if end > cursor[p]}
    relayed: dict[int, list[Event]] = {}
    for p, relay in relays.items():
        if relay.buffer:
            relayed[p] = relay.take(RELAY_BUFFER_EVENTS)
            counts[p] = len(relayed[p])
            ends[p] = relayed[p][-1].partition_sequence + 1
    share = tail_mode.shares(counts, tail, turn)
    ranges = {p: (ends[p] - share[p], ends[p]) for p in counts if share[p] and p not in relayed}
    found = await ins.db.read(tail_mode.read_newest, store, ranges) if ranges else {}
    for p, events in relayed.items():
        found[p] = tail_mode.newest_relayed(events, share[p])
    shown = tail_mode.merge(found, FEED_BATCH_BYTES)
    # Each partition's shown events are its newest: the cursor past the passed-over ones is
    # each partition's first shown sequence (or its end when none is shown).
    skipped_to = {p: ends[p] for p in counts}
    for item in reversed(shown):
        skipped_to[item.partition] = item.sequence
    skipped = sum(skipped_to[p] - cursor[p] for p in counts)
    if skipped:
        cursor.update(skipped_to)
        await send(_message("skipped", to_json({"count": skipped}), cursor))
        ins.feed_skipped += skipped
    for p in counts:
        cursor[p] = ends[p]
    await send(_message("events", events_array([item.event for item in shown]), cursor))
    ins.feed_events += len(shown)
