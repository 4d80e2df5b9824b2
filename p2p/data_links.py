"""Data links: the transport of the replication and request channels. Plain TCP, each write
sealed with ChaCha20-Poly1305, keyed by the control link's handshake.

Theory of operation. py-libp2p costs ~0.8 ms of CPU per message on each side (Yamux, Noise and
msgio in Python; BENCHMARKS, ``bench/p2p_message_cost.py``), about five times a trio socket
that seals each write with one AEAD call. The control link (handshake, heartbeats, gossip) stays
on py-libp2p; the data channels, which carry every replicated event, ride here. Trust comes
from the control link: in its handshake each end sends, over Noise and to the peer id Noise
authenticated, a fresh random ``data_secret`` and the port of its data listener. Once the link
is accepted (cluster secret proved), both ends derive one link key from the two secrets and the
two peer ids (``link_key``) and ``admit`` the peer with it. When the link ends, ``forget`` drops
the key and closes the peer's data connections, so only a current member can use them.

Opening a connection (one per channel, written by the dialer only): the listener sends a fresh
random salt; the dialer answers with its peer id, the protocol, a salt of its own and
HMAC(link key, both salts, both peer ids, protocol). The listener checks the MAC against the key
of the peer the dialer names (unknown peer, unknown protocol or wrong MAC: closed at once) and
answers one byte. Each direction's key is derived from the link key and both salts, so a
recorded connection cannot be replayed. Every write is one sealed message, framed as every peer
frame is (``framing``: 4-byte length, then the ciphertext under a counting nonce): a dropped,
reordered or altered message fails authentication and closes the connection, which the
channels above treat as a lost stream.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import FrameError, P2PError
from .framing import FrameReader, frame
from .host import READ_BYTES, LinkClosed

log = logging.getLogger("sierradb.p2p")

LINK_KEY_CONTEXT = b"sierradb/data-link/1"
MAGIC = b"SDB\x01"
SALT_BYTES = 16
SECRET_BYTES = 32
ACCEPTED = b"\x01"
# One sealed message carries one channel write (at most a few MiB, or one frame of the largest
# request a client may send) plus the AEAD tag.
MAX_SEALED_BYTES = 80 * 1024 * 1024
# Connecting and the opening exchange together; past this, the next address (or the next send).
OPEN_TIMEOUT_S = 5.0

StreamHandler = Callable[["DataStream"], Awaitable[None]]


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def link_key(local_id: str, local_secret: bytes, remote_id: str, remote_secret: bytes) -> bytes:
    """The key both ends of an accepted control link derive from its handshake."""
    (a_id, a_secret), (b_id, b_secret) = sorted(
        [(local_id, local_secret), (remote_id, remote_secret)]
    )
    message = b"|".join((LINK_KEY_CONTEXT, a_id.encode(), b_id.encode()))
    return hmac.new(a_secret + b_secret, message, hashlib.sha256).digest()


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"|".join(parts), hashlib.sha256).digest()


def open_mac(key: bytes, salts: bytes, dialer: str, listener: str, protocol: str) -> bytes:
    return _mac(key, b"open", salts, dialer.encode(), listener.encode(), protocol.encode())


def direction_keys(key: bytes, salts: bytes, protocol: str) -> tuple[bytes, bytes]:
    """(dialer-to-listener key, listener-to-dialer key) of one connection."""
    return _mac(key, b"d2l", salts, protocol.encode()), _mac(key, b"l2d", salts, protocol.encode())


class _Reader:
    """Exact reads over a socket stream, keeping what arrived beyond them."""

    def __init__(self, sock: trio.SocketStream) -> None:
        self.sock = sock
        self.buffer = bytearray()

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = await self.sock.receive_some(READ_BYTES)
            if not data:
                raise LinkClosed("the data connection ended")
            self.buffer += data
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def short_field(self) -> str:
        """A one-byte length, then that many bytes of UTF-8."""
        return (await self.exactly((await self.exactly(1))[0])).decode()


class DataStream:
    """One authenticated data connection: send bytes, receive bytes (one sealed message per
    send); any ending raises LinkClosed, a message that fails authentication FrameError."""

    def __init__(
        self,
        reader: _Reader,
        peer_id: str,
        keys: tuple[bytes, bytes],
        registry: set[DataStream],
    ) -> None:
        """`keys` is (send key, receive key); the stream is in `registry` until it closes."""
        send_key, receive_key = keys
        self.peer_id = peer_id
        self._registry = registry
        registry.add(self)
        self._sock = reader.sock
        self._sealed = FrameReader(MAX_SEALED_BYTES)
        self._sealed.feed(bytes(reader.buffer))  # what arrived behind the opening exchange
        self._seal = ChaCha20Poly1305(send_key)
        self._open = ChaCha20Poly1305(receive_key)
        self._sent = 0
        self._received = 0

    async def send(self, data: bytes) -> None:
        sealed = self._seal.encrypt(self._sent.to_bytes(12, "little"), data, None)
        self._sent += 1
        try:
            await self._sock.send_all(frame(sealed))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise LinkClosed(f"send to {self.peer_id} failed: {e!r}") from e

    async def receive(self) -> bytes:
        while (sealed := self._sealed.next_body()) is None:
            try:
                data = await self._sock.receive_some(READ_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                raise LinkClosed(f"data stream from {self.peer_id} ended: {e!r}") from e
            if not data:
                raise LinkClosed(f"data stream from {self.peer_id} ended")
            self._sealed.feed(data)  # raises FrameError on a length over the limit
        nonce = self._received.to_bytes(12, "little")
        self._received += 1
        try:
            return self._open.decrypt(nonce, sealed, None)
        except InvalidTag:
            raise FrameError("a data message failed authentication") from None

    def abort(self) -> None:
        """Close at once, from synchronous code: a task blocked on this stream wakes with
        LinkClosed."""
        self._registry.discard(self)
        self._sock.socket.close()

    async def close(self) -> None:
        self._registry.discard(self)
        with trio.CancelScope(shield=True):
            await self._sock.aclose()


@dataclass
class _Peer:
    key: bytes
    hosts: tuple[str, ...]
    port: int
    streams: set[DataStream] = field(default_factory=set)


class DataLinks:
    """This node's data listener and the keys of the peers admitted to it."""

    def __init__(self, peer_id: str, listen_host: str, port: int = 0) -> None:
        self.peer_id = peer_id
        self.listen_host = listen_host
        self.port = port  # the bound port once running
        self._handlers: dict[str, StreamHandler] = {}
        self._peers: dict[str, _Peer] = {}
        self._listeners: list[trio.SocketListener] = []
        self.refused = 0  # connections closed in the opening exchange

    async def bind(self) -> None:
        """Open the listener (so the port is known before any handshake sends it)."""
        self._listeners = list(
            await trio.open_tcp_listeners(self.port, host=self.listen_host or None)
        )
        self.port = self._listeners[0].socket.getsockname()[1]

    async def run(self) -> None:
        """Serve the bound listener until cancelled."""
        async with trio.open_nursery() as nursery:
            await trio.serve_listeners(self._accept, self._listeners, handler_nursery=nursery)

    def set_handler(self, handler: StreamHandler, protocol: str) -> None:
        self._handlers[protocol] = handler

    def admit(self, peer_id: str, key: bytes, hosts: tuple[str, ...], port: int) -> None:
        """Let an accepted peer open data connections here, and open them to it. Connections
        already open stay: they were authenticated by the peer when they opened."""
        old = self._peers.get(peer_id)
        self._peers[peer_id] = _Peer(key, hosts, port, old.streams if old else set())

    def forget(self, peer_id: str) -> None:
        """The peer's control link ended: no new data connections, and close its open ones."""
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            for stream in list(peer.streams):
                stream.abort()

    async def open_stream(self, peer_id: str, protocol: str) -> DataStream:
        """A new connection to an admitted peer (its addresses in order). Raises P2PError."""
        peer = self._peers.get(peer_id)
        if peer is None:
            raise LinkClosed(f"no data link to {peer_id}")
        problems = []
        for host in peer.hosts:
            try:
                with trio.fail_after(OPEN_TIMEOUT_S):
                    sock = await trio.open_tcp_stream(host, peer.port)
                    try:
                        stream = await self._open(sock, peer_id, peer, protocol)
                    except BaseException:
                        await trio.aclose_forcefully(sock)
                        raise
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, LinkClosed) as e:
                problems.append(f"{host}:{peer.port}: {e!r}")
                continue
            if self._peers.get(peer_id) is not peer:  # forgotten or re-admitted meanwhile
                stream.abort()
                raise LinkClosed(f"the link to {peer_id} changed while opening")
            return stream
        raise LinkClosed(f"no data connection to {peer_id}: {'; '.join(problems) or 'no address'}")

    async def _open(
        self, sock: trio.SocketStream, peer_id: str, peer: _Peer, protocol: str
    ) -> DataStream:
        reader = _Reader(sock)
        listener_salt = await reader.exactly(SALT_BYTES)
        dialer_salt = secrets.token_bytes(SALT_BYTES)
        salts = listener_salt + dialer_salt
        ids = self.peer_id.encode(), protocol.encode()
        await sock.send_all(
            MAGIC + bytes([len(ids[0])]) + ids[0] + bytes([len(ids[1])]) + ids[1] + dialer_salt
            + open_mac(peer.key, salts, self.peer_id, peer_id, protocol)
        )  # fmt: skip
        if await reader.exactly(1) != ACCEPTED:
            raise LinkClosed(f"{peer_id} refused the data connection")
        return DataStream(reader, peer_id, direction_keys(peer.key, salts, protocol), peer.streams)

    async def _accept(self, sock: trio.SocketStream) -> None:
        stream: DataStream | None = None
        handler: StreamHandler | None = None
        try:
            reader = _Reader(sock)
            listener_salt = secrets.token_bytes(SALT_BYTES)
            with trio.move_on_after(OPEN_TIMEOUT_S):
                await sock.send_all(listener_salt)
                if await reader.exactly(len(MAGIC)) == MAGIC:
                    peer_id = await reader.short_field()
                    protocol = await reader.short_field()
                    salts = listener_salt + await reader.exactly(SALT_BYTES)
                    mac = await reader.exactly(32)
                    peer = self._peers.get(peer_id)
                    handler = self._handlers.get(protocol)
                    expected = (
                        open_mac(peer.key, salts, peer_id, self.peer_id, protocol) if peer else b""
                    )
                    if peer is not None and handler and hmac.compare_digest(mac, expected):
                        await sock.send_all(ACCEPTED)
                        from_peer, to_peer = direction_keys(peer.key, salts, protocol)
                        stream = DataStream(reader, peer_id, (to_peer, from_peer), peer.streams)
            if stream is None or handler is None:
                self.refused += 1
                return
            await handler(stream)
        except (P2PError, OSError, trio.BrokenResourceError, UnicodeDecodeError) as e:
            log.debug("data connection: %r", e)
        finally:
            if stream is not None:
                stream.abort()
            await trio.aclose_forcefully(sock)
