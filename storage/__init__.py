"""sierradb.storage: the synchronous storage engine (segments, records, indexes, recovery)."""

from .cache import BLOCK_SIZE_BYTES, BlockCache, CacheStatistics
from .disk import Disk, FileDisk, MemoryDisk
from .errors import (
    CorruptionError,
    DataDirLocked,
    DataDirMismatch,
    Discarded,
    PartitionKeyMismatch,
    StorageError,
    TransactionTooLarge,
    WriteFailed,
    WrongExpectedVersion,
)
from .limits import (
    DEFAULT_CACHE_CAPACITY_BYTES,
    DEFAULT_CHECKPOINT_INTERVAL_BYTES,
    DEFAULT_SEGMENT_SIZE_BYTES,
    DEFAULT_STREAM_CACHE_ENTRIES,
    MAX_EVENT_NAME_BYTES,
    MAX_SEGMENT_SIZE_BYTES,
    MAX_STREAM_ID_BYTES,
    MIN_CHECKPOINT_INTERVAL_BYTES,
    MIN_SEGMENT_SIZE_BYTES,
)
from .partition_state import Promise
from .record import Event
from .store import (
    DEFAULT_BUCKETS,
    DEFAULT_PARTITIONS,
    Store,
    StoreStatistics,
)
from .transaction import ANY, EMPTY, EXISTS, NewEvent, Ticket

__all__ = [
    "ANY",
    "BLOCK_SIZE_BYTES",
    "BlockCache",
    "CacheStatistics",
    "CorruptionError",
    "DEFAULT_BUCKETS",
    "DEFAULT_CACHE_CAPACITY_BYTES",
    "DEFAULT_CHECKPOINT_INTERVAL_BYTES",
    "DEFAULT_PARTITIONS",
    "DEFAULT_SEGMENT_SIZE_BYTES",
    "DEFAULT_STREAM_CACHE_ENTRIES",
    "DataDirLocked",
    "DataDirMismatch",
    "Discarded",
    "Disk",
    "EMPTY",
    "EXISTS",
    "Event",
    "FileDisk",
    "MAX_EVENT_NAME_BYTES",
    "MAX_SEGMENT_SIZE_BYTES",
    "MAX_STREAM_ID_BYTES",
    "MIN_CHECKPOINT_INTERVAL_BYTES",
    "MIN_SEGMENT_SIZE_BYTES",
    "MemoryDisk",
    "NewEvent",
    "PartitionKeyMismatch",
    "Promise",
    "StorageError",
    "Store",
    "StoreStatistics",
    "Ticket",
    "TransactionTooLarge",
    "WriteFailed",
    "WrongExpectedVersion",
]
