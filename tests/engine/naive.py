"""A slow, plainly written reference of the charging kernel (RFC 4006 section 5
and docs/rules.md).

One request at a time, one MSCC at a time, over plain objects, read straight
from the rule file Structs (`ocs.rules.schema`), not from the compiled
tables. It keeps nothing the kernel keeps only for speed: what is held is
not a counter but the sum over the open reservations, so releasing one is
forgetting it; the most a tariff lets one buy is found by bisection over
its cost function, not by walking ladder steps.

Within one period (the property tests stay inside one month); rollovers,
Tcc and trial packs are pinned by example tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from ocs.rules import schema as S
from ocs.rules.plan import parse_hours
from ocs.rules.units import parse_money, parse_volume

SUCCESS, DENIED, CREDIT_LIMIT, NO_SLOT, RATING_FAILED = 2001, 4010, 4012, 5006, 5031
INITIAL, UPDATE, TERMINATE, EVENT = 1, 2, 3, 4
DIRECT_DEBITING, REFUND, CHECK_BALANCE, PRICE_ENQUIRY = 0, 1, 2, 3
NONE, FUI_TERMINATE, FUI_RESTRICT = 0, 1, 2
SLOTS, HOLDS = 8, 4
INF = 1 << 62


RAT = {"utran": 1, "geran": 2, "wlan": 3, "gan": 4, "hspa": 5, "eutran": 6, "virtual": 7,
       "nb-iot": 8, "lte-m": 9, "nr": 10}        # 3GPP-RAT-Type (TS 29.061)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Context:
    """What a CCR says about where the traffic is: APN, RAT type, serving network."""
    apn: str | None = None
    rat: int | None = None
    plmn: str | None = None


def network_identifier(apn: str) -> str:
    """The APN without its Operator Identifier (TS 23.003 9.1), lower case."""
    low = apn.lower()
    return low[:low.index(".mnc")] if ".mnc" in low else low


def context_holds(rate: S.Rate, plan: S.Plan, sub: "Account", ctx: Context) -> bool:
    if rate.apn is not None and (ctx.apn is None or network_identifier(ctx.apn)
                                 not in {network_identifier(a) for a in rate.apn}):
        return False
    if rate.rat is not None and (ctx.rat is None or ctx.rat not in {RAT[r] for r in rate.rat}):
        return False
    for attr in ("customer_type", "terminal_type", "partner"):
        wanted = getattr(rate, attr)
        if wanted is not None and getattr(sub.attrs, attr) not in wanted:
            return False
    if rate.roaming is not None:
        if ctx.plmn is None or not plan.home_networks:
            return False
        if (ctx.plmn not in plan.home_networks) != rate.roaming:
            return False
    return True


def covers(rgs, hours, rg: int, sec: int) -> bool:
    if rgs is not None and rg not in rgs:
        return False
    if hours is None:
        return True
    frm, to = parse_hours(hours)
    if (frm, to) == (0, 86400):
        return True
    return frm <= sec < to if frm <= to else (sec >= frm or sec < to)


BIG = 1 << 62      # money and volume saturate here in the kernel: no counter wraps


def clamp(v: int) -> int:
    """Python's integers do not wrap; the kernel's counters stop at +-BIG."""
    return max(-BIG, min(BIG, v))


class Tariff:
    def __init__(self, steps: list[tuple[int, int, int, int]], cumulative: bool):
        self.steps = steps            # (start, base, price, unit)
        self.cumulative = cumulative
        self.free = all(b == 0 and p == 0 for _, b, p, _ in steps)

    def total(self, volume: int) -> int:
        start, base, price, unit = [s for s in self.steps if s[0] <= volume][-1]
        return clamp(base + clamp(ceil_div(volume - start, unit) * price))

    def cost(self, basis: int, octets: int) -> int:
        if octets <= 0:
            return 0
        if self.cumulative:
            return self.total(clamp(basis + octets)) - self.total(basis)
        _, _, price, unit = self.steps[0]
        return clamp(ceil_div(octets, unit) * price)

    def affordable(self, basis: int, money: int, want: int) -> int:
        if self.free or want <= 0:
            return want
        if money <= 0:
            return 0
        lo, hi = 0, want             # cost is non-decreasing in the octets: bisect
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.cost(basis, mid) <= money:
                lo = mid
            else:
                hi = mid - 1
        return lo


def flat(price: str, per, rounding: str) -> Tariff:
    return Tariff([(0, 0, parse_money(price), parse_volume(per))], rounding == "per-started-unit-of-period")


@dataclass(eq=False)
class PackHeld:
    pack: S.Pack
    start: float
    until: float
    used: int = 0


@dataclass(eq=False)
class Account:
    plan: S.Plan
    balance: int
    tz: ZoneInfo
    row: int = 0
    pool: "Account | None" = None
    payer: "Account | None" = None
    pool_cap: int = -1
    used: dict = field(default_factory=dict)        # bucket name -> octets this period
    packs: list = field(default_factory=list)
    pool_used: int = 0
    over_used: int = 0
    spent: int = 0
    total_used: int = 0
    reopened: bool = False
    notified: set = field(default_factory=set)
    attrs: S.Subscriber | None = None           # customer type, terminal type, partner


@dataclass
class Reservation:
    granted: int
    at: float
    holds: list                   # (account, bucket name or PackHeld, octets)
    money: int = 0
    over: int = 0
    pool: int = 0
    sp: str | None = None         # the sponsor contract holding part of it
    sp_octets: int = 0
    sp_money: int = 0


@dataclass
class Mscc:
    rg: int
    has_rsu: bool = True
    rsu: int = 0
    used: int = -1
    sid: int = -1                 # Service-Identifier


@dataclass
class Outcome:
    result: int = SUCCESS
    granted: int = -1
    final: int = NONE
    filter: str | None = None
    charged: int = 0
    from_buckets: int = 0
    validity: int = 0
    sponsor: str | None = None
    sponsored: int = 0
    sponsor_charged: int = 0


class Ledger:
    def __init__(self, accounts: list[Account], sponsors: list[S.Sponsor] = ()):
        self.accounts = accounts
        self.sessions: dict[int, tuple[Account, dict]] = {}     # row -> (subscriber, rg -> Reservation)
        self.events: list[tuple[int, str]] = []
        self.sponsors = list(sponsors)
        self.paid = {sp.id: [0, 0] for sp in self.sponsors}     # contract -> [octets, micro-units] this period

    # ---- sponsors (docs/sponsors.md) ---------------------------------------------
    def contract_for(self, sub: Account, ctx: Context, rg: int, sid: int, t: float) -> S.Sponsor | None:
        for sp in self.sponsors:
            tz = ZoneInfo(sp.timezone)
            start = datetime.fromisoformat(sp.valid_from).replace(tzinfo=tz).timestamp() if sp.valid_from else -INF
            end = datetime.fromisoformat(sp.valid_until).replace(tzinfo=tz).timestamp() if sp.valid_until else INF
            if not start <= t < end:
                continue
            if rg not in sp.rating_groups and not (sid >= 0 and sid in sp.service_ids):
                continue
            if sp.apn is not None and (ctx.apn is None or network_identifier(ctx.apn)
                                       not in {network_identifier(a) for a in sp.apn}):
                continue
            if sp.plans is not None and sub.plan.id not in sp.plans:
                continue
            if sp.subscribers is not None and (sub.attrs is None or sub.attrs.msisdn not in sp.subscribers):
                continue
            return sp
        return None

    def sponsor_room(self, sp: S.Sponsor, want: int) -> tuple[int, int]:
        """(octets, micro-units) of `want` the budget still pays for."""
        held = [r for r in self.reservations() if r.sp == sp.id]
        v = want
        if sp.budget.volume is not None:
            v = min(v, parse_volume(sp.budget.volume) - self.paid[sp.id][0] - sum(r.sp_octets for r in held))
        price, unit = parse_money(sp.price), parse_volume(sp.per)
        if sp.budget.money is not None:
            left = parse_money(sp.budget.money) - self.paid[sp.id][1] - sum(r.sp_money for r in held)
            v = min(v, (left // price) * unit if left > 0 else 0)
        v = max(v, 0)
        return v, ceil_div(v, unit) * price

    # ---- what is held ---------------------------------------------------------
    def reservations(self):
        for _, held in self.sessions.values():
            yield from held.values()

    def held(self, account: Account, what) -> int:
        return sum(v for r in self.reservations() for a, w, v in r.holds if a is account and w is what)

    def held_by(self, sub: Account, attr: str) -> int:
        return sum(getattr(r, attr) for s, held in self.sessions.values() if s is sub for r in held.values())

    def money_held(self, payer: Account) -> int:
        return sum(r.money for s, held in self.sessions.values() if s.payer is payer for r in held.values())

    def over_held(self, payer: Account) -> int:
        return sum(r.over for s, held in self.sessions.values() if s.payer is payer for r in held.values())

    # ---- plan pieces ------------------------------------------------------------
    @staticmethod
    def buckets(plan: S.Plan) -> list[S.Bucket]:
        bs = list(plan.bucket)
        if parse_volume(plan.bundle) > 0:
            bs.insert(0, S.Bucket(name="bundle", volume=plan.bundle))
        return bs

    @staticmethod
    def tariff(plan: S.Plan) -> Tariff | None:
        if plan.overage is not None:
            return flat(plan.overage.price, plan.overage.per, plan.overage.rounding)
        if plan.ladder is not None:
            return Tariff([(parse_volume(s.from_, round_up=True), parse_money(s.base), parse_money(s.price), parse_volume(s.per))
                           for s in plan.ladder], True)
        return None

    def rate(self, sub: Account, ctx: Context, rg: int, sec: int):
        """('free' | 'deny' | Tariff | None, draws from buckets)"""
        plan = sub.plan
        for r in plan.rate:
            if covers(r.rating_groups, r.hours, rg, sec) and context_holds(r, plan, sub, ctx):
                if r.deny:
                    return "deny", r.buckets
                return ("free" if r.free else flat(r.price, r.per, r.rounding)), r.buckets
        return self.tariff(plan), True

    def mode(self, plan: S.Plan, tariff, buckets: bool) -> str:
        if tariff == "free":
            return "free"
        if tariff == "deny":
            tariff = None
        if not buckets and tariff is not None:
            return "charge"
        after = plan.after_bundle or ("charge" if self.tariff(plan) else "stop")
        return "stop" if after == "charge" and tariff is None else after

    def caps_active(self, sub: Account) -> bool:
        cap = sub.plan.cap
        return not (cap is not None and cap.reopen and sub.payer.reopened)

    def candidates(self, sub: Account, rg: int, sec: int, t: float):
        """(account, bucket name or PackHeld, free octets, from the pool) in consumption order."""
        plan = sub.plan
        names = [b.name for b in self.buckets(plan)]
        order = list(plan.order) if plan.order is not None else ["packs"] + names
        order += [n for n in names if n not in order]
        named = {n for n in order if n not in names and n != "packs"}
        for entry in order:
            if entry in names:
                b = self.buckets(plan)[names.index(entry)]
                if covers(b.rating_groups, b.hours, rg, sec):
                    acct = sub.pool if b.shared else sub
                    free = parse_volume(b.volume) - acct.used.get(b.name, 0) - self.held(acct, b.name)
                    yield acct, b.name, free, b.shared
                continue
            for acct, shared in ((sub, False), (sub.pool, True)):
                # packs that expire first are used first
                for p in sorted(acct.packs, key=lambda p: (p.until, p.start)):
                    if p.pack.shared != shared:
                        continue
                    if (entry == "packs" and p.pack.id in named) or (entry != "packs" and p.pack.id != entry):
                        continue
                    if p.start <= t < p.until and covers(p.pack.rating_groups, p.pack.hours, rg, sec):
                        yield acct, p, parse_volume(p.pack.volume) - p.used - self.held(acct, p), shared

    def pool_room(self, sub: Account) -> int:
        if sub.pool_cap < 0:
            return INF
        return sub.pool_cap - sub.pool_used - self.held_by(sub, "pool")

    def sec(self, sub: Account, t: float) -> int:
        local = datetime.fromtimestamp(t, sub.tz)
        off = int(local.utcoffset().total_seconds())
        return (int(t // 1) + off) % 86400

    # ---- usage ----------------------------------------------------------------
    def sp_debit(self, sub: Account, ctx: Context, rg: int, sid: int, t: float, used: int, out: Outcome) -> None:
        sp = self.contract_for(sub, ctx, rg, sid, t)
        if sp is None:
            return self.debit(sub, ctx, rg, t, used, out)
        take, money = self.sponsor_room(sp, used)
        self.paid[sp.id][0] += take
        self.paid[sp.id][1] += money
        out.sponsor, out.sponsored, out.sponsor_charged = sp.id, out.sponsored + take, out.sponsor_charged + money
        sub.total_used = clamp(sub.total_used + take)
        if used - take > 0:
            if sp.fallback == "charge":
                self.debit(sub, ctx, rg, t, used - take, out)
            else:
                sub.total_used = clamp(sub.total_used + used - take)

    def sp_grant(self, sub: Account, ctx: Context, rg: int, sid: int, now: float, want: int):
        sp = self.contract_for(sub, ctx, rg, sid, now)
        if sp is None:
            return self.grant(sub, ctx, rg, now, want)
        at_ceiling = False
        if sub.plan.ceiling is not None:
            room = max(parse_volume(sub.plan.ceiling) - sub.total_used - self.held_by(sub, "granted"), 0)
            if room <= want:
                want, at_ceiling = room, True
        v, money = self.sponsor_room(sp, want)
        reasons: set = set()
        fui = NONE
        r = Reservation(v, now, [], sp=sp.id, sp_octets=v, sp_money=money)
        if want - v > 0 and sp.fallback == "charge":
            # the rest, as if unsponsored (the ceiling's room was taken above)
            normal, fui, reasons = self.grant(sub, ctx, rg, now, want - v)
            if normal is not None:
                r.granted, r.holds, r.money, r.over, r.pool = v + normal.granted, normal.holds, normal.money, \
                    normal.over, normal.pool
            elif v > 0:
                fui = FUI_TERMINATE
        elif want - v > 0 and sp.fallback == "deny":
            fui = FUI_TERMINATE
        elif want - v > 0:
            fui = FUI_RESTRICT
            if v == 0:
                r.granted = want
        if at_ceiling and r.granted == want:
            fui = FUI_TERMINATE
        return (r if r.granted > 0 else None), fui, reasons

    def debit(self, sub: Account, ctx: Context, rg: int, t: float, used: int, out: Outcome) -> None:
        sec = self.sec(sub, t)
        tariff, buckets = self.rate(sub, ctx, rg, sec)
        got = 0
        if buckets:
            for acct, what, free, pooled in list(self.candidates(sub, rg, sec, t)):
                if pooled:
                    free = min(free, self.pool_room(sub))
                take = max(0, min(free, used - got))
                if take:
                    if isinstance(what, PackHeld):
                        what.used += take
                    else:
                        acct.used[what] = acct.used.get(what, 0) + take
                    if pooled:
                        sub.pool_used += take
                    got += take
        out.from_buckets += got
        sub.total_used = clamp(sub.total_used + used)
        rest = used - got
        if rest > 0 and self.mode(sub.plan, tariff, buckets) == "charge":
            payer = sub.payer
            charge = tariff.cost(payer.over_used, rest)
            if not tariff.free:
                payer.over_used = clamp(payer.over_used + rest)
            cap = sub.plan.cap
            if cap is not None and cap.fee is not None and self.caps_active(sub):
                charge = min(charge, max(parse_money(cap.fee) - payer.spent, 0))
            payer.balance = clamp(payer.balance - charge)
            payer.spent = clamp(payer.spent + charge)
            out.charged = clamp(out.charged + charge)

    # ---- grants ---------------------------------------------------------------
    def grant(self, sub: Account, ctx: Context, rg: int, now: float, want: int) -> tuple[Reservation | None, int, set]:
        """(reservation or None, FUI, reasons)"""
        plan = sub.plan
        reasons = set()
        fui = NONE
        at_ceiling = False
        if plan.ceiling is not None:
            room = parse_volume(plan.ceiling) - sub.total_used - self.held_by(sub, "granted")
            if room <= 0:
                return None, FUI_TERMINATE, {"ceiling"}
            if room <= want:
                want, at_ceiling = room, True
        sec = self.sec(sub, now)
        tariff, buckets = self.rate(sub, ctx, rg, sec)
        holds, got, pool, full = [], 0, 0, False
        if buckets:
            for acct, what, free, pooled in list(self.candidates(sub, rg, sec, now)):
                if got >= want:
                    break
                if pooled:
                    free = min(free, self.pool_room(sub) - pool)
                take = min(free, want - got)
                if take <= 0:
                    continue
                if len(holds) == HOLDS:
                    full = True
                    break
                holds.append((acct, what, take))
                got += take
                pool += take if pooled else 0
        rem = want - got
        money = over = 0
        if rem > 0 and not full:
            mode = self.mode(plan, tariff, buckets)
            if mode == "charge":
                payer = sub.payer
                basis = payer.over_used + self.over_held(payer)
                credit = INF if plan.billing == "postpaid" else payer.balance - self.money_held(payer)
                v_credit = tariff.affordable(basis, credit, rem)
                v_cap = rem
                cap = plan.cap
                capped = cap is not None and self.caps_active(sub) and not tariff.free and cap.action != "free"
                if capped and cap.fee is not None:
                    v_cap = tariff.affordable(basis, parse_money(cap.fee) - payer.spent - self.money_held(payer), rem)
                if capped and cap.volume is not None:
                    v_cap = min(v_cap, max(parse_volume(cap.volume) - payer.over_used - self.over_held(payer), 0))
                v = min(v_credit, v_cap)
                charged = True
                if v < rem:
                    if v_cap <= v_credit:
                        reasons.add("cap")
                        if cap.action == "throttle":
                            fui = FUI_RESTRICT
                            if v == 0 and got == 0:
                                v, charged = rem, False
                                reasons.add("throttled")
                        else:
                            fui = FUI_TERMINATE
                    else:
                        reasons.add("credit")
                        fui = FUI_TERMINATE
                if charged:
                    money = tariff.cost(basis, v)
                    if cap is not None and cap.fee is not None and self.caps_active(sub):
                        money = min(money, max(parse_money(cap.fee) - payer.spent - self.money_held(payer), 0))
                    over = 0 if tariff.free else v
                got += v
            elif mode == "throttle":
                fui = FUI_RESTRICT
                if got == 0:
                    got = rem
                    reasons.add("throttled")
            elif mode == "stop":
                fui = FUI_TERMINATE
                if got == 0:
                    reasons.add("credit")
            else:
                got += rem
        if at_ceiling and got == want:
            fui = FUI_TERMINATE
            reasons.add("ceiling")
        if got == 0:
            return None, FUI_TERMINATE if "throttled" not in reasons else fui, reasons
        return Reservation(got, now, holds, money, over, pool), fui, reasons

    def validity(self, sub: Account, now: float, r: Reservation, pack_hours: list) -> int:
        plan = sub.plan
        v = plan.validity_time
        sec = self.sec(sub, now)
        edges = set()
        for h in [b.hours for b in self.buckets(plan)] + [x.hours for x in plan.rate] + pack_hours:
            if h is not None and parse_hours(h) != (0, 86400):
                edges.update(e % 86400 for e in parse_hours(h))
        for e in edges:
            d = (e - sec) % 86400
            if 0 < d < v:
                v = d
        for _, what, _ in r.holds:
            if isinstance(what, PackHeld) and 0 < what.until - now < v:
                v = -int(-(what.until - now) // 1)
        return v

    # ---- requests ---------------------------------------------------------------
    def request(self, sub: Account, sess: int, rtype: int, msccs: list[Mscc], now: float,
                pack_hours: list, ctx: Context = Context()) -> tuple[int, list[Outcome]]:
        if rtype == INITIAL:
            self.sessions[sess] = (sub, {})
        held = self.sessions[sess][1]
        plan = sub.plan
        outs, all_reasons = [], set()
        for m in msccs:
            out = Outcome()
            old = held.pop(m.rg, None)
            rated = plan.rating_groups is None or m.rg in plan.rating_groups
            code = DENIED if m.rg in plan.denied_rating_groups else (0 if rated else RATING_FAILED)
            if code == 0 and self.rate(sub, ctx, m.rg, self.sec(sub, now))[0] == "deny":
                code = DENIED
            if m.used > 0 and code == 0:
                self.sp_debit(sub, ctx, m.rg, m.sid, old.at if old else now, m.used, out)
            if code:
                out.result = code
            elif m.has_rsu and rtype != TERMINATE:
                want = min(m.rsu or parse_volume(plan.default_grant), parse_volume(plan.max_grant))
                r, fui, reasons = self.sp_grant(sub, ctx, m.rg, m.sid, now, want)
                all_reasons |= reasons
                if r is None:
                    out.result, out.final = CREDIT_LIMIT, FUI_TERMINATE
                elif len(held) >= SLOTS:
                    out.result = NO_SLOT
                else:
                    held[m.rg] = r
                    out.granted, out.final = r.granted, fui
                    out.validity = self.validity(sub, now, r, pack_hours)
                if out.final == FUI_RESTRICT:
                    out.filter = plan.throttle_filter
                    sp = self.contract_for(sub, ctx, m.rg, m.sid, now)
                    if r is not None and r.sp is not None and sp.fallback == "throttle" and sp.throttle_filter:
                        out.filter = sp.throttle_filter
            outs.append(out)
        results = [o.result for o in outs]
        result = SUCCESS if not results or SUCCESS in results else results[0]
        self.thresholds(sub, all_reasons)
        if rtype == TERMINATE:
            del self.sessions[sess]
        return result, outs

    def thresholds(self, sub: Account, reasons: set) -> None:
        seen = []
        for acct in (sub, sub.pool, sub.payer):
            if any(acct is x for x in seen):
                continue
            seen.append(acct)
            for t in acct.plan.threshold:
                if t.name in acct.notified or t.on == "daily-summary":   # daily: pinned by an example test
                    continue
                if t.bucket is not None:
                    b = next(b for b in self.buckets(acct.plan) if b.name == t.bucket)
                    hit = parse_volume(b.volume) > 0 and acct.used.get(t.bucket, 0) * 100 >= t.percent * parse_volume(b.volume)
                elif t.spent is not None:
                    hit = acct.spent >= parse_money(t.spent)
                else:
                    key = {"cap": "cap", "throttled": "throttled", "ceiling": "ceiling",
                           "credit-exhausted": "credit"}[t.on]
                    hit = acct is sub and key in reasons
                if hit:
                    acct.notified.add(t.name)
                    self.events.append((acct.row, t.name))

    def buy(self, sub: Account, pack: S.Pack, now: float, period_end: float) -> bool:
        """A subscriber holds at most 4 packs at once; a shared one goes to the pool."""
        acct = sub.pool if pack.shared else sub
        if len(acct.packs) >= 4:
            return False
        until = now + pack.days * 86400 if pack.days else period_end
        acct.packs.append(PackHeld(pack, now, until))
        return True
