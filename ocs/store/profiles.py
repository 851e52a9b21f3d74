"""Subscribers provisioned through the operator API, as the store keeps them.

The rule files own every subscriber they declare; a subscriber created
through the API is the API's, and the store keeps its profile: what the
operator set, by name (identities, timezone, attributes). Rows refer to
timezones and attributes by numbers that each rules version assigns anew,
so on every install the profile is resolved again against the new version,
as the rules' own subscribers are from their files. The plan is not in the
profile: the row's plan index is carried over by plan id like every row's
(`versions.migrate`).
"""
from __future__ import annotations

import logging

import numpy as np

from ..rules.compile import RuleSet
from ..subscriber import ATTRIBUTES, IMSI, key_digits, key_kind
from .interface import Store
from .records import Profile

log = logging.getLogger("ocs.store")


def conflicts(store: Store, rules: RuleSet) -> list[str]:
    """Why `rules` cannot be installed over the API's subscribers: an
    identity the rules give one subscriber that the API gave another, or a
    new range over an API subscriber's number. (A rules subscriber whose
    own number the API provisioned is no conflict: the rules adopt it.)"""
    errors = []
    for seed in rules.subscribers:
        own = store.explicit.get(seed.key)
        for key in (seed.key, *seed.aliases):
            row = store.explicit.get(key)
            if row is not None and row != own and row in store.profiles:
                errors.append(f"{seed.source}: {key_digits(key)} belongs to subscriber {store.label(row)}, "
                              f"provisioned through the API")
    known = {x[:4] for x in store.ranges}
    fresh = [r for r in rules.ranges if (r.id_type, r.digits, r.first, r.last) not in known]
    if fresh and store.profiles:
        api_keys = np.array([k for row, p in store.profiles.items() for k in p.keys], dtype=np.int64)
        for r in fresh:
            inside = api_keys[(api_keys >= r.key(r.first)) & (api_keys <= r.key(r.last))]
            for key in inside.tolist():
                errors.append(f"{r.source}: the range covers {store.label(store.explicit[key])}, "
                              f"provisioned through the API")
    return errors


def resolve(store: Store, rules: RuleSet, now: float) -> None:
    """Set the timezone and attribute numbers of every API subscriber as
    `rules` numbers them (after an install: once per distinct name, then
    in bulk, so a million subscribers do not hold the charging loop)."""
    if not store.profiles:
        return
    rows = np.fromiter(store.profiles.keys(), np.int64, len(store.profiles))
    kept = list(store.profiles.values())
    for field, kind in (("zone", "timezone"), *((a, a) for a in ATTRIBUTES)):
        names = [getattr(p, kind) for p in kept]
        numbers = {name: _number(rules, kind, name, now) for name in set(names)}
        store.subs[field][rows] = [numbers[name] for name in names]


def resolve_row(store: Store, rules: RuleSet, row: int, now: float) -> None:
    """The same for one row (its profile was just set)."""
    profile = store.profiles[row]
    s = store.subs[row]
    s["zone"] = _number(rules, "timezone", profile.timezone, now)
    for name in ATTRIBUTES:
        s[name] = _number(rules, name, getattr(profile, name), now)


def _number(rules: RuleSet, kind: str, name: str | None, now: float) -> int:
    if kind != "timezone":
        return rules.attribute_number(kind, name)
    if name is None:
        return -1                       # the plan's timezone
    zone = rules.zone_index(name)
    if zone < 0:        # a timezone no plan uses: the zone table grows (the name was checked when it was set)
        try:
            zone = rules.zone_index(name, add=True)
        except ValueError as e:
            # checked when it was set, but the timezone database may have
            # changed since: charging goes on in the plan's timezone rather
            # than failing an install (or the start) for every subscriber
            if name not in _unknown_zones:
                _unknown_zones.add(name)
                log.error("API subscribers with timezone %r: %s in this timezone database; "
                          "their plan's timezone applies until it is changed", name, e)
            return -1
        rules.set_clock(now)
    return zone


_unknown_zones: set[str] = set()        # logged once each


def of_row(store: Store, rules: RuleSet, row: int) -> Profile:
    """The profile of a row: the kept one, or, for a subscriber the rule
    files declared once and no longer do, one read back from its row."""
    if row in store.profiles:
        return store.profiles[row]
    s = store.subs[row]
    imsi = next((k for k, r in store.explicit.items() if r == row and key_kind(k) == IMSI), None)
    names = {}
    for name in ATTRIBUTES:
        number = int(s[name])
        names[name] = next((n for n, v in rules.attributes.get(name, {}).items() if v == number), None)
    zone = int(s["zone"])
    return Profile(msisdn=store.label(row), imsi=key_digits(imsi) if imsi is not None else None,
                   timezone=rules.zones[zone].key if 0 <= zone < len(rules.zones) else None, **names)
