"""The partition leader: the one place where a partition's appends are sequenced.

Theory of operation. ``submit`` runs synchronously in the caller's task: it asks the storage
engine to check expected versions, assign the partition sequence and stream versions, and queue
the records, then kicks the bucket writer, all without an await in between, so no cancellation
can separate a sequence from its write (cluster-safety S6). The caller then awaits the ticket;
cancelling that wait (a client that disconnects or times out) never cancels the write.

A write that fails after its sequence was assigned is never acknowledged, and the leader steps
down: it refuses appends (TRYAGAIN) until it has durably moved to a new term, so the positions the
engine hands out again are written under a term no one has seen before.

Idempotency: an append whose client-supplied EVENT_ID the partition already holds (durable or
still queued) is answered with the stored position once that entry is visible, never appended
twice; the same id with other content is refused with DUPLICATE.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from sierradb.storage import Event, NewEvent, Store, Ticket

from .errors import NodeError, duplicate_event_id
from .visibility import WatermarkBoard

if TYPE_CHECKING:
    from .bucket_writer import BucketWriter

log = logging.getLogger("sierradb.node")


class PartitionLeader:
    def __init__(
        self,
        store: Store,
        partition_id: int,
        writer: BucketWriter,
        board: WatermarkBoard,
        term: int,
    ) -> None:
        self.store = store
        self.partition_id = partition_id
        self.writer = writer
        self.board = board
        self.term = term
        self.stepping_down = False

    # ------------------------------------------------------------------------- appends
    def submit(self, partition_key: bytes, transaction_id: bytes, events: list[NewEvent]) -> Ticket:
        """Sequence and queue one transaction (synchronous: no checkpoint inside)."""
        if self.stepping_down:
            raise NodeError("TRYAGAIN", "the partition is recovering from a write failure")
        ticket = self.store.append_leader(
            self.partition_id, partition_key, transaction_id, events, self.term
        )
        ticket.waiter = trio.Event()
        self.writer.kick()
        return ticket

    @staticmethod
    async def wait(ticket: Ticket) -> Ticket:
        """Wait until the transaction is durable and visible; raise its error if it failed."""
        await ticket.waiter.wait()  # type: ignore[union-attr]
        if ticket.error is not None:
            raise ticket.error
        return ticket

    def find_duplicates(self, event_ids: list[bytes]) -> list[tuple[Event, bool] | None]:
        find = self.store.find_event
        return [find(self.partition_id, eid) for eid in event_ids]

    async def wait_visible(self, event: Event) -> None:
        """Wait until a stored entry is confirmed; TRYAGAIN if it vanished (its write failed)."""
        p = self.partition_id
        store = self.store
        while True:
            seen = self.board.version
            if store.watermark(p) > event.partition_sequence:
                return
            found = store.find_event(p, event.event_id)
            if found is None or found[0].partition_sequence != event.partition_sequence:
                raise NodeError("TRYAGAIN", "an earlier attempt with this event id failed; retry")
            await self.board.wait_for_change(seen)

    # ------------------------------------------------------------------------ failures
    def on_write_failure(self, nursery: trio.Nursery) -> None:
        if not self.stepping_down:
            self.stepping_down = True
            nursery.start_soon(self._start_new_term)

    async def _start_new_term(self) -> None:
        new_term = self.term + 1
        while True:
            try:
                await trio.to_thread.run_sync(
                    self.store.set_promise, self.partition_id, new_term, 0, 0
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


def same_content(stored: Event, stream_id: bytes, event_name: bytes, payload: bytes) -> bool:
    return (
        stored.stream_id == stream_id
        and stored.event_name == event_name
        and stored.payload == payload
    )


def check_duplicate(
    found: tuple[Event, bool] | None, stream_id: bytes, event_name: bytes, payload: bytes
) -> Event | None:
    """The stored event a retry matches, None if the id is new; DUPLICATE on a conflict."""
    if found is None:
        return None
    if not same_content(found[0], stream_id, event_name, payload):
        raise duplicate_event_id()
    return found[0]
