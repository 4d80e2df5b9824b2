"""Typed values the client sends and returns (frozen dataclasses, `uuid.UUID`, `datetime`)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime


class ExpectedVersion(enum.Enum):
    """What an append expects of its stream, besides an exact version (an `int`: the version of
    the stream's last event, so the new event gets that number plus one)."""

    ANY = "any"
    """No check (the default)."""
    EXISTS = "exists"
    """The stream has at least one event."""
    EMPTY = "empty"
    """The stream has no event: the append creates it."""


Expected = int | ExpectedVersion


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event of a multi-append (`multi_append`); every event gets a client-made id unless
    one is given, so resending the request can never store it twice."""

    stream_id: str
    event_name: str
    payload: bytes = b""
    metadata: bytes = b""
    expected_version: Expected = ExpectedVersion.ANY
    event_id: uuid.UUID | None = None
    timestamp: datetime | None = None  # None: the server's clock


@dataclass(frozen=True, slots=True)
class AppendResult:
    event_id: uuid.UUID
    partition_key: uuid.UUID
    partition_id: int
    partition_sequence: int
    stream_version: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class AppendedEvent:
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class MultiAppendResult:
    partition_key: uuid.UUID
    partition_id: int
    first_partition_sequence: int
    last_partition_sequence: int
    events: tuple[AppendedEvent, ...]  # one per event, in request order


@dataclass(frozen=True, slots=True)
class Event:
    event_id: uuid.UUID
    partition_key: uuid.UUID
    partition_id: int
    transaction_id: uuid.UUID
    partition_sequence: int
    stream_version: int
    timestamp: datetime
    stream_id: str
    event_name: str
    metadata: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class ScanPage:
    """One reply of a scan: `has_more` is true when more events exist in the range after the
    last one here (the scan iterators ask for the next page by themselves)."""

    events: tuple[Event, ...]
    has_more: bool
