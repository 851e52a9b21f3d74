"""Reports: the notification feed and the sponsors' accounts and
settlements (docs/sponsors.md)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import trio
from msgspec import UNSET, Meta, UnsetType

from ..feeds.notify import FeedError, read_feed
from ..feeds.settlement import SettlementError, account, as_csv, period_report, standing
from .route import Answer, ErrorBody, HttpError, Param, Request, Route, Text

MAX_LIMIT = 1000


class Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# ------------------------------------------------------------ notifications
class FeedQuery(Struct):
    after: Annotated[int, Meta(ge=0, description="the cursor: 0 for the start, then the `next` of the last answer")] = 0
    limit: Annotated[int, Meta(ge=1, le=MAX_LIMIT, description="at most this many announcements")] = 100
    subscriber: Annotated[str, Meta(pattern=r"^[0-9]{1,15}$", description="only this subscriber's")] | None = None


class Notification(Struct):
    """A threshold announcement (docs/rules.md#thresholds-and-notifications)."""
    time: str
    subscriber: str
    plan: str
    threshold: str
    kind: Literal["bucket", "spent", "cap", "throttled", "ceiling", "credit-exhausted", "daily-summary"]
    rules: str
    money: str | UnsetType = UNSET
    octets: int | UnsetType = UNSET
    bucket: str | UnsetType = UNSET
    percent: int | UnsetType = UNSET
    day: str | UnsetType = UNSET


class Feed(Struct):
    notifications: list[Notification]
    next: int                       # the cursor to poll with next (`after`); unchanged when nothing is new


_notification = msgspec.json.Decoder(Notification)


def _feed_path(server) -> Path:
    if server.notifier is not None:
        return server.notifier.path
    return Path(server.cfg.notifications or Path(server.cfg.data) / "notifications.jsonl")


async def notifications(request: Request):
    q: FeedQuery = request.query
    try:
        path = _feed_path(request.server)
        items, after = await trio.to_thread.run_sync(
            lambda: read_feed(path, q.after, q.limit, q.subscriber, decode=_notification.decode))
    except FeedError as e:
        raise HttpError(409, str(e)) from None
    return 200, Feed(notifications=items, next=after)


# ------------------------------------------------------------ sponsors
class SponsorBudget(Struct):
    money: str | None               # per period, in the sponsor's currency; or
    volume_octets: int | None       # per period


class SponsorAccount(Struct):
    """A contract and its account for the current period."""
    sponsor: str
    name: str
    currency: str
    timezone: str
    period: Literal["month", "quarter", "days"]
    next_period: str                # the local date the next period starts
    budget: SponsorBudget
    rating_groups: list[int]
    service_ids: list[int]
    fallback: Literal["charge", "deny", "throttle"]
    valid_from: str | None
    valid_until: str | None
    used_octets: int                # paid for this period
    billed: str                     # billed this period
    billed_micro: int
    held_octets: int                # held by open grants
    held_money: str
    remaining_octets: int           # what the budget still pays for
    remaining_money: str | UnsetType = UNSET      # money budgets


class Sponsors(Struct):
    rules_version: str
    sponsors: list[SponsorAccount]


class ReportQuery(Struct):
    period: Annotated[str, Meta(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
                                description="YYYY-MM, the sponsor's local month")]
    format: Annotated[Literal["json", "csv"], Meta(description="or `Accept: text/csv`")] | None = None


class SessionSettlement(Struct):
    session: str
    subscriber: str
    octets: int
    amount: str
    amount_micro: int
    reports: int


class TrafficSettlement(Struct):
    traffic: str                    # "rating_group 300" or "service_id 7"
    total_octets: int
    sponsored_octets: int
    subscriber_paid_octets: int
    sponsor_amount: str
    sponsor_amount_micro: int
    subscriber_charged: str
    subscriber_charged_micro: int
    reconciled: bool


class ReportBudget(Struct):
    money: str | None
    volume: str | int | None        # as written in the rules


class ReportAccount(Struct):
    used_octets: int
    billed: str
    billed_micro: int


class SponsorReport(Struct, kw_only=True):
    """`ocs sponsor report` (docs/sponsors.md#settlement)."""
    sponsor: str
    name: str
    period: str
    currency: str
    budget: ReportBudget
    sponsored_octets: int
    amount: str
    amount_micro: int
    sessions: list[SessionSettlement]
    traffic: list[TrafficSettlement]
    account: ReportAccount | UnsetType = UNSET
    reconciled: bool


async def sponsors(request: Request):
    s = request.server
    return 200, Sponsors(rules_version=s.app.rules.version,
                         sponsors=msgspec.convert(standing(s.store, s.app.rules, time.time()), list[SponsorAccount]))


async def sponsor_report(request: Request):
    q: ReportQuery = request.query
    s = request.server
    rules, sponsor = s.app.rules, request.params["sponsor"]
    if sponsor not in rules.sponsor_index:
        raise HttpError(404, f"no sponsor {sponsor!r} in rules version {rules.version}")
    csv = q.format == "csv" or (q.format is None and b"text/csv" in request.headers.get(b"accept", b""))
    # the account is read now, on the loop; the records up to it are all
    # written once the usage writer has caught up with the journal
    acct = account(s.store, rules, sponsor)
    await _usage_written(s)
    try:
        rep = await trio.to_thread.run_sync(period_report, sponsor, q.period, s.store.dir / "usage", rules, acct)
    except SettlementError as e:
        raise HttpError(400, str(e)) from None
    if csv:
        return 200, Text("text/csv; charset=utf-8", as_csv(rep).encode())
    return 200, rep


async def _usage_written(server, timeout: float = 5.0) -> None:
    """Wait until the usage records of every journal record so far are
    written (they follow the journal by a moment, in a worker thread)."""
    usage = server.usage
    if usage is None:
        return
    seq = server.store.seq
    with trio.move_on_after(timeout):
        while usage.last_seq < seq:
            await trio.sleep(0.01)


SPONSOR = Param("the sponsor contract's id", "guangfa-bank")
TAG = "reports"
ROUTES = [
    Route("GET", "/v1/notifications", notifications, "The notification feed: threshold announcements, polled",
          {200: Answer("announcements after the cursor, oldest first, and the next cursor", Feed),
           409: Answer("a cursor the feed did not give, or one beyond its end (the file was replaced)", ErrorBody)},
          TAG, query=FeedQuery, query_example={"after": "0", "limit": "100"},
          description="The announcements of `DATA/notifications.jsonl` (or `notifications`) after a cursor. "
                      "Poll with `after` = the `next` of the previous answer; `next` is a byte offset into "
                      "the file, which only grows. An answer may hold fewer than `limit` with more to come "
                      "(each poll reads at most 4 MiB of the file)."),
    Route("GET", "/v1/sponsors", sponsors, "Sponsor contracts, their budgets and what is left this period",
          {200: Answer("every contract of the rules in force", Sponsors)}, TAG),
    Route("GET", "/v1/sponsors/{sponsor}/report", sponsor_report, "A sponsor's settlement for a month, reconciled",
          {200: Answer("the settlement (JSON, or CSV with `format=csv` or `Accept: text/csv`)", SponsorReport,
                       ("application/json", "text/csv")),
           404: Answer("no such sponsor in the rules in force", ErrorBody)},
          TAG, params={"sponsor": SPONSOR}, query=ReportQuery, query_example={"period": "2026-11"},
          description="The sponsored sessions, the covered traffic split between sponsor and subscribers, the "
                      "amount, and for the current month the account the engine kept; `reconciled` says "
                      "whether they agree to the octet and micro-unit (docs/sponsors.md)."),
]
