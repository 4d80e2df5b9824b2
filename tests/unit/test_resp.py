"""The RESP codec: reply encoding (RESP2 and RESP3) and request parsing, fed whole, byte by byte,
in random chunks and with trailing bytes."""

from __future__ import annotations

import enum
import math

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sierradb.node.resp import (
    DEFAULT_MAX_ARGS,
    MAX_INLINE_BYTES,
    ErrorReply,
    ProtocolError,
    Push,
    RequestReader,
    RespError,
    SimpleString,
    Verbatim,
    encode,
    encode_into,
)

EAPPEND = b"*3\r\n$7\r\nEAPPEND\r\n$8\r\nstream-1\r\n$4\r\nName\r\n"
EAPPEND_ARGS = [b"EAPPEND", b"stream-1", b"Name"]


# -- helpers --------------------------------------------------------------------------------------


def request_bytes(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def feed_all(reader: RequestReader, chunks: list[bytes]) -> list[list[bytes]]:
    """Feed each chunk and collect every request, as the server does."""
    requests: list[list[bytes]] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (request := reader.next_request()) is not None:
            requests.append(request)
    return requests


def parse(data: bytes, **limits: int) -> list[list[bytes]]:
    return feed_all(RequestReader(**limits), [data])


def parse_bytewise(data: bytes, **limits: int) -> list[list[bytes]]:
    return feed_all(RequestReader(**limits), [data[i : i + 1] for i in range(len(data))])


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


_NOT_ENOUGH_DATA = object()


def hiredis_parse(data: bytes) -> list[object]:
    # gets() returns False when no reply is complete, unless told otherwise: a RESP3 `#f` reply
    # would look like no reply at all.
    reader = hiredis.Reader(notEnoughData=_NOT_ENOUGH_DATA)
    reader.feed(data)
    replies = []
    while (reply := reader.gets()) is not _NOT_ENOUGH_DATA:
        replies.append(reply)
    assert not reader.has_data()
    return replies


def protocol_error(data: bytes, **limits: int) -> str:
    with pytest.raises(ProtocolError) as info:
        parse(data, **limits)
    return info.value.message


# -- encoding: every value type, exact bytes ------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"hello", b"$5\r\nhello\r\n"),
        (b"", b"$0\r\n\r\n"),
        (b"a\r\nb\x00c", b"$6\r\na\r\nb\x00c\r\n"),
        (bytearray(b"xy"), b"$2\r\nxy\r\n"),
        (memoryview(b"xyz"), b"$3\r\nxyz\r\n"),
        ("héllo", b"$6\r\nh\xc3\xa9llo\r\n"),
        ("", b"$0\r\n\r\n"),
        (SimpleString("OK"), b"+OK\r\n"),
        (SimpleString("two\r\nlines"), b"+two  lines\r\n"),
        (ErrorReply("INVALIDARG", "bad\nthing"), b"-INVALIDARG bad thing\r\n"),
        (ErrorReply("ERR", ""), b"-ERR\r\n"),
        (0, b":0\r\n"),
        (42, b":42\r\n"),
        (-7, b":-7\r\n"),
        (2**63 - 1, b":9223372036854775807\r\n"),
        (-(2**63), b":-9223372036854775808\r\n"),
        ([], b"*0\r\n"),
        ((b"a", b"b"), b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
        ([[b"x"], []], b"*2\r\n*1\r\n$1\r\nx\r\n*0\r\n"),
    ],
)
def test_values_encode_the_same_in_both_protocols(value: object, expected: bytes, protocol: int):
    assert encode(value, protocol) == expected


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (None, b"$-1\r\n", b"_\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (1.0, b"$3\r\n1.0\r\n", b",1.0\r\n"),
        (-2.25e20, b"$9\r\n-2.25e+20\r\n", b",-2.25e+20\r\n"),
        (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
        (-math.inf, b"$4\r\n-inf\r\n", b",-inf\r\n"),
        (math.nan, b"$3\r\nnan\r\n", b",nan\r\n"),
        (2**64, b"$20\r\n18446744073709551616\r\n", b"(18446744073709551616\r\n"),
        (Push([b"message", 1]), b"*2\r\n$7\r\nmessage\r\n:1\r\n", b">2\r\n$7\r\nmessage\r\n:1\r\n"),
        (Verbatim("a\nb"), b"$3\r\na\nb\r\n", b"=7\r\ntxt:a\nb\r\n"),
        ({}, b"*0\r\n", b"%0\r\n"),
        (
            {SimpleString("has_more"): False, b"events": []},
            b"*4\r\n$8\r\nhas_more\r\n:0\r\n$6\r\nevents\r\n*0\r\n",
            b"%2\r\n+has_more\r\n#f\r\n$6\r\nevents\r\n*0\r\n",
        ),
        ([None, True], b"*2\r\n$-1\r\n:1\r\n", b"*2\r\n_\r\n#t\r\n"),
    ],
)
def test_values_that_differ_between_resp2_and_resp3(value: object, resp2: bytes, resp3: bytes):
    assert encode(value, 2) == resp2
    assert encode(value, 3) == resp3


def test_nested_maps_keep_insertion_order():
    value = {"z": {"b": 1, "a": [{"k": None}]}, "y": 2}
    assert encode(value, 3) == (
        b"%2\r\n$1\r\nz\r\n%2\r\n$1\r\nb\r\n:1\r\n$1\r\na\r\n*1\r\n%1\r\n$1\r\nk\r\n_\r\n"
        b"$1\r\ny\r\n:2\r\n"
    )
    assert encode(value, 2) == (
        b"*4\r\n$1\r\nz\r\n*4\r\n$1\r\nb\r\n:1\r\n$1\r\na\r\n*1\r\n*2\r\n$1\r\nk\r\n$-1\r\n"
        b"$1\r\ny\r\n:2\r\n"
    )


def test_large_bulk_strings_are_encoded_whole():
    payload = bytes(range(256)) * 100
    assert encode(payload, 3) == b"$25600\r\n" + payload + b"\r\n"
    assert encode([payload], 2) == b"*1\r\n$25600\r\n" + payload + b"\r\n"


def test_subclasses_of_supported_types_encode_like_their_base():
    class Color(enum.IntEnum):
        RED = 3

    class Name(enum.StrEnum):
        A = "alpha"

    class Flag(enum.IntFlag):
        X = 1

    assert encode(Color.RED, 3) == b":3\r\n"
    assert encode(Name.A, 3) == b"$5\r\nalpha\r\n"
    assert encode([Flag.X], 2) == b"*1\r\n:1\r\n"


def test_encode_into_appends_to_the_buffer():
    out = bytearray(b"+PONG\r\n")
    encode_into(out, {SimpleString("a"): 1}, 3)
    encode_into(out, [b"x"], 2)
    assert out == b"+PONG\r\n%1\r\n+a\r\n:1\r\n*1\r\n$1\r\nx\r\n"


def test_unsupported_values_and_protocols_are_refused():
    with pytest.raises(TypeError):
        encode(object(), 3)
    with pytest.raises(TypeError):
        encode({1, 2}, 2)
    with pytest.raises(ValueError):
        encode(b"x", 4)
    with pytest.raises(ValueError):
        encode_into(bytearray(), None, 1)


def test_encoded_event_map_is_valid_resp3_for_hiredis():
    event = {
        SimpleString("event_id"): SimpleString("0190a1b2-0000-7000-8000-000000000001"),
        SimpleString("partition_id"): 7,
        SimpleString("stream_id"): b"stream-1",
        SimpleString("metadata"): b"",
        SimpleString("payload"): b"\x00\r\n\xff",
    }
    reply = encode({SimpleString("has_more"): True, SimpleString("events"): [event]}, 3)
    assert hiredis_parse(reply) == [
        {
            b"has_more": True,
            b"events": [
                {
                    b"event_id": b"0190a1b2-0000-7000-8000-000000000001",
                    b"partition_id": 7,
                    b"stream_id": b"stream-1",
                    b"metadata": b"",
                    b"payload": b"\x00\r\n\xff",
                }
            ],
        }
    ]


def test_error_and_push_frames_are_read_back_by_hiredis():
    (error,) = hiredis_parse(encode(ErrorReply("NOTFOUND", "subscription not found"), 3))
    assert isinstance(error, hiredis.ReplyError)
    assert str(error) == "NOTFOUND subscription not found"
    (push,) = hiredis_parse(encode(Push([b"subscribe", 1]), 3))
    assert isinstance(push, hiredis.PushNotification)
    assert push == [b"subscribe", 1]
    assert type(hiredis_parse(encode(Push([b"subscribe", 1]), 2))[0]) is list
    assert hiredis_parse(encode(Verbatim("# Server\r\n"), 3)) == [b"# Server\r\n"]


# -- encoding: round trips through a plain hiredis reader (property) ------------------------------

_scalars = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20).map(SimpleString),
)


def _containers(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.lists(children, max_size=5).map(Push),
        st.dictionaries(st.binary(max_size=8), children, max_size=5),
    )


_values = st.recursive(_scalars, _containers, max_leaves=30)


def _as_hiredis_reads(value: object, protocol: int) -> object:
    """What hiredis returns for `encode(value, protocol)`."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return value if protocol == 3 else int(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value).encode()
    if isinstance(value, float):
        return value if protocol == 3 else repr(value).encode()
    if isinstance(value, list | tuple):
        return [_as_hiredis_reads(item, protocol) for item in value]
    if isinstance(value, dict):
        if protocol == 3:
            return {k: _as_hiredis_reads(v, protocol) for k, v in value.items()}
        flat: list[object] = []
        for k, v in value.items():
            flat += [k, _as_hiredis_reads(v, protocol)]
        return flat
    return value


@given(value=_values, protocol=st.sampled_from([2, 3]))
@settings(deadline=None)
def test_encoded_values_are_valid_resp_for_hiredis(value: object, protocol: int):
    assert hiredis_parse(encode(value, protocol)) == [_as_hiredis_reads(value, protocol)]


@given(values=st.lists(_values, max_size=5), protocol=st.sampled_from([2, 3]))
@settings(deadline=None)
def test_encode_into_batches_equal_the_concatenated_encodings(values: list[object], protocol: int):
    out = bytearray()
    for value in values:
        encode_into(out, value, protocol)
    assert bytes(out) == b"".join(encode(value, protocol) for value in values)


# -- parsing: well-formed requests ----------------------------------------------------------------


def test_a_request_fed_whole_is_a_list_of_bytes():
    assert parse(EAPPEND) == [EAPPEND_ARGS]


def test_a_request_fed_byte_by_byte():
    reader = RequestReader()
    for byte in EAPPEND[:-1]:
        reader.feed(bytes([byte]))
        assert reader.next_request() is None
    reader.feed(EAPPEND[-1:])
    assert reader.next_request() == EAPPEND_ARGS
    assert reader.next_request() is None


def test_trailing_bytes_of_the_next_request_wait_for_the_rest():
    reader = RequestReader()
    reader.feed(EAPPEND + EAPPEND[:10])
    assert reader.next_request() == EAPPEND_ARGS
    assert reader.next_request() is None
    reader.feed(EAPPEND[10:])
    assert reader.next_request() == EAPPEND_ARGS
    assert reader.next_request() is None


def test_pipelined_requests_come_out_in_order():
    requests = [[b"PING"], EAPPEND_ARGS, [b"EGET", b"x"], [b"ESVER", b"s"]]
    data = b"".join(request_bytes(r) for r in requests)
    assert parse(data) == requests
    assert parse_bytewise(data) == requests
    reader = RequestReader()
    reader.feed(data * 3)
    assert reader.drain() == requests * 3
    assert reader.drain() == []


def test_drain_returns_requests_parsed_ahead_and_those_still_in_hiredis():
    reader = RequestReader(max_request_bytes=1000)  # a feed over 15 bytes is handed over in slices
    reader.feed(EAPPEND * 4)
    assert reader.statistics().queued_requests == 4
    reader.feed(EAPPEND[:20])
    reader.feed(EAPPEND[20:])
    assert reader.drain() == [EAPPEND_ARGS] * 5


def test_binary_payloads_keep_crlf_nul_and_high_bytes():
    payload = b"\r\n\x00*3\r\n$4\r\n\xff\xfe\r\n"
    args = [b"EAPPEND", b"s", b"e", b"PAYLOAD", payload]
    assert parse(request_bytes(args)) == [args]
    assert parse_bytewise(request_bytes(args)) == [args]


def test_empty_bulk_strings_are_empty_arguments():
    assert parse(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n") == [[b"ECHO", b""]]


def test_an_empty_array_is_an_empty_request():
    assert parse(b"*0\r\n" + EAPPEND) == [[], EAPPEND_ARGS]


def test_simple_strings_and_integers_inside_a_request_become_bytes():
    assert parse(b"*4\r\n+EACK\r\n$2\r\nid\r\n:42\r\n:-1\r\n") == [[b"EACK", b"id", b"42", b"-1"]]


def test_digit_runs_inside_payloads_are_not_taken_for_headers():
    payload = b"$99999999999 *4294967295\r\n%12345678901 " * 20
    args = [b"EAPPEND", b"s", b"e", payload]
    data = request_bytes(args) + EAPPEND
    assert parse(data) == [args, EAPPEND_ARGS]
    assert parse_bytewise(data) == [args, EAPPEND_ARGS]
    assert parse_bytewise(data, max_request_bytes=4000, max_args=16) == [args, EAPPEND_ARGS]


def test_a_large_payload_within_the_limit_is_accepted():
    payload = bytes(range(256)) * 8192  # 2 MiB: its header has more digits than the fast path takes
    data = request_bytes([b"EAPPEND", b"s", b"e", payload])
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    assert feed_all(RequestReader(), chunks) == [[b"EAPPEND", b"s", b"e", payload]]
    assert parse(data) == [[b"EAPPEND", b"s", b"e", payload]]


def test_a_request_with_max_args_arguments_is_accepted():
    args = [b"x"] * 5
    assert parse(request_bytes(args), max_args=5) == [args]
    assert parse_bytewise(request_bytes(args), max_args=5) == [args]


# -- parsing: inline commands ---------------------------------------------------------------------


def test_inline_commands_are_split_on_whitespace():
    assert parse(b"PING\r\n") == [[b"PING"]]
    assert parse(b"ECHO  hello \t world\r\nPING\n") == [[b"ECHO", b"hello", b"world"], [b"PING"]]


def test_empty_inline_lines_are_skipped():
    assert parse(b"\r\n\n   \r\nPING\r\n") == [[b"PING"]]


def test_an_inline_command_may_arrive_in_pieces():
    assert parse_bytewise(b"EGET 0190a1b2\r\nPING\r\n") == [[b"EGET", b"0190a1b2"], [b"PING"]]


def test_inline_and_array_commands_can_alternate_between_reads():
    chunks = [b"PING\r\n", EAPPEND, b"PING\r\n", b"\r\n", EAPPEND]
    assert feed_all(RequestReader(), chunks) == [[b"PING"], EAPPEND_ARGS, [b"PING"], EAPPEND_ARGS]


def test_an_array_may_follow_inline_commands_in_one_read():
    assert parse(b"PING\r\nECHO x\r\n" + EAPPEND) == [[b"PING"], [b"ECHO", b"x"], EAPPEND_ARGS]


def test_an_inline_command_right_after_an_array_in_the_same_read_is_a_protocol_error():
    # A documented limitation: only a read that starts at a frame boundary can begin inline.
    reader = RequestReader()
    reader.feed(EAPPEND + b"PING\r\n")
    assert reader.next_request() == EAPPEND_ARGS
    with pytest.raises(ProtocolError):
        reader.next_request()


def test_an_inline_line_over_64_kib_is_refused():
    message = protocol_error(b"ECHO " + b"x" * MAX_INLINE_BYTES)
    assert message == "Protocol error: too big inline request"
    assert protocol_error(b"ECHO " + b"x" * MAX_INLINE_BYTES + b"\r\n") == message


# -- parsing: malformed input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"+OK\r\n", b"$4\r\nPING\r\n", b":1\r\n", b"-ERR x\r\n", b"%1\r\n+a\r\n+b\r\n", b"_\r\n"],
)
def test_a_non_array_command_is_a_protocol_error(data: bytes):
    assert protocol_error(data) == "Protocol error: expected array command"
    # Also when it is not the first frame of a read.
    reader = RequestReader()
    reader.feed(EAPPEND + data)
    assert reader.next_request() == EAPPEND_ARGS
    with pytest.raises(ProtocolError, match="expected array command"):
        reader.next_request()


@pytest.mark.parametrize("data", [b"#f\r\n", b"*-1\r\n", b">1\r\n$4\r\nPING\r\n"])
def test_a_boolean_null_or_push_frame_is_not_a_command(data: bytes):
    assert protocol_error(data) == "Protocol error: expected array command"


def test_a_nested_array_is_a_protocol_error():
    message = protocol_error(b"*2\r\n$4\r\nECHO\r\n*1\r\n$1\r\nx\r\n")
    assert message == "Protocol error: expected bulk string, got array"
    assert "got map" in protocol_error(b"*1\r\n%1\r\n+a\r\n+b\r\n")
    assert "got null" in protocol_error(b"*1\r\n$-1\r\n")
    assert "got double" in protocol_error(b"*1\r\n,1.5\r\n")
    assert "got boolean" in protocol_error(b"*1\r\n#t\r\n")
    assert "got error" in protocol_error(b"*1\r\n-ERR\r\n")


def test_deep_nesting_is_refused_without_recursion():
    assert protocol_error(b"*1\r\n" * 200_000 + b"$1\r\nx\r\n").startswith("Protocol error:")
    # A deep partial frame just waits; its size is bounded like any other partial request.
    reader = RequestReader()
    reader.feed(b"*1\r\n" * 1000)
    assert reader.next_request() is None


def test_an_unhashable_map_key_is_a_protocol_error():
    assert protocol_error(b"*1\r\n%1\r\n*0\r\n+a\r\n") == "Protocol error: invalid map key"


@pytest.mark.parametrize(
    "data",
    [
        b"*1\r\n$x\r\n",
        b"*x\r\n",
        b"*1\r\n$-5\r\n",
        b"*01\r\n$1\r\na\r\n",
        b"*1\r\n!3\r\nabc\r\n",
        b"*1\r\n:abc\r\n",
        b"*1\r\nPING\r\n",
        b"*1\r\n\x00\r\n",
    ],
)
def test_garbage_bytes_are_a_protocol_error(data: bytes):
    assert protocol_error(data).startswith("Protocol error: ")
    with pytest.raises(ProtocolError):
        parse_bytewise(data)


def test_a_huge_declared_bulk_length_is_refused_before_its_data():
    assert protocol_error(b"*2\r\n$4\r\nECHO\r\n$999999999999\r\n") == (
        "Protocol error: request too large"
    )
    reader = RequestReader()
    for byte in b"*2\r\n$4\r\nECHO\r\n$67108865":
        reader.feed(bytes([byte]))
        try:
            reader.next_request()
        except ProtocolError as exc:
            assert exc.message == "Protocol error: request too large"
            break
    else:
        pytest.fail("the declared length was not refused as soon as its digits arrived")


def test_a_declared_bulk_length_at_the_limit_waits_for_its_data():
    reader = RequestReader(max_request_bytes=1000)
    reader.feed(b"*2\r\n$4\r\nECHO\r\n$1000\r\n")
    assert reader.next_request() is None
    assert protocol_error(b"*2\r\n$4\r\nECHO\r\n$1001\r\n", max_request_bytes=1000) == (
        "Protocol error: request too large"
    )


def test_a_request_growing_past_the_limit_is_refused_before_it_is_complete():
    args = [b"EAPPEND", b"s", b"e", b"x" * 600, b"y" * 600]
    data = request_bytes(args)
    reader = RequestReader(max_request_bytes=1000)
    with pytest.raises(ProtocolError, match="^Protocol error: request too large$"):
        for i in range(0, len(data), 50):
            reader.feed(data[i : i + 50])
            assert reader.next_request() is None
    assert reader.statistics().failed
    # Fed in one piece it is refused too (the reader slices big feeds).
    assert protocol_error(data, max_request_bytes=1000) == "Protocol error: request too large"


def test_requests_below_the_limit_are_accepted_in_any_number():
    args = [b"EAPPEND", b"s", b"e", b"x" * 400]
    data = request_bytes(args) * 20
    assert parse(data, max_request_bytes=1000) == [args] * 20
    assert parse_bytewise(data, max_request_bytes=1000) == [args] * 20


def test_too_many_arguments_are_refused_from_the_header():
    assert protocol_error(b"*%d\r\n" % (DEFAULT_MAX_ARGS + 1)) == (
        "Protocol error: invalid multibulk length"
    )
    assert parse(b"*%d\r\n$1\r\nx\r\n" % DEFAULT_MAX_ARGS) == []  # waits for the rest
    assert protocol_error(request_bytes([b"x"] * 6), max_args=5) == (
        "Protocol error: invalid multibulk length"
    )
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parse_bytewise(request_bytes([b"x"] * 6), max_args=5)


def test_a_huge_aggregate_count_is_refused_without_allocating():
    assert protocol_error(b"*4294967295\r\n") == "Protocol error: invalid multibulk length"
    assert protocol_error(b"*1\r\n*4294967295\r\n").startswith("Protocol error: ")
    assert protocol_error(b"*1\r\n~999999999\r\n").startswith("Protocol error: ")


def test_requests_before_a_malformed_frame_are_returned_first():
    reader = RequestReader()
    reader.feed(EAPPEND * 2 + b"*1\r\n$x\r\n")
    assert reader.drain() == [EAPPEND_ARGS] * 2
    with pytest.raises(ProtocolError):
        reader.drain()


def test_a_protocol_error_is_sticky_and_later_bytes_are_ignored():
    reader = RequestReader()
    reader.feed(b"+OK\r\n")
    with pytest.raises(ProtocolError) as first:
        reader.next_request()
    reader.feed(EAPPEND)
    with pytest.raises(ProtocolError) as second:
        reader.next_request()
    assert first.value.message == second.value.message
    assert isinstance(second.value, RespError)


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        RequestReader(max_request_bytes=0)
    with pytest.raises(ValueError):
        RequestReader(max_args=0)
    with pytest.raises(ValueError):
        RequestReader(feed_slice_bytes=0)


# -- parsing: properties --------------------------------------------------------------------------

_RESP_ALPHABET = b"*$+-:_,#!=(%~>|0123456789\r\n\r\n\r\nPINGabc \x00\xff"

_resp_like_bytes = st.one_of(
    st.binary(max_size=60),
    st.lists(st.sampled_from(list(_RESP_ALPHABET)), max_size=60).map(bytes),
    st.lists(
        st.one_of(
            st.sampled_from(
                [b"*", b"$", b"\r\n", b"*2\r\n", b"$3\r\nabc\r\n", b"%1\r\n", b"*1\r\n", b":7\r\n"]
            ),
            st.from_regex(rb"\A[*$%~>=]-?[0-9]{1,13}\r\n\Z"),
            st.binary(max_size=4),
        ),
        max_size=15,
    ).map(b"".join),
)

_limits = st.sampled_from(
    [{}, {"max_request_bytes": 64, "max_args": 3}, {"max_request_bytes": 10_000, "max_args": 100}]
)


@given(data=_resp_like_bytes, cuts=st.lists(st.integers(0, 200), max_size=6), limits=_limits)
@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_parse_need_more_data_or_raise_protocol_error(
    data: bytes, cuts: list[int], limits: dict[str, int]
):
    reader = RequestReader(**limits)
    try:
        for chunk in split_at(data, cuts):
            reader.feed(chunk)
            while (request := reader.next_request()) is not None:
                assert type(request) is list
                assert all(type(arg) is bytes for arg in request)
                assert len(request) <= limits.get("max_args", DEFAULT_MAX_ARGS)
    except ProtocolError as exc:
        assert exc.message.startswith("Protocol error: ")
        with pytest.raises(ProtocolError):
            reader.next_request()


_requests = st.lists(st.lists(st.binary(max_size=30), max_size=8), min_size=1, max_size=8)


@given(requests=_requests, cuts=st.lists(st.integers(0, 10_000), max_size=8), limits=_limits)
@settings(deadline=None, max_examples=300)
def test_encoded_requests_parse_back_whatever_the_read_boundaries(
    requests: list[list[bytes]], cuts: list[int], limits: dict[str, int]
):
    limits = {"max_request_bytes": 1000, "max_args": 8} if limits.get("max_args") == 3 else limits
    data = b"".join(encode(request, 2) for request in requests)
    assert feed_all(RequestReader(**limits), split_at(data, cuts)) == requests
    reader = RequestReader(**limits)
    reader.feed(data)
    assert reader.drain() == requests


@given(requests=_requests, cuts=st.lists(st.integers(0, 10_000), max_size=8))
@settings(deadline=None)
def test_the_reader_agrees_with_plain_hiredis_on_valid_requests(
    requests: list[list[bytes]], cuts: list[int]
):
    data = b"".join(encode(request, 2) for request in requests)
    assert feed_all(RequestReader(), split_at(data, cuts)) == hiredis_parse(data)


def test_an_empty_line_between_frames_in_one_chunk_is_skipped_as_redis_does():
    # redis-cli --pipe writes "\r\n" before its closing ECHO; both often arrive in one read.
    data = b"*1\r\n$4\r\nPING\r\n\r\n*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n\r\n\r\n*1\r\n$4\r\nPING\r\n"
    expected = [[b"PING"], [b"ECHO", b"abc"], [b"PING"]]
    assert parse(data) == expected
    assert parse_bytewise(data) == expected


def test_blank_lines_inside_a_bulk_string_are_payload():
    data = b"*2\r\n$4\r\nECHO\r\n$8\r\n\r\n\r\nab\r\n\r\n*1\r\n$4\r\nPING\r\n"
    assert parse(data) == [[b"ECHO", b"\r\n\r\nab\r\n"], [b"PING"]]
    assert parse_bytewise(data) == [[b"ECHO", b"\r\n\r\nab\r\n"], [b"PING"]]
