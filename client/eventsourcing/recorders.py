"""The `eventsourcing` recorders on SierraDB (layout and semantics: store.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    Notification,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)

from .store import ApplicationPartition, tracking_of, translated_errors


class SierraDBRecorder:
    def __init__(self, partition: ApplicationPartition, purpose: str = "events") -> None:
        self.partition = partition
        self.purpose = purpose


class SierraDBAggregateRecorder(SierraDBRecorder, AggregateRecorder):
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self.partition.write(stored_events, self.purpose, tracking_of(kwargs))
        return None

    def select_events(
        self,
        originator_id: uuid.UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        return self.partition.select_events(
            originator_id, self.purpose, gt=gt, lte=lte, desc=desc, limit=limit
        )


class SierraDBApplicationRecorder(SierraDBAggregateRecorder, ApplicationRecorder):
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return self.partition.write(stored_events, self.purpose, tracking_of(kwargs))

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        return self.partition.select_notifications(start, limit, stop, topics, inclusive_of_start)

    def max_notification_id(self) -> int | None:
        return self.partition.max_notification_id()

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return SierraDBSubscription(self, gt=gt, topics=topics)


class SierraDBTrackingRecorder(SierraDBRecorder, TrackingRecorder):
    def insert_tracking(self, tracking: Tracking) -> None:
        self.partition.write([], self.purpose, tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.partition.max_tracking_id(application_name)


class SierraDBProcessRecorder(
    SierraDBTrackingRecorder, SierraDBApplicationRecorder, ProcessRecorder
):
    pass


class SierraDBSubscription(Subscription[SierraDBApplicationRecorder]):
    """The application sequence after `gt`, then live, from an `EPSUB` of the application's
    partition (pushed by the server, no polling; it resumes by itself after a lost connection).
    `stop()` may be called from another thread: it wakes a waiting iteration, which ends."""

    def __init__(
        self,
        recorder: SierraDBApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        super().__init__(recorder, gt=gt, topics=topics)
        partition = recorder.partition
        self._partition = partition
        with translated_errors():
            # Notification ids above gt are partition sequences from gt on.
            self._events = partition.client.subscribe_partitions(
                partition.partition_key, from_sequence=gt or 0
            )

    def __next__(self) -> Notification:
        with translated_errors():
            while not self._has_been_stopped:
                try:
                    event = next(self._events)
                except StopIteration:
                    break
                if self._partition.is_notification(event) and (
                    not self._topics or event.event_name in self._topics
                ):
                    return self._partition.notification(event)
        raise StopIteration

    def stop(self) -> None:
        super().stop()
        self._events.close()


__all__ = [
    "SierraDBAggregateRecorder",
    "SierraDBApplicationRecorder",
    "SierraDBProcessRecorder",
    "SierraDBSubscription",
    "SierraDBTrackingRecorder",
]
