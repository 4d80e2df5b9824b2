#!/usr/bin/env python3
"""Append events with redis-py and follow them with a subscription (history, then live).

Run a node first (`sierradb --dir ./data`), then: python examples/subscribe.py
"""

import threading
import time

import redis

PORT = 9090


def follow(stream: str, stop_after: int) -> None:
    """Subscribe from version 0 and acknowledge as we go (a projection would apply each event)."""
    r = redis.Redis(port=PORT, protocol=3)
    conn = r.connection_pool.get_connection("ESUB")
    try:
        conn.send_command("ESUB", stream, "FROM", "0", "WINDOW", "100")
        subscription_id = conn.read_response()
        print("subscribed:", subscription_id)
        seen = 0
        while seen < stop_after:
            frame = conn.read_response(push_request=True)  # pushes are returned, not swallowed
            if not isinstance(frame, list):  # the +OK of an EACK
                continue
            if frame[0] in (b"subscribe", "subscribe"):
                continue
            _, sub_id, cursor, event = frame
            print(f"  cursor {cursor}: v{event[b'stream_version']} {event[b'event_name'].decode()}"
                  f" {event[b'payload'].decode()}")  # fmt: skip
            seen += 1
            conn.send_command("EACK", sub_id, cursor)
    finally:
        r.connection_pool.release(conn)
        r.close()


def main() -> None:
    stream = f"account-{int(time.time())}"
    r = redis.Redis(port=PORT, protocol=3)
    r.execute_command("EAPPEND", stream, "AccountOpened", "PAYLOAD", '{"owner": "Alice"}',
                      "EXPECTED_VERSION", "empty")  # fmt: skip
    follower = threading.Thread(target=follow, args=(stream, 4))
    follower.start()
    for i, amount in enumerate((100, -30, 55)):
        # Optimistic concurrency: each append states the version it expects to follow.
        r.execute_command("EAPPEND", stream, "MoneyMoved", "PAYLOAD", f'{{"amount": {amount}}}',
                          "EXPECTED_VERSION", str(i))  # fmt: skip
        time.sleep(0.2)
    follower.join()
    print("stream version:", r.execute_command("ESVER", stream))
    r.close()


if __name__ == "__main__":
    main()
