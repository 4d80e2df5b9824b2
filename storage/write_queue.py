"""The write queue of a bucket: appends assign positions and queue encoded records.

Theory of operation. Append calls (``append_leader``, ``append_replicated``, ``replace_tail``) run
on the caller's thread and touch only memory: under the bucket lock they check and assign
positions in the partition's state, encode the records and queue one atomic unit. Nothing queued
is readable (reads go through the indexes, which only ``group_commit`` fills after the sync), but
queued positions count for the next append (``next_sequence``, the stream tips) and queued ids for
idempotency (``pending_ids``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .bucket_recovery import BucketRecovery
from .errors import (
    Discarded,
    PartitionKeyMismatch,
    TransactionTooLarge,
    WrongExpectedVersion,
)
from .partition_state import PartitionState
from .record import Event, encode_discard
from .record_check import encode_event, reencode_event
from .segment import (
    SEGMENT_HEADER_SIZE,
)
from .transaction import ANY, EMPTY, EXISTS, NewEvent, Ticket, Unit

if TYPE_CHECKING:
    pass

log = logging.getLogger("sierradb.storage")

_new_tuple = tuple.__new__  # Unit(...) without its Python-level __new__ (the hot path)


class WriteQueue(BucketRecovery):
    """Appends of one bucket (memory only)."""

    def has_queued(self) -> bool:
        """Whether the next flush has units to write or dropped tickets to report."""
        return bool(self.pending or self.dropped)

    def _enqueue(self, unit: Unit) -> None:
        if len(unit.data) + SEGMENT_HEADER_SIZE > self.segment_size:
            raise TransactionTooLarge("events exceed the size of a single segment")
        self.pending.append(unit)
        self.pending_bytes += len(unit.data)

    def append_leader(
        self,
        partition_id: int,
        partition_key: bytes,
        transaction_id: bytes,
        events: list[NewEvent],
        term: int,
    ) -> Ticket:
        assert events, "a transaction needs at least one event"
        with self.lock:
            if self.broken is not None:
                self._check_writable()  # raises
            ps = self.parts[partition_id]
            if len(events) == 1:
                return self._append_one(ps, partition_key, transaction_id, events[0], term)
            seq0 = ps.next_sequence
            tips: dict[bytes, list] = {}
            versions = []
            for i, ev in enumerate(events):
                sid = ev.stream_id
                tip = tips.get(sid)
                if tip is None:
                    found = self._stream_tip(ps, sid)
                    tip = tips[sid] = [found[0], found[1], 0] if found else [0, None, 0]
                next_v = tip[0]
                if tip[1] is not None and tip[1] != partition_key:
                    raise PartitionKeyMismatch(sid, tip[1], partition_key)
                exp = ev.expected_version
                if exp != ANY and not (
                    (exp >= 0 and next_v - 1 == exp)
                    or (exp == EMPTY and next_v == 0)
                    or (exp == EXISTS and next_v > 0)
                ):
                    raise WrongExpectedVersion(
                        sid, partition_key, next_v - 1 if next_v else None, exp
                    )
                versions.append(next_v)
                tip[0] = next_v + 1
                tip[1] = partition_key
                tip[2] = seq0 + i
            n = len(events)
            records = []
            entries = []
            rel = 0
            for i, ev in enumerate(events):
                rec = encode_event(
                    term,
                    partition_id,
                    seq0 + i,
                    versions[i],
                    ev.timestamp_ms,
                    ev.event_id,
                    partition_key,
                    transaction_id,
                    ev.stream_id,
                    ev.event_name,
                    ev.metadata,
                    ev.payload,
                    i,
                    n,
                    i == n - 1,
                )
                entries.append(
                    (rel, seq0 + i, versions[i], ev.stream_id, partition_key, ev.event_id)
                )
                records.append(rec)
                rel += len(rec)
            ticket = Ticket(partition_id, seq0, seq0 + n - 1, versions, term)
            self._enqueue(Unit(ticket, partition_id, b"".join(records), entries, None, term))
            self._advance(ps, entries, tips, term)
            return ticket

    def _append_one(
        self,
        ps: PartitionState,
        partition_key: bytes,
        transaction_id: bytes,
        ev: NewEvent,
        term: int,
    ) -> Ticket:
        """append_leader for a single event (the common case), with its work inlined."""
        sid = ev.stream_id
        seq = ps.next_sequence
        streams = ps.streams
        tip = streams.get(sid)
        key: bytes | None
        if tip is not None:
            streams.move_to_end(sid)
            ps.cache_hits += 1
            next_v = tip[0]
            key = tip[1]
        else:
            found = self._stream_tip(ps, sid)
            next_v, key = (found[0], found[1]) if found is not None else (0, None)
        if key is not None and key != partition_key:
            raise PartitionKeyMismatch(sid, key, partition_key)
        exp = ev.expected_version
        if exp != ANY and not (
            (exp >= 0 and next_v - 1 == exp)
            or (exp == EMPTY and next_v == 0)
            or (exp == EXISTS and next_v > 0)
        ):
            raise WrongExpectedVersion(sid, partition_key, next_v - 1 if next_v else None, exp)
        p = ps.partition_id
        event_id = ev.event_id
        rec = encode_event(
            term, p, seq, next_v, ev.timestamp_ms, event_id, partition_key, transaction_id,
            sid, ev.event_name, ev.metadata, ev.payload, 0, 1, True,
        )  # fmt: skip
        size = len(rec)
        if size + SEGMENT_HEADER_SIZE > self.segment_size:
            raise TransactionTooLarge("events exceed the size of a single segment")
        ticket = Ticket(p, seq, seq, [next_v], term)
        unit = (ticket, p, rec, [(0, seq, next_v, sid, partition_key, event_id)], None, term)
        self.pending.append(_new_tuple(Unit, unit))  # type: ignore[arg-type]
        self.pending_bytes += size
        ps.next_sequence = seq + 1
        ps.last_term = term
        ps.pending_ids[event_id] = seq
        if tip is not None or sid in streams:  # (_stream_tip may have cached it)
            streams[sid] = (next_v + 1, partition_key, seq)  # at the end already
        else:
            ps.remember_stream(sid, next_v + 1, partition_key, seq)
        return ticket

    def _advance(
        self, ps: PartitionState, entries: list, tips: dict[bytes, list], term: int
    ) -> None:
        ps.next_sequence = entries[-1][1] + 1
        ps.last_term = term
        pending_ids = ps.pending_ids
        for e in entries:
            pending_ids[e[5]] = e[1]
        for sid, tip in tips.items():
            ps.remember_stream(sid, tip[0], tip[1], tip[2])

    def append_replicated(self, partition_id: int, events: list[Event]) -> Ticket:
        """Append entries whose positions and term the leader gave (one atomic unit)."""
        with self.lock:
            self._check_writable()
            ps = self.parts[partition_id]
            return self._append_positioned(ps, events, None)

    def replace_tail(self, partition_id: int, from_sequence: int, events: list[Event]) -> Ticket:
        """Discard the partition's entries at and above `from_sequence`, then append `events`.

        The discard marker and the entries are one atomic unit. Queued entries of the partition
        at or above the point are dropped (their tickets fail with Discarded).
        """
        with self.lock:
            self._check_writable()
            ps = self.parts[partition_id]
            assert from_sequence >= ps.watermark, (
                f"partition {partition_id}: discard from {from_sequence} at or below the "
                f"watermark {ps.watermark}"
            )
            assert from_sequence <= ps.next_sequence, "discard point beyond the log end"
            kept = []
            for u in self.pending:
                if u.partition_id == partition_id and u.ticket.first_sequence >= from_sequence:
                    u.ticket.error = Discarded(f"discarded from sequence {from_sequence}")
                    self.pending_bytes -= len(u.data)
                    self.dropped.append(u.ticket)  # reported by the next flush
                    if u.discard_from is not None:
                        ps.pending_discards.remove(u.discard_from)
                else:
                    kept.append(u)
            self.pending = kept
            ps.pending_discards.append(from_sequence)
            ps.next_sequence = from_sequence
            ps.streams.clear()
            ps.pending_ids = {e: s for e, s in ps.pending_ids.items() if s < from_sequence}
            # Streams with entries still queued below the point must stay cached (see state),
            # except entries that an earlier queued discard, behind them, already removes.
            queued = [u for u in (*self.inflight, *self.pending) if u.partition_id == partition_id]
            alive: list[list] = []
            later_discard = from_sequence
            for u in reversed(queued):
                alive.append([e for e in u.entries if e[1] < later_discard])
                if u.discard_from is not None:
                    later_discard = min(later_discard, u.discard_from)
            for entries in reversed(alive):
                for _rel, seq, version, sid, key, _eid in entries:
                    ps.remember_stream(sid, version + 1, key, seq)
            ps.last_term = self._term_before(ps, from_sequence)
            return self._append_positioned(ps, events, from_sequence)

    def _append_positioned(
        self, ps: PartitionState, events: list[Event], discard_from: int | None
    ) -> Ticket:
        seq = ps.next_sequence
        tips: dict[bytes, list] = {}
        records = []
        entries = []
        versions = []
        rel = 0
        count = len(events) + (1 if discard_from is not None else 0)
        if discard_from is not None:
            marker = encode_discard(
                partition_id=ps.partition_id,
                from_sequence=discard_from,
                term=events[-1].term if events else ps.last_term,
                unit_index=0,
                unit_count=count,
            )
            records.append(marker)
            rel = len(marker)
        for i, e in enumerate(events):
            assert e.partition_id == ps.partition_id, "entry for another partition"
            assert e.partition_sequence == seq + i, (
                f"partition {ps.partition_id}: entry {e.partition_sequence} does not extend the "
                f"log at {seq + i}"
            )
            tip = tips.get(e.stream_id)
            if tip is None:
                found = self._stream_tip(ps, e.stream_id)
                tip = tips[e.stream_id] = [found[0], found[1], 0] if found else [0, None, 0]
            assert e.stream_version == tip[0], (
                f"stream {e.stream_id!r}: replicated version {e.stream_version} but the local "
                f"next version is {tip[0]}"
            )
            assert tip[1] is None or tip[1] == e.partition_key, "partition key changed"
            tip[0] += 1
            tip[1] = e.partition_key
            tip[2] = e.partition_sequence
            index = i + (1 if discard_from is not None else 0)
            rec = reencode_event(e, unit_index=index, unit_count=count)
            entries.append(
                (
                    rel,
                    e.partition_sequence,
                    e.stream_version,
                    e.stream_id,
                    e.partition_key,
                    e.event_id,
                )
            )
            versions.append(e.stream_version)
            records.append(rec)
            rel += len(rec)
        last = seq + len(events) - 1
        term = events[-1].term if events else ps.last_term
        ticket = Ticket(ps.partition_id, seq, last, versions, term)
        self._enqueue(Unit(ticket, ps.partition_id, b"".join(records), entries, discard_from, term))
        if entries:
            self._advance(ps, entries, tips, term)
        return ticket
