"""Sending Gy Re-Auth-Requests and reading their answers, for the server
(docs/running.md#re-authorization-rar; the messages themselves and which
sessions a change affects are in ocs/gy/reauth.py).

A change that affects live sessions queues them here once it is durable; a
task of its own sends the RARs in chunks, each to the peer holding the
session, with a bound on the unanswered ones per peer, so a rules change
touching a million sessions neither stalls the answers nor floods a peer.
"""
from __future__ import annotations

import logging
from bisect import bisect_right
from collections import deque
from functools import partial
from itertools import accumulate

import numpy as np
import trio

from ..diameter.peer import State
from ..diameter.reauth import ReAuthAnswered, ReAuthResult
from ..gy import reauth

log = logging.getLogger("ocs.net")
RAR_CHUNK = 256             # Re-Auth-Requests sent per turn of the sender
MAX_RARS_PER_PEER = 1024    # unanswered RARs one peer may have; more wait in the queue


class Reauthorizer:
    def __init__(self, server):
        self.server = server
        self.via = np.zeros(0, np.int32)      # per session row: the peer its CCR-I came through (0: unknown)
        self.queued: deque[tuple[int, bytes]] = deque()    # (session row, Session-Id) to re-authorize
        self._ready = trio.Event()

    def remember_via(self, batch, opened: list[tuple[int, int]]) -> None:
        """Which peer connection each new session came through: its RAR goes
        back the same way, also when a relay (a DRA) stands between us and
        the gateway (RFC 6733 6.1)."""
        ends = list(accumulate(len(a.frames) for a in batch))
        top = max(row for _, row in opened)
        if top >= len(self.via):
            grown = np.zeros(max(top + 1, 2 * len(self.via), 1024), np.int32)
            grown[:len(self.via)] = self.via
            self.via = grown
        for i, row in opened:
            self.via[row] = batch[bisect_right(ends, i)].peer.ident

    def queue(self, sessions: np.ndarray) -> None:
        """Queue a Re-Auth-Request (RFC 4006 5.5) for each open session; the
        sender paces them, so a rules change touching a million sessions
        neither stalls the answers nor floods one peer."""
        meta = self.server.store.session_meta
        for row in sessions.tolist():
            m = meta[row]
            if m is not None:
                self.queued.append((row, m[0]))
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            while self.queued:
                progressed = self._send(RAR_CHUNK)
                # a checkpoint between chunks; a pause while every peer left is at its limit
                await trio.sleep(0 if progressed else 0.01)

    def _send(self, limit: int) -> bool:
        """Send up to `limit` queued RARs, each to the peer holding the
        session: the one whose Origin-Host opened it if it is a direct peer,
        else the connection its CCR-I came through (a relay). Sessions whose
        peer is gone are counted, not kept: their gateway re-authorizes at
        its next report anyway. Returns whether any RAR left the queue."""
        by_host = {p.conn.peer_host.encode(): p for p in self.server.peers
                   if p.conn.state is State.OPEN and p.conn.peer_host}
        now = trio.current_time()
        deferred = []
        progressed = False
        woken = set()
        for _ in range(min(limit, len(self.queued))):
            row, sid = self.queued.popleft()
            meta = self.server.store.session_meta[row] if row < len(self.server.store.session_meta) else None
            if meta is None or meta[0] != sid:
                progressed = True
                continue            # ended meanwhile
            host = meta[1]
            peer = by_host.get(host)
            if peer is None and row < len(self.via):
                peer = self.server.peers.by_ident.get(int(self.via[row]))
                if peer is not None and peer.conn.state is not State.OPEN:
                    peer = None
            if peer is None:
                self.server.metrics.reauth.labels("no_peer").inc()
                progressed = True
                continue
            if peer.conn.reauth_pending(sid):
                progressed = True
                continue            # one outstanding RAR per session is enough
            if peer.conn.reauths_pending >= MAX_RARS_PER_PEER:
                deferred.append((row, sid))
                continue
            peer.conn.send_reauth(sid, host, now)
            woken.add(peer)
            progressed = True
        self.queued.extendleft(reversed(deferred))
        for peer in woken:
            peer.wake_writer.set()
        return progressed

    def answered(self, peer, event: ReAuthAnswered) -> None:
        """A RAA matched to our RAR (the connection matched it by hop-by-hop
        id, RFC 6733 6.2). One saying the gateway has no such session (5002)
        releases the session's reservations."""
        sid = event.session_id
        self.server.metrics.reauth.labels(str(event.result_code)).inc()
        if event.result is ReAuthResult.OTHER_SESSION:
            log.warning("peer %s answered our RAR for %r with another Session-Id; ignored", peer.conn.peer_host, sid)
        elif event.result is ReAuthResult.UNKNOWN_SESSION:
            self.server.run_internal(partial(_release, sid))
        elif event.result is ReAuthResult.REFUSED:
            log.info("peer %s answered our RAR for %r with %d", peer.conn.peer_host, sid, event.result_code)

    def expire(self) -> None:
        now = trio.current_time()
        for peer in list(self.server.peers):
            late = peer.conn.expire_reauths(now, self.server.cfg.reauth_timeout)
            if late:
                self.server.metrics.reauth.labels("timeout").inc(len(late))

    def peer_closed(self, peer) -> None:
        if peer.conn.reauths_pending:       # its gateway will not answer them now
            self.server.metrics.reauth.labels("peer_closed").inc(peer.conn.reauths_pending)


def _release(sid: bytes, store, rules, now: float):
    return reauth.release(store, rules, sid, now)
