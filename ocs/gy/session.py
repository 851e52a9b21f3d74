"""The credit-control session on the server side (RFC 4006 section 7).

States: IDLE (no session: never opened, or ended), OPEN (a CCR-I was
granted; reservations may be held and the session supervision timer Tcc
runs) and RELEASED: RFC 4006's table goes back to IDLE when Tcc expires or
a CCR-U is refused, but its rule that used units are debited even when the
next grant is refused means the usage a gateway reports afterwards is still
charged; so such a session is remembered for a grace (`session_grace`),
and a report from the host that opened it reopens it (a CCR-U) or ends it
(a CCR-T). Each processed request, the timer and the end of the grace are
events; the table gives the next state and what becomes of the session's
row. A request with no transition from the session's state is refused as
the protocol says: a CCR-U or CCR-T for a session that is not open or
released gets DIAMETER_UNKNOWN_SESSION_ID (5002).
"""
from __future__ import annotations

import enum

import numpy as np

from ..codes import RequestType, ResultCode


class SessionState(enum.Enum):
    IDLE = "idle"
    OPEN = "open"
    RELEASED = "released, remembered for late reports"


class SessionEvent(enum.Enum):
    INITIAL_GRANTED = "CCR-I successfully processed"
    INITIAL_FAILED = "CCR-I not successfully processed"
    UPDATE_GRANTED = "CCR-U successfully processed"
    UPDATE_FAILED = "CCR-U not successfully processed"
    TERMINATION = "CCR-T processed"
    EVENT = "CCR-E processed"
    TCC_EXPIRED = "session supervision timer Tcc expired"
    GRACE_OVER = "the grace for late reports is over"


class RowAction(enum.Enum):
    """What becomes of the session's row and its reservations."""
    KEEP = "keep it; Tcc restarts"
    DISCARD = "release it; nothing to remember"
    RELEASE = "release it (the kernel does, at a CCR-T, once its usage is debited)"
    RELEASE_AND_REMEMBER = "release it; remember the session for late reports"
    NONE = "no row"


S, E, A = SessionState, SessionEvent, RowAction
TRANSITIONS: dict[tuple[SessionState, SessionEvent], tuple[SessionState, RowAction]] = {
    (S.IDLE, E.INITIAL_GRANTED): (S.OPEN, A.KEEP),
    (S.IDLE, E.INITIAL_FAILED): (S.IDLE, A.DISCARD),
    (S.IDLE, E.EVENT): (S.IDLE, A.NONE),
    (S.OPEN, E.UPDATE_GRANTED): (S.OPEN, A.KEEP),
    (S.OPEN, E.UPDATE_FAILED): (S.RELEASED, A.RELEASE_AND_REMEMBER),
    (S.OPEN, E.TERMINATION): (S.IDLE, A.RELEASE),
    (S.OPEN, E.TCC_EXPIRED): (S.RELEASED, A.RELEASE_AND_REMEMBER),
    (S.RELEASED, E.UPDATE_GRANTED): (S.OPEN, A.KEEP),
    (S.RELEASED, E.UPDATE_FAILED): (S.RELEASED, A.RELEASE_AND_REMEMBER),
    (S.RELEASED, E.TERMINATION): (S.IDLE, A.RELEASE),
    (S.RELEASED, E.GRACE_OVER): (S.IDLE, A.NONE),
}
_EVENTS_OF = {
    RequestType.INITIAL: (E.INITIAL_GRANTED, E.INITIAL_FAILED),
    RequestType.UPDATE: (E.UPDATE_GRANTED, E.UPDATE_FAILED),
    RequestType.TERMINATION: (E.TERMINATION, E.TERMINATION),
    RequestType.EVENT: (E.EVENT, E.EVENT),
}


def transition(state: SessionState, event: SessionEvent) -> tuple[SessionState, RowAction]:
    """The next state and the row's fate; KeyError names a pair the table lacks."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise KeyError(f"RFC 4006 7: no transition for {event.value} in state {state.value}") from None


def refusal(state: SessionState, rtype: int) -> int:
    """0 if a request of type `rtype` may be processed in `state`, else the
    Result-Code that refuses it (a CCR-U/T of no session: 5002)."""
    if any((state, e) in TRANSITIONS for e in _EVENTS_OF[RequestType(rtype)]):
        return 0
    return ResultCode.UNKNOWN_SESSION_ID


def event_of(rtype: int, result: int) -> SessionEvent:
    """The event a charged request is, from its type and top-level Result-Code."""
    granted, failed = _EVENTS_OF[RequestType(rtype)]
    return granted if result == ResultCode.SUCCESS else failed


def row_actions(types: np.ndarray, results: np.ndarray) -> dict[RowAction, np.ndarray]:
    """For a batch's charged requests that have a session row (their types
    and top-level Result-Codes): which of them each row action applies to,
    a boolean mask per action, by the table. A CCR-I's session was IDLE; a
    CCR-U/T's is OPEN by then (a RELEASED one was opened again to be charged)."""
    ok = results == int(ResultCode.SUCCESS)      # an int: numpy compares IntEnums slowly
    out: dict[RowAction, np.ndarray] = {}
    for rtype, state in ((RequestType.INITIAL, S.IDLE), (RequestType.UPDATE, S.OPEN),
                         (RequestType.TERMINATION, S.OPEN)):
        kind = types == int(rtype)
        if not kind.any():
            continue
        for granted in (True, False):
            mask = kind & (ok == granted)
            if mask.any():
                _, action = transition(state, event_of(rtype, ResultCode.SUCCESS if granted else 0))
                out[action] = out[action] | mask if action in out else mask
    return out
