"""The replication wire codec: every message round-trips; entries carry the engine's CRCs."""

from __future__ import annotations

import os

import cbor2
import pytest

from sierradb.node.append import AppendOutcome, AppendRequest
from sierradb.node.replication.codec import (
    EventsReply,
    FetchEvents,
    ForwardAppend,
    ForwardRead,
    ForwardReply,
    LookupEvent,
    ReadReply,
    Watermarks,
    WatermarksReply,
    decode,
    encode,
)
from sierradb.node.replication.messages import (
    Append,
    AppendReply,
    FetchReply,
    FetchRequest,
    Handover,
    PromiseReply,
    PromiseRequest,
)
from sierradb.p2p import FrameError
from sierradb.storage import Event, NewEvent


def event(seq: int, term: int = 3, last: bool = True) -> Event:
    return Event(os.urandom(16), b"K" * 16, 5, b"T" * 16, seq, seq, 1700, b"stream", b"Name",
                 b"meta", b"payload" * 10, term, last)  # fmt: skip


MESSAGES = [
    PromiseRequest(5, 7, 1, 3, (6, 20), True),
    PromiseReply(5, 7, 2, True, 7, (6, 20), 18),
    Append(5, 7, 1, 3, (6, 20), (event(21, 7, False), event(22, 7)), 19),
    Append(5, 7, 1, 3, (0, -1), (), 0),
    AppendReply(5, 7, 2, False, -1, (6, 25), ((5, 18), (6, 21))),
    FetchRequest(5, 7, 1, 18, 25),
    FetchReply(5, 7, 2, True, (event(18),)),
    Handover(5, 7, 1),
    ForwardAppend(
        9,
        AppendRequest(
            5,
            b"K" * 16,
            b"T" * 16,
            [NewEvent(os.urandom(16), b"s", b"E", 1, b"m", b"p", -3)],
            (True,),
            True,
        ),
    ),  # fmt: skip
    ForwardReply(9, AppendOutcome(21, (4,), (1700,))),
    ForwardReply(9, None, "WRONGVER", "current stream version is 3", 2),
    ForwardRead(10, 5, (b"EGET", b"x"), 3),
    ReadReply(10, b"$-1\r\n"),
    FetchEvents(11, 5, 18, 100, 1000, b"stream", b"K" * 16),
    EventsReply(11, True, (event(18), event(19)), 20),
    LookupEvent(12, 5, b"E" * 16),
    EventsReply(12, True, (), 0),
    Watermarks(13, (0, 3, 7)),
    WatermarksReply(13, ((0, 12, 1), (3, 0, -1))),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]


def test_a_damaged_entry_is_refused() -> None:
    raw = bytearray(encode(MESSAGES[2]))
    payload_at = raw.find(b"payloadpayload")
    raw[payload_at] ^= 0xFF
    with pytest.raises(FrameError, match="CRC32C"):
        decode(bytes(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",
        cbor2.dumps({"not": "a list"}),
        cbor2.dumps([]),
        cbor2.dumps([99, 1, 2]),
        cbor2.dumps([0, 5, -7, 1, 3, [6, 20], True]),
        cbor2.dumps([0, 5, 7, 1, 3, [6, 20]]),
        cbor2.dumps([2, 5, 7, 1, 3, [6, 20], b"\x00\x01garbage", 19]),
        cbor2.dumps([10, 1, 5, b"K" * 16, b"T" * 16, [], [], True]),
        cbor2.dumps([16, 12, 5]),
        cbor2.dumps([17, 13, [0, -1]]),
        cbor2.dumps([18, 13, [[0, 12]]]),
        cbor2.dumps([18, 13, [[0, 12, -2]]]),
    ],
)
def test_malformed_messages_are_frame_errors(raw: bytes) -> None:
    with pytest.raises(FrameError):
        decode(raw)
