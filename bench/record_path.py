"""Microseconds of the record path's compiled steps, in-process (no network, no fsync).

    .venv/bin/python bench/record_path.py [--rounds 20000]

Prints one JSON object per step, for 100 records of the benchmark payload
(``../shared/bench/payload.json``): encoding one record (``encode_event``, every append pays it
once on its leader and once per replica), checking 100 stored records (``verify_events``, every
read), turning them into an ESCAN reply (``scan_result_raw``), and a whole 100-event stream read
from an open store's active segment (``Store.read_stream_raw_active``, what ESCAN runs on the
event loop). Also which CRC32C the checks use (the CPU's instruction, or google_crc32c).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sierradb.node.identifiers import partition_id, partition_key_for_stream
from sierradb.node.replies import scan_result_raw
from sierradb.storage import Store
from sierradb.storage.record_check import CRC32C_BY, encode_event, verify_events
from sierradb.storage.transaction import NewEvent

PAYLOAD_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "payload.json"
PAYLOAD = PAYLOAD_PATH.read_bytes().strip() if PAYLOAD_PATH.exists() else b"x" * 200


def timed(rounds: int, step: Callable[[], object]) -> float:
    """Best of three runs of `rounds` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            step()
        best = min(best, (time.perf_counter() - start) / rounds * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20_000)
    rounds = ap.parse_args().rounds
    ids = os.urandom(16), os.urandom(16), os.urandom(16)
    args = (1, 3, 12345, 7, 1_700_000_000_000, *ids, b"stream-1", b"UserCreated", b"", PAYLOAD,
            0, 1, True)  # fmt: skip
    records = [
        encode_event(1, 3, i, i, 1_700_000_000_000, os.urandom(16), os.urandom(16),
                     os.urandom(16), b"rs", b"UserCreated", b"", PAYLOAD, 0, 1, True)
        for i in range(100)
    ]  # fmt: skip
    buf = b"".join(records)
    offsets = [sum(len(r) for r in records[:i]) for i in range(100)]
    raws = verify_events(buf, offsets, len(buf))
    rows = {
        "encode_event, 1 record": timed(rounds * 10, lambda: encode_event(*args)),
        "verify_events, 100 records": timed(rounds, lambda: verify_events(buf, offsets, len(buf))),
        "scan_result_raw, 100 events (RESP2)": timed(rounds, lambda: scan_result_raw(raws, False,
                                                                                    False)),
    }  # fmt: skip
    root = tempfile.mkdtemp(prefix="sdb-record-path-")
    try:
        store = Store.open(root)
        key = partition_key_for_stream(b"rs")
        p = partition_id(key, store.partition_count)
        for _ in range(100):
            event = NewEvent(os.urandom(16), b"rs", b"UserCreated", int(time.time() * 1000), b"",
                             PAYLOAD)  # fmt: skip
            store.append_leader(p, key, os.urandom(16), [event], 1)
            store.flush_all()
        store.set_watermark(p, 100)
        found = store.read_stream_raw_active(p, b"rs", 0, None, 100)
        assert found is not None and len(found[0]) == 100
        rows["Store.read_stream_raw_active, 100 events"] = timed(
            rounds // 4, lambda: store.read_stream_raw_active(p, b"rs", 0, None, 100)
        )
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for step, us in rows.items():
        print(json.dumps({"step": step, "us": round(us, 2), "crc32c": CRC32C_BY}))


if __name__ == "__main__":
    main()
