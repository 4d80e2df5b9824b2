"""The live feed (Server-Sent Events): new events as they become visible, resumed with
Last-Event-ID with no gap and no duplicate, and a stalled client that never slows writers."""

from __future__ import annotations

import json
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


# ------------------------------------------------------------------------------ tail mode
PARTITIONS = range(4)


def parse_id(text: str) -> dict[int, int]:
    """A feed id (`p:s,p:s`) as each partition's next sequence (an omitted one is at 0)."""
    cursor = dict.fromkeys(PARTITIONS, 0)
    for item in text.split(","):
        p, _, s = item.partition(":")
        cursor[int(p)] = int(s)
    return cursor


def tail_rounds(feed: Feed, start: dict[int, int], until: dict[int, int]) -> list[dict]:
    """A tail feed's rounds until its cursor reaches `until`, each checked against the
    contract: the passed-over events are each partition's oldest of the round (the `skipped`
    id is the cursor past them, its count is theirs) and the shown ones the rest, in order."""
    rounds = []
    cursor = start
    while cursor != until:
        m = feed.message()
        skipped, skipped_to = 0, cursor
        if m["event"] == "skipped":
            skipped, skipped_to = json.loads(m["data"])["count"], parse_id(m["id"])
            assert skipped == sum(skipped_to[p] - cursor[p] for p in PARTITIONS)
            m = feed.message()
        assert m["event"] == "events", m
        shown, end = json.loads(m["data"]), parse_id(m["id"])
        for p in PARTITIONS:
            assert cursor[p] <= skipped_to[p] <= end[p]
            mine = [e["partition_sequence"] for e in shown if e["partition_id"] == p]
            assert mine == list(range(skipped_to[p], end[p])), "not the partition's newest"
        keys = [(e["timestamp"], e["partition_id"], e["partition_sequence"]) for e in shown]
        assert keys == sorted(keys)
        rounds.append({"start": cursor, "skipped": skipped, "skipped_to": skipped_to,
                       "shown": shown, "end": end})  # fmt: skip
        cursor = end
    return rounds


def watermarks(port: int) -> dict[int, int]:
    parts = get_json(port, "/api/partitions")["partitions"]
    return {row["partition_id"]: row["watermark"] for row in parts}


def test_a_tail_shows_each_partitions_newest_in_proportion_and_counts_the_rest(node):
    written = append(node.port, 300, "t", streams=12)
    until = watermarks(node.http_port)
    assert sum(until.values()) == 300
    tail = 40
    with Feed(node.http_port, f"/api/feed?partitions=all&from=earliest&tail={tail}") as feed:
        assert feed.message()["event"] == "ready"
        rounds = tail_rounds(feed, dict.fromkeys(PARTITIONS, 0), until)
    shown = [e for r in rounds for e in r["shown"]]
    assert sum(r["skipped"] for r in rounds) + len(shown) == 300
    assert set(positions(shown)) <= set(written) and len(set(positions(shown))) == len(shown)
    first = rounds[0]
    assert first["skipped"] > 0, "300 events visible at once and nothing passed over"
    assert len(first["shown"]) == tail
    total = sum(first["end"][p] - first["start"][p] for p in PARTITIONS)
    for p in PARTITIONS:  # each partition's share of the tail, in proportion to what it had
        had = first["end"][p] - first["start"][p]
        got = first["end"][p] - first["skipped_to"][p]
        assert tail * had // total <= got <= -(-tail * had // total), (p, had, got)
    for r in rounds:
        assert len(r["shown"]) <= tail


def test_a_tail_resumed_from_its_skipped_id_continues_with_no_gap_and_no_duplicate(node):
    """A client gone after a `skipped` message (before its events) resumes past exactly what
    was passed over: what it was told of plus what it is then shown is every event once."""
    written = append(node.port, 200, "r", streams=12)
    url = "/api/feed?partitions=all&from=earliest&tail=30"
    with Feed(node.http_port, url) as feed:
        assert feed.message()["event"] == "ready"
        m = feed.message()
    assert m["event"] == "skipped"
    passed_over = json.loads(m["data"])["count"]
    resumed_at = parse_id(m["id"])
    more = append(node.port, 10, "more", streams=12)
    until = watermarks(node.http_port)
    # Another tail size resumes the same cursor: 30 remained and 10 more came, all under it.
    resumed = "/api/feed?partitions=all&from=earliest&tail=50"
    with Feed(node.http_port, resumed, headers={"Last-Event-ID": m["id"]}) as feed:
        assert parse_id(feed.message()["id"]) == resumed_at  # ready: where it resumes
        rounds = tail_rounds(feed, resumed_at, until)
    assert sum(r["skipped"] for r in rounds) == 0
    shown = [pos for r in rounds for pos in positions(r["shown"])]
    assert len(set(shown)) == len(shown), "a duplicate"
    assert passed_over + len(shown) == len(written) + len(more), "a gap"
    assert set(shown) == {x for x in written + more if x[1] >= resumed_at[x[0]]}
    # The ones passed over are exactly each partition's oldest, below the resumed cursor.
    assert passed_over == sum(1 for p, s in written if s < resumed_at[p])


def test_a_tail_at_a_low_rate_shows_every_event(node):
    with Feed(node.http_port, "/api/feed?partitions=all&from=latest&tail=50") as feed:
        start = parse_id(feed.message()["id"])
        written = []
        for i in range(5):
            written += append(node.port, 8, f"slow{i}", streams=12)
        rounds = tail_rounds(feed, start, watermarks(node.http_port))
    assert sum(r["skipped"] for r in rounds) == 0
    shown = [pos for r in rounds for pos in positions(r["shown"])]
    assert sorted(shown) == sorted(written)
