"""Replication with real node processes on 127.0.0.1: appends through any node, failover under
load (kill -9, SIGSTOP), restarts and catch-up, a rolling restart, five nodes with RF 3, and
subscriptions across failovers; a history checker after each."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest
import redis
from clusterload import Writers, check_history, partition_log
from clusterproc import (
    DOWN_TIMEOUT_S,
    alive,
    cluster_args,
    info_cluster,
    peer_arg,
    pin_cluster_port,
    start_cluster,
    wait_for,
)

from sierradb.node.identifiers import (
    format_uuid,
    new_event_id,
    partition_hash,
    partition_key_for_stream,
)
from sierradb.p2p.channels import REPLICATION_PROTOCOL
from sierradb.p2p.data_links import MAGIC, SALT_BYTES

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

FORM_S = 40.0
PARTITIONS = 8  # fewer partitions: elections and checks stay quick


def cluster(node_factory, count: int, *extra: str):  # type: ignore[no-untyped-def]
    nodes = start_cluster(
        node_factory, count, "--partitions", str(PARTITIONS), "--buckets", "2", *extra
    )
    for node in nodes:
        wait_for(lambda n=node: alive(n) == count, FORM_S, "formation")
    for node in nodes:
        wait_for(lambda n=node: all_led(n), FORM_S, "a leader for every partition")
    return nodes


def all_led(node) -> bool:  # type: ignore[no-untyped-def]
    info = info_cluster(node.port)
    rows = [v for k, v in info.items() if k.startswith("partition") and k[9:].isdigit()]
    return bool(rows) and all("leader=none" not in row for row in rows)


def converged(ports: list[int]) -> bool:
    logs = [[partition_log(port, p) for p in range(PARTITIONS)] for port in ports]
    return all(log == logs[0] for log in logs)


def append(port: int, stream: str, payload: str) -> dict:
    key = partition_key_for_stream(stream.encode())
    eid = format_uuid(new_event_id(partition_hash(key)))
    r = redis.Redis(port=port, protocol=3)
    return r.execute_command("EAPPEND", stream, "E", "EVENT_ID", eid, "PAYLOAD", payload)


def test_appends_through_every_node_are_readable_on_every_node_at_once(node_factory):
    nodes = cluster(node_factory, 3)
    for i, node in enumerate(nodes):
        r = redis.Redis(port=node.port, protocol=3)
        reply = r.execute_command("EAPPEND", f"s{i}", "E", "PAYLOAD", f"p{i}")
        # Read-your-writes on the connection that appended, whoever leads the partition.
        event = r.execute_command("EGET", reply[b"event_id"])
        assert event is not None and event[b"payload"] == f"p{i}".encode()
    for node in nodes:
        r = redis.Redis(port=node.port, protocol=3)
        wait_for(lambda r=r: visible_everywhere(r), 10, "every append visible on every node")


def visible_everywhere(r: redis.Redis) -> bool:
    return all(r.execute_command("ESCAN", f"s{i}", "-", "+")[b"events"] for i in range(3))


def test_replication_rides_the_data_port_which_refuses_strangers(node_factory):
    with socket.socket() as probe:  # a free port for node 0's --data-port
        probe.bind(("127.0.0.1", 0))
        fixed = probe.getsockname()[1]
    shape = ("--partitions", str(PARTITIONS), "--buckets", "2")
    first = node_factory(*cluster_args(3, 0, *shape, "--data-port", str(fixed)))
    nodes = [first] + [node_factory(*cluster_args(3, i, *peer_arg(first), *shape)) for i in (1, 2)]
    for node in nodes:
        wait_for(lambda n=node: alive(n) == 3 and all_led(n), FORM_S, "formation and leaders")
    ports = [int(info_cluster(n.port)["data_port"]) for n in nodes]
    assert ports[0] == fixed and all(ports) and len(set(ports)) == 3
    # Someone who is not a linked member: garbage, then a member's peer id with a made-up MAC.
    member = nodes[1].peer_id.encode()
    protocol = REPLICATION_PROTOCOL.encode()
    openings = [
        b"GET / HTTP/1.0\r\n\r\n" + bytes(60),
        MAGIC + bytes([len(member)]) + member + bytes([len(protocol)]) + protocol + bytes(48),
    ]
    for opening in openings:
        with socket.create_connection(("127.0.0.1", fixed), timeout=10) as sock:
            salt = b""
            while len(salt) < SALT_BYTES:
                salt += sock.recv(SALT_BYTES - len(salt))
            sock.sendall(opening)
            assert sock.recv(1) == b""  # closed, never accepted
    assert info_cluster(first.port)["data_connections_refused"] == "2"
    for i, node in enumerate(nodes):  # the members' own traffic still flows, every way round
        append(node.port, f"after{i}", "x")
    wait_visible_everywhere(nodes, [f"after{i}" for i in range(3)])


def wait_visible_everywhere(nodes, streams: list[str]) -> None:  # type: ignore[no-untyped-def]
    def present(r: redis.Redis) -> bool:
        return all(r.execute_command("ESCAN", s, "-", "+")[b"events"] for s in streams)

    for node in nodes:
        r = redis.Redis(port=node.port, protocol=3)
        wait_for(lambda r=r: present(r), 10, "every append visible on every node")


def test_a_retry_with_the_same_event_id_through_another_node_appends_once(node_factory):
    nodes = cluster(node_factory, 3)
    key = partition_key_for_stream(b"once")
    eid = format_uuid(new_event_id(partition_hash(key)))
    replies = [
        redis.Redis(port=n.port, protocol=3).execute_command(
            "EAPPEND", "once", "E", "EVENT_ID", eid
        )
        for n in nodes
    ]
    assert len({(r[b"partition_sequence"], r[b"stream_version"]) for r in replies}) == 1
    events = redis.Redis(port=nodes[0].port, protocol=3).execute_command("ESCAN", "once", "-", "+")
    assert len(events[b"events"]) == 1


def test_a_retry_of_a_confirmed_append_is_answered_once_on_its_connection(node_factory):
    # On the node that leads the partition, a retry of an append that is confirmed already is
    # decided as soon as it is handed over; its reply must be sent once, or the client takes
    # the copy for the reply to its next request. Every node, streams over every partition.
    nodes = cluster(node_factory, 3)
    for node in nodes:
        r = redis.Redis(port=node.port, protocol=3)
        for i in range(2 * PARTITIONS):
            stream = f"retry-{node.port}-{i}"
            key = partition_key_for_stream(stream.encode())
            eid = format_uuid(new_event_id(partition_hash(key)))
            first = r.execute_command("EAPPEND", stream, "E", "EVENT_ID", eid)
            assert r.execute_command("EAPPEND", stream, "E", "EVENT_ID", eid) == first
            assert r.execute_command("PING") is True, (node.port, stream)
            pipe = r.pipeline(transaction=False)
            pipe.execute_command("EAPPEND", stream, "E", "EVENT_ID", eid)
            pipe.execute_command("PING")
            pipe.execute_command("ESVER", stream)
            assert pipe.execute() == [first, True, 0], (node.port, stream)


def test_kill_9_of_a_leader_under_load_loses_no_acknowledged_append(node_factory):
    nodes = cluster(node_factory, 3)
    writers = Writers([n.port for n in nodes]).start()
    wait_for(lambda: writers.count() >= 100, 60, "load")
    leader = nodes[0]  # the preferred leader of a third of the partitions
    leader.kill()
    before = writers.count()
    wait_for(lambda: writers.count() >= before + 100, 60, "writes resume after the failover")
    pin_cluster_port(leader)
    leader.start()
    wait_for(lambda: writers.count() >= before + 200, 60, "writes with the node back")
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    ports = [n.port for n in nodes]
    wait_for(lambda: converged(ports), 60, "the restarted node caught up")
    assert check_history(ports, writers.acked, PARTITIONS) >= writers.count()


def test_a_leader_stopped_with_sigstop_for_ten_seconds(node_factory):
    nodes = cluster(node_factory, 3)
    writers = Writers([nodes[1].port, nodes[2].port]).start()
    wait_for(lambda: writers.count() >= 50, 60, "load")
    zombie = nodes[0]
    assert zombie.proc is not None
    zombie.proc.send_signal(signal.SIGSTOP)
    try:
        before = writers.count()
        wait_for(lambda: writers.count() >= before + 50, 60, "writes continue without it")
        time.sleep(max(0.0, 10 - DOWN_TIMEOUT_S))
    finally:
        zombie.proc.send_signal(signal.SIGCONT)
    after = writers.count()
    wait_for(lambda: writers.count() >= after + 50, 60, "writes after it resumed")
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    ports = [n.port for n in nodes]
    wait_for(lambda: converged(ports), 60, "the zombie caught up")
    check_history(ports, writers.acked, PARTITIONS)


def test_a_follower_restarted_every_few_seconds_under_load(node_factory):
    nodes = cluster(node_factory, 3)
    writers = Writers([nodes[0].port, nodes[1].port]).start()
    for _ in range(3):
        nodes[2].kill()
        time.sleep(1)
        pin_cluster_port(nodes[2])
        nodes[2].start()
        time.sleep(2)
    before = writers.count()
    wait_for(lambda: writers.count() >= before + 50, 60, "writes continue")
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    ports = [n.port for n in nodes]
    wait_for(lambda: converged(ports), 60, "the follower caught up")
    check_history(ports, writers.acked, PARTITIONS)


def test_a_rolling_restart_fails_no_write_through_the_nodes_that_stay(node_factory):
    nodes = cluster(node_factory, 3)
    for i, node in enumerate(nodes):
        others = [n.port for j, n in enumerate(nodes) if j != i]
        writers = Writers(others).start()
        wait_for(lambda w=writers: w.count() >= 30, 60, "load")
        assert node.terminate() == 0
        pin_cluster_port(node)
        node.start()
        wait_for(lambda n=node: alive(n) == 3, FORM_S, "it rejoined")
        before = writers.count()
        wait_for(lambda w=writers, b=before: w.count() >= b + 30, 60, "writes after its restart")
        writers.stop()
        assert not writers.errors, writers.errors[:5]
        # Handover before leaving: writes through the other nodes never needed a retry
        # longer than the handover (none timed out waiting for a failure detection).
    ports = [n.port for n in nodes]
    wait_for(lambda: converged(ports), 60, "converged")


def test_five_nodes_rf_3_forward_writes_and_reads(node_factory):
    nodes = cluster(node_factory, 5)
    writers = Writers([n.port for n in nodes]).start(per_port=1)
    wait_for(lambda: writers.count() >= 150, 90, "load through every node")
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    # Every node answers every partition: from its replica, or forwarded to one.
    for node in nodes:
        r = redis.Redis(port=node.port, protocol=3)
        for a in writers.acked[:20]:
            wait_for(lambda r=r, a=a: r.execute_command("EGET", a.event_id) is not None, 10, "EGET")
    info = info_cluster(nodes[0].port)
    assert int(info["partitions_replicated"]) < PARTITIONS  # so some reads were forwarded
    ports = [n.port for n in nodes]
    check_history(ports, writers.acked, PARTITIONS)


@pytest.mark.parametrize("count", [3, 5])
def test_partition_subscribers_on_every_node_see_every_event_once_across_failovers(
    node_factory, count
):
    # With five nodes and RF 3 each node holds some partitions only: `EPSUB *` relays the rest.
    nodes = cluster(node_factory, count)
    received: dict[int, list[tuple[int, int, str]]] = {i: [] for i in range(3)}
    stop = threading.Event()

    def subscribe(i: int) -> None:
        conn = redis.Redis(port=nodes[i].port, protocol=3).connection_pool.get_connection()
        conn.send_command("EPSUB", "*", "FROM", "0", "WINDOW", "1000")
        conn.read_response()
        cursor = 0
        while not stop.is_set():
            try:
                if not conn.can_read(timeout=0.5):
                    continue
                frame = conn.read_response(push_request=True)
            except redis.ConnectionError:
                return  # its node went down: the events it saw so far still count
            if isinstance(frame, list) and frame and frame[0] == b"message":
                _, sub, cursor, event = frame
                received[i].append((event[b"partition_id"], event[b"partition_sequence"],
                                    event[b"event_id"].decode()))  # fmt: skip
                if cursor % 100 == 0:
                    conn.send_command("EACK", sub, cursor)

    threads = [threading.Thread(target=subscribe, args=(i,), daemon=True) for i in (1, 2)]
    for t in threads:
        t.start()
    writers = Writers([nodes[1].port, nodes[2].port]).start()
    wait_for(lambda: writers.count() >= 80, 60, "load")
    nodes[0].kill()  # a third of the partitions fail over
    before = writers.count()
    wait_for(lambda: writers.count() >= before + 80, 60, "writes after the failover")
    writers.stop()
    acked = {a.event_id for a in writers.acked}
    wait_for(lambda: all(acked <= {e[2] for e in received[i]} for i in (1, 2)), 60, "delivery")
    stop.set()
    for i in (1, 2):
        per_partition: dict[int, list[int]] = {}
        for p, seq, _eid in received[i]:
            per_partition.setdefault(p, []).append(seq)
        for p, seqs in per_partition.items():
            assert seqs == list(range(len(seqs))), f"node {i} partition {p}: gap or duplicate"
