"""A seeded, deterministic simulation of a cluster's replication, with a hostile network and
crashing nodes.

Every node runs the real replica state machines (``sierradb.node.replication``) over the real
storage engine on its in-memory disk (``MemoryDisk``: a crash loses every unsynced byte, and may
tear the last write), so what the simulation checks, it checks of the engine too. Time is a
number; every random choice comes from one seeded generator, so a seed replays exactly.

Faults: message delay, loss, duplication and reordering; one-way and pairwise cuts; crashes
(unsynced entries lost) and restarts as a new incarnation; a failure detector fed by
heartbeats over the same faulty network; a local write error on a leader after its frame went
out; clients that give up (TIMEOUT) and retry with the same event ids; a wiped replica.

Checkers (``check``): once any replica has exposed (partition, sequence) below its watermark,
every replica that exposes it exposes the same entry, and the final logs agree with it; every
acknowledged event id appears exactly once in the final log; what each node exposed is a prefix
of the final log, in order, without gap or duplicate; no watermark decreases within a process
lifetime; after the faults heal, every partition has a leader and every replica catches up.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from sierradb.node.append import AppendRequest
from sierradb.node.errors import NodeError
from sierradb.node.leader import stored_events
from sierradb.node.placement import placement
from sierradb.node.replication.messages import ReplicationMessage
from sierradb.node.replication.replica import Replica, ReplicaConfig, Role
from sierradb.node.replication.storage import PromiseWrites, StoreStorage, leader_events
from sierradb.storage import Event, MemoryDisk, NewEvent, Store, WrongExpectedVersion

HEARTBEAT_S = 0.1
ELECTION_TIMEOUT_S = 0.6
CLIENT_TIMEOUT_S = 2.0
SEGMENT_BYTES = 1 << 20


class Violation(AssertionError):
    pass


@dataclass
class Faults:
    loss: float = 0.02
    duplicate: float = 0.02
    delay_s: tuple[float, float] = (0.0005, 0.02)
    crash_every_s: float = 1.5  # mean time between crashes (0: none)
    down_s: tuple[float, float] = (0.2, 1.5)
    cut_every_s: float = 2.0  # mean time between network cuts (0: none)
    cut_s: tuple[float, float] = (0.3, 2.0)
    write_error_every_s: float = 6.0  # mean time between a leader's local write errors
    flush_every_s: tuple[float, float] = (0.001, 0.04)  # group commits: the window a crash hits
    wipe: bool = False  # one node loses its disk once (and is admitted back later)


@dataclass
class _Client:
    name: int
    partition: int
    pending: list[list[NewEvent]]  # transactions still to append, in order
    attempt: AppendRequest | None = None
    node: int | None = None  # where the attempt waits
    sequence: int = -1  # the attempt's last sequence there
    incarnation: int = 0
    deadline: float = 0.0


class SimNode:
    def __init__(self, sim: Simulation, index: int) -> None:
        self.sim = sim
        self.index = index
        self.disk = MemoryDisk(seed=sim.rng.randrange(1 << 30))
        self.incarnation = 0
        self.alive = False
        self.heard: dict[int, float] = {}
        self.learner = False
        self.start()

    # -- lifecycle
    def start(self) -> None:
        sim = self.sim
        self.incarnation += 1
        self.alive = True
        self.heard = {}
        self.store = Store.open(
            "/data", partitions=sim.partitions, buckets=1, segment_size_bytes=SEGMENT_BYTES,
            disk=self.disk,
        )  # fmt: skip
        self.replicas: dict[int, Replica] = {}
        self.promises = PromiseWrites(self.store) if sim.batched_promises else None
        for p, order in enumerate(sim.layout):
            if self.index not in order:
                continue
            config = ReplicaConfig(p, self.index, self.incarnation, order, HEARTBEAT_S,
                                   ELECTION_TIMEOUT_S, sim.frame_entries,
                                   sim.caught_up_entries)  # fmt: skip
            replica = Replica(config, StoreStorage(self.store, p, self.promises), self, sim.now)
            self.replicas[p] = replica
            sim.exposed_floor(self, p)

    def crash(self) -> None:
        self.alive = False
        self.disk.crash()

    def wipe(self) -> None:
        self.alive = False
        self.disk = MemoryDisk(seed=self.sim.rng.randrange(1 << 30))
        self.learner = True

    # -- the view replicas ask
    def is_up(self, node: int) -> bool:
        return self.sim.now - self.heard.get(node, float("-inf")) < ELECTION_TIMEOUT_S

    def is_voter(self, node: int) -> bool:
        return not self.sim.nodes[node].learner

    def identity(self, node: int) -> object:
        return self.sim.nodes[node].disk  # a wiped node has a new disk

    # -- work
    def flush(self) -> None:
        if not self.alive:
            return
        if self.sim.fail_next_write == self.index:
            self.sim.fail_next_write = None
            self.disk.fail_writes("write", 1)
        promises_first = self.sim.rng.random() < 0.5  # the node flushes them independently
        if promises_first and not self._flush_promises():
            return
        tickets = self.store.flush(0)
        for ticket in tickets:
            replica = self.replicas.get(ticket.partition_id)
            if replica is not None:
                replica.written(ticket, ticket.error)
        if not promises_first and not self._flush_promises():
            return
        self.after()

    def _flush_promises(self) -> bool:
        """Write the batched promises (as the node's ``_flush_promises``): False if that
        failed and the node stopped (fail-stop)."""
        if self.promises is None or not self.promises.pending:
            return True
        promises, tokens = self.promises.take()
        try:
            self.store.set_promises(promises)
        except OSError:
            self.sim.trace.append(f"{self.sim.now:.3f} promise write failed: {self.index} stops")
            self.crash()
            self.sim.at(self.sim.rng.uniform(*self.sim.faults.down_s),
                        lambda: self.sim._restart(self))  # fmt: skip
            return False
        for token in tokens:
            self.replicas[token.partition_id].written(token, None)
        return True

    def after(self) -> None:
        """Send what the replicas queued, and record what became visible."""
        for p, replica in self.replicas.items():
            for dest, message in replica.outbox():
                self.sim.send(self.index, dest, message)
            if replica.watermark_moves:
                replica.watermark_moves.clear()
                self.sim.exposed(self, p)

    def tick(self) -> None:
        if not self.alive:
            return
        for replica in self.replicas.values():
            replica.tick(self.sim.now)
        self.after()

    def receive(self, sender: int, message: ReplicationMessage) -> None:
        if not self.alive:
            return
        self.heard[sender] = self.sim.now
        replica = self.replicas.get(message.partition)
        if replica is not None:
            replica.step(sender, message, self.sim.now)
        self.after()

    def propose(self, request: AppendRequest) -> tuple[int, int] | str:
        """A client's append at this node: (sequence to wait for, incarnation) or an error."""
        replica = self.replicas.get(request.partition_id)
        if not self.alive or replica is None:
            return "unavailable"
        try:
            stored = stored_events(self.store, request)
        except NodeError as e:
            return e.code
        if stored is not None:
            if replica.role is not Role.LEADER:
                return "notleader"
            return (stored[-1].partition_sequence, self.incarnation)
        if not replica.can_accept():
            return "notleader"
        try:
            ticket = self.store.append_leader(
                request.partition_id, request.partition_key, request.transaction_id,
                request.events, replica.promise.term,
            )  # fmt: skip
        except WrongExpectedVersion:
            return "wrongver"
        events = leader_events(
            request.partition_id, request.partition_key, request.transaction_id, request.events,
            ticket,
        )  # fmt: skip
        replica.local_append(events, ticket)
        replica.replicate(self.sim.now)
        self.after()
        return (ticket.last_sequence, self.incarnation)


class Simulation:
    def __init__(
        self,
        seed: int,
        nodes: int = 3,
        partitions: int = 1,
        replication_factor: int = 3,
        faults: Faults | None = None,
        clients: int = 4,
        transactions: int = 25,  # per client
        duration_s: float = 12.0,
        settle_s: float = 10.0,
        frame_entries: int = 256,
        caught_up_entries: int = 1024,
        batched_promises: bool = False,
    ) -> None:
        self.batched_promises = batched_promises  # promises written by the flushes, as the node
        self.frame_entries = frame_entries  # 2: transactions of 3 span frames
        self.caught_up_entries = caught_up_entries  # 4: campaigns yield to replicas ahead
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.partitions = partitions
        self.layout = placement(nodes, replication_factor, partitions)
        self.now = 0.0
        self.duration_s = duration_s
        self.settle_s = settle_s
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self.cuts: set[tuple[int, int]] = set()  # (from, to) pairs that drop everything
        self.fail_next_write: int | None = None
        self.healed = False
        # Checkers' state.
        self.exposed_entries: dict[tuple[int, int], bytes] = {}  # (p, seq) -> event id
        self.seen: dict[tuple[int, int, int], int] = {}  # (node, incarnation, p) -> watermark
        self.acknowledged: dict[bytes, int] = {}  # event id -> partition
        self.trace: list[str] = []
        self.nodes = [SimNode(self, i) for i in range(nodes)]
        self.clients = [
            _Client(c, c % partitions, [self._transaction(c, t) for t in range(transactions)])
            for c in range(clients)
        ]

    # -- the event loop
    def at(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._order), action))

    def run(self) -> None:
        for node in self.nodes:
            self._every(HEARTBEAT_S / 2, node.tick, node)
            self._every(self.rng.uniform(*self.faults.flush_every_s), node.flush, node)
            self._every(HEARTBEAT_S, lambda n=node: self._ping(n), node)
        for client in self.clients:
            self.at(self.rng.uniform(0, 0.5), lambda c=client: self._client_step(c))
        self._schedule_faults()
        self.at(self.duration_s, self._heal)
        end = self.duration_s + self.settle_s
        while self._queue and self._queue[0][0] <= end:
            self.now, _, action = heapq.heappop(self._queue)
            action()

    def _every(self, interval: float, action: Callable[[], None], node: SimNode) -> None:
        def again() -> None:
            action()
            self.at(interval * self.rng.uniform(0.8, 1.2), again)

        self.at(self.rng.uniform(0, interval), again)

    # -- the network
    def send(self, sender: int, dest: int, message: object) -> None:
        f = self.faults
        if (sender, dest) in self.cuts or self.rng.random() < f.loss:
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            delay = self.rng.uniform(*f.delay_s)
            self.at(delay, lambda m=message: self._deliver(sender, dest, m))

    def _deliver(self, sender: int, dest: int, message: object) -> None:
        node = self.nodes[dest]
        if message == "ping":
            if node.alive:
                node.heard[sender] = self.now
            return
        node.receive(sender, message)  # type: ignore[arg-type]

    def _ping(self, node: SimNode) -> None:
        if node.alive:
            for other in self.nodes:
                if other is not node:
                    self.send(node.index, other.index, "ping")

    # -- faults
    def _schedule_faults(self) -> None:
        f = self.faults
        if f.crash_every_s:
            self.at(self.rng.expovariate(1 / f.crash_every_s), self._crash_one)
        if f.cut_every_s:
            self.at(self.rng.expovariate(1 / f.cut_every_s), self._cut)
        if f.write_error_every_s:
            self.at(self.rng.expovariate(1 / f.write_error_every_s), self._write_error)
        if f.wipe:
            self.at(self.rng.uniform(1, self.duration_s / 2), self._wipe_one)

    def _crash_one(self, again: bool = True) -> None:
        if self.healed:
            return
        node = self.rng.choice(self.nodes)
        if node.alive:
            self.trace.append(f"{self.now:.3f} crash {node.index}")
            node.crash()
            self.at(self.rng.uniform(*self.faults.down_s), lambda: self._restart(node))
            if again and self.rng.random() < 0.3:  # a second node soon after: the hard case
                self.at(self.rng.uniform(0.001, 0.05), lambda: self._crash_one(again=False))
        if again:
            self.at(self.rng.expovariate(1 / self.faults.crash_every_s), self._crash_one)

    def _restart(self, node: SimNode) -> None:
        if not node.alive:
            self.trace.append(f"{self.now:.3f} restart {node.index}")
            node.start()

    def _wipe_one(self) -> None:
        node = self.rng.choice(self.nodes)
        self.trace.append(f"{self.now:.3f} wipe {node.index}")
        node.wipe()
        self.at(self.rng.uniform(*self.faults.down_s), lambda: self._restart(node))

    def _cut(self) -> None:
        if self.healed:
            return
        a, b = self.rng.sample(range(len(self.nodes)), 2)
        pairs = {(a, b)} if self.rng.random() < 0.5 else {(a, b), (b, a)}
        self.trace.append(f"{self.now:.3f} cut {sorted(pairs)}")
        self.cuts |= pairs
        self.at(self.rng.uniform(*self.faults.cut_s), lambda: self.cuts.difference_update(pairs))
        self.at(self.rng.expovariate(1 / self.faults.cut_every_s), self._cut)

    def _write_error(self) -> None:
        if self.healed:
            return
        leaders = [
            n for n in self.nodes
            if n.alive and any(r.role is Role.LEADER for r in n.replicas.values())
        ]  # fmt: skip
        if leaders:
            self.fail_next_write = self.rng.choice(leaders).index
        self.at(self.rng.expovariate(1 / self.faults.write_error_every_s), self._write_error)

    def _heal(self) -> None:
        self.trace.append(f"{self.now:.3f} heal")
        self.healed = True
        self.cuts.clear()
        self.fail_next_write = None
        for node in self.nodes:
            node.learner = False  # the operator admits the wiped node
            if not node.alive:
                node.start()

    # -- clients
    def _transaction(self, client: int, t: int) -> list[NewEvent]:
        size = self.rng.choice((1, 1, 1, 2, 3))
        stream = f"s{client}-{t % 3}".encode()
        return [
            NewEvent(
                self.rng.randbytes(16),
                stream,
                b"E",
                int(self.now * 1000),
                b"",
                f"{client}:{t}:{i}".encode(),
            )  # fmt: skip
            for i in range(size)
        ]

    def _client_step(self, c: _Client) -> None:
        if c.attempt is not None and c.node is not None:
            node = self.nodes[c.node]
            p = c.partition
            replica = node.replicas.get(p)
            if (
                node.alive
                and node.incarnation == c.incarnation
                and replica is not None
                and node.store.watermark(p) > c.sequence
            ):
                found = node.store.find_event(p, c.attempt.events[-1].event_id)
                if found is not None and found[0].partition_sequence == c.sequence:
                    for e in c.attempt.events:
                        self.acknowledged[e.event_id] = p
                    c.pending.pop(0)
                    c.attempt = None
            elif self.now < c.deadline and node.alive and node.incarnation == c.incarnation:
                self.at(0.005, lambda: self._client_step(c))
                return
            else:
                c.node = None  # TIMEOUT, or the node restarted: retry with the same ids
        if not c.pending:
            return
        if c.attempt is None:
            events = c.pending[0]
            key = bytes(16)  # one partition key per simulation's partition: see below
            c.attempt = AppendRequest(
                c.partition, key, self.rng.randbytes(16), events,
                tuple(True for _ in events), len(events) > 1,
            )  # fmt: skip
        target = self.rng.randrange(len(self.nodes))
        outcome = self.nodes[target].propose(c.attempt)
        if isinstance(outcome, tuple):
            c.node, (c.sequence, c.incarnation) = target, outcome
            c.deadline = self.now + CLIENT_TIMEOUT_S
            self.at(0.005, lambda: self._client_step(c))
        else:
            self.at(self.rng.uniform(0.01, 0.1), lambda: self._client_step(c))

    # -- checkers
    def exposed_floor(self, node: SimNode, p: int) -> None:
        self.seen[(node.index, node.incarnation, p)] = node.store.watermark(p)

    def exposed(self, node: SimNode, p: int) -> None:
        """A node's watermark moved: what it now exposes must agree with everything exposed."""
        key = (node.index, node.incarnation, p)
        before = self.seen.get(key, 0)
        watermark = node.store.watermark(p)
        if watermark < before:
            self._fail(f"node {node.index} p{p}: watermark went from {before} to {watermark}")
        self.seen[key] = watermark
        events, _ = node.store.read_partition(p, before, watermark - 1, watermark - before + 1)
        if [e.partition_sequence for e in events] != list(range(before, watermark)):
            got = [e.partition_sequence for e in events]
            self._fail(
                f"node {node.index} p{p}: exposed {before}..{watermark - 1} but read "
                f"{got[:3]}..{got[-3:]} ({len(got)} entries)"
            )
        for e in events:
            known = self.exposed_entries.setdefault((p, e.partition_sequence), e.event_id)
            if known != e.event_id:
                self._fail(
                    f"node {node.index} p{p}: exposed a different entry at {e.partition_sequence}"
                )

    def check(self) -> None:
        for p, order in enumerate(self.layout):
            leaders = [
                self.nodes[n] for n in order
                if self.nodes[n].replicas[p].role is Role.LEADER
                and self.nodes[n].replicas[p].can_accept()
            ]  # fmt: skip
            if len(leaders) != 1:
                self._fail(f"p{p}: {len(leaders)} accepting leaders after the faults healed")
            final = self._log(leaders[0], p)
            for n in order:
                node = self.nodes[n]
                log = self._log(node, p)
                if log != final:
                    self._fail(f"p{p}: node {n} did not converge ({len(log)} vs {len(final)})")
                if node.store.watermark(p) != len(final):
                    self._fail(
                        f"p{p}: node {n} watermark {node.store.watermark(p)} != {len(final)}"
                    )
            for (q, seq), eid in self.exposed_entries.items():
                if q == p and (seq >= len(final) or final[seq].event_id != eid):
                    self._fail(f"p{p}: exposed entry {seq} is not in the final log")
            ids = [e.event_id for e in final]
            if len(set(ids)) != len(ids):
                self._fail(f"p{p}: an event id appears twice in the final log")
            present = set(ids)
            for eid, q in self.acknowledged.items():
                if q == p and eid not in present:
                    self._fail(f"p{p}: an acknowledged event is missing")
            self._check_transactions(p, final)

    def _check_transactions(self, p: int, log: list[Event]) -> None:
        for i, e in enumerate(log):
            if i and not log[i - 1].txn_last and log[i - 1].transaction_id != e.transaction_id:
                self._fail(f"p{p}: transaction cut at {i}")

    @staticmethod
    def _log(node: SimNode, p: int) -> list[Event]:
        """A node's visible log, without term labels (confirmed entries may keep the label of
        the term that first wrote them on one replica and carry a newer one on another)."""
        events, _ = node.store.read_partition(p, 0, None, 1 << 30)
        return [e._replace(term=0) for e in events]

    def _fail(self, message: str) -> None:
        raise Violation(f"seed {self.seed}: {message}\n" + "\n".join(self.trace[-30:]))


def shape_of(seed: int) -> dict[str, object]:
    """The cluster shape and faults a seed runs with (varied so the fixed seed list covers
    3 and 5 nodes, one and two partitions, a wiped replica and calm stretches)."""
    rng = random.Random(seed * 7919)
    faults = Faults(
        loss=rng.choice((0.0, 0.01, 0.05)),
        duplicate=rng.choice((0.0, 0.02)),
        crash_every_s=rng.choice((0.8, 1.5, 3.0)),
        cut_every_s=rng.choice((0.0, 1.0, 2.0)),
        write_error_every_s=rng.choice((0.0, 4.0)),
        wipe=rng.random() < 0.15,
    )
    return {
        "nodes": rng.choice((3, 3, 5)),
        "partitions": rng.choice((1, 2)),
        "faults": faults,
        "frame_entries": rng.choice((2, 256)),
        "caught_up_entries": rng.choice((4, 1024)),
        "batched_promises": rng.random() < 0.5,
    }


def run_seed(seed: int, **options: object) -> Simulation:
    sim = Simulation(seed, **options)  # type: ignore[arg-type]
    sim.run()
    sim.check()
    return sim


__all__ = ["Faults", "Simulation", "Violation", "run_seed", "shape_of"]
