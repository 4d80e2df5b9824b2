"""Replies a connection's task does not wait for: runs of appends answered by their
confirmations, and replies written from the poller's callback (``connection.py``).

Theory of operation. When a batch ends in a run of appends that report by callback
(``append.Confirmation``), the connection's task does not wait for them: ``answer_later`` takes
the run (its replies in request order, None until known) and the task goes back to reading. Each
append's confirmation calls back on the event loop when the group commit made it visible (or its
write failed); the callback fills in its reply, and the last one writes the run's replies, in
order, with one non-blocking ``writev`` (``write_or_leave``). So a commit answers all the
connections it completed from one wake-up. The poller's callback writes the replies of reads it
served the same way.

Order and read-your-writes hold because the connection's task settles (``settle``: waits until
every detached reply is sent) before it executes anything else, sends an error or stops. Bytes
that cannot be written at once (the socket is full, or a subscription push holds it) go to
``unsent``, and the task sends them itself; a task waiting for input is woken for that, or for an
unexpected error a callback met (``failure``, which the task raises). When the connection ends,
``drop`` forgets the run: its late confirmations find it replaced and write nothing (the socket,
and its descriptor number, may already belong to someone else).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from .append import AppendRequest, Confirmation, Outcome, Waiter
from .errors import reply_for

IOV_MAX = 1024  # the most buffers one writev takes (Linux)

# A run of appends and the replies held behind them, in request order: (label, start time, the
# append, its waiter) for an append, (label, start, None, encoded reply) for anything answered
# meanwhile (label None: already recorded in the command statistics).
Deferred = tuple[str | None, float, AppendRequest | None, Waiter | bytes]
# An append's reply from its outcome (recorded in the command statistics).
AppendReply = Callable[[str | None, float, AppendRequest, Outcome], bytes]


class DetachedReplies:
    def __init__(
        self,
        fileno: Callable[[], int],
        send_locked: Callable[[], bool],
        append_reply: AppendReply,
        wake_reader: Callable[[], None],
        send: Callable[[bytearray], Awaitable[None]],
    ) -> None:
        """The connection, as this needs it: its socket's descriptor, whether a push holds the
        socket, an append's reply, waking its task from a wait for input, and its own send."""
        self._fileno = fileno
        self._send_locked = send_locked
        self._append_reply = append_reply
        self._wake_reader = wake_reader
        self._send = send
        self.run: _Run | None = None  # the run of appends being answered
        self.unsent = bytearray()  # replies not written yet, for the task to send
        self.failure: BaseException | None = None  # an unexpected error a callback met
        self._settled: trio.Event | None = None  # set for a task waiting in settle

    @property
    def owed(self) -> bool:
        """Whether the task must act: replies to send, or an error to raise."""
        return bool(self.unsent) or self.failure is not None

    def answer_later(self, deferred: list[Deferred]) -> bool:
        """Hand a run of appends to their confirmations; False (nothing done) if a run is being
        answered already, or if one of them has a waiter of another kind (an idempotent
        replay), which the task must await."""
        if self.run is not None:
            return False
        for _label, _started, append, wait in deferred:
            if append is not None and not isinstance(wait, Confirmation):
                return False
        run = self.run = _Run(len(deferred))
        for i, (label, started, append, wait) in enumerate(deferred):
            if append is None:
                assert isinstance(wait, bytes)
                run.replies[i] = wait
                run.missing -= 1
                continue
            assert isinstance(wait, Confirmation)
            wait.when_done(partial(self._confirmed, run, i, label, started, append))
        deferred.clear()
        self._send_run(run)
        return True

    def _confirmed(
        self,
        run: _Run,
        index: int,
        label: str | None,
        started: float,
        append: AppendRequest,
        outcome: Outcome,
    ) -> None:
        """A confirmation's callback (on the event loop, from the group commit's completion)."""
        if run is not self.run:
            return  # the connection is gone
        try:
            if isinstance(outcome, BaseException) and reply_for(outcome) is None:
                raise outcome
            reply = self._append_reply(label, started, append, outcome)
        except Exception as exc:  # noqa: BLE001 - fails this connection, as a task would
            self.failure = exc  # raised by the connection task (never into the commit's path)
            self.run = None
            self._wake_task()
            return
        run.replies[index] = reply
        run.missing -= 1
        self._send_run(run)

    def _send_run(self, run: _Run) -> None:
        """Once the whole run is answered: write its replies with one write (as the waiting
        path would have), leaving what does not fit to the connection task. Only once: a
        confirmation decided already when handed over (a retry of a confirmed append) calls
        back inside ``answer_later``, which then finds the run sent and must not send it again
        (the client would take the copies for the replies to its next requests)."""
        if run.missing or run is not self.run:
            return
        self.run = None
        self.write_or_leave(run.replies)  # type: ignore[arg-type]
        self._wake_task()

    def write_or_leave(self, replies: list[bytes]) -> None:
        """Write replies with one non-blocking write (``writev``: not copied into one buffer
        first), leaving what does not fit in ``unsent`` for the connection task to send.
        Replies already left there go first."""
        unsent = self.unsent
        fd = self._fileno()
        if unsent or self._send_locked():
            for reply in replies:
                unsent += reply
            if not self._send_locked():
                try:
                    sent = os.write(fd, unsent)
                except OSError:  # full, or the peer is gone: the task's own send sees which
                    sent = 0
                del unsent[:sent]
            return
        if not replies:
            return
        if len(replies) > IOV_MAX:
            replies = [b"".join(replies)]
        try:
            sent = os.writev(fd, replies)
        except OSError:
            sent = 0
        for reply in replies:
            if sent >= len(reply):
                sent -= len(reply)
            else:
                unsent += memoryview(reply)[sent:]
                sent = 0

    def fail(self, exc: BaseException) -> None:
        """An unexpected error for the connection's task to raise when it next settles."""
        self.failure = exc

    def _wake_task(self) -> None:
        """Let the connection task see that the replies are sent, or that it must send them."""
        if self._settled is not None:
            self._settled.set()
        if self.owed:
            self._wake_reader()

    async def settle(self) -> None:
        """Return once every detached reply is sent (sending what the callbacks could not
        write); raise an unexpected error one of them met."""
        while True:
            if self.failure is not None:
                failure, self.failure = self.failure, None
                raise failure
            if self.unsent:
                data, self.unsent = self.unsent, bytearray()
                await self._send(data)
                continue
            if self.run is None:
                return
            self._settled = trio.Event()
            try:
                await self._settled.wait()
            finally:
                self._settled = None

    def drop(self) -> None:
        """The connection ended: late confirmations write nothing, unsent replies are dropped."""
        self.run = None
        self.unsent.clear()


class _Run:
    """A run of appends answered by their confirmations: the replies in request order (None
    until known) and how many are still unknown."""

    __slots__ = ("missing", "replies")

    def __init__(self, count: int) -> None:
        self.replies: list[bytes | None] = [None] * count
        self.missing = count
