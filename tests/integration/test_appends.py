"""EAPPEND and EMAPPEND (reference §2.4-2.7, §4.3-4.4; PROTOCOL.md points 3-5, 10, details)."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest
from resp_client import (
    Map,
    RawClient,
    as_dict,
    client,
    event_id_for_key,
    event_id_for_stream,
    key_in_partition,
    module_node,
    partition_of_stream,
    scan,
    stream_in_partition,
    string_type,
    unique,
    wait_until,
)

from sierradb.node.identifiers import partition_hash, partition_key_for_stream


def _str(v: object) -> object:
    """A string of either wire type as text (the types are asserted separately)."""
    return v.decode() if isinstance(v, bytes) else v


def _key(name: str, protocol: int) -> str | bytes:
    return name if protocol == 3 else name.encode()


APPEND_KEYS = [
    "event_id",
    "partition_key",
    "partition_id",
    "partition_sequence",
    "stream_version",
    "timestamp",
]
EMAPPEND_KEYS = [
    "partition_key",
    "partition_id",
    "first_partition_sequence",
    "last_partition_sequence",
    "events",
]
EMAPPEND_EVENT_KEYS = ["event_id", "stream_id", "stream_version", "timestamp"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_node(tmp_path_factory)


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    yield from module_node(tmp_path_factory, "--strict-versioning", "true")


@pytest.fixture
def r(server, protocol):
    c = client(server.port, protocol)
    yield c
    c.close()


def pk_of(stream: str) -> str:
    return str(uuid.UUID(bytes=partition_key_for_stream(stream.encode())))


def events_of(c, stream: str, *options) -> list[dict]:
    return scan(c.call("ESCAN", stream, "-", "+", *options))[1]


def wrongver(current: str, expected: str, key: str, stream: str) -> str:
    return (
        f"WRONGVER current stream version is {current} but expected {expected} "
        f"for partition key {key} and stream id {stream}"
    )


# ------------------------------------------------------------------------- EAPPEND forms
def test_eappend_third_positional_argument_is_the_payload(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "UserCreated", '{"name": "Alice"}')
    (event,) = events_of(raw, stream)
    assert event[b"payload"] == b'{"name": "Alice"}'
    assert event[b"event_name"] == b"UserCreated"


def test_eappend_payload_and_metadata_options(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "E", "metadata", b"m-1", "PAYLOAD", b"p-1")
    (event,) = events_of(raw, stream)
    assert (event[b"payload"], event[b"metadata"]) == (b"p-1", b"m-1")


def test_eappend_option_keywords_are_case_insensitive(raw):
    stream = unique()
    reply = as_dict(raw.call("EAPPEND", stream, "E", "payload", "x", "expected_version", "Empty"))
    assert reply[b"stream_version"] == 0
    assert events_of(raw, stream)[0][b"payload"] == b"x"


def test_eappend_positional_payload_combines_with_options(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "E", "body", "METADATA", "meta", "EXPECTED_VERSION", "empty")
    (event,) = events_of(raw, stream)
    assert (event[b"payload"], event[b"metadata"]) == (b"body", b"meta")


def test_eappend_without_payload_stores_empty_payload_and_metadata(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "E")
    (event,) = events_of(raw, stream)
    assert event[b"payload"] == b"" and event[b"metadata"] == b""


def test_eappend_timestamp_is_milliseconds_and_is_kept(raw):
    stream = unique()
    reply = as_dict(raw.call("EAPPEND", stream, "E", "TIMESTAMP", 1700000000123))
    assert reply[b"timestamp"] == 1700000000123
    assert events_of(raw, stream)[0][b"timestamp"] == 1700000000123


def test_eappend_default_timestamp_is_the_server_clock_in_milliseconds(raw):
    import time

    before = int(time.time() * 1000)
    reply = as_dict(raw.call("EAPPEND", unique(), "E"))
    after = int(time.time() * 1000)
    assert before - 1000 <= reply[b"timestamp"] <= after + 1000


def test_eappend_event_id_option_is_used(raw):
    stream = unique()
    eid = event_id_for_stream(stream)
    reply = as_dict(raw.call("EAPPEND", stream, "E", "EVENT_ID", eid))
    assert reply[b"event_id"] == eid
    assert events_of(raw, stream)[0][b"event_id"] == eid


def test_eappend_partition_key_option_chooses_the_partition(raw):
    stream = unique()
    key = key_in_partition((partition_of_stream(stream) + 5) % 32)
    reply = as_dict(raw.call("EAPPEND", stream, "E", "PARTITION_KEY", str(key)))
    assert reply[b"partition_key"] == str(key)
    assert reply[b"partition_id"] == partition_hash(key.bytes) % 32
    assert len(events_of(raw, stream, "PARTITION_KEY", str(key))) == 1
    assert events_of(raw, stream) == []  # the default key addresses another stream


def test_generated_event_ids_embed_the_partition_hash(raw):
    stream = unique()
    reply = as_dict(raw.call("EAPPEND", stream, "E"))
    eid = uuid.UUID(reply[b"event_id"])
    assert partition_hash(eid.bytes) == partition_hash(partition_key_for_stream(stream.encode()))
    assert (eid.int >> 64) & 0xF == 0x7 and (eid.int >> 62) & 0b11 == 0b10


def test_eapppend_reply_has_six_keys_in_order_with_reference_types(raw, protocol):
    stream = unique()
    reply = raw.call("EAPPEND", stream, "E")
    if protocol == 3:
        assert isinstance(reply, Map)
        items = list(reply.items())
    else:
        assert isinstance(reply, list) and len(reply) == 12
        items = list(zip(reply[::2], reply[1::2], strict=True))
    assert [_str(k) for k, _ in items] == APPEND_KEYS
    text = string_type(protocol)
    assert all(type(k) is text for k, _ in items)
    d = {_str(k): v for k, v in items}
    assert type(d["event_id"]) is text and type(d["partition_key"]) is text
    assert _str(d["partition_key"]) == pk_of(stream)
    for key in ("partition_id", "partition_sequence", "stream_version", "timestamp"):
        assert type(d[key]) is int
    assert d["partition_id"] == partition_of_stream(stream)
    assert d["stream_version"] == 0


def test_stream_versions_start_at_zero_and_are_gapless(raw):
    stream = unique()
    versions = [as_dict(raw.call("EAPPEND", stream, "E"))[b"stream_version"] for _ in range(5)]
    assert versions == [0, 1, 2, 3, 4]


def test_partition_sequences_are_gapless_across_streams_of_a_partition(raw):
    partition = 9
    streams = [stream_in_partition(partition) for _ in range(3)]
    seqs = [
        as_dict(raw.call("EAPPEND", streams[i % 3], "E"))[b"partition_sequence"] for i in range(9)
    ]
    assert seqs == list(range(seqs[0], seqs[0] + 9))


@pytest.mark.parametrize(
    "args",
    [
        ("PAYLOAD", "a", "PAYLOAD", "b"),
        ("pos", "PAYLOAD", "b"),
        ("METADATA", "a", "METADATA", "b"),
        ("TIMESTAMP", "1", "TIMESTAMP", "2"),
        ("EXPECTED_VERSION", "3", "EXPECTED_VERSION", "3"),
    ],
)
def test_an_option_given_twice_is_invalidarg(raw, args):
    stream = unique()
    reply = raw.call("EAPPEND", stream, "E", *args)
    assert reply.startswith("INVALIDARG ") and "already specified" in reply
    assert raw.call("ESVER", stream) is None


@pytest.mark.parametrize("stream", ["", "x" * 65, "nul\x00byte"], ids=["empty", "65", "nul"])
def test_an_invalid_stream_id_is_invalidarg(raw, stream):
    assert raw.call("EAPPEND", stream, "E").startswith("INVALIDARG ")


def test_a_stream_id_of_64_bytes_is_accepted(raw):
    stream = unique().ljust(64, "z")
    assert as_dict(raw.call("EAPPEND", stream, "E"))[b"stream_version"] == 0


def test_a_timestamp_overflowing_nanoseconds_is_invalidarg(raw):
    reply = raw.call("EAPPEND", unique(), "E", "TIMESTAMP", 18446744073710)
    assert reply == "INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds"


def test_a_timestamp_beyond_the_signed_nanosecond_range_is_dbopfailed(raw):
    stream = unique()
    reply = raw.call("EAPPEND", stream, "E", "TIMESTAMP", 9223372036855)
    assert reply.startswith("DBOPFAILED ")
    assert raw.call("ESVER", stream) is None


# ---------------------------------------------------------------------- expected version
def test_expected_version_defaults_to_any(raw):
    stream = unique()
    for v in range(3):
        assert as_dict(raw.call("EAPPEND", stream, "E"))[b"stream_version"] == v
    assert (
        as_dict(raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", "any"))[b"stream_version"] == 3
    )


def test_expected_version_empty_passes_on_a_new_stream(raw):
    stream = unique()
    reply = as_dict(raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", "empty"))
    assert reply[b"stream_version"] == 0


def test_expected_version_empty_fails_on_a_stream_with_events(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "E")
    raw.call("EAPPEND", stream, "E")
    reply = raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", "empty")
    assert reply == wrongver("1", "empty", pk_of(stream), stream)


def test_expected_version_exists_fails_on_a_new_stream(raw):
    stream = unique()
    reply = raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", "exists")
    assert reply == wrongver("empty", "exists", pk_of(stream), stream)
    assert raw.call("ESVER", stream) is None


def test_expected_version_exists_passes_on_a_stream_with_events(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "E")
    reply = as_dict(raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", "EXISTS"))
    assert reply[b"stream_version"] == 1


def test_expected_version_n_is_the_version_of_the_last_event(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "E")
    raw.call("EAPPEND", stream, "E")
    reply = as_dict(raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", 1))
    assert reply[b"stream_version"] == 2


def test_expected_version_mismatch_gets_the_exact_wrongver_text_and_writes_nothing(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "E")
    raw.call("EAPPEND", stream, "E")
    assert raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", 5) == wrongver(
        "1", "5", pk_of(stream), stream
    )
    assert raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", 0) == wrongver(
        "1", "0", pk_of(stream), stream
    )
    assert raw.call("ESVER", stream) == 1


def test_expected_version_n_on_a_new_stream_reports_current_empty(raw):
    stream = unique()
    assert raw.call("EAPPEND", stream, "E", "EXPECTED_VERSION", 0) == wrongver(
        "empty", "0", pk_of(stream), stream
    )


# ---------------------------------------------------------------------------- strict mode
@pytest.mark.parametrize(
    ("options", "word"),
    [
        ((), "any"),
        (("EXPECTED_VERSION", "any"), "any"),
        (("EXPECTED_VERSION", "ANY"), "any"),
        (("EXPECTED_VERSION", "exists"), "exists"),
        (("EXPECTED_VERSION", "Exists"), "exists"),
    ],
)
def test_strict_mode_refuses_any_and_exists(strict, options, word):
    stream = unique()
    with RawClient(strict.port) as c:
        c.call("EAPPEND", stream, "E", "EXPECTED_VERSION", "empty")
        reply = c.call("EAPPEND", stream, "E", *options)
        assert reply == f"INVALIDARG strict versioning mode rejects EXPECTED_VERSION {word}"
        assert c.call("ESVER", stream) == 0


def test_strict_mode_accepts_empty_and_exact_versions(strict):
    stream = unique()
    with RawClient(strict.port) as c:
        assert (
            as_dict(c.call("EAPPEND", stream, "E", "EXPECTED_VERSION", "empty"))[b"stream_version"]
            == 0
        )
        assert (
            as_dict(c.call("EAPPEND", stream, "E", "EXPECTED_VERSION", 0))[b"stream_version"] == 1
        )


def test_strict_mode_refuses_an_emappend_with_one_event_without_exact_version(strict):
    s1, s2 = unique(), unique()
    key = str(uuid.uuid4())
    with RawClient(strict.port) as c:
        reply = c.call(
            "EMAPPEND",
            key,
            s1,
            "A",
            "EXPECTED_VERSION",
            "empty",
            s2,
            "B",
            "EXPECTED_VERSION",
            "exists",
        )
        assert reply == "INVALIDARG strict versioning mode rejects EXPECTED_VERSION exists"
        assert c.call("ESVER", s1, "PARTITION_KEY", key) is None
        ok = as_dict(
            c.call(
                "EMAPPEND",
                key,
                s1,
                "A",
                "EXPECTED_VERSION",
                "empty",
                s1,
                "B",
                "EXPECTED_VERSION",
                0,
            )
        )
        assert [as_dict(e)[b"stream_version"] for e in ok[b"events"]] == [0, 1]


# -------------------------------------------------------------------------------- EMAPPEND
def test_emappend_reply_has_five_keys_and_one_event_entry_per_event_in_order(raw, protocol):
    key = uuid.uuid4()
    a, b = unique("a"), unique("b")
    reply = raw.call(
        "EMAPPEND", str(key), a, "A1", "PAYLOAD", "1", b, "B1", a, "A2", "PAYLOAD", "3", b, "B2"
    )
    if protocol == 3:
        assert isinstance(reply, Map)
        items = list(reply.items())
    else:
        assert isinstance(reply, list) and len(reply) == 10
        items = list(zip(reply[::2], reply[1::2], strict=True))
    assert [_str(k) for k, _ in items] == EMAPPEND_KEYS
    text = string_type(protocol)
    assert all(type(k) is text for k, _ in items)
    d = {_str(k): v for k, v in items}
    assert type(d["partition_key"]) is text and _str(d["partition_key"]) == str(key)
    assert d["partition_id"] == partition_hash(key.bytes) % 32
    first, last = d["first_partition_sequence"], d["last_partition_sequence"]
    assert type(first) is int and last == first + 3
    assert len(d["events"]) == 4
    entries = []
    for entry in d["events"]:
        if protocol == 3:
            assert isinstance(entry, Map)
            pairs = list(entry.items())
        else:
            pairs = list(zip(entry[::2], entry[1::2], strict=True))
        assert [_str(k) for k, _ in pairs] == EMAPPEND_EVENT_KEYS
        e = {_str(k): _str(v) if isinstance(v, bytes) else v for k, v in pairs}
        assert all(type(k) is text for k, _ in pairs)
        assert type(dict(pairs)[_key("event_id", protocol)]) is text
        assert type(dict(pairs)[_key("stream_id", protocol)]) is text
        assert type(e["stream_version"]) is int and type(e["timestamp"]) is int
        entries.append(e)
    assert [(e["stream_id"], e["stream_version"]) for e in entries] == [
        (a, 0),
        (b, 0),
        (a, 1),
        (b, 1),
    ]
    # Event i has partition sequence first + i, and the ids are the stored ones.
    for i, e in enumerate(entries):
        stored = as_dict(raw.call("EGET", e["event_id"]))
        assert stored[b"partition_sequence"] == first + i
        assert stored[b"stream_id"] == e["stream_id"].encode()


def test_emappend_events_share_one_multi_event_transaction_id(raw):
    key = uuid.uuid4()
    s = unique()
    reply = as_dict(raw.call("EMAPPEND", str(key), s, "A", s, "B", s, "C"))
    txns = {
        as_dict(raw.call("EGET", as_dict(e)[b"event_id"]))[b"transaction_id"]
        for e in reply[b"events"]
    }
    (txn,) = txns
    assert uuid.UUID(str(txn)).bytes[8] & 0x80 == 0  # cleared for multi-event writes
    single = as_dict(raw.call("EAPPEND", unique(), "E"))
    one = as_dict(raw.call("EGET", single[b"event_id"]))[b"transaction_id"]
    assert uuid.UUID(str(one)).bytes[8] & 0x80 == 0x80


def test_emappend_checks_a_repeated_stream_against_the_running_version(raw):
    key = str(uuid.uuid4())
    s = unique()
    reply = as_dict(
        raw.call(
            "EMAPPEND", key, s, "A", "EXPECTED_VERSION", "empty", s, "B", "EXPECTED_VERSION", 0
        )
    )
    assert [as_dict(e)[b"stream_version"] for e in reply[b"events"]] == [0, 1]


def test_emappend_is_atomic_one_bad_expected_version_rejects_all(raw):
    key = str(uuid.uuid4())
    a, b, c = unique("a"), unique("b"), unique("c")
    raw.call("EMAPPEND", key, b, "B0")
    partition = partition_hash(uuid.UUID(key).bytes) % 32
    before = raw.call("EPSEQ", partition)
    reply = raw.call(
        "EMAPPEND", key, a, "A", "EXPECTED_VERSION", "empty", b, "B", "EXPECTED_VERSION", 7, c, "C"
    )
    assert reply == wrongver("0", "7", key, b)
    assert raw.call("EPSEQ", partition) == before
    for s in (a, c):
        assert raw.call("ESVER", s, "PARTITION_KEY", key) is None
    assert raw.call("ESVER", b, "PARTITION_KEY", key) == 0


def test_emappend_with_a_bad_event_id_is_invalidarg(raw):
    key = uuid.uuid4()
    other = key_in_partition((partition_hash(key.bytes) + 1) % 32)
    s = unique()
    reply = raw.call("EMAPPEND", str(key), s, "A", s, "B", "EVENT_ID", event_id_for_key(other))
    assert reply == "INVALIDARG the event id must embed the partition hash"
    assert raw.call("ESVER", s, "PARTITION_KEY", str(key)) is None


def test_eappend_with_an_event_id_not_embedding_the_partition_hash_is_invalidarg(raw):
    stream = unique()
    pk_hash = partition_hash(partition_key_for_stream(stream.encode()))
    bad = uuid.uuid4()
    while partition_hash(bad.bytes) == pk_hash:
        bad = uuid.uuid4()
    reply = raw.call("EAPPEND", stream, "E", "EVENT_ID", str(bad))
    assert reply == "INVALIDARG the event id must embed the partition hash"
    assert raw.call("ESVER", stream) is None


# ----------------------------------------------------------------------- idempotent retries
def test_a_retry_with_the_same_event_id_and_content_returns_the_stored_position(raw):
    stream = unique()
    eid = event_id_for_stream(stream)
    first = as_dict(raw.call("EAPPEND", stream, "Paid", "EVENT_ID", eid, "PAYLOAD", "p"))
    partition = first[b"partition_id"]
    raw.call("EAPPEND", unique(), "Other")  # something else happens meanwhile
    seq_before = raw.call("EPSEQ", partition)
    again = as_dict(raw.call("EAPPEND", stream, "Paid", "EVENT_ID", eid, "PAYLOAD", "p"))
    assert again == first
    assert len(events_of(raw, stream)) == 1
    assert raw.call("EPSEQ", partition) == seq_before


def test_a_retry_pipelined_behind_the_original_gets_the_same_position(raw):
    stream = unique()
    eid = event_id_for_stream(stream)
    for _ in range(3):
        raw.send("EAPPEND", stream, "E", "EVENT_ID", eid, "PAYLOAD", "p")
    raw.send("EAPPEND", stream, "E", "EVENT_ID", eid, "PAYLOAD", "other")
    replies = [raw.read() for _ in range(4)]
    first = as_dict(replies[0])
    assert as_dict(replies[1]) == first and as_dict(replies[2]) == first
    assert replies[3] == "DUPLICATE event id already used by another event"
    assert len(events_of(raw, stream)) == 1


def test_a_retry_ignores_metadata_and_timestamp(raw):
    stream = unique()
    eid = event_id_for_stream(stream)
    first = as_dict(raw.call("EAPPEND", stream, "E", "EVENT_ID", eid, "METADATA", "m1"))
    again = as_dict(
        raw.call("EAPPEND", stream, "E", "EVENT_ID", eid, "METADATA", "m2", "TIMESTAMP", 5)
    )
    assert again == first
    assert len(events_of(raw, stream)) == 1


@pytest.mark.parametrize("change", ["payload", "event_name", "stream"])
def test_the_same_event_id_with_different_content_gets_duplicate(raw, change):
    stream = unique()
    key = pk_of(stream)
    eid = event_id_for_stream(stream)
    raw.call("EAPPEND", stream, "E", "EVENT_ID", eid, "PAYLOAD", "p")
    args = {
        "payload": (stream, "E", "PAYLOAD", "other"),
        "event_name": (stream, "F", "PAYLOAD", "p"),
    }
    other_stream = unique()
    args["stream"] = (other_stream, "E", "PAYLOAD", "p", "PARTITION_KEY", key)
    reply = raw.call("EAPPEND", *args[change], "EVENT_ID", eid)
    assert reply == "DUPLICATE event id already used by another event"
    assert len(events_of(raw, stream)) == 1
    assert events_of(raw, other_stream, "PARTITION_KEY", key) == []


def test_a_retry_is_recognised_before_the_expected_version_is_checked(raw):
    stream = unique()
    eid = event_id_for_stream(stream)
    first = as_dict(raw.call("EAPPEND", stream, "E", "EVENT_ID", eid, "EXPECTED_VERSION", "empty"))
    raw.call("EAPPEND", stream, "Later")
    again = as_dict(raw.call("EAPPEND", stream, "E", "EVENT_ID", eid, "EXPECTED_VERSION", "empty"))
    assert again == first
    assert raw.call("ESVER", stream) == 1


def test_an_emappend_retry_of_a_whole_transaction_returns_the_stored_positions(raw):
    key = uuid.uuid4()
    s = unique()
    e1, e2 = event_id_for_key(key), event_id_for_key(key)
    args = (
        "EMAPPEND",
        str(key),
        s,
        "A",
        "EVENT_ID",
        e1,
        "EXPECTED_VERSION",
        "empty",
        s,
        "B",
        "EVENT_ID",
        e2,
        "PAYLOAD",
        "b",
    )
    first = as_dict(raw.call(*args))
    again = as_dict(raw.call(*args))
    assert again == first
    assert len(events_of(raw, s, "PARTITION_KEY", str(key))) == 2


def test_an_emappend_matching_part_of_a_stored_transaction_gets_duplicate(raw):
    key = uuid.uuid4()
    s = unique()
    e1, e2, e3 = (event_id_for_key(key) for _ in range(3))
    raw.call("EMAPPEND", str(key), s, "A", "EVENT_ID", e1, s, "B", "EVENT_ID", e2)
    reply = raw.call("EMAPPEND", str(key), s, "A", "EVENT_ID", e1, s, "C", "EVENT_ID", e3)
    assert reply == "DUPLICATE event id already used by another event"
    assert raw.call("EMAPPEND", str(key), s, "A", "EVENT_ID", e1) == (
        "DUPLICATE event id already used by another event"
    )
    assert len(events_of(raw, s, "PARTITION_KEY", str(key))) == 2


def test_an_emappend_using_one_event_id_twice_gets_duplicate(raw):
    key = uuid.uuid4()
    s = unique()
    eid = event_id_for_key(key)
    reply = raw.call("EMAPPEND", str(key), s, "A", "EVENT_ID", eid, s, "B", "EVENT_ID", eid)
    assert reply == "DUPLICATE event id already used by another event"
    assert raw.call("ESVER", s, "PARTITION_KEY", str(key)) is None


# ---------------------------------------------------------------- stream / partition key
def test_a_stream_is_bound_to_the_partition_key_of_its_first_event(raw):
    stream = unique()
    raw.call("EAPPEND", stream, "E")
    other = key_in_partition(partition_of_stream(stream))
    assert str(other) != pk_of(stream)
    reply = raw.call("EAPPEND", stream, "E", "PARTITION_KEY", str(other))
    assert reply.startswith(
        "DBOPFAILED partition key must be the same for all events in a stream"
    ), reply
    assert raw.call("ESVER", stream) == 0
    assert events_of(raw, stream, "PARTITION_KEY", str(other)) == []


# ------------------------------------------------------------------------- binary payloads
@pytest.mark.parametrize(
    "payload",
    [bytes(range(256)), b"line1\r\nline2\r\n$5\r\n*3\r\n", b"", b"\x00" * 1000],
    ids=["all-bytes", "crlf", "empty", "nuls"],
)
def test_binary_payloads_and_metadata_round_trip_exactly(r, payload):
    stream = unique()
    reply = as_dict(
        r.execute_command("EAPPEND", stream, "Bin", "PAYLOAD", payload, "METADATA", payload[::-1])
    )
    (event,) = scan(r.execute_command("ESCAN", stream, "-", "+"))[1]
    assert event[b"payload"] == payload
    assert event[b"metadata"] == payload[::-1]
    got = as_dict(r.execute_command("EGET", reply[b"event_id"]))
    assert got[b"payload"] == payload


def test_an_empty_payload_is_an_empty_bulk_string_never_null(server, protocol):
    stream = unique()
    with RawClient(server.port, protocol) as c:
        c.call("EAPPEND", stream, "E", "PAYLOAD", "")
        (event,) = events_of(c, stream)
        assert event[b"payload"] == b"" and event[b"metadata"] == b""


def test_a_binary_positional_payload_round_trips(raw):
    stream = unique()
    payload = bytes(range(255, -1, -1))
    raw.call("EAPPEND", stream, "E", payload)
    assert events_of(raw, stream)[0][b"payload"] == payload


# ------------------------------------------------------------------- several connections
def test_two_connections_see_each_others_writes(server):
    stream = unique()
    with RawClient(server.port) as a, RawClient(server.port, 3) as b:
        ra = as_dict(a.call("EAPPEND", stream, "FromA"))
        assert b.call("ESVER", stream) == 0
        assert as_dict(b.call("EGET", ra[b"event_id"]))[b"event_name"] == b"FromA"
        b.call("EAPPEND", stream, "FromB", "EXPECTED_VERSION", 0)
        assert [e[b"event_name"] for e in events_of(a, stream)] == [b"FromA", b"FromB"]


def test_concurrent_appends_from_several_connections_get_gapless_versions_and_sequences(server):
    stream = unique()
    partition = partition_of_stream(stream)
    neighbours = [stream_in_partition(partition) for _ in range(3)]
    threads_n, per_thread = 8, 40
    results: list[list[dict]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        c = client(server.port, 3 if i % 2 else 2)
        try:
            for j in range(per_thread):
                target = stream if j % 2 == 0 else neighbours[(i + j) % 3]
                reply = as_dict(c.execute_command("EAPPEND", target, f"T{i}", f"{i}:{j}"))
                results[i].append({**reply, b"stream": target})
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    replies = [rep for rs in results for rep in rs]
    assert len(replies) == threads_n * per_thread
    mine = sorted(rep[b"stream_version"] for rep in replies if rep[b"stream"] == stream)
    assert mine == list(range(threads_n * per_thread // 2))
    seqs = sorted(rep[b"partition_sequence"] for rep in replies)
    assert len(set(seqs)) == len(seqs)
    r = client(server.port)
    try:
        _, events = scan(r.execute_command("ESCAN", stream, "-", "+", "COUNT", 1000))
        assert [e[b"stream_version"] for e in events] == mine
        last = r.execute_command("EPSEQ", partition)
        _, all_events = scan(r.execute_command("EPSCAN", partition, "-", "+", "COUNT", 10000))
        assert [e[b"partition_sequence"] for e in all_events] == list(range(last + 1))
        # Within each connection, writes are in order.
        for rs in results:
            assert [x[b"partition_sequence"] for x in rs] == sorted(
                x[b"partition_sequence"] for x in rs
            )
    finally:
        r.close()


def test_appends_in_flight_complete_when_their_client_disconnects(server):
    stream = unique()
    n = 150
    ids = [event_id_for_stream(stream) for _ in range(n)]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        from resp_client import encode_command

        batch = b"".join(
            encode_command("EAPPEND", stream, "InFlight", "EVENT_ID", eid, "PAYLOAD", f"{i:04d}")
            for i, eid in enumerate(ids)
        )
        assert len(batch) < 60_000  # one read on the server side
        sock.sendall(batch)
    finally:
        sock.close()  # before any reply was read
    with RawClient(server.port) as c:
        wait_until(lambda: c.call("ESVER", stream) == n - 1, timeout=30)
        events = events_of(c, stream, "COUNT", 1000)
        assert [e[b"event_id"] for e in events] == ids
        assert [e[b"payload"] for e in events] == [f"{i:04d}".encode() for i in range(n)]
        assert c.call("PING") == "PONG"
