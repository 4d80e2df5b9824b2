"""Reads that span sealed segments and the active one give every event once, in order.

Reads of the active segment run on the event loop and reads that need a sealed segment in the
read threads (``Database.read_stream_raw``, ``read_partition_raw``, EPREAD's partitions): with
the smallest segment size, these streams and partitions are split between the two, so both
paths, and EPREAD's merge of the two, are exercised against a real node.
"""

from __future__ import annotations

import uuid

import pytest
from resp_client import as_dict, client, module_node, scan

PAYLOAD = b"p" * 10_000  # 30 of them fill more than two 128 KiB segments


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
    other_key = str(uuid.uuid4())
    other = as_dict(r.execute_command("EAPPEND", f"other-{other_key}", "E", "PARTITION_KEY",
                                      other_key, "PAYLOAD", "small"))  # fmt: skip
    q = other[b"partition_id"]
    if q == p:
        pytest.skip("both keys hash to one partition")
    reply = as_dict(r.execute_command("EPREAD", "COUNT", 1000, "FROM", p, first, q,
                                      other[b"partition_sequence"]))  # fmt: skip
    assert list(reply) == [p, q]  # in the order asked for
    got_p = [e for e in ids(scan(reply[p])[1]) if e in want]
    assert got_p == want
    assert ids(scan(reply[q])[1]) == [other[b"event_id"]]
    r.close()
