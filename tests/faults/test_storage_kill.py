"""SIGKILL a writing process at random moments; every acknowledged transaction must survive.

A child process (``storage_writer_child.py``) appends transactions to a real data dir in a loop
and, after each ``flush_all``, prints one line per acknowledged transaction. The test kills it
with SIGKILL after a random delay, opens the data dir itself (recovery) and checks:

- each partition's sequences are gapless from 0 and hold exactly whole transactions 0..K-1 of
  the deterministic workload, with every field as written (nothing half-written, nothing else);
- every acknowledged transaction is among them, at the positions its ticket reported;
- every stream's versions are gapless, stream reads and id lookups agree with the partition log;
- after the open, the active segments hold no torn bytes (the recovery cut them).

Then the child runs again on the same dir: it must resume every partition and stream at the
stored positions (it appends with exact expected versions, so a wrong resume fails loudly).
A few kills land while the child is opening (recovering) the data dir.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sierradb.storage import Store
from sierradb.storage.scan import scan_units
from sierradb.storage.segment import DATA_FILE, SEGMENT_HEADER_SIZE

CHILD = Path(__file__).with_name("storage_writer_child.py")
KILLS_WHILE_WRITING = 24
KILLS_WHILE_OPENING = 4


def _load_workload():  # the child script doubles as the workload model
    spec = importlib.util.spec_from_file_location("sierradb_fault_workload", CHILD)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


w = _load_workload()


class ChildRun:
    """One run of the writer child; its stdout lines are collected by a thread."""

    def __init__(self, data_dir: Path, seed: int, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")  # closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), str(seed)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=str(CHILD.parent),
        )
        self.lines: list[bytes] = []
        self.opening = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line == b"opening\n":
                self.opening.set()
            elif line.startswith(b"ready "):
                self.ready.set()

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._thread.join(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()

    def acks(self) -> list[dict]:
        """The acknowledgement lines (a line cut short by the kill is not one)."""
        out = []
        for line in self.lines:
            if not line.endswith(b"\n") or line in (b"opening\n",) or line.startswith(b"ready "):
                continue
            out.append(json.loads(line))
        return out


def _read_all(store: Store, p: int) -> list:
    events: list = []
    while True:
        batch, more = store.read_partition(p, len(events), None, 4096)
        events.extend(batch)
        if not more:
            return events


def verify(
    data_dir: Path, models: list, acked: dict, recent: list[tuple[int, int]], rng: random.Random
) -> dict:
    """Open the data dir (recovery), check everything; returns statistics of the check."""
    store = Store.open(
        str(data_dir),
        partitions=w.PARTITIONS,
        buckets=w.BUCKETS,
        segment_size_bytes=w.SEGMENT_SIZE_BYTES,
        checkpoint_interval_bytes=w.CHECKPOINT_INTERVAL_BYTES,
    )
    try:
        stats = store.statistics()
        counts = []
        total_events = 0
        for p in range(w.PARTITIONS):
            m = models[p]
            end = store.durable_next(p)
            store.set_watermark(p, end)
            events = _read_all(store, p)
            assert len(events) == end, f"partition {p}: durable end {end}, read {len(events)}"
            for i, ev in enumerate(events):
                assert ev.partition_sequence == i, f"partition {p}: gap at {i}: {ev[:7]}"
            # Whole transactions 0..K-1 of the workload, field for field.
            seq = k = 0
            while seq < end:
                expected = m.txn(k).expected_events()
                got = [tuple(e) for e in events[seq : seq + len(expected)]]
                if len(got) < len(expected):
                    raise AssertionError(
                        f"partition {p}: transaction {k} is half-written: {len(got)} of "
                        f"{len(expected)} events present"
                    )
                for g, e in zip(got, expected, strict=True):
                    assert g == e, f"partition {p} txn {k}: stored {g[:9]} expected {e[:9]}"
                seq += len(expected)
                k += 1
            counts.append(k)
            total_events += end
            # Every acknowledged transaction is there, where its ticket said.
            for (ap, ak), ack in acked.items():
                if ap != p:
                    continue
                assert ak < k, f"acknowledged transaction {ak} of partition {p} is lost ({k} kept)"
                t = m.txn(ak)
                assert (ack["first"], ack["last"]) == (t.first_sequence, t.last_sequence), ack
                assert ack["versions"] == t.versions, ack
                assert ack["ids"] == [e[0].hex() for e in t.spec.events], ack
            # Streams: gapless versions, the same events as the partition log, right tip.
            versions = m.stream_versions_after(k)
            for sid in w.all_streams(p):
                sevents, more = store.read_stream(p, sid, 0, None, 1 << 30)
                assert not more
                assert [e.stream_version for e in sevents] == list(range(len(sevents))), sid
                for e in sevents:
                    assert e == events[e.partition_sequence], (sid, e.partition_sequence)
                last = versions[sid]
                assert len(sevents) == (0 if last is None else last + 1), (sid, len(sevents))
                assert store.last_stream_version(p, sid) == last, sid
            assert store.read_partition(p, end, None, 10) == ([], False)
            # Id lookups: the transactions acknowledged in the last run, and a sample.
            sample = [ak for ap, ak in recent if ap == p][-200:]
            sample += rng.sample(range(k), min(k, 50))
            for sk in sample:
                t = m.txn(sk)
                for e in t.expected_events():
                    got_ev = store.get_event(p, e[0])
                    assert got_ev is not None and tuple(got_ev) == e, (p, sk, e[0].hex())
    finally:
        store.close()
    # The open cut any torn tail: each bucket's newest segment now scans clean to its end.
    for b in range(w.BUCKETS):
        segs = data_dir / "buckets" / f"{b:05d}" / "segments"
        newest = max(
            (d for d in segs.iterdir() if d.name.isdigit() and (d / DATA_FILE).exists()),
            key=lambda d: int(d.name),
        )
        data = (newest / DATA_FILE).read_bytes()
        result = scan_units(
            data[SEGMENT_HEADER_SIZE:], SEGMENT_HEADER_SIZE, str(newest), lambda unit: None
        )
        assert result.torn_from is None and result.valid_end == len(data), (newest, result)
    return {
        "txns": counts,
        "events": total_events,
        "torn_tail_cuts": stats.torn_tail_cuts,
        "sealed": stats.sealed_segments,
    }


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_at_random_moments_loses_no_acknowledged_transaction(tmp_path: Path) -> None:
    seed = int(os.environ.get("SIERRADB_FAULT_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    models = [w.PartitionModel(p) for p in range(w.PARTITIONS)]
    acked: dict[tuple[int, int], dict] = {}
    plan = ["writing"] * KILLS_WHILE_WRITING + ["opening"] * KILLS_WHILE_OPENING
    rng.shuffle(plan)
    plan[0] = "writing"  # the first run creates the data dir
    cuts = 0
    summary: dict = {}
    for run, when in enumerate(plan):
        context = f"seed {seed}, run {run} ({when})"
        child = ChildRun(data_dir, rng.randrange(1 << 30), tmp_path / f"child{run}.err")
        try:
            if when == "writing":
                if not child.ready.wait(60):
                    raise AssertionError(f"{context}: child not ready: {child.stderr_text()}")
                time.sleep(rng.uniform(0.05, 0.5))
            else:
                if not child.opening.wait(60):
                    raise AssertionError(f"{context}: child not opening: {child.stderr_text()}")
                time.sleep(rng.uniform(0.0, 0.04))
            alive = child.proc.poll() is None
        finally:
            child.kill()
        assert alive, f"{context}: child exited by itself ({child.proc.returncode}):\n" + (
            child.stderr_text()
        )
        assert child.proc.returncode == -signal.SIGKILL, context
        recent = []
        for ack in child.acks():
            key = (ack["p"], ack["k"])
            assert key not in acked, f"{context}: transaction {key} acknowledged twice"
            acked[key] = ack
            recent.append(key)
        try:
            summary = verify(data_dir, models, acked, recent, rng)
        except AssertionError as e:
            raise AssertionError(f"{context}: {e}") from e
        cuts += summary["torn_tail_cuts"]
    assert len(plan) >= 20
    assert summary["sealed"] >= 4, summary  # rollovers happened
    print(
        f"seed {seed}: {len(plan)} kills, {len(acked)} acknowledged transactions, "
        f"final {summary}, torn tails cut {cuts}"
    )
