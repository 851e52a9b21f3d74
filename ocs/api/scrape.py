"""The metrics-only HTTP endpoint (`metrics = "HOST:PORT"`): GET /metrics and
nothing else, without a token, for a Prometheus that should not reach the
operator API's address."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST


async def lifespan(receive, send) -> None:
    """The ASGI lifespan protocol: nothing to start or stop."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class MetricsEndpoint:
    def __init__(self, server):
        self.server = server

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            status, kind, body = 200, CONTENT_TYPE_LATEST, self.server.metrics.render(self.server)
        elif scope["path"] == "/metrics":
            status, kind, body = 405, "text/plain; charset=utf-8", b"only GET /metrics here\n"
        else:
            status, kind, body = 404, "text/plain; charset=utf-8", b"only /metrics here\n"
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
