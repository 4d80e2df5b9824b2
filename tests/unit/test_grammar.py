"""The command grammar: reference §1.1, §2, §4 and the contract's differences (PROTOCOL.md)."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sierradb.node.grammar import (
    COMMAND_NAMES,
    EXPECTED_ANY,
    EXPECTED_EMPTY,
    EXPECTED_EXISTS,
    MAX_BLOCK_MS,
    MAX_TIMESTAMP_MS,
    Auth,
    ClientGetName,
    ClientId,
    ClientSetInfo,
    ClientSetName,
    Command,
    CommandError,
    ConfigGet,
    EAck,
    EAppend,
    Echo,
    EGet,
    EMAppend,
    EMAppendEvent,
    EPRead,
    EPScan,
    EPSeq,
    EPSub,
    EScan,
    ESub,
    ESVer,
    EUnsub,
    Hello,
    Info,
    PartitionSelector,
    Ping,
    Quit,
    Select,
    StreamSubscription,
    format_expected_version,
    parse_command,
    resolve_partition,
)
from sierradb.node.identifiers import (
    format_uuid,
    new_event_id,
    partition_hash,
    partition_key_for_stream,
)

KEY = "7e124fe8-fe28-5398-bb95-53973100148f"  # partition key of "user-123"
KEY_BYTES = uuid.UUID(KEY).bytes
OTHER_KEY = "4a5bf0d6-7d0e-50b2-b05f-ea5a8c8b597f"
SUB_ID = "6f1c2a3b-4d5e-4f60-8172-839405a6b7c8"


def words(*args: bytes | str) -> list[bytes]:
    return [a.encode() if isinstance(a, str) else a for a in args]


def parse(*args: bytes | str) -> object:
    return parse_command(words(*args))


def error(*args: bytes | str) -> str:
    with pytest.raises(CommandError) as info:
        parse_command(words(*args))
    return str(info.value)


def eid_for(stream_id: bytes) -> bytes:
    return new_event_id(partition_hash(partition_key_for_stream(stream_id)))


# -- CommandError and dispatch ---------------------------------------------------------------


def test_command_error_text_is_code_then_message() -> None:
    exc = CommandError("INVALIDARG", "bad thing")
    assert (exc.code, exc.message, str(exc)) == ("INVALIDARG", "bad thing", "INVALIDARG bad thing")


def test_unknown_command_is_named_upper_cased() -> None:
    assert error("frobnicate", "x") == "INVALIDARG unknown command 'FROBNICATE'"


def test_non_utf8_command_name_is_an_invalid_command() -> None:
    assert error(b"\xffPING") == "ERR invalid command"


def test_empty_argument_list_is_an_empty_command() -> None:
    assert error() == "ERR empty command"


@pytest.mark.parametrize("name", ["eappend", "EAppend", "EAPPEND"])
def test_command_names_are_case_insensitive(name: str) -> None:
    assert isinstance(parse(name, "s", "e"), EAppend)


def test_every_command_name_dispatches() -> None:
    assert {b"EAPPEND", b"EMAPPEND", b"EUNSUB", b"CLIENT", b"CONFIG"} <= COMMAND_NAMES
    for name in COMMAND_NAMES:
        try:
            parse_command([name])
        except CommandError as exc:
            assert "unknown command" not in str(exc)


# -- EAPPEND -----------------------------------------------------------------------------------


def test_eappend_minimal_leaves_server_defaults_unset() -> None:
    assert parse("EAPPEND", "user-123", "UserCreated") == EAppend(
        stream_id=b"user-123",
        event_name=b"UserCreated",
        event_id=None,
        partition_key=KEY_BYTES,
        expected_version=EXPECTED_ANY,
        timestamp_ms=None,
        payload=b"",
        metadata=b"",
    )


def test_eappend_announcement_one_liner_takes_positional_payload() -> None:
    request = parse("EAPPEND", "user-123", "UserCreated", '{"name": "Alice"}')
    assert isinstance(request, EAppend)
    assert request.payload == b'{"name": "Alice"}'
    assert request.stream_id == b"user-123"


def test_eappend_positional_payload_may_be_followed_by_options() -> None:
    request = parse("EAPPEND", "s", "e", "data", "EXPECTED_VERSION", "empty", "METADATA", "m")
    assert isinstance(request, EAppend)
    assert (request.payload, request.expected_version, request.metadata) == (
        b"data",
        EXPECTED_EMPTY,
        b"m",
    )


def test_eappend_positional_payload_and_payload_option_conflict() -> None:
    assert error("EAPPEND", "s", "e", "a", "PAYLOAD", "b") == "INVALIDARG payload already specified"


def test_eappend_positional_payload_only_in_third_place() -> None:
    assert (
        error("EAPPEND", "s", "e", "EXPECTED_VERSION", "0", "data")
        == "INVALIDARG unexpected argument 'data'"
    )


def test_eappend_third_argument_that_is_a_keyword_is_the_keyword() -> None:
    assert error("EAPPEND", "s", "e", "payload") == (
        "INVALIDARG unexpected end of input: expected payload"
    )


def test_eappend_all_options() -> None:
    eid = eid_for(b"s")
    request = parse(
        "EAPPEND",
        "s",
        "e",
        "EVENT_ID",
        format_uuid(eid),
        "PARTITION_KEY",
        OTHER_KEY,
        "EXPECTED_VERSION",
        "41",
        "TIMESTAMP",
        "1700000000000",
        "PAYLOAD",
        "p",
        "METADATA",
        "m",
    )
    assert request == EAppend(
        b"s", b"e", eid, uuid.UUID(OTHER_KEY).bytes, 41, 1700000000000, b"p", b"m"
    )


def test_eappend_options_in_any_order_and_any_case() -> None:
    request = parse("EAPPEND", "s", "e", "metadata", "m", "Payload", "p", "expected_VERSION", "3")
    assert isinstance(request, EAppend)
    assert (request.payload, request.metadata, request.expected_version) == (b"p", b"m", 3)


def test_eappend_keeps_binary_payload_and_metadata_unchanged() -> None:
    blob = bytes(range(256)) + b"\r\n\x00"
    request = parse("EAPPEND", "s", "e", "PAYLOAD", blob, "METADATA", blob[::-1])
    assert isinstance(request, EAppend)
    assert (request.payload, request.metadata) == (blob, blob[::-1])


def test_eappend_binary_positional_payload() -> None:
    request = parse("EAPPEND", "s", "e", b"\xff\x00\r\n")
    assert isinstance(request, EAppend)
    assert request.payload == b"\xff\x00\r\n"


def test_eappend_explicit_empty_payload_is_a_payload() -> None:
    assert error("EAPPEND", "s", "e", "PAYLOAD", "", "PAYLOAD", "x") == (
        "INVALIDARG payload already specified"
    )


@pytest.mark.parametrize(
    ("keyword", "value", "what"),
    [
        ("EVENT_ID", format_uuid(eid_for(b"s")), "event id"),
        ("PARTITION_KEY", KEY, "partition key"),
        ("EXPECTED_VERSION", "any", "expected version"),
        ("TIMESTAMP", "1", "timestamp"),
        ("PAYLOAD", "", "payload"),
        ("METADATA", "", "metadata"),
    ],
)
def test_eappend_rejects_every_duplicate_option(keyword: str, value: str, what: str) -> None:
    assert error("EAPPEND", "s", "e", keyword, value, keyword.lower(), value) == (
        f"INVALIDARG {what} already specified"
    )


@pytest.mark.parametrize(
    ("keyword", "what"),
    [
        ("EVENT_ID", "event id"),
        ("PARTITION_KEY", "partition key"),
        ("EXPECTED_VERSION", "expected version"),
        ("TIMESTAMP", "timestamp"),
        ("PAYLOAD", "payload"),
        ("METADATA", "metadata"),
    ],
)
def test_eappend_option_without_value(keyword: str, what: str) -> None:
    assert error("EAPPEND", "s", "e", "PAYLOAD", "x", keyword) == (
        f"INVALIDARG unexpected end of input: expected {what}"
    )


def test_eappend_without_stream_id() -> None:
    assert error("EAPPEND") == "INVALIDARG unexpected end of input: expected stream id"


def test_eappend_without_event_name() -> None:
    assert error("EAPPEND", "s") == "INVALIDARG unexpected end of input: expected event name"


def test_eappend_rejects_trailing_argument() -> None:
    assert error("EAPPEND", "s", "e", "p", "x") == "INVALIDARG unexpected argument 'x'"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("any", EXPECTED_ANY),
        ("ANY", EXPECTED_ANY),
        ("exists", EXPECTED_EXISTS),
        ("Exists", EXPECTED_EXISTS),
        ("empty", EXPECTED_EMPTY),
        ("EMPTY", EXPECTED_EMPTY),
        ("0", 0),
        ("42", 42),
        ("+7", 7),
        ("18446744073709551615", 2**64 - 1),
    ],
)
def test_eappend_expected_version_forms(text: str, value: int) -> None:
    request = parse("EAPPEND", "s", "e", "EXPECTED_VERSION", text)
    assert isinstance(request, EAppend)
    assert request.expected_version == value


@pytest.mark.parametrize("text", ["-1", "latest", "", " 1", "1.0", "18446744073709551616"])
def test_eappend_rejects_bad_expected_version(text: str) -> None:
    assert error("EAPPEND", "s", "e", "EXPECTED_VERSION", text).startswith(
        "INVALIDARG invalid expected version"
    )


def test_eappend_rejects_bad_event_id() -> None:
    assert error("EAPPEND", "s", "e", "EVENT_ID", "nope") == (
        "INVALIDARG invalid event id 'nope': expected a UUID"
    )


def test_eappend_accepts_event_id_in_every_uuid_form() -> None:
    eid = eid_for(b"s")
    for text in (eid.hex(), "{" + format_uuid(eid) + "}", "urn:uuid:" + format_uuid(eid)):
        request = parse("EAPPEND", "s", "e", "EVENT_ID", text.upper() if "{" in text else text)
        assert isinstance(request, EAppend)
        assert request.event_id == eid


def test_eappend_rejects_bad_partition_key() -> None:
    assert error("EAPPEND", "s", "e", "PARTITION_KEY", "7").startswith(
        "INVALIDARG invalid partition key '7'"
    )


def test_timestamp_up_to_u64_nanoseconds_is_accepted() -> None:
    request = parse("EAPPEND", "s", "e", "TIMESTAMP", str(MAX_TIMESTAMP_MS))
    assert isinstance(request, EAppend)
    assert request.timestamp_ms == MAX_TIMESTAMP_MS == 18446744073709


def test_timestamp_overflowing_nanoseconds_is_refused() -> None:
    assert error("EAPPEND", "s", "e", "TIMESTAMP", str(MAX_TIMESTAMP_MS + 1)) == (
        "INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds"
    )


def test_timestamp_in_nanoseconds_is_refused() -> None:
    assert error("EAPPEND", "s", "e", "TIMESTAMP", str(time.time_ns())) == (
        "INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "cannot parse integer from empty string"),
        ("-5", "invalid digit found in string"),
        ("+", "invalid digit found in string"),
        (" 5", "invalid digit found in string"),
        ("5 ", "invalid digit found in string"),
        ("1_000", "invalid digit found in string"),
        ("0x10", "invalid digit found in string"),
        ("\u0665", "invalid digit found in string"),  # a non-ASCII digit
        ("18446744073709551616", "number too large to fit in target type"),
        ("9" * 5000, "number too large to fit in target type"),
    ],
)
def test_unsigned_numbers_follow_rust_parse(text: str, reason: str) -> None:
    message = error("EAPPEND", "s", "e", "TIMESTAMP", text)
    assert message.startswith("INVALIDARG invalid timestamp '")
    assert message.endswith(f": {reason}")


@pytest.mark.parametrize(("text", "value"), [("+12", 12), ("007", 7), ("0" * 30 + "9", 9)])
def test_unsigned_numbers_accept_plus_and_leading_zeros(text: str, value: int) -> None:
    request = parse("EAPPEND", "s", "e", "TIMESTAMP", text)
    assert isinstance(request, EAppend)
    assert request.timestamp_ms == value


# -- Stream ids and event names (§2.1, §7) ----------------------------------------------------


def test_stream_id_of_64_bytes_is_accepted() -> None:
    assert isinstance(parse("EAPPEND", "x" * 64, "e"), EAppend)


def test_empty_stream_id_is_refused() -> None:
    assert error("EAPPEND", "", "e") == (
        "INVALIDARG stream id must be between 1 and 64 characters in length, but got 0 for ''"
    )


def test_stream_id_over_64_bytes_is_refused() -> None:
    assert error("EAPPEND", "x" * 65, "e") == (
        "INVALIDARG stream id must be between 1 and 64 characters in length, "
        f"but got 65 for '{'x' * 64}...'"
    )


def test_stream_id_length_counts_bytes_not_characters() -> None:
    assert isinstance(parse("EAPPEND", "é" * 32, "e"), EAppend)
    assert "but got 66" in error("EAPPEND", "é" * 33, "e")


def test_stream_id_with_nul_is_refused() -> None:
    assert error("EAPPEND", "a\x00b", "e") == "INVALIDARG stream id cannot contain null bytes"


def test_stream_id_must_be_utf8() -> None:
    assert error("EAPPEND", b"a\xffb", "e") == "INVALIDARG stream id must be valid UTF-8"


def test_stream_id_may_hold_spaces_and_punctuation() -> None:
    request = parse("EAPPEND", "a b=c,d", "e")
    assert isinstance(request, EAppend)
    assert request.stream_id == b"a b=c,d"


def test_error_texts_quote_arguments_on_one_line() -> None:
    text = error("EAPPEND", "a\r\nb" * 20, "e")
    assert "\r" not in text and "\n" not in text
    assert "a\\x0d\\x0ab" in text


def test_event_name_of_255_bytes_is_accepted() -> None:
    assert isinstance(parse("EAPPEND", "s", "n" * 255), EAppend)


def test_event_name_over_255_bytes_is_refused_while_parsing() -> None:
    assert error("EAPPEND", "s", "n" * 256) == (
        "INVALIDARG event name must be at most 255 bytes, got 256"
    )


def test_empty_event_name_is_accepted() -> None:
    request = parse("EAPPEND", "s", "")
    assert isinstance(request, EAppend)
    assert request.event_name == b""


def test_event_name_must_be_utf8() -> None:
    assert error("EAPPEND", "s", b"\xc3") == "INVALIDARG event name must be valid UTF-8"


# -- EMAPPEND ----------------------------------------------------------------------------------


def test_emappend_events_in_request_order_with_their_options() -> None:
    request = parse(
        "EMAPPEND",
        KEY,
        "s",
        "A",
        "EXPECTED_VERSION",
        "empty",
        "PAYLOAD",
        "1",
        "t",
        "B",
        "s",
        "C",
        "expected_version",
        "0",
        "TIMESTAMP",
        "5",
        "METADATA",
        "m",
    )
    assert request == EMAppend(
        KEY_BYTES,
        (
            EMAppendEvent(b"s", b"A", None, EXPECTED_EMPTY, None, b"1", b""),
            EMAppendEvent(b"t", b"B", None, EXPECTED_ANY, None, b"", b""),
            EMAppendEvent(b"s", b"C", None, 0, 5, b"", b"m"),
        ),
    )


def test_emappend_event_id_per_event() -> None:
    eid = eid_for(b"s")
    request = parse("EMAPPEND", KEY, "s", "A", "EVENT_ID", format_uuid(eid))
    assert isinstance(request, EMAppend)
    assert request.events[0].event_id == eid


def test_emappend_needs_a_uuid_partition_key() -> None:
    assert error("EMAPPEND", "user-123", "s", "A") == (
        "INVALIDARG invalid partition key 'user-123': expected a UUID"
    )


def test_emappend_needs_at_least_one_event() -> None:
    assert error("EMAPPEND", KEY) == "INVALIDARG unexpected end of input: expected stream id"


def test_emappend_event_needs_a_name() -> None:
    assert error("EMAPPEND", KEY, "s", "A", "t") == (
        "INVALIDARG unexpected end of input: expected event name"
    )


def test_emappend_refuses_partition_key_per_event() -> None:
    assert error("EMAPPEND", KEY, "s", "A", "PARTITION_KEY", KEY).startswith(
        "INVALIDARG partition key cannot be set per event"
    )


def test_emappend_refuses_duplicate_option_within_one_event() -> None:
    assert error("EMAPPEND", KEY, "s", "A", "PAYLOAD", "1", "PAYLOAD", "2") == (
        "INVALIDARG payload already specified"
    )


def test_emappend_validates_each_stream_id() -> None:
    assert "stream id must be between 1 and 64" in error("EMAPPEND", KEY, "s", "A", "x" * 65, "B")


def test_emappend_has_no_positional_payload() -> None:
    # A token that is not an option starts the next event.
    request = parse("EMAPPEND", KEY, "s", "A", "t", "B")
    assert isinstance(request, EMAppend)
    assert [e.stream_id for e in request.events] == [b"s", b"t"]


# -- EGET, ESCAN, ESVER, EPSCAN, EPSEQ ---------------------------------------------------------


def test_eget() -> None:
    eid = eid_for(b"s")
    assert parse("EGET", format_uuid(eid)) == EGet(eid)


def test_eget_without_event_id() -> None:
    assert error("EGET") == "INVALIDARG unexpected end of input: expected event id"


def test_eget_rejects_non_uuid() -> None:
    assert error("EGET", "42") == "INVALIDARG invalid event id '42': expected a UUID"


def test_eget_rejects_trailing_argument() -> None:
    assert error("EGET", KEY, "x") == "INVALIDARG unexpected argument 'x'"


def test_escan_full_range_with_defaults() -> None:
    assert parse("ESCAN", "user-123", "-", "+") == EScan(b"user-123", KEY_BYTES, 0, None, None)


def test_escan_numeric_bounds_and_options_in_any_order() -> None:
    request = parse("ESCAN", "s", "3", "9", "count", "5", "partition_key", KEY)
    assert request == EScan(b"s", KEY_BYTES, 3, 9, 5)


def test_escan_count_is_returned_as_given() -> None:
    request = parse("ESCAN", "s", "-", "+", "COUNT", "1000000000")
    assert isinstance(request, EScan)
    assert request.count == 1_000_000_000
    zero = parse("ESCAN", "s", "-", "+", "COUNT", "0")
    assert isinstance(zero, EScan)
    assert zero.count == 0


def test_escan_start_cannot_be_plus() -> None:
    assert error("ESCAN", "s", "+", "+") == "INVALIDARG start version cannot be '+'"


def test_escan_end_cannot_be_minus() -> None:
    assert error("ESCAN", "s", "-", "-") == "INVALIDARG end version cannot be '-'"


@pytest.mark.parametrize(
    ("args", "what"),
    [((), "stream id"), (("s",), "start version"), (("s", "-"), "end version")],
)
def test_escan_missing_arguments(args: tuple[str, ...], what: str) -> None:
    assert error("ESCAN", *args) == f"INVALIDARG unexpected end of input: expected {what}"


def test_escan_duplicate_count() -> None:
    assert error("ESCAN", "s", "-", "+", "COUNT", "1", "COUNT", "2") == (
        "INVALIDARG count already specified"
    )


def test_escan_duplicate_partition_key() -> None:
    assert error("ESCAN", "s", "-", "+", "PARTITION_KEY", KEY, "PARTITION_KEY", KEY) == (
        "INVALIDARG partition key already specified"
    )


def test_escan_count_without_value() -> None:
    assert error("ESCAN", "s", "-", "+", "COUNT") == (
        "INVALIDARG unexpected end of input: expected count"
    )


def test_escan_rejects_unknown_option() -> None:
    assert error("ESCAN", "s", "-", "+", "REVERSE") == "INVALIDARG unexpected argument 'REVERSE'"


def test_esver() -> None:
    assert parse("ESVER", "user-123") == ESVer(b"user-123", KEY_BYTES)
    assert parse("ESVER", "s", "PARTITION_KEY", KEY) == ESVer(b"s", KEY_BYTES)


def test_esver_rejects_trailing_argument() -> None:
    assert error("ESVER", "s", "x") == "INVALIDARG unexpected argument 'x'"


def test_epscan_by_partition_id() -> None:
    assert parse("EPSCAN", "7", "-", "+", "COUNT", "10") == EPScan(7, 0, None, 10)


def test_epscan_by_partition_key() -> None:
    assert parse("EPSCAN", KEY, "2", "5") == EPScan(KEY_BYTES, 2, 5, None)


def test_epscan_start_cannot_be_plus() -> None:
    assert error("EPSCAN", "0", "+", "+") == "INVALIDARG start sequence cannot be '+'"


def test_epscan_end_cannot_be_minus() -> None:
    assert error("EPSCAN", "0", "-", "-") == "INVALIDARG end sequence cannot be '-'"


def test_epscan_partition_id_is_u16() -> None:
    assert parse("EPSCAN", "65535", "-", "+") == EPScan(65535, 0, None, None)
    assert error("EPSCAN", "65536", "-", "+").startswith("INVALIDARG invalid partition '65536'")


def test_epscan_refuses_partition_key_option() -> None:
    assert error("EPSCAN", "0", "-", "+", "PARTITION_KEY", KEY) == (
        "INVALIDARG unexpected argument 'PARTITION_KEY'"
    )


def test_epseq() -> None:
    assert parse("EPSEQ", "3") == EPSeq(3)
    assert parse("EPSEQ", KEY) == EPSeq(KEY_BYTES)


def test_epseq_missing_partition() -> None:
    assert error("EPSEQ") == "INVALIDARG unexpected end of input: expected partition"


def test_resolve_partition_uses_ids_as_is_and_hashes_keys() -> None:
    assert resolve_partition(40, 32) == 40
    assert resolve_partition(KEY_BYTES, 32) == 21


# -- ESUB --------------------------------------------------------------------------------------


def test_esub_single_stream_is_live_only() -> None:
    assert parse("ESUB", "user-123") == ESub(
        (StreamSubscription(b"user-123", KEY_BYTES, None),), None
    )


def test_esub_from_version_then_window() -> None:
    assert parse("ESUB", "s", "FROM", "0", "WINDOW", "10") == ESub(
        (StreamSubscription(b"s", partition_key_for_stream(b"s"), 0),), 10
    )


def test_esub_keywords_are_case_insensitive() -> None:
    assert parse("ESUB", "s", "from", "3", "window", "10") == parse(
        "ESUB", "s", "FROM", "3", "WINDOW", "10"
    )


def test_esub_from_latest_is_live_only() -> None:
    request = parse("ESUB", "s", "FROM", "latest")
    assert isinstance(request, ESub)
    assert request.streams[0].start_version is None


def test_esub_window_may_come_first() -> None:
    request = parse("ESUB", "s", "WINDOW", "5", "FROM", "2")
    assert isinstance(request, ESub)
    assert (request.streams[0].start_version, request.window) == (2, 5)


def test_esub_several_streams_with_partition_keys_and_from_version() -> None:
    request = parse(
        "ESUB", "a", "PARTITION_KEY", KEY, "b", "c", "partition_key", OTHER_KEY, "FROM", "4"
    )
    assert request == ESub(
        (
            StreamSubscription(b"a", KEY_BYTES, 4),
            StreamSubscription(b"b", partition_key_for_stream(b"b"), 4),
            StreamSubscription(b"c", uuid.UUID(OTHER_KEY).bytes, 4),
        ),
        None,
    )


def test_esub_from_map_sets_start_per_stream() -> None:
    request = parse("ESUB", "a", "b", "c=d", "FROM", "MAP", "a=3", "c=d=7", "zzz=1", "WINDOW", "2")
    assert isinstance(request, ESub)
    assert [(s.stream_id, s.start_version) for s in request.streams] == [
        (b"a", 3),
        (b"b", None),
        (b"c=d", 7),
    ]
    assert request.window == 2


def test_esub_duplicate_stream_and_key_pairs_collapse() -> None:
    request = parse("ESUB", "a", "b", "a", "a", "PARTITION_KEY", KEY)
    assert isinstance(request, ESub)
    assert [(s.stream_id, s.partition_key) for s in request.streams] == [
        (b"a", partition_key_for_stream(b"a")),
        (b"b", partition_key_for_stream(b"b")),
        (b"a", KEY_BYTES),
    ]


def test_esub_window_zero_is_refused() -> None:
    assert error("ESUB", "s", "WINDOW", "0") == (
        "INVALIDARG invalid window '0': number 0 must not be less than 1"
    )


def test_esub_needs_a_stream() -> None:
    assert error("ESUB") == "INVALIDARG unexpected end of input: expected stream id"
    assert error("ESUB", "FROM", "0") == "INVALIDARG expected stream id before FROM"


def test_esub_from_without_position() -> None:
    assert error("ESUB", "s", "FROM") == (
        "INVALIDARG unexpected end of input: expected LATEST, MAP or a start version"
    )


def test_esub_from_map_needs_entries() -> None:
    assert error("ESUB", "s", "FROM", "MAP", "WINDOW", "3") == (
        "INVALIDARG unexpected end of input: expected <stream_id>=<version> after FROM MAP"
    )


def test_esub_from_map_entry_needs_equals() -> None:
    assert error("ESUB", "s", "FROM", "MAP", "s").startswith(
        "INVALIDARG invalid FROM MAP entry 's'"
    )


def test_esub_from_map_refuses_two_entries_for_one_stream() -> None:
    assert error("ESUB", "s", "FROM", "MAP", "s=1", "s=2") == (
        "INVALIDARG FROM MAP has two entries for 's'"
    )


def test_esub_refuses_duplicate_from_and_window() -> None:
    assert error("ESUB", "s", "FROM", "1", "FROM", "2") == "INVALIDARG from already specified"
    assert error("ESUB", "s", "WINDOW", "1", "WINDOW", "2") == (
        "INVALIDARG window already specified"
    )


def test_esub_rejects_trailing_argument() -> None:
    assert error("ESUB", "s", "FROM", "1", "x") == "INVALIDARG unexpected argument 'x'"


def test_esub_partition_key_without_value() -> None:
    assert error("ESUB", "s", "PARTITION_KEY") == (
        "INVALIDARG unexpected end of input: expected partition key"
    )


# -- EPSUB -------------------------------------------------------------------------------------


def epsub(*args: str) -> EPSub:
    request = parse("EPSUB", *args)
    assert isinstance(request, EPSub)
    return request


def selector(text: str) -> PartitionSelector:
    return epsub(text).selector


def test_epsub_star_selects_every_partition() -> None:
    assert selector("*") == PartitionSelector(True, (), ())
    assert selector("*").resolve(4) == (0, 1, 2, 3)


def test_epsub_single_partition_id() -> None:
    assert selector("5") == PartitionSelector(False, (5,), ())


def test_epsub_comma_list_with_spaces() -> None:
    assert selector("3, 1 ,2") == PartitionSelector(False, (1, 2, 3), ())


def test_epsub_inclusive_range() -> None:
    assert selector("2-5").partition_ids == (2, 3, 4, 5)


def test_epsub_list_mixing_ranges_and_ids() -> None:
    assert selector("0-3,7").partition_ids == (0, 1, 2, 3, 7)


def test_epsub_overlapping_ranges_merge() -> None:
    assert selector("5-8,0-6,8,2").partition_ids == tuple(range(9))


def test_epsub_partition_key_selector() -> None:
    result = selector(KEY)
    assert result == PartitionSelector(False, (), (KEY_BYTES,))
    assert result.resolve(32) == (21,)


def test_epsub_list_mixing_keys_and_ids() -> None:
    assert selector(f"1,{KEY},21").resolve(32) == (1, 21)


def test_epsub_repeated_wide_ranges_stay_cheap() -> None:
    started = time.perf_counter()
    assert len(selector(",".join(["0-65535"] * 2000)).partition_ids) == 65536
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("text", ["5-3", "65536", "0-65536", "a", "1,,2", "-", "1-", "*,1"])
def test_epsub_rejects_bad_selectors(text: str) -> None:
    assert error("EPSUB", text).startswith("INVALIDARG invalid partition selector")


def test_epsub_from_map_with_default_and_window() -> None:
    request = epsub("0-3,7", "FROM", "MAP", "1=5", "DEFAULT", "0", "WINDOW", "5")
    assert request.selector.partition_ids == (0, 1, 2, 3, 7)
    assert request.start_sequence_for(1) == 5
    assert request.start_sequence_for(0) == 0
    assert request.start_sequence_for(7) == 0
    assert request.window == 5


def test_epsub_from_map_without_default_leaves_others_live() -> None:
    request = epsub("*", "FROM", "MAP", "1=5", "2=6")
    assert [request.start_sequence_for(p) for p in range(4)] == [None, 5, 6, None]
    assert dict(request.start_map) == {1: 5, 2: 6}


def test_epsub_from_sequence_applies_to_every_partition() -> None:
    request = epsub("1,2", "from", "9")
    assert (request.start_sequence_for(1), request.start_sequence_for(2)) == (9, 9)


def test_epsub_live_only_by_default_and_with_latest() -> None:
    for request in (epsub("1"), epsub("1", "FROM", "LATEST")):
        assert request.start_sequence_for(1) is None
        assert request.window is None


def test_epsub_default_needs_map() -> None:
    assert error("EPSUB", "1", "FROM", "2", "DEFAULT", "0") == (
        "INVALIDARG unexpected argument 'DEFAULT'"
    )


def test_epsub_map_entry_partition_is_u16() -> None:
    assert error("EPSUB", "1", "FROM", "MAP", "70000=1").startswith(
        "INVALIDARG invalid partition '70000'"
    )


def test_epsub_map_refuses_two_entries_for_one_partition() -> None:
    assert error("EPSUB", "1", "FROM", "MAP", "1=1", "1=2") == (
        "INVALIDARG FROM MAP has two entries for partition 1"
    )


def test_epsub_window_zero_is_refused() -> None:
    assert error("EPSUB", "*", "WINDOW", "0").startswith("INVALIDARG invalid window '0'")


def test_epsub_needs_a_selector() -> None:
    assert error("EPSUB") == "INVALIDARG unexpected end of input: expected partition selector"


# -- EACK, EUNSUB ------------------------------------------------------------------------------


def test_eack() -> None:
    assert parse("EACK", SUB_ID, "41") == EAck(uuid.UUID(SUB_ID).bytes, 41)


def test_eack_missing_cursor() -> None:
    assert error("EACK", SUB_ID) == "INVALIDARG unexpected end of input: expected cursor"


def test_eack_rejects_bad_cursor_and_trailing_argument() -> None:
    assert error("EACK", SUB_ID, "-1").startswith("INVALIDARG invalid cursor '-1'")
    assert error("EACK", SUB_ID, "1", "2") == "INVALIDARG unexpected argument '2'"


def test_eunsub() -> None:
    assert parse("EUNSUB", SUB_ID) == EUnsub(uuid.UUID(SUB_ID).bytes)


def test_eunsub_rejects_non_uuid() -> None:
    assert error("EUNSUB", "x") == "INVALIDARG invalid subscription id 'x': expected a UUID"


# -- Connection and Redis courtesy commands ----------------------------------------------------


def test_hello_without_version() -> None:
    assert parse("HELLO") == Hello(None, None, None, None)


@pytest.mark.parametrize("version", [2, 3])
def test_hello_with_supported_version(version: int) -> None:
    assert parse("HELLO", str(version)) == Hello(version, None, None, None)


def test_hello_with_auth_and_setname() -> None:
    assert parse("HELLO", "3", "auth", "default", "pw", "SETNAME", "app-1") == Hello(
        3, b"default", b"pw", b"app-1"
    )


def test_hello_non_integer_version() -> None:
    assert error("HELLO", "abc") == (
        "INVALIDARG Protocol version is not an integer or out of range"
    )


@pytest.mark.parametrize("version", ["1", "4", "-3", "99999999999"])
def test_hello_unsupported_version(version: str) -> None:
    assert error("HELLO", version) == "NOPROTO unsupported protocol version"


def test_hello_auth_needs_user_and_password() -> None:
    assert error("HELLO", "3", "AUTH", "pw") == "INVALIDARG Syntax error in HELLO option 'AUTH'"


def test_hello_setname_refuses_spaces() -> None:
    assert error("HELLO", "3", "SETNAME", "a b") == (
        "INVALIDARG Client names cannot contain spaces, newlines or special characters."
    )


def test_ping() -> None:
    assert parse("PING") == Ping(None)
    assert parse("ping", "hello") == Ping(b"hello")


def test_ping_with_two_arguments() -> None:
    assert error("PING", "a", "b") == "INVALIDARG unexpected argument 'b'"


def test_echo() -> None:
    assert parse("ECHO", b"\x00x") == Echo(b"\x00x")
    assert error("ECHO") == "INVALIDARG wrong number of arguments for 'echo' command"


def test_quit_ignores_arguments() -> None:
    assert parse("QUIT") == Quit()
    assert parse("QUIT", "now") == Quit()


def test_select() -> None:
    assert parse("SELECT", "0") == Select(0)
    assert parse("SELECT", "-1") == Select(-1)
    assert error("SELECT", "x") == "INVALIDARG value is not an integer or out of range"


def test_auth_with_password_or_user_and_password() -> None:
    assert parse("AUTH", "pw") == Auth(None, b"pw")
    assert parse("AUTH", "default", "pw") == Auth(b"default", b"pw")
    assert error("AUTH") == "INVALIDARG wrong number of arguments for 'auth' command"


def test_info_sections_are_lower_cased() -> None:
    assert parse("INFO") == Info(())
    assert parse("INFO", "CACHE") == Info((b"cache",))
    assert parse("info", "Server", "clients") == Info((b"server", b"clients"))


def test_client_subcommands() -> None:
    assert parse("CLIENT", "SETINFO", "lib-name", "redis-py") == ClientSetInfo(
        b"LIB-NAME", b"redis-py"
    )
    assert parse("client", "setname", "worker") == ClientSetName(b"worker")
    assert parse("CLIENT", "SETNAME", "") == ClientSetName(b"")
    assert parse("CLIENT", "GETNAME") == ClientGetName()
    assert parse("CLIENT", "ID") == ClientId()


def test_client_unknown_subcommand() -> None:
    assert error("CLIENT", "MAINT_NOTIFICATIONS", "ON") == (
        "INVALIDARG unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP."
    )


def test_client_setinfo_refuses_unknown_attribute_and_spaces() -> None:
    assert error("CLIENT", "SETINFO", "color", "x") == "INVALIDARG Unrecognized option 'color'"
    assert error("CLIENT", "SETINFO", "LIB-VER", "1 2") == (
        "INVALIDARG LIB-VER cannot contain spaces, newlines or special characters."
    )


def test_config_get() -> None:
    assert parse("CONFIG", "GET", "save", "appendonly") == ConfigGet((b"save", b"appendonly"))
    assert error("CONFIG", "SET", "a", "b") == (
        "INVALIDARG unknown subcommand 'SET'. Try CONFIG HELP."
    )


def test_command_introspection() -> None:
    assert parse("COMMAND") == Command(None, ())
    assert parse("COMMAND", "docs", "get") == Command(b"DOCS", (b"get",))


def test_format_expected_version() -> None:
    assert [
        format_expected_version(v) for v in (EXPECTED_ANY, EXPECTED_EXISTS, EXPECTED_EMPTY, 7)
    ] == [
        "any",
        "exists",
        "empty",
        "7",
    ]


# -- Property: no input escapes as anything but CommandError -----------------------------------

_KEYWORDS = [
    "EVENT_ID", "PARTITION_KEY", "EXPECTED_VERSION", "TIMESTAMP", "PAYLOAD", "METADATA", "COUNT",
    "FROM", "WINDOW", "MAP", "LATEST", "DEFAULT", "AUTH", "SETNAME", "SETINFO", "GET", "ANY",
    "EXISTS", "EMPTY", "LIB-NAME", "ID", "GETNAME", "-", "+", "*",
]  # fmt: skip


def _cased(text: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from([text, text.lower(), text.title()]).map(str.encode)


_token = st.one_of(
    st.sampled_from(_KEYWORDS).flatmap(_cased),
    st.integers(-5, 2**70).map(lambda n: str(n).encode()),
    st.sampled_from([KEY, KEY.replace("-", ""), "{" + KEY + "}", "urn:uuid:" + KEY]).map(
        str.encode
    ),
    st.sampled_from(["0-3,7", "1=5", "s=2", "3-1", "0,1", " 2 ", "a=b=3"]).map(str.encode),
    st.binary(max_size=20),
    st.text(max_size=70).map(str.encode),
)
_name = st.one_of(
    st.sampled_from(sorted(name.decode() for name in COMMAND_NAMES)).flatmap(_cased),
    st.binary(max_size=8),
)


@settings(max_examples=2000, deadline=None)
@given(_name, st.lists(_token, max_size=12))
def test_random_argument_lists_raise_only_command_error(name: bytes, rest: list[bytes]) -> None:
    try:
        parse_command([name, *rest])
    except CommandError as exc:
        text = str(exc)
        assert text.split(" ", 1)[0] in {"INVALIDARG", "ERR", "NOPROTO"}
        assert "\r" not in text and "\n" not in text


# ---------------------------------------------------------------- blocking reads (point 15)
def test_escan_and_epscan_take_block_among_their_options():
    assert parse("ESCAN", "s", "-", "+", "BLOCK", "0").block_ms == 0
    assert parse("ESCAN", "s", "-", "+", "block", "250", "COUNT", "5") == EScan(
        b"s", partition_key_for_stream(b"s"), 0, None, 5, 250
    )
    assert parse("EPSCAN", "7", "3", "+", "COUNT", "10", "BLOCK", "1000") == EPScan(
        7, 3, None, 10, 1000
    )
    assert parse("EPSCAN", "7", "-", "+").block_ms is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("EPSCAN", "1", "-", "+", "BLOCK"), "unexpected end of input: expected block timeout"),
        (("EPSCAN", "1", "-", "+", "BLOCK", "-1"), "invalid block timeout '-1'"),
        (("ESCAN", "s", "-", "+", "BLOCK", "1.5"), "invalid block timeout '1.5'"),
        (("ESCAN", "s", "-", "+", "BLOCK", str(MAX_BLOCK_MS + 1)), "invalid block timeout"),
        (("ESCAN", "s", "-", "+", "BLOCK", "1", "BLOCK", "1"), "block timeout already specified"),
    ],
)
def test_bad_block_timeouts_are_invalidarg_naming_it(args, message):
    text = error(*args)
    assert text.startswith("INVALIDARG ") and message in text, text


def test_epread_grammar():
    assert parse("EPREAD", "FROM", "0", "5") == EPRead(None, None, ((0, 5),))
    assert parse("EPREAD", "BLOCK", "0", "COUNT", "10", "from", "3", "0", "4", "9") == EPRead(
        10, 0, ((3, 0), (4, 9))
    )
    key = uuid.UUID(int=7)
    assert parse("EPREAD", "FROM", str(key), "1").positions == ((key.bytes, 1),)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("EPREAD",), "expected FROM"),
        (("EPREAD", "COUNT", "1"), "expected FROM"),
        (("EPREAD", "FROM"), "expected partition"),
        (("EPREAD", "FROM", "1"), "expected sequence for partition '1'"),
        (("EPREAD", "FROM", "1", "2", "3"), "expected sequence for partition '3'"),
        (("EPREAD", "FROM", "1", "x"), "invalid sequence 'x'"),
        (("EPREAD", "FROM", "70000", "0"), "invalid partition '70000'"),
        (("EPREAD", "FROM", "1", "0", "1", "2"), "partition '1' given more than once"),
        (("EPREAD", "COUNT", "-1", "FROM", "1", "0"), "invalid count '-1'"),
        (("EPREAD", "BLOCK", "x", "FROM", "1", "0"), "invalid block timeout 'x'"),
        (("EPREAD", "STREAMS", "FROM", "1", "0"), "unexpected argument 'STREAMS'"),
        (("EPREAD", "BLOCK", "1", "BLOCK", "1", "FROM", "1", "0"), "already specified"),
    ],
)
def test_bad_epread_arguments_are_invalidarg_naming_them(args, message):
    text = error(*args)
    assert text.startswith("INVALIDARG ") and message in text, text
