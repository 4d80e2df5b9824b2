"""One connection to a node, shared by every thread of a client, with automatic pipelining.

Theory of operation. A thread sends its request at once, under a lock that keeps the order of
requests on the wire equal to the order of a FIFO of waiting calls; it does not wait for the
requests sent before it. Replies come back in that order, and the owner of the FIFO's head is
the one thread reading: it reads its reply, leaves the FIFO, and wakes the next owner, which
reads its own reply in turn. So a lone thread sends and reads as usual, and concurrent threads
keep several requests in flight on one connection: the node finds them pipelined, sequences
them together and commits them with one fdatasync (Lettuce shares connections the same way).

Each request keeps its own outcome: an error reply fails that request only. A broken or
timed-out connection fails every request sent on it that had no reply yet (the client's retry
policy then resends them, which is safe), and the next request opens a new connection. A
request that waits for a long reply delays the replies pipelined behind it; that is the price of
the shared round trips (subscriptions, which wait without end, have connections of their own).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis
from redis.connection import Connection


class _Call:
    __slots__ = ("count", "replies", "error", "conn", "wake")

    def __init__(self, count: int) -> None:
        self.count = count
        self.replies: list[Any] = []
        self.error: BaseException | None = None
        self.conn: Connection | None = None  # the connection its request went out on
        self.wake = threading.Event()  # set when it heads the FIFO or has failed


class SharedConnection:
    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # the connection, the FIFO and the order of sends
        self._fifo: deque[_Call] = deque()

    def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send the commands (pipelined) and return their replies in order; an error reply is
        returned as its exception, a failed connection raises."""
        packed = b"".join(hiredis.pack_command(tuple(c)) for c in commands)
        call = _Call(len(commands))
        with self._lock:
            try:
                if self._conn is None:
                    conn = self._connect()
                    conn.connect()
                    self._conn = conn
                call.conn = self._conn
                self._conn.send_packed_command([packed], check_health=False)
            except BaseException:
                self._fail(self._conn)
                raise
            self._fifo.append(call)
            if len(self._fifo) == 1:
                call.wake.set()  # nothing ahead: read at once
        call.wake.wait()
        if call.error is None:
            self._read(call)
        if call.error is not None:
            raise call.error
        return call.replies

    def _read(self, call: _Call) -> None:
        """Read `call`'s replies (it heads the FIFO), then hand the reading to the next call."""
        assert call.conn is not None
        try:
            for _ in range(call.count):
                try:
                    call.replies.append(call.conn.read_response())
                except redis.exceptions.ResponseError as e:
                    call.replies.append(e)
        except BaseException as e:
            call.error = e
            with self._lock:
                self._fail(call.conn, e)
            if not isinstance(e, Exception):
                raise
            return
        with self._lock:
            if self._fifo and self._fifo[0] is call:
                self._fifo.popleft()
                if self._fifo:
                    self._fifo[0].wake.set()
            else:
                # A send on this connection failed while we read: the connection was dropped
                # and our call failed with it, but every one of its replies had arrived.
                call.error = None

    def _fail(self, conn: Connection | None, error: BaseException | None = None) -> None:
        """Drop `conn` (if still current) and fail the calls waiting for replies on it.
        Called with the lock held."""
        if conn is None:
            return
        if self._conn is conn:
            self._conn = None
        conn.disconnect()
        for waiting in [c for c in self._fifo if c.conn is conn]:
            self._fifo.remove(waiting)
            if waiting.error is None:
                waiting.error = error or redis.exceptions.ConnectionError("connection lost")
            waiting.wake.set()
        if self._fifo:
            self._fifo[0].wake.set()

    def close(self) -> None:
        with self._lock:
            self._fail(self._conn)
