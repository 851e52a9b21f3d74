"""Sponsor settlement: what a sponsor owes for a period, from the usage
records, reconciled (docs/sponsors.md).

For each sponsored session: the octets and the amount billed to the
sponsor. For each rating group (and Service-Identifier) the contract
covers: all usage of that traffic in the period, the part the sponsor paid
and the part subscribers paid; the two must add up to the total, octet for
octet. For the current period, the sponsor's account in the store (what the
engine counted as it charged) must equal the sum of the records, to the
micro-unit: two independent records of the same money.
"""
from __future__ import annotations

import calendar
import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo

from ..rules.compile import RuleSet
from ..rules.units import format_money
from .usage import UsageRecord, iter_usage, utc_days_around


class SettlementError(Exception):
    pass


def in_period(record: UsageRecord, tz: ZoneInfo, period: str) -> bool:
    return datetime.fromisoformat(record.time).astimezone(tz).strftime("%Y-%m") == period


def report(sponsor_id: str, period: str, records: Iterable[UsageRecord], rules: RuleSet,
           account: dict | None = None) -> dict:
    """The settlement of `sponsor_id` for `period` (YYYY-MM, the sponsor's
    local month). `account`: the store's account of the sponsor for its
    current period, {"period": "YYYY-MM", "used": octets, "spent": micro}."""
    if sponsor_id not in rules.sponsor_index:
        raise SettlementError(f"no sponsor {sponsor_id!r} in rules version {rules.version}")
    try:
        datetime.strptime(period, "%Y-%m")
    except ValueError:
        raise SettlementError(f"period {period!r}: expected YYYY-MM") from None
    k = rules.sponsor_index[sponsor_id]
    sp = rules.sponsors[k]
    tz = rules.zones[int(rules.tables.contracts[k]["zone"])]     # checked when the rules were compiled
    rgs, sids = set(sp.rating_groups), set(sp.service_ids)
    covered = [r for r in records if in_period(r, tz, period)
               and (r.rating_group in rgs or (r.service_id is not None and r.service_id in sids))]
    sessions: dict[tuple[str, str], dict] = {}
    groups: dict[str, dict] = {}
    for r in covered:
        key = f"rating_group {r.rating_group}" if r.rating_group in rgs else f"service_id {r.service_id}"
        g = groups.setdefault(key, {"traffic": key, "total_octets": 0, "sponsored_octets": 0,
                                    "subscriber_paid_octets": 0, "sponsor_amount_micro": 0,
                                    "subscriber_charged_micro": 0})
        g["total_octets"] += r.octets
        mine = r.sponsor == sponsor_id
        g["sponsored_octets"] += r.sponsored_octets if mine else 0
        g["subscriber_paid_octets"] += r.octets - (r.sponsored_octets if mine else 0)
        g["sponsor_amount_micro"] += r.sponsor_charged_micro if mine else 0
        g["subscriber_charged_micro"] += r.charged_micro
        if mine and (r.sponsored_octets or r.sponsor_charged_micro):
            s = sessions.setdefault((r.session, r.subscriber), {"session": r.session, "subscriber": r.subscriber,
                                                                "octets": 0, "amount_micro": 0, "reports": 0})
            s["octets"] += r.sponsored_octets
            s["amount_micro"] += r.sponsor_charged_micro
            s["reports"] += 1
    money = lambda micro: format_money(micro, sp.currency)
    for g in groups.values():
        g["reconciled"] = g["sponsored_octets"] + g["subscriber_paid_octets"] == g["total_octets"]
        g["sponsor_amount"] = money(g["sponsor_amount_micro"])
        g["subscriber_charged"] = money(g["subscriber_charged_micro"])
    for s in sessions.values():
        s["amount"] = money(s["amount_micro"])
    total_octets = sum(s["octets"] for s in sessions.values())
    total_micro = sum(s["amount_micro"] for s in sessions.values())
    out = {
        "sponsor": sp.id, "name": sp.name, "period": period, "currency": sp.currency,
        "budget": {"money": sp.budget.money, "volume": sp.budget.volume},
        "sponsored_octets": total_octets, "amount": money(total_micro), "amount_micro": total_micro,
        "sessions": sorted(sessions.values(), key=lambda s: (s["subscriber"], s["session"])),
        "traffic": sorted(groups.values(), key=lambda g: g["traffic"]),
    }
    reconciled = all(g["reconciled"] for g in groups.values())
    if account is not None and account.get("period") == period:
        out["account"] = {"used_octets": account["used"], "billed": money(account["spent"]),
                          "billed_micro": account["spent"]}
        reconciled &= account["used"] == total_octets and account["spent"] == total_micro
    out["reconciled"] = reconciled
    return out


def as_csv(rep: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["record", "sponsor", "period", "traffic", "session", "subscriber", "total_octets",
                "sponsored_octets", "subscriber_paid_octets", "amount", "currency"])
    for s in rep["sessions"]:
        w.writerow(["session", rep["sponsor"], rep["period"], "", s["session"], s["subscriber"], "",
                    s["octets"], "", s["amount"], rep["currency"]])
    for g in rep["traffic"]:
        w.writerow(["traffic", rep["sponsor"], rep["period"], g["traffic"], "", "", g["total_octets"],
                    g["sponsored_octets"], g["subscriber_paid_octets"], g["sponsor_amount"], rep["currency"]])
    w.writerow(["total", rep["sponsor"], rep["period"], "", "", "", "", rep["sponsored_octets"], "",
                rep["amount"], rep["currency"]])
    return buf.getvalue()


def account(store, rules: RuleSet, sponsor_id: str) -> dict | None:
    """The store's account of a monthly contract for its current period,
    as `report` takes it; None when there is none to compare with."""
    if sponsor_id not in store.sponsor_ids or sponsor_id not in rules.sponsor_index:
        return None
    sp = rules.sponsors[rules.sponsor_index[sponsor_id]]
    a = store.sponsors[store.sponsor_ids.index(sponsor_id)]
    if sp.period != "month" or int(a["period"]) <= 0:
        return None
    month = int(a["period"])
    return {"period": f"{month // 12:04d}-{month % 12 + 1:02d}", "used": int(a["used"]), "spent": int(a["spent"])}


def period_report(sponsor_id: str, period: str, usage_dir: str | Path, rules: RuleSet,
                  account: dict | None = None) -> dict:
    """`report` over the usage records of the month only: the UTC day files
    that can hold the sponsor's local month, streamed."""
    if sponsor_id not in rules.sponsor_index:
        raise SettlementError(f"no sponsor {sponsor_id!r} in rules version {rules.version}")
    try:
        first = datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        raise SettlementError(f"period {period!r}: expected YYYY-MM") from None
    last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
    records = iter_usage(usage_dir, *utc_days_around(first, last))
    return report(sponsor_id, period, records, rules, account)


def standing(store, rules: RuleSet, now: float) -> list[dict]:
    """Each contract of `rules` and its account now: what it paid and holds
    this period, and what is left of its budget."""
    from ..engine.calendar import period_of
    rules.set_clock(now)
    out = []
    for k, sp in enumerate(rules.sponsors):
        c = rules.tables.contracts[k]
        zn = rules.tables.zones[int(c["zone"])]
        pid, next_day = period_of(int(c["period_kind"]), 0, int(c["period_days"]), int(c["period_anchor"]), 0,
                                  int(zn["day"]), int(zn["year"]), int(zn["month"]), int(zn["mday"]))
        a = store.sponsors[store.sponsor_ids.index(sp.id)] if sp.id in store.sponsor_ids else None
        current = a is not None and int(a["period"]) == int(pid)
        used = int(a["used"]) if current else 0
        spent = int(a["spent"]) if current else 0
        held_octets = int(a["res_octets"]) if a is not None else 0
        held_money = int(a["res_money"]) if a is not None else 0
        money = lambda micro: format_money(micro, sp.currency)
        item = {"sponsor": sp.id, "name": sp.name, "currency": sp.currency, "timezone": sp.timezone,
                "period": sp.period, "next_period": (date(1970, 1, 1) + timedelta(days=int(next_day))).isoformat(),
                "budget": {"money": sp.budget.money,
                           "volume_octets": int(c["budget_volume"]) if int(c["budget_volume"]) >= 0 else None},
                "rating_groups": list(sp.rating_groups), "service_ids": list(sp.service_ids),
                "fallback": sp.fallback, "valid_from": sp.valid_from, "valid_until": sp.valid_until,
                "used_octets": used, "billed": money(spent), "billed_micro": spent,
                "held_octets": held_octets, "held_money": money(held_money)}
        # what the budget still pays for, as the engine reckons it: a money
        # budget buys whole tariff units (ocs/engine/sponsor.py `room`)
        if int(c["budget_volume"]) >= 0:
            item["remaining_octets"] = max(int(c["budget_volume"]) - used - held_octets, 0)
        else:
            left = max(int(c["budget_money"]) - spent - held_money, 0)
            item["remaining_money"] = money(left)
            item["remaining_octets"] = (left // int(c["price"])) * int(c["unit"]) if int(c["price"]) > 0 else 0
        out.append(item)
    return out
