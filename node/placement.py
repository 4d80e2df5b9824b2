"""Placement: which nodes hold each partition, and in which order they lead it.

A pure function of (node count, replication factor, partition count), so every node derives the
same placement, before and after any restart, with nothing exchanged but those three numbers
(checked in every peer handshake, with ``PLACEMENT_VERSION``; changing this function changes
where data lives, so it must bump the version).

Partitions are laid out in rounds of N (the node count). In round r, partition p = r*N + i is
preferred-led by node i, and its followers sit at distinct offsets 1 + ((r + k) mod (N - 1))
from i, for k < RF - 1: in every full round each node leads once and holds exactly RF replicas,
and because the offsets rotate from round to round, the partitions a failed leader leaves behind
fall to different nodes next in line rather than all to its neighbour. The last, partial round
(P mod N partitions) picks followers greedily by the fewest replicas given in that round, so no
node's count of preferred leaderships or of replicas differs from another's by more than one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

PLACEMENT_VERSION = 1


@dataclass(frozen=True, slots=True)
class PlacementCounts:
    """How many partitions one node holds, and how many of those it preferably leads."""

    replicas: int
    preferred_leader: int


@cache
def placement(
    node_count: int, replication_factor: int, partitions: int
) -> tuple[tuple[int, ...], ...]:
    """Per partition, its replica node indexes, preferred leader first, then the failover order."""
    n, rf = node_count, replication_factor
    assert 1 <= rf <= n, (rf, n)
    rounds, remainder = divmod(partitions, n)
    order: list[tuple[int, ...]] = []
    for p in range(rounds * n):
        r, leader = divmod(p, n)
        followers = [(leader + 1 + (r + k) % (n - 1)) % n for k in range(rf - 1)]
        order.append((leader, *followers))
    given = [1 if i < remainder else 0 for i in range(n)]
    for leader in range(remainder):
        candidates = sorted(
            (x for x in range(n) if x != leader), key=lambda x: (given[x], (x - leader) % n)
        )[: rf - 1]
        candidates.sort(key=lambda x: (x - leader) % n)
        for x in candidates:
            given[x] += 1
        order.append((leader, *candidates))
    return tuple(order)


def counts(
    node_count: int, replication_factor: int, partitions: int, node_index: int
) -> PlacementCounts:
    layout = placement(node_count, replication_factor, partitions)
    return PlacementCounts(
        replicas=sum(node_index in replicas for replicas in layout),
        preferred_leader=sum(replicas[0] == node_index for replicas in layout),
    )
