"""Peer frames and message schemas: fed whole, byte by byte, truncated, oversized, malformed."""

from __future__ import annotations

import struct

import cbor2
import pytest

from sierradb.p2p.errors import FrameError
from sierradb.p2p.framing import FrameReader, encode_frame
from sierradb.p2p.messages import (
    PROTOCOL_VERSION,
    Claim,
    Gossip,
    Heartbeat,
    Hello,
    Leave,
    MemberInfo,
    Proof,
    Ready,
    Refuse,
    RegistryEntry,
    decode_message,
    encode_message,
)

HELLO = Hello(
    PROTOCOL_VERSION, "sierradb", None, "a" * 32, 1, 3, 3, 32, 4, 1, 7, "127.0.0.1:9090", "0.1.0",
    ["/ip4/10.0.0.2/tcp/7000"], b"n" * 16, False, 7001, b"s" * 32,
)  # fmt: skip
HB = {"t": "hb", "incarnation": 1, "ping": 1, "echo": 0, "held_ms": 0}
MESSAGES = [
    HELLO,
    Proof(b"m" * 32),
    Ready(),
    Refuse("node_count", "node_count: this node has 3, the peer 4"),
    Heartbeat(7, 3, 2, 40, [Claim(2, "12D3KooWpeer")]),
    Gossip(
        "c" * 32,
        [MemberInfo("12D3KooWpeer", 2, "b" * 32, 4, ["/ip4/10.0.0.3/tcp/7000"], "h:1")],
        [RegistryEntry(2, 0, ["b" * 32])],
    ),
    Leave(7),
]


def frames_of(messages: list) -> bytes:
    return b"".join(encode_frame(encode_message(m)) for m in messages)


def drain(reader: FrameReader) -> list:
    out = []
    while (wire := reader.next()) is not None:
        out.append(decode_message(wire))
    return out


def test_every_message_round_trips() -> None:
    reader = FrameReader()
    reader.feed(frames_of(MESSAGES))
    assert drain(reader) == MESSAGES
    assert reader.buffered_bytes == 0


def test_frames_fed_byte_by_byte() -> None:
    reader = FrameReader()
    got = []
    for byte in frames_of(MESSAGES):
        reader.feed(bytes([byte]))
        got.extend(drain(reader))
    assert got == MESSAGES


def test_a_partial_frame_waits_for_the_rest() -> None:
    data = frames_of([HELLO])
    reader = FrameReader()
    reader.feed(data[:-1])
    assert reader.next() is None
    reader.feed(data[-1:])
    assert decode_message(reader.next()) == HELLO


def test_an_oversized_length_is_refused_before_the_body_arrives() -> None:
    reader = FrameReader(max_frame_bytes=1024)
    with pytest.raises(FrameError, match="exceeds the limit"):
        reader.feed(struct.pack(">I", 1025))


def test_an_oversized_second_frame_is_refused_as_soon_as_its_header_is_in() -> None:
    reader = FrameReader(max_frame_bytes=1024)
    reader.feed(frames_of([Ready()]) + struct.pack(">I", 1 << 30))
    with pytest.raises(FrameError):
        reader.next()


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xff\xff",  # not cbor
        cbor2.dumps([1, 2, 3]),  # not a map
        cbor2.dumps("hello"),
        b"\x9f" * 5000,  # deep indefinite nesting, never closed
        b"\x81" * 200_000 + b"\x00",  # 200k nested arrays, complete
    ],
)
def test_undecodable_frames_are_frame_errors(body: bytes) -> None:
    reader = FrameReader()
    reader.feed(struct.pack(">I", len(body)) + body)
    with pytest.raises(FrameError):
        reader.next()


@pytest.mark.parametrize(
    "wire, needle",
    [
        ({"t": "nope"}, "unknown message type"),
        ({"x": 1}, "unknown message type"),
        ({"t": 5}, "unknown message type"),
        ({"t": "leave"}, "leave.incarnation: missing"),
        ({"t": "leave", "incarnation": -1}, "expected an integer"),
        ({"t": "leave", "incarnation": True}, "expected an integer"),
        ({"t": "leave", "incarnation": "1"}, "expected an integer"),
        ({"t": "proof", "mac": b"short"}, "expected bytes of length 32..32"),
        ({"t": "refuse", "field_name": "x", "reason": "r" * 600}, "length 0..512"),
        ({**HB, "linked": "x"}, "expected a list"),
        ({**HB, "linked": [{}] * 300}, "more than 256"),
        ({**HB, "linked": [{"node_index": 1}]}, "missing"),
        ({**HB, "linked": [5]}, "expected a map"),
        ({"t": "leave", "incarnation": 1 << 64}, "expected an integer"),
    ],
)
def test_messages_are_schema_checked(wire: dict, needle: str) -> None:
    with pytest.raises(FrameError, match=needle):
        decode_message(wire)


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    assert decode_message({"t": "leave", "incarnation": 4, "new_field": [1]}) == Leave(4)


def test_hello_allows_a_missing_cluster_id_but_checks_a_present_one() -> None:
    wire = encode_message(HELLO)
    assert decode_message(wire).cluster_id is None
    wire["cluster_id"] = 17
    with pytest.raises(FrameError, match="hello.cluster_id"):
        decode_message(wire)
