"""The compiled CCR decoder: a whole batch of frames in one numba call.

It accepts exactly what `ocs.gy.ccr.decode_ccr` accepts and extracts the
same values; anything else - any error the full path would raise, and a few
legal but rare shapes (more than 4 Subscription-Ids, more than one
Service-Identifier in an MSCC, more MSCCs than the batch has room for) - is
flagged `fallback`, and the caller decodes that frame with the full path,
which produces the exact answer. Differential tests (hypothesis) hold the
two paths equal. Each frame first passes the checks of the AVP walk
(`fastwalk.py`); this module reads the CCR's fields.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..subscriber import DIGITS_SHIFT, E164, IMSI, KIND_SHIFT, MAX_DIGITS
from . import constants as c
from .avp import MAX_NESTING
from .fastwalk import DICT_DENSE, DICT_KEYS, DICT_KINDS, _avp_header, _identity_ok, _is, _u32, _u64, _valid
from .message import Frames

MAX_SUB_IDS = 4

FRAME = np.dtype([
    ("fallback", np.int8),
    ("flags", np.int32), ("hbh", np.int64), ("e2e", np.int64),
    ("sid_off", np.int64), ("sid_len", np.int64),
    ("host_off", np.int64), ("host_len", np.int64),
    ("type", np.int32), ("number", np.int64), ("action", np.int32),
    ("mscc_start", np.int32), ("mscc_count", np.int32), ("top_level", np.int8),
    ("n_sub", np.int32),
    ("sub_type", np.int32, (MAX_SUB_IDS,)),
    ("sub_key", np.int64, (MAX_SUB_IDS,)),     # subscriber key (ocs.subscriber.subscriber_key) or -1
    ("top_service_id", np.int64),
    ("apn", np.int64),            # apn_key of the Called-Station-Id; 0 absent
    ("rat", np.int32),            # 3GPP-RAT-Type (TS 29.061); -1 absent
    ("plmn", np.int64),           # plmn_key of 3GPP-SGSN-MCC-MNC; -1 absent
], align=True)

AVP_CALLED_STATION_ID = 30
AVP_SERVICE_INFORMATION, AVP_PS_INFORMATION = 873, 874      # 3GPP TS 32.299
AVP_3GPP_RAT_TYPE, AVP_3GPP_SGSN_MCC_MNC = 21, 18           # 3GPP TS 29.061, vendor 10415


@njit(cache=True)
def apn_key_at(buf, off, n):
    """The key of an APN: FNV-1a (63 bits) of its Network Identifier, lower
    case - the labels before a ".mncNNN.mccNNN.gprs" Operator Identifier
    (TS 23.003 section 9.1). Never 0 (0 means absent)."""
    end = off + n
    for i in range(off, off + n - 3):
        if buf[i] == 46 and (buf[i + 1] | 32) == 109 and (buf[i + 2] | 32) == 110 and (buf[i + 3] | 32) == 99:
            end = i                      # ".mnc"
            break
    h = np.uint64(14695981039346656037)
    for i in range(off, end):
        b = buf[i]
        if 65 <= b <= 90:
            b += 32
        h = (h ^ np.uint64(b)) * np.uint64(1099511628211)
    k = np.int64(h & np.uint64(0x7FFFFFFFFFFFFFFF))
    return k if k != 0 else 1


@njit(cache=True)
def plmn_key_at(buf, off, n):
    """MCC-MNC as digits ("46000", "310260") -> length << 32 | value; -1 if not 5 or 6 digits."""
    if n != 5 and n != 6:
        return -1
    v = _decimal(buf, off, n)
    return (np.int64(n) << 32) | v if v >= 0 else -1


def apn_key(text: str | bytes) -> int:
    data = text.encode() if isinstance(text, str) else text
    return int(apn_key_at(np.frombuffer(data or b"\0", np.uint8), 0, len(data)))


def plmn_key(text: str | bytes) -> int:
    data = text.encode() if isinstance(text, str) else text
    return int(plmn_key_at(np.frombuffer(data or b"\0", np.uint8), 0, len(data)))


@njit(cache=True)
def _ps_information(buf, start, end, f):
    """From the first PS-Information in a Service-Information (TS 32.299):
    the first Called-Station-Id, 3GPP-RAT-Type and 3GPP-SGSN-MCC-MNC."""
    pos = start
    while pos < end:
        code, length, hdr = _avp_header(buf, pos)
        if hdr == 12 and code == AVP_PS_INFORMATION and _u32(buf, pos + 8) == c.VENDOR_3GPP:
            p = pos + 12
            got_apn = got_rat = got_plmn = False
            while p < pos + length:
                cc, ll, hh = _avp_header(buf, p)
                n = ll - hh
                if hh == 8 and cc == AVP_CALLED_STATION_ID and not got_apn:
                    f["apn"] = apn_key_at(buf, p + 8, n)
                    got_apn = True
                elif hh == 12 and _u32(buf, p + 8) == c.VENDOR_3GPP:
                    if cc == AVP_3GPP_RAT_TYPE and not got_rat:
                        f["rat"] = buf[p + 12] if n == 1 else -1
                        got_rat = True
                    elif cc == AVP_3GPP_SGSN_MCC_MNC and not got_plmn:
                        f["plmn"] = plmn_key_at(buf, p + 12, n)
                        got_plmn = True
                p += (ll + 3) & ~3
            return
        pos += (length + 3) & ~3


# Octets the engine's int64 columns hold; the full path refuses more (5004).
# Sums are checked before they are made: LLVM may drop a test for a wrapped sum.
_MAX_OCTETS = 2**63 - 1


@njit(cache=True)
def _units(buf, start, end):
    """(ok, octets or -1, seconds) of a Requested/Used-Service-Unit."""
    total = -1
    inp = -1
    out = -1
    seconds = 0
    n_time = 0
    pos = start
    while pos < end:
        code, length, hdr = _avp_header(buf, pos)
        if hdr == 8:
            d = pos + 8
            if code == c.AVP_CC_TOTAL_OCTETS or code == c.AVP_CC_INPUT_OCTETS or code == c.AVP_CC_OUTPUT_OCTETS:
                if _u64(buf, d) < 0:      # 2**63 or more
                    return False, 0, 0
            if code == c.AVP_CC_TOTAL_OCTETS:
                if total >= 0:
                    return False, 0, 0
                total = _u64(buf, d)
            elif code == c.AVP_CC_INPUT_OCTETS:
                if inp >= 0:
                    return False, 0, 0
                inp = _u64(buf, d)
            elif code == c.AVP_CC_OUTPUT_OCTETS:
                if out >= 0:
                    return False, 0, 0
                out = _u64(buf, d)
            elif code == c.AVP_CC_TIME:
                n_time += 1
                if n_time > 1:
                    return False, 0, 0
                seconds = _u32(buf, d)
        pos += (length + 3) & ~3
    octets = -1
    if total >= 0:
        octets = total
    elif inp >= 0 or out >= 0:
        if max(inp, 0) > _MAX_OCTETS - max(out, 0):
            return False, 0, 0
        octets = max(inp, 0) + max(out, 0)
    return True, octets, seconds


@njit(cache=True)
def _decimal(buf, off, n):
    """The value of n ASCII digits; -1 if any is not a digit."""
    v = np.int64(0)
    for i in range(off, off + n):
        d = buf[i] - 48
        if d < 0 or d > 9:
            return -1
        v = v * 10 + d
    return v


@njit(cache=True)
def _digits_key(buf, off, n, kind):
    """The subscriber key of n digits (layout: ocs/subscriber.py); -1 if not 1-15 digits."""
    if n < 1 or n > MAX_DIGITS:
        return -1
    v = _decimal(buf, off, n)
    return (np.int64(kind) << KIND_SHIFT) | (np.int64(n) << DIGITS_SHIFT) | v if v >= 0 else -1


# Top-level CCR AVPs (vendor 0) with at most one occurrence; the first eight are required.
_ONCE = np.array([c.AVP_SESSION_ID, c.AVP_ORIGIN_HOST, c.AVP_ORIGIN_REALM, c.AVP_DESTINATION_REALM,
                  c.AVP_AUTH_APPLICATION_ID, c.AVP_SERVICE_CONTEXT_ID, c.AVP_CC_REQUEST_TYPE,
                  c.AVP_CC_REQUEST_NUMBER, c.AVP_DESTINATION_HOST, c.AVP_USER_NAME, c.AVP_ORIGIN_STATE_ID,
                  c.AVP_EVENT_TIMESTAMP, c.AVP_TERMINATION_CAUSE, c.AVP_REQUESTED_SERVICE_UNIT, 436,
                  c.AVP_MULTIPLE_SERVICES_INDICATOR, c.AVP_SERVICE_IDENTIFIER], dtype=np.int64)
_REQUIRED = 8


@njit(cache=True)
def _group_fields(buf, start, end, m):
    """Fill one MSCC row from an MSCC's children (or the CCR's top level for
    top-level units). Returns False for shapes the full path must handle."""
    n_rg = 0
    n_rsu = 0
    n_sid = 0
    pos = start
    while pos < end:
        code, length, hdr = _avp_header(buf, pos)
        if hdr == 8:
            d = pos + 8
            if code == c.AVP_RATING_GROUP:
                n_rg += 1
                m["rg"] = _u32(buf, d)
            elif code == c.AVP_REQUESTED_SERVICE_UNIT:
                n_rsu += 1
                ok, octets, seconds = _units(buf, d, pos + length)
                if not ok:
                    return False, 0, 0
                m["has_rsu"] = 1
                m["rsu_octets"] = max(octets, 0)
                m["rsu_time"] = seconds
            elif code == c.AVP_USED_SERVICE_UNIT:
                ok, octets, seconds = _units(buf, d, pos + length)
                if not ok:
                    return False, 0, 0
                if max(m["used"], 0) > c.MAX_REPORTED_OCTETS - max(octets, 0):
                    return False, 0, 0      # the full decoder answers 5004
                m["used"] = max(m["used"], 0) + max(octets, 0)
                m["used_time"] += seconds
            elif code == c.AVP_SERVICE_IDENTIFIER:
                n_sid += 1
                m["service_id"] = _u32(buf, d)
        pos += (length + 3) & ~3
    return n_sid <= 1, n_rg, n_rsu


@njit(cache=True)
def _clear(m):
    m["rg"] = -1
    m["has_rsu"] = 0
    m["rsu_octets"] = 0
    m["rsu_time"] = 0
    m["used"] = -1
    m["used_time"] = 0
    m["service_id"] = -1


@njit(cache=True, inline='always')
def _begin(buf, start, end, f, mpos, keys, kinds, dense, ends, nexts):
    """The frame's header and the AVP walk's checks (fastwalk._valid); the
    fields a CCR may lack set to their absent values. False: fall back."""
    if (end - start) % 4 or buf[start] != 1 or not _valid(buf, start + 20, end, keys, kinds, dense, ends, nexts):
        return False
    f["flags"] = buf[start + 4]
    if f["flags"] & 0x2F:
        return False
    f["hbh"] = _u32(buf, start + 12)
    f["e2e"] = _u32(buf, start + 16)
    f["n_sub"] = 0
    f["mscc_start"] = mpos
    f["mscc_count"] = 0
    f["action"] = -1
    f["top_service_id"] = -1
    f["apn"] = 0
    f["rat"] = -1
    f["plmn"] = -1
    return True


@njit(cache=True, inline='always')
def _subscription_id(buf, start, end, f):
    """A Subscription-Id's children (buf[start:end]): its type and the
    subscriber key of its data, as the next of the frame's (at most
    MAX_SUB_IDS). False for what the full decoder must answer or take."""
    if f["n_sub"] == MAX_SUB_IDS:
        return False
    n_type = 0
    n_data = 0
    stype = 0
    doff = 0
    dlen = 0
    p = start
    while p < end:
        cc = _u32(buf, p)
        ll = _u32(buf, p + 4)
        l2 = ll & 0xFFFFFF
        if not (ll >> 24) & 0x80:
            if cc == c.AVP_SUBSCRIPTION_ID_TYPE:
                n_type += 1
                stype = _u32(buf, p + 8)
            elif cc == c.AVP_SUBSCRIPTION_ID_DATA:
                n_data += 1
                doff = p + 8
                dlen = l2 - 8
        p += (l2 + 3) & ~3
    if n_type != 1 or n_data != 1 or stype > 4 or dlen <= 0:
        return False
    f["sub_type"][f["n_sub"]] = stype
    kind = E164 if stype == c.END_USER_E164 else (IMSI if stype == c.END_USER_IMSI else -1)
    f["sub_key"][f["n_sub"]] = _digits_key(buf, doff, dlen, kind) if kind >= 0 else -1
    f["n_sub"] += 1
    return True


@njit(cache=True, inline='always')
def _finish(buf, start, end, f, msccs, mpos, counts, top_apn, msi_zero, has_top_units):
    """After the last AVP: what the full decoder would refuse falls back;
    the APN from the top level if PS-Information had none; top-level units
    become one MSCC row. The next free MSCC row, or -1 to fall back."""
    for k in range(_ONCE.shape[0]):
        if counts[k] > 1 or (k < _REQUIRED and counts[k] == 0):
            return -1
    if f["sid_len"] == 0 or not _identity_ok(buf, f["host_off"], f["host_len"]):
        return -1     # the full decoder answers 5004 with the AVP
    if f["type"] < 1 or f["type"] > 4:
        return -1
    if f["type"] == 4 and f["action"] < 0:
        return -1     # an event without Requested-Action: 5005 from the full decoder
    if msi_zero and f["mscc_count"] > 0:
        return -1     # MULTIPLE_SERVICES_NOT_SUPPORTED with MSCCs: 5007 from the full decoder
    if f["apn"] == 0:
        f["apn"] = top_apn
    f["top_level"] = 1 if f["mscc_count"] == 0 else 0
    if f["mscc_count"] == 0 and has_top_units:
        if mpos >= msccs.shape[0]:
            return -1
        m = msccs[mpos]
        _clear(m)
        ok, n_rg, n_rsu = _group_fields(buf, start + 20, end, m)
        if not ok:
            return -1
        m["rg"] = -1
        m["service_id"] = f["top_service_id"]
        mpos += 1
        f["mscc_count"] = 1
    return mpos


@njit(cache=True)
def _decode_one(buf, start, end, f, msccs, mpos, keys, kinds, dense, counts, ends, nexts, realm, host, max_mscc):
    """Decode one CCR frame; returns the next free MSCC row, or -1 to fall
    back. `counts`, `ends`, `nexts`: scratch, allocated once a batch. One
    loop over the top-level AVPs; its steps before and after it and the
    Subscription-Id group are inlined helpers (inline='always': as fast)."""
    if not _begin(buf, start, end, f, mpos, keys, kinds, dense, ends, nexts):
        return -1
    counts[:] = 0
    top_apn = 0
    seen_si = False
    msi_zero = False
    has_top_units = False
    pos = start + 20
    while pos < end:
        code, length, hdr = _avp_header(buf, pos)
        if hdr == 12:
            if code == AVP_SERVICE_INFORMATION and not seen_si and _u32(buf, pos + 8) == c.VENDOR_3GPP:
                seen_si = True
                _ps_information(buf, pos + 12, pos + length, f)
        elif hdr == 8:
            d = pos + 8
            n = length - 8
            for k in range(_ONCE.shape[0]):
                if _ONCE[k] == code:
                    counts[k] += 1
            if code == c.AVP_SESSION_ID:
                f["sid_off"] = d
                f["sid_len"] = n
            elif code == c.AVP_ORIGIN_HOST:
                f["host_off"] = d
                f["host_len"] = n
            elif code == c.AVP_ORIGIN_REALM or code == c.AVP_DESTINATION_REALM or code == c.AVP_DESTINATION_HOST:
                if not _identity_ok(buf, d, n):
                    return -1
                if code == c.AVP_DESTINATION_REALM and not _is(buf, d, n, realm):
                    return -1
                if code == c.AVP_DESTINATION_HOST and not _is(buf, d, n, host):
                    return -1
            elif code == c.AVP_CC_REQUEST_TYPE:
                rtype = _u32(buf, d)
                if rtype < 1 or rtype > 4:     # checked before it goes into an int32
                    return -1
                f["type"] = rtype
            elif code == c.AVP_CC_REQUEST_NUMBER:
                f["number"] = _u32(buf, d)
            elif code == c.AVP_AUTH_APPLICATION_ID:
                if _u32(buf, d) != c.APP_CREDIT_CONTROL:
                    return -1
            elif code == 436:
                action = _u32(buf, d)
                if action > 3:        # checked before the int32 field could wrap it
                    return -1
                f["action"] = action
            elif code == c.AVP_SERVICE_IDENTIFIER:
                f["top_service_id"] = _u32(buf, d)
            elif code == c.AVP_MULTIPLE_SERVICES_INDICATOR:
                msi_zero = _u32(buf, d) == 0
            elif code == AVP_CALLED_STATION_ID and top_apn == 0:
                top_apn = apn_key_at(buf, d, n)
            elif code == c.AVP_REQUESTED_SERVICE_UNIT or code == c.AVP_USED_SERVICE_UNIT:
                has_top_units = True
            elif code == c.AVP_PROXY_INFO:
                return -1     # a relay's Proxy-Info must be echoed: the full path does that
            elif code == c.AVP_SUBSCRIPTION_ID:
                if not _subscription_id(buf, d, pos + length, f):
                    return -1
            elif code == c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL:
                if mpos >= msccs.shape[0] or f["mscc_count"] >= max_mscc:
                    return -1
                m = msccs[mpos]
                _clear(m)
                ok, n_rg, n_rsu = _group_fields(buf, d, pos + length, m)
                if not ok or n_rg > 1 or n_rsu > 1:
                    return -1
                mpos += 1
                f["mscc_count"] += 1
        pos += (length + 3) & ~3
    return _finish(buf, start, end, f, msccs, mpos, counts, top_apn, msi_zero, has_top_units)


@njit(cache=True)
def _decode_all(buf, starts, ends, frames, msccs, keys, kinds, dense, realm, host, max_mscc):
    mpos = 0
    counts = np.zeros(_ONCE.shape[0], np.int64)
    group_ends = np.empty(MAX_NESTING + 2, np.int64)
    group_nexts = np.empty(MAX_NESTING + 2, np.int64)
    for i in range(starts.shape[0]):
        f = frames[i]
        nxt = _decode_one(buf, starts[i], ends[i], f, msccs, mpos, keys, kinds, dense, counts, group_ends,
                          group_nexts, realm, host, max_mscc)
        if nxt < 0:
            f["fallback"] = 1
            f["mscc_count"] = 0
        else:
            f["fallback"] = 0
            mpos = nxt
    return mpos


_ANY = np.zeros(0, np.uint8)
MAX_MSCC = 64        # MSCCs a CCR may carry (configuration: max_mscc); more get 5009


def identity_bytes(name: str | bytes) -> np.ndarray:
    """Our realm or host as the decoder compares it (lower case)."""
    data = name.encode() if isinstance(name, str) else name
    return np.frombuffer(data.lower(), np.uint8).copy()


def decode_batch(frames: Frames | list[bytes], mscc_dtype: np.dtype, per_frame: int = 4,
                 realm: np.ndarray = _ANY, host: np.ndarray = _ANY, max_mscc: int = MAX_MSCC):
    """Decode a batch of CCR frames. Returns (buffer, frame records, MSCC
    rows, rows used). Frames flagged `fallback` need the full decoder; so
    does a frame whose Destination-Realm is not `realm` or Destination-Host
    not `host` (identity_bytes; empty: any), which the full decoder answers
    3003 or 3002, and one with more than `max_mscc` MSCCs (5009)."""
    if not isinstance(frames, Frames):
        frames = Frames.of(frames)
    buf = np.frombuffer(frames.data, dtype=np.uint8)
    out = np.zeros(len(frames), FRAME)
    msccs = np.zeros(len(frames) * per_frame, mscc_dtype)
    used = _decode_all(buf, frames.starts, frames.ends, out, msccs, DICT_KEYS, DICT_KINDS, DICT_DENSE, realm, host,
                       max_mscc)
    return buf, out, msccs, used


def duplicate_keys(buf: np.ndarray, frames: np.ndarray) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Each decoded frame's duplicate-detection key, Origin-Host followed by
    the 4 octets of the End-to-End-Identifier (RFC 6733 section 6.2): written
    by one compiled pass and sliced from one copy. Also that copy and where
    each key ends in it."""
    ends = np.cumsum(frames["host_len"] + 4)
    out = np.empty(int(ends[-1]) if len(ends) else 0, np.uint8)
    _write_keys(buf, frames, out)
    data = out.tobytes()
    ends_list = ends.tolist()
    return [data[s:e] for s, e in zip([0] + ends_list[:-1], ends_list)], out, ends


@njit(cache=True)
def _write_keys(buf, frames, out):
    pos = 0
    for i in range(frames.shape[0]):
        f = frames[i]
        off = f["host_off"]
        for k in range(f["host_len"]):
            out[pos + k] = buf[off + k]
        pos += f["host_len"]
        e2e = f["e2e"]
        out[pos] = (e2e >> 24) & 0xFF
        out[pos + 1] = (e2e >> 16) & 0xFF
        out[pos + 2] = (e2e >> 8) & 0xFF
        out[pos + 3] = e2e & 0xFF
        pos += 4
