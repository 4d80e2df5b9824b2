"""Logging for the p2p layer: py-libp2p's messages through ours, rate-limited, no tracebacks.

py-libp2p sets its ``libp2p`` logger to ``propagate=False`` with no handler at import (its
warnings then bypass the node's logging and land on stderr), some of its modules log through the
root logger, and a dead or unreachable peer makes it log the same failure (with a traceback)
on every dial. ``route_libp2p_logging`` sends ``libp2p.*`` through the node's handlers at
WARNING and above; ``RateLimitFilter``, installed on those handlers, lets each distinct message
of the p2p layer through at most once per interval (reporting how many it held back) and strips
libp2p's tracebacks (attached, or pasted into a message) down to one line. Our own per-peer
messages (a refused handshake, a peer going down) are logged once per change by the runtime and
pass untouched.
"""

from __future__ import annotations

import logging
import time

# Each distinct p2p message is logged at most once per this interval.
LOG_INTERVAL_S = 30.0
# Distinct messages remembered for rate limiting (a flood of unique texts cannot grow it).
MAX_TRACKED_MESSAGES = 1024
_LIMITED_PREFIXES = ("libp2p", "sierradb.p2p.dial")


def _is_libp2p(record: logging.LogRecord) -> bool:
    return record.name.startswith("libp2p") or "/libp2p/" in record.pathname


class RateLimitFilter(logging.Filter):
    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        libp2p = _is_libp2p(record)
        if not libp2p and not record.name.startswith(_LIMITED_PREFIXES):
            return True
        if libp2p and record.exc_info:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {exc!r}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        if libp2p and "\n" in (text := record.getMessage()):
            # Some of libp2p's messages embed traceback.format_exc(): keep the first line.
            record.msg = text.split("\n", 1)[0].rstrip()
            record.args = None
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} similar messages suppressed)"
        if len(self._last) >= MAX_TRACKED_MESSAGES:
            self._last.clear()
        self._last[key] = (now, 0)
        return True


def route_libp2p_logging() -> None:
    """Send libp2p's records through the root handlers, rate-limited (call after importing it)."""
    lib = logging.getLogger("libp2p")
    lib.handlers.clear()
    lib.propagate = True
    lib.setLevel(logging.WARNING)
    for name, child in list(logging.root.manager.loggerDict.items()):
        if name.startswith("libp2p.") and isinstance(child, logging.Logger):
            child.setLevel(logging.NOTSET)  # some set INFO for themselves; inherit WARNING
    limiter = RateLimitFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RateLimitFilter) for f in handler.filters):
            handler.addFilter(limiter)
