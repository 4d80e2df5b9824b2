"""An append forwarded to its partition's leader, confirmed by callback on the origin node.

Theory of operation. ``ForwardedAppend`` is the origin's side of one forwarded append, a state
machine driven by the leader's answer, the watermark board and the deadline queue; it parks no
task. It sends the request when made (a pipeline of appends goes out together), then:

- ``WAITING_REPLY``: the leader's ``ForwardReply`` comes to ``on_reply`` (the request table calls
  it). An outcome moves on to ``WAITING_VISIBLE``. ``NOTLEADER`` naming another node is retried
  there once (a fresh request, a fresh deadline); any other answer, or a second ``NOTLEADER``,
  is the error the client gets (``TRYAGAIN`` while the partition changes leader).
- ``WAITING_VISIBLE``: read-your-writes. Where this node holds a replica of the partition, the
  append is reported once the local watermark covers it (the board calls ``set`` when it moves
  past); elsewhere at once.
- Each waiting state has a deadline (the write timeout from when it began): ``Deadlines`` calls
  ``set`` when it passes, which reports TIMEOUT (the outcome is unknown; a retry with the same
  EVENT_ID is safe) and forgets the request.

It reports exactly once: to the ``when_done`` callback, or to the task awaiting it, or, if it
finishes before either asks, to whichever asks first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..append import AppendOutcome, AppendRequest, Confirmation, Outcome
from ..errors import NodeError
from .codec import ForwardAppend, ForwardReply
from .confirmations import Deadlines, write_timeout

if TYPE_CHECKING:
    from sierradb.storage import Store

    from ..visibility import WatermarkBoard


class Forwarder(Protocol):
    """What a forwarded append needs of the replication service."""

    node_index: int
    write_timeout_s: float
    deadlines: Deadlines

    @property
    def store(self) -> Store: ...

    @property
    def board(self) -> WatermarkBoard: ...

    @property
    def replicas(self) -> Mapping[int, Any]: ...

    def next_request_id(self) -> int: ...

    def send_request(
        self, leader: int, message: ForwardAppend, on_reply: Callable[[Any], None]
    ) -> object: ...

    def forget_request(self, request_id: int) -> None: ...

    def hint_leader(self, partition: int, node: int) -> None: ...


class Phase(Enum):
    WAITING_REPLY = "waiting for the leader's reply"
    WAITING_VISIBLE = "waiting for the local watermark"
    DONE = "done"


class ForwardedAppend(Confirmation):
    __slots__ = (
        "_callback", "_result", "deadline", "leader", "outcome", "partition", "phase",
        "request", "request_id", "retried", "service",
    )  # fmt: skip

    def __init__(
        self, service: Forwarder, partition: int, request: AppendRequest, leader: int
    ) -> None:
        self.service = service
        self.partition = partition
        self.request = request
        self.leader = leader
        self.retried = False
        self.phase = Phase.WAITING_REPLY
        self.outcome: AppendOutcome | None = None
        self.request_id = 0
        self.deadline = 0.0
        self._callback: Callable[[Outcome], None] | None = None
        self._result: Outcome | None = None
        self._send()  # raises TRYAGAIN if the leader cannot be reached

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def _send(self) -> None:
        service = self.service
        self.request_id = service.next_request_id()
        service.send_request(
            self.leader, ForwardAppend(self.request_id, self.request), on_reply=self.on_reply
        )
        self._restart_deadline()

    def _restart_deadline(self) -> None:
        self.deadline = trio.current_time() + self.service.write_timeout_s
        self.service.deadlines.add(self)

    # ------------------------------------------------------------------ events
    def on_reply(self, reply: object) -> None:
        """The leader answered this request (called by the service's request table)."""
        if self.phase is not Phase.WAITING_REPLY:
            return
        assert isinstance(reply, ForwardReply)
        service = self.service
        if reply.outcome is not None:
            self.outcome = reply.outcome
            self.phase = Phase.WAITING_VISIBLE
            self._restart_deadline()
            self.set()
            return
        if reply.code != "NOTLEADER":
            self._finish(NodeError(reply.code, reply.message))
            return
        hint = reply.leader
        if self.retried or hint < 0 or hint == self.leader or hint == service.node_index:
            self._finish(NodeError("TRYAGAIN", f"partition {self.partition} is changing leader"))
            return
        service.hint_leader(self.partition, hint)
        self.leader, self.retried = hint, True
        try:
            self._send()
        except NodeError as e:
            self._finish(e)

    def set(self) -> None:
        """Re-check: called by the board (the watermark moved past the append) and by
        ``Deadlines`` (the deadline may have passed)."""
        if self.phase is Phase.WAITING_VISIBLE:
            outcome = self.outcome
            assert outcome is not None
            last = outcome.first_sequence + len(self.request.events) - 1
            service = self.service
            if (
                self.partition not in service.replicas
                or service.store.watermark(self.partition) > last
            ):
                self._finish(outcome)
            elif trio.current_time() >= self.deadline:
                self._finish(write_timeout())
            else:
                service.board.call_past(self.partition, last, self)
        elif self.phase is Phase.WAITING_REPLY and trio.current_time() >= self.deadline:
            self.service.forget_request(self.request_id)
            self._finish(write_timeout())

    def _finish(self, result: Outcome) -> None:
        self.phase = Phase.DONE
        callback, self._callback = self._callback, None
        if callback is None:
            self._result = result  # for whoever asks first
        else:
            callback(result)

    # ------------------------------------------------------------------ asking
    def when_done(self, callback: Callable[[Outcome], None]) -> None:
        assert self._callback is None, "a confirmation calls back once"
        if self.phase is Phase.DONE:
            result, self._result = self._result, None
            assert result is not None, "a confirmation calls back once"
            callback(result)
        else:
            self._callback = callback

    async def __call__(self) -> AppendOutcome:
        finished = trio.Event()
        box: list[Outcome] = []

        def report(result: Outcome) -> None:
            box.append(result)
            finished.set()

        self.when_done(report)
        await finished.wait()
        (result,) = box
        if isinstance(result, BaseException):
            raise result
        return result
