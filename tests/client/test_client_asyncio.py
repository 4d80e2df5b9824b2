"""The asyncio flavour: the same commands, retries, subscriptions and aggregates as the
synchronous client, against a real node. (The suite runs under pytest-trio, so each test drives
its own asyncio loop with asyncio.run.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from client_helpers import PATIENT, BankAccount, unique
from faultproxy import FaultProxy
from nodeproc import NodeProcess

from sierradb.client import (
    AsyncClient,
    AsyncRepository,
    AsyncSubscription,
    Event,
    ExpectedVersion,
    NewEvent,
    RetryPolicy,
    WrongExpectedVersion,
)

DEADLINE_S = 30.0
FAST = RetryPolicy(max_attempts=5, base_delay_s=0.001, max_delay_s=0.01)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


async def take(subscription: AsyncSubscription, count: int) -> list[Event]:
    async def read() -> list[Event]:
        events = []
        async for event in subscription:
            events.append(event)
            if len(events) == count:
                break
        return events

    return await asyncio.wait_for(read(), DEADLINE_S)


def test_commands(shared_node: NodeProcess, protocol: int) -> None:
    async def main() -> None:
        async with AsyncClient(f"127.0.0.1:{shared_node.port}", protocol=protocol) as c:
            stream = unique("s")
            first = await c.append(stream, "A", b"1", expected_version=ExpectedVersion.EMPTY)
            with pytest.raises(WrongExpectedVersion) as raised:
                await c.append(stream, "B", expected_version=ExpectedVersion.EMPTY)
            assert raised.value.current == 0
            multi = await c.multi_append(
                first.partition_key,
                [NewEvent(stream, "B", expected_version=0), NewEvent(stream, "C")],
            )
            assert [e.stream_version for e in multi.events] == [1, 2]
            assert (await c.get(first.event_id)).payload == b"1"  # type: ignore[union-attr]
            assert await c.stream_version(stream) == 2
            assert await c.partition_sequence(first.partition_id) == multi.last_partition_sequence
            names = [e.event_name async for e in c.scan_stream(stream, page_size=1)]
            assert names == ["A", "B", "C"]
            seqs = [
                e.partition_sequence
                async for e in c.scan_partition(
                    first.partition_key, first.partition_sequence, page_size=2
                )
            ]
            assert seqs == list(range(first.partition_sequence, multi.last_partition_sequence + 1))
            page = await c.scan_stream_page(stream, 0, None, count=2)
            assert (len(page.events), page.has_more) == (2, True)
            with pytest.raises(ValueError):
                await c.scan_partition_page(await c.partition_count())

    run(main)


def test_a_lost_reply_is_retried_without_duplicate(
    proxy: FaultProxy, shared_node: NodeProcess
) -> None:
    async def main() -> None:
        stream = unique("s")
        async with AsyncClient(proxy.address, retry=FAST) as c:
            await c.ping()
            proxy.drop_next_replies(1)
            result = await c.append(stream, "E")
            assert [e.event_id async for e in c.scan_stream(stream)] == [result.event_id]
        assert proxy.count("EAPPEND") == 2

    run(main)


def test_subscription_history_live_and_close(proxy: FaultProxy, shared_node: NodeProcess) -> None:
    async def main() -> None:
        key = uuid.uuid4()
        async with AsyncClient(f"127.0.0.1:{shared_node.port}") as direct:
            first = (
                await direct.append(unique("s"), "E", b"0", partition_key=key)
            ).partition_sequence
            for i in range(1, 10):
                await direct.append(unique("s"), "E", b"%d" % i, partition_key=key)
            async with AsyncClient(proxy.address) as c:
                async with c.subscribe_partitions(key, from_sequence=first, window=3) as sub:
                    history = await take(sub, 10)
                    for i in range(10, 13):
                        await direct.append(unique("s"), "E", b"%d" % i, partition_key=key)
                    live = await take(sub, 3)
                assert [e.payload for e in history + live] == [b"%d" % i for i in range(13)]
                assert proxy.count("EACK") >= 3
                assert proxy.count("EUNSUB") == 1

                # aclose() from another task ends an iteration that waits for events.
                sub = c.subscribe(unique("s"))
                await sub.start()
                reader = asyncio.create_task(take(sub, 1))
                await asyncio.sleep(0.2)
                await sub.aclose()
                assert await asyncio.wait_for(reader, DEADLINE_S) == []
                assert proxy.wait_for("EUNSUB", 2) == 2

    run(main)


def test_subscription_resumes_after_a_cut_and_a_silent_connection(
    proxy: FaultProxy, shared_node: NodeProcess
) -> None:
    async def main() -> None:
        stream = unique("s")
        async with (
            AsyncClient(f"127.0.0.1:{shared_node.port}") as direct,
            AsyncClient(proxy.address) as c,
        ):
            async with c.subscribe(
                stream, from_version=0, window=4, heartbeat_interval_s=0.2
            ) as sub:
                for i in range(6):
                    await direct.append(stream, "E", b"%d" % i)
                got = await take(sub, 3)
                proxy.cut_all()
                got += await take(sub, 3)
                proxy.freeze()
                await direct.append(stream, "E", b"6")
                got += await take(sub, 1)
        assert [e.payload for e in got] == [b"%d" % i for i in range(7)]
        assert proxy.count("ESUB") == 3
        assert proxy.count("PING") >= 1

    run(main)


@pytest.mark.slow
def test_subscription_resumes_after_the_node_restarts(
    node: NodeProcess, restart: Callable[[NodeProcess], NodeProcess]
) -> None:
    async def main() -> None:
        stream = unique("s")
        address = f"127.0.0.1:{node.port}"
        written: list[bytes] = []
        async with AsyncClient(address, retry=PATIENT, subscription_retry=PATIENT) as c:
            async with c.subscribe(stream, from_version=0, window=8) as sub:

                async def write() -> None:
                    for i in range(60):
                        await c.append(stream, "E", b"%d" % i)
                        written.append(b"%d" % i)
                        await asyncio.sleep(0.02)

                writer = asyncio.create_task(write())
                reader = asyncio.create_task(take(sub, 60))
                current = node
                for _ in range(2):
                    await asyncio.sleep(0.4)
                    current = await asyncio.to_thread(restart, current)
                await writer
                received = await reader
        assert [e.payload for e in received] == written

    run(main)


def test_aggregate_conflicts_are_retried_under_concurrent_tasks(shared_node: NodeProcess) -> None:
    async def main() -> None:
        account_id = unique("a")
        async with AsyncClient(f"127.0.0.1:{shared_node.port}") as c:
            accounts = AsyncRepository(c, BankAccount, max_attempts=100)
            await accounts.execute(account_id, lambda a: a.open("alice"))

            async def deposit_many() -> list[int]:
                return [
                    (await accounts.execute(account_id, lambda a: a.deposit(1))).attempts
                    for _ in range(10)
                ]

            attempts = await asyncio.gather(*(deposit_many() for _ in range(8)))
            account, version = await accounts.load(account_id)
        assert (account.balance, version) == (80, 80)
        assert sum(len(a) for a in attempts) == 80
        # Tasks interleave at every await: they did collide and were retried.
        assert max(max(a) for a in attempts) > 1

    run(main)
