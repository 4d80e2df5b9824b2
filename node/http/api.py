"""The JSON API under ``/api/``: overview, partitions, streams, events (the live feed is in
``feed.py``).

Every read goes through the same path as the RESP commands: ``Database.read`` (the bounded read
threads) on the storage engine's ``read_partition`` / ``read_stream`` / ``get_event``, which stop
at each partition's watermark, so the API never shows an event a command could not. On a cluster
member that holds a replica of a partition this is already right (reads are local up to the
watermark, like EPSCAN); partitions a node does not hold will need the same forwarding the
commands get.

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
from .events import event_text, to_json, with_events

if TYPE_CHECKING:
    from .app import Inspector

# A page never holds more events than this (nor more than the node's max_count) ...
MAX_PAGE_EVENTS = 10_000
# ... nor (past its first event) more payload and metadata bytes than this.
MAX_PAGE_BYTES = 8 * 1024 * 1024
DEFAULT_PAGE_EVENTS = 100
# Position values beyond this are refused (storage positions are unsigned 64-bit).
MAX_POSITION = (1 << 63) - 1


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(
    value: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(to_json(value), status, headers, media_type="application/json")


def error_response(error: ApiError) -> Response:
    return json_response({"error": {"code": error.code, "message": error.message}}, error.status)


def bad(message: str) -> ApiError:
    return ApiError(400, "bad_parameter", message)


def check_params(request: Request, *names: str) -> None:
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        raise bad(f"unknown parameter {unknown[0]!r} (accepted: {', '.join(names) or 'none'})")


def _int(text: str | None, name: str, low: int, high: int) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not text.isascii() or len(text) > 19:
        raise bad(f"{name} must be an integer in {low}..{high}, got {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise bad(f"{name} must be an integer in {low}..{high}, got {value}")
    return value


def _page_params(ins: Inspector, request: Request) -> tuple[int | None, bool, int]:
    q = request.query_params
    direction = q.get("direction", "forward")
    if direction not in ("forward", "backward"):
        raise bad(f"direction must be forward or backward, got {direction[:40]!r}")
    max_limit = min(MAX_PAGE_EVENTS, ins.config.max_count)
    limit = _int(q.get("limit"), "limit", 1, max_limit) or min(DEFAULT_PAGE_EVENTS, max_limit)
    return _int(q.get("from"), "from", 0, MAX_POSITION), direction == "backward", limit


def _partition(ins: Inspector, text: str) -> int:
    p = _int(text, "partition", 0, 65535)
    assert p is not None
    if p >= ins.db.partition_count:
        raise ApiError(
            404, "not_found", f"no partition {p} (this node has {ins.db.partition_count})"
        )
    ins.require_held(p)
    return p


def _trim_bytes(events: list) -> tuple[list, bool]:
    """Cut a page at MAX_PAGE_BYTES of payload and metadata (keeping at least one event)."""
    size = 0
    for i, ev in enumerate(events):
        size += len(ev.payload) + len(ev.metadata)
        if size > MAX_PAGE_BYTES and i > 0:
            return events[:i], True
    return events, False


def _page(meta: dict[str, Any], events: list, more: bool, backward: bool, position: str
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


async def _read_range(ins: Inspector, fn: Any, args: tuple, start: int | None, backward: bool,
                      limit: int, end_if_backward: int) -> tuple[list, bool, int]:  # fmt: skip
    """Read `limit` events forward from `start`, or backward ending at `start` (default: the
    end). Returns the events in the direction asked, whether more lie beyond, and the start."""
    if not backward:
        first = start or 0
        events, more = await ins.db.read(fn, *args, first, None, limit)
        return events, more, first
    last = end_if_backward if start is None else min(start, end_if_backward)
    if last < 0:
        return [], False, 0
    first = max(0, last - limit + 1)
    events, _ = await ins.db.read(fn, *args, first, last, limit)
    events.reverse()
    return events, first > 0, last


# ------------------------------------------------------------------------------ handlers
async def overview(ins: Inspector, request: Request) -> Response:
    check_params(request)
    db = ins.db
    store = db.store
    srv = ins.server.statistics()
    st = store.statistics()
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
            "cluster": ins.cluster_info(),
        }
    )


async def partitions(ins: Inspector, request: Request) -> Response:
    check_params(request)
    store = ins.db.store
    items = []
    for p in range(store.partition_count):
        w = store.watermark(p)
        items.append({"partition_id": p, "last_sequence": w - 1 if w else None, "watermark": w})
    return json_response({"partitions": items})


async def partition(ins: Inspector, request: Request) -> Response:
    check_params(request)
    p = _partition(ins, request.path_params["partition"])
    w = ins.db.store.watermark(p)
    return json_response({"partition_id": p, "last_sequence": w - 1 if w else None, "watermark": w})


async def partition_events(ins: Inspector, request: Request) -> Response:
    check_params(request, "from", "direction", "limit")
    p = _partition(ins, request.path_params["partition"])
    start, backward, limit = _page_params(ins, request)
    store = ins.db.store
    events, more, first = await _read_range(
        ins, store.read_partition, (p,), start, backward, limit, store.watermark(p) - 1
    )
    w = store.watermark(p)
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
    p = partition_id(key, ins.db.partition_count)
    ins.require_held(p)
    return text, stream_id, key, p


async def _stream_version(ins: Inspector, p: int, stream_id: bytes, key: bytes) -> int | None:
    """The stream's last visible version, as ESVER answers it (None: no such stream)."""
    store = ins.db.store
    bound = await ins.db.read(store.stream_partition_key, p, stream_id)
    if bound is None or bound != key:
        return None
    return await ins.db.read(store.last_stream_version, p, stream_id)


async def stream(ins: Inspector, request: Request) -> Response:
    check_params(request, "stream_id", "partition_key")
    text, stream_id, key, p = _stream(ins, request)
    return json_response(
        {
            "stream_id": text,
            "partition_key": format_uuid(key),
            "partition_id": p,
            "version": await _stream_version(ins, p, stream_id, key),
        }
    )


async def stream_events(ins: Inspector, request: Request) -> Response:
    check_params(request, "stream_id", "partition_key", "from", "direction", "limit")
    text, stream_id, key, p = _stream(ins, request)
    start, backward, limit = _page_params(ins, request)
    version = await _stream_version(ins, p, stream_id, key)
    if version is None:
        events, more, first = [], False, 0
    else:
        store = ins.db.store
        events, more, first = await _read_range(
            ins, store.read_stream, (p, stream_id), start, backward, limit, version
        )
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
    db = ins.db
    p = partition_id(event_id, db.partition_count)
    ins.require_held(p)
    ev = await db.read(db.store.get_event, p, event_id)
    if ev is None:
        raise ApiError(404, "not_found", f"no event {text}")
    return Response(event_text(ev).encode(), media_type="application/json")
