"""Sealed segments: immutable data plus three index files written once, read through mmap.

At rollover the active index (``active_index.py``) is written out as::

    index.eidx       event id -> offset: slot table, ids, offsets, bloom filter, id time range
    partition.pidx   partition -> first sequence, count, offsets (surviving entries, in order)
    stream.sidx      stream -> partition key, first version, count, offsets, plus a slot table
                     and a bloom filter over stream keys

each as a section file (``sectionfile.py``) with one CRC32C, written temp + fsync + rename +
fsync(dir). A sealed segment costs a few small objects in memory whatever its size: the index
files are mapped, checked (CRC) on first use, and the data file is read through the block cache.
A missing or damaged index file is rebuilt from ``data.evts`` (``rebuild``).
"""

from __future__ import annotations

import os
from array import array
from typing import TYPE_CHECKING

from .active_index import ActiveIndex, event_time_ms
from .hashing import Bloom, bytes_hash64, id_hash64, probe
from .index_build import build_slots, stream_table, take
from .sectionfile import BadSectionFile, SectionFile, section_chunks
from .sliced_build import key_hashes, padded_keys, stream_numbers

if TYPE_CHECKING:
    from .disk import Disk, DiskFile

EIDX_MAGIC = b"SDBEIDX1"
PIDX_MAGIC = b"SDBPIDX1"
SIDX_MAGIC = b"SDBSIDX1"
EIDX, PIDX, SIDX = "index.eidx", "partition.pidx", "stream.sidx"
STREAM_KEY_WIDTH = 66  # 2-byte partition + up to 64 bytes of stream id


def write_index_files(disk: Disk, seg_dir: str, idx: ActiveIndex) -> None:
    idx.index_ids()  # the caller holds off concurrent lookups (or owns idx alone)
    disk.write_atomic(os.path.join(seg_dir, EIDX), _eidx_chunks(idx))
    disk.write_atomic(os.path.join(seg_dir, PIDX), _pidx_chunks(idx))
    disk.write_atomic(os.path.join(seg_dir, SIDX), _sidx_chunks(idx))


def _eidx_chunks(idx: ActiveIndex) -> list[bytes]:
    meta = array(
        "q",
        [
            idx.event_count,
            idx.id_slots.bits,
            idx.id_bloom.mask + 1,
            idx.min_time_ms,
            idx.max_time_ms,
            idx.end_offset,  # the data the indexes describe: data.evts must end exactly here
        ],
    )
    return section_chunks(
        EIDX_MAGIC,
        {
            "meta": meta.tobytes(),
            "slots": idx.id_slots.slots.tobytes(),
            "ids": bytes(idx.event_ids),
            "offsets": idx.offsets.tobytes(),
            "bloom": bytes(idx.id_bloom.bits),
        },
    )


def _pidx_chunks(idx: ActiveIndex) -> list[bytes]:
    table = array("Q")
    values = array("Q")
    for p in sorted(idx.part_events):
        events = idx.part_events[p]
        if not events:
            continue
        table.extend((p, idx.part_base[p], len(values), len(events)))
        values.extend(take(idx.offsets, events))
    return section_chunks(PIDX_MAGIC, {"table": table.tobytes(), "offsets": values.tobytes()})


def _sidx_chunks(idx: ActiveIndex) -> list[bytes]:
    keys = idx.stream_keys
    hashes = key_hashes(keys)
    slots, bits = build_slots(hashes)
    counts, numbers = stream_numbers(idx.stream_events)
    idx.index_streams()  # the same keys' bloom, kept up to date for the files
    bloom = idx.stream_bloom
    padded, key_lens = padded_keys(keys, STREAM_KEY_WIDTH)
    meta = array("q", [len(keys), bits, bloom.mask + 1])
    return section_chunks(
        SIDX_MAGIC,
        {
            "meta": meta.tobytes(),
            "slots": slots.tobytes(),
            "keys": padded,
            "keylens": key_lens,
            "pkeys": bytes(idx.stream_pkeys),
            "table": stream_table(idx.stream_base, counts).tobytes(),
            "offsets": take(idx.offsets, numbers).tobytes(),
            "bloom": bytes(bloom.bits),
        },
    )


class SealedIndexes:
    """Lookups over one sealed segment's three mapped, verified index files."""

    __slots__ = (
        "e_slots",
        "e_bits",
        "e_ids",
        "e_offsets",
        "e_bloom",
        "min_time_ms",
        "max_time_ms",
        "data_end",
        "parts",
        "p_offsets",
        "s_slots",
        "s_bits",
        "s_keys",
        "s_keylens",
        "s_pkeys",
        "s_table",
        "s_offsets",
        "s_bloom",
        "_files",
    )

    def __init__(self, disk: Disk, seg_dir: str, verify: bool = True) -> None:
        files: list[DiskFile] = []
        try:
            e = self._open(disk, os.path.join(seg_dir, EIDX), EIDX_MAGIC, files, verify)
            p = self._open(disk, os.path.join(seg_dir, PIDX), PIDX_MAGIC, files, verify)
            s = self._open(disk, os.path.join(seg_dir, SIDX), SIDX_MAGIC, files, verify)
        except BaseException:
            for f in files:
                f.close()
            raise
        self._files = files
        meta = e["meta"].cast("q")
        _count, self.e_bits, e_bloom_bits, self.min_time_ms, self.max_time_ms, self.data_end = meta
        self.e_slots = e["slots"].cast("i")
        self.e_ids = e["ids"]
        self.e_offsets = e["offsets"].cast("Q")
        self.e_bloom = Bloom(e_bloom_bits, e["bloom"])
        table = p["table"].cast("Q")
        # Small: at most one row per partition of the bucket.
        self.parts = {
            table[i]: (table[i + 1], table[i + 2], table[i + 3]) for i in range(0, len(table), 4)
        }
        self.p_offsets = p["offsets"].cast("Q")
        smeta = s["meta"].cast("q")
        _n, self.s_bits, s_bloom_bits = smeta
        self.s_slots = s["slots"].cast("i")
        self.s_keys = s["keys"]
        self.s_keylens = s["keylens"]
        self.s_pkeys = s["pkeys"]
        self.s_table = s["table"].cast("Q")
        self.s_offsets = s["offsets"].cast("Q")
        self.s_bloom = Bloom(s_bloom_bits, s["bloom"])

    @staticmethod
    def _open(
        disk: Disk, path: str, magic: bytes, files: list[DiskFile], verify: bool
    ) -> SectionFile:
        f = disk.open(path)
        files.append(f)
        sf = SectionFile(f.map(), magic)
        if verify:
            sf.verify()
            # The check read every page; lookups touch only a few, so do not keep them all
            # resident (memory must not grow with the number of segments used).
            f.drop_resident()
        return sf

    def close(self) -> None:
        for f in self._files:
            f.close()

    # -- lookups
    def find_event(self, event_id: bytes) -> int | None:
        """Offset of the event with this id, or None."""
        t = event_time_ms(event_id)
        if t < self.min_time_ms or t > self.max_time_ms:
            return None
        h = id_hash64(event_id)
        if not self.e_bloom.may_contain(h):
            return None
        ids = self.e_ids
        for n in probe(self.e_slots, self.e_bits, h):
            if ids[n * 16 : n * 16 + 16] == event_id:
                return self.e_offsets[n]
        return None

    def partition_range(self, partition_id: int) -> tuple[int, int]:
        row = self.parts.get(partition_id)
        if row is None:
            return (0, 0)
        return (row[0], row[2])

    def partition_offsets(self, partition_id: int, start: int, stop: int) -> list[int]:
        row = self.parts.get(partition_id)
        if row is None:
            return []
        base = row[1]
        stop = min(stop, row[2])
        return list(self.p_offsets[base + start : base + stop])

    def stream_range(self, sid_key: bytes) -> tuple[int, int, int, bytes] | None:
        """(ref, first version, count, partition key) or None."""
        h = bytes_hash64(sid_key)
        if not self.s_bloom.may_contain(h):
            return None
        width = STREAM_KEY_WIDTH
        keys = self.s_keys
        n = len(sid_key)
        for ref in probe(self.s_slots, self.s_bits, h):
            if self.s_keylens[ref] == n and keys[ref * width : ref * width + n] == sid_key:
                t = self.s_table
                return (
                    ref,
                    t[ref * 3],
                    t[ref * 3 + 2],
                    bytes(self.s_pkeys[ref * 16 : ref * 16 + 16]),
                )
        return None

    def stream_offsets(self, ref: int, start: int, stop: int) -> list[int]:
        t = self.s_table
        base, count = t[ref * 3 + 1], t[ref * 3 + 2]
        stop = min(stop, count)
        return list(self.s_offsets[base + start : base + stop])


class PendingIndexes:
    """A sealed segment's lookups until its index files are written (``group_commit``): its
    last active index, which nothing changes any more (its ids were indexed at the rollover),
    answering as the files written from it will."""

    __slots__ = ("index",)

    def __init__(self, index: ActiveIndex) -> None:
        assert index.ids_indexed == index.event_count, "lookups must not index ids any more"
        self.index = index

    def close(self) -> None:
        pass

    def find_event(self, event_id: bytes) -> int | None:
        """Offset of the event with this id, or None."""
        n = self.index.find_event(event_id)
        return None if n is None else self.index.offsets[n]

    def partition_range(self, partition_id: int) -> tuple[int, int]:
        return self.index.partition_range(partition_id)

    def partition_offsets(self, partition_id: int, start: int, stop: int) -> list[int]:
        return self.index.partition_offsets(partition_id, start, stop)

    def stream_range(self, sid_key: bytes) -> tuple[int, int, int, bytes] | None:
        return self.index.stream_range(sid_key)

    def stream_offsets(self, ref: int, start: int, stop: int) -> list[int]:
        return self.index.stream_offsets(ref, start, stop)


def indexed_data_end(disk: Disk, seg_dir: str, verify: bool) -> int | None:
    """The data length the index files describe, or None if they are missing or damaged
    (with `verify`, also if their CRC does not match)."""
    try:
        indexes = SealedIndexes(disk, seg_dir, verify)
    except (OSError, BadSectionFile, ValueError, TypeError):
        return None
    indexes.close()
    return int(indexes.data_end)


def index_files_ok(disk: Disk, seg_dir: str, verify: bool) -> bool:
    return indexed_data_end(disk, seg_dir, verify) is not None
