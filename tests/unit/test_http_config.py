"""The HTTP port's settings: on by default next to the client port, `none` turns it off, and
without a password (protected mode) it may only bind a loopback address."""

from __future__ import annotations

import pytest

from sierradb.node.config import ConfigError, default_http_address, load_config


def load(*argv: str, **environ: str):
    return load_config(list(argv), environ)


@pytest.mark.parametrize(
    "client, http",
    [
        ("127.0.0.1:9090", "127.0.0.1:9091"),
        ("127.0.0.2:7000", "127.0.0.2:7001"),
        ("[::1]:9090", "[::1]:9091"),
        ("0.0.0.0:9090", "127.0.0.1:9091"),  # never exposed because clients come from outside
        ("10.1.2.3:9090", "127.0.0.1:9091"),
        ("127.0.0.1:0", "127.0.0.1:0"),  # a kernel-chosen client port: so is the HTTP port
        ("127.0.0.1:65535", "127.0.0.1:0"),
        ("nonsense", None),
    ],
)
def test_default_http_address_is_next_to_the_client_port(client, http):
    assert default_http_address(client) == http


def test_the_http_port_is_on_by_default_and_follows_the_client_address():
    assert load().http_address == "127.0.0.1:9091"
    assert load("--client-address", "127.0.0.1:7000").http_address == "127.0.0.1:7001"
    assert load(SIERRA_CLIENT_ADDRESS="0.0.0.0:7000").http_address == "127.0.0.1:7001"


@pytest.mark.parametrize("value", ["none", "off", "NONE"])
def test_none_turns_it_off(value):
    assert load("--http-address", value).http_address is None
    assert load(SIERRA_HTTP_ADDRESS=value).http_address is None


def test_an_explicit_address_wins():
    assert load("--http-address", "127.0.0.1:8000").http_address == "127.0.0.1:8000"
    assert load(SIERRA_HTTP_ADDRESS="localhost:8000").http_address == "localhost:8000"


@pytest.mark.parametrize("address", ["0.0.0.0:9091", "10.0.0.1:80", "[::]:9091", "db.example:80"])
def test_protected_mode_refuses_a_non_loopback_address_without_a_password(address):
    with pytest.raises(ConfigError) as caught:
        load("--http-address", address)
    message = str(caught.value)
    assert message.startswith(f"http_address {address} is not a loopback address")
    assert "(from --http-address)" in message and "\n" not in message
    assert load("--http-address", address, "--requirepass", "pw").http_address == address
    assert load("--http-address", address, "--protected-mode", "no").http_address == address


@pytest.mark.parametrize("address", ["127.0.0.5:1", "[::1]:1", "localhost:1"])
def test_loopback_addresses_need_no_password(address):
    assert load("--http-address", address).http_address == address
