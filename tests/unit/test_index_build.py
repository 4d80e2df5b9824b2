"""The compiled index builders are the ones in use, and build what the hashes of hashing.py and
the plain Python run of the same source build: slot tables where every value is found, the same
bloom bits, the same flattened stream tables (checkpoints and sealed index files store them)."""

from __future__ import annotations

import os
import random
import zlib
from array import array
from types import ModuleType

import google_crc32c
import pytest
from compiled import is_compiled, source_module

from sierradb.storage import index_build
from sierradb.storage.hashing import TOMBSTONE, Bloom, bytes_hash64, id_hash64, probe

SOURCE = source_module("storage/index_build.py", "sierradb.storage.index_build_source")
BOTH = pytest.mark.parametrize("build", [index_build, SOURCE], ids=["compiled", "source"])


def test_the_installed_index_build_is_compiled() -> None:
    # The install (pip install, setup.py) builds it; uncompiled a seal costs seconds.
    assert is_compiled(index_build), (
        f"{index_build.__file__} is not an extension module: re-run the install"
    )
    assert not is_compiled(SOURCE)


@BOTH
def test_key_hashes_are_the_stored_stream_key_hash(build: ModuleType) -> None:
    rng = random.Random(7)
    keys = [b""] + [rng.randbytes(rng.randrange(1, 67)) for _ in range(500)]
    hashes = build.key_hashes(keys)
    assert hashes.typecode == "Q" and len(hashes) == len(keys)
    assert list(hashes) == [bytes_hash64(k) for k in keys]
    # CRC32C by the table (a CPU without the instruction) gives the same
    assert build.key_hashes(keys, cpu_crc=False) == hashes
    for k in keys[:20]:  # the two CRCs, each as its library computes it
        assert bytes_hash64(k) == (google_crc32c.value(k) << 32) | zlib.crc32(k)


def ids_table(build: ModuleType, ids: bytearray, bits: int) -> tuple[array, bytearray, tuple]:
    n = len(ids) // 16
    slots = array("i", [-1]) * (1 << bits)
    bloom = bytearray(1 << 10)
    result = build.index_ids(ids, 0, n // 2, slots, bits, bloom, len(bloom) * 8 - 1)
    later = build.index_ids(ids, n // 2, n, slots, bits, bloom, len(bloom) * 8 - 1)
    return slots, bloom, (result, later)


@BOTH
def test_index_ids_finds_every_id_and_sets_the_bloom_bits_of_each(build: ModuleType) -> None:
    ids = bytearray(os.urandom(16 * 600))
    bits = 11
    slots, bloom, ((used1, tmin1, tmax1), (used2, tmin2, tmax2)) = ids_table(build, ids, bits)
    assert used1 + used2 == 600
    expected_bloom = Bloom(len(bloom) * 8)
    times = []
    for n in range(600):
        eid = bytes(ids[16 * n : 16 * n + 16])
        assert n in probe(slots, bits, id_hash64(eid))
        expected_bloom.add(id_hash64(eid))
        times.append(int.from_bytes(eid[:6], "big"))
    assert bloom == expected_bloom.bits
    assert (min(tmin1, tmin2), max(tmax1, tmax2)) == (min(times), max(times))
    assert build.index_ids(ids, 600, 600, slots, bits, bloom, 8191)[0] == 0  # nothing to add


def test_compiled_and_source_build_the_same_id_tables() -> None:
    ids = bytearray(os.urandom(16 * 600))
    compiled = ids_table(index_build, ids, 11)
    source = ids_table(SOURCE, ids, 11)
    assert compiled == source
    old = compiled[0]
    for i in range(0, len(old), 5):  # some discarded ids: a rehash leaves them out
        if old[i] >= 0:
            old[i] = TOMBSTONE
    rehashed = index_build.rehash_ids(ids, old, 12)
    assert rehashed == SOURCE.rehash_ids(ids, old, 12)
    table, used = rehashed
    assert used == sum(v >= 0 for v in old) and len(table) == 1 << 12
    for n in (v for v in old if v >= 0):
        assert n in probe(table, 12, id_hash64(bytes(ids[16 * n : 16 * n + 16])))


@BOTH
def test_build_slots_and_bloom_add_hold_every_key(build: ModuleType) -> None:
    keys = [b"\x00\x07stream-%d" % i for i in range(3000)]
    hashes = build.key_hashes(keys)
    slots, bits = build.build_slots(hashes)
    assert len(slots) == 1 << bits and bits == (2 * len(keys)).bit_length()
    assert all(v in probe(slots, bits, hashes[v]) for v in range(len(keys)))
    bloom = Bloom(1 << 16)
    build.bloom_add(hashes, bloom.bits, bloom.mask)
    assert all(bloom.may_contain(bytes_hash64(k)) for k in keys)
    assert (slots, bits) == index_build.build_slots(hashes) == SOURCE.build_slots(hashes)
    assert build.build_slots(array("Q")) == (array("i", [-1]) * 16, 4)


@BOTH
def test_stream_tables_flatten_ints_tuples_and_arrays(build: ModuleType) -> None:
    entries: list = [7, (1, 2, 3), array("I", [4, 5, 6, 8, 9]), array("I"), 0]
    counts, numbers = build.stream_numbers(entries)
    assert list(counts) == [1, 3, 5, 0, 1]
    assert list(numbers) == [7, 1, 2, 3, 4, 5, 6, 8, 9, 0]
    table = build.stream_table(array("Q", [10, 0, 3, 5, 1 << 40]), counts)
    assert list(table) == [10, 0, 1, 0, 1, 3, 3, 4, 5, 5, 9, 0, 1 << 40, 9, 1]
    offsets = array("Q", [100 * i + (1 << 33) for i in range(10)])
    assert list(build.take(offsets, numbers)) == [offsets[n] for n in numbers]
    assert build.stream_numbers([]) == (array("I"), array("I"))
    # A checkpoint's copy of the list: arrays that grew since are cut below the event count.
    counts, numbers = build.stream_numbers(entries, 8)
    assert list(counts) == [1, 3, 3, 0, 1] and list(numbers) == [7, 1, 2, 3, 4, 5, 6, 0]


def test_the_builders_called_a_slice_at_a_time_build_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checkpoints and seals call the builders that walk every stream key on slices (each
    holds the GIL for its whole call); the pieces join into what one call builds."""
    from sierradb.storage import sliced_build

    monkeypatch.setattr(sliced_build, "GIL_SLICE", 7)
    rng = random.Random(3)
    keys = [rng.randbytes(rng.randrange(1, 67)) for _ in range(50)]
    entries: list = [rng.choice([5, (1, 9), array("I", [2, 3, 40])]) for _ in range(50)]
    assert sliced_build.key_hashes(keys) == index_build.key_hashes(keys)
    assert sliced_build.stream_numbers(entries, 10) == index_build.stream_numbers(entries, 10)
    assert sliced_build.padded_keys(keys, 66) == index_build.padded_keys(keys, 66)
    assert sliced_build.key_lengths_and_bytes(keys) == (bytes(map(len, keys)), b"".join(keys))
    assert sliced_build.key_hashes([]) == array("Q")


@BOTH
def test_padded_keys_and_their_lengths(build: ModuleType) -> None:
    keys = [b"\x00\x01ab", b"", b"\x00\x02" + b"x" * 64]
    blob, lens = build.padded_keys(keys, 66)
    assert blob == b"".join(k.ljust(66, b"\0") for k in keys)
    assert lens == bytes([4, 0, 66])
    with pytest.raises(ValueError, match="wider"):
        build.padded_keys([b"x" * 67], 66)
