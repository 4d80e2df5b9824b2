"""The asyncio client and its subscriptions, on redis.asyncio: the same API as `sync.Client`,
with coroutines, async iterators and `async with`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio.connection import Connection

from . import protocol
from .errors import SierraDBError
from .protocol import Arg, Partition, Request
from .retry import DEFAULT_RETRY, SUBSCRIPTION_RETRY, Attempts, RetryPolicy
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


class AsyncClient:
    """The asyncio twin of `sierradb.client.Client` (one event loop per client)."""

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
        self._nodes = [
            redis.asyncio.Redis(**self.settings.redis_kwargs(h, p, aio=True))
            for h, p in self.addresses
        ]
        self._current = 0
        self._partition_count: int | None = None

    # ------------------------------------------------------------------------ plumbing
    async def execute(self, request: Request[T]) -> T:
        attempts = self.retry.start()
        while True:
            index = self._current
            try:
                return request.parse(await self._nodes[index].execute_command(*request.args))
            except Exception as exc:  # noqa: BLE001 - translated, or re-raised
                error = translate(exc)
                if error is None:
                    raise
            await self._back_off(index, error, attempts)

    async def execute_many(self, requests: Sequence[Request[Any]]) -> list[Any]:
        if not requests:
            return []
        attempts = self.retry.start()
        while True:
            index = self._current
            try:
                pipe = self._nodes[index].pipeline(transaction=False)
                for r in requests:
                    pipe.execute_command(*r.args)
                replies = await pipe.execute(raise_on_error=False)
                failed = next((r for r in replies if isinstance(r, Exception)), None)
                if failed is None:
                    return [r.parse(v) for r, v in zip(requests, replies, strict=True)]
                raise failed
            except Exception as exc:  # noqa: BLE001 - translated, or re-raised
                error = translate(exc)
                if error is None:
                    raise
            await self._back_off(index, error, attempts)

    async def _back_off(self, index: int, error: SierraDBError, attempts: Attempts) -> None:
        if error.failover:
            self._fail_over(index)
        delay = attempts.next_delay(error)
        if delay is None:
            raise error
        await asyncio.sleep(delay)

    def _fail_over(self, index: int) -> None:
        if self._current == index:
            self._current = (index + 1) % len(self._nodes)

    def _connection(self, index: int) -> Connection:
        host, port = self.addresses[index]
        return Connection(**self.settings.redis_kwargs(host, port, aio=True))

    async def aclose(self) -> None:
        for node in self._nodes:
            await node.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------ commands
    async def _check(self, partition: Partition) -> Partition:
        """A partition id must exist (the server would answer CLUSTERDOWN, a retryable error)."""
        if isinstance(partition, int) and not 0 <= partition < await self.partition_count():
            raise ValueError(f"partition {partition} does not exist")
        return partition

    async def ping(self) -> None:
        await self.execute(protocol.ping())

    async def partition_count(self) -> int:
        if self._partition_count is None:
            hello = await self.execute(protocol.hello())
            self._partition_count = int(hello["num_partitions"])
        return self._partition_count

    async def append(
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
        return await self.execute(
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

    async def multi_append(
        self, partition_key: uuid.UUID, events: Sequence[NewEvent]
    ) -> MultiAppendResult:
        return await self.execute(protocol.multi_append(partition_key, events))

    async def get(self, event_id: uuid.UUID) -> Event | None:
        return await self.execute(protocol.get(event_id))

    async def stream_version(
        self, stream_id: str, partition_key: uuid.UUID | None = None
    ) -> int | None:
        return await self.execute(protocol.stream_version(stream_id, partition_key))

    async def partition_sequence(self, partition: Partition) -> int | None:
        return await self.execute(protocol.partition_sequence(await self._check(partition)))

    async def scan_stream_page(
        self,
        stream_id: str,
        start: int = 0,
        end: int | None = None,
        *,
        count: int = protocol.DEFAULT_PAGE_SIZE,
        partition_key: uuid.UUID | None = None,
    ) -> ScanPage:
        return await self.execute(
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
    ) -> AsyncIterator[Event]:
        return self._pages(protocol.stream_pager(stream_id, start, end, page_size, partition_key))

    async def scan_partition_page(
        self,
        partition: Partition,
        start: int = 0,
        end: int | None = None,
        *,
        count: int = protocol.DEFAULT_PAGE_SIZE,
    ) -> ScanPage:
        partition = await self._check(partition)
        return await self.execute(protocol.scan_partition(partition, start, end, count=count))

    async def scan_partition(
        self,
        partition: Partition,
        start: int = 0,
        end: int | None = None,
        *,
        page_size: int = protocol.DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Event]:
        pager = protocol.partition_pager(await self._check(partition), start, end, page_size)
        async for event in self._pages(pager):
            yield event

    async def _pages(self, pager: protocol.Pager) -> AsyncIterator[Event]:
        while not pager.done:
            for event in pager.feed(await self.execute(pager.request())):
                yield event

    # ------------------------------------------------------------------- subscriptions
    def subscribe(
        self,
        streams: StreamSelector,
        *,
        from_version: int | Mapping[str, int] | None = None,
        window: int = DEFAULT_WINDOW,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    ) -> AsyncSubscription:
        """Use as `async with client.subscribe(...) as sub: async for event in sub: ...`."""
        state = SubscriptionState(stream_targets(streams, from_version), window, partitions=False)
        return AsyncSubscription(self, state, heartbeat_interval_s)

    def subscribe_partitions(
        self,
        partitions: PartitionSelector = "*",
        *,
        from_sequence: int | Mapping[int, int] | None = None,
        window: int = DEFAULT_WINDOW,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    ) -> AsyncSubscription:
        async def make_state() -> SubscriptionState:
            count = await self.partition_count()
            targets = partition_targets(partitions, from_sequence, count)
            return SubscriptionState(targets, window, partitions=True)

        return AsyncSubscription(self, make_state, heartbeat_interval_s)


class AsyncSubscription(AsyncIterator[Event]):
    """The asyncio twin of `sync.Subscription`; it subscribes on `async with` (or on the first
    iteration) and `aclose()` ends it with EUNSUB, also from another task."""

    def __init__(
        self,
        client: AsyncClient,
        state: SubscriptionState | Callable[[], Awaitable[SubscriptionState]],
        heartbeat_interval_s: float,
    ) -> None:
        self._client = client
        self._state_source = state
        self._state: SubscriptionState | None = None
        self._heartbeat_s = heartbeat_interval_s
        self._conn: Connection | None = None
        self._node = client._current
        self._closed = False
        self._reading = False
        self._wake = asyncio.Event()
        self._attempts: Attempts | None = None

    @property
    def positions(self) -> dict[Any, int | None]:
        return {} if self._state is None else dict(self._state.positions)

    async def start(self) -> None:
        """Resolve the starting positions and subscribe (done once, by `async with`)."""
        if self._state is not None:
            return
        source = self._state_source
        state = source if isinstance(source, SubscriptionState) else await source()
        starts = state.start_requests()
        lasts = await self._client.execute_many([request for _, request in starts])
        for (target, _), last in zip(starts, lasts, strict=True):
            state.set_start(target, last)
        self._state = state
        try:
            await self._connect()
        except Exception as exc:  # noqa: BLE001 - first subscribe: retried like any request
            await self._recover(exc)

    async def __aenter__(self) -> AsyncSubscription:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Event:
        await self.start()
        while True:
            if self._closed:
                raise StopAsyncIteration
            self._reading = True
            try:
                event = await self._step()
            finally:
                self._reading = False
            if self._closed:
                await self._drop()
                raise StopAsyncIteration
            if event is not None:
                return event

    async def _step(self) -> Event | None:
        assert self._state is not None
        try:
            if self._conn is None:
                await self._connect()
            # Acknowledge what the caller took before reading on: an EACK that fails after a
            # frame was taken must not lose that frame's event (it is the caller's already).
            ack = self._state.ack_args()
            if ack is not None:
                await self._send(ack)
            frame = await self._read()
            if frame is None:
                return None
            return self._state.on_frame(frame)
        except Exception as exc:  # noqa: BLE001 - translated in _recover, or re-raised
            if self._closed:
                await self._drop()
                raise StopAsyncIteration from None
            await self._recover(exc)
            return None

    async def _connect(self) -> None:
        assert self._state is not None
        self._node = self._client._current
        conn = self._client._connection(self._node)
        self._conn = conn
        await conn.connect()
        await conn.send_command(*self._state.subscribe_args())
        self._state.on_subscribed(await conn.read_response(push_request=True))
        self._attempts = None

    async def _read(self) -> Any:
        """The next frame, or None after a quiet heartbeat interval."""
        assert self._conn is not None and self._state is not None
        try:
            frame = await self._conn.read_response(
                push_request=True, timeout=self._heartbeat_s, disconnect_on_error=False
            )
        except redis.exceptions.TimeoutError:
            frame = None
        if frame is None:  # redis.asyncio reports a read timeout as None (no frame is null)
            await self._send(self._state.on_quiet())
        return frame

    async def _send(self, args: tuple[Arg, ...]) -> None:
        assert self._conn is not None
        await self._conn.send_command(*args)

    async def _recover(self, exc: Exception) -> None:
        error = translate(exc)
        await self._drop()
        if error is None:
            raise exc
        if error.failover:
            self._client._fail_over(self._node)
        if self._attempts is None:
            self._attempts = self._client.subscription_retry.start()
        delay = self._attempts.next_delay(error)
        if delay is None:
            await self.aclose()
            raise error
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass  # the backoff delay passed without aclose()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if self._state is not None:
            self._state.on_disconnect()
        if conn is not None:
            await conn.disconnect()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        conn = self._conn
        if conn is None or self._state is None:
            return
        unsubscribe = self._state.unsubscribe_args()
        try:
            if unsubscribe is not None:
                await self._send(unsubscribe)
                if not self._reading:
                    await self._await_replies(conn)
        except (redis.exceptions.RedisError, OSError):
            pass  # the connection is closed below either way; the server ends its subscription
        finally:
            if self._reading:
                # The reading task wakes with a closed connection and drops it itself.
                await conn.disconnect(nowait=True)
            else:
                await self._drop()

    async def _await_replies(self, conn: Connection) -> None:
        assert self._state is not None
        deadline = time.monotonic() + UNSUBSCRIBE_TIMEOUT_S
        while self._state.pending_replies > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            frame = await conn.read_response(
                push_request=True, timeout=remaining, disconnect_on_error=False
            )
            if frame is None:
                return
            self._state.on_closing_frame(frame)
