"""The compiled record check is the one in use, gives struct's header fields and the record's
bytes, and refuses every damaged, truncated or out-of-bounds record, compiled and uncompiled."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from types import ModuleType

import pytest
from compiled import is_compiled, source_module
from hypothesis import given
from hypothesis import strategies as st

from sierradb.storage import record_check
from sierradb.storage.record import HEADER, BadRecord, encode_discard, encode_event

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


def expected(buf: bytes, offsets: list[int]) -> list:
    out = []
    for off in offsets:
        fields = HEADER.unpack_from(buf, off)
        out.append((fields, buf[off : off + fields[4]]))
    return out


def test_the_installed_record_check_is_compiled() -> None:
    # The install (pip install, setup.py) builds it; uncompiled it is ~20x slower.
    assert is_compiled(record_check), (
        f"{record_check.__file__}: run the install again (.venv/bin/pip install -e .)"
    )


@given(st.lists(st.tuples(st.binary(max_size=600), st.binary(max_size=40),
                          st.binary(min_size=1, max_size=64), st.binary(max_size=255),
                          st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1)),
                min_size=1, max_size=5))  # fmt: skip
def test_compiled_and_source_give_structs_fields_and_the_records_bytes(events: list) -> None:
    buf, offsets = b"", []
    for payload, meta, sid, name, seq, ts in events:
        offsets.append(len(buf))
        buf += record(payload=payload, metadata=meta, stream_id=sid, event_name=name,
                      sequence=seq, timestamp_ms=ts)  # fmt: skip
    want = expected(buf, offsets)
    for data in (buf, bytearray(buf), memoryview(buf)):
        got = record_check.verify_events(data, offsets, len(buf))
        assert got == want
        assert [type(v) for v in got[0][0]] == [type(v) for v in want[0][0]]
        assert all(type(r) is bytes for _, r in got)
    assert SOURCE.verify_events(buf, offsets, len(buf)) == want


def test_records_read_through_a_file_map_are_checked_in_place(tmp_path: Path) -> None:
    recs = [record(payload=os.urandom(n)) for n in (0, 1, 300, 5000)]
    path = tmp_path / "data"
    path.write_bytes(b"".join(recs))
    offsets = [sum(len(r) for r in recs[:i]) for i in range(len(recs))]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        try:
            got = record_check.verify_events(view, offsets, len(view))
            assert [r for _, r in got] == recs
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
