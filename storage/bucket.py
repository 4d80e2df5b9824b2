"""A bucket: the segments of a group of partitions, its write queue, group commit and recovery.

``Bucket`` is assembled from layers, one module each, each using only the ones below it:

- ``bucket_state``: the fields every layer shares (files, queues, segments, statistics);
- ``bucket_metadata``: ``replication.json`` (promises, watermarks, discards) and the sealed
  segments' stream filter;
- ``bucket_reads``: stream tips, partition and stream reads, event id lookups, raw bytes;
- ``bucket_recovery``: opening (checkpoint, tail scan, torn-tail cut, index rebuilds);
- ``write_queue``: appends, which assign positions and queue records in memory;
- ``group_commit``: flushes (write + fdatasync, then indexing), failures, sealing, checkpoints.

Each module's docstring states what its layer guarantees.
"""

from __future__ import annotations

from .bucket_metadata import FILTER_MAGIC, META_FILE, STREAM_FILTER_FILE
from .bucket_recovery import CHECKPOINT_MAGIC, index_scanned
from .group_commit import CHECKPOINT_RATIO, GroupCommit, Written

__all__ = [
    "CHECKPOINT_MAGIC",
    "CHECKPOINT_RATIO",
    "FILTER_MAGIC",
    "META_FILE",
    "STREAM_FILTER_FILE",
    "Bucket",
    "Written",
    "index_scanned",
]


class Bucket(GroupCommit):
    """One bucket of a data dir (see the modules above for each part)."""
