"""Directed replication scenarios (cluster-safety.md S1, S2, S3, S5, L1) on a hand-driven
cluster of three replicas A=0, B=1, C=2 over the real storage engine."""

from __future__ import annotations

from lab import Lab, Sent

from sierradb.node.replication.messages import (
    Append,
    AppendReply,
    FetchReply,
    FetchRequest,
    Handover,
    PromiseReply,
    PromiseRequest,
)
from sierradb.node.replication.replica import Role

A, B, C = 0, 1, 2


def elect(lab: Lab, node: int, *voters: int, promises_only: bool = False) -> None:
    """`node` campaigns until it leads (a refusal teaches it the higher term to ask for);
    with `promises_only`, nothing but the election's messages arrive."""
    group = lab.between(node, *voters)
    election = (PromiseRequest, PromiseReply, FetchRequest, FetchReply)

    def keep(sent: Sent) -> bool:
        return group(sent) and (not promises_only or isinstance(sent.message, election))

    for _ in range(3):
        lab.now += 10  # past every election timeout: the voters no longer hear an old leader
        lab.nodes[node].campaign()
        lab.deliver(keep)
        if lab.nodes[node].role is Role.LEADER:
            return
    raise AssertionError(f"node {node} was not elected")


def committed(lab: Lab, leader: int, payload: bytes, *followers: int) -> None:
    lab.nodes[leader].append(payload)
    lab.nodes[leader].replica.replicate(lab.now)
    lab.nodes[leader].collect()
    lab.deliver(lab.between(leader, *followers))


def test_a_leader_confirms_with_a_majority_and_followers_learn_the_watermark() -> None:
    lab = Lab()
    elect(lab, A, B, C)
    committed(lab, A, b"x", B, C)
    assert lab.nodes[A].visible() == [b"x"]
    lab.tick(0.2)  # a heartbeat carries the watermark
    lab.deliver()
    assert lab.nodes[B].visible() == [b"x"] == lab.nodes[C].visible()


def test_nothing_is_confirmed_without_a_majority() -> None:
    lab = Lab()
    elect(lab, A, B, C)
    lab.nodes[A].append(b"x")
    lab.nodes[A].replica.replicate(lab.now)
    lab.nodes[A].collect()
    lab.drop()  # the frames are lost
    lab.nodes[A].flush()
    assert lab.nodes[A].visible() == []


def test_figure_8_an_old_term_copy_on_a_majority_never_confirms(  # S1
) -> None:
    lab = Lab()
    elect(lab, A, B, C)
    committed(lab, A, b"base", B, C)
    # Term 1's leader A writes X locally only, then crashes.
    lab.nodes[A].append(b"X")
    lab.nodes[A].flush()
    lab.drop()
    lab.nodes[A].crash()
    # B leads term 2 with C's promise (nothing else reaches C) and writes Y locally only,
    # then crashes.
    elect(lab, B, C, promises_only=True)
    lab.nodes[B].append(b"Y")
    lab.nodes[B].flush()
    lab.drop()
    lab.nodes[B].crash()
    # A returns and leads term 3 with C: its log (1, X) beats C's. X reaches C.
    lab.nodes[A].start()
    elect(lab, A, C)
    lab.deliver(lab.between(A, C))
    lab.tick(0.2)
    lab.deliver(lab.between(A, C))
    assert lab.nodes[A].visible() == [b"base", b"X"]
    # X was rewritten in term 3 on C before it counted: C's copy carries term 3.
    assert lab.nodes[C].replica.last()[0] == lab.nodes[A].replica.promise.term
    # A crashes; B returns and campaigns with C: C's (3, X) beats B's (2, Y).
    lab.nodes[A].crash()
    lab.nodes[B].start()
    lab.now += 10
    lab.nodes[B].campaign()
    lab.deliver(lab.between(B, C))
    if lab.nodes[B].role is Role.LEADER:
        lab.tick(0.2)
        lab.deliver(lab.between(B, C))
        assert lab.nodes[B].visible()[:2] == [b"base", b"X"], "a confirmed entry was lost"
    else:
        # C adopted with B, or refused: either way X stands on C.
        assert lab.nodes[C].visible()[:2] == [b"base", b"X"]


def test_conflicts_are_decided_by_sequence_and_term_not_by_event_id() -> None:  # S2
    lab = Lab()
    elect(lab, A, B, C)
    committed(lab, A, b"base", B, C)
    # A writes x1..x3, only x1 reaches B; A crashes with x2, x3 alone.
    for payload in (b"x1", b"x2", b"x3"):
        lab.nodes[A].append(payload)
    lab.nodes[A].replica.replicate(lab.now)
    lab.nodes[A].flush()
    frames = [s for s in lab.inbox if s.dest == B and isinstance(s.message, Append)]
    lab.drop()
    first = frames[0].message
    trimmed = Append(first.partition, first.term, first.leader, first.incarnation, first.prev,
                     first.entries[:1], first.watermark)  # fmt: skip
    lab.nodes[B].replica.step(A, trimmed, lab.now)
    lab.nodes[B].flush()
    lab.drop()
    lab.nodes[A].crash()
    # C leads with B, confirms new entries z.
    elect(lab, C, B)
    lab.tick(0.2)
    lab.deliver(lab.between(B, C))
    committed(lab, C, b"z", B)
    confirmed = lab.nodes[C].visible()
    assert confirmed[-1] == b"z"
    # A returns: its stale x2, x3 must not survive next to the confirmed log.
    lab.nodes[A].start()
    lab.tick(0.2)
    lab.deliver()
    lab.tick(0.2)
    lab.deliver()
    assert lab.nodes[A].visible() == confirmed
    assert b"x2" not in lab.nodes[A].visible()


def test_a_promise_is_durable_and_bound_to_its_candidate() -> None:  # S3
    lab = Lab()
    elect(lab, A, B, C)
    term = lab.nodes[A].replica.promise.term
    # B and C both campaign for the next term; C grants B, then a repeat of C's own request
    # is refused by B and by A's... each replica promises one candidate per term.
    lab.nodes[A].crash()
    lab.nodes[B].campaign()
    lab.nodes[C].campaign()
    lab.deliver(lab.between(B, C))
    leaders = [n for n in (B, C) if lab.nodes[n].role is Role.LEADER]
    assert len(leaders) <= 1
    # A promise survives a crash: the replica comes back promised.
    for n in (B, C):
        promised = lab.nodes[n].replica.promise
        assert promised.term > term
        lab.nodes[n].crash()
        lab.nodes[n].start()
        assert lab.nodes[n].replica.promise == promised


def test_an_acknowledgement_waits_for_durability() -> None:  # S3b
    lab = Lab()
    elect(lab, A, B, C)
    lab.nodes[A].append(b"x")
    lab.nodes[A].replica.replicate(lab.now)
    lab.nodes[A].collect()
    frames = [s for s in lab.inbox if s.dest == B]
    lab.drop()
    for s in frames:
        lab.nodes[B].replica.step(A, s.message, lab.now)
    lab.nodes[B].collect()
    assert not any(
        isinstance(s.message, AppendReply) and s.message.ok and s.message.match >= 0
        for s in lab.inbox
    ), "acknowledged before the entry was durable"
    lab.nodes[B].flush()
    assert any(isinstance(s.message, AppendReply) and s.message.match >= 0 for s in lab.inbox)


def test_a_follower_exposes_only_what_it_verified_in_the_current_term() -> None:  # S5
    lab = Lab()
    elect(lab, A, B, C)
    committed(lab, A, b"base", B, C)
    lab.tick(0.2)
    lab.deliver()
    # C leads term 2 alone-ish: writes c1..c2 locally only, crashes.
    lab.nodes[A].crash()
    elect(lab, C, B)
    lab.nodes[C].append(b"c1")
    lab.nodes[C].append(b"c2")
    lab.nodes[C].flush()
    lab.drop()
    lab.nodes[C].crash()
    # A and B: B leads term 3 and confirms y1..y3.
    lab.nodes[A].start()
    elect(lab, B, A)
    for payload in (b"y1", b"y2", b"y3"):
        committed(lab, B, payload, A)
    # C restarts; the first thing it hears is a heartbeat with a high watermark.
    lab.nodes[C].start()
    lab.tick(0.2)
    heartbeats = [s for s in lab.inbox if s.dest == C and isinstance(s.message, Append)]
    assert heartbeats
    beat = heartbeats[0].message
    lab.drop()
    empty = Append(beat.partition, beat.term, beat.leader, beat.incarnation,
                   (beat.prev[0], min(beat.prev[1], 1)), (), beat.watermark)  # fmt: skip
    lab.nodes[C].replica.step(B, empty, lab.now)
    lab.nodes[C].flush()
    assert b"c1" not in lab.nodes[C].visible(), "exposed an entry that is about to vanish"
    lab.deliver()
    lab.tick(0.2)
    lab.deliver()
    assert lab.nodes[C].visible() == lab.nodes[B].visible()


def test_a_candidate_whose_watermark_moves_during_its_campaign_keeps_what_it_confirmed() -> None:
    """B learns that x is confirmed before its own copy of x is durable, then campaigns: its
    own vote reports the old watermark, and x becomes durable (so visible) before the votes
    are counted. Taking office must not discard from below that watermark (found by the
    simulator, seed 592, once acknowledgements were coalesced)."""
    lab = Lab()
    elect(lab, A, B, C)
    lab.nodes[A].append(b"x")
    lab.nodes[A].replica.replicate(lab.now)
    lab.nodes[A].collect()
    lab.deliver(lab.between(A, C))  # confirmed by A and C; the frame to B is lost
    assert lab.nodes[A].visible() == [b"x"]
    lab.tick(0.4)  # unanswered for long: A resends x to B, with the watermark
    frames = [s for s in lab.inbox if s.dest == B and isinstance(s.message, Append)]
    assert frames and frames[0].message.entries
    lab.drop()
    for s in frames:
        lab.nodes[B].replica.step(A, s.message, lab.now)  # written, not yet durable
    assert lab.nodes[B].visible() == []
    lab.nodes[A].crash()
    lab.drop()
    elect(lab, B, C)
    assert lab.nodes[B].visible() == [b"x"]
    committed(lab, B, b"y", C)
    assert lab.nodes[B].visible() == [b"x", b"y"]


def test_a_replica_hearing_its_leader_refuses_to_promise() -> None:  # L1
    lab = Lab()
    elect(lab, A, B, C)
    lab.tick(0.05)
    lab.deliver()
    lab.nodes[C].campaign()
    replies = []
    lab.deliver(
        lambda s: (
            (replies.append(s.message) or True) if isinstance(s.message, PromiseReply) else True
        )
    )
    assert lab.nodes[A].role is Role.LEADER
    assert lab.nodes[C].role is not Role.LEADER
    assert any(isinstance(r, PromiseReply) and not r.granted for r in replies)


def test_a_learner_never_grants_a_promise() -> None:
    lab = Lab()
    lab.nodes[B].voter = False
    lab.nodes[C].voter = False
    lab.nodes[A].campaign()
    lab.deliver()
    assert lab.nodes[A].role is not Role.LEADER


def _leader_lost_while_the_preferred_replica_lags(caught_up_entries: int) -> tuple[Lab, list]:
    """A (preferred) is down while B leads and C follows; B commits five entries. A comes back
    and hears B's heartbeats but none of its entries (it is still catching up), then B
    crashes: A's election timeout fires first, as it is first in order."""
    lab = Lab(caught_up_entries=caught_up_entries)
    lab.nodes[A].crash()
    elect(lab, B, C)
    for payload in (b"1", b"2", b"3", b"4", b"5"):
        committed(lab, B, payload, C)
    lab.nodes[A].start()

    def heartbeats_only_reach_a(s: Sent) -> bool:
        if s.dest == A:
            return isinstance(s.message, Append) and not s.message.entries
        return s.source != A

    for _ in range(10):
        lab.tick(0.1)
        lab.deliver(heartbeats_only_reach_a)
    lab.nodes[B].crash()
    seen: list = []
    for _ in range(40):
        lab.tick(0.1)
        lab.deliver(lambda s: seen.append(s.message) or True)
    return lab, seen


def test_a_replica_far_behind_hands_its_campaign_to_the_one_ahead() -> None:  # L1 d
    lab, seen = _leader_lost_while_the_preferred_replica_lags(caught_up_entries=2)
    assert any(isinstance(m, Handover) for m in seen)
    assert not any(isinstance(m, FetchRequest) for m in seen), "fetched the gap instead"
    first_leader = next(m.leader for m in seen if isinstance(m, Append))
    assert first_leader == C
    assert lab.nodes[A].visible() == [b"1", b"2", b"3", b"4", b"5"] == lab.nodes[C].visible()


def test_a_replica_close_behind_campaigns_and_fetches() -> None:
    lab, seen = _leader_lost_while_the_preferred_replica_lags(caught_up_entries=1024)
    assert any(isinstance(m, FetchRequest) for m in seen)
    assert not any(isinstance(m, Handover) for m in seen)
    assert lab.nodes[A].role is Role.LEADER
    assert lab.nodes[A].visible() == [b"1", b"2", b"3", b"4", b"5"] == lab.nodes[C].visible()
