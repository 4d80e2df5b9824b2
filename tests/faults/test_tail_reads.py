"""Reads of the active segment's tail through its map (``RecordReader``'s tail view).

Consumers read what was just written, so the newest bytes of the active segment are read from a
map that grows with the file, in one checking loop per run of records. These tests hold that path
to the same answers and the same damage reports as the chunked preads it replaces.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sierradb.storage import CorruptionError, NewEvent, Store
from sierradb.storage import segment as segment_module
from sierradb.storage.segment import DATA_FILE

PARTITIONS = 8


def _append(store: Store, rounds: int, per_round: int) -> None:
    for r in range(rounds):
        for i in range(per_round):
            p = (r * per_round + i) % PARTITIONS
            ev = NewEvent(os.urandom(16), b"s-%d" % (i % 13), b"Happened", 1_700_000_000_000,
                          b"m" * (i % 3), os.urandom(50 + i % 200))  # fmt: skip
            store.append_leader(p, p.to_bytes(16, "big"), os.urandom(16), [ev], 1)
        store.flush_all()
        for p in range(PARTITIONS):
            store.set_watermark(p, store.durable_next(p))


def _read_all(store: Store) -> list[list]:
    return [store.read_partition_raw(p, 0, None, 100_000)[0] for p in range(PARTITIONS)]


def test_tail_view_reads_equal_chunked_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:  # fmt: skip
    store = Store.open(str(tmp_path), partitions=PARTITIONS, buckets=1, sync=False)
    try:
        seen: list[list] = [[] for _ in range(PARTITIONS)]
        for _ in range(20):  # the file grows between reads: the map is replaced each time
            _append(store, 1, 97)
            for p in range(PARTITIONS):
                got, _ = store.read_partition_raw(p, len(seen[p]), None, 1000)
                seen[p] += got
        monkeypatch.setattr(segment_module, "TAIL_VIEW_BYTES", 0)  # every read by pread
        assert _read_all(store) == seen
        assert sum(len(s) for s in seen) == 20 * 97
    finally:
        store.close()


def test_damaged_record_in_the_tail_is_reported_at_its_offset(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path), partitions=PARTITIONS, buckets=1, sync=False)
    try:
        _append(store, 1, 40)
        bucket = store.buckets[0]
        offsets = list(bucket.active.offsets)
        victim = offsets[len(offsets) // 2]
        [path] = [str(p) for p in tmp_path.rglob(DATA_FILE)]
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, bytes([os.pread(fd, 1, victim + 150)[0] ^ 0x40]), victim + 150)
        finally:
            os.close(fd)
        with pytest.raises(CorruptionError) as err:
            _read_all(store)
        assert err.value.offset == victim
        assert DATA_FILE in str(err.value)
    finally:
        store.close()
