"""The operator HTTP API (JSON): an ASGI app served by hypercorn's trio
worker on the server's own trio loop (`ocs serve --api HOST:PORT`).

It serves the route table it is given: every route is one `Route`
(`ocs/api/route.py`: its method, path template, handler, and what the
OpenAPI document says of it), and the server passes the API's table,
`ocs/api/routes.py`. The document (`ocs/api/openapi.py`) is generated from
the same table, so it describes what is served and nothing else.

A route with `token=True` (all but /metrics and /v1/openapi.json) needs
`Authorization: Bearer TOKEN` with a token from the configuration
(`api_tokens`) or OCS_API_TOKENS; without one the answer is 401 and says
nothing else, not even whether the path exists. Errors are JSON
`{"error": "..."}` naming what was wrong; a bad request is never a 500.
"""
from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import parse_qs

import msgspec

from ..gy.operations import OperationError
from .forward import forward
from .route import ErrorBody, HttpError, Request, Route, Text
from .scrape import lifespan

log = logging.getLogger("ocs.api")
MAX_BODY = 8 << 20          # octets; a complete rules version is far smaller
_json = msgspec.json.Encoder()


class OperatorApi:
    """Serves `routes` (the API's are `ocs.api.routes.ROUTES`) for `server`."""

    def __init__(self, server, tokens: list[str], routes: list[Route]):
        self.server = server
        self.tokens = [t.encode() for t in tokens if t]
        self.routes = routes
        self._openapi: bytes | None = None

    # ------------------------------------------------------------ ASGI
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json")]
        try:
            # who asks, and for what, is known from the headers: a request
            # without a valid token is answered 401 before its body is read
            route, found = self._route(scope)
            body = await _read_body(receive)
            holder = self.server.store.api_target
            if route.token and holder is not None:     # a cluster node standing by: the holder answers
                status, payload = await forward(holder, scope, body)
            else:
                status, payload = await self._dispatch(scope, route, found, body)
        except HttpError as e:
            status, payload = e.status, ErrorBody(error=e.message, errors=msgspec.UNSET if e.errors is None else e.errors)
            if status == 401:
                headers.append((b"www-authenticate", b'Bearer realm="ocs"'))
        except OperationError as e:
            status, payload = e.status, ErrorBody(error=e.message)
        except Exception:           # a bug: logged here, nothing of it leaks to the client
            log.exception("%s %s failed", scope["method"], scope["path"])
            status, payload = 500, ErrorBody(error="internal error (logged by the server)")
        if isinstance(payload, Text):
            headers[0] = (b"content-type", payload.media.encode())
            data = payload.data
        else:
            data = _json.encode(payload)
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    def _route(self, scope) -> tuple[Route, re.Match]:
        """The route a request is for, once its token is checked (HttpError
        401, 404 or 405 otherwise)."""
        path, method = scope["path"], scope["method"]
        matches = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        chosen = next(((r, m) for r, m in matches if r.method == method), None)
        # a public route answers anyone; everything else, even "no such
        # path", is only for a token holder
        if chosen is None or chosen[0].token:
            self._authorize(scope)
        if chosen is None:
            if matches:
                allowed = ", ".join(sorted({r.method for r, _ in matches}))
                raise HttpError(405, f"{method} is not allowed on {path}; use {allowed}")
            raise HttpError(404, f"no such resource: {path}")
        return chosen

    async def _dispatch(self, scope, route: Route, found: re.Match, body: bytes) -> tuple[int, object]:
        headers = {k.lower(): v for k, v in scope["headers"]}
        request = Request(self.server, self, found.groupdict(), _query(route, scope.get("query_string", b"")),
                          _body(route, body), headers)
        return await route.handler(request)

    def _authorize(self, scope) -> None:
        header = next((v for k, v in scope["headers"] if k.lower() == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        # compare with every token, so the time taken says nothing of which matched
        ok = [hmac.compare_digest(token.strip(), t) for t in self.tokens]
        if scheme.lower() != b"bearer" or not any(ok):
            raise HttpError(401, "unauthorized")

    def openapi(self) -> bytes:
        if self._openapi is None:
            from .openapi import render
            self._openapi = render(self.routes).encode()
        return self._openapi


async def _read_body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HttpError(413, f"request body larger than {MAX_BODY >> 20} MiB")
        chunks.append(chunk)
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


def _where(e: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's 'Expected ... - at `$.x`' as ('x', 'Expected ...')."""
    text = str(e).replace("Invalid RFC3339 encoded date", "expected a date YYYY-MM-DD")
    msg, sep, at = text.rpartition(" - at `")
    if not sep:
        return "", text
    at = at.rstrip("`")
    if at.startswith("key` in `"):       # a dict's key: "key` in `$.files"
        return "a key of " + at.removeprefix("key` in `$").lstrip("."), msg
    return at.removeprefix("$").lstrip("."), msg


def _query(route: Route, raw: bytes):
    try:
        pairs = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise HttpError(400, "the query string is not UTF-8") from None
    for name, values in pairs.items():
        if len(values) > 1:
            raise HttpError(400, f"query parameter {name!r} is given {len(values)} times")
    if route.query is None:
        if pairs:
            raise HttpError(400, f"{route.method} {route.path} takes no query parameters (got {', '.join(pairs)})")
        return None
    given = {k: v[0] for k, v in pairs.items()}
    try:
        return msgspec.convert(given, route.query, strict=False)
    except msgspec.ValidationError as e:
        name, msg = _where(e)
        if not name:        # a missing or unknown parameter: msgspec names it in the message
            msg = msg.replace("Object missing required field", "missing query parameter") \
                     .replace("Object contains unknown field", "unknown query parameter")
            raise HttpError(400, msg) from None
        raise HttpError(400, f"query parameter {name}={given.get(name, '')!r}: {msg}") from None


def _body(route: Route, body: bytes):
    if route.body is None:
        if body.strip() not in (b"", b"{}"):
            raise HttpError(400, f"{route.method} {route.path} takes no request body")
        return None
    if not body.strip():
        raise HttpError(400, "a JSON request body is required")
    try:
        return msgspec.json.decode(body, type=route.body)
    except msgspec.ValidationError as e:
        name, msg = _where(e)
        raise HttpError(400, f"invalid request body: {msg}" + (f" (at {name})" if name else "")) from None
    except msgspec.DecodeError as e:
        raise HttpError(400, f"request body is not JSON: {e}") from None
