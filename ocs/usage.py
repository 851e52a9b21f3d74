"""Usage records (CDRs): one JSON line per reported MSCC, in a file per UTC
day, `DATA/usage/YYYY-MM-DD.jsonl` (format: docs/usage.md).

They are written from the journal: after each group of records is durable,
and at start for whatever the journal holds beyond the last line written,
so every charge gets exactly one record even across a crash. Each carries
the journal sequence number and the rules version that charged it.
"""
from __future__ import annotations

import logging
import re
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
    """The usage records of one journal record, as Structs."""
    return [_dec.decode(line) for line in lines_of(rec, rules, label, plan_of, {}, {})]


def lines_of(rec: dict, rules: RuleSet, label: Callable[[int], str], plan_of: Callable[[int], int],
             labels: dict, money: dict) -> list[bytes]:
    """The usage records of one journal record as JSON lines (the fields of
    UsageRecord, in order). Built with bytes formatting, not per-row
    objects: this runs for every report at full load. `labels` and `money`
    are caches the caller keeps."""
    from .gy.app import USAGE
    if not rec.get("use"):
        return []
    rows = np.frombuffer(rec["use"], USAGE)
    n = len(rows)
    sids = rec.get("ss") or [b""] * n
    when = datetime.fromtimestamp(rec["t"], timezone.utc).isoformat(timespec="milliseconds").encode()
    head = b'{"seq":%d,"time":"%s","rules":"%s","session":' % (rec["seq"], when, rec["rules"].encode())
    cols = [rows[name].tolist() for name in ("sub", "rg", "used", "used_time", "from_bundle", "charged",
                                             "service_id", "sponsor", "sponsored", "sponsor_charged")]
    fmt = head + (b'%s,"subscriber":%s,"rating_group":%s,"service_id":%s,"octets":%d,"seconds":%d,'
                  b'"from_buckets":%d,"charged":"%s","charged_micro":%d,"currency":"%s",%s')
    none = b'"sponsor":null,"sponsored_octets":0,"sponsor_charged":null,"sponsor_charged_micro":0}'
    out = []
    for i, (sub, rg, used, secs, fb, charged, svc, sponsor, sponsored, sp_charged) in enumerate(zip(*cols)):
        who = labels.get(sub)
        if who is None:
            p = plan_of(sub)
            currency = rules.plans[p].currency if 0 <= p < len(rules.plans) else "CNY"
            who = labels[sub] = (_enc.encode(label(sub)), currency, currency.encode())
        m = money.get((charged, who[1]))
        if m is None:
            m = money[(charged, who[1])] = format_money(charged, who[1]).encode()
        sid = sids[i]
        sid = b'"%s"' % sid if _PLAIN(sid) else _enc.encode(sid.decode("utf-8", "replace"))
        tail = none
        if 0 <= sponsor < len(rules.sponsors):
            sp = rules.sponsors[sponsor]
            tail = b'"sponsor":"%s","sponsored_octets":%d,"sponsor_charged":"%s","sponsor_charged_micro":%d}' % (
                sp.id.encode(), sponsored, format_money(sp_charged, sp.currency).encode(), sp_charged)
        out.append(fmt % (sid, who[0], _INT(rg), _INT(svc), used if used > 0 else 0, secs, fb, m, charged, who[2], tail))
    return out


_UNPLAIN = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')


def _PLAIN(sid: bytes) -> bool:
    """A Session-Id that is its own JSON string (printable ASCII, no quote or backslash)."""
    return _UNPLAIN.search(sid) is None


def _INT(v: int) -> bytes:
    return b"%d" % v if v >= 0 else b"null"


class UsageLog:
    def __init__(self, directory: str | Path, ruleset: Callable[[str], RuleSet], label: Callable[[int], str],
                 plan_of: Callable[[int], int]):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ruleset = ruleset
        self.label = label
        self.plan_of = plan_of
        self.last_seq = self._last_seq()
        self._labels: dict = {}       # row -> (JSON label, currency): rows keep their identity
        self._money: dict = {}        # (micro-units, currency) -> text
        self._version = ""

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
            if rec["rules"] != self._version:      # a new version may move rows between plans
                self._labels.clear()
                self._version = rec["rules"]
            if len(self._money) > 100_000:
                self._money.clear()
            by_day.setdefault(day, []).extend(
                lines_of(rec, self.ruleset(rec["rules"]), self.label, self.plan_of, self._labels, self._money))
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
