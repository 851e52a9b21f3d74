"""What an operator (or a self-care channel) does to an account: buy or give a
pack, reopen after a cap, top up.

Each runs on the charging loop between two batches (the single writer),
goes through the engine like a charge, and returns its journal record, so
it is durable before it is confirmed and replayed after a crash.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..engine import kernel
from ..rules.compile import RuleSet
from ..rules.units import MONEY_LIMIT, format_money, parse_money
from ..store.interface import Store
from ..store.records import BuyPack, GiftPack, JournalRecord, Reopen, TopUp


class OperationError(Exception):
    """A refused operation: `status` is the HTTP status an API answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Done:
    result: dict
    record: JournalRecord
    # subscriber rows whose live sessions the gateway should re-authorize now
    # (a Gy Re-Auth-Request, sent by the server once the record is durable)
    reauth: list[int] = field(default_factory=list)
    sessions: object = None     # or the open sessions themselves (numpy rows), when the change names them


def _rows(store: Store, row: int) -> list[int]:
    s = store.subs[row]
    return [row, int(s["pool"]), int(s["payer"])]


def _existing(store: Store, row: int) -> None:
    """An operation queued behind a deletion of its subscriber must not land
    on the deleted row (the API resolved the row before queueing)."""
    if row in store.retired:
        raise OperationError(404, f"subscriber {store.label(row)} was deleted")


def _roll(store: Store, rules: RuleSet, row: int, now: float) -> None:
    rules.set_clock(now)
    for r in _rows(store, row):
        kernel.rollover(store.subs, rules.tables, r, now)


def buy_pack(store: Store, rules: RuleSet, row: int, pack_id: str, now: float, gift: bool = False) -> Done:
    """A purchase pays the pack's price from the payer's balance (prepaid:
    only if the free balance covers it); a gift or a trial costs nothing."""
    _existing(store, row)
    d = rules.pack_index.get(pack_id)
    if d is None:
        raise OperationError(404, f"no pack {pack_id!r} in rules version {rules.version}")
    pack = rules.packs[d]
    plan = rules.plans[int(store.subs[row]["plan"])]
    price = 0 if gift else int(rules.tables.packs[d]["price"])
    if price and pack.currency is not None and pack.currency != plan.currency:
        raise OperationError(409, f"pack {pack_id!r} is priced in {pack.currency}, the plan {plan.id!r} in {plan.currency}")
    _roll(store, rules, row, now)
    payer = int(store.subs[row]["payer"])
    p = store.subs[payer]
    if price and plan.billing == "prepaid" and int(p["balance"]) - int(p["res_money"]) < price:
        raise OperationError(402, f"the balance {format_money(int(p['balance']) - int(p['res_money']), plan.currency)} "
                                  f"does not cover the pack's price {format_money(price, plan.currency)}")
    slot = kernel.add_pack(store.subs, rules.tables, row, d, now)
    if slot < 0:
        raise OperationError(409, "the subscriber already holds the most packs at once (4)")
    p["balance"] -= price
    holder = int(store.subs[row]["pool"]) if rules.tables.packs[d]["shared"] else row
    h = store.subs[holder]
    result = {"subscriber": store.label(row), "pack": pack_id, "holder": store.label(holder),
              "price": format_money(price, plan.currency), "volume_octets": int(h["k_vol"][slot]),
              "valid_from": float(h["k_from"][slot]), "valid_until": float(h["k_until"][slot]),
              "balance": format_money(int(p["balance"]), plan.currency)}
    op = (GiftPack if gift else BuyPack)(sub=store.label(row), pack=pack_id, price=price)
    return Done(result, store.record(rules.version, now, _rows(store, row), [], [], [], b"", op), [row])


def reopen(store: Store, rules: RuleSet, row: int, now: float) -> Done:
    """Lift the fee and volume caps for the rest of the period, where the
    plan allows it; the absolute ceiling stays."""
    _existing(store, row)
    plan = rules.plans[int(store.subs[row]["plan"])]
    if plan.cap is None or not plan.cap.reopen:
        raise OperationError(409, f"plan {plan.id!r} does not allow reopening after its cap")
    _roll(store, rules, row, now)
    payer = int(store.subs[row]["payer"])
    store.subs[payer]["reopened"] = 1
    op = Reopen(sub=store.label(row))
    return Done({"subscriber": store.label(row), "reopened": True},
                store.record(rules.version, now, _rows(store, row), [], [], [], b"", op), [row])


def top_up(store: Store, rules: RuleSet, row: int, amount: str, now: float) -> Done:
    _existing(store, row)
    plan = rules.plans[int(store.subs[row]["plan"])]
    try:
        micro = parse_money(amount)
    except ValueError as e:
        raise OperationError(400, f"amount: {e}") from None
    if micro <= 0:
        raise OperationError(400, "amount: a top-up is a positive amount")
    if int(store.subs[row]["balance"]) + micro >= MONEY_LIMIT:
        raise OperationError(409, f"amount: the balance would exceed {format_money(MONEY_LIMIT - 1, plan.currency)}")
    store.subs[row]["balance"] += micro
    op = TopUp(sub=store.label(row), amount=micro)
    return Done({"subscriber": store.label(row), "balance": format_money(int(store.subs[row]["balance"]), plan.currency)},
                store.record(rules.version, now, [row], [], [], [], b"", op), [row])
