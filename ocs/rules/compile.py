"""Load a rules directory, validate it whole, compile it into engine tables.

Every error names the file and the key path (`$.plan[0].bundle`), and all
errors of a directory are reported together. A compiled `RuleSet` is
immutable; its `version` (a digest of the files) is written with every
charge so each one traces back to the rules that made it.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import numpy as np

from ..engine.tables import PLAN
from . import schema as S
from .units import parse_money, parse_volume

E164, IMSI = 0, 1


class RuleError(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


def subscriber_key(id_type: int, digits: str) -> int:
    """One int64 per identity: type, digit count (so leading zeros count), value."""
    return (id_type << 56) | (len(digits) << 50) | int(digits)


@dataclass(frozen=True)
class SubscriberSeed:
    key: int
    label: str
    plan: int
    balance: int
    aliases: tuple[int, ...] = ()   # the subscriber's other identities (IMSI beside MSISDN)


@dataclass(frozen=True)
class RangeSeed:
    id_type: int
    first: int
    last: int
    digits: int
    plan: int
    balance: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def key(self, value: int) -> int:
        return (self.id_type << 56) | (self.digits << 50) | value


@dataclass
class RuleSet:
    version: str
    plans: list[S.Plan]
    plan_index: dict[str, int]
    plan_table: np.ndarray
    rated_rgs: np.ndarray
    denied_rgs: np.ndarray
    subscribers: list[SubscriberSeed]
    ranges: list[RangeSeed]
    zones: list[ZoneInfo] = field(default_factory=list)

    def set_periods(self, now: float) -> None:
        """Write each plan's current period id (calendar month in the plan's
        timezone) into the plan table, before a batch is charged."""
        for i, tz in enumerate(self.zones):
            t = datetime.fromtimestamp(now, tz)
            self.plan_table[i]["period"] = t.year * 12 + t.month - 1


def _where(path: Path, key: str, msg: str) -> str:
    return f"{path}: {key}: {msg}"


def _decode(path: Path, errors: list[str]) -> S.RuleFile | None:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        errors.append(f"{path}: TOML syntax: {e}")
        return None
    except (OSError, UnicodeDecodeError) as e:
        errors.append(f"{path}: cannot read: {e}")
        return None
    try:
        return msgspec.convert(raw, S.RuleFile)
    except msgspec.ValidationError as e:
        text = str(e)
        if " - at `" in text:
            msg, _, key = text.rpartition(" - at `")
            errors.append(_where(path, key.rstrip("`"), msg))
        else:
            errors.append(f"{path}: {text}")
        return None


def load_rules(directory: str | Path) -> RuleSet:
    directory = Path(directory)
    files = sorted(directory.glob("*.toml"))
    if not directory.is_dir():
        raise RuleError([f"{directory}: not a directory"])
    if not files:
        raise RuleError([f"{directory}: no *.toml rule files"])
    errors: list[str] = []
    digest = hashlib.sha256()
    decoded: list[tuple[Path, S.RuleFile]] = []
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        rf = _decode(path, errors)
        if rf is not None:
            decoded.append((path, rf))
    if errors:
        raise RuleError(errors)
    rs = _compile(decoded, errors)
    if errors:
        raise RuleError(errors)
    rs.version = digest.hexdigest()[:12]
    return rs


def _compile(decoded: list[tuple[Path, S.RuleFile]], errors: list[str]) -> RuleSet:
    plans: list[S.Plan] = []
    plan_index: dict[str, int] = {}
    rows, zones, rated, denied = [], [], [], []
    for path, rf in decoded:
        for i, p in enumerate(rf.plan):
            key = f"$.plan[{i}]"
            if p.id in plan_index:
                errors.append(_where(path, f"{key}.id", f"plan {p.id!r} is defined twice"))
                continue
            row = np.zeros(1, PLAN)[0]
            try:
                zones.append(ZoneInfo(p.timezone))
            except (ZoneInfoNotFoundError, ValueError):
                errors.append(_where(path, f"{key}.timezone", f"unknown timezone {p.timezone!r}"))
                continue
            for name, text in (("bundle", p.bundle), ("default_grant", p.default_grant), ("max_grant", p.max_grant)):
                try:
                    row[name] = parse_volume(text)
                except ValueError as e:
                    errors.append(_where(path, f"{key}.{name}", str(e)))
            row["price"], row["unit"] = -1, 1
            if p.overage is not None:
                try:
                    row["price"] = parse_money(p.overage.price)
                    row["unit"] = parse_volume(p.overage.per)
                    if row["unit"] <= 0 or row["price"] < 0:
                        raise ValueError("the price must be >= 0 and the unit > 0")
                except ValueError as e:
                    errors.append(_where(path, f"{key}.overage", str(e)))
            if row["default_grant"] <= 0 or row["max_grant"] < row["default_grant"]:
                errors.append(_where(path, f"{key}.default_grant", "needs 0 < default_grant <= max_grant"))
            row["validity"] = p.validity_time
            row["all_rgs"] = 1 if p.rating_groups is None else 0
            row["rg_start"], row["rg_count"] = sum(map(len, rated)), len(p.rating_groups or ())
            row["deny_start"], row["deny_count"] = sum(map(len, denied)), len(p.denied_rating_groups)
            rated.append(list(p.rating_groups or ()))
            denied.append(list(p.denied_rating_groups))
            plan_index[p.id] = len(plans)
            plans.append(p)
            rows.append(row)
    subscribers: list[SubscriberSeed] = []
    ranges: list[RangeSeed] = []
    seen_keys: dict[int, str] = {}

    def plan_of(path, key, pid):
        if pid not in plan_index:
            errors.append(_where(path, f"{key}.plan", f"no plan {pid!r} is defined"))
            return -1
        return plan_index[pid]

    def money_of(path, key, text):
        try:
            return parse_money(text)
        except ValueError as e:
            errors.append(_where(path, f"{key}.balance", str(e)))
            return 0

    for path, rf in decoded:
        for i, s in enumerate(rf.subscriber):
            key = f"$.subscriber[{i}]"
            plan, balance = plan_of(path, key, s.plan), money_of(path, key, s.balance)
            ids = [(E164, s.msisdn, "msisdn"), (IMSI, s.imsi, "imsi")]
            ids = [(t, d, n) for t, d, n in ids if d is not None]
            if not ids:
                errors.append(_where(path, key, "a subscriber needs an msisdn or an imsi"))
            for t, digits, name in ids:
                k = subscriber_key(t, digits)
                if k in seen_keys:
                    errors.append(_where(path, f"{key}.{name}", f"{digits} is already defined at {seen_keys[k]}"))
                seen_keys[k] = f"{path.name} {key}"
            if ids:
                # one subscriber, reachable by each of its identities
                keys = [subscriber_key(t, d) for t, d, _ in ids]
                subscribers.append(SubscriberSeed(keys[0], ids[0][1], plan, balance, tuple(keys[1:])))
        for i, r in enumerate(rf.subscriber_range):
            key = f"$.subscriber_range[{i}]"
            plan, balance = plan_of(path, key, r.plan), money_of(path, key, r.balance)
            if len(r.first) != len(r.last) or int(r.first) > int(r.last):
                errors.append(_where(path, key, "first and last need the same number of digits and first <= last"))
                continue
            ranges.append(RangeSeed(E164 if r.type == "e164" else IMSI, int(r.first), int(r.last), len(r.first), plan, balance))
    ordered = sorted(ranges, key=lambda r: (r.id_type, r.digits, r.first))
    for a, b in zip(ordered, ordered[1:]):
        if (a.id_type, a.digits) == (b.id_type, b.digits) and b.first <= a.last:
            errors.append(f"subscriber ranges {a.first}..{a.last} and {b.first}..{b.last} overlap")
    table = np.array(rows, dtype=PLAN) if rows else np.zeros(0, PLAN)
    flat = lambda lists: np.array([x for l in lists for x in l], dtype=np.int64)
    return RuleSet("", plans, plan_index, table, flat(rated), flat(denied), subscribers, ranges, zones)


def now_utc() -> float:
    return datetime.now(timezone.utc).timestamp()
