"""The inspector's API on a cluster node that holds no replica of a partition: pages both ways,
stream pages and versions, event by id, the live feed (resumed with Last-Event-ID) and where each
partition lives, all read from the nodes that hold it; and never an event above the watermark."""

from __future__ import annotations

import json
import signal
import threading

import pytest
import redis
from clusterproc import info_cluster, state_of, wait_for
from http_client import Feed, get_json, request
from test_replication import PARTITIONS, cluster

from sierradb.node.identifiers import (
    format_uuid,
    new_event_id,
    partition_hash,
    partition_id,
    partition_key_for_stream,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

SEEN_S = 30.0


def remote_partition(port: int) -> dict:
    """A partition the node on this HTTP port holds no replica of, as /api/partitions shows it."""
    rows = get_json(port, "/api/partitions")["partitions"]
    assert len(rows) == PARTITIONS
    return next(row for row in rows if not row["held"])


def stream_in(p: int, prefix: str) -> str:
    return next(
        name
        for i in range(10_000)
        if partition_id(partition_key_for_stream((name := f"{prefix}-{i}").encode()), PARTITIONS)
        == p
    )


def epscan(port: int, p: int) -> list[dict]:
    r = redis.Redis(port=port, protocol=3)
    return r.execute_command("EPSCAN", p, 0, "+", "COUNT", 1000)[b"events"]


def append(r: redis.Redis, stream: str, name: str, payload: str) -> dict:
    """An append retried with the same EVENT_ID (deduplicated) while leaders settle."""
    key = partition_key_for_stream(stream.encode())
    eid = format_uuid(new_event_id(partition_hash(key)))
    replies: list[dict] = []

    def once() -> bool:
        try:
            replies.append(r.execute_command("EAPPEND", stream, name, "EVENT_ID", eid,
                                             "PAYLOAD", payload))  # fmt: skip
            return True
        except redis.ResponseError:
            return False

    wait_for(once, SEEN_S, f"an append to {stream}")
    return replies[0]


def ids(events: list) -> list[str]:
    return [e["event_id"] for e in events]


def holder_with_role(holders: list, p: int, role: str):  # type: ignore[no-untyped-def]
    for node in holders:
        row = info_cluster(node.port)[f"partition{p}"]
        if f"role={role}" in row:
            return node
    return None


def test_a_node_without_a_replica_reads_a_partition_through_its_holders(node_factory):
    nodes = cluster(node_factory, 3, "--replication-factor", "2")
    reader = nodes[0]
    row = remote_partition(reader.http_port)
    p = row["partition_id"]
    assert sorted(row["replicas"]) != [] and 0 not in row["replicas"]
    holder = nodes[row["replicas"][0]]
    stream = stream_in(p, "remote")
    r = redis.Redis(port=reader.port, protocol=3)  # appends forwarded to the leader
    appended = [append(r, stream, f"E{i}", f'{{"n":{i}}}')
                for i in range(7)]  # fmt: skip
    want = [e[b"event_id"].decode() for e in appended]

    wait_for(lambda: get_json(reader.http_port, f"/api/stream?stream_id={stream}")["version"] == 6,
             SEEN_S, "the stream's version through the reader")  # fmt: skip
    on_holder = [e[b"event_id"].decode() for e in epscan(holder.port, p)]
    w = len(on_holder)
    assert on_holder[-7:] == want

    # The partition: its watermark, pages forward (paged by `next`) and backward.
    one = get_json(reader.http_port, f"/api/partitions/{p}")
    assert one["leader"] in row["replicas"]  # the leader may change meanwhile (failback)
    assert one == {**row, "last_sequence": w - 1, "watermark": w, "leader": one["leader"]}
    seen, nxt = [], 0
    while nxt is not None:
        page = get_json(reader.http_port, f"/api/partitions/{p}/events?from={nxt}&limit=3")
        assert page["partition_id"] == p and page["last_sequence"] == w - 1
        seen += ids(page["events"])
        nxt = page["next"]
    assert seen == on_holder
    back = get_json(reader.http_port, f"/api/partitions/{p}/events?direction=backward&limit=4")
    assert ids(back["events"]) == on_holder[::-1][:4]
    assert back["next"] == (w - 5 if w > 4 else None)
    mid = get_json(reader.http_port, f"/api/partitions/{p}/events?direction=backward&from=2")
    assert ids(mid["events"]) == on_holder[:3][::-1] and mid["next"] is None

    # The stream: forward from a version, backward, and a stream that is not there.
    fwd = get_json(reader.http_port, f"/api/stream/events?stream_id={stream}&from=2&limit=3")
    assert ids(fwd["events"]) == want[2:5] and fwd["next"] == 5 and fwd["version"] == 6
    assert [e["stream_version"] for e in fwd["events"]] == [2, 3, 4]
    bwd = get_json(reader.http_port,
                   f"/api/stream/events?stream_id={stream}&direction=backward")  # fmt: skip
    assert ids(bwd["events"]) == want[::-1]
    none = get_json(reader.http_port, f"/api/stream?stream_id={stream_in(p, 'absent')}")
    assert none["version"] is None and none["partition_id"] == p

    # Event by id: every field as the holder stores it; an unknown id is a 404.
    got = get_json(reader.http_port, f"/api/events/{want[3]}")
    assert got == get_json(holder.http_port, f"/api/events/{want[3]}")
    assert got["event_name"] == "E3" and got["payload"] == '{"n":3}' and got["partition_id"] == p
    unknown = want[3][:-4] + ("0000" if not want[3].endswith("0000") else "1111")
    assert request(reader.http_port, f"/api/events/{unknown}").status == 404

    # Where every partition lives, with its holders' watermark, in the list and the overview.
    rows = get_json(reader.http_port, "/api/partitions")["partitions"]
    assert rows[p]["watermark"] == w and rows[p]["held"] is False and len(rows[p]["replicas"]) == 2
    assert all(row["leader"] in row["replicas"] for row in rows)
    for q in range(PARTITIONS):
        assert rows[q]["watermark"] == len(epscan(nodes[rows[q]["replicas"][0]].port, q))
    overview = get_json(reader.http_port, "/api/overview")["cluster"]["partitions"]
    assert [(o["partition_id"], o["replicas"], o["held"]) for o in overview] == [
        (o["partition_id"], o["replicas"], o["held"]) for o in rows]  # fmt: skip

    # The live feed: history from the start, then live events, resumed exactly.
    feed = Feed(reader.http_port, f"/api/feed?partitions={p}&from=earliest")
    assert feed.status == 200
    assert feed.message()["event"] == "ready"
    fed: list[str] = []
    last_id = ""
    while len(fed) < w:
        last_id, events = feed.events()
        fed += ids(events)
    assert fed == on_holder
    feed.close()
    more = [append(r, stream, "Later", str(i))[b"event_id"].decode()
            for i in range(3)]  # fmt: skip
    resumed = Feed(reader.http_port, f"/api/feed?partitions={p}&from=earliest",
                   headers={"Last-Event-ID": last_id})  # fmt: skip
    assert resumed.message()["event"] == "ready"
    again: list[str] = []
    while len(again) < 3:
        again += ids(resumed.events()[1])
    assert again == more  # no gap, no duplicate
    live = [append(r, stream, "Live", "x")[b"event_id"].decode()]
    assert ids(resumed.events()[1]) == live
    resumed.close()

    # A tail of it (tail mode, through the relay): every event shown or counted as passed
    # over, once; the newest always shown.
    total = w + len(more) + len(live)
    with Feed(reader.http_port, f"/api/feed?partitions={p}&from=earliest&tail=2") as tailed:
        assert tailed.message()["event"] == "ready"
        passed, shown = 0, []
        while passed + len(shown) < total:
            m = tailed.message()
            if m["event"] == "skipped":
                passed += json.loads(m["data"])["count"]
            elif m["event"] == "events":
                shown += json.loads(m["data"])
    assert passed + len(shown) == total and ids(shown)[-1] == live[0]
    sequences = [e["partition_sequence"] for e in shown]
    assert sequences == sorted(set(sequences))

    # All partitions from `latest` on the reader: an append to the remote one arrives.
    everything = Feed(reader.http_port, "/api/feed?partitions=all")
    assert everything.message()["event"] == "ready"
    tail = append(r, stream, "Tail", "x")[b"event_id"].decode()
    assert ids(everything.events()[1]) == [tail]
    everything.close()


def test_reads_through_another_node_never_show_an_event_above_the_watermark(node_factory):
    nodes = cluster(node_factory, 3, "--replication-factor", "2")
    reader = nodes[0]
    row = remote_partition(reader.http_port)
    p = row["partition_id"]
    # The preferred leader (first in the placement) leads once the cluster has settled; the
    # other holder follows it.
    leader, follower = (nodes[i] for i in row["replicas"])
    wait_for(lambda: holder_with_role([leader], p, "leader") and holder_with_role(
        [follower], p, "follower"), SEEN_S, "the preferred leader leading")  # fmt: skip
    stream = stream_in(p, "fenced")
    first = redis.Redis(port=leader.port, protocol=3).execute_command(
        "EAPPEND", stream, "Confirmed", "PAYLOAD", "x")  # fmt: skip
    wait_for(lambda: get_json(reader.http_port, f"/api/stream?stream_id={stream}")["version"] == 0,
             SEEN_S, "the first event through the reader")  # fmt: skip
    w = get_json(reader.http_port, f"/api/partitions/{p}")["watermark"]

    # With its only follower stopped (and not yet seen down, else the leader refuses writes),
    # the leader (replication factor 2) writes an append but cannot confirm it: it stays above
    # the watermark.
    follower.proc.send_signal(signal.SIGSTOP)
    try:
        key = partition_key_for_stream(stream.encode())
        unconfirmed = format_uuid(new_event_id(partition_hash(key)))
        replies: list[object] = []

        def append() -> None:
            conn = redis.Redis(port=leader.port, protocol=3, socket_timeout=60)
            try:
                replies.append(
                    conn.execute_command(
                        "EAPPEND", stream, "Unconfirmed", "EVENT_ID", unconfirmed, "PAYLOAD", "y"
                    )
                )
            except redis.RedisError as e:
                replies.append(e)

        writer = threading.Thread(target=append)
        writer.start()

        def written_not_confirmed() -> bool:
            fields = dict(f.split("=", 1) for f in info_cluster(leader.port)[f"partition{p}"]
                          .split(","))  # fmt: skip
            return int(fields["last"].split("/")[1]) >= w and int(fields["watermark"]) == w

        wait_for(written_not_confirmed, SEEN_S, "the append written on the leader, unconfirmed")
        assert get_json(reader.http_port, f"/api/partitions/{p}")["watermark"] == w
        page = get_json(reader.http_port, f"/api/partitions/{p}/events?from=0")
        assert len(page["events"]) == w and page["next"] is None
        back = get_json(reader.http_port, f"/api/partitions/{p}/events?direction=backward&from={w}")
        assert back["events"][0]["partition_sequence"] == w - 1
        assert get_json(reader.http_port, f"/api/stream?stream_id={stream}")["version"] == 0
        events = get_json(reader.http_port, f"/api/stream/events?stream_id={stream}&from=0")
        assert ids(events["events"]) == [first[b"event_id"].decode()]
        assert request(reader.http_port, f"/api/events/{unconfirmed}").status == 404
        assert get_json(reader.http_port, "/api/partitions")["partitions"][p]["watermark"] == w
    finally:
        follower.proc.send_signal(signal.SIGCONT)
    writer.join(90)
    # Once the follower is back, the leader confirms it and the reader shows it.
    wait_for(lambda: request(reader.http_port, f"/api/events/{unconfirmed}").status == 200,
             SEEN_S * 2, "the event once confirmed")  # fmt: skip
    assert get_json(reader.http_port, f"/api/stream?stream_id={stream}")["version"] == 1


def test_a_partition_with_no_reachable_replica_is_a_clear_503(node_factory):
    nodes = cluster(node_factory, 3, "--replication-factor", "1")
    reader = nodes[0]
    row = remote_partition(reader.http_port)
    p = row["partition_id"]
    (only,) = row["replicas"]
    nodes[only].kill()
    wait_for(lambda: state_of(reader, only) == "down", SEEN_S, "the holder down")
    for path in (f"/api/partitions/{p}", f"/api/partitions/{p}/events",
                 f"/api/stream?stream_id={stream_in(p, 'gone')}",
                 f"/api/feed?partitions={p}"):  # fmt: skip
        reply = request(reader.http_port, path)
        assert reply.status == 503, (path, reply.status, reply.body)
        error = reply.json()["error"]
        assert error["code"] == "partition_unreachable" and f"partition {p}" in error["message"]
    rows = get_json(reader.http_port, "/api/partitions")["partitions"]
    assert rows[p]["watermark"] is None and rows[p]["last_sequence"] is None
