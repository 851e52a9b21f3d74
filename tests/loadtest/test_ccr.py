"""loadtest.ccr templates against python-diameter's full decoder."""
import pytest
from diameter.message import Message

from loadtest import ccr, codec

HOST, REALM, DEST = "pgw1.loadtest.example", "loadtest.example", "ocs.example"


@pytest.fixture(scope="module")
def templates():
    return ccr.CcrTemplates(HOST, REALM, DEST, msisdn_digits=13, boot=1700000000,
                            max_rating_groups=3, request_octets=10 << 20)


# kind, session number, msisdn, CC-Request-Number, rating groups, used octets, hbh, e2e
CCRS = [
    (codec.INITIAL, 0, 8613900000000, 0, [10], [0], 1, 1),
    (codec.UPDATE, 42, 8613900099999, 7, [10, 20], [5_000_000_000, 3], 0xFFFFFFFF, 0x12345678),
    (codec.UPDATE, 43, 8613900099999, 8, [2**32 - 1, 0, 7], [1, 2, 3], 5, 6),
    (codec.TERMINATE, 9_999_999_999, 1234567890123, 2**32 - 1, [30], [2**63 - 1], 0, 0xFFFFFFFF),
]


@pytest.mark.parametrize("kind,session,msisdn,reqno,rgs,used,hbh,e2e", CCRS)
@pytest.mark.parametrize("retransmit", [False, True])
def test_ccr_decodes_with_python_diameter(templates, kind, session, msisdn, reqno, rgs,
                                          used, hbh, e2e, retransmit):
    raw = templates.encode(kind, session, msisdn, reqno, rgs, used, hbh, e2e, retransmit)
    # Re-encoding the plain decode reproduces every byte: lengths, padding, flags.
    assert Message.from_bytes(raw, plain_msg=True).as_bytes() == raw
    msg = Message.from_bytes(raw)
    h = msg.header
    assert (h.command_code, h.application_id, h.is_request, h.is_proxyable) == (272, 4, True, True)
    assert h.is_retransmit == retransmit
    assert (h.hop_by_hop_identifier, h.end_to_end_identifier, h.length) == (hbh, e2e, len(raw))
    assert msg.session_id == templates.session_id(session) == f"{HOST};1700000000;{session:010d}"
    assert (msg.origin_host, msg.origin_realm, msg.destination_realm) == (
        HOST.encode(), REALM.encode(), DEST.encode())
    assert msg.auth_application_id == 4
    assert msg.service_context_id == "32251@3gpp.org"
    assert (msg.cc_request_type, msg.cc_request_number) == (kind, reqno)
    [sub] = msg.subscription_id
    assert (sub.subscription_id_type, sub.subscription_id_data) == (0, str(msisdn))
    assert msg.multiple_services_indicator == 1
    msccs = msg.multiple_services_credit_control
    assert [m.rating_group for m in msccs] == rgs
    for m, u in zip(msccs, used):
        if kind == codec.TERMINATE:
            assert m.requested_service_unit is None
        else:
            assert m.requested_service_unit.cc_total_octets == 10 << 20
        if kind == codec.INITIAL:
            assert m.used_service_unit == []
        else:
            assert [x.cc_total_octets for x in m.used_service_unit] == [u]
    assert msg.termination_cause == (1 if kind == codec.TERMINATE else None)


def test_an_empty_requested_service_unit_lets_the_server_choose():
    t = ccr.CcrTemplates(HOST, REALM, DEST, 13, 1)
    [m] = Message.from_bytes(t.encode(codec.INITIAL, 1, 8613900000001, 0)
                             ).multiple_services_credit_control
    assert m.requested_service_unit is not None
    assert m.requested_service_unit.cc_total_octets is None


def test_every_avp_we_send_has_the_m_bit(templates):
    raw = templates.encode(codec.UPDATE, 1, 8613900000001, 1, [10, 20], [10, 20], 1, 1)
    for avp in Message.from_bytes(raw, plain_msg=True).avps:
        assert avp.is_mandatory, avp


def test_parse_answer_reads_our_own_requests(templates):
    raw = templates.encode(codec.UPDATE, 42, 8613900000123, 7, [10], [99], 0xDEADBEEF, 5)
    a = codec.parse_answer(raw)
    assert (a.command, a.is_request, a.hop_by_hop, a.end_to_end) == (272, True, 0xDEADBEEF, 5)
    assert (a.session_id, a.request_type, a.request_number) == (templates.session_id(42), 2, 7)
    assert a.result_code is None
    assert [(m.rating_group, m.granted_octets) for m in a.msccs] == [(10, None)]


def test_too_many_rating_groups_is_refused():
    with pytest.raises(ValueError):
        ccr.CcrTemplates(HOST, REALM, DEST, 13, 1, max_rating_groups=ccr.MAX_RATING_GROUPS + 1)
