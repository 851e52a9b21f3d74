"""A slow, plainly written reference of the charging kernel (RFC 4006 section 5).

One request at a time, one MSCC at a time, over plain objects and ints. It is
written from the semantics, not from `ocs/engine/kernel.py`, and keeps
nothing the kernel keeps only for speed: a subscriber's reserved bundle and
money are not counters here but the sum over its open sessions'
reservations, so releasing a reservation is just forgetting it.

The semantics, per request in order:
  * roll the subscriber's period counters over if the plan's period moved;
  * per MSCC: release the session's reservation for the rating group; if the
    plan rates the group, debit the reported usage (bundle first, then
    overage per started unit); if units are requested and this is not a
    CCR-T, grant bundle first, then whole money units within the free
    balance, and hold the grant in one of the session's 8 slots;
  * events debit the grant at once, all or nothing (RFC 4006 section 6.3),
    or only check the balance (section 6.5);
  * a CCR-T releases everything the session holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SUCCESS = 2001
END_USER_SERVICE_DENIED = 4010
CREDIT_LIMIT_REACHED = 4012
RESOURCES_EXCEEDED = 5006
RATING_FAILED = 5031

INITIAL, UPDATE, TERMINATE, EVENT = 1, 2, 3, 4
DIRECT_DEBITING, CHECK_BALANCE = 0, 2           # Requested-Action (RFC 4006 section 8.41)
ENOUGH_CREDIT, NO_CREDIT = 0, 1                 # Check-Balance-Result (section 8.6)
SLOTS = 8


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Plan:
    bundle: int                  # octets per period
    unit: int                    # overage is charged per started unit of this many octets
    price: int                   # micro-units per unit; -1: no overage at all
    default_grant: int
    max_grant: int
    validity: int = 30
    all_rgs: bool = False
    rated: frozenset = frozenset()
    denied: frozenset = frozenset()
    period: int = 0

    def rating(self, rg: int) -> int:
        """0 if this plan rates `rg`, else the MSCC's Result-Code."""
        if rg in self.denied:
            return END_USER_SERVICE_DENIED
        if self.all_rgs or rg in self.rated:
            return 0
        return RATING_FAILED


@dataclass
class Subscriber:
    plan: int
    balance: int
    period: int = 0
    bundle_used: int = 0
    overage_used: int = 0
    spent: int = 0
    used_time: int = 0


@dataclass
class Reservation:
    bundle: int                  # octets held from the bundle
    money: int                   # micro-units held from the balance
    granted: int                 # octets granted in all


@dataclass
class Session:
    sub: int
    expiry: float = 0.0
    reservations: dict = field(default_factory=dict)     # rating group -> Reservation


@dataclass
class Mscc:
    rg: int
    has_rsu: bool = False
    rsu_octets: int = 0          # 0: the server chooses (the plan's default grant)
    used: int = -1               # -1: no Used-Service-Unit
    used_time: int = 0


@dataclass
class Request:
    sub: int
    sess: int                    # -1 for events
    type: int
    action: int = -1
    msccs: list = field(default_factory=list)


@dataclass
class MsccOutcome:
    result: int = SUCCESS
    granted: int = -1            # -1: no Granted-Service-Unit
    final: int = 0
    charged: int = 0
    from_bundle: int = 0
    released: Reservation | None = None   # what this MSCC gave back (for the tests' invariants)


@dataclass
class Outcome:
    result: int
    check_balance: int
    msccs: list


class Ledger:
    def __init__(self, plans: list[Plan], subs: list[Subscriber]):
        self.plans = plans
        self.subs = subs
        self.sessions: dict[int, Session] = {}

    # ---- what a subscriber has -------------------------------------------------
    def reserved(self, sub: int) -> tuple[int, int]:
        """(bundle octets, micro-units) held by the subscriber's open sessions."""
        held = [r for s in self.sessions.values() if s.sub == sub for r in s.reservations.values()]
        return sum(r.bundle for r in held), sum(r.money for r in held)

    def bundle_left(self, sub: int) -> int:
        s = self.subs[sub]
        return max(0, self.plans[s.plan].bundle - s.bundle_used - self.reserved(sub)[0])

    def free_money(self, sub: int) -> int:
        return self.subs[sub].balance - self.reserved(sub)[1]

    # ---- sessions --------------------------------------------------------------
    def open_session(self, row: int, sub: int) -> None:
        assert row not in self.sessions
        self.sessions[row] = Session(sub)

    def close_session(self, row: int) -> None:
        del self.sessions[row]           # its reservations go with it

    def expire(self, now: float) -> list[int]:
        """Close every session whose Tcc deadline has passed (RFC 4006 section 13)."""
        rows = [row for row, s in self.sessions.items() if s.expiry <= now]
        for row in rows:
            self.close_session(row)
        return rows

    # ---- money and volume ------------------------------------------------------
    def debit(self, sub: int, octets: int) -> tuple[int, int]:
        """Take `octets` of usage: bundle first, the rest as overage. Returns
        (octets from the bundle, micro-units charged)."""
        s = self.subs[sub]
        plan = self.plans[s.plan]
        from_bundle = min(octets, self.bundle_left(sub))
        over = octets - from_bundle
        charged = ceil_div(over, plan.unit) * plan.price if over > 0 and plan.price > 0 else 0
        s.bundle_used += from_bundle
        s.overage_used += over
        s.balance -= charged
        s.spent += charged
        return from_bundle, charged

    def offer(self, sub: int, want: int) -> Reservation:
        """The most of `want` octets the subscriber can be granted now."""
        plan = self.plans[self.subs[sub].plan]
        from_bundle = min(want, self.bundle_left(sub))
        rest = want - from_bundle
        units = 0
        if rest > 0 and plan.price == 0:
            units = ceil_div(rest, plan.unit)
        elif rest > 0 and plan.price > 0:
            affordable = max(0, self.free_money(sub)) // plan.price
            units = min(ceil_div(rest, plan.unit), affordable)
        from_money = min(units * plan.unit, rest)
        return Reservation(from_bundle, units * max(plan.price, 0), from_bundle + from_money)

    def can_grant_anything(self, sub: int) -> bool:
        """Check-Balance-Result (RFC 4006 section 8.6): could one more octet be granted?"""
        plan = self.plans[self.subs[sub].plan]
        if self.bundle_left(sub) > 0 or plan.price == 0:
            return True
        return plan.price > 0 and self.free_money(sub) >= plan.price

    # ---- the batch ---------------------------------------------------------------
    def charge(self, requests: list[Request], now: float) -> list[Outcome]:
        return [self._request(r, now) for r in requests]

    def _request(self, r: Request, now: float) -> Outcome:
        s = self.subs[r.sub]
        plan = self.plans[s.plan]
        if s.period != plan.period:
            s.period = plan.period
            s.bundle_used = s.overage_used = s.spent = 0
        msccs = [self._mscc(r, m) for m in r.msccs]
        results = [m.result for m in msccs]
        if not results or SUCCESS in results:
            result = SUCCESS
        else:
            result = results[0]
        check = -1
        if r.type == EVENT and r.action == CHECK_BALANCE:
            check = ENOUGH_CREDIT if self.can_grant_anything(r.sub) else NO_CREDIT
        if r.sess >= 0:
            if r.type == TERMINATE:
                self.close_session(r.sess)
            else:
                # Tcc = 2 x Validity-Time (RFC 4006 section 13)
                self.sessions[r.sess].expiry = now + 2 * plan.validity
        return Outcome(result, check, msccs)

    def _mscc(self, r: Request, m: Mscc) -> MsccOutcome:
        out = MsccOutcome()
        plan = self.plans[self.subs[r.sub].plan]
        session = self.sessions[r.sess] if r.type != EVENT else None
        if session is not None:
            out.released = session.reservations.pop(m.rg, None)
        if m.used_time > 0:
            self.subs[r.sub].used_time += m.used_time      # time is recorded, not rated
        out.result = plan.rating(m.rg) or SUCCESS
        if out.result != SUCCESS:
            return out
        if m.used > 0:
            out.from_bundle, out.charged = self.debit(r.sub, m.used)
        if not m.has_rsu or r.type == TERMINATE:
            return out
        want = min(m.rsu_octets or plan.default_grant, plan.max_grant)
        if r.type == EVENT:
            return self._event(r, want, out)
        grant = self.offer(r.sub, want)
        if grant.granted == 0:
            out.result, out.final = CREDIT_LIMIT_REACHED, 1
        elif len(session.reservations) == SLOTS:
            out.result = RESOURCES_EXCEEDED
        else:
            session.reservations[m.rg] = grant
            out.granted = grant.granted
            out.final = int(grant.granted < want)
        return out

    def _event(self, r: Request, want: int, out: MsccOutcome) -> MsccOutcome:
        if r.action == CHECK_BALANCE:
            # nothing reserved or debited; the answer carries a Granted-Service-Unit
            # of zero octets (the kernel's convention; RFC 4006 section 6.5 is silent)
            out.granted = 0
            return out
        if r.action != DIRECT_DEBITING:
            raise NotImplementedError(f"Requested-Action {r.action}")
        grant = self.offer(r.sub, want)
        if grant.granted == 0:
            out.result, out.final = CREDIT_LIMIT_REACHED, 1
        elif grant.granted < want:
            out.result = CREDIT_LIMIT_REACHED       # all or nothing
        else:
            from_bundle, charged = self.debit(r.sub, want)
            out.from_bundle += from_bundle
            out.charged += charged
            out.granted = want
        return out
