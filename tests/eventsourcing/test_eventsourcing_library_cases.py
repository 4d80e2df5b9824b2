"""The `eventsourcing` library's own persistence test cases, against a real node.

Each class subclasses one of the library's test cases and only says how to make the recorder
(or the factory). Nothing of the library's tests is skipped or changed. The library's modules are
imported, not its classes, so that pytest does not collect the abstract bases themselves.
"""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.tests import application as library_application
from eventsourcing.tests import persistence as library
from eventsourcing.utils import Environment

from sierradb.eventsourcing import (
    SierraDBAggregateRecorder,
    SierraDBApplicationRecorder,
    SierraDBFactory,
    SierraDBProcessRecorder,
    SierraDBTrackingRecorder,
)


class WithFactory:
    """A factory for the test's own partition, closed after the test."""

    factory: SierraDBFactory

    @pytest.fixture(autouse=True)
    def _factory(self, es_env: dict[str, str]) -> Any:
        self.factory = SierraDBFactory(Environment("TestCase", es_env))
        yield
        self.factory.close()


class TestAggregateRecorder(WithFactory, library.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return self.factory.aggregate_recorder()


class TestSnapshotRecorder(WithFactory, library.AggregateRecorderTestCase):
    """Snapshots are another purpose: `$snapshots/<id>` streams."""

    def create_recorder(self) -> AggregateRecorder:
        return self.factory.aggregate_recorder(purpose="snapshots")


class TestApplicationRecorder(WithFactory, library.ApplicationRecorderTestCase):
    def create_recorder(self) -> ApplicationRecorder:
        return self.factory.application_recorder()

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestNonInterleavingNotificationIDs(
    WithFactory, library.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> ApplicationRecorder:
        return self.factory.application_recorder()


class TestTrackingRecorder(WithFactory, library.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return self.factory.tracking_recorder()


class TestProcessRecorder(WithFactory, library.ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()


class TrackingRecorderSubclass(SierraDBTrackingRecorder):
    pass


class TestInfrastructureFactory(library.InfrastructureFactoryTestCase[SierraDBFactory]):
    @pytest.fixture(autouse=True)
    def _env(self, es_env: dict[str, str]) -> None:
        self.env = Environment("TestCase", es_env)

    def expected_factory_class(self) -> type[SierraDBFactory]:
        return SierraDBFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return SierraDBAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return SierraDBApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return SierraDBTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return TrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return SierraDBProcessRecorder


class TestExampleApplication(library_application.ExampleApplicationTestCase):
    """The library's bank-accounts application (with snapshots) on SierraDB, selected through
    the environment as users do."""

    expected_factory_topic = "sierradb.eventsourcing.factory:SierraDBFactory"

    @pytest.fixture(autouse=True)
    def _environment(self, es_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(InfrastructureFactory.PERSISTENCE_MODULE, es_env["PERSISTENCE_MODULE"])
        monkeypatch.setenv("SIERRADB_ADDRESSES", es_env["SIERRADB_ADDRESSES"])
        monkeypatch.setenv("BANKACCOUNTS_SIERRADB_PARTITION_KEY", es_env["SIERRADB_PARTITION_KEY"])
