"""Per-append cost of the replicated write path: CPU and channel traffic per append, per node.

    .venv/bin/python bench/replication_cost.py [--requests N] [--pipeline P] [--spread] [--nodes 3]
        [--clients 50]

Starts a local cluster (RF = node count), loads it with redis-benchmark (EAPPEND, `--clients`
connections, the payload of ../shared/bench/payload.json) through node 0 (or spread over all
nodes), and prints, per node, the CPU microseconds it spent per append and the replication
channel frames, socket writes and lingering writes it made per append. CPU per append is the
number to move: it holds on a busy machine, where appends/s does not. Prints appends/s and
p50/p99 too, with the load average.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replication_bench import benchmark, start_cluster  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from clusterproc import info_cluster  # noqa: E402


def counters(port: int) -> tuple[int, int, int]:
    info = info_cluster(port)
    names = ("channel_frames_sent", "channel_writes", "channel_lingers")
    frames, writes, lingers = (int(info.get(name, 0)) for name in names)
    return frames, writes, lingers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--pipeline", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--spread", action="store_true", help="load every node, not just node 0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        nodes = start_cluster(Path(d), args.nodes)
        try:
            procs = [psutil.Process(n.proc.pid) for n in nodes]  # type: ignore[union-attr]
            ports = [n.port for n in nodes] if args.spread else [nodes[0].port]
            benchmark(ports, min(2_000, args.requests), args.pipeline, args.clients)  # warm up
            cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
            ch0 = [counters(n.port) for n in nodes]
            load = open("/proc/loadavg").read().split()[0]
            rps, p50, p99 = benchmark(ports, args.requests, args.pipeline, args.clients)
            cpu1 = [sum(p.cpu_times()[:2]) for p in procs]
            ch1 = [counters(n.port) for n in nodes]
        finally:
            for n in nodes:
                n.kill()
    n = args.requests
    where = "spread over all" if args.spread else "through node 0"
    print(f"{args.nodes} nodes, -c {args.clients} -P {args.pipeline}, {where}: "
          f"{rps:,.0f} appends/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms (load {load})")  # fmt: skip
    total = 0.0
    for i in range(len(nodes)):
        cpu = (cpu1[i] - cpu0[i]) / n * 1e6
        total += cpu
        frames = (ch1[i][0] - ch0[i][0]) / n
        writes = (ch1[i][1] - ch0[i][1]) / n
        lingers = (ch1[i][2] - ch0[i][2]) / n
        print(f"  node {i}: {cpu:,.0f} us CPU/append, {frames:.2f} frames/append, "
              f"{writes:.2f} writes/append, {lingers:.2f} lingers/append")  # fmt: skip
    print(f"  all nodes: {total:,.0f} us CPU/append")


if __name__ == "__main__":
    main()
