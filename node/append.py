"""The write path's seam: one append request, built whole where it arrives, and the role of the
partition that executes it.

Theory of operation. A connection parses EAPPEND/EMAPPEND and hands the result to
``build_request``, which fills in everything a retry must repeat exactly: event ids (generated
here unless the client gave them), timestamps and the transaction id, and refuses what no role
would accept (strict versioning, an impossible timestamp, an id of another partition, one id
twice). The request then goes to the partition's *role* (an ``Appender``), in one call:

- the local leader checks idempotency against its whole log, sequences and queues the request
  synchronously (no await between), and returns a waiter that resolves once the transaction is
  confirmed: visible below the watermark;
- a forwarder (with replication) sends the request, as one message, to the partition's leader;
- ``Unavailable`` refuses it with the reason.

Because the origin fills in every id before any role sees the request, a forwarded or internally
retried request is idempotent too (cluster-safety S9d). The connection only parses and formats.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from sierradb.storage import NewEvent

from . import grammar as g
from .errors import NodeError
from .identifiers import new_event_id, new_transaction_id, partition_hash

# Nanosecond timestamps must stay below 2^63 (the reference's limit; reads return ms).
MAX_TIMESTAMP_MS = ((1 << 63) - 1) // 1_000_000


@dataclass(slots=True)
class AppendRequest:
    partition_id: int
    partition_key: bytes
    transaction_id: bytes
    events: list[NewEvent]
    supplied_ids: tuple[bool, ...]  # per event: the client gave its id (an idempotency key)
    multi: bool  # EMAPPEND: one transaction of the given events, and its reply shape


@dataclass(slots=True)
class AppendOutcome:
    """Where a confirmed append's events are (for a retry: where the originals are). Treated
    as immutable; not frozen, as one is built per append (see grammar.py)."""

    first_sequence: int
    versions: tuple[int, ...]
    timestamps_ms: tuple[int, ...]


Waiter = Callable[[], Awaitable[AppendOutcome]]
Outcome = AppendOutcome | BaseException  # what a confirmation reports: the result or the error


class Confirmation:
    """A waiter that can also report by callback (on the event loop), so the connection need
    not keep a task parked per append: ``when_done`` calls back exactly once, with the outcome
    or the error the awaited waiter would have raised."""

    __slots__ = ()

    def when_done(self, callback: Callable[[Outcome], None]) -> None:
        raise NotImplementedError


class Appender(Protocol):
    """A partition's role toward appends."""

    def submit(self, request: AppendRequest) -> Waiter:
        """Take the request now (synchronously: sequencing cannot be separated from its
        write); the returned waiter resolves when it is confirmed, or raises its error."""
        ...


class Unavailable:
    """A partition this node cannot take appends for, and why."""

    def __init__(self, error: NodeError) -> None:
        self.error = error

    def submit(self, request: AppendRequest) -> Waiter:
        raise self.error


def build_request(
    request: g.EAppend | g.EMAppend, partition_count: int, now_ms: int, strict: bool
) -> AppendRequest:
    """The complete append request (ids and timestamps filled in), or a NodeError."""
    key = request.partition_key
    phash = partition_hash(key)
    specs = request.events if isinstance(request, g.EMAppend) else (request,)
    events = []
    supplied = []
    for spec in specs:
        if strict and spec.expected_version in (g.EXPECTED_ANY, g.EXPECTED_EXISTS):
            raise NodeError(
                "INVALIDARG",
                "strict versioning mode rejects EXPECTED_VERSION "
                + g.format_expected_version(spec.expected_version),
            )
        ts = now_ms if spec.timestamp_ms is None else spec.timestamp_ms
        if ts > MAX_TIMESTAMP_MS:
            raise NodeError("DBOPFAILED", "database operation failed: system time is incorrect")
        eid = spec.event_id
        if eid is None:
            eid = new_event_id(phash, now_ms)
        elif partition_hash(eid) != phash:
            raise NodeError("INVALIDARG", "the event id must embed the partition hash")
        supplied.append(spec.event_id is not None)
        events.append(
            NewEvent(
                eid,
                spec.stream_id,
                spec.event_name,
                ts,
                spec.metadata,
                spec.payload,
                spec.expected_version,
            )  # fmt: skip
        )
    if len(events) > 1:
        given = [e.event_id for e, s in zip(events, supplied, strict=True) if s]
        if len(set(given)) != len(given):
            # One id for two events: a retry of this request could never be recognised.
            raise NodeError("DUPLICATE", "event id already used by another event")
    multi = isinstance(request, g.EMAppend)
    return AppendRequest(
        phash % partition_count,  # partition_id(key, partition_count), hash computed once
        key,
        new_transaction_id(len(events) == 1),
        events,
        tuple(supplied),
        multi,
    )
