"""Per-partition state: the one source of truth for positions, plus replication metadata.

Theory of operation. For each partition the engine keeps, in memory:

- ``next_sequence``: the next sequence to assign, counting entries that are queued or being
  written. ``durable_next`` counts only entries that are on disk. ``watermark`` (the first
  unconfirmed sequence, set by the replication layer) bounds every read; it never exceeds
  ``durable_next``.
- ``streams``: a bounded LRU of stream tips, stream id -> (next version, partition key, sequence
  of the stream's newest entry), replaced whole on each change: a tuple of ints and bytes is
  one object the garbage collector stops tracking, where a list stays tracked, and a full
  collection walked every one of the 100,000 cached tips (tens of milliseconds, the event loop
  stopped). An entry is authoritative while cached; an evicted (or never
  cached) stream is looked up in the indexes. Tips of streams with entries that are not durable
  yet are never evicted, because the indexes do not know those entries.
- ``pending_ids``: event id -> sequence for entries sequenced but not yet durable, so idempotency
  lookups see them.
- ``discards``: every discard (replace_tail) as (from sequence, segment id, marker offset). An
  entry with sequence >= from that lies *before* the marker is gone; entries written after the
  marker are the replacements. Sealed index files predate later discards, so lookups in sealed
  segments consult this list; the active index applies discards directly.
- ``pending_discards``: the from-sequences of discards that are queued but not yet written, in
  queue order; until the first is written, indexed entries at or above the lowest are treated as
  gone (``pending_discard``).

Every path that changes the log (leader append, replicated append, discard, recovery, a failed
write) updates this state, and nothing else decides positions. The promise, watermark and
discards persist in the bucket's ``replication.json`` (temp, fsync, rename, fsync dir).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Promise:
    """The highest term this replica promised, to which candidate (and its incarnation)."""

    term: int = 0
    candidate: int = -1
    incarnation: int = 0


# Rough memory of one cached stream tip (OrderedDict entry, key, list, ints), for statistics.
STREAM_TIP_BYTES = 200


class PartitionState:
    __slots__ = (
        "partition_id",
        "next_sequence",
        "durable_next",
        "watermark",
        "last_term",
        "durable_last_term",
        "streams",
        "stream_cache_limit",
        "pending_ids",
        "pending_discards",
        "promise",
        "discards",
        "cache_hits",
        "cache_misses",
        "cache_evictions",
    )

    def __init__(self, partition_id: int, stream_cache_limit: int) -> None:
        self.partition_id = partition_id
        self.next_sequence = 0
        self.durable_next = 0
        self.watermark = 0
        self.last_term = 0
        self.durable_last_term = 0
        self.streams: OrderedDict[bytes, tuple[int, bytes, int]] = OrderedDict()
        self.stream_cache_limit = max(1, stream_cache_limit)
        self.pending_ids: dict[bytes, int] = {}
        self.pending_discards: list[int] = []
        self.promise = Promise()
        self.discards: list[tuple[int, int, int]] = []
        self.cache_hits = 0
        self.cache_misses = 0
        self.cache_evictions = 0

    def remember_stream(
        self, stream_id: bytes, next_version: int, key: bytes, last_seq: int
    ) -> None:
        streams = self.streams
        known = stream_id in streams
        streams[stream_id] = (next_version, key, last_seq)
        if known:
            streams.move_to_end(stream_id)
        elif len(streams) > self.stream_cache_limit:
            self._evict()

    def _evict(self) -> None:
        # Oldest first; a stream whose newest entry is not durable must stay. If the oldest few
        # are all pending the cache overshoots for a moment (pending entries are bounded).
        durable_next = self.durable_next
        for i, (sid, tip) in enumerate(self.streams.items()):
            if tip[2] < durable_next:
                del self.streams[sid]
                self.cache_evictions += 1
                return
            if i >= 16:
                return

    @property
    def pending_discard(self) -> int | None:
        """Indexed entries at or above this are gone once the queued discards are written."""
        return min(self.pending_discards) if self.pending_discards else None

    def discarded_in_sealed(self, sequence: int, segment_id: int) -> bool:
        """Whether the entry `sequence` stored in sealed segment `segment_id` was discarded."""
        pending = self.pending_discard
        if pending is not None and sequence >= pending:
            return True
        for from_seq, seg, _off in self.discards:
            if seg > segment_id and sequence >= from_seq:
                return True
        return False

    def sealed_limit(self, segment_id: int) -> int | None:
        """Sequences at or above this are gone from sealed segment `segment_id` (None: none)."""
        limit = self.pending_discard
        for from_seq, seg, _off in self.discards:
            if seg > segment_id and (limit is None or from_seq < limit):
                limit = from_seq
        return limit

    def to_json(self) -> dict:
        return {
            "promise": [self.promise.term, self.promise.candidate, self.promise.incarnation],
            "watermark": self.watermark,
            "discards": [list(d) for d in self.discards],
        }
