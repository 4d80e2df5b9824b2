"""Hand-written encoders for the replies on the hot path (event maps, append results).

Generic encoding (``resp.encode``) walks Python values; these templates produce the same bytes
for the fixed-shape replies in one formatting step. Key names, order and types are the
reference's (event map: 11 keys; EAPPEND: 6 keys). In RESP2 a map is a flat array of key, value.
"""

from __future__ import annotations

from collections import OrderedDict

from sierradb.storage import Event

from .identifiers import format_uuid

_EVENT3 = (
    b"%%11\r\n+event_id\r\n+%s\r\n+partition_key\r\n+%s\r\n+partition_id\r\n:%d\r\n"
    b"+transaction_id\r\n+%s\r\n+partition_sequence\r\n:%d\r\n+stream_version\r\n:%d\r\n"
    b"+timestamp\r\n:%d\r\n+stream_id\r\n$%d\r\n%s\r\n+event_name\r\n$%d\r\n%s\r\n"
    b"+metadata\r\n$%d\r\n%s\r\n+payload\r\n$%d\r\n%s\r\n"
)
_EVENT2 = b"*22" + _EVENT3[4:]

_APPEND3 = (
    b"%%6\r\n+event_id\r\n+%s\r\n+partition_key\r\n+%s\r\n+partition_id\r\n:%d\r\n"
    b"+partition_sequence\r\n:%d\r\n+stream_version\r\n:%d\r\n+timestamp\r\n:%d\r\n"
)
_APPEND2 = b"*12" + _APPEND3[3:]


def _uuid(b: bytes) -> bytes:
    return format_uuid(b).encode()


class EncodedEvents:
    """An LRU of encoded event maps, bounded in bytes.

    Stored events never change, so the bytes of an event map can be reused by every read and
    every subscriber that sends it (hot streams are read again and again when aggregates are
    loaded). The key includes the position and term, so an entry a discard replaced (same
    position, other event) is never confused with its replacement.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._maps: OrderedDict[tuple, bytes] = OrderedDict()

    def get(self, ev: Event, resp3: bool) -> bytes:
        key = (ev.event_id, ev.partition_sequence, ev.term, resp3)
        encoded = self._maps.get(key)
        if encoded is not None:
            self._maps.move_to_end(key)
            self.hits += 1
            return encoded
        self.misses += 1
        encoded = _encode_event_map(ev, resp3)
        if len(encoded) <= self.max_bytes // 64:
            self._maps[key] = encoded
            self.bytes += len(encoded)
            while self.bytes > self.max_bytes:
                self.bytes -= len(self._maps.popitem(last=False)[1])
        return encoded


# Encoded event maps kept for reuse (the event loop's thread only).
ENCODED_EVENTS_MAX_BYTES = 32 * 1024 * 1024
encoded_events = EncodedEvents(ENCODED_EVENTS_MAX_BYTES)


def event_map(ev: Event, resp3: bool) -> bytes:
    return encoded_events.get(ev, resp3)


def _encode_event_map(ev: Event, resp3: bool) -> bytes:
    return (_EVENT3 if resp3 else _EVENT2) % (
        _uuid(ev.event_id),
        _uuid(ev.partition_key),
        ev.partition_id,
        _uuid(ev.transaction_id),
        ev.partition_sequence,
        ev.stream_version,
        ev.timestamp_ms,
        len(ev.stream_id),
        ev.stream_id,
        len(ev.event_name),
        ev.event_name,
        len(ev.metadata),
        ev.metadata,
        len(ev.payload),
        ev.payload,
    )


def append_result(
    event_id: bytes,
    partition_key: bytes,
    partition_id: int,
    sequence: int,
    version: int,
    timestamp_ms: int,
    resp3: bool,
) -> bytes:
    return (_APPEND3 if resp3 else _APPEND2) % (
        _uuid(event_id),
        _uuid(partition_key),
        partition_id,
        sequence,
        version,
        timestamp_ms,
    )


def scan_result(events: list[Event], has_more: bool, resp3: bool) -> bytes:
    """{has_more: bool, events: [event map...]}"""
    if resp3:
        head = b"%%2\r\n+has_more\r\n%s\r\n+events\r\n*%d\r\n" % (
            b"#t" if has_more else b"#f",
            len(events),
        )
    else:
        head = b"*4\r\n+has_more\r\n:%d\r\n+events\r\n*%d\r\n" % (int(has_more), len(events))
    return head + b"".join([event_map(ev, resp3) for ev in events])


def push_message(subscription_id: bytes, cursor: int, ev: Event, resp3: bool) -> bytes:
    head = b">4\r\n" if resp3 else b"*4\r\n"
    return head + b"+message\r\n+%s\r\n:%d\r\n%s" % (
        _uuid(subscription_id),
        cursor,
        event_map(ev, resp3),
    )


def push_subscribe(subscription_id: bytes, count: int, resp3: bool) -> bytes:
    head = b">3\r\n" if resp3 else b"*3\r\n"
    return head + b"+subscribe\r\n+%s\r\n:%d\r\n" % (_uuid(subscription_id), count)
