"""Direct debits kept for refunds (ocs.gy.refund): one `Debit` per debit,
in the journal (a batch record's "rf": the debits it made or changed) and
in the snapshot, so a refund is bounded by what the debit took across
requests and restarts."""
from __future__ import annotations

import msgspec


class Debit(msgspec.Struct, array_like=True, frozen=True):
    token: bytes              # the Refund-Information given with the debit's answer
    sub: int                  # the subscriber row charged
    octets: int
    money: int                # micro-units charged
    refunded_octets: int = 0
    refunded_money: int = 0
    t: float = 0.0            # when it was debited


KEEP_SECONDS = 400 * 86400    # a debit can be refunded for this long (over a year: a billing dispute)


def decode(items) -> list[Debit]:
    """Debits as the journal or snapshot holds them (msgpack arrays)."""
    return [d if isinstance(d, Debit) else Debit(*d) for d in items]
