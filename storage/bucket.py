"""A bucket: the segments of a group of partitions, its write queue, group commit and recovery.

Theory of operation.

*Writing.* Append calls (``append_leader``, ``append_replicated``, ``replace_tail``) run on the
caller's thread and touch only memory: under the bucket lock they check and assign positions in
the partition's state, encode the records and queue one atomic unit. ``flush`` (run by one writer
thread per bucket) takes everything queued, writes it with one ``pwrite`` per segment and makes it
durable with one ``fdatasync``, then, under the lock, adds the entries to the active index, moves
each partition's ``durable_next`` and returns the tickets it completed. Entries become readable
only through the index, so nothing unsynced is ever read. A unit never spans segments: when the
next unit does not fit, the active segment is sealed (index files written and synced) and a new
one is started.

*Failing.* If a write or sync fails, the segment is truncated back to where that write started,
and every unit not yet durable (the failed ones and all queued behind them) is failed; each
affected partition's positions go back to what is durable. Earlier acknowledged data is
untouched. If even the rollback fails the bucket refuses further writes until it is reopened.

*Recovery.* Opening reads the active segment's checkpoint (if any) and scans the records after
it (``scan.py``): complete units are indexed, a torn tail is cut (truncate + fsync), damage
followed by valid records is an error. Sealed segments are opened lazily; a missing or damaged
index file is rebuilt from ``data.evts``. Each partition's next sequence comes from the newest
index that holds it, bounded by recorded discards.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .active_index import ActiveIndex, event_time_ms, stream_key
from .errors import (
    CorruptionError,
    Discarded,
    PartitionKeyMismatch,
    StorageError,
    TransactionTooLarge,
    WriteFailed,
    WrongExpectedVersion,
)
from .hashing import Bloom, bytes_hash64
from .partition_state import PartitionState, Promise
from .record import (
    HEADER_SIZE,
    KIND_DISCARD,
    Event,
    decode_event,
    encode_discard,
    encode_event,
    reencode_event,
)
from .scan import ScanResult, scan_units
from .sealed import SealedIndexes, indexed_data_end, write_index_files
from .sectionfile import BadSectionFile, SectionFile, pack_sections
from .segment import (
    CHECKPOINT_FILE,
    DATA_FILE,
    SEGMENT_HEADER_SIZE,
    OpenIndexes,
    RecordReader,
    SealedSegment,
    check_segment_header,
    segment_dir_name,
    segment_header,
)
from .transaction import ANY, EMPTY, EXISTS, NewEvent, Ticket, Unit

if TYPE_CHECKING:
    from .cache import BlockCache
    from .disk import Disk, DiskFile

log = logging.getLogger("sierradb.storage")

CHECKPOINT_MAGIC = b"SDBCKPT1"
FILTER_MAGIC = b"SDBSFLT1"
META_FILE = "replication.json"
# A checkpoint rewrites the whole active index, which grows with the segment: the next one is
# due only once this many times its size was written (and at least the configured interval),
# so checkpoints cost at most ~1/RATIO of the data written, and opening scans a tail of at most
# RATIO checkpoint sizes (a few tens of MiB) per bucket.
CHECKPOINT_RATIO = 2
STREAM_FILTER_FILE = "streams.bloom"


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


@dataclass
class Written:
    """What a flush's write phase did: batches (units, start offset) written and synced but not
    indexed yet, and tickets already complete (dropped, failed, or indexed before a seal)."""

    batches: list[tuple[list[Unit], int]]
    completed: list[Ticket]


class Bucket:
    def __init__(
        self,
        disk: Disk,
        root: str,
        bucket_id: int,
        partitions: dict[int, PartitionState],
        segment_size_bytes: int,
        sync: bool,
        cache: BlockCache,
        checkpoint_interval_bytes: int,
        open_indexes: OpenIndexes,
    ) -> None:
        self.disk = disk
        self.bucket_id = bucket_id
        self.dir = os.path.join(root, "buckets", f"{bucket_id:05d}")
        self.parts = partitions
        self.segment_size = segment_size_bytes
        self.sync = sync
        self.cache = cache
        self.checkpoint_interval = checkpoint_interval_bytes
        self.open_indexes = open_indexes
        self.lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self.pending: list[Unit] = []
        self.pending_bytes = 0
        self.inflight: list[Unit] = []
        self.dropped: list[Ticket] = []  # tickets of queued units a discard removed
        self._unapplied = False  # phase 1 wrote batches that phase 2 has not indexed yet
        self.sealed: list[SealedSegment] = []
        self.active: ActiveIndex
        self.active_id = 0
        self.file: DiskFile | None = None  # type: ignore[assignment]
        self.write_offset = SEGMENT_HEADER_SIZE
        self.checkpoint_offset = SEGMENT_HEADER_SIZE
        self.checkpoint_size = 0
        self.meta_dirty = False
        self.broken: BaseException | None = None
        self.stream_filter: Bloom
        self.stream_filter_upto = -1
        # statistics
        self.flushes = 0
        self.write_failures = 0
        self.bytes_written = 0
        self.torn_tail_cuts = 0

    # =========================================================================== opening
    def seg_dir(self, segment_id: int) -> str:
        return os.path.join(self.dir, "segments", segment_dir_name(segment_id))

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
                # Missing or damaged index files, or data written after them (a rollover that
                # failed before the next segment existed): rebuild from the data.
                log.warning(
                    "bucket %d segment %d: index files missing, damaged or stale, rebuilding",
                    self.bucket_id,
                    seg_id,
                )
                self._rebuild_sealed(seg_id)
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
        if result.torn_from is not None:
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

    # =========================================================================== metadata
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

    # ======================================================================= stream filter
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

    # ====================================================================== write path
    def _check_writable(self) -> None:
        if self.broken is not None:
            raise WriteFailed(
                f"bucket {self.bucket_id} could not roll back a failed write ({self.broken}); "
                "restart the node"
            )

    def _enqueue(self, unit: Unit) -> None:
        if len(unit.data) + SEGMENT_HEADER_SIZE > self.segment_size:
            raise TransactionTooLarge("events exceed the size of a single segment")
        self.pending.append(unit)
        self.pending_bytes += len(unit.data)

    def append_leader(
        self,
        partition_id: int,
        partition_key: bytes,
        transaction_id: bytes,
        events: list[NewEvent],
        term: int,
    ) -> Ticket:
        assert events, "a transaction needs at least one event"
        with self.lock:
            self._check_writable()
            ps = self.parts[partition_id]
            if len(events) == 1:
                return self._append_one(ps, partition_key, transaction_id, events[0], term)
            seq0 = ps.next_sequence
            tips: dict[bytes, list] = {}
            versions = []
            for i, ev in enumerate(events):
                sid = ev.stream_id
                tip = tips.get(sid)
                if tip is None:
                    found = self._stream_tip(ps, sid)
                    tip = tips[sid] = [found[0], found[1], 0] if found else [0, None, 0]
                next_v = tip[0]
                if tip[1] is not None and tip[1] != partition_key:
                    raise PartitionKeyMismatch(sid, tip[1], partition_key)
                exp = ev.expected_version
                if exp != ANY and not (
                    (exp >= 0 and next_v - 1 == exp)
                    or (exp == EMPTY and next_v == 0)
                    or (exp == EXISTS and next_v > 0)
                ):
                    raise WrongExpectedVersion(
                        sid, partition_key, next_v - 1 if next_v else None, exp
                    )
                versions.append(next_v)
                tip[0] = next_v + 1
                tip[1] = partition_key
                tip[2] = seq0 + i
            n = len(events)
            records = []
            entries = []
            rel = 0
            for i, ev in enumerate(events):
                rec = encode_event(
                    term,
                    partition_id,
                    seq0 + i,
                    versions[i],
                    ev.timestamp_ms,
                    ev.event_id,
                    partition_key,
                    transaction_id,
                    ev.stream_id,
                    ev.event_name,
                    ev.metadata,
                    ev.payload,
                    i,
                    n,
                    i == n - 1,
                )
                entries.append(
                    (rel, seq0 + i, versions[i], ev.stream_id, partition_key, ev.event_id)
                )
                records.append(rec)
                rel += len(rec)
            ticket = Ticket(partition_id, seq0, seq0 + n - 1, versions, term)
            self._enqueue(Unit(ticket, partition_id, b"".join(records), entries, None, term))
            self._advance(ps, entries, tips, term)
            return ticket

    def _append_one(
        self,
        ps: PartitionState,
        partition_key: bytes,
        transaction_id: bytes,
        ev: NewEvent,
        term: int,
    ) -> Ticket:
        """append_leader for a single event (the common case), with its work inlined."""
        sid = ev.stream_id
        seq = ps.next_sequence
        tip = ps.streams.get(sid)
        if tip is not None:
            ps.streams.move_to_end(sid)
            ps.cache_hits += 1
            next_v, key = tip[0], tip[1]
        else:
            found = self._stream_tip(ps, sid)
            next_v, key = (found[0], found[1]) if found is not None else (0, None)
        if key is not None and key != partition_key:
            raise PartitionKeyMismatch(sid, key, partition_key)
        exp = ev.expected_version
        if exp != ANY and not (
            (exp >= 0 and next_v - 1 == exp)
            or (exp == EMPTY and next_v == 0)
            or (exp == EXISTS and next_v > 0)
        ):
            raise WrongExpectedVersion(sid, partition_key, next_v - 1 if next_v else None, exp)
        p = ps.partition_id
        rec = encode_event(
            term, p, seq, next_v, ev.timestamp_ms, ev.event_id, partition_key, transaction_id,
            sid, ev.event_name, ev.metadata, ev.payload, 0, 1, True,
        )  # fmt: skip
        if len(rec) + SEGMENT_HEADER_SIZE > self.segment_size:
            raise TransactionTooLarge("events exceed the size of a single segment")
        ticket = Ticket(p, seq, seq, [next_v], term)
        self.pending.append(
            Unit(ticket, p, rec, [(0, seq, next_v, sid, partition_key, ev.event_id)], None, term)
        )
        self.pending_bytes += len(rec)
        ps.next_sequence = seq + 1
        ps.last_term = term
        ps.pending_ids[ev.event_id] = seq
        tip = ps.streams.get(sid)
        if tip is not None:
            tip[0] = next_v + 1
            tip[1] = partition_key
            tip[2] = seq
        else:
            ps.remember_stream(sid, next_v + 1, partition_key, seq)
        return ticket

    def _advance(
        self, ps: PartitionState, entries: list, tips: dict[bytes, list], term: int
    ) -> None:
        ps.next_sequence = entries[-1][1] + 1
        ps.last_term = term
        pending_ids = ps.pending_ids
        for e in entries:
            pending_ids[e[5]] = e[1]
        for sid, tip in tips.items():
            ps.remember_stream(sid, tip[0], tip[1], tip[2])

    def append_replicated(self, partition_id: int, events: list[Event]) -> Ticket:
        """Append entries whose positions and term the leader gave (one atomic unit)."""
        with self.lock:
            self._check_writable()
            ps = self.parts[partition_id]
            return self._append_positioned(ps, events, None)

    def replace_tail(self, partition_id: int, from_sequence: int, events: list[Event]) -> Ticket:
        """Discard the partition's entries at and above `from_sequence`, then append `events`.

        The discard marker and the entries are one atomic unit. Queued entries of the partition
        at or above the point are dropped (their tickets fail with Discarded).
        """
        with self.lock:
            self._check_writable()
            ps = self.parts[partition_id]
            assert from_sequence >= ps.watermark, (
                f"partition {partition_id}: discard from {from_sequence} at or below the "
                f"watermark {ps.watermark}"
            )
            assert from_sequence <= ps.next_sequence, "discard point beyond the log end"
            kept = []
            for u in self.pending:
                if u.partition_id == partition_id and u.ticket.first_sequence >= from_sequence:
                    u.ticket.error = Discarded(f"discarded from sequence {from_sequence}")
                    self.pending_bytes -= len(u.data)
                    self.dropped.append(u.ticket)  # reported by the next flush
                    if u.discard_from is not None:
                        ps.pending_discards.remove(u.discard_from)
                else:
                    kept.append(u)
            self.pending = kept
            ps.pending_discards.append(from_sequence)
            ps.next_sequence = from_sequence
            ps.streams.clear()
            ps.pending_ids = {e: s for e, s in ps.pending_ids.items() if s < from_sequence}
            # Streams with entries still queued below the point must stay cached (see state),
            # except entries that an earlier queued discard, behind them, already removes.
            queued = [u for u in (*self.inflight, *self.pending) if u.partition_id == partition_id]
            alive: list[list] = []
            later_discard = from_sequence
            for u in reversed(queued):
                alive.append([e for e in u.entries if e[1] < later_discard])
                if u.discard_from is not None:
                    later_discard = min(later_discard, u.discard_from)
            for entries in reversed(alive):
                for _rel, seq, version, sid, key, _eid in entries:
                    ps.remember_stream(sid, version + 1, key, seq)
            ps.last_term = self._term_before(ps, from_sequence)
            return self._append_positioned(ps, events, from_sequence)

    def _append_positioned(
        self, ps: PartitionState, events: list[Event], discard_from: int | None
    ) -> Ticket:
        seq = ps.next_sequence
        tips: dict[bytes, list] = {}
        records = []
        entries = []
        versions = []
        rel = 0
        count = len(events) + (1 if discard_from is not None else 0)
        if discard_from is not None:
            marker = encode_discard(
                partition_id=ps.partition_id,
                from_sequence=discard_from,
                term=events[-1].term if events else ps.last_term,
                unit_index=0,
                unit_count=count,
            )
            records.append(marker)
            rel = len(marker)
        for i, e in enumerate(events):
            assert e.partition_id == ps.partition_id, "entry for another partition"
            assert e.partition_sequence == seq + i, (
                f"partition {ps.partition_id}: entry {e.partition_sequence} does not extend the "
                f"log at {seq + i}"
            )
            tip = tips.get(e.stream_id)
            if tip is None:
                found = self._stream_tip(ps, e.stream_id)
                tip = tips[e.stream_id] = [found[0], found[1], 0] if found else [0, None, 0]
            assert e.stream_version == tip[0], (
                f"stream {e.stream_id!r}: replicated version {e.stream_version} but the local "
                f"next version is {tip[0]}"
            )
            assert tip[1] is None or tip[1] == e.partition_key, "partition key changed"
            tip[0] += 1
            tip[1] = e.partition_key
            tip[2] = e.partition_sequence
            index = i + (1 if discard_from is not None else 0)
            rec = reencode_event(e, unit_index=index, unit_count=count)
            entries.append(
                (
                    rel,
                    e.partition_sequence,
                    e.stream_version,
                    e.stream_id,
                    e.partition_key,
                    e.event_id,
                )
            )
            versions.append(e.stream_version)
            records.append(rec)
            rel += len(rec)
        last = seq + len(events) - 1
        term = events[-1].term if events else ps.last_term
        ticket = Ticket(ps.partition_id, seq, last, versions, term)
        self._enqueue(Unit(ticket, ps.partition_id, b"".join(records), entries, discard_from, term))
        if entries:
            self._advance(ps, entries, tips, term)
        return ticket

    # ------------------------------------------------------------------------- flushing
    def flush(self) -> list[Ticket]:
        """Write, sync and index everything queued; the tickets completed (done or failed)."""
        return self.flush_apply(self.flush_write())

    def flush_write(self) -> Written:
        """Phase 1, blocking (the writer thread): write and fdatasync everything queued.

        The entries become readable only in phase 2 (``flush_apply``), which the node runs on
        its event loop, so the writer thread never holds the bucket lock for long. Phase 2 must
        complete before the next phase 1 (sealing and checkpoints need a complete index).
        """
        with self._flush_lock:
            assert not self._unapplied, "flush_write before the last flush was applied"
            self._housekeeping()
            with self.lock:
                units = self.pending
                self.pending = []
                self.pending_bytes = 0
                self.inflight = units
                written = Written([], self.dropped)
                self.dropped = []
            i = 0
            while i < len(units):
                room = self.segment_size - self.write_offset
                j = i
                size = 0
                while j < len(units) and size + len(units[j].data) <= room:
                    size += len(units[j].data)
                    j += 1
                start = self.write_offset
                try:
                    if j == i:
                        # Sealing writes the index: apply what was written before it first.
                        self._apply_now(written)
                        self._roll_over()
                        continue
                    batch = units[i:j]
                    self.file.pwrite(b"".join([u.data for u in batch]), start)
                    if self.sync:
                        self.file.sync()
                except OSError as e:
                    # What was written before is durable: index it before rolling back state.
                    self._apply_now(written)
                    written.completed.extend(self._fail(units[i:], start, e))
                    return written
                self.write_offset = start + size
                self.bytes_written += size
                written.batches.append((batch, start))
                i = j
            self._unapplied = bool(written.batches)
            return written

    def flush_apply(self, written: Written) -> list[Ticket]:
        """Phase 2 (any thread, short): index what phase 1 wrote and complete its tickets."""
        with self.lock:
            self._apply_now(written)
            self.inflight = []
            self._unapplied = False
        if written.completed:
            self.flushes += 1
        return written.completed

    def _apply_now(self, written: Written) -> None:
        with self.lock:
            for batch, start in written.batches:
                self._apply(batch, start)
                written.completed.extend(u.ticket for u in batch)
            written.batches.clear()

    def _housekeeping(self) -> None:
        """Metadata and checkpoint writes left over from earlier flushes (writer thread)."""
        try:
            if self.meta_dirty:
                self._write_meta()
            due = max(self.checkpoint_interval, CHECKPOINT_RATIO * self.checkpoint_size)
            if self.write_offset - self.checkpoint_offset >= due:
                self.write_checkpoint()
        except OSError as e:
            # The data is durable; metadata and checkpoint are retried at the next flush.
            log.error("bucket %d: could not write metadata or checkpoint: %s", self.bucket_id, e)

    def _apply(self, batch: list[Unit], start: int) -> None:
        idx = self.active
        parts = self.parts
        run: list[tuple[int, int, list]] = []  # consecutive units without discards
        for u in batch:
            ps = parts[u.partition_id]
            if u.discard_from is not None:
                if run:
                    idx.add_units(run)
                    run = []
                idx.discard(u.partition_id, u.discard_from)
                self._record_discard(ps, u.discard_from, self.active_id, start)
                ps.pending_discards.remove(u.discard_from)
                ps.durable_next = u.discard_from
                ps.durable_last_term = u.last_term
            entries = u.entries
            if entries:
                run.append((start, u.partition_id, entries))
                pending_ids = ps.pending_ids
                for e in entries:
                    if pending_ids.get(e[5]) == e[1]:
                        del pending_ids[e[5]]
                ps.durable_next = entries[-1][1] + 1
                ps.durable_last_term = u.last_term
            u.ticket.done = True
            start += len(u.data)
        if run:
            idx.add_units(run)
        idx.end_offset = start

    def _fail(self, units: list[Unit], start: int, err: OSError) -> list[Ticket]:
        self.write_failures += 1
        log.error("bucket %d: write failed at offset %d: %s", self.bucket_id, start, err)
        try:
            self.file.truncate(start)
            self.file.sync()
        except OSError as e2:
            log.critical("bucket %d: rollback failed: %s; refusing writes", self.bucket_id, e2)
            self.broken = e2
        with self.lock:
            failed = units + self.pending
            self.pending = []
            self.pending_bytes = 0
            self.inflight = []
            error = WriteFailed(f"write failed: {err}")
            for u in failed:
                if u.ticket.error is None:
                    u.ticket.error = error
                ps = self.parts[u.partition_id]
                ps.next_sequence = ps.durable_next
                ps.last_term = ps.durable_last_term
                ps.streams.clear()
                ps.pending_ids.clear()
                ps.pending_discards.clear()
            return [u.ticket for u in failed]

    def _roll_over(self) -> None:
        """Seal the active segment and start the next one (writer thread, inside flush)."""
        old_id = self.active_id
        if self.meta_dirty:
            self._write_meta()
        if not self.sync:
            self.file.sync()
        write_index_files(self.disk, self.seg_dir(old_id), self.active)
        sealed = SealedSegment(
            self.disk, self.bucket_id, old_id, self.seg_dir(old_id), self.write_offset, self.file
        )
        sealed.rebuild = self._rebuild_sealed_in_use
        sealed.open_indexes = self.open_indexes
        self._merge_stream_filter(sealed)
        self._write_stream_filter([*self.sealed, sealed])
        # The next segment's data file comes last: once it exists, opening treats this one as
        # sealed, so everything sealing writes must be on disk before (if a step fails, the
        # segment simply stays active and the next rollover does it all again).
        new_id = old_id + 1
        self._create_segment(new_id)
        new_file = self.disk.open(os.path.join(self.seg_dir(new_id), DATA_FILE))
        with self.lock:
            self.sealed.append(sealed)
            self.active = ActiveIndex(new_id, self.segment_size, SEGMENT_HEADER_SIZE)
            self.active_id = new_id
            self.file = new_file  # the old handle now belongs to the sealed segment
            self.write_offset = SEGMENT_HEADER_SIZE
            self.checkpoint_offset = SEGMENT_HEADER_SIZE
            self.checkpoint_size = 0
        ckpt = os.path.join(self.seg_dir(old_id), CHECKPOINT_FILE)
        if self.disk.exists(ckpt):
            self.disk.remove(ckpt)
        log.info("bucket %d: sealed segment %d, started %d", self.bucket_id, old_id, new_id)

    def write_checkpoint(self) -> None:
        with self.lock:
            if self.meta_dirty:
                return  # discards must be recorded before a checkpoint covers their markers
            sections = self.active.to_sections()
            offset = self.active.end_offset
            seg_dir = self.seg_dir(self.active_id)
        data = pack_sections(CHECKPOINT_MAGIC, sections)
        self.disk.write_atomic(os.path.join(seg_dir, CHECKPOINT_FILE), data)
        self.checkpoint_offset = offset
        self.checkpoint_size = len(data)

    def close_files(self) -> None:
        """Release file handles without writing anything (after a failed open)."""
        if self.file is not None:
            self.file.close()
        for seg in self.sealed:
            seg.close()

    def close(self) -> None:
        with self._flush_lock:
            try:
                self._write_meta()
                if self.write_offset > self.checkpoint_offset:
                    self.write_checkpoint()
            except OSError as e:
                log.error("bucket %d: could not write metadata at close: %s", self.bucket_id, e)
            self.file.close()
            for seg in self.sealed:
                seg.close()

    # ======================================================================== lookups
    def _stream_tip(self, ps: PartitionState, sid: bytes) -> tuple[int, bytes, int] | None:
        """(next version, partition key, newest sequence) of a stream, or None if it is new."""
        tip = ps.streams.get(sid)
        if tip is not None:
            ps.streams.move_to_end(sid)
            ps.cache_hits += 1
            return (tip[0], tip[1], tip[2])
        ps.cache_misses += 1
        key = stream_key(ps.partition_id, sid)
        found = self._stream_tip_indexed(ps, key)
        if found is not None:
            ps.remember_stream(sid, found[0], found[1], -1)
        return found

    def _stream_tip_indexed(self, ps: PartitionState, key: bytes) -> tuple[int, bytes, int] | None:
        run = self.active.stream_range(key)
        if run is not None:
            ref, base, count, pkey = run
            if ps.pending_discard is not None and count:
                seqs = self.active.sequences
                events = self.active.stream_events[ref]
                count = bisect_left(events, ps.pending_discard, key=lambda n: seqs[n])
            if count:
                return (base + count, pkey, -1)
        if not self.sealed or not self.stream_filter.may_contain(bytes_hash64(key)):
            return None
        for seg in reversed(self.sealed):
            found = seg.indexes().stream_range(key)
            if found is None:
                continue
            ref, base, count, pkey = found
            limit = ps.sealed_limit(seg.segment_id)
            if limit is not None:
                count = self._surviving_count(seg, ref, count, limit)
            if count:
                return (base + count, pkey, -1)
        return None

    def _surviving_count(self, seg: SealedSegment, ref: int, count: int, limit: int) -> int:
        """How many of a sealed stream run's entries lie below sequence `limit`."""
        offsets = seg.indexes().stream_offsets(ref, 0, count)
        reader = self._sealed_reader(seg)
        while count and reader.event_at(offsets[count - 1]).partition_sequence >= limit:
            count -= 1
        return count

    def _sealed_reader(self, seg: SealedSegment) -> RecordReader:
        return RecordReader(
            seg.data_path, seg.data_file(), seg.size, self.cache, (self.bucket_id, seg.segment_id)
        )

    def _active_reader(self) -> RecordReader:
        path = os.path.join(self.seg_dir(self.active_id), DATA_FILE)
        return RecordReader(path, self.file, self.active.end_offset)

    def _term_before(self, ps: PartitionState, sequence: int) -> int:
        """Term of the entry just below `sequence` (queued, in flight or durable)."""
        if sequence == 0:
            return 0
        for u in reversed([*self.inflight, *self.pending]):
            if u.partition_id == ps.partition_id and u.entries:
                if u.entries[0][1] <= sequence - 1 <= u.entries[-1][1]:
                    return u.last_term
        ev = self._read_seq(ps, sequence - 1)
        return ev.term if ev is not None else 0

    # -- partition runs: the surviving entries in order, one run per segment
    def partition_runs(
        self, ps: PartitionState, start: int = 0
    ) -> list[tuple[SealedSegment | None, int, int]]:
        """(segment or None for the active one, first sequence, count) runs, oldest first, of
        the durable surviving entries; runs wholly below `start` may be left out.

        Surviving sequences grow with the segment order, so the walk goes from the newest
        segment back and stops at the first run that begins at or below `start`: a read of
        recent events never opens the index files of old segments.
        """
        runs: list = []
        base, count = self.active.partition_range(ps.partition_id)
        if count and ps.pending_discard is not None:
            count = max(0, min(count, ps.pending_discard - base))
        if count:
            runs.append((None, base, count))
            if base <= start:
                return runs
        for seg in reversed(self.sealed):
            seq_min, count = seg.indexes().partition_range(ps.partition_id)
            if not count:
                continue
            limit = ps.sealed_limit(seg.segment_id)
            if limit is not None:
                count = max(0, min(count, limit - seq_min))
            if count:
                runs.append((seg, seq_min, count))
                if seq_min <= start:
                    break
        runs.reverse()
        return runs

    def _partition_entries(
        self, ps: PartitionState, start: int, last: int, limit: int
    ) -> Iterator[tuple[RecordReader, int]]:
        """(reader, offset) of the surviving durable entries with start <= sequence <= last,
        at most `limit`, in sequence order. The plan is taken under the lock, the reads not."""
        if limit <= 0 or start > last:
            return
        p = ps.partition_id
        with self.lock:
            plan: list[tuple[RecordReader | SealedSegment, object]] = []
            want = min(limit, last - start + 1)
            for seg, base, count in self.partition_runs(ps, start):
                if base + count <= start or want <= 0:
                    continue
                if base > start:
                    break  # never for a gapless log; stop rather than skip sequences
                lo = start - base
                hi = min(count, lo + want)
                if seg is None:
                    plan.append((self._active_reader(), self.active.partition_offsets(p, lo, hi)))
                else:
                    plan.append((seg, (lo, hi)))
                want -= hi - lo
                start = base + hi
        for source, what in plan:
            if isinstance(source, RecordReader):
                reader, offsets = source, what
            else:
                reader = self._sealed_reader(source)
                offsets = source.indexes().partition_offsets(p, *what)  # type: ignore[misc]
            for off in offsets:  # type: ignore[attr-defined]
                yield reader, off

    def read_partition_events(
        self, ps: PartitionState, start: int, last: int, limit: int
    ) -> list[Event]:
        """Surviving durable events with start <= sequence <= last, at most `limit`."""
        return [
            reader.event_at(off) for reader, off in self._partition_entries(ps, start, last, limit)
        ]

    def _read_seq(self, ps: PartitionState, sequence: int) -> Event | None:
        found = self.read_partition_events(ps, sequence, sequence, 1)
        return found[0] if found else None

    def read_stream_events(
        self, ps: PartitionState, sid: bytes, start: int, last: int, limit: int, max_seq: int
    ) -> list[Event]:
        """Surviving durable events of a stream, start <= version <= last, below `max_seq`."""
        out: list[Event] = []
        if limit <= 0 or start > last:
            return out
        key = stream_key(ps.partition_id, sid)
        # Runs of the stream's entries, oldest first: (first version, count, source).
        runs: list[tuple[int, int, object]] = []
        with self.lock:
            found = self.active.stream_range(key)
            if found is not None and found[2]:
                ref, base, count, _ = found
                if ps.pending_discard is not None:
                    seqs = self.active.sequences
                    count = bisect_left(
                        self.active.stream_events[ref], ps.pending_discard, key=lambda n: seqs[n]
                    )
                lo, hi = max(0, start - base), min(count, last - base + 1)
                if lo < hi:
                    runs.append(
                        (
                            base,
                            count,
                            (self._active_reader(), self.active.stream_offsets(ref, lo, hi), lo),
                        )
                    )
                elif count and base <= start:
                    return out  # the range lies past the stream's end
            sealed = list(self.sealed)
        if (
            (not runs or runs[0][0] > start)
            and sealed
            and self.stream_filter.may_contain(bytes_hash64(key))
        ):
            for seg in reversed(sealed):
                found = seg.indexes().stream_range(key)
                if found is None:
                    continue
                ref, base, count, _ = found
                runs.insert(0, (base, count, (seg, ref)))
                if base <= start:
                    break
        for base, count, source in runs:
            if isinstance(source[0], RecordReader):
                reader, offsets, lo = source  # type: ignore[misc]
            else:
                seg, ref = source  # type: ignore[misc]
                limit_seq = ps.sealed_limit(seg.segment_id)
                if limit_seq is not None:
                    count = self._surviving_count(seg, ref, count, limit_seq)
                lo, hi = max(0, start - base), min(count, last - base + 1)
                if lo >= hi:
                    continue
                reader = self._sealed_reader(seg)
                offsets = seg.indexes().stream_offsets(ref, lo, hi)
            for off in offsets:
                ev = reader.event_at(off)
                if ev.partition_sequence >= max_seq:
                    return out
                if ev.stream_version < start:
                    continue
                out.append(ev)
                start = ev.stream_version + 1
                if len(out) >= limit or start > last:
                    return out
        return out

    def find_event(self, ps: PartitionState, event_id: bytes) -> tuple[Event, bool] | None:
        """A surviving entry with this id, queued or durable: (event, durable)."""
        with self.lock:
            seq = ps.pending_ids.get(event_id)
            if seq is not None:
                # Newest first: a queued replacement at the same sequence hides what it replaces.
                for u in reversed([*self.inflight, *self.pending]):
                    if u.partition_id != ps.partition_id or not u.entries:
                        continue
                    first = u.entries[0][1]
                    if first <= seq <= u.entries[-1][1] and u.entries[seq - first][5] == event_id:
                        rel = u.entries[seq - first][0]
                        return decode_event(u.data, rel, len(u.data)), False
            n = self.active.find_event(event_id)
            if n is not None and self.active.partitions[n] == ps.partition_id:
                s = self.active.sequences[n]
                if ps.pending_discard is None or s < ps.pending_discard:
                    return self._active_reader().event_at(self.active.offsets[n]), True
            sealed = list(reversed(self.sealed))
        t = event_time_ms(event_id)
        for seg in sealed:
            tr = seg.time_range
            if tr is not None and not tr[0] <= t <= tr[1]:
                continue
            off = seg.indexes().find_event(event_id)
            if off is None:
                continue
            ev = self._sealed_reader(seg).event_at(off)
            if ev.partition_id != ps.partition_id:
                continue
            if ps.discarded_in_sealed(ev.partition_sequence, seg.segment_id):
                continue
            return ev, True
        return None

    def read_raw(self, ps: PartitionState, start: int, max_bytes: int) -> bytes:
        """Record bytes of the durable entries from `start`, at least one, about `max_bytes`."""
        chunks: list[bytes] = []
        size = 0
        for reader, off in self._partition_entries(ps, start, ps.durable_next - 1, 1 << 62):
            raw = reader.raw_at(off)
            chunks.append(raw)
            size += len(raw)
            if size >= max_bytes:
                break
        return b"".join(chunks)
