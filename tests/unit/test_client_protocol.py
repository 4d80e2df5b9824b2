"""The client's sans-I/O parts: identifiers, error mapping, retry decisions, reply parsing and
the subscription state machine."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from sierradb.client import errors, identifiers, protocol
from sierradb.client.errors import (
    ConnectionFailed,
    SubscriptionGap,
    TryAgain,
    WrongExpectedVersion,
    error_from_reply,
)
from sierradb.client.retry import RetryPolicy
from sierradb.client.subscription import SubscriptionState, partition_targets, stream_targets
from sierradb.client.transport import parse_addresses, translate
from sierradb.client.types import ExpectedVersion, NewEvent
from sierradb.node import identifiers as node_ids


# ------------------------------------------------------------------------- identifiers
@given(st.text(min_size=1, max_size=64))
def test_partition_keys_match_the_node(stream_id: str) -> None:
    key = identifiers.partition_key_for_stream(stream_id)
    assert key.bytes == node_ids.partition_key_for_stream(stream_id.encode())


@given(st.uuids(), st.integers(min_value=1, max_value=1024))
def test_partition_ids_match_the_node(key: uuid.UUID, count: int) -> None:
    assert identifiers.partition_id(key, count) == node_ids.partition_id(key.bytes, count)


@given(st.uuids())
def test_event_ids_embed_the_partition_hash_of_their_key(key: uuid.UUID) -> None:
    event_id = identifiers.new_event_id(key)
    assert node_ids.partition_hash(event_id.bytes) == node_ids.partition_hash(key.bytes)


@given(st.uuids())
def test_event_id_texts_are_canonical_uuids_embedding_the_partition_hash(key: uuid.UUID) -> None:
    text = identifiers.new_event_id_text(key)
    event_id = uuid.UUID(text)
    assert str(event_id) == text
    assert event_id.variant == uuid.RFC_4122
    assert node_ids.partition_hash(event_id.bytes) == node_ids.partition_hash(key.bytes)


def test_every_multi_append_event_carries_its_own_client_event_id() -> None:
    key = identifiers.partition_key_for_stream("s")
    args = protocol.multi_append(
        key, [NewEvent("s", "E"), NewEvent("t", "E", expected_version=2)]
    ).args
    ids = [uuid.UUID(str(args[i + 1])) for i, a in enumerate(args) if a == "EVENT_ID"]
    assert len(set(ids)) == 2
    assert args[1] == str(key)
    assert list(args[args.index("t") :]) == [
        "t",
        "E",
        "EVENT_ID",
        str(ids[1]),
        "EXPECTED_VERSION",
        "2",
    ]


def test_reference_examples() -> None:
    key = identifiers.partition_key_for_stream("user-123")
    assert str(key) == "7e124fe8-fe28-5398-bb95-53973100148f"
    assert identifiers.partition_id(key, 32) == 21


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("cls", list(errors.ERRORS_BY_CODE.values()))
def test_every_code_maps_to_its_class(cls: type[errors.ServerError]) -> None:
    error = error_from_reply(f"{cls.code} something happened")
    assert type(error) is cls
    assert error.message == "something happened"
    assert isinstance(error, errors.SierraDBError)


@pytest.mark.parametrize(
    ("code", "retryable", "failover"),
    [
        ("TRYAGAIN", True, False),
        ("TIMEOUT", True, False),
        ("QUORUMFAILED", True, False),
        ("INSUFFICIENTREPLICAS", True, False),
        ("CLUSTERDOWN", True, True),
        ("NOTLEADER", True, True),
        ("CIRCUITOPEN", True, False),
        ("WRONGVER", False, False),
        ("DUPLICATE", False, False),
        ("INVALIDARG", False, False),
        ("WRITEERR", False, False),
        ("SOMETHINGNEW", False, False),
    ],
)
def test_retryable_codes_are_the_contracts(code: str, retryable: bool, failover: bool) -> None:
    error = error_from_reply(f"{code} text")
    assert (error.code, error.retryable, error.failover) == (code, retryable, failover)


def test_a_reply_without_a_code_is_err() -> None:
    assert error_from_reply("the event id must embed the partition hash").code == "ERR"


def test_wrong_expected_version_carries_the_current_version() -> None:
    e = error_from_reply(
        "WRONGVER current stream version is 7 but expected 5 for partition key "
        "7e124fe8-fe28-5398-bb95-53973100148f and stream id user 1"
    )
    assert isinstance(e, WrongExpectedVersion)
    assert (e.current, e.expected, e.stream_id) == (7, 5, "user 1")
    assert e.partition_key == uuid.UUID("7e124fe8-fe28-5398-bb95-53973100148f")
    e = error_from_reply(
        "WRONGVER current stream version is empty but expected exists for partition key "
        "7e124fe8-fe28-5398-bb95-53973100148f and stream id s"
    )
    assert isinstance(e, WrongExpectedVersion)
    assert (e.current, e.expected) == (None, ExpectedVersion.EXISTS)


def test_redis_py_errors_are_translated() -> None:
    # redis-py strips the codes it knows; the client puts them back.
    assert type(translate(redis.exceptions.TryAgainError("busy"))) is TryAgain
    assert (
        translate(redis.exceptions.ClusterDownError("partition unavailable")).code == "CLUSTERDOWN"
    )
    assert translate(redis.exceptions.ResponseError("DUPLICATE event id")).code == "DUPLICATE"
    assert translate(redis.exceptions.AuthenticationError("Authentication required.")).code == (
        "NOAUTH"
    )
    assert isinstance(translate(redis.exceptions.ConnectionError("reset")), ConnectionFailed)
    assert isinstance(translate(ConnectionResetError()), ConnectionFailed)
    assert translate(ValueError("not ours")) is None


# ----------------------------------------------------------------------------- retries
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_retries_stop_after_max_attempts() -> None:
    attempts = RetryPolicy(max_attempts=3, max_elapsed_s=100).start(Clock(), lambda a, b: b)
    assert attempts.next_delay(TryAgain("x")) == pytest.approx(0.05)
    assert attempts.next_delay(TryAgain("x")) == pytest.approx(0.1)
    assert attempts.next_delay(TryAgain("x")) is None


def test_retries_stop_after_max_elapsed() -> None:
    clock = Clock()
    attempts = RetryPolicy(max_attempts=None, max_elapsed_s=1.0).start(clock, lambda a, b: b)
    assert attempts.next_delay(TryAgain("x")) is not None
    clock.now = 0.99
    assert attempts.next_delay(TryAgain("x")) is None  # the delay would end past 1 s


def test_backoff_is_jittered_and_capped() -> None:
    seen = []

    def rng(low: float, high: float) -> float:
        seen.append((low, high))
        return high / 2

    attempts = RetryPolicy(max_attempts=None, max_elapsed_s=1e9, max_delay_s=0.3).start(
        Clock(), rng
    )
    for _ in range(5):
        attempts.next_delay(TryAgain("x"))
    assert seen == [(0.0, 0.05), (0.0, 0.1), (0.0, 0.2), (0.0, 0.3), (0.0, 0.3)]


def test_final_errors_are_not_retried() -> None:
    attempts = RetryPolicy().start()
    assert attempts.next_delay(error_from_reply("WRONGVER x")) is None
    assert attempts.next_delay(ValueError("a bug")) is None


# ---------------------------------------------------------------------------- replies
def test_maps_are_read_in_either_protocol() -> None:
    resp3 = {b"has_more": True, b"events": []}
    resp2 = [b"has_more", 1, b"events", []]
    assert protocol.parse_scan(resp3) == protocol.parse_scan(resp2)
    assert protocol.parse_scan(resp2).has_more is True


def test_expected_versions_are_typed() -> None:
    assert protocol.expected_arg(ExpectedVersion.EMPTY) == "empty"
    assert protocol.expected_arg(3) == "3"
    for bad in (-1, True, "3"):
        with pytest.raises(ValueError):
            protocol.expected_arg(bad)  # type: ignore[arg-type]


def test_every_append_carries_a_client_event_id() -> None:
    args = protocol.append("s", "E").args
    event_id = uuid.UUID(str(args[args.index("EVENT_ID") + 1]))
    assert node_ids.partition_hash(event_id.bytes) == identifiers.partition_hash(
        identifiers.partition_key_for_stream("s")
    )


def test_addresses() -> None:
    assert parse_addresses("a:1, b:2") == [("a", 1), ("b", 2)]
    assert parse_addresses(["[::1]:9090"]) == [("::1", 9090)]
    with pytest.raises(ValueError):
        parse_addresses("nohost")


# ------------------------------------------------------------------- subscription state
def _event(partition: int, sequence: int, stream: str = "s", version: int = 0) -> dict:
    return {
        b"event_id": str(uuid.uuid4()).encode(),
        b"partition_key": str(identifiers.partition_key_for_stream(stream)).encode(),
        b"partition_id": partition,
        b"transaction_id": str(uuid.uuid4()).encode(),
        b"partition_sequence": sequence,
        b"stream_version": version,
        b"timestamp": 0,
        b"stream_id": stream.encode(),
        b"event_name": b"E",
        b"metadata": b"",
        b"payload": b"",
    }


def _state(window: int = 4) -> SubscriptionState:
    state = SubscriptionState({3: 10, 5: None}, window, partitions=True)
    [(target, _)] = state.start_requests()
    state.set_start(target, 41)
    state.on_subscribed(b"sub-1")
    return state


def test_resubscribing_starts_at_the_first_undelivered_positions() -> None:
    state = _state()
    assert state.subscribe_args() == ("EPSUB", "3,5", "FROM", "MAP", "3=10", "5=42", "WINDOW", 4)
    assert state.on_frame([b"message", b"sub-1", 0, _event(3, 10)]) is not None
    state.on_disconnect()
    assert state.subscribe_args()[4:6] == ("3=11", "5=42")


def test_events_already_delivered_are_dropped() -> None:
    state = _state()
    assert state.on_frame([b"message", b"sub-1", 0, _event(3, 10)]) is not None
    assert state.on_frame([b"message", b"sub-1", 1, _event(3, 10)]) is None


def test_a_gap_is_an_error() -> None:
    state = _state()
    with pytest.raises(SubscriptionGap):
        state.on_frame([b"message", b"sub-1", 0, _event(3, 11)])


def test_frames_of_another_subscription_and_replies_are_ignored() -> None:
    state = _state()
    assert state.on_frame([b"message", b"old-sub", 0, _event(3, 10)]) is None
    assert state.on_frame(b"OK") is None
    assert state.on_frame([b"subscribe", b"sub-1", 1]) is None
    assert state.positions[3] == 10


def test_acks_go_out_every_half_window() -> None:
    state = _state(window=4)
    acks = []
    for i in range(6):
        state.on_frame([b"message", b"sub-1", i, _event(3, 10 + i)])
        acks.append(state.ack_args())
    assert acks == [
        None,
        ("EACK", "sub-1", 1),
        None,
        ("EACK", "sub-1", 3),
        None,
        ("EACK", "sub-1", 5),
    ]


def test_stream_targets_name_each_stream_once() -> None:
    assert stream_targets(["a", "b"], {"a": 3}) == {
        ("a", identifiers.partition_key_for_stream("a")): 3,
        ("b", identifiers.partition_key_for_stream("b")): None,
    }
    with pytest.raises(ValueError):
        SubscriptionState(stream_targets(["a", "a"], 0) | {("a", uuid.uuid4()): 0}, 10, False)


def test_partition_targets() -> None:
    key = identifiers.partition_key_for_stream("user-123")
    assert partition_targets([key, 2], 7, 32) == {21: 7, 2: 7}
    assert list(partition_targets("*", None, 4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        partition_targets(32, None, 32)


def test_a_quiet_connection_is_pinged_then_given_up() -> None:
    state = _state()
    assert state.on_quiet() == ("PING",)
    state.on_frame(b"PONG")  # any frame shows the connection alive
    assert state.on_quiet() == ("PING",)
    with pytest.raises(ConnectionFailed):
        state.on_quiet()


def test_closing_counts_replies_and_delivers_nothing() -> None:
    state = _state()
    assert state.unsubscribe_args() == ("EUNSUB", "sub-1")
    assert state.pending_replies == 1
    state.on_closing_frame([b"message", b"sub-1", 0, _event(3, 10)])
    assert (state.pending_replies, state.positions[3]) == (1, 10)
    state.on_closing_frame(b"OK")
    assert state.pending_replies == 0
