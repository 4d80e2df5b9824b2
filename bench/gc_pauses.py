"""Garbage-collector pauses of a single node under appends: how long each full collection
stopped the event loop, and how many objects it walked.

    PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/gc_pauses.py [--requests 60000]
        [--streams 100000] [--pipeline 1] [--port 9533]

Starts a node in a child process whose interpreter first registers a ``gc.callbacks`` hook (the
node's code is unchanged), drives it with redis-benchmark (`-c 50`, EAPPEND of the benchmark
payload to `--streams` random streams), then prints one JSON line per generation-2 collection:
its pause in milliseconds and the objects the collector tracked after it. Fewer streams means
more events per stream in the active segment.
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
    if info["generation"] != 2:
        return
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        pause_ms = (time.perf_counter() - started[0]) * 1000
        out.write(json.dumps({"pause_ms": round(pause_ms, 2),
                              "tracked": len(gc.get_objects(2))}) + "\\n")
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
        subprocess.run(
            ["redis-benchmark", "-p", str(a.port), "-n", str(a.requests), "-c", "50",
             "-P", str(a.pipeline), "-r", str(a.streams), "-q",
             "EAPPEND", "stream-__rand_int__", "UserCreated", PAYLOAD],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        node.terminate()
        node.wait(timeout=30)
    pauses = [json.loads(line) for line in Path(log).read_text().splitlines()]
    shutil.rmtree(d, ignore_errors=True)
    for p in pauses:
        print(json.dumps({"streams": a.streams, "requests": a.requests, **p}))
    if not pauses:
        print(json.dumps({"streams": a.streams, "requests": a.requests, "pause_ms": None}))


if __name__ == "__main__":
    main()
