"""Placement: every node derives the same replica sets, and load is spread evenly."""

from __future__ import annotations

import pytest

from sierradb.node.placement import counts, placement


def _spread(node_count: int, rf: int, partitions: int) -> tuple[list[int], list[int]]:
    leaders = [0] * node_count
    replicas = [0] * node_count
    for order in placement(node_count, rf, partitions):
        leaders[order[0]] += 1
        for node in order:
            replicas[node] += 1
    return leaders, replicas


@pytest.mark.parametrize("node_count", [3, 4, 5, 7])
@pytest.mark.parametrize("partitions", [32, 1024])
def test_leaders_and_replicas_differ_by_at_most_one_node_to_node(
    node_count: int, partitions: int
) -> None:
    rf = min(node_count, 3)
    leaders, replicas = _spread(node_count, rf, partitions)
    assert max(leaders) - min(leaders) <= 1, leaders
    assert max(replicas) - min(replicas) <= 1, replicas
    assert sum(replicas) == partitions * rf


def test_balance_holds_for_every_small_shape() -> None:
    for node_count in range(1, 13):
        for rf in range(1, node_count + 1):
            for partitions in [*range(1, 3 * node_count + 2), 32, 100, 1024]:
                leaders, replicas = _spread(node_count, rf, partitions)
                assert max(leaders) - min(leaders) <= 1, (node_count, rf, partitions)
                assert max(replicas) - min(replicas) <= 1, (node_count, rf, partitions)


def test_each_partition_has_rf_distinct_replicas() -> None:
    for node_count in range(1, 9):
        for rf in range(1, node_count + 1):
            for order in placement(node_count, rf, 64):
                assert len(order) == rf
                assert len(set(order)) == rf
                assert all(0 <= node < node_count for node in order)


def test_placement_is_a_pure_function() -> None:
    placement.cache_clear()
    first = placement(5, 3, 1024)
    placement.cache_clear()
    assert placement(5, 3, 1024) == first


def test_placement_is_pinned_across_releases() -> None:
    # Where data lives depends on this: a change must bump PLACEMENT_VERSION.
    assert placement(3, 3, 6) == ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (1, 0, 2), (2, 1, 0))
    assert placement(5, 3, 7)[:5] == ((0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 0), (4, 0, 1))


def test_a_failed_leaders_partitions_fall_to_several_nodes() -> None:
    next_in_line = {order[1] for order in placement(5, 3, 32) if order[0] == 0}
    assert len(next_in_line) >= 3


def test_single_node_holds_everything() -> None:
    assert placement(1, 1, 4) == ((0,), (0,), (0,), (0,))
    assert counts(1, 1, 4, 0).replicas == 4


def test_counts_sum_over_nodes() -> None:
    per_node = [counts(5, 3, 32, i) for i in range(5)]
    assert sum(c.replicas for c in per_node) == 96
    assert sum(c.preferred_leader for c in per_node) == 32
