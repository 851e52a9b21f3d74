"""One batch holding what a batch can hold: a session opened and updated in
the same batch, the same request twice, a retransmission answered from the
duplicate cache, an unknown session, an unknown subscriber. The
application settles ordinary CCR-U/T in bulk and the rest one at a time;
both must give what one-at-a-time charging gives."""
from __future__ import annotations

import time
import zlib
from pathlib import Path

from diameter.message import Message

from ocs.diameter import constants as c
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U, T = c.INITIAL_REQUEST, c.UPDATE_REQUEST, c.TERMINATION_REQUEST


def ccr(sid, rtype, number, msisdn=None, used=None, hbh=0):
    req = build_ccr("pgw.test", sid, rtype, number, msisdn, [{"rg": 10, "rsu": 0, "used": used}])
    req.header.hop_by_hop_identifier = hbh
    req.header.end_to_end_identifier = zlib.crc32(f"{sid}/{number}".encode())    # the same in every run
    return req.as_bytes()


def results(answers):
    return [Message.from_bytes(a).result_code for a in answers]


def test_a_mixed_batch(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    opened = ch.app.process([ccr("s2", I, 0, "8613900000002")], time.time())
    ch.store.write(opened.record)
    update = ccr("s2", U, 1, used=1_000_000, hbh=7)
    batch = [ccr("s1", I, 0, "8613900000001"), ccr("s1", U, 1, used=5_000),
             update, update[:12] + (8).to_bytes(4, "big") + update[16:],     # the same request again, hop 8
             ccr("nowhere", U, 3, used=1), ccr("s3", I, 0, "8613700000000")]
    got = ch.app.process(batch, time.time())
    ch.store.write(got.record)
    assert results(got.answers) == [2001, 2001, 2001, 2001, c.UNKNOWN_SESSION_ID, c.USER_UNKNOWN]
    assert got.answers[3] == got.answers[2][:12] + (8).to_bytes(4, "big") + got.answers[2][16:]

    # the retransmission (T-flag) in a later batch: the answer kept, nothing charged again
    before = ch.view("8613900000002")
    again = bytearray(update)
    again[4] |= c.FLAG_RETRANSMIT
    later = ch.app.process([bytes(again), ccr("s2", U, 2, used=2_000_000)], time.time())
    ch.store.write(later.record)
    assert later.answers[0] == got.answers[2]
    assert results(later.answers) == [2001, 2001]
    after = ch.view("8613900000002")
    assert after["total_octets_this_period"] - before["total_octets_this_period"] == 2_000_000


def test_bulk_and_one_at_a_time_agree(tmp_path):
    """The same CCR-Us as one batch (settled in bulk), and with a repeated
    request added (which makes the application take them one at a time)."""
    runs, now = [], time.time()
    for name, repeat in (("bulk", False), ("loop", True)):
        ch = Charging(tmp_path / name, RULES)
        numbers = [f"86139000000{k:02d}" for k in range(40)]
        opened = ch.app.process([ccr(f"s{k}", I, 0, m) for k, m in enumerate(numbers)], now)
        ch.store.write(opened.record)
        batch = [ccr(f"s{k}", U if k % 3 else T, 1, used=100_000 * (k + 1), hbh=k) for k in range(40)]
        got = ch.app.process(batch + ([batch[0]] if repeat else []), now)
        ch.store.write(got.record)
        views = [ch.view(m) for m in numbers]
        runs.append((got.answers[:40], got.results[:40], views))
    assert runs[0] == runs[1]
