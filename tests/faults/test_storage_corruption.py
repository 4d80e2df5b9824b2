"""Damaged files: bit flips and truncations of sealed and active segments, index files, checkpoints.

A template data dir (one bucket, three partitions, several sealed segments and an active one, all
acknowledged and closed cleanly) is built once from the deterministic workload of
``storage_writer_child.py``. Each case damages a fresh copy, opens it and reads everything: every
partition, every stream, every event by id. The rules:

- a damaged data file is detected and reported: ``CorruptionError`` (at open or at a read) naming
  the damaged file and the offset of the damaged record (0 for the segment header);
- the only exception is the active segment's tail when the recovery scan covers it: bytes that look
  like a torn write (the last record damaged, the file cut short) may be cut, and then exactly the
  damaged units are gone and everything else reads back intact;
- in every case no event is ever returned that differs from what was written.

Damaged or missing sealed index files are rebuilt from ``data.evts`` at open; a damaged
``active.ckpt`` is ignored (the recovery rescans); a data dir open elsewhere is refused
(``DataDirLocked``); other fixed settings are refused (``DataDirMismatch``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sierradb.storage import (
    EMPTY,
    CorruptionError,
    DataDirLocked,
    DataDirMismatch,
    FileDisk,
    NewEvent,
    Store,
)
from sierradb.storage.bucket import CHECKPOINT_MAGIC
from sierradb.storage.record import decode_header
from sierradb.storage.record_check import event_from_raw
from sierradb.storage.sealed import EIDX, PIDX, SIDX, index_files_ok
from sierradb.storage.sectionfile import SectionFile
from sierradb.storage.segment import CHECKPOINT_FILE, DATA_FILE, SEGMENT_HEADER_SIZE

WORKLOAD = Path(__file__).with_name("storage_writer_child.py")
PARTITIONS = 3
SEGMENT_SIZE = 128 * 1024
CHECKPOINT_INTERVAL = 16 * 1024
SEALED_WANTED = 3
ACTIVE_BYTES_WANTED = 48 * 1024
SEED = 20240611
pytestmark = pytest.mark.timeout(180)

# Of the cases that end in a clean cut, this share also appends afterwards and checks again.
APPEND_AFTER_CUT_SHARE = 0.3


def _load_workload():
    spec = importlib.util.spec_from_file_location("sierradb_fault_workload", WORKLOAD)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


w = _load_workload()


def open_store(path: Path, **overrides) -> Store:
    settings = {
        "partitions": PARTITIONS,
        "buckets": 1,
        "segment_size_bytes": SEGMENT_SIZE,
        "checkpoint_interval_bytes": CHECKPOINT_INTERVAL,
    }
    settings.update(overrides)
    return Store.open(str(path), **settings)


# ----------------------------------------------------------------------------- the template


@dataclass(frozen=True)
class Rec:
    start: int
    end: int
    partition: int
    sequence: int
    unit_start: int
    unit_end: int


@dataclass
class Template:
    path: Path
    counts: list[int]  # whole transactions per partition
    segments: list[int]  # segment ids, the last one active
    records: dict[int, list[Rec]]  # segment id -> records in file order
    old_checkpoint: bytes  # an earlier valid checkpoint of the active segment
    foreign_checkpoint: bytes  # a valid checkpoint of a segment sealed since
    models: list
    _expected: dict = field(default_factory=dict)

    def seg_dir(self, root: Path, segment_id: int) -> Path:
        return root / "buckets" / "00000" / "segments" / f"{segment_id:010d}"

    @property
    def active(self) -> int:
        return self.segments[-1]

    @property
    def sealed(self) -> list[int]:
        return self.segments[:-1]

    def expected(self, counts: list[int]) -> dict[tuple[int, int], tuple]:
        """(partition, sequence) -> Event fields of transactions 0..counts[p]-1."""
        key = tuple(counts)
        found = self._expected.get(key)
        if found is None:
            found = self._expected[key] = {
                (p, e[4]): e
                for p in range(PARTITIONS)
                for k in range(counts[p])
                for e in self.models[p].txn(k).expected_events()
            }
        return found

    def counts_at(self, ends: list[int]) -> list[int]:
        """Transactions per partition that end exactly at these sequences (whole ones only)."""
        out = []
        for p, end in enumerate(ends):
            k = 0
            while self.models[p].end_of(k) < end:
                k += 1
            assert self.models[p].end_of(k) == end, f"partition {p}: {end} splits a transaction"
            out.append(k)
        return out


def _layout(data: bytes) -> list[Rec]:
    recs: list[Rec] = []
    pos = SEGMENT_HEADER_SIZE
    unit: list[tuple[int, int, int, int]] = []
    while pos < len(data):
        h = decode_header(data, pos, len(data))
        unit.append((pos, pos + h.length, h.partition, h.sequence))
        pos += h.length
        if h.unit_index == h.unit_count - 1:
            for s, e, p, q in unit:
                recs.append(Rec(s, e, p, q, unit[0][0], unit[-1][1]))
            unit = []
    assert not unit and pos == len(data)
    return recs


def _append_txn(store: Store, model, p: int, k: int) -> None:
    t = model.txn(k)
    new = [
        NewEvent(eid, sid, name, ts, meta, payload, EMPTY if v == 0 else v - 1)
        for (eid, sid, name, ts, meta, payload), v in zip(t.spec.events, t.versions, strict=True)
    ]
    ticket = store.append_leader(p, w.partition_key(p), t.spec.transaction_id, new, w.TERM)
    assert (ticket.first_sequence, ticket.versions) == (t.first_sequence, t.versions)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("corruption") / "template"
    rng = random.Random(SEED)
    models = [w.PartitionModel(p) for p in range(PARTITIONS)]
    counts = [0] * PARTITIONS
    store = open_store(root)
    checkpoints: dict[int, list[bytes]] = {}
    tmpl = Template(root, counts, [], {}, b"", b"", models)
    bucket = store.buckets[0]

    def active_size() -> int:
        return bucket.write_offset

    while len(bucket.sealed) < SEALED_WANTED or active_size() < ACTIVE_BYTES_WANTED:
        for _ in range(rng.randint(1, 4)):
            p = rng.randrange(PARTITIONS)
            _append_txn(store, models[p], p, counts[p])
            counts[p] += 1
        assert all(t.done for t in store.flush_all())
        ckpt = tmpl.seg_dir(root, bucket.active_id) / CHECKPOINT_FILE
        if ckpt.exists():
            data = ckpt.read_bytes()
            seen = checkpoints.setdefault(bucket.active_id, [])
            if not seen or seen[-1] != data:
                seen.append(data)
    # End with a multi-event transaction: its last record alone may look torn.
    while True:
        p = next(
            (q for q in range(PARTITIONS) if len(models[q].txn(counts[q]).spec.events) >= 3), -1
        )
        if p >= 0:
            break
        q = rng.randrange(PARTITIONS)
        _append_txn(store, models[q], q, counts[q])
        counts[q] += 1
    _append_txn(store, models[p], p, counts[p])
    counts[p] += 1
    assert all(t.done for t in store.flush_all())
    active_id = bucket.active_id
    store.close()

    tmpl.segments = list(range(active_id + 1))
    for s in tmpl.segments:
        tmpl.records[s] = _layout((tmpl.seg_dir(root, s) / DATA_FILE).read_bytes())
    assert tmpl.records[active_id][-1].unit_start < tmpl.records[active_id][-2].start
    assert len(checkpoints.get(active_id, [])) >= 1
    tmpl.old_checkpoint = checkpoints[active_id][0]
    tmpl.foreign_checkpoint = checkpoints[tmpl.sealed[-1]][-1]
    assert (tmpl.seg_dir(root, active_id) / CHECKPOINT_FILE).read_bytes() != tmpl.old_checkpoint
    # The template itself reads back completely.
    assert check(tmpl, root, damaged=None) == []
    return tmpl


# ---------------------------------------------------------------------------- the checking


@dataclass
class Damage:
    path: Path  # the damaged data file
    error_offsets: set[int]  # offsets a CorruptionError may name
    cut_at: int | None  # where a clean cut may end the file (active tail only), else None


def check(
    tmpl: Template,
    root: Path,
    damaged: Damage | None,
    counts: list[int] | None = None,
    outcome: dict | None = None,
) -> list[str]:
    """Open `root`, read everything and return the rule violations (empty: all good).

    Without damage, the data dir must hold exactly transactions 0..counts[p]-1 of each partition
    (default: the template's). With damage, see the module docstring.
    """
    expected = tmpl.expected(counts or tmpl.counts)
    problems: list[str] = []
    errors: list[CorruptionError] = []

    def corruption(e: CorruptionError, where: str) -> None:
        errors.append(e)
        if damaged is None:
            problems.append(f"{where}: unexpected {e}")
        elif Path(e.path) != damaged.path or e.offset not in damaged.error_offsets:
            problems.append(f"{where}: CorruptionError names the wrong place: {e}")

    def prefix(got: list, want: list, where: str, complete: bool) -> None:
        for g, e in zip(got, want, strict=False):
            if tuple(g) != e:
                problems.append(f"{where}: returned {g[:9]}, but {e[:9]} was written")
                return
        if len(got) > len(want) or (complete and len(got) != len(want)):
            problems.append(f"{where}: returned {len(got)} events, {len(want)} expected")

    try:
        store = open_store(root)
    except CorruptionError as e:
        corruption(e, "open")
        if outcome is not None:
            outcome.update(errors=1, cut=False)
        return problems
    except Exception as e:  # noqa: BLE001 - any other failure is a finding
        return [f"open: {type(e).__name__}: {e}"]
    cut_units = False
    try:
        cuts = store.statistics().torn_tail_cuts
        ends = [store.durable_next(p) for p in range(PARTITIONS)]
        full_ends = [sum(1 for q, _ in expected if q == p) for p in range(PARTITIONS)]
        cut_units = cuts > 0 or ends != full_ends
        gone: set[tuple[int, int]] = set()
        if cut_units:
            if damaged is None or damaged.cut_at is None:
                problems.append(f"acknowledged data cut: ends {ends}, written {full_ends}")
            else:
                size = damaged.path.stat().st_size
                if size != damaged.cut_at:
                    problems.append(
                        f"cut to {size} bytes, not to the damaged units ({damaged.cut_at})"
                    )
                gone = {
                    (r.partition, r.sequence)
                    for r in tmpl.records[tmpl.active]
                    if r.unit_end > damaged.cut_at
                }
                want_ends = [
                    full_ends[p] - sum(1 for q, _ in gone if q == p) for p in range(PARTITIONS)
                ]
                if ends != want_ends:
                    problems.append(f"after the cut the ends are {ends}, expected {want_ends}")

        def read_raw_as_events(p: int, start: int, end: int | None, limit: int
                               ) -> tuple[list, bool]:  # fmt: skip
            records, more = store.read_partition_raw(p, start, end, limit)
            return [event_from_raw(r) for r in records], more

        for p in range(PARTITIONS):
            store.set_watermark(p, store.durable_next(p))
            want = [expected[(p, s)] for s in range(full_ends[p]) if (p, s) not in gone]
            # As Events, and as stored records: the path of EPSCAN, EPREAD and the API, which
            # checks runs of records at once.
            for name, read in (("read_partition", store.read_partition),
                               ("read_partition_raw", read_raw_as_events)):  # fmt: skip
                got: list = []
                ok = True
                try:
                    while True:
                        batch, more = read(p, len(got), None, 500)
                        got.extend(batch)
                        if not more:
                            break
                except CorruptionError as e:
                    corruption(e, f"{name}({p})")
                    ok = False
                prefix(got, want, f"{name}({p})", ok)
            for sid in w.all_streams(p):
                want_s = [e for e in want if e[7] == sid]
                ok = True
                try:
                    sevents, _ = store.read_stream(p, sid, 0, None, 1 << 30)
                except CorruptionError as e:
                    corruption(e, f"read_stream({p}, {sid!r})")
                    sevents, ok = [], False
                prefix(sevents, want_s, f"read_stream({p}, {sid!r})", ok)
            for e in want:
                where = f"get_event({p}, {e[0].hex()})"
                try:
                    ev = store.get_event(p, e[0])
                except CorruptionError as err:
                    corruption(err, where)
                    continue
                if ev is None:
                    problems.append(f"{where}: missing")
                elif tuple(ev) != e:
                    problems.append(f"{where}: returned {ev[:9]}, but {e[:9]} was written")
            for q, s in sorted(gone):
                if q == p and store.get_event(p, expected[(q, s)][0]) is not None:
                    problems.append(f"get_event: cut event {q}/{s} is still returned")
    except Exception as e:  # noqa: BLE001
        problems.append(f"read: {type(e).__name__}: {e}")
    finally:
        store.close()
    if damaged is not None and not errors and not cut_units:
        problems.append("damage not detected: no CorruptionError and nothing cut")
    if outcome is not None:
        outcome.update(errors=len(errors), cut=cut_units)
    return problems


def fresh_copy(tmpl: Template, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(tmpl.path, dst)
    return dst


def damaged_record_start(tmpl: Template, segment_id: int, offset: int) -> int:
    if offset < SEGMENT_HEADER_SIZE:
        return 0
    return next(r.start for r in tmpl.records[segment_id] if r.start <= offset < r.end)


def spread_offsets(size: int, n_even: int, n_random: int, rng: random.Random) -> list[int]:
    even = [i * (size - 1) // (n_even - 1) for i in range(n_even)]
    return sorted(set(even) | {rng.randrange(size) for _ in range(n_random)})


def flip_bit(path: Path, offset: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << bit)]))


# -------------------------------------------------------------------------- data corruption

# How the active segment is reopened: with the checkpoint written at close (the recovery scan
# covers nothing, so every damaged record is found by a read), with no checkpoint (the scan covers
# the whole segment) or with an earlier valid checkpoint (the scan covers the part after it).
ACTIVE_MODES = ["checkpoint", "no-checkpoint", "old-checkpoint"]


def _prepare_active(tmpl: Template, root: Path, mode: str) -> int:
    """Set up the active segment's checkpoint; returns where the recovery scan starts."""
    ckpt = tmpl.seg_dir(root, tmpl.active) / CHECKPOINT_FILE
    if mode == "checkpoint":
        return (tmpl.seg_dir(root, tmpl.active) / DATA_FILE).stat().st_size
    if mode == "no-checkpoint":
        ckpt.unlink()
        return SEGMENT_HEADER_SIZE
    ckpt.write_bytes(tmpl.old_checkpoint)
    start = _checkpoint_end(tmpl.old_checkpoint)
    assert (
        SEGMENT_HEADER_SIZE < start < (tmpl.seg_dir(root, tmpl.active) / DATA_FILE).stat().st_size
    )
    return start


def _checkpoint_end(data: bytes) -> int:
    meta = array("q")
    meta.frombytes(SectionFile(data, CHECKPOINT_MAGIC)["meta"])
    return meta[1]  # segment id, end offset, ...


def _interesting_active_offsets(tmpl: Template) -> list[int]:
    recs = tmpl.records[tmpl.active]
    last, before = recs[-1], recs[-2]
    # Fields of the last record's header (crc, magic, kind, length, unit position, sequence,
    # event id, lengths), its body, and the record before it (same unit).
    picks = [last.start + d for d in (0, 4, 6, 8, 16, 20, 40, 56, 80, 108, 112)]
    picks += [last.end - 1, before.start + 4, before.end - 1, recs[0].start]
    return [o for o in picks if o < last.end]


@pytest.mark.parametrize("segment", ["sealed", *ACTIVE_MODES])
def test_bit_flips_in_segments_are_detected_never_returned(
    template: Template, tmp_path: Path, segment: str
) -> None:
    tmpl = template
    rng = random.Random(f"{SEED} flips {segment}")
    seg = tmpl.sealed[1] if segment == "sealed" else tmpl.active
    size = tmpl.records[seg][-1].end
    n_even, n_random = (20, 8) if segment == "old-checkpoint" else (40, 16)
    offsets = spread_offsets(size, n_even, n_random, rng)
    if segment == "sealed":
        # The header: magic, bucket id, segment id, CRC.
        offsets = sorted(set(offsets) | {3, 11, 14, SEGMENT_HEADER_SIZE - 1})
    else:
        offsets = sorted(set(offsets) | set(_interesting_active_offsets(tmpl)))
    last_unit_start = tmpl.records[seg][-1].unit_start
    failures = []
    for offset in offsets:
        root = fresh_copy(tmpl, tmp_path, "case")
        scan_from = _prepare_active(tmpl, root, segment) if segment != "sealed" else size
        path = tmpl.seg_dir(root, seg) / DATA_FILE
        flip_bit(path, offset, rng.randrange(8))
        torn_looking = offset >= tmpl.records[seg][-1].start and offset >= scan_from
        damage = Damage(
            path,
            {damaged_record_start(tmpl, seg, offset)},
            last_unit_start if torn_looking else None,
        )
        outcome: dict = {}
        problems = check(tmpl, root, damage, outcome=outcome)
        if not problems and outcome.get("cut") and rng.random() < APPEND_AFTER_CUT_SHARE:
            problems = _append_after_recovery(tmpl, root)  # the store works on after a cut
        for problem in problems:
            failures.append(f"{segment} segment {seg}, bit flip at offset {offset}: {problem}")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("segment", ["sealed", "active", "active-old-checkpoint"])
def test_truncations_of_segments_are_detected_or_cut_cleanly(
    template: Template, tmp_path: Path, segment: str
) -> None:
    tmpl = template
    rng = random.Random(f"{SEED} truncations {segment}")
    seg = tmpl.sealed[0] if segment == "sealed" else tmpl.active
    recs = tmpl.records[seg]
    size = recs[-1].end
    n_even, n_random = (20, 6) if segment == "active-old-checkpoint" else (40, 12)
    offsets = spread_offsets(size, n_even, n_random, rng)
    offsets = sorted(
        set(offsets) | {0, 1, SEGMENT_HEADER_SIZE, recs[-1].start, recs[-1].unit_start}
    )
    failures = []
    for cut in offsets:
        root = fresh_copy(tmpl, tmp_path, "case")
        if segment == "active-old-checkpoint":
            _prepare_active(tmpl, root, "old-checkpoint")
        path = tmpl.seg_dir(root, seg) / DATA_FILE
        os.truncate(path, cut)
        affected = {r.start for r in recs if r.end > cut}
        if cut < SEGMENT_HEADER_SIZE:
            affected.add(0)
        if segment == "sealed" or cut < SEGMENT_HEADER_SIZE:
            cut_at = None
        else:
            # A truncated active segment looks like a torn write: the units reaching past the
            # cut may go, exactly those.
            cut_at = min([r.unit_start for r in recs if r.unit_end > cut], default=cut)
        outcome: dict = {}
        problems = check(tmpl, root, Damage(path, affected, cut_at), outcome=outcome)
        if not problems and outcome.get("cut") and rng.random() < APPEND_AFTER_CUT_SHARE:
            problems = _append_after_recovery(tmpl, root)  # the store works on after a cut
        for problem in problems:
            failures.append(f"{segment} segment {seg}, truncated to {cut}: {problem}")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:40])


@pytest.mark.timeout(60)
def test_truncation_below_a_checkpoint_is_reported(template: Template, tmp_path: Path) -> None:
    """Records a checkpoint covers were acknowledged: losing them is corruption, never a cut."""
    tmpl = template
    recs = tmpl.records[tmpl.active]
    for cut in (recs[len(recs) // 3].start + 7, recs[-1].start - 1):
        root = fresh_copy(tmpl, tmp_path, "case")
        path = tmpl.seg_dir(root, tmpl.active) / DATA_FILE
        assert (path.parent / CHECKPOINT_FILE).exists()
        os.truncate(path, cut)
        damaged = max(r.start for r in recs if r.start <= cut)
        with pytest.raises(CorruptionError) as info:
            Store.open(str(root))
        assert info.value.path == str(path)
        assert info.value.offset == damaged
        assert path.stat().st_size == cut  # nothing was cut or rewritten


@pytest.mark.timeout(120)
def test_writes_after_a_cut_survive_a_crash(template: Template, tmp_path: Path) -> None:
    """A cut, then acknowledged writes that regrow the segment, then a crash (no close).

    The records past the last checkpoint are the ones a crash can tear, so the checkpoint
    (written at close) is removed first. A session opens the segment (the open cuts the tail),
    appends until the segment is longer than before, and dies before any new checkpoint is due.
    After the reopen every acknowledged transaction must read back exactly, and nothing else.
    """
    tmpl = template
    recs = tmpl.records[tmpl.active]
    failures = []
    for cut in (recs[len(recs) // 3].start + 7, recs[-1].start - 1):
        root = fresh_copy(tmpl, tmp_path, "case")
        path = tmpl.seg_dir(root, tmpl.active) / DATA_FILE
        (path.parent / CHECKPOINT_FILE).unlink()
        full = path.stat().st_size
        os.truncate(path, cut)
        cut_at = min(r.unit_start for r in recs if r.unit_end > cut)  # where the open will cut
        settings = {
            "partitions": PARTITIONS,
            "buckets": 1,
            "segment_size_bytes": SEGMENT_SIZE,
            "checkpoint_interval_bytes": 1 << 30,  # no checkpoint before the crash
        }
        child = subprocess.run(
            [
                sys.executable,
                str(WORKLOAD),
                "--append-and-exit",
                str(root),
                json.dumps(settings),
                str(full - cut_at + 1),
            ],
            capture_output=True,
            timeout=60,
        )
        assert child.returncode == 0, child.stderr.decode(errors="replace")
        counts = json.loads(child.stdout)
        assert path.stat().st_size > full  # the segment grew past where the old data ended
        failures += [
            f"truncated to {cut}, then {counts} transactions written, crash, reopen: {p}"
            for p in check(tmpl, root, None, counts)
        ]
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:40])


# ---------------------------------------------------------------------- index files, checkpoint

INDEX_DAMAGE = [
    "delete",
    "empty",
    "half",
    "garbage-tail",
    "flip-magic",
    "flip-crc",
    "flip-count",
    "flip-length",
    "flip-table",
    "flip-middle",
    "flip-last",
]


def _damage_file(path: Path, how: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
        return
    if how == "empty":
        path.write_bytes(b"")
    elif how == "half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage-tail":
        path.write_bytes(data + bytes(rng.randrange(256) for _ in range(37)))
    else:
        where = {
            "flip-magic": 3,
            "flip-crc": 9,
            "flip-count": 12,
            "flip-length": 17,
            "flip-table": 30,
            "flip-middle": len(data) // 2,
            "flip-last": len(data) - 1,
        }[how]
        flip_bit(path, where, rng.randrange(8))


@pytest.mark.parametrize("index_file", [EIDX, PIDX, SIDX])
def test_damaged_or_missing_sealed_index_files_are_rebuilt(
    template: Template, tmp_path: Path, index_file: str
) -> None:
    tmpl = template
    rng = random.Random(f"{SEED} {index_file}")
    failures = []
    cases = [(tmpl.sealed[1], how) for how in INDEX_DAMAGE]
    cases += [(s, rng.choice(INDEX_DAMAGE)) for s in tmpl.sealed if s != tmpl.sealed[1]]
    for seg, how in cases:
        root = fresh_copy(tmpl, tmp_path, "case")
        seg_dir = tmpl.seg_dir(root, seg)
        original = (seg_dir / index_file).read_bytes()
        _damage_file(seg_dir / index_file, how, rng)
        for problem in check(tmpl, root, None):
            failures.append(f"segment {seg} {index_file} {how}: {problem}")
        if not index_files_ok(FileDisk(), str(seg_dir), verify=True):
            failures.append(f"segment {seg} {index_file} {how}: index files not valid afterwards")
        elif (seg_dir / index_file).read_bytes() != original:
            failures.append(f"segment {seg} {index_file} {how}: rebuilt file differs")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)


CHECKPOINT_DAMAGE = [*INDEX_DAMAGE, "old-valid", "other-segment"]


def _append_after_recovery(tmpl: Template, root: Path) -> list[str]:
    """Append the next transaction of every partition (exact expected versions), close, and
    check that the data dir then holds exactly what it held plus these."""
    store = open_store(root)
    try:
        counts = tmpl.counts_at([store.durable_next(p) for p in range(PARTITIONS)])
        for p in reversed(range(PARTITIONS)):
            store.set_watermark(p, store.durable_next(p))
            _append_txn(store, tmpl.models[p], p, counts[p])
        if not all(t.done for t in store.flush_all()):
            return ["appending after the recovery failed"]
    except Exception as e:  # noqa: BLE001 - a wrong recovered state shows up here
        return [f"appending after the recovery: {type(e).__name__}: {e}"]
    finally:
        store.close()
    return [f"after appending: {p}" for p in check(tmpl, root, None, [c + 1 for c in counts])]


def test_damaged_active_checkpoint_is_ignored_and_recovery_rescans(
    template: Template, tmp_path: Path
) -> None:
    tmpl = template
    rng = random.Random(f"{SEED} checkpoint")
    failures = []
    for how in CHECKPOINT_DAMAGE:
        root = fresh_copy(tmpl, tmp_path, "case")
        ckpt = tmpl.seg_dir(root, tmpl.active) / CHECKPOINT_FILE
        if how == "old-valid":
            ckpt.write_bytes(tmpl.old_checkpoint)
        elif how == "other-segment":
            ckpt.write_bytes(tmpl.foreign_checkpoint)  # valid, but of an earlier segment
        else:
            _damage_file(ckpt, how, rng)
        problems = check(tmpl, root, None)
        if not problems:
            problems = _append_after_recovery(tmpl, root)
        failures += [f"active.ckpt {how}: {p}" for p in problems]
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)


def test_streams_bloom_missing_or_damaged_is_rebuilt(template: Template, tmp_path: Path) -> None:
    tmpl = template
    rng = random.Random(f"{SEED} bloom")
    failures = []
    for how in INDEX_DAMAGE:
        root = fresh_copy(tmpl, tmp_path, "case")
        _damage_file(root / "buckets" / "00000" / "streams.bloom", how, rng)
        failures += [f"streams.bloom {how}: {p}" for p in check(tmpl, root, None)]
        if not failures:
            failures += [f"streams.bloom {how}: {p}" for p in _append_after_recovery(tmpl, root)]
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)


# ------------------------------------------------------------------------- lock and settings


def test_second_open_of_an_open_data_dir_is_refused(template: Template, tmp_path: Path) -> None:
    root = fresh_copy(template, tmp_path, "locked")
    store = open_store(root)
    try:
        with pytest.raises(DataDirLocked):
            open_store(root)
        with pytest.raises(DataDirLocked):
            Store.open(str(root))  # whatever the settings
        # Another process is refused too.
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys\n"
                "from sierradb.storage import DataDirLocked, Store\n"
                "try:\n"
                "    Store.open(sys.argv[1]).close()\n"
                "except DataDirLocked:\n"
                "    sys.exit(42)\n",
                str(root),
            ],
            capture_output=True,
            timeout=60,
        )
        assert probe.returncode == 42, probe.stderr.decode(errors="replace")
        # The refused opens did not disturb the open store.
        store.set_watermark(0, store.durable_next(0))
        assert store.read_partition(0, 0, None, 1)[0]
    finally:
        store.close()
    # Closed: it opens again, and everything is intact.
    assert check(template, root, None) == []


@pytest.mark.parametrize(
    "wrong",
    [
        {"partitions": PARTITIONS + 1},
        {"partitions": PARTITIONS - 1},
        {"buckets": 2},
        {"segment_size_bytes": SEGMENT_SIZE * 2},
        {"partitions": 64, "buckets": 4, "segment_size_bytes": 1 << 20},
    ],
)
def test_open_with_other_fixed_settings_is_refused(
    template: Template, tmp_path: Path, wrong: dict
) -> None:
    root = fresh_copy(template, tmp_path, "mismatch")
    with pytest.raises(DataDirMismatch):
        open_store(root, **wrong)
    # The refusal released the lock and changed nothing.
    assert check(template, root, None) == []
    # Settings left out mean "as recorded".
    store = Store.open(str(root))
    try:
        assert (store.partition_count, store.bucket_count, store.segment_size_bytes) == (
            PARTITIONS,
            1,
            SEGMENT_SIZE,
        )
    finally:
        store.close()
