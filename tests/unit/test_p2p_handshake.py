"""The link handshake as a sans-I/O state machine: both ends, in lock step."""

from __future__ import annotations

import dataclasses

import pytest

from sierradb.p2p.errors import FrameError
from sierradb.p2p.handshake import Handshake, mismatch, proof_mac
from sierradb.p2p.messages import (
    PROTOCOL_VERSION,
    Hello,
    Proof,
    Ready,
    Refuse,
    decode_message,
    encode_message,
)

A, B = "12D3KooWAAAA", "12D3KooWBBBB"


def hello(**changes: object) -> Hello:
    base = Hello(
        PROTOCOL_VERSION, "sierradb", None, "a" * 32, 0, 3, 3, 32, 4, 1, 1, "127.0.0.1:9090",
        "0.1.0", ["/ip4/10.0.0.1/tcp/7000"], b"\x01" * 16, False, 7001, b"\x02" * 32,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def run(a: Handshake, b: Handshake) -> None:
    """Deliver each end's messages to the other until neither has anything to say."""
    to_b, to_a = a.start(), b.start()
    while to_a or to_b:
        next_b = [m for msg in to_b for m in b.receive(msg)]
        next_a = [m for msg in to_a for m in a.receive(msg)]
        to_a, to_b = next_b, next_a


def pair(
    a_hello: Hello, b_hello: Hello, a_secret: bytes | None = None, b_secret: bytes | None = None
) -> tuple[Handshake, Handshake]:
    a = Handshake(a_hello, a_secret, A, B)
    b = Handshake(b_hello, b_secret, B, A)
    run(a, b)
    return a, b


def test_matching_nodes_accept_each_other() -> None:
    a, b = pair(hello(), hello(node_index=1, nonce=b"\x02" * 16))
    assert a.accepted and b.accepted
    assert a.remote is not None and a.remote.node_index == 1


def test_matching_secrets_are_accepted() -> None:
    a, b = pair(
        hello(secret_set=True),
        hello(node_index=1, nonce=b"\x02" * 16, secret_set=True),
        b"s3cret",
        b"s3cret",
    )
    assert a.accepted and b.accepted


def test_different_secrets_are_refused_on_both_ends() -> None:
    a, b = pair(hello(secret_set=True), hello(node_index=1, secret_set=True), b"s3cret", b"other")
    assert not a.accepted and not b.accepted
    assert a.refusal is not None and a.refusal.field_name == "cluster_secret"
    assert b.refusal is not None and b.refusal.field_name == "cluster_secret"


def test_a_secret_on_one_side_only_is_refused() -> None:
    a, b = pair(hello(secret_set=True), hello(node_index=1), b"s3cret", None)
    assert a.refusal is not None and "only this node has a cluster secret" in a.refusal.reason
    assert b.refusal is not None and "only the peer has a cluster secret" in b.refusal.reason


def test_the_secret_never_crosses_the_wire() -> None:
    a = Handshake(hello(secret_set=True), b"s3cret", A, B)
    sent = a.start() + a.receive(hello(node_index=1, secret_set=True))
    assert all(b"s3cret" not in repr(m).encode() for m in sent)
    proof = sent[-1]
    assert isinstance(proof, Proof)
    assert proof.mac == proof_mac(b"s3cret", b"\x01" * 16, A, B)


def test_a_replayed_proof_for_another_nonce_is_refused() -> None:
    b = Handshake(hello(node_index=1, secret_set=True), b"s3cret", B, A)
    b.start()
    b.receive(hello(secret_set=True))
    stale = proof_mac(b"s3cret", b"\x09" * 16, A, B)  # a proof made for another challenge
    reply = b.receive(Proof(stale))
    assert isinstance(reply[0], Refuse)
    assert not b.accepted


@pytest.mark.parametrize(
    "field, value",
    [
        ("cluster_name", "other"),
        ("node_count", 4),
        ("replication_factor", 2),
        ("partitions", 64),
        ("buckets", 8),
        ("placement_version", 2),
        ("protocol_version", PROTOCOL_VERSION + 1),
        ("cluster_id", "f" * 32),
    ],
)
def test_a_mismatch_is_refused_naming_the_field_and_both_values(field: str, value: object) -> None:
    local = hello(cluster_id="e" * 32)
    remote = hello(node_index=1, **{field: value})
    if field != "cluster_id":
        remote = dataclasses.replace(remote, cluster_id="e" * 32)
    problem = mismatch(local, remote)
    assert problem is not None and problem.field_name == field
    assert str(getattr(local, field)) in problem.reason and str(value) in problem.reason


def test_an_unformed_node_may_meet_a_formed_cluster() -> None:
    assert mismatch(hello(cluster_id="e" * 32), hello(node_index=1)) is None
    assert mismatch(hello(), hello(node_index=1, cluster_id="e" * 32)) is None


def test_a_peer_claiming_this_nodes_own_index_is_refused() -> None:
    a, b = pair(hello(), hello(nonce=b"\x02" * 16))
    assert a.refusal is not None and a.refusal.field_name == "node_index"
    assert b.refusal is not None and b.refusal.field_name == "node_index"


def test_a_node_index_outside_the_cluster_is_refused() -> None:
    problem = mismatch(hello(), hello(node_index=3))
    assert problem is not None and "outside 0..2" in problem.reason


def test_the_peers_refusal_is_recorded_as_coming_from_the_peer() -> None:
    a = Handshake(hello(), None, A, B)
    a.start()
    a.receive(Refuse("node_count", "node_count: this node has 4, the peer 3"))
    assert a.refusal is not None and a.refusal.by_peer
    assert a.refusal.describe() == "refused by peer: node_count: this node has 4, the peer 3"


def test_the_refusal_sent_is_worded_for_the_peer() -> None:
    a = Handshake(hello(), None, A, B)
    a.start()
    (refuse,) = a.receive(hello(node_index=1, node_count=4))
    assert isinstance(refuse, Refuse)
    assert refuse.reason == "node_count: the peer has 3, this node 4"


@pytest.mark.parametrize("first", [Ready(), Proof(b"x" * 32)])
def test_messages_out_of_order_end_the_handshake(first: object) -> None:
    a = Handshake(hello(), None, A, B)
    a.start()
    reply = a.receive(first)  # type: ignore[arg-type]
    assert isinstance(reply[0], Refuse) and a.refusal is not None
    assert a.refusal.field_name == "protocol"


def test_a_second_hello_ends_the_handshake() -> None:
    a = Handshake(hello(), None, A, B)
    a.start()
    a.receive(hello(node_index=1))
    a.receive(hello(node_index=2))
    assert a.refusal is not None and not a.accepted


def test_nothing_is_answered_once_the_handshake_ended() -> None:
    a = Handshake(hello(), None, A, B)
    a.start()
    a.receive(Refuse("x", "y"))
    assert a.receive(Refuse("x", "y")) == []
    assert a.receive(hello(node_index=1)) == []


def test_a_hello_of_the_previous_version_is_refused_for_its_version_not_its_shape() -> None:
    # Version 1 had no data link fields; decoding it must reach the version check.
    old = encode_message(dataclasses.replace(hello(node_index=1), protocol_version=1))
    del old["data_port"], old["data_secret"]
    remote = decode_message(old)
    problem = mismatch(hello(), remote)  # type: ignore[arg-type]
    assert problem is not None and problem.field_name == "protocol_version"
    assert problem.reason == f"protocol_version: this node speaks {PROTOCOL_VERSION}, the peer 1"
    current = encode_message(hello(node_index=1))
    del current["data_port"]
    with pytest.raises(FrameError, match="data_port: missing"):  # this version must send it
        decode_message(current)
