"""The peer state machine of a Diameter responder (RFC 6733 section 5.6,
responder side; RFC 3539 watchdog).

sans-IO, like aioquic's connection: three kinds of input, each returning
the events it produced - bytes received (`receive_data(data, now)`), time
passing (`handle_timer(now)`, due at `next_deadline()`), and calls
(`send_answers`, `start_disconnect`, `send_reauth`, `connection_lost`,
`abort`). Bytes out are taken with `data_to_send()`. Every change of state
goes through `_TRANSITIONS`; a message the state has no entry for is a
protocol violation and closes the connection.
"""
from __future__ import annotations

import enum
import itertools
import logging
import random
from dataclasses import dataclass, field
from typing import Callable, Union

from . import avp as A
from . import constants as c
from .errors import FramingError, ProtocolError
from .message import Frames, Header, answer_header, check_header, error_answer, parse_header, split_frames
from .reauth import ReAuthAnswered, ReAuthRequests, ReAuthTimedOut, rar

log = logging.getLogger("ocs.diameter.peer")


class State(enum.Enum):
    WAIT_CER = "WAIT_CER"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class Input(enum.Enum):
    """What moves the machine. A received message counts by its outcome
    where the outcome decides the next state (a CER accepted or refused)."""
    CER = "CER"
    CER_REFUSED = "CER_REFUSED"
    DWR = "DWR"
    DWA = "DWA"
    DPR = "DPR"
    DPR_REFUSED = "DPR_REFUSED"
    DPA = "DPA"
    APP_REQUEST = "APP_REQUEST"
    APP_ANSWER = "APP_ANSWER"
    CER_TIMEOUT = "CER_TIMEOUT"              # no CER within cer_timeout
    WATCHDOG = "WATCHDOG"                    # Tw of silence: we send a DWR
    WATCHDOG_FAILED = "WATCHDOG_FAILED"      # no answer to our DWR within another Tw
    DPA_TIMEOUT = "DPA_TIMEOUT"              # no DPA to our DPR within dpa_timeout
    DISCONNECT = "DISCONNECT"                # start_disconnect: we send a DPR
    DPA_SENT = "DPA_SENT"                    # the peer's DPR answered, its requests all answered first
    UNFRAMEABLE = "UNFRAMEABLE"              # a length we cannot frame: no way to find the next message
    VIOLATION = "VIOLATION"                  # a message the state has no entry for
    CONNECTION_LOST = "CONNECTION_LOST"      # the transport closed or failed
    ABORT = "ABORT"                          # the server gives up on the peer (it does not read its answers)


# States (RFC 6733 5.6, the responder's side; no election: we never connect out):
#   WAIT_CER  accepted; the first message must be a CER, within cer_timeout
#   OPEN      capabilities exchanged; requests flow both ways; the watchdog
#             runs (RFC 3539: a DWR after Tw of silence, close after another Tw)
#   CLOSING   a DPR was sent (by us: wait for the DPA) or received (answer the
#             requests in flight, then the DPA); no new requests are taken
#   CLOSED    terminal: every input is ignored
_ENDS = {Input.UNFRAMEABLE: State.CLOSED, Input.VIOLATION: State.CLOSED,
         Input.CONNECTION_LOST: State.CLOSED, Input.ABORT: State.CLOSED}
_TRANSITIONS: dict[State, dict[Input, State]] = {
    State.WAIT_CER: {Input.CER: State.OPEN, Input.CER_REFUSED: State.CLOSED,
                     Input.CER_TIMEOUT: State.CLOSED, Input.DISCONNECT: State.CLOSED, **_ENDS},
    State.OPEN: {Input.CER: State.OPEN, Input.CER_REFUSED: State.CLOSED,   # a second CER: answered again
                 Input.DWR: State.OPEN, Input.DWA: State.OPEN,
                 Input.DPR: State.CLOSING, Input.DPR_REFUSED: State.OPEN,
                 Input.DPA: State.OPEN,                # a DPA to no DPR of ours: ignored
                 Input.APP_REQUEST: State.OPEN, Input.APP_ANSWER: State.OPEN,
                 Input.WATCHDOG: State.OPEN, Input.WATCHDOG_FAILED: State.CLOSED,
                 Input.DISCONNECT: State.CLOSING, **_ENDS},
    State.CLOSING: {Input.DWR: State.CLOSING, Input.DWA: State.CLOSING,
                    Input.DPR: State.CLOSING, Input.DPR_REFUSED: State.CLOSING,
                    Input.DPA: State.CLOSED, Input.DPA_SENT: State.CLOSED, Input.DPA_TIMEOUT: State.CLOSED,
                    Input.APP_REQUEST: State.CLOSING,   # answered 3002 (RFC 6733 5.4)
                    Input.APP_ANSWER: State.CLOSING, Input.DISCONNECT: State.CLOSING, **_ENDS},
    State.CLOSED: {},
}
_REFUSED = {Input.CER: Input.CER_REFUSED, Input.DPR: Input.DPR_REFUSED}
_WHY = {Input.CER_TIMEOUT: "no CER within the timeout", Input.DPA_TIMEOUT: "no DPA within the timeout",
        Input.WATCHDOG_FAILED: "peer silent: no answer to our DWR within Tw", Input.DPA: "DPA received",
        Input.DPA_SENT: "peer disconnected (DPR)", Input.DISCONNECT: "shutting down"}


# ---------------------------------------------------------------- events out

@dataclass(frozen=True, slots=True)
class RequestsReceived:
    """Application requests to answer (each answer through `send_answers`)."""
    frames: Frames


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection reached CLOSED; the transport is to be closed once
    what `data_to_send` holds has gone out."""
    reason: str


Event = Union[RequestsReceived, ReAuthAnswered, ReAuthTimedOut, Closed]

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
        # what a CER or CEA says of us beside the identity and the applications (RFC 6733 5.3)
        self.capability_avps = b"".join(
            [A.address(c.AVP_HOST_IP_ADDRESS, ip) for ip in self.host_ip_addresses]
            + [A.u32(c.AVP_VENDOR_ID, self.vendor_id), A.utf8(c.AVP_PRODUCT_NAME, self.product_name, mandatory=False),
               A.u32(c.AVP_ORIGIN_STATE_ID, self.origin_state_id), A.u32(c.AVP_SUPPORTED_VENDOR_ID, c.VENDOR_3GPP)])


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
        self.outstanding = 0        # requests handed to the application and not answered yet
        self._inbuf = bytearray()
        self._out = bytearray()
        self._opened_at = now
        self._last_rx = now
        self._dwr_sent_at: float | None = None
        self._dpr_sent_at: float | None = None
        self._dpa: bytes | None = None      # our answer to the peer's DPR, sent once outstanding is 0
        self._reauths = ReAuthRequests()
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
        """Octets queued here, not yet taken by `data_to_send`."""
        return len(self._out)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

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

    @property
    def reauths_pending(self) -> int:
        """Our RARs on this connection not answered yet."""
        return len(self._reauths)

    def reauth_pending(self, session_id: bytes) -> bool:
        return session_id in self._reauths

    def _interval(self) -> float:
        """Tw with its jitter (RFC 3539 3.4.1), drawn anew each time the
        watchdog fires, so peers started together do not probe in step."""
        t = self.timers
        return max(t.tw + self._rng.uniform(-t.jitter, t.jitter), t.tw / 2) if t.jitter else t.tw

    def new_ids(self) -> tuple[int, int]:
        return next(self._hbh) & 0xFFFFFFFF, next(self._e2e) & 0xFFFFFFFF

    # ------------------------------------------------------------ inputs
    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed received bytes; returns what they produced: the application
        requests (one RequestsReceived), the answers to our RARs, Closed."""
        if self.state is State.CLOSED:
            return []
        self._inbuf += data
        # before the CER, a peer is nobody: it may hold MAX_BEFORE_CER, not a whole max_message
        limit = min(MAX_BEFORE_CER, self.max_message) if self.state is State.WAIT_CER else self.max_message
        try:
            frames, used, others = split_frames(self._inbuf, limit)
        except FramingError as e:
            return self._fire(Input.UNFRAMEABLE, f"unframeable stream: {e}")
        del self._inbuf[:used]
        if not frames:
            return []
        self._last_rx = now
        self._dwr_sent_at = None if self.state is State.OPEN else self._dwr_sent_at
        # The hot path: well-formed Gy requests while OPEN are the self-loop
        # (OPEN, APP_REQUEST) -> OPEN; split_frames lists the frames that are not.
        if self.state is State.OPEN and not others:
            self.outstanding += len(frames)
            return [RequestsReceived(frames)]
        app: list[bytes] = []
        events: list[Event] = []
        others = set(others)
        for i, frame in enumerate(frames):
            if self.state is State.CLOSED:
                break
            if self.state is State.OPEN and i not in others:
                app.append(frame)
                continue
            self._receive_frame(frame, app, events)
        if app:
            self.outstanding += len(app)
            events.insert(0, RequestsReceived(Frames.of(app)))
        return events + self._answer_dpr()

    def handle_timer(self, now: float) -> list[Event]:
        if now < self.next_deadline():
            return []
        if self.state is State.WAIT_CER:
            return self._fire(Input.CER_TIMEOUT)
        if self.state is State.CLOSING:
            return self._fire(Input.DPA_TIMEOUT)
        if self._dwr_sent_at is not None:
            return self._fire(Input.WATCHDOG_FAILED)
        self._send_request(c.CMD_DEVICE_WATCHDOG, self.identity.origin_avps
                           + A.u32(c.AVP_ORIGIN_STATE_ID, self.identity.origin_state_id))
        self._dwr_sent_at = now
        self._tw = self._interval()
        return self._fire(Input.WATCHDOG)

    def send_answers(self, answers: list[bytes]) -> list[Event]:
        """The application's answers to requests it was handed; the DPA to
        a DPR of the peer's goes out after the last of them (RFC 6733 5.4)."""
        self._out += b"".join(answers)
        self.outstanding -= len(answers)
        return self._answer_dpr() if self.state is State.CLOSING else []

    def start_disconnect(self, now: float, cause: int = c.DISCONNECT_REBOOTING) -> list[Event]:
        """Send a DPR (RFC 6733 section 5.4); close after its DPA or a timeout."""
        if self.state is State.OPEN:
            self._send_request(c.CMD_DISCONNECT_PEER, self.identity.origin_avps
                               + A.u32(c.AVP_DISCONNECT_CAUSE, cause))
            self._dpr_sent_at = now
        return self._fire(Input.DISCONNECT) if self.state is not State.CLOSED else []

    def send_reauth(self, session_id: bytes, destination_host: str | bytes, now: float) -> None:
        """Send a Re-Auth-Request for the session (RFC 4006 5.5); its answer
        comes back from `receive_data` as ReAuthAnswered. Only while OPEN,
        and one at a time per session (`reauth_pending`)."""
        assert self.state is State.OPEN and session_id not in self._reauths
        hbh, e2e = self.new_ids()
        self._out += rar(self.identity.origin_avps, hbh, e2e, session_id, destination_host, self.peer_realm)
        self._reauths.sent(hbh, session_id, now)

    def expire_reauths(self, now: float, timeout: float) -> list[ReAuthTimedOut]:
        """Forget our RARs unanswered for longer than `timeout`."""
        return self._reauths.expire(now, timeout)

    def connection_lost(self, reason: str) -> list[Event]:
        return self._fire(Input.CONNECTION_LOST, reason) if self.state is not State.CLOSED else []

    def abort(self, reason: str) -> list[Event]:
        return self._fire(Input.ABORT, reason) if self.state is not State.CLOSED else []

    # ------------------------------------------------------------ internals
    def _fire(self, event: Input, reason: str | None = None) -> list[Event]:
        """The one place the state changes."""
        new = _TRANSITIONS[self.state].get(event)
        if new is None:     # our own misuse (a message is checked before it is processed)
            raise RuntimeError(f"{event.value} not allowed in state {self.state.value}")
        old, self.state = self.state, new
        if new is State.CLOSED and old is not State.CLOSED:
            return [Closed(reason or _WHY.get(event, event.value))]
        return []

    def _answer_dpr(self) -> list[Event]:
        if self._dpa is None or self.outstanding > 0 or self.state is State.CLOSED:
            return []
        self._out += self._dpa
        self._dpa = None
        return self._fire(Input.DPA_SENT)

    def _send_request(self, code: int, body: bytes) -> None:
        hbh, e2e = self.new_ids()
        self._out += A.header(c.FLAG_REQUEST, code, c.APP_COMMON, hbh, e2e, len(body)) + body

    def _answer(self, req: Header, body: bytes) -> None:
        self._out += answer_header(req, len(body)) + body

    def _classify(self, h: Header) -> Input:
        if h.code == c.CMD_CAPABILITIES_EXCHANGE and h.is_request:
            return Input.CER
        if h.code == c.CMD_DEVICE_WATCHDOG:
            return Input.DWR if h.is_request else Input.DWA
        if h.code == c.CMD_DISCONNECT_PEER:
            return Input.DPR if h.is_request else Input.DPA
        return Input.APP_REQUEST if h.is_request else Input.APP_ANSWER

    def _receive_frame(self, frame: bytes, app: list[bytes], events: list[Event]) -> None:
        """One message that is not the hot path: checked against the table
        first, then handled, then the transition its outcome names."""
        h = parse_header(frame)
        kind = self._classify(h)
        if kind not in _TRANSITIONS[self.state]:
            why = f"first message was command {h.code}, not a CER" if self.state is State.WAIT_CER else \
                f"{kind.value} not allowed in state {self.state.value}"
            events += self._fire(Input.VIOLATION, why)
            return
        try:
            if h.is_request:
                check_header(h)
            if kind in (Input.CER, Input.DWR, Input.DPR) and h.flags & c.FLAG_PROXIABLE:
                # RFC 6733 5.3.1, 5.5.1, 5.4.1: base commands are not proxiable; the
                # answer does not echo the bit
                frame = frame[:4] + bytes([frame[4] & ~c.FLAG_PROXIABLE]) + frame[5:]
                raise ProtocolError(c.INVALID_HDR_BITS, f"command {h.code} with the P-bit set")
            self._handle(kind, h, frame, app, events)
        except ProtocolError as e:
            # A CEA refusing with 5xxx is still a CEA: it carries our
            # capabilities (RFC 6733 5.3.2); 3xxx answers keep the short form.
            extra = self._capabilities() if kind is Input.CER and not e.e_bit else b""
            self._out += error_answer(frame, e, self.identity.origin_avps, extra)
            # a refused DPR starts no disconnect; a refused CER closes
            events += self._fire(_REFUSED.get(kind, kind), f"CER refused: {e.result_code} {e.message}"
                                 if kind is Input.CER else None)
            return
        events += self._fire(kind)

    def _handle(self, kind: Input, h: Header, frame: bytes, app: list[bytes], events: list[Event]) -> None:
        if kind is Input.CER:
            self._on_cer(h, frame)
        elif kind is Input.DWR:
            self._on_dwr(h, frame)
        elif kind is Input.DPR:
            self._on_dpr(h, frame)
        elif kind is Input.APP_REQUEST:
            if self.state is State.CLOSING:
                # RFC 6733 5.4: after DPR no new requests; tell the peer to go elsewhere.
                self._out += error_answer(frame, ProtocolError(c.UNABLE_TO_DELIVER, "peer is disconnecting"),
                                          self.identity.origin_avps)
                return
            if h.code not in self.commands:
                raise ProtocolError(c.COMMAND_UNSUPPORTED, f"command {h.code} is not supported")
            if h.app not in self.apps:
                raise ProtocolError(c.APPLICATION_UNSUPPORTED, f"application {h.app} is not supported")
            app.append(frame)
        elif kind is Input.APP_ANSWER:
            answered = self._reauths.match(frame)
            if answered is None:
                log.debug("peer %s: dropped an answer matching no request of ours", self.peer_host)
            else:
                events.append(answered)

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
        return self.identity.capability_avps

    def _on_dwr(self, h: Header, frame: bytes) -> None:
        self._base_avps(frame, h, _DWR_RULES)
        self._answer(h, A.u32(c.AVP_RESULT_CODE, c.SUCCESS) + self.identity.origin_avps
                     + A.u32(c.AVP_ORIGIN_STATE_ID, self.identity.origin_state_id))

    def _on_dpr(self, h: Header, frame: bytes) -> None:
        self._base_avps(frame, h, _DPR_RULES)
        body = A.u32(c.AVP_RESULT_CODE, c.SUCCESS) + self.identity.origin_avps
        self._dpa = answer_header(h, len(body)) + body
