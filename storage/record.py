"""Record codec: the bytes of one entry in ``data.evts``.

Every record starts with the same 112-byte header (little-endian)::

    crc        u32   CRC32C of bytes [4, length): everything after the crc, length included
    magic      u16   0x5253 ("SR"), lets recovery find record starts in a damaged region
    kind       u8    1 = event, 2 = discard marker
    flags      u8    bit 0: this event ends its transaction
    length     u32   whole record, header included
    sid_len    u8    stream id length (1..64)
    name_len   u8    event name length (0..255)
    partition  u16
    unit_index u32   position of this record in its atomic unit
    unit_count u32   number of records in the unit
    term       u64   term in which the entry was written (durable with the entry)
    sequence   u64   partition sequence (discard marker: first discarded sequence)
    version    u64   stream version
    timestamp  u64   milliseconds since the epoch
    event_id, partition_key, transaction_id   16 bytes each
    meta_len   u32
    payload_len u32
then the stream id, event name, metadata and payload bytes.

An *atomic unit* is what one append call writes: one transaction from a leader append, the
entries of one replicated frame, or a discard marker followed by its replacement entries. The
unit's records are written contiguously in one write; recovery keeps a unit only when all
``unit_count`` records are present and valid, so a crash never exposes half of one. Transaction
boundaries inside a unit are kept by the TXN_LAST flag, for replication frames and watermarks.

Event records are encoded and checked by the compiled ``record_check.py`` (``encode_event``,
``verify_events``, ``event_from_raw``); this module holds the layout, the discard marker and the
struct-based header decoder that recovery scans with.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import google_crc32c

HEADER = struct.Struct("<IHBBIBBHIIQQQQ16s16s16sII")
HEADER_SIZE = HEADER.size  # 112
_AFTER_CRC = struct.Struct("<HBBIBBHIIQQQQ16s16s16sII")
_CRC = struct.Struct("<I")
MAGIC = 0x5253
MAGIC_BYTES = struct.pack("<H", MAGIC)

KIND_EVENT = 1
KIND_DISCARD = 2
FLAG_TXN_LAST = 1

# One record's length must fit the u32 length field (and in practice one segment).
MAX_RECORD_BYTES = (1 << 32) - 1

_crc32c = google_crc32c.value
_ZERO16 = bytes(16)


class Event(NamedTuple):
    """One stored event, as reads return it."""

    event_id: bytes
    partition_key: bytes
    partition_id: int
    transaction_id: bytes
    partition_sequence: int
    stream_version: int
    timestamp_ms: int
    stream_id: bytes
    event_name: bytes
    metadata: bytes
    payload: bytes
    term: int
    txn_last: bool


class Header(NamedTuple):
    crc: int
    magic: int
    kind: int
    flags: int
    length: int
    sid_len: int
    name_len: int
    partition: int
    unit_index: int
    unit_count: int
    term: int
    sequence: int
    version: int
    timestamp: int
    event_id: bytes
    partition_key: bytes
    transaction_id: bytes
    meta_len: int
    payload_len: int


class BadRecord(Exception):
    """The bytes at an offset are not a valid record (torn, zeroed, garbage or corrupt)."""


def encode_discard(
    *, partition_id: int, from_sequence: int, term: int, unit_index: int, unit_count: int
) -> bytes:
    rest = _AFTER_CRC.pack(
        MAGIC,
        KIND_DISCARD,
        0,
        HEADER_SIZE,
        0,
        0,
        partition_id,
        unit_index,
        unit_count,
        term,
        from_sequence,
        0,
        0,
        _ZERO16,
        _ZERO16,
        _ZERO16,
        0,
        0,
    )
    return _CRC.pack(_crc32c(rest)) + rest


def decode_header(buf: bytes | bytearray | memoryview, offset: int, end: int) -> Header:
    """Validate the record at `offset` (which must end by `end`) and return its header.

    Raises BadRecord when the bytes are not a complete, checksummed record.
    """
    if offset + HEADER_SIZE > end:
        raise BadRecord("truncated header")
    h = Header._make(HEADER.unpack_from(buf, offset))
    if h.magic != MAGIC:
        raise BadRecord("bad magic")
    length = h.length
    if length < HEADER_SIZE or offset + length > end:
        raise BadRecord("bad length" if length < HEADER_SIZE else "truncated record")
    if h.kind == KIND_EVENT:
        if length != HEADER_SIZE + h.sid_len + h.name_len + h.meta_len + h.payload_len:
            raise BadRecord("inconsistent field lengths")
    elif h.kind != KIND_DISCARD or length != HEADER_SIZE:
        raise BadRecord("unknown record kind")
    if h.unit_index >= h.unit_count:
        raise BadRecord("bad unit position")
    if _crc32c(bytes(buf[offset + 4 : offset + length])) != h.crc:
        raise BadRecord("CRC32C mismatch")
    return h


# A verified event record, as it is stored (``record_check.verify_events`` checked it): readers
# that only re-encode an event (into a reply) take its bytes and skip building an Event;
# ``record_check.event_from_raw`` builds one. Where header fields lie in it:
RawEvent = bytes
RAW_SEQUENCE = slice(32, 40)  # u64, little-endian
RAW_TIMESTAMP = slice(48, 56)  # u64, little-endian
RAW_PARTITION_KEY = slice(72, 88)
RAW_IDS = slice(56, 104)  # event id, partition key and transaction id: 48 bytes in a row


def raw_header(raw: RawEvent) -> Header:
    """A verified record's header fields (by struct: for the paths that are not hot)."""
    return Header._make(HEADER.unpack_from(raw))


def raw_sequence(raw: RawEvent) -> int:
    return int.from_bytes(raw[RAW_SEQUENCE], "little")


def raw_timestamp(raw: RawEvent) -> int:
    return int.from_bytes(raw[RAW_TIMESTAMP], "little")


def raw_body(raw: RawEvent, h: Header) -> tuple[bytes, bytes, bytes, bytes]:
    """A verified record's stream id, event name, metadata and payload (`h`: its header)."""
    p = HEADER_SIZE + h.sid_len
    q = p + h.name_len
    r = q + h.meta_len
    return raw[HEADER_SIZE:p], raw[p:q], raw[q:r], raw[r : h.length]


def peek_length(buf: bytes | bytearray | memoryview, offset: int) -> int:
    """The declared length of the record at `offset` (unvalidated); 0 if the head is short."""
    if offset + 8 > len(buf):
        return 0
    return int.from_bytes(buf[offset + 8 : offset + 12], "little")
