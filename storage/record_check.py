"""Every stored event record is encoded here, and checked here when a read returns it: compiled,
like the reply encoder.

``encode_event`` writes a record into a new bytes object field by field and checksums it in
place: ~0.5 us, where ``struct`` packing, a join and a CRC call on a copy took ~1.6 us (each
append pays it once on its leader, once per follower frame and once on each follower).

A read hands each record to ``verify_events`` before anything uses it: its header fields must
be sane (magic, kind, lengths that add up and stay inside the bytes read, unit position) and
its CRC32C must match. The result is a ``RawEvent``: the record's bytes, which the reply encoder
(``node/event_codec.py``) reads its fields from, and ``event_from_raw`` turns into an Event.

Done with ``struct`` in Python this was ~2.1 us a record, the largest single cost of a
consumer's delivered event; compiled, returning the 19 header fields as a tuple beside the
bytes, ~0.45 us; returning only the bytes and checking the CRC with the CPU's instruction
(``sdb_crc32c.pxd``), ~0.09 us. This module is plain Python in Cython's "pure Python mode":
the annotations type it when ``setup.py`` compiles it at install. The magic, kind and length
are read from the buffer; once the record is known to fit it is copied, and every further check
and the CRC are read from that copy as C integers, so what is returned is what the CRC vouched
for. Uncompiled it runs the same code (the CRC by google_crc32c), correct but ~25x slower, so
the tests check that the installed package uses the compiled module and that both agree with
``struct``. **After editing this file, re-run the install** (``.venv/bin/pip install -e .``), or
the old build keeps running.

The layout (``record.HEADER``, little-endian): crc u32 @0, magic u16 @4, kind u8 @6, flags u8 @7,
length u32 @8, stream id length u8 @12, event name length u8 @13, partition u16 @14, unit index
u32 @16, unit count u32 @20, term @24, sequence @32, version @40, timestamp @48 (u64 each),
event id @56, partition key @72, transaction id @88 (16 bytes each), metadata length u32 @104,
payload length u32 @108; the body (stream id, name, metadata, payload) follows at 112.
"""

from __future__ import annotations

from collections.abc import Iterable

import cython
import google_crc32c

try:  # compiled: the CPU's CRC32C (storage/sdb_crc32c.pxd); plain Python has no cimports
    from cython.cimports.sdb_crc32c import sdb_crc32c_hw, sdb_crc32c_hw_available
except (ImportError, AttributeError):  # (Cython's stand-in module raises the latter)
    pass

from .record import FLAG_TXN_LAST, HEADER_SIZE, KIND_EVENT, MAGIC, BadRecord, Event, RawEvent

_ID_BYTES = cython.declare(cython.Py_ssize_t, 16)

_crc32c = google_crc32c.value
_new_tuple = tuple.__new__  # Event(...) without its Python-level __new__

# C variables in the compiled module (cython.declare: an annotated global stays a Python object).
_HEADER_SIZE = cython.declare(cython.Py_ssize_t, HEADER_SIZE)
_MAGIC = cython.declare(cython.ulonglong, MAGIC)
_KIND_EVENT = cython.declare(cython.ulonglong, KIND_EVENT)
_U64_MAX = cython.declare(cython.ulonglong, (1 << 64) - 1)
# Whether sdb_crc32c_hw (sdb_crc32c.pxd) may run here: compiled, on a CPU that has it.
_HW_CRC = cython.declare(cython.bint, cython.compiled and sdb_crc32c_hw_available())
CRC32C_BY = "the CPU" if _HW_CRC else "google_crc32c"  # (for the tests and the record)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _le(p: cython.p_const_uchar, at: cython.Py_ssize_t, n: cython.int) -> cython.ulonglong:
    """The n-byte little-endian unsigned integer at p[at] (the caller checked the bounds)."""
    v: cython.ulonglong = 0
    i: cython.int
    for i in range(n - 1, -1, -1):
        v = (v << 8) | p[at + i]
    return v


@cython.cfunc
@cython.inline
def _crc(record: bytes, r: cython.p_const_uchar, start: cython.Py_ssize_t,
         stop: cython.Py_ssize_t) -> cython.ulonglong:  # fmt: skip
    """The CRC32C of record[start:stop] (`r` is the record's bytes)."""
    if _HW_CRC:
        return sdb_crc32c_hw(r + start, stop - start)
    return _crc32c(record[start:stop])


@cython.cfunc
@cython.inline
def _put_le(r: cython.p_uchar, at: cython.Py_ssize_t, value: cython.ulonglong,
            n: cython.int) -> cython.int:  # fmt: skip
    """`value` as n little-endian bytes at r[at] (the caller sized the record)."""
    i: cython.int
    for i in range(n):
        r[at + i] = (value >> (8 * i)) & 0xFF
    return 0


@cython.cfunc
@cython.inline
def _put_bytes(r: cython.p_uchar, at: cython.Py_ssize_t, src: cython.p_const_uchar,
               n: cython.Py_ssize_t) -> cython.Py_ssize_t:  # fmt: skip
    """src[:n] at r[at]; the position after it."""
    i: cython.Py_ssize_t
    for i in range(n):
        r[at + i] = src[i]
    return at + n


@cython.cfunc
@cython.inline
def _bytes(p: cython.p_const_uchar, start: cython.Py_ssize_t, stop: cython.Py_ssize_t) -> bytes:
    """p[start:stop] as bytes (compiled, straight from the pointer: no slice object)."""
    if cython.compiled:
        return p[start:stop]
    return bytes(p[start:stop])


@cython.cfunc
@cython.inline
def _check_verified(raw: bytes) -> cython.int:
    """That a RawEvent holds the lengths its header gives, so that reading its fields in C stays
    inside it (verify_events made it so; anything else here is a programming error)."""
    r: cython.p_const_uchar
    n: cython.Py_ssize_t = len(raw)
    if n >= _HEADER_SIZE:
        r = raw
        if n == _HEADER_SIZE + r[12] + r[13] + _le(r, 104, 4) + _le(r, 108, 4):
            return 0
    raise ValueError("not a verified record")


def encode_event(
    term: cython.ulonglong,
    partition_id: cython.ulonglong,
    sequence: cython.ulonglong,
    version: cython.ulonglong,
    timestamp_ms: cython.ulonglong,
    event_id: bytes,
    partition_key: bytes,
    transaction_id: bytes,
    stream_id: bytes,
    event_name: bytes,
    metadata: bytes,
    payload: bytes,
    unit_index: cython.ulonglong,
    unit_count: cython.ulonglong,
    txn_last: cython.bint,
) -> bytes:
    """An event's stored record (the layout above). Raises ValueError for a field that does not
    fit it (compiled, OverflowError for a negative or a 64-bit field past 2**64 - 1)."""
    sid_len: cython.Py_ssize_t = len(stream_id)
    name_len: cython.Py_ssize_t = len(event_name)
    meta_len: cython.Py_ssize_t = len(metadata)
    payload_len: cython.Py_ssize_t = len(payload)
    length: cython.Py_ssize_t = _HEADER_SIZE + sid_len + name_len + meta_len + payload_len
    if not cython.compiled:  # (compiled, the C types refuse these)
        for v in (term, partition_id, sequence, version, timestamp_ms, unit_index, unit_count):
            if not 0 <= v <= _U64_MAX:
                raise OverflowError(f"record field out of range: {v}")
    if (
        sid_len > 0xFF or name_len > 0xFF or partition_id > 0xFFFF or unit_index > 0xFFFFFFFF
        or unit_count > 0xFFFFFFFF or length > 0xFFFFFFFF
    ):  # fmt: skip
        raise ValueError("an event field does not fit the record's header")
    if (
        len(event_id) != _ID_BYTES or len(partition_key) != _ID_BYTES
        or len(transaction_id) != _ID_BYTES
    ):  # fmt: skip
        raise ValueError("event id, partition key and transaction id must be 16 bytes each")
    # Compiled, a new bytes object written in place before anything else sees it (as the
    # reply encoder does); plain Python writes a bytearray.
    record = bytes(length) if cython.compiled else bytearray(length)
    r: cython.p_uchar = record
    _put_le(r, 4, _MAGIC, 2)
    r[6] = _KIND_EVENT
    r[7] = FLAG_TXN_LAST if txn_last else 0
    _put_le(r, 8, length, 4)
    r[12] = sid_len
    r[13] = name_len
    _put_le(r, 14, partition_id, 2)
    _put_le(r, 16, unit_index, 4)
    _put_le(r, 20, unit_count, 4)
    _put_le(r, 24, term, 8)
    _put_le(r, 32, sequence, 8)
    _put_le(r, 40, version, 8)
    _put_le(r, 48, timestamp_ms, 8)
    _put_bytes(r, 56, event_id, _ID_BYTES)
    _put_bytes(r, 72, partition_key, _ID_BYTES)
    _put_bytes(r, 88, transaction_id, _ID_BYTES)
    _put_le(r, 104, meta_len, 4)
    _put_le(r, 108, payload_len, 4)
    at: cython.Py_ssize_t = _put_bytes(r, _HEADER_SIZE, stream_id, sid_len)
    at = _put_bytes(r, at, event_name, name_len)
    at = _put_bytes(r, at, metadata, meta_len)
    _put_bytes(r, at, payload, payload_len)
    _put_le(r, 0, _crc(bytes(record), r, 4, length), 4)
    return bytes(record)  # compiled: the same object


def reencode_event(e: Event, unit_index: int, unit_count: int) -> bytes:
    """The record of an event that already has its positions (a replicated append)."""
    return encode_event(
        e.term, e.partition_id, e.partition_sequence, e.stream_version, e.timestamp_ms,
        e.event_id, e.partition_key, e.transaction_id, e.stream_id, e.event_name, e.metadata,
        e.payload, unit_index, unit_count, e.txn_last,
    )  # fmt: skip


def verify_events(buf: bytes | bytearray | memoryview, offsets: Iterable[int], end: int
                  ) -> list[RawEvent]:  # fmt: skip
    """The event record at each offset, fully checked, as its bytes. None may reach past `end`
    (nor past `buf`); one loop, so a read of a thousand records pays for one call, not a
    thousand. Raises BadRecord at the first bad one."""
    out: list = []
    data: cython.const[cython.uchar][::1] = buf  # type: ignore[valid-type]
    limit: cython.Py_ssize_t = min(end, len(data))
    p: cython.p_const_uchar  # the buffer's bytes (uncompiled: the buffer itself)
    if cython.compiled:
        p = cython.address(data[0]) if limit > 0 else cython.NULL
    else:
        p = data
    o: cython.Py_ssize_t
    length: cython.Py_ssize_t
    body: cython.Py_ssize_t
    record: bytes
    r: cython.p_const_uchar  # the record's bytes, copied: every check and field is read here
    for offset in offsets:
        o = offset
        if o < 0 or o + _HEADER_SIZE > limit:
            raise BadRecord("truncated header")
        if _le(p, o + 4, 2) != _MAGIC:
            raise BadRecord("bad magic")
        if p[o + 6] != _KIND_EVENT:
            raise BadRecord("not an event record")
        length = _le(p, o + 8, 4)
        if length < _HEADER_SIZE or o + length > limit:
            raise BadRecord("bad length")
        # From here on everything is read from the copy, which the CRC then vouches for.
        record = _bytes(p, o, o + length)
        r = record
        body = r[12] + r[13] + _le(r, 104, 4) + _le(r, 108, 4)
        if _le(r, 8, 4) != length or length != _HEADER_SIZE + body:
            raise BadRecord("bad length")
        if _le(r, 16, 4) >= _le(r, 20, 4):
            raise BadRecord("bad unit position")
        if _crc(record, r, 4, length) != _le(r, 0, 4):
            raise BadRecord("CRC32C mismatch")
        out.append(record)
    return out


def verify_event(buf: bytes | bytearray | memoryview, offset: int, end: int) -> RawEvent:
    """The event record at `offset`, fully checked, as its bytes."""
    return verify_events(buf, (offset,), end)[0]


def decode_event(buf: bytes | bytearray | memoryview, offset: int, end: int) -> Event:
    """The event record at `offset`, fully checked, as an Event."""
    return event_from_raw(verify_event(buf, offset, end))


def event_from_raw(raw: RawEvent) -> Event:
    """A verified record (``verify_events``) as an Event."""
    _check_verified(raw)
    r: cython.p_const_uchar = raw
    sid_end: cython.Py_ssize_t = _HEADER_SIZE + r[12]
    name_end: cython.Py_ssize_t = sid_end + r[13]
    meta_end: cython.Py_ssize_t = name_end + _le(r, 104, 4)
    event = (
        _bytes(r, 56, 72), _bytes(r, 72, 88), _le(r, 14, 2), _bytes(r, 88, 104), _le(r, 32, 8),
        _le(r, 40, 8), _le(r, 48, 8), _bytes(r, _HEADER_SIZE, sid_end),
        _bytes(r, sid_end, name_end), _bytes(r, name_end, meta_end),
        _bytes(r, meta_end, meta_end + _le(r, 108, 4)), _le(r, 24, 8),
        (r[7] & FLAG_TXN_LAST) != 0,
    )  # fmt: skip
    return _new_tuple(Event, event)  # type: ignore[no-any-return]


def extend_stream_read(out: list, raws: list, max_seq: int, start: cython.ulonglong,
                       last: cython.ulonglong, limit: cython.Py_ssize_t) -> int | None:  # fmt: skip
    """A stream read's filter over verified records of the stream (in version order): append
    to `out` those with version >= `start` (the versions read already are below it), until a
    record at or past `max_seq` (the watermark; 2**64 or more: no bound), `limit` records in
    `out`, or a version past `last`. Returns the next version to read, or None once the read is
    complete."""
    bounded: cython.bint = max_seq <= _U64_MAX
    below: cython.ulonglong = max_seq if bounded else 0
    r: cython.p_const_uchar
    version: cython.ulonglong
    for raw in raws:
        _check_verified(raw)
        r = raw
        if bounded and _le(r, 32, 8) >= below:
            return None
        version = _le(r, 40, 8)
        if version < start:
            continue
        out.append(raw)
        if len(out) >= limit or version >= last:
            return None
        start = version + 1
    return start
