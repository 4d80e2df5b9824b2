"""Idle connections wait in the server's poller (node/poller.py), which serves a batch of appends
in place: these tests cover that path and each way the connection's task takes over from it."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from resp_client import (
    Err,
    RawClient,
    as_dict,
    encode_command,
    event_id_for_stream,
    key_in_partition,
    module_node,
    scan,
    unique,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_node(tmp_path_factory)


def parked(c: RawClient) -> RawClient:
    """`c` once its connection waits in the poller (a round trip, then a moment to park)."""
    assert c.call("PING") == "PONG"
    time.sleep(0.05)
    return c


def appends(stream: str, count: int) -> bytes:
    return b"".join(
        encode_command("EAPPEND", stream, "E", "PAYLOAD", f"p{i}") for i in range(count)
    )


def test_a_pipelined_batch_of_appends_is_answered_in_request_order(server):
    stream = unique()
    with parked(RawClient(server.port)) as c:
        c.send_raw(appends(stream, 64))
        versions = [as_dict(c.read())[b"stream_version"] for _ in range(64)]
        assert versions == list(range(64))
        c.expect_nothing(0.2)
        _more, events = scan(c.call("ESCAN", stream, "-", "+"))
        assert [e[b"payload"] for e in events] == [f"p{i}".encode() for i in range(64)]


def test_a_pipeline_longer_than_one_writev_takes_is_answered_whole(server):
    stream = unique()
    count = 3000  # small requests: more than IOV_MAX (1024) replies from one read
    with parked(RawClient(server.port)) as c:
        c.send_raw(b"".join(encode_command("EAPPEND", stream, "E") for _ in range(count)))
        versions = [as_dict(c.read())[b"stream_version"] for _ in range(count)]
        assert versions == list(range(count))
        batch = b"".join(encode_command("ESCAN", stream, i, i) for i in range(count))
        c.send_raw(batch)
        found = [[e[b"stream_version"] for e in scan(c.read())[1]] for _ in range(count)]
        assert found == [[i] for i in range(count)]


def test_an_append_refused_inside_a_batch_answers_in_its_place(server):
    stream = unique()
    batch = (
        appends(stream, 2)
        + encode_command("EAPPEND", stream, "E", "TIMESTAMP", 9223372036855)  # DBOPFAILED
        + encode_command("EAPPEND", stream, "E", "EXPECTED_VERSION", 0)  # WRONGVER: it is 1
        + appends(stream, 1)
    )
    with parked(RawClient(server.port)) as c:
        c.send_raw(batch)
        replies = [c.read() for _ in range(5)]
        assert as_dict(replies[0])[b"stream_version"] == 0
        assert as_dict(replies[1])[b"stream_version"] == 1
        assert type(replies[2]) is Err and replies[2].startswith("DBOPFAILED ")
        assert type(replies[3]) is Err and replies[3].startswith("WRONGVER ")
        assert as_dict(replies[4])[b"stream_version"] == 2
        c.expect_nothing(0.2)


def test_a_retried_append_is_answered_with_the_original(server):
    """A retry with the same EVENT_ID is an idempotent replay, whose waiter is not a callback
    confirmation: the poller hands it to the connection's task."""
    stream = unique()
    eid = event_id_for_stream(stream)
    with parked(RawClient(server.port)) as c:
        first = as_dict(c.call("EAPPEND", stream, "E", "EVENT_ID", eid))
        again = [as_dict(c.call("EAPPEND", stream, "E", "EVENT_ID", eid)) for _ in range(3)]
        assert all(a == first for a in again)
        assert as_dict(c.call("EAPPEND", stream, "E"))[b"stream_version"] == 1


def test_a_batch_mixing_appends_and_reads_sees_its_own_writes(server):
    stream = unique()
    with parked(RawClient(server.port)) as c:
        c.send_raw(
            appends(stream, 3) + encode_command("ESCAN", stream, "-", "+") + appends(stream, 1)
        )
        replies = [c.read() for _ in range(5)]
        assert [as_dict(r)[b"stream_version"] for r in replies[:3]] == [0, 1, 2]
        assert len(scan(replies[3])[1]) == 3
        assert as_dict(replies[4])[b"stream_version"] == 3


def test_appends_followed_by_a_partial_request_are_answered_and_it_completes_later(server):
    stream = unique()
    rest = encode_command("EAPPEND", stream, "E", "PAYLOAD", "last")
    with parked(RawClient(server.port)) as c:
        c.send_raw(appends(stream, 3) + rest[:7])
        assert [as_dict(c.read())[b"stream_version"] for _ in range(3)] == [0, 1, 2]
        c.expect_nothing(0.3)
        c.send_raw(rest[7:])
        assert as_dict(c.read())[b"stream_version"] == 3


def test_a_partial_request_after_appends_is_still_timed(tmp_path_factory):
    """The appends are served in place, but the partial request after them must still complete
    within the request timeout: the connection's task takes over to time it."""
    timeout_s = 1.0
    node = module_node(tmp_path_factory, "--request-timeout", str(timeout_s))
    server = next(node)
    try:
        stream = unique()
        with parked(RawClient(server.port)) as c:
            c.send_raw(appends(stream, 2) + encode_command("EAPPEND", stream, "E")[:9])
            assert [as_dict(c.read())[b"stream_version"] for _ in range(2)] == [0, 1]
            started = time.monotonic()
            reply = c.read(timeout=timeout_s * 10)
            assert reply == "ERR Protocol error: request not completed in time"
            assert time.monotonic() - started < timeout_s * 5
            assert c.closed_by_server()
    finally:
        node.close()


def test_appends_before_malformed_input_are_answered_then_the_error_closes(server):
    stream = unique()
    with parked(RawClient(server.port)) as c:
        c.send_raw(appends(stream, 2) + b"*1\r\n$x\r\n")
        assert [as_dict(c.read())[b"stream_version"] for _ in range(2)] == [0, 1]
        reply = c.read()
        assert type(reply) is Err and reply.startswith("ERR Protocol error")
        assert c.closed_by_server()
    with parked(RawClient(server.port)) as c:
        assert len(scan(c.call("ESCAN", stream, "-", "+"))[1]) == 2


def test_many_connections_appending_at_once_are_all_answered(server):
    stream = unique()
    count, rounds = 40, 5
    clients = [parked(RawClient(server.port)) for _ in range(count)]
    try:
        for _ in range(rounds):
            for c in clients:
                c.send("EAPPEND", stream, "E")
            for c in clients:
                assert b"stream_version" in as_dict(c.read())
        _more, events = scan(clients[0].call("ESCAN", stream, "-", "+", "COUNT", 1000))
        assert [e[b"stream_version"] for e in events] == list(range(count * rounds))
    finally:
        for c in clients:
            c.close()


def test_a_client_gone_before_its_answer_leaves_the_node_serving(server):
    stream = unique()
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"PING\r\n")
        assert s.recv(16) == b"+PONG\r\n"
        time.sleep(0.01)
        s.sendall(appends(stream, 8))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset, likely before the commit answers
    with parked(RawClient(server.port)) as c:
        assert c.call("PING") == "PONG"
        events = scan(c.call("ESCAN", stream, "-", "+", "COUNT", 1000))[1]
        assert [e[b"stream_version"] for e in events] == list(range(len(events)))


def test_connections_that_share_one_socket_between_threads_get_every_reply(server):
    """Two threads pipelining on one connection: requests arrive while the last batch's
    answers are pending, which the poller hands to the connection's task."""
    stream = unique()
    with parked(RawClient(server.port)) as c:
        per_thread = 200

        def send() -> None:
            for _ in range(per_thread):
                c.send_raw(appends(stream, 1))

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        replies = [as_dict(c.read()) for _ in range(2 * per_thread)]
        for t in threads:
            t.join()
        assert [r[b"stream_version"] for r in replies] == list(range(2 * per_thread))


def test_a_pipelined_batch_of_reads_is_answered_in_request_order(server):
    streams = [unique() for _ in range(3)]
    with parked(RawClient(server.port)) as c:
        for n, stream in enumerate(streams):
            c.send_raw(appends(stream, n + 1))
            [c.read() for _ in range(n + 1)]
        time.sleep(0.05)
        batch = b"".join(encode_command("ESCAN", s, "-", "+") for s in streams * 2)
        c.send_raw(batch + encode_command("EPSCAN", 0, "-", "+", "COUNT", 1))
        counts = [len(scan(c.read())[1]) for _ in range(6)]
        assert counts == [1, 2, 3, 1, 2, 3]
        assert len(scan(c.read())[1]) <= 1
        c.expect_nothing(0.2)


def test_reads_before_a_command_of_the_task_are_answered_first(server):
    stream = unique()
    with parked(RawClient(server.port)) as c:
        c.send_raw(appends(stream, 2))
        [c.read() for _ in range(2)]
        time.sleep(0.05)
        c.send_raw(
            encode_command("ESCAN", stream, "-", "+")
            + encode_command("ESVER", stream)  # served by the task (a read thread)
            + encode_command("ESCAN", stream, "1", "+")
            + encode_command("ECHO", "after")
        )
        assert len(scan(c.read())[1]) == 2
        assert c.read() == 1
        assert [e[b"stream_version"] for e in scan(c.read())[1]] == [1]
        assert c.read() == b"after"


def test_a_blocking_read_with_nothing_to_return_waits_for_the_append(server):
    stream = unique()
    with parked(RawClient(server.port)) as reader, RawClient(server.port) as writer:
        reader.send("ESCAN", stream, "-", "+", "BLOCK", 10_000)
        reader.expect_nothing(0.3)
        assert as_dict(writer.call("EAPPEND", stream, "E"))[b"stream_version"] == 0
        assert [e[b"stream_version"] for e in scan(reader.read())[1]] == [0]


def test_a_blocking_read_of_a_stream_bound_to_another_key_waits(server):
    """The stream holds events, but of another partition key (in the same partition): for this
    key the range is empty, so the read blocks as the task's path would, not answer at once."""
    stream = unique()
    bound, other = key_in_partition(5), key_in_partition(5)
    with parked(RawClient(server.port)) as c:
        c.call("EAPPEND", stream, "E", "PARTITION_KEY", str(bound))
        time.sleep(0.05)
        c.send("ESCAN", stream, "-", "+", "PARTITION_KEY", str(other), "BLOCK", 1500)
        c.expect_nothing(0.5)
        assert scan(c.read(timeout=10)) == (False, [])
        assert len(scan(c.call("ESCAN", stream, "-", "+", "PARTITION_KEY", str(bound)))[1]) == 1
