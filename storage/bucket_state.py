"""The state every part of a bucket shares: its files, queues, segments and statistics.

A bucket is built in layers, each a module of its own, each using only the layers below it:
``bucket_state`` (this: the fields) < ``bucket_metadata`` (replication.json, the stream filter)
< ``bucket_reads`` (lookups and reads) < ``bucket_recovery`` (opening) < ``write_queue``
(appends: positions assigned, records queued) < ``group_commit`` (flush, failure, sealing,
checkpoints) < ``bucket.Bucket``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from .active_index import ActiveIndex
from .errors import (
    WriteFailed,
)
from .hashing import Bloom
from .partition_state import PartitionState
from .segment import (
    SEGMENT_HEADER_SIZE,
    OpenIndexes,
    SealedSegment,
    segment_dir_name,
)
from .transaction import Ticket, Unit

if TYPE_CHECKING:
    from .cache import BlockCache
    from .disk import Disk, DiskFile

log = logging.getLogger("sierradb.storage")


class BucketState:
    """The fields of one bucket (see ``bucket.py`` for the whole)."""

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
        # Held while a checkpoint is written and while a seal runs: a checkpoint may be written
        # by another thread than the flushes' (group_commit.checkpoint_if_due).
        self._checkpoint_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self.pending: list[Unit] = []
        self.pending_bytes = 0
        self.inflight: list[Unit] = []
        self.dropped: list[Ticket] = []  # tickets of queued units a discard removed
        self._unapplied = False  # phase 1 wrote batches that phase 2 has not indexed yet
        self.sealed: list[SealedSegment] = []
        # Sealed segments whose index files are not written yet (group_commit: sealing).
        self.unsealed: list[SealedSegment] = []
        self.active: ActiveIndex
        self.active_id = 0
        self.file: DiskFile = None  # type: ignore[assignment]  # opened by recovery, before use
        self.write_offset = SEGMENT_HEADER_SIZE
        # The data file's length: zeros from write_offset on (group_commit: preallocation).
        self.allocated_end = SEGMENT_HEADER_SIZE
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

    def seg_dir(self, segment_id: int) -> str:
        return os.path.join(self.dir, "segments", segment_dir_name(segment_id))

    def _check_writable(self) -> None:
        if self.broken is not None:
            raise WriteFailed(
                f"bucket {self.bucket_id} could not roll back a failed write ({self.broken}); "
                "restart the node"
            )
