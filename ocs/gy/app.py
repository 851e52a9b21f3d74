"""The credit-control application (RFC 4006, 3GPP TS 32.299 Gy) for a batch.

A batch is every CCR that arrived since the last turn, from all peers. The
steps: decode the whole batch in one compiled call (frames it declines go
through the full decoder); answer retransmissions from the duplicate cache
(Origin-Host + End-to-End-Identifier, RFC 6733 section 6.2) and resolve
subscribers and sessions (`resolve.py`); one engine call charges
everything and one compiled call encodes the answers (`charge.py`); the
sessions move on by the RFC 4006 section 7 table and one journal record
makes the batch durable (here). Nothing here does I/O.
"""
from __future__ import annotations

import numpy as np

from ..diameter import avp as A
from ..diameter import constants as c
from ..diameter import fastccr
from ..diameter.message import Frames
from ..diameter.peer import LocalIdentity
from ..engine import kernel
from ..engine.tables import MSCC, USAGE
from ..rules.compile import RuleSet
from ..store.dedup import fingerprints, packed_fingerprints
from ..store.interface import Store
from ..store.records import ExpiredSession, JournalRecord
from . import cca as CCA
from . import reauth
from . import session
from .answers import Answers
from .batch import Batch, BatchResult, unit_rows
from .charge import Charger
from .resolve import Resolver


class CreditControlApplication:
    def __init__(self, store: Store, rules: RuleSet, identity: LocalIdentity,
                 failure_handling: int = c.CCFH_TERMINATE, refund_hosts: frozenset[bytes] = frozenset(),
                 session_failover: bool = False, max_mscc: int = fastccr.MAX_MSCC):
        self.store = store
        self.max_mscc = max_mscc                # MSCCs one request may carry; more: 5009
        self.identity = identity
        self.ccfh = failure_handling
        # Origin-Host and -Realm, and CC-Session-Failover when another server can
        # take the session over (RFC 4006 8.4: otherwise it is NOT_SUPPORTED, the default)
        self._origin = identity.origin_avps + (
            A.u32(c.AVP_CC_SESSION_FAILOVER, c.FAILOVER_SUPPORTED) if session_failover else b"")
        self.answers = Answers(store, rules, self._origin, failure_handling)   # the answers built one by one
        self.resolver = Resolver(store, self.answers, identity, self._origin, failure_handling, refund_hosts,
                                 max_mscc)
        self.charger = Charger(store, self.answers, self._origin, failure_handling)
        self.set_rules(rules)
        self._days: tuple = ()                  # (rules version, each zone's local day) last seen
        self._realm = fastccr.identity_bytes(identity.origin_realm)
        self._host = fastccr.identity_bytes(identity.origin_host)

    @property
    def refund_hosts(self) -> frozenset[bytes]:
        """Origin-Hosts allowed REFUND_ACCOUNT (configuration); the resolver answers refunds."""
        return self.resolver.refund_hosts

    @refund_hosts.setter
    def refund_hosts(self, hosts: frozenset[bytes]) -> None:
        self.resolver.refund_hosts = hosts

    def set_rules(self, rules: RuleSet) -> None:
        """Charge with `rules` from the next batch on (already installed in the store)."""
        self.rules = self.answers.rules = self.resolver.rules = rules
        self.charger.set_rules(rules)

    def process(self, frames: Frames | list[bytes], now: float) -> BatchResult:
        """Charge a batch: its stages, in order."""
        b = self._decode(frames if isinstance(frames, Frames) else Frames.of(frames), now)
        self.resolver.resolve(b)
        if b.charged:
            self.resolver.answer_repeats(b)
        if b.charged:
            reqs = self.charger.charge(b)
            self.charger.encode(b, reqs)
            self._journal(b, reqs, self._end_sessions(b, reqs))
        elif b.refunds:
            self._journal_refunds(b)
        for i, j in b.copies:
            b.answer(i, CCA.with_hop_by_hop(b.answers[j], b.hbhs[i]), b.results[j])
        return b.result()

    def _decode(self, frames: Frames, now: float) -> Batch:
        """Every request in one compiled call; refunds and price enquiries
        (Cost-Information) go the full path, with what the fast one declined."""
        buf, fr, msccs, used_rows = fastccr.decode_batch(frames, MSCC, realm=self._realm, host=self._host,
                                                         max_mscc=self.max_mscc)
        rare = (fr["type"] == c.EVENT_REQUEST) & ((fr["action"] == c.REFUND_ACCOUNT) |
                                                  (fr["action"] == c.PRICE_ENQUIRY))
        if rare.any():
            fr["fallback"][rare] = 1
        n = len(frames)
        # the duplicate-cache keys (Origin-Host + End-to-End-Identifier) in bulk; a
        # fallback frame's are redone from its full decode
        dedup_keys, packed_keys, key_ends = fastccr.duplicate_keys(buf, fr)
        return Batch(frames, now, buf, fr, msccs, used_rows, [None] * n, [0] * n, fr["hbh"].tolist(),
                     fr["e2e"].tolist(), dedup_keys, packed_fingerprints(packed_keys, key_ends),
                     np.full(n, -1, np.int64), np.full(n, -1, np.int64))

    def _end_sessions(self, b: Batch, reqs: np.ndarray) -> list[ExpiredSession]:
        """Each charged request's session after it, by the RFC 4006 section 7
        table (ocs.gy.session): a refused CCR-I leaves no session behind; a
        refused CCR-U ends it, remembered so the CCR-T that usually follows
        is still debited, as after Tcc. Returns the sessions remembered."""
        store = self.store
        sel = np.array(b.charged, dtype=np.int64)
        sess = reqs["sess"][sel]
        has = sess >= 0
        actions = session.row_actions(reqs["type"][sel][has], reqs["result"][sel][has])
        sess = sess[has]
        ended = []
        for action, mask in actions.items():
            rows = sess[mask].tolist()
            if action is session.RowAction.RELEASE_AND_REMEMBER:
                ended += [ExpiredSession(store.session_meta[row][0], store.session_meta[row][1],
                                         int(store.sessions["sub"][row]), int(store.sessions["last_number"][row]),
                                         b.now) for row in rows]
            if action in (session.RowAction.DISCARD, session.RowAction.RELEASE_AND_REMEMBER):
                for row in rows:
                    kernel.close_session(store.subs, store.sessions, store.sponsors, row)
            # RELEASE: the kernel released a CCR-T's row; KEEP: the kernel restarted Tcc
        store.keep_expired(ended)
        return ended

    def _journal(self, b: Batch, reqs: np.ndarray, ended: list[ExpiredSession]) -> None:
        """The batch's journal record: the rows it changed, new sessions, the
        answers for the duplicate cache, one usage row per reported MSCC."""
        store, charged = self.store, b.charged
        if len(charged) == len(b):
            answered = (list(b.dedup_keys), list(b.answers))
        else:
            done = charged + b.refunds
            answered = ([b.dedup_keys[i] for i in done], [b.answers[i] for i in done])
        fps = b.fps
        if fps is not None and len(charged) != len(b):
            sel = np.array(charged, dtype=np.int64)
            fps = np.concatenate([fps[sel], fingerprints(answered[0][len(charged):])])
        store.remember_answers(*answered, b.now, fps)
        sel = np.array(charged, dtype=np.int64)
        sess = reqs["sess"][sel]
        sess = sess[sess >= 0]
        closed = sess[store.sessions["sub"][sess] < 0]
        dirty_sess = np.concatenate([b.dirty_sess, closed]) if len(closed) else b.dirty_sess
        req_of, rows = unit_rows(reqs, sel)
        b.units = b.msccs.take(rows)       # take: 20x quicker than fancy indexing on records
        usage = self._usage(reqs, b.units, req_of)
        dirty_subs = b.dirty_subs
        if b.moved:
            dirty_subs = np.concatenate([dirty_subs, np.array(b.moved, np.int64)])
        # the Session-Id of each usage row, for usage records and sponsor settlement
        meta = store.session_meta
        usage_sessions = [meta[x][0] if x >= 0 and meta[x] else b""
                          for x in np.frombuffer(usage, USAGE)["sess"].tolist()] if usage else ()
        b.record = store.record(self.rules.version, b.now, dirty_subs, dirty_sess, b.new_sessions, answered, usage,
                                sponsors=b.sponsored, debits=b.debits, expired=ended, usage_sessions=usage_sessions)
        for row in set(closed.tolist()):
            store.release_session_row(row)

    def _journal_refunds(self, b: Batch) -> None:
        """A batch of refunds alone: the money moved and the debits they settled."""
        answered = ([b.dedup_keys[i] for i in b.refunds], [b.answers[i] for i in b.refunds])
        self.store.remember_answers(*answered, b.now)
        b.record = self.store.record(self.rules.version, b.now, np.array(b.moved, np.int64),
                                     np.zeros(0, np.int64), [], answered, b"", debits=b.debits)

    @staticmethod
    def _usage(reqs, m, req_of) -> bytes:
        """One usage row per reported MSCC (`m`: the batch's charged MSCC
        rows, `req_of`: their requests), for the journal (traceability)."""
        if not len(m):
            return b""
        keep = (m["used"] > 0) | (m["used_time"] > 0)
        if not keep.any():
            return b""
        u = np.zeros(int(keep.sum()), USAGE)
        u["req"] = req_of[keep]
        u["sub"] = reqs["sub"][req_of[keep]]
        u["sess"] = reqs["sess"][req_of[keep]]
        for name in ("rg", "used", "used_time", "from_bundle", "charged", "service_id", "sponsor", "sponsored",
                     "sponsor_charged"):
            u[name] = m[name][keep]
        return u.tobytes()

    def day_turned(self, now: float) -> bool:
        """Whether a local midnight of some zone (or a rules version with
        other zones) passed since the last call: the daily summaries are due
        (`close_days`). The first call only notes the day: at start the rows
        know theirs."""
        self.rules.set_clock(now)
        days = (self.rules.version, tuple(self.rules.tables.zones["day"].tolist()))
        turned = days != self._days and bool(self._days)
        self._days = days
        return turned

    def sessions_to_reauthorize(self, done) -> np.ndarray | None:
        """The open sessions an operation's change affects (operations.Done):
        those it names, or those of the subscribers it changed."""
        if done.sessions is not None:
            return done.sessions
        return reauth.sessions_of(self.store, done.reauth) if done.reauth else None

    def sessions_changed_by(self, old: RuleSet) -> np.ndarray:
        """The open sessions whose charging the installed rules change from `old`."""
        return reauth.sessions_changed_by(self.store, old, self.rules)

    def close_days(self, now: float) -> tuple[JournalRecord | None, np.ndarray | None]:
        """At local midnight: the daily summaries of every subscriber with
        usage that day (journal record, events)."""
        self.rules.set_clock(now)
        dirty, events = kernel.daily_sweep(self.store.subs, self.rules.tables, self.store.n_subs)
        if len(dirty) == 0:
            return None, None
        record = self.store.record(self.rules.version, now, dirty, [], [], [], b"")
        return record, events if len(events) else None

    def expire(self, now: float) -> JournalRecord | None:
        """Release reservations of sessions silent past Tcc; the journal record, if any."""
        store = self.store
        store.forget_expired(now)
        dirty_subs, dirty_sess = kernel.expire_sessions(store.subs, store.sessions, store.sponsors, now)
        if len(dirty_sess) == 0:
            return None
        # what a gateway reports for them later, within the grace, is still debited (RFC 4006 7)
        expired = [ExpiredSession(store.session_meta[s][0], store.session_meta[s][1], sub,
                                  int(store.sessions["last_number"][s]), now)
                   for s, sub in zip(dirty_sess.tolist(), dirty_subs[0::3].tolist()) if store.session_meta[s]]
        store.keep_expired(expired)
        # sponsors' held amounts are recounted from the sessions at start: not journaled here
        record = store.record(self.rules.version, now, dirty_subs, dirty_sess, [], [], b"", expired=expired)
        for sess in dirty_sess:
            store.release_session_row(int(sess))
        return record
