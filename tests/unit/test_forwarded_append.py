"""The origin's side of a forwarded append (node/replication/forwarded.py): reported once, from
the leader's answer, after the local watermark covers it where this node holds a replica, retried
once on a leader hint, TIMEOUT at each phase's deadline. The real watermark board and deadline
queue; the service is the few methods the confirmation calls."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio

from sierradb.node.append import AppendOutcome, AppendRequest, Outcome
from sierradb.node.errors import NodeError
from sierradb.node.replication.codec import ForwardAppend, ForwardReply
from sierradb.node.replication.confirmations import Deadlines
from sierradb.node.replication.forwarded import ForwardedAppend
from sierradb.node.visibility import WatermarkBoard

P, SELF, LEADER, OTHER = 1, 0, 1, 2
TIMEOUT_S = 5.0
REQUEST = AppendRequest(P, b"k", b"t" * 16, [object(), object()], (False, False), False)  # type: ignore[list-item]
OUTCOME = AppendOutcome(10, (0, 1), (1, 1))  # events at 10 and 11


@dataclass
class FakeStore:
    mark: int = 0

    def watermark(self, partition: int) -> int:
        return self.mark


@dataclass
class FakeService:
    holds_replica: bool = False
    node_index: int = SELF
    write_timeout_s: float = TIMEOUT_S
    store: FakeStore = field(default_factory=FakeStore)
    board: WatermarkBoard = field(default_factory=lambda: WatermarkBoard(4))
    deadlines: Deadlines = field(default_factory=Deadlines)
    sent: list[tuple[int, ForwardAppend]] = field(default_factory=list)
    pending: dict[int, object] = field(default_factory=dict)
    hints: dict[int, int] = field(default_factory=dict)
    unreachable: set[int] = field(default_factory=set)
    _ids: int = 0

    @property
    def replicas(self) -> dict[int, object]:
        return {P: object()} if self.holds_replica else {}

    def next_request_id(self) -> int:
        self._ids += 1
        return self._ids

    def send_request(self, leader: int, message: ForwardAppend, on_reply: object) -> None:
        if leader in self.unreachable:
            raise NodeError("TRYAGAIN", f"node {leader} cannot be reached; retry")
        self.sent.append((leader, message))
        self.pending[message.request_id] = on_reply

    def forget_request(self, request_id: int) -> None:
        self.pending.pop(request_id, None)

    def hint_leader(self, partition: int, node: int) -> None:
        self.hints[partition] = node

    def answer(self, reply: ForwardReply) -> None:
        """Deliver a reply as the request table does (once, to the request it names)."""
        on_reply = self.pending.pop(reply.request_id, None)
        if on_reply is not None:
            on_reply(reply)  # type: ignore[operator]

    def move(self, watermark: int) -> None:
        self.store.mark = watermark
        self.board.notify([(P, watermark)])


def forward(service: FakeService) -> tuple[ForwardedAppend, list[Outcome]]:
    forwarded = ForwardedAppend(service, P, REQUEST, LEADER)  # type: ignore[arg-type]
    reports: list[Outcome] = []
    forwarded.when_done(reports.append)
    return forwarded, reports


def last_request_id(service: FakeService) -> int:
    return service.sent[-1][1].request_id


async def test_the_leaders_outcome_is_reported_at_once_where_no_replica_is_held() -> None:
    service = FakeService()
    _, reports = forward(service)
    assert [(leader, m.request) for leader, m in service.sent] == [(LEADER, REQUEST)]
    assert reports == []
    service.answer(ForwardReply(last_request_id(service), OUTCOME))
    assert reports == [OUTCOME]


async def test_where_a_replica_is_held_it_is_reported_once_the_local_watermark_covers_it() -> None:
    service = FakeService(holds_replica=True)
    _, reports = forward(service)
    service.answer(ForwardReply(last_request_id(service), OUTCOME))
    service.move(11)  # the watermark is one past the last readable: 11 is not yet visible
    assert reports == []
    service.move(12)
    assert reports == [OUTCOME]
    service.move(13)
    service.deadlines.expire(trio.current_time())
    assert reports == [OUTCOME]  # once


async def test_notleader_with_a_hint_is_retried_there_once() -> None:
    service = FakeService()
    _, reports = forward(service)
    service.answer(ForwardReply(last_request_id(service), None, "NOTLEADER", "", OTHER))
    assert [leader for leader, _ in service.sent] == [LEADER, OTHER]
    assert service.hints == {P: OTHER}
    assert reports == []
    service.answer(ForwardReply(last_request_id(service), None, "NOTLEADER", "", LEADER))
    assert len(service.sent) == 2
    assert len(reports) == 1 and isinstance(reports[0], NodeError)
    assert reports[0].code == "TRYAGAIN"


@pytest.mark.parametrize(
    "reply, code",
    [
        (ForwardReply(1, None, "NOTLEADER", "", -1), "TRYAGAIN"),  # no hint
        (ForwardReply(1, None, "NOTLEADER", "", LEADER), "TRYAGAIN"),  # the same node again
        (ForwardReply(1, None, "NOTLEADER", "", SELF), "TRYAGAIN"),  # this node: stale view
        (ForwardReply(1, None, "WRONGVERSION", "expected 3, at 4"), "WRONGVERSION"),
        (ForwardReply(1, None, "INSUFFICIENTREPLICAS", "2/3"), "INSUFFICIENTREPLICAS"),
    ],
)
async def test_an_error_answer_is_reported_with_its_code(reply: ForwardReply, code: str) -> None:
    service = FakeService()
    _, reports = forward(service)
    service.answer(reply)
    assert len(service.sent) == 1
    assert len(reports) == 1 and isinstance(reports[0], NodeError) and reports[0].code == code


async def test_a_retry_to_an_unreachable_hint_reports_its_error() -> None:
    service = FakeService(unreachable={OTHER})
    _, reports = forward(service)
    service.answer(ForwardReply(last_request_id(service), None, "NOTLEADER", "", OTHER))
    assert len(reports) == 1 and isinstance(reports[0], NodeError)
    assert reports[0].code == "TRYAGAIN"


async def test_no_answer_reports_timeout_at_the_deadline_and_forgets_the_request(
    autojump_clock: object,
) -> None:
    service = FakeService()
    _, reports = forward(service)
    request_id = last_request_id(service)
    await trio.sleep(TIMEOUT_S - 0.1)
    service.deadlines.expire(trio.current_time())
    assert reports == [] and request_id in service.pending
    await trio.sleep(0.2)
    service.deadlines.expire(trio.current_time())
    assert len(reports) == 1 and isinstance(reports[0], NodeError)
    assert reports[0].code == "TIMEOUT" and request_id not in service.pending
    service.answer(ForwardReply(request_id, OUTCOME))  # too late: nobody listens
    assert len(reports) == 1


async def test_a_watermark_that_never_covers_it_reports_timeout(autojump_clock: object) -> None:
    service = FakeService(holds_replica=True)
    forwarded, reports = forward(service)
    await trio.sleep(1)  # the visible phase starts its own deadline
    service.answer(ForwardReply(last_request_id(service), OUTCOME))
    await trio.sleep(TIMEOUT_S - 0.1)  # past the reply phase's deadline, not this one's
    service.deadlines.expire(trio.current_time())
    assert reports == []
    await trio.sleep(0.2)
    service.deadlines.expire(trio.current_time())
    assert len(reports) == 1 and isinstance(reports[0], NodeError)
    assert reports[0].code == "TIMEOUT" and forwarded.done


async def test_awaited_it_returns_the_outcome_or_raises_the_error() -> None:
    service = FakeService()
    first = ForwardedAppend(service, P, REQUEST, LEADER)  # type: ignore[arg-type]
    service.answer(ForwardReply(last_request_id(service), OUTCOME))  # done before anyone asks
    assert await first() == OUTCOME
    second = ForwardedAppend(service, P, REQUEST, LEADER)  # type: ignore[arg-type]

    async def answer_later() -> None:
        await trio.sleep(0)
        service.answer(ForwardReply(last_request_id(service), None, "BUSY", "the leader is busy"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_later)
        with pytest.raises(NodeError) as caught:
            await second()
    assert caught.value.code == "BUSY"


async def test_done_before_the_callback_is_given_it_calls_back_inside_when_done() -> None:
    service = FakeService()
    forwarded = ForwardedAppend(service, P, REQUEST, LEADER)  # type: ignore[arg-type]
    service.answer(ForwardReply(last_request_id(service), OUTCOME))
    reports: list[Outcome] = []
    forwarded.when_done(reports.append)
    assert reports == [OUTCOME]
