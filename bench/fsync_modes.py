"""What an fdatasync costs after a small write, by how the file's blocks were prepared.

    .venv/bin/python bench/fsync_modes.py DIR [--syncs 2000] [--record 1500] [--rounds 2]

Each mode writes `--record` bytes at the end of the previous write, then fdatasyncs, `--syncs`
times, in a fresh file under DIR (put DIR on the disk the data dir uses):

- append: the file grows with each write (the node's data files before stop 27);
- fallocate: the file was ``posix_fallocate``d first (what the node does now, 8 MiB ahead);
- prezeroed: zeros were written (and synced) first, so the blocks are written extents.

Prints syncs/s, p50/p99 of the fdatasync alone, and the process's system and user CPU per sync.
A write that grows a file makes the fdatasync commit the file system's journal too (the size);
inside allocated blocks only the data (and, for unwritten extents, their conversion) goes out.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable

PREPARED_BYTES = 64 << 20


def run(path: str, syncs: int, record: bytes, prepare: Callable[[int], None]) -> str:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        prepare(fd)
        os.fsync(fd)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        offset, lat = 0, []
        for _ in range(syncs):
            os.pwrite(fd, record, offset)
            offset += len(record)
            t = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.remove(path)
    lat.sort()
    return (
        f"{syncs / elapsed:7.0f} syncs/s, fdatasync p50 {lat[syncs // 2] * 1e6:4.0f} us "
        f"p99 {lat[int(syncs * 0.99)] * 1e6:4.0f} us, system CPU "
        f"{(r1.ru_stime - r0.ru_stime) / syncs * 1e6:4.0f} us/sync, user "
        f"{(r1.ru_utime - r0.ru_utime) / syncs * 1e6:3.0f} us/sync"
    )


def zero_fill(fd: int) -> None:
    zeros = bytes(1 << 20)
    for i in range(PREPARED_BYTES >> 20):
        os.pwrite(fd, zeros, i << 20)


MODES: dict[str, Callable[[int], None]] = {
    "append": lambda fd: None,
    "fallocate": lambda fd: os.posix_fallocate(fd, 0, PREPARED_BYTES),
    "prezeroed": zero_fill,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--syncs", type=int, default=2000)
    ap.add_argument("--record", type=int, default=1500, help="bytes written before each sync")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.syncs * args.record > PREPARED_BYTES:
        raise SystemExit(f"--syncs x --record must stay within {PREPARED_BYTES} bytes")
    os.makedirs(args.dir, exist_ok=True)
    record = os.urandom(args.record)
    for _ in range(args.rounds):
        for name, prepare in MODES.items():
            result = run(os.path.join(args.dir, f"fsync-{name}"), args.syncs, record, prepare)
            print(f"{name:10s} {result}", flush=True)


if __name__ == "__main__":
    main()
