"""Compiling plans and packs into the engine's tables (`ocs/engine/tables.py`).

Each plan becomes a PLAN row pointing into shared tables: its buckets, its
consumption order, its rates and tariffs (ladders are steps), its
thresholds and its time-of-day band edges. Errors name the file and key.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

from ..engine import tables as TB
from ..engine.calendar import local_day
from ..engine.tables import Tables
from ..subscriber import ATTRIBUTES, E164, subscriber_key
from . import schema as S
from .quota import QuotaOptions
from .units import parse_money, parse_volume

_AFTER = {"charge": TB.CHARGE, "throttle": TB.THROTTLE, "stop": TB.STOP}
_CAP_ACTION = {"stop": TB.STOP, "throttle": TB.THROTTLE, "free": TB.FREE}
_ROUNDING = {"per-started-unit": TB.PER_REPORT, "per-started-unit-of-period": TB.CUMULATIVE}
RAT_TYPES = {"utran": 1, "geran": 2, "wlan": 3, "gan": 4, "hspa": 5, "eutran": 6, "virtual": 7,
             "nb-iot": 8, "lte-m": 9, "nr": 10}          # 3GPP-RAT-Type, TS 29.061 16.4.7.2
_ON = {"cap": TB.T_CAP, "throttled": TB.T_THROTTLED, "ceiling": TB.T_CEILING, "credit-exhausted": TB.T_CREDIT,
       "daily-summary": TB.T_DAILY}


def where(path: Path, key: str, msg: str) -> str:
    return f"{path}: {key}: {msg}"


def parse_hours(text: str) -> tuple[int, int]:
    """'23:00-07:00' -> local seconds (82800, 25200); a band may cross midnight."""
    a, b = text.split("-")
    frm = int(a[:2]) * 3600 + int(a[3:]) * 60
    to = int(b[:2]) * 3600 + int(b[3:]) * 60
    if to > 86400 or frm == to % 86400 and not (frm == 0 and to == 86400):
        raise ValueError(f"{text!r} is not a band of hours such as '23:00-07:00'")
    return frm, to % 86400 if to != 86400 else 86400


class PlanCompiler:
    def __init__(self, errors: list[str], zones, pack_index: dict[str, int]):
        self.errors = errors
        self.zones = zones
        self.pack_index = pack_index
        self.rows: list = []
        self.buckets: list = []
        self.packs: list = []
        self.bucket_rgs: list[int] = []
        self.order: list[int] = []
        self.rates: list = []
        self.rate_rgs: list[int] = []
        self.tariffs: list = []
        self.steps: list = []
        self.thresholds: list = []
        self.edges: list[int] = []
        self.rated: list[int] = []
        self.denied: list[int] = []
        self.filters: list[str] = []
        self.quota = QuotaOptions()
        self.bucket_names: list[list[str]] = []
        self.pack_edges: set[int] = set()
        self.cond: list[int] = []
        self.contracts: list = []
        self.elig_keys: list[int] = []       # subscriber keys; rows once installed
        # subscriber attribute names -> small numbers (0: none), shared by rates and subscribers
        self.attributes: dict[str, dict[str, int]] = {a: {} for a in ATTRIBUTES}

    def attribute(self, kind: str, name: str) -> int:
        table = self.attributes[kind]
        return table.setdefault(name, len(table) + 1)

    def _cond(self, values) -> tuple[int, int]:
        if values is None:
            return 0, -1
        start = len(self.cond)
        self.cond.extend(values)
        return start, len(values)

    # ------------------------------------------------------------ helpers
    def _err(self, path, key, msg):
        self.errors.append(where(path, key, msg))

    def _volume(self, path, key, text, default=0, round_up=False) -> int:
        if text is None:
            return default
        try:
            return parse_volume(text, round_up)
        except ValueError as e:
            self._err(path, key, str(e))
            return default

    def _money(self, path, key, text, default=0) -> int:
        if text is None:
            return default
        try:
            return parse_money(text)
        except ValueError as e:
            self._err(path, key, str(e))
            return default

    def _hours(self, path, key, text) -> tuple[int, int]:
        if text is None:
            return -1, -1
        try:
            frm, to = parse_hours(text)
        except ValueError as e:
            self._err(path, key, str(e))
            return -1, -1
        return (-1, -1) if (frm, to) == (0, 86400) else (frm, to)

    def _rg_list(self, rgs) -> tuple[int, int]:
        if rgs is None:
            return 0, -1
        start = len(self.bucket_rgs)
        self.bucket_rgs.extend(rgs)
        return start, len(rgs)

    def _bucket_row(self, path, key, volume, rgs, hours, shared):
        row = np.zeros(1, TB.BUCKET)[0]
        row["volume"] = self._volume(path, f"{key}.volume", volume)
        row["rg_start"], row["rg_count"] = self._rg_list(rgs)
        row["hour_from"], row["hour_to"] = self._hours(path, f"{key}.hours", hours)
        row["shared"] = shared
        return row

    def _flat(self, path, key, price, per, rounding) -> int:
        p = self._money(path, f"{key}.price", price)
        unit = self._volume(path, f"{key}.per", per, 1)
        if p < 0 or unit <= 0:
            self._err(path, key, "the price must be >= 0 and the unit > 0")
            unit = max(unit, 1)
        self.steps.append((0, 0, p, unit))
        self.tariffs.append((len(self.steps) - 1, 1, _ROUNDING[rounding], int(p == 0)))
        return len(self.tariffs) - 1

    def _ladder(self, path, key, steps: list[S.Step]) -> int:
        parsed = []
        for i, st in enumerate(steps):
            k = f"{key}[{i}]"
            parsed.append((self._volume(path, f"{k}.from", st.from_, round_up=True), self._money(path, f"{k}.base", st.base),
                           self._money(path, f"{k}.price", st.price), self._volume(path, f"{k}.per", st.per, 1)))
        if not parsed or parsed[0][0] != 0 or parsed[0][1] != 0:
            self._err(path, key, "a ladder starts with a step from 0 with base 0")
        for i, (a, b) in enumerate(zip(parsed, parsed[1:])):
            if b[0] <= a[0]:
                self._err(path, f"{key}[{i + 1}].from", "steps must start at increasing volumes")
            elif a[3] > 0 and b[1] < a[1] + -(-(b[0] - 1 - a[0]) // a[3]) * a[2]:
                self._err(path, f"{key}[{i + 1}].base", "a step's base must be at least what the step "
                                                       "before costs at its end: the more you use, the more it costs")
        for i, (_, base, price, unit) in enumerate(parsed):
            if base < 0 or price < 0 or unit <= 0:
                self._err(path, f"{key}[{i}]", "base and price must be >= 0 and per > 0")
        start = len(self.steps)
        self.steps.extend((f, b, p, max(u, 1)) for f, b, p, u in parsed)
        free = all(b == 0 and p == 0 for _, b, p, _ in parsed)
        self.tariffs.append((start, len(parsed), TB.CUMULATIVE, int(free)))
        return len(self.tariffs) - 1

    # ------------------------------------------------------------ packs
    def add_pack(self, path: Path, key: str, p: S.Pack) -> None:
        row = self._bucket_row(path, key, p.volume, p.rating_groups, p.hours, p.shared)
        row["price"] = self._money(path, f"{key}.price", p.price)
        row["days"] = p.days or 0
        if row["hour_from"] >= 0:
            self.pack_edges.update((int(row["hour_from"]), int(row["hour_to"])))
        self.packs.append(row)

    # ------------------------------------------------------------ plans
    def add_plan(self, path: Path, key: str, p: S.Plan) -> bool:
        """A plan as a PLAN row, step by step in the order its errors are
        reported; its buckets, order, rates and thresholds go into the
        shared tables either way, its row only if it has no error."""
        n_err = len(self.errors)
        row = np.zeros(1, TB.PLAN)[0]
        self._plan_period(path, key, p, row)
        names, edges = self._plan_buckets(path, key, p, row)
        self._plan_order(path, key, p, row, names, int(row["bucket_count"]))
        self._plan_money(path, key, p, row)
        self._plan_rates(path, key, p, row, edges)
        self._plan_thresholds(path, key, p, row, names)
        self._plan_grants(path, key, p, row)
        self.quota.add_plan(len(self.rows), p, lambda k, msg: self._err(path, k, msg), key)
        row["edge_start"], row["edge_count"] = len(self.edges), len(edges)
        self.edges.extend(sorted(e % 86400 for e in edges))
        row["all_rgs"] = 1 if p.rating_groups is None else 0
        row["rg_start"], row["rg_count"] = len(self.rated), len(p.rating_groups or ())
        row["deny_start"], row["deny_count"] = len(self.denied), len(p.denied_rating_groups)
        self.rated.extend(p.rating_groups or ())
        self.denied.extend(p.denied_rating_groups)
        if len(self.errors) > n_err:
            return False
        self.rows.append(row)
        self.bucket_names.append(names)
        return True

    def _plan_period(self, path: Path, key: str, p: S.Plan, row) -> None:
        """Its timezone, period and reset, billing and fees."""
        try:
            row["zone"] = self.zones.index(p.timezone)
        except ValueError as e:
            self._err(path, f"{key}.timezone", str(e))
        row["period_kind"] = {"month": TB.MONTH, "quarter": TB.QUARTER, "days": TB.DAYS}[p.period]
        row["reset"] = TB.ANNIVERSARY if p.reset == "anniversary" else TB.CALENDAR
        if p.period == "days":
            if p.period_days is None:
                self._err(path, f"{key}.period_days", "a period of days needs period_days")
            row["period_days"] = p.period_days or 1
            if p.period_start is not None:
                try:
                    row["period_anchor"] = local_day(date.fromisoformat(p.period_start))
                except ValueError:
                    self._err(path, f"{key}.period_start", f"{p.period_start!r} is not a date YYYY-MM-DD")
        elif p.period_days is not None:
            self._err(path, f"{key}.period_days", "only a period of days takes period_days")
        row["postpaid"] = p.billing == "postpaid"
        self._money(path, f"{key}.monthly_fee", p.monthly_fee)
        self._money(path, f"{key}.line_fee", p.line_fee)

    def _plan_buckets(self, path: Path, key: str, p: S.Plan, row) -> tuple[list[str], set[int]]:
        """Its buckets (the bundle first): their names, and the time-of-day
        band edges of theirs and the packs' (the rates add theirs)."""
        buckets = list(p.bucket)
        bundle = self._volume(path, f"{key}.bundle", p.bundle)
        if bundle > 0:
            if any(b.name == "bundle" for b in buckets):
                self._err(path, f"{key}.bundle", "give the bundle either as `bundle` or as a bucket named 'bundle'")
            buckets.insert(0, S.Bucket(name="bundle", volume=bundle))
        names = [b.name for b in buckets]
        if len(buckets) > TB.PLAN_BUCKETS:
            self._err(path, f"{key}.bucket", f"at most {TB.PLAN_BUCKETS} buckets per plan (packs are separate)")
            buckets = buckets[:TB.PLAN_BUCKETS]
        if len(set(names)) != len(names):
            self._err(path, f"{key}.bucket", "bucket names must be unique within a plan")
        row["bucket_start"], row["bucket_count"] = len(self.buckets), len(buckets)
        edges = set(self.pack_edges)
        for i, b in enumerate(buckets):
            brow = self._bucket_row(path, f"{key}.bucket[{i}]", b.volume, b.rating_groups, b.hours, b.shared)
            if brow["hour_from"] >= 0:
                edges.update((int(brow["hour_from"]), int(brow["hour_to"])))
            self.buckets.append(brow)
        return names, edges

    def _plan_order(self, path: Path, key: str, p: S.Plan, row, names: list[str], n_buckets: int) -> None:
        """The order its buckets and packs are drawn from; buckets it leaves
        out come last (`n_buckets`: those kept, at most PLAN_BUCKETS)."""
        order = list(p.order) if p.order is not None else ["packs"] + names
        entries = []
        for i, name in enumerate(order):
            if name == "packs":
                entries.append(TB.ANY_PACK)
            elif name in names:
                entries.append(names.index(name))
            elif name in self.pack_index:
                entries.append(TB.PACK_BASE - self.pack_index[name])
            else:
                self._err(path, f"{key}.order[{i}]", f"{name!r} is neither a bucket of this plan, a pack, nor 'packs'")
        if len(set(entries)) != len(entries):
            self._err(path, f"{key}.order", "each bucket, pack or 'packs' may appear once")
        entries += [i for i in range(n_buckets) if i not in entries]
        row["order_start"], row["order_count"] = len(self.order), len(entries)
        self.order.extend(entries)

    def _plan_money(self, path: Path, key: str, p: S.Plan, row) -> None:
        """Its tariff (overage or ladder), what follows the bundle, caps,
        ceiling and throttle profile."""
        if p.overage is not None and p.ladder is not None:
            self._err(path, key, "a plan has either an overage or a ladder, not both")
        row["tariff"] = -1
        if p.overage is not None:
            o = p.overage
            row["tariff"] = self._flat(path, f"{key}.overage", o.price, o.per, o.rounding)
        elif p.ladder is not None:
            row["tariff"] = self._ladder(path, f"{key}.ladder", p.ladder)
        after = p.after_bundle or ("charge" if row["tariff"] >= 0 else "stop")
        if after == "charge" and row["tariff"] < 0:
            self._err(path, f"{key}.after_bundle", "'charge' needs an overage or a ladder")
        row["after_bundle"] = _AFTER[after]
        row["fee_cap"] = row["volume_cap"] = row["ceiling"] = -1
        row["cap_action"] = TB.STOP
        if p.cap is not None:
            if p.cap.fee is None and p.cap.volume is None:
                self._err(path, f"{key}.cap", "a cap needs a fee, a volume, or both")
            row["fee_cap"] = self._money(path, f"{key}.cap.fee", p.cap.fee, -1)
            row["volume_cap"] = self._volume(path, f"{key}.cap.volume", p.cap.volume, -1)
            row["cap_action"] = _CAP_ACTION[p.cap.action]
            row["reopen"] = p.cap.reopen
        if p.ceiling is not None:
            row["ceiling"] = self._volume(path, f"{key}.ceiling", p.ceiling)
        throttles = after == "throttle" or (p.cap is not None and p.cap.action == "throttle")
        row["filter"] = -1
        if throttles and p.throttle_filter is None:
            self._err(path, f"{key}.throttle_filter", "a plan that throttles names its throttle profile (Filter-Id)")
        if p.throttle_filter is not None:
            if p.throttle_filter not in self.filters:
                self.filters.append(p.throttle_filter)
            row["filter"] = self.filters.index(p.throttle_filter)

    def _plan_rates(self, path: Path, key: str, p: S.Plan, row, edges: set[int]) -> None:
        """Its home networks and rates, each with its conditions; their
        bands of hours go into `edges`."""
        from ..diameter.fastccr import apn_key, plmn_key
        row["home_start"], row["home_count"] = self._cond([plmn_key(h) for h in p.home_networks])
        row["rate_start"], row["rate_count"] = len(self.rates), len(p.rate)
        for i, r in enumerate(p.rate):
            k = f"{key}.rate[{i}]"
            tariff = TB.FREE_RATE
            if r.deny:
                tariff = -1
            elif not r.free:
                if r.price is None:
                    self._err(path, k, "a rate needs a price, free = true, or deny = true")
                else:
                    tariff = self._flat(path, k, r.price, r.per, r.rounding)
            if r.roaming is not None and not p.home_networks:
                self._err(path, f"{k}.roaming", "a roaming condition needs the plan's home_networks")
            conds = [self._cond(None if r.apn is None else [apn_key(a) for a in r.apn]),
                     self._cond(None if r.rat is None else [RAT_TYPES[x] for x in r.rat])]
            conds += [self._cond(None if getattr(r, a) is None else [self.attribute(a, n) for n in getattr(r, a)])
                      for a in ATTRIBUTES]
            frm, to = self._hours(path, f"{k}.hours", r.hours)
            if frm >= 0:
                edges.update((frm, to))
            start = len(self.rate_rgs)
            if r.rating_groups is not None:
                self.rate_rgs.extend(r.rating_groups)
            self.rates.append((start, -1 if r.rating_groups is None else len(r.rating_groups), frm, to, tariff,
                               int(r.buckets), int(r.deny), -1 if r.roaming is None else int(r.roaming),
                               [c[0] for c in conds], [c[1] for c in conds]))

    def _plan_thresholds(self, path: Path, key: str, p: S.Plan, row, names: list[str]) -> None:
        """Its thresholds (at most THRESHOLDS): a bucket's percent, money
        spent, or an event."""
        if len(p.threshold) > TB.THRESHOLDS:
            self._err(path, f"{key}.threshold", f"at most {TB.THRESHOLDS} thresholds per plan")
        row["thr_start"], row["thr_count"] = len(self.thresholds), min(len(p.threshold), TB.THRESHOLDS)
        seen = set()
        for i, t in enumerate(p.threshold[:TB.THRESHOLDS]):
            k = f"{key}.threshold[{i}]"
            if t.name in seen:
                self._err(path, f"{k}.name", f"threshold {t.name!r} is declared twice")
            seen.add(t.name)
            given = sum(x is not None for x in (t.bucket, t.spent, t.on))
            if given != 1:
                self._err(path, k, "a threshold has exactly one of: bucket (with percent), spent, on")
                self.thresholds.append((0, 0, 0))
            elif t.bucket is not None:
                if t.bucket not in names:
                    self._err(path, f"{k}.bucket", f"the plan has no bucket {t.bucket!r}")
                if t.percent is None:
                    self._err(path, f"{k}.percent", "a bucket threshold needs a percent")
                self.thresholds.append((TB.T_BUCKET, names.index(t.bucket) if t.bucket in names else 0, t.percent or 0))
            elif t.spent is not None:
                self.thresholds.append((TB.T_SPENT, 0, self._money(path, f"{k}.spent", t.spent)))
            else:
                self.thresholds.append((_ON[t.on], 0, 0))

    def _plan_grants(self, path: Path, key: str, p: S.Plan, row) -> None:
        """Its trial pack, default and largest grant, and Validity-Time."""
        row["trial"] = -1
        if p.trial_pack is not None:
            if p.trial_pack not in self.pack_index:
                self._err(path, f"{key}.trial_pack", f"no pack {p.trial_pack!r} is defined")
            else:
                row["trial"] = self.pack_index[p.trial_pack]
        for name, text in (("default_grant", p.default_grant), ("max_grant", p.max_grant)):
            row[name] = self._volume(path, f"{key}.{name}", text)
        if row["default_grant"] <= 0 or row["max_grant"] < row["default_grant"]:
            self._err(path, f"{key}.default_grant", "needs 0 < default_grant <= max_grant")
        row["validity"] = p.validity_time

    def add_sponsor(self, path: Path, key: str, sp: S.Sponsor, plan_index: dict[str, int]) -> None:
        """A sponsor contract as a CONTRACT row (after the plans)."""
        from ..diameter.fastccr import apn_key
        row = np.zeros(1, TB.CONTRACT)[0]
        try:
            row["zone"] = self.zones.index(sp.timezone)
            tz = self.zones.infos[int(row["zone"])]
        except ValueError as e:
            self._err(path, f"{key}.timezone", str(e))
            tz = timezone.utc
        row["period_kind"] = {"month": TB.MONTH, "quarter": TB.QUARTER, "days": TB.DAYS}[sp.period]
        row["period_days"] = sp.period_days or 1
        if sp.period == "days" and sp.period_days is None:
            self._err(path, f"{key}.period_days", "a period of days needs period_days")
        b = sp.budget
        if (b.money is None) == (b.volume is None):
            self._err(path, f"{key}.budget", "a budget is either money or volume")
        row["budget_money"] = self._money(path, f"{key}.budget.money", b.money, -1)
        row["budget_volume"] = self._volume(path, f"{key}.budget.volume", b.volume, -1)
        row["price"] = self._money(path, f"{key}.price", sp.price)
        row["unit"] = max(self._volume(path, f"{key}.per", sp.per, 1), 1)
        if row["budget_money"] >= 0 and row["price"] <= 0:
            self._err(path, f"{key}.price", "a money budget needs a price > 0")
        if not sp.rating_groups and not sp.service_ids:
            self._err(path, key, "a contract names the traffic it pays for: rating_groups and/or service_ids")
        row["rg_start"], row["rg_count"] = self._cond(sp.rating_groups)
        row["sid_start"], row["sid_count"] = self._cond(sp.service_ids)
        row["apn_start"], row["apn_count"] = self._cond(None if sp.apn is None else [apn_key(a) for a in sp.apn])
        plans = []
        for i, pid in enumerate(sp.plans or []):
            if pid not in plan_index:
                self._err(path, f"{key}.plans[{i}]", f"no plan {pid!r} is defined")
            plans.append(plan_index.get(pid, -1))
        row["plan_start"], row["plan_count"] = self._cond(None if sp.plans is None else plans)
        if sp.subscribers is None:
            row["elig_start"], row["elig_count"] = 0, -1
        else:
            row["elig_start"], row["elig_count"] = len(self.elig_keys), len(sp.subscribers)
            self.elig_keys.extend(subscriber_key(E164, d) for d in sp.subscribers)
        bounds = []
        for name, text, default in (("valid_from", sp.valid_from, -1e300), ("valid_until", sp.valid_until, 1e300)):
            if text is None:
                bounds.append(default)
                continue
            try:
                day = datetime.fromisoformat(text).replace(tzinfo=tz)
                bounds.append(day.timestamp())
            except ValueError:
                self._err(path, f"{key}.{name}", f"{text!r} is not a date YYYY-MM-DD")
                bounds.append(default)
        row["valid_from"], row["valid_until"] = bounds
        row["fallback"] = {"charge": TB.CHARGE, "deny": TB.STOP, "throttle": TB.THROTTLE}[sp.fallback]
        row["filter"] = -1
        if sp.fallback == "throttle" and sp.throttle_filter is None:
            self._err(path, f"{key}.throttle_filter", "a contract that throttles names its throttle profile (Filter-Id)")
        if sp.throttle_filter is not None:
            if sp.throttle_filter not in self.filters:
                self.filters.append(sp.throttle_filter)
            row["filter"] = self.filters.index(sp.throttle_filter)
        self.contracts.append(row)

    def tables(self, zones: np.ndarray) -> Tables:
        def arr(items, dtype):
            # never empty: a kernel may index row 0 of a table no plan uses
            return np.array(items, dtype=dtype) if items else np.zeros(1, dtype)
        ints = lambda xs: np.array(xs or [0], dtype=np.int64)
        return Tables(
            plans=np.array(self.rows, dtype=TB.PLAN) if self.rows else np.zeros(0, TB.PLAN),
            buckets=arr(self.buckets, TB.BUCKET), packs=arr(self.packs, TB.BUCKET),
            bucket_rgs=ints(self.bucket_rgs), order=np.array(self.order or [0], dtype=np.int32),
            rates=arr(self.rates, TB.RATE), rate_rgs=ints(self.rate_rgs), tariffs=arr(self.tariffs, TB.TARIFF),
            steps=arr(self.steps, TB.STEP), thresholds=arr(self.thresholds, TB.THRESHOLD),
            edges=np.array(self.edges or [0], dtype=np.int32), cond=ints(self.cond),
            contracts=arr(self.contracts, TB.CONTRACT), elig=np.full(max(len(self.elig_keys), 1), -1, np.int64),
            rated_rgs=ints(self.rated),
            denied_rgs=ints(self.denied), zones=zones)
