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
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from ..diameter import avp as A
from ..diameter import constants as c
from ..diameter import fastcca, fastccr
from ..diameter.errors import ProtocolError
from ..diameter.message import Frames, Header, error_answer, find_session_id, parse_header, printable
from ..diameter.peer import LocalIdentity
from ..engine import kernel
from ..engine.tables import MSCC, NO_RG, REQUEST
from ..rules.compile import RuleSet
from ..store.records import Debit, ExpiredSession
from ..store.dedup import fingerprints, packed_fingerprints
from ..store.embedded import EmbeddedStore
from ..subscriber import E164, IMSI, subscriber_key
from . import cca as CCA
from . import refund as R
from .ccr import CreditControlRequest, decode_ccr

log = logging.getLogger("ocs.gy")
_SUB_KINDS = {c.END_USER_E164: E164, c.END_USER_IMSI: IMSI}
# One usage row per reported MSCC, journaled with its batch (docs/usage.md).
USAGE = np.dtype([("req", np.int32), ("sub", np.int64), ("rg", np.int64), ("used", np.int64),
                  ("used_time", np.int64), ("from_bundle", np.int64), ("charged", np.int64),
                  ("sess", np.int64), ("service_id", np.int64), ("sponsor", np.int32),
                  ("sponsored", np.int64), ("sponsor_charged", np.int64)])


@dataclass
class BatchResult:
    answers: list[bytes]          # one per request, in order
    record: dict | None           # the journal record; None if nothing changed
    results: list[int]            # top-level Result-Code per request (for metrics)
    events: np.ndarray | None = None   # thresholds crossed (EVENT rows), announced once durable
    types: np.ndarray | None = None    # CC-Request-Type per request (metrics); 0 when unreadable
    units: np.ndarray | None = None    # the charged MSCC rows, after the engine (metrics)
    opened: list | None = None         # (request index, session row) of the sessions this batch opened


def _unit_rows(reqs, sel) -> tuple[np.ndarray, np.ndarray]:
    """(request, MSCC row) of every MSCC of the requests `sel`."""
    counts = reqs["mscc_count"][sel]
    req_of = np.repeat(sel, counts)
    first = np.cumsum(counts) - counts
    rows = np.repeat(reqs["mscc_start"][sel], counts) + np.arange(counts.sum()) - np.repeat(first, counts)
    return req_of, rows


def _slow_keys(ccr: CreditControlRequest) -> list[int]:
    keys = []
    for t, data in ccr.subscription_ids:
        kind = _SUB_KINDS.get(t)
        ok = kind is not None and data.isdigit() and 1 <= len(data) <= 15
        keys.append(subscriber_key(kind, data.decode()) if ok else -1)
    return keys


class CreditControlApplication:
    def __init__(self, store: EmbeddedStore, rules: RuleSet, identity: LocalIdentity,
                 failure_handling: int = c.CCFH_TERMINATE, refund_hosts: frozenset[bytes] = frozenset(),
                 session_failover: bool = False, max_mscc: int = fastccr.MAX_MSCC):
        self.store = store
        self.refund_hosts = refund_hosts        # Origin-Hosts allowed REFUND_ACCOUNT (configuration)
        self.max_mscc = max_mscc                # MSCCs one request may carry; more: 5009
        self.set_rules(rules)
        self.identity = identity
        self.ccfh = failure_handling
        # Origin-Host and -Realm, and CC-Session-Failover when another server can
        # take the session over (RFC 4006 8.4: otherwise it is NOT_SUPPORTED, the default)
        self._origin = identity.origin_avps + (
            A.u32(c.AVP_CC_SESSION_FAILOVER, c.FAILOVER_SUPPORTED) if session_failover else b"")
        self._realm = fastccr.identity_bytes(identity.origin_realm)
        self._host = fastccr.identity_bytes(identity.origin_host)

    def set_rules(self, rules: RuleSet) -> None:
        """Charge with `rules` from the next batch on (already installed in the store)."""
        self.rules = rules
        self._filters = fastcca.FilterIds(rules.filters)

    def _subscriber(self, keys) -> int:
        store = self.store
        for key in keys:
            if key >= 0:
                row = store.lookup(key)
                if row >= 0 and store.subs[row]["active"]:
                    return row
        return -1

    def _refuse(self, h: Header, sid: bytes, rtype: int, number: int, result: int, message: str = "",
                failed: bytes = b"", proxy_info: bytes = b"") -> bytes:
        body = [proxy_info]
        if message:
            body.append(A.utf8(c.AVP_ERROR_MESSAGE, message, mandatory=False))
        if failed:
            body.append(A.encode(c.AVP_FAILED_AVP, failed))
        return CCA.cca(h, sid, result, self._origin, rtype, number, body, self.ccfh)

    def process(self, frames: Frames | list[bytes], now: float) -> BatchResult:
        store = self.store
        if not isinstance(frames, Frames):
            frames = Frames.of(frames)
        n = len(frames)
        joined = frames.data
        buf, fr, msccs, used_rows = fastccr.decode_batch(frames, MSCC, realm=self._realm, host=self._host,
                                                         max_mscc=self.max_mscc)
        # refunds and price enquiries are answered by the full path (Cost-Information)
        rare = (fr["type"] == c.EVENT_REQUEST) & ((fr["action"] == 1) | (fr["action"] == 3))
        if rare.any():
            fr["fallback"][rare] = 1
        fallback = fr["fallback"].tolist()
        rtypes = fr["type"].tolist()
        sid_off, sid_len = fr["sid_off"].tolist(), fr["sid_len"].tolist()
        hbhs, e2es = fr["hbh"].tolist(), fr["e2e"].tolist()
        n_sub = fr["n_sub"].tolist()
        # the first Subscription-Id of each fast-path CCR-I/E, resolved in bulk
        starting = ((fr["type"] == c.INITIAL_REQUEST) | (fr["type"] == c.EVENT_REQUEST)) & (fr["fallback"] == 0)
        first = np.full(n, -1, np.int64)
        if starting.any():
            found = store.lookup_many(fr["sub_key"][starting, 0])
            live = found >= 0
            found[live] = np.where(store.subs["active"][found[live]] != 0, found[live], -1)
            first[starting] = found
        first_rows = first.tolist()

        answers: list[bytes | None] = [None] * n
        results = [0] * n
        req_sub = np.full(n, -1, np.int64)
        charged: list[int] = []
        slow: dict[int, CreditControlRequest] = {}
        copies: list[tuple[int, int]] = []
        seen: dict[tuple, int] = {}     # (key, Session-Id, type, number) -> the first such request
        new_sessions: list = []
        opened: list[tuple[int, int]] = []
        new_subs: list[int] = []
        reopened: set[int] = set()        # CCR-I for a session this host already has open
        refunds: list[int] = []           # REFUND_ACCOUNT requests, answered by _refund
        self._moved: list[int] = []       # subscriber rows a refund changed
        self._debits: list = []           # debits made or refunded (refund.Debit), for the record
        # The fast path's Session-Ids and duplicate-cache keys (Origin-Host +
        # End-to-End-Identifier) in bulk (a fallback frame's are redone from
        # its full decode)
        sids = [joined[o:o + k] for o, k in zip(sid_off, sid_len)]
        dedup_keys, packed_keys, key_ends = fastccr.duplicate_keys(buf, fr)
        fps = packed_fingerprints(packed_keys, key_ends)
        stored_all = store.answers_for(dedup_keys, now, fps)
        session_of = store.session_index.get
        # Under load nearly every request is a fast-path CCR-U/T of an open
        # session, new (not in the duplicate cache, not twice in the batch):
        # those are settled here in bulk; the loop below takes the rest, in order
        req_sess = np.array(list(map(session_of, sids, repeat(-1, n))), np.int64)
        ongoing = (fr["fallback"] == 0) & ((fr["type"] == c.UPDATE_REQUEST) | (fr["type"] == c.TERMINATION_REQUEST))
        ongoing &= req_sess >= 0
        if stored_all.count(None) != n:
            ongoing &= np.array([a is None for a in stored_all], bool)
        if fr["fallback"].any():
            fps = None              # a full decode's key replaces the fast path's
        if fps is None or len(set(dedup_keys)) != n:
            ongoing[:] = False      # a key twice (or a full decode's key unknown yet): one at a time
        else:
            # a session answers only the Origin-Host that opened it; the others, one at a time
            meta = store.session_meta
            for i in np.flatnonzero(ongoing).tolist():
                opener, key = meta[req_sess[i]][1], dedup_keys[i]
                if len(key) != len(opener) + 4 or not key.startswith(opener):
                    ongoing[i] = False
        req_sess[~ongoing] = -1
        for i in np.flatnonzero(~ongoing).tolist():
            if fallback[i]:
                h = parse_header(frames[i])
                hbhs[i], e2es[i] = h.hbh, h.e2e
                try:
                    self._check_mscc_count(frames[i])
                    ccr = decode_ccr(h, frames[i], self.identity.origin_realm.encode(),
                                     self.identity.origin_host.encode())
                except ProtocolError as e:
                    answers[i] = error_answer(frames[i], e, self._origin, CCA.error_extra(frames[i]))
                    results[i] = e.result_code
                    continue
                slow[i] = ccr
                sid, host, rtype, keys = ccr.session_id, ccr.origin_host, ccr.request_type, _slow_keys(ccr)
                key = dedup_keys[i] = host + e2es[i].to_bytes(4, "big")
                stored = store.answer_for(key, now)
                number = ccr.request_number
            else:
                sid, host, rtype, keys = sids[i], dedup_keys[i][:-4], rtypes[i], None
                key, stored = dedup_keys[i], stored_all[i]
                number = int(fr["number"][i])
            if stored is not None:
                if CCA.answers_request(stored, sid, rtype, number):
                    answers[i] = CCA.with_hop_by_hop(stored, hbhs[i])
                    results[i] = c.SUCCESS
                    continue
                log.info("%s reused End-to-End-Identifier %08x for another request (Session-Id %s, "
                         "CC-Request-Type %d, CC-Request-Number %d): charged as a new request",
                         printable(host), e2es[i], printable(sid), rtype, number)
            identity = (key, sid, rtype, number)
            if identity in seen:
                copies.append((i, seen[identity]))
                continue
            seen[identity] = i
            refusal = 0
            if rtype == c.INITIAL_REQUEST or rtype == c.EVENT_REQUEST:
                if keys is None:     # fast path: the first identity was resolved in bulk
                    sub = first_rows[i]
                    if sub < 0 and n_sub[i] > 1:
                        keys = fr["sub_key"][i, 1:n_sub[i]].tolist()
                        sub = self._subscriber(keys)
                    no_ids = n_sub[i] == 0
                else:
                    sub = self._subscriber(keys)
                    no_ids = not keys
                if sub < 0:
                    refusal = c.MISSING_AVP if no_ids else c.USER_UNKNOWN
                elif rtype == c.INITIAL_REQUEST:
                    row = store.session_index.get(sid)
                    if row is not None:
                        # a retransmitted CCR-I the cache forgot, or a clash
                        if store.session_meta[row][1] == host:
                            req_sess[i] = row
                            reopened.add(i)
                        else:
                            refusal = c.UNABLE_TO_COMPLY
                    else:
                        row = store.open_session(sid, host)
                        new_sessions.append([row, sid, host])
                        opened.append((i, row))
                        new_subs.append(sub)
                        req_sess[i] = row
                req_sub[i] = sub
            else:
                row = session_of(sid)
                late = store.expired_session(sid, now) if row is None else None
                if late is not None and late.host == host and number > late.last_number:
                    # a report after supervision released the session: its usage is
                    # debited (RFC 4006 7), and a CCR-U opens it again
                    row = store.open_session(sid, host)
                    store.expired.pop(sid, None)
                    new_sessions.append([row, sid, host])
                    new_subs.append(late.sub)
                    req_sess[i], req_sub[i] = row, late.sub
                elif row is None:
                    refusal = c.UNKNOWN_SESSION_ID
                elif store.session_meta[row][1] != host:
                    # RFC 6733 8: a session belongs to the client that opened it
                    refusal = c.UNKNOWN_SESSION_ID
                    log.warning("%s sent a CC-Request-Type %d for session %s, opened by %s: refused",
                                printable(host), rtype, printable(sid), printable(store.session_meta[row][1]))
                else:
                    req_sess[i] = row     # its subscriber is filled in below, in bulk
            if not refusal and i in slow and slow[i].requested_action == c.REFUND_ACCOUNT \
                    and rtype == c.EVENT_REQUEST:
                answers[i], results[i] = self._refund(slow[i], frames[i], req_sub[i], now)
                refunds.append(i)
                continue
            if refusal:
                number = slow[i].request_number if i in slow else int(fr[i]["number"])
                msg, failed = "", b""
                if refusal == c.MISSING_AVP:
                    msg = "no Subscription-Id"
                    failed = A.grouped(c.AVP_SUBSCRIPTION_ID, [A.u32(c.AVP_SUBSCRIPTION_ID_TYPE, 0),
                                                               A.utf8(c.AVP_SUBSCRIPTION_ID_DATA, b"")])
                elif refusal == c.UNABLE_TO_COMPLY:
                    msg = "session already open"
                elif refusal == c.UNKNOWN_SESSION_ID and session_of(sid) is not None:
                    msg = "the session was opened by another Origin-Host"
                h = slow[i].header if i in slow else parse_header(frames[i])
                answers[i] = self._refuse(h, sid, rtype, number, refusal, msg, failed,
                                          slow[i].proxy_info if i in slow else b"")
                results[i] = refusal
                continue
            charged.append(i)
        charged = np.flatnonzero(ongoing).tolist() if not charged else \
            np.sort(np.concatenate([np.flatnonzero(ongoing), np.array(charged, np.int64)])).tolist()

        if new_sessions:
            store.start_sessions([row for row, _, _ in new_sessions], new_subs)
        record = events = None
        self._units = None
        if charged:
            charged, numbers = self._answer_repeats(frames, charged, reopened, fr, msccs, slow, req_sess,
                                                    answers, results)
            if charged:
                record, events = self._charge(frames, e2es, dedup_keys, fps, buf, fr, msccs, used_rows, slow, charged,
                                              req_sub, req_sess, numbers, answers, results, new_sessions, now,
                                              refunds)
        if refunds and record is None:
            answered = ([dedup_keys[i] for i in refunds], [answers[i] for i in refunds])
            store.remember_answers(*answered, now)
            record = store.record(self.rules.version, now, np.array(self._moved, np.int64), np.zeros(0, np.int64),
                                  [], answered, b"", debits=self._debits)
        for i, j in copies:
            answers[i] = CCA.with_hop_by_hop(answers[j], hbhs[i])
            results[i] = results[j]
        types = np.where(fr["fallback"] == 0, fr["type"], 0)
        for i, ccr in slow.items():
            types[i] = ccr.request_type
        return BatchResult(answers, record, results, events, types, self._units, opened)

    def _answer_repeats(self, frames, charged, reopened, fr, msccs, slow, req_sess, answers, results):
        """A CCR-U/T carrying the CC-Request-Number its session last had, or a
        lower one, is a retransmission whose answer has left the duplicate
        cache (or arrived out of order): it is not charged again (RFC 4006
        5.2, 5.7), and is answered with what the session holds now. Returns the requests still to charge, and (sessions,
        request numbers) of those, to become the sessions' last numbers."""
        idx = np.array(charged, dtype=np.int64)
        sess = np.array(req_sess, dtype=np.int64)[idx]
        numbers = fr["number"][idx].copy()
        types = fr["type"][idx].copy()
        for k, i in enumerate(charged if slow else ()):
            if i in slow:
                numbers[k], types[k] = slow[i].request_number, slow[i].request_type
        ongoing = (types == c.UPDATE_REQUEST) | (types == c.TERMINATION_REQUEST)
        ongoing &= sess >= 0
        repeat = np.zeros(len(idx), dtype=bool)
        # RFC 4006 5.2: numbers only grow in a session; one not above the last is a
        # retransmission (or out of order), never a new charge
        repeat[ongoing] = (numbers[ongoing] <= self.store.sessions["last_number"][sess[ongoing]]) & (numbers[ongoing] > 0)
        clash = np.zeros(len(idx), dtype=bool)
        for k, i in enumerate(charged if reopened else ()):
            if i in reopened:       # the CCR-I again: a repeat while the session has had no update
                again = numbers[k] == 0 and self.store.sessions["last_number"][sess[k]] == 0
                repeat[k], clash[k] = again, not again
        for k in np.nonzero(clash)[0].tolist():
            i = int(idx[k])
            h = slow[i].header if i in slow else parse_header(frames[i])
            sid = self.store.session_meta[int(sess[k])][0]
            answers[i] = self._refuse(h, sid, c.INITIAL_REQUEST, 0, c.UNABLE_TO_COMPLY, "session already open")
            results[i] = c.UNABLE_TO_COMPLY
        for k in np.nonzero(repeat)[0].tolist():
            i = int(idx[k])
            answers[i] = self._current_grants(frames[i], i, int(sess[k]), fr, msccs, slow)
            results[i] = c.SUCCESS
        keep = ~(repeat | clash)
        return idx[keep].tolist(), (sess[keep], numbers[keep])

    def _current_grants(self, frame, i, sess, fr, msccs, slow) -> bytes:
        row = self.store.sessions[sess]
        plan = self.rules.plan_table[int(self.store.subs[int(row["sub"])]["plan"])]
        if i in slow:
            ccr = slow[i]
            rgs, service_ids, h, sid = [u.rating_group for u in ccr.units], [u.service_ids for u in ccr.units], ccr.header, ccr.session_id
            rtype, number = ccr.request_type, ccr.request_number
        else:
            rows = msccs[int(fr[i]["mscc_start"]):int(fr[i]["mscc_start"]) + int(fr[i]["mscc_count"])]
            rgs = [int(r) for r in rows["rg"]]
            service_ids = [[int(s)] if s >= 0 else [] for s in rows["service_id"]]
            h = parse_header(frame)
            sid = self.store.session_meta[sess][0]
            rtype, number = int(fr[i]["type"]), int(fr[i]["number"])
        body = []
        if i in slow:
            body.append(ccr.proxy_info)
        for rg, sids in zip(rgs, service_ids):
            held = [k for k in range(len(row["rg"])) if row["rg"][k] == rg]
            granted = int(row["granted"][held[0]]) if held and rtype != c.TERMINATION_REQUEST else -1
            body.append(CCA.mscc(rg, sids, c.SUCCESS, granted, 0, int(plan["validity"]), 0))
        return CCA.cca(h, sid, c.SUCCESS, self._origin, rtype, number, body, self.ccfh)

    def _charge(self, frames, e2es, dedup_keys, fps, buf, fr, msccs, used_rows, slow, charged, req_sub, req_sess,
                numbers, answers, results, new_sessions, now, refunds) -> dict:
        store, rules = self.store, self.rules
        n = len(e2es)
        if slow:
            extra = sum(len(ccr.units) for ccr in slow.values())
            if used_rows + extra > len(msccs):
                msccs = np.concatenate([msccs[:used_rows], np.zeros(extra, MSCC)])
        reqs = np.zeros(n, REQUEST)
        reqs["result"] = 1          # not charged unless listed below
        reqs["check_balance"] = -1
        reqs["sub"] = req_sub
        reqs["sess"] = req_sess
        reqs["type"] = fr["type"]
        reqs["action"] = fr["action"]
        reqs["mscc_start"] = fr["mscc_start"]
        reqs["mscc_count"] = fr["mscc_count"]
        for name in ("apn", "rat", "plmn"):
            reqs[name] = fr[name]
        pos = used_rows
        for i, ccr in slow.items():
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
        reqs["sub"][ongoing] = store.sessions["sub"][reqs["sess"][ongoing]]
        sess_n, number_n = numbers
        refused = self._over_reported(reqs, msccs, np.array(charged, dtype=np.int64))
        if refused:
            keep = np.array([i not in refused for i in charged], bool)
            charged = [i for i in charged if i not in refused]
            sess_n, number_n = sess_n[keep], number_n[keep]
            for i, (j, limit) in refused.items():
                answers[i] = self._refuse_report(frames[i], slow.get(i), fr, i, msccs[j], limit)
                results[i] = c.INVALID_AVP_VALUE
        sel = np.array(charged, dtype=np.int64)
        reqs["result"][sel] = 0
        # what this batch charges becomes each session's last request number
        store.sessions["last_number"][sess_n[sess_n >= 0]] = number_n[sess_n >= 0]
        rules.set_clock(now)
        dirty_subs, dirty_sess, events, sponsored = kernel.charge_batch(
            reqs, msccs, store.subs, store.sessions, store.sponsors, rules.tables, now)

        if rules.quota.any:
            self._quota_options(reqs, msccs, sel)
        fast_sel = np.array([i for i in charged if i not in slow] if slow else charged, dtype=np.int64)
        if len(fast_sel):
            data, offs = fastcca.encode_batch(buf, fr, reqs, msccs, fast_sel, self._origin, self.ccfh,
                                              self._filters)
            offs = offs.tolist()
            if len(fast_sel) == n:
                answers[:] = [data[start:end] for start, end in zip(offs, offs[1:])]
            else:
                for i, start, end in zip(fast_sel.tolist(), offs, offs[1:]):
                    answers[i] = data[start:end]
        # only what this step charged: a full-path request refused, repeated or
        # answered from the cache earlier in the batch keeps the answer it has
        charged_set = set(charged) if slow else ()
        for i, ccr in slow.items():
            if i in charged_set:
                answers[i] = self._slow_answer(ccr, reqs[i], msccs, self._price_answer(ccr, reqs[i], msccs))
        self._keep_debits(frames, slow, reqs, msccs, sel, answers, now)
        # Top-level Result-Code: a CCR with top-level units takes its units' result.
        top = reqs["result"].copy()
        starts = np.minimum(reqs["mscc_start"], max(len(msccs) - 1, 0))
        units_top = fr["top_level"].astype(bool) & (reqs["mscc_count"] > 0)
        top[units_top] = msccs["result"][starts[units_top]]
        top_list = top.tolist()
        if len(charged) == n:
            results[:] = top_list
            answered = (list(dedup_keys), list(answers))
        else:
            for i in charged:
                results[i] = top_list[i]
            answered = ([dedup_keys[i] for i in charged + refunds], [answers[i] for i in charged + refunds])
            fps = np.concatenate([fps[sel], fingerprints(answered[0][len(charged):])]) if fps is not None else None
        store.remember_answers(*answered, now, fps)
        # a refused CCR-I leaves no session behind
        sess = reqs["sess"][sel]
        failed_initial = sess[(reqs["type"][sel] == c.INITIAL_REQUEST) & (top[sel] != c.SUCCESS) & (sess >= 0)]
        for row in failed_initial.tolist():
            kernel.close_session(store.subs, store.sessions, store.sponsors, row)
        # RFC 4006 7: a failed CCR-U ends the session (Open -> Idle); the CCR-T
        # that usually follows still has its usage debited, as after Tcc
        failed_update = sess[(reqs["type"][sel] == c.UPDATE_REQUEST) & (top[sel] != c.SUCCESS) & (sess >= 0)]
        ended = [ExpiredSession(store.session_meta[row][0], store.session_meta[row][1],
                                int(store.sessions["sub"][row]), int(store.sessions["last_number"][row]), now)
                 for row in failed_update.tolist()]
        for row in failed_update.tolist():
            kernel.close_session(store.subs, store.sessions, store.sponsors, row)
        store.keep_expired(ended)
        sess = sess[sess >= 0]
        closed = sess[store.sessions["sub"][sess] < 0]
        if len(closed):
            dirty_sess = np.concatenate([dirty_sess, closed])
        req_of, rows = _unit_rows(reqs, sel)
        self._units = msccs.take(rows)       # take: 20x quicker than fancy indexing on records
        usage = self._usage(reqs, self._units, req_of)
        if self._moved:
            dirty_subs = np.concatenate([dirty_subs, np.array(self._moved, np.int64)])
        record = store.record(rules.version, now, dirty_subs, dirty_sess, new_sessions, answered, usage,
                              sponsors=sponsored, debits=self._debits, expired=ended)
        if usage:
            # the Session-Id of each usage row, for usage records and sponsor settlement
            rows = np.frombuffer(usage, USAGE)["sess"].tolist()
            record["ss"] = [store.session_meta[x][0] if x >= 0 and store.session_meta[x] else b"" for x in rows]
        for row in set(closed.tolist()):
            store.release_session_row(row)
        return record, events if len(events) else None

    def _check_mscc_count(self, frame: bytes) -> None:
        """5009 with the first MSCC beyond `max_mscc`, before anything is
        decoded: a request of 10,000 MSCCs costs microseconds, not the loop."""
        count, start, end = fastccr.count_top_level(frame, c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, self.max_mscc)
        if count > self.max_mscc:
            raise ProtocolError(c.AVP_OCCURS_TOO_MANY_TIMES, f"{count} Multiple-Services-Credit-Control AVPs: "
                                f"at most {self.max_mscc} are served in one request", frame[start:end])

    def _refund(self, ccr: CreditControlRequest, frame: bytes, sub: int, now: float) -> tuple[bytes, int]:
        """A REFUND_ACCOUNT (ocs.gy.refund): its answer and Result-Code. The
        money goes back to the payer now; the batch's record keeps it."""
        def refuse(code: int, msg: str, failed: bytes = b"") -> tuple[bytes, int]:
            log.warning("refund refused (%d): %s; from %s, Session-Id %s", code, msg, printable(ccr.origin_host),
                        printable(ccr.session_id))
            return self._refuse(ccr.header, ccr.session_id, c.EVENT_REQUEST, ccr.request_number, code, msg,
                                failed, ccr.proxy_info), code
        if ccr.origin_host not in self.refund_hosts:
            return refuse(R.AUTHORIZATION_REJECTED, "refunds are not enabled for this peer")
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
        self._moved.append(payer)
        self._debits.append(debit)
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
        req_of, rows = _unit_rows(reqs, sel)
        if not len(rows):
            return
        plans = self.store.subs["plan"][reqs["sub"][req_of]].astype(np.int64)
        qht, vqt = self.rules.quota.for_grants(plans, msccs["rg"][rows], msccs["granted"][rows])
        msccs["qht"][rows] = qht
        msccs["vqt"][rows] = np.minimum(vqt, 0xFFFFFFFF)

    def _keep_debits(self, frames, slow, reqs, msccs, sel, answers, now) -> None:
        """Each DIRECT_DEBITING charged: kept for refunds, and its answer
        given the Refund-Information that names it (TS 32.299 7.2.150a)."""
        debiting = sel[(reqs["type"][sel] == c.EVENT_REQUEST) & (reqs["action"][sel] == c.DIRECT_DEBITING)
                       & (reqs["result"][sel] == c.SUCCESS)]
        for i in debiting.tolist():
            r = reqs[i]
            units = msccs[int(r["mscc_start"]):int(r["mscc_start"]) + int(r["mscc_count"])]
            ok = units["result"] == c.SUCCESS
            sid = slow[i].session_id if i in slow else find_session_id(frames[i])
            debit = Debit(R.token(sid), int(r["sub"]), int(units["used"][ok].clip(0).sum()),
                          int(units["charged"][ok].sum()), t=now)
            self.store.keep_debits([debit])
            self._debits.append(debit)
            answers[i] = R.with_avp(answers[i], R.refund_information_avp(debit.token))

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
        req_of, rows = _unit_rows(reqs, sel)
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

    def _refuse_report(self, frame: bytes, ccr: CreditControlRequest | None, fr, i: int, m, limit: int) -> bytes:
        used = int(m["used"])
        failed = A.grouped(c.AVP_USED_SERVICE_UNIT, [A.u64(c.AVP_CC_TOTAL_OCTETS, used)])
        rg = int(m["rg"])
        what = f"rating group {rg}" if rg != NO_RG else "the service"
        msg = f"Used-Service-Unit of {what} reports {used} octets, more than the {limit} its grant allows"
        sid = ccr.session_id if ccr is not None else find_session_id(frame) or b""
        log.warning("refused: %s (Session-Id %s)", msg, printable(sid))
        if ccr is not None:
            return self._refuse(ccr.header, sid, ccr.request_type, ccr.request_number,
                                c.INVALID_AVP_VALUE, msg, failed, ccr.proxy_info)
        return self._refuse(parse_header(frame), sid, int(fr[i]["type"]), int(fr[i]["number"]),
                            c.INVALID_AVP_VALUE, msg, failed)

    def _slow_answer(self, ccr: CreditControlRequest, r, msccs, extra: bytes = b"") -> bytes:
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
        return CCA.cca(ccr.header, ccr.session_id, result, self._origin, ccr.request_type,
                       ccr.request_number, body, self.ccfh)

    def _price_answer(self, ccr: CreditControlRequest, r, msccs) -> bytes:
        """Cost-Information for a PRICE_ENQUIRY (RFC 4006 6.5): what the
        requested units would cost, which the engine left in `charged`."""
        if ccr.requested_action != 3 or int(r["sub"]) < 0:
            return b""
        start, count = int(r["mscc_start"]), int(r["mscc_count"])
        price = int(msccs["charged"][start:start + count].sum())
        plan = self.rules.plans[int(self.store.subs[int(r["sub"])]["plan"])]
        return CCA.cost_information(price, plan.currency)

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

    def close_days(self, now: float) -> tuple[dict | None, np.ndarray | None]:
        """At local midnight: the daily summaries of every subscriber with
        usage that day (journal record, events)."""
        self.rules.set_clock(now)
        dirty, events = kernel.daily_sweep(self.store.subs, self.rules.tables, self.store.n_subs)
        if len(dirty) == 0:
            return None, None
        record = self.store.record(self.rules.version, now, dirty, [], [], [], b"")
        return record, events if len(events) else None

    def expire(self, now: float) -> dict | None:
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
