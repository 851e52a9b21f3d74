"""Server-initiated re-authorization (RFC 4006 section 5.5, 3GPP TS 32.299
section 6.4.6): which sessions a change affects, and what a RAA saying the
gateway has no such session releases. The RAR itself and the matching of
its answers are the peer connection's (ocs/diameter/reauth.py).

When something changes what a live session may get (a top-up, a pack, a
reopen, a new tariff), the OCS asks the gateway holding the session to
re-authorize now rather than at its next report. The gateway answers with a
RAA and then sends a CCR-UPDATE for every rating group it holds (Reporting-
Reason FORCED_REAUTHORISATION), which is charged like any other. A RAA with
DIAMETER_UNKNOWN_SESSION_ID (5002) tells us the gateway no longer has the
session: its reservations are released (RFC 4006 section 5.5).

No I/O, no clock.
"""
from __future__ import annotations

import msgspec
import numpy as np

from ..engine import kernel
from ..engine.tables import SLOT_FREE

_enc = msgspec.json.encode


# ---------------------------------------------------------------- whom to ask

def _live(store) -> tuple[np.ndarray, np.ndarray]:
    """(session rows, their subscriber rows) of the open sessions."""
    owner = store.sessions["sub"]
    rows = np.flatnonzero(owner >= 0)
    return rows, owner[rows]


def sessions_of(store, subscribers) -> np.ndarray:
    """The open sessions a change to these subscriber rows affects: their
    own, and those of every member sharing their pool or their payer (a
    top-up of a family's payer reopens every member's data)."""
    rows, owner = _live(store)
    if not len(rows):
        return rows
    subs = store.subs
    wanted = np.asarray(sorted(set(subscribers)), dtype=np.int64)
    heads = np.unique(np.concatenate([wanted, subs["payer"][wanted], subs["pool"][wanted]]))
    hit = np.isin(owner, wanted) | np.isin(subs["payer"][owner], heads) | np.isin(subs["pool"][owner], heads)
    return rows[hit]


def _encoded(items) -> dict[str, bytes]:
    return {x.id: _enc(x) for x in items}


def sessions_changed_by(store, old, new) -> np.ndarray:
    """The open sessions a new rules version changes the charging of, read
    from the definitions: a plan whose definition changed (its buckets,
    rates, tariffs, caps), a pack someone in the session holds, a sponsor
    contract holding part of the session's grant, or the subscriber's own
    entry (plan, group, attributes). Sessions on untouched plans are left
    alone: a tariff change must not make every gateway re-authorize.
    Called once `new` is installed: the rows are indexed by it."""
    rows, owner = _live(store)
    if not len(rows) or old is None:
        return rows[:0]
    subs = store.subs
    old_plans, new_plans = _encoded(old.plans), _encoded(new.plans)
    changed_plans = [new.plan_index[p] for p, data in new_plans.items() if old_plans.get(p) != data]
    hit = np.isin(subs["plan"][owner], np.asarray(changed_plans, dtype=np.int64))
    old_packs, new_packs = _encoded(old.packs), _encoded(new.packs)
    changed_packs = [new.pack_index[p] for p, data in new_packs.items() if old_packs.get(p) != data]
    if changed_packs:
        held = np.isin(subs["k_def"][owner], changed_packs).any(axis=1)
        held |= np.isin(subs["k_def"][subs["pool"][owner]], changed_packs).any(axis=1)
        hit |= held
    # a contract that changed or ended: sessions it holds grants for, and
    # sessions on the rating groups it (now or before) covers
    old_sp, new_sp = _encoded(old.sponsors), _encoded(new.sponsors)
    changed_sp = [s for s in set(old_sp) | set(new_sp) if old_sp.get(s) != new_sp.get(s)]
    if changed_sp:
        held = [new.sponsor_index[s] for s in changed_sp if s in new.sponsor_index]
        hit |= np.isin(store.sessions["sp"][rows], held).any(axis=1)
        groups = {rg for rs in (old, new) for sp in rs.sponsors if sp.id in changed_sp for rg in sp.rating_groups}
        everything = any(not sp.rating_groups for rs in (old, new) for sp in rs.sponsors if sp.id in changed_sp)
        slots = store.sessions["rg"][rows]
        hit |= (slots != SLOT_FREE).any(axis=1) if everything else np.isin(slots, list(groups)).any(axis=1)
    # a range now on another plan (the range's rows were provisioned in a block)
    was_on = {(r.id_type, r.digits, r.first, r.last): old.plans[r.plan].id for r in old.ranges}
    for r in new.ranges:
        before_plan = was_on.get((r.id_type, r.digits, r.first, r.last))
        if before_plan is not None and before_plan != new.plans[r.plan].id:
            for id_type, digits, first, last, base in store.ranges:
                if (id_type, digits, first, last) == (r.id_type, r.digits, r.first, r.last):
                    hit |= (owner >= base) & (owner < base + r.size)
    before = {s.key: _seed(old, s) for s in old.subscribers}
    moved = [store.lookup(s.key) for s in new.subscribers if before.get(s.key) != _seed(new, s)]
    if moved:
        hit |= np.isin(owner, np.asarray(moved, dtype=np.int64))
    return rows[hit]


def _seed(rules, s) -> tuple:
    plan = rules.plans[s.plan].id if s.plan >= 0 else None
    zone = rules.zones[s.zone].key if s.zone >= 0 else None
    return (plan, zone, s.pool, s.payer, s.pool_cap, s.attributes)


def release(store, rules, session_id: bytes, now: float):
    """The gateway does not know the session any more (RAA 5002): release
    what it holds, as if it had ended (an operations.Done; no record when
    the session is already gone)."""
    from .operations import Done
    row = store.session_index.get(session_id)
    if row is None or store.sessions[row]["sub"] < 0:
        return Done({}, None)
    sub = int(store.sessions[row]["sub"])
    dirty = [sub, int(store.subs[sub]["payer"]), int(store.subs[sub]["pool"])]
    kernel.close_session(store.subs, store.sessions, store.sponsors, row)
    record = store.record(rules.version, now, np.asarray(dirty, np.int64), np.asarray([row], np.int64), [], [], b"")
    store.release_session_row(row)
    return Done({"released": session_id}, record)
