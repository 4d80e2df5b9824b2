"""SierraDB from redis-py (with hiredis when installed), RESP2 or RESP3, default settings.

    python examples/clients/python_client.py [port] [2|3]

The client matrix (tests/clients) runs this scenario against a fresh node; every client under
examples/clients/ runs the same one. RESP3 follows the partition with a push subscription
(EPSUB), RESP2 with EPREAD ... BLOCK.
"""

import os
import sys
import threading

import redis

port = int(sys.argv[1]) if len(sys.argv) > 1 else 9090
protocol = int(sys.argv[2]) if len(sys.argv) > 2 else 2
r = redis.Redis(port=port, protocol=protocol)


def as_dict(reply):
    """A map: a dict in RESP3, a flat [key, value, ...] list in RESP2; keys as text."""
    items = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in items}


def text(value):
    return value.decode() if isinstance(value, bytes) else value


stream = "account-" + os.urandom(4).hex()

# Append with an expected version; a conflict's error code reaches the caller.
opened = as_dict(
    r.execute_command(
        "EAPPEND", stream, "Opened", "PAYLOAD", b'{"owner": "ann"}', "EXPECTED_VERSION", "empty"
    )
)
r.execute_command(
    "EAPPEND", stream, "Deposited", "PAYLOAD", b'{"amount": 10}', "EXPECTED_VERSION", 0
)
try:
    r.execute_command("EAPPEND", stream, "Deposited", "EXPECTED_VERSION", 0)
    raise SystemExit("a stale expected version was accepted")
except redis.ResponseError as e:
    assert str(e).startswith("WRONGVER"), e
partition, key = opened["partition_id"], text(opened["partition_key"])

# Several events in one partition, atomically.
multi = as_dict(r.execute_command("EMAPPEND", key, stream, "A", stream, "B"))
assert [as_dict(e)["stream_version"] for e in multi["events"]] == [2, 3]

# Read back by stream, by partition and by event id.
events = [as_dict(e) for e in as_dict(r.execute_command("ESCAN", stream, "-", "+"))["events"]]
assert [e["event_name"] for e in events] == [b"Opened", b"Deposited", b"A", b"B"]
seq = opened["partition_sequence"]
by_partition = as_dict(r.execute_command("EPSCAN", partition, seq, seq))["events"]
assert text(as_dict(by_partition[0])["event_id"]) == text(opened["event_id"])
assert as_dict(r.execute_command("EGET", text(opened["event_id"])))["event_name"] == b"Opened"

# Page to the end.
pages, start = [], 0
while True:
    page = as_dict(r.execute_command("ESCAN", stream, start, "+", "COUNT", 3))
    got = [as_dict(e)["stream_version"] for e in page["events"]]
    pages.append(got)
    if not page["has_more"]:
        break
    start = got[-1] + 1
assert sum(pages, []) == [0, 1, 2, 3], pages

# 50 pipelined appends.
with r.pipeline(transaction=False) as pipe:
    for i in range(50):
        pipe.execute_command("EAPPEND", stream, "Piped", "PAYLOAD", str(i))
    replies = pipe.execute()
assert [as_dict(x)["stream_version"] for x in replies] == list(range(4, 54))

# Binary payload round trip.
blob = bytes(range(256)) * 4
stored = as_dict(r.execute_command("EAPPEND", stream, "Blob", "PAYLOAD", blob))
assert as_dict(r.execute_command("EGET", text(stored["event_id"])))["payload"] == blob


# A consumer follows the partition from sequence 0 into live events while another connection
# appends; it sees every event once, in order.
LIVE = 30
writer_done = threading.Event()


def writer():
    w = redis.Redis(port=port, protocol=protocol)
    for i in range(LIVE):
        w.execute_command("EAPPEND", stream, "Live", "PAYLOAD", str(i))
    writer_done.set()


def follow_with_epread(handle):
    """Any client: EPREAD ... BLOCK waits for the next event without polling."""
    position = 0
    consumer = redis.Redis(port=port, protocol=protocol)
    while not (writer_done.is_set() and position > last_sequence()):
        reply = consumer.execute_command(
            "EPREAD", "COUNT", 100, "BLOCK", 2000, "FROM", partition, position
        )
        for part in as_dict(reply).values():
            for e in as_dict(part)["events"]:
                event = as_dict(e)
                assert event["partition_sequence"] == position
                handle(event)
                position += 1


def follow_with_push():
    """RESP3 only: a push subscription on a connection of its own."""
    position = 0
    conn = r.connection_pool.get_connection()
    conn.send_command("EPSUB", partition, "FROM", 0, "WINDOW", 100)
    subscription = conn.read_response()
    while not (writer_done.is_set() and position > last_sequence()):
        if not conn.can_read(timeout=1):  # (a read_response that times out would disconnect)
            continue  # nothing new yet: check whether the writer is done
        frame = conn.read_response(push_request=True)
        if not isinstance(frame, list) or frame[0] != b"message":
            continue  # the subscribe confirmation, EACK's +OK
        _, _, cursor, event = frame
        event = as_dict(event)
        assert event["partition_sequence"] == position
        seen.append(event)
        position += 1
        conn.send_command("EACK", subscription, cursor)
    conn.send_command("EUNSUB", subscription)
    r.connection_pool.release(conn)


def last_sequence():
    return r.execute_command("EPSEQ", partition)


seen = []
thread = threading.Thread(target=writer)
thread.start()
if protocol == 3:
    follow_with_push()
else:
    follow_with_epread(seen.append)
thread.join()
mine = [e for e in seen if e["stream_id"] == stream.encode()]
assert [e["stream_version"] for e in mine] == list(range(len(mine)))
assert [e["payload"] for e in mine if e["event_name"] == b"Live"] == [
    str(i).encode() for i in range(LIVE)
]
print("OK python protocol", protocol, "hiredis", redis.utils.HIREDIS_AVAILABLE)
