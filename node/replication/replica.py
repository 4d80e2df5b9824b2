"""One partition's replica: terms, promises, adoption, quorum confirmation. Sans-I/O.

Theory of operation (ARCHITECTURE's cluster section; cluster-safety.md names the scenarios).

A replica is a follower, a candidate or the leader of its partition. Everything it knows durably
is in its storage: the log (every entry carries the term it was written in), and the promise
(term, candidate, incarnation). It changes them only through its storage adapter, whose writes
are queued and reported durable later (``written``); a message that depends on a write is held
until every write issued before it is durable (the persist-then-send rule), and an
acknowledgement of a lower term is never sent once a higher term was promised.

Leadership. The partition's replicas are ordered by placement. A replica campaigns only when it
has heard no leader for the election timeout, has itself been up that long, is a voter (not a
learner), and is the first live voter in the order; the r-th live voter waits r heartbeat
intervals longer, so the others only step in when the first cannot. A campaigner that finds
its log far behind the best one among its voters is not caught up: rather than fetch the gap
before taking writes, it asks that replica to campaign (once, until a leader is heard).
Leadership is sticky: a replica refuses to promise while it hears a leader of its promised term
(a refusal changes nothing), and a leader refuses unless it asked for the handover itself.
Failback to the preferred replica, and a graceful stop, are explicit handovers.

Campaign. The candidate makes its own promise of term = (highest term it knows) + 1 durable,
then asks the other replicas. A replica grants iff the term is higher than its stored promise
(or the request repeats the promise it made: same term, candidate and incarnation), persists
the promise, and answers with its last accepted entry and its watermark once those entries are
durable. With grants from a majority of the replica set (itself included; learners never grant),
the candidate adopts the most up-to-date log among them (highest term of the last entry, then
highest sequence), fetching what it lacks from that replica (fenced by the term: a source that
promised another term since refuses, and the candidate gives up). Every entry below the highest
watermark R reported is confirmed. The candidate replaces its log from min(R, its own watermark)
with the adopted entries, those at and above R rewritten in its own term, as one atomic storage
operation, and becomes leader. It accepts new writes once that rewritten tail is confirmed. The
rewritten tail reaches each follower whole, in one frame written atomically: persisted
watermarks are only lower bounds, so R can lie below entries some replica already confirmed,
and a replica holding only part of the rewrite would carry the new term on a log missing
confirmed entries, and win a later adoption over replicas that hold them.

Replication. The leader sends each follower whole transactions after the follower's last known
match, as Append frames carrying the previous (term, sequence) and the leader's watermark; an
empty frame is a heartbeat. A follower accepts a frame only if it extends its log at the
previous entry; an entry of another term at the same sequence is discarded with everything after
it, and the frame's entries appended, as one atomic storage operation; conflicts are decided by
(sequence, term) only, never by event id. Otherwise it answers with its last entry and the terms
of its unconfirmed tail, and the leader resends from the point where the two logs agree, found
in one round trip. There is no reorder buffer. Entries below a replica's own watermark are
confirmed and never discarded: they match the leader's whatever their term label (persisted
watermarks are lower bounds, so a new leader may rewrite entries some replica already exposed).

Confirmation. The leader's watermark moves to s when a majority of voters (the leader counted
once its own write is durable) has acknowledged the entry before s in frames of the leader's
current term, and only ever to a transaction's end: copies written in older terms never count
(Raft's figure 8). A follower's watermark is max(current, min(leader's watermark, the last
sequence it verified against the leader's log in the leader's current term, its own durable
end)). A watermark never decreases and never exceeds the node's own durable end.

Broken invariants raise AssertionError through ``_check`` (kept under python -O) and stop the
node: a replica whose state can no longer be trusted must not answer.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sierradb.storage import Discarded, Event, Promise

from .messages import (
    EMPTY,
    Append,
    AppendReply,
    FetchReply,
    FetchRequest,
    Handover,
    Position,
    PromiseReply,
    PromiseRequest,
    ReplicationMessage,
)
from .storage import DONE, ReplicaStorage

_FIRST_CHANGED = operator.itemgetter(2)  # of a queued write: [issued, token, first_changed]

# A frame carries at most this many entries (more only when one transaction is larger).
MAX_FRAME_ENTRIES = 256
# The terms of a follower's unconfirmed tail sent back on a mismatch.
MAX_TERM_HINTS = 64
# The leader accepts no new writes while this many entries wait for confirmation (the
# unconfirmed tail stays small, so a new leader's rewrite is small: cluster-safety S2).
MAX_UNCONFIRMED_ENTRIES = 10_000
# Entries sent to one follower and not acknowledged yet (frames are pipelined up to this).
MAX_INFLIGHT_ENTRIES = 4_096
# A campaigner whose log ends further than this behind the best log among its voters is not
# caught up: it hands the campaign to that replica (cluster-safety L1 d).
CAUGHT_UP_ENTRIES = 1_024


def _check(condition: bool, message: str) -> None:
    """A broken invariant: stop (an explicit raise, so python -O cannot remove it)."""
    if not condition:
        raise AssertionError(message)


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class View(Protocol):
    """What the replica asks membership."""

    def is_up(self, node: int) -> bool: ...
    def is_voter(self, node: int) -> bool: ...
    def identity(self, node: int) -> object:
        """Who holds the index now (its member id): a new one has none of the old one's log."""
        ...


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    partition: int
    node: int
    incarnation: int
    replicas: tuple[int, ...]  # placement order, preferred leader first
    heartbeat_interval_s: float
    election_timeout_s: float
    frame_entries: int = MAX_FRAME_ENTRIES  # smaller in the simulator: transactions span frames
    caught_up_entries: int = CAUGHT_UP_ENTRIES  # smaller in the simulator: deferrals happen

    @property
    def quorum(self) -> int:
        return len(self.replicas) // 2 + 1


@dataclass
class _Follower:
    next: int  # the next sequence to send
    acked_at: float  # when it last answered
    identity: object  # the member holding the index when this state began
    match: int = -1  # acknowledged in the current term
    sent_at: float = float("-inf")  # of the last frame
    told: int = -1  # the watermark the last frame carried


@dataclass
class _Campaign:
    term: int
    started: float
    votes: dict[int, PromiseReply] = field(default_factory=dict)
    source: int | None = None  # fetching the adopted log from this replica
    start: int = 0  # the replacement starts here
    rewrite_from: int = 0  # R: entries from here on are rewritten in the new term
    end: int = -1  # the adopted log's last sequence
    fetched: list[Event] = field(default_factory=list)
    fetch_sent: float = float("-inf")
    may_defer: bool = False  # a campaign on timeout: it yields to a replica far ahead


@dataclass(frozen=True, slots=True)
class ReplicaStatistics:
    partition: int
    role: str
    term: int
    leader: int | None
    watermark: int
    last: Position
    accepting: bool
    fresh: bool  # restarted and not yet heard from its leader
    followers: tuple[tuple[int, int, int], ...]  # (node, match, lag)


class Replica:
    def __init__(
        self, config: ReplicaConfig, storage: ReplicaStorage, view: View, now: float
    ) -> None:
        self.config = config
        self.storage = storage
        self.view = view
        self.started = now
        self.promise = storage.promise()
        self.max_term_seen = self.promise.term
        self.role = Role.FOLLOWER
        self.leader: int | None = None
        self.leader_term = 0
        self.leader_heard = float("-inf")
        self.campaign: _Campaign | None = None
        self.last_campaign = float("-inf")
        # The log above the watermark, in memory (entries below it are confirmed and read from
        # storage): ``tail[i]`` is the entry at ``tail_start + i``.
        self.tail_start = storage.watermark()
        self.tail: list[Event] = list(storage.unconfirmed())
        self.base_term = self._stored_term(self.tail_start - 1)
        _check(
            all(e.partition_sequence == self.tail_start + i for i, e in enumerate(self.tail)),
            f"partition {config.partition}: stored tail is not contiguous",
        )
        # Writes in flight, in issue order: [issue number, token, first sequence it changes].
        self._writes: list[list] = []
        self._issued = 0
        self._durable_issue = 0  # every write with a number <= this is durable
        # Messages waiting for writes: (issue number they wait for, destination, message).
        self._held: list[tuple[int, int, ReplicationMessage]] = []
        self._outbox: list[tuple[int, ReplicationMessage]] = []
        # Confirmation.
        self.confirmed = self.storage.watermark()  # the cluster's watermark as known here
        self.verified = -1  # follower: last sequence verified against the current leader's log
        self.followers: dict[int, _Follower] = {}
        self.rewrite_from = 0  # leader: entries from here on were (re)written in its term
        self.accept_from = 0  # leader: writes are accepted once this is confirmed
        self.handing_over = False  # leader: no new writes; waiting for the target to catch up
        self.handover_target = -1
        self.handover_at = 0.0
        self.handover_sent = False
        self.leaving = False  # the node is stopping: it takes no leadership
        self.deferred = False  # yielded a campaign to a replica far ahead; none heard since
        # Follower: the last positive answer sent, (leader, term, match, last), and when.
        self._last_ack: tuple[object, ...] = ()
        self._last_ack_at = float("-inf")
        # Until it has heard its leader (or leads), a restarted replica's watermark is only
        # the lower bound it persisted: reads wait for the leader's (cluster-safety S11).
        self.fresh = len(config.replicas) > 1
        self.watermark_moves: list[int] = []
        self.on_step_down: Callable[[], None] | None = None

    # ---------------------------------------------------------------------- the log
    def last(self) -> Position:
        if self.tail:
            e = self.tail[-1]
            return (e.term, e.partition_sequence)
        if self.tail_start == 0:
            return EMPTY
        return (self.base_term, self.tail_start - 1)

    def term_at(self, sequence: int) -> int | None:
        """The term of the accepted entry at a sequence (None past the end, 0 before 0)."""
        if sequence < 0:
            return 0
        i = sequence - self.tail_start
        if i >= 0:
            return self.tail[i].term if i < len(self.tail) else None
        if i == -1:
            return self.base_term
        return self._stored_term(sequence)

    def _stored_term(self, sequence: int) -> int:
        if sequence < 0:
            return 0
        found = self.storage.confirmed(sequence, 1)
        _check(
            bool(found) and found[0].partition_sequence == sequence,
            f"partition {self.config.partition}: confirmed entry {sequence} is missing",
        )
        return found[0].term

    def entries(self, start: int, limit: int) -> list[Event]:
        """Accepted entries from `start`, at most `limit` (from memory, or confirmed ones from
        storage), cut at a transaction end unless one transaction is larger."""
        if start >= self.tail_start:
            picked = self.tail[start - self.tail_start : start - self.tail_start + limit]
        else:
            picked = self.storage.confirmed(start, min(limit, self.tail_start - start))
        while picked and not picked[-1].txn_last:
            more = self.entries(picked[-1].partition_sequence + 1, self.config.frame_entries)
            if not more:
                break
            cut = next((i for i, e in enumerate(more) if e.txn_last), None)
            if cut is None:
                picked = picked + more
                continue
            picked = picked + more[: cut + 1]
        return list(picked)

    def _trim_tail(self) -> None:
        """Drop entries below the watermark from memory (they are confirmed and durable)."""
        w = self.storage.watermark()
        cut = min(w - self.tail_start, len(self.tail))
        if cut > 0:
            self.base_term = self.tail[cut - 1].term
            del self.tail[:cut]
            self.tail_start += cut

    # ----------------------------------------------------------------------- writes
    def _issue(self, token: object, first_changed: int) -> None:
        self._issued += 1
        self._writes.append([self._issued, None if token is DONE else token, first_changed])
        self._settle()

    @property
    def writing(self) -> bool:
        """Some write is queued and not yet reported durable."""
        return bool(self._writes)

    def durable_end(self) -> int:
        """The end of the durable prefix of the log as it now is: a queued write that changes
        sequence s (an append from s, or a discard from s) hides s and everything after."""
        end = self.last()[1] + 1
        if self._writes:
            end = min(end, min(map(_FIRST_CHANGED, self._writes)))  # one C loop: many queued
        return end

    def _write_entries(self, events: list[Event]) -> None:
        """Append entries extending the log (queued; durable once reported)."""
        if not events:
            return
        first = events[0].partition_sequence
        _check(
            first == self.last()[1] + 1,
            f"partition {self.config.partition}: entry {first} does not extend the log",
        )
        token = self.storage.append(events)
        self.tail.extend(events)
        self._issue(token, first)

    def _replace_from(self, start: int, events: list[Event]) -> None:
        """Discard the log from `start` and append `events`, atomically."""
        _check(
            start >= self.storage.watermark(),
            f"partition {self.config.partition}: discard from {start} below the watermark",
        )
        if start < self.tail_start:
            # Only a candidate adopting a log reaches below its tail: reload it from there.
            base_term = self._stored_term(start - 1)
            self.tail = self.storage.confirmed(start, self.tail_start - start) + self.tail
            self.tail_start = start
            self.base_term = base_term
        token = self.storage.replace(start, events)
        del self.tail[start - self.tail_start :]
        self.tail.extend(events)
        self._issue(token, start)

    def _save_promise(self, promise: Promise) -> bool:
        """Promise `promise` durably; False (nothing changed) if the storage cannot."""
        try:
            token = self.storage.save_promise(promise)
        except OSError:
            return False  # the old promise stands (the engine replaces the file atomically)
        self.promise = promise
        self.max_term_seen = max(self.max_term_seen, promise.term)
        self._issue(token, self.last()[1] + 1)
        # Never acknowledge a lower term once a higher one is promised.
        self._held = [h for h in self._held if _term_of(h[2]) >= promise.term]
        return True

    def written(self, token: object, error: BaseException | None) -> None:
        """The node reports a write: durable, or failed."""
        if error is not None and not isinstance(error, Discarded):
            # The engine rolled the bucket back to its durable end; this replica's view of its
            # log is no longer the engine's. Start over from what is durable.
            self._reload()
            return
        for w in self._writes:
            if w[1] is token:
                w[1] = None
                break
        self._settle()

    def _settle(self) -> None:
        """Advance the durable point over every write, in issue order, that is done."""
        done = 0
        while done < len(self._writes) and self._writes[done][1] is None:
            done += 1
        if done:
            self._durable_issue = self._writes[done - 1][0]
            del self._writes[:done]
            self._release()
            self._after_durable()

    def written_all(self) -> None:
        """Every write issued so far is durable (a synchronous storage, or a flush of all)."""
        for w in list(self._writes):
            self.written(w[1], None)

    def _reload(self) -> None:
        self._writes.clear()
        self._held.clear()
        self._step_down()
        self.tail_start = self.storage.watermark()
        self.tail = list(self.storage.unconfirmed())
        self.base_term = self._stored_term(self.tail_start - 1)

    # -------------------------------------------------------------------- messaging
    def _send(self, dest: int, message: ReplicationMessage, held: bool = True) -> None:
        """Queue a message; `held` ones leave only after every write issued before them."""
        if not held or self._issued == self._durable_issue:
            self._outbox.append((dest, message))
        else:
            self._held.append((self._issued, dest, message))

    def _release(self) -> None:
        ready = [h for h in self._held if h[0] <= self._durable_issue]
        if ready:
            self._held = [h for h in self._held if h[0] > self._durable_issue]
            self._outbox.extend((dest, msg) for _, dest, msg in ready)

    def outbox(self) -> list[tuple[int, ReplicationMessage]]:
        """Messages ready to send now (the caller sends them in order), without those a later
        one in the same batch supersedes: an acknowledgement followed by a later one to the same
        leader in the same term, an empty frame (heartbeat, commit notice) followed by another
        frame to the same follower. Dropping them is the same as losing them on the wire, which
        the protocol tolerates, and the later message says all they said."""
        out, self._outbox = self._outbox, []
        if len(out) < 2:
            return out
        later: set[tuple[int, int, bool]] = set()  # (dest, term, is an acknowledgement)
        kept: list[tuple[int, ReplicationMessage]] = []
        for dest, message in reversed(out):
            if isinstance(message, AppendReply) and message.ok:
                key = (dest, message.term, True)
                if key in later:
                    continue
                later.add(key)
            elif isinstance(message, Append):
                key = (dest, message.term, False)
                if key in later and not message.entries:
                    continue
                later.add(key)
            kept.append((dest, message))
        kept.reverse()
        return kept

    # -------------------------------------------------------------------- dispatch
    def step(self, sender: int, message: ReplicationMessage, now: float) -> None:
        if isinstance(message, Append):
            self._on_append(message, now)
        elif isinstance(message, AppendReply):
            self._on_append_reply(message, now)
        elif isinstance(message, PromiseRequest):
            self._on_promise_request(message, now)
        elif isinstance(message, PromiseReply):
            self._on_promise_reply(message, now)
        elif isinstance(message, FetchRequest):
            self._on_fetch(message)
        elif isinstance(message, FetchReply):
            self._on_fetch_reply(message, now)
        elif isinstance(message, Handover):
            self._on_handover(message, now)

    def tick(self, now: float) -> None:
        if self.role is Role.LEADER:
            self._replicate(now)
        elif self.role is Role.CANDIDATE:
            self._continue_campaign(now)
        else:
            self._maybe_campaign(now)

    # ------------------------------------------------------------------- following
    def _learn_term(self, term: int, now: float) -> None:
        self.max_term_seen = max(self.max_term_seen, term)
        if term > self.promise.term and self.role is not Role.FOLLOWER:
            self._step_down()

    def _step_down(self) -> None:
        was_leader = self.role is Role.LEADER
        self.role = Role.FOLLOWER
        self.campaign = None
        self.followers = {}
        self.handing_over = False
        if was_leader and self.on_step_down is not None:
            self.on_step_down()

    def _on_append(self, m: Append, now: float) -> None:
        self._learn_term(m.term, now)
        if m.term < self.promise.term:
            self._reply_append(m, ok=False, held=False)
            return
        if m.term > self.promise.term and not self._save_promise(
            Promise(m.term, m.leader, m.incarnation)
        ):
            return  # cannot promise the leader's term: do not follow it
        if self.role is not Role.FOLLOWER:
            self._step_down()
        if m.leader != self.leader or m.term != self.leader_term:
            self.verified = -1
        self.leader, self.leader_term, self.leader_heard = m.leader, m.term, now
        self.deferred = False
        # Below its watermark a replica's entries are confirmed, hence the leader's too: they
        # match whatever term label the leader's copy carries (a new leader rewrites from the
        # highest watermark its voters reported, which can lie below this one's).
        floor = self.storage.watermark()
        prev_term, prev_seq = m.prev
        if prev_seq >= floor and self.term_at(prev_seq) != prev_term:
            self._reply_append(m, ok=False, held=False)
            return
        skip = 0
        for e in m.entries:
            seq = e.partition_sequence
            if seq >= floor and self.term_at(seq) != e.term:
                break
            skip += 1
        fresh = list(m.entries[skip:])
        if fresh:
            first = fresh[0].partition_sequence
            if first <= self.last()[1]:
                self._replace_from(first, fresh)
            else:
                self._write_entries(fresh)
        match = prev_seq + len(m.entries)
        self.verified = max(self.verified, match)
        self.fresh = False
        self.confirmed = max(self.confirmed, min(m.watermark, match + 1))
        said = (m.leader, m.term, match, self.last())
        recent = now - self._last_ack_at < self.config.heartbeat_interval_s / 2
        if m.entries or said != self._last_ack or not recent:
            self._reply_append(m, ok=True, match=match)
            self._last_ack, self._last_ack_at = said, now
        # else: an empty frame (a commit notice) whose answer the leader had from us less than
        # half a heartbeat ago: answering again would tell it nothing (heartbeats still are).
        self._after_durable()

    def _reply_append(self, m: Append, ok: bool, match: int = -1, held: bool = True) -> None:
        terms: tuple[Position, ...] = ()
        if not ok:
            terms = self._term_hints()
        reply = AppendReply(
            m.partition, self.promise.term, self.config.node, ok, match, self.last(), terms
        )
        self._send(m.leader, reply, held=held)

    def _term_hints(self) -> tuple[Position, ...]:
        hints: list[Position] = []
        start = self.storage.watermark()
        previous = None
        for e in self.tail[max(0, start - self.tail_start) :]:
            if e.term != previous:
                hints.append((e.term, e.partition_sequence))
                previous = e.term
                if len(hints) >= MAX_TERM_HINTS:
                    break
        return tuple(hints)

    def _after_durable(self) -> None:
        """Move the visible watermark as far as confirmation and durability allow."""
        if self.role is Role.LEADER:
            self._advance_confirmation()
        target = self.confirmed
        if self.role is Role.FOLLOWER:
            target = min(target, self.verified + 1)
        target = min(target, self.durable_end())
        if target > self.storage.watermark():
            self.storage.set_watermark(target)
            self.watermark_moves.append(target)
            self._trim_tail()

    # -------------------------------------------------------------------- leading
    def local_append(self, events: list[Event], token: object) -> None:
        """The leader's own sequencing queued `events` (storage positions, its term)."""
        _check(self.role is Role.LEADER, "local append on a replica that does not lead")
        _check(
            events[0].partition_sequence == self.last()[1] + 1,
            f"partition {self.config.partition}: local append does not extend the log",
        )
        _check(all(e.term == self.promise.term for e in events), "local append of another term")
        self.tail.extend(events)
        self._issue(token, events[0].partition_sequence)

    def can_accept(self) -> bool:
        """Whether the leader takes new writes: its adopted tail is confirmed, it is not
        handing over, and its unconfirmed tail is below the bound."""
        return (
            self.role is Role.LEADER
            and not self.handing_over
            and self.confirmed >= self.accept_from
            and self.last()[1] + 1 - self.confirmed < MAX_UNCONFIRMED_ENTRIES
        )

    def replicate(self, now: float) -> None:
        """Send followers what they lack (after local appends; ``tick`` does it too)."""
        if self.role is Role.LEADER:
            self._replicate(now)

    def notify_followers(self, now: float) -> None:
        """Tell each follower that has not heard it the new watermark now (an empty frame if
        nothing else is due), rather than with the next heartbeat: their readers and
        subscribers wait on it."""
        for f in self.followers.values():
            if f.told < self.confirmed:
                f.sent_at = float("-inf")
        self._replicate(now)

    def _replicate(self, now: float) -> None:
        if self.handing_over:
            self._continue_handover(now)
        else:
            self._maybe_fail_back(now)
        term = self.promise.term
        last_seq = self.last()[1]
        for node in self.followers:
            f = self._follower(node, now)
            assert f is not None
            if f.next > f.match + 1 and now - f.acked_at > self.config.election_timeout_s / 2:
                f.next = f.match + 1  # frames unanswered for long: resend from the match
                f.acked_at = now
            due = now - f.sent_at >= self.config.heartbeat_interval_s
            room = f.next - 1 - f.match < MAX_INFLIGHT_ENTRIES
            if (f.next > last_seq or not room) and not due:
                continue
            limit = self.config.frame_entries
            if f.next < self.accept_from:
                # The tail this leader rewrote in its term goes out whole, in one frame (one
                # atomic write on the follower): a replica holding part of it would carry this
                # term on a log that lacks the rest, and could win a later adoption against a
                # replica that holds entries already confirmed (see the module docstring).
                limit = max(limit, self.accept_from - f.next)
            entries = self.entries(f.next, limit) if f.next <= last_seq and room else []
            prev = (self.term_at(f.next - 1) or 0, f.next - 1)
            frame = Append(
                self.config.partition, term, self.config.node, self.config.incarnation,
                prev, tuple(entries), self.confirmed,
            )  # fmt: skip
            self._send(node, frame, held=False)
            f.sent_at, f.told = now, self.confirmed
            if entries:
                f.next = entries[-1].partition_sequence + 1

    def _on_append_reply(self, m: AppendReply, now: float) -> None:
        self._learn_term(m.term, now)
        if self.role is not Role.LEADER or m.term != self.promise.term:
            return
        f = self._follower(m.follower, now)
        if f is None:
            return
        f.acked_at = now
        if m.last[1] < f.match:
            f.match = m.last[1]  # it lost entries it acknowledged: a stale reply, or a lost disk
        if m.ok:
            f.match = max(f.match, m.match)
            f.next = max(f.next, f.match + 1)
            self._after_durable()
        else:
            agreement = self._agreement(m)
            f.match = min(f.match, agreement)
            f.next = max(f.match + 1, agreement + 1)
            f.sent_at = float("-inf")  # resend at once

    def _follower(self, node: int, now: float) -> _Follower | None:
        """A follower's state, started over if another member now holds its index (a wiped
        replica must not count with what its predecessor acknowledged)."""
        f = self.followers.get(node)
        if f is not None and f.identity != self.view.identity(node):
            f = self.followers[node] = _Follower(
                next=self.confirmed, acked_at=now, identity=self.view.identity(node)
            )
        return f

    def _agreement(self, m: AppendReply) -> int:
        """The last sequence where the follower's log agrees with ours (one round trip)."""
        hints = m.terms
        if not hints:
            return min(m.last[1], self.last()[1])

        def follower_term(seq: int) -> int | None:
            term = None
            for t, first in hints:
                if first <= seq:
                    term = t
            return term

        low = hints[0][1] - 1  # below its first unconfirmed entry the logs agree
        high = min(m.last[1], self.last()[1])
        while low < high:
            mid = (low + high + 1) // 2
            if follower_term(mid) == self.term_at(mid):
                low = mid
            else:
                high = mid - 1
        return low

    def _advance_confirmation(self) -> None:
        """Move the confirmation point to what a majority acknowledged in this term."""
        # The leader's own copy counts once durable (its log's entries at and above the rewrite
        # point are all of its term; a queued write hides what it changes).
        own = self.durable_end() - 1
        acks = [own] if self.view.is_voter(self.config.node) else []
        acks += [f.match for node, f in self.followers.items() if self.view.is_voter(node)]
        if len(acks) < self.config.quorum:
            return
        q = sorted(acks, reverse=True)[self.config.quorum - 1]
        # Only ever to a transaction's end.
        while q >= self.confirmed and not self.tail[q - self.tail_start].txn_last:
            q -= 1
        if q + 1 > self.confirmed:
            self.confirmed = q + 1

    # ------------------------------------------------------------------- elections
    def _voters_in_order(self) -> list[int]:
        return [
            n
            for n in self.config.replicas
            if (n == self.config.node or self.view.is_up(n)) and self.view.is_voter(n)
        ]

    def _maybe_campaign(self, now: float) -> None:
        timeout = self.config.election_timeout_s
        if self.leaving or not self.view.is_voter(self.config.node):
            return
        if now - self.started < timeout:
            return
        if now - self.leader_heard < timeout:
            return
        order = self._voters_in_order()
        if self.config.node not in order:
            return
        rank = order.index(self.config.node)
        quiet_since = max(self.leader_heard, self.last_campaign, self.started)
        if now - quiet_since < timeout + rank * self.config.heartbeat_interval_s:
            return
        self._campaign(now, may_defer=not self.deferred)

    def _campaign(self, now: float, handover: bool = False, may_defer: bool = False) -> None:
        term = max(self.promise.term, self.max_term_seen) + 1
        self.last_campaign = now
        if not self._save_promise(Promise(term, self.config.node, self.config.incarnation)):
            return
        self.role = Role.CANDIDATE
        self.campaign = _Campaign(term, now, may_defer=may_defer)
        own = PromiseReply(
            self.config.partition, term, self.config.node, True, term, self.last(),
            self.storage.watermark(),
        )  # fmt: skip
        self.campaign.votes[self.config.node] = own
        request = PromiseRequest(
            self.config.partition, term, self.config.node, self.config.incarnation, self.last(),
            handover,
        )  # fmt: skip
        for node in self.config.replicas:
            if node != self.config.node:
                self._send(node, request)
        self._maybe_elected(now)

    def _continue_campaign(self, now: float) -> None:
        c = self.campaign
        assert c is not None
        if c.source is not None and now - c.fetch_sent > self.config.election_timeout_s:
            self._abandon()  # the source stopped answering (cluster-safety L6)
        elif c.source is None and now - c.started > self.config.election_timeout_s:
            self._abandon()

    def _abandon(self) -> None:
        self._step_down()

    def _on_promise_request(self, m: PromiseRequest, now: float) -> None:
        p = self.promise
        repeat = (m.term, m.candidate, m.incarnation) == (p.term, p.candidate, p.incarnation)
        hears_leader = (
            self.leader is not None
            and self.leader != m.candidate
            and self.leader_term == p.term
            and now - self.leader_heard < self.config.election_timeout_s
        )
        leading = self.role is Role.LEADER
        grant = self.view.is_voter(self.config.node) and (
            repeat or (m.term > p.term and (m.handover or not (hears_leader or leading)))
        )
        if not grant:
            self.max_term_seen = max(self.max_term_seen, m.term)
            reply = PromiseReply(
                m.partition, m.term, self.config.node, False, p.term, self.last(),
                self.storage.watermark(),
            )  # fmt: skip
            self._send(m.candidate, reply, held=False)
            return
        if not repeat:
            if not self._save_promise(Promise(m.term, m.candidate, m.incarnation)):
                return  # no durable promise, no grant (the candidate times out)
            if self.role is not Role.FOLLOWER:
                self._step_down()
            self.leader = None
        reply = PromiseReply(
            m.partition, m.term, self.config.node, True, m.term, self.last(),
            self.storage.watermark(),
        )  # fmt: skip
        self._send(m.candidate, reply)

    def _on_promise_reply(self, m: PromiseReply, now: float) -> None:
        self.max_term_seen = max(self.max_term_seen, m.promised)
        c = self.campaign
        if self.role is not Role.CANDIDATE or c is None or m.term != c.term:
            return
        if not m.granted:
            if m.promised > c.term:
                self._step_down()
            return
        if not self.view.is_voter(m.voter) or c.source is not None:
            return
        c.votes[m.voter] = m
        self._maybe_elected(now)

    def _maybe_elected(self, now: float) -> None:
        c = self.campaign
        assert c is not None
        if c.source is not None or len(c.votes) < self.config.quorum:
            return
        best = max(
            c.votes.values(), key=lambda v: (v.last[0], v.last[1], v.voter == self.config.node)
        )
        rewrite_from = max(v.watermark for v in c.votes.values())
        c.rewrite_from = rewrite_from
        c.end = best.last[1]
        if best.voter == self.config.node:
            c.start = rewrite_from
            self._take_office(self._entries_between(rewrite_from, c.end), now)
            return
        c.start = min(rewrite_from, self.storage.watermark())
        if c.start > c.end:
            # The better log adds nothing this replica lacks above its watermark (its entries
            # below are confirmed, whatever their term labels): nothing to fetch.
            self._take_office([], now)
            return
        if c.may_defer and best.last[1] - self.last()[1] > self.config.caught_up_entries:
            # Far behind: adopting would mean fetching the whole gap before taking writes
            # (cluster-safety L1 d). Ask the replica with the best log to campaign instead;
            # it holds this term's promises of the same majority. Only once until a leader is
            # heard: if it cannot lead, this replica campaigns again and fetches.
            self.deferred = True
            self._step_down()
            self._send(best.voter, Handover(self.config.partition, c.term, self.config.node),
                       held=False)  # fmt: skip
            return
        c.source = best.voter
        self._fetch(c, c.start, now)

    def _entries_between(self, start: int, end: int) -> list[Event]:
        out: list[Event] = []
        while start <= end:
            chunk = self.entries(start, min(self.config.frame_entries, end - start + 1))
            if not chunk:
                break
            out.extend(chunk)
            start = chunk[-1].partition_sequence + 1
        return [e for e in out if e.partition_sequence <= end]

    def _fetch(self, c: _Campaign, start: int, now: float) -> None:
        assert c.source is not None
        c.fetch_sent = now
        self._send(
            c.source, FetchRequest(self.config.partition, c.term, self.config.node, start, c.end),
            held=False,
        )  # fmt: skip

    def _on_fetch(self, m: FetchRequest) -> None:
        p = self.promise
        if (p.term, p.candidate) != (m.term, m.candidate):
            self._send(m.candidate, FetchReply(m.partition, m.term, self.config.node, False, ()))
            return
        entries = self.entries(m.start, self.config.frame_entries)
        entries = [e for e in entries if e.partition_sequence <= m.end]
        self._send(
            m.candidate, FetchReply(m.partition, m.term, self.config.node, True, tuple(entries))
        )

    def _on_fetch_reply(self, m: FetchReply, now: float) -> None:
        c = self.campaign
        if self.role is not Role.CANDIDATE or c is None or m.term != c.term:
            return
        if m.source != c.source:
            return
        if not m.ok:
            self._abandon()
            return
        expected = c.start + len(c.fetched)
        entries = [e for e in m.entries if e.partition_sequence >= expected]
        if not entries or entries[0].partition_sequence != expected:
            self._fetch(c, expected, now)  # a stale or reordered reply: ask again
            return
        c.fetched.extend(entries)
        nxt = c.fetched[-1].partition_sequence + 1
        if nxt <= c.end:
            self._fetch(c, nxt, now)
            return
        self._take_office(c.fetched, now)

    def _take_office(self, adopted: list[Event], now: float) -> None:
        """Replace the log with the adopted one, its unconfirmed part in this term; lead."""
        c = self.campaign
        assert c is not None
        self.fresh = False
        term = c.term
        # Writes queued before the campaign may have become durable since the votes were
        # counted, moving this replica's watermark past where the rewrite starts: its entries
        # below the watermark are confirmed (equal to the adopted ones) and stay as they are.
        floor = self.storage.watermark()
        adopted = [e for e in adopted if e.partition_sequence >= floor]
        start = (
            adopted[0].partition_sequence if adopted else max(min(c.rewrite_from, c.end + 1), floor)
        )
        rewritten = [
            e._replace(term=term) if e.partition_sequence >= c.rewrite_from else e for e in adopted
        ]
        # The log becomes exactly the adopted one: rewritten, and without any entries of its
        # own beyond the adopted end (they are in no majority's log).
        if rewritten or self.last()[1] > c.end:
            self._replace_from(start, rewritten)
        self.role = Role.LEADER
        self.campaign = None
        self.leader, self.leader_term, self.leader_heard = self.config.node, term, now
        self.confirmed = max(self.confirmed, c.rewrite_from)
        self.rewrite_from = c.rewrite_from
        self.accept_from = self.last()[1] + 1
        self.followers = {
            n: _Follower(next=c.rewrite_from, acked_at=now, identity=self.view.identity(n))
            for n in self.config.replicas
            if n != self.config.node
        }
        self._after_durable()
        self._replicate(now)

    # -------------------------------------------------------------------- handover
    def hand_over(self, target: int, now: float) -> bool:
        """Begin handing leadership to `target` (a failback, or a graceful stop): stop taking
        writes, and once `target` has acknowledged the last entry ask it to campaign; the
        leader steps down when the new term reaches it. Abandoned after an election timeout."""
        if self.role is not Role.LEADER or target not in self.followers:
            return False
        if not (self.view.is_up(target) and self.view.is_voter(target)):
            return False
        self.handing_over, self.handover_target = True, target
        self.handover_at, self.handover_sent = now, False
        self._continue_handover(now)
        return True

    def _continue_handover(self, now: float) -> None:
        expired = now - self.handover_at > self.config.election_timeout_s
        if expired or not self.view.is_up(self.handover_target):
            self.handing_over = False  # the target did not take over, or left: lead on
            return
        f = self.followers[self.handover_target]
        if not self.handover_sent and f.match >= self.last()[1]:
            self.handover_sent = True
            self._send(
                self.handover_target,
                Handover(self.config.partition, self.promise.term, self.config.node),
                held=False,
            )

    def _maybe_fail_back(self, now: float) -> None:
        """Leadership returns to the preferred replica once it is back, up for a while and
        caught up (cluster-safety L1: failback is an explicit handover, never a duel)."""
        preferred = self.config.replicas[0]
        if preferred == self.config.node or self.handing_over:
            return
        f = self.followers.get(preferred)
        if f is None or not self.view.is_up(preferred) or not self.view.is_voter(preferred):
            return
        if now - self.leader_heard < self.config.election_timeout_s:
            return  # led for less than a timeout: let the cluster settle first
        recently = now - f.acked_at < 2 * self.config.heartbeat_interval_s
        if self.last()[1] - f.match <= self.config.frame_entries and recently:
            self.hand_over(preferred, now)

    def _on_handover(self, m: Handover, now: float) -> None:
        if m.term != self.promise.term or self.role is not Role.FOLLOWER or self.leaving:
            return
        if self.view.is_voter(self.config.node):
            self._campaign(now, handover=True)

    # ------------------------------------------------------------------ statistics
    def statistics(self) -> ReplicaStatistics:
        last = self.last()
        return ReplicaStatistics(
            partition=self.config.partition,
            role=self.role.value,
            term=self.promise.term,
            leader=self.leader if self.role is not Role.CANDIDATE else None,
            watermark=self.storage.watermark(),
            last=last,
            accepting=self.can_accept(),
            fresh=self.fresh,
            followers=tuple(
                (n, f.match, max(0, last[1] - f.match)) for n, f in self.followers.items()
            ),
        )


def _term_of(message: ReplicationMessage) -> int:
    return message.term
