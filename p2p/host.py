"""The node's py-libp2p host: TCP, Noise only, Yamux, one connection per peer.

This is the only module that touches libp2p's API (imported lazily: a single node never loads
it). It hides the library's rough edges found in ``../shared/reference/py-libp2p-notes.md``:

- Security is Noise only, passed explicitly: the default list also offers plaintext, which lets
  a dialer claim any peer id. A dialer proposing anything else is refused.
- Dials do not go through the swarm's ``dial_peer`` (three internal retries, then a 60 s negative
  cache that blocks reconnects, and it needs the peer id in advance). ``dial`` opens the TCP
  connection itself, runs Noise with the expected peer id or none (bootstrap addresses and DNS
  names don't know it; Noise authenticates whatever key the peer proves), then Yamux, and hands
  the connection to the swarm. Callers own retries and backoff.
- ``max_connections_per_peer=1`` (the default of 3 stalls every connect by 250 ms), no
  auto-connect, upgrade and negotiation timeouts short enough that a stalled handshake is dropped
  quickly, and a cap on connections so a flood cannot exhaust the process.
- Streams are wrapped so every way a stream can end (EOF, reset, a broken connection) is one
  exception, ``LinkClosed``.
- Yamux's window updates are batched (``PY_YAMUX_RELEASE_ON_READ=0``: one update per half
  window, as go-yamux does) instead of one per read, which doubled the frames, and the CPU, of
  every small message (an idle cluster node: 1.95% of a core down to 1.4%).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .addresses import PeerAddress
from .errors import P2PError

log = logging.getLogger("sierradb.p2p")

CONTROL_PROTOCOL = "/sierradb/control/1.0.0"
# A TCP connect plus Noise and Yamux takes ~20 ms on a LAN; past this the dial has failed.
DIAL_TIMEOUT_S = 5.0
# Connections a node accepts at once: a full mesh needs node_count - 1; the rest is headroom for
# restarts overlapping old connections, and a bound for floods.
MAX_CONNECTIONS = 256
# A connection that has not finished Noise + Yamux, or a stream that has not agreed on a
# protocol, within this long is dropped (stalled handshakes, garbage on the port).
UPGRADE_TIMEOUT_S = 5
READ_BYTES = 64 * 1024


class LinkClosed(P2PError):
    """The stream or its connection ended (EOF, reset, or the peer vanished)."""


class Stream:
    """One libp2p stream: send bytes, receive bytes; any ending raises LinkClosed."""

    def __init__(self, raw: Any, peer_id: str) -> None:
        self._raw = raw
        self.peer_id = peer_id
        self.muxed_conn = raw.muxed_conn  # the connection carrying it

    def remote_host(self) -> str | None:
        """The IP this stream's connection reaches the peer at, if the transport knows it."""
        address = self._raw.get_remote_address()
        return str(address[0]) if address else None

    async def send(self, data: bytes) -> None:
        try:
            await self._raw.write(data)
        except _closed_errors() as e:
            raise LinkClosed(f"send to {self.peer_id} failed: {e!r}") from e

    async def receive(self) -> bytes:
        try:
            data = await self._raw.read(READ_BYTES)
        except _closed_errors() as e:
            raise LinkClosed(f"stream from {self.peer_id} ended: {e!r}") from e
        if not data:
            raise LinkClosed(f"stream from {self.peer_id} ended")
        return bytes(data)

    async def close(self) -> None:
        """Reset the stream (both halves at once, so neither end keeps it in Yamux's books)."""
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await self._raw.reset()
            except _closed_errors():
                pass


def _closed_errors() -> tuple[type[BaseException], ...]:
    from libp2p.exceptions import BaseLibp2pError

    return (BaseLibp2pError, trio.BrokenResourceError, trio.ClosedResourceError, OSError, EOFError)


StreamHandler = Callable[[Stream], Awaitable[None]]


class Host:
    def __init__(self, seed: bytes, listen: PeerAddress) -> None:
        os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")  # read by yamux at every read
        import multiaddr
        from libp2p import new_host
        from libp2p.crypto.ed25519 import Ed25519PrivateKey
        from libp2p.crypto.keys import KeyPair
        from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
        from libp2p.network.config import ConnectionConfig
        from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
        from libp2p.security.noise.transport import Transport as NoiseTransport

        private = Ed25519PrivateKey.from_bytes(seed)
        key_pair = KeyPair(private, private.get_public_key())
        self._listen = [multiaddr.Multiaddr(listen.multiaddr())]
        self._host = new_host(
            key_pair=key_pair,
            sec_opt={NOISE: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)},
            muxer_preference="YAMUX",
            listen_addrs=self._listen,
            connection_config=ConnectionConfig(
                max_connections=MAX_CONNECTIONS,
                max_connections_per_peer=1,
                min_connections=0,
                low_watermark=0,
                high_watermark=MAX_CONNECTIONS,
                dial_timeout=DIAL_TIMEOUT_S,
                inbound_upgrade_timeout=UPGRADE_TIMEOUT_S,
                outbound_upgrade_timeout=UPGRADE_TIMEOUT_S,
                inbound_stream_protocol_negotiation_timeout=UPGRADE_TIMEOUT_S,
                outbound_stream_protocol_negotiation_timeout=UPGRADE_TIMEOUT_S,
            ),
        )
        self.peer_id = self._host.get_id().to_base58()

        async def never() -> None:
            return None

        # The swarm's auto-connector dials peers from the peerstore on its own whenever the
        # connection count is below its target (128 here): links are ours to manage.
        self._swarm().auto_connector.maybe_connect = never

    def _swarm(self) -> Any:
        """The host's network, a Swarm: the dial, upgrade and peer-blocking internals used
        here are not part of libp2p's declared INetworkService."""
        return self._host.get_network()

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Host]:
        async with self._host.run(listen_addrs=self._listen):
            if not self._host.get_addrs():
                raise P2PError(f"could not listen on {self._listen[0]}")
            try:
                yield self
            finally:
                # libp2p's own shutdown leaves connections' sockets unclosed.
                for peer in list(self._swarm().connections):
                    await self.disconnect(peer.to_base58())

    def listen_port(self) -> int:
        for addr in self._host.get_addrs():
            port = addr.value_for_protocol("tcp")
            if port:
                return int(port)
        raise P2PError("the host listens on no TCP port")

    def set_handler(self, handler: StreamHandler, protocol: str = CONTROL_PROTOCOL) -> None:
        from libp2p.custom_types import TProtocol

        async def on_stream(raw: Any) -> None:
            await handler(Stream(raw, raw.muxed_conn.peer_id.to_base58()))

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    async def dial(self, address: PeerAddress, expected_peer_id: str | None) -> str:
        """Connect to an ip4/ip6 address; the peer id it proved. Raises P2PError on failure."""
        import multiaddr
        from libp2p.exceptions import BaseLibp2pError
        from libp2p.peer.id import ID

        if address.is_dns:
            raise P2PError(f"{address}: resolve DNS names before dialling")
        network = self._swarm()
        target = multiaddr.Multiaddr(address.multiaddr(with_peer_id=False))
        expected = ID.from_base58(expected_peer_id) if expected_peer_id else None
        raw = None
        try:
            with trio.fail_after(DIAL_TIMEOUT_S):
                transport = network.transport_manager.transport_for_dialing(target)
                if transport is None:
                    raise P2PError(f"no transport can dial {target}")
                raw = await transport.dial(target)
                upgrader = network.upgrader
                secured = await upgrader.security_multistream.secure_outbound(raw, expected)
                peer = secured.get_remote_peer()
                if expected is not None and peer != expected:
                    await secured.close()
                    raise P2PError(f"{address} is {peer}, not {expected}")
                muxed = await upgrader.upgrade_connection(secured, peer)
                await network.add_conn(muxed, direction="outbound")
                return str(peer.to_base58())
        except trio.TooSlowError as e:
            await _close_quietly(raw)
            raise P2PError(f"dialling {address} timed out") from e
        except (BaseLibp2pError, OSError, trio.BrokenResourceError) as e:
            await _close_quietly(raw)
            raise P2PError(f"dialling {address} failed: {e}") from e

    async def open_stream(self, peer_id: str, protocol: str = CONTROL_PROTOCOL) -> Stream:
        from libp2p.custom_types import TProtocol
        from libp2p.exceptions import BaseLibp2pError
        from libp2p.peer.id import ID

        try:
            with trio.fail_after(UPGRADE_TIMEOUT_S):
                raw = await self._host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol)])
        except (BaseLibp2pError, OSError, trio.TooSlowError) as e:
            raise P2PError(f"opening a stream to {peer_id} failed: {e!r}") from e
        return Stream(raw, peer_id)

    def connection_count(self) -> int:
        return sum(len(conns) for conns in self._swarm().connections.values())

    async def keep_one_connection(self, stream: Stream) -> None:
        """Close every other connection to the stream's peer (both ends dialled at once, or an
        old connection outlived a restart): one connection per peer."""
        from libp2p.peer.id import ID

        network = self._swarm()
        keep = stream.muxed_conn
        for conn in list(network.connections.get(ID.from_base58(stream.peer_id), [])):
            if conn.muxed_conn is not keep:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    try:
                        await conn.close()
                    except _closed_errors() as e:
                        log.debug("closing a second connection to %s: %r", stream.peer_id, e)

    async def disconnect(self, peer_id: str) -> None:
        """Drop every connection to a peer (also a closed one the swarm still keeps)."""
        from libp2p.peer.id import ID

        peer = ID.from_base58(peer_id)
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await self._host.disconnect(peer)
            except _closed_errors() as e:
                log.debug("disconnecting %s: %r", peer_id, e)
        self._swarm().unblock_peer(peer)


async def _close_quietly(conn: Any) -> None:
    if conn is None:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            await conn.close()
        except Exception as e:  # noqa: BLE001 - the dial already failed; this is cleanup
            log.debug("closing a failed dial: %r", e)
