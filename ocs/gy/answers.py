"""The answers the application builds in Python, one at a time: refusals,
the repeat of a session's current grants, and what the full decoder's
requests get (the compiled encoder, fastcca, answers the rest in bulk)."""
from __future__ import annotations

import logging

from ..diameter import avp as A
from ..diameter import constants as c
from ..diameter.message import Header, find_session_id, parse_header, printable
from ..engine.tables import NO_RG
from ..rules.compile import RuleSet
from ..store.interface import Store
from . import cca as CCA
from .batch import Batch
from .ccr import CreditControlRequest

log = logging.getLogger("ocs.gy")


class Answers:
    """Builds answers as this server (`origin`: its Origin-Host, -Realm and
    CC-Session-Failover AVPs; `ccfh`: the Credit-Control-Failure-Handling
    it tells gateways)."""

    def __init__(self, store: Store, rules: RuleSet, origin: bytes, ccfh: int):
        self.store, self.rules, self.origin, self.ccfh = store, rules, origin, ccfh

    def refuse(self, h: Header, sid: bytes, rtype: int, number: int, result: int, message: str = "",
                failed: bytes = b"", proxy_info: bytes = b"") -> bytes:
        body = [proxy_info]
        if message:
            body.append(A.utf8(c.AVP_ERROR_MESSAGE, message, mandatory=False))
        if failed:
            body.append(A.encode(c.AVP_FAILED_AVP, failed))
        return CCA.cca(h, sid, result, self.origin, rtype, number, body, self.ccfh)

    def refusal(self, b: Batch, i: int, sid: bytes, rtype: int, refusal: int) -> bytes:
        number = b.slow[i].request_number if i in b.slow else int(b.fr[i]["number"])
        msg, failed = "", b""
        if refusal == c.MISSING_AVP:
            msg = "no Subscription-Id"
            failed = A.grouped(c.AVP_SUBSCRIPTION_ID, [A.u32(c.AVP_SUBSCRIPTION_ID_TYPE, 0),
                                                       A.utf8(c.AVP_SUBSCRIPTION_ID_DATA, b"")])
        elif refusal == c.UNABLE_TO_COMPLY:
            msg = "session already open"
        elif refusal == c.UNKNOWN_SESSION_ID and self.store.session_index.get(sid) is not None:
            msg = "the session was opened by another Origin-Host"
        return self.refuse(b.header(i), sid, rtype, number, refusal, msg, failed,
                            b.slow[i].proxy_info if i in b.slow else b"")

    def current_grants(self, b: Batch, i: int, sess: int) -> bytes:
        row = self.store.sessions[sess]
        plan = self.rules.plan_table[int(self.store.subs[int(row["sub"])]["plan"])]
        fr = b.fr
        if i in b.slow:
            ccr = b.slow[i]
            rgs, service_ids, sid = [u.rating_group for u in ccr.units], [u.service_ids for u in ccr.units], ccr.session_id
            rtype, number = ccr.request_type, ccr.request_number
        else:
            rows = b.msccs[int(fr[i]["mscc_start"]):int(fr[i]["mscc_start"]) + int(fr[i]["mscc_count"])]
            rgs = [int(r) for r in rows["rg"]]
            service_ids = [[int(s)] if s >= 0 else [] for s in rows["service_id"]]
            sid = self.store.session_meta[sess][0]
            rtype, number = int(fr[i]["type"]), int(fr[i]["number"])
        body = []
        if i in b.slow:
            body.append(ccr.proxy_info)
        for rg, sids in zip(rgs, service_ids):
            held = [k for k in range(len(row["rg"])) if row["rg"][k] == rg]
            granted = int(row["granted"][held[0]]) if held and rtype != c.TERMINATION_REQUEST else -1
            body.append(CCA.mscc(rg, sids, c.SUCCESS, granted, 0, int(plan["validity"]), 0))
        return CCA.cca(b.header(i), sid, c.SUCCESS, self.origin, rtype, number, body, self.ccfh)

    def refused_report(self, frame: bytes, ccr: CreditControlRequest | None, fr, i: int, m, limit: int) -> bytes:
        used = int(m["used"])
        failed = A.grouped(c.AVP_USED_SERVICE_UNIT, [A.u64(c.AVP_CC_TOTAL_OCTETS, used)])
        rg = int(m["rg"])
        what = f"rating group {rg}" if rg != NO_RG else "the service"
        msg = f"Used-Service-Unit of {what} reports {used} octets, more than the {limit} its grant allows"
        sid = ccr.session_id if ccr is not None else find_session_id(frame) or b""
        log.warning("refused: %s (Session-Id %s)", msg, printable(sid))
        if ccr is not None:
            return self.refuse(ccr.header, sid, ccr.request_type, ccr.request_number,
                                c.INVALID_AVP_VALUE, msg, failed, ccr.proxy_info)
        return self.refuse(parse_header(frame), sid, int(fr[i]["type"]), int(fr[i]["number"]),
                            c.INVALID_AVP_VALUE, msg, failed)

    def full(self, ccr: CreditControlRequest, r, msccs, extra: bytes = b"") -> bytes:
        body = []
        start, count = int(r["mscc_start"]), int(r["mscc_count"])
        for j, u in zip(range(start, start + count), ccr.units):
            m = msccs[j]
            granted, final = int(m["granted"]), int(m["final"])
            filter_id = self.rules.filters[int(m["filter"])] if m["filter"] >= 0 else None
            if ccr.top_level:
                if granted >= 0:
                    body.append(CCA.granted_units(granted, int(m["granted_time"])))
                    if int(m["validity"]) > 0:
                        body.append(A.u32(c.AVP_VALIDITY_TIME, int(m["validity"])))
                if final:
                    body.append(CCA.final_unit_indication(final, filter_id))
            else:
                body.append(CCA.mscc(u.rating_group, u.service_ids, int(m["result"]), granted,
                                     int(m["granted_time"]), int(m["validity"]), final, filter_id,
                                     int(m["qht"]), int(m["vqt"])))
        result = int(r["result"])
        if ccr.top_level and count:
            result = int(msccs[start]["result"])
        if int(r["check_balance"]) >= 0:
            body.append(A.u32(CCA.AVP_CHECK_BALANCE_RESULT, int(r["check_balance"])))
        if extra:
            body.append(extra)
        body.append(ccr.proxy_info)
        return CCA.cca(ccr.header, ccr.session_id, result, self.origin, ccr.request_type,
                       ccr.request_number, body, self.ccfh)

    def price(self, ccr: CreditControlRequest, r, msccs) -> bytes:
        """Cost-Information for a PRICE_ENQUIRY (RFC 4006 6.5): what the
        requested units would cost, which the engine left in `charged`."""
        if ccr.requested_action != 3 or int(r["sub"]) < 0:
            return b""
        start, count = int(r["mscc_start"]), int(r["mscc_count"])
        price = int(msccs["charged"][start:start + count].sum())
        plan = self.rules.plans[int(self.store.subs[int(r["sub"])]["plan"])]
        return CCA.cost_information(price, plan.currency)
