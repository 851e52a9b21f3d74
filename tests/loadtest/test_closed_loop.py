"""The closed loop end to end over TCP against both reference servers."""
import subprocess
import sys

import pytest
import trio

from loadtest import codec
from loadtest.bench import REPO, free_port, wait_listening
from loadtest.closed_loop import LoadConfig, main, run_closed_loop
from loadtest.reference import echo
from loadtest.sessions import Generator


@pytest.fixture(scope="module", autouse=True)
def compiled():
    """Compile the kernels outside the fail_after (seconds when numba's cache is cold)."""
    templates = codec.CcrTemplates("h", "r", "d", 13, 10, 0)
    Generator(1, templates, 8613900000000, 1, 1, 100, 10, False).compile()


def _assert_clean(result, window):
    assert result.answered > 0
    assert result.errors == 0, result.summary()
    assert result.stats["check_failed"] == 0 and result.stats["timeouts"] == 0
    assert result.stats["sent"] >= result.answered
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
    assert result.window == window


async def test_against_the_echo_server():
    async with trio.open_nursery() as nursery:
        port = await nursery.start(echo.serve, "127.0.0.1", 0)
        with trio.fail_after(30):
            result = await run_closed_loop(LoadConfig(port=port, window=32, duration=1.0,
                                                      warmup=0.2, relaxed=True))
        nursery.cancel_scope.cancel()
    _assert_clean(result, 32)
    assert result.result_codes == {0: result.answered}  # echoes carry no Result-Code


@pytest.fixture
def responder():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loadtest.reference.pydiameter_responder",
                             "--listen", f"127.0.0.1:{port}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_listening(port, proc), "responder did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_against_the_python_diameter_responder(responder):
    with trio.fail_after(30):
        result = await run_closed_loop(LoadConfig(port=responder, window=8, duration=1.0,
                                                  warmup=0.2))
    _assert_clean(result, 8)
    assert set(result.result_codes) == {2001}
    assert result.stats["octets_reported"] <= result.stats["octets_granted"] + 8 * 10 * 2**20
    assert result.stats["zero_grants"] == 0 and result.stats["refused"] == 0


def test_cli_reports_connection_failure(capsys):
    assert main(["--target", f"127.0.0.1:{free_port()}", "--duration", "0.1"]) == 2
    assert "load test failed" in capsys.readouterr().err
