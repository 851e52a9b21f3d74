"""Who a subscriber is: each of its identities as one int64 key, and the
context attributes provisioning gives it.

A key packs an identity's kind, its number of digits (so leading zeros
count: 0861... and 861... are two numbers) and its value:

    bits 63-56: kind (E164 or IMSI)   55-50: digits (1-15)   49-0: value

The kinds are the values of Subscription-Id-Type END_USER_E164 and
END_USER_IMSI (RFC 4006 section 8.47), the only two charged. Every part of
the server that makes or reads a key takes its layout from here: the rules
(subscribers, ranges, sponsors' eligible subscribers), the store's
directory, the API's profiles, the full CCR decoder and the compiled one
(`ocs/diameter/fastccr.py`: numba reads these module-level ints as
constants).

Imports nothing of ocs: everything may import it.
"""
from __future__ import annotations

E164, IMSI = 0, 1

KIND_SHIFT = 56
DIGITS_SHIFT = 50
DIGITS_MASK = 0x3F
VALUE_MASK = (1 << DIGITS_SHIFT) - 1
MAX_DIGITS = 15                 # E.164 and IMSI both: 10**15 < 2**50

# Context attributes a subscriber is provisioned with (in the rule files or
# through the API) and a rate may be conditioned on: names in the rules,
# small numbers in the engine's SUBSCRIBER rows (fields of the same names).
ATTRIBUTES = ("customer_type", "terminal_type", "partner")


def key_head(kind: int, digits: int) -> int:
    """The key of value 0 for this kind and number of digits: a range's keys
    are `key_head(...) | value` for its values."""
    return (kind << KIND_SHIFT) | (digits << DIGITS_SHIFT)


def subscriber_key(kind: int, digits: str) -> int:
    """One int64 per identity: kind, digit count, value."""
    return key_head(kind, len(digits)) | int(digits)


def key_kind(key: int) -> int:
    return key >> KIND_SHIFT


def key_length(key: int) -> int:
    """How many digits the identity has."""
    return (key >> DIGITS_SHIFT) & DIGITS_MASK


def key_digits(key: int) -> str:
    """The digits of a subscriber key (leading zeros kept)."""
    return str(key & VALUE_MASK).zfill(key_length(key))
