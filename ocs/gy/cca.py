"""Building Credit-Control-Answers (RFC 4006 section 3.2)."""
from __future__ import annotations

import struct

from ..diameter import avp as A
from ..diameter import constants as c
from ..diameter.message import Header, answer_header, top_level_avps

AVP_CHECK_BALANCE_RESULT = 422
FUI_TERMINATE = A.grouped(c.AVP_FINAL_UNIT_INDICATION, [A.u32(c.AVP_FINAL_UNIT_ACTION, c.FUA_TERMINATE)])


def final_unit_indication(final: int, filter_id: str | None = None) -> bytes:
    """RFC 4006 8.34: TERMINATE (final 1), or RESTRICT_ACCESS (final 2) with
    the Filter-Id of the throttle profile the gateway applies after these units."""
    if final == 1 or filter_id is None:
        return FUI_TERMINATE if final == 1 else A.grouped(
            c.AVP_FINAL_UNIT_INDICATION, [A.u32(c.AVP_FINAL_UNIT_ACTION, c.FUA_RESTRICT_ACCESS)])
    return A.grouped(c.AVP_FINAL_UNIT_INDICATION, [A.u32(c.AVP_FINAL_UNIT_ACTION, c.FUA_RESTRICT_ACCESS),
                                                   A.utf8(c.AVP_FILTER_ID, filter_id)])


AVP_COST_INFORMATION, AVP_UNIT_VALUE, AVP_VALUE_DIGITS, AVP_EXPONENT, AVP_CURRENCY_CODE = 423, 445, 447, 429, 425


def cost_information(micro: int, currency: str) -> bytes:
    """Cost-Information (RFC 4006 8.7): the price in micro-units, i.e.
    Value-Digits x 10^-6 of the currency."""
    from ..rules.units import NUMERIC
    unit_value = A.grouped(AVP_UNIT_VALUE, [A.u64(AVP_VALUE_DIGITS, micro), A.u32(AVP_EXPONENT, (-6) & 0xFFFFFFFF)])
    return A.grouped(AVP_COST_INFORMATION, [unit_value, A.u32(AVP_CURRENCY_CODE, NUMERIC.get(currency, 0))])


def granted_units(octets: int, seconds: int) -> bytes:
    parts = [A.u64(c.AVP_CC_TOTAL_OCTETS, octets)]
    if seconds > 0:
        parts.append(A.u32(c.AVP_CC_TIME, seconds))
    return A.grouped(c.AVP_GRANTED_SERVICE_UNIT, parts)


def mscc(rating_group: int, service_ids, result: int, granted: int, granted_time: int,
         validity: int, final: int, filter_id: str | None = None, holding_time: int = 0,
         threshold: int = 0) -> bytes:
    parts = []
    if granted >= 0:
        parts.append(granted_units(granted, granted_time))
    parts += [A.u32(c.AVP_SERVICE_IDENTIFIER, s) for s in service_ids]
    if rating_group >= 0:
        parts.append(A.u32(c.AVP_RATING_GROUP, rating_group))
    if granted >= 0 and validity > 0:
        parts.append(A.u32(c.AVP_VALIDITY_TIME, validity))
    if granted > 0 and holding_time > 0:
        parts.append(A.u32(c.AVP_QUOTA_HOLDING_TIME, holding_time, vendor=c.VENDOR_3GPP))
    if granted > 0 and threshold > 0:
        parts.append(A.u32(c.AVP_VOLUME_QUOTA_THRESHOLD, threshold, vendor=c.VENDOR_3GPP))
    parts.append(A.u32(c.AVP_RESULT_CODE, result))
    if final:
        parts.append(final_unit_indication(final, filter_id))
    return A.grouped(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, parts)


def cca(h: Header, session_id: bytes, result: int, origin_avps: bytes, request_type: int,
        request_number: int, body: list[bytes], ccfh: int) -> bytes:
    parts = [A.encode(c.AVP_SESSION_ID, session_id), A.u32(c.AVP_RESULT_CODE, result), origin_avps,
             A.u32(c.AVP_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL),
             A.u32(c.AVP_CC_REQUEST_TYPE, request_type), A.u32(c.AVP_CC_REQUEST_NUMBER, request_number)]
    parts += body
    parts.append(A.u32(c.AVP_CREDIT_CONTROL_FAILURE_HANDLING, ccfh))
    data = b"".join(parts)
    return answer_header(h, len(data)) + data


def error_extra(frame: bytes) -> bytes:
    """Auth-Application-Id, CC-Request-Type and -Number for a 5xxx CCA, read
    leniently from a request that may be malformed."""
    out = [A.u32(c.AVP_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL)]
    pos, end = c.HEADER_LEN, len(frame)
    found = {}
    while end - pos >= 8:
        code, fl = struct.unpack_from(">II", frame, pos)
        length = fl & 0xFFFFFF
        if length < 8 or pos + length > end:
            break
        if code in (c.AVP_CC_REQUEST_TYPE, c.AVP_CC_REQUEST_NUMBER) and length == 12 and code not in found:
            found[code] = frame[pos:pos + 12]
        pos += length + ((-length) & 3)
    for code in (c.AVP_CC_REQUEST_TYPE, c.AVP_CC_REQUEST_NUMBER):
        if code in found:
            out.append(found[code])
    return b"".join(out)


def answers_request(answer: bytes, session_id: bytes, request_type: int, request_number: int) -> bool:
    """Whether a kept CCA answers the request with this Session-Id,
    CC-Request-Type and CC-Request-Number (RFC 4006 5.7; RFC 6733 6.2: an
    answer carries its request's Session-Id): the duplicate cache's key,
    Origin-Host and End-to-End-Identifier, only finds a candidate."""
    found = {}
    for code, start, end in top_level_avps(answer):
        if code in (c.AVP_SESSION_ID, c.AVP_CC_REQUEST_TYPE, c.AVP_CC_REQUEST_NUMBER) and code not in found:
            found[code] = answer[start + 8:end]
            if len(found) == 3:
                break
    return (found.get(c.AVP_SESSION_ID) == session_id
            and found.get(c.AVP_CC_REQUEST_TYPE) == request_type.to_bytes(4, "big")
            and found.get(c.AVP_CC_REQUEST_NUMBER) == (request_number & 0xFFFFFFFF).to_bytes(4, "big"))


def with_hop_by_hop(answer: bytes, hbh: int) -> bytes:
    """A stored answer re-sent for a retransmitted request: same answer, the
    retransmission's Hop-by-Hop Identifier (RFC 6733 section 6.2)."""
    return answer[:12] + struct.pack(">I", hbh) + answer[16:]
