"""Exact parsing of volumes and money written in rule files.

Volumes use binary units, as the plans do (1 KB = 1,024 octets, 1 MB =
1,024 KB, 1 GB = 1,024 MB). Money is parsed as a decimal into micro-units
of the currency (1 yuan = 1,000,000); a price with more than six decimals
cannot be represented exactly and is refused rather than rounded.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MICRO = 1_000_000
MONEY_LIMIT = 1 << 62       # micro-units: 4.6 trillion major units
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
        return text
    m = _VOLUME.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a volume such as '400 MB' (units B, KB, MB, GB, TB; 1 KB = 1024 B)")
    value = Decimal(m.group(1)) * VOLUME_UNITS[(m.group(2) or "B").upper()]
    if value != value.to_integral_value():
        if round_up:
            return int(value.to_integral_value(rounding="ROUND_CEILING"))
        raise ValueError(f"{text!r} is not a whole number of octets")
    return int(value)


def parse_money(text: str | int) -> int:
    """'0.0003' -> 300 micro-units. Write money as a string to keep it exact."""
    if isinstance(text, float):
        raise ValueError(f"money {text!r} must be written as a string, e.g. \"0.0003\", to stay exact")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount of money such as \"100.00\"") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not an amount of money such as \"100.00\"")
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise ValueError(f"{text!r} has more than 6 decimal places")
    if abs(micro) >= MONEY_LIMIT:       # balances and counters are int64 micro-units, with room to add
        raise ValueError(f"{text!r} is too large an amount")
    return int(micro)


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
