"""Helpers of the eventsourcing tests (a module of its own, not conftest, so tests import it)."""

from __future__ import annotations

import uuid

from sierradb.client import partition_id

PARTITIONS = 256
"""Partitions of the tests' node: enough for a partition of its own per test."""


def key_in_partition(partition: int, partition_count: int = PARTITIONS) -> uuid.UUID:
    """A random partition key that lands in `partition`."""
    while True:
        key = uuid.uuid4()
        if partition_id(key, partition_count) == partition:
            return key
