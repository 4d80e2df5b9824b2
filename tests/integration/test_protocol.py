"""Connection-level protocol (PROTOCOL.md "Where we deliberately differ" 1, 2, 13 and details).

RESP2 until HELLO 3, HELLO with `proto`, the Redis courtesy commands, AUTH, INFO, errors with a
code prefix, pipelining, and the RESP2/RESP3 shapes of maps, booleans and nulls.
"""

from __future__ import annotations

import socket
import threading
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from resp_client import (
    Err,
    Map,
    RawClient,
    Simple,
    Verbatim,
    as_dict,
    client,
    encode_command,
    module_node,
    scan,
    unique,
)

HELLO_KEYS = [b"server", b"version", b"peer_id", b"num_partitions", b"proto"]
CACHE_KEYS = [
    b"hits",
    b"misses",
    b"hit_ratio",
    b"entries",
    b"memory_bytes",
    b"max_bytes",
    b"block_size_bytes",
    b"evictions",
    # Ours, after the reference's keys: the stream-tip cache of the storage engine.
    b"stream_cache_hits",
    b"stream_cache_misses",
    b"stream_cache_entries",
    b"stream_cache_max_entries",
    b"stream_cache_bytes",
    b"stream_cache_evictions",
]
PASSWORD = "s3cret-pass"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_node(tmp_path_factory)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    yield from module_node(tmp_path_factory, "--requirepass", PASSWORD)


@pytest.fixture
def r(server, protocol):
    c = client(server.port, protocol)
    yield c
    c.close()


# ------------------------------------------------------------------------------ PING / ECHO
def test_ping_replies_pong_as_a_simple_string(raw):
    reply = raw.call("PING")
    assert type(reply) is Simple and reply == "PONG"


def test_ping_with_a_message_echoes_it_as_a_bulk_string(raw):
    assert raw.call("PING", "hello there") == b"hello there"


def test_echo_returns_its_argument(r):
    assert r.echo(b"any \r\n bytes \x00") == b"any \r\n bytes \x00"


# ------------------------------------------------------------------------------------ HELLO
def test_a_connection_speaks_resp2_until_hello_3(server):
    with RawClient(server.port, protocol=2) as c:
        c.send_raw(b"*2\r\n$4\r\nEGET\r\n$36\r\n00000000-0000-0000-0000-000000000000\r\n")
        c.sock.settimeout(10)
        assert c.sock.recv(100) == b"$-1\r\n"
        hello = c.call("HELLO", "3")
        assert isinstance(hello, Map)
        c.send("EGET", "00000000-0000-0000-0000-000000000000")
        assert c.sock.recv(100) == b"_\r\n"


@pytest.mark.parametrize("version", [2, 3])
def test_hello_replies_with_the_reference_keys_in_order_then_proto(server, version):
    with RawClient(server.port) as c:
        reply = c.call("HELLO", version)
    if version == 3:
        assert isinstance(reply, Map)
        items = list(reply.items())
    else:
        assert isinstance(reply, list) and len(reply) == 10
        items = list(zip(reply[::2], reply[1::2], strict=True))
    assert [k for k, _ in items] == HELLO_KEYS
    assert all(type(k) is bytes for k, _ in items)  # blob-string keys, like the reference
    d = dict(items)
    assert d[b"server"] == b"sierradb"
    assert type(d[b"version"]) is bytes and d[b"version"]
    assert d[b"peer_id"].startswith(b"12D3KooW")
    assert d[b"num_partitions"] == 32
    assert d[b"proto"] == version


def test_hello_without_a_version_replies_with_the_current_protocol(server):
    with RawClient(server.port) as c:
        assert as_dict(c.call("HELLO"))[b"proto"] == 2
        c.call("HELLO", 3)
        reply = c.call("HELLO")
        assert isinstance(reply, Map) and reply[b"proto"] == 3


def test_hello_2_switches_back_to_resp2(server):
    with RawClient(server.port, protocol=3) as c:
        reply = c.call("HELLO", 2)
        assert isinstance(reply, list) and as_dict(reply)[b"proto"] == 2
        assert c.call("ESVER", unique()) is None
        assert c.buf == b""
        c.send("ESCAN", unique(), "-", "+")
        assert isinstance(c.read(), list)


@pytest.mark.parametrize("version", ["4", "1", "0", "-3"])
def test_hello_with_an_unsupported_version_gets_noproto(server, version):
    with RawClient(server.port) as c:
        reply = c.call("HELLO", version)
        assert reply == "NOPROTO unsupported protocol version" and type(reply) is Err
        assert c.call("PING") == "PONG"  # still RESP2, still open
        assert isinstance(c.call("HELLO"), list)


def test_hello_setname_sets_the_client_name(server):
    with RawClient(server.port) as c:
        assert isinstance(c.call("HELLO", 3, "SETNAME", "worker-7"), Map)
        assert c.call("CLIENT", "GETNAME") == b"worker-7"


def test_redis_py_connects_with_protocol_3(server):
    r = redis.Redis(port=server.port, protocol=3)
    try:
        assert r.ping() is True
        assert r.connection_pool.get_protocol() == 3
    finally:
        r.close()


# ------------------------------------------------------------------------------------- AUTH
def test_commands_other_than_auth_hello_ping_quit_get_noauth_before_auth(secured):
    with RawClient(secured.port) as c:
        for args in (
            ("EAPPEND", unique(), "E"),
            ("ESCAN", unique(), "-", "+"),
            ("EGET", "00000000-0000-0000-0000-000000000000"),
            ("INFO",),
            ("CLIENT", "ID"),
            ("ESUB", unique()),
        ):
            assert c.call(*args) == "NOAUTH Authentication required.", args
        assert c.call("PING") == "PONG"
        assert c.call("HELLO", 3).startswith("NOAUTH")  # HELLO without AUTH
        assert c.call("QUIT") == "OK"
        assert c.closed_by_server()


@pytest.mark.parametrize(
    "args",
    [("AUTH", "wrong"), ("AUTH", "default", "wrong"), ("AUTH", "someone", PASSWORD)],
    ids=["password", "default-user", "other-user"],
)
def test_a_wrong_password_gets_wrongpass(secured, args):
    with RawClient(secured.port) as c:
        assert c.call(*args) == "WRONGPASS invalid username-password pair"
        assert c.call("ESVER", unique()) == "NOAUTH Authentication required."


@pytest.mark.parametrize("args", [("AUTH", PASSWORD), ("AUTH", "default", PASSWORD)])
def test_auth_with_the_password_unlocks_every_command(secured, args):
    with RawClient(secured.port) as c:
        assert c.call(*args) == "OK"
        stream = unique()
        assert as_dict(c.call("EAPPEND", stream, "E"))[b"stream_version"] == 0
        assert c.call("ESVER", stream) == 0


def test_hello_3_auth_authenticates_and_switches_protocol(secured):
    with RawClient(secured.port) as c:
        reply = c.call("HELLO", 3, "AUTH", "default", PASSWORD)
        assert isinstance(reply, Map) and reply[b"proto"] == 3
        assert c.call("ESVER", unique()) is None


def test_hello_auth_with_a_wrong_password_gets_wrongpass(secured):
    with RawClient(secured.port) as c:
        assert c.call("HELLO", 3, "AUTH", "default", "nope") == (
            "WRONGPASS invalid username-password pair"
        )
        assert c.call("ESVER", unique()) == "NOAUTH Authentication required."


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_authenticates_with_a_password(secured, protocol):
    r = client(secured.port, protocol, password=PASSWORD)
    try:
        assert as_dict(r.execute_command("EAPPEND", unique(), "E"))[b"stream_version"] == 0
    finally:
        r.close()
    bad = client(secured.port, protocol, password="wrong", retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(redis.AuthenticationError):
            bad.ping()
    finally:
        bad.close()


def test_auth_without_a_configured_password_is_an_error(raw):
    assert isinstance(raw.call("AUTH", "whatever"), Err)
    assert raw.call("PING") == "PONG"


# ------------------------------------------------------------------------------- QUIT/SELECT
def test_quit_replies_ok_and_closes_the_connection(raw):
    assert raw.call("QUIT") == "OK"
    assert raw.closed_by_server()


def test_select_0_is_accepted(raw):
    assert raw.call("SELECT", 0) == "OK"


def test_select_another_database_is_an_error(raw):
    reply = raw.call("SELECT", 1)
    assert type(reply) is Err and reply.startswith("ERR ")
    assert raw.call("PING") == "PONG"


# ------------------------------------------------------------------------------------ CLIENT
def test_client_setname_and_getname(r):
    assert r.client_getname() is None
    assert r.client_setname("billing-projector") is True
    assert r.client_getname() in (b"billing-projector", "billing-projector")


def test_client_id_is_an_integer_unique_per_connection(server, protocol):
    with RawClient(server.port, protocol) as a, RawClient(server.port, protocol) as b:
        id_a, id_b = a.call("CLIENT", "ID"), b.call("CLIENT", "ID")
        assert type(id_a) is int and type(id_b) is int and id_a != id_b
        assert a.call("CLIENT", "ID") == id_a


def test_client_setinfo_is_accepted(raw):
    assert raw.call("CLIENT", "SETINFO", "LIB-NAME", "my-lib") == "OK"
    assert raw.call("CLIENT", "SETINFO", "LIB-VER", "1.2.3") == "OK"


def test_an_unknown_client_subcommand_gets_an_error_and_the_connection_stays(raw):
    reply = raw.call("CLIENT", "MAINT_NOTIFICATIONS", "on")
    assert type(reply) is Err and " " in reply
    assert raw.call("PING") == "PONG"


# ---------------------------------------------------------------------- COMMAND / CONFIG GET
def test_command_replies_with_an_array(raw):
    assert isinstance(raw.call("COMMAND"), list)


def test_config_get_replies_with_an_empty_map_or_array(raw, protocol):
    reply = raw.call("CONFIG", "GET", "*")
    assert reply in ([], {})
    if protocol == 2:
        assert isinstance(reply, list)


# -------------------------------------------------------------------------------------- INFO
SERVER_KEYS = [
    "sierradb_version",
    "peer_id",
    "process_id",
    "tcp_port",
    "uptime_in_seconds",
    "num_partitions",
]


def _info_lines(text: bytes) -> tuple[list[str], dict[str, str]]:
    sections, fields = [], {}
    for line in text.decode().split("\r\n"):
        if line.startswith("# "):
            sections.append(line[2:])
        elif line:
            key, _, value = line.partition(":")
            fields[key] = value
    return sections, fields


def test_info_is_a_redis_style_bulk_string_with_every_section(server, raw, protocol):
    reply = raw.call("INFO")
    if protocol == 2:
        assert type(reply) is bytes
    else:
        assert type(reply) in (bytes, Verbatim)
    text = reply if isinstance(reply, bytes) else reply.encode()
    sections, fields = _info_lines(text)
    for name in ("Server", "Clients", "Stats", "Storage", "Cluster"):
        assert name in sections
    assert sections[0] == "Server"
    for key in SERVER_KEYS:
        assert key in fields, key
    assert int(fields["tcp_port"]) == server.port
    assert int(fields["process_id"]) == server.proc.pid
    assert int(fields["num_partitions"]) == 32
    assert int(fields["uptime_in_seconds"]) >= 0
    hello = as_dict(raw.call("HELLO"))
    assert fields["peer_id"].encode() == hello[b"peer_id"]


def test_info_with_a_section_returns_only_that_section(raw):
    sections, fields = _info_lines(raw.call("INFO", "server"))
    assert sections == ["Server"]
    assert set(SERVER_KEYS) <= set(fields)


def test_redis_py_info_parses_the_text(server, protocol):
    r = redis.Redis(port=server.port, protocol=protocol)
    try:
        info = r.info()
        assert info["tcp_port"] == server.port
        assert info["num_partitions"] == 32
        assert "sierradb_version" in info
    finally:
        r.close()


@pytest.mark.parametrize("section", ["CACHE", "cache", "Cache"])
def test_info_cache_is_the_reference_map_in_order(raw, protocol, section):
    reply = raw.call("INFO", section)
    if protocol == 3:
        assert isinstance(reply, Map)
        items = list(reply.items())
        assert type(reply[b"hit_ratio"]) is float  # the RESP3 double
    else:
        assert isinstance(reply, list) and len(reply) == 2 * len(CACHE_KEYS)
        items = list(zip(reply[::2], reply[1::2], strict=True))
        float(items[2][1])  # RESP2 has no double: its text
    assert [k for k, _ in items] == CACHE_KEYS
    assert all(type(k) is bytes for k, _ in items)
    d = dict(items)
    for key in CACHE_KEYS:
        if key != b"hit_ratio":
            assert type(d[key]) is int and d[key] >= 0, key
    assert d[b"block_size_bytes"] == 65536
    assert 0.0 <= float(d[b"hit_ratio"]) <= 1.0


# ------------------------------------------------------------------------------------ errors
def test_an_unknown_command_gets_invalidarg_with_the_upper_cased_name(raw):
    assert raw.call("frobnicate", "x") == "INVALIDARG unknown command 'FROBNICATE'"


def test_an_empty_command_gets_err_and_the_connection_stays_open(raw):
    raw.send_raw(b"*0\r\n")
    assert raw.read() == "ERR empty command"
    assert raw.call("PING") == "PONG"


def test_every_error_has_a_code_prefix(raw):
    for args in (
        ("EGET",),
        ("EGET", "not-a-uuid"),
        ("ESCAN", "s"),
        ("EPSCAN", "x", "0", "+"),
        ("EAPPEND", "s", "E", "EXPECTED_VERSION", "maybe"),
        ("EAPPEND", "", "E"),
        ("EAPPEND", "s", "E", "COUNT", "3", "PAYLOAD"),
        ("ESUB", "s", "WINDOW", "0"),
        ("EACK", "nope", "1"),
        ("ECHO",),
        ("NOPE",),
    ):
        reply = raw.call(*args)
        assert type(reply) is Err, args
        code = reply.split(" ", 1)[0]
        assert code.isupper() and code.isalpha(), reply


def test_an_event_name_over_255_bytes_is_invalidarg(raw):
    stream = unique()
    assert raw.call("EAPPEND", stream, "E" * 256).startswith("INVALIDARG ")
    assert raw.call("ESVER", stream) is None
    assert as_dict(raw.call("EAPPEND", stream, "E" * 255))[b"stream_version"] == 0


def test_a_malformed_frame_gets_a_protocol_error_and_the_connection_closes(server, protocol):
    with RawClient(server.port, protocol) as c:
        c.send_raw(b"*1\r\n$abc\r\nPING\r\n")
        reply = c.read()
        assert type(reply) is Err and reply.startswith("ERR Protocol error")
        assert c.closed_by_server()
    with RawClient(server.port) as other:  # the server is fine
        assert other.call("PING") == "PONG"


def test_a_request_over_the_maximum_size_is_refused_and_the_connection_closes(server):
    with RawClient(server.port) as c:
        c.send_raw(b"*3\r\n$7\r\nEAPPEND\r\n$1\r\ns\r\n$%d\r\n" % (65 * 1024 * 1024))
        reply = c.read()
        assert reply == "ERR Protocol error: request too large"
        assert c.closed_by_server()


# ------------------------------------------------------------------------ RESP2 vs RESP3
def test_null_is_underscore_in_resp3_and_minus_one_bulk_in_resp2(server):
    with RawClient(server.port) as c2, RawClient(server.port, 3) as c3:
        for c, wire in ((c2, b"$-1\r\n"), (c3, b"_\r\n")):
            c.send("ESVER", unique())
            c.sock.settimeout(10)
            assert c.sock.recv(100) == wire


def test_booleans_are_hash_t_f_in_resp3_and_integers_in_resp2(server):
    stream = unique()
    with RawClient(server.port) as c2, RawClient(server.port, 3) as c3:
        c2.call("EAPPEND", stream, "E")
        c2.call("EAPPEND", stream, "E")
        more2 = c2.call("ESCAN", stream, "-", "+", "COUNT", 1)
        assert more2[0] == b"has_more" and type(more2[1]) is int and more2[1] == 1
        more3 = c3.call("ESCAN", stream, "-", "+", "COUNT", 1)
        assert isinstance(more3, Map) and more3["has_more"] is True
        assert c2.call("ESCAN", stream, "-", "+")[1] == 0
        assert c3.call("ESCAN", stream, "-", "+")["has_more"] is False


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_shapes_of_maps_booleans_and_null(server, protocol):
    r = client(server.port, protocol)
    try:
        stream = unique()
        append = r.execute_command("EAPPEND", stream, "E")
        result = r.execute_command("ESCAN", stream, "-", "+")
        miss = r.execute_command("EGET", "00000000-0000-0000-0000-000000000000")
    finally:
        r.close()
    if protocol == 3:
        assert isinstance(append, dict) and isinstance(result, dict)
        assert result[b"has_more"] is False
    else:
        assert isinstance(append, list) and isinstance(result, list)
        assert result[:2] == [b"has_more", 0]
    assert miss is None


# ------------------------------------------------------------------------------- pipelining
def test_a_pipeline_of_100_mixed_commands_gets_its_replies_in_order(r):
    stream = unique()
    pipe = r.pipeline(transaction=False)
    expected = []
    version = -1
    for i in range(100):
        kind = i % 5
        if kind == 0:
            pipe.execute_command("EAPPEND", stream, "Tick", f"payload-{i}")
            version += 1
            expected.append(("append", version))
        elif kind == 1:
            pipe.execute_command("ECHO", f"echo-{i}")
            expected.append(("echo", f"echo-{i}".encode()))
        elif kind == 2:
            pipe.execute_command("ESVER", stream)
            expected.append(("esver", version))
        elif kind == 3:
            pipe.execute_command("ESCAN", stream, version, version)
            expected.append(("escan", version))
        else:
            pipe.execute_command("PING")
            expected.append(("ping", None))
    replies = pipe.execute()
    pipe.reset()
    assert len(replies) == 100
    for reply, (kind, value) in zip(replies, expected, strict=True):
        if kind == "append":
            assert as_dict(reply)[b"stream_version"] == value
        elif kind == "echo":
            assert reply == value
        elif kind == "esver":
            assert reply == value
        elif kind == "escan":
            _, events = scan(reply)
            assert [e[b"stream_version"] for e in events] == [value]
            assert events[0][b"payload"] == f"payload-{value * 5}".encode()
        else:
            assert reply in (True, b"PONG")


def test_a_pipeline_larger_than_the_socket_buffers_completes(server):
    """redis-py writes a whole pipeline before reading: the server must keep reading."""
    stream = unique()
    n = 6000
    result: list = []

    def run() -> None:
        r = client(server.port)
        try:
            pipe = r.pipeline(transaction=False)
            for _ in range(n):
                pipe.execute_command("EAPPEND", stream, "Big", "PAYLOAD", b"x" * 1024)
            result.append(pipe.execute())
            pipe.reset()
        except BaseException as e:  # noqa: BLE001
            result.append(e)
        finally:
            r.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(90)
    assert not t.is_alive(), "pipeline deadlocked"
    (replies,) = result
    assert isinstance(replies, list), replies
    assert [as_dict(x)[b"stream_version"] for x in replies] == list(range(n))


def test_commands_pipelined_after_quit_are_not_executed(server):
    stream = unique()
    with RawClient(server.port) as c:
        c.send_raw(
            b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n"
            b"*3\r\n$7\r\nEAPPEND\r\n$%d\r\n%s\r\n$1\r\nE\r\n" % (len(stream), stream.encode())
        )
        assert c.read() == "PONG"
        assert c.read() == "OK"
        assert c.closed_by_server()
    with RawClient(server.port) as c:
        assert c.call("ESVER", stream) is None


def test_pipelined_raw_requests_get_replies_in_order(raw):
    stream = unique()
    raw.send_raw(
        b"".join(
            [
                b"*1\r\n$4\r\nPING\r\n",
                b"*3\r\n$7\r\nEAPPEND\r\n$%d\r\n%s\r\n$1\r\nA\r\n" % (len(stream), stream.encode()),
                b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
                b"*2\r\n$5\r\nESVER\r\n$%d\r\n%s\r\n" % (len(stream), stream.encode()),
                b"*1\r\n$3\r\nBAD\r\n",
                b"*2\r\n$4\r\nPING\r\n$3\r\nend\r\n",
            ]
        )
    )
    assert raw.read() == "PONG"
    assert as_dict(raw.read())[b"stream_version"] == 0
    assert raw.read() == b"hi"
    assert raw.read() == 0
    assert raw.read() == "INVALIDARG unknown command 'BAD'"
    assert raw.read() == b"end"


def test_replies_that_fill_the_socket_arrive_whole_and_in_order(server):
    """Append replies larger than the socket buffers, from a client that writes everything
    before reading anything: what the commit's completion cannot write at once, the connection
    sends while still reading ahead, so nothing deadlocks, is lost or is reordered."""
    stream = unique()
    key = str(uuid.uuid4())
    per_request, requests = 40, 300
    command = ["EMAPPEND", key]
    for _ in range(per_request):
        command += [stream, "Filled", "PAYLOAD", "x" * 64]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server's writes fill it
    sock.settimeout(60)
    sock.connect(("127.0.0.1", server.port))
    raw = RawClient(server.port, timeout=60, sock=sock)
    try:
        sender = threading.Thread(
            target=lambda: sock.sendall(encode_command(*command) * requests), daemon=True
        )
        sender.start()
        sender.join(60)
        assert not sender.is_alive(), "the server stopped reading"
        versions = []
        for _ in range(requests):
            reply = as_dict(raw.read())
            versions += [as_dict(e)[b"stream_version"] for e in reply[b"events"]]
        assert versions == list(range(per_request * requests))
        assert raw.call("PING") == "PONG"
    finally:
        raw.close()
