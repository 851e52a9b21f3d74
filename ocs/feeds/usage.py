"""Usage records (CDRs): one JSON line per reported MSCC, in a file per UTC
day, `DATA/usage/YYYY-MM-DD.jsonl` (format: docs/usage.md).

They are written from the journal: after each group of records is durable,
and at start for whatever the journal holds beyond the last line written,
so every charge gets exactly one record even across a crash. Each carries
the journal sequence number and the rules version that charged it.
"""
from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

import msgspec

from ..rules.compile import RuleSet
from ..rules.units import format_money
from ..store.records import JournalRecord
from .usage_lines import Subscribers, usage_lines

log = logging.getLogger("ocs.usage")


class UsageRecord(msgspec.Struct, kw_only=True):
    seq: int
    time: str
    rules: str
    session: str
    subscriber: str
    rating_group: int | None
    service_id: int | None = None
    octets: int
    seconds: int = 0
    from_buckets: int
    charged: str
    charged_micro: int
    currency: str
    sponsor: str | None = None
    sponsored_octets: int = 0
    sponsor_charged: str | None = None
    sponsor_charged_micro: int = 0


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(UsageRecord)


class UsageLog:
    def __init__(self, directory: str | Path, ruleset: Callable[[str], RuleSet], label: Callable[[int], str],
                 plan_of: Callable[[int], int]):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ruleset = ruleset
        self.label = label
        self.plan_of = plan_of
        self.last_seq = self._last_seq()
        self._subscribers = Subscribers(label, plan_of)

    def _last_seq(self) -> int:
        """The last journal record written whole, read from the end of the
        newest day file (a day file holds millions of lines: reading it
        whole took seconds of every start). A file cut by a crash loses the
        lines of its last record, which catch_up writes again whole."""
        for path in sorted(self.dir.glob("*.jsonl"), reverse=True):
            seq = _last_whole_record(path)
            if seq:
                return seq
        return 0

    def write(self, records: list[JournalRecord]) -> None:
        """Append the usage of journal records (in order) not written yet.
        All or nothing: a write that fails (a full disk) leaves every file
        as it was, so writing the same records again later adds each line
        once."""
        by_day: dict[str, list[bytes]] = {}
        for rec in records:
            if rec.seq <= self.last_seq or not rec.usage:
                continue
            day = datetime.fromtimestamp(rec.time, timezone.utc).date().isoformat()
            by_day.setdefault(day, []).append(usage_lines(rec, self.ruleset(rec.rules), self._subscribers))
        sizes: dict[Path, int] = {}
        try:
            for day, lines in by_day.items():
                path = self.dir / f"{day}.jsonl"
                sizes[path] = path.stat().st_size if path.exists() else 0
                with path.open("ab") as f:
                    f.write(b"".join(lines))
        except OSError:
            for path, size in sizes.items():
                try:
                    os.truncate(path, size)
                except OSError:
                    log.exception("%s: could not cut back a failed write; the next start repairs it", path)
            raise
        if records:
            self.last_seq = max(self.last_seq, max(r.seq for r in records))

    def catch_up(self, journals: list[Path]) -> int:
        """At start: records the journal holds beyond the last line written."""
        from ..store.journal import replay
        pending = []
        for path in journals:
            if path.exists():
                pending += [r for r in replay(path, JournalRecord) if r.seq > self.last_seq]
        pending.sort(key=lambda r: r.seq)
        self.write(pending)
        if pending:
            log.info("usage records written for %d journal records", len(pending))
        return len(pending)


def _seq(line: bytes) -> int | None:
    try:
        return _dec.decode(line).seq
    except msgspec.DecodeError:
        return None


def _last_whole_record(path: Path) -> int:
    """The seq of the last record whose lines are all in `path`, cutting
    away the lines of a record a crash cut short; 0 if there is none."""
    size = path.stat().st_size
    tail = 1 << 20
    while size:
        start = max(size - tail, 0)
        with path.open("rb") as f:
            f.seek(start)
            data = f.read(size - start)
        lines = data.split(b"\n")
        ends = []                       # where each whole line ends, in the file
        pos = start
        for line in lines[:-1]:
            pos += len(line) + 1
            ends.append(pos)
        whole = lines[:-1][1:] if start else lines[:-1]     # the first may be the end of a line
        ends = ends[1:] if start else ends
        seqs = [_seq(line) for line in whole]
        if not lines[-1] and seqs and seqs[-1] is not None:
            return seqs[-1]             # ends with a whole, valid line: nothing was cut
        last = next((q for q in reversed(seqs) if q is not None), None)
        for k in range(len(seqs) - 1, -1, -1):
            if seqs[k] is not None and seqs[k] != last:
                os.truncate(path, ends[k])
                log.warning("%s: a record cut by a crash is written again", path)
                return seqs[k]
        if start == 0:
            os.truncate(path, 0)
            log.warning("%s: a record cut by a crash is written again", path)
            return 0
        tail *= 4
    return 0


def usage_files(directory: str | Path, first: date | None = None, last: date | None = None) -> list[Path]:
    """The day files of the UTC days `first`..`last` (either open), in order."""
    out = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        try:
            day = date.fromisoformat(path.stem)
        except ValueError:
            continue            # not a day file (an operator's copy, say)
        if (first is None or day >= first) and (last is None or day <= last):
            out.append(path)
    return out


def iter_usage(directory: str | Path, first: date | None = None, last: date | None = None,
               subscriber: str | None = None) -> Iterator[UsageRecord]:
    """The records of the UTC days `first`..`last`, streamed a line at a
    time (a day file may hold millions). With `subscriber`, other
    subscribers' lines are skipped before they are decoded: the writer
    always spells the field the same way. A last line without its newline
    is being written now and is left for the next read."""
    needle = b'"subscriber":' + _enc.encode(subscriber) + b"," if subscriber is not None else None
    for path in usage_files(directory, first, last):
        with path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                if needle is not None and needle not in line:
                    continue
                if not line.strip():
                    continue
                try:
                    yield _dec.decode(line)
                except msgspec.DecodeError:
                    log.warning("%s: skipping a damaged line", path)


class RatingGroupDay(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One rating group's usage on one local day."""
    rating_group: int | None        # null: usage reported without a Rating-Group
    octets: int
    seconds: int
    from_buckets: int               # octets taken from bundles, packs and pools
    sponsored_octets: int           # octets a sponsor paid for
    charged: str                    # money charged to the subscriber (or its payer), in `currency`
    charged_micro: int
    currency: str
    reports: int                    # usage reports (MSCCs) summed


class UsageDay(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    day: date                       # the subscriber's local date
    rating_groups: list[RatingGroupDay]


def daily_usage(records: Iterable[UsageRecord], tz: ZoneInfo, first: date, last: date) -> list[UsageDay]:
    """Usage per local day (in `tz`) and rating group, days `first`..`last`
    inclusive; days without usage are left out. Records of another currency
    (a plan change mid-range) are summed apart, never added together."""
    acc: dict[tuple[date, int | None, str], list[int]] = {}
    for r in records:
        day = datetime.fromisoformat(r.time).astimezone(tz).date()
        if not first <= day <= last:
            continue
        a = acc.setdefault((day, r.rating_group, r.currency), [0, 0, 0, 0, 0, 0])
        a[0] += r.octets
        a[1] += r.seconds
        a[2] += r.from_buckets
        a[3] += r.sponsored_octets
        a[4] += r.charged_micro
        a[5] += 1
    days: dict[date, list[RatingGroupDay]] = {}
    for (day, rg, currency), a in sorted(acc.items(), key=lambda kv: (kv[0][0], -1 if kv[0][1] is None else kv[0][1],
                                                                       kv[0][2])):
        days.setdefault(day, []).append(RatingGroupDay(
            rating_group=rg, octets=a[0], seconds=a[1], from_buckets=a[2], sponsored_octets=a[3],
            charged=format_money(a[4], currency), charged_micro=a[4], currency=currency, reports=a[5]))
    return [UsageDay(day=d, rating_groups=groups) for d, groups in days.items()]


def subscriber_usage(directory: str | Path, subscriber: str, tz: ZoneInfo, first: date,
                     last: date) -> list[UsageDay]:
    """A subscriber's usage per local day and rating group: reads only the
    UTC day files that can hold those local days (a local day touches the
    UTC day before and after it)."""
    records = iter_usage(directory, *utc_days_around(first, last), subscriber)
    return daily_usage(records, tz, first, last)


def utc_days_around(first: date, last: date) -> tuple[date, date]:
    """The UTC days whose records can fall on the local days `first`..`last`:
    a local day touches the UTC day before and after it. At the ends of the
    calendar (0001-01-01, 9999-12-31) there is no day beyond."""
    return (first - timedelta(days=1) if first > date.min else first,
            last + timedelta(days=1) if last < date.max else last)


def local_zone(rules: RuleSet, plan: int, zone: int) -> ZoneInfo:
    """A subscriber's timezone: its own (`zone` >= 0), else its plan's."""
    return rules.zones[zone if zone >= 0 else int(rules.tables.plans[plan]["zone"])]
