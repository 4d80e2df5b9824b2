"""The synchronous client (thread-safe) and its subscriptions, on redis-py.

Every method builds a `Request` (protocol.py), sends it to the current node and parses the reply;
failures go through the retry policy (retry.py), which may move on to the next node.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis
from redis.connection import Connection

from . import protocol
from .errors import SierraDBError
from .protocol import Arg, Partition, Request
from .retry import DEFAULT_RETRY, SUBSCRIPTION_RETRY, Attempts, RetryPolicy
from .shared_connection import SharedConnection
from .subscription import (
    PartitionSelector,
    StreamSelector,
    SubscriptionState,
    partition_targets,
    stream_targets,
)
from .transport import (
    DEFAULT_ADDRESS,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_SOCKET_TIMEOUT_S,
    DEFAULT_WINDOW,
    UNSUBSCRIBE_TIMEOUT_S,
    ConnectionSettings,
    parse_addresses,
    translate,
)
from .types import (
    AppendResult,
    Event,
    Expected,
    ExpectedVersion,
    MultiAppendResult,
    NewEvent,
    ScanPage,
)

T = TypeVar("T")


class Client:
    """Requests go to one node and fail over to the next of `addresses` (`"host:port"`, a
    comma-separated list, or a sequence of them). Every method is safe to call from several
    threads: they share one connection per node, pipelined (shared_connection.py).
    """

    def __init__(
        self,
        addresses: str | Sequence[str] = DEFAULT_ADDRESS,
        *,
        username: str | None = None,
        password: str | None = None,
        protocol: int = 3,
        socket_timeout_s: float | None = DEFAULT_SOCKET_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        client_name: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        subscription_retry: RetryPolicy = SUBSCRIPTION_RETRY,
    ) -> None:
        self.addresses = parse_addresses(addresses)
        self.settings = ConnectionSettings(
            username, password, protocol, socket_timeout_s, connect_timeout_s, client_name
        )
        self.retry = retry
        self.subscription_retry = subscription_retry
        self._connectors = [
            functools.partial(Connection, **self.settings.redis_kwargs(h, p))
            for h, p in self.addresses
        ]
        self._nodes = [SharedConnection(connect) for connect in self._connectors]
        self._current = 0
        self._partition_count: int | None = None

    # ------------------------------------------------------------------------ plumbing
    def execute(self, request: Request[T]) -> T:
        """Send one request, with retries and failover (execute_many for one request, without
        its lists: this is every command's path)."""
        attempts = self.retry.start()
        commands = (request.args,)
        while True:
            index = self._current
            try:
                reply = self._nodes[index].call(commands)[0]
                if isinstance(reply, Exception):
                    raise reply
                return request.parse(reply)
            except Exception as exc:  # noqa: BLE001 - translated, or re-raised
                error = translate(exc)
                if error is None:
                    raise
            self._back_off(index, error, attempts)

    def execute_many(self, requests: Sequence[Request[Any]]) -> list[Any]:
        """Send requests in one pipeline (not a transaction: each succeeds or fails alone, and
        the first failure is raised after retries)."""
        if not requests:
            return []
        attempts = self.retry.start()
        while True:
            index = self._current
            try:
                replies = self._nodes[index].call([r.args for r in requests])
                failed = next((r for r in replies if isinstance(r, Exception)), None)
                if failed is None:
                    return [r.parse(v) for r, v in zip(requests, replies, strict=True)]
                raise failed
            except Exception as exc:  # noqa: BLE001 - translated, or re-raised
                error = translate(exc)
                if error is None:
                    raise
            self._back_off(index, error, attempts)

    def _back_off(self, index: int, error: SierraDBError, attempts: Attempts) -> None:
        if error.failover:
            self._fail_over(index)
        delay = attempts.next_delay(error)
        if delay is None:
            raise error
        time.sleep(delay)

    def _fail_over(self, index: int) -> None:
        if self._current == index:
            self._current = (index + 1) % len(self._nodes)

    def _connection(self, index: int) -> Connection:
        """A new connection of its own (for a subscription) to node `index`."""
        return self._connectors[index]()

    def close(self) -> None:
        for node in self._nodes:
            node.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ commands
    def _check(self, partition: Partition) -> Partition:
        """A partition id must exist (the server would answer CLUSTERDOWN, a retryable error)."""
        if isinstance(partition, int) and not 0 <= partition < self.partition_count():
            raise ValueError(f"partition {partition} does not exist")
        return partition

    def ping(self) -> None:
        self.execute(protocol.ping())

    def partition_count(self) -> int:
        """The cluster's number of partitions (asked once, from HELLO)."""
        if self._partition_count is None:
            self._partition_count = int(self.execute(protocol.hello())["num_partitions"])
        return self._partition_count

    def append(
        self,
        stream_id: str,
        event_name: str,
        payload: bytes = b"",
        *,
        metadata: bytes = b"",
        expected_version: Expected = ExpectedVersion.ANY,
        partition_key: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
        timestamp: datetime | None = None,
    ) -> AppendResult:
        return self.execute(
            protocol.append(
                stream_id,
                event_name,
                payload,
                metadata=metadata,
                expected_version=expected_version,
                partition_key=partition_key,
                event_id=event_id,
                timestamp=timestamp,
            )
        )

    def multi_append(
        self, partition_key: uuid.UUID, events: Sequence[NewEvent]
    ) -> MultiAppendResult:
        """Append events of one partition atomically (all or none)."""
        return self.execute(protocol.multi_append(partition_key, events))

    def get(self, event_id: uuid.UUID) -> Event | None:
        return self.execute(protocol.get(event_id))

    def stream_version(self, stream_id: str, partition_key: uuid.UUID | None = None) -> int | None:
        """The version of the stream's last event, or None for an empty stream."""
        return self.execute(protocol.stream_version(stream_id, partition_key))

    def partition_sequence(self, partition: Partition) -> int | None:
        """The sequence of the partition's last event, or None for an empty partition."""
        return self.execute(protocol.partition_sequence(self._check(partition)))

    def scan_stream_page(
        self,
        stream_id: str,
        start: int = 0,
        end: int | None = None,
        *,
        count: int = protocol.DEFAULT_PAGE_SIZE,
        partition_key: uuid.UUID | None = None,
    ) -> ScanPage:
        return self.execute(
            protocol.scan_stream(stream_id, start, end, count=count, partition_key=partition_key)
        )

    def scan_stream(
        self,
        stream_id: str,
        start: int = 0,
        end: int | None = None,
        *,
        page_size: int = protocol.DEFAULT_PAGE_SIZE,
        partition_key: uuid.UUID | None = None,
    ) -> Iterator[Event]:
        """The stream's events from version `start` to `end` (inclusive; None: the last)."""
        return self._pages(protocol.stream_pager(stream_id, start, end, page_size, partition_key))

    def scan_partition_page(
        self,
        partition: Partition,
        start: int = 0,
        end: int | None = None,
        *,
        count: int = protocol.DEFAULT_PAGE_SIZE,
    ) -> ScanPage:
        partition = self._check(partition)
        return self.execute(protocol.scan_partition(partition, start, end, count=count))

    def scan_partition(
        self,
        partition: Partition,
        start: int = 0,
        end: int | None = None,
        *,
        page_size: int = protocol.DEFAULT_PAGE_SIZE,
    ) -> Iterator[Event]:
        """The partition's events from sequence `start` to `end` (inclusive; None: the last)."""
        pager = protocol.partition_pager(self._check(partition), start, end, page_size)
        return self._pages(pager)

    def _pages(self, pager: protocol.Pager) -> Iterator[Event]:
        while not pager.done:
            yield from pager.feed(self.execute(pager.request()))

    # ------------------------------------------------------------------- subscriptions
    def subscribe(
        self,
        streams: StreamSelector,
        *,
        from_version: int | Mapping[str, int] | None = None,
        window: int = DEFAULT_WINDOW,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    ) -> Subscription:
        """Follow streams: their events from `from_version` (None: only events appended from
        now on), then live, resuming by itself after a lost connection."""
        state = SubscriptionState(stream_targets(streams, from_version), window, partitions=False)
        return Subscription(self, state, heartbeat_interval_s)

    def subscribe_partitions(
        self,
        partitions: PartitionSelector = "*",
        *,
        from_sequence: int | Mapping[int, int] | None = None,
        window: int = DEFAULT_WINDOW,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    ) -> Subscription:
        """Follow partitions (`"*"`: all of them), as `subscribe` follows streams."""
        targets = partition_targets(partitions, from_sequence, self.partition_count())
        state = SubscriptionState(targets, window, partitions=True)
        return Subscription(self, state, heartbeat_interval_s)


class Subscription(Iterator[Event]):
    """An iterator of events on a connection of its own (see subscription.py for how it resumes).

    `close()` ends it with EUNSUB; it may be called from another thread, which wakes an iteration
    that is waiting for events (the iteration then stops).
    """

    def __init__(
        self, client: Client, state: SubscriptionState, heartbeat_interval_s: float
    ) -> None:
        self._client = client
        self._state = state
        self._heartbeat_s = heartbeat_interval_s
        self._conn: Connection | None = None
        self._node = client._current
        self._lock = threading.Lock()  # closed / reading flags
        self._send_lock = threading.Lock()  # the reader's EACK/PING and close()'s EUNSUB
        self._closed = False
        self._reading = False
        self._wake = threading.Event()
        self._attempts: Attempts | None = None
        starts = state.start_requests()
        lasts = client.execute_many([request for _, request in starts])
        for (target, _), last in zip(starts, lasts, strict=True):
            state.set_start(target, last)
        try:
            self._connect()
        except Exception as exc:  # noqa: BLE001 - first subscribe: retried like any request
            self._recover(exc)

    @property
    def positions(self) -> dict[Any, int | None]:
        """The next undelivered position of each target (a copy)."""
        return dict(self._state.positions)

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Event:
        while True:
            with self._lock:
                if self._closed:
                    raise StopIteration
                self._reading = True
            try:
                event = self._step()
            finally:
                with self._lock:
                    self._reading = False
            if self._closed:
                self._drop()
                raise StopIteration
            if event is not None:
                return event

    def _step(self) -> Event | None:
        try:
            if self._conn is None:
                self._connect()
            # Acknowledge what the caller took before reading on: an EACK that fails after a
            # frame was taken must not lose that frame's event (it is the caller's already).
            ack = self._state.ack_args()
            if ack is not None:
                self._send(ack)
            frame = self._read()
            if frame is None:
                return None
            return self._state.on_frame(frame)
        except Exception as exc:  # noqa: BLE001 - translated in _recover, or re-raised
            if self._closed:
                self._drop()
                raise StopIteration from None
            self._recover(exc)
            return None

    def _connect(self) -> None:
        self._node = self._client._current
        conn = self._client._connection(self._node)
        self._conn = conn
        conn.connect()
        conn.send_command(*self._state.subscribe_args())
        self._state.on_subscribed(conn.read_response(push_request=True))
        self._attempts = None

    def _read(self) -> Any:
        """The next frame, or None after a quiet heartbeat interval."""
        assert self._conn is not None
        try:
            return self._conn.read_response(
                push_request=True, timeout=self._heartbeat_s, disconnect_on_error=False
            )
        except redis.exceptions.TimeoutError:
            self._send(self._state.on_quiet())
            return None

    def _send(self, args: tuple[Arg, ...]) -> None:
        assert self._conn is not None
        with self._send_lock:
            self._conn.send_command(*args)

    def _recover(self, exc: Exception) -> None:
        """Drop the connection and wait before the next one; raise when retries are spent."""
        error = translate(exc)
        if error is None:
            self._drop()
            raise exc
        self._drop()
        if error.failover:
            self._client._fail_over(self._node)
        if self._attempts is None:
            self._attempts = self._client.subscription_retry.start()
        delay = self._attempts.next_delay(error)
        if delay is None:
            self.close()
            raise error
        self._wake.wait(delay)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._state.on_disconnect()
        if conn is not None:
            conn.disconnect()

    def close(self) -> None:
        """EUNSUB and close the connection (from any thread; later iterations stop)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            reading = self._reading
        self._wake.set()
        conn = self._conn
        if conn is None:
            return
        unsubscribe = self._state.unsubscribe_args()
        try:
            if unsubscribe is not None:
                self._send(unsubscribe)
                if not reading:
                    self._await_replies(conn)
        except (redis.exceptions.RedisError, OSError):
            pass  # the connection is closed below either way; the server ends its subscription
        finally:
            if reading:
                # Wake the reading thread (it drops the connection itself when it sees closed).
                sock = getattr(conn, "_sock", None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            else:
                self._drop()

    def _await_replies(self, conn: Connection) -> None:
        """Read until the EUNSUB reply (pushes already on their way are dropped)."""
        deadline = time.monotonic() + UNSUBSCRIBE_TIMEOUT_S
        while self._state.pending_replies > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            frame = conn.read_response(
                push_request=True, timeout=remaining, disconnect_on_error=False
            )
            self._state.on_closing_frame(frame)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
