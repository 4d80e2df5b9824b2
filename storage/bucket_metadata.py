"""A bucket's small metadata files: ``replication.json`` and the sealed segments' stream filter.

``replication.json`` holds each partition's promise, watermark and discards; it is replaced
atomically (temp, fsync, rename, fsync dir) by ``_write_meta``. ``streams.bloom`` is a cache: the
union of the sealed segments' stream blooms and their event id time ranges, rebuilt from the
segments when missing or stale.
"""

from __future__ import annotations

import json
import logging
import os
from array import array
from typing import TYPE_CHECKING

from .bucket_state import BucketState
from .errors import (
    StorageError,
)
from .hashing import Bloom
from .partition_state import PartitionState, Promise
from .sealed import SealedIndexes
from .sectionfile import BadSectionFile, SectionFile, pack_sections
from .segment import (
    SealedSegment,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("sierradb.storage")

META_FILE = "replication.json"
FILTER_MAGIC = b"SDBSFLT1"
STREAM_FILTER_FILE = "streams.bloom"


class BucketMetadata(BucketState):
    """Replication metadata and the stream filter of a bucket."""

    def _load_meta(self) -> None:
        path = os.path.join(self.dir, META_FILE)
        if not self.disk.exists(path):
            return
        try:
            doc = json.loads(self.disk.read_file(path))
        except (ValueError, OSError) as e:
            raise StorageError(f"cannot read {path}: {e}") from e
        for key, entry in doc.get("partitions", {}).items():
            ps = self.parts.get(int(key))
            if ps is None:
                continue
            ps.promise = Promise(*entry["promise"])
            ps.watermark = int(entry["watermark"])
            ps.discards = [tuple(d) for d in entry["discards"]]  # type: ignore[misc]

    def _write_meta(self) -> None:
        with self._meta_lock:
            with self.lock:
                doc = {"partitions": {str(p): ps.to_json() for p, ps in self.parts.items()}}
                self.meta_dirty = False
            try:
                self.disk.write_atomic(
                    os.path.join(self.dir, META_FILE), json.dumps(doc, indent=1).encode()
                )
            except OSError:
                self.meta_dirty = True
                raise

    def _record_discard(
        self, ps: PartitionState, from_seq: int, segment_id: int, offset: int
    ) -> None:
        entry = (from_seq, segment_id, offset)
        if entry not in ps.discards:
            ps.discards.append(entry)
            self.meta_dirty = True

    def set_promises(self, promises: dict[int, Promise]) -> None:
        """Durable before it returns (file written, synced, renamed, directory synced)."""
        with self.lock:
            old = {p: self.parts[p].promise for p in promises}
            for p, promise in promises.items():
                self.parts[p].promise = promise
        try:
            self._write_meta()
        except OSError:
            with self.lock:  # not promised: the stored promise stands, in memory too
                for p, promise in old.items():
                    if self.parts[p].promise == promises[p]:
                        self.parts[p].promise = promise
            raise

    def persist_watermarks(self) -> None:
        self._write_meta()

    def _load_stream_filter(self) -> None:
        """The sealed segments' summary, kept small in memory whatever their number: a union
        of their stream blooms (a new stream skips them all) and each one's event id time
        range (a generated id skips the segments written at other times)."""
        size = Bloom.size_for(max(1, self.segment_size // 128))
        path = os.path.join(self.dir, STREAM_FILTER_FILE)
        bits = None
        upto = -1
        if self.disk.exists(path):
            try:
                sf = SectionFile(self.disk.read_file(path), FILTER_MAGIC)
                sf.verify()
                upto = int.from_bytes(sf["upto"], "little", signed=True)
                bits = bytearray(sf["bits"])
                if len(bits) * 8 != size:
                    bits, upto = None, -1
            except (BadSectionFile, OSError):
                bits, upto = None, -1
        self.stream_filter = Bloom(size, bits)
        self.stream_filter_upto = upto
        if bits is not None:
            times = array("q")
            times.frombytes(sf["times"])
            by_id = {times[i]: (times[i + 1], times[i + 2]) for i in range(0, len(times), 3)}
            for seg in self.sealed:
                seg.time_range = by_id.get(seg.segment_id)
        missing = [s for s in self.sealed if s.segment_id > upto]
        if missing:
            for seg in missing:
                self._merge_stream_filter(seg)
            self._write_stream_filter()

    def _merge_stream_filter(self, seg: SealedSegment) -> None:
        indexes = seg.indexes()
        assert isinstance(indexes, SealedIndexes), "a segment's filter comes from its files"
        seg.time_range = (indexes.min_time_ms, indexes.max_time_ms)
        sbits = indexes.s_bloom.bits
        mine = self.stream_filter.bits
        if len(sbits) != len(mine):  # never for one data dir; be safe: disable the shortcut
            self.stream_filter = Bloom(self.stream_filter.mask + 1, bytearray(b"\xff" * len(mine)))
        else:
            merged = int.from_bytes(mine, "little") | int.from_bytes(sbits, "little")
            self.stream_filter.bits = bytearray(merged.to_bytes(len(mine), "little"))
        self.stream_filter_upto = seg.segment_id

    def _write_stream_filter(self, sealed: list[SealedSegment] | None = None) -> None:
        times = array("q")
        for seg in self.sealed if sealed is None else sealed:
            if seg.time_range is not None:
                times.extend((seg.segment_id, *seg.time_range))
        data = pack_sections(
            FILTER_MAGIC,
            {
                "upto": self.stream_filter_upto.to_bytes(8, "little", signed=True),
                "bits": bytes(self.stream_filter.bits),
                "times": times.tobytes(),
            },
        )
        self.disk.write_atomic(os.path.join(self.dir, STREAM_FILTER_FILE), data)
