"""A journal written before journal records were typed (commit 815e6c2,
dicts with two-letter keys) replays to the same state and the same usage
records: the record type keeps those keys on disk.

tests/fixtures/journal_815e6c2/make.py wrote the data directory, with what
that code read back from it: `expected.json` and `usage.jsonl`. The money,
by hand from tests/fixtures/rules (the plan is in make.py):
- 8613800000001 (cn-89-3g, 100 yuan): 1 MB and a 10 KB direct debit, both
  from the 400 MB bundle: 100 yuan left;
- 8613700000001 (tiny, 0.10 yuan, 0.01 a started KB): 3 KB, 1 KB and 2 KB
  charged (0.06), then a 5 yuan top-up: 5.04;
- 8613500000001, created through provisioning with 2 yuan: 2 yuan;
- 8613900000005 (range, 1000 yuan): a session opened, nothing reported.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import msgspec
import numpy as np

from ocs.subscriber import E164, IMSI, subscriber_key
from ocs.gy.install import Installer
from ocs.store.embedded import EmbeddedStore
from ocs.store.journal import replay
from ocs.store.records import CreateSubscriber, JournalRecord, TopUp
from ocs.feeds.usage import UsageLog

FIXTURE = Path(__file__).parents[1] / "fixtures" / "journal_815e6c2"
YUAN = 1_000_000


def _open(tmp_path) -> EmbeddedStore:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", data)
    store = EmbeddedStore(data, fsync=False)
    store.open(on_rules=Installer(store).replay)
    return store


def _sha(a: np.ndarray) -> str:
    h = hashlib.sha256()
    for name in a.dtype.names:      # field by field: rows' padding bytes are never written
        h.update(np.ascontiguousarray(a[name]).tobytes())
    return h.hexdigest()


def test_an_old_journal_replays_to_the_same_state(tmp_path):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    store = _open(tmp_path)
    row = {m: store.lookup(subscriber_key(E164, m)) for m in expected["rows"]}
    assert row == expected["rows"]
    balance = {m: int(store.subs[r]["balance"]) for m, r in row.items()}
    assert balance == expected["balance"] == {
        "8613800000001": 100 * YUAN, "8613700000001": 5_040_000, "8613700000002": 0,
        "8613900000005": 1000 * YUAN, "8613500000001": 2 * YUAN}
    assert sorted([sid.decode(), r] for sid, r in store.session_index.items()) == expected["sessions"] == [
        ["pgw.test;a", 0], ["pgw.test;r", 2]]
    assert sorted(e.session_id.decode() for e in store.expired.values()) == ['pgw.test;t"2']   # Tcc released it
    assert len(store.debits) == 1                   # the direct debit, refundable
    assert store.profiles[row["8613500000001"]].imsi == "460009999999999"
    assert store.lookup(subscriber_key(IMSI, "460009999999999")) == row["8613500000001"]
    assert (store.seq, store.n_subs, store.rules_version) == (expected["seq"], expected["n_subs"],
                                                              expected["rules_version"])
    # every other column of every row too
    assert _sha(store.subs[:store.n_subs]) == expected["subs_sha256"]
    assert _sha(store.sessions) == expected["sessions_sha256"]
    # and the duplicate cache: the answers of the journal, as given
    records = list(replay(store.dir / "journal.log", JournalRecord))
    keys = [k for r in records for k in r.answers.keys]
    assert len(keys) == 9 and store.answers_for(keys, records[-1].time) == [
        a for r in records for a in r.answers.answers]


def test_old_records_read_as_typed_records(tmp_path):
    records = list(replay(FIXTURE / "data" / "journal.log", JournalRecord))
    assert [r.seq for r in records] == list(range(1, 13))
    assert records[0].installed_rules == records[0].rules != ""
    assert isinstance(records[9].operation, TopUp) and records[9].operation.amount == 5 * YUAN
    assert isinstance(records[10].operation, CreateSubscriber) and records[10].directory[0].label == "8613500000001"
    assert [len(r.expired) for r in records] == [0] * 11 + [1]
    # written again, a record reads back the same, and as the old dict did
    old = list(replay(FIXTURE / "data" / "journal.log"))
    for rec, was in zip(records, old):
        again = msgspec.msgpack.encode(rec)
        assert msgspec.msgpack.decode(again, type=JournalRecord) == rec
        now = msgspec.msgpack.decode(again)
        if not was["ans"]:
            was["ans"] = [[], []]                   # empty answers: two empty lists now, the same to a reader
        for change in was.get("dir", ()):
            if change.get("profile"):               # the profile's unset fields are left out now
                change["profile"] = {k: v for k, v in change["profile"].items() if v is not None}
        assert now == was


def test_an_old_journal_gives_the_same_usage_records(tmp_path):
    store = _open(tmp_path)
    installer = Installer(store)
    usage = UsageLog(tmp_path / "usage", installer.ruleset, store.label, lambda row: int(store.subs[row]["plan"]))
    assert usage.catch_up([store.dir / "journal.log"]) == 12
    written = b"".join(p.read_bytes() for p in sorted((tmp_path / "usage").glob("*.jsonl")))
    assert written == (FIXTURE / "usage.jsonl").read_bytes()
