"""Blocking reads on a cluster: a BLOCK read on any node, whether it leads the partition, follows
it or holds no replica of it, wakes on an append made through another node (PROTOCOL.md 15)."""

from __future__ import annotations

import threading

import pytest
import redis
from clusterproc import info_cluster, wait_for
from test_replication import PARTITIONS, cluster

from sierradb.node.identifiers import partition_hash, partition_key_for_stream

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

WAKE_TIMEOUT_S = 60.0


def blocked_clients(port: int) -> int:
    text = redis.Redis(port=port).info("clients")
    return int(text["blocked_clients"])


def test_block_reads_on_every_node_wake_on_an_append_through_another(node_factory):
    nodes = cluster(node_factory, 3, "--replication-factor", "2")
    # With two replicas of each partition on three nodes, some node holds no replica of it.
    assert any(int(info_cluster(n.port)["partitions_replicated"]) < PARTITIONS for n in nodes)
    stream = "blocked-stream"
    p = partition_hash(partition_key_for_stream(stream.encode())) % PARTITIONS
    last = redis.Redis(port=nodes[0].port).execute_command("EPSEQ", p)
    nxt = 0 if last is None else last + 1

    results: dict[tuple[int, str], object] = {}
    errors: list[BaseException] = []

    def blocked(i: int, kind: str) -> None:
        r = redis.Redis(port=nodes[i].port, protocol=3, socket_timeout=WAKE_TIMEOUT_S)
        try:
            if kind == "epread":
                results[(i, kind)] = r.execute_command("EPREAD", "BLOCK", 0, "FROM", p, nxt)
            else:
                results[(i, kind)] = r.execute_command("ESCAN", stream, 0, "+", "BLOCK", 0)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    threads = [
        threading.Thread(target=blocked, args=(i, kind))
        for i in range(len(nodes))
        for kind in ("epread", "escan")
    ]
    for t in threads:
        t.start()
    for n in nodes:
        wait_for(lambda n=n: blocked_clients(n.port) >= 2, 30, "both reads blocked")
    redis.Redis(port=nodes[0].port).execute_command("EAPPEND", stream, "Woke", "PAYLOAD", "x")
    for t in threads:
        t.join(WAKE_TIMEOUT_S + 5)
    assert not errors, errors
    assert len(results) == 2 * len(nodes)
    for (i, kind), reply in results.items():
        if kind == "epread":
            assert list(reply) == [p], (i, reply)
            reply = reply[p]
        got = [(e[b"event_name"], e[b"stream_id"]) for e in reply[b"events"]]
        assert got == [(b"Woke", stream.encode())], (i, kind)
