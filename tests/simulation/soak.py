"""Run many simulation seeds (the CI runs a fixed thousand): `python soak.py --count 20000`,
or replay one: `python soak.py --seed 1234 --trace`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim import Violation, run_seed, shape_of  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", type=int, default=100_000)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--trace", action="store_true")
    options = parser.parse_args()
    seeds = (
        [options.seed]
        if options.seed is not None
        else range(options.start, options.start + options.count)
    )
    failures = 0
    started = time.monotonic()
    for i, seed in enumerate(seeds):
        try:
            sim = run_seed(seed, **shape_of(seed))
            if options.trace:
                print("\n".join(sim.trace))
        except (Violation, AssertionError) as e:
            failures += 1
            print(f"FAILED seed {seed} {shape_of(seed)}: {e}", flush=True)
        if i and i % 100 == 0:
            print(f"{i} seeds, {failures} failed, {time.monotonic() - started:.0f} s", flush=True)
    print(f"done: {len(seeds)} seeds, {failures} failed, {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
