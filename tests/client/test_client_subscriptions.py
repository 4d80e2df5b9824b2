"""Subscriptions as iterators: history then live, acknowledgements within the window, resumption
after a dropped connection or a restarted node with no gap and no duplicate, dead connections
found by heartbeats, and a clean EUNSUB on close."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from client_helpers import PATIENT, unique
from faultproxy import FaultProxy
from nodeproc import NodeProcess

from sierradb.client import Client, Event, NewEvent, Subscription

DEADLINE_S = 30.0


def take(subscription: Subscription, count: int) -> list[Event]:
    """The next `count` events, read in a thread so a hang fails the test instead of blocking."""
    events: list[Event] = []
    done = threading.Event()

    def read() -> None:
        for event in subscription:
            events.append(event)
            if len(events) == count:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(DEADLINE_S):
        subscription.close()
        got = [(e.stream_version, e.payload) for e in events]
        pytest.fail(f"only {len(events)} of {count} events arrived: {got}")
    return events


def test_partition_history_then_live_with_a_small_window(proxy: FaultProxy, client: Client) -> None:
    key = uuid.uuid4()
    first = client.append(unique("s"), "E", b"0", partition_key=key).partition_sequence
    for i in range(1, 20):
        client.append(unique("s"), "E", b"%d" % i, partition_key=key)
    with (
        Client(proxy.address) as c,
        c.subscribe_partitions(key, from_sequence=first, window=3) as sub,
    ):
        history = take(sub, 20)
        for i in range(20, 25):
            client.append(unique("s"), "E", b"%d" % i, partition_key=key)
        live = take(sub, 5)
    assert [e.payload for e in history + live] == [b"%d" % i for i in range(25)]
    assert [e.partition_sequence for e in history + live] == list(range(first, first + 25))
    # The server sends at most 3 unacknowledged events: the client must have acknowledged.
    assert proxy.count("EACK") >= 25 // 3
    assert proxy.count("EUNSUB") == 1


def test_live_only_subscription_starts_now(client: Client) -> None:
    stream = unique("s")
    client.append(stream, "Old")
    with client.subscribe(stream) as sub:
        client.append(stream, "New")
        [event] = take(sub, 1)
    assert (event.event_name, event.stream_version) == ("New", 1)


def test_several_streams_each_from_its_own_version(client: Client) -> None:
    a, b = unique("a"), unique("b")
    for i in range(3):
        client.append(a, f"A{i}")
        client.append(b, f"B{i}")
    with client.subscribe([a, b], from_version={a: 1, b: 2}) as sub:
        events = take(sub, 3)
    assert sorted(e.event_name for e in events) == ["A1", "A2", "B2"]
    assert [e.event_name for e in events if e.stream_id == a] == ["A1", "A2"]


def test_close_from_another_thread_wakes_the_iteration(proxy: FaultProxy) -> None:
    with Client(proxy.address) as c:
        sub = c.subscribe(unique("s"))
        ended = threading.Event()

        def iterate() -> None:
            for _ in sub:
                pass
            ended.set()

        threading.Thread(target=iterate, daemon=True).start()
        time.sleep(0.2)  # let it block on the socket
        sub.close()
        assert ended.wait(DEADLINE_S)
    assert proxy.wait_for("EUNSUB", 1) == 1
    assert list(sub) == []


def test_resumes_after_a_cut_connection(proxy: FaultProxy, client: Client) -> None:
    stream = unique("s")
    with Client(proxy.address) as c, c.subscribe(stream, from_version=0, window=4) as sub:
        for i in range(6):
            client.append(stream, "E", b"%d" % i)
        first = take(sub, 3)
        proxy.cut_all()
        for i in range(6, 9):
            client.append(stream, "E", b"%d" % i)
        rest = take(sub, 6)
    assert [e.payload for e in first + rest] == [b"%d" % i for i in range(9)]
    assert proxy.count("ESUB") == 2


def test_a_silent_connection_is_found_dead_by_heartbeats(proxy: FaultProxy, client: Client) -> None:
    stream = unique("s")
    with (
        Client(proxy.address) as c,
        c.subscribe(stream, from_version=0, heartbeat_interval_s=0.2) as sub,
    ):
        client.append(stream, "E", b"0")
        take(sub, 1)
        proxy.freeze()  # the connection stays open, nothing moves
        client.append(stream, "E", b"1")
        [event] = take(sub, 1)
    assert event.payload == b"1"
    assert proxy.count("PING") >= 1
    assert proxy.count("ESUB") == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["stream", "partition"])
def test_resumes_after_the_node_restarts_under_a_live_subscriber(
    node: NodeProcess, restart: Callable[[NodeProcess], NodeProcess], kind: str
) -> None:
    """kill -9 the node twice while a writer appends and a subscriber follows: the subscriber
    gets every acknowledged event exactly once, in order."""
    stream, key = unique("s"), uuid.uuid4()
    written: list[bytes] = []
    stop = threading.Event()
    address = f"127.0.0.1:{node.port}"

    def write() -> None:
        with Client(address, retry=PATIENT) as c:
            i = 0
            while not stop.is_set():
                batch = [b"%d" % i, b"%d+" % i] if i % 4 == 0 else [b"%d" % i]
                c.multi_append(key, [NewEvent(stream, "E", p) for p in batch])
                written.extend(batch)
                i += 1
                time.sleep(0.005)

    with Client(address, subscription_retry=PATIENT) as c:
        sub = (
            c.subscribe([(stream, key)], from_version=0, window=16)
            if kind == "stream"
            else c.subscribe_partitions(key, from_sequence=0, window=16)
        )
        received: list[bytes] = []
        reader_done = threading.Event()

        def read() -> None:
            for event in sub:
                received.append(event.payload)
            reader_done.set()

        threading.Thread(target=read, daemon=True).start()
        writer = threading.Thread(target=write)
        writer.start()
        current = node
        for _ in range(2):
            time.sleep(0.6)
            current = restart(current)
        time.sleep(0.6)
        stop.set()
        writer.join(DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while len(received) < len(written) and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.close()
        assert reader_done.wait(DEADLINE_S)
    assert len(written) > 20
    assert received == written
