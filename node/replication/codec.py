"""Wire encoding of replication and forwarding messages (one cbor2 array per frame).

Entries travel as the storage engine's own record bytes, concatenated: the receiver decodes
them with the engine's decoder, which checks every record's CRC32C, so a follower stores exactly
what the leader wrote or refuses the frame. Anything that does not decode to a well-formed
message raises ``FrameError`` and closes the channel that carried it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from sierradb.p2p import FrameError
from sierradb.storage import Event, NewEvent
from sierradb.storage.record import BadRecord, peek_length
from sierradb.storage.record_check import decode_event, reencode_event

from ..append import AppendOutcome, AppendRequest
from .messages import (
    Append,
    AppendReply,
    FetchReply,
    FetchRequest,
    Handover,
    PromiseReply,
    PromiseRequest,
    ReplicationMessage,
)

# Message kinds on the wire.
_PROMISE, _PROMISE_REPLY, _APPEND, _APPEND_REPLY, _FETCH, _FETCH_REPLY, _HANDOVER = range(7)
_FORWARD, _FORWARD_REPLY, _READ, _READ_REPLY, _EVENTS, _EVENTS_REPLY = range(10, 16)
_LOOKUP, _WATERMARKS, _WATERMARKS_REPLY = range(16, 19)


@dataclass(slots=True)  # not frozen: one per append (see grammar.py)
class ForwardAppend:
    """An append the origin node sends to the partition's leader, ids already filled in."""

    request_id: int
    request: AppendRequest


@dataclass(slots=True)  # not frozen: one per append (see grammar.py)
class ForwardReply:
    request_id: int
    outcome: AppendOutcome | None
    code: str = ""  # an error reply's code when outcome is None
    message: str = ""
    leader: int = -1  # a hint: the leader this node knows, or -1


@dataclass(frozen=True, slots=True)
class ForwardRead:
    """A read command a node without a replica of the partition sends to one that has it."""

    request_id: int
    partition: int
    args: tuple[bytes, ...]
    protocol: int


@dataclass(frozen=True, slots=True)
class ReadReply:
    request_id: int
    reply: bytes  # the encoded RESP reply, for the origin's connection as it is


@dataclass(frozen=True, slots=True)
class FetchEvents:
    """A relay asks a replica for visible events from a position (a partition's sequence, or
    with a stream id a stream's version), waiting up to `wait_ms` for some to appear; with
    `count` 0 it only asks for the position now (the watermark, or the stream's next version)."""

    request_id: int
    partition: int
    start: int
    count: int
    wait_ms: int
    stream_id: bytes = b""
    partition_key: bytes = b""


@dataclass(frozen=True, slots=True)
class EventsReply:
    request_id: int
    ok: bool
    events: tuple[Event, ...]
    position: int  # the watermark, or the stream's next visible version


@dataclass(frozen=True, slots=True)
class LookupEvent:
    """The inspector of a node without a replica asks one that has it for an event by id; the
    answer is an ``EventsReply`` with the event if it is visible there (below that replica's
    watermark), else none, and that watermark as the position."""

    request_id: int
    partition: int
    event_id: bytes


@dataclass(frozen=True, slots=True)
class Watermarks:
    """The inspector asks a node for the watermark and known leader of some partitions."""

    request_id: int
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WatermarksReply:
    request_id: int
    # (partition, watermark, leader or -1) of each asked partition the node holds a replica of
    partitions: tuple[tuple[int, int, int], ...]


RequestMessage = (
    ForwardAppend
    | ForwardReply
    | ForwardRead
    | ReadReply
    | FetchEvents
    | EventsReply
    | LookupEvent
    | Watermarks
    | WatermarksReply
)


def _entries(events: tuple[Event, ...]) -> bytes:
    return b"".join(reencode_event(e, unit_index=0, unit_count=1) for e in events)


def _decode_entries(raw: bytes) -> tuple[Event, ...]:
    out = []
    offset, end = 0, len(raw)
    while offset < end:
        length = peek_length(raw, offset)
        try:
            out.append(decode_event(raw, offset, end))
        except BadRecord as e:
            raise FrameError(f"entry at byte {offset}: {e}") from e
        if length <= 0:
            raise FrameError("entry with no length")
        offset += length
    return tuple(out)


def encode(message: ReplicationMessage | RequestMessage) -> bytes:
    m: Any = message
    if isinstance(m, PromiseRequest):
        body = [_PROMISE, m.partition, m.term, m.candidate, m.incarnation, list(m.last), m.handover]
    elif isinstance(m, PromiseReply):
        body = [_PROMISE_REPLY, m.partition, m.term, m.voter, m.granted, m.promised,
                list(m.last), m.watermark]  # fmt: skip
    elif isinstance(m, Append):
        body = [_APPEND, m.partition, m.term, m.leader, m.incarnation, list(m.prev),
                _entries(m.entries), m.watermark]  # fmt: skip
    elif isinstance(m, AppendReply):
        body = [_APPEND_REPLY, m.partition, m.term, m.follower, m.ok, m.match, list(m.last),
                [list(t) for t in m.terms]]  # fmt: skip
    elif isinstance(m, FetchRequest):
        body = [_FETCH, m.partition, m.term, m.candidate, m.start, m.end]
    elif isinstance(m, FetchReply):
        body = [_FETCH_REPLY, m.partition, m.term, m.source, m.ok, _entries(m.entries)]
    elif isinstance(m, Handover):
        body = [_HANDOVER, m.partition, m.term, m.leader]
    elif isinstance(m, ForwardAppend):
        r = m.request
        body = [_FORWARD, m.request_id, r.partition_id, r.partition_key, r.transaction_id,
                [[e.event_id, e.stream_id, e.event_name, e.timestamp_ms, e.metadata, e.payload,
                  e.expected_version] for e in r.events],
                list(r.supplied_ids), r.multi]  # fmt: skip
    elif isinstance(m, ForwardReply):
        o = m.outcome
        outcome = None if o is None else [o.first_sequence, list(o.versions), list(o.timestamps_ms)]
        body = [_FORWARD_REPLY, m.request_id, outcome, m.code, m.message, m.leader]
    elif isinstance(m, ForwardRead):
        body = [_READ, m.request_id, m.partition, list(m.args), m.protocol]
    elif isinstance(m, ReadReply):
        body = [_READ_REPLY, m.request_id, m.reply]
    elif isinstance(m, FetchEvents):
        body = [_EVENTS, m.request_id, m.partition, m.start, m.count, m.wait_ms, m.stream_id,
                m.partition_key]  # fmt: skip
    elif isinstance(m, EventsReply):
        body = [_EVENTS_REPLY, m.request_id, m.ok, _entries(m.events), m.position]
    elif isinstance(m, LookupEvent):
        body = [_LOOKUP, m.request_id, m.partition, m.event_id]
    elif isinstance(m, Watermarks):
        body = [_WATERMARKS, m.request_id, list(m.partitions)]
    elif isinstance(m, WatermarksReply):
        body = [_WATERMARKS_REPLY, m.request_id, [list(t) for t in m.partitions]]
    else:
        raise TypeError(f"not a wire message: {m!r}")
    return cbor2.dumps(body)


def decode(raw: bytes) -> ReplicationMessage | RequestMessage:
    try:
        body = cbor2.loads(raw)
        return _decode(body)
    except FrameError:
        raise
    except Exception as e:  # noqa: BLE001 - anything malformed is the peer's bad frame
        raise FrameError(f"bad message: {type(e).__name__}: {e}") from e


def _pos(value: Any) -> tuple[int, int]:
    term, seq = value
    return (_int(term), _int(seq, -1))


def _int(value: Any, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise FrameError(f"expected an integer >= {low}, got {value!r}")
    return value


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise FrameError(f"expected bytes, got {type(value).__name__}")
    return value


def _watermark_item(value: Any) -> tuple[int, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise FrameError(f"expected [partition, watermark, leader], got {value!r}")
    return _int(value[0]), _int(value[1]), _int(value[2], -1)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FrameError(f"expected a boolean, got {value!r}")
    return value


def _decode(b: Any) -> ReplicationMessage | RequestMessage:
    if not isinstance(b, list) or not b:
        raise FrameError("a message must be a non-empty array")
    kind, *f = b
    if kind == _PROMISE:
        return PromiseRequest(_int(f[0]), _int(f[1]), _int(f[2]), _int(f[3]), _pos(f[4]),
                              _bool(f[5]))  # fmt: skip
    if kind == _PROMISE_REPLY:
        return PromiseReply(_int(f[0]), _int(f[1]), _int(f[2]), _bool(f[3]), _int(f[4]),
                            _pos(f[5]), _int(f[6]))  # fmt: skip
    if kind == _APPEND:
        return Append(_int(f[0]), _int(f[1]), _int(f[2]), _int(f[3]), _pos(f[4]),
                      _decode_entries(_bytes(f[5])), _int(f[6]))  # fmt: skip
    if kind == _APPEND_REPLY:
        return AppendReply(_int(f[0]), _int(f[1]), _int(f[2]), _bool(f[3]), _int(f[4], -1),
                           _pos(f[5]), tuple(_pos(t) for t in f[6]))  # fmt: skip
    if kind == _FETCH:
        return FetchRequest(_int(f[0]), _int(f[1]), _int(f[2]), _int(f[3]), _int(f[4], -1))
    if kind == _FETCH_REPLY:
        return FetchReply(_int(f[0]), _int(f[1]), _int(f[2]), _bool(f[3]),
                          _decode_entries(_bytes(f[4])))  # fmt: skip
    if kind == _HANDOVER:
        return Handover(_int(f[0]), _int(f[1]), _int(f[2]))
    if kind == _FORWARD:
        events = [
            NewEvent(
                _bytes(e[0]),
                _bytes(e[1]),
                _bytes(e[2]),
                _int(e[3]),
                _bytes(e[4]),
                _bytes(e[5]),
                _int(e[6], -3),
            )  # fmt: skip
            for e in f[4]
        ]
        supplied = tuple(_bool(x) for x in f[5])
        if not events or len(supplied) != len(events):
            raise FrameError("a forwarded append needs events")
        request = AppendRequest(_int(f[1]), _bytes(f[2]), _bytes(f[3]), events, supplied,
                                _bool(f[6]))  # fmt: skip
        return ForwardAppend(_int(f[0]), request)
    if kind == _FORWARD_REPLY:
        outcome = None
        if f[1] is not None:
            first, versions, timestamps = f[1]
            outcome = AppendOutcome(_int(first), tuple(_int(v) for v in versions),
                                    tuple(_int(t) for t in timestamps))  # fmt: skip
        return ForwardReply(_int(f[0]), outcome, str(f[2]), str(f[3]), _int(f[4], -1))
    if kind == _READ:
        return ForwardRead(_int(f[0]), _int(f[1]), tuple(_bytes(a) for a in f[2]), _int(f[3]))
    if kind == _READ_REPLY:
        return ReadReply(_int(f[0]), _bytes(f[1]))
    if kind == _EVENTS:
        return FetchEvents(_int(f[0]), _int(f[1]), _int(f[2]), _int(f[3]), _int(f[4]),
                           _bytes(f[5]), _bytes(f[6]))  # fmt: skip
    if kind == _EVENTS_REPLY:
        return EventsReply(_int(f[0]), _bool(f[1]), _decode_entries(_bytes(f[2])), _int(f[3]))
    if kind == _LOOKUP:
        return LookupEvent(_int(f[0]), _int(f[1]), _bytes(f[2]))
    if kind == _WATERMARKS:
        return Watermarks(_int(f[0]), tuple(_int(p) for p in f[1]))
    if kind == _WATERMARKS_REPLY:
        return WatermarksReply(_int(f[0]), tuple(_watermark_item(t) for t in f[1]))
    raise FrameError(f"unknown message kind {kind!r}")
