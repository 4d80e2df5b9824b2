"""Hand-written encoders for the replies on the hot path (event maps, append results).

Generic encoding (``resp.encode``) walks Python values; these templates produce the same bytes
for the fixed-shape replies in one formatting step. Key names, order and types are the
reference's (event map: 11 keys; EAPPEND: 6 keys). In RESP2 a map is a flat array of key, value.
Stored records (reads and partition subscriptions, the bulk of what is sent) are encoded by the
compiled ``event_codec``; the templates here encode Events (remote reads, stream subscriptions),
and the tests hold the two to the same bytes.
"""

from __future__ import annotations

from binascii import hexlify
from collections import OrderedDict

from sierradb.storage import Event
from sierradb.storage.record import RawEvent

from .event_codec import encode_events
from .identifiers import format_uuid, two_uuid_groups, uuid_groups

# The three ids are formatted from slices of one hex string of their 48 bytes.
_U = b"%s-%s-%s-%s-%s"
_EVENT3 = (
    b"%%11\r\n+event_id\r\n+" + _U + b"\r\n+partition_key\r\n+" + _U + b"\r\n"
    b"+partition_id\r\n:%d\r\n+transaction_id\r\n+" + _U + b"\r\n"
    b"+partition_sequence\r\n:%d\r\n+stream_version\r\n:%d\r\n"
    b"+timestamp\r\n:%d\r\n+stream_id\r\n$%d\r\n%s\r\n+event_name\r\n$%d\r\n%s\r\n"
    b"+metadata\r\n$%d\r\n%s\r\n+payload\r\n$%d\r\n%s\r\n"
)
# RESP2: every string a bulk string (PROTOCOL.md point 14); a UUID's text is 36 bytes.
_EVENT2 = (
    b"*22\r\n$8\r\nevent_id\r\n$36\r\n"
    + _U
    + b"\r\n$13\r\npartition_key\r\n$36\r\n"
    + _U
    + b"\r\n$12\r\npartition_id\r\n:%d\r\n$14\r\ntransaction_id\r\n$36\r\n"
    + _U
    + b"\r\n"
    b"$18\r\npartition_sequence\r\n:%d\r\n$14\r\nstream_version\r\n:%d\r\n"
    b"$9\r\ntimestamp\r\n:%d\r\n$9\r\nstream_id\r\n$%d\r\n%s\r\n$10\r\nevent_name\r\n$%d\r\n%s\r\n"
    b"$8\r\nmetadata\r\n$%d\r\n%s\r\n$7\r\npayload\r\n$%d\r\n%s\r\n"
)

_APPEND3 = (
    b"%%6\r\n+event_id\r\n+%s\r\n+partition_key\r\n+%s\r\n+partition_id\r\n:%d\r\n"
    b"+partition_sequence\r\n:%d\r\n+stream_version\r\n:%d\r\n+timestamp\r\n:%d\r\n"
)
_APPEND2 = (
    b"*12\r\n$8\r\nevent_id\r\n$36\r\n%s\r\n$13\r\npartition_key\r\n$36\r\n%s\r\n"
    b"$12\r\npartition_id\r\n:%d\r\n$18\r\npartition_sequence\r\n:%d\r\n"
    b"$14\r\nstream_version\r\n:%d\r\n$9\r\ntimestamp\r\n:%d\r\n"
)


# EMAPPEND: the head (partition, first and last sequence, the events' count), then per event.
_MULTI3 = (
    b"%%5\r\n+partition_key\r\n+%s\r\n+partition_id\r\n:%d\r\n"
    b"+first_partition_sequence\r\n:%d\r\n+last_partition_sequence\r\n:%d\r\n+events\r\n*%d\r\n"
)
_MULTI2 = (
    b"*10\r\n$13\r\npartition_key\r\n$36\r\n%s\r\n$12\r\npartition_id\r\n:%d\r\n"
    b"$24\r\nfirst_partition_sequence\r\n:%d\r\n$23\r\nlast_partition_sequence\r\n:%d\r\n"
    b"$6\r\nevents\r\n*%d\r\n"
)
_MULTI_EVENT3 = (
    b"%%4\r\n+event_id\r\n+%s\r\n+stream_id\r\n+%s\r\n"
    b"+stream_version\r\n:%d\r\n+timestamp\r\n:%d\r\n"
)
_MULTI_EVENT2 = (
    b"*8\r\n$8\r\nevent_id\r\n$36\r\n%s\r\n$9\r\nstream_id\r\n$%d\r\n%s\r\n"
    b"$14\r\nstream_version\r\n:%d\r\n$9\r\ntimestamp\r\n:%d\r\n"
)


def _uuid(b: bytes) -> bytes:
    return format_uuid(b).encode()


def _stream_id_text(stream_id: bytes, resp3: bool) -> bytes:
    """A stream id as the generic encoder sends the reply's SimpleString: UTF-8 (invalid bytes
    replaced); in RESP3 (a `+` line) with CR and LF as spaces, in RESP2 (a bulk string) as is."""
    if stream_id.isascii() and (not resp3 or (b"\r" not in stream_id and b"\n" not in stream_id)):
        return stream_id
    text = stream_id.decode("utf-8", "replace")
    if resp3:
        text = text.replace("\r", " ").replace("\n", " ")
    return text.encode()


def multi_append_result(
    partition_key: bytes,
    partition_id: int,
    first_sequence: int,
    events: list[tuple[bytes, bytes, int, int]],
    resp3: bool,
) -> bytes:
    """EMAPPEND's reply; `events`: (event id, stream id, stream version, timestamp ms) each."""
    head = (_MULTI3 if resp3 else _MULTI2) % (
        _uuid(partition_key), partition_id, first_sequence, first_sequence + len(events) - 1,
        len(events),
    )  # fmt: skip
    if resp3:
        return head + b"".join(
            [
                _MULTI_EVENT3 % (_uuid(event_id), _stream_id_text(stream_id, True), version, ts)
                for event_id, stream_id, version, ts in events
            ]
        )
    parts = [head]
    for event_id, stream_id, version, ts in events:
        text = _stream_id_text(stream_id, False)
        parts.append(_MULTI_EVENT2 % (_uuid(event_id), len(text), text, version, ts))
    return b"".join(parts)


class EncodedEvents:
    """An LRU of encoded event maps, bounded in bytes.

    Stored events never change, so the bytes of an event map can be reused by every reply that
    sends the same Event (EGET, events another node sent for a read or a subscription), whose
    templates cost ~6 us an event. Stored records are encoded by the compiled codec instead
    (``event_codec``, ~0.5 us), which is cheaper than a lookup here. The key includes the
    position and term, so an entry a discard replaced (same position, other event) is never
    confused with its replacement.
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
    ids = hexlify(ev.event_id + ev.partition_key + ev.transaction_id)
    return _map(ids, ev.partition_id, ev.partition_sequence, ev.stream_version, ev.timestamp_ms,
                ev.stream_id, ev.event_name, ev.metadata, ev.payload, resp3)  # fmt: skip


def event_map_raw(raw: RawEvent, resp3: bool) -> bytes:
    """The map of a stored record (``storage.RawEvent``), without building an Event (by the
    compiled encoder, ``event_codec``; the templates here encode Events)."""
    return encode_events([raw], resp3)


def _map(ids: bytes, partition: int, sequence: int, version: int, timestamp_ms: int,
         stream_id: bytes, event_name: bytes, metadata: bytes, payload: bytes,
         resp3: bool) -> bytes:  # fmt: skip
    """`ids`: the event id, partition key and transaction id as one hex string (96 digits)."""
    return (_EVENT3 if resp3 else _EVENT2) % (
        *two_uuid_groups(ids), partition, *uuid_groups(ids, 64), sequence, version, timestamp_ms,
        len(stream_id), stream_id, len(event_name), event_name,
        len(metadata), metadata, len(payload), payload,
    )  # fmt: skip


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
    return _scan_head(len(events), has_more, resp3) + b"".join(
        [event_map(ev, resp3) for ev in events]
    )


def _scan_head(count: int, has_more: bool, resp3: bool) -> bytes:
    if resp3:
        return b"%%2\r\n+has_more\r\n%s\r\n+events\r\n*%d\r\n" % (
            b"#t" if has_more else b"#f",
            count,
        )
    return b"*4\r\n$8\r\nhas_more\r\n:%d\r\n$6\r\nevents\r\n*%d\r\n" % (
        int(has_more),
        count,
    )


def scan_result_raw(records: list[RawEvent], has_more: bool, resp3: bool) -> bytes:
    """scan_result of stored records (a read that only re-encodes its events), in one pass of
    the compiled codec: ~0.5 us an event, cheaper than a lookup in the encoded-event cache
    (~1 us in Python), so stream reads no longer go through it."""
    return encode_events(records, resp3, prefix=_scan_head(len(records), has_more, resp3))


def _push_head(subscription_id: bytes, resp3: bool) -> bytes:
    """A push message's frame up to its cursor's digits."""
    if resp3:
        return b">4\r\n+message\r\n+%s\r\n:" % _uuid(subscription_id)
    return b"*4\r\n$7\r\nmessage\r\n$36\r\n%s\r\n:" % _uuid(subscription_id)


def push_message(subscription_id: bytes, cursor: int, ev: Event, resp3: bool) -> bytes:
    return b"%s%d\r\n%s" % (_push_head(subscription_id, resp3), cursor, event_map(ev, resp3))


def push_messages_raw(subscription_id: bytes, cursor: int, records: list[RawEvent],
                      resp3: bool) -> bytes:  # fmt: skip
    """push_message of each stored record, with cursors from `cursor` on, in one buffer."""
    return encode_events(records, resp3, _push_head(subscription_id, resp3), cursor)


def push_subscribe(subscription_id: bytes, count: int, resp3: bool) -> bytes:
    if resp3:
        return b">3\r\n+subscribe\r\n+%s\r\n:%d\r\n" % (_uuid(subscription_id), count)
    return b"*3\r\n$9\r\nsubscribe\r\n$36\r\n%s\r\n:%d\r\n" % (_uuid(subscription_id), count)
