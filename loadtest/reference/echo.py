"""Echo server: the I/O ceiling of a trio Diameter peer in Python.

After a real CER/CEA exchange (RFC 6733 section 5.3) it sends every message
back as received, with only the R-bit of the header flipped so a request
returns as an "answer" with the same hop-by-hop id. It reads nothing beyond
the 24-bit message length. Reads and writes are batched like the OCS's peer
task: everything the socket has, one send_all per read.

    python -m loadtest.reference.echo --listen 127.0.0.1:3868
"""
from __future__ import annotations

import argparse
import functools
import sys

import trio

from .. import codec

ORIGIN_HOST = "echo.loadtest.example"
ORIGIN_REALM = "loadtest.example"


def flip_requests(buf: bytearray) -> int:
    """Flip the R-bit of every complete message in buf; return the bytes they span."""
    pos, size = 0, len(buf)
    while pos + 4 <= size:
        length = int.from_bytes(buf[pos + 1:pos + 4], "big")
        if length < codec.HEADER_LEN:
            raise ValueError("bad Diameter length")
        if pos + length > size:
            break
        buf[pos + 4] ^= codec.FLAG_REQUEST
        pos += length
    return pos


async def _capabilities_exchange(stream: trio.SocketStream) -> bytearray | None:
    buf = bytearray()
    while True:
        data = await stream.receive_some(1 << 16)
        if not data:
            return None
        buf += data
        frames, _ = codec.split_frames(buf)
        if frames:
            break
    start, end = frames[0]
    cer = codec.parse_answer(bytes(buf[start:end]))
    if cer.command != codec.CMD_CAPABILITIES_EXCHANGE or not cer.is_request:
        return None  # RFC 6733 5.6: nothing before CER; just drop the connection
    await stream.send_all(codec.encode_cea(ORIGIN_HOST, ORIGIN_REALM,
                                           cer.hop_by_hop, cer.end_to_end))
    del buf[:end]
    return buf


async def handle_peer(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            buf = await _capabilities_exchange(stream)
            if buf is None:
                return
            while True:
                if buf:
                    used = flip_requests(buf)
                    if used:
                        out = bytes(buf[:used])
                        del buf[:used]
                        await stream.send_all(out)
                data = await stream.receive_some(1 << 20)
                if not data:
                    return
                buf += data
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            return


async def serve(host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; task_status.started() gets the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(trio.serve_listeners, handle_peer, listeners))
        task_status.started(bound)


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.reference.echo")
    p.add_argument("--listen", default="127.0.0.1:3868", help="HOST:PORT")
    host, port = parse_listen(p.parse_args(argv).listen)

    async def run():
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve, host, port)
            print(f"echo listening on {host}:{bound}", flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
