"""The read threads: storage reads run here, off the event loop (preads, mmap page faults).

Theory of operation. A fixed set of daemon threads takes jobs from one queue; a job is a function,
its arguments, the waiting trio task and its loop's token. The task parks
(``wait_task_rescheduled``) until its thread hands the outcome back through the token, so one
read costs one queue put, one thread wake-up and one loop wake-up: none of the per-call work of
``trio.to_thread.run_sync`` (a capacity limiter, a context copy, naming the thread per job).
The number of threads bounds how many reads run at once, as the limiter did. A waiting read is
not cancellable (like ``to_thread.run_sync`` without abandon): its thread finishes it and the
result is dropped by nobody, so no read outlives its caller's guarantees. ``close`` stops the
threads once the queued jobs are done.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")

# The most events a read (ESCAN, EPSCAN, EPREAD, a partition subscription's delivery) serves
# on the event loop instead of here, when it lies in the active segment (in memory; a read that
# needs a sealed segment always comes here, see Database.read_stream_raw): ~5 ms of work at
# most, as a Redis XREAD of that size holds its one thread. A consumer following the live end
# reads what was just written, and handing that to a thread made the two contend for the GIL.
# Measured with bench/consumer_bench.py (EPREAD over 32 partitions, 10k appends/s): the node's
# CPU per delivered event 5-12 us instead of 11-17, EPREAD delay p50 79-266 ms (175-260 before).
INLINE_READ_EVENTS = 1000

_Job = tuple[Callable[..., Any], tuple[object, ...], Any, trio.lowlevel.TrioToken]


class ReadPool:
    def __init__(self, threads: int, name: str = "sierradb-read") -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._count = threads
        self._name = name
        self._threads: list[threading.Thread] = []
        self._started = False
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()  # as to_thread: a cancelled caller
        if not self._started:
            self._start()
        task = trio.lowlevel.current_task()
        self._jobs.put((fn, args, task, trio.lowlevel.current_trio_token()))

        def abort(_: Any) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED  # the read finishes; its result is delivered

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _start(self) -> None:
        with self._lock:
            if not self._started:
                self._threads = [
                    threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
                    for i in range(self._count)
                ]
                for t in self._threads:
                    t.start()
                self._started = True

    def _work(self) -> None:
        jobs = self._jobs
        reschedule = trio.lowlevel.reschedule
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, task, token = job
            result = outcome.capture(fn, *args)
            try:
                token.run_sync_soon(reschedule, task, result)
            except trio.RunFinishedError:
                pass  # the loop is gone, and the task with it

    def close(self) -> None:
        """Stop the threads after the jobs already queued (blocking)."""
        if not self._started:
            return
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()
        self._threads = []
        self._started = False
