"""Who may use the HTTP port, and the browser-side protections (sans-I/O: pure functions and a
bounded session table; the middleware in ``app.py`` applies them).

- No password (only possible on a loopback address, see config): everyone who can connect may
  use it, as on the client port; but the Host header must name a loopback host, so a web page
  that rebinds its own DNS name to 127.0.0.1 cannot read the inspector (DNS rebinding).
- With a password: ``/healthz`` and ``/readyz`` stay open (orchestrators probe without
  credentials) and so do the login page and its stylesheet; the UI needs a session cookie that
  ``POST /login`` sets (HTTP-only, SameSite=Strict); the API and ``/metrics`` accept the cookie or
  HTTP Basic (any user name, or ``default``, like ``AUTH``), which Prometheus supports.
- State-changing requests (login, logout) must come from our own pages: a browser sends
  ``Sec-Fetch-Site`` or ``Origin`` with every cross-site POST, and those must say same-origin.
- Sessions live in memory only (a restart logs everyone out), expire after ``SESSION_TTL_S``, and
  at most ``MAX_SESSIONS`` exist (the oldest is dropped first).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections import OrderedDict

from ..config import is_loopback

SESSION_COOKIE = "sierradb_session"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 1024
# A wrong password costs the client this long (brute force through one connection is slow).
LOGIN_FAILURE_DELAY_S = 0.5
# Paths that need no credentials even with a password set.
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/login", "/static/login.css", "/static/favicon.svg"}
)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Sessions:
    def __init__(self) -> None:
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def create(self) -> str:
        token = secrets.token_urlsafe(32)
        self._expiry[token] = time.monotonic() + SESSION_TTL_S
        while len(self._expiry) > MAX_SESSIONS:
            self._expiry.popitem(last=False)
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        expiry = self._expiry.get(token)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self._expiry[token]
            return False
        return True

    def revoke(self, token: str | None) -> None:
        if token:
            self._expiry.pop(token, None)

    def __len__(self) -> int:
        return len(self._expiry)


def password_matches(given: str, required: str) -> bool:
    return hmac.compare_digest(given.encode(), required.encode())


def basic_password(authorization: str | None) -> str | None:
    """The password of an ``Authorization: Basic`` header for user ``default`` or no user."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or user not in ("", "default"):
        return None
    return password


def host_is_loopback(host_header: str | None) -> bool:
    """Whether a Host header names a loopback host (``localhost``, ``127.x``, ``[::1]``)."""
    if not host_header:
        return False
    host = host_header.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    else:
        host = host.rpartition(":")[0] if ":" in host else host
    host = host.lower()
    return host == "localhost" or host.endswith(".localhost") or is_loopback(host)


def same_origin_request(headers: dict[str, str], scheme: str) -> bool:
    """CSRF check for a state-changing request: it must come from one of our own pages."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is not None:
        return origin == f"{scheme}://{headers.get('host', '')}"
    return True  # not sent by a browser (curl, scripts): no ambient cookie to abuse
