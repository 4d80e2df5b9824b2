"""The cluster runtime: the trio shell around the libp2p host and the sans-I/O membership.

Theory of operation. A ``ClusterRuntime`` owns the host, one *link* per peer, the discovery
sources and a ``Membership``. Everything it learns goes into the membership; what comes back is
persisted (cluster id, registry) before any message of it leaves: one ordered persist-then-send
path, ``_apply``.

- A link is one long-lived control stream to a peer. It starts with the handshake (bounded by
  ``HANDSHAKE_TIMEOUT_S``), then carries heartbeats, pongs, gossip and a final ``Leave``. Each
  link has a bounded outbox drained by one sender task that writes everything queued in one
  write. A link that hears nothing for ``down_timeout_s`` closes itself (a silent partition never
  leaves a dead link in place), and the peer's dialer takes over.
- One link per peer: when both ends dial each other at once, the stream opened by the lower peer
  id survives on both ends (the same rule everywhere, so they agree); a new stream from the same
  opener replaces the old one (the peer restarted).
- Dialling: every peer with a known id (gossiped member table, mDNS, ``--peer .../p2p/<id>``) has
  its own reconnect loop with jittered backoff capped at ``BACKOFF_MAX_S``; it sleeps while the
  peer is linked. Addresses without an id (``--peer`` without ``/p2p``, every address a DNS name
  resolves to) have a probe loop that learns the id in the Noise handshake and then behaves the
  same. libp2p's own dial retries and negative cache are bypassed (see ``host``), so a restarted
  peer is linked again within about a second.
- The data channels (replication, forwarded requests) do not ride the link: they use the data
  links (``data_links``), keyed in the link's handshake. Accepting a link admits the peer there;
  losing it forgets the peer and closes its data connections.
- Peer states are logged once per change (up, down, learner, refused with the reason).
"""

from __future__ import annotations

import logging
import random
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .addresses import PeerAddress, parse_peer_address
from .channels import Channels
from .cluster_state import ClusterState
from .data_links import DataLinks, link_key, new_secret
from .discovery import MdnsDiscovery, resolve
from .errors import AddressError, FrameError, P2PError
from .framing import FrameReader, encode_frame
from .handshake import Handshake, Refusal
from .host import Host, Stream
from .identity import peer_id_from_seed
from .member_table import MemberTable
from .membership import LocalNode, Membership, MembershipStatistics, Output
from .messages import PROTOCOL_VERSION, Hello, Leave, Message, decode_message, encode_message

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio's own type, as the stubs mypy reads name it

log = logging.getLogger("sierradb.p2p")
dial_log = logging.getLogger("sierradb.p2p.dial")

HANDSHAKE_TIMEOUT_S = 5.0
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 2.0
# A link that lived this long resets its dialer's backoff.
STABLE_LINK_S = 5.0
# A peer that refused us (or we it) is retried this often: the fix is a config change.
REFUSED_RETRY_S = 10.0
# When both ends know each other, the higher peer id waits this long before its first dial so
# that usually only one stream is opened.
DIAL_DEFER_S = 0.5
# How often DNS names are resolved again (swarm tasks come and go).
DNS_REFRESH_S = 5.0
# Messages queued for one peer; a peer that falls this far behind on control traffic is cut.
OUTBOX_MESSAGES = 256
# How long a graceful shutdown waits for its Leave messages to go out.
LEAVE_FLUSH_S = 1.0


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    cluster_name: str
    secret: bytes | None
    node_count: int
    node_index: int
    replication_factor: int
    partitions: int
    buckets: int
    placement_version: int
    member_id: str
    listen: PeerAddress
    data_port: int  # the data links' listener (0: any free port)
    peers: tuple[PeerAddress, ...]
    mdns: bool
    heartbeat_interval_s: float
    down_timeout_s: float
    client_address: str
    software_version: str


@dataclass(frozen=True, slots=True)
class ClusterStatistics:
    cluster_name: str
    node_count: int
    node_index: int
    replication_factor: int
    peer_id: str
    member_id: str
    incarnation: int
    listen_addresses: tuple[str, ...]
    data_port: int  # the data links' listener (p2p/data_links.py)
    data_refused: int  # data connections refused in their opening exchange
    links: int
    connections: int
    stalled_s: float
    membership: MembershipStatistics


def reachable_client_address(client_address: str, advertised: list[str]) -> str:
    """The client address peers can hand to clients: a wildcard host becomes this node's first
    advertised IP."""
    host, _, port = client_address.rpartition(":")
    bare = host.strip("[]")
    if bare not in ("0.0.0.0", "::") or not advertised:
        return client_address
    ip = parse_peer_address(advertised[0]).host
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _data_hosts(stream: Stream, hello: Hello) -> tuple[str, ...]:
    """Where to reach a peer's data listener: the IP its control link reaches it at, then the
    IPs it advertises."""
    hosts = [stream.remote_host()]
    for text in hello.addresses:
        try:
            hosts.append(parse_peer_address(text).host)
        except AddressError:
            continue  # an address we could not dial anyway
    return tuple(dict.fromkeys(h for h in hosts if h))


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of a (possibly nested) exception group, for a one-line log."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


class _Link:
    def __init__(self, stream: Stream, opener: str, hello: Hello) -> None:
        self.stream = stream
        self.peer_id = stream.peer_id
        self.opener = opener
        self.hello = hello
        self.outbox, self.inbox = trio.open_memory_channel[Message](OUTBOX_MESSAGES)
        self.scope = trio.CancelScope()
        self.closed = trio.Event()
        self.unsent = 0
        self.drained = trio.Event()
        self.drained.set()


class ClusterRuntime:
    def __init__(self, settings: ClusterSettings, seed: bytes, state: ClusterState) -> None:
        self.settings = settings
        self.seed = seed
        self.state = state
        self.peer_id = peer_id_from_seed(seed)
        self.table = MemberTable(self.peer_id, state.cluster_id, state.registry)
        self.host: Host | None = None
        self.data_links: DataLinks | None = None
        self.channels: Channels | None = None
        self.membership: Membership | None = None
        self.local: LocalNode | None = None
        self._leaving = False
        self._links: dict[str, _Link] = {}
        self._peers_by_index: dict[int, list[str]] | None = None  # peer_at, rebuilt on changes
        self._nursery: trio.Nursery | None = None
        self._persist_lock = trio.Lock()
        self._dirty = False
        self._targets_changed = trio.Event()
        self._dialers: dict[str, trio.CancelScope] = {}
        self._static_ids: dict[str, tuple[str, ...]] = {}
        self._mdns: MdnsDiscovery | None = None
        self._logged_states: dict[str, tuple[str, str | None]] = {}
        self._table_version_seen = -1

    # ------------------------------------------------------------------ lifecycle
    async def run(
        self, *, task_status: TaskStatus[ClusterRuntime] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from .addresses import advertised_addresses
        from .logs import route_libp2p_logging

        s = self.settings
        host = self.host = Host(self.seed, s.listen)
        route_libp2p_logging()
        assert host.peer_id == self.peer_id
        async with host.run():
            addresses = advertised_addresses(s.listen, host.listen_port())
            self.local = LocalNode(
                host.peer_id, s.node_index, s.node_count, s.member_id,
                self.state.incarnation, tuple(addresses),
                reachable_client_address(s.client_address, addresses),
            )  # fmt: skip
            self.membership = Membership(
                self.local,
                self.table,
                heartbeat_interval_s=s.heartbeat_interval_s,
                down_timeout_s=s.down_timeout_s,
                now=trio.current_time(),
                new_cluster_id=lambda: uuid.uuid4().hex,
            )
            await self._apply(Output(persist=True))
            data_links = self.data_links = DataLinks(self.peer_id, s.listen.host, s.data_port)
            await data_links.bind()
            host.set_handler(self._on_inbound)
            self.channels = Channels(data_links, self.node_of)
            for address in s.peers:
                if address.peer_id and not address.is_dns:
                    known = self._static_ids.get(address.peer_id, ())
                    self._static_ids[address.peer_id] = (*known, address.multiaddr())
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(data_links.run)
                    await nursery.start(self.channels.run)
                    nursery.start_soon(self._tick_loop)
                    nursery.start_soon(self._dial_supervisor)
                    for address in s.peers:
                        if address.multiaddr(with_peer_id=False) in addresses:
                            continue  # this node's own address, in a list shared by all
                        if address.is_dns:
                            nursery.start_soon(self._supervised, self._dns_loop, address)
                        elif address.peer_id is None:
                            nursery.start_soon(self._supervised, self._probe_loop, address)
                    if s.mdns:
                        await self._start_mdns(addresses, host.listen_port())
                    log.info(
                        "cluster %r: node %d of %d, peer id %s, listening on %s",
                        s.cluster_name, s.node_index, s.node_count, host.peer_id,
                        ", ".join(addresses),
                    )  # fmt: skip
                    task_status.started(self)
                    await trio.sleep_forever()
            finally:
                if self._mdns is not None:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(self._mdns.close)

    async def leave(self) -> None:
        """Graceful shutdown: tell every linked peer we are leaving, so it marks us down now."""
        self._leaving = True
        if self.membership is None:
            return
        for peer_id, message in self.membership.leave():
            self._enqueue(peer_id, message)
        with trio.move_on_after(LEAVE_FLUSH_S):
            for link in list(self._links.values()):
                await link.drained.wait()

    # -------------------------------------------------------------------- queries
    def statistics(self) -> ClusterStatistics:
        assert self.membership is not None and self.local is not None
        return ClusterStatistics(
            cluster_name=self.settings.cluster_name,
            node_count=self.settings.node_count,
            node_index=self.settings.node_index,
            replication_factor=self.settings.replication_factor,
            peer_id=self.peer_id,
            member_id=self.settings.member_id,
            incarnation=self.state.incarnation,
            listen_addresses=self.local.addresses,
            data_port=self.data_links.port if self.data_links is not None else 0,
            data_refused=self.data_links.refused if self.data_links is not None else 0,
            links=len(self._links),
            connections=self.host.connection_count() if self.host is not None else 0,
            stalled_s=self.membership.stalled_s,
            membership=self.membership.statistics(trio.current_time()),
        )

    # ------------------------------------------------- what replication asks of membership
    def node_of(self, peer_id: str) -> int | None:
        """The node index of a peer with an accepted link, unless refused (a duplicate)."""
        link = self._links.get(peer_id)
        if link is None or self.membership is None:
            return None
        index = link.hello.node_index
        if index in self.membership.conflicts(trio.current_time()):
            return None
        return index

    def peer_at(self, node_index: int) -> str | None:
        """The linked peer holding a node index (None if none, or if two claim it)."""
        found = self._by_index().get(node_index)
        if found is None or len(found) != 1 or self.node_of(found[0]) is None:
            return None
        return found[0]

    def is_up(self, node_index: int) -> bool:
        return self.live_count((node_index,)) == 1

    def _by_index(self) -> dict[int, list[str]]:
        """The linked peers by the node index they claim (rebuilt after links change)."""
        if self._peers_by_index is None:
            by_index: dict[int, list[str]] = {}
            for peer_id, link in self._links.items():
                by_index.setdefault(link.hello.node_index, []).append(peer_id)
            self._peers_by_index = by_index
        return self._peers_by_index

    def live_count(self, node_indexes: tuple[int, ...]) -> int:
        """How many of these nodes are up: this one always is; another when a single linked
        peer holds its index, no two claim it, and membership hears that peer. One clock
        reading and one conflicts lookup for them all (a leader asks it of every append)."""
        me = self.settings.node_index
        membership = self.membership
        if membership is None:
            return sum(1 for n in node_indexes if n == me)
        now = trio.current_time()
        conflicts = membership.conflicts(now)
        by_index = self._by_index()
        live = 0
        for n in node_indexes:
            if n == me:
                live += 1
                continue
            found = by_index.get(n)
            if found is not None and len(found) == 1 and n not in conflicts:
                live += membership.is_up(found[0], now)
        return live

    def is_voter(self, node_index: int) -> bool:
        """A replica at this index may grant promises and count toward a quorum: it is not a
        learner (the member there is the one admitted at the index)."""
        if node_index == self.settings.node_index:
            return self.membership is not None and not self.membership.is_learner()
        peer = self.peer_at(node_index)
        if peer is not None:
            return not self.table.is_learner(node_index, self._links[peer].hello.member_id)
        slot = self.table.registry.get(node_index)
        return slot is None or len(slot.member_ids) == 1

    def identity(self, node_index: int) -> object:
        """The member id at an index (linked now, else the admitted one)."""
        if node_index == self.settings.node_index:
            return self.settings.member_id
        peer = self.peer_at(node_index)
        if peer is not None:
            return self._links[peer].hello.member_id
        slot = self.table.registry.get(node_index)
        return min(slot.member_ids) if slot is not None else None

    async def admit(self, node_index: int, member_id: str | None) -> str:
        """Admit the node at an index as a voting member (raises membership.AdmitError)."""
        assert self.membership is not None
        await self._apply(self.membership.admit(node_index, member_id))
        admitted = self.table.registry[node_index].member_ids
        log.warning("admitted member %s at node index %d", ", ".join(admitted), node_index)
        return next(iter(admitted))

    # ---------------------------------------------------------- persist, then send
    async def _apply(self, out: Output) -> None:
        if out.persist:
            self._dirty = True  # set before any await: no later send may overtake the save
        if self._dirty or out.sends:
            async with self._persist_lock:
                if self._dirty:
                    self._dirty = False
                    if self.state.update_from(self.table):
                        await trio.to_thread.run_sync(self.state.save)
                for peer_id, message in out.sends:
                    self._enqueue(peer_id, message)
        if self.table.version != self._table_version_seen:
            self._table_version_seen = self.table.version
            self._targets_changed.set()  # new members may need dialling

    def _enqueue(self, peer_id: str, message: Message) -> None:
        link = self._links.get(peer_id)
        if link is None:
            return
        try:
            link.outbox.send_nowait(message)
        except trio.WouldBlock:
            log.warning("peer %s is not reading its control stream; closing the link", peer_id)
            link.scope.cancel()
            return
        link.unsent += 1
        link.drained = trio.Event() if link.drained.is_set() else link.drained

    async def _tick_loop(self) -> None:
        assert self.membership is not None
        logged_at = 0.0
        while True:
            await trio.sleep(self.membership.tick_interval_s)
            now = trio.current_time()
            await self._apply(self.membership.tick(now))
            if now - logged_at >= self.settings.heartbeat_interval_s:
                logged_at = now
                self._log_state_changes()

    def _log_state_changes(self) -> None:
        assert self.membership is not None
        stats = self.membership.statistics(trio.current_time())
        for peer in stats.peers:
            key = (peer.state, peer.reason)
            before = self._logged_states.get(peer.peer_id)
            if before != key:
                self._logged_states[peer.peer_id] = key
                if before is None and peer.state == "down":
                    continue  # known from gossip, not linked yet: nothing has changed
                level = logging.INFO if peer.state == "up" else logging.WARNING
                log.log(
                    level, "peer %s (node %s) is %s%s", peer.peer_id, peer.node_index,
                    peer.state, f": {peer.reason}" if peer.reason else "",
                )  # fmt: skip

    # ---------------------------------------------------------------------- links
    async def _on_inbound(self, stream: Stream) -> None:
        # libp2p calls this in its own task; the link runs in ours (so a broken invariant stops
        # the node instead of vanishing into the library) and this task waits for it.
        assert self._nursery is not None
        done = trio.Event()

        async def run() -> None:
            try:
                await self._run_link(stream, opener=stream.peer_id)
            finally:
                done.set()

        self._nursery.start_soon(run)
        await done.wait()

    async def _run_link(self, stream: Stream, opener: str) -> bool:
        """Handshake and serve one stream until it ends; True if it became the peer's link.

        A link that fails is logged and closed; its dialer reconnects. A broken invariant
        (AssertionError) is not caught: it stops the node.
        """
        peer_id = stream.peer_id
        accepted = False
        try:
            if peer_id == self.peer_id or self._leaving:
                return False  # dialled ourselves through an address of our own, or stopping
            reader = FrameReader()
            agreed = await self._handshake(stream, reader)
            if agreed is None:
                return False
            hello, data_key = agreed
            link = _Link(stream, opener, hello)
            accepted = self._register(link)
            if accepted:
                assert self.data_links is not None
                self.data_links.admit(
                    peer_id, data_key, _data_hosts(stream, hello), hello.data_port
                )
            assert self.host is not None
            # Whichever link won, the connection that carries it is the only one kept.
            await self.host.keep_one_connection(self._links[peer_id].stream)
            if not accepted:
                return False
            try:
                with link.scope:
                    await self._serve_link(link, reader)
            finally:
                self._unregister(link)
        except* FrameError as group:
            log.warning("peer %s sent a bad frame, closing the link: %s", peer_id, _first(group))
        except* P2PError as group:  # LinkClosed among them: the peer went away
            log.debug("link to %s closed: %s", peer_id, _first(group))
        except* AssertionError:
            raise
        except* Exception as group:
            log.error("link to %s failed, closing it: %r", peer_id, _first(group))
        finally:
            await stream.close()
        return accepted

    async def _handshake(self, stream: Stream, reader: FrameReader) -> tuple[Hello, bytes] | None:
        """The peer's Hello and the link's data key if accepted; None if refused."""
        assert self.membership is not None and self.local is not None
        assert self.data_links is not None
        s = self.settings
        data_secret = new_secret()
        hello = Hello(
            PROTOCOL_VERSION, s.cluster_name, self.table.cluster_id, s.member_id, s.node_index,
            s.node_count, s.replication_factor, s.partitions, s.buckets, s.placement_version,
            self.state.incarnation, self.local.client_address, s.software_version,
            list(self.local.addresses), secrets.token_bytes(16), s.secret is not None,
            self.data_links.port, data_secret,
        )  # fmt: skip
        hs = Handshake(hello, s.secret, self.peer_id, stream.peer_id)
        await self._send_now(stream, hs.start())
        with trio.move_on_after(HANDSHAKE_TIMEOUT_S):
            while not hs.finished:
                await self._send_now(stream, hs.receive(await self._read(stream, reader)))
        if hs.accepted:
            remote = hs.remote
            assert remote is not None
            return remote, link_key(self.peer_id, data_secret, stream.peer_id, remote.data_secret)
        refusal = hs.refusal or Refusal(
            "handshake", "the handshake did not finish in time", transient=True
        )
        self.membership.on_refused(stream.peer_id, refusal, trio.current_time())
        self._log_state_changes()
        return None

    def _register(self, link: _Link) -> bool:
        """Make `link` the peer's link unless the one it already has wins (module docstring)."""
        old = self._links.get(link.peer_id)
        if old is not None:
            lower = min(self.peer_id, link.peer_id)
            if old.opener != link.opener and old.opener == lower:
                return False
            old.scope.cancel()
        self._links[link.peer_id] = link
        self._peers_by_index = None
        return True

    def _unregister(self, link: _Link) -> None:
        if self._links.get(link.peer_id) is link:
            del self._links[link.peer_id]
            self._peers_by_index = None
            assert self.membership is not None and self.data_links is not None
            self.data_links.forget(link.peer_id)
            self.membership.on_link_down(link.peer_id)
        link.closed.set()
        link.drained.set()

    async def _serve_link(self, link: _Link, reader: FrameReader) -> None:
        assert self.membership is not None
        membership = self.membership
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_loop, link)
            await self._apply(membership.on_link_up(link.peer_id, link.hello, trio.current_time()))
            self._log_state_changes()
            while True:
                with trio.move_on_after(self.settings.down_timeout_s) as timer:
                    message = await self._read(link.stream, reader)
                if timer.cancelled_caught:
                    log.warning(
                        "no frame from %s for %.1f s; closing the link",
                        link.peer_id, self.settings.down_timeout_s,
                    )  # fmt: skip
                    break
                await self._apply(membership.on_message(link.peer_id, message, trio.current_time()))
                if isinstance(message, Leave):
                    self._log_state_changes()
                    break
            nursery.cancel_scope.cancel()

    async def _send_loop(self, link: _Link) -> None:
        """Drain the outbox, everything queued in one write."""
        while True:
            batch = [await link.inbox.receive()]
            while True:
                try:
                    batch.append(link.inbox.receive_nowait())
                except trio.WouldBlock:
                    break
            await link.stream.send(b"".join(encode_frame(encode_message(m)) for m in batch))
            link.unsent -= len(batch)
            if link.unsent == 0:
                link.drained.set()

    @staticmethod
    async def _send_now(stream: Stream, messages: Iterable[Message]) -> None:
        data = b"".join(encode_frame(encode_message(m)) for m in messages)
        if data:
            await stream.send(data)

    @staticmethod
    async def _read(stream: Stream, reader: FrameReader) -> Message:
        while True:
            wire = reader.next()
            if wire is not None:
                return decode_message(wire)
            reader.feed(await stream.receive())

    # ------------------------------------------------------------------- dialling
    def _known_addresses(self) -> dict[str, tuple[str, ...]]:
        assert self.membership is not None
        known = dict(self._static_ids)
        if self._mdns is not None:
            for peer_id, addresses in self._mdns.found().items():
                known[peer_id] = (*known.get(peer_id, ()), *addresses)
        for peer_id, addresses in self.membership.dial_targets().items():
            known[peer_id] = (*addresses, *known.get(peer_id, ()))
        known.pop(self.peer_id, None)
        return {p: tuple(dict.fromkeys(a)) for p, a in known.items()}

    async def _dial_supervisor(self) -> None:
        """One reconnect loop per known peer id, started as peers become known and stopped
        when they are no longer."""
        assert self._nursery is not None
        while True:
            self._targets_changed = trio.Event()
            known = self._known_addresses()
            for peer_id in known:
                if peer_id not in self._dialers:
                    scope = self._dialers[peer_id] = trio.CancelScope()
                    self._nursery.start_soon(self._supervised, self._dial_loop, peer_id, scope)
            for peer_id in self._dialers.keys() - known.keys():
                # An identity an admission replaced (a wiped node's old key), or an mDNS
                # announcement withdrawn: stop dialling it.
                self._dialers.pop(peer_id).cancel()
            with trio.move_on_after(1.0):
                await self._targets_changed.wait()

    async def _dial_loop(self, peer_id: str, scope: trio.CancelScope) -> None:
        assert self.host is not None and self.membership is not None
        with scope:
            if self.peer_id > peer_id:
                await trio.sleep(random.uniform(0, DIAL_DEFER_S))
            backoff = BACKOFF_INITIAL_S
            while True:
                await self._wait_unlinked(peer_id)
                started = trio.current_time()
                linked = False
                for text in self._known_addresses().get(peer_id, ()):
                    try:
                        await self.host.dial(parse_peer_address(text), peer_id)
                    except P2PError as e:
                        dial_log.info("cannot reach %s at %s: %s", peer_id, text, e)
                        continue
                    linked = await self._open_link(peer_id)
                    break
                backoff = await self._back_off(peer_id, backoff, linked, started)

    async def _probe_loop(self, address: PeerAddress) -> None:
        """Dial an address whose peer id is unknown until it is learned; then keep it linked."""
        assert self.host is not None
        backoff = BACKOFF_INITIAL_S
        learned: str | None = None
        while True:
            if learned is not None:
                if learned == self.peer_id:  # the address is our own (a shared peer list)
                    await self.host.disconnect(self.peer_id)
                    return
                await self._wait_unlinked(learned)
            started = trio.current_time()
            try:
                learned = await self.host.dial(address, learned)
            except P2PError as e:
                dial_log.info("cannot reach %s: %s", address, e)
                backoff = await self._back_off(learned, backoff, False, started)
                continue
            linked = learned != self.peer_id and (
                learned in self._links or await self._open_link(learned)
            )
            backoff = await self._back_off(learned, backoff, linked, started)

    async def _dns_loop(self, name: PeerAddress) -> None:
        """Keep a probe loop for every address a DNS name resolves to, re-resolving it."""
        assert self._nursery is not None
        probes: dict[PeerAddress, trio.CancelScope] = {}
        while True:
            found = set(await resolve(name))
            for address in found - probes.keys():
                probes[address] = trio.CancelScope()
                self._nursery.start_soon(
                    self._scoped, probes[address], self._supervised, self._probe_loop, address
                )
            for address in probes.keys() - found:
                probes.pop(address).cancel()
            await trio.sleep(DNS_REFRESH_S)

    @staticmethod
    async def _supervised(fn, *args) -> None:  # type: ignore[no-untyped-def]
        """Run a dial, probe or DNS loop; restart it if it fails (a broken invariant stops
        the node)."""
        while True:
            try:
                return await fn(*args)
            except* AssertionError:
                raise
            except* Exception as group:
                log.error("%s failed, restarting it: %r", fn.__name__, _first(group))
            await trio.sleep(BACKOFF_MAX_S)

    @staticmethod
    async def _scoped(scope: trio.CancelScope, fn, *args) -> None:  # type: ignore[no-untyped-def]
        with scope:
            await fn(*args)

    async def _open_link(self, peer_id: str) -> bool:
        """Open the control stream on a fresh connection and run the link; True if it ran."""
        assert self.host is not None
        try:
            stream = await self.host.open_stream(peer_id)
        except P2PError as e:
            dial_log.info("%s", e)
            return False
        return await self._run_link(stream, opener=self.peer_id)

    async def _wait_unlinked(self, peer_id: str) -> None:
        while (link := self._links.get(peer_id)) is not None:
            await link.closed.wait()
        if self._leaving:
            await trio.sleep_forever()

    async def _back_off(
        self, peer_id: str | None, backoff: float, linked: bool, started: float
    ) -> float:
        """Sleep before the next attempt; the backoff to use after it."""
        assert self.membership is not None
        if linked and trio.current_time() - started >= STABLE_LINK_S:
            backoff = BACKOFF_INITIAL_S
        refusal = self.membership.refusal_of(peer_id) if peer_id else None
        delay = REFUSED_RETRY_S if refusal is not None and not refusal.transient else backoff
        await trio.sleep(delay * random.uniform(0.5, 1.0))
        return min(backoff * 2, BACKOFF_MAX_S)

    async def _start_mdns(self, addresses: list[str], port: int) -> None:
        token = trio.lowlevel.current_trio_token()

        def on_found() -> None:  # a zeroconf thread
            try:
                token.run_sync_soon(self._targets_changed.set)
            except trio.RunFinishedError:
                pass

        self._mdns = MdnsDiscovery(
            self.settings.cluster_name, self.peer_id, addresses, port, on_found
        )
        await trio.to_thread.run_sync(self._mdns.start)
