"""The data channels' lingering: the loop-load gauge it rests on, and the rule itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from sierradb.p2p.channels import BUSY_TO_LINGER, LINGER_S, linger_s
from sierradb.p2p.loop_load import WINDOW_S, LoopLoad


@asynccontextmanager
async def measured_loop() -> AsyncIterator[LoopLoad]:
    """A gauge on this test's loop, with a fresh window: it measures only what the test does."""
    load = LoopLoad()
    trio.lowlevel.add_instrument(load)
    try:
        await trio.sleep(WINDOW_S)
        load.busy()  # closes the window that was open
        yield load
    finally:
        trio.lowlevel.remove_instrument(load)


async def test_a_sleeping_loop_reads_as_idle() -> None:
    async with measured_loop() as load:
        await trio.sleep(0.2)
        assert load.busy() < 0.3


async def test_a_loop_that_only_polls_reads_as_busy() -> None:
    """Waits with a zero timeout (work was runnable) are polls, not idleness."""
    async with measured_loop() as load:
        end = time.perf_counter() + 0.2
        while time.perf_counter() < end:
            await trio.sleep(0)
        assert load.busy() > 0.7


async def test_a_loop_blocked_in_a_task_reads_as_busy() -> None:
    async with measured_loop() as load:
        time.sleep(0.2)  # a task that holds the loop (as a long computation would)
        assert load.busy() > 0.7


async def test_the_reading_is_of_the_last_window_only() -> None:
    async with measured_loop() as load:
        time.sleep(0.1)
        assert load.busy() > 0.7
        await trio.sleep(0.2)
        assert load.busy() < 0.3  # the busy spell is forgotten once its window closed


def test_an_idle_loop_writes_at_once() -> None:
    assert linger_s(now=10.0, last_write=9.999, busy=BUSY_TO_LINGER - 0.01) == 0.0


def test_a_busy_loop_waits_until_a_linger_after_the_last_write() -> None:
    delay = linger_s(now=10.0, last_write=9.995, busy=BUSY_TO_LINGER)
    assert abs(delay - (LINGER_S - 0.005)) < 1e-9


def test_a_busy_loop_writes_at_once_when_the_last_write_is_old() -> None:
    assert linger_s(now=10.0, last_write=10.0 - LINGER_S - 0.001, busy=1.0) == 0.0
