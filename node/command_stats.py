"""Requests by command and outcome, and their latency, for ``/metrics``.

Labels are bounded: a command is one of the names the grammar knows, else ``unknown`` (a client
sending random command names must not grow the metrics without end); an outcome is ``ok`` or the
error code of the reply (a small fixed set).
"""

from __future__ import annotations

from dataclasses import dataclass

from .grammar import COMMAND_NAMES
from .histogram import LATENCY_BUCKETS_S, Histogram, HistogramSnapshot

UNKNOWN_COMMAND = "unknown"
_LABELS: dict[bytes, str] = {}
for _name in COMMAND_NAMES:
    _LABELS[_name] = _LABELS[_name.lower()] = _name.decode()


def command_label(args: list[bytes]) -> str:
    """The metrics label of a request: its command name, or ``unknown``."""
    if not args:
        return UNKNOWN_COMMAND
    name = args[0]
    return _LABELS.get(name) or _LABELS.get(name.upper(), UNKNOWN_COMMAND)


@dataclass(frozen=True, slots=True)
class CommandStatistics:
    outcomes: dict[tuple[str, str], int]  # (command, ok | error code) -> requests
    latency: dict[str, HistogramSnapshot]  # command -> seconds from parse to reply ready


class CommandStats:
    def __init__(self) -> None:
        self._outcomes: dict[tuple[str, str], int] = {}
        self._latency: dict[str, Histogram] = {}

    def record(self, command: str, outcome: str, seconds: float) -> None:
        key = (command, outcome)
        self._outcomes[key] = self._outcomes.get(key, 0) + 1
        histogram = self._latency.get(command)
        if histogram is None:
            histogram = self._latency[command] = Histogram(LATENCY_BUCKETS_S)
        histogram.observe(seconds)

    def statistics(self) -> CommandStatistics:
        return CommandStatistics(
            dict(self._outcomes), {name: h.snapshot() for name, h in self._latency.items()}
        )
