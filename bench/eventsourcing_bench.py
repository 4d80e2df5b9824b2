#!/usr/bin/env python3
"""The `eventsourcing` library's application on SierraDB, SQLite and PostgreSQL side by side,
and the Python client's cost per append over raw redis-py.

Part 1: one `Application` per system; W writer threads each save new one-event aggregates
(`app.save(User(payload))`, the ~200-byte `payload.json` of the peer baselines) for a fixed
number of seconds, then load them back (`app.repository.get`). Prints events saved per second
and per-save latency, and loads per second. SierraDB runs as a fresh node (`sync always`:
fdatasync before every reply), SQLite as the library's module on a file, PostgreSQL 15 as a
private cluster (fsync on, synchronous_commit on) started and stopped by this script (as root,
from /usr/lib/postgresql/15/bin; skipped when that is missing).

Part 2: one thread appends one event at a time to a fresh stream with raw redis-py
(`execute_command("EAPPEND", ...)`, reply left unparsed) and with `sierradb.client.Client.append`
(client-made event id, typed result); the difference in this process's CPU time per append is
the client's overhead. Run against a node with `--sync none`, so that fdatasync does not hide
it in the wall time.

Needs: pip install -e '.[test]' 'eventsourcing[postgres]'  (psycopg for the PostgreSQL module)
Usage: python bench/eventsourcing_bench.py [--seconds 10] [--writers 1,8] [--systems ...]
       [--node-flags '--sync none']  (extra flags for part 1's node)
Machine-readable: one JSON object per line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from procstat import cpu_s

from sierradb.client import Client

PAYLOAD_PATH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "payload.json"
PAYLOAD = json.loads(PAYLOAD_PATH.read_text())  # ../shared/bench/payload.json, as everywhere
PG_BIN = Path("/usr/lib/postgresql/15/bin")
READY = re.compile(rb"ready to receive connections on [^:]+:(\d+)")


class User(Aggregate):
    @event("UserCreated")
    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload


# ------------------------------------------------------------------------------ systems
NODE_PIDS: list[int] = []  # the running node, so that its CPU per event can be reported
NODE_FLAGS: list[str] = []  # extra node flags for part 1 (--node-flag)


@contextmanager
def sierradb_node(*flags: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="es-bench-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sierradb.node", "--dir", tmp, "--client-address",
             "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                m = READY.search(line)
                if m:
                    break
            else:
                raise RuntimeError("the node did not start")
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain the log
            NODE_PIDS.append(proc.pid)
            yield f"127.0.0.1:{int(m[1])}"
        finally:
            NODE_PIDS.remove(proc.pid)
            proc.terminate()
            proc.wait(30)


@contextmanager
def private_postgres() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL 15 cluster on a free port (the settings of bench/pg_cluster.sh
    in ../shared: fsync on, synchronous_commit on)."""
    tmp = Path(tempfile.mkdtemp(prefix="es-bench-pg-"))
    shutil.chown(tmp, "postgres")
    data = tmp / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, PG_BIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{tmp}'\n"
            "max_connections = 100\nshared_buffers = 1GB\nfsync = on\nsynchronous_commit = on\n"
            "wal_sync_method = fdatasync\nmax_wal_size = 4GB\ncheckpoint_timeout = 15min\n"
        )
    pg_ctl = [*run_as, PG_BIN / "pg_ctl", "-D", data, "-l", tmp / "server.log", "-w"]
    subprocess.run([*pg_ctl, "start"], check=True, capture_output=True)
    try:
        yield {
            "POSTGRES_DBNAME": "postgres",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(port),
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": "",
            "POSTGRES_POOL_SIZE": "10",
        }
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def system_env(name: str) -> Iterator[dict[str, str]]:
    if name == "sierradb":
        with sierradb_node(*NODE_FLAGS) as address:
            yield {"PERSISTENCE_MODULE": "sierradb.eventsourcing", "SIERRADB_ADDRESSES": address}
    elif name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="es-bench-sqlite-") as tmp:
            yield {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                   "SQLITE_DBNAME": str(Path(tmp) / "es.sqlite")}  # fmt: skip
    elif name == "postgres":
        with private_postgres() as env:
            yield {"PERSISTENCE_MODULE": "eventsourcing.postgres", **env}
    else:
        raise ValueError(name)


# -------------------------------------------------------------------------- part 1
def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def sqlite_settings(path: str) -> dict[str, Any]:
    """How durable the SQLite module's commits are (WAL; synchronous 2 = FULL: fsync the WAL on
    every commit)."""
    import sqlite3

    c = sqlite3.connect(path)
    try:
        return {
            "journal_mode": c.execute("pragma journal_mode").fetchone()[0],
            "synchronous": c.execute("pragma synchronous").fetchone()[0],
            "sqlite": sqlite3.sqlite_version,
        }
    finally:
        c.close()


def run_application(system: str, writers: int, seconds: float) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    with system_env(system) as env:
        app = Application(env=env)
        try:
            for _ in range(20):  # warm up: connections, tables, caches
                app.save(User(PAYLOAD))
            saved: list[list[uuid.UUID]] = [[] for _ in range(writers)]
            latencies: list[list[float]] = [[] for _ in range(writers)]
            errors: list[BaseException] = []
            deadline = time.perf_counter() + seconds

            def write(i: int) -> None:
                try:
                    while time.perf_counter() < deadline:
                        user = User(PAYLOAD)
                        t = time.perf_counter()
                        app.save(user)
                        latencies[i].append(time.perf_counter() - t)
                        saved[i].append(user.id)
                except BaseException as e:  # noqa: BLE001 - reported in the result
                    errors.append(e)

            node_cpu = cpu_s(NODE_PIDS[-1]) if NODE_PIDS else 0.0
            cpu, started = time.process_time(), time.perf_counter()
            _run_threads(write, writers)
            save_s = time.perf_counter() - started
            cpu = time.process_time() - cpu
            node_cpu = (cpu_s(NODE_PIDS[-1]) if NODE_PIDS else 0.0) - node_cpu

            def read(i: int) -> None:
                for user_id in saved[i]:
                    app.repository.get(user_id)

            started = time.perf_counter()
            _run_threads(read, writers)
            load_s = time.perf_counter() - started
        finally:
            app.close()
        if system == "sqlite":
            settings = sqlite_settings(env["SQLITE_DBNAME"])
    lat = [x for per_thread in latencies for x in per_thread]
    total = sum(len(s) for s in saved)
    return {
        "part": "application",
        "system": system,
        "writers": writers,
        "events_saved": total,
        "events_per_s": round(total / save_s, 1),
        "save_p50_ms": round(percentile(lat, 0.5) * 1e3, 2),
        "save_p99_ms": round(percentile(lat, 0.99) * 1e3, 2),
        # CPU per saved event: this process (the application, the library, the client or
        # SQLite itself) and, for SierraDB, the node
        "app_cpu_us_per_event": round(cpu / max(total, 1) * 1e6, 1),
        "node_cpu_us_per_event": round(node_cpu / max(total, 1) * 1e6, 1),
        "loads_per_s": round(total / load_s, 1),
        "errors": [repr(e) for e in errors[:3]],
        **settings,
    }


def _run_threads(target: Any, count: int) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# -------------------------------------------------------------------------- part 2
def client_overhead(appends: int, rounds: int = 3) -> dict[str, Any]:
    """Wall time and this process's CPU time per append, raw redis-py against the client, on a
    node with --sync none; interleaved rounds, the best of each kept."""
    payload = json.dumps(PAYLOAD).encode()
    best: dict[str, tuple[float, float]] = {}
    with sierradb_node("--sync", "none") as address:
        host, port = address.rsplit(":", 1)
        raw = redis.Redis(host=host, port=int(port), protocol=3)
        client = Client(address)
        appenders = {
            "redis_py": lambda stream: raw.execute_command(
                "EAPPEND", stream, "E", "PAYLOAD", payload
            ),
            "client": lambda stream: client.append(stream, "E", payload),
        }
        for _ in range(rounds):
            for name, append in appenders.items():
                stream = f"overhead-{uuid.uuid4().hex}"
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(appends):
                    append(stream)
                cpu = (time.process_time() - cpu) / appends
                wall = (time.perf_counter() - wall) / appends
                old = best.get(name, (wall, cpu))
                best[name] = (min(old[0], wall), min(old[1], cpu))
        raw.close()
        client.close()
    out: dict[str, Any] = {"part": "client_overhead", "sync": "none", "appends": appends}
    for name, (wall, cpu) in best.items():
        out[f"{name}_wall_us"] = round(wall * 1e6, 1)
        out[f"{name}_cpu_us"] = round(cpu * 1e6, 1)
    out["overhead_cpu_us"] = round((best["client"][1] - best["redis_py"][1]) * 1e6, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writers", default="1,8")
    parser.add_argument("--systems", default="sierradb,sqlite,postgres")
    parser.add_argument("--appends", type=int, default=5000, help="part 2's appends; 0 skips it")
    parser.add_argument(
        "--node-flags", default="", help="extra flags for part 1's node, e.g. '--sync none'"
    )
    args = parser.parse_args()
    NODE_FLAGS.extend(args.node_flags.split())
    systems = args.systems.split(",")
    if "postgres" in systems and not (PG_BIN.exists() and os.geteuid() == 0):
        print("# skipping postgres: needs root and PostgreSQL 15", file=sys.stderr)
        systems.remove("postgres")
    for writers in [int(w) for w in args.writers.split(",")]:
        for system in systems:  # interleaved, so drift on a shared machine hits all alike
            print(json.dumps(run_application(system, writers, args.seconds)), flush=True)
    if args.appends > 0:
        print(json.dumps(client_overhead(args.appends)), flush=True)


if __name__ == "__main__":
    main()
