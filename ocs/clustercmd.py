"""`ocs cluster init`, `ocs cluster status`, and what `ocs serve --store`
does before it serves (docs/cluster.md)."""
from __future__ import annotations

import sys
import time

import msgspec

from .rules.compile import RuleError, RuleSet, load_rules
from .rules.versions import version_dir

DEFAULT_SLOTS = 64


def cmd_cluster_init(args) -> int:
    """Create the schema and the slots, and store the rules as the version
    in force. Again on an initialized cluster: the rules given become a
    version in force (the schema and the slots stay)."""
    from .store import pg
    from .store.memory import FORMAT
    try:
        rules = load_rules(args.rules)
    except RuleError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return 2
    try:
        with pg.connect(args.store) as conn:
            pg.create_schema(conn, args.slots, FORMAT)
            store_rules(conn, rules)
            conn.commit()
    except (OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    print(f"cluster store ready: {args.slots} slots, rules version {rules.version} in force "
          f"({len(rules.subscribers)} subscribers listed, {sum(r.size for r in rules.ranges)} in ranges)")
    return 0


def store_rules(conn, rules: RuleSet) -> None:
    """Keep a rules version in PostgreSQL and put it in force."""
    files = msgspec.msgpack.encode(dict(rules.files))
    conn.execute("INSERT INTO ocs_rules (version, files) VALUES (%s, %s) ON CONFLICT (version) DO NOTHING",
                 (rules.version, files))
    conn.execute("UPDATE ocs_rules SET active = (version = %s)", (rules.version,))


def cmd_cluster_status(args) -> int:
    """Nodes (lease, epoch, last batch), slots by owner, the rules in force."""
    from .store import pg
    try:
        with pg.connect(args.store, autocommit=True) as conn:
            consts = pg.cluster_constants(conn)
            nodes = conn.execute("SELECT name, epoch, seq, expires > now(), extract(epoch FROM expires - now()), "
                                 "diameter, api FROM ocs_node JOIN ocs_lease ON node = name ORDER BY name").fetchall()
            slots = conn.execute("SELECT slot, node, epoch FROM ocs_slot ORDER BY slot").fetchall()
            rules = conn.execute("SELECT version FROM ocs_rules WHERE active").fetchone()
    except (OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    out = {"slots": int(consts["slots"]), "rules": rules[0] if rules else None,
           "nodes": [{"name": n, "epoch": e, "batches": s, "lease": "valid" if ok else "lapsed",
                      "lease_seconds_left": round(float(left), 3), "diameter": d, "api": a,
                      "slots": [slot for slot, owner, _ in slots if owner == n]}
                     for n, e, s, ok, left, d, a in nodes],
           "slot_epochs": {str(slot): {"node": owner, "epoch": epoch} for slot, owner, epoch in slots}}
    unowned = [slot for slot, owner, _ in slots if owner is None]
    out["unowned"] = unowned
    print(msgspec.json.format(msgspec.json.encode(out)).decode())
    return 0


def open_cluster(cfg, log):
    """The cluster store joined, the rules in force installed (kept under
    DATA/rules/VERSION, which becomes `cfg.rules`), the slots this node
    took applied: (store, installer, rules). Raises OSError, RuleError,
    StoreFormatError."""
    from .gy.install import Installer
    from .store.cluster import ClusterStore
    cluster = ClusterStore(cfg.store, cfg.node or cfg.origin_host, cfg.data, lease_seconds=cfg.lease_seconds,
                         dedup_entries=cfg.dedup_entries, dedup_seconds=cfg.dedup_seconds,
                         dedup_bytes=cfg.dedup_mb << 20)
    cluster.session_grace = cfg.session_grace
    installer = Installer(cluster)
    cluster.open()
    version, files = cluster.active_rules()
    found = cluster.data_rules_version()
    if found is not None and found != version:
        # the rows were written under another version: they come back under it, and are
        # carried over to the version in force as a restart with new rules does
        installer.install(_kept(cfg.data, found, cluster.rules_files(found)), time.time())
        installer.adopt()
        rules = _kept(cfg.data, version, files)
        installer.install(rules, time.time())
        cluster.snapshot()          # every slot under the version in force
        log.info("cluster store: rows carried over from rules version %s to %s", found, version)
    else:
        rules = _kept(cfg.data, version, files)
        installer.install(rules, time.time())
        installer.adopt()
    cfg.rules = str(version_dir(cfg.data, version))
    log.info("cluster store: node %s, %s", cluster.node, cluster.unavailable or f"{len(cluster.owned)} slots held")
    return cluster, installer, rules


def _kept(data: str, version: str, files: dict[str, bytes]) -> RuleSet:
    """The cluster's rules version, as files under DATA/rules/VERSION."""
    target = version_dir(data, version)
    if not target.is_dir():
        tmp = target.with_name(f".{version}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (tmp / name).write_bytes(text)
        tmp.rename(target)
    rules = load_rules(target)
    if rules.version != version:
        raise RuleError([f"{target}: its files make version {rules.version}, not {version}"])
    return rules


def add_parsers(sub) -> None:
    c = sub.add_parser("cluster", help="the cluster store on PostgreSQL (docs/cluster.md)")
    cs = c.add_subparsers(dest="cluster_command", required=True)
    init = cs.add_parser("init", help="create the cluster store's tables and slots, and put rules in force",
                         description="Create the tables and the slots in the PostgreSQL database the DSN "
                                     "names, and store the rules directory as the version in force (its "
                                     "subscribers and ranges are every node's directory). Again on an "
                                     "initialized store: the rules given are put in force.")
    init.add_argument("--store", required=True, help="libpq connection string (DSN) of the database")
    init.add_argument("--rules", required=True, help="the rules directory")
    init.add_argument("--slots", type=int, default=DEFAULT_SLOTS,
                      help=f"hash slots the accounts are divided into (default {DEFAULT_SLOTS}; fixed once made)")
    init.set_defaults(func=cmd_cluster_init)
    st = cs.add_parser("status", help="nodes, leases, epochs and slots, as JSON")
    st.add_argument("--store", required=True, help="libpq connection string (DSN) of the database")
    st.set_defaults(func=cmd_cluster_status)

