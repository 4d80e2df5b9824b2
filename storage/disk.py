"""The file-system seam: a real disk and a fault-injecting in-memory twin.

Every byte the engine stores goes through a ``Disk``. ``FileDisk`` uses the real file system with
``pwrite``/``pread``/``fdatasync`` and ``mmap``. ``MemoryDisk`` keeps files in memory and models
what a crash does to them: bytes written since a file's last sync are lost, except that the most
recent unsynced write may survive in part (a torn write: a prefix of it, optionally followed by
garbage). A file created, renamed or removed is durable once the directory is synced, which the
engine always does right away (``write_atomic`` and ``make_dirs`` sync the directory), so the twin
treats directory changes as durable at once. A twin can also be told to fail the next writes or
syncs (``fail_writes``), as a full disk does.
"""

from __future__ import annotations

import errno
import mmap
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class DiskFile(Protocol):
    path: str

    def pread(self, size: int, offset: int) -> bytes: ...
    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None: ...
    def sync(self) -> None: ...
    def size(self) -> int: ...
    def truncate(self, size: int) -> None: ...
    def allocate(self, size: int) -> None: ...
    def map(self) -> memoryview: ...
    def view(self, size: int) -> memoryview | None: ...
    def drop_resident(self) -> None: ...
    def close(self) -> None: ...


class Disk(Protocol):
    def open(self, path: str, create: bool = False) -> DiskFile: ...
    def exists(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]: ...
    def make_dirs(self, path: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def read_file(self, path: str) -> bytes: ...
    def write_atomic(self, path: str, data: bytes | list[bytes]) -> None: ...


# ------------------------------------------------------------------------------- real files


# posix_fallocate's answers that mean "not here" rather than "no room": writes go on without it.
_CANNOT_ALLOCATE = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS})


class _RealFile:
    __slots__ = ("path", "fd", "_map", "_map_size")

    def __init__(self, path: str, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.path = path
        self.fd = os.open(path, flags, 0o644)
        self._map: mmap.mmap | None = None
        self._map_size = 0

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view = view[written:]
            offset += written

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def allocate(self, size: int) -> None:
        """Make the file `size` bytes long if it is shorter, zero-filled and its blocks allocated
        (``posix_fallocate``), so that writes inside it change no metadata and an fdatasync has
        only data to flush."""
        have = os.fstat(self.fd).st_size
        if size > have:
            try:
                os.posix_fallocate(self.fd, have, size - have)
            except OSError as e:
                if e.errno not in _CANNOT_ALLOCATE:
                    raise  # ENOSPC: the disk is full, as a write would find
                # A file system without fallocate (glibc's fallback failed too): the file grows
                # with its writes, as it always did.

    def map(self) -> memoryview:
        size = self.size()
        if self._map is None or self._map_size != size:
            if size == 0:
                return memoryview(b"")
            self._map = mmap.mmap(self.fd, size, access=mmap.ACCESS_READ)
            self._map_size = size
        return memoryview(self._map)

    def view(self, size: int) -> memoryview | None:
        """At least the first `size` bytes, mapped (no copy), or None if the file is shorter.
        The map grows with the file; a smaller one is dropped once no reader holds a view of it.
        Only bytes that never change may be read through it (below a data file's durable end)."""
        mapped = self._map
        if mapped is None or self._map_size < size:
            file_size = self.size()
            if size <= 0 or file_size < size:
                return None
            try:
                mapped = mmap.mmap(self.fd, file_size, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None  # a file system that cannot map it: readers pread
            self._map, self._map_size = mapped, file_size
        return memoryview(mapped)

    def drop_resident(self) -> None:
        """Let the kernel drop the mapped pages from this process (they stay in page cache)."""
        if self._map is not None:
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        # A map still referenced by a memoryview cannot be closed; the GC frees it later.
        self._map = None
        os.close(self.fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileDisk:
    """The real file system."""

    def open(self, path: str, create: bool = False) -> DiskFile:
        return _RealFile(path, create)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def make_dirs(self, path: str) -> None:
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for created in reversed(missing):
            os.mkdir(created)
            _fsync_dir(os.path.dirname(created) or ".")

    def remove(self, path: str) -> None:
        os.remove(path)
        _fsync_dir(os.path.dirname(path) or ".")

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write_atomic(self, path: str, data: bytes | list[bytes]) -> None:
        """Temp file, fsync, rename over the target, fsync the directory. `data` may be a list
        of pieces, written one after another (never joined: see ``sectionfile``)."""
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for piece in data if isinstance(data, list) else [data]:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        _fsync_dir(os.path.dirname(path) or ".")


# ------------------------------------------------------------------------ in-memory twin


class _MemFile:
    __slots__ = ("path", "disk", "durable", "current", "unsynced")

    def __init__(self, path: str, disk: MemoryDisk) -> None:
        self.path = path
        self.disk = disk
        self.durable = bytearray()
        self.current = bytearray()
        # Writes since the last sync, in order: (offset, data) or ("truncate", size).
        self.unsynced: list[tuple[int, bytes] | tuple[str, int]] = []


class _MemHandle:
    __slots__ = ("path", "_f", "_closed")

    def __init__(self, f: _MemFile) -> None:
        self.path = f.path
        self._f = f
        self._closed = False

    def _file(self) -> _MemFile:
        assert not self._closed, "use of a closed file"
        f = self._f
        # A crash replaces the disk's files; a handle from before the crash is dead.
        assert self._f.disk.files.get(self.path) is f, "file handle outlived a crash"
        return f

    def pread(self, size: int, offset: int) -> bytes:
        return bytes(self._file().current[offset : offset + size])

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        f = self._file()
        f.disk._maybe_fail("write")
        data = bytes(data)
        if len(f.current) < offset:
            f.current.extend(b"\0" * (offset - len(f.current)))
        f.current[offset : offset + len(data)] = data
        f.unsynced.append((offset, data))

    def sync(self) -> None:
        f = self._file()
        f.disk._maybe_fail("sync")
        f.durable = bytearray(f.current)
        f.unsynced.clear()

    def size(self) -> int:
        return len(self._file().current)

    def truncate(self, size: int) -> None:
        f = self._file()
        del f.current[size:]
        f.unsynced.append(("truncate", size))

    def allocate(self, size: int) -> None:
        """Zeros to `size` bytes: a write of zeros, as unsynced as any other."""
        f = self._file()
        f.disk._maybe_fail("write")
        if size > len(f.current):
            zeros = bytes(size - len(f.current))
            f.unsynced.append((len(f.current), zeros))
            f.current.extend(zeros)

    def map(self) -> memoryview:
        return memoryview(bytes(self._file().current))

    def view(self, size: int) -> memoryview | None:
        return None  # a copy would cost more than the preads it saves: readers pread

    def drop_resident(self) -> None:
        pass

    def close(self) -> None:
        self._closed = True


class MemoryDisk:
    """An in-memory disk that can crash (losing unsynced bytes) and fail writes on demand."""

    def __init__(self, seed: int = 0) -> None:
        self.files: dict[str, _MemFile] = {}
        self.dirs: set[str] = {"", "/"}
        self.rng = random.Random(seed)
        self._fail: dict[str, int] = {}

    # -- faults
    def fail_writes(self, kind: str = "write", count: int = 1) -> None:
        """Make the next `count` operations of `kind` ("write" or "sync") raise ENOSPC."""
        self._fail[kind] = count

    def _maybe_fail(self, kind: str) -> None:
        left = self._fail.get(kind, 0)
        if left:
            self._fail[kind] = left - 1
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

    @contextmanager
    def failing(self, kind: str = "write", count: int = 1 << 30) -> Iterator[None]:
        self.fail_writes(kind, count)
        try:
            yield
        finally:
            self._fail.pop(kind, None)

    def crash(self, tear: bool = True) -> None:
        """Lose every unsynced write; the newest one may survive torn (prefix, maybe garbage)."""
        survivors: dict[str, _MemFile] = {}
        for path, f in self.files.items():
            new = _MemFile(path, self)
            content = bytearray(f.durable)
            if tear and f.unsynced and self.rng.random() < 0.7:
                # Some leading unsynced writes reach the disk whole, the next one in part.
                keep = self.rng.randrange(len(f.unsynced) + 1)
                for op in f.unsynced[:keep]:
                    _apply(content, op)
                if keep < len(f.unsynced):
                    op = f.unsynced[keep]
                    if isinstance(op[0], int):
                        offset, data = op  # type: ignore[misc]
                        assert isinstance(data, bytes)
                        cut = self.rng.randrange(len(data) + 1)
                        torn = data[:cut]
                        if self.rng.random() < 0.5:
                            torn += bytes(
                                self.rng.randrange(256) for _ in range(min(64, len(data) - cut))
                            )
                        _apply(content, (offset, torn))
            new.durable = bytearray(content)
            new.current = bytearray(content)
            survivors[path] = new
        self.files = survivors

    # -- Disk protocol
    def open(self, path: str, create: bool = False) -> DiskFile:
        f = self.files.get(path)
        if f is None:
            if not create:
                raise FileNotFoundError(errno.ENOENT, "No such file", path)
            assert os.path.dirname(path) in self.dirs, f"no directory for {path}"
            f = self.files[path] = _MemFile(path, self)
        return _MemHandle(f)

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.dirs

    def listdir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "No such directory", path)
        prefix = path.rstrip("/") + "/"
        names = {
            p[len(prefix) :].split("/")[0]
            for p in [*self.files, *self.dirs]
            if p.startswith(prefix)
        }
        names.discard("")
        return sorted(names)

    def make_dirs(self, path: str) -> None:
        while path not in self.dirs:
            self.dirs.add(path)
            path = os.path.dirname(path)

    def remove(self, path: str) -> None:
        del self.files[path]

    def read_file(self, path: str) -> bytes:
        f = self.files.get(path)
        if f is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", path)
        return bytes(f.current)

    def write_atomic(self, path: str, data: bytes | list[bytes]) -> None:
        self._maybe_fail("write")
        if isinstance(data, list):
            data = b"".join(data)
        assert os.path.dirname(path) in self.dirs, f"no directory for {path}"
        f = _MemFile(path, self)
        f.durable = bytearray(data)
        f.current = bytearray(data)
        self.files[path] = f

    # -- test helpers
    def corrupt(self, path: str, offset: int, xor: int = 0x01) -> None:
        """Flip bits of one durable byte (a bad sector, a cosmic ray)."""
        f = self.files[path]
        f.durable[offset] ^= xor
        f.current[offset] ^= xor


def _apply(content: bytearray, op: tuple[int, bytes] | tuple[str, int]) -> None:
    if op[0] == "truncate":
        del content[op[1] :]  # type: ignore[misc]
        return
    offset, data = op  # type: ignore[misc]
    assert isinstance(offset, int) and isinstance(data, bytes)
    if len(content) < offset:
        content.extend(b"\0" * (offset - len(content)))
    content[offset : offset + len(data)] = data
