"""Refunds of direct debits (RFC 4006 6.4 REFUND_ACCOUNT, with 3GPP TS
32.299's Refund-Information AVP, 7.2.150a).

A refund gives back what a debit took, never more, and only to a peer the
configuration allows (`[[peers]] refunds = true`, off by default). Every
successful DIRECT_DEBITING answer carries a Refund-Information naming the
debit; a REFUND_ACCOUNT must carry it back. The store keeps each debit
(`Debit`: who, octets, money, how much of it is refunded) durably, in the
journal and the snapshot, so refunds add up across requests and restarts:
the money given back is the debit's money in proportion to the octets
refunded so far, rounded down, so the refunds of a debit never exceed it.
Octets the debit took from a bundle are not put back (the bundle's period
may be over); its money is. A retransmitted refund is answered from the
duplicate cache and refunds nothing again.
"""
from __future__ import annotations

import msgspec

from ..diameter import avp as A
from ..diameter import constants as c
from ..diameter.errors import ProtocolError
from ..store.records import Debit

AVP_REFUND_INFORMATION = 2022          # TS 32.299 7.2.150a, vendor 3GPP, OctetString
TOKEN_PREFIX = b"ocs-debit:"


def token(session_id: bytes) -> bytes:
    """The Refund-Information of a debit: an event's Session-Id names it
    (RFC 4006 8.8: an event session is one request)."""
    return TOKEN_PREFIX + session_id


def refund_information_avp(tok: bytes) -> bytes:
    return A.encode(AVP_REFUND_INFORMATION, tok, vendor=c.VENDOR_3GPP)


def with_avp(answer: bytes, avp: bytes) -> bytes:
    """An encoded answer with one more AVP at its end (the header's length
    rewritten)."""
    length = len(answer) + len(avp)
    return answer[:1] + length.to_bytes(3, "big") + answer[4:] + avp


def find_token(frame: bytes) -> bytes | None:
    """The Refund-Information of a request, if it carries one."""
    for a in A.walk(frame, c.HEADER_LEN, len(frame)):
        if a.code == AVP_REFUND_INFORMATION and a.vendor == c.VENDOR_3GPP:
            return a.data
    return None


def settle(debit: Debit | None, tok: bytes | None, sub: int, octets: int) -> tuple[Debit, int]:
    """The debit after refunding `octets` more of it (-1: all that is left)
    to subscriber row `sub`, and the money that gives back; a ProtocolError
    naming what is wrong otherwise."""
    if tok is None:
        raise ProtocolError(c.MISSING_AVP, "a refund must carry the Refund-Information of the debit it refunds",
                            refund_information_avp(b""))
    if debit is None:
        raise ProtocolError(c.INVALID_AVP_VALUE, "the Refund-Information names no debit kept here",
                            refund_information_avp(tok))
    if debit.sub != sub:
        raise ProtocolError(c.INVALID_AVP_VALUE, "the debit named was charged to another subscriber",
                            refund_information_avp(tok))
    left = debit.octets - debit.refunded_octets
    if octets < 0:
        octets = left
    if octets > left:
        raise ProtocolError(c.INVALID_AVP_VALUE, f"a refund of {octets} octets: only {left} of the debit's "
                            f"{debit.octets} are left to refund", refund_information_avp(tok))
    done = debit.refunded_octets + octets
    money = debit.money * done // debit.octets if debit.octets else debit.money
    back = money - debit.refunded_money
    return msgspec.structs.replace(debit, refunded_octets=done, refunded_money=money), back
