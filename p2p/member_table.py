"""The gossiped member table: who belongs to the cluster, where they are, which start they are in.

Theory of operation. Three pieces of state are gossiped, and each merges as a join (idempotent,
commutative, associative), so nodes that have seen the same announcements agree whatever the
order, duplication or loss of the messages that carried them; a lost announcement is healed by
the next periodic one.

- ``cluster_id``: None until the cluster first forms, then fixed forever. A node without one
  adopts the first it hears; two different ids never merge (the handshake refuses the link).
- ``members``: one ``MemberInfo`` per peer id (node index, member id, incarnation, addresses,
  client address). A higher incarnation replaces a lower one; equal incarnations carry the same
  facts (the tie-break on the fields only makes the merge deterministic).
- ``registry``: per node index, the member ids admitted there, at an admission *epoch*. The
  first member id seen at an index is recorded at epoch 0 (trust on first use). A higher epoch
  replaces a lower one; at equal epochs the sets are united. An operator's admission writes
  epoch + 1 with exactly one member id. A node whose member id is not the single admitted one at
  its index is a *learner*: it has a new data dir (wiped disk, new volume) or shares its index
  with another node, and must not vote until an operator admits it (cluster-safety S4).

Merges never delete: an entry of an identity that an admission replaced (a wiped node's old peer
id) stays in the table, so the merge stays a join, but ``effective_members`` leaves it out, and
that view is what nodes dial and show. The table holds at most ``MAX_MEMBERS`` entries (a cluster
of ``MAX_NODE_COUNT`` plus replaced identities); past that, replaced entries are dropped first.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Gossip, MemberInfo, RegistryEntry

# Entries kept (live identities plus those replaced by admissions); see the module docstring.
MAX_MEMBERS = 256


@dataclass(frozen=True, slots=True)
class RegistrySlot:
    epoch: int
    member_ids: frozenset[str]

    def join(self, other: RegistrySlot) -> RegistrySlot:
        if self.epoch != other.epoch:
            return self if self.epoch > other.epoch else other
        return RegistrySlot(self.epoch, self.member_ids | other.member_ids)


def _newer(a: MemberInfo, b: MemberInfo) -> MemberInfo:
    """The entry that wins a merge of two announcements of one peer id."""
    return max(a, b, key=lambda m: (m.incarnation, _facts(m)))


def _facts(m: MemberInfo) -> tuple:
    return (m.node_index, m.member_id, tuple(m.addresses), m.client_address)


class MemberTable:
    def __init__(
        self,
        self_peer_id: str,
        cluster_id: str | None = None,
        registry: dict[int, RegistrySlot] | None = None,
    ) -> None:
        self.self_peer_id = self_peer_id
        self.cluster_id = cluster_id
        self.members: dict[str, MemberInfo] = {}
        self.registry: dict[int, RegistrySlot] = dict(registry or {})
        # Bumped on every change, so senders know when a peer needs the table again.
        self.version = 0

    # ------------------------------------------------------------------------- merges
    def merge(self, gossip: Gossip) -> bool:
        """Merge a peer's announcement; True if anything durable (id, registry) changed."""
        durable = self.adopt_cluster_id(gossip.cluster_id)
        durable |= self.merge_registry(gossip.registry)
        self.merge_members(gossip.members)
        return durable

    def adopt_cluster_id(self, cluster_id: str | None) -> bool:
        if cluster_id is None or self.cluster_id is not None:
            return False
        self.cluster_id = cluster_id
        self.version += 1
        return True

    def merge_members(self, members: list[MemberInfo]) -> bool:
        changed = False
        for info in members:
            known = self.members.get(info.peer_id)
            merged = info if known is None else _newer(known, info)
            if merged != known:
                self.members[info.peer_id] = merged
                changed = True
        if len(self.members) > MAX_MEMBERS:
            self._drop_replaced()
        if changed:
            self.version += 1
        return changed

    def merge_registry(self, entries: list[RegistryEntry]) -> bool:
        changed = False
        for entry in entries:
            slot = RegistrySlot(entry.epoch, frozenset(entry.member_ids))
            known = self.registry.get(entry.node_index)
            merged = slot if known is None else known.join(slot)
            if merged != known:
                self.registry[entry.node_index] = merged
                changed = True
        if changed:
            self.version += 1
        return changed

    def record_first_seen(self, node_index: int, member_id: str) -> bool:
        """Trust on first use: the first member id seen at an index is its member."""
        if node_index in self.registry:
            return False
        self.registry[node_index] = RegistrySlot(0, frozenset({member_id}))
        self.version += 1
        return True

    def admit(self, node_index: int, member_id: str) -> bool:
        """An operator's admission: `member_id` alone is the member at `node_index` from now on."""
        slot = self.registry.get(node_index)
        if slot is not None and slot.member_ids == {member_id}:
            return False
        epoch = 0 if slot is None else slot.epoch + 1
        self.registry[node_index] = RegistrySlot(epoch, frozenset({member_id}))
        self.version += 1
        return True

    def _drop_replaced(self) -> None:
        for peer_id, m in list(self.members.items()):
            if len(self.members) <= MAX_MEMBERS:
                return
            if peer_id != self.self_peer_id and self._replaced(m):
                del self.members[peer_id]

    def _replaced(self, m: MemberInfo) -> bool:
        slot = self.registry.get(m.node_index)
        return slot is not None and slot.epoch > 0 and m.member_id not in slot.member_ids

    # ------------------------------------------------------------------------ queries
    def effective_members(self) -> dict[str, MemberInfo]:
        """The members that count: every entry but identities an admission replaced."""
        return {
            peer_id: m
            for peer_id, m in self.members.items()
            if peer_id == self.self_peer_id or not self._replaced(m)
        }

    def is_learner(self, node_index: int, member_id: str) -> bool:
        slot = self.registry.get(node_index)
        return slot is not None and slot.member_ids != {member_id}

    def gossip(self) -> Gossip:
        return Gossip(
            self.cluster_id,
            sorted(self.members.values(), key=lambda m: (m.node_index, m.peer_id)),
            [
                RegistryEntry(index, slot.epoch, sorted(slot.member_ids))
                for index, slot in sorted(self.registry.items())
            ],
        )
