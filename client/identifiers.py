"""Identifiers a client derives itself (protocol reference §2), as `uuid.UUID` values.

The node has the same derivations on raw bytes (`sierradb.node.identifiers`); the client does
not import server code, so they are written again here and a unit test checks both agree.

* Partition key of a stream: UUIDv5 over the stream id's UTF-8 bytes in `PARTITION_KEY_NAMESPACE`.
* Partition hash: bits 61..46 of a UUID read as a big-endian u128 (not a hash function), so the
  partition of a key is `partition_hash(key) % partition_count`.
* Event id: 48-bit Unix milliseconds, 12 random bits, the nibble 0x7, the RFC variant, the 16-bit
  partition hash of the partition key, 46 random bits. The client generates every event id so
  that a retried append carries the same id and the server recognises it (idempotency).
"""

from __future__ import annotations

import functools
import os
import random
import time
import uuid

PARTITION_KEY_NAMESPACE = uuid.UUID("219bd637-e279-53e9-9e2b-eabe5d9120cc")
PARTITION_KEY_CACHE_ENTRIES = 10_000

_MASK_46 = (1 << 46) - 1
_MASK_48 = (1 << 48) - 1
_EVENT_ID_CONSTANT = (0x7 << 64) | (0b10 << 62)

# Event ids need uniqueness, not secrecy: a generator seeded with 256 bits from the OS is as
# unique as os.urandom without a system call per id (the node does the same). Reseeded in a
# forked child, so parent and child never repeat each other.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


@functools.lru_cache(maxsize=PARTITION_KEY_CACHE_ENTRIES)
def partition_key_for_stream(stream_id: str) -> uuid.UUID:
    """The partition key a stream gets when none is given: UUIDv5 over its id."""
    return uuid.uuid5(PARTITION_KEY_NAMESPACE, stream_id)


def partition_hash(key: uuid.UUID) -> int:
    return (key.int >> 46) & 0xFFFF


def partition_id(key: uuid.UUID, partition_count: int) -> int:
    """The partition a partition key (or an event id, which embeds its hash) belongs to."""
    return partition_hash(key) % partition_count


def new_event_id(partition_key: uuid.UUID) -> uuid.UUID:
    """A fresh event id that embeds the partition hash of `partition_key`."""
    return uuid.UUID(int=_new_event_id_int(partition_key))


def new_event_id_text(partition_key: uuid.UUID) -> str:
    """`str(new_event_id(partition_key))` without the UUID object (every append makes one)."""
    h = f"{_new_event_id_int(partition_key):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _new_event_id_int(partition_key: uuid.UUID) -> int:
    now_ms = time.time_ns() // 1_000_000
    random58 = _random.getrandbits(58)
    value = (
        ((now_ms & _MASK_48) << 80)
        | ((random58 >> 46) << 68)  # 12 random bits
        | _EVENT_ID_CONSTANT
        | (partition_hash(partition_key) << 46)
        | (random58 & _MASK_46)
    )
    return value
