"""Reads of partitions this cluster node holds no replica of, forwarded to one that does; and the
stand-in connection a forwarded read runs on at the node that serves it."""

from __future__ import annotations

from .context import Reader, ServerView
from .errors import NodeError
from .resp import encode_into


async def forward_read(conn: Reader, partition: int, args: list[bytes]) -> bytes:
    """A read of a partition this cluster node holds no replica of: ask one that does (its
    leader, or the first live replica) and relay its reply, encoded for this connection."""
    from .replication.codec import ForwardRead, ReadReply

    service = conn.server.replication
    assert service is not None
    target = service.leader_of(partition)
    if target is None:
        raise NodeError("TRYAGAIN", f"partition {partition} has no reachable replica; retry")
    message = ForwardRead(service.next_request_id(), partition, tuple(args), conn.protocol)
    reply = await service.forward(target, message)
    assert isinstance(reply, ReadReply)
    return reply.reply


class RemoteReader:
    """What a read handler needs of a connection, for a read another node forwarded."""

    def __init__(self, server: ServerView, protocol: int) -> None:
        self.server = server
        self.db = server.db
        self.config = server.config
        self.protocol = protocol

    def _encode(self, value: object) -> bytes:
        out = bytearray()
        encode_into(out, value, self.protocol)
        return bytes(out)
