"""The storage engine's exception tree.

Expected conditions (a version conflict, a full disk, a damaged file) are exceptions from this
tree; a broken invariant is an ``AssertionError`` and stops the process (fail-stop).
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every expected storage failure."""


class DataDirMismatch(StorageError):
    """The data dir was created with other fixed settings (partitions, buckets, segment size)."""


class DataDirLocked(StorageError):
    """Another process holds the data dir."""


class CorruptionError(StorageError):
    """Acknowledged data failed its checksum or does not parse; carries where it was found."""

    def __init__(self, path: str, offset: int, detail: str) -> None:
        super().__init__(f"corrupt data in {path} at offset {offset}: {detail}")
        self.path = path
        self.offset = offset
        self.detail = detail


class WriteFailed(StorageError):
    """A write or fdatasync failed (disk full, I/O error); nothing of that batch is durable."""


class TransactionTooLarge(StorageError):
    """One transaction does not fit in one segment."""


class WrongExpectedVersion(StorageError):
    """An event's expected stream version does not match the stream's current version."""

    def __init__(
        self, stream_id: bytes, partition_key: bytes, current: int | None, expected: int
    ) -> None:
        super().__init__("wrong expected version")
        self.stream_id = stream_id
        self.partition_key = partition_key
        self.current = current
        self.expected = expected


class PartitionKeyMismatch(StorageError):
    """A stream is bound to the partition key of its first event."""

    def __init__(self, stream_id: bytes, expected_key: bytes, got_key: bytes) -> None:
        super().__init__("partition key must be the same for all events in a stream")
        self.stream_id = stream_id
        self.expected_key = expected_key
        self.got_key = got_key


class Discarded(StorageError):
    """A queued entry was dropped by a discard (replace_tail) before it was written."""
