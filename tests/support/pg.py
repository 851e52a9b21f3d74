"""A real PostgreSQL 15 primary and a synchronous standby, in temporary
directories, on free ports, for the cluster store's tests.

Debian's binaries (/usr/lib/postgresql/15/bin, package postgresql-15).
PostgreSQL refuses to run as root, and CI runs the tests as root: then the
servers run as the `postgres` user the package creates, in directories
given to it. The layout is the one docs/cluster.md gives an operator:
the standby made by pg_basebackup, streaming, named in the primary's
synchronous_standby_names = 'ANY 1 (standby1)' with synchronous_commit = on,
so a commit returns only once the standby has flushed it.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> tuple[list[str], int | None, int | None]:
    """How to run PostgreSQL's programs: as ourselves, or (root) as postgres."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root and there is no `postgres` user to run PostgreSQL as "
                           "(Debian package postgresql-15 creates it; `make install`)") from None
    return ["runuser", "-u", "postgres", "--"], pw.pw_uid, pw.pw_gid


class PgServer:
    def __init__(self, data: Path, port: int, log: Path):
        self.data, self.port, self.log = data, port, log
        self.prefix, self.uid, self.gid = _as_user()

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        out = subprocess.run(self.prefix + [str(BIN / args[0]), *args[1:]], timeout=timeout,
                             capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"{args[0]} exited with {out.returncode}: {out.stderr.strip()}")
        return out

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def kill(self) -> None:
        """kill -9 of the postmaster (its children follow it)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 9)

    def promote(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=ocs dbname=ocs"

    def sql(self, query: str) -> str:
        out = subprocess.run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", self.dsn, "-c", query], check=True,
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip()


class PgPair:
    """A primary and its synchronous standby, in a new directory under
    `parent` (default: the system's temporary directory, which the postgres
    user can reach; pytest's, under root's 0700 home for it, it cannot)."""

    def __init__(self, parent: Path | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="ocs-pg-", dir=parent))
        self.primary = PgServer(self.root / "primary", free_port(), self.root / "primary.log")
        self.standby = PgServer(self.root / "standby", free_port(), self.root / "standby.log")
        if self.primary.uid is not None:
            os.chown(self.root, self.primary.uid, self.primary.gid)

    @property
    def dsn(self) -> str:
        """Both hosts, the writable one wins: a promoted standby is found."""
        return (f"host=127.0.0.1,127.0.0.1 port={self.primary.port},{self.standby.port} user=ocs dbname=ocs "
                f"target_session_attrs=read-write connect_timeout=2")

    def start(self) -> "PgPair":
        p, s = self.primary, self.standby
        if not shutil.which(str(BIN / "initdb")):
            raise RuntimeError(f"{BIN}/initdb not found (Debian package postgresql-15; `make install`)")
        p.run("initdb", "-D", str(p.data), "-U", "ocs", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(p.data / "postgresql.conf", "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1'
port = {p.port}
unix_socket_directories = '{self.root}'
wal_level = replica
max_wal_senders = 8
wal_keep_size = '256MB'
synchronous_commit = on
shared_buffers = '128MB'
max_connections = 60
wal_log_hints = on
""")
        with open(p.data / "pg_hba.conf", "a") as f:
            f.write("host replication ocs 127.0.0.1/32 trust\n")
        p.start()
        p.run("createdb", "-h", "127.0.0.1", "-p", str(p.port), "-U", "ocs", "ocs")
        p.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(p.port), "-U", "ocs", "-D", str(s.data),
              "--checkpoint=fast", "--no-sync", "-X", "stream")
        (s.data / "standby.signal").touch()
        if s.uid is not None:
            os.chown(s.data / "standby.signal", s.uid, s.gid)
        with open(s.data / "postgresql.conf", "a") as f:
            f.write(f"\nport = {s.port}\nprimary_conninfo = 'host=127.0.0.1 port={p.port} user=ocs "
                    f"application_name=standby1'\n")
        s.start()
        # only now: with no standby a commit would wait for one (createdb above would hang)
        p.sql("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (standby1)'")
        p.sql("SELECT pg_reload_conf()")
        self.wait_synchronous()
        return self

    def database(self, name: str) -> str:
        """A new empty database on the pair; its DSN (both hosts)."""
        self.primary.sql(f"CREATE DATABASE {name}")
        return self.dsn.replace("dbname=ocs", f"dbname={name}")

    def wait_synchronous(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.primary.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state IN "
                                "('sync', 'quorum') AND state = 'streaming'") == "1":
                return
            time.sleep(0.1)
        raise RuntimeError("the standby did not become synchronous")

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            if (server.data / "postmaster.pid").exists():
                server.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
