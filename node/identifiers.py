"""Identifiers of the SierraDB protocol, bit-exact with reference §2.

Every identifier is handled as 16 raw big-endian bytes; text forms exist only at the edges
(`parse_uuid` for requests, `format_uuid` for replies). No `uuid.UUID` objects on the hot path.

* Partition key of a stream: UUIDv5 over the stream id's bytes in `PARTITION_KEY_NAMESPACE`.
* Partition hash: bits 61..46 of a UUID read as a big-endian u128 (not a hash function).
* Event id: 48-bit Unix milliseconds, 12 random bits, the nibble 0x7 (in the low nibble of
  byte 7: the reference's quirk, kept), the RFC variant 0b10, the 16-bit partition hash of the
  partition key, 46 random bits. Because the hash is embedded, `EGET <id>` finds the partition
  from the id alone.
* Transaction id: UUIDv4 whose byte 8 has its top bit set for a single-event write and cleared
  for a multi-event one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import struct
import time
from binascii import unhexlify

PARTITION_KEY_NAMESPACE: bytes = bytes.fromhex("219bd637e27953e99e2beabe5d9120cc")
"""uuid5(NAMESPACE_DNS, "sierradb.tqwewe.com"), the namespace of derived partition keys."""

UUID_SIZE_BYTES = 16
PARTITION_HASH_BITS = 16
PARTITION_KEY_CACHE_ENTRIES = 100_000
"""Bound of the stream id -> partition key cache: derivation runs on every append and scan."""

# Ids need uniqueness, not secrecy: a generator seeded with 256 bits from the OS is as unique
# as os.urandom and costs a tenth of its system call. Reseeded in a forked child.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))

_MASK_48 = (1 << 48) - 1
_MASK_46 = (1 << 46) - 1
_EVENT_ID_CONSTANT = (0x7 << 64) | (0b10 << 62)

# Rust's `char::is_whitespace` (the reference trims UUID tokens with `str::trim`). Python's
# `str.strip()` would also drop U+001C..U+001F, which Rust keeps.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# A first or last byte in this set may be (part of) whitespace to trim.
_TRIM_TRIGGERS = frozenset(b"\t\n\x0b\x0c\r ") | frozenset(range(0x80, 0x100))
_HYPHEN = 0x2D
_URN_PREFIX = b"urn:uuid:"


@functools.lru_cache(maxsize=PARTITION_KEY_CACHE_ENTRIES)
def partition_key_for_stream(stream_id: bytes) -> bytes:
    """UUIDv5(PARTITION_KEY_NAMESPACE, stream_id) as 16 raw bytes (reference §2.2)."""
    digest = bytearray(hashlib.sha1(PARTITION_KEY_NAMESPACE + stream_id).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return bytes(digest)


def partition_hash(key16: bytes) -> int:
    """Bits 61..46 of the UUID: `(uuid.int >> 46) & 0xFFFF` (reference §2.3)."""
    assert len(key16) == UUID_SIZE_BYTES, key16
    # Bits 63..40 are bytes 8..10; the hash is their top 18 bits minus the top 2.
    return (int.from_bytes(key16[8:11], "big") >> 6) & 0xFFFF


def partition_id(key16: bytes, partition_count: int) -> int:
    """The partition a key (or an event id, which embeds the same hash) belongs to."""
    assert partition_count > 0, partition_count
    return partition_hash(key16) % partition_count


def new_event_id(partition_hash: int, now_ms: int | None = None) -> bytes:
    """A fresh event id embedding `partition_hash`, layout of reference §2.4."""
    assert 0 <= partition_hash <= 0xFFFF, partition_hash
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    random64 = _random.getrandbits(64)
    value = (
        ((now_ms & _MASK_48) << 80)
        | ((random64 >> 52) << 68)  # top 12 random bits
        | _EVENT_ID_CONSTANT
        | (partition_hash << 46)
        | (random64 & _MASK_46)
    )
    return value.to_bytes(16, "big")


def event_id_time_ms(eid16: bytes) -> int:
    """The Unix milliseconds in the top 48 bits of a generated event id."""
    assert len(eid16) == UUID_SIZE_BYTES, eid16
    return int.from_bytes(eid16[:6], "big")


# A transaction id as a 128-bit big-endian integer: byte 6's high nibble (bits 79..76) is the
# version 4, byte 8's top two bits (63..62) are 10 for a single-event write, 00 otherwise.
_TXN_KEEP = ~((0xF << 76) | (0b11 << 62)) & ((1 << 128) - 1)
_TXN_SINGLE = (0x4 << 76) | (0b10 << 62)
_TXN_MULTI = 0x4 << 76


def new_transaction_id(single: bool) -> bytes:
    """UUIDv4 with byte 8's top bit set for a single-event write, cleared otherwise (§2.5)."""
    bits = (_random.getrandbits(128) & _TXN_KEEP) | (_TXN_SINGLE if single else _TXN_MULTI)
    return bits.to_bytes(16, "big")


def parse_uuid(text: bytes) -> bytes:
    """Parse a UUID as Rust's `Uuid::parse_str` does, after trimming whitespace.

    Accepted: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, 32 hex digits, the hyphenated form in
    `{braces}` or after a lowercase `urn:uuid:`; hex digits in any case. Raises ValueError.
    """
    if not text or text[0] in _TRIM_TRIGGERS or text[-1] in _TRIM_TRIGGERS:
        # UnicodeDecodeError is a ValueError.
        text = text.decode("utf-8").strip(_RUST_WHITESPACE).encode("utf-8")
    size = len(text)
    if size == 36:
        body = text
    elif size == 32:
        return unhexlify(text)  # strict: hex digits only; binascii.Error is a ValueError
    elif size == 38 and text[0] == 0x7B and text[37] == 0x7D:  # {...}
        body = text[1:37]
    elif size == 45 and text.startswith(_URN_PREFIX):
        body = text[9:]
    else:
        raise ValueError(f"invalid UUID length {size}")
    if body[8] == _HYPHEN and body[13] == _HYPHEN and body[18] == _HYPHEN and body[23] == _HYPHEN:
        digits = body.replace(b"-", b"")
        if len(digits) == 32:
            return unhexlify(digits)
    raise ValueError("invalid hyphenated UUID")


def format_uuid(b16: bytes) -> str:
    """Lowercase hyphenated form, as every reply carries ids."""
    assert len(b16) == UUID_SIZE_BYTES, b16
    h = b16.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# An encoder formatting several ids (event id, partition key, transaction id: 48 bytes, one hex
# string of 96 digits) cuts each UUID's text groups (8-4-4-4-12 digits) in one call: the first
# two ids' ten groups, then one id's five at an offset (the transaction id, 64).
two_uuid_groups = struct.Struct("8s4s4s4s12s" * 2).unpack_from
uuid_groups = struct.Struct("8s4s4s4s12s").unpack_from
