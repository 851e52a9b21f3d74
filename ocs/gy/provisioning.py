"""Provisioning subscribers through the operator API: create, change, delete
(docs/running.md#provisioning-subscribers, docs/rules.md#subscribers).

One source of truth per subscriber. The rule files own every subscriber
they declare, one by one or in a range: each install sets its plan,
timezone, attributes and group from the files again, so a change made here
would silently come undone; the API refuses it (409, naming the file) and
allows only `active`, which the files do not declare. The API owns the
subscribers it creates, and those an earlier rules version declared and the
current one no longer does. A rules version that declares a number the API
created adopts that subscriber (balance and usage stay; the files decide
the rest from then on).

Each operation runs on the charging loop between two batches (the single
writer), checks everything before it changes anything, so a refusal leaves
no trace, and returns its journal record: the rows it wrote and its change
to the directory (identities, profile), durable before the API answers and
replayed after a crash.
"""
from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
from msgspec import UNSET, Meta, UnsetType

from ..engine import kernel
from ..rules.compile import RuleSet
from ..rules.units import format_money, parse_money, quoted, timezone_info
from ..rules.versions import carry_buckets
from ..store import profiles
from ..store.memory import new_subscribers
from ..store.interface import Store
from ..store.records import ChangeSubscriber, CreateSubscriber, DeleteSubscriber, Profile
from ..store.views import subscriber_view
from ..subscriber import ATTRIBUTES, E164, IMSI, subscriber_key
from .operations import Done, OperationError

Msisdn = Annotated[str, Meta(pattern=r"^[0-9]{1,15}$", description="E.164 digits (Subscription-Id END_USER_E164)")]
Imsi = Annotated[str, Meta(pattern=r"^[0-9]{1,15}$", description="a second identity (END_USER_IMSI)")]
PlanId = Annotated[str, Meta(description="a plan id of the rules in force")]
Timezone = Annotated[str, Meta(description="an IANA timezone, e.g. \"Europe/Berlin\"; absent or null: the plan's")]
Attribute = Annotated[str, Meta(min_length=1, max_length=64, description="matched by rates (docs/rules.md)")]
Active = Annotated[bool, Meta(description="false: new sessions are refused (5030); open ones go on")]


class NewSubscriber(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A subscriber to create (POST /v1/subscribers)."""
    msisdn: Msisdn
    plan: PlanId
    imsi: Imsi | None = None
    balance: Annotated[str, Meta(description="the opening balance in the plan's currency, e.g. \"100.00\"")] = "0"
    timezone: Timezone | None = None
    customer_type: Attribute | None = None
    terminal_type: Attribute | None = None
    partner: Attribute | None = None
    active: Active = True


class SubscriberChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """What to change (PATCH /v1/subscribers/MSISDN): the fields given
    change, null clears an optional one. Money moves only by top-up (an
    amount, never an overwrite that could erase a charge made meanwhile)."""
    plan: PlanId | UnsetType = UNSET
    imsi: Imsi | None | UnsetType = UNSET
    timezone: Timezone | None | UnsetType = UNSET
    customer_type: Attribute | None | UnsetType = UNSET
    terminal_type: Attribute | None | UnsetType = UNSET
    partner: Attribute | None | UnsetType = UNSET
    active: Active | UnsetType = UNSET


# ---------------------------------------------------------------- checks
def _row(store: Store, msisdn: str) -> tuple[int, int]:
    key = subscriber_key(E164, msisdn)
    row = store.lookup(key)
    if row < 0:
        raise OperationError(404, f"no subscriber {msisdn}")
    return key, row


def _rules_own(store: Store, rules: RuleSet, msisdn: str, key: int, row: int) -> str | None:
    """Why the rule files own this subscriber, or None when the API does."""
    if row in store.profiles:
        return None
    if store.explicit.get(key) != row:      # found through a range
        where = rules.declared_by(key) or "a subscriber range of an earlier rules version"
        return f"{msisdn} belongs to {where}, and ranges are managed in the rule files"
    where = rules.declared_by(key)
    return f"{msisdn} is declared in {where}" if where is not None else None


def _taken(store: Store, rules: RuleSet, kind: int, digits: str) -> None:
    key = subscriber_key(kind, digits)
    row = store.lookup(key)
    if row < 0:
        return
    name = "msisdn" if kind == E164 else "imsi"
    where = rules.declared_by(key)
    how = f"declared in {where}" if where else \
        "provisioned through the API" if row in store.profiles else "provisioned by an earlier rules version"
    raise OperationError(409, f"{name} {digits} already exists: subscriber {store.label(row)}, {how}")


def _plan(rules: RuleSet, plan_id: str) -> int:
    p = rules.plan_index.get(plan_id)
    if p is None:
        raise OperationError(422, f"plan: no plan {plan_id!r} in rules version {rules.version}; "
                                  f"the plans are: {', '.join(rules.plan_index)}")
    return p


def _timezone(name: str) -> None:
    try:
        timezone_info(name)
    except ValueError:
        raise OperationError(422, f"timezone: {quoted(name)} is not an IANA timezone such as 'Europe/Berlin'") from None


def _money(text: str) -> int:
    try:
        micro = parse_money(text)
    except ValueError as e:
        raise OperationError(422, f"balance: {e}") from None
    if micro < 0:
        raise OperationError(422, "balance: an opening balance is not negative")
    return micro


def _calendar(rules: RuleSet, plan: int) -> tuple:
    pl = rules.tables.plans[plan]
    return tuple(int(pl[f]) for f in ("period_kind", "reset", "period_days", "period_anchor"))


# ---------------------------------------------------------------- operations
def create_subscriber(store: Store, rules: RuleSet, new: NewSubscriber, now: float) -> Done:
    """A new subscriber on a plan of the rules in force, with its opening
    balance; its period starts today (anniversary plans count from today)."""
    _taken(store, rules, E164, new.msisdn)
    if new.imsi is not None:
        _taken(store, rules, IMSI, new.imsi)
    plan = _plan(rules, new.plan)
    balance = _money(new.balance)
    if new.timezone is not None:
        _timezone(new.timezone)
    # checked: from here on nothing refuses
    rules.set_clock(now)
    row = store.new_row(plan, balance, 0)
    profile = Profile(msisdn=new.msisdn, imsi=new.imsi, timezone=new.timezone,
                      **{a: getattr(new, a) for a in ATTRIBUTES})
    change = store.change_directory(row, bind=profile.keys, label=new.msisdn, profile=profile)
    profiles.resolve_row(store, rules, row, now)
    s = store.subs[row]
    zone = int(s["zone"]) if s["zone"] >= 0 else int(rules.tables.plans[plan]["zone"])
    s["anchor"] = rules.today(zone)
    s["active"] = int(new.active)
    rules.resolve(store.lookup)        # a sponsor contract may list the number
    op = CreateSubscriber(sub=new.msisdn, plan=new.plan, balance=balance)
    record = store.record(rules.version, now, [row], [], [], [], b"", op, directory=[change])
    return Done(subscriber_view(store, rules, row, now), record)


def change_subscriber(store: Store, rules: RuleSet, msisdn: str, change: SubscriberChange,
                      now: float) -> Done:
    """Change what the operator set. A new plan applies from the next
    request, to the period under way: what was used of a bucket stays used
    in the new plan's bucket of the same name, out-of-bundle charges so far
    count toward the new plan's caps, thresholds are announced afresh and a
    reopen is undone. A plan that counts periods differently (a quarter
    instead of a month) starts a fresh period. Usage reported after the
    change is rated by the new plan, also for grants made before it; the
    sessions are asked to re-authorize (reauth) so that stretch stays short."""
    key, row = _row(store, msisdn)
    given = {f: getattr(change, f) for f in change.__struct_fields__ if getattr(change, f) is not UNSET}
    owned = _rules_own(store, rules, msisdn, key, row)
    if owned is not None and set(given) - {"active"}:
        raise OperationError(409, f"{owned}: change {', '.join(sorted(set(given) - {'active'}))} there (the rule "
                                  f"files own the subscribers they declare; only `active` may change here)")
    s = store.subs[row]
    old_plan = int(s["plan"])
    plan = _plan(rules, given["plan"]) if "plan" in given else old_plan
    if plan != old_plan:
        before, after = rules.plans[old_plan], rules.plans[plan]
        if before.currency != after.currency:
            raise OperationError(409, f"plan {after.id!r} is in {after.currency}, the subscriber's balance in "
                                      f"{before.currency}: a balance is not converted")
        if int(s["pool"]) != row or int(s["payer"]) != row:
            raise OperationError(409, f"{msisdn} is a member of a shared group: its plan is the group's")
    if given.get("imsi") is not None and store.explicit.get(subscriber_key(IMSI, given["imsi"])) != row:
        _taken(store, rules, IMSI, given["imsi"])
    if given.get("timezone") is not None:
        _timezone(given["timezone"])
    if not given:
        return Done(subscriber_view(store, rules, row, now), None)
    # checked: from here on nothing refuses
    touched = np.zeros(0, np.int64)
    directory = []
    if owned is None:
        rules.set_clock(now)
        kernel.rollover(store.subs, rules.tables, row, now)     # this period's counters, under the old plan
        fresh_period = False
        if plan != old_plan:
            touched = carry_buckets(store.subs, store.sessions, np.array([row]), rules.bucket_names[old_plan],
                                    rules.bucket_names[plan])
            fresh_period = _calendar(rules, old_plan) != _calendar(rules, plan)
            s["plan"] = plan
            s["notified"] = 0       # the new plan's thresholds, against the counters as they are
            s["reopened"] = 0       # a reopen lifted the old plan's caps
        old = profiles.of_row(store, rules, row)
        new = msgspec.structs.replace(old, **{k: v for k, v in given.items() if k not in ("plan", "active")})
        unbind = [k for k in old.keys if k not in new.keys]
        bind = [k for k in new.keys if k not in old.keys]
        directory.append(store.change_directory(row, bind=bind, unbind=unbind, profile=new))
        profiles.resolve_row(store, rules, row, now)
        if fresh_period:
            for name in ("over_used", "spent", "total_used", "pool_used"):
                s[name] = 0
            s["b_used"][:] = 0
            s["period"] = kernel.period_bounds(store.subs, rules.tables, row)[0]
        s["period_day"] = -1        # plan or timezone: the kernel looks at the period again
    if "active" in given:
        s["active"] = int(given["active"])
    op = ChangeSubscriber(sub=msisdn, set=dict(given))
    # the rollover may have touched the pool's or payer's row too (a shared trial pack)
    rows = [row, int(s["pool"]), int(s["payer"])]
    record = store.record(rules.version, now, rows, touched, [], [], b"", op, directory=directory)
    rated = set(given) & {"plan", "timezone", *ATTRIBUTES}
    return Done(subscriber_view(store, rules, row, now), record, [row] if rated else [])


def delete_subscriber(store: Store, rules: RuleSet, msisdn: str, now: float,
                      close_sessions: bool = False) -> Done:
    """The subscriber's identities become unknown (a CCR-I is answered
    5030). With open sessions it is refused, unless `close_sessions`: their
    reservations are released, unreported usage is not charged, and the
    gateway's next CCR-U/T gets 5002 (unknown session). Its row is kept,
    empty, so journal and usage records that name it still read."""
    key, row = _row(store, msisdn)
    owned = _rules_own(store, rules, msisdn, key, row)
    if owned is not None:
        raise OperationError(409, f"{owned}: remove it there (a subscriber the rule files no longer declare "
                                  f"can be deleted here)")
    n = store.n_subs
    subs = store.subs
    others = np.nonzero((subs["pool"][:n] == row) | (subs["payer"][:n] == row))[0]
    if len(others) > 1 or int(subs[row]["pool"]) != row or int(subs[row]["payer"]) != row:
        raise OperationError(409, f"{msisdn} is in a shared group: groups are managed in the rule files")
    sessions = np.nonzero(store.sessions["sub"] == row)[0].astype(np.int64)
    sids = [store.session_meta[x][0].decode("utf-8", "replace") for x in sessions.tolist()]
    if len(sessions) and not close_sessions:
        shown = ", ".join(sids[:10]) + (", ..." if len(sids) > 10 else "")
        raise OperationError(409, f"{msisdn} has {len(sids)} open session(s) ({shown}): end them first, or "
                                  f"delete with close_sessions=true to release their reservations")
    keys = store.profiles[row].keys if row in store.profiles else [k for k, r in store.explicit.items() if r == row]
    for x in sessions.tolist():
        kernel.close_session(store.subs, store.sessions, store.sponsors, x)
    plan = int(subs[row]["plan"])
    balance = int(subs[row]["balance"])
    empty = new_subscribers(1)[0]
    empty["plan"] = plan            # a valid plan for whatever still reads the row; it is never charged
    empty["pool"] = empty["payer"] = row
    subs[row] = empty
    change = store.change_directory(row, unbind=keys, drop_profile=True, retire=True)
    rules.resolve(store.lookup)
    currency = rules.plans[plan].currency
    op = DeleteSubscriber(sub=msisdn, balance=balance, sessions=sids)
    record = store.record(rules.version, now, [row], sessions, [], [], b"", op, sponsors=bool(len(sessions)),
                          directory=[change])
    for x in sessions.tolist():
        store.release_session_row(x)
    result = {"subscriber": msisdn, "deleted": True, "plan": rules.plans[plan].id,
              "balance": format_money(balance, currency), "currency": currency, "closed_sessions": sids}
    return Done(result, record)
