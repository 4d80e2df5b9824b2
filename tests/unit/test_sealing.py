"""Sealing off the commit path (storage/group_commit.py): a rollover only starts the next segment;
the sealed one's index files are written later (``checkpoint_if_due``, the node's checkpointer
thread). Meanwhile every read answers from its last active index exactly as it will from the
files; a crash in between loses nothing (opening rebuilds the files from the data); a failed
write of the files is retried. On a real file system."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from sierradb.storage import NewEvent, Store
from sierradb.storage.limits import MIN_SEGMENT_SIZE_BYTES
from sierradb.storage.sealed import EIDX, PIDX, SIDX
from sierradb.storage.sectionfile import SectionFile
from sierradb.storage.segment import CHECKPOINT_FILE

STREAMS = [b"s%d" % n for n in range(7)]


def open_store(path: Path, **options: int) -> Store:
    # The smallest stream cache: tips are looked up in the indexes, the sealing one's too.
    return Store.open(
        str(path), partitions=1, buckets=1, segment_size_bytes=MIN_SEGMENT_SIZE_BYTES,
        stream_cache_entries=0, **options,
    )  # fmt: skip


def append_until_a_rollover(store: Store, events: int | None = None) -> list[bytes]:
    """Append (flushing as the node's writer thread does) until a segment is sealed, or this
    many events; the ids."""
    ids: list[bytes] = []
    n = 0
    while not store.buckets[0].sealed and (events is None or n < events):
        event_id = os.urandom(16)
        event = NewEvent(event_id, STREAMS[n % len(STREAMS)], b"E", 1, b"", b"x" * 2048)
        store.append_leader(0, bytes(16), os.urandom(16), [event], 1)
        store.flush_apply(0, store.flush_write(0, checkpoint=False))
        ids.append(event_id)
        n += 1
    store.set_watermark(0, store.durable_next(0))
    return ids


def everything(store: Store, ids: list[bytes]) -> tuple:
    """What each kind of read answers: partition, streams, stream tips, each id."""
    partition, _ = store.read_partition(0, 0, None, 10_000)
    streams = [store.read_stream(0, s, 0, None, 10_000)[0] for s in STREAMS]
    tips = [store.last_stream_version(0, s) for s in STREAMS]
    found = [store.find_event(0, i) for i in ids]
    raw = store.read_raw(0, 0, 1 << 30)
    return partition, streams, tips, found, raw


def index_files(seg_dir: str) -> list[bool]:
    return [os.path.exists(os.path.join(seg_dir, name)) for name in (EIDX, PIDX, SIDX)]


def test_a_rollover_leaves_the_index_files_to_the_checkpoint_pass(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    ids = append_until_a_rollover(store)
    bucket = store.buckets[0]
    sealed = bucket.sealed[0]
    assert bucket.unsealed == [sealed] and sealed.pending is not None
    assert index_files(sealed.dir) == [False, False, False]
    assert store.checkpoint_due(0)
    before = everything(store, ids)
    assert len(before[0]) == len(ids) and all(f is not None and f[1] for f in before[3])
    # The next append of a stream continues its versions from the sealing segment's index.
    event = NewEvent(os.urandom(16), STREAMS[0], b"E", 1, b"", b"", expected_version=before[2][0])
    ticket = store.append_leader(0, bytes(16), os.urandom(16), [event], 1)
    assert ticket.versions == [before[2][0] + 1]
    store.flush(0)
    store.set_watermark(0, store.durable_next(0))
    ids.append(event.event_id)
    before = everything(store, ids)

    store.checkpoint_if_due(0)  # the checkpointer thread's pass
    assert bucket.unsealed == [] and sealed.pending is None
    assert index_files(sealed.dir) == [True, True, True]
    assert everything(store, ids) == before
    store.close()
    reopened = open_store(tmp_path)
    reopened.set_watermark(0, reopened.durable_next(0))
    assert everything(reopened, ids) == before
    reopened.close()


def test_lookups_use_the_memory_index_until_the_written_files_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files' check (a CRC over tens of MB) runs before lookups switch to them, so that a
    lookup (the event loop's stream-tip lookup, say) never waits for it."""
    store = open_store(tmp_path)
    append_until_a_rollover(store)
    sealed = store.buckets[0].sealed[0]
    pending_while_checked: list[bool] = []
    verify = SectionFile.verify

    def recorded(self: SectionFile) -> None:
        pending_while_checked.append(sealed.pending is not None)
        verify(self)

    monkeypatch.setattr(SectionFile, "verify", recorded)
    store.checkpoint_if_due(0)
    assert pending_while_checked == [True, True, True]  # the three index files
    assert sealed.pending is None and sealed.verified
    store.close()


def test_a_crash_before_the_index_files_are_written_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path / "live", checkpoint_interval_bytes=8192)
    first = append_until_a_rollover(store, events=5)
    assert store.checkpoint_if_due(0)  # the segment about to be sealed has a checkpoint
    ids = first + append_until_a_rollover(store)
    seg_dir = store.buckets[0].sealed[0].dir
    assert os.path.exists(os.path.join(seg_dir, CHECKPOINT_FILE))
    before = everything(store, ids)
    # What a crash leaves on disk now: every record synced, the next segment created, the
    # sealed one without index files.
    shutil.copytree(tmp_path / "live", tmp_path / "crashed", ignore=shutil.ignore_patterns("LOCK"))
    store.close()
    with caplog.at_level(logging.WARNING, logger="sierradb.storage"):
        crashed = open_store(tmp_path / "crashed")
    assert "bucket 0 segment 0: index files missing, damaged or stale, rebuilding" in caplog.text
    crashed.set_watermark(0, crashed.durable_next(0))
    assert everything(crashed, ids) == before
    crashed_dir = crashed.buckets[0].sealed[0].dir
    assert index_files(crashed_dir) == [True, True, True]
    assert not os.path.exists(os.path.join(crashed_dir, CHECKPOINT_FILE))  # not left behind
    crashed.close()


def test_index_files_that_fail_to_write_stay_pending_and_are_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path)
    ids = append_until_a_rollover(store)
    before = everything(store, ids)
    bucket = store.buckets[0]
    write_atomic = bucket.disk.write_atomic

    def full_disk(path: str, data: bytes) -> None:
        if path.endswith(SIDX):
            raise OSError(28, "No space left on device (injected by the test)")
        write_atomic(path, data)

    monkeypatch.setattr(bucket.disk, "write_atomic", full_disk)
    with caplog.at_level(logging.ERROR, logger="sierradb.storage"):
        store.checkpoint_if_due(0)
    assert "could not write segment 0's index files" in caplog.text
    assert bucket.unsealed and bucket.sealed[0].pending is not None
    assert store.checkpoint_due(0)
    assert everything(store, ids) == before  # still answered from memory
    monkeypatch.setattr(bucket.disk, "write_atomic", write_atomic)
    store.checkpoint_if_due(0)
    assert not bucket.unsealed and index_files(bucket.sealed[0].dir) == [True, True, True]
    assert everything(store, ids) == before
    store.close()


def test_closing_writes_the_pending_index_files(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    ids = append_until_a_rollover(store)
    before = everything(store, ids)
    seg_dir = store.buckets[0].sealed[0].dir
    store.close()
    assert index_files(seg_dir) == [True, True, True]
    reopened = open_store(tmp_path)
    reopened.set_watermark(0, reopened.durable_next(0))
    assert everything(reopened, ids) == before
    reopened.close()
