"""One client connection: parse, execute in order, reply; subscriptions interleave pushes.

Theory of operation. The connection task reads from the socket, feeds the sans-I/O parser and
takes every complete request at once (a pipelined batch). Requests execute strictly in order and
their replies are written in order, batched into one send. Appends are the exception that makes
pipelining fast: a run of consecutive appends is submitted to the partitions' roles one after the
other (each sequenced synchronously, so group commit sees them together) and only then awaited;
any other command first waits for the appends before it, so a read in the same pipeline sees
the earlier writes (read-your-writes holds inside a pipeline too).

State: the protocol version (RESP2 until ``HELLO 3``), authentication, the client name and the
subscriptions. A RESP2 connection that holds a subscription accepts only subscription commands,
PING and QUIT, as Redis does, so pushes and replies cannot be confused.

Reading: one non-blocking read, and a wait for readiness only if nothing is there. The common
wait (no partial request, so no deadline; no subscription) is in the server's poller
(``poller.py``, ``_park``), without a cancel scope: ``stop_reading`` and replies that must be
sent wake it through ``_interrupt_read``.

Serving in place. While the task is parked, the poller calls ``_on_readable`` when bytes come.
A batch of appends only, or of reads the active segment answers at once (``READS_NOW``), is
executed right there, as the task would have (``_serve_in_place``), and the task sleeps on: under
load, one wake-up of the poller serves every connection that has a request. Anything else wakes
the task with what was read: the bytes themselves, or requests already parsed (``_taken``), or
appends already submitted whose waiters need a task (``_handed``); replies written in place go
out first.

Sending: replies and subscription pushes share the socket under one lock; a push frame is sent
whole (shielded), so ending a subscription never cuts a frame in half.

Replies the task does not wait for (a run of appends answered by their confirmations, replies
written from the poller's callback) are ``detached_replies.py``'s: the task settles them
(``DetachedReplies.settle``) before it executes anything else, sends an error or stops.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import outcome
import trio

from . import blocking
from . import grammar as g
from .append import AppendOutcome, AppendRequest, Outcome, build_request
from .command_stats import command_label
from .commands import HANDLERS, READS_NOW, ReadNow
from .detached_replies import Deferred, DetachedReplies
from .errors import NodeError, reply_for
from .forwarding import forward_read
from .identifiers import partition_id
from .replies import append_result, multi_append_result
from .resp import ErrorReply, ProtocolError, RequestReader, encode_into
from .subscriptions import Subscription

if TYPE_CHECKING:
    from .context import ServerView

log = logging.getLogger("sierradb.node")

RECEIVE_BYTES = 64 * 1024
INFINITY = float("inf")
APPEND_COMMANDS = ("EAPPEND", "EMAPPEND")  # command_label names
SUBSCRIPTION_COMMANDS = (g.ESub, g.EPSub, g.EAck, g.EUnsub, g.Ping, g.Quit)
OPEN_WITHOUT_AUTH = (g.Auth, g.Hello, g.Ping, g.Quit)
READS = (g.EGet, g.EScan, g.ESVer, g.EPScan, g.EPSeq)


class Connection:
    def __init__(
        self, server: ServerView, stream: trio.SocketStream, client_id: int, peer: str
    ) -> None:
        self.server = server
        self.db = server.db
        self.config = server.config
        self.stream = stream
        self.client_id = client_id
        self.peer = peer
        self.protocol = 2
        self.authenticated = not self.config.requirepass
        self.name = b""
        self.lib_name = b""
        self.subscriptions: dict[bytes, Subscription] = {}
        self.send_lock = trio.Lock()
        self.reader = RequestReader(max_request_bytes=self.config.max_request_bytes)
        self.closing = False
        # Set once the batch reply that started a subscription has been sent.
        self.after_send: list[trio.Event] = []
        self._receive_scope: trio.CancelScope | None = None
        self._parked: trio.lowlevel.Task | None = None  # the task, waiting in the poller (_park)
        # A blocked read's wait (blocking.py), and whether the client left during one.
        self.block_scope: trio.CancelScope | None = None
        self.peer_gone = False
        self._nursery: trio.Nursery | None = None
        # Replies the task does not wait for (see the module docstring).
        self.detached = DetachedReplies(
            self._fileno, self.send_lock.locked, self._confirmed_reply, self._interrupt_read,
            self._send_reading_ahead,
        )  # fmt: skip
        # The client sent requests while replies were outstanding, last time we looked: then
        # the next read waits for the replies first (see _receive).
        self._client_pipelines = False
        # Requests read ahead (by a send, or by the poller) that no batch has taken yet: in the
        # reader, or taken from it already (_taken), or submitted already (_handed, appends
        # whose answers need the task: see _on_readable).
        self._fed_ahead = False
        self._taken: list[list[bytes]] = []
        self._handed: list[Deferred] = []

    # --------------------------------------------------------------------------- I/O
    async def send(self, data: bytes | bytearray) -> None:
        async with self.send_lock:
            await self.stream.send_all(memoryview(data))

    async def send_push(self, data: bytes) -> None:
        async with self.send_lock:
            with trio.CancelScope(shield=True):
                await self.stream.send_all(data)

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._loop()
                await self.detached.settle()
            finally:
                self.detached.drop()  # late confirmations write nothing
                nursery.cancel_scope.cancel()

    def stop_reading(self) -> None:
        """Graceful shutdown: finish the batch being executed, read nothing more."""
        self.closing = True
        self._interrupt_read()
        if self.block_scope is not None:
            self.block_scope.cancel()  # a blocked read answers empty

    async def _loop(self) -> None:
        reader = self.reader
        # When the partial request now held began: it must complete within the request timeout,
        # however slowly its bytes trickle in (slow-loris clients); reset whenever one completes.
        request_started: float | None = None
        while not self.closing:
            if self.detached.run is not None and self._client_pipelines:
                # It sends more before these replies (several threads sharing the connection):
                # the next requests would wait for this commit anyway; gather them meanwhile.
                await self.detached.settle()
            ended = False
            if self._fed_ahead:
                self._fed_ahead = False  # sending read requests ahead: execute those first
            else:
                if reader.holds_partial_request():
                    if request_started is None:
                        request_started = trio.current_time()
                    deadline = request_started + self.server.partial_request_timeout_s
                else:
                    request_started = None
                    deadline = INFINITY
                data = await self._receive(deadline)
                if self.closing:
                    return
                if data is None:
                    if self._fed_ahead:
                        self._fed_ahead = False  # the poller read requests for the task
                    elif self.detached.owed:
                        await self.detached.settle()  # woken to send what callbacks could not
                        continue
                    else:
                        await self._protocol_error("Protocol error: request not completed in time")
                        return
                elif not data:
                    return
                else:
                    reader.feed(data)
                    if self.detached.run is not None or self.detached.unsent:
                        # Requests came in while the last run's commit is under way: they wait
                        # for it in any case, so take what comes meanwhile too, as one batch.
                        self._client_pipelines = True
                        await self.detached.settle()
                        more = self._read_now(self.stream.socket.fileno())
                        if more:
                            reader.feed(more)
                        elif more == b"":
                            ended = True  # the client's end: execute what it sent, then stop
            if self._handed:
                await self.detached.settle()
                out = bytearray()
                await self._finish(self._handed, out)
                await self._send_reading_ahead(out)
            while True:
                if self._taken:
                    requests, self._taken = self._taken, []
                else:
                    try:
                        requests = reader.drain()
                    except ProtocolError as e:
                        await self._protocol_error(str(e))
                        return
                if not requests:
                    break
                request_started = None
                await self.detached.settle()
                out = bytearray()
                await self._execute_batch(requests, out)
                if out:
                    await self._send_reading_ahead(out)
                for gate in self.after_send:
                    gate.set()
                self.after_send.clear()
                if self.closing:
                    return
            if ended:
                return

    async def _receive(self, deadline: float) -> bytes | None:
        """The next bytes from the client (b"" at its end; None: the deadline passed first).

        Cheaper than ``SocketStream.receive_some`` on the path every request takes: one
        non-blocking read first, and only if nothing is there a wait for readiness, with a
        cancel scope only when a deadline or a subscription needs one (``_interrupt_read``
        wakes either kind of wait; ``stop_reading`` sets ``closing`` first). Also None when
        replies handed to the confirmations must be sent first. A read that succeeds at once
        still yields to the scheduler (and sees cancellation), as trio's own does, so a client
        that keeps the socket full cannot starve the other connections.
        """
        if deadline != INFINITY and trio.current_time() >= deadline:
            return None
        fd = self.stream.socket.fileno()
        # With replies still to come, a client that does not pipeline is waiting for them and
        # has sent nothing: skip the read that would fail, wait at once.
        if self.detached.run is None:
            data = self._read_now(fd)
            if data is not None:
                await trio.lowlevel.checkpoint()
                return data
            self._client_pipelines = False
        if self.detached.owed or self.closing:
            return None  # replies to send first (see detached_replies.py), or stopping
        if deadline == INFINITY and not self.subscriptions and not self.send_lock.locked():
            return await self._park(fd)
        with trio.CancelScope(deadline=deadline) as scope:
            self._receive_scope = scope
            data = None
            while data is None:
                await trio.lowlevel.wait_readable(fd)
                data = self._read_now(fd)
        self._receive_scope = None
        return None if scope.cancelled_caught else data

    @staticmethod
    def _read_now(fd: int) -> bytes | None:
        """What the socket holds now, without waiting (None: nothing; b"": the client's end)."""
        try:
            return os.read(fd, RECEIVE_BYTES)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _stream_error(exc) from exc

    def _interrupt_read(self) -> None:
        """Wake the task from its wait for input (``stop_reading``, or replies to send)."""
        if self._receive_scope is not None:
            self._receive_scope.cancel()
        elif self._parked is not None:
            self._wake(outcome.Value(None))

    async def _park(self, fd: int) -> bytes | None:
        """`_receive`'s wait without a cancel scope (a scope costs as much as the rest of the
        wait), in the server's poller (poller.py): the bytes that came, or None if the task is
        needed otherwise (``_interrupt_read``, or requests the poller read: ``_fed_ahead``)."""
        self._parked = trio.lowlevel.current_task()
        self.server.poller.watch(fd, self._on_readable)

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._unpark()
            return trio.lowlevel.Abort.SUCCEEDED

        result: bytes | None = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _unpark(self) -> trio.lowlevel.Task:
        task = self._parked
        assert task is not None
        self._parked = None
        self.server.poller.unwatch(self.stream.socket.fileno())
        return task

    def _wake(self, result: outcome.Outcome[bytes | None]) -> None:
        """End the task's wait in the poller with ``result``."""
        trio.lowlevel.reschedule(self._unpark(), result)

    def _on_readable(self) -> None:
        """The poller's callback while the task is parked (see ``_read_and_serve``). An error
        fails this connection, as it would in the task, never the poller (and the server)."""
        try:
            self._read_and_serve()
        except Exception as exc:  # noqa: BLE001 - raised by the connection's task instead
            if self._parked is not None:
                self._wake(outcome.Error(exc))
            else:  # the task was woken already: it fails when it next settles
                self.detached.fail(exc)

    def _read_and_serve(self) -> None:
        """Serve what came in place (appends answered by their confirmations, as after
        ``_answer_later``, or reads answered at once; the task sleeps on), or wake the task with
        it. Requests read here that the task must execute are left in the reader, ``_taken``
        or ``_handed`` (``_fed_ahead``)."""
        data = self._read_now(self.stream.socket.fileno())
        if data is None:
            return  # nothing after all
        if (
            not data  # the client's end
            or self.detached.run is not None  # replies come first: the task gathers meanwhile
            or self.detached.owed
            or self.closing
            or self.subscriptions
            or self.after_send
            or not self.authenticated
        ):
            self._wake(outcome.Value(data))
            return
        reader = self.reader
        reader.feed(data)
        try:
            requests = reader.drain()
        except ProtocolError:
            requests = []  # the task's drain raises it again
        if requests and not reader.holds_partial_request() and not reader.failed:
            if self._serve_in_place(requests):
                return
        else:
            self._taken = requests
        self._fed_ahead = True
        self._wake(outcome.Value(None))

    def _serve_in_place(self, requests: list[list[bytes]]) -> bool:
        """Execute a batch from the poller's callback, as ``_execute_batch`` would, if it holds
        only appends (answered by their confirmations) or only reads answered at once
        (``READS_NOW``). True: done; False: the task must do the rest (``_taken``, ``_handed``,
        or replies that did not fit the socket, ``detached.unsent``). The command names decide
        first, so a batch left to the task is parsed once, by the task."""
        labels = [command_label(args) for args in requests]
        if all(label in APPEND_COMMANDS for label in labels):
            return self._append_in_place(requests, labels)
        replies: list[bytes] = []
        stats = self.server.stats
        record = self.server.command_stats.record
        for i, (args, label) in enumerate(zip(requests, labels, strict=True)):
            started = time.perf_counter()
            read_now = READS_NOW.get(label)
            reply = None if read_now is None else self._read_in_place(read_now, args)
            if reply is None:
                self._taken = requests[i:]  # executed by the task, after these replies
                break
            stats.commands += 1
            record(label, "ok", time.perf_counter() - started)
            replies.append(reply)
        self.detached.write_or_leave(replies)
        return not (self._taken or self.detached.unsent)

    def _append_in_place(self, requests: list[list[bytes]], labels: list[str]) -> bool:
        """``_serve_in_place`` for a batch of appends."""
        appends = []
        for args in requests:
            try:
                request = g.parse_command(args)
            except Exception:  # noqa: BLE001 - the task parses it again and answers the error
                self._taken = requests
                return False
            assert isinstance(request, (g.EAppend, g.EMAppend))
            appends.append(request)
        stats = self.server.stats
        now_ms = int(time.time() * 1000)
        deferred: list[Deferred] = []
        for label, append in zip(labels, appends, strict=True):
            stats.commands += 1
            self._submit_append(label, time.perf_counter(), append, now_ms, deferred)
        if self._answer_later(deferred):
            return True
        self._handed = deferred  # a waiter of another kind (an idempotent replay)
        return False

    def _read_in_place(self, read_now: ReadNow, args: list[bytes]) -> bytes | None:
        """A read's reply if it can be given now, on the event loop; None if it needs the task
        (it waits, forwards, needs a read thread, or fails: the task answers the error)."""
        try:
            request = g.parse_command(args)
        except Exception:  # noqa: BLE001 - the task parses it again and answers the error
            return None
        try:
            replication = self.server.replication
            if replication is not None:
                p = self._read_partition(request)
                if p is None or p not in replication.replicas or not replication.ready_now(p):
                    return None
            return read_now(self, request)
        except Exception as exc:  # noqa: BLE001
            if reply_for(exc) is None:
                raise
            return None

    async def _send_reading_ahead(self, data: bytearray) -> None:
        """Send a batch's replies; if the socket is full, keep reading (not executing) requests.

        A client that writes its whole pipeline before reading any reply (redis-py's pipeline)
        would otherwise deadlock with us once its unread replies fill the socket buffers: we
        wait to send, it waits to send. The read-ahead is parsed on the next round and bounded
        by the maximum request size, so a client that never reads still cannot make us buffer
        without bound. Fast path: one non-blocking write, no extra task.
        """
        lock = self.send_lock
        if lock.locked():
            await lock.acquire()  # a push frame is being sent: wait for its end
        else:
            # No await until the lock is taken: nothing else can start sending meanwhile, and
            # the common case (the whole batch written at once) never yields to the scheduler.
            lock.acquire_nowait()
        try:
            try:
                sent = os.write(self.stream.socket.fileno(), data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # the peer is gone, or the socket is closed
                raise trio.BrokenResourceError(str(exc)) from exc
            if sent == len(data):
                return
            reading = trio.CancelScope()

            async def read_ahead() -> None:
                budget = self.config.max_request_bytes
                with reading:
                    while budget > 0 and not self.closing:
                        chunk = await self.stream.receive_some(min(RECEIVE_BYTES, budget))
                        if not chunk:
                            return
                        self.reader.feed(chunk)
                        self._fed_ahead = True
                        budget -= len(chunk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_ahead)
                await self.stream.send_all(memoryview(data)[sent:])
                reading.cancel()
        finally:
            lock.release()

    async def _protocol_error(self, message: str) -> None:
        await self.detached.settle()
        text = message if message.startswith("Protocol error") else f"Protocol error: {message}"
        out = bytearray()
        encode_into(out, ErrorReply("ERR", text), self.protocol)
        self.server.stats.protocol_errors += 1
        try:
            await self.send(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.closing = True

    # ---------------------------------------------------------------------- execution
    async def _execute_batch(self, requests: list[list[bytes]], out: bytearray) -> None:
        # Replies held back behind a run of appends, in order: (label, start time, the append
        # and its waiter) for an append, (label, start, None, encoded reply) for anything
        # answered meanwhile (label None: already recorded).
        deferred: list[Deferred] = []
        record = self.server.command_stats.record
        stats = self.server.stats
        # The server clock of the appends in a run (taken again after any wait).
        now_ms: int | None = None
        for args in requests:
            stats.commands += 1
            label = command_label(args)
            started = time.perf_counter()
            try:
                request = g.parse_command(args)
                if not self.authenticated and not isinstance(request, OPEN_WITHOUT_AUTH):
                    raise NodeError("NOAUTH", "Authentication required.")
                if (
                    self.protocol == 2
                    and self.subscriptions
                    and not isinstance(request, SUBSCRIPTION_COMMANDS)
                ):
                    raise NodeError("ERR", "only subscription commands are allowed in this context")
                if isinstance(request, (g.EAppend, g.EMAppend)):
                    if now_ms is None:
                        now_ms = int(time.time() * 1000)
                    self._submit_append(label, started, request, now_ms, deferred)
                    continue
                now_ms = None
                replication = self.server.replication
                if replication is not None and isinstance(request, READS):
                    p = self._read_partition(request)
                    if p is not None:
                        if deferred:
                            await self._finish(deferred, out)
                        if p not in replication.replicas:
                            if getattr(request, "block_ms", None) is not None:
                                assert isinstance(request, (g.EScan, g.EPScan))
                                out += await blocking.block_remote_scan(self, p, request, args)
                            else:
                                out += await forward_read(self, p, args)
                            record(label, "forwarded", time.perf_counter() - started)
                            continue
                        await replication.ready_to_read(p)
                if deferred:
                    await self._finish(deferred, out)
                reply = await self._execute(request)
            except BaseException as exc:  # noqa: BLE001 - mapped below, or re-raised
                err = reply_for(exc)
                if err is None:
                    raise
                record(label, err.code, time.perf_counter() - started)
                if deferred:
                    deferred.append((None, 0.0, None, self._encode(err)))
                else:
                    encode_into(out, err, self.protocol)
                continue
            record(label, "ok", time.perf_counter() - started)
            out += reply
            if self.closing:
                break
        if deferred and not (not out and self._answer_later(deferred)):
            await self._finish(deferred, out)

    def _submit_append(
        self,
        label: str,
        started: float,
        request: g.EAppend | g.EMAppend,
        now_ms: int,
        deferred: list[Deferred],
    ) -> None:
        """Build an append and submit it to its partition's role; add its entry (or, if it is
        refused at once, its error reply) to the run of appends ``deferred``."""
        try:
            append = build_request(
                request, self.db.partition_count, now_ms, self.config.strict_versioning
            )
            wait = self.db.appender(append.partition_id).submit(append)
        except Exception as exc:  # noqa: BLE001 - mapped below, or re-raised
            err = reply_for(exc)
            if err is None:
                raise
            self.server.command_stats.record(label, err.code, time.perf_counter() - started)
            deferred.append((None, 0.0, None, self._encode(err)))
            return
        deferred.append((label, started, append, wait))

    async def _finish(self, deferred: list[Deferred], out: bytearray) -> None:
        """Wait for a run of appends (in order) and add their replies and the replies held
        behind them to `out`. Appends confirmed by the same flush return without parking."""
        resp3 = self.protocol == 3
        for label, started, append, wait in deferred:
            if append is None:
                assert isinstance(wait, bytes)
                out += wait
                continue
            assert not isinstance(wait, bytes)
            try:
                outcome: Outcome = await wait()
            except BaseException as exc:  # noqa: BLE001
                if reply_for(exc) is None:
                    raise
                outcome = exc
            out += self._append_reply(label, started, append, outcome, resp3)
        deferred.clear()

    def _append_reply(
        self,
        label: str | None,
        started: float,
        append: AppendRequest,
        outcome: Outcome,
        resp3: bool,
    ) -> bytes:
        """An append's encoded reply (its outcome mapped to an error reply if it failed; the
        caller checked that it maps), recorded in the command statistics."""
        if isinstance(outcome, BaseException):
            err = reply_for(outcome)
            assert err is not None
            if label is not None:
                self.server.command_stats.record(label, err.code, time.perf_counter() - started)
            return self._encode(err)
        if append.multi:
            reply = self._emappend_reply(append, outcome, resp3)
        else:
            reply = append_result(
                append.events[0].event_id, append.partition_key, append.partition_id,
                outcome.first_sequence, outcome.versions[0], outcome.timestamps_ms[0], resp3,
            )  # fmt: skip
        if label is not None:
            self.server.command_stats.record(label, "ok", time.perf_counter() - started)
        return reply

    # ----------------------------------------------------- appends answered on confirmation
    def _answer_later(self, deferred: list[Deferred]) -> bool:
        """Hand a batch's run of appends to their confirmations (``detached_replies.py``);
        False (nothing done) if any of them, or the connection's state, needs the waiting
        path: a subscription or a gate that could write meanwhile, a run still being answered,
        or a waiter of another kind (an idempotent replay)."""
        if self.subscriptions or self.after_send or self.closing:
            return False
        return self.detached.answer_later(deferred)

    def _confirmed_reply(
        self, label: str | None, started: float, append: AppendRequest, outcome: Outcome
    ) -> bytes:
        return self._append_reply(label, started, append, outcome, self.protocol == 3)

    def _fileno(self) -> int:
        return self.stream.socket.fileno()

    def _encode(self, value: object) -> bytes:
        out = bytearray()
        encode_into(out, value, self.protocol)
        return bytes(out)

    async def _execute(self, request: Any) -> bytes:
        return await HANDLERS[type(request)](self, request)

    def _read_partition(self, request: object) -> int | None:
        """The partition a read needs (None: out of range, answered as unavailable)."""
        count = self.db.partition_count
        if isinstance(request, g.EGet):
            p = partition_id(request.event_id, count)
        elif isinstance(request, (g.EScan, g.ESVer)):
            p = partition_id(request.partition_key, count)
        else:
            assert isinstance(request, (g.EPScan, g.EPSeq))
            p = g.resolve_partition(request.partition, count)
            if p >= count:
                return None
        return p

    # ------------------------------------------------------------------------- appends
    def _emappend_reply(self, append: AppendRequest, outcome: AppendOutcome, resp3: bool) -> bytes:
        return multi_append_result(
            append.partition_key, append.partition_id, outcome.first_sequence,
            [
                (e.event_id, e.stream_id, version, ts)
                for e, version, ts in zip(
                    append.events, outcome.versions, outcome.timestamps_ms, strict=True
                )
            ],
            resp3,
        )  # fmt: skip


def _stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """A failed read as trio's streams report it (as ``receive_some`` would have)."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the connection was already closed")
    return trio.BrokenResourceError(f"the connection broke: {exc}")
