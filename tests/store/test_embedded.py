"""The embedded store's recovery around snapshots taken while serving: the
journal is moved aside, a new one started, and the snapshot written later;
a crash at any of those points recovers the same state."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocs.store.embedded import EmbeddedStore

EMPTY = np.zeros(0, np.int64)


def _store(path) -> EmbeddedStore:
    s = EmbeddedStore(path, fsync=False)
    s.open()
    if s.n_subs == 0:               # provisioning, then a snapshot, as `ocs serve` does
        s._grow_subs(4)
        s.n_subs = 4
        s.snapshot()
    return s


def _debit(store: EmbeddedStore, row: int, amount: int, key: bytes) -> None:
    store.subs[row]["balance"] -= amount
    store.remember_answers([key], [b"answer-" + key], 0.0)
    store.write(store.record("v1", 0.0, np.array([row]), EMPTY, [], ([key], [b"answer-" + key]), b""))


def _state(store: EmbeddedStore):
    return store.subs[:store.n_subs]["balance"].tolist(), store.answer_for(b"k1", 0.0), store.answer_for(b"k3", 0.0)


@pytest.mark.parametrize("crash_at", ["after-rotation", "after-snapshot-written", "never"])
def test_snapshot_while_serving_recovers_everything(tmp_path, crash_at):
    s = _store(tmp_path)
    _debit(s, 0, 5, b"k1")
    job = s.begin_snapshot()
    assert job is not None and (tmp_path / "journal.old").exists()
    assert s.begin_snapshot() is None          # one at a time
    _debit(s, 1, 7, b"k2")                      # goes to the new journal
    if crash_at != "after-rotation":
        job()
        assert not (tmp_path / "journal.old").exists()
    _debit(s, 0, 11, b"k3")
    expected = _state(s)
    assert expected[0][:2] == [-16, -7]
    s.close()
    again = _store(tmp_path)                    # recovery, as after kill -9
    assert _state(again) == expected


def test_answers_survive_a_crash_between_snapshot_and_journal_rename(tmp_path):
    """The snapshot is in place but journal.old not yet renamed: its records
    are in the snapshot, their answers only in journal.old."""
    s = _store(tmp_path)
    _debit(s, 0, 5, b"k1")
    s.begin_snapshot()()
    s.close()
    # the disk as the crash left it: the job wrote the snapshot, not the rename
    (tmp_path / "journal.prev").rename(tmp_path / "journal.old")
    again = _store(tmp_path)
    assert again.answer_for(b"k1", 0.0) == b"answer-k1"
    assert again.subs[0]["balance"] == -5
    assert again.snapshot_unfinished
    again.snapshot()                 # what `ocs serve` does before serving
    assert not again.snapshot_unfinished and (tmp_path / "journal.prev").exists()
    assert _store(tmp_path).answer_for(b"k1", 0.0) == b"answer-k1"


def test_journal_reads_records_of_either_compression(tmp_path):
    """Journals written before Zstandard hold deflated records; a journal
    may hold both kinds after an upgrade. Replay reads each as written."""
    import struct
    import zlib

    import msgspec

    from ocs.store.journal import Journal, replay
    path = tmp_path / "journal.log"
    old = msgspec.msgpack.encode({"seq": 1, "what": "deflated"})
    payload = zlib.compress(old, 1)
    path.write_bytes(struct.pack(">II", len(payload) | 0x80000000, zlib.crc32(payload)) + payload)
    j = Journal(path, fsync=False)
    j.append({"seq": 2, "what": "zstd"}, {"seq": 3, "what": "zstd"})
    j.close()
    assert [r["what"] for r in replay(path)] == ["deflated", "zstd", "zstd"]
    # a torn zstd record ends the journal; the writer cuts it away
    data = path.read_bytes().rstrip(b"\0")
    path.write_bytes(data[:-3])
    assert [r["seq"] for r in replay(path)] == [1, 2]


@given(st.lists(st.integers(0, 2**40), max_size=300))
def test_distinct_rows_are_numpy_unique(rows):
    from ocs.store.memory import _distinct
    got = _distinct(rows)
    assert got.dtype == np.int64 and got.tolist() == np.unique(np.array(rows, dtype=np.int64)).tolist()
