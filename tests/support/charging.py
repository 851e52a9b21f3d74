"""The server's single writer without the network: a store opened as `ocs
serve` opens it, the Gy application charging real CCR bytes, operations
run and journaled the way the charging loop does, rules reloaded the way a
SIGHUP does. `crash()` drops everything in memory and recovers from the
data directory, as after a `kill -9`."""
from __future__ import annotations

import time
from pathlib import Path

from diameter.message import Message

from ocs.diameter.peer import LocalIdentity
from ocs.gy.app import CreditControlApplication
from ocs.gy.install import Installer
from ocs.rules.compile import load_rules
from ocs.store.embedded import EmbeddedStore
from ocs.store.views import subscriber_view
from ocs.subscriber import E164, subscriber_key

from .rawclient import build_ccr, mscc_values


class Charging:
    def __init__(self, data: Path, rules_dir: Path, cluster: tuple[str, str] | None = None):
        """`cluster`: (DSN, node name) of a cluster store node (the rules are
        the cluster's, as `ocs serve --store` takes them); else the
        embedded store in `data`."""
        self.data = Path(data)
        self.rules_dir = Path(rules_dir)
        self.cluster = cluster
        if cluster is not None:         # joined as `ocs serve --store` joins
            import logging
            from ocs.clustercmd import open_cluster
            from ocs.config import Config
            cfg = Config(store=cluster[0], node=cluster[1], data=str(self.data), lease_seconds=2.0)
            self.store, self.installer, self.rules = open_cluster(cfg, logging.getLogger("tests"))
        else:
            self.store = EmbeddedStore(self.data, fsync=False)
            self.installer = Installer(self.store)
            self.store.open(on_rules=self.installer.replay)
            was = self.store.rules_version
            self.rules = load_rules(self.rules_dir)
            new = self.installer.install(self.rules, time.time())
            if new or was != self.rules.version or self.store.snapshot_unfinished:
                self.store.snapshot()           # as `ocs serve` does before serving
        self.app = CreditControlApplication(self.store, self.rules,
                                            LocalIdentity(origin_host="ocs.test", origin_realm="localdomain"))

    def run(self, op, *args, **kwargs):
        """op(store, rules, *args, now, **kwargs) -> Done, journaled as the
        charging loop does; returns the Done."""
        done = op(self.store, self.rules, *args, time.time(), **kwargs)
        if done.record is not None:
            self.store.write(done.record)
        return done

    def batch(self, *requests, now: float | None = None) -> list[Message]:
        """Requests (python-diameter messages) charged as one batch and
        journaled, as the charging loop does; their answers, in order."""
        result = self.app.process([r.as_bytes() for r in requests], now or time.time())
        if result.record is not None:
            self.store.write(result.record)
        return [Message.from_bytes(a) for a in result.answers]

    def ccr(self, sid: str, rtype: int, number: int, msisdn: str | None, msccs: list[dict]) -> Message:
        """One CCR charged as a batch of one; the answer."""
        return self.batch(build_ccr("pgw.test", sid, rtype, number, msisdn, msccs))[0]

    def units(self, *args) -> dict:
        """`ccr`, and the MSCC values of its answer by rating group."""
        return mscc_values(self.ccr(*args))

    def reload(self, rules_dir: Path) -> None:
        """Install another rules version between batches (raises RuleError,
        changing nothing, when it is refused)."""
        rules = load_rules(rules_dir)
        now = time.time()
        self.installer.install(rules, now)
        self.store.write(self.store.rules_record(rules.version, now))
        self.rules_dir, self.rules = Path(rules_dir), rules
        self.app.set_rules(rules)

    def row(self, msisdn: str) -> int:
        return self.store.lookup(subscriber_key(E164, msisdn))

    def view(self, msisdn: str) -> dict:
        row = self.row(msisdn)
        assert row >= 0, f"no subscriber {msisdn}"
        return subscriber_view(self.store, self.rules, row, time.time())

    def crash(self) -> "Charging":
        """Everything in memory is lost; recover from the data directory
        (a cluster node: the same node starts again and takes its slots
        back, without waiting for its lease: a new epoch fences the old)."""
        if self.cluster is not None:
            self.store._stop.set()          # the lease thread dies with the process
        else:
            self.store.close()
        return Charging(self.data, self.rules_dir, self.cluster)

    def restart(self) -> "Charging":
        """A clean stop (a snapshot) and a start."""
        self.store.snapshot()
        self.store.close()
        return Charging(self.data, self.rules_dir, self.cluster)
