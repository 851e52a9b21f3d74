"""The compiled charging kernel against the plain reference in `naive.py`.

Random plans and random batches of CCR-I/U/T and events go through
`kernel.charge_batch` and through `naive.Ledger`; every MSCC answer and every
subscriber and session row must agree after every batch, the rows the kernel
reports as changed must cover every row that changed (the journal writes
only those), and the money invariants must hold. Examples pin the
boundaries. Some example tests pin RFC 4006 behaviour the reference does not
model (refunds, price enquiries, Check-Balance-Result, events with usage);
the property test does not generate those inputs.

Runs compiled and with NUMBA_DISABLE_JIT=1 (STYLE.md, "stumpy").
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocs.engine import kernel
from ocs.engine.tables import MSCC, PLAN, REQUEST, SESSION, SLOT_FREE, SLOTS, SUBSCRIBER, new_table

from . import naive as N
from .naive import CHECK_BALANCE, DIRECT_DEBITING, EVENT, INITIAL, TERMINATE, UPDATE

REFUND_ACCOUNT, PRICE_ENQUIRY = 1, 3
MSCC_FIELDS = ("result", "granted", "final", "charged", "from_bundle")
SUB_FIELDS = ("plan", "balance", "period", "bundle_used", "overage_used", "spent", "used_time")


class World:
    """The kernel's tables and the naive ledger, built from the same plans and subscribers."""

    def __init__(self, plans: list[N.Plan], balances: list[tuple[int, int]], n_sessions: int = 4):
        self.ledger = N.Ledger([N.Plan(**vars(p)) for p in plans],
                               [N.Subscriber(plan=p, balance=b) for p, b in balances])
        self.plans = new_table(PLAN, len(plans))
        rated, denied = [], []
        for row, p in zip(self.plans, plans):
            for name in ("bundle", "unit", "price", "default_grant", "max_grant", "validity", "period"):
                row[name] = getattr(p, name)
            row["all_rgs"] = p.all_rgs
            row["rg_start"], row["rg_count"] = len(rated), len(p.rated)
            row["deny_start"], row["deny_count"] = len(denied), len(p.denied)
            rated += sorted(p.rated)
            denied += sorted(p.denied)
        self.rated = np.array(rated, np.int64)
        self.denied = np.array(denied, np.int64)
        self.subs = new_table(SUBSCRIBER, len(balances))
        for row, (p, b) in zip(self.subs, balances):
            row["plan"], row["balance"], row["active"] = p, b, 1
        self.sessions = new_table(SESSION, n_sessions)
        self.excess = [0] * len(balances)    # cost of usage reported beyond what was reserved for it

    # ---- the two sides, kept in step ---------------------------------------------
    def set_period(self, period: int) -> None:
        self.plans["period"] = period
        for p in self.ledger.plans:
            p.period = period

    def open(self, sub: int) -> int:
        """Open a session on the lowest free row, as the store does before a CCR-I."""
        row = next(r for r in range(len(self.sessions)) if r not in self.ledger.sessions)
        assert self.sessions[row]["sub"] == -1
        self.sessions[row]["sub"] = sub
        self.ledger.open_session(row, sub)
        return row

    def close(self, row: int) -> None:
        kernel.close_session(self.subs, self.sessions, row)
        self.ledger.close_session(row)
        self.check()

    def expire(self, now: float) -> list[int]:
        before = self._snapshot()
        dirty_subs, dirty_sess = kernel.expire_sessions(self.subs, self.sessions, now)
        rows = self.ledger.expire(now)
        assert sorted(dirty_sess.tolist()) == sorted(rows)
        self._check_dirty(before, dirty_subs, dirty_sess)
        self.check()
        return rows

    def run_kernel(self, requests: list[N.Request], now: float):
        """One batch through the kernel alone: (REQUEST array, MSCC array, dirty subs, dirty sessions)."""
        reqs = np.zeros(len(requests), REQUEST)
        msccs = np.zeros(sum(len(r.msccs) for r in requests), MSCC)
        pos = 0
        for row, r in zip(reqs, requests):
            row["sub"], row["sess"], row["type"], row["action"] = r.sub, r.sess, r.type, r.action
            row["check_balance"] = -1
            row["mscc_start"], row["mscc_count"] = pos, len(r.msccs)
            for m in r.msccs:
                msccs[pos]["rg"], msccs[pos]["has_rsu"], msccs[pos]["rsu_octets"] = m.rg, m.has_rsu, m.rsu_octets
                msccs[pos]["used"], msccs[pos]["used_time"] = m.used, m.used_time
                pos += 1
        dirty_subs, dirty_sess = kernel.charge_batch(
            reqs, msccs, self.subs, self.sessions, self.plans,
            self.rated, self.denied, now)
        return reqs, msccs, dirty_subs, dirty_sess

    def charge(self, requests: list[N.Request], now: float):
        """One batch through both; returns the kernel's REQUEST and MSCC arrays and the naive outcomes."""
        before = self._snapshot()
        reqs, msccs, dirty_subs, dirty_sess = self.run_kernel(requests, now)
        outcomes = self.ledger.charge(requests, now)
        for k, (r, o) in enumerate(zip(requests, outcomes)):
            start = int(reqs[k]["mscc_start"])
            for j, mo in enumerate(o.msccs):
                got = tuple(int(msccs[start + j][f]) for f in MSCC_FIELDS)
                want = tuple(getattr(mo, f) for f in MSCC_FIELDS)
                assert got == want, f"request {k} {r} MSCC {j}: kernel {got} != naive {want} ({MSCC_FIELDS})"
                self._account(r, r.msccs[j], mo)
            assert int(reqs[k]["result"]) == o.result, f"request {k} {r}"
        self._check_dirty(before, dirty_subs, dirty_sess)
        self.check()
        return reqs, msccs, outcomes

    def _account(self, r: N.Request, m: N.Mscc, mo: N.MsccOutcome) -> None:
        """A report within its grant never costs more than the grant held;
        only usage beyond it may push the free balance below zero."""
        if r.type == EVENT:
            return
        held = mo.released.money if mo.released else 0
        if mo.released and m.used <= mo.released.granted:
            assert mo.charged <= held, (r, m, mo)
        self.excess[r.sub] += max(0, mo.charged - held)

    # ---- agreement and invariants -------------------------------------------------
    def _snapshot(self):
        return self.subs.copy(), self.sessions.copy()

    def _check_dirty(self, before, dirty_subs, dirty_sess) -> None:
        for old, new, dirty, what in zip(before, (self.subs, self.sessions), (dirty_subs, dirty_sess),
                                         ("subscriber", "session")):
            changed = {i for i in range(len(new)) if any(not np.array_equal(old[i][f], new[i][f]) for f in new.dtype.names)}
            assert changed <= set(dirty.tolist()), f"a changed {what} row is missing from the journal"

    def check(self) -> None:
        ledger = self.ledger
        for i, s in enumerate(self.subs):
            n = ledger.subs[i]
            got = {f: int(s[f]) for f in SUB_FIELDS}
            assert got == {f: getattr(n, f) for f in SUB_FIELDS}, f"subscriber {i}"
            assert (int(s["res_bundle"]), int(s["res_money"])) == ledger.reserved(i), f"subscriber {i}"
            # invariants of the kernel's own rows
            mine = self.sessions[self.sessions["sub"] == i]
            assert int(s["res_bundle"]) == int(mine["res_bundle"].sum())
            assert int(s["res_money"]) == int(mine["res_money"].sum())
            bundle = int(self.plans[s["plan"]]["bundle"])
            assert 0 <= s["bundle_used"] and s["bundle_used"] + s["res_bundle"] <= bundle
            assert s["res_money"] >= 0 and s["overage_used"] >= 0 and s["spent"] >= 0
            assert s["balance"] - s["res_money"] >= -self.excess[i], f"subscriber {i} overdrawn"
        for row, k in enumerate(self.sessions):
            slots = {int(k["rg"][j]): (int(k["res_bundle"][j]), int(k["res_money"][j]), int(k["granted"][j]))
                     for j in range(SLOTS) if k["rg"][j] != SLOT_FREE}
            free = [j for j in range(SLOTS) if k["rg"][j] == SLOT_FREE]
            assert not k["res_bundle"][free].any() and not k["res_money"][free].any() and not k["granted"][free].any()
            for b, money, granted in slots.values():
                assert 0 <= b <= granted and money >= 0
            n = ledger.sessions.get(row)
            if n is None:
                assert k["sub"] == -1 and not slots, f"session row {row} should be free"
                continue
            assert (int(k["sub"]), float(k["expiry"])) == (n.sub, n.expiry), f"session row {row}"
            assert slots == {rg: (v.bundle, v.money, v.granted) for rg, v in n.reservations.items()}, f"session row {row}"


def one_plan(balance: int = 1_000_000, **plan) -> World:
    defaults = dict(bundle=0, unit=1024, price=300, default_grant=1024, max_grant=1 << 30, validity=30, all_rgs=True)
    return World([N.Plan(**(defaults | plan))], [(0, balance)])


def ccr(kind: int, sess: int, *msccs: N.Mscc, sub: int = 0, action: int = -1) -> N.Request:
    return N.Request(sub=sub, sess=-1 if kind == EVENT else sess, type=kind, action=action, msccs=list(msccs))


def rsu(rg: int = 1, octets: int = 0, used: int = -1) -> N.Mscc:
    return N.Mscc(rg=rg, has_rsu=True, rsu_octets=octets, used=used)


def usu(rg: int = 1, used: int = 0) -> N.Mscc:
    return N.Mscc(rg=rg, used=used)


def answer(msccs, j: int = 0) -> tuple:
    return tuple(int(msccs[j][f]) for f in MSCC_FIELDS)


# ---- boundaries, by example --------------------------------------------------------

def test_report_crossing_the_bundle_pays_per_started_kb():
    w = one_plan(bundle=10_000, unit=1024, price=300)
    s = w.open(0)
    _, m, _ = w.charge([ccr(INITIAL, s, rsu(octets=12_000))], now=0)
    assert answer(m) == (2001, 12_000, 0, 0, 0)
    # 10,000 octets from the bundle, 2,000 beyond it: two started KB held
    assert (w.subs[0]["res_bundle"], w.subs[0]["res_money"]) == (10_000, 600)
    _, m, _ = w.charge([ccr(UPDATE, s, usu(used=10_001))], now=1)
    assert answer(m) == (2001, -1, 0, 300, 10_000)    # one octet over: one whole KB
    assert (w.subs[0]["balance"], w.subs[0]["overage_used"], w.subs[0]["res_money"]) == (999_700, 1, 0)
    _, m, _ = w.charge([ccr(UPDATE, s, usu(used=1025))], now=2)
    assert answer(m) == (2001, -1, 0, 600, 0)         # 1,025 octets: two started KB


def test_grant_that_exactly_exhausts_the_balance_then_4012():
    w = one_plan(balance=3000, bundle=0, unit=1024, price=300)
    s = w.open(0)
    _, m, _ = w.charge([ccr(INITIAL, s, rsu(octets=10_240))], now=0)
    assert answer(m) == (2001, 10_240, 0, 0, 0)       # all that was asked: not final
    assert w.subs[0]["res_money"] == 3000
    r, m, _ = w.charge([ccr(UPDATE, s, rsu(used=10_240))], now=1)
    assert answer(m) == (4012, -1, 1, 3000, 0)        # usage debited, nothing left to grant
    assert int(r[0]["result"]) == 4012
    assert (w.subs[0]["balance"], w.subs[0]["res_money"]) == (0, 0)


def test_asking_for_more_than_the_balance_covers_gets_final_units():
    w = one_plan(balance=3000, bundle=0, unit=1024, price=300)
    _, m, _ = w.charge([ccr(INITIAL, w.open(0), rsu(octets=10_241))], now=0)
    assert answer(m) == (2001, 10_240, 1, 0, 0)


def test_max_grant_caps_without_final_units():
    w = one_plan(bundle=1 << 20, default_grant=1000, max_grant=5000)
    _, m, _ = w.charge([ccr(INITIAL, w.open(0), rsu(rg=1, octets=50_000), rsu(rg=2))], now=0)
    assert answer(m, 0) == (2001, 5000, 0, 0, 0)
    assert answer(m, 1) == (2001, 1000, 0, 0, 0)      # empty RSU: the plan's default grant


def test_period_rollover_restores_the_bundle():
    w = one_plan(bundle=1000, price=-1, default_grant=1000)
    s = w.open(0)
    _, m, _ = w.charge([ccr(INITIAL, s, rsu())], now=0)
    assert answer(m) == (2001, 1000, 0, 0, 0)
    _, m, _ = w.charge([ccr(UPDATE, s, rsu(used=1000))], now=1)
    assert answer(m) == (4012, -1, 1, 0, 1000)        # bundle spent and no overage allowed
    w.set_period(1)
    _, m, _ = w.charge([ccr(UPDATE, s, rsu(used=0))], now=2)
    assert answer(m) == (2001, 1000, 0, 0, 0)
    assert (w.subs[0]["period"], w.subs[0]["bundle_used"], w.subs[0]["res_bundle"]) == (1, 0, 1000)


def test_tcc_expiry_releases_the_reservations():
    w = one_plan(bundle=5000, validity=30)
    s = w.open(0)
    w.charge([ccr(INITIAL, s, rsu(rg=1, octets=4000), rsu(rg=2, octets=3000))], now=100)
    assert w.sessions[s]["expiry"] == 160.0           # Tcc = 2 x Validity-Time
    assert (w.subs[0]["res_bundle"], w.subs[0]["res_money"]) == (5000, 600)
    assert w.expire(159.9) == []
    assert w.expire(160.0) == [s]
    assert (w.subs[0]["res_bundle"], w.subs[0]["res_money"], w.sessions[s]["sub"]) == (0, 0, -1)


def test_ccr_t_releases_every_reservation_and_frees_the_row():
    w = one_plan(bundle=5000)
    s = w.open(0)
    w.charge([ccr(INITIAL, s, rsu(rg=1, octets=4000), rsu(rg=2, octets=3000))], now=0)
    r, m, _ = w.charge([ccr(TERMINATE, s, usu(rg=1, used=100))], now=1)
    assert answer(m) == (2001, -1, 0, 0, 100) and int(r[0]["result"]) == 2001
    assert (w.subs[0]["res_bundle"], w.subs[0]["res_money"], w.sessions[s]["sub"]) == (0, 0, -1)


def test_ninth_rating_group_in_a_session_is_5006():
    w = one_plan(bundle=1 << 20)
    r, m, _ = w.charge([ccr(INITIAL, w.open(0), *[rsu(rg=g, octets=10) for g in range(SLOTS + 1)])], now=0)
    assert [int(x) for x in m["result"]] == [2001] * SLOTS + [5006]
    assert int(r[0]["result"]) == 2001


def test_denied_and_unrated_groups_and_the_top_level_result():
    w = one_plan(bundle=1 << 20, all_rgs=False, rated=frozenset({1, 2}), denied=frozenset({2}))
    r, m, _ = w.charge([ccr(INITIAL, w.open(0), rsu(rg=3, used=500), rsu(rg=2))], now=0)
    assert [answer(m, j) for j in (0, 1)] == [(5031, -1, 0, 0, 0), (4010, -1, 0, 0, 0)]
    assert int(r[0]["result"]) == 5031                # the first failure
    assert w.subs[0]["bundle_used"] == 0              # usage of an unrated group is not debited
    r, m, _ = w.charge([ccr(INITIAL, w.open(0), rsu(rg=2), rsu(rg=1))], now=0)
    assert int(r[0]["result"]) == 2001                # one MSCC succeeded


def test_several_requests_of_one_subscriber_share_the_balance_in_order():
    w = one_plan(balance=1000, bundle=0, unit=1000, price=100)
    a, b = w.open(0), w.open(0)
    _, m, _ = w.charge([ccr(INITIAL, a, rsu(octets=6000)), ccr(INITIAL, b, rsu(octets=6000))], now=0)
    assert answer(m, 0) == (2001, 6000, 0, 0, 0)
    assert answer(m, 1) == (2001, 4000, 1, 0, 0)      # what the first left over
    _, m, _ = w.charge([ccr(TERMINATE, a, usu(used=6000)), ccr(UPDATE, b, rsu(used=4000))], now=1)
    assert answer(m, 1) == (4012, -1, 1, 400, 0)
    assert w.subs[0]["balance"] == 0


def test_direct_debiting_is_all_or_nothing():
    w = one_plan(balance=350, bundle=0, unit=1000, price=100)
    event = lambda octets: ccr(EVENT, -1, rsu(octets=octets), action=DIRECT_DEBITING)
    _, m, _ = w.charge([event(2000)], now=0)
    assert answer(m) == (2001, 2000, 0, 200, 0)
    _, m, _ = w.charge([event(2000)], now=1)
    assert answer(m) == (4012, -1, 0, 0, 0)           # 150 covers one unit of two: nothing
    _, m, _ = w.charge([event(1000), event(1000)], now=2)
    assert answer(m, 0) == (2001, 1000, 0, 100, 0)
    assert answer(m, 1) == (4012, -1, 1, 0, 0)        # 50 covers nothing
    assert (w.subs[0]["balance"], w.subs[0]["res_money"]) == (50, 0)


@pytest.mark.parametrize("plan, balance, expected", [
    (dict(bundle=1000), 0, N.ENOUGH_CREDIT),           # bundle left
    (dict(price=100, unit=1000), 100, N.ENOUGH_CREDIT),
    (dict(price=-1), 10**6, N.NO_CREDIT),              # no bundle, no overage
    (dict(price=100, unit=1000), 0, N.NO_CREDIT),
])
def test_check_balance(plan, balance, expected):
    w = one_plan(balance=balance, **plan)
    r, m, o = w.charge([ccr(EVENT, -1, rsu(octets=5000), action=CHECK_BALANCE)], now=0)
    assert int(r[0]["check_balance"]) == o[0].check_balance == expected
    assert answer(m) == (2001, 0, 0, 0, 0) and w.subs[0]["balance"] == balance


# ---- where the kernel and RFC 4006 disagree --------------------------------------------

@pytest.mark.parametrize("action", [REFUND_ACCOUNT, PRICE_ENQUIRY])
def test_refund_and_price_enquiry_never_debit(action):
    # RFC 4006 section 8.41: REFUND_ACCOUNT increases the account; PRICE_ENQUIRY
    # neither debits nor reserves.
    w = one_plan(balance=1000, bundle=0, unit=1000, price=100)
    w.run_kernel([ccr(EVENT, -1, rsu(octets=1000), action=action)], now=0)
    assert w.subs[0]["balance"] >= 1000


def test_event_with_usage_and_units_reports_all_it_charged():
    # An event MSCC with Used- and Requested-Service-Unit: the balance loses
    # both, but `charged` (what the usage record and the journal keep) shows
    # only the second, so the charge cannot be explained afterwards.
    w = one_plan(balance=1000, bundle=0, unit=1000, price=100)
    _, m, _, _ = w.run_kernel([ccr(EVENT, -1, rsu(octets=1000, used=1000), action=DIRECT_DEBITING)], now=0)
    assert w.subs[0]["balance"] == 800
    assert int(m[0]["charged"]) == 200, "usage 100 + direct debit 100"


@pytest.mark.parametrize("price, balance", [(0, 0), (100, 50)])
def test_check_balance_says_what_a_grant_would_do(price, balance):
    # RFC 4006 section 8.6: ENOUGH_CREDIT iff the account covers the service.
    # price 0: overage is free, a grant succeeds, yet NO_CREDIT;
    # 0 < free < price: not one unit is affordable, yet ENOUGH_CREDIT.
    w = one_plan(balance=balance, bundle=0, unit=1000, price=price)
    r, _, o = w.charge([ccr(EVENT, -1, rsu(octets=1000), action=CHECK_BALANCE),
                        ccr(EVENT, -1, rsu(octets=1000), action=DIRECT_DEBITING)], now=0)
    granted = int(r[1]["result"]) == 2001
    assert int(r[0]["check_balance"]) == (N.ENOUGH_CREDIT if granted else N.NO_CREDIT)


def test_unknown_subscriber_is_refused_not_charged():
    # tables.REQUEST documents sub -1 as "unknown subscriber".
    w = World([N.Plan(bundle=0, unit=1, price=1, default_grant=10, max_grant=10, all_rgs=True)], [(0, 100), (0, 100)])
    before = w.subs.copy()
    try:
        w.run_kernel([ccr(EVENT, -1, rsu(octets=10), sub=-1, action=DIRECT_DEBITING)], now=0)
    except ValueError:
        return
    assert (w.subs == before).all()


# ---- random plans and batches --------------------------------------------------------

RGS = st.integers(0, 3) | st.integers(-1, 9)     # -1: an MSCC without Rating-Group; 9+ groups fill a session


@st.composite
def plans(draw) -> N.Plan:
    default = draw(st.integers(1, 4000))
    return N.Plan(
        bundle=draw(st.sampled_from([0, 1000, 1024, 10_000]) | st.integers(0, 30_000)),
        unit=draw(st.sampled_from([1, 1000, 1024])),
        price=draw(st.sampled_from([-1, 0, 1, 300]) | st.integers(-1, 1000)),
        default_grant=default,
        max_grant=default + draw(st.sampled_from([0, 1, 1000]) | st.integers(0, 8000)),
        validity=draw(st.integers(1, 100)),
        all_rgs=draw(st.booleans()),
        rated=draw(st.frozensets(RGS, max_size=8)),
        denied=draw(st.frozensets(RGS, max_size=1)),
    )


# (rating group, RSU: None absent / 0 empty / octets, USU: None / ("within"|"beyond", n), seconds used)
MSCCS = st.tuples(RGS,
                  st.none() | st.just(0) | st.integers(1, 8000),
                  st.none() | st.tuples(st.sampled_from(["within", "beyond"]), st.integers(0, 3000)),
                  st.just(0) | st.integers(0, 60))
# now and then a request for every group at once, to fill a session's slots
SPECS = st.tuples(st.integers(0, 7), st.lists(MSCCS, max_size=5), st.integers(0, 500)).map(
    lambda t: t[1] if t[0] else [(rg, t[2], None, 0) for rg in range(-1, 10)])
# (CC-Request-Type, session name, subscriber pick, Requested-Action, MSCCs)
OPS = st.tuples(st.sampled_from([INITIAL, UPDATE, UPDATE, UPDATE, TERMINATE, EVENT]), st.integers(0, 3),
                st.integers(0, 2), st.sampled_from([DIRECT_DEBITING, CHECK_BALANCE]), SPECS)
# (seconds since the last batch, new period?, Tcc expiry first: no / now / at the next deadline, requests)
BATCHES = st.tuples(st.integers(0, 5) | st.integers(0, 150), st.booleans(), st.sampled_from(["no", "now", "deadline"]),
                    st.lists(OPS, min_size=1, max_size=6))
SUBSCRIBERS = st.tuples(st.integers(0, 1), st.just(0) | st.integers(0, 5000) | st.integers(0, 3_000_000))


def _mscc(world: World, row: int, spec, is_event: bool) -> N.Mscc:
    rg, rsu_octets, used, seconds = spec
    m = N.Mscc(rg=rg, has_rsu=rsu_octets is not None, rsu_octets=rsu_octets or 0, used_time=seconds)
    # events carry no usage here: see test_event_with_usage_and_units_reports_all_it_charged
    if used is not None and not is_event:
        held = world.ledger.sessions[row].reservations.get(rg) if row in world.ledger.sessions else None
        granted = held.granted if held else 0
        kind, n = used
        m.used = n % (granted + 1) if kind == "within" else granted + n
    return m


def _batch(world: World, ops, names: dict[int, int]) -> tuple[list[N.Request], list[int]]:
    """Turn drawn operations into requests the way the Gy application would:
    CCR-I opens a session row first; CCR-U/T need an open session."""
    n_subs = len(world.subs)
    requests, initials, ended = [], [], set()
    for kind, name, pick, action, specs in ops:
        if kind == EVENT:
            sub = pick % n_subs
            requests.append(N.Request(sub, -1, EVENT, action, [_mscc(world, -1, s, True) for s in specs]))
            continue
        if name in ended:
            continue
        if kind != INITIAL and name not in names:
            kind = INITIAL              # keep the draw useful: no CCR-U/T without a session
        elif kind == INITIAL and name in names:
            kind = UPDATE
        if kind == INITIAL:
            names[name] = world.open(pick % n_subs)
            initials.append(len(requests))
        row = names[name]
        requests.append(N.Request(world.ledger.sessions[row].sub, row, kind, -1,
                                  [_mscc(world, row, s, False) for s in specs]))
        if kind == TERMINATE:
            ended.add(name)
            del names[name]
    return requests, initials


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(plans(), min_size=1, max_size=2), st.lists(SUBSCRIBERS, min_size=1, max_size=3),
       st.lists(BATCHES, min_size=1, max_size=8))
def test_kernel_matches_the_reference(plan_list, subscribers, batches):
    world = World(plan_list, [(p % len(plan_list), b) for p, b in subscribers])
    names: dict[int, int] = {}          # session name -> row
    now, period = 1000.0, 0
    for dt, new_period, expire, ops in batches:
        now += dt
        if new_period:
            period += 1
            world.set_period(period)
        if expire == "deadline" and world.ledger.sessions:
            now = max(now, min(s.expiry for s in world.ledger.sessions.values()))
        if expire != "no":
            gone = set(world.expire(now))
            names = {k: row for k, row in names.items() if row not in gone}
        requests, initials = _batch(world, ops, names)
        if not requests:
            continue
        reqs, _, _ = world.charge(requests, now)
        for k in initials:
            # the application closes a session whose CCR-I failed
            row = requests[k].sess
            if int(reqs[k]["result"]) != N.SUCCESS and row in world.ledger.sessions:
                world.close(row)
                names = {n: r for n, r in names.items() if r != row}
