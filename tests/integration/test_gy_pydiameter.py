"""python-diameter's own client against `ocs serve` over real TCP: CER,
CCR-I/U/T, DWR both ways, DPR; and the Gy result codes."""
from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from diameter.message import Message
from diameter.message.constants import (AVP_CC_TOTAL_OCTETS, AVP_FINAL_UNIT_ACTION, AVP_FINAL_UNIT_INDICATION,
                                        AVP_GRANTED_SERVICE_UNIT, AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
                                        AVP_RATING_GROUP, AVP_RESULT_CODE, AVP_VALIDITY_TIME)

from tests.support.pdclient import PyDiameterClient
from tests.support.server import OcsProcess, show_subscriber

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"
KB = 1024
MB = 1024 * KB
I, U, T = 1, 2, 3


def plain(answer) -> Message:
    return Message.from_bytes(answer.as_bytes(), plain_msg=True)


def result(answer) -> int:
    return plain(answer).find_avps((AVP_RESULT_CODE, 0))[0].value


def msccs(answer) -> dict[int, dict]:
    """Rating group -> {result, granted, final, validity} read with python-diameter."""
    out = {}
    for m in plain(answer).find_avps((AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, 0)):
        entry = {"granted": None, "final": None, "validity": None}
        for a in m.value:
            if a.code == AVP_RATING_GROUP:
                rg = a.value
            elif a.code == AVP_RESULT_CODE:
                entry["result"] = a.value
            elif a.code == AVP_VALIDITY_TIME:
                entry["validity"] = a.value
            elif a.code == AVP_GRANTED_SERVICE_UNIT:
                entry["granted"] = next(x.value for x in a.value if x.code == AVP_CC_TOTAL_OCTETS)
            elif a.code == AVP_FINAL_UNIT_INDICATION:
                entry["final"] = next(x.value for x in a.value if x.code == AVP_FINAL_UNIT_ACTION)
        out[rg] = entry
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gy")
    cfg = tmp / "ocs.toml"
    cfg.write_text("tw = 2\n")
    with OcsProcess(tmp / "data", rules=RULES, config=cfg) as ocs:
        yield ocs


def test_session_lifecycle_and_watchdog(server):
    with PyDiameterClient(server.port) as client:
        client.node.idle_timeout = 1
        a = client.send(client.ccr("gw;lifecycle;1", I, 0, "8613800000001", [{"rg": 10, "rsu": 0}]))
        assert result(a) == 2001
        first = msccs(a)[10]
        assert first["result"] == 2001 and first["granted"] == 10 * MB and first["validity"] == 1800
        a = client.send(client.ccr("gw;lifecycle;1", U, 1, None, [{"rg": 10, "rsu": 0, "used": 3 * MB}]))
        assert result(a) == 2001 and msccs(a)[10]["granted"] == 10 * MB
        # idle: the client's DWR gets our DWA, and our own DWR (Tw = 2 s) reaches the client
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (client.peer.counters.dwa == 0 or client.peer.counters.dwr == 0):
            time.sleep(0.2)
        assert client.peer.counters.dwa >= 1, "no DWA to the client's DWR"
        assert client.peer.counters.dwr >= 1, "the server sent no DWR after Tw"
        a = client.send(client.ccr("gw;lifecycle;1", T, 2, None, [{"rg": 10, "used": 1 * MB}]))
        assert result(a) == 2001
    # DPR from the client closed the connection cleanly; the server is still serving
    state = show_subscriber(server.data, "8613800000001", RULES)
    assert state["bundle"]["used_octets"] == 4 * MB
    assert state["reservations"] == []
    assert "peer disconnected (DPR)" in server.output()


def test_result_codes(server):
    with PyDiameterClient(server.port, origin_host="pgw2.test.example") as client:
        # 5030: nobody has this number
        a = client.send(client.ccr("gw;rc;1", I, 0, "8613799999999", [{"rg": 10, "rsu": 0}]))
        assert result(a) == 5030
        # tiny plan: 0.10 yuan at 0.01 per started KB = 10 KB; rating groups 10, 20 rated, 30 barred, 40 unrated
        a = client.send(client.ccr("gw;rc;2", I, 0, "8613700000001",
                                   [{"rg": 10, "rsu": 6 * KB}, {"rg": 30, "rsu": 0}, {"rg": 40, "rsu": 0}]))
        assert result(a) == 2001
        got = msccs(a)
        assert got[10]["result"] == 2001 and got[10]["granted"] == 6 * KB and got[10]["final"] is None
        assert got[30]["result"] == 4010 and got[30]["granted"] is None
        assert got[40]["result"] == 5031 and got[40]["granted"] is None
        # 4 KB of money left: asking 6 KB more gets the final 4 KB, flagged FUI TERMINATE
        a = client.send(client.ccr("gw;rc;2", U, 1, None, [{"rg": 20, "rsu": 6 * KB}]))
        got = msccs(a)[20]
        assert got["result"] == 2001 and got["granted"] == 4 * KB and got["final"] == 0
        # nothing left: 4012 with FUI TERMINATE. The gateway over-reports by one
        # octet beyond its 6 KB grant; used units are debited all the same.
        a = client.send(client.ccr("gw;rc;2", U, 2, None, [{"rg": 10, "rsu": 0, "used": 6 * KB + 1}]))
        got = msccs(a)[10]
        assert got["result"] == 4012 and got["granted"] is None and got["final"] == 0
        a = client.send(client.ccr("gw;rc;2", T, 3, None, [{"rg": 20, "used": 4 * KB}]))
        assert result(a) == 2001
        # 5002: an update for a session that does not exist
        a = client.send(client.ccr("gw;rc;unknown", U, 1, None, [{"rg": 10, "rsu": 0}]))
        assert result(a) == 5002
    state = show_subscriber(server.data, "8613700000001", RULES)
    # 6 KB + 1 octet used on rg 10 = 7 started KB, 4 KB on rg 20: 11 KB x 0.01 = 0.11 from 0.10
    assert Decimal(state["balance"]) == Decimal("0.10") - 11 * Decimal("0.01")
    assert state["reservations"] == []


def test_bundle_only_plan_stops_at_the_bundle(server):
    with PyDiameterClient(server.port, origin_host="pgw3.test.example") as client:
        a = client.send(client.ccr("gw;bo;1", I, 0, "8613700000002", [{"rg": 1, "rsu": 0}]))
        assert msccs(a)[1]["granted"] == 256 * KB
        a = client.send(client.ccr("gw;bo;1", U, 1, None, [{"rg": 1, "rsu": 1 * MB, "used": 256 * KB}]))
        got = msccs(a)[1]
        assert got["granted"] == 768 * KB and got["final"] == 0   # the rest of the 1 MB bundle, final
        a = client.send(client.ccr("gw;bo;1", U, 2, None, [{"rg": 1, "rsu": 0, "used": 768 * KB}]))
        assert msccs(a)[1]["result"] == 4012
        client.send(client.ccr("gw;bo;1", T, 3, None, [{"rg": 1, "used": 0}]))
    state = show_subscriber(server.data, "8613700000002", RULES)
    assert state["bundle"]["used_octets"] == 1 * MB and state["bundle"]["remaining_octets"] == 0
