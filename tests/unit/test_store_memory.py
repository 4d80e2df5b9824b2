"""Memory stays bounded whatever the number of sealed segments."""

import os

from sierradb.storage import MemoryDisk, NewEvent, Store


def test_only_a_bounded_number_of_sealed_indexes_stay_mapped():
    disk = MemoryDisk()
    store = Store.open(
        "/d", partitions=2, buckets=1, segment_size_bytes=128 * 1024, disk=disk,
        open_segment_indexes=3,
    )  # fmt: skip
    ids = []
    for i in range(1200):
        eid = os.urandom(16)
        ids.append(eid)
        store.append_leader(
            0,
            b"K" * 16,
            os.urandom(16),
            [NewEvent(eid, b"s%d" % (i % 7), b"E", 1, b"", b"x" * 400)],
            1,
        )
        if i % 50 == 0:
            store.flush_all()
    store.flush_all()
    store.set_watermark(0, store.durable_next(0))
    sealed = store.buckets[0].sealed
    assert len(sealed) >= 4
    events, more = store.read_partition(0, 0, None, 5000)
    assert [e.partition_sequence for e in events] == list(range(1200)) and not more
    assert all(store.get_event(0, eid) is not None for eid in ids[::37])
    assert [e.stream_version for e in store.read_stream(0, b"s3", 0, None, 1000)[0]] == list(
        range(len([i for i in range(1200) if i % 7 == 3]))
    )
    mapped = [s for s in sealed if s._indexes is not None]
    assert len(mapped) <= 3
