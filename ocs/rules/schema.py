"""The rule files (TOML), as msgspec Structs.

A rules directory holds any number of `*.toml` files; each may declare
plans, packs, shared groups and subscribers. Unknown keys are errors, so a
typo never silently changes a tariff. See docs/rules.md for each kind with
an example.
"""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
Digits = Annotated[str, Meta(pattern=r"^[0-9]{1,15}$")]
RatingGroup = Annotated[int, Meta(ge=0, le=0xFFFFFFFF)]
Seconds = Annotated[int, Meta(ge=1, le=86400 * 7)]
Hours = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$")]
Volume = str | int
Money = str


class Overage(Base, kw_only=True):
    """A flat tariff: money per unit once the buckets are used up."""
    price: Money                        # currency major units per `per`, e.g. "0.0003"
    per: Volume = "1 KB"                # the rating unit
    # per-started-unit: each report's charged volume rounds up to whole units;
    # per-started-unit-of-period: the period's running total does (a report pays
    # only for the units its usage starts)
    rounding: Literal["per-started-unit", "per-started-unit-of-period"] = "per-started-unit"


class Step(Base, kw_only=True):
    """One step of a ladder: from `from` octets of charged volume in the
    period, the period's total costs `base` plus `price` per started `per`
    beyond `from`."""
    from_: Volume = msgspec.field(name="from")
    base: Money = "0"
    price: Money = "0"
    per: Volume = "1 MB"


class Bucket(Base, kw_only=True):
    """Volume a plan includes each period, for the traffic and hours it covers."""
    name: Id
    volume: Volume
    rating_groups: list[RatingGroup] | None = None   # None: all traffic
    hours: Hours | None = None          # local time, e.g. "23:00-07:00"
    shared: bool = False                # held by the group's pool (shared plans)


Rat = Literal["utran", "geran", "wlan", "gan", "hspa", "eutran", "virtual", "nb-iot", "lte-m", "nr"]
Name = Annotated[str, Meta(min_length=1, max_length=64)]


class Rate(Base, kw_only=True):
    """A tariff for some traffic, by rating groups, hours and context; the
    first that matches applies, else the plan's overage or ladder."""
    rating_groups: list[RatingGroup] | None = None
    hours: Hours | None = None
    apn: list[Name] | None = None       # Called-Station-Id network identifiers, e.g. "cmwap"
    rat: list[Rat] | None = None        # 3GPP-RAT-Type
    roaming: bool | None = None         # serving network (3GPP-SGSN-MCC-MNC) outside the plan's home_networks
    customer_type: list[Name] | None = None    # subscriber attributes from provisioning
    terminal_type: list[Name] | None = None
    partner: list[Name] | None = None
    deny: bool = False                  # refuse this traffic (4010)
    free: bool = False                  # zero-rated
    price: Money | None = None
    per: Volume = "1 KB"
    rounding: Literal["per-started-unit", "per-started-unit-of-period"] = "per-started-unit"
    buckets: bool = True                # the traffic draws from the buckets first


class Cap(Base, kw_only=True):
    """Caps on the money stage: out-of-bundle charges (`fee`) and volume
    charged as money (`volume`), whichever comes first."""
    fee: Money | None = None
    volume: Volume | None = None
    action: Literal["stop", "throttle", "free"] = "stop"
    reopen: bool = False                # a reopen lifts the caps for the rest of the period


class Threshold(Base, kw_only=True):
    """Announced once per period when crossed (docs/rules.md#thresholds)."""
    name: Id
    bucket: Id | None = None            # with percent
    percent: Annotated[int, Meta(ge=1, le=100)] | None = None
    spent: Money | None = None          # out-of-bundle charges reach this amount
    on: Literal["cap", "throttled", "ceiling", "credit-exhausted", "daily-summary"] | None = None


class Quota(Base, kw_only=True):
    """Told to the gateway with the grants of these rating groups (TS 32.299
    Quota-Holding-Time, Volume-Quota-Threshold); docs/rules.md."""
    rating_groups: list[RatingGroup] | None = None   # None: the plan's other rating groups
    holding_time: Annotated[int, Meta(ge=1, le=86400 * 7)] | None = None   # seconds
    threshold: Volume | None = None      # "2 MB", or a share of each grant: "20%"


class Plan(Base, kw_only=True):
    id: Id
    name: str = ""
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")] = "CNY"
    timezone: str = "UTC"
    period: Literal["month", "quarter", "days"] = "month"
    period_days: Annotated[int, Meta(ge=1, le=3660)] | None = None
    period_start: str | None = None     # YYYY-MM-DD: where calendar periods of `days` count from
    reset: Literal["calendar", "anniversary"] = "calendar"
    billing: Literal["prepaid", "postpaid"] = "prepaid"
    monthly_fee: Money | None = None    # recorded, billed outside the OCS
    line_fee: Money | None = None
    bundle: Volume = 0                  # shorthand for one bucket named "bundle"
    bucket: list[Bucket] = []
    order: list[str] | None = None      # bucket names, pack ids, "packs"
    overage: Overage | None = None
    ladder: list[Step] | None = None
    rate: list[Rate] = []
    after_bundle: Literal["charge", "throttle", "stop"] | None = None   # default: charge if priced
    throttle_filter: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    cap: Cap | None = None
    ceiling: Volume | None = None       # every octet in the period; nothing lifts it
    trial_pack: Id | None = None
    threshold: list[Threshold] = []
    rating_groups: list[RatingGroup] | None = None   # None: every rating group is rated
    denied_rating_groups: list[RatingGroup] = []     # answered 4010
    home_networks: list[Annotated[str, Meta(pattern=r"^[0-9]{5,6}$")]] = []   # MCC-MNC; others are roaming
    default_grant: Volume = "10 MB"     # grant for an empty Requested-Service-Unit
    max_grant: Volume = "1 GB"
    validity_time: Seconds = 1800       # Validity-Time; Tcc is twice this
    quota: list[Quota] = []             # Quota-Holding-Time, Volume-Quota-Threshold per rating group


class Pack(Base, kw_only=True):
    """A pack a subscriber buys or is given: add-on, quarterly, trial, gift."""
    id: Id
    name: str = ""
    volume: Volume
    price: Money = "0"
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")] | None = None
    days: Annotated[int, Meta(ge=1, le=3660)] | None = None   # None: until the period ends
    rating_groups: list[RatingGroup] | None = None
    hours: Hours | None = None
    shared: bool = False                # bought for the group's pool


class Group(Base, kw_only=True):
    """A shared plan: one pool for the members, the owner's."""
    id: Id
    owner: Digits                       # msisdn of the owner, who is also a member
    members: Annotated[list[Digits], Meta(max_length=10)]
    billing: Literal["owner", "member"] = "owner"
    sub_caps: dict[str, Volume] = {}    # msisdn -> volume a member may take from the pool per period


class Subscriber(Base, kw_only=True):
    msisdn: Digits | None = None        # Subscription-Id END_USER_E164
    imsi: Digits | None = None          # Subscription-Id END_USER_IMSI
    plan: Id
    balance: Money = "0"
    timezone: str | None = None         # None: the plan's
    since: str | None = None            # YYYY-MM-DD activation (anniversary resets)
    customer_type: Name | None = None   # context for rates, e.g. "business"
    terminal_type: Name | None = None   # e.g. "smartphone", "router"
    partner: Name | None = None         # e.g. an MVNO or a sales partner


class SubscriberRange(Base, kw_only=True):
    """A block of consecutive numbers on one plan (e.g. load-test subscribers)."""
    first: Digits
    last: Digits
    type: Literal["e164", "imsi"] = "e164"
    plan: Id
    balance: Money = "0"


class Budget(Base, kw_only=True):
    money: Money | None = None          # in the sponsor's currency, per period
    volume: Volume | None = None


class Sponsor(Base, kw_only=True):
    """A business paying for its users' traffic to its app (docs/sponsors.md)."""
    id: Id
    name: str = ""
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")] = "CNY"
    timezone: str = "UTC"
    period: Literal["month", "quarter", "days"] = "month"
    period_days: Annotated[int, Meta(ge=1, le=3660)] | None = None
    budget: Budget
    price: Money = "0"                  # what the sponsor is billed per `per` (per started unit of each report)
    per: Volume = "1 KB"
    rating_groups: list[RatingGroup] = []
    service_ids: list[Annotated[int, Meta(ge=0, le=0xFFFFFFFF)]] = []
    apn: list[Name] | None = None
    plans: list[Id] | None = None       # eligibility: None everyone
    subscribers: list[Digits] | None = None
    valid_from: str | None = None       # YYYY-MM-DD, local; inclusive
    valid_until: str | None = None      # YYYY-MM-DD, local; exclusive
    fallback: Literal["charge", "deny", "throttle"] = "charge"
    throttle_filter: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class RuleFile(Base, kw_only=True):
    sponsor: list[Sponsor] = []
    plan: list[Plan] = []
    pack: list[Pack] = []
    group: list[Group] = []
    subscriber: list[Subscriber] = []
    subscriber_range: list[SubscriberRange] = []
