"""Fixtures shared by the contract tests; each module brings its own `server` node."""

import pytest
from resp_client import RawClient


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    """Every test that takes it runs over RESP2 and over RESP3."""
    return request.param


@pytest.fixture
def raw(server, protocol):
    with RawClient(server.port, protocol) as c:
        yield c
