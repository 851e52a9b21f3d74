"""A gateway's view of one Gy session, and the operator API, for tests.

`GySession` sends CCR-I/U/T for one subscriber and one or more rating
groups over a `GyConnection` and returns the MSCC values of each answer;
the caller decides what to report, as a gateway reporting usage within its
grants would.
"""
from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request

import trio

from .rawclient import GyConnection, build_ccr, mscc_values

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
TOKEN = "test-token"
_ids = itertools.count(1)


class GySession:
    def __init__(self, conn: GyConnection, msisdn: str, rg: int = 1):
        self.conn = conn
        self.msisdn = msisdn
        self.rg = rg
        self.sid = f"{conn.origin_host};{msisdn};{next(_ids)}"
        self.number = 0
        self.last = None

    async def _send(self, rtype: int, msccs: list[dict], msisdn: str | None = None):
        a = await self.conn.request(build_ccr(self.conn.origin_host, self.sid, rtype, self.number, msisdn, msccs))
        assert a is not None, "no answer"
        self.number += 1
        self.last = a
        return a

    async def start(self, rsu: int = 0, rg: int | None = None) -> dict:
        a = await self._send(1, [{"rg": self.rg if rg is None else rg, "rsu": rsu}], self.msisdn)
        return mscc_values(a).get(self.rg if rg is None else rg, {"result": a.result_code})

    async def update(self, used: int, rsu: int | None = 0, rg: int | None = None) -> dict:
        rg = self.rg if rg is None else rg
        a = await self._send(2, [{"rg": rg, "rsu": rsu, "used": used}])
        return mscc_values(a)[rg]

    async def stop(self, used: int = 0, rg: int | None = None):
        a = await self._send(3, [{"rg": self.rg if rg is None else rg, "used": used}])
        assert a.result_code == 2001, a.result_code
        return a


def api(base: str, method: str, path: str, body: dict | None = None, token: str | None = TOKEN):
    """(status, JSON) of an operator API call."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def api_call(base: str, method: str, path: str, body: dict | None = None, token: str | None = TOKEN):
    return await trio.to_thread.run_sync(api, base, method, path, body, token)
