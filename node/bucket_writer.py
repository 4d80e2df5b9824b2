"""Group commit: one writer thread drives the storage engine's flushes of every bucket.

Theory of operation. Appends only queue records in memory and ``kick`` their bucket's writer. The
writer thread waits for a round, optionally lingers for the sync window to gather more, then for
each bucket in the round runs the engine's write phase: one write and one fdatasync for
everything queued in that bucket, from every partition of it. Appends arriving meanwhile queue
up for the next round, so under load each flush carries a whole batch.

One thread for all buckets, not one per bucket: with a thread per bucket, a scheduler round's
appends spread over every bucket, and each bucket paid its own wake-up, completion and hand-off
back to the loop for a batch of a few appends. A single node under 50 one-at-a-time clients made
~6x more group commits with 4 buckets than with 1 and ran at 0.55-0.6x the speed, with or
without fdatasync (BENCHMARKS, stop 22). One thread makes that one wake-up and one completion
per round, whatever the bucket count; the buckets' syncs run one after another in it.

Kicks are coalesced on the trio side (``KickPump``, one task for all buckets): the thread is
woken once per scheduler round, after every request that was ready in that round has queued its
appends, rather than by the first one (a thread woken at once would grab the GIL during the event
loop's next syscall and flush a batch of one).

The thread sleeps on a plain lock used as a one-shot signal (``_wake``: held while there is
nothing to do, released to wake the thread, which takes it again): one futex wake-up each way and
none of ``threading.Event``'s Python-level condition bookkeeping. Wake-ups never pile up, because
the trio side wakes the thread only when the state machine below says it is waiting.

A flush has two phases (see ``group_commit``): the thread writes and fdatasyncs, then hands the
round's results to the trio thread (``run_sync_soon``), where the entries are indexed (so the
thread never holds a bucket lock that the loop's appends need) and the completed transactions
reported to the confirmer (``on_durable``, see ``confirmation``), which decides what becomes
visible; the writer itself never touches a watermark. Nothing is reported before its fdatasync
returned.

The round is a small state machine, owned by the trio thread, to keep thread hand-offs at one
each way per round: *idle* (the thread waits; a kick hands it a round of the kicked buckets and
makes it *busy*) -> *busy* (the thread writes and syncs; kicks only mark their bucket for the next
round) -> completion on the trio thread: a bucket with anything queued meanwhile joins the next
round, which starts at once if it has any bucket (or the writer is stopping: every bucket gets a
last flush), else the thread is *idle*. Only the trio thread reads or changes that state, and
the thread is woken only when the last completion has run, so a bucket's write never starts
before its previous one was indexed, and a queued append is never left without a flush: either
the completion sees it queued, or its kick finds the thread idle.

Checkpoints and sealed segments' index files are not the flushes' work here: the writer
thread's flushes skip them, and after a round's completion the buckets of the round that have
such work due are left to ``checkpointer`` (a thread of its own), so that no round waits for it.

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

from .checkpointer import Checkpointer
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
            writers[0].thread.request(writers)  # one thread behind every bucket


class BucketWriter:
    """One bucket's side of group commit: its kicks and its numbers; its flushes run on the
    shared ``WriterThread``."""

    def __init__(
        self,
        store: Store,
        bucket_id: int,
        on_durable: Callable[[list[Ticket]], None],
        pump: KickPump,
        thread: WriterThread,
    ) -> None:
        self.store = store
        self.bucket_id = bucket_id
        self.on_durable = on_durable
        self.pump = pump
        self.thread = thread
        self.kick_pending = False  # owned by the pump
        self.in_next_round = False  # owned by the thread object, on the trio side
        self.flushes = 0
        self.transactions = 0
        self.events = 0
        self._batch_transactions = Histogram(SIZE_BUCKETS)
        self.sync_seconds = Histogram(LATENCY_BUCKETS_S)  # observed by the writer thread
        thread.writers.append(self)

    def statistics(self) -> BucketWriterStatistics:
        return BucketWriterStatistics(
            self.bucket_id,
            self.flushes,
            self.transactions,
            self.events,
            self._batch_transactions.snapshot(),
            self.sync_seconds.snapshot(),
        )

    def kick(self) -> None:
        """Called by each append (trio thread): the pump passes it on once per scheduler round."""
        self.pump.kick(self)

    def complete(self, written: Written) -> None:
        """On the trio thread: index what was written and report it (raises if the engine
        broke an invariant)."""
        wrote = bool(written.batches or written.completed)
        completed = self.store.flush_apply(self.bucket_id, written)
        if wrote:
            self.flushes += 1
            self.transactions += len(completed)
            self._batch_transactions.observe(len(completed))
            self.events += sum(
                t.last_sequence - t.first_sequence + 1 for t in completed if t.error is None
            )
            self.on_durable(completed)


class WriterThread:
    """The thread that runs every bucket's flushes, a round at a time (module docstring)."""

    def __init__(
        self, store: Store, window_s: float, on_crash: Callable[[BaseException], None]
    ) -> None:
        self.store = store
        self.window_s = window_s
        self.on_crash = on_crash
        self.writers: list[BucketWriter] = []  # every bucket's, in bucket order
        self._wake = threading.Lock()  # held: nothing to do; released: the thread runs a round
        self._wake.acquire()
        self._busy = False  # trio thread only: a round was handed over, its completion not run
        self._next: list[BucketWriter] = []  # trio thread only: the buckets of the next round
        self._round: list[BucketWriter] = []  # set by the trio thread before each wake-up
        self._crashed = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.checkpointer = Checkpointer(store, on_crash)

    def start(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._run, name="sierradb-writer", daemon=True)
        self._thread.start()
        self.checkpointer.start()

    def request(self, writers: list[BucketWriter]) -> None:
        """On the trio thread: flush these buckets in the next round (now, if the thread is
        idle)."""
        self._add_to_next(writers)
        if not self._busy:
            self._start_round()

    def _add_to_next(self, writers: list[BucketWriter]) -> None:
        for writer in writers:
            if not writer.in_next_round:
                writer.in_next_round = True
                self._next.append(writer)

    def stop(self) -> None:
        """Blocking (call it from a worker thread): flush what is queued and end the thread,
        and the checkpoints' (the store's close writes the last ones)."""
        self._stopping = True
        if self._thread is not None:
            assert self._token is not None
            self._token.run_sync_soon(self._wake_to_stop)  # else the running round's end does
            self._thread.join()
        self.checkpointer.stop()

    def _wake_to_stop(self) -> None:
        if not self._busy:
            self._start_round()

    def _start_round(self) -> None:
        round_ = self.writers if self._stopping else self._next
        for writer in self._next:
            writer.in_next_round = False
        self._next = []
        self._round = list(round_)
        self._busy = True
        self._wake.release()

    def _run(self) -> None:
        token = self._token
        assert token is not None
        while True:
            self._wake.acquire()
            if self._crashed:
                return
            if self.window_s and not self._stopping:
                time.sleep(self.window_s)
            results: list[tuple[BucketWriter, Written]] = []
            for writer in self._round:
                started = time.perf_counter()
                try:
                    written = self.store.flush_write(writer.bucket_id, checkpoint=False)
                except BaseException as e:  # a broken invariant: stop the node
                    token.run_sync_soon(self.on_crash, e)
                    return
                if written.batches:
                    writer.sync_seconds.observe(time.perf_counter() - started)
                results.append((writer, written))
            if self._stopping and not any(w.batches or w.completed for _, w in results):
                return  # stopping, and the last round found every queue empty
            # Phase 2 runs on the event loop; the next round waits for its wake-up from there.
            token.run_sync_soon(self._complete, results)

    def _complete(self, results: list[tuple[BucketWriter, Written]]) -> None:
        """On the trio thread: index and report the round, then start the next one or idle."""
        try:
            for writer, written in results:
                writer.complete(written)
        except BaseException as e:  # a broken invariant: stop the node
            self._crashed = True
            self._wake.release()  # the thread sees _crashed and ends
            self.on_crash(e)
            return
        if any(self.store.checkpoint_due(w.bucket_id) for w, _ in results):
            self.checkpointer.poke()
        self._add_to_next([w for w, _ in results if self.store.has_queued(w.bucket_id)])
        if self._next or self._stopping:
            self._start_round()
        else:
            self._busy = False
