"""The HTTP port on cluster members: /readyz waits for the topology, /metrics reports peers, and
the overview shows INFO cluster's member table."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis
from clusterproc import alive, cluster_args, info_cluster, start_cluster, wait_for
from http_client import get_json, request
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families

from sierradb.node.identifiers import (
    format_uuid,
    new_event_id,
    partition_hash,
    partition_id,
    partition_key_for_stream,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

FORM_S = 60.0  # process starts (libp2p import) and a few round trips on a loaded machine


def _append(r: redis.Redis) -> dict | None:
    try:
        return r.execute_command("EAPPEND", "replicated", "Ev", "PAYLOAD", "x")
    except redis.ResponseError:  # TRYAGAIN while leaders are being settled
        return None


def append_safely(r: redis.Redis, stream: str, name: str, payload: str) -> None:
    """An append retried with the same EVENT_ID (the node deduplicates) while leaders settle."""
    key = partition_key_for_stream(stream.encode())
    eid = format_uuid(new_event_id(partition_hash(key)))
    wait_for(lambda: _append_once(r, stream, name, eid, payload), FORM_S, f"append to {stream}")


def _append_once(r: redis.Redis, stream: str, name: str, eid: str, payload: str) -> bool:
    try:
        r.execute_command("EAPPEND", stream, name, "EVENT_ID", eid, "PAYLOAD", payload)
        return True
    except redis.ResponseError:
        return False


def all_led(node) -> bool:  # type: ignore[no-untyped-def]
    info = info_cluster(node.port)
    rows = [v for k, v in info.items() if k.startswith("partition") and k[9:].isdigit()]
    return bool(rows) and all("leader=none" not in row for row in rows)


def test_readyz_waits_until_the_cluster_has_formed(node_factory):
    lonely = node_factory(*cluster_args(3, 0))  # node 0 of 3 alone: no majority, no cluster
    reply = request(lonely.http_port, "/readyz")
    assert reply.status == 503 and reply.body == b"waiting for the cluster to form\n"
    assert request(lonely.http_port, "/healthz").status == 200
    metrics = request(lonely.http_port, "/metrics").body.decode()
    assert "sierradb_ready 0.0" in metrics


def test_a_cluster_members_readiness_metrics_and_member_table(node_factory, page_factory):
    nodes = start_cluster(node_factory, 3)
    for node in nodes:
        wait_for(lambda n=node: alive(n) == 3, FORM_S, "nodes_alive:3")
    first = nodes[0]
    wait_for(lambda: request(first.http_port, "/readyz").status == 200, FORM_S, "/readyz 200")

    # Every node holds every partition here (3 nodes, replication factor 3): an event appended
    # on one node is read on another through that node's own read path, once replicated.
    with redis.Redis(port=first.port, protocol=3) as r:
        reply = wait_for(lambda: _append(r), FORM_S, "an append to succeed")
    event_id = reply[b"event_id"].decode()
    found = wait_for(lambda: request(nodes[1].http_port, f"/api/events/{event_id}").status == 200,
                     FORM_S, "the event on another member")  # fmt: skip
    assert found
    assert get_json(nodes[1].http_port, f"/api/events/{event_id}")["stream_id"] == "replicated"

    members = get_json(first.http_port, "/api/overview")["cluster"]["members"]
    assert sorted(m["node_index"] for m in members) == [1, 2]
    assert {m["state"] for m in members} == {"up"}
    assert {m["peer_id"] for m in members} == {nodes[1].peer_id, nodes[2].peer_id}

    def scrape() -> dict:
        text = request(first.http_port, "/metrics").body.decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip

    samples = scrape()
    assert samples[("sierradb_cluster_peers", (("state", "up"),))] == 2
    assert samples[("sierradb_cluster_nodes_alive", ())] == 3
    assert samples[("sierradb_ready", ())] == 1
    wait_for(lambda: sum(1 for name, _ in scrape() if name == "sierradb_peer_rtt_seconds") == 2,
             15, "round-trip times of both peers")  # fmt: skip

    p = page_factory(f"http://127.0.0.1:{first.http_port}")
    p.goto("/")
    rows = p.page.locator("#members tr")
    expect(rows).to_have_count(3)
    expect(p.page.locator("#members")).to_contain_text(nodes[1].peer_id)
    expect(p.page.locator("#members .badge.ok")).to_have_count(2)
    p.shot("overview-cluster")
    assert p.problems == [], p.problems


def test_a_node_without_a_replica_shows_every_partition_in_the_browser(node_factory, page_factory):
    # Three nodes, two replicas per partition: node 0 holds only some partitions and reads the
    # others through their holders, in the explorers, the live tail and projections alike.
    nodes = start_cluster(node_factory, 3, "--partitions", "8", "--replication-factor", "2")
    for node in nodes:
        wait_for(lambda n=node: alive(n) == 3, FORM_S, "nodes_alive:3")
    reader = nodes[0]
    wait_for(lambda: request(reader.http_port, "/readyz").status == 200, FORM_S, "/readyz 200")
    for node in nodes:
        wait_for(lambda n=node: all_led(n), FORM_S, "a leader for every partition")
    rows = get_json(reader.http_port, "/api/partitions")["partitions"]
    elsewhere = [row["partition_id"] for row in rows if not row["held"]]
    assert elsewhere
    counts: Counter = Counter()
    with redis.Redis(port=reader.port, protocol=3) as r:
        wait_for(lambda: _append(r), FORM_S, "an append to succeed")
        counts["Ev"] += 1
        for i in range(60):
            name = ("Placed", "Shipped", "Paid")[i % 3]
            append_safely(r, f"order-{i}", name, json.dumps({"n": i}))
            counts[name] += 1
    total = sum(counts.values())
    wait_for(lambda: sum(row["watermark"] for row in get_json(reader.http_port, "/api/partitions")
             ["partitions"]) == total, FORM_S, "every event visible")  # fmt: skip

    p = page_factory(f"http://127.0.0.1:{reader.http_port}")
    p.goto("/partitions")
    expect(p.page.locator("#partitions tr")).to_have_count(9)
    expect(p.page.locator("#partitions tr", has_text="elsewhere")).to_have_count(len(elsewhere))
    expect(p.page.locator("h1")).to_contain_text(f"{total} events")
    p.shot("partitions-cluster")

    remote = elsewhere[0]
    on_holder = get_json(nodes[rows[remote]["replicas"][0]].http_port,
                         f"/api/partitions/{remote}/events")["events"]  # fmt: skip
    p.goto(f"/partitions/{remote}")
    expect(p.page.locator("table.events tr")).to_have_count(len(on_holder) + 1)
    if on_holder:
        expect(p.page.locator(f"tr[data-event-id='{on_holder[0]['event_id']}']")).to_be_visible()
        p.goto(f"/events/{on_holder[0]['event_id']}")
        expect(p.page.locator("#event h2")).to_have_text(on_holder[0]["event_name"])

    p.goto(f"/live?partitions={remote}")
    expect(p.page.locator("#live-status")).to_have_text("live")
    stream = next(f"live-{i}" for i in range(10_000) if partition_id(
        partition_key_for_stream(f"live-{i}".encode()), 8) == remote)  # fmt: skip
    with redis.Redis(port=reader.port, protocol=3) as r:
        for _ in range(3):
            append_safely(r, stream, "Arrived", "x")
    counts["Arrived"] += 3
    expect(p.page.locator("#live-events tr", has_text="Arrived")).to_have_count(3)
    p.shot("live-cluster")

    p.goto("/projections")
    p.page.select_option("#scope", "all")
    p.page.click("#run")
    expect(p.page.locator("#projection-status")).to_have_text("done")
    assert json.loads(p.page.locator("#result").get_attribute("data-state")) == dict(counts)
    assert p.problems == [], p.problems
