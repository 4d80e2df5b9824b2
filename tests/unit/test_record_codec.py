"""Record codec: round trips, and corrupt input is always detected."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sierradb.storage.record import (
    HEADER_SIZE,
    KIND_DISCARD,
    BadRecord,
    decode_header,
    encode_discard,
)
from sierradb.storage.record_check import decode_event, encode_event


def make(**over):
    fields = dict(
        term=3, partition_id=7, sequence=42, version=5, timestamp_ms=1_700_000_000_000,
        event_id=os.urandom(16), partition_key=os.urandom(16), transaction_id=os.urandom(16),
        stream_id=b"user-123", event_name=b"UserCreated", metadata=b"m", payload=b'{"a": 1}',
        unit_index=0, unit_count=1, txn_last=True,
    )  # fmt: skip
    fields.update(over)
    return fields, encode_event(**fields)


def test_event_round_trip():
    fields, rec = make()
    ev = decode_event(rec, 0, len(rec))
    assert ev.event_id == fields["event_id"]
    assert ev.partition_key == fields["partition_key"]
    assert ev.transaction_id == fields["transaction_id"]
    assert (ev.partition_id, ev.partition_sequence, ev.stream_version) == (7, 42, 5)
    assert (ev.term, ev.timestamp_ms, ev.txn_last) == (3, 1_700_000_000_000, True)
    assert (ev.stream_id, ev.event_name, ev.metadata, ev.payload) == (
        b"user-123",
        b"UserCreated",
        b"m",
        b'{"a": 1}',
    )


@given(
    payload=st.binary(max_size=2000),
    metadata=st.binary(max_size=100),
    name=st.binary(max_size=255),
    sid=st.binary(min_size=1, max_size=64),
    seq=st.integers(0, 2**64 - 1),
)
def test_round_trip_any_content(payload, metadata, name, sid, seq):
    _, rec = make(payload=payload, metadata=metadata, event_name=name, stream_id=sid, sequence=seq)
    ev = decode_event(rec, 0, len(rec))
    assert (ev.payload, ev.metadata, ev.event_name, ev.stream_id) == (payload, metadata, name, sid)
    assert ev.partition_sequence == seq


def test_discard_marker_round_trip():
    rec = encode_discard(partition_id=3, from_sequence=17, term=9, unit_index=0, unit_count=2)
    h = decode_header(rec, 0, len(rec))
    assert (h.kind, h.partition, h.sequence, h.term, h.unit_count) == (KIND_DISCARD, 3, 17, 9, 2)
    assert len(rec) == HEADER_SIZE


def test_every_single_bit_flip_is_detected():
    _, rec = make(payload=b"x" * 40)
    for offset in range(len(rec)):
        for bit in (0, 3, 7):
            bad = bytearray(rec)
            bad[offset] ^= 1 << bit
            with pytest.raises(BadRecord):
                decode_event(bytes(bad), 0, len(bad))


def test_every_truncation_is_detected():
    _, rec = make()
    for cut in range(len(rec)):
        with pytest.raises(BadRecord):
            decode_event(rec[:cut], 0, cut)


def test_zeroes_are_not_a_record():
    with pytest.raises(BadRecord):
        decode_header(bytes(200), 0, 200)
