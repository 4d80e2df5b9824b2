"""Client-visible errors: every failure a command can meet, mapped to a coded reply in one table.

Expected conditions inside the node are exceptions (``NodeError`` and the storage tree); the
connection turns them into ``ErrorReply`` values with ``reply_for``. Unexpected exceptions are not
mapped here: they are bugs and stop the process (see ``server.py``).
"""

from __future__ import annotations

from sierradb.storage import (
    CorruptionError,
    DataDirLocked,
    Discarded,
    PartitionKeyMismatch,
    TransactionTooLarge,
    WriteFailed,
    WrongExpectedVersion,
)

from .grammar import CommandError, format_expected_version
from .identifiers import format_uuid
from .resp import ErrorReply


class NodeError(Exception):
    """An expected failure with a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def duplicate_event_id() -> NodeError:
    return NodeError("DUPLICATE", "event id already used by another event")


def partition_unavailable() -> NodeError:
    return NodeError("CLUSTERDOWN", "partition unavailable")


def reply_for(exc: BaseException) -> ErrorReply | None:
    """The error reply for an expected failure, or None if `exc` is not one."""
    if isinstance(exc, (NodeError, CommandError)):
        return ErrorReply(exc.code, exc.message)
    if isinstance(exc, WrongExpectedVersion):
        current = "empty" if exc.current is None else str(exc.current)
        return ErrorReply(
            "WRONGVER",
            f"current stream version is {current} but expected "
            f"{format_expected_version(exc.expected)} for partition key "
            f"{format_uuid(exc.partition_key)} and stream id "
            f"{exc.stream_id.decode('utf-8', 'replace')}",
        )
    if isinstance(exc, PartitionKeyMismatch):
        return ErrorReply(
            "DBOPFAILED",
            "partition key must be the same for all events in a stream: expected "
            f"{format_uuid(exc.expected_key)}, got {format_uuid(exc.got_key)}",
        )
    if isinstance(exc, TransactionTooLarge):
        return ErrorReply("DBOPFAILED", "events exceed the size of a single segment")
    if isinstance(exc, WriteFailed):
        return ErrorReply("WRITEERR", f"{exc}; the append was not written")
    if isinstance(exc, Discarded):
        return ErrorReply("TRYAGAIN", str(exc))
    if isinstance(exc, CorruptionError):
        return ErrorReply("READERR", f"read error: {exc}")
    if isinstance(exc, DataDirLocked):
        return ErrorReply("ERR", str(exc))
    return None
