"""Read-only views of stored state, as operators see them."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import msgspec
import numpy as np

from ..engine import kernel
from ..engine.tables import PACKS, SLOT_FREE
from ..rules.compile import RuleSet
from ..rules.units import format_money
from .interface import Store


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def subscriber_view(store: Store, rules: RuleSet, row: int, now: float) -> dict:
    """A subscriber's state now: money, buckets, packs, caps, reservations.
    Counters of a period that has ended read as zero (the engine resets them
    on the next charge)."""
    s = store.subs[row]
    p = int(s["plan"])
    plan = rules.plans[p]
    rules.set_clock(now)
    period, ends = kernel.period_bounds(store.subs, rules.tables, row)
    fresh = int(s["period"]) == period
    money = lambda v: format_money(int(v), plan.currency)
    pool_row = int(s["pool"])
    payer_row = int(s["payer"])
    pool = store.subs[pool_row]
    pool_fresh = fresh if pool_row == row else int(pool["period"]) == kernel.period_bounds(store.subs, rules.tables, pool_row)[0]
    payer = store.subs[payer_row]
    payer_fresh = fresh if payer_row == row else int(payer["period"]) == kernel.period_bounds(store.subs, rules.tables, payer_row)[0]
    buckets = _buckets(rules, p, s, fresh, pool, pool_fresh)
    packs = _packs(store, rules, row, pool_row, now)
    sessions, reservations = _sessions(store, row, money)
    view = {
        "subscriber": store.label(row),
        "plan": plan.id,
        "rules_version": rules.version,
        "currency": plan.currency,
        "billing": plan.billing,
        "balance": money(s["balance"]),
        "balance_micro": int(s["balance"]),
        "reserved_money": money(s["res_money"]),
        "period": {"ends": _iso(ends)},
        "buckets": buckets,
        "packs": packs,
        "charged_octets": int(payer["over_used"]) if payer_fresh else 0,
        "charged_this_period": money(payer["spent"] if payer_fresh else 0),
        "total_octets_this_period": int(s["total_used"]) if fresh else 0,
        "caps_lifted": bool(payer["reopened"]) if payer_fresh else False,
        "used_time_seconds": int(s["used_time"]),
        "reservations": reservations,
        "sessions": sessions,
    }
    if "bundle" in rules.bucket_names[p]:
        # the plain one-bundle view the spine issue documented
        b = buckets[rules.bucket_names[p].index("bundle")]
        view["bundle"] = {"total_octets": b["volume_octets"], "used_octets": b["used_octets"],
                          "reserved_octets": b["reserved_octets"], "remaining_octets": b["remaining_octets"]}
    view["overage_octets"] = view["charged_octets"]
    view.update(_sharing(store, s, row, pool_row, payer_row, fresh))
    view["active"] = bool(s["active"])
    profile = store.profiles.get(row)
    view["provisioned"] = "api" if profile is not None else "rules"
    if profile is not None:     # what the operator set, by name
        view.update({k: v for k, v in msgspec.structs.asdict(profile).items() if k != "msisdn" and v is not None})
    return view


def _buckets(rules: RuleSet, p: int, s, fresh: bool, pool, pool_fresh: bool) -> list[dict]:
    """The plan's buckets as this subscriber (`s`) draws on them: a shared
    one's counters are its pool owner's."""
    pl = rules.tables.plans[p]
    buckets = []
    for i, name in enumerate(rules.bucket_names[p]):
        b = rules.tables.buckets[int(pl["bucket_start"]) + i]
        holder, ok = (pool, pool_fresh) if b["shared"] else (s, fresh)
        used = int(holder["b_used"][i]) if ok else 0
        held = int(holder["b_res"][i])
        buckets.append({"name": name, "shared": bool(b["shared"]), "volume_octets": int(b["volume"]),
                        "used_octets": used, "reserved_octets": held,
                        "remaining_octets": max(int(b["volume"]) - used - held, 0)})
    return buckets


def _packs(store: EmbeddedStore, rules: RuleSet, row: int, pool_row: int, now: float) -> list[dict]:
    """Its packs, and its pool owner's shared ones."""
    packs = []
    for holder_row in sorted({row, pool_row}):
        h = store.subs[holder_row]
        for k in range(PACKS):
            d = int(h["k_def"][k])
            if d < 0 or (holder_row != row and not rules.tables.packs[d]["shared"]):
                continue
            packs.append({"pack": rules.packs[d].id, "holder": store.label(holder_row),
                          "volume_octets": int(h["k_vol"][k]), "used_octets": int(h["k_used"][k]),
                          "reserved_octets": int(h["k_res"][k]),
                          "valid_from": _iso(float(h["k_from"][k])), "valid_until": _iso(float(h["k_until"][k])),
                          "expired": bool(h["k_until"][k] <= now)})
    return packs


def _sessions(store: EmbeddedStore, row: int, money: Callable[[int], str]) -> tuple[list[dict], list[dict]]:
    """Its open sessions, and the reservations they hold."""
    reservations = []
    sessions = []
    for sess in np.nonzero(store.sessions["sub"] == row)[0]:
        meta = store.session_meta[sess]
        x = store.sessions[sess]
        sessions.append({"session_id": meta[0].decode("utf-8", "replace") if meta else None,
                         "peer": meta[1].decode("utf-8", "replace") if meta else None,
                         "last_request_number": int(x["last_number"]), "expires_at": float(x["expiry"])})
        for k in range(len(x["rg"])):
            if x["rg"][k] != SLOT_FREE:
                reservations.append({
                    "session_id": meta[0].decode("utf-8", "replace") if meta else None,
                    "rating_group": int(x["rg"][k]) if x["rg"][k] >= 0 else None,
                    "granted_octets": int(x["granted"][k]),
                    "reserved_money": money(x["res_money"][k]),
                    "expires_at": float(x["expiry"]),
                })
    return sessions, reservations


def _sharing(store: EmbeddedStore, s, row: int, pool_row: int, payer_row: int, fresh: bool) -> dict:
    """The group it belongs to: whose pool it draws from, within which
    sub-cap, and who pays; nothing for a subscriber on its own."""
    shared = {}
    if pool_row != row:
        shared["pool_owner"] = store.label(pool_row)
        shared["pool_used_octets"] = int(s["pool_used"]) if fresh else 0
        if int(s["pool_cap"]) >= 0:
            shared["pool_sub_cap_octets"] = int(s["pool_cap"])
    if payer_row != row:
        shared["payer"] = store.label(payer_row)
    return shared
