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
from .partition_state import Promise
from .record import Event
from .store import (
    DEFAULT_BUCKETS,
    DEFAULT_PARTITIONS,
    DEFAULT_SEGMENT_SIZE_BYTES,
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
    "DEFAULT_PARTITIONS",
    "DEFAULT_SEGMENT_SIZE_BYTES",
    "DataDirLocked",
    "DataDirMismatch",
    "Discarded",
    "Disk",
    "EMPTY",
    "EXISTS",
    "Event",
    "FileDisk",
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
