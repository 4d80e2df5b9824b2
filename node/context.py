"""What the client-request path needs of the server, of a connection and of replication.

The command handlers, blocking reads, relays and INFO are typed against these views rather than
the classes themselves, so the modules form a DAG: ``server.py`` (which creates connections),
``connection.py`` (which runs the handlers) and ``replication/service.py`` (which runs forwarded
reads through the handlers) sit above the handlers and are never imported by them. The classes
satisfy the views structurally (mypy checks it where a Server, Connection or ReplicationService is
passed in). The counters and monitors the server owns live here too, so the views can name them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .errors import NodeError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sierradb.p2p.runtime import ClusterRuntime
    from sierradb.storage import Event

    from .command_stats import CommandStats
    from .config import Config
    from .database import Database
    from .poller import Poller
    from .replication.codec import (
        EventsReply,
        FetchEvents,
        ForwardAppend,
        ForwardRead,
        ForwardReply,
        ReadReply,
        WatermarksReply,
    )
    from .replication.replica import ReplicaStatistics
    from .resp import RequestReader

LAG_TICK_S = 0.1


@dataclass
class ServerStats:
    connections: int = 0
    rejected_connections: int = 0
    commands: int = 0
    protocol_errors: int = 0
    auth_failures: int = 0
    subscriptions_started: int = 0


class LagMonitor:
    """Measures how late the event loop wakes a 100 ms ticker (heartbeats will need this)."""

    def __init__(self) -> None:
        self.last_s = 0.0
        self.max_s = 0.0

    async def run(self) -> None:
        while True:
            start = trio.current_time()
            await trio.sleep(LAG_TICK_S)
            self.last_s = max(0.0, trio.current_time() - start - LAG_TICK_S)
            self.max_s = max(self.max_s, self.last_s)


class BlockedClients:
    """The node's blocked clients, bounded in number (`max_blocked_clients`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.total = 0  # clients that have blocked since the start
        self.refused = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.count >= self.limit:
            self.refused += 1
            raise NodeError(
                "ERR",
                f"max number of blocked clients reached (max_blocked_clients {self.limit}); "
                "retry later or use a subscription",
            )
        self.count += 1
        self.total += 1
        try:
            yield
        finally:
            self.count -= 1


class Replication(Protocol):
    """The replication service (``replication/service.py``) as the request path uses it."""

    @property
    def replicas(self) -> Mapping[int, Any]: ...
    @property
    def layout(self) -> Sequence[Sequence[int]]: ...
    @property
    def cluster(self) -> ClusterRuntime: ...
    @property
    def forwarded(self) -> int: ...
    @property
    def stale_reads(self) -> int: ...

    def leader_of(self, partition: int) -> int | None: ...
    def next_request_id(self) -> int: ...
    def statistics(self) -> list[ReplicaStatistics]: ...
    def ready_now(self, partition: int) -> bool: ...
    async def ready_to_read(self, partition: int) -> None: ...
    async def forward(
        self, leader: int, message: ForwardAppend | ForwardRead | FetchEvents
    ) -> ForwardReply | ReadReply | EventsReply | WatermarksReply: ...
    async def fetch_events(
        self, source: int, partition: int, start: int, count: int, wait_ms: int,
        stream_id: bytes = b"", partition_key: bytes = b"",
    ) -> tuple[tuple[Event, ...], int]: ...  # fmt: skip


class ServerView(Protocol):
    """The RESP server (``server.py``) as connections, handlers and INFO use it."""

    @property
    def config(self) -> Config: ...
    @property
    def db(self) -> Database: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def cluster(self) -> ClusterRuntime | None: ...
    @property
    def replication(self) -> Replication | None: ...
    @property
    def stats(self) -> ServerStats: ...
    @property
    def command_stats(self) -> CommandStats: ...
    @property
    def lag(self) -> LagMonitor: ...
    @property
    def poller(self) -> Poller: ...
    @property
    def connections(self) -> Mapping[int, Client]: ...
    @property
    def blocked(self) -> BlockedClients: ...
    @property
    def started(self) -> float: ...
    @property
    def port(self) -> int: ...
    @property
    def partial_request_timeout_s(self) -> float: ...


class Reader(Protocol):
    """What a read handler needs: a client connection, or a read forwarded by another node."""

    @property
    def server(self) -> ServerView: ...
    @property
    def db(self) -> Database: ...
    @property
    def config(self) -> Config: ...
    @property
    def protocol(self) -> int: ...

    def _encode(self, value: object) -> bytes: ...


class Client(Reader, Protocol):
    """A client connection (``connection.py``) as the command handlers use it."""

    protocol: int
    authenticated: bool
    name: bytes
    lib_name: bytes
    closing: bool
    peer_gone: bool
    block_scope: trio.CancelScope | None

    @property
    def client_id(self) -> int: ...
    @property
    def stream(self) -> trio.SocketStream: ...
    @property
    def reader(self) -> RequestReader: ...
    @property
    def subscriptions(self) -> dict[bytes, Any]: ...
    @property
    def after_send(self) -> list[trio.Event]: ...
    @property
    def _nursery(self) -> trio.Nursery | None: ...

    async def send_push(self, data: bytes) -> None: ...
