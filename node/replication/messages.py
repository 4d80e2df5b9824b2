"""Replication messages between the replicas of one partition.

Entries travel as storage ``Event`` tuples (positions, term and transaction boundary included);
the wire codec turns them into the storage engine's own record bytes, so a follower checks the
CRC of exactly what the leader wrote. Every message names its partition and the sender's term;
a message of a term lower than the receiver's promise is answered with a refusal or dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from sierradb.storage import Event

Position = tuple[int, int]  # (term, sequence) of an entry; (0, -1) for an empty log
EMPTY: Position = (0, -1)


@dataclass(frozen=True, slots=True)
class PromiseRequest:
    """A candidate asks a replica to promise `term` to it (and no one else)."""

    partition: int
    term: int
    candidate: int
    incarnation: int
    last: Position
    handover: bool = False  # the current leader asked this candidate to take over


@dataclass(frozen=True, slots=True)
class PromiseReply:
    partition: int
    term: int  # the term asked for
    voter: int
    granted: bool
    promised: int  # the voter's promised term after the request
    last: Position  # the voter's last accepted entry (sent once that entry is durable)
    watermark: int


@dataclass(slots=True)  # not frozen: one per append (see grammar.py)
class Append:
    """Entries (whole transactions) extending the follower's log after `prev`; with none, a
    heartbeat that still carries the leader's watermark and last position."""

    partition: int
    term: int
    leader: int
    incarnation: int
    prev: Position
    entries: tuple[Event, ...]
    watermark: int


@dataclass(slots=True)  # not frozen: one per append (see grammar.py)
class AppendReply:
    partition: int
    term: int  # the follower's promised term
    follower: int
    ok: bool
    match: int  # ok: the last sequence now known to equal the leader's log
    last: Position  # the follower's last accepted entry
    terms: tuple[Position, ...] = ()  # not ok: (term, first sequence) of its tail, to find
    # the divergence point in one round trip


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """A candidate adopting a longer log asks its source for entries; fenced by the term."""

    partition: int
    term: int
    candidate: int
    start: int
    end: int  # inclusive


@dataclass(frozen=True, slots=True)
class FetchReply:
    partition: int
    term: int
    source: int
    ok: bool  # False: the source promised another term meanwhile
    entries: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Handover:
    """The leader asks a caught-up replica to campaign now (failback, or a graceful stop)."""

    partition: int
    term: int
    leader: int


ReplicationMessage = (
    PromiseRequest | PromiseReply | Append | AppendReply | FetchRequest | FetchReply | Handover
)
