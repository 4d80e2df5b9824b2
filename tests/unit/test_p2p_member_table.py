"""The gossiped member table: merges are idempotent, order-independent; stale incarnations lose."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sierradb.p2p.member_table import MemberTable, RegistrySlot
from sierradb.p2p.messages import Gossip, MemberInfo, RegistryEntry

PEERS = [f"12D3KooWpeer{i}" for i in range(4)]
MEMBERS = ["a" * 32, "b" * 32, "c" * 32]

member_infos = st.builds(
    MemberInfo,
    peer_id=st.sampled_from(PEERS),
    node_index=st.integers(0, 3),
    member_id=st.sampled_from(MEMBERS),
    incarnation=st.integers(1, 4),
    addresses=st.lists(st.sampled_from(["/ip4/10.0.0.1/tcp/7000", "/ip4/10.0.0.2/tcp/7000"])),
    client_address=st.sampled_from(["h:1", "h:2"]),
)
registry_entries = st.builds(
    RegistryEntry,
    node_index=st.integers(0, 3),
    epoch=st.integers(0, 2),
    member_ids=st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=2, unique=True),
)
gossips = st.builds(
    Gossip,
    cluster_id=st.one_of(st.none(), st.just("x" * 32)),
    members=st.lists(member_infos, max_size=4),
    registry=st.lists(registry_entries, max_size=3),
)


def state(table: MemberTable) -> tuple:
    return (table.cluster_id, table.members, table.registry)


def merged(gossip_list: list[Gossip]) -> MemberTable:
    table = MemberTable("self")
    for g in gossip_list:
        table.merge(g)
    return table


@settings(max_examples=200, deadline=None)
@given(st.lists(gossips, min_size=1, max_size=4))
def test_merge_is_order_independent(gossip_list: list[Gossip]) -> None:
    expected = state(merged(gossip_list))
    for order in itertools.islice(itertools.permutations(gossip_list), 6):
        assert state(merged(list(order))) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(gossips, min_size=1, max_size=4))
def test_merge_is_idempotent(gossip_list: list[Gossip]) -> None:
    once = merged(gossip_list)
    twice = merged(gossip_list + gossip_list)
    assert state(once) == state(twice)
    again = once.gossip()
    before = state(once)
    once.merge(again)
    assert state(once) == before


@settings(max_examples=100, deadline=None)
@given(st.lists(gossips, min_size=2, max_size=4))
def test_merging_tables_pairwise_converges(gossip_list: list[Gossip]) -> None:
    """Two nodes that each saw half the announcements agree after exchanging tables."""
    half = len(gossip_list) // 2
    left, right = merged(gossip_list[:half]), merged(gossip_list[half:])
    left.merge(right.gossip())
    right.merge(left.gossip())
    assert state(left) == state(right) == state(merged(gossip_list))


def info(peer: str, incarnation: int, address: str = "/ip4/10.0.0.1/tcp/7000") -> MemberInfo:
    return MemberInfo(peer, 1, "a" * 32, incarnation, [address], "h:1")


def test_a_stale_incarnation_loses() -> None:
    table = MemberTable("self")
    table.merge_members([info("p", 3, "/ip4/10.0.0.3/tcp/7000")])
    table.merge_members([info("p", 2, "/ip4/10.0.0.2/tcp/7000")])
    assert table.members["p"].incarnation == 3
    assert table.members["p"].addresses == ["/ip4/10.0.0.3/tcp/7000"]


def test_a_newer_incarnation_replaces_an_older_one() -> None:
    table = MemberTable("self")
    table.merge_members([info("p", 2)])
    assert table.merge_members([info("p", 5, "/ip4/10.0.0.9/tcp/7000")])
    assert table.members["p"].addresses == ["/ip4/10.0.0.9/tcp/7000"]


def test_the_cluster_id_is_adopted_once_and_never_changed() -> None:
    table = MemberTable("self")
    assert table.adopt_cluster_id("x" * 32)
    assert not table.adopt_cluster_id("y" * 32)
    assert table.cluster_id == "x" * 32


def test_first_member_seen_at_an_index_is_trusted() -> None:
    table = MemberTable("self")
    assert table.record_first_seen(2, "a" * 32)
    assert not table.record_first_seen(2, "b" * 32)
    assert not table.is_learner(2, "a" * 32)
    assert table.is_learner(2, "b" * 32)


def test_two_members_first_seen_at_one_index_make_both_learners() -> None:
    left, right = MemberTable("l"), MemberTable("r")
    left.record_first_seen(2, "a" * 32)
    right.record_first_seen(2, "b" * 32)
    left.merge(right.gossip())
    assert left.registry[2] == RegistrySlot(0, frozenset({"a" * 32, "b" * 32}))
    assert left.is_learner(2, "a" * 32) and left.is_learner(2, "b" * 32)


def test_admission_wins_over_first_use_and_prunes_the_replaced_identity() -> None:
    table = MemberTable("self")
    table.record_first_seen(2, "a" * 32)
    table.merge_members([MemberInfo("old", 2, "a" * 32, 1, [], "h:1")])
    table.merge_members([MemberInfo("new", 2, "b" * 32, 1, [], "h:1")])
    assert table.is_learner(2, "b" * 32)
    assert table.admit(2, "b" * 32)
    assert not table.is_learner(2, "b" * 32)
    assert table.is_learner(2, "a" * 32)
    assert "old" not in table.effective_members() and "new" in table.effective_members()
    other = MemberTable("other")
    other.record_first_seen(2, "a" * 32)
    other.merge_members([MemberInfo("old", 2, "a" * 32, 1, [], "h:1")])
    other.merge(table.gossip())
    assert other.registry[2] == RegistrySlot(1, frozenset({"b" * 32}))
    assert "old" not in other.effective_members()


def test_admitting_the_admitted_member_changes_nothing() -> None:
    table = MemberTable("self")
    table.record_first_seen(1, "a" * 32)
    assert not table.admit(1, "a" * 32)


def test_the_version_moves_only_on_change() -> None:
    table = MemberTable("self")
    table.merge_members([info("p", 1)])
    version = table.version
    table.merge_members([info("p", 1)])
    table.merge(table.gossip())
    assert table.version == version
