"""Blocking reads: ESCAN/EPSCAN ... BLOCK and EPREAD (PROTOCOL.md point 15)."""

from __future__ import annotations

import threading
import uuid

import pytest
from resp_client import (
    Err,
    Map,
    RawClient,
    as_dict,
    client,
    module_node,
    scan,
    stream_in_partition,
    unique,
    wait_until,
)

from sierradb.node.read_pool import INLINE_READ_EVENTS

PARTITIONS = 32
# Generous: a blocked read that is never woken fails the test by this deadline.
WAKE_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_node(tmp_path_factory)


def blocked_clients(port: int) -> int:
    text = client(port).info("clients").decode()
    line = next(x for x in text.splitlines() if x.startswith("blocked_clients:"))
    return int(line.split(":", 1)[1])


def wait_blocked(port: int, n: int) -> None:
    wait_until(lambda: blocked_clients(port) >= n)


def next_sequence(port: int, p: int) -> int:
    last = client(port).execute_command("EPSEQ", p)
    return 0 if last is None else last + 1


def append(port: int, stream: str, payload: bytes = b"x") -> dict:
    return as_dict(client(port).execute_command("EAPPEND", stream, "E", "PAYLOAD", payload))


def fresh_partition(port: int) -> tuple[int, str, int]:
    """A partition, a new stream in it, and the partition's next sequence."""
    stream = unique()
    p = append(port, stream)[b"partition_id"]
    return p, stream, next_sequence(port, p)


# ------------------------------------------------------------------------------------ waking
def test_epscan_block_wakes_on_append_and_returns_the_new_event(server, protocol):
    p, stream, nxt = fresh_partition(server.port)
    with RawClient(server.port, protocol, timeout=WAKE_TIMEOUT_S) as c:
        c.send("EPSCAN", p, nxt, "+", "BLOCK", 0)
        wait_blocked(server.port, 1)
        appended = append(server.port, stream, b"woken")
        more, events = scan(c.read())
    assert not more
    assert [(e[b"partition_sequence"], e[b"payload"]) for e in events] == [(nxt, b"woken")]
    assert events[0][b"event_id"] == appended[b"event_id"]


def test_escan_block_wakes_on_an_append_to_its_stream_only(server, protocol):
    stream = unique()
    p = append(server.port, stream)[b"partition_id"]
    other = stream_in_partition(p)  # same partition, another stream: must not end the wait
    with RawClient(server.port, protocol, timeout=WAKE_TIMEOUT_S) as c:
        c.send("ESCAN", stream, 1, "+", "BLOCK", 0)
        wait_blocked(server.port, 1)
        append(server.port, other)
        c.expect_nothing(0.3)
        append(server.port, stream, b"second")
        more, events = scan(c.read())
    assert [(e[b"stream_version"], e[b"payload"]) for e in events] == [(1, b"second")]
    assert not more


def test_block_returns_visible_events_at_once(server, protocol):
    stream = unique()
    append(server.port, stream, b"a")
    append(server.port, stream, b"b")
    with RawClient(server.port, protocol) as c:
        more, events = scan(c.call("ESCAN", stream, "-", "+", "COUNT", 1, "BLOCK", 0))
    assert more and [e[b"payload"] for e in events] == [b"a"]
    assert blocked_clients(server.port) == 0


def test_block_timeout_returns_the_ordinary_empty_reply(server, protocol):
    p, _, nxt = fresh_partition(server.port)
    with RawClient(server.port, protocol) as c:
        reply = c.call("EPSCAN", p, nxt, "+", "BLOCK", 50)
        plain = c.call("EPSCAN", p, nxt, "+")
        stream_reply = c.call("ESCAN", unique(), "-", "+", "BLOCK", 50)
    assert reply == plain == stream_reply
    if protocol == 3:
        assert reply == Map({"has_more": False, "events": []})
    else:
        assert reply == [b"has_more", 0, b"events", []]


def test_block_0_waits_until_an_event_arrives(server, protocol):
    p, stream, nxt = fresh_partition(server.port)
    with RawClient(server.port, protocol, timeout=WAKE_TIMEOUT_S) as c:
        c.send("EPREAD", "BLOCK", 0, "FROM", p, nxt)
        wait_blocked(server.port, 1)
        c.expect_nothing(1.0)  # still waiting
        append(server.port, stream, b"late")
        reply = as_dict(c.read())
    (key,) = reply
    assert key == p
    _, events = scan(reply[p])
    assert [e[b"payload"] for e in events] == [b"late"]


def test_many_blocked_clients_on_one_partition_are_woken_by_one_append(server, protocol):
    p, stream, nxt = fresh_partition(server.port)
    clients = [RawClient(server.port, protocol, timeout=WAKE_TIMEOUT_S) for _ in range(40)]
    try:
        for i, c in enumerate(clients):
            if i % 2:
                c.send("EPSCAN", p, nxt, "+", "BLOCK", 0)
            else:
                c.send("EPREAD", "BLOCK", 0, "FROM", p, nxt)
        wait_blocked(server.port, len(clients))
        appended = append(server.port, stream)
        for i, c in enumerate(clients):
            reply = c.read()
            _, events = scan(reply if i % 2 else as_dict(reply)[p])
            assert [e[b"event_id"] for e in events] == [appended[b"event_id"]]
    finally:
        for c in clients:
            c.close()
    wait_until(lambda: blocked_clients(server.port) == 0)


def test_disconnect_while_blocked_ends_the_wait(server, protocol):
    p, _, nxt = fresh_partition(server.port)
    c = RawClient(server.port, protocol)
    c.send("EPSCAN", p, nxt, "+", "BLOCK", 0)
    wait_blocked(server.port, 1)
    before = blocked_clients(server.port)
    c.close()
    wait_until(lambda: blocked_clients(server.port) < before)
    connected = client(server.port).info("clients").decode()
    assert "blocked_clients:" in connected


def test_a_pipelined_request_behind_a_blocked_one_waits_for_it(server, protocol):
    p, stream, nxt = fresh_partition(server.port)
    with RawClient(server.port, protocol, timeout=WAKE_TIMEOUT_S) as c:
        c.send_raw(
            b"*6\r\n$6\r\nEPSCAN\r\n$%d\r\n%d\r\n$%d\r\n%d\r\n$1\r\n+\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n"
            % (len(str(p)), p, len(str(nxt)), nxt)
            + b"*2\r\n$4\r\nPING\r\n$5\r\nafter\r\n"
        )
        wait_blocked(server.port, 1)
        c.expect_nothing(0.3)  # PING is behind the blocked read
        append(server.port, stream, b"first")
        _, events = scan(c.read())
        assert [e[b"payload"] for e in events] == [b"first"]
        assert c.read() == b"after"


# ----------------------------------------------------------------------------------- EPREAD
def test_epread_reply_shapes(server, protocol):
    a = unique()
    pa = append(server.port, a, b"A")[b"partition_id"]
    b = stream_in_partition((pa + 1) % PARTITIONS)  # two partitions, not left to chance
    pb = append(server.port, b, b"B")[b"partition_id"]
    assert pb != pa
    sa, sb = next_sequence(server.port, pa) - 1, next_sequence(server.port, pb) - 1
    empty = next(q for q in range(PARTITIONS) if q not in (pa, pb))
    with RawClient(server.port, protocol) as c:
        reply = c.call("EPREAD", "COUNT", 1, "FROM", pa, sa, pb, sb, empty, 10**9)
        nothing = c.call("EPREAD", "BLOCK", 30, "FROM", empty, 10**9)
    if protocol == 3:
        assert isinstance(reply, Map) and list(reply) == [pa, pb]
        assert all(isinstance(v, Map) and list(v) == ["has_more", "events"] for v in reply.values())
        assert nothing == Map()
    else:
        assert isinstance(reply, list) and reply[0::2] == [pa, pb]
        assert all(v[0] == b"has_more" and v[2] == b"events" for v in reply[1::2])
        assert nothing == []
    d = as_dict(reply)
    assert [e[b"payload"] for e in scan(d[pa])[1]] == [b"A"]
    assert [e[b"payload"] for e in scan(d[pb])[1]] == [b"B"]


def test_epread_over_all_partitions_of_a_busy_node_returns_every_event_once(server):
    r = client(server.port)
    start = {p: next_sequence(server.port, p) for p in range(PARTITIONS)}
    writers, per_writer = 4, 150
    appended: list[bytes] = []
    lock = threading.Lock()

    def write(w: int) -> None:
        wc = client(server.port)
        for i in range(per_writer):
            reply = as_dict(wc.execute_command("EAPPEND", f"busy-{w}-{i % 17}", "E"))
            with lock:
                appended.append(reply[b"event_id"])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    position = dict(start)
    seen: list[tuple[int, int, str]] = []
    total = writers * per_writer
    reader = client(server.port)
    for _ in range(100_000):
        if len(seen) >= total and not any(t.is_alive() for t in threads):
            break
        args = [x for p in range(PARTITIONS) for x in (p, position[p])]
        reply = reader.execute_command("EPREAD", "COUNT", 50, "BLOCK", 500, "FROM", *args)
        for p, part in as_dict(reply).items():
            _, events = scan(part)
            for e in events:
                assert e[b"partition_sequence"] == position[p]  # in order, no gap, no repeat
                position[p] += 1
                seen.append((p, e[b"partition_sequence"], e[b"event_id"]))
    for t in threads:
        t.join()
    # Everything appended by the writers was delivered exactly once (and only visible events:
    # each came from the node's own visible range).
    ids = [eid for _, _, eid in seen]
    assert len(ids) == len(set(ids))
    assert set(appended) <= set(ids)
    assert len(ids) == total  # nobody else appends in these partitions meanwhile
    r.close()


def test_epread_serves_small_reads_on_the_loop_and_large_ones_in_the_read_threads_alike(server):
    """A read of at most INLINE_READ_EVENTS events runs on the event loop, a larger one in the
    read threads: both give the same events, in order, with the same has_more."""
    r = client(server.port)
    key = str(uuid.uuid4())
    total = INLINE_READ_EVENTS + 300  # and one more event after them
    ids: list[bytes] = []
    replies = []
    for first in range(0, total + 1, 500):
        args: list = []
        for i in range(first, min(total + 1, first + 500)):
            args += [f"inline-{i % 7}", "Counted", "PAYLOAD", str(i)]
        replies.append(as_dict(r.execute_command("EMAPPEND", key, *args)))
        ids += [as_dict(e)[b"event_id"] for e in replies[-1][b"events"]]
    p = replies[0][b"partition_id"]
    start = replies[0][b"first_partition_sequence"]
    assert replies[-1][b"last_partition_sequence"] == start + total  # one partition, no gap

    def epread(count: int, sequence: int) -> tuple[bool, list[bytes]]:
        reply = as_dict(r.execute_command("EPREAD", "COUNT", count, "FROM", p, sequence))
        more, events = scan(reply[p])
        return more, [e[b"event_id"] for e in events]

    large = epread(total, start)  # more than INLINE_READ_EVENTS: the read threads
    assert large == (True, ids[:total])
    small = [epread(INLINE_READ_EVENTS, start), epread(300, start + INLINE_READ_EVENTS)]
    assert small == [(True, ids[:INLINE_READ_EVENTS]), (True, ids[INLINE_READ_EVENTS:total])]
    assert epread(10, start + total) == (False, ids[total:])
    r.close()


# ----------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("EPSCAN", 0, 0, "+", "BLOCK"), "expected block timeout"),
        (("EPSCAN", 0, 0, "+", "BLOCK", "-1"), "invalid block timeout '-1'"),
        (("EPSCAN", 0, 0, "+", "BLOCK", "soon"), "invalid block timeout 'soon'"),
        (("EPSCAN", 0, 0, "+", "BLOCK", 1, "BLOCK", 2), "block timeout already specified"),
        (("ESCAN", "s", "-", "+", "BLOCK", "x"), "invalid block timeout 'x'"),
        (("EPREAD",), "expected FROM"),
        (("EPREAD", "FROM"), "expected partition"),
        (("EPREAD", "FROM", 1), "expected sequence for partition '1'"),
        (("EPREAD", "FROM", 1, "x"), "invalid sequence 'x'"),
        (("EPREAD", "FROM", "nope", 0), "invalid partition 'nope'"),
        (("EPREAD", "FROM", 1, 0, 1, 5), "partition '1' given more than once"),
        (("EPREAD", "COUNT", "x", "FROM", 1, 0), "invalid count 'x'"),
        (("EPREAD", "BLOCK", -5, "FROM", 1, 0), "invalid block timeout '-5'"),
        (("EPREAD", "WAIT", 5, "FROM", 1, 0), "unexpected argument 'WAIT'"),
        (("EPREAD", "COUNT", 1, "COUNT", 2, "FROM", 1, 0), "count already specified"),
    ],
)
def test_bad_arguments_get_invalidarg_naming_the_argument(server, protocol, args, message):
    with RawClient(server.port, protocol) as c:
        reply = c.call(*args)
        assert isinstance(reply, Err), reply
        assert reply.startswith("INVALIDARG "), reply
        assert message in reply, reply
        assert c.call("PING") == "PONG"  # the connection goes on


def test_epread_of_a_partition_out_of_range_is_refused(server):
    with RawClient(server.port) as c:
        reply = c.call("EPREAD", "FROM", PARTITIONS + 1, 0)
    assert isinstance(reply, Err)


# -------------------------------------------------------------------------------- the limit
@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    yield from module_node(tmp_path_factory, "--max-blocked-clients", "2")


def test_blocked_clients_past_the_limit_get_a_clear_error(limited, protocol):
    p, stream, nxt = fresh_partition(limited.port)
    with (
        RawClient(limited.port, protocol, timeout=WAKE_TIMEOUT_S) as a,
        RawClient(limited.port, protocol, timeout=WAKE_TIMEOUT_S) as b,
        RawClient(limited.port, protocol) as c,
    ):
        a.send("EPSCAN", p, nxt, "+", "BLOCK", 0)
        b.send("EPSCAN", p, nxt, "+", "BLOCK", 0)
        wait_blocked(limited.port, 2)
        refused = c.call("EPREAD", "BLOCK", 0, "FROM", p, nxt)
        assert isinstance(refused, Err)
        assert refused.startswith("ERR max number of blocked clients reached")
        assert "max_blocked_clients 2" in refused
        # A read that needs no wait is still served.
        assert scan(c.call("EPSCAN", p, nxt - 1, "+", "BLOCK", 0))[1]
        append(limited.port, stream)
        assert scan(a.read())[1] and scan(b.read())[1]
    wait_until(lambda: blocked_clients(limited.port) == 0)
    info = client(limited.port).info("clients").decode()
    assert "max_blocked_clients:2" in info
