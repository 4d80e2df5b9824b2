"""Reads that span sealed segments and the active one give every event once, in order.

Reads of the active segment run on the event loop and reads that need a sealed segment in the
read threads (``Database.read_stream_raw``, ``read_partition_raw``, EPREAD's partitions): with
the smallest segment size, these streams and partitions are split between the two, so both
paths, and EPREAD's merge of the two, are exercised against a real node.
"""

from __future__ import annotations

import uuid

import pytest
from resp_client import RawClient, as_dict, client, module_node, scan

from sierradb.node.identifiers import partition_id

PAYLOAD = b"p" * 10_000  # 30 of them fill more than two 128 KiB segments
PARTITIONS = 32


def key_outside(p: int) -> str:
    """A partition key whose partition is not `p`."""
    while partition_id((key := uuid.uuid4()).bytes, PARTITIONS) == p:
        pass
    return str(key)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_node(tmp_path_factory, "--segment-size", "128KiB")


def ids(events: list) -> list[bytes]:
    return [e[b"event_id"] for e in events]


def test_stream_partition_and_epread_reads_cross_from_sealed_segments_into_the_active_one(server):
    r = client(server.port)
    key = str(uuid.uuid4())
    stream = f"crossing-{key}"
    appended = []
    for i in range(30):
        reply = as_dict(r.execute_command("EAPPEND", stream, "E", "PARTITION_KEY", key,
                                          "EXPECTED_VERSION", i - 1 if i else "empty",
                                          "PAYLOAD", PAYLOAD))  # fmt: skip
        appended.append(reply)
    p = appended[0][b"partition_id"]
    first = appended[0][b"partition_sequence"]
    want = [a[b"event_id"] for a in appended]
    sealed = int(
        next(
            line.split(":", 1)[1]
            for line in r.info("storage").decode().splitlines()
            if line.startswith("sealed_segments:")
        )
    )
    assert sealed >= 2, "the events should span sealed segments and the active one"

    def escan(start: int, count: int) -> tuple[bool, list[bytes]]:
        more, events = scan(r.execute_command("ESCAN", stream, start, "+", "PARTITION_KEY", key,
                                              "COUNT", count))  # fmt: skip
        return more, ids(events)

    assert escan(0, 100) == (False, want)  # from a sealed segment: the read threads
    assert escan(28, 100) == (False, want[28:])  # the active segment's: the event loop
    pages, start = [], 0
    while True:  # page by page across the boundaries
        more, page = escan(start, 7)
        pages += page
        start += len(page)
        if not more:
            break
    assert pages == want

    def epscan(start: int, count: int) -> tuple[bool, list[bytes]]:
        more, events = scan(r.execute_command("EPSCAN", p, start, "+", "COUNT", count))
        return more, [e for e in ids(events) if e in want]

    assert epscan(first, 1000)[1] == want
    assert epscan(appended[-1][b"partition_sequence"], 10) == (False, want[-1:])

    # Another partition's events, all in its bucket's active segment, beside the crossing one.
    other_key = key_outside(p)
    other = as_dict(r.execute_command("EAPPEND", f"other-{other_key}", "E", "PARTITION_KEY",
                                      other_key, "PAYLOAD", "small"))  # fmt: skip
    q = other[b"partition_id"]
    assert q != p
    reply = as_dict(r.execute_command("EPREAD", "COUNT", 1000, "FROM", p, first, q,
                                      other[b"partition_sequence"]))  # fmt: skip
    assert list(reply) == [p, q]  # in the order asked for
    got_p = [e for e in ids(scan(reply[p])[1]) if e in want]
    assert got_p == want
    assert ids(scan(reply[q])[1]) == [other[b"event_id"]]
    r.close()


def test_a_partition_subscription_delivers_from_sealed_segments_into_the_active_one(server):
    """EPSUB's delivery: the partitions whose read needs a sealed segment in the read threads,
    the others on the event loop; every event once, numbered in order, whatever the split."""
    r = client(server.port)
    key = str(uuid.uuid4())
    stream = f"subscribed-{key}"
    appended = [as_dict(r.execute_command("EAPPEND", stream, "E", "PARTITION_KEY", key,
                                          "PAYLOAD", PAYLOAD))  # fmt: skip
                for _ in range(30)]  # fmt: skip
    p = appended[0][b"partition_id"]
    first = appended[0][b"partition_sequence"]
    other_key = key_outside(p)
    other = as_dict(r.execute_command("EAPPEND", f"other-{other_key}", "E", "PARTITION_KEY",
                                      other_key, "PAYLOAD", "small"))  # fmt: skip
    q = other[b"partition_id"]
    assert q != p
    last_p = appended[-1][b"partition_sequence"]
    with RawClient(server.port, 3) as sub:
        sub.call("EPSUB", f"{p},{q}", "FROM", "MAP", f"{p}={first}",
                 f"{q}={other[b'partition_sequence']}", "WINDOW", 1000)  # fmt: skip
        frames = []
        while len(frames) < 1 + (last_p - first + 1) + 1:  # subscribe push, p's, q's
            frames.append(sub.read(20.0))
    messages = [f for f in frames if isinstance(f, list) and f[0] in (b"message", "message")]
    cursors = [m[2] for m in messages]
    assert cursors == list(range(len(messages)))  # numbered in order, none twice
    events = [as_dict(m[3]) for m in messages]
    want = [a[b"event_id"] for a in appended]
    assert [e[b"event_id"] for e in events if e[b"partition_id"] == p and
            e[b"event_id"] in want] == want  # fmt: skip
    assert [e[b"event_id"] for e in events if e[b"partition_id"] == q] == [other[b"event_id"]]
    r.close()
