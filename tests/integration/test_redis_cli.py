"""The stock `redis-cli` works against the node (PROTOCOL.md: "every Redis client, redis-cli").

`--no-raw` output shows types: simple strings bare, bulk strings quoted, `(integer)`, `(nil)`,
`(true)/(false)`; RESP3 maps print as `N# key => value`.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from resp_client import RawClient, as_dict, module_node, unique

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_node(tmp_path_factory)


def cli(port: int, *args: str, resp3: bool = False, raw: bool = False, stdin: str | None = None):
    cmd = ["redis-cli", "-p", str(port)]
    if resp3:
        cmd.append("-3")
    cmd.append("--raw" if raw else "--no-raw")
    cmd.extend(args)
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    return done.stdout


def test_redis_cli_ping(server):
    assert cli(server.port, "PING").strip() == "PONG"
    assert cli(server.port, "PING", "hi").strip() == '"hi"'


def test_redis_cli_one_liner_eappend_resp2_is_a_flat_list(server):
    stream = unique()
    out = cli(server.port, "EAPPEND", stream, "UserCreated", '{"name": "Alice"}')
    lines = [re.sub(r"^\s*\d+\) ", "", line) for line in out.splitlines()]
    # Keys and ids are bulk strings in RESP2 (PROTOCOL.md point 14): redis-cli quotes them.
    assert lines[0::2] == [
        '"event_id"',
        '"partition_key"',
        '"partition_id"',
        '"partition_sequence"',
        '"stream_version"',
        '"timestamp"',
    ]
    assert re.fullmatch(r'"[0-9a-f-]{36}"', lines[1])
    assert lines[9] == "(integer) 0"  # stream_version


def test_redis_cli_resp3_eappend_prints_a_map(server):
    stream = unique()
    out = cli(server.port, "EAPPEND", stream, "E", "PAYLOAD", "x", resp3=True)
    fields = dict(re.match(r"\s*\d+# (\w+) => (.*)", line).groups() for line in out.splitlines())
    assert list(fields) == [
        "event_id",
        "partition_key",
        "partition_id",
        "partition_sequence",
        "stream_version",
        "timestamp",
    ]
    assert fields["stream_version"] == "(integer) 0"
    assert re.fullmatch(r"[0-9a-f-]{36}", fields["event_id"])  # a simple string: unquoted


def test_redis_cli_escan_shows_the_event_types(server):
    stream = unique()
    cli(server.port, "EAPPEND", stream, "Created", "hello world")
    out = cli(server.port, "ESCAN", stream, "-", "+", resp3=True)
    assert "has_more => (false)" in out
    assert f'stream_id => "{stream}"' in out  # blob strings are quoted
    assert 'payload => "hello world"' in out
    assert "stream_version => (integer) 0" in out
    assert re.search(r"transaction_id => [0-9a-f-]{36}\n", out)  # simple string


def test_redis_cli_eget_miss_is_nil(server):
    assert cli(server.port, "EGET", "00000000-0000-0000-0000-000000000000").strip() == "(nil)"
    out = cli(server.port, "EGET", "00000000-0000-0000-0000-000000000000", resp3=True)
    assert out.strip() == "(nil)"


def test_redis_cli_hello_3_shows_proto(server):
    out = cli(server.port, "HELLO", "3", resp3=True)
    keys = re.findall(r"\d+# \"?(\w+)\"? =>", out)
    assert keys == ["server", "version", "peer_id", "num_partitions", "proto"]
    assert re.search(r"proto\"? => \(integer\) 3", out)


def test_redis_cli_error_replies_are_printed_with_their_code(server):
    stream = unique()
    cli(server.port, "EAPPEND", stream, "E")
    out = cli(server.port, "EAPPEND", stream, "E", "EXPECTED_VERSION", "7")
    assert out.strip().startswith("(error) WRONGVER current stream version is 0 but expected 7")


def test_redis_cli_info_prints_the_sections(server):
    out = cli(server.port, "INFO")
    assert "# Server" in out and "# Clients" in out and "# Stats" in out
    assert f"tcp_port:{server.port}" in out
    out = cli(server.port, "INFO", "CACHE", resp3=True)
    assert re.findall(r"^(\w+) ", out, re.M) == [
        "hits",
        "misses",
        "hit_ratio",
        "entries",
        "memory_bytes",
        "max_bytes",
        "block_size_bytes",
        "evictions",
        "stream_cache_hits",
        "stream_cache_misses",
        "stream_cache_entries",
        "stream_cache_max_entries",
        "stream_cache_bytes",
        "stream_cache_evictions",
    ]


def test_redis_cli_pipe_mode_sends_a_whole_pipeline(server):
    stream = unique()
    commands = "".join(f"EAPPEND {stream} E{i} payload-{i}\r\n" for i in range(200))
    commands += f"ESVER {stream}\r\nPING\r\n"
    done = subprocess.run(
        ["redis-cli", "-p", str(server.port), "--pipe"],
        input=commands,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "errors: 0, replies: 202" in done.stdout, done.stdout + done.stderr
    with RawClient(server.port) as c:
        assert c.call("ESVER", stream) == 199
        last = as_dict(as_dict(c.call("ESCAN", stream, 199, 199))[b"events"][0])
        assert last[b"payload"] == b"payload-199"


def test_redis_cli_authenticates_with_a_password(node_factory):
    node = node_factory("--requirepass", "cli-secret")
    assert cli(node.port, "ESVER", "s").strip().startswith("(error) NOAUTH")
    out = cli(node.port, "-a", "cli-secret", "--no-auth-warning", "EAPPEND", "s", "E")
    assert "stream_version" in out
    out = cli(node.port, "-a", "cli-secret", "--no-auth-warning", "ESVER", "s", resp3=True)
    assert out.strip() == "(integer) 0"
