"""Fixtures of the client tests: a real node (shared by a module, or a test's own when the test
kills or restarts it), clients of both RESP versions, and the fault-injecting proxy."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


@pytest.fixture
def restart(node_factory: Callable[..., NodeProcess]) -> Callable[[NodeProcess], NodeProcess]:
    """kill -9 a node and start it again on the same data dir and port."""

    def again(node: NodeProcess) -> NodeProcess:
        port = node.port
        node.kill()
        return node_factory(
            *node.args, "--client-address", f"127.0.0.1:{port}", data_dir=node.data_dir
        )

    return again
