"""The credit-control application (RFC 4006, 3GPP TS 32.299 Gy) for a batch.

A batch is every CCR that arrived since the last turn, from all peers. The
steps: decode; answer retransmissions from the duplicate cache (Origin-Host
+ End-to-End-Identifier, RFC 6733 section 6.2); resolve subscribers and
sessions; one engine call for all of it; build the answers and the one
journal record that makes the batch durable. Nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..diameter import constants as c
from ..diameter.errors import ProtocolError
from ..diameter.message import Header, error_answer
from ..diameter.peer import LocalIdentity
from ..engine import kernel
from ..engine.tables import MSCC, NO_RG, REQUEST
from ..rules.compile import E164, IMSI, RuleSet, subscriber_key
from ..store.embedded import EmbeddedStore
from . import cca as CCA
from .ccr import CreditControlRequest, decode_ccr

_SUB_TYPES = {c.END_USER_E164: E164, c.END_USER_IMSI: IMSI}


@dataclass
class BatchResult:
    answers: list[bytes]          # one per request, in order
    record: dict | None           # the journal record; None if nothing changed
    results: list[int]            # top-level Result-Code per request (for metrics)


class CreditControlApplication:
    def __init__(self, store: EmbeddedStore, rules: RuleSet, identity: LocalIdentity,
                 failure_handling: int = c.CCFH_TERMINATE):
        self.store = store
        self.rules = rules
        self.identity = identity
        self.ccfh = failure_handling
        self._origin = identity.origin_avps

    def _subscriber(self, ccr: CreditControlRequest) -> int:
        for t, data in ccr.subscription_ids:
            kind = _SUB_TYPES.get(t)
            if kind is None or not data.isdigit() or len(data) > 15:
                continue
            row = self.store.lookup(subscriber_key(kind, data.decode()))
            if row >= 0 and self.store.subs[row]["active"]:
                return row
        return -1

    def _simple(self, ccr: CreditControlRequest, result: int, message: str = "") -> bytes:
        body = []
        if message:
            from ..diameter import avp as A
            body.append(A.utf8(c.AVP_ERROR_MESSAGE, message, mandatory=False))
        return CCA.cca(ccr.header, ccr.session_id, result, self._origin, ccr.request_type,
                       ccr.request_number, body, self.ccfh)

    def process(self, items: list[tuple[Header, bytes]], now: float) -> BatchResult:
        store = self.store
        n = len(items)
        answers: list[bytes | None] = [None] * n
        results = [0] * n
        charged: list[tuple[int, CreditControlRequest]] = []   # (item index, ccr)
        copies: list[tuple[int, int]] = []                       # (item, earlier item) retransmitted within the batch
        seen: dict[tuple[bytes, int], int] = {}
        new_sessions: list = []
        for i, (h, frame) in enumerate(items):
            try:
                ccr = decode_ccr(h, frame)
            except ProtocolError as e:
                answers[i] = error_answer(frame, e, self._origin, CCA.error_extra(frame))
                results[i] = e.result_code
                continue
            key = (ccr.origin_host, h.e2e)
            stored = store.dedup.get(key)
            if stored is not None:
                answers[i] = CCA.with_hop_by_hop(stored, h.hbh)
                results[i] = c.SUCCESS
                continue
            if key in seen:
                copies.append((i, seen[key]))
                continue
            seen[key] = i
            if ccr.request_type in (c.INITIAL_REQUEST, c.EVENT_REQUEST):
                sub = self._subscriber(ccr)
                if sub < 0:
                    if not ccr.subscription_ids:
                        answers[i] = self._simple(ccr, c.MISSING_AVP, "no Subscription-Id")
                        results[i] = c.MISSING_AVP
                    else:
                        answers[i] = self._simple(ccr, c.USER_UNKNOWN)
                        results[i] = c.USER_UNKNOWN
                    continue
                if ccr.request_type == c.INITIAL_REQUEST:
                    if ccr.session_id in store.session_index:
                        answers[i] = self._simple(ccr, c.UNABLE_TO_COMPLY, "session already open")
                        results[i] = c.UNABLE_TO_COMPLY
                        continue
                    row = store.open_session(ccr.session_id, ccr.origin_host, sub)
                    new_sessions.append([row, ccr.session_id, ccr.origin_host])
            else:
                if ccr.session_id not in store.session_index:
                    answers[i] = self._simple(ccr, c.UNKNOWN_SESSION_ID)
                    results[i] = c.UNKNOWN_SESSION_ID
                    continue
            charged.append((i, ccr))

        record = None
        if charged:
            record = self._charge(items, charged, answers, results, new_sessions, now)
        for i, j in copies:
            answers[i] = CCA.with_hop_by_hop(answers[j], items[i][0].hbh)
            results[i] = results[j]
        return BatchResult(answers, record, results)

    def _charge(self, items, charged, answers, results, new_sessions, now) -> dict:
        store, rules = self.store, self.rules
        reqs = np.zeros(len(charged), REQUEST)
        n_units = sum(len(ccr.units) for _, ccr in charged)
        msccs = np.zeros(n_units, MSCC)
        pos = 0
        for k, (i, ccr) in enumerate(charged):
            r = reqs[k]
            sess = -1 if ccr.request_type == c.EVENT_REQUEST else store.session_index[ccr.session_id]
            r["sess"] = sess
            r["sub"] = self._subscriber(ccr) if sess < 0 else store.sessions[sess]["sub"]
            r["type"] = ccr.request_type
            r["action"] = ccr.requested_action
            r["check_balance"] = -1
            r["mscc_start"] = pos
            r["mscc_count"] = len(ccr.units)
            for u in ccr.units:
                m = msccs[pos]
                m["rg"] = u.rating_group if u.rating_group >= 0 else NO_RG
                m["has_rsu"] = u.has_rsu
                m["rsu_octets"] = u.rsu_octets
                m["rsu_time"] = u.rsu_time
                m["used"] = u.used
                m["used_time"] = u.used_time
                pos += 1
        rules.set_periods(now)
        dirty_subs, dirty_sess = kernel.charge_batch(
            reqs, msccs, store.subs, store.sessions, rules.plan_table, rules.rated_rgs, rules.denied_rgs, now)
        answered = []
        usage = []
        for k, (i, ccr) in enumerate(charged):
            r = reqs[k]
            body = []
            start, count = int(r["mscc_start"]), int(r["mscc_count"])
            for j, u in zip(range(start, start + count), ccr.units):
                m = msccs[j]
                granted, final = int(m["granted"]), bool(m["final"])
                if ccr.top_level:
                    if granted >= 0:
                        body.append(CCA.granted_units(granted, int(m["granted_time"])))
                    if final:
                        body.append(CCA._FUI_TERMINATE)
                else:
                    body.append(CCA.mscc(u.rating_group, u.service_ids, int(m["result"]), granted,
                                         int(m["granted_time"]), int(m["validity"]), final))
                if u.used > 0 or u.used_time > 0:
                    usage.append([ccr.session_id, int(r["sub"]), u.rating_group, u.used, u.used_time,
                                  int(m["from_bundle"]), int(m["charged"])])
            result = int(r["result"])
            if ccr.top_level and count:
                result = int(msccs[start]["result"])
            if int(r["check_balance"]) >= 0:
                from ..diameter import avp as A
                body.append(A.u32(CCA.AVP_CHECK_BALANCE_RESULT, int(r["check_balance"])))
            answers[i] = CCA.cca(ccr.header, ccr.session_id, result, self._origin, ccr.request_type,
                                 ccr.request_number, body, self.ccfh)
            results[i] = result
            answered.append([ccr.origin_host, ccr.header.e2e, answers[i]])
            store.remember_answer(ccr.origin_host, ccr.header.e2e, answers[i])
            sess = int(r["sess"])
            if sess >= 0 and ccr.request_type == c.INITIAL_REQUEST and result != c.SUCCESS:
                kernel.close_session(store.subs, store.sessions, sess)
            if sess >= 0 and store.sessions[sess]["sub"] < 0:
                dirty_sess = np.append(dirty_sess, sess)
        record = store.record(rules.version, now, dirty_subs, dirty_sess, new_sessions, answered, usage)
        for sess in np.unique(dirty_sess):
            if store.sessions[sess]["sub"] < 0:
                store.release_session_row(int(sess))
        return record

    def expire(self, now: float) -> dict | None:
        """Release reservations of sessions silent past Tcc; the journal record, if any."""
        dirty_subs, dirty_sess = kernel.expire_sessions(self.store.subs, self.store.sessions, now)
        if len(dirty_sess) == 0:
            return None
        record = self.store.record(self.rules.version, now, dirty_subs, dirty_sess, [], [], [])
        for sess in dirty_sess:
            self.store.release_session_row(int(sess))
        return record
