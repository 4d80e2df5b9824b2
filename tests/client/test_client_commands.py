"""Every command of the client against a real node, over RESP3 and RESP2: typed results, paging
at boundaries, and each error reply the node can produce as its typed error."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from client_helpers import unique
from nodeproc import NodeProcess

from sierradb.client import (
    AuthenticationRequired,
    Client,
    ClusterDown,
    DatabaseOperationFailed,
    Duplicate,
    Event,
    ExpectedVersion,
    GenericError,
    InvalidArgument,
    NewEvent,
    NotFound,
    RetryPolicy,
    WrongExpectedVersion,
    WrongPassword,
    new_event_id,
    partition_id,
    partition_key_for_stream,
)
from sierradb.client.protocol import Request, parse_ok


def test_append_returns_a_typed_result(client: Client) -> None:
    stream = unique("s")
    before = datetime.now(UTC).replace(microsecond=0)
    result = client.append(stream, "Created", b'{"a": 1}', metadata=b"m")
    assert result.stream_version == 0
    assert result.partition_key == partition_key_for_stream(stream)
    assert result.partition_id == partition_id(result.partition_key, client.partition_count())
    assert isinstance(result.event_id, uuid.UUID)
    assert result.timestamp >= before
    event = client.get(result.event_id)
    assert event is not None
    assert (event.stream_id, event.event_name, event.payload, event.metadata) == (
        stream,
        "Created",
        b'{"a": 1}',
        b"m",
    )
    assert (event.partition_sequence, event.timestamp) == (
        result.partition_sequence,
        result.timestamp,
    )


def test_expected_versions(client: Client) -> None:
    stream = unique("s")
    with pytest.raises(WrongExpectedVersion) as raised:
        client.append(stream, "E", expected_version=ExpectedVersion.EXISTS)
    assert raised.value.current is None
    assert raised.value.expected is ExpectedVersion.EXISTS
    assert client.append(stream, "E", expected_version=ExpectedVersion.EMPTY).stream_version == 0
    assert client.append(stream, "E", expected_version=ExpectedVersion.EXISTS).stream_version == 1
    assert client.append(stream, "E", expected_version=1).stream_version == 2
    assert client.append(stream, "E").stream_version == 3  # ANY
    with pytest.raises(WrongExpectedVersion) as raised:
        client.append(stream, "E", expected_version=1)
    e = raised.value
    assert (e.current, e.expected, e.stream_id) == (3, 1, stream)
    assert e.partition_key == partition_key_for_stream(stream)
    with pytest.raises(WrongExpectedVersion):
        client.append(stream, "E", expected_version=ExpectedVersion.EMPTY)


def test_explicit_partition_key_event_id_and_timestamp(client: Client) -> None:
    stream, key = unique("s"), uuid.uuid4()
    moment = datetime(2024, 2, 29, 12, 30, 15, 123000, tzinfo=UTC)
    event_id = new_event_id(key)
    result = client.append(stream, "E", partition_key=key, event_id=event_id, timestamp=moment)
    assert (result.event_id, result.partition_key, result.timestamp) == (event_id, key, moment)
    assert [e.event_id for e in client.scan_stream(stream, partition_key=key)] == [event_id]
    assert list(client.scan_stream(stream)) == []  # the default key names another stream
    assert client.stream_version(stream, key) == 0
    with pytest.raises(ValueError):
        client.append(stream, "E", timestamp=datetime(2024, 1, 1))  # naive: ambiguous


def test_multi_append_is_atomic_and_ordered(client: Client) -> None:
    a, b = unique("a"), unique("b")
    key = uuid.uuid4()
    result = client.multi_append(
        key,
        [
            NewEvent(a, "A1", b"1", expected_version=ExpectedVersion.EMPTY),
            NewEvent(b, "B1", b"2"),
            NewEvent(a, "A2", b"3", expected_version=0),
        ],
    )
    assert [(e.stream_id, e.stream_version) for e in result.events] == [(a, 0), (b, 0), (a, 1)]
    assert result.last_partition_sequence - result.first_partition_sequence == 2
    with pytest.raises(WrongExpectedVersion):
        client.multi_append(
            key,
            [NewEvent(b, "B2", expected_version=0), NewEvent(a, "A3", expected_version=0)],
        )
    assert client.stream_version(b, key) == 0  # nothing of the refused request was written
    with pytest.raises(ValueError):
        client.multi_append(key, [])


def test_get_unknown_event_is_none(client: Client) -> None:
    assert client.get(uuid.uuid4()) is None


def test_versions_and_sequences(client: Client) -> None:
    stream = unique("s")
    assert client.stream_version(stream) is None
    result = client.append(stream, "E")
    assert client.stream_version(stream) == 0
    assert client.partition_sequence(result.partition_id) == result.partition_sequence
    assert client.partition_sequence(result.partition_key) == result.partition_sequence


@pytest.mark.parametrize("page_size", [1, 4, 5, 6, 100])
def test_stream_scans_page_by_themselves(client: Client, page_size: int) -> None:
    stream = unique("s")
    for i in range(10):
        client.append(stream, "E", str(i).encode())
    scan = list(client.scan_stream(stream, page_size=page_size))
    assert [e.stream_version for e in scan] == list(range(10))
    assert [e.payload for e in scan] == [str(i).encode() for i in range(10)]
    assert [e.stream_version for e in client.scan_stream(stream, 3, 7, page_size=page_size)] == [
        3,
        4,
        5,
        6,
        7,
    ]
    assert list(client.scan_stream(stream, 10, page_size=page_size)) == []
    assert [e.stream_version for e in client.scan_stream(stream, 9, 9)] == [9]


def test_scan_pages_say_whether_more_follows(client: Client) -> None:
    stream = unique("s")
    for _ in range(5):
        client.append(stream, "E")
    page = client.scan_stream_page(stream, 0, None, count=5)
    assert (len(page.events), page.has_more) == (5, False)
    page = client.scan_stream_page(stream, 0, None, count=4)
    assert (len(page.events), page.has_more) == (4, True)
    page = client.scan_stream_page(stream, 0, 3, count=4)
    assert (len(page.events), page.has_more) == (4, False)


@pytest.mark.parametrize("page_size", [1, 3, 7, 1000])
def test_partition_scans_page_by_themselves(
    client: Client, page_size: int, shared_node: NodeProcess
) -> None:
    key = uuid.uuid4()
    first = client.append(unique("s"), "E", partition_key=key).partition_sequence
    client.multi_append(key, [NewEvent(unique("s"), "M") for _ in range(4)])
    for _ in range(2):
        client.append(unique("s"), "E", partition_key=key)
    last = client.partition_sequence(key)
    assert last is not None
    scan = list(client.scan_partition(key, first, page_size=page_size))
    assert [e.partition_sequence for e in scan] == list(range(first, last + 1))
    assert all(isinstance(e, Event) for e in scan)
    assert [e.partition_sequence for e in client.scan_partition(key, first + 1, first + 4)] == [
        first + 1,
        first + 2,
        first + 3,
        first + 4,
    ]
    assert list(client.scan_partition(key, last + 1)) == []


def test_a_partition_that_does_not_exist_is_refused_at_once(client: Client) -> None:
    count = client.partition_count()
    with pytest.raises(ValueError):
        client.scan_partition_page(count)
    with pytest.raises(ValueError):
        list(client.scan_partition(count))
    with pytest.raises(ValueError):
        client.partition_sequence(-1)


# ------------------------------------------------------------------------- error types
def test_invalid_argument(client: Client) -> None:
    with pytest.raises(InvalidArgument):
        client.append(unique("s"), "E" * 256)
    with pytest.raises(InvalidArgument):
        client.append("s" * 65, "E")


def test_duplicate_event_id(client: Client) -> None:
    stream = unique("s")
    first = client.append(stream, "E", b"one")
    with pytest.raises(Duplicate):
        client.append(stream, "E", b"two", event_id=first.event_id)
    # The same event again is a retry: the stored position, nothing written twice.
    again = client.append(stream, "E", b"one", event_id=first.event_id)
    assert again.stream_version == first.stream_version
    assert client.stream_version(stream) == 0


def test_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        client.execute(Request(("EUNSUB", str(uuid.uuid4())), parse_ok))


def test_cluster_down(client: Client, shared_node: NodeProcess, protocol: int) -> None:
    # A partition the node does not have; the client's own check is bypassed here, and
    # retries are off (CLUSTERDOWN is retryable: the partition may come back).
    with Client(f"127.0.0.1:{shared_node.port}", protocol=protocol, retry=RetryPolicy(1)) as c:
        with pytest.raises(ClusterDown) as raised:
            c.execute(Request(("EPSEQ", "65535"), int))
    assert raised.value.retryable


def test_database_operation_failed(client: Client) -> None:
    # A stream is bound to its first partition key; another key of the same partition fails.
    stream = unique("s")
    result = client.append(stream, "E")
    count = client.partition_count()
    while True:
        other = uuid.uuid4()
        if partition_id(other, count) == result.partition_id:
            break
    with pytest.raises(DatabaseOperationFailed):
        client.append(stream, "E", partition_key=other)


def test_generic_error(client: Client) -> None:
    with pytest.raises(GenericError):
        client.execute(Request(("SELECT", "1"), parse_ok))


@pytest.fixture
def password_node(node_factory: Callable[..., NodeProcess]) -> NodeProcess:
    return node_factory("--requirepass", "s3cret")


def test_authentication(password_node: NodeProcess, protocol: int) -> None:
    address = f"127.0.0.1:{password_node.port}"
    with Client(address, protocol=protocol, password="s3cret") as c:
        assert c.append(unique("s"), "E").stream_version == 0
    with Client(address, protocol=protocol, password="wrong") as c:
        with pytest.raises(WrongPassword):
            c.ping()
    with Client(address, protocol=protocol) as c:
        with pytest.raises(AuthenticationRequired):
            c.append(unique("s"), "E")
