"""INFO: Redis-style sections for redis-cli and client libraries, and the reference's INFO CACHE.

Every number comes from a component's statistics (storage, block cache, server counters, the
event-loop lag monitor); nothing here keeps state of its own.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from sierradb.storage import Store

if TYPE_CHECKING:
    from .server import Server

SECTIONS = ("server", "clients", "stats", "storage", "cache", "cluster")


def cache_info(store: Store) -> dict[str, Any]:
    """INFO CACHE: the reference's block-cache map (blob-string keys, in its order), then the
    storage engine's other bounded cache, the stream-tip cache (next version per stream)."""
    c = store.cache.statistics()
    s = store.statistics()
    lookups = c.hits + c.misses
    return {
        "hits": c.hits,
        "misses": c.misses,
        "hit_ratio": round(c.hits / lookups, 3) if lookups else 0.0,
        "entries": c.entries,
        "memory_bytes": c.memory_bytes,
        "max_bytes": c.max_bytes,
        "block_size_bytes": c.block_size_bytes,
        "evictions": c.evictions,
        "stream_cache_hits": s.stream_cache_hits,
        "stream_cache_misses": s.stream_cache_misses,
        "stream_cache_entries": s.stream_cache_entries,
        "stream_cache_max_entries": s.stream_cache_max_entries,
        "stream_cache_bytes": s.stream_cache_bytes,
        "stream_cache_evictions": s.stream_cache_evictions,
    }


def _section(server: Server, name: str) -> list[tuple[str, object]]:
    db = server.db
    store = db.store
    if name == "server":
        from .commands import SERVER_VERSION

        return [
            ("sierradb_version", SERVER_VERSION),
            ("peer_id", server.peer_id),
            ("process_id", os.getpid()),
            ("tcp_port", server.port),
            ("uptime_in_seconds", int(time.monotonic() - server.started)),
            ("num_partitions", store.partition_count),
            ("num_buckets", store.bucket_count),
            ("data_dir", server.config.dir),
            ("event_loop_lag_ms", round(server.lag.last_s * 1000, 3)),
            ("event_loop_lag_max_ms", round(server.lag.max_s * 1000, 3)),
        ]
    if name == "clients":
        return [
            ("connected_clients", len(server.connections)),
            ("maxclients", server.config.max_clients),
            ("subscriptions", sum(len(c.subscriptions) for c in server.connections.values())),
        ]
    if name == "stats":
        st = server.stats
        flushes = sum(w.flushes for w in db.writers)
        txns = sum(w.transactions for w in db.writers)
        return [
            ("total_connections_received", st.connections),
            ("rejected_connections", st.rejected_connections),
            ("total_commands_processed", st.commands),
            ("protocol_errors", st.protocol_errors),
            ("auth_failures", st.auth_failures),
            ("subscriptions_started", st.subscriptions_started),
            ("group_commits", flushes),
            ("transactions_committed", txns),
            ("transactions_per_commit", round(txns / flushes, 2) if flushes else 0),
        ]
    if name == "storage":
        s = store.statistics()
        return [
            ("segment_size_bytes", s.segment_size_bytes),
            ("sealed_segments", s.sealed_segments),
            ("active_segment_events", s.active_events),
            ("active_index_bytes", s.active_index_bytes),
            ("pending_bytes", s.pending_bytes),
            ("bytes_written", s.bytes_written),
            ("write_failures", s.write_failures),
            ("torn_tail_cuts", s.torn_tail_cuts),
            ("open_time_s", round(db.opened_in_s, 3)),
        ]
    if name == "cache":
        return list(cache_info(store).items())
    if name == "cluster":
        return [
            ("cluster_enabled", 0),
            ("node_count", server.config.node_count),
            ("node_index", server.config.node_index),
            ("replication_factor", server.config.replication_factor),
            ("partitions_led", store.partition_count),
        ]
    return []


def info_text(server: Server, sections: tuple[bytes, ...]) -> str:
    names = [s.decode("ascii", "replace") for s in sections]
    if not names or any(n in ("all", "everything", "default") for n in names):
        names = list(SECTIONS)
    lines: list[str] = []
    for name in names:
        rows = _section(server, name)
        if not rows:
            continue
        if lines:
            lines.append("")
        lines.append(f"# {name.capitalize()}")
        lines.extend(f"{k}:{v}" for k, v in rows)
    return "\r\n".join(lines) + "\r\n"
