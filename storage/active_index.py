"""In-memory index of a bucket's active segment, in compact arrays.

Theory of operation. Every durable event of the active segment gets an *event number* n (its
position in the per-event arrays). Partitions and streams keep arrays of event numbers in
sequence / version order, holding only *surviving* entries: a discard (replace_tail) cuts the
tail of a partition's array and of the arrays of the streams whose events it drops, and
tombstones their ids, so lookups never see discarded entries while the per-event arrays stay
append-only. Because the surviving entries of one partition (or stream) are gapless and in
order, the entry for sequence s sits at index ``s - base``.

Event ids are indexed lazily: writing an event only appends its id to ``event_ids``; the id slot
table, the id bloom filter and the time range cover the first ``ids_indexed`` events and are
brought up to date in one pass (``index_ids``) by the first lookup, discard, checkpoint or seal
that needs them. Most appends carry no client-supplied id, so most batches are never looked up
by id before the segment is sealed, and the per-event work of a flush stays small. A lookup
searches the ids not yet indexed directly (one ``bytearray.find`` over at most
``SCAN_UNINDEXED_IDS`` of them) rather than index a handful at a time: appends with supplied
ids (idempotent clients check each one) would otherwise pay the pass's fixed cost per append.
Likewise the stream bloom filter is only ever written to files, so it is brought up to date when
one is (``index_streams``).

Memory is a few arrays per bucket plus one dict entry per stream, and one small array per stream
with more than SMALL_STREAM_ENTRIES events here. A stream's entries in ``stream_events`` are an
int (one entry), a tuple (a few), or an array: an array is an object the garbage collector
tracks, and a full collection walked one per stream (tens of milliseconds with the event loop
stopped once a segment held ~100,000 streams), where it stops tracking a tuple of ints once it
has seen it. No object per event, so the collector never has millions of objects to walk. The
whole state can be written to a checkpoint file and read back (``to_sections`` /
``from_sections``), so opening a data dir reads the checkpoint and scans only the records
written after it. At sealing the same arrays become the sealed index files (``sealed.py``).
"""

from __future__ import annotations

from array import array
from typing import Any

from . import index_build
from .hashing import Bloom, SlotTable, id_hash64
from .sliced_build import key_hashes, key_lengths_and_bytes, stream_numbers

# Assumed smallest average record (bytes) when sizing the bloom filters of a segment.
BLOOM_BYTES_PER_ITEM = 128
# A lookup by id indexes the ids added since the last pass once more than this many wait; fewer
# are searched directly (~16 KiB at most: a few microseconds).
SCAN_UNINDEXED_IDS = 1024
# A stream keeps up to this many entries here as an int or a tuple (which the garbage collector
# does not track), more in an array; a tuple is copied on each append, so it stays small.
SMALL_STREAM_ENTRIES = 16
# Events per segment the id slot table is first sized for: one per this many bytes (it holds
# up to half as many events as slots, and doubles beyond that).
SLOT_BYTES_PER_EVENT = 1024


# Partition id -> its 2-byte prefix of a stream key (see stream_key), made once per partition.
_PREFIXES: dict[int, bytes] = {}


def stream_key(partition_id: int, stream_id: bytes) -> bytes:
    """Streams are addressed by (partition, stream id); the key packs both."""
    return partition_id.to_bytes(2, "big") + stream_id


def event_time_ms(event_id: bytes) -> int:
    """Generated ids carry their millisecond time in the top 48 bits (any id has *a* value)."""
    return int.from_bytes(event_id[:6], "big")


def _entries(numbers: array | tuple[int, ...]) -> int | tuple[int, ...] | array:
    """A stream's entries in the form stream_events holds them (see SMALL_STREAM_ENTRIES)."""
    if len(numbers) == 1:
        return numbers[0]
    if 1 < len(numbers) <= SMALL_STREAM_ENTRIES:
        return tuple(numbers)
    return numbers if isinstance(numbers, array) else array("I", numbers)


class ActiveIndex:
    __slots__ = (
        "segment_id",
        "end_offset",
        "offsets",
        "partitions",
        "sequences",
        "stream_refs",
        "event_ids",
        "id_slots",
        "id_bloom",
        "ids_indexed",
        "min_time_ms",
        "max_time_ms",
        "part_events",
        "part_base",
        "stream_ref_of",
        "stream_keys",
        "stream_pkeys",
        "stream_events",
        "stream_base",
        "stream_bloom",
        "streams_bloomed",
        "discard_count",
    )

    def __init__(self, segment_id: int, segment_size_bytes: int, start_offset: int) -> None:
        self.segment_id = segment_id
        self.end_offset = start_offset
        self.offsets = array("Q")
        self.partitions = array("H")
        self.sequences = array("Q")
        self.stream_refs = array("I")
        self.event_ids = bytearray()
        # Sized for a segment of small events, so that it rarely has to grow (a rehash visits
        # every event already indexed).
        self.id_slots = SlotTable(
            bits=max(10, (segment_size_bytes // SLOT_BYTES_PER_EVENT).bit_length())
        )
        bloom_bits = Bloom.size_for(max(1, segment_size_bytes // BLOOM_BYTES_PER_ITEM))
        self.id_bloom = Bloom(bloom_bits)
        self.ids_indexed = 0  # events whose id is in id_slots, id_bloom and the time range
        self.min_time_ms = 1 << 62
        self.max_time_ms = -1
        self.part_events: dict[int, array] = {}
        self.part_base: dict[int, int] = {}
        self.stream_ref_of: dict[bytes, int] = {}
        self.stream_keys: list[bytes] = []
        self.stream_pkeys = bytearray()
        # Per stream, its entries' event numbers: an int (one), a tuple (a few) or an array
        # (none, or more than SMALL_STREAM_ENTRIES); see stream_entries.
        self.stream_events: list[int | tuple[int, ...] | array] = []
        self.stream_base = array("Q")
        self.stream_bloom = Bloom(bloom_bits)
        self.streams_bloomed = 0  # stream keys added to stream_bloom (see index_streams)
        self.discard_count = 0  # discards applied (a checkpoint's copy checks none came between)

    # ----------------------------------------------------------------------------- updates
    def add(
        self,
        offset: int,
        partition_id: int,
        sequence: int,
        version: int,
        sid_key: bytes,
        partition_key: bytes,
        event_id: bytes,
    ) -> None:
        """Index one event (a unit of one for ``add_units``), its id at once."""
        assert sid_key[:2] == stream_key(partition_id, b""), "a stream key of another partition"
        entry = (0, sequence, version, sid_key[2:], partition_key, event_id)
        self.add_units([(offset, partition_id, [entry])])
        self.index_ids()

    def stream_entries(self, ref: int) -> array | tuple[int, ...]:
        """The event numbers of the stream's surviving entries here, oldest first."""
        sevents = self.stream_events[ref]
        return (sevents,) if sevents.__class__ is int else sevents  # type: ignore[return-value]

    def add_units(self, units: list[tuple[int, int, list[tuple]]]) -> None:
        """Index written units: (unit offset, partition, entries), each entry being
        (offset in unit, sequence, version, stream id, partition key, event id).

        Ids are left for ``index_ids``. The per-event work is inlined: this runs for every event
        written (the bucket writer's hot path) and for every event recovery scans.
        """
        offsets = self.offsets
        partitions = self.partitions
        sequences = self.sequences
        n = len(offsets)
        ids = self.event_ids
        stream_ref_of = self.stream_ref_of
        stream_keys = self.stream_keys
        stream_pkeys = self.stream_pkeys
        stream_events = self.stream_events
        stream_base = self.stream_base
        stream_refs = self.stream_refs
        part_events = self.part_events
        part_base = self.part_base
        for base, partition_id, entries in units:
            events = part_events.get(partition_id)
            if events is None:
                events = part_events[partition_id] = array("I")
            if not events:
                part_base[partition_id] = entries[0][1]
            expected_seq = part_base[partition_id] + len(events)
            prefix = _PREFIXES.get(partition_id)
            if prefix is None:
                prefix = _PREFIXES[partition_id] = stream_key(partition_id, b"")
            for rel, sequence, version, sid, partition_key, event_id in entries:
                assert sequence == expected_seq, (
                    f"partition {partition_id}: sequence {sequence} does not extend the index"
                )
                expected_seq += 1
                offsets.append(base + rel)
                partitions.append(partition_id)
                sequences.append(sequence)
                ids += event_id
                events.append(n)
                key = prefix + sid
                ref = stream_ref_of.get(key)
                if ref is None:  # first seen in this segment
                    ref = stream_ref_of[key] = len(stream_keys)
                    stream_keys.append(key)
                    stream_pkeys += partition_key
                    stream_events.append(n)
                    stream_base.append(version)
                    stream_refs.append(ref)
                    n += 1
                    continue
                sevents = stream_events[ref]
                kind = sevents.__class__
                if kind is int:  # its second entry here
                    count = 1
                    stream_events[ref] = (sevents, n)  # type: ignore[assignment]
                elif kind is tuple:
                    count = len(sevents)  # type: ignore[arg-type]
                    grown = (*sevents, n)  # type: ignore[misc]
                    stream_events[ref] = (
                        grown if count < SMALL_STREAM_ENTRIES else array("I", grown)
                    )
                else:
                    count = len(sevents)  # type: ignore[arg-type]
                    if not count:  # every earlier entry here was discarded
                        stream_base[ref] = version
                        stream_pkeys[ref * 16 : ref * 16 + 16] = partition_key
                    sevents.append(n)  # type: ignore[union-attr]
                assert version == stream_base[ref] + count, (
                    f"stream {sid!r}: version {version} does not extend the active index"
                )
                stream_refs.append(ref)
                n += 1

    def index_ids(self) -> None:
        """Bring the id slot table, the id bloom filter and the time range up to date with
        every event added (one compiled pass over the events added since the last call)."""
        first, end = self.ids_indexed, len(self.offsets)
        if first >= end:
            return
        table = self.id_slots
        bits = table.bits
        while (table.used + end - first) * 2 > 1 << bits:  # grow first (load <= 1/2)
            bits += 1
        if bits != table.bits:
            table.slots, table.used = index_build.rehash_ids(self.event_ids, table.slots, bits)
            table.bits = bits
        used, tmin, tmax = index_build.index_ids(
            self.event_ids, first, end, table.slots, table.bits,
            self.id_bloom.bits, self.id_bloom.mask,
        )  # fmt: skip
        table.used += used
        self.min_time_ms = min(self.min_time_ms, tmin)
        self.max_time_ms = max(self.max_time_ms, tmax)
        self.ids_indexed = end

    def index_streams(self) -> None:
        """Add the stream keys seen since the last call to the stream bloom filter (which only
        files use: a checkpoint, and the sealed index built from the same keys)."""
        keys = self.stream_keys
        end = len(keys)  # (keys added meanwhile wait for the next call)
        if self.streams_bloomed < end:
            hashes = key_hashes(keys[self.streams_bloomed : end])
            index_build.bloom_add(hashes, self.stream_bloom.bits, self.stream_bloom.mask)
        self.streams_bloomed = end

    def discard(self, partition_id: int, from_sequence: int) -> None:
        """Drop this partition's entries at or above `from_sequence` from every lookup."""
        events = self.part_events.get(partition_id)
        if not events:
            return
        self.discard_count += 1
        self.index_ids()  # the dropped ids leave the slot table
        keep = max(0, from_sequence - self.part_base[partition_id])
        dropped = events[keep:]
        del events[keep:]
        for n in reversed(dropped):
            ref = self.stream_refs[n]
            sevents = self.stream_entries(ref)
            assert sevents and sevents[-1] == n, "stream entries out of order in a discard"
            if isinstance(sevents, array):
                sevents.pop()
            else:
                self.stream_events[ref] = _entries(sevents[:-1])
            eid = bytes(self.event_ids[n * 16 : n * 16 + 16])
            self.id_slots.remove(id_hash64(eid), n)

    # ----------------------------------------------------------------------------- lookups
    def find_event(self, event_id: bytes) -> int | None:
        """The event number of a surviving event with this id, or None."""
        if not self.offsets:
            return None
        if len(self.offsets) - self.ids_indexed > SCAN_UNINDEXED_IDS:
            self.index_ids()
        elif len(event_id) == 16:
            # The ids added since the last pass all survive (a discard indexes first).
            ids, start, end = self.event_ids, self.ids_indexed * 16, len(self.offsets) * 16
            at = ids.find(event_id, start, end)
            while at >= 0:
                if (at - start) % 16 == 0:
                    return at // 16
                at = ids.find(event_id, at + 1, end)
        h = id_hash64(event_id)
        if not self.id_bloom.may_contain(h):
            return None
        ids = self.event_ids
        for n in self.id_slots.candidates(h):
            if ids[n * 16 : n * 16 + 16] == event_id:
                return n
        return None

    def partition_range(self, partition_id: int) -> tuple[int, int]:
        """(first sequence, count) of the partition's surviving entries here."""
        events = self.part_events.get(partition_id)
        if not events:
            return (0, 0)
        return (self.part_base[partition_id], len(events))

    def stream_range(self, sid_key: bytes) -> tuple[int, int, int, bytes] | None:
        """(ref, first version, count, partition key) of a stream seen in this segment."""
        ref = self.stream_ref_of.get(sid_key)
        if ref is None:
            return None
        return (
            ref,
            self.stream_base[ref],
            len(self.stream_entries(ref)),
            bytes(self.stream_pkeys[ref * 16 : ref * 16 + 16]),
        )

    def partition_offsets(self, partition_id: int, start: int, stop: int) -> list[int]:
        """Offsets of entries at indexes [start, stop) of the partition's array."""
        events = self.part_events.get(partition_id)
        if not events:
            return []
        offsets = self.offsets
        return [offsets[n] for n in events[start:stop]]

    def stream_offsets(self, ref: int, start: int, stop: int) -> list[int]:
        offsets = self.offsets
        return [offsets[n] for n in self.stream_entries(ref)[start:stop]]

    @property
    def event_count(self) -> int:
        return len(self.offsets)

    def memory_bytes(self) -> int:
        arrays = (self.offsets, self.partitions, self.sequences, self.stream_refs)
        total = sum(a.itemsize * len(a) for a in arrays) + len(self.event_ids)
        total += (
            len(self.id_slots.slots) * 4 + len(self.id_bloom.bits) + len(self.stream_bloom.bits)
        )
        total += sum(len(k) + 100 for k in self.stream_keys)
        total += sum(
            8 if isinstance(a, int) else 56 + 8 * len(a) if isinstance(a, tuple)
            else a.itemsize * len(a) + 64
            for a in self.stream_events
        )  # fmt: skip
        return total

    # ------------------------------------------------------------------------ persistence
    def to_sections(self) -> dict[str, bytes | bytearray | memoryview]:
        """The whole index as a checkpoint's sections (``from_sections`` reads them back)."""
        return self.sections(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """A checkpoint's copy of what later appends would change, taken under the bucket's
        lock: the counts of events and streams, the slot table and the partition tables, and
        shallow copies of the stream lists. ``sections`` builds the rest without the lock
        (a near-full segment's whole copy took ~250 ms, every append waiting).

        Appends only add: events and streams past the counts, and numbers past the event
        count to a stream's array, which ``sections`` leaves out. A discard cuts; the caller
        checks ``discard_count`` afterwards and drops a copy a discard came between."""
        self.index_ids()
        n, streams = len(self.offsets), len(self.stream_keys)
        part_table = array("Q")
        part_values = array("I")
        for p in sorted(self.part_events):
            ev = self.part_events[p]
            part_table.extend((p, self.part_base[p], len(part_values), len(ev)))
            part_values.extend(ev)
        meta = array(
            "q",
            [
                self.segment_id,
                self.end_offset,
                self.id_slots.bits,
                self.id_slots.used,
                self.min_time_ms,
                self.max_time_ms,
                self.id_bloom.mask + 1,
                self.stream_bloom.mask + 1,
            ],
        )
        return {
            "events": n,
            "streams": streams,
            "discard_count": self.discard_count,
            "meta": meta.tobytes(),
            "idslots": self.id_slots.slots.tobytes(),
            "ptable": part_table.tobytes(),
            "pvalues": part_values.tobytes(),
            "spkeys": bytes(self.stream_pkeys[: 16 * streams]),
            "sbase": self.stream_base[:streams].tobytes(),
            "keys": self.stream_keys[:streams],
            "entries": self.stream_events[:streams],
        }

    def sections(self, snap: dict[str, Any]) -> dict[str, bytes | bytearray | memoryview]:
        """The checkpoint's sections as of `snap` (any thread, without the bucket's lock,
        while appends go on: the per-event arrays only grow, so their first `events` items
        are the snapshot's; the blooms may hold more, which only costs a false positive)."""
        self.index_streams()  # every key of the snapshot, as from_sections assumes
        n = snap["events"]
        keys = snap["keys"]
        stream_lens, stream_values = stream_numbers(snap["entries"], n)
        key_lens, key_bytes = key_lengths_and_bytes(keys)
        return {
            "meta": snap["meta"],
            "offsets": self.offsets[:n].tobytes(),
            "parts": self.partitions[:n].tobytes(),
            "seqs": self.sequences[:n].tobytes(),
            "srefs": self.stream_refs[:n].tobytes(),
            "ids": bytes(self.event_ids[: 16 * n]),
            "idslots": snap["idslots"],
            "idbloom": bytes(self.id_bloom.bits),
            "ptable": snap["ptable"],
            "pvalues": snap["pvalues"],
            "skeylens": key_lens,
            "skeys": key_bytes,
            "spkeys": snap["spkeys"],
            "sbase": snap["sbase"],
            "slens": stream_lens.tobytes(),
            "svalues": stream_values.tobytes(),
            "sbloom": bytes(self.stream_bloom.bits),
        }

    @classmethod
    def from_sections(cls, s: dict[str, memoryview], segment_size_bytes: int) -> ActiveIndex:
        meta = array("q")
        meta.frombytes(s["meta"])
        seg, end, slot_bits, slots_used, tmin, tmax, id_bloom_bits, s_bloom_bits = meta
        idx = cls(seg, segment_size_bytes, end)

        def arr(code: str, name: str) -> array:
            a = array(code)
            a.frombytes(s[name])
            return a

        idx.offsets = arr("Q", "offsets")
        idx.partitions = arr("H", "parts")
        idx.sequences = arr("Q", "seqs")
        idx.stream_refs = arr("I", "srefs")
        idx.event_ids = bytearray(s["ids"])
        idx.id_slots = SlotTable(slot_bits, arr("i", "idslots"), slots_used)
        idx.id_bloom = Bloom(id_bloom_bits, bytearray(s["idbloom"]))
        idx.stream_bloom = Bloom(s_bloom_bits, bytearray(s["sbloom"]))
        idx.ids_indexed = len(idx.offsets)
        idx.min_time_ms, idx.max_time_ms = tmin, tmax
        ptable = arr("Q", "ptable")
        pvalues = arr("I", "pvalues")
        for i in range(0, len(ptable), 4):
            p, base, start, count = ptable[i : i + 4]
            idx.part_events[p] = pvalues[start : start + count]
            idx.part_base[p] = base
        key_lens = arr("B", "skeylens")
        keys_blob = bytes(s["skeys"])
        pos = 0
        for ref, n in enumerate(key_lens):
            key = keys_blob[pos : pos + n]
            pos += n
            idx.stream_keys.append(key)
            idx.stream_ref_of[key] = ref
        idx.streams_bloomed = len(idx.stream_keys)  # the checkpoint's bloom holds them all
        idx.stream_pkeys = bytearray(s["spkeys"])
        idx.stream_base = arr("Q", "sbase")
        lens = arr("I", "slens")
        values = arr("I", "svalues")
        pos = 0
        for n in lens:
            idx.stream_events.append(_entries(values[pos : pos + n]))
            pos += n
        assert len(idx.stream_events) == len(idx.stream_keys) == len(idx.stream_base)
        return idx
