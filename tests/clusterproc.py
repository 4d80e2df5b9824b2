"""Cluster processes for the tests: several `sierradb` nodes on 127.0.0.1, and INFO cluster read
back as data.

Nodes run with `--mdns false` (multicast from the root namespace would reach the real network)
and short liveness settings (heartbeat 0.5 s, down after 3 s), so failures show quickly; the
mechanism is the same as with the defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis
from nodeproc import NodeProcess

HEARTBEAT_S = 0.5
DOWN_TIMEOUT_S = 3.0
T = TypeVar("T")


def cluster_args(node_count: int, index: int, *extra: str) -> tuple[str, ...]:
    return (
        "--node-count", str(node_count), "--node-index", str(index), "--mdns", "false",
        "--heartbeat-interval", str(HEARTBEAT_S), "--down-timeout", str(DOWN_TIMEOUT_S),
        "--cluster-address", "127.0.0.1:0", *extra,
    )  # fmt: skip


def peer_arg(node: NodeProcess) -> tuple[str, str]:
    """`--peer` for a node, without its peer id (learned in the handshake)."""
    return ("--peer", f"/ip4/127.0.0.1/tcp/{node.cluster_port}")


def pin_cluster_port(node: NodeProcess) -> None:
    """Restart on the same cluster port (peers know it), as a real node with a fixed port."""
    args = list(node.args)
    i = args.index("--cluster-address")
    args[i + 1] = f"127.0.0.1:{node.cluster_port}"
    node.args = tuple(args)


def info_cluster(port: int) -> dict[str, str]:
    # The raw text: redis-py would parse INFO into its own shapes.
    conn = redis.Connection(port=port, socket_timeout=10)
    try:
        conn.send_command("INFO", "cluster")
        return parse_info(conn.read_response().decode())
    finally:
        conn.disconnect()


def parse_info(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.strip().split(":", 1)
            rows[key] = value
    return rows


def peers(info: dict[str, str]) -> list[dict[str, str]]:
    """The `peerN:` lines of INFO cluster, each as a dict of its fields."""
    found = []
    for key, value in info.items():
        if key.startswith("peer") and key[4:].isdigit():
            found.append(dict(field.split("=", 1) for field in value.split(",")))
    return found


def peer_at(info: dict[str, str], node_index: int) -> list[dict[str, str]]:
    return [p for p in peers(info) if p["node_index"] == str(node_index)]


def state_of(node: NodeProcess, node_index: int) -> str | None:
    """The state of the node at an index as `node` sees it: the liveliest of its identities."""
    states = {row["state"] for row in peer_at(info_cluster(node.port), node_index)}
    return next((s for s in ("up", "learner", "refused", "down") if s in states), None)


def wait_for(check: Callable[[], T], timeout_s: float, what: str) -> T:
    """Poll until `check()` is truthy; fail naming `what` (generous deadlines only)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (redis.ConnectionError, redis.TimeoutError):
            last = None
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def alive(node: NodeProcess) -> int:
    return int(info_cluster(node.port)["nodes_alive"])


def start_cluster(
    make: Callable[..., NodeProcess],
    node_count: int,
    *extra: str,
    data_root: Path | None = None,
) -> list[NodeProcess]:
    """Node 0 first; every other node is given only node 0's address, without its peer id."""
    first = make(*cluster_args(node_count, 0, *extra))
    rest = [
        make(*cluster_args(node_count, i, *peer_arg(first), *extra), start=False)
        for i in range(1, node_count)
    ]
    for node in rest:
        node.start(wait=False)
    for node in rest:
        node.wait_ready()
    return [first, *rest]
