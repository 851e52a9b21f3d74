"""What the store keeps beside its tables, as the journal and the snapshot
hold it (msgpack arrays):

- `Debit`: a direct debit that may be refunded (ocs.gy.refund); a batch
  record's "rf" lists the debits it made or changed, so a refund is bounded
  by what the debit took across requests and restarts;
- `ExpiredSession`: a session released by supervision (Tcc, RFC 4006 7)
  whose late usage is still debited within the grace (ocs.gy.app); an
  expiry record's "ex" lists them;
- `Profile`: what the operator set for a subscriber created through the
  API (ocs.store.profiles); a change record's "profile" holds one (as a
  map), the snapshot's meta all of them.
"""
from __future__ import annotations

import msgspec

from ..subscriber import E164, IMSI, subscriber_key


class Debit(msgspec.Struct, array_like=True, frozen=True):
    token: bytes              # the Refund-Information given with the debit's answer
    sub: int                  # the subscriber row charged
    octets: int
    money: int                # micro-units charged
    refunded_octets: int = 0
    refunded_money: int = 0
    t: float = 0.0            # when it was debited


class ExpiredSession(msgspec.Struct, array_like=True, frozen=True):
    session_id: bytes
    host: bytes               # the Origin-Host that opened it
    sub: int                  # its subscriber row
    last_number: int          # the CC-Request-Number it last had
    t: float                  # when it expired


KEEP_SECONDS = 400 * 86400    # a debit can be refunded for this long (over a year: a billing dispute)


def decode_debits(items) -> list[Debit]:
    return [d if isinstance(d, Debit) else Debit(*d) for d in items]


def decode_expired(items) -> list[ExpiredSession]:
    return [e if isinstance(e, ExpiredSession) else ExpiredSession(*e) for e in items]


class Profile(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A subscriber the API created, by name: its identities, timezone and
    context attributes (ocs.subscriber.ATTRIBUTES)."""
    msisdn: str
    imsi: str | None = None
    timezone: str | None = None         # None: the plan's
    customer_type: str | None = None
    terminal_type: str | None = None
    partner: str | None = None

    @property
    def keys(self) -> list[int]:
        keys = [subscriber_key(E164, self.msisdn)]
        if self.imsi is not None:
            keys.append(subscriber_key(IMSI, self.imsi))
        return keys


def encode_profile(profile: Profile) -> dict:
    return msgspec.structs.asdict(profile)


def decode_profile(data: dict) -> Profile:
    return msgspec.convert(data, Profile)
