"""The compiled index builders (``index_build``) that walk every stream key of a segment,
called a slice at a time.

A compiled builder holds the GIL for its whole call: no bytecode runs, so no other thread gets a
turn. Over a near-full segment (up to a million stream keys) one call took 50-90 ms, and the
checkpointer thread, which builds checkpoints and sealed index files beside the event loop,
stopped the loop that long. Called on slices of GIL_SLICE, each call takes a few milliseconds
and the loop runs in between.
"""

from __future__ import annotations

from array import array

from . import index_build

GIL_SLICE = 65536  # keys or streams per call


def key_hashes(keys: list[bytes]) -> array:
    """``index_build.key_hashes``, a slice at a time (see GIL_SLICE)."""
    hashes = array("Q")
    for i in range(0, len(keys), GIL_SLICE):
        hashes.extend(index_build.key_hashes(keys[i : i + GIL_SLICE]))
    return hashes


def stream_numbers(
    entries: list[int | tuple[int, ...] | array], below: int = 1 << 32
) -> tuple[array, array]:
    """``index_build.stream_numbers``, a slice at a time (see GIL_SLICE)."""
    counts, numbers = array("I"), array("I")
    for i in range(0, len(entries), GIL_SLICE):
        c, n = index_build.stream_numbers(entries[i : i + GIL_SLICE], below)
        counts.extend(c)
        numbers.extend(n)
    return counts, numbers


def padded_keys(keys: list[bytes], width: int) -> tuple[bytes, bytes]:
    """``index_build.padded_keys``, a slice at a time (see GIL_SLICE)."""
    parts = [index_build.padded_keys(keys[i : i + GIL_SLICE], width)
             for i in range(0, len(keys), GIL_SLICE)]  # fmt: skip
    return b"".join(p[0] for p in parts), b"".join(p[1] for p in parts)


def key_lengths_and_bytes(keys: list[bytes]) -> tuple[bytes, bytes]:
    """Each key's length (one byte) and the keys joined, a slice at a time (see GIL_SLICE)."""
    lens, blob = [], []
    for i in range(0, len(keys), GIL_SLICE):
        part = keys[i : i + GIL_SLICE]
        lens.append(bytes(map(len, part)))
        blob.append(b"".join(part))
    return b"".join(lens), b"".join(blob)
