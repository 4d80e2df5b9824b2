"""CPU cost per request of a single node, beside its throughput and Redis's on the same load.

On a shared machine throughput is noisy; the node's own CPU time (utime + stime of its process,
from /proc) divided by the requests served is not. For each workload this starts a fresh node,
runs redis-benchmark (`-c 50`) against it and prints requests/s, p50/p99 latency and node CPU
µs per request; then the same for Redis (XADD / XRANGE, appendfsync always) on the same port
range, so the ratio comes from one run. With --profile DIR, py-spy records the node during each
workload (an SVG flame graph per workload).

    .venv/bin/python bench/request_cpu.py [--port 9520] [--requests 50000] [--repeats 1]
        [--workloads eappend1,eappend16,escan1,escan16] [--profile DIR] [--no-redis]
        [--baseline-python /path/to/other/venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procstat import cpu_s

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = (ROOT.parent / "shared" / "bench" / "payload.json").read_text().replace("\n", "")


def wait_ping(port: int) -> None:
    for _ in range(200):
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True)
        if r.stdout.strip() == b"PONG":
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


def bench(port: int, args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv", *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # The last seven columns: rps, avg, min, p50, p95, p99, max (the test name may hold commas).
    row = [f.strip('"') for f in out.strip().splitlines()[-1].split(",")[-7:]]
    return {"rps": float(row[0]), "p50": float(row[3]), "p99": float(row[5])}


WORKLOADS = {
    # name: (pipeline, node command, redis command, prefill a 100-event stream)
    "eappend1": (1, ["EAPPEND", "stream-__rand_int__", "UserCreated", PAYLOAD],
                 ["XADD", "stream-__rand_int__", "*", "UserCreated", PAYLOAD], False),
    "eappend16": (16, ["EAPPEND", "stream-__rand_int__", "UserCreated", PAYLOAD],
                  ["XADD", "stream-__rand_int__", "*", "UserCreated", PAYLOAD], False),
    "escan1": (1, ["ESCAN", "rs", "-", "+"], ["XRANGE", "rs", "-", "+"], True),
    "escan16": (16, ["ESCAN", "rs", "-", "+"], ["XRANGE", "rs", "-", "+"], True),
}  # fmt: skip


def prefill(port: int, redis: bool) -> None:
    """A 100-event stream `rs` (redis-cli -x passes the payload unquoted, as the last argument)."""
    cmd = ["XADD", "rs", "*", "UserCreated"] if redis else ["EAPPEND", "rs", "UserCreated"]
    for _ in range(100):
        subprocess.run(["redis-cli", "-p", str(port), "-x", *cmd], input=PAYLOAD.encode(),
                       capture_output=True, check=True)  # fmt: skip
    count = ["XLEN", "rs"] if redis else ["ESVER", "rs"]  # ESVER: the last version, 99
    n = subprocess.run(["redis-cli", "-p", str(port), *count], capture_output=True, check=True)
    assert n.stdout.strip() in (b"100", b"99"), n.stdout


def run_node(
    name: str, port: int, n: int, profile: Path | None, python: str = sys.executable
) -> dict[str, float]:
    pipeline, cmd, _, fill = WORKLOADS[name]
    d = tempfile.mkdtemp(prefix="sdb-cpu-")
    node = subprocess.Popen(
        [python, "-m", "sierradb.node", "--dir", d,
         "--client-address", f"127.0.0.1:{port}", "--log-level", "warning"],
    )  # fmt: skip
    spy = None
    try:
        wait_ping(port)
        if fill:
            prefill(port, False)
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                ["py-spy", "record", "-o", str(profile / f"{name}.txt"), "--format", "raw",
                 "--pid", str(node.pid),
                 "--rate", "200", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1)
        before = cpu_s(node.pid)
        r = bench(port, ["-n", str(n), "-c", "50", "-P", str(pipeline), "-r", "100000", *cmd])
        r["cpu_us"] = (cpu_s(node.pid) - before) / n * 1e6
        return r
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=30)
        node.terminate()
        node.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


def run_redis(name: str, port: int, n: int) -> dict[str, float]:
    pipeline, _, cmd, fill = WORKLOADS[name]
    d = tempfile.mkdtemp(prefix="redis-cpu-")
    srv = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
         "--appendonly", "yes", "--appendfsync", "always", "--save", "",
         "--auto-aof-rewrite-min-size", "256mb", "--logfile", f"{d}/redis.log"],
    )  # fmt: skip
    try:
        wait_ping(port)
        if fill:
            prefill(port, True)
        before = cpu_s(srv.pid)
        r = bench(port, ["-n", str(n), "-c", "50", "-P", str(pipeline), "-r", "100000", *cmd])
        r["cpu_us"] = (cpu_s(srv.pid) - before) / n * 1e6
        return r
    finally:
        srv.terminate()
        srv.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=9520)
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workloads", default="eappend1,eappend16,escan1,escan16")
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--baseline-python", help="also run the node of another install (A/B), "
                    "e.g. main's venv: its row follows each of ours, tagged `base`")  # fmt: skip
    a = ap.parse_args()
    print("workload,run,load,node_rps,node_p50_ms,node_p99_ms,node_cpu_us_per_req,"
          "redis_rps,redis_cpu_us_per_req,ratio")  # fmt: skip
    for run in range(1, a.repeats + 1):
        for name in a.workloads.split(","):
            load = os.getloadavg()[0]
            if a.baseline_python:
                base = run_node(name, a.port, a.requests, None, a.baseline_python)
                print(f"{name}-base,{run},{load:.2f},{base['rps']:.0f},{base['p50']:.2f},"
                      f"{base['p99']:.2f},{base['cpu_us']:.1f},,,", flush=True)  # fmt: skip
            node = run_node(name, a.port, a.requests, a.profile)
            if a.no_redis:
                red = {"rps": float("nan"), "cpu_us": float("nan")}
            else:
                red = run_redis(name, a.port + 1, a.requests)
            print(f"{name},{run},{load:.2f},{node['rps']:.0f},{node['p50']:.2f},{node['p99']:.2f},"
                  f"{node['cpu_us']:.1f},{red['rps']:.0f},{red['cpu_us']:.1f},"
                  f"{node['rps'] / red['rps']:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
