"""The handshake every peer link starts with, sans-I/O.

Theory of operation. Both ends speak at once: each sends ``Hello`` (its cluster name, cluster id,
member id, node index, the fixed cluster settings, incarnation, addresses and a fresh random
nonce). On the peer's ``Hello`` an end checks that the two nodes can belong to one cluster
(``mismatch``); if not, it sends ``Refuse`` naming the field and stops. Otherwise it proves that
it knows the cluster secret: ``Proof`` carries HMAC-SHA256(secret, context | peer's nonce |
prover's peer id | verifier's peer id). The secret itself never crosses the wire; the nonce makes
every proof fresh, and the peer ids (authenticated by Noise underneath) bind a proof to this
pair, so it cannot be replayed or relayed to a third node. Without a secret configured the HMAC
key is empty, which still proves nothing but keeps one code path; a node with a secret refuses a
node without one (``secret_set``). On a valid ``Proof`` an end sends ``Ready``; the handshake is
accepted once it has verified the peer's proof and received the peer's ``Ready``. Any message out
of this order, or a ``Refuse`` from the peer, ends it as refused.

Only the static facts are checked here. Whether the peer is a learner (a wiped data dir) or one
of two live nodes claiming one index is decided by the member table, which sees the whole
cluster.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .messages import PROTOCOL_VERSION, Hello, Message, Proof, Ready, Refuse

PROOF_CONTEXT = b"sierradb/cluster-proof/1"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a link was refused: the field, a readable reason, whether the peer said so, and
    whether it was only slow (a handshake that did not finish in time: retried at the usual
    backoff, not after a configuration fix's long wait)."""

    field_name: str
    reason: str
    by_peer: bool = False
    transient: bool = False

    def describe(self) -> str:
        return f"refused by peer: {self.reason}" if self.by_peer else self.reason


def proof_mac(secret: bytes, nonce: bytes, prover_peer_id: str, verifier_peer_id: str) -> bytes:
    message = b"|".join((PROOF_CONTEXT, nonce, prover_peer_id.encode(), verifier_peer_id.encode()))
    return hmac.new(secret, message, hashlib.sha256).digest()


def mismatch(local: Hello, remote: Hello) -> Refusal | None:
    """Why two nodes cannot be in one cluster, or None if they can (checked on both ends)."""
    if remote.protocol_version != local.protocol_version:
        return Refusal(
            "protocol_version",
            f"protocol_version: this node speaks {local.protocol_version}, "
            f"the peer {remote.protocol_version}",
        )
    if remote.cluster_name != local.cluster_name:
        return Refusal(
            "cluster_name",
            f"cluster_name: this node is in {local.cluster_name!r}, "
            f"the peer in {remote.cluster_name!r}",
        )
    if remote.secret_set != local.secret_set:
        where = "this node" if local.secret_set else "the peer"
        return Refusal("cluster_secret", f"cluster_secret: only {where} has a cluster secret")
    if local.cluster_id and remote.cluster_id and local.cluster_id != remote.cluster_id:
        return Refusal(
            "cluster_id",
            f"cluster_id: this node belongs to cluster {local.cluster_id}, the peer to "
            f"{remote.cluster_id} (two clusters with one name)",
        )
    for name in ("node_count", "replication_factor", "partitions", "buckets", "placement_version"):
        ours, theirs = getattr(local, name), getattr(remote, name)
        if ours != theirs:
            return Refusal(name, f"{name}: this node has {ours}, the peer {theirs}")
    if not 0 <= remote.node_index < local.node_count:
        return Refusal(
            "node_index",
            f"node_index: the peer claims {remote.node_index}, outside 0..{local.node_count - 1}",
        )
    if remote.node_index == local.node_index:
        return Refusal(
            "node_index",
            f"node_index: the peer claims {remote.node_index}, which is this node's own index",
        )
    return None


class Handshake:
    """One end of one link's handshake; feed it the peer's messages, send what it returns."""

    def __init__(
        self, local: Hello, secret: bytes | None, local_peer_id: str, remote_peer_id: str
    ) -> None:
        assert local.protocol_version == PROTOCOL_VERSION
        assert local.secret_set == (secret is not None)
        self.local = local
        self.secret = secret or b""
        self.local_peer_id = local_peer_id
        self.remote_peer_id = remote_peer_id
        self.remote: Hello | None = None
        self.refusal: Refusal | None = None
        self._proof_ok = False
        self._peer_ready = False

    @property
    def accepted(self) -> bool:
        return self.refusal is None and self._proof_ok and self._peer_ready

    @property
    def finished(self) -> bool:
        return self.refusal is not None or self.accepted

    def start(self) -> list[Message]:
        return [self.local]

    def receive(self, message: Message) -> list[Message]:
        if self.finished:
            return []  # the link is being closed (refused) or has moved past the handshake
        if isinstance(message, Refuse):
            self.refusal = Refusal(message.field_name, message.reason, by_peer=True)
            return []
        if isinstance(message, Hello) and self.remote is None:
            self.remote = message
            problem = mismatch(self.local, message)
            if problem is not None:
                self.refusal = problem
                return [Refuse(problem.field_name, _from_peer_view(problem.reason))]
            mac = proof_mac(self.secret, message.nonce, self.local_peer_id, self.remote_peer_id)
            return [Proof(mac)]
        if isinstance(message, Proof) and self.remote is not None and not self._proof_ok:
            expected = proof_mac(
                self.secret, self.local.nonce, self.remote_peer_id, self.local_peer_id
            )
            if not hmac.compare_digest(expected, message.mac):
                return self._refuse("cluster_secret", "cluster_secret: the secrets differ")
            self._proof_ok = True
            return [Ready()]
        if isinstance(message, Ready) and self._proof_ok and not self._peer_ready:
            self._peer_ready = True
            return []
        return self._refuse("protocol", f"unexpected {type(message).__name__} in the handshake")

    def _refuse(self, field_name: str, reason: str) -> list[Message]:
        self.refusal = Refusal(field_name, reason)
        return [Refuse(field_name, _from_peer_view(reason))]


def _from_peer_view(reason: str) -> str:
    """The same reason, worded for the peer that receives it."""
    swapped = reason.replace("this node", "\0").replace("the peer", "this node")
    return swapped.replace("\0", "the peer")
