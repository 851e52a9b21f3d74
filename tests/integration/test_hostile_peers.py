"""Peers that try to take the server's memory or its loop (RFC 6733 gives a
server no duty to serve them): one that never reads its answers stops
being read at its budget and is closed after Tw; a connection sending a
big message before its CER is closed at 64 KiB; CCRs of 10,000 MSCCs are
refused (5009) without holding up another peer's requests. Each measured
by what the server says of itself (/metrics) and what reaches the other
peers, never by timing."""
from __future__ import annotations

import re
import urllib.request

import pytest
import trio

from tests.support.rawclient import GyConnection, build_ccr
from tests.support.server import OcsProcess

BUDGET_KB = 512


@pytest.fixture
async def server(tmp_path):
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f"tw = 6.0\npeer_buffer_kb = {BUDGET_KB}\nbatch_peer_kb = 64\nmax_outstanding = 100000\n")
    s = OcsProcess(tmp_path / "data", config=cfg, extra=["--metrics", "127.0.0.1:0"])
    await trio.to_thread.run_sync(s.start)
    yield s
    await trio.to_thread.run_sync(s.stop)


def metric(server, name: str) -> float:
    port = re.search(r"metrics listening on http://127\.0\.0\.1:(\d+)", server.output()).group(1)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


async def served(server, host: str) -> int:
    async with trio.open_nursery() as n:
        conn = GyConnection(host)
        await conn.connect(server.port, n)
        a = await conn.request(build_ccr(host, f"{host};1", 1, 0, "8613900000042", [{"rg": 10, "rsu": 0}]))
        await conn.aclose()
        n.cancel_scope.cancel()
    return a.result_code


async def test_a_peer_that_never_reads_is_bounded_then_closed(server):
    with trio.fail_after(90):
        async with trio.open_nursery() as n:
            conn = GyConnection("pgw.deaf.example")
            await conn.connect(server.port, n)
            conn.hold_answers()                       # reads nothing from now on
            req = build_ccr("pgw.deaf.example", "deaf;1", 1, 0, "8613900000041", [{"rg": 10, "rsu": 0}])
            frame = req.as_bytes()
            sent = 0
            with trio.move_on_after(5):               # until the kernel's buffers and ours are full
                while True:
                    await conn.stream.send_all(frame * 200)
                    sent += 200 * len(frame)
            assert sent >= BUDGET_KB << 10, "it sent more than its budget"
            held = await trio.to_thread.run_sync(metric, server, "ocs_peer_buffer_bytes")
            assert held <= 2 * BUDGET_KB << 10, f"{held:.0f} octets held for one peer"
            assert await trio.to_thread.run_sync(metric, server, "ocs_peers_not_read") == 1
            assert await served(server, "pgw.other.example") == 2001, "others are served meanwhile"
            await trio.sleep(10)                      # past Tw with its answers unread
            assert "not reading its answers" in server.output()
            n.cancel_scope.cancel()


async def test_a_big_message_before_cer_is_cut_off(server):
    with trio.fail_after(30):
        streams = []
        for _ in range(20):
            s = await trio.open_tcp_stream("127.0.0.1", server.port)
            await s.send_all(bytes([1]) + (1 << 20).to_bytes(3, "big") + bytes(16))   # a 1 MiB "message"
            streams.append(s)
        for s in streams:
            with trio.move_on_after(10):
                try:
                    await s.send_all(bytes(128 << 10))
                    assert await s.receive_some(1024) == b""
                except trio.BrokenResourceError:
                    pass
        assert await trio.to_thread.run_sync(metric, server, "ocs_peer_bytes_before_cer") == 0
        assert await served(server, "pgw.after.example") == 2001


async def test_huge_requests_from_one_peer_do_not_hold_another(server):
    """The heavy peer sends 40 CCRs of 10,000 MSCCs (about 17 MB) at once,
    then the light peer one CCR: the light answer arrives before the heavy
    peer's last, since each peer brings at most batch_peer_kb into a batch."""
    heavy_req = build_ccr("pgw.heavy.example", "heavy;1", 2, 1, None, [{"rg": k, "used": 1} for k in range(10_000)])
    order = []
    with trio.fail_after(120):
        async with trio.open_nursery() as n:
            heavy, light = GyConnection("pgw.heavy.example"), GyConnection("pgw.light.example")
            await heavy.connect(server.port, n)
            await light.connect(server.port, n)

            heavy_frame = heavy_req.as_bytes()        # encoded once: python-diameter takes a while

            async def one_heavy(k):
                hbh = 0x70000000 + k
                send, recv = trio.open_memory_channel(1)
                heavy._waiting[hbh] = send
                await heavy._send(heavy_frame[:12] + hbh.to_bytes(4, "big") + heavy_frame[16:])
                a = await recv.receive()
                assert a.result_code == 5009
                order.append(("heavy", k))

            async with trio.open_nursery() as burst:
                for k in range(40):
                    burst.start_soon(one_heavy, k)
                await trio.sleep(0.2)
                a = await light.request(build_ccr("pgw.light.example", "light;1", 1, 0, "8613900000043",
                                                  [{"rg": 10, "rsu": 0}]))
                assert a.result_code == 2001
                order.append(("light", 0))
            n.cancel_scope.cancel()
    assert order[-1][0] == "heavy", order
