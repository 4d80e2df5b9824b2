"""The image's two scripts, without Docker: the health check against a real node, and the entry
point's task slot -> node index. (docker/test.sh runs them in containers, as root, on demand.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def healthcheck(port: int, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIERRA_")}
    env["SIERRA_CLIENT_ADDRESS"] = f"0.0.0.0:{port}"  # as in the image: a wildcard host
    if password is not None:
        env["SIERRA_REQUIREPASS"] = password
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")],
        env=env, capture_output=True, text=True, timeout=10,
    )  # fmt: skip


def entrypoint(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIERRA_")}
    return subprocess.run(
        ["sh", str(DOCKER / "entrypoint.sh"), "sh", "-c", 'echo "index=$SIERRA_NODE_INDEX"'],
        env=clean | env, capture_output=True, text=True, timeout=10,
    )  # fmt: skip


def test_health_check_passes_when_the_node_answers_ping(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    result = healthcheck(node.port)
    assert result.returncode == 0, result.stdout


def test_health_check_authenticates_with_the_node_password(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory("--requirepass", "s3cret")
    assert healthcheck(node.port, "s3cret").returncode == 0
    wrong = healthcheck(node.port, "wrong")
    assert wrong.returncode == 1
    assert "WRONGPASS" in wrong.stdout


def test_health_check_fails_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        result = healthcheck(port)
    assert result.returncode == 1
    assert "no answer" in result.stdout


def test_entrypoint_turns_a_task_slot_into_a_node_index() -> None:
    assert entrypoint(SIERRA_TASK_SLOT="1").stdout == "index=0\n"
    assert entrypoint(SIERRA_TASK_SLOT="3").stdout == "index=2\n"


def test_entrypoint_leaves_the_node_index_alone_without_a_slot() -> None:
    assert entrypoint(SIERRA_NODE_INDEX="4").stdout == "index=4\n"


def test_entrypoint_refuses_a_bad_slot_or_both_settings() -> None:
    bad = entrypoint(SIERRA_TASK_SLOT="{{.Task.Slot}}")
    assert bad.returncode == 1
    assert "SIERRA_TASK_SLOT must be a number" in bad.stderr
    both = entrypoint(SIERRA_TASK_SLOT="2", SIERRA_NODE_INDEX="1")
    assert both.returncode == 1
    assert "not both" in both.stderr
