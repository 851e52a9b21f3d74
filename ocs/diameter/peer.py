"""The peer state machine of a Diameter responder (RFC 6733 section 5.6).

States (the responder's side of section 5.6, with the election omitted: we
never initiate connections):

  WAIT_CER   accepted; the first message must be a CER within the timeout
  OPEN       capabilities exchanged; requests flow both ways; watchdog runs
             (RFC 3539: a DWR after Tw of silence, close after another Tw)
  CLOSING    a DPR was sent (by us) or received (from the peer); no new
             requests are taken; close after the DPA
  CLOSED     terminal

sans-IO: bytes and `now` in (`receive_data`, `handle_timer`), bytes out
(`data_to_send`), application requests returned to the caller. Every
transition is in `_TRANSITIONS`; a missing key is a protocol violation and
closes the connection.
"""
from __future__ import annotations

import enum
import itertools
import logging
import random
from dataclasses import dataclass, field
from typing import Callable

from . import avp as A
from . import constants as c
from .errors import FramingError, ProtocolError
from .message import Frames, Header, answer_header, check_header, error_answer, parse_header, split_frames

log = logging.getLogger("ocs.diameter.peer")


class State(enum.Enum):
    WAIT_CER = "WAIT_CER"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class Event(enum.Enum):
    CER = "CER"
    DWR = "DWR"
    DWA = "DWA"
    DPR = "DPR"
    DPA = "DPA"
    APP_REQUEST = "APP_REQUEST"
    APP_ANSWER = "APP_ANSWER"


_TRANSITIONS: dict[State, dict[Event, State]] = {
    State.WAIT_CER: {Event.CER: State.OPEN},
    State.OPEN: {Event.DWR: State.OPEN, Event.DWA: State.OPEN, Event.DPR: State.CLOSING,
                 Event.DPA: State.OPEN,        # a DPA to no DPR of ours: ignored
                 Event.APP_REQUEST: State.OPEN, Event.APP_ANSWER: State.OPEN,
                 Event.CER: State.OPEN},
    State.CLOSING: {Event.DWR: State.CLOSING, Event.DWA: State.CLOSING, Event.DPA: State.CLOSED,
                    Event.DPR: State.CLOSING, Event.APP_ANSWER: State.CLOSING,
                    Event.APP_REQUEST: State.CLOSING},
    State.CLOSED: {},
}

_CER_RULES = {c.AVP_ORIGIN_HOST: (1, 1), c.AVP_ORIGIN_REALM: (1, 1), c.AVP_HOST_IP_ADDRESS: (1, 1 << 30),
              c.AVP_VENDOR_ID: (1, 1), c.AVP_PRODUCT_NAME: (1, 1), c.AVP_ORIGIN_STATE_ID: (0, 1),
              c.AVP_FIRMWARE_REVISION: (0, 1)}
_DWR_RULES = {c.AVP_ORIGIN_HOST: (1, 1), c.AVP_ORIGIN_REALM: (1, 1), c.AVP_ORIGIN_STATE_ID: (0, 1)}
_DPR_RULES = {c.AVP_ORIGIN_HOST: (1, 1), c.AVP_ORIGIN_REALM: (1, 1), c.AVP_DISCONNECT_CAUSE: (1, 1)}


@dataclass
class LocalIdentity:
    """What we say about ourselves in CEA, DWA, DPR and every answer."""
    origin_host: str = "ocs.localdomain"
    origin_realm: str = "localdomain"
    host_ip_addresses: tuple[str, ...] = ("127.0.0.1",)
    vendor_id: int = 0
    product_name: str = "ocs"
    firmware_revision: int = 1
    origin_state_id: int = field(default_factory=lambda: random.getrandbits(31))

    def __post_init__(self):
        self.origin_avps = (A.utf8(c.AVP_ORIGIN_HOST, self.origin_host)
                            + A.utf8(c.AVP_ORIGIN_REALM, self.origin_realm))


MAX_BEFORE_CER = 64 << 10     # octets a connection may send before its CER is through (a CER is small)


@dataclass
class PeerTimers:
    cer_timeout: float = 10.0   # a connection must send its CER within this
    tw: float = 30.0            # RFC 3539 watchdog interval
    dpa_timeout: float = 5.0    # how long we wait for the DPA to our DPR
    jitter: float = 2.0         # RFC 3539 3.4.1: each watchdog interval is tw +- up to this


class PeerConnection:
    """One transport connection to one peer (RFC 6733 section 2.1)."""

    def __init__(self, identity: LocalIdentity, authorize: Callable[[str, str], bool],
                 now: float, timers: PeerTimers | None = None,
                 max_message: int = 1 << 20, apps: frozenset[int] = frozenset({c.APP_CREDIT_CONTROL}),
                 commands: frozenset[int] = frozenset({c.CMD_CREDIT_CONTROL}), rng: random.Random | None = None):
        self.identity = identity
        self.timers = timers or PeerTimers()
        self.authorize = authorize
        self.max_message = max_message
        self.apps = apps
        self.commands = commands    # application request commands we serve; others get 3001
        self.state = State.WAIT_CER
        self.peer_host: str | None = None
        self.peer_realm: str | None = None
        self.close_reason: str | None = None
        self._inbuf = bytearray()
        self._out = bytearray()
        self._opened_at = now
        self._last_rx = now
        self._dwr_sent_at: float | None = None
        self._dpr_sent_at: float | None = None
        self._pending_dpa: bytes | None = None
        self.app_answers: list[bytes] = []
        self._rng = rng or random.Random()
        self._tw = self._interval()
        self._hbh = itertools.count(random.getrandbits(31))
        self._e2e = itertools.count(((identity.origin_state_id & 0xFFF) << 20) | random.getrandbits(20))

    # ------------------------------------------------------------ outputs
    @property
    def buffered_input(self) -> int:
        """Octets received and not yet framed into a message."""
        return len(self._inbuf)

    @property
    def unsent(self) -> int:
        """Octets of answers queued here, not yet taken by `data_to_send`."""
        return len(self._out)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, data: bytes) -> None:
        self._out += data

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def next_deadline(self) -> float:
        t = self.timers
        if self.state is State.WAIT_CER:
            return self._opened_at + t.cer_timeout
        if self.state is State.CLOSING:
            return (self._dpr_sent_at + t.dpa_timeout) if self._dpr_sent_at is not None else float("inf")
        if self.state is State.OPEN:
            if self._dwr_sent_at is not None:
                return self._dwr_sent_at + self._tw
            return self._last_rx + self._tw
        return float("inf")

    def _interval(self) -> float:
        """Tw with its jitter (RFC 3539 3.4.1), drawn anew each time the
        watchdog fires, so peers started together do not probe in step."""
        t = self.timers
        return max(t.tw + self._rng.uniform(-t.jitter, t.jitter), t.tw / 2) if t.jitter else t.tw

    def new_ids(self) -> tuple[int, int]:
        return next(self._hbh) & 0xFFFFFFFF, next(self._e2e) & 0xFFFFFFFF

    # ------------------------------------------------------------ inputs
    def receive_data(self, data: bytes, now: float) -> Frames:
        """Feed received bytes; returns the application requests to handle.
        Application answers (RAA) are appended to `app_answers`."""
        if self.state is State.CLOSED:
            return Frames.of([])
        self._inbuf += data
        # before the CER, a peer is nobody: it may hold MAX_BEFORE_CER, not a whole max_message
        limit = min(MAX_BEFORE_CER, self.max_message) if self.state is State.WAIT_CER else self.max_message
        try:
            frames, used, others = split_frames(self._inbuf, limit)
        except FramingError as e:
            self._close(f"unframeable stream: {e}")
            return Frames.of([])
        del self._inbuf[:used]
        if frames:
            self._last_rx = now
            self._dwr_sent_at = None if self.state is State.OPEN else self._dwr_sent_at
        is_open = self.state is State.OPEN
        # The hot path: well-formed Gy requests while OPEN need no transition
        # and no header check (split_frames lists the frames that are not).
        if is_open and not others:
            return frames
        app = []
        others = set(others)
        for i, frame in enumerate(frames):
            if is_open and i not in others:
                app.append(frame)
                continue
            if self.state is State.CLOSED:
                break
            item = self._receive_frame(frame, now)
            is_open = self.state is State.OPEN
            if item is not None:
                h, f = item
                if h.is_request:
                    app.append(f)
                else:
                    self.app_answers.append(f)
        return Frames.of(app)

    def handle_timer(self, now: float) -> None:
        if now < self.next_deadline():
            return
        if self.state is State.WAIT_CER:
            self._close("no CER within the timeout")
        elif self.state is State.CLOSING:
            self._close("no DPA within the timeout")
        elif self.state is State.OPEN:
            if self._dwr_sent_at is not None:
                self._close("peer silent: no answer to our DWR within Tw")
            else:
                self._send_request(c.CMD_DEVICE_WATCHDOG, self.identity.origin_avps
                                   + A.u32(c.AVP_ORIGIN_STATE_ID, self.identity.origin_state_id))
                self._dwr_sent_at = now
                self._tw = self._interval()

    def start_disconnect(self, now: float, cause: int = c.DISCONNECT_REBOOTING) -> None:
        """Send a DPR (RFC 6733 section 5.4); close after its DPA or a timeout."""
        if self.state is State.OPEN:
            self._send_request(c.CMD_DISCONNECT_PEER, self.identity.origin_avps
                               + A.u32(c.AVP_DISCONNECT_CAUSE, cause))
            self._dpr_sent_at = now
            self.state = State.CLOSING
        elif self.state is State.WAIT_CER:
            self._close("shutting down")

    @property
    def dpa_pending(self) -> bool:
        return self._pending_dpa is not None

    def send_pending_dpa(self) -> None:
        """Send the DPA to the peer's DPR, once its outstanding requests are
        answered; the connection then closes."""
        if self._pending_dpa is not None:
            self._out += self._pending_dpa
            self._pending_dpa = None
            self._close("peer disconnected (DPR)")

    # ------------------------------------------------------------ internals
    def _close(self, reason: str) -> None:
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.close_reason = reason

    def _send_request(self, code: int, body: bytes) -> None:
        hbh, e2e = self.new_ids()
        self._out += A.header(c.FLAG_REQUEST, code, c.APP_COMMON, hbh, e2e, len(body)) + body

    def _answer(self, req: Header, body: bytes) -> None:
        self._out += answer_header(req, len(body)) + body

    def _transition(self, event: Event) -> bool:
        new = _TRANSITIONS[self.state].get(event)
        if new is None:
            self._close(f"{event.value} not allowed in state {self.state.value}")
            return False
        self.state = new
        return True

    def _classify(self, h: Header) -> Event:
        if h.code == c.CMD_CAPABILITIES_EXCHANGE and h.is_request:
            return Event.CER
        if h.code == c.CMD_DEVICE_WATCHDOG:
            return Event.DWR if h.is_request else Event.DWA
        if h.code == c.CMD_DISCONNECT_PEER:
            return Event.DPR if h.is_request else Event.DPA
        return Event.APP_REQUEST if h.is_request else Event.APP_ANSWER

    def _receive_frame(self, frame: bytes, now: float):
        h = parse_header(frame)
        event = self._classify(h)
        if self.state is State.WAIT_CER and event is not Event.CER:
            self._close(f"first message was command {h.code}, not a CER")
            return None
        if self.state is State.CLOSING and event is Event.APP_REQUEST:
            # RFC 6733 5.4: after DPR no new requests; tell the peer to go elsewhere.
            self._error(frame, ProtocolError(c.UNABLE_TO_DELIVER, "peer is disconnecting"))
            return None
        before = self.state
        if not self._transition(event):
            return None
        try:
            if h.is_request:
                check_header(h)
            if event in (Event.CER, Event.DWR, Event.DPR) and h.flags & c.FLAG_PROXIABLE:
                # RFC 6733 5.3.1, 5.5.1, 5.4.1: base commands are not proxiable; the
                # answer does not echo the bit
                frame = frame[:4] + bytes([frame[4] & ~c.FLAG_PROXIABLE]) + frame[5:]
                raise ProtocolError(c.INVALID_HDR_BITS, f"command {h.code} with the P-bit set")
            if event is Event.CER:
                self._on_cer(h, frame)
            elif event is Event.DWR:
                self._on_dwr(h, frame)
            elif event is Event.DPR:
                self._on_dpr(h, frame)
            elif event is Event.DPA and before is State.CLOSING:
                self._close("DPA received")
            elif event is Event.APP_REQUEST:
                if h.code not in self.commands:
                    raise ProtocolError(c.COMMAND_UNSUPPORTED, f"command {h.code} is not supported")
                if h.app not in self.apps:
                    raise ProtocolError(c.APPLICATION_UNSUPPORTED, f"application {h.app} is not supported")
                return h, frame
            elif event is Event.APP_ANSWER:
                return h, frame
        except ProtocolError as e:
            # A CEA refusing with 5xxx is still a CEA: it carries our
            # capabilities (RFC 6733 5.3.2); 3xxx answers keep the short form.
            extra = self._capabilities() if event is Event.CER and not e.e_bit else b""
            self._out += error_answer(frame, e, self.identity.origin_avps, extra)
            if event is Event.CER:
                self._close(f"CER refused: {e.result_code} {e.message}")
            elif event is Event.DPR:
                # A refused DPR starts no disconnect: without this we would sit
                # in CLOSING with no DPA to send, no deadline and no watchdog.
                self.state = before
        return None

    def _error(self, frame: bytes, e: ProtocolError) -> None:
        self._out += error_answer(frame, e, self.identity.origin_avps)

    def _base_avps(self, frame: bytes, h: Header, rules) -> dict[int, list[A.RawAvp]]:
        if h.app != c.APP_COMMON:
            raise ProtocolError(c.APPLICATION_UNSUPPORTED, f"base command {h.code} with application {h.app}")
        avps = A.walk(frame, c.HEADER_LEN, len(frame))
        got = A.check_occurrences(avps, rules, f"command {h.code}")
        A.check_identities(got, f"command {h.code}")
        return got

    def _on_cer(self, h: Header, frame: bytes) -> None:
        """RFC 6733 section 5.3: authorize the peer, find a common application."""
        got = self._base_avps(frame, h, _CER_RULES)
        host = got[c.AVP_ORIGIN_HOST][0].data.decode("utf-8", "replace")
        realm = got[c.AVP_ORIGIN_REALM][0].data.decode("utf-8", "replace")
        if not self.authorize(host, realm):
            raise ProtocolError(c.UNKNOWN_PEER, f"peer {host} (realm {realm}) is not configured")
        offered, vendor_specific = set(), False
        for a in got.get(c.AVP_AUTH_APPLICATION_ID, ()):
            offered.add(a.u32)
        for vsa in got.get(c.AVP_VENDOR_SPECIFIC_APPLICATION_ID, ()):
            for ch in vsa.children or ():
                if ch.code == c.AVP_AUTH_APPLICATION_ID and ch.vendor == 0:
                    offered.add(ch.u32)
                    vendor_specific = True
        common = {app for app in offered if app in self.apps or app == c.APP_RELAY}
        if not common:
            raise ProtocolError(c.NO_COMMON_APPLICATION, "no common application: we offer Gy (4)")
        self.peer_host, self.peer_realm = host, realm
        ident = self.identity
        parts = [A.u32(c.AVP_RESULT_CODE, c.SUCCESS), ident.origin_avps, self._capabilities()]
        for app in sorted(self.apps):
            parts.append(A.u32(c.AVP_AUTH_APPLICATION_ID, app))
            if vendor_specific:
                parts.append(A.grouped(c.AVP_VENDOR_SPECIFIC_APPLICATION_ID, [
                    A.u32(c.AVP_VENDOR_ID, c.VENDOR_3GPP), A.u32(c.AVP_AUTH_APPLICATION_ID, app)]))
        parts.append(A.u32(c.AVP_FIRMWARE_REVISION, ident.firmware_revision, mandatory=False))
        self._answer(h, b"".join(parts))
        log.info("peer %s (realm %s) open", host, realm)

    def _capabilities(self) -> bytes:
        ident = self.identity
        parts = [A.address(c.AVP_HOST_IP_ADDRESS, ip) for ip in ident.host_ip_addresses]
        parts += [A.u32(c.AVP_VENDOR_ID, ident.vendor_id),
                  A.utf8(c.AVP_PRODUCT_NAME, ident.product_name, mandatory=False),
                  A.u32(c.AVP_ORIGIN_STATE_ID, ident.origin_state_id),
                  A.u32(c.AVP_SUPPORTED_VENDOR_ID, c.VENDOR_3GPP)]
        return b"".join(parts)

    def _on_dwr(self, h: Header, frame: bytes) -> None:
        self._base_avps(frame, h, _DWR_RULES)
        self._answer(h, A.u32(c.AVP_RESULT_CODE, c.SUCCESS) + self.identity.origin_avps
                     + A.u32(c.AVP_ORIGIN_STATE_ID, self.identity.origin_state_id))

    def _on_dpr(self, h: Header, frame: bytes) -> None:
        self._base_avps(frame, h, _DPR_RULES)
        body = A.u32(c.AVP_RESULT_CODE, c.SUCCESS) + self.identity.origin_avps
        self._pending_dpa = answer_header(h, len(body)) + body
