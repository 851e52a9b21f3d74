"""The rule files (TOML), as msgspec Structs.

A rules directory holds any number of `*.toml` files; each may declare
plans and subscribers. Unknown keys are errors, so a typo never silently
changes a tariff. See docs/rules.md for each kind with an example.
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


class Overage(Base, kw_only=True):
    """Money charged per unit once the bundle is used up."""
    price: str                          # currency major units per `per`, e.g. "0.0003"
    per: str = "1 KB"                   # the rating unit
    rounding: Literal["per-started-unit"] = "per-started-unit"   # each report's overage rounds up to whole units


class Plan(Base, kw_only=True):
    id: Id
    name: str = ""
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")] = "CNY"
    timezone: str = "UTC"
    period: Literal["month"] = "month"
    bundle: str | int = 0               # volume per period, e.g. "400 MB"
    overage: Overage | None = None      # None: data stops when the bundle is used up
    rating_groups: list[RatingGroup] | None = None   # None: every rating group is rated
    denied_rating_groups: list[RatingGroup] = []     # answered 4010
    default_grant: str | int = "10 MB"  # grant for an empty Requested-Service-Unit
    max_grant: str | int = "1 GB"
    validity_time: Seconds = 1800       # Validity-Time; Tcc is twice this


class Subscriber(Base, kw_only=True):
    msisdn: Digits | None = None        # Subscription-Id END_USER_E164
    imsi: Digits | None = None          # Subscription-Id END_USER_IMSI
    plan: Id
    balance: str = "0"


class SubscriberRange(Base, kw_only=True):
    """A block of consecutive numbers on one plan (e.g. load-test subscribers)."""
    first: Digits
    last: Digits
    type: Literal["e164", "imsi"] = "e164"
    plan: Id
    balance: str = "0"


class RuleFile(Base, kw_only=True):
    plan: list[Plan] = []
    subscriber: list[Subscriber] = []
    subscriber_range: list[SubscriberRange] = []
