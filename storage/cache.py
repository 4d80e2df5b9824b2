"""A bounded LRU cache of 64 KiB blocks of sealed segment data, with statistics.

Sealed data never changes, so a cached block never goes stale. The cache is shared by all
buckets and reader threads (one lock); its capacity is a byte bound, and ``statistics()`` is
what ``INFO CACHE`` reports.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

BLOCK_SIZE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    hits: int
    misses: int
    entries: int
    memory_bytes: int
    max_bytes: int
    evictions: int
    block_size_bytes: int = BLOCK_SIZE_BYTES


class BlockCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._blocks: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: tuple[int, int, int], load: Callable[[], bytes]) -> bytes:
        """The block for `key` (bucket, segment, block number), loaded on a miss."""
        with self._lock:
            block = self._blocks.get(key)
            if block is not None:
                self._blocks.move_to_end(key)
                self.hits += 1
                return block
            self.misses += 1
        block = load()
        if self.capacity_bytes < len(block):
            return block
        with self._lock:
            if key not in self._blocks:
                self._blocks[key] = block
                self._bytes += len(block)
                while self._bytes > self.capacity_bytes:
                    _, old = self._blocks.popitem(last=False)
                    self._bytes -= len(old)
                    self.evictions += 1
        return block

    def statistics(self) -> CacheStatistics:
        with self._lock:
            return CacheStatistics(
                hits=self.hits,
                misses=self.misses,
                entries=len(self._blocks),
                memory_bytes=self._bytes,
                max_bytes=self.capacity_bytes,
                evictions=self.evictions,
            )
