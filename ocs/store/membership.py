"""A cluster node's membership (docs/cluster.md): its lease, renewed by a
thread of its own; the slots it takes (free ones, its own, a lapsed node's
after fencing it) and reads for `adopt`; where requests go while it holds
none; what it reports of itself. Part of ClusterStore (cluster.py), which
holds the state this works on."""
from __future__ import annotations

import logging
import time

import psycopg

from .pg import connect, retrying
from .slots import SlotData, unpack

log = logging.getLogger("ocs.cluster")

def margin(lease_seconds: float) -> float:
    """Of a lease, the part a node does not use: a fifth, at least a quarter
    second (clock rates, scheduling, a pause of the process)."""
    return max(0.25, lease_seconds / 5)


class Membership:
    @property
    def unavailable(self) -> str | None:
        """Why this node charges nothing now (None: it charges its slots)."""
        if self.fenced is not None:
            return self.fenced
        if not self.owned:
            return "this node holds no slots (standing by)"
        if time.monotonic() > self._valid_until:
            return "the lease on the cluster store lapsed (PostgreSQL unreachable?)"
        return None

    @property
    def relay_target(self) -> tuple[str, int] | None:
        """While this node holds no slots (and may charge: not fenced, its
        lease holds), the Diameter address of the node that holds them."""
        if self.owned or self.fenced is not None or time.monotonic() > self._valid_until:
            return None
        return self._holder

    @property
    def api_target(self) -> str | None:
        """Like `relay_target`: the holder's operator API (http://HOST:PORT)."""
        return self._holder_api if self.relay_target is not None else None

    def advertise(self, address: str, api: str | None = None) -> None:
        with connect(self.dsn, autocommit=True, hold=self.lease_seconds) as conn:
            conn.execute("UPDATE ocs_node SET diameter = %s, api = %s WHERE name = %s AND epoch = %s",
                         (address, api or "", self.node, self.epoch))

    def _find_holder(self, conn: psycopg.Connection) -> None:
        row = conn.execute("SELECT n.diameter, n.api FROM ocs_slot s JOIN ocs_node n ON n.name = s.node JOIN ocs_lease "
                           "l ON l.node = s.node WHERE l.expires > now() AND s.node <> %s AND n.diameter <> '' "
                           "LIMIT 1", (self.node,)).fetchone()
        holder = api = None
        if row is not None:
            host, _, port = row[0].rpartition(":")
            holder = (host.strip("[]"), int(port))
            api = row[1] or None
        self._holder, self._holder_api = holder, api

    def stats(self) -> dict[str, tuple[str, float]]:
        c = self.counts
        return {
            "cluster_slots_held": ("Hash slots this node holds", len(self.owned)),
            "cluster_node_epoch": ("This node's epoch in the cluster store", self.epoch),
            "cluster_serving": ("1 while this node charges its slots (it holds some, its lease holds, not fenced)",
                                0 if self.unavailable else 1),
            "cluster_lease_renewals_total": ("Lease renewals made", c["renewals"]),
            "cluster_lease_failures_total": ("Lease renewals that failed (PostgreSQL unreachable)",
                                             c["renewal_failures"]),
            "cluster_slots_taken_total": ("Slots this node took (free, its own, or a lapsed node's)", c["slots_taken"]),
            "cluster_takeovers_total": ("Lapsed nodes this node fenced and took slots from", c["takeovers"]),
            "cluster_commits_total": ("Batch transactions committed", c["commits"]),
            "cluster_commits_unknown_total": ("Commits whose outcome was unknown, resolved by reading back",
                                              c["commits_unknown"]),
            "cluster_commits_refused_total": ("Batch transactions PostgreSQL refused or that failed (retried)",
                                              c["commits_refused"]),
        }

    def _take(self, conn: psycopg.Connection) -> None:
        """Take every slot nobody holds: free ones, this node's own (an
        earlier process of it), and those of nodes whose lease lapsed,
        fencing those nodes first. Reads what was taken for `adopt`,
        renewing the lease meanwhile (reading many slots takes a while).
        Once: a node holding slots, or slots not applied yet, takes none."""
        with self._take_lock:
            if not self.owned and not self._taken:
                self._take_free(conn)

    def _take_free(self, conn: psycopg.Connection) -> None:
        def attempt():
            with conn.transaction():
                lapsed = [r[0] for r in conn.execute(
                    "SELECT node FROM ocs_lease WHERE node <> %s AND expires < now() AND node IN "
                    "(SELECT node FROM ocs_slot WHERE node IS NOT NULL) ORDER BY node", (self.node,))]
                # fencing waits for a batch the lapsed node has under way (its row's lock)
                fenced = [r[0] for r in conn.execute(
                    "UPDATE ocs_node SET epoch = epoch + 1 WHERE name = ANY(%s) AND name IN (SELECT node FROM "
                    "ocs_lease WHERE expires < now()) RETURNING name", (lapsed,))] if lapsed else []
                return conn.execute(
                    "UPDATE ocs_slot SET node = %s, epoch = epoch + 1 WHERE node IS NULL OR node = %s "
                    "OR node = ANY(%s) RETURNING slot, epoch", (self.node, self.node, fenced)).fetchall(), fenced
        taken, fenced = retrying(attempt)
        if not taken:
            return
        self.counts["slots_taken"] += len(taken)
        if fenced:
            self.counts["takeovers"] += len(fenced)
            log.warning("node %s took over the slots of %s (their lease lapsed)", self.node, ", ".join(fenced))
        data = []
        for slot, epoch in sorted(taken):
            if time.monotonic() - self._renewed > self.lease_seconds / 4 and not self._renew(conn):
                return
            data.append(self._read_slot(conn, slot, epoch))
        with self._lock:
            self._taken.extend(data)
            for d in data:
                self.owned[d.slot] = d.epoch

    def _read_slot(self, conn: psycopg.Connection, slot: int, epoch: int) -> SlotData:
        row = conn.execute("SELECT seq, data FROM ocs_snapshot WHERE slot = %s", (slot,)).fetchone()
        snap_seq, snap = (row[0], unpack(row[1])) if row else (0, None)
        records = [unpack(r[0]) for r in conn.execute(
            "SELECT rec FROM ocs_journal WHERE slot = %s AND seq > %s ORDER BY seq", (slot, snap_seq))]
        return SlotData(slot, epoch, snap, records)

    def _renew(self, conn: psycopg.Connection) -> bool:
        """Extend the lease, if the node is still this process's (its
        epoch); False once fenced."""
        sent = time.monotonic()
        held = conn.execute("UPDATE ocs_lease SET expires = now() + %s * interval '1 second' "
                            "WHERE node = %s AND (SELECT epoch FROM ocs_node WHERE name = %s) = %s "
                            "RETURNING 1", (self.lease_seconds, self.node, self.node, self.epoch)).fetchone()
        if held is None:
            self.fenced = "fenced out of the cluster: another node took this node's slots over"
            log.critical("node %s %s", self.node, self.fenced)
            return False
        self._valid_until = sent + self.lease_seconds - margin(self.lease_seconds)
        self._renewed = sent
        self.counts["renewals"] += 1
        return True

    def _lease_loop(self) -> None:
        conn = None
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                if conn is None or conn.closed:
                    conn = connect(self.dsn, autocommit=True, timeout=self.lease_seconds, hold=self.lease_seconds)
                if not self._renew(conn):
                    return
                if not self.owned:
                    self._take(conn)
                if not self.owned:
                    self._find_holder(conn)
            except (OSError, psycopg.Error) as e:
                self.counts["renewal_failures"] += 1
                log.warning("node %s cannot renew its lease (%s)", self.node, " ".join(str(e).split()))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
