"""The operator HTTP API (JSON), an ASGI app served by hypercorn's trio worker
on the server's own trio loop (`ocs serve --api HOST:PORT`).

Every request needs `Authorization: Bearer TOKEN` with a token from the
configuration (`api_tokens`) or the OCS_API_TOKENS environment variable
(comma-separated); without one the answer is 401 and says nothing else.
Changes to accounts run on the charging loop between batches and answer
once journaled. Errors are JSON `{"error": "..."}` naming what was wrong.
"""
from __future__ import annotations

import hmac
import re
import time
from typing import Awaitable, Callable

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST

from ..gy import operations as ops
from ..rules.compile import E164, subscriber_key
from ..store.views import subscriber_view

_json = msgspec.json.Encoder()


class PackOrder(msgspec.Struct, forbid_unknown_fields=True):
    pack: str
    gift: bool = False


class TopUp(msgspec.Struct, forbid_unknown_fields=True):
    amount: str


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


Route = tuple[str, re.Pattern, Callable[..., Awaitable[tuple[int, object]]]]


class OperatorApi:
    def __init__(self, server, tokens: list[str]):
        self.server = server
        self.tokens = [t.encode() for t in tokens if t]
        self.routes: list[Route] = [
            ("GET", re.compile(r"^/v1/subscribers/(?P<id>[0-9]{1,15})$"), self.get_subscriber),
            ("POST", re.compile(r"^/v1/subscribers/(?P<id>[0-9]{1,15})/packs$"), self.post_pack),
            ("POST", re.compile(r"^/v1/subscribers/(?P<id>[0-9]{1,15})/reopen$"), self.post_reopen),
            ("POST", re.compile(r"^/v1/subscribers/(?P<id>[0-9]{1,15})/top-up$"), self.post_top_up),
            ("GET", re.compile(r"^/v1/rules$"), self.get_rules),
        ]

    # ------------------------------------------------------------ ASGI
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["path"] == "/metrics" and scope["method"] == "GET":
            # Prometheus scrapes without a token, as it expects (docs/running.md)
            data = self.server.metrics.render(self.server)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        try:
            status, payload = await self._dispatch(scope, body)
        except HttpError as e:
            status, payload = e.status, {"error": e.message}
        except ops.OperationError as e:
            status, payload = e.status, {"error": e.message}
        data = _json.encode(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def _dispatch(self, scope, body: bytes):
        self._authorize(scope)
        path, method = scope["path"], scope["method"]
        allowed = []
        for m, pattern, handler in self.routes:
            found = pattern.match(path)
            if found:
                if m == method:
                    return await handler(body=body, **found.groupdict())
                allowed.append(m)
        if allowed:
            raise HttpError(405, f"{method} is not allowed on {path}; use {', '.join(allowed)}")
        raise HttpError(404, f"no such resource: {path}")

    def _authorize(self, scope) -> None:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not any(hmac.compare_digest(token.strip(), t) for t in self.tokens):
            raise HttpError(401, "unauthorized")

    # ------------------------------------------------------------ helpers
    def _row(self, ident: str) -> int:
        row = self.server.store.lookup(subscriber_key(E164, ident))
        if row < 0:
            raise HttpError(404, f"no subscriber {ident}")
        return row

    @staticmethod
    def _decode(body: bytes, kind):
        try:
            return msgspec.json.decode(body or b"{}", type=kind)
        except msgspec.ValidationError as e:
            raise HttpError(400, f"invalid request body: {e}") from None
        except msgspec.DecodeError as e:
            raise HttpError(400, f"request body is not JSON: {e}") from None

    # ------------------------------------------------------------ resources
    async def get_subscriber(self, id: str, body: bytes):
        row = self._row(id)
        return 200, subscriber_view(self.server.store, self.server.app.rules, row, time.time())

    async def post_pack(self, id: str, body: bytes):
        order = self._decode(body, PackOrder)
        row = self._row(id)
        result = await self.server.submit(lambda store, rules, now: ops.buy_pack(store, rules, row, order.pack, now,
                                                                                  order.gift))
        return 201, result

    async def post_reopen(self, id: str, body: bytes):
        row = self._row(id)
        return 200, await self.server.submit(lambda store, rules, now: ops.reopen(store, rules, row, now))

    async def post_top_up(self, id: str, body: bytes):
        order = self._decode(body, TopUp)
        row = self._row(id)
        return 200, await self.server.submit(lambda store, rules, now: ops.top_up(store, rules, row, order.amount, now))

    async def get_rules(self, body: bytes):
        return 200, {"version": self.server.app.rules.version, "directory": self.server.cfg.rules}
