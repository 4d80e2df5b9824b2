"""Idle connections wait in one place: a private epoll that one task watches.

Theory of operation. A connection with nothing to do but wait for its client's next request
(no partial request, so no deadline; no subscription; nothing left to send) *parks*: it hands
its socket and a callback to ``watch`` and its task sleeps. The poller's one task waits, through
trio, for the epoll's own descriptor to become readable; then it takes every ready socket with
one ``poll(0)`` and calls each one's callback. The callback reads what came and either serves it
in place (a batch of appends that the group commit answers by callback: the connection's task
sleeps on) or ``unwatch``-es the socket and wakes its task.

Why: with a task waiting on each socket, trio re-arms a one-shot registration for every wait and
switches to each task for every request. Parked here, a socket is registered once per park, and
one wake-up of the poller serves every connection that has a request, however many. The epoll is
level-triggered, so bytes a callback leaves unread keep their socket ready for the next round.
Each round ends with a checkpoint (the wait itself), so a busy client cannot starve the others.

Linux only (``select.epoll``), as the node is.
"""

from __future__ import annotations

import select
from collections.abc import Callable

import trio


class Poller:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._watched: dict[int, Callable[[], None]] = {}

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable()`` (from the poller's task) while ``fd`` has bytes to read."""
        self._epoll.register(fd, select.EPOLLIN)
        self._watched[fd] = on_readable

    def unwatch(self, fd: int) -> None:
        del self._watched[fd]
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # the socket was closed already (which unregistered it), or the poller was

    def close(self) -> None:
        self._epoll.close()

    async def run(self) -> None:
        epoll, watched = self._epoll, self._watched
        while True:
            await trio.lowlevel.wait_readable(epoll.fileno())
            for fd, _events in epoll.poll(0):
                on_readable = watched.get(fd)  # None: unwatched by an earlier callback
                if on_readable is not None:
                    on_readable()
