"""Hash slots: how the cluster store divides the state, and the records it
writes per slot (docs/cluster.md).

Accounts are split into a fixed number of slots by the owner of the balance
they draw on: a subscriber with the members of its pool and its payer (a
family group, a shared pool) is one unit, so a pool lives in one slot. A
session belongs to its subscriber's slot. The sponsors' accounts, shared
by every slot, are a slot of their own (`sponsor_slot`).

A batch's journal record (records.JournalRecord: new values of the rows it
changed) is split into one `SlotRecord` per slot it touched, each naming
its sessions by Session-Id (session rows are numbered by each node for
itself), so a node taking a slot over replays that slot's records alone.
What belongs to no slot (the answers for the duplicate cache, usage rows,
the operation) stays in the node's own batch record.
"""
from __future__ import annotations

import threading
import time

import msgspec
import numpy as np
import zstandard

from ..engine.tables import SESSION, SPONSOR, SUBSCRIBER
from .memory import StoreFormatError, _put_rows, _rows_bytes
from .records import Debit, DirectoryChange, ExpiredSession, JournalRecord

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def sponsor_slot(n_slots: int) -> int:
    return n_slots


def group_heads(subs: np.ndarray, n: int) -> np.ndarray:
    """Each row's unit: the lowest row reachable through `pool` and `payer`
    links either way (rows of one family, pool or payer group share it)."""
    head = np.arange(n, dtype=np.int64)
    if n == 0:
        return head
    pool = np.clip(subs["pool"][:n].astype(np.int64), 0, n - 1)
    payer = np.clip(subs["payer"][:n].astype(np.int64), 0, n - 1)
    while True:
        new = np.minimum(head, np.minimum(head[pool], head[payer]))
        np.minimum.at(new, pool, new)         # links are followed both ways
        np.minimum.at(new, payer, new)
        new = new[new]                        # pointer jumping
        if np.array_equal(new, head):
            return head
        head = new


def slot_of_heads(heads: np.ndarray, n_slots: int) -> np.ndarray:
    """A unit's slot: a multiplicative hash of its head row (row numbers are
    the same on every node: the directory is built alike everywhere)."""
    h = (heads.astype(np.uint64) * _GOLDEN) >> np.uint64(40)
    return (h % np.uint64(n_slots)).astype(np.int32)


class SlotRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One batch's effects on one slot."""
    seq: int                          # the slot's own record number
    time: float
    rules: str                        # the rules version the rows are indexed by
    subscriber_rows: bytes            # int64 row numbers
    subscribers: bytes                # their new SUBSCRIBER rows
    session_ids: list[bytes]          # the sessions changed, by Session-Id
    session_hosts: list[bytes]        # ... and the Origin-Host that opened each
    sessions: bytes                   # their new SESSION rows (sub < 0: released)
    directory: list[DirectoryChange] = []
    debits: list[Debit] = []
    expired: list[ExpiredSession] = []
    sponsors: bytes | None = None     # the sponsors' slot: every SPONSOR row
    sponsor_ids: list[str] | None = None


# Records and snapshots are msgpack compressed by zstd (level 1): rows are mostly
# zeros and small numbers, a batch's records shrink ~6x, and with them the WAL, the
# standby's stream and PostgreSQL's work (docs/cluster.md, "Cost")
_enc = msgspec.msgpack.Encoder()
SLOT_DECODER = msgspec.msgpack.Decoder(SlotRecord)
BATCH_DECODER = msgspec.msgpack.Decoder(JournalRecord)
_zc = threading.local()


def pack(obj) -> bytes:
    c = getattr(_zc, "c", None)
    if c is None:
        c = _zc.c = zstandard.ZstdCompressor(level=1)
    return c.compress(_enc.encode(obj))


def unpack(data: bytes, dec=SLOT_DECODER):
    d = getattr(_zc, "d", None)
    if d is None:
        d = _zc.d = zstandard.ZstdDecompressor()
    return dec.decode(d.decompress(data))


class SlotData(msgspec.Struct, frozen=True):
    """What a node reads to take a slot: its snapshot (a SlotRecord of every
    row it holds, or None) and its records after it, in order."""
    slot: int
    epoch: int
    snapshot: SlotRecord | None
    records: list[SlotRecord]


_SUB_WIDTH = SUBSCRIBER.itemsize
_SESS_WIDTH = SESSION.itemsize


def _groups(slots: np.ndarray):
    """(slot, positions) for each distinct slot, positions in order."""
    if len(slots) == 0:
        return
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    for part in np.split(order, cuts):
        yield int(slots[part[0]]), part


def split(rec: JournalRecord, slot_of_row: np.ndarray, session_slot: np.ndarray,
          session_meta: list, n_slots: int) -> dict[int, dict]:
    """The parts of `rec` per slot, as SlotRecord fields (without seq)."""
    parts: dict[int, dict] = {}

    def part(slot: int) -> dict:
        p = parts.get(slot)
        if p is None:
            p = parts[slot] = {"time": rec.time, "rules": rec.rules, "subscriber_rows": b"", "subscribers": b"",
                               "session_ids": [], "session_hosts": [], "sessions": b""}
        return p

    si = np.frombuffer(rec.subscriber_rows, np.int64)
    if len(si):
        data = np.frombuffer(rec.subscribers, np.uint8).reshape(-1, _SUB_WIDTH)
        for slot, at in _groups(slot_of_row[si]):
            p = part(slot)
            p["subscriber_rows"] = si[at].tobytes()
            p["subscribers"] = data[at].tobytes()
    xi = np.frombuffer(rec.session_rows, np.int64)
    if len(xi):
        data = np.frombuffer(rec.sessions, np.uint8).reshape(-1, _SESS_WIDTH)
        for slot, at in _groups(session_slot[xi]):
            p = part(slot)
            metas = [session_meta[r] for r in xi[at].tolist()]
            p["session_ids"] = [m[0] for m in metas]
            p["session_hosts"] = [m[1] for m in metas]
            p["sessions"] = data[at].tobytes()
    for change in rec.directory:
        part(int(slot_of_row[change.row])).setdefault("directory", []).append(change)
    for d in rec.debits:
        part(int(slot_of_row[d.sub])).setdefault("debits", []).append(d)
    for e in rec.expired:
        part(int(slot_of_row[e.sub])).setdefault("expired", []).append(e)
    if rec.sponsors is not None:
        p = part(sponsor_slot(n_slots))
        p["sponsors"], p["sponsor_ids"] = rec.sponsors, rec.sponsor_ids
    return parts


def apply_slot(store, rec: SlotRecord) -> None:
    """A slot's record (or snapshot) into the state of `store` (a ClusterStore)."""
    if rec.rules != store.rules_version and rec.rules:
        raise StoreFormatError(f"a slot record of rules version {rec.rules}, and this node installed "
                               f"{store.rules_version}: start every node on the cluster's rules")
    for change in rec.directory:
        store._apply_directory(change)
    if len(store.slot_of_row) < store.n_subs:
        store.map_slots()
    si = np.frombuffer(rec.subscriber_rows, np.int64)
    _put_rows(store.subs, si, rec.subscribers)
    if rec.session_ids:
        rows = []
        for sid, host in zip(rec.session_ids, rec.session_hosts):
            row = store.session_index.get(sid)
            if row is None:
                row = store.open_session(sid, host)
                store.expired.pop(sid, None)
            rows.append(row)
        xi = np.array(rows, np.int64)
        _put_rows(store.sessions, xi, rec.sessions)
        store.session_slot[xi] = store.slot_of_row[np.maximum(store.sessions["sub"][xi], 0)]
        for row in xi[store.sessions[xi]["sub"] < 0].tolist():
            store.release_session_row(row)
    if rec.sponsors is not None:
        store.sponsors = np.frombuffer(rec.sponsors, SPONSOR).copy()
        store.sponsor_ids = list(rec.sponsor_ids or ())
    store.keep_debits(rec.debits)
    store.keep_expired(rec.expired)


def capture(store) -> dict[int, SlotRecord]:
    """Every slot `store` (a ClusterStore) holds, as a SlotRecord of all it
    holds: a snapshot (on the loop, between batches)."""
    n = store.n_subs
    if len(store.slot_of_row) < n:
        store.map_slots()
    keys: dict[int, list[int]] = {}
    for key, row in store.explicit.items():
        keys.setdefault(row, []).append(key)
    open_rows = np.array([i for i, m in enumerate(store.session_meta) if m is not None], np.int64)
    api_all = sorted(set(store.profiles) | store.retired)     # the rows the API provisioned or retired: few
    snaps = {}
    for slot in sorted(store.owned):
        if slot == sponsor_slot(store.n_slots):
            snaps[slot] = SlotRecord(store.slot_seq.get(slot, 0), time.time(), store.rules_version, b"", b"", [],
                                     [], b"", sponsors=store.sponsors.tobytes(),
                                     sponsor_ids=list(store.sponsor_ids))
            continue
        rows = np.flatnonzero(store.slot_of_row[:n] == slot)
        api_rows = [r for r in api_all if store.slot_of_row[r] == slot]
        directory = [DirectoryChange(row=r, bind=keys.get(r, []), unbind=[], retire=r in store.retired,
                                     label=store.labels.get(r), profile=store.profiles.get(r)) for r in api_rows]
        xs = open_rows[store.session_slot[open_rows] == slot] if len(open_rows) else open_rows
        metas = [store.session_meta[x] for x in xs.tolist()]
        snaps[slot] = SlotRecord(
            store.slot_seq.get(slot, 0), time.time(), store.rules_version, rows.tobytes(),
            _rows_bytes(store.subs, rows), [m[0] for m in metas], [m[1] for m in metas],
            _rows_bytes(store.sessions, xs), directory=directory,
            debits=[d for d in store.debits.values() if store.slot_of_row[d.sub] == slot],
            expired=[e for e in store.expired.values() if store.slot_of_row[e.sub] == slot])
    return snaps
