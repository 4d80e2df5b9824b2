"""Stored records straight into RESP event maps: the read path's compiled encoder.

Every event a read or a partition subscription sends is a stored record (``storage.RawEvent``:
its verified bytes, header fields included) turned into the reference's 11-key event map. Done
in Python, with ``bytes % tuple`` templates, that was ~6 us per event, most of a delivered
event's cost. This module does it in one pass: it sums the exact size of every map, allocates
the reply once and writes each piece into it (keys, the three ids as UUID text from the
record's 48 id bytes, the integers' digits, the record's stream id, name, metadata and payload).

It is plain Python in Cython's "pure Python mode": the annotations (``cython.p_char``,
``cython.Py_ssize_t``, ...) type it when ``setup.py`` compiles it at install (``pip install``
builds it; the built module sits beside this file and wins the import). Uncompiled it runs the
same code, correct but ~100x slower, so the tests check that the installed node uses the
compiled module and that both give the bytes of ``replies``' templates. **After editing this
file, re-run the install** (``.venv/bin/pip install -e .``), or the old build keeps running.

Bounds: each write checks once that it fits, so a wrong size raises instead of writing past
the reply; the sizes are checked again at the end.
"""

from __future__ import annotations

import cython

from sierradb.storage.record import HEADER_SIZE, RAW_IDS

UUID_TEXT = cython.declare(cython.Py_ssize_t, 36)
_HEX_DIGITS: bytes = b"0123456789abcdef"

# The keys, each with the framing around it, before each of the 11 values in order (RESP3:
# simple-string keys in a map; RESP2: bulk-string keys in a flat array, PROTOCOL.md point 14).
_KEYS3 = (
    b"%11\r\n+event_id\r\n+",
    b"\r\n+partition_key\r\n+",
    b"\r\n+partition_id\r\n:",
    b"\r\n+transaction_id\r\n+",
    b"\r\n+partition_sequence\r\n:",
    b"\r\n+stream_version\r\n:",
    b"\r\n+timestamp\r\n:",
    b"\r\n+stream_id\r\n$",
    b"\r\n+event_name\r\n$",
    b"\r\n+metadata\r\n$",
    b"\r\n+payload\r\n$",
)
_KEYS2 = (
    b"*22\r\n$8\r\nevent_id\r\n$36\r\n",
    b"\r\n$13\r\npartition_key\r\n$36\r\n",
    b"\r\n$12\r\npartition_id\r\n:",
    b"\r\n$14\r\ntransaction_id\r\n$36\r\n",
    b"\r\n$18\r\npartition_sequence\r\n:",
    b"\r\n$14\r\nstream_version\r\n:",
    b"\r\n$9\r\ntimestamp\r\n:",
    b"\r\n$9\r\nstream_id\r\n$",
    b"\r\n$10\r\nevent_name\r\n$",
    b"\r\n$8\r\nmetadata\r\n$",
    b"\r\n$7\r\npayload\r\n$",
)
_KEYS_SIZE3 = cython.declare(cython.Py_ssize_t, sum([len(k) for k in _KEYS3]))
_KEYS_SIZE2 = cython.declare(cython.Py_ssize_t, sum([len(k) for k in _KEYS2]))
# Each set of keys as one buffer, and where each key starts in it (the 12th entry: the end):
# the encoder takes one pointer per call, not a Python object per key and event.
_KEYS3_JOINED: bytes = b"".join(_KEYS3)
_KEYS2_JOINED: bytes = b"".join(_KEYS2)
_KEY_STARTS3: tuple = tuple([sum([len(k) for k in _KEYS3[:i]]) for i in range(12)])
_KEY_STARTS2: tuple = tuple([sum([len(k) for k in _KEYS2[:i]]) for i in range(12)])

# The record layout (storage/record.py, record_check.py): the body follows the header; the
# event id, partition key and transaction id are 48 bytes in a row; where each header field
# lies. Declared with cython.declare, these are C variables in the compiled module (a
# module-level annotation does not type a global: each use would be a Python integer).
_HEADER_SIZE = cython.declare(cython.Py_ssize_t, HEADER_SIZE)
_IDS_AT = cython.declare(cython.Py_ssize_t, RAW_IDS.start)
_SID_LEN_AT = cython.declare(cython.Py_ssize_t, 12)
_NAME_LEN_AT = cython.declare(cython.Py_ssize_t, 13)
_PARTITION_AT = cython.declare(cython.Py_ssize_t, 14)
_SEQUENCE_AT = cython.declare(cython.Py_ssize_t, 32)
_VERSION_AT = cython.declare(cython.Py_ssize_t, 40)
_TIMESTAMP_AT = cython.declare(cython.Py_ssize_t, 48)
_META_LEN_AT = cython.declare(cython.Py_ssize_t, 104)
_PAYLOAD_LEN_AT = cython.declare(cython.Py_ssize_t, 108)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _le(p: cython.p_char, at: cython.Py_ssize_t, n: cython.int) -> cython.ulonglong:
    """The n-byte little-endian unsigned integer at p[at] (a verified record's field)."""
    v: cython.ulonglong = 0
    i: cython.int
    for i in range(n - 1, -1, -1):
        v = (v << 8) | cython.cast(cython.uchar, p[at + i])
    return v


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _digits(n: cython.ulonglong) -> cython.Py_ssize_t:
    d: cython.Py_ssize_t = 1
    while n >= 10:
        n //= 10
        d += 1
    return d


# The writers below put bytes at out[pos] and return the position after them. `out` is the
# reply (a bytearray; compiled, its char buffer) and `size` its length: each checks once that
# its bytes fit, then writes without further checks.


@cython.cfunc
@cython.inline
def _room(size: cython.Py_ssize_t, pos: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.int:
    if pos + n > size:
        raise IndexError("event codec: a write past the reply")
    return 0


@cython.cfunc
@cython.inline
def _put(out: cython.p_char, size: cython.Py_ssize_t, pos: cython.Py_ssize_t,
         src: cython.p_char, start: cython.Py_ssize_t, n: cython.Py_ssize_t
         ) -> cython.Py_ssize_t:  # fmt: skip
    """src[start:start + n]."""
    i: cython.Py_ssize_t
    _room(size, pos, n)
    for i in range(n):
        out[pos + i] = src[start + i]
    return pos + n


@cython.cfunc
@cython.inline
def _put_int(out: cython.p_char, size: cython.Py_ssize_t, pos: cython.Py_ssize_t,
             n: cython.ulonglong) -> cython.Py_ssize_t:  # fmt: skip
    """The decimal digits of n."""
    end: cython.Py_ssize_t = pos + _digits(n)
    i: cython.Py_ssize_t = end
    _room(size, pos, end - pos)
    while True:
        i -= 1
        out[i] = 48 + n % 10
        n //= 10
        if n == 0:
            break
    return end


@cython.cfunc
@cython.inline
def _put_crlf(out: cython.p_char, size: cython.Py_ssize_t, pos: cython.Py_ssize_t
              ) -> cython.Py_ssize_t:  # fmt: skip
    _room(size, pos, 2)
    out[pos] = 13
    out[pos + 1] = 10
    return pos + 2


@cython.cfunc
@cython.inline
def _put_uuid(out: cython.p_char, size: cython.Py_ssize_t, pos: cython.Py_ssize_t,
              src: cython.p_char, start: cython.Py_ssize_t, hexd: cython.p_char
              ) -> cython.Py_ssize_t:  # fmt: skip
    """The 16 bytes at src[start] as UUID text (8-4-4-4-12 lower-case hex digits; `hexd`:
    the 16 digits)."""
    i: cython.Py_ssize_t
    b: cython.uchar
    _room(size, pos, UUID_TEXT)
    for i in range(16):
        if i == 4 or i == 6 or i == 8 or i == 10:
            out[pos] = 45  # '-'
            pos += 1
        b = src[start + i]
        out[pos] = hexd[b >> 4]
        out[pos + 1] = hexd[b & 15]
        pos += 2
    return pos


@cython.cfunc
@cython.inline
def _put_bulk(out: cython.p_char, size: cython.Py_ssize_t, pos: cython.Py_ssize_t,
              keys: cython.p_char, key_start: cython.Py_ssize_t, key_end: cython.Py_ssize_t,
              src: cython.p_char, start: cython.Py_ssize_t, n: cython.Py_ssize_t
              ) -> cython.Py_ssize_t:  # fmt: skip
    """keys[key_start:key_end] (a key ending in the bulk string's "$"), then
    src[start:start + n] as its value."""
    pos = _put(out, size, pos, keys, key_start, key_end - key_start)
    pos = _put_int(out, size, pos, n)
    pos = _put_crlf(out, size, pos)
    return _put(out, size, pos, src, start, n)


def encode_events(records: list, resp3: cython.bint, head: bytes = b"",
                  cursor: cython.ulonglong = 0, prefix: bytes = b"") -> bytes:  # fmt: skip
    """The event maps of verified stored records (``storage.RawEvent``), in one buffer after
    `prefix` (a reply's head).

    With a `head` (a push message's frame up to its cursor, ``replies._push_head``), each map
    is a push message: the head, the cursor's digits (from `cursor` on, one per event), CRLF.
    """
    joined: bytes = _KEYS3_JOINED if resp3 else _KEYS2_JOINED
    kp: cython.p_char = joined
    starts: tuple = _KEY_STARTS3 if resp3 else _KEY_STARTS2
    ks = cython.declare(cython.Py_ssize_t[12])
    k: cython.Py_ssize_t
    for k in range(12):
        ks[k] = starts[k]
    hexd: cython.p_char = _HEX_DIGITS
    keys_size: cython.Py_ssize_t = _KEYS_SIZE3 if resp3 else _KEYS_SIZE2
    head_size: cython.Py_ssize_t = len(head)
    record: bytes
    r: cython.p_char
    c: cython.ulonglong = cursor
    sid_len: cython.Py_ssize_t
    name_len: cython.Py_ssize_t
    meta_len: cython.Py_ssize_t
    payload_len: cython.Py_ssize_t
    at: cython.Py_ssize_t
    total: cython.Py_ssize_t = len(prefix)
    for raw in records:
        record = raw
        if len(record) < _HEADER_SIZE:
            raise ValueError("event codec: not a verified record")
        r = record
        sid_len = _le(r, _SID_LEN_AT, 1)
        name_len = _le(r, _NAME_LEN_AT, 1)
        meta_len = _le(r, _META_LEN_AT, 4)
        payload_len = _le(r, _PAYLOAD_LEN_AT, 4)
        if len(record) != _HEADER_SIZE + sid_len + name_len + meta_len + payload_len:
            raise ValueError("event codec: not a verified record")  # (C reads stay inside it)
        total += (
            keys_size + 3 * UUID_TEXT
            + _digits(_le(r, _PARTITION_AT, 2)) + _digits(_le(r, _SEQUENCE_AT, 8))
            + _digits(_le(r, _VERSION_AT, 8)) + _digits(_le(r, _TIMESTAMP_AT, 8))
            + _digits(sid_len) + _digits(name_len) + _digits(meta_len) + _digits(payload_len)
            + 4 * 2 + sid_len + name_len + meta_len + payload_len + 2
        )  # fmt: skip
        if head_size:
            total += head_size + _digits(c) + 2
            c += 1
    # Compiled, the reply is a new bytes object written in place before anything else sees
    # it, as CPython's own C code builds bytes: a page of a thousand events (~0.5 MiB) is not
    # copied out of a bytearray. (bytes(0) is a shared object: nothing is written to it then.)
    reply = bytes(total) if cython.compiled else bytearray(total)
    out: cython.p_char = reply
    pos: cython.Py_ssize_t = _put(out, total, 0, prefix, 0, len(prefix))
    c = cursor
    for raw in records:
        record = raw
        r = record
        if head_size:
            pos = _put(out, total, pos, head, 0, head_size)
            pos = _put_int(out, total, pos, c)
            pos = _put_crlf(out, total, pos)
            c += 1
        pos = _put(out, total, pos, kp, ks[0], ks[1] - ks[0])
        pos = _put_uuid(out, total, pos, r, _IDS_AT, hexd)
        pos = _put(out, total, pos, kp, ks[1], ks[2] - ks[1])
        pos = _put_uuid(out, total, pos, r, _IDS_AT + 16, hexd)
        pos = _put(out, total, pos, kp, ks[2], ks[3] - ks[2])
        pos = _put_int(out, total, pos, _le(r, _PARTITION_AT, 2))
        pos = _put(out, total, pos, kp, ks[3], ks[4] - ks[3])
        pos = _put_uuid(out, total, pos, r, _IDS_AT + 32, hexd)
        pos = _put(out, total, pos, kp, ks[4], ks[5] - ks[4])
        pos = _put_int(out, total, pos, _le(r, _SEQUENCE_AT, 8))
        pos = _put(out, total, pos, kp, ks[5], ks[6] - ks[5])
        pos = _put_int(out, total, pos, _le(r, _VERSION_AT, 8))
        pos = _put(out, total, pos, kp, ks[6], ks[7] - ks[6])
        pos = _put_int(out, total, pos, _le(r, _TIMESTAMP_AT, 8))
        # The stream id, event name, metadata and payload, each a bulk string.
        sid_len = _le(r, _SID_LEN_AT, 1)
        name_len = _le(r, _NAME_LEN_AT, 1)
        meta_len = _le(r, _META_LEN_AT, 4)
        payload_len = _le(r, _PAYLOAD_LEN_AT, 4)
        at = _HEADER_SIZE
        pos = _put_bulk(out, total, pos, kp, ks[7], ks[8], r, at, sid_len)
        at += sid_len
        pos = _put_bulk(out, total, pos, kp, ks[8], ks[9], r, at, name_len)
        at += name_len
        pos = _put_bulk(out, total, pos, kp, ks[9], ks[10], r, at, meta_len)
        at += meta_len
        pos = _put_bulk(out, total, pos, kp, ks[10], ks[11], r, at, payload_len)
        pos = _put_crlf(out, total, pos)
    if pos != total:
        raise RuntimeError(f"event codec: wrote {pos} bytes of {total}")
    return bytes(reply)  # compiled: the same object
