"""The peer state machine (RFC 6733 section 5.6, responder side; RFC 3539
watchdog), driven with bytes and `now` only: no sockets, no clock.

The peer's messages are built with python-diameter and our output is decoded
with python-diameter, so a mistake shared by our encoder and our decoder
cannot hide. Most behaviour is a table of scripts; each step is

    Step(now, do, out, state, deadline, app=())

`do` is what happens at `now` (bytes received, the timer, an API call), `out`
the messages we write in response (described as "DWA 2001", "CCA 3002 E",
"DPR"), `state` and `deadline` what `state` and `next_deadline()` are after
it, and `app` the commands handed to the application (RequestsReceived).
Every step also checks that a Closed event comes out exactly when the state
becomes CLOSED. Every script runs twice: each receive in one call, and byte
by byte.

Timers in every script: cer_timeout 10, Tw 30, dpa_timeout 5.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import pytest
from diameter.message import Message
from diameter.message.avp.grouped import VendorSpecificApplicationId
from diameter.message.commands.capabilities_exchange import CapabilitiesExchangeRequest
from diameter.message.commands.credit_control import CreditControlAnswer, CreditControlRequest
from diameter.message.commands.device_watchdog import DeviceWatchdogAnswer, DeviceWatchdogRequest
from diameter.message.commands.disconnect_peer import DisconnectPeerAnswer, DisconnectPeerRequest
from diameter.message.commands.re_auth import ReAuthAnswer

from ocs.diameter.message import parse_header
from ocs.diameter.peer import Closed, LocalIdentity, PeerConnection, PeerTimers, RequestsReceived, State
from ocs.diameter.reauth import ReAuthAnswered, ReAuthResult, ReAuthTimedOut

INF = float("inf")
PEER_HOST, PEER_REALM = "pgw.peer.example", "peer.example"
US = LocalIdentity(origin_host="ocs.test.example", origin_realm="test.example",
                   host_ip_addresses=("192.0.2.7", "2001:db8::7"), vendor_id=99999,
                   product_name="ocs-under-test", origin_state_id=1234)
TIMERS = PeerTimers(cer_timeout=10.0, tw=30.0, dpa_timeout=5.0, jitter=0.0)   # exact times; jitter: its own test
MAX_MESSAGE = 4096

APP_GY, APP_RELAY, APP_RX = 4, 0xFFFFFFFF, 16777236
APP_GX = 16777238
(AVP_HOST_IP_ADDRESS, AVP_AUTH_APPLICATION_ID, AVP_VENDOR_SPECIFIC_APPLICATION_ID, AVP_ORIGIN_HOST,
 AVP_VENDOR_ID, AVP_RESULT_CODE, AVP_PRODUCT_NAME, AVP_FAILED_AVP, AVP_ORIGIN_REALM,
 AVP_DISCONNECT_CAUSE) = 257, 258, 260, 264, 266, 268, 269, 279, 296, 273
NAMES = {257: "CE", 258: "RA", 272: "CC", 280: "DW", 282: "DP"}

_ids = itertools.count(0x7E000001)


# ---------------------------------------------------------------- the peer's messages

def _request(msg: Message, app: int = 0) -> bytes:
    msg.header.is_request = True
    msg.header.application_id = app
    msg.header.hop_by_hop_identifier = next(_ids)
    msg.header.end_to_end_identifier = next(_ids)
    return msg.as_bytes()


def cer(*, host: str | None = PEER_HOST, apps=(APP_GY,), vendor_specific=(), ip="198.51.100.1") -> bytes:
    req = CapabilitiesExchangeRequest()
    if host is not None:
        req.origin_host = host.encode()
    req.origin_realm = PEER_REALM.encode()
    req.host_ip_address = [ip]
    req.vendor_id = 10415
    req.product_name = "peer-under-test"
    if apps:
        req.auth_application_id = list(apps)
    if vendor_specific:
        req.vendor_specific_application_id = [
            VendorSpecificApplicationId(vendor_id=10415, auth_application_id=a) for a in vendor_specific]
    return _request(req)


def dwr() -> bytes:
    req = DeviceWatchdogRequest()
    req.origin_host = PEER_HOST.encode()
    req.origin_realm = PEER_REALM.encode()
    return _request(req)


def dpr(cause: int | None = 0, app: int = 0) -> bytes:
    req = DisconnectPeerRequest()
    req.origin_host = PEER_HOST.encode()
    req.origin_realm = PEER_REALM.encode()
    if cause is not None:
        req.disconnect_cause = cause
    return _request(req, app)


def ccr(app: int = APP_GY) -> bytes:
    req = CreditControlRequest()
    req.session_id = f"{PEER_HOST};1;{next(_ids)}"
    req.origin_host = PEER_HOST.encode()
    req.origin_realm = PEER_REALM.encode()
    req.destination_realm = US.origin_realm.encode()
    req.auth_application_id = app
    req.service_context_id = "32251@3gpp.org"
    req.cc_request_type = 1
    req.cc_request_number = 0
    return _request(req, app)


def raa() -> bytes:
    """An answer to a RAR we (the application) sent: APP_ANSWER traffic."""
    ans = ReAuthAnswer()
    ans.header.is_request = False
    ans.header.application_id = APP_GY
    ans.header.hop_by_hop_identifier = next(_ids)
    ans.header.end_to_end_identifier = next(_ids)
    ans.session_id = f"{PEER_HOST};1;raa"
    ans.origin_host = PEER_HOST.encode()
    ans.origin_realm = PEER_REALM.encode()
    ans.result_code = 2001
    return ans.as_bytes()


def decode(data: bytes) -> Message:
    return Message.from_bytes(data, plain_msg=True)


def frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 1:pos + 4], "big")
        assert length >= 20 and pos + length <= len(data), f"we wrote an unframeable message at {pos}"
        out.append(data[pos:pos + length])
        pos += length
    return out


def values(msg: Message, code: int) -> list:
    return [a.value for a in msg.find_avps((code, 0))]


def one(msg: Message, code: int):
    found = values(msg, code)
    assert len(found) == 1, f"{len(found)} AVPs {code} in {msg}"
    return found[0]


def describe(msg: Message) -> str:
    h = msg.header
    name = NAMES.get(h.command_code, str(h.command_code)) + ("R" if h.is_request else "A")
    if h.is_request:
        return name
    return f"{name} {one(msg, AVP_RESULT_CODE)}" + (" E" if h.is_error else "")


# ---------------------------------------------------------------- the script runner

@dataclass(frozen=True)
class Recv:
    data: bytes


@dataclass(frozen=True)
class Call:
    """An API call on the connection: `start_disconnect`, or `send_answers`
    of the application's answer to the last request it was handed."""
    name: str


@dataclass(frozen=True)
class AnswerOurs:
    """The peer answers the last request of `code` we sent (DWA, DPA)."""
    code: int


TIMER = Call("handle_timer")
DISCONNECT = Call("start_disconnect")
SEND_CCA = Call("send_cca")


class Step(NamedTuple):
    now: float
    do: object
    out: list[str]
    state: State
    deadline: float
    app: tuple[str, ...] = ()


def new_conn(now: float = 0.0, authorize: Callable[[str, str], bool] = lambda h, r: True) -> PeerConnection:
    return PeerConnection(US, authorize, now, timers=TIMERS, max_message=MAX_MESSAGE)


class Runner:
    """Plays a script against one connection and checks what holds for every
    message we write: answers copy the identifiers of a request the peer sent
    (RFC 6733 section 6.2) and carry our Origin-Host and Origin-Realm; our
    own requests are base-protocol requests with fresh identifiers."""

    def __init__(self, conn: PeerConnection, bytewise: bool):
        self.conn = conn
        self.bytewise = bytewise
        self.peer_requests: dict[int, int] = {}     # hop-by-hop -> end-to-end
        self.our_requests: dict[int, Message] = {}  # command code -> last one sent
        self.our_hbh: set[int] = set()
        self.delivered: list[bytes] = []

    def feed(self, data: bytes, now: float) -> list:
        for f in frames(data):
            m = decode(f)
            if m.header.is_request:
                self.peer_requests[m.header.hop_by_hop_identifier] = m.header.end_to_end_identifier
        if not self.bytewise:
            return self.conn.receive_data(data, now)
        events = []
        for i in range(len(data)):
            events += self.conn.receive_data(data[i:i + 1], now)
        return events

    def do(self, now: float, action) -> list:
        c = self.conn
        if isinstance(action, Recv):
            return self.feed(action.data, now)
        if isinstance(action, AnswerOurs):
            req = self.our_requests[action.code]
            ans = {280: DeviceWatchdogAnswer, 282: DisconnectPeerAnswer}[action.code]()
            ans.header.is_request = False
            ans.header.hop_by_hop_identifier = req.header.hop_by_hop_identifier
            ans.header.end_to_end_identifier = req.header.end_to_end_identifier
            ans.result_code = 2001
            ans.origin_host = PEER_HOST.encode()
            ans.origin_realm = PEER_REALM.encode()
            return self.feed(ans.as_bytes(), now)
        if action == TIMER:
            return c.handle_timer(now)
        if action == DISCONNECT:
            return c.start_disconnect(now)
        if action == SEND_CCA:
            req = decode(self.delivered[-1])
            ans = CreditControlAnswer()
            ans.header.is_request = False
            ans.header.is_proxyable = True
            ans.header.application_id = APP_GY
            ans.header.hop_by_hop_identifier = req.header.hop_by_hop_identifier
            ans.header.end_to_end_identifier = req.header.end_to_end_identifier
            ans.session_id = one(req, 263)
            ans.result_code = 2001
            ans.origin_host = US.origin_host.encode()
            ans.origin_realm = US.origin_realm.encode()
            ans.auth_application_id = APP_GY
            ans.cc_request_type = 1
            ans.cc_request_number = 0
            return c.send_answers([ans.as_bytes()])
        raise AssertionError(action)

    def written(self) -> list[str]:
        out = []
        for f in frames(self.conn.data_to_send()):
            m = decode(f)
            h = m.header
            assert [v.decode() for v in values(m, AVP_ORIGIN_HOST)] == [US.origin_host], m
            assert [v.decode() for v in values(m, AVP_ORIGIN_REALM)] == [US.origin_realm], m
            if h.is_request:
                assert h.application_id == 0 and h.command_code in (280, 282), m
                assert h.hop_by_hop_identifier not in self.our_hbh, "hop-by-hop identifier reused"
                self.our_hbh.add(h.hop_by_hop_identifier)
                self.our_requests[h.command_code] = m
            else:
                assert self.peer_requests.get(h.hop_by_hop_identifier) == h.end_to_end_identifier, \
                    f"{describe(m)} does not copy the identifiers of a request the peer sent"
            out.append(describe(m))
        return out

    def play(self, script: list[Step]) -> None:
        for i, step in enumerate(script):
            was_closed = self.conn.closed
            events = self.do(step.now, step.do)
            app = [f for e in events if isinstance(e, RequestsReceived) for f in e.frames]
            closes = [e for e in events if isinstance(e, Closed)]
            assert len(closes) == (self.conn.closed and not was_closed), f"step {i}: {events}"
            self.delivered += app
            got = Step(step.now, step.do, self.written(), self.conn.state, self.conn.next_deadline(),
                       tuple(NAMES.get(h.code, str(h.code)) + ("R" if h.is_request else "A")
                             for h in map(parse_header, app)))
            assert got == step, f"step {i} at t={step.now}: got {got[2:]}, expected {step[2:]}"


def OPEN_AT(t: float) -> Step:
    return Step(t, Recv(cer()), ["CEA 2001"], State.OPEN, t + TIMERS.tw)


S = State
SCRIPTS: dict[str, list[Step]] = {
    # ---- capabilities exchange (RFC 6733 section 5.3)
    "CER opens": [
        OPEN_AT(0.0),
    ],
    "CER in time cancels the CER timer": [
        Step(9.9, TIMER, [], S.WAIT_CER, 10.0),
        Step(9.9, Recv(cer()), ["CEA 2001"], S.OPEN, 39.9),
        Step(10.0, TIMER, [], S.OPEN, 39.9),
    ],
    "no CER before cer_timeout": [
        Step(0.0, TIMER, [], S.WAIT_CER, 10.0),
        Step(9.99, TIMER, [], S.WAIT_CER, 10.0),
        Step(10.0, TIMER, [], S.CLOSED, INF),
    ],
    "first message a DWR": [
        Step(1.0, Recv(dwr()), [], S.CLOSED, INF),
    ],
    "first message a CCR": [
        Step(1.0, Recv(ccr()), [], S.CLOSED, INF),
    ],
    "first message a DPR": [
        Step(1.0, Recv(dpr()), [], S.CLOSED, INF),
    ],
    "nothing after CLOSED": [
        Step(1.0, Recv(dwr()), [], S.CLOSED, INF),
        Step(2.0, Recv(cer() + dwr()), [], S.CLOSED, INF),
        Step(100.0, TIMER, [], S.CLOSED, INF),
        Step(101.0, DISCONNECT, [], S.CLOSED, INF),
    ],
    "start_disconnect before the CER closes": [
        Step(1.0, DISCONNECT, [], S.CLOSED, INF),
    ],

    # ---- device watchdog (RFC 6733 section 5.5, RFC 3539 section 3.4)
    "DWR answered": [
        OPEN_AT(0.0),
        Step(5.0, Recv(dwr()), ["DWA 2001"], S.OPEN, 35.0),
    ],
    "our DWR after Tw of silence, DWA resets": [
        OPEN_AT(0.0),
        Step(29.9, TIMER, [], S.OPEN, 30.0),
        Step(30.0, TIMER, ["DWR"], S.OPEN, 60.0),
        Step(31.0, TIMER, [], S.OPEN, 60.0),
        Step(45.0, AnswerOurs(280), [], S.OPEN, 75.0),
        Step(75.0, TIMER, ["DWR"], S.OPEN, 105.0),
        Step(76.0, AnswerOurs(280), [], S.OPEN, 106.0),
    ],
    "no DWA within another Tw": [
        OPEN_AT(0.0),
        Step(30.0, TIMER, ["DWR"], S.OPEN, 60.0),
        Step(59.9, TIMER, [], S.OPEN, 60.0),
        Step(60.0, TIMER, [], S.CLOSED, INF),
    ],
    "a late timer still sends the DWR first": [
        OPEN_AT(0.0),
        Step(500.0, TIMER, ["DWR"], S.OPEN, 530.0),
        Step(530.0, TIMER, [], S.CLOSED, INF),
    ],
    "traffic of any kind resets the watchdog": [
        OPEN_AT(0.0),
        Step(20.0, Recv(dwr()), ["DWA 2001"], S.OPEN, 50.0),
        Step(40.0, Recv(ccr()), [], S.OPEN, 70.0, ("CCR",)),
        Step(41.0, SEND_CCA, ["CCA 2001"], S.OPEN, 70.0),     # our own sending does not count
        Step(60.0, Recv(raa()), [], S.OPEN, 90.0),       # matches no RAR of ours: dropped
        Step(80.0, Recv(ccr(APP_GX)), ["CCA 3007 E"], S.OPEN, 110.0),
        Step(110.0, TIMER, ["DWR"], S.OPEN, 140.0),
        Step(120.0, Recv(ccr()), [], S.OPEN, 150.0, ("CCR",)),  # a CCR instead of the DWA
        Step(149.0, TIMER, [], S.OPEN, 150.0),
        Step(150.0, TIMER, ["DWR"], S.OPEN, 180.0),
    ],

    # ---- application requests
    "CCR handed to the application": [
        OPEN_AT(0.0),
        Step(1.0, Recv(ccr()), [], S.OPEN, 31.0, ("CCR",)),
        Step(1.5, SEND_CCA, ["CCA 2001"], S.OPEN, 31.0),
    ],
    "unsupported application id": [
        OPEN_AT(0.0),
        Step(1.0, Recv(ccr(APP_GX)), ["CCA 3007 E"], S.OPEN, 31.0),
        Step(2.0, Recv(ccr(APP_RX)), ["CCA 3007 E"], S.OPEN, 32.0),
        Step(3.0, Recv(ccr()), [], S.OPEN, 33.0, ("CCR",)),
    ],

    # ---- disconnect from the peer (RFC 6733 section 5.4)
    "DPR answered": [
        OPEN_AT(0.0),
        Step(1.0, Recv(dpr()), ["DPA 2001"], S.CLOSED, INF),
    ],
    "DPA held while an answer is in flight": [
        OPEN_AT(0.0),
        Step(1.0, Recv(ccr() + dpr()), [], S.CLOSING, INF, ("CCR",)),
        Step(2.0, SEND_CCA, ["CCA 2001", "DPA 2001"], S.CLOSED, INF),
    ],
    "DPA after the last of several answers": [
        OPEN_AT(0.0),
        Step(1.0, Recv(ccr()), [], S.OPEN, 31.0, ("CCR",)),
        Step(2.0, Recv(ccr() + dpr()), [], S.CLOSING, INF, ("CCR",)),
        Step(3.0, SEND_CCA, ["CCA 2001"], S.CLOSING, INF),
        Step(4.0, SEND_CCA, ["CCA 2001", "DPA 2001"], S.CLOSED, INF),
    ],
    "requests after the peer's DPR get 3002": [
        OPEN_AT(0.0),
        Step(1.0, Recv(ccr() + dpr()), [], S.CLOSING, INF, ("CCR",)),
        Step(2.0, Recv(ccr()), ["CCA 3002 E"], S.CLOSING, INF),
        Step(3.0, Recv(dwr()), ["DWA 2001"], S.CLOSING, INF),
        Step(4.0, SEND_CCA, ["CCA 2001", "DPA 2001"], S.CLOSED, INF),
    ],

    "a refused DPR starts no disconnect": [
        OPEN_AT(0.0),
        Step(1.0, Recv(dpr(cause=None)), ["DPA 5005"], S.OPEN, 31.0),
        Step(2.0, Recv(dpr(app=APP_GY)), ["DPA 3007 E"], S.OPEN, 32.0),
        Step(3.0, Recv(ccr()), [], S.OPEN, 33.0, ("CCR",)),
        Step(3.5, SEND_CCA, ["CCA 2001"], S.OPEN, 33.0),
        Step(33.0, TIMER, ["DWR"], S.OPEN, 63.0),
        Step(34.0, Recv(dpr()), ["DPA 2001"], S.CLOSED, INF),
    ],

    # ---- disconnect by us
    "our DPR, then the DPA": [
        OPEN_AT(0.0),
        Step(5.0, DISCONNECT, ["DPR"], S.CLOSING, 10.0),
        Step(6.0, AnswerOurs(282), [], S.CLOSED, INF),
    ],
    "our DPR, no DPA within dpa_timeout": [
        OPEN_AT(0.0),
        Step(5.0, DISCONNECT, ["DPR"], S.CLOSING, 10.0),
        Step(9.9, TIMER, [], S.CLOSING, 10.0),
        Step(10.0, TIMER, [], S.CLOSED, INF),
    ],
    "our DPR while a DWR is outstanding": [
        OPEN_AT(0.0),
        Step(30.0, TIMER, ["DWR"], S.OPEN, 60.0),
        Step(31.0, DISCONNECT, ["DPR"], S.CLOSING, 36.0),
        Step(32.0, AnswerOurs(280), [], S.CLOSING, 36.0),
        Step(36.0, TIMER, [], S.CLOSED, INF),
    ],
    "requests while CLOSING get 3002": [
        OPEN_AT(0.0),
        Step(5.0, DISCONNECT, ["DPR"], S.CLOSING, 10.0),
        Step(6.0, Recv(ccr()), ["CCA 3002 E"], S.CLOSING, 10.0),
        Step(7.0, Recv(ccr() + ccr()), ["CCA 3002 E", "CCA 3002 E"], S.CLOSING, 10.0),
        Step(8.0, Recv(dwr()), ["DWA 2001"], S.CLOSING, 10.0),
        Step(8.0, AnswerOurs(282), [], S.CLOSED, INF),
    ],
    "a refused DPR while our DPR is out keeps the DPA deadline": [
        OPEN_AT(0.0),
        Step(5.0, DISCONNECT, ["DPR"], S.CLOSING, 10.0),
        Step(6.0, Recv(dpr(cause=None)), ["DPA 5005"], S.CLOSING, 10.0),
        Step(10.0, TIMER, [], S.CLOSED, INF),
    ],
    "DPRs crossing": [
        OPEN_AT(0.0),
        Step(5.0, DISCONNECT, ["DPR"], S.CLOSING, 10.0),
        Step(6.0, Recv(dpr()), ["DPA 2001"], S.CLOSED, INF),
    ],
    "start_disconnect is idempotent": [
        OPEN_AT(0.0),
        Step(5.0, DISCONNECT, ["DPR"], S.CLOSING, 10.0),
        Step(6.0, DISCONNECT, [], S.CLOSING, 10.0),
    ],

    # ---- several messages in one call
    "CER, DWR and CCRs in one call": [
        Step(1.0, Recv(cer() + dwr() + ccr() + ccr(APP_GX) + ccr()), ["CEA 2001", "DWA 2001", "CCA 3007 E"],
             S.OPEN, 31.0, ("CCR", "CCR")),
    ],
    "messages after a DPR in the same call": [
        OPEN_AT(0.0),
        # a CCR in flight holds the DPA, so where the reads split does not matter
        Step(1.0, Recv(ccr() + dwr() + dpr() + ccr() + dwr()), ["DWA 2001", "CCA 3002 E", "DWA 2001"],
             S.CLOSING, INF, ("CCR",)),
        Step(2.0, SEND_CCA, ["CCA 2001", "DPA 2001"], S.CLOSED, INF),
    ],
    "messages after a refused CER in the same call": [
        Step(1.0, Recv(cer(apps=(APP_GX,)) + dwr() + ccr()), ["CEA 5010"], S.CLOSED, INF),
    ],
}


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("script", list(SCRIPTS.values()), ids=list(SCRIPTS))
def test_script(script, bytewise):
    Runner(new_conn(0.0), bytewise).play(script)


# ---------------------------------------------------------------- CER outcomes

CER_CASES = [
    # name, CER, authorised?, Result-Code, E-bit, state after
    ("Gy", cer(), True, 2001, False, State.OPEN),
    ("Gy among others", cer(apps=(APP_GX, APP_GY, APP_RX)), True, 2001, False, State.OPEN),
    ("Gy vendor-specific", cer(apps=(), vendor_specific=(APP_GY,)), True, 2001, False, State.OPEN),
    ("relay", cer(apps=(APP_RELAY,)), True, 2001, False, State.OPEN),
    ("unauthorised", cer(), False, 3010, True, State.CLOSED),
    ("only Gx", cer(apps=(APP_GX,)), True, 5010, False, State.CLOSED),
    ("only Gx vendor-specific", cer(apps=(), vendor_specific=(APP_GX,)), True, 5010, False, State.CLOSED),
    ("no application", cer(apps=()), True, 5010, False, State.CLOSED),
    ("no Origin-Host", cer(host=None), True, 5005, False, State.CLOSED),
    # RFC 6733 5.3.1: a CER is not proxiable; 3008 with the E-bit, no P-bit echoed
    ("P-bit", cer()[:4] + bytes([cer()[4] | 0x40]) + cer()[5:], True, 3008, True, State.CLOSED),
    ("empty Origin-Host", cer(host=""), True, 5004, False, State.CLOSED),
    ("Origin-Host with a newline", cer(host="pgw\nforged log line"), True, 5004, False, State.CLOSED),
]


@pytest.mark.parametrize("data, authorised, result_code, e_bit, state",
                         [case[1:] for case in CER_CASES], ids=[case[0] for case in CER_CASES])
def test_cer(data, authorised, result_code, e_bit, state):
    asked = []

    def authorize(host: str, realm: str) -> bool:
        asked.append((host, realm))
        return authorised

    conn = new_conn(authorize=authorize)
    events = conn.receive_data(data, 1.0)
    assert not any(isinstance(e, RequestsReceived) for e in events)
    [cea] = [decode(f) for f in frames(conn.data_to_send())]
    req = decode(data)
    assert cea.header.command_code == 257 and not cea.header.is_request
    assert cea.header.is_error is e_bit
    assert not cea.header.is_proxyable
    assert (cea.header.hop_by_hop_identifier, cea.header.end_to_end_identifier) == \
        (req.header.hop_by_hop_identifier, req.header.end_to_end_identifier)
    assert one(cea, AVP_RESULT_CODE) == result_code
    assert one(cea, AVP_ORIGIN_HOST) == US.origin_host.encode()
    assert one(cea, AVP_ORIGIN_REALM) == US.origin_realm.encode()
    assert conn.state is state
    if result_code not in (5005, 5004, 3008):
        assert asked == [(PEER_HOST, PEER_REALM)]
    if state is State.OPEN:
        assert (conn.peer_host, conn.peer_realm) == (PEER_HOST, PEER_REALM)
    else:
        [closed] = events
        assert isinstance(closed, Closed) and str(result_code) in closed.reason
        assert conn.next_deadline() == INF


def test_cer_missing_origin_host_names_it_in_failed_avp():
    conn = new_conn()
    conn.receive_data(cer(host=None), 1.0)
    cea = decode(conn.data_to_send())
    [failed] = values(cea, AVP_FAILED_AVP)
    assert [a.code for a in failed] == [AVP_ORIGIN_HOST]


@pytest.mark.parametrize("vendor_specific", [False, True], ids=["Auth-Application-Id", "Vendor-Specific"])
def test_cea_carries_our_capabilities(vendor_specific):
    conn = new_conn()
    data = cer(apps=(), vendor_specific=(APP_GY,)) if vendor_specific else cer()
    conn.receive_data(data, 1.0)
    cea = decode(conn.data_to_send())
    assert one(cea, AVP_RESULT_CODE) == 2001
    assert one(cea, AVP_ORIGIN_HOST) == b"ocs.test.example"
    assert one(cea, AVP_ORIGIN_REALM) == b"test.example"
    assert values(cea, AVP_HOST_IP_ADDRESS) == [(1, "192.0.2.7"), (2, "2001:db8::7")]
    assert one(cea, AVP_VENDOR_ID) == 99999
    assert one(cea, AVP_PRODUCT_NAME) == "ocs-under-test"
    assert values(cea, AVP_AUTH_APPLICATION_ID) == [APP_GY]
    vsai = values(cea, AVP_VENDOR_SPECIFIC_APPLICATION_ID)
    if vendor_specific:
        [children] = vsai
        got = {a.code: a.value for a in children}
        assert got[AVP_AUTH_APPLICATION_ID] == APP_GY
        assert AVP_VENDOR_ID in got
    else:
        assert vsai == []


# ---------------------------------------------------------------- framing

def _header_with_length(length: int) -> bytes:
    return bytes([1]) + length.to_bytes(3, "big") + bytes([0x80, 0, 1, 0x18]) + bytes(12)


@pytest.mark.parametrize("opened", [False, True], ids=["WAIT_CER", "OPEN"])
@pytest.mark.parametrize("length", [0, 4, 19, MAX_MESSAGE + 1, 0xFFFFFF])
def test_unframeable_length_closes(length, opened):
    """RFC 6733 section 3: a length we cannot frame leaves no way to find the
    next message; the connection closes without an answer."""
    conn = new_conn()
    if opened:
        conn.receive_data(cer(), 0.0)
        conn.data_to_send()
    [closed] = conn.receive_data(_header_with_length(length), 1.0)
    assert isinstance(closed, Closed) and closed.reason.startswith("unframeable stream")
    assert conn.state is State.CLOSED
    assert conn.data_to_send() == b""
    assert conn.receive_data(dwr(), 2.0) == []
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("length", [19, MAX_MESSAGE + 1])
def test_unframeable_length_is_seen_from_four_bytes(length):
    conn = new_conn()
    head = _header_with_length(length)
    for i in range(3):
        conn.receive_data(head[i:i + 1], 1.0)
        assert conn.state is State.WAIT_CER
    conn.receive_data(head[3:4], 1.0)
    assert conn.state is State.CLOSED


def test_message_of_exactly_max_message_is_framed():
    conn = new_conn()
    conn.receive_data(cer(), 0.0)
    conn.data_to_send()
    ccr_bytes = ccr()
    pad = MAX_MESSAGE - len(ccr_bytes)
    # An unknown AVP without the M-bit is ignored, so it pads the CCR to the limit.
    filler = (999999).to_bytes(4, "big") + (pad).to_bytes(4, "big") + bytes(pad - 8)
    big = bytes([1]) + MAX_MESSAGE.to_bytes(3, "big") + ccr_bytes[4:] + filler
    [received] = conn.receive_data(big, 1.0)
    [frame] = received.frames
    assert frame == big and conn.state is State.OPEN


# ---------------------------------------------------------------- chunking

def _stream() -> list[bytes]:
    return [cer(), dwr(), ccr(), ccr(APP_GX), raa(), dwr(), ccr(), dpr(), ccr(), dwr()]


def test_chunking_does_not_change_the_result():
    """One call with everything, one call per message, and every chunk size
    from one byte up: the same bytes out, the same messages delivered, the
    same state."""
    messages = _stream()
    data = b"".join(messages)
    ways = {"whole": [data], "per message": messages}
    for n in (1, 2, 3, 7, 19, 20, 21, 64, 333):
        ways[f"{n}-byte chunks"] = [data[i:i + n] for i in range(0, len(data), n)]
    results = {}
    for name, chunks in ways.items():
        conn = new_conn()
        app, others = [], []
        for chunk in chunks:
            for e in conn.receive_data(chunk, 1.0):
                if isinstance(e, RequestsReceived):
                    app += e.frames
                else:
                    others.append(e)
        results[name] = (app, others, conn.data_to_send(), conn.state, conn.next_deadline())
    expected = results.pop("whole")
    assert [describe(decode(f)) for f in frames(expected[2])] == [
        "CEA 2001", "DWA 2001", "CCA 3007 E", "DWA 2001", "CCA 3002 E", "DWA 2001"]
    # the RAA answers no RAR of ours: dropped; the DPA waits for the two CCAs
    assert len(expected[0]) == 2 and expected[1] == [] and expected[3] is State.CLOSING
    for name, got in results.items():
        assert got == expected, name


@pytest.mark.parametrize("cer_bytes, code", [(cer(apps=(16777238,)), 5010), (cer(host=None), 5005)],
                         ids=["no-common-application", "missing-origin-host"])
def test_cea_refusing_with_5xxx_still_carries_our_capabilities(cer_bytes, code):
    """RFC 6733 5.3.2: a CEA is a CEA whatever its Result-Code; only 3xxx
    answers (E-bit) may use the shorter answer-message form."""
    conn = new_conn()
    conn.receive_data(cer_bytes, 0.0)
    cea = decode(conn.data_to_send())
    assert cea.header.command_code == 257 and not cea.header.is_error
    codes = {a.code for a in cea.avps}
    assert {268, 264, 296, 257, 266, 269} <= codes     # Result-Code, Origin-*, Host-IP-Address, Vendor-Id, Product-Name
    assert next(a.value for a in cea.avps if a.code == 268) == code
    assert conn.state is State.CLOSED


def test_the_watchdog_interval_has_jitter():
    """RFC 3539 3.4.1: Tw is jittered by up to 2 s each time it is set, so
    connections opened together do not send their DWRs in step."""
    import random
    seen = set()
    for seed in range(20):
        conn = PeerConnection(US, lambda h, r: True, 0.0, timers=PeerTimers(tw=30.0), rng=random.Random(seed))
        conn.receive_data(cer(), 0.0)
        conn.data_to_send()
        first = conn.next_deadline()
        assert 28.0 <= first <= 32.0
        conn.handle_timer(first)                       # the DWR goes out; the next interval is drawn
        assert b"" != conn.data_to_send()
        seen.add(round(first, 3))
        assert 28.0 <= conn.next_deadline() - first <= 32.0
    assert len(seen) > 10


def test_an_unsolicited_dpa_is_ignored():
    """A DPA when we sent no DPR does not close the connection."""
    conn = new_conn()
    conn.receive_data(cer(), 0.0)
    conn.data_to_send()
    dpa = DisconnectPeerAnswer()
    dpa.header.hop_by_hop_identifier, dpa.header.end_to_end_identifier = 7, 7
    dpa.result_code = 2001
    dpa.origin_host, dpa.origin_realm = PEER_HOST.encode(), PEER_REALM.encode()
    assert conn.receive_data(dpa.as_bytes(), 1.0) == []
    assert conn.state is State.OPEN
    [received] = conn.receive_data(ccr(), 2.0)
    assert len(received.frames) == 1, "requests still flow"


# ---------------------------------------------------------------- our Re-Auth-Requests

def _open() -> PeerConnection:
    conn = new_conn()
    conn.receive_data(cer(), 0.0)
    conn.data_to_send()
    return conn


def _raa_to(rar_bytes: bytes, result: int | None = 2001, session_id: str | None = None) -> bytes:
    rar_msg = Message.from_bytes(rar_bytes)
    ans = ReAuthAnswer()
    ans.header.is_request = False
    ans.header.application_id = APP_GY
    ans.header.hop_by_hop_identifier = rar_msg.header.hop_by_hop_identifier
    ans.header.end_to_end_identifier = rar_msg.header.end_to_end_identifier
    ans.session_id = session_id if session_id is not None else rar_msg.session_id
    ans.origin_host, ans.origin_realm = PEER_HOST.encode(), PEER_REALM.encode()
    if result is not None:
        ans.result_code = result
    return ans.as_bytes()


@pytest.mark.parametrize("result, session_id, expected", [
    (2001, None, ReAuthResult.ACCEPTED),
    (2002, None, ReAuthResult.ACCEPTED),
    (5002, None, ReAuthResult.UNKNOWN_SESSION),
    (5012, None, ReAuthResult.REFUSED),
    (None, None, ReAuthResult.REFUSED),
    (5002, "pgw;other", ReAuthResult.OTHER_SESSION),
])
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_a_raa_is_matched_to_our_rar(result, session_id, expected, bytewise):
    """RFC 6733 6.2: by hop-by-hop identifier; the event names the session
    we asked about and what the answer says of it."""
    conn = _open()
    conn.send_reauth(b"pgw;42", "pgw.behind.example", 5.0)
    rar_bytes = conn.data_to_send()
    m = Message.from_bytes(rar_bytes)
    assert (describe(decode(rar_bytes)), m.session_id, m.destination_host, m.destination_realm) == \
        ("RAR", "pgw;42", b"pgw.behind.example", PEER_REALM.encode())
    assert conn.reauth_pending(b"pgw;42") and conn.reauths_pending == 1
    data = _raa_to(rar_bytes, result, session_id)
    events = conn.receive_data(data, 6.0) if not bytewise else \
        [e for i in range(len(data)) for e in conn.receive_data(data[i:i + 1], 6.0)]
    code = result or 0
    assert events == [ReAuthAnswered(b"pgw;42", code, expected, 5.0)]
    assert not conn.reauth_pending(b"pgw;42") and conn.reauths_pending == 0
    assert conn.receive_data(data, 7.0) == [], "a second answer matches nothing"
    assert conn.state is State.OPEN and conn.data_to_send() == b""


def test_an_unanswered_rar_times_out_and_its_late_answer_is_dropped():
    conn = _open()
    conn.send_reauth(b"pgw;1", PEER_HOST, 1.0)
    first = conn.data_to_send()
    conn.send_reauth(b"pgw;2", PEER_HOST, 8.0)
    conn.data_to_send()
    assert conn.expire_reauths(10.0, 10.0) == []
    assert conn.expire_reauths(11.5, 10.0) == [ReAuthTimedOut(b"pgw;1")]
    assert conn.reauths_pending == 1 and not conn.reauth_pending(b"pgw;1")
    assert conn.receive_data(_raa_to(first), 12.0) == []


def test_one_rar_per_session_and_only_while_open():
    conn = _open()
    conn.send_reauth(b"pgw;1", PEER_HOST, 1.0)
    with pytest.raises(AssertionError):
        conn.send_reauth(b"pgw;1", PEER_HOST, 2.0)
    conn.start_disconnect(3.0)
    with pytest.raises(AssertionError):
        conn.send_reauth(b"pgw;2", PEER_HOST, 3.0)


# ---------------------------------------------------------------- the transport's end

@pytest.mark.parametrize("call, reason", [
    (lambda conn: conn.connection_lost("connection closed by peer"), "connection closed by peer"),
    (lambda conn: conn.abort("not reading its answers"), "not reading its answers"),
])
@pytest.mark.parametrize("state", [State.WAIT_CER, State.OPEN, State.CLOSING])
def test_connection_loss_and_abort_close_from_every_state(call, reason, state):
    conn = new_conn()
    if state is not State.WAIT_CER:
        conn.receive_data(cer(), 0.0)
    if state is State.CLOSING:
        conn.start_disconnect(1.0)
    assert conn.state is state
    assert call(conn) == [Closed(reason)]
    assert conn.state is State.CLOSED and conn.next_deadline() == INF
    assert call(conn) == [], "CLOSED ignores every input"
    assert conn.start_disconnect(2.0) == [] and conn.handle_timer(100.0) == []


def test_every_state_has_an_entry_for_the_transport_ending():
    from ocs.diameter.peer import _TRANSITIONS, Input
    for state, table in _TRANSITIONS.items():
        if state is not State.CLOSED:
            assert {Input.CONNECTION_LOST, Input.ABORT, Input.VIOLATION, Input.UNFRAMEABLE} <= set(table)
