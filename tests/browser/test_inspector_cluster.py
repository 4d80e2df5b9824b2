"""The HTTP port on cluster members: /readyz waits for the topology, /metrics reports peers, and
the overview shows INFO cluster's member table."""

from __future__ import annotations

import pytest
import redis
from clusterproc import alive, cluster_args, start_cluster, wait_for
from http_client import get_json, request
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

FORM_S = 60.0  # process starts (libp2p import) and a few round trips on a loaded machine


def _append(r: redis.Redis) -> dict | None:
    try:
        return r.execute_command("EAPPEND", "replicated", "Ev", "PAYLOAD", "x")
    except redis.ResponseError:  # TRYAGAIN while leaders are being settled
        return None


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
