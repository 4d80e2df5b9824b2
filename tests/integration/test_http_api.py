"""The HTTP port's JSON API against a real node: every route, paging at its boundaries, every bad
parameter, the security headers, and the UI's files."""

from __future__ import annotations

import json

import pytest
from http_client import get_json, request

pytestmark = pytest.mark.timeout(120)

KEY = "5b0e1a2c-6f1d-4c1e-9a57-3f2b7d9c1e00"  # every paged event in one partition


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from nodeproc import NodeProcess

    n = NodeProcess(tmp_path_factory.mktemp("http") / "data", "--partitions", "8").start()
    assert n.http_port, n.output()
    yield n
    n.kill()


@pytest.fixture(scope="module")
def seven(r):
    """Seven events in one partition (stream `paged`, versions 0..6): (partition, [replies])."""
    replies = [
        r.execute_command(
            "EAPPEND", "paged", f"Ev{i}", "PARTITION_KEY", KEY, "PAYLOAD", json.dumps({"i": i})
        )  # fmt: skip
        for i in range(7)
    ]
    return replies[0][b"partition_id"], replies


def seqs(page):
    return [e["partition_sequence"] for e in page["events"]]


def test_health_endpoints(node):
    assert request(node.http_port, "/healthz").body == b"ok\n"
    ready = request(node.http_port, "/readyz")
    assert (ready.status, ready.body) == (200, b"ready\n")


def test_overview(node, seven):
    o = get_json(node.http_port, "/api/overview")
    assert o["node"]["client_address"] == f"127.0.0.1:{node.port}"
    assert o["node"]["http_address"] == f"127.0.0.1:{node.http_port}"
    assert o["node"]["password"] is False and o["node"]["ready"] is True
    assert o["storage"]["partitions"] == 8
    assert o["storage"]["events"] >= 7 and o["storage"]["disk_bytes"] > 0
    assert o["cluster"]["info"]["node_count"] == "1"
    assert isinstance(o["appends"], list)


def test_partitions_list_and_one_partition(node, seven):
    p, _ = seven
    whole = get_json(node.http_port, "/api/partitions")
    assert whole["max_page_events"] == 10_000  # the API's cap; the node's --max-count is 10000
    listing = whole["partitions"]
    assert [x["partition_id"] for x in listing] == list(range(8))
    mine = get_json(node.http_port, f"/api/partitions/{p}")
    assert listing[p] == mine
    assert mine["last_sequence"] >= 6 and mine["watermark"] == mine["last_sequence"] + 1


def test_partition_paging_forward_to_the_end(node, seven):
    p, replies = seven
    last = get_json(node.http_port, f"/api/partitions/{p}")["last_sequence"]
    first = replies[0][b"partition_sequence"]
    assert last == first + 6  # nothing else lands in this partition in this module
    base = f"/api/partitions/{p}/events?limit=3&from="
    page = get_json(node.http_port, base + str(first))
    assert seqs(page) == [first, first + 1, first + 2] and page["next"] == first + 3
    page = get_json(node.http_port, base + str(first + 3))
    assert seqs(page) == [first + 3, first + 4, first + 5] and page["next"] == first + 6
    page = get_json(node.http_port, base + str(first + 6))
    assert seqs(page) == [first + 6] and page["next"] is None
    page = get_json(node.http_port, base + str(first + 7))
    assert page["events"] == [] and page["next"] is None


def test_partition_paging_backward_from_the_end(node, seven):
    p, replies = seven
    first = replies[0][b"partition_sequence"]
    page = get_json(node.http_port, f"/api/partitions/{p}/events?limit=3&direction=backward")
    assert seqs(page) == [first + 6, first + 5, first + 4] and page["next"] == first + 3
    page = get_json(node.http_port, f"/api/partitions/{p}/events?limit=3&direction=backward"
                    f"&from={first + 3}")  # fmt: skip
    assert seqs(page) == [first + 3, first + 2, first + 1] and page["next"] == first
    page = get_json(node.http_port, f"/api/partitions/{p}/events?direction=backward&from=1000")
    assert seqs(page)[0] == first + 6, "a from beyond the end starts at the last event"
    page = get_json(node.http_port, f"/api/partitions/{p}/events?direction=backward&from=0")
    assert page["next"] is None and len(page["events"]) == 1


def test_an_empty_partition_pages_nothing(node, seven):
    p, _ = seven
    listing = get_json(node.http_port, "/api/partitions")["partitions"]
    empty = next(x["partition_id"] for x in listing if x["watermark"] == 0)
    for direction in ("forward", "backward"):
        page = get_json(node.http_port, f"/api/partitions/{empty}/events?direction={direction}")
        assert page["events"] == [] and page["next"] is None and page["last_sequence"] is None


def test_stream_info_and_paging_both_ways(node, seven):
    info = get_json(node.http_port, f"/api/stream?stream_id=paged&partition_key={KEY}")
    assert info["version"] == 6 and info["partition_key"] == KEY
    base = f"/api/stream/events?stream_id=paged&partition_key={KEY}&limit=4"
    page = get_json(node.http_port, base)
    assert [e["stream_version"] for e in page["events"]] == [0, 1, 2, 3] and page["next"] == 4
    page = get_json(node.http_port, base + "&from=4")
    assert [e["stream_version"] for e in page["events"]] == [4, 5, 6] and page["next"] is None
    page = get_json(node.http_port, base + "&direction=backward")
    assert [e["stream_version"] for e in page["events"]] == [6, 5, 4, 3] and page["next"] == 2
    page = get_json(node.http_port, base + "&direction=backward&from=2")
    assert [e["stream_version"] for e in page["events"]] == [2, 1, 0] and page["next"] is None
    assert [e["event_name"] for e in page["events"]] == ["Ev2", "Ev1", "Ev0"]


def test_a_stream_under_another_key_or_missing_is_empty(node, seven):
    assert get_json(node.http_port, "/api/stream?stream_id=nothing-here")["version"] is None
    # `paged` was created with KEY; under its own derived key it is another (empty) stream.
    other = get_json(node.http_port, "/api/stream/events?stream_id=paged")
    assert other["version"] is None and other["events"] == []


def test_event_by_id_with_every_field(node, r):
    reply = r.execute_command("EAPPEND", "shapes", "Made", "PAYLOAD", b'{"a": [1, 2]}',
                              "METADATA", b"\xff\x00binary")  # fmt: skip
    event_id = reply[b"event_id"].decode()
    ev = get_json(node.http_port, f"/api/events/{event_id}")
    assert ev == {
        "event_id": event_id,
        "partition_key": reply[b"partition_key"].decode(),
        "partition_id": reply[b"partition_id"],
        "transaction_id": ev["transaction_id"],
        "partition_sequence": reply[b"partition_sequence"],
        "stream_version": 0,
        "timestamp": reply[b"timestamp"],
        "stream_id": "shapes",
        "event_name": "Made",
        "metadata": "/wBiaW5hcnk=",
        "metadata_encoding": "base64",
        "payload": '{"a": [1, 2]}',
        "payload_encoding": "utf-8",
    }
    assert len(ev["transaction_id"]) == 36
    # The same shape as the pages serve.
    page = get_json(node.http_port, "/api/stream/events?stream_id=shapes")
    assert page["events"] == [ev]


def test_an_unknown_event_is_404(node):
    reply = request(node.http_port, "/api/events/01a24977-0de0-15e7-b6eb-02daf74de4b8")
    assert reply.status == 404 and reply.error_code() == "not_found"


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/partitions/abc", 400),
        ("/api/partitions/-1", 400),
        ("/api/partitions/8", 404),
        ("/api/partitions/99999", 400),
        ("/api/partitions/0/events?limit=0", 400),
        ("/api/partitions/0/events?limit=abc", 400),
        ("/api/partitions/0/events?limit=10001", 400),
        ("/api/partitions/0/events?limit=1.5", 400),
        ("/api/partitions/0/events?from=-1", 400),
        ("/api/partitions/0/events?from=x", 400),
        ("/api/partitions/0/events?from=99999999999999999999", 400),
        ("/api/partitions/0/events?direction=sideways", 400),
        ("/api/partitions/0/events?colour=red", 400),
        ("/api/partitions/9/events", 404),
        ("/api/overview?x=1", 400),
        ("/api/stream", 400),
        ("/api/stream?stream_id=", 400),
        ("/api/stream?stream_id=" + "x" * 65, 400),
        ("/api/stream?stream_id=a&partition_key=not-a-uuid", 400),
        ("/api/stream/events?stream_id=a&limit=0", 400),
        ("/api/stream/events?stream_id=a&direction=up", 400),
        ("/api/events/not-a-uuid", 400),
        ("/api/events/01a24977-0de0-15e7-b6eb-02daf74de4b8?x=1", 400),
        ("/api/nothing", 404),
        ("/api/feed?partitions=abc", 400),
        ("/api/feed?partitions=8", 404),
        ("/api/feed?partitions=2-1", 400),
        ("/api/feed?from=3:x", 400),
        ("/api/feed?partitions=1&from=2:5", 400),
        ("/api/feed?from=1:5,1:6", 400),
        ("/api/feed?since=0", 400),
        ("/api/feed?tail=0", 400),
        ("/api/feed?tail=1001", 400),
        ("/api/feed?tail=-5", 400),
        ("/api/feed?tail=abc", 400),
        ("/api/feed?tail=", 400),
        ("/api/feed?tail=%C2%B2", 400),  # a Unicode digit
    ],
)
def test_every_bad_parameter_gets_a_json_4xx(node, path, status):
    reply = request(node.http_port, path)
    assert reply.status == status, (path, reply.status, reply.body)
    error = reply.json()["error"]
    assert error["code"] and error["message"]


def test_a_bad_last_event_id_is_a_400(node):
    reply = request(node.http_port, "/api/feed?partitions=0", headers={"Last-Event-ID": "1:1"})
    assert reply.status == 400 and reply.error_code() == "bad_parameter"


def test_methods_other_than_get_are_refused_with_json(node):
    for method in ("POST", "PUT", "DELETE"):
        reply = request(node.http_port, "/api/overview", method=method)
        assert reply.status == 405 and reply.error_code() == "method_not_allowed"


def test_every_response_carries_the_security_headers_and_no_cors(node):
    for path in ("/", "/api/overview", "/metrics", "/static/app.js", "/api/nothing", "/healthz"):
        reply = request(node.http_port, path, headers={"Origin": "http://evil.example"})
        csp = reply.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["x-frame-options"] == "DENY"
        assert not [h for h in reply.headers if h.lower().startswith("access-control-")], path
    preflight = request(node.http_port, "/api/overview", method="OPTIONS",
                        headers={"Origin": "http://evil.example",
                                 "Access-Control-Request-Method": "GET"})  # fmt: skip
    assert preflight.status == 405
    assert "access-control-allow-origin" not in preflight.headers


def test_only_the_projection_worker_may_compile_code(node):
    worker = request(node.http_port, "/static/projection-worker.js")
    assert worker.status == 200
    assert "'unsafe-eval'" in worker.headers["content-security-policy"]
    assert "'unsafe-eval'" not in request(node.http_port, "/").headers["content-security-policy"]


def test_without_a_password_only_loopback_host_names_are_answered(node):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not read the API."""
    for host in ("evil.example", "evil.example:80", "10.0.0.1"):
        reply = request(node.http_port, "/api/overview", headers={"Host": host})
        assert reply.status == 403 and reply.error_code() == "host_not_allowed", host
    for host in ("localhost", f"localhost:{node.http_port}", "127.0.0.1", "[::1]:80"):
        assert request(node.http_port, "/api/overview", headers={"Host": host}).status == 200


def test_the_ui_is_served_for_every_view(node):
    for path in ("/", "/partitions", "/partitions/3", "/streams?stream_id=a", "/events",
                 "/events/abc", "/live?partitions=all", "/projections"):  # fmt: skip
        reply = request(node.http_port, path)
        assert reply.status == 200, path
        assert b'<script src="/static/app.js"' in reply.body
    assert request(node.http_port, "/nothing").status == 404
    for name, kind in (("app.js", "javascript"), ("style.css", "css"),
                       ("projection-worker.js", "javascript")):  # fmt: skip
        reply = request(node.http_port, f"/static/{name}")
        assert reply.status == 200 and kind in reply.headers["content-type"]
        again = request(node.http_port, f"/static/{name}",
                        headers={"If-None-Match": reply.headers["etag"]})  # fmt: skip
        assert again.status == 304
    assert request(node.http_port, "/static/../cli.py").status == 404
