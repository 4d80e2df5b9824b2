"""The shared connection when the thread reading for everyone is interrupted.

A KeyboardInterrupt (or SystemExit) belongs to the thread it was raised in. When that thread
was reading replies for the other threads sharing the connection, they must see a lost
connection (which the client's retry policy handles), not the interrupt.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from nodeproc import NodeProcess

from sierradb.client.shared_connection import SharedConnection


class _InterruptedReads:
    """A socket whose reads in one thread wait a moment, then raise `error` there."""

    def __init__(self, sock: Any, thread: threading.Thread, error: BaseException) -> None:
        self._sock, self._thread, self._error = sock, thread, error

    def recv(self, size: int) -> bytes:
        if threading.current_thread() is self._thread:
            time.sleep(0.3)  # the other thread's request is queued behind by then
            raise self._error
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_of_the_reading_thread_stays_in_that_thread(
    shared_node: NodeProcess, interrupt: type[BaseException]
) -> None:
    shared = SharedConnection(lambda: redis.Connection(port=shared_node.port))
    assert shared.call([("PING",)]) == [b"PONG"]  # connected
    outcomes: dict[str, BaseException | list] = {}

    def run(name: str) -> None:
        try:
            outcomes[name] = shared.call([("PING",)])
        except BaseException as e:  # noqa: BLE001 - the outcome is what is tested
            outcomes[name] = e

    reader = threading.Thread(target=run, args=("reader",))
    other = threading.Thread(target=run, args=("other",))
    link = shared._link
    assert link is not None
    link.sock = _InterruptedReads(link.sock, reader, interrupt())  # type: ignore[assignment]
    reader.start()
    time.sleep(0.1)
    other.start()
    reader.join(10)
    other.join(10)
    assert isinstance(outcomes["reader"], interrupt)
    assert isinstance(outcomes["other"], redis.exceptions.ConnectionError), outcomes["other"]
    assert shared.call([("PING",)]) == [b"PONG"]  # the next call connects again
    shared.close()
