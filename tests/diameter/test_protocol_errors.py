"""RFC 6733 section 7 protocol errors, over TCP against a real `ocs serve`.

Each case opens a connection, does a valid CER, sends one request that is
wrong in exactly one way, and reads the answer. Requests are built with
python-diameter and then mutated at the byte level; answers are decoded with
python-diameter's decoder, not ours, so a mistake shared by our encoder and
our decoder cannot hide. What every answer must satisfy (sections 6.2, 7.1.3,
7.2, 7.5): the expected Result-Code; the E-bit set for 3xxx (protocol errors)
and clear for 5xxx (permanent failures); the request's Hop-by-Hop and
End-to-End Identifiers; and a Failed-AVP that names the offending AVP, or
for a missing AVP carries an AVP with the missing code. After the error the
connection must still work: a DWR gets a DWA with 2001.
"""
from __future__ import annotations

import itertools
import socket
import struct
from dataclasses import dataclass
from typing import Callable

import pytest
from diameter.message import Avp, Message, MessageHeader
from diameter.message.avp.grouped import MultipleServicesCreditControl, RequestedServiceUnit, SubscriptionId
from diameter.message.commands.capabilities_exchange import CapabilitiesExchangeRequest
from diameter.message.commands.credit_control import CreditControlRequest
from diameter.message.commands.device_watchdog import DeviceWatchdogRequest
from diameter.message.constants import (AVP_CC_REQUEST_NUMBER, AVP_CC_REQUEST_TYPE, AVP_DESTINATION_REALM,
                                        AVP_FAILED_AVP, AVP_ORIGIN_HOST, AVP_ORIGIN_REALM, AVP_RESULT_CODE,
                                        AVP_SESSION_ID)

from tests.support.server import OcsProcess

TIMEOUT = 10.0
ORIGIN_HOST = "pgw.errors.example"
REALM = "errors.example"
MSISDN = "8613800000001"          # a demo subscriber (rules/demo/subscribers.toml)
UNKNOWN_AVP = 999999
UNKNOWN_COMMAND = 8388620
FLAG_REQUEST, FLAG_PROXIABLE, FLAG_ERROR = 0x80, 0x40, 0x20

_ids = itertools.count(0x5E000001)
_sessions = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ocs = OcsProcess(tmp_path_factory.mktemp("protocol-errors") / "data").start()
    try:
        yield ocs
    finally:
        ocs.stop()
        if ocs.proc.poll() is None:
            ocs.kill()


# ---------------------------------------------------------------- raw client

class RawPeer:
    """A gateway made of one blocking socket; every operation has a timeout."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.settimeout(TIMEOUT)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def receive(self) -> bytes:
        head = self._exactly(4)
        length = int.from_bytes(head[1:4], "big")
        assert length >= 20, f"answer with header length {length}"
        return head + self._exactly(length - 4)

    def exchange(self, data: bytes) -> Message:
        self.send(data)
        return decode(self.receive())

    def closed_by_server(self) -> bytes:
        """Read until the server closes; returns whatever came before the close.
        Fails (socket.timeout) if the server keeps the connection open."""
        got = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk

    def open(self) -> "RawPeer":
        cea = self.exchange(cer())
        assert result_code(cea) == 2001, cea
        return self


def decode(data: bytes) -> Message:
    return Message.from_bytes(data, plain_msg=True)


def result_code(msg: Message) -> int:
    found = msg.find_avps((AVP_RESULT_CODE, 0))
    assert len(found) == 1, f"{len(found)} Result-Code AVPs in {msg}"
    return found[0].value


# ---------------------------------------------------------------- requests

def with_ids(msg: Message) -> Message:
    msg.header.hop_by_hop_identifier = next(_ids)
    msg.header.end_to_end_identifier = next(_ids)
    return msg


def cer() -> bytes:
    req = CapabilitiesExchangeRequest()
    req.origin_host = ORIGIN_HOST.encode()
    req.origin_realm = REALM.encode()
    req.host_ip_address = ["127.0.0.1"]
    req.vendor_id = 10415
    req.product_name = "protocol-errors-test"
    req.auth_application_id = [4]
    return with_ids(req).as_bytes()


def dwr() -> bytes:
    req = DeviceWatchdogRequest()
    req.origin_host = ORIGIN_HOST.encode()
    req.origin_realm = REALM.encode()
    return with_ids(req).as_bytes()


def ccr(request_type: int = 1, number: int = 0, session_id: str | None = None) -> bytes:
    """A valid CCR for the demo subscriber, asking for quota on rating group 10."""
    req = CreditControlRequest()
    req.session_id = session_id or f"{ORIGIN_HOST};errors;{next(_sessions)}"
    req.origin_host = ORIGIN_HOST.encode()
    req.origin_realm = REALM.encode()
    req.destination_realm = b"localdomain"
    req.auth_application_id = 4
    req.service_context_id = "32251@3gpp.org"
    req.cc_request_type = request_type
    req.cc_request_number = number
    req.subscription_id = [SubscriptionId(subscription_id_type=0, subscription_id_data=MSISDN)]
    mscc = MultipleServicesCreditControl()
    mscc.rating_group = 10
    mscc.requested_service_unit = RequestedServiceUnit(cc_total_octets=1 << 20)
    req.multiple_services_credit_control = [mscc]
    req.header.application_id = 4       # python-diameter leaves it 0; its Node sets it
    return with_ids(req).as_bytes()


def raw_avp(code: int, flags: int, data: bytes, length: int | None = None) -> bytes:
    """An AVP exactly as given (no vendor), padded; `length` overrides the length field."""
    length = 8 + len(data) if length is None else length
    return struct.pack(">II", code, (flags << 24) | length) + data + b"\0" * ((-len(data)) & 3)


def split(msg: bytes) -> tuple[bytes, list[bytes]]:
    """Header and AVPs (each with its padding); stops at the first AVP that
    does not fit, so it also reads the malformed requests of the table."""
    avps, pos = [], 20
    while len(msg) - pos >= 8:
        length = int.from_bytes(msg[pos + 5:pos + 8], "big")
        if length < 8 or pos + length > len(msg):
            break
        end = pos + length + ((-length) & 3)
        avps.append(msg[pos:end])
        pos = end
    return msg[:20], avps


def code_of(avp: bytes) -> int:
    return int.from_bytes(avp[:4], "big")


def assemble(head: bytes, avps: list[bytes], extra_length: int = 0) -> bytes:
    """A message from a header and AVPs, with the header length recomputed."""
    body = b"".join(avps)
    length = 20 + len(body) + extra_length
    return bytes([head[0]]) + length.to_bytes(3, "big") + head[4:] + body


def replace(msg: bytes, code: int, new: bytes | None) -> bytes:
    """`msg` with the first AVP of `code` replaced by `new` (or removed)."""
    head, avps = split(msg)
    i = next(i for i, a in enumerate(avps) if code_of(a) == code)
    avps[i:i + 1] = [] if new is None else [new]
    return assemble(head, avps)


def append(msg: bytes, *extra: bytes) -> bytes:
    head, avps = split(msg)
    return assemble(head, avps + list(extra))


def with_header(msg: bytes, flags: int | None = None, code: int | None = None, app: int | None = None) -> bytes:
    fc, old_app = struct.unpack_from(">II", msg, 4)
    flags = fc >> 24 if flags is None else flags
    code = fc & 0xFFFFFF if code is None else code
    app = old_app if app is None else app
    return msg[:4] + struct.pack(">II", (flags << 24) | code, app) + msg[12:]


# ---------------------------------------------------------------- the table

def unknown_command() -> bytes:
    """A request we do not serve. python-diameter knows 8388620 as 3GPP SLg
    Provide-Location; the OCS serves only Credit-Control (272)."""
    msg = Message(MessageHeader(command_flags=FLAG_REQUEST | FLAG_PROXIABLE, command_code=UNKNOWN_COMMAND,
                                application_id=4))
    msg.append_avp(Avp.new(AVP_SESSION_ID, value=f"{ORIGIN_HOST};errors;{next(_sessions)}"))
    msg.append_avp(Avp.new(AVP_ORIGIN_HOST, value=ORIGIN_HOST.encode()))
    msg.append_avp(Avp.new(AVP_ORIGIN_REALM, value=REALM.encode()))
    msg.append_avp(Avp.new(AVP_DESTINATION_REALM, value=b"localdomain"))
    return with_ids(msg).as_bytes()


@dataclass
class Case:
    build: Callable[[], bytes]
    result_code: int
    failed_code: int | None = None      # Failed-AVP must hold an AVP of this code
    failed_data: bytes | None = None    # ... with this payload
    failed_flags: int | None = None     # ... with these flags


CASES = {
    "3001-command-unsupported": Case(unknown_command, 3001),
    "3007-application-unsupported": Case(lambda: with_header(ccr(), app=16777238), 3007),
    "3008-invalid-hdr-bits": Case(lambda: with_header(ccr(), flags=FLAG_REQUEST | FLAG_PROXIABLE | FLAG_ERROR),
                                  3008),
    "3009-invalid-avp-bits": Case(
        lambda: replace(ccr(), AVP_CC_REQUEST_NUMBER, raw_avp(AVP_CC_REQUEST_NUMBER, 0x40 | 0x01, b"\0\0\0\0")),
        3009, AVP_CC_REQUEST_NUMBER, b"\0\0\0\0", 0x41),
    "5001-avp-unsupported": Case(lambda: append(ccr(), raw_avp(UNKNOWN_AVP, 0x40, b"spam")),
                                 5001, UNKNOWN_AVP, b"spam", 0x40),
    "5004-invalid-avp-value": Case(
        lambda: replace(ccr(), AVP_CC_REQUEST_TYPE, raw_avp(AVP_CC_REQUEST_TYPE, 0x40, struct.pack(">I", 9))),
        5004, AVP_CC_REQUEST_TYPE, struct.pack(">I", 9)),
    "5005-missing-avp": Case(lambda: replace(ccr(), AVP_CC_REQUEST_NUMBER, None), 5005, AVP_CC_REQUEST_NUMBER),
    # The second occurrence is "the first instance that exceeded the maximum" (7.1.5).
    "5009-avp-occurs-too-many-times": Case(
        lambda: append(ccr(), raw_avp(AVP_CC_REQUEST_TYPE, 0x40, struct.pack(">I", 3))),
        5009, AVP_CC_REQUEST_TYPE, struct.pack(">I", 3)),
    "5014-invalid-avp-length": Case(
        lambda: replace(ccr(), AVP_CC_REQUEST_NUMBER, raw_avp(AVP_CC_REQUEST_NUMBER, 0x40, b"\0\0\0\0\x07")),
        5014, AVP_CC_REQUEST_NUMBER, b"\0\0\0\0\x07"),
    # A length that cannot be trusted: Failed-AVP holds the AVP's header with
    # a zero payload of the type's minimal size (7.1.5), not the bytes as
    # received, which would claim to run past the Failed-AVP itself.
    "5014-avp-length-past-message": Case(
        lambda: append(replace(ccr(), AVP_CC_REQUEST_NUMBER, None),
                       raw_avp(AVP_CC_REQUEST_NUMBER, 0x40, b"\0\0\0\x07", length=64)),
        5014, AVP_CC_REQUEST_NUMBER, b"\0\0\0\0", 0x40),
    "5014-avp-length-below-header": Case(
        lambda: append(replace(ccr(), AVP_CC_REQUEST_NUMBER, None),
                       raw_avp(AVP_CC_REQUEST_NUMBER, 0x40, b"\0\0\0\x07", length=4)),
        5014, AVP_CC_REQUEST_NUMBER, b"\0\0\0\0", 0x40),
    "5015-invalid-message-length": Case(lambda: assemble(*split(ccr()), extra_length=2) + b"\0\0", 5015),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_protocol_error_answer(server, case: Case):
    request = case.build()
    _, _, req_app, req_hbh, req_e2e = struct.unpack_from(">IIIII", request)
    req_code = struct.unpack_from(">I", request, 4)[0] & 0xFFFFFF
    peer = RawPeer(server.port).open()
    try:
        answer = peer.exchange(request)
        h = answer.header
        assert result_code(answer) == case.result_code, answer
        assert not h.is_request
        assert h.is_error == (3000 <= case.result_code < 4000), f"E-bit {h.is_error} for {case.result_code}"
        assert (h.command_code, h.application_id) == (req_code, req_app)
        assert (h.hop_by_hop_identifier, h.end_to_end_identifier) == (req_hbh, req_e2e)
        assert answer.find_avps((AVP_ORIGIN_HOST, 0)) and answer.find_avps((AVP_ORIGIN_REALM, 0))
        sent_sid = [a[8:int.from_bytes(a[5:8], "big")] for a in split(request)[1] if code_of(a) == AVP_SESSION_ID]
        assert [a.payload for a in answer.find_avps((AVP_SESSION_ID, 0))] == sent_sid
        if case.failed_code is not None:
            failed = answer.find_avps((AVP_FAILED_AVP, 0))
            assert len(failed) == 1, answer
            inner = failed[0].value
            assert [(a.code, a.vendor_id) for a in inner] == [(case.failed_code, 0)], inner
            if case.failed_data is not None:
                assert inner[0].payload == case.failed_data
            if case.failed_flags is not None:
                assert inner[0].flags == case.failed_flags

        dwa = peer.exchange(dwr())
        assert dwa.header.command_code == 280 and not dwa.header.is_request
        assert result_code(dwa) == 2001
    finally:
        peer.close()
    assert server.proc.poll() is None, server.output()


def test_unknown_avp_without_m_bit_is_ignored(server):
    """Section 4.1: an unrecognized AVP without the M-bit MUST be ignored."""
    peer = RawPeer(server.port).open()
    try:
        sid = f"{ORIGIN_HOST};errors;{next(_sessions)}"
        cca = peer.exchange(append(ccr(1, 0, sid), raw_avp(UNKNOWN_AVP, 0x00, b"ignore me")))
        assert not cca.header.is_error
        assert result_code(cca) == 2001, cca
        assert not cca.find_avps((AVP_FAILED_AVP, 0))
        cca = peer.exchange(ccr(3, 1, sid))
        assert result_code(cca) == 2001, cca
    finally:
        peer.close()


def test_unframeable_stream_closes_the_connection(server):
    """A header length below 20 cannot be skipped: the stream has lost framing."""
    peer = RawPeer(server.port).open()
    try:
        bad = bytearray(dwr())
        bad[1:4] = (12).to_bytes(3, "big")
        peer.send(bytes(bad))
        assert peer.closed_by_server() == b""
    finally:
        peer.close()
    assert server.proc.poll() is None, server.output()


@pytest.mark.parametrize("first", [dwr, ccr], ids=["dwr", "ccr"])
def test_first_message_not_cer_closes_the_connection(server, first):
    """Section 5.6: before CER/CEA nothing else is taken; the connection closes."""
    peer = RawPeer(server.port)
    try:
        peer.send(first())
        assert peer.closed_by_server() == b""
    finally:
        peer.close()
    assert server.proc.poll() is None, server.output()


def test_second_cer_is_answered_and_the_connection_lives_on(server):
    """Section 5.6.1: in R-Open a CER is processed and answered; state stays open."""
    peer = RawPeer(server.port).open()
    try:
        request = cer()
        cea = peer.exchange(request)
        assert cea.header.command_code == 257 and not cea.header.is_request
        assert cea.header.hop_by_hop_identifier == struct.unpack_from(">I", request, 12)[0]
        assert cea.header.end_to_end_identifier == struct.unpack_from(">I", request, 16)[0]
        assert result_code(cea) == 2001, cea
        dwa = peer.exchange(dwr())
        assert result_code(dwa) == 2001
    finally:
        peer.close()
    assert server.proc.poll() is None, server.output()
    RawPeer(server.port).open().close()
