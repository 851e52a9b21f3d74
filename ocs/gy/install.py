"""Installing a rules version into the store: at start, on reload, on replay.

It lives in gy, beside the other work done on the store between batches
(operations.py, provisioning.py), because it joins three packages below it:
the rules (the version, `versions.migrate`), the store (its rows and the
API's profiles) and the engine (holds recounted). The store calls it back
through `Store.open(on_rules=...)` when replay meets an install, so
neither the rules nor the store import it.

Installing is deterministic given the state, the version and the time, so a
journal record "version V installed at T" replays to the same state: the
rows are carried over from the version before (`versions.migrate`), what
the rules newly declare is provisioned (`sync_rules`), and the held
amounts are recounted from the open sessions (a member may have changed
pool or payer). Subscribers provisioned through the API keep what the
operator set: their profiles are resolved against the new version.
"""
from __future__ import annotations

from ..engine import kernel
from ..rules.compile import RuleError, RuleSet
from ..rules.versions import keep, load_kept, migrate
from ..store import profiles
from ..store.interface import Store


class Installer:
    def __init__(self, store: Store):
        self.store = store
        self._kept: dict[str, RuleSet] = {}

    def ruleset(self, version: str) -> RuleSet:
        if version not in self._kept:
            self._kept[version] = load_kept(self.store.dir, version)
        return self._kept[version]

    def install(self, rules: RuleSet, now: float) -> int:
        """Make `rules` the rules the rows are indexed by. Returns how many
        subscribers were provisioned. Raises RuleError, changing nothing,
        when the rows cannot be carried over."""
        store = self.store
        keep(store.dir, rules)
        self._kept[rules.version] = rules
        rules.set_clock(now)
        before = store.rules_version
        conflicts = profiles.conflicts(store, rules)
        if conflicts:
            raise RuleError(conflicts)
        if before and before != rules.version:
            try:
                old = self.ruleset(before)
            except RuleError:
                if store.n_subs:
                    raise
                old = None
            if old is not None:
                migrate(store.subs[:store.n_subs], store.sessions, old, rules, store.retired)
        new = store.sync_rules(rules, rules.today)
        profiles.resolve(store, rules, now)
        store.subs["period_day"][:store.n_subs] = -1     # plans and timezones may have changed: look again
        store.sync_sponsors([sp.id for sp in rules.sponsors])
        rules.resolve(store.lookup)
        kernel.rebuild_reservations(store.subs, store.sessions, store.sponsors, store.n_subs)
        store.rules_version = rules.version
        return new

    def adopt(self) -> bool:
        """State the store took over (the cluster store: slots another node
        held) into the rows, between batches; the holds on shared balances
        recounted from the sessions it brought. True if there was any."""
        store = self.store
        if not store.adopt():
            return False
        kernel.rebuild_reservations(store.subs, store.sessions, store.sponsors, store.n_subs)
        return True

    def replay(self, version: str, t: float) -> None:
        """A journal record installed `version` at time `t`: do it again."""
        self.install(self.ruleset(version), t)
