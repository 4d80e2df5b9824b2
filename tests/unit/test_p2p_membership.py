"""Membership as a sans-I/O state machine: liveness, stalls, leaves, duplicates, learners,
formation. Time is a number the test moves."""

from __future__ import annotations

import dataclasses

import pytest

from sierradb.p2p.member_table import MemberTable
from sierradb.p2p.membership import AdmitError, LocalNode, Membership
from sierradb.p2p.messages import PROTOCOL_VERSION, Claim, Gossip, Heartbeat, Hello, Leave

HB, DOWN = 1.0, 6.0


def hb(ping: int = 1, echo: int = 0, held_ms: int = 0, linked: list | None = None) -> Heartbeat:
    return Heartbeat(1, ping, echo, held_ms, linked or [])


def local(index: int = 0, count: int = 3) -> LocalNode:
    address = ("/ip4/1.1.1.1/tcp/1",)
    return LocalNode(f"self{index}", index, count, f"{index:032x}", 1, address, "h:1")


def hello(index: int, member: str | None = None, cluster_id: str | None = None) -> Hello:
    return Hello(
        PROTOCOL_VERSION, "sierradb", cluster_id, member or f"{index:032x}", index, 3, 3, 32, 4,
        1, 1, f"h:{index}", "0.1.0", [f"/ip4/10.0.0.{index}/tcp/7000"], b"\x01" * 16, False,
        7001, b"\x02" * 32,
    )  # fmt: skip


def make(index: int = 0, count: int = 3, table: MemberTable | None = None) -> Membership:
    ids = iter(f"{i:032x}" for i in range(100, 200))
    return Membership(
        local(index, count),
        table or MemberTable(f"self{index}"),
        heartbeat_interval_s=HB,
        down_timeout_s=DOWN,
        now=0.0,
        new_cluster_id=lambda: next(ids),
    )


def state_of(m: Membership, peer: str, now: float) -> str:
    (row,) = [p for p in m.statistics(now).peers if p.peer_id == peer]
    return row.state


def test_a_new_link_is_sent_a_heartbeat_and_the_table() -> None:
    m = make()
    out = m.on_link_up("p1", hello(1), 0.0)
    kinds = [type(msg) for peer, msg in out.sends if peer == "p1"]
    assert Heartbeat in kinds and Gossip in kinds


def test_heartbeats_go_out_every_interval() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)
    now, beats = 0.0, 0
    while now < 10.0:
        now += m.tick_interval_s
        beats += sum(isinstance(msg, Heartbeat) for _, msg in m.tick(now).sends)
    assert 9 <= beats <= 11


def test_a_heartbeat_echoes_the_peers_ping_and_gives_the_round_trip() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)  # our ping 1 goes out at 0.0
    # The peer got ping 1 at 0.002, held it 0.5 s, and echoes it in its heartbeat at 0.504.
    m.on_message("p1", hb(ping=8, echo=1, held_ms=500), 0.504)
    (row,) = m.statistics(0.6).peers
    assert row.rtt_s == pytest.approx(0.004)
    (beat,) = [msg for _, msg in m.tick(1.0).sends if isinstance(msg, Heartbeat)]
    assert (beat.ping, beat.echo, beat.held_ms) == (2, 8, 496)


def test_the_round_trip_is_measured_when_the_echo_is_of_an_earlier_ping() -> None:
    # The peer's heartbeats leave just before our next ping reaches it, so each one echoes the
    # ping before our newest (as under event-loop lag); the round trip is still measured.
    m = make()
    m.on_link_up("p1", hello(1), 0.0)  # ping 1 at 0.0
    m.tick(1.0)  # ping 2 at 1.0
    m.on_message("p1", hb(ping=5, echo=1, held_ms=990), 1.02)
    (row,) = m.statistics(1.1).peers
    assert row.rtt_s == pytest.approx(0.03)
    m.tick(2.0)  # ping 3 at 2.0
    m.on_message("p1", hb(ping=6, echo=2, held_ms=1000), 2.05)
    (row,) = m.statistics(2.1).peers
    assert row.rtt_s == pytest.approx(0.05)


def test_a_silent_peer_is_down_after_the_timeout_and_a_talking_one_stays_up() -> None:
    m = make()
    m.on_link_up("quiet", hello(1), 0.0)
    m.on_link_up("chatty", hello(2), 0.0)
    now = 0.0
    while now < DOWN - 0.5:
        now += m.tick_interval_s
        m.tick(now)
        m.on_message("chatty", hb(ping=1, linked=[]), now)
    assert state_of(m, "quiet", now) == "up"
    now = DOWN + 0.25
    m.tick(now)
    m.on_message("chatty", hb(ping=1, linked=[]), now)
    assert state_of(m, "quiet", now) == "down"
    assert state_of(m, "chatty", now) == "up"
    assert m.statistics(now).nodes_alive == 2


def test_an_event_loop_stall_is_not_held_against_peers() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)
    m.tick(0.25)
    m.tick(30.0)  # this node was stalled (or stopped) for half a minute
    assert state_of(m, "p1", 30.0) == "up"
    # only the time it would have waited anyway counts: two tick intervals here
    assert m.statistics(30.0).peers[0].heartbeat_age_s == pytest.approx(0.5)
    assert m.stalled_s > 29
    now = 30.0
    while now < 30.0 + DOWN + 1:  # still silent after the stall: down one timeout later
        now += m.tick_interval_s
        m.tick(now)
    assert state_of(m, "p1", now) == "down"


def test_a_query_right_after_a_stall_does_not_see_peers_dead() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)
    m.tick(0.25)
    assert state_of(m, "p1", 30.0) == "up"  # asked before the first tick after the stall
    m.tick(30.1)
    assert state_of(m, "p1", 30.2) == "up"
    assert m.stalled_s == pytest.approx(29.5)


def test_a_leave_marks_the_peer_down_at_once() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)
    m.on_message("p1", Leave(1), 0.5)
    (row,) = m.statistics(0.6).peers
    assert (row.state, row.reason) == ("down", "left")
    m.on_link_up("p1", dataclasses.replace(hello(1), incarnation=2), 3.0)
    assert state_of(m, "p1", 3.1) == "up"


def test_a_restarted_peer_shows_its_new_incarnation() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)
    m.on_link_up("p1", dataclasses.replace(hello(1), incarnation=5), 1.0)
    (row,) = m.statistics(1.0).peers
    assert row.incarnation == 5


def test_two_live_peers_claiming_one_index_are_both_refused() -> None:
    m = make()
    m.on_link_up("x", hello(1), 0.0)
    m.on_link_up("y", hello(2), 0.0)
    assert state_of(m, "x", 0.1) == "up"
    # y holds a link to another node that also claims index 1
    m.on_message("y", hb(ping=1, linked=[Claim(1, "x-prime")]), 0.2)
    assert state_of(m, "x", 0.3) == "refused"
    assert state_of(m, "y", 0.3) == "up"
    assert m.conflicts(0.3) == {1: {"x", "x-prime"}}
    # the duplicate goes away: the report stops naming it
    m.on_message("y", hb(ping=2, linked=[]), 1.0)
    assert state_of(m, "x", 1.1) == "up"


def test_a_node_whose_own_index_is_claimed_elsewhere_reports_the_conflict() -> None:
    m = make(index=1)
    m.on_link_up("p0", hello(0), 0.0)
    m.on_message("p0", hb(ping=1, linked=[Claim(1, "impostor")]), 0.1)
    assert m.statistics(0.2).conflict == "node index 1 is also claimed by impostor"


def test_a_new_member_id_at_a_known_index_is_a_learner_until_admitted() -> None:
    m = make()
    out = m.on_link_up("p2", hello(2), 0.0)
    assert out.persist  # first sight of index 2 is recorded durably
    m.on_link_down("p2")
    m.on_link_up("p2-new", hello(2, member="f" * 32), 1.0)
    assert state_of(m, "p2-new", 1.1) == "learner"
    out = m.admit(2, None)
    assert out.persist
    assert state_of(m, "p2-new", 1.2) == "up"
    assert "p2" not in {row.peer_id for row in m.statistics(1.2).peers}


def test_a_node_learns_it_is_a_learner_from_gossip() -> None:
    m = make(index=2)
    assert not m.is_learner()
    m.on_link_up("p0", hello(0), 0.0)
    other = MemberTable("p0")
    other.record_first_seen(2, "e" * 32)  # the cluster knew another member at index 2
    m.on_message("p0", other.gossip(), 0.1)
    assert m.is_learner()
    assert m.statistics(0.2).learner


@pytest.mark.parametrize(
    "index, member, needle",
    [(7, None, "outside 0..2"), (1, None, "no single node is linked at index 1")],
)
def test_admission_errors_are_clear(index: int, member: str | None, needle: str) -> None:
    m = make()
    with pytest.raises(AdmitError, match=needle):
        m.admit(index, member)


def test_admitting_the_admitted_member_is_refused() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)
    with pytest.raises(AdmitError, match="already the admitted member"):
        m.admit(1, None)


def test_node_0_founds_the_cluster_once_a_majority_is_linked_and_unformed() -> None:
    m = make(index=0)
    assert m.table.cluster_id is None
    out = m.on_link_up("p1", hello(1), 0.0)
    assert out.persist
    assert m.table.cluster_id == f"{100:032x}"


def test_other_nodes_never_found_a_cluster() -> None:
    m = make(index=1)
    m.on_link_up("p0", hello(0), 0.0)
    m.on_link_up("p2", hello(2), 0.0)
    assert m.table.cluster_id is None


def test_a_fresh_node_adopts_the_cluster_id_of_a_formed_peer() -> None:
    m = make(index=0)  # even node 0 (a wiped one) adopts rather than founds
    out = m.on_link_up("p1", hello(1, cluster_id="c" * 32), 0.0)
    assert out.persist and m.table.cluster_id == "c" * 32


def test_a_fresh_node_adopts_the_cluster_id_from_gossip() -> None:
    m = make(index=2)
    m.on_link_up("p1", hello(1), 0.0)
    out = m.on_message("p1", Gossip("d" * 32, [], []), 0.1)
    assert out.persist and m.table.cluster_id == "d" * 32


def test_node_0_does_not_found_alone() -> None:
    m = make(index=0, count=5)
    m.on_link_up("p1", hello(1), 0.0)
    assert m.table.cluster_id is None  # 2 of 5 is no majority
    m.on_link_up("p2", hello(2), 0.0)
    assert m.table.cluster_id is not None


def test_the_table_is_resent_when_it_changed() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)
    assert not any(isinstance(msg, Gossip) for _, msg in m.tick(0.25).sends)
    m.on_link_up("p2", hello(2), 0.3)  # the table changed: p1 must hear of p2
    assert any(peer == "p1" and isinstance(msg, Gossip) for peer, msg in m.tick(0.5).sends)


def test_messages_from_an_unlinked_peer_are_ignored() -> None:
    m = make()
    assert m.on_message("stranger", hb(ping=1, linked=[]), 0.0).sends == []


def test_dial_targets_are_the_members_with_their_addresses() -> None:
    m = make()
    m.on_link_up("p1", hello(1), 0.0)
    assert m.dial_targets() == {"p1": ("/ip4/10.0.0.1/tcp/7000",)}
