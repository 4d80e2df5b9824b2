"""Replication across hosts (network namespaces on a bridge; root only): a node cut off refuses
writes it cannot get a majority for while the others go on; writes to every partition succeed
during a one-way cut and during an A-B-only cut; healing converges with no divergence."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from clusterload import Writers, check_history, partition_log
from clusterproc import DOWN_TIMEOUT_S, HEARTBEAT_S, wait_for
from netlab import CLUSTER_PORT, Lab, exclusive, teardown_namespaces
from nodeproc import NodeProcess

from sierradb.node.identifiers import (
    format_uuid,
    new_event_id,
    partition_hash,
    partition_id,
    partition_key_for_stream,
)

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables"),
]

PARTITIONS = 8
CLIENT_PORT = 9090


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[Lab, list[NodeProcess]]]:
    with exclusive():
        yield from _net(tmp_path)


def _net(tmp_path: Path) -> Iterator[tuple[Lab, list[NodeProcess]]]:
    teardown_namespaces()
    nodes: list[NodeProcess] = []
    try:
        lab = Lab(3, client_access=True)
        for i in range(3):
            node = NodeProcess(
                tmp_path / f"h{i}",
                "-n", "3", "-i", str(i), "--cluster-address", f"/ip4/0.0.0.0/tcp/{CLUSTER_PORT}",
                "--partitions", str(PARTITIONS), "--buckets", "2",
                "--heartbeat-interval", str(HEARTBEAT_S), "--down-timeout", str(DOWN_TIMEOUT_S),
                "--client-address", f"0.0.0.0:{CLIENT_PORT}", "--protected-mode", "no",
                prefix=("ip", "netns", "exec", lab.hosts[i]),
            )  # fmt: skip
            nodes.append(node.start(wait=False))
        for node in nodes:
            node.wait_ready()
        for i in range(3):
            wait_for(lambda i=i: all_led(lab, i), 60, "a leader for every partition")
        yield lab, nodes
    finally:
        for node in nodes:
            node.kill()
        teardown_namespaces()


def all_led(lab: Lab, i: int) -> bool:
    info = lab.info_cluster(i, CLIENT_PORT)
    rows = [v for k, v in info.items() if k.startswith("partition") and k[9:].isdigit()]
    return (
        info.get("nodes_alive") == "3" and bool(rows) and all("leader=none" not in r for r in rows)
    )


def client(lab: Lab, i: int) -> redis.Redis:
    return redis.Redis(host=lab.ip(i), port=CLIENT_PORT, protocol=3, socket_timeout=10)


def streams_per_partition() -> dict[int, str]:
    """A stream name that lands in each partition."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < PARTITIONS:
        name = f"probe{n}"
        found.setdefault(partition_id(partition_key_for_stream(name.encode()), PARTITIONS), name)
        n += 1
    return found


def writable_everywhere(lab: Lab, via: int) -> bool:
    """One append to every partition through node `via` succeeds."""
    r = client(lab, via)
    for stream in streams_per_partition().values():
        key = partition_key_for_stream(stream.encode())
        eid = format_uuid(new_event_id(partition_hash(key)))
        try:
            r.execute_command("EAPPEND", stream, "Probe", "EVENT_ID", eid)
        except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):
            return False
    return True


def converged(lab: Lab) -> bool:
    logs = [[partition_log(CLIENT_PORT, p, lab.ip(i)) for p in range(PARTITIONS)] for i in range(3)]
    return logs[0] == logs[1] == logs[2]


def in_namespace(lab: Lab, i: int, *command: str) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", lab.hosts[i], "redis-cli", "-p", str(CLIENT_PORT), *command],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.stdout.strip()


def test_a_node_cut_off_refuses_writes_while_the_others_continue(net):
    lab, _nodes = net
    writers = Writers([CLIENT_PORT, CLIENT_PORT], host=[lab.ip(1), lab.ip(2)]).start()
    wait_for(lambda: writers.count() >= 50, 60, "load")
    lab.cut(0)
    before = writers.count()
    wait_for(lambda: writers.count() >= before + 100, 90, "writes continue on the majority side")
    # On the cut-off node, every write fails (with an outcome-unknown or refusal code) in time.
    answers = [in_namespace(lab, 0, "EAPPEND", stream, "E") for stream in
               list(streams_per_partition().values())[:4]]  # fmt: skip
    for answer in answers:
        assert answer.split()[0] in ("TIMEOUT", "TRYAGAIN", "INSUFFICIENTREPLICAS",
                                     "QUORUMFAILED", "NOTLEADER"), answer  # fmt: skip
    lab.cut(0, cut=False)
    wait_for(lambda: writable_everywhere(lab, 0), 90, "the healed node takes writes again")
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    wait_for(lambda: converged(lab), 90, "no divergence after healing")
    check_history([CLIENT_PORT] * 3, writers.acked, PARTITIONS, [lab.ip(i) for i in range(3)])


@pytest.mark.parametrize("cut", ["one-way", "a-b-only"])
def test_every_partition_takes_writes_during_a_partial_cut(net, cut):
    lab, _nodes = net
    lab.drop(0, 1)
    if cut == "a-b-only":
        lab.drop(1, 0)
    # Node 2 reaches both: every partition must be writable through it, after at most one
    # failure detection and election.
    wait_for(lambda: writable_everywhere(lab, 2), 90, f"writes to every partition ({cut} cut)")
    writers = Writers([CLIENT_PORT], host=[lab.ip(2)]).start()
    wait_for(lambda: writers.count() >= 50, 60, "load during the cut")
    lab.heal()
    before = writers.count()
    wait_for(lambda: writers.count() >= before + 50, 60, "load after healing")
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    wait_for(lambda: converged(lab), 90, "no divergence after healing")
    check_history([CLIENT_PORT] * 3, writers.acked, PARTITIONS, [lab.ip(i) for i in range(3)])
