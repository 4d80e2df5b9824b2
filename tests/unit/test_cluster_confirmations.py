"""A led append's confirmation on a cluster node, by callback: decided as the awaited path
decides, called back exactly once (also when decided at hand-over), TIMEOUT at its deadline.
The real watermark board; the store and the replica are the few fields it reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from sierradb.node.append import AppendOutcome, Outcome
from sierradb.node.errors import NodeError
from sierradb.node.replication.confirmations import ClusterConfirmation, Deadlines
from sierradb.node.replication.replica import Role
from sierradb.node.visibility import WatermarkBoard

P, LAST, TERM = 1, 10, 3
OURS = b"o" * 16
OUTCOME = AppendOutcome(LAST, (0,), (1,))


@dataclass(frozen=True)
class FoundEvent:
    partition_sequence: int


@dataclass
class FakeStore:
    mark: int = 0
    at_last: bytes | None = OURS  # the id of the entry at LAST

    def watermark(self, partition: int) -> int:
        return self.mark

    def find_event(self, partition: int, event_id: bytes) -> tuple[FoundEvent, bool] | None:
        return (FoundEvent(LAST), True) if event_id == self.at_last else None


@dataclass
class FakePromise:
    term: int = TERM


@dataclass
class FakeConfig:
    partition: int = P


@dataclass
class FakeReplica:
    role: Role = Role.LEADER
    promise: FakePromise = field(default_factory=FakePromise)
    config: FakeConfig = field(default_factory=FakeConfig)


class Setup:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.replica = FakeReplica()
        self.board = WatermarkBoard(4)
        self.deadlines = Deadlines()
        self.reports: list[Outcome] = []

    def confirmation(self, timeout_s: float = 5.0) -> ClusterConfirmation:
        return ClusterConfirmation(
            self.store, self.board, self.deadlines, self.replica,  # type: ignore[arg-type]
            LAST, OUTCOME, OURS, timeout_s,
        )  # fmt: skip

    def hand_over(self, timeout_s: float = 5.0) -> ClusterConfirmation:
        c = self.confirmation(timeout_s)
        c.when_done(self.reports.append)
        return c

    def move(self, watermark: int) -> None:
        self.store.mark = watermark
        self.board.notify([(P, watermark)])


def codes(reports: list[Outcome]) -> list[str]:
    return [r.code if isinstance(r, NodeError) else "ok" for r in reports]


async def test_it_reports_once_when_the_watermark_passes_while_it_leads() -> None:
    s = Setup()
    s.hand_over()
    s.move(LAST)  # not past it yet
    assert s.reports == []
    s.move(LAST + 1)
    assert s.reports == [OUTCOME]
    s.move(LAST + 5)
    s.deadlines.expire(trio.current_time() + 60)
    assert s.reports == [OUTCOME]
    assert len(s.deadlines) == 0


async def test_a_retry_of_a_confirmed_append_reports_inside_the_hand_over() -> None:
    s = Setup()
    s.store.mark = LAST + 1
    s.hand_over()
    assert s.reports == [OUTCOME]


async def test_after_a_step_down_its_own_entry_still_counts_and_another_does_not() -> None:
    for at_last, expected in ((OURS, "ok"), (b"x" * 16, "QUORUMFAILED")):
        s = Setup()
        s.store.at_last = at_last
        s.hand_over()
        s.replica.role = Role.FOLLOWER
        s.replica.promise.term = TERM + 1
        s.move(LAST + 1)
        assert codes(s.reports) == [expected]


async def test_a_step_down_before_the_watermark_is_quorumfailed_on_the_next_wake() -> None:
    s = Setup()
    s.hand_over()
    s.replica.promise.term = TERM + 1  # re-elected later: not the term that sequenced it
    s.board.wake_partition(P)
    assert codes(s.reports) == ["QUORUMFAILED"]


async def test_undecided_at_its_deadline_it_reports_timeout_once(
    mock_clock: trio.testing.MockClock,
) -> None:
    s = Setup()
    s.hand_over(timeout_s=5.0)
    mock_clock.jump(4.9)
    s.deadlines.expire(trio.current_time())
    assert s.reports == []
    mock_clock.jump(0.2)
    s.deadlines.expire(trio.current_time())
    assert codes(s.reports) == ["TIMEOUT"]
    s.move(LAST + 1)  # the board still holds it: nothing more
    assert codes(s.reports) == ["TIMEOUT"]


async def test_awaited_it_decides_the_same_way() -> None:
    s = Setup()
    c = s.confirmation()
    async with trio.open_nursery() as nursery:
        result: list[AppendOutcome] = []

        async def wait() -> None:
            result.append(await c())

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        s.move(LAST + 1)
    assert result == [OUTCOME]
    s.store.mark = 0
    s.replica.role = Role.FOLLOWER
    with pytest.raises(NodeError, match="stepped down"):
        await s.confirmation()()
