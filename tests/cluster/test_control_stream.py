"""A hostile or broken peer on a real node's control stream: authenticated by Noise, then silent,
speaking garbage, or saying the wrong things. The node closes the link, keeps serving, and
records why."""

from __future__ import annotations

import os
import struct

import pytest
import trio
from clusterproc import cluster_args, info_cluster, peers, wait_for

from sierradb.p2p.addresses import parse_listen_address, parse_peer_address
from sierradb.p2p.framing import FrameReader, encode_frame
from sierradb.p2p.host import Host, LinkClosed, Stream
from sierradb.p2p.messages import PROTOCOL_VERSION, Hello, Refuse, decode_message, encode_message
from sierradb.p2p.runtime import HANDSHAKE_TIMEOUT_S

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def node(node_factory):  # type: ignore[no-untyped-def]
    return node_factory(*cluster_args(3, 0))


async def read_until_closed(stream: Stream, limit_s: float) -> list:
    """Every message the node sends until it closes the stream (or the time limit)."""
    reader, messages = FrameReader(), []
    with trio.move_on_after(limit_s):
        try:
            while True:
                reader.feed(await stream.receive())
                while (wire := reader.next()) is not None:
                    messages.append(decode_message(wire))
        except LinkClosed:
            return messages
    raise AssertionError(f"the node kept the stream open for {limit_s} s: {messages}")


def refusal_of(node, peer_id: str) -> str | None:  # type: ignore[no-untyped-def]
    for row in peers(info_cluster(node.port)):
        if row["peer_id"] == peer_id:
            return row["reason"]
    return None


async def with_stream(node, body) -> None:  # type: ignore[no-untyped-def]
    host = Host(os.urandom(32), parse_listen_address("127.0.0.1:0"))
    async with host.run():
        address = parse_peer_address(f"/ip4/127.0.0.1/tcp/{node.cluster_port}")
        peer = await host.dial(address, None)
        assert peer == node.peer_id
        stream = await host.open_stream(peer)
        await body(host, stream)


async def test_a_silent_peer_is_dropped_after_the_handshake_timeout(node):
    async def body(host: Host, stream: Stream) -> None:
        started = trio.current_time()
        messages = await read_until_closed(stream, HANDSHAKE_TIMEOUT_S + 15)
        assert trio.current_time() - started >= HANDSHAKE_TIMEOUT_S - 0.5
        assert [type(m) for m in messages] == [Hello]  # the node spoke first, then gave up
        reason = wait_for(lambda: refusal_of(node, host.peer_id), 10, "the refusal in INFO")
        assert reason == "the handshake did not finish in time"

    await with_stream(node, body)


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", 0xFFFFFFFF),  # a length far over the limit
        struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff",  # not cbor
        encode_frame({"t": "hello", "cluster_name": 5}),  # fails the schema
        encode_frame({"t": "gossip", "cluster_id": None, "members": [], "registry": []}),
    ],
)
async def test_garbage_on_the_control_stream_closes_only_that_link(node, garbage):
    async def body(host: Host, stream: Stream) -> None:
        await stream.send(garbage)
        await read_until_closed(stream, 10)

    await with_stream(node, body)
    output = node.output()
    assert "Traceback" not in output, output
    assert info_cluster(node.port)["cluster_enabled"] == "1"


async def test_a_wrong_hello_gets_a_refusal_naming_the_field(node):
    async def body(host: Host, stream: Stream) -> None:
        hello = Hello(
            PROTOCOL_VERSION, "sierradb", None, "f" * 32, 1, 5, 3, 32, 4, 1, 1, "h:1", "x",
            [], os.urandom(16), False, 7001, os.urandom(32),
        )  # fmt: skip
        await stream.send(encode_frame(encode_message(hello)))
        messages = await read_until_closed(stream, 10)
        refusals = [m for m in messages if isinstance(m, Refuse)]
        assert refusals and refusals[0].field_name == "node_count"
        assert refusals[0].reason == "node_count: the peer has 3, this node 5"  # our view

    await with_stream(node, body)


async def test_a_dialer_offering_only_plaintext_is_refused(node):
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

    key_pair = create_new_key_pair()
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(
        key_pair=key_pair,
        sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)},
        listen_addrs=listen,
    )
    target = PeerInfo(
        ID.from_base58(node.peer_id),
        [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{node.cluster_port}")],
    )
    async with host.run(listen_addrs=listen):
        with pytest.raises(Exception) as caught:
            with trio.fail_after(20):
                await host.connect(target)
        assert not isinstance(caught.value, trio.TooSlowError)
        assert "failed to negotiate the secure protocol" in repr(caught.value.__cause__)
        assert not host.get_network().get_connections(target.peer_id)
        for conn in list(host.get_network().connections):
            await host.disconnect(conn)
    assert info_cluster(node.port)["cluster_enabled"] == "1"


async def test_an_unknown_protocol_is_refused_and_changes_nothing(node):
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID

    host = Host(os.urandom(32), parse_listen_address("127.0.0.1:0"))
    async with host.run():
        peer = await host.dial(
            parse_peer_address(f"/ip4/127.0.0.1/tcp/{node.cluster_port}"), node.peer_id
        )
        with pytest.raises(Exception) as caught:
            with trio.fail_after(20):
                await host._host.new_stream(ID.from_base58(peer), [TProtocol("/nope/1.0.0")])
        assert not isinstance(caught.value, trio.TooSlowError)
        assert "protocol not supported" in repr(caught.value.__cause__)
    assert info_cluster(node.port)["cluster_enabled"] == "1"
    output = node.output()
    assert "Traceback" not in output, output
