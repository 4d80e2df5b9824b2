"""Bad input from clients: the server answers or closes that connection, serves the others, and
loses nothing.

Everything here talks raw sockets to a real node started with a 1 MiB request limit and a 1 s
request timeout: malformed and truncated RESP frames, huge declared lengths, deep nesting, invalid
UTF-8, unknown commands, wrong argument counts, slow-loris clients, and a bounded seeded fuzz loop
(random bytes and mutations of valid requests) during which a healthy client keeps appending and
reading back its own stream. A malformed frame gets `-ERR Protocol error: ...` and the connection
is closed, as Redis does; a refused command gets an error with a code and the connection stays
usable.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
import uuid

import hiredis
import pytest

pytestmark = pytest.mark.timeout(120)

REQUEST_TIMEOUT_S = 1.0
MAX_REQUEST_BYTES = 1024 * 1024
FLAGS = ("--request-timeout", "1", "--max-request-size", "1MiB", "--partitions", "8")
# How long a reply that the server owes at once may take on a busy machine.
REPLY_WAIT_S = 5.0
FUZZ_SEED = 20240611
FUZZ_INPUTS = 600
# Every so many inputs, the fuzzing connection is left open (no EOF) while the others go on.
FUZZ_HOLD_EVERY = 10


def encode(*args: bytes | str | int) -> bytes:
    """A request as a RESP array of bulk strings."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


class Raw:
    """A blocking raw-socket client that parses replies with hiredis (errors as ReplyError)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_WAIT_S)
        self.reader = hiredis.Reader()
        self.closed = False

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send all of `data`; False if the server closed the connection meanwhile."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def _recv(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
        else:
            self.reader.feed(data)
        return data

    def reply(self, timeout: float = REPLY_WAIT_S) -> object:
        """The next reply; raises AssertionError if the connection closes first."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.reader.gets()
            if item is not False:
                return item
            assert not self.closed, "connection closed before the reply"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply in time")
            self._recv(remaining)

    def poll(self, timeout: float) -> None:
        """Receive whatever arrives within `timeout`, if anything."""
        if not self.closed:
            try:
                self._recv(timeout)
            except TimeoutError:
                pass

    def call(self, *args: bytes | str | int) -> object:
        assert self.send(encode(*args))
        return self.reply()

    def wait_closed(self, timeout: float = REPLY_WAIT_S) -> list[object]:
        """Read until the server closes; the replies received meanwhile."""
        deadline = time.monotonic() + timeout
        replies: list[object] = []
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection not closed in time; replies so far: {replies}")
            self._recv(remaining)
        while (item := self.reader.gets()) is not False:  # a malformed reply raises here
            replies.append(item)
        return replies


def error_text(reply: object) -> str:
    assert isinstance(reply, hiredis.ReplyError), f"expected an error reply, got {reply!r}"
    return str(reply)


def assert_protocol_error_and_close(client: Raw) -> str:
    """The connection gets one protocol error, then is closed; returns the error text."""
    replies = client.wait_closed()
    assert len(replies) == 1, replies
    text = error_text(replies[0])
    assert text.startswith("ERR Protocol error"), text
    return text


def assert_healthy(port: int) -> None:
    with Raw(port) as c:
        assert c.call("PING") == b"PONG"


def as_map(value: object) -> dict:
    if isinstance(value, dict):
        return value
    assert isinstance(value, list) and len(value) % 2 == 0, value
    return dict(zip(value[::2], value[1::2], strict=True))


@pytest.fixture
def node(node_factory):  # type: ignore[no-untyped-def]
    n = node_factory(*FLAGS)
    yield n
    assert n.proc is not None and n.proc.poll() is None, "the node died:\n" + n.output()
    assert "Traceback" not in n.output(), n.output()


# ------------------------------------------------------------------------ malformed frames
MALFORMED = [
    pytest.param(b"+PING\r\n", id="simple-string-command"),
    pytest.param(b":12\r\n", id="integer-command"),
    pytest.param(b"*1\r\n$-1\r\n", id="null-argument"),
    pytest.param(b"*1\r\n*1\r\n$4\r\nPING\r\n", id="array-argument"),
    pytest.param(b"*1\r\n$abc\r\n", id="bad-bulk-length"),
    pytest.param(b"*x\r\n", id="bad-multibulk-length"),
    pytest.param(b"*2\r\n$4\r\nPING\r\n%1\r\n*1\r\n:1\r\n:2\r\n", id="aggregate-map-key"),
    pytest.param(b"*1\r\n$4\r\nPINGxx\r\n", id="bulk-longer-than-declared"),
    pytest.param(b"*1\r\n?\r\n", id="unknown-type-byte"),
]


@pytest.mark.parametrize("frame", MALFORMED)
def test_malformed_frame_gets_protocol_error_and_close(node, frame):
    with Raw(node.port) as bystander, Raw(node.port) as c:
        assert bystander.call("PING") == b"PONG"
        c.send(frame)
        replies = c.wait_closed()
        # Whole requests before the bad bytes are answered; then one protocol error, then close.
        assert replies, "closed without a reply"
        assert error_text(replies[-1]).startswith("ERR Protocol error"), replies
        assert not any(isinstance(r, hiredis.ReplyError) for r in replies[:-1]), replies
        assert bystander.call("PING") == b"PONG"
    assert_healthy(node.port)


def test_requests_before_a_malformed_frame_are_answered_first(node):
    with Raw(node.port) as c:
        c.send(encode("PING") + encode("ECHO", "hi") + b"+garbage\r\n" + encode("PING"))
        replies = c.wait_closed()
    assert replies[:2] == [b"PONG", b"hi"]
    assert len(replies) == 3 and error_text(replies[2]).startswith("ERR Protocol error")


def test_truncated_requests_then_eof_close_quietly(node):
    request = encode("EAPPEND", "truncated", "Ev", "PAYLOAD", "x" * 50)
    for cut in range(1, len(request)):
        with Raw(node.port) as c:
            assert c.send(request[:cut])
            c.sock.shutdown(socket.SHUT_WR)
            assert c.wait_closed() == []
    with Raw(node.port) as c:
        scan = as_map(c.call("ESCAN", "truncated", "-", "+"))
    assert scan[b"events"] == [], "a truncated append was executed"


def test_byte_by_byte_request_is_served(node):
    with Raw(node.port) as c:
        for byte in encode("ECHO", "slowly"):
            c.send(bytes([byte]))
        assert c.reply() == b"slowly"


def test_requests_after_quit_are_not_executed(node):
    with Raw(node.port) as c:
        c.send(
            encode("EAPPEND", "quit", "Ev", "PAYLOAD", "before")
            + encode("QUIT")
            + encode("EAPPEND", "quit", "Ev", "PAYLOAD", "after") * 1000
        )
        replies = c.wait_closed()
    assert len(replies) == 2 and replies[1] == b"OK", replies
    assert as_map(replies[0])[b"stream_version"] == 0
    with Raw(node.port) as c:
        (event,) = as_map(c.call("ESCAN", "quit", "-", "+"))[b"events"]
    assert as_map(event)[b"payload"] == b"before"


def reset(c: Raw) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def test_a_client_that_resets_its_connection_is_no_error(node):
    with Raw(node.port) as idle, Raw(node.port) as partial, Raw(node.port) as unread:
        assert idle.call("PING") == b"PONG"
        partial.send(encode("EAPPEND", "reset", "Ev")[:20])
        unread.send(encode("INFO") * 200)
        time.sleep(0.2)
        for c in (idle, partial, unread):
            reset(c)
        time.sleep(0.2)
    assert_healthy(node.port)
    assert "failed; closing it" not in node.output(), node.output()


# ---------------------------------------------------------------------------- size limits
def test_request_over_the_max_size_is_refused_and_closed(node):
    # Many modest arguments: no single header reveals the size; the bytes buffered do.
    arg = b"x" * 1000
    count = 2 * MAX_REQUEST_BYTES // len(arg)
    request = b"*%d\r\n" % (count + 1) + encode("ECHO")[4:] + (b"$1000\r\n" + arg + b"\r\n") * count
    with Raw(node.port) as c:
        for i in range(0, len(request), 64 * 1024):
            if not c.send(request[i : i + 64 * 1024]):
                break
        text = assert_protocol_error_and_close(c)
    assert text == "ERR Protocol error: request too large"
    assert_healthy(node.port)


def test_request_just_under_the_max_size_is_accepted(node):
    payload = bytes(range(256)) * (900 * 1024 // 256)
    with Raw(node.port) as c:
        reply = as_map(c.call("EAPPEND", "big", "Big", "PAYLOAD", payload))
        assert reply[b"stream_version"] == 0
        (event,) = as_map(c.call("ESCAN", "big", "-", "+"))[b"events"]
        assert as_map(event)[b"payload"] == payload


@pytest.mark.parametrize(
    "frame, message",
    [
        (b"*1\r\n$99999999999\r\n", "request too large"),
        (b"*2\r\n$4\r\nECHO\r\n$2000000\r\n", "request too large"),
        (b"*99999999999\r\n", "invalid multibulk length"),
        (b"*2\r\n$4\r\nECHO\r\n*4294967295\r\n", "invalid multibulk length"),
    ],
)
def test_huge_declared_length_is_refused_at_once(node, frame, message):
    with Raw(node.port) as c:
        started = time.monotonic()
        assert c.send(frame)
        text = assert_protocol_error_and_close(c)
        elapsed = time.monotonic() - started
    assert text == f"ERR Protocol error: {message}"
    # Refused from the header alone, not after the request timeout.
    assert elapsed < REQUEST_TIMEOUT_S * 0.8, elapsed
    assert_healthy(node.port)


@pytest.mark.parametrize("chunk_levels", [10_000, 100, 1])
def test_deep_nesting_is_refused_without_crashing(node, chunk_levels):
    levels = 10_000
    frame = b"*1\r\n" * levels + encode("PING")
    with Raw(node.port) as c:
        step = 4 * chunk_levels
        for i in range(0, len(frame), step):
            if not c.send(frame[i : i + step]):
                break
        assert_protocol_error_and_close(c)
    assert_healthy(node.port)


# ------------------------------------------------------------------ refused commands: stay open
def test_invalid_utf8_stream_id_is_invalidarg_and_the_connection_stays_usable(node):
    with Raw(node.port) as c:
        for request in (
            ("EAPPEND", b"\xff\xfe", "Ev"),
            ("EAPPEND", b"ok", b"\xc3\x28"),
            ("ESCAN", b"\xed\xa0\x80", "-", "+"),
            ("ESVER", b"\x80"),
            ("EMAPPEND", str(uuid.uuid4()), b"s\xff", "Ev"),
        ):
            assert error_text(c.call(*request)).startswith("INVALIDARG"), request
            assert c.call("PING") == b"PONG"
        # Invalid UTF-8 in a payload is just bytes.
        reply = as_map(c.call("EAPPEND", "utf8-ok", "Ev", "PAYLOAD", b"\xff\xfe\x00"))
        assert reply[b"stream_version"] == 0
        (event,) = as_map(c.call("ESCAN", "utf8-ok", "-", "+"))[b"events"]
        assert as_map(event)[b"payload"] == b"\xff\xfe\x00"


def test_unknown_command_is_invalidarg_and_the_connection_stays_usable(node):
    with Raw(node.port) as c:
        assert error_text(c.call("FOO")) == "INVALIDARG unknown command 'FOO'"
        assert error_text(c.call("foo", "bar")) == "INVALIDARG unknown command 'FOO'"
        c.send(b"FOO bar\r\n")  # inline, as typed into telnet
        assert error_text(c.reply()) == "INVALIDARG unknown command 'FOO'"
        assert error_text(c.call(b"\xff\xfe")).startswith("ERR")
        assert c.call("PING") == b"PONG"


WRONG_ARITY = [
    ("EAPPEND",),
    ("EAPPEND", "s"),
    ("EMAPPEND",),
    ("EMAPPEND", "not-a-uuid", "s", "Ev"),
    ("EGET",),
    ("ESCAN",),
    ("ESCAN", "s"),
    ("ESCAN", "s", "-"),
    ("ESVER",),
    ("EPSCAN", "0"),
    ("EPSEQ",),
    ("ESUB",),
    ("EPSUB",),
    ("EACK",),
    ("EUNSUB",),
    ("PING", "a", "b"),
    ("ECHO",),
    ("AUTH",),
    ("CLIENT",),
    ("HELLO", "3", "x"),
    ("EAPPEND", "s", "Ev", "PAYLOAD"),
    ("EAPPEND", "s", "Ev", "EXPECTED_VERSION"),
    ("ESCAN", "s", "-", "+", "COUNT"),
]


def test_wrong_argument_counts_get_coded_errors_and_the_connection_stays_usable(node):
    with Raw(node.port) as c:
        c.send(b"".join(encode(*request) + encode("PING") for request in WRONG_ARITY))
        for request in WRONG_ARITY:
            text = error_text(c.reply())
            code = text.split(" ", 1)[0]
            assert code.isupper() and code.isalpha(), (request, text)
            assert c.reply() == b"PONG"
    with Raw(node.port) as c:
        assert c.call("EPSEQ", "0") is None  # nothing was written by any of them


# --------------------------------------------------------------------------------- slow loris
def test_slow_loris_is_closed_after_the_request_timeout_while_others_are_served(node):
    with Raw(node.port) as loris, Raw(node.port) as idle, Raw(node.port) as busy:
        assert idle.call("PING") == b"PONG"
        started = time.monotonic()
        assert loris.send(encode("EAPPEND", "loris", "Ev", "PAYLOAD", "x" * 100)[:30])
        version = 0
        while not loris.closed and time.monotonic() - started < REQUEST_TIMEOUT_S * 4:
            expected = "empty" if version == 0 else version - 1
            reply = as_map(busy.call("EAPPEND", "busy", "Ev", "EXPECTED_VERSION", expected))
            assert reply[b"stream_version"] == version
            version += 1
            loris.poll(0.01)
        elapsed = time.monotonic() - started
        text = assert_protocol_error_and_close(loris)
        assert text == "ERR Protocol error: request not completed in time"
        assert REQUEST_TIMEOUT_S * 0.9 <= elapsed <= REQUEST_TIMEOUT_S * 3, elapsed
        assert version > 10, "the busy client was held up"
        # A client idle between requests is not a slow loris.
        assert idle.call("PING") == b"PONG"
    with Raw(node.port) as c:
        assert as_map(c.call("ESCAN", "loris", "-", "+"))[b"events"] == []


def test_trickling_slow_loris_is_closed_after_the_request_timeout(node):
    # One byte every 0.2 s: each read is prompt, but the request never completes in time.
    request = encode("EAPPEND", "trickle", "Ev", "PAYLOAD", "x" * 200)
    with Raw(node.port) as loris:
        started = time.monotonic()
        for byte in request:
            if loris.closed or not loris.send(bytes([byte])):
                break
            loris.poll(0.2)
        elapsed = time.monotonic() - started
        text = assert_protocol_error_and_close(loris)
    assert text == "ERR Protocol error: request not completed in time"
    assert elapsed <= REQUEST_TIMEOUT_S * 3, elapsed
    with Raw(node.port) as c:
        assert as_map(c.call("ESCAN", "trickle", "-", "+"))[b"events"] == []


def test_a_steady_pipeline_is_not_taken_for_a_slow_loris(node):
    # Requests keep completing, so the partial one at the end of each read is always new.
    with Raw(node.port) as c:
        request = encode("ECHO", "y" * 100)
        sent = 0
        started = time.monotonic()
        while time.monotonic() - started < REQUEST_TIMEOUT_S * 2:
            for i in range(0, len(request), 37):  # reads end inside requests
                assert c.send(request[i : i + 37])
                time.sleep(0.002)
            sent += 1
        for _ in range(sent):
            assert c.reply() == b"y" * 100


# ------------------------------------------------------------------------------------ fuzzing
VALID_REQUESTS = [
    ("PING",),
    ("PING", "hello"),
    ("ECHO", "x"),
    ("HELLO", "3"),
    ("HELLO", "2"),
    ("EAPPEND", "fuzz-a", "Ev", "PAYLOAD", "p", "METADATA", "m"),
    ("EAPPEND", "fuzz-b", "Ev", "EXPECTED_VERSION", "empty"),
    ("EAPPEND", "fuzz-c", "Ev", "TIMESTAMP", "1700000000000", "EXPECTED_VERSION", "3"),
    (
        "EMAPPEND",
        "3d3ed1f4-8d7e-5f37-9a0c-2c1f5c7d9e10",
        "fuzz-d",
        "A",
        "fuzz-e",
        "B",
        "PAYLOAD",
        "z",
    ),
    ("EGET", "018bcfe5-6800-e167-bb95-123456789abc"),
    ("ESCAN", "fuzz-a", "-", "+", "COUNT", "5"),
    ("ESVER", "fuzz-a"),
    ("EPSCAN", "0", "-", "+", "COUNT", "3"),
    ("EPSEQ", "1"),
    ("ESUB", "fuzz-a", "FROM", "0", "WINDOW", "10"),
    ("EPSUB", "0-3", "FROM", "0"),
    ("EACK", "sub", "1"),
    ("EUNSUB", "sub"),
    ("INFO",),
    ("INFO", "CACHE"),
    ("CLIENT", "SETNAME", "fuzzer"),
    ("CONFIG", "GET", "*"),
    ("COMMAND",),
    ("SELECT", "0"),
]
RESP_ALPHABET = b"*$:+-_#,%~>|=!(\r\n0123456789-abcPINGEAPPEND \x00\xff"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a byte
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:  # insert RESP-ish bytes
            buf[pos:pos] = bytes(rng.choice(RESP_ALPHABET) for _ in range(rng.randint(1, 8)))
        elif op == 2 and buf:  # delete a run
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:  # truncate
            del buf[pos:]
        elif op == 4 and buf:  # duplicate a run
            end = min(len(buf), pos + rng.randint(1, 16))
            buf[pos:pos] = buf[pos:end]
        elif op == 5:  # change a length digit
            digits = [i for i, b in enumerate(buf) if 48 <= b <= 57]
            if digits:
                buf[rng.choice(digits)] = rng.choice(b"0123456789")
        else:  # a big or negative length
            buf[pos:pos] = rng.choice([b"$-2\r\n", b"*-1\r\n", b"$4294967296\r\n", b"*1\r\n"])
    return bytes(buf)


def fuzz_input(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randint(1, 200))
    if kind == 1:
        return bytes(rng.choice(RESP_ALPHABET) for _ in range(rng.randint(1, 200)))
    pipeline = b"".join(encode(*rng.choice(VALID_REQUESTS)) for _ in range(rng.randint(1, 4)))
    if kind == 2:
        return pipeline[: rng.randrange(1, len(pipeline) + 1)]
    if kind == 3:
        return encode(*rng.choice(VALID_REQUESTS)) + _mutate(rng, pipeline)
    return _mutate(rng, pipeline)


def test_fuzzed_input_never_hurts_other_clients_or_loses_writes(node):
    rng = random.Random(FUZZ_SEED)
    stream = f"healthy-{uuid.uuid4().hex}"
    acked: list[tuple[bytes, bytes]] = []  # (event id, payload) in version order
    with contextlib.ExitStack() as held, Raw(node.port) as healthy:
        for i in range(FUZZ_INPUTS):
            data = fuzz_input(rng)
            if i % FUZZ_HOLD_EVERY == 0:
                held.enter_context(Raw(node.port)).send(data)
                continue
            with Raw(node.port) as fuzzer:
                fuzzer.send(data)
                try:
                    fuzzer.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # already closed by the server
                try:
                    fuzzer.wait_closed()  # answered or closed; never hangs after EOF
                except TimeoutError:
                    pytest.fail(f"seed {FUZZ_SEED} input {i}: not closed after EOF: {data!r}")
            payload = f"healthy {i}".encode()
            version = len(acked)
            expected = "empty" if version == 0 else version - 1
            reply = healthy.call("EAPPEND", stream, "Ev", "EXPECTED_VERSION", expected,
                                 "PAYLOAD", payload)  # fmt: skip
            assert not isinstance(reply, hiredis.ReplyError), f"input {i} {data!r}: {reply}"
            reply = as_map(reply)
            assert reply[b"stream_version"] == version, f"seed {FUZZ_SEED} input {i}: {data!r}"
            acked.append((reply[b"event_id"], payload))
            (event,) = as_map(healthy.call("ESCAN", stream, version, version))[b"events"]
            assert as_map(event)[b"payload"] == payload, f"seed {FUZZ_SEED} input {i}: {data!r}"
        assert node.proc.poll() is None, node.output()
        scan = as_map(healthy.call("ESCAN", stream, "-", "+", "COUNT", FUZZ_INPUTS + 1))
    events = [as_map(e) for e in scan[b"events"]]
    assert [(e[b"event_id"], e[b"payload"]) for e in events] == acked
    assert [e[b"stream_version"] for e in events] == list(range(len(acked)))
    assert scan[b"has_more"] in (False, 0)
