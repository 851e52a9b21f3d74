"""The `ocs` command: serve, rules check, subscriber show."""
from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from pathlib import Path

from .config import PeerPolicy, load_config, split_hostport
from .rules.compile import E164, IMSI, RuleError, load_rules, subscriber_key


def _load_rules_or_exit(directory: str):
    try:
        return load_rules(directory)
    except RuleError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        raise SystemExit(2)


def warm_up(rules) -> None:
    """Compile the kernels (or load them from numba's on-disk cache) before
    the first connection is accepted."""
    import numpy as np
    from .engine import kernel
    from .engine.tables import MSCC, REQUEST, SESSION, SPONSOR, SUBSCRIBER, new_table
    subs, sessions, spons = new_table(SUBSCRIBER, 1), new_table(SESSION, 1), np.zeros(1, SPONSOR)
    kernel.charge_batch(np.zeros(0, REQUEST), np.zeros(0, MSCC), subs, sessions, spons, rules.tables, 0.0)
    kernel.expire_sessions(subs, sessions, spons, 0.0, 1)
    kernel.rebuild_reservations(subs, sessions, spons, 0)
    from .diameter import fastcca, fastccr
    buf, frames, msccs, _ = fastccr.decode_batch([bytes(20)], MSCC)
    fastcca.encode_batch(buf, frames, np.zeros(1, REQUEST), msccs, np.zeros(1, np.int64), b"", 0)


def cmd_serve(args) -> int:
    import trio
    from .diameter import constants as c
    from .diameter.peer import LocalIdentity
    from .gy.app import CreditControlApplication
    from .net.server import Server
    from .notify import Notifier, load_sink
    from .usage import UsageLog
    from .rules.install import Installer
    from .store.embedded import EmbeddedStore, StoreFormatError

    cfg = load_config(args.config)
    for name in ("listen", "data", "rules", "origin_host", "origin_realm", "log_level", "api"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(cfg, name, value)
    if args.no_fsync:
        cfg.fsync = False
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("ocs")
    started = time.monotonic()
    rules = _load_rules_or_exit(cfg.rules)
    store = EmbeddedStore(cfg.data, fsync=cfg.fsync, dedup_entries=cfg.dedup_entries)
    installer = Installer(store)
    try:
        store.open(on_rules=installer.replay)
        was = store.rules_version
        new = installer.install(rules, time.time())
    except (RuleError, StoreFormatError) as e:
        print(e, file=sys.stderr)
        return 2
    # usage records the journal holds beyond the last one written (before a
    # snapshot retires that journal)
    usage = UsageLog(Path(cfg.data) / "usage", installer.ruleset, store.label,
                     lambda row: int(store.subs[row]["plan"]))
    usage.catch_up([Path(cfg.data) / n for n in ("journal.prev", "journal.old", "journal.log")])
    if new or was != rules.version or store.snapshot_unfinished:
        store.snapshot()
    warm_up(rules)
    try:
        sink = load_sink(cfg.notification_sink) if cfg.notification_sink else None
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    notifier = Notifier(cfg.notifications or Path(cfg.data) / "notifications.jsonl", sink)
    identity = LocalIdentity(origin_host=cfg.origin_host, origin_realm=cfg.origin_realm,
                             host_ip_addresses=tuple(cfg.host_ip_addresses), vendor_id=cfg.vendor_id,
                             product_name=cfg.product_name)
    ccfh = {"TERMINATE": c.CCFH_TERMINATE, "CONTINUE": c.CCFH_CONTINUE,
            "RETRY_AND_TERMINATE": c.CCFH_RETRY_AND_TERMINATE}[cfg.failure_handling]
    app = CreditControlApplication(store, rules, identity, ccfh)
    server = Server(cfg, app, store, identity, PeerPolicy(cfg.peers), installer, notifier, usage)
    host, port = split_hostport(cfg.listen)
    log.info("rules %s version %s; %d subscribers; ready in %.2f s",
             cfg.rules, rules.version, store.n_subs, time.monotonic() - started)
    # Charging makes almost no reference cycles; the collector's passes over
    # the large, long-lived state cost ~13% of throughput and the tail latency.
    # Keep what startup built out of its reach and collect rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)
    trio.run(server.run, host, port)
    return 0


def cmd_rules_check(args) -> int:
    rules = _load_rules_or_exit(args.dir)
    n_range = sum(r.size for r in rules.ranges)
    print(f"{args.dir}: OK, version {rules.version}: {len(rules.plans)} plans, "
          f"{len(rules.subscribers)} subscribers, {len(rules.ranges)} ranges ({n_range} subscribers)")
    return 0


def _open_readonly(args):
    """The store as it is on disk (also beside a running server), and the
    rules its rows are indexed by: the kept version, else the directory's.
    (None, None) after printing why not."""
    from .rules.install import Installer
    from .store.embedded import EmbeddedStore, StoreFormatError
    cfg = load_config(args.config)
    store = EmbeddedStore(args.data or cfg.data)
    installer = Installer(store)
    try:
        store.open(readonly=True, on_rules=installer.replay)
        rules = installer.ruleset(store.rules_version) if store.rules_version else \
            _load_rules_or_exit(args.rules or cfg.rules)
    except (FileNotFoundError, RuleError, StoreFormatError) as e:
        print(e, file=sys.stderr)
        return None, None
    return store, rules


def cmd_subscriber_show(args) -> int:
    from .store.views import subscriber_view
    store, rules = _open_readonly(args)
    if store is None:
        return 1
    kind = IMSI if args.imsi else E164
    views = []
    for ident in args.id:
        if not ident.isdigit() or len(ident) > 15:
            print(f"{ident}: not a subscriber number (1 to 15 digits)", file=sys.stderr)
            return 1
        row = store.lookup(subscriber_key(kind, ident))
        if row < 0:
            print(f"{ident}: no such subscriber in {store.dir}", file=sys.stderr)
            return 1
        views.append(subscriber_view(store, rules, row, time.time()))
    print(json.dumps(views[0] if len(views) == 1 else views, indent=2))
    return 0


def cmd_sponsor_report(args) -> int:
    from .settlement import SettlementError, as_csv, report
    from .usage import read_usage
    store, rules = _open_readonly(args)
    if store is None:
        return 1
    account = None
    if args.sponsor in store.sponsor_ids and args.sponsor in rules.sponsor_index:
        sp = rules.sponsors[rules.sponsor_index[args.sponsor]]
        a = store.sponsors[store.sponsor_ids.index(args.sponsor)]
        if sp.period == "month" and int(a["period"]) > 0:
            month = int(a["period"])
            account = {"period": f"{month // 12:04d}-{month % 12 + 1:02d}", "used": int(a["used"]),
                       "spent": int(a["spent"])}
    try:
        rep = report(args.sponsor, args.period, read_usage(store.dir / "usage"), rules, account)
    except SettlementError as e:
        print(e, file=sys.stderr)
        return 1
    print(as_csv(rep) if args.format == "csv" else json.dumps(rep, indent=2), end="" if args.format == "csv" else "\n")
    return 0 if rep["reconciled"] else 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ocs", description="Online charging system: a Diameter Gy server")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the Diameter Gy server")
    s.add_argument("--config", help="TOML configuration file (docs/configuration.md)")
    s.add_argument("--listen", help="HOST:PORT to listen on (default 0.0.0.0:3868)")
    s.add_argument("--data", help="data directory: journal and snapshots (default ./data)")
    s.add_argument("--rules", help="rules directory (default rules/demo)")
    s.add_argument("--origin-host", dest="origin_host", help="our Origin-Host")
    s.add_argument("--origin-realm", dest="origin_realm", help="our Origin-Realm")
    s.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR")
    s.add_argument("--api", help="HOST:PORT of the operator HTTP API (bearer tokens: api_tokens or OCS_API_TOKENS)")
    s.add_argument("--no-fsync", action="store_true", help="do not fsync the journal (unsafe; for experiments)")
    s.set_defaults(func=cmd_serve)

    r = sub.add_parser("rules", help="rule files")
    rs = r.add_subparsers(dest="rules_command", required=True)
    rc = rs.add_parser("check", help="validate a rules directory")
    rc.add_argument("dir")
    rc.set_defaults(func=cmd_rules_check)

    sb = sub.add_parser("subscriber", help="subscriber state")
    sbs = sb.add_subparsers(dest="subscriber_command", required=True)
    show = sbs.add_parser("show", help="print a subscriber's state as JSON (works while the server runs or not)")
    show.add_argument("id", nargs="+", help="the MSISDN (or IMSI with --imsi); several print a JSON list")
    show.add_argument("--imsi", action="store_true", help="the id is an IMSI")
    show.add_argument("--data", help="data directory (default from --config, else ./data)")
    show.add_argument("--rules", help="rules directory (default from --config, else rules/demo)")
    show.add_argument("--config", help="TOML configuration file")
    show.set_defaults(func=cmd_subscriber_show)

    spn = sub.add_parser("sponsor", help="sponsored data")
    spns = spn.add_subparsers(dest="sponsor_command", required=True)
    rep = spns.add_parser("report", help="a sponsor's settlement for a month, reconciled (exit 3 if it does not)")
    rep.add_argument("sponsor", help="the sponsor contract id")
    rep.add_argument("--period", required=True, help="YYYY-MM, in the sponsor's timezone")
    rep.add_argument("--format", choices=("json", "csv"), default="json", help="output format (default json)")
    rep.add_argument("--data", help="data directory (default from --config, else ./data)")
    rep.add_argument("--rules", help="rules directory, when the data directory keeps none")
    rep.add_argument("--config", help="TOML configuration file")
    rep.set_defaults(func=cmd_sponsor_report)

    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
