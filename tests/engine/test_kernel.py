"""The compiled charging kernel against the plain reference in `naive.py`.

Random plans (buckets with rating groups and hours, packs, flat tariffs and
ladders, rates, the caps, ceilings, throttling, shared pools with sub-caps
and owner or member billing, thresholds) go through the real rules compiler
into the kernel, and as Structs into the reference; random sessions report
usage within (and now and then beyond) their grants at random times of day,
buy packs and reopen. Every MSCC answer must agree, and at the end every
account's money and counters and the thresholds announced.

Runs compiled and with NUMBA_DISABLE_JIT=1 (STYLE.md, "stumpy").
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ocs.diameter.fastccr import apn_key, plmn_key
from ocs.engine import kernel
from ocs.engine.tables import MSCC, REQUEST, SESSION, new_table
from ocs.rules import schema as S
from ocs.rules.compile import _compile
from ocs.rules.units import parse_volume
from ocs.store.embedded import EmbeddedStore
from ocs.subscriber import E164, subscriber_key

from . import naive as N

TZ = "Asia/Shanghai"
T0 = datetime(2026, 11, 3, 0, 0, tzinfo=ZoneInfo(TZ)).timestamp()
PERIOD_END = datetime(2026, 12, 1, tzinfo=ZoneInfo(TZ)).timestamp()
HOURS = [None, "23:00-07:00", "08:00-18:00", "00:00-24:00"]
MSISDN = "86138000010{:02d}"


class World:
    """The kernel's tables and the reference ledger, from the same rule file."""

    def __init__(self, rule_file: S.RuleFile):
        errors: list[str] = []
        self.rules = _compile([(Path("gen.toml"), rule_file)], errors)
        assert not errors, errors
        self.rules.set_clock(T0)
        self.store = EmbeddedStore("/nonexistent")
        self.store.sync_rules(self.rules, self.rules.today)
        self.store.sync_sponsors([sp.id for sp in self.rules.sponsors])
        self.rules.resolve(self.store.lookup)
        self.rows = [self.store.lookup(subscriber_key(E164, s.msisdn)) for s in rule_file.subscriber]
        self.sessions = new_table(SESSION, 16)
        plans = {p.id: p for p in rule_file.plan}
        self.accounts = []
        for row, s in zip(self.rows, rule_file.subscriber):
            from ocs.rules.units import parse_money
            self.accounts.append(N.Account(plans[s.plan], parse_money(s.balance), ZoneInfo(TZ), row=row, attrs=s))
        by_msisdn = {s.msisdn: a for s, a in zip(rule_file.subscriber, self.accounts)}
        for a in self.accounts:
            a.pool = a.payer = a
        for g in rule_file.group:
            owner = by_msisdn[g.owner]
            for m in g.members:
                a = by_msisdn[m]
                a.pool = owner
                a.payer = owner if g.billing == "owner" else a
                a.pool_cap = parse_volume(g.sub_caps[m]) if m in g.sub_caps else -1
        self.ledger = N.Ledger(self.accounts, rule_file.sponsor)
        self.packs = rule_file.pack
        self.pack_hours = [p.hours for p in rule_file.pack]
        # every row's first period begins now (trial packs are given then)
        for row, a in zip(self.rows, self.accounts):
            kernel.rollover(self.store.subs, self.rules.tables, row, T0)
            if a.plan.trial_pack is not None:
                self.ledger.buy(a, next(p for p in self.packs if p.id == a.plan.trial_pack), T0, PERIOD_END)

    def charge(self, ops, now: float, ctx: N.Context = N.Context()):
        """One batch of (account, session row, type, [Mscc]) through both."""
        self.rules.set_clock(now)
        reqs = np.zeros(len(ops), REQUEST)
        rows = []
        for i, (a, sess, rtype, msccs) in enumerate(ops):
            if rtype == N.INITIAL:
                self.sessions[sess]["sub"] = self.rows[a]
            r = reqs[i]
            r["sub"], r["sess"], r["type"], r["action"], r["check_balance"] = self.rows[a], sess, rtype, -1, -1
            r["mscc_start"], r["mscc_count"] = len(rows), len(msccs)
            r["apn"] = apn_key(ctx.apn) if ctx.apn is not None else 0
            r["rat"] = ctx.rat if ctx.rat is not None else -1
            r["plmn"] = plmn_key(ctx.plmn) if ctx.plmn is not None else -1
            rows += msccs
        ms = np.zeros(max(len(rows), 1), MSCC)
        for j, m in enumerate(rows):
            ms[j]["rg"], ms[j]["service_id"], ms[j]["has_rsu"] = m.rg, -1, m.has_rsu
            ms[j]["rsu_octets"], ms[j]["used"] = m.rsu, m.used
            ms[j]["service_id"] = m.sid
        _, _, events, _ = kernel.charge_batch(reqs, ms, self.store.subs, self.sessions, self.store.sponsors,
                                              self.rules.tables, now)
        for i, (a, sess, rtype, msccs) in enumerate(ops):
            result, outs = self.ledger.request(self.accounts[a], sess, rtype, msccs, now, self.pack_hours, ctx)
            assert int(reqs[i]["result"]) == result, (i, result, reqs[i])
            start = int(reqs[i]["mscc_start"])
            for j, o in enumerate(outs):
                m = ms[start + j]
                fid = self.rules.filters[int(m["filter"])] if m["filter"] >= 0 else None
                sponsor = self.rules.sponsors[int(m["sponsor"])].id if m["sponsor"] >= 0 else None
                got = (int(m["result"]), int(m["granted"]), int(m["final"]), fid, int(m["charged"]),
                       int(m["from_bundle"]), sponsor if m["sponsored"] or m["sponsor_charged"] else None,
                       int(m["sponsored"]), int(m["sponsor_charged"]))
                want = (o.result, o.granted, o.final, o.filter, o.charged, o.from_buckets,
                        o.sponsor if o.sponsored or o.sponsor_charged else None, o.sponsored, o.sponsor_charged)
                assert got == want, (rtype, msccs[j], got, want)
                if o.granted >= 0:
                    assert int(m["validity"]) == o.validity
        return [(int(e["sub"]), self.rules.plans[int(e["plan"])].threshold[int(e["threshold"])].name)
                for e in events]

    def check_accounts(self) -> None:
        subs = self.store.subs
        for row, a in zip(self.rows, self.accounts):
            s = subs[row]
            assert int(s["balance"]) == a.balance, (row, int(s["balance"]), a.balance)
            assert (int(s["spent"]), int(s["over_used"]), int(s["total_used"]), int(s["pool_used"])) == (
                a.spent, a.over_used, a.total_used, a.pool_used), row
            names = self.rules.bucket_names[int(s["plan"])]
            for i, name in enumerate(names):
                assert int(s["b_used"][i]) == a.used.get(name, 0), (row, name)
        for k, sp in enumerate(self.rules.sponsors):
            a = self.store.sponsors[k]
            assert [int(a["used"]), int(a["spent"])] == self.ledger.paid[sp.id], sp.id
            assert int(a["res_octets"]) == int(a["res_money"]) == 0
        # nothing is held once every session has ended
        assert not self.ledger.sessions
        for field in ("b_res", "k_res", "res_money", "over_res", "total_res", "pool_res"):
            assert not subs[field][:self.store.n_subs].any(), field


# ---- random rules --------------------------------------------------------------

KB = 1024
RGS = st.sampled_from([None, [1], [2], [1, 2]])
money = st.sampled_from(["0", "0.000001", "0.0001", "0.0003", "0.01"])


@st.composite
def tariff(draw):
    if draw(st.booleans()):
        return {"overage": {"price": draw(money), "per": draw(st.sampled_from(["1 B", "1000 B", "1 KB"])),
                            "rounding": draw(st.sampled_from(["per-started-unit", "per-started-unit-of-period"]))}}
    a = draw(st.integers(1, 40)) * KB
    b = a + draw(st.integers(1, 40)) * KB
    p = draw(st.sampled_from(["0.0001", "0.001", "0.01"]))
    # a flat step that costs at least what the first step reached
    per = 1024
    base_b = -(-(a - 1) // per) * int(float(p) * 1_000_000) + draw(st.integers(0, 5000))
    return {"ladder": [{"from": 0, "price": p, "per": per},
                       {"from": a, "base": f"{base_b / 1e6:.6f}"},
                       {"from": b, "base": f"{base_b / 1e6:.6f}", "price": p, "per": per}]}


@st.composite
def rule_files(draw):
    shared = draw(st.booleans())
    packs = []
    for i in range(draw(st.integers(0, 2))):
        packs.append({"id": f"pack{i}", "volume": draw(st.integers(1, 60)) * KB,
                      "rating_groups": draw(RGS), "hours": draw(st.sampled_from(HOURS)),
                      "days": draw(st.sampled_from([None, 40])), "shared": shared and draw(st.booleans())})
    buckets = []
    for i in range(draw(st.integers(0, 2))):
        buckets.append({"name": f"b{i}", "volume": draw(st.integers(0, 60)) * KB + draw(st.integers(0, 3)),
                        "rating_groups": draw(RGS), "hours": draw(st.sampled_from(HOURS)),
                        "shared": shared and draw(st.booleans())})
    plan = {"id": "p", "timezone": TZ, "bundle": draw(st.integers(0, 60)) * KB, "bucket": buckets,
            "default_grant": draw(st.sampled_from([KB, 10 * KB])), "max_grant": 64 * KB,
            "validity_time": draw(st.sampled_from([60, 3600])), "throttle_filter": "thr",
            "billing": draw(st.sampled_from(["prepaid", "postpaid"]))}
    if draw(st.integers(0, 4)):
        plan.update(draw(tariff()))
    priced = "overage" in plan or "ladder" in plan
    plan["after_bundle"] = draw(st.sampled_from(["charge"] * 4 + ["throttle", "stop"] if priced else ["throttle", "stop"]))
    if priced and draw(st.booleans()):
        cap = {"action": draw(st.sampled_from(["stop", "throttle", "free"])), "reopen": draw(st.booleans())}
        if draw(st.booleans()):
            cap["fee"] = draw(st.sampled_from(["0.001", "0.005", "0.02"]))
        if draw(st.booleans()) or "fee" not in cap:
            cap["volume"] = draw(st.integers(0, 80)) * KB
        plan["cap"] = cap
    if draw(st.booleans()):
        plan["ceiling"] = draw(st.integers(1, 200)) * KB
    rates = []
    plan["home_networks"] = ["46000", "46002"]
    for _ in range(draw(st.integers(0, 3))):
        r = {"rating_groups": draw(RGS), "hours": draw(st.sampled_from(HOURS)), "buckets": draw(st.booleans())}
        for key, values in CONTEXT_CONDITIONS.items():
            if draw(st.integers(0, 3)) == 0:
                r[key] = draw(values)
        kind = draw(st.sampled_from(["free", "price", "price", "deny"]))
        if kind == "free":
            r["free"] = True
        elif kind == "deny":
            r["deny"] = True
        else:
            r["price"] = draw(money)
        rates.append(r)
    plan["rate"] = rates
    names = ["bundle"] * (plan["bundle"] > 0) + [b["name"] for b in buckets]
    order = names + ["packs"] + [p["id"] for p in packs if draw(st.booleans())]
    plan["order"] = draw(st.permutations(order)) if draw(st.booleans()) else None
    if plan["order"] is None:
        del plan["order"]
    if draw(st.booleans()):
        plan["rating_groups"] = [0, 1, 2]
        plan["denied_rating_groups"] = draw(st.sampled_from([[], [2]]))
    if packs and draw(st.booleans()):
        plan["trial_pack"] = packs[0]["id"]
    thresholds = [{"name": "spent", "spent": "0.002"}, {"name": "cap", "on": "cap"},
                  {"name": "thr", "on": "throttled"}, {"name": "ceil", "on": "ceiling"},
                  {"name": "credit", "on": "credit-exhausted"}]
    if names:
        thresholds.append({"name": "b80", "bucket": names[0], "percent": draw(st.integers(1, 100))})
    plan["threshold"] = thresholds
    n = draw(st.integers(2 if shared else 1, 3))
    subs = [{"msisdn": MSISDN.format(i), "plan": "p",
             "balance": draw(st.sampled_from(["0", "0.01", "0.05", "1", "100", "100"])),
             "customer_type": draw(st.sampled_from([None, "business", "consumer"])),
             "terminal_type": draw(st.sampled_from([None, "smartphone", "router"])),
             "partner": draw(st.sampled_from([None, "mvno-a"]))}
            for i in range(n)]
    for sub in subs:
        for k in [k for k, v in sub.items() if v is None]:
            del sub[k]
    groups = []
    if shared and n > 1:
        groups = [{"id": "g", "owner": MSISDN.format(0), "members": [MSISDN.format(i) for i in range(n)],
                   "billing": draw(st.sampled_from(["owner", "member"])),
                   "sub_caps": {MSISDN.format(n - 1): draw(st.integers(0, 60)) * KB} if draw(st.booleans()) else {}}]
    sponsors = []
    for i in range(draw(st.sampled_from([0, 0, 1, 2]))):
        sp = {"id": f"sp{i}", "timezone": TZ, "price": draw(st.sampled_from(["0.0001", "0.001", "0.000001"])),
              "per": draw(st.sampled_from(["1 B", "1 KB", "1000 B"])),
              "rating_groups": draw(st.sampled_from([[1], [2], [1, 2], []])),
              "service_ids": draw(st.sampled_from([[], [7]])),
              "fallback": draw(st.sampled_from(["charge", "charge", "deny", "throttle"])),
              "throttle_filter": "sp-thr"}
        if not sp["rating_groups"] and not sp["service_ids"]:
            sp["rating_groups"] = [0]
        if draw(st.booleans()):
            sp["budget"] = {"money": draw(st.sampled_from(["0.001", "0.01", "0.05"]))}
        else:
            sp["budget"] = {"volume": draw(st.integers(0, 60)) * KB}
        for key, values in (("apn", st.just(["cmnet"])), ("plans", st.just(["p"])),
                            ("subscribers", st.just([MSISDN.format(0)])),
                            ("valid_until", st.just("2026-11-10")), ("valid_from", st.just("2026-11-04"))):
            if draw(st.integers(0, 4)) == 0:
                sp[key] = draw(values)
        sponsors.append(sp)
    raw = {"plan": [plan], "pack": packs, "subscriber": subs, "group": groups, "sponsor": sponsors}
    return msgspec.convert(raw, S.RuleFile)


CONTEXT_CONDITIONS = {
    "apn": st.sampled_from([["cmnet"], ["cmwap", "CMNET"], ["internet"]]),
    "rat": st.sampled_from([["eutran"], ["geran", "utran"], ["nr"]]),
    "roaming": st.booleans(),
    "customer_type": st.sampled_from([["business"], ["consumer", "business"]]),
    "terminal_type": st.sampled_from([["router"], ["smartphone"]]),
    "partner": st.just(["mvno-a"]),
}
CONTEXTS = st.builds(N.Context,
                     apn=st.sampled_from([None, "cmnet", "CMWAP.mnc000.mcc460.gprs", "internet", "cmnet.mnc002.mcc460.gprs"]),
                     rat=st.sampled_from([None, 1, 2, 6, 10]),
                     plmn=st.sampled_from([None, "46000", "310260"]))


# (what, account, session, rating groups, RSU, usage fraction or overshoot, seconds later)
STEPS = st.lists(st.tuples(st.sampled_from(["ccr", "ccr", "ccr", "ccr", "buy", "reopen"]), st.integers(0, 2),
                           st.integers(0, 1), st.lists(st.sampled_from([0, 1, 2]), min_size=1, max_size=2, unique=True),
                           st.sampled_from([0, 1, 3 * KB, 20 * KB, 100 * KB]),
                           st.sampled_from([0.0, 0.5, 1.0, 1.0, 1.3]),
                           st.sampled_from([0, 1, 600, 4 * 3600, 9 * 3600]), CONTEXTS),
                 min_size=8, max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rule_files(), STEPS)
def test_kernel_matches_the_reference(rule_file, steps):
    w = World(rule_file)
    n = len(w.accounts)
    open_sessions: dict[int, int] = {}          # session row -> account
    now = T0
    events = []
    for what, a, s, rgs, rsu, usage, later, ctx in steps:
        now += later
        a %= n
        if what == "buy" and w.packs:
            pack = w.packs[s % len(w.packs)]
            slot = kernel.add_pack(w.store.subs, w.rules.tables, w.rows[a], w.rules.pack_index[pack.id], now)
            assert (slot >= 0) == w.ledger.buy(w.accounts[a], pack, now, PERIOD_END)
            continue
        if what == "reopen":
            kernel.rollover(w.store.subs, w.rules.tables, int(w.store.subs[w.rows[a]]["payer"]), now)
            w.store.subs[int(w.store.subs[w.rows[a]]["payer"])]["reopened"] = 1
            w.accounts[a].payer.reopened = True
            continue
        sess = a * 2 + s
        if sess not in open_sessions:
            rtype = N.INITIAL
            open_sessions[sess] = a
        else:
            a = open_sessions[sess]
            rtype = N.TERMINATE if usage == 0.0 and rsu == 0 else N.UPDATE
        held = w.ledger.sessions.get(sess, (None, {}))[1]
        msccs = []
        for rg in rgs:
            r = held.get(rg)
            used = int(r.granted * usage) if r is not None else -1
            msccs.append(N.Mscc(rg, has_rsu=True, rsu=rsu, used=used, sid=7 if rg == 0 else -1))
        events += w.charge([(a, sess, rtype, msccs)], now, ctx)
        if rtype == N.TERMINATE:
            del open_sessions[sess]
    for sess, a in list(open_sessions.items()):
        events += w.charge([(a, sess, N.TERMINATE, [])], now)
    w.check_accounts()
    assert sorted(events) == sorted(w.ledger.events)
    for name in {n for _, n in events}:
        event(f"threshold {name}")
    event("money charged" if any(a.spent for a in w.accounts) else "no money charged")
    event("pool drawn" if any(a.pool_used for a in w.accounts) else "no pool")
    event("sponsor paid" if any(v[0] for v in w.ledger.paid.values()) else "no sponsor paid")


# ---- examples: the boundaries, by hand ----------------------------------------------

def _world(plan: dict, balance: str = "100", packs=()) -> World:
    plan = {"id": "p", "timezone": TZ, "default_grant": "1 KB", "max_grant": "1 GB"} | plan
    raw = {"plan": [plan], "pack": list(packs), "subscriber": [{"msisdn": MSISDN.format(0), "plan": "p",
                                                                "balance": balance}]}
    return World(msgspec.convert(raw, S.RuleFile))


def _ccr(w: World, rtype: int, rsu: int, used: int = -1, rg: int = 1, now: float = T0):
    w.charge([(0, 0, rtype, [N.Mscc(rg, True, rsu, used)])], now)
    return w.ledger.sessions.get(0, (None, {}))[1].get(rg)


def test_ladder_lg_u_plus_prices_the_period_total():
    MB = 1 << 20
    w = _world({"bundle": 0, "ladder": [{"from": 0, "price": "12.8", "per": "1 MB"},
                                         {"from": "1945.6 MB", "base": "25000"},
                                         {"from": "6 GB", "base": "25000", "price": "12.8", "per": "1 MB"}]},
               balance="200000")
    _ccr(w, N.INITIAL, 1000 * MB)
    _ccr(w, N.UPDATE, 1000 * MB, used=1000 * MB)                   # 1000 MB: 12,800 won
    assert w.accounts[0].balance == (200_000 - 12_800) * 1_000_000
    _ccr(w, N.UPDATE, 1 * MB, used=1000 * MB)                      # 2000 MB > 1.9 GB: flat 25,000
    assert w.accounts[0].balance == (200_000 - 25_000) * 1_000_000
    _ccr(w, N.UPDATE, 1 * MB, used=6 * 1024 * MB - 2000 * MB + 1)  # 6 GB + 1 octet: one more started MB
    assert w.accounts[0].balance == (200_000 - 25_000) * 1_000_000 - 12_800_000
    w.charge([(0, 0, N.TERMINATE, [])], T0)
    w.check_accounts()


def test_fee_cap_grant_stops_exactly_at_the_cap():
    w = _world({"bundle": 0, "overage": {"price": "0.0003", "per": "1 KB"},
                "cap": {"fee": "0.01", "action": "stop"}})
    r = _ccr(w, N.INITIAL, 1 << 20)
    assert r.granted == 33 * 1024 and r.money == 33 * 300          # 0.0099: a 34th KB would pass 0.01
    _ccr(w, N.UPDATE, 1 << 20, used=33 * 1024)
    assert 0 not in w.ledger.sessions or 1 not in w.ledger.sessions[0][1]
    w.charge([(0, 0, N.TERMINATE, [])], T0)
    w.check_accounts()


def test_night_bucket_is_used_only_at_night_and_validity_ends_at_the_band():
    night = datetime(2026, 11, 3, 22, 50, tzinfo=ZoneInfo(TZ)).timestamp()
    w = _world({"bundle": "1 MB", "bucket": [{"name": "night", "volume": "1 MB", "hours": "23:00-07:00"}],
                "order": ["night", "bundle"], "validity_time": 3600})
    r = _ccr(w, N.INITIAL, 4096, now=night)
    assert r.holds[0][1] == "bundle"                               # 22:50: not yet night
    r = _ccr(w, N.UPDATE, 4096, used=4096, now=night + 900)        # 23:05
    assert r.holds[0][1] == "night"
    assert w.accounts[0].used == {"bundle": 4096}
    w.charge([(0, 0, N.TERMINATE, [])], night + 900)
    w.check_accounts()


def test_daily_summary_closes_each_day_once():
    day1 = datetime(2026, 11, 3, 20, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    w = _world({"bundle": "1 KB", "overage": {"price": "0.0003", "per": "1 KB"},
                "threshold": [{"name": "daily", "on": "daily-summary"}]})
    _ccr(w, N.INITIAL, 4096, now=day1)
    w.rules.set_clock(day1)
    reqs_events = w.charge([(0, 0, N.UPDATE, [N.Mscc(1, True, 4096, 3000)])], day1 + 60)
    assert reqs_events == []
    # the next day: the first charge closes yesterday: 3,000 octets, 2 KB charged = 0.0006
    ms = np.zeros(1, MSCC)
    ms[0]["rg"], ms[0]["service_id"], ms[0]["has_rsu"], ms[0]["rsu_octets"], ms[0]["used"] = 1, -1, 1, 4096, 1000
    reqs = np.zeros(1, REQUEST)
    reqs[0]["sub"], reqs[0]["sess"], reqs[0]["type"], reqs[0]["action"], reqs[0]["mscc_count"] = w.rows[0], 0, 2, -1, 1
    reqs[0]["check_balance"], reqs[0]["rat"], reqs[0]["plmn"] = -1, -1, -1
    day2 = day1 + 6 * 3600
    w.rules.set_clock(day2)
    _, _, events, _ = kernel.charge_batch(reqs, ms, w.store.subs, w.sessions, w.store.sponsors, w.rules.tables, day2)
    assert [(int(e["value"]), int(e["money"]), int(e["day"])) for e in events] == [
        (3000, 600, (datetime(2026, 11, 3) - datetime(1970, 1, 1)).days)]
    # midnight again: the sweep closes day 2 without a charge
    day3 = day2 + 24 * 3600
    w.rules.set_clock(day3)
    dirty, events = kernel.daily_sweep(w.store.subs, w.rules.tables, w.store.n_subs)
    assert list(dirty) == [w.rows[0]] and [(int(e["value"]), int(e["money"])) for e in events] == [(1000, 300)]
    dirty, events = kernel.daily_sweep(w.store.subs, w.rules.tables, w.store.n_subs)
    assert len(dirty) == len(events) == 0


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["0.000001", "1", "1000000", "9999999999"]), st.sampled_from(["1 B", "1 KB", "1 GB"]),
       st.sampled_from(["prepaid", "postpaid"]), st.booleans(),
       st.lists(st.sampled_from([1, (1 << 44) - 1, 1 << 44, 1 << 43]), min_size=1, max_size=6))
def test_money_and_volume_saturate_at_the_int64_edges(price, per, billing, ladder, reports):
    """Reports as large as a request may carry, priced high enough to pass
    2**63: every counter stops at +-2**62 (tariff.BIG) instead of wrapping,
    exactly as the reference's clamped integers do."""
    if ladder:
        tariff = {"ladder": [{"from": 0, "price": price, "per": per}]}      # priced on the period's total
    else:
        tariff = {"overage": {"price": price, "per": per}}
    w = _world({"bundle": "1 KB", "billing": billing} | tariff, balance="100")
    _ccr(w, N.INITIAL, 1024)
    for used in reports:
        _ccr(w, N.UPDATE, 1024, used)
    _ccr(w, N.TERMINATE, 0, 1)
    w.check_accounts()
    row = w.store.subs[w.rows[0]]
    for name in ("balance", "spent", "over_used", "total_used", "day_used", "day_spent"):
        assert -(1 << 62) <= int(row[name]) <= 1 << 62, (name, int(row[name]))
    assert int(row["balance"]) <= 100_000_000, "charging never adds money"
