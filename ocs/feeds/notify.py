"""Threshold notifications: JSON lines in a file, and a pluggable sink.

The engine marks each threshold (80% of a bundle, a cap reached, throttled
...) once per period in the subscriber's row, in the batch that crosses it;
the events are announced here after that batch is durable. A sink is any
callable `sink(events: list[dict])` named in the configuration as
"package.module:callable" (for example a function that posts to an SMS
gateway); it runs on the server's loop, so it must hand slow work off.
A crash after the journal write and before the announcement loses those
events (at most once); the thresholds are not announced twice.
"""
from __future__ import annotations

import importlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from datetime import date, timedelta

from ..engine.tables import T_BUCKET, T_CAP, T_CEILING, T_CREDIT, T_DAILY, T_SPENT, T_THROTTLED
from ..rules.compile import RuleSet
from ..rules.units import format_money

log = logging.getLogger("ocs.notify")
KINDS = {T_BUCKET: "bucket", T_SPENT: "spent", T_CAP: "cap", T_THROTTLED: "throttled",
         T_CEILING: "ceiling", T_CREDIT: "credit-exhausted", T_DAILY: "daily-summary"}


def load_sink(spec: str) -> Callable[[list[dict]], None]:
    """'package.module:callable' -> the callable; a clear error otherwise."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"notification_sink {spec!r}: expected 'package.module:callable'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"notification_sink {spec!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"notification_sink {spec!r} is not callable")
    return fn


def describe(events: np.ndarray, rules: RuleSet, label: Callable[[int], str], now: float) -> list[dict]:
    out = []
    when = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")
    for ev in events:
        plan = rules.plans[int(ev["plan"])]
        th = plan.threshold[int(ev["threshold"])]
        kind = KINDS[rules.threshold_kind(int(ev["plan"]), int(ev["threshold"]))]
        item = {"time": when, "subscriber": label(int(ev["sub"])), "plan": plan.id, "threshold": th.name,
                "kind": kind, "rules": rules.version}
        value = int(ev["value"])
        if kind in ("spent", "cap", "credit-exhausted"):
            item["money"] = format_money(value, plan.currency)
        else:
            item["octets"] = value
        if kind == "bucket":
            item["bucket"], item["percent"] = th.bucket, th.percent
        if kind == "daily-summary":
            item["day"] = (date(1970, 1, 1) + timedelta(days=int(ev["day"]))).isoformat()
            item["money"] = format_money(int(ev["money"]), plan.currency)
        out.append(item)
    return out


class Notifier:
    def __init__(self, path: str | Path, sink: Callable[[list[dict]], None] | None = None):
        self.path = Path(path)
        self.sink = sink
        self.sent = 0
        self._line_open: bool | None = None     # the file ends inside a line (None: not looked yet)

    def emit(self, items: list[dict]) -> None:
        if not items:
            return
        text = "".join(json.dumps(i, separators=(",", ":")) + "\n" for i in items)
        if self._line_open is None:
            self._line_open = _ends_inside_a_line(self.path)
        if self._line_open:
            # a crash cut the last line short: end it, so the announcements
            # go on lines of their own (the feed skips the cut one)
            text = "\n" + text
        self._line_open = None                  # a write that fails half-way may cut a line again
        with self.path.open("a") as f:
            f.write(text)
        self._line_open = False
        self.sent += len(items)
        if self.sink is not None:
            try:
                self.sink(items)
            except Exception:       # a broken sink must not stop charging
                log.exception("notification sink failed on %d events", len(items))


def _ends_inside_a_line(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            if f.seek(0, 2) == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


class FeedError(ValueError):
    pass


_DAMAGED: set[tuple[str, int]] = set()      # damaged lines logged already: (file, offset)
_START = b'{"time":'                        # how every announcement begins (json.dumps of `describe`'s dict)


def read_feed(path: str | Path, after: int, limit: int, subscriber: str | None = None,
              scan: int = 4 << 20, decode: Callable[[bytes], object] | None = None) -> tuple[list, int]:
    """Announcements after byte offset `after` of the notifications file:
    (up to `limit` JSON lines, or what `decode` makes of each, the offset to
    read from next). The file only grows, so an offset is a stable cursor. A
    poll reads at most `scan` octets, so a filter that matches little
    answers promptly with a cursor further on; a line still being written
    is left for the next poll.

    With `decode`, a line it refuses (a crash cut it short, and, before
    `Notifier.emit` ended such a line, the next announcement was appended
    to it) is skipped, logged once, and the cursor moves past it: the
    complete announcement at its end, if any, is kept."""
    path = Path(path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        if after:
            raise FeedError(f"cursor {after} is beyond the end of the feed (it is empty)") from None
        return [], 0
    with f:
        size = f.seek(0, 2)
        if after > size:
            raise FeedError(f"cursor {after} is beyond the end of the feed ({size} octets): "
                            "the file was replaced; start again from 0")
        if after:
            f.seek(after - 1)
            if f.read(1) != b"\n":
                raise FeedError(f"cursor {after} is not the start of an announcement: use the cursors the feed gives")
        f.seek(after)
        needle = b'"subscriber":' + json.dumps(subscriber).encode() + b"," if subscriber is not None else None
        out: list[bytes] = []
        pos = after
        for line in f:
            if not line.endswith(b"\n") or len(out) >= limit or pos - after >= scan:
                break
            at, pos = pos, pos + len(line)
            if not line.strip() or (needle is not None and needle not in line):
                continue
            line = line.rstrip(b"\n")
            if decode is None:
                out.append(line)
                continue
            item = _decoded(decode, line, path, at, needle)
            if item is not None:
                out.append(item)
    return out, pos


def _decoded(decode: Callable[[bytes], object], line: bytes, path: Path, at: int, needle: bytes | None):
    try:
        return decode(line)
    except ValueError:          # msgspec.DecodeError, json.JSONDecodeError
        pass
    tail = line.rfind(_START)
    item = None
    if tail > 0 and (needle is None or needle in line[tail:]):
        try:
            item = decode(line[tail:])
        except ValueError:
            pass
    if (str(path), at) not in _DAMAGED:
        _DAMAGED.add((str(path), at))
        log.warning("%s: skipping a damaged announcement at offset %d (%d octets%s)", path, at, len(line),
                    ", the complete one at its end kept" if item is not None else "")
    return item
