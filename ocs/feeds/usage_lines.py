"""The JSON lines of usage records (docs/usage.md), formatted by a compiled
kernel: at full load every reported MSCC becomes a line, and formatting
them in Python cost ~2 us a line on the charging core, a sixth of what
answering the request itself costs. `tests/naive_usage.py` holds the
straightforward Python version the kernel is checked against.

Python does what needs objects once per batch (the Session-Ids joined,
subscribers' labels from a cache, the rules' currencies and sponsors); the
kernel writes every line into one preallocated buffer.
"""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import Callable

import msgspec
import numpy as np
from numba import njit

from ..rules.compile import RuleSet
from ..rules.units import MICRO, MINOR_DIGITS
from ..store.records import Answers, JournalRecord

_CACHE = os.environ.get("OCS_NUMBA_NOCACHE") is None
_enc = msgspec.json.Encoder()
# bytes a Session-Id may not hold to be its own JSON string: controls, quote,
# backslash, DEL and everything outside ASCII (those are encoded by msgspec)
_UNPLAIN = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')
# the longest text a line has besides its variable strings: the field names
# (~330 octets) and at most 10 integers of 20 digits and 2 amounts of 28
_FIXED = 640



def _lit(text: bytes) -> np.ndarray:
    return np.frombuffer(text, np.uint8).copy()


# the field names, as arrays: numba copies an array constant ten times
# quicker than a bytes literal
_NULL = _lit(b"null")
_SUBSCRIBER = _lit(b',"subscriber":')
_RATING_GROUP = _lit(b',"rating_group":')
_SERVICE_ID = _lit(b',"service_id":')
_OCTETS = _lit(b',"octets":')
_SECONDS = _lit(b',"seconds":')
_FROM_BUCKETS = _lit(b',"from_buckets":')
_CHARGED = _lit(b',"charged":"')
_CHARGED_MICRO = _lit(b'","charged_micro":')
_CURRENCY = _lit(b',"currency":"')
_SPONSOR = _lit(b'","sponsor":"')
_SPONSORED_OCTETS = _lit(b'","sponsored_octets":')
_SPONSOR_CHARGED = _lit(b',"sponsor_charged":"')
_SPONSOR_CHARGED_MICRO = _lit(b'","sponsor_charged_micro":')
_END = _lit(b'}\n')
_NO_SPONSOR = _lit(b'","sponsor":null,"sponsored_octets":0,"sponsor_charged":null,'
                                  b'"sponsor_charged_micro":0}\n')


class Subscribers:
    """Per subscriber row, its label as a JSON string and the index of its
    currency, kept across batches (a row keeps its identity; a new rules
    version may move rows between plans, so it starts over)."""

    def __init__(self, label: Callable[[int], str], plan_of: Callable[[int], int]):
        self.label, self.plan_of = label, plan_of
        self.version = ""
        self.rows: dict[int, bytes] = {}     # row -> currency index (one octet) + JSON label
        self.currencies: list[str] = []

    def reset(self, version: str) -> None:
        if version != self.version or len(self.rows) > 200_000:
            self.rows.clear()
            self.version = version

    def of(self, row: int, rules: RuleSet) -> bytes:
        p = self.plan_of(row)
        currency = rules.plans[p].currency if 0 <= p < len(rules.plans) else "CNY"
        if currency not in self.currencies:
            self.currencies.append(currency)
        entry = self.rows[row] = bytes([self.currencies.index(currency)]) + _enc.encode(self.label(row))
        return entry


def usage_lines(rec: JournalRecord, rules: RuleSet, subscribers: Subscribers) -> bytes:
    """The usage records of one journal record (its `usage` rows and their
    `usage_sessions`), as JSON lines each ending in a newline."""
    from ..engine.tables import USAGE
    rows = np.frombuffer(rec.usage, USAGE)
    n = len(rows)
    if n == 0:
        return b""
    subscribers.reset(rec.rules)
    when = datetime.fromtimestamp(rec.time, timezone.utc).isoformat(timespec="milliseconds").encode()
    head = b'{"seq":%d,"time":"%s","rules":"%s","session":' % (rec.seq, when, rec.rules.encode())

    sids = rec.usage_sessions or [b""] * n
    sid_buf = b"".join(sids)
    quoted = np.zeros(n, np.bool_)
    if _UNPLAIN.search(sid_buf) is not None:       # rare: JSON-encode those that need it
        sids = list(sids)
        for i, sid in enumerate(sids):
            if _UNPLAIN.search(sid) is not None:
                sids[i] = _enc.encode(sid.decode("utf-8", "replace"))
                quoted[i] = True
        sid_buf = b"".join(sids)
    get = subscribers.rows.get
    who = [get(s) or subscribers.of(s, rules) for s in rows["sub"].tolist()]
    who_buf = b"".join(who)

    cur_codes = b"".join(c.encode() for c in subscribers.currencies)
    cur_ends = np.cumsum([len(c) for c in subscribers.currencies], dtype=np.int64)
    cur_minor = np.array([MINOR_DIGITS.get(c, 2) for c in subscribers.currencies], np.int64)
    sp_ids = b"".join(sp.id.encode() for sp in rules.sponsors)
    sp_ends = np.cumsum([len(sp.id) for sp in rules.sponsors], dtype=np.int64)
    sp_minor = np.array([MINOR_DIGITS.get(sp.currency, 2) for sp in rules.sponsors], np.int64)

    size = n * (len(head) + _FIXED + 8 + max(cur_minor.max(initial=0), sp_minor.max(initial=0), 6)
                + int(cur_ends[-1])) + len(sid_buf) + len(who_buf) + n * int(sp_ends[-1] if len(sp_ends) else 0)
    out = np.empty(size, np.uint8)
    end = _write_lines(out, np.frombuffer(head, np.uint8), rows,
                       np.frombuffer(sid_buf, np.uint8), _ends(sids), quoted,
                       np.frombuffer(who_buf, np.uint8), _ends(who),
                       np.frombuffer(cur_codes, np.uint8), cur_ends, cur_minor,
                       np.frombuffer(sp_ids, np.uint8), sp_ends, sp_minor)
    return out[:end].tobytes()


def warm_up(rules: RuleSet) -> None:
    """Compile the kernel (or load it from numba's cache) before serving, by
    the path the usage writer takes (numba compiles read-only and writable
    arrays apart): a first compile in the writer's thread would stall the loop."""
    from ..engine.tables import USAGE
    rows = np.zeros(1, USAGE)
    usage_lines(usage_record(1, 0.0, "", rows.tobytes(), [b"s"]), rules, Subscribers(str, lambda row: -1))


def usage_record(seq: int, t: float, rules: str, usage: bytes, sessions: list[bytes]) -> JournalRecord:
    """A journal record holding only usage rows (warm-up, tests)."""
    return JournalRecord(seq=seq, format="", rules=rules, time=t, subscriber_rows=b"", subscribers=b"",
                         session_rows=b"", sessions=b"", new_sessions=[], answers=Answers(), usage=usage,
                         usage_sessions=sessions)


def _ends(parts: list[bytes]) -> np.ndarray:
    return np.cumsum(np.fromiter(map(len, parts), np.int64, len(parts)))


@njit(cache=_CACHE, _nrt=False)
def _text(out, pos, s):
    for k in range(len(s)):
        out[pos + k] = s[k]
    return pos + len(s)


@njit(cache=_CACHE, _nrt=False)
def _part(out, pos, buf, ends, i):
    start = ends[i - 1] if i > 0 else 0
    for k in range(start, ends[i]):
        out[pos] = buf[k]
        pos += 1
    return pos


@njit(cache=_CACHE, _nrt=False)
def _int(out, pos, v):
    """`%d` of an int64."""
    if v < 0:
        out[pos] = 45        # '-'
        pos += 1
        m = np.uint64(-(v + 1)) + np.uint64(1)
    else:
        m = np.uint64(v)
    digits = 1
    t = m
    while t >= 10:
        t //= np.uint64(10)
        digits += 1
    for k in range(digits - 1, -1, -1):
        out[pos + k] = 48 + np.uint8(m % np.uint64(10))
        m //= np.uint64(10)
    return pos + digits


@njit(cache=_CACHE, _nrt=False)
def _int_or_null(out, pos, v):
    if v >= 0:
        return _int(out, pos, v)
    return _text(out, pos, _NULL)


@njit(cache=_CACHE, _nrt=False)
def _money(out, pos, micro, minor):
    """`format_money`: micro-units as a decimal in the major unit, the
    fraction without trailing zeros but at least `minor` digits."""
    if micro < 0:
        out[pos] = 45
        pos += 1
        m = np.uint64(-(micro + 1)) + np.uint64(1)
    else:
        m = np.uint64(micro)
    pos = _int(out, pos, np.int64(m // np.uint64(MICRO)))
    frac = np.int64(m % np.uint64(MICRO))
    digits = 6
    f = frac
    while digits > 0 and f % 10 == 0:
        f //= 10
        digits -= 1
    shown = max(digits, minor)
    if shown > 0:
        out[pos] = 46        # '.'
        pos += 1
        scale = MICRO // 10
        for _ in range(shown):
            out[pos] = 48 + (frac // scale) % 10 if scale > 0 else 48     # zeros past the sixth digit
            pos += 1
            scale //= 10
    return pos


@njit(cache=_CACHE, _nrt=False)
def _write_lines(out, head, rows, sid_buf, sid_ends, quoted, who_buf, who_ends,
                 cur_codes, cur_ends, cur_minor, sp_ids, sp_ends, sp_minor):
    """Every row's line into `out` (sized by the caller); the octets written."""
    pos = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        pos = _text(out, pos, head)
        if not quoted[i]:
            out[pos] = 34
            pos += 1
        pos = _part(out, pos, sid_buf, sid_ends, i)
        if not quoted[i]:
            out[pos] = 34
            pos += 1
        # the subscriber's entry: its currency's index, then its JSON label
        w0 = who_ends[i - 1] if i > 0 else 0
        cur = np.int64(who_buf[w0])
        pos = _text(out, pos, _SUBSCRIBER)
        for k in range(w0 + 1, who_ends[i]):
            out[pos] = who_buf[k]
            pos += 1
        pos = _text(out, pos, _RATING_GROUP)
        pos = _int_or_null(out, pos, r["rg"])
        pos = _text(out, pos, _SERVICE_ID)
        pos = _int_or_null(out, pos, r["service_id"])
        pos = _text(out, pos, _OCTETS)
        pos = _int(out, pos, r["used"] if r["used"] > 0 else 0)
        pos = _text(out, pos, _SECONDS)
        pos = _int(out, pos, r["used_time"])
        pos = _text(out, pos, _FROM_BUCKETS)
        pos = _int(out, pos, r["from_bundle"])
        pos = _text(out, pos, _CHARGED)
        pos = _money(out, pos, r["charged"], cur_minor[cur])
        pos = _text(out, pos, _CHARGED_MICRO)
        pos = _int(out, pos, r["charged"])
        pos = _text(out, pos, _CURRENCY)
        pos = _part(out, pos, cur_codes, cur_ends, cur)
        sp = np.int64(r["sponsor"])
        if 0 <= sp < sp_ends.shape[0]:
            pos = _text(out, pos, _SPONSOR)
            pos = _part(out, pos, sp_ids, sp_ends, sp)
            pos = _text(out, pos, _SPONSORED_OCTETS)
            pos = _int(out, pos, r["sponsored"])
            pos = _text(out, pos, _SPONSOR_CHARGED)
            pos = _money(out, pos, r["sponsor_charged"], sp_minor[sp])
            pos = _text(out, pos, _SPONSOR_CHARGED_MICRO)
            pos = _int(out, pos, r["sponsor_charged"])
            pos = _text(out, pos, _END)
        else:
            pos = _text(out, pos, _NO_SPONSOR)
    return pos


KERNELS = (_write_lines,)       # what warm_up compiles (ocs/kernels.py)
