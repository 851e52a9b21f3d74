"""Which requests of a batch the engine charges (RFC 4006, 3GPP TS 32.299
Gy): retransmissions answered from the duplicate cache (RFC 6733 6.2,
RFC 4006 5.7), subscribers and sessions resolved in bulk, refusals (5030,
5002, 5005, 5012, a full decode's error), refunds answered at once
(ocs.gy.refund), and request numbers a session has had before answered
with what it holds (RFC 4006 5.2). The stages between the decode and the
engine in `CreditControlApplication.process`."""
from __future__ import annotations

import logging
from itertools import repeat

import numpy as np

from ..diameter import constants as c
from ..diameter import fastwalk
from ..diameter.errors import ProtocolError
from ..diameter.message import error_answer, parse_header, printable
from ..diameter.peer import LocalIdentity
from ..rules.compile import RuleSet
from ..store.interface import Store
from ..store.records import NewSession
from ..subscriber import E164, IMSI, subscriber_key
from . import cca as CCA
from . import refund as R
from . import session
from .answers import Answers
from .batch import Batch
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


class Resolver:
    """Resolves a batch's requests against the store as this server
    (`origin`, `ccfh`: as `Answers`); `rules` is the application's, set
    with it (`CreditControlApplication.set_rules`)."""

    def __init__(self, store: Store, answers: Answers, identity: LocalIdentity, origin: bytes, ccfh: int,
                 refund_hosts: frozenset[bytes], max_mscc: int):
        self.store = store
        self.answers = answers
        self.identity = identity
        self._origin = origin
        self.ccfh = ccfh
        self.refund_hosts = refund_hosts        # Origin-Hosts allowed REFUND_ACCOUNT (configuration)
        self.max_mscc = max_mscc                # MSCCs one request may carry; more: 5009
        self.rules: RuleSet | None = None

    def resolve(self, b: Batch) -> None:
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

    def answer_repeats(self, b: Batch) -> None:
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

    def _subscriber(self, keys) -> int:
        store = self.store
        for key in keys:
            if key >= 0:
                row = store.lookup(key)
                if row >= 0 and store.subs[row]["active"]:
                    return row
        return -1

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

    def _check_mscc_count(self, frame: bytes) -> None:
        """5009 with the first MSCC beyond `max_mscc`, before anything is
        decoded: a request of 10,000 MSCCs costs microseconds, not the loop."""
        count, start, end = fastwalk.count_top_level(frame, c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, self.max_mscc)
        if count > self.max_mscc:
            raise ProtocolError(c.AVP_OCCURS_TOO_MANY_TIMES, f"{count} Multiple-Services-Credit-Control AVPs: "
                                f"at most {self.max_mscc} are served in one request", frame[start:end])

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
