"""Garbage-collector pauses of a single node under appends: how long each full collection
stopped the event loop, and how many objects it walked.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/gc_pauses.py [--requests 60000]
        [--streams 100000] [--pipeline 1] [--port 9533]

Starts a node in a child process whose interpreter first registers a ``gc.callbacks`` hook (the
node's code is unchanged), drives it with redis-benchmark (`-c 50`, EAPPEND of the benchmark
payload to `--streams` random streams), then prints one JSON line per generation-2 collection:
its pause in milliseconds and the objects the collector tracked after it; then, for each
generation, how many collections ran and their total and longest pause, and redis-benchmark's
latency percentiles. Fewer streams means more events per stream in the active segment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = (ROOT.parent / "shared" / "bench" / "payload.json").read_text().replace("\n", "")

# Run in the node's process before the node starts: time each generation-2 collection and
# append it to a file (written as it happens, so a terminated node loses nothing).
HOOK = """
import gc, json, sys, time
from sierradb.node.cli import main
out = open(sys.argv.pop(1), "a", buffering=1)
started = [0.0]
def hook(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
        return
    generation = info["generation"]
    pause_ms = (time.perf_counter() - started[0]) * 1000
    line = {"generation": generation, "pause_ms": round(pause_ms, 3)}
    if generation == 2:
        line["tracked"] = len(gc.get_objects(2))
    out.write(json.dumps(line) + "\\n")
gc.callbacks.append(hook)
sys.exit(main(sys.argv[1:]))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60_000)
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--port", type=int, default=9533)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="sdb-gc-")
    log = os.path.join(d, "gc.jsonl")
    node = subprocess.Popen(
        [sys.executable, "-c", HOOK, log, "--dir", os.path.join(d, "data"),
         "--client-address", f"127.0.0.1:{a.port}", "--log-level", "warning"],
    )  # fmt: skip
    try:
        for _ in range(200):
            r = subprocess.run(["redis-cli", "-p", str(a.port), "ping"], capture_output=True)
            if r.stdout.strip() == b"PONG":
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the node did not start")
        bench = subprocess.run(
            ["redis-benchmark", "-p", str(a.port), "-n", str(a.requests), "-c", "50",
             "-P", str(a.pipeline), "-r", str(a.streams), "--csv",
             "EAPPEND", "stream-__rand_int__", "UserCreated", PAYLOAD],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        node.terminate()
        node.wait(timeout=30)
    collections = [json.loads(line) for line in Path(log).read_text().splitlines()]
    shutil.rmtree(d, ignore_errors=True)
    run = {"streams": a.streams, "requests": a.requests}
    for c in collections:
        if c["generation"] == 2:
            print(json.dumps({**run, "pause_ms": c["pause_ms"], "tracked": c["tracked"]}))
    for generation in (0, 1, 2):
        pauses = [c["pause_ms"] for c in collections if c["generation"] == generation]
        print(json.dumps({**run, "generation": generation, "collections": len(pauses),
                          "total_ms": round(sum(pauses), 1),
                          "max_ms": max(pauses, default=None)}))  # fmt: skip
    # The last seven columns: rps, avg, min, p50, p95, p99, max (the test name may hold commas).
    row = [f.strip('"') for f in bench.strip().splitlines()[-1].split(",")[-7:]]
    print(json.dumps({**run, "rps": float(row[0]), "p50_ms": float(row[3]),
                      "p99_ms": float(row[5]), "max_ms": float(row[6])}))  # fmt: skip


if __name__ == "__main__":
    main()
