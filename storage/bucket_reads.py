"""Lookups and reads of a bucket: stream tips, partition and stream ranges, event ids, raw bytes.

Reads see only durable entries (those in an index), minus what discards removed: the active index
applies discards directly; sealed index files predate later discards, so reads in sealed segments
consult the partition's recorded discards (``PartitionState.sealed_limit``). Plans are taken under
the bucket lock, record reads happen outside it.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .active_index import event_time_ms, stream_key
from .bucket_metadata import BucketMetadata
from .hashing import bytes_hash64
from .partition_state import PartitionState
from .record import Event, RawEvent
from .record_check import decode_event, event_from_raw, extend_stream_read
from .segment import (
    RecordReader,
    SealedSegment,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("sierradb.storage")


class BucketReads(BucketMetadata):
    """Lookups and reads of one bucket."""

    def _stream_tip(self, ps: PartitionState, sid: bytes) -> tuple[int, bytes, int] | None:
        """(next version, partition key, newest sequence) of a stream, or None if it is new."""
        tip = ps.streams.get(sid)
        if tip is not None:
            ps.streams.move_to_end(sid)
            ps.cache_hits += 1
            return tip
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
                events = self.active.stream_entries(ref)
                count = bisect_left(events, ps.pending_discard, key=lambda n: seqs[n])
            if count:
                return (base + count, pkey, -1)
        if not self.may_hold_stream(key):
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

    def may_hold_stream(self, key: bytes) -> bool:
        """Whether a sealed segment may hold entries of the stream with this key: the bucket's
        filter of sealed streams learns a segment's streams once its index files are written,
        so while one is not (``unsealed``), any may."""
        if not self.sealed:
            return False
        return bool(self.unsealed) or self.stream_filter.may_contain(bytes_hash64(key))

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
        return RecordReader(self.file.path, self.file, self.active.end_offset, map_tail=True)

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
        base, count = self._active_run(ps)
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

    def _active_run(self, ps: PartitionState) -> tuple[int, int]:
        """(first sequence, count) of the partition's surviving durable entries in the active
        segment (under the lock)."""
        base, count = self.active.partition_range(ps.partition_id)
        if count and ps.pending_discard is not None:
            count = max(0, min(count, ps.pending_discard - base))
        return base, count

    def _partition_reads(
        self, ps: PartitionState, start: int, last: int, limit: int
    ) -> Iterator[tuple[RecordReader, list[int]]]:
        """(reader, offsets) runs of the surviving durable entries with start <= sequence <=
        last, at most `limit`, in sequence order. The plan is taken under the lock; a sealed
        run's offsets are looked up only when the caller gets to it (a catch-up read stops
        after a few MiB), and the reads are the caller's (outside the lock)."""
        plan = self._partition_plan(ps, start, last, limit, False)
        assert plan is not None  # every segment may be read
        p = ps.partition_id
        for source, what in plan:
            if isinstance(source, RecordReader):
                yield source, what  # type: ignore[misc]
            else:
                offsets = source.indexes().partition_offsets(p, *what)  # type: ignore[misc]
                yield self._sealed_reader(source), offsets

    def _partition_plan(
        self, ps: PartitionState, start: int, last: int, limit: int, active_only: bool
    ) -> list[tuple[RecordReader | SealedSegment, Any]] | None:
        """_partition_reads' plan, under the lock; with `active_only`, None if it needs a
        sealed segment."""
        plan: list[tuple[RecordReader | SealedSegment, Any]] = []
        if limit <= 0 or start > last:
            return plan
        p = ps.partition_id
        with self.lock:
            if active_only:
                base, count = self._active_run(ps)
                if not count or base > start:
                    return None  # before partition_runs opens a sealed segment's index files
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
                elif active_only:
                    return None
                else:
                    plan.append((seg, (lo, hi)))
                want -= hi - lo
                start = base + hi
        return plan

    def read_partition_events(
        self, ps: PartitionState, start: int, last: int, limit: int
    ) -> list[Event]:
        """Surviving durable events with start <= sequence <= last, at most `limit`."""
        return [
            reader.event_at(off)
            for reader, offsets in self._partition_reads(ps, start, last, limit)
            for off in offsets
        ]

    def read_partition_raw(
        self, ps: PartitionState, start: int, last: int, limit: int
    ) -> list[RawEvent]:
        """As read_partition_events, the records undecoded (see ``record.RawEvent``)."""
        out: list[RawEvent] = []
        for reader, offsets in self._partition_reads(ps, start, last, limit):
            out += reader.raw_events_at(offsets)
        return out

    def read_partition_raw_active(
        self, ps: PartitionState, start: int, last: int, limit: int
    ) -> list[RawEvent] | None:
        """As read_partition_raw, or None instead of reading any sealed segment (nor its index
        files): see read_stream_raw's `active_only`."""
        plan = self._partition_plan(ps, start, last, limit, True)
        if plan is None:
            return None
        out: list[RawEvent] = []
        for reader, offsets in plan:
            assert isinstance(reader, RecordReader)  # an active-only plan holds no sealed one
            out += reader.raw_events_at(offsets)
        return out

    def _read_seq(self, ps: PartitionState, sequence: int) -> Event | None:
        found = self.read_partition_events(ps, sequence, sequence, 1)
        return found[0] if found else None

    def read_stream_events(
        self, ps: PartitionState, sid: bytes, start: int, last: int, limit: int, max_seq: int
    ) -> list[Event]:
        """Surviving durable events of a stream, start <= version <= last, below `max_seq`."""
        raws = self.read_stream_raw(ps, sid, start, last, limit, max_seq)
        assert raws is not None  # every segment may be read
        return [event_from_raw(r) for r in raws]

    def read_stream_raw(
        self, ps: PartitionState, sid: bytes, start: int, last: int, limit: int, max_seq: int,
        active_only: bool = False,
    ) -> list[RawEvent] | None:  # fmt: skip
        """As read_stream_events, the records undecoded (see ``record.RawEvent``). With
        `active_only`, None instead of reading any sealed segment (nor its index files): a read
        of the active segment only is served from memory (the file's tail mapped, the rest
        written lately and in the page cache), which the event loop may do itself."""
        out: list[RawEvent] = []
        if limit <= 0 or start > last:
            return out
        key = stream_key(ps.partition_id, sid)
        # Runs of the stream's entries, oldest first: (first version, count, source).
        runs: list[tuple[int, int, Any]] = []
        with self.lock:
            found = self.active.stream_range(key)
            if found is not None and found[2]:
                ref, base, count, _ = found
                if ps.pending_discard is not None:
                    seqs = self.active.sequences
                    count = bisect_left(
                        self.active.stream_entries(ref), ps.pending_discard, key=lambda n: seqs[n]
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
        if (not runs or runs[0][0] > start) and sealed and self.may_hold_stream(key):
            if active_only:
                return None
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
            done = 0
            while done < len(offsets):
                # Checked a run at a time, never more than the page still needs (a run may hold
                # the rest of a long stream).
                chunk = offsets[done : done + limit - len(out)]
                done += len(chunk)
                next_start = extend_stream_read(
                    out, reader.raw_events_at(chunk), max_seq, start, last, limit
                )
                if next_start is None:
                    return out
                start = next_start
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
        for reader, offsets in self._partition_reads(ps, start, ps.durable_next - 1, 1 << 62):
            for off in offsets:
                raw = reader.raw_at(off)
                chunks.append(raw)
                size += len(raw)
                if size >= max_bytes:
                    return b"".join(chunks)
        return b"".join(chunks)
