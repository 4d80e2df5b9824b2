"""Events as JSON: the one shape the API, the live feed and projections all use.

An event is an object with the RESP event map's fields, in its order:

    {"event_id": "<uuid>", "partition_key": "<uuid>", "partition_id": 21,
     "transaction_id": "<uuid>", "partition_sequence": 0, "stream_version": 0,
     "timestamp": 1795675424406, "stream_id": "user-123", "event_name": "UserCreated",
     "metadata": "", "metadata_encoding": "utf-8",
     "payload": "{\\"name\\": \\"Alice\\"}", "payload_encoding": "utf-8"}

``timestamp`` is milliseconds since the epoch. ``payload`` and ``metadata`` are the stored bytes:
as a string when they are valid UTF-8 (``*_encoding: "utf-8"``), else base64
(``*_encoding: "base64"``). JSON payloads are not parsed here (the browser does, off the node's
CPU). Stream ids and event names that are not valid UTF-8 are shown with U+FFFD replacements.
"""

from __future__ import annotations

import base64
import json
from binascii import hexlify
from json.encoder import encode_basestring  # the C encoder: a quoted, escaped JSON string
from typing import NamedTuple

from sierradb.storage import Event
from sierradb.storage.record import (
    RAW_IDS,
    RawEvent,
    raw_body,
    raw_header,
)

from ..identifiers import two_uuid_groups, uuid_groups

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

# One event as JSON (UTF-8) in one formatting step (pages of thousands of events are the hot
# path of a projection; this is about three times faster than building dicts for json.dumps).
_UUID = b"%s-%s-%s-%s-%s"
_EVENT = (
    b'{"event_id":"' + _UUID + b'","partition_key":"' + _UUID + b'","partition_id":%d,'
    b'"transaction_id":"' + _UUID + b'","partition_sequence":%d,"stream_version":%d,'
    b'"timestamp":%d,"stream_id":%s,"event_name":%s,"metadata":%s,"metadata_encoding":"%s",'
    b'"payload":%s,"payload_encoding":"%s"}'
)


def _string(text: str) -> bytes:
    return encode_basestring(text).encode("utf-8")


def _bytes_field(data: bytes) -> tuple[bytes, bytes]:
    try:
        return _string(data.decode("utf-8")), b"utf-8"
    except UnicodeDecodeError:
        return b'"%s"' % base64.b64encode(data), b"base64"


def event_json(ev: Event) -> bytes:
    """One event as a JSON object (UTF-8)."""
    return _json(
        hexlify(ev.event_id + ev.partition_key + ev.transaction_id), ev.partition_id,
        ev.partition_sequence, ev.stream_version, ev.timestamp_ms, ev.stream_id, ev.event_name,
        ev.metadata, ev.payload,
    )  # fmt: skip


def _json(ids: bytes, partition: int, sequence: int, version: int, timestamp_ms: int,
          stream_id: bytes, event_name: bytes, metadata: bytes,
          payload: bytes) -> bytes:  # fmt: skip
    """`ids`: the event id, partition key and transaction id as one hex string (96 digits)."""
    meta_json, meta_encoding = _bytes_field(metadata)
    payload_json, payload_encoding = _bytes_field(payload)
    return _EVENT % (
        *two_uuid_groups(ids), partition, *uuid_groups(ids, 64), sequence, version, timestamp_ms,
        _string(stream_id.decode("utf-8", "replace")),
        _string(event_name.decode("utf-8", "replace")),
        meta_json, meta_encoding, payload_json, payload_encoding,
    )  # fmt: skip


class JsonEvent(NamedTuple):
    """An event as the API pages it: its JSON, its positions, and the bytes of its payload and
    metadata (pages are bounded by those)."""

    json: bytes
    partition_sequence: int
    stream_version: int
    size: int


def json_event(ev: Event) -> JsonEvent:
    size = len(ev.payload) + len(ev.metadata)
    return JsonEvent(event_json(ev), ev.partition_sequence, ev.stream_version, size)


def json_event_raw(raw: RawEvent) -> JsonEvent:
    """From a stored record (``storage.RawEvent``), without building an Event."""
    h = raw_header(raw)
    sid, name, metadata, payload = raw_body(raw, h)
    seq, version = h.sequence, h.version
    data = _json(hexlify(raw[RAW_IDS]), h.partition, seq, version, h.timestamp,
                 sid, name, metadata, payload)  # fmt: skip
    return JsonEvent(data, seq, version, len(metadata) + len(payload))


def to_json(value: object) -> bytes:
    """Compact UTF-8 JSON (non-ASCII kept as is)."""
    return _dumps(value).encode("utf-8")


def with_events(value: dict, events: list[JsonEvent]) -> bytes:
    """`value` as JSON with an `events` array appended (built without dicts per event)."""
    head = to_json(value)
    assert head.endswith(b"}")
    sep = b"," if len(head) > 2 else b""
    return head[:-1] + sep + b'"events":' + events_array(events) + b"}"


def events_array(events: list[JsonEvent]) -> bytes:
    """A JSON array of events."""
    return b"[" + b",".join([e.json for e in events]) + b"]"
