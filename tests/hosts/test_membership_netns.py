"""Membership across hosts: network namespaces joined by a bridge (root only).

Zero-config formation by mDNS, two clusters on one LAN staying apart, a node cut off at the
bridge marked down and back when restored, and formation from a DNS name with three addresses.
Every namespace and process is removed when the tests end (also after a crashed run: names
carry a prefix, and leftovers are deleted first).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterproc import DOWN_TIMEOUT_S, HEARTBEAT_S, peers, wait_for
from netlab import CLUSTER_PORT, PREFIX, Lab, exclusive, sh, teardown_namespaces
from nodeproc import NodeProcess

from sierradb.p2p.runtime import DNS_REFRESH_S

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]

FORM_S = 40.0


@pytest.fixture
def lab() -> Iterator:
    with exclusive():
        teardown_namespaces()
        labs: list[Lab] = []

        def make(hosts: int) -> Lab:
            labs.append(Lab(hosts))
            return labs[-1]

        try:
            yield make
        finally:
            teardown_namespaces()
        assert not [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(PREFIX)]


@pytest.fixture
def ns_nodes(tmp_path: Path) -> Iterator:
    nodes: list[NodeProcess] = []

    def start(lab: Lab, host: int, node_count: int, index: int, *extra: str) -> NodeProcess:
        node = NodeProcess(
            tmp_path / f"h{host}",
            "--node-count", str(node_count), "--node-index", str(index),
            "--cluster-address", f"/ip4/0.0.0.0/tcp/{CLUSTER_PORT}",
            "--heartbeat-interval", str(HEARTBEAT_S), "--down-timeout", str(DOWN_TIMEOUT_S),
            *extra,
            prefix=("ip", "netns", "exec", lab.hosts[host]),
        )  # fmt: skip
        nodes.append(node)
        return node.start(wait=False)

    yield start
    for node in nodes:
        node.kill()


def info(lab: Lab, host: int, port: int) -> dict[str, str]:
    return lab.info_cluster(host, port)


def alive(lab: Lab, host: int, node: NodeProcess) -> int:
    return int(info(lab, host, node.port).get("nodes_alive", 0))


def wait_formed(lab: Lab, nodes: list[tuple[int, NodeProcess]], count: int) -> None:
    for _, node in nodes:
        node.wait_ready()
    for host, node in nodes:
        wait_for(lambda h=host, n=node: alive(lab, h, n) == count, FORM_S, f"{count} alive")


def test_three_hosts_form_a_cluster_by_mdns_with_nothing_configured(lab, ns_nodes):
    net = lab(3)
    nodes = [(i, ns_nodes(net, i, 3, i)) for i in range(3)]
    wait_formed(net, nodes, 3)
    for host, node in nodes:
        rows = info(net, host, node.port)
        assert rows["listen_addresses"] == f"/ip4/{net.ip(host)}/tcp/{CLUSTER_PORT}"
        for peer in peers(rows):
            assert "0.0.0.0" not in peer["addresses"]
            assert peer["state"] == "up"
    assert len({info(net, h, n.port)["cluster_id"] for h, n in nodes}) == 1


def test_two_clusters_with_different_names_on_one_lan_stay_apart(lab, ns_nodes):
    net = lab(6)
    a = [(i, ns_nodes(net, i, 3, i, "--cluster-name", "alpha")) for i in range(3)]
    b = [(3 + i, ns_nodes(net, 3 + i, 3, i, "--cluster-name", "beta")) for i in range(3)]
    wait_formed(net, a + b, 3)
    time.sleep(3)  # long enough for any stray discovery to show
    for group, others in ((a, b), (b, a)):
        foreign = {n.peer_id for _, n in others}
        ids = {info(net, h, n.port)["cluster_id"] for h, n in group}
        assert len(ids) == 1
        for host, node in group:
            rows = info(net, host, node.port)
            assert rows["nodes_alive"] == "3"
            assert not foreign & {p["peer_id"] for p in peers(rows)}
    ids_a = {info(net, h, n.port)["cluster_id"] for h, n in a}
    ids_b = {info(net, h, n.port)["cluster_id"] for h, n in b}
    assert ids_a != ids_b


def test_a_host_cut_off_at_the_bridge_is_down_and_comes_back(lab, ns_nodes):
    net = lab(3)
    nodes = [(i, ns_nodes(net, i, 3, i)) for i in range(3)]
    wait_formed(net, nodes, 3)
    net.cut(0)

    def state_of_0(host: int, node: NodeProcess) -> str:
        rows = [p for p in peers(info(net, host, node.port)) if p["node_index"] == "0"]
        return rows[0]["state"] if rows else "none"

    for host, node in nodes[1:]:
        wait_for(lambda h=host, n=node: state_of_0(h, n) == "down", DOWN_TIMEOUT_S + 10, "down")
    wait_for(lambda: alive(net, 0, nodes[0][1]) == 1, DOWN_TIMEOUT_S + 10, "it sees itself alone")
    net.cut(0, cut=False)
    wait_formed(net, nodes, 3)


def test_a_dns_name_with_three_addresses_is_enough_to_form(lab, ns_nodes):
    net = lab(3)
    hosts = "".join(f"{net.ip(i)} sierradb-nodes\n" for i in range(3))
    for i in range(3):
        net.hosts_file(i, f"127.0.0.1 localhost\n{hosts}")
    peer = f"/dns4/sierradb-nodes/tcp/{CLUSTER_PORT}"
    nodes = [(i, ns_nodes(net, i, 3, i, "--mdns", "false", "--peer", peer)) for i in range(3)]
    wait_formed(net, nodes, 3)


def test_a_dns_name_is_resolved_again_as_hosts_come_and_go(lab, ns_nodes):
    net = lab(3)
    both = "".join(f"{net.ip(i)} sierradb-nodes\n" for i in range(2))
    for i in range(2):
        net.hosts_file(i, f"127.0.0.1 localhost\n{both}")
    net.hosts_file(2, "127.0.0.1 localhost\n10.213.0.99 sierradb-nodes\n")  # nobody there yet
    peer = f"/dns4/sierradb-nodes/tcp/{CLUSTER_PORT}"
    nodes = [(i, ns_nodes(net, i, 3, i, "--mdns", "false", "--peer", peer)) for i in range(3)]
    wait_formed(net, nodes[:2], 2)
    time.sleep(2 * DNS_REFRESH_S)
    # An INFO that did not answer (redis-cli found no reply) says nothing either way: read again.
    wait_for(lambda: "nodes_alive" in info(net, 2, nodes[2][1].port), 30, "INFO from node 2")
    assert alive(net, 2, nodes[2][1]) == 1, "node 2 found a peer its DNS name does not list"
    net.hosts_file(2, f"127.0.0.1 localhost\n{both}")  # the name now lists nodes 0 and 1
    wait_formed(net, nodes, 3)
