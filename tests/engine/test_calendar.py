"""Periods by hand: calendar and anniversary months and quarters, periods of
days, and the subscriber's own timezone deciding when its month turns."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from ocs.engine import kernel
from ocs.engine.calendar import civil, day_number, period_of
from ocs.engine.tables import ANNIVERSARY, CALENDAR, DAYS, MONTH, QUARTER, REQUEST, MSCC
from ocs.rules import schema as S

from .test_kernel import World


def d(y, m, dd) -> int:
    return (date(y, m, dd) - date(1970, 1, 1)).days


def period(kind, reset, today: date, anchor: date = date(1970, 1, 1), length=0, start: date = date(1970, 1, 1)):
    pid, next_day = period_of(kind, reset, length, d(start.year, start.month, start.day),
                              d(anchor.year, anchor.month, anchor.day), d(today.year, today.month, today.day),
                              today.year, today.month, today.day)
    return pid, date(1970, 1, 1).fromordinal(date(1970, 1, 1).toordinal() + int(next_day))


def test_civil_dates_round_trip():
    for day in (-1, 0, 59, 18262, d(2024, 2, 29), d(2100, 3, 1)):
        y, m, dd = civil(day)
        assert (date(1970, 1, 1).toordinal() + day) == date(y, m, dd).toordinal()
        assert day_number(y, m, dd) == day


def test_calendar_month_and_quarter():
    assert period(MONTH, CALENDAR, date(2026, 11, 22)) == (2026 * 12 + 10, date(2026, 12, 1))
    assert period(MONTH, CALENDAR, date(2026, 12, 31))[1] == date(2027, 1, 1)
    q4 = period(QUARTER, CALENDAR, date(2026, 11, 22))
    assert q4 == period(QUARTER, CALENDAR, date(2026, 10, 1)) and q4[1] == date(2027, 1, 1)
    assert period(QUARTER, CALENDAR, date(2026, 9, 30))[0] == q4[0] - 1


def test_anniversary_month_on_the_31st_turns_on_the_last_day_of_shorter_months():
    a = date(2026, 1, 31)
    assert period(MONTH, ANNIVERSARY, date(2026, 2, 27), a) == (0, date(2026, 2, 28))
    assert period(MONTH, ANNIVERSARY, date(2026, 2, 28), a) == (1, date(2026, 3, 31))
    assert period(MONTH, ANNIVERSARY, date(2026, 3, 30), a)[0] == 1
    assert period(MONTH, ANNIVERSARY, date(2026, 3, 31), a) == (2, date(2026, 4, 30))


def test_anniversary_quarter_and_periods_of_days():
    a = date(2026, 2, 15)
    assert period(QUARTER, ANNIVERSARY, date(2026, 5, 14), a) == (0, date(2026, 5, 15))
    assert period(QUARTER, ANNIVERSARY, date(2026, 5, 15), a) == (1, date(2026, 8, 15))
    assert period(DAYS, ANNIVERSARY, date(2026, 3, 16), a, length=30) == (0, date(2026, 3, 17))
    assert period(DAYS, ANNIVERSARY, date(2026, 3, 17), a, length=30) == (1, date(2026, 4, 16))
    assert period(DAYS, CALENDAR, date(2026, 1, 8), length=7, start=date(2026, 1, 5)) == (0, date(2026, 1, 12))


def _one(world: World, now: float, used: int, rsu: int = 1024, rtype: int = 2):
    world.rules.set_clock(now)
    reqs = np.zeros(1, REQUEST)
    r = reqs[0]
    r["sub"], r["sess"], r["type"], r["action"], r["mscc_count"], r["check_balance"] = world.rows[0], 0, rtype, -1, 1, -1
    r["rat"], r["plmn"] = -1, -1
    ms = np.zeros(1, MSCC)
    ms[0]["rg"], ms[0]["service_id"], ms[0]["has_rsu"], ms[0]["rsu_octets"], ms[0]["used"] = 1, -1, 1, rsu, used
    if rtype == 1:
        world.sessions[0]["sub"] = world.rows[0]
    kernel.charge_batch(reqs, ms, world.store.subs, world.sessions, world.store.sponsors, world.rules.tables, now)
    return ms[0]


def _world(plan: dict, sub: dict) -> World:
    raw = {"plan": [{"id": "p", "default_grant": "1 KB"} | plan],
           "subscriber": [{"msisdn": "8613800001000", "plan": "p", "balance": "1"} | sub]}
    return World(msgspec.convert(raw, S.RuleFile))


def test_quarterly_bundle_resets_at_the_quarter_not_the_month():
    tz = ZoneInfo("Asia/Shanghai")
    w = _world({"timezone": "Asia/Shanghai", "period": "quarter", "bundle": "2 KB"}, {})
    t = datetime(2026, 11, 3, tzinfo=tz).timestamp()
    _one(w, t, -1, rtype=1)
    _one(w, t + 60, 1024)
    _one(w, datetime(2026, 12, 2, tzinfo=tz).timestamp(), 1024)           # December: same quarter
    assert int(w.store.subs[w.rows[0]]["b_used"][0]) == 2048
    m = _one(w, datetime(2027, 1, 1, 0, 1, tzinfo=tz).timestamp(), 0)     # January: a new quarter
    assert int(w.store.subs[w.rows[0]]["b_used"][0]) == 0 and int(m["from_bundle"]) == 0


def test_the_subscribers_timezone_decides_when_its_month_turns():
    w = _world({"timezone": "Asia/Shanghai", "bundle": "1 KB"}, {"timezone": "America/Los_Angeles"})
    la = ZoneInfo("America/Los_Angeles")
    _one(w, datetime(2026, 11, 30, 8, 0, tzinfo=la).timestamp(), -1, rtype=1)
    _one(w, datetime(2026, 11, 30, 8, 1, tzinfo=la).timestamp(), 1024)
    # 1 December in Shanghai, still 30 November in Los Angeles: the bundle stays used
    _one(w, datetime(2026, 11, 30, 9, 0, tzinfo=la).timestamp(), 0)
    assert int(w.store.subs[w.rows[0]]["b_used"][0]) == 1024
    _one(w, datetime(2026, 12, 1, 0, 1, tzinfo=la).timestamp(), 0)
    assert int(w.store.subs[w.rows[0]]["b_used"][0]) == 0


def test_trial_pack_for_new_and_zero_usage_subscribers():
    tz = ZoneInfo("Asia/Shanghai")
    raw = {"plan": [{"id": "p", "timezone": "Asia/Shanghai", "default_grant": "1 KB", "trial_pack": "trial"}],
           "pack": [{"id": "trial", "volume": "10 KB", "days": 7}],
           "subscriber": [{"msisdn": "8613800001000", "plan": "p", "balance": "1"}]}
    w = World(msgspec.convert(raw, S.RuleFile))
    s = w.store.subs[w.rows[0]]
    held = lambda: sorted(int(k) for k in s["k_def"] if k >= 0)
    assert held() == [0]                                     # new: the trial, at its first period
    start = float(s["k_from"][0])
    assert float(s["k_until"][0]) == start + 7 * 86400
    _one(w, datetime(2026, 11, 4, tzinfo=tz).timestamp(), -1, rtype=1)
    m = _one(w, datetime(2026, 11, 4, 0, 1, tzinfo=tz).timestamp(), 1024)
    assert int(m["from_bundle"]) == 1024                     # used from the trial pack
    dec = datetime(2026, 12, 2, tzinfo=tz).timestamp()
    m = _one(w, dec, 0)                                      # December: November had usage, no new trial
    assert int(m["result"]) == 4012                          # and the expired trial gives nothing
    assert all(float(u) <= dec for k, u in zip(s["k_def"], s["k_until"]) if k >= 0)
    jan = datetime(2027, 1, 2, tzinfo=tz).timestamp()
    m = _one(w, jan, 0)                                      # January after a December of nothing
    assert held() == [0] and float(s["k_from"][0]) == jan and int(m["granted"]) == 1024
