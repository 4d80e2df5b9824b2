"""Fixtures of the client tests: a real node shared by a module (tests that kill or restart a
node use their own, `node` and `restart`), clients of both RESP versions, and the
fault-injecting proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faultproxy import FaultProxy
from nodeproc import NodeProcess

from sierradb.client import Client


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path_factory.mktemp("client-node"))
    node.start()
    yield node
    node.kill()


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def protocol(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def client(shared_node: NodeProcess, protocol: int) -> Iterator[Client]:
    with Client(f"127.0.0.1:{shared_node.port}", protocol=protocol) as c:
        yield c


@pytest.fixture
def proxy(shared_node: NodeProcess) -> Iterator[FaultProxy]:
    p = FaultProxy(shared_node.port)
    yield p
    p.close()
