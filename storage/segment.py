"""Segment files: the data file header, and reading records by offset.

``data.evts`` starts with a 64-byte header (magic, format, bucket id, segment id, creation
time, CRC32C of the header); records follow from offset 64. A sealed segment's data is read
through the shared block cache; the active segment's durable part is read with ``pread``.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import google_crc32c

from .cache import BLOCK_SIZE_BYTES, BlockCache
from .errors import CorruptionError
from .record import HEADER_SIZE, BadRecord, Event, RawEvent, peek_length
from .record_check import decode_event, verify_event, verify_events
from .sealed import PendingIndexes, SealedIndexes
from .sectionfile import BadSectionFile

if TYPE_CHECKING:
    from .disk import Disk, DiskFile

T = TypeVar("T")
log = logging.getLogger("sierradb.storage")

SEGMENT_MAGIC = b"SDBEVTS1"
SEGMENT_FORMAT = 1
_SEG_HEADER = struct.Struct("<8sHHIQ36s")  # + u32 crc = 64 bytes
SEGMENT_HEADER_SIZE = _SEG_HEADER.size + 4
DATA_FILE = "data.evts"
CHECKPOINT_FILE = "active.ckpt"
# Reads of the active segment fetch at least this much at once.
READ_CHUNK_BYTES = 64 * 1024
# The active segment's newest bytes that readers take from its map instead of by pread.
TAIL_VIEW_BYTES = 8 * 1024 * 1024


def segment_dir_name(segment_id: int) -> str:
    return f"{segment_id:010d}"


def segment_header(bucket_id: int, segment_id: int) -> bytes:
    head = _SEG_HEADER.pack(
        SEGMENT_MAGIC, SEGMENT_FORMAT, bucket_id, segment_id, int(time.time() * 1000), bytes(36)
    )
    return head + struct.pack("<I", google_crc32c.value(head))


def check_segment_header(data: bytes, bucket_id: int, segment_id: int, path: str) -> None:
    if len(data) < SEGMENT_HEADER_SIZE:
        raise CorruptionError(path, 0, "segment header is short")
    head = data[: _SEG_HEADER.size]
    (crc,) = struct.unpack_from("<I", data, _SEG_HEADER.size)
    if google_crc32c.value(bytes(head)) != crc:
        raise CorruptionError(path, 0, "segment header CRC32C mismatch")
    magic, fmt, bucket, segment, _created, _ = _SEG_HEADER.unpack(head)
    if magic != SEGMENT_MAGIC or fmt != SEGMENT_FORMAT:
        raise CorruptionError(path, 0, f"not a segment file of this format ({magic!r}, {fmt})")
    if bucket != bucket_id or segment != segment_id:
        raise CorruptionError(
            path, 0, f"header names bucket {bucket} segment {segment}, not {bucket_id}/{segment_id}"
        )


class OpenIndexes:
    """The sealed segments whose index files are mapped, least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._segments: OrderedDict[int, SealedSegment] = OrderedDict()
        self._lock = threading.Lock()

    def touch(self, seg: SealedSegment) -> None:
        key = id(seg)
        evicted = []
        with self._lock:
            if key in self._segments:
                self._segments.move_to_end(key)
                return
            self._segments[key] = seg
            while len(self._segments) > self.capacity:
                evicted.append(self._segments.popitem(last=False)[1])
        for old in evicted:
            old.release_indexes()

    def forget(self, seg: SealedSegment) -> None:
        with self._lock:
            self._segments.pop(id(seg), None)


class SealedSegment:
    """An immutable segment: its index files are mapped on first use."""

    __slots__ = (
        "bucket_id",
        "segment_id",
        "dir",
        "data_path",
        "size",
        "disk",
        "time_range",
        "rebuild",
        "verified",
        "open_indexes",
        "pending",
        "_indexes",
        "_file",
        "_lock",
    )

    def __init__(
        self,
        disk: Disk,
        bucket_id: int,
        segment_id: int,
        seg_dir: str,
        size: int,
        file: DiskFile | None = None,
    ) -> None:
        self.disk = disk
        self.bucket_id = bucket_id
        self.segment_id = segment_id
        self.dir = seg_dir
        self.data_path = os.path.join(seg_dir, DATA_FILE)
        self.size = size
        # (min, max) of the ids' millisecond times, once known without opening the indexes.
        self.time_range: tuple[int, int] | None = None
        # Rewrites the index files from the data when they turn out damaged (set by the bucket).
        self.rebuild: Callable[[int], None] | None = None
        self._indexes: SealedIndexes | None = None
        self._file: DiskFile | None = file
        self._lock = threading.Lock()
        self.verified = False  # the index files passed their CRC check in this process
        self.open_indexes: OpenIndexes | None = None
        # Sealed but its index files not written yet: lookups go to its last active index.
        self.pending: PendingIndexes | None = None

    def indexes(self) -> SealedIndexes | PendingIndexes:
        """The index files, mapped (and CRC-checked once) on use; rebuilt if damaged. Until
        they are written (``pending``), the segment's last active index.

        At most ``OpenIndexes.capacity`` segments keep their files mapped; the least recently
        used are unmapped, so memory does not grow with the number of sealed segments.
        """
        pending = self.pending
        if pending is not None:
            return pending
        idx = self._indexes
        if idx is None:
            with self._lock:
                idx = self._indexes
                if idx is None:
                    try:
                        idx = SealedIndexes(self.disk, self.dir, verify=not self.verified)
                    except (BadSectionFile, OSError, ValueError, TypeError) as e:
                        if self.rebuild is None:
                            raise CorruptionError(self.dir, 0, f"index files: {e}") from e
                        log.warning("segment %s: index files damaged (%s), rebuilding", self.dir, e)
                        self.rebuild(self.segment_id)
                        idx = SealedIndexes(self.disk, self.dir, verify=True)
                    self.verified = True
                    self._indexes = idx
        if self.open_indexes is not None:
            self.open_indexes.touch(self)
        return idx

    def use_written_files(self) -> None:
        """The index files were just written (``pending`` was answering meanwhile): open and
        check them, then answer from them. The check (a CRC over tens of MB) runs before the
        switch and outside the segment's lock, so no lookup waits for it."""
        idx = SealedIndexes(self.disk, self.dir, verify=True)
        with self._lock:
            old, self._indexes = self._indexes, idx
            self.verified = True
            self.pending = None
        if old is not None:
            old.close()
        if self.open_indexes is not None:
            self.open_indexes.touch(self)

    def release_indexes(self) -> None:
        """Unmap the index files (a reader still holding them keeps its maps alive)."""
        with self._lock:
            idx, self._indexes = self._indexes, None
        if idx is not None:
            idx.close()

    def data_file(self) -> DiskFile:
        f = self._file
        if f is None:
            with self._lock:
                f = self._file
                if f is None:
                    f = self._file = self.disk.open(self.data_path)
        return f

    def close(self) -> None:
        if self.open_indexes is not None:
            self.open_indexes.forget(self)
        self.release_indexes()
        if self._file is not None:
            self._file.close()
            self._file = None


class RecordReader:
    """Reads records at given offsets of one segment, a chunk or cached block at a time.

    With `map_tail` (the active segment), records in the last TAIL_VIEW_BYTES before the durable
    end are read straight from a map of the file (``DiskFile.view``, taken when the first such
    record is read): consumers that follow a partition read what was just written, and several
    partitions interleave in one segment, so chunked preads would copy the same tail once per
    partition. Older records are read in chunks, so the mapped pages a process keeps resident
    stay within that window, and a reader that never reaches the tail never maps the file."""

    __slots__ = (
        "path", "_pread", "_view", "_cache", "_key", "_limit", "_buf", "_buf_start", "_tail"
    )  # fmt: skip

    def __init__(
        self,
        path: str,
        file: DiskFile,
        limit: int,
        cache: BlockCache | None = None,
        cache_key: tuple[int, int] | None = None,
        map_tail: bool = False,
    ) -> None:
        self.path = path
        self._pread = file.pread
        self._view = file.view if map_tail else None
        self._cache = cache
        self._key = cache_key
        self._limit = limit  # nothing at or past this offset may be read (durable end)
        self._buf: bytes | memoryview = b""
        self._buf_start = 0
        self._tail: memoryview | None = None

    def _load(self, offset: int, need: int) -> None:
        if self._view is not None and offset >= self._limit - TAIL_VIEW_BYTES:
            if self._tail is None:
                self._tail = self._view(self._limit)
                if self._tail is None:
                    self._view = None  # the file cannot be mapped: read it in chunks
            if self._tail is not None:
                self._buf = self._tail
                self._buf_start = 0
                return
        cache = self._cache
        if cache is not None and self._key is not None:
            block_no = offset // BLOCK_SIZE_BYTES
            block_start = block_no * BLOCK_SIZE_BYTES
            if offset + need <= block_start + BLOCK_SIZE_BYTES:
                bucket_id, segment_id = self._key
                size = min(BLOCK_SIZE_BYTES, self._limit - block_start)
                self._buf = cache.get(
                    (bucket_id, segment_id, block_no), lambda: self._pread(size, block_start)
                )
                self._buf_start = block_start
                return
        size = min(max(need, READ_CHUNK_BYTES), self._limit - offset)
        self._buf = self._pread(size, offset)
        self._buf_start = offset

    def event_at(self, offset: int) -> Event:
        return self._checked_at(offset, decode_event)

    def raw_event_at(self, offset: int) -> RawEvent:
        """The verified record at `offset` undecoded (see ``record.RawEvent``)."""
        return self._checked_at(offset, verify_event)

    def raw_events_at(self, offsets: Sequence[int]) -> list[RawEvent]:
        """raw_event_at of each offset (ascending), checking the records that lie in the buffer
        at hand in one loop: a record ends where the next one begins at the latest, so all but
        the buffer's last record are known to lie inside it. That last one, and a run holding a
        bad record, are read one by one, which loads what they need and reports a bad record at
        its own offset."""
        out: list[RawEvent] = []
        i, n = 0, len(offsets)
        while i < n:
            out.append(self.raw_event_at(offsets[i]))
            i += 1
            start, buf = self._buf_start, self._buf
            # offsets[i:j] end at or before offsets[j], inside the buffer (checked all the
            # same: a record reaching past the buffer or the durable end is a bad record here)
            j = bisect_right(offsets, start + len(buf), i, n) - 1
            if j > i:
                run = offsets[i:j]
                try:
                    if min(run) < start:
                        raise BadRecord("offsets out of order")
                    end = min(len(buf), self._limit - start)
                    rels = run if start == 0 else [off - start for off in run]
                    out += verify_events(buf, rels, end)
                except BadRecord:
                    out += [self.raw_event_at(off) for off in run]
                i = j
        return out

    def _checked_at(self, offset: int, decode: Callable[[Any, int, int], T]) -> T:
        if offset + HEADER_SIZE > self._limit:
            raise CorruptionError(self.path, offset, "indexed record lies past the data end")
        rel = offset - self._buf_start
        buf = self._buf
        if rel < 0 or rel + HEADER_SIZE > len(buf):
            self._load(offset, HEADER_SIZE)
            rel, buf = offset - self._buf_start, self._buf
        length = peek_length(buf, rel)
        if length < HEADER_SIZE or offset + length > self._limit:
            raise CorruptionError(self.path, offset, f"bad record length {length}")
        if rel + length > len(buf):
            self._load(offset, length)
            rel, buf = offset - self._buf_start, self._buf
        try:
            return decode(buf, rel, rel + length)
        except BadRecord as e:
            raise CorruptionError(self.path, offset, str(e)) from None

    def raw_at(self, offset: int) -> bytes:
        """The verified bytes of the record at `offset` (for replication catch-up)."""
        self.event_at(offset)
        rel = offset - self._buf_start
        return bytes(self._buf[rel : rel + peek_length(self._buf, rel)])
