"""``ClusterRuntime.live_count`` (a leader's quorum check on every append, and ``is_up`` of one
node) counts a node as up exactly when ``peer_at`` finds its peer and membership hears that
peer, in every membership state that changes it: linked and heard, silent past the down timeout,
left, two links claiming one index, no link at all. Membership is the real state machine; the
runtime is built without its host (only what these read)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import trio
import trio.testing
from test_p2p_membership import DOWN, hb, hello, make

from sierradb.p2p.messages import Leave
from sierradb.p2p.runtime import ClusterRuntime


def runtime(links: dict[str, int]) -> ClusterRuntime:
    rt = object.__new__(ClusterRuntime)
    rt.settings = SimpleNamespace(node_index=0)  # type: ignore[assignment]
    rt.membership = make(0, count=4)
    rt._links = {p: SimpleNamespace(hello=hello(i)) for p, i in links.items()}  # type: ignore[misc]
    rt._peers_by_index = None
    for peer_id, index in links.items():
        rt.membership.on_link_up(peer_id, hello(index), 0.0)
    return rt


def up_by_peer_at(rt: ClusterRuntime, node: int) -> bool:
    """Up as the runtime's other lookups see it: this node, or a peer that ``peer_at`` finds
    (one link, no conflicting claim) and membership hears."""
    if node == rt.settings.node_index:
        return True
    peer = rt.peer_at(node)
    assert rt.membership is not None
    return peer is not None and rt.membership.is_up(peer, trio.current_time())


def agree(rt: ClusterRuntime) -> list[int]:
    """live_count of every set of nodes 0..3, checked against up_by_peer_at and is_up; the
    counts of (0, 1, 2, 3)."""
    for size in range(1, 5):
        for nodes in itertools.combinations(range(4), size):
            assert rt.live_count(nodes) == sum(up_by_peer_at(rt, n) for n in nodes), nodes
            assert rt.live_count(nodes) == sum(rt.is_up(n) for n in nodes), nodes
    return [rt.live_count((n,)) for n in range(4)]


def test_live_count_answers_as_peer_at_and_membership_do() -> None:
    async def main() -> None:
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, trio.testing.MockClock)
        rt = runtime({"p1": 1, "p2": 2})  # index 3 has no link
        assert agree(rt) == [1, 1, 1, 0]
        m = rt.membership
        while trio.current_time() < DOWN + 1:  # p2 silent past the down timeout, p1 heard
            clock.jump(m.tick_interval_s)
            m.tick(trio.current_time())
            m.on_message("p1", hb(), trio.current_time())
        assert agree(rt) == [1, 1, 0, 0]
        rt.membership.on_message("p1", Leave(1), trio.current_time())
        assert agree(rt) == [1, 0, 0, 0]

    trio.run(main, clock=trio.testing.MockClock())


def test_two_links_claiming_one_index_count_for_none() -> None:
    async def main() -> None:
        rt = runtime({"p1": 1, "p2": 2, "p2b": 2})
        assert agree(rt) == [1, 1, 0, 0]

    trio.run(main, clock=trio.testing.MockClock())
