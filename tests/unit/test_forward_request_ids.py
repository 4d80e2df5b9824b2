"""Forward request ids never repeat across a node's starts: a leader's late answer to a request
of the origin's previous start must not match a request of its new start (the origin would
acknowledge the new append with the old one's position)."""

from __future__ import annotations

from sierradb.node.replication.service import REQUEST_ID_INCARNATION_SHIFT, first_request_id

STEP = 1 << REQUEST_ID_INCARNATION_SHIFT


def test_each_start_begins_above_every_id_the_last_start_can_have_used_soon() -> None:
    for incarnation in (1, 2, 7, 1_000_000):
        for _ in range(200):
            earlier, later = first_request_id(incarnation), first_request_id(incarnation + 1)
            # The earlier start can send 2^39 requests before reaching the later one's first.
            assert later - earlier > STEP // 2
            assert earlier > 0


def test_a_wiped_node_starting_over_at_incarnation_1_picks_another_range() -> None:
    firsts = {first_request_id(1) for _ in range(100)}
    assert len(firsts) == 100  # random offsets below 2^39: repeats are vanishingly rare
    assert all(STEP < f <= STEP + STEP // 2 for f in firsts)
