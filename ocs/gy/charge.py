"""Charging a batch's requests (RFC 4006 section 5, 3GPP TS 32.299 Gy):
the engine's REQUEST rows of what is left to charge, reports no grant
could cover refused (5004), one engine call, each grant's quota options;
then every answer, the fast path's in one compiled call (fastcca), the
full path's one by one. The stages after `Resolver` in
`CreditControlApplication.process`."""
from __future__ import annotations

import numpy as np

from ..diameter import constants as c
from ..diameter import fastcca
from ..diameter.message import find_session_id
from ..engine import kernel
from ..engine.tables import MSCC, NO_RG, REQUEST
from ..rules.compile import RuleSet
from ..store.interface import Store
from ..store.records import Debit
from . import refund as R
from .answers import Answers
from .batch import Batch, unit_rows


class Charger:
    """Charges and answers a batch as this server (`origin`, `ccfh`: as
    `Answers`) with the rules of `set_rules` (the application's)."""

    def __init__(self, store: Store, answers: Answers, origin: bytes, ccfh: int):
        self.store = store
        self.answers = answers
        self._origin = origin
        self.ccfh = ccfh

    def set_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        self._filters = fastcca.FilterIds(rules.filters)

    def charge(self, b: Batch) -> np.ndarray:
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

    def encode(self, b: Batch, reqs: np.ndarray) -> None:
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
