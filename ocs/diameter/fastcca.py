"""The compiled CCA encoder: every answer of a batch in one numba call.

Byte for byte the answers `ocs.gy.cca` builds (RFC 4006 section 3.2);
differential tests hold the two equal.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from . import constants as c

_M = 0x40


@njit(cache=True)
def _put32(out, pos, v):
    out[pos] = (v >> 24) & 0xFF
    out[pos + 1] = (v >> 16) & 0xFF
    out[pos + 2] = (v >> 8) & 0xFF
    out[pos + 3] = v & 0xFF


@njit(cache=True)
def _hdr(out, pos, code, length):
    _put32(out, pos, code)
    _put32(out, pos + 4, (_M << 24) | length)
    return pos + 8


@njit(cache=True)
def _avp32(out, pos, code, v):
    pos = _hdr(out, pos, code, 12)
    _put32(out, pos, v)
    return pos + 4


@njit(cache=True)
def _avp32_3gpp(out, pos, code, v):
    """An Unsigned32 3GPP AVP (V and M bits, Vendor-Id 10415)."""
    _put32(out, pos, code)
    _put32(out, pos + 4, (0xC0 << 24) | 16)
    _put32(out, pos + 8, c.VENDOR_3GPP)
    _put32(out, pos + 12, v)
    return pos + 16


@njit(cache=True)
def _avp64(out, pos, code, v):
    pos = _hdr(out, pos, code, 16)
    _put32(out, pos, (v >> 32) & 0xFFFFFFFF)
    _put32(out, pos + 4, v & 0xFFFFFFFF)
    return pos + 8


@njit(cache=True)
def _gsu(out, pos, granted, seconds):
    start = pos
    pos += 8
    pos = _avp64(out, pos, c.AVP_CC_TOTAL_OCTETS, granted)
    if seconds > 0:
        pos = _avp32(out, pos, c.AVP_CC_TIME, seconds)
    _hdr(out, start, c.AVP_GRANTED_SERVICE_UNIT, pos - start)
    return pos


@njit(cache=True)
def _fui(out, pos, final, fidx, filters, filter_off):
    """Final-Unit-Indication: TERMINATE (final 1), or RESTRICT_ACCESS with
    the throttle profile's Filter-Id (final 2)."""
    start = pos
    pos += 8
    if final == 1 or fidx < 0:
        return _avp32(out, _hdr(out, start, c.AVP_FINAL_UNIT_INDICATION, 20), c.AVP_FINAL_UNIT_ACTION,
                      c.FUA_TERMINATE if final == 1 else c.FUA_RESTRICT_ACCESS)
    pos = _avp32(out, pos, c.AVP_FINAL_UNIT_ACTION, c.FUA_RESTRICT_ACCESS)
    a, b = filter_off[fidx], filter_off[fidx + 1]
    pos = _hdr(out, pos, c.AVP_FILTER_ID, 8 + b - a)
    out[pos:pos + b - a] = filters[a:b]
    pos += b - a
    while pos & 3:
        out[pos] = 0
        pos += 1
    _hdr(out, start, c.AVP_FINAL_UNIT_INDICATION, pos - start)
    return pos


@njit(cache=True)
def _encode(buf, frames, reqs, msccs, sel, origin, ccfh, filters, filter_off, out, offsets):
    pos = 0
    for k in range(sel.shape[0]):
        i = sel[k]
        f = frames[i]
        r = reqs[i]
        start = pos
        offsets[k] = start
        _put32(out, pos + 4, ((f["flags"] & 0x40) << 24) | c.CMD_CREDIT_CONTROL)
        _put32(out, pos + 8, c.APP_CREDIT_CONTROL)
        _put32(out, pos + 12, f["hbh"])
        _put32(out, pos + 16, f["e2e"])
        pos += 20
        n = f["sid_len"]
        pos = _hdr(out, pos, c.AVP_SESSION_ID, 8 + n)
        out[pos:pos + n] = buf[f["sid_off"]:f["sid_off"] + n]
        pos += n
        while pos & 3:
            out[pos] = 0
            pos += 1
        m0 = r["mscc_start"]
        result = r["result"]
        if f["top_level"] and r["mscc_count"] > 0:
            result = msccs[m0]["result"]
        pos = _avp32(out, pos, c.AVP_RESULT_CODE, result)
        out[pos:pos + origin.shape[0]] = origin
        pos += origin.shape[0]
        pos = _avp32(out, pos, c.AVP_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL)
        pos = _avp32(out, pos, c.AVP_CC_REQUEST_TYPE, f["type"])
        pos = _avp32(out, pos, c.AVP_CC_REQUEST_NUMBER, f["number"])
        for j in range(m0, m0 + r["mscc_count"]):
            m = msccs[j]
            if f["top_level"]:
                if m["granted"] >= 0:
                    pos = _gsu(out, pos, m["granted"], m["granted_time"])
                    if m["validity"] > 0:       # RFC 4006 8.33: also at the top level of a CCA
                        pos = _avp32(out, pos, c.AVP_VALIDITY_TIME, m["validity"])
                if m["final"]:
                    pos = _fui(out, pos, m["final"], m["filter"], filters, filter_off)
                continue
            g = pos
            pos += 8
            if m["granted"] >= 0:
                pos = _gsu(out, pos, m["granted"], m["granted_time"])
            if m["service_id"] >= 0:
                pos = _avp32(out, pos, c.AVP_SERVICE_IDENTIFIER, m["service_id"])
            if m["rg"] >= 0:
                pos = _avp32(out, pos, c.AVP_RATING_GROUP, m["rg"])
            if m["granted"] >= 0 and m["validity"] > 0:
                pos = _avp32(out, pos, c.AVP_VALIDITY_TIME, m["validity"])
            if m["granted"] > 0 and m["qht"] > 0:
                pos = _avp32_3gpp(out, pos, c.AVP_QUOTA_HOLDING_TIME, m["qht"])
            if m["granted"] > 0 and m["vqt"] > 0:
                pos = _avp32_3gpp(out, pos, c.AVP_VOLUME_QUOTA_THRESHOLD, m["vqt"])
            pos = _avp32(out, pos, c.AVP_RESULT_CODE, m["result"])
            if m["final"]:
                pos = _fui(out, pos, m["final"], m["filter"], filters, filter_off)
            _hdr(out, g, c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, pos - g)
        if r["check_balance"] >= 0:
            pos = _avp32(out, pos, 422, r["check_balance"])
        pos = _avp32(out, pos, c.AVP_CREDIT_CONTROL_FAILURE_HANDLING, ccfh)
        _put32(out, start, (1 << 24) | (pos - start))
    offsets[sel.shape[0]] = pos


@njit(cache=True)
def _bound(frames, reqs, sel, origin_len, filter_max):
    total = 0
    for k in range(sel.shape[0]):
        i = sel[k]
        total += 160 + origin_len + frames[i]["sid_len"] + (152 + filter_max) * reqs[i]["mscc_count"]
    return total


class FilterIds:
    """Throttle profile names (Filter-Id), packed for the encoder."""

    def __init__(self, names: list[str]):
        raw = [n.encode() for n in names]
        self.data = np.frombuffer(b"".join(raw) or b"\0", dtype=np.uint8)
        self.offsets = np.cumsum([0] + [len(r) for r in raw]).astype(np.int64)
        self.longest = max((len(r) for r in raw), default=0)


NO_FILTERS = FilterIds([])


def encode_batch(buf, frames, reqs, msccs, sel: np.ndarray, origin: bytes, ccfh: int,
                 filters: FilterIds = NO_FILTERS):
    """Encode the CCAs of requests `sel`; returns (bytes, offsets): answer k
    is data[offsets[k]:offsets[k + 1]]."""
    origin_arr = np.frombuffer(origin, dtype=np.uint8)
    out = np.empty(_bound(frames, reqs, sel, len(origin), filters.longest + 24), dtype=np.uint8)
    offsets = np.empty(len(sel) + 1, dtype=np.int64)
    _encode(buf, frames, reqs, msccs, sel, origin_arr, ccfh, filters.data, filters.offsets, out, offsets)
    return out[:offsets[-1]].tobytes(), offsets
