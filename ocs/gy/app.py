"""The credit-control application (RFC 4006, 3GPP TS 32.299 Gy) for a batch.

A batch is every CCR that arrived since the last turn, from all peers. The
steps: decode the whole batch in one compiled call (frames it declines go
through the full decoder); answer retransmissions from the duplicate cache
(Origin-Host + End-to-End-Identifier, RFC 6733 section 6.2); resolve
subscribers and sessions; one engine call charges everything; one compiled
call encodes the answers; one journal record makes the batch durable.
Nothing here does I/O.
"""
from __future__ import annotations

import logging
from itertools import repeat

import numpy as np

from ..diameter import avp as A
from ..diameter import constants as c
from ..diameter import fastcca, fastccr
from ..diameter.errors import ProtocolError
from ..diameter.message import Frames, error_answer, find_session_id, parse_header, printable
from ..diameter.peer import LocalIdentity
from ..engine import kernel
from ..engine.tables import MSCC, NO_RG, REQUEST, USAGE
from ..rules.compile import RuleSet
from ..store.records import Debit, ExpiredSession, JournalRecord, NewSession
from ..store.dedup import fingerprints, packed_fingerprints
from ..store.interface import Store
from ..subscriber import E164, IMSI, subscriber_key
from . import cca as CCA
from . import reauth
from . import refund as R
from . import session
from .answers import Answers
from .batch import Batch, BatchResult, unit_rows
from .ccr import CreditControlRequest, decode_ccr

log = logging.getLogger("ocs.gy")
_SUB_KINDS = {c.END_USER_E164: E164, c.END_USER_IMSI: IMSI}


def _slow_keys(ccr: CreditControlRequest) -> list[int]:
    keys = []
    for t, data in ccr.subscription_ids:
        kind = _SUB_KINDS.get(t)
        ok = kind is not None and data.isdigit() and 1 <= len(data) <= 15
        keys.append(subscriber_key(kind, data.decode()) if ok else -1)
    return keys


class CreditControlApplication:
    def __init__(self, store: Store, rules: RuleSet, identity: LocalIdentity,
                 failure_handling: int = c.CCFH_TERMINATE, refund_hosts: frozenset[bytes] = frozenset(),
                 session_failover: bool = False, max_mscc: int = fastccr.MAX_MSCC):
        self.store = store
        self.refund_hosts = refund_hosts        # Origin-Hosts allowed REFUND_ACCOUNT (configuration)
        self.max_mscc = max_mscc                # MSCCs one request may carry; more: 5009
        self.identity = identity
        self.ccfh = failure_handling
        # Origin-Host and -Realm, and CC-Session-Failover when another server can
        # take the session over (RFC 4006 8.4: otherwise it is NOT_SUPPORTED, the default)
        self._origin = identity.origin_avps + (
            A.u32(c.AVP_CC_SESSION_FAILOVER, c.FAILOVER_SUPPORTED) if session_failover else b"")
        self.answers = Answers(store, rules, self._origin, failure_handling)   # the answers built one by one
        self.set_rules(rules)
        self._days: tuple = ()                  # (rules version, each zone's local day) last seen
        self._realm = fastccr.identity_bytes(identity.origin_realm)
        self._host = fastccr.identity_bytes(identity.origin_host)

    def set_rules(self, rules: RuleSet) -> None:
        """Charge with `rules` from the next batch on (already installed in the store)."""
        self.rules = self.answers.rules = rules
        self._filters = fastcca.FilterIds(rules.filters)

    def _subscriber(self, keys) -> int:
        store = self.store
        for key in keys:
            if key >= 0:
                row = store.lookup(key)
                if row >= 0 and store.subs[row]["active"]:
                    return row
        return -1

    def process(self, frames: Frames | list[bytes], now: float) -> BatchResult:
        """Charge a batch: its stages, in order."""
        b = self._decode(frames if isinstance(frames, Frames) else Frames.of(frames), now)
        self._resolve(b)
        if b.charged:
            self._answer_repeats(b)
        if b.charged:
            reqs = self._charge(b)
            self._encode(b, reqs)
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

    def _first_subscribers(self, b: Batch) -> list[int]:
        """The first Subscription-Id of each fast-path CCR-I/E, resolved in bulk (-1: none)."""
        fr, store = b.fr, self.store
        starting = ((fr["type"] == c.INITIAL_REQUEST) | (fr["type"] == c.EVENT_REQUEST)) & (fr["fallback"] == 0)
        first = np.full(len(b), -1, np.int64)
        if starting.any():
            found = store.lookup_many(fr["sub_key"][starting, 0])
            live = found >= 0
            found[live] = np.where(store.subs["active"][found[live]] != 0, found[live], -1)
            first[starting] = found
        return first.tolist()

    def _ongoing(self, b: Batch, sids: list[bytes], stored_all: list) -> np.ndarray:
        """Under load nearly every request is a fast-path CCR-U/T of an open
        session, new (not in the duplicate cache, not twice in the batch),
        from the Origin-Host that opened it: those are settled in bulk (mask)."""
        fr, n, store, keys = b.fr, len(b), self.store, b.dedup_keys
        sessions = list(map(store.session_index.get, sids, repeat(-1, n)))
        req_sess = b.req_sess = np.array(sessions, np.int64)
        ongoing = (fr["fallback"] == 0) & ((fr["type"] == c.UPDATE_REQUEST) | (fr["type"] == c.TERMINATION_REQUEST))
        ongoing &= req_sess >= 0
        if stored_all.count(None) != n:
            ongoing &= np.array([a is None for a in stored_all], bool)
        if fr["fallback"].any():
            b.fps = None              # a full decode's key replaces the fast path's
        if b.fps is None or len(set(keys)) != n:
            ongoing[:] = False        # a key twice (or a full decode's key unknown yet): one at a time
        else:
            meta = store.session_meta
            for i in np.flatnonzero(ongoing).tolist():
                opener, key = meta[sessions[i]][1], keys[i]
                if len(key) != len(opener) + 4 or not key.startswith(opener):
                    ongoing[i] = False
        req_sess[~ongoing] = -1
        return ongoing

    def _resolve(self, b: Batch) -> None:
        """Answer retransmissions from the duplicate cache (RFC 6733 6.2, RFC
        4006 5.7), resolve subscribers and sessions, refuse what cannot be
        charged (5030, 5002, 5005, 5012, a full decode's error); the rest is
        `b.charged`, in order."""
        store, fr, now, joined = self.store, b.fr, b.now, b.frames.data
        sids = [joined[o:o + k] for o, k in zip(fr["sid_off"].tolist(), fr["sid_len"].tolist())]
        stored_all = store.answers_for(b.dedup_keys, now, b.fps)
        ongoing = self._ongoing(b, sids, stored_all)
        first_rows = self._first_subscribers(b)
        fallback, rtypes, n_sub = fr["fallback"].tolist(), fr["type"].tolist(), fr["n_sub"].tolist()
        seen: dict[tuple, int] = {}     # (key, Session-Id, type, number) -> the first such request
        charged = []
        for i in np.flatnonzero(~ongoing).tolist():
            if fallback[i]:
                ccr = self._decode_full(b, i)
                if ccr is None:
                    continue
                sid, host, rtype, keys, number = ccr.session_id, ccr.origin_host, ccr.request_type, \
                    _slow_keys(ccr), ccr.request_number
                key = b.dedup_keys[i] = host + b.e2es[i].to_bytes(4, "big")
                stored = store.answer_for(key, now)
            else:
                sid, host, rtype, keys = sids[i], b.dedup_keys[i][:-4], rtypes[i], None
                key, stored, number = b.dedup_keys[i], stored_all[i], int(fr["number"][i])
            if stored is not None:
                if CCA.answers_request(stored, sid, rtype, number):
                    b.answer(i, CCA.with_hop_by_hop(stored, b.hbhs[i]), c.SUCCESS)
                    continue
                log.info("%s reused End-to-End-Identifier %08x for another request (Session-Id %s, "
                         "CC-Request-Type %d, CC-Request-Number %d): charged as a new request",
                         printable(host), b.e2es[i], printable(sid), rtype, number)
            identity = (key, sid, rtype, number)
            if identity in seen:
                b.copies.append((i, seen[identity]))
                continue
            seen[identity] = i
            if rtype == c.INITIAL_REQUEST or rtype == c.EVENT_REQUEST:
                if keys is None:     # fast path: the first identity was resolved in bulk
                    sub = first_rows[i]
                    if sub < 0 and n_sub[i] > 1:
                        sub = self._subscriber(fr["sub_key"][i, 1:n_sub[i]].tolist())
                    no_ids = n_sub[i] == 0
                else:
                    sub = self._subscriber(keys)
                    no_ids = not keys
                refusal = (c.MISSING_AVP if no_ids else c.USER_UNKNOWN) if sub < 0 else \
                    self._open(b, i, sid, host, sub) if rtype == c.INITIAL_REQUEST else 0
                b.req_sub[i] = sub
            else:
                refusal = self._find_session(b, i, sid, host, rtype, number)
            if not refusal and i in b.slow and b.slow[i].requested_action == c.REFUND_ACCOUNT \
                    and rtype == c.EVENT_REQUEST:
                b.answer(i, *self._refund(b, b.slow[i], b.frames[i], b.req_sub[i], now))
                b.refunds.append(i)
            elif refusal:
                b.answer(i, self.answers.refusal(b, i, sid, rtype, refusal), refusal)
            else:
                charged.append(i)
        b.charged = np.flatnonzero(ongoing).tolist() if not charged else \
            np.sort(np.concatenate([np.flatnonzero(ongoing), np.array(charged, np.int64)])).tolist()
        if b.new_sessions:
            store.start_sessions([s.row for s in b.new_sessions], b.new_subs)

    def _decode_full(self, b: Batch, i: int) -> CreditControlRequest | None:
        """The full decoder's request i, or None once it is answered with the error."""
        frame = b.frames[i]
        h = parse_header(frame)
        b.hbhs[i], b.e2es[i] = h.hbh, h.e2e
        try:
            self._check_mscc_count(frame)
            ccr = decode_ccr(h, frame, self.identity.origin_realm.encode(), self.identity.origin_host.encode())
        except ProtocolError as e:
            b.answer(i, error_answer(frame, e, self._origin, CCA.error_extra(frame)), e.result_code)
            return None
        b.slow[i] = ccr
        return ccr

    def _open(self, b: Batch, i: int, sid: bytes, host: bytes, sub: int) -> int:
        """A CCR-I: a new session row (IDLE -> OPEN once granted), or the open
        one again (a retransmission the cache forgot); 5012 for a Session-Id
        another host has open."""
        store = self.store
        row = store.session_index.get(sid)
        if row is not None:
            if store.session_meta[row][1] != host:
                return c.UNABLE_TO_COMPLY
            b.req_sess[i] = row
            b.reopened.add(i)
            return 0
        row = store.open_session(sid, host)
        b.new_sessions.append(NewSession(row, sid, host))
        b.opened.append((i, row))
        b.new_subs.append(sub)
        b.req_sess[i] = row
        return 0

    def _find_session(self, b: Batch, i: int, sid: bytes, host: bytes, rtype: int, number: int) -> int:
        """A CCR-U/T: its open session (its subscriber is filled in later, in
        bulk), a released one within the grace (ocs.gy.session), or 5002."""
        store = self.store
        row = store.session_index.get(sid)
        if row is not None:
            if store.session_meta[row][1] == host:
                b.req_sess[i] = row
                return 0
            # RFC 6733 8: a session belongs to the client that opened it
            log.warning("%s sent a CC-Request-Type %d for session %s, opened by %s: refused",
                        printable(host), rtype, printable(sid), printable(store.session_meta[row][1]))
            return c.UNKNOWN_SESSION_ID
        late = store.expired_session(sid, b.now)
        released = late is not None and late.host == host and number > late.last_number
        refusal = session.refusal(session.SessionState.RELEASED if released else session.SessionState.IDLE, rtype)
        if refusal:
            return refusal
        # a report after the session was released: its usage is debited (RFC 4006 7);
        # a CCR-U opens it again, the kernel ends it again at a CCR-T
        row = store.open_session(sid, host)
        store.expired.pop(sid, None)
        b.new_sessions.append(NewSession(row, sid, host))
        b.new_subs.append(late.sub)
        b.req_sess[i], b.req_sub[i] = row, late.sub
        return 0

    def _answer_repeats(self, b: Batch) -> None:
        """A CCR-U/T carrying the CC-Request-Number its session last had, or a
        lower one, is a retransmission whose answer has left the duplicate
        cache (or arrived out of order): it is not charged again (RFC 4006
        5.2, 5.7), and is answered with what the session holds now. Leaves in
        `b.charged` the requests still to charge, and in `b.numbers` (session
        rows, request numbers) of those, to become the sessions' last numbers."""
        slow, fr = b.slow, b.fr
        idx = np.array(b.charged, dtype=np.int64)
        sess = b.req_sess[idx]
        numbers = fr["number"][idx].copy()
        types = fr["type"][idx].copy()
        for k, i in enumerate(b.charged if slow else ()):
            if i in slow:
                numbers[k], types[k] = slow[i].request_number, slow[i].request_type
        ongoing = (types == c.UPDATE_REQUEST) | (types == c.TERMINATION_REQUEST)
        ongoing &= sess >= 0
        repeat = np.zeros(len(idx), dtype=bool)
        # RFC 4006 5.2: numbers only grow in a session; one not above the last is a
        # retransmission (or out of order), never a new charge
        repeat[ongoing] = (numbers[ongoing] <= self.store.sessions["last_number"][sess[ongoing]]) & (numbers[ongoing] > 0)
        clash = np.zeros(len(idx), dtype=bool)
        for k, i in enumerate(b.charged if b.reopened else ()):
            if i in b.reopened:       # the CCR-I again: a repeat while the session has had no update
                again = numbers[k] == 0 and self.store.sessions["last_number"][sess[k]] == 0
                repeat[k], clash[k] = again, not again
        for k in np.nonzero(clash)[0].tolist():
            i = int(idx[k])
            sid = self.store.session_meta[int(sess[k])][0]
            b.answer(i, self.answers.refuse(b.header(i), sid, c.INITIAL_REQUEST, 0, c.UNABLE_TO_COMPLY,
                                     "session already open"), c.UNABLE_TO_COMPLY)
        for k in np.nonzero(repeat)[0].tolist():
            i = int(idx[k])
            b.answer(i, self.answers.current_grants(b, i, int(sess[k])), c.SUCCESS)
        keep = ~(repeat | clash)
        b.charged, b.numbers = idx[keep].tolist(), (sess[keep], numbers[keep])

    def _requests(self, b: Batch) -> np.ndarray:
        """The engine's REQUEST rows of the batch (its MSCC rows grown for the
        full decoder's requests); only `b.charged` are left to charge."""
        fr, msccs, pos = b.fr, b.msccs, b.used_rows
        if b.slow:
            extra = sum(len(ccr.units) for ccr in b.slow.values())
            if b.used_rows + extra > len(msccs):
                msccs = b.msccs = np.concatenate([msccs[:b.used_rows], np.zeros(extra, MSCC)])
        reqs = np.zeros(len(b), REQUEST)
        reqs["result"] = 1          # not charged unless listed
        reqs["check_balance"] = -1
        reqs["sub"] = b.req_sub
        reqs["sess"] = b.req_sess
        for name in ("type", "action", "mscc_start", "mscc_count", "apn", "rat", "plmn"):
            reqs[name] = fr[name]
        for i, ccr in b.slow.items():
            r = reqs[i]
            fr[i]["top_level"] = ccr.top_level
            r["type"], r["action"] = ccr.request_type, ccr.requested_action
            r["apn"], r["rat"], r["plmn"] = ccr.apn, ccr.rat, ccr.plmn
            r["mscc_start"], r["mscc_count"] = pos, len(ccr.units)
            for u in ccr.units:
                m = msccs[pos]
                m["rg"] = u.rating_group if u.rating_group >= 0 else NO_RG
                m["service_id"] = u.service_ids[0] if u.service_ids else -1
                m["has_rsu"], m["rsu_octets"], m["rsu_time"] = u.has_rsu, u.rsu_octets, u.rsu_time
                m["used"], m["used_time"] = u.used, u.used_time
                pos += 1
        ongoing = (reqs["sub"] < 0) & (reqs["sess"] >= 0)
        reqs["sub"][ongoing] = self.store.sessions["sub"][reqs["sess"][ongoing]]
        return reqs

    def _charge(self, b: Batch) -> np.ndarray:
        """Refuse impossible reports, then one engine call charges the batch."""
        store, rules = self.store, self.rules
        reqs = self._requests(b)
        msccs = b.msccs
        sess_n, number_n = b.numbers
        refused = self._over_reported(reqs, msccs, np.array(b.charged, dtype=np.int64))
        if refused:
            keep = np.array([i not in refused for i in b.charged], bool)
            b.charged = [i for i in b.charged if i not in refused]
            sess_n, number_n = sess_n[keep], number_n[keep]
            for i, (j, limit) in refused.items():
                b.answer(i, self.answers.refused_report(b.frames[i], b.slow.get(i), b.fr, i, msccs[j], limit),
                         c.INVALID_AVP_VALUE)
        sel = np.array(b.charged, dtype=np.int64)
        reqs["result"][sel] = 0
        # what this batch charges becomes each session's last request number
        store.sessions["last_number"][sess_n[sess_n >= 0]] = number_n[sess_n >= 0]
        rules.set_clock(b.now)
        b.dirty_subs, b.dirty_sess, events, b.sponsored = kernel.charge_batch(
            reqs, msccs, store.subs, store.sessions, store.sponsors, rules.tables, b.now)
        b.events = events if len(events) else None
        if rules.quota.any:
            self._quota_options(reqs, msccs, sel)
        return reqs

    def _encode(self, b: Batch, reqs: np.ndarray) -> None:
        """Every charged answer: the fast path's in one compiled call, the
        full path's one by one; each request's top-level Result-Code."""
        charged, slow, msccs = b.charged, b.slow, b.msccs
        fast_sel = np.array([i for i in charged if i not in slow] if slow else charged, dtype=np.int64)
        if len(fast_sel):
            data, offs = fastcca.encode_batch(b.buf, b.fr, reqs, msccs, fast_sel, self._origin, self.ccfh,
                                              self._filters)
            offs = offs.tolist()
            if len(fast_sel) == len(b):
                b.answers[:] = [data[start:end] for start, end in zip(offs, offs[1:])]
            else:
                for i, start, end in zip(fast_sel.tolist(), offs, offs[1:]):
                    b.answers[i] = data[start:end]
        # only what this step charged: a full-path request refused, repeated or
        # answered from the cache earlier in the batch keeps the answer it has
        charged_set = set(charged) if slow else ()
        for i, ccr in slow.items():
            if i in charged_set:
                b.answers[i] = self.answers.full(ccr, reqs[i], msccs, self.answers.price(ccr, reqs[i], msccs))
        sel = np.array(charged, dtype=np.int64)
        self._keep_debits(b, reqs, sel)
        # Top-level Result-Code: a CCR with top-level units takes its units' result.
        top = reqs["result"].copy()
        starts = np.minimum(reqs["mscc_start"], max(len(msccs) - 1, 0))
        units_top = b.fr["top_level"].astype(bool) & (reqs["mscc_count"] > 0)
        top[units_top] = msccs["result"][starts[units_top]]
        reqs["result"] = top
        top_list = top.tolist()
        if len(charged) == len(b):
            b.results[:] = top_list
        else:
            for i in charged:
                b.results[i] = top_list[i]

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

    def _check_mscc_count(self, frame: bytes) -> None:
        """5009 with the first MSCC beyond `max_mscc`, before anything is
        decoded: a request of 10,000 MSCCs costs microseconds, not the loop."""
        count, start, end = fastccr.count_top_level(frame, c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, self.max_mscc)
        if count > self.max_mscc:
            raise ProtocolError(c.AVP_OCCURS_TOO_MANY_TIMES, f"{count} Multiple-Services-Credit-Control AVPs: "
                                f"at most {self.max_mscc} are served in one request", frame[start:end])

    def _refund(self, b: Batch, ccr: CreditControlRequest, frame: bytes, sub: int, now: float) -> tuple[bytes, int]:
        """A REFUND_ACCOUNT (ocs.gy.refund): its answer and Result-Code. The
        money goes back to the payer now; the batch's record keeps it."""
        def refuse(code: int, msg: str, failed: bytes = b"") -> tuple[bytes, int]:
            log.warning("refund refused (%d): %s; from %s, Session-Id %s", code, msg, printable(ccr.origin_host),
                        printable(ccr.session_id))
            return self.answers.refuse(ccr.header, ccr.session_id, c.EVENT_REQUEST, ccr.request_number, code, msg,
                                failed, ccr.proxy_info), code
        if ccr.origin_host not in self.refund_hosts:
            return refuse(c.AUTHORIZATION_REJECTED, "refunds are not enabled for this peer")
        store = self.store
        tok = R.find_token(frame)
        asked = sum(u.rsu_octets for u in ccr.units if u.has_rsu)
        try:
            debit, back = R.settle(store.debits.get(tok) if tok is not None else None, tok, sub,
                                   asked if asked > 0 else -1)
        except ProtocolError as e:
            return refuse(e.result_code, e.message, e.failed_avp)
        payer = int(store.subs[sub]["payer"])
        store.subs[payer]["balance"] += back
        store.subs[payer]["spent"] = max(int(store.subs[payer]["spent"]) - back, 0)
        store.keep_debits([debit])
        b.moved.append(payer)
        b.debits.append(debit)
        log.info("refund to %s of %d micro-units (%d octets of debit %s), asked by %s", store.label(sub), back,
                 debit.refunded_octets, printable(debit.token), printable(ccr.origin_host))
        plan = self.rules.plans[int(store.subs[sub]["plan"])]
        body = [CCA.mscc(u.rating_group, u.service_ids, c.SUCCESS, -1, 0, 0, 0) for u in ccr.units
                if not ccr.top_level]
        body += [CCA.cost_information(back, plan.currency), ccr.proxy_info]
        return CCA.cca(ccr.header, ccr.session_id, c.SUCCESS, self._origin, c.EVENT_REQUEST, ccr.request_number,
                       body, self.ccfh), c.SUCCESS

    def _quota_options(self, reqs, msccs, sel) -> None:
        """Quota-Holding-Time and Volume-Quota-Threshold of each grant, from
        its plan and rating group (ocs.rules.quota)."""
        req_of, rows = unit_rows(reqs, sel)
        if not len(rows):
            return
        plans = self.store.subs["plan"][reqs["sub"][req_of]].astype(np.int64)
        qht, vqt = self.rules.quota.for_grants(plans, msccs["rg"][rows], msccs["granted"][rows])
        msccs["qht"][rows] = qht
        msccs["vqt"][rows] = np.minimum(vqt, 0xFFFFFFFF)

    def _keep_debits(self, b: Batch, reqs, sel) -> None:
        """Each DIRECT_DEBITING charged: kept for refunds, and its answer
        given the Refund-Information that names it (TS 32.299 7.2.150a)."""
        debiting = sel[(reqs["type"][sel] == c.EVENT_REQUEST) & (reqs["action"][sel] == c.DIRECT_DEBITING)
                       & (reqs["result"][sel] == c.SUCCESS)]
        for i in debiting.tolist():
            r = reqs[i]
            units = b.msccs[int(r["mscc_start"]):int(r["mscc_start"]) + int(r["mscc_count"])]
            ok = units["result"] == c.SUCCESS
            sid = b.slow[i].session_id if i in b.slow else find_session_id(b.frames[i])
            debit = Debit(R.token(sid), int(r["sub"]), int(units["used"][ok].clip(0).sum()),
                          int(units["charged"][ok].sum()), t=b.now)
            self.store.keep_debits([debit])
            b.debits.append(debit)
            b.answers[i] = R.with_avp(b.answers[i], R.refund_information_avp(debit.token))

    def _over_reported(self, reqs, msccs, sel) -> dict[int, tuple[int, int]]:
        """CCR-U/Ts of `sel` with an MSCC reporting more octets than its
        rating group's grant plus the plan's largest grant (what a gateway
        can have used: the grant, and what was in flight or allowed while
        the next grant was asked for; with no grant held, the largest grant
        alone): request -> (the MSCC row, the limit). Such a report is not
        traffic; it is refused whole (5004 with Failed-AVP), charging nothing."""
        if not len(sel):
            return {}
        kind = reqs["type"][sel]
        sel = sel[((kind == c.UPDATE_REQUEST) | (kind == c.TERMINATION_REQUEST)) & (reqs["sess"][sel] >= 0)]
        req_of, rows = unit_rows(reqs, sel)
        used = msccs["used"][rows]
        reported = used > 0
        if not reported.any():
            return {}
        req_of, rows, used = req_of[reported], rows[reported], used[reported]
        sess = reqs["sess"][req_of]
        held = self.store.sessions["rg"][sess] == msccs["rg"][rows][:, None]
        granted = np.where(held, self.store.sessions["granted"][sess], 0).max(axis=1)
        limit = granted + self.rules.tables.plans["max_grant"][self.store.subs["plan"][reqs["sub"][req_of]]]
        out: dict[int, tuple[int, int]] = {}
        for k in np.flatnonzero(used > limit).tolist():
            out.setdefault(int(req_of[k]), (int(rows[k]), int(limit[k])))
        return out

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
