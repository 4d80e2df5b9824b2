"""The `sierradb` command: help, configuration errors, the data dir lock, graceful shutdown on
SIGTERM/SIGINT, the startup log, protected mode, passwords (flag and environment).

Invalid configuration and a data dir that cannot be opened exit 1 with one clear line on stderr;
SIGTERM and SIGINT finish the requests being executed, answer them, and exit 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import hiredis
import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sierradb.node.server import is_loopback
from sierradb.p2p import ClusterState

pytestmark = pytest.mark.timeout(120)

SIERRADB = Path(sys.executable).with_name("sierradb")
REPLY_WAIT_S = 10.0


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIERRA_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(SIERRADB), *args], capture_output=True, text=True, timeout=60, env=full_env
    )


def encode(*args: bytes | str | int) -> bytes:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


class Raw:
    """A raw-socket client; replies parsed by hiredis (errors come back as ReplyError)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=REPLY_WAIT_S)
        self.reader = hiredis.Reader()
        self.closed = False

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def reply(self) -> object:
        while (item := self.reader.gets()) is False:
            if self.closed:
                raise ConnectionError("closed before the reply")
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            self.reader.feed(data)
        return item

    def call(self, *args: bytes | str | int) -> object:
        self.sock.sendall(encode(*args))
        return self.reply()

    def wait_closed(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            self.reader.feed(data)


def as_map(value: object) -> dict:
    if isinstance(value, dict):
        return value
    assert isinstance(value, list) and len(value) % 2 == 0, value
    return dict(zip(value[::2], value[1::2], strict=True))


def assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("sierradb: error: "), line
    for needle in needles:
        assert needle in line, line
    assert "Traceback" not in result.stdout + result.stderr
    return line


# ------------------------------------------------------------------------------------ help
def test_help_exits_0_and_documents_the_flags():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for flag in (
        "--dir", "--partitions", "--buckets", "--segment-size", "--sync", "--client-address",
        "--requirepass", "--protected-mode", "--max-request-size", "--request-timeout",
        "--max-clients", "--log-level", "--config", "SIERRA_",
    ):  # fmt: skip
        assert flag in result.stdout, flag


# ------------------------------------------------------------------------- invalid config
@pytest.mark.parametrize(
    "args, env, needles",
    [
        (["--partitions", "0"], {}, ["partitions", "--partitions"]),
        (["--partitions", "many"], {}, ["--partitions", "many"]),
        (["--client-address", "nonsense"], {}, ["nonsense", "--client-address"]),
        (["--client-address", "127.0.0.1:70000"], {}, ["70000"]),
        (["--segment-size", "1MB"], {}, ["1MB"]),
        (["--buckets", "9", "--partitions", "8"], {}, ["buckets"]),
        (["--sync", "sometimes"], {}, ["sometimes"]),
        (["--no-such-flag"], {}, ["--no-such-flag"]),
        ([], {"SIERRA_PARTITIONS": "0"}, ["SIERRA_PARTITIONS"]),
        ([], {"SIERRA_REQUEST_TIMEOUT_S": "soon"}, ["SIERRA_REQUEST_TIMEOUT_S"]),
    ],
)
def test_invalid_config_exits_1_with_one_clear_line(tmp_path, args, env, needles):
    data_dir = tmp_path / "data"
    result = run_cli("--dir", str(data_dir), *args, env=env)
    assert_one_error_line(result, *needles)
    assert not data_dir.exists(), "the data dir was created for an invalid configuration"


def test_a_single_nodes_data_dir_is_refused_as_a_cluster_node(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ClusterState.start(str(data_dir), node_count=1, node_index=0, replication_factor=1)
    result = run_cli("--dir", str(data_dir), "--node-count", "3", "--mdns", "false")
    assert_one_error_line(
        result, "belongs to node 0 of a 1-node cluster", "cannot start as node 0 of 3"
    )


def test_missing_config_file_exits_1(tmp_path):
    result = run_cli("--dir", str(tmp_path / "d"), "--config", str(tmp_path / "nope.toml"))
    assert_one_error_line(result, "nope.toml")


# ------------------------------------------------------------------------------ data dir
def test_a_second_node_on_the_same_data_dir_is_refused(node_factory, tmp_path):
    first = node_factory()
    with Raw("127.0.0.1", first.port) as c:
        assert as_map(c.call("EAPPEND", "lock", "Ev"))[b"stream_version"] == 0
        result = run_cli("--dir", str(first.data_dir), "--client-address", "127.0.0.1:0")
        assert_one_error_line(result, "in use", str(first.data_dir))
        # The first node did not notice.
        assert as_map(c.call("EAPPEND", "lock", "Ev"))[b"stream_version"] == 1
    assert first.proc is not None and first.proc.poll() is None
    assert first.terminate() == 0


def test_an_existing_data_dir_with_other_partitions_is_refused(node_factory):
    node = node_factory("--partitions", "8")
    with Raw("127.0.0.1", node.port) as c:
        c.call("EAPPEND", "kept", "Ev")
    assert node.terminate() == 0
    result = run_cli("--dir", str(node.data_dir), "--client-address", "127.0.0.1:0",
                     "--partitions", "16")  # fmt: skip
    assert_one_error_line(result, "partitions", "16", "8")
    # Nothing was damaged: the right count still opens it, with the event.
    node.args = ("--partitions", "8")
    node.start()
    with Raw("127.0.0.1", node.port) as c:
        assert len(as_map(c.call("ESCAN", "kept", "-", "+"))[b"events"]) == 1


def test_an_unusable_data_dir_exits_1(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_cli("--dir", str(not_a_dir), "--client-address", "127.0.0.1:0")
    assert_one_error_line(result, str(not_a_dir))


# ------------------------------------------------------------------------- startup log
def test_startup_log_names_address_data_dir_and_partitions(node_factory):
    node = node_factory("--partitions", "12")
    out = node.output()
    assert f"ready to receive connections on 127.0.0.1:{node.port}" in out, out
    assert f"data dir {node.data_dir}" in out, out
    assert "12 partitions" in out, out
    assert node.terminate() == 0
    assert "sierradb stopped cleanly" in node.output()


# ---------------------------------------------------------------------- graceful shutdown
PIPELINE = 4000


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_in_flight_requests_then_exits_0(node_factory, signum):
    node = node_factory()
    stream = "graceful"
    requests = b"".join(
        encode("EAPPEND", stream, "Ev", "PAYLOAD", f"payload {i}") for i in range(PIPELINE)
    )
    acked: list[dict] = []
    with Raw("127.0.0.1", node.port) as c:

        def send() -> None:
            try:
                c.sock.sendall(requests)
            except OSError:
                pass  # the server stopped reading and closed

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        first = c.reply()
        acked.append(as_map(first))
        assert node.proc is not None
        node.proc.send_signal(signum)
        try:
            while True:
                reply = c.reply()
                assert not isinstance(reply, hiredis.ReplyError), reply
                acked.append(as_map(reply))
        except ConnectionError:
            pass  # closed after the last reply
        sender.join(REPLY_WAIT_S)
        assert not sender.is_alive()
        code = node.proc.wait(30)
    node.kill()  # reap
    assert code == 0, node.output()
    name = signal.Signals(signum).name
    assert f"received {name}, shutting down" in node.output()
    assert "sierradb stopped cleanly" in node.output()

    assert [a[b"stream_version"] for a in acked] == list(range(len(acked)))
    node.start()
    with Raw("127.0.0.1", node.port) as c:
        scan = as_map(c.call("ESCAN", stream, "-", "+", "COUNT", PIPELINE + 1))
    events = [as_map(e) for e in scan[b"events"]]
    # Everything answered is durable, in order; nothing was executed without an answer.
    assert [e[b"payload"] for e in events] == [f"payload {i}".encode() for i in range(len(acked))]
    assert [e[b"event_id"] for e in events] == [a[b"event_id"] for a in acked]


def test_sigterm_with_idle_and_subscribed_clients_exits_0_promptly(node_factory):
    node = node_factory()
    with (
        Raw("127.0.0.1", node.port) as idle,
        Raw("127.0.0.1", node.port) as subscriber,
        Raw("127.0.0.1", node.port) as partial,
    ):
        assert idle.call("PING") == b"PONG"
        subscriber.call("HELLO", "3")
        subscriber.call("ESUB", "watched")
        partial.sock.sendall(b"*3\r\n$7\r\nEAPPEND\r\n")
        time.sleep(0.1)
        started = time.monotonic()
        code = node.terminate()
        elapsed = time.monotonic() - started
        for c in (idle, subscriber, partial):
            c.wait_closed()
    assert code == 0, node.output()
    assert elapsed < 5, elapsed


# -------------------------------------------------------------------------- protected mode
@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", False),
        ("192.0.2.2", False),
        ("::ffff:10.1.2.3", False),
        ("fe80::1%eth0", False),
        ("2001:db8::1", False),
        ("localhost", False),  # peers are addresses, never names
        ("", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def non_loopback_ipv4() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not is_loopback(a.address):
                return a.address
    return None


@pytest.fixture
def external_ip() -> str:
    ip = non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    return ip


def test_protected_mode_denies_non_loopback_clients(node_factory, external_ip):
    node = node_factory("--client-address", "0.0.0.0:0")
    with Raw(external_ip, node.port) as c:
        c.sock.sendall(encode("PING"))
        reply = c.reply()
        assert str(reply).startswith("DENIED"), reply
        c.wait_closed()
    with Raw("127.0.0.1", node.port) as c:
        assert c.call("PING") == b"PONG"


@pytest.mark.parametrize(
    "flags",
    [("--protected-mode", "no"), ("--requirepass", "s3cret")],
    ids=["protected-mode-off", "password-set"],
)
def test_non_loopback_clients_are_served_without_protected_mode(node_factory, external_ip, flags):
    node = node_factory("--client-address", "0.0.0.0:0", *flags)
    with Raw(external_ip, node.port) as c:
        if "--requirepass" in flags:
            assert c.call("AUTH", "s3cret") == b"OK"
        assert c.call("PING") == b"PONG"


# ------------------------------------------------------------------------------ passwords
def check_password(port: int, password: str, wrong: str) -> None:
    with Raw("127.0.0.1", port) as c:
        for request in (("EAPPEND", "secret", "Ev"), ("ESCAN", "secret", "-", "+"), ("INFO",),
                        ("HELLO", "3"), ("EPSEQ", "0")):  # fmt: skip
            reply = c.call(*request)
            assert isinstance(reply, hiredis.ReplyError), (request, reply)
            assert str(reply).startswith("NOAUTH"), reply
        assert str(c.call("EAPPEND", "secret", "Ev")) == "NOAUTH Authentication required."
        assert c.call("PING") == b"PONG"
        assert str(c.call("AUTH", wrong)) == "WRONGPASS invalid username-password pair"
        assert str(c.call("AUTH", "someone", password)).startswith("WRONGPASS")
        assert c.call("AUTH", password) == b"OK"
        assert as_map(c.call("EAPPEND", "secret", "Ev"))[b"stream_version"] == 0
    with Raw("127.0.0.1", port) as c:
        hello = as_map(c.call("HELLO", "3", "AUTH", "default", password))
        assert hello[b"proto"] == 3
        assert c.call("ESVER", "secret") == 0
    with redis.Redis(port=port, password=password, protocol=3) as r:
        assert r.ping()
    no_retry = Retry(NoBackoff(), 0)
    with redis.Redis(port=port, protocol=2, retry=no_retry) as r:
        with pytest.raises(redis.AuthenticationError):
            r.execute_command("ESVER", "secret")


def test_requirepass_demands_auth_before_commands(node_factory):
    node = node_factory("--requirepass", "s3cret")
    check_password(node.port, "s3cret", "wrong")
    assert "s3cret" not in node.output()


def test_requirepass_from_the_environment(node_factory):
    node = node_factory(env={"SIERRA_REQUIREPASS": "from-env"})
    check_password(node.port, "from-env", "s3cret")


def test_flags_override_the_environment(node_factory):
    node = node_factory(
        "--requirepass",
        "from-flag",
        env={"SIERRA_REQUIREPASS": "from-env", "SIERRA_PARTITIONS": "5"},
    )
    check_password(node.port, "from-flag", "from-env")
    with redis.Redis(port=node.port, password="from-flag", protocol=3) as r:
        assert r.execute_command("HELLO", "3")[b"num_partitions"] == 5


def test_running_with_assertions_off_is_refused(tmp_path):
    # Assertions are the node's fail-stop checks; python -O would remove them silently.
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-O", "-m", "sierradb.node", "--dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert_one_error_line(result, "refusing to run with python -O")
    assert not data_dir.exists()
