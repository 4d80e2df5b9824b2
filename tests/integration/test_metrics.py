"""/metrics: Prometheus text format, parsed with prometheus_client's own parser; the documented
names exist and move when appends, reads and subscriptions happen."""

from __future__ import annotations

import time

import pytest
import redis
from http_client import request
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(120)

NAMES = {
    # name: type
    "sierradb_build_info": "gauge",
    "sierradb_uptime_seconds": "gauge",
    "sierradb_ready": "gauge",
    "sierradb_requests": "counter",
    "sierradb_request_duration_seconds": "histogram",
    "sierradb_appended_events": "counter",
    "sierradb_appended_bytes": "counter",
    "sierradb_group_commits": "counter",
    "sierradb_group_commit_transactions": "histogram",
    "sierradb_group_commit_sync_duration_seconds": "histogram",
    "sierradb_write_failures": "counter",
    "sierradb_checkpoints": "counter",
    "sierradb_checkpoint_duration_seconds": "histogram",
    "sierradb_seals": "counter",
    "sierradb_seal_duration_seconds": "histogram",
    "sierradb_connections": "gauge",
    "sierradb_connections_received": "counter",
    "sierradb_connections_rejected": "counter",
    "sierradb_auth_failures": "counter",
    "sierradb_subscriptions": "gauge",
    "sierradb_subscription_backlog_events": "gauge",
    "sierradb_subscription_unacknowledged_events": "gauge",
    "sierradb_event_loop_lag_seconds": "gauge",
    "sierradb_stream_cache_hits": "counter",
    "sierradb_stream_cache_misses": "counter",
    "sierradb_stream_cache_entries": "gauge",
    "sierradb_block_cache_hits": "counter",
    "sierradb_block_cache_misses": "counter",
    "sierradb_block_cache_bytes": "gauge",
    "sierradb_segments": "gauge",
    "sierradb_disk_bytes": "gauge",
    "sierradb_events": "gauge",
    "sierradb_partition_last_sequence": "gauge",
    "sierradb_partition_watermark": "gauge",
    "sierradb_http_connections": "gauge",
    "sierradb_http_stalled_connections": "counter",
    "sierradb_http_responses": "counter",
    "sierradb_http_feeds": "gauge",
    "sierradb_http_feed_events": "counter",
    "sierradb_http_feed_skipped_events": "counter",
    "process_resident_memory_bytes": "gauge",
}


class Scrape:
    def __init__(self, port: int) -> None:
        reply = request(port, "/metrics")
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        self.families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}

    def value(self, sample_name: str, **labels: str) -> float:
        for family in self.families.values():
            for s in family.samples:
                if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0


@pytest.fixture
def node(node_factory):
    return node_factory("--partitions", "16")


def test_every_documented_metric_exists_with_its_type(node):
    scrape = Scrape(node.http_port)
    for name, kind in NAMES.items():
        assert name in scrape.families, name
        assert scrape.families[name].type == kind, name
    per_partition = scrape.families["sierradb_partition_watermark"].samples
    assert sorted(int(s.labels["partition"]) for s in per_partition) == list(range(16))
    assert scrape.value("sierradb_ready") == 1
    assert scrape.value("sierradb_disk_bytes") > 0


def test_appends_move_the_write_metrics(node):
    before = Scrape(node.http_port)
    with redis.Redis(port=node.port, protocol=3) as r:
        replies = [r.execute_command("EAPPEND", f"m{i % 3}", "Ev", "PAYLOAD", "x" * 100)
                   for i in range(30)]  # fmt: skip
        with pytest.raises(redis.ResponseError):
            r.execute_command("EAPPEND", "m0", "Ev", "EXPECTED_VERSION", "0")
    after = Scrape(node.http_port)
    delta = lambda name, **labels: after.value(name, **labels) - before.value(name, **labels)  # noqa: E731
    assert delta("sierradb_appended_events_total") == 30
    assert delta("sierradb_appended_bytes_total") > 30 * 100
    assert delta("sierradb_requests_total", command="EAPPEND", outcome="ok") == 30
    assert delta("sierradb_requests_total", command="EAPPEND", outcome="WRONGVER") == 1
    assert delta("sierradb_request_duration_seconds_count", command="EAPPEND") == 31
    assert delta("sierradb_group_commits_total") >= 1
    assert delta("sierradb_group_commit_transactions_sum") == 30
    assert delta("sierradb_group_commit_sync_duration_seconds_count") >= 1
    assert delta("sierradb_events") == 30
    p = replies[-1][b"partition_id"]
    last = max(x[b"partition_sequence"] for x in replies if x[b"partition_id"] == p)
    assert after.value("sierradb_partition_last_sequence", partition=str(p)) == last
    assert after.value("sierradb_partition_watermark", partition=str(p)) == last + 1
    assert after.value("sierradb_connections") == 0  # the client above has gone


def counted_and_timed(node, events: int, counter: str, histogram: str) -> Scrape:
    """Append `events` of 1 KiB (one bucket), wait for `counter` to move from 0, and check that
    `histogram` timed each one counted; the last scrape."""
    assert Scrape(node.http_port).value(f"{counter}_total") == 0
    with redis.Redis(port=node.port) as r:
        for i in range(events):
            r.execute_command("EAPPEND", f"s{i}", "Ev", "PAYLOAD", "x" * 1024)
    deadline = time.monotonic() + 30
    while Scrape(node.http_port).value(f"{counter}_total") < 1:
        assert time.monotonic() < deadline, f"{counter} did not move"
        time.sleep(0.05)
    after = Scrape(node.http_port)
    assert after.value(f"{histogram}_count") == after.value(f"{counter}_total")
    assert after.value(f"{histogram}_sum") > 0
    return after


def test_checkpoints_are_counted_and_timed(node_factory):
    node = node_factory("--partitions", "4", "--buckets", "1", "--checkpoint-interval", "16KiB")
    # ~40 KiB in one bucket: due at the 16 KiB interval
    counted_and_timed(node, 40, "sierradb_checkpoints", "sierradb_checkpoint_duration_seconds")


def test_seals_are_counted_and_timed(node_factory):
    node = node_factory("--partitions", "4", "--buckets", "1", "--segment-size", "128KiB")
    # ~160 KiB in one bucket: its first 128 KiB segment fills up
    after = counted_and_timed(node, 160, "sierradb_seals", "sierradb_seal_duration_seconds")
    assert after.value("sierradb_segments", state="sealed") == after.value("sierradb_seals_total")


def test_reads_move_request_and_cache_metrics(node):
    with redis.Redis(port=node.port, protocol=3) as r:
        r.execute_command("EAPPEND", "read-me", "Ev")
        before = Scrape(node.http_port)
        for _ in range(5):
            r.execute_command("ESCAN", "read-me", "-", "+")
            r.execute_command("ESVER", "read-me")
        r.execute_command("EPSCAN", "0", "-", "+")
        with pytest.raises(redis.ResponseError):
            r.execute_command("NOSUCHCOMMAND")
        after = Scrape(node.http_port)
        assert after.value("sierradb_connections") == 1
    d = lambda name, **labels: after.value(name, **labels) - before.value(name, **labels)  # noqa: E731
    assert d("sierradb_requests_total", command="ESCAN", outcome="ok") == 5
    assert d("sierradb_requests_total", command="EPSCAN", outcome="ok") == 1
    assert d("sierradb_requests_total", command="unknown", outcome="INVALIDARG") == 1
    assert d("sierradb_stream_cache_hits_total") + d("sierradb_stream_cache_misses_total") >= 5


def test_subscriptions_report_backlog_and_unacknowledged_events(node):
    with redis.Redis(port=node.port, protocol=3) as r:
        for i in range(10):
            r.execute_command("EAPPEND", "watched", "Ev", "PAYLOAD", str(i))
        conn = r.connection_pool.get_connection()
        conn.send_command("ESUB", "watched", "FROM", "0", "WINDOW", "4")
        conn.read_response()
        deadline = time.monotonic() + 30
        while True:
            scrape = Scrape(node.http_port)
            if scrape.value("sierradb_subscription_unacknowledged_events") == 4:
                break
            assert time.monotonic() < deadline, "the window never filled"
            time.sleep(0.1)
        assert scrape.value("sierradb_subscriptions") == 1
        assert scrape.value("sierradb_subscription_backlog_events") == 6
        assert scrape.value("sierradb_requests_total", command="ESUB", outcome="ok") == 1
        r.connection_pool.release(conn)
        conn.disconnect()
    deadline = time.monotonic() + 30
    while Scrape(node.http_port).value("sierradb_subscriptions") != 0:
        assert time.monotonic() < deadline, "the subscription outlived its connection"
        time.sleep(0.1)


def test_http_requests_are_counted(node):
    before = Scrape(node.http_port).value("sierradb_http_responses_total", code="404")
    request(node.http_port, "/api/nothing")
    after = Scrape(node.http_port).value("sierradb_http_responses_total", code="404")
    assert after == before + 1
