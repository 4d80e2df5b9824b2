"""Who may use the HTTP port: the password (login form and session cookie for the UI, HTTP Basic
for the API and /metrics), protected mode, CSRF, the port's own settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from http_client import basic, request

pytestmark = pytest.mark.timeout(120)

PASSWORD = "s3cret-pass"
SIERRADB = Path(sys.executable).with_name("sierradb")


@pytest.fixture
def node(node_factory):
    return node_factory(env={"SIERRA_REQUIREPASS": PASSWORD})


def login(port: int, password: str, **headers: str):
    body = urlencode({"password": password, "next": "/partitions/2?from=5"}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return request(port, "/login", method="POST", body=body, headers={**form, **headers})


def session_cookie(reply) -> str:
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Path=/" in cookie
    return cookie.split(";")[0]


def test_health_checks_need_no_password(node):
    assert request(node.http_port, "/healthz").status == 200
    assert request(node.http_port, "/readyz").status == 200


@pytest.mark.parametrize("path", ["/api/overview", "/api/partitions/0/events", "/metrics",
                                  "/api/feed?partitions=0"])  # fmt: skip
def test_api_and_metrics_need_http_basic(node, path):
    refused = request(node.http_port, path)
    assert refused.status == 401 and refused.error_code() == "unauthorized"
    assert refused.headers["www-authenticate"].startswith('Basic realm="sierradb"')
    assert request(node.http_port, path, headers=basic("wrong")).status == 401
    assert request(node.http_port, path, headers=basic(PASSWORD, user="admin")).status == 401
    if "feed" not in path:
        assert request(node.http_port, path, headers=basic(PASSWORD)).status == 200
        assert request(node.http_port, path, headers=basic(PASSWORD, user="")).status == 200


def test_our_own_scripts_get_no_basic_challenge(node):
    """The UI's fetch calls get a plain 401 (no browser password dialog); it then shows login."""
    reply = request(node.http_port, "/api/overview", headers={"Sec-Fetch-Mode": "cors"})
    assert reply.status == 401 and "www-authenticate" not in reply.headers


def test_the_ui_redirects_to_the_login_form(node):
    reply = request(node.http_port, "/partitions/2?from=5")
    assert reply.status == 303
    assert reply.headers["location"] == "/login?next=%2Fpartitions%2F2%3Ffrom%3D5"
    assert request(node.http_port, "/static/app.js").status == 303
    form = request(node.http_port, "/login?next=/streams")
    assert form.status == 200 and b'name="password"' in form.body
    assert b'value="/streams"' in form.body
    assert request(node.http_port, "/static/login.css").status == 200


def test_login_sets_an_http_only_session_cookie_that_opens_ui_and_api(node):
    wrong = login(node.http_port, "nope")
    assert wrong.status == 401 and b"Wrong password." in wrong.body
    assert "set-cookie" not in wrong.headers
    ok = login(node.http_port, PASSWORD)
    assert ok.status == 303 and ok.headers["location"] == "/partitions/2?from=5"
    cookie = session_cookie(ok)
    for path in ("/", "/static/app.js", "/api/overview", "/metrics"):
        assert request(node.http_port, path, headers={"Cookie": cookie}).status == 200, path
    out = request(node.http_port, "/logout", method="POST", headers={"Cookie": cookie})
    assert out.status == 303 and out.headers["location"] == "/login"
    assert request(node.http_port, "/api/overview", headers={"Cookie": cookie}).status == 401
    assert request(node.http_port, "/api/overview",
                   headers={"Cookie": "sierradb_session=forged"}).status == 401  # fmt: skip


def test_cross_site_posts_are_refused(node):
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):  # fmt: skip
        reply = login(node.http_port, PASSWORD, **headers)
        assert reply.status == 403 and reply.error_code() == "cross_site", headers
        assert "set-cookie" not in reply.headers
    same = login(node.http_port, PASSWORD, Origin=f"http://127.0.0.1:{node.http_port}",
                 **{"Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert same.status == 303


def test_login_never_redirects_off_site(node):
    for target in ("//evil.example/x", "http://evil.example", "\\\\evil.example", "x"):
        body = urlencode({"password": PASSWORD, "next": target}).encode()
        reply = request(node.http_port, "/login", method="POST", body=body,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert reply.headers["location"] == "/", target


def test_a_huge_login_form_is_refused(node):
    body = b"password=" + b"x" * 100_000
    assert request(node.http_port, "/login", method="POST", body=body).status == 413


def test_with_a_password_any_host_name_may_be_used(node):
    reply = request(
        node.http_port, "/api/overview", headers={"Host": "db.example", **basic(PASSWORD)}
    )
    assert reply.status == 200


def test_without_a_password_login_is_not_needed(node_factory):
    node = node_factory()
    assert request(node.http_port, "/api/overview").status == 200
    assert request(node.http_port, "/login").headers["location"] == "/"


# --------------------------------------------------------------------------- the port itself
def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIERRA_")}
    full_env.update(env or {})
    return subprocess.run([str(SIERRADB), *args], capture_output=True, text=True, timeout=60,
                          env=full_env)  # fmt: skip


def test_protected_mode_refuses_a_non_loopback_http_address_without_a_password(tmp_path):
    result = run_cli("--dir", str(tmp_path / "d"), "--client-address", "127.0.0.1:0",
                     "--http-address", "0.0.0.0:0")  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sierradb: error: http_address 0.0.0.0:0")
    assert "no password" in lines[0] and "--http-address" in lines[0]
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("extra", [("--requirepass", PASSWORD), ("--protected-mode", "no")],
                         ids=["password", "protected-mode-off"])  # fmt: skip
def test_a_non_loopback_http_address_is_allowed_with_a_password_or_protected_mode_off(
    node_factory, extra
):
    node = node_factory("--http-address", "0.0.0.0:0", *extra)
    assert node.http_port and request(node.http_port, "/healthz").status == 200


def test_a_taken_http_port_fails_the_start_with_one_line(node_factory, tmp_path):
    first = node_factory()
    result = run_cli("--dir", str(tmp_path / "d2"), "--client-address", "127.0.0.1:0",
                     "--http-address", f"127.0.0.1:{first.http_port}")  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"http_address 127.0.0.1:{first.http_port}" in lines[0]
    assert "none" in lines[0] and "Traceback" not in result.stderr


def test_the_http_port_can_be_turned_off(node_factory):
    for value in ("none", "off"):
        node = node_factory("--http-address", value)
        assert node.http_port == 0 and "http://" not in node.output()
    node = node_factory(env={"SIERRA_HTTP_ADDRESS": "none"})
    assert node.http_port == 0
