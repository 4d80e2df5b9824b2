"""One connection to a node, shared by every thread of a client, with automatic pipelining.

Theory of operation. A thread sends its request at once, under a lock that keeps the order of
requests on the wire equal to the order of a FIFO of waiting calls; it does not wait for the
requests sent before it. Replies come back in that order. One waiting thread at a time is the
*reader*: it receives from the socket, and every reply that is complete in what it received is
handed to its owner at once (the reader parses all of them, in FIFO order), so each waiting
thread wakes once, with its replies in hand, instead of in a chain of wake-ups where each
thread reads its own reply and then wakes the next. When the reader's own call is complete it
passes the reading on to the oldest call still waiting, or, when none is, the next thread to
send becomes the reader. So a lone thread sends and reads as usual, and concurrent threads
keep several requests in flight on one connection: the node finds them pipelined, sequences
them together and commits them with one fdatasync (Lettuce shares connections the same way).

Sends coalesce: a thread that finds another thread sending leaves its request in an outbox,
and the sending thread writes everything in the outbox with one more `sendall` before it lets
go, so requests made while a send is under way reach the node in one segment.

redis-py opens the connection (HELLO, AUTH, CLIENT SETNAME); after that this module speaks to
the socket itself with its own hiredis reader, whose error replies are redis-py's exception
types (so transport.translate maps them as before).

Each request keeps its own outcome: an error reply fails that request only. A broken or
timed-out connection fails every request sent on it that had no reply yet (the client's retry
policy then resends them, which is safe), and the next request opens a new connection. So does
an interrupt (KeyboardInterrupt, SystemExit) of the thread that reads for the others: it is
raised in that thread only, and the others see a lost connection. A
request that waits for a long reply delays the replies pipelined behind it; that is the price of
the shared round trips (subscriptions, which wait without end, have connections of their own).
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis
from redis._parsers.base import BaseParser
from redis.connection import Connection

_NOT_ENOUGH = object()
_PUSH = getattr(hiredis, "PushNotification", None)
_RECV_BYTES = 65536


class _Call:
    """One caller's requests. `ready` is held until the call is complete or failed, or its
    thread has been made the reader."""

    __slots__ = ("count", "replies", "error", "link", "ready", "reader")

    def __init__(self, count: int) -> None:
        self.count = count
        self.replies: list[Any] = []
        self.error: BaseException | None = None
        self.link: _Link | None = None  # the connection its request went out on
        self.ready = threading.Lock()
        self.ready.acquire()
        self.reader = False


class _Link:
    """An open connection: redis-py's (kept for its socket and for closing), and a reader."""

    __slots__ = ("conn", "sock", "parser", "outbox", "sending")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        sock = conn._sock
        if sock is None:
            raise redis.exceptions.ConnectionError("the connection has no socket")
        self.sock: socket.socket = sock
        _kernel_timeouts(sock)
        self.parser: hiredis.Reader = hiredis.Reader(
            notEnoughData=_NOT_ENOUGH,
            replyError=BaseParser.parse_error,
            protocolError=redis.exceptions.InvalidResponse,
        )
        self.outbox: list[bytes] = []
        self.sending: bool = False


class SharedConnection:
    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._link: _Link | None = None
        self._lock = threading.Lock()  # the link, the FIFO, the outbox and the reader role
        self._fifo: deque[_Call] = deque()
        self._reader: _Call | None = None  # the call whose thread reads; None iff FIFO empty

    def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send the commands (pipelined) and return their replies in order; an error reply is
        returned as its exception, a failed connection raises."""
        if len(commands) == 1:
            packed = hiredis.pack_command(tuple(commands[0]))
        else:
            packed = b"".join(hiredis.pack_command(tuple(c)) for c in commands)
        call = _Call(len(commands))
        with self._lock:
            link = self._link
            if link is None:
                conn = self._connect()
                conn.connect()
                link = self._link = _Link(conn)
            call.link = link
            self._fifo.append(call)
            if self._reader is None:
                self._reader = call
                call.reader = True
            if link.sending:
                link.outbox.append(packed)  # the thread sending writes it too
                packed = b""
            else:
                link.sending = True
        if packed:
            self._send(link, packed)
        if not call.reader:
            call.ready.acquire()
        while call.error is None and len(call.replies) < call.count:
            self._receive(call)  # this thread is the reader until its call is complete
        if call.error is not None:
            raise call.error
        return call.replies

    def _send(self, link: _Link, data: bytes) -> None:
        """Write `data`, then whatever other threads left in the outbox meanwhile."""
        try:
            while True:
                link.sock.sendall(data)
                with self._lock:
                    if not link.outbox:
                        link.sending = False
                        return
                    data = b"".join(link.outbox)
                    link.outbox.clear()
        except BaseException as e:
            with self._lock:
                link.sending = False
                self._fail(link, _connection_error(e, "writing to"))
            if not isinstance(e, Exception):
                raise

    def _receive(self, call: _Call) -> None:
        """As the reader: receive once, hand out every complete reply, and pass the reading on
        when `call` is complete."""
        link = call.link
        assert link is not None
        try:
            data = link.sock.recv(_RECV_BYTES)
            if not data:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            link.parser.feed(data)
            replies = []
            while True:
                reply = link.parser.gets()
                if reply is _NOT_ENOUGH:
                    break
                if _PUSH is not None and isinstance(reply, _PUSH):
                    continue  # no subscriptions here: a stray push is nobody's reply
                if isinstance(reply, redis.exceptions.ConnectionError):
                    raise reply  # NOAUTH, LOADING...: the connection is unusable
                replies.append(reply)
        except BaseException as e:
            with self._lock:
                self._fail(link, _connection_error(e, "reading from"))
            if not isinstance(e, Exception):
                raise
            return
        with self._lock:
            fifo = self._fifo
            for reply in replies:
                if not fifo or fifo[0].link is not link:
                    # Replies for nobody: the calls were failed meanwhile (close()).
                    break
                head = fifo[0]
                head.replies.append(reply)
                if len(head.replies) == head.count:
                    fifo.popleft()
                    if head is not call:
                        head.ready.release()
            if self._reader is not call or (call.error is None and len(call.replies) < call.count):
                return  # read on, or no longer the reader (the link failed meanwhile)
            # Complete: the oldest waiting call reads next.
            self._reader = fifo[0] if fifo else None
            if fifo:
                fifo[0].reader = True
                fifo[0].ready.release()

    def _fail(self, link: _Link | None, error: BaseException | None = None) -> None:
        """Drop `link` (if still current) and fail the calls waiting for replies on it.
        Called with the lock held. Every call in the FIFO went out on the current link (a
        link is only replaced after it failed, and that failed its calls), so a link that is no
        longer current has nothing left to fail."""
        if link is None or link is not self._link:
            return
        self._link = None
        link.conn.disconnect()  # also wakes the reader from its recv
        error = error or redis.exceptions.ConnectionError("connection lost")
        for waiting in self._fifo:
            waiting.error = error
            if not waiting.reader:
                waiting.ready.release()
        self._fifo.clear()
        self._reader = None

    def close(self) -> None:
        with self._lock:
            self._fail(self._link)


def _kernel_timeouts(sock: socket.socket) -> None:
    """Move the socket's timeout into the kernel (SO_RCVTIMEO, SO_SNDTIMEO) and make it
    blocking: Python's own timeouts poll() before every send and recv, each a separate GIL
    release, which 8 threads sharing this connection pay for as GIL hand-offs. A timed-out
    call then fails with EAGAIN (see _connection_error). Where the options cannot be set the
    socket keeps Python's timeout."""
    timeout = sock.gettimeout()
    if timeout is None or sys.platform == "win32":
        return
    seconds = int(timeout)
    timeval = struct.pack("ll", seconds, int((timeout - seconds) * 1e6) or (0 if seconds else 1))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError:
        return
    sock.settimeout(None)


def _connection_error(exc: BaseException, doing: str) -> BaseException:
    """What a failed socket operation fails the waiting calls with (redis-py's types, so the
    client's translation is the same as for redis-py's own reads)."""
    if isinstance(exc, redis.exceptions.RedisError):
        return exc
    if isinstance(exc, socket.timeout) or (
        isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    ):
        return redis.exceptions.TimeoutError(f"Timeout {doing} socket")
    if isinstance(exc, OSError):
        return redis.exceptions.ConnectionError(f"Error while {doing} socket: {exc.args}")
    # Anything else (a KeyboardInterrupt or SystemExit in the thread that was reading for
    # everyone, an unexpected bug) stays with that thread; the others lost their connection.
    error = redis.exceptions.ConnectionError(
        f"connection abandoned while {doing} socket: {type(exc).__name__} in another thread"
    )
    error.__cause__ = exc
    return error
