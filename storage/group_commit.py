"""Group commit of a bucket: write and sync what is queued, then index it; seal and checkpoint.

Theory of operation.

*Writing.* ``flush`` (run by the node's writer thread, a bucket at a time) takes everything
queued, writes it with one ``pwrite`` per segment and makes it durable with one ``fdatasync``,
then, under the lock, adds the entries to the active index, moves each partition's
``durable_next`` and returns the tickets it completed. Entries become readable only through the
index, so nothing unsynced is ever read. A unit never spans segments: when the next unit does not
fit, the active segment is sealed and a new one is started.

*Sealing* is in two steps. The rollover (in the flush, short) creates the next segment's data
file and, under the lock, moves the active index into the new ``SealedSegment`` as its
``pending`` lookups: from then on the old segment is read like any sealed one, through an index
nothing changes any more. Writing its three index files and the bucket's stream filter (about a
second for a full segment of small events) is the second step, ``_finish_seals``: done by the
same flush, unless its caller has it done off the commit path (``checkpoint_if_due``, the node's
checkpointer thread), so that no bucket's commits wait for it. Until the files exist, reads
treat the bucket's filter of sealed streams as unknown. A crash in between is repaired by
opening, which rebuilds a sealed segment's missing index files from its data; a failure to write
them is logged, and they stay pending (read from memory) until a later pass writes them.

*Checkpointing.* Once enough was written since the last one, the active index is written whole
to the segment's checkpoint file, so that opening scans only the records after it. A flush
writes a due checkpoint first, unless its caller has them written by another thread
(``checkpoint_if_due``, the node's ``checkpointer``) so that no flush waits for one. Either way
the snapshot is taken under the lock, and checkpoints and both steps of a seal exclude each
other (the checkpoint lock): a checkpoint never lands in a segment sealed meanwhile.

*Preallocation.* The active segment's data file is allocated ``PREALLOCATE_BYTES`` ahead of its
writes (zeros), so a flush's fdatasync flushes data only, not the journal commit a growing file
needs. Zeros after the last record are thus the normal state of an active file after a crash:
opening trims them without a warning (``bucket_recovery``), and a clean close or a rollover trims
the file to its records first, so a sealed or a closed file ends at its last record as before.

*Failing.* If a write or sync fails, the segment is truncated back to where that write started,
and every unit not yet durable (the failed ones and all queued behind them) is failed; each
affected partition's positions go back to what is durable. Earlier acknowledged data is
untouched. If even the rollback fails the bucket refuses further writes until it is reopened.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .active_index import ActiveIndex
from .bucket_recovery import CHECKPOINT_MAGIC
from .errors import (
    WriteFailed,
)
from .limits import PREALLOCATE_BYTES
from .sealed import PendingIndexes, write_index_files
from .sectionfile import BadSectionFile, section_chunks
from .segment import (
    CHECKPOINT_FILE,
    DATA_FILE,
    SEGMENT_HEADER_SIZE,
    SealedSegment,
)
from .transaction import Ticket, Unit
from .write_queue import WriteQueue

if TYPE_CHECKING:
    pass

log = logging.getLogger("sierradb.storage")

# A checkpoint rewrites the whole active index, which grows with the segment: the next one is
# due only once this many times its size was written (and at least the configured interval),
# so checkpoints cost at most ~1/RATIO of the data written, and opening scans a tail of at most
# RATIO checkpoint sizes (a few tens of MiB) per bucket.
CHECKPOINT_RATIO = 2


@dataclass
class Written:
    """What a flush's write phase did: batches (units, start offset) written and synced but not
    indexed yet, and tickets already complete (dropped, failed, or indexed before a seal)."""

    batches: list[tuple[list[Unit], int]]
    completed: list[Ticket]


class GroupCommit(WriteQueue):
    """Flushing, failure handling, sealing and checkpoints of one bucket."""

    # ------------------------------------------------------------------------- flushing
    def flush(self) -> list[Ticket]:
        """Write, sync and index everything queued; the tickets completed (done or failed)."""
        return self.flush_apply(self.flush_write())

    def flush_write(self, checkpoint: bool = True) -> Written:
        """Phase 1, blocking (the writer thread): write and fdatasync everything queued; first
        a checkpoint if one is due, unless ``checkpoint`` is False (the caller then has the
        checkpoints, and the index files of the segments a rollover seals, written off the
        commit path: ``checkpoint_if_due``).

        The entries become readable only in phase 2 (``flush_apply``), which the node runs on
        its event loop, so the writer thread never holds the bucket lock for long. Phase 2 must
        complete before the next phase 1 (sealing and checkpoints need a complete index).
        """
        with self._flush_lock:
            assert not self._unapplied, "flush_write before the last flush was applied"
            self._housekeeping(checkpoint)
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
                        self._roll_over(seal_now=checkpoint)
                        continue
                    batch = units[i:j]
                    if start + size > self.allocated_end:
                        self._allocate(start + size)
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

    def _housekeeping(self, checkpoint: bool) -> None:
        """Metadata, index files and checkpoint writes left over from earlier flushes (writer
        thread); the latter two as ``checkpoint_if_due`` writes them, which logs its errors."""
        try:
            if self.meta_dirty:
                self._write_meta()
        except OSError as e:
            # The data is durable; the metadata is retried at the next flush.
            log.error("bucket %d: could not write metadata: %s", self.bucket_id, e)
            return
        if checkpoint and self.checkpoint_due():
            self.checkpoint_if_due()

    def checkpoint_due(self) -> bool:
        """Whether ``checkpoint_if_due`` has work (any thread): a sealed segment's index files
        to write, or enough written since the last checkpoint for the next one."""
        return bool(self.unsealed) or self._checkpoint_due()

    def _checkpoint_due(self) -> bool:
        due = max(self.checkpoint_interval, CHECKPOINT_RATIO * self.checkpoint_size)
        return self.write_offset - self.checkpoint_offset >= due

    def finish_seals(self) -> int:
        """Write the index files of the segments sealed since the last call (any thread, while
        flushes go on); how many were. An error is logged and they stay due."""
        with self._checkpoint_lock:
            before = len(self.unsealed)
            self._finish_seals()
            return before - len(self.unsealed)

    def checkpoint_if_due(self) -> bool:
        """Write the index files of the segments sealed since the last call, then a
        checkpoint if one is due (any thread, concurrently with flushes: the snapshot is taken
        under the bucket lock, and a rollover waits for it); whether it wrote a checkpoint. An
        error is logged and the work stays due."""
        try:
            with self._checkpoint_lock:
                self._finish_seals()
                return self._checkpoint_due() and self._write_checkpoint()
        except OSError as e:
            log.error("bucket %d: could not write a checkpoint: %s", self.bucket_id, e)
            return False

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
                durable_next = ps.durable_next = entries[-1][1] + 1
                ps.durable_last_term = u.last_term
                pending_ids = ps.pending_ids
                if ps.next_sequence == durable_next and not ps.pending_discards:
                    pending_ids.clear()  # nothing of the partition is queued any more
                else:
                    # A discard queued behind this unit already took its entries at and above
                    # its point out of the queued ids (replace_tail); an id there at the same
                    # sequence is its replacement's, still queued, and stays.
                    replaced_from = min(ps.pending_discards, default=durable_next)
                    for e in entries:
                        if e[1] < replaced_from and pending_ids.get(e[5]) == e[1]:
                            del pending_ids[e[5]]
            u.ticket.done = True
            start += len(u.data)
        if run:
            idx.add_units(run)
        idx.end_offset = start

    def _allocate(self, end: int) -> None:
        """Allocate the data file past `end`, a whole PREALLOCATE_BYTES step at a time (never
        past the segment's size)."""
        step = PREALLOCATE_BYTES
        target = min(self.segment_size, (end + step - 1) // step * step)
        self.file.allocate(target)
        self.allocated_end = target

    def _trim(self) -> None:
        """Cut the data file's preallocated zeros (a rollover's old file, a closing one)."""
        if self.allocated_end > self.write_offset:
            self.file.truncate(self.write_offset)
            self.file.sync()
            self.allocated_end = self.write_offset

    def _fail(self, units: list[Unit], start: int, err: OSError) -> list[Ticket]:
        self.write_failures += 1
        log.error("bucket %d: write failed at offset %d: %s", self.bucket_id, start, err)
        try:
            self.allocated_end = start
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

    def _roll_over(self, seal_now: bool) -> None:
        """Seal the active segment and start the next one (writer thread, inside flush): the
        index files now with `seal_now`, else later (``checkpoint_if_due``). After a
        checkpoint being written, and with none written meanwhile (it would be the sealed
        segment's, or cover the new one's start with the old one's index)."""
        with self._checkpoint_lock:
            self._start_next_segment()
            if seal_now:
                self._finish_seals()

    def _start_next_segment(self) -> None:
        old_id = self.active_id
        if self.meta_dirty:
            self._write_meta()  # discards must be recorded before the segment is sealed
        if not self.sync:
            self.file.sync()
        with self.lock:  # lookups index ids lazily under the lock: finish that first
            self.active.index_ids()
        self._trim()  # a sealed file ends at its last record
        # Once the next segment's data file exists, opening treats this one as sealed (and
        # rebuilds its index files from its data if they are missing). If a step fails before,
        # the segment simply stays active and the next rollover tries again.
        new_id = old_id + 1
        self._create_segment(new_id)
        new_file = self.disk.open(os.path.join(self.seg_dir(new_id), DATA_FILE))
        sealed = SealedSegment(
            self.disk, self.bucket_id, old_id, self.seg_dir(old_id), self.write_offset, self.file
        )
        sealed.rebuild = self._rebuild_sealed_in_use
        sealed.open_indexes = self.open_indexes
        old = self.active
        if old.event_count:
            sealed.time_range = (old.min_time_ms, old.max_time_ms)
        with self.lock:
            sealed.pending = PendingIndexes(old)
            self.unsealed.append(sealed)  # before the segment is listed: see may_hold_stream
            self.sealed.append(sealed)
            self.active = ActiveIndex(new_id, self.segment_size, SEGMENT_HEADER_SIZE)
            self.active_id = new_id
            self.file = new_file  # the old handle now belongs to the sealed segment
            self.write_offset = SEGMENT_HEADER_SIZE
            self.allocated_end = SEGMENT_HEADER_SIZE
            self.checkpoint_offset = SEGMENT_HEADER_SIZE
            self.checkpoint_size = 0
        log.info("bucket %d: sealing segment %d, started %d", self.bucket_id, old_id, new_id)

    def _finish_seals(self) -> None:
        """Write the index files of the segments sealed but not written yet, oldest first (the
        caller holds the checkpoint lock). An error is logged; the segment stays pending (read
        from memory) for the next call."""
        while self.unsealed:
            seg = self.unsealed[0]
            try:
                self._write_seal(seg)
            except (OSError, BadSectionFile) as e:  # (files that fail their check: rewritten)
                log.error(
                    "bucket %d: could not write segment %d's index files: %s (will retry)",
                    self.bucket_id, seg.segment_id, e,
                )  # fmt: skip
                return
            self.unsealed.pop(0)
            log.info("bucket %d: sealed segment %d", self.bucket_id, seg.segment_id)

    def _write_seal(self, seg: SealedSegment) -> None:
        """A sealed segment's index files, then the bucket's stream filter (again after a
        failed attempt: every step may be repeated)."""
        pending = seg.pending
        if pending is not None:
            write_index_files(self.disk, seg.dir, pending.index)
            seg.use_written_files()
        self._merge_stream_filter(seg)
        self._write_stream_filter()
        ckpt = os.path.join(seg.dir, CHECKPOINT_FILE)
        if self.disk.exists(ckpt):
            self.disk.remove(ckpt)

    def write_checkpoint(self) -> None:
        with self._checkpoint_lock:
            self._write_checkpoint()

    def _write_checkpoint(self) -> bool:
        """The active index as of now, to its checkpoint file (the caller holds the checkpoint
        lock); False if it cannot be written yet."""
        with self.lock:
            if self.meta_dirty:
                return False  # discards must be recorded before a checkpoint covers their markers
            self.active.index_ids()  # most of the lookup structures' work, in a hold of its own
        # What the snapshot below holds the lock for is a few copies; the stream bloom, which
        # only files use (a checkpoint, a seal: neither runs meanwhile), is brought up to date
        # by ``sections`` without the lock.
        index = self.active  # (a rollover, which would replace it, waits for the checkpoint lock)
        with self.lock:
            if self.meta_dirty:
                return False
            snap = index.snapshot()
            offset = index.end_offset
            seg_dir = self.seg_dir(self.active_id)
        sections = index.sections(snap)  # the bulk of the copy, while appends go on
        if index.discard_count != snap["discard_count"]:
            return False  # a discard changed what the copy read: the next pass tries again
        data = section_chunks(CHECKPOINT_MAGIC, sections)
        self.disk.write_atomic(os.path.join(seg_dir, CHECKPOINT_FILE), data)
        with self.lock:
            self.checkpoint_offset = offset
            self.checkpoint_size = sum(map(len, data))
        return True

    def close_files(self) -> None:
        """Release file handles without writing anything (after a failed open)."""
        if self.file is not None:
            self.file.close()
        for seg in self.sealed:
            seg.close()

    def close(self) -> None:
        with self._flush_lock:
            try:
                with self._checkpoint_lock:
                    self._finish_seals()
                self._write_meta()
                if self.write_offset > self.checkpoint_offset:
                    self.write_checkpoint()
                if self.broken is None:
                    self._trim()
            except OSError as e:
                log.error("bucket %d: could not write metadata at close: %s", self.bucket_id, e)
            self.file.close()
            for seg in self.sealed:
                seg.close()
