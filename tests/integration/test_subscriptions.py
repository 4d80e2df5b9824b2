"""ESUB, EPSUB, EACK, EUNSUB (reference §4.10-4.12, §5; PROTOCOL.md points 1, 8, 9, 11 and
details). Pushes are read with a raw socket so that frame types and order are exact.

Partition use on the shared node: stream subscriptions use streams in partitions 16..31,
partition subscriptions use the partitions 0..15 their test names, so histories do not mix.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid

import pytest
from resp_client import (
    Map,
    Push,
    RawClient,
    Simple,
    as_dict,
    client,
    key_in_partition,
    module_node,
    stream_in_partition,
    unique,
    wait_until,
)

from sierradb.node.identifiers import partition_hash, partition_key_for_stream

QUIET_S = 0.4  # how long "no more pushes" is watched for
ONLY_SUBSCRIPTION_COMMANDS = "ERR only subscription commands are allowed in this context"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_node(tmp_path_factory)


@pytest.fixture
def sub(server, protocol):
    with RawClient(server.port, protocol) as c:
        yield c


@pytest.fixture
def writer(server):
    with RawClient(server.port) as c:
        yield c


def sub_stream() -> str:
    return stream_in_partition(random.randrange(16, 32), "sub")


def append(c: RawClient, stream: str, n: int = 1, *options) -> list[dict]:
    for i in range(n):
        c.send("EAPPEND", stream, f"E{i}", "PAYLOAD", f"p{i}", *options)
    replies = [c.read() for _ in range(n)]
    for reply in replies:
        assert isinstance(reply, (list, dict)), reply
    return [as_dict(reply) for reply in replies]


def frame_head(frame):
    """A push frame with its kind and subscription id as text: simple strings in RESP3, bulk
    strings in a RESP2 array (PROTOCOL.md point 14); the types are checked here."""
    if not isinstance(frame, list) or len(frame) < 2:
        return frame
    text = Simple if type(frame) is Push else bytes
    if not (type(frame[0]) is text and type(frame[1]) is text):
        return frame  # not a push frame of this protocol: compared as is (and fails)
    head = [v.decode() if isinstance(v, bytes) else str(v) for v in frame[:2]]
    return type(frame)(head + list(frame[2:]))


def subscribe(c: RawClient, *args) -> tuple[str, int]:
    """Send ESUB/EPSUB; check `+<id>` then the `subscribe` push; (id, count)."""
    sid = c.call(*args)
    assert type(sid) is Simple, sid
    assert str(uuid.UUID(sid)) == sid  # lowercase hyphenated
    push = frame_head(c.read())
    assert push == ["subscribe", sid, push[2]]
    assert type(push[2]) is int
    return sid, push[2]


def is_message(frame) -> bool:
    return isinstance(frame, list) and len(frame) == 4 and frame_head(frame)[0] == "message"


def read_messages(c: RawClient, n: int, timeout: float = 20.0) -> list[tuple[str, int, dict]]:
    """The next `n` message pushes as (subscription id, cursor, event); no other frame."""
    out = []
    for _ in range(n):
        frame = frame_head(c.read(timeout))
        assert is_message(frame), frame
        out.append((frame[1], frame[2], as_dict(frame[3])))
    return out


def call_among_pushes(c: RawClient, *args) -> tuple[object, list[tuple[str, int, dict]]]:
    """Send a command; its reply and the pushes that arrive before it."""
    c.send(*args)
    pushes = []
    while True:
        frame = frame_head(c.read())
        if is_message(frame):
            pushes.append((frame[1], frame[2], as_dict(frame[3])))
        else:
            return frame, pushes


# ----------------------------------------------------------------------- reply and pushes
def test_subscribe_replies_with_the_id_then_a_subscribe_push_with_the_count(sub, protocol):
    sid = sub.call("ESUB", sub_stream())
    assert type(sid) is Simple
    push = sub.read()
    if protocol == 3:
        assert type(push) is Push
        assert type(push[0]) is Simple and type(push[1]) is Simple
    else:
        assert type(push) is list
        assert type(push[0]) is bytes and type(push[1]) is bytes  # bulk, as Redis's pub/sub
    assert frame_head(push) == ["subscribe", sid, 1]
    assert subscribe(sub, "EPSUB", 3)[1] == 2
    assert subscribe(sub, "ESUB", sub_stream(), sub_stream())[1] == 3


def test_message_push_has_the_cursor_and_the_event_map(sub, writer, protocol):
    stream = sub_stream()
    sid, _ = subscribe(sub, "ESUB", stream)
    appended = append(writer, stream)[0]
    frame = sub.read()
    if protocol == 3:
        assert type(frame) is Push
        assert isinstance(frame[3], Map) and len(frame[3]) == 11
    else:
        assert type(frame) is list
        assert isinstance(frame[3], list) and len(frame[3]) == 22
    text = Simple if protocol == 3 else bytes
    assert type(frame[0]) is text and type(frame[1]) is text and type(frame[2]) is int
    assert frame_head(frame)[:3] == ["message", sid, 0]
    event = as_dict(frame[3])
    assert list(event) == [
        b"event_id",
        b"partition_key",
        b"partition_id",
        b"transaction_id",
        b"partition_sequence",
        b"stream_version",
        b"timestamp",
        b"stream_id",
        b"event_name",
        b"metadata",
        b"payload",
    ]
    assert event[b"event_id"] == appended[b"event_id"]
    assert event[b"stream_id"] == stream.encode()
    assert event[b"payload"] == b"p0"


def test_redis_py_resp3_connection_reads_pushes_as_lists(server, writer):
    stream = sub_stream()
    r = client(server.port, 3)
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("ESUB", stream, "FROM", "0")
        assert uuid.UUID(conn.read_response().decode())
        append(writer, stream, 2)
        frames = []
        while len(frames) < 3:
            frames.append(conn.read_response(push_request=True))
        assert frames[0][0] == b"subscribe" and frames[0][2] == 1
        assert [(f[0], f[2]) for f in frames[1:]] == [(b"message", 0), (b"message", 1)]
        assert [f[3][b"stream_version"] for f in frames[1:]] == [0, 1]
    finally:
        r.connection_pool.release(conn)
        r.close()


# ------------------------------------------------------------------------- ESUB positions
def test_esub_from_0_replays_history_then_goes_live_without_gap_or_duplicate(sub, writer):
    stream = sub_stream()
    append(writer, stream, 40)
    sid, _ = subscribe(sub, "ESUB", stream, "FROM", 0, "WINDOW", 10)
    got: list[tuple[int, int]] = []
    oks = 0
    appended = 40
    deadline = time.monotonic() + 60
    while len(got) < 80:
        assert time.monotonic() < deadline
        frame = sub.read()
        if frame == "OK":
            oks += 1
            continue
        assert is_message(frame), frame
        cursor, event = frame[2], as_dict(frame[3])
        got.append((cursor, event[b"stream_version"]))
        sub.send("EACK", sid, cursor)
        if appended < 80 and len(got) % 4 == 0:  # appends while history is replayed
            append(writer, stream, 4)
            appended += 4
    assert [c for c, _ in got] == list(range(80))
    assert [v for _, v in got] == list(range(80))
    # Nothing else: only the outstanding EACK replies.
    while oks < 80:
        assert sub.read() == "OK"
        oks += 1
    sub.expect_nothing(QUIET_S)


def test_esub_from_n_starts_at_that_version(sub, writer):
    stream = sub_stream()
    append(writer, stream, 5)
    subscribe(sub, "ESUB", stream, "from", 3)
    assert [e[b"stream_version"] for _, _, e in read_messages(sub, 2)] == [3, 4]
    sub.expect_nothing(QUIET_S)


@pytest.mark.parametrize("start", [(), ("FROM", "LATEST"), ("from", "latest")])
def test_esub_live_only_delivers_only_events_appended_after_the_reply(sub, writer, start):
    stream = sub_stream()
    append(writer, stream, 3)
    sid, _ = subscribe(sub, "ESUB", stream, *start)
    sub.expect_nothing(QUIET_S)
    append(writer, stream, 2)
    got = read_messages(sub, 2)
    assert [(s, c, e[b"stream_version"]) for s, c, e in got] == [(sid, 0, 3), (sid, 1, 4)]
    sub.expect_nothing(QUIET_S)


def test_esub_replays_a_long_history_in_order(sub, writer):
    stream = sub_stream()
    append(writer, stream, 250)
    subscribe(sub, "ESUB", stream, "FROM", 0)
    got = read_messages(sub, 250)
    assert [(c, e[b"stream_version"]) for _, c, e in got] == [(v, v) for v in range(250)]
    sub.expect_nothing(QUIET_S)


def test_esub_from_beyond_the_end_waits_for_that_version(sub, writer):
    stream = sub_stream()
    append(writer, stream, 3)
    subscribe(sub, "ESUB", stream, "FROM", 5)
    sub.expect_nothing(QUIET_S)
    append(writer, stream, 4)  # versions 3..6
    assert [e[b"stream_version"] for _, _, e in read_messages(sub, 2)] == [5, 6]
    sub.expect_nothing(QUIET_S)


def test_a_transaction_is_delivered_in_order_with_consecutive_cursors(sub, writer):
    stream = sub_stream()
    key = str(uuid.UUID(bytes=partition_key_for_stream(stream.encode())))
    subscribe(sub, "ESUB", stream)
    writer.call("EMAPPEND", key, stream, "A", stream, "B", stream, "C")
    got = read_messages(sub, 3)
    assert [(c, e[b"event_name"], e[b"stream_version"]) for _, c, e in got] == [
        (0, b"A", 0),
        (1, b"B", 1),
        (2, b"C", 2),
    ]


def test_esub_several_streams_with_from_map(sub, writer):
    a, b = sub_stream(), sub_stream()
    append(writer, a, 3)
    append(writer, b, 3)
    subscribe(sub, "ESUB", a, b, "FROM", "MAP", f"{a}=1", "WINDOW", 100)
    got = read_messages(sub, 2)
    assert [(e[b"stream_id"], e[b"stream_version"]) for _, _, e in got] == [
        (a.encode(), 1),
        (a.encode(), 2),
    ]
    sub.expect_nothing(QUIET_S)  # b is live only
    append(writer, b, 1)
    append(writer, a, 1)
    got = read_messages(sub, 2)
    assert sorted((e[b"stream_id"], e[b"stream_version"]) for _, _, e in got) == sorted(
        [(b.encode(), 3), (a.encode(), 3)]
    )


def test_esub_partition_key_selects_the_stream_under_that_key(sub, writer):
    stream = unique()
    key = str(key_in_partition(20))
    append(writer, stream, 2, "PARTITION_KEY", key)
    subscribe(sub, "ESUB", stream, "PARTITION_KEY", key, "FROM", 0)
    got = read_messages(sub, 2)
    assert [(e[b"stream_version"], e[b"partition_key"]) for _, _, e in got] == [(0, key), (1, key)]


def test_esub_delivers_only_its_stream(sub, writer):
    stream = stream_in_partition(25, "mine")
    other = stream_in_partition(25, "other")
    subscribe(sub, "ESUB", stream)
    append(writer, other, 2)
    append(writer, stream, 1)
    ((_, _, event),) = read_messages(sub, 1)
    assert event[b"stream_id"] == stream.encode()
    sub.expect_nothing(QUIET_S)


# ------------------------------------------------------------------------------- WINDOW/EACK
def test_window_limits_unacknowledged_pushes_and_eack_opens_it(sub, writer):
    stream = sub_stream()
    append(writer, stream, 12)
    sid, _ = subscribe(sub, "ESUB", stream, "FROM", 0, "WINDOW", 5)
    assert [c for _, c, _ in read_messages(sub, 5)] == [0, 1, 2, 3, 4]
    sub.expect_nothing(QUIET_S)

    sub.send("EACK", sid, 2)  # cursors up to 2 + 5 = 7 may now be sent
    frames = [sub.read() for _ in range(4)]
    assert "OK" in frames
    assert [f[2] for f in frames if is_message(f)] == [5, 6, 7]
    sub.expect_nothing(QUIET_S)

    reply, pushes = call_among_pushes(sub, "EACK", sid, 7)
    assert reply == "OK"
    pushes += read_messages(sub, 4 - len(pushes))
    assert [c for _, c, _ in pushes] == [8, 9, 10, 11]
    assert [e[b"stream_version"] for _, _, e in pushes] == [8, 9, 10, 11]
    sub.expect_nothing(QUIET_S)

    append(writer, stream, 2)  # cursor 12 fits the window (7 + 5), cursor 13 does not
    assert [c for _, c, _ in read_messages(sub, 1)] == [12]
    sub.expect_nothing(QUIET_S)
    reply, pushes = call_among_pushes(sub, "EACK", sid, 12)
    assert reply == "OK"
    pushes += read_messages(sub, 1 - len(pushes))
    assert [(c, e[b"stream_version"]) for _, c, e in pushes] == [(13, 13)]


def test_window_defaults_to_1000(server):
    stream = sub_stream()
    with RawClient(server.port, 3) as c, RawClient(server.port) as w:
        append(w, stream, 1005)
        subscribe(c, "ESUB", stream, "FROM", 0)
        got = read_messages(c, 1000)
        assert [cur for _, cur, _ in got] == list(range(1000))
        c.expect_nothing(QUIET_S)


def test_eack_of_an_unknown_subscription_is_notfound(sub):
    assert sub.call("EACK", str(uuid.uuid4()), 1) == "NOTFOUND subscription not found"


def test_eack_of_another_connections_subscription_is_notfound(server, sub):
    with RawClient(server.port) as other:
        sid, _ = subscribe(other, "ESUB", sub_stream())
        assert sub.call("EACK", sid, 0) == "NOTFOUND subscription not found"
        assert other.call("EACK", sid, 0) == "OK"


def test_window_0_is_invalidarg(sub):
    assert sub.call("ESUB", sub_stream(), "WINDOW", 0).startswith("INVALIDARG ")
    assert sub.call("EPSUB", "*", "WINDOW", 0).startswith("INVALIDARG ")


# --------------------------------------------------------------------------------- EPSUB
def test_epsub_star_delivers_every_partition(sub, writer):
    sid, _ = subscribe(sub, "EPSUB", "*")
    streams = {p: stream_in_partition(p, "all") for p in (9, 10, 17, 31)}
    for s in streams.values():
        append(writer, s, 2)
    got = read_messages(sub, 8)
    assert {c for _, c, _ in got} == set(range(8))
    for p, s in streams.items():
        mine = [e for _, _, e in got if e[b"partition_id"] == p]
        assert [(e[b"stream_id"], e[b"stream_version"]) for e in mine] == [
            (s.encode(), 0),
            (s.encode(), 1),
        ]
    sub.expect_nothing(QUIET_S)


def test_epsub_ranges_and_lists_select_partitions(sub, writer):
    subscribe(sub, "EPSUB", "0-3,7")
    for p in (0, 2, 3, 5, 7, 8):
        append(writer, stream_in_partition(p, "sel"))
    got = read_messages(sub, 4)
    assert sorted(e[b"partition_id"] for _, _, e in got) == [0, 2, 3, 7]
    sub.expect_nothing(QUIET_S)


def test_epsub_accepts_a_partition_key(sub, writer):
    key = key_in_partition(11)
    subscribe(sub, "EPSUB", str(key))
    append(writer, stream_in_partition(12, "not"))
    append(writer, stream_in_partition(11, "yes"))
    ((_, _, event),) = read_messages(sub, 1)
    assert event[b"partition_id"] == partition_hash(key.bytes) % 32 == 11
    sub.expect_nothing(QUIET_S)


def test_epsub_live_only_delivers_only_new_events_of_the_partition(sub, writer):
    stream = stream_in_partition(13, "live")
    append(writer, stream, 3)
    sid, _ = subscribe(sub, "EPSUB", 13)
    sub.expect_nothing(QUIET_S)
    append(writer, stream, 1)
    ((s, cursor, event),) = read_messages(sub, 1)
    assert (s, cursor, event[b"stream_version"]) == (sid, 0, 3)


def test_epsub_from_n_replays_the_partition_from_that_sequence(server):
    with RawClient(server.port, 3) as c:
        stream = stream_in_partition(12, "from")
        append(c, stream, 4)
        last = c.call("EPSEQ", 12)
        subscribe(c, "EPSUB", 12, "FROM", last - 1)
        got = read_messages(c, 2)
        assert [e[b"partition_sequence"] for _, _, e in got] == [last - 1, last]


def test_epsub_from_map_with_default(sub, writer):
    s14, s15 = stream_in_partition(14, "map"), stream_in_partition(15, "map")
    first14 = append(writer, s14, 4)[0][b"partition_sequence"]
    first15 = append(writer, s15, 3)[0][b"partition_sequence"]
    subscribe(sub, "EPSUB", "14,15", "FROM", "MAP", f"14={first14 + 2}", "DEFAULT", first15 + 1)
    got = read_messages(sub, 4)
    per = {
        p: [e[b"partition_sequence"] for _, _, e in got if e[b"partition_id"] == p]
        for p in (14, 15)
    }
    assert per == {14: [first14 + 2, first14 + 3], 15: [first15 + 1, first15 + 2]}
    sub.expect_nothing(QUIET_S)
    append(writer, s15)
    ((_, cursor, event),) = read_messages(sub, 1)
    assert (cursor, event[b"partition_id"], event[b"partition_sequence"]) == (4, 15, first15 + 3)


# -------------------------------------------------------------------------------- EUNSUB
def test_eunsub_stops_pushes_and_the_next_subscribe_count_is_one_fewer(sub, writer):
    a, b = sub_stream(), sub_stream()
    sid_a, count = subscribe(sub, "ESUB", a)
    assert count == 1
    assert subscribe(sub, "ESUB", b)[1] == 2
    append(writer, a)
    read_messages(sub, 1)
    assert sub.call("EUNSUB", sid_a) == "OK"
    append(writer, a, 2)
    sub.expect_nothing(QUIET_S)
    assert subscribe(sub, "ESUB", sub_stream())[1] == 2
    assert sub.call("EUNSUB", sid_a) == "NOTFOUND subscription not found"


def test_eunsub_of_an_unknown_subscription_is_notfound(sub):
    assert sub.call("EUNSUB", str(uuid.uuid4())) == "NOTFOUND subscription not found"


def test_closing_the_connection_ends_its_subscriptions(server):
    def subscriptions() -> int:
        with RawClient(server.port) as c:
            text = c.call("INFO", "clients").decode()
        return int(text.split("subscriptions:")[1].split("\r\n")[0])

    base = subscriptions()
    with RawClient(server.port) as c:
        subscribe(c, "ESUB", sub_stream())
        subscribe(c, "EPSUB", "*")
        assert subscriptions() == base + 2
    wait_until(lambda: subscriptions() == base, timeout=10)


# ---------------------------------------------------------------------- RESP2 restrictions
def test_resp2_connection_with_a_subscription_accepts_only_subscription_commands(sub, protocol):
    stream = sub_stream()
    sid, _ = subscribe(sub, "ESUB", stream)
    refused = [
        ("EAPPEND", stream, "E"),
        ("ESCAN", stream, "-", "+"),
        ("EGET", str(uuid.uuid4())),
        ("ECHO", "x"),
        ("INFO",),
        ("CLIENT", "ID"),
    ]
    if protocol == 2:
        for args in refused:
            assert sub.call(*args) == ONLY_SUBSCRIPTION_COMMANDS, args
        # Allowed commands reply with non-arrays.
        assert sub.call("PING") == "PONG"
        assert subscribe(sub, "EPSUB", 20)[1] == 2
        assert sub.call("EACK", sid, 0) == "OK"
        assert sub.call("EUNSUB", sid) == "OK"
        assert sub.call("ESVER", stream) == ONLY_SUBSCRIPTION_COMMANDS  # still holds one
        assert sub.call("QUIT") == "OK"
        assert sub.closed_by_server()
    else:
        assert isinstance(sub.call("ECHO", "x"), bytes)
        reply, pushes = call_among_pushes(sub, "EAPPEND", stream, "E")
        assert as_dict(reply)[b"stream_version"] == 0
        pushes += read_messages(sub, 1 - len(pushes))
        assert [(s, c) for s, c, _ in pushes] == [(sid, 0)]


def test_resp2_connection_without_subscriptions_accepts_everything_again(server):
    with RawClient(server.port) as c:
        sid, _ = subscribe(c, "ESUB", sub_stream())
        assert c.call("ESVER", unique()) == ONLY_SUBSCRIPTION_COMMANDS
        assert c.call("EUNSUB", sid) == "OK"
        assert c.call("ESVER", unique()) is None


def test_resp2_pipelined_commands_behind_a_subscribe_are_refused(server):
    stream = sub_stream()
    with RawClient(server.port) as c:
        c.send_raw(
            b"".join(
                [
                    b"*2\r\n$4\r\nESUB\r\n$%d\r\n%s\r\n" % (len(stream), stream.encode()),
                    b"*2\r\n$5\r\nESVER\r\n$%d\r\n%s\r\n" % (len(stream), stream.encode()),
                    b"*1\r\n$4\r\nPING\r\n",
                ]
            )
        )
        sid = c.read()
        assert type(sid) is Simple
        assert frame_head(c.read()) == ["subscribe", sid, 1]
        assert c.read() == ONLY_SUBSCRIPTION_COMMANDS
        assert c.read() == "PONG"


# ---------------------------------------------------------------------- slow subscribers
def test_a_subscriber_that_stops_reading_does_not_block_writers(node):
    stream = unique("flood")
    payload = b"x" * 1024
    total, batch = 20_000, 500
    stalled = RawClient(node.port, 3)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        subscribe(stalled, "ESUB", stream, "FROM", 0, "WINDOW", 10_000_000)
        subscribe(stalled, "EPSUB", "*", "WINDOW", 10_000_000)
        # From here on the subscriber never reads again.
        errors: list[BaseException] = []
        done = threading.Event()

        def write() -> None:
            r = client(node.port)
            try:
                for start in range(0, total, batch):
                    pipe = r.pipeline(transaction=False)
                    for _ in range(batch):
                        pipe.execute_command("EAPPEND", stream, "Big", "PAYLOAD", payload)
                    replies = pipe.execute()
                    assert all(isinstance(x, list) for x in replies), replies[:3]
                    assert as_dict(replies[-1])[b"stream_version"] == start + batch - 1
                done.set()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
            finally:
                r.close()

        t = threading.Thread(target=write)
        t.start()
        t.join(120)
        assert not t.is_alive(), "appends blocked behind a subscriber that does not read"
        assert not errors, errors
        assert done.is_set()
        with RawClient(node.port) as other, RawClient(node.port, 3) as reading:
            assert other.call("ESVER", stream) == total - 1
            assert other.call("PING") == "PONG"
            # Other subscribers are served as usual.
            live = unique("live")
            sid, _ = subscribe(reading, "ESUB", live)
            other.call("EAPPEND", live, "E")
            assert [(s, c) for s, c, _ in read_messages(reading, 1)] == [(sid, 0)]
    finally:
        stalled.close()


def test_shutdown_is_not_blocked_by_a_subscriber_that_stops_reading(node):
    stalled = RawClient(node.port, 3)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        subscribe(stalled, "EPSUB", "*", "WINDOW", 10_000_000)
        r = client(node.port)
        try:
            for _ in range(8):  # ~10 MB of pushes: more than any socket buffer holds
                pipe = r.pipeline(transaction=False)
                for _ in range(1000):
                    pipe.execute_command("EAPPEND", unique("f"), "Big", "PAYLOAD", b"y" * 1024)
                pipe.execute()
        finally:
            r.close()
        # The subscriber's pushes now wait on its full socket; SIGTERM must still stop the node.
        assert node.terminate(timeout=60) == 0
        assert "stopped cleanly" in node.output()
    finally:
        stalled.close()
