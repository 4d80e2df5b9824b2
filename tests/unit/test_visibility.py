"""The watermark board's waiters: blocking reads park on several partitions and leave nothing
behind when they end (node/visibility.py)."""

from __future__ import annotations

import trio
import trio.testing

from sierradb.node.visibility import WatermarkBoard


async def test_wait_past_any_wakes_on_a_move_of_any_listed_partition():
    board = WatermarkBoard(4)
    woken = trio.Event()

    async def waiter() -> None:
        await board.wait_past_any([(1, 5), (3, 0)])
        woken.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        board.notify([(1, 5)])  # sequence 5 not visible yet: no wake
        await trio.testing.wait_all_tasks_blocked()
        assert not woken.is_set()
        board.notify([(3, 1)])
        await woken.wait()
    assert [board.waiting(p) for p in range(4)] == [0, 0, 0, 0]


async def test_a_cancelled_wait_leaves_no_entry_behind():
    board = WatermarkBoard(2)
    with trio.move_on_after(0.01):
        await board.wait_past_any([(0, 0), (1, 0)])
    assert board.waiting(0) == board.waiting(1) == 0


async def test_other_waiters_keep_their_entries_and_their_order():
    board = WatermarkBoard(1)
    order: list[str] = []

    async def waiter(name: str, sequence: int) -> None:
        await board.wait_past_any([(0, sequence)])
        order.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "late", 9)
        nursery.start_soon(waiter, "early", 2)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.01):
            await board.wait_past_any([(0, 1)])  # cancelled in the middle of the heap
        assert board.waiting(0) == 2
        board.notify([(0, 3)])
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["early"]
        board.notify([(0, 10)])
    assert order == ["early", "late"]
    assert board.waiting(0) == 0
