"""INFO: Redis-style sections for redis-cli and client libraries, and the reference's INFO CACHE.

Every number comes from a component's statistics (storage, block cache, server counters, the
event-loop lag monitor); nothing here keeps state of its own.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from sierradb.storage import Store

from .placement import counts
from .version import SERVER_VERSION

if TYPE_CHECKING:
    from .context import ServerView

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


def _section(server: ServerView, name: str) -> list[tuple[str, object]]:
    db = server.db
    store = db.store
    if name == "server":
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
            ("blocked_clients", server.blocked.count),
            ("max_blocked_clients", server.config.max_blocked_clients),
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
        return _cluster_section(server)
    return []


def _info_value(text: object) -> str:
    """A value safe inside a `key:a=b,c=d` INFO line (redis clients split on ',' and '=')."""
    return str(text).replace("\r", " ").replace("\n", " ").replace(",", ";").replace("=", ":")


def _cluster_section(server: ServerView) -> list[tuple[str, object]]:
    config = server.config
    layout = counts(
        config.node_count, config.replication_factor, server.db.store.partition_count,
        config.node_index,
    )  # fmt: skip
    placement = f"replicas={layout.replicas},preferred_leader={layout.preferred_leader}"
    cluster = server.cluster
    if cluster is None:
        return [
            ("cluster_enabled", 0),
            ("node_count", config.node_count),
            ("node_index", config.node_index),
            ("replication_factor", config.replication_factor),
            ("placement", placement),
            ("partitions_led", server.db.store.partition_count),
        ]
    st = cluster.statistics()
    m = st.membership
    rows: list[tuple[str, object]] = [
        ("cluster_enabled", 1),
        ("cluster_name", st.cluster_name),
        ("cluster_id", m.cluster_id or "none"),
        ("node_count", st.node_count),
        ("node_index", st.node_index),
        ("peer_id", st.peer_id),
        ("member_id", st.member_id),
        ("incarnation", st.incarnation),
        ("listen_addresses", ";".join(st.listen_addresses)),
        ("data_port", st.data_port),
        ("data_connections_refused", st.data_refused),
        ("nodes_alive", m.nodes_alive),
        ("replication_factor", st.replication_factor),
        ("placement", placement),
        ("learner", int(m.learner)),
        ("conflict", _info_value(m.conflict or "none")),
        ("links", st.links),
        ("connections", st.connections),
        ("event_loop_stalled_s", round(st.stalled_s, 3)),
    ]
    replication = server.replication
    if replication is not None:
        stats = replication.statistics()
        rows.append(("partitions_led", sum(r.role == "leader" for r in stats)))
        rows.append(("partitions_replicated", len(stats)))
        rows.append(("forwarded_requests", replication.forwarded))
        rows.append(("stale_reads", replication.stale_reads))
        if cluster.channels is not None:
            frames, writes, dropped, lingered = cluster.channels.counts()
            rows.append(("channel_frames_sent", frames))
            rows.append(("channel_writes", writes))
            rows.append(("channel_frames_dropped", dropped))
            rows.append(("channel_lingers", lingered))
            rows.append(("event_loop_busy", round(cluster.channels.load.busy(), 2)))
        for r in stats:
            followers = ";".join(f"{n}:{match}:{lag}" for n, match, lag in r.followers)
            fields = {
                "role": r.role,
                "fresh": int(r.fresh),
                "term": r.term,
                "leader": "none" if r.leader is None else r.leader,
                "watermark": r.watermark,
                "last": f"{r.last[0]}/{r.last[1]}",
                "accepting": int(r.accepting),
                "followers": followers or "none",
            }
            rows.append(
                (f"partition{r.partition}", ",".join(f"{k}={v}" for k, v in fields.items()))
            )
    for i, peer in enumerate(m.peers):
        fields = {
            "node_index": "none" if peer.node_index is None else peer.node_index,
            "peer_id": peer.peer_id,
            "member_id": peer.member_id or "none",
            "addresses": ";".join(peer.addresses) or "none",
            "client_address": peer.client_address or "none",
            "state": peer.state,
            "heartbeat_age_ms": _ms(peer.heartbeat_age_s),
            "rtt_ms": _ms(peer.rtt_s),
            "incarnation": "none" if peer.incarnation is None else peer.incarnation,
            "reason": _info_value(peer.reason or "none"),
        }
        rows.append((f"peer{i}", ",".join(f"{k}={v}" for k, v in fields.items())))
    return rows


def _ms(seconds: float | None) -> object:
    return "none" if seconds is None else round(seconds * 1000, 1)


def info_text(server: ServerView, sections: tuple[bytes, ...]) -> str:
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
