"""AVP encoding and the structural walk of a received message (RFC 6733 4.1).

The walk checks what the base protocol requires of every AVP - length,
reserved flag bits, unknown AVPs with the M-bit, the size of fixed-width
types - against python-diameter's dictionary, and raises `ProtocolError`
carrying the offending AVP for Failed-AVP. It is the reference the compiled
CCR decoder is tested against, and the path for every message the compiled
decoder declines.
"""
from __future__ import annotations

import re
import struct
from typing import Iterable

from diameter.message.avp import avp as _pd_avp

from . import constants as c
from .errors import ProtocolError

MAX_NESTING = 8

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_AVP_HDR = struct.Struct(">II")
_AVP_HDR_V = struct.Struct(">III")

_FIXED_SIZE = {
    _pd_avp.AvpUnsigned32: 4, _pd_avp.AvpInteger32: 4, _pd_avp.AvpFloat32: 4,
    _pd_avp.AvpTime: 4, _pd_avp.AvpUnsigned64: 8, _pd_avp.AvpInteger64: 8,
    _pd_avp.AvpFloat64: 8,
}


def avp_type(code: int, vendor: int):
    """python-diameter's type class for an AVP, or None if unknown."""
    entry = _pd_avp.get_avp_dictionary_entry(code, vendor)
    return None if entry is None else entry["type"]


# ---------------------------------------------------------------- encoding

def encode(code: int, payload: bytes, vendor: int = 0, mandatory: bool = True) -> bytes:
    flags = c.AVP_FLAG_MANDATORY if mandatory else 0
    if vendor:
        hdr = _AVP_HDR_V.pack(code, ((flags | c.AVP_FLAG_VENDOR) << 24) | (12 + len(payload)), vendor)
    else:
        hdr = _AVP_HDR.pack(code, (flags << 24) | (8 + len(payload)))
    pad = (-len(payload)) & 3
    return hdr + payload + b"\0" * pad


def u32(code: int, value: int, vendor: int = 0, mandatory: bool = True) -> bytes:
    return encode(code, _U32.pack(value), vendor, mandatory)


def u64(code: int, value: int, vendor: int = 0, mandatory: bool = True) -> bytes:
    return encode(code, _U64.pack(value), vendor, mandatory)


def utf8(code: int, value: str | bytes, vendor: int = 0, mandatory: bool = True) -> bytes:
    return encode(code, value.encode() if isinstance(value, str) else value, vendor, mandatory)


def grouped(code: int, children: Iterable[bytes], vendor: int = 0, mandatory: bool = True) -> bytes:
    return encode(code, b"".join(children), vendor, mandatory)


def address(code: int, ip: str, mandatory: bool = True) -> bytes:
    import ipaddress
    addr = ipaddress.ip_address(ip)
    family = 1 if addr.version == 4 else 2
    return encode(code, struct.pack(">H", family) + addr.packed, 0, mandatory)


def header(flags: int, code: int, app: int, hbh: int, e2e: int, body_len: int) -> bytes:
    return struct.pack(">IIIII", (c.VERSION << 24) | (c.HEADER_LEN + body_len),
                       (flags << 24) | code, app, hbh, e2e)


def message(flags: int, code: int, app: int, hbh: int, e2e: int, avps: Iterable[bytes]) -> bytes:
    body = b"".join(avps)
    return header(flags, code, app, hbh, e2e, len(body)) + body


def minimal_avp(code: int, vendor: int = 0) -> bytes:
    """An AVP with `code` and a zero value of the smallest valid size, for
    Failed-AVP when that AVP is missing (RFC 6733 section 7.5)."""
    size = _FIXED_SIZE.get(avp_type(code, vendor), 0)
    return encode(code, b"\0" * size, vendor)


# ---------------------------------------------------------------- decoding

class RawAvp:
    """One received AVP: where it lies in the buffer and, if grouped, its children."""
    __slots__ = ("code", "flags", "vendor", "start", "data_start", "end", "children", "_buf")

    def __init__(self, buf, code, flags, vendor, start, data_start, end):
        self._buf = buf
        self.code = code
        self.flags = flags
        self.vendor = vendor
        self.start = start
        self.data_start = data_start
        self.end = end
        self.children: list[RawAvp] | None = None

    @property
    def data(self) -> bytes:
        return bytes(self._buf[self.data_start:self.end])

    @property
    def raw(self) -> bytes:
        """The whole AVP as received, padded, for Failed-AVP."""
        end = self.end + ((-(self.end - self.start)) & 3)
        return bytes(self._buf[self.start:min(end, len(self._buf))])

    @property
    def u32(self) -> int:
        return _U32.unpack_from(self._buf, self.data_start)[0]

    @property
    def u64(self) -> int:
        return _U64.unpack_from(self._buf, self.data_start)[0]

    def uint(self) -> int:
        """Unsigned32 or Unsigned64 by size (CC-Total-Octets is Unsigned64)."""
        return self.u64 if self.end - self.data_start == 8 else self.u32

    def __repr__(self) -> str:
        return f"RawAvp(code={self.code}, vendor={self.vendor}, len={self.end - self.start})"


def _stand_in(buf, pos: int, end: int, code: int, flags: int) -> bytes:
    """Failed-AVP content for an AVP whose length field cannot be trusted
    (RFC 6733 section 7.1.5, 5014): its header, zero-padded if incomplete,
    with a length that matches a zero payload of the type's minimal size.
    Copying the received bytes would put an AVP that claims to run past its
    Failed-AVP into our answer, which the peer cannot decode."""
    vendor = 0
    if flags & c.AVP_FLAG_VENDOR:
        vendor = int.from_bytes(bytes(buf[pos + 8:min(pos + 12, end)]).ljust(4, b"\0"), "big")
    size = _FIXED_SIZE.get(avp_type(code, vendor), 0)
    if flags & c.AVP_FLAG_VENDOR:
        return _AVP_HDR_V.pack(code, (flags << 24) | (12 + size), vendor) + b"\0" * size
    return _AVP_HDR.pack(code, (flags << 24) | (8 + size)) + b"\0" * size


def walk(buf: bytes | memoryview, start: int, end: int, depth: int = 0) -> list[RawAvp]:
    """Parse the AVPs in buf[start:end], recursing into known grouped AVPs.

    Raises ProtocolError: 5014 for a length that is too short or runs past
    its container or does not suit a fixed-width type, 3009 for reserved flag
    bits, 5001 for an unknown AVP with the M-bit.
    """
    if depth > MAX_NESTING:
        raise ProtocolError(c.UNABLE_TO_COMPLY, f"grouped AVPs nested deeper than {MAX_NESTING}")
    out: list[RawAvp] = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise ProtocolError(c.INVALID_MESSAGE_LENGTH, "trailing bytes after the last AVP")
        code, fl = _AVP_HDR.unpack_from(buf, pos)
        flags, length = fl >> 24, fl & 0xFFFFFF
        hdr_len = 12 if flags & c.AVP_FLAG_VENDOR else 8
        if length < hdr_len or pos + length > end:
            raise ProtocolError(c.INVALID_AVP_LENGTH, f"AVP {code} has length {length}",
                                _stand_in(buf, pos, end, code, flags))
        vendor = _U32.unpack_from(buf, pos + 8)[0] if hdr_len == 12 else 0
        a = RawAvp(buf, code, flags, vendor, pos, pos + hdr_len, pos + length)
        if flags & c.AVP_FLAGS_RESERVED:
            raise ProtocolError(c.INVALID_AVP_BITS, f"AVP {code} has reserved flag bits set", a.raw)
        typ = avp_type(code, vendor)
        if typ is None:
            if flags & c.AVP_FLAG_MANDATORY:
                raise ProtocolError(c.AVP_UNSUPPORTED, f"unknown AVP {code} (vendor {vendor}) with the M-bit", a.raw)
        elif typ is _pd_avp.AvpGrouped:
            a.children = walk(buf, a.data_start, a.end, depth + 1)
        else:
            size = _FIXED_SIZE.get(typ)
            n = length - hdr_len
            if size is not None and n != size:
                raise ProtocolError(c.INVALID_AVP_LENGTH, f"AVP {code} needs {size} bytes of data, has {n}", a.raw)
            if typ is _pd_avp.AvpAddress and n not in (6, 18):
                raise ProtocolError(c.INVALID_AVP_LENGTH, f"address AVP {code} has {n} bytes of data", a.raw)
        out.append(a)
        pos += length + ((-length) & 3)
    return out


def check_occurrences(avps: list[RawAvp], rules: dict[int, tuple[int, int]], where: str) -> dict[int, list[RawAvp]]:
    """Group AVPs by code and enforce {code: (min, max)} (RFC 6733 section 3.2
    grammar): 5005 with a minimal AVP of the missing code, 5009 with the first
    occurrence past the maximum. Returns code -> occurrences."""
    seen: dict[int, list[RawAvp]] = {}
    for a in avps:
        if a.vendor == 0:
            seen.setdefault(a.code, []).append(a)
    for code, (lo, hi) in rules.items():
        got = seen.get(code, ())
        if len(got) < lo:
            raise ProtocolError(c.MISSING_AVP, f"{where}: missing AVP {code}", minimal_avp(code))
        if len(got) > hi:
            raise ProtocolError(c.AVP_OCCURS_TOO_MANY_TIMES, f"{where}: AVP {code} occurs {len(got)} times", got[hi].raw)
    return seen


_IDENTITY = re.compile(rb"[A-Za-z0-9._-]{1,255}")
_NAMES = {c.AVP_ORIGIN_HOST: "Origin-Host", c.AVP_ORIGIN_REALM: "Origin-Realm",
          c.AVP_DESTINATION_HOST: "Destination-Host", c.AVP_DESTINATION_REALM: "Destination-Realm"}


def identity_ok(data: bytes) -> bool:
    """A DiameterIdentity (RFC 6733 4.3.1, an FQDN): not empty, letters,
    digits, '-', '.', '_' only (fastwalk._identity_ok is its compiled twin)."""
    return _IDENTITY.fullmatch(data) is not None


def check_identities(got: dict[int, list[RawAvp]], where: str) -> None:
    """5004 with the AVP for an empty or malformed Origin-Host, Origin-Realm,
    Destination-Host or Destination-Realm: a peer is named by them, and a
    blank one would let two peers pass for one."""
    for code, name in _NAMES.items():
        for a in got.get(code, ()):
            if not identity_ok(a.data):
                what = "empty" if not a.data else "not a DiameterIdentity (letters, digits, '-', '.', '_')"
                raise ProtocolError(c.INVALID_AVP_VALUE, f"{name} of the {where} is {what}", a.raw)

