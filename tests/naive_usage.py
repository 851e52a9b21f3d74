"""A slow, plainly written reference of the usage records' JSON lines
(docs/usage.md): one `UsageRecord` Struct per usage row, encoded by msgspec,
the amounts by `format_money`. `ocs.feeds.usage_lines` must write the same bytes."""
from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import numpy as np

from ocs.engine.tables import USAGE
from ocs.rules.units import format_money
from ocs.feeds.usage import UsageRecord
from ocs.store.records import JournalRecord


def usage_lines(rec: JournalRecord, rules, label, plan_of) -> bytes:
    rows = np.frombuffer(rec.usage, USAGE)
    sids = rec.usage_sessions or [b""] * len(rows)
    when = datetime.fromtimestamp(rec.time, timezone.utc).isoformat(timespec="milliseconds")
    out = b""
    for row, sid in zip(rows, sids):
        plan = plan_of(int(row["sub"]))
        currency = rules.plans[plan].currency if 0 <= plan < len(rules.plans) else "CNY"
        sponsor = int(row["sponsor"])
        sp = rules.sponsors[sponsor] if 0 <= sponsor < len(rules.sponsors) else None
        record = UsageRecord(
            seq=rec.seq, time=when, rules=rec.rules, session=sid.decode("utf-8", "replace"),
            subscriber=label(int(row["sub"])),
            rating_group=int(row["rg"]) if row["rg"] >= 0 else None,
            service_id=int(row["service_id"]) if row["service_id"] >= 0 else None,
            octets=max(int(row["used"]), 0), seconds=int(row["used_time"]),
            from_buckets=int(row["from_bundle"]),
            charged=format_money(int(row["charged"]), currency), charged_micro=int(row["charged"]),
            currency=currency,
            sponsor=sp.id if sp else None,
            sponsored_octets=int(row["sponsored"]) if sp else 0,
            sponsor_charged=format_money(int(row["sponsor_charged"]), sp.currency) if sp else None,
            sponsor_charged_micro=int(row["sponsor_charged"]) if sp else 0)
        out += msgspec.json.encode(record) + b"\n"
    return out
