"""The compiled walk over a message's AVPs, which the compiled CCR decoder
(`fastccr.py`) runs before it reads a field: every check of `avp.walk`
(lengths, reserved flag bits, M-bit AVPs the dictionary does not know,
the sizes of fixed-size types, nesting), the AVP headers it reads, the
check of a DiameterIdentity and of whether one names us, and a count of
a message's top-level AVPs that decodes none of them. The AVP
dictionary is python-diameter's, compiled into a sorted table of
(vendor, code) -> kind.
"""
from __future__ import annotations

import numpy as np
from diameter.message.avp import avp as _pd_avp
from diameter.message.avp.dictionary import AVP_DICTIONARY, AVP_VENDOR_DICTIONARY
from numba import njit

from . import constants as c
from .avp import MAX_NESTING

# numba keys a cached kernel on its own file only: fastccr's kernels, which
# call these, keep what they compiled from an older version of this file
# until fastccr.py changes too (or its __pycache__ is cleared).

KIND_UNKNOWN, KIND_GROUPED, KIND_FIXED4, KIND_FIXED8, KIND_ADDRESS, KIND_OTHER = range(6)


def _kind_of(typ) -> int:
    if typ is _pd_avp.AvpGrouped:
        return KIND_GROUPED
    if typ in (_pd_avp.AvpUnsigned32, _pd_avp.AvpInteger32, _pd_avp.AvpFloat32, _pd_avp.AvpTime):
        return KIND_FIXED4
    if typ in (_pd_avp.AvpUnsigned64, _pd_avp.AvpInteger64, _pd_avp.AvpFloat64):
        return KIND_FIXED8
    if typ is _pd_avp.AvpAddress:
        return KIND_ADDRESS
    return KIND_OTHER


def _dictionary_table() -> tuple[np.ndarray, np.ndarray]:
    entries = {}
    for code, info in AVP_DICTIONARY.items():
        entries[code] = _kind_of(info["type"])
    for vendor, table in AVP_VENDOR_DICTIONARY.items():
        for code, info in table.items():
            entries[(vendor << 32) | code] = _kind_of(info["type"])
    keys = np.array(sorted(entries), dtype=np.int64)
    kinds = np.array([entries[k] for k in keys], dtype=np.int8)
    return keys, kinds


DICT_KEYS, DICT_KINDS = _dictionary_table()
# The IETF and 3GPP AVPs, where nearly every AVP of a CCR is, by direct
# index: a binary search over the whole dictionary per AVP was a third of
# the decoding time. Row 0 vendor 0, row 1 vendor 10415; 0 is KIND_UNKNOWN.
_DENSE_CODES = 8192
DICT_DENSE = np.zeros((2, _DENSE_CODES), np.int8)
for _key, _k in zip(DICT_KEYS.tolist(), DICT_KINDS.tolist()):
    _vendor, _code = _key >> 32, _key & 0xFFFFFFFF
    if _code < _DENSE_CODES and _vendor in (0, c.VENDOR_3GPP):
        DICT_DENSE[0 if _vendor == 0 else 1, _code] = _k


@njit(cache=True)
def _u32(buf, pos):
    return (np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16) | (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3])


@njit(cache=True)
def _u64(buf, pos):
    return (_u32(buf, pos) << 32) | _u32(buf, pos + 4)


@njit(cache=True)
def _avp_header(buf, pos):
    """(code, length, header size) of the AVP at pos, already validated."""
    fl = _u32(buf, pos + 4)
    return _u32(buf, pos), fl & 0xFFFFFF, 12 if (fl >> 24) & 0x80 else 8


@njit(cache=True)
def _kind_searched(keys, kinds, vendor, code):
    key = (vendor << 32) | code
    i = np.searchsorted(keys, key)
    if i < keys.shape[0] and keys[i] == key:
        return kinds[i]
    return KIND_UNKNOWN


@njit(cache=True)
def _valid(buf, start, end, keys, kinds, dense, ends, nexts):
    """True if buf[start:end] passes every check of avp.walk and has no
    V-bit AVP with Vendor-Id 0 (which the extraction would miss). Iterative, with
    an explicit stack of the enclosing groups' ends (numba's on-disk cache
    does not handle recursive functions)."""
    # ends: where each open group's data ends; nexts: where its parent goes
    # on, past padding (both of MAX_NESTING + 2, the caller's scratch)
    depth = 0
    ends[0] = end
    pos = start
    while True:
        while depth > 0 and pos >= ends[depth]:
            pos = nexts[depth]
            depth -= 1
        if pos >= ends[depth]:
            return True
        limit = ends[depth]
        if limit - pos < 8:
            return False
        code = _u32(buf, pos)
        fl = _u32(buf, pos + 4)
        flags = fl >> 24
        length = fl & 0xFFFFFF
        hdr = 12 if flags & 0x80 else 8
        if length < hdr or pos + length > limit or flags & 0x1F:
            return False
        vendor = _u32(buf, pos + 8) if hdr == 12 else 0
        if hdr == 12 and vendor == 0:
            # V-bit with Vendor-Id 0 (RFC 6733 4.1.1 forbids it): the full path
            # reads it as the IETF AVP; the extraction below skips V-bit AVPs.
            return False
        # the dense table inline: a call per AVP, passing three arrays, cost
        # more than the rest of the walk
        if code < _DENSE_CODES and vendor == 0:
            k = dense[0, code]
        elif code < _DENSE_CODES and vendor == c.VENDOR_3GPP:
            k = dense[1, code]
        else:
            k = _kind_searched(keys, kinds, vendor, code)
        n = length - hdr
        if k == KIND_UNKNOWN:
            if flags & 0x40:
                return False
        elif k == KIND_GROUPED:
            if depth + 1 > MAX_NESTING:
                return False
            depth += 1
            ends[depth] = pos + length
            nexts[depth] = pos + ((length + 3) & ~3)
            pos += hdr
            continue
        elif k == KIND_FIXED4:
            if n != 4:
                return False
        elif k == KIND_FIXED8:
            if n != 8:
                return False
        elif k == KIND_ADDRESS:
            if n != 6 and n != 18:
                return False
        pos += (length + 3) & ~3


@njit(cache=True)
def _identity_ok(buf, off, n):
    """A DiameterIdentity (RFC 6733 4.3.1: an FQDN): not empty, letters,
    digits, '-', '.', '_' only. As avp.diameter_identity_ok."""
    if n <= 0 or n > 255:
        return False
    for i in range(off, off + n):
        b = buf[i]
        if not ((b >= 97 and b <= 122) or (b >= 65 and b <= 90) or (b >= 48 and b <= 57)
                or b == 45 or b == 46 or b == 95):
            return False
    return True


@njit(cache=True)
def _is(buf, off, n, ours):
    """Whether buf[off:off+n] names `ours` (lower case), ignoring case as
    DNS names are compared; an empty `ours` matches anything."""
    if ours.shape[0] == 0:
        return True
    if n != ours.shape[0]:
        return False
    for i in range(n):
        b = buf[off + i]
        if b >= 65 and b <= 90:
            b += 32
        if b != ours[i]:
            return False
    return True


def count_top_level(frame: bytes, code: int, n: int) -> tuple[int, int, int]:
    """How many top-level base AVPs `code` a message has, and where the
    (n+1)-th lies (start, end; -1 if there are no more than n): a compiled
    look that does not decode them, so a message of 10,000 MSCCs is
    refused in microseconds."""
    buf = np.frombuffer(frame, np.uint8)
    return _count_top_level(buf, code, n)


@njit(cache=True)
def _count_top_level(buf, code, n):
    count = 0
    start = -1
    end = -1
    pos = 20
    while buf.shape[0] - pos >= 8:
        fl = _u32(buf, pos + 4)
        length = fl & 0xFFFFFF
        hdr = 12 if (fl >> 24) & 0x80 else 8
        if length < hdr or pos + length > buf.shape[0]:
            break
        if hdr == 8 and _u32(buf, pos) == code:
            if count == n:
                start = pos
                end = pos + length + ((-length) & 3)
            count += 1
        pos += (length + 3) & ~3
    return count, start, end
