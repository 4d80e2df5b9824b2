"""The active segment's data file is allocated ahead of its writes (storage/group_commit.py,
"Preallocation"): zeros after the last record are its normal state while it is open, so a crash
copy reopens without a torn tail reported, a clean close and a rollover cut the zeros, garbage
is still a torn tail, and a failed allocation fails the flush like a failed write. On a real
file system, except the injected failure."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import pytest

from sierradb.storage import NewEvent, Store
from sierradb.storage.disk import MemoryDisk
from sierradb.storage.errors import WriteFailed
from sierradb.storage.limits import MIN_SEGMENT_SIZE_BYTES, PREALLOCATE_BYTES
from sierradb.storage.segment import DATA_FILE


def append(store: Store, count: int, size: int = 200) -> list[bytes]:
    """`count` single-event transactions, each flushed as the node's writer thread does."""
    ids = []
    for n in range(count):
        event_id = os.urandom(16)
        event = NewEvent(event_id, b"s%d" % (n % 5), b"E", 1, b"", os.urandom(size))
        store.append_leader(0, bytes(16), os.urandom(16), [event], 1)
        store.flush_apply(0, store.flush_write(0, checkpoint=False))
        ids.append(event_id)
    store.set_watermark(0, store.durable_next(0))
    return ids


def data_file(store: Store, segment_id: int | None = None) -> str:
    bucket = store.buckets[0]
    seg = bucket.active_id if segment_id is None else segment_id
    return os.path.join(bucket.seg_dir(seg), DATA_FILE)


def all_found(store: Store, ids: list[bytes]) -> bool:
    return all(store.find_event(0, i) is not None for i in ids)


def test_the_active_file_is_allocated_ahead_and_cut_at_close(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "d"), partitions=1, buckets=1)
    ids = append(store, 20)
    end = store.buckets[0].write_offset
    path = data_file(store)
    assert os.path.getsize(path) == PREALLOCATE_BYTES > end
    with open(path, "rb") as f:
        f.seek(end)
        assert not f.read().strip(b"\0"), "the allocated rest of the file is zeros"
    store.close()
    assert os.path.getsize(path) == end
    reopened = Store.open(str(tmp_path / "d"), partitions=1, buckets=1)
    try:
        assert all_found(reopened, ids)
        assert reopened.statistics().torn_tail_cuts == 0
    finally:
        reopened.close()


def crash_copy(tmp_path: Path, events: int) -> tuple[list[bytes], int, str]:
    """A store's data dir copied while it is open, as kill -9 leaves it, at tmp_path/crash: the
    ids appended, the data end, and the copy's active data file."""
    store = Store.open(str(tmp_path / "d"), partitions=1, buckets=1)
    try:
        ids = append(store, events)
        end = store.buckets[0].write_offset
        shutil.copytree(tmp_path / "d", tmp_path / "crash")
    finally:
        store.close()
    copied = tmp_path / "crash" / os.path.relpath(data_file(store), tmp_path / "d")
    return ids, end, str(copied)


def test_a_crash_copy_reopens_without_a_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids, end, _ = crash_copy(tmp_path, 30)
    with caplog.at_level(logging.WARNING, logger="sierradb.storage"):
        copy = Store.open(str(tmp_path / "crash"), partitions=1, buckets=1)
    try:
        assert all_found(copy, ids)
        assert copy.statistics().torn_tail_cuts == 0
        assert not [r for r in caplog.records if "torn" in r.getMessage()]
        assert os.path.getsize(data_file(copy)) == end  # the zeros were cut
        more = append(copy, 5)  # and writing goes on after the last record
        assert all_found(copy, ids + more)
    finally:
        copy.close()


def test_garbage_among_the_zeros_is_still_a_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids, end, path = crash_copy(tmp_path, 10)
    with open(path, "r+b") as f:  # a torn write: some bytes that are no record, then zeros
        f.seek(end + 100)
        f.write(b"\x07" * 300)
    with caplog.at_level(logging.WARNING, logger="sierradb.storage"):
        copy = Store.open(str(tmp_path / "crash"), partitions=1, buckets=1)
    try:
        assert all_found(copy, ids)
        assert copy.statistics().torn_tail_cuts == 1
        assert [r for r in caplog.records if "torn tail" in r.getMessage()]
        assert os.path.getsize(data_file(copy)) == end
    finally:
        copy.close()


def test_a_sealed_file_ends_at_its_last_record(tmp_path: Path) -> None:
    store = Store.open(
        str(tmp_path / "d"), partitions=1, buckets=1, segment_size_bytes=MIN_SEGMENT_SIZE_BYTES
    )
    try:
        ids = append(store, 150, size=2048)  # ~2.2 KiB records: more than one segment
        bucket = store.buckets[0]
        assert bucket.sealed, "the appends filled a segment"
        for seg in bucket.sealed:
            assert os.path.getsize(data_file(store, seg.segment_id)) == seg.size
        # The whole (small) active segment is allocated at once.
        assert os.path.getsize(data_file(store)) == MIN_SEGMENT_SIZE_BYTES
        store.finish_seals(0)
        assert all_found(store, ids)
    finally:
        store.close()
    reopened = Store.open(
        str(tmp_path / "d"), partitions=1, buckets=1, segment_size_bytes=MIN_SEGMENT_SIZE_BYTES
    )
    try:
        assert all_found(reopened, ids)
        assert reopened.statistics().torn_tail_cuts == 0
    finally:
        reopened.close()


def test_a_failed_allocation_fails_the_flush_like_a_failed_write() -> None:
    disk = MemoryDisk()
    store = Store.open("/m", partitions=1, buckets=1, disk=disk)
    try:
        disk.fail_writes("write", 1)  # the flush's first write is the allocation
        event = NewEvent(os.urandom(16), b"s", b"E", 1, b"", b"x")
        ticket = store.append_leader(0, bytes(16), os.urandom(16), [event], 1)
        (done,) = store.flush_apply(0, store.flush_write(0, checkpoint=False))
        assert done is ticket and isinstance(ticket.error, WriteFailed)
        assert store.buckets[0].allocated_end == store.buckets[0].write_offset
        ids = append(store, 3)  # the next flush allocates and writes
        assert all_found(store, ids)
        bucket = store.buckets[0]
        assert bucket.allocated_end == PREALLOCATE_BYTES > bucket.write_offset
        disk.fail_writes("write", 1)  # now the write itself: its rollback cuts the allocation
        ticket = store.append_leader(0, bytes(16), os.urandom(16), [event], 1)
        (done,) = store.flush_apply(0, store.flush_write(0, checkpoint=False))
        assert done is ticket and isinstance(ticket.error, WriteFailed)
        assert bucket.allocated_end == bucket.write_offset == bucket.file.size()
        ids += append(store, 3)  # allocated again
        assert all_found(store, ids)
        assert bucket.allocated_end == bucket.file.size() == PREALLOCATE_BYTES
    finally:
        store.close()


def fallocate_fails(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def failing(fd: int, offset: int, length: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "posix_fallocate", failing)


def test_a_file_system_without_fallocate_still_takes_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallocate_fails(monkeypatch, errno.EOPNOTSUPP)
    store = Store.open(str(tmp_path / "d"), partitions=1, buckets=1)
    try:
        ids = append(store, 20)
        assert os.path.getsize(data_file(store)) == store.buckets[0].write_offset
        assert all_found(store, ids)
    finally:
        store.close()
    reopened = Store.open(str(tmp_path / "d"), partitions=1, buckets=1)
    try:
        assert all_found(reopened, ids)
    finally:
        reopened.close()


def test_a_full_disk_at_allocation_fails_the_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(str(tmp_path / "d"), partitions=1, buckets=1)
    try:
        fallocate_fails(monkeypatch, errno.ENOSPC)
        event = NewEvent(os.urandom(16), b"s", b"E", 1, b"", b"x")
        ticket = store.append_leader(0, bytes(16), os.urandom(16), [event], 1)
        store.flush_apply(0, store.flush_write(0, checkpoint=False))
        assert isinstance(ticket.error, WriteFailed)
        monkeypatch.undo()
        ids = append(store, 2)
        assert all_found(store, ids)
    finally:
        store.close()
