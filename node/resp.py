"""Sans-I/O RESP codec: request parsing for the server, reply encoding for RESP2 and RESP3.

Parsing
-------
A `RequestReader` is fed the bytes of one client connection, one socket read at a time, and hands
back complete commands as lists of `bytes` arguments. It never does I/O and never blocks.

The work of parsing is done by `hiredis.Reader`, in C. hiredis is a black box that consumes whole
RESP items (a header line, a whole bulk string) and keeps the items of a partial frame as Python
objects; it cannot tell us where in the byte stream it stands. Two of its habits are unsafe for a
server: it allocates the list of an aggregate as soon as it reads the header (`*4294967295` asks for
32 GiB), and it waits patiently for the body of any declared bulk length. So the reader guards it:

* **Declared sizes are checked before hiredis sees them.** A count above `max_args` or a length
  above `max_request_bytes` needs many decimal digits. Each fed chunk is scanned at C speed
  (`bytes.translate` + `bytes.find`) for a run of that many digits right after a length-carrying
  type byte (`$ * % ~ > | = !`). Usually there is none and the chunk goes straight to hiredis. When
  there is one, the chunk is fed up to that byte and hiredis is drained; if it then holds no
  unconsumed byte, it stands at an item boundary, so the run really is a header, and its value is
  checked against the limit. Otherwise the digits are payload. A header whose digits might still be
  cut by the end of a chunk (a trailing type byte and a few digits) is held back until the next
  feed, so that a header is always seen whole.
* **Buffered bytes are bounded.** Whenever hiredis runs out of complete frames we update an upper
  bound on the size of the partial frame it holds: the bytes fed since the last such moment if a
  frame completed meanwhile, else the previous bound plus those bytes. A feed larger than
  `feed_slice_bytes` is handed over in slices of that size, so the bound overshoots the true
  partial size by at most one slice: requests up to `max_request_bytes - feed_slice_bytes` are
  always accepted, and a partial request is refused once more than `max_request_bytes` may be
  buffered, whatever its headers claimed. (The Python objects hiredis builds for a partial frame
  of tiny items, such as `*0` elements, can take ~15 times its byte size; that is the ceiling per
  connection, as Redis's own query buffer limit is.)
* **Frame boundaries are tracked where they are cheap to know**: right after a frame whose end was
  the last byte fed. At such a boundary a first byte other than `*` is looked at in Python: another
  RESP type byte is a non-array command (a protocol error); anything else starts an inline command
  (`PING\\r\\n` typed into telnet), split on whitespace like Redis does. An inline command that
  follows array frames inside the same chunk is not recognised and is a protocol error, except an
  empty line (`redis-cli --pipe` sends one between frames): a chunk holding `\\r\\n\\r\\n` is fed
  up to each such place, so that the boundary check sees the empty line and skips it.

Whatever the input, `next_request` returns a request, returns None (more bytes needed), or raises
`ProtocolError`; after the first error every later call raises it again (the connection is to be
closed). Requests that were complete before the malformed bytes are returned first.

Encoding
--------
`encode(value, protocol)` and `encode_into(out, value, protocol)` map Python values to RESP2 or
RESP3: `bytes`/`str` are bulk strings, `int` integers, `bool` booleans, `None` null, `float`
doubles, `list`/`tuple` arrays, `dict` maps; the marker types `SimpleString`, `ErrorReply`, `Push`
and `Verbatim` select the other frame kinds. RESP2 gets the Redis fallbacks (a map is a flat
array, null is `$-1`, a boolean is `:1`/`:0`, a double is a bulk string, a push is an array, and
a simple string inside an array or a map is a bulk string: only status replies are `+text`).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Final

import hiredis

__all__ = [
    "DEFAULT_FEED_SLICE_BYTES",
    "DEFAULT_MAX_ARGS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "MAX_INLINE_BYTES",
    "ErrorReply",
    "ProtocolError",
    "Push",
    "RequestReader",
    "RequestReaderStatistics",
    "RespError",
    "SimpleString",
    "Verbatim",
    "encode",
    "encode_into",
]

# Limits, with their reasons.
# The contract's default (PROTOCOL.md, Limits): what one connection's partial request may hold.
DEFAULT_MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024
# Redis's multibulk limit (1024*1024 arguments); EMAPPEND batches stay far below it.
DEFAULT_MAX_ARGS: Final = 1024 * 1024
# Redis's PROTO_INLINE_MAX_SIZE: an inline command is a line typed by a human.
MAX_INLINE_BYTES: Final = 64 * 1024
# How much is handed to hiredis between two checks of the partial-request bound: the precision of
# the request size limit. A typical socket read is no larger, so it costs nothing in practice.
DEFAULT_FEED_SLICE_BYTES: Final = 64 * 1024


class RespError(Exception):
    """Base of the errors raised by this module."""


class ProtocolError(RespError):
    """The client sent malformed or oversized RESP; reply `-ERR <message>` and close."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class RequestReaderStatistics:
    partial_request_bytes_bound: int  # upper bound of the partial request held by hiredis
    held_bytes: int  # bytes not yet handed to hiredis (a split header or a partial inline line)
    queued_requests: int  # complete requests parsed ahead, waiting for next_request()
    failed: bool


# Marker queued after the requests that preceded a protocol error.
_FAILED: Final = object()
# hiredis returns this when it has no complete frame (False would be ambiguous: `#f` is False).
_NEED_MORE: Final = object()

_STAR: Final = ord("*")
# Every byte hiredis takes as a RESP type; at a frame boundary, any other byte starts an inline
# command.
_RESP_TYPE_BYTES: Final = frozenset(b"$*+-:_,#!=(%~>|")
# Type bytes followed by a decimal count or length.
_SIZED_TYPE_BYTES: Final = frozenset(b"$*%~>|=!")
_AGGREGATE_TYPE_BYTES: Final = frozenset(b"*%~>|")
# A frame's end followed by an empty inline line; anywhere else it is payload.
_BLANK_LINE: Final = b"\r\n\r\n"
# bytes.translate table: every decimal digit becomes b"0", every other byte b".".
_DIGIT_CLASS: Final = bytes(48 if 48 <= i <= 57 else 46 for i in range(256))


class RequestReader:
    """Incremental parser of client requests (RESP arrays of bulk strings, or inline commands).

    Call `feed(data)` with each chunk read from the socket, then `next_request()` until it returns
    None (or `drain()` once). See the module docstring for the guarantees.
    """

    def __init__(
        self,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_args: int = DEFAULT_MAX_ARGS,
        *,
        feed_slice_bytes: int | None = None,
    ) -> None:
        if max_request_bytes < 1 or max_args < 1:
            raise ValueError("max_request_bytes and max_args must be positive")
        self._max_request_bytes = max_request_bytes
        self._max_args = max_args
        if feed_slice_bytes is None:
            feed_slice_bytes = max(1, min(DEFAULT_FEED_SLICE_BYTES, max_request_bytes // 64))
        elif feed_slice_bytes < 1:
            raise ValueError("feed_slice_bytes must be positive")
        self._slice_bytes = feed_slice_bytes
        # A count or length with fewer digits than this is below both limits.
        self._digits = min(len(str(max_args)), len(str(max_request_bytes)))
        self._digit_run = b"0" * self._digits

        self._reader = hiredis.Reader(notEnoughData=_NEED_MORE)
        self._gets = self._reader.gets
        self._has_data = self._reader.has_data
        self._queue: collections.deque[Any] = collections.deque()
        self._failure: str | None = None
        self._held = b""
        # Bookkeeping for the partial-request bound and for frame boundaries, updated each time
        # hiredis runs out of complete frames ("a check"):
        # None if no frame completed since the last check, else whether hiredis still held
        # unconsumed bytes (or was fed more) after the latest completed frame.
        self._after_frame: bool | None = None
        self._at_boundary = True  # as of the last check: nothing of a next frame fed yet
        self._fed_since_check = 0
        self._partial_bound = 0

    # -- public API ------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the connection. Never raises; errors come from next_request()."""
        if self._failure is not None or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self._held:
            data = self._held + data
            self._held = b""
        if (
            len(data) > self._slice_bytes
            or (data[0] != _STAR and self._at_frame_boundary())
            or _BLANK_LINE in data
        ):
            self._feed_slow(data)
            return
        digits = data.translate(_DIGIT_CLASS)
        if self._find_sized_header(data, digits, 0) != -1:
            self._feed_slow(data, digits)
            return
        end = self._split_header_start(data, digits)
        if end < len(data):
            self._held = data[end:]
        if end:
            self._reader.feed(data, 0, end)
            self._fed_since_check += end
            self._at_boundary = False
            if self._after_frame is False:
                self._after_frame = True

    def next_request(self) -> list[bytes] | None:
        """The next complete request, or None if more bytes are needed.

        Raises ProtocolError for malformed or oversized input, and again on every later call.
        """
        if self._queue:
            if self._queue[0] is _FAILED:
                raise ProtocolError(self._failure or "")
            return self._queue.popleft()
        return self._pull()

    def drain(self) -> list[list[bytes]]:
        """Every complete request buffered now, in order (used for pipelined batches).

        If the input turns malformed after some complete requests, those are returned and the
        next call raises ProtocolError.
        """
        requests: list[list[bytes]] = []
        queue = self._queue
        while queue:
            if queue[0] is _FAILED:
                if requests:
                    return requests
                raise ProtocolError(self._failure or "")
            requests.append(queue.popleft())
        append = requests.append
        pull = self._pull
        try:
            while (request := pull()) is not None:
                append(request)
        except ProtocolError:
            if not requests:
                raise
        return requests

    def holds_partial_request(self) -> bool:
        """Whether bytes of a request not yet complete are held (``statistics`` without the
        counting, for the connection's read loop)."""
        return bool(self._partial_bound + self._fed_since_check or self._held)

    @property
    def failed(self) -> bool:
        """Whether the input turned malformed (the next ``drain`` raises ProtocolError)."""
        return self._failure is not None

    def statistics(self) -> RequestReaderStatistics:
        return RequestReaderStatistics(
            partial_request_bytes_bound=self._partial_bound + self._fed_since_check,
            held_bytes=len(self._held),
            queued_requests=sum(1 for item in self._queue if item is not _FAILED),
            failed=self._failure is not None,
        )

    # -- hot path --------------------------------------------------------------------------------

    def _pull(self) -> list[bytes] | None:
        """Take the next complete request from hiredis."""
        try:
            request = self._gets()
        except hiredis.ProtocolError as exc:
            raise self._fail(_describe_hiredis_error(exc)) from exc
        except TypeError as exc:  # a RESP3 map whose key is an aggregate (unhashable)
            raise self._fail("Protocol error: invalid map key") from exc
        if request is _NEED_MORE:
            self._check_partial()
            return None
        self._after_frame = self._has_data()
        if type(request) is not list:
            raise self._fail("Protocol error: expected array command")
        for arg in request:
            if type(arg) is not bytes:
                return self._coerce(request)
        return request

    def _coerce(self, request: list[Any]) -> list[bytes]:
        args: list[bytes] = []
        for arg in request:
            kind = type(arg)
            if kind is bytes:
                args.append(arg)
            elif kind is int:
                args.append(b"%d" % arg)
            else:
                raise self._fail(f"Protocol error: expected bulk string, got {_kind_name(arg)}")
        return args

    def _check_partial(self) -> None:
        """hiredis has no complete frame left: update the partial-request bound and boundary."""
        after = self._after_frame
        if after is None:  # still the same partial frame as at the last check
            bound = self._partial_bound + self._fed_since_check
        elif after:  # the partial frame began after the latest frame, within the bytes fed since
            bound = self._fed_since_check
        else:  # the latest frame ended with the last byte fed and nothing came after it
            bound = 0
            self._at_boundary = True
        self._after_frame = None
        self._fed_since_check = 0
        self._partial_bound = bound
        if bound > self._max_request_bytes:
            raise self._fail("Protocol error: request too large")

    def _at_frame_boundary(self) -> bool:
        after = self._after_frame
        return self._at_boundary if after is None else after is False

    def _fail(self, message: str) -> ProtocolError:
        if self._failure is None:
            self._failure = message
            self._queue.append(_FAILED)
            self._held = b""
        return ProtocolError(self._failure)

    # -- guards ----------------------------------------------------------------------------------

    def _find_sized_header(self, data: bytes, digits: bytes, start: int) -> int:
        """Position of the first type byte at or after `start` followed by a long digit run."""
        run = self._digit_run
        i = digits.find(run, start + 1)
        while i != -1:
            if data[i - 1] in _SIZED_TYPE_BYTES:
                return i - 1
            end = digits.find(b".", i + len(run))
            if end == -1:
                return -1
            i = digits.find(run, end)
        return -1

    def _split_header_start(self, data: bytes, digits: bytes) -> int:
        """Where a header that the end of `data` may have cut short begins (len(data) if none)."""
        n = len(data)
        tail = digits[-(self._digits + 1) :]
        trailing_digits = len(tail) - len(tail.rstrip(b"0"))
        if trailing_digits < self._digits and n > trailing_digits:
            start = n - trailing_digits - 1
            if data[start] in _SIZED_TYPE_BYTES:
                return start
        return n

    def _feed_slow(self, data: bytes, digits: bytes | None = None) -> None:
        """Feed `data` in steps: inline commands, long headers, oversized chunks."""
        # The header check below needs hiredis drained of the frames fed earlier.
        if not self._drain_into_queue():
            return
        if digits is None:
            digits = data.translate(_DIGIT_CLASS)
        n = len(data)
        end = self._split_header_start(data, digits)
        header = self._find_sized_header(data, digits, 0)
        if header == -1:
            header = end
        pos = 0
        while pos < end:
            if data[pos] != _STAR and self._at_frame_boundary():
                pos = self._take_inline(data, pos)
                if pos < 0:
                    return
                if header < pos:  # it was inside the inline command
                    header = self._find_sized_header(data, digits, pos)
                    if header == -1:
                        header = end
                continue
            if pos == header:
                # Everything before `pos` is consumed and drained: if hiredis holds no unconsumed
                # byte, `pos` is an item boundary and the digits are a real count or length.
                run_end = digits.find(b".", pos + 1)
                if run_end == -1:
                    run_end = n
                if not self._has_data():
                    if data[pos] in _AGGREGATE_TYPE_BYTES:
                        if _exceeds(data[pos + 1 : run_end], self._max_args):
                            self._fail("Protocol error: invalid multibulk length")
                            return
                    elif _exceeds(data[pos + 1 : run_end], self._max_request_bytes):
                        self._fail("Protocol error: request too large")
                        return
                    if run_end == n:  # more digits may follow
                        self._held = data[pos:]
                        return
                header = self._find_sized_header(data, digits, run_end - 1)
                if header == -1:
                    header = end
            # Stop where an empty line may follow a frame (redis-cli --pipe sends "\r\n" before
            # its closing ECHO): the boundary check above then skips it, as Redis does.
            blank = data.find(_BLANK_LINE, pos)
            stop = min(header, pos + self._slice_bytes, n if blank == -1 else blank + 2)
            self._reader.feed(data, pos, stop - pos)
            self._fed_since_check += stop - pos
            self._at_boundary = False
            if self._after_frame is False:
                self._after_frame = True
            pos = stop
            if not self._drain_into_queue():
                return
        if end < n:
            self._held = data[end:]

    def _drain_into_queue(self) -> bool:
        queue = self._queue
        pull = self._pull
        try:
            while (request := pull()) is not None:
                queue.append(request)
        except ProtocolError:
            return False
        return True

    def _take_inline(self, data: bytes, pos: int) -> int:
        """Parse inline commands at a frame boundary; the position after them, or -1 to stop."""
        if data[pos] in _RESP_TYPE_BYTES:
            self._fail("Protocol error: expected array command")
            return -1
        newline = data.find(b"\n", pos)
        if newline == -1:
            if len(data) - pos > MAX_INLINE_BYTES:
                self._fail("Protocol error: too big inline request")
            else:
                self._held = data[pos:]
            return -1
        if newline - pos > MAX_INLINE_BYTES:
            self._fail("Protocol error: too big inline request")
            return -1
        args = data[pos:newline].split()
        if args:  # an empty line is skipped, as Redis does
            self._queue.append(args)
        return newline + 1


def _exceeds(decimal: bytes, limit: int) -> bool:
    # Compare lengths first: int() refuses very long digit strings.
    return len(decimal) > len(str(limit)) or int(decimal) > limit


def _describe_hiredis_error(exc: hiredis.ProtocolError) -> str:
    text = str(exc)
    if text.startswith("Protocol error, "):
        text = text[len("Protocol error, ") :]
    return "Protocol error: " + text[:1].lower() + text[1:]


def _kind_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "double"
    if isinstance(value, hiredis.ReplyError):
        return "error"
    return type(value).__name__


# -- encoding -------------------------------------------------------------------------------------


class SimpleString(str):
    """A RESP simple string, `+text` (CR and LF are replaced by spaces).

    In RESP2 only a top-level one (a status reply) is sent as `+text`; inside an array or a map
    it is a bulk string, as Redis sends it (PROTOCOL.md point 14)."""

    __slots__ = ()


class Verbatim(str):
    """A RESP3 verbatim string of format `txt`; a bulk string in RESP2."""

    __slots__ = ()


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push frame (`>`), e.g. a subscription message; an ordinary array in RESP2."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply, `-CODE message` (CR and LF are replaced by spaces)."""

    code: str
    message: str


_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# Below this size a bulk string is formatted in one step; above it, appended without a copy.
_SMALL_BULK_BYTES: Final = 4096


def encode(value: Any, protocol: int) -> bytes:
    """The RESP2 (`protocol=2`) or RESP3 (`protocol=3`) encoding of `value`."""
    if protocol != 3 and protocol != 2:
        raise ValueError(f"unsupported RESP protocol version {protocol!r}")
    kind = type(value)
    if kind is bytes:
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if kind is SimpleString:
        return _simple(value)
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return b":%d\r\n" % value
    out = bytearray()
    _encode(out, value, protocol == 3)
    return bytes(out)


def encode_into(out: bytearray, value: Any, protocol: int) -> None:
    """Append the encoding of `value` to `out` (to batch many replies into one write)."""
    _encode(out, value, _is_resp3(protocol))


def _is_resp3(protocol: int) -> bool:
    if protocol == 3:
        return True
    if protocol == 2:
        return False
    raise ValueError(f"unsupported RESP protocol version {protocol!r}")


def _line(text: str) -> bytes:
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return text.encode()


def _simple(text: str) -> bytes:
    return b"+%b\r\n" % _line(text)


def _error(reply: ErrorReply) -> bytes:
    if reply.message:
        return b"-%b %b\r\n" % (_line(reply.code), _line(reply.message))
    return b"-%b\r\n" % _line(reply.code)


def _bulk(out: bytearray, data: bytes | bytearray | memoryview) -> None:
    if type(data) is bytes and len(data) < _SMALL_BULK_BYTES:
        out += b"$%d\r\n%b\r\n" % (len(data), data)
    else:
        out += b"$%d\r\n" % (data.nbytes if isinstance(data, memoryview) else len(data))
        out += data
        out += b"\r\n"


def _encode(out: bytearray, value: Any, resp3: bool) -> None:
    kind = type(value)
    if kind is bytes:
        _bulk(out, value)
    elif kind is SimpleString:
        out += _simple(value)
    elif kind is int:
        _int(out, value, resp3)
    elif kind is str:
        _bulk(out, value.encode())
    elif kind is dict:
        _map(out, value, resp3)
    elif kind is list or kind is tuple:
        _array(out, b"*", value, resp3)
    elif value is None:
        out += b"_\r\n" if resp3 else b"$-1\r\n"
    elif kind is bool:
        out += (b"#t\r\n" if value else b"#f\r\n") if resp3 else (b":1\r\n" if value else b":0\r\n")
    elif kind is float:
        _double(out, value, resp3)
    elif kind is ErrorReply:
        out += _error(value)
    elif kind is Push:
        _array(out, b">" if resp3 else b"*", value, resp3)
    elif kind is Verbatim:
        _verbatim(out, value, resp3)
    else:
        _encode_subclass(out, value, resp3)


def _encode_subclass(out: bytearray, value: Any, resp3: bool) -> None:
    """Instances of subclasses of the supported types (IntEnum, str enums, ...)."""
    if isinstance(value, bytes | bytearray | memoryview):
        _bulk(out, value)
    elif isinstance(value, ErrorReply):
        out += _error(value)
    elif isinstance(value, SimpleString):
        out += _simple(value)
    elif isinstance(value, Verbatim):
        _verbatim(out, value, resp3)
    elif isinstance(value, str):
        _bulk(out, str.encode(value))
    elif isinstance(value, bool):
        _encode(out, bool(value), resp3)
    elif isinstance(value, int):
        _int(out, int(value), resp3)
    elif isinstance(value, float):
        _double(out, float(value), resp3)
    elif isinstance(value, dict):
        _map(out, value, resp3)
    elif isinstance(value, Push):
        _array(out, b">" if resp3 else b"*", value, resp3)
    elif isinstance(value, list | tuple):
        _array(out, b"*", value, resp3)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP")


def _int(out: bytearray, value: int, resp3: bool) -> None:
    if _INT64_MIN <= value <= _INT64_MAX:
        out += b":%d\r\n" % value
    elif resp3:
        out += b"(%d\r\n" % value  # big number
    else:
        _bulk(out, b"%d" % value)


def _double(out: bytearray, value: float, resp3: bool) -> None:
    text = repr(value).encode()  # "1.5", "1e+20", "inf", "-inf", "nan"
    if resp3:
        out += b",%b\r\n" % text
    else:
        _bulk(out, text)


def _verbatim(out: bytearray, value: str, resp3: bool) -> None:
    data = str.encode(value)
    if resp3:
        out += b"=%d\r\ntxt:%b\r\n" % (len(data) + 4, data)
    else:
        _bulk(out, data)


def _array(out: bytearray, prefix: bytes, items: list[Any] | tuple[Any, ...], r3: bool) -> None:
    out += b"%b%d\r\n" % (prefix, len(items))
    for item in items:
        _encode_item(out, item, r3)


def _map(out: bytearray, mapping: dict[Any, Any], resp3: bool) -> None:
    if resp3:
        out += b"%%%d\r\n" % len(mapping)
    else:
        out += b"*%d\r\n" % (2 * len(mapping))
    for key, value in mapping.items():
        _encode_item(out, key, resp3)
        _encode_item(out, value, resp3)


def _encode_item(out: bytearray, item: Any, resp3: bool) -> None:
    """`_encode` with the frequent flat values of event maps and arrays handled first.

    An item is inside an array or a map, so in RESP2 a simple string is sent as a bulk string:
    Redis sends a simple string only for a status reply, and some clients (phpredis) turn one
    inside an array into a boolean. RESP3 keeps the simple string."""
    kind = type(item)
    if kind is SimpleString or (kind is not str and isinstance(item, SimpleString)):
        if not resp3:
            _bulk(out, str.encode(item))
            return
        if "\r" in item or "\n" in item:
            item = item.replace("\r", " ").replace("\n", " ")
        out += b"+%b\r\n" % str.encode(item)
    elif kind is bytes and len(item) < _SMALL_BULK_BYTES:
        out += b"$%d\r\n%b\r\n" % (len(item), item)
    elif kind is int and _INT64_MIN <= item <= _INT64_MAX:
        out += b":%d\r\n" % item
    else:
        _encode(out, item, resp3)
