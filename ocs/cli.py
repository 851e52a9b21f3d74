"""The `ocs` command: serve, rules check, subscriber show, sponsor report,
usage, api openapi. Each subcommand documents itself with --help."""
from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from pathlib import Path

from .config import Config, PeerPolicy, load_config, split_hostport
from .rules.compile import RuleError, load_rules
from .subscriber import E164, IMSI, subscriber_key


def _load_rules_or_exit(directory: str):
    try:
        return load_rules(directory)
    except RuleError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        raise SystemExit(2)


def _compile_kernels(rules, log) -> None:
    """Compile the kernels before the first connection is accepted, saying
    so first when numba's cache cannot supply them (ocs/kernels.py)."""
    from . import kernels
    cold = kernels.cold_groups()
    if cold:
        log.warning("compiling the charging kernels once after an install or upgrade (%s), a minute or two; "
                    "the cache is under %s", ", ".join(g.name.partition(" (")[0] for g in cold), kernels.cache_dir())
    took = kernels.warm_up(rules)
    if cold:
        log.warning("kernels compiled in %.1f s; later starts load them from the cache", took)


def cmd_compile(args) -> int:
    from . import kernels
    rules = _load_rules_or_exit(args.rules)
    cold = kernels.cold_groups()
    print(f"compiling the kernels into numba's cache under {kernels.cache_dir()}, a minute or two" if cold else
          "the kernels are in numba's cache; loading them", flush=True)

    def report(name: str, seconds: float, compiled: bool) -> None:
        print(f"  {name:<56} {seconds:6.1f} s{'' if compiled else '  (cached)'}", flush=True)

    took = kernels.warm_up(rules, report)
    print(f"kernels ready in {took:.1f} s", flush=True)
    return 0


def serve_config(args) -> Config:
    """The configuration file, then every flag given: each `ocs serve` flag
    is named after its configuration key, and wins over it."""
    cfg = load_config(args.config)
    for name, value in vars(args).items():
        if name in Config.__struct_fields__ and value is not None:
            setattr(cfg, name, value)
    if args.no_fsync:
        cfg.fsync = False
    return cfg


def cmd_serve(args) -> int:
    cfg = serve_config(args)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("ocs")
    started = time.monotonic()
    opened = _open_cluster(cfg, log) if cfg.store else _open_embedded(cfg)
    if isinstance(opened, int):
        return opened
    return _serve(cfg, log, started, *opened)


def _open_embedded(cfg):
    """The embedded store recovered, the rules installed: (store, installer,
    rules, version before, subscribers provisioned, usage log), or an exit code."""
    from .feeds.usage import UsageLog
    from .gy.install import Installer
    from .rules import activation
    from .store.embedded import EmbeddedStore, StoreFormatError, start_room

    free, needed = start_room(cfg.data)
    if free < needed:
        print(f"{cfg.data}: {free >> 20} MiB free, and a start needs about {needed >> 20} MiB there (a snapshot "
              f"as large as the current one, and room for the journal): free some space and start again",
              file=sys.stderr)
        return 2
    store = EmbeddedStore(cfg.data, fsync=cfg.fsync, dedup_entries=cfg.dedup_entries,
                          dedup_seconds=cfg.dedup_seconds, dedup_bytes=cfg.dedup_mb << 20)
    store.session_grace = cfg.session_grace
    installer = Installer(store)
    try:
        store.open(on_rules=installer.replay)
        # an API activation a crash interrupted is finished before the
        # directory is read: it must not start on the version it replaced
        activation.complete(cfg.data, cfg.rules, store.rules_version)
    except (RuleError, StoreFormatError) as e:
        print(e, file=sys.stderr)
        return 2
    rules = _load_rules_or_exit(cfg.rules)
    try:
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
    return store, installer, rules, was, usage


def _open_cluster(cfg, log):
    """A node of the cluster store (docs/cluster.md): joined, the rules in
    force installed, the slots it took applied; or an exit code."""
    from .clustercmd import open_cluster
    from .feeds.usage import UsageLog
    from .store.memory import StoreFormatError
    try:
        store, installer, rules = open_cluster(cfg, log)
    except (OSError, RuleError, StoreFormatError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    usage = UsageLog(Path(cfg.data) / "usage", installer.ruleset, store.label,
                     lambda row: int(store.subs[row]["plan"]))
    return store, installer, rules, "", usage


def _serve(cfg, log, started, store, installer, rules, was, usage) -> int:
    import trio
    from .diameter import constants as c
    from .diameter.peer import LocalIdentity
    from .feeds.notify import Notifier, load_sink
    from .gy.app import CreditControlApplication
    from .net.server import Server
    from .rules.history import InstallHistory
    from .store.errors import Fenced

    _compile_kernels(rules, log)
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
    policy = PeerPolicy(cfg.peers)
    app = CreditControlApplication(store, rules, identity, ccfh, refund_hosts=policy.refund_hosts,
                                   session_failover=cfg.session_failover if cfg.session_failover is not None else bool(cfg.store),
                                   max_mscc=cfg.max_mscc)
    server = Server(cfg, app, store, identity, policy, installer, notifier, usage)
    history = InstallHistory(cfg.data)
    if was != rules.version:
        history.record(rules.version, was or None, time.time())
    server.watch.history = history      # reloads and API activations are recorded too
    server.watch.data = Path(cfg.data)  # where an activation not yet written is marked
    host, port = split_hostport(cfg.listen)
    log.info("rules %s version %s; %d subscribers; ready in %.2f s",
             cfg.rules, rules.version, store.n_subs, time.monotonic() - started)
    # Charging makes almost no reference cycles; the collector's passes over
    # the large, long-lived state cost ~13% of throughput and the tail latency.
    # Keep what startup built out of its reach and collect rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)
    fenced = []
    try:
        trio.run(server.run, host, port)
    except* Fenced as group:
        fenced = list(group.exceptions)
    if fenced:
        print(f"stopped: {fenced[0]}", file=sys.stderr)
        return 75           # EX_TEMPFAIL: a supervisor starts it again, as a new member
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
    from .gy.install import Installer
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
    from .store import profiles
    profiles.resolve(store, rules, time.time())     # API subscribers' timezones in this rules version's zone table
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
    from .feeds.settlement import SettlementError, account, as_csv, period_report
    store, rules = _open_readonly(args)
    if store is None:
        return 1
    try:
        rep = period_report(args.sponsor, args.period, store.dir / "usage", rules,
                            account(store, rules, args.sponsor))
    except SettlementError as e:
        print(e, file=sys.stderr)
        return 1
    print(as_csv(rep) if args.format == "csv" else json.dumps(rep, indent=2), end="" if args.format == "csv" else "\n")
    return 0 if rep["reconciled"] else 3


def cmd_usage(args) -> int:
    from datetime import date

    import msgspec

    from .feeds.usage import local_zone, subscriber_usage
    try:
        first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    except ValueError as e:
        print(f"--from/--to: {e} (expected YYYY-MM-DD)", file=sys.stderr)
        return 1
    if first > last or (last - first).days >= 366:
        print(f"--from {first} --to {last}: expected from <= to, at most 366 days", file=sys.stderr)
        return 1
    store, rules = _open_readonly(args)
    if store is None:
        return 1
    if not args.id.isdigit() or len(args.id) > 15:
        print(f"{args.id}: not a subscriber number (1 to 15 digits)", file=sys.stderr)
        return 1
    row = store.lookup(subscriber_key(IMSI if args.imsi else E164, args.id))
    if row < 0:
        print(f"{args.id}: no such subscriber in {store.dir}", file=sys.stderr)
        return 1
    sub = store.subs[row]
    tz = local_zone(rules, int(sub["plan"]), int(sub["zone"]))
    days = subscriber_usage(store.dir / "usage", store.label(row), tz, first, last)
    out = {"subscriber": store.label(row), "timezone": tz.key, "from": first, "to": last, "days": days}
    print(msgspec.json.format(msgspec.json.encode(out), indent=2).decode())
    return 0


def cmd_api_openapi(args) -> int:
    from .api.openapi import render
    from .api.routes import ROUTES
    sys.stdout.write(render(ROUTES))
    return 0


def _serve_parser(sub) -> None:
    s = sub.add_parser("serve", help="run the Diameter Gy server",
                       description="Run the Diameter Gy server (and the operator API with --api). Every flag "
                                   "has a key in the configuration file (docs/configuration.md); a flag given "
                                   "wins over the file.")
    s.add_argument("--config", help="TOML configuration file (docs/configuration.md)")
    s.add_argument("--listen", help="HOST:PORT to listen on (default 0.0.0.0:3868)")
    s.add_argument("--data", help="data directory: journal and snapshots (default ./data)")
    s.add_argument("--rules", help="rules directory (default rules/demo)")
    s.add_argument("--origin-host", dest="origin_host", help="our Origin-Host")
    s.add_argument("--origin-realm", dest="origin_realm", help="our Origin-Realm")
    s.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR")
    s.add_argument("--api", help="HOST:PORT of the operator HTTP API (bearer tokens: api_tokens or OCS_API_TOKENS)")
    s.add_argument("--metrics", help="HOST:PORT serving only GET /metrics, without a token (also served on --api)")
    s.add_argument("--no-fsync", action="store_true", help="do not fsync the journal (unsafe; for experiments)")
    s.add_argument("--store", help="libpq DSN of the cluster store (docs/cluster.md); absent: the embedded store "
                                   "in --data")
    s.add_argument("--node", help="this node's name in the cluster (default: its Origin-Host)")
    s.add_argument("--lease-seconds", dest="lease_seconds", type=float,
                   help="a cluster node's lease on its slots (default 2)")
    s.set_defaults(func=cmd_serve)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ocs", description="Online charging system: a Diameter Gy server")
    sub = p.add_subparsers(dest="command", required=True)

    _serve_parser(sub)

    from .clustercmd import add_parsers
    add_parsers(sub)

    cp = sub.add_parser("compile", help="compile the kernels into numba's on-disk cache",
                        description="Compile every numba kernel the server runs into numba's on-disk cache, a "
                                    "line per group with its time (make install runs it). A later `ocs serve` "
                                    "loads them in about a second.")
    cp.add_argument("--rules", default="rules/demo", help="a rules directory (default rules/demo): its tables "
                                                          "have the types every rules directory has")
    cp.set_defaults(func=cmd_compile)

    r = sub.add_parser("rules", help="rule files")
    rs = r.add_subparsers(dest="rules_command", required=True)
    rc = rs.add_parser("check", help="validate a rules directory",
                       description="Validate every *.toml of DIR and print a summary, or every error (file, "
                                   "key path, what was expected) and exit 2.")
    rc.add_argument("dir", help="the rules directory")
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
    rep = spns.add_parser("report", help="a sponsor's settlement for a month, reconciled (exit 3 if it does not)",
                          description="A sponsor's settlement for a month from the usage records: sessions, "
                                      "traffic split between sponsor and subscribers, the amount; exit 3 if "
                                      "it does not reconcile (docs/sponsors.md).")
    rep.add_argument("sponsor", help="the sponsor contract id")
    rep.add_argument("--period", required=True, help="YYYY-MM, in the sponsor's timezone")
    rep.add_argument("--format", choices=("json", "csv"), default="json", help="output format (default json)")
    rep.add_argument("--data", help="data directory (default from --config, else ./data)")
    rep.add_argument("--rules", help="rules directory, when the data directory keeps none")
    rep.add_argument("--config", help="TOML configuration file")
    rep.set_defaults(func=cmd_sponsor_report)

    use = sub.add_parser("usage", help="a subscriber's usage per rating group per local day, as JSON",
                         description="Usage per local day (the subscriber's timezone) and rating group, from "
                                     "the usage records: octets, seconds, octets from buckets, sponsored "
                                     "octets, money charged. As GET /v1/subscribers/ID/usage.")
    use.add_argument("id", help="the MSISDN (or IMSI with --imsi)")
    use.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD", help="first local day")
    use.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD",
                     help="last local day, inclusive (at most 366 days)")
    use.add_argument("--imsi", action="store_true", help="the id is an IMSI")
    use.add_argument("--data", help="data directory (default from --config, else ./data)")
    use.add_argument("--rules", help="rules directory, when the data directory keeps none")
    use.add_argument("--config", help="TOML configuration file")
    use.set_defaults(func=cmd_usage)

    ap = sub.add_parser("api", help="the operator HTTP API")
    aps = ap.add_subparsers(dest="api_command", required=True)
    doc = aps.add_parser("openapi", help="print the API's OpenAPI 3.1 document",
                         description="Print the OpenAPI 3.1 document of the operator API, generated from its "
                                     "routes: ocs api openapi > docs/openapi.json")
    doc.set_defaults(func=cmd_api_openapi)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
