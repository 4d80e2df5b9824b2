"""A small HTTP client for the tests of the node's HTTP port (stdlib only, one request per
connection, so every header the test sends is exactly what the server sees)."""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 10.0


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)

    def error_code(self) -> str:
        return self.json()["error"]["code"]


def request(port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None, host: str = "127.0.0.1") -> Reply:  # fmt: skip
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def get_json(port: int, path: str, **kwargs: Any) -> Any:
    reply = request(port, path, **kwargs)
    assert reply.status == 200, (path, reply.status, reply.body[:500])
    return reply.json()


def basic(password: str, user: str = "default") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Feed:
    """A live feed (Server-Sent Events) read message by message."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status

    def message(self) -> dict[str, str]:
        """The next message's fields (comments skipped); raises on end of stream."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                raise EOFError("the feed ended")
            text = line.decode("utf-8").rstrip("\n")
            if text == "":
                if "data" in fields:
                    return fields
                fields = {}
                continue
            if text.startswith(":"):
                continue
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name in fields else value

    def events(self) -> tuple[str, list[dict]]:
        """The next `events` message: (its id, its events)."""
        while True:
            m = self.message()
            if m.get("event") == "events":
                return m["id"], json.loads(m["data"])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
