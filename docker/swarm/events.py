"""The swarm demo's client, run in a throwaway container of the image (it has sierradb.client).

    events.py write FIRST COUNT [RATE]  append events FIRST..FIRST+COUNT-1 (at most RATE a
                                        second); print the acknowledged ones
    events.py check FILE                read every demo stream back: each acknowledged event
                                        must be there
    events.py watermarks [--wait]       each node's per-partition watermarks (--wait: until
                                        every node has the same)

Nodes are `SIERRADB_ADDRESSES` (`host:port,host:port,...`, the tasks' published client ports).
Event i goes to stream `demo-<i % 8>` (so several partitions are written). Appends go through the
Python client: it fails over between the addresses and retries with the event id it made, so a
retry after a lost reply never appends twice. An acknowledged event is printed as
`<stream> <stream version> <event id> <i>`; that list is what `check` holds the cluster to.
"""

from __future__ import annotations

import os
import sys
import time

import redis

from sierradb.client import Client, RetryPolicy, SierraDBError

STREAMS = 8
# A task that was killed leaves its partitions leaderless for about the down timeout (6 s) plus
# an election; appends keep being retried (same event id) well past that.
APPEND_RETRY = RetryPolicy(max_attempts=None, max_elapsed_s=60.0)
WAIT_FOR_AGREEMENT_S = 180.0


def addresses() -> list[str]:
    text = os.environ.get("SIERRADB_ADDRESSES", "127.0.0.1:9090")
    return [a for a in text.split(",") if a]


def write(first: int, count: int, per_second: float) -> int:
    acknowledged = 0
    start = time.monotonic()
    with Client(addresses(), retry=APPEND_RETRY) as db:
        for i in range(first, first + count):
            if per_second > 0:
                time.sleep(max(0.0, start + (i - first) / per_second - time.monotonic()))
            stream = f"demo-{i % STREAMS}"
            try:
                r = db.append(stream, "Counted", b'{"i": %d}' % i)
            except SierraDBError as e:
                print(f"event {i} not acknowledged: {e}", file=sys.stderr)
                continue
            print(f"{stream} {r.stream_version} {r.event_id} {i}", flush=True)
            acknowledged += 1
    print(
        f"wrote events {first}..{first + count - 1}: {acknowledged} acknowledged", file=sys.stderr
    )
    return 0


def check(path: str) -> int:
    expected: dict[str, dict[int, str]] = {}
    with open(path) as f:
        for line in f:
            stream, version, event_id, _ = line.split()
            expected.setdefault(stream, {})[int(version)] = event_id
    missing = 0
    read = 0
    with Client(addresses(), retry=APPEND_RETRY) as db:
        for stream, versions in sorted(expected.items()):
            found = {e.stream_version: str(e.event_id) for e in db.scan_stream(stream)}
            read += len(found)
            for version, event_id in sorted(versions.items()):
                if found.get(version) != event_id:
                    print(f"MISSING {stream} version {version} event {event_id}", file=sys.stderr)
                    missing += 1
    total = sum(len(v) for v in expected.values())
    print(
        f"{total} acknowledged events, {read} events read back from {len(expected)} streams, "
        f"{missing} missing"
    )
    return 1 if missing else 0


def node_watermarks(address: str) -> tuple[int, dict[int, int]] | None:
    """(node index, {partition: watermark}) from one node's INFO cluster, None if unreachable."""
    host, _, port = address.rpartition(":")
    try:
        info = redis.Redis(host=host, port=int(port), socket_timeout=2).info("cluster")
    except redis.RedisError:
        return None
    partitions = {
        int(key[len("partition") :]): int(value["watermark"])
        for key, value in info.items()
        if key.startswith("partition") and key[len("partition") :].isdigit()
    }
    return int(info["node_index"]), partitions


def watermarks(wait: bool) -> int:
    deadline = time.monotonic() + WAIT_FOR_AGREEMENT_S
    while True:
        nodes = {a: node_watermarks(a) for a in addresses()}
        seen = {a: n for a, n in nodes.items() if n is not None}
        agree = (
            len(seen) == len(nodes)
            and len({tuple(sorted(p.items())) for _, p in seen.values()}) == 1
        )
        if agree or not wait or time.monotonic() > deadline:
            break
        time.sleep(1)
    for address, node in sorted(nodes.items(), key=lambda item: item[1] or (99, {})):
        if node is None:
            print(f"{address}: no answer")
            continue
        index, partitions = node
        marks = " ".join(str(partitions[p]) for p in sorted(partitions))
        print(
            f"node {index} ({address}): {sum(partitions.values())} events; per partition: {marks}"
        )
    print("watermarks agree on every node" if agree else "watermarks differ")
    return 0 if agree else 1


def main(argv: list[str]) -> int:
    if len(argv) in (3, 4) and argv[0] == "write":
        return write(int(argv[1]), int(argv[2]), float(argv[3]) if len(argv) == 4 else 0.0)
    if len(argv) == 2 and argv[0] == "check":
        return check(argv[1])
    if argv[:1] == ["watermarks"] and argv[1:] in ([], ["--wait"]):
        return watermarks(wait=argv[1:] == ["--wait"])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
