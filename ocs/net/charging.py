"""The charging loop and the committer: the single writer of all charging
state (docs/architecture.md).

The loop takes every request that arrived since its last turn, from all
peers, as one batch, charges it (`app.process`), and hands the committer a
`Commit`; between batches it runs operators' operations, the sweeps the
clock made due, a new rules version and snapshots. The committer makes
every commit queued since its last turn durable with one journal write,
then hands each peer its answers: nothing is answered before its record is
durable; under load the write runs in a worker thread while the loop
charges the next batch. Usage records are written behind the answers.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import trio

from ..config import Config
from ..diameter import constants as c
from ..diameter.errors import ProtocolError
from ..diameter.message import Frames, error_answer
from ..diameter.peer import LocalIdentity
from ..feeds.notify import Notifier, describe
from ..gy.app import CreditControlApplication
from ..gy.operations import OperationError
from ..metrics import Metrics
from ..rules.compile import RuleSet
from ..store.errors import Fenced
from ..store.interface import Store
from ..store.records import JournalRecord
from .commit import Arrival, Commit, Operation
from .peers import Peer
from .relay import Relay

log = logging.getLogger("ocs.net")
SMALL_GROUP = 128   # requests; a smaller group with nothing else waiting is written inline
USAGE_BACKLOG = 200_000     # journal records whose usage records may wait for the writer


class ChargingLoop:
    def __init__(self, cfg: Config, app: CreditControlApplication, store: Store, metrics: Metrics, reauthorizer,
                 install: Callable[[RuleSet], Commit | None], notifier: Notifier | None = None, usage=None,
                 adopt: Callable[[], bool] | None = None, relay: Relay | None = None):
        self.cfg, self.app, self.store, self.metrics = cfg, app, store, metrics
        self.reauthorizer = reauthorizer
        self._install = install               # a new rules version, between two batches (Server._install)
        self._adopt = adopt                   # state the store took over, between two batches (Installer.adopt)
        self.relay = relay or Relay(LocalIdentity())     # requests for state another node holds (cluster store)
        self.notifier = notifier
        self.usage = usage                    # ocs.feeds.usage.UsageLog: usage records after each durable group
        self._ops: list[Operation] = []       # operations waiting for the loop
        self._pending: list[Arrival] = []     # each read's requests, by peer, and when
        self._work = trio.Event()
        self._next_rules: RuleSet | None = None
        self._snapshot_due = False
        self._expire_due = False
        self._days_due = False
        self._outbox: _Outbox | None = None
        self._durable_seq = store.seq         # the last journal record known durable
        self._durable = trio.Event()
        self.batches = 0
        self.requests = 0
        self.journal_failing: str | None = None   # why the journal cannot be written now, if it cannot
        self._usage_backlog: list[JournalRecord] = []    # records the usage writer has not taken yet

    @property
    def refusing(self) -> str | None:
        """Why requests get 3004 and operations 503 now: the journal cannot
        be written, or the store charges nothing here (a cluster node with
        no slots, or whose lease lapsed); None: charging."""
        return self.journal_failing or self.store.unavailable

    def reload(self, rules: RuleSet) -> None:
        """Install `rules` at the loop's next turn."""
        self._next_rules = rules
        self._work.set()

    def tick(self, day_turned: bool) -> None:
        """The housekeeping second: Tcc supervision due, and the daily summaries if a day turned."""
        self._expire_due = True
        self._days_due = self._days_due or day_turned
        self._work.set()

    @property
    def usage_backlog(self) -> int:
        return len(self._usage_backlog)

    async def durable(self, grace: float) -> None:
        """Wait (within `grace` s) until every record handed to the committer
        is durable: the shutdown snapshot must not hold a change whose record
        is still on its way to the journal (see _begin_snapshot)."""
        with trio.move_on_after(grace):
            while self._outbox is not None and self._durable_seq < self._outbox.seq:
                await self._durable.wait()

    def received(self, peer: Peer, frames: Frames, now: float) -> None:
        """A peer's read: its requests wait for the charging loop's next turn
        (or, while nothing can be charged here, get 3004 at once; or, where
        another node of the cluster holds the state, go there: net/relay.py)."""
        target = self.store.relay_target
        if target is not None and self.journal_failing is None:
            kept = self.relay.forward(peer, frames, target)
            if kept:       # relayed once already: not again
                self._refuse_busy([Arrival(peer, Frames.of(kept), now)], counted=False,
                                  why="relayed here by another node, and this node does not hold the state")
            return
        if self.refusing is not None:
            self._refuse_busy([Arrival(peer, frames, now)], counted=False)   # here: the loop may be waiting
            return
        peer.held += len(frames.data)
        self._pending.append(Arrival(peer, frames, now))
        self._work.set()

    # ------------------------------------------------------------ charging
    async def run(self) -> None:
        """Charge each batch as soon as it is there, while the committer makes
        the previous ones durable: answers wait for their journal record, the
        charging does not wait for the disk."""
        channel, recv = trio.open_memory_channel(4)
        send = self._outbox = _Outbox(channel)
        async with trio.open_nursery() as n:
            self._usage_send, usage_recv = trio.open_memory_channel(256)
            if self.usage is not None:
                n.start_soon(self._usage_writer, usage_recv)
            n.start_soon(self._committer, recv, n)
            while True:
                await self._work.wait()
                self._work = trio.Event()
                if self.store.fenced is not None:
                    raise Fenced(self.store.fenced)     # the node stops; its held answers are never sent
                if self._adopt is not None:
                    self._adopt()
                if self.refusing is not None:
                    # nothing that needs a write: requests get 3004, operations 503;
                    # sweeps, snapshots and rules versions wait for the disk
                    batch, self._pending = self._pending, []
                    self._refuse_busy(batch)
                    self._refuse_ops()
                    continue
                if self._snapshot_due:
                    self._snapshot_due = False
                    await self._begin_snapshot(n, send.seq)
                if self._next_rules is not None:
                    installed = self._install(self._next_rules)
                    self._next_rules = None
                    if installed is not None:
                        await send.send(installed)
                ops, self._ops = self._ops, []
                for op in ops:
                    commit = self._run(op)
                    if commit is not None:
                        await send.send(commit)
                for commit in self._sweeps():
                    await send.send(commit)
                batch, self._pending = self._admit(self._pending)
                if self._pending:
                    self._work.set()        # the rest in the next turn
                if batch:
                    await send.send(self._charge(batch))

    def _run(self, op: Operation) -> Commit | None:
        """An operation between two batches: its commit, which wakes it once
        durable; None when it was refused (or failed: the caller hears of it)."""
        try:
            done = op.fn(self.store, self.app.rules, time.time())
        except Exception as e:       # refused (OperationError) or a bug
            if op.done is None:
                log.exception("internal operation failed")
            op.fail(e)
            return None
        op.result = done.result
        return Commit(done.record, operation=op, reauthorize=self.app.sessions_to_reauthorize(done))

    def _sweeps(self) -> list[Commit]:
        """What the clock made due: session supervision (Tcc), the daily summaries at local midnight."""
        commits = []
        if self._expire_due:
            self._expire_due = False
            record = self.app.expire(time.time())
            if record is not None:
                commits.append(Commit(record))
        if self._days_due:
            self._days_due = False
            now = time.time()
            record, events = self.app.close_days(now)
            if record is not None:
                commits.append(Commit(record, notices=self._describe(events, now)))
        return commits

    def _charge(self, batch: list[Arrival]) -> Commit:
        frames = Frames.join([a.frames for a in batch])
        now = time.time()
        result = self.app.process(frames, now)
        if result.opened:
            self.reauthorizer.remember_via(batch, result.opened)
        self.metrics.count(result.types, result.results)
        self.metrics.count_units(result.units)
        self.batches += 1
        self.requests += len(frames)
        return Commit(result.record, tuple(batch), result.answers, self._describe(result.events, now))

    def _describe(self, events, now: float):
        if events is None or self.notifier is None:
            return None
        return describe(events, self.app.rules, self.store.label, now)

    def _refuse_ops(self) -> None:
        ops, self._ops = self._ops, []
        for op in ops:
            op.fail(OperationError(503, f"nothing can be charged here now ({self.refusing}); "
                                        f"nothing was changed: try again later"))

    def _refuse_busy(self, batch: list, counted: bool = True, why: str | None = None) -> None:
        """While the journal cannot be written nothing is charged: each
        request gets 3004 DIAMETER_TOO_BUSY (RFC 6733 7.1.3: the gateway may
        go to another server), which needs no write."""
        err = ProtocolError(c.TOO_BUSY, f"nothing can be charged here now ({why or self.refusing})")
        origin = self.app.identity.origin_avps
        for a in batch:
            answers = [error_answer(f, err, origin) for f in a.frames]
            a.peer.deliver(answers, len(a.frames.data) if counted else 0)
        n = sum(len(a.frames) for a in batch)
        self.metrics.count(np.zeros(n, np.int32), [c.TOO_BUSY] * n)

    def _admit(self, pending: list) -> tuple[list, list]:
        """The reads to charge this turn, and those left for the next: each
        peer brings at most `batch_peer_kb` of requests (its first read in
        any case, in order), so one peer sending huge or countless requests
        cannot hold the loop while the others wait."""
        limit = self.cfg.batch_peer_kb << 10
        taken: dict[int, int] = {}
        batch, rest, held = [], [], set()
        for a in pending:
            ident, size = a.peer.ident, taken.get(a.peer.ident, 0)
            if ident in held or (size and size + len(a.frames.data) > limit):
                held.add(ident)
                rest.append(a)
                continue
            taken[ident] = size + len(a.frames.data)
            batch.append(a)
        return batch, rest

    async def _begin_snapshot(self, nursery: trio.Nursery, sent: int) -> None:
        """Capture the state for a snapshot once everything charged so far
        is journaled: a snapshot must not hold a change whose record could
        still be lost (its answer not sent), or a crash would keep the
        change and the gateway's retransmission would apply it again. The
        capture is on the loop, between batches; the writing in a thread."""
        while self._durable_seq < sent:
            await self._durable.wait()
        job = self.store.begin_snapshot()
        if job is not None:
            nursery.start_soon(self._snapshot_job, job)

    async def _snapshot_job(self, job) -> None:
        """Write the snapshot in a thread; while the disk refuses, try again
        every 10 s (the journal it replaces holds everything meanwhile)."""
        while True:
            try:
                await trio.to_thread.run_sync(job)
                return
            except OSError as e:
                self.metrics.write_errors.labels("snapshot").inc()
                log.error("the snapshot cannot be written (%s); the journal holds everything; trying again in "
                          "10 s", e)
                await trio.sleep(10)

    async def _write_journal(self, records: list[JournalRecord], threaded: bool) -> None:
        """Make records durable; while the disk refuses (full, failing), keep
        trying every second with their answers held: nothing is answered
        2001 before its record is durable, and meanwhile the charging loop
        answers new requests 3004 instead of charging them (`journal_failing`)."""
        store = self.store
        while True:
            try:
                if threaded:
                    # under load: charge the next batch while the disk works
                    await trio.to_thread.run_sync(store.write, *records)
                else:
                    # idle: a thread hand-off would cost more than the fsync itself
                    store.write(*records)
            except OSError as e:
                if self.journal_failing is None:
                    log.error("the journal cannot be written (%s): new requests get 3004 DIAMETER_TOO_BUSY until "
                              "it can; %d records wait for the disk", e, len(records))
                self.journal_failing = str(e)
                self.metrics.journal_failing.set(1)
                self.metrics.write_errors.labels("journal").inc()
                await trio.sleep(1)
                continue
            if self.journal_failing is not None:
                log.warning("the journal is written again: charging resumes")
                self.journal_failing = None
                self.metrics.journal_failing.set(0)
                self._work.set()
            return

    async def _committer(self, recv: trio.MemoryReceiveChannel, nursery: trio.Nursery) -> None:
        store = self.store
        while True:
            group = [await recv.receive()]
            while True:
                try:
                    group.append(recv.receive_nowait())
                except trio.WouldBlock:
                    break
            records = [commit.record for commit in group if commit.record is not None]
            if records:
                started = time.perf_counter()
                await self._write_journal(records, threaded=not store.inline_writes or bool(self._pending) or
                                          sum(commit.requests for commit in group) > SMALL_GROUP)
                self.metrics.journal_seconds.observe(time.perf_counter() - started)
                self._durable_seq = records[-1].seq
                # wake every waiter (_begin_snapshot, shutdown): each waits on the event of its time
                woken, self._durable = self._durable, trio.Event()
                woken.set()
            self._deliver(group)
            if self.usage is not None and records:
                self._queue_usage(records)               # after the answers: not on their path
            if store.journal_bytes >= self.cfg.snapshot_journal_mb << 20:
                self._snapshot_due = True
                self._work.set()

    def _deliver(self, group: list[Commit]) -> None:
        """Once durable: each peer all its answers as one buffer, then the
        notices, the operations woken, the sessions to re-authorize."""
        ready: dict[Peer, list[bytes]] = {}
        request_bytes: dict[Peer, int] = {}
        changed = []
        arrived: list[tuple[float, int]] = []
        for commit in group:
            if commit.operation is not None:
                commit.operation.finish()          # durable now
            if commit.reauthorize is not None and len(commit.reauthorize):
                changed.append(commit.reauthorize)
            if commit.notices:
                self.notifier.emit(commit.notices)
            at = 0
            for a in commit.arrivals:
                arrived.append((a.at, len(a.frames)))
                ready.setdefault(a.peer, []).extend(commit.answers[at:at + len(a.frames)])
                request_bytes[a.peer] = request_bytes.get(a.peer, 0) + len(a.frames.data)
                at += len(a.frames)
        for peer, answers in ready.items():
            peer.deliver(answers, request_bytes[peer])
        if arrived:
            now = trio.current_time()
            self.metrics.latency.observe_many("CCR", [now - t for t, _ in arrived], [n for _, n in arrived])
        if changed and self.cfg.reauth:
            self.reauthorizer.queue(np.unique(np.concatenate(changed)))

    def _queue_usage(self, records: list[JournalRecord]) -> None:
        """Hand durable records to the usage writer without ever waiting for
        it: what it has not taken waits here (bounded: beyond USAGE_BACKLOG
        records the oldest are left to the next start, which writes what the
        journal holds beyond the last usage record written)."""
        self._usage_backlog.extend(records)
        if len(self._usage_backlog) > USAGE_BACKLOG:
            dropped = len(self._usage_backlog) - USAGE_BACKLOG
            del self._usage_backlog[:dropped]
            log.error("usage records of %d journal records left to the next start (the usage writer is behind)",
                      dropped)
        try:
            self._usage_send.send_nowait(None)
        except trio.WouldBlock:
            pass                        # it is awake already

    async def _usage_writer(self, recv: trio.MemoryReceiveChannel) -> None:
        """Usage records of what the committer made durable, in a worker
        thread, behind the answers. A write that fails (a full disk) is
        tried again every few seconds and never stops the server; whatever
        a crash leaves unwritten is written at the next start from the
        journal (UsageLog.catch_up)."""
        async for _ in recv:
            while self._usage_backlog:
                records, self._usage_backlog = self._usage_backlog, []
                try:
                    await trio.to_thread.run_sync(self.usage.write, records)
                except OSError as e:
                    self._usage_backlog[:0] = records
                    self.metrics.write_errors.labels("usage").inc()
                    log.error("usage records cannot be written (%s); charging goes on, they wait (%d journal "
                              "records)", e, len(self._usage_backlog))
                    await trio.sleep(5)

    def run_internal(self, fn) -> None:
        """Run `fn` like `submit`, for the server itself: nobody waits for
        it; a failure is logged."""
        self._ops.append(Operation(fn, waited=False))
        self._work.set()

    async def submit(self, fn):
        """Run `fn(store, rules, now) -> operations.Done` on the charging loop,
        between batches; return its result once its record is durable.
        Raises what the operation raised (OperationError for a refusal)."""
        if self.refusing is not None:
            raise OperationError(503, f"nothing can be charged here now ({self.refusing}); "
                                      f"nothing was changed: try again later")
        op = Operation(fn)
        self._ops.append(op)
        self._work.set()
        try:
            await op.done.wait()
        except trio.Cancelled:
            if any(o is op for o in self._ops):
                self._ops.remove(op)      # not started: it never runs
            else:
                # started: it happens; return only once it is durable, so a
                # caller that gives up never reports the old state as current
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 30):
                    await op.done.wait()
            raise
        return op.outcome()


class _Outbox:
    """The charging loop's side of the channel to the committer; remembers
    the last journal record it handed over."""

    def __init__(self, channel: trio.MemorySendChannel):
        self.channel = channel
        self.seq = 0

    async def send(self, commit: Commit) -> None:
        if commit.record is not None:
            self.seq = commit.record.seq
        await self.channel.send(commit)
