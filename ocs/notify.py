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

from .engine.tables import T_BUCKET, T_CAP, T_CEILING, T_CREDIT, T_DAILY, T_SPENT, T_THROTTLED
from .rules.compile import RuleSet
from .rules.units import format_money

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

    def emit(self, items: list[dict]) -> None:
        if not items:
            return
        with self.path.open("a") as f:
            f.write("".join(json.dumps(i, separators=(",", ":")) + "\n" for i in items))
        self.sent += len(items)
        if self.sink is not None:
            try:
                self.sink(items)
            except Exception:       # a broken sink must not stop charging
                log.exception("notification sink failed on %d events", len(items))


class FeedError(ValueError):
    pass


def read_feed(path: str | Path, after: int, limit: int, subscriber: str | None = None,
              scan: int = 4 << 20) -> tuple[list[bytes], int]:
    """Announcements after byte offset `after` of the notifications file:
    (up to `limit` JSON lines, the offset to read from next). The file only
    grows, so an offset is a stable cursor. A poll reads at most `scan`
    octets, so a filter that matches little answers promptly with a cursor
    further on; a line still being written is left for the next poll."""
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
            pos += len(line)
            if line.strip() and (needle is None or needle in line):
                out.append(line.rstrip(b"\n"))
    return out, pos
