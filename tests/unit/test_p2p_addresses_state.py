"""Cluster addresses (listen, advertised, peers) and the cluster state kept in the data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sierradb.p2p.addresses import (
    PeerAddress,
    advertised_addresses,
    parse_listen_address,
    parse_peer_address,
)
from sierradb.p2p.cluster_state import STATE_FILE, ClusterState
from sierradb.p2p.errors import AddressError, ClusterStateError
from sierradb.p2p.member_table import MemberTable, RegistrySlot

PEER_ID = "12D3KooWDGQJifMFC5FLxpzAqAwcZ4RM9BN8WSKaYeHTEizVWBz5"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/ip4/0.0.0.0/tcp/7000", PeerAddress("ip4", "0.0.0.0", 7000)),
        ("10.0.0.1:7000", PeerAddress("ip4", "10.0.0.1", 7000)),
        ("[::1]:7000", PeerAddress("ip6", "::1", 7000)),
        ("/ip6/::/tcp/0", PeerAddress("ip6", "::", 0)),
    ],
)
def test_listen_addresses(text: str, expected: PeerAddress) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(
    "text",
    ["localhost:7000", "/dns4/x/tcp/7000", f"/ip4/1.2.3.4/tcp/7000/p2p/{PEER_ID}", "1.2.3.4"],
)
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        parse_listen_address(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/ip4/10.0.0.2/tcp/7000", PeerAddress("ip4", "10.0.0.2", 7000)),
        (f"/ip4/10.0.0.2/tcp/7000/p2p/{PEER_ID}", PeerAddress("ip4", "10.0.0.2", 7000, PEER_ID)),
        ("/dns4/tasks.sierradb/tcp/7000", PeerAddress("dns4", "tasks.sierradb", 7000)),
        ("/dns/node_0.local/tcp/1", PeerAddress("dns", "node_0.local", 1)),
        ("/ip6/fe80::1/tcp/7000", PeerAddress("ip6", "fe80::1", 7000)),
    ],
)
def test_peer_addresses(text: str, expected: PeerAddress) -> None:
    assert parse_peer_address(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.2:7000",
        "/ip4/10.0.0.2/udp/7000",
        "/ip4/10.0.0.2/tcp/70000",
        "/ip4/10.0.0.2/tcp/x",
        "/ip4/::1/tcp/7000",
        "/ip6/10.0.0.1/tcp/7000",
        "/ip4/10.0.0.2/tcp/7000/p2p/not-a-peer-id!",
        "/ip4/10.0.0.2/tcp/7000/ws",
        "/quic/1/tcp/2",
        "/dns4/-bad-/tcp/7000",
    ],
)
def test_bad_peer_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        parse_peer_address(text)


def test_a_concrete_listen_address_is_advertised_as_is() -> None:
    listen = parse_listen_address("/ip4/127.0.0.2/tcp/0")
    assert advertised_addresses(listen, 7123) == ["/ip4/127.0.0.2/tcp/7123"]


def test_a_wildcard_is_never_advertised() -> None:
    listen = parse_listen_address("/ip4/0.0.0.0/tcp/7000")
    advertised = advertised_addresses(listen, 7000)
    assert advertised, "at least loopback"
    assert all("0.0.0.0" not in a for a in advertised)
    assert all(a.endswith("/tcp/7000") for a in advertised)


# ----------------------------------------------------------------------------- cluster state
def start(path: Path, count: int = 3, index: int = 1, rf: int = 3) -> ClusterState:
    return ClusterState.start(str(path), node_count=count, node_index=index, replication_factor=rf)


def test_every_start_is_a_new_durable_incarnation(tmp_path: Path) -> None:
    assert start(tmp_path).incarnation == 1
    assert start(tmp_path).incarnation == 2
    assert json.loads((tmp_path / STATE_FILE).read_text())["incarnation"] == 2


@pytest.mark.parametrize("count, index, rf", [(4, 1, 3), (3, 2, 3), (3, 1, 2), (1, 0, 1)])
def test_a_data_dir_refuses_another_cluster_shape(
    tmp_path: Path, count: int, index: int, rf: int
) -> None:
    start(tmp_path)
    with pytest.raises(ClusterStateError, match="changing a cluster's shape is not supported"):
        start(tmp_path, count, index, rf)


def test_a_single_nodes_data_dir_cannot_join_a_cluster(tmp_path: Path) -> None:
    start(tmp_path, 1, 0, 1)
    with pytest.raises(ClusterStateError, match="node 0 of a 1-node cluster"):
        start(tmp_path, 3, 0, 3)


def test_cluster_id_and_registry_survive_a_restart(tmp_path: Path) -> None:
    state = start(tmp_path)
    table = MemberTable("me")
    table.adopt_cluster_id("c" * 32)
    table.record_first_seen(0, "a" * 32)
    table.admit(2, "b" * 32)
    assert state.update_from(table)
    state.save()
    assert not state.update_from(table)
    again = start(tmp_path)
    assert again.cluster_id == "c" * 32
    assert again.registry == {
        0: RegistrySlot(0, frozenset({"a" * 32})),
        2: RegistrySlot(0, frozenset({"b" * 32})),
    }


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"format": 1}', b'{"format": 9}'])
def test_a_damaged_state_file_is_refused_clearly(tmp_path: Path, content: bytes) -> None:
    (tmp_path / STATE_FILE).write_bytes(content)
    with pytest.raises(ClusterStateError):
        start(tmp_path)
