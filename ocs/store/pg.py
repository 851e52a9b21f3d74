"""The cluster store's tables in PostgreSQL, and the statements on them
(docs/cluster.md gives the layout and why).

Only the PostgreSQL protocol and a portable subset: no advisory locks, no
LISTEN/NOTIFY, no triggers or functions; row locks and conditional UPDATEs
are the only coordination; keys are sorted within a statement, and
serialization failures and deadlocks (40001, 40P01) are retried.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import psycopg

from .errors import StoreUnavailable

SCHEMA_VERSION = "1"

SCHEMA = [
    # the cluster's constants: schema version, number of slots, row format
    """CREATE TABLE IF NOT EXISTS ocs_cluster (
        name text PRIMARY KEY,
        value text NOT NULL)""",
    # nodes: `epoch` grows at each start of the node and whenever another node fences it
    # out; `seq` is its last batch. Every batch locks its node's row: a takeover waits
    # for the batch under way, and the batches after it find the epoch moved on
    """CREATE TABLE IF NOT EXISTS ocs_node (
        name text PRIMARY KEY,
        epoch bigint NOT NULL,
        seq bigint NOT NULL DEFAULT 0,
        diameter text NOT NULL DEFAULT '',
        api text NOT NULL DEFAULT '',
        started timestamptz NOT NULL DEFAULT now())""",
    # a node's lease: until `expires` (the database's clock); renewed apart from ocs_node,
    # so a long transaction holding the node's row never delays a renewal
    """CREATE TABLE IF NOT EXISTS ocs_lease (
        node text PRIMARY KEY,
        expires timestamptz NOT NULL)""",
    # slots: the owner and the slot's epoch, which grows at every change of owner
    """CREATE TABLE IF NOT EXISTS ocs_slot (
        slot integer PRIMARY KEY,
        node text,
        epoch bigint NOT NULL DEFAULT 0,
        seq bigint NOT NULL DEFAULT 0)""",
    # each slot's records after its snapshot (slots.SlotRecord, msgpack)
    """CREATE TABLE IF NOT EXISTS ocs_journal (
        slot integer NOT NULL,
        seq bigint NOT NULL,
        epoch bigint NOT NULL,
        rec bytea NOT NULL,
        PRIMARY KEY (slot, seq))""",
    """CREATE TABLE IF NOT EXISTS ocs_snapshot (
        slot integer PRIMARY KEY,
        epoch bigint NOT NULL,
        seq bigint NOT NULL,
        data bytea NOT NULL)""",
    # each node's batches: answers (the duplicate cache), usage rows, operations
    """CREATE TABLE IF NOT EXISTS ocs_batch (
        node text NOT NULL,
        seq bigint NOT NULL,
        t double precision NOT NULL,
        rec bytea NOT NULL,
        PRIMARY KEY (node, seq))""",
    # rules versions: the files of each, and the one in force
    """CREATE TABLE IF NOT EXISTS ocs_rules (
        version text PRIMARY KEY,
        files bytea NOT NULL,
        created timestamptz NOT NULL DEFAULT now(),
        active boolean NOT NULL DEFAULT false)""",
]

RETRY_CODES = {"40001", "40P01"}     # serialization failure, deadlock detected

T = TypeVar("T")


def connect(dsn: str, *, autocommit: bool = False, timeout: float = 5.0,
            hold: float | None = None) -> psycopg.Connection:
    """A connection whose loss is noticed: TCP keepalives after a second
    idle (a host gone without a word leaves no reset), unless the DSN sets
    its own. `hold`: seconds a transaction of this session may sit idle
    holding its locks (a node cut off in the middle of one would otherwise
    keep its row locked, and every takeover waiting) and may wait for a
    lock. No statement timeout: a commit waiting for the synchronous standby
    is never cancelled (it would commit locally, unreplicated)."""
    keep = {k: v for k, v in (("keepalives", 1), ("keepalives_idle", 1), ("keepalives_interval", 1),
                              ("keepalives_count", 3)) if k not in dsn}
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=max(1, int(timeout)), **keep)
    except psycopg.Error as e:
        raise StoreUnavailable(f"cannot connect to the cluster store ({_one_line(e)})") from None
    if hold is not None:
        ms = max(1, int(hold * 1000))
        try:
            conn.execute(f"SET idle_in_transaction_session_timeout = {ms}")
            conn.execute(f"SET lock_timeout = {ms}")
            if not autocommit:
                conn.commit()
        except psycopg.Error as e:
            conn.close()
            raise StoreUnavailable(f"cannot set up a session on the cluster store ({_one_line(e)})") from None
    return conn


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def retrying(fn: Callable[[], T], attempts: int = 8) -> T:
    """fn() again on serialization failures and deadlocks (with backoff)."""
    for i in range(attempts):
        try:
            return fn()
        except psycopg.errors.Error as e:
            if e.sqlstate not in RETRY_CODES or i == attempts - 1:
                raise
            time.sleep(0.005 * (2 ** i))
    raise AssertionError("unreachable")


def create_schema(conn: psycopg.Connection, n_slots: int, row_format: str) -> None:
    """Create the tables and the slots (idempotent: an existing cluster with
    the same constants is left as it is; other constants are refused)."""
    with conn.transaction():
        for statement in SCHEMA:
            conn.execute(statement)
        have = dict(conn.execute("SELECT name, value FROM ocs_cluster").fetchall())
        want = {"schema": SCHEMA_VERSION, "slots": str(n_slots), "format": row_format}
        if have:
            differ = [f"{k} is {have.get(k)!r}, not {v!r}" for k, v in want.items() if have.get(k) != v]
            if differ:
                raise ValueError("the cluster store was initialized otherwise: " + "; ".join(differ))
            return
        conn.execute("INSERT INTO ocs_cluster (name, value) SELECT * FROM unnest(%s::text[], %s::text[])",
                     (list(want), list(want.values())))
        conn.execute("INSERT INTO ocs_slot (slot) SELECT generate_series(0, %s)", (n_slots,))   # + sponsors' slot


def cluster_constants(conn: psycopg.Connection) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT name, value FROM ocs_cluster").fetchall())
    except psycopg.errors.UndefinedTable:
        raise ValueError("the cluster store has no schema: run `ocs cluster init --store DSN --rules DIR` "
                         "first") from None
