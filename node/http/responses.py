"""The API's error type and its JSON responses: ``{"error": {"code": ..., "message": ...}}``
with a 4xx or 503 status (the bottom of ``node/http``: it imports nothing of the package but the
JSON encoding)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .events import to_json


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(
    value: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(to_json(value), status, headers, media_type="application/json")


def error_response(error: ApiError) -> Response:
    return json_response({"error": {"code": error.code, "message": error.message}}, error.status)


def bad(message: str) -> ApiError:
    return ApiError(400, "bad_parameter", message)


def int_param(text: str | None, name: str, low: int, high: int) -> int | None:
    """A query parameter that is an integer in low..high (None: absent)."""
    if text is None:
        return None
    if not text.isdigit() or not text.isascii() or len(text) > 19:
        raise bad(f"{name} must be an integer in {low}..{high}, got {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise bad(f"{name} must be an integer in {low}..{high}, got {value}")
    return value


def check_params(request: Request, *names: str) -> None:
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        raise bad(f"unknown parameter {unknown[0]!r} (accepted: {', '.join(names) or 'none'})")
