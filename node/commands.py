"""Handlers of every command except the appends (which pipeline, see ``connection.py``).

Each handler takes the connection and the parsed request and returns the encoded reply; expected
failures are raised as exceptions that ``errors.reply_for`` maps to coded error replies.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from sierradb.storage.record import RAW_PARTITION_KEY, RawEvent

from . import blocking
from . import grammar as g
from .context import Client, Reader
from .errors import NodeError, partition_unavailable, reply_for
from .forwarding import RemoteReader
from .identifiers import format_uuid, partition_id
from .info import cache_info, info_text
from .relay import Relay
from .replies import event_map, push_subscribe, scan_result_raw
from .subscriptions import PartitionTarget, RemoteTarget, StreamTarget, Subscription
from .version import SERVER_VERSION

__all__ = ["HANDLERS", "READS_NOW", "SERVER_VERSION", "ReadNow", "execute_forwarded_read"]

OK = b"+OK\r\n"


def _partition(conn: Reader, selector: int | bytes) -> int:
    p = g.resolve_partition(selector, conn.db.partition_count)
    if p >= conn.db.partition_count:
        raise partition_unavailable()
    return p


# ------------------------------------------------------------------------ Redis courtesy
async def ping(conn: Client, req: g.Ping) -> bytes:
    if req.message is None:
        return b"+PONG\r\n"
    return conn._encode(req.message)


async def echo(conn: Client, req: g.Echo) -> bytes:
    return conn._encode(req.message)


async def quit_(conn: Client, req: g.Quit) -> bytes:
    conn.closing = True
    return OK


async def select(conn: Client, req: g.Select) -> bytes:
    if req.db != 0:
        raise NodeError("ERR", "DB index is out of range")
    return OK


def _check_password(conn: Client, username: bytes | None, password: bytes) -> None:
    required = conn.config.requirepass
    if not required:
        if username is not None:
            # Like Redis 6+: the default user has no password, so any password is accepted for
            # it (redis-py sends AUTH default <password> when given both).
            if username != b"default":
                raise NodeError("WRONGPASS", "invalid username-password pair")
            return
        raise NodeError(
            "ERR",
            "AUTH <password> called without any password configured for the default user. "
            "Are you sure your configuration is correct?",
        )
    user_ok = username is None or username == b"default"
    if not (user_ok and hmac.compare_digest(password, required.encode())):
        conn.server.stats.auth_failures += 1
        raise NodeError("WRONGPASS", "invalid username-password pair")
    conn.authenticated = True


async def auth(conn: Client, req: g.Auth) -> bytes:
    _check_password(conn, req.username, req.password)
    return OK


async def hello(conn: Client, req: g.Hello) -> bytes:
    if req.password is not None:
        _check_password(conn, req.username, req.password)
    elif not conn.authenticated:
        raise NodeError(
            "NOAUTH",
            "HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time",
        )
    if req.protocol_version is not None:
        conn.protocol = req.protocol_version
    if req.client_name is not None:
        conn.name = req.client_name
    return conn._encode(
        {
            "server": "sierradb",
            "version": SERVER_VERSION,
            "peer_id": conn.server.peer_id,
            "num_partitions": conn.db.partition_count,
            "proto": conn.protocol,
        }
    )


async def info(conn: Client, req: g.Info) -> bytes:
    if req.sections == (b"cache",):
        return conn._encode(cache_info(conn.db.store))
    return conn._encode(info_text(conn.server, req.sections))


async def client_setinfo(conn: Client, req: g.ClientSetInfo) -> bytes:
    if req.attribute == b"LIB-NAME":
        conn.lib_name = req.value
    return OK


async def client_setname(conn: Client, req: g.ClientSetName) -> bytes:
    conn.name = req.name
    return OK


async def client_getname(conn: Client, req: g.ClientGetName) -> bytes:
    return conn._encode(conn.name or None)


async def client_id(conn: Client, req: g.ClientId) -> bytes:
    return conn._encode(conn.client_id)


async def config_get(conn: Client, req: g.ConfigGet) -> bytes:
    return conn._encode({})


async def cluster_admit(conn: Client, req: g.ClusterAdmit) -> bytes:
    from sierradb.p2p.membership import AdmitError

    cluster = conn.server.cluster
    if cluster is None:
        raise NodeError("ERR", "this node is not part of a cluster (--node-count 1)")
    try:
        await cluster.admit(req.node_index, req.member_id)
    except AdmitError as e:
        raise NodeError("ERR", str(e)) from e
    return OK


async def command(conn: Client, req: g.Command) -> bytes:
    if req.subcommand == b"COUNT":
        return conn._encode(0)
    return conn._encode([])


# ------------------------------------------------------------------------------ reads
async def eget(conn: Reader, req: g.EGet) -> bytes:
    db = conn.db
    p = partition_id(req.event_id, db.partition_count)
    ev = await db.read(db.store.get_event, p, req.event_id)
    if ev is None:
        return conn._encode(None)
    return event_map(ev, conn.protocol == 3)


def escan_now(conn: Reader, req: g.EScan) -> bytes | None:
    """The ESCAN reply if it can be given at once, on the event loop (the range lies in the
    active segment, and it finds events or does not block); else None, and ``escan`` serves it."""
    db = conn.db
    p = partition_id(req.partition_key, db.partition_count)
    found = db.read_stream_raw_now(
        p, req.stream_id, req.start_version, req.end_version, conn.config.read_count(req.count)
    )
    if found is None:
        return None
    reply, has_events = _stream_scan_reply(req, *found, conn.protocol == 3)
    return None if not has_events and req.block_ms is not None else reply


def _stream_scan_reply(
    req: g.EScan, records: list[RawEvent], more: bool, resp3: bool
) -> tuple[bytes, bool]:
    """An ESCAN reply, and whether it holds events."""
    if records and records[0][RAW_PARTITION_KEY] != req.partition_key:
        records, more = [], False  # the stream id is bound to another key in this partition
    return scan_result_raw(records, more, resp3), bool(records)


async def escan(conn: Reader, req: g.EScan) -> bytes:
    db = conn.db
    p = partition_id(req.partition_key, db.partition_count)
    resp3 = conn.protocol == 3

    async def read() -> bytes | None:
        records, more = await db.read_stream_raw(
            p, req.stream_id, req.start_version, req.end_version, conn.config.read_count(req.count)
        )
        reply, found = _stream_scan_reply(req, records, more, resp3)
        first[:] = [reply]
        return reply if found else None

    first: list[bytes] = []
    reply = await read()
    if reply is not None:
        return reply
    if (
        req.block_ms is not None
        and blocking.can_block(conn)
        and _range_open(req.start_version, req.end_version)
    ):
        return await blocking.block_escan(conn, p, req, read)
    return first[0]


async def esver(conn: Reader, req: g.ESVer) -> bytes:
    db = conn.db
    p = partition_id(req.partition_key, db.partition_count)
    key = await db.read(db.store.stream_partition_key, p, req.stream_id)
    if key is None or key != req.partition_key:
        return conn._encode(None)
    return conn._encode(await db.read(db.store.last_stream_version, p, req.stream_id))


def _range_open(start: int, end: int | None) -> bool:
    """Whether an inclusive range can ever hold an event (a BLOCK on an empty one returns)."""
    return end is None or start <= end


def epscan_now(conn: Reader, req: g.EPScan) -> bytes | None:
    """The EPSCAN reply if it can be given at once (as ``escan_now``); else None."""
    p = _partition(conn, req.partition)
    found = conn.db.read_partition_raw_now(
        p, req.start_sequence, req.end_sequence, conn.config.read_count(req.count)
    )
    if found is None or (not found[0] and req.block_ms is not None):
        return None
    return scan_result_raw(*found, conn.protocol == 3)


async def epscan(conn: Reader, req: g.EPScan) -> bytes:
    db = conn.db
    p = _partition(conn, req.partition)
    resp3 = conn.protocol == 3

    async def read() -> bytes | None:
        records, more = await db.read_partition_raw(
            p, req.start_sequence, req.end_sequence, conn.config.read_count(req.count)
        )
        first[:] = [scan_result_raw(records, more, resp3)]
        return first[0] if records else None

    first: list[bytes] = []
    reply = await read()
    if reply is not None:
        return reply
    if (
        req.block_ms is not None
        and blocking.can_block(conn)
        and _range_open(req.start_sequence, req.end_sequence)
    ):
        return await blocking.block_epscan(conn, p, req, read)
    return first[0]


async def epseq(conn: Reader, req: g.EPSeq) -> bytes:
    p = _partition(conn, req.partition)
    return conn._encode(conn.db.store.last_partition_sequence(p))


# ----------------------------------------------------------------------- subscriptions
def _remote(conn: Client, p: int) -> bool:
    """Whether this cluster node holds no replica of a partition (a relay then feeds it)."""
    service = conn.server.replication
    return service is not None and p not in service.replicas


async def _remote_target(
    conn: Client, p: int, start: int | None, window: int | None,
    stream_id: bytes = b"", partition_key: bytes = b"",
) -> RemoteTarget:  # fmt: skip
    """A relay-fed target; a LATEST start is the remote position now, before the reply."""
    service = conn.server.replication
    assert service is not None
    if start is None:
        source = service.leader_of(p)
        if source is None:
            raise NodeError("TRYAGAIN", f"partition {p} has no reachable replica; retry")
        _, start = await service.fetch_events(source, p, 0, 0, 0, stream_id, partition_key)
    relay = Relay(
        service, conn.db.board, p, start, window or conn.config.default_window, stream_id,
        partition_key,
    )  # fmt: skip
    return RemoteTarget(p, relay)


def _start(conn: Client, targets: list, window: int | None) -> bytes:
    db = conn.db
    sub_id = uuid.uuid4().bytes
    sub = Subscription(
        sub_id,
        targets,
        window or conn.config.default_window,
        db.store,
        db.board,
        db.read,
        conn.send_push,
        conn.protocol == 3,
    )
    conn.subscriptions[sub_id] = sub
    conn.server.stats.subscriptions_started += 1
    gate = trio.Event()
    conn.after_send.append(gate)

    async def run() -> None:
        await gate.wait()  # the reply (with the subscribe push) goes out first
        await sub.run()

    assert conn._nursery is not None
    conn._nursery.start_soon(run)
    reply = b"+%s\r\n" % format_uuid(sub_id).encode()
    return reply + push_subscribe(sub_id, len(conn.subscriptions), conn.protocol == 3)


async def esub(conn: Client, req: g.ESub) -> bytes:
    db = conn.db
    targets: list[StreamTarget | PartitionTarget | RemoteTarget] = []
    for s in req.streams:
        p = partition_id(s.partition_key, db.partition_count)
        start = s.start_version
        if _remote(conn, p):
            targets.append(
                await _remote_target(conn, p, start, req.window, s.stream_id, s.partition_key)
            )
            continue
        if start is None:
            # Live only: from the visible end as of this command, taken without an await so no
            # event can become visible between that and the reply (usually a cached stream tip).
            last = db.store.last_stream_version(p, s.stream_id)
            start = 0 if last is None else last + 1
        targets.append(StreamTarget(p, s.stream_id, s.partition_key, start))
    return _start(conn, targets, req.window)


async def epsub(conn: Client, req: g.EPSub) -> bytes:
    db = conn.db
    targets: list[StreamTarget | PartitionTarget | RemoteTarget] = []
    for p in req.selector.resolve(db.partition_count):
        if p >= db.partition_count:
            raise partition_unavailable()
        start = req.start_sequence_for(p)
        if _remote(conn, p):
            targets.append(await _remote_target(conn, p, start, req.window))
            continue
        if start is None:
            start = db.store.watermark(p)
        targets.append(PartitionTarget(p, start))
    return _start(conn, targets, req.window)


async def eack(conn: Client, req: g.EAck) -> bytes:
    sub = conn.subscriptions.get(req.subscription_id)
    if sub is None:
        raise NodeError("NOTFOUND", "subscription not found")
    sub.ack(req.cursor)
    return OK


async def eunsub(conn: Client, req: g.EUnsub) -> bytes:
    sub = conn.subscriptions.pop(req.subscription_id, None)
    if sub is None:
        raise NodeError("NOTFOUND", "subscription not found")
    sub.cancel_scope.cancel()
    return OK


# ------------------------------------------------------------------ forwarded reads
async def execute_forwarded_read(server: Any, args: tuple[bytes, ...], protocol: int) -> bytes:
    """Run a forwarded read here, as the origin's connection would have (its reply encoded)."""
    reader = RemoteReader(server, protocol)
    try:
        request = g.parse_command(list(args))
        if not isinstance(request, (g.EGet, g.EScan, g.ESVer, g.EPScan, g.EPSeq)):
            raise NodeError("ERR", "only reads are forwarded")
        return await HANDLERS[type(request)](reader, request)  # type: ignore[arg-type]
    except BaseException as exc:  # noqa: BLE001 - mapped to an error reply, or re-raised
        err = reply_for(exc)
        if err is None:
            raise
        return reader._encode(err)


HANDLERS: dict[type, Callable[[Client, Any], Awaitable[bytes]]] = {
    g.Ping: ping,
    g.Echo: echo,
    g.Quit: quit_,
    g.Select: select,
    g.Auth: auth,
    g.Hello: hello,
    g.Info: info,
    g.ClientSetInfo: client_setinfo,
    g.ClientSetName: client_setname,
    g.ClientGetName: client_getname,
    g.ClientId: client_id,
    g.ConfigGet: config_get,
    g.Command: command,
    g.ClusterAdmit: cluster_admit,
    g.EGet: eget,
    g.EScan: escan,
    g.ESVer: esver,
    g.EPScan: epscan,
    g.EPRead: blocking.epread,
    g.EPSeq: epseq,
    g.ESub: esub,
    g.EPSub: epsub,
    g.EAck: eack,
    g.EUnsub: eunsub,
}

# The reads a connection's poller callback may answer in place (connection.py), by command name
# (command_stats.command_label): each returns the reply, or None when only its handler above can
# serve the request (it waits, or needs a thread).
ReadNow = Callable[[Reader, Any], bytes | None]
READS_NOW: dict[str, ReadNow] = {
    "ESCAN": escan_now,
    "EPSCAN": epscan_now,
}
