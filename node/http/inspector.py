"""The inspector's shared state: the node's components that the HTTP handlers read, and the
HTTP side's own counters. Every module of ``node/http`` that needs them imports this one; it
imports none of them (the package's imports form a DAG: ``events`` -> ``responses`` ->
``inspector`` -> ``reads`` -> ``api``/``feed``/``metrics`` -> ``app`` -> ``server``)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

from ..commands import SERVER_VERSION
from ..config import Config, parse_host_port
from ..database import Database
from ..info import info_text
from ..server import Server
from . import auth

if TYPE_CHECKING:
    from ..replication.service import ReplicationService

# Disk use is measured by walking the data dir at most this often.
DISK_USAGE_CACHE_S = 5.0
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True, slots=True)
class HttpStatistics:
    connections: int  # open now
    connections_total: int
    rejected_connections: int  # over MAX_HTTP_CONNECTIONS
    stalled_connections: int  # dropped because they stopped reading
    responses: dict[int, int]  # status code -> responses
    feeds: int  # live feeds open now
    feed_events: int  # events sent on live feeds
    feed_skipped: int  # events live tails passed over (``tail.py``)


class HttpPort(Protocol):
    """What the handlers read of the HTTP server (``server.HttpServer``)."""

    url_address: str
    history: deque[tuple[float, int]]
    connections: int

    def statistics(self) -> HttpStatistics: ...


class Inspector:
    """What the HTTP handlers share: the node's components and the HTTP side's own counters."""

    def __init__(self, config: Config, db: Database, server: Server, http: HttpPort) -> None:
        self.config = config
        self.db = db
        self.server = server
        self.http = http
        self.version = SERVER_VERSION
        self.sessions = auth.Sessions()
        self.responses: dict[int, int] = {}
        self.feeds_open = 0
        self.feed_events = 0
        self.feed_skipped = 0
        self.http_auth_failures = 0
        self._disk_checked = -DISK_USAGE_CACHE_S
        self._disk_bytes = 0
        self.assets = load_assets()

    def ready(self) -> tuple[bool, str]:
        """Recovery is done before the event loop starts; ready once clients are served and,
        in a cluster, the node knows the topology: it belongs to a formed cluster (it has the
        cluster id), is not refused for a conflict, and is not a learner awaiting admission."""
        if self.server.stopping:
            return False, "shutting down"
        if not self.server.port:
            return False, "starting"
        cluster = self.server.cluster
        if cluster is not None:
            m = cluster.statistics().membership
            if m.conflict is not None:
                return False, f"refused by the cluster: {m.conflict}"
            if m.cluster_id is None:
                return False, "waiting for the cluster to form"
            if m.learner:
                return False, "a learner, waiting to be admitted"
        return True, "ready"

    @property
    def replication(self) -> ReplicationService | None:
        """The replication service on a cluster member; None on a single node."""
        return self.server.replication

    def holds(self, p: int) -> bool:
        """Whether partition `p` is read here (else from a node that holds a replica)."""
        replication = self.replication
        return replication is None or p in replication.replicas

    def client_address(self) -> str:
        """The RESP address as bound (the configured one may say port 0)."""
        host = parse_host_port(self.config.client_address)[0]
        return f"[{host}]:{self.server.port}" if ":" in host else f"{host}:{self.server.port}"

    def visible_events(self) -> int:
        """Visible events in the partitions this node holds."""
        store = self.db.store
        return sum(store.watermark(p) for p in range(store.partition_count) if self.holds(p))

    def disk_bytes(self) -> int:
        now = time.monotonic()
        if now - self._disk_checked >= DISK_USAGE_CACHE_S:
            self._disk_checked = now
            self._disk_bytes = _tree_bytes(str(self.config.dir))
        return self._disk_bytes

    def cluster_info(self) -> dict[str, Any]:
        """INFO cluster's fields, and its member table (the other nodes as this one sees them)."""
        text = info_text(self.server, (b"cluster",))
        rows = [line.split(":", 1) for line in text.splitlines() if ":" in line]
        info = {k: v for k, v in rows if not (k.startswith("peer") and k[4:].isdigit())}
        cluster = self.server.cluster
        members = []
        if cluster is not None:
            members = [dataclasses.asdict(p) for p in cluster.statistics().membership.peers]
        return {"info": info, "node_count": self.config.node_count, "members": members}


def _tree_bytes(path: str) -> int:
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    total += _tree_bytes(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        pass  # a segment sealed or removed meanwhile: the next walk counts it
    return total


def load_assets() -> dict[str, tuple[bytes, str, str]]:
    """Every file of ``static/``: name -> (bytes, content type, ETag)."""
    assets = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        ext = os.path.splitext(item.name)[1]
        if item.is_file() and ext in CONTENT_TYPES:
            data = item.read_bytes()
            etag = f'"{hashlib.sha256(data).hexdigest()[:20]}"'
            assets[item.name] = (data, CONTENT_TYPES[ext], etag)
    return assets
