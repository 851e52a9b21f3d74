"""What the journal holds, and what the store keeps beside its tables as
the journal and the snapshot hold it:

- `JournalRecord`: one batch's (or one operation's, one rules install's)
  effects, as written to the journal and replayed;
- `Debit`: a direct debit that may be refunded (ocs.gy.refund); a batch
  record's `debits` lists the debits it made or changed, so a refund is
  bounded by what the debit took across requests and restarts;
- `Profile`: what the operator set for a subscriber provisioned through
  the API (ocs.store.profiles), in the snapshot and in a directory change;
- `ExpiredSession`: a session released by supervision (Tcc, RFC 4006 7)
  whose late usage is still debited within the grace (ocs.gy.resolve); an
  expiry record's `expired` lists them.

On disk a journal record is a msgpack map whose keys are the short names
given by `name=` below: the names journals have always had, so a journal
written before these types replays (tests/store/test_old_journal.py), and
fields at their defaults are left out, as they always were.
"""
from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType, field

from ..subscriber import E164, IMSI, subscriber_key


class Profile(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A subscriber the API created, by name: its identities, timezone and
    context attributes (ocs.subscriber.ATTRIBUTES). Rows refer to timezones
    and attributes by numbers each rules version assigns anew
    (ocs.store.profiles resolves them)."""
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


class NewSession(msgspec.Struct, array_like=True, frozen=True):
    """A session a batch opened: its row, and what `session_meta` holds."""
    row: int
    session_id: bytes
    host: bytes               # the Origin-Host that opened it


class Answers(msgspec.Struct, array_like=True, frozen=True):
    """The answers a batch gave, for the duplicate cache (ocs.store.dedup):
    keys (Origin-Host + End-to-End-Identifier) and answers, in order."""
    keys: list[bytes] = []
    answers: list[bytes] = []


class DirectoryChange(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who a subscriber row is, as provisioning changed it
    (`EmbeddedStore.change_directory`): identities bound and unbound, its
    label, its profile (None: dropped; unset: unchanged), retired."""
    row: int
    bind: list[int]
    unbind: list[int]
    retire: bool
    label: str | None = None
    profile: Profile | None | UnsetType = UNSET


# What an operation did, for whoever reads the journal: replay needs only
# the rows; these say why they changed.
class Operation(msgspec.Struct, frozen=True, tag_field="op"):
    sub: str                  # the subscriber's label


class BuyPack(Operation, tag="buy-pack"):
    pack: str
    price: int                # micro-units charged


class GiftPack(BuyPack, tag="gift-pack"):
    pass


class Reopen(Operation, tag="reopen"):
    pass


class TopUp(Operation, tag="top-up"):
    amount: int               # micro-units


class CreateSubscriber(Operation, tag="create-subscriber"):
    plan: str
    balance: int


class ChangeSubscriber(Operation, tag="change-subscriber"):
    set: dict[str, Any]       # the fields the operator gave, as given


class DeleteSubscriber(Operation, tag="delete-subscriber"):
    balance: int              # what was left
    sessions: list[str]       # the sessions it still had, ended


AnyOperation = BuyPack | GiftPack | Reopen | TopUp | CreateSubscriber | ChangeSubscriber | DeleteSubscriber


class JournalRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One journal record: the new values of every row a batch changed (not
    deltas: replaying a record twice changes nothing), and whatever else
    recovery needs to rebuild the state and the duplicate cache. (gc=False:
    it holds bytes and lists of them, never a cycle; one per batch need not
    be tracked by the collector.)"""
    seq: int
    format: str = field(name="f")                 # memory.FORMAT: the row layouts it was written with
    rules: str                                    # the rules version the rows are indexed by
    installed_rules: str = field(name="rv", default="")    # a rules install: replay installs it again
    time: float = field(name="t")
    subscriber_rows: bytes = field(name="si")     # int64 row numbers, sorted
    subscribers: bytes = field(name="sr")         # their new SUBSCRIBER rows
    session_rows: bytes = field(name="xi")        # int64 row numbers, sorted
    sessions: bytes = field(name="xr")            # their new SESSION rows (sub < 0: released)
    new_sessions: list[NewSession] = field(name="new")
    answers: Answers = field(name="ans")
    usage: bytes = field(name="use")              # USAGE rows (ocs.gy.app), one per reported MSCC
    operation: AnyOperation | None = field(name="op", default=None)
    directory: list[DirectoryChange] = field(name="dir", default=[])   # applied before the rows
    sponsors: bytes | None = field(name="sp", default=None)            # every SPONSOR row, when they changed
    sponsor_ids: list[str] | None = field(name="spi", default=None)
    debits: list[Debit] = field(name="rf", default=[])
    expired: list[ExpiredSession] = field(name="ex", default=[])
    usage_sessions: list[bytes] = field(name="ss", default=[])         # the Session-Id of each usage row


def decode_profile(data: dict) -> Profile:
    """A profile as a snapshot's meta holds it (a map)."""
    return msgspec.convert(data, Profile)
