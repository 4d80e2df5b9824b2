"""The client's errors: one base class, one subclass per error code, mapped in one table.

Every error reply of the server starts with a code (`WRONGVER current stream version is 3 ...`);
`error_from_reply` turns it into the exception of that code. `retryable` says whether the
contract allows sending the same request again (appends are safe to resend because the client
gives every event its id); `failover` says whether another node should be tried.
"""

from __future__ import annotations

import re
import uuid
from typing import ClassVar

from .types import ExpectedVersion


class SierraDBError(Exception):
    """Base class of every error the client raises."""

    code: ClassVar[str] = ""
    retryable: ClassVar[bool] = False
    failover: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConnectionFailed(SierraDBError):
    """No node answered (refused, dropped or timed-out connections on every attempt).

    For an append the outcome is unknown; sending the same events again (same event ids) is the
    way to find out, and the client already did so as often as its retry policy allows."""

    retryable = True
    failover = True


class SubscriptionGap(SierraDBError):
    """A subscription received an event past the next expected position (never expected)."""


class ServerError(SierraDBError):
    """An error reply; `code` is its first word."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code  # type: ignore[misc]  # codes without a class of their own

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


class InvalidArgument(ServerError):
    code = "INVALIDARG"


class WrongExpectedVersion(ServerError):
    """The stream's current version is not the one the append expected."""

    code = "WRONGVER"
    _TEXT = re.compile(
        r"current stream version is (?P<current>\d+|empty) but expected (?P<expected>\S+) "
        r"for partition key (?P<key>\S+) and stream id (?P<stream>.*)\Z",
        re.DOTALL,
    )

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        m = self._TEXT.match(message)
        self.current: int | None = None
        self.expected: int | ExpectedVersion | None = None
        self.partition_key: uuid.UUID | None = None
        self.stream_id: str | None = None
        if m:
            current = m["current"]
            self.current = None if current == "empty" else int(current)
            expected = m["expected"]
            self.expected = int(expected) if expected.isdigit() else ExpectedVersion(expected)
            self.partition_key = uuid.UUID(m["key"])
            self.stream_id = m["stream"]


class Duplicate(ServerError):
    """The event id is already stored for another event."""

    code = "DUPLICATE"


class NotFound(ServerError):
    code = "NOTFOUND"


class ClusterDown(ServerError):
    """The partition has no leader (or does not exist) right now."""

    code = "CLUSTERDOWN"
    retryable = True
    failover = True


class NotLeader(ServerError):
    code = "NOTLEADER"
    retryable = True
    failover = True


class Timeout(ServerError):
    """The write was not confirmed in time; its outcome is unknown (a retry finds out)."""

    code = "TIMEOUT"
    retryable = True


class TryAgain(ServerError):
    code = "TRYAGAIN"
    retryable = True


class QuorumFailed(ServerError):
    code = "QUORUMFAILED"
    retryable = True


class InsufficientReplicas(ServerError):
    code = "INSUFFICIENTREPLICAS"
    retryable = True


class DatabaseOperationFailed(ServerError):
    code = "DBOPFAILED"


class WriteFailed(ServerError):
    code = "WRITEERR"


class ReadFailed(ServerError):
    code = "READERR"


class AuthenticationRequired(ServerError):
    code = "NOAUTH"


class WrongPassword(ServerError):
    code = "WRONGPASS"


class UnsupportedProtocol(ServerError):
    code = "NOPROTO"


class Denied(ServerError):
    code = "DENIED"


class GenericError(ServerError):
    code = "ERR"


ERRORS_BY_CODE: dict[str, type[ServerError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        WrongExpectedVersion,
        Duplicate,
        NotFound,
        ClusterDown,
        NotLeader,
        Timeout,
        TryAgain,
        QuorumFailed,
        InsufficientReplicas,
        DatabaseOperationFailed,
        WriteFailed,
        ReadFailed,
        AuthenticationRequired,
        WrongPassword,
        UnsupportedProtocol,
        Denied,
        GenericError,
    )
}

# Codes the reference server calls retryable that have no class of their own here.
_RETRYABLE_CODES = frozenset({"CIRCUITOPEN", "ACTORDOWN", "ACTORSTOPPED", "MAILBOXFULL"})
_CODE = re.compile(r"[A-Z][A-Z0-9_]*\Z")


class _RetryableServerError(ServerError):
    retryable = True


def error_from_reply(text: str, code: str | None = None) -> ServerError:
    """The exception for an error reply. `code` is given when the text no longer carries it
    (redis-py strips the codes it knows, such as `CLUSTERDOWN` and `TRYAGAIN`)."""
    if code is None:
        first, _, rest = text.partition(" ")
        if _CODE.match(first):
            code, text = first, rest
        else:
            code = "ERR"
    cls = ERRORS_BY_CODE.get(code)
    if cls is not None:
        return cls(text)
    if code in _RETRYABLE_CODES:
        return _RetryableServerError(text, code)
    return ServerError(text, code)
