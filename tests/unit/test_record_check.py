"""The compiled record check is the one in use (with the CPU's CRC32C where it has one), gives the
record's bytes, builds struct's Event from them, filters a stream read as the read loop did, and
refuses every damaged, truncated or out-of-bounds record, compiled and uncompiled."""

from __future__ import annotations

import mmap
import os
import platform
from pathlib import Path
from types import ModuleType

import google_crc32c
import pytest
from compiled import is_compiled, source_module
from hypothesis import given
from hypothesis import strategies as st

from sierradb.storage import record_check
from sierradb.storage.record import (
    FLAG_TXN_LAST,
    HEADER,
    KIND_EVENT,
    MAGIC,
    BadRecord,
    Event,
    encode_discard,
    raw_body,
    raw_header,
)
from sierradb.storage.record_check import encode_event

SOURCE = source_module("storage/record_check.py", "sierradb.storage.record_check_source")
BOTH = pytest.mark.parametrize("check", [record_check, SOURCE], ids=["compiled", "source"])


def record(**over: object) -> bytes:
    fields: dict = dict(
        term=3, partition_id=1023, sequence=(1 << 64) - 1, version=5, timestamp_ms=1 << 41,
        event_id=os.urandom(16), partition_key=os.urandom(16), transaction_id=os.urandom(16),
        stream_id=b"user-123", event_name=b"UserCreated", metadata=b"m", payload=b'{"a": 1}',
        unit_index=1, unit_count=3, txn_last=True,
    )  # fmt: skip
    fields.update(over)
    return encode_event(**fields)


def expected(buf: bytes, offsets: list[int]) -> list[bytes]:
    return [buf[off : off + HEADER.unpack_from(buf, off)[4]] for off in offsets]


def struct_event(raw: bytes) -> Event:
    """The Event of a record, by struct (the reference for event_from_raw)."""
    h = raw_header(raw)
    sid, name, meta, payload = raw_body(raw, h)
    return Event(h.event_id, h.partition_key, h.partition, h.transaction_id, h.sequence,
                 h.version, h.timestamp, sid, name, meta, payload, h.term,
                 bool(h.flags & FLAG_TXN_LAST))  # fmt: skip


def test_the_installed_record_check_is_compiled() -> None:
    # The install (pip install, setup.py) builds it; uncompiled it is ~20x slower.
    assert is_compiled(record_check), (
        f"{record_check.__file__}: run the install again (.venv/bin/pip install -e .)"
    )
    if platform.machine() in ("x86_64", "AMD64") and "sse4_2" in _cpu_flags():
        assert record_check.CRC32C_BY == "the CPU"
    assert SOURCE.CRC32C_BY == "google_crc32c"


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@given(st.lists(st.tuples(st.binary(max_size=600), st.binary(max_size=40),
                          st.binary(min_size=1, max_size=64), st.binary(max_size=255),
                          st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1)),
                min_size=1, max_size=5))  # fmt: skip
def test_compiled_and_source_give_the_records_bytes_and_structs_events(events: list) -> None:
    buf, offsets = b"", []
    for payload, meta, sid, name, seq, ts in events:
        offsets.append(len(buf))
        buf += record(payload=payload, metadata=meta, stream_id=sid, event_name=name,
                      sequence=seq, timestamp_ms=ts)  # fmt: skip
    want = expected(buf, offsets)
    for data in (buf, bytearray(buf), memoryview(buf)):
        got = record_check.verify_events(data, offsets, len(buf))
        assert got == want
        assert all(type(r) is bytes for r in got)
    assert SOURCE.verify_events(buf, offsets, len(buf)) == want
    for raw in want:
        ev = struct_event(raw)
        assert record_check.event_from_raw(raw) == ev == SOURCE.event_from_raw(raw)
        assert [type(v) for v in record_check.event_from_raw(raw)] == [type(v) for v in ev]


def test_records_read_through_a_file_map_are_checked_in_place(tmp_path: Path) -> None:
    recs = [record(payload=os.urandom(n)) for n in (0, 1, 300, 5000)]
    path = tmp_path / "data"
    path.write_bytes(b"".join(recs))
    offsets = [sum(len(r) for r in recs[:i]) for i in range(len(recs))]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        try:
            got = record_check.verify_events(view, offsets, len(view))
            assert got == recs
        finally:
            view.release()


@BOTH
def test_every_bit_flip_is_refused(check: ModuleType) -> None:
    rec = record(payload=b"x" * 20)
    for offset in range(len(rec)):
        bad = bytearray(rec)
        bad[offset] ^= 1 << (offset % 8)
        with pytest.raises(BadRecord):
            check.verify_events(bytes(bad), [0], len(bad))


@BOTH
def test_a_record_past_the_end_or_the_buffer_is_refused(check: ModuleType) -> None:
    rec = record()
    two = rec + rec
    for cut in range(len(rec)):
        with pytest.raises(BadRecord):  # the end inside the record
            check.verify_events(rec, [0], cut)
        with pytest.raises(BadRecord):  # the buffer shorter than the end says
            check.verify_events(rec[:cut], [0], len(rec))
    with pytest.raises(BadRecord):
        check.verify_events(two, [0, len(rec)], len(two) - 1)
    for off in (-1, -len(rec), len(two), len(two) + 1, 1 << 40):
        with pytest.raises(BadRecord):
            check.verify_events(two, [off], len(two))
    with pytest.raises(BadRecord):
        check.verify_events(b"", [0], 0)
    assert check.verify_events(b"", [], 0) == []


@BOTH
def test_a_discard_marker_or_zeroes_are_not_an_event(check: ModuleType) -> None:
    marker = encode_discard(partition_id=3, from_sequence=17, term=9, unit_index=0, unit_count=1)
    with pytest.raises(BadRecord, match="not an event record"):
        check.verify_events(marker, [0], len(marker))
    with pytest.raises(BadRecord, match="bad magic"):
        check.verify_events(bytes(200), [0], 200)


@BOTH
def test_a_bad_unit_position_is_refused_even_with_a_good_crc(check: ModuleType) -> None:
    rec = record(unit_index=3, unit_count=3)
    with pytest.raises(BadRecord, match="bad unit position"):
        check.verify_events(rec, [0], len(rec))


@BOTH
def test_a_long_record_is_checked_whole(check: ModuleType) -> None:
    # The CPU's CRC runs over 8 bytes at a time, then the rest one by one: every length of the
    # tail, and a flip in the last byte of a long record, must be seen.
    for n in range(17):
        rec = record(payload=os.urandom(3 * 8192 + n))
        assert check.verify_events(rec, [0], len(rec)) == [rec]
        bad = bytearray(rec)
        bad[-1] ^= 0x80
        with pytest.raises(BadRecord, match="CRC32C"):
            check.verify_events(bytes(bad), [0], len(bad))


@BOTH
def test_the_stream_read_filter_stops_where_the_read_loop_did(check: ModuleType) -> None:
    # Versions 3..9 at sequences 10..16: the filter keeps versions >= start, stops at the first
    # record at or past max_seq, at `limit` records, or past `last`.
    raws = [record(version=v, sequence=v + 7) for v in range(3, 10)]

    def run(max_seq: int, start: int, last: int, limit: int, out: list | None = None) -> tuple:
        out = [] if out is None else out
        nxt = check.extend_stream_read(out, raws, max_seq, start, last, limit)
        return [raw_header(r).version for r in out if r in raws], nxt

    top = (1 << 64) - 1
    assert run(top, 0, top, 100) == ([3, 4, 5, 6, 7, 8, 9], 10)
    assert run(top, 5, top, 100) == ([5, 6, 7, 8, 9], 10)
    assert run(14, 0, top, 100) == ([3, 4, 5, 6], None)  # sequence 14 (version 7) not visible
    assert run(top, 0, 5, 100) == ([3, 4, 5], None)
    assert run(top, 4, top, 2) == ([4, 5], None)
    assert run(top, 0, top, 3, [b"earlier"]) == ([3, 4], None)  # `limit` counts what out held
    assert run(top, 10, top, 100) == ([], 10)
    assert run(10, 0, top, 100) == ([], None)


def struct_record(term: int, partition_id: int, sequence: int, version: int, timestamp_ms: int,
                  event_id: bytes, partition_key: bytes, transaction_id: bytes, stream_id: bytes,
                  event_name: bytes, metadata: bytes, payload: bytes, unit_index: int,
                  unit_count: int, txn_last: bool) -> bytes:  # fmt: skip
    """The record by struct and google_crc32c (the reference for encode_event)."""
    length = HEADER.size + len(stream_id) + len(event_name) + len(metadata) + len(payload)
    header = HEADER.pack(
        0, MAGIC, KIND_EVENT, FLAG_TXN_LAST if txn_last else 0, length, len(stream_id),
        len(event_name), partition_id, unit_index, unit_count, term, sequence, version,
        timestamp_ms, event_id, partition_key, transaction_id, len(metadata), len(payload),
    )  # fmt: skip
    rest = header[4:] + stream_id + event_name + metadata + payload
    return google_crc32c.value(rest).to_bytes(4, "little") + rest


@given(st.binary(max_size=3000), st.binary(max_size=300), st.binary(min_size=1, max_size=255),
       st.binary(max_size=255), st.integers(0, (1 << 64) - 1), st.integers(0, 65535),
       st.integers(0, (1 << 32) - 1), st.booleans())  # fmt: skip
def test_the_encoder_writes_structs_layout(payload: bytes, meta: bytes, sid: bytes, name: bytes,
                                           big: int, partition: int, unit: int,
                                           last: bool) -> None:  # fmt: skip
    fields = dict(
        term=big, partition_id=partition, sequence=big ^ 1, version=big >> 1, timestamp_ms=big,
        event_id=os.urandom(16), partition_key=os.urandom(16), transaction_id=os.urandom(16),
        stream_id=sid, event_name=name, metadata=meta, payload=payload, unit_index=unit,
        unit_count=(1 << 32) - 1, txn_last=last,
    )  # fmt: skip
    want = struct_record(**fields)
    assert record_check.encode_event(**fields) == want
    assert SOURCE.encode_event(**fields) == want
    assert type(record_check.encode_event(**fields)) is bytes


@BOTH
def test_the_encoder_refuses_what_the_header_cannot_hold(check: ModuleType) -> None:
    good: dict = dict(
        term=1, partition_id=2, sequence=3, version=4, timestamp_ms=5, event_id=bytes(16),
        partition_key=bytes(16), transaction_id=bytes(16), stream_id=b"s", event_name=b"n",
        metadata=b"", payload=b"p", unit_index=0, unit_count=1, txn_last=True,
    )  # fmt: skip
    assert check.encode_event(**good) == struct_record(**good)
    for field, value, error in (
        ("stream_id", b"s" * 256, ValueError), ("event_name", b"n" * 256, ValueError),
        ("partition_id", 65536, ValueError), ("unit_index", 1 << 32, ValueError),
        ("event_id", bytes(15), ValueError), ("transaction_id", bytes(17), ValueError),
        ("sequence", -1, OverflowError), ("term", 1 << 64, OverflowError),
    ):  # fmt: skip
        with pytest.raises(error):
            check.encode_event(**{**good, field: value})


@BOTH
def test_fields_are_only_read_from_whole_records(check: ModuleType) -> None:
    # Compiled, a field is read straight from the bytes: anything that is not a whole record
    # (a programming error: reads pass verified records) is refused, never read past its end.
    rec = record()
    for bad in (b"", rec[:50], rec[:-1], rec + b"x"):
        with pytest.raises(ValueError, match="not a verified record"):
            check.event_from_raw(bad)
        with pytest.raises(ValueError, match="not a verified record"):
            check.extend_stream_read([], [rec, bad], 1 << 64, 0, 10, 10)
