"""What the sync and asyncio clients share about redis-py: node addresses, connection settings
and the translation of redis-py's exceptions into the client's error tree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from .errors import ConnectionFailed, SierraDBError, error_from_reply

DEFAULT_ADDRESS = "127.0.0.1:9090"
DEFAULT_SOCKET_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_HEARTBEAT_INTERVAL_S = 10.0
"""A subscription that heard nothing for this long sends PING; after twice as long it is dead."""
DEFAULT_WINDOW = 1000
UNSUBSCRIBE_TIMEOUT_S = 2.0
"""How long closing a subscription waits for the EUNSUB reply before closing anyway."""


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"a node address is host:port, got {address!r}")
    return host.strip("[]"), int(port)


def parse_addresses(addresses: str | Sequence[str]) -> list[tuple[str, int]]:
    """One address, a comma-separated list, or a sequence of them."""
    items = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    parsed = [parse_address(a.strip()) for a in items if a.strip()]
    if not parsed:
        raise ValueError("at least one node address is needed")
    return parsed


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    username: str | None = None
    password: str | None = None
    protocol: int = 3
    socket_timeout_s: float | None = DEFAULT_SOCKET_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    client_name: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in (2, 3):
            raise ValueError("protocol is 2 or 3")

    def redis_kwargs(self, host: str, port: int, *, aio: bool = False) -> dict[str, Any]:
        """Keyword arguments of redis-py's clients and connections, with redis-py's own retries
        off: this client decides about retries (see retry.py)."""
        no_retry = (redis.asyncio.retry.Retry if aio else redis.retry.Retry)(NoBackoff(), 0)
        return {
            "host": host,
            "port": port,
            "username": self.username,
            "password": self.password,
            "protocol": self.protocol,
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.connect_timeout_s,
            "client_name": self.client_name,
            "retry": no_retry,
        }


_STRIPPED_CODES: dict[type[Exception], str] = {
    redis.exceptions.ClusterDownError: "CLUSTERDOWN",
    redis.exceptions.TryAgainError: "TRYAGAIN",
}


def translate(exc: BaseException) -> SierraDBError | None:
    """The client's error for a redis-py (or socket) exception; None for anything else."""
    if isinstance(exc, SierraDBError):
        return exc
    if isinstance(exc, redis.exceptions.AuthenticationError):
        # redis-py raises these (a ConnectionError subclass) for NOAUTH and WRONGPASS.
        text = str(exc)
        code = getattr(exc, "status_code", None) or (
            "NOAUTH" if text.startswith("Authentication required") else "WRONGPASS"
        )
        return error_from_reply(text, code)
    if isinstance(exc, redis.exceptions.ResponseError):
        code = getattr(exc, "status_code", None)
        if code is None:
            code = next((c for cls, c in _STRIPPED_CODES.items() if isinstance(exc, cls)), None)
        text = str(exc)
        if code is not None and text.startswith(code + " "):
            text = text[len(code) + 1 :]
        return error_from_reply(text, code)
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
        failed = ConnectionFailed(f"{type(exc).__name__}: {exc}")
        failed.__cause__ = exc
        return failed
    return None
