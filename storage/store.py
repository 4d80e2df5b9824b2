"""The storage engine's public face: a data dir of buckets, partitions and their state.

``Store`` is synchronous and knows nothing of networks. Append calls only touch memory (they
assign positions and queue records) and may run on the event loop; ``flush(bucket)`` does the
blocking write and fdatasync and belongs in a worker thread, one per bucket. Reads are bounded by
each partition's watermark, which the caller (the replication layer; with one node, the node
itself) moves with ``set_watermark`` once entries are confirmed. The fixed settings of a data dir
(partition count, bucket count, segment size) are recorded in ``sierradb.json`` when it is
created and checked at every open.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, overload

from .bucket import Bucket, Written
from .cache import BlockCache, CacheStatistics
from .disk import Disk, FileDisk
from .errors import DataDirLocked, DataDirMismatch, StorageError
from .limits import (
    DEFAULT_CACHE_CAPACITY_BYTES,
    DEFAULT_CHECKPOINT_INTERVAL_BYTES,
    DEFAULT_SEGMENT_SIZE_BYTES,
    DEFAULT_STREAM_CACHE_ENTRIES,
    MAX_SEGMENT_SIZE_BYTES,
    MIN_SEGMENT_SIZE_BYTES,
)
from .partition_state import STREAM_TIP_BYTES, PartitionState, Promise
from .record import Event, RawEvent
from .record_check import event_from_raw
from .segment import OpenIndexes
from .transaction import NewEvent, Ticket

T = TypeVar("T")
FORMAT_VERSION = 1
DEFAULT_PARTITIONS = 32
DEFAULT_BUCKETS = 4
# Sealed segments whose index files stay mapped at once (least recently used are unmapped).
DEFAULT_OPEN_SEGMENT_INDEXES = 64
META_FILE = "sierradb.json"
LOCK_FILE = "LOCK"


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    partitions: int
    buckets: int
    segment_size_bytes: int
    sealed_segments: int
    active_events: int
    active_index_bytes: int
    pending_bytes: int
    flushes: int
    bytes_written: int
    write_failures: int
    torn_tail_cuts: int
    stream_cache_entries: int
    stream_cache_bytes: int
    stream_cache_max_entries: int
    stream_cache_hits: int
    stream_cache_misses: int
    stream_cache_evictions: int
    cache: CacheStatistics


class Store:
    def __init__(self) -> None:  # use Store.open
        self.path = ""
        self.disk: Disk = FileDisk()
        self.partition_count = 0
        self.bucket_count = 0
        self.segment_size_bytes = 0
        self.member_id = ""
        self.buckets: list[Bucket] = []
        self.partitions: list[PartitionState] = []
        self.cache = BlockCache(0)
        self.open_indexes = OpenIndexes(DEFAULT_OPEN_SEGMENT_INDEXES)
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------------- lifecycle
    @classmethod
    def open(
        cls,
        path: str,
        *,
        partitions: int | None = None,
        buckets: int | None = None,
        segment_size_bytes: int | None = None,
        sync: bool = True,
        disk: Disk | None = None,
        cache_capacity_bytes: int = DEFAULT_CACHE_CAPACITY_BYTES,
        stream_cache_entries: int = DEFAULT_STREAM_CACHE_ENTRIES,
        checkpoint_interval_bytes: int = DEFAULT_CHECKPOINT_INTERVAL_BYTES,
        open_segment_indexes: int = DEFAULT_OPEN_SEGMENT_INDEXES,
    ) -> Store:
        """Open (or create) a data dir. None for a fixed setting means "as recorded/default"."""
        self = cls()
        self.path = path
        self.disk = disk if disk is not None else FileDisk()
        self.disk.make_dirs(path)
        if isinstance(self.disk, FileDisk):
            self._take_lock()
        try:
            self._open(
                partitions,
                buckets,
                segment_size_bytes,
                sync,
                cache_capacity_bytes,
                stream_cache_entries,
                checkpoint_interval_bytes,
                open_segment_indexes,
            )
        except BaseException:
            for bucket in self.buckets:
                bucket.close_files()
            self._release_lock()
            raise
        return self

    def _take_lock(self) -> None:
        fd = os.open(os.path.join(self.path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLocked(
                f"data dir {self.path} is in use by another process (lock {LOCK_FILE} is held)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open(
        self,
        partitions: int | None,
        buckets: int | None,
        segment_size_bytes: int | None,
        sync: bool,
        cache_capacity_bytes: int,
        stream_cache_entries: int,
        checkpoint_interval_bytes: int,
        open_segment_indexes: int,
    ) -> None:
        meta_path = os.path.join(self.path, META_FILE)
        wanted = {
            "partitions": partitions,
            "buckets": buckets,
            "segment_size_bytes": segment_size_bytes,
        }
        if self.disk.exists(meta_path):
            try:
                meta = json.loads(self.disk.read_file(meta_path))
            except ValueError as e:
                raise StorageError(f"{meta_path} is not valid JSON: {e}") from e
            if meta.get("format") != FORMAT_VERSION:
                raise StorageError(f"{meta_path}: unsupported format {meta.get('format')!r}")
            wrong = [
                f"{k}={v} (it has {meta[k]})"
                for k, v in wanted.items()
                if v is not None and v != meta[k]
            ]
            if wrong:
                raise DataDirMismatch(
                    f"data dir {self.path} was created with different fixed settings; "
                    f"cannot open it with {', '.join(wrong)}"
                )
        else:
            meta = {
                "format": FORMAT_VERSION,
                "partitions": partitions or DEFAULT_PARTITIONS,
                "buckets": buckets or DEFAULT_BUCKETS,
                "segment_size_bytes": segment_size_bytes or DEFAULT_SEGMENT_SIZE_BYTES,
                "member_id": secrets.token_hex(16),
                "created_at_ms": int(time.time() * 1000),
            }
            if not 1 <= meta["partitions"] <= 65535:
                raise StorageError("partitions must be in 1..65535")
            if not 1 <= meta["buckets"] <= meta["partitions"]:
                raise StorageError("buckets must be in 1..partitions")
            if not MIN_SEGMENT_SIZE_BYTES <= meta["segment_size_bytes"] <= MAX_SEGMENT_SIZE_BYTES:
                raise StorageError(
                    f"segment size must be in {MIN_SEGMENT_SIZE_BYTES}..{MAX_SEGMENT_SIZE_BYTES} "
                    "bytes"
                )
            self.disk.write_atomic(meta_path, json.dumps(meta, indent=1).encode())
        self.partition_count = meta["partitions"]
        self.bucket_count = meta["buckets"]
        self.segment_size_bytes = meta["segment_size_bytes"]
        self.member_id = meta["member_id"]
        self.cache = BlockCache(cache_capacity_bytes)
        self.open_indexes = OpenIndexes(open_segment_indexes)
        per_partition_cache = max(16, stream_cache_entries // self.partition_count)
        self.partitions = [
            PartitionState(p, per_partition_cache) for p in range(self.partition_count)
        ]
        for b in range(self.bucket_count):
            parts = {
                p: self.partitions[p] for p in range(b, self.partition_count, self.bucket_count)
            }
            bucket = Bucket(
                self.disk,
                self.path,
                b,
                parts,
                self.segment_size_bytes,
                sync,
                self.cache,
                checkpoint_interval_bytes,
                self.open_indexes,
            )
            self.buckets.append(bucket)
            bucket.open()

    def close(self) -> None:
        for b in self.buckets:
            b.close()
        self._release_lock()

    # --------------------------------------------------------------------------- writes
    def bucket_of(self, partition_id: int) -> int:
        return partition_id % self.bucket_count

    def append_leader(
        self,
        partition_id: int,
        partition_key: bytes,
        transaction_id: bytes,
        events: list[NewEvent],
        term: int,
    ) -> Ticket:
        """Check expected versions, assign sequence and versions, queue (memory only)."""
        return self.buckets[partition_id % self.bucket_count].append_leader(
            partition_id, partition_key, transaction_id, events, term
        )

    def append_replicated(self, partition_id: int, events: list[Event]) -> Ticket:
        return self.buckets[partition_id % self.bucket_count].append_replicated(
            partition_id, events
        )

    def replace_tail(self, partition_id: int, from_sequence: int, events: list[Event]) -> Ticket:
        return self.buckets[partition_id % self.bucket_count].replace_tail(
            partition_id, from_sequence, events
        )

    def flush(self, bucket_id: int) -> list[Ticket]:
        """Blocking: write and fdatasync the bucket's queue; the tickets completed."""
        return self.buckets[bucket_id].flush()

    def flush_write(self, bucket_id: int, checkpoint: bool = True) -> Written:
        """Blocking phase 1 of a flush (see Bucket.flush_write): write and fdatasync (and a
        checkpoint first if one is due, unless ``checkpoint`` is False)."""
        return self.buckets[bucket_id].flush_write(checkpoint)

    def checkpoint_due(self, bucket_id: int) -> bool:
        """Whether ``checkpoint_if_due`` has work: a checkpoint, or a sealed segment's index
        files that flushes with ``checkpoint=False`` left to it."""
        return self.buckets[bucket_id].checkpoint_due()

    def finish_seals(self, bucket_id: int) -> int:
        """Blocking: write the index files of the bucket's segments sealed since the last call
        (see Bucket.finish_seals); how many were."""
        return self.buckets[bucket_id].finish_seals()

    def checkpoint_if_due(self, bucket_id: int) -> bool:
        """Blocking: write the index files of the bucket's segments sealed since the last
        call, then its checkpoint if one is due, from any thread, while its flushes go on (see
        Bucket.checkpoint_if_due); whether it wrote a checkpoint."""
        return self.buckets[bucket_id].checkpoint_if_due()

    def flush_apply(self, bucket_id: int, written: Written) -> list[Ticket]:
        """Short phase 2: make phase 1's entries readable; the tickets completed."""
        return self.buckets[bucket_id].flush_apply(written)

    def flush_all(self) -> list[Ticket]:
        done: list[Ticket] = []
        for b in self.buckets:
            done.extend(b.flush())
        return done

    def pending_bytes(self, bucket_id: int) -> int:
        return self.buckets[bucket_id].pending_bytes

    def has_queued(self, bucket_id: int) -> bool:
        """Whether the bucket's next flush has anything to write or report."""
        return self.buckets[bucket_id].has_queued()

    # ---------------------------------------------------------------------- replication
    def set_watermark(self, partition_id: int, watermark: int) -> None:
        ps = self.partitions[partition_id]
        assert watermark <= ps.durable_next, (
            f"partition {partition_id}: watermark {watermark} above durable end {ps.durable_next}"
        )
        if watermark > ps.watermark:
            ps.watermark = watermark

    def watermark(self, partition_id: int) -> int:
        return self.partitions[partition_id].watermark

    def persist_watermarks(self) -> None:
        for b in self.buckets:
            b.persist_watermarks()

    def set_promise(self, partition_id: int, term: int, candidate: int, incarnation: int) -> None:
        """Durable before it returns."""
        self.buckets[partition_id % self.bucket_count].set_promises(
            {partition_id: Promise(term, candidate, incarnation)}
        )

    def set_promises(self, promises: dict[int, Promise]) -> None:
        """Several partitions' promises, one durable metadata write per bucket."""
        by_bucket: dict[int, dict[int, Promise]] = {}
        for p, promise in promises.items():
            by_bucket.setdefault(p % self.bucket_count, {})[p] = promise
        for b, items in by_bucket.items():
            self.buckets[b].set_promises(items)

    def promise(self, partition_id: int) -> Promise:
        return self.partitions[partition_id].promise

    def next_sequence(self, partition_id: int) -> int:
        return self.partitions[partition_id].next_sequence

    def durable_next(self, partition_id: int) -> int:
        return self.partitions[partition_id].durable_next

    def last_entry(self, partition_id: int, include_pending: bool = True) -> tuple[int, int] | None:
        """(term, sequence) of the last entry (queued ones too, unless told otherwise)."""
        ps = self.partitions[partition_id]
        if include_pending:
            nxt, term = ps.next_sequence, ps.last_term
        else:
            nxt, term = ps.durable_next, ps.durable_last_term
        return (term, nxt - 1) if nxt else None

    def read_raw(self, partition_id: int, from_sequence: int, max_bytes: int) -> bytes:
        ps = self.partitions[partition_id]
        return self.buckets[partition_id % self.bucket_count].read_raw(ps, from_sequence, max_bytes)

    # ---------------------------------------------------------------------------- reads
    def get_event(self, partition_id: int, event_id: bytes) -> Event | None:
        """The event with this id if it is visible (below the watermark)."""
        ps = self.partitions[partition_id]
        found = self.buckets[partition_id % self.bucket_count].find_event(ps, event_id)
        if found is None or not found[1] or found[0].partition_sequence >= ps.watermark:
            return None
        return found[0]

    def find_event(self, partition_id: int, event_id: bytes) -> tuple[Event, bool] | None:
        """Any surviving entry with this id, also queued ones: (event, durable). Idempotency."""
        ps = self.partitions[partition_id]
        return self.buckets[partition_id % self.bucket_count].find_event(ps, event_id)

    def read_partition(
        self, partition_id: int, start: int, end: int | None, limit: int
    ) -> tuple[list[Event], bool]:
        """Visible events with start <= sequence <= end (None: no end), at most `limit`.

        The flag says whether more visible events exist in the range after the last returned.
        """
        return self._partition_range(Bucket.read_partition_events, partition_id, start, end, limit)

    def read_partition_raw(
        self, partition_id: int, start: int, end: int | None, limit: int
    ) -> tuple[list[RawEvent], bool]:
        """As read_partition, the records undecoded, for readers that only re-encode them."""
        return self._partition_range(Bucket.read_partition_raw, partition_id, start, end, limit)

    def read_partition_raw_active(
        self, partition_id: int, start: int, end: int | None, limit: int
    ) -> tuple[list[RawEvent], bool] | None:
        """As read_partition_raw, or None when the range needs a sealed segment: see
        read_stream_raw_active (the event loop may call it)."""
        return self._partition_range(
            Bucket.read_partition_raw_active, partition_id, start, end, limit
        )

    @overload
    def _partition_range(
        self, read: Callable[[Bucket, PartitionState, int, int, int], list[T]],
        partition_id: int, start: int, end: int | None, limit: int,
    ) -> tuple[list[T], bool]: ...  # fmt: skip

    @overload
    def _partition_range(
        self, read: Callable[[Bucket, PartitionState, int, int, int], list[T] | None],
        partition_id: int, start: int, end: int | None, limit: int,
    ) -> tuple[list[T], bool] | None: ...  # fmt: skip

    def _partition_range(
        self,
        read: Callable[[Bucket, PartitionState, int, int, int], list[T] | None],
        partition_id: int,
        start: int,
        end: int | None,
        limit: int,
    ) -> tuple[list[T], bool] | None:
        ps = self.partitions[partition_id]
        last = ps.watermark - 1 if end is None else min(end, ps.watermark - 1)
        if start > last:
            return [], False
        found = read(self.buckets[partition_id % self.bucket_count], ps, start, last, limit + 1)
        if found is None:
            return None
        if len(found) > limit:
            return found[:limit], True
        return found, False

    def read_stream(
        self, partition_id: int, stream_id: bytes, start: int, end: int | None, limit: int
    ) -> tuple[list[Event], bool]:
        raws, more = self.read_stream_raw(partition_id, stream_id, start, end, limit)
        return [event_from_raw(r) for r in raws], more

    def read_stream_raw(
        self, partition_id: int, stream_id: bytes, start: int, end: int | None, limit: int
    ) -> tuple[list[RawEvent], bool]:
        """As read_stream, the records undecoded, for readers that only re-encode them."""
        found = self._read_stream_raw(partition_id, stream_id, start, end, limit, False)
        assert found is not None  # every segment may be read
        return found

    def read_stream_raw_active(
        self, partition_id: int, stream_id: bytes, start: int, end: int | None, limit: int
    ) -> tuple[list[RawEvent], bool] | None:
        """As read_stream_raw, or None when the range needs a sealed segment: what it reads is
        the active segment's, in memory (its tail mapped, the rest written lately), so the event
        loop may call it; a None costs a lock and an index lookup."""
        return self._read_stream_raw(partition_id, stream_id, start, end, limit, True)

    def _read_stream_raw(
        self, partition_id: int, stream_id: bytes, start: int, end: int | None, limit: int,
        active_only: bool,
    ) -> tuple[list[RawEvent], bool] | None:  # fmt: skip
        ps = self.partitions[partition_id]
        last = (1 << 64) - 1 if end is None else end
        raws = self.buckets[partition_id % self.bucket_count].read_stream_raw(
            ps, stream_id, start, last, limit + 1, ps.watermark, active_only
        )
        if raws is None:
            return None
        if len(raws) > limit:
            return raws[:limit], True
        return raws, False

    def last_partition_sequence(self, partition_id: int) -> int | None:
        w = self.partitions[partition_id].watermark
        return w - 1 if w else None

    def last_stream_version(self, partition_id: int, stream_id: bytes) -> int | None:
        """Version of the stream's last visible event, or None."""
        ps = self.partitions[partition_id]
        bucket = self.buckets[partition_id % self.bucket_count]
        with bucket.lock:
            tip = bucket._stream_tip(ps, stream_id)
        if tip is None:
            return None
        last = tip[0] - 1
        # Usually the newest entry is visible; otherwise walk back over unconfirmed ones.
        while last >= 0:
            found = bucket.read_stream_events(ps, stream_id, last, last, 1, 1 << 64)
            if not found:
                last -= 1  # queued, not durable yet
                continue
            if found[0].partition_sequence < ps.watermark:
                return last
            last -= 1
        return None

    def stream_partition_key(self, partition_id: int, stream_id: bytes) -> bytes | None:
        ps = self.partitions[partition_id]
        bucket = self.buckets[partition_id % self.bucket_count]
        with bucket.lock:
            tip = bucket._stream_tip(ps, stream_id)
        return None if tip is None else tip[1]

    # ----------------------------------------------------------------------- statistics
    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            partitions=self.partition_count,
            buckets=self.bucket_count,
            segment_size_bytes=self.segment_size_bytes,
            sealed_segments=sum(len(b.sealed) for b in self.buckets),
            active_events=sum(b.active.event_count for b in self.buckets),
            active_index_bytes=sum(b.active.memory_bytes() for b in self.buckets),
            pending_bytes=sum(b.pending_bytes for b in self.buckets),
            flushes=sum(b.flushes for b in self.buckets),
            bytes_written=sum(b.bytes_written for b in self.buckets),
            write_failures=sum(b.write_failures for b in self.buckets),
            torn_tail_cuts=sum(b.torn_tail_cuts for b in self.buckets),
            stream_cache_entries=sum(len(p.streams) for p in self.partitions),
            stream_cache_bytes=sum(len(p.streams) for p in self.partitions) * STREAM_TIP_BYTES,
            stream_cache_max_entries=sum(p.stream_cache_limit for p in self.partitions),
            stream_cache_hits=sum(p.cache_hits for p in self.partitions),
            stream_cache_misses=sum(p.cache_misses for p in self.partitions),
            stream_cache_evictions=sum(p.cache_evictions for p in self.partitions),
            cache=self.cache.statistics(),
        )
