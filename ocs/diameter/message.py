"""Message framing and header checks (RFC 6733 section 3), and answers.

`split_frames` turns a receive buffer into whole messages; what cannot be
framed closes the connection. `answer_header`/`error_answer` build answers
that copy the request's identifiers, as section 6.2 requires.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np
from numba import njit

from . import avp as A
from . import constants as c
from .errors import FramingError, ProtocolError

DEFAULT_MAX_MESSAGE = 1 << 20
_HDR = struct.Struct(">IIIII")


class Header(NamedTuple):
    version: int
    length: int
    flags: int
    code: int
    app: int
    hbh: int
    e2e: int

    @property
    def is_request(self) -> bool:
        return bool(self.flags & c.FLAG_REQUEST)


def parse_header(buf, pos: int = 0) -> Header:
    vl, fc, app, hbh, e2e = _HDR.unpack_from(buf, pos)
    return Header(vl >> 24, vl & 0xFFFFFF, fc >> 24, fc & 0xFFFFFF, app, hbh, e2e)


class Frames:
    """Messages kept as one buffer and where each ends: a batch goes from
    the socket read to the compiled decoder without a bytes object per
    message. `frames[i]` is message i (a copy), as from a list."""

    __slots__ = ("data", "ends")

    def __init__(self, data: bytes, ends: np.ndarray):
        self.data = data
        self.ends = ends            # int64, one per message; the last is len(data)

    @classmethod
    def of(cls, messages: list[bytes]) -> Frames:
        return cls(b"".join(messages), np.cumsum(np.fromiter(map(len, messages), np.int64, len(messages))))

    @classmethod
    def join(cls, parts: list[Frames]) -> Frames:
        if len(parts) == 1:
            return parts[0]
        shift = np.cumsum([0] + [len(p.data) for p in parts[:-1]])
        return cls(b"".join(p.data for p in parts),
                   np.concatenate([p.ends + k for p, k in zip(parts, shift.tolist())]))

    @property
    def starts(self) -> np.ndarray:
        starts = np.empty_like(self.ends)
        starts[:1] = 0
        starts[1:] = self.ends[:-1]
        return starts

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> bytes:
        if i < 0:
            i += len(self.ends)
        return self.data[int(self.ends[i - 1]) if i else 0:int(self.ends[i])]

    def __iter__(self):
        start = 0
        for end in self.ends.tolist():
            yield self.data[start:end]
            start = end


_NO_FRAMES = Frames(b"", np.zeros(0, np.int64))


def split_frames(buf: bytearray, max_message: int = DEFAULT_MAX_MESSAGE) -> tuple[Frames, int, list[int]]:
    """Complete messages at the front of `buf`, how many bytes they took,
    and the indices of those that are not plainly Gy requests (version 1,
    R set, E and reserved bits clear, command 272, application 4, a length
    that is a multiple of 4): the peer's state machine looks at those.

    A length below the header size or above `max_message` cannot be framed
    (nor skipped safely): FramingError, and the connection closes. The
    lengths and headers are walked by a compiled loop; the messages stay in
    one copy of the complete part.
    """
    if len(buf) < 4:
        return _NO_FRAMES, 0, []
    view = np.frombuffer(buf, np.uint8)
    ends = np.empty(len(buf) // c.HEADER_LEN + 1, np.int64)
    others = np.empty(len(ends), np.int64)
    used, k, n_others = _frame_ends(view, max_message, c.HEADER_LEN, ends, others)
    del view                        # released before the caller resizes buf
    if used < 0:
        raise FramingError(f"message length {-used - 1} outside {c.HEADER_LEN}..{max_message}")
    if k == 0:
        return _NO_FRAMES, 0, []
    with memoryview(buf) as whole:
        data = bytes(whole[:used])              # one copy (bytes(buf[:used]) made two)
    return Frames(data, ends[:k].copy()), used, others[:n_others].tolist()


@njit(cache=True)
def _frame_ends(buf, max_message, header_len, ends, others):
    """End offsets of the complete messages; (bytes they take, count,
    count of `others`: the messages that are not plain Gy requests), or
    (-length - 1, count, ...) at a length that cannot be framed."""
    n = buf.shape[0]
    pos = 0
    k = 0
    n_others = 0
    while n - pos >= 4:
        length = (np.int64(buf[pos + 1]) << 16) | (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3])
        if length < header_len or length > max_message:
            return -length - 1, k, n_others
        if n - pos < length:
            break
        plain = (buf[pos] == 1 and (buf[pos + 4] & 0xAF) == 0x80 and length % 4 == 0
                 and buf[pos + 5] == 0 and buf[pos + 6] == 1 and buf[pos + 7] == 16           # command 272
                 and buf[pos + 8] == 0 and buf[pos + 9] == 0 and buf[pos + 10] == 0 and buf[pos + 11] == 4)
        if not plain:
            others[n_others] = k
            n_others += 1
        pos += length
        ends[k] = pos
        k += 1
    return pos, k, n_others


def check_header(h: Header) -> None:
    """Header checks that apply to every request; raises ProtocolError."""
    if h.version != c.VERSION:
        raise ProtocolError(c.UNSUPPORTED_VERSION, f"Diameter version {h.version}")
    if h.length % 4:
        raise ProtocolError(c.INVALID_MESSAGE_LENGTH, f"message length {h.length} is not a multiple of 4")
    if h.flags & (c.FLAG_ERROR | c.FLAGS_RESERVED):
        raise ProtocolError(c.INVALID_HDR_BITS, "request with the E-bit or reserved bits set")


def answer_header(req: Header, body_len: int, error: bool = False) -> bytes:
    flags = (req.flags & c.FLAG_PROXIABLE) | (c.FLAG_ERROR if error else 0)
    return A.header(flags, req.code, req.app, req.hbh, req.e2e, body_len)


def top_level_avps(frame: bytes):
    """(code, start, end) of each top-level base AVP, read leniently: stops
    at the first AVP whose length cannot be trusted."""
    pos, end = c.HEADER_LEN, len(frame)
    while end - pos >= 8:
        code, fl = struct.unpack_from(">II", frame, pos)
        length = fl & 0xFFFFFF
        hdr = 12 if (fl >> 24) & c.AVP_FLAG_VENDOR else 8
        if length < hdr or pos + length > end:
            return
        if hdr == 8:
            yield code, pos, pos + length
        pos += length + ((-length) & 3)


def printable(data: bytes | str, limit: int = 200) -> str:
    """What a peer sent, fit for a log line: control characters, newlines
    and bytes that are not UTF-8 escaped (a peer must not forge log lines),
    at most `limit` characters."""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, (bytes, bytearray)) else data
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."


def find_session_id(frame: bytes) -> bytes | None:
    """The Session-Id of a request, read leniently for error answers."""
    for code, start, end in top_level_avps(frame):
        if code == c.AVP_SESSION_ID:
            return frame[start + 8:end]
    return None


def proxy_infos(frame: bytes) -> bytes:
    """The request's Proxy-Info AVPs as received, for its answer (RFC 6733
    6.7.3: relays need them back, in the same order)."""
    out = [frame[s:e] + b"\0" * ((-(e - s)) & 3) for code, s, e in top_level_avps(frame) if code == c.AVP_PROXY_INFO]
    return b"".join(out)


def error_answer(frame: bytes, err: ProtocolError, identity_avps: bytes, extra: bytes = b"") -> bytes:
    """The answer RFC 6733 section 7 prescribes for a request that failed.

    3xxx answers carry the E-bit and only the AVPs of section 7.2's
    answer-message grammar; 5xxx answers are ordinary answers of the command.
    `identity_avps` are our Origin-Host and Origin-Realm; `extra` goes after
    them (Auth-Application-Id, CC-Request-Type/Number for a CCA).
    """
    h = parse_header(frame)
    parts = []
    sid = find_session_id(frame)
    if sid is not None:
        parts.append(A.encode(c.AVP_SESSION_ID, sid))
    parts.append(A.u32(c.AVP_RESULT_CODE, err.result_code))
    parts.append(identity_avps)
    if not err.e_bit:
        parts.append(extra)
    if err.message:
        parts.append(A.utf8(c.AVP_ERROR_MESSAGE, err.message[:200], mandatory=False))
    if err.failed_avp:
        parts.append(A.encode(c.AVP_FAILED_AVP, err.failed_avp))
    parts.append(proxy_infos(frame))
    body = b"".join(parts)
    return answer_header(h, len(body), error=err.e_bit) + body
