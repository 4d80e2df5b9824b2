"""The live feed's tail mode (``tail=N``): what a person can read of a feed, not every event.

Theory of operation. A person watching a live tail reads a few events a second; at thousands a
second, formatting, sending and parsing every one costs the node and the browser CPU and shows
nothing more. So a tail round (at most one per ``TAIL_INTERVAL_S``, the UI's redraw) takes at
most N events of what became visible since the cursor. When more than N did, each partition gets
a share of N in proportion to how many it had (the floor of its exact share, the units left over
going to the largest remainders, ties taken in turn from round to round so that no partition is
favoured), and that share is its *newest* events: its older ones are passed over. So a partition's
events in a round are a prefix passed over and a suffix shown, which is what keeps the cursor
exact: the round first says how many it passed over (``event: skipped``, data ``{"count": n}``)
with the cursor past them as its id, then sends the rest with the cursor past everything. Resuming
from either id misses nothing and repeats nothing of what is passed over or shown.

The events a round sends are ordered by timestamp, then partition and sequence, merged so that
each partition's stay in sequence order (timestamps may be given by clients). Without ``tail`` a
feed is complete (projections and API clients rely on every event); this module is not used.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from sierradb.storage import Event, Store
from sierradb.storage.record import raw_timestamp

from .events import JsonEvent, json_event, json_event_raw

# The largest N a tail takes (a round's events are one message, as a complete feed's batch).
MAX_TAIL_EVENTS = 1000
# A tail sends at most one round this often: the UI redraws its live tail at this pace, and
# rounds the browser would only throw away cost it CPU (half its CPU at 4 rounds a second).
TAIL_INTERVAL_S = 1.0


class Item(NamedTuple):
    """An event to send, sortable by when it was written: (timestamp, partition, sequence)."""

    timestamp: int
    partition: int
    sequence: int
    event: JsonEvent


def shares(counts: dict[int, int], limit: int, turn: int) -> dict[int, int]:
    """How many of its newest events each partition sends: all of them when the counts total
    at most `limit`, else `limit` split in proportion to the counts (largest remainders; ties
    go in partition order starting after `turn`, which the caller moves on every round)."""
    total = sum(counts.values())
    if total <= limit:
        return dict(counts)
    share = {p: limit * c // total for p, c in counts.items()}
    left = limit - sum(share.values())  # fewer than the partitions with a remainder
    if left:
        span = max(counts) + 1
        ranked = sorted(counts, key=lambda p: (-(limit * counts[p] % total), (p - turn) % span))
        for p in ranked[:left]:
            share[p] += 1
    return share


def read_newest(store: Store, ranges: dict[int, tuple[int, int]]) -> dict[int, list[Item]]:
    """In a read thread: for each partition its events with first <= sequence < end (all
    visible: `end` is at most its watermark), from their stored records."""
    found: dict[int, list[Item]] = {}
    for p, (first, end) in ranges.items():
        records, _ = store.read_partition_raw(p, first, end - 1, end - first)
        items = found[p] = []
        for r in records:
            event = json_event_raw(r)
            items.append(Item(raw_timestamp(r), p, event.partition_sequence, event))
    return found


def newest_relayed(events: list[Event], share: int) -> list[Item]:
    """The newest `share` of events a relay brought (a partition held elsewhere)."""
    return [Item(ev.timestamp_ms, ev.partition_id, ev.partition_sequence, json_event(ev))
            for ev in events[len(events) - share:]]  # fmt: skip


def merge(found: dict[int, list[Item]], max_bytes: int) -> list[Item]:
    """One round's events in timestamp order (each partition's in sequence order), without the
    oldest ones while their payloads and metadata exceed `max_bytes` (one always stays)."""
    merged = list(heapq.merge(*found.values()))
    size = sum(item.event.size for item in merged)
    drop = 0
    while size > max_bytes and drop < len(merged) - 1:
        size -= merged[drop].event.size
        drop += 1
    # Dropping a prefix of a merge drops a prefix of each partition's events: those stay a suffix.
    return merged[drop:]
