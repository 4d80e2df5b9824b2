"""Replication benchmark: 3 local nodes with RF 3 against a single node, in the same run.

    .venv/bin/python bench/replication_bench.py [--requests N] [--catch-up EVENTS]

- EAPPEND throughput and p50/p99 (redis-benchmark, -c 50, the payload of
  ../shared/bench/payload.json) at -P 1 and -P 16: a single node; the cluster through one node;
  the cluster spread over all three (three redis-benchmark processes of -c 17 at once).
- Failover: kill -9 of the leader of a partition, to the first successful write to that
  partition through another node (default heartbeat and down timeout).
- Catch-up: a follower stopped while EVENTS are appended, restarted while the leader keeps
  ingesting at 80% of the cluster's measured -P 16 rate: time until its watermarks reach the
  leader's on every partition.
Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import redis  # noqa: E402
from clusterproc import info_cluster  # noqa: E402
from nodeproc import NodeProcess  # noqa: E402

from sierradb.node.identifiers import partition_id  # noqa: E402

PAYLOAD = (HERE.parent.parent / "shared" / "bench" / "payload.json").read_text().replace("\n", "")


def free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_cluster(root: Path, count: int) -> list[NodeProcess]:
    ports = [free_port() for _ in range(count)]
    nodes = []
    for i in range(count):
        args: list[str] = []
        if count > 1:
            args += ["-n", str(count), "-i", str(i), "--mdns", "false",
                     "--cluster-address", f"127.0.0.1:{ports[i]}",
                     "--peer", f"/ip4/127.0.0.1/tcp/{ports[0]}"]  # fmt: skip
        nodes.append(NodeProcess(root / f"n{i}", *args))
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready()
    if count > 1:
        wait(lambda: all(all_led(n) for n in nodes), 120)
        wait_writable(nodes[0].port, 120)
    return nodes


def wait_writable(port: int, timeout_s: float) -> None:
    """Append once to every partition (retrying TRYAGAIN): a leader that is known may still be
    taking office, and redis-benchmark stops at the first error it gets."""
    deadline = time.monotonic() + timeout_s
    with redis.Redis(port=port) as r:
        count = sum(k.startswith("partition") and k[9:].isdigit() for k in info_cluster(port))
        for p in range(count):
            key = next(k for k in (uuid.uuid4() for _ in range(100_000))
                       if partition_id(k.bytes, count) == p)  # fmt: skip
            while True:
                try:
                    r.execute_command(
                        "EAPPEND", f"warm-up-{p}", "WarmUp", "PARTITION_KEY", str(key)
                    )
                    break
                except redis.ResponseError as e:
                    if (
                        not str(e).startswith(("TRYAGAIN", "TIMEOUT"))
                        or time.monotonic() > deadline
                    ):
                        raise
                    time.sleep(0.05)


def all_led(node: NodeProcess) -> bool:
    try:
        info = info_cluster(node.port)
    except redis.RedisError:
        return False
    rows = [v for k, v in info.items() if k.startswith("partition") and k[9:].isdigit()]
    return bool(rows) and all("leader=none" not in r for r in rows)


def wait(check, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)
    return time.monotonic() - start


def benchmark(
    ports: list[int], requests: int, pipeline: int, clients: int = 50
) -> tuple[float, float, float]:
    """Total requests/s and the worst p50/p99 (ms) of one redis-benchmark per port at once,
    `clients` connections in all."""
    clients = max(1, clients // len(ports))
    procs = [
        subprocess.Popen(
            [
                "redis-benchmark",
                "-p",
                str(port),
                "--csv",
                "-n",
                str(requests // len(ports)),
                "-c",
                str(clients),
                "-P",
                str(pipeline),
                "-r",
                "100000",
                "EAPPEND",
                "stream-__rand_int__",
                "UserCreated",
                PAYLOAD,
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for port in ports
    ]
    rps, p50, p99 = 0.0, 0.0, 0.0
    for proc in procs:
        out, err = proc.communicate()
        lines = [row for row in out.splitlines() if row.startswith('"EAPPEND')]
        if not lines:
            raise RuntimeError(f"redis-benchmark printed no result: {err.strip()[-500:]}")
        line = lines[-1]
        # "test",rps,avg,min,p50,p95,p99,max: the test name holds the payload's commas.
        fields = [f.strip('"') for f in line.rsplit(",", 7)[1:]]
        rps += float(fields[0])
        p50 = max(p50, float(fields[3]))
        p99 = max(p99, float(fields[5]))
    return rps, p50, p99


def throughput(requests: int) -> float:
    results: dict[str, tuple[float, float, float]] = {}
    p16_cluster = 0.0
    with tempfile.TemporaryDirectory() as d:
        nodes = start_cluster(Path(d) / "single", 1)
        try:
            for p in (1, 16):
                results[f"single node, -P {p}"] = benchmark([nodes[0].port], requests, p)
        finally:
            for n in nodes:
                n.kill()
        nodes = start_cluster(Path(d) / "cluster", 3)
        try:
            for p in (1, 16):
                results[f"3 nodes RF 3 through one node, -P {p}"] = benchmark(
                    [nodes[0].port], requests, p
                )
                results[f"3 nodes RF 3 spread over all three, -P {p}"] = benchmark(
                    [n.port for n in nodes], requests, p
                )
                if p == 16:
                    p16_cluster = results[f"3 nodes RF 3 spread over all three, -P {p}"][0]
        finally:
            for n in nodes:
                n.kill()
    for name, (rps, p50, p99) in results.items():
        base = results[f"single node, -P {name.rsplit(' ', 1)[-1]}"][0]
        print(f"{name}: {rps:,.0f} appends/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"({rps / base:.2f}x the single node)")  # fmt: skip
    return p16_cluster


def leader_of(node: NodeProcess, partition: int) -> int | None:
    row = info_cluster(node.port).get(f"partition{partition}", "")
    m = re.search(r"leader=(\d+)", row)
    return int(m.group(1)) if m else None


def stream_in(partition: int, partitions: int = 32) -> str:
    from sierradb.node.identifiers import partition_id, partition_key_for_stream

    n = 0
    while partition_id(partition_key_for_stream(f"fo{n}".encode()), partitions) != partition:
        n += 1
    return f"fo{n}"


def failover(repeats: int) -> None:
    times = []
    with tempfile.TemporaryDirectory() as d:
        nodes = start_cluster(Path(d), 3)
        try:
            for r in range(repeats):
                partition = r  # partitions 0.. are preferably led by nodes 0, 1, 2, ...
                leader = leader_of(nodes[0], partition)
                assert leader is not None
                victim = nodes[leader]
                other = nodes[(leader + 1) % 3]
                stream = stream_in(partition)
                client = redis.Redis(port=other.port, socket_timeout=10)
                client.execute_command("EAPPEND", stream, "Warm", PAYLOAD)
                killed = time.monotonic()
                victim.kill()
                while True:
                    try:
                        client.execute_command("EAPPEND", stream, "AfterFailover", PAYLOAD)
                        break
                    except redis.RedisError:
                        time.sleep(0.05)
                times.append(time.monotonic() - killed)
                victim.start()
                wait(lambda: all(all_led(n) for n in nodes), 60)
        finally:
            for n in nodes:
                n.kill()
    times.sort()
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"failover (kill -9 of a partition's leader to the first write that succeeds): "
          f"median {times[len(times) // 2]:.2f} s, runs {runs}")  # fmt: skip


def catch_up(events: int, rate: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        nodes = start_cluster(Path(d), 3)
        try:
            follower = nodes[2]
            follower.terminate()
            benchmark([nodes[0].port, nodes[1].port], events, 16)
            stop = threading.Event()

            def ingest() -> None:
                client = redis.Redis(port=nodes[0].port)
                interval = 16 / rate
                while not stop.is_set():
                    started = time.monotonic()
                    pipe = client.pipeline(transaction=False)
                    for _ in range(16):
                        pipe.execute_command("EAPPEND", "ingest", "E", PAYLOAD)
                    try:
                        pipe.execute()
                    except redis.RedisError:
                        pass
                    time.sleep(max(0.0, interval - (time.monotonic() - started)))

            feeder = threading.Thread(target=ingest, daemon=True)
            feeder.start()
            follower.start()

            def caught_up() -> bool:
                lead = info_cluster(nodes[0].port)
                mine = info_cluster(follower.port)
                for k, v in mine.items():
                    if k.startswith("partition") and k[9:].isdigit():
                        w = int(re.search(r"watermark=(\d+)", v).group(1))  # type: ignore[union-attr]
                        lw = int(re.search(r"watermark=(\d+)", lead[k]).group(1))  # type: ignore[union-attr]
                        if w + 50 < lw:
                            return False
                return True

            elapsed = wait(caught_up, 3600)
            stop.set()
            feeder.join()
            print(f"catch-up of a follower {events:,} events behind, the leader ingesting at "
                  f"{rate:,.0f}/s: {elapsed:.1f} s")  # fmt: skip
        finally:
            for n in nodes:
                n.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60_000)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--catch-up", type=int, default=100_000)
    options = parser.parse_args()
    if shutil.which("redis-benchmark") is None:
        sys.exit("needs redis-benchmark (apt-get install -y redis-tools)")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    p16 = throughput(options.requests)
    if options.failovers:
        failover(options.failovers)
    if options.catch_up:
        catch_up(options.catch_up, 0.8 * p16)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
