"""freeDiameterd (Debian's freeDiameter 1.2.1), an independent Diameter
implementation, connected to `ocs serve` as a peer: capabilities exchange,
watchdogs both ways, and a clean DPR/DPA at the end.

A watchdog is sent only after Tw without traffic (RFC 3539), so whichever
side has the shorter Tw is the only one that ever sends a DWR: each test
gives one side the shorter timer.
"""
from __future__ import annotations

import pytest
import trio

from tests.interop.freediameter import freediameter_peer, unavailable
from tests.support.server import OcsProcess

SERVER = r"'ocs\.test\.example'"
OUR_DWR = [rf"RCV from {SERVER}: \(no model\)0/280 f:R---", rf"SENT to {SERVER}: 'Device-Watchdog-Answer'"]
THEIR_DWR = [rf"SENT to {SERVER}: 'Device-Watchdog-Request'", rf"RCV from {SERVER}: \(no model\)0/280 f:----"]


@pytest.mark.parametrize("tw, expected", [(2, OUR_DWR), (30, THEIR_DWR)], ids=["server-dwr", "freediameter-dwr"])
async def test_capabilities_exchange_and_watchdog(tmp_path, tw, expected):
    reason = unavailable()
    assert reason is None, f"freeDiameterd is not usable: {reason} (make install provides it)"
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'tw = {tw}\norigin_host = "ocs.test.example"\norigin_realm = "test.example"\n')
    server = OcsProcess(tmp_path / "data", config=cfg)
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with freediameter_peer(server.port, "ocs.test.example", tmp_path) as fd:
                await fd.wait_open(timeout=15)
                for pattern in expected:
                    await fd.wait_for(pattern, timeout=20)
            # leaving the context stops freeDiameterd, which sends a DPR first
            while "peer disconnected (DPR)" not in server.output():
                await trio.sleep(0.1)
        assert "peer fd.test.example (realm test.example) open" in server.output()
    finally:
        code = await trio.to_thread.run_sync(server.stop)
    assert code == 0
