"""Plain HTTP calls to the operator API, for tests: any method, body
(JSON or raw bytes), headers and token; the answer's status, headers and
body as they came."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import trio

from .gy import TOKEN


class Reply:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json["error"]

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


def call(base: str, method: str, path: str, body=None, token: str | None = TOKEN, headers: dict | None = None,
         raw: bytes | None = None) -> Reply:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Reply(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers, e.read())


async def acall(base: str, method: str, path: str, body=None, token: str | None = TOKEN,
                headers: dict | None = None, raw: bytes | None = None) -> Reply:
    return await trio.to_thread.run_sync(lambda: call(base, method, path, body, token, headers, raw))
