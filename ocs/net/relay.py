"""Relaying credit-control requests to the node of the cluster that holds
their state (docs/cluster.md), as a Diameter relay agent does (RFC 6733
section 6.1.8-6.1.9 and 6.2.2):

- one connection to each node relayed to, opened with a CER as ourselves
  and kept alive (its DWRs answered);
- each request forwarded as it came, with a hop-by-hop identifier of that
  connection and a Route-Record naming the peer it came from appended; the
  End-to-End-Identifier and every other AVP unchanged, so the owner's
  duplicate detection sees the gateway's request;
- each answer sent back to the peer the request came from with its
  hop-by-hop identifier restored;
- requests the connection cannot take (it failed, or closed with requests
  unanswered) answered 3002 DIAMETER_UNABLE_TO_DELIVER with the E bit,
  which sends a gateway to another peer.

A request that already carries a Route-Record was relayed once: it is not
relayed again (the caller answers it, 3004), so two nodes that disagree for
a moment about who holds what cannot pass a request back and forth.
"""
from __future__ import annotations

import itertools
import logging

import trio

from ..diameter import avp as A
from ..diameter import constants as c
from ..diameter import fastwalk
from ..diameter.errors import ProtocolError
from ..diameter.message import error_answer, parse_header
from ..diameter.peer import LocalIdentity

log = logging.getLogger("ocs.net")

_HEADER = 20
RETRY = 0.5            # seconds a node that could not be reached is not tried again


def relayed_before(frame: bytes) -> bool:
    """The request carries a Route-Record: an agent relayed it already."""
    return fastwalk.count_top_level(frame, c.AVP_ROUTE_RECORD, 0)[0] > 0


def with_route(frame: bytes, hbh: int, came_from: str) -> bytes:
    """The request with hop-by-hop id `hbh` and a Route-Record of `came_from`."""
    rr = A.utf8(c.AVP_ROUTE_RECORD, came_from)
    n = len(frame) + len(rr)
    return frame[:1] + n.to_bytes(3, "big") + frame[4:12] + hbh.to_bytes(4, "big") + frame[16:] + rr


def with_hbh(frame: bytes, hbh: int) -> bytes:
    return frame[:12] + hbh.to_bytes(4, "big") + frame[16:]


class Link:
    """One connection to one node, and the requests in flight on it."""

    def __init__(self, relay: "Relay", target: tuple[str, int]):
        self.relay, self.target = relay, target
        self.queue: list[tuple[object, bytes]] = []       # (peer, request) not sent yet
        self.pending: dict[int, tuple[object, bytes]] = {}  # our hop-by-hop id -> (peer, request)
        self.wake = trio.Event()
        self.ids = itertools.count(1)
        self.closed = False
        self.error: str | None = None       # why the connection ended

    def send(self, peer, frame: bytes) -> None:
        self.queue.append((peer, frame))
        self.wake.set()

    async def run(self) -> None:
        host, port = self.target
        try:
            with trio.fail_after(self.relay.connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
                await stream.send_all(self.relay.cer(next(self.ids)))
                buf = bytearray()
                frame, buf = await _read_frame(stream, buf)
                h = parse_header(frame)
                result = _result(frame)
                if h.code != c.CMD_CAPABILITIES_EXCHANGE or result != c.SUCCESS:
                    raise OSError(f"CEA {result}")
            async with stream, trio.open_nursery() as n:
                n.start_soon(self._reader, stream, buf, n.cancel_scope)
                n.start_soon(self._writer, stream, n.cancel_scope)
            raise OSError(self.error or "closed")
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as e:
            log.warning("relay to %s:%d failed (%s): its requests get 3002", host, port, e or type(e).__name__)
        finally:
            self.closed = True
            self.relay.gone(self)
            undelivered = list(self.pending.values()) + self.queue
            self.pending.clear()
            self.queue.clear()
            for peer, frame in undelivered:
                self.relay.refuse(peer, frame, c.UNABLE_TO_DELIVER, f"the node holding this session's state "
                                  f"({host}:{port}) cannot be reached")

    async def _writer(self, stream, scope: trio.CancelScope) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake = trio.Event()
                batch, self.queue = self.queue, []
                out = []
                for peer, frame in batch:
                    hbh = next(self.ids) & 0xFFFFFFFF
                    self.pending[hbh] = (peer, frame)
                    out.append(with_route(frame, hbh, peer.conn.peer_host or "unknown"))
                if out:
                    await stream.send_all(b"".join(out))
                    self.relay.relayed += len(out)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            self.error = self.error or str(e) or type(e).__name__
        finally:
            scope.cancel()

    async def _reader(self, stream, buf: bytearray, scope: trio.CancelScope) -> None:
        try:
            while True:
                frame, buf = await _read_frame(stream, buf)
                h = parse_header(frame)
                if h.is_request:
                    await self._answer_request(stream, h, frame)
                    continue
                got = self.pending.pop(h.hbh, None)
                if got is None:
                    continue
                peer, request = got
                peer.deliver([with_hbh(frame, parse_header(request).hbh)], 0)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            self.error = self.error or str(e) or type(e).__name__
        finally:
            scope.cancel()

    async def _answer_request(self, stream, h, frame: bytes) -> None:
        ident = self.relay.identity
        if h.code == c.CMD_DEVICE_WATCHDOG:
            body = A.u32(c.AVP_RESULT_CODE, c.SUCCESS) + ident.origin_avps
        elif h.code == c.CMD_DISCONNECT_PEER:
            body = A.u32(c.AVP_RESULT_CODE, c.SUCCESS) + ident.origin_avps
        else:
            body = A.u32(c.AVP_RESULT_CODE, c.COMMAND_UNSUPPORTED) + ident.origin_avps
        flags = c.FLAG_ERROR if h.code not in (c.CMD_DEVICE_WATCHDOG, c.CMD_DISCONNECT_PEER) else 0
        await stream.send_all(A.header(flags, h.code, h.app, h.hbh, h.e2e, len(body)) + body)
        if h.code == c.CMD_DISCONNECT_PEER:
            raise trio.BrokenResourceError("the node sent DPR")


class Relay:
    def __init__(self, identity: LocalIdentity, connect_timeout: float = 3.0):
        self.identity = identity
        self.connect_timeout = connect_timeout
        self.links: dict[tuple[str, int], Link] = {}
        self.relayed = 0                  # requests forwarded (a metric)
        self._nursery: trio.Nursery | None = None
        self._down: dict[tuple[str, int], float] = {}     # target -> until when it is not tried again

    async def run(self) -> None:
        async with trio.open_nursery() as n:
            self._nursery = n
            await trio.sleep_forever()

    def forward(self, peer, frames, target: tuple[str, int]) -> list[bytes]:
        """Relay each request of `frames` to `target`; returns those that
        must not be relayed (relayed once already), for the caller to answer."""
        kept = []
        if self._nursery is None:
            return list(frames)
        link = self.links.get(target)
        if link is None or link.closed:
            if trio.current_time() < self._down.get(target, -1.0):
                # it failed a moment ago: 3002 at once, without a connection attempt (or a log line) each
                for frame in frames:
                    if relayed_before(frame):
                        kept.append(frame)
                    else:
                        self.refuse(peer, frame, c.UNABLE_TO_DELIVER, "the node holding this session's state "
                                    "cannot be reached")
                return kept
            link = self.links[target] = Link(self, target)
            self._nursery.start_soon(link.run)
        for frame in frames:
            if relayed_before(frame):
                kept.append(frame)
            else:
                link.send(peer, frame)
        return kept

    def gone(self, link: Link) -> None:
        """A connection ended: not tried again for RETRY seconds."""
        if self.links.get(link.target) is link:
            del self.links[link.target]
        self._down[link.target] = trio.current_time() + RETRY

    def refuse(self, peer, frame: bytes, code: int, why: str) -> None:
        peer.deliver([error_answer(frame, ProtocolError(code, why), self.identity.origin_avps)], 0)

    def cer(self, hbh: int) -> bytes:
        ident = self.identity
        body = ident.origin_avps + ident.capability_avps + A.u32(c.AVP_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL)
        return A.header(c.FLAG_REQUEST, c.CMD_CAPABILITIES_EXCHANGE, c.APP_COMMON, hbh, hbh, len(body)) + body


async def _read_frame(stream, buf: bytearray) -> tuple[bytes, bytearray]:
    while True:
        if len(buf) >= 4:
            n = int.from_bytes(buf[1:4], "big")
            if n < _HEADER:
                raise trio.BrokenResourceError(f"a message of {n} octets")
            if len(buf) >= n:
                return bytes(buf[:n]), buf[n:]
        data = await stream.receive_some(1 << 16)
        if not data:
            raise trio.BrokenResourceError("connection closed")
        buf += data


def _result(frame: bytes) -> int | None:
    try:
        avps = A.walk(frame, _HEADER, len(frame))
    except ProtocolError:
        return None
    return next((a.u32 for a in avps if a.code == c.AVP_RESULT_CODE), None)
