"""The announcement's session works with redis-py over RESP2 and RESP3."""

import pytest
import redis


@pytest.mark.parametrize("protocol", [2, 3])
def test_append_then_scan(node, protocol):
    r = redis.Redis(port=node.port, protocol=protocol)
    reply = r.execute_command("EAPPEND", "user-123", "UserCreated", '{"name": "Alice"}')
    reply = dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else reply
    assert reply[b"partition_id"] == 21
    assert reply[b"stream_version"] == 0
    scan = r.execute_command("ESCAN", "user-123", "-", "+")
    if isinstance(scan, list):
        scan = dict(zip(scan[::2], scan[1::2], strict=True))
    (event,) = scan[b"events"]
    if isinstance(event, list):
        event = dict(zip(event[::2], event[1::2], strict=True))
    assert event[b"payload"] == b'{"name": "Alice"}'
    assert event[b"event_name"] == b"UserCreated"
