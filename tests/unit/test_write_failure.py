"""A write that fails after its sequence was assigned: never acknowledged, never reused in the
same term (cluster-safety S6), and the partition recovers under a new term."""

import os

import pytest
import trio

from sierradb.node.append import AppendRequest
from sierradb.node.config import Config
from sierradb.node.database import Database
from sierradb.node.errors import NodeError
from sierradb.storage import MemoryDisk, NewEvent, Promise, Store, WriteFailed

INCARNATION = 7


def append(payload: bytes = b"x") -> AppendRequest:
    event = NewEvent(os.urandom(16), b"s", b"E", 1, b"", payload)
    return AppendRequest(0, b"K" * 16, os.urandom(16), [event], (False,), False)


async def test_a_failed_write_is_not_acknowledged_and_its_sequence_comes_back_in_a_new_term():
    disk = MemoryDisk()
    store = Store.open("/d", partitions=2, buckets=1, segment_size_bytes=1 << 20, disk=disk)
    db = Database(store, Config(partitions=2, buckets=1))
    db.lead_all(INCARNATION)
    leader = db.roles[0]
    first_term = leader.term
    assert store.promise(0) == Promise(first_term, 0, INCARNATION)
    async with trio.open_nursery() as nursery:
        await nursery.start(db.run)
        ok = await leader.submit(append())()
        assert ok.first_sequence == 0

        disk.fail_writes("write", 1)
        failing = leader.submit(append(b"lost"))
        with pytest.raises(WriteFailed):
            await failing()
        assert store.watermark(0) == 1  # the failed append is not visible
        # The leader steps down until its new term is durable; then sequence 1 is written
        # again, under a term no earlier record carries.
        with trio.fail_after(10):
            while leader.stepping_down:
                with pytest.raises(NodeError, match="recovering"):
                    leader.submit(append())
                await trio.sleep(0.01)
        assert leader.term == first_term + 1
        # The new term's promise names this node and its incarnation (not a placeholder).
        assert store.promise(0) == Promise(first_term + 1, 0, INCARNATION)
        again = await leader.submit(append(b"new"))()
        assert again.first_sequence == 1
        nursery.cancel_scope.cancel()
    events, _ = store.read_partition(0, 0, None, 10)
    assert [(e.partition_sequence, e.payload, e.term) for e in events] == [
        (0, b"x", first_term),
        (1, b"new", first_term + 1),
    ]
