"""The RESP listener: accepts clients, applies protected mode and limits, shuts down gracefully.

Theory of operation. Each accepted socket gets a ``Connection`` task in the connection nursery.
Protected mode (like Redis's): without a password, only loopback clients are served unless it is
turned off; others get ``-DENIED`` and are closed. Past ``max_clients`` a new client gets an error
and is closed. A connection task that fails unexpectedly is logged and closed without touching
the others; a broken invariant (AssertionError) is not caught: it stops the process (fail-stop).

Shutdown: stop accepting, stop reading new requests on every connection (a batch already being
executed finishes and its replies are sent), wait up to the grace period for that, then close
what is left. The caller then drains the writers and syncs the storage.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import struct
import termios
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .command_stats import CommandStats
from .config import Config, is_loopback, parse_host_port
from .connection import Connection
from .context import BlockedClients, LagMonitor, ServerStats
from .database import Database
from .poller import Poller

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio's own type, as the stubs mypy reads name it

    from sierradb.p2p.runtime import ClusterRuntime

    from .replication.service import ReplicationService

log = logging.getLogger("sierradb.node")

# A connection that the server closes while the client may still be sending (protocol error,
# QUIT, request timeout, shutdown) is half-closed and its input drained until the client has
# acknowledged every reply (or sent EOF), for up to this long: closing with unread input makes
# the kernel reset the connection and discard the replies not yet delivered (a "lingering
# close", as nginx and Apache do).
LINGER_S = 2.0
LINGER_MAX_BYTES = 16 * 1024 * 1024
LINGER_RECEIVE_BYTES = 64 * 1024
# How often a lingering close checks whether the client has acknowledged everything.
LINGER_POLL_S = 0.01


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """The RESP side of the node, for INFO, /metrics and the inspector."""

    port: int
    uptime_s: float
    stopping: bool
    connections: int  # open now
    connections_total: int
    rejected_connections: int
    commands: int
    protocol_errors: int
    auth_failures: int
    subscriptions: int  # open now
    subscriptions_started: int
    subscription_backlog_events: int  # visible, not pushed yet (all subscriptions)
    subscription_unacknowledged_events: int
    event_loop_lag_s: float
    event_loop_lag_max_s: float


def _unacknowledged_bytes(sock: trio.socket.SocketType) -> int | None:
    """Bytes sent that the peer has not acknowledged yet (Linux SIOCOUTQ); None if unknown."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError):
        return None
    return int(struct.unpack("i", raw)[0])


async def _linger(stream: trio.SocketStream) -> None:
    """Send EOF, then discard the client's input until it has acknowledged all we sent, or sent
    EOF itself (bounded in time and bytes)."""
    drained = 0
    with trio.move_on_after(LINGER_S):
        try:
            await stream.send_eof()
            while drained <= LINGER_MAX_BYTES:
                if _unacknowledged_bytes(stream.socket) == 0:
                    return  # the client holds every reply: a reset can no longer lose one
                with trio.move_on_after(LINGER_POLL_S):
                    data = await stream.receive_some(LINGER_RECEIVE_BYTES)
                    if not data:
                        return
                    drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


class Server:
    def __init__(
        self,
        config: Config,
        db: Database,
        peer_id: str,
        cluster: ClusterRuntime | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.peer_id = peer_id
        self.cluster = cluster  # None for a single node
        self.replication: ReplicationService | None = None
        self.stats = ServerStats()
        self.command_stats = CommandStats()
        self.lag = LagMonitor()
        self.poller = Poller()  # where idle connections wait (poller.py)
        self.connections: dict[int, Connection] = {}
        self.blocked = BlockedClients(config.max_blocked_clients)
        self.started = time.monotonic()
        self.port = 0
        self.stopping = False
        self.partial_request_timeout_s = config.request_timeout_s
        self._next_client_id = 1
        self._listen_scope = trio.CancelScope()
        self._conn_nursery: trio.Nursery | None = None
        self._all_closed = trio.Event()
        self._all_closed.set()
        self._listeners: list[trio.SocketListener] = []

    async def bind(self) -> str:
        """Open the client listeners (before serving, so a cluster node can announce the real
        port); the bound address as host:port."""
        host, port = parse_host_port(self.config.client_address)
        self._listeners = list(await trio.open_tcp_listeners(port, host=host or None))
        self.port = self._listeners[0].socket.getsockname()[1]
        return f"{host}:{self.port}" if ":" not in host else f"[{host}]:{self.port}"

    async def serve(self, *, task_status: TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        if not self._listeners:
            await self.bind()
        listeners = self._listeners
        for listener in listeners:
            name = listener.socket.getsockname()
            log.info("ready to receive connections on %s:%d", name[0], name[1])
        try:
            async with trio.open_nursery() as nursery:
                self._conn_nursery = nursery
                nursery.start_soon(self.lag.run)
                nursery.start_soon(self.poller.run)
                with self._listen_scope:
                    task_status.started(self)
                    # Connections live in the connection nursery, not in serve_listeners' own
                    # (inside the listen scope): shutdown stops accepting without cancelling
                    # running batches.
                    await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)
        finally:
            self.poller.close()  # every connection has ended

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.stats.connections += 1
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer_host, peer_port = stream.socket.getpeername()[:2]
        except OSError:
            await stream.aclose()
            return
        refusal = None
        if self.config.loopback_only and not is_loopback(peer_host):
            refusal = (
                b"-DENIED SierraDB is running in protected mode because no password is set: "
                b"connect from the loopback interface, or set --requirepass, or start with "
                b"--protected-mode no\r\n"
            )
        elif len(self.connections) >= self.config.max_clients or self.stopping:
            refusal = b"-ERR max number of clients reached\r\n"
        if refusal is not None:
            self.stats.rejected_connections += 1
            with trio.move_on_after(1):
                try:
                    await stream.send_all(refusal)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await stream.aclose()
            return
        client_id = self._next_client_id
        self._next_client_id += 1
        conn = Connection(self, stream, client_id, f"{peer_host}:{peer_port}")
        self.connections[client_id] = conn
        self._all_closed = trio.Event()
        # conn.serve() runs a nursery, so its errors come wrapped in exception groups.
        try:
            try:
                await conn.serve()
            except* (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away (a reset, or a close mid-send)
        except* AssertionError:
            raise
        except* Exception:
            log.exception("connection %s failed; closing it", conn.peer)
        finally:
            del self.connections[client_id]
            if not self.connections:
                self._all_closed.set()
            with trio.CancelScope(shield=True):
                if conn.closing:
                    await _linger(stream)
                await stream.aclose()

    def statistics(self) -> ServerStatistics:
        subs = [
            sub.statistics() for c in self.connections.values() for sub in c.subscriptions.values()
        ]
        st = self.stats
        return ServerStatistics(
            port=self.port,
            uptime_s=time.monotonic() - self.started,
            stopping=self.stopping,
            connections=len(self.connections),
            connections_total=st.connections,
            rejected_connections=st.rejected_connections,
            commands=st.commands,
            protocol_errors=st.protocol_errors,
            auth_failures=st.auth_failures,
            subscriptions=len(subs),
            subscriptions_started=st.subscriptions_started,
            subscription_backlog_events=sum(s.backlog for s in subs),
            subscription_unacknowledged_events=sum(s.unacknowledged for s in subs),
            event_loop_lag_s=self.lag.last_s,
            event_loop_lag_max_s=self.lag.max_s,
        )

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting and reading; let running batches finish (up to `grace_s`)."""
        self.stopping = True
        self._listen_scope.cancel()
        for conn in list(self.connections.values()):
            conn.stop_reading()
        with trio.move_on_after(grace_s):
            await self._all_closed.wait()
        if self.connections:
            log.warning("closing %d connections that did not finish in time", len(self.connections))
            # A push blocked on a client that stopped reading is shielded from cancellation (a
            # frame is never cut in half); closing the socket is what wakes it.
            for conn in list(self.connections.values()):
                conn.stream.socket.close()
        assert self._conn_nursery is not None
        self._conn_nursery.cancel_scope.cancel()
