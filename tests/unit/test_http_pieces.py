"""The HTTP port's pure pieces: credentials and origin checks, the session table's bound, the
live feed's cursor, the histogram."""

from __future__ import annotations

import base64

import pytest

from sierradb.node.histogram import Histogram
from sierradb.node.http import auth
from sierradb.node.http.api import ApiError
from sierradb.node.http.feed import format_cursor, parse_cursor, parse_selection


def b64(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "header, password",
    [
        (b64("default:pw"), "pw"),
        (b64(":pw"), "pw"),
        (b64("default:p:w"), "p:w"),
        ("basic " + base64.b64encode(b"default:pw").decode(), "pw"),
        (b64("admin:pw"), None),
        (b64("nocolon"), None),
        ("Basic !!!", None),
        ("Bearer abc", None),
        ("", None),
        (None, None),
    ],
)
def test_basic_password(header, password):
    assert auth.basic_password(header) == password


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("localhost", True), ("localhost:9091", True), ("127.0.0.1:9091", True),
        ("127.9.9.9", True), ("[::1]:9091", True), ("[::1]", True), ("app.localhost", True),
        ("evil.example", False), ("evil.example:9091", False), ("10.0.0.1", False),
        ("localhost.evil.example", False), ("[::1", False), ("", False), (None, False),
    ],
)  # fmt: skip
def test_host_is_loopback(host, loopback):
    assert auth.host_is_loopback(host) is loopback


@pytest.mark.parametrize(
    "headers, allowed",
    [
        ({}, True),  # not a browser: no ambient cookie to abuse
        ({"sec-fetch-site": "same-origin"}, True),
        ({"sec-fetch-site": "none"}, True),
        ({"sec-fetch-site": "same-site"}, False),
        ({"sec-fetch-site": "cross-site"}, False),
        ({"origin": "http://db:9091", "host": "db:9091"}, True),
        ({"origin": "http://evil", "host": "db:9091"}, False),
        ({"origin": "null", "host": "db:9091"}, False),
    ],
)
def test_same_origin_request(headers, allowed):
    assert auth.same_origin_request(headers, "http") is allowed


def test_sessions_are_bounded_and_revocable():
    sessions = auth.Sessions()
    first = sessions.create()
    assert sessions.valid(first) and not sessions.valid("forged") and not sessions.valid(None)
    for _ in range(auth.MAX_SESSIONS):
        sessions.create()
    assert len(sessions) == auth.MAX_SESSIONS
    assert not sessions.valid(first), "the oldest session is dropped first"
    last = sessions.create()
    sessions.revoke(last)
    assert not sessions.valid(last)


def test_cursor_round_trip():
    selected = (0, 1, 2, 5)
    cursor = parse_cursor("5:7,1:3", selected)
    assert cursor == {0: 0, 1: 3, 2: 0, 5: 7}
    assert format_cursor(cursor) == "1:3,5:7"
    assert parse_cursor(format_cursor(cursor), selected) == cursor
    zero = dict.fromkeys(selected, 0)
    assert format_cursor(zero) == "0:0"  # never empty (EventSource drops an empty id)
    assert parse_cursor("0:0", selected) == zero


@pytest.mark.parametrize(
    "text", ["3:1", "1:1,1:2", "1", "1:x", "a:1", "1:-1", ":", "1:" + "9" * 20]
)
def test_bad_cursors_are_refused(text):
    with pytest.raises(ApiError) as caught:
        parse_cursor(text, (0, 1, 2))
    assert caught.value.status == 400


def test_histogram_buckets_are_upper_bounds():
    h = Histogram((1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 3.0):
        h.observe(value)
    snap = h.snapshot()
    assert snap.counts == (2, 1, 1) and snap.count == 4 and snap.total == 6.0


def test_a_feed_selects_any_partition_on_any_node():
    # On a cluster node too: the partitions it holds are read here, the others through relays.
    assert parse_selection("all", 6) == (0, 1, 2, 3, 4, 5)
    assert parse_selection("1-2", 6) == (1, 2)
    with pytest.raises(ApiError) as caught:
        parse_selection("7", 6)
    assert caught.value.status == 404 and caught.value.code == "not_found"
