#!/usr/bin/env python3
"""How long the index work of checkpoints and sealing holds the writer, and what a long load sees.

    .venv/bin/python bench/index_stalls.py store [--events N]
    .venv/bin/python bench/index_stalls.py node [--requests N] [--pipeline P] [--segment-size S]

`store`: fills one bucket of a store (N single-event transactions, 256 per commit, streams drawn
from a million, the payload of ../shared/bench/payload.json), then times what the writer thread
does with it: indexing the ids (`index_ids`), the sealed index files (`write_index_files`: a
seal is both) and a checkpoint, first and again. `node`: starts a node (`--segment-size` makes it
seal during the run) and loads it with redis-benchmark EAPPEND (`-c 50`, random streams), then
prints redis-benchmark's latency summary and the checkpoints and seals the node made. The short
request benchmarks never reach a checkpoint (16 MiB per bucket) or a seal: the worst latency of
a long run is where what they still cost the event loop and the commits shows (they run on the
node's checkpointer thread; a full segment's seal writes ~100 MB of index files). Prints JSON
lines.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import storage_bench  # noqa: E402

from sierradb.storage import Store  # noqa: E402
from sierradb.storage.sealed import write_index_files  # noqa: E402


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ms_since(t0: float) -> float:
    return round(1000 * (time.perf_counter() - t0), 1)


def cmd_store(events: int) -> None:
    storage_bench.STREAMS = 1_000_000
    with tempfile.TemporaryDirectory() as path:
        store = Store.open(path, buckets=1, partitions=256, checkpoint_interval_bytes=1 << 40)
        rng = random.Random(1)
        for _ in range(events // 256):
            for p, key, txn, evs in storage_bench.transactions(256, rng, 256):
                store.append_leader(p, key, txn, evs, 1)
            store.flush_all()
        bucket = store.buckets[0]
        t0 = time.perf_counter()
        bucket.active.index_ids()
        index_ms = ms_since(t0)
        os.makedirs(os.path.join(path, "sealed"))
        t0 = time.perf_counter()
        write_index_files(bucket.disk, os.path.join(path, "sealed"), bucket.active)
        files_ms = ms_since(t0)
        timings = []
        for _ in range(2):
            t0 = time.perf_counter()
            bucket.write_checkpoint()
            timings.append(ms_since(t0))
        emit(bench="index_stalls", events=events, index_ids_ms=index_ms,
             write_index_files_ms=files_ms, checkpoint_ms=timings,
             load=os.getloadavg()[0])  # fmt: skip
        store.close()


def cmd_node(requests: int, pipeline: int, segment_size: str | None) -> None:
    payload = (HERE.parent.parent / "shared" / "bench" / "payload.json").read_text().strip()
    port = free_port()
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryFile("w+") as log:
        args = ["--dir", data, "--client-address", f"127.0.0.1:{port}", "--log-level", "info"]
        if segment_size:
            args += ["--segment-size", segment_size]
        node = subprocess.Popen([sys.executable, "-m", "sierradb.node", *args], stderr=log)
        try:
            for _ in range(100):
                ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True)
                if ping.stdout.strip() == b"PONG":
                    break
                time.sleep(0.1)
            out = subprocess.run(
                ["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", "50",
                 "-P", str(pipeline), "-r", "1000000",
                 "EAPPEND", "stream-__rand_int__", "UserCreated", payload],
                capture_output=True, text=True, check=True,
            ).stdout.replace("\r", "\n")  # fmt: skip
        finally:
            node.terminate()
            node.wait()
        log.seek(0)
        text = log.read()
    rps = re.search(r"throughput summary: ([0-9.]+)", out)
    row = re.search(r"avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([0-9.\s]+)\n", out)
    stats = dict(zip(("avg", "min", "p50", "p95", "p99", "max"), row.group(1).split(), strict=True))
    emit(bench="index_stalls_node", requests=requests, pipeline=pipeline,
         segment_size=segment_size or "default", rps=float(rps.group(1)) if rps else None,
         latency_ms=stats, seals=text.count("sealed segment"), load=os.getloadavg()[0])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    store = sub.add_parser("store")
    store.add_argument("--events", type=int, default=300_000)
    node = sub.add_parser("node")
    node.add_argument("--requests", type=int, default=400_000)
    node.add_argument("--pipeline", type=int, default=16)
    node.add_argument("--segment-size")
    a = parser.parse_args()
    if shutil.which("redis-benchmark") is None and a.cmd == "node":
        sys.exit("redis-benchmark is needed (apt-get install redis-tools)")
    if a.cmd == "store":
        cmd_store(a.events)
    else:
        cmd_node(a.requests, a.pipeline, a.segment_size)


if __name__ == "__main__":
    main()
