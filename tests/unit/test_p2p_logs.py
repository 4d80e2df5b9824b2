"""The p2p logging filter: libp2p's messages rate-limited and without tracebacks."""

from __future__ import annotations

import logging
import sys

from sierradb.p2p.logs import RateLimitFilter


def record(name: str, msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.WARNING, "/x/libp2p/y.py", 1, msg, None, exc_info)


def test_a_repeated_libp2p_message_passes_once_per_interval_and_counts_the_rest() -> None:
    limiter = RateLimitFilter(interval_s=60)
    passed = [limiter.filter(record("libp2p.network", "dial failed")) for _ in range(5)]
    assert passed == [True, False, False, False, False]
    limiter.interval_s = 0
    again = record("libp2p.network", "dial failed")
    assert limiter.filter(again)
    assert again.getMessage() == "dial failed (4 similar messages suppressed)"


def test_distinct_messages_are_not_held_back_by_each_other() -> None:
    limiter = RateLimitFilter(interval_s=60)
    assert limiter.filter(record("libp2p.a", "one"))
    assert limiter.filter(record("libp2p.a", "two"))


def test_libp2p_tracebacks_become_one_line() -> None:
    try:
        raise ConnectionResetError("peer reset")
    except ConnectionResetError as e:
        rec = record("libp2p.stream", "read failed", e)
    assert RateLimitFilter().filter(rec)
    assert rec.exc_info is None
    assert rec.getMessage() == "read failed: ConnectionResetError('peer reset')"
    formatted = logging.Formatter().format(rec)
    assert "Traceback" not in formatted


def test_a_traceback_pasted_into_a_libp2p_message_is_cut_to_its_first_line() -> None:
    # identify.py logs "Error sending identify response to %s: %s (type: %s)\n%s" with
    # traceback.format_exc() as the last argument.
    rec = logging.LogRecord(
        "libp2p.identity.identify.identify", logging.ERROR, "/x/libp2p/identify.py", 1,
        "Error sending identify response to %s: %s (type: %s)\n%s",
        ("peer", "broken pipe", "StreamError", "Traceback (most recent call last):\n  x\n"),
        None,
    )  # fmt: skip
    assert RateLimitFilter().filter(rec)
    assert rec.getMessage() == (
        "Error sending identify response to peer: broken pipe (type: StreamError)"
    )


def test_the_nodes_own_messages_pass_untouched() -> None:
    limiter = RateLimitFilter(interval_s=60)
    rec = logging.LogRecord("sierradb.node", logging.ERROR, __file__, 1, "x", None, sys.exc_info())
    assert all(limiter.filter(rec) for _ in range(3))
