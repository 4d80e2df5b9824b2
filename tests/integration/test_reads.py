"""EGET, ESCAN, ESVER, EPSCAN, EPSEQ and read-your-writes (reference §3, §4.5-4.9;
PROTOCOL.md points 6 and 7)."""

from __future__ import annotations

import uuid

import pytest
from resp_client import (
    Map,
    RawClient,
    as_dict,
    client,
    event_id_for_stream,
    key_in_partition,
    module_node,
    partition_of_stream,
    scan,
    stream_in_partition,
    string_type,
    unique,
)

from sierradb.node.identifiers import partition_key_for_stream

EVENT_KEYS = [
    "event_id",
    "partition_key",
    "partition_id",
    "transaction_id",
    "partition_sequence",
    "stream_version",
    "timestamp",
    "stream_id",
    "event_name",
    "metadata",
    "payload",
]
SIMPLE_FIELDS = {"event_id", "partition_key", "transaction_id"}
INT_FIELDS = {"partition_id", "partition_sequence", "stream_version", "timestamp"}
BLOB_FIELDS = {"stream_id", "event_name", "metadata", "payload"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_node(tmp_path_factory)


@pytest.fixture(scope="module")
def partitions(tmp_path_factory):
    """A node for partition-level reads; each test owns the partition it names."""
    yield from module_node(tmp_path_factory)


@pytest.fixture
def praw(partitions, protocol):
    with RawClient(partitions.port, protocol) as c:
        yield c


def fill(c: RawClient, stream: str, n: int, *options) -> list[dict]:
    for i in range(n):
        c.send("EAPPEND", stream, f"E{i}", "PAYLOAD", f"p{i}", *options)
    return [as_dict(c.read()) for _ in range(n)]


def versions(reply) -> tuple[bool, list[int]]:
    more, events = scan(reply)
    return more, [e[b"stream_version"] for e in events]


def sequences(reply) -> tuple[bool, list[int]]:
    more, events = scan(reply)
    return more, [e[b"partition_sequence"] for e in events]


def check_event_map(value, protocol: int) -> dict:
    """The event map has exactly the reference's 11 keys, in order, with its types (strings:
    simple in RESP3, bulk in RESP2, PROTOCOL.md point 14). Returned with text keys and ids."""
    if protocol == 3:
        assert isinstance(value, Map)
        raw_items = list(value.items())
    else:
        assert isinstance(value, list) and len(value) == 22
        raw_items = list(zip(value[::2], value[1::2], strict=True))
    text = string_type(protocol)
    assert all(type(k) is text for k, _ in raw_items)
    items = [(k.decode() if isinstance(k, bytes) else k, v) for k, v in raw_items]
    assert [k for k, _ in items] == EVENT_KEYS
    out = {}
    for key, v in items:
        if key in SIMPLE_FIELDS:
            assert type(v) is text, key
            v = v.decode() if isinstance(v, bytes) else v
            uuid.UUID(v)
        elif key in INT_FIELDS:
            assert type(v) is int, key
        else:
            assert type(v) is bytes, key
        out[key] = v
    return out


# ------------------------------------------------------------------------------------- EGET
def test_eget_returns_the_event_map_with_eleven_keys_in_order(raw, protocol):
    stream = unique()
    appended = as_dict(
        raw.call(
            "EAPPEND", stream, "Created", "PAYLOAD", b"\x00p", "METADATA", "m", "TIMESTAMP", 42
        )
    )
    event = check_event_map(raw.call("EGET", appended[b"event_id"]), protocol)
    assert event["event_id"] == appended[b"event_id"]
    assert event["partition_key"] == str(uuid.UUID(bytes=partition_key_for_stream(stream.encode())))
    assert event["partition_id"] == appended[b"partition_id"] == partition_of_stream(stream)
    assert event["partition_sequence"] == appended[b"partition_sequence"]
    assert event["stream_version"] == 0
    assert event["timestamp"] == 42
    assert event["stream_id"] == stream.encode()
    assert event["event_name"] == b"Created"
    assert event["metadata"] == b"m"
    assert event["payload"] == b"\x00p"


def test_eget_of_an_unknown_event_id_is_null(raw):
    stream = unique()
    assert raw.call("EGET", event_id_for_stream(stream)) is None


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_eget_hit_and_miss(server, protocol):
    r = client(server.port, protocol)
    try:
        appended = as_dict(r.execute_command("EAPPEND", unique(), "E", "x"))
        hit = as_dict(r.execute_command("EGET", appended[b"event_id"]))
        assert hit[b"payload"] == b"x" and list(hit) == [k.encode() for k in EVENT_KEYS]
        assert r.execute_command("EGET", str(uuid.uuid4())) is None
    finally:
        r.close()


def test_eget_of_a_non_uuid_is_invalidarg(raw):
    assert raw.call("EGET", "nope").startswith("INVALIDARG ")


# ------------------------------------------------------------------------------------ ESCAN
def test_escan_reply_is_has_more_then_events_with_event_maps(raw, protocol):
    stream = unique()
    fill(raw, stream, 2)
    reply = raw.call("ESCAN", stream, "-", "+")
    if protocol == 3:
        assert isinstance(reply, Map) and list(reply) == ["has_more", "events"]
        assert reply["has_more"] is False
        events = reply["events"]
    else:
        assert isinstance(reply, list) and len(reply) == 4
        assert reply[0] == b"has_more" and reply[2] == b"events"  # bulk (PROTOCOL.md point 14)
        assert type(reply[1]) is int and reply[1] == 0
        events = reply[3]
    assert [check_event_map(e, protocol)["stream_version"] for e in events] == [0, 1]


def test_escan_of_an_unknown_stream_is_empty_without_more(raw):
    assert versions(raw.call("ESCAN", unique(), "-", "+")) == (False, [])


def test_escan_start_and_end_are_inclusive(raw):
    stream = unique()
    fill(raw, stream, 10)
    assert versions(raw.call("ESCAN", stream, 2, 5))[1] == [2, 3, 4, 5]
    assert versions(raw.call("ESCAN", stream, 3, 3))[1] == [3]
    assert versions(raw.call("ESCAN", stream, "-", 4))[1] == [0, 1, 2, 3, 4]
    assert versions(raw.call("ESCAN", stream, 7, "+"))[1] == [7, 8, 9]
    assert versions(raw.call("ESCAN", stream, 9, 100))[1] == [9]
    assert versions(raw.call("ESCAN", stream, 10, "+")) == (False, [])


def test_escan_events_carry_their_content_in_version_order(raw):
    stream = unique()
    fill(raw, stream, 3)
    _, events = scan(raw.call("ESCAN", stream, "-", "+"))
    assert [(e[b"event_name"], e[b"payload"]) for e in events] == [
        (b"E0", b"p0"),
        (b"E1", b"p1"),
        (b"E2", b"p2"),
    ]


def test_escan_count_limits_the_events(raw):
    stream = unique()
    fill(raw, stream, 10)
    assert versions(raw.call("ESCAN", stream, "-", "+", "COUNT", 3)) == (True, [0, 1, 2])
    assert versions(raw.call("ESCAN", stream, 4, "+", "count", 2)) == (True, [4, 5])


def test_escan_has_more_is_false_when_count_is_met_exactly_by_the_last_events(raw):
    stream = unique()
    fill(raw, stream, 10)
    assert versions(raw.call("ESCAN", stream, 7, "+", "COUNT", 3)) == (False, [7, 8, 9])
    assert versions(raw.call("ESCAN", stream, "-", "+", "COUNT", 10)) == (False, list(range(10)))


def test_escan_has_more_only_counts_events_inside_the_range(raw):
    stream = unique()
    fill(raw, stream, 10)
    assert versions(raw.call("ESCAN", stream, 0, 4, "COUNT", 5)) == (False, [0, 1, 2, 3, 4])
    assert versions(raw.call("ESCAN", stream, 0, 4)) == (False, [0, 1, 2, 3, 4])
    assert versions(raw.call("ESCAN", stream, 0, 4, "COUNT", 3)) == (True, [0, 1, 2])


def test_escan_count_0_returns_no_event_and_has_more_if_any_exists(raw):
    stream = unique()
    assert versions(raw.call("ESCAN", stream, "-", "+", "COUNT", 0)) == (False, [])
    fill(raw, stream, 2)
    assert versions(raw.call("ESCAN", stream, "-", "+", "COUNT", 0)) == (True, [])


def test_escan_count_defaults_to_100(raw):
    stream = unique()
    fill(raw, stream, 105)
    more, got = versions(raw.call("ESCAN", stream, "-", "+"))
    assert (more, got) == (True, list(range(100)))
    assert versions(raw.call("ESCAN", stream, 100, "+")) == (False, [100, 101, 102, 103, 104])


def test_escan_plus_as_start_is_invalidarg(raw):
    assert raw.call("ESCAN", unique(), "+", 3) == "INVALIDARG start version cannot be '+'"


def test_escan_minus_as_end_is_invalidarg(raw):
    assert raw.call("ESCAN", unique(), 0, "-") == "INVALIDARG end version cannot be '-'"


def test_escan_partition_key_option_addresses_the_stream_under_that_key(raw):
    stream = unique()
    key = str(key_in_partition(3))
    fill(raw, stream, 2, "PARTITION_KEY", key)
    assert versions(raw.call("ESCAN", stream, "-", "+", "PARTITION_KEY", key))[1] == [0, 1]
    assert raw.call("ESVER", stream, "PARTITION_KEY", key) == 1


# ------------------------------------------------------------------------------------ ESVER
def test_esver_is_the_last_version_or_null(raw):
    stream = unique()
    assert raw.call("ESVER", stream) is None
    fill(raw, stream, 3)
    reply = raw.call("ESVER", stream)
    assert type(reply) is int and reply == 2


# ----------------------------------------------------------------------------- EPSCAN/EPSEQ
def test_epseq_of_a_partition_without_events_is_null(praw):
    assert praw.call("EPSEQ", 31) is None


def test_epseq_is_the_last_partition_sequence(partitions):
    with RawClient(partitions.port) as c:
        stream = stream_in_partition(30)
        fill(c, stream, 4)
        assert c.call("EPSEQ", 30) == 3
        key = str(uuid.UUID(bytes=partition_key_for_stream(stream.encode())))
        assert c.call("EPSEQ", key) == 3  # by partition key


@pytest.mark.parametrize("command", ["EPSEQ", "EPSCAN"])
def test_a_partition_id_not_below_the_partition_count_is_clusterdown(praw, command):
    args = (32,) if command == "EPSEQ" else (32, "-", "+")
    assert praw.call(command, *args) == "CLUSTERDOWN partition unavailable"
    assert praw.call(command, 65535, *args[1:]) == "CLUSTERDOWN partition unavailable"


def test_epscan_by_partition_id_and_by_partition_key(partitions):
    with RawClient(partitions.port) as c:
        s1, s2 = stream_in_partition(5), stream_in_partition(5)
        fill(c, s1, 2)
        fill(c, s2, 2)
        by_id = scan(c.call("EPSCAN", 5, "-", "+"))[1]
        assert [e[b"partition_sequence"] for e in by_id] == [0, 1, 2, 3]
        assert [e[b"stream_id"] for e in by_id] == [s1.encode()] * 2 + [s2.encode()] * 2
        assert all(e[b"partition_id"] == 5 for e in by_id)
        key = str(key_in_partition(5))
        assert scan(c.call("EPSCAN", key, "-", "+"))[1] == by_id


def test_epscan_start_and_end_are_inclusive(partitions):
    with RawClient(partitions.port) as c:
        stream = stream_in_partition(6)
        fill(c, stream, 10)
        assert sequences(c.call("EPSCAN", 6, 2, 5))[1] == [2, 3, 4, 5]
        assert sequences(c.call("EPSCAN", 6, 3, 3))[1] == [3]
        assert sequences(c.call("EPSCAN", 6, "-", 1))[1] == [0, 1]
        assert sequences(c.call("EPSCAN", 6, 8, "+"))[1] == [8, 9]
        assert sequences(c.call("EPSCAN", 6, 10, "+")) == (False, [])


def test_epscan_has_more_exactly_when_more_events_exist_in_the_range(partitions):
    with RawClient(partitions.port, 3) as c:
        fill(c, stream_in_partition(7), 10)
        assert sequences(c.call("EPSCAN", 7, "-", "+", "COUNT", 4)) == (True, [0, 1, 2, 3])
        assert sequences(c.call("EPSCAN", 7, 6, "+", "COUNT", 4)) == (False, [6, 7, 8, 9])
        assert sequences(c.call("EPSCAN", 7, 0, 4)) == (False, [0, 1, 2, 3, 4])
        assert sequences(c.call("EPSCAN", 7, 0, 4, "COUNT", 2)) == (True, [0, 1])
        assert sequences(c.call("EPSCAN", 7, "-", "+")) == (False, list(range(10)))


def test_epscan_returns_a_transaction_consecutively_and_its_tail_from_inside(partitions):
    with RawClient(partitions.port) as c:
        key = str(key_in_partition(8))
        a, b = unique("a"), unique("b")
        c.call("EMAPPEND", key, a, "A0", b, "B0", a, "A1")
        c.call("EAPPEND", unique(), "After", "PARTITION_KEY", key)
        _, events = scan(c.call("EPSCAN", 8, "-", "+"))
        assert [(e[b"partition_sequence"], e[b"event_name"]) for e in events] == [
            (0, b"A0"),
            (1, b"B0"),
            (2, b"A1"),
            (3, b"After"),
        ]
        assert sequences(c.call("EPSCAN", 8, 1, 2))[1] == [1, 2]


def test_epscan_plus_as_start_and_minus_as_end_are_invalidarg(praw):
    assert praw.call("EPSCAN", 0, "+", 3) == "INVALIDARG start sequence cannot be '+'"
    assert praw.call("EPSCAN", 0, 0, "-") == "INVALIDARG end sequence cannot be '-'"


def test_epscan_count_defaults_to_100(partitions):
    with RawClient(partitions.port) as c:
        fill(c, stream_in_partition(10), 103)
        assert sequences(c.call("EPSCAN", 10, "-", "+")) == (True, list(range(100)))


# ------------------------------------------------------------------------ read your writes
def test_every_read_sees_an_append_as_soon_as_it_is_acknowledged(raw):
    stream = unique()
    partition = partition_of_stream(stream)
    for i in range(30):
        reply = as_dict(raw.call("EAPPEND", stream, "E", f"p{i}"))
        assert as_dict(raw.call("EGET", reply[b"event_id"]))[b"payload"] == f"p{i}".encode()
        assert raw.call("ESVER", stream) == i
        assert versions(raw.call("ESCAN", stream, i, "+"))[1] == [i]
        seq = reply[b"partition_sequence"]
        assert raw.call("EPSEQ", partition) >= seq
        assert sequences(raw.call("EPSCAN", partition, seq, seq))[1] == [seq]


def test_reads_pipelined_behind_appends_see_them(server, protocol):
    stream = unique()
    key = str(uuid.UUID(bytes=partition_key_for_stream(stream.encode())))
    eid = event_id_for_stream(stream)
    r = client(server.port, protocol)
    try:
        pipe = r.pipeline(transaction=False)
        pipe.execute_command("EAPPEND", stream, "First", "EVENT_ID", eid)
        pipe.execute_command("EGET", eid)
        pipe.execute_command("ESVER", stream)
        pipe.execute_command("EMAPPEND", key, stream, "Second", stream, "Third")
        pipe.execute_command("ESCAN", stream, "-", "+")
        pipe.execute_command("ESVER", stream)
        pipe.execute_command("EPSEQ", partition_of_stream(stream))
        replies = pipe.execute()
        pipe.reset()
    finally:
        r.close()
    appended = as_dict(replies[0])
    assert as_dict(replies[1])[b"event_name"] == b"First"
    assert replies[2] == 0
    assert [e[b"event_name"] for e in scan(replies[4])[1]] == [b"First", b"Second", b"Third"]
    assert replies[5] == 2
    assert replies[6] >= appended[b"partition_sequence"] + 2
