"""One node for the eventsourcing tests, and a partition of their own for each application.

The library's test cases expect an empty application sequence (notification ids 1, 2, 3, ...),
so every test gets a partition key whose partition no other test writes to. The node has
enough partitions for that; sharing a partition is tested on its own.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from es_helpers import PARTITIONS, key_in_partition
from nodeproc import NodeProcess

_next_partition = itertools.count()


@pytest.fixture(scope="session")
def es_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path_factory.mktemp("es-node"), "--partitions", str(PARTITIONS))
    node.start()
    yield node
    node.kill()


@pytest.fixture
def fresh_partition_key() -> uuid.UUID:
    """A key of a partition no other test has used."""
    p = next(_next_partition)
    assert p < PARTITIONS, "more tests than partitions: raise PARTITIONS"
    return key_in_partition(p)


@pytest.fixture
def es_env(es_node: NodeProcess, fresh_partition_key: uuid.UUID) -> dict[str, str]:
    """Settings of an application on the node, in a partition of its own."""
    return {
        "PERSISTENCE_MODULE": "sierradb.eventsourcing",
        "SIERRADB_ADDRESSES": f"127.0.0.1:{es_node.port}",
        "SIERRADB_PARTITION_KEY": str(fresh_partition_key),
    }
