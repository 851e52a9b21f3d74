"""Subscribers: their state, packs, reopening after a cap, top-ups, and
usage per rating group per local day.

Changes run on the charging loop between batches (`Server.submit`) and
answer once their journal record is durable.
"""
from __future__ import annotations

import time
from datetime import date
from typing import Annotated, Literal

import msgspec
import trio
from msgspec import UNSET, Meta, UnsetType

from ..gy import operations as ops
from ..gy import provisioning as prov
from ..store.views import subscriber_view
from ..subscriber import E164, subscriber_key
from ..feeds.usage import UsageDay, local_zone, subscriber_usage
from .route import Answer, ErrorBody, HttpError, Param, Request, Route

MAX_DAYS = 366
TAG = "subscribers"
SUBSCRIBER = Param("the subscriber's number: its MSISDN, 1 to 15 digits", "8613800000001")


class Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# ------------------------------------------------------------ bodies
class PackOrder(Struct):
    pack: Annotated[str, Meta(description="the pack's id in the rules in force")]
    gift: Annotated[bool, Meta(description="give it: no charge")] = False


class TopUp(Struct):
    amount: Annotated[str, Meta(description="a positive decimal amount in the plan's currency, e.g. \"50.00\"")]


class UsageRange(Struct):
    from_: Annotated[date, Meta(description="first local day, YYYY-MM-DD")] = msgspec.field(name="from")
    to: Annotated[date, Meta(description=f"last local day, inclusive; at most {MAX_DAYS} days after `from`")]


# ------------------------------------------------------------ answers
class BucketState(Struct):
    name: str
    shared: bool
    volume_octets: int
    used_octets: int
    reserved_octets: int
    remaining_octets: int


class HeldPack(Struct):
    pack: str
    holder: str
    volume_octets: int
    used_octets: int
    reserved_octets: int
    valid_from: str
    valid_until: str
    expired: bool


class Reservation(Struct):
    """What one open session holds for one rating group."""
    session_id: str | None
    rating_group: int | None
    granted_octets: int
    reserved_money: str
    expires_at: float


class PeriodEnd(Struct):
    ends: str


class Bundle(Struct):
    total_octets: int
    used_octets: int
    reserved_octets: int
    remaining_octets: int


class OpenSession(Struct):
    session_id: str | None
    peer: str | None                # the Origin-Host that opened it (where a Re-Auth-Request goes)
    last_request_number: int
    expires_at: float               # the Tcc deadline, epoch seconds


class SubscriberState(Struct, kw_only=True):
    """A subscriber's state now, as `ocs subscriber show` prints it
    (docs/running.md); `reservations` are its open sessions' holds."""
    subscriber: str
    plan: str
    rules_version: str
    currency: str
    billing: str
    balance: str
    balance_micro: int
    reserved_money: str
    period: PeriodEnd
    buckets: list[BucketState]
    packs: list[HeldPack]
    charged_octets: int
    charged_this_period: str
    total_octets_this_period: int
    caps_lifted: bool
    used_time_seconds: int
    reservations: list[Reservation]
    sessions: list[OpenSession]
    bundle: Bundle | UnsetType = UNSET
    overage_octets: int
    pool_owner: str | UnsetType = UNSET
    pool_used_octets: int | UnsetType = UNSET
    pool_sub_cap_octets: int | UnsetType = UNSET
    payer: str | UnsetType = UNSET
    active: bool | UnsetType = UNSET
    provisioned: Literal["api", "rules"] | UnsetType = UNSET
    # what the operator set through the API (POST /v1/subscribers), when set
    imsi: str | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    customer_type: str | UnsetType = UNSET
    terminal_type: str | UnsetType = UNSET
    partner: str | UnsetType = UNSET


class PackBought(Struct):
    subscriber: str
    pack: str
    holder: str                     # who holds it: the subscriber, or its pool's owner for a shared pack
    price: str
    volume_octets: int
    valid_from: float               # seconds since the epoch
    valid_until: float
    balance: str                    # the payer's balance after the purchase


class Reopened(Struct):
    subscriber: str
    reopened: bool


class Balance(Struct):
    subscriber: str
    balance: str


class Usage(Struct):
    subscriber: str
    timezone: str                   # the days are local to it
    from_: date = msgspec.field(name="from")
    to: date
    days: list[UsageDay]            # days with usage only, in order


# ------------------------------------------------------------ handlers
def subscriber_row(request: Request) -> int:
    ident = request.params["id"]
    if not ident.isdigit() or not ident.isascii() or len(ident) > 15:
        raise HttpError(400, f"subscriber {ident!r}: not a subscriber number (1 to 15 digits)")
    row = request.server.store.lookup(subscriber_key(E164, ident))
    if row < 0:
        raise HttpError(404, f"no subscriber {ident}")
    return row


async def get_subscriber(request: Request):
    row = subscriber_row(request)
    s = request.server
    return 200, subscriber_view(s.store, s.app.rules, row, time.time())


async def buy_pack(request: Request):
    order: PackOrder = request.body
    row = subscriber_row(request)
    return 201, await request.server.submit(
        lambda store, rules, now: ops.buy_pack(store, rules, row, order.pack, now, order.gift))


async def reopen(request: Request):
    row = subscriber_row(request)
    return 200, await request.server.submit(lambda store, rules, now: ops.reopen(store, rules, row, now))


async def top_up(request: Request):
    order: TopUp = request.body
    row = subscriber_row(request)
    return 200, await request.server.submit(lambda store, rules, now: ops.top_up(store, rules, row, order.amount, now))


async def usage(request: Request):
    q: UsageRange = request.query
    if q.from_ > q.to:
        raise HttpError(400, f"from {q.from_} is after to {q.to}")
    if (q.to - q.from_).days + 1 > MAX_DAYS:
        raise HttpError(400, f"from {q.from_} to {q.to} spans {(q.to - q.from_).days + 1} days; at most {MAX_DAYS}")
    row = subscriber_row(request)
    s = request.server
    sub = s.store.subs[row]
    tz = local_zone(s.app.rules, int(sub["plan"]), int(sub["zone"]))
    label = s.store.label(row)
    days = await trio.to_thread.run_sync(subscriber_usage, s.store.dir / "usage", label, tz, q.from_, q.to)
    return 200, Usage(subscriber=label, timezone=tz.key, from_=q.from_, to=q.to, days=days)


# ------------------------------------------------------------ provisioning (docs/running.md#provisioning-subscribers)
class DeleteOptions(Struct):
    close_sessions: Annotated[bool, Meta(description="release the open sessions' reservations (their unreported "
                                                     "usage is not charged); without it open sessions refuse "
                                                     "the deletion")] = False


class Deleted(Struct):
    subscriber: str
    deleted: bool
    plan: str
    balance: str                    # the balance it had: for the final bill or a refund
    currency: str
    closed_sessions: list[str]      # Session-Ids whose reservations were released


async def create_subscriber(request: Request):
    new: prov.NewSubscriber = request.body
    return 201, await request.server.submit(lambda store, rules, now: prov.create_subscriber(store, rules, new, now))


async def change_subscriber(request: Request):
    change: prov.SubscriberChange = request.body
    subscriber_row(request)         # a bad number is 400, an unknown one 404, before queueing
    ident = request.params["id"]
    return 200, await request.server.submit(
        lambda store, rules, now: prov.change_subscriber(store, rules, ident, change, now))


async def delete_subscriber(request: Request):
    options: DeleteOptions = request.query
    subscriber_row(request)
    ident = request.params["id"]
    return 200, await request.server.submit(
        lambda store, rules, now: prov.delete_subscriber(store, rules, ident, now, options.close_sessions))


NOT_FOUND = Answer("no such subscriber", ErrorBody)
API_SUBSCRIBER = Param("the subscriber's MSISDN; one created through the API (the rule files own theirs)",
                       "8613700000001")
RULES_OWN = "409 for a subscriber the rule files declare, naming the file and key to edit instead."
ROUTES = [
    Route("POST", "/v1/subscribers", create_subscriber, "Create a subscriber on a plan of the rules in force",
          {201: Answer("the new subscriber's state", SubscriberState),
           409: Answer("the MSISDN or IMSI exists (in the rule files, a range, or created here)", ErrorBody),
           422: Answer("no such plan (the plans are listed), a balance that is not money, an unknown timezone",
                       ErrorBody)},
          TAG, body=prov.NewSubscriber,
          body_example={"msisdn": "8613700000001", "plan": "cn-89-3g", "balance": "100.00",
                        "imsi": "460001234500001", "timezone": "Asia/Shanghai"},
          description="Journaled before the answer; its period starts today. The rule files keep their own "
                      "subscribers; a rules version that declares this number later adopts it "
                      "(docs/rules.md#subscribers)."),
    Route("GET", "/v1/subscribers/{id}", get_subscriber, "A subscriber's balance, buckets, packs and open sessions",
          {200: Answer("the subscriber's state", SubscriberState), 404: NOT_FOUND},
          TAG, params={"id": SUBSCRIBER}),
    Route("PATCH", "/v1/subscribers/{id}", change_subscriber, "Change a subscriber's plan, identities, timezone, "
          "attributes or active flag",
          {200: Answer("the subscriber's state after the change", SubscriberState), 404: NOT_FOUND,
           409: Answer("a rule-file subscriber (only `active` may change), an IMSI in use, a plan in another "
                       "currency", ErrorBody),
           422: Answer("no such plan, an unknown timezone", ErrorBody)},
          TAG, params={"id": API_SUBSCRIBER}, body=prov.SubscriberChange, body_example={"plan": "cm-1g-capped"},
          description="A new plan applies from the next request, to the period under way: bucket use carries "
                      "over by bucket name, the period's out-of-bundle charges count toward the new caps; a plan "
                      "with other periods starts a fresh one. Open sessions are asked to re-authorize. "
                      + RULES_OWN),
    Route("DELETE", "/v1/subscribers/{id}", delete_subscriber, "Delete a subscriber",
          {200: Answer("deleted: its identities are unknown from now on (5030)", Deleted), 404: NOT_FOUND,
           409: Answer("open sessions (listed), or a rule-file subscriber", ErrorBody)},
          TAG, params={"id": API_SUBSCRIBER}, query=DeleteOptions, query_example={"close_sessions": "false"},
          description="With open sessions it is refused unless close_sessions=true; then their reservations "
                      "are released and the gateway's next CCR-U/T gets 5002. " + RULES_OWN),
    Route("POST", "/v1/subscribers/{id}/packs", buy_pack, "Buy a pack, or give one",
          {201: Answer("the pack is held", PackBought),
           402: Answer("a prepaid balance that does not cover the price", ErrorBody),
           404: Answer("no such subscriber or pack", ErrorBody),
           409: Answer("refused: a pack in another currency, or 4 packs held already", ErrorBody)},
          TAG, params={"id": SUBSCRIBER}, body=PackOrder, body_example={"pack": "cn-addon-1g"},
          description="A purchase pays the pack's price from the payer's balance (prepaid: only if the free "
                      "balance covers it); a gift costs nothing."),
    Route("POST", "/v1/subscribers/{id}/reopen", reopen, "Lift the plan's caps for the rest of the period",
          {200: Answer("reopened", Reopened), 404: NOT_FOUND,
           409: Answer("the plan does not allow reopening", ErrorBody)},
          TAG, params={"id": Param(SUBSCRIBER.description, "8613800000002")},
          description="Where the plan's cap says `reopen = true`; the absolute ceiling stays."),
    Route("POST", "/v1/subscribers/{id}/top-up", top_up, "Add money to the balance",
          {200: Answer("the new balance", Balance), 404: NOT_FOUND,
           409: Answer("the balance would pass the largest amount kept (2**62 micro-units)", ErrorBody)},
          TAG, params={"id": SUBSCRIBER}, body=TopUp, body_example={"amount": "50.00"},
          description="`amount` is a positive decimal in the plan's currency (400 otherwise)."),
    Route("GET", "/v1/subscribers/{id}/usage", usage, "Usage per rating group per local day",
          {200: Answer("what each app (rating group) used, day by day", Usage), 404: NOT_FOUND},
          TAG, params={"id": SUBSCRIBER}, query=UsageRange,
          query_example={"from": "2026-11-01", "to": "2026-11-30"},
          description="From the usage records (docs/usage.md), summed per day in the subscriber's timezone "
                      "and per rating group: octets, seconds, octets from buckets, octets a sponsor paid, and "
                      f"money charged. At most {MAX_DAYS} days; usage is written a moment after it is "
                      "charged."),
]
