"""The cluster store: the state in memory (memory.py), made durable in
PostgreSQL, divided into hash slots leased to nodes (docs/cluster.md).

- A node's lease is its row in `ocs_node`, renewed by a thread of its own
  every quarter of `lease_seconds`; the node charges only while its last
  renewal, counted from when it was sent, is younger than the lease less
  a margin (`unavailable`), so it stops before the database would let
  another node take its slots.
- A slot's owner and epoch are its row in `ocs_slot`; the epoch grows at
  every change of owner. Taking a slot from a node whose lease lapsed
  first moves that node's epoch on (fencing it: it can never write again)
  in the same transaction that moves the slot.
- Every batch is one transaction, committed on the primary and (the
  server's synchronous_standby_names) a synchronous standby before any of
  its answers leaves: the node's row is updated only if its epoch is still
  the one it holds and its lease has not lapsed (that row lock also orders
  the write against any takeover), and each slot's record is inserted only
  where the slot is still this node's at the epoch it holds. Anything less
  rolls back: `Fenced`.
- A commit whose outcome is unknown (the connection lost during COMMIT) is
  resolved by reading the node's row back under a row lock, which waits
  for the lost transaction to end however it ends; it is never guessed.
- A slot is recovered from its snapshot and its records after it; the
  duplicate cache from the recent batch records of every node.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import psycopg

from .dedup import DEFAULT_BYTES, DEFAULT_SECONDS
from .memory import FORMAT, MemoryStore, StoreFormatError
from .errors import Fenced, StoreUnavailable
from .pg import cluster_constants, connect
from ..rules.versions import version_dir
from .records import JournalRecord
from .membership import Membership, margin
from .slots import (BATCH_DECODER, SlotData, SlotRecord, apply_slot, capture, group_heads, pack, slot_of_heads,
                    split, unpack)

log = logging.getLogger("ocs.cluster")


class ClusterStore(Membership, MemoryStore):
    inline_writes = False           # over the network: never on the charging loop
    def __init__(self, dsn: str, node: str, data_dir: str | Path, lease_seconds: float = 2.0,
                 dedup_entries: int = 500_000, dedup_seconds: float = DEFAULT_SECONDS,
                 dedup_bytes: int = DEFAULT_BYTES):
        super().__init__(dedup_entries, dedup_seconds, dedup_bytes)
        self.dsn, self.node, self.dir = dsn, node, Path(data_dir)
        self.lease_seconds = lease_seconds
        self.n_slots = 0
        self.epoch = 0                                   # this node's epoch
        self.owned: dict[int, int] = {}                  # slot -> its epoch, as this node holds it
        self.slot_seq: dict[int, int] = {}               # slot -> its last record
        self.slot_of_row = np.zeros(0, np.int32)
        self.session_slot = np.full(len(self.sessions), -1, np.int32)
        self.fenced: str | None = None
        self._parts: dict[int, dict] = {}                # record seq -> its parts by slot (built on the loop)
        self._taken: list[SlotData] = []                 # slots taken, read, waiting for the loop (adopt)
        self._valid_until = 0.0                          # time.monotonic() the lease lasts until, for us
        self._unresolved: int | None = None              # a batch seq whose commit's outcome is unknown
        self._written = 0                                # record bytes since the last snapshot
        self._writer: psycopg.Connection | None = None
        self._lock = threading.Lock()                    # _taken, owned between the lease thread and the loop
        self._take_lock = threading.Lock()               # one taking of slots at a time (open, the lease thread)
        self._renewed = 0.0                              # time.monotonic() of the last renewal sent
        self._stop = threading.Event()
        self._lease_thread: threading.Thread | None = None
        self._holder: tuple[str, int] | None = None        # the node holding the slots, while this one holds none
        self._holder_api: str | None = None                # ... its operator API
        self.counts = {"renewals": 0, "renewal_failures": 0, "slots_taken": 0, "takeovers": 0, "commits": 0,
                       "commits_unknown": 0, "commits_refused": 0}

    # ------------------------------------------------------------ life
    def open(self, readonly: bool = False, on_rules=None) -> None:
        """Join the cluster: register this node (a new epoch, which fences
        any earlier process of the same name), take the slots nobody holds,
        and read them; `adopt` applies them, once the rules are installed."""
        if readonly:
            raise StoreFormatError("the cluster store is read through a node's API or `ocs cluster status`")
        self.dir.mkdir(parents=True, exist_ok=True)
        conn = connect(self.dsn, autocommit=True, hold=self.lease_seconds)
        try:
            consts = cluster_constants(conn)
            if consts.get("format") != FORMAT:
                raise StoreFormatError(f"the cluster store holds rows of format {consts.get('format')}; this "
                                       f"version reads {FORMAT}")
            self.n_slots = int(consts["slots"])
            sent = time.monotonic()
            with conn.transaction():
                self.epoch, self.seq = conn.execute(
                    "INSERT INTO ocs_node (name, epoch) VALUES (%s, 1) ON CONFLICT (name) DO UPDATE SET "
                    "epoch = ocs_node.epoch + 1, started = now() RETURNING epoch, seq", (self.node,)).fetchone()
                conn.execute("INSERT INTO ocs_lease (node, expires) VALUES (%s, now() + %s * interval '1 second') "
                             "ON CONFLICT (node) DO UPDATE SET expires = excluded.expires",
                             (self.node, self.lease_seconds))
            self._valid_until = sent + self.lease_seconds - margin(self.lease_seconds)
            self._renewed = sent
            # the lease is renewed from now on, while this process takes slots and installs its rules
            self._lease_thread = threading.Thread(target=self._lease_loop, name=f"lease {self.node}", daemon=True)
            self._lease_thread.start()
            self._take(conn)
        finally:
            conn.close()
        log.info("node %s joined the cluster (epoch %d, %d slots): holds %d of them", self.node, self.epoch,
                 self.n_slots, len(self.owned))

    def close(self) -> None:
        """Leave: hand the slots back at once (a survivor need not wait for
        the lease to lapse); the records are all written by now."""
        self._stop.set()
        if self._lease_thread is not None:
            self._lease_thread.join(timeout=self.lease_seconds)
        if self.fenced is None and self.owned:
            try:
                with connect(self.dsn, hold=self.lease_seconds) as conn, conn.transaction():
                    cur = conn.execute("SELECT 1 FROM ocs_node WHERE name = %s AND epoch = %s FOR UPDATE",
                                       (self.node, self.epoch))
                    if cur.fetchone() is not None:
                        conn.execute("UPDATE ocs_lease SET expires = now() WHERE node = %s", (self.node,))
                        conn.execute("UPDATE ocs_slot SET node = NULL WHERE node = %s", (self.node,))
            except (OSError, psycopg.Error) as e:
                log.warning("could not hand the slots back (%s): they return when the lease lapses", e)
        self.owned = {}
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def active_rules(self) -> tuple[str, dict[str, bytes]]:
        """The rules version in force in the cluster, and its files."""
        with connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT version, files FROM ocs_rules WHERE active").fetchone()
        if row is None:
            raise StoreFormatError("the cluster store has no rules: run `ocs cluster init --store DSN --rules DIR`")
        return row[0], msgspec.msgpack.decode(row[1])

    def adopt(self) -> bool:
        """On the loop: apply the slots taken since the last call (their
        rows, sessions, debits, released sessions; answers of every node's
        recent batches into the duplicate cache). True if any."""
        with self._lock:
            taken, self._taken = self._taken, []
        if not taken:
            return False
        found = self.data_rules_version(taken)
        if found and found != self.rules_version:
            # the holder put another rules version in force: this process installs it
            # at its start, before the rows (clustercmd.open_cluster); it stops for that
            self.fenced = (f"the slots taken over are under rules version {found}, this node runs "
                           f"{self.rules_version}: it starts again to install it")
            log.warning("node %s: %s", self.node, self.fenced)
            return False
        self.map_slots()
        for d in taken:
            last = 0
            if d.snapshot is not None:
                self._apply_slot(d.snapshot)
                last = d.snapshot.seq
            for rec in d.records:
                self._apply_slot(rec)
                last = rec.seq
            self.slot_seq[d.slot] = last
        self._recent_answers()
        self.free_sessions = [i for i in range(len(self.session_meta) - 1, -1, -1) if self.session_meta[i] is None]
        log.info("node %s serves %d slots", self.node, len(self.owned))
        return True

    def data_rules_version(self, taken: list[SlotData] | None = None) -> str | None:
        """The rules version the state taken (not applied yet) was written
        under; None if it holds nothing. Every slot changes version in one
        transaction (`rules_record`), so they agree."""
        if taken is None:
            with self._lock:
                taken = list(self._taken)
        last = {(d.records[-1] if d.records else d.snapshot).rules for d in taken if d.records or d.snapshot}
        last.discard("")
        if len(last) > 1:
            raise StoreFormatError(f"the slots hold rows of several rules versions ({', '.join(sorted(last))})")
        return last.pop() if last else None

    def rules_files(self, version: str) -> dict[str, bytes]:
        with connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT files FROM ocs_rules WHERE version = %s", (version,)).fetchone()
        if row is None:
            raise StoreFormatError(f"rules version {version} is not in the cluster store")
        return msgspec.msgpack.decode(row[0])

    def _recent_answers(self) -> None:
        since = time.time() - self.dedup.seconds
        with connect(self.dsn, autocommit=True) as conn:
            for (rec,) in conn.execute("SELECT rec FROM ocs_batch WHERE t > %s ORDER BY t", (since,)):
                r = unpack(rec, BATCH_DECODER)
                if r.answers.keys:
                    self.remember_answers(r.answers.keys, r.answers.answers, r.time)

    def _apply_slot(self, rec: SlotRecord) -> None:
        apply_slot(self, rec)

    def map_slots(self) -> None:
        """Each row's slot, from the groups the rules and the directory make."""
        self.slot_of_row = slot_of_heads(group_heads(self.subs, self.n_subs), self.n_slots)

    # ------------------------------------------------------------ sessions
    def _grow_sessions(self, need: int) -> None:
        super()._grow_sessions(need)
        if len(self.session_slot) < len(self.sessions):
            grown = np.full(len(self.sessions), -1, np.int32)
            grown[:len(self.session_slot)] = self.session_slot
            self.session_slot = grown

    def start_sessions(self, rows: list[int], subs: list[int]) -> None:
        super().start_sessions(rows, subs)
        self.session_slot[rows] = self.slot_of_row[subs]

    def new_row(self, plan: int, balance: int, anchor: int) -> int:
        row = super().new_row(plan, balance, anchor)
        self.slot_of_row = np.append(self.slot_of_row, slot_of_heads(np.array([row]), self.n_slots))
        return row

    # ------------------------------------------------------------ records
    def record(self, *args, **kwargs) -> JournalRecord:
        """The batch's journal record (MemoryStore.record), and (here, on the
        loop, while the session rows still name their sessions) its parts per slot."""
        rec = super().record(*args, **kwargs)
        parts = split(rec, self.slot_of_row, self.session_slot, self.session_meta, self.n_slots)
        for slot, part in parts.items():
            seq = self.slot_seq.get(slot, 0) + 1
            self.slot_seq[slot] = seq
            part["seq"] = seq
        self._parts[rec.seq] = parts
        return rec

    def rules_record(self, version: str, now: float) -> JournalRecord:
        """A rules install: every slot held gets a snapshot under the new
        version, in the same transaction as the record."""
        rec = super().rules_record(version, now)
        kept = version_dir(self.dir, version)
        files = {f.name: f.read_bytes() for f in sorted(kept.glob("*.toml"))} if kept.is_dir() else None
        self._parts[rec.seq] = {"snapshots": self._capture(), "rules": (version, files)}
        return rec

    @property
    def journal_bytes(self) -> int:
        return self._written

    def write(self, *records: JournalRecord) -> int:
        """One transaction for the records, fenced; OSError: none of them is
        durable (the caller tries again with the same records)."""
        if self.fenced is not None:
            raise Fenced(self.fenced)
        if time.monotonic() > self._valid_until:
            raise StoreUnavailable("the lease on the cluster store lapsed; nothing is written until it is renewed")
        conn = self._connection()
        last = records[-1].seq
        if self._unresolved is not None:
            if self._resolve(conn) >= last:
                self._written_ok(records)
                return 0
        slots, seqs, epochs, recs, snapshots = [], [], [], [], []
        for rec in records:
            parts = self._parts[rec.seq]
            if "snapshots" in parts:
                snapshots.append((parts["snapshots"], parts["rules"]))
                continue
            for slot in sorted(parts):
                part = parts[slot]
                slots.append(slot)
                seqs.append(part["seq"])
                epochs.append(self.owned.get(slot, -1))
                recs.append(pack(SlotRecord(**part)))
        batches = [pack(msgspec.structs.replace(
            rec, subscriber_rows=b"", subscribers=b"", session_rows=b"", sessions=b"", new_sessions=[],
            sponsors=None, sponsor_ids=None, directory=[], debits=[], expired=[])) for rec in records]
        try:
            self._fence(conn, last)
            if recs:
                self._insert_held(conn, "ocs_journal (slot, seq, epoch, rec)", "", slots, seqs, epochs, recs,
                                  "written")
            conn.execute("INSERT INTO ocs_batch (node, seq, t, rec) SELECT %b, * FROM unnest(%b::bigint[], "
                         "%b::double precision[], %b::bytea[])",
                         (self.node, [r.seq for r in records], [r.time for r in records], batches))
            for snap, (version, files) in snapshots:
                self._write_snapshots(conn, snap)
                if files is not None:       # the version in force for the cluster from now on
                    conn.execute("INSERT INTO ocs_rules (version, files) VALUES (%s, %s) ON CONFLICT (version) "
                                 "DO NOTHING", (version, msgspec.msgpack.encode(files)))
                    conn.execute("UPDATE ocs_rules SET active = (version = %s)", (version,))
        except psycopg.Error as e:
            self._rollback(conn)
            self.counts["commits_refused"] += 1
            raise StoreUnavailable(f"the cluster store refused the batch ({' '.join(str(e).split())})") from None
        try:
            conn.commit()
        except psycopg.Error as e:
            # COMMIT was sent and no answer came: it may have committed
            self._unresolved = last
            self.counts["commits_unknown"] += 1
            self._drop_writer()
            raise StoreUnavailable(f"the outcome of a commit is unknown ({' '.join(str(e).split())}); it is "
                                   f"read back before anything else is written") from None
        self._written += sum(map(len, recs)) + sum(map(len, batches))
        self.counts["commits"] += 1
        self._written_ok(records)
        return len(records)

    def _insert_held(self, conn: psycopg.Connection, into: str, conflict: str, slots: list[int], seqs: list[int],
                     epochs: list[int], data: list[bytes], what: str) -> None:
        """A row per slot, each inserted only where the slot is still this
        node's at the epoch it holds; fewer rows than slots: fenced."""
        cur = conn.execute(
            f"INSERT INTO {into} SELECT v.slot, v.seq, v.epoch, v.data "
            "FROM unnest(%b::integer[], %b::bigint[], %b::bigint[], %b::bytea[]) AS v(slot, seq, epoch, data) "
            f"JOIN ocs_slot s ON s.slot = v.slot AND s.epoch = v.epoch AND s.node = %b {conflict}",
            (slots, seqs, epochs, data, self.node))
        if cur.rowcount != len(slots):
            conn.rollback()
            self._fenced(f"{len(slots) - cur.rowcount} of the slots {what} are no longer this node's")

    def _written_ok(self, records) -> None:
        self._unresolved = None
        for rec in records:
            self._parts.pop(rec.seq, None)

    def _fence(self, conn: psycopg.Connection, last: int) -> None:
        """Lock this node's row, if it is still this node's at its epoch and
        its lease holds; record the batch seq there."""
        cur = conn.execute("UPDATE ocs_node SET seq = %s WHERE name = %s AND epoch = %s AND EXISTS "
                           "(SELECT 1 FROM ocs_lease WHERE node = %s AND expires > now())",
                           (last, self.node, self.epoch, self.node))
        if cur.rowcount == 1:
            return
        row = conn.execute("SELECT epoch FROM ocs_node WHERE name = %s", (self.node,)).fetchone()
        conn.rollback()
        if row is None or row[0] != self.epoch:
            self._fenced("another node took this node's slots over (its epoch moved on)")
        raise StoreUnavailable("the lease on the cluster store lapsed before the batch was written")

    def _fenced(self, why: str):
        self.fenced = f"fenced out of the cluster: {why}; this process writes nothing more"
        log.critical("node %s %s", self.node, self.fenced)
        raise Fenced(self.fenced)

    def _resolve(self, conn: psycopg.Connection) -> int:
        """The last batch seq the node's row holds, read once every
        transaction that could still change it has ended (the row lock a
        lost COMMIT holds is waited for, never cancelled)."""
        try:
            row = conn.execute("SELECT seq, epoch FROM ocs_node WHERE name = %s FOR UPDATE", (self.node,)).fetchone()
            conn.rollback()
        except psycopg.Error as e:
            self._drop_writer()
            raise StoreUnavailable(f"cannot read back the last commit ({' '.join(str(e).split())})") from None
        if row[1] != self.epoch:
            self._fenced("another node took this node's slots over while a commit's outcome was unknown")
        log.warning("a commit whose outcome was unknown %s", "had been made" if row[0] >= self._unresolved
                    else "had not been made: written again")
        return row[0]

    def _connection(self) -> psycopg.Connection:
        if self._writer is None or self._writer.closed:
            self._writer = connect(self.dsn, hold=self.lease_seconds)
        return self._writer

    def _drop_writer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except psycopg.Error:
                pass
            self._writer = None

    def _rollback(self, conn: psycopg.Connection) -> None:
        try:
            conn.rollback()
        except psycopg.Error:
            self._drop_writer()

    # ------------------------------------------------------------ snapshots
    def _capture(self) -> dict[int, SlotRecord]:
        return capture(self)

    def _write_snapshots(self, conn: psycopg.Connection, snaps: dict[int, SlotRecord]) -> None:
        """Slot snapshots, each only where the slot is still this node's at
        its epoch, and the slot's records they replace dropped."""
        slots = sorted(snaps)
        data = [pack(snaps[s]) for s in slots]
        seqs = [snaps[s].seq for s in slots]
        epochs = [self.owned.get(s, -1) for s in slots]
        self._insert_held(conn, "ocs_snapshot (slot, seq, epoch, data)", "ON CONFLICT (slot) DO UPDATE SET epoch = "
                          "excluded.epoch, seq = excluded.seq, data = excluded.data", slots, seqs, epochs, data,
                          "snapshotted")
        conn.execute("DELETE FROM ocs_journal j USING unnest(%s::integer[], %s::bigint[]) AS v(slot, seq) "
                     "WHERE j.slot = v.slot AND j.seq <= v.seq", (slots, seqs))

    def snapshot(self) -> None:
        job = self.begin_snapshot()
        if job is not None:
            job()

    def begin_snapshot(self):
        """Capture every slot held now; the job writes them (fenced) and
        drops the records they hold."""
        if not self.owned or self.fenced is not None:
            return None
        snaps = self._capture()

        def write() -> None:
            """A transaction per slot: the charging's writes go on meanwhile
            (they lock the node's row, which this does not; a takeover of a
            slot waits for its snapshot, whose slot row this locks)."""
            try:
                with connect(self.dsn, hold=self.lease_seconds) as conn:
                    for slot in sorted(snaps):
                        held = conn.execute("SELECT 1 FROM ocs_slot WHERE slot = %s AND node = %s AND epoch = %s "
                                            "FOR SHARE", (slot, self.node, self.owned.get(slot, -1))).fetchone()
                        if held is None:
                            conn.rollback()
                            self._fenced(f"slot {slot} is no longer this node's")
                        self._write_snapshots(conn, {slot: snaps[slot]})
                        conn.commit()
            except psycopg.Error as e:
                raise StoreUnavailable(f"the snapshot was not written ({' '.join(str(e).split())})") from None
            self._written = 0
        return write

    @property
    def snapshot_unfinished(self) -> bool:
        return False
