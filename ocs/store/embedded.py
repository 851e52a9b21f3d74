"""The embedded store: state in numpy arrays, a journal, snapshots.

Recovery is the last snapshot plus every journal record after it. Records
hold the new values of the rows a batch changed (not deltas), so replaying
one twice changes nothing: a `kill -9` at any instant neither loses an
answered debit (its record was fsync'd before the answer left) nor applies
one twice.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import os
import time
import shutil
from pathlib import Path

import msgspec
import numpy as np
from msgspec import UNSET

from ..durable import fsync_path
from ..engine.tables import NEVER
from ..engine.tables import SESSION, SPONSOR, SUBSCRIBER, new_table
from ..rules.compile import RuleSet
from ..subscriber import VALUE_MASK, key_head, key_kind, key_length
from .records import (KEEP_SECONDS, AnyOperation, Answers, Debit, DirectoryChange, ExpiredSession, JournalRecord,
                      NewSession, Profile, decode_debits, decode_expired, decode_profile)
from .dedup import DEFAULT_BYTES, DEFAULT_SECONDS, DuplicateCache
from .journal import Journal, data_end, replay

log = logging.getLogger("ocs.store")
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


# Of snapshots and journal records: a digest of the row layouts, so a data
# directory written with other tables is refused rather than misread.
FORMAT = "3-" + hashlib.sha256(repr((SUBSCRIBER.descr, SESSION.descr, SPONSOR.descr)).encode()).hexdigest()[:8]


class StoreFormatError(Exception):
    pass


def new_subscribers(n: int) -> np.ndarray:
    subs = new_table(SUBSCRIBER, n)
    subs["period"] = NEVER
    return subs


class EmbeddedStore:
    def __init__(self, data_dir: str | Path, fsync: bool = True, dedup_entries: int = 500_000,
                 dedup_seconds: float = DEFAULT_SECONDS, dedup_bytes: int = DEFAULT_BYTES):
        self.dir = Path(data_dir)
        self.fsync = fsync
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
        self.journal: Journal | None = None
        self.rules_version = ""           # the rules version the rows are indexed by
        self.sponsors = np.zeros(0, SPONSOR)      # one account per sponsor contract, in the rules' order
        self.sponsor_ids: list[str] = []
        self.debits: dict[bytes, Debit] = {}     # refundable direct debits by Refund-Information
        self.expired: dict[bytes, ExpiredSession] = {}   # sessions Tcc released, by Session-Id
        self.session_grace = 3600.0               # ... whose late usage is still debited this long
        self._on_rules = None

    # ------------------------------------------------------------ lifecycle
    def open(self, readonly: bool = False, on_rules=None) -> None:
        """Load the snapshot and replay the journal. `readonly` leaves the
        files untouched, for reading beside a running server. A journal
        record of a rules change calls `on_rules(version, time)`, which must
        install that version again (ocs.gy.install)."""
        self._on_rules = on_rules
        if readonly and not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir}: no such data directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        # The duplicate cache is not in the snapshot (it would make every
        # snapshot hundreds of MB): it is rebuilt from the answers of the
        # journal before the snapshot (journal.prev) and of those replayed,
        # the latest that fit it only (`recent`: most of a long journal's
        # answers would be evicted or expired anyway; not fingerprinting them
        # halves a replay)
        recent: collections.deque = collections.deque()
        held = 0
        prev = self.dir / "journal.prev"
        snap = self.dir / "snapshot"
        if (snap / "meta.msgpack").exists():
            self._load_snapshot(snap)
        jpath = self.dir / "journal.log"
        replayed = 0
        for path in (prev, self.dir / "journal.old", jpath):     # journal.old: a snapshot was under way
            if path.exists():
                for rec in _replay(path):
                    if rec.seq > self.seq and path is not prev:
                        self.apply(rec, remember=False)
                        replayed += 1
                    if rec.answers.keys:
                        recent.append((rec.answers, rec.time))
                        held += len(rec.answers.keys)
                        while held - len(recent[0][0].keys) >= self.dedup.entries:
                            held -= len(recent.popleft()[0].keys)
        for answers, t in recent:
            self.remember_answers(answers.keys, answers.answers, t)
        self.free_sessions = [i for i in range(len(self.session_meta) - 1, -1, -1) if self.session_meta[i] is None]
        self.journal = None if readonly else Journal(jpath, self.fsync)
        log.info("store %s: %d subscribers, %d open sessions, %d journal records replayed",
                 self.dir, self.n_subs, len(self.session_index), replayed)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None

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

    @property
    def journal_bytes(self) -> int:
        """How much journal a recovery would replay now."""
        return self.journal.end if self.journal is not None else 0

    def write(self, *records: JournalRecord) -> int:
        """Make records durable (one write, one fsync); safe to call from a
        worker thread while the loop charges the next batch."""
        return self.journal.append(*records)

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

    # ------------------------------------------------------------ snapshots
    def _capture(self, copy: bool = True) -> dict:
        """The state at record `seq`, to write later: a copy of the arrays,
        or (`copy=False`, when nothing changes them while it is written) the
        arrays themselves: at 10 million subscribers the copy is 3.7 GB."""
        take = np.copy if copy else (lambda a: a)
        return {"format": FORMAT, "seq": self.seq, "n_subs": self.n_subs,
                "subs": take(self.subs[:self.n_subs]), "sessions": take(self.sessions),
                "explicit": list(self.explicit.items()), "labels": list(self.labels.items()),
                "ranges": list(self.ranges), "session_meta": list(self.session_meta),
                "profiles": list(self.profiles.items()),     # frozen Structs: msgpack encodes them later
                "retired": sorted(self.retired),
                "rules_version": self.rules_version, "sponsors": self.sponsors.copy(),
                "sponsor_ids": list(self.sponsor_ids),
                # debits past their refund window are left out
                "debits": [d for d in self.debits.values() if d.t >= time.time() - KEEP_SECONDS],
                "expired": [e for e in self.expired.values() if e.t >= time.time() - self.session_grace]}

    def _write_snapshot(self, state: dict) -> None:
        """Write the snapshot beside the current one and swap them in; a
        failure (a full disk) leaves the current one and removes the new one."""
        try:
            self._write_snapshot_files(state)
        except OSError:
            shutil.rmtree(self.dir / "snapshot.tmp", ignore_errors=True)
            raise

    def _write_snapshot_files(self, state: dict) -> None:
        tmp, snap, old = self.dir / "snapshot.tmp", self.dir / "snapshot", self.dir / "snapshot.old"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        np.save(tmp / "subs.npy", state["subs"])
        np.save(tmp / "sessions.npy", state["sessions"])
        np.save(tmp / "sponsors.npy", state["sponsors"])
        meta = {k: v for k, v in state.items() if k not in ("subs", "sessions", "sponsors")}
        (tmp / "meta.msgpack").write_bytes(_enc.encode(meta))
        for f in tmp.iterdir():
            fsync_path(f)
        shutil.rmtree(old, ignore_errors=True)
        if snap.exists():
            snap.rename(old)
        tmp.rename(snap)
        fsync_path(self.dir)
        shutil.rmtree(old, ignore_errors=True)
        log.info("snapshot at journal record %d (%d subscribers, %d open sessions)",
                 state["seq"], state["n_subs"], sum(m is not None for m in state["session_meta"]))

    def snapshot(self) -> None:
        """Write the whole state now, then start an empty journal (start-up,
        shutdown: nothing charges meanwhile)."""
        self._write_snapshot(self._capture(copy=False))
        # Records up to seq are in the snapshot; replay skips them anyway, so
        # a crash before the journals are reset is harmless. The newest
        # journal is kept as journal.prev for the answers it holds.
        old, log_, prev = self.dir / "journal.old", self.dir / "journal.log", self.dir / "journal.prev"
        if self.journal is not None:
            self.journal.close()
            if self.journal.end:
                os.replace(log_, prev)
            elif old.exists():
                os.replace(old, prev)
            log_.unlink(missing_ok=True)
            self.journal = Journal(log_, self.fsync)
        old.unlink(missing_ok=True)
        fsync_path(self.dir)

    @property
    def snapshot_unfinished(self) -> bool:
        """A snapshot was being written when the server stopped: take one
        before serving, or none could be taken while serving."""
        return (self.dir / "journal.old").exists()

    def begin_snapshot(self):
        """Snapshot while serving: capture the state, move the journal aside
        to journal.old and start a new one, and return the job that writes
        the snapshot and then drops journal.old - for a worker thread, so the
        charging does not stop. Recovery replays journal.old, then
        journal.log, past the snapshot's record. None if the previous
        snapshot is still being written."""
        old_journal = self.dir / "journal.old"
        if old_journal.exists() or self.journal is None:
            return None
        state = self._capture()
        self.journal.close()
        os.replace(self.dir / "journal.log", old_journal)
        self.journal = Journal(self.dir / "journal.log", self.fsync)
        fsync_path(self.dir)

        def write() -> None:
            self._write_snapshot(state)
            os.replace(old_journal, self.dir / "journal.prev")
            fsync_path(self.dir)
        return write

    def _load_snapshot(self, snap: Path) -> None:
        meta = _dec.decode((snap / "meta.msgpack").read_bytes())
        self.seq = meta["seq"]
        if meta.get("format") != FORMAT:
            raise StoreFormatError(f"{snap}: written with other tables (format {meta.get('format', 1)}, "
                                   f"this version reads {FORMAT}); start from an empty data directory")
        self.n_subs = meta["n_subs"]
        self.subs = _read_subscribers(snap / "subs.npy", self.n_subs)
        self.explicit = {k: v for k, v in meta["explicit"]}
        self._explicit_keys = None
        self.labels = {k: v for k, v in meta["labels"]}
        self.ranges = [tuple(r) for r in meta["ranges"]]
        self.profiles = {row: decode_profile(p) for row, p in meta.get("profiles", ())}
        self.retired = set(meta.get("retired", ()))
        self.rules_version = meta.get("rules_version", "")
        self.sponsors = _load_table(snap / "sponsors.npy", SPONSOR)
        self.sponsor_ids = list(meta["sponsor_ids"])
        self.debits = {d.token: d for d in decode_debits(meta.get("debits", ()))}
        self.expired = {e.session_id: e for e in decode_expired(meta.get("expired", ()))}
        self.sessions = _load_table(snap / "sessions.npy", SESSION)
        self.session_meta = [tuple(m) if m is not None else None for m in meta["session_meta"]]
        self.session_index = {m[0]: i for i, m in enumerate(self.session_meta) if m is not None}


def _replay(path: Path):
    """The journal's records, typed; one this version cannot read is a
    StoreFormatError, like a record of other row layouts."""
    try:
        yield from replay(path, JournalRecord)
    except msgspec.ValidationError as e:
        raise StoreFormatError(f"{path}: a journal record this version cannot read ({e}); "
                               f"start from an empty data directory") from None


def _load_table(path: Path, dtype: np.dtype) -> np.ndarray:
    """A table saved with np.save, as `dtype` itself: np.load gives an equal
    dtype without the aligned-struct mark, which numba types apart, so the
    first batch after a restart compiled the charging kernel again, on the
    loop (a minute with numba's cache cold)."""
    table = np.load(path)
    if table.dtype != dtype:
        raise StoreFormatError(f"{path}: holds rows of another layout; start from an empty data directory")
    return table.view(dtype)


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


def _read_subscribers(path: Path, n: int) -> np.ndarray:
    """An .npy file of `n` subscriber rows, read straight into a table with
    some room to grow: one pass over the data (np.load and a copy into a
    larger table were three, and twice the memory)."""
    with open(path, "rb", buffering=0) as f:      # unbuffered: BufferedReader took 10x longer here
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, descr = read_header(f)
        if descr != SUBSCRIBER or shape != (n,) or fortran:
            raise StoreFormatError(f"{path}: holds {shape} rows of another layout; "
                                   f"start from an empty data directory")
        rows = _subscriber_rows(max(n + n // 64, 1024), n)
        view = memoryview(rows[:n].view(np.uint8))
        while view:
            got = f.readinto(view)
            if not got:
                raise StoreFormatError(f"{path}: ends after {n - len(view) // SUBSCRIBER.itemsize} of {n} rows")
            view = view[got:]
    return rows


START_MARGIN = 16 << 20       # journal, usage records and rules versions written at a start


def start_room(data_dir: str | Path) -> tuple[int, int]:
    """(octets free in the data directory, octets a start needs there): a
    start may write a snapshot as large as the one there (after a rules
    change or an interrupted snapshot), and some journal; without room it
    would stop half way, so `ocs serve` says so first (docs/running.md)."""
    d = Path(data_dir)
    while not d.exists():
        d = d.parent
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize
    snap = Path(data_dir) / "snapshot"
    size = sum(f.stat().st_size for f in snap.iterdir()) if snap.is_dir() else 0
    log_ = Path(data_dir) / "journal.log"
    if log_.exists():           # its preallocated rest is given back when it is opened
        free += max(log_.stat().st_size - data_end(log_), 0)
    return free, size + START_MARGIN

