"""A virtual LAN for tests and benchmarks (root): a bridge namespace and host namespaces
`sdbt-h<i>` with address 10.213.0.1<i>/24, multicast routed (mDNS works between them).

Names carry a prefix, and `teardown_namespaces` removes every namespace with it (and the
processes in them), so a crashed run leaves nothing behind for the next. The names and addresses
are fixed, so two runs on one machine (two checkouts' suites at once) would tear down and share
each other's hosts: hold `exclusive()` for a lab's whole life, and a second run waits its turn.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from clusterproc import parse_info

PREFIX = "sdbt"
BRIDGE = f"{PREFIX}-br"
SUBNET = "10.213.0"
CLUSTER_PORT = 7000
CLIENT_IP = "10.213.0.100"


LOCK_PATH = "/run/lock/sierradb-netlab.lock"


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One virtual LAN per machine at a time (see the module docstring); released on exit,
    and by the kernel if the process dies."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    with open(LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def teardown_namespaces() -> None:
    listed = sh("ip", "netns", "list", check=False).stdout.split()
    for name in listed:
        if name.startswith(PREFIX + "-"):
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                sh("kill", "-9", pid, check=False)
            # A namespace outlives its name while a process is in it: wait for them to exit.
            deadline = time.monotonic() + 10
            while sh("ip", "netns", "pids", name, check=False).stdout.split():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            sh("ip", "netns", "del", name, check=False)
    sh("ip", "link", "del", f"{PREFIX}c", check=False)  # the client veth, if a run left it
    for name in os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else ():
        if name.startswith(PREFIX + "-"):
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


class Lab:
    """A bridge namespace and host namespaces `<prefix>-h<i>` with 10.213.0.1<i>/24 each."""

    def __init__(self, hosts: int, client_access: bool = False) -> None:
        """With `client_access`, this (root) namespace gets CLIENT_IP on the bridge too, so a
        test's clients reach the nodes directly (nothing here multicasts)."""
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
        if client_access:
            sh("ip", "link", "add", f"{PREFIX}c", "type", "veth", "peer", "name", f"{PREFIX}cp")
            sh("ip", "link", "set", f"{PREFIX}cp", "netns", BRIDGE)
            sh("ip", "-n", BRIDGE, "link", "set", f"{PREFIX}cp", "master", "br0")
            sh("ip", "-n", BRIDGE, "link", "set", f"{PREFIX}cp", "up")
            sh("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", f"{PREFIX}c")
            sh("ip", "link", "set", f"{PREFIX}c", "up")

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

    def info_cluster(self, host: int, port: int) -> dict[str, str]:
        """INFO cluster of a node listening on 127.0.0.1:`port` inside host namespace `host`."""
        out = sh("ip", "netns", "exec", self.hosts[host], "redis-cli", "-p", str(port), "INFO",
                 "cluster", check=False).stdout  # fmt: skip
        return parse_info(out)

    def drop(self, source: int, dest: int) -> None:
        """Drop every IPv4 packet from host `source` to host `dest` at the bridge (one way)."""
        rules = sh("ip", "netns", "exec", BRIDGE, "nft", "list", "tables", check=False).stdout
        if "sdbt" not in rules:
            sh("ip", "netns", "exec", BRIDGE, "nft", "add", "table", "bridge", "sdbt")
            sh("ip", "netns", "exec", BRIDGE, "nft", "add", "chain", "bridge", "sdbt", "forward",
               "{ type filter hook forward priority 0 ; }")  # fmt: skip
        sh("ip", "netns", "exec", BRIDGE, "nft", "add", "rule", "bridge", "sdbt", "forward",
           "ip", "saddr", self.ip(source), "ip", "daddr", self.ip(dest), "drop")  # fmt: skip

    def heal(self) -> None:
        """Remove every one-way drop."""
        sh("ip", "netns", "exec", BRIDGE, "nft", "delete", "table", "bridge", "sdbt", check=False)
