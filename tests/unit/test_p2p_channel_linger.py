"""The data channels' lingering: the loop-load gauge it rests on, and the rule itself."""

from __future__ import annotations

import time

import trio

from sierradb.p2p.channels import BUSY_TO_LINGER, LINGER_S, linger_s
from sierradb.p2p.loop_load import WINDOW_S, LoopLoad


async def _fresh_window(load: LoopLoad) -> None:
    """Close whatever window is open, so the next one measures only what the test does."""
    await trio.sleep(WINDOW_S)
    load.busy()


async def test_a_sleeping_loop_reads_as_idle() -> None:
    load = LoopLoad()
    trio.lowlevel.add_instrument(load)
    try:
        await _fresh_window(load)
        await trio.sleep(0.2)
        assert load.busy() < 0.3
    finally:
        trio.lowlevel.remove_instrument(load)


async def test_a_loop_that_only_polls_reads_as_busy() -> None:
    """Waits with a zero timeout (work was runnable) are polls, not idleness."""
    load = LoopLoad()
    trio.lowlevel.add_instrument(load)
    try:
        await _fresh_window(load)
        end = time.perf_counter() + 0.2
        while time.perf_counter() < end:
            await trio.sleep(0)
        assert load.busy() > 0.7
    finally:
        trio.lowlevel.remove_instrument(load)


async def test_a_loop_blocked_in_a_task_reads_as_busy() -> None:
    load = LoopLoad()
    trio.lowlevel.add_instrument(load)
    try:
        await _fresh_window(load)
        time.sleep(0.2)  # a task that holds the loop (as a long computation would)
        assert load.busy() > 0.7
    finally:
        trio.lowlevel.remove_instrument(load)


async def test_the_reading_is_of_the_last_window_only() -> None:
    load = LoopLoad()
    trio.lowlevel.add_instrument(load)
    try:
        await _fresh_window(load)
        time.sleep(0.1)
        assert load.busy() > 0.7
        await trio.sleep(0.2)
        assert load.busy() < 0.3  # the busy spell is forgotten once its window closed
    finally:
        trio.lowlevel.remove_instrument(load)


def test_an_idle_loop_writes_at_once() -> None:
    assert linger_s(now=10.0, last_write=9.999, busy=BUSY_TO_LINGER - 0.01) == 0.0


def test_a_busy_loop_waits_until_a_linger_after_the_last_write() -> None:
    delay = linger_s(now=10.0, last_write=9.995, busy=BUSY_TO_LINGER)
    assert abs(delay - (LINGER_S - 0.005)) < 1e-9


def test_a_busy_loop_writes_at_once_when_the_last_write_is_old() -> None:
    assert linger_s(now=10.0, last_write=10.0 - LINGER_S - 0.001, busy=1.0) == 0.0
