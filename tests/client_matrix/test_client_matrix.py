"""The client matrix: every example under examples/clients/ runs its scenario against a real node.

Each client is used unchanged, with its default settings (README "From your language"). A
language whose toolchain is absent is skipped locally with the reason; under CI (CI=true) its
absence fails, so the matrix cannot shrink silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nodeproc import NodeProcess  # tests/nodeproc.py

pytestmark = [pytest.mark.client_matrix, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "examples" / "clients"
NODE_DIR = CLIENTS / "node"
RUN_TIMEOUT_S = 180
GO_ENV = {"GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOFLAGS": ""}


def _php_has(extension: str) -> bool:
    php = shutil.which("php")
    if php is None:
        return False
    mods = subprocess.run([php, "-m"], capture_output=True, text=True).stdout.lower().split()
    return extension in mods


def _ruby_redis() -> bool:
    ruby = shutil.which("ruby")
    return ruby is not None and subprocess.run([ruby, "-e", "require 'redis'"]).returncode == 0


CASES = {
    "redis-cli": (
        ["bash", "redis_cli.sh", "{port}"],
        lambda: shutil.which("redis-cli") is not None,
    ),
    "redis-py-resp2": ([sys.executable, "python_client.py", "{port}", "2"], lambda: True),
    "redis-py-resp3": ([sys.executable, "python_client.py", "{port}", "3"], lambda: True),
    "node-redis": (
        ["node", "node/node_redis.js", "{port}"],
        lambda: shutil.which("node") is not None and (NODE_DIR / "node_modules" / "redis").is_dir(),
    ),
    "ioredis": (
        ["node", "node/ioredis.js", "{port}"],
        lambda: (
            shutil.which("node") is not None and (NODE_DIR / "node_modules" / "ioredis").is_dir()
        ),
    ),
    "redis-rb": (["ruby", "ruby/redis_rb.rb", "{port}"], _ruby_redis),
    "phpredis": (["php", "php/phpredis.php", "{port}"], lambda: _php_has("redis")),
    "predis": (
        ["php", "php/predis.php", "{port}"],
        lambda: _php_has("pcntl") and Path("/usr/share/php/Predis/Autoloader.php").is_file(),
    ),
    "redigo": (
        ["go", "run", "go/redigo.go", "{port}"],
        lambda: (
            shutil.which("go") is not None
            and Path("/usr/share/gocode/src/github.com/gomodule/redigo").is_dir()
        ),
    ),
}
HOW_TO_INSTALL = (
    "as .ci/run does: apt-get install -y redis-tools ruby ruby-redis php-cli php-redis "
    "php-nrk-predis golang-go golang-github-gomodule-redigo-dev, Node.js 20 with npm, then "
    "npm ci --prefix examples/clients/node"
)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcess(tmp_path_factory.mktemp("matrix"), "--http-address", "none")
    n.start()
    yield n
    n.kill()


@pytest.mark.parametrize("name", list(CASES))
def test_client_runs_the_scenario(node, name):
    command, available = CASES[name]
    if not available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name}: toolchain or client missing in CI ({HOW_TO_INSTALL})")
        pytest.skip(f"{name}: toolchain or client not installed ({HOW_TO_INSTALL})")
    env = dict(os.environ)
    if command[0] == "go":
        env |= GO_ENV
    result = subprocess.run(
        [part.format(port=node.port) for part in command],
        cwd=CLIENTS, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("OK"), result.stdout
    if name.startswith("redis-py"):
        assert last.endswith("hiredis True"), last  # redis-py's parser is hiredis here
