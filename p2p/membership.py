"""Membership: liveness of peers, duplicate indexes, learners, and cluster formation, sans-I/O.

Theory of operation. The runtime tells a ``Membership`` what happened (a link was accepted or
lost, a handshake was refused, a message arrived, time passed) and gets back an ``Output``: the
messages to send to which peer, and whether the durable state (cluster id, registry) changed and
must be persisted before those messages leave. Time is always the caller's monotonic clock.

- Liveness is judged on this node's clock only: a peer is up while a frame from it arrived within
  ``down_timeout_s``; its own timestamps are never trusted (cluster-safety S14). A ``Leave`` (sent
  on SIGTERM) marks it down at once. When this node's event loop stalls (``tick`` finds itself
  much later than it asked to be woken), the stalled time is added to every peer's deadline: we
  were not listening, so their silence proves nothing.
- Every link sends a ``Heartbeat`` each ``heartbeat_interval_s`` carrying a ping number, the
  echo of the peer's last ping with how long it was held (the peer's round-trip time, without a
  message of its own: py-libp2p costs about a millisecond of CPU per message), and the
  (index, peer id) of every peer it holds a live, accepted link to. Those reports show when two
  live nodes claim one index anywhere in the cluster; both are then refused, here and on every
  node that sees it.
- The member table (see ``member_table``) is sent to a peer when its link comes up, whenever it
  changed since that peer last got it, and every ``GOSSIP_REFRESH_S`` anyway.
- The cluster id is created by node 0 alone, and only while it and a majority of the nodes it is
  linked to all have none: the first formation of a new cluster. Every other node adopts the id
  it hears. A wiped node 0 therefore joins its old cluster (as a learner) instead of founding a
  new one, and the first formation needs node 0 and a majority up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .handshake import Refusal
from .member_table import MemberTable
from .messages import Claim, Gossip, Heartbeat, Hello, Leave, MemberInfo, Message

# The table is resent this often even when nothing changed: a lost gossip heals by itself.
GOSSIP_REFRESH_S = 10.0
# A tick this much later than the tick interval means the event loop (or the whole process)
# stalled; the stall is not counted against peers.
STALL_GRACE_FACTOR = 2.0
# Peers that never completed a handshake (another cluster, a misconfigured node, garbage) are
# remembered for INFO up to this many; the oldest refusal is forgotten first.
MAX_REFUSED_PEERS = 64
# How long a computed conflicts() answer is reused when nothing changed but the clock: far
# below the down timeout, so no peer stays alive in it noticeably longer.
CONFLICTS_CACHE_S = 0.05
# Our pings whose send times are kept per peer, to measure the round trip from the echo.
PINGS_REMEMBERED = 4


@dataclass(frozen=True, slots=True)
class LocalNode:
    peer_id: str
    node_index: int
    node_count: int
    member_id: str
    incarnation: int
    addresses: tuple[str, ...]
    client_address: str

    def info(self) -> MemberInfo:
        return MemberInfo(
            self.peer_id,
            self.node_index,
            self.member_id,
            self.incarnation,
            list(self.addresses),
            self.client_address,
        )


@dataclass
class Output:
    sends: list[tuple[str, Message]] = field(default_factory=list)
    persist: bool = False

    def extend(self, other: Output) -> None:
        self.sends.extend(other.sends)
        self.persist |= other.persist


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    node_index: int | None
    peer_id: str
    member_id: str | None
    addresses: tuple[str, ...]
    client_address: str | None
    state: str  # up, down, learner, refused
    heartbeat_age_s: float | None
    rtt_s: float | None
    incarnation: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class MembershipStatistics:
    cluster_id: str | None
    nodes_alive: int
    learner: bool
    conflict: str | None
    peers: tuple[PeerStatistics, ...]


@dataclass
class _Peer:
    """What this node knows locally about one peer's link and liveness."""

    peer_id: str
    hello: Hello | None = None  # from the current (or last) accepted link
    linked: bool = False
    cluster_id: str | None = None
    last_heard: float | None = None
    left: bool = False
    refusal: Refusal | None = None
    refused_at: float = 0.0
    rtt_s: float | None = None
    ping: int = 0
    # Send times of our last few pings (the newest is `ping`): a peer's heartbeat may echo one
    # before the newest (it left before our newest ping arrived), and the round trip is
    # measured from that one. Empty on a new link, so the first heartbeat goes out at once.
    pings_sent: dict[int, float] = field(default_factory=dict)
    echo: int = 0  # the peer's last ping, returned in our next heartbeat
    echo_received_at: float = 0.0
    reported: list[Claim] = field(default_factory=list)
    gossip_version_sent: int = -1
    gossip_sent_at: float = 0.0


class AdmitError(Exception):
    """An admission the operator asked for cannot be done (no such node, already admitted)."""


class Membership:
    def __init__(
        self,
        local: LocalNode,
        table: MemberTable,
        *,
        heartbeat_interval_s: float,
        down_timeout_s: float,
        now: float,
        new_cluster_id: Callable[[], str],
    ) -> None:
        self.local = local
        self.table = table
        self.heartbeat_interval_s = heartbeat_interval_s
        self.down_timeout_s = down_timeout_s
        self.tick_interval_s = min(0.25, heartbeat_interval_s / 4)
        self.new_cluster_id = new_cluster_id
        self.peers: dict[str, _Peer] = {}
        # conflicts() is asked for every replication message: (computed at, result), dropped
        # by every event that can change it and recomputed after CONFLICTS_CACHE_S (aliveness
        # also changes with the clock alone).
        self._conflicts: tuple[float, dict[int, set[str]]] | None = None
        self.stalled_s = 0.0  # total time not counted against peers, for INFO
        self._last_tick = now
        # Not recorded in the registry by itself: the peers record it on first sight, so a node
        # whose data dir is new (wiped, or a second process at a taken index) finds itself a
        # learner in what they gossip instead of contesting their record.
        table.merge_members([local.info()])

    # ----------------------------------------------------------------------- events
    def on_link_up(self, peer_id: str, hello: Hello, now: float) -> Output:
        """A handshake was accepted: the peer is linked and heard from."""
        self._conflicts = None
        peer = self._peer(peer_id)
        peer.hello = hello
        peer.linked = True
        peer.cluster_id = hello.cluster_id
        peer.last_heard = now
        peer.left = False
        peer.refusal = None
        peer.reported = []
        peer.echo = 0
        peer.pings_sent.clear()  # the heartbeat goes out at once, and the table with it
        peer.gossip_version_sent = -1
        out = Output()
        out.persist |= self.table.adopt_cluster_id(hello.cluster_id)
        out.persist |= self.table.record_first_seen(hello.node_index, hello.member_id)
        self.table.merge_members(
            [
                MemberInfo(
                    peer_id,
                    hello.node_index,
                    hello.member_id,
                    hello.incarnation,
                    list(hello.addresses),
                    hello.client_address,
                )
            ]
        )
        out.persist |= self._maybe_found_cluster()
        out.extend(self._send_due(peer, now))
        return out

    def on_link_down(self, peer_id: str) -> None:
        self._conflicts = None
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.linked = False
            peer.reported = []

    def on_refused(self, peer_id: str, refusal: Refusal, now: float) -> None:
        self._conflicts = None
        peer = self._peer(peer_id)
        peer.linked = False
        peer.refusal = refusal
        peer.refused_at = now
        self._forget_old_refusals()

    def on_message(self, peer_id: str, message: Message, now: float) -> Output:
        self._conflicts = None
        peer = self.peers.get(peer_id)
        out = Output()
        if peer is None or not peer.linked:
            return out
        peer.last_heard = now
        if isinstance(message, Heartbeat):
            peer.reported = list(message.linked)
            peer.echo, peer.echo_received_at = message.ping, now
            sent_at = peer.pings_sent.get(message.echo)
            if sent_at is not None:
                peer.rtt_s = max(0.0, now - sent_at - message.held_ms / 1000)
        elif isinstance(message, Gossip):
            if message.cluster_id is not None:
                peer.cluster_id = message.cluster_id
            out.persist |= self.table.merge(message)
            out.persist |= self._maybe_found_cluster()
        elif isinstance(message, Leave):
            peer.left = True
            peer.linked = False
            peer.reported = []
        return out

    def tick(self, now: float) -> Output:
        self._conflicts = None
        self._account_stall(now)
        self._last_tick = now
        out = Output()
        for peer in self.peers.values():
            if peer.linked:
                out.extend(self._send_due(peer, now))
        return out

    def admit(self, node_index: int, member_id: str | None) -> Output:
        """An operator admits the node now at `node_index` (or the given member id)."""
        if not 0 <= node_index < self.local.node_count:
            raise AdmitError(f"node index {node_index} is outside 0..{self.local.node_count - 1}")
        if member_id is None:
            candidates = {
                p.hello.member_id
                for p in self.peers.values()
                if p.linked and p.hello is not None and p.hello.node_index == node_index
            }
            if node_index == self.local.node_index:
                candidates.add(self.local.member_id)
            if len(candidates) != 1:
                raise AdmitError(
                    f"no single node is linked at index {node_index} "
                    f"({len(candidates)} found); name its member id"
                )
            (member_id,) = candidates
        if not self.table.admit(node_index, member_id):
            raise AdmitError(f"member {member_id} is already the admitted member at {node_index}")
        return Output(persist=True)

    def leave(self) -> list[tuple[str, Message]]:
        """The goodbye sent to every linked peer on a graceful shutdown."""
        return [(p.peer_id, Leave(self.local.incarnation)) for p in self.peers.values() if p.linked]

    # ---------------------------------------------------------------------- queries
    def is_up(self, peer_id: str, now: float) -> bool:
        self._account_stall(now)
        peer = self.peers.get(peer_id)
        return peer is not None and self._alive(peer, now)

    def refusal_of(self, peer_id: str) -> Refusal | None:
        peer = self.peers.get(peer_id)
        return None if peer is None else peer.refusal

    def dial_targets(self) -> dict[str, tuple[str, ...]]:
        """Every member but this node, with the addresses it announced."""
        return {
            peer_id: tuple(m.addresses)
            for peer_id, m in self.table.effective_members().items()
            if peer_id != self.local.peer_id
        }

    def conflicts(self, now: float) -> dict[int, set[str]]:
        """Node indexes that two or more live peers claim, with the peer ids claiming them."""
        cached = self._conflicts
        if cached is not None and 0 <= now - cached[0] < CONFLICTS_CACHE_S:
            return cached[1]
        found = self._compute_conflicts(now)
        self._conflicts = (now, found)
        return found

    def _compute_conflicts(self, now: float) -> dict[int, set[str]]:
        claims: dict[int, set[str]] = {self.local.node_index: {self.local.peer_id}}
        for peer in self.peers.values():
            if peer.linked and peer.hello is not None:
                claims.setdefault(peer.hello.node_index, set()).add(peer.peer_id)
            if self._alive(peer, now):
                for claim in peer.reported:
                    claims.setdefault(claim.node_index, set()).add(claim.peer_id)
        return {index: ids for index, ids in claims.items() if len(ids) > 1}

    def is_learner(self) -> bool:
        return self.table.is_learner(self.local.node_index, self.local.member_id)

    def statistics(self, now: float) -> MembershipStatistics:
        self._account_stall(now)
        conflicts = self.conflicts(now)
        rows = []
        members = self.table.effective_members()
        ids = set(members) | {p for p, peer in self.peers.items() if peer.linked or peer.refusal}
        ids.discard(self.local.peer_id)
        for peer_id in ids:
            rows.append(self._peer_statistics(peer_id, now, conflicts, members))
        rows.sort(key=lambda r: (r.node_index is None, r.node_index or 0, r.peer_id))
        own = conflicts.get(self.local.node_index)
        conflict = None
        if own is not None:
            others = sorted(own - {self.local.peer_id})
            conflict = f"node index {self.local.node_index} is also claimed by {', '.join(others)}"
        alive = 1 + sum(r.state in ("up", "learner") for r in rows)
        return MembershipStatistics(
            self.table.cluster_id, alive, self.is_learner(), conflict, tuple(rows)
        )

    # --------------------------------------------------------------------- internals
    def _account_stall(self, now: float) -> None:
        """If this node has not ticked for much longer than it asked, it was stalled: push
        every peer's last-heard time forward by the stall (see the module docstring). Called
        by queries too, since after a stall a query may run before the first tick."""
        late = now - self._last_tick - self.tick_interval_s
        if late > STALL_GRACE_FACTOR * self.tick_interval_s:
            self.stalled_s += late
            self._conflicts = None
            for peer in self.peers.values():
                if peer.last_heard is not None:
                    peer.last_heard = min(now, peer.last_heard + late)
            self._last_tick = now

    def _peer(self, peer_id: str) -> _Peer:
        peer = self.peers.get(peer_id)
        if peer is None:
            peer = self.peers[peer_id] = _Peer(peer_id)
        return peer

    def _alive(self, peer: _Peer, now: float) -> bool:
        return (
            not peer.left
            and peer.last_heard is not None
            and now - peer.last_heard <= self.down_timeout_s
        )

    def _claims_of_links(self) -> list[Claim]:
        return [
            Claim(p.hello.node_index, p.peer_id)
            for p in self.peers.values()
            if p.linked and p.hello is not None
        ]

    def _send_due(self, peer: _Peer, now: float) -> Output:
        out = Output()
        if now - peer.pings_sent.get(peer.ping, float("-inf")) >= self.heartbeat_interval_s:
            peer.ping += 1
            peer.pings_sent[peer.ping] = now
            peer.pings_sent.pop(peer.ping - PINGS_REMEMBERED, None)
            held_ms = int((now - peer.echo_received_at) * 1000) if peer.echo else 0
            hb = Heartbeat(
                self.local.incarnation, peer.ping, peer.echo, held_ms, self._claims_of_links()
            )
            out.sends.append((peer.peer_id, hb))
        if (
            peer.gossip_version_sent != self.table.version
            or now - peer.gossip_sent_at >= GOSSIP_REFRESH_S
        ):
            peer.gossip_version_sent = self.table.version
            peer.gossip_sent_at = now
            out.sends.append((peer.peer_id, self.table.gossip()))
        return out

    def _maybe_found_cluster(self) -> bool:
        """Node 0 fixes the cluster id at the first formation (see the module docstring)."""
        if self.table.cluster_id is not None or self.local.node_index != 0:
            return False
        linked = [p for p in self.peers.values() if p.linked]
        if any(p.cluster_id is not None for p in linked):
            return False  # adopted through gossip instead, as soon as it arrives
        if 1 + len(linked) < self.local.node_count // 2 + 1:
            return False
        return self.table.adopt_cluster_id(self.new_cluster_id())

    def _forget_old_refusals(self) -> None:
        refused = [p for p in self.peers.values() if p.refusal is not None and not p.linked]
        if len(refused) > MAX_REFUSED_PEERS:
            refused.sort(key=lambda p: p.refused_at)
            for p in refused[: len(refused) - MAX_REFUSED_PEERS]:
                if p.peer_id not in self.table.members:
                    del self.peers[p.peer_id]

    def _peer_statistics(
        self,
        peer_id: str,
        now: float,
        conflicts: dict[int, set[str]],
        members: dict[str, MemberInfo],
    ) -> PeerStatistics:
        peer = self.peers.get(peer_id)
        info = members.get(peer_id)
        hello = peer.hello if peer is not None else None
        node_index = info.node_index if info else (hello.node_index if hello else None)
        member_id = info.member_id if info else (hello.member_id if hello else None)
        reason = None
        if peer is not None and peer.refusal is not None:
            state, reason = "refused", peer.refusal.describe()
        elif node_index is not None and peer_id in conflicts.get(node_index, ()):
            state, reason = "refused", f"duplicate node index {node_index}"
        elif peer is None or not self._alive(peer, now):
            state = "down"
            if peer is not None and peer.left:
                reason = "left"
        elif member_id is not None and self.table.is_learner(node_index or 0, member_id):
            state, reason = "learner", "new member id at this index; admit it to let it vote"
        else:
            state = "up"
        return PeerStatistics(
            node_index=node_index,
            peer_id=peer_id,
            member_id=member_id,
            addresses=tuple(info.addresses) if info else (),
            client_address=info.client_address if info else None,
            state=state,
            heartbeat_age_s=(
                now - peer.last_heard if peer is not None and peer.last_heard is not None else None
            ),
            rtt_s=peer.rtt_s if peer is not None else None,
            incarnation=info.incarnation if info else None,
            reason=reason,
        )
