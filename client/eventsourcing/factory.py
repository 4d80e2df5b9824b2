"""The infrastructure factory: `PERSISTENCE_MODULE=sierradb.eventsourcing` selects it.

Settings, read from the application's environment the library's way (an application named
`BankAccounts` reads `BANKACCOUNTS_SIERRADB_ADDRESSES` before `SIERRADB_ADDRESSES`):

* `SIERRADB_ADDRESSES` (default `127.0.0.1:9090`): node addresses, comma-separated, tried in
  order (failover);
* `SIERRADB_USERNAME`, `SIERRADB_PASSWORD`: credentials, when the node has `--requirepass`;
* `SIERRADB_PARTITION_KEY` (default: derived from the application name): the UUID all of the
  application's records are written under (two applications given one key share one sequence:
  prefix it with the application's name when several share an environment);
* `SIERRADB_ORIGINATOR_ID_TYPE` (default `uuid`): `uuid` or `text`, the type of originator ids
  read back;
* `SIERRADB_SOCKET_TIMEOUT` (default `30`): seconds a request may wait for its reply.
"""

from __future__ import annotations

import uuid

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    ProcessRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic

from sierradb.client import Client

from .recorders import (
    SierraDBAggregateRecorder,
    SierraDBApplicationRecorder,
    SierraDBProcessRecorder,
    SierraDBTrackingRecorder,
)
from .store import ApplicationPartition, partition_key_for_application

DEFAULT_APPLICATION_NAME = "eventsourcing"


class SierraDBFactory(InfrastructureFactory[SierraDBTrackingRecorder]):
    SIERRADB_ADDRESSES = "SIERRADB_ADDRESSES"
    SIERRADB_USERNAME = "SIERRADB_USERNAME"
    SIERRADB_PASSWORD = "SIERRADB_PASSWORD"
    SIERRADB_PARTITION_KEY = "SIERRADB_PARTITION_KEY"
    SIERRADB_ORIGINATOR_ID_TYPE = "SIERRADB_ORIGINATOR_ID_TYPE"
    SIERRADB_SOCKET_TIMEOUT = "SIERRADB_SOCKET_TIMEOUT"

    aggregate_recorder_class = SierraDBAggregateRecorder
    application_recorder_class = SierraDBApplicationRecorder
    tracking_recorder_class = SierraDBTrackingRecorder
    process_recorder_class = SierraDBProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        key_text = self.env.get(self.SIERRADB_PARTITION_KEY)
        try:
            partition_key = (
                uuid.UUID(key_text)
                if key_text
                else partition_key_for_application(self.env.name or DEFAULT_APPLICATION_NAME)
            )
            timeout_s = float(self.env.get(self.SIERRADB_SOCKET_TIMEOUT, "30"))
        except ValueError as e:
            raise OSError(f"invalid SierraDB setting: {e}") from None
        id_type = self.env.get(self.SIERRADB_ORIGINATOR_ID_TYPE, "uuid").lower()
        if id_type not in ("uuid", "text"):
            raise OSError(f"{self.SIERRADB_ORIGINATOR_ID_TYPE} must be 'uuid' or 'text'")
        self.client = Client(
            self.env.get(self.SIERRADB_ADDRESSES, "127.0.0.1:9090"),
            username=self.env.get(self.SIERRADB_USERNAME),
            password=self.env.get(self.SIERRADB_PASSWORD),
            socket_timeout_s=timeout_s,
            client_name=self.env.name or None,
        )
        self.partition = ApplicationPartition(self.client, partition_key, id_type)

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return self.aggregate_recorder_class(self.partition, purpose)

    def application_recorder(self) -> ApplicationRecorder:
        cls = self._topic(self.APPLICATION_RECORDER_TOPIC, self.application_recorder_class)
        return cls(self.partition)

    def tracking_recorder(
        self, tracking_recorder_class: type[SierraDBTrackingRecorder] | None = None
    ) -> SierraDBTrackingRecorder:
        cls = tracking_recorder_class or self._topic(
            self.TRACKING_RECORDER_TOPIC, self.tracking_recorder_class
        )
        return cls(self.partition)

    def process_recorder(self) -> ProcessRecorder:
        cls = self._topic(self.PROCESS_RECORDER_TOPIC, self.process_recorder_class)
        return cls(self.partition)

    def _topic(self, key: str, default: type) -> type:
        """The recorder class named by a `*_RECORDER_TOPIC` setting, else `default`."""
        topic = self.env.get(key)
        if not topic:
            return default
        cls = resolve_topic(topic)
        if not (isinstance(cls, type) and issubclass(cls, default)):
            raise TypeError(f"{key}={topic!r} is not a subclass of {default.__name__}")
        return cls

    def close(self) -> None:
        self.client.close()
