"""The embedded store: the state in memory (memory.py), made durable in a
journal file, with snapshots.

Recovery is the last snapshot plus every journal record after it. Records
hold the new values of the rows a batch changed (not deltas), so replaying
one twice changes nothing: a `kill -9` at any instant neither loses an
answered debit (its record was fsync'd before the answer left) nor applies
one twice.
"""
from __future__ import annotations

import collections
import logging
import os
import time
import shutil
from pathlib import Path

import msgspec
import numpy as np

from ..durable import fsync_path
from ..engine.tables import SESSION, SPONSOR, SUBSCRIBER
from .records import KEEP_SECONDS, JournalRecord, decode_debits, decode_expired, decode_profile
from .dedup import DEFAULT_BYTES, DEFAULT_SECONDS
from .journal import Journal, data_end, replay
from .memory import FORMAT, MemoryStore, StoreFormatError, _subscriber_rows

log = logging.getLogger("ocs.store")
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


class EmbeddedStore(MemoryStore):
    def __init__(self, data_dir: str | Path, fsync: bool = True, dedup_entries: int = 500_000,
                 dedup_seconds: float = DEFAULT_SECONDS, dedup_bytes: int = DEFAULT_BYTES):
        super().__init__(dedup_entries, dedup_seconds, dedup_bytes)
        self.dir = Path(data_dir)
        self.fsync = fsync
        self.journal: Journal | None = None

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
    @property
    def journal_bytes(self) -> int:
        """How much journal a recovery would replay now."""
        return self.journal.end if self.journal is not None else 0

    def write(self, *records: JournalRecord) -> int:
        """Make records durable (one write, one fsync); safe to call from a
        worker thread while the loop charges the next batch."""
        return self.journal.append(*records)
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
