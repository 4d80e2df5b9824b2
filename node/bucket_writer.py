"""Group commit: one writer thread per bucket drives the storage engine's flush.

Theory of operation. Appends only queue records in memory and ``kick`` the bucket's writer. The
writer thread waits for a kick, optionally lingers for the sync window to gather more, then runs
one ``Store.flush``: one write and one fdatasync for everything queued, from every partition of
the bucket. Appends arriving meanwhile queue up for the next round, so under load each flush
carries a whole batch. A dedicated thread (rather than a thread-pool job per flush) keeps the
per-flush cost to one wake-up each way.

Kicks are coalesced on the trio side (``KickPump``, one task for all buckets): each thread is
woken once per scheduler round, after every request that was ready in that round has queued its
appends, rather than by the first one (a thread woken at once would grab the GIL during the event
loop's next syscall and flush a batch of one). One pump task for every bucket keeps that to one
task switch per round, however many buckets the round's appends touched.

The thread sleeps on a plain lock used as a one-shot signal (``_wake``: held while there is
nothing to do, released to wake the thread, which takes it again): one futex wake-up each way and
none of ``threading.Event``'s Python-level condition bookkeeping. Wake-ups never pile up, because
the trio side wakes the thread only when the state machine below says it is waiting.

A flush has two phases (see ``group_commit``): the thread writes and fdatasyncs, then hands the
result to the trio thread (``run_sync_soon``), where the entries are indexed (so the thread never
holds the bucket lock that the loop's appends need) and the completed transactions reported to
the confirmer (``on_durable``, see ``confirmation``), which decides what becomes visible; the
writer itself never touches a watermark. Nothing is reported before its fdatasync returned.

The round is a small state machine, owned by the trio thread, to keep thread hand-offs at one
each way per flush: *idle* (the thread waits; a kick wakes it and makes the writer *busy*) ->
*busy* (the thread writes and syncs, kicks are absorbed since the round's end will look at the
queue anyway) -> completion on the trio thread: the thread is woken again at once if anything
was queued meanwhile (or the writer is stopping), else the writer is *idle*. Only the trio thread
reads or changes that state, and the thread is woken only when the last completion has run, so
a write never starts before the previous one was indexed, and a queued append is never left
without a flush: either the completion sees it queued, or its kick finds the writer idle.

An exception from the engine (a broken invariant) is handed to the trio thread and stops the node
(fail-stop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from sierradb.storage import Store, Ticket
from sierradb.storage.bucket import Written

from .histogram import LATENCY_BUCKETS_S, SIZE_BUCKETS, Histogram, HistogramSnapshot

log = logging.getLogger("sierradb.node")


@dataclass(frozen=True, slots=True)
class BucketWriterStatistics:
    bucket_id: int
    flushes: int
    transactions: int  # group-committed (durable)
    events: int  # group-committed (durable; confirmed as soon as durable on a single node)
    batch_transactions: HistogramSnapshot  # transactions per group commit
    sync_seconds: HistogramSnapshot  # one group commit's write + fdatasync


class KickPump:
    """Passes the appends' kicks on to the writers once per trio scheduling round.

    Every task that became runnable together (all the requests read from the sockets in one
    round) queues its appends before this task runs again, so each thread finds a whole batch
    instead of flushing after the first append.
    """

    def __init__(self) -> None:
        self._kicked = trio.Event()
        self._writers: list[BucketWriter] = []  # kicked since the last round, each once

    def kick(self, writer: BucketWriter) -> None:
        if not writer.kick_pending:
            writer.kick_pending = True
            self._writers.append(writer)
            self._kicked.set()

    async def run(self) -> None:
        while True:
            await self._kicked.wait()
            self._kicked = trio.Event()
            writers, self._writers = self._writers, []
            for writer in writers:
                writer.kick_pending = False
                writer.wake_if_idle()


class BucketWriter:
    def __init__(
        self,
        store: Store,
        bucket_id: int,
        window_s: float,
        on_durable: Callable[[list[Ticket]], None],
        on_crash: Callable[[BaseException], None],
        pump: KickPump,
    ) -> None:
        self.store = store
        self.bucket_id = bucket_id
        self.window_s = window_s
        self.on_durable = on_durable
        self.on_crash = on_crash
        self.pump = pump
        self.kick_pending = False  # owned by the pump
        self._wake = threading.Lock()  # held: nothing to do; released: the thread runs a round
        self._wake.acquire()
        self._busy = False  # trio thread only: the thread was woken, its completion not run yet
        self._crashed = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.flushes = 0
        self.transactions = 0
        self.events = 0
        self._batch_transactions = Histogram(SIZE_BUCKETS)
        self._sync_seconds = Histogram(LATENCY_BUCKETS_S)  # observed by the writer thread

    def start(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(
            target=self._run, name=f"sierradb-writer-{self.bucket_id}", daemon=True
        )
        self._thread.start()

    def statistics(self) -> BucketWriterStatistics:
        return BucketWriterStatistics(
            self.bucket_id,
            self.flushes,
            self.transactions,
            self.events,
            self._batch_transactions.snapshot(),
            self._sync_seconds.snapshot(),
        )

    def kick(self) -> None:
        """Called by each append (trio thread): the pump passes it on once per scheduler round."""
        self.pump.kick(self)

    def wake_if_idle(self) -> None:
        if not self._busy:
            self._busy = True
            self._wake.release()

    def stop(self) -> None:
        """Blocking (call it from a worker thread): flush what is queued and end the thread."""
        self._stopping = True
        if self._thread is not None:
            assert self._token is not None
            self._token.run_sync_soon(self.wake_if_idle)  # else the running round's end wakes it
            self._thread.join()

    def _run(self) -> None:
        token = self._token
        assert token is not None
        while True:
            self._wake.acquire()
            if self._crashed:
                return
            if self.window_s and not self._stopping:
                time.sleep(self.window_s)
            started = time.perf_counter()
            try:
                written = self.store.flush_write(self.bucket_id)
            except BaseException as e:  # a broken invariant: stop the node
                token.run_sync_soon(self.on_crash, e)
                return
            if written.batches:
                self._sync_seconds.observe(time.perf_counter() - started)
            elif self._stopping and not written.completed:
                return  # stopping, and the last round's queue was empty
            # Phase 2 runs on the event loop; the next write waits for its wake-up from there.
            token.run_sync_soon(self._complete, written)

    def _complete(self, written: Written) -> None:
        """On the trio thread: index what was written, report it, start the next round."""
        wrote = bool(written.batches or written.completed)
        try:
            completed = self.store.flush_apply(self.bucket_id, written)
        except BaseException as e:  # a broken invariant: stop the node
            self._crashed = True
            self._wake.release()  # the thread sees _crashed and ends
            self.on_crash(e)
            return
        if wrote:
            self.flushes += 1
            self.transactions += len(completed)
            self._batch_transactions.observe(len(completed))
            self.events += sum(
                t.last_sequence - t.first_sequence + 1 for t in completed if t.error is None
            )
            self.on_durable(completed)
        if self._stopping or self.store.has_queued(self.bucket_id):
            self._wake.release()  # still busy: the next round starts at once
        else:
            self._busy = False
