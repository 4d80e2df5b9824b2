"""What callers hand to the write path, and what they get back.

A ``Ticket`` is returned at once by every append call, with the positions assigned; it is
completed (``done``, or ``error``) by the bucket's flush that writes it. The caller decides how to
wait (the node waits on a trio event; tests and benchmarks call ``flush`` directly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# Expected stream versions besides an exact number (the version of the stream's last event).
ANY = -1
EXISTS = -2
EMPTY = -3


@dataclass(slots=True)
class NewEvent:
    event_id: bytes
    stream_id: bytes
    event_name: bytes
    timestamp_ms: int
    metadata: bytes = b""
    payload: bytes = b""
    expected_version: int = ANY


class Ticket:
    """The outcome of one append call: positions now, durability after a flush."""

    __slots__ = (
        "partition_id",
        "first_sequence",
        "last_sequence",
        "versions",
        "term",
        "done",
        "error",
        "waiter",
    )

    def __init__(
        self,
        partition_id: int,
        first_sequence: int,
        last_sequence: int,
        versions: list[int],
        term: int,
    ) -> None:
        self.partition_id = partition_id
        self.first_sequence = first_sequence
        self.last_sequence = last_sequence
        self.versions = versions
        self.term = term
        self.done = False
        self.error: BaseException | None = None
        # Free for the caller (the node keeps its wake-up event here).
        self.waiter: object = None

    def __repr__(self) -> str:
        state = "done" if self.done else ("failed" if self.error else "pending")
        return (
            f"Ticket(p={self.partition_id}, seq={self.first_sequence}..{self.last_sequence}, "
            f"term={self.term}, {state})"
        )


class Unit(NamedTuple):
    """One atomic unit waiting in a bucket's queue: its records and what to index.

    A tuple, so that queueing one costs no Python-level constructor (one per append)."""

    ticket: Ticket
    partition_id: int
    data: bytes
    # (offset within data, sequence, version, stream id, partition key, event id)
    entries: list[tuple[int, int, int, bytes, bytes, bytes]]
    discard_from: int | None
    last_term: int
