"""Sequential scan of a segment's records: recovery of the active tail and index rebuilds.

The scan walks records from a start offset, groups them into atomic units and hands each
complete unit to a callback. It stops at the first bytes that are not a valid record. What those
bytes mean depends on what follows them:

- nothing valid after them (zeros, garbage, a record cut short, an incomplete last unit): a torn
  tail from a write that was never acknowledged, since a batch is acknowledged only after its
  fdatasync. The caller cuts it.
- a valid record somewhere after them: acknowledged data was damaged. That is never cut or
  skipped silently; the scan raises ``CorruptionError`` with the file and offset, and the node
  refuses to use the data until an operator (or, in a cluster, a replica) repairs it.

A valid record is found after damage by searching for the record magic and checking the CRC of
each candidate, so a damaged length field cannot hide the records behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import CorruptionError
from .record import MAGIC_BYTES, BadRecord, Header, decode_header


@dataclass(frozen=True, slots=True)
class ScanResult:
    valid_end: int  # end of the last complete unit
    torn_from: int | None  # where unusable tail bytes start, if there are any
    torn_reason: str
    records: int


def valid_record_after(buf: bytes, pos: int, end: int) -> int | None:
    """Index in `buf` of the first valid record starting after `pos`, or None."""
    i = pos + 1
    while True:
        found = buf.find(MAGIC_BYTES, i + 4, end)
        if found < 0:
            return None
        start = found - 4
        try:
            decode_header(buf, start, end)
            return start
        except BadRecord:
            i = start + 1


def scan_units(
    buf: bytes,
    base: int,
    path: str,
    on_unit: Callable[[list[tuple[int, Header]]], None],
) -> ScanResult:
    """Scan all of `buf`, which holds the segment's bytes from offset `base` on.

    `on_unit` receives each complete unit as (index in buf, header) pairs; the result's
    offsets are segment offsets.
    """
    pos = 0
    end = len(buf)
    unit: list[tuple[int, Header]] = []
    unit_start = 0
    records = 0
    while pos < end:
        try:
            h = decode_header(buf, pos, end)
        except BadRecord as e:
            after = valid_record_after(buf, pos, end)
            if after is not None:
                raise CorruptionError(
                    path, base + pos, f"{e}, followed by a valid record at offset {base + after}"
                ) from None
            # An incomplete unit before the bad bytes is part of the torn tail.
            return ScanResult(base + unit_start, base + unit_start, str(e), records)
        if h.unit_index != len(unit):
            raise CorruptionError(
                path, base + pos, f"record {h.unit_index} of a unit where {len(unit)} was expected"
            )
        if not unit:
            unit_start = pos
        unit.append((pos, h))
        pos += h.length
        records += 1
        if len(unit) == h.unit_count:
            on_unit(unit)
            unit = []
            unit_start = pos
    if unit:
        return ScanResult(
            base + unit_start, base + unit_start, "incomplete unit at end of segment", records
        )
    return ScanResult(base + pos, None, "", records)
