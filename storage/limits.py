"""The storage engine's limits and defaults, each defined once, with its reason.

The node's configuration, its command grammar and its HTTP API import these names (through
``sierradb.storage``) instead of repeating the numbers, so a bound cannot differ between the
layer that enforces it and the layers that check it early for a better error message.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Segments roll over at their size. Tiny ones roll over constantly; huge ones make sealing
# (indexes and bloom filters written in one go) and recovery scans slow (the reference's bounds).
MIN_SEGMENT_SIZE_BYTES = 128 * KIB
MAX_SEGMENT_SIZE_BYTES = 10 * GIB
DEFAULT_SEGMENT_SIZE_BYTES = 256 * MIB

# The reference's limit on a stream id (the record format itself could hold 255 bytes).
MAX_STREAM_ID_BYTES = 64
# The record header holds an event name's length in one byte.
MAX_EVENT_NAME_BYTES = 255

# Streams whose tip (next version, partition key) stays in memory, over all partitions, at about
# STREAM_TIP_BYTES (~200 bytes) each: 100,000 cost ~20 MiB. A stream that is not cached is
# looked up in the indexes (a dict probe in the active segment, a bloom filter then an mmap'd
# table in sealed ones), so a miss costs microseconds, not I/O: a bigger default buys little.
DEFAULT_STREAM_CACHE_ENTRIES = 100_000

# Opening scans at most about this much of each active segment beyond its checkpoint (a
# checkpoint rewrites the active index, so a shorter interval costs more writes; the engine also
# waits for twice the last checkpoint's size, see bucket.py). The node accepts no interval below
# the minimum, where checkpoints would be written after nearly every flush.
DEFAULT_CHECKPOINT_INTERVAL_BYTES = 16 * MIB
MIN_CHECKPOINT_INTERVAL_BYTES = 16 * KIB

# The active segment's data file is allocated (zero-filled, ``posix_fallocate``) this far ahead
# of its writes: a write that grows a file makes its fdatasync commit the file system's journal
# too (the new size), one inside allocated blocks only flushes data. On ext4 here that cut an
# fdatasync from ~270 to ~180 us and its system CPU by ~30% (BENCHMARKS, stop 27). Allocating a
# whole 256 MiB segment up front would reserve 1 GiB of disk per idle node; 8 MiB per bucket costs
# one journal commit per 8 MiB written.
PREALLOCATE_BYTES = 8 * MIB

# The block cache of sealed-segment reads.
DEFAULT_CACHE_CAPACITY_BYTES = 256 * MIB
