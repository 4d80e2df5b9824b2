"""Events encoded straight from stored records (RESP maps, the API's JSON) are byte for byte
those of decoded events; the compiled encoder of stored records is the one in use, and gives
the bytes its own source gives uncompiled."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from compiled import is_compiled, source_module
from hypothesis import given
from hypothesis import strategies as st

from sierradb.node import event_codec, replies
from sierradb.node.http.events import event_json, json_event, json_event_raw
from sierradb.node.identifiers import format_uuid
from sierradb.node.replies import _encode_event_map, event_map_raw, scan_result, scan_result_raw
from sierradb.node.resp import SimpleString, encode_into
from sierradb.storage import Event
from sierradb.storage.record_check import decode_event, encode_event, verify_event

_ids = st.binary(min_size=16, max_size=16)
_u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
_i63 = st.integers(min_value=0, max_value=(1 << 63) - 1)


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


def test_the_installed_event_codec_is_compiled() -> None:
    # The install (pip install, setup.py) builds it; uncompiled it is ~100x slower.
    assert is_compiled(event_codec), (
        f"{event_codec.__file__}: run the install again (.venv/bin/pip install -e .)"
    )


_CODEC_SOURCE = source_module("node/event_codec.py", "event_codec_source")


@given(st.lists(records(), max_size=3), _ids, st.integers(min_value=0, max_value=(1 << 64) - 9))
def test_the_compiled_codec_gives_the_bytes_of_its_source(stored: list[bytes], sub_id: bytes,
                                                          cursor: int) -> None:  # fmt: skip
    # A stale build (the source edited, the install not re-run) or a compiled-only mistake
    # (a C type too narrow, a size summed wrong) shows here.
    raws = [verify_event(r, 0, len(r)) for r in stored]
    for resp3 in (True, False):
        head = replies._push_head(sub_id, resp3)
        assert event_codec.encode_events(raws, resp3) == _CODEC_SOURCE.encode_events(raws, resp3)
        pushed = event_codec.encode_events(raws, resp3, head, cursor)
        assert pushed == _CODEC_SOURCE.encode_events(raws, resp3, head, cursor)


def test_the_codec_encodes_the_largest_fields() -> None:
    top = (1 << 64) - 1
    stored = encode_event(
        term=top, partition_id=65535, sequence=top, version=top, timestamp_ms=top,
        event_id=b"\xff" * 16, partition_key=bytes(16), transaction_id=bytes(range(16)),
        stream_id=b"s" * 64, event_name=b"\r\n" * 127, metadata=b"\x00\r\n$",
        payload=bytes(range(256)) * 4096, unit_index=0, unit_count=1, txn_last=True,
    )  # fmt: skip
    raw = verify_event(stored, 0, len(stored))
    ev = decode_event(stored, 0, len(stored))
    for resp3 in (True, False):
        assert event_codec.encode_events([raw], resp3) == _encode_event_map(ev, resp3)
        head = replies._push_head(b"\x07" * 16, resp3)
        assert event_codec.encode_events([raw, raw], resp3, head, top - 1) == (
            replies.push_message(b"\x07" * 16, top - 1, ev, resp3)
            + replies.push_message(b"\x07" * 16, top, ev, resp3)
        )
    assert event_codec.encode_events([], True) == b""
    # Compiled, the reply is a new bytes object written in place: never a shared one.
    assert event_codec.encode_events([], True, prefix=b"x") == b"x"
    assert event_codec.encode_events([], False, prefix=b"*0\r\n") == b"*0\r\n"
    assert bytes(1) == b"\x00" and bytes(0) == b"" and b"x" * 2 == b"xx"
    head = replies._scan_head(1, True, True)
    assert event_codec.encode_events([raw], True, prefix=head) == head + _encode_event_map(ev, True)


def test_the_codec_refuses_what_is_not_a_whole_record() -> None:
    stored = encode_event(1, 2, 3, 4, 5, bytes(16), bytes(16), bytes(16), b"s", b"n", b"", b"p",
                          0, 1, True)  # fmt: skip
    for codec in (event_codec, _CODEC_SOURCE):
        for bad in (b"", stored[:60], stored[:-1], stored + b"\r\n"):
            with pytest.raises(ValueError, match="not a verified record"):
                codec.encode_events([stored, bad], False)


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
def test_the_encoded_event_cache_hits_on_the_same_event(stored: bytes) -> None:
    ev = decode_event(stored, 0, len(stored))
    cache = replies.EncodedEvents(1 << 20)
    for resp3 in (True, False):
        assert cache.get(ev, resp3) == _encode_event_map(ev, resp3)  # a miss, then kept
        assert cache.get(ev, resp3) == _encode_event_map(ev, resp3)  # the same key: a hit
    assert (cache.misses, cache.hits) == (2, 2)


@given(
    _ids,
    st.integers(min_value=0, max_value=65535),
    st.integers(min_value=0, max_value=1 << 62),
    st.lists(
        st.tuples(_ids, st.binary(min_size=1, max_size=64), _i63, _i63),
        min_size=1, max_size=5,
    ),
)  # fmt: skip
def test_the_multi_append_template_is_the_generic_encoding(
    partition_key: bytes, partition_id: int, first: int, events: list
) -> None:
    # What the reply was before the template: a map of SimpleStrings through resp.encode_into.
    generic = {
        SimpleString("partition_key"): SimpleString(format_uuid(partition_key)),
        SimpleString("partition_id"): partition_id,
        SimpleString("first_partition_sequence"): first,
        SimpleString("last_partition_sequence"): first + len(events) - 1,
        SimpleString("events"): [
            {
                SimpleString("event_id"): SimpleString(format_uuid(event_id)),
                SimpleString("stream_id"): SimpleString(stream_id.decode("utf-8", "replace")),
                SimpleString("stream_version"): version,
                SimpleString("timestamp"): ts,
            }
            for event_id, stream_id, version, ts in events
        ],
    }
    for resp3 in (True, False):
        out = bytearray()
        encode_into(out, generic, 3 if resp3 else 2)
        assert replies.multi_append_result(partition_key, partition_id, first, events, resp3) == out
