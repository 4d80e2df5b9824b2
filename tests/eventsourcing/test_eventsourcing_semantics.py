"""What the persistence module decides where the library is silent: applications sharing a
partition, tracking in the same multi-append as the events, conflicts seen by writers with cold
caches, originator versions with gaps, and subscriptions that survive a node restart."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from es_helpers import PARTITIONS, key_in_partition
from eventsourcing.persistence import IntegrityError, Notification, StoredEvent, Tracking
from eventsourcing.utils import Environment
from nodeproc import NodeProcess

from sierradb.client import partition_id
from sierradb.eventsourcing import SierraDBFactory


@contextmanager
def factory(
    address: str, key: uuid.UUID, name: str = "App", **env: str
) -> Iterator[SierraDBFactory]:
    settings = {"SIERRADB_ADDRESSES": address, "SIERRADB_PARTITION_KEY": str(key), **env}
    f = SierraDBFactory(Environment(name, settings))
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def address(es_node: NodeProcess) -> str:
    return f"127.0.0.1:{es_node.port}"


def event(originator_id: uuid.UUID, version: int, topic: str = "t") -> StoredEvent:
    return StoredEvent(originator_id, version, topic, b"{}")


def test_applications_sharing_a_partition_see_only_their_own_notifications(
    address: str, fresh_partition_key: uuid.UUID
) -> None:
    p = partition_id(fresh_partition_key, PARTITIONS)
    other_key = key_in_partition(p)
    with factory(address, fresh_partition_key, "A") as fa, factory(address, other_key, "B") as fb:
        a, b = fa.application_recorder(), fb.application_recorder()
        ids_a: list[int] = []
        ids_b: list[int] = []
        for _ in range(3):
            ids_a += a.insert_events([event(uuid.uuid4(), 1, "a")])  # type: ignore[operator]
            ids_b += b.insert_events([event(uuid.uuid4(), 1, "b")])  # type: ignore[operator]
        # Ids are the shared partition's sequence: increasing, with the other's as gaps.
        assert ids_a == [1, 3, 5]
        assert ids_b == [2, 4, 6]
        assert [n.id for n in a.select_notifications(None, 10)] == ids_a
        assert {n.topic for n in b.select_notifications(None, 10)} == {"b"}
        assert a.max_notification_id() == 5
        assert b.max_notification_id() == 6
        assert [n.id for n in a.select_notifications(2, 1)] == [3]  # limit counts own only
        with a.subscribe(gt=1) as sub:
            assert [next(sub).id, next(sub).id] == [3, 5]


def test_tracking_is_written_in_the_events_multi_append(
    address: str, fresh_partition_key: uuid.UUID
) -> None:
    with factory(address, fresh_partition_key) as f:
        recorder = f.process_recorder()
        originator = uuid.uuid4()
        [nid] = recorder.insert_events(  # type: ignore[misc]
            [event(originator, 1)], tracking=Tracking("upstream", 7)
        )
        events = list(f.client.scan_partition(fresh_partition_key, nid - 1))
        assert [e.stream_id for e in events] == [str(originator), "$tracking/upstream"]
        assert events[0].transaction_id == events[1].transaction_id
        # A repeated tracking record refuses the whole write, events included.
        with pytest.raises(IntegrityError):
            recorder.insert_events([event(originator, 2)], tracking=Tracking("upstream", 7))
        assert [e.originator_version for e in recorder.select_events(originator)] == [1]
        assert recorder.max_tracking_id("upstream") == 7
        # Tracking records are not notifications.
        assert [n.id for n in recorder.select_notifications(None, 10)] == [nid]


def test_writers_with_cold_caches_still_conflict(
    address: str, fresh_partition_key: uuid.UUID
) -> None:
    """Two processes (two factories, separate caches) write one aggregate."""
    originator = uuid.uuid4()
    with factory(address, fresh_partition_key) as f1, factory(address, fresh_partition_key) as f2:
        r1, r2 = f1.application_recorder(), f2.application_recorder()
        r1.insert_events([event(originator, 1), event(originator, 2)])
        with pytest.raises(IntegrityError):
            r2.insert_events([event(originator, 2)])  # f2 never saw the stream
        r2.insert_events([event(originator, 3)])  # learned the tail from the conflict
        with pytest.raises(IntegrityError):
            r1.insert_events([event(originator, 3)])  # f1's cache is stale: server refuses
        versions = [e.originator_version for e in r2.select_events(originator)]
        assert versions == [1, 2, 3]
        with pytest.raises(IntegrityError):
            r1.insert_events([event(originator, 5), event(originator, 4)])  # not increasing


def test_originator_versions_with_gaps(address: str, fresh_partition_key: uuid.UUID) -> None:
    originator = uuid.uuid4()
    with factory(address, fresh_partition_key) as f:
        snapshots = f.aggregate_recorder("snapshots")
        for version in (2, 4, 9):
            snapshots.insert_events([event(originator, version)])
        # A cold cache reads the same (a second factory).
        with factory(address, fresh_partition_key) as cold:
            fresh = cold.aggregate_recorder("snapshots")

            def versions(**kwargs: object) -> list[int]:
                return [e.originator_version for e in fresh.select_events(originator, **kwargs)]  # type: ignore[arg-type]

            assert versions() == [2, 4, 9]
            assert versions(gt=2) == [4, 9]
            assert versions(gt=3) == [4, 9]
            assert versions(gt=4, lte=8) == []
            assert versions(lte=8, desc=True, limit=1) == [4]
            assert versions(desc=True) == [9, 4, 2]
            fresh.insert_events([event(originator, 10)])
            with pytest.raises(IntegrityError):
                fresh.insert_events([event(originator, 3)])  # below the tail: refused
        aggregate = f.aggregate_recorder()
        aggregate.insert_events([event(originator, v) for v in range(1, 8)])
        assert [e.originator_version for e in aggregate.select_events(originator, gt=4)] == [
            5,
            6,
            7,
        ]


def test_text_originator_ids(address: str, fresh_partition_key: uuid.UUID) -> None:
    with factory(address, fresh_partition_key, SIERRADB_ORIGINATOR_ID_TYPE="text") as f:
        recorder = f.application_recorder()
        recorder.insert_events([StoredEvent("order-1", 1, "t", b"{}")])
        [n] = recorder.select_notifications(None, 10)
        assert n.originator_id == "order-1"
        with pytest.raises(Exception, match="must not start with"):
            recorder.insert_events([StoredEvent("$order", 1, "t", b"{}")])


@pytest.fixture
def own_node(node_factory: Callable[..., NodeProcess]) -> NodeProcess:
    return node_factory()


@pytest.mark.slow
def test_subscribe_survives_a_node_restart(
    own_node: NodeProcess, restart: Callable[[NodeProcess], NodeProcess]
) -> None:
    key = uuid.uuid4()
    address = f"127.0.0.1:{own_node.port}"
    written: list[int] = []
    received: list[Notification] = []
    with factory(address, key) as f:
        recorder = f.application_recorder()
        with recorder.subscribe(gt=None) as sub:

            def read() -> None:
                for notification in sub:
                    received.append(notification)

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            with factory(address, key) as writer_factory:
                writer = writer_factory.application_recorder()
                current = own_node
                for round_ in range(3):
                    for _ in range(5):
                        written += writer.insert_events([event(uuid.uuid4(), 1)])  # type: ignore[operator]
                    if round_ < 2:
                        current = restart(current)
            deadline = time.monotonic() + 30
            while len(received) < len(written) and time.monotonic() < deadline:
                time.sleep(0.05)
        reader.join(10)
    assert written == list(range(1, 16))
    assert [n.id for n in received] == written
