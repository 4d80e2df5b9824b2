"""``/metrics``: the node's statistics in the Prometheus text format.

Nothing here keeps state or sits on a hot path: each scrape asks the components for their
``statistics()`` snapshots and turns them into metric families (``prometheus_client`` does the
exposition format). Names follow Prometheus conventions: ``sierradb_`` prefix, base units
(seconds, bytes), ``_total`` for counters. Per partition there are only two gauges, so a node
with 1,024 partitions stays cheap to scrape; histograms are per command or per node, never per
partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..histogram import HistogramSnapshot

if TYPE_CHECKING:
    from .inspector import Inspector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _buckets(h: HistogramSnapshot) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*h.bounds, float("inf")), h.counts, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return out


def _merge(snapshots: list[HistogramSnapshot]) -> HistogramSnapshot:
    first = snapshots[0]
    counts = tuple(sum(c) for c in zip(*(s.counts for s in snapshots), strict=True))
    return HistogramSnapshot(first.bounds, counts, sum(s.total for s in snapshots))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, h: HistogramSnapshot) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=_buckets(h), sum_value=h.total)


PEER_STATES = ("up", "down", "learner", "refused")


def cluster_families(inspector: Inspector) -> list[Metric]:
    """Membership metrics from the p2p runtime's statistics (none on a single node, rather than
    made-up zeros). Per peer: bounded by the node count.

    The hook for replication, which does not exist yet: per-follower replication lag
    (``sierradb_replication_lag_events{peer_id}``), term changes (``sierradb_term_changes_total``)
    and forwarded requests (``sierradb_forwarded_requests_total``) belong here, read from its
    ``statistics()`` the same way.
    """
    cluster = inspector.server.cluster
    if cluster is None:
        return []
    st = cluster.statistics()
    m = st.membership
    by_state = GaugeMetricFamily("sierradb_cluster_peers", "Other nodes by state, as this node "
                                 "sees them", labels=["state"])  # fmt: skip
    for state in PEER_STATES:
        by_state.add_metric([state], sum(1 for p in m.peers if p.state == state))
    rtt = GaugeMetricFamily("sierradb_peer_rtt_seconds", "Round-trip time to a peer (heartbeat "
                            "echo)", labels=["peer_id", "node_index"])  # fmt: skip
    age = GaugeMetricFamily("sierradb_peer_heartbeat_age_seconds", "Time since a peer was last "
                            "heard", labels=["peer_id", "node_index"])  # fmt: skip
    for p in m.peers:
        labels = [p.peer_id, "" if p.node_index is None else str(p.node_index)]
        if p.rtt_s is not None:
            rtt.add_metric(labels, p.rtt_s)
        if p.heartbeat_age_s is not None:
            age.add_metric(labels, p.heartbeat_age_s)
    return [
        by_state,
        rtt,
        age,
        _gauge("sierradb_cluster_nodes_alive", "Nodes alive, this one included", m.nodes_alive),
        _gauge("sierradb_cluster_learner", "1 while this node is a learner", int(m.learner)),
        _gauge("sierradb_cluster_links", "Open peer links", st.links),
    ]


class NodeCollector(Collector):
    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector

    def collect(self) -> Iterator[Metric]:
        ins = self.inspector
        db = ins.db
        store = db.store
        srv = ins.server.statistics()
        st = store.statistics()
        writers = [w.statistics() for w in db.writers]
        commands = ins.server.command_stats.statistics()
        http = ins.http.statistics()

        info = GaugeMetricFamily(
            "sierradb_build_info",
            "Version and identity of this node",
            labels=["version", "peer_id"],
        )
        info.add_metric([ins.version, ins.server.peer_id], 1)
        yield info
        yield _gauge("sierradb_uptime_seconds", "Seconds since the node started", srv.uptime_s)
        yield _gauge(
            "sierradb_ready", "1 when the node serves requests (see /readyz)", ins.ready()[0]
        )

        requests = CounterMetricFamily(
            "sierradb_requests", "RESP requests by command and outcome (ok or the error code)",
            labels=["command", "outcome"],
        )  # fmt: skip
        for (command, outcome), n in sorted(commands.outcomes.items()):
            requests.add_metric([command, outcome], n)
        yield requests
        latency = HistogramMetricFamily(
            "sierradb_request_duration_seconds",
            "RESP request latency by command, from parsing to the reply being ready",
            labels=["command"],
        )
        for command, h in sorted(commands.latency.items()):
            latency.add_metric([command], _buckets(h), h.total)
        yield latency

        yield _counter(
            "sierradb_appended_events",
            "Events appended and confirmed",
            sum(w.events for w in writers),
        )
        yield _counter(
            "sierradb_appended_bytes", "Record bytes written to segments", st.bytes_written
        )
        yield _counter("sierradb_group_commits", "Group commits (one write + fdatasync each)",
                       sum(w.flushes for w in writers))  # fmt: skip
        yield _histogram("sierradb_group_commit_transactions", "Transactions per group commit",
                         _merge([w.batch_transactions for w in writers]))  # fmt: skip
        yield _histogram("sierradb_group_commit_sync_duration_seconds",
                         "Write plus fdatasync of one group commit",
                         _merge([w.sync_seconds for w in writers]))  # fmt: skip
        yield _counter("sierradb_write_failures", "Group commits that failed to write",
                       st.write_failures)  # fmt: skip
        checkpointer = db.checkpointer
        yield _counter("sierradb_checkpoints", "Checkpoints of the active segments' indexes "
                       "written (by their own thread)", checkpointer.written)  # fmt: skip
        yield _histogram("sierradb_checkpoint_duration_seconds",
                         "Writing one checkpoint (index snapshot, packing, write and fsync)",
                         checkpointer.seconds.snapshot())  # fmt: skip
        yield _counter("sierradb_seals", "Full segments whose index files were written (by the "
                       "checkpoints' thread)", checkpointer.sealed)  # fmt: skip
        yield _histogram("sierradb_seal_duration_seconds",
                         "Writing one full segment's index files (build, write, fsync, check)",
                         checkpointer.seal_seconds.snapshot())  # fmt: skip

        yield _gauge("sierradb_connections", "Open RESP client connections", srv.connections)
        yield _counter("sierradb_connections_received", "RESP connections accepted",
                       srv.connections_total)  # fmt: skip
        yield _counter("sierradb_connections_rejected", "RESP connections refused (limits, "
                       "protected mode)", srv.rejected_connections)  # fmt: skip
        yield _counter("sierradb_auth_failures", "Wrong passwords (RESP and HTTP)",
                       srv.auth_failures + ins.http_auth_failures)  # fmt: skip
        yield _gauge(
            "sierradb_subscriptions", "Open subscriptions (ESUB, EPSUB)", srv.subscriptions
        )
        yield _gauge(
            "sierradb_subscription_backlog_events",
            "Visible events not pushed to their subscribers yet, over all subscriptions",
            srv.subscription_backlog_events,
        )
        yield _gauge(
            "sierradb_subscription_unacknowledged_events",
            "Events pushed to subscribers and not acknowledged yet, over all subscriptions",
            srv.subscription_unacknowledged_events,
        )
        yield _gauge("sierradb_event_loop_lag_seconds", "How late the event loop woke a 100 ms "
                     "timer, last tick", srv.event_loop_lag_s)  # fmt: skip

        yield _counter("sierradb_stream_cache_hits", "Stream-tip cache hits", st.stream_cache_hits)
        yield _counter(
            "sierradb_stream_cache_misses", "Stream-tip cache misses", st.stream_cache_misses
        )
        yield _gauge("sierradb_stream_cache_entries", "Streams whose tip is cached",
                     st.stream_cache_entries)  # fmt: skip
        yield _counter(
            "sierradb_block_cache_hits", "Sealed-segment block cache hits", st.cache.hits
        )
        yield _counter(
            "sierradb_block_cache_misses", "Sealed-segment block cache misses", st.cache.misses
        )
        yield _gauge("sierradb_block_cache_bytes", "Bytes held by the block cache",
                     st.cache.memory_bytes)  # fmt: skip

        segments = GaugeMetricFamily("sierradb_segments", "Segment files", labels=["state"])
        segments.add_metric(["sealed"], st.sealed_segments)
        segments.add_metric(["active"], st.buckets)
        yield segments
        yield _gauge("sierradb_disk_bytes", "Bytes of files in the data directory",
                     ins.disk_bytes())  # fmt: skip
        yield _gauge("sierradb_events", "Visible events in all partitions", ins.visible_events())

        last = GaugeMetricFamily(
            "sierradb_partition_last_sequence",
            "Last visible partition sequence (-1: empty)", labels=["partition"],
        )  # fmt: skip
        watermark = GaugeMetricFamily(
            "sierradb_partition_watermark",
            "First unconfirmed partition sequence (events below it are visible)",
            labels=["partition"],
        )
        for p in range(store.partition_count):
            w = store.watermark(p)
            label = [str(p)]
            last.add_metric(label, w - 1)
            watermark.add_metric(label, w)
        yield last
        yield watermark

        yield _gauge("sierradb_http_connections", "Open HTTP connections", http.connections)
        yield _counter("sierradb_http_stalled_connections", "HTTP clients dropped because "
                       "they stopped reading", http.stalled_connections)  # fmt: skip
        responses = CounterMetricFamily(
            "sierradb_http_responses", "HTTP responses by status code", labels=["code"]
        )
        for code, n in sorted(http.responses.items()):
            responses.add_metric([str(code)], n)
        yield responses
        yield _gauge("sierradb_http_feeds", "Open live feeds (Server-Sent Events)", http.feeds)
        yield _counter("sierradb_http_feed_events", "Events sent on live feeds", http.feed_events)
        yield _counter("sierradb_http_feed_skipped_events", "Events live tails (tail=N) passed "
                       "over, arriving faster than they show", http.feed_skipped)  # fmt: skip

        yield from cluster_families(ins)


def build_registry(inspector: Inspector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(inspector))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
