"""Commands and replies of the client protocol, without I/O.

Each command is built as a `Request`: its arguments and the function that turns its reply into a
typed value. The synchronous and asyncio clients only send the arguments and call the parser, so
both speak exactly the same protocol.

Replies are accepted in every form the server may use: RESP3 maps or RESP2 flat key/value arrays,
RESP3 booleans or RESP2 integers, simple or bulk strings (both arrive as bytes).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from .identifiers import new_event_id_text, partition_key_for_stream
from .types import (
    AppendedEvent,
    AppendResult,
    Event,
    Expected,
    ExpectedVersion,
    MultiAppendResult,
    NewEvent,
    ScanPage,
)

T = TypeVar("T")
Arg = bytes | str | int
Partition = int | uuid.UUID
"""A partition id (0..partitions-1) or a partition key (its partition is the key's hash)."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Request(Generic[T]):
    args: tuple[Arg, ...]
    parse: Callable[[Any], T]


# ----------------------------------------------------------------------------- values
def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def as_uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(text(value))


def as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def as_map(value: Any) -> dict[str, Any]:
    """A RESP3 map, or a RESP2 flat array of key, value, as a dict with `str` keys."""
    if isinstance(value, dict):
        return {text(k): v for k, v in value.items()}
    if isinstance(value, list) and len(value) % 2 == 0:
        return {text(k): v for k, v in zip(value[::2], value[1::2], strict=True)}
    raise ValueError(f"expected a map reply, got {value!r}")


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware datetimes")
    return (moment - EPOCH) // timedelta(milliseconds=1)


def expected_arg(expected: Expected) -> str:
    if isinstance(expected, ExpectedVersion):
        return expected.value
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise ValueError(f"an expected version is an ExpectedVersion or an int >= 0: {expected!r}")
    return str(expected)


@functools.lru_cache(maxsize=1024)
def _key_text(partition_key: uuid.UUID) -> str:
    """A partition key as text (cached: an application writes under one key, every time)."""
    return str(partition_key)


def partition_arg(partition: Partition) -> str:
    return str(partition) if isinstance(partition, uuid.UUID) else str(int(partition))


def _add_event_options(
    args: list[Arg],
    event_id: str,
    expected: Expected,
    timestamp: datetime | None,
    payload: bytes,
    metadata: bytes,
) -> None:
    """Append one event's options to `args` (every append and multi-append goes through here:
    kept to plain list appends)."""
    args += ("EVENT_ID", event_id)
    if expected is not ExpectedVersion.ANY:
        if type(expected) is int and expected >= 0:
            args += ("EXPECTED_VERSION", str(expected))
        else:
            args += ("EXPECTED_VERSION", expected_arg(expected))
    if timestamp is not None:
        args += ("TIMESTAMP", to_ms(timestamp))
    if payload:
        args += ("PAYLOAD", payload)
    if metadata:
        args += ("METADATA", metadata)


# --------------------------------------------------------------------------- replies
def parse_event(value: Any) -> Event:
    m = as_map(value)
    return Event(
        event_id=as_uuid(m["event_id"]),
        partition_key=as_uuid(m["partition_key"]),
        partition_id=int(m["partition_id"]),
        transaction_id=as_uuid(m["transaction_id"]),
        partition_sequence=int(m["partition_sequence"]),
        stream_version=int(m["stream_version"]),
        timestamp=from_ms(int(m["timestamp"])),
        stream_id=text(m["stream_id"]),
        event_name=text(m["event_name"]),
        metadata=as_bytes(m["metadata"]),
        payload=as_bytes(m["payload"]),
    )


def parse_append(value: Any) -> AppendResult:
    m = as_map(value)
    return AppendResult(
        event_id=as_uuid(m["event_id"]),
        partition_key=as_uuid(m["partition_key"]),
        partition_id=int(m["partition_id"]),
        partition_sequence=int(m["partition_sequence"]),
        stream_version=int(m["stream_version"]),
        timestamp=from_ms(int(m["timestamp"])),
    )


def parse_multi_append(value: Any) -> MultiAppendResult:
    m = as_map(value)
    events = []
    for item in m["events"]:
        e = as_map(item)
        events.append(
            AppendedEvent(
                event_id=as_uuid(e["event_id"]),
                stream_id=text(e["stream_id"]),
                stream_version=int(e["stream_version"]),
                timestamp=from_ms(int(e["timestamp"])),
            )
        )
    return MultiAppendResult(
        partition_key=as_uuid(m["partition_key"]),
        partition_id=int(m["partition_id"]),
        first_partition_sequence=int(m["first_partition_sequence"]),
        last_partition_sequence=int(m["last_partition_sequence"]),
        events=tuple(events),
    )


def parse_multi_append_positions(value: Any) -> tuple[int, list[int]]:
    """Only where a multi-append's events went: the first partition sequence and each event's
    stream version, in request order (for callers that need no more than that, at a fraction
    of the cost of `parse_multi_append`'s UUIDs, datetimes and dataclasses)."""
    if isinstance(value, dict) and b"events" in value:  # RESP3, as hiredis gives it
        return int(value[b"first_partition_sequence"]), [
            int(e[b"stream_version"]) for e in value[b"events"]
        ]
    m = as_map(value)
    return int(m["first_partition_sequence"]), [
        int(as_map(e)["stream_version"]) for e in m["events"]
    ]


def parse_scan(value: Any) -> ScanPage:
    m = as_map(value)
    return ScanPage(
        events=tuple(parse_event(e) for e in m["events"]), has_more=bool(int(m["has_more"]))
    )


def parse_optional_event(value: Any) -> Event | None:
    return None if value is None else parse_event(value)


def parse_optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_ok(value: Any) -> None:
    if text(value) != "OK":
        raise ValueError(f"expected OK, got {value!r}")


# -------------------------------------------------------------------------- commands
def append(
    stream_id: str,
    event_name: str,
    payload: bytes = b"",
    *,
    metadata: bytes = b"",
    expected_version: Expected = ExpectedVersion.ANY,
    partition_key: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    timestamp: datetime | None = None,
) -> Request[AppendResult]:
    key = partition_key or partition_key_for_stream(stream_id)
    args: list[Arg] = ["EAPPEND", stream_id, event_name]
    if partition_key is not None:
        args += ["PARTITION_KEY", str(partition_key)]
    _add_event_options(
        args,
        str(event_id) if event_id is not None else new_event_id_text(key),
        expected_version,
        timestamp,
        payload,
        metadata,
    )
    return Request(tuple(args), parse_append)


def multi_append(
    partition_key: uuid.UUID, events: Sequence[NewEvent]
) -> Request[MultiAppendResult]:
    return Request(multi_append_args(partition_key, events), parse_multi_append)


def multi_append_args(partition_key: uuid.UUID, events: Sequence[NewEvent]) -> tuple[Arg, ...]:
    if not events:
        raise ValueError("a multi-append needs at least one event")
    args: list[Arg] = ["EMAPPEND", _key_text(partition_key)]
    for ev in events:
        args += (ev.stream_id, ev.event_name)
        _add_event_options(
            args,
            str(ev.event_id) if ev.event_id is not None else new_event_id_text(partition_key),
            ev.expected_version,
            ev.timestamp,
            ev.payload,
            ev.metadata,
        )
    return tuple(args)


def get(event_id: uuid.UUID) -> Request[Event | None]:
    return Request(("EGET", str(event_id)), parse_optional_event)


def _range(start: int, end: int | None) -> tuple[Arg, Arg]:
    if start < 0 or (end is not None and end < 0):
        raise ValueError("positions are >= 0")
    return start, "+" if end is None else end


def scan_stream(
    stream_id: str,
    start: int = 0,
    end: int | None = None,
    *,
    count: int = DEFAULT_PAGE_SIZE,
    partition_key: uuid.UUID | None = None,
) -> Request[ScanPage]:
    args: list[Arg] = ["ESCAN", stream_id, *_range(start, end)]
    if partition_key is not None:
        args += ["PARTITION_KEY", str(partition_key)]
    args += ["COUNT", count]
    return Request(tuple(args), parse_scan)


def stream_version(stream_id: str, partition_key: uuid.UUID | None = None) -> Request[int | None]:
    args: list[Arg] = ["ESVER", stream_id]
    if partition_key is not None:
        args += ["PARTITION_KEY", str(partition_key)]
    return Request(tuple(args), parse_optional_int)


def scan_partition(
    partition: Partition, start: int = 0, end: int | None = None, *, count: int = DEFAULT_PAGE_SIZE
) -> Request[ScanPage]:
    args = ("EPSCAN", partition_arg(partition), *_range(start, end), "COUNT", count)
    return Request(args, parse_scan)


def partition_sequence(partition: Partition) -> Request[int | None]:
    return Request(("EPSEQ", partition_arg(partition)), parse_optional_int)


def hello() -> Request[dict[str, Any]]:
    """HELLO without a version: the server's facts (num_partitions, ...), protocol unchanged."""
    return Request(("HELLO",), as_map)


def ping() -> Request[None]:
    return Request(("PING",), lambda value: None)


# -------------------------------------------------------------------- scan iterators
class Pager:
    """The requests of a scan that pages by itself: each page starts after the last event of
    the previous one, until a page says nothing more is in the range."""

    def __init__(
        self, make: Callable[[int], Request[ScanPage]], start: int, position: Callable[[Event], int]
    ) -> None:
        self._make = make
        self._next = start
        self._position = position
        self.done = False

    def request(self) -> Request[ScanPage]:
        return self._make(self._next)

    def feed(self, page: ScanPage) -> tuple[Event, ...]:
        if page.events:
            self._next = self._position(page.events[-1]) + 1
        if not page.has_more or not page.events:
            self.done = True
        return page.events


def stream_pager(
    stream_id: str, start: int, end: int | None, page_size: int, partition_key: uuid.UUID | None
) -> Pager:
    _check_page_size(page_size)
    return Pager(
        lambda s: scan_stream(stream_id, s, end, count=page_size, partition_key=partition_key),
        start,
        lambda e: e.stream_version,
    )


def partition_pager(partition: Partition, start: int, end: int | None, page_size: int) -> Pager:
    _check_page_size(page_size)
    return Pager(
        lambda s: scan_partition(partition, s, end, count=page_size),
        start,
        lambda e: e.partition_sequence,
    )


def _check_page_size(page_size: int) -> None:
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
