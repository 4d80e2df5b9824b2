"""The live feed (Server-Sent Events): new events as they become visible, resumed with
Last-Event-ID with no gap and no duplicate, and a stalled client that never slows writers."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis
from http_client import Feed, get_json, request
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def node(node_factory):
    return node_factory("--partitions", "4")


def append(port: int, n: int, tag: str, streams: int = 5) -> list[tuple[int, int]]:
    """n events over several streams (so several partitions): their (partition, sequence)."""
    with redis.Redis(port=port, protocol=3) as r:
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.execute_command("EAPPEND", f"{tag}-{i % streams}", "Ev", "PAYLOAD", f"{tag} {i}")
        replies = pipe.execute()
    return [(x[b"partition_id"], x[b"partition_sequence"]) for x in replies]


def positions(events: list[dict]) -> list[tuple[int, int]]:
    return [(e["partition_id"], e["partition_sequence"]) for e in events]


def test_a_feed_from_latest_sends_only_new_events(node):
    append(node.port, 10, "old")
    with Feed(node.http_port, "/api/feed?partitions=all&from=latest") as feed:
        assert feed.status == 200
        assert feed.response.headers["content-type"].startswith("text/event-stream")
        ready = feed.message()
        assert ready["event"] == "ready"
        expected = sorted(append(node.port, 20, "new"))
        got: list[dict] = []
        while len(got) < 20:
            got += feed.events()[1]
        assert sorted(positions(got)) == expected
        assert all(e["payload"].startswith("new ") for e in got)


def test_a_feed_from_earliest_replays_history_then_goes_live(node):
    history = append(node.port, 30, "h")
    with Feed(node.http_port, "/api/feed?partitions=all&from=earliest") as feed:
        got: list[dict] = []
        while len(got) < 30:
            got += feed.events()[1]
        live = append(node.port, 5, "l")
        while len(got) < 35:
            got += feed.events()[1]
    assert sorted(positions(got)) == sorted(history + live)
    for p in range(4):  # in order within each partition
        mine = [s for q, s in positions(got) if q == p]
        assert mine == sorted(mine)


def test_resuming_with_last_event_id_has_no_gap_and_no_duplicate(node):
    append(node.port, 8, "before")
    seen: list[tuple[int, int]] = []
    with Feed(node.http_port, "/api/feed?partitions=all&from=latest") as feed:
        last_id = feed.message()["id"]  # the ready message's cursor
        first = append(node.port, 25, "a")
        while len(seen) < 10:
            last_id, events = feed.events()
            seen += positions(events)
    # Disconnected: more events arrive (and some of the first batch were never received).
    second = append(node.port, 25, "b")
    with Feed(node.http_port, "/api/feed?partitions=all&from=latest",
              headers={"Last-Event-ID": last_id}) as feed:  # fmt: skip
        while len(seen) < 50:
            seen += positions(feed.events()[1])
    assert sorted(seen) == sorted(first + second), "a gap or a duplicate"
    assert len(set(seen)) == len(seen)


def test_a_feed_that_saw_nothing_resumes_from_its_ready_cursor(node):
    append(node.port, 4, "x")
    with Feed(node.http_port, "/api/feed?partitions=0-3") as feed:
        ready = feed.message()
    assert ready["event"] == "ready" and ready["id"]
    missed = append(node.port, 6, "y")
    with Feed(node.http_port, "/api/feed?partitions=0-3",
              headers={"Last-Event-ID": ready["id"]}) as feed:  # fmt: skip
        got: list[dict] = []
        while len(got) < 6:
            got += feed.events()[1]
    assert sorted(positions(got)) == sorted(missed)


def test_a_feed_of_some_partitions_sends_only_theirs(node):
    with Feed(node.http_port, "/api/feed?partitions=1,3") as feed:
        feed.message()
        written = append(node.port, 40, "sel", streams=12)
        wanted = sorted(x for x in written if x[0] in (1, 3))
        assert wanted and len(wanted) < len(written)
        got: list[dict] = []
        while len(got) < len(wanted):
            got += feed.events()[1]
    assert sorted(positions(got)) == wanted


def metric(port: int, name: str) -> float:
    text = request(port, "/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no {name}")


def test_a_stalled_feed_client_blocks_no_writer_and_is_dropped(node):
    """A client that opens the feed and never reads: appends go on, other clients are served,
    and the node drops it once its socket stays full."""
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", node.http_port))
    stalled.sendall(b"GET /api/feed?partitions=all&from=earliest HTTP/1.1\r\n"
                    b"Host: 127.0.0.1\r\n\r\n")  # fmt: skip
    payload = "x" * 4000
    done = threading.Event()

    def write() -> None:
        with redis.Redis(port=node.port) as r:
            for _ in range(20):
                pipe = r.pipeline(transaction=False)
                for i in range(100):
                    pipe.execute_command("EAPPEND", f"s{i % 7}", "Big", "PAYLOAD", payload)
                pipe.execute()
        done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    # 8 MB go to a client that reads nothing; the writer must finish regardless (a generous
    # deadline: this checks that it finishes at all, not how fast).
    assert done.wait(90), "appends stalled behind a client that does not read"
    assert request(node.http_port, "/healthz").status == 200
    assert get_json(node.http_port, "/api/overview")["storage"]["events"] == 2000
    deadline = time.monotonic() + 60
    while metric(node.http_port, "sierradb_http_stalled_connections_total") < 1:
        assert time.monotonic() < deadline, "the stalled client was never dropped"
        time.sleep(0.5)
    assert metric(node.http_port, "sierradb_http_feeds") == 0
    stalled.close()
