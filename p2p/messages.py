"""The control protocol's messages, and their schema check.

Every message is a frozen dataclass; on the wire it is a cbor2 map of its fields plus ``t`` (its
type name). ``decode_message`` accepts a map only if it names a known type and every field is
present with the right type and within its bound (string and list lengths, integer ranges); extra
keys are ignored, so a later version may add fields. Bounds are per field (``limit`` metadata) or
the defaults below. Anything else raises ``FrameError`` and closes the link that carried it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

from .errors import FrameError

# 2: Hello carries the data link's port and secret (p2p/data_links.py).
PROTOCOL_VERSION = 2

DEFAULT_MAX_STR = 256
DEFAULT_MAX_BYTES = 64
# The largest cluster is MAX_NODES nodes; lists of members, claims and addresses stay below this.
DEFAULT_MAX_ITEMS = 256
MAX_INT = (1 << 63) - 1


def limit(maximum: int, minimum: int = 0) -> Any:
    return field(metadata={"max": maximum, "min": minimum})


# ----------------------------------------------------------------------------- payloads
@dataclass(frozen=True, slots=True)
class Claim:
    """A node index as held by one live peer (for duplicate detection)."""

    node_index: int
    peer_id: str = limit(128)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as gossiped: who, where, which start. Newer incarnations replace older."""

    peer_id: str = limit(128)
    node_index: int = limit(MAX_INT)
    member_id: str = limit(64)
    incarnation: int = limit(MAX_INT)
    addresses: list[str] = limit(32)
    client_address: str = limit(DEFAULT_MAX_STR)


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """The member ids admitted at one node index, at an admission epoch (see member_table)."""

    node_index: int
    epoch: int
    member_ids: list[str] = limit(16)


# ----------------------------------------------------------------------------- messages
@dataclass(frozen=True, slots=True)
class Hello:
    TYPE: ClassVar[str] = "hello"
    protocol_version: int
    cluster_name: str = limit(64)
    cluster_id: str | None = limit(64)
    member_id: str = limit(64)
    node_index: int = limit(MAX_INT)
    node_count: int = limit(MAX_INT)
    replication_factor: int = limit(MAX_INT)
    partitions: int = limit(MAX_INT)
    buckets: int = limit(MAX_INT)
    placement_version: int = limit(MAX_INT)
    incarnation: int = limit(MAX_INT)
    client_address: str = limit(DEFAULT_MAX_STR)
    software_version: str = limit(64)
    addresses: list[str] = limit(32)
    nonce: bytes = limit(32, 16)
    secret_set: bool = limit(1)  # (a required field; the bound means nothing for a bool)
    # The data link (p2p/data_links.py): this node's data listener port, and its half of the
    # link key (fresh per handshake; only sent over Noise, to the peer id Noise proved).
    data_port: int = limit(65535)
    data_secret: bytes = limit(32, 32)


@dataclass(frozen=True, slots=True)
class Proof:
    """HMAC of the peer's nonce under the cluster secret (see handshake)."""

    TYPE: ClassVar[str] = "proof"
    mac: bytes = limit(32, 32)


@dataclass(frozen=True, slots=True)
class Ready:
    TYPE: ClassVar[str] = "ready"


@dataclass(frozen=True, slots=True)
class Refuse:
    TYPE: ClassVar[str] = "refuse"
    field_name: str = limit(64)
    reason: str = limit(512)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Sent every heartbeat interval on each link. ``ping`` numbers this heartbeat; ``echo`` is
    the last ping received from the peer and ``held_ms`` how long ago it arrived, so the peer
    gets a round-trip time without a message of its own."""

    TYPE: ClassVar[str] = "hb"
    incarnation: int = limit(MAX_INT)
    ping: int = limit(MAX_INT)
    echo: int = limit(MAX_INT)
    held_ms: int = limit(MAX_INT)
    # Peers this node holds a live, accepted link to (duplicate node indexes show up here).
    linked: list[Claim] = limit(DEFAULT_MAX_ITEMS)


@dataclass(frozen=True, slots=True)
class Gossip:
    TYPE: ClassVar[str] = "gossip"
    cluster_id: str | None = limit(64)
    members: list[MemberInfo] = limit(DEFAULT_MAX_ITEMS)
    registry: list[RegistryEntry] = limit(DEFAULT_MAX_ITEMS)


@dataclass(frozen=True, slots=True)
class Leave:
    """Sent on graceful shutdown: the receiver marks the sender down at once."""

    TYPE: ClassVar[str] = "leave"
    incarnation: int = limit(MAX_INT)


Message = Hello | Proof | Ready | Refuse | Heartbeat | Gossip | Leave
MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls for cls in (Hello, Proof, Ready, Refuse, Heartbeat, Gossip, Leave)
}


# ----------------------------------------------------------------------------- codec
def encode_message(message: Message) -> dict[str, Any]:
    wire = dataclasses.asdict(message)
    wire["t"] = message.TYPE
    return wire


# Fields a Hello of another protocol version may lack. Such a Hello is always refused (the
# handshake compares versions first), so it is decoded with these stand-ins rather than
# rejected as a bad frame: both ends then log the version mismatch, not a decoding error.
_HELLO_STAND_INS: dict[str, Any] = {"data_port": 0, "data_secret": bytes(32)}


def decode_message(wire: dict[str, Any]) -> Message:
    kind = wire.get("t")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise FrameError(f"unknown message type {kind!r}")
    if cls is Hello and wire.get("protocol_version") != PROTOCOL_VERSION:
        wire = {**_HELLO_STAND_INS, **wire}
    return typing.cast(Message, _decode_object(cls, wire, typing.cast(str, kind)))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode_object(cls: type, value: object, path: str) -> object:
    if not isinstance(value, dict):
        raise FrameError(f"{path}: expected a map")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in value:
            raise FrameError(f"{path}.{f.name}: missing")
        kwargs[f.name] = _decode_value(hints[f.name], value[f.name], f.metadata, f"{path}.{f.name}")
    return cls(**kwargs)


def _decode_value(hint: Any, value: object, meta: Any, path: str) -> object:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode_value(inner, value, meta, path)
    if origin is list:
        if not isinstance(value, list):
            raise FrameError(f"{path}: expected a list")
        if len(value) > meta.get("max", DEFAULT_MAX_ITEMS):
            raise FrameError(f"{path}: more than {meta.get('max', DEFAULT_MAX_ITEMS)} items")
        (item,) = typing.get_args(hint)
        return [_decode_value(item, v, {}, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _decode_object(typing.cast(type, hint), value, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise FrameError(f"{path}: expected a boolean")
        return value
    if hint is int:
        low, high = meta.get("min", 0), meta.get("max", MAX_INT)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise FrameError(f"{path}: expected an integer in {low}..{high}")
        return value
    if hint in (str, bytes):
        high = meta.get("max", DEFAULT_MAX_STR if hint is str else DEFAULT_MAX_BYTES)
        low = meta.get("min", 0)
        if not isinstance(value, hint) or not low <= len(value) <= high:
            raise FrameError(f"{path}: expected {hint.__name__} of length {low}..{high}")
        return value
    raise AssertionError(f"no decoder for {hint!r}")  # a schema bug, not a peer's
