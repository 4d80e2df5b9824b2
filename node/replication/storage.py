"""What a replica needs from the storage engine for its partition, and the engine-backed adapter.

A replica changes its log only through ``append`` (entries extending it), ``replace`` (a discard
and its replacements as one atomic unit) and ``save_promise``. Each returns a *token* right away
(the write is queued; nothing is durable yet); the node reports the token back to the replica
with ``Replica.written`` once it is durable, or failed. Reads of confirmed entries (below the
watermark) go straight to the engine. The simulator runs replicas over this same adapter on the
engine's in-memory disk, so what the simulation proves, it proves of the engine too.
"""

from __future__ import annotations

from typing import Protocol

from sierradb.storage import Event, NewEvent, Promise, Store, Ticket


class Token(Protocol):
    """A queued write; done or failed once the node reports it."""


class ReplicaStorage(Protocol):
    partition_id: int

    def watermark(self) -> int: ...
    def set_watermark(self, watermark: int) -> None: ...
    def promise(self) -> Promise: ...
    def save_promise(self, promise: Promise) -> object: ...
    def append(self, events: list[Event]) -> object: ...
    def replace(self, from_sequence: int, events: list[Event]) -> object: ...
    def confirmed(self, start: int, limit: int) -> list[Event]: ...
    def unconfirmed(self) -> list[Event]: ...


class PromiseToken:
    """A promise queued in a ``PromiseWrites``, reported durable like a ticket (the same
    ``partition_id`` and ``error`` fields)."""

    __slots__ = ("partition_id", "error")

    def __init__(self, partition_id: int) -> None:
        self.partition_id = partition_id
        self.error: BaseException | None = None  # never set: a failed promise write stops


class PromiseWrites:
    """The promises a node's replicas make, made durable together: one metadata write (one
    fsync) per bucket for all that were queued since the last one, not one per partition, so a
    failover or a start-up that touches every partition stays cheap (cluster-safety P5).

    A promise that cannot be written stops the node (fail-stop): the replica already acts on
    it in memory, and a node that can neither promise nor step aside would keep the partitions
    it is first in order for leaderless (cluster-safety L1 c); stopped, it is simply down."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._promises: dict[int, Promise] = {}
        self._tokens: list[PromiseToken] = []

    @property
    def pending(self) -> bool:
        return bool(self._tokens)

    def queue(self, partition_id: int, promise: Promise) -> PromiseToken:
        self._promises[partition_id] = promise  # a later promise replaces an earlier one
        token = PromiseToken(partition_id)
        self._tokens.append(token)
        return token

    def take(self) -> tuple[dict[int, Promise], list[PromiseToken]]:
        batch = self._promises, self._tokens
        self._promises, self._tokens = {}, []
        return batch


class StoreStorage:
    """One partition of a real ``Store``: entry writes return the engine's tickets. A promise
    goes to the node's ``PromiseWrites`` if it has one (its token is reported like a ticket),
    else it is durable before ``save_promise`` returns and its token is already done."""

    def __init__(
        self, store: Store, partition_id: int, promises: PromiseWrites | None = None
    ) -> None:
        self.store = store
        self.partition_id = partition_id
        self.promises = promises

    def watermark(self) -> int:
        return self.store.watermark(self.partition_id)

    def set_watermark(self, watermark: int) -> None:
        self.store.set_watermark(self.partition_id, watermark)

    def promise(self) -> Promise:
        return self.store.promise(self.partition_id)

    def save_promise(self, promise: Promise) -> object:
        if self.promises is not None:
            return self.promises.queue(self.partition_id, promise)
        self.store.set_promise(
            self.partition_id, promise.term, promise.candidate, promise.incarnation
        )
        return DONE

    def append(self, events: list[Event]) -> Ticket:
        return self.store.append_replicated(self.partition_id, events)

    def replace(self, from_sequence: int, events: list[Event]) -> Ticket:
        return self.store.replace_tail(self.partition_id, from_sequence, events)

    def confirmed(self, start: int, limit: int) -> list[Event]:
        events, _ = self.store.read_partition(self.partition_id, start, None, limit)
        return events

    def unconfirmed(self) -> list[Event]:
        """The durable entries at and above the watermark (at start: the tail to verify)."""
        store, p = self.store, self.partition_id
        start, end = store.watermark(p), store.durable_next(p)
        if start >= end:
            return []
        bucket = store.buckets[store.bucket_of(p)]
        return bucket.read_partition_events(store.partitions[p], start, end - 1, end - start)


class _Done:
    """The token of a write that was durable when it returned."""


DONE = _Done()


def leader_events(
    partition_id: int,
    partition_key: bytes,
    transaction_id: bytes,
    events: list[NewEvent],
    ticket: Ticket,
) -> list[Event]:
    """The entries a leader's own append queued, as followers receive them."""
    last = len(events) - 1
    return [
        Event(
            e.event_id,
            partition_key,
            partition_id,
            transaction_id,
            ticket.first_sequence + i,
            ticket.versions[i],
            e.timestamp_ms,
            e.stream_id,
            e.event_name,
            e.metadata,
            e.payload,
            ticket.term,
            i == last,
        )  # fmt: skip
        for i, e in enumerate(events)
    ]
