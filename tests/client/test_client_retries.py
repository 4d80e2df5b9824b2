"""Retries: a request resent after a lost reply, a retryable error or a dead node never
duplicates an event, final errors are not resent, retries are bounded, and the client fails
over to the next address."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from client_helpers import PATIENT, unique
from faultproxy import FaultProxy
from nodeproc import NodeProcess

from sierradb.client import (
    Client,
    ConnectionFailed,
    ExpectedVersion,
    NewEvent,
    RetryPolicy,
    TryAgain,
    WrongExpectedVersion,
)

FAST = RetryPolicy(max_attempts=5, base_delay_s=0.001, max_delay_s=0.01)


def test_an_append_whose_reply_was_lost_is_stored_once(
    proxy: FaultProxy, shared_node: NodeProcess
) -> None:
    stream = unique("s")
    with Client(proxy.address, retry=FAST) as c:
        c.ping()  # the connection exists, so the next reply dropped is the append's
        proxy.drop_next_replies(1)
        result = c.append(stream, "E", b"once", expected_version=ExpectedVersion.EMPTY)
    assert proxy.count("EAPPEND") == 2  # executed, reply lost, sent again
    with Client(f"127.0.0.1:{shared_node.port}") as direct:
        events = list(direct.scan_stream(stream))
    assert [(e.event_id, e.payload) for e in events] == [(result.event_id, b"once")]
    assert result.stream_version == 0


def test_a_multi_append_whose_reply_was_lost_is_stored_once(
    proxy: FaultProxy, shared_node: NodeProcess
) -> None:
    key, a, b = uuid.uuid4(), unique("a"), unique("b")
    with Client(proxy.address, retry=FAST) as c:
        c.ping()
        proxy.drop_next_replies(1)
        result = c.multi_append(key, [NewEvent(a, "A"), NewEvent(b, "B"), NewEvent(a, "A")])
    assert proxy.count("EMAPPEND") == 2
    with Client(f"127.0.0.1:{shared_node.port}") as direct:
        events = list(direct.scan_partition(key, result.first_partition_sequence))
    assert [e.event_id for e in events] == [e.event_id for e in result.events]


@pytest.mark.parametrize("reply", [b"-TRYAGAIN leader changed\r\n", b"-TIMEOUT timed out\r\n"])
def test_retryable_errors_are_retried(
    proxy: FaultProxy, shared_node: NodeProcess, reply: bytes
) -> None:
    stream = unique("s")
    with Client(proxy.address, retry=FAST) as c:
        c.ping()
        proxy.answer_next_requests(reply, 2)
        result = c.append(stream, "E")
    assert proxy.count("EAPPEND") == 3
    with Client(f"127.0.0.1:{shared_node.port}") as direct:
        assert [e.event_id for e in direct.scan_stream(stream)] == [result.event_id]


def test_final_errors_are_not_retried(proxy: FaultProxy) -> None:
    stream = unique("s")
    with Client(proxy.address, retry=FAST) as c:
        c.append(stream, "E")
        with pytest.raises(WrongExpectedVersion):
            c.append(stream, "E", expected_version=ExpectedVersion.EMPTY)
    assert proxy.count("EAPPEND") == 2


def test_retries_are_bounded(proxy: FaultProxy) -> None:
    with Client(proxy.address, retry=RetryPolicy(max_attempts=4, base_delay_s=0.001)) as c:
        c.ping()
        proxy.answer_next_requests(b"-TRYAGAIN busy\r\n", 100)
        with pytest.raises(TryAgain):
            c.append(unique("s"), "E")
    assert proxy.count("EAPPEND") == 4


def test_a_reply_that_never_comes_times_out_and_is_retried_on_a_new_connection(
    proxy: FaultProxy, shared_node: NodeProcess
) -> None:
    """The socket timeout holds on the shared connection (it is the kernel's there): a hung
    connection fails the request with ConnectionFailed, and a retry on a fresh connection
    stores the event once."""
    stream = unique("s")
    with Client(proxy.address, socket_timeout_s=0.5, retry=RetryPolicy(max_attempts=1)) as c:
        c.ping()
        proxy.freeze()  # the open connection hangs: the request is never answered
        with pytest.raises(ConnectionFailed, match="Timeout"):
            c.append(stream, "E")
    with Client(proxy.address, socket_timeout_s=0.5, retry=FAST) as c:
        c.ping()
        proxy.freeze()
        result = c.append(stream, "E")  # times out, then goes out on a new connection
    with Client(f"127.0.0.1:{shared_node.port}") as direct:
        assert [e.event_id for e in direct.scan_stream(stream)] == [result.event_id]


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_failover_to_the_next_address(shared_node: NodeProcess) -> None:
    with Client([_dead_address(), f"127.0.0.1:{shared_node.port}"], retry=FAST) as c:
        assert c.append(unique("s"), "E").stream_version == 0
        assert c._current == 1


def test_not_leader_moves_to_the_next_address(proxy: FaultProxy, shared_node: NodeProcess) -> None:
    with Client([proxy.address, f"127.0.0.1:{shared_node.port}"], retry=FAST) as c:
        c.ping()
        proxy.answer_next_requests(b"-NOTLEADER partition 3 is led by another node\r\n")
        stream = unique("s")
        c.append(stream, "E")
        assert c.stream_version(stream) == 0
    assert proxy.count("EAPPEND") == 1


@pytest.mark.slow
def test_appends_survive_kill_9_and_restart_without_duplicates(
    node: NodeProcess, restart: Callable[[NodeProcess], NodeProcess]
) -> None:
    """A writer appends without pause while the node is killed (-9) and restarted twice;
    requests cut at any point are resent, and the stream holds every event exactly once."""
    stream, key = unique("s"), uuid.uuid4()
    written: list[bytes] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        with Client(f"127.0.0.1:{node.port}", retry=PATIENT) as c:
            i = 0
            while not stop.is_set():
                try:
                    if i % 3:
                        c.append(stream, "E", b"%d" % i, partition_key=key)
                        written.append(b"%d" % i)
                    else:
                        batch = [b"%d" % i, b"%d+" % i]
                        c.multi_append(key, [NewEvent(stream, "M", p) for p in batch])
                        written.extend(batch)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                    return
                i += 1

    writer = threading.Thread(target=write)
    writer.start()
    current = node
    for _ in range(2):
        time.sleep(0.7)
        current = restart(current)
    time.sleep(0.7)
    stop.set()
    writer.join(60)
    assert not writer.is_alive()
    assert not errors, errors
    with Client(f"127.0.0.1:{current.port}") as c:
        stored = [e.payload for e in c.scan_stream(stream, partition_key=key)]
    assert len(written) > 20
    assert stored == written


@pytest.mark.slow
def test_threads_sharing_a_connection_get_their_own_replies_across_cuts(
    proxy: FaultProxy, shared_node: NodeProcess
) -> None:
    """Eight threads pipeline requests on the client's one connection while it is cut again
    and again: every thread gets its own replies, and every stream holds its events once."""
    threads, appends = 8, 40
    streams = [unique(f"t{i}") for i in range(threads)]
    errors: list[BaseException] = []
    with Client(proxy.address, retry=PATIENT) as c:

        def write(stream: str) -> None:
            try:
                for n in range(appends):
                    result = c.append(stream, "E", b"%d" % n)
                    assert result.stream_version == n, (stream, n, result)
                    assert c.stream_version(stream) == n
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        workers = [threading.Thread(target=write, args=(s,)) for s in streams]
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            time.sleep(0.05)
            proxy.cut_all()
        assert not errors, errors
    assert proxy.count("EAPPEND") > threads * appends  # some were cut and resent
    with Client(f"127.0.0.1:{shared_node.port}") as direct:
        for stream in streams:
            stored = [e.payload for e in direct.scan_stream(stream)]
            assert stored == [b"%d" % n for n in range(appends)]
