"""Exact parsing of volumes and money written in rule files.

Volumes use binary units, as the plans do (1 KB = 1,024 octets, 1 MB =
1,024 KB, 1 GB = 1,024 MB). Money is parsed as a decimal into micro-units
of the currency (1 yuan = 1,000,000); a price with more than six decimals
cannot be represented exactly and is refused rather than rounded.
"""
from __future__ import annotations

import re
from decimal import Context, Decimal, DecimalException
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MICRO = 1_000_000
MONEY_LIMIT = 1 << 62       # micro-units: 4.6 trillion major units
VOLUME_LIMIT = 1 << 62      # octets: 4 EB; counters are int64 with room to add
# Exact arithmetic on what a rule file or a request writes: a number is
# first bounded by its magnitude (Decimal's adjusted exponent), so "1e999999"
# is refused as too large instead of overflowing, and what is left fits
# these digits with no rounding.
_EXACT = Context(prec=64)
VOLUME_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_VOLUME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*$", re.IGNORECASE)

# ISO 4217 minor-unit exponents and numeric codes of the currencies the plans use.
MINOR_DIGITS = {"CNY": 2, "USD": 2, "EUR": 2, "JPY": 0, "KRW": 0, "GBP": 2}
NUMERIC = {"CNY": 156, "USD": 840, "EUR": 978, "JPY": 392, "KRW": 410, "GBP": 826}


def parse_volume(text: str | int, round_up: bool = False) -> int:
    """'400 MB' -> 419430400 octets. A bare integer is octets. A volume that
    is not a whole number of octets is refused, or with `round_up` taken to
    the next octet (a ladder step "from 1.9 GB" starts at 2,040,109,466)."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"volume {text} is negative")
        if text >= VOLUME_LIMIT:
            raise ValueError(f"volume {text} is too large (at most {VOLUME_LIMIT - 1} octets)")
        return text
    m = _VOLUME.match(text)
    if not m:
        raise ValueError(f"{quoted(text)} is not a volume such as '400 MB' (units B, KB, MB, GB, TB; 1 KB = 1024 B)")
    number = Decimal(m.group(1))
    if number.adjusted() > 18:
        raise ValueError(f"{quoted(text)} is too large a volume")
    # a fraction's digits are kept whole: "1.000...01 KB" is not 1024 octets
    exact = Context(prec=len(m.group(1)) + 20)
    value = exact.multiply(number, VOLUME_UNITS[(m.group(2) or "B").upper()])
    if value >= VOLUME_LIMIT:
        raise ValueError(f"{quoted(text)} is too large a volume (at most {VOLUME_LIMIT - 1} octets)")
    if value != value.to_integral_value():
        if round_up:
            return int(value.to_integral_value(rounding="ROUND_CEILING"))
        raise ValueError(f"{quoted(text)} is not a whole number of octets")
    return int(value)


def parse_money(text: str | int) -> int:
    """'0.0003' -> 300 micro-units. Write money as a string to keep it exact."""
    if isinstance(text, float):
        raise ValueError(f"money {text!r} must be written as a string, e.g. \"0.0003\", to stay exact")
    shown = quoted(text)
    try:
        value = Decimal(str(text).strip())
    except DecimalException:
        raise ValueError(f"{shown} is not an amount of money such as \"100.00\"") from None
    if not value.is_finite():
        raise ValueError(f"{shown} is not an amount of money such as \"100.00\"")
    # balances and counters are int64 micro-units, with room to add
    too_large = f"{shown} is too large an amount (at most {format_money(MONEY_LIMIT - 1, 'XXX')})"
    if value and value.adjusted() > 18:             # "1e999999": refused before any arithmetic
        raise ValueError(too_large)
    try:
        whole = _EXACT.quantize(value, _MICRO_EXPONENT)     # at most 25 digits: exact, or rounded if finer
    except DecimalException:
        raise ValueError(f"{shown} is not an amount of money such as \"100.00\"") from None
    if whole != value:                              # also "1e-999999", which is not 0
        raise ValueError(f"{shown} has more than 6 decimal places")
    micro = int(_EXACT.scaleb(whole, 6))
    if abs(micro) >= MONEY_LIMIT:
        raise ValueError(too_large)
    return micro


_MICRO_EXPONENT = Decimal(1).scaleb(-6)


def quoted(text) -> str:
    """A value as an error message quotes it: a 100,000-character one is cut."""
    r = repr(text)
    return r if len(r) <= 64 else f"{r[:48]}...' ({len(str(text))} characters)"


def timezone_info(name: str) -> ZoneInfo:
    """An IANA timezone by name; ValueError naming it for anything that is
    not one. ZoneInfo raises ZoneInfoNotFoundError for an unknown name, but
    also ValueError for a name that is not a normalized relative path, and
    OSError for one the filesystem refuses (too long, a directory such as
    "Europe"): all of them are the operator's typing, never a crash."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown timezone {quoted(name)}") from None


def format_money(micro: int, currency: str) -> str:
    """Micro-units as a decimal string in the currency's major unit, keeping
    sub-minor-unit precision when there is any ('69.28', '0.0003')."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    digits = f"{frac:06d}".rstrip("0")
    minor = MINOR_DIGITS.get(currency, 2)
    if len(digits) < minor:
        digits = digits.ljust(minor, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
