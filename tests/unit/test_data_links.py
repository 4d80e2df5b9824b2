"""The data links (p2p/data_links.py) over real loopback sockets: who may open a connection,
what it carries, and how it ends."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from sierradb.p2p import data_links
from sierradb.p2p.data_links import (
    MAGIC,
    MAX_SEALED_BYTES,
    SALT_BYTES,
    DataLinks,
    DataStream,
    link_key,
    new_secret,
    open_mac,
)
from sierradb.p2p.errors import FrameError
from sierradb.p2p.framing import HEADER
from sierradb.p2p.host import LinkClosed

A, B = "12D3KooWAAAA", "12D3KooWBBBB"
PROTOCOL = "/sierradb/test/1"


class Received:
    """What B's handler saw on its streams: messages, and how each stream ended."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.endings: list[BaseException] = []
        self.changed = trio.Event()

    async def handler(self, stream: DataStream) -> None:
        try:
            while True:
                self.messages.append(await stream.receive())
                self._changed()
        except (LinkClosed, FrameError) as e:
            self.endings.append(e)
            self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def until(self, predicate: object) -> None:
        with trio.fail_after(10):
            while not predicate():  # type: ignore[operator]
                await self.changed.wait()


@asynccontextmanager
async def two_nodes(admit: bool = True) -> AsyncIterator[tuple[DataLinks, DataLinks, Received]]:
    """A and B listening on loopback; B serves PROTOCOL; both admitted with one key."""
    a, b = DataLinks(A, "127.0.0.1"), DataLinks(B, "127.0.0.1")
    received = Received()
    b.set_handler(received.handler, PROTOCOL)
    async with trio.open_nursery() as nursery:
        for links in (a, b):
            await links.bind()
            nursery.start_soon(links.run)
        if admit:
            key = link_key(A, new_secret(), B, new_secret())
            a.admit(B, key, ("127.0.0.1",), b.port)
            b.admit(A, key, ("127.0.0.1",), a.port)
        yield a, b, received
        a.forget(B)  # closes the streams still open
        b.forget(A)
        nursery.cancel_scope.cancel()


def test_both_ends_derive_one_key_and_each_handshake_a_new_one() -> None:
    sa, sb = new_secret(), new_secret()
    assert link_key(A, sa, B, sb) == link_key(B, sb, A, sa)
    assert link_key(A, sa, B, sb) != link_key(A, new_secret(), B, sb)
    assert link_key(A, sa, B, sb) != link_key(A, sa, "12D3KooWCCCC", sb)


async def test_an_admitted_peer_sends_messages_in_order_small_and_large() -> None:
    async with two_nodes() as (a, b, received):
        stream = await a.open_stream(B, PROTOCOL)
        sent = [b"one", b"", b"x" * (5 * 1024 * 1024), b"last"]
        for message in sent:
            await stream.send(message)
        await received.until(lambda: len(received.messages) == len(sent))
        assert received.messages == sent
        await stream.close()
        await received.until(lambda: received.endings)
        assert isinstance(received.endings[0], LinkClosed)


@pytest.mark.parametrize("case", ["not admitted", "other key", "unknown protocol"])
async def test_a_connection_without_the_links_key_or_protocol_is_refused(case: str) -> None:
    async with two_nodes() as (a, b, received):
        if case == "not admitted":
            b.forget(A)
        elif case == "other key":
            b.admit(A, link_key(A, new_secret(), B, new_secret()), ("127.0.0.1",), a.port)
        protocol = "/sierradb/other/1" if case == "unknown protocol" else PROTOCOL
        with pytest.raises(LinkClosed, match="refused the data connection|ended"):
            await a.open_stream(B, protocol)
        assert b.refused == 1 and received.messages == []


async def test_open_stream_to_a_peer_that_is_not_admitted_fails_at_once() -> None:
    async with two_nodes(admit=False) as (a, _b, _received):
        with pytest.raises(LinkClosed, match="no data link"):
            await a.open_stream(B, PROTOCOL)


async def opening(
    port: int, key: bytes, salt_then: bytes | None = None
) -> tuple[trio.SocketStream, bytes]:
    """Open a raw connection to B as A would; `salt_then` answers with a MAC made for that
    listener salt instead of the one B sent. Returns the stream and B's one-byte answer."""
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    listener_salt = await receive_exactly(sock, SALT_BYTES)
    dialer_salt = secrets.token_bytes(SALT_BYTES)
    salts = (salt_then or listener_salt) + dialer_salt
    await sock.send_all(
        MAGIC + bytes([len(A)]) + A.encode() + bytes([len(PROTOCOL)]) + PROTOCOL.encode()
        + dialer_salt + open_mac(key, salts, A, B, PROTOCOL)
    )  # fmt: skip
    answer = await sock.receive_some(1)
    return sock, bytes(answer)


async def receive_exactly(sock: trio.SocketStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await sock.receive_some(n - len(data))
        assert chunk, "closed early"
        data += chunk
    return data


async def test_an_opening_recorded_for_one_connection_is_refused_on_another() -> None:
    key = link_key(A, new_secret(), B, new_secret())
    async with two_nodes(admit=False) as (_a, b, _received):
        b.admit(A, key, ("127.0.0.1",), 1)
        first, answer = await opening(b.port, key)
        assert answer == b"\x01"
        await first.aclose()
        other_salt = secrets.token_bytes(SALT_BYTES)
        replayed, answer = await opening(b.port, key, salt_then=other_salt)
        assert answer == b""  # closed without accepting
        assert b.refused == 1
        await replayed.aclose()


@pytest.mark.parametrize("damage", ["flipped byte", "oversized length"])
async def test_a_damaged_message_ends_the_stream(damage: str) -> None:
    async with two_nodes() as (a, _b, received):
        stream = await a.open_stream(B, PROTOCOL)
        await stream.send(b"fine")
        await received.until(lambda: received.messages == [b"fine"])
        sock = stream._sock  # write beneath the sealing, as a man in the middle would
        if damage == "flipped byte":
            sealed = stream._seal.encrypt((1).to_bytes(12, "little"), b"evil", None)
            wire = HEADER.pack(len(sealed)) + bytes([sealed[0] ^ 1]) + sealed[1:]
        else:
            wire = HEADER.pack(MAX_SEALED_BYTES + 1)
        await sock.send_all(wire)
        await received.until(lambda: received.endings)
        assert isinstance(received.endings[0], FrameError)
        assert received.messages == [b"fine"]


async def test_a_replayed_message_fails_authentication() -> None:
    async with two_nodes() as (a, _b, received):
        stream = await a.open_stream(B, PROTOCOL)
        sealed = stream._seal.encrypt((0).to_bytes(12, "little"), b"pay once", None)
        await stream._sock.send_all((HEADER.pack(len(sealed)) + sealed) * 2)
        await received.until(lambda: received.endings)
        assert received.messages == [b"pay once"]
        assert isinstance(received.endings[0], FrameError)


async def test_forgetting_a_peer_closes_its_open_connections_on_both_sides() -> None:
    async with two_nodes() as (a, b, received):
        stream = await a.open_stream(B, PROTOCOL)
        await stream.send(b"before")
        await received.until(lambda: received.messages == [b"before"])
        b.forget(A)
        await received.until(lambda: received.endings)
        assert isinstance(received.endings[0], LinkClosed)
        a.forget(B)
        with pytest.raises(LinkClosed):
            await stream.send(b"after")
        with pytest.raises(LinkClosed, match="no data link"):
            await a.open_stream(B, PROTOCOL)


async def test_a_silent_dialer_is_dropped_after_the_open_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(data_links, "OPEN_TIMEOUT_S", 0.2)
    async with two_nodes() as (_a, b, _received):
        sock = await trio.open_tcp_stream("127.0.0.1", b.port)
        await receive_exactly(sock, SALT_BYTES)
        with trio.fail_after(60):
            assert await sock.receive_some(1) == b""  # closed once OPEN_TIMEOUT_S passed
        assert b.refused == 1
        await sock.aclose()
