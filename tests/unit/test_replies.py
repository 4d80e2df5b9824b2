"""Events encoded straight from stored records (RESP maps, the API's JSON) are byte for byte
those of decoded events."""

from __future__ import annotations

import base64
import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from sierradb.node import replies
from sierradb.node.http.events import event_json, json_event, json_event_raw
from sierradb.node.replies import _encode_event_map, event_map_raw, scan_result, scan_result_raw
from sierradb.storage import Event
from sierradb.storage.record import decode_event, encode_event, verify_event

_ids = st.binary(min_size=16, max_size=16)
_u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    return encode_event(
        term=draw(_u64),
        partition_id=draw(st.integers(min_value=0, max_value=65535)),
        sequence=draw(_u64),
        version=draw(_u64),
        timestamp_ms=draw(_u64),
        event_id=draw(_ids),
        partition_key=draw(_ids),
        transaction_id=draw(_ids),
        stream_id=draw(st.binary(min_size=1, max_size=64)),
        event_name=draw(st.binary(max_size=255)),
        metadata=draw(st.binary(max_size=300)),
        payload=draw(st.binary(max_size=3000)),
        unit_index=0,
        unit_count=1,
        txn_last=draw(st.booleans()),
    )


@given(st.lists(records(), max_size=4), st.booleans())
def test_raw_maps_equal_decoded_maps(stored: list[bytes], has_more: bool) -> None:
    raws = [verify_event(r, 0, len(r)) for r in stored]
    events = [decode_event(r, 0, len(r)) for r in stored]
    for raw, ev in zip(raws, events, strict=True):
        assert event_map_raw(raw, True) == _encode_event_map(ev, True)
        assert event_map_raw(raw, False) == _encode_event_map(ev, False)
    # scan_result reuses encoded maps by (id, sequence, term), which these made-up records
    # repeat with other fields: compare without that cache.
    cache, replies.encoded_events = replies.encoded_events, replies.EncodedEvents(0)
    try:
        for resp3 in (True, False):
            assert scan_result_raw(raws, has_more, resp3) == scan_result(events, has_more, resp3)
    finally:
        replies.encoded_events = cache


@given(st.lists(records(), max_size=4), _ids, st.integers(min_value=0, max_value=1 << 40))
def test_raw_push_frames_equal_decoded_push_frames(stored: list[bytes], sub_id: bytes,
                                                   cursor: int) -> None:  # fmt: skip
    raws = [verify_event(r, 0, len(r)) for r in stored]
    events = [decode_event(r, 0, len(r)) for r in stored]
    cache, replies.encoded_events = replies.encoded_events, replies.EncodedEvents(0)
    try:
        for resp3 in (True, False):
            one_by_one = b"".join(
                replies.push_message(sub_id, cursor + i, ev, resp3) for i, ev in enumerate(events)
            )
            assert replies.push_messages_raw(sub_id, cursor, raws, resp3) == one_by_one
    finally:
        replies.encoded_events = cache


@given(records())
def test_raw_json_equals_decoded_json(stored: bytes) -> None:
    raw = verify_event(stored, 0, len(stored))
    ev = decode_event(stored, 0, len(stored))
    assert json_event_raw(raw) == json_event(ev)
    assert json_event_raw(raw).json == event_json(ev)
    assert json.loads(event_json(ev)) == _documented_json(ev)


def _documented_json(ev: Event) -> dict:
    """The API's event shape as node/http/events.py documents it, built the slow way."""

    def text_or_base64(data: bytes) -> tuple[str, str]:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(data).decode("ascii"), "base64"

    metadata, metadata_encoding = text_or_base64(ev.metadata)
    payload, payload_encoding = text_or_base64(ev.payload)
    return {
        "event_id": str(uuid.UUID(bytes=ev.event_id)),
        "partition_key": str(uuid.UUID(bytes=ev.partition_key)),
        "partition_id": ev.partition_id,
        "transaction_id": str(uuid.UUID(bytes=ev.transaction_id)),
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


@given(records())
def test_the_encoded_event_cache_serves_records_and_events_alike(stored: bytes) -> None:
    raw = verify_event(stored, 0, len(stored))
    ev = decode_event(stored, 0, len(stored))
    cache = replies.EncodedEvents(1 << 20)
    for resp3 in (True, False):
        assert cache.get_raw(raw, resp3) == _encode_event_map(ev, resp3)  # a miss, then kept
        assert cache.get(ev, resp3) == _encode_event_map(ev, resp3)  # the same key: a hit
    assert (cache.misses, cache.hits) == (2, 2)
