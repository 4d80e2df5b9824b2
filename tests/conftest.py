"""Shared fixtures: real node processes on 127.0.0.1 with a port chosen by the kernel."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from nodeproc import NodeProcess

LOG_TAIL_CHARS = 6000


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator:
    nodes: list[NodeProcess] = []

    def make(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None,
             start: bool = True) -> NodeProcess:  # fmt: skip
        node = NodeProcess(data_dir or tmp_path / f"node{len(nodes)}", *args, env=env)
        nodes.append(node)
        return node.start() if start else node

    yield make
    for i, node in enumerate(nodes):
        node.kill()
        # Shown by pytest only when the test failed: what each node logged, last part first cut.
        print(f"--- node {i} ({node.data_dir}) log, last {LOG_TAIL_CHARS} chars ---")
        print(node.output()[-LOG_TAIL_CHARS:])


@pytest.fixture
def node(node_factory) -> NodeProcess:  # type: ignore[no-untyped-def]
    """A running single node (fdatasync on, so durability is real)."""
    return node_factory()


@pytest.fixture
def restart(node_factory) -> Callable[[NodeProcess], NodeProcess]:  # type: ignore[no-untyped-def]
    """kill -9 a node and start it again on the same data dir and ports (clients reconnect).

    The HTTP port is given back explicitly: left to its default (the client port + 1) it may be
    the local port of some client connection, since the kernel hands out even ports to bind(0)
    and odd ones to connect(), and the restart then fails with "Address already in use"."""

    def again(node: NodeProcess) -> NodeProcess:
        port, http_port = node.port, node.http_port
        node.kill()
        args = [*node.args, "--client-address", f"127.0.0.1:{port}"]
        if http_port and "--http-address" not in node.args:
            args += ["--http-address", f"127.0.0.1:{http_port}"]
        return node_factory(*args, data_dir=node.data_dir)

    return again


@pytest.fixture(scope="module")
def r(node):  # type: ignore[no-untyped-def]
    """A RESP3 client of the module's own module-scoped `node` fixture (for modules that share
    one node between their tests)."""
    with redis.Redis(port=node.port, protocol=3) as client:
        yield client
