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
from typing import Any

from sierradb.storage import Event

from ..identifiers import format_uuid

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _bytes_field(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def event_json(ev: Event) -> dict[str, Any]:
    metadata, metadata_encoding = _bytes_field(ev.metadata)
    payload, payload_encoding = _bytes_field(ev.payload)
    return {
        "event_id": format_uuid(ev.event_id),
        "partition_key": format_uuid(ev.partition_key),
        "partition_id": ev.partition_id,
        "transaction_id": format_uuid(ev.transaction_id),
        "partition_sequence": ev.partition_sequence,
        "stream_version": ev.stream_version,
        "timestamp": ev.timestamp_ms,
        "stream_id": ev.stream_id.decode("utf-8", "replace"),
        "event_name": ev.event_name.decode("utf-8", "replace"),
        "metadata": metadata,
        "metadata_encoding": metadata_encoding,
        "payload": payload,
        "payload_encoding": payload_encoding,
    }


def to_json(value: object) -> bytes:
    """Compact UTF-8 JSON (non-ASCII kept as is)."""
    return _dumps(value).encode("utf-8")
