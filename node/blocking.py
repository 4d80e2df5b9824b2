"""Blocking reads: `ESCAN ... BLOCK`, `EPSCAN ... BLOCK` and `EPREAD` (PROTOCOL.md point 15).

Theory of operation. A blocking read first reads like its plain twin; when the range holds a
visible event it answers at once and never counts as blocked. Otherwise the client is blocked:
it takes one of the node's `max_blocked_clients` places (or gets an error), and the read waits,
without polling, until one of these happens:

- An event it waits for becomes visible. For a partition this node holds, the read parks in the
  watermark board's per-partition queues (``visibility.WatermarkBoard.wait_past_any``), which the
  confirmer (leader) or the replication service (follower) wakes when the watermark moves, so
  only what is visible is ever served. Before parking it re-checks the watermarks without an
  await in between, so a move that happened during the read is never missed. For a partition
  held elsewhere, a long poll (``relay.LONG_POLL_MS``) to a replica that holds it does the
  waiting there, on that replica's watermark.
- The time passes: the ordinary empty reply (`BLOCK 0` never times out, as in Redis).
- The client disconnects: while it waits, the socket is read ahead into the connection's parser
  (so a pipelined request behind the blocked one is kept, and runs after it, as in Redis), and
  end of file ends the wait and the connection. At most `READ_AHEAD_BYTES` are read ahead; a
  client that pipelines more is not watched until its wait ends.
- The node stops (the connection's ``stop_reading``): the empty reply.

After a wake the read runs again, and waits again if (stream reads) the new events are not the
ones it asked for. Memory of one blocked client: its request, one queue entry per partition it
waits on, and at most `READ_AHEAD_BYTES` of read-ahead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard

import trio

from sierradb.storage import Event

from . import grammar as g
from .context import Client, Reader
from .errors import NodeError, partition_unavailable
from .forwarding import forward_read
from .read_pool import INLINE_READ_EVENTS
from .relay import LONG_POLL_MS
from .replies import scan_result, scan_result_raw

# Bytes of pipelined requests read ahead while a client is blocked (see above).
READ_AHEAD_BYTES = 64 * 1024
RECEIVE_BYTES = 16 * 1024
# A remote replica's long poll, bounded by what is left of the client's own timeout.
REMOTE_WAIT_MS = LONG_POLL_MS


def can_block(conn: Reader) -> TypeGuard[Client]:
    """Only a client connection blocks; a read forwarded by another node never does."""
    return getattr(conn, "stream", None) is not None


# ------------------------------------------------------------------------------ waiting
Positions = list[tuple[int, int]]  # (partition, sequence whose visibility ends the wait)


def _moved(conn: Client, local: Positions) -> bool:
    store = conn.db.store
    return any(store.watermark(p) > seq for p, seq in local)


async def _wait(conn: Client, local: Positions, remote: list[Callable[[int], Awaitable[bool]]],
                deadline: float) -> None:  # fmt: skip
    """Park until an awaited event is visible (or may be), the client leaves, or the deadline."""
    if _moved(conn, local):
        return
    async with trio.open_nursery() as nursery:
        done = nursery.cancel_scope.cancel

        async def watch_local() -> None:
            # Checked again here: the task starts after a scheduling point, where a move may
            # have happened; the check and the parking below have no await between them.
            if not _moved(conn, local):
                await conn.db.board.wait_past_any(local)
            done()

        async def watch_remote(poll: Callable[[int], Awaitable[bool]]) -> None:
            while True:
                left_ms = (deadline - trio.current_time()) * 1000
                if await poll(max(1, int(min(REMOTE_WAIT_MS, left_ms)))):
                    done()
                    return

        if local:
            nursery.start_soon(watch_local)
        for poll in remote:
            nursery.start_soon(watch_remote, poll)
        nursery.start_soon(_watch_disconnect, conn, done)


async def _watch_disconnect(conn: Client, done: Callable[[], None]) -> None:
    budget = READ_AHEAD_BYTES
    while budget > 0:
        try:
            chunk = await conn.stream.receive_some(min(RECEIVE_BYTES, budget))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            chunk = b""
        if not chunk:
            conn.peer_gone = True
            done()
            return
        conn.reader.feed(chunk)
        budget -= len(chunk)
    await trio.sleep_forever()


async def serve(
    conn: Client,
    block_ms: int,
    attempt: Callable[[], Awaitable[tuple[bytes | None, Positions, list[Any]]]],
    empty: bytes,
) -> bytes:
    """The blocking loop: `attempt()` reads once and returns (reply or None when nothing is
    there yet, local positions to wait on, remote polls to wait on)."""
    deadline = float("inf") if block_ms == 0 else trio.current_time() + block_ms / 1000
    with conn.server.blocked.hold():
        with trio.CancelScope(deadline=deadline) as scope:
            conn.block_scope = scope
            try:
                while True:
                    reply, local, remote = await attempt()
                    if reply is not None:
                        return reply
                    await _wait(conn, local, remote, deadline)
                    if conn.peer_gone:
                        conn.closing = True
                        return b""
            finally:
                conn.block_scope = None
    return empty


# -------------------------------------------------------------------------- ESCAN/EPSCAN
async def block_escan(
    conn: Client, p: int, req: g.EScan, read: Callable[[], Awaitable[bytes | None]]
) -> bytes:
    """`read()` returns the reply, or None when the range holds no visible event yet."""
    store = conn.db.store

    async def attempt() -> tuple[bytes | None, Positions, list[Any]]:
        mark = store.watermark(p)  # any move past it may bring the stream's next version
        return await read(), [(p, mark)], []

    assert req.block_ms is not None
    return await serve(conn, req.block_ms, attempt, scan_result([], False, conn.protocol == 3))


async def block_epscan(
    conn: Client, p: int, req: g.EPScan, read: Callable[[], Awaitable[bytes | None]]
) -> bytes:
    async def attempt() -> tuple[bytes | None, Positions, list[Any]]:
        return await read(), [(p, req.start_sequence)], []

    assert req.block_ms is not None
    return await serve(conn, req.block_ms, attempt, scan_result([], False, conn.protocol == 3))


def without_block(args: list[bytes]) -> list[bytes]:
    """ESCAN/EPSCAN arguments without their BLOCK option (options are pairs from index 4)."""
    out = args[:4]
    for i in range(4, len(args) - 1, 2):
        if args[i].upper() != b"BLOCK":
            out += args[i : i + 2]
    return out


async def block_remote_scan(conn: Client, p: int, req: g.EScan | g.EPScan,
                            args: list[bytes]) -> bytes:  # fmt: skip
    """ESCAN/EPSCAN BLOCK of a partition held elsewhere: forwarded plain reads, and a replica's
    long poll for the wait."""
    resp3 = conn.protocol == 3
    empty = scan_result([], False, resp3)
    plain = without_block(args)
    reply = await forward_read(conn, p, plain)
    if reply != empty:
        return reply
    if isinstance(req, g.EScan):
        start, stream_id, key = req.start_version, req.stream_id, req.partition_key
    else:
        start, stream_id, key = req.start_sequence, b"", b""

    async def poll(wait_ms: int) -> bool:
        return await _remote_poll(conn, p, start, wait_ms, stream_id, key)

    async def attempt() -> tuple[bytes | None, Positions, list[Any]]:
        r = await forward_read(conn, p, plain)
        return (None if r == empty else r), [], [poll]

    assert req.block_ms is not None
    return await serve(conn, req.block_ms, attempt, empty)


async def _remote_poll(conn: Client, p: int, start: int, wait_ms: int,
                       stream_id: bytes = b"", key: bytes = b"") -> bool:  # fmt: skip
    """Wait at a replica of `p` until the event at `start` is visible there (True) or
    `wait_ms` passes (False)."""
    service = conn.server.replication
    assert service is not None
    source = service.leader_of(p)
    if source is None:
        await trio.sleep(wait_ms / 1000)
        return False
    try:
        events, _ = await service.fetch_events(source, p, start, 1, wait_ms, stream_id, key)
    except NodeError:
        await trio.sleep(min(wait_ms, REMOTE_WAIT_MS) / 1000)
        return False
    return bool(events)


# ---------------------------------------------------------------------------------- EPREAD
def _resolve(conn: Client, req: g.EPRead) -> list[tuple[int, int]]:
    count = conn.db.partition_count
    out: list[tuple[int, int]] = []
    seen: set[int] = set()
    for selector, sequence in req.positions:
        p = g.resolve_partition(selector, count)
        if p >= count:
            raise partition_unavailable()
        if p in seen:
            raise NodeError("INVALIDARG", f"partition {p} given more than once")
        seen.add(p)
        out.append((p, sequence))
    return out


def _held_here(conn: Client, p: int) -> bool:
    service = conn.server.replication
    return service is None or p in service.replicas


async def _read_remote(conn: Client, p: int, start: int,
                       count: int) -> tuple[list[Event], bool]:  # fmt: skip
    service = conn.server.replication
    assert service is not None
    source = service.leader_of(p)
    if source is None:
        raise NodeError("TRYAGAIN", f"partition {p} has no reachable replica; retry")
    events, position = await service.fetch_events(source, p, start, count, 0)
    more = bool(events) and position > events[-1].partition_sequence + 1
    return list(events), more


async def _read_partitions(
    conn: Client, positions: list[tuple[int, int]], count: int
) -> list[tuple[int, bytes]]:
    """(partition, encoded scan result) of every listed partition with visible events, in order.

    Local partitions whose watermark shows nothing at their position are skipped without a
    read, and the others are read as stored records that are encoded without being decoded:
    a consumer of every partition that is woken by one append reads one partition, not all of
    them. A read of at most INLINE_READ_EVENTS runs on the event loop as far as it lies in the
    active segment (a consumer following the live end reads what was just written, from
    memory); the partitions whose read needs a sealed segment, or all of a larger read
    (catching up), are read in one hop to the read threads."""
    store = conn.db.store
    resp3 = conn.protocol == 3
    local = [(p, s) for p, s in positions if _held_here(conn, p) and store.watermark(p) > s]
    events = sum(min(count, store.watermark(p) - s) for p, s in local)
    found: dict[int, bytes] = {}
    rest = local
    if events <= INLINE_READ_EVENTS:
        rest = []
        for p, s in local:
            got = store.read_partition_raw_active(p, s, None, count)
            if got is None:
                rest.append((p, s))
            elif got[0]:
                found[p] = scan_result_raw(got[0], got[1], resp3)

    def read_rest() -> dict[int, bytes]:
        read = {}
        for p, s in rest:
            records, more = store.read_partition_raw(p, s, None, count)
            if records:
                read[p] = scan_result_raw(records, more, resp3)
        return read

    if rest:
        found.update(await conn.db.read(read_rest))
    out = []
    for p, s in positions:
        if p in found:
            out.append((p, found[p]))
        elif not _held_here(conn, p):
            events, more = await _read_remote(conn, p, s, count)
            if events:
                out.append((p, scan_result(events, more, resp3)))
    return out


def _epread_reply(results: list[tuple[int, bytes]], resp3: bool) -> bytes:
    head = b"%%%d\r\n" % len(results) if resp3 else b"*%d\r\n" % (2 * len(results))
    return head + b"".join(b":%d\r\n" % p + scan for p, scan in results)


async def epread(conn: Client, req: g.EPRead) -> bytes:
    positions = _resolve(conn, req)
    count = conn.config.read_count(req.count)
    resp3 = conn.protocol == 3
    service = conn.server.replication
    if service is not None:
        for p, _ in positions:
            if p in service.replicas:
                await service.ready_to_read(p)

    async def read() -> bytes | None:
        results = await _read_partitions(conn, positions, count)
        return _epread_reply(results, resp3) if results else None

    reply = await read()
    if reply is not None or req.block_ms is None or not can_block(conn):
        return reply if reply is not None else _epread_reply([], resp3)

    local = [(p, s) for p, s in positions if _held_here(conn, p)]
    remote = [
        (lambda ms, p=p, s=s: _remote_poll(conn, p, s, ms))
        for p, s in positions
        if not _held_here(conn, p)
    ]

    async def attempt() -> tuple[bytes | None, Positions, list[Any]]:
        return await read(), local, remote

    return await serve(conn, req.block_ms, attempt, _epread_reply([], resp3))
