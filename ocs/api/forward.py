"""Operator API requests forwarded to the node of a cluster that holds the
state (docs/cluster.md): a node standing by has only stale copies of the
balances and cannot change them, so every route behind a token is answered
by the holder, as it answers it; the caller need not know which node that
is. A request forwarded once is not forwarded again (503 instead), so two
nodes that disagree for a moment cannot pass it back and forth."""
from __future__ import annotations

from urllib.parse import urlsplit

import trio

from .route import HttpError, Text

FORWARDED = b"x-ocs-forwarded"
_PASSED = (b"authorization", b"content-type", b"accept")


async def forward(base: str, scope, body: bytes, timeout: float = 30.0) -> tuple[int, Text]:
    """(status, body) of the same request made to the API at `base`."""
    headers = {k.lower(): v for k, v in scope["headers"]}
    if FORWARDED in headers:
        raise HttpError(503, "this node does not hold the state asked for, and the request was forwarded to it "
                             "by another node: the cluster is changing hands, try again")
    url = urlsplit(base)
    target = scope["path"] + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
    lines = [f"{scope['method']} {target} HTTP/1.1".encode(), f"Host: {url.netloc}".encode(),
             b"Connection: close", f"Content-Length: {len(body)}".encode(), FORWARDED + b": 1"]
    lines += [k + b": " + headers[k] for k in _PASSED if k in headers]
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(url.hostname, url.port or 80)
            async with stream:
                await stream.send_all(b"\r\n".join(lines) + b"\r\n\r\n" + body)
                raw = bytearray()
                while chunk := await stream.receive_some(1 << 16):
                    raw += chunk
    except (OSError, trio.BrokenResourceError, trio.TooSlowError) as e:
        raise HttpError(503, f"the node holding this state ({base}) cannot be reached ({e or type(e).__name__}): "
                             f"try again") from None
    head, _, data = bytes(raw).partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise HttpError(502, f"the node holding this state ({base}) answered what is not HTTP") from None
    got = dict(line.split(b":", 1) for line in header_lines if b":" in line)
    got = {k.strip().lower(): v.strip() for k, v in got.items()}
    if b"content-length" in got:
        data = data[:int(got[b"content-length"])]
    return status, Text(got.get(b"content-type", b"application/json").decode("latin-1"), data)
