"""Node configuration: a frozen `Config` loaded from flags, environment, a TOML file, defaults.

Precedence, highest first: command-line flags, environment variables `SIERRA_<FIELD>` (the field
name upper-cased, e.g. `SIERRA_SEGMENT_SIZE_BYTES`), the TOML file given by `-c/--config` (or
`SIERRA_CONFIG`), then the defaults below. Every `Config` is validated when it is built, so a
`Config` that exists is a valid one; invalid input raises `ConfigError` with a one-line message.

Accepted TOML keys (a flat key, or the reference's section key where the reference has one;
setting both forms of one key in a file is an error, and so is any other key):

=========================  ===========================  ================  =====================
Config field               TOML keys                    flag              default
=========================  ===========================  ================  =====================
dir                        dir                          -d/--dir          ./data
client_address             client_address,              --client-address  127.0.0.1:9090
                           network.client_address
http_address               http_address                 --http-address    next to client_address
node_count                 node_count, node.count       -n/--node-count   1
node_index                 node_index, node.index       -i/--node-index   0
cluster_address            cluster_address,             --cluster-address /ip4/0.0.0.0/tcp/7000
                           network.cluster_address
data_port                  data_port,                   --data-port       0 (a free port)
                           network.data_port
cluster_name               cluster_name                 --cluster-name    sierradb
cluster_secret             cluster_secret               (none: env/file)  none
cluster_secret_file        cluster_secret_file          --cluster-secret- none
                                                        file
mdns                       mdns, network.mdns           --mdns            node_count > 1
peers                      peers (array of strings)     --peer (repeat)   none
heartbeat_interval_s       heartbeat_interval_s         --heartbeat-      1
                                                        interval
down_timeout_s             down_timeout_s               --down-timeout    6
write_timeout_s            write_timeout_s              --write-timeout   5
requirepass                requirepass                  --requirepass     none
protected_mode             protected_mode               --protected-mode  true
partitions                 partitions, partition.count  --partitions      32
buckets                    buckets, bucket.count        --buckets         4
segment_size_bytes         segment_size_bytes,          --segment-size    256MiB
                           segment.size_bytes
replication_factor         replication_factor,          --replication-    min(node_count, 3)
                           replication.factor           factor
sync_policy                sync_policy                  --sync            always
strict_versioning          strict_versioning,           --strict-         false
                           append.strict_versioning     versioning
max_request_bytes          max_request_bytes            --max-request-    64MiB
                                                        size
max_count                  max_count                    --max-count       10000
default_count              default_count                --default-count   100
default_window             default_window               --default-window  1000
max_clients                max_clients                  --max-clients     10000
max_blocked_clients        max_blocked_clients          --max-blocked-    1000
                                                        clients
request_timeout_s          request_timeout_s            --request-timeout 30
cache_capacity_bytes       cache_capacity_bytes,        --cache-size      256MiB
                           cache.capacity_bytes
stream_cache_entries       stream_cache_entries         --stream-cache-   100000
                                                        entries
checkpoint_interval_bytes  checkpoint_interval_bytes    --checkpoint-     16MiB
                                                        interval
log_level                  log_level                    -l/--log-level    info
=========================  ===========================  ================  =====================

Sizes are plain bytes or a number with a binary suffix (`512KiB`, `64MiB`, `1.5GiB`, `1TiB`);
booleans are `true/false`, `yes/no`, `on/off` or `1/0`; the sync policy is `always`, `none`, or a
group-commit window such as `2ms`, `500us` or `0.01s`. In the environment, `SIERRA_PEERS` is a
comma-separated list, and an empty variable counts as unset. The cluster secret has no flag of
its own (flags show in `ps`): set `SIERRA_CLUSTER_SECRET`, or name a file with
`--cluster-secret-file`, whose content (without a trailing newline) is the secret.

The HTTP port (inspector, JSON API, `/metrics`, health) is on unless `http_address` is `none`:
by default on the client address's host if that is a loopback address (else `127.0.0.1`), one
port above the client port (`127.0.0.1:9091` next to `127.0.0.1:9090`; port 0 stays 0). Without
a password and in protected mode it may only bind a loopback address.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from sierradb.p2p.addresses import parse_listen_address, parse_peer_address
from sierradb.p2p.errors import AddressError
from sierradb.storage import (
    DEFAULT_CACHE_CAPACITY_BYTES,
    DEFAULT_CHECKPOINT_INTERVAL_BYTES,
    DEFAULT_SEGMENT_SIZE_BYTES,
    DEFAULT_STREAM_CACHE_ENTRIES,
    MAX_SEGMENT_SIZE_BYTES,
    MIN_CHECKPOINT_INTERVAL_BYTES,
    MIN_SEGMENT_SIZE_BYTES,
)

__all__ = [
    "DEFAULT_CACHE_CAPACITY_BYTES",
    "DEFAULT_CHECKPOINT_INTERVAL_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_SEGMENT_SIZE_BYTES",
    "DEFAULT_STREAM_CACHE_ENTRIES",
    "ENV_PREFIX",
    "MAX_PARTITIONS",
    "MAX_SEGMENT_SIZE_BYTES",
    "MAX_SYNC_WINDOW_S",
    "MIN_CHECKPOINT_INTERVAL_BYTES",
    "MIN_SEGMENT_SIZE_BYTES",
    "Config",
    "ConfigError",
    "build_arg_parser",
    "default_http_address",
    "format_size",
    "is_loopback",
    "load_config",
    "parse_bool",
    "parse_host_port",
    "parse_size_bytes",
    "parse_sync_window_s",
]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

ENV_PREFIX = "SIERRA_"
CONFIG_PATH_ENV = ENV_PREFIX + "CONFIG"

# Partition ids are 16-bit, as in the reference.
MAX_PARTITIONS = 65535
# The storage limits (segment size bounds, cache and checkpoint defaults) live in
# sierradb.storage.limits, with their reasons.
# Every acknowledged append waits for its sync, so a longer group-commit window is pure latency.
MAX_SYNC_WINDOW_S = 1.0
# The most replicas a partition gets by default; more adds write latency for little safety.
DEFAULT_MAX_REPLICATION_FACTOR = 3
# Every node links to every other (a full mesh of control streams and heartbeats).
MAX_NODE_COUNT = 64
DEFAULT_CLUSTER_ADDRESS = "/ip4/0.0.0.0/tcp/7000"
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# One RESP request (an EMAPPEND batch) is buffered whole before it is parsed.
DEFAULT_MAX_REQUEST_BYTES = 64 * MIB

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_LOG_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical"}


class ConfigError(Exception):
    """Invalid configuration; `str(error)` is one line, fit for `sierradb: error: <message>`.

    `key` names the `Config` field at fault, when there is one.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------------------------------------
# Value syntax: the parsers raise ValueError; load_config turns that into ConfigError.

_SIZE_UNITS = {"": 1, "b": 1, "kib": KIB, "mib": MIB, "gib": GIB, "tib": TIB}
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)", re.IGNORECASE)


def parse_size_bytes(text: str) -> int:
    """Parse `268435456`, `512KiB`, `64MiB`, `1.5GiB` or `1TiB` (case-insensitive) into bytes.

    Decimal suffixes (`MB`, `GB`) are refused rather than guessed at.
    """
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(
            f"invalid size {text!r} (use a number of bytes or a KiB, MiB, GiB or TiB suffix)"
        )
    number, unit = match.groups()
    scale = _SIZE_UNITS[unit.lower()]
    if "." not in number:
        return int(number) * scale
    whole, fraction = number.split(".")
    numerator = int(whole + fraction) * scale
    denominator = 10 ** len(fraction)
    if numerator % denominator:
        raise ValueError(f"invalid size {text!r} (not a whole number of bytes)")
    return numerator // denominator


def format_size(size_bytes: int) -> str:
    """The shortest exact spelling of a size: `64MiB`, `1536KiB`, `1000`."""
    for unit, scale in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size_bytes and size_bytes % scale == 0:
            return f"{size_bytes // scale}{unit}"
    return str(size_bytes)


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def parse_bool(text: str) -> bool:
    """Parse true/false, yes/no, on/off or 1/0 (case-insensitive)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true/false, yes/no or 1/0, got {text!r}")


def parse_host_port(address: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:9090`) into host and port, port 0..65535."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = ":" in host
    else:
        valid_host = ":" not in host
    valid_host = valid_host and bool(host) and not any(c.isspace() or c in "[]/" for c in host)
    valid_port = re.fullmatch("[0-9]{1,5}", port_text) is not None and int(port_text) <= 65535
    if not sep or not valid_host or not valid_port:
        raise ValueError(f"invalid address {address!r} (expected host:port, port 0..65535)")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether an address (never a name) is a loopback one; IPv4-mapped IPv6 counts too."""
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def default_http_address(client_address: str) -> str | None:
    """The HTTP address next to a client address (None if that address is invalid)."""
    try:
        host, port = parse_host_port(client_address)
    except ValueError:
        return None  # the client address's own check reports it
    if not is_loopback(host):
        host = "127.0.0.1"  # never expose the inspector just because clients come from outside
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port + 1 if 0 < port < 65535 else 0}"


_DURATION_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s)")


def parse_sync_window_s(policy: str) -> float | None:
    """Interpret a sync policy: None for `none` (never fsync), 0.0 for `always` (fsync every
    commit), else the group-commit window in seconds (`2ms`, `500us`, `0.01s`)."""
    word = policy.strip().lower()
    if word == "always":
        return 0.0
    if word == "none":
        return None
    match = _DURATION_RE.fullmatch(word)
    if match is None:
        raise ValueError(
            f"invalid sync policy {policy!r} (expected always, none, or a window like 2ms)"
        )
    window_s = float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]
    if window_s > MAX_SYNC_WINDOW_S:
        raise ValueError(f"sync window {policy!r} is longer than the maximum of 1s")
    return window_s


# ---------------------------------------------------------------------------------------------
# The configuration itself.


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole node configuration; validated on construction (raises ConfigError).

    Built directly, `mdns`, `replication_factor` and `http_address` keep the defaults of a
    single node on the default client address; only `load_config` derives them (from
    `node_count` and `client_address`).
    """

    config_path: Path | None = None  # the TOML file read, if any (for the startup log)
    dir: Path = Path("./data")
    client_address: str = "127.0.0.1:9090"
    http_address: str | None = "127.0.0.1:9091"
    node_count: int = 1
    node_index: int = 0
    cluster_address: str = DEFAULT_CLUSTER_ADDRESS
    data_port: int = 0
    cluster_name: str = "sierradb"
    cluster_secret: str | None = field(default=None, repr=False)
    cluster_secret_file: Path | None = None
    mdns: bool = False
    peers: tuple[str, ...] = ()
    heartbeat_interval_s: float = 1.0
    down_timeout_s: float = 6.0
    write_timeout_s: float = 5.0
    requirepass: str | None = field(default=None, repr=False)
    protected_mode: bool = True
    partitions: int = 32
    buckets: int = 4
    segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES
    replication_factor: int = 1
    sync_policy: str = "always"
    strict_versioning: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_count: int = 10_000
    default_count: int = 100
    default_window: int = 1000
    max_clients: int = 10_000
    max_blocked_clients: int = 1000
    request_timeout_s: float = 30.0
    cache_capacity_bytes: int = DEFAULT_CACHE_CAPACITY_BYTES
    stream_cache_entries: int = DEFAULT_STREAM_CACHE_ENTRIES
    checkpoint_interval_bytes: int = DEFAULT_CHECKPOINT_INTERVAL_BYTES
    log_level: str = "info"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def sync_window_s(self) -> float | None:
        """None: never fsync (`none`); 0.0: fsync every commit (`always`); else the window."""
        return parse_sync_window_s(self.sync_policy)

    @property
    def loopback_only(self) -> bool:
        """Protected mode as in Redis: without a password, accept only loopback clients."""
        return self.protected_mode and self.requirepass is None

    def read_count(self, count: int | None) -> int:
        """A read's COUNT: the default when absent, clamped (not refused) at the maximum."""
        if count is None:
            return self.default_count
        return min(count, self.max_count)

    def describe(self) -> list[str]:
        """`key=value` lines for the startup log, the password and secret masked."""
        lines = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in ("requirepass", "cluster_secret") and value is not None:
                text = "********"
            elif value is None:
                text = "none"
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, tuple):
                text = ",".join(value) if value else "none"
            else:
                text = str(value)
            lines.append(f"{item.name}={text}")
        return lines


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(message, key=key)


def _check_address(config: Config, key: str) -> None:
    address = getattr(config, key)
    if address is None:
        return
    try:
        parse_host_port(address)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}", key=key) from error


def _validate(config: Config) -> None:
    c = config
    for key in ("client_address", "http_address"):
        _check_address(c, key)
    if c.http_address is not None and c.loopback_only:
        http_host = parse_host_port(c.http_address)[0]
        _check(
            http_host == "localhost" or is_loopback(http_host),
            "http_address",
            f"http_address {c.http_address} is not a loopback address and no password is set "
            "(protected mode): set requirepass (the inspector and /metrics then ask for it), "
            "bind the HTTP port to 127.0.0.1, or set protected_mode no",
        )
    try:
        parse_listen_address(c.cluster_address)
    except AddressError as error:
        raise ConfigError(f"cluster_address: {error}", key="cluster_address") from error
    _check(
        1 <= c.node_count <= MAX_NODE_COUNT,
        "node_count",
        f"node_count must be in 1..{MAX_NODE_COUNT}, got {c.node_count}",
    )
    _check(
        0 <= c.node_index < c.node_count,
        "node_index",
        f"node_index must be in 0..{c.node_count - 1} for node_count {c.node_count}, "
        f"got {c.node_index}",
    )
    _check(
        0 <= c.data_port <= 65535,
        "data_port",
        f"data_port must be in 0..65535 (0 picks a free port), got {c.data_port}",
    )
    for peer in c.peers:
        try:
            parse_peer_address(peer)
        except AddressError as error:
            raise ConfigError(f"peers: {error}", key="peers") from error
    _check(
        _CLUSTER_NAME.fullmatch(c.cluster_name) is not None,
        "cluster_name",
        f"cluster_name must be 1..64 letters, digits, '.', '_' or '-', got {c.cluster_name!r}",
    )
    _check(
        c.cluster_secret is None or c.cluster_secret != "",
        "cluster_secret",
        "cluster_secret must not be empty (leave it unset for no secret)",
    )
    _check(
        c.heartbeat_interval_s > 0,
        "heartbeat_interval_s",
        f"heartbeat_interval_s must be positive, got {c.heartbeat_interval_s}",
    )
    _check(
        c.write_timeout_s > 0,
        "write_timeout_s",
        f"write_timeout_s must be positive, got {c.write_timeout_s}",
    )
    _check(
        c.down_timeout_s >= 2 * c.heartbeat_interval_s,
        "down_timeout_s",
        f"down_timeout_s ({c.down_timeout_s}) must be at least twice heartbeat_interval_s "
        f"({c.heartbeat_interval_s}), or one late heartbeat marks a live peer down",
    )
    _check(
        c.requirepass is None or c.requirepass != "",
        "requirepass",
        "requirepass must not be empty (leave it unset for no password)",
    )
    _check(
        1 <= c.partitions <= MAX_PARTITIONS,
        "partitions",
        f"partitions must be in 1..{MAX_PARTITIONS}, got {c.partitions}",
    )
    _check(
        1 <= c.buckets <= c.partitions,
        "buckets",
        f"buckets must be in 1..partitions ({c.partitions}), got {c.buckets}",
    )
    _check(
        MIN_SEGMENT_SIZE_BYTES <= c.segment_size_bytes <= MAX_SEGMENT_SIZE_BYTES,
        "segment_size_bytes",
        f"segment_size_bytes must be in {format_size(MIN_SEGMENT_SIZE_BYTES)}.."
        f"{format_size(MAX_SEGMENT_SIZE_BYTES)}, got {c.segment_size_bytes}",
    )
    _check(
        1 <= c.replication_factor <= c.node_count,
        "replication_factor",
        f"replication_factor must be in 1..node_count ({c.node_count}), got {c.replication_factor}",
    )
    try:
        window_s = parse_sync_window_s(c.sync_policy)
    except ValueError as error:
        raise ConfigError(str(error), key="sync_policy") from error
    _check(
        window_s is not None or c.replication_factor == 1,
        "sync_policy",
        f"sync_policy none is refused with replication_factor {c.replication_factor} "
        "(a replica's acknowledgement must mean the entry is durable)",
    )
    for key in (
        "max_request_bytes", "max_count", "default_count", "default_window", "max_clients",
        "max_blocked_clients",
    ):  # fmt: skip
        value = getattr(c, key)
        _check(value >= 1, key, f"{key} must be positive, got {value}")
    _check(
        c.request_timeout_s > 0,
        "request_timeout_s",
        f"request_timeout_s must be positive, got {c.request_timeout_s}",
    )
    _check(
        c.default_count <= c.max_count,
        "default_count",
        f"default_count ({c.default_count}) must not exceed max_count ({c.max_count})",
    )
    for key in ("cache_capacity_bytes", "stream_cache_entries"):
        value = getattr(c, key)
        _check(value >= 0, key, f"{key} must not be negative, got {value}")
    _check(
        MIN_CHECKPOINT_INTERVAL_BYTES <= c.checkpoint_interval_bytes <= MAX_SEGMENT_SIZE_BYTES,
        "checkpoint_interval_bytes",
        f"checkpoint_interval_bytes must be in {format_size(MIN_CHECKPOINT_INTERVAL_BYTES)}.."
        f"{format_size(MAX_SEGMENT_SIZE_BYTES)}, got {c.checkpoint_interval_bytes}",
    )
    _check(
        c.log_level in LOG_LEVELS,
        "log_level",
        f"log_level must be one of {', '.join(LOG_LEVELS)}, got {c.log_level!r}",
    )


# ---------------------------------------------------------------------------------------------
# Sources: one table of settings drives the flags, the environment and the TOML keys.


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    return float(str(value).strip())


def _to_size(value: object) -> int:
    if isinstance(value, str):
        return parse_size_bytes(value)
    return _to_int(value)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_bool(value)
    raise ValueError(f"expected true or false, got {value!r}")


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"expected a string, got {value!r}")


def _to_path(value: object) -> Path:
    text = _to_str(value)
    if not text:
        raise ValueError("expected a non-empty path")
    return Path(text)


def _to_optional_address(value: object) -> str | None:
    text = _to_str(value)
    return None if text.lower() in ("", "off", "none") else text


def _to_optional_str(value: object) -> str | None:
    # Not stripped: a password is taken as given.
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value or None


def _to_lower(value: object) -> str:
    return _to_str(value).lower()


def _to_log_level(value: object) -> str:
    word = _to_lower(value)
    return _LOG_LEVEL_ALIASES.get(word, word)


def _to_peers(value: object) -> tuple[str, ...]:
    if isinstance(value, str):  # the environment: comma-separated
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(item.strip() for item in value)
    raise ValueError(f"expected a list of multiaddr strings, got {value!r}")


@dataclass(frozen=True, slots=True)
class _Setting:
    name: str  # the Config field; also the flat TOML key and SIERRA_<NAME>
    convert: Callable[[object], object]
    flags: tuple[str, ...]
    metavar: str
    help: str
    default_text: str
    group: str
    section_key: str | None = None  # the reference's dotted TOML key, where it has one

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper().replace(".", "_").replace("-", "_")


# fmt: off
_SETTINGS: tuple[_Setting, ...] = (
    _Setting("dir", _to_path, ("-d", "--dir"), "DIR", "data directory", "./data", "storage"),
    _Setting(
        "partitions", _to_int, ("--partitions",), "N",
        f"number of partitions, 1..{MAX_PARTITIONS}; fixed once the data dir exists",
        "32", "storage", "partition.count",
    ),
    _Setting(
        "buckets", _to_int, ("--buckets",), "N",
        "number of buckets (one writer each), 1..partitions", "4", "storage", "bucket.count",
    ),
    _Setting(
        "segment_size_bytes", _to_size, ("--segment-size",), "SIZE",
        "segment roll-over size, 128KiB..10GiB, in bytes or with a KiB/MiB/GiB suffix",
        format_size(DEFAULT_SEGMENT_SIZE_BYTES), "storage", "segment.size_bytes",
    ),
    _Setting(
        "sync_policy", _to_lower, ("--sync",), "POLICY",
        "fsync policy: always, none (refused when replication factor > 1), or a group-commit "
        "window such as 2ms",
        "always", "storage",
    ),
    _Setting(
        "cache_capacity_bytes", _to_size, ("--cache-size",), "SIZE",
        "block cache size (0 disables it)", format_size(DEFAULT_CACHE_CAPACITY_BYTES),
        "storage", "cache.capacity_bytes",
    ),
    _Setting(
        "stream_cache_entries", _to_int, ("--stream-cache-entries",), "N",
        "streams whose latest version is kept in memory", str(DEFAULT_STREAM_CACHE_ENTRIES),
        "storage",
    ),
    _Setting(
        "checkpoint_interval_bytes", _to_size, ("--checkpoint-interval",), "SIZE",
        "data written between checkpoints of the active segment's index (bounds the scan at "
        "start-up), 16KiB..10GiB; one above the segment size means none before sealing",
        format_size(DEFAULT_CHECKPOINT_INTERVAL_BYTES), "storage",
    ),
    _Setting(
        "client_address", _to_str, ("--client-address",), "HOST:PORT",
        "address for RESP clients", "127.0.0.1:9090", "network", "network.client_address",
    ),
    _Setting(
        "http_address", _to_optional_address, ("--http-address",), "HOST:PORT",
        "address for the inspector UI, JSON API, /metrics and health checks, or none",
        "client host if loopback, else 127.0.0.1; client port + 1", "network",
    ),
    _Setting(
        "requirepass", _to_optional_str, ("--requirepass",), "PASSWORD",
        "password clients must AUTH with (prefer SIERRA_REQUIREPASS: flags show in ps)",
        "none", "network",
    ),
    _Setting(
        "protected_mode", _to_bool, ("--protected-mode",), "yes|no",
        "without a password, accept only loopback clients", "yes", "network",
    ),
    _Setting(
        "node_count", _to_int, ("-n", "--node-count"), "N",
        "number of nodes in the cluster", "1", "cluster", "node.count",
    ),
    _Setting(
        "node_index", _to_int, ("-i", "--node-index"), "I",
        "this node's index, 0..node-count-1", "0", "cluster", "node.index",
    ),
    _Setting(
        "cluster_address", _to_str, ("--cluster-address",), "MULTIADDR",
        "address for peer connections: a multiaddr or HOST:PORT (port 0 picks a free one)",
        DEFAULT_CLUSTER_ADDRESS, "cluster", "network.cluster_address",
    ),
    _Setting(
        "data_port", _to_int, ("--data-port",), "PORT",
        "TCP port for replication traffic between nodes, on the cluster address's host",
        "0 (a free port, told to peers in the handshake)", "cluster", "network.data_port",
    ),
    _Setting(
        "cluster_name", _to_str, ("--cluster-name",), "NAME",
        "nodes only join peers of the same cluster name", "sierradb", "cluster",
    ),
    _Setting(
        "cluster_secret", _to_optional_str, (), "",
        "shared secret every node of the cluster proves (SIERRA_CLUSTER_SECRET)", "none",
        "cluster",
    ),
    _Setting(
        "cluster_secret_file", _to_path, ("--cluster-secret-file",), "PATH",
        "file holding the cluster secret", "none", "cluster",
    ),
    _Setting(
        "heartbeat_interval_s", _to_float, ("--heartbeat-interval",), "SECONDS",
        "how often a node tells each peer it is alive", "1", "cluster",
    ),
    _Setting(
        "down_timeout_s", _to_float, ("--down-timeout",), "SECONDS",
        "a peer not heard from this long is down", "6", "cluster",
    ),
    _Setting(
        "write_timeout_s", _to_float, ("--write-timeout",), "SECONDS",
        "a replicated append not confirmed this long gets TIMEOUT (outcome unknown)", "5",
        "cluster",
    ),
    _Setting(
        "mdns", _to_bool, ("--mdns",), "true|false",
        "discover peers with mDNS on the LAN", "true when --node-count > 1, else false",
        "cluster", "network.mdns",
    ),
    _Setting(
        "peers", _to_peers, ("--peer",), "MULTIADDR",
        "bootstrap peer address; repeat for several (SIERRA_PEERS: comma-separated)", "none",
        "cluster",
    ),
    _Setting(
        "replication_factor", _to_int, ("--replication-factor",), "N",
        "replicas per partition, 1..node-count", "min(node-count, 3)", "cluster",
        "replication.factor",
    ),
    _Setting(
        "strict_versioning", _to_bool, ("--strict-versioning",), "true|false",
        "refuse appends without an exact expected version", "false", "protocol",
        "append.strict_versioning",
    ),
    _Setting(
        "max_request_bytes", _to_size, ("--max-request-size",), "SIZE",
        "largest RESP request accepted", format_size(DEFAULT_MAX_REQUEST_BYTES), "protocol",
    ),
    _Setting(
        "max_count", _to_int, ("--max-count",), "N",
        "upper clamp for a read's COUNT", "10000", "protocol",
    ),
    _Setting(
        "default_count", _to_int, ("--default-count",), "N",
        "COUNT of a read that gives none", "100", "protocol",
    ),
    _Setting(
        "default_window", _to_int, ("--default-window",), "N",
        "unacknowledged events per subscription without a WINDOW", "1000", "protocol",
    ),
    _Setting(
        "max_clients", _to_int, ("--max-clients",), "N",
        "most simultaneous client connections", "10000", "protocol",
    ),
    _Setting(
        "max_blocked_clients", _to_int, ("--max-blocked-clients",), "N",
        "most clients waiting in a BLOCK read at once", "1000", "protocol",
    ),
    _Setting(
        "request_timeout_s", _to_float, ("--request-timeout",), "SECONDS",
        "close a client whose started request stays incomplete this long", "30",
        "protocol",
    ),
    _Setting(
        "log_level", _to_log_level, ("-l", "--log-level"), "LEVEL",
        f"log level: {', '.join(LOG_LEVELS)}", "info", "logging",
    ),
)
# fmt: on

_BY_NAME = {setting.name: setting for setting in _SETTINGS}
# Every accepted TOML key (flat field name or the reference's section key) -> field name.
_TOML_KEYS: dict[str, str] = {s.name: s.name for s in _SETTINGS} | {
    s.section_key: s.name for s in _SETTINGS if s.section_key is not None
}
_GROUP_TITLES = {
    "storage": "storage",
    "network": "client network and security",
    "cluster": "cluster",
    "protocol": "protocol and limits",
    "logging": "logging",
}

assert {s.name for s in _SETTINGS} == {
    f.name for f in dataclasses.fields(Config) if f.name != "config_path"
}, "every Config field needs exactly one setting"


class _ArgumentParser(argparse.ArgumentParser):
    """Turns argparse's own errors into ConfigError instead of printing usage and exiting 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message.replace("\n", " "))


def build_arg_parser() -> argparse.ArgumentParser:
    """The `sierradb` command line; values stay strings here and are converted by load_config."""
    parser = _ArgumentParser(
        prog="sierradb",
        description=(
            "A distributed event store for event sourcing that speaks RESP. Settings come from "
            "flags, then SIERRA_<SETTING> environment variables (e.g. SIERRA_CLIENT_ADDRESS), "
            "then the TOML file given with --config, then the defaults shown."
        ),
        allow_abbrev=False,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help=f"TOML configuration file (also {CONFIG_PATH_ENV}) (default: none)",
    )
    groups = {name: parser.add_argument_group(title) for name, title in _GROUP_TITLES.items()}
    for setting in _SETTINGS:
        if not setting.flags:
            continue  # settable from the environment and the file only (a secret)
        groups[setting.group].add_argument(
            *setting.flags,
            dest=setting.name,
            metavar=setting.metavar,
            action="append" if setting.name == "peers" else "store",
            help=f"{setting.help} (default: {setting.default_text})".replace("%", "%%"),
        )
    return parser


def _convert(setting: _Setting, value: object, source: str) -> object:
    try:
        return setting.convert(value)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}", key=setting.name) from error


def _flatten(table: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in table.items():
        dotted = prefix + key
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _read_toml(path: Path) -> dict[str, tuple[object, str]]:
    """The file's settings as field name -> (raw value, source label)."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        message = str(error).replace("\n", " ")
        raise ConfigError(f"config file {path} is not valid TOML: {message}") from error
    flat = _flatten(document)
    unknown = sorted(key for key in flat if key not in _TOML_KEYS)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ConfigError(f"unknown key{plural} in config file {path}: {', '.join(unknown)}")
    values: dict[str, tuple[object, str]] = {}
    key_of: dict[str, str] = {}
    for key, value in flat.items():
        name = _TOML_KEYS[key]
        if name in key_of:
            raise ConfigError(
                f"config file {path} sets {name} twice: as {key_of[name]} and as {key}"
            )
        key_of[name] = key
        values[name] = (value, f"{key} in {path}")
    return values


def _read_secret_file(values: dict[str, object], raw: dict[str, tuple[object, str]]) -> None:
    """Put the content of cluster_secret_file into cluster_secret (never both)."""
    path = values.get("cluster_secret_file")
    if path is None:
        return
    assert isinstance(path, Path)
    source = raw["cluster_secret_file"][1]
    if values.get("cluster_secret") is not None:
        raise ConfigError(
            f"cluster_secret_file ({source}) and cluster_secret "
            f"({raw['cluster_secret'][1]}) are both set; give the secret one way",
            key="cluster_secret_file",
        )
    try:
        secret = path.read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"cannot read the cluster secret file {path} ({source}): {reason}",
            key="cluster_secret_file",
        ) from error
    values["cluster_secret"] = secret


def load_config(argv: list[str], environ: Mapping[str, str]) -> Config:
    """Build the Config from command-line arguments (without the program name), environment
    variables and the TOML file they name.

    Raises ConfigError (one-line message) for anything invalid, argparse's errors included;
    `--help` prints the help and raises SystemExit(0) as argparse does.
    """
    arguments = build_arg_parser().parse_args(argv)

    config_text = arguments.config or environ.get(CONFIG_PATH_ENV) or None
    config_path = Path(config_text) if config_text is not None else None
    raw: dict[str, tuple[object, str]] = {}
    if config_path is not None:
        raw.update(_read_toml(config_path))
    for setting in _SETTINGS:
        text = environ.get(setting.env_var)
        if text:
            raw[setting.name] = (text, setting.env_var)
    for setting in _SETTINGS:
        value = getattr(arguments, setting.name, None)
        if value is not None:
            raw[setting.name] = (value, "/".join(setting.flags))

    values = {
        name: _convert(_BY_NAME[name], value, source) for name, (value, source) in raw.items()
    }
    _read_secret_file(values, raw)
    node_count = values.get("node_count", 1)
    assert isinstance(node_count, int)
    values.setdefault("mdns", node_count > 1)
    values.setdefault("replication_factor", min(node_count, DEFAULT_MAX_REPLICATION_FACTOR))
    client_address = values.get(
        "client_address", Config.__dataclass_fields__["client_address"].default
    )
    assert isinstance(client_address, str)
    values.setdefault("http_address", default_http_address(client_address))
    try:
        return Config(config_path=config_path, **values)  # type: ignore[arg-type]
    except ConfigError as error:
        if error.key is None or error.key not in raw:
            raise
        source = raw[error.key][1]
        raise ConfigError(f"{error} (from {source})", key=error.key) from error
