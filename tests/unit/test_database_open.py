"""The node opens its store with the configured storage settings."""

from __future__ import annotations

import os
from pathlib import Path

from sierradb.node.config import Config
from sierradb.node.database import Database
from sierradb.storage import NewEvent
from sierradb.storage.segment import CHECKPOINT_FILE

KIB = 1024


def _write(db: Database, total_bytes: int) -> None:
    payload = b"x" * 1000
    written = 0
    n = 0
    while written < total_bytes:
        ev = NewEvent(n.to_bytes(16, "big"), b"s", b"E", 1, b"", payload)
        db.store.append_leader(0, bytes(16), os.urandom(16), [ev], 1)
        db.store.flush(0)
        written += len(payload)
        n += 1


def _checkpoints(root: Path) -> list[Path]:
    return list(root.glob(f"buckets/*/segments/*/{CHECKPOINT_FILE}"))


def test_configured_checkpoint_interval_reaches_the_store(tmp_path: Path) -> None:
    config = Config(dir=tmp_path, partitions=1, buckets=1, checkpoint_interval_bytes=16 * KIB)
    db = Database.open(config)
    try:
        _write(db, 64 * KIB)
        assert _checkpoints(tmp_path), "no checkpoint after 4 intervals of data"
    finally:
        db.store.close()


def test_default_checkpoint_interval_writes_none_for_little_data(tmp_path: Path) -> None:
    db = Database.open(Config(dir=tmp_path, partitions=1, buckets=1))
    try:
        _write(db, 64 * KIB)
        assert not _checkpoints(tmp_path)
    finally:
        db.store.close()
