"""A led partition's append confirmations on a cluster node: awaited, or calling back.

Theory of operation. When this node leads a partition, an append it sequenced (or a retry of one
it holds) is confirmed once the partition's watermark covers its last event, with the entry still
the one it sequenced; the quorum's acknowledgements are what move the watermark. A
``ClusterConfirmation`` decides that the same way whoever asks:

- *awaited* (``await confirmation()``): a task waits for the watermark's moves until decided,
  or until its deadline (TIMEOUT);
- *by callback* (``when_done``): no task at all. Between the watermark's moves the confirmation
  sits in the board's queue for its partition (the board calls ``set`` on a move past it, or when
  the partition's waiters are woken), and in the ``Deadlines`` queue, which the replication
  service's tick drains: one still undecided at its deadline reports TIMEOUT. It calls back
  exactly once; whichever of the two calls ``set`` after that finds nothing to do. A retry of an
  append that is confirmed already calls back at once, inside ``when_done``.

Decisions, in this order: the watermark covers the append and this node still leads in the term
that sequenced it (a leader never replaces its own log in its term), or the entry found at that
position is still ours: the outcome. The watermark covers it but another entry is there:
QUORUMFAILED. The watermark does not cover it yet and the node no longer leads in that term:
QUORUMFAILED (the outcome is unknown; a retry with the same EVENT_ID is safe). Otherwise: not yet.

Client connections and forwarded appends (``ReplicationService``) both take the callback, so a
replicated append costs its leader no task and no cancel scope; on the node that forwarded it,
``forwarded.ForwardedAppend`` does the same from the leader's answer, and shares ``Deadlines``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

from ..append import AppendOutcome, Confirmation, Outcome
from ..errors import NodeError
from .replica import Replica, Role

if TYPE_CHECKING:
    from sierradb.storage import Store

    from ..visibility import WatermarkBoard


class Expiring(Protocol):
    """A callback confirmation as ``Deadlines`` sees it: ``set`` re-checks it, and reports
    TIMEOUT once its current deadline has passed."""

    @property
    def done(self) -> bool: ...

    @property
    def deadline(self) -> float: ...

    def set(self) -> None: ...


class Deadlines:
    """Callback confirmations in deadline order (they share one timeout, so the order they were
    handed over in is their deadlines' order): ``expire`` calls ``set`` on each past the
    deadline it was added with, and forgets those already done at the front. One that starts a
    new deadline is added again; its old entry then only makes it re-check early."""

    def __init__(self) -> None:
        self._queue: deque[tuple[float, Expiring]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, confirmation: Expiring) -> None:
        self._queue.append((confirmation.deadline, confirmation))

    def expire(self, now: float) -> None:
        queue = self._queue
        while queue and (queue[0][1].done or queue[0][0] <= now):
            queue.popleft()[1].set()


class ClusterConfirmation(Confirmation):
    """One led append's confirmation (see the module docstring)."""

    __slots__ = (
        "_callback", "board", "deadline", "deadlines", "done", "event_id", "last", "outcome",
        "partition", "replica", "store", "term",
    )  # fmt: skip

    def __init__(
        self,
        store: Store,
        board: WatermarkBoard,
        deadlines: Deadlines,
        replica: Replica,
        last: int,
        outcome: AppendOutcome,
        event_id: bytes,
        timeout_s: float,
    ) -> None:
        self.store = store
        self.board = board
        self.deadlines = deadlines
        self.replica = replica
        self.partition = replica.config.partition
        self.term = replica.promise.term
        self.last = last
        self.outcome = outcome
        self.event_id = event_id
        self.deadline = trio.current_time() + timeout_s
        self.done = False
        self._callback: Callable[[Outcome], None] | None = None

    def decide(self) -> AppendOutcome | NodeError | None:
        """The outcome, the error, or None while undecided (see the module docstring)."""
        replica, p, last = self.replica, self.partition, self.last
        leads = replica.role is Role.LEADER and replica.promise.term == self.term
        if self.store.watermark(p) > last:
            if leads:
                return self.outcome
            found = self.store.find_event(p, self.event_id)
            if found is not None and found[0].partition_sequence == last:
                return self.outcome
            return NodeError("QUORUMFAILED", "write replication quorum not achieved")
        if not leads:
            return NodeError(
                "QUORUMFAILED",
                "write replication quorum not achieved (the leader stepped down; "
                "outcome unknown, retry with the same EVENT_ID)",
            )
        return None

    async def __call__(self) -> AppendOutcome:
        with trio.move_on_at(self.deadline):
            while True:
                decided = self.decide()
                if isinstance(decided, NodeError):
                    raise decided
                if decided is not None:
                    return decided
                await self.board.wait_past(self.partition, self.last)
        raise write_timeout()

    def when_done(self, callback: Callable[[Outcome], None]) -> None:
        assert self._callback is None and not self.done, "a confirmation calls back once"
        self._callback = callback
        self.deadlines.add(self)
        self.set()

    def set(self) -> None:
        """Report the outcome if decided (TIMEOUT past the deadline), else wait for the next
        move of the watermark past the append. Called by the board and by ``Deadlines``."""
        callback = self._callback
        if callback is None:
            return  # reported already (or awaited, which never registers here)
        decided: Outcome | None = self.decide()
        if decided is None:
            if trio.current_time() < self.deadline:
                self.board.call_past(self.partition, self.last, self)
                return
            decided = write_timeout()
        self._callback = None
        self.done = True
        callback(decided)


def write_timeout() -> NodeError:
    """What a replicated append not decided by its deadline reports (outcome unknown)."""
    return NodeError("TIMEOUT", "write operation timed out")
