"""Grammar of client commands: argument lists in, typed and validated requests out.

`parse_command(args)` takes one request's arguments (element 0 is the command name) and returns a
dataclass (treated as immutable), or raises `CommandError` whose `str()` is the error reply's text.
Everything that can be checked from the arguments alone is checked here, before anything is
sequenced: token syntax (reference §1.1), stream ids and event names (§2.1, §7), numbers, UUIDs, the
timestamp overflow, duplicate and missing options, trailing arguments. Nothing here needs server
state, so defaults that do (partition count, generated event ids, the clock, configured COUNT and
WINDOW defaults) are left as None for the command handler; the default partition key of a stream is
a pure function of its id and is filled in.

Keywords are matched ASCII case-insensitively. Ids stay 16 raw bytes, stream ids and event names
stay `bytes` (checked to be UTF-8), payloads and metadata are raw bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sierradb.node.identifiers import parse_uuid, partition_id, partition_key_for_stream
from sierradb.storage import MAX_EVENT_NAME_BYTES, MAX_STREAM_ID_BYTES

INVALIDARG = "INVALIDARG"

U16_MAX = (1 << 16) - 1
U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1

EXPECTED_ANY = -1
"""`EXPECTED_VERSION any` (also the value when the option is absent)."""
EXPECTED_EXISTS = -2
"""`EXPECTED_VERSION exists`: the stream has at least one event."""
EXPECTED_EMPTY = -3
"""`EXPECTED_VERSION empty`: the stream has no event."""

MIN_WINDOW = 1
MAX_TIMESTAMP_MS = U64_MAX // 1_000_000
"""Timestamps are stored as u64 nanoseconds; a larger millisecond value cannot be."""

_MAX_KEYWORD_BYTES = 16  # len("EXPECTED_VERSION"); longer tokens are never upper-cased
_SHOWN_ARGUMENT_CHARS = 64  # arguments quoted in error texts are cut to this many characters
_DIGIT_LIMIT = 20  # u64 has at most 20 decimal digits; also keeps int() off huge strings


class CommandError(Exception):
    """A request refused by the grammar; `str()` is the reply text, `<CODE> <message>`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


# --------------------------------------------------------------------------------------------
# Requests
#
# Plain slotted dataclasses, treated as immutable: one is built per request, and a frozen one
# costs ~1.1 us more to build (its __init__ sets each field through object.__setattr__).


@dataclass(slots=True)
class Ping:
    message: bytes | None


@dataclass(slots=True)
class Hello:
    protocol_version: int | None  # 2 or 3; None: keep the current one
    username: bytes | None
    password: bytes | None
    client_name: bytes | None


@dataclass(slots=True)
class EAppend:
    stream_id: bytes
    event_name: bytes
    event_id: bytes | None  # None: the server generates one
    partition_key: bytes  # given, or derived from the stream id
    expected_version: int  # >= 0, or EXPECTED_ANY / EXPECTED_EXISTS / EXPECTED_EMPTY
    timestamp_ms: int | None  # None: the server clock
    payload: bytes
    metadata: bytes


@dataclass(slots=True)
class EMAppendEvent:
    stream_id: bytes
    event_name: bytes
    event_id: bytes | None
    expected_version: int
    timestamp_ms: int | None
    payload: bytes
    metadata: bytes


@dataclass(slots=True)
class EMAppend:
    partition_key: bytes
    events: tuple[EMAppendEvent, ...]  # at least one, in request order


@dataclass(slots=True)
class EGet:
    event_id: bytes


@dataclass(slots=True)
class EScan:
    stream_id: bytes
    partition_key: bytes
    start_version: int  # `-` is 0
    end_version: int | None  # inclusive; None for `+`
    count: int | None  # as given; None: the configured default
    block_ms: int | None = None  # BLOCK: wait this long for an event (0: without end)


@dataclass(slots=True)
class ESVer:
    stream_id: bytes
    partition_key: bytes


@dataclass(slots=True)
class EPScan:
    partition: int | bytes  # a partition id as given, or a 16-byte partition key
    start_sequence: int  # `-` is 0
    end_sequence: int | None  # inclusive; None for `+`
    count: int | None
    block_ms: int | None = None  # BLOCK: wait this long for an event (0: without end)


@dataclass(slots=True)
class EPRead:
    count: int | None  # per partition
    block_ms: int | None
    positions: tuple[tuple[int | bytes, int], ...]  # (partition as given, next sequence)


@dataclass(slots=True)
class EPSeq:
    partition: int | bytes


@dataclass(slots=True)
class StreamSubscription:
    stream_id: bytes
    partition_key: bytes
    start_version: int | None  # None: live events only


@dataclass(slots=True)
class ESub:
    streams: tuple[StreamSubscription, ...]  # duplicate (stream, key) pairs collapsed
    window: int | None  # >= MIN_WINDOW; None: the configured default


@dataclass(slots=True)
class PartitionSelector:
    all_partitions: bool  # `*`
    partition_ids: tuple[int, ...]  # sorted, unique, ranges expanded, not reduced modulo count
    partition_keys: tuple[bytes, ...]  # unique, in request order

    def resolve(self, partition_count: int) -> tuple[int, ...]:
        """Sorted partition ids selected in a cluster of `partition_count` partitions."""
        if self.all_partitions:
            return tuple(range(partition_count))
        ids = set(self.partition_ids)
        ids.update(partition_id(key, partition_count) for key in self.partition_keys)
        return tuple(sorted(ids))


@dataclass(slots=True)
class EPSub:
    selector: PartitionSelector
    start_sequence: int | None  # `FROM <n>`: every selected partition
    start_map: Mapping[int, int]  # `FROM MAP p=s ...` (empty without MAP)
    default_start_sequence: int | None  # `DEFAULT <s>` after a MAP
    window: int | None

    def start_sequence_for(self, partition: int) -> int | None:
        """Where history starts in `partition`; None: live events only."""
        if self.start_sequence is not None:
            return self.start_sequence
        return self.start_map.get(partition, self.default_start_sequence)


@dataclass(slots=True)
class EAck:
    subscription_id: bytes
    cursor: int


@dataclass(slots=True)
class EUnsub:
    subscription_id: bytes


@dataclass(slots=True)
class Echo:
    message: bytes


@dataclass(slots=True)
class Quit:
    pass


@dataclass(slots=True)
class Select:
    db: int


@dataclass(slots=True)
class Auth:
    username: bytes | None  # None: the default user
    password: bytes


@dataclass(slots=True)
class Info:
    sections: tuple[bytes, ...]  # lower-cased; empty: every section


@dataclass(slots=True)
class ClientSetInfo:
    attribute: bytes  # b"LIB-NAME" or b"LIB-VER"
    value: bytes


@dataclass(slots=True)
class ClientSetName:
    name: bytes  # empty: clear the name


@dataclass(slots=True)
class ClientGetName:
    pass


@dataclass(slots=True)
class ClientId:
    pass


@dataclass(slots=True)
class ConfigGet:
    patterns: tuple[bytes, ...]


@dataclass(slots=True)
class Command:
    subcommand: bytes | None  # upper-cased
    args: tuple[bytes, ...]


@dataclass(slots=True)
class ClusterAdmit:
    node_index: int
    member_id: str | None  # None: the member linked at that index now


Request = (
    Ping
    | Hello
    | EAppend
    | EMAppend
    | EGet
    | EScan
    | ESVer
    | EPScan
    | EPRead
    | EPSeq
    | ESub
    | EPSub
    | EAck
    | EUnsub
    | Echo
    | Quit
    | Select
    | Auth
    | Info
    | ClientSetInfo
    | ClientSetName
    | ClientGetName
    | ClientId
    | ConfigGet
    | Command
    | ClusterAdmit
)


def resolve_partition(partition: int | bytes, partition_count: int) -> int:
    """The partition id of an EPSCAN/EPSEQ selector (an id is used as is, no modulo)."""
    if isinstance(partition, int):
        return partition
    return partition_id(partition, partition_count)


def format_expected_version(expected_version: int) -> str:
    """`any`, `exists`, `empty` or the number, as WRONGVER and strict-mode errors print it."""
    return _EXPECTED_NAMES.get(expected_version) or str(expected_version)


# --------------------------------------------------------------------------------------------
# Tokens

_EXPECTED_KEYWORDS = {b"ANY": EXPECTED_ANY, b"EXISTS": EXPECTED_EXISTS, b"EMPTY": EXPECTED_EMPTY}
_EXPECTED_NAMES = {EXPECTED_ANY: "any", EXPECTED_EXISTS: "exists", EXPECTED_EMPTY: "empty"}
_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def _shown(arg: bytes) -> str:
    """An argument as it may appear inside a one-line error reply: cut, no control bytes."""
    text = arg[: _SHOWN_ARGUMENT_CHARS * 4].decode("utf-8", "backslashreplace")
    if len(text) > _SHOWN_ARGUMENT_CHARS or len(arg) > _SHOWN_ARGUMENT_CHARS * 4:
        text = text[:_SHOWN_ARGUMENT_CHARS] + "..."
    return text.translate(_CONTROL_ESCAPES)


def _invalid(message: str) -> CommandError:
    return CommandError(INVALIDARG, message)


def _missing(what: str) -> CommandError:
    return _invalid(f"unexpected end of input: expected {what}")


def _unexpected(arg: bytes) -> CommandError:
    return _invalid(f"unexpected argument '{_shown(arg)}'")


def _arity(name: str) -> CommandError:
    return _invalid(f"wrong number of arguments for '{name}' command")


def _keyword(arg: bytes) -> bytes:
    return arg.upper() if len(arg) <= _MAX_KEYWORD_BYTES else b""


def _stream_id(arg: bytes) -> bytes:
    if not arg.isascii():
        try:
            arg.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid("stream id must be valid UTF-8") from exc
    size = len(arg)
    if size == 0 or size > MAX_STREAM_ID_BYTES:
        raise _invalid(
            f"stream id must be between 1 and {MAX_STREAM_ID_BYTES} characters in length, "
            f"but got {size} for '{_shown(arg)}'"
        )
    if b"\0" in arg:
        raise _invalid("stream id cannot contain null bytes")
    return arg


def _event_name(arg: bytes) -> bytes:
    if not arg.isascii():
        try:
            arg.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid("event name must be valid UTF-8") from exc
    if len(arg) > MAX_EVENT_NAME_BYTES:
        raise _invalid(f"event name must be at most {MAX_EVENT_NAME_BYTES} bytes, got {len(arg)}")
    return arg


def _parse_unsigned(arg: bytes, maximum: int) -> int:
    """Rust's `str::parse::<uN>`: digits with an optional leading `+`, nothing else."""
    if arg.isdigit() and len(arg) <= _DIGIT_LIMIT:  # ASCII digits only; False when empty
        value = int(arg)
    else:
        digits = arg[1:] if arg[:1] == b"+" else arg
        if not digits.isdigit():
            raise ValueError(
                "cannot parse integer from empty string"
                if not arg
                else "invalid digit found in string"
            )
        if len(digits) > _DIGIT_LIMIT and len(digits.lstrip(b"0")) > _DIGIT_LIMIT:
            raise ValueError("number too large to fit in target type")
        value = int(digits)
    if value > maximum:
        raise ValueError("number too large to fit in target type")
    return value


def _parse_signed(arg: bytes) -> int | None:
    """Rust's `str::parse::<i64>`, or None."""
    digits = arg[1:] if arg[:1] in (b"+", b"-") else arg
    if not digits.isdigit() or (
        len(digits) > _DIGIT_LIMIT and len(digits.lstrip(b"0")) > _DIGIT_LIMIT
    ):
        return None
    value = int(digits)
    if arg[:1] == b"-":
        value = -value
    return value if _I64_MIN <= value <= _I64_MAX else None


def _unsigned(arg: bytes, what: str, maximum: int = U64_MAX) -> int:
    try:
        return _parse_unsigned(arg, maximum)
    except ValueError as exc:
        raise _invalid(f"invalid {what} '{_shown(arg)}': {exc}") from exc


def _uuid(arg: bytes, what: str) -> bytes:
    try:
        return parse_uuid(arg)
    except ValueError as exc:
        raise _invalid(f"invalid {what} '{_shown(arg)}': expected a UUID") from exc


def _expected_version(arg: bytes) -> int:
    if arg.isdigit() and len(arg) < _DIGIT_LIMIT:  # below 10**19, so within u64
        return int(arg)
    value = _EXPECTED_KEYWORDS.get(_keyword(arg))
    if value is not None:
        return value
    try:
        return _parse_unsigned(arg, U64_MAX)
    except ValueError as exc:
        raise _invalid(
            f"invalid expected version '{_shown(arg)}': expected any, exists, empty or a number"
        ) from exc


def _timestamp_ms(arg: bytes) -> int:
    value = _unsigned(arg, "timestamp")
    if value > MAX_TIMESTAMP_MS:
        raise _invalid("invalid timestamp format: expected milliseconds, got nanoseconds")
    return value


def _range_start(arg: bytes, what: str) -> int:
    if arg == b"-":
        return 0
    if arg == b"+":
        raise _invalid(f"start {what} cannot be '+'")
    return _unsigned(arg, f"start {what}")


def _range_end(arg: bytes, what: str) -> int | None:
    if arg == b"+":
        return None
    if arg == b"-":
        raise _invalid(f"end {what} cannot be '-'")
    return _unsigned(arg, f"end {what}")


def _partition(arg: bytes) -> int | bytes:
    """EPSCAN/EPSEQ selector: a partition key UUID first, else a u16 partition id."""
    if len(arg) >= 32:  # no UUID form is shorter
        try:
            return parse_uuid(arg)
        except ValueError:
            pass
    try:
        return _parse_unsigned(arg, U16_MAX)
    except ValueError as exc:
        raise _invalid(
            f"invalid partition '{_shown(arg)}': expected a partition id or a partition key"
        ) from exc


def _window(arg: bytes) -> int:
    value = _unsigned(arg, "window")
    if value < MIN_WINDOW:
        raise _invalid(f"invalid window '{_shown(arg)}': number {value} must not be less than 1")
    return value


def _options(args: list[bytes], i: int, names: Mapping[bytes, str]) -> dict[bytes, bytes]:
    """Keyword-value options in any order, each at most once, up to the end of the arguments."""
    return _options_until(args, i, names, None)[0]


def _options_until(
    args: list[bytes], i: int, names: Mapping[bytes, str], stop: bytes | None
) -> tuple[dict[bytes, bytes], int]:
    """Keyword-value options in any order, each at most once, up to the keyword `stop` (which
    must come; its index is returned) or, with no `stop`, to the end of the arguments."""
    found: dict[bytes, bytes] = {}
    n = len(args)
    while i < n:
        keyword = _keyword(args[i])
        if keyword == stop:
            return found, i
        what = names.get(keyword)
        if what is None:
            raise _unexpected(args[i])
        if keyword in found:
            raise _invalid(f"{what} already specified")
        if i + 1 == n:
            raise _missing(what)
        found[keyword] = args[i + 1]
        i += 2
    if stop is not None:
        raise _missing(stop.decode())
    return found, i


def _end(args: list[bytes], i: int) -> None:
    if len(args) > i:
        raise _unexpected(args[i])


# --------------------------------------------------------------------------------------------
# Appends

_EVENT_ID = 0
_PARTITION_KEY = 1
_EXPECTED_VERSION = 2
_TIMESTAMP = 3
_PAYLOAD = 4
_METADATA = 5
_EVENT_OPTION_NAMES = (
    "event id",
    "partition key",
    "expected version",
    "timestamp",
    "payload",
    "metadata",
)
_EAPPEND_OPTIONS = {
    b"EVENT_ID": _EVENT_ID,
    b"PARTITION_KEY": _PARTITION_KEY,
    b"EXPECTED_VERSION": _EXPECTED_VERSION,
    b"TIMESTAMP": _TIMESTAMP,
    b"PAYLOAD": _PAYLOAD,
    b"METADATA": _METADATA,
}
_EMAPPEND_OPTIONS = {k: v for k, v in _EAPPEND_OPTIONS.items() if v != _PARTITION_KEY}

_EventOptions = tuple[
    int, bytes | None, bytes | None, int | None, int | None, bytes | None, bytes | None
]


def _event_options(
    args: list[bytes], i: int, table: Mapping[bytes, int], payload: bytes | None, in_batch: bool
) -> _EventOptions:
    """Options of one event from `args[i]` on.

    Returns (next index, event id, partition key, expected version, timestamp, payload,
    metadata). In EMAPPEND (`in_batch`) the first token that is not an option starts the next
    event; in EAPPEND it is an error.
    """
    event_id: bytes | None = None
    partition_key: bytes | None = None
    expected_version: int | None = None
    timestamp_ms: int | None = None
    metadata: bytes | None = None
    n = len(args)
    while i < n:
        arg = args[i]
        option = table.get(arg.upper() if len(arg) <= _MAX_KEYWORD_BYTES else b"")
        if option is None:
            if in_batch:
                break
            raise _unexpected(arg)
        if i + 1 == n:
            raise _missing(_EVENT_OPTION_NAMES[option])
        value = args[i + 1]
        i += 2
        if option == _EXPECTED_VERSION:
            if expected_version is not None:
                raise _invalid("expected version already specified")
            expected_version = _expected_version(value)
        elif option == _PAYLOAD:
            if payload is not None:
                raise _invalid("payload already specified")
            payload = value
        elif option == _EVENT_ID:
            if event_id is not None:
                raise _invalid("event id already specified")
            event_id = _uuid(value, "event id")
        elif option == _TIMESTAMP:
            if timestamp_ms is not None:
                raise _invalid("timestamp already specified")
            timestamp_ms = _timestamp_ms(value)
        elif option == _METADATA:
            if metadata is not None:
                raise _invalid("metadata already specified")
            metadata = value
        else:
            if partition_key is not None:
                raise _invalid("partition key already specified")
            partition_key = _uuid(value, "partition key")
    return i, event_id, partition_key, expected_version, timestamp_ms, payload, metadata


def parse_eappend(args: list[bytes]) -> EAppend:
    """EAPPEND <stream_id> <event_name> [<payload>] [EVENT_ID <uuid>] [PARTITION_KEY <uuid>]
    [EXPECTED_VERSION <n|any|exists|empty>] [TIMESTAMP <ms>] [PAYLOAD <bytes>] [METADATA <bytes>]

    The positional payload is the announcement's one-liner: a third argument that is not an
    option keyword.
    """
    n = len(args)
    if n < 2:
        raise _missing("stream id")
    stream_id = _stream_id(args[1])
    if n < 3:
        raise _missing("event name")
    event_name = _event_name(args[2])
    payload: bytes | None = None
    i = 3
    if n > 3:
        third = args[3]
        if len(third) > _MAX_KEYWORD_BYTES or third.upper() not in _EAPPEND_OPTIONS:
            payload = third
            i = 4
    _, event_id, partition_key, expected_version, timestamp_ms, payload, metadata = _event_options(
        args, i, _EAPPEND_OPTIONS, payload, False
    )
    return EAppend(
        stream_id,
        event_name,
        event_id,
        partition_key_for_stream(stream_id) if partition_key is None else partition_key,
        EXPECTED_ANY if expected_version is None else expected_version,
        timestamp_ms,
        b"" if payload is None else payload,
        b"" if metadata is None else metadata,
    )


def parse_emappend(args: list[bytes]) -> EMAppend:
    """EMAPPEND <partition_key> (<stream_id> <event_name> [event options])..."""
    n = len(args)
    if n < 2:
        raise _missing("partition key")
    partition_key = _uuid(args[1], "partition key")
    events: list[EMAppendEvent] = []
    i = 2
    while i < n or not events:
        if i == n:
            raise _missing("stream id")
        if _keyword(args[i]) == b"PARTITION_KEY":
            raise _invalid("partition key cannot be set per event: EMAPPEND has one for all events")
        stream_id = _stream_id(args[i])
        if i + 1 == n:
            raise _missing("event name")
        event_name = _event_name(args[i + 1])
        i, event_id, _, expected_version, timestamp_ms, payload, metadata = _event_options(
            args, i + 2, _EMAPPEND_OPTIONS, None, True
        )
        events.append(
            EMAppendEvent(
                stream_id,
                event_name,
                event_id,
                EXPECTED_ANY if expected_version is None else expected_version,
                timestamp_ms,
                b"" if payload is None else payload,
                b"" if metadata is None else metadata,
            )
        )
    return EMAppend(partition_key, tuple(events))


# --------------------------------------------------------------------------------------------
# Reads

_ESCAN_OPTIONS = {b"PARTITION_KEY": "partition key", b"COUNT": "count", b"BLOCK": "block timeout"}
_ESVER_OPTIONS = {b"PARTITION_KEY": "partition key"}
_EPSCAN_OPTIONS = {b"COUNT": "count", b"BLOCK": "block timeout"}
# Redis's BLOCK takes a signed 64-bit millisecond count; negative ones are refused.
MAX_BLOCK_MS = _I64_MAX


def _block_ms(arg: bytes | None) -> int | None:
    return None if arg is None else _unsigned(arg, "block timeout", MAX_BLOCK_MS)


def parse_eget(args: list[bytes]) -> EGet:
    """EGET <event_id>"""
    if len(args) < 2:
        raise _missing("event id")
    event_id = _uuid(args[1], "event id")
    _end(args, 2)
    return EGet(event_id)


def _scan_range(args: list[bytes], what: str) -> tuple[int, int | None]:
    """The <start> <end> of ESCAN/EPSCAN (arguments 2 and 3)."""
    if len(args) < 3:
        raise _missing(f"start {what}")
    start = _range_start(args[2], what)
    if len(args) < 4:
        raise _missing(f"end {what}")
    return start, _range_end(args[3], what)


def _stream_partition_key(stream_id: bytes, key: bytes | None) -> bytes:
    """The PARTITION_KEY given, or the one derived from the stream id."""
    return partition_key_for_stream(stream_id) if key is None else _uuid(key, "partition key")


def parse_escan(args: list[bytes]) -> EScan:
    """ESCAN <stream_id> <start> <end> [PARTITION_KEY <uuid>] [COUNT <n>] [BLOCK <ms>]"""
    if len(args) < 2:
        raise _missing("stream id")
    stream_id = _stream_id(args[1])
    start, end = _scan_range(args, "version")
    options = _options(args, 4, _ESCAN_OPTIONS)
    count = options.get(b"COUNT")
    return EScan(
        stream_id,
        _stream_partition_key(stream_id, options.get(b"PARTITION_KEY")),
        start,
        end,
        None if count is None else _unsigned(count, "count"),
        _block_ms(options.get(b"BLOCK")),
    )


def parse_esver(args: list[bytes]) -> ESVer:
    """ESVER <stream_id> [PARTITION_KEY <uuid>]"""
    if len(args) < 2:
        raise _missing("stream id")
    stream_id = _stream_id(args[1])
    key = _options(args, 2, _ESVER_OPTIONS).get(b"PARTITION_KEY")
    return ESVer(stream_id, _stream_partition_key(stream_id, key))


def parse_epscan(args: list[bytes]) -> EPScan:
    """EPSCAN <partition> <start> <end> [COUNT <n>] [BLOCK <ms>]"""
    if len(args) < 2:
        raise _missing("partition")
    partition = _partition(args[1])
    start, end = _scan_range(args, "sequence")
    options = _options(args, 4, _EPSCAN_OPTIONS)
    count = options.get(b"COUNT")
    return EPScan(
        partition,
        start,
        end,
        None if count is None else _unsigned(count, "count"),
        _block_ms(options.get(b"BLOCK")),
    )


def parse_epread(args: list[bytes]) -> EPRead:
    """EPREAD [COUNT <n>] [BLOCK <ms>] FROM <partition> <sequence> [<partition> <sequence> ...]"""
    found, i = _options_until(args, 1, _EPSCAN_OPTIONS, b"FROM")
    i += 1
    n = len(args)
    if i == n:
        raise _missing("partition")
    positions: list[tuple[int | bytes, int]] = []
    seen: set[int | bytes] = set()
    while i < n:
        partition = _partition(args[i])
        if i + 1 == n:
            raise _missing(f"sequence for partition '{_shown(args[i])}'")
        if partition in seen:
            raise _invalid(f"partition '{_shown(args[i])}' given more than once")
        seen.add(partition)
        positions.append((partition, _unsigned(args[i + 1], "sequence")))
        i += 2
    count = found.get(b"COUNT")
    return EPRead(
        None if count is None else _unsigned(count, "count"),
        _block_ms(found.get(b"BLOCK")),
        tuple(positions),
    )


def parse_epseq(args: list[bytes]) -> EPSeq:
    """EPSEQ <partition>"""
    if len(args) < 2:
        raise _missing("partition")
    partition = _partition(args[1])
    _end(args, 2)
    return EPSeq(partition)


# --------------------------------------------------------------------------------------------
# Subscriptions

_EMPTY_START_MAP: Mapping[int, int] = MappingProxyType({})


def _map_entry(arg: bytes, what: str) -> tuple[bytes, bytes]:
    # Split at the last `=`: the value is a number, so a stream id may itself contain `=`.
    name, sep, value = arg.rpartition(b"=")
    if not sep:
        raise _invalid(f"invalid FROM MAP entry '{_shown(arg)}': expected {what}")
    return name, value


def parse_esub(args: list[bytes]) -> ESub:
    """ESUB <stream_id> [PARTITION_KEY <uuid>] [<stream_id> [PARTITION_KEY <uuid>]]...
    [FROM LATEST | FROM <version> | FROM MAP <stream_id>=<version>...] [WINDOW <n>]

    The stream list ends at `FROM` or `WINDOW` (the reference swallows them as stream ids).
    """
    n = len(args)
    streams: dict[tuple[bytes, bytes], None] = {}
    i = 1
    while i < n:
        keyword = _keyword(args[i])
        if keyword == b"FROM" or keyword == b"WINDOW":
            break
        stream_id = _stream_id(args[i])
        i += 1
        if i < n and _keyword(args[i]) == b"PARTITION_KEY":
            if i + 1 == n:
                raise _missing("partition key")
            key = _uuid(args[i + 1], "partition key")
            i += 2
        else:
            key = partition_key_for_stream(stream_id)
        streams[(stream_id, key)] = None
    if not streams:
        raise (
            _missing("stream id")
            if i == n
            else _invalid(f"expected stream id before {_shown(args[i])}")
        )

    start_version: int | None = None
    start_map: dict[bytes, int] | None = None
    window: int | None = None
    seen_from = False
    while i < n:
        keyword = _keyword(args[i])
        if keyword == b"FROM":
            if seen_from:
                raise _invalid("from already specified")
            seen_from = True
            if i + 1 == n:
                raise _missing("LATEST, MAP or a start version")
            start = args[i + 1]
            i += 2
            start_keyword = _keyword(start)
            if start_keyword == b"MAP":
                start_map = {}
                while i < n and _keyword(args[i]) != b"WINDOW":
                    name, value = _map_entry(args[i], "<stream_id>=<version>")
                    name = _stream_id(name)
                    if name in start_map:
                        raise _invalid(f"FROM MAP has two entries for '{_shown(name)}'")
                    start_map[name] = _unsigned(value, "start version")
                    i += 1
                if not start_map:
                    raise _missing("<stream_id>=<version> after FROM MAP")
            elif start_keyword != b"LATEST":
                start_version = _unsigned(start, "start version")
        elif keyword == b"WINDOW":
            if window is not None:
                raise _invalid("window already specified")
            if i + 1 == n:
                raise _missing("window")
            window = _window(args[i + 1])
            i += 2
        else:
            raise _unexpected(args[i])

    return ESub(
        tuple(
            StreamSubscription(
                stream_id,
                key,
                start_map.get(stream_id) if start_map is not None else start_version,
            )
            for stream_id, key in streams
        ),
        window,
    )


def _partition_selector(arg: bytes) -> PartitionSelector:
    """`*`, or comma-separated items: a partition id, a range `a-b`, a partition key."""
    token = arg.strip()
    if token == b"*":
        return PartitionSelector(True, (), ())
    ranges: list[tuple[int, int]] = []
    keys: dict[bytes, None] = {}
    for raw in token.split(b","):
        item = raw.strip()
        if len(item) >= 32:  # no UUID form is shorter
            try:
                keys[parse_uuid(item)] = None
                continue
            except ValueError:
                pass
        first, sep, last = item.partition(b"-")
        try:
            if sep:
                low = _parse_unsigned(first.strip(), U16_MAX)
                high = _parse_unsigned(last.strip(), U16_MAX)
                if low > high:
                    raise ValueError(f"range {low}-{high} is empty")
                ranges.append((low, high))
            else:
                value = _parse_unsigned(item, U16_MAX)
                ranges.append((value, value))
        except ValueError as exc:
            raise _invalid(
                f"invalid partition selector '{_shown(arg)}': item '{_shown(item)}': {exc}"
            ) from exc
    # Merge before expanding, so that repeated wide ranges cost no more than one.
    ranges.sort()
    ids: list[int] = []
    for low, high in ranges:
        if ids and low <= ids[-1]:
            low = ids[-1] + 1
        ids.extend(range(low, high + 1))
    return PartitionSelector(False, tuple(ids), tuple(keys))


# The selector syntax for other front ends (the HTTP live feed); raises CommandError.
parse_partition_selector = _partition_selector


def parse_epsub(args: list[bytes]) -> EPSub:
    """EPSUB <selector> [FROM LATEST | FROM <sequence> | FROM MAP <partition>=<sequence>...
    [DEFAULT <sequence>]] [WINDOW <n>]"""
    n = len(args)
    if n < 2:
        raise _missing("partition selector")
    selector = _partition_selector(args[1])
    start_sequence: int | None = None
    start_map: Mapping[int, int] = _EMPTY_START_MAP
    default_start: int | None = None
    window: int | None = None
    seen_from = False
    i = 2
    while i < n:
        keyword = _keyword(args[i])
        if keyword == b"FROM":
            if seen_from:
                raise _invalid("from already specified")
            seen_from = True
            if i + 1 == n:
                raise _missing("LATEST, MAP or a start sequence")
            start = args[i + 1]
            i += 2
            start_keyword = _keyword(start)
            if start_keyword == b"MAP":
                entries: dict[int, int] = {}
                while i < n and _keyword(args[i]) not in (b"DEFAULT", b"WINDOW"):
                    name, value = _map_entry(args[i], "<partition>=<sequence>")
                    partition = _unsigned(name, "partition", U16_MAX)
                    if partition in entries:
                        raise _invalid(f"FROM MAP has two entries for partition {partition}")
                    entries[partition] = _unsigned(value, "start sequence")
                    i += 1
                if not entries:
                    raise _missing("<partition>=<sequence> after FROM MAP")
                start_map = MappingProxyType(entries)
                if i < n and _keyword(args[i]) == b"DEFAULT":
                    if i + 1 == n:
                        raise _missing("default sequence")
                    default_start = _unsigned(args[i + 1], "default sequence")
                    i += 2
            elif start_keyword != b"LATEST":
                start_sequence = _unsigned(start, "start sequence")
        elif keyword == b"WINDOW":
            if window is not None:
                raise _invalid("window already specified")
            if i + 1 == n:
                raise _missing("window")
            window = _window(args[i + 1])
            i += 2
        else:
            raise _unexpected(args[i])
    return EPSub(selector, start_sequence, start_map, default_start, window)


def parse_eack(args: list[bytes]) -> EAck:
    """EACK <subscription_id> <cursor>"""
    n = len(args)
    if n < 2:
        raise _missing("subscription id")
    subscription_id = _uuid(args[1], "subscription id")
    if n < 3:
        raise _missing("cursor")
    cursor = _unsigned(args[2], "cursor")
    _end(args, 3)
    return EAck(subscription_id, cursor)


def parse_eunsub(args: list[bytes]) -> EUnsub:
    """EUNSUB <subscription_id>"""
    if len(args) < 2:
        raise _missing("subscription id")
    subscription_id = _uuid(args[1], "subscription id")
    _end(args, 2)
    return EUnsub(subscription_id)


# --------------------------------------------------------------------------------------------
# Redis courtesy commands (Redis's error texts, under the INVALIDARG code)


def _client_name(arg: bytes) -> bytes:
    # Redis: a name is printable ASCII without spaces, so CLIENT LIST stays parseable.
    if any(byte < 0x21 or byte > 0x7E for byte in arg):
        raise _invalid("Client names cannot contain spaces, newlines or special characters.")
    return arg


def parse_ping(args: list[bytes]) -> Ping:
    """PING [message]"""
    _end(args, 2)
    return Ping(args[1] if len(args) == 2 else None)


def parse_hello(args: list[bytes]) -> Hello:
    """HELLO [protover [AUTH username password] [SETNAME clientname]]"""
    n = len(args)
    if n == 1:
        return Hello(None, None, None, None)
    version = _parse_signed(args[1])
    if version is None:
        raise _invalid("Protocol version is not an integer or out of range")
    if version not in (2, 3):
        raise CommandError("NOPROTO", "unsupported protocol version")
    username: bytes | None = None
    password: bytes | None = None
    client_name: bytes | None = None
    i = 2
    while i < n:
        keyword = _keyword(args[i])
        if keyword == b"AUTH" and i + 2 < n:
            username, password = args[i + 1], args[i + 2]
            i += 3
        elif keyword == b"SETNAME" and i + 1 < n:
            client_name = _client_name(args[i + 1])
            i += 2
        else:
            raise _invalid(f"Syntax error in HELLO option '{_shown(args[i])}'")
    return Hello(version, username, password, client_name)


def parse_echo(args: list[bytes]) -> Echo:
    """ECHO message"""
    if len(args) != 2:
        raise _arity("echo")
    return Echo(args[1])


def parse_quit(args: list[bytes]) -> Quit:
    """QUIT (arguments ignored, as Redis does)"""
    return Quit()


def parse_select(args: list[bytes]) -> Select:
    """SELECT index"""
    if len(args) != 2:
        raise _arity("select")
    db = _parse_signed(args[1])
    if db is None:
        raise _invalid("value is not an integer or out of range")
    return Select(db)


def parse_auth(args: list[bytes]) -> Auth:
    """AUTH [username] password"""
    n = len(args)
    if n == 2:
        return Auth(None, args[1])
    if n == 3:
        return Auth(args[1], args[2])
    raise _arity("auth")


def parse_info(args: list[bytes]) -> Info:
    """INFO [section ...]"""
    return Info(tuple(section.lower() for section in args[1:]))


def parse_client(args: list[bytes]) -> ClientSetInfo | ClientSetName | ClientGetName | ClientId:
    """CLIENT SETINFO LIB-NAME|LIB-VER value | SETNAME name | GETNAME | ID"""
    n = len(args)
    if n < 2:
        raise _arity("client")
    subcommand = _keyword(args[1])
    if subcommand == b"SETINFO":
        if n != 4:
            raise _arity("client|setinfo")
        attribute = _keyword(args[2])
        if attribute not in (b"LIB-NAME", b"LIB-VER"):
            raise _invalid(f"Unrecognized option '{_shown(args[2])}'")
        value = args[3]
        if any(byte < 0x21 or byte > 0x7E for byte in value):
            raise _invalid(
                f"{attribute.decode()} cannot contain spaces, newlines or special characters."
            )
        return ClientSetInfo(attribute, value)
    if subcommand == b"SETNAME":
        if n != 3:
            raise _arity("client|setname")
        return ClientSetName(_client_name(args[2]))
    if subcommand == b"GETNAME":
        if n != 2:
            raise _arity("client|getname")
        return ClientGetName()
    if subcommand == b"ID":
        if n != 2:
            raise _arity("client|id")
        return ClientId()
    raise _invalid(f"unknown subcommand '{_shown(args[1])}'. Try CLIENT HELP.")


def parse_config(args: list[bytes]) -> ConfigGet:
    """CONFIG GET pattern [pattern ...]"""
    n = len(args)
    if n < 2:
        raise _arity("config")
    if _keyword(args[1]) != b"GET":
        raise _invalid(f"unknown subcommand '{_shown(args[1])}'. Try CONFIG HELP.")
    if n < 3:
        raise _arity("config|get")
    return ConfigGet(tuple(args[2:]))


_MEMBER_ID = re.compile(rb"[0-9a-f]{32}")


def parse_cluster(args: list[bytes]) -> ClusterAdmit:
    """CLUSTER ADMIT <node index> [<member id>]"""
    n = len(args)
    if n < 2:
        raise _arity("cluster")
    if _keyword(args[1]) != b"ADMIT":
        raise _invalid(f"unknown subcommand '{_shown(args[1])}'. Try CLUSTER ADMIT.")
    if n not in (3, 4):
        raise _arity("cluster|admit")
    try:
        node_index = _parse_unsigned(args[2], 0xFFFF)
    except ValueError as exc:
        raise _invalid(f"invalid node index '{_shown(args[2])}': {exc}") from exc
    member_id = None
    if n == 4:
        if not _MEMBER_ID.fullmatch(args[3]):
            raise _invalid(f"invalid member id '{_shown(args[3])}': expected 32 hex digits")
        member_id = args[3].decode()
    return ClusterAdmit(node_index, member_id)


def parse_command_introspection(args: list[bytes]) -> Command:
    """COMMAND [subcommand [arg ...]] (the caller answers with little or nothing)"""
    if len(args) < 2:
        return Command(None, ())
    return Command(args[1].upper(), tuple(args[2:]))


# --------------------------------------------------------------------------------------------
# Dispatch

_PARSERS: dict[bytes, Callable[[list[bytes]], Request]] = {
    b"EAPPEND": parse_eappend,
    b"EMAPPEND": parse_emappend,
    b"EGET": parse_eget,
    b"ESCAN": parse_escan,
    b"ESVER": parse_esver,
    b"EPSCAN": parse_epscan,
    b"EPREAD": parse_epread,
    b"EPSEQ": parse_epseq,
    b"ESUB": parse_esub,
    b"EPSUB": parse_epsub,
    b"EACK": parse_eack,
    b"EUNSUB": parse_eunsub,
    b"PING": parse_ping,
    b"HELLO": parse_hello,
    b"ECHO": parse_echo,
    b"QUIT": parse_quit,
    b"SELECT": parse_select,
    b"AUTH": parse_auth,
    b"INFO": parse_info,
    b"CLIENT": parse_client,
    b"CONFIG": parse_config,
    b"COMMAND": parse_command_introspection,
    b"CLUSTER": parse_cluster,
}
COMMAND_NAMES: frozenset[bytes] = frozenset(_PARSERS)
_PARSERS.update({name.lower(): parser for name, parser in list(_PARSERS.items())})


def parse_command(args: list[bytes]) -> Request:
    """Parse one request; raises CommandError with the reply text of a refused one."""
    if not args:
        raise CommandError("ERR", "empty command")
    name = args[0]
    parser = _PARSERS.get(name)
    if parser is None:
        parser = _PARSERS.get(name.upper())
        if parser is None:
            try:
                name.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CommandError("ERR", "invalid command") from exc
            raise _invalid(f"unknown command '{_shown(name.upper())}'")
    return parser(args)
