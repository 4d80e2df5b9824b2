"""The JSON API under ``/api/``: overview, partitions, streams, events (the live feed is in
``feed.py``).

Every read goes through ``reads.py``, the same paths as the RESP commands: on a node that holds
a replica of the partition, ``Database.read`` (the bounded read threads) on the storage engine's
``read_partition`` / ``read_stream`` / ``get_event``, which stop at the partition's watermark;
on a cluster node that holds none, a request to a node that does, answered from its storage
below its watermark. So the API never shows an event a command could not, and works on any node
for any partition (503 ``partition_unreachable`` when no replica answers).

Paging: ``from`` is a position (sequence or version, inclusive), ``direction`` is ``forward``
(default) or ``backward``, ``limit`` is 1..``max_page_events``. A page lists its events in the
direction asked and ``next``: the ``from`` of the following page in that direction, or null when
there is none yet. Positions are gapless, so a backward page is an exact range read. Every bad
parameter gets a 400 (or 404 for something that does not exist) with
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from sierradb.storage import MAX_STREAM_ID_BYTES

from ..identifiers import format_uuid, parse_uuid, partition_id, partition_key_for_stream
from . import reads
from .events import JsonEvent, event_json, with_events
from .responses import ApiError, bad, check_params, int_param, json_response

if TYPE_CHECKING:
    from .inspector import Inspector

# A page never holds more events than this (nor more than the node's max_count) ...
MAX_PAGE_EVENTS = 10_000
# ... nor (past its first event) more payload and metadata bytes than this.
MAX_PAGE_BYTES = 8 * 1024 * 1024
DEFAULT_PAGE_EVENTS = 100
# Position values beyond this are refused (storage positions are unsigned 64-bit).
MAX_POSITION = (1 << 63) - 1


def _max_page_events(ins: Inspector) -> int:
    return min(MAX_PAGE_EVENTS, ins.config.max_count)


def _page_params(ins: Inspector, request: Request) -> tuple[int | None, bool, int]:
    q = request.query_params
    direction = q.get("direction", "forward")
    if direction not in ("forward", "backward"):
        raise bad(f"direction must be forward or backward, got {direction[:40]!r}")
    max_limit = _max_page_events(ins)
    limit = int_param(q.get("limit"), "limit", 1, max_limit) or min(DEFAULT_PAGE_EVENTS, max_limit)
    return int_param(q.get("from"), "from", 0, MAX_POSITION), direction == "backward", limit


def _partition(ins: Inspector, text: str) -> int:
    p = int_param(text, "partition", 0, 65535)
    assert p is not None
    if p >= ins.db.partition_count:
        raise ApiError(
            404, "not_found", f"no partition {p} (this node has {ins.db.partition_count})"
        )
    return p


def _trim_bytes(events: list[JsonEvent]) -> tuple[list[JsonEvent], bool]:
    """Cut a page at MAX_PAGE_BYTES of payload and metadata (keeping at least one event)."""
    size = 0
    for i, ev in enumerate(events):
        size += ev.size
        if size > MAX_PAGE_BYTES and i > 0:
            return events[:i], True
    return events, False


def _page(meta: dict[str, Any], events: list[JsonEvent], more: bool, backward: bool, position: str
          ) -> Response:  # fmt: skip
    """A page: `meta`, the next page's `from`, and the events (in the direction asked)."""
    events, cut = _trim_bytes(events)
    more = more or cut
    nxt: int | None = None
    if events:
        last = getattr(events[-1], position)
        if backward:
            nxt = last - 1 if last > 0 else None
        elif more:
            nxt = last + 1
    return Response(with_events({**meta, "next": nxt}, events), media_type="application/json")


async def _read_range(read: Any, start: int | None, backward: bool, limit: int,
                      end_if_backward: int) -> tuple[list, bool, int]:  # fmt: skip
    """`read(first, last, limit)` forward from `start`, or backward ending at `start` (default:
    the end). Returns the events in the direction asked, whether more lie beyond, and the
    start."""
    if not backward:
        first = start or 0
        events, more = await read(first, None, limit)
        return events, more, first
    last = end_if_backward if start is None else min(start, end_if_backward)
    if last < 0:
        return [], False, 0
    first = max(0, last - limit + 1)
    events, _ = await read(first, last, limit)
    events.reverse()
    return events, first > 0, last


# ------------------------------------------------------------------------------ handlers
async def overview(ins: Inspector, request: Request) -> Response:
    check_params(request)
    db = ins.db
    store = db.store
    srv = ins.server.statistics()
    st = store.statistics()
    # On a cluster node: where every partition lives and its watermark (see reads).
    cluster: dict[str, Any] = ins.cluster_info()
    cluster["partitions"] = await reads.placement(ins) if ins.replication is not None else []
    history = list(ins.http.history)
    rates = [
        {"time": round(t1), "events_per_second": round((n1 - n0) / (t1 - t0), 1)}
        for (t0, n0), (t1, n1) in zip(history, history[1:], strict=False)
        if t1 > t0
    ]
    return json_response(
        {
            "node": {
                "version": ins.version,
                "peer_id": ins.server.peer_id,
                "process_id": os.getpid(),
                "uptime_s": round(srv.uptime_s),
                "started_at": round(time.time() - srv.uptime_s),
                "data_dir": str(ins.config.dir),
                "client_address": ins.client_address(),
                "http_address": ins.http.url_address,
                "password": ins.config.requirepass is not None,
                "ready": ins.ready()[0],
            },
            "storage": {
                "partitions": store.partition_count,
                "buckets": store.bucket_count,
                "segment_size_bytes": store.segment_size_bytes,
                "sealed_segments": st.sealed_segments,
                "events": ins.visible_events(),
                "disk_bytes": ins.disk_bytes(),
                "bytes_written": st.bytes_written,
            },
            "clients": {
                "connections": srv.connections,
                "subscriptions": srv.subscriptions,
                "subscription_backlog_events": srv.subscription_backlog_events,
                "subscription_unacknowledged_events": srv.subscription_unacknowledged_events,
                "http_connections": ins.http.connections,
                "live_feeds": ins.feeds_open,
            },
            "appends": rates,
            "cluster": cluster,
        }
    )


def _partition_row(p: int, w: int | None) -> dict[str, Any]:
    return {"partition_id": p, "last_sequence": w - 1 if w else None, "watermark": w}


async def partitions(ins: Inspector, request: Request) -> Response:
    """Every partition, its watermark, and on a cluster node where it lives (its replicas, the
    leader this node knows, whether this node holds one); the watermark of a partition held
    elsewhere is its holders' (null if none answered)."""
    check_params(request)
    items = [{**_partition_row(row["partition_id"], row["watermark"]), **row}
             for row in await reads.placement(ins)]  # fmt: skip
    return json_response({"partitions": items, "max_page_events": _max_page_events(ins)})


async def partition(ins: Inspector, request: Request) -> Response:
    """One partition as the list shows it (a 503 if it is held elsewhere and none answers)."""
    check_params(request)
    p = _partition(ins, request.path_params["partition"])
    (row,) = await reads.placement(ins, (p,))
    if row["watermark"] is None:
        row["watermark"] = await reads.watermark(ins, p)
    return json_response({**_partition_row(p, row["watermark"]), **row})


async def partition_events(ins: Inspector, request: Request) -> Response:
    check_params(request, "from", "direction", "limit")
    p = _partition(ins, request.path_params["partition"])
    start, backward, limit = _page_params(ins, request)
    w = await reads.watermark(ins, p) if backward else 0
    found = {"watermark": w}

    async def read(first: int, last: int | None, count: int) -> tuple[list, bool]:
        events, more, found["watermark"] = await reads.partition_range(ins, p, first, last, count)
        return events, more

    events, more, first = await _read_range(read, start, backward, limit, w - 1)
    w = max(w, found["watermark"])
    meta = {
        "partition_id": p,
        "direction": "backward" if backward else "forward",
        "from": first,
        "limit": limit,
        "last_sequence": w - 1 if w else None,
    }
    return _page(meta, events, more, backward, "partition_sequence")


def _stream(ins: Inspector, request: Request) -> tuple[str, bytes, bytes, int]:
    q = request.query_params
    text = q.get("stream_id")
    if not text:
        raise bad("stream_id is required")
    stream_id = text.encode("utf-8")
    if len(stream_id) > MAX_STREAM_ID_BYTES or b"\0" in stream_id:
        raise bad(f"stream_id must be 1..{MAX_STREAM_ID_BYTES} bytes without NUL")
    key_text = q.get("partition_key")
    if key_text:
        try:
            key = parse_uuid(key_text.encode())
        except ValueError as e:
            raise bad(f"partition_key must be a UUID, got {key_text[:40]!r}") from e
    else:
        key = partition_key_for_stream(stream_id)
    return text, stream_id, key, partition_id(key, ins.db.partition_count)


async def stream(ins: Inspector, request: Request) -> Response:
    check_params(request, "stream_id", "partition_key")
    text, stream_id, key, p = _stream(ins, request)
    return json_response(
        {
            "stream_id": text,
            "partition_key": format_uuid(key),
            "partition_id": p,
            "version": await reads.stream_version(ins, p, stream_id, key),
        }
    )


async def stream_events(ins: Inspector, request: Request) -> Response:
    check_params(request, "stream_id", "partition_key", "from", "direction", "limit")
    text, stream_id, key, p = _stream(ins, request)
    start, backward, limit = _page_params(ins, request)
    version = await reads.stream_version(ins, p, stream_id, key)
    events: list = []
    more, first = False, 0
    if version is not None:
        last = version

        async def read(first: int, end: int | None, count: int) -> tuple[list, bool]:
            return await reads.stream_range(ins, p, stream_id, key, first,
                                            last if end is None else end, count)  # fmt: skip

        events, more, first = await _read_range(read, start, backward, limit, version)
    meta = {
        "stream_id": text,
        "partition_id": p,
        "direction": "backward" if backward else "forward",
        "from": first,
        "limit": limit,
        "version": version,
    }
    return _page(meta, events, more, backward, "stream_version")


async def event(ins: Inspector, request: Request) -> Response:
    check_params(request)
    text = request.path_params["event_id"]
    try:
        event_id = parse_uuid(text.encode())
    except ValueError as e:
        raise bad(f"event id must be a UUID, got {text[:40]!r}") from e
    p = partition_id(event_id, ins.db.partition_count)
    ev = await reads.event_by_id(ins, p, event_id)
    if ev is None:
        raise ApiError(404, "not_found", f"no event {text}")
    return Response(event_json(ev), media_type="application/json")
