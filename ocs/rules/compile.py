"""Load a rules directory, validate it whole, compile it into engine tables.

Every error names the file and the key path (`$.plan[0].bundle`), and all
errors of a directory are reported together. A compiled `RuleSet` is
immutable but for its zone table (the local calendar, refreshed before each
batch); its `version` (a digest of the files) is written with every charge
so each one traces back to the rules that made it.
"""
from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from ..engine import tables as TB
from ..engine.calendar import local_day
from ..engine.tables import Tables
from ..subscriber import ATTRIBUTES, E164, IMSI, key_head, subscriber_key
from . import schema as S
from .plan import PlanCompiler, where
from .quota import QuotaOptions
from .units import parse_money, parse_volume, timezone_info



class RuleError(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class SubscriberSeed:
    key: int
    label: str
    plan: int
    balance: int
    aliases: tuple[int, ...] = ()   # the subscriber's other identities (IMSI beside MSISDN)
    zone: int = -1                  # -1: the plan's timezone
    anchor: int | None = None       # local day of activation; None: the day it is provisioned
    pool: int | None = None         # key of the group owner whose pool it draws from
    payer: int | None = None        # key of the row paying its overage
    pool_cap: int = -1
    attributes: tuple[int, int, int] = (0, 0, 0)    # customer type, terminal type, partner (numbers)
    source: str = ""                # where the rules declare it: "subscribers.toml $.subscriber[0]"


@dataclass(frozen=True)
class RangeSeed:
    id_type: int
    first: int
    last: int
    digits: int
    plan: int
    balance: int
    source: str = ""

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def key(self, value: int) -> int:
        return key_head(self.id_type, self.digits) | value


@dataclass
class RuleSet:
    version: str
    plans: list[S.Plan]
    plan_index: dict[str, int]
    packs: list[S.Pack]
    pack_index: dict[str, int]
    tables: Tables
    bucket_names: list[list[str]]       # per plan, its buckets in table order
    filters: list[str]                  # throttle Filter-Ids
    subscribers: list[SubscriberSeed]
    ranges: list[RangeSeed]
    groups: list[S.Group] = field(default_factory=list)
    zones: list[ZoneInfo] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)   # the source, kept with each version
    attributes: dict[str, dict[str, int]] = field(default_factory=dict)   # attribute names -> numbers
    sponsors: list[S.Sponsor] = field(default_factory=list)
    sponsor_index: dict[str, int] = field(default_factory=dict)
    elig_keys: list[int] = field(default_factory=list)   # subscriber keys behind tables.elig
    quota: QuotaOptions = field(default_factory=QuotaOptions)   # Quota-Holding-Time, Volume-Quota-Threshold
    _declared: dict[int, str] | None = field(default=None, repr=False)
    _clock_second: int | None = field(default=None, repr=False)    # the second the zone table shows

    def declared_by(self, key: int) -> str | None:
        """Where these rules declare the subscriber with this key (a
        subscriber's file and key path, or a range's), or None."""
        if self._declared is None:
            self._declared = {k: seed.source for seed in self.subscribers for k in (seed.key, *seed.aliases)}
        found = self._declared.get(key)
        if found is not None:
            return found
        for r in self.ranges:
            if r.key(r.first) <= key <= r.key(r.last):
                return r.source
        return None

    def zone_index(self, name: str, add: bool = False) -> int:
        """The zone table index of an IANA timezone; -1 when the rules do not
        use it, unless `add` appends it (a subscriber provisioned through the
        API may live in any timezone). Raises ValueError for an unknown zone.
        Call `set_clock` after adding, before the new zone is read."""
        for i, z in enumerate(self.zones):
            if z.key == name:
                return i
        if not add:
            return -1
        info = timezone_info(name)         # ValueError naming it
        self.zones.append(info)
        grown = np.zeros(len(self.zones), TB.ZONE)
        grown[:len(self.tables.zones)] = self.tables.zones
        self.tables = self.tables._replace(zones=grown)
        self._clock_second = None
        return len(self.zones) - 1

    def attribute_number(self, kind: str, name: str | None) -> int:
        """A subscriber attribute as the engine compares it: 0 none, -1 a
        name no rate of these rules mentions (so none matches it)."""
        if name is None:
            return 0
        return self.attributes.get(kind, {}).get(name, -1)

    def resolve(self, lookup) -> None:
        """Contracts that list subscribers: their rows, once provisioned."""
        for i, key in enumerate(self.elig_keys):
            self.tables.elig[i] = lookup(key)

    @property
    def plan_table(self) -> np.ndarray:
        return self.tables.plans

    def set_clock(self, now: float) -> None:
        """Fill the zone table with each timezone's local calendar at `now`,
        before a batch is charged. The table holds whole seconds, so within
        one second it is already right: batches come hundreds of times a
        second, and each zone costs ~4 us to fill."""
        second = math.floor(now)
        if second == self._clock_second:
            return
        self._clock_second = second
        zt = self.tables.zones
        for i, tz in enumerate(self.zones):
            t = datetime.fromtimestamp(now, tz)
            off = int(t.utcoffset().total_seconds())
            zt[i]["day"] = local_day(t.date())
            zt[i]["sec"] = t.hour * 3600 + t.minute * 60 + t.second
            zt[i]["year"], zt[i]["month"], zt[i]["mday"] = t.year, t.month, t.day
            zt[i]["offset"] = off

    def today(self, zone: int) -> int:
        return int(self.tables.zones[zone]["day"])

    def threshold_kind(self, plan: int, k: int) -> int:
        return int(self.tables.thresholds[int(self.tables.plans[plan]["thr_start"]) + k]["kind"])


def _decode(path: Path, text: bytes, errors: list[str]) -> S.RuleFile | None:
    try:
        raw = tomllib.loads(text.decode())
    except tomllib.TOMLDecodeError as e:
        errors.append(f"{path}: TOML syntax: {e}")
        return None
    except UnicodeDecodeError as e:
        errors.append(f"{path}: not UTF-8: {e}")
        return None
    try:
        return msgspec.convert(raw, S.RuleFile)
    except msgspec.ValidationError as e:
        text = str(e)
        if " - at `" in text:
            msg, _, key = text.rpartition(" - at `")
            errors.append(where(path, key.rstrip("`"), msg))
        else:
            errors.append(f"{path}: {text}")
        return None


def read_rule_files(directory: str | Path) -> dict[str, bytes]:
    """Every *.toml of a rules directory, read once: what is compiled is
    exactly what is kept as the version."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RuleError([f"{directory}: not a directory"])
    files = {}
    errors = []
    for path in sorted(directory.glob("*.toml")):
        try:
            files[path.name] = path.read_bytes()
        except OSError as e:
            errors.append(f"{path}: cannot read: {e}")
    if errors:
        raise RuleError(errors)
    if not files:
        raise RuleError([f"{directory}: no *.toml rule files"])
    return files


def load_rules(directory: str | Path, files: dict[str, bytes] | None = None) -> RuleSet:
    """Validate and compile a rules directory (or the given file contents);
    raises RuleError listing every problem."""
    directory = Path(directory)
    if files is None:
        files = read_rule_files(directory)
    errors: list[str] = []
    digest = hashlib.sha256()
    decoded: list[tuple[Path, S.RuleFile]] = []
    for name, text in sorted(files.items()):
        digest.update(name.encode() + b"\0" + text + b"\0")
        rf = _decode(directory / name, text, errors)
        if rf is not None:
            decoded.append((directory / name, rf))
    if errors:
        raise RuleError(errors)
    rs = _compile(decoded, errors)
    if errors:
        raise RuleError(errors)
    rs.version = digest.hexdigest()[:12]
    rs.files = dict(files)
    return rs


class _Zones:
    def __init__(self):
        self.names: list[str] = []
        self.infos: list[ZoneInfo] = []

    def index(self, name: str) -> int:
        if name not in self.names:
            info = timezone_info(name)     # ValueError for an unknown zone
            self.names.append(name)
            self.infos.append(info)
        return self.names.index(name)


def _compile(decoded: list[tuple[Path, S.RuleFile]], errors: list[str]) -> RuleSet:
    """The RuleSet of the decoded files, step by step in the order their
    errors are reported: packs, plans, groups, subscribers, sponsors."""
    zones = _Zones()
    pack_index: dict[str, int] = {}
    pc = PlanCompiler(errors, zones, pack_index)
    packs = _packs(decoded, errors, pc, pack_index)
    plans, plan_index = _plans(decoded, errors, pc)
    membership, groups = _groups(decoded, errors)
    seeds = _Seeds(errors, pc, zones, plan_index, membership)
    for path, rf in decoded:
        for i, s in enumerate(rf.subscriber):
            seeds.add_subscriber(path, f"$.subscriber[{i}]", s)
        for i, r in enumerate(rf.subscriber_range):
            seeds.add_range(path, f"$.subscriber_range[{i}]", r)
    seeds.check_groups()
    seeds.check_ranges()
    zone_table = np.zeros(max(len(zones.infos), 1), TB.ZONE)
    rs = RuleSet("", plans, plan_index, packs, pack_index, pc.tables(zone_table), pc.bucket_names, pc.filters,
                 seeds.subscribers, seeds.ranges, groups, zones.infos)
    rs.attributes = pc.attributes
    pc.quota.finish()
    rs.quota = pc.quota
    rs.sponsors = _sponsors(decoded, errors, pc, rs, plan_index)
    rs.elig_keys = list(pc.elig_keys)
    rs.tables = pc.tables(np.zeros(max(len(zones.infos), 1), TB.ZONE))    # sponsors may add zones
    rs.zones = zones.infos
    return rs


def _packs(decoded: list[tuple[Path, S.RuleFile]], errors: list[str], pc: PlanCompiler,
           pack_index: dict[str, int]) -> list[S.Pack]:
    """Every file's packs, each id once (into `pack_index`, which `pc` reads)."""
    packs: list[S.Pack] = []
    for path, rf in decoded:
        for i, p in enumerate(rf.pack):
            if p.id in pack_index:
                errors.append(where(path, f"$.pack[{i}].id", f"pack {p.id!r} is defined twice"))
                continue
            pack_index[p.id] = len(packs)
            packs.append(p)
            pc.add_pack(path, f"$.pack[{i}]", p)
    return packs


def _plans(decoded: list[tuple[Path, S.RuleFile]], errors: list[str],
           pc: PlanCompiler) -> tuple[list[S.Plan], dict[str, int]]:
    """Every file's plans without an error, each id once, and their index by id."""
    plans: list[S.Plan] = []
    plan_index: dict[str, int] = {}
    for path, rf in decoded:
        for i, p in enumerate(rf.plan):
            key = f"$.plan[{i}]"
            if p.id in plan_index:
                errors.append(where(path, f"{key}.id", f"plan {p.id!r} is defined twice"))
                continue
            if pc.add_plan(path, key, p):
                plan_index[p.id] = len(plans)
                plans.append(p)
    return plans, plan_index


def _groups(decoded: list[tuple[Path, S.RuleFile]],
            errors: list[str]) -> tuple[dict[str, tuple[str, str, int]], list[S.Group]]:
    """Shared groups: who draws from whose pool, who pays. Each member's
    (owner, billing, sub-cap) by MSISDN, and the groups."""
    membership: dict[str, tuple[str, str, int]] = {}   # msisdn -> (owner, billing, sub-cap)
    groups: list[S.Group] = []
    for path, rf in decoded:
        for i, g in enumerate(rf.group):
            key = f"$.group[{i}]"
            if g.owner not in g.members:
                errors.append(where(path, f"{key}.owner", f"the owner {g.owner} must be one of the members"))
            for m in g.members:
                if m in membership:
                    errors.append(where(path, f"{key}.members", f"{m} is already a member of another group"))
                cap = -1
                if m in g.sub_caps:
                    try:
                        cap = parse_volume(g.sub_caps[m])
                    except ValueError as e:
                        errors.append(where(path, f"{key}.sub_caps.{m}", str(e)))
                membership[m] = (g.owner, g.billing, cap)
            for m in g.sub_caps:
                if m not in g.members:
                    errors.append(where(path, f"{key}.sub_caps", f"{m} is not a member of the group"))
            groups.append(g)
    return membership, groups


class _Seeds:
    """The subscribers and subscriber ranges the rules declare, as seeds
    for the store; their errors go into `errors`."""

    def __init__(self, errors: list[str], pc: PlanCompiler, zones: _Zones, plan_index: dict[str, int],
                 membership: dict[str, tuple[str, str, int]]):
        self.errors, self.pc, self.zones = errors, pc, zones
        self.plan_index, self.membership = plan_index, membership
        self.subscribers: list[SubscriberSeed] = []
        self.ranges: list[RangeSeed] = []
        self.seen_keys: dict[int, str] = {}
        self.by_msisdn: dict[str, tuple[Path, str, S.Subscriber]] = {}

    def plan_of(self, path, key, pid):
        if pid not in self.plan_index:
            self.errors.append(where(path, f"{key}.plan", f"no plan {pid!r} is defined"))
            return -1
        return self.plan_index[pid]

    def money_of(self, path, key, text):
        try:
            return parse_money(text)
        except ValueError as e:
            self.errors.append(where(path, f"{key}.balance", str(e)))
            return 0

    def add_subscriber(self, path: Path, key: str, s: S.Subscriber) -> None:
        errors = self.errors
        plan, balance = self.plan_of(path, key, s.plan), self.money_of(path, key, s.balance)
        ids = [(E164, s.msisdn, "msisdn"), (IMSI, s.imsi, "imsi")]
        ids = [(t, d, n) for t, d, n in ids if d is not None]
        if not ids:
            errors.append(where(path, key, "a subscriber needs an msisdn or an imsi"))
            return
        for t, digits, name in ids:
            k = subscriber_key(t, digits)
            if k in self.seen_keys:
                errors.append(where(path, f"{key}.{name}", f"{digits} is already defined at {self.seen_keys[k]}"))
            self.seen_keys[k] = f"{path.name} {key}"
        zone = -1
        if s.timezone is not None:
            try:
                zone = self.zones.index(s.timezone)
            except ValueError as e:
                errors.append(where(path, f"{key}.timezone", str(e)))
        anchor = None
        if s.since is not None:
            try:
                anchor = local_day(date.fromisoformat(s.since))
            except ValueError:
                errors.append(where(path, f"{key}.since", f"{s.since!r} is not a date YYYY-MM-DD"))
        pool = payer = None
        cap = -1
        if s.msisdn is not None and s.msisdn in self.membership:
            owner, billing, cap = self.membership[s.msisdn]
            pool = subscriber_key(E164, owner)
            payer = pool if billing == "owner" else None
        if s.msisdn is not None:
            self.by_msisdn[s.msisdn] = (path, key, s)
        keys = [subscriber_key(t, d) for t, d, _ in ids]
        attrs = tuple(self.pc.attribute(a, getattr(s, a)) if getattr(s, a) is not None else 0
                      for a in ATTRIBUTES)
        self.subscribers.append(SubscriberSeed(keys[0], ids[0][1], plan, balance, tuple(keys[1:]), zone, anchor,
                                               pool, payer, cap, attrs, f"{path.name} {key}"))

    def add_range(self, path: Path, key: str, r: S.SubscriberRange) -> None:
        plan, balance = self.plan_of(path, key, r.plan), self.money_of(path, key, r.balance)
        if len(r.first) != len(r.last) or int(r.first) > int(r.last):
            self.errors.append(where(path, key, "first and last need the same number of digits and first <= last"))
            return
        self.ranges.append(RangeSeed(E164 if r.type == "e164" else IMSI, int(r.first), int(r.last), len(r.first),
                                     plan, balance, f"{path.name} {key} ({r.first}-{r.last})"))

    def check_groups(self) -> None:
        """Every member a subscriber of the rules, on its owner's plan."""
        errors, by_msisdn = self.errors, self.by_msisdn
        for m, (owner, _, _) in self.membership.items():
            if m not in by_msisdn:
                errors.append(f"group of {owner}: member {m} is not a subscriber in the rules")
            elif owner in by_msisdn and by_msisdn[m][2].plan != by_msisdn[owner][2].plan:
                path, key, _ = by_msisdn[m]
                errors.append(where(path, f"{key}.plan", f"a member of {owner}'s group must be on the owner's plan "
                                                         f"{by_msisdn[owner][2].plan!r}"))

    def check_ranges(self) -> None:
        """No two ranges of the same kind and length overlap."""
        ordered = sorted(self.ranges, key=lambda r: (r.id_type, r.digits, r.first))
        for a, b in zip(ordered, ordered[1:]):
            if (a.id_type, a.digits) == (b.id_type, b.digits) and b.first <= a.last:
                self.errors.append(f"subscriber ranges {a.first}..{a.last} and {b.first}..{b.last} overlap")


def _sponsors(decoded: list[tuple[Path, S.RuleFile]], errors: list[str], pc: PlanCompiler, rs: RuleSet,
              plan_index: dict[str, int]) -> list[S.Sponsor]:
    """Every file's sponsor contracts, each id once (into `rs.sponsor_index`)."""
    sponsors: list[S.Sponsor] = []
    for path, rf in decoded:
        for i, sp in enumerate(rf.sponsor):
            if sp.id in rs.sponsor_index:
                errors.append(where(path, f"$.sponsor[{i}].id", f"sponsor {sp.id!r} is defined twice"))
                continue
            pc.add_sponsor(path, f"$.sponsor[{i}]", sp, plan_index)
            rs.sponsor_index[sp.id] = len(sponsors)
            sponsors.append(sp)
    return sponsors
