"""The OpenAPI document is generated from the route table, kept in
docs/openapi.json, served at /v1/openapi.json, and true: every documented
operation, called over real HTTP against a real server with the document's
own examples, answers with a documented status and a body of the
documented schema; every route but /metrics and the document itself
answers 401 without a token or with a wrong one, and says nothing more.
Bad requests get a 4xx whose message names what is wrong."""
from __future__ import annotations

import inspect
import json
import re
import shutil
import urllib.parse

import msgspec
import pytest
import trio

from ocs.api.openapi import render
from ocs.api.routes import ROUTES
from tests.support.gy import TOKEN
from tests.support.http import acall
from tests.support.server import DEMO_RULES, ROOT, OcsProcess

REGENERATE = ".venv/bin/ocs api openapi > docs/openapi.json"
DOC = ROOT / "docs" / "openapi.json"


def test_committed_document_is_the_generated_one():
    assert DOC.read_text() == render(ROUTES), f"docs/openapi.json is stale; regenerate it: {REGENERATE}"


def test_descriptions_are_the_projects_own_cleaned_text():
    """Struct docstrings reach the document cleaned by the project
    (inspect.cleandoc), not as the installed msgspec happens to keep them:
    a docstring's continuation lines carry no indentation."""
    texts = []

    def walk(node):
        if isinstance(node, dict):
            texts.extend(v for k, v in node.items() if k == "description" and isinstance(v, str))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(json.loads(render(ROUTES)))
    multiline = [t for t in texts if "\n" in t]
    assert multiline, "the API's Structs have multi-line docstrings: the check must see some"
    assert [t for t in texts if t != inspect.cleandoc(t)] == []


def test_every_route_is_documented_once():
    doc = json.loads(render(ROUTES))
    documented = [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops]
    assert sorted(documented) == sorted((r.method, r.path) for r in ROUTES)
    assert len(set(documented)) == len(documented)
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(set(ids)) == len(ids), "two handlers share a name: the operationIds must differ"


def test_running_md_lists_every_route():
    """docs/running.md's API table has a row for every route (its path
    parameters written in capitals: MSISDN, ID, VERSION)."""
    text = (ROOT / "docs" / "running.md").read_text()
    rows = set()
    for method, path in re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`?\s\[]*)", text, re.M):
        rows.add((method, re.sub(r"/[A-Z][A-Z_]*(?=/|$)", "/*", path)))
    routes = {(r.method, re.sub(r"\{[a-z_]+\}", "*", r.path)) for r in ROUTES}
    assert routes - rows == set(), "add these routes to the API table of docs/running.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("contract")
    shutil.copytree(DEMO_RULES, d / "rules")         # activations write into the rules directory
    s = OcsProcess(d / "data", rules=d / "rules", extra=["--api", "127.0.0.1:0"], env={"OCS_API_TOKENS": TOKEN})
    s.start()
    yield s
    s.stop()


def _schemas() -> dict[str, type]:
    """Component name -> the Struct it was generated from."""
    out = {}
    for r in ROUTES:
        for t in [r.body] + [a.body for a in r.answers.values()]:
            if t is not None:
                out[t.__name__] = t
    return out


def _variant_of_demo() -> dict:
    """The demo rules with the 89-yuan plan's overage doubled: a version the
    demo subscribers can move to."""
    files = {p.name: p.read_text() for p in sorted(DEMO_RULES.glob("*.toml"))}
    before = files["plans.toml"]
    files["plans.toml"] = before.replace('price = "0.0003", per = "1 KB", rounding', 'price = "0.0006", per = "1 KB", rounding')
    assert files["plans.toml"] != before
    return files


async def test_every_documented_operation_answers_as_documented(server):
    with trio.fail_after(120):
        r = await acall(server.api, "GET", "/v1/openapi.json", token=None)
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        assert r.body.decode() == DOC.read_text()
        doc = r.json
        # state some examples need: a kept version the demo can move to (and back from)
        kept = await acall(server.api, "POST", "/v1/rules", {"files": _variant_of_demo()})
        assert kept.status == 201, kept
        overrides = {"version": kept.json["version"]}
        schemas = _schemas()
        called = []
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                params = op.get("parameters", [])
                url = path
                for p in params:
                    if p["in"] == "path":
                        url = url.replace("{%s}" % p["name"], overrides.get(p["name"], p["example"]))
                query = {p["name"]: p["example"] for p in params if p["in"] == "query" and "example" in p}
                if query:
                    url += "?" + urllib.parse.urlencode(query)
                body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
                r = await acall(server.api, method.upper(), url, body)
                where = f"{method.upper()} {url}"
                assert 200 <= r.status < 300 and str(r.status) in op["responses"], (where, r)
                content = op["responses"][str(r.status)]["content"]
                media = r.headers["Content-Type"]
                assert media in content or media.split(";")[0] in content, (where, media, list(content))
                schema = content.get(media, content.get(media.split(";")[0]))["schema"]
                if "$ref" in schema:
                    kind = schemas[schema["$ref"].rsplit("/", 1)[1]]
                    msgspec.json.decode(r.body, type=kind)      # raises, naming the field, if it does not fit
                elif media.startswith("application/json"):
                    assert isinstance(r.json, dict)
                if op.get("security") != []:
                    for token in (None, "wrong-" + TOKEN):
                        r = await acall(server.api, method.upper(), url, body, token=token)
                        assert (r.status, r.json) == (401, {"error": "unauthorized"}), (where, token, r)
                        assert r.headers["WWW-Authenticate"].startswith("Bearer")
                called.append((method.upper(), path))
    assert sorted(called) == sorted((r.method, r.path) for r in ROUTES)


async def test_unknown_paths_are_not_revealed_without_a_token(server):
    for path in ("/v1/nothing", "/v1/subscribers/8613800000001", "/v1/rules/versions/zzz"):
        r = await acall(server.api, "GET", path, token=None)
        assert (r.status, r.json) == (401, {"error": "unauthorized"})


BAD = [
    # (method, path, JSON body or raw bytes, status, what the message must name)
    ("POST", "/v1/subscribers/8613800000001/top-up", b'{"amount": ', 400, "not JSON"),
    ("POST", "/v1/subscribers/8613800000001/top-up", {"amount": "1", "currency": "CNY"}, 400, "unknown field `currency`"),
    ("POST", "/v1/subscribers/8613800000001/top-up", {"amount": 5}, 400, "(at amount)"),
    ("POST", "/v1/subscribers/8613800000001/top-up", {"amount": "-5"}, 400, "positive"),
    ("POST", "/v1/subscribers/8613800000001/top-up", {"amount": "five"}, 400, "amount"),
    ("POST", "/v1/subscribers/8613800000001/top-up", None, 400, "body is required"),
    ("POST", "/v1/subscribers/8613800000001/top-up", {"amount": "1e999999"}, 400, "'1e999999' is too large an amount"),
    ("POST", "/v1/subscribers/8613800000001/top-up", {"amount": "1e-999999"}, 400, "more than 6 decimal places"),
    ("POST", "/v1/subscribers/8613800000001/packs", {"pack": "no-such-pack"}, 404, "no pack 'no-such-pack'"),
    ("POST", "/v1/subscribers/8613800000003/reopen", None, 409, "does not allow reopening"),
    ("POST", "/v1/subscribers/8613800000002/reopen", {"now": True}, 400, "takes no request body"),
    ("GET", "/v1/subscribers/8613899999999", None, 404, "no subscriber 8613899999999"),
    ("GET", "/v1/subscribers/12ab", None, 400, "not a subscriber number"),
    ("GET", "/v1/subscribers/8613800000001/usage?from=2026-02-30&to=2026-03-01", None, 400, "from='2026-02-30'"),
    ("GET", "/v1/subscribers/8613800000001/usage?from=2026-03-02&to=2026-03-01", None, 400, "is after to"),
    ("GET", "/v1/subscribers/8613800000001/usage?from=2025-01-01&to=2026-03-01", None, 400, "at most 366"),
    ("GET", "/v1/subscribers/8613800000001/usage?to=2026-03-01", None, 400, "missing query parameter `from`"),
    ("GET", "/v1/subscribers/8613800000001/usage?from=2026-03-01&to=2026-03-01&app=1", None, 400,
     "unknown query parameter `app`"),
    ("GET", "/v1/subscribers/8613899999999/usage?from=2026-03-01&to=2026-03-01", None, 404, "no subscriber"),
    ("GET", "/v1/notifications?after=-1", None, 400, "after"),
    ("GET", "/v1/notifications?limit=5000", None, 400, "limit"),
    ("GET", "/v1/notifications?after=1&after=2", None, 400, "given 2 times"),
    ("GET", "/v1/notifications?after=99999999", None, 409, "beyond the end"),
    ("GET", "/v1/sponsors/no-such-sponsor/report?period=2026-11", None, 404, "no sponsor 'no-such-sponsor'"),
    ("GET", "/v1/sponsors/guangfa-bank/report?period=2026-13", None, 400, "period"),
    ("GET", "/v1/sponsors/guangfa-bank/report?period=2026-11&format=xml", None, 400, "format"),
    ("GET", "/v1/rules?verbose=1", None, 400, "takes no query parameters"),
    ("GET", "/v1/rules/versions/not-a-version", None, 404, "not kept"),
    ("POST", "/v1/rules/versions/0123456789ab/activate", None, 404, "0123456789ab"),
    ("POST", "/v1/rules/validate", {"files": {}}, 400, "files"),
    ("POST", "/v1/rules/validate", {"files": {"../plans.toml": "x"}}, 400, "a key of files"),
    ("POST", "/v1/rules/validate", {"rules": {}}, 400, "unknown field `rules`"),
    ("POST", "/v1/rules", {"files": {"plans.toml": '[[plan]]\nid = "p"\nbundle = "1 MiB"\n'}}, 422,
     "rules refused"),
    ("DELETE", "/v1/rules", None, 405, "use GET, POST"),
    ("GET", "/v1/no-such-thing", None, 404, "no such resource: /v1/no-such-thing"),
    ("POST", "/v1/subscribers", {"msisdn": "8613800000001", "plan": "cn-89-3g"}, 409,
     "already exists: subscriber 8613800000001, declared in subscribers.toml $.subscriber[0]"),
    ("POST", "/v1/subscribers", {"msisdn": "86-1370", "plan": "cn-89-3g"}, 400, "(at msisdn)"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077"}, 400, "missing required field `plan`"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077", "plan": "cn-89-3g", "colour": "red"}, 400,
     "unknown field `colour`"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077", "plan": "nope"}, 422, "no plan 'nope'"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077", "plan": "cn-89-3g", "balance": 5}, 400, "(at balance)"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077", "plan": "cn-89-3g", "balance": "lots"}, 422,
     "balance: 'lots'"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077", "plan": "cn-89-3g", "timezone": "Nowhere"}, 422,
     "timezone"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077", "plan": "cn-89-3g", "balance": "1e999999"}, 422,
     "balance: '1e999999' is too large an amount"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077", "plan": "cn-89-3g", "timezone": "a" * 300}, 422,
     "timezone: 'aaaa"),
    ("POST", "/v1/subscribers", {"msisdn": "8613700000077", "plan": "cn-89-3g", "timezone": "Europe"}, 422,
     "timezone: 'Europe' is not an IANA timezone"),
    ("POST", "/v1/rules/validate", {"files": {"plans.toml": '[[plan]]\nid = "p"\ntimezone = "' + "a" * 300 + '"\n'}},
     422, "rules refused"),
    ("POST", "/v1/rules", {"files": {"plans.toml": '[[plan]]\nid = "p"\noverage = { price = "1e999999" }\n'}},
     422, "rules refused"),
    ("POST", "/v1/rules/validate", {"files": {"plans.toml": '[[plan]]\nid = "p"\nbundle = 99999999999999999999999\n'}},
     422, "rules refused"),
    ("PATCH", "/v1/subscribers/8613800000001", {"plan": "cm-1g-capped"}, 409,
     "is declared in subscribers.toml $.subscriber[0]: change plan there"),
    ("PATCH", "/v1/subscribers/8613800000001", {"plan": None}, 400, "(at plan)"),
    ("PATCH", "/v1/subscribers/12ab", {"active": True}, 400, "not a subscriber number"),
    ("PATCH", "/v1/subscribers/8613899999999", {"active": True}, 404, "no subscriber 8613899999999"),
    ("DELETE", "/v1/subscribers/8613800000001", None, 409, "is declared in subscribers.toml $.subscriber[0]"),
    ("DELETE", "/v1/subscribers/8613900000001", None, 409, "ranges are managed in the rule files"),
    ("DELETE", "/v1/subscribers/8613899999999", None, 404, "no subscriber 8613899999999"),
    ("DELETE", "/v1/subscribers/8613800000001?force=1", None, 400, "unknown query parameter `force`"),
]


@pytest.mark.parametrize("method, path, body, status, what", BAD, ids=[f"{m} {p} {s}" for m, p, _, s, _ in BAD])
async def test_bad_requests_get_a_4xx_naming_what_is_wrong(server, method, path, body, status, what):
    raw = body if isinstance(body, bytes) else None
    r = await acall(server.api, method, path, None if raw is not None else body, raw=raw)
    assert r.status == status, r
    assert r.headers["Content-Type"] == "application/json"
    assert what in r.error, r.error


async def test_invalid_rules_name_the_file_and_key(server):
    bad = {"plans.toml": '[[plan]]\nid = "p"\nbundle = "1 MiB"\n',
           "subs.toml": '[[subscriber]]\nmsisdn = "8613700000001"\nplan = "q"\n'}
    for path in ("/v1/rules/validate", "/v1/rules"):
        r = await acall(server.api, "POST", path, {"files": bad})
        assert r.status == 422, r
        assert r.error == "rules refused: 2 error(s)"
        assert any(re.match(r"plans\.toml: \$\.plan\[0\]\.bundle: '1 MiB' is not a volume", e) for e in r.json["errors"])
        assert any(e.startswith("subs.toml: $.subscriber[0].plan: no plan 'q'") for e in r.json["errors"])


async def test_rules_whose_values_overflow_are_refused_naming_the_key(server):
    """A money amount past any arithmetic and timezones ZoneInfo refuses
    with OSError or ValueError: a 422 naming each file and key, not a 500."""
    bad = {"plans.toml": '[[plan]]\nid = "p"\ntimezone = "' + "a" * 300 + '"\n\n'
                         '[[plan]]\nid = "q"\ntimezone = "Europe"\n',
           "subs.toml": '[[subscriber]]\nmsisdn = "8613700000001"\nplan = "q"\nbalance = "1e999999"\n'}
    for path in ("/v1/rules/validate", "/v1/rules"):
        r = await acall(server.api, "POST", path, {"files": bad})
        assert r.status == 422, r
        errors = r.json["errors"]
        assert any(e.startswith("plans.toml: $.plan[0].timezone: unknown timezone 'aaaa") for e in errors), errors
        assert any(e.startswith("plans.toml: $.plan[1].timezone: unknown timezone 'Europe'") for e in errors), errors
        assert any(e.startswith("subs.toml: $.subscriber[0].balance: '1e999999' is too large an amount")
                   for e in errors), errors


@pytest.mark.parametrize("path", [
    "/v1/subscribers/8613800000001/usage?from=0001-01-01&to=0001-01-01",
    "/v1/subscribers/8613800000001/usage?from=0001-01-01&to=0001-12-31",
    "/v1/subscribers/8613800000001/usage?from=9999-12-31&to=9999-12-31",
    "/v1/subscribers/8613800000001/usage?from=9999-01-01&to=9999-12-31",
    "/v1/sponsors/guangfa-bank/report?period=0001-01",
    "/v1/sponsors/guangfa-bank/report?period=9999-12",
    "/v1/sponsors/guangfa-bank/report?period=9999-12&format=csv",
])
async def test_the_ends_of_the_calendar_are_dates_like_any_other(server, path):
    """A local day reads the UTC days around it; at 0001-01-01 and
    9999-12-31 there is none beyond (an OverflowError, a 500, before)."""
    r = await acall(server.api, "GET", path)
    assert r.status == 200, r
    if "usage" in path:
        assert r.json["days"] == []
    elif "csv" not in path:
        assert (r.json["sponsored_octets"], r.json["sessions"], r.json["reconciled"]) == (0, [], True)


@pytest.mark.parametrize("authorization", [b"", b"Authorization: Bearer wrong\r\n", b"Authorization: Basic eDp5\r\n"])
async def test_a_request_without_a_valid_token_is_refused_before_its_body_is_read(server, authorization):
    """The token is in the headers: a request without a valid one gets its
    401 at once, without the server reading (up to 8 MiB of) its body.
    Here the body never comes: only the answer not waiting for it shows
    that it was not read."""
    host, port = urllib.parse.urlsplit(server.api).netloc.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"POST /v1/rules HTTP/1.1\r\nHost: ocs\r\nContent-Type: application/json\r\n"
                              + authorization + b"Content-Length: 8000000\r\n\r\n{\"files\": ")
        answer = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in answer:
                chunk = await stream.receive_some()
                assert chunk, answer
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 "), answer
