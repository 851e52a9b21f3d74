"""The Re-Auth-Requests a connection has sent and the answers that match
them (RFC 6733 section 8.3, RFC 4006 section 5.5, TS 32.299 6.4.6).

A RAR asks the gateway holding a session to re-authorize now; its RAA is
matched by hop-by-hop identifier (RFC 6733 section 6.2), never by content:
an answer matching no request of ours is dropped. Which sessions to ask,
and how fast, is the application's and the server's business
(ocs/gy/reauth.py, ocs/net/reauth.py); this is the protocol state of one
connection. Bytes in, bytes out; time is an argument.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from . import avp as A
from . import constants as c
from .message import parse_header, top_level_avps

AVP_RE_AUTH_REQUEST_TYPE = 285
AUTHORIZE_ONLY = 0
LIMITED_SUCCESS = 2002      # DIAMETER_LIMITED_SUCCESS: a normal RAA (RFC 4006 5.5)


def rar(origin_avps: bytes, hbh: int, e2e: int, session_id: bytes, dest_host: str | bytes,
        dest_realm: str | bytes) -> bytes:
    """A Re-Auth-Request for every rating group of the session (no
    Rating-Group AVP: TS 32.299 6.4.6)."""
    body = [A.utf8(c.AVP_SESSION_ID, session_id), origin_avps,
            A.utf8(c.AVP_DESTINATION_REALM, dest_realm),
            A.utf8(c.AVP_DESTINATION_HOST, dest_host),
            A.u32(c.AVP_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL),
            A.u32(AVP_RE_AUTH_REQUEST_TYPE, AUTHORIZE_ONLY)]
    return A.message(c.FLAG_REQUEST | c.FLAG_PROXIABLE, c.CMD_RE_AUTH, c.APP_CREDIT_CONTROL, hbh, e2e, body)


@dataclass(frozen=True)
class ReAuthAnswer:
    hbh: int
    result_code: int            # 0 when the answer carries none (a malformed RAA)
    session_id: bytes | None


def parse_raa(frame: bytes) -> ReAuthAnswer | None:
    """The parts of a RAA the server acts on; None for an answer that is not
    a Gy RAA (other application answers are not ours to match)."""
    h = parse_header(frame)
    if h.is_request or h.code != c.CMD_RE_AUTH:
        return None
    result, sid = 0, None
    # read leniently: an answer is matched, never refused (RFC 6733 6.2)
    for code, start, end in top_level_avps(frame):
        if code == c.AVP_RESULT_CODE and end - start == 12:
            result = int.from_bytes(frame[start + 8:end], "big")
        elif code == c.AVP_SESSION_ID:
            sid = bytes(frame[start + 8:end])
    return ReAuthAnswer(h.hbh, result, sid)


class ReAuthResult(enum.Enum):
    """What a matched RAA says about the session we asked about."""
    ACCEPTED = "ACCEPTED"               # 2001, or 2002 (RFC 4006 5.5): a CCR-U follows
    UNKNOWN_SESSION = "UNKNOWN_SESSION"  # 5002: the gateway has no such session; release its reservations
    REFUSED = "REFUSED"                 # any other Result-Code, or none
    OTHER_SESSION = "OTHER_SESSION"     # the answer names another Session-Id: not to be acted on


@dataclass(frozen=True, slots=True)
class ReAuthAnswered:
    """Event: the peer answered one of our RARs."""
    session_id: bytes                   # the session we asked about
    result_code: int                    # 0 when the RAA carries none
    result: ReAuthResult
    sent_at: float


@dataclass(frozen=True, slots=True)
class ReAuthTimedOut:
    """Event: a RAR of ours got no answer in time; it is forgotten (a late
    answer is then dropped like any unmatched one)."""
    session_id: bytes


class ReAuthRequests:
    """Our unanswered RARs on one connection: hop-by-hop -> (Session-Id,
    sent), at most one per session."""

    def __init__(self):
        self._by_hbh: dict[int, tuple[bytes, float]] = {}
        self._sessions: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._by_hbh)

    def __contains__(self, session_id: bytes) -> bool:
        return session_id in self._sessions

    def sent(self, hbh: int, session_id: bytes, now: float) -> None:
        self._by_hbh[hbh] = (session_id, now)
        self._sessions.add(session_id)

    def match(self, frame: bytes) -> ReAuthAnswered | None:
        """The event for an answer to one of our RARs; None for any other answer."""
        raa = parse_raa(frame)
        sent = self._by_hbh.pop(raa.hbh, None) if raa is not None else None
        if sent is None:
            return None
        sid, at = sent
        self._sessions.discard(sid)
        if raa.session_id is not None and raa.session_id != sid:
            result = ReAuthResult.OTHER_SESSION
        elif raa.result_code == c.UNKNOWN_SESSION_ID:
            result = ReAuthResult.UNKNOWN_SESSION
        elif raa.result_code in (c.SUCCESS, LIMITED_SUCCESS):
            result = ReAuthResult.ACCEPTED
        else:
            result = ReAuthResult.REFUSED
        return ReAuthAnswered(sid, raa.result_code, result, at)

    def expire(self, now: float, timeout: float) -> list[ReAuthTimedOut]:
        late = [h for h, (_, at) in self._by_hbh.items() if now - at > timeout]
        out = []
        for h in late:
            sid, _ = self._by_hbh.pop(h)
            self._sessions.discard(sid)
            out.append(ReAuthTimedOut(sid))
        return out
