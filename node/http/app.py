"""The ASGI application: routes, the security guard in front of them, and the inspector's state.

Routes (all GET unless said otherwise):

- ``/healthz`` (process alive), ``/readyz`` (serving; 503 while starting or stopping)
- ``/metrics`` (Prometheus text format, ``metrics.py``)
- ``/login`` (GET form, POST password), ``/logout`` (POST), only meaningful with a password
- ``/api/...`` the JSON API (``api.py``) and ``/api/feed`` (Server-Sent Events, ``feed.py``)
- ``/static/<file>`` the UI's files, shipped in the package and held in memory
- ``/``, ``/partitions``, ``/streams``, ``/events``, ``/live``, ``/projections`` and paths below
  them: the UI (one page; the path and query are the view, so every view has a shareable URL)

``Guard`` wraps them all: the Host check (no password: loopback names only), authentication,
the CSRF check of state-changing requests, and the security headers of every response (a strict
Content-Security-Policy: scripts, styles and connections from this origin only, no inline code;
no CORS headers at all, so other origins can never read a response).
"""

from __future__ import annotations

import html
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from . import api, auth
from .feed import MAX_FEEDS, parse_selection, run_feed, start_cursor
from .inspector import Inspector
from .metrics import CONTENT_TYPE, build_registry, exposition
from .responses import ApiError, check_params, error_response, int_param
from .tail import MAX_TAIL_EVENTS

# The login form's body (a password and a path) is read up to this size.
MAX_FORM_BYTES = 4096
UI_VIEWS = frozenset({"", "partitions", "streams", "events", "live", "projections"})

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; worker-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
# The projection worker compiles the user's own function: eval is allowed there and only there
# (a worker has no DOM; the page itself keeps the strict policy).
WORKER_CSP = "default-src 'none'; script-src 'self' 'unsafe-eval'; connect-src 'self'"
WORKER_FILE = "projection-worker.js"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


# ----------------------------------------------------------------------------- the guard
class Guard:
    def __init__(self, app: Any, ins: Inspector) -> None:
        self.app = app
        self.ins = ins

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ins = self.ins
        path = scope["path"]
        csp = WORKER_CSP if path == f"/static/{WORKER_FILE}" else CSP

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                ins.responses[status] = ins.responses.get(status, 0) + 1
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", csp.encode()))
                headers.extend(SECURITY_HEADERS)
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        refusal = await self._check(scope, path)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _check(self, scope: dict, path: str) -> Response | None:
        ins = self.ins
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        password = ins.config.requirepass
        if password is None and not auth.host_is_loopback(headers.get("host")):
            return _error(403, "host_not_allowed", "without a password the inspector answers "
                          "only to loopback host names (localhost, 127.0.0.1, [::1])")  # fmt: skip
        if scope["method"] in auth.UNSAFE_METHODS and not auth.same_origin_request(
            headers, scope.get("scheme", "http")
        ):
            return _error(403, "cross_site", "cross-site request refused")
        if password is None or path in auth.OPEN_PATHS:
            return None
        if ins.sessions.valid(_cookie(headers, auth.SESSION_COOKIE)):
            return None
        given = auth.basic_password(headers.get("authorization"))
        if given is not None:
            if auth.password_matches(given, password):
                return None
            ins.http_auth_failures += 1
            await trio.sleep(auth.LOGIN_FAILURE_DELAY_S)
        if path.startswith("/api/") or path == "/metrics":
            response = _error(401, "unauthorized", "authentication required (HTTP Basic with "
                              "the node's password, or log in)")  # fmt: skip
            mode = headers.get("sec-fetch-mode")
            if mode is None or mode == "navigate":  # not from our own scripts: ask for Basic
                response.headers["www-authenticate"] = 'Basic realm="sierradb", charset="UTF-8"'
            return response
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + ("?" + query if query else "")
        return RedirectResponse("/login?next=" + quote(target, safe=""), 303)


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _error(status: int, code: str, message: str) -> Response:
    return error_response(ApiError(status, code, message))


# ---------------------------------------------------------------------------- endpoints
def _api(ins: Inspector, handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(ins, request)
        except ApiError as e:
            return error_response(e)

    return endpoint


class FeedEndpoint:
    """``GET /api/feed?partitions=all&from=latest[&tail=N]``: the live feed (a raw ASGI
    endpoint: it streams until the client leaves)."""

    def __init__(self, ins: Inspector) -> None:
        self.ins = ins

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        ins = self.ins
        request = Request(scope, receive)
        try:
            check_params(request, "partitions", "from", "tail")
            tail = int_param(request.query_params.get("tail"), "tail", 1, MAX_TAIL_EVENTS)
            selected = parse_selection(request.query_params.get("partitions", "all"),
                                       ins.db.partition_count)  # fmt: skip
            cursor = await start_cursor(ins, selected, request.query_params.get("from", "latest"),
                                        request.headers.get("last-event-id"))  # fmt: skip
            if ins.feeds_open >= MAX_FEEDS:
                raise ApiError(503, "too_many_feeds", f"{MAX_FEEDS} live feeds are open")
        except ApiError as e:
            await error_response(e)(scope, receive, send)
            return
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store")],
        })  # fmt: skip

        async def send_data(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        ins.feeds_open += 1
        try:
            async with trio.open_nursery() as nursery:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_disconnect)
                await run_feed(ins, cursor, send_data, tail)
                nursery.cancel_scope.cancel()
        finally:
            ins.feeds_open -= 1


def build_app(ins: Inspector) -> Any:
    registry = build_registry(ins)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        ready, reason = ins.ready()
        return PlainTextResponse(reason + "\n", 200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(exposition(registry), media_type=CONTENT_TYPE)

    async def static(request: Request) -> Response:
        asset = ins.assets.get(request.path_params["name"])
        if asset is None:
            raise HTTPException(404)
        data, content_type, etag = asset
        headers = {"etag": etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=content_type, headers=headers)

    async def page(request: Request) -> Response:
        if request.path_params.get("view", "") not in UI_VIEWS:
            raise HTTPException(404)
        data, content_type, _ = ins.assets["index.html"]
        return Response(data, media_type=content_type)

    async def login_form(request: Request) -> Response:
        if ins.config.requirepass is None:
            return RedirectResponse("/", 303)
        return _login_page(request.query_params.get("next", "/"), failed=False)

    async def login(request: Request) -> Response:
        form = await _read_form(request)
        target = _local_path(form.get("next", "/"))
        required = ins.config.requirepass
        if required is None:
            return RedirectResponse(target, 303)
        if not auth.password_matches(form.get("password", ""), required):
            ins.http_auth_failures += 1
            await trio.sleep(auth.LOGIN_FAILURE_DELAY_S)
            return _login_page(target, failed=True)
        response = RedirectResponse(target, 303)
        response.set_cookie(auth.SESSION_COOKIE, ins.sessions.create(), max_age=auth.SESSION_TTL_S,
                            httponly=True, samesite="strict", path="/")  # fmt: skip
        return response

    async def logout(request: Request) -> Response:
        ins.sessions.revoke(request.cookies.get(auth.SESSION_COOKIE))
        response = RedirectResponse("/login" if ins.config.requirepass else "/", 303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def _login_page(next_path: str, failed: bool) -> Response:
        text = ins.assets["login.html"][0].decode()
        text = text.replace("{{next}}", html.escape(_local_path(next_path), quote=True))
        text = text.replace("{{hidden}}", "" if failed else "hidden")
        return Response(text, 401 if failed else 200, media_type="text/html; charset=utf-8")

    async def api_not_found(request: Request) -> Response:
        return _error(404, "not_found", f"no API route {request.url.path}")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _http_error(request, 404, "not_found", "not found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _http_error(request, 405, "method_not_allowed", f"{request.method} not allowed")

    a = ins
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/overview", _api(a, api.overview)),
        Route("/api/partitions", _api(a, api.partitions)),
        Route("/api/partitions/{partition}", _api(a, api.partition)),
        Route("/api/partitions/{partition}/events", _api(a, api.partition_events)),
        Route("/api/stream", _api(a, api.stream)),
        Route("/api/stream/events", _api(a, api.stream_events)),
        Route("/api/events/{event_id}", _api(a, api.event)),
        Route("/api/feed", FeedEndpoint(a), methods=["GET"]),
        Route("/api/{rest:path}", api_not_found),
        Route("/static/{name}", static),
        Route("/", page),
        Route("/{view}", page),
        Route("/{view}/{rest:path}", page),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    return Guard(app, ins)


def _http_error(request: Request, status: int, code: str, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return _error(status, code, message)
    return PlainTextResponse(message + "\n", status)


async def _read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body, read up to MAX_FORM_BYTES (a larger one is refused)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    except ValueError as e:
        raise HTTPException(400, "too many form fields") from e
    return {k: v[0] for k, v in fields.items()}


def _local_path(target: str) -> str:
    """A redirect target on this site (never another host: no open redirect)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
