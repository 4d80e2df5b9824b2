"""Membership across hosts: network namespaces joined by a bridge (root only).

Zero-config formation by mDNS, two clusters on one LAN staying apart, a node cut off at the
bridge marked down and back when restored, and formation from a DNS name with three addresses.
Every namespace and process is removed when the tests end (also after a crashed run: names
carry a prefix, and leftovers are deleted first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterproc import DOWN_TIMEOUT_S, HEARTBEAT_S, wait_for
from nodeproc import NodeProcess

from sierradb.p2p.runtime import DNS_REFRESH_S

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]

PREFIX = "sdbt"
BRIDGE = f"{PREFIX}-br"
SUBNET = "10.213.0"
CLUSTER_PORT = 7000
FORM_S = 40.0


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def teardown_namespaces() -> None:
    listed = sh("ip", "netns", "list", check=False).stdout.split()
    for name in listed:
        if name.startswith(PREFIX + "-"):
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                sh("kill", "-9", pid, check=False)
            sh("ip", "netns", "del", name, check=False)
    for name in os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else ():
        if name.startswith(PREFIX + "-"):
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


class Lab:
    """A bridge namespace and host namespaces `<prefix>-h<i>` with 10.213.0.1<i>/24 each."""

    def __init__(self, hosts: int) -> None:
        self.hosts = [f"{PREFIX}-h{i}" for i in range(hosts)]
        sh("ip", "netns", "add", BRIDGE)
        sh("ip", "-n", BRIDGE, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", BRIDGE, "link", "set", "br0", "up")
        for i, ns in enumerate(self.hosts):
            port = f"{PREFIX}p{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"{PREFIX}v{i}", "type", "veth", "peer", "name", port)
            sh("ip", "link", "set", f"{PREFIX}v{i}", "netns", ns)
            sh("ip", "link", "set", port, "netns", BRIDGE)
            sh("ip", "-n", ns, "link", "set", f"{PREFIX}v{i}", "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            sh("ip", "-n", BRIDGE, "link", "set", port, "master", "br0")
            sh("ip", "-n", BRIDGE, "link", "set", port, "up")

    @staticmethod
    def ip(i: int) -> str:
        return f"{SUBNET}.{11 + i}"

    def cut(self, i: int, cut: bool = True) -> None:
        state = "0" if cut else "3"
        sh("ip", "netns", "exec", BRIDGE, "bridge", "link", "set", "dev", f"{PREFIX}p{i}",
           "state", state)  # fmt: skip

    def hosts_file(self, i: int, text: str) -> None:
        directory = Path("/etc/netns") / self.hosts[i]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts").write_text(text)


@pytest.fixture
def lab() -> Iterator:
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
    out = sh("ip", "netns", "exec", lab.hosts[host], "redis-cli", "-p", str(port), "INFO",
             "cluster", check=False).stdout  # fmt: skip
    rows = {}
    for line in out.splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.strip().split(":", 1)
            rows[key] = value
    return rows


def peer_rows(rows: dict[str, str]) -> list[dict[str, str]]:
    return [
        dict(f.split("=", 1) for f in v.split(","))
        for k, v in rows.items()
        if k.startswith("peer") and k[4:].isdigit()
    ]


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
        for peer in peer_rows(rows):
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
            assert not foreign & {p["peer_id"] for p in peer_rows(rows)}
    ids_a = {info(net, h, n.port)["cluster_id"] for h, n in a}
    ids_b = {info(net, h, n.port)["cluster_id"] for h, n in b}
    assert ids_a != ids_b


def test_a_host_cut_off_at_the_bridge_is_down_and_comes_back(lab, ns_nodes):
    net = lab(3)
    nodes = [(i, ns_nodes(net, i, 3, i)) for i in range(3)]
    wait_formed(net, nodes, 3)
    net.cut(0)

    def state_of_0(host: int, node: NodeProcess) -> str:
        rows = [p for p in peer_rows(info(net, host, node.port)) if p["node_index"] == "0"]
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
    assert alive(net, 2, nodes[2][1]) == 1, "node 2 found a peer its DNS name does not list"
    net.hosts_file(2, f"127.0.0.1 localhost\n{both}")  # the name now lists nodes 0 and 1
    wait_formed(net, nodes, 3)
