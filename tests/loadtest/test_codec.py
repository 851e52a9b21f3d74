"""loadtest.codec (answers, control messages) against python-diameter."""
import pytest
from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.avp.grouped import GrantedServiceUnit, MultipleServicesCreditControl
from diameter.message.commands.credit_control import CreditControlAnswer
from diameter.message.constants import (AVP_EXPERIMENTAL_RESULT, AVP_EXPERIMENTAL_RESULT_CODE,
                                        AVP_TGPP_3GPP_CHARGING_ID, AVP_VENDOR_ID, VENDOR_TGPP)

from loadtest import codec

HOST, REALM, DEST = "pgw1.loadtest.example", "loadtest.example", "ocs.example"


def _cca(msccs, result_code=2001, extra=(), hbh=77, e2e=88):
    cca = CreditControlAnswer()
    cca.header.hop_by_hop_identifier, cca.header.end_to_end_identifier = hbh, e2e
    cca.session_id = "ocs;1;2"
    cca.origin_host, cca.origin_realm = b"ocs.example", b"ocs.example"
    cca.auth_application_id = 4
    cca.result_code = result_code
    cca.cc_request_type, cca.cc_request_number = 2, 5
    cca.multiple_services_credit_control = msccs
    for avp in extra:
        cca.append_avp(avp)
    return cca.as_bytes()


def _mscc(rg, octets=None, result=2001):
    gsu = None if octets is None else GrantedServiceUnit(cc_time=60, cc_total_octets=octets)
    return MultipleServicesCreditControl(rating_group=rg, granted_service_unit=gsu,
                                         result_code=result, validity_time=600)


CCAS = [  # MSCCs, expected (rating group, MSCC result, octets) of each
    ([_mscc(10, 1 << 20)], [(10, 2001, 1 << 20)]),
    ([_mscc(10, 2**40 + 7)], [(10, 2001, 2**40 + 7)]),
    ([_mscc(20, 5), _mscc(10, 6)], [(20, 2001, 5), (10, 2001, 6)]),
    ([_mscc(10, None, 4012)], [(10, 4012, None)]),
    ([], []),
]


@pytest.mark.parametrize("msccs,expected", CCAS)
def test_parse_answer_matches_python_diameter(msccs, expected):
    vendor_avp = Avp.new(AVP_TGPP_3GPP_CHARGING_ID, VENDOR_TGPP, value=b"\0\0\0\1")
    raw = _cca(msccs, extra=[vendor_avp])
    full = Message.from_bytes(raw)
    a = codec.parse_answer(raw)
    assert (a.command, a.is_request, a.hop_by_hop, a.end_to_end) == (
        272, False, full.header.hop_by_hop_identifier, full.header.end_to_end_identifier)
    assert a.session_id == full.session_id
    assert (a.result_code, a.request_type, a.request_number) == (
        full.result_code, full.cc_request_type, full.cc_request_number)
    assert len(a.msccs) == len(full.multiple_services_credit_control)
    assert [(m.rating_group, m.result_code, m.granted_octets) for m in a.msccs] == expected


def test_more_msccs_than_the_table_holds_are_counted():
    raw = _cca([_mscc(rg, rg) for rg in range(codec.MAX_ANSWER_MSCC + 3)])
    assert len(codec.parse_answer(raw).msccs) == codec.MAX_ANSWER_MSCC


def test_experimental_result_counts_as_the_result_code():
    cca = CreditControlAnswer()
    cca.session_id = "s"
    cca.origin_host, cca.origin_realm = b"o", b"r"
    cca.auth_application_id, cca.cc_request_type, cca.cc_request_number = 4, 1, 0
    cca.append_avp(Avp.new(AVP_EXPERIMENTAL_RESULT, value=[
        Avp.new(AVP_VENDOR_ID, value=10415),
        Avp.new(AVP_EXPERIMENTAL_RESULT_CODE, value=5030)]))
    raw = cca.as_bytes()
    [code] = Message.from_bytes(raw).find_avps((AVP_EXPERIMENTAL_RESULT, 0),
                                               (AVP_EXPERIMENTAL_RESULT_CODE, 0))
    assert code.value == 5030
    assert codec.parse_answer(raw).result_code == 5030


def test_truncated_avp_is_malformed():
    raw = bytearray(_cca([_mscc(10, 1)]))
    raw[codec.HEADER_LEN + 5:codec.HEADER_LEN + 8] = (4000).to_bytes(3, "big")
    with pytest.raises(ValueError):
        codec.parse_answer(bytes(raw))


CONTROL = [
    (codec.encode_cer(HOST, REALM, "10.1.2.3", hbh=3, e2e=4), 257, True,
     {"origin_host": HOST.encode(), "product_name": "ocs-loadtest",
      "auth_application_id": [4], "host_ip_address": [(1, "10.1.2.3")]}),
    (codec.encode_cea("echo.x", "x", 3, 4), 257, False,
     {"result_code": 2001, "origin_host": b"echo.x", "auth_application_id": [4]}),
    (codec.encode_dwa(HOST, REALM, 3, 4), 280, False,
     {"result_code": 2001, "origin_realm": REALM.encode()}),
    (codec.encode_dpr(HOST, REALM, 3, 4), 282, True, {"disconnect_cause": 2}),
    (codec.encode_dpa(HOST, REALM, 3, 4), 282, False, {"result_code": 2001}),
]


@pytest.mark.parametrize("raw,command,is_request,fields", CONTROL)
def test_control_messages(raw, command, is_request, fields):
    assert Message.from_bytes(raw, plain_msg=True).as_bytes() == raw
    msg = Message.from_bytes(raw)
    assert (msg.header.command_code, msg.header.is_request) == (command, is_request)
    assert (msg.header.hop_by_hop_identifier, msg.header.end_to_end_identifier) == (3, 4)
    for name, value in fields.items():
        assert getattr(msg, name) == value, name


def test_split_frames():
    a = codec.encode_cer(HOST, REALM)
    b = codec.encode_dwa(HOST, REALM, 2, 2)
    buf = a + b + a[:30]
    frames, used = codec.split_frames(buf)
    assert frames == [(0, len(a)), (len(a), len(a) + len(b))]
    assert used == len(a) + len(b)
    assert codec.split_frames(a[:3]) == ([], 0)
    with pytest.raises(ValueError):
        codec.split_frames(b"\x02" + a[1:])
