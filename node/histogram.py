"""A fixed-bucket histogram cheap enough for the request path (one bisect and two adds).

Components keep their own histograms and counters and report them in ``statistics()``;
``/metrics`` turns those snapshots into Prometheus families at scrape time, so the hot path never
touches the exposition library or a lock (increments happen on the event loop, or in one writer
thread per histogram).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

# Upper bounds (seconds) for latencies: 50 µs .. 10 s, roughly x2.5 apart.
LATENCY_BUCKETS_S = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
)  # fmt: skip
# Upper bounds for counts (events or transactions per batch): powers of two up to 4096.
SIZE_BUCKETS = tuple(float(1 << i) for i in range(13))


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]  # upper bounds; an implicit +Inf bucket follows
    counts: tuple[int, ...]  # per bucket (not cumulative), len(bounds) + 1
    total: float  # sum of the observed values

    @property
    def count(self) -> int:
        return sum(self.counts)


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        assert list(bounds) == sorted(bounds), bounds
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.total)
