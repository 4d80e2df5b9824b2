"""The seeded simulation in CI: a fixed list of seeds (the same every run, so a failure is
reproducible by its seed) across cluster shapes and fault mixes. `soak.py` runs many more.

A failure names its seed: `python tests/simulation/soak.py --seed N` replays it.
"""

from __future__ import annotations

import pytest
from sim import run_seed, shape_of

SEEDS = 1000
CHUNK = 50


@pytest.mark.slow
@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_seeds(first: int) -> None:
    for seed in range(first, first + CHUNK):
        run_seed(seed, **shape_of(seed))
