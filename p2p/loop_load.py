"""How busy the event loop is: the share of wall time it did not spend waiting for I/O.

Theory of operation. trio calls an instrument just before and just after each wait for I/O; a
wait with a timeout of zero (work was runnable) is a poll, not idleness, so only waits that
could block count as idle. ``busy()`` reports the busy share of the last completed window
(at least ``WINDOW_S`` long, closed by the first call after it ends), so a caller sees a
recent, smoothed figure for the cost of one clock read. Time the process spent runnable but
not running (other processes on the cores) counts as busy: for deciding whether to trade
latency for less work per message, that is what matters.
"""

from __future__ import annotations

import time

import trio

WINDOW_S = 0.05


class LoopLoad(trio.abc.Instrument):
    def __init__(self) -> None:
        self._idle_s = 0.0
        self._wait_started = 0.0
        self._window_start = time.perf_counter()
        self._busy = 0.0

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            self._wait_started = time.perf_counter()

    def after_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            self._idle_s += time.perf_counter() - self._wait_started

    def busy(self) -> float:
        """The busy share (0..1) of the last window of at least WINDOW_S."""
        now = time.perf_counter()
        elapsed = now - self._window_start
        if elapsed >= WINDOW_S:
            self._busy = max(0.0, 1.0 - self._idle_s / elapsed)
            self._idle_s = 0.0
            self._window_start = now
        return self._busy
