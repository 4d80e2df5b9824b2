"""A consumer of every partition while redis-benchmark appends: EPREAD ... BLOCK vs EPSUB *.

    .venv/bin/python bench/consumer_bench.py [--events 200000] [--port 9391]

For each mode (no consumer, EPREAD BLOCK, EPSUB * push) a fresh node is started (default
settings: fdatasync on every group commit), one consumer connection follows all partitions
from their current end, and redis-benchmark appends `--events` events at -c 50 -P 16 with the
shared payload. Printed per mode: append throughput (and the loss against no consumer), the
node's CPU per appended event (delivery included), events
per second delivered to the consumer, and the delay from append (the event's server timestamp,
ms) to delivery (the consumer's clock when the reply or push is parsed): p50 and p99, and the
consumer thread's own CPU time (redis-py + hiredis in this process, on the same 2 cores as the
node and redis-benchmark). redis-py 8 speaks RESP3 by default, so both consumers use RESP3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
from procstat import cpu_s

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = (ROOT.parent / "shared" / "bench" / "payload.json").read_text().replace("\n", "")
PARTITIONS = 32


def start_node(port: int) -> tuple[subprocess.Popen[bytes], str]:
    data = tempfile.mkdtemp(prefix="sdb-consumer-bench-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sierradb.node", "--dir", data, "--client-address",
         f"127.0.0.1:{port}", "--http-address", "none", "--log-level", "warning"],
    )  # fmt: skip
    for _ in range(300):
        try:
            redis.Redis(port=port).ping()
            return proc, data
        except redis.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("node did not start")


def stop_node(proc: subprocess.Popen[bytes], data: str) -> None:
    proc.terminate()
    proc.wait(30)
    shutil.rmtree(data, ignore_errors=True)


def benchmark(port: int, events: int) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv", "-n", str(events),
         "-c", "50", "-P", "16", "-r", "100000", "EAPPEND", "stream-__rand_int__", "UserCreated",
         PAYLOAD],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    return float(out[-1].split(",")[-7].strip('"'))  # the name holds commas: count from the end


def total_events(port: int) -> int:
    r = redis.Redis(port=port)
    return sum((r.execute_command("EPSEQ", p) or -1) + 1 for p in range(PARTITIONS))


def as_map(reply: object) -> dict:
    """redis-py gives a map as a dict or as a flat [key, value, ...] list."""
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list)
    return dict(zip(reply[::2], reply[1::2], strict=True))


class Consumer:
    def __init__(self, port: int, mode: str) -> None:
        self.port, self.mode = port, mode
        self.delays_ms: list[float] = []
        self.first = self.last = 0.0
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.cpu_s = 0.0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def seen(self, timestamp_ms: int) -> None:
        now = time.time()
        if not self.delays_ms:
            self.first = now
        self.last = now
        self.delays_ms.append(now * 1000 - timestamp_ms)

    def run(self) -> None:
        try:
            if self.mode == "epread":
                self.run_epread()
            else:
                self.run_epsub()
        finally:
            self.cpu_s = time.thread_time()  # the consumer's own CPU: it shares the 2 cores

    def run_epread(self) -> None:
        r = redis.Redis(port=self.port)
        position = {p: 0 for p in range(PARTITIONS)}
        self.ready.set()
        while not self.stop.is_set():
            args = [x for p in range(PARTITIONS) for x in (p, position[p])]
            reply = r.execute_command("EPREAD", "COUNT", 1000, "BLOCK", 500, "FROM", *args)
            for p, part in as_map(reply).items():
                events = [as_map(e) for e in as_map(part)[b"events"]]
                for e in events:
                    self.seen(e[b"timestamp"])
                if events:
                    position[p] = events[-1][b"partition_sequence"] + 1

    def run_epsub(self) -> None:
        r = redis.Redis(port=self.port, protocol=3)
        conn = r.connection_pool.get_connection()
        window = 10_000
        conn.send_command("EPSUB", "*", "WINDOW", window)
        sub = conn.read_response()
        self.ready.set()
        unacked = 0
        while not self.stop.is_set():
            # can_read first: a read_response that times out closes redis-py's connection.
            if not conn.can_read(timeout=0.5):
                continue
            frame = conn.read_response(push_request=True)
            if not isinstance(frame, list) or frame[0] != b"message":
                continue
            self.seen(frame[3][b"timestamp"])
            unacked += 1
            if unacked >= window // 2:
                conn.send_command("EACK", sub, frame[2])
                unacked = 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_mode(port: int, events: int, mode: str) -> dict[str, float]:
    proc, data = start_node(port)
    try:
        consumer = None
        if mode != "none":
            consumer = Consumer(port, mode)
            consumer.thread.start()
            consumer.ready.wait(10)
        cpu = cpu_s(proc.pid)
        rps = benchmark(port, events)
        result = {"append_rps": rps}
        if consumer is not None:
            appended = total_events(port)
            deadline = time.monotonic() + 120
            while len(consumer.delays_ms) < appended and time.monotonic() < deadline:
                time.sleep(0.05)
        # The node's CPU per appended event, delivery to the consumer included (it may finish
        # after the appends): robust where throughput is not, on a shared machine.
        result["node_cpu_us"] = (cpu_s(proc.pid) - cpu) / events * 1e6
        if consumer is not None:
            consumer.stop.set()
            consumer.thread.join(5)
            span = max(consumer.last - consumer.first, 1e-9)
            result |= {
                "delivered": len(consumer.delays_ms),
                "appended": appended,
                "delivered_per_s": len(consumer.delays_ms) / span,
                "delay_p50_ms": percentile(consumer.delays_ms, 0.50),
                "delay_p99_ms": percentile(consumer.delays_ms, 0.99),
                "consumer_cpu_s": consumer.cpu_s,
            }
        return result
    finally:
        stop_node(proc, data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--port", type=int, default=9391)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"# {os.cpu_count()} cores, {args.events} appends per run, -c 50 -P 16")
    for run in range(args.repeats):
        results = {m: run_mode(args.port, args.events, m) for m in ("none", "epread", "epsub")}
        base = results["none"]["append_rps"]
        for mode, r in results.items():
            line = f"run {run} {mode:6s} append {r['append_rps']:9.0f}/s"
            line += f"  node CPU {r['node_cpu_us']:4.0f} us/event"
            if mode != "none":
                lost = 100 * (1 - r["append_rps"] / base)
                line += (
                    f" (lost {lost:5.1f}%)  delivered {r['delivered']:.0f}/{r['appended']:.0f}"
                    f" at {r['delivered_per_s']:8.0f}/s  delay p50 {r['delay_p50_ms']:6.1f} ms"
                    f" p99 {r['delay_p99_ms']:6.1f} ms  consumer CPU {r['consumer_cpu_s']:5.1f} s"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
