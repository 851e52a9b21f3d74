"""Minimal, fast Diameter codec for the load generator.

Only what a simulated PGW needs: the base-protocol messages of RFC 6733
(CER, DWA, DPR, DPA, and CEA for the echo server), framing, and reading the
Credit-Control-Answers (RFC 4006 section 3.2) it judges. The CCRs are in
`loadtest.ccr`. `read_answer` is a numba kernel so that the whole generator
loop can run compiled; `parse_answer` is the Python entry point used for
control traffic and tests. Everything here is checked against
python-diameter's full decoder in tests/loadtest/test_codec.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# The Diameter numbers and the AVP encoders are the server's own
# (ocs.diameter), so the generator and the server speak one codec.
from ocs.diameter import avp as _A
from ocs.diameter.constants import (
    HEADER_LEN, FLAG_REQUEST, AVP_FLAG_VENDOR, CMD_CAPABILITIES_EXCHANGE,
    CMD_DEVICE_WATCHDOG, CMD_DISCONNECT_PEER, APP_CREDIT_CONTROL, AVP_HOST_IP_ADDRESS,
    AVP_AUTH_APPLICATION_ID, AVP_SESSION_ID, AVP_ORIGIN_HOST, AVP_SUPPORTED_VENDOR_ID,
    AVP_VENDOR_ID, AVP_RESULT_CODE, AVP_PRODUCT_NAME, AVP_DISCONNECT_CAUSE, AVP_ORIGIN_REALM,
    AVP_EXPERIMENTAL_RESULT, AVP_CC_REQUEST_NUMBER, AVP_CC_REQUEST_TYPE, AVP_CC_TOTAL_OCTETS,
    AVP_GRANTED_SERVICE_UNIT, AVP_RATING_GROUP, AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
    FLAG_PROXIABLE, APP_COMMON)

FLAG_PROXYABLE = FLAG_PROXIABLE
APP_BASE = APP_COMMON
AVP_EXPERIMENTAL_RESULT_CODE = 298

INITIAL, UPDATE, TERMINATE = 1, 2, 3  # CC-Request-Type values (RFC 4006 8.3)
DO_NOT_WANT_TO_TALK_TO_YOU = 2  # Disconnect-Cause
DIAMETER_SUCCESS = 2001


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


# --- compiled kernels --------------------------------------------------------

# Fields filled by read_answer; -1 means "absent".
(F_COMMAND, F_FLAGS, F_APP, F_HBH, F_E2E, F_RESULT, F_REQNO, F_REQTYPE, F_SID_OFF,
 F_SID_LEN, F_MSCC_COUNT, F_MALFORMED, N_FIELDS) = range(13)
# Columns of the MSCC table filled by read_answer, one row per MSCC.
M_RATING_GROUP, M_RESULT, M_GRANTED, N_MSCC_COLS = range(4)
MAX_ANSWER_MSCC = 16  # rows kept; F_MSCC_COUNT counts them all


@njit(cache=True, inline="always")
def _u32(buf, pos):
    return (np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16) | \
        (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3])


@njit(cache=True, inline="always")
def _u24(buf, pos):
    return (np.int64(buf[pos]) << 16) | (np.int64(buf[pos + 1]) << 8) | np.int64(buf[pos + 2])


@njit(cache=True)
def _read_mscc(buf, pos, end, f, m):
    """Rating-Group, Result-Code and GSU CC-Total-Octets of one MSCC into m."""
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
    row = f[F_MSCC_COUNT]
    f[F_MSCC_COUNT] += 1
    if row < MAX_ANSWER_MSCC:
        m[row, M_RATING_GROUP], m[row, M_RESULT], m[row, M_GRANTED] = rg, result, gsu


@njit(cache=True)
def read_answer(buf, start, end, f, m):
    """Header fields and the Gy AVPs the generator checks, from buf[start:end].

    Header and top-level AVPs go to f, each Multiple-Services-Credit-Control
    to a row of m.
    """
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
                _read_mscc(buf, data, data + size, f, m)
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
class Mscc:
    rating_group: int | None
    result_code: int | None
    granted_octets: int | None  # None: no Granted-Service-Unit


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
    msccs: tuple[Mscc, ...]

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_REQUEST)


def _opt(value) -> int | None:
    return None if value < 0 else int(value)


def parse_answer(frame: bytes) -> Answer:
    """Decode one message's header and checked AVPs (any command, any direction)."""
    buf = np.frombuffer(frame, np.uint8)
    f = np.empty(N_FIELDS, np.int64)
    m = np.empty((MAX_ANSWER_MSCC, N_MSCC_COLS), np.int64)
    read_answer(buf, 0, len(buf), f, m)
    if f[F_MALFORMED]:
        raise ValueError("malformed AVP")
    sid = None
    if f[F_SID_OFF] >= 0:
        sid = bytes(frame[f[F_SID_OFF]:f[F_SID_OFF] + f[F_SID_LEN]]).decode()
    msccs = tuple(Mscc(*map(_opt, row)) for row in m[:min(f[F_MSCC_COUNT], MAX_ANSWER_MSCC)])
    return Answer(int(f[F_COMMAND]), int(f[F_FLAGS]), int(f[F_APP]), int(f[F_HBH]),
                  int(f[F_E2E]), sid, _opt(f[F_RESULT]), _opt(f[F_REQTYPE]),
                  _opt(f[F_REQNO]), msccs)
