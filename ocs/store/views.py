"""Read-only views of stored state, as operators see them."""
from __future__ import annotations

import numpy as np

from ..engine.tables import SLOT_FREE
from ..rules.compile import RuleSet
from ..rules.units import format_money
from .embedded import EmbeddedStore


def subscriber_view(store: EmbeddedStore, rules: RuleSet, row: int, now: float) -> dict:
    s = store.subs[row]
    plan = rules.plans[int(s["plan"])] if int(s["plan"]) < len(rules.plans) else None
    currency = plan.currency if plan else "CNY"
    rules.set_periods(now)
    current = int(rules.plan_table[int(s["plan"])]["period"]) if plan else int(s["period"])
    fresh = int(s["period"]) == current
    bundle = int(rules.plan_table[int(s["plan"])]["bundle"]) if plan else 0
    used = int(s["bundle_used"]) if fresh else 0
    money = lambda v: format_money(int(v), currency)
    reservations = []
    for sess in np.nonzero(store.sessions["sub"] == row)[0]:
        meta = store.session_meta[sess]
        x = store.sessions[sess]
        for k in range(len(x["rg"])):
            if x["rg"][k] != SLOT_FREE:
                reservations.append({
                    "session_id": meta[0].decode("utf-8", "replace") if meta else None,
                    "rating_group": int(x["rg"][k]) if x["rg"][k] >= 0 else None,
                    "granted_octets": int(x["granted"][k]),
                    "reserved_bundle_octets": int(x["res_bundle"][k]),
                    "reserved_money": money(x["res_money"][k]),
                    "expires_at": float(x["expiry"]),
                })
    return {
        "subscriber": store.label(row),
        "plan": plan.id if plan else None,
        "currency": currency,
        "balance": money(s["balance"]),
        "balance_micro": int(s["balance"]),
        "reserved_money": money(s["res_money"]),
        "bundle": {
            "period": f"{current // 12:04d}-{current % 12 + 1:02d}",
            "total_octets": bundle,
            "used_octets": used,
            "reserved_octets": int(s["res_bundle"]),
            "remaining_octets": max(bundle - used - int(s["res_bundle"]), 0),
        },
        "overage_octets": int(s["overage_used"]) if fresh else 0,
        "charged_this_period": money(s["spent"] if fresh else 0),
        "used_time_seconds": int(s["used_time"]),
        "reservations": reservations,
    }
