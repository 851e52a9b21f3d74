"""Credit-Control-Requests of a simulated PGW, encoded from templates.

A CCR (RFC 4006 section 3.1, TS 32.299 section 6.4.2) is the same bytes for
every session but for a few fixed-width fields, so each shape - request type
(Initial, Update, Terminate) times the number of rating groups (one MSCC per
rating group) - is encoded once, and a request is a copy of its template
with the Session-Id counter, MSISDN, CC-Request-Number, rating groups, used
octets and the header ids patched in place. `fill_ccr` is a numba kernel so
the generator's whole loop runs compiled; `CcrTemplates.encode` is the same
patching from Python, for tests. Every template is checked against
python-diameter's full decoder in tests/loadtest/test_ccr.py.
"""
from __future__ import annotations

import struct

import numpy as np
from numba import njit

from ocs.diameter.constants import (
    AVP_AUTH_APPLICATION_ID, AVP_CC_REQUEST_NUMBER, AVP_CC_REQUEST_TYPE, AVP_CC_TOTAL_OCTETS,
    AVP_DESTINATION_REALM, AVP_FLAG_VENDOR, AVP_GRANTED_SERVICE_UNIT,
    AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, AVP_MULTIPLE_SERVICES_INDICATOR, AVP_RATING_GROUP,
    AVP_REQUESTED_SERVICE_UNIT, AVP_SERVICE_CONTEXT_ID, AVP_SESSION_ID, AVP_SUBSCRIPTION_ID,
    AVP_SUBSCRIPTION_ID_DATA, AVP_SUBSCRIPTION_ID_TYPE, AVP_TERMINATION_CAUSE,
    AVP_USED_SERVICE_UNIT, APP_CREDIT_CONTROL, CMD_CREDIT_CONTROL, FLAG_REQUEST, HEADER_LEN)

from .codec import (FLAG_PROXYABLE, INITIAL, TERMINATE, _identity, avp_group, avp_str,
                    avp_u32, avp_u64, encode_message)

END_USER_E164 = 0
MULTIPLE_SERVICES_SUPPORTED = 1
DIAMETER_LOGOUT = 1  # Termination-Cause
GY_SERVICE_CONTEXT = "32251@3gpp.org"
SID_DIGITS = 10  # the low part of our Session-Ids: a zero-padded session number
FLAG_RETRANSMIT = 0x10  # the T-bit (RFC 6733 section 3): resent after a failover
MAX_RATING_GROUPS = 8

# Columns of CcrTemplates.offsets: where each variable field's value starts.
OFF_SID, OFF_MSISDN, OFF_REQNO, OFF_MSCC = range(4)  # then (rating group, used) per MSCC


def template_row(kind: int, n_rating_groups: int, max_rating_groups: int) -> int:
    return (kind - 1) * max_rating_groups + n_rating_groups - 1


class CcrTemplates:
    """Pre-encoded CCRs of every request type and rating-group count.

    Session-Id is "<origin-host>;<boot>;<10-digit session number>" (RFC 6733
    section 8.8), so all of a run's Session-Ids have one length; all MSISDNs
    of a run must have one number of digits for the same reason.
    `request_octets` goes into every Requested-Service-Unit as CC-Total-Octets;
    0 sends it empty (the server chooses the quota).
    """

    def __init__(self, origin_host: str, origin_realm: str, destination_realm: str,
                 msisdn_digits: int, boot: int, max_rating_groups: int = 1,
                 request_octets: int = 0, service_context: str = GY_SERVICE_CONTEXT):
        if not 1 <= max_rating_groups <= MAX_RATING_GROUPS:
            raise ValueError(f"1 to {MAX_RATING_GROUPS} rating groups per session")
        self.msisdn_digits = msisdn_digits
        self.max_rating_groups = max_rating_groups
        self.request_octets = request_octets
        self.sid_prefix = f"{origin_host};{boot};".encode()
        shapes = [(kind, n) for kind in (1, 2, 3) for n in range(1, max_rating_groups + 1)]
        rows = [self._build(kind, n, origin_host, origin_realm, destination_realm,
                            service_context) for kind, n in shapes]
        self.lengths = np.array([len(body) for body, _ in rows], np.int64)
        self.bytes = np.zeros((len(rows), int(self.lengths.max())), np.uint8)
        self.offsets = np.full((len(rows), OFF_MSCC + 2 * max_rating_groups), -1, np.int64)
        for row, (body, offsets) in enumerate(rows):
            self.bytes[row, :len(body)] = np.frombuffer(body, np.uint8)
            self.offsets[row, :len(offsets)] = offsets

    def _build(self, kind, n_rg, origin_host, origin_realm, destination_realm,
               service_context):
        sid = self.sid_prefix + b"0" * SID_DIGITS
        rsu = (avp_group(AVP_REQUESTED_SERVICE_UNIT,
                         avp_u64(AVP_CC_TOTAL_OCTETS, self.request_octets))
               if self.request_octets else avp_group(AVP_REQUESTED_SERVICE_UNIT))
        msccs = []
        for _ in range(n_rg):
            mscc = []
            if kind != TERMINATE:
                mscc.append(rsu)
            if kind != INITIAL:
                mscc.append(avp_group(AVP_USED_SERVICE_UNIT, avp_u64(AVP_CC_TOTAL_OCTETS, 0)))
            mscc.append(avp_u32(AVP_RATING_GROUP, 0))
            msccs.append(avp_group(AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, *mscc))
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
                 *msccs]
        msg = encode_message(CMD_CREDIT_CONTROL, FLAG_REQUEST | FLAG_PROXYABLE,
                             APP_CREDIT_CONTROL, 0, 0, avps)
        # Offsets found by walking the encoded AVPs, so they cannot drift
        # from the encoding above. The USU of an MSCC precedes its Rating-Group.
        offsets = [-1, -1, -1]
        used_at = -1
        for code, start in _walk(msg, HEADER_LEN, len(msg)):
            if code == AVP_SESSION_ID:
                offsets[OFF_SID] = start + len(self.sid_prefix)
            elif code == AVP_CC_REQUEST_NUMBER:
                offsets[OFF_REQNO] = start
            elif code == AVP_SUBSCRIPTION_ID_DATA:
                offsets[OFF_MSISDN] = start
            elif code == AVP_USED_SERVICE_UNIT:
                used_at = start + 8  # its only child: CC-Total-Octets' value
            elif code == AVP_RATING_GROUP:
                offsets += [start, used_at]
                used_at = -1
        return msg, offsets

    def row(self, kind: int, n_rating_groups: int) -> int:
        return template_row(kind, n_rating_groups, self.max_rating_groups)

    def session_id(self, session_no: int) -> str:
        return (self.sid_prefix + b"%010d" % session_no).decode()

    def encode(self, kind: int, session_no: int, msisdn: int, request_number: int,
               rating_groups=(10,), used=None, hbh: int = 0, e2e: int = 0,
               retransmit: bool = False) -> bytes:
        """One CCR as bytes (the same patching as the compiled generator)."""
        n = len(rating_groups)
        row = self.row(kind, n)
        out = np.zeros(int(self.lengths[row]), np.uint8)
        rgs = np.array(rating_groups, np.int64)
        used_arr = np.zeros(n, np.int64) if used is None else np.array(used, np.int64)
        end = fill_ccr(out, 0, self.bytes, self.lengths, self.offsets, self.msisdn_digits,
                       row, session_no, msisdn, request_number, rgs, used_arr, n,
                       hbh, e2e, retransmit)
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
def fill_ccr(out, pos, tmpl, lengths, offsets, msisdn_digits, row, session_no, msisdn,
             request_number, rating_groups, used, n_rg, hbh, e2e, retransmit):
    """Write one CCR from template `row` at out[pos:]; return the position after it."""
    n = lengths[row]
    out[pos:pos + n] = tmpl[row, :n]
    if retransmit:
        out[pos + 4] |= FLAG_RETRANSMIT
    _put_u32(out, pos + 12, hbh)
    _put_u32(out, pos + 16, e2e)
    _put_digits(out, pos + offsets[row, OFF_SID], SID_DIGITS, session_no)
    _put_digits(out, pos + offsets[row, OFF_MSISDN], msisdn_digits, msisdn)
    _put_u32(out, pos + offsets[row, OFF_REQNO], request_number)
    for i in range(n_rg):
        _put_u32(out, pos + offsets[row, OFF_MSCC + 2 * i], rating_groups[i])
        at = offsets[row, OFF_MSCC + 2 * i + 1]
        if at >= 0:
            _put_u32(out, pos + at, used[i] >> 32)
            _put_u32(out, pos + at + 4, used[i] & 0xFFFFFFFF)
    return pos + n
