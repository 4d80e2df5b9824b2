"""A container of named binary sections with one checksum, readable in place from an mmap.

Used for the sealed index files and for active-segment checkpoints::

    magic       8 bytes  (names the file kind, e.g. b"SDBEIDX1")
    crc         u32      CRC32C of everything after this field
    count       u32      number of sections
    body_len    u64      total file length
    table       count * (name 8 bytes, offset u64, length u64)
    sections    each 8-byte aligned

Readers check magic and length when they open a file (cheap) and the CRC when they first use it,
so a damaged index is noticed before any lookup trusts it.
"""

from __future__ import annotations

import struct

import google_crc32c

_HEAD = struct.Struct("<8sIIQ")
_ENTRY = struct.Struct("<8sQQ")
# Checkpoints and index files are tens of MB, built and checked on a thread beside the event
# loop, and each C call (a copy, a CRC) holds the GIL throughout: they go a slice at a time.
SLICE_BYTES = 4 << 20


class BadSectionFile(Exception):
    pass


def pack_sections(magic: bytes, sections: dict[str, bytes | bytearray | memoryview]) -> bytes:
    return b"".join(section_chunks(magic, sections))


def section_chunks(
    magic: bytes, sections: dict[str, bytes | bytearray | memoryview]
) -> list[bytes]:
    """The packed file as pieces to write one after another (``Disk.write_atomic`` takes the
    list): never copied whole, and its CRC taken a slice at a time."""
    assert len(magic) == 8
    table_len = _ENTRY.size * len(sections)
    pos = _HEAD.size + table_len
    entries = []
    chunks: list[bytes] = []
    for name, data in sections.items():
        pad = (-pos) % 8
        if pad:
            chunks.append(bytes(pad))
            pos += pad
        entries.append(_ENTRY.pack(name.encode().ljust(8, b"\0"), pos, len(data)))
        chunks.append(data if isinstance(data, bytes) else bytes(data))
        pos += len(data)
    body = [struct.pack("<IQ", len(sections), pos), *entries, *chunks]
    crc = 0
    for piece in body:
        crc = crc32c_extend(crc, piece)
    return [magic, struct.pack("<I", crc), *body]


def crc32c_extend(crc: int, data: bytes | memoryview) -> int:
    """The CRC32C of what `crc` covered followed by `data`, a slice at a time (SLICE_BYTES)."""
    if isinstance(data, bytes) and len(data) <= SLICE_BYTES:
        return int(google_crc32c.extend(crc, data))
    for i in range(0, len(data), SLICE_BYTES):
        crc = google_crc32c.extend(crc, bytes(data[i : i + SLICE_BYTES]))
    return crc


class SectionFile:
    """Sections of a packed file, as memoryviews into `buf` (bytes or an mmap)."""

    __slots__ = ("buf", "sections", "_verified")

    def __init__(self, buf: bytes | bytearray | memoryview, magic: bytes) -> None:
        view = memoryview(buf)
        if len(view) < _HEAD.size:
            raise BadSectionFile("file too short")
        got_magic, _crc, count, total = _HEAD.unpack_from(view, 0)
        if got_magic != magic:
            raise BadSectionFile(f"bad magic {got_magic!r}, expected {magic!r}")
        if total != len(view):
            raise BadSectionFile(f"length {len(view)} but header says {total}")
        table_end = _HEAD.size + count * _ENTRY.size
        if table_end > total:
            raise BadSectionFile("section table past end of file")
        self.buf = view
        self.sections: dict[str, memoryview] = {}
        for i in range(count):
            name, offset, length = _ENTRY.unpack_from(view, _HEAD.size + i * _ENTRY.size)
            if offset + length > total:
                raise BadSectionFile("section past end of file")
            self.sections[name.rstrip(b"\0").decode()] = view[offset : offset + length]
        self._verified = False

    def verify(self) -> None:
        if self._verified:
            return
        crc = int.from_bytes(self.buf[8:12], "little")
        if crc32c_extend(0, self.buf[12:]) != crc:
            raise BadSectionFile("CRC32C mismatch")
        self._verified = True

    def __getitem__(self, name: str) -> memoryview:
        try:
            return self.sections[name]
        except KeyError:
            raise BadSectionFile(f"missing section {name}") from None
