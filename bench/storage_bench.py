#!/usr/bin/env python3
"""Storage engine benchmark: durable appends, growth, reads, open time and memory.

Usage:
  storage_bench.py commit DIR [SECONDS [SIZES]]    events/s with 1, 16, 256 (or SIZES, e.g. 256,16)
                                                   events per fdatasync, sequential and pipelined
  storage_bench.py grow DIR N [SEGMENT_SIZE]       append N events (256 per commit, 100k streams),
                                                   printing throughput per slice of N/10 events and
                                                   the sealed segment count; then read throughput
  storage_bench.py open DIR                        open time and resident memory (run it in a fresh
                                                   process, as `grow` does)
  storage_bench.py tail DIR MiB                    open time against MiB of unsealed data past the
                                                   checkpoint

Payload: ../shared/bench/payload.json (~200 bytes), like every other benchmark here. Prints one
JSON object per measurement.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

from sierradb.storage import Store
from sierradb.storage.bucket import Written
from sierradb.storage.transaction import NewEvent

HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOAD_PATH = os.path.join(HERE, "..", "..", "shared", "bench", "payload.json")
PAYLOAD = open(PAYLOAD_PATH, "rb").read().strip() if os.path.exists(PAYLOAD_PATH) else b"x" * 200
STREAMS = 100_000


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def event(stream: int) -> NewEvent:
    return NewEvent(os.urandom(16), b"stream-%d" % stream, b"UserCreated", int(time.time() * 1000),
                    b"", PAYLOAD)  # fmt: skip


def append_batch(store: Store, n: int, rng: random.Random, partitions: int) -> None:
    """n single-event transactions spread over the partitions, then one flush per bucket."""
    for _ in range(n):
        s = rng.randrange(STREAMS)
        p = s % partitions
        store.append_leader(p, p.to_bytes(16, "big"), os.urandom(16), [event(s)], 1)
    store.flush_all()


Transaction = tuple[int, bytes, bytes, list[NewEvent]]  # (partition, key, transaction id, events)

# Events built before the clock starts, at most this many per measurement (~100 MB).
POOL_EVENTS = 300_000


def transactions(n: int, rng: random.Random, partitions: int) -> list[Transaction]:
    """n single-event transactions spread over the partitions, as a caller hands them over."""
    out = []
    for _ in range(n):
        s = rng.randrange(STREAMS)
        p = s % partitions
        out.append((p, p.to_bytes(16, "big"), os.urandom(16), [event(s)]))
    return out


def cmd_commit(path: str, seconds: float, sizes: tuple[int, ...] = (1, 16, 256)) -> None:
    """Each size twice: `sequential` appends a batch, then writes, syncs and indexes it, all in
    one thread (CPU and fdatasync never overlap); `pipelined` drives the engine as the node's
    bucket writer does: the write and fdatasync of batch N run in a writer thread (the GIL is
    released meanwhile) while batch N+1 is appended, and N is indexed before N+1 is written.
    Either way every commit carries exactly `per_commit` events. The events are built before
    the clock starts (as the node's request parser builds them before it calls the engine), so
    events/s and CPU per event are the engine's own: the run ends after `seconds`, or once the
    pool of POOL_EVENTS is used up."""
    for per_commit in sizes:
        for mode in ("sequential", "pipelined"):
            shutil.rmtree(path, ignore_errors=True)
            store = Store.open(path, buckets=1, partitions=32)
            rng = random.Random(1)
            pool = [transactions(per_commit, rng, 32) for _ in range(POOL_EVENTS // per_commit)]
            events = commits = 0
            writer = ThreadPoolExecutor(1)
            in_flight: Future[Written] | None = None
            append = store.append_leader
            start = time.perf_counter()
            cpu_start = time.process_time()
            for batch in pool:
                if time.perf_counter() - start >= seconds:
                    break
                for p, key, txn, evs in batch:
                    append(p, key, txn, evs, 1)
                if mode == "sequential":
                    store.flush_all()
                else:
                    if in_flight is not None:
                        store.flush_apply(0, in_flight.result())
                    in_flight = writer.submit(store.flush_write, 0)
                events += per_commit
                commits += 1
            if in_flight is not None:
                store.flush_apply(0, in_flight.result())
            el = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            writer.shutdown()
            emit(bench="durable_append", mode=mode, events_per_commit=per_commit,
                 events_per_s=round(events / el), commits_per_s=round(commits / el),
                 cpu_us_per_event=round(cpu / events * 1e6, 2), seconds=round(el, 1),
                 load=os.getloadavg()[0])  # fmt: skip
            store.close()
            del pool


def cmd_grow(path: str, total: int, segment_size: int | None) -> None:
    shutil.rmtree(path, ignore_errors=True)
    store = Store.open(path, segment_size_bytes=segment_size)
    rng = random.Random(2)
    slice_n = max(256, total // 10)
    done = 0
    while done < total:
        t0 = time.perf_counter()
        n = 0
        while n < slice_n and done + n < total:
            append_batch(store, 256, rng, store.partition_count)
            n += 256
        el = time.perf_counter() - t0
        done += n
        stats = store.statistics()
        emit(bench="grow", events=done, events_per_s=round(n / el),
             sealed_segments=stats.sealed_segments, rss_mb=round(rss_mb()))  # fmt: skip
    for p in range(store.partition_count):
        store.set_watermark(p, store.durable_next(p))
    # Stream reads: 100-event ranges of random streams (each stream holds ~total/100k events).
    t0 = time.perf_counter()
    reads = got = 0
    while time.perf_counter() - t0 < 5:
        s = rng.randrange(STREAMS)
        evs, _ = store.read_stream(s % store.partition_count, b"stream-%d" % s, 0, None, 100)
        reads += 1
        got += len(evs)
    el = time.perf_counter() - t0
    emit(bench="stream_read", reads_per_s=round(reads / el), events_per_s=round(got / el))
    t0 = time.perf_counter()
    got = 0
    p = 0
    start = 0
    while time.perf_counter() - t0 < 5:
        evs, more = store.read_partition(p, start, None, 1000)
        got += len(evs)
        start = evs[-1].partition_sequence + 1 if evs else 0
        if not more:
            p = (p + 1) % store.partition_count
            start = 0
    el = time.perf_counter() - t0
    emit(bench="partition_scan", events_per_s=round(got / el))
    store.close()
    out = subprocess.run([sys.executable, __file__, "open", path], capture_output=True, text=True)
    print(out.stdout, end="", flush=True)


def cmd_open(path: str) -> None:
    t0 = time.perf_counter()
    store = Store.open(path)
    el = time.perf_counter() - t0
    stats = store.statistics()
    events = sum(store.durable_next(p) for p in range(store.partition_count))
    emit(bench="open", events=events, open_s=round(el, 3), rss_mb=round(rss_mb()),
         sealed_segments=stats.sealed_segments, active_events=stats.active_events,
         segment_size_bytes=stats.segment_size_bytes)  # fmt: skip
    store.close()


def cmd_fill(path: str, mib: int) -> None:
    """Append MiB of events without any checkpoint, then die without closing (a crash)."""
    shutil.rmtree(path, ignore_errors=True)
    store = Store.open(path, checkpoint_interval_bytes=1 << 40)
    rng = random.Random(3)
    while store.statistics().bytes_written < mib << 20:
        append_batch(store, 256, rng, 32)
    os._exit(0)


def cmd_tail(path: str, mib: int) -> None:
    """Open time against `mib` of unsealed data that no checkpoint covers."""
    subprocess.run([sys.executable, __file__, "fill", path, str(mib)], check=True)
    out = subprocess.run([sys.executable, __file__, "open", path], capture_output=True, text=True)
    row = json.loads(out.stdout)
    emit(bench="open_tail", unsealed_mib=mib, **{k: row[k] for k in ("open_s", "rss_mb", "events")})


def main() -> None:
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "commit":
        sizes = tuple(int(n) for n in sys.argv[4].split(",")) if len(sys.argv) > 4 else (1, 16, 256)
        cmd_commit(path, float(sys.argv[3]) if len(sys.argv) > 3 else 5.0, sizes)
    elif cmd == "grow":
        cmd_grow(path, int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None)
    elif cmd == "open":
        cmd_open(path)
    elif cmd == "fill":
        cmd_fill(path, int(sys.argv[3]))
    elif cmd == "tail":
        cmd_tail(path, int(sys.argv[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
