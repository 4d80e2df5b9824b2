"""The trio shell around this node's replicas: messages in and out, ticks, durability, roles.

Theory of operation. The node holds one ``Replica`` per partition it is a replica of (by
placement). Everything that reaches a replica goes through this service on the event loop, one
call at a time: frames from peers (replication channel), the clock (a tick every quarter
heartbeat), and the bucket writers' reports of durable writes (it is the node's confirmer). After
each call the service sends what the replica queued (through ``Channels``, batched per peer per
write) and, if the replica moved its watermark, wakes waiting appends and subscriptions.

Appends reach a partition through its ``ClusterRole``: where this node leads the partition and
accepts writes, the role sequences the request locally (idempotency decided here, the leader)
and confirms it once the watermark covers it (``confirmations``: by callback, no task per
append); elsewhere it forwards the whole request, as one message on the requests channel, to the
leader it knows (the replica's view, or the preferred order), which answers with the outcome or
NOTLEADER and the leader it knows; the origin retries once on that hint within the deadline,
else TRYAGAIN (``forwarded``: by callback too, from the answer). A forwarded request is never
forwarded again. Batching: a forward leaves when the append is submitted (a client's pipeline
travels together, not one round trip after another), and the leader sends the appends of one
scheduling round to each follower together, in the round after (``replicate_soon``). The node
that answers a client waits, where it holds a replica, until its own watermark covers the append
(read-your-writes on that connection). An append whose fate is not decided by its deadline gets
TIMEOUT, and one whose leader stepped down before confirming it QUORUMFAILED: both mean "outcome
unknown; retry with the same EVENT_ID".
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from sierradb.p2p import FrameError
from sierradb.p2p.channels import REPLICATION_PROTOCOL, REQUESTS_PROTOCOL
from sierradb.storage import Event, Store, Ticket

from ..append import AppendOutcome, AppendRequest, Outcome, Waiter
from ..errors import NodeError, reply_for
from ..leader import stored_events
from ..placement import placement
from ..visibility import WatermarkBoard
from .codec import (
    EventsReply,
    FetchEvents,
    ForwardAppend,
    ForwardRead,
    ForwardReply,
    LookupEvent,
    ReadReply,
    Watermarks,
    WatermarksReply,
    decode,
    encode,
)
from .confirmations import ClusterConfirmation, Deadlines, write_timeout
from .forwarded import ForwardedAppend
from .replica import Replica, ReplicaConfig, ReplicaStatistics, Role
from .storage import PromiseToken, PromiseWrites, StoreStorage, leader_events

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio's own type, as the stubs mypy reads name it

    from sierradb.p2p.runtime import ClusterRuntime

    from ..bucket_writer import BucketWriter

log = logging.getLogger("sierradb.node")

# After a watermark move the leader tells its followers within this long (coalesced).
COMMIT_NOTICE_DELAY_S = 0.002
# How often the watermarks are persisted (one small metadata write per bucket).
WATERMARK_PERSIST_S = 1.0
# Forwarded requests waiting for an answer, at most (more get TRYAGAIN).
MAX_PENDING_FORWARDS = 10_000


# Request ids of one start of a node begin at (incarnation << this) plus a random offset below
# half that step (see first_request_id).
REQUEST_ID_INCARNATION_SHIFT = 40


def first_request_id(incarnation: int) -> int:
    """Where a start's request ids begin. A leader may answer a forward after its origin
    restarted; that answer must not match a new request that reuses the id (the origin would
    acknowledge the new append with the old one's position). The incarnation grows at every
    start, so each start's ids begin above the last start's by at least 2^39; the random offset
    covers a wiped data dir, whose incarnation starts over."""
    offset = random.getrandbits(REQUEST_ID_INCARNATION_SHIFT - 1)
    return (incarnation << REQUEST_ID_INCARNATION_SHIFT) + offset + 1


# A relay asks for at most this many events per request.
MAX_FETCH_EVENTS = 1000

Reply = ForwardReply | ReadReply | EventsReply | WatermarksReply


class PromiseWriteFailed(RuntimeError):
    """A promise could not be made durable: the node stops (see ``PromiseWrites``)."""


@dataclass
class _Pending:
    done: trio.Event | None  # set when the reply comes (None: `on_reply` takes it instead)
    request_id: int
    sent_at: float
    reply: Reply | None = None
    on_reply: Callable[[Reply], None] | None = None


class ReplicationService:
    def __init__(
        self,
        store: Store,
        read: Callable[..., Awaitable[Any]],
        writers: list[BucketWriter],
        board: WatermarkBoard,
        cluster: ClusterRuntime,
        *,
        node_index: int,
        node_count: int,
        replication_factor: int,
        incarnation: int,
        heartbeat_interval_s: float,
        election_timeout_s: float,
        write_timeout_s: float,
    ) -> None:
        self.store = store
        self.read = read  # storage reads for peers, on the node's read threads
        self.writers = writers
        self.board = board
        self.cluster = cluster
        self.node_index = node_index
        self.write_timeout_s = write_timeout_s
        self.election_timeout_s = election_timeout_s
        self.stale_reads = 0
        self.layout = placement(node_count, replication_factor, store.partition_count)
        self.tick_interval_s = heartbeat_interval_s / 4
        now = trio.current_time()
        self.promises = PromiseWrites(store)
        self._promises_flushing = False
        self.replicas: dict[int, Replica] = {}
        for p, order in enumerate(self.layout):
            if node_index in order:
                config = ReplicaConfig(
                    p, node_index, incarnation, order, heartbeat_interval_s, election_timeout_s
                )
                storage = StoreStorage(store, p, self.promises)
                self.replicas[p] = Replica(config, storage, cluster, now)
        self.roles = [ClusterRole(self, p) for p in range(store.partition_count)]
        self._fresh = {p for p, r in self.replicas.items() if r.fresh}
        self._leader_hints: dict[int, int] = {}
        self._pending: dict[int, _Pending] = {}
        self.deadlines = Deadlines()  # led appends confirmed by callback, for their TIMEOUT
        self._request_ids = itertools.count(first_request_id(incarnation))
        self._notice_due = False
        self._moved: set[int] = set()  # led partitions whose watermark moved since the notice
        # Led partitions with local appends not yet sent to followers (see replicate_soon).
        self._to_replicate: dict[int, Replica] = {}
        self._replicate_wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.server: object = None  # the client server, for forwarded reads (set by the CLI)
        self.forwarded = 0

    # ------------------------------------------------------------------- lifecycle
    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        channels = self.cluster.channels
        assert channels is not None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            channels.register(REPLICATION_PROTOCOL, self._on_replication_frame)
            channels.register(REQUESTS_PROTOCOL, self._on_request_frame)
            nursery.start_soon(self._persist_watermarks)
            nursery.start_soon(self._replicate_rounds)
            task_status.started()
            while True:
                await trio.sleep(self.tick_interval_s)
                now = trio.current_time()
                for replica in self.replicas.values():
                    replica.tick(now)
                    self._after(replica)
                self._expire_requests(now)
                self.deadlines.expire(now)

    async def _persist_watermarks(self) -> None:
        """Keep the persisted watermarks recent: after a restart they are where a new leader's
        rewrite starts (a lower bound), so a stale one makes that rewrite larger."""
        while True:
            await trio.sleep(WATERMARK_PERSIST_S)
            await trio.to_thread.run_sync(self.store.persist_watermarks)

    # ------------------------------------------------------------- replica plumbing
    def durable(self, tickets: Sequence[Ticket | PromiseToken]) -> None:
        """The bucket writers' report (this is the node's confirmer), and the promise
        writer's."""
        touched = []
        for ticket in tickets:
            replica = self.replicas.get(ticket.partition_id)
            if replica is not None:
                replica.written(ticket, ticket.error)
                touched.append(replica)
        for replica in dict.fromkeys(touched):
            self._after(replica)

    def _after(self, replica: Replica) -> None:
        """Start queued writes, send what a replica queued; wake who waits on its watermark."""
        if replica.writing:
            self.writers[self.store.bucket_of(replica.config.partition)].kick()
            if self.promises.pending:
                self._schedule_promise_flush()
        for dest, message in replica.outbox():
            peer = self.cluster.peer_at(dest)
            if peer is not None and self.cluster.channels is not None:
                self.cluster.channels.send(peer, REPLICATION_PROTOCOL, encode(message))
        if replica.config.partition in self._fresh and not replica.fresh:
            self._fresh.discard(replica.config.partition)
            self.board.notify()  # reads waiting for it to hear its leader may go on
        if replica.watermark_moves:
            replica.watermark_moves.clear()
            p = replica.config.partition
            self.board.notify([(p, self.store.watermark(p))])
            if replica.role is Role.LEADER:
                self._moved.add(p)
                self._schedule_commit_notice()

    def replicate_soon(self, replica: Replica) -> None:
        """A local append happened: send it (and start its write) once this scheduling round is
        over, so every append of the round leaves in one frame per follower."""
        self._to_replicate[replica.config.partition] = replica
        self._replicate_wake.set()

    async def _replicate_rounds(self) -> None:
        """Runs in the round after the appends that woke it (trio runs a woken task only after
        every task already runnable), so one round's appends are sent, and written, together."""
        while True:
            await self._replicate_wake.wait()
            self._replicate_wake = trio.Event()
            due, self._to_replicate = self._to_replicate, {}
            now = trio.current_time()
            for replica in due.values():
                replica.replicate(now)
                self._after(replica)

    def _schedule_promise_flush(self) -> None:
        if self._promises_flushing or self._nursery is None:
            return
        self._promises_flushing = True
        self._nursery.start_soon(self._flush_promises)

    async def _flush_promises(self) -> None:
        """Make the queued promises durable, all partitions' at once (``PromiseWrites``), and
        report them to their replicas; runs after the current round of messages, so a burst
        of campaigns or grants costs one metadata write per bucket."""
        try:
            while self.promises.pending:
                promises, tokens = self.promises.take()
                try:
                    await trio.to_thread.run_sync(self.store.set_promises, promises)
                except OSError as e:
                    raise PromiseWriteFailed(f"cannot write a promise ({e}); stopping") from e
                self.durable(tokens)
        finally:
            self._promises_flushing = False

    def _schedule_commit_notice(self) -> None:
        if self._notice_due or self._nursery is None:
            return
        self._notice_due = True

        async def notice() -> None:
            await trio.sleep(COMMIT_NOTICE_DELAY_S)
            self._notice_due = False
            now = trio.current_time()
            moved, self._moved = self._moved, set()
            for p in moved:  # only the partitions whose watermark moved since the last notice
                replica = self.replicas[p]
                if replica.role is Role.LEADER:
                    replica.notify_followers(now)
                    self._after(replica)

        self._nursery.start_soon(notice)

    def _on_replication_frame(self, node: int, body: bytes) -> None:
        message = decode(body)
        replica = self.replicas.get(getattr(message, "partition", -1))
        if replica is None:
            raise FrameError(f"a replication message for partition {message!r} not held here")
        replica.step(node, message, trio.current_time())  # type: ignore[arg-type]
        self._after(replica)

    # ------------------------------------------------------------------- leadership
    def leader_of(self, partition: int) -> int | None:
        """The leader this node knows for a partition (None: none known)."""
        replica = self.replicas.get(partition)
        if replica is not None:
            if replica.role is Role.LEADER:
                return self.node_index
            if replica.leader is not None and replica.leader_term == replica.promise.term:
                return replica.leader
            return None
        hint = self._leader_hints.get(partition)
        if hint is not None and self.cluster.is_up(hint):
            return hint
        order = self.layout[partition]
        return next((n for n in order if self.cluster.is_up(n)), None)

    # ------------------------------------------------------------------ forwarding
    async def forward(
        self,
        leader: int,
        message: ForwardAppend | ForwardRead | FetchEvents | LookupEvent | Watermarks,
    ) -> Reply:
        """Send a request to another node and wait for its answer (TIMEOUT at the deadline)."""
        return await self.await_reply(self.send_request(leader, message))

    def send_request(
        self,
        leader: int,
        message: ForwardAppend | ForwardRead | FetchEvents | LookupEvent | Watermarks,
        on_reply: Callable[[Reply], None] | None = None,
    ) -> _Pending:
        """Queue a request for another node now; ``await_reply`` waits for its answer, or
        `on_reply` is called with it (then ``forget_request`` when no longer wanted)."""
        peer = self.cluster.peer_at(leader)
        channels = self.cluster.channels
        if peer is None or channels is None or len(self._pending) >= MAX_PENDING_FORWARDS:
            raise NodeError("TRYAGAIN", f"node {leader} cannot be reached; retry")
        pending = self._pending[message.request_id] = _Pending(
            None if on_reply else trio.Event(), message.request_id, trio.current_time(),
            on_reply=on_reply,
        )  # fmt: skip
        if not channels.send(peer, REQUESTS_PROTOCOL, encode(message)):
            del self._pending[message.request_id]
            raise NodeError("TRYAGAIN", f"node {leader} cannot be reached; retry")
        self.forwarded += 1
        return pending

    async def await_reply(self, pending: _Pending) -> Reply:
        assert pending.done is not None, "a request answered by callback is not awaited"
        try:
            with trio.move_on_after(self.write_timeout_s):
                await pending.done.wait()
            if pending.reply is None:
                raise write_timeout()
            return pending.reply
        finally:
            self._pending.pop(pending.request_id, None)

    def forget_request(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def hint_leader(self, partition: int, node: int) -> None:
        """A leader named in a NOTLEADER answer: forwards go there until it is known better."""
        self._leader_hints[partition] = node

    def _expire_requests(self, now: float) -> None:
        """Forget requests nobody waits for any more whose answer never came (their waiter,
        had it run, timed out long ago): the table stays bounded by live requests."""
        if not self._pending:
            return
        horizon = now - 2 * self.write_timeout_s
        for request_id in [r for r, p in self._pending.items() if p.sent_at < horizon]:
            del self._pending[request_id]

    def next_request_id(self) -> int:
        return next(self._request_ids)

    def _on_request_frame(self, node: int, body: bytes) -> None:
        message = decode(body)
        if isinstance(message, (ForwardReply, ReadReply, EventsReply, WatermarksReply)):
            pending = self._pending.pop(message.request_id, None)
            if pending is None:
                return
            if pending.on_reply is not None:
                pending.on_reply(message)
            else:
                assert pending.done is not None
                pending.reply = message
                pending.done.set()
            return
        assert self._nursery is not None
        if isinstance(message, ForwardAppend):
            self._serve_append(node, message)
        elif isinstance(message, ForwardRead):
            self._nursery.start_soon(self._serve_read, node, message)
        elif isinstance(message, FetchEvents):
            self._nursery.start_soon(self._serve_fetch, node, message)
        elif isinstance(message, LookupEvent):
            self._nursery.start_soon(self._serve_lookup, node, message)
        elif isinstance(message, Watermarks):
            self._serve_watermarks(node, message)
        else:
            raise FrameError(f"unexpected message on the requests channel: {message!r}")

    def _serve_append(self, origin: int, m: ForwardAppend) -> None:
        """Execute a forwarded append as its leader (never forwarding it again); the answer
        goes back from the confirmation's callback (no task per append)."""
        try:
            wait = self.roles[m.request.partition_id].submit_local(m.request)
        except BaseException as exc:  # noqa: BLE001 - mapped to an error reply, or re-raised
            self._answer_forward(origin, m, exc)
            return
        wait.when_done(partial(self._answer_forward, origin, m))

    def _answer_forward(self, origin: int, m: ForwardAppend, outcome: Outcome) -> None:
        if isinstance(outcome, BaseException):
            err = reply_for(outcome)
            if err is None:
                raise outcome
            leader = self.leader_of(m.request.partition_id)
            reply = ForwardReply(m.request_id, None, err.code, err.message,
                                 -1 if leader is None else leader)  # fmt: skip
        else:
            reply = ForwardReply(m.request_id, outcome)
        self._reply(origin, reply)

    async def _serve_read(self, origin: int, m: ForwardRead) -> None:
        from ..commands import execute_forwarded_read

        assert self.server is not None
        reply = await execute_forwarded_read(self.server, m.args, m.protocol)
        self._reply(origin, ReadReply(m.request_id, reply))

    async def fetch_events(
        self, source: int, partition: int, start: int, count: int, wait_ms: int,
        stream_id: bytes = b"", partition_key: bytes = b"",
    ) -> tuple[tuple[Event, ...], int]:  # fmt: skip
        """A relay's request (see ``relay``): visible events from `start` at `source`, and its
        position (watermark, or the stream's next version)."""
        count = min(count, MAX_FETCH_EVENTS)
        message = FetchEvents(
            self.next_request_id(), partition, start, count, wait_ms, stream_id, partition_key
        )
        reply = await self.forward(source, message)
        if not isinstance(reply, EventsReply) or not reply.ok:
            raise NodeError("TRYAGAIN", f"node {source} does not serve partition {partition}")
        return reply.events, reply.position

    async def _ready_to_serve(self, origin: int, m: FetchEvents | LookupEvent) -> bool:
        """A read from a peer is served once this node's replica of the partition may answer
        reads; without a replica here the answer is a refusal at once."""
        if m.partition not in self.replicas:
            self._reply(origin, EventsReply(m.request_id, False, (), 0))
            return False
        await self.ready_to_read(m.partition)
        return True

    async def _serve_fetch(self, origin: int, m: FetchEvents) -> None:
        p, store = m.partition, self.store
        if not await self._ready_to_serve(origin, m):
            return

        def position() -> int:
            if not m.stream_id:
                return store.watermark(p)
            last = store.last_stream_version(p, m.stream_id)
            return 0 if last is None else last + 1

        if m.count and position() <= m.start:
            with trio.move_on_after(m.wait_ms / 1000):
                while position() <= m.start:
                    await self.board.wait_past(p, store.watermark(p))
        events: list[Event] = []
        if m.count and position() > m.start:
            if m.stream_id:
                events, _ = await self.read(
                    store.read_stream, p, m.stream_id, m.start, None, m.count
                )
                events = [e for e in events if e.partition_key == m.partition_key]
            else:
                events, _ = await self.read(store.read_partition, p, m.start, None, m.count)
        self._reply(origin, EventsReply(m.request_id, True, tuple(events), position()))

    async def lookup_event(self, source: int, partition: int, event_id: bytes
                           ) -> tuple[Event | None, int]:  # fmt: skip
        """The inspector's event by id at `source`: the event if visible there, and its
        watermark."""
        reply = await self.forward(source, LookupEvent(self.next_request_id(), partition, event_id))
        if not isinstance(reply, EventsReply) or not reply.ok:
            raise NodeError("TRYAGAIN", f"node {source} does not serve partition {partition}")
        return (reply.events[0] if reply.events else None), reply.position

    async def _serve_lookup(self, origin: int, m: LookupEvent) -> None:
        p, store = m.partition, self.store
        if not await self._ready_to_serve(origin, m):
            return
        event = await self.read(store.get_event, p, m.event_id)  # visible only
        found = () if event is None else (event,)
        self._reply(origin, EventsReply(m.request_id, True, found, store.watermark(p)))

    async def watermarks_at(self, source: int, partitions: Sequence[int]
                            ) -> tuple[tuple[int, int, int], ...]:  # fmt: skip
        """(partition, watermark, leader or -1) of those of `partitions` that `source` holds."""
        reply = await self.forward(source, Watermarks(self.next_request_id(), tuple(partitions)))
        if not isinstance(reply, WatermarksReply):
            raise NodeError("TRYAGAIN", f"node {source} answered {type(reply).__name__}")
        return reply.partitions

    def _serve_watermarks(self, origin: int, m: Watermarks) -> None:
        found = []
        for p in m.partitions:
            if p in self.replicas:
                leader = self.leader_of(p)
                found.append((p, self.store.watermark(p), -1 if leader is None else leader))
        self._reply(origin, WatermarksReply(m.request_id, tuple(found)))

    def _reply(self, node: int, message: Reply) -> None:
        peer = self.cluster.peer_at(node)
        if peer is not None and self.cluster.channels is not None:
            self.cluster.channels.send(peer, REQUESTS_PROTOCOL, encode(message))

    def ready_now(self, partition: int) -> bool:
        """Whether ``ready_to_read`` would return at once."""
        replica = self.replicas.get(partition)
        return replica is None or not replica.fresh

    async def ready_to_read(self, partition: int) -> None:
        """Reads of a partition wait, after a restart, until this replica has heard its leader
        (its persisted watermark is only a lower bound), for at most a down timeout; then they
        are served anyway and counted as stale."""
        replica = self.replicas.get(partition)
        if replica is None or not replica.fresh:
            return
        with trio.move_on_after(self.election_timeout_s):
            while replica.fresh:
                seen = self.board.version
                await self.board.wait_for_change(seen)
            return
        self.stale_reads += 1

    # ------------------------------------------------------------------ statistics
    def statistics(self) -> list[ReplicaStatistics]:
        return [r.statistics() for _, r in sorted(self.replicas.items())]

    async def hand_over_all(self, timeout_s: float) -> None:
        """A graceful stop: hand every partition this node leads to a caught-up follower."""
        now = trio.current_time()
        for replica in self.replicas.values():
            replica.leaving = True
            if replica.role is Role.LEADER:
                for node in replica.config.replicas:
                    if node != self.node_index and replica.hand_over(node, now):
                        break
                self._after(replica)
        with trio.move_on_after(timeout_s):
            while any(r.role is Role.LEADER for r in self.replicas.values()):
                await trio.sleep(0.05)


class ClusterRole:
    """A partition's role toward appends on a cluster node (see the module docstring)."""

    def __init__(self, service: ReplicationService, partition: int) -> None:
        self.service = service
        self.partition = partition

    def submit(self, request: AppendRequest) -> Waiter:
        service = self.service
        replica = service.replicas.get(self.partition)
        if replica is not None and replica.role is Role.LEADER:
            return self.submit_local(request)
        leader = service.leader_of(self.partition)
        if leader is None or leader == service.node_index:
            raise NodeError("TRYAGAIN", f"partition {self.partition} has no leader yet; retry")
        return self._forwarded(request, leader)

    def submit_local(self, request: AppendRequest) -> ClusterConfirmation:
        """Sequence here, as the partition's leader, or refuse with NOTLEADER."""
        service = self.service
        replica = service.replicas.get(self.partition)
        if replica is None or replica.role is not Role.LEADER:
            leader = service.leader_of(self.partition)
            hint = f"; the leader is node {leader}" if leader is not None else ""
            raise NodeError(
                "NOTLEADER", f"this node does not lead partition {self.partition}{hint}"
            )
        live = service.cluster.live_count(replica.config.replicas)
        if live < replica.config.quorum:
            raise NodeError(
                "INSUFFICIENTREPLICAS",
                "insufficient healthy replicas for write quorum "
                f"({live}/{len(replica.config.replicas)} replicas available)",
            )
        store = service.store
        stored = stored_events(store, request) if any(request.supplied_ids) else None
        if stored is not None:
            last = stored[-1].partition_sequence
            outcome = AppendOutcome(
                stored[0].partition_sequence,
                tuple(e.stream_version for e in stored),
                tuple(e.timestamp_ms for e in stored),
            )
            return self._confirmed(replica, last, outcome, stored[-1].event_id)
        if not replica.can_accept():
            raise NodeError("TRYAGAIN", f"partition {self.partition} is taking office; retry")
        ticket = store.append_leader(
            self.partition, request.partition_key, request.transaction_id, request.events,
            replica.promise.term,
        )  # fmt: skip
        events = leader_events(
            self.partition, request.partition_key, request.transaction_id, request.events, ticket
        )
        replica.local_append(events, ticket)
        service.replicate_soon(replica)
        outcome = AppendOutcome(
            ticket.first_sequence,
            tuple(ticket.versions),
            tuple(e.timestamp_ms for e in request.events),
        )
        return self._confirmed(replica, ticket.last_sequence, outcome, events[-1].event_id)

    def _confirmed(
        self, replica: Replica, last: int, outcome: AppendOutcome, event_id: bytes
    ) -> ClusterConfirmation:
        """Confirmed once the watermark covers `last` with the entry still ours (see
        ``confirmations``)."""
        service = self.service
        return ClusterConfirmation(
            service.store, service.board, service.deadlines, replica, last, outcome, event_id,
            service.write_timeout_s,
        )  # fmt: skip

    def _forwarded(self, request: AppendRequest, leader: int) -> ForwardedAppend:
        """Send the request to the leader now (a pipeline of appends goes out together, not
        one round trip after another); confirmed by its answer (see ``forwarded``)."""
        return ForwardedAppend(self.service, self.partition, request, leader)
