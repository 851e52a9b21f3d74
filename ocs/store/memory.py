"""The state a store holds in memory, the same for every store: the record
arrays the kernels charge (subscribers, sessions, sponsors), the
subscriber directory, the session index, the duplicate cache, the debits
and released sessions kept for late reports; and the two directions
between that state and journal records: `record` builds one batch's
effects, `apply` replays one. Records hold the new values of the rows a
batch changed (not deltas), so applying one twice changes nothing.

Where records are made durable and how the state is recovered is each
store's own: the embedded store (embedded.py) in a journal file and
snapshots, the cluster store (cluster.py) in PostgreSQL.
"""
from __future__ import annotations

import hashlib

import numpy as np
from msgspec import UNSET

from ..engine.tables import NEVER
from ..engine.tables import SESSION, SPONSOR, SUBSCRIBER, new_table
from ..rules.compile import RuleSet
from ..subscriber import VALUE_MASK, key_head, key_kind, key_length
from .records import (AnyOperation, Answers, Debit, DirectoryChange, ExpiredSession, JournalRecord,
                      NewSession, Profile)
from .dedup import DEFAULT_BYTES, DEFAULT_SECONDS, DuplicateCache

# directory written with other tables is refused rather than misread.
FORMAT = "3-" + hashlib.sha256(repr((SUBSCRIBER.descr, SESSION.descr, SPONSOR.descr)).encode()).hexdigest()[:8]


class StoreFormatError(Exception):
    pass


def new_subscribers(n: int) -> np.ndarray:
    subs = new_table(SUBSCRIBER, n)
    subs["period"] = NEVER
    return subs



class MemoryStore:
    def __init__(self, dedup_entries: int = 500_000, dedup_seconds: float = DEFAULT_SECONDS,
                 dedup_bytes: int = DEFAULT_BYTES):
        self.dedup_entries = dedup_entries
        self.subs = new_subscribers(0)
        self.n_subs = 0
        self.explicit: dict[int, int] = {}
        self._explicit_keys: np.ndarray | None = None   # sorted copy of `explicit` for lookup_many
        self._explicit_rows: np.ndarray | None = None
        self.labels: dict[int, str] = {}          # row -> identity, for explicit subscribers
        self.ranges: list[tuple[int, int, int, int, int]] = []   # (type, digits, first, last, base row)
        self.profiles: dict[int, Profile] = {}    # row -> what the operator set, for the API's subscribers
        self.retired: set[int] = set()            # rows of deleted subscribers (rows are never reused)
        self.sessions = new_table(SESSION, 1024)
        self.session_index: dict[bytes, int] = {}
        self.session_meta: list[tuple[bytes, bytes] | None] = [None] * 1024
        self.free_sessions: list[int] = list(range(1023, -1, -1))
        self.dedup = DuplicateCache(dedup_entries, dedup_seconds, dedup_bytes)  # Origin-Host + End-to-End-Id -> answer
        self.seq = 0
        self.rules_version = ""           # the rules version the rows are indexed by
        self.sponsors = np.zeros(0, SPONSOR)      # one account per sponsor contract, in the rules' order
        self.sponsor_ids: list[str] = []
        self.debits: dict[bytes, Debit] = {}     # refundable direct debits by Refund-Information
        self.expired: dict[bytes, ExpiredSession] = {}   # sessions Tcc released, by Session-Id
        self.session_grace = 3600.0               # ... whose late usage is still debited this long
        self._on_rules = None

    # ------------------------------------------------------------ directory
    def lookup(self, key: int) -> int:
        row = self.explicit.get(key)
        if row is not None:
            return row
        id_type, digits, value = key_kind(key), key_length(key), key & VALUE_MASK
        for t, d, first, last, base in self.ranges:
            if t == id_type and d == digits and first <= value <= last:
                return base + value - first
        return -1

    def lookup_many(self, keys: np.ndarray) -> np.ndarray:
        """`lookup` for an array of keys (-1 for none), vectorized."""
        if self._explicit_keys is None:
            items = sorted(self.explicit.items())
            self._explicit_keys = np.array([k for k, _ in items], dtype=np.int64)
            self._explicit_rows = np.array([r for _, r in items], dtype=np.int64)
        rows = np.full(len(keys), -1, dtype=np.int64)
        ek = self._explicit_keys
        if len(ek):
            at = np.minimum(np.searchsorted(ek, keys), len(ek) - 1)
            hit = ek[at] == keys
            rows[hit] = self._explicit_rows[at[hit]]
        value = keys & VALUE_MASK
        for t, d, first, last, base in self.ranges:
            head = key_head(t, d)
            hit = (rows < 0) & (keys >= (head | first)) & (keys <= (head | last)) & (keys - value == head)
            rows[hit] = base + value[hit] - first
        rows[keys < 0] = -1
        return rows

    def label(self, row: int) -> str:
        if row in self.labels:
            return self.labels[row]
        for _, d, first, last, base in self.ranges:
            if base <= row <= base + last - first:
                return str(first + row - base).zfill(d)
        return str(row)

    # Provisioning through the API changes the directory between batches; a
    # change is a DirectoryChange, applied the same way live and in replay,
    # and journaled with the rows it provisioned (the record's `directory`).
    def _bind(self, key: int, row: int) -> None:
        self.explicit[key] = row
        if self._explicit_keys is not None:
            # keep lookup_many's sorted copy current (O(n) copy) rather than
            # re-sorting every key at the next batch
            ek = self._explicit_keys
            at = int(np.searchsorted(ek, key))
            if at < len(ek) and ek[at] == key:
                self._explicit_rows[at] = row
            else:
                self._explicit_keys = np.insert(ek, at, key)
                self._explicit_rows = np.insert(self._explicit_rows, at, row)

    def _unbind(self, key: int) -> None:
        if self.explicit.pop(key, None) is not None and self._explicit_keys is not None:
            at = int(np.searchsorted(self._explicit_keys, key))
            self._explicit_keys = np.delete(self._explicit_keys, at)
            self._explicit_rows = np.delete(self._explicit_rows, at)

    def new_row(self, plan: int, balance: int, anchor: int) -> int:
        """A provisioned row at the end of the table (its identities are
        bound by `change_directory`)."""
        row = self.n_subs
        self._grow_subs(row + 1)
        self.n_subs += 1
        self._provision(row, 1, plan, balance, anchor)
        return row

    def change_directory(self, row: int, bind=(), unbind=(), label: str | None = None,
                         profile: Profile | None = None, drop_profile: bool = False,
                         retire: bool = False) -> DirectoryChange:
        """Change who the row is; returns the change for the journal record
        (`record(directory=[...])`)."""
        change = DirectoryChange(row=row, bind=list(bind), unbind=list(unbind), retire=retire, label=label,
                                 profile=profile if profile is not None or drop_profile else UNSET)
        self._apply_directory(change)
        return change

    def _apply_directory(self, change: DirectoryChange) -> None:
        row = change.row
        if row >= self.n_subs:            # replay: a row the API provisioned
            self._grow_subs(row + 1)
            self.n_subs = row + 1
        for key in change.unbind:
            self._unbind(key)
        for key in change.bind:
            self._bind(key, row)
        if change.label is not None:
            self.labels[row] = change.label
        if change.profile is None:
            self.profiles.pop(row, None)
        elif change.profile is not UNSET:
            self.profiles[row] = change.profile
        if change.retire:
            self.retired.add(row)

    def _grow_subs(self, need: int) -> None:
        if need > len(self.subs):
            # an eighth more, not twice: at 10 million rows doubling would
            # take another 3.7 GB for one subscriber created through the API
            cap = max(need, len(self.subs) + len(self.subs) // 8, 1024)
            grown = _subscriber_rows(cap, self.n_subs)
            grown[:self.n_subs] = self.subs[:self.n_subs]
            self.subs = grown

    def _provision(self, start: int, count: int, plan: int, balance: int, anchor: int) -> None:
        block = self.subs[start:start + count]
        rows = np.arange(start, start + count)
        block["balance"] = balance
        block["active"] = 1
        block["payer"] = rows
        block["pool"] = rows
        block["anchor"] = anchor
        block["plan"] = plan

    def sync_sponsors(self, ids: list[str]) -> None:
        """One account per contract of the rules, carried over by id (a
        contract that ends takes its account with it; its usage records stay)."""
        grown = np.zeros(len(ids), SPONSOR)
        for i, sid in enumerate(ids):
            if sid in self.sponsor_ids:
                grown[i] = self.sponsors[self.sponsor_ids.index(sid)]
            else:
                grown[i]["period"] = NEVER
        self.sponsors, self.sponsor_ids = grown, list(ids)

    def sync_rules(self, rules: RuleSet, today) -> int:
        """Provision what the rules declare and the store lacks; set every
        subscriber's plan, timezone, group and sub-cap from the rules.
        `today(zone)` is the local day number, the activation day of a
        subscriber whose rules give none. Returns how many rows are new."""
        new = 0
        rows = []
        for seed in rules.subscribers:
            row = self.explicit.get(seed.key)
            plan_zone = int(rules.tables.plans[seed.plan]["zone"]) if seed.plan >= 0 else 0
            if row is None:
                row = self.n_subs
                self._grow_subs(row + 1)
                self.n_subs += 1
                anchor = seed.anchor if seed.anchor is not None else today(seed.zone if seed.zone >= 0 else plan_zone)
                self._provision(row, 1, seed.plan, seed.balance, anchor)
                self.explicit[seed.key] = row
                self.labels[row] = seed.label
                new += 1
            else:
                self.profiles.pop(row, None)    # the rules declare a number the API provisioned: theirs now
                if seed.anchor is not None:
                    self.subs[row]["anchor"] = seed.anchor
            for alias in seed.aliases:
                self.explicit[alias] = row
            s = self.subs[row]
            s["plan"], s["zone"], s["pool_cap"] = seed.plan, seed.zone, seed.pool_cap
            s["customer_type"], s["terminal_type"], s["partner"] = seed.attributes
            rows.append((row, seed))
        for row, seed in rows:      # groups, once every member has a row
            self.subs[row]["pool"] = self.explicit[seed.pool] if seed.pool is not None else row
            self.subs[row]["payer"] = self.explicit[seed.payer] if seed.payer is not None else row
        self._explicit_keys = None
        for r in rules.ranges:
            found = [x for x in self.ranges if x[:4] == (r.id_type, r.digits, r.first, r.last)]
            if found:
                base = found[0][4]
                self.subs[base:base + r.size]["plan"] = r.plan
            else:
                base = self.n_subs
                self._grow_subs(base + r.size)
                self._provision(base, r.size, r.plan, r.balance, today(int(rules.tables.plans[r.plan]["zone"])))
                self.n_subs += r.size
                self.ranges.append((r.id_type, r.digits, r.first, r.last, base))
                new += r.size
        return new

    # ------------------------------------------------------------ sessions
    def _grow_sessions(self, need: int) -> None:
        while need > len(self.sessions):
            old = len(self.sessions)
            grown = new_table(SESSION, old * 2)
            grown[:old] = self.sessions
            self.sessions = grown
            self.session_meta.extend([None] * old)
            self.free_sessions[:0] = range(2 * old - 1, old - 1, -1)

    def open_session(self, sid: bytes, host: bytes) -> int:
        """A row for a new session; the caller sets its subscriber (in bulk,
        with `start_sessions`) before the engine sees it."""
        if not self.free_sessions:
            self._grow_sessions(len(self.sessions) + 1)
        row = self.free_sessions.pop()
        self.session_index[sid] = row
        self.session_meta[row] = (sid, host)
        return row

    def start_sessions(self, rows: list[int], subs: list[int]) -> None:
        self.sessions["sub"][rows] = subs
        self.sessions["last_number"][rows] = 0

    def release_session_row(self, row: int) -> None:
        """Forget a session the engine closed (its row's sub is -1)."""
        meta = self.session_meta[row]
        if meta is not None:
            self.session_index.pop(meta[0], None)
            self.session_meta[row] = None
            self.free_sessions.append(row)   # rebuilt after replay, so duplicates there are harmless

    def remember_answers(self, keys: list[bytes], answers: list[bytes], now: float,
                         fps: np.ndarray | None = None) -> None:
        """Keep answers given at `now` for retransmissions, keyed by
        Origin-Host followed by the 4 octets of the End-to-End-Identifier
        (`fps`: their fingerprints, ocs.store.dedup, if the caller has them)."""
        self.dedup.remember(keys, answers, now, fps)

    def answers_for(self, keys: list[bytes], now: float, fps: np.ndarray | None = None) -> list[bytes | None]:
        """`answer_for` of each key, for a batch."""
        return self.dedup.lookup(keys, now, fps)

    def answer_for(self, key: bytes, now: float) -> bytes | None:
        """The answer given lately to a request with this key, if kept (the
        caller checks that it answers the same request)."""
        return self.dedup.lookup([key], now)[0]

    # ------------------------------------------------------------ journal
    def record(self, rules_version: str, now: float, dirty_subs: np.ndarray, dirty_sess: np.ndarray,
               new_sessions: list[NewSession], answers: Answers | tuple[list, list] | list, usage: bytes,
               op: AnyOperation | None = None, sponsors: bool = False, directory: list[DirectoryChange] = (),
               debits: list[Debit] = (), expired: list[ExpiredSession] = (),
               usage_sessions: list[bytes] = ()) -> JournalRecord:
        """The journal record of one batch (or of one operation, `op`): new
        values of every changed row, and the directory changes the
        operation made (`change_directory`). `usage_sessions`: the
        Session-Id of each row of `usage`."""
        self.seq += 1
        ds = _distinct(dirty_subs)
        dx = _distinct(dirty_sess)
        # only what a batch has: each keyword costs a Struct ~0.1 us, and
        # most of these are usually at their defaults
        rare = {}
        if op is not None:
            rare["operation"] = op
        if directory:
            rare["directory"] = list(directory)
        if sponsors:
            rare["sponsors"], rare["sponsor_ids"] = self.sponsors.tobytes(), list(self.sponsor_ids)
        if debits:
            rare["debits"] = list(debits)
        if expired:
            rare["expired"] = list(expired)
        return JournalRecord(
            seq=self.seq, format=FORMAT, rules=rules_version, time=now,
            subscriber_rows=ds.tobytes(), subscribers=_rows_bytes(self.subs, ds),
            session_rows=dx.tobytes(), sessions=_rows_bytes(self.sessions, dx),
            new_sessions=new_sessions, answers=answers if answers.__class__ is Answers else Answers(*answers),
            usage=usage, usage_sessions=usage_sessions or [], **rare)

    def rules_record(self, version: str, now: float) -> JournalRecord:
        """The journal record of installing a rules version: replaying it
        installs the kept version again, at the same time."""
        self.seq += 1
        self.rules_version = version
        return JournalRecord(seq=self.seq, format=FORMAT, rules=version, installed_rules=version, time=now,
                             subscriber_rows=b"", subscribers=b"", session_rows=b"", sessions=b"",
                             new_sessions=[], answers=Answers(), usage=b"")

    @property
    def duplicate_cache_bytes(self) -> int:
        return self.dedup.bytes

    def apply(self, rec: JournalRecord, remember: bool = True) -> None:
        """Re-apply a journal record (recovery); `remember`: its answers
        into the duplicate cache too."""
        if rec.format != FORMAT:
            raise StoreFormatError(f"{self.dir}: journal record {rec.seq} was written by an older version "
                                   f"of ocs; start from an empty data directory")
        self.seq = rec.seq
        if rec.installed_rules:
            if self._on_rules is None:
                raise StoreFormatError(f"{self.dir}: journal record {rec.seq} installs rules "
                                       f"{rec.installed_rules}, and no installer was given")
            self._on_rules(rec.installed_rules, rec.time)
            self.rules_version = rec.installed_rules
        for change in rec.directory:     # first: it may add the rows written below
            self._apply_directory(change)
        for new in rec.new_sessions:
            self._grow_sessions(new.row + 1)
            self.session_index[new.session_id] = new.row
            self.session_meta[new.row] = (new.session_id, new.host)
            self.expired.pop(new.session_id, None)           # a late report revived it
        si = np.frombuffer(rec.subscriber_rows, np.int64)
        _put_rows(self.subs, si, rec.subscribers)
        xi = np.frombuffer(rec.session_rows, np.int64)
        _put_rows(self.sessions, xi, rec.sessions)
        for row in xi[self.sessions[xi]["sub"] < 0]:
            self.release_session_row(int(row))
        if rec.sponsors is not None:
            self.sponsors = np.frombuffer(rec.sponsors, SPONSOR).copy()
            self.sponsor_ids = list(rec.sponsor_ids or ())
        self.keep_debits(rec.debits)
        self.keep_expired(rec.expired)
        if remember and rec.answers.keys:
            self.remember_answers(rec.answers.keys, rec.answers.answers, rec.time)

    @property
    def unavailable(self) -> str | None:
        """Why nothing can be charged now (None: the state here is the
        authority; the cluster store says otherwise while it holds no slots)."""
        return None

    def adopt(self) -> bool:
        """Apply state this store took over since the last call (between
        batches); True if any. A store of one node never takes any."""
        return False

    # where requests go instead of being charged here (the cluster store: the node holding the state)
    relay_target: tuple[str, int] | None = None

    api_target: str | None = None         # ... and the operator API requests go to instead (http://HOST:PORT)

    def advertise(self, address: str, api: str | None = None) -> None:
        """HOST:PORT this node serves Diameter at (and its API's URL), for the
        others of a cluster."""

    def stats(self) -> dict[str, tuple[str, float]]:
        """Figures the store keeps of itself for /metrics: name -> (help, value)."""
        return {}

    # why this process may never write again (the cluster store: another node fenced it out)
    fenced: str | None = None
    # a write is a local append and fsync, quick enough to make on the charging loop when
    # it is idle; the cluster store's goes over the network and may wait without end
    inline_writes: bool = True

    def keep_expired(self, sessions: list[ExpiredSession]) -> None:
        """Sessions supervision released (their record holds them too)."""
        for e in sessions:
            self.expired[e.session_id] = e

    def forget_expired(self, now: float) -> None:
        """Drop what is past the grace (oldest first: kept in expiry order)."""
        while self.expired:
            e = next(iter(self.expired.values()))
            if now - e.t <= self.session_grace:
                break
            del self.expired[e.session_id]

    def expired_session(self, sid: bytes, now: float) -> ExpiredSession | None:
        """The session Tcc released under this Session-Id, within the grace."""
        e = self.expired.get(sid)
        if e is not None and now - e.t > self.session_grace:
            del self.expired[sid]
            return None
        return e

    def keep_debits(self, debits: list[Debit]) -> None:
        """Debits made or refunded (a batch's; its record holds them too)."""
        for d in debits:
            self.debits[d.token] = d


def _put_rows(table: np.ndarray, rows: np.ndarray, data: bytes) -> None:
    """table[rows] = the records in `data`, as raw bytes: fancy assignment
    of structured records costs ~20x a byte copy (replay spent most of its
    time there)."""
    if len(rows):
        width = table.dtype.itemsize
        table.view(np.uint8).reshape(-1, width)[rows] = np.frombuffer(data, np.uint8).reshape(-1, width)


def _distinct(rows) -> np.ndarray:
    """np.unique of row numbers, by sorting: numpy 2's np.unique took four
    times as long for a batch's few hundred mostly distinct rows."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if len(rows) < 2:
        return rows
    keep = np.empty(len(rows), bool)
    keep[0] = True
    np.not_equal(rows[1:], rows[:-1], out=keep[1:])
    return rows[keep]


def _rows_bytes(table: np.ndarray, rows: np.ndarray) -> bytes:
    """The bytes of these rows, as `table[rows].tobytes()` gives them, taken
    as raw rows: fancy indexing on records copies field by field (~0.37 us a
    subscriber row, ten times this)."""
    return table.view(np.uint8).reshape(len(table), table.dtype.itemsize).take(rows, axis=0).tobytes()


def _subscriber_rows(cap: int, filled: int) -> np.ndarray:
    """Room for `cap` subscriber rows, of which the first `filled` are about
    to be overwritten: only the rest is initialized (at 10 million rows,
    initializing what is then overwritten cost a second at start)."""
    subs = np.empty(cap, SUBSCRIBER)
    subs[filled:] = new_subscribers(cap - filled)
    return subs
