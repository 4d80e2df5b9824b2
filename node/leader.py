"""The local leader: the role of a partition whose appends this node sequences.

Theory of operation. ``submit`` runs synchronously in the caller's task. It first decides
idempotency: a request whose client-supplied EVENT_IDs the partition already holds (durable or
still queued, so retries racing the group commit are caught) is answered with the stored
positions once those are visible, never appended twice; the same ids with other content are
refused with DUPLICATE. Otherwise it asks the storage engine to check expected versions, assign
the partition sequence and stream versions, and queue the records, then kicks the bucket writer,
all without an await in between, so no cancellation can separate a sequence from its write
(cluster-safety S6). The returned waiter parks until the confirmer has moved the partition's
watermark past the transaction; cancelling it (a client that disconnects or times out) never
cancels the write.

Terms. Every start of the node is a new term for each partition it leads: ``start`` makes the
promise (term, this node, its incarnation) durable before the first append, so positions handed
out again after a crash are written under a term no earlier record carries. A write that fails
after its sequence was assigned is never acknowledged, and the leader steps down: it refuses
appends (TRYAGAIN) until it has durably moved to a new term.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from sierradb.storage import Event, NewEvent, Promise, Store, Ticket

from .append import AppendOutcome, AppendRequest, Confirmation, Outcome, Waiter
from .errors import NodeError, duplicate_event_id
from .visibility import WatermarkBoard

if TYPE_CHECKING:
    from .bucket_writer import BucketWriter

log = logging.getLogger("sierradb.node")


class LocalLeader:
    def __init__(
        self,
        store: Store,
        partition_id: int,
        writer: BucketWriter,
        board: WatermarkBoard,
        term: int,
        node_index: int,
        incarnation: int,
    ) -> None:
        self.store = store
        self.partition_id = partition_id
        self.writer = writer
        self.board = board
        self.term = term
        self.node_index = node_index
        self.incarnation = incarnation
        self.stepping_down = False

    @classmethod
    def start(
        cls,
        store: Store,
        writers: list[BucketWriter],
        board: WatermarkBoard,
        node_index: int,
        incarnation: int,
    ) -> list[LocalLeader]:
        """Lead every partition (a single node): a new durable term each, everything durable
        confirmed (one replica), in one metadata write per bucket."""
        promises = {}
        for p in range(store.partition_count):
            last = store.last_entry(p)
            term = max(store.promise(p).term, last[0] if last else 0) + 1
            promises[p] = Promise(term, node_index, incarnation)
        store.set_promises(promises)
        leaders = []
        for p in range(store.partition_count):
            store.set_watermark(p, store.durable_next(p))
            writer = writers[store.bucket_of(p)]
            leaders.append(cls(store, p, writer, board, promises[p].term, node_index, incarnation))
        return leaders

    # ------------------------------------------------------------------------- appends
    def submit(self, request: AppendRequest) -> Waiter:
        if any(request.supplied_ids):
            stored = stored_events(self.store, request)
            if stored is not None:
                return self._replay(stored)
        if self.stepping_down:
            raise NodeError("TRYAGAIN", "the partition is recovering from a write failure")
        ticket = self.store.append_leader(
            self.partition_id, request.partition_key, request.transaction_id, request.events,
            self.term,
        )  # fmt: skip
        self.writer.kick()
        events = request.events
        timestamps = (
            (events[0].timestamp_ms,)
            if len(events) == 1
            else tuple([e.timestamp_ms for e in events])
        )

        return LocalConfirmation(self, ticket, timestamps)

    async def _wait_confirmed(self, ticket: Ticket) -> None:
        p, last = self.partition_id, ticket.last_sequence
        while True:
            if ticket.error is not None:
                raise ticket.error
            if self.store.watermark(p) > last:
                return
            await self.board.wait_past(p, last)

    def _replay(self, stored: list[Event]) -> Waiter:
        async def replayed() -> AppendOutcome:
            await self._wait_visible(stored[-1])
            return AppendOutcome(
                stored[0].partition_sequence,
                tuple(e.stream_version for e in stored),
                tuple(e.timestamp_ms for e in stored),
            )

        return replayed

    async def _wait_visible(self, event: Event) -> None:
        """Wait until a stored entry is confirmed; TRYAGAIN if it vanished (its write failed)."""
        p, store = self.partition_id, self.store
        while True:
            if store.watermark(p) > event.partition_sequence:
                return
            found = store.find_event(p, event.event_id)
            if found is None or found[0].partition_sequence != event.partition_sequence:
                raise NodeError("TRYAGAIN", "an earlier attempt with this event id failed; retry")
            await self.board.wait_past(p, event.partition_sequence)

    # ------------------------------------------------------------------------ failures
    def on_write_failure(self, nursery: trio.Nursery) -> None:
        if not self.stepping_down:
            self.stepping_down = True
            nursery.start_soon(self._start_new_term)
        self.board.wake_partition(self.partition_id)  # its waiters see their failed tickets

    async def _start_new_term(self) -> None:
        new_term = self.term + 1
        while True:
            try:
                await trio.to_thread.run_sync(
                    self.store.set_promise,
                    self.partition_id,
                    new_term,
                    self.node_index,
                    self.incarnation,
                )
                break
            except OSError as e:
                log.error(
                    "partition %d: cannot persist term %d: %s", self.partition_id, new_term, e
                )
                await trio.sleep(1.0)
        self.term = new_term
        self.stepping_down = False
        log.warning("partition %d: new term %d after a write failure", self.partition_id, new_term)


class LocalConfirmation(Confirmation):
    """A fresh append's waiter: awaited, or calling back once the watermark passed its
    transaction or its write failed. Between watermark moves it sits in the board's queue
    for its partition (``set`` is how the board wakes it), so no task waits for it."""

    __slots__ = ("_callback", "leader", "ticket", "timestamps")

    def __init__(self, leader: LocalLeader, ticket: Ticket, timestamps: tuple[int, ...]) -> None:
        self.leader = leader
        self.ticket = ticket
        self.timestamps = timestamps
        self._callback: Callable[[Outcome], None] | None = None

    async def __call__(self) -> AppendOutcome:
        await self.leader._wait_confirmed(self.ticket)
        return self._outcome()

    def _outcome(self) -> AppendOutcome:
        ticket = self.ticket
        return AppendOutcome(ticket.first_sequence, tuple(ticket.versions), self.timestamps)

    def when_done(self, callback: Callable[[Outcome], None]) -> None:
        assert self._callback is None, "a confirmation calls back once"
        self._callback = callback
        self.set()

    def set(self) -> None:
        """Report the outcome if it is known, else wait for the next move of the watermark
        (the board calls this on a move past the transaction, or on a write failure)."""
        callback = self._callback
        assert callback is not None
        ticket, leader = self.ticket, self.leader
        if ticket.error is not None:
            callback(ticket.error)
        elif leader.store.watermark(leader.partition_id) > ticket.last_sequence:
            callback(self._outcome())
        else:
            leader.board.call_past(leader.partition_id, ticket.last_sequence, self)


def stored_events(store: Store, request: AppendRequest) -> list[Event] | None:
    """The stored events an append retries, None if its ids are new; DUPLICATE if they are
    taken by other events (or by another shape of transaction). Decided by the leader only,
    against its whole log, queued entries included (cluster-safety S9)."""
    p = request.partition_id
    supplied = [e for e, given in zip(request.events, request.supplied_ids, strict=True) if given]
    found = [store.find_event(p, e.event_id) for e in supplied]
    if all(f is None for f in found):
        return None
    if not request.multi:
        (stored,) = found
        assert stored is not None
        _check_content(stored[0], request.events[0])
        return [stored[0]]
    # EMAPPEND: a retry must repeat one stored transaction exactly.
    if len(supplied) != len(request.events) or any(f is None for f in found):
        raise duplicate_event_id()
    events = [f[0] for f in found if f is not None]
    txn = events[0].transaction_id
    seqs = [e.partition_sequence for e in events]
    if (
        any(e.transaction_id != txn for e in events)
        or seqs != list(range(seqs[0], seqs[0] + len(seqs)))
        or not events[-1].txn_last
        or (seqs[0] > 0 and len(events) == 1 and not events[0].txn_last)
    ):
        raise duplicate_event_id()
    for new, old in zip(request.events, events, strict=True):
        _check_content(old, new)
    return events


def _check_content(stored: Event, new: NewEvent) -> None:
    """A retry carries the same stream, name and payload as the stored event, or is refused."""
    if (
        stored.stream_id != new.stream_id
        or stored.event_name != new.event_name
        or stored.payload != new.payload
    ):
        raise duplicate_event_id()
