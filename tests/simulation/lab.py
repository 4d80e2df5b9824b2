"""A hand-driven cluster for directed scenarios: the test decides which messages arrive, when
writes become durable, who crashes and who campaigns.

Each node runs the real replica over the real storage engine on its in-memory disk. Messages
the replicas send wait in ``inbox`` until the test delivers or drops them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from sierradb.node.replication.messages import ReplicationMessage
from sierradb.node.replication.replica import Replica, ReplicaConfig, Role
from sierradb.node.replication.storage import StoreStorage, leader_events
from sierradb.storage import Event, MemoryDisk, NewEvent, Store

HEARTBEAT_S = 0.1
TIMEOUT_S = 0.6
KEY = bytes(16)


@dataclass
class Sent:
    source: int
    dest: int
    message: ReplicationMessage


class LabNode:
    def __init__(self, lab: Lab, index: int) -> None:
        self.lab = lab
        self.index = index
        self.disk = MemoryDisk(seed=index)
        self.incarnation = 0
        self.alive = False
        self.voter = True
        self.start()

    def start(self) -> None:
        self.incarnation += 1
        self.alive = True
        self.store = Store.open(
            "/d", partitions=1, buckets=1, segment_size_bytes=1 << 20, disk=self.disk
        )
        config = ReplicaConfig(0, self.index, self.incarnation, self.lab.order, HEARTBEAT_S,
                               TIMEOUT_S, caught_up_entries=self.lab.caught_up_entries)  # fmt: skip
        self.replica = Replica(config, StoreStorage(self.store, 0), self, self.lab.now)

    def crash(self) -> None:
        self.alive = False
        self.disk.crash(tear=False)

    def is_up(self, node: int) -> bool:
        return self.lab.nodes[node].alive

    def is_voter(self, node: int) -> bool:
        return self.lab.nodes[node].voter

    def identity(self, node: int) -> object:
        return self.lab.nodes[node].disk

    def flush(self) -> None:
        for ticket in self.store.flush(0):
            self.replica.written(ticket, ticket.error)
        self.collect()

    def collect(self) -> None:
        for dest, message in self.replica.outbox():
            self.lab.inbox.append(Sent(self.index, dest, message))

    def append(self, payload: bytes) -> Event:
        """The leader's own append of one event (queued, not durable)."""
        events = [NewEvent(os.urandom(16), b"s", b"E", 1, b"", payload)]
        txn = os.urandom(16)
        ticket = self.store.append_leader(0, KEY, txn, events, self.replica.promise.term)
        entries = leader_events(0, KEY, txn, events, ticket)
        self.replica.local_append(entries, ticket)
        return entries[0]

    def campaign(self) -> None:
        self.replica._campaign(self.lab.now)
        self.collect()

    def visible(self) -> list[bytes]:
        events, _ = self.store.read_partition(0, 0, None, 1000)
        return [e.payload for e in events]

    @property
    def role(self) -> Role:
        return self.replica.role


class Lab:
    def __init__(self, nodes: int = 3, caught_up_entries: int = 1024) -> None:
        self.caught_up_entries = caught_up_entries
        self.now = 0.0
        self.order = tuple(range(nodes))
        self.inbox: list[Sent] = []
        self.nodes = [LabNode(self, i) for i in range(nodes)]

    def deliver(self, keep: Callable[[Sent], bool] = lambda s: True, rounds: int = 50) -> None:
        """Deliver queued messages that `keep` accepts (dropping the rest), flushing every live
        node between rounds, until nothing is left."""
        for _ in range(rounds):
            batch, self.inbox = self.inbox, []
            for sent in batch:
                node = self.nodes[sent.dest]
                if node.alive and self.nodes[sent.source].alive and keep(sent):
                    node.replica.step(sent.source, sent.message, self.now)
                    node.collect()
            for node in self.nodes:
                if node.alive:
                    node.flush()
            if not self.inbox:
                return

    def drop(self) -> None:
        self.inbox.clear()

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for node in self.nodes:
            if node.alive:
                node.replica.tick(self.now)
                node.collect()

    def between(self, *nodes: int) -> Callable[[Sent], bool]:
        group = set(nodes)
        return lambda s: s.source in group and s.dest in group
