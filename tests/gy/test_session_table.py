"""The RFC 4006 section 7 server session table (ocs/gy/session.py), as a
table: each (state, event) pair and what it leads to; the pairs it lacks
are the protocol's refusals."""
from __future__ import annotations

import numpy as np
import pytest

from ocs.codes import RequestType as T
from ocs.codes import ResultCode
from ocs.gy.session import RowAction as A
from ocs.gy.session import SessionEvent as E
from ocs.gy.session import SessionState as S
from ocs.gy.session import refusal, row_actions, transition

RFC_4006_7 = [
    (S.IDLE, E.INITIAL_GRANTED, S.OPEN, A.KEEP),
    (S.IDLE, E.INITIAL_FAILED, S.IDLE, A.DISCARD),
    (S.IDLE, E.EVENT, S.IDLE, A.NONE),
    (S.OPEN, E.UPDATE_GRANTED, S.OPEN, A.KEEP),
    (S.OPEN, E.UPDATE_FAILED, S.RELEASED, A.RELEASE_AND_REMEMBER),
    (S.OPEN, E.TERMINATION, S.IDLE, A.RELEASE),
    (S.OPEN, E.TCC_EXPIRED, S.RELEASED, A.RELEASE_AND_REMEMBER),
    (S.RELEASED, E.UPDATE_GRANTED, S.OPEN, A.KEEP),
    (S.RELEASED, E.TERMINATION, S.IDLE, A.RELEASE),
    (S.RELEASED, E.GRACE_OVER, S.IDLE, A.NONE),
]


@pytest.mark.parametrize("state, event, after, action", RFC_4006_7)
def test_transitions(state, event, after, action):
    assert transition(state, event) == (after, action)


@pytest.mark.parametrize("state, event", [(S.IDLE, E.UPDATE_GRANTED), (S.IDLE, E.TERMINATION),
                                          (S.OPEN, E.INITIAL_GRANTED), (S.IDLE, E.TCC_EXPIRED)])
def test_pairs_the_table_lacks(state, event):
    with pytest.raises(KeyError, match="RFC 4006 7"):
        transition(state, event)


@pytest.mark.parametrize("state, rtype, code", [
    (S.IDLE, T.UPDATE, ResultCode.UNKNOWN_SESSION_ID),
    (S.IDLE, T.TERMINATION, ResultCode.UNKNOWN_SESSION_ID),
    (S.IDLE, T.INITIAL, 0), (S.IDLE, T.EVENT, 0),
    (S.OPEN, T.UPDATE, 0), (S.OPEN, T.TERMINATION, 0),
    (S.RELEASED, T.UPDATE, 0), (S.RELEASED, T.TERMINATION, 0),
])
def test_requests_refused_by_state(state, rtype, code):
    assert refusal(state, rtype) == code


def test_row_actions_of_a_batch():
    types = np.array([T.INITIAL, T.INITIAL, T.UPDATE, T.UPDATE, T.TERMINATION], np.int32)
    results = np.array([2001, 5030, 2001, 4012, 2001], np.int32)
    got = {action: mask.tolist() for action, mask in row_actions(types, results).items()}
    assert got == {A.KEEP: [True, False, True, False, False], A.DISCARD: [False, True, False, False, False],
                   A.RELEASE_AND_REMEMBER: [False, False, False, True, False],
                   A.RELEASE: [False, False, False, False, True]}
