#!/usr/bin/env python3
"""Summarise a server_bench.sh output dir: medians per workload, ratios to Redis and PostgreSQL."""

import csv
import glob
import os
import re
import statistics
import sys

out = sys.argv[1]
rows: dict[str, list[tuple[float, float, float]]] = {}
PG_ROW = r"(\S+)-c(\d+)-run\d+ .*tps=([\d.]+).*p50_ms=([\d.]+) p99_ms=([\d.]+)"


def add(key: str, rps: float, p50: float, p99: float) -> None:
    rows.setdefault(key, []).append((rps, p50, p99))


with open(os.path.join(out, "sierradb.csv")) as f:
    for line in f:
        if line.startswith(("sublatency", "fsync")):
            continue
        parts = next(csv.reader([line]))
        tag, _bench = parts[0], parts[1:3]
        rps, p50, p99 = float(parts[-7]), float(parts[-4]), float(parts[-2])
        add(f"sierradb {tag} {parts[1]}", rps, p50, p99)
for path in glob.glob(os.path.join(out, "redis-*.csv")):
    with open(path) as f:
        for line in f:
            parts = next(csv.reader([line]))
            rps, p50, p99 = float(parts[-7]), float(parts[-4]), float(parts[-2])
            add(f"redis {parts[0]} {parts[2]}", rps, p50, p99)
for path in glob.glob(os.path.join(out, "pg-*", "results.txt")):
    with open(path) as f:
        for line in f:
            m = re.match(PG_ROW, line)
            if m:
                add(f"postgres {m.group(1)} c{m.group(2)}", *map(float, m.group(3, 4, 5)))


def med(key: str) -> tuple[float, float, float] | None:
    vals = rows.get(key)
    if not vals:
        return None
    return tuple(statistics.median(v[i] for v in vals) for i in range(3))  # type: ignore[return-value]


print(f"{'workload':45} {'median/s':>10} {'p50 ms':>8} {'p99 ms':>8} runs")
for key in sorted(rows):
    rps, p50, p99 = med(key)  # type: ignore[misc]
    print(f"{key:45} {rps:10.0f} {p50:8.3f} {p99:8.3f} {len(rows[key])}")
with open(os.path.join(out, "sierradb.csv")) as f:
    for line in f:
        if line.startswith(("sublatency", "fsync")):
            print(line.strip())


def ratio(a: str, b: str) -> str:
    x, y = med(a), med(b)
    return f"{x[0] / y[0]:.2f}x" if x and y else "n/a"


for p in ("P1", "P16"):
    print(f"EAPPEND {p} vs Redis XADD always: {ratio(f'sierradb eappend {p}', f'redis xadd {p}')}")
print(f"ESCAN 100 vs Redis XRANGE 100 (P1): {ratio('sierradb escan100 P1', 'redis xrange100 P1')}")
for c in ("c8", "c32"):
    vs_pg = ratio("sierradb eappend P1", f"postgres maxver {c}")
    print(f"EAPPEND P1 vs PostgreSQL append {c}: {vs_pg}")
