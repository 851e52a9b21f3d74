"""The harness against two real Gy servers, each its own process on port 0:
ours (`ocs serve`, demo rules) and the benchmark's python-diameter Node."""
import subprocess
import sys

import pytest
import trio

from loadtest.bench import REPO, free_port, wait_listening
from loadtest.run import run
from tests.support.server import OcsProcess

from .conftest import quick


@pytest.fixture(scope="module")
def ocs(tmp_path_factory):
    with OcsProcess(tmp_path_factory.mktemp("ocs") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def responder():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loadtest.reference.pydiameter_responder",
                             "--listen", f"127.0.0.1:{port}", "--peers", "4"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_listening(port, proc), "responder did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def load(name, port, **overrides):
    with trio.fail_after(30):
        return await run(quick(name, port, **overrides))


def assert_clean(r):
    assert r.passed, r.summary()
    assert r.counts["answered"] > 0 and r.counts["check_failed"] == 0
    assert r.counts["timeouts"] == 0 and r.counts["unmatched"] == 0
    assert 0 < r.counts["octets_reported"] <= r.counts["octets_granted"]


async def test_ocs_steady_mixed_sessions(ocs):
    r = await load("steady", ocs.port, gateways__count=3, load__rate=1500, load__duration=1.5)
    assert_clean(r)
    assert set(r.result_codes) == {"2001"}
    assert r.counts["sessions_completed"] > 0 and r.counts["sent_update"] > 0
    assert r.scenario["subscribers"]["plan_octets"] == "103.2 GB"  # judged against the plan


async def test_ocs_closed_loop(ocs):
    r = await load("closed", ocs.port, load__window=32, subscribers__first="8613900050000")
    assert_clean(r)
    assert r.answered_per_s > 200


STORMS = dict(gateways__count=4, load__duration=2.0, reconnect__every=0.5,
              reconnect__at=0.3, reconnect__delay=0.1)


# Found by this harness: ocs serve used to exit when a gateway left under load
# (BrokenResourceError or BusyResourceError out of ocs/net/server.py).
@pytest.mark.parametrize("graceful", [True, False], ids=["dpr", "reset"])
async def test_ocs_survives_reconnect_storms(tmp_path, graceful):
    with OcsProcess(tmp_path / "data") as server:
        r = await load("reconnect-storm", server.port, load__rate=1500,
                       reconnect__graceful=graceful, **STORMS)
        assert server.proc.poll() is None, "ocs serve exited"
    assert_clean(r)
    assert r.connections["drops"] >= 4 and r.connections["connects"] >= 8


async def test_python_diameter_responder_open_and_closed(responder):
    r = await load("steady", responder, gateways__count=2, load__rate=300, load__sessions=16)
    assert_clean(r)
    assert set(r.result_codes) == {"2001"}
    r = await load("closed", responder, load__window=8)
    assert_clean(r)


async def test_python_diameter_responder_through_graceful_reconnect_storms(responder):
    r = await load("reconnect-storm", responder, load__rate=300, load__sessions=16,
                   reconnect__graceful=True, **STORMS)
    assert_clean(r)
    assert r.connections["drops"] >= 4 and r.connections["connects"] >= 8
