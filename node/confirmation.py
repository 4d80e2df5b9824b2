"""Confirmation: when durable entries become visible.

Theory of operation. The bucket writers report every group commit to the node's confirmer:
the transactions now durable on this node, each with its partition, last sequence and term, and
those whose write failed. The confirmer decides what that means for visibility and moves the
watermarks; client appends and subscriptions wait on the watermarks, never on the writer.

With one replica (``LocalConfirmer``), durable here is confirmed: each partition's watermark
moves to the end of its last durable transaction (transactions complete in order, so the
watermark only ever stops at a transaction boundary). With replication, a quorum confirmer will
count acknowledgements of the leader's current term instead, behind the same call.
"""

from __future__ import annotations

from collections.abc import Callable

from sierradb.storage import Store, Ticket

from .visibility import WatermarkBoard


class LocalConfirmer:
    def __init__(
        self, store: Store, board: WatermarkBoard, on_failure: Callable[[Ticket], None]
    ) -> None:
        self.store = store
        self.board = board
        self.on_failure = on_failure

    def durable(self, tickets: list[Ticket]) -> None:
        """Called on the event loop after each group commit with the tickets it completed."""
        moved: dict[int, int] = {}
        for ticket in tickets:
            if ticket.error is None:
                moved[ticket.partition_id] = ticket.last_sequence + 1
            else:
                self.on_failure(ticket)
        for partition_id, watermark in moved.items():
            self.store.set_watermark(partition_id, watermark)
        self.board.notify(moved.items())
