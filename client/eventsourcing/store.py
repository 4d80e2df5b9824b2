"""How an `eventsourcing` application's records live in SierraDB: one partition per application.

Theory of operation.

*Layout.* Everything of one application is written under one partition key (derived from the
application's name, or set with `SIERRADB_PARTITION_KEY`), so it lives in one partition:

* each aggregate is a stream whose id is the originator id (`str(uuid)`, or the text id);
  `originator_version` is kept in the event's metadata, the topic is the event name, the state
  is the payload;
* snapshots (and any other recorder purpose) are streams `$<purpose>/<originator id>`;
* tracking records of an upstream application are the stream `$tracking/<upstream name>`, one
  event per record, its notification id as payload.

*Notification ids* are partition sequences plus one (the library counts from 1). One partition
gives the total order the application sequence needs, and one `insert_events` call is one
`EMAPPEND`, atomic, with its events at consecutive sequences. The application's notifications
are the partition's events carrying its partition key on streams not starting with `$`. So the
ids are strictly increasing, but not always contiguous: tracking records and snapshots take
sequences too, and so do the events of other applications whose partition keys fall in the same
partition (32 partitions by default). Those are filtered out by their partition key, so each
application still sees only its own notifications; its ids then have gaps.

*Versions and conflicts.* Stream versions are gapless from 0; originator versions are whatever
the library gives (aggregates count from 1, snapshots skip versions). An append expects the
stream version of the stream's last event, with that event's originator version remembered in a
bounded cache of stream tails (filled by writes and reads). A new event whose originator version
is not above the tail's is refused at once with `IntegrityError`: a stream only grows, so that
version is taken (or lies below the tail). When the cache is empty or stale the server refuses
the append with `WRONGVER` and the current version; the tail event is then read, the check
repeated, and the append sent again with the right expectation. The server's check is atomic,
so two writers of one aggregate version can never both succeed. Tracking records work the same
way, comparing notification ids: a repeated or lower one is refused with `IntegrityError`.

*Scaling trade-off.* One partition has one sequencer (its leader), so an application's write
throughput is that of one partition, and its notifications are read from one partition. Many
applications spread over the partitions; one application does not.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    Notification,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)

from sierradb.client import (
    Client,
    ConnectionFailed,
    DatabaseOperationFailed,
    Duplicate,
    Event,
    ExpectedVersion,
    InvalidArgument,
    NewEvent,
    ServerError,
    SierraDBError,
    WrongExpectedVersion,
    partition_key_for_stream,
    protocol,
)
from sierradb.client.protocol import Request

RESERVED_PREFIX = "$"
TRACKING_EVENT_NAME = "Tracking"
MAX_STREAM_ID_BYTES = 64
TAIL_CACHE_ENTRIES = 100_000
"""Stream tails remembered (stream version and originator version of the last event)."""
MAX_CONFLICT_ROUNDS = 50
"""An append refused this often for stale expectations in a row gives up (OperationalError)."""
PAGE_SIZE = 500
_METADATA_KEY = "originator_version"


def library_error(e: SierraDBError) -> DatabaseError:
    """The client's error as the library's (PEP 249 style) persistence error."""
    if isinstance(e, (WrongExpectedVersion, Duplicate)):
        return IntegrityError(str(e))
    if isinstance(e, DatabaseOperationFailed):
        if "partition key must be the same" in e.message:
            return IntegrityError(f"stream bound to another application: {e}")
        return DatabaseError(str(e))
    if isinstance(e, InvalidArgument):
        return DataError(str(e))
    if isinstance(e, ConnectionFailed):
        return OperationalError(str(e))
    if isinstance(e, ServerError):
        return (OperationalError if e.retryable else DatabaseError)(str(e))
    return DatabaseError(str(e))


class _TranslatedErrors:
    """`with translated_errors():` raises the client's errors as the library's (a plain
    context manager rather than a generator one: it wraps every save)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if isinstance(error, SierraDBError):
            raise library_error(error) from error


_TRANSLATED_ERRORS = _TranslatedErrors()


def translated_errors() -> _TranslatedErrors:
    return _TRANSLATED_ERRORS


def encode_metadata(originator_version: int) -> bytes:
    return b'{"%s":%d}' % (_METADATA_KEY.encode(), originator_version)


def decode_metadata(metadata: bytes) -> int:
    return int(json.loads(metadata)[_METADATA_KEY])


TRACKING_PREFIX = f"{RESERVED_PREFIX}tracking/"


def tracking_stream(application_name: str) -> str:
    stream = TRACKING_PREFIX + application_name
    if len(stream.encode()) > MAX_STREAM_ID_BYTES:
        stream = TRACKING_PREFIX + str(uuid.uuid5(uuid.NAMESPACE_OID, application_name))
    return stream


def position(stream_id: str, payload: bytes, metadata: bytes) -> int:
    """What a stream's events are ordered by: the notification id of a tracking record, the
    originator version of any other event."""
    if stream_id.startswith(TRACKING_PREFIX):
        return int(payload)
    return decode_metadata(metadata)


class _Tails:
    """Bounded cache: stream id -> (stream version, originator version or notification id) of
    its last known event. Only ever a hint: the server checks every expectation."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> tuple[int, int] | None:
        with self._lock:
            return self._entries.get(stream_id)

    def put(self, stream_id: str, stream_version: int, position: int) -> None:
        with self._lock:
            old = self._entries.get(stream_id)
            if old is not None and old[0] > stream_version:
                return  # streams only grow: keep the newer tail
            self._entries[stream_id] = (stream_version, position)
            self._entries.move_to_end(stream_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        with self._lock:
            self._entries.pop(stream_id, None)


class ApplicationPartition:
    """The records of one application (one partition key), shared by its recorders."""

    def __init__(self, client: Client, partition_key: uuid.UUID, originator_id_type: str) -> None:
        if originator_id_type not in ("uuid", "text"):
            raise ValueError("the originator id type is 'uuid' or 'text'")
        self.client = client
        self.partition_key = partition_key
        self.uuid_ids = originator_id_type == "uuid"
        self.tails = _Tails(TAIL_CACHE_ENTRIES)
        self.bases = _Tails(TAIL_CACHE_ENTRIES)  # stream id -> (0, originator version at 0)

    # ------------------------------------------------------------------------- naming
    def stream_id(self, originator_id: uuid.UUID | str, purpose: str) -> str:
        if type(originator_id) is uuid.UUID and purpose == "events":
            return str(originator_id)  # 36 ASCII bytes, never starting with "$"
        text = str(originator_id)
        if purpose != "events":
            text = f"{RESERVED_PREFIX}{purpose}/{text}"
        elif text.startswith(RESERVED_PREFIX):
            raise ProgrammingError(f"originator ids must not start with {RESERVED_PREFIX!r}")
        if not 0 < len(text.encode()) <= MAX_STREAM_ID_BYTES:
            raise DataError(f"stream id {text!r} is longer than {MAX_STREAM_ID_BYTES} bytes")
        return text

    def originator_id(self, stream_id: str) -> uuid.UUID | str:
        return uuid.UUID(stream_id) if self.uuid_ids else stream_id

    def is_notification(self, event: Event) -> bool:
        return event.partition_key == self.partition_key and not event.stream_id.startswith(
            RESERVED_PREFIX
        )

    def notification(self, event: Event) -> Notification:
        return Notification(
            id=event.partition_sequence + 1,
            originator_id=self.originator_id(event.stream_id),
            originator_version=decode_metadata(event.metadata),
            topic=event.event_name,
            state=event.payload,
        )

    # -------------------------------------------------------------------------- writes
    def write(
        self, stored_events: Sequence[StoredEvent], purpose: str, tracking: Tracking | None
    ) -> list[int]:
        """Append the events (and the tracking record) in one atomic multi-append; the
        notification ids of the events."""
        if not stored_events and tracking is None:
            return []
        streams = [self.stream_id(e.originator_id, purpose) for e in stored_events]
        if len(streams) > 1:
            last_versions: dict[str, int] = {}
            for stream, event in zip(streams, stored_events, strict=True):
                if stream in last_versions and event.originator_version <= last_versions[stream]:
                    raise IntegrityError(
                        f"originator versions must increase within a write: {event}"
                    )
                last_versions[stream] = event.originator_version
        track = None if tracking is None else tracking_stream(tracking.application_name)
        with translated_errors():
            for _ in range(MAX_CONFLICT_ROUNDS):
                events, positions = self._new_events(streams, stored_events, tracking, track)
                request = Request(
                    protocol.multi_append_args(self.partition_key, events),
                    protocol.parse_multi_append_positions,
                )
                try:
                    first, versions = self.client.execute(request)
                except WrongExpectedVersion as e:
                    self._refresh_tail(e)
                    continue
                for new, version, at in zip(events, versions, positions, strict=True):
                    self.tails.put(new.stream_id, version, at)
                return [first + i + 1 for i in range(len(stored_events))]
        raise OperationalError(f"append refused {MAX_CONFLICT_ROUNDS} times for stale versions")

    def _new_events(
        self,
        streams: list[str],
        stored_events: Sequence[StoredEvent],
        tracking: Tracking | None,
        track: str | None,
    ) -> tuple[list[NewEvent], list[int]]:
        """The events to append, and the position (store.position) of each."""
        running: dict[str, int | None] = {}  # stream -> version the next event expects

        def expect(stream: str, at: int, what: str) -> int | ExpectedVersion:
            if stream not in running:
                tail = self.tails.get(stream)
                if tail is not None and at <= tail[1]:
                    raise IntegrityError(f"{what} {at} is not above {tail[1]} in {stream}")
                running[stream] = None if tail is None else tail[0]
            last = running[stream]
            running[stream] = 0 if last is None else last + 1
            return ExpectedVersion.EMPTY if last is None else last

        events = [
            NewEvent(
                stream,
                e.topic,
                e.state,
                metadata=encode_metadata(e.originator_version),
                expected_version=expect(stream, e.originator_version, "originator version"),
            )
            for stream, e in zip(streams, stored_events, strict=True)
        ]
        positions = [e.originator_version for e in stored_events]
        if tracking is not None and track is not None:
            expected = expect(track, tracking.notification_id, "notification id")
            payload = str(tracking.notification_id).encode()
            events.append(NewEvent(track, TRACKING_EVENT_NAME, payload, expected_version=expected))
            positions.append(tracking.notification_id)
        return events, positions

    def _refresh_tail(self, conflict: WrongExpectedVersion) -> None:
        """Learn the tail of the stream whose expectation was stale."""
        stream = conflict.stream_id
        if stream is None:
            raise conflict
        if conflict.current is None:
            self.tails.forget(stream)
            return
        self._read_tail(stream, conflict.current)

    def _read_tail(self, stream: str, version: int) -> tuple[int, int] | None:
        page = self.client.scan_stream_page(
            stream, version, version, count=1, partition_key=self.partition_key
        )
        if not page.events:
            return None
        event = page.events[0]
        tail = (event.stream_version, position(stream, event.payload, event.metadata))
        self.tails.put(stream, *tail)
        return tail

    # --------------------------------------------------------------------------- reads
    def select_events(
        self,
        originator_id: uuid.UUID | str,
        purpose: str,
        *,
        gt: int | None,
        lte: int | None,
        desc: bool,
        limit: int | None,
    ) -> list[StoredEvent]:
        stream = self.stream_id(originator_id, purpose)
        with translated_errors():
            if desc:
                found = self._select_descending(stream, gt, lte, limit)
            else:
                found = self._select_ascending(stream, gt, lte, limit)
        return [
            StoredEvent(
                originator_id=originator_id,
                originator_version=decode_metadata(e.metadata),
                topic=e.event_name,
                state=e.payload,
            )
            for e in found
        ]

    def _select_ascending(
        self, stream: str, gt: int | None, lte: int | None, limit: int | None
    ) -> list[Event]:
        start = 0 if gt is None else self._first_version_after(stream, gt)
        found: list[Event] = []
        last: Event | None = None
        for event in self.client.scan_stream(
            stream, start, page_size=PAGE_SIZE, partition_key=self.partition_key
        ):
            last = event
            version = decode_metadata(event.metadata)
            if gt is not None and version <= gt:
                continue
            if lte is not None and version > lte:
                return found
            found.append(event)
            if limit is not None and len(found) >= limit:
                return found
        if last is not None:  # read to the end: this is the tail
            self.tails.put(stream, last.stream_version, decode_metadata(last.metadata))
        return found

    def _first_version_after(self, stream: str, gt: int) -> int:
        """A stream version at or before the first event above originator version `gt`.

        Originator versions increase by at least one per stream version, so with `base` the
        originator version at stream version 0, the first event above `gt` is at stream version
        `gt + 1 - base` or before; exactly there when that event's originator version is
        `gt + 1` (no gap before it), which is the common case (aggregates count one by one).
        """
        base = self.bases.get(stream)
        if base is None:
            page = self.client.scan_stream_page(
                stream, 0, 0, count=1, partition_key=self.partition_key
            )
            if not page.events:
                return 0
            base = (0, decode_metadata(page.events[0].metadata))
            self.bases.put(stream, *base)
        guess = gt + 1 - base[1]
        if guess <= 0:
            return 0
        page = self.client.scan_stream_page(
            stream, guess, guess, count=1, partition_key=self.partition_key
        )
        if page.events and decode_metadata(page.events[0].metadata) == gt + 1:
            return guess
        return 0  # gaps before it: scan from the start

    def _select_descending(
        self, stream: str, gt: int | None, lte: int | None, limit: int | None
    ) -> list[Event]:
        high = self.client.stream_version(stream, self.partition_key)
        found: list[Event] = []
        while high is not None and high >= 0:
            low = max(0, high - PAGE_SIZE + 1)
            page = self.client.scan_stream_page(
                stream, low, high, count=PAGE_SIZE, partition_key=self.partition_key
            )
            for event in reversed(page.events):
                version = decode_metadata(event.metadata)
                if lte is not None and version > lte:
                    continue
                if gt is not None and version <= gt:
                    return found
                found.append(event)
                if limit is not None and len(found) >= limit:
                    return found
            high = low - 1
        return found

    # -------------------------------------------------------------------- notifications
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None,
        topics: Sequence[str],
        inclusive_of_start: bool,
    ) -> list[Notification]:
        # Notification id n is partition sequence n - 1.
        first = 0 if start is None else max(0, start - 1 if inclusive_of_start else start)
        last = None if stop is None else stop - 1
        if limit <= 0 or (last is not None and last < first):
            return []
        found: list[Notification] = []
        with translated_errors():
            for event in self.client.scan_partition(
                self.partition_key, first, last, page_size=min(max(limit, 10), PAGE_SIZE)
            ):
                if self.is_notification(event) and (not topics or event.event_name in topics):
                    found.append(self.notification(event))
                    if len(found) >= limit:
                        break
        return found

    def max_notification_id(self) -> int | None:
        """The id of the application's last notification: the partition's last event when it
        is one (the usual case), else found by reading back page by page."""
        with translated_errors():
            high = self.client.partition_sequence(self.partition_key)
            while high is not None and high >= 0:
                low = max(0, high - PAGE_SIZE + 1)
                page = self.client.scan_partition_page(
                    self.partition_key, low, high, count=PAGE_SIZE
                )
                for event in reversed(page.events):
                    if self.is_notification(event):
                        return event.partition_sequence + 1
                high = low - 1
        return None

    def max_tracking_id(self, application_name: str) -> int | None:
        stream = tracking_stream(application_name)
        with translated_errors():
            version = self.client.stream_version(stream, self.partition_key)
            if version is None:
                return None
            tail = self._read_tail(stream, version)
        return None if tail is None else tail[1]


def partition_key_for_application(name: str) -> uuid.UUID:
    """An application's partition key: the one a stream named like the application gets."""
    return partition_key_for_stream(name)


def tracking_of(kwargs: dict[str, Any]) -> Tracking | None:
    tracking = kwargs.get("tracking")
    if tracking is not None and not isinstance(tracking, Tracking):
        raise ProgrammingError(f"tracking must be a Tracking object, got {tracking!r}")
    return tracking
