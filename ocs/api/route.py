"""What a route of the operator API is: its method, path template, handler,
and what the OpenAPI document says of it (summary, parameters, body and
answer Structs, status codes); the request a handler gets and the errors
it raises. Every route is one `Route` in its resource module's ROUTES
(`subscribers.py`, `reports.py`, `rules.py`, `service.py`), joined in
`routes.py`; `http.py` serves a table it is given and `openapi.py`
documents it, so the document describes what is served and nothing else.

A route with `token=True` (all but /metrics and /v1/openapi.json) needs
`Authorization: Bearer TOKEN`. Errors are JSON `{"error": "..."}` naming
what was wrong (`ErrorBody`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, NamedTuple

import msgspec


class ErrorBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every error answer: what was wrong; `errors` lists each problem of a
    refused rules version (file, key path, what was expected)."""
    error: str
    errors: list[str] | msgspec.UnsetType = msgspec.UNSET


class HttpError(Exception):
    def __init__(self, status: int, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


class Text(NamedTuple):
    """A body that is not JSON: the Prometheus text format, a CSV report."""
    media: str
    data: bytes


@dataclass(frozen=True)
class Param:
    """A path parameter: `{name}` in a route's path is one path segment."""
    description: str
    example: str


@dataclass(frozen=True)
class Answer:
    """One documented answer of a route."""
    description: str
    body: type | None = None                   # a msgspec Struct: the JSON body's schema
    media: tuple[str, ...] = ("application/json",)


@dataclass
class Request:
    server: object                             # ocs.net.server.Server
    api: object                                # the OperatorApi serving it (ocs.api.http)
    params: dict[str, str]
    query: object                              # the route's query Struct, or None
    body: object                               # the route's body Struct, or None
    headers: dict[bytes, bytes]


Handler = Callable[[Request], Awaitable[tuple[int, object]]]


@dataclass(frozen=True)
class Route:
    """One operation of the API and its documentation.

    `answers` lists every status the handler answers with; 401 (token
    routes) and 400 (routes with a body, query or path parameters) are added
    to the document when not listed. A handler returns (status, body): a
    Struct, dict or list is sent as JSON, a `Text` as itself."""
    method: str
    path: str
    handler: Handler
    summary: str
    answers: dict[int, Answer]
    tag: str
    description: str = ""
    params: dict[str, Param] = field(default_factory=dict)
    query: type | None = None                  # Struct of the query parameters (unknown ones refused)
    body: type | None = None                   # Struct the JSON body decodes into (unknown fields refused)
    body_example: object = None                # a valid body, shown in the document and sent by its test
    query_example: dict | None = None
    token: bool = True

    @property
    def pattern(self) -> re.Pattern:
        return _compile_path(self.path)


_PATHS: dict[str, re.Pattern] = {}


def _compile_path(template: str) -> re.Pattern:
    found = _PATHS.get(template)
    if found is None:
        parts = re.split(r"\{([a-z_]+)\}", template)
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        found = _PATHS[template] = re.compile(f"^{regex}$")
    return found
