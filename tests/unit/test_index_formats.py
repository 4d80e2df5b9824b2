"""Index formats: slot tables, bloom filters, section files, the active index and sealed files."""

import gc
import os
from array import array

import pytest

from sierradb.storage.active_index import SMALL_STREAM_ENTRIES, ActiveIndex, stream_key
from sierradb.storage.disk import MemoryDisk
from sierradb.storage.hashing import Bloom, bytes_hash64, id_hash64
from sierradb.storage.sealed import EIDX, SealedIndexes, index_files_ok, write_index_files
from sierradb.storage.sectionfile import BadSectionFile, SectionFile, pack_sections


def test_slot_table_finds_every_value_and_grows():
    keys = [os.urandom(16) for _ in range(5000)]
    idx = ActiveIndex(segment_id=0, segment_size_bytes=1 << 20, start_offset=64)
    bits = idx.id_slots.bits
    for i, k in enumerate(keys):
        idx.add_units([(64 + i * 100, 1, [(0, i, 0, b"s%d" % i, bytes(16), k)])])
        if i % 1000 == 999:
            idx.index_ids()  # inserts in bulk, growing the table as it fills
    table = idx.id_slots
    assert table.bits > bits and table.used == len(keys)
    for i, k in enumerate(keys):
        assert i in set(table.candidates(id_hash64(k)))
    table.remove(id_hash64(keys[10]), 10)
    assert 10 not in set(table.candidates(id_hash64(keys[10])))
    assert 11 in set(table.candidates(id_hash64(keys[11])))


def test_bloom_has_no_false_negatives_and_few_false_positives():
    bloom = Bloom(Bloom.size_for(10_000))
    present = [os.urandom(16) for _ in range(10_000)]
    for k in present:
        bloom.add(id_hash64(k))
    assert all(bloom.may_contain(id_hash64(k)) for k in present)
    false = sum(bloom.may_contain(id_hash64(os.urandom(16))) for _ in range(10_000))
    assert false < 300  # k=3 at 16 bits per item: about 0.3% expected


def test_stream_hash_is_stable_across_processes():
    # Stored on disk, so it must not depend on PYTHONHASHSEED.
    assert bytes_hash64(b"\x00\x01stream") == bytes_hash64(b"\x00\x01stream")
    assert bytes_hash64(b"a") != bytes_hash64(b"b")


def test_section_file_round_trip_and_damage():
    data = pack_sections(b"TESTFILE", {"a": b"hello", "bb": bytes(range(256))})
    sf = SectionFile(data, b"TESTFILE")
    sf.verify()
    assert bytes(sf["a"]) == b"hello" and bytes(sf["bb"]) == bytes(range(256))
    with pytest.raises(BadSectionFile):
        SectionFile(data, b"OTHERMAG")
    with pytest.raises(BadSectionFile):
        SectionFile(data[:-1], b"TESTFILE")
    for offset in (12, 30, len(data) - 1):
        bad = bytearray(data)
        bad[offset] ^= 0x10
        with pytest.raises(BadSectionFile):
            f = SectionFile(bytes(bad), b"TESTFILE")
            f.verify()


def test_section_files_are_checksummed_and_checked_a_slice_at_a_time(monkeypatch):
    """Big files go a slice at a time (each C call holds the GIL): the same CRC as in one go."""
    import google_crc32c

    from sierradb.storage import sectionfile

    sections = {"a": os.urandom(1000), "b": bytearray(os.urandom(77)), "c": memoryview(b"xyz")}
    whole = pack_sections(b"TESTFILE", sections)
    monkeypatch.setattr(sectionfile, "SLICE_BYTES", 64)
    chunks = sectionfile.section_chunks(b"TESTFILE", sections)
    assert len(chunks) > 3 and b"".join(chunks) == whole
    assert int.from_bytes(whole[8:12], "little") == google_crc32c.value(whole[12:])
    SectionFile(whole, b"TESTFILE").verify()
    bad = bytearray(whole)
    bad[700] ^= 1
    with pytest.raises(BadSectionFile):
        SectionFile(bytes(bad), b"TESTFILE").verify()


def filled_index(n=2000):
    idx = ActiveIndex(segment_id=3, segment_size_bytes=1 << 20, start_offset=64)
    expected = []
    versions: dict[bytes, int] = {}
    seqs: dict[int, int] = {}
    for i in range(n):
        p = i % 4
        sid = b"s%d" % (i % 37)
        key = stream_key(p, sid)
        v = versions.get(key, 0)
        s = seqs.get(p, 0)
        eid = os.urandom(16)
        idx.add(64 + i * 100, p, s, v, key, bytes([p]) * 16, eid)
        versions[key] = v + 1
        seqs[p] = s + 1
        expected.append((64 + i * 100, p, s, v, key, eid))
    return idx, expected


def check_lookups(idx, expected):
    for off, p, s, v, key, eid in expected[::7]:
        found = idx.find_event(eid)
        if isinstance(idx, ActiveIndex):
            assert idx.offsets[found] == off
            base, count = idx.partition_range(p)
            assert idx.partition_offsets(p, s - base, s - base + 1) == [off]
        else:
            assert found == off
            base, count = idx.partition_range(p)
            assert idx.partition_offsets(p, s - base, s - base + 1) == [off]
        ref, vbase, vcount, pk = idx.stream_range(key)
        assert pk == bytes([p]) * 16
        assert idx.stream_offsets(ref, v - vbase, v - vbase + 1) == [off]
    assert idx.find_event(os.urandom(16)) is None
    assert idx.stream_range(stream_key(0, b"nope")) is None


def test_active_index_lookups_and_checkpoint_round_trip():
    idx, expected = filled_index()
    check_lookups(idx, expected)
    sections = {k: memoryview(bytes(v)) for k, v in idx.to_sections().items()}
    copy = ActiveIndex.from_sections(sections, 1 << 20)
    check_lookups(copy, expected)
    assert copy.end_offset == idx.end_offset


def test_a_checkpoint_snapshot_ignores_what_is_appended_before_its_sections_are_built():
    """A checkpoint copies under the bucket's lock only what appends would change and builds
    the rest after, while appends go on: the sections are those of the index at the snapshot,
    whatever was appended in between (events of known streams, whose arrays grow, and new
    streams)."""
    idx, expected = filled_index(4000)  # ~27 events per stream: arrays, not tuples
    idx.end_offset = 64 + 4000 * 100  # (as a flush's apply sets it)
    before = {k: bytes(v) for k, v in idx.to_sections().items()}
    snap = idx.snapshot()
    seqs = {p: idx.partition_range(p)[1] for p in range(4)}
    versions = {e[4]: e[3] + 1 for e in expected}
    for i in range(4000, 4600):  # known streams, then new ones
        p = i % 4
        key = stream_key(p, b"s%d" % (i % 37 if i < 4300 else i))
        v = versions.get(key, 0)
        idx.add(64 + i * 100, p, seqs[p], v, key, bytes([p]) * 16, os.urandom(16))
        seqs[p] += 1
        versions[key] = v + 1
    idx.end_offset = 64 + 4600 * 100
    after = {k: bytes(v) for k, v in idx.sections(snap).items()}
    blooms = ("idbloom", "sbloom")  # these may hold more: only a false positive's cost
    assert {k: v for k, v in after.items() if k not in blooms} == {
        k: v for k, v in before.items() if k not in blooms
    }
    for name in blooms:
        old, new = int.from_bytes(before[name], "little"), int.from_bytes(after[name], "little")
        assert old & new == old
    copy = ActiveIndex.from_sections({k: memoryview(v) for k, v in after.items()}, 1 << 20)
    check_lookups(copy, expected)
    assert copy.event_count == 4000 and copy.end_offset == 64 + 4000 * 100
    assert idx.discard_count == snap["discard_count"] == 0
    idx.discard(1, 5)
    assert idx.discard_count == 1  # what a checkpoint checks after building its sections


def test_active_index_discard_drops_tail_from_every_lookup():
    idx, expected = filled_index(400)
    p = 1
    base, count = idx.partition_range(p)
    cut = base + count - 10
    idx.discard(p, cut)
    assert idx.partition_range(p) == (base, count - 10)
    for _off, pp, s, v, key, eid in expected:
        if pp == p and s >= cut:
            assert idx.find_event(eid) is None
            ref, vbase, vcount, _ = idx.stream_range(key)
            assert v >= vbase + vcount  # the stream's tail was cut with it
        elif pp == p:
            assert idx.find_event(eid) is not None


def test_short_streams_cost_no_tracked_object_and_answer_like_the_others():
    # A stream's entries are an int (one), a tuple (up to SMALL_STREAM_ENTRIES) or an array
    # (more): only arrays are objects the garbage collector keeps tracking. Entries added by
    # add or add_units, discards down to nothing and new entries after them, checkpoints and
    # sealed files answer the same whatever the form.
    idx = ActiveIndex(segment_id=0, segment_size_bytes=1 << 20, start_offset=64)
    expected = []
    seqs = [0, 0]
    versions: dict[bytes, int] = {}

    def add(p: int, sid: bytes, by_units: bool) -> tuple:
        key = stream_key(p, sid)
        e = (64 + 100 * len(expected), p, seqs[p], versions.get(key, 0), key, os.urandom(16))
        seqs[p] += 1
        versions[key] = e[3] + 1
        expected.append(e)
        off, p, s, v, key, eid = e
        if by_units:
            idx.add_units([(off, p, [(0, s, v, key[2:], bytes([p]) * 16, eid)])])
        else:
            idx.add(off, p, s, v, key, bytes([p]) * 16, eid)
        return e

    for i in range(300):  # one event each
        add(i % 2, b"one-%d" % i, by_units=i % 3 == 0)
    for i in range(0, 300, 10):  # a second event for every tenth stream (all in partition 0)
        add(0, b"one-%d" % i, by_units=i % 20 == 0)
    for i in range(SMALL_STREAM_ENTRIES + 3):  # a long stream, through both paths
        add(0, b"long", by_units=i % 2 == 0)
    forms = [type(e) for e in idx.stream_events]
    assert forms.count(int) == 270 and forms.count(tuple) == 30 and forms.count(array) == 1
    long_ref = idx.stream_range(stream_key(0, b"long"))[0]
    assert isinstance(idx.stream_events[long_ref], array)
    gc.collect()
    assert not any(gc.is_tracked(e) for e in idx.stream_events if not isinstance(e, array))
    check_lookups(idx, expected)
    copy = ActiveIndex.from_sections(
        {k: memoryview(bytes(v)) for k, v in idx.to_sections().items()}, 1 << 20
    )
    assert [type(e) for e in copy.stream_events] == forms
    assert [list(copy.stream_entries(r)) for r in range(len(forms))] == [
        list(idx.stream_entries(r)) for r in range(len(forms))
    ]
    check_lookups(copy, expected)
    disk = MemoryDisk()
    disk.make_dirs("/seg")
    write_index_files(disk, "/seg", idx)
    check_lookups(SealedIndexes(disk, "/seg"), expected)

    # Cut partition 1's last entry (the only event of its stream), leaving that stream empty
    # here; then write it again.
    last = [e for e in expected if e[1] == 1][-1]
    assert isinstance(idx.stream_events[idx.stream_range(last[4])[0]], int)
    idx.discard(1, last[2])
    ref, base, count, _ = idx.stream_range(last[4])
    assert count == last[3] - base and idx.find_event(last[5]) is None
    idx.add(last[0] + 10_000, 1, last[2], last[3], last[4], bytes([1]) * 16, last[5])
    ref, base, count, _ = idx.stream_range(last[4])
    assert base + count == last[3] + 1
    assert idx.stream_offsets(ref, last[3] - base, last[3] - base + 1) == [last[0] + 10_000]
    # Cut partition 0 back past the long stream and into the two-event ones: each shrinks
    # to the form its count calls for.
    cut = [e for e in expected if e[4] == stream_key(0, b"one-290")][-1][2]
    idx.discard(0, cut)
    assert idx.stream_range(stream_key(0, b"long"))[2] == 0
    assert isinstance(idx.stream_events[idx.stream_range(stream_key(0, b"one-290"))[0]], int)
    assert isinstance(idx.stream_events[idx.stream_range(stream_key(0, b"one-280"))[0]], tuple)


def test_sealed_index_files_answer_like_the_active_index():
    disk = MemoryDisk()
    disk.make_dirs("/seg")
    idx, expected = filled_index()
    write_index_files(disk, "/seg", idx)
    sealed = SealedIndexes(disk, "/seg")
    check_lookups(sealed, expected)
    every_key = Bloom(idx.stream_bloom.mask + 1)  # the stream bloom holds every stream's key
    for key in idx.stream_keys:
        every_key.add(bytes_hash64(key))
    assert bytes(sealed.s_bloom.bits) == bytes(every_key.bits)
    assert index_files_ok(disk, "/seg", verify=True)
    disk.corrupt(f"/seg/{EIDX}", 100)
    assert not index_files_ok(disk, "/seg", verify=True)


def test_lazily_indexed_ids_match_indexing_each_id_as_written():
    # Ids are indexed in passes at the first lookup, checkpoint or seal (index_ids); the result
    # must be what hashing every id into the table and the bloom as it was written gives.
    from sierradb.storage.active_index import event_time_ms

    idx = ActiveIndex(segment_id=0, segment_size_bytes=1 << 20, start_offset=64)
    bits = idx.id_slots.bits
    ids = [os.urandom(16) for _ in range(3000)]  # more than 2**bits / 2: the table grows
    for i, eid in enumerate(ids):
        entry = (0, i, i // 30, b"s%d" % (i % 30), bytes(16), eid)
        idx.add_units([(64 + i * 100, 1, [entry])])
        if i % 97 == 0:
            idx.index_ids()  # many passes
        if i % 701 == 0:
            assert idx.find_event(eid) == i  # a lookup catches up on its own
    idx.index_ids()
    assert idx.ids_indexed == len(ids)
    assert idx.id_slots.bits > bits and idx.id_slots.used == len(ids)
    bloom = Bloom(idx.id_bloom.mask + 1)
    for eid in ids:
        bloom.add(id_hash64(eid))
    assert idx.id_bloom.bits == bloom.bits
    assert idx.min_time_ms == min(map(event_time_ms, ids))
    assert idx.max_time_ms == max(map(event_time_ms, ids))
    assert [idx.find_event(eid) for eid in ids] == list(range(len(ids)))
    assert idx.find_event(os.urandom(16)) is None
    copy = ActiveIndex.from_sections(
        SectionFile(pack_sections(b"SDBCKPT1", idx.to_sections()), b"SDBCKPT1").sections, 1 << 20
    )
    assert copy.ids_indexed == len(ids)
    assert copy.streams_bloomed == len(copy.stream_keys) == 30  # not added to the bloom again
    assert [copy.find_event(eid) for eid in ids] == list(range(len(ids)))


def test_a_lookup_searches_ids_not_yet_indexed_and_indexes_them_past_the_bound():
    import sierradb.storage.active_index as active_index

    idx = ActiveIndex(segment_id=0, segment_size_bytes=1 << 20, start_offset=64)
    # Consecutive ids whose bytes, read across their boundary, spell a third id: a search that
    # matched off the 16-byte grid would find it.
    ids = [bytes(range(16)), bytes(range(16, 32)), os.urandom(16)]
    straddling = ids[0][8:] + ids[1][:8]
    for i, eid in enumerate(ids):
        idx.add_units([(64 + i * 100, 1, [(0, i, i, b"s", bytes(16), eid)])])
    assert [idx.find_event(eid) for eid in ids] == [0, 1, 2]
    assert idx.find_event(straddling) is None
    assert idx.find_event(os.urandom(16)) is None
    assert idx.ids_indexed == 0  # searched, not indexed
    bound = active_index.SCAN_UNINDEXED_IDS
    more = [os.urandom(16) for _ in range(bound)]
    for i, eid in enumerate(more, start=len(ids)):
        idx.add_units([(64 + i * 100, 1, [(0, i, i, b"s", bytes(16), eid)])])
    assert idx.find_event(more[-1]) == len(ids) + bound - 1
    assert idx.ids_indexed == len(ids) + bound  # past the bound: indexed by the lookup
    idx.discard(1, 2)  # a discard indexes first: what it drops is gone from every lookup
    assert idx.find_event(ids[2]) is None and idx.find_event(more[0]) is None
    assert idx.find_event(ids[1]) == 1
