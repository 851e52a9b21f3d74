"""The trio edge: listeners, signals, HTTP, rules reload, housekeeping and
a graceful stop; the peer tasks are in peers.py, the charging loop and the
committer in charging.py.

Data flows one way (docs/architecture.md): a peer task reads everything the
socket has and hands every complete CCR to the charging loop
(`ChargingLoop.received`); the loop takes all requests that arrived since
its last turn, from all peers, charges them as one batch, makes the batch
durable with one journal write, and only then hands each answer back to its
peer, which writes everything ready with one send_all. Idle, a batch is one
request; under load batches grow and the per-request cost of the journal
falls (group commit).
"""
from __future__ import annotations

import logging
import math
import signal
import time

import trio

from ..config import Config, PeerPolicy
from ..diameter.peer import LocalIdentity, PeerTimers
from ..feeds.notify import Notifier
from ..gy.app import CreditControlApplication
from ..gy.install import Installer
from ..gy.operations import Done
from ..metrics import Metrics
from ..rules.compile import RuleError, RuleSet
from ..rules.watch import RulesWatch
from ..store.interface import Store
from .charging import ChargingLoop
from .commit import Commit
from .peers import Peers
from .reauth import Reauthorizer
from .relay import Relay

log = logging.getLogger("ocs.net")


class Server:
    def __init__(self, cfg: Config, app: CreditControlApplication, store: Store,
                 identity: LocalIdentity, policy: PeerPolicy, installer: Installer | None = None,
                 notifier: Notifier | None = None, usage=None):
        self.cfg = cfg
        self.app = app
        self.store = store
        self.installer = installer or Installer(store)
        self.notifier = notifier
        self.usage = usage
        self.metrics = Metrics()
        self.metrics.watch_store(store)
        self.watch = RulesWatch(cfg.rules, app.rules.version)
        self.policy = policy
        self.reauthorizer = Reauthorizer(self)   # sends the RARs (ocs/net/reauth.py)
        self.loop = ChargingLoop(cfg, app, store, self.metrics, self.reauthorizer, self._install, notifier, usage,
                                 adopt=self.installer.adopt, relay=Relay(identity))
        self.metrics.watch_relay(self.loop.relay)
        timers = PeerTimers(cer_timeout=cfg.cer_timeout, tw=cfg.tw, dpa_timeout=cfg.dpa_timeout)
        self.peers = Peers(cfg, identity, policy, timers, self.loop.received, self.reauthorizer)
        self.listening: list[tuple[str, int]] = []

    def _advertised(self, host: str) -> str:
        """HOST:PORT other nodes of a cluster reach this one at (Diameter)."""
        if self.cfg.advertise:
            return self.cfg.advertise
        port = self.listening[0][1]
        if host in ("", "0.0.0.0", "*", "::"):
            host = self.cfg.host_ip_addresses[0]
        return f"{host}:{port}"

    def _advertised_api(self, url: str | None) -> str | None:
        if url is None:
            return None
        for wildcard in ("//0.0.0.0:", "//[::]:"):
            url = url.replace(wildcard, f"//{self.cfg.host_ip_addresses[0]}:")
        return url

    # ------------------------------------------------------------ lifecycle
    async def run(self, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=None if host in ("", "0.0.0.0", "*") else host)
        self.listening = [l.socket.getsockname()[:2] for l in listeners]
        if self.policy.loopback_only:
            log.warning("no peers configured: accepting any peer that connects from a loopback address")
        async with trio.open_nursery() as system:
            system.start_soon(self.loop.run)
            system.start_soon(self.loop.relay.run)
            system.start_soon(self._housekeeping)
            system.start_soon(self._rules_reload)
            system.start_soon(self.reauthorizer.run)
            api = None
            if self.cfg.api:
                api = (await system.start(self._serve_api))[0]
            self.store.advertise(self._advertised(host), self._advertised_api(api))
            if self.cfg.metrics:
                from ..api.scrape import MetricsEndpoint
                await system.start(self._serve_http, MetricsEndpoint(self), self.cfg.metrics, "metrics")
            async with trio.open_nursery() as peers_nursery:
                accept_scope = trio.CancelScope()

                async def accept():
                    with accept_scope:
                        await trio.serve_listeners(self.peers.handle, listeners, handler_nursery=peers_nursery)

                peers_nursery.start_soon(accept)
                log.info("listening on %s", ", ".join(f"{h}:{p}" for h, p in self.listening))
                task_status.started(self.listening)
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for sig in signals:
                        log.info("signal %s: stopping", signal.Signals(sig).name)
                        break
                accept_scope.cancel()
                for l in listeners:
                    await l.aclose()
                # graceful: a DPR to every peer; each peer's task ends with its
                # DPA, and whatever is left is cancelled at the grace's end
                self.peers.disconnect_all(trio.current_time())
                peers_nursery.cancel_scope.deadline = trio.current_time() + self.cfg.shutdown_grace
            await self.loop.durable(self.cfg.shutdown_grace + 5)
            system.cancel_scope.cancel()
        try:
            self.store.snapshot()
        except OSError as e:
            log.error("no snapshot at shutdown (%s): the journal holds everything, the next start replays it", e)
        self.store.close()
        log.info("stopped after %d requests in %d batches", self.loop.requests, self.loop.batches)

    def run_internal(self, fn) -> None:
        """Run `fn(store, rules, now)` on the charging loop for the server itself (ChargingLoop.run_internal)."""
        self.loop.run_internal(fn)

    async def submit(self, fn):
        """Run an operation on the charging loop; its result once durable (ChargingLoop.submit)."""
        return await self.loop.submit(fn)

    async def _serve_api(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        import os

        from ..api.http import OperatorApi
        from ..api.routes import ROUTES
        tokens = list(self.cfg.api_tokens) + [t.strip() for t in os.environ.get("OCS_API_TOKENS", "").split(",")]
        tokens = [t for t in tokens if t]
        if not tokens:
            log.warning("the API has no tokens (api_tokens, OCS_API_TOKENS): every request gets 401")
        await self._serve_http(OperatorApi(self, tokens, ROUTES), self.cfg.api, "api", task_status=task_status)

    async def _serve_http(self, app, bind: str, name: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """An ASGI app on hypercorn's trio worker, on this loop."""
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.trio import serve
        hc = HypercornConfig()
        hc.bind = [bind]
        hc.accesslog = None
        hc.errorlog = logging.getLogger(f"ocs.{name}")
        hc.graceful_timeout = 1.0
        async with trio.open_nursery() as n:
            bound = await n.start(lambda task_status: serve(app, hc, task_status=task_status))
            for url in bound:
                log.info("%s listening on %s", name, url)
            task_status.started(bound)


    # ------------------------------------------------------------ rules
    async def install_rules(self, rules: RuleSet) -> None:
        """Install `rules` on the charging loop between two batches, as a
        reload does (journaled, rows carried over, live sessions it changes
        re-authorized); return once durable. Raises RuleError with the
        installer's reasons when the version is refused (the old one keeps
        serving)."""
        def install(store, current, now):
            commit = self._install(rules, refuse=True)
            return Done({"version": rules.version}, commit.record, sessions=commit.reauthorize)
        await self.submit(install)

    def _install(self, rules: RuleSet, refuse: bool = False) -> Commit | None:
        """Between two batches: install the new version, or keep the old one
        (raising RuleError if `refuse`). Returns its commit: the journal
        record, and the sessions whose charging it changes, to re-authorize."""
        now = time.time()
        old = self.app.rules
        try:
            self.installer.install(rules, now)
        except RuleError as e:
            log.error("rules %s version %s refused, version %s keeps serving: %s",
                      self.cfg.rules, rules.version, old.version, "; ".join(e.errors))
            if refuse:
                raise
            return None
        self.app.set_rules(rules)
        self.watch.installed(rules.version)
        log.info("rules %s: version %s installed (was %s)", self.cfg.rules, rules.version, old.version)
        sessions = self.app.sessions_changed_by(old)
        if len(sessions):
            log.info("rules version %s changes the charging of %d open sessions: re-authorizing them",
                     rules.version, len(sessions))
        return Commit(self.store.rules_record(rules.version, now), reauthorize=sessions)

    async def _rules_reload(self) -> None:
        """Reload on SIGHUP, and when the rule files change (polled). The new
        version is compiled in a worker thread; an invalid one is refused with
        one log line and the old one keeps serving."""
        hup = trio.Event()

        async def on_signal():
            with trio.open_signal_receiver(signal.SIGHUP) as signals:
                async for _ in signals:
                    log.info("SIGHUP: reloading rules from %s", self.cfg.rules)
                    hup.set()

        async with trio.open_nursery() as n:
            n.start_soon(on_signal)
            poll = self.cfg.rules_poll
            while True:
                with trio.move_on_after(poll if poll > 0 else math.inf):
                    await hup.wait()
                forced, hup = hup.is_set(), trio.Event()
                candidate = await trio.to_thread.run_sync(self.watch.check, forced)
                if candidate is not None:
                    self.loop.reload(candidate)

    async def _housekeeping(self) -> None:
        """Once a second: session supervision (Tcc expiry, RFC 4006 section
        13), and at each local midnight the daily summaries."""
        while True:
            await trio.sleep(1)
            self.reauthorizer.expire()
            self.loop.tick(self.app.day_turned(time.time()))
