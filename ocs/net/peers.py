"""The peer side of the trio edge: one task pair per connection (RFC 6733
section 2.1), its timers, its backpressure and its part of a graceful stop.

A reader task reads everything the socket has, feeds it to the connection's
state machine (ocs/diameter/peer.py) and acts on the events that come out:
application requests go to the server's charging loop (`hand_off`), answers
to our RARs to the Reauthorizer. A writer task sends whatever the connection
holds with one send_all. A peer that holds too much (requests unanswered,
answers unwritten) is not read; one whose own unread answers keep it there
past Tw is closed.
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import trio

from ..config import Config, PeerPolicy
from ..diameter.message import Frames
from ..diameter.peer import Closed, LocalIdentity, PeerConnection, PeerTimers, ReAuthAnswered, RequestsReceived

log = logging.getLogger("ocs.net")
RECEIVE_SIZE = 1 << 18


class Peer:
    """One connected peer: its sans-IO connection and its outbound side."""

    def __init__(self, stream: trio.abc.Stream, conn: PeerConnection, address: str, ident: int = 0):
        self.ident = ident                # a number for this connection (which peer a session came through)
        self.stream = stream
        self.conn = conn
        self.address = address
        self.held = 0                     # octets of its requests not answered yet
        self.sending = 0                  # octets of answers inside a send not yet done
        self.stalled_since: float | None = None   # when its buffered octets stopped its reading
        self.close_reason: str | None = None
        self.wake_writer = trio.Event()
        self.room = trio.Event()
        self.send_lock = trio.Lock()      # the writer and the closing handler both flush
        self.timer = trio.CancelScope()   # the read in progress, up to the connection's next deadline

    @property
    def outstanding(self) -> int:
        return self.conn.outstanding

    def deliver(self, answers: list[bytes], request_bytes: int = 0) -> None:
        """The answers to requests of this peer (in order); `request_bytes`
        of its requests are no longer held."""
        self.closed_by(self.conn.send_answers(answers))
        self.held -= request_bytes
        self.room.set()
        self.wake_writer.set()

    def rescheduled(self) -> None:
        """After a call that moved the connection's deadline (our DPR): the
        read in progress ends then, or at once if the connection is closed."""
        self.timer.deadline = -math.inf if self.conn.closed else self.conn.next_deadline()

    def closed_by(self, events: list) -> None:
        for event in events:
            if isinstance(event, Closed):
                self.close_reason = event.reason


class Peers:
    """The connected peers of one server and their tasks."""

    def __init__(self, cfg: Config, identity: LocalIdentity, policy: PeerPolicy, timers: PeerTimers,
                 hand_off: Callable[[Peer, Frames, float], None], reauthorizer):
        self.cfg = cfg
        self.identity = identity
        self.policy = policy
        self.timers = timers
        self.hand_off = hand_off          # a read's requests, to the charging loop
        self.reauthorizer = reauthorizer
        self.all: set[Peer] = set()
        self.by_ident: dict[int, Peer] = {}
        self.stopping = False
        self._numbers = iter(range(1, 1 << 62))

    def __iter__(self):
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    def buffered(self) -> int:
        """Octets held for all peers (requests not answered, answers not written)."""
        return sum(p.held + p.conn.unsent + p.sending for p in self.all)

    def disconnect_all(self, now: float) -> None:
        """A DPR to every peer (RFC 6733 5.4); each task ends once its DPA
        came, or when the caller's deadline runs out. No one new is served."""
        self.stopping = True
        for peer in list(self.all):
            peer.closed_by(peer.conn.start_disconnect(now))
            peer.rescheduled()
            peer.wake_writer.set()

    async def handle(self, stream: trio.SocketStream) -> None:
        """serve_listeners' handler: one accepted connection."""
        try:
            address = stream.socket.getpeername()[0]
        except OSError:
            return
        await self.serve(stream, address)

    async def serve(self, stream: trio.abc.Stream, address: str) -> None:
        """One peer's connection, from accept to close."""
        if self.stopping:
            await stream.aclose()
            return
        conn = PeerConnection(self.identity, lambda h, r: self.policy.allows(h, r, address),
                              trio.current_time(), self.timers, self.cfg.max_message)
        peer = Peer(stream, conn, address, next(self._numbers))
        self.all.add(peer)
        self.by_ident[peer.ident] = peer
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._writer, peer)
                await self._reader(peer)
                with trio.move_on_after(1):     # what is left (a CEA refusal, the DPA); a peer that does not read
                    await _flush(peer)          # gets no more time
                n.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
            pass    # the peer is gone; nothing of it may stop the server
        finally:
            self.all.discard(peer)
            self.by_ident.pop(peer.ident, None)
            self.reauthorizer.peer_closed(peer)
            if peer.close_reason:
                log.info("peer %s (%s) closed: %s", conn.peer_host, address, peer.close_reason)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def over_budget(self, peer: Peer) -> bool:
        """Whether this peer must not be read now: too many requests in
        flight, or too many octets held for it (its requests not answered
        and its answers not written: a peer that does not read its answers
        stops being read), or all peers together hold the total budget."""
        if peer.conn.outstanding >= self.cfg.max_outstanding:
            return True
        mine = peer.held + peer.conn.unsent + peer.sending
        if mine >= self.cfg.peer_buffer_kb << 10:
            return True
        # the total is summed only for a peer holding a fair amount itself
        return mine >= 1 << 20 and self.buffered() >= self.cfg.buffer_mb << 20

    async def _room(self, peer: Peer) -> bool:
        """Wait until the peer may be read (backpressure); False once it is
        closed, which a peer whose own unread answers keep it over budget
        for Tw is. Every octet counted leaves through `deliver` or a flush,
        and both set `room`."""
        conn = peer.conn
        while self.over_budget(peer) and not conn.closed:
            peer.room = trio.Event()
            now = trio.current_time()
            if peer.stalled_since is None:
                peer.stalled_since = now
            unsent = conn.unsent + peer.sending
            if unsent and now - peer.stalled_since >= self.cfg.tw:
                peer.closed_by(conn.abort(f"not reading its answers: {unsent} octets unsent for "
                                          f"{now - peer.stalled_since:.0f} s"))
                return False
            with trio.move_on_at(peer.stalled_since + self.cfg.tw if unsent else math.inf):
                await peer.room.wait()
        peer.stalled_since = None
        return not conn.closed

    async def _reader(self, peer: Peer) -> None:
        conn = peer.conn
        while not conn.closed:
            if not await self._room(peer):
                return
            data = None
            peer.timer = trio.CancelScope(deadline=conn.next_deadline())
            with peer.timer:
                try:
                    data = await peer.stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            now = trio.current_time()
            if data == b"":
                peer.closed_by(conn.connection_lost("connection closed by peer"))
                return
            if data:
                for event in conn.receive_data(data, now):
                    if isinstance(event, RequestsReceived):
                        self.hand_off(peer, event.frames, now)
                    elif isinstance(event, ReAuthAnswered):
                        self.reauthorizer.answered(peer, event)
                    elif isinstance(event, Closed):
                        peer.close_reason = event.reason
            peer.closed_by(conn.handle_timer(now))
            peer.wake_writer.set()

    async def _writer(self, peer: Peer) -> None:
        try:
            while True:
                await peer.wake_writer.wait()
                peer.wake_writer = trio.Event()
                await _flush(peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            # the peer went away (a reset, a close): the reader sees it too;
            # this must not escape the peer's nursery and stop the server
            peer.closed_by(peer.conn.connection_lost(f"connection lost while sending: {e!r}"))


async def _flush(peer: Peer) -> None:
    async with peer.send_lock:
        data = peer.conn.data_to_send()
        if data:
            peer.sending = len(data)
            try:
                await peer.stream.send_all(data)
            finally:
                peer.sending = 0
                peer.room.set()
