"""The OpenAPI 3.1 document of the operator API, generated from its route
table: the schemas of bodies, query parameters and answers come from their
msgspec Structs (`msgspec.json.schema_components`), so the document cannot
drift from what is served. `docs/openapi.json` is this document, kept in
the repository (a test fails when it differs):

    ocs api openapi > docs/openapi.json
"""
from __future__ import annotations

import inspect
import json

import msgspec

from .route import Answer, ErrorBody, Route

REF = "#/components/schemas/{name}"
INFO = {
    "title": "ocs operator API",
    "version": "1",
    "description": "The HTTP JSON API of the ocs online charging system (docs/running.md). Every route but "
                   "/metrics and /v1/openapi.json needs `Authorization: Bearer TOKEN`. Errors are "
                   "`{\"error\": \"...\"}` naming what was wrong. Money is a decimal string in the "
                   "currency's major unit (the `_micro` fields: integer micro-units); volumes are octets.",
}
BAD_REQUEST = Answer("a malformed request: the message names the parameter or field and what was expected",
                     ErrorBody)
UNAUTHORIZED = Answer("no token, or a wrong one", ErrorBody)


def document(routes: list[Route]) -> dict:
    types = {ErrorBody}
    for r in routes:
        types.update(t for t in (r.body,) if t is not None)
        types.update(a.body for a in r.answers.values() if a.body is not None)
    ordered = sorted(types, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(ordered, ref_template=REF)
    components = _clean(dict(sorted(components.items())))
    ref_of = dict(zip(ordered, refs))
    paths: dict[str, dict] = {}
    for r in routes:
        op: dict = {"operationId": r.handler.__name__, "summary": r.summary, "tags": [r.tag]}
        if r.description:
            op["description"] = r.description
        params = [{"name": name, "in": "path", "required": True, "description": p.description,
                   "schema": {"type": "string"}, "example": p.example} for name, p in r.params.items()]
        params += _query_params(r)
        if params:
            op["parameters"] = params
        if r.body is not None:
            media = {"schema": ref_of[r.body]}
            if r.body_example is not None:
                media["example"] = r.body_example
            op["requestBody"] = {"required": True, "content": {"application/json": media}}
        answers = dict(r.answers)
        if r.body is not None or r.query is not None or r.params:
            answers.setdefault(400, BAD_REQUEST)
        if r.token:
            answers.setdefault(401, UNAUTHORIZED)
        else:
            op["security"] = []
        op["responses"] = {str(status): _answer(a, ref_of) for status, a in sorted(answers.items())}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _answer(a: Answer, ref_of: dict) -> dict:
    out: dict = {"description": a.description}
    content = {}
    for media in a.media:
        if media == "application/json":
            content[media] = {"schema": ref_of[a.body] if a.body is not None else {"type": "object"}}
        else:
            content[media] = {"schema": {"type": "string"}}
    if content:
        out["content"] = content
    return out


def _query_params(r: Route) -> list[dict]:
    if r.query is None:
        return []
    (ref,), comps = msgspec.json.schema_components([r.query], ref_template=REF)
    comps = _clean(comps)
    schema = comps[r.query.__name__]
    required = set(schema.get("required", ()))
    example = r.query_example or {}
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        p = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            p["description"] = prop.pop("description")
        p["schema"] = prop
        if name in example:
            p["example"] = example[name]
        out.append(p)
    return out


def _clean(schema):
    """Every description as `inspect.cleandoc` makes it: msgspec takes a
    Struct's docstring as its description, and its releases differ on the
    indentation they keep (0.23 keeps it, 0.18 strips it); the document
    must not depend on which one is installed."""
    if isinstance(schema, dict):
        return {k: inspect.cleandoc(v) if k in ("description", "title") and isinstance(v, str) else _clean(v)
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def render(routes: list[Route]) -> str:
    return json.dumps(document(routes), indent=2, ensure_ascii=False) + "\n"

