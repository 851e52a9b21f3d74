"""Usage records (CDRs): one JSON line per reported MSCC, in a file per UTC
day, `DATA/usage/YYYY-MM-DD.jsonl` (format: docs/usage.md).

They are written from the journal: after each group of records is durable,
and at start for whatever the journal holds beyond the last line written,
so every charge gets exactly one record even across a crash. Each carries
the journal sequence number and the rules version that charged it.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import msgspec
import numpy as np

from .rules.compile import RuleSet
from .rules.units import format_money

log = logging.getLogger("ocs.usage")


class UsageRecord(msgspec.Struct, kw_only=True):
    seq: int
    time: str
    rules: str
    session: str
    subscriber: str
    rating_group: int | None
    service_id: int | None = None
    octets: int
    seconds: int = 0
    from_buckets: int
    charged: str
    charged_micro: int
    currency: str
    sponsor: str | None = None
    sponsored_octets: int = 0
    sponsor_charged: str | None = None
    sponsor_charged_micro: int = 0


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(UsageRecord)


def records_of(rec: dict, rules: RuleSet, label: Callable[[int], str], plan_of: Callable[[int], int]) -> list[UsageRecord]:
    from .gy.app import USAGE
    if not rec.get("use"):
        return []
    rows = np.frombuffer(rec["use"], USAGE)
    sids = rec.get("ss") or [b""] * len(rows)
    when = datetime.fromtimestamp(rec["t"], timezone.utc).isoformat(timespec="milliseconds")
    out = []
    for u, sid in zip(rows.tolist(), sids):
        (_, sub, rg, used, used_time, from_buckets, charged, _, service_id, sponsor, sponsored, sp_charged) = u
        p = plan_of(sub)
        currency = rules.plans[p].currency if 0 <= p < len(rules.plans) else "CNY"
        r = UsageRecord(seq=rec["seq"], time=when, rules=rec["rules"], session=sid.decode("utf-8", "replace"),
                        subscriber=label(sub), rating_group=rg if rg >= 0 else None,
                        service_id=service_id if service_id >= 0 else None, octets=max(used, 0), seconds=used_time,
                        from_buckets=from_buckets, charged=format_money(charged, currency), charged_micro=charged,
                        currency=currency)
        if sponsor >= 0 and sponsor < len(rules.sponsors):
            sp = rules.sponsors[sponsor]
            r.sponsor = sp.id
            r.sponsored_octets = sponsored
            r.sponsor_charged = format_money(sp_charged, sp.currency)
            r.sponsor_charged_micro = sp_charged
        out.append(r)
    return out


class UsageLog:
    def __init__(self, directory: str | Path, ruleset: Callable[[str], RuleSet], label: Callable[[int], str],
                 plan_of: Callable[[int], int]):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ruleset = ruleset
        self.label = label
        self.plan_of = plan_of
        self.last_seq = self._last_seq()

    def _last_seq(self) -> int:
        """The last journal record written whole. A file cut by a crash loses
        the lines of its last record, which catch_up writes again whole."""
        for path in sorted(self.dir.glob("*.jsonl"), reverse=True):
            data = path.read_bytes()
            lines = data.splitlines()
            complete = data.endswith(b"\n")
            seqs = []
            for line in lines:
                try:
                    seqs.append(_dec.decode(line).seq)
                except msgspec.DecodeError:
                    seqs.append(None)
            if not complete or (seqs and seqs[-1] is None):
                last = next((q for q in reversed(seqs) if q is not None), None)
                keep = [l for l, q in zip(lines, seqs) if q is not None and q != last]
                path.write_bytes(b"".join(l + b"\n" for l in keep))
                log.warning("%s: a record cut by a crash is written again", path)
                seqs = [q for q in seqs if q is not None and q != last]
            if seqs:
                return seqs[-1]
        return 0

    def write(self, records: list[dict]) -> None:
        """Append the usage of journal records (in order) not written yet."""
        by_day: dict[str, list[bytes]] = {}
        for rec in records:
            if rec["seq"] <= self.last_seq or not rec.get("use"):
                continue
            day = datetime.fromtimestamp(rec["t"], timezone.utc).date().isoformat()
            lines = by_day.setdefault(day, [])
            for r in records_of(rec, self.ruleset(rec["rules"]), self.label, self.plan_of):
                lines.append(_enc.encode(r))
        for day, lines in by_day.items():
            if lines:
                with (self.dir / f"{day}.jsonl").open("ab") as f:
                    f.write(b"\n".join(lines) + b"\n")
        if records:
            self.last_seq = max(self.last_seq, max(r["seq"] for r in records))

    def catch_up(self, journals: list[Path]) -> int:
        """At start: records the journal holds beyond the last line written."""
        from .store.journal import replay
        pending = []
        for path in journals:
            if path.exists():
                pending += [r for r in replay(path) if r["seq"] > self.last_seq]
        pending.sort(key=lambda r: r["seq"])
        self.write(pending)
        if pending:
            log.info("usage records written for %d journal records", len(pending))
        return len(pending)


def read_usage(directory: str | Path) -> list[UsageRecord]:
    out = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                try:
                    out.append(_dec.decode(line))
                except msgspec.DecodeError:
                    log.warning("%s: skipping a damaged line", path)
    return out
