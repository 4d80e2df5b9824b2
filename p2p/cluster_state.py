"""The cluster facts a node keeps in its data dir (``cluster.json``), replaced atomically.

- The shape it was started with (node count, its node index, replication factor): placement
  depends on them, so a data dir is refused at start under another shape (cluster-safety S4c),
  including a single node's data dir restarted as part of a cluster.
- Its incarnation: a counter incremented and fsynced at every start, so peers tell a restarted
  node from its previous life without trusting any clock (S14).
- The cluster id, once the cluster has formed, and the member registry (see ``member_table``),
  so two clusters never merge and a wiped node stays a learner across restarts of its peers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .errors import ClusterStateError
from .files import write_file_atomic
from .member_table import MemberTable, RegistrySlot

STATE_FILE = "cluster.json"
FORMAT_VERSION = 1


@dataclass
class ClusterState:
    path: str
    node_count: int
    node_index: int
    replication_factor: int
    incarnation: int = 0
    cluster_id: str | None = None
    registry: dict[int, RegistrySlot] = field(default_factory=dict)

    @classmethod
    def start(
        cls, data_dir: str, *, node_count: int, node_index: int, replication_factor: int
    ) -> ClusterState:
        """Load (or create) the state, check the shape, and durably begin a new incarnation."""
        path = os.path.join(data_dir, STATE_FILE)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            state = cls(path, node_count, node_index, replication_factor)
        else:
            state = cls._parse(path, raw)
            state._check_shape(node_count, node_index, replication_factor)
        state.incarnation += 1
        state.save()
        return state

    @classmethod
    def _parse(cls, path: str, raw: bytes) -> ClusterState:
        try:
            doc = json.loads(raw)
            if doc["format"] != FORMAT_VERSION:
                raise ClusterStateError(f"{path}: unsupported format {doc['format']!r}")
            return cls(
                path,
                int(doc["node_count"]),
                int(doc["node_index"]),
                int(doc["replication_factor"]),
                int(doc["incarnation"]),
                doc["cluster_id"],
                {
                    int(index): RegistrySlot(int(slot["epoch"]), frozenset(slot["member_ids"]))
                    for index, slot in doc["registry"].items()
                },
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ClusterStateError(f"{path} is damaged: {e!r}") from e

    def _check_shape(self, node_count: int, node_index: int, replication_factor: int) -> None:
        have = (self.node_count, self.node_index, self.replication_factor)
        if have != (node_count, node_index, replication_factor):
            raise ClusterStateError(
                f"data dir {os.path.dirname(self.path)} belongs to node {self.node_index} of a "
                f"{self.node_count}-node cluster with replication factor "
                f"{self.replication_factor}; it cannot start as node {node_index} of "
                f"{node_count} with replication factor {replication_factor} (changing a "
                "cluster's shape is not supported)"
            )

    def update_from(self, table: MemberTable) -> bool:
        """Take the table's durable facts; True if they differ from what is saved."""
        if (table.cluster_id, table.registry) == (self.cluster_id, self.registry):
            return False
        self.cluster_id = table.cluster_id
        self.registry = dict(table.registry)
        return True

    def save(self) -> None:
        doc = {
            "format": FORMAT_VERSION,
            "node_count": self.node_count,
            "node_index": self.node_index,
            "replication_factor": self.replication_factor,
            "incarnation": self.incarnation,
            "cluster_id": self.cluster_id,
            "registry": {
                str(index): {"epoch": slot.epoch, "member_ids": sorted(slot.member_ids)}
                for index, slot in sorted(self.registry.items())
            },
        }
        write_file_atomic(self.path, json.dumps(doc, indent=1).encode())
