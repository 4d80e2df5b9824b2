"""Compact hash structures for the indexes: open-addressing slot tables and bloom filters.

Both live in flat ``array``/``bytearray`` buffers rather than dicts, so that an index of a
million events is a handful of objects (the garbage collector never walks them), can be written
to a file as-is at sealing or checkpoint time, and can be used straight from an ``mmap`` after.

Hashes must be identical across processes (they are stored), so Python's randomised ``hash()``
is not used: event ids are mixed from their own bytes (they are random or time-and-random), stream
keys go through two CRCs.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Iterator

import google_crc32c

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
# The bloom filters use k=3 probes; ActiveIndex.add_unit inlines the same arithmetic.
EMPTY = -1
TOMBSTONE = -2


def id_hash64(key16: bytes) -> int:
    x = int.from_bytes(key16, "little")
    return (((x >> 64) ^ x) * _GOLDEN) & _M64


def bytes_hash64(key: bytes) -> int:
    return (google_crc32c.value(key) << 32) | zlib.crc32(key)


class SlotTable:
    """Open addressing (linear probing) from a 64-bit hash to non-negative int values.

    The table stores only values; callers confirm a candidate by comparing the real key, so
    collisions cost a probe, never a wrong answer. Load factor stays at or below 1/2. Values are
    inserted, and the table grown, in bulk by ``index_build`` (``ActiveIndex.index_ids``).
    """

    __slots__ = ("slots", "bits", "used")

    def __init__(self, bits: int = 10, slots: array | None = None, used: int = 0) -> None:
        self.bits = bits
        self.slots = slots if slots is not None else array("i", [EMPTY]) * (1 << bits)
        self.used = used

    def remove(self, h: int, value: int) -> None:
        mask = len(self.slots) - 1
        i = (h >> (64 - self.bits)) & mask
        slots = self.slots
        while slots[i] != EMPTY:
            if slots[i] == value:
                slots[i] = TOMBSTONE
                return
            i = (i + 1) & mask

    def candidates(self, h: int) -> Iterator[int]:
        return probe(self.slots, self.bits, h)


def probe(slots: array | memoryview, bits: int, h: int) -> Iterator[int]:
    """Values whose slot chain `h` passes through, for a live table or one read from a file."""
    mask = len(slots) - 1
    i = (h >> (64 - bits)) & mask
    while True:
        v = slots[i]
        if v == EMPTY:
            return
        if v >= 0:
            yield v
        i = (i + 1) & mask


class Bloom:
    """A bloom filter with k=3 probes by double hashing over a power-of-two bit array."""

    __slots__ = ("bits", "mask")

    def __init__(self, size_bits: int, bits: bytearray | memoryview | None = None) -> None:
        assert size_bits >= 64 and size_bits & (size_bits - 1) == 0, "size must be a power of 2"
        self.mask = size_bits - 1
        self.bits = bits if bits is not None else bytearray(size_bits >> 3)

    @staticmethod
    def size_for(expected_items: int, bits_per_item: int = 16) -> int:
        return max(64, 1 << (expected_items * bits_per_item - 1).bit_length())

    def add(self, h: int) -> None:
        a = h & 0xFFFFFFFF
        b = (h >> 32) | 1
        bits = self.bits
        mask = self.mask
        for _ in range(3):
            p = a & mask
            bits[p >> 3] |= 1 << (p & 7)
            a += b

    def may_contain(self, h: int) -> bool:
        a = h & 0xFFFFFFFF
        b = (h >> 32) | 1
        bits = self.bits
        mask = self.mask
        for _ in range(3):
            p = a & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
            a += b
        return True
