"""A node process for the tests: `python -m sierradb.node` on 127.0.0.1, port chosen by the kernel.

A module of its own (not conftest) so that test helpers can import it by name.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = re.compile(rb"ready to receive connections on [^:]+:(\d+)")
# A cluster node logs its peer id and where its cluster port listens before it is ready.
CLUSTER_LISTENING = re.compile(rb"peer id (\S+), listening on /ip[46]/[^/]+/tcp/(\d+)")
# Logged before READY when the HTTP port is on (with the client on port 0 it is on port 0 too).
HTTP_READY = re.compile(rb"inspector, JSON API and /metrics on http://(.+):(\d+)")
START_TIMEOUT_S = 30.0


class NodeProcess:
    """A `python -m sierradb.node` child; `port` is known once it logged that it is ready."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = env
        self.prefix = prefix  # e.g. ("ip", "netns", "exec", ns): it execs, so the pid stays
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.cluster_port = 0
        self.peer_id = ""
        self.http_port = 0  # 0: the HTTP port is off
        self.log = bytearray()
        self._ready = threading.Event()
        self._pump_thread: threading.Thread | None = None

    def start(self, wait: bool = True) -> NodeProcess:
        cmd = [
            *self.prefix,
            sys.executable,
            "-m",
            "sierradb.node",
            "--dir",
            str(self.data_dir),
            "--client-address",
            "127.0.0.1:0",
            *self.args,
        ]
        env = dict(os.environ)
        env.update(self.env or {})
        self.log.clear()
        self.http_port = 0
        self._ready.clear()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self._pump_thread = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self._pump_thread.start()
        if wait:
            self.wait_ready()
        return self

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log += line
            cluster = CLUSTER_LISTENING.search(line)
            if cluster:
                self.peer_id = cluster.group(1).decode()
                self.cluster_port = int(cluster.group(2))
            m = HTTP_READY.search(line)
            if m:
                self.http_port = int(m.group(2))
            m = READY.search(line)
            if m:
                self.port = int(m.group(1))
                self._ready.set()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready.wait(0.05):
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not start:\n{self.log.decode(errors='replace')}")

    def _reap(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait for the exit, and return its code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reap()
        return code

    def output(self) -> str:
        return self.log.decode(errors="replace")
