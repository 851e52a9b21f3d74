"""The usage writer finds where it stopped from the end of the newest day
file, not by reading it whole, and cuts away the lines of a record a crash
cut short, however many lines that record has."""
from __future__ import annotations

import msgspec

from ocs.feeds.usage import UsageRecord, _last_whole_record


def line(seq: int, pad: int = 0) -> bytes:
    r = UsageRecord(seq=seq, time="2026-12-03T00:00:00Z", rules="v", session="s" * pad, subscriber="1",
                    rating_group=10, octets=1, from_buckets=0, charged="0", charged_micro=0, currency="CNY")
    return msgspec.json.encode(r) + b"\n"


def test_a_whole_file_gives_its_last_record(tmp_path):
    f = tmp_path / "2026-12-03.jsonl"
    f.write_bytes(line(1) + line(1) + line(2))
    assert _last_whole_record(f) == 2 and f.read_bytes() == line(1) + line(1) + line(2)


def test_a_cut_record_is_removed_even_when_it_is_larger_than_the_first_look(tmp_path):
    f = tmp_path / "2026-12-03.jsonl"
    big = line(7, pad=1000) * 3000                          # ~3 MB of record 7's lines
    f.write_bytes(line(5) * 10 + line(6) * 3 + big + line(7)[:40])
    assert _last_whole_record(f) == 6
    assert f.read_bytes() == line(5) * 10 + line(6) * 3
    f.write_bytes(line(7)[:30])
    assert _last_whole_record(f) == 0 and f.read_bytes() == b""
