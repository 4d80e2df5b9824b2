"""Aggregates: state rebuilt from a stream, and commands that decide new events.

Theory of operation (the idea of kameo_es, in Python's idiom). An aggregate is one stream. Its
class says how each event changes its state (`apply`) and offers commands: plain methods that
look at the state and return the events they decide, without changing anything themselves. A
repository runs a command as one optimistic transaction:

1. load: read the stream and apply every event to a fresh aggregate, noting the version of the
   last one (None for a stream that does not exist yet);
2. decide: call the command, which returns zero or more events;
3. append them with `EXPECTED_VERSION` set to the loaded version (`empty` for a new stream), so
   the server refuses the append if anyone appended in between; several events go in one
   atomic multi-append, each expecting the version of the one before it;
4. on `WrongExpectedVersion`, read only the events appended since the loaded version, apply them,
   and decide again from the newer state; after `max_attempts` conflicts the last one is raised.
   Attempts are spaced by a short random (jittered) delay so that writers that collided do not
   collide again in lockstep.

The default budget suits occasional conflicts. Writers that keep sharing one stream conflict in
runs: the server checks expected versions against events still waiting for their commit, so
while one commit waits for its fdatasync every other writer's append loses, and with syncs of
tens of ms four writers saw more than 10 conflicts in a row in about 1 command of 80
(`bench/conflict_attempts.py`). Such writers need a larger `max_attempts`, and must handle the
`WrongExpectedVersion` that still ends a command that runs out of it.

Appends are retried safely after connection failures by the client itself (client-made event
ids). A command that raises stops the execution and nothing is appended. Events are encoded by
the aggregate class (`encode_event`/`decode_event`); the default stores dataclasses as JSON and
names them by class name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from . import protocol
from .aio import AsyncClient
from .errors import WrongExpectedVersion
from .identifiers import partition_key_for_stream
from .protocol import Request
from .sync import Client
from .types import Event, Expected, ExpectedVersion, NewEvent

A = TypeVar("A", bound="Aggregate")

DEFAULT_COMMAND_ATTEMPTS = 10
CONFLICT_BACKOFF_BASE_S = 0.002
CONFLICT_BACKOFF_MAX_S = 0.1


class Aggregate:
    """Base class of aggregates. Subclasses set `stream_prefix` and `event_types`, build their
    initial state in `__init__` (called without arguments), and implement `apply`."""

    stream_prefix: ClassVar[str] = ""
    """The stream of aggregate `x` is `stream_prefix + x`."""
    event_types: ClassVar[tuple[type, ...]] = ()
    """The event classes (dataclasses, for the default codec), named by class name."""

    def apply(self, event: Any) -> None:
        """Change the state by one event (both when loading and after a command succeeded)."""
        raise NotImplementedError

    @classmethod
    def encode_event(cls, event: Any) -> tuple[str, bytes]:
        """(event name, payload) of an event."""
        if type(event) not in cls.event_types:
            raise TypeError(f"{type(event).__name__} is not in {cls.__name__}.event_types")
        payload = json.dumps(dataclasses.asdict(event), separators=(",", ":"))
        return type(event).__name__, payload.encode()

    @classmethod
    def decode_event(cls, event_name: str, payload: bytes) -> Any:
        for event_type in cls.event_types:
            if event_type.__name__ == event_name:
                return event_type(**json.loads(payload))
        raise ValueError(f"{cls.__name__} has no event type named {event_name!r}")


@dataclass(frozen=True, slots=True)
class CommandResult(Generic[A]):
    aggregate: A  # the state after the new events
    version: int | None  # the stream version of the last event (None: the stream is empty)
    events: tuple[Any, ...]  # the events the command decided (and that were appended)
    attempts: int  # 1, plus one per version conflict


Command = Callable[[A], Iterable[Any]]


def _append_request(
    stream_id: str, version: int | None, encoded: Sequence[tuple[str, bytes]]
) -> Request[int]:
    """The append of a command's events, expecting `version`; parses to the new version."""
    if len(encoded) == 1:
        name, payload = encoded[0]
        expected: Expected = ExpectedVersion.EMPTY if version is None else version
        single = protocol.append(stream_id, name, payload, expected_version=expected)
        return Request(single.args, lambda reply: protocol.parse_append(reply).stream_version)
    new_events = []
    for i, (name, payload) in enumerate(encoded):
        # Each event expects the one before it: the loaded version, then the new ones.
        last = (i - 1 if i else None) if version is None else version + i
        expected = ExpectedVersion.EMPTY if last is None else last
        new_events.append(NewEvent(stream_id, name, payload, expected_version=expected))
    multi = protocol.multi_append(partition_key_for_stream(stream_id), new_events)
    return Request(
        multi.args, lambda reply: protocol.parse_multi_append(reply).events[-1].stream_version
    )


def _conflict_delay(attempt: int) -> float:
    return random.uniform(0.0, min(CONFLICT_BACKOFF_MAX_S, CONFLICT_BACKOFF_BASE_S * 2**attempt))


class _RepositoryBase(Generic[A]):
    def __init__(self, aggregate_type: type[A], max_attempts: int) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.aggregate_type = aggregate_type
        self.max_attempts = max_attempts

    def stream_id(self, aggregate_id: str) -> str:
        return self.aggregate_type.stream_prefix + aggregate_id

    def _apply(self, aggregate: A, events: Iterable[Event]) -> int | None:
        version = None
        for event in events:
            aggregate.apply(self.aggregate_type.decode_event(event.event_name, event.payload))
            version = event.stream_version
        return version

    def _decide(
        self, aggregate: A, command: Command[A]
    ) -> tuple[list[Any], list[tuple[str, bytes]]]:
        """The command's events, and how they are stored (all encoded before any is sent)."""
        events = list(command(aggregate))
        return events, [self.aggregate_type.encode_event(e) for e in events]


class Repository(_RepositoryBase[A]):
    """Loads aggregates of one type and runs commands on them (synchronous client)."""

    def __init__(
        self,
        client: Client,
        aggregate_type: type[A],
        *,
        max_attempts: int = DEFAULT_COMMAND_ATTEMPTS,
    ) -> None:
        super().__init__(aggregate_type, max_attempts)
        self.client = client

    def load(self, aggregate_id: str) -> tuple[A, int | None]:
        """The aggregate and the version of its last event (None: no event yet)."""
        aggregate = self.aggregate_type()
        return aggregate, self._catch_up(aggregate, aggregate_id, None)

    def _catch_up(self, aggregate: A, aggregate_id: str, version: int | None) -> int | None:
        start = 0 if version is None else version + 1
        newer = self._apply(aggregate, self.client.scan_stream(self.stream_id(aggregate_id), start))
        return version if newer is None else newer

    def execute(self, aggregate_id: str, command: Command[A]) -> CommandResult[A]:
        """Run `command` on the current state and append its events (see the module doc)."""
        aggregate, version = self.load(aggregate_id)
        stream_id = self.stream_id(aggregate_id)
        for attempt in range(1, self.max_attempts + 1):
            events, encoded = self._decide(aggregate, command)
            if not events:
                return CommandResult(aggregate, version, (), attempt)
            try:
                new_version = self.client.execute(_append_request(stream_id, version, encoded))
            except WrongExpectedVersion:
                if attempt == self.max_attempts:
                    raise
                time.sleep(_conflict_delay(attempt))
                version = self._catch_up(aggregate, aggregate_id, version)
                continue
            for event in events:
                aggregate.apply(event)
            return CommandResult(aggregate, new_version, tuple(events), attempt)
        raise AssertionError("unreachable")


class AsyncRepository(_RepositoryBase[A]):
    """The asyncio twin of `Repository`."""

    def __init__(
        self,
        client: AsyncClient,
        aggregate_type: type[A],
        *,
        max_attempts: int = DEFAULT_COMMAND_ATTEMPTS,
    ) -> None:
        super().__init__(aggregate_type, max_attempts)
        self.client = client

    async def load(self, aggregate_id: str) -> tuple[A, int | None]:
        aggregate = self.aggregate_type()
        return aggregate, await self._catch_up(aggregate, aggregate_id, None)

    async def _catch_up(self, aggregate: A, aggregate_id: str, version: int | None) -> int | None:
        start = 0 if version is None else version + 1
        events = [e async for e in self.client.scan_stream(self.stream_id(aggregate_id), start)]
        newer = self._apply(aggregate, events)
        return version if newer is None else newer

    async def execute(self, aggregate_id: str, command: Command[A]) -> CommandResult[A]:
        aggregate, version = await self.load(aggregate_id)
        stream_id = self.stream_id(aggregate_id)
        for attempt in range(1, self.max_attempts + 1):
            events, encoded = self._decide(aggregate, command)
            if not events:
                return CommandResult(aggregate, version, (), attempt)
            try:
                new_version = await self.client.execute(
                    _append_request(stream_id, version, encoded)
                )
            except WrongExpectedVersion:
                if attempt == self.max_attempts:
                    raise
                await asyncio.sleep(_conflict_delay(attempt))
                version = await self._catch_up(aggregate, aggregate_id, version)
                continue
            for event in events:
                aggregate.apply(event)
            return CommandResult(aggregate, new_version, tuple(events), attempt)
        raise AssertionError("unreachable")
