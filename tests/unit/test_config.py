"""Node configuration: sources and their precedence, value syntax, validation, --help."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from sierradb.node.config import (
    MAX_SYNC_WINDOW_S,
    Config,
    ConfigError,
    build_arg_parser,
    format_size,
    load_config,
    parse_bool,
    parse_host_port,
    parse_size_bytes,
    parse_sync_window_s,
)

WriteToml = Callable[[str], Path]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@pytest.fixture
def toml_file(tmp_path: Path) -> WriteToml:
    def write(text: str) -> Path:
        path = tmp_path / "sierra.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def load(*argv: str, **environ: str) -> Config:
    return load_config(list(argv), environ)


def load_error(*argv: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(list(argv), environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- defaults ------------------------------------------------------------------------------------


def test_defaults() -> None:
    config = load()
    assert config == Config()
    assert config.dir == Path("./data")
    assert config.client_address == "127.0.0.1:9090"
    assert config.http_address == "127.0.0.1:9091"  # on, next to the client port
    assert (config.node_count, config.node_index) == (1, 0)
    assert config.cluster_address == "/ip4/0.0.0.0/tcp/7000"
    assert config.mdns is False
    assert config.peers == ()
    assert config.requirepass is None
    assert config.protected_mode is True
    assert (config.partitions, config.buckets) == (32, 4)
    assert config.segment_size_bytes == 256 * MIB
    assert config.replication_factor == 1
    assert config.sync_policy == "always"
    assert config.strict_versioning is False
    assert config.max_request_bytes == 64 * MIB
    assert (config.max_count, config.default_count, config.default_window) == (10_000, 100, 1000)
    assert config.max_clients == 10_000
    assert config.max_blocked_clients == 1000
    assert config.cache_capacity_bytes == 256 * MIB
    assert config.stream_cache_entries == 100_000
    assert config.checkpoint_interval_bytes == 16 * MIB
    assert config.log_level == "info"
    assert config.config_path is None


def test_config_is_frozen() -> None:
    config = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.partitions = 8  # type: ignore[misc]


@pytest.mark.parametrize(("node_count", "mdns"), [(1, False), (2, True), (5, True)])
def test_mdns_defaults_on_only_for_more_than_one_node(node_count: int, mdns: bool) -> None:
    assert load("--node-count", str(node_count)).mdns is mdns


def test_mdns_explicit_value_beats_node_count_default() -> None:
    assert load("-n", "3", "--mdns", "false").mdns is False
    assert load("--mdns", "true").mdns is True


def test_mdns_default_follows_node_count_from_file(toml_file: WriteToml) -> None:
    path = toml_file("[node]\ncount = 3\nindex = 1\n")
    assert load("--config", str(path)).mdns is True


@pytest.mark.parametrize(("node_count", "factor"), [(1, 1), (2, 2), (3, 3), (4, 3), (9, 3)])
def test_replication_factor_defaults_to_node_count_capped_at_3(
    node_count: int, factor: int
) -> None:
    assert load("-n", str(node_count)).replication_factor == factor


def test_replication_factor_explicit() -> None:
    assert load("-n", "5", "--replication-factor", "5").replication_factor == 5


# --- precedence ----------------------------------------------------------------------------------


def test_flag_beats_env_beats_file_beats_default(toml_file: WriteToml) -> None:
    path = toml_file(
        'dir = "/from/file"\n'
        'client_address = "127.0.0.1:1001"\n'
        "partitions = 16\n"
        "max_count = 500\n"
        'log_level = "debug"\n'
    )
    config = load(
        "--config",
        str(path),
        "--dir",
        "/from/flag",
        SIERRA_DIR="/from/env",
        SIERRA_CLIENT_ADDRESS="127.0.0.1:2002",
        SIERRA_MAX_COUNT="700",
    )
    assert config.dir == Path("/from/flag")  # flag > env > file
    assert config.client_address == "127.0.0.1:2002"  # env > file
    assert config.max_count == 700  # env > file
    assert config.partitions == 16  # file > default
    assert config.log_level == "debug"  # file > default
    assert config.buckets == 4  # default
    assert config.config_path == path


def test_flag_beats_env_for_numbers_and_booleans() -> None:
    config = load(
        "--node-count",
        "3",
        "--strict-versioning",
        "false",
        "--segment-size",
        "1MiB",
        SIERRA_NODE_COUNT="5",
        SIERRA_STRICT_VERSIONING="true",
        SIERRA_SEGMENT_SIZE_BYTES="2MiB",
    )
    assert config.node_count == 3
    assert config.strict_versioning is False
    assert config.segment_size_bytes == 1 * MIB


def test_env_vars_map_to_fields() -> None:
    config = load(
        SIERRA_DIR="/env/dir",
        SIERRA_CLIENT_ADDRESS="0.0.0.0:7000",
        SIERRA_NODE_COUNT="3",
        SIERRA_NODE_INDEX="2",
        SIERRA_SEGMENT_SIZE_BYTES="64MiB",
        SIERRA_STRICT_VERSIONING="yes",
        SIERRA_PEERS="/ip4/10.0.0.1/tcp/7000, /dns4/tasks.sierradb/tcp/7000",
        SIERRA_REQUIREPASS="secret",
        SIERRA_SYNC_POLICY="2ms",
        SIERRA_HTTP_ADDRESS="127.0.0.1:8080",
    )
    assert config.dir == Path("/env/dir")
    assert config.client_address == "0.0.0.0:7000"
    assert (config.node_count, config.node_index) == (3, 2)
    assert config.segment_size_bytes == 64 * MIB
    assert config.strict_versioning is True
    assert config.peers == ("/ip4/10.0.0.1/tcp/7000", "/dns4/tasks.sierradb/tcp/7000")
    assert config.requirepass == "secret"
    assert config.sync_policy == "2ms"
    assert config.http_address == "127.0.0.1:8080"


def test_empty_env_var_counts_as_unset() -> None:
    assert load(SIERRA_PARTITIONS="").partitions == 32


def test_unrelated_env_vars_are_ignored() -> None:
    assert load(SIERRA_SOMETHING_ELSE="x", HOME="/root") == Config()


def test_config_path_from_env(toml_file: WriteToml) -> None:
    path = toml_file("partitions = 8\n")
    config = load(SIERRA_CONFIG=str(path))
    assert config.partitions == 8
    assert config.config_path == path


def test_config_flag_beats_config_env(toml_file: WriteToml, tmp_path: Path) -> None:
    path = toml_file("partitions = 8\n")
    config = load("-c", str(path), SIERRA_CONFIG=str(tmp_path / "missing.toml"))
    assert config.partitions == 8


def test_short_flags() -> None:
    config = load("-d", "/d", "-n", "2", "-i", "1", "-l", "warning")
    assert (config.dir, config.node_count, config.node_index) == (Path("/d"), 2, 1)
    assert config.log_level == "warning"


def test_peer_flag_is_repeatable_and_replaces_env_list() -> None:
    config = load(
        "--peer", "/ip4/10.0.0.1/tcp/7000", "--peer", "/ip4/10.0.0.2/tcp/7000",
        SIERRA_PEERS="/ip4/10.9.9.9/tcp/7000",
    )  # fmt: skip
    assert config.peers == ("/ip4/10.0.0.1/tcp/7000", "/ip4/10.0.0.2/tcp/7000")


# --- the TOML file -------------------------------------------------------------------------------


def test_toml_reference_section_keys(toml_file: WriteToml) -> None:
    path = toml_file(
        """
        [network]
        client_address = "0.0.0.0:9191"
        cluster_address = "0.0.0.0:7000"
        mdns = false

        [node]
        count = 3
        index = 2

        [partition]
        count = 64

        [bucket]
        count = 8

        [segment]
        size_bytes = 1_048_576

        [replication]
        factor = 2

        [append]
        strict_versioning = true

        [cache]
        capacity_bytes = "16MiB"
        """
    )
    config = load("--config", str(path))
    assert config.client_address == "0.0.0.0:9191"
    assert config.cluster_address == "0.0.0.0:7000"
    assert config.mdns is False
    assert (config.node_count, config.node_index) == (3, 2)
    assert (config.partitions, config.buckets) == (64, 8)
    assert config.segment_size_bytes == 1 * MIB
    assert config.replication_factor == 2
    assert config.strict_versioning is True
    assert config.cache_capacity_bytes == 16 * MIB


def test_toml_flat_keys(toml_file: WriteToml) -> None:
    path = toml_file(
        """
        dir = "/var/lib/sierradb"
        http_address = "127.0.0.1:8080"
        peers = ["/ip4/10.0.0.1/tcp/7000"]
        requirepass = "pw"
        protected_mode = false
        segment_size_bytes = "512KiB"
        sync_policy = "NONE"
        max_request_bytes = 1048576
        max_clients = 5
        default_count = 10
        default_window = 20
        stream_cache_entries = 0
        log_level = "WARN"
        """
    )
    config = load("-c", str(path))
    assert config.dir == Path("/var/lib/sierradb")
    assert config.http_address == "127.0.0.1:8080"
    assert config.peers == ("/ip4/10.0.0.1/tcp/7000",)
    assert config.requirepass == "pw"
    assert config.protected_mode is False
    assert config.segment_size_bytes == 512 * KIB
    assert config.sync_policy == "none"
    assert config.max_request_bytes == 1 * MIB
    assert (config.max_clients, config.default_count, config.default_window) == (5, 10, 20)
    assert config.stream_cache_entries == 0
    assert config.log_level == "warning"


def test_checkpoint_interval_from_each_source(toml_file: WriteToml) -> None:
    path = toml_file('checkpoint_interval_bytes = "1MiB"\n')
    assert load("-c", str(path)).checkpoint_interval_bytes == 1 * MIB
    from_env = load("-c", str(path), SIERRA_CHECKPOINT_INTERVAL_BYTES="2MiB")
    assert from_env.checkpoint_interval_bytes == 2 * MIB
    from_flag = load(
        "-c", str(path), "--checkpoint-interval", "64KiB", SIERRA_CHECKPOINT_INTERVAL_BYTES="2MiB"
    )
    assert from_flag.checkpoint_interval_bytes == 64 * KIB


def test_storage_defaults_are_the_engines_own() -> None:
    # One definition of each limit: the node runs what Store.open (and its benchmark) defaults to.
    import inspect

    from sierradb.storage import Store

    defaults = {name: p.default for name, p in inspect.signature(Store.open).parameters.items()}
    config = Config()
    assert defaults["stream_cache_entries"] == config.stream_cache_entries
    assert defaults["checkpoint_interval_bytes"] == config.checkpoint_interval_bytes
    assert defaults["cache_capacity_bytes"] == config.cache_capacity_bytes


def test_toml_unknown_key_is_an_error_naming_it(toml_file: WriteToml) -> None:
    path = toml_file("partitions = 8\n[flush]\ninterval_ms = 5\n")
    message = load_error("--config", str(path))
    assert "unknown key" in message
    assert "flush.interval_ms" in message


def test_toml_unknown_top_level_key(toml_file: WriteToml) -> None:
    assert "replication_factr" in load_error("-c", str(toml_file("replication_factr = 1\n")))


def test_toml_same_setting_twice_is_an_error(toml_file: WriteToml) -> None:
    path = toml_file("partitions = 8\n[partition]\ncount = 16\n")
    message = load_error("-c", str(path))
    assert "partitions" in message and "partition.count" in message


def test_toml_wrong_type_names_the_key(toml_file: WriteToml) -> None:
    message = load_error("-c", str(toml_file("[partition]\ncount = true\n")))
    assert "partition.count" in message
    assert "integer" in message


def test_toml_syntax_error_is_one_line(toml_file: WriteToml) -> None:
    path = toml_file("partitions = = 8\n")
    assert "not valid TOML" in load_error("-c", str(path))


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = load_error("-c", str(missing))
    assert "cannot read config file" in message and str(missing) in message


def test_validation_error_names_the_file_key(toml_file: WriteToml) -> None:
    path = toml_file("[bucket]\ncount = 0\n")
    message = load_error("-c", str(path))
    assert message.startswith("buckets must be in 1..partitions")
    assert f"bucket.count in {path}" in message


# --- value syntax --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size_bytes"),
    [
        ("0", 0),
        ("131072", 131072),
        ("512KiB", 512 * KIB),
        ("64MiB", 64 * MIB),
        ("64 mib", 64 * MIB),
        ("1GiB", GIB),
        ("1.5GiB", 3 * GIB // 2),
        ("2TiB", 2 * 1024 * GIB),
        ("100B", 100),
    ],
)
def test_parse_size_bytes(text: str, size_bytes: int) -> None:
    assert parse_size_bytes(text) == size_bytes


@pytest.mark.parametrize("text", ["", "MiB", "64MB", "1GB", "-1", "1.5", "0.1KiB", "1e6", "x"])
def test_parse_size_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size_bytes(text)


@pytest.mark.parametrize(
    ("size_bytes", "text"), [(64 * MIB, "64MiB"), (3 * KIB, "3KiB"), (1536, "1536")]
)
def test_format_size(size_bytes: int, text: str) -> None:
    assert format_size(size_bytes) == text
    assert parse_size_bytes(text) == size_bytes


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("No", False),
        ("0", False),
        ("off", False),
    ],
)
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "maybe", "2", "y"])
def test_parse_bool_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bool(text)


@pytest.mark.parametrize(
    ("flag", "text", "value"),
    [
        ("--strict-versioning", "yes", True),
        ("--strict-versioning", "0", False),
        ("--protected-mode", "no", False),
        ("--protected-mode", "1", True),
        ("--mdns", "false", False),
    ],
)
def test_bool_flags(flag: str, text: str, value: bool) -> None:
    config = load(flag, text)
    field_name = flag.removeprefix("--").replace("-", "_")
    assert getattr(config, field_name) is value


def test_bool_flag_rejects_garbage() -> None:
    message = load_error("--protected-mode", "maybe")
    assert message.startswith("--protected-mode:")


def test_integer_flag_rejects_garbage() -> None:
    assert load_error("--partitions", "many").startswith("--partitions: expected an integer")


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:9090", "127.0.0.1", 9090),
        ("localhost:0", "localhost", 0),
        ("[::1]:65535", "::1", 65535),
        ("tasks.sierradb:7000", "tasks.sierradb", 7000),
    ],
)
def test_parse_host_port(address: str, host: str, port: int) -> None:
    assert parse_host_port(address) == (host, port)


@pytest.mark.parametrize(
    "address", ["9090", ":9090", "host:", "host:65536", "host:-1", "::1:9090", "a b:1", "h:x"]
)
def test_parse_host_port_rejects(address: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(address)


@pytest.mark.parametrize(
    ("policy", "window_s"),
    [("always", 0.0), ("none", None), ("2ms", 0.002), ("500us", 0.0005), ("0.01s", 0.01)],
)
def test_parse_sync_window(policy: str, window_s: float | None) -> None:
    assert parse_sync_window_s(policy) == window_s


@pytest.mark.parametrize("policy", ["", "sometimes", "2", "2 minutes", "-1ms", "5s"])
def test_parse_sync_window_rejects(policy: str) -> None:
    with pytest.raises(ValueError):
        parse_sync_window_s(policy)


def test_sync_window_property() -> None:
    assert load("--sync", "5ms").sync_window_s == pytest.approx(0.005)
    assert load("--sync", "none").sync_window_s is None
    assert MAX_SYNC_WINDOW_S >= 0.005


def test_http_address_off() -> None:
    assert load("--http-address", "off", SIERRA_HTTP_ADDRESS="127.0.0.1:8080").http_address is None


# --- validation: one clear line each ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["--partitions", "0"], "partitions must be in 1..65535"),
        (["--partitions", "65536"], "partitions must be in 1..65535"),
        (["--buckets", "0"], "buckets must be in 1..partitions"),
        (["--partitions", "4", "--buckets", "5"], "buckets must be in 1..partitions (4)"),
        (["--segment-size", "64KiB"], "segment_size_bytes must be in 128KiB..10GiB"),
        (["--segment-size", "11GiB"], "segment_size_bytes must be in 128KiB..10GiB"),
        (["-n", "0"], "node_count must be in 1..64"),
        (["-n", "65"], "node_count must be in 1..64"),
        (["-n", "3", "-i", "3"], "node_index must be in 0..2"),
        (["-i", "-1"], "node_index must be in 0..0"),
        (["-n", "2", "--replication-factor", "3"], "replication_factor must be in 1..node_count"),
        (["--replication-factor", "0"], "replication_factor must be in 1..node_count"),
        (["--client-address", "localhost"], "client_address: invalid address"),
        (["--client-address", "h:70000"], "client_address: invalid address"),
        (["--cluster-address", "nope"], "cluster_address: cluster address 'nope': expected"),
        (["--cluster-address", "/dns4/x/tcp/7000"], "cluster_address: cluster address"),
        (["--cluster-address", "/ip4/1.2.3/tcp/7000"], "cluster_address: cluster address"),
        (["--cluster-address", "/ip4/0.0.0.0/udp/7000"], "cluster_address: cluster address"),
        (["--data-port", "65536"], "data_port must be in 0..65535 (0 picks a free port), got"),
        (["--data-port", "-1"], "data_port must be in 0..65535"),
        (["--cluster-name", "a b"], "cluster_name must be 1..64 letters"),
        (["--cluster-name", "x" * 65], "cluster_name must be 1..64 letters"),
        (["--heartbeat-interval", "0"], "heartbeat_interval_s must be positive"),
        (["--heartbeat-interval", "4"], "down_timeout_s (6.0) must be at least twice"),
        (["--down-timeout", "1.5"], "down_timeout_s (1.5) must be at least twice"),
        (["--write-timeout", "0"], "write_timeout_s must be positive"),
        (["--http-address", "h:p"], "http_address: invalid address"),
        (["--sync", "sometimes"], "invalid sync policy"),
        (["-n", "3", "--sync", "none"], "sync_policy none is refused with replication_factor 3"),
        (["--max-request-size", "0"], "max_request_bytes must be positive"),
        (["--max-count", "0"], "max_count must be positive"),
        (["--default-count", "0"], "default_count must be positive"),
        (["--max-clients", "-5"], "max_clients must be positive"),
        (["--max-blocked-clients", "0"], "max_blocked_clients must be positive"),
        (["--max-clients", "-5"], "max_clients must be positive"),
        (["--max-count", "50"], "default_count (100) must not exceed max_count (50)"),
        (["--cache-size", "-1"], "--cache-size: invalid size"),
        (["--stream-cache-entries", "-1"], "stream_cache_entries must not be negative"),
        (["--checkpoint-interval", "16383"], "checkpoint_interval_bytes must be in 16KiB..10GiB"),
        (["--checkpoint-interval", "11GiB"], "checkpoint_interval_bytes must be in 16KiB..10GiB"),
        (["--log-level", "loud"], "log_level must be one of"),
        (["--peer", "10.0.0.1:7000"], "peers: peer address '10.0.0.1:7000': expected"),
        (["--peer", "/ip4/10.0.0.1/tcp/7000/p2p/x"], "peers: peer address"),
        (["--peer", "/ip4/10.0.0.1/tcp/99999"], "peers: peer address"),
        (["--peer", "/ip5/10.0.0.1/tcp/7000"], "peers: peer address"),
        (["--peer", "/dns4/bad name/tcp/7000"], "peers: peer address"),
        (["--dir", ""], "-d/--dir: expected a non-empty path"),
        (["--requirepass", ""], None),  # empty means no password: accepted
    ],
)
def test_validation_errors(argv: list[str], start: str | None) -> None:
    if start is None:
        load_config(argv, {})
        return
    message = load_error(*argv)
    assert message.startswith(start), message


def test_validation_error_names_its_source() -> None:
    assert load_error("--partitions", "0").endswith("(from --partitions)")
    assert load_error(SIERRA_PARTITIONS="0").endswith("(from SIERRA_PARTITIONS)")


def test_sync_none_is_allowed_for_a_single_replica() -> None:
    assert load("-n", "3", "--replication-factor", "1", "--sync", "none").sync_policy == "none"


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError) as caught:
        Config(partitions=0)
    assert caught.value.key == "partitions"
    with pytest.raises(ConfigError):
        dataclasses.replace(Config(), buckets=64)


# --- argparse ------------------------------------------------------------------------------------


def test_unknown_flag_is_a_config_error() -> None:
    assert "unrecognized arguments: --bogus" in load_error("--bogus")


def test_abbreviated_flag_is_refused() -> None:
    assert "unrecognized arguments" in load_error("--partit", "8")


def test_flag_missing_its_value_is_a_config_error() -> None:
    assert "expected one argument" in load_error("--node-count")


ALL_FLAGS = [
    "--config",
    "--dir",
    "--client-address",
    "--http-address",
    "--node-count",
    "--node-index",
    "--cluster-address",
    "--data-port",
    "--cluster-name",
    "--cluster-secret-file",
    "--heartbeat-interval",
    "--down-timeout",
    "--write-timeout",
    "--mdns",
    "--peer",
    "--requirepass",
    "--protected-mode",
    "--partitions",
    "--buckets",
    "--segment-size",
    "--replication-factor",
    "--sync",
    "--strict-versioning",
    "--max-request-size",
    "--max-count",
    "--default-count",
    "--default-window",
    "--max-clients",
    "--max-blocked-clients",
    "--request-timeout",
    "--cache-size",
    "--stream-cache-entries",
    "--checkpoint-interval",
    "--log-level",
]


def test_help_exits_0_and_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        load_config(["--help"], {})
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sierradb")
    for flag in ALL_FLAGS:
        assert flag in out, flag
    assert out.count("(default:") == len(ALL_FLAGS)


def test_parser_knows_every_flag() -> None:
    parser = build_arg_parser()
    assert parser.prog == "sierradb"
    known = {option for action in parser._actions for option in action.option_strings}
    assert set(ALL_FLAGS) <= known


# --- describe and protected mode -----------------------------------------------------------------


def test_describe_lists_every_field_and_masks_the_password() -> None:
    config = load("--requirepass", "hunter2", "--peer", "/ip4/10.0.0.1/tcp/7000")
    lines = config.describe()
    assert all("=" in line for line in lines)
    keys = [line.split("=", 1)[0] for line in lines]
    assert keys == [item.name for item in dataclasses.fields(Config)]
    assert not any("hunter2" in line for line in lines)
    assert "requirepass=********" in lines
    assert "partitions=32" in lines
    assert "mdns=false" in lines
    assert "peers=/ip4/10.0.0.1/tcp/7000" in lines
    assert "hunter2" not in repr(config)


def test_describe_without_password() -> None:
    assert "requirepass=none" in load().describe()


def test_loopback_only_unless_password_or_protected_mode_off() -> None:
    assert load().loopback_only is True
    assert load("--requirepass", "pw").loopback_only is False
    assert load("--protected-mode", "no").loopback_only is False


# --- cluster settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "/ip4/0.0.0.0/tcp/7000",
        "/ip6/::/tcp/7000",
        "10.0.0.1:7000",
        "[::1]:7000",
        "/ip4/127.0.0.1/tcp/0",
    ],
)
def test_cluster_address_takes_a_multiaddr_or_host_port(address: str) -> None:
    assert load("--cluster-address", address).cluster_address == address


def test_the_data_port_is_a_free_one_unless_given() -> None:
    assert load().data_port == 0
    assert load("--data-port", "7100").data_port == 7100
    assert load(SIERRA_DATA_PORT="7101").data_port == 7101


@pytest.mark.parametrize(
    "peer",
    [
        "/ip4/10.0.0.1/tcp/7000",
        "/ip4/10.0.0.1/tcp/7000/p2p/12D3KooWDGQJifMFC5FLxpzAqAwcZ4RM9BN8WSKaYeHTEizVWBz5",
        "/ip6/fe80::1/tcp/7000",
        "/dns4/tasks.sierradb/tcp/7000",
        "/dns/node-0.local/tcp/7000",
    ],
)
def test_peers_take_ip_and_dns_multiaddrs_with_or_without_peer_id(peer: str) -> None:
    assert load("--peer", peer).peers == (peer,)


def test_cluster_secret_comes_from_the_environment_and_is_masked() -> None:
    config = load(SIERRA_CLUSTER_SECRET="s3cret")
    assert config.cluster_secret == "s3cret"
    assert "cluster_secret=********" in config.describe()
    assert "s3cret" not in repr(config)


def test_cluster_secret_has_no_flag() -> None:
    assert "unrecognized arguments" in load_error("--cluster-secret", "x")


def test_cluster_secret_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    config = load("--cluster-secret-file", str(path))
    assert config.cluster_secret == "s3cret"


def test_cluster_secret_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("a")
    message = load_error("--cluster-secret-file", str(path), SIERRA_CLUSTER_SECRET="b")
    assert "are both set" in message


def test_unreadable_cluster_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    message = load_error("--cluster-secret-file", str(tmp_path / "missing"))
    assert message.startswith("cannot read the cluster secret file"), message


def test_empty_cluster_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("\n")
    assert "cluster_secret must not be empty" in load_error("--cluster-secret-file", str(path))
