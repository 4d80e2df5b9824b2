"""Index work off the commit path: one thread writes the buckets' due checkpoints, and the index
files of the segments they seal.

Theory of operation. A checkpoint writes a bucket's whole active index (``group_commit``): tens
of milliseconds, ~100 ms on a busy node; a full segment's three index files take about a second.
Written by the flushes themselves, they held the one writer thread (``bucket_writer``), so no
bucket committed meanwhile: the worst latencies of a long run. The writer thread's flushes now
skip both (a rollover only starts the next segment; the sealed one is read from its last active
index until its files exist), and after each round's completion the trio thread ``poke``-s this
thread if a bucket of the round has such work due; the thread then does all of it, one bucket
after another, while the rounds go on. The storage engine keeps this consistent with concurrent
flushes: a checkpoint's snapshot is taken under the bucket's lock, and checkpoints and rollovers
exclude each other (``checkpoint_if_due``). A failed write is logged by the engine and stays
due, for the next poke.

The thread sleeps on a plain lock used as a one-shot signal, as the writer thread does (held:
nothing to do; released: run a pass). A poke while a pass runs makes one more pass, so a bucket
that came due meanwhile is not left waiting for the next poke.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import trio

from sierradb.storage import Store

from .histogram import LATENCY_BUCKETS_S, Histogram


class Checkpointer:
    def __init__(self, store: Store, on_crash: Callable[[BaseException], None]) -> None:
        self.store = store
        self.on_crash = on_crash
        self.written = 0  # checkpoints written (/metrics)
        self.seconds = Histogram(LATENCY_BUCKETS_S)  # how long each took (/metrics)
        self.sealed = 0  # segments whose index files it wrote (/metrics)
        self.seal_seconds = Histogram(LATENCY_BUCKETS_S)  # how long each took (/metrics)
        self._wake = threading.Lock()
        self._wake.acquire()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    def start(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._run, name="sierradb-checkpoints", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Have every due checkpoint written (any thread; returns at once)."""
        try:
            self._wake.release()
        except RuntimeError:
            pass  # released already: a pass is about to run

    def stop(self) -> None:
        """Blocking: end the thread, after the checkpoint it may be writing."""
        self._stopping = True
        self.poke()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        token = self._token
        assert token is not None
        while True:
            self._wake.acquire()
            if self._stopping:
                return
            for bucket_id in range(self.store.bucket_count):
                try:
                    started = time.perf_counter()
                    sealed = self.store.finish_seals(bucket_id)
                    if sealed:
                        self.seal_seconds.observe((time.perf_counter() - started) / sealed)
                        self.sealed += sealed
                    started = time.perf_counter()
                    if self.store.checkpoint_if_due(bucket_id):
                        self.seconds.observe(time.perf_counter() - started)
                        self.written += 1
                except BaseException as e:  # a broken invariant: stop the node
                    token.run_sync_soon(self.on_crash, e)
                    return
