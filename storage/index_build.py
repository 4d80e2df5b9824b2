"""The segment indexes' bulk work, compiled: hashing, slot tables, bloom filters and the
flattened per-stream tables that checkpoints and sealing write.

Why compiled. A checkpoint indexes the ids and stream keys added since the last one and writes
the whole active index; sealing builds the three index files of a full segment. In Python that
was ~5 us per event: ~270 ms per checkpoint of a busy bucket, seconds for the seal of a 256 MiB
segment. Both run on the one writer thread, holding the GIL (and, for the checkpoint, the
bucket's lock), so every bucket's commits and the event loop stalled meanwhile: the node's
worst latency under sustained load. Here each event costs a few C operations.

This module is plain Python in Cython's "pure Python mode", like ``record_check.py``: the
annotations type it when ``setup.py`` compiles it at install; uncompiled it runs the same
algorithm (the CRCs by google_crc32c and zlib), and the tests check that both build the same
bytes and that the installed package uses the compiled one. **After editing this file, re-run
the install** (``.venv/bin/pip install -e .``), or the old build keeps running.

The hashes are the ones ``hashing.py`` defines (they are stored): an id's is ``id_hash64``, a
stream key's ``bytes_hash64`` (CRC32C << 32 | CRC-32). Slot tables probe linearly from the
hash's top ``bits`` bits and hold at most one value per two slots; bloom filters take k=3
probes by double hashing (``hashing.Bloom``).
"""

from __future__ import annotations

import zlib
from array import array

import cython
import google_crc32c

try:  # compiled: the CRCs in C (sdb_crc32c.pxd, sdb_crc32.pxd); plain Python has no cimports
    from cython.cimports.sdb_crc32 import sdb_crc32_ieee, sdb_crc32c_sw
    from cython.cimports.sdb_crc32c import sdb_crc32c_hw, sdb_crc32c_hw_available
except (ImportError, AttributeError):  # (Cython's stand-in module raises the latter)
    pass

EMPTY = -1  # as in hashing.py: a slot never used (a discarded id leaves TOMBSTONE, -2)
_GOLDEN = cython.declare(cython.ulonglong, 0x9E3779B97F4A7C15)
_M64 = (1 << 64) - 1  # (plain Python's integers do not wrap; the compiled ones do)
_HW_CRC = cython.declare(cython.bint, cython.compiled and sdb_crc32c_hw_available())


def _zeros(typecode: str, n: cython.Py_ssize_t) -> array:
    """An array of n zeros (filled in place by the builders below)."""
    return array(typecode, bytes(array(typecode).itemsize * n))


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _u64_le(p: cython.uchar[:], at: cython.Py_ssize_t) -> cython.ulonglong:
    v: cython.ulonglong = 0
    i: cython.int
    for i in range(7, -1, -1):
        v = (v << 8) | p[at + i]
    return v


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _id_hash(ids: cython.uchar[:], n: cython.Py_ssize_t) -> cython.ulonglong:
    """``hashing.id_hash64`` of event number n's id (the 16 bytes at 16 * n)."""
    h: cython.ulonglong = (_u64_le(ids, 16 * n) ^ _u64_le(ids, 16 * n + 8)) * _GOLDEN
    if not cython.compiled:
        h &= _M64
    return h


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _insert(
    slots: cython.int[:], bits: cython.int, h: cython.ulonglong, value: cython.int
) -> cython.int:
    """Put `value` in its hash's first free slot (EMPTY or a tombstone); 1 if it was EMPTY."""
    mask: cython.Py_ssize_t = len(slots) - 1
    i: cython.Py_ssize_t = (h >> (64 - bits)) & mask
    while slots[i] >= 0:
        i = (i + 1) & mask
    fresh: cython.int = slots[i] == EMPTY
    slots[i] = value
    return fresh


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _bloom_add(bloom: cython.uchar[:], mask: cython.ulonglong, h: cython.ulonglong) -> cython.int:
    a: cython.ulonglong = h & 0xFFFFFFFF
    b: cython.ulonglong = (h >> 32) | 1
    q: cython.ulonglong
    _k: cython.int
    for _k in range(3):
        q = a & mask
        bloom[q >> 3] |= 1 << (q & 7)
        a += b
    return 0


def index_ids(
    ids: cython.uchar[:],
    first: cython.Py_ssize_t,
    end: cython.Py_ssize_t,
    slots: cython.int[:],
    bits: cython.int,
    bloom: cython.uchar[:],
    bloom_mask: cython.ulonglong,
) -> tuple[int, int, int]:
    """Add the ids of event numbers first..end-1 to a slot table (the caller made room for
    them) and a bloom filter: (slots newly used, their smallest and largest time prefix).
    The prefix is an id's top 48 bits, big-endian (``active_index.event_time_ms``)."""
    used: cython.Py_ssize_t = 0
    tmin: cython.ulonglong = (1 << 48) - 1
    tmax: cython.ulonglong = 0
    t: cython.ulonglong
    h: cython.ulonglong
    n: cython.Py_ssize_t
    i: cython.int
    for n in range(first, end):
        h = _id_hash(ids, n)
        used += _insert(slots, bits, h, n)
        _bloom_add(bloom, bloom_mask, h)
        t = 0
        for i in range(6):
            t = (t << 8) | ids[16 * n + i]
        tmin = min(tmin, t)
        tmax = max(tmax, t)
    return used, tmin, tmax


def rehash_ids(ids: cython.uchar[:], old: cython.int[:], bits: cython.int) -> tuple[array, int]:
    """A slot table of 2**bits slots holding the live values of `old` (event numbers, hashed
    by their ids), and how many slots it uses."""
    table = array("i", [EMPTY]) * (1 << bits)
    slots: cython.int[:] = table
    used: cython.Py_ssize_t = 0
    i: cython.Py_ssize_t
    v: cython.int
    for i in range(len(old)):
        v = old[i]
        if v >= 0:
            used += _insert(slots, bits, _id_hash(ids, v), v)
    return table, used


def key_hashes(keys: list[bytes], cpu_crc: cython.bint = True) -> array:
    """``hashing.bytes_hash64`` of each key, as an array of 64-bit words (``cpu_crc`` False:
    CRC32C by the table even where the CPU has the instruction, for the tests)."""
    n: cython.Py_ssize_t = len(keys)
    out = _zeros("Q", n)
    view: cython.ulonglong[:] = out
    i: cython.Py_ssize_t
    key: bytes
    p: cython.p_const_uchar
    size: cython.Py_ssize_t
    high: cython.ulonglong
    low: cython.ulonglong
    for i in range(n):
        key = keys[i]
        if cython.compiled:
            p = key
            size = len(key)
            high = sdb_crc32c_hw(p, size) if _HW_CRC and cpu_crc else sdb_crc32c_sw(p, size)
            low = sdb_crc32_ieee(p, size)
        else:
            high = google_crc32c.value(key)
            low = zlib.crc32(key)
        view[i] = (high << 32) | low
    return out


def bloom_add(hashes: cython.ulonglong[:], bloom: cython.uchar[:], mask: cython.ulonglong) -> None:
    i: cython.Py_ssize_t
    for i in range(len(hashes)):
        _bloom_add(bloom, mask, hashes[i])


def build_slots(hashes: cython.ulonglong[:]) -> tuple[array, int]:
    """A slot table for the values 0..n-1 whose hashes are given: (slots, bits)."""
    n: cython.Py_ssize_t = len(hashes)
    bits: cython.int = max(4, (2 * n).bit_length())
    table = array("i", [EMPTY]) * (1 << bits)
    slots: cython.int[:] = table
    v: cython.Py_ssize_t
    for v in range(n):
        _insert(slots, bits, hashes[v], v)
    return table, bits


def stream_numbers(
    stream_events: list[int | tuple[int, ...] | array], below: cython.Py_ssize_t = 1 << 32
) -> tuple[array, array]:
    """Every stream's entries (``ActiveIndex.stream_events``: an int, a tuple or an array of
    event numbers) flattened: (each stream's count, all the numbers in stream order). An
    array's numbers from the first at or above `below` are left out (a checkpoint's copy of the
    list, whose arrays went on growing: ``ActiveIndex.snapshot``)."""
    count: cython.Py_ssize_t = len(stream_events)
    counts = _zeros("I", count)
    counts_view: cython.uint[:] = counts
    total: cython.Py_ssize_t = 0
    i: cython.Py_ssize_t
    c: cython.Py_ssize_t
    stored: cython.uint[:]
    for i in range(count):
        entries = stream_events[i]
        if type(entries) is int:
            c = 1
        elif type(entries) is tuple:
            c = len(entries)  # type: ignore[arg-type]
        else:
            stored = entries  # type: ignore[assignment]
            c = len(stored)
            while c and stored[c - 1] >= below:  # ascending: the newest at the end
                c -= 1
        counts_view[i] = c
        total += c
    numbers = _zeros("I", total)
    out: cython.uint[:] = numbers
    at: cython.Py_ssize_t = 0
    j: cython.Py_ssize_t
    for i in range(count):
        entries = stream_events[i]
        if type(entries) is int:
            out[at] = entries
            at += 1
        elif type(entries) is tuple:
            for number in entries:  # type: ignore[union-attr]
                out[at] = number
                at += 1
        else:
            stored = entries  # type: ignore[assignment]
            for j in range(counts_view[i]):
                out[at + j] = stored[j]
            at += counts_view[i]
    return counts, numbers


def stream_table(bases: cython.ulonglong[:], counts: cython.uint[:]) -> array:
    """The sealed stream index's rows, (base version, first position, count) per stream, for
    streams whose entries lie one after another in that order (``stream_numbers``)."""
    n: cython.Py_ssize_t = len(counts)
    table = _zeros("Q", 3 * n)
    out: cython.ulonglong[:] = table
    start: cython.ulonglong = 0
    i: cython.Py_ssize_t
    for i in range(n):
        out[3 * i] = bases[i]
        out[3 * i + 1] = start
        out[3 * i + 2] = counts[i]
        start += counts[i]
    return table


def take(values: cython.ulonglong[:], positions: cython.uint[:]) -> array:
    """values[p] for each p in positions (event numbers into the offsets, say)."""
    n: cython.Py_ssize_t = len(positions)
    taken = _zeros("Q", n)
    out: cython.ulonglong[:] = taken
    i: cython.Py_ssize_t
    for i in range(n):
        out[i] = values[positions[i]]
    return taken


def padded_keys(keys: list[bytes], width: cython.Py_ssize_t) -> tuple[bytes, bytes]:
    """The keys, each zero-padded to `width` bytes, in one bytes object; and their lengths,
    one byte each (each key is at most `width`, and `width` at most 255)."""
    n: cython.Py_ssize_t = len(keys)
    blob = bytearray(n * width)
    lengths = bytearray(n)
    out: cython.uchar[:] = blob
    lens: cython.uchar[:] = lengths
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    size: cython.Py_ssize_t
    key: bytes
    p: cython.p_const_uchar
    for i in range(n):
        key = keys[i]
        size = len(key)
        if size > width:
            raise ValueError(f"a stream key of {size} bytes is wider than {width}")
        p = key
        for j in range(size):
            out[i * width + j] = p[j]
        lens[i] = size
    return bytes(blob), bytes(lengths)
