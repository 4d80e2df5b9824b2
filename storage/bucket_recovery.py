"""Opening a bucket: sealed segments, the active segment's checkpoint and tail, partition ends.

Theory of operation. Opening reads the active segment's checkpoint (if any) and scans the records
after it (``scan.py``): complete units are indexed, a torn tail is cut (truncate + fsync), damage
followed by valid records is an error. Sealed segments are opened lazily; a missing or damaged
index file is rebuilt from ``data.evts``. Each partition's next sequence comes from the newest
index that holds it, bounded by recorded discards.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from typing import TYPE_CHECKING

from .active_index import ActiveIndex
from .bucket_reads import BucketReads
from .errors import (
    CorruptionError,
)
from .partition_state import PartitionState
from .record import (
    HEADER_SIZE,
    KIND_DISCARD,
)
from .scan import ScanResult, scan_units
from .sealed import SealedIndexes, indexed_data_end, write_index_files
from .sectionfile import BadSectionFile, SectionFile
from .segment import (
    CHECKPOINT_FILE,
    DATA_FILE,
    SEGMENT_HEADER_SIZE,
    SealedSegment,
    check_segment_header,
    segment_header,
)

if TYPE_CHECKING:
    from .disk import DiskFile

log = logging.getLogger("sierradb.storage")

CHECKPOINT_MAGIC = b"SDBCKPT1"


def index_scanned(
    idx: ActiveIndex, buf: bytes, base: int, path: str
) -> tuple[ScanResult, list[tuple[int, int, int]]]:
    """Scan `buf` (segment bytes from offset `base`) into `idx`; the scan's result and the
    discard markers met, as (partition, from sequence, marker offset)."""
    discards: list[tuple[int, int, int]] = []
    run: list[tuple[int, int, list]] = []  # units to index together (add_units)

    def on_unit(unit: list) -> None:
        entries = []
        for rel, h in unit:
            if h.kind == KIND_DISCARD:
                if run:
                    idx.add_units(run)
                    run.clear()
                idx.discard(h.partition, h.sequence)
                discards.append((h.partition, h.sequence, base + rel))
            else:
                sid = bytes(buf[rel + HEADER_SIZE : rel + HEADER_SIZE + h.sid_len])
                entries.append((rel, h.sequence, h.version, sid, h.partition_key, h.event_id))
        if entries:
            run.append((base, unit[0][1].partition, entries))
            if len(run) >= 1024:
                idx.add_units(run)
                run.clear()

    result = scan_units(buf, base, path, on_unit)
    if run:
        idx.add_units(run)
    return result, discards


class BucketRecovery(BucketReads):
    """Opening and recovery of one bucket."""

    def open(self) -> None:
        disk = self.disk
        segs_root = os.path.join(self.dir, "segments")
        disk.make_dirs(segs_root)
        self._load_meta()
        ids = sorted(
            int(n)
            for n in disk.listdir(segs_root)
            if n.isdigit() and disk.exists(os.path.join(segs_root, n, DATA_FILE))
        )
        if not ids:
            self._create_segment(0)
            ids = [0]
        missing = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids))
        if missing:
            raise CorruptionError(
                self.seg_dir(missing[0]), 0, f"segments {missing} are missing their {DATA_FILE}"
            )
        for seg_id in ids[:-1]:
            seg_dir = self.seg_dir(seg_id)
            data_path = os.path.join(seg_dir, DATA_FILE)
            data = disk.open(data_path)
            try:
                check_segment_header(
                    data.pread(SEGMENT_HEADER_SIZE, 0), self.bucket_id, seg_id, data_path
                )
                size = data.size()
            finally:
                data.close()
            covered = indexed_data_end(disk, seg_dir, verify=False)
            if covered is not None and covered > size:
                raise CorruptionError(
                    data_path,
                    self._record_containing(seg_dir, size),
                    f"sealed data ends at {size}, its index covers {covered} (truncated)",
                )
            if covered != size:
                # Missing or damaged index files (a crash before a seal wrote them), or data
                # written after them (a rollover that failed before the next segment existed):
                # rebuild from the data.
                log.warning(
                    "bucket %d segment %d: index files missing, damaged or stale, rebuilding",
                    self.bucket_id,
                    seg_id,
                )
                self._rebuild_sealed(seg_id)
            ckpt = os.path.join(seg_dir, CHECKPOINT_FILE)
            if disk.exists(ckpt):  # its active days' checkpoint, which a seal removes last
                disk.remove(ckpt)
            seg = SealedSegment(disk, self.bucket_id, seg_id, seg_dir, size)
            seg.rebuild = self._rebuild_sealed_in_use
            seg.open_indexes = self.open_indexes
            self.sealed.append(seg)
        self._open_active(ids[-1])
        self._load_stream_filter()
        self._restore_partitions()
        if self.meta_dirty:
            self._write_meta()

    def _record_containing(self, seg_dir: str, offset: int) -> int:
        """Start of the indexed record that holds `offset` (the first record of a segment
        when none does), to name the damaged record in a corruption report."""
        indexes = SealedIndexes(self.disk, seg_dir, verify=False)
        try:
            pos = bisect_left(indexes.e_offsets, offset + 1) - 1
            return int(indexes.e_offsets[pos]) if pos >= 0 else SEGMENT_HEADER_SIZE
        finally:
            indexes.close()

    def _create_segment(self, segment_id: int) -> None:
        seg_dir = self.seg_dir(segment_id)
        self.disk.make_dirs(seg_dir)
        self.disk.write_atomic(
            os.path.join(seg_dir, DATA_FILE), segment_header(self.bucket_id, segment_id)
        )

    def _open_active(self, segment_id: int) -> None:
        seg_dir = self.seg_dir(segment_id)
        path = os.path.join(seg_dir, DATA_FILE)
        f = self.file = self.disk.open(path)
        size = f.size()
        check_segment_header(f.pread(SEGMENT_HEADER_SIZE, 0), self.bucket_id, segment_id, path)
        idx = self._load_checkpoint(seg_dir, segment_id, f)
        if idx is None:
            idx = ActiveIndex(segment_id, self.segment_size, SEGMENT_HEADER_SIZE)
        start = idx.end_offset
        tail = f.pread(size - start, start)
        result, discards = index_scanned(idx, tail, start, path)
        if result.torn_from is not None and not tail[result.torn_from - start :].strip(b"\0"):
            # Only zeros after the last record: the preallocated rest of the file (see
            # group_commit), perhaps with writes that never reached the disk. Nothing to report.
            f.truncate(result.torn_from)
            f.sync()
        elif result.torn_from is not None:
            log.warning(
                "bucket %d segment %d: cutting torn tail at offset %d (%d bytes: %s); it was never "
                "acknowledged",
                self.bucket_id,
                segment_id,
                result.torn_from,
                size - result.torn_from,
                result.torn_reason,
            )
            f.truncate(result.torn_from)
            f.sync()
            self.torn_tail_cuts += 1
        idx.end_offset = result.valid_end
        for p, from_seq, offset in discards:
            self._record_discard(self.parts[p], from_seq, segment_id, offset)
        self.active = idx
        self.active_id = segment_id
        self.file = f
        self.write_offset = result.valid_end
        self.allocated_end = result.valid_end
        self.checkpoint_offset = start

    def _load_checkpoint(self, seg_dir: str, segment_id: int, f: DiskFile) -> ActiveIndex | None:
        """The checkpointed index of the active segment, if there is a usable one.

        A checkpoint only ever covers durable data, and the engine only ever cuts data past
        it (a torn tail after it, a failed write after it), so data shorter than a checkpoint
        means acknowledged data was lost: that is reported, not papered over. A damaged
        checkpoint is ignored and removed (the scan starts from the segment's beginning); so is
        any checkpoint that is not used, so it can never be mistaken for later data.
        """
        path = os.path.join(seg_dir, CHECKPOINT_FILE)
        if not self.disk.exists(path):
            return None
        try:
            raw = self.disk.read_file(path)
            sf = SectionFile(raw, CHECKPOINT_MAGIC)
            sf.verify()
            idx = ActiveIndex.from_sections(sf.sections, self.segment_size)
            problem = None if idx.segment_id == segment_id else "it is for another segment"
            self.checkpoint_size = len(raw)
        except (BadSectionFile, OSError, ValueError, AssertionError) as e:
            problem = str(e)
        if problem is None and idx.end_offset > f.size():
            if self.sync:
                pos = bisect_left(idx.offsets, f.size() + 1) - 1
                start = idx.offsets[pos] if pos >= 0 else SEGMENT_HEADER_SIZE
                raise CorruptionError(
                    f.path,
                    start,
                    f"the file ends at {f.size()} but acknowledged records reach "
                    f"{idx.end_offset} (truncated)",
                )
            problem = "the data it covers was never synced (sync policy none)"
        if problem is not None:
            log.warning("bucket %d: ignoring checkpoint %s: %s", self.bucket_id, path, problem)
            self.disk.remove(path)
            return None
        return idx

    def _rebuild_sealed_in_use(self, segment_id: int) -> None:
        # Runs under the segment's lock, possibly from a thread holding the bucket lock: it must
        # not take the bucket lock. Its discard markers were recorded before it was sealed.
        self._rebuild_sealed(segment_id, record_discards=False)

    def _rebuild_sealed(self, segment_id: int, record_discards: bool = True) -> None:
        """Rebuild a sealed segment's index files from its data (every record must be valid)."""
        seg_dir = self.seg_dir(segment_id)
        path = os.path.join(seg_dir, DATA_FILE)
        f = self.disk.open(path)
        try:
            data = f.pread(f.size(), 0)
        finally:
            f.close()
        check_segment_header(data, self.bucket_id, segment_id, path)
        idx = ActiveIndex(segment_id, self.segment_size, SEGMENT_HEADER_SIZE)
        result, discards = index_scanned(idx, data[SEGMENT_HEADER_SIZE:], SEGMENT_HEADER_SIZE, path)
        if result.torn_from is not None:
            raise CorruptionError(path, result.torn_from, f"sealed segment: {result.torn_reason}")
        if record_discards:
            for p, from_seq, offset in discards:
                self._record_discard(self.parts[p], from_seq, segment_id, offset)
        idx.end_offset = result.valid_end
        write_index_files(self.disk, seg_dir, idx)

    def _restore_partitions(self) -> None:
        for ps in self.parts.values():
            nxt = self._surviving_end(ps)
            ps.next_sequence = ps.durable_next = nxt
            if ps.watermark > nxt:
                log.warning(
                    "partition %d: stored watermark %d above the durable end %d, clamped",
                    ps.partition_id,
                    ps.watermark,
                    nxt,
                )
                ps.watermark = nxt
            term = 0
            if nxt > 0:
                ev = self._read_seq(ps, nxt - 1)
                term = ev.term if ev is not None else 0
            ps.last_term = ps.durable_last_term = term

    def _surviving_end(self, ps: PartitionState) -> int:
        """One past the highest surviving durable sequence of the partition (0 if none)."""
        base, count = self.active.partition_range(ps.partition_id)
        if count:
            return base + count
        # Surviving sequences grow with the segment order: the newest segment that still holds
        # some of the partition's entries holds its end.
        for seg in reversed(self.sealed):
            seq_min, count = seg.indexes().partition_range(ps.partition_id)
            if not count:
                continue
            limit = ps.sealed_limit(seg.segment_id)
            seg_end = seq_min + count if limit is None else min(seq_min + count, limit)
            if seg_end > seq_min:
                return seg_end
        return 0
