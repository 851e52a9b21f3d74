"""The duplicate cache against a plain two-generation dict reference: the
same answers for any sequence of batches remembered and looked up as time
passes, within its budgets of entries, bytes and seconds."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.store.dedup import DuplicateCache, fingerprints


class Reference:
    """Two dicts of key -> (answer, time): when the young one holds half of
    either budget it becomes the old; the old is dropped once its newest
    answer is older than `seconds`; an answer older than that is not given."""

    def __init__(self, entries: int, seconds: float, max_bytes: int):
        self.entries, self.seconds, self.max_bytes = entries, seconds, max_bytes
        self.young, self.old = {}, {}
        self.young_bytes = 0

    def remember(self, keys, answers, now):
        if self.old and max(t for _, t in self.old.values()) < now - self.seconds:
            self.old = {}
        if not keys:
            return
        self.young.update((k, (a, now)) for k, a in zip(keys, answers))
        self.young_bytes += sum(map(len, keys)) + sum(map(len, answers))
        if len(self.young) * 2 >= self.entries or self.young_bytes * 2 >= self.max_bytes:
            self.old, self.young, self.young_bytes = self.young, {}, 0

    def lookup(self, keys, now):
        out = []
        for k in keys:
            got = self.young.get(k, self.old.get(k))
            out.append(got[0] if got is not None and now - got[1] <= self.seconds else None)
        return out


KEYS = st.binary(min_size=0, max_size=6)
STEPS = st.lists(st.tuples(st.sampled_from(["remember", "lookup"]), st.lists(KEYS, max_size=40),
                           st.sampled_from([0.0, 0.0, 1.0, 30.0, 200.0])), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3000), st.sampled_from([100.0, 600.0]), st.integers(64, 1 << 16), STEPS)
def test_the_cache_answers_as_the_reference(entries, seconds, max_bytes, steps):
    cache, ref = DuplicateCache(entries, seconds, max_bytes), Reference(entries, seconds, max_bytes)
    now = 0.0
    for n, (what, keys, later) in enumerate(steps):
        now += later
        if what == "remember":
            answers = [b"%d:" % n + k for k in keys]
            cache.remember(keys, answers, now)
            ref.remember(keys, answers, now)
        else:
            assert cache.lookup(keys, now) == ref.lookup(keys, now)
    assert len(cache) == len(ref.young) + len(ref.old)


def test_a_fingerprint_that_matches_is_not_taken_for_the_key():
    cache = DuplicateCache(100)
    cache.remember([b"pgw1\x00\x00\x00\x01"], [b"answer"], 0.0)
    assert cache.lookup([b"pgw1\x00\x00\x00\x01"], 1.0) == [b"answer"]
    # another key presented with the same fingerprint: confirmed, and refused
    assert cache.lookup([b"pgw2\x00\x00\x00\x01"], 1.0, fingerprints([b"pgw1\x00\x00\x00\x01"])) == [None]


def test_a_batch_larger_than_the_table_grows_it():
    cache = DuplicateCache(10)
    keys = [b"k%d" % i for i in range(5000)]
    cache.remember(keys, keys, 0.0)
    assert cache.lookup(keys[::97], 0.0) == keys[::97]


def test_big_answers_are_bounded_in_bytes():
    """400 answers of 1 MB (a Session-Id a peer made huge): the cache holds
    at most its byte budget, not all of them."""
    cache = DuplicateCache(500_000, max_bytes=64 << 20)
    for i in range(400):
        cache.remember([b"k%d" % i], [bytes(1 << 20)], float(i))
        assert cache.bytes <= 64 << 20
    assert cache.lookup([b"k399"], 400.0) != [None]
