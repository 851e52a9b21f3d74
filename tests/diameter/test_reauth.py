"""The Re-Auth-Request we send and the RAA we read, against python-diameter's
own messages (an independent codec)."""
from __future__ import annotations

from diameter.message import Message
from diameter.message.commands.re_auth import ReAuthAnswer, ReAuthRequest

from ocs.diameter.peer import LocalIdentity
from ocs.diameter import reauth


def test_rar_is_a_gy_rar_python_diameter_reads():
    ident = LocalIdentity(origin_host="ocs.example", origin_realm="example")
    m = Message.from_bytes(reauth.rar(ident.origin_avps, 7, 9, b"pgw;42", "pgw.example", "gw.example"))
    assert isinstance(m, ReAuthRequest)
    assert (m.header.is_request, m.header.is_proxyable, m.header.application_id) == (True, True, 4)
    assert (m.header.hop_by_hop_identifier, m.header.end_to_end_identifier) == (7, 9)
    assert (m.session_id, m.origin_host, m.origin_realm) == ("pgw;42", b"ocs.example", b"example")
    assert (m.destination_host, m.destination_realm) == (b"pgw.example", b"gw.example")
    assert (m.auth_application_id, m.re_auth_request_type) == (4, 0)     # AUTHORIZE_ONLY


def _raa(result: int | None) -> bytes:
    a = ReAuthAnswer()
    a.header.application_id = 4
    a.header.hop_by_hop_identifier = 77
    a.session_id = "pgw;42"
    a.origin_host = b"pgw.example"
    a.origin_realm = b"gw.example"
    if result is not None:
        a.result_code = result
    return a.as_bytes()


def test_raa_results_are_read():
    assert reauth.parse_raa(_raa(2001)) == reauth.ReAuthAnswer(77, 2001, b"pgw;42")
    assert reauth.parse_raa(_raa(5002)).result_code == 5002
    assert reauth.parse_raa(_raa(None)).result_code == 0        # no Result-Code: not a success


def test_a_broken_raa_is_matched_not_trusted():
    frame = bytearray(_raa(2001))
    cut = bytes(frame[:-6])
    cut = cut[:1] + len(cut).to_bytes(3, "big") + cut[4:]
    got = reauth.parse_raa(cut)
    assert got.hbh == 77 and got.result_code in (0, 2001)


def test_requests_and_other_answers_are_not_raas():
    ident = LocalIdentity()
    assert reauth.parse_raa(reauth.rar(ident.origin_avps, 1, 1, b"s", "h", "r")) is None
    frame = bytearray(_raa(2001))
    frame[5:8] = (272).to_bytes(3, "big")          # a CCA
    assert reauth.parse_raa(bytes(frame)) is None
