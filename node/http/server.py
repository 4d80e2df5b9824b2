"""The HTTP port: hypercorn's HTTP/1.1 protocol machinery on trio, in the node's own nursery.

Theory of operation. ``bind_http_socket`` binds and listens before the event loop starts, so a
taken port or a bad address fails the start with one clear line (like the data dir). ``serve``
then accepts connections on that socket itself and hands each to hypercorn's ``TCPServer`` (h11,
ASGI): every request is a task in this nursery, on the node's event loop; there is no second
process and no thread per request (reads of storage go through the database's bounded read
threads, exactly like the RESP commands).

Hypercorn leaves two things unbounded that a database must bound, so they are bounded here:

- connections: past ``MAX_HTTP_CONNECTIONS`` a new connection is closed at once;
- a client that stops reading: hypercorn writes with a shielded ``send_all``, which would wait
  for ever on a full socket (a frozen browser tab keeps acknowledging with a zero window). Every
  write passes through ``_StallGuard``, which sends in chunks and closes the socket when one
  chunk makes no progress for ``SEND_STALL_TIMEOUT_S``. The connection ends, the response task
  sees ``http.disconnect`` and stops; nothing is buffered for it meanwhile, since a live feed
  reads from storage only when its previous write has gone out.

The append history behind the overview's chart (appended events, sampled every second) is
recorded here, so the chart has data from the moment the node starts.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

from ..config import Config, parse_host_port
from ..database import Database
from ..server import Server
from .app import build_app
from .inspector import HttpStatistics, Inspector

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio's own type, as the stubs mypy reads name it

log = logging.getLogger("sierradb.http")

# Open HTTP connections at once (browsers open about six per tab; Prometheus one).
MAX_HTTP_CONNECTIONS = 256
# A write that makes no progress for this long means the client stopped reading: drop it.
SEND_STALL_TIMEOUT_S = 10.0
# Writes are passed to the socket in chunks of this size, each under the stall timeout.
SEND_CHUNK_BYTES = 64 * 1024
# Idle keep-alive connections are closed after this long.
KEEP_ALIVE_TIMEOUT_S = 30.0
# Request line plus headers; a resumed live feed's Last-Event-ID names every partition it has
# seen, so this is larger than hypercorn's 16 KiB default.
MAX_HEADER_BYTES = 64 * 1024
LISTEN_BACKLOG = 128
# The overview chart: appended events sampled every second, for the last ten minutes.
HISTORY_INTERVAL_S = 1.0
HISTORY_SAMPLES = 600


def bind_http_socket(config: Config) -> socket.socket | None:
    """Listen on the configured HTTP address (blocking; before the event loop). None if off.

    Raises OSError with a message that names the setting.
    """
    if config.http_address is None:
        return None
    host, port = parse_host_port(config.http_address)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
    except OSError as e:
        reason = e.strerror or str(e)
        raise OSError(
            f"http_address {config.http_address}: cannot listen: {reason} (pick another "
            "address with --http-address, or turn the HTTP port off with --http-address none)"
        ) from e
    sock.setblocking(False)
    return sock


class _StallGuard:
    """A trio stream for hypercorn that drops clients that stop reading (see the top)."""

    def __init__(self, stream: trio.SocketStream, on_stall: Callable[[], None]) -> None:
        self._stream = stream
        self.socket = stream.socket  # hypercorn reads the peer's address from it
        self._on_stall = on_stall

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), SEND_CHUNK_BYTES):
            with trio.move_on_after(SEND_STALL_TIMEOUT_S):
                await self._stream.send_all(view[start : start + SEND_CHUNK_BYTES])
                continue
            self._on_stall()
            self._stream.socket.close()  # wakes anything else blocked on it
            raise trio.BrokenResourceError("client stopped reading")

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class HttpServer:
    def __init__(
        self, config: Config, db: Database, server: Server, listen_socket: socket.socket
    ) -> None:
        self.config = config
        self.db = db
        self.server = server
        self._socket = listen_socket
        host, port = listen_socket.getsockname()[:2]
        self.url_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # as bound
        self.history: deque[tuple[float, int]] = deque(maxlen=HISTORY_SAMPLES)
        self.inspector = Inspector(config, db, server, self)
        self.connections = 0
        self.connections_total = 0
        self.rejected_connections = 0
        self.stalled_connections = 0

    def statistics(self) -> HttpStatistics:
        app = self.inspector
        return HttpStatistics(
            connections=self.connections,
            connections_total=self.connections_total,
            rejected_connections=self.rejected_connections,
            stalled_connections=self.stalled_connections,
            responses=dict(app.responses),
            feeds=app.feeds_open,
            feed_events=app.feed_events,
            feed_skipped=app.feed_skipped,
        )

    def appended_events(self) -> int:
        return sum(w.events for w in self.db.writers)

    async def serve(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        hyper = HypercornConfig()
        hyper.accesslog = None
        hyper.errorlog = log
        hyper.include_server_header = False
        hyper.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
        hyper.h11_max_incomplete_size = MAX_HEADER_BYTES
        hyper.alpn_protocols = ["http/1.1"]
        app = ASGIWrapper(build_app(self.inspector))
        context = WorkerContext(None)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._socket))

        async def handle(stream: trio.SocketStream) -> None:
            self.connections_total += 1
            if self.connections >= MAX_HTTP_CONNECTIONS:
                self.rejected_connections += 1
                await stream.aclose()
                return
            self.connections += 1
            try:
                guarded = _StallGuard(stream, self._count_stall)
                await TCPServer(app, hyper, context, ConnectionState({}), guarded)  # type: ignore[arg-type]
            finally:
                self.connections -= 1

        log.info("inspector, JSON API and /metrics on http://%s", self.url_address)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sample_history)
            task_status.started()
            await trio.serve_listeners(handle, [listener], handler_nursery=nursery)

    def _count_stall(self) -> None:
        self.stalled_connections += 1

    async def _sample_history(self) -> None:
        while True:
            self.history.append((time.time(), self.appended_events()))
            await trio.sleep(HISTORY_INTERVAL_S)
