"""Minimal, fast Diameter codec for the load generator.

Only what a simulated PGW needs: the base-protocol messages of RFC 6733
(CER, DWA, DPR, DPA, and CEA for the echo server) and Gy Credit-Control
Requests (RFC 4006 section 3.1, TS 32.299 section 6.4.2).

CCRs are template-based: each kind (Initial, Update, Terminate) is encoded
once with fixed-width variable fields (Session-Id counter, MSISDN,
CC-Request-Number, used octets, hop-by-hop and end-to-end ids) and a request
is a copy of the template with those fields patched in place. `fill_ccr` and
`read_answer` are numba kernels so that the whole generator loop can run in
compiled code; `CcrTemplates.encode` and `parse_answer` are the Python
entry points used for control traffic and tests. Everything here is checked
against python-diameter's full decoder in tests/loadtest/test_codec.py.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numba import njit

# The Diameter numbers and the AVP encoders are the server's own
# (ocs.diameter), so the generator and the server speak one codec.
from ocs.diameter import avp as _A
from ocs.diameter.constants import (
    HEADER_LEN, FLAG_REQUEST, AVP_FLAG_VENDOR, CMD_CAPABILITIES_EXCHANGE, CMD_CREDIT_CONTROL,
    CMD_DEVICE_WATCHDOG, CMD_DISCONNECT_PEER, APP_CREDIT_CONTROL, AVP_HOST_IP_ADDRESS,
    AVP_AUTH_APPLICATION_ID, AVP_SESSION_ID, AVP_ORIGIN_HOST, AVP_SUPPORTED_VENDOR_ID,
    AVP_VENDOR_ID, AVP_RESULT_CODE, AVP_PRODUCT_NAME, AVP_DISCONNECT_CAUSE,
    AVP_DESTINATION_REALM, AVP_TERMINATION_CAUSE, AVP_ORIGIN_REALM,
    AVP_EXPERIMENTAL_RESULT, AVP_CC_REQUEST_NUMBER, AVP_CC_REQUEST_TYPE, AVP_CC_TOTAL_OCTETS,
    AVP_GRANTED_SERVICE_UNIT, AVP_RATING_GROUP, AVP_REQUESTED_SERVICE_UNIT, AVP_SUBSCRIPTION_ID,
    AVP_SUBSCRIPTION_ID_DATA, AVP_USED_SERVICE_UNIT, AVP_SUBSCRIPTION_ID_TYPE, AVP_MULTIPLE_SERVICES_INDICATOR,
    AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, AVP_SERVICE_CONTEXT_ID, FLAG_PROXIABLE, APP_COMMON)

FLAG_PROXYABLE = FLAG_PROXIABLE
APP_BASE = APP_COMMON
AVP_EXPERIMENTAL_RESULT_CODE = 298

INITIAL, UPDATE, TERMINATE = 1, 2, 3  # CC-Request-Type values (RFC 4006 8.3)
END_USER_E164 = 0
MULTIPLE_SERVICES_SUPPORTED = 1
DIAMETER_LOGOUT = 1  # Termination-Cause
DO_NOT_WANT_TO_TALK_TO_YOU = 2  # Disconnect-Cause
DIAMETER_SUCCESS = 2001
GY_SERVICE_CONTEXT = "32251@3gpp.org"
SID_DIGITS = 10  # the low part of our Session-Ids: a zero-padded session number

_U32 = struct.Struct(">I")


# --- plain encoders (control messages, templates): the server's ------------

def avp(code: int, data: bytes, mandatory: bool = True) -> bytes:
    return _A.encode(code, data, 0, mandatory)


def avp_u32(code: int, value: int, mandatory: bool = True) -> bytes:
    return _A.u32(code, value, 0, mandatory)


def avp_u64(code: int, value: int) -> bytes:
    return _A.u64(code, value)


def avp_str(code: int, value: str | bytes, mandatory: bool = True) -> bytes:
    return _A.utf8(code, value, 0, mandatory)


def avp_group(code: int, *members: bytes) -> bytes:
    return _A.grouped(code, members)


def avp_address(code: int, ipv4: str) -> bytes:
    return _A.address(code, ipv4)


def encode_message(command: int, flags: int, app_id: int, hbh: int, e2e: int,
                   avps: list[bytes]) -> bytes:
    return _A.message(flags, command, app_id, hbh, e2e, avps)


def _identity(origin_host: str, origin_realm: str) -> list[bytes]:
    return [avp_str(AVP_ORIGIN_HOST, origin_host),
            avp_str(AVP_ORIGIN_REALM, origin_realm)]


def _capabilities(origin_host, origin_realm, host_ip, product) -> list[bytes]:
    return _identity(origin_host, origin_realm) + [
        avp_address(AVP_HOST_IP_ADDRESS, host_ip),
        avp_u32(AVP_VENDOR_ID, 0),
        avp_str(AVP_PRODUCT_NAME, product, mandatory=False),
        avp_u32(AVP_SUPPORTED_VENDOR_ID, 10415),
        avp_u32(AVP_AUTH_APPLICATION_ID, APP_CREDIT_CONTROL)]


def encode_cer(origin_host: str, origin_realm: str, host_ip: str = "127.0.0.1",
               hbh: int = 1, e2e: int = 1, product: str = "ocs-loadtest") -> bytes:
    """Capabilities-Exchange-Request advertising Gy (RFC 6733 section 5.3.1)."""
    avps = _capabilities(origin_host, origin_realm, host_ip, product)
    return encode_message(CMD_CAPABILITIES_EXCHANGE, FLAG_REQUEST, APP_BASE,
                          hbh, e2e, avps)


def encode_cea(origin_host: str, origin_realm: str, hbh: int, e2e: int,
               host_ip: str = "127.0.0.1", product: str = "ocs-loadtest-echo",
               result_code: int = DIAMETER_SUCCESS) -> bytes:
    avps = [avp_u32(AVP_RESULT_CODE, result_code)]
    avps += _capabilities(origin_host, origin_realm, host_ip, product)
    return encode_message(CMD_CAPABILITIES_EXCHANGE, 0, APP_BASE, hbh, e2e, avps)


def encode_dwa(origin_host: str, origin_realm: str, hbh: int, e2e: int) -> bytes:
    avps = [avp_u32(AVP_RESULT_CODE, DIAMETER_SUCCESS)]
    avps += _identity(origin_host, origin_realm)
    return encode_message(CMD_DEVICE_WATCHDOG, 0, APP_BASE, hbh, e2e, avps)


def encode_dpr(origin_host: str, origin_realm: str, hbh: int, e2e: int,
               cause: int = DO_NOT_WANT_TO_TALK_TO_YOU) -> bytes:
    avps = _identity(origin_host, origin_realm)
    avps.append(avp_u32(AVP_DISCONNECT_CAUSE, cause))
    return encode_message(CMD_DISCONNECT_PEER, FLAG_REQUEST, APP_BASE, hbh, e2e, avps)


def encode_dpa(origin_host: str, origin_realm: str, hbh: int, e2e: int) -> bytes:
    avps = [avp_u32(AVP_RESULT_CODE, DIAMETER_SUCCESS)]
    avps += _identity(origin_host, origin_realm)
    return encode_message(CMD_DISCONNECT_PEER, 0, APP_BASE, hbh, e2e, avps)


# --- CCR templates -----------------------------------------------------------

# Columns of CcrTemplates.offsets: where each variable field starts (-1: absent).
OFF_SID, OFF_MSISDN, OFF_REQNO, OFF_USED = range(4)


class CcrTemplates:
    """Pre-encoded CCR-Initial/Update/Terminate with fields to patch.

    Session-Id is "<origin-host>;<boot>;<10-digit session number>" (RFC 6733
    section 8.8), so every session's id has the same length. All MSISDNs of a
    run must have the same number of digits for the same reason.
    """

    def __init__(self, origin_host: str, origin_realm: str, destination_realm: str,
                 msisdn_digits: int, rating_group: int, boot: int,
                 service_context: str = GY_SERVICE_CONTEXT):
        self.msisdn_digits = msisdn_digits
        self.sid_prefix = f"{origin_host};{boot};".encode()
        rows = [self._build(kind, origin_host, origin_realm, destination_realm,
                            rating_group, service_context) for kind in (1, 2, 3)]
        size = max(len(b) for b, _ in rows)
        self.lengths = np.array([0] + [len(b) for b, _ in rows], np.int64)
        self.bytes = np.zeros((4, size), np.uint8)  # row = CC-Request-Type
        self.offsets = np.full((4, 4), -1, np.int64)
        for kind, (body, offsets) in enumerate(rows, start=1):
            self.bytes[kind, :len(body)] = np.frombuffer(body, np.uint8)
            self.offsets[kind] = offsets

    def _build(self, kind, origin_host, origin_realm, destination_realm,
               rating_group, service_context):
        sid = self.sid_prefix + b"0" * SID_DIGITS
        mscc = []
        if kind != TERMINATE:
            mscc.append(avp_group(AVP_REQUESTED_SERVICE_UNIT))
        if kind != INITIAL:
            mscc.append(avp_group(AVP_USED_SERVICE_UNIT, avp_u64(AVP_CC_TOTAL_OCTETS, 0)))
        mscc.append(avp_u32(AVP_RATING_GROUP, rating_group))
        avps = [avp_str(AVP_SESSION_ID, sid),
                *_identity(origin_host, origin_realm),
                avp_str(AVP_DESTINATION_REALM, destination_realm),
                avp_u32(AVP_AUTH_APPLICATION_ID, APP_CREDIT_CONTROL),
                avp_str(AVP_SERVICE_CONTEXT_ID, service_context),
                avp_u32(AVP_CC_REQUEST_TYPE, kind),
                avp_u32(AVP_CC_REQUEST_NUMBER, 0),
                avp_group(AVP_SUBSCRIPTION_ID,
                          avp_u32(AVP_SUBSCRIPTION_ID_TYPE, END_USER_E164),
                          avp_str(AVP_SUBSCRIPTION_ID_DATA, "0" * self.msisdn_digits))]
        if kind == TERMINATE:
            avps.append(avp_u32(AVP_TERMINATION_CAUSE, DIAMETER_LOGOUT))
        avps += [avp_u32(AVP_MULTIPLE_SERVICES_INDICATOR, MULTIPLE_SERVICES_SUPPORTED),
                 avp_group(AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, *mscc)]
        msg = encode_message(CMD_CREDIT_CONTROL, FLAG_REQUEST | FLAG_PROXYABLE,
                             APP_CREDIT_CONTROL, 0, 0, avps)
        # Offsets of each field's value, found by walking the encoded AVPs so
        # they cannot drift from the encoding above.
        offsets = [-1, -1, -1, -1]
        for code, start in _walk(msg, HEADER_LEN, len(msg)):
            if code == AVP_SESSION_ID:
                offsets[OFF_SID] = start + len(self.sid_prefix)
            elif code == AVP_CC_REQUEST_NUMBER:
                offsets[OFF_REQNO] = start
            elif code == AVP_SUBSCRIPTION_ID_DATA:
                offsets[OFF_MSISDN] = start
            elif code == AVP_CC_TOTAL_OCTETS:
                offsets[OFF_USED] = start
        return msg, offsets

    def session_id(self, session_no: int) -> str:
        return (self.sid_prefix + b"%010d" % session_no).decode()

    def encode(self, kind: int, session_no: int, msisdn: int, request_number: int,
               used: int, hbh: int, e2e: int) -> bytes:
        """One CCR as bytes (the same patching as the compiled `fill_ccr`)."""
        out = np.zeros(int(self.lengths[kind]), np.uint8)
        end = fill_ccr(out, 0, self.bytes, self.lengths, self.offsets, self.msisdn_digits,
                       kind, session_no, msisdn, request_number, used, hbh, e2e)
        return out[:end].tobytes()


def _walk(msg: bytes, start: int, end: int):
    """(code, value offset) of every AVP, descending into the grouped ones we use."""
    grouped = {AVP_SUBSCRIPTION_ID, AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
               AVP_USED_SERVICE_UNIT, AVP_GRANTED_SERVICE_UNIT}
    pos = start
    while pos < end:
        code, word = struct.unpack_from(">II", msg, pos)
        length, head = word & 0xFFFFFF, 12 if word >> 24 & AVP_FLAG_VENDOR else 8
        yield code, pos + head
        if code in grouped:
            yield from _walk(msg, pos + head, pos + length)
        pos += (length + 3) & ~3


# --- compiled kernels --------------------------------------------------------

@njit(cache=True, inline="always")
def _put_u32(buf, pos, value):
    buf[pos] = (value >> 24) & 0xFF
    buf[pos + 1] = (value >> 16) & 0xFF
    buf[pos + 2] = (value >> 8) & 0xFF
    buf[pos + 3] = value & 0xFF


@njit(cache=True, inline="always")
def _put_digits(buf, pos, width, value):
    for i in range(width - 1, -1, -1):
        buf[pos + i] = 48 + value % 10
        value //= 10


@njit(cache=True)
def fill_ccr(out, pos, tmpl, lengths, offsets, msisdn_digits, kind, session_no,
             msisdn, request_number, used, hbh, e2e):
    """Write one CCR of `kind` at out[pos:]; return the position after it."""
    n = lengths[kind]
    out[pos:pos + n] = tmpl[kind, :n]
    _put_u32(out, pos + 12, hbh)
    _put_u32(out, pos + 16, e2e)
    _put_digits(out, pos + offsets[kind, OFF_SID], SID_DIGITS, session_no)
    _put_digits(out, pos + offsets[kind, OFF_MSISDN], msisdn_digits, msisdn)
    _put_u32(out, pos + offsets[kind, OFF_REQNO], request_number)
    at = offsets[kind, OFF_USED]
    if at >= 0:
        _put_u32(out, pos + at, used >> 32)
        _put_u32(out, pos + at + 4, used & 0xFFFFFFFF)
    return pos + n


# Fields filled by read_answer; -1 means "absent".
(F_COMMAND, F_FLAGS, F_APP, F_HBH, F_E2E, F_RESULT, F_REQNO, F_REQTYPE, F_SID_OFF,
 F_SID_LEN, F_MSCC_COUNT, F_MSCC_RESULT, F_GSU_OCTETS, F_RATING_GROUP,
 F_MALFORMED, N_FIELDS) = range(16)


@njit(cache=True, inline="always")
def _u32(buf, pos):
    return (np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16) | \
        (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3])


@njit(cache=True, inline="always")
def _u24(buf, pos):
    return (np.int64(buf[pos]) << 16) | (np.int64(buf[pos + 1]) << 8) | np.int64(buf[pos + 2])


@njit(cache=True)
def _read_mscc(buf, pos, end, rating_group, f):
    """Rating-Group, Result-Code and GSU CC-Total-Octets of one MSCC."""
    rg, result, gsu = -1, -1, -1
    while pos + 8 <= end:
        code, flags, length = _u32(buf, pos), buf[pos + 4], _u24(buf, pos + 5)
        head = 12 if flags & AVP_FLAG_VENDOR else 8
        if length < head or pos + length > end:
            f[F_MALFORMED] = 1
            return
        data, size = pos + head, length - head
        if head == 8 and size == 4 and code == AVP_RATING_GROUP:
            rg = _u32(buf, data)
        elif head == 8 and size == 4 and code == AVP_RESULT_CODE:
            result = _u32(buf, data)
        elif head == 8 and code == AVP_GRANTED_SERVICE_UNIT:
            gsu = 0
            inner, inner_end = data, data + size
            while inner + 8 <= inner_end:
                icode, ilen = _u32(buf, inner), _u24(buf, inner + 5)
                if ilen < 8 or inner + ilen > inner_end:
                    f[F_MALFORMED] = 1
                    return
                if icode == AVP_CC_TOTAL_OCTETS and ilen == 16 and buf[inner + 4] & 0x80 == 0:
                    gsu = (_u32(buf, inner + 8) << 32) | _u32(buf, inner + 12)
                inner += (ilen + 3) & ~3
        pos += (length + 3) & ~3
    f[F_MSCC_COUNT] += 1
    # Keep the MSCC of the wanted rating group, or the first one.
    if f[F_MSCC_COUNT] == 1 or rg == rating_group:
        f[F_RATING_GROUP], f[F_MSCC_RESULT], f[F_GSU_OCTETS] = rg, result, gsu


@njit(cache=True)
def read_answer(buf, start, end, rating_group, f):
    """Header fields and the Gy AVPs the generator checks, from buf[start:end]."""
    f[:] = -1
    f[F_MSCC_COUNT] = 0
    f[F_MALFORMED] = 0
    f[F_FLAGS] = buf[start + 4]
    f[F_COMMAND] = _u24(buf, start + 5)
    f[F_APP] = _u32(buf, start + 8)
    f[F_HBH] = _u32(buf, start + 12)
    f[F_E2E] = _u32(buf, start + 16)
    pos = start + HEADER_LEN
    while pos + 8 <= end:
        code, flags, length = _u32(buf, pos), buf[pos + 4], _u24(buf, pos + 5)
        head = 12 if flags & AVP_FLAG_VENDOR else 8
        if length < head or pos + length > end:
            f[F_MALFORMED] = 1
            return
        data, size = pos + head, length - head
        if head == 8:
            if code == AVP_SESSION_ID:
                f[F_SID_OFF], f[F_SID_LEN] = data, size
            elif code == AVP_RESULT_CODE and size == 4:
                f[F_RESULT] = _u32(buf, data)
            elif code == AVP_EXPERIMENTAL_RESULT and f[F_RESULT] < 0:
                inner = data
                while inner + 12 <= data + size:
                    inner_length = _u24(buf, inner + 5)
                    if _u32(buf, inner) == AVP_EXPERIMENTAL_RESULT_CODE and inner_length == 12:
                        f[F_RESULT] = _u32(buf, inner + 8)
                    inner += (max(inner_length, 8) + 3) & ~3
            elif code == AVP_CC_REQUEST_NUMBER and size == 4:
                f[F_REQNO] = _u32(buf, data)
            elif code == AVP_CC_REQUEST_TYPE and size == 4:
                f[F_REQTYPE] = _u32(buf, data)
            elif code == AVP_MULTIPLE_SERVICES_CREDIT_CONTROL:
                _read_mscc(buf, data, data + size, rating_group, f)
                if f[F_MALFORMED]:
                    return
        pos += (length + 3) & ~3


# --- Python entry points -----------------------------------------------------

def split_frames(buf: bytes | bytearray | memoryview) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of every complete message in buf, and the bytes they use.

    Raises ValueError on a length that cannot be a Diameter message.
    """
    frames, pos, size = [], 0, len(buf)
    while pos + 4 <= size:
        length = int.from_bytes(buf[pos + 1:pos + 4], "big")
        if buf[pos] != 1 or length < HEADER_LEN or length % 4:
            raise ValueError(f"bad Diameter header at offset {pos}")
        if pos + length > size:
            break
        frames.append((pos, pos + length))
        pos += length
    return frames, pos


@dataclass(frozen=True, slots=True)
class Answer:
    command: int
    flags: int
    application_id: int
    hop_by_hop: int
    end_to_end: int
    session_id: str | None
    result_code: int | None
    request_type: int | None
    request_number: int | None
    mscc_count: int
    mscc_result_code: int | None
    rating_group: int | None
    granted_octets: int | None

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_REQUEST)


def parse_answer(frame: bytes, rating_group: int = -1) -> Answer:
    """Decode one message's header and checked AVPs (any command, any direction)."""
    buf = np.frombuffer(frame, np.uint8)
    f = np.empty(N_FIELDS, np.int64)
    read_answer(buf, 0, len(buf), rating_group, f)
    if f[F_MALFORMED]:
        raise ValueError("malformed AVP")

    def opt(i):
        return None if f[i] < 0 else int(f[i])
    sid = None
    if f[F_SID_OFF] >= 0:
        sid = bytes(frame[f[F_SID_OFF]:f[F_SID_OFF] + f[F_SID_LEN]]).decode()
    return Answer(int(f[F_COMMAND]), int(f[F_FLAGS]), int(f[F_APP]), int(f[F_HBH]),
                  int(f[F_E2E]), sid, opt(F_RESULT), opt(F_REQTYPE), opt(F_REQNO),
                  int(f[F_MSCC_COUNT]), opt(F_MSCC_RESULT), opt(F_RATING_GROUP),
                  opt(F_GSU_OCTETS))
