"""Cluster membership benchmark: formation, failure detection, relinking, idle cost.

    .venv/bin/python bench/membership_bench.py [--repeat N] [--skip-mdns]

With the default liveness settings (heartbeat 1 s, down after 6 s), on 127.0.0.1 unless said:
- how long one cluster node takes to start (spawn to ready);
- formation of 3 and 5 nodes by `--peer` (nodes 1.. given only node 0's address): from spawning
  the processes, and from the last node being ready (process start excluded), to every node
  reporting all nodes alive;
- formation of 3 nodes by mDNS in network namespaces (root only; `--skip-mdns` to skip);
- failure detection on every other node after `kill -9` and after SIGTERM;
- relinking after a restart (from the restarted node being ready to every peer seeing it up);
- CPU (% of one core) and RSS per node of an idle 5-node cluster over 60 s.
Prints one line per measurement; medians over `--repeat` runs where it repeats.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from clusterproc import info_cluster, peers  # noqa: E402
from nodeproc import NodeProcess  # noqa: E402
from procstat import cpu_s, rss_mb  # noqa: E402

POLL_S = 0.05


def args_for(count: int, index: int, port: int, *extra: str) -> tuple[str, ...]:
    return (
        "-n", str(count), "-i", str(index), "--mdns", "false",
        "--cluster-address", f"127.0.0.1:{port}", *extra,
    )  # fmt: skip


def free_ports(count: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def alive(node: NodeProcess) -> int:
    try:
        return int(info_cluster(node.port)["nodes_alive"])
    except Exception:  # noqa: BLE001 - not answering yet
        return 0


def state_of(observer: NodeProcess, index: int) -> str:
    try:
        rows = [p for p in peers(info_cluster(observer.port)) if p["node_index"] == str(index)]
    except Exception:  # noqa: BLE001
        return "?"
    return rows[0]["state"] if rows else "none"


def wait(check, timeout_s: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(POLL_S)
    return time.monotonic()


def start_all(nodes: list[NodeProcess]) -> tuple[float, float]:
    """Start every node at once and wait until each answers: (spawned, ready) times."""
    spawned = time.monotonic()
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready()
    return spawned, time.monotonic()


def start_cluster(root: Path, count: int) -> tuple[list[NodeProcess], float, float]:
    ports = free_ports(count)
    nodes = [
        NodeProcess(
            root / f"n{i}",
            *args_for(count, i, ports[i], "--peer", f"/ip4/127.0.0.1/tcp/{ports[0]}"),
        )
        for i in range(count)
    ]
    spawned, ready = start_all(nodes)
    formed = wait(lambda: all(alive(n) == count for n in nodes))
    return nodes, formed - spawned, formed - ready


def stop(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        node.kill()


def start_time(repeat: int) -> None:
    """One cluster node alone, from spawn to ready (most of it is importing py-libp2p)."""
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            node = NodeProcess(Path(d) / "n", *args_for(3, 0, free_ports(1)[0]))
            spawned = time.monotonic()
            node.start()
            times.append(time.monotonic() - spawned)
            node.kill()
    print(
        f"one cluster node, spawn to ready: median {statistics.median(times):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
    )


def formation(count: int, repeat: int) -> None:
    totals, after_ready = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            nodes, total, ready = start_cluster(Path(d), count)
            stop(nodes)
            totals.append(total)
            after_ready.append(ready)
    print(
        f"formation by --peer, {count} nodes: median {statistics.median(totals):.2f} s from "
        f"spawn, {statistics.median(after_ready):.2f} s after the last node was ready "
        f"(runs: {', '.join(f'{t:.2f}' for t in totals)})"
    )


def detection(repeat: int) -> None:
    kill, term, relink = [], [], []
    with tempfile.TemporaryDirectory() as d:
        nodes, _, _ = start_cluster(Path(d), 3)
        try:
            for _ in range(repeat):
                victim = nodes[2]  # its cluster port is fixed: it restarts on the same one
                at = time.monotonic()
                victim.kill()
                done = wait(lambda: all(state_of(n, 2) == "down" for n in nodes[:2]))
                kill.append(done - at)
                victim.start()
                at = time.monotonic()
                done = wait(lambda: all(state_of(n, 2) == "up" for n in nodes[:2]))
                relink.append(done - at)
                assert victim.proc is not None
                at = time.monotonic()
                victim.proc.send_signal(signal.SIGTERM)  # detection, not the whole shutdown
                done = wait(lambda: all(state_of(n, 2) == "down" for n in nodes[:2]))
                term.append(done - at)
                victim.proc.wait(30)
                victim.kill()  # reaps it
                victim.start()
                wait(lambda: all(alive(n) == 3 for n in nodes))
        finally:
            stop(nodes)
    for name, values in (("kill -9", kill), ("SIGTERM", term)):
        print(
            f"down on every peer after {name}: median {statistics.median(values):.2f} s "
            f"(timeout 6 s; runs: {', '.join(f'{v:.2f}' for v in values)})"
        )
    print(
        f"relinked on every peer after a restart, from ready: median "
        f"{statistics.median(relink):.2f} s (runs: {', '.join(f'{v:.2f}' for v in relink)})"
    )


def loop_lag_max_ms(port: int) -> float:
    import redis

    with redis.Redis(port=port) as r:
        return float(r.info("server")["event_loop_lag_max_ms"])


def idle_cost(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        nodes, _, _ = start_cluster(Path(d), 5)
        try:
            time.sleep(5)
            pids = [n.proc.pid for n in nodes if n.proc is not None]
            before = [cpu_s(p) for p in pids]
            time.sleep(seconds)
            after = [cpu_s(p) for p in pids]
            cpu = [100 * (b - a) / seconds for a, b in zip(before, after, strict=True)]
            rss = [rss_mb(p) for p in pids]
            lag = [loop_lag_max_ms(n.port) for n in nodes]
        finally:
            stop(nodes)
    print(
        f"idle 5-node cluster over {seconds:.0f} s: CPU per node "
        f"{', '.join(f'{c:.2f}%' for c in cpu)} of one core; RSS per node "
        f"{', '.join(f'{r:.0f}' for r in rss)} MB; worst event-loop lag since start "
        f"{', '.join(f'{x:.0f}' for x in lag)} ms"
    )


def mdns_formed(lab, nodes: list[NodeProcess]) -> bool:  # type: ignore[no-untyped-def]
    return all(
        lab.info_cluster(i, n.port).get("nodes_alive") == str(len(nodes))
        for i, n in enumerate(nodes)
    )


def mdns_formation(repeat: int) -> None:
    from netlab import CLUSTER_PORT, Lab, exclusive, teardown_namespaces

    times = []
    for _ in range(repeat):
        with exclusive():
            teardown_namespaces()
            lab = Lab(3)
            nodes: list[NodeProcess] = []
            with tempfile.TemporaryDirectory() as d:
                try:
                    for i in range(3):
                        node = NodeProcess(
                            Path(d) / f"h{i}", "-n", "3", "-i", str(i),
                            "--cluster-address", f"/ip4/0.0.0.0/tcp/{CLUSTER_PORT}",
                            prefix=("ip", "netns", "exec", lab.hosts[i]),
                        )  # fmt: skip
                        nodes.append(node)
                    spawned, ready = start_all(nodes)

                    done = wait(lambda lab=lab, nodes=nodes: mdns_formed(lab, nodes))
                    times.append((done - spawned, done - ready))
                finally:
                    stop(nodes)
                    teardown_namespaces()
    print(
        f"formation by mDNS, 3 hosts: median {statistics.median(t for t, _ in times):.2f} s "
        f"from spawn, {statistics.median(r for _, r in times):.2f} s after the last node was "
        f"ready (runs: {', '.join(f'{t:.2f}/{r:.2f}' for t, r in times)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-mdns", action="store_true")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    options = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    start_time(options.repeat)
    formation(3, options.repeat)
    formation(5, options.repeat)
    if not options.skip_mdns and os.geteuid() == 0:
        mdns_formation(options.repeat)
    detection(options.repeat)
    idle_cost(options.idle_seconds)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
