"""The peer tasks (ocs/net/peers.py) on trio's memory streams with the
autojump clock: every timer runs in virtual time, so Tw of 30 s takes no
real time and its expiry is seen at the exact instant.

A test stands in for the gateway on one end of a stream pair and for the
charging loop behind `hand_off`; `Peers.serve` runs on the other end as the
server runs it for an accepted socket.
"""
from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from diameter.message import Message
from diameter.message.commands.device_watchdog import DeviceWatchdogAnswer
from diameter.message.commands.disconnect_peer import DisconnectPeerAnswer

from ocs.config import Config, PeerPolicy
from ocs.diameter.peer import PeerTimers
from ocs.net.peers import Peers
from tests.diameter.test_peer import PEER_HOST, PEER_REALM, US, ccr, cer, decode, describe, dpr

TW, CER_TIMEOUT, DPA_TIMEOUT = 30.0, 10.0, 5.0
BUDGET_KB = 64


class Reauthorizer:
    """What the peer tasks tell the Reauthorizer; here, who closed and why."""

    def __init__(self):
        self.closed: list[tuple[float, str | None]] = []
        self.answers = []

    def answered(self, peer, event) -> None:
        self.answers.append(event)

    def peer_closed(self, peer) -> None:
        self.closed.append((trio.current_time(), peer.close_reason))


class Charging:
    """The charging loop as the peer tasks see it: requests arrive through
    `hand_off`; each is answered when the test says so (or at once)."""

    def __init__(self, answer_at_once: bool = False, answer=None):
        self.received: list[tuple[object, bytes]] = []
        self.answer_at_once = answer_at_once
        self.answer = answer or (lambda frame: frame)

    def hand_off(self, peer, frames, now) -> None:
        peer.held += len(frames.data)
        if self.answer_at_once:
            peer.deliver([self.answer(f) for f in frames], len(frames.data))
        else:
            self.received += [(peer, f) for f in frames]

    def answer_all(self) -> None:
        for peer, frame in self.received:
            peer.deliver([self.answer(frame)], len(frame))
        self.received.clear()


def new_peers(charging: Charging, **cfg) -> Peers:
    config = Config(tw=TW, cer_timeout=CER_TIMEOUT, dpa_timeout=DPA_TIMEOUT, peer_buffer_kb=BUDGET_KB, **cfg)
    timers = PeerTimers(cer_timeout=CER_TIMEOUT, tw=TW, dpa_timeout=DPA_TIMEOUT, jitter=0.0)
    return Peers(config, US, PeerPolicy([]), timers, charging.hand_off, Reauthorizer())


class Gateway:
    """The peer's end: whole messages in and out."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> Message | None:
        """The next message we wrote; None once we closed the connection."""
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[1:4], "big")
                if len(self.buf) >= n:
                    frame = bytes(self.buf[:n])
                    del self.buf[:n]
                    return decode(frame)
            data = await self.stream.receive_some(1 << 16)
            if not data:
                return None
            self.buf += data

    async def open(self) -> None:
        await self.send(cer())
        assert describe(await self.receive()) == "CEA 2001"

    async def answer(self, request: Message, cls) -> None:
        a = cls()
        a.header.hop_by_hop_identifier = request.header.hop_by_hop_identifier
        a.header.end_to_end_identifier = request.header.end_to_end_identifier
        a.result_code = 2001
        a.origin_host, a.origin_realm = PEER_HOST.encode(), PEER_REALM.encode()
        await self.send(a.as_bytes())


@asynccontextmanager
async def connected(peers: Peers, pair=trio.testing.memory_stream_pair, opened: bool = True, timeout: float = 200):
    """`peers` serving one end of a stream pair; the gateway on the other,
    after its CER unless not `opened`; and the nursery serving it."""
    ours, theirs = pair()
    gw = Gateway(theirs)
    with trio.fail_after(timeout):
        async with trio.open_nursery() as n:
            n.start_soon(peers.serve, ours, "127.0.0.1")
            if opened:
                await gw.open()
            yield gw, n


def closed(peers: Peers) -> list[tuple[float, str | None]]:
    return peers.reauthorizer.closed


# ---------------------------------------------------------------- timers

async def test_no_cer_within_the_timeout_closes(autojump_clock):
    peers = new_peers(Charging())
    ours, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            n.start_soon(peers.serve, ours, "127.0.0.1")
            assert await Gateway(theirs).receive() is None
    assert closed(peers) == [(CER_TIMEOUT, "no CER within the timeout")]


async def test_watchdog_dwr_after_tw_of_silence_then_close_without_dwa(autojump_clock):
    """RFC 3539 3.4: a DWR after Tw without traffic; a DWA resets the
    watchdog; no answer within another Tw closes the connection."""
    peers = new_peers(Charging())
    async with connected(peers) as (gw, n):
        dwr = await gw.receive()
        assert (describe(dwr), trio.current_time()) == ("DWR", TW)
        await gw.answer(dwr, DeviceWatchdogAnswer)
        second = await gw.receive()
        assert (describe(second), trio.current_time()) == ("DWR", 2 * TW)
        assert await gw.receive() is None                     # not answered
        assert trio.current_time() == 3 * TW
    assert closed(peers) == [(3 * TW, "peer silent: no answer to our DWR within Tw")]


async def test_requests_reset_the_watchdog(autojump_clock):
    charging = Charging(answer_at_once=True)
    peers = new_peers(charging)
    async with connected(peers) as (gw, n):
        await trio.sleep(20)
        await gw.send(ccr())
        await gw.receive()                                    # the "answer" (the request echoed)
        dwr = await gw.receive()
        assert (describe(dwr), trio.current_time()) == ("DWR", 20 + TW)
        n.cancel_scope.cancel()


# ---------------------------------------------------------------- backpressure

async def test_a_peer_that_does_not_read_its_answers_stops_being_read_then_is_closed(autojump_clock):
    """Its answers fill its budget (peer_buffer_kb): it is read no more, and
    once its own unread answers kept it there for Tw it is closed."""
    request = ccr()
    charging = Charging(answer_at_once=True, answer=lambda frame: frame + bytes(1000))
    peers = new_peers(charging)
    sent = 0

    async def flood():
        nonlocal sent
        try:
            while True:
                await gw.send(request)
                sent += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with connected(peers, trio.testing.lockstep_stream_pair) as (gw, n):
        n.start_soon(flood)
        await trio.sleep(TW / 2)
        [peer] = list(peers)
        assert peer.stalled_since == 0.0, "not read from the start of the flood"
        held = peer.held + peer.conn.unsent + peer.sending
        assert BUDGET_KB << 10 <= held < (BUDGET_KB << 10) + 2 * (len(request) + 1000)
        read_then = sent
        await trio.sleep(TW / 4)
        assert sent == read_then, "read while over its budget"
    [(at, why)] = closed(peers)
    assert why.startswith("not reading its answers") and TW <= at <= TW + 1


async def test_a_slow_charging_loop_stops_reading_without_closing(autojump_clock):
    """Requests waiting for their answers hold the peer too (max_outstanding),
    but a peer that reads everything is never closed for it."""
    charging = Charging()
    peers = new_peers(charging, max_outstanding=3)
    async with connected(peers, trio.testing.lockstep_stream_pair, timeout=500) as (gw, n):

        async def send():       # in lockstep, one request a read: the count is exact
            for _ in range(5):
                await gw.send(ccr())

        n.start_soon(send)
        await trio.sleep(2 * TW)
        assert len(charging.received) == 3, "the peer is read up to max_outstanding only"
        charging.answer_all()
        for _ in range(3):
            await gw.receive()
        await trio.sleep(1)
        assert len(charging.received) == 2
        assert closed(peers) == []
        n.cancel_scope.cancel()


# ---------------------------------------------------------------- disconnecting

async def graceful_stop(peers: Peers, conns: trio.Nursery, grace: float) -> None:
    """What Server.run does on SIGTERM."""
    peers.disconnect_all(trio.current_time())
    conns.cancel_scope.deadline = trio.current_time() + grace


@pytest.mark.parametrize("gateway, grace, ends_at, reason", [
    ("answers DPA", 10.0, 1.0, "DPA received"),
    ("silent", 10.0, 1.0 + DPA_TIMEOUT, "no DPA within the timeout"),
    ("silent", 2.0, 3.0, None),                 # the grace runs out first: the task is cancelled
])
async def test_graceful_shutdown(autojump_clock, gateway, grace, ends_at, reason):
    peers = new_peers(Charging())
    async with connected(peers, timeout=100) as (gw, conns):
        await trio.sleep(1)
        await graceful_stop(peers, conns, grace)
        dpr_ = await gw.receive()
        assert describe(dpr_) == "DPR"
        if gateway == "answers DPA":
            await gw.answer(dpr_, DisconnectPeerAnswer)
        assert await gw.receive() is None
    assert trio.current_time() == ends_at
    assert closed(peers) == [(ends_at, reason)]
    assert peers.stopping and len(peers) == 0


async def test_no_one_new_is_served_while_stopping(autojump_clock):
    peers = new_peers(Charging())
    peers.disconnect_all(0.0)
    ours, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        await peers.serve(ours, "127.0.0.1")
        assert await Gateway(theirs).receive() is None
    assert trio.current_time() == 0.0


async def test_the_peers_dpr_is_answered_after_its_requests(autojump_clock):
    """RFC 6733 5.4: the DPA goes out after the answers to the requests in
    flight; the peer then closes."""
    charging = Charging()
    peers = new_peers(charging)
    async with connected(peers, timeout=30) as (gw, n):
        request = ccr()
        await gw.send(request + dpr())
        await trio.sleep(1)
        assert [f for _, f in charging.received] == [request]
        charging.answer_all()
        assert decode(request).header.hop_by_hop_identifier == (await gw.receive()).header.hop_by_hop_identifier
        assert describe(await gw.receive()) == "DPA 2001"
        await gw.stream.aclose()
    assert closed(peers) == [(1.0, "peer disconnected (DPR)")]


async def test_a_connection_without_its_cer_is_closed_at_once_at_shutdown(autojump_clock):
    peers = new_peers(Charging())
    ours, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(30):
        async with trio.open_nursery() as conns:
            conns.start_soon(peers.serve, ours, "127.0.0.1")
            await trio.sleep(1)
            await graceful_stop(peers, conns, 5.0)
            assert await Gateway(theirs).receive() is None
        assert trio.current_time() == 1.0
    assert closed(peers) == [(1.0, "shutting down")]
